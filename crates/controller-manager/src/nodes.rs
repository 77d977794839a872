//! The node lifecycle loop around
//! [`keelson_controllers::nodelifecycle::reconcile`].
//!
//! A node agent keeps a Lease object `kube-node-lease/<node>` alive,
//! attached to a store lease that its heartbeats renew in the store
//! leader's memory. When the heartbeats stop, the store lease expires and
//! the object is deleted. This loop turns presence into a last-heartbeat
//! time per node by its own clock, and starts every node's clock afresh
//! when this instance becomes leader (and when it first sees a node): after
//! a control-plane failover, nodes get the full grace period before
//! anything is marked. (The store itself also gives every lease a full TTL
//! under a new Raft leader.)

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use keelson_controllers::nodelifecycle::{reconcile, Action, UNREACHABLE_TAINT};
use keelson_model::pod::is_ready;
use keelson_model::time::format_rfc3339;
use keelson_model::Kind;
use keelson_proto::v1;
use keelson_sdk::{DeleteParams, Error, Involved, Resource};

use crate::{concurrently, Ctx};

const RESYNC: Duration = Duration::from_millis(500);

pub async fn run(ctx: Arc<Ctx>) {
    let mut changes = vec![
        ctx.nodes.changes(),
        ctx.node_leases.changes(),
        ctx.pods.changes(),
    ];
    let mut leadership = ctx.leadership.clone();
    let mut last_heartbeat: HashMap<String, SystemTime> = HashMap::new();
    let mut was_leading = false;
    loop {
        let leading = ctx
            .wait_for_work(&mut changes, &mut leadership, RESYNC)
            .await;
        if !leading {
            was_leading = false;
            continue;
        }
        let now = SystemTime::now();
        if !was_leading {
            // The grace after a leadership change: every clock restarts.
            last_heartbeat.clear();
            was_leading = true;
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
        let actions = reconcile(&nodes, &last_heartbeat, &pods, now, &ctx.options.node);
        if actions.is_empty() || !ctx.leading() {
            continue;
        }
        // A node's spec and status writes go one after the other (the
        // second on the first's resourceVersion); the rest in parallel.
        let mut node_writes: Vec<Action> = Vec::new();
        let mut others: Vec<Action> = Vec::new();
        for a in actions {
            match a {
                Action::UpdateNode(_) | Action::UpdateNodeStatus(_) => node_writes.push(a),
                a => others.push(a),
            }
        }
        let mut written: HashMap<String, String> = HashMap::new();
        for a in node_writes {
            if let Err(e) = write_node(&ctx, a, &mut written).await {
                tracing::debug!(error = %e, "node lifecycle: node write");
            }
        }
        concurrently(others, |a| {
            let ctx = &ctx;
            async move {
                if let Err(e) = act(ctx, a).await {
                    tracing::debug!(error = %e, "node lifecycle");
                }
            }
        })
        .await;
        mark_pods_not_ready(&ctx, &nodes, &pods).await;
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
    match r {
        Ok(stored) => {
            written.insert(
                stored.meta().name.clone(),
                stored.meta().resource_version.clone(),
            );
            Ok(())
        }
        Err(Error::NotFound(_)) | Err(Error::Conflict(_)) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Pods on an unreachable node are no longer Ready (so Services stop
/// sending them traffic before they are evicted), as Kubernetes'
/// `MarkPodsNotReady`.
async fn mark_pods_not_ready(ctx: &Ctx, nodes: &[v1::Node], pods: &[v1::Pod]) {
    let marked: Vec<&str> = nodes
        .iter()
        .filter(|n| is_marked(n))
        .map(|n| n.meta().name.as_str())
        .collect();
    let ready_on_marked: Vec<v1::Pod> = pods
        .iter()
        .filter(|p| {
            p.spec
                .as_ref()
                .is_some_and(|s| marked.contains(&s.node_name.as_str()))
                && is_ready(p)
        })
        .cloned()
        .collect();
    let at = format_rfc3339(std::time::SystemTime::now());
    concurrently(ready_on_marked, |mut p| {
        let at = at.clone();
        async move {
            if let Some(s) = p.status.as_mut() {
                for c in &mut s.conditions {
                    if c.r#type == "Ready" {
                        c.status = "False".into();
                        c.reason = "NodeUnreachable".into();
                        c.message = "the pod's node stopped heartbeating".into();
                        c.last_transition_time = at.clone();
                    }
                }
            }
            let api = ctx.api::<v1::Pod>(&p.meta().namespace);
            if let Err(e) = api.update_status(&p).await {
                tracing::debug!(pod = %p.meta().name, error = %e, "mark pod not ready");
            }
        }
    })
    .await;
}

async fn act(ctx: &Ctx, a: Action) -> keelson_sdk::Result<()> {
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
