//! The Deployment controller around
//! [`keelson_controllers::deployment::reconcile`]: for each Deployment, its
//! ReplicaSets (created by template hash, scaled for a rolling update or a
//! recreate, old ones pruned), its revision annotations and its status.
//! Retried per Deployment (key `namespace/name`).
//!
//! Actions are carried out in order; writes to existing ReplicaSets and to
//! the Deployment are compare-and-swap, so a decision made on a stale cache
//! fails (a failure: the Deployment is retried after a back-off, and the
//! actions after the failed one wait for it). A ReplicaSet's name is the
//! Deployment's plus its template hash, so a create repeated because the
//! cache lagged fails with AlreadyExists (counted as done) instead of
//! making a second one; a ReplicaSet already deleted counts as deleted.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use keelson_controllers::deployment::{reconcile, Action};
use keelson_proto::v1;
use keelson_sdk::watcher::object_key;
use keelson_sdk::{DeleteParams, Error, Involved, Resource};
use tokio::sync::watch;

use crate::controller::{Controller, PassCtx};
use crate::replicasets::controller_uid;
use crate::Ctx;

/// The Deployment controller (no state of its own).
pub struct Deployments;

impl Controller for Deployments {
    const NAME: &'static str = "deployment";
    const RESYNC: Duration = Duration::from_secs(1);

    fn changes(ctx: &Ctx) -> Vec<watch::Receiver<u64>> {
        vec![
            ctx.deployments.changes(),
            ctx.replicasets.changes(),
            ctx.pods.changes(),
        ]
    }

    async fn pass(&mut self, ctx: &Ctx, p: &mut PassCtx<'_>) {
        pass(ctx, p).await
    }
}

async fn pass(ctx: &Ctx, p: &mut PassCtx<'_>) {
    let rss = ctx.replicasets.snapshot();
    let mut rs_by_ns: HashMap<&str, Vec<&v1::ReplicaSet>> = HashMap::new();
    for rs in rss.values() {
        rs_by_ns
            .entry(rs.meta().namespace.as_str())
            .or_default()
            .push(rs);
    }
    let pods = ctx.pods.snapshot();
    let mut pods_by_owner: HashMap<&str, Vec<&v1::Pod>> = HashMap::new();
    for p in pods.values() {
        if let Some(uid) = controller_uid(p.meta()) {
            pods_by_owner.entry(uid).or_default().push(p);
        }
    }
    for d in ctx.deployments.list() {
        let key = object_key(&*d);
        if !p.due(&key) {
            continue;
        }
        let ns = d.meta().namespace.as_str();
        let rs_list: Vec<v1::ReplicaSet> = rs_by_ns
            .get(ns)
            .into_iter()
            .flatten()
            .map(|rs| (*rs).clone())
            .collect();
        let pod_list: Vec<v1::Pod> = rs_list
            .iter()
            .flat_map(|rs| {
                pods_by_owner
                    .get(rs.meta().uid.as_str())
                    .into_iter()
                    .flatten()
            })
            .map(|p| (*p).clone())
            .collect();
        let actions = reconcile(&d, &rs_list, &pod_list, SystemTime::now());
        if actions.is_empty() {
            p.succeeded(&key);
            continue;
        }
        if !ctx.leading() {
            return;
        }
        p.report(&key, act(ctx, &d, actions).await);
    }
}

/// Carry out one Deployment's actions in order, up to the first that fails.
async fn act(ctx: &Ctx, d: &v1::Deployment, actions: Vec<Action>) -> keelson_sdk::Result<()> {
    let ns = d.meta().namespace.clone();
    let rss = ctx.api::<v1::ReplicaSet>(&ns);
    let deployments = ctx.api::<v1::Deployment>(&ns);
    let mut current = d.clone();
    for a in actions {
        let r = match a {
            Action::CreateReplicaSet(rs) => match rss.create(&rs).await {
                Err(Error::AlreadyExists(_)) => Ok(()),
                r => r.map(drop),
            },
            Action::UpdateReplicaSet(rs) => rss.update(&rs).await.map(drop),
            Action::DeleteReplicaSet { name, uid } => {
                let p = DeleteParams {
                    precondition_uid: uid,
                    ..Default::default()
                };
                match rss.delete(&name, &p).await {
                    Err(Error::NotFound(_)) => Ok(()),
                    r => r.map(drop),
                }
            }
            Action::UpdateDeployment(dep) => deployments.update(&dep).await.map(|stored| {
                current = stored;
            }),
            Action::UpdateStatus(s) => {
                let mut w = current.clone();
                w.status = Some(s);
                deployments.update_status(&w).await.map(drop)
            }
            Action::Event {
                type_,
                reason,
                message,
            } => {
                ctx.recorder
                    .record(Involved::of(d), &type_, &reason, &message);
                Ok(())
            }
        };
        // A conflict means the cache was stale: the retry decides again
        // from the newer state. Later actions assumed this one.
        r?;
    }
    Ok(())
}
