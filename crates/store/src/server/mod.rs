//! One control-plane replica: Raft node, storage, the peer port and the
//! etcd-compatible client port.
//!
//! Request path: a client write reaches any replica's etcd API, is validated,
//! and goes to the leader's proposer (forwarded over the peer port when this
//! replica follows). The proposer packs every queued command into one Raft
//! entry, so one fsync per replica covers many writes. Linearizable reads
//! get a read index from the leader (batched the same way), wait until the
//! local state machine has applied it, then read locally.

mod backups;
mod compactor;
mod etcd;
mod failover;
mod leases;
mod maintenance;
mod peer;
mod propose;
mod watch;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use keelson_proto::etcdserverpb as pb;
use keelson_proto::raft::raft_peer_client::RaftPeerClient;
use keelson_proto::raft::{command, command_result, Command, CommandResult, MemberAttributes};
use openraft::{BasicNode, ServerState, SnapshotPolicy};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tonic::transport::Channel;

use crate::error::{Error, Result};
use crate::raft::log_store::LogStore;
use crate::raft::network::{NetworkFactory, PeerPool};
use crate::raft::state_machine::{SmHandle, StateMachine};
use crate::raft::{NodeId, Raft};
use crate::stages::Stages;

pub use backups::{write_durably, BackupConfig};
pub use propose::PROPOSAL_COMMANDS_MAX;

/// The data dir's subdirectories: the Raft log (RocksDB) and the state
/// machine's snapshot.
pub const LOG_DIR: &str = "raft-log";
pub const STATE_DIR: &str = "state";

/// How long a request waits for a leader to be elected before it fails with
/// "no leader" (a little over a few election rounds).
const LEADER_WAIT_MS: u64 = 3000;
/// How long a forwarded request or a read may take before "request timed out".
const REQUEST_TIMEOUT_MS: u64 = 7000;
/// How long a non-first initial member waits for the first one to form the
/// cluster before it initializes the cluster itself.
const BOOTSTRAP_GRACE_MS: u64 = 2000;
/// gRPC overhead allowed on top of the request limit (etcd allows 512 KiB),
/// so an over-size request reaches the handler and gets etcd's error.
const GRPC_OVERHEAD_BYTES: usize = 512 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClusterState {
    /// Form a new cluster from `initial_cluster`.
    New,
    /// Join an existing cluster (after `member add`): wait to be contacted.
    Existing,
}

/// A replica's configuration. The binary builds it from flags; tests build
/// it directly.
#[derive(Clone, Debug)]
pub struct Config {
    pub name: String,
    pub data_dir: PathBuf,
    pub listen_client: SocketAddr,
    /// The client URL peers and clients are told about.
    pub advertise_client: String,
    pub listen_peer: SocketAddr,
    /// This replica's peer URL, as written in `initial_cluster`.
    pub advertise_peer: String,
    /// name -> peer URL of every initial member.
    pub initial_cluster: Vec<(String, String)>,
    pub initial_cluster_state: ClusterState,
    pub cluster_token: String,
    pub max_request_bytes: usize,
    pub quota_bytes: u64,
    /// Raft entries between snapshots (etcd's --snapshot-count).
    pub snapshot_count: u64,
    /// Entries kept in the log behind a snapshot, for lagging followers.
    pub snapshot_catchup_entries: u64,
    pub heartbeat_ms: u64,
    pub election_min_ms: u64,
    pub election_max_ms: u64,
    /// How often an idle watcher with progress_notify gets a progress reply.
    pub watch_progress_interval: Duration,
    /// Keep this much history, compacting older revisions (None: keep all,
    /// compaction is left to clients, as etcd's default).
    pub auto_compaction_retention: Option<Duration>,
    /// Mutual TLS on the peer port (peer URLs are then https://).
    pub peer_tls: Option<PeerTls>,
    /// TLS on the etcd-compatible client port with client certificates
    /// required (etcd's `--client-cert-auth`): only clients whose
    /// certificate the CA signed get in. Without it the port must listen
    /// on a loopback address.
    pub client_tls: Option<PeerTls>,
    /// Periodic backups of this replica's state.
    pub backup: Option<BackupConfig>,
    /// How often the leader compares every replica's hash of the store
    /// (None: never).
    pub corrupt_check_interval: Option<Duration>,
}

