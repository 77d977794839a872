//! The peer port: Raft RPCs, and the requests followers forward to the
//! leader (writes, read indexes, lease keep-alives, membership changes).

use std::sync::Arc;
use std::time::Duration;

use keelson_proto::etcdserverpb as pb;
use keelson_proto::raft::raft_peer_server::{RaftPeer, RaftPeerServer};
use keelson_proto::raft::{
    CommandBatch, LeaderProbeEvent, LeaderProbeRequest, RaftMessage, ReadIndexRequest,
    ReadIndexResponse, ResultBatch,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::net::TcpListener;
use tonic::{Request, Response, Status};

use super::{propose, Replica};
use crate::raft::codec;
use crate::raft::network::PEER_MESSAGE_BYTES_MAX;

pub async fn serve(
    replica: Arc<Replica>,
    listener: TcpListener,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Result<(), tonic::transport::Error> {
    let svc = RaftPeerServer::new(PeerService {
        replica: replica.clone(),
    })
    .max_decoding_message_size(PEER_MESSAGE_BYTES_MAX)
    .max_encoding_message_size(PEER_MESSAGE_BYTES_MAX);
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = &replica.config.peer_tls {
        builder = builder.tls_config(super::mutual_tls(tls))?;
    }
    builder
        .tcp_nodelay(true)
        .http2_keepalive_interval(Some(Duration::from_secs(1)))
        .http2_keepalive_timeout(Some(Duration::from_millis(500)))
        .add_service(svc)
        .serve_with_incoming_shutdown(super::incoming(listener), async move {
            let _ = stop.wait_for(|s| *s).await;
        })
        .await
}

struct PeerService {
    replica: Arc<Replica>,
}

fn decode<T: DeserializeOwned>(msg: &RaftMessage) -> Result<T, Status> {
    codec::decode(&msg.payload)
        .map_err(|e| Status::invalid_argument(format!("decode raft message: {e}")))
}

fn encode<T: Serialize>(target: u64, value: &T) -> Result<Response<RaftMessage>, Status> {
    let payload =
        codec::encode(value).map_err(|e| Status::internal(format!("encode raft message: {e}")))?;
    Ok(Response::new(RaftMessage { target, payload }))
}

impl PeerService {
    fn check_target(&self, msg: &RaftMessage) -> Result<(), Status> {
        if msg.target != self.replica.id {
            return Err(Status::failed_precondition(format!(
                "this replica is member {:x}, not {:x}",
                self.replica.id, msg.target
            )));
        }
        Ok(())
    }

    fn require_leader(&self) -> Result<(), Status> {
        if self.replica.is_leader() {
            Ok(())
        } else {
            Err(Status::failed_precondition("etcdserver: not leader"))
        }
    }
}

type ProbeStream =
    std::pin::Pin<Box<dyn futures::Stream<Item = Result<LeaderProbeEvent, Status>> + Send>>;

#[tonic::async_trait]
impl RaftPeer for PeerService {
    type LeaderProbeStream = ProbeStream;

    async fn leader_probe(
        &self,
        _req: Request<LeaderProbeRequest>,
    ) -> Result<Response<ProbeStream>, Status> {
        // Never yields: the stream's end is the message.
        Ok(Response::new(Box::pin(futures::stream::pending())))
    }

    async fn append_entries(
        &self,
        req: Request<RaftMessage>,
    ) -> Result<Response<RaftMessage>, Status> {
        let started = std::time::Instant::now();
        let msg = req.into_inner();
        self.check_target(&msg)?;
        let rpc: openraft::raft::AppendEntriesRequest<crate::raft::TypeConfig> = decode(&msg)?;
        // Heartbeats (no entries) are not part of any write's path.
        let timed = !rpc.entries.is_empty();
        let res = self.replica.raft.append_entries(rpc).await;
        let reply = encode(msg.target, &res);
        if timed {
            self.replica
                .stages
                .peer_append_handle
                .observe(started.elapsed().as_secs_f64());
        }
        reply
    }

    async fn vote(&self, req: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        let msg = req.into_inner();
        self.check_target(&msg)?;
        let res = self.replica.raft.vote(decode(&msg)?).await;
        encode(msg.target, &res)
    }

    async fn install_snapshot(
        &self,
        req: Request<RaftMessage>,
    ) -> Result<Response<RaftMessage>, Status> {
        let msg = req.into_inner();
        self.check_target(&msg)?;
        let res = self.replica.raft.install_snapshot(decode(&msg)?).await;
        encode(msg.target, &res)
    }

    async fn propose(&self, req: Request<CommandBatch>) -> Result<Response<ResultBatch>, Status> {
        self.require_leader()?;
        let started = std::time::Instant::now();
        let batch = req.into_inner();
        // The valid commands are proposed whole (one entry, unless the
        // proposer's batch is full); an invalid one gets its error in its
        // place.
        let mut results: Vec<Option<keelson_proto::raft::CommandResult>> =
            Vec::with_capacity(batch.commands.len());
        let mut valid = Vec::with_capacity(batch.commands.len());
        for cmd in batch.commands {
            match crate::mvcc::validate(&cmd) {
                Ok(()) => {
                    results.push(None);
                    valid.push(cmd);
                }
                Err(e) => results.push(Some(propose::error_result(&e))),
            }
        }
        let n = valid.len();
        let proposed = if valid.is_empty() {
            Ok(Vec::new())
        } else {
            self.replica.enqueue_batch(valid, true).await
        };
        let mut proposed = match proposed {
            Ok(r) if r.len() == n => r.into_iter(),
            Ok(_) => return Err(Status::internal("wrong number of results for a batch")),
            Err(e) => vec![propose::error_result(&e); n].into_iter(),
        };
        let results = results
            .into_iter()
            .map(|r| r.or_else(|| proposed.next()).unwrap_or_default())
            .collect();
        self.replica
            .stages
            .forwarded
            .observe(started.elapsed().as_secs_f64());
        Ok(Response::new(ResultBatch { results }))
    }

    async fn hash_kv(
        &self,
        req: Request<pb::HashKvRequest>,
    ) -> Result<Response<pb::HashKvResponse>, Status> {
        Ok(Response::new(
            self.replica
                .hash_kv(req.into_inner().revision, true)
                .await?,
        ))
    }

    async fn timeout_now(
        &self,
        req: Request<keelson_proto::raft::TimeoutNowRequest>,
    ) -> Result<Response<keelson_proto::raft::TimeoutNowResponse>, Status> {
        self.replica.timeout_now(req.into_inner().term).await?;
        Ok(Response::new(keelson_proto::raft::TimeoutNowResponse {}))
    }

    async fn read_index(
        &self,
        _req: Request<ReadIndexRequest>,
    ) -> Result<Response<ReadIndexResponse>, Status> {
        self.require_leader()?;
        let index = self.replica.read_index(true).await?;
        Ok(Response::new(ReadIndexResponse { index }))
    }

    async fn lease_keep_alive(
        &self,
        req: Request<pb::LeaseKeepAliveRequest>,
    ) -> Result<Response<pb::LeaseKeepAliveResponse>, Status> {
        self.require_leader()?;
        let id = req.into_inner().id;
        let ttl = self.replica.keep_alive_local(id)?;
        Ok(Response::new(pb::LeaseKeepAliveResponse {
            header: Some(self.replica.header(self.replica.sm.read().revision())),
            id,
            ttl,
        }))
    }

    async fn lease_time_to_live(
        &self,
        req: Request<pb::LeaseTimeToLiveRequest>,
    ) -> Result<Response<pb::LeaseTimeToLiveResponse>, Status> {
        self.require_leader()?;
        Ok(Response::new(
            self.replica.time_to_live_local(&req.into_inner())?,
        ))
    }

    async fn member_add(
        &self,
        req: Request<pb::MemberAddRequest>,
    ) -> Result<Response<pb::MemberAddResponse>, Status> {
        self.require_leader()?;
        Ok(Response::new(
            self.replica.member_add_local(req.into_inner()).await?,
        ))
    }

    async fn member_remove(
        &self,
        req: Request<pb::MemberRemoveRequest>,
    ) -> Result<Response<pb::MemberRemoveResponse>, Status> {
        self.require_leader()?;
        Ok(Response::new(
            self.replica.member_remove_local(req.into_inner()).await?,
        ))
    }

    async fn member_promote(
        &self,
        req: Request<pb::MemberPromoteRequest>,
    ) -> Result<Response<pb::MemberPromoteResponse>, Status> {
        self.require_leader()?;
        Ok(Response::new(
            self.replica.member_promote_local(req.into_inner()).await?,
        ))
    }

    async fn status(
        &self,
        _req: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        Ok(Response::new(self.replica.local_status()))
    }
}
