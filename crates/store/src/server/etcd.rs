//! The client port: etcd's v3 gRPC API (KV, Watch, Lease, Cluster,
//! Maintenance) over the replica.

use std::collections::BTreeSet;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use keelson_proto::etcdserverpb as pb;
use keelson_proto::etcdserverpb::cluster_server::{Cluster, ClusterServer};
use keelson_proto::etcdserverpb::kv_server::{Kv, KvServer};
use keelson_proto::etcdserverpb::lease_server::{Lease, LeaseServer};
use keelson_proto::etcdserverpb::maintenance_server::{Maintenance, MaintenanceServer};
use keelson_proto::etcdserverpb::watch_server::WatchServer;
use keelson_proto::raft::{command, command_result, Command, LeaseGrant, LeaseRevoke};
use openraft::{BasicNode, ChangeMembers};
use prost::Message;
use tokio::net::TcpListener;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::{member_id, Replica, Route, GRPC_OVERHEAD_BYTES, REQUEST_TIMEOUT_MS};
use crate::error::{Error, Result};

/// How long `member_status` waits for a peer's answer.
const STATUS_TIMEOUT_MS: u64 = 1000;
/// The version Maintenance.Status reports: the etcd API level served.
pub const API_VERSION: &str = "3.4.0";
/// Keep-alive responses queued per stream before the reader waits.
const KEEPALIVE_QUEUE_MAX: usize = 64;