/// PEM certificate, key and CA for mutual TLS between replicas: each
/// replica presents its certificate and accepts only peers whose
/// certificate the CA signed.
#[derive(Clone)]
pub struct PeerTls {
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
    pub ca_pem: Vec<u8>,
}

/// A server's TLS that requires clients to present a certificate the CA
/// signed (the peer port, and the client port with `--client-cert-auth`).
fn mutual_tls(tls: &PeerTls) -> tonic::transport::ServerTlsConfig {
    tonic::transport::ServerTlsConfig::new()
        .identity(tonic::transport::Identity::from_pem(
            &tls.cert_pem,
            &tls.key_pem,
        ))
        .client_ca_root(tonic::transport::Certificate::from_pem(&tls.ca_pem))
}

impl std::fmt::Debug for PeerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PeerTls { .. }")
    }
}

impl Config {
    /// A single-member default like etcd's: ports 2379/2380 on localhost.
    pub fn single(name: &str, data_dir: PathBuf) -> Config {
        let client: SocketAddr = SocketAddr::from(([127, 0, 0, 1], 2379));
        let peer: SocketAddr = SocketAddr::from(([127, 0, 0, 1], 2380));
        Config {
            name: name.to_string(),
            data_dir,
            listen_client: client,
            advertise_client: format!("http://{client}"),
            listen_peer: peer,
            advertise_peer: format!("http://{peer}"),
            initial_cluster: vec![(name.to_string(), format!("http://{peer}"))],
            initial_cluster_state: ClusterState::New,
            cluster_token: "keelson-cluster".into(),
            max_request_bytes: 1536 * 1024,
            quota_bytes: 2 * 1024 * 1024 * 1024,
            snapshot_count: 100_000,
            snapshot_catchup_entries: 5_000,
            heartbeat_ms: 50,
            election_min_ms: 100,
            election_max_ms: 200,
            watch_progress_interval: Duration::from_secs(600),
            auto_compaction_retention: None,
            peer_tls: None,
            client_tls: None,
            backup: None,
            corrupt_check_interval: None,
        }
    }
}

/// A member id is derived from its peer URL, so every replica computes the
/// same ids from `--initial-cluster`, and `member add` can name a new
/// member's id before it starts.
pub fn member_id(peer_url: &str) -> NodeId {
    let id = fnv1a(peer_url.trim_end_matches('/').as_bytes());
    if id == 0 {
        1
    } else {
        id
    }
}

fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Shared state of a running replica; every service holds an `Arc` of it.
pub struct Replica {
    /// This replica itself, for work it hands to background tasks.
    me: std::sync::Weak<Replica>,
    pub id: NodeId,
    pub name: String,
    pub cluster_id: u64,
    pub config: Config,
    raft: Raft,
    sm: SmHandle,
    pool: PeerPool,
    proposals: mpsc::Sender<propose::Pending>,
    read_waiters: mpsc::Sender<propose::ReadWaiter>,
    leases: leases::LeaseKeeper,
    /// The Raft log's database (shared with openraft), for defragment.
    log: LogStore,
    /// While true the proposer and the read-index rounds hold new work
    /// back (a leadership transfer lets every follower's leader lease
    /// lapse).
    proposals_paused: tokio::sync::watch::Sender<bool>,
    /// One leadership transfer at a time.
    transfer: tokio::sync::Mutex<()>,
    /// Timings of the write path's stages, for `/metrics`.
    pub stages: Arc<Stages>,
}

/// Where a request that must run on the leader goes.
enum Route {
    Local,
    Remote(RaftPeerClient<Channel>),
}

