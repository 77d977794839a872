//! `Nodes.Session`: a node agent's one bidirectional stream.
//!
//! Up: a hello (node, the store lease its heartbeat Lease object is
//! attached to, where to resume its pods), then heartbeats (each renews
//! that lease in the store leader's memory: no Raft write) and batches of
//! pod statuses (written concurrently; one result per pod). Down: the pods
//! bound to the node (the watch machinery of `Resources.Watch` with
//! `spec.nodeName=<node>`; a fresh session's list ends with a BOOKMARK),
//! heartbeat acknowledgements (ttl 0: the lease is gone) and batch results.
//!
//! A node token speaks only for its own node, renews only the lease its
//! Lease object is attached to, and writes only its own pods' statuses
//! (NodeRestriction, as `UpdateStatus`).

use std::pin::Pin;
use std::time::Instant;

use futures::Stream;
use keelson_model::selector::{FieldSelector, LabelSelector};
use keelson_model::{Kind, Object, Resource};
use keelson_proto::api::node_session_down::Msg as Down;
use keelson_proto::api::node_session_up::Msg as Up;
use keelson_proto::api::nodes_server::Nodes;
use keelson_proto::api::*;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::auth::{authorize, Identity, Role, Verb};
use crate::error::Error;
use crate::registry::{parse_revision, Commit};
use crate::service::Api;
use crate::watch::{self, WatchSpec, WATCH_QUEUE_EVENTS_MAX};

/// Namespace of the nodes' heartbeat Lease objects.
const NODE_LEASE_NAMESPACE: &str = "kube-node-lease";
/// Pods in one status batch at most.
pub const STATUS_BATCH_MAX: usize = 1000;
/// A session must say hello this soon.
const HELLO_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// Status batches of one session being written at once.
const BATCHES_IN_FLIGHT_MAX: usize = 4;

pub type SessionStream = Pin<Box<dyn Stream<Item = Result<NodeSessionDown, Status>> + Send>>;

/// The node a session speaks for: a node token's own; an admin names one.
fn session_node(who: &Identity, asked: &str) -> Result<String, Status> {
    match who.role {
        Role::Node if asked.is_empty() || asked == who.user => Ok(who.user.clone()),
        Role::Node => Err(Status::permission_denied(format!(
            "user {:?} may not open a session for node {asked:?}",
            who.user
        ))),
        Role::Admin if !asked.is_empty() => Ok(asked.to_string()),
        Role::Admin => Err(Status::invalid_argument("hello: name the node")),
        Role::Viewer => Err(Status::permission_denied(format!(
            "user {:?} (viewer) may not open a node session",
            who.user
        ))),
    }
}

impl Api {
    /// The lease `kube-node-lease/<node>` is attached to must be `lease`
    /// (checked locally first, then after a read barrier).
    async fn check_node_lease(&self, node: &str, lease: i64) -> Result<(), Status> {
        for fresh in [false, true] {
            let stored = self
                .registry
                .read(Kind::Lease, NODE_LEASE_NAMESPACE, node, fresh)
                .await
                .map_err(Status::from)?;
            if stored
                .as_ref()
                .is_some_and(|s| s.lease == lease && lease != 0)
            {
                return Ok(());
            }
        }
        Err(Status::failed_precondition(format!(
            "lease {lease:x} is not the one {NODE_LEASE_NAMESPACE}/{node} is attached to"
        )))
    }

    /// Write a batch of pod statuses concurrently: "" per pod written (or
    /// gone), else the error.
    async fn write_statuses(
        &self,
        who: &Identity,
        pods: Vec<keelson_proto::v1::Pod>,
    ) -> Vec<String> {
        let writes = pods.into_iter().map(|mut pod| {
            let who = who.clone();
            async move {
                let start = Instant::now();
                if let Some(m) = pod.metadata.as_mut() {
                    m.resource_version.clear();
                }
                let name = pod
                    .metadata
                    .as_ref()
                    .map(|m| m.name.clone())
                    .unwrap_or_default();
                let check = move |old: &Object, new: &Object| {
                    authorize(
                        &who,
                        Verb::UpdateStatus,
                        Kind::Pod,
                        &name,
                        Some(old),
                        Some(new),
                    )
                };
                let r = self
                    .registry
                    .update(pod.into_object(), 0, true, Commit::Write, &check)
                    .await;
                let code = match &r {
                    Ok(_) => tonic::Code::Ok,
                    Err(e) => e.code(),
                };
                self.metrics
                    .observe("update_status", "pods", code, start.elapsed());
                match r {
                    Ok(_) | Err(Error::NotFound { .. }) => String::new(),
                    Err(e) => Status::from(e).message().to_string(),
                }
            }
        });
        futures::future::join_all(writes).await
    }
}

