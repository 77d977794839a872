//! The control-plane workload of `keelson chaos`: simulated nodes (agent
//! processes the faults restart), a few Deployments and a StatefulSet an
//! operator scales and rolls while the faults run, Jobs it creates, a
//! CronJob running one every minute, and watchers recording every Pod,
//! ReplicaSet, Deployment and Job change with its revision. Afterwards: how long each Deployment, the StatefulSet and
//! each Job took to be back at its desired state (or complete), which
//! spec change each Deployment ends with, and the verdicts of
//! `keelson_chaos::controlplane`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Child;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::StreamExt;
use keelson_model::pod::is_ready;
use keelson_sdk::types as v1;
use keelson_sdk::{Api, Client, Config, Error, ListParams, Resource, WatchEvent};
use keelson_testkit::fixtures::labels;
use keelson_testkit::process::{kill, Spawn};
use rand::{Rng, SeedableRng};

use crate::controlplane::{self, Change, JobSeen, PodSeen, SpecWrite};
use crate::invariants::Verdict;

/// Deployments are named `chaos-d<i>`.
const PREFIX: &str = "chaos-d";
/// The sequence number of the last spec change, on each Deployment.
const SEQ_ANNOTATION: &str = "chaos.keelson.dev/seq";
/// Simulated nodes per agent process.
const NODES_PER_AGENT: usize = 5;
/// The StatefulSet the operator scales and rolls.
pub const STATEFUL_SET: &str = "chaos-sts";
/// The CronJob that runs a Job every minute (keeping one finished Job, so
/// the history limit deletes the others while the faults run).
const CRON_JOB: &str = "chaos-cron";
/// The most Jobs the operator creates in one run (each a few pods).
const JOBS_MAX: usize = 12;
/// Each Job's completions, and how many of its pods run at once.
pub const JOB_COMPLETIONS: usize = 3;
const JOB_PARALLELISM: i32 = 2;
/// How long a Job's simulated pod runs before it succeeds (the simulated
/// node's `sim.keelson.dev/exit-after` annotation).
const JOB_POD_RUNS: &str = "1s";

pub fn deployment_name(i: usize) -> String {
    format!("{PREFIX}{i}")
}

/// The agent processes running the simulated nodes; killed when dropped.
pub struct Agents {
    exe: PathBuf,
    endpoints: Vec<String>,
    token: String,
    args: Vec<Vec<String>>,
    logs: Vec<PathBuf>,
    children: Vec<Option<Child>>,
}

impl Agents {
    /// `nodes` simulated nodes in processes of [`NODES_PER_AGENT`],
    /// talking to `endpoints` with `token`.
    pub fn start(
        exe: PathBuf,
        nodes: usize,
        endpoints: &[String],
        token: &str,
        dir: &std::path::Path,
    ) -> anyhow::Result<Agents> {
        let procs = nodes.div_ceil(NODES_PER_AGENT);
        let mut a = Agents {
            exe,
            endpoints: endpoints.to_vec(),
            token: token.into(),
            args: Vec::new(),
            logs: Vec::new(),
            children: Vec::new(),
        };
        for j in 0..procs {
            let count = NODES_PER_AGENT.min(nodes - j * NODES_PER_AGENT);
            a.args.push(vec![
                "agent".into(),
                "--simulate".into(),
                count.to_string(),
                "--name-prefix".into(),
                format!("chaos-a{j}"),
                "--first-address".into(),
                format!("127.0.250.{}", 1 + j * NODES_PER_AGENT),
            ]);
            a.logs.push(dir.join(format!("agent-{j}.log")));
            a.children.push(None);
            a.spawn(j)?;
        }
        Ok(a)
    }

    /// How many agent processes.
    pub fn count(&self) -> usize {
        self.children.len()
    }

    fn spawn(&mut self, j: usize) -> anyhow::Result<()> {
        let child = Spawn::new(&self.exe, &self.args[j])
            .named(format!("simulated agent {j}"))
            .client(&self.endpoints, &self.token)
            // What a post-mortem needs: watch resumes and pod reports.
            .env(
                "RUST_LOG",
                "info,keelson_sdk::watcher=debug,keelson_agent::sim=debug",
            )
            .log(&self.logs[j])
            .spawn()?;
        self.children[j] = Some(child);
        Ok(())
    }