impl Replica {
    fn metrics(&self) -> openraft::RaftMetrics<NodeId, BasicNode> {
        self.raft.metrics().borrow().clone()
    }

    /// The highest log index this replica knows to be committed: on the
    /// leader, the index a quorum of voters has matched; elsewhere the
    /// applied index (a follower applies what it learns is committed).
    pub fn commit_index(&self) -> u64 {
        let m = self.metrics();
        let applied = m.last_applied.map(|l| l.index).unwrap_or(0);
        let Some(replication) = m.replication.as_ref() else {
            return applied;
        };
        let mut matched: Vec<u64> = m
            .membership_config
            .membership()
            .voter_ids()
            .map(|v| {
                if v == self.id {
                    m.last_log_index.unwrap_or(0)
                } else {
                    replication
                        .get(&v)
                        .and_then(|l| l.map(|l| l.index))
                        .unwrap_or(0)
                }
            })
            .collect();
        if matched.is_empty() {
            return applied;
        }
        matched.sort_unstable_by(|a, b| b.cmp(a));
        matched[matched.len() / 2].max(applied)
    }

    pub fn is_leader(&self) -> bool {
        let m = self.raft.metrics();
        let m = m.borrow();
        m.state == ServerState::Leader && m.current_leader == Some(self.id)
    }

    fn current_term(&self) -> u64 {
        self.raft.metrics().borrow().current_term
    }

    pub fn sm(&self) -> &SmHandle {
        &self.sm
    }

    fn header(&self, revision: i64) -> pb::ResponseHeader {
        pb::ResponseHeader {
            cluster_id: self.cluster_id,
            member_id: self.id,
            revision,
            raft_term: self.raft.metrics().borrow().current_term,
        }
    }

    /// Find the leader, waiting for an election if there is none.
    async fn route(&self) -> Result<Route> {
        let deadline = tokio::time::Instant::now() + Duration::from_millis(LEADER_WAIT_MS);
        let mut rx = self.raft.metrics();
        loop {
            let target = {
                let m = rx.borrow_and_update();
                match m.current_leader {
                    Some(l) if l == self.id => {
                        if m.state == ServerState::Leader {
                            return Ok(Route::Local);
                        }
                        None
                    }
                    Some(l) => m
                        .membership_config
                        .membership()
                        .get_node(&l)
                        .map(|n| n.addr.clone()),
                    None => None,
                }
            };
            if let Some(url) = target {
                return self
                    .pool
                    .client(&url)
                    .map(Route::Remote)
                    .map_err(Error::Internal);
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => continue,
                Ok(Err(_)) => return Err(Error::Stopped),
                Err(_) => return Err(Error::NoLeader),
            }
        }
    }

    /// Replicate one command and return its result (errors included).
    /// Any replica accepts writes: a follower forwards them to the leader.
    pub async fn propose(&self, cmd: Command) -> Result<CommandResult> {
        crate::mvcc::validate(&cmd)?;
        self.enqueue(cmd, false).await
    }

    /// Propose on this replica, which must be the leader (forwarded writes,
    /// lease expiry).
    async fn propose_local(&self, cmd: Command) -> Result<CommandResult> {
        self.enqueue(cmd, true).await
    }

    async fn enqueue(&self, cmd: Command, local_only: bool) -> Result<CommandResult> {
        let mut results = self.enqueue_batch(vec![cmd], local_only).await?;
        match (results.pop(), results.is_empty()) {
            (Some(r), true) => Ok(r),
            _ => Err(Error::Internal(
                "wrong number of results for a command".into(),
            )),
        }
    }

    /// Queue commands for proposal as one unit: they go into the same Raft
    /// entry (or forwarded request), and the results come back in order.
    async fn enqueue_batch(
        &self,
        cmds: Vec<Command>,
        local_only: bool,
    ) -> Result<Vec<CommandResult>> {
        let (tx, rx) = oneshot::channel();
        self.proposals
            .send(propose::Pending {
                cmds,
                local_only,
                reply: tx,
            })
            .await
            .map_err(|_| Error::Stopped)?;
        rx.await.map_err(|_| Error::Stopped)?
    }

