//! The garbage collector around [`keelson_controllers::gc::reconcile`] over
//! every cached kind that can own or be owned (CronJobs, Jobs, DaemonSets,
//! StatefulSets, ControllerRevisions, ConfigMaps, Secrets, Deployments,
//! ReplicaSets, pods, Services, Endpoints, nodes): it deletes dependents whose owners
//! are gone (background) or being deleted in the foreground, removes
//! ownerReferences for orphan propagation, and removes the
//! `foregroundDeletion`/`orphan` finalizers once their work is done.
//! Retried per object written (key `Kind/namespace/name`).
//!
//! Caches of different kinds lag each other, so an owner missing from its
//! cache is confirmed gone with a read of the owner (by name, then uid)
//! before its dependent is deleted, and that delete carries the
//! dependent's uid as a precondition. Finalizer and ownerReference edits
//! read the object fresh and write it back with a compare-and-swap.
//!
//! **Failures** (retried with back-off): a confirmation or fresh read
//! failing, a delete failing, a compare-and-swap edit conflicting. An
//! object already gone, or replaced (the uid precondition fails), is done.

use std::time::Duration;

use keelson_controllers::gc::{reconcile, Action, Node};
use keelson_model::Kind;
use keelson_proto::v1;
use keelson_sdk::{DeleteParams, Error, Resource, Store};
use tokio::sync::watch;

use crate::controller::{kind_key, Controller, PassCtx};
use crate::{concurrently, Ctx};

/// The kinds in the collector's graph.
const CACHED: [Kind; 13] = [
    Kind::StatefulSet,
    Kind::ControllerRevision,
    Kind::ConfigMap,
    Kind::Secret,
    Kind::DaemonSet,
    Kind::CronJob,
    Kind::Job,
    Kind::Deployment,
    Kind::ReplicaSet,
    Kind::Pod,
    Kind::Service,
    Kind::Endpoints,
    Kind::Node,
];

/// The garbage collector (no state of its own).
pub struct GarbageCollector;

impl Controller for GarbageCollector {
    const NAME: &'static str = "gc";
    const RESYNC: Duration = Duration::from_secs(5);
    /// A pass walks every cached object: under churn (thousands of pods
    /// changing a second) one pass per half second, not one per change.
    const BATCH: Duration = Duration::from_millis(500);

    fn changes(ctx: &Ctx) -> Vec<watch::Receiver<u64>> {
        vec![
            ctx.configmaps.changes(),
            ctx.secrets.changes(),
            ctx.cronjobs.changes(),
            ctx.daemonsets.changes(),
            ctx.statefulsets.changes(),
            ctx.revisions.changes(),
            ctx.jobs.changes(),
            ctx.deployments.changes(),
            ctx.replicasets.changes(),
            ctx.pods.changes(),
            ctx.services.changes(),
            ctx.endpoints.changes(),
            ctx.nodes.changes(),
        ]
    }

    async fn pass(&mut self, ctx: &Ctx, p: &mut PassCtx<'_>) {
        pass(ctx, p).await
    }
}

/// The key of the object an action writes.
fn target(a: &Action) -> String {
    let (kind, namespace, name) = match a {
        Action::DeleteOrphaned {
            kind,
            namespace,
            name,
            ..
        }
        | Action::DeleteDependent {
            kind,
            namespace,
            name,
            ..
        }
        | Action::RemoveOwnerRef {
            kind,
            namespace,
            name,
            ..
        }
        | Action::RemoveFinalizer {
            kind,
            namespace,
            name,
            ..
        } => (kind, namespace, name),
    };
    kind_key(kind.name(), namespace, name)
}

fn nodes_of<K: Resource>(store: &Store<K>, out: &mut Vec<Node>) {
    for o in store.snapshot().values() {
        let m = o.meta();
        out.push(Node {
            kind: K::KIND,
            namespace: m.namespace.clone(),
            name: m.name.clone(),
            uid: m.uid.clone(),
            owners: m.owner_references.clone(),
            finalizers: m.finalizers.clone(),
            deleting: !m.deletion_timestamp.is_empty(),
        });
    }
}