#[tonic::async_trait]
impl Nodes for Api {
    type SessionStream = SessionStream;

    async fn session(
        &self,
        req: Request<Streaming<NodeSessionUp>>,
    ) -> Result<Response<SessionStream>, Status> {
        let who = self.who(&req).map_err(Status::from)?;
        let mut inbound = req.into_inner();
        let first = tokio::time::timeout(HELLO_TIMEOUT, inbound.message())
            .await
            .map_err(|_| Status::deadline_exceeded("no hello"))??;
        let hello = match first {
            Some(NodeSessionUp {
                msg: Some(Up::Hello(h)),
            }) => h,
            _ => return Err(Status::invalid_argument("a session starts with a hello")),
        };
        let node = session_node(&who, &hello.node)?;
        self.check_node_lease(&node, hello.lease_id).await?;
        let from = parse_revision(&hello.resource_version).map_err(Status::from)?;
        if from == Some(i64::MAX) {
            return Err(Status::invalid_argument("resourceVersion out of range"));
        }
        let spec = WatchSpec {
            kind: Kind::Pod,
            namespace: String::new(),
            labels: LabelSelector::default(),
            fields: FieldSelector::parse(&format!("spec.nodeName={node}"), Kind::Pod)
                .map_err(|e| Status::invalid_argument(format!("node name: {e}")))?,
            from,
            bookmarks: false,
            mark_listed: true,
        };
        let (tx, rx) = mpsc::channel::<Result<NodeSessionDown, Status>>(WATCH_QUEUE_EVENTS_MAX);
        // Pods: the watch task's events, forwarded.
        let (wtx, mut wrx) = mpsc::channel(WATCH_QUEUE_EVENTS_MAX);
        tokio::spawn(watch::run(
            self.registry.clone(),
            spec,
            wtx,
            self.metrics.watchers.clone(),
        ));
        let forward = {
            let tx = tx.clone();
            tokio::spawn(async move {
                while let Some(ev) = wrx.recv().await {
                    let down = ev.map(|e| NodeSessionDown {
                        msg: Some(Down::Pod(e)),
                    });
                    let end = down.is_err();
                    if tx.send(down).await.is_err() || end {
                        return;
                    }
                }
            })
        };
        // Heartbeats and statuses, until the agent goes away.
        let api = self.clone();
        let lease = hello.lease_id;
        tracing::debug!(node = %node, lease = %format!("{lease:x}"), resume = ?from, "node session");
        let in_flight = std::sync::Arc::new(tokio::sync::Semaphore::new(BATCHES_IN_FLIGHT_MAX));
        tokio::spawn(async move {
            loop {
                let msg = match inbound.message().await {
                    Ok(Some(NodeSessionUp { msg: Some(m) })) => m,
                    Ok(Some(_)) => continue,
                    Ok(None) | Err(_) => break,
                };
                match msg {
                    Up::Hello(_) => {
                        let _ = tx
                            .send(Err(Status::invalid_argument("a second hello")))
                            .await;
                        break;
                    }
                    Up::Heartbeat(h) => match api.registry.replica.keep_alive(lease).await {
                        Ok(r) => {
                            // The lease is renewed either way; an ack that
                            // finds the stream full of pod events is dropped
                            // rather than making heartbeats wait behind them.
                            let ack = NodeSessionDown {
                                msg: Some(Down::Heartbeat(NodeHeartbeatAck {
                                    seq: h.seq,
                                    ttl_seconds: r.ttl,
                                })),
                            };
                            if let Err(mpsc::error::TrySendError::Closed(_)) = tx.try_send(Ok(ack))
                            {
                                break;
                            }
                        }
                        // No leader for now: the next heartbeat tries again
                        // (the lease outlives a few misses).
                        Err(e) => {
                            tracing::debug!(node = %node, error = %e, "heartbeat not renewed");
                        }
                    },
                    Up::Statuses(batch) => {
                        if batch.pods.len() > STATUS_BATCH_MAX {
                            let _ = tx
                                .send(Err(Status::invalid_argument(format!(
                                    "a status batch holds at most {STATUS_BATCH_MAX} pods"
                                ))))
                                .await;
                            break;
                        }
                        let (api, who, tx) = (api.clone(), who.clone(), tx.clone());
                        let Ok(permit) = in_flight.clone().acquire_owned().await else {
                            break;
                        };
                        tokio::spawn(async move {
                            let _permit = permit;
                            let errors = api.write_statuses(&who, batch.pods).await;
                            let _ = tx
                                .send(Ok(NodeSessionDown {
                                    msg: Some(Down::Statuses(PodStatusBatchResult {
                                        seq: batch.seq,
                                        errors,
                                    })),
                                }))
                                .await;
                        });
                    }
                }
            }
            // The agent is gone (or broke the protocol): end the stream.
            forward.abort();
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}
