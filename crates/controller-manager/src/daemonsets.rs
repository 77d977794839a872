//! The DaemonSet controller around
//! [`keelson_controllers::daemonset::reconcile`]: for each DaemonSet, write
//! its status, then its template's ControllerRevision, then create and
//! delete pods, then drop old revisions ([`crate::history`]). Retried per
//! DaemonSet (key `namespace/name`).
//!
//! As the ReplicaSet controller: the status is written first, a
//! compare-and-swap on the DaemonSet the decision was made from (the
//! fence), and after pod writes the DaemonSet waits for its cache to show
//! them ([`crate::expectations`]).

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime};

use keelson_controllers::daemonset::{reconcile, Action};
use keelson_proto::v1;
use keelson_sdk::watcher::object_key;
use keelson_sdk::{DeleteParams, Involved, Resource};
use tokio::sync::watch;

use crate::controller::{Controller, PassCtx};
use crate::expectations::{self, Expect};
use crate::{by_namespace, history, Ctx};

/// The DaemonSet controller and its expectations (by DaemonSet uid).
#[derive(Default)]
pub struct DaemonSets {
    expectations: HashMap<String, Expect>,
}

impl Controller for DaemonSets {
    const NAME: &'static str = "daemonset";
    /// minReadySeconds passes by the clock.
    const RESYNC: Duration = Duration::from_secs(1);

    fn changes(ctx: &Ctx) -> Vec<watch::Receiver<u64>> {
        vec![
            ctx.daemonsets.changes(),
            ctx.pods.changes(),
            ctx.nodes.changes(),
            ctx.revisions.changes(),
        ]
    }

    async fn pass(&mut self, ctx: &Ctx, p: &mut PassCtx<'_>) {
        let daemonsets = ctx.daemonsets.list();
        if daemonsets.is_empty() {
            return;
        }
        let pods = ctx.pods.snapshot();
        expectations::prune(&mut self.expectations, &pods, Instant::now());
        let nodes: Vec<v1::Node> = ctx.nodes.list().iter().map(|n| (**n).clone()).collect();
        let revisions = ctx.revisions.list();
        let revisions_in = by_namespace(revisions.iter().map(|r| &**r));
        let mut owned: HashMap<&str, Vec<&v1::Pod>> = HashMap::new();
        for pod in pods.values() {
            let Some(owner) = keelson_model::controller_of(pod.meta()) else {
                continue;
            };
            if owner.kind == "DaemonSet" {
                owned.entry(owner.uid.as_str()).or_default().push(pod);
            }
        }
        for ds in daemonsets {
            let m = ds.meta();
            let key = object_key(&*ds);
            if self.expectations.contains_key(&m.uid) || !p.due(&key) {
                continue;
            }
            let mine: &[&v1::Pod] = owned.get(m.uid.as_str()).map_or(&[], Vec::as_slice);
            let revs: &[&v1::ControllerRevision] = revisions_in
                .get(m.namespace.as_str())
                .map_or(&[], Vec::as_slice);
            let actions = reconcile(&ds, &nodes, mine, revs, SystemTime::now());
            if actions.is_empty() {
                p.succeeded(&key);
                continue;
            }
            if !ctx.leading() {
                return;
            }
            let (expect, result) = act(ctx, &ds, actions).await;
            if let Some(e) = expect {
                self.expectations.insert(m.uid.clone(), e);
            }
            p.report(&key, result);
        }
    }
}

async fn act(
    ctx: &Ctx,
    ds: &v1::DaemonSet,
    actions: Vec<Action>,
) -> (Option<Expect>, keelson_sdk::Result<()>) {
    let ns = ds.meta().namespace.clone();
    let mut status = None;
    let (mut creates, mut deletes, mut revision_writes) = (Vec::new(), Vec::new(), Vec::new());
    for a in actions {
        match a {
            Action::UpdateStatus(s) => status = Some(s),
            Action::CreatePod(p) => creates.push(*p),
            Action::DeletePod { name, force } => deletes.push((name, force)),
            Action::Revision(w) => revision_writes.push(w),
        }
    }
    // The fence (also when only pods change).
    let mut w = ds.clone();
    if let Some(s) = status {
        w.status = Some(s);
    }
    if let Err(e) = ctx.api::<v1::DaemonSet>(&ns).update_status(&w).await {
        return (None, Err(e));
    }
    // Revisions before the pods that name them.
    let old_revisions = match history::write_revisions(ctx, &ns, revision_writes).await {
        Ok(deletes) => deletes,
        Err(e) => return (None, Err(e)),
    };
    if creates.is_empty() && deletes.is_empty() {
        return (
            None,
            history::delete_revisions(ctx, &ns, old_revisions).await,
        );
    }
    let deletes = deletes
        .into_iter()
        .map(|(name, force)| {
            let dp = DeleteParams {
                grace_period_seconds: force.then_some(0),
                ..Default::default()
            };
            (name, dp)
        })
        .collect();
    let (expect, mut result) =
        expectations::write_pods(ctx, &Involved::of(ds), &ns, creates, deletes).await;
    if result.is_ok() {
        result = history::delete_revisions(ctx, &ns, old_revisions).await;
    }
    (Some(expect), result)
}
