//! `keelson rollout status|history|undo|restart deployment/NAME`, as
//! kubectl's. The revisions are the Deployment's ReplicaSets (annotation
//! `deployment.kubernetes.io/revision`); undo copies an older ReplicaSet's
//! pod template back into the Deployment (client side, as kubectl does
//! today) and the controller rolls to it.

use std::time::Duration;

use anyhow::{anyhow, bail};
use clap::{Args, Subcommand};
use keelson_model::deployment::{
    progress_deadline_exceeded, rollout_status, CHANGE_CAUSE_ANNOTATION, POD_TEMPLATE_HASH_LABEL,
    REVISION_ANNOTATION,
};
use keelson_model::{Kind, Resource};
use keelson_proto::v1;
use keelson_sdk::{Api, Client, Error as SdkError, ListParams};

use super::{kind_and_names, out, table, ClientArgs, NamespaceArg};

#[derive(Subcommand, Debug)]
pub enum RolloutCommand {
    /// Wait until the rollout finishes, printing its progress.
    Status(RolloutStatusArgs),
    /// The Deployment's revisions.
    History(RolloutHistoryArgs),
    /// Roll back to the previous revision (or --to-revision).
    Undo(RolloutUndoArgs),
    /// Restart every pod, by a rolling update to an annotated template.
    Restart(RolloutTarget),
}

#[derive(Args, Debug)]
pub struct RolloutTarget {
    /// deployment/NAME (or `deployment NAME`).
    pub kind: String,
    pub name: Option<String>,
    #[command(flatten)]
    pub ns: NamespaceArg,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Args, Debug)]
pub struct RolloutStatusArgs {
    #[command(flatten)]
    pub target: RolloutTarget,
    /// Give up after this long (e.g. 90s, 5m).
    #[arg(long, default_value = "5m")]
    pub timeout: humantime::Duration,
}

#[derive(Args, Debug)]
pub struct RolloutHistoryArgs {
    #[command(flatten)]
    pub target: RolloutTarget,
    /// Show this revision's pod template.
    #[arg(long)]
    pub revision: Option<i64>,
}

#[derive(Args, Debug)]
pub struct RolloutUndoArgs {
    #[command(flatten)]
    pub target: RolloutTarget,
    /// The revision to go back to (default: the one before the current).
    #[arg(long)]
    pub to_revision: Option<i64>,
}

impl RolloutTarget {
    fn resolve(&self) -> anyhow::Result<(Api<v1::Deployment>, String, Client)> {
        let names: Vec<String> = self.name.iter().cloned().collect();
        let (kind, names) = kind_and_names(&self.kind, &names)?;
        if kind != Kind::Deployment {
            bail!("rollout works on deployments, not {}", kind.plural());
        }
        let [name] = names.as_slice() else {
            bail!("give one deployment: keelson rollout ... deployment/NAME");
        };
        let client = self.client.client()?;
        Ok((
            Api::namespaced(client.clone(), &self.ns.namespace),
            name.clone(),
            client,
        ))
    }
}

pub async fn run(c: RolloutCommand) -> anyhow::Result<()> {
    match c {
        RolloutCommand::Status(a) => status(a).await,
        RolloutCommand::History(a) => history(a).await,
        RolloutCommand::Undo(a) => undo(a).await,
        RolloutCommand::Restart(t) => restart(t).await,
    }
}

async fn get(api: &Api<v1::Deployment>, name: &str) -> anyhow::Result<v1::Deployment> {
    api.get(name).await.map_err(|e| match e {
        SdkError::NotFound(_) => anyhow!("deployments \"{name}\" not found"),
        e => anyhow!(e),
    })
}