    /// SIGKILL agent process `j`.
    pub fn kill(&mut self, j: usize) {
        if let Some(mut c) = self.children[j].take() {
            kill(&mut c);
        }
    }

    pub fn restart(&mut self, j: usize) -> anyhow::Result<()> {
        self.kill(j);
        self.spawn(j)
    }
}

impl Drop for Agents {
    fn drop(&mut self) {
        for j in 0..self.children.len() {
            self.kill(j);
        }
    }
}

/// Everything the control-plane workload and its watchers recorded.
#[derive(Default)]
pub struct CpRecord {
    pub pods: Mutex<Vec<PodSeen>>,
    pub changes: Mutex<Vec<Change>>,
    pub jobs_seen: Mutex<Vec<JobSeen>>,
    pub writes: Mutex<Vec<SpecWrite>>,
    pub scaled: AtomicU64,
    pub rolled: AtomicU64,
    /// Spec changes the StatefulSet took (acknowledged).
    pub set_changes: AtomicU64,
    /// The Jobs created (acknowledged).
    pub jobs: Mutex<Vec<String>>,
}

/// Deployment `i`: 3 simulated pods, strategies varied (surge as a count or
/// a percentage, with or without unavailability).
fn deployment(i: usize) -> v1::Deployment {
    let name = deployment_name(i);
    let (surge, unavailable) = match i % 3 {
        0 => ("1", "1"),
        1 => ("25%", "0"),
        _ => ("2", "25%"),
    };
    v1::Deployment {
        metadata: Some(v1::ObjectMeta {
            name: name.clone(),
            namespace: "default".into(),
            annotations: labels(&[(SEQ_ANNOTATION, "0")]),
            ..Default::default()
        }),
        spec: Some(v1::DeploymentSpec {
            replicas: Some(3),
            selector: Some(v1::LabelSelector {
                match_labels: labels(&[("app", &name)]),
                ..Default::default()
            }),
            template: Some(v1::PodTemplateSpec {
                metadata: Some(v1::ObjectMeta {
                    labels: labels(&[("app", &name), ("version", "1")]),
                    ..Default::default()
                }),
                spec: Some(v1::PodSpec {
                    containers: vec![v1::Container {
                        name: "main".into(),
                        image: "builtin/sleep".into(),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
            }),
            strategy: Some(v1::DeploymentStrategy {
                r#type: "RollingUpdate".into(),
                rolling_update: Some(v1::RollingUpdateDeployment {
                    max_surge: surge.into(),
                    max_unavailable: unavailable.into(),
                }),
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The pod template of the StatefulSet and Jobs: `app=<app>`,
/// `version=1`, one simulated container.
fn template(app: &str, annotations: &[(&str, &str)], restart: &str) -> v1::PodTemplateSpec {
    v1::PodTemplateSpec {
        metadata: Some(v1::ObjectMeta {
            labels: labels(&[("app", app), ("version", "1")]),
            annotations: labels(annotations),
            ..Default::default()
        }),
        spec: Some(v1::PodSpec {
            restart_policy: restart.into(),
            containers: vec![v1::Container {
                name: "main".into(),
                image: "builtin/sleep".into(),
                ..Default::default()
            }],
            ..Default::default()
        }),
    }
}

/// The StatefulSet: 3 ordered replicas.
fn stateful_set() -> v1::StatefulSet {
    v1::StatefulSet {
        metadata: Some(v1::ObjectMeta {
            name: STATEFUL_SET.into(),
            namespace: "default".into(),
            ..Default::default()
        }),
        spec: Some(v1::StatefulSetSpec {
            replicas: Some(3),
            service_name: STATEFUL_SET.into(),
            selector: Some(v1::LabelSelector {
                match_labels: labels(&[("app", STATEFUL_SET)]),
                ..Default::default()
            }),
            template: Some(template(STATEFUL_SET, &[], "Always")),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Job `name`: [`JOB_COMPLETIONS`] pods that succeed after
/// [`JOB_POD_RUNS`], [`JOB_PARALLELISM`] at a time.
fn job(name: &str) -> v1::Job {
    v1::Job {
        metadata: Some(v1::ObjectMeta {
            name: name.into(),
            namespace: "default".into(),
            ..Default::default()
        }),
        spec: Some(v1::JobSpec {
            completions: i32::try_from(JOB_COMPLETIONS).ok(),
            parallelism: Some(JOB_PARALLELISM),
            template: Some(template(
                name,
                &[("sim.keelson.dev/exit-after", JOB_POD_RUNS)],
                "Never",
            )),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The CronJob: every minute a Job like the operator's.
fn cron_job() -> v1::CronJob {
    let template = job(CRON_JOB);
    v1::CronJob {
        metadata: Some(v1::ObjectMeta {
            name: CRON_JOB.into(),
            namespace: "default".into(),
            ..Default::default()
        }),
        spec: Some(v1::CronJobSpec {
            schedule: "* * * * *".into(),
            successful_jobs_history_limit: Some(1),
            failed_jobs_history_limit: Some(1),
            job_template: Some(v1::JobTemplateSpec {
                metadata: None,
                spec: template.spec,
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Create `obj` with `api`, again after an error (an earlier attempt may
/// have landed: AlreadyExists counts as created).
async fn create_retrying<K: Resource>(api: &Api<K>, obj: &K) -> anyhow::Result<()> {
    let mut tries = 0;
    loop {
        match api.create(obj).await {
            Ok(_) | Err(Error::AlreadyExists(_)) => return Ok(()),
            Err(e) if tries < 10 => {
                tries += 1;
                tracing::debug!("create {}: {e}", obj.meta().name);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => return Err(e).with_context(|| format!("create {}", obj.meta().name)),
        }
    }
}

pub fn client(endpoints: &[String], token: &str) -> anyhow::Result<Client> {
    Ok(Client::new(&Config {
        endpoints: endpoints.to_vec(),
        token: token.into(),
        ..Default::default()
    })?)
}

/// Create the Deployments, the StatefulSet and the CronJob (again after an
/// unknown outcome) and return the revision the watchers start after.
pub async fn setup(cl: &Client, deployments: usize) -> anyhow::Result<String> {
    let api: Api<v1::Deployment> = Api::namespaced(cl.clone(), "default");
    let rv = api
        .list(&ListParams::default())
        .await
        .context("list deployments")?
        .resource_version;
    for i in 0..deployments {
        create_retrying(&api, &deployment(i)).await?;
    }
    let sets: Api<v1::StatefulSet> = Api::namespaced(cl.clone(), "default");
    create_retrying(&sets, &stateful_set()).await?;
    let crons: Api<v1::CronJob> = Api::namespaced(cl.clone(), "default");
    create_retrying(&crons, &cron_job()).await?;
    Ok(rv)
}

fn revision_of(m: &v1::ObjectMeta) -> i64 {
    m.resource_version.parse().unwrap_or(0)
}

fn pod_seen(p: &v1::Pod, deleted: bool) -> PodSeen {
    let m = p.meta();
    PodSeen {
        revision: revision_of(m),
        key: format!("{}/{}", m.namespace, m.name),
        uid: m.uid.clone(),
        node: p
            .spec
            .as_ref()
            .map(|s| s.node_name.clone())
            .unwrap_or_default(),
        deleted,
        owner: keelson_model::controller_of(m).map(|o| (o.kind.clone(), o.uid.clone())),
        succeeded: p.status.as_ref().is_some_and(|s| s.phase == "Succeeded"),
    }
}

fn job_seen(j: &v1::Job) -> JobSeen {
    let m = j.meta();
    JobSeen {
        revision: revision_of(m),
        name: m.name.clone(),
        uid: m.uid.clone(),
        cron_job: keelson_model::controller_of(m)
            .filter(|o| o.kind == "CronJob")
            .map(|o| o.uid.clone()),
        scheduled: m
            .annotations
            .get("batch.kubernetes.io/cronjob-scheduled-timestamp")
            .cloned()
            .unwrap_or_default(),
    }
}

fn deployment_change(d: &v1::Deployment, deleted: bool) -> Change {
    let m = d.meta();
    let spec = d.spec.clone().unwrap_or_default();
    let strategy = spec.strategy.unwrap_or_default();
    let max_surge = (strategy.r#type.is_empty() || strategy.r#type == "RollingUpdate").then(|| {
        strategy
            .rolling_update
            .map(|r| r.max_surge)
            .unwrap_or_default()
    });
    Change::Deployment {
        revision: revision_of(m),
        uid: m.uid.clone(),
        name: m.name.clone(),
        generation: m.generation,
        observed_generation: d.status.as_ref().map_or(0, |s| s.observed_generation),
        replicas: i64::from(spec.replicas.unwrap_or(1)),
        max_surge,
        deleted,
    }
}

fn replicaset_change(r: &v1::ReplicaSet, deleted: bool) -> Change {
    let m = r.meta();
    Change::ReplicaSet {
        revision: revision_of(m),
        uid: m.uid.clone(),
        name: m.name.clone(),
        owner: keelson_model::controller_of(m).map(|o| o.uid.clone()),
        replicas: i64::from(r.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)),
        deleted,
    }
}

/// One watch of `K` in the default namespace from `from`, resuming after
/// every break from the last resourceVersion it got to, until `stop` holds
/// a revision it has reached. False: it could not resume (compacted).
async fn watch_kind<K: Resource>(
    cl: Client,
    from: String,
    stop: Arc<Mutex<Option<i64>>>,
    rec: Arc<CpRecord>,
    on: impl Fn(&CpRecord, &K, bool) + Send + 'static,
) -> bool {
    let api: Api<K> = Api::namespaced(cl, "default");
    let mut rv = from;
    let reached = |rv: &str| {
        let at: i64 = rv.parse().unwrap_or(0);
        stop.lock().ok().and_then(|s| *s).is_some_and(|s| at >= s)
    };
    loop {
        if reached(&rv) {
            return true;
        }
        let opened = tokio::time::timeout(
            Duration::from_secs(5),
            api.watch_with_revisions(&ListParams::default(), &rv),
        )
        .await;
        let stream = match opened {
            Ok(Ok(s)) => s,
            Ok(Err(Error::Expired(_))) => return false,
            _ => {
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        let mut stream = std::pin::pin!(stream);
        loop {
            let item = match tokio::time::timeout(Duration::from_millis(500), stream.next()).await {
                Err(_) if reached(&rv) => return true,
                Err(_) => continue,
                Ok(Some(Ok(item))) => item,
                Ok(Some(Err(Error::Expired(_)))) => return false,
                Ok(_) => break,
            };
            let (next, ev) = item;
            match &ev {
                WatchEvent::Added(o) | WatchEvent::Modified(o) => on(&rec, o, false),
                WatchEvent::Deleted(o) => on(&rec, o, true),
                WatchEvent::Bookmark(_) => {}
            }
            rv = next;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The four watchers (pods, ReplicaSets, Deployments, Jobs).
pub fn spawn_watchers(
    cl: &Client,
    from: &str,
    stop: Arc<Mutex<Option<i64>>>,
    rec: &Arc<CpRecord>,
) -> Vec<(&'static str, tokio::task::JoinHandle<bool>)> {
    fn spawn<K: Resource>(
        cl: &Client,
        name: &'static str,
        from: &str,
        stop: &Arc<Mutex<Option<i64>>>,
        rec: &Arc<CpRecord>,
        on: impl Fn(&CpRecord, &K, bool) + Send + 'static,
    ) -> (&'static str, tokio::task::JoinHandle<bool>) {
        let task = watch_kind::<K>(cl.clone(), from.into(), stop.clone(), rec.clone(), on);
        (name, tokio::spawn(task))
    }
    fn push<T>(list: &Mutex<Vec<T>>, item: T) {
        if let Ok(mut v) = list.lock() {
            v.push(item);
        }
    }
    vec![
        spawn(cl, "pods", from, &stop, rec, |r, p: &v1::Pod, deleted| {
            push(&r.pods, pod_seen(p, deleted))
        }),
        spawn(
            cl,
            "replicasets",
            from,
            &stop,
            rec,
            |r, o: &v1::ReplicaSet, deleted| push(&r.changes, replicaset_change(o, deleted)),
        ),
        spawn(
            cl,
            "deployments",
            from,
            &stop,
            rec,
            |r, o: &v1::Deployment, deleted| push(&r.changes, deployment_change(o, deleted)),
        ),
        spawn(cl, "jobs", from, &stop, rec, |r, o: &v1::Job, _| {
            push(&r.jobs_seen, job_seen(o))
        }),
    ]
}

fn seq_of(d: &v1::Deployment) -> Option<u64> {
    d.meta()
        .annotations
        .get(SEQ_ANNOTATION)
        .and_then(|s| s.parse().ok())
}

fn version_of(labels: &BTreeMap<String, String>) -> u64 {
    labels
        .get("version")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// The version label of a pod template (0: none).
fn template_version(t: Option<&v1::PodTemplateSpec>) -> u64 {
    t.and_then(|t| t.metadata.as_ref())
        .map_or(0, |m| version_of(&m.labels))
}

/// One spec change, identified by `seq`: read, change, write with the
/// read's resourceVersion; again on a conflict or an error, and
/// acknowledged as soon as a write succeeds or a read shows `seq` (an
/// earlier attempt landed). Unknown if no attempt could tell.
async fn change_spec(
    api: &Api<v1::Deployment>,
    name: &str,
    seq: u64,
    change: impl Fn(&mut v1::DeploymentSpec),
) -> Option<bool> {
    for _ in 0..5 {
        let mut d = match api.get(name).await {
            Ok(d) => d,
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        if seq_of(&d) == Some(seq) {
            return Some(true);
        }
        d.meta_mut()
            .annotations
            .insert(SEQ_ANNOTATION.into(), seq.to_string());
        if let Some(spec) = d.spec.as_mut() {
            change(spec);
        }
        match api.update(&d).await {
            Ok(_) => return Some(true),
            Err(Error::Invalid(e)) => {
                tracing::warn!("chaos: spec change of {name} refused: {e}");
                return Some(false);
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    None
}

/// Scale the StatefulSet to `replicas` and, with `roll`, bump its
/// template's version label: read, change, write with the read's
/// resourceVersion, again on a conflict or an error. Whether a write
/// succeeded.
async fn change_set(api: &Api<v1::StatefulSet>, replicas: i32, roll: bool) -> bool {
    for _ in 0..5 {
        let Ok(mut set) = api.get(STATEFUL_SET).await else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        if let Some(spec) = set.spec.as_mut() {
            spec.replicas = Some(replicas);
            if let Some(meta) = spec
                .template
                .as_mut()
                .and_then(|t| t.metadata.as_mut())
                .filter(|_| roll)
            {
                let v = version_of(&meta.labels) + 1;
                meta.labels.insert("version".into(), v.to_string());
            }
        }
        match api.update(&set).await {
            Ok(_) => return true,
            Err(Error::Invalid(e)) => {
                tracing::warn!("chaos: spec change of {STATEFUL_SET} refused: {e}");
                return false;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    false
}

/// Until `until`, every 0.3-1.5 s: one Deployment scaled (1-8 replicas),
/// rolled (its template's version label + 1), or both; one time in ten
/// the StatefulSet instead (1-4 replicas), and one in ten a new Job (up to
/// [`JOBS_MAX`]).
pub async fn operator(
    cl: Client,
    deployments: usize,
    seed: u64,
    until: Instant,
    rec: Arc<CpRecord>,
) {
    let api: Api<v1::Deployment> = Api::namespaced(cl.clone(), "default");
    let sets: Api<v1::StatefulSet> = Api::namespaced(cl.clone(), "default");
    let jobs: Api<v1::Job> = Api::namespaced(cl, "default");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ 0xc0de);
    let mut seq = 0u64;
    let mut jobs_made = 0usize;
    loop {
        let wait = Duration::from_millis(rng.random_range(300..1500));
        if Instant::now() + wait >= until {
            return;
        }
        tokio::time::sleep(wait).await;
        match rng.random_range(0..10) {
            0 => {
                let replicas = rng.random_range(1..=4);
                let roll = rng.random_bool(0.5);
                if change_set(&sets, replicas, roll).await {
                    rec.set_changes.fetch_add(1, Ordering::Relaxed);
                }
                continue;
            }
            1 if jobs_made < JOBS_MAX => {
                jobs_made += 1;
                let name = format!("chaos-job-{jobs_made}");
                // Acknowledged once a create lands or finds it there.
                for _ in 0..5 {
                    match jobs.create(&job(&name)).await {
                        Ok(_) | Err(Error::AlreadyExists(_)) => {
                            if let Ok(mut j) = rec.jobs.lock() {
                                j.push(name.clone());
                            }
                            break;
                        }
                        Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
                    }
                }
                continue;
            }
            _ => {}
        }
        let name = deployment_name(rng.random_range(0..deployments));
        let action = rng.random_range(0..3);
        let replicas: i32 = rng.random_range(1..=8);
        seq += 1;
        let acked = change_spec(&api, &name, seq, |spec| {
            if action != 1 {
                spec.replicas = Some(replicas);
            }
            if action != 0 {
                if let Some(meta) = spec.template.as_mut().and_then(|t| t.metadata.as_mut()) {
                    let v = version_of(&meta.labels) + 1;
                    meta.labels.insert("version".into(), v.to_string());
                }
            }
        })
        .await;
        if action != 1 {
            rec.scaled.fetch_add(1, Ordering::Relaxed);
        }
        if action != 0 {
            rec.rolled.fetch_add(1, Ordering::Relaxed);
        }
        if let Ok(mut w) = rec.writes.lock() {
            w.push(SpecWrite {
                deployment: name,
                seq,
                acked,
            });
        }
    }
}

/// Deployment `name` at its desired state: the controller has seen its
/// spec, its status counts exactly `replicas` updated, ready and available
/// pods, and exactly that many live pods exist, bound, Ready, of its
/// template's version.
async fn at_desired_state(cl: &Client, name: &str) -> bool {
    let deployments: Api<v1::Deployment> = Api::namespaced(cl.clone(), "default");
    let pods: Api<v1::Pod> = Api::namespaced(cl.clone(), "default");
    let Ok(d) = deployments.get(name).await else {
        return false;
    };
    let spec = d.spec.clone().unwrap_or_default();
    let want = spec.replicas.unwrap_or(1);
    let version = template_version(spec.template.as_ref());
    let st = d.status.clone().unwrap_or_default();
    if st.observed_generation != d.meta().generation
        || st.replicas != want
        || st.updated_replicas != want
        || st.ready_replicas != want
        || st.available_replicas != want
    {
        return false;
    }
    live_pods_ready(&pods, name, want, version).await
}

/// Exactly `want` live pods labelled `app=<app>` exist, all bound, Ready
/// and of template version `version`.
async fn live_pods_ready(pods: &Api<v1::Pod>, app: &str, want: i32, version: u64) -> bool {
    let Ok(list) = pods
        .list(&ListParams::default().labels(&format!("app={app}")))
        .await
    else {
        return false;
    };
    let live: Vec<&v1::Pod> = list
        .items
        .iter()
        .filter(|p| p.meta().deletion_timestamp.is_empty())
        .collect();
    live.len() == usize::try_from(want).unwrap_or(0)
        && live.iter().all(|p| {
            is_ready(p)
                && version_of(&p.meta().labels) == version
                && p.spec.as_ref().is_some_and(|s| !s.node_name.is_empty())
        })
}

/// The StatefulSet at its desired state: the controller has seen its
/// spec, every replica is updated and ready at one revision, and exactly
/// `replicas` live pods exist, bound, Ready, of its template's version.
async fn set_at_desired_state(cl: &Client) -> bool {
    let sets: Api<v1::StatefulSet> = Api::namespaced(cl.clone(), "default");
    let pods: Api<v1::Pod> = Api::namespaced(cl.clone(), "default");
    let Ok(set) = sets.get(STATEFUL_SET).await else {
        return false;
    };
    let spec = set.spec.clone().unwrap_or_default();
    let want = spec.replicas.unwrap_or(1);
    let version = template_version(spec.template.as_ref());
    let st = set.status.clone().unwrap_or_default();
    if st.observed_generation != set.meta().generation
        || st.replicas != want
        || st.ready_replicas != want
        || st.updated_replicas != want
        || st.current_revision != st.update_revision
    {
        return false;
    }
    live_pods_ready(&pods, STATEFUL_SET, want, version).await
}

/// Job `name` complete: [`JOB_COMPLETIONS`] succeeded and the Complete
/// condition.
async fn job_complete(cl: &Client, name: &str) -> bool {
    let jobs: Api<v1::Job> = Api::namespaced(cl.clone(), "default");
    let Ok(j) = jobs.get(name).await else {
        return false;
    };
    let st = j.status.unwrap_or_default();
    usize::try_from(st.succeeded).ok() == Some(JOB_COMPLETIONS)
        && st
            .conditions
            .iter()
            .any(|c| c.r#type == "Complete" && c.status == "True")
}

/// How long the StatefulSet and each Job in `jobs` take to reach their
/// desired state (polled every 200 ms), giving up after `bound`; keyed
/// `statefulset/<name>`, `job/<name>`.
pub async fn wait_workloads(
    cl: &Client,
    jobs: &[String],
    bound: Duration,
) -> BTreeMap<String, Option<Duration>> {
    let t0 = Instant::now();
    let mut took: BTreeMap<String, Option<Duration>> =
        std::iter::once(format!("statefulset/{STATEFUL_SET}"))
            .chain(jobs.iter().map(|j| format!("job/{j}")))
            .map(|k| (k, None))
            .collect();
    while t0.elapsed() <= bound {
        let pending: Vec<String> = took
            .iter()
            .filter(|(_, t)| t.is_none())
            .map(|(n, _)| n.clone())
            .collect();
        if pending.is_empty() {
            break;
        }
        for key in pending {
            let check = async {
                match key.split_once('/') {
                    Some(("job", name)) => job_complete(cl, name).await,
                    _ => set_at_desired_state(cl).await,
                }
            };
            let ok = tokio::time::timeout(Duration::from_secs(5), check)
                .await
                .unwrap_or(false);
            if ok {
                took.insert(key, Some(t0.elapsed()));
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    took
}

/// One line on where Deployment `name` stands (for a report).
pub async fn describe(cl: &Client, name: &str) -> String {
    let deployments: Api<v1::Deployment> = Api::namespaced(cl.clone(), "default");
    let pods: Api<v1::Pod> = Api::namespaced(cl.clone(), "default");
    let sets: Api<v1::ReplicaSet> = Api::namespaced(cl.clone(), "default");
    let d = match deployments.get(name).await {
        Ok(d) => d,
        Err(e) => return format!("get: {e}"),
    };
    let spec = d.spec.clone().unwrap_or_default();
    let st = d.status.clone().unwrap_or_default();
    let version = template_version(spec.template.as_ref());
    let mut out = format!(
        "spec replicas {:?} version {version} generation {}; status observed {} replicas {} updated {} ready {} available {}",
        spec.replicas,
        d.meta().generation,
        st.observed_generation,
        st.replicas,
        st.updated_replicas,
        st.ready_replicas,
        st.available_replicas
    );
    for c in &st.conditions {
        out.push_str(&format!(
            "; {}={} ({}: {})",
            c.r#type, c.status, c.reason, c.message
        ));
    }
    let selector = ListParams::default().labels(&format!("app={name}"));
    if let Ok(l) = sets.list(&selector).await {
        for r in l.items {
            let rs = r.status.clone().unwrap_or_default();
            out.push_str(&format!(
                "\n    rs {} replicas {:?} version {} (status replicas {} ready {} available {}, observed {} of generation {})",
                r.meta().name,
                r.spec.as_ref().and_then(|s| s.replicas),
                template_version(r.spec.as_ref().and_then(|s| s.template.as_ref())),
                rs.replicas,
                rs.ready_replicas,
                rs.available_replicas,
                rs.observed_generation,
                r.meta().generation
            ));
        }
    }
    if let Ok(l) = pods.list(&selector).await {
        for p in l.items {
            out.push_str(&format!(
                "\n    pod {} version {} node {:?} phase {:?} ready {} deleting {}",
                p.meta().name,
                version_of(&p.meta().labels),
                p.spec
                    .as_ref()
                    .map(|s| s.node_name.clone())
                    .unwrap_or_default(),
                p.status
                    .as_ref()
                    .map(|s| s.phase.clone())
                    .unwrap_or_default(),
                is_ready(&p),
                !p.meta().deletion_timestamp.is_empty()
            ));
        }
    }
    out
}

/// How long each Deployment takes to reach its desired state (polled
/// every 200 ms), giving up after `bound`.
pub async fn wait_converged(
    cl: &Client,
    deployments: usize,
    bound: Duration,
) -> BTreeMap<String, Option<Duration>> {
    let t0 = Instant::now();
    let mut took: BTreeMap<String, Option<Duration>> = (0..deployments)
        .map(|i| (deployment_name(i), None))
        .collect();
    while t0.elapsed() <= bound {
        let pending: Vec<String> = took
            .iter()
            .filter(|(_, t)| t.is_none())
            .map(|(n, _)| n.clone())
            .collect();
        if pending.is_empty() {
            break;
        }
        for name in pending {
            let ok = tokio::time::timeout(Duration::from_secs(5), at_desired_state(cl, &name))
                .await
                .unwrap_or(false);
            if ok {
                took.insert(name, Some(t0.elapsed()));
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    took
}

/// The spec change each Deployment ends with (its sequence annotation).
pub async fn final_seqs(cl: &Client, deployments: usize) -> BTreeMap<String, Option<u64>> {
    let api: Api<v1::Deployment> = Api::namespaced(cl.clone(), "default");
    let mut out = BTreeMap::new();
    for i in 0..deployments {
        let name = deployment_name(i);
        let seq = api.get(&name).await.ok().and_then(|d| seq_of(&d));
        out.insert(name, seq);
    }
    out
}

/// The latest revision of the default namespace's objects (a list's).
pub async fn current_revision(cl: &Client) -> anyhow::Result<i64> {
    let api: Api<v1::Pod> = Api::namespaced(cl.clone(), "default");
    let rv = api
        .list(&ListParams::default().limit(1))
        .await?
        .resource_version;
    rv.parse()
        .with_context(|| format!("resourceVersion {rv:?} is not a revision"))
}

/// The control plane's verdicts. `took` is the Deployments' convergence,
/// `others` the StatefulSet's and the Jobs'.
pub fn verdicts(
    rec: &CpRecord,
    complete: &[&str],
    took: &BTreeMap<String, Option<Duration>>,
    others: &BTreeMap<String, Option<Duration>>,
    bound: Duration,
    seqs: &BTreeMap<String, Option<u64>>,
) -> Vec<Verdict> {
    let pods = rec.pods.lock().map(|p| p.clone()).unwrap_or_default();
    let changes = rec.changes.lock().map(|c| c.clone()).unwrap_or_default();
    let writes = rec.writes.lock().map(|w| w.clone()).unwrap_or_default();
    let jobs = rec.jobs_seen.lock().map(|j| j.clone()).unwrap_or_default();
    vec![
        Verdict {
            name: "every control-plane watch saw the whole run".into(),
            ok: complete.len() == 4,
            detail: format!("complete: {complete:?} of pods, replicasets, deployments, jobs"),
        },
        controlplane::no_pod_bound_twice(&pods),
        controlplane::surge_respected(&changes),
        controlplane::spec_writes_kept(&writes, seqs),
        controlplane::converged("Deployment", took, bound),
        controlplane::one_pod_per_ordinal(&pods),
        controlplane::job_completions_respected(&pods, JOB_COMPLETIONS),
        controlplane::one_job_per_schedule_time(&jobs),
        controlplane::converged("StatefulSet and Job", others, bound),
    ]
}
