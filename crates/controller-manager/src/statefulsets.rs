//! The StatefulSet controller around
//! [`keelson_controllers::statefulset::reconcile`]: for each StatefulSet,
//! write its status (the fence: a compare-and-swap on the StatefulSet the
//! decision was made from), then its revisions, then its pods, then drop
//! old revisions. Retried per StatefulSet (key `namespace/name`).
//!
//! As the DaemonSet controller, after pod writes the set waits for its
//! cache to show them ([`crate::expectations`]); a pod's fixed name means a
//! lagging cache could otherwise only cause AlreadyExists, but it would
//! also let an OrderedReady set act on a stale view of its pods.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime};

use keelson_controllers::statefulset::{reconcile, Action};
use keelson_proto::v1;
use keelson_sdk::watcher::object_key;
use keelson_sdk::{DeleteParams, Error, Involved, Resource};
use tokio::sync::watch;

use crate::controller::{Controller, PassCtx};
use crate::expectations::{self, Expect};
use crate::{by_namespace, concurrently, history, Ctx};

/// The StatefulSet controller and its expectations (by StatefulSet uid).
#[derive(Default)]
pub struct StatefulSets {
    expectations: HashMap<String, Expect>,
}

impl Controller for StatefulSets {
    const NAME: &'static str = "statefulset";
    /// minReadySeconds passes by the clock.
    const RESYNC: Duration = Duration::from_secs(1);

    fn changes(ctx: &Ctx) -> Vec<watch::Receiver<u64>> {
        vec![
            ctx.statefulsets.changes(),
            ctx.pods.changes(),
            ctx.revisions.changes(),
        ]
    }

    async fn pass(&mut self, ctx: &Ctx, p: &mut PassCtx<'_>) {
        let sets = ctx.statefulsets.list();
        if sets.is_empty() {
            return;
        }
        let pods = ctx.pods.snapshot();
        expectations::prune(&mut self.expectations, &pods, Instant::now());
        // Pods and revisions by namespace: a set looks at its own and at
        // orphans of its names.
        let pods_in = by_namespace(pods.values().map(|p| &**p));
        let revisions = ctx.revisions.list();
        let revisions_in = by_namespace(revisions.iter().map(|r| &**r));
        for sts in sets {
            let m = sts.meta();
            let key = object_key(&*sts);
            if self.expectations.contains_key(&m.uid) || !p.due(&key) {
                continue;
            }
            let ns = m.namespace.as_str();
            let prefix = format!("{}-", m.name);
            let mine: Vec<&v1::Pod> = pods_in
                .get(ns)
                .into_iter()
                .flatten()
                .filter(|p| p.meta().name.starts_with(&prefix))
                .copied()
                .collect();
            let revs: &[&v1::ControllerRevision] = revisions_in.get(ns).map_or(&[], Vec::as_slice);
            let actions = reconcile(&sts, &mine, revs, SystemTime::now());
            if actions.is_empty() {
                p.succeeded(&key);
                continue;
            }
            if !ctx.leading() {
                return;
            }
            let (expect, result) = act(ctx, &sts, actions).await;
            if let Some(e) = expect {
                self.expectations.insert(m.uid.clone(), e);
            }
            p.report(&key, result);
        }
    }
}

async fn act(
    ctx: &Ctx,
    sts: &v1::StatefulSet,
    actions: Vec<Action>,
) -> (Option<Expect>, keelson_sdk::Result<()>) {
    let ns = sts.meta().namespace.clone();
    let mut status = None;
    let mut revision_writes = Vec::new();
    let (mut creates, mut adopts, mut deletes) = (Vec::new(), Vec::new(), Vec::new());
    for a in actions {
        match a {
            Action::UpdateStatus(s) => status = Some(s),
            Action::Revision(w) => revision_writes.push(w),
            Action::CreatePod(p) => creates.push(*p),
            Action::AdoptPod(p) => adopts.push(*p),
            Action::DeletePod(n) => deletes.push((n, DeleteParams::default())),
        }
    }
    // The fence (also when only pods or revisions change).
    let mut w = sts.clone();
    if let Some(s) = status {
        w.status = Some(s);
    }
    if let Err(e) = ctx.api::<v1::StatefulSet>(&ns).update_status(&w).await {
        return (None, Err(e));
    }
    // Revisions before the pods that name them.
    let old_revisions = match history::write_revisions(ctx, &ns, revision_writes).await {
        Ok(deletes) => deletes,
        Err(e) => return (None, Err(e)),
    };
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
    let mut expect = None;
    if !creates.is_empty() || !deletes.is_empty() {
        let (e, written) =
            expectations::write_pods(ctx, &Involved::of(sts), &ns, creates, deletes).await;
        expect = Some(e);
        result = result.and(written);
    }
    if result.is_ok() {
        result = history::delete_revisions(ctx, &ns, old_revisions).await;
    }
    (expect, result)
}
