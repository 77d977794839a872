//! The Deployment loop around [`keelson_controllers::deployment::reconcile`].
//! Actions are carried out in order; writes to existing ReplicaSets and to
//! the Deployment are compare-and-swap, so a decision made on a stale cache
//! fails (and is made again on the next pass). A ReplicaSet's name is the
//! Deployment's plus its template hash, so a create repeated because the
//! cache lagged fails with AlreadyExists instead of making a second one.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use keelson_controllers::deployment::{reconcile, Action};
use keelson_proto::v1;
use keelson_sdk::{DeleteParams, Error, Involved, Resource};

use crate::replicasets::controller_uid;
use crate::Ctx;

const RESYNC: Duration = Duration::from_secs(1);

pub async fn run(ctx: Arc<Ctx>) {
    let mut changes = vec![
        ctx.deployments.changes(),
        ctx.replicasets.changes(),
        ctx.pods.changes(),
    ];
    let mut leadership = ctx.leadership.clone();
    loop {
        if ctx
            .wait_for_work(&mut changes, &mut leadership, RESYNC)
            .await
        {
            pass(&ctx).await;
        }
    }
}

async fn pass(ctx: &Ctx) {
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
            continue;
        }
        if !ctx.leading() {
            return;
        }
        act(ctx, &d, actions).await;
    }
}

async fn act(ctx: &Ctx, d: &v1::Deployment, actions: Vec<Action>) {
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
        if let Err(e) = r {
            // A conflict means the cache was stale: the next pass decides
            // again from the newer state. Later actions assumed this one.
            tracing::debug!(deployment = %d.meta().name, error = %e, "deployment action");
            return;
        }
    }
}
