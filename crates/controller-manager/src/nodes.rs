//! The node lifecycle controller around
//! [`keelson_controllers::nodelifecycle::reconcile`]: nodes whose agent
//! stopped heartbeating get Ready=Unknown and the unreachable taint (and
//! lose them when heartbeats resume), their pods are marked not Ready,
//! evicted when their toleration runs out, and force-deleted once their
//! deletion grace passed. Retried per object written (`Node/<name>`,
//! `Pod/<namespace>/<name>`); a node or pod write failing (a conflict
//! included) is a failure, a pod already gone or replaced is done.
//!
//! A node agent keeps a Lease object `kube-node-lease/<node>` alive,
//! attached to a store lease that its heartbeats renew in the store
//! leader's memory. When the heartbeats stop, the store lease expires and
//! the object is deleted. This controller turns presence into a
//! last-heartbeat time per node by its own clock, and starts every node's
//! clock afresh when this instance becomes leader (and when it first sees
//! a node): after a control-plane failover, nodes get the full grace period
//! before anything is marked. (The store itself also gives every lease a
//! full TTL under a new Raft leader.)

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use keelson_controllers::nodelifecycle::{reconcile, Action, UNREACHABLE_TAINT};
use keelson_model::pod::is_ready;
use keelson_model::time::format_rfc3339;
use keelson_model::Kind;
use keelson_proto::v1;
use keelson_sdk::{DeleteParams, Error, Involved, Resource};
use tokio::sync::watch;

use crate::controller::{kind_key, Controller, PassCtx};
use crate::{concurrently, Ctx};

/// The node lifecycle controller and its heartbeat clocks.
#[derive(Default)]
pub struct NodeLifecycle {
    /// When each node was last heard from, by this instance's clock.
    last_heartbeat: HashMap<String, SystemTime>,
}

impl Controller for NodeLifecycle {
    const NAME: &'static str = "nodelifecycle";
    const RESYNC: Duration = Duration::from_millis(500);

    fn changes(ctx: &Ctx) -> Vec<watch::Receiver<u64>> {
        vec![
            ctx.nodes.changes(),
            ctx.node_leases.changes(),
            ctx.pods.changes(),
        ]
    }

    async fn pass(&mut self, ctx: &Ctx, p: &mut PassCtx<'_>) {
        let last_heartbeat = &mut self.last_heartbeat;
        let now = SystemTime::now();
        if p.became_leader() {
            // The grace after a leadership change: every clock restarts.
            last_heartbeat.clear();
        }
        let nodes: Vec<v1::Node> = ctx.nodes.list().iter().map(|n| (**n).clone()).collect();
        let leases = ctx.node_leases.snapshot();
        last_heartbeat.retain(|name, _| nodes.iter().any(|n| n.meta().name == *name));
        for n in &nodes {
            let name = &n.meta().name;
            let alive = leases.contains_key(&format!("{}/{name}", crate::NODE_LEASE_NAMESPACE));
            if alive {
                last_heartbeat.insert(name.clone(), now);
            } else if !last_heartbeat.contains_key(name) {
                // First sight (or new leadership): a node already marked
                // unreachable stays so (its eviction clock is the taint's);
                // any other node gets the full grace from now.
                let start = if is_marked(n) {
                    SystemTime::UNIX_EPOCH
                } else {
                    now
                };
                last_heartbeat.insert(name.clone(), start);
            }
        }
        // Only pods bound to a node that is not Ready can be affected.
        let troubled: Vec<&str> = nodes
            .iter()
            .filter(|n| is_marked(n))
            .map(|n| n.meta().name.as_str())
            .collect();
        let pods: Vec<v1::Pod> = if troubled.is_empty() {
            Vec::new()
        } else {
            ctx.pods
                .list()
                .iter()
                .filter(|p| {
                    p.spec
                        .as_ref()
                        .is_some_and(|s| troubled.contains(&s.node_name.as_str()))
                })
                .map(|p| (**p).clone())
                .collect()
        };
        let actions = reconcile(&nodes, last_heartbeat, &pods, now, &ctx.options.node);
        if !ctx.leading() {
            return;
        }
        // A node's spec and status writes go one after the other (the
        // second on the first's resourceVersion); the rest in parallel.
        let mut node_writes: Vec<(String, Action)> = Vec::new();
        let mut others: Vec<(String, Action)> = Vec::new();
        for a in actions {
            let key = target(&a);
            if !p.due(&key) {
                continue;
            }
            match a {
                Action::UpdateNode(_) | Action::UpdateNodeStatus(_) => node_writes.push((key, a)),
                a => others.push((key, a)),
            }
        }
        let mut written: HashMap<String, String> = HashMap::new();
        for (key, a) in node_writes {
            let r = write_node(ctx, a, &mut written).await;
            p.report(&key, r);
        }
        let results =
            concurrently(others, |(key, a)| async move { (key, act(ctx, a).await) }).await;
        for (key, r) in results {
            p.report(&key, r);
        }
        mark_pods_not_ready(ctx, &nodes, &pods, p).await;
    }
}

