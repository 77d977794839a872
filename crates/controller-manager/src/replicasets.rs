//! The ReplicaSet loop around [`keelson_controllers::replicaset::reconcile`].
//!
//! **Expectations** (Kubernetes' `ControllerExpectations`): after creating or
//! deleting pods for a ReplicaSet, the loop does not reconcile it again until
//! its pod cache shows those creates and deletes (or a timeout passes), so a
//! lagging cache never makes it create the same pods twice.
//!
//! **Fencing**: before creating or deleting pods, the ReplicaSet's status is
//! written with a compare-and-swap on the resourceVersion the decision was
//! made from. If the ReplicaSet changed meanwhile (scaled, or written by
//! another instance) the write fails and the round is skipped.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use keelson_controllers::replicaset::{reconcile, Action};
use keelson_model::selector::LabelSelector;
use keelson_proto::v1;
use keelson_sdk::{DeleteParams, Error, Involved, Resource};

use crate::{concurrently, Ctx};

/// How long a ReplicaSet waits for its cache to show its own writes.
const EXPECTATIONS_TIMEOUT: Duration = Duration::from_secs(30);
const RESYNC: Duration = Duration::from_secs(1);

struct Expect {
    adds: HashSet<String>,
    deletes: HashSet<String>,
    deadline: Instant,
}

fn pod_key(ns: &str, name: &str) -> String {
    format!("{ns}/{name}")
}

/// The controller uid of an object, if any.
pub(crate) fn controller_uid(meta: &v1::ObjectMeta) -> Option<&str> {
    keelson_model::controller_of(meta).map(|r| r.uid.as_str())
}

pub async fn run(ctx: Arc<Ctx>) {
    let mut changes = vec![ctx.pods.changes(), ctx.replicasets.changes()];
    let mut leadership = ctx.leadership.clone();
    // Kept across leadership changes: a blip must not forget pods this
    // instance created that its cache has not shown yet.
    let mut expectations: HashMap<String, Expect> = HashMap::new();
    loop {
        if ctx
            .wait_for_work(&mut changes, &mut leadership, RESYNC)
            .await
        {
            pass(&ctx, &mut expectations).await;
        }
    }
}

async fn pass(ctx: &Ctx, expectations: &mut HashMap<String, Expect>) {
    let pods = ctx.pods.snapshot();
    let mut owned: HashMap<&str, Vec<&v1::Pod>> = HashMap::new();
    let mut orphans: HashMap<&str, Vec<&v1::Pod>> = HashMap::new();
    for p in pods.values() {
        let m = p.meta();
        match controller_uid(m) {
            Some(uid) => owned.entry(uid).or_default().push(p),
            // Only active orphans can be adopted.
            None if m.deletion_timestamp.is_empty() => {
                orphans.entry(m.namespace.as_str()).or_default().push(p)
            }
            None => {}
        }
    }
    let now = Instant::now();
    expectations.retain(|_, e| {
        let adds_seen = e.adds.iter().all(|k| pods.contains_key(k));
        let deletes_seen = e.deletes.iter().all(|k| {
            pods.get(k)
                .is_none_or(|p| !p.meta().deletion_timestamp.is_empty())
        });
        !(adds_seen && deletes_seen) && now < e.deadline
    });
    for rs in ctx.replicasets.list() {
        let m = rs.meta();
        if expectations.contains_key(&m.uid) {
            continue;
        }
        let selector = rs
            .spec
            .as_ref()
            .and_then(|s| s.selector.as_ref())
            .and_then(|s| LabelSelector::from_proto(s).ok());
        let mine: Vec<v1::Pod> = owned
            .get(m.uid.as_str())
            .into_iter()
            .flatten()
            .chain(
                orphans
                    .get(m.namespace.as_str())
                    .into_iter()
                    .flatten()
                    .filter(|p| {
                        selector
                            .as_ref()
                            .is_some_and(|s| !s.is_empty() && s.matches(&p.meta().labels))
                    }),
            )
            .map(|p| (*p).clone())
            .collect();
        let actions = reconcile(&rs, &mine, SystemTime::now());
        if actions.is_empty() {
            continue;
        }
        if !ctx.leading() {
            return;
        }
        if let Some(e) = act(ctx, &rs, actions).await {
            expectations.insert(m.uid.clone(), e);
        }
    }
}

/// Carry out one ReplicaSet's actions; the expectations to wait for.
async fn act(ctx: &Ctx, rs: &v1::ReplicaSet, actions: Vec<Action>) -> Option<Expect> {
    let m = rs.meta();
    let ns = m.namespace.clone();
    let mut status = None;
    let mut creates = Vec::new();
    let mut deletes = Vec::new();
    let mut adopts = Vec::new();
    for a in actions {
        match a {
            Action::UpdateStatus(s) => status = Some(s),
            Action::CreatePod(p) => creates.push(p),
            Action::DeletePod { name } => deletes.push(name),
            Action::AdoptPod(p) => adopts.push(p),
        }
    }
    let scaling = !creates.is_empty() || !deletes.is_empty();
    // The fence: a compare-and-swap on the ReplicaSet as it was decided on.
    if status.is_some() || scaling {
        let mut w = rs.clone();
        if let Some(s) = status {
            w.status = Some(s);
        }
        match ctx.api::<v1::ReplicaSet>(&ns).update_status(&w).await {
            Ok(_) => {}
            Err(e) => {
                tracing::debug!(rs = %m.name, error = %e, "replicaset status (skipping this round)");
                return None;
            }
        }
    }
    let pods = ctx.api::<v1::Pod>(&ns);
    concurrently(adopts, |p| {
        let pods = pods.clone();
        async move {
            if let Err(e) = pods.update(&p).await {
                tracing::debug!(pod = %p.meta().name, error = %e, "adopt");
            }
        }
    })
    .await;
    if !scaling {
        return None;
    }
    let involved = Involved::of(rs);
    let created = concurrently(creates, |p| {
        let pods = pods.clone();
        let involved = involved.clone();
        async move {
            // Leadership is checked before every write, not once a pass:
            // an instance that lost its lease stops within one request.
            if !ctx.leading() {
                return None;
            }
            match pods.create(&p).await {
                Ok(c) => {
                    let name = c.meta().name.clone();
                    ctx.recorder.record(
                        involved,
                        "Normal",
                        "SuccessfulCreate",
                        &format!("Created pod: {name}"),
                    );
                    Some(name)
                }
                Err(e) => {
                    ctx.recorder.record(
                        involved,
                        "Warning",
                        "FailedCreate",
                        &format!("Error creating: {e}"),
                    );
                    None
                }
            }
        }
    })
    .await;
    let deleted = concurrently(deletes, |name| {
        let pods = pods.clone();
        let involved = involved.clone();
        async move {
            if !ctx.leading() {
                return None;
            }
            match pods.delete(&name, &DeleteParams::default()).await {
                Ok(_) | Err(Error::NotFound(_)) => {
                    ctx.recorder.record(
                        involved,
                        "Normal",
                        "SuccessfulDelete",
                        &format!("Deleted pod: {name}"),
                    );
                    Some(name)
                }
                Err(e) => {
                    tracing::debug!(pod = %name, error = %e, "delete");
                    None
                }
            }
        }
    })
    .await;
    Some(Expect {
        adds: created
            .into_iter()
            .flatten()
            .map(|n| pod_key(&ns, &n))
            .collect(),
        deletes: deleted
            .into_iter()
            .flatten()
            .map(|n| pod_key(&ns, &n))
            .collect(),
        deadline: Instant::now() + EXPECTATIONS_TIMEOUT,
    })
}