    /// Propose and turn an error result into an error.
    async fn propose_ok(&self, cmd: Command) -> Result<(i64, command_result::Kind)> {
        let res = self.propose(cmd).await?;
        match res.kind {
            Some(command_result::Kind::Error(e)) => Err(Error::from_parts(e.code, &e.message)),
            Some(k) => Ok((res.revision, k)),
            None => Err(Error::Internal("empty command result".into())),
        }
    }

    /// Wait until this replica's state reflects every write acknowledged
    /// before the call (ReadIndex), so a local read is linearizable.
    pub async fn read_barrier(&self) -> Result<()> {
        let index = self.read_index(false).await?;
        self.raft
            .wait(Some(Duration::from_millis(REQUEST_TIMEOUT_MS)))
            .applied_index_at_least(Some(index), "read index")
            .await
            .map_err(|e| match e {
                openraft::metrics::WaitError::Timeout(..) => Error::Timeout,
                openraft::metrics::WaitError::ShuttingDown => Error::Stopped,
            })?;
        Ok(())
    }

    /// The leader's read index; `local_only` when a follower asked us.
    async fn read_index(&self, local_only: bool) -> Result<u64> {
        let (tx, rx) = oneshot::channel();
        self.read_waiters
            .send(propose::ReadWaiter {
                local_only,
                reply: tx,
            })
            .await
            .map_err(|_| Error::Stopped)?;
        rx.await.map_err(|_| Error::Stopped)?
    }

    /// The members as etcd reports them: Raft membership plus the names and
    /// client URLs members published through the log.
    pub fn members(&self) -> Vec<pb::Member> {
        let m = self.metrics();
        let membership = m.membership_config.membership();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let sm = self.sm.read();
        let attrs = sm.members();
        membership
            .nodes()
            .map(|(id, node)| {
                let a = attrs.get(id);
                pb::Member {
                    id: *id,
                    name: a.map(|a| a.name.clone()).unwrap_or_default(),
                    peer_ur_ls: vec![node.addr.clone()],
                    client_ur_ls: a.map(|a| a.client_urls.clone()).unwrap_or_default(),
                    is_learner: !voters.contains(id),
                }
            })
            .collect()
    }

    /// A backup of this replica's state as it is now (no read barrier: a
    /// replica cut off from its quorum can still be backed up, which is
    /// when a backup matters most). Returns the revision it holds and the
    /// file's bytes.
    pub async fn backup(&self) -> Result<(i64, Vec<u8>)> {
        let (mvcc, _) = self.sm.copy();
        let revision = mvcc.revision();
        let (name, cluster_id) = (self.name.clone(), self.cluster_id);
        let taken = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let bytes = tokio::task::spawn_blocking(move || {
            crate::backup::encode(mvcc, &name, cluster_id, taken)
        })
        .await
        .map_err(|e| Error::Internal(format!("encode backup: {e}")))?
        .map_err(Error::Internal)?;
        Ok((revision, bytes))
    }