async fn status(a: RolloutStatusArgs) -> anyhow::Result<()> {
    let (api, name, _) = a.target.resolve()?;
    let deadline = tokio::time::Instant::now() + Duration::from(a.timeout);
    let mut last = String::new();
    loop {
        let d = get(&api, &name).await?;
        let (done, message) = rollout_status(&d);
        if message != last {
            out(&format!("{message}\n"))?;
            last = message;
        }
        if done {
            return Ok(());
        }
        if progress_deadline_exceeded(&d) {
            bail!("deployment \"{name}\" exceeded its progress deadline");
        }
        if tokio::time::Instant::now() >= deadline {
            bail!("timed out waiting for the rollout of deployment \"{name}\" to finish");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn revision_of(rs: &v1::ReplicaSet) -> Option<i64> {
    rs.meta()
        .annotations
        .get(REVISION_ANNOTATION)
        .and_then(|r| r.parse().ok())
}

/// The Deployment's ReplicaSets (controller ownerReference), by revision.
async fn revisions(
    client: &Client,
    d: &v1::Deployment,
) -> anyhow::Result<Vec<(i64, v1::ReplicaSet)>> {
    let api: Api<v1::ReplicaSet> = Api::namespaced(client.clone(), &d.meta().namespace);
    let uid = d.meta().uid.clone();
    let mut out: Vec<(i64, v1::ReplicaSet)> = api
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|rs| keelson_model::controller_of(rs.meta()).is_some_and(|r| r.uid == uid))
        .filter_map(|rs| revision_of(&rs).map(|r| (r, rs)))
        .collect();
    out.sort_by_key(|(r, _)| *r);
    Ok(out)
}

async fn history(a: RolloutHistoryArgs) -> anyhow::Result<()> {
    let (api, name, client) = a.target.resolve()?;
    let d = get(&api, &name).await?;
    let revs = revisions(&client, &d).await?;
    if let Some(want) = a.revision {
        let (_, rs) = revs
            .iter()
            .find(|(r, _)| *r == want)
            .ok_or_else(|| anyhow!("unable to find the specified revision {want}"))?;
        let template = rs
            .spec
            .as_ref()
            .and_then(|s| s.template.clone())
            .unwrap_or_default();
        let yaml = serde_yaml::to_string(&template)?;
        return out(&format!(
            "deployment.apps/{name} with revision #{want}\nPod Template:\n{}",
            yaml.lines().map(|l| format!("  {l}\n")).collect::<String>()
        ));
    }
    let rows: Vec<Vec<String>> = revs
        .iter()
        .map(|(r, rs)| {
            let cause = rs
                .meta()
                .annotations
                .get(CHANGE_CAUSE_ANNOTATION)
                .cloned()
                .unwrap_or_else(|| "<none>".into());
            vec![r.to_string(), cause]
        })
        .collect();
    out(&format!(
        "deployment.apps/{name}\n{}",
        table::render(&table::header(&["REVISION", "CHANGE-CAUSE"]), &rows)
    ))
}

/// A template as the Deployment holds it: without the hash label.
fn deployment_template(rs: &v1::ReplicaSet) -> Option<v1::PodTemplateSpec> {
    let mut t = rs.spec.as_ref()?.template.clone()?;
    if let Some(m) = t.metadata.as_mut() {
        m.labels.remove(POD_TEMPLATE_HASH_LABEL);
    }
    Some(t)
}

async fn undo(a: RolloutUndoArgs) -> anyhow::Result<()> {
    let (api, name, client) = a.target.resolve()?;
    for _ in 0..5 {
        let mut d = get(&api, &name).await?;
        let revs = revisions(&client, &d).await?;
        let target = match a.to_revision {
            Some(0) | None => {
                if revs.len() < 2 {
                    bail!("no rollout history found for deployment \"{name}\"");
                }
                &revs[revs.len() - 2]
            }
            Some(r) => revs
                .iter()
                .find(|(rev, _)| *rev == r)
                .ok_or_else(|| anyhow!("unable to find the specified revision {r}"))?,
        };
        let template = deployment_template(&target.1)
            .ok_or_else(|| anyhow!("revision {} has no pod template", target.0))?;
        let spec = d.spec.get_or_insert_with(Default::default);
        if spec.template.as_ref() == Some(&template) {
            return out(&format!(
                "deployment.apps/{name} skipped rollback (current template already matches revision {})\n",
                target.0
            ));
        }
        spec.template = Some(template);
        match api.update(&d).await {
            Ok(_) => return out(&format!("deployment.apps/{name} rolled back\n")),
            Err(SdkError::Conflict(_)) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    bail!("deployment \"{name}\" kept changing; try again")
}

async fn restart(t: RolloutTarget) -> anyhow::Result<()> {
    let (api, name, _) = t.resolve()?;
    for _ in 0..5 {
        let mut d = get(&api, &name).await?;
        let at = keelson_model::time::format_rfc3339(std::time::SystemTime::now());
        d.spec
            .get_or_insert_with(Default::default)
            .template
            .get_or_insert_with(Default::default)
            .metadata
            .get_or_insert_with(Default::default)
            .annotations
            .insert("kubectl.kubernetes.io/restartedAt".into(), at);
        match api.update(&d).await {
            Ok(_) => return out(&format!("deployment.apps/{name} restarted\n")),
            Err(SdkError::Conflict(_)) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    bail!("deployment \"{name}\" kept changing; try again")
}