pub async fn serve(
    replica: Arc<Replica>,
    listener: TcpListener,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> std::result::Result<(), tonic::transport::Error> {
    let limit = replica.config.max_request_bytes + GRPC_OVERHEAD_BYTES;
    let api = EtcdApi {
        replica: replica.clone(),
    };
    let (health_reporter, health) = tonic_health::server::health_reporter();
    health_reporter.set_serving::<KvServer<EtcdApi>>().await;
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = &replica.config.client_tls {
        builder = builder.tls_config(super::mutual_tls(tls))?;
    }
    builder
        .tcp_nodelay(true)
        .http2_keepalive_interval(Some(Duration::from_secs(5)))
        .http2_keepalive_timeout(Some(Duration::from_secs(5)))
        .add_service(KvServer::new(api.clone()).max_decoding_message_size(limit))
        .add_service(
            WatchServer::new(super::watch::WatchService::new(replica.clone()))
                .max_decoding_message_size(limit),
        )
        .add_service(LeaseServer::new(api.clone()).max_decoding_message_size(limit))
        .add_service(ClusterServer::new(api.clone()).max_decoding_message_size(limit))
        .add_service(MaintenanceServer::new(api).max_decoding_message_size(limit))
        .add_service(health)
        .serve_with_incoming_shutdown(super::incoming(listener), async move {
            let _ = stop.wait_for(|s| *s).await;
        })
        .await
}

#[derive(Clone)]
pub struct EtcdApi {
    replica: Arc<Replica>,
}

impl EtcdApi {
    fn check_size<M: Message>(&self, req: &M) -> Result<()> {
        if req.encoded_len() > self.replica.config.max_request_bytes {
            return Err(Error::RequestTooLarge);
        }
        Ok(())
    }

    /// etcd's quota: once a write would take the store past its quota,
    /// the NOSPACE alarm is raised (through Raft, so every replica refuses
    /// alike) and writes that add data are refused until it is disarmed
    /// (deletes and compaction still work, so space can be reclaimed
    /// first). CORRUPT refuses every write.
    async fn check_quota(&self, added_bytes: usize) -> Result<()> {
        let (used, nospace, corrupt) = {
            let sm = self.replica.sm.read();
            let has = |a: pb::AlarmType| sm.alarms().iter().any(|(_, x)| *x == a as i32);
            (
                sm.size_bytes(),
                has(pb::AlarmType::Nospace),
                has(pb::AlarmType::Corrupt),
            )
        };
        if corrupt {
            return Err(Error::Corrupt);
        }
        if nospace {
            return Err(Error::NoSpace);
        }
        if used + added_bytes as u64 > self.replica.config.quota_bytes {
            tracing::warn!(
                used,
                quota = self.replica.config.quota_bytes,
                "database space exceeded; raising the NOSPACE alarm"
            );
            if let Err(e) = self
                .replica
                .set_alarm(
                    pb::alarm_request::AlarmAction::Activate,
                    self.replica.id,
                    pb::AlarmType::Nospace,
                )
                .await
            {
                tracing::warn!(error = %e, "raise the NOSPACE alarm");
            }
            return Err(Error::NoSpace);
        }
        Ok(())
    }
}

impl EtcdApi {
    /// A txn that cannot write needs no Raft entry, as in etcd: after the
    /// read barrier (unless all its ranges are serializable) it runs on a
    /// copy of the local state, which is O(1) to take and is thrown away.
    async fn read_only_txn(
        &self,
        req: pb::TxnRequest,
    ) -> std::result::Result<pb::TxnResponse, Status> {
        let cmd = Command {
            kind: Some(command::Kind::Txn(req)),
        };
        crate::mvcc::validate(&cmd)?;
        let serializable =
            matches!(&cmd.kind, Some(command::Kind::Txn(t)) if txn_all_serializable(t));
        if !serializable {
            self.replica.read_barrier().await?;
        }
        let mut copy = (*self.replica.sm.read()).clone();
        let result = copy.apply(&cmd);
        match result.kind {
            Some(command_result::Kind::Txn(mut r)) => {
                r.header = Some(self.replica.header(result.revision));
                Ok(r)
            }
            Some(command_result::Kind::Error(e)) => {
                Err(Error::from_parts(e.code, &e.message).into())
            }
            other => Err(Status::internal(format!("unexpected txn result {other:?}"))),
        }
    }
}

fn txn_has_put(t: &pb::TxnRequest) -> bool {
    use pb::request_op::Request as R;
    t.success
        .iter()
        .chain(t.failure.iter())
        .any(|op| match &op.request {
            Some(R::RequestPut(_)) => true,
            Some(R::RequestTxn(inner)) => txn_has_put(inner),
            _ => false,
        })
}

/// Whether any branch (nested ones included) can write: puts or deletes.
fn txn_may_write(t: &pb::TxnRequest) -> bool {
    use pb::request_op::Request as R;
    t.success
        .iter()
        .chain(t.failure.iter())
        .any(|op| match &op.request {
            Some(R::RequestPut(_)) | Some(R::RequestDeleteRange(_)) => true,
            Some(R::RequestTxn(inner)) => txn_may_write(inner),
            _ => false,
        })
}

/// Whether every range in the txn asks for a serializable read (etcd's
/// rule for skipping the linearizability barrier on read-only txns).
fn txn_all_serializable(t: &pb::TxnRequest) -> bool {
    use pb::request_op::Request as R;
    t.success
        .iter()
        .chain(t.failure.iter())
        .all(|op| match &op.request {
            Some(R::RequestRange(r)) => r.serializable,
            Some(R::RequestTxn(inner)) => txn_all_serializable(inner),
            _ => true,
        })
}

fn unexpected(kind: &command_result::Kind) -> Status {
    Status::internal(format!("unexpected command result {kind:?}"))
}

#[tonic::async_trait]
impl Kv for EtcdApi {
    async fn range(
        &self,
        req: Request<pb::RangeRequest>,
    ) -> std::result::Result<Response<pb::RangeResponse>, Status> {
        let req = req.into_inner();
        self.check_size(&req)?;
        if req.key.is_empty() {
            return Err(Error::EmptyKey.into());
        }
        if !req.serializable {
            self.replica.read_barrier().await?;
        }
        let sm = self.replica.sm.read();
        let mut resp = sm.range(&req)?;
        resp.header = Some(self.replica.header(sm.revision()));
        Ok(Response::new(resp))
    }

    async fn put(
        &self,
        req: Request<pb::PutRequest>,
    ) -> std::result::Result<Response<pb::PutResponse>, Status> {
        let req = req.into_inner();
        self.check_size(&req)?;
        self.check_quota(req.key.len() + req.value.len()).await?;
        let (rev, kind) = self
            .replica
            .propose_ok(Command {
                kind: Some(command::Kind::Put(req)),
            })
            .await?;
        match kind {
            command_result::Kind::Put(mut r) => {
                r.header = Some(self.replica.header(rev));
                Ok(Response::new(r))
            }
            other => Err(unexpected(&other)),
        }
    }

    async fn delete_range(
        &self,
        req: Request<pb::DeleteRangeRequest>,
    ) -> std::result::Result<Response<pb::DeleteRangeResponse>, Status> {
        let req = req.into_inner();
        self.check_size(&req)?;
        let (rev, kind) = self
            .replica
            .propose_ok(Command {
                kind: Some(command::Kind::DeleteRange(req)),
            })
            .await?;
        match kind {
            command_result::Kind::DeleteRange(mut r) => {
                r.header = Some(self.replica.header(rev));
                Ok(Response::new(r))
            }
            other => Err(unexpected(&other)),
        }
    }

    async fn txn(
        &self,
        req: Request<pb::TxnRequest>,
    ) -> std::result::Result<Response<pb::TxnResponse>, Status> {
        let req = req.into_inner();
        self.check_size(&req)?;
        if !txn_may_write(&req) {
            return self.read_only_txn(req).await.map(Response::new);
        }
        if txn_has_put(&req) {
            self.check_quota(req.encoded_len()).await?;
        }
        let (rev, kind) = self
            .replica
            .propose_ok(Command {
                kind: Some(command::Kind::Txn(req)),
            })
            .await?;
        match kind {
            command_result::Kind::Txn(mut r) => {
                r.header = Some(self.replica.header(rev));
                Ok(Response::new(r))
            }
            other => Err(unexpected(&other)),
        }
    }

    async fn compact(
        &self,
        req: Request<pb::CompactionRequest>,
    ) -> std::result::Result<Response<pb::CompactionResponse>, Status> {
        let req = req.into_inner();
        let (rev, _) = self
            .replica
            .propose_ok(Command {
                kind: Some(command::Kind::Compact(req)),
            })
            .await?;
        Ok(Response::new(pb::CompactionResponse {
            header: Some(self.replica.header(rev)),
        }))
    }
}

/// Bytes per message of a snapshot stream (etcd sends 32 KiB).
pub const SNAPSHOT_CHUNK_BYTES: usize = 256 * 1024;

type SnapshotStream =
    Pin<Box<dyn Stream<Item = std::result::Result<pb::SnapshotResponse, Status>> + Send>>;

type KeepAliveStream =
    Pin<Box<dyn Stream<Item = std::result::Result<pb::LeaseKeepAliveResponse, Status>> + Send>>;

impl Replica {
    /// Renew a lease on the leader, wherever this replica stands.
    pub async fn keep_alive(&self, id: i64) -> Result<pb::LeaseKeepAliveResponse> {
        match self.route().await? {
            Route::Local => {
                // Renew only as a leader a quorum still follows (a read
                // index, batched with the others): a leader cut off from
                // the rest must not keep leases alive in its own memory
                // while a new leader runs their clocks down, or two
                // holders of one leadership lease would both act.
                self.read_index(true).await?;
                let ttl = match self.keep_alive_local(id) {
                    Ok(ttl) => ttl,
                    Err(Error::LeaseNotFound) => {
                        // A new leader may not have applied a recent grant
                        // yet: catch up before saying the lease is gone.
                        self.read_barrier().await?;
                        match self.keep_alive_local(id) {
                            Ok(ttl) => ttl,
                            // etcd answers TTL 0 for a lease it does not know.
                            Err(Error::LeaseNotFound) => 0,
                            Err(e) => return Err(e),
                        }
                    }
                    Err(e) => return Err(e),
                };
                Ok(pb::LeaseKeepAliveResponse {
                    header: Some(self.header(self.sm.read().revision())),
                    id,
                    ttl,
                })
            }
            Route::Remote(mut client) => {
                let mut req = Request::new(pb::LeaseKeepAliveRequest { id });
                req.set_timeout(Duration::from_millis(REQUEST_TIMEOUT_MS));
                match client.lease_keep_alive(req).await {
                    Ok(r) => Ok(r.into_inner()),
                    Err(s) if s.message() == Error::LeaseNotFound.to_string() => {
                        Ok(pb::LeaseKeepAliveResponse {
                            header: Some(self.header(self.sm.read().revision())),
                            id,
                            ttl: 0,
                        })
                    }
                    Err(s) if s.code() == tonic::Code::Unavailable => Err(Error::LeaderChanged),
                    Err(s) => Err(s.into()),
                }
            }
        }
    }

    /// This replica's status as etcd's Maintenance.Status reports it.
    pub fn local_status(&self) -> pb::StatusResponse {
        let m = self.metrics();
        let sm = self.sm.read();
        let is_learner = !m
            .membership_config
            .membership()
            .voter_ids()
            .any(|v| v == self.id);
        let mut errors = Vec::new();
        if m.current_leader.is_none() {
            errors.push(Error::NoLeader.to_string());
        }
        for (member, alarm) in sm.alarms() {
            let name = pb::AlarmType::try_from(*alarm)
                .map(|a| a.as_str_name())
                .unwrap_or("UNKNOWN");
            errors.push(format!("memberID:{member} alarm:{name}"));
        }
        pb::StatusResponse {
            header: Some(self.header(sm.revision())),
            version: API_VERSION.to_string(),
            db_size: sm.size_bytes() as i64,
            leader: m.current_leader.unwrap_or(0),
            // etcd reports the committed index here.
            raft_index: self.commit_index(),
            raft_term: m.current_term,
            raft_applied_index: m.last_applied.map(|l| l.index).unwrap_or(0),
            errors,
            db_size_in_use: sm.size_bytes() as i64,
            is_learner,
        }
    }

    /// A member's status, asked over the peer port (this replica's own
    /// without a round trip).
    pub async fn member_status(
        &self,
        member_id: u64,
        peer_url: &str,
    ) -> Result<pb::StatusResponse> {
        if member_id == self.id {
            return Ok(self.local_status());
        }
        let mut client = self.pool.client(peer_url).map_err(Error::Internal)?;
        let mut req = Request::new(pb::StatusRequest {});
        req.set_timeout(Duration::from_millis(STATUS_TIMEOUT_MS));
        Ok(client.status(req).await?.into_inner())
    }

    pub(crate) async fn member_add_local(
        &self,
        req: pb::MemberAddRequest,
    ) -> Result<pb::MemberAddResponse> {
        let url = match req.peer_ur_ls.as_slice() {
            [u] if u.starts_with("http://") || u.starts_with("https://") => {
                u.trim_end_matches('/').to_string()
            }
            _ => return Err(Error::MemberBadUrls),
        };
        if self
            .members()
            .iter()
            .any(|m| m.peer_ur_ls.iter().any(|p| p.trim_end_matches('/') == url))
        {
            return Err(Error::PeerUrlExists);
        }
        let id = member_id(&url);
        let node = BasicNode { addr: url.clone() };
        self.raft
            .add_learner(id, node, false)
            .await
            .map_err(|e| Error::Internal(format!("add learner: {e}")))?;
        if !req.is_learner {
            self.raft
                .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false)
                .await
                .map_err(|e| Error::Internal(format!("add voter: {e}")))?;
        }
        let revision = self.sm.read().revision();
        Ok(pb::MemberAddResponse {
            header: Some(self.header(revision)),
            member: Some(pb::Member {
                id,
                name: String::new(),
                peer_ur_ls: vec![url],
                client_ur_ls: Vec::new(),
                is_learner: req.is_learner,
            }),
            members: self.members(),
        })
    }

    pub(crate) async fn member_remove_local(
        &self,
        req: pb::MemberRemoveRequest,
    ) -> Result<pb::MemberRemoveResponse> {
        let members = self.members();
        let Some(member) = members.iter().find(|m| m.id == req.id) else {
            return Err(Error::MemberNotFound);
        };
        // One membership change: a voter removed with retain=false leaves
        // the cluster entirely (a second RemoveNodes step panics openraft
        // 0.9 when the leader removes itself), a learner is removed as a node.
        let change = if member.is_learner {
            ChangeMembers::RemoveNodes(BTreeSet::from([req.id]))
        } else {
            ChangeMembers::RemoveVoters(BTreeSet::from([req.id]))
        };
        self.raft
            .change_membership(change, false)
            .await
            .map_err(|e| Error::Internal(format!("remove member: {e}")))?;
        // Forget its published attributes. This replica may have just
        // removed itself and stepped down, so go through the leader, in the
        // background (the membership change above is what matters).
        let forget = Command {
            kind: Some(command::Kind::MemberForget(req.id)),
        };
        if let Some(me) = self.me.upgrade() {
            tokio::spawn(async move {
                if let Err(e) = me.propose(forget).await {
                    tracing::debug!(error = %e, "forget removed member's attributes");
                }
            });
        }
        let revision = self.sm.read().revision();
        Ok(pb::MemberRemoveResponse {
            header: Some(self.header(revision)),
            members: self.members(),
        })
    }

    pub(crate) async fn member_promote_local(
        &self,
        req: pb::MemberPromoteRequest,
    ) -> Result<pb::MemberPromoteResponse> {
        let members = self.members();
        match members.iter().find(|m| m.id == req.id) {
            None => return Err(Error::MemberNotFound),
            Some(m) if !m.is_learner => {
                return Err(Error::Remote {
                    code: tonic::Code::FailedPrecondition as i32,
                    message: "etcdserver: can only promote a learner member".into(),
                })
            }
            Some(_) => {}
        }
        self.raft
            .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([req.id])), false)
            .await
            .map_err(|e| Error::Internal(format!("promote member: {e}")))?;
        let revision = self.sm.read().revision();
        Ok(pb::MemberPromoteResponse {
            header: Some(self.header(revision)),
            members: self.members(),
        })
    }
}