async fn pass(ctx: &Ctx, p: &mut PassCtx<'_>) {
    let mut graph = Vec::new();
    nodes_of(&ctx.configmaps, &mut graph);
    nodes_of(&ctx.secrets, &mut graph);
    nodes_of(&ctx.cronjobs, &mut graph);
    nodes_of(&ctx.daemonsets, &mut graph);
    nodes_of(&ctx.statefulsets, &mut graph);
    nodes_of(&ctx.revisions, &mut graph);
    nodes_of(&ctx.jobs, &mut graph);
    nodes_of(&ctx.deployments, &mut graph);
    nodes_of(&ctx.replicasets, &mut graph);
    nodes_of(&ctx.pods, &mut graph);
    nodes_of(&ctx.services, &mut graph);
    nodes_of(&ctx.endpoints, &mut graph);
    nodes_of(&ctx.nodes, &mut graph);
    // Owners of kinds this collector does not cache (a custom resource from a
    // Kubernetes manifest, a Namespace...) cannot be seen
    // to be gone: their dependents are left alone.
    let actions: Vec<(String, Action)> = reconcile(&graph)
        .into_iter()
        .filter(|a| match a {
            Action::DeleteOrphaned { owners, .. } => owners
                .iter()
                .all(|o| Kind::parse(&o.kind).is_some_and(|k| CACHED.contains(&k))),
            _ => true,
        })
        .map(|a| (target(&a), a))
        .filter(|(key, _)| p.due(key))
        .collect();
    if actions.is_empty() || !ctx.leading() {
        return;
    }
    let results = concurrently(actions, |(key, a)| async move { (key, act(ctx, a).await) }).await;
    for (key, r) in results {
        p.report(&key, r);
    }
}

async fn act(ctx: &Ctx, a: Action) -> keelson_sdk::Result<()> {
    match a {
        Action::DeleteOrphaned {
            kind,
            namespace,
            name,
            uid,
            owners,
        } => {
            for o in &owners {
                if owner_exists(ctx, &namespace, o).await? {
                    return Ok(());
                }
            }
            delete(ctx, kind, &namespace, &name, &uid, "Background").await
        }
        Action::DeleteDependent {
            kind,
            namespace,
            name,
            uid,
        } => delete(ctx, kind, &namespace, &name, &uid, "Foreground").await,
        Action::RemoveOwnerRef {
            kind,
            namespace,
            name,
            uid,
            owner_uid,
        } => {
            edit_meta(ctx, kind, &namespace, &name, &uid, |m| {
                let before = m.owner_references.len();
                m.owner_references.retain(|r| r.uid != owner_uid);
                m.owner_references.len() != before
            })
            .await
        }
        Action::RemoveFinalizer {
            kind,
            namespace,
            name,
            uid,
            finalizer,
        } => {
            edit_meta(ctx, kind, &namespace, &name, &uid, |m| {
                let before = m.finalizers.len();
                m.finalizers.retain(|f| *f != finalizer);
                m.finalizers.len() != before
            })
            .await
        }
    }
}

/// Whether the owner a reference names exists (same uid), read live.
async fn owner_exists(
    ctx: &Ctx,
    namespace: &str,
    r: &v1::OwnerReference,
) -> keelson_sdk::Result<bool> {
    let Some(kind) = Kind::parse(&r.kind) else {
        // A kind this API does not serve: not ours to judge.
        return Ok(true);
    };
    let ns = if kind.namespaced() { namespace } else { "" };
    macro_rules! get_uid {
        ($t:ty) => {
            ctx.api::<$t>(ns)
                .get(&r.name)
                .await
                .map(|o| o.meta().uid.clone())
        };
    }
    let uid = keelson_model::for_kind!(kind, T => get_uid!(T));
    match uid {
        Ok(u) => Ok(u == r.uid),
        Err(Error::NotFound(_)) => Ok(false),
        Err(e) => Err(e),
    }
}

async fn delete(
    ctx: &Ctx,
    kind: Kind,
    namespace: &str,
    name: &str,
    uid: &str,
    propagation: &str,
) -> keelson_sdk::Result<()> {
    let p = DeleteParams {
        propagation_policy: propagation.to_string(),
        precondition_uid: uid.to_string(),
        ..Default::default()
    };
    macro_rules! del {
        ($t:ty) => {
            ctx.api::<$t>(namespace).delete(name, &p).await.map(drop)
        };
    }
    let r = keelson_model::for_kind!(kind, T => del!(T));
    // Gone, or replaced by a namesake (the uid precondition failed): done.
    match r {
        Err(Error::NotFound(_)) | Err(Error::Conflict(_)) => Ok(()),
        r => r,
    }
}

/// Read the object, apply `f` to its metadata and write it back with a
/// compare-and-swap (nothing when `f` changes nothing or the uid differs).
async fn edit_meta(
    ctx: &Ctx,
    kind: Kind,
    namespace: &str,
    name: &str,
    uid: &str,
    f: impl Fn(&mut v1::ObjectMeta) -> bool,
) -> keelson_sdk::Result<()> {
    macro_rules! edit {
        ($t:ty) => {{
            let api = ctx.api::<$t>(namespace);
            let mut o = match api.get(name).await {
                Ok(o) => o,
                Err(Error::NotFound(_)) => return Ok(()),
                Err(e) => return Err(e),
            };
            if o.meta().uid != uid || !f(o.meta_mut()) {
                return Ok(());
            }
            // A conflict is a failure: the object changed since the read,
            // and the retry reads it again.
            match api.update(&o).await {
                Ok(_) | Err(Error::NotFound(_)) => Ok(()),
                Err(e) => Err(e),
            }
        }};
    }
    keelson_model::for_kind!(kind, T => edit!(T))
}
