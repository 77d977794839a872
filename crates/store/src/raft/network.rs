//! Raft RPCs over gRPC on the peer port. openraft's messages travel as
//! versioned bincode inside `RaftMessage.payload`; each request names the
//! node id it is meant for, and a replica refuses one addressed to another
//! id (so a reused address never receives a stranger's Raft traffic).
//!
//! [`PeerPool`] keeps one lazily connected channel per peer address, shared
//! by Raft replication and by request forwarding.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use keelson_proto::raft::raft_peer_client::RaftPeerClient;
use keelson_proto::raft::RaftMessage;
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Timeout, Unreachable,
};
use openraft::network::{RPCOption, RPCTypes, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::BasicNode;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::transport::{Channel, Endpoint};

use super::{codec, NodeId, TypeConfig};
use crate::stages::Stages;

/// Largest gRPC message between peers: AppendEntries batches and snapshot
/// chunks (openraft splits snapshots into `snapshot_max_chunk_size` pieces).
pub const PEER_MESSAGE_BYTES_MAX: usize = 64 * 1024 * 1024;
/// How long a connection attempt to a peer may take before it counts as
/// unreachable.
const PEER_CONNECT_TIMEOUT_MS: u64 = 300;

/// One channel per peer URL, created lazily and reused.
#[derive(Clone, Default)]
pub struct PeerPool {
    channels: Arc<Mutex<HashMap<String, Channel>>>,
    /// Mutual TLS to peers (https:// peer URLs).
    tls: Option<tonic::transport::ClientTlsConfig>,
    /// Local address of connections to peers: the replica's peer address
    /// when it is a loopback one other than 127.0.0.1, so that several
    /// replicas on one machine
    /// are told apart by their source address (a fault layer between them
    /// can then cut one pair of replicas off from each other).
    local: Option<std::net::IpAddr>,
}

impl PeerPool {
    pub fn new(tls: Option<&crate::server::PeerTls>, local: Option<std::net::IpAddr>) -> PeerPool {
        PeerPool {
            channels: Default::default(),
            local,
            tls: tls.map(|t| {
                tonic::transport::ClientTlsConfig::new()
                    .ca_certificate(tonic::transport::Certificate::from_pem(&t.ca_pem))
                    .identity(tonic::transport::Identity::from_pem(
                        &t.cert_pem,
                        &t.key_pem,
                    ))
            }),
        }
    }
}

impl PeerPool {
    pub fn client(&self, url: &str) -> Result<RaftPeerClient<Channel>, String> {
        let mut map = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        let channel = match map.get(url) {
            Some(c) => c.clone(),
            None => {
                let mut e = Endpoint::from_shared(url.to_string())
                    .map_err(|e| format!("bad peer URL {url}: {e}"))?;
                if let Some(tls) = &self.tls {
                    e = e
                        .tls_config(tls.clone())
                        .map_err(|e| format!("TLS for peer {url}: {e}"))?;
                }
                let c = e
                    .local_address(self.local)
                    .connect_timeout(Duration::from_millis(PEER_CONNECT_TIMEOUT_MS))
                    .tcp_nodelay(true)
                    .http2_keep_alive_interval(Duration::from_secs(1))
                    .keep_alive_timeout(Duration::from_millis(500))
                    .keep_alive_while_idle(true)
                    .connect_lazy();
                map.insert(url.to_string(), c.clone());
                c
            }
        };
        Ok(RaftPeerClient::new(channel)
            .max_decoding_message_size(PEER_MESSAGE_BYTES_MAX)
            .max_encoding_message_size(PEER_MESSAGE_BYTES_MAX))
    }
}

pub struct NetworkFactory {
    /// This replica's id (reported in timeouts).
    pub id: NodeId,
    pub pool: PeerPool,
    /// How long to wait before retrying an unreachable peer.
    pub retry_interval: Duration,
    pub stages: Arc<Stages>,
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = PeerConnection;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> PeerConnection {
        PeerConnection {
            id: self.id,
            target,
            client: self.pool.client(&node.addr),
            retry_interval: self.retry_interval,
            stages: self.stages.clone(),
        }
    }
}

pub struct PeerConnection {
    id: NodeId,
    target: NodeId,
    retry_interval: Duration,
    client: Result<RaftPeerClient<Channel>, String>,
    stages: Arc<Stages>,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Msg(String);

impl PeerConnection {
    async fn call<Req, Resp, E>(
        &mut self,
        kind: RpcKind,
        req: &Req,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let client = match &mut self.client {
            Ok(c) => c,
            Err(e) => return Err(RPCError::Unreachable(Unreachable::new(&Msg(e.clone())))),
        };
        let payload =
            codec::encode(req).map_err(|e| RPCError::Network(NetworkError::new(&Msg(e))))?;
        let mut request = tonic::Request::new(RaftMessage {
            target: self.target,
            payload,
        });
        // openraft bounds AppendEntries itself (one heartbeat interval) and
        // treats expiry as a timeout; the others get the deadline here.
        if !matches!(kind, RpcKind::Append) {
            request.set_timeout(option.hard_ttl());
        }
        let reply = match kind {
            RpcKind::Append => client.append_entries(request).await,
            RpcKind::Vote => client.vote(request).await,
            RpcKind::Snapshot => client.install_snapshot(request).await,
        };
        let reply = match reply {
            Ok(r) => r.into_inner(),
            Err(status) => {
                let err = Msg(format!("{kind:?} to node {}: {status}", self.target));
                return Err(match status.code() {
                    // Connection refused or lost: openraft backs off for a
                    // while before trying this peer again.
                    tonic::Code::Unavailable => RPCError::Unreachable(Unreachable::new(&err)),
                    // A slow peer is not an absent one: no back-off.
                    tonic::Code::DeadlineExceeded | tonic::Code::Cancelled => {
                        RPCError::Timeout(Timeout {
                            action: kind.rpc_type(),
                            id: self.id,
                            target: self.target,
                            timeout: option.hard_ttl(),
                        })
                    }
                    _ => RPCError::Network(NetworkError::new(&err)),
                });
            }
        };
        let result: Result<Resp, RaftError<NodeId, E>> = codec::decode(&reply.payload)
            .map_err(|e| RPCError::Network(NetworkError::new(&Msg(e))))?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

#[derive(Debug, Clone, Copy)]
enum RpcKind {
    Append,
    Vote,
    Snapshot,
}

impl RpcKind {
    fn rpc_type(self) -> RPCTypes {
        match self {
            RpcKind::Append => RPCTypes::AppendEntries,
            RpcKind::Vote => RPCTypes::Vote,
            RpcKind::Snapshot => RPCTypes::InstallSnapshot,
        }
    }
}

impl RaftNetwork<TypeConfig> for PeerConnection {
    /// openraft's default back-off is 500 ms, longer than an election
    /// timeout: a leader whose followers were briefly unreachable (all
    /// replicas restarting) would stay silent long enough to be deposed.
    /// Retry at the heartbeat interval instead; a refused connection is cheap.
    fn backoff(&self) -> openraft::network::Backoff {
        openraft::network::Backoff::new(std::iter::repeat(self.retry_interval))
    }

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        // Heartbeats (no entries) are not part of any write's path.
        let timed = (!rpc.entries.is_empty()).then(std::time::Instant::now);
        let res = self.call(RpcKind::Append, &rpc, &option).await;
        if let Some(t) = timed {
            self.stages.peer_append.observe(t.elapsed().as_secs_f64());
        }
        res
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        self.call(RpcKind::Snapshot, &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.call(RpcKind::Vote, &rpc, &option).await
    }
}