#[tonic::async_trait]
impl Lease for EtcdApi {
    async fn lease_grant(
        &self,
        req: Request<pb::LeaseGrantRequest>,
    ) -> std::result::Result<Response<pb::LeaseGrantResponse>, Status> {
        let req = req.into_inner();
        if req.ttl > crate::mvcc::LEASE_TTL_MAX_SECS {
            return Err(Error::LeaseTtlTooLarge.into());
        }
        if req.id < 0 {
            return Err(
                Error::InvalidArgument("etcdserver: lease ID must be positive".into()).into(),
            );
        }
        // A server-chosen id is random and positive; a collision (vanishingly
        // rare) is retried with a new one.
        for _ in 0..3 {
            let id = if req.id == 0 {
                (rand::random::<u64>() >> 1).max(1) as i64
            } else {
                req.id
            };
            let res = self
                .replica
                .propose_ok(Command {
                    kind: Some(command::Kind::LeaseGrant(LeaseGrant { id, ttl: req.ttl })),
                })
                .await;
            match res {
                Ok((rev, command_result::Kind::LeaseGrant(mut r))) => {
                    r.header = Some(self.replica.header(rev));
                    return Ok(Response::new(r));
                }
                Ok((_, other)) => return Err(unexpected(&other)),
                Err(Error::LeaseExists) if req.id == 0 => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(Error::LeaseExists.into())
    }

    async fn lease_revoke(
        &self,
        req: Request<pb::LeaseRevokeRequest>,
    ) -> std::result::Result<Response<pb::LeaseRevokeResponse>, Status> {
        let id = req.into_inner().id;
        let (rev, _) = self
            .replica
            .propose_ok(Command {
                kind: Some(command::Kind::LeaseRevoke(LeaseRevoke { id })),
            })
            .await?;
        Ok(Response::new(pb::LeaseRevokeResponse {
            header: Some(self.replica.header(rev)),
        }))
    }

    type LeaseKeepAliveStream = KeepAliveStream;

    async fn lease_keep_alive(
        &self,
        req: Request<Streaming<pb::LeaseKeepAliveRequest>>,
    ) -> std::result::Result<Response<Self::LeaseKeepAliveStream>, Status> {
        let mut inbound = req.into_inner();
        let (tx, rx) = tokio::sync::mpsc::channel(KEEPALIVE_QUEUE_MAX);
        let replica = self.replica.clone();
        tokio::spawn(async move {
            loop {
                let msg = match inbound.message().await {
                    Ok(Some(m)) => m,
                    Ok(None) | Err(_) => return,
                };
                let reply = replica.keep_alive(msg.id).await.map_err(Status::from);
                if tx.send(reply).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn lease_time_to_live(
        &self,
        req: Request<pb::LeaseTimeToLiveRequest>,
    ) -> std::result::Result<Response<pb::LeaseTimeToLiveResponse>, Status> {
        let req = req.into_inner();
        match self.replica.route().await? {
            Route::Local => Ok(Response::new(self.replica.time_to_live_local(&req)?)),
            Route::Remote(mut client) => {
                let mut fwd = Request::new(req);
                fwd.set_timeout(Duration::from_millis(REQUEST_TIMEOUT_MS));
                Ok(Response::new(
                    client.lease_time_to_live(fwd).await?.into_inner(),
                ))
            }
        }
    }

    async fn lease_leases(
        &self,
        _req: Request<pb::LeaseLeasesRequest>,
    ) -> std::result::Result<Response<pb::LeaseLeasesResponse>, Status> {
        self.replica.read_barrier().await?;
        let sm = self.replica.sm.read();
        Ok(Response::new(pb::LeaseLeasesResponse {
            header: Some(self.replica.header(sm.revision())),
            leases: sm
                .leases()
                .keys()
                .map(|id| pb::LeaseStatus { id: *id })
                .collect(),
        }))
    }
}

#[tonic::async_trait]
impl Cluster for EtcdApi {
    async fn member_add(
        &self,
        req: Request<pb::MemberAddRequest>,
    ) -> std::result::Result<Response<pb::MemberAddResponse>, Status> {
        let req = req.into_inner();
        match self.replica.route().await? {
            Route::Local => Ok(Response::new(self.replica.member_add_local(req).await?)),
            Route::Remote(mut c) => Ok(Response::new(c.member_add(req).await?.into_inner())),
        }
    }

    async fn member_remove(
        &self,
        req: Request<pb::MemberRemoveRequest>,
    ) -> std::result::Result<Response<pb::MemberRemoveResponse>, Status> {
        let req = req.into_inner();
        match self.replica.route().await? {
            Route::Local => Ok(Response::new(self.replica.member_remove_local(req).await?)),
            Route::Remote(mut c) => Ok(Response::new(c.member_remove(req).await?.into_inner())),
        }
    }

    async fn member_update(
        &self,
        _req: Request<pb::MemberUpdateRequest>,
    ) -> std::result::Result<Response<pb::MemberUpdateResponse>, Status> {
        Err(Status::unimplemented(
            "keelson: member update is not supported (a member's id is derived from its peer URL); remove the member and add it with the new URL",
        ))
    }

    async fn member_list(
        &self,
        _req: Request<pb::MemberListRequest>,
    ) -> std::result::Result<Response<pb::MemberListResponse>, Status> {
        let revision = self.replica.sm.read().revision();
        Ok(Response::new(pb::MemberListResponse {
            header: Some(self.replica.header(revision)),
            members: self.replica.members(),
        }))
    }

    async fn member_promote(
        &self,
        req: Request<pb::MemberPromoteRequest>,
    ) -> std::result::Result<Response<pb::MemberPromoteResponse>, Status> {
        let req = req.into_inner();
        match self.replica.route().await? {
            Route::Local => Ok(Response::new(self.replica.member_promote_local(req).await?)),
            Route::Remote(mut c) => Ok(Response::new(c.member_promote(req).await?.into_inner())),
        }
    }
}

#[tonic::async_trait]
impl Maintenance for EtcdApi {
    /// etcd's Alarm: list, raise or clear alarms. Raising and clearing go
    /// through Raft, so every replica agrees on them (and refuses writes
    /// alike); the answer lists the alarms the request touched (all of
    /// them for a list), as etcd's does.
    async fn alarm(
        &self,
        req: Request<pb::AlarmRequest>,
    ) -> std::result::Result<Response<pb::AlarmResponse>, Status> {
        let req = req.into_inner();
        let action = pb::alarm_request::AlarmAction::try_from(req.action)
            .map_err(|_| Error::InvalidArgument(format!("unknown alarm action {}", req.action)))?;
        let alarm = pb::AlarmType::try_from(req.alarm)
            .map_err(|_| Error::InvalidArgument(format!("unknown alarm type {}", req.alarm)))?;
        // Linearizable, as etcd's (which go through Raft): a list or a
        // disarm on a replica that has not applied an alarm yet still
        // sees it.
        self.replica.read_barrier().await?;
        let before = self.replica.alarm_members();
        let touched = match action {
            pb::alarm_request::AlarmAction::Get => before,
            // etcd answers an activation of no alarm with nothing.
            pb::alarm_request::AlarmAction::Activate if alarm == pb::AlarmType::None => Vec::new(),
            pb::alarm_request::AlarmAction::Activate => {
                self.replica.set_alarm(action, req.member_id, alarm).await?;
                vec![pb::AlarmMember {
                    member_id: req.member_id,
                    alarm: req.alarm,
                }]
            }
            pb::alarm_request::AlarmAction::Deactivate => {
                let cleared: Vec<pb::AlarmMember> = before
                    .into_iter()
                    .filter(|a| {
                        a.member_id == req.member_id
                            && (alarm == pb::AlarmType::None || a.alarm == req.alarm)
                    })
                    .collect();
                self.replica.set_alarm(action, req.member_id, alarm).await?;
                cleared
            }
        };
        let revision = self.replica.sm.read().revision();
        Ok(Response::new(pb::AlarmResponse {
            header: Some(self.replica.header(revision)),
            alarms: touched,
        }))
    }

    async fn defragment(
        &self,
        _req: Request<pb::DefragmentRequest>,
    ) -> std::result::Result<Response<pb::DefragmentResponse>, Status> {
        self.replica.defragment().await?;
        let revision = self.replica.sm.read().revision();
        Ok(Response::new(pb::DefragmentResponse {
            header: Some(self.replica.header(revision)),
        }))
    }

    async fn hash_kv(
        &self,
        req: Request<pb::HashKvRequest>,
    ) -> std::result::Result<Response<pb::HashKvResponse>, Status> {
        Ok(Response::new(
            self.replica
                .hash_kv(req.into_inner().revision, false)
                .await?,
        ))
    }

    async fn move_leader(
        &self,
        req: Request<pb::MoveLeaderRequest>,
    ) -> std::result::Result<Response<pb::MoveLeaderResponse>, Status> {
        self.replica.move_leader(req.into_inner().target_id).await?;
        let revision = self.replica.sm.read().revision();
        Ok(Response::new(pb::MoveLeaderResponse {
            header: Some(self.replica.header(revision)),
        }))
    }

    type SnapshotStream = SnapshotStream;

    /// This replica's state as a backup file, streamed in chunks; the
    /// file's trailing SHA-256 lets `etcdctl snapshot save` keep it.
    async fn snapshot(
        &self,
        _req: Request<pb::SnapshotRequest>,
    ) -> std::result::Result<Response<Self::SnapshotStream>, Status> {
        let (revision, bytes) = self.replica.backup().await?;
        let header = self.replica.header(revision);
        let total = bytes.len();
        // Chunks are cut as the client reads them, not all at once.
        let chunks = (0..total.div_ceil(SNAPSHOT_CHUNK_BYTES)).map(move |i| {
            let start = i * SNAPSHOT_CHUNK_BYTES;
            let end = (start + SNAPSHOT_CHUNK_BYTES).min(total);
            Ok(pb::SnapshotResponse {
                header: Some(header),
                remaining_bytes: (total - end) as u64,
                blob: bytes[start..end].to_vec(),
            })
        });
        Ok(Response::new(Box::pin(tokio_stream::iter(chunks))))
    }

    async fn status(
        &self,
        _req: Request<pb::StatusRequest>,
    ) -> std::result::Result<Response<pb::StatusResponse>, Status> {
        Ok(Response::new(self.replica.local_status()))
    }
}
