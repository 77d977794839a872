//! The ReplicaSet controller around
//! [`keelson_controllers::replicaset::reconcile`]: for each ReplicaSet, adopt
//! matching orphan pods, create or delete pods to reach `replicas`, and
//! write its status. Retried per ReplicaSet (key `namespace/name`).
//!
//! **Expectations** (Kubernetes' `ControllerExpectations`): after creating or
//! deleting pods for a ReplicaSet, the controller does not reconcile it
//! again until its pod cache shows those creates and deletes (or a timeout
//! passes), so a lagging cache never makes it create the same pods twice.
//!
//! **Fencing**: before creating or deleting pods, the ReplicaSet's status is
//! written with a compare-and-swap on the resourceVersion the decision was
//! made from. If the ReplicaSet changed meanwhile (scaled, or written by
//! another instance) the write fails and the round is skipped.
//!
//! **Failures** (retried with back-off): the status write, an adoption, a
//! pod create (a `FailedCreate` event, so creates back off as Kubernetes'
//! do) or a pod delete failing. A pod already gone counts as deleted.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant, SystemTime};

use keelson_controllers::replicaset::{reconcile, Action};
use keelson_model::selector::LabelSelector;
use keelson_proto::v1;
use keelson_sdk::watcher::object_key;
use keelson_sdk::{DeleteParams, Error, Involved, Resource};
use tokio::sync::watch;

use crate::controller::{Controller, PassCtx};
use crate::{concurrently, Ctx};

/// How long a ReplicaSet waits for its cache to show its own writes.
const EXPECTATIONS_TIMEOUT: Duration = Duration::from_secs(30);

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

/// The ReplicaSet controller and its expectations.
#[derive(Default)]
pub struct ReplicaSets {
    /// By ReplicaSet uid. Kept across leadership changes: a blip must not
    /// forget pods this instance created that its cache has not shown yet.
    expectations: HashMap<String, Expect>,
}

impl Controller for ReplicaSets {
    const NAME: &'static str = "replicaset";
    const RESYNC: Duration = Duration::from_secs(1);

    fn changes(ctx: &Ctx) -> Vec<watch::Receiver<u64>> {
        vec![ctx.pods.changes(), ctx.replicasets.changes()]
    }

    async fn pass(&mut self, ctx: &Ctx, p: &mut PassCtx<'_>) {
        pass(ctx, &mut self.expectations, p).await
    }
}

async fn pass(ctx: &Ctx, expectations: &mut HashMap<String, Expect>, p: &mut PassCtx<'_>) {
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
        let key = object_key(&*rs);
        if expectations.contains_key(&m.uid) || !p.due(&key) {
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
            p.succeeded(&key);
            continue;
        }
        if !ctx.leading() {
            return;
        }
        let acted = act(ctx, &rs, actions).await;
        if let Some(e) = acted.expect {
            expectations.insert(m.uid.clone(), e);
        }
        p.report(&key, acted.result);
    }
}

/// What carrying out one ReplicaSet's actions left behind.
struct Acted {
    /// The creates and deletes to wait for, when pods were written.
    expect: Option<Expect>,
    /// The first write that failed.
    result: keelson_sdk::Result<()>,
}

/// Carry out one ReplicaSet's actions.
async fn act(ctx: &Ctx, rs: &v1::ReplicaSet, actions: Vec<Action>) -> Acted {
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
        if let Err(e) = ctx.api::<v1::ReplicaSet>(&ns).update_status(&w).await {
            // Skip this round: the decision was made on a stale copy.
            return Acted {
                expect: None,
                result: Err(e),
            };
        }
    }
    let pods = ctx.api::<v1::Pod>(&ns);
    let adopted = concurrently(adopts, |p| {
        let pods = pods.clone();
        async move {
            match pods.update(&p).await {
                Ok(_) | Err(Error::NotFound(_)) => Ok(()),
                Err(e) => Err(e),
            }
        }
    })
    .await;
    let mut result: keelson_sdk::Result<()> = adopted.into_iter().collect();
    if !scaling {
        return Acted {
            expect: None,
            result,
        };
    }
    let involved = Involved::of(rs);
    // Each write: Ok(Some(name)) done, Ok(None) not tried (leadership lost).
    let created = concurrently(creates, |p| {
        let pods = pods.clone();
        let involved = involved.clone();
        async move {
            // Leadership is checked before every write, not once a pass:
            // an instance that lost its lease stops within one request.
            if !ctx.leading() {
                return Ok(None);
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
                    Ok(Some(name))
                }
                Err(e) => {
                    ctx.recorder.record(
                        involved,
                        "Warning",
                        "FailedCreate",
                        &format!("Error creating: {e}"),
                    );
                    Err(e)
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
                return Ok(None);
            }
            match pods.delete(&name, &DeleteParams::default()).await {
                Ok(_) | Err(Error::NotFound(_)) => {
                    ctx.recorder.record(
                        involved,
                        "Normal",
                        "SuccessfulDelete",
                        &format!("Deleted pod: {name}"),
                    );
                    Ok(Some(name))
                }
                Err(e) => Err(e),
            }
        }
    })
    .await;
    // The pods written, as pod-cache keys; the first failure goes to `result`.
    let mut written = |writes: Vec<keelson_sdk::Result<Option<String>>>| -> HashSet<String> {
        let mut keys = HashSet::new();
        for w in writes {
            match w {
                Ok(Some(name)) => {
                    keys.insert(pod_key(&ns, &name));
                }
                Ok(None) => {}
                Err(e) => {
                    if result.is_ok() {
                        result = Err(e);
                    }
                }
            }
        }
        keys
    };
    let expect = Expect {
        adds: written(created),
        deletes: written(deleted),
        deadline: Instant::now() + EXPECTATIONS_TIMEOUT,
    };
    Acted {
        expect: Some(expect),
        result,
    }
}
