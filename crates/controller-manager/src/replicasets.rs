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

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime};

use keelson_controllers::replicaset::{reconcile, Action};
use keelson_model::selector::LabelSelector;
use keelson_proto::v1;
use keelson_sdk::watcher::object_key;
use keelson_sdk::{DeleteParams, Error, Involved, Resource};
use tokio::sync::watch;

use crate::controller::{Controller, PassCtx};
use crate::expectations::{self, Expect};
use crate::{concurrently, Ctx};

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
    expectations::prune(expectations, &pods, now);
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
    let result: keelson_sdk::Result<()> = adopted.into_iter().collect();
    if !scaling {
        return Acted {
            expect: None,
            result,
        };
    }
    let involved = Involved::of(rs);
    let deletes = deletes
        .into_iter()
        .map(|n| (n, DeleteParams::default()))
        .collect();
    let (expect, written) = expectations::write_pods(ctx, &involved, &ns, creates, deletes).await;
    Acted {
        expect: Some(expect),
        result: result.and(written),
    }
}