    /// Publish this replica's name and client URL through Raft until the
    /// state machine has them (etcd's "publish" step).
    async fn publish_attributes(self: Arc<Self>) {
        let want = crate::mvcc::MemberAttrs {
            name: self.name.clone(),
            client_urls: vec![self.config.advertise_client.clone()],
        };
        loop {
            if self.sm.read().members().get(&self.id) == Some(&want) {
                return;
            }
            let cmd = Command {
                kind: Some(command::Kind::MemberAttributes(MemberAttributes {
                    id: self.id,
                    name: want.name.clone(),
                    client_urls: want.client_urls.clone(),
                })),
            };
            if let Err(e) = self.propose(cmd).await {
                tracing::debug!(error = %e, "publish member attributes; will retry");
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

/// A running replica. Dropping it does not stop it: call [`Server::shutdown`].
pub struct Server {
    pub replica: Arc<Replica>,
    tasks: Vec<JoinHandle<()>>,
    stop: tokio::sync::watch::Sender<bool>,
    servers: Vec<JoinHandle<std::result::Result<(), tonic::transport::Error>>>,
}

impl Server {
    /// Open storage, start Raft and both ports, and form or join the cluster.
    pub async fn start(config: Config) -> std::result::Result<Server, String> {
        if config.client_tls.is_none() && !config.listen_client.ip().is_loopback() {
            return Err(format!(
                "the etcd client port {} would listen beyond localhost with no authentication: \
                 give it client-certificate auth (--client-cert-auth with --tls-cert, --tls-key \
                 and --tls-ca) or a loopback address",
                config.listen_client
            ));
        }
        let id = member_id(&config.advertise_peer);
        std::fs::create_dir_all(&config.data_dir)
            .map_err(|e| format!("create {}: {e}", config.data_dir.display()))?;
        let stages = Arc::new(Stages::default());
        let log = LogStore::open(&config.data_dir.join(LOG_DIR), stages.clone())?;
        let (sm, sm_handle) = StateMachine::open(&config.data_dir.join(STATE_DIR), stages.clone())?;
        // A data dir seeded by `snapshot restore` has a snapshot and no log:
        // it is a member already, not one to initialize.
        let pristine =
            log.is_pristine().map_err(|e| e.to_string())? && sm_handle.copy().1.is_none();

        let raft_config = openraft::Config {
            cluster_name: config.cluster_token.clone(),
            heartbeat_interval: config.heartbeat_ms,
            election_timeout_min: config.election_min_ms,
            election_timeout_max: config.election_max_ms,
            install_snapshot_timeout: 10_000,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(config.snapshot_count),
            max_in_snapshot_log_to_keep: config.snapshot_catchup_entries,
            snapshot_max_chunk_size: 4 * 1024 * 1024,
            purge_batch_size: 256,
            // openraft gives each AppendEntries one heartbeat interval; with
            // entries holding up to PROPOSAL_COMMANDS_MAX commands each, keep
            // a payload small enough to make it even on a busy machine.
            max_payload_entries: 8,
            ..Default::default()
        };
        let raft_config = Arc::new(
            raft_config
                .validate()
                .map_err(|e| format!("raft config: {e}"))?,
        );
        // Only a loopback address of its own: 127.0.0.1 is every loopback
        // connection's source anyway, and binding it explicitly takes the
        // ephemeral port at bind time from the same pool the OS hands out
        // for `port 0` listeners, so a restarting replica could find its
        // port taken by another replica's outgoing connection.
        let local = Some(config.listen_peer.ip())
            .filter(|ip| ip.is_loopback() && *ip != std::net::IpAddr::from([127, 0, 0, 1]));
        let pool = PeerPool::new(config.peer_tls.as_ref(), local);
        let raft = Raft::new(
            id,
            raft_config,
            NetworkFactory {
                id,
                pool: pool.clone(),
                retry_interval: Duration::from_millis(config.heartbeat_ms),
                stages: stages.clone(),
            },
            log.clone(),
            sm,
        )
        .await
        .map_err(|e| format!("start raft: {e}"))?;

        let (proposals_tx, proposals_rx) = mpsc::channel(propose::PROPOSAL_QUEUE_MAX);
        let (reads_tx, reads_rx) = mpsc::channel(propose::READ_QUEUE_MAX);
        let replica = Arc::new_cyclic(|me| Replica {
            me: me.clone(),
            id,
            name: config.name.clone(),
            cluster_id: fnv1a(config.cluster_token.as_bytes()),
            config: config.clone(),
            raft: raft.clone(),
            sm: sm_handle,
            pool,
            proposals: proposals_tx,
            read_waiters: reads_tx,
            leases: leases::LeaseKeeper::default(),
            log,
            proposals_paused: tokio::sync::watch::channel(false).0,
            transfer: tokio::sync::Mutex::new(()),
            stages,
        });

        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        let mut servers = Vec::new();
        let peer_listener = tokio::net::TcpListener::bind(config.listen_peer)
            .await
            .map_err(|e| format!("bind peer address {}: {e}", config.listen_peer))?;
        let client_listener = tokio::net::TcpListener::bind(config.listen_client)
            .await
            .map_err(|e| format!("bind client address {}: {e}", config.listen_client))?;
        servers.push(tokio::spawn(peer::serve(
            replica.clone(),
            peer_listener,
            stop_rx.clone(),
        )));
        servers.push(tokio::spawn(etcd::serve(
            replica.clone(),
            client_listener,
            stop_rx.clone(),
        )));

        if pristine && config.initial_cluster_state == ClusterState::New {
            let members: BTreeMap<NodeId, BasicNode> = config
                .initial_cluster
                .iter()
                .map(|(_, url)| (member_id(url), BasicNode { addr: url.clone() }))
                .collect();
            if !members.contains_key(&id) {
                return Err(format!(
                    "--initial-cluster does not list this replica's peer URL {}",
                    config.advertise_peer
                ));
            }
            // The member with the lowest id initializes at once and wins the
            // first election unopposed. The others wait to hear from it, and
            // initialize themselves (with the same membership, which openraft
            // documents as safe) only if they have not after a grace period,
            // so the cluster still forms when the first member is down.
            let first = members.keys().next().copied() == Some(id);
            let r = raft.clone();
            let init = async move {
                if let Err(e) = r.initialize(members).await {
                    tracing::debug!(error = %e, "initialize (already initialized)");
                }
            };
            if first {
                init.await;
            } else {
                let r = raft.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(BOOTSTRAP_GRACE_MS)).await;
                    if matches!(r.is_initialized().await, Ok(false)) {
                        tracing::info!(
                            "no word from the first member; initializing the cluster here"
                        );
                        init.await;
                    }
                });
            }
        }

        let mut tasks = vec![
            tokio::spawn(propose::run_proposer(replica.clone(), proposals_rx)),
            tokio::spawn(propose::run_read_index(replica.clone(), reads_rx)),
            tokio::spawn(leases::run(replica.clone(), stop_rx.clone())),
            tokio::spawn(failover::run(replica.clone(), stop_rx.clone())),
            tokio::spawn(replica.clone().publish_attributes()),
        ];
        if let Some(retention) = config.auto_compaction_retention {
            tasks.push(tokio::spawn(compactor::run(
                replica.clone(),
                retention,
                stop_rx.clone(),
            )));
        }
        if let Some(every) = config.corrupt_check_interval {
            tasks.push(tokio::spawn(maintenance::run_corrupt_check(
                replica.clone(),
                every,
                stop_rx.clone(),
            )));
        }
        if let Some(backup) = config.backup.clone() {
            tasks.push(tokio::spawn(backups::run(
                replica.clone(),
                backup,
                stop_rx.clone(),
            )));
        }
        tracing::info!(name = %config.name, id = format!("{id:x}"), client = %config.listen_client, peer = %config.listen_peer, "replica started");
        Ok(Server {
            replica,
            tasks,
            stop,
            servers,
        })
    }

    /// Stop serving and shut Raft down.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for t in &self.tasks {
            t.abort();
        }
        if let Err(e) = self.replica.raft.shutdown().await {
            tracing::warn!(error = %e, "shut down raft");
        }
        for s in self.servers {
            let _ = tokio::time::timeout(Duration::from_secs(2), s).await;
        }
    }
}

/// Accepted connections with TCP_NODELAY: without it, Nagle's algorithm and
/// the client's delayed ACK add ~40 ms to small replies.
fn incoming(listener: tokio::net::TcpListener) -> tonic::transport::server::TcpIncoming {
    tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true))
}