/// The key of the object an action writes (or an event is about).
fn target(a: &Action) -> String {
    match a {
        Action::UpdateNode(n) | Action::UpdateNodeStatus(n) => {
            kind_key(Kind::Node.name(), "", &n.meta().name)
        }
        Action::EvictPod {
            namespace, name, ..
        }
        | Action::ForceDeletePod {
            namespace, name, ..
        } => kind_key(Kind::Pod.name(), namespace, name),
        Action::Event {
            kind,
            namespace,
            name,
            ..
        } => kind_key(kind, namespace, name),
    }
}

/// Whether the node carries the unreachable taint.
fn is_marked(n: &v1::Node) -> bool {
    n.spec
        .as_ref()
        .is_some_and(|s| s.taints.iter().any(|t| t.key == UNREACHABLE_TAINT))
}

/// Write a node's spec or status, chaining resourceVersions per node.
async fn write_node(
    ctx: &Ctx,
    a: Action,
    written: &mut HashMap<String, String>,
) -> keelson_sdk::Result<()> {
    let api = ctx.api::<v1::Node>("");
    let (mut n, status) = match a {
        Action::UpdateNode(n) => (n, false),
        Action::UpdateNodeStatus(n) => (n, true),
        _ => return Ok(()),
    };
    if let Some(rv) = written.get(&n.meta().name) {
        n.meta_mut().resource_version = rv.clone();
    }
    let r = if status {
        api.update_status(&n).await
    } else {
        api.update(&n).await
    };
    // A conflict is a failure: the node changed since the cache showed
    // it, and the retry decides again on the newer copy.
    match r {
        Ok(stored) => {
            written.insert(
                stored.meta().name.clone(),
                stored.meta().resource_version.clone(),
            );
            Ok(())
        }
        Err(Error::NotFound(_)) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Pods on an unreachable node are no longer Ready (so Services stop
/// sending them traffic before they are evicted), as Kubernetes'
/// `MarkPodsNotReady`.
async fn mark_pods_not_ready(ctx: &Ctx, nodes: &[v1::Node], pods: &[v1::Pod], p: &mut PassCtx<'_>) {
    let marked: Vec<&str> = nodes
        .iter()
        .filter(|n| is_marked(n))
        .map(|n| n.meta().name.as_str())
        .collect();
    let ready_on_marked: Vec<(String, v1::Pod)> = pods
        .iter()
        .filter(|pod| {
            pod.spec
                .as_ref()
                .is_some_and(|s| marked.contains(&s.node_name.as_str()))
                && is_ready(pod)
        })
        .map(|pod| {
            let m = pod.meta();
            (
                kind_key(Kind::Pod.name(), &m.namespace, &m.name),
                pod.clone(),
            )
        })
        .filter(|(key, _)| p.due(key))
        .collect();
    let at = format_rfc3339(SystemTime::now());
    let results = concurrently(ready_on_marked, |(key, mut pod)| {
        let at = at.clone();
        async move {
            if let Some(s) = pod.status.as_mut() {
                for c in &mut s.conditions {
                    if c.r#type == "Ready" {
                        c.status = "False".into();
                        c.reason = "NodeUnreachable".into();
                        c.message = "the pod's node stopped heartbeating".into();
                        c.last_transition_time = at.clone();
                    }
                }
            }
            let api = ctx.api::<v1::Pod>(&pod.meta().namespace);
            let r = match api.update_status(&pod).await {
                Ok(_) | Err(Error::NotFound(_)) => Ok(()),
                Err(e) => Err(e),
            };
            (key, r)
        }
    })
    .await;
    for (key, r) in results {
        p.report(&key, r);
    }
}

async fn act(ctx: &Ctx, a: Action) -> keelson_sdk::Result<()> {
    // Gone, or replaced by a namesake (the uid precondition failed): done.
    let ignore_gone = |r: keelson_sdk::Result<()>| match r {
        Err(Error::NotFound(_)) | Err(Error::Conflict(_)) => Ok(()),
        r => r,
    };
    match a {
        Action::UpdateNode(_) | Action::UpdateNodeStatus(_) => Ok(()),
        Action::EvictPod {
            namespace,
            name,
            uid,
            node: _,
        } => {
            let p = DeleteParams {
                precondition_uid: uid,
                ..Default::default()
            };
            ignore_gone(
                ctx.api::<v1::Pod>(&namespace)
                    .delete(&name, &p)
                    .await
                    .map(drop),
            )
        }
        Action::ForceDeletePod {
            namespace,
            name,
            uid,
            node: _,
        } => {
            let p = DeleteParams {
                precondition_uid: uid,
                grace_period_seconds: Some(0),
                ..Default::default()
            };
            ignore_gone(
                ctx.api::<v1::Pod>(&namespace)
                    .delete(&name, &p)
                    .await
                    .map(drop),
            )
        }
        Action::Event {
            kind,
            namespace,
            name,
            type_,
            reason,
            message,
        } => {
            let k = Kind::parse(&kind).unwrap_or(Kind::Node);
            ctx.recorder.record(
                Involved {
                    kind: k.name().to_string(),
                    api_version: k.api_version().to_string(),
                    namespace,
                    name,
                    uid: String::new(),
                },
                &type_,
                &reason,
                &message,
            );
            Ok(())
        }
    }
}
