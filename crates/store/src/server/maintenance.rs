//! Maintenance: alarms kept in the replicated state, HashKV, the periodic
//! corruption check, and defragmentation.
//!
//! - **Alarms** are raised and cleared through Raft ([`Replica::set_alarm`])
//!   and live in the state machine, so every replica refuses the same
//!   writes (`Mvcc::apply` checks them) and a restart keeps them.
//! - **HashKV** hashes the store up to a revision (`Mvcc::hash_kv`); a
//!   replica asked for a revision it has not applied yet waits for it.
//! - **The corruption check** ([`run_corrupt_check`]): the leader, every
//!   `--corrupt-check-interval`, hashes its store at its current revision
//!   and asks each voter for its hash at the same revision over the peer
//!   port. A replica whose hash differs while its compaction point is the
//!   same has diverged: the leader raises CORRUPT for it, which stops every
//!   write on every replica until an operator disarms it (etcd's corrupt
//!   check and alarm).
//! - **Defragment**: Keelson keeps no fragmented database file; what grows
//!   is the Raft log behind the last snapshot. A defragment takes a
//!   snapshot now, purges the log up to it and compacts RocksDB's files.

use std::sync::Arc;
use std::time::Duration;

use keelson_proto::etcdserverpb as pb;
use keelson_proto::raft::{command, Command};
use tonic::Request;

use super::{Replica, REQUEST_TIMEOUT_MS};
use crate::error::{Error, Result};

/// How long a replica waits to reach the revision it is asked to hash.
const HASH_WAIT_MS: u64 = 5000;
/// How long a defragment waits for the log purge before compacting.
const PURGE_WAIT_MS: u64 = 1000;

impl Replica {
    /// Raise (`Activate`) or clear (`Deactivate`) an alarm on every replica.
    pub async fn set_alarm(
        &self,
        action: pb::alarm_request::AlarmAction,
        member_id: u64,
        alarm: pb::AlarmType,
    ) -> Result<()> {
        let cmd = Command {
            kind: Some(command::Kind::Alarm(pb::AlarmRequest {
                action: action as i32,
                member_id,
                alarm: alarm as i32,
            })),
        };
        self.propose_ok(cmd).await.map(|_| ())
    }

    /// The active alarms, as etcd lists them.
    pub fn alarm_members(&self) -> Vec<pb::AlarmMember> {
        self.sm
            .read()
            .alarms()
            .iter()
            .map(|(member_id, alarm)| pb::AlarmMember {
                member_id: *member_id,
                alarm: *alarm,
            })
            .collect()
    }

    /// This replica's hash of the store up to `rev` (0: its current
    /// revision). With `wait` (the leader's corruption check), a revision
    /// not applied yet is waited for; without (a client), it is etcd's
    /// "future revision" at once. The hash is computed on a copy of the
    /// state, off the lock and off the async workers.
    pub async fn hash_kv(&self, rev: i64, wait: bool) -> Result<pb::HashKvResponse> {
        if rev > 0 && wait {
            let mut applied = self.sm.subscribe();
            let reached = tokio::time::timeout(
                Duration::from_millis(HASH_WAIT_MS),
                applied.wait_for(|r| *r >= rev),
            )
            .await;
            match reached {
                Ok(Ok(_)) => {}
                Ok(Err(_)) => return Err(Error::Stopped),
                Err(_) => return Err(Error::Timeout),
            }
        }
        let (hash, hashed, compacted) = self.hash_copy(rev).await?;
        Ok(pb::HashKvResponse {
            header: Some(self.header(hashed)),
            hash,
            compact_revision: compacted,
        })
    }

    async fn hash_copy(&self, rev: i64) -> Result<(u32, i64, i64)> {
        let (state, _) = self.sm.copy();
        tokio::task::spawn_blocking(move || state.hash_kv(rev))
            .await
            .map_err(|e| Error::Internal(format!("hash: {e}")))?
    }

    /// Take a snapshot now, purge the Raft log up to it and compact the
    /// log database's files.
    pub async fn defragment(&self) -> Result<()> {
        let wait = Duration::from_millis(REQUEST_TIMEOUT_MS);
        let applied = self.metrics().last_applied;
        self.raft
            .trigger()
            .snapshot()
            .await
            .map_err(|e| Error::Internal(format!("snapshot: {e}")))?;
        let m = self
            .raft
            .wait(Some(wait))
            .metrics(|m| m.snapshot >= applied, "snapshot for defragment")
            .await
            .map_err(|e| Error::Internal(format!("wait for the snapshot: {e}")))?;
        if let Some(upto) = m.snapshot {
            self.raft
                .trigger()
                .purge_log(upto.index)
                .await
                .map_err(|e| Error::Internal(format!("purge the log: {e}")))?;
            // The purge runs in the background (and waits for entries still
            // being sent to a lagging follower); give it a moment, then
            // compact what it has deleted (RocksDB reclaims the rest later).
            let _ = self
                .raft
                .wait(Some(Duration::from_millis(PURGE_WAIT_MS)))
                .purged(Some(upto), "log purge for defragment")
                .await;
        }
        let log = self.log.clone();
        let before_after = tokio::task::spawn_blocking(move || log.compact())
            .await
            .map_err(|e| Error::Internal(format!("compact the log: {e}")))?
            .map_err(Error::Internal)?;
        tracing::info!(
            snapshot = ?m.snapshot,
            log_bytes_before = before_after.0,
            log_bytes_after = before_after.1,
            "defragmented: snapshot taken, log purged and compacted"
        );
        Ok(())
    }
}

/// How long each step of a leadership transfer may take; the whole stays
/// under etcdctl's 5 s command timeout.
const TRANSFER_STEP_MS: u64 = 1500;

/// Lifts a transfer's pause however the transfer ends.
struct Resume<'a>(&'a Replica);

impl Drop for Resume<'_> {
    fn drop(&mut self) {
        self.0.raft.runtime_config().heartbeat(true);
        self.0.proposals_paused.send_replace(false);
    }
}

impl Replica {
    /// etcd's MoveLeader, on the leader. openraft 0.9 has no leadership
    /// transfer of its own; this is its effect with what it has: once
    /// `target` has every entry, heartbeats, proposals and read-index
    /// rounds stop until every follower's leader lease has lapsed, then
    /// the target is told to stand for election (Raft's TimeoutNow). The
    /// silence is one lease plus a margin, shorter than any follower's own
    /// election timeout, so the target stands first. Writes pause for
    /// about an election timeout. The transfer runs in a task of its own:
    /// a client that gives up does not leave the pause in place.
    pub async fn move_leader(&self, target: u64) -> Result<()> {
        if !self.is_leader() {
            return Err(Error::NotLeader);
        }
        if target == self.id {
            return Ok(());
        }
        let m = self.metrics();
        let membership = m.membership_config.membership();
        if !membership.voter_ids().any(|v| v == target) {
            return Err(Error::BadLeaderTransferee);
        }
        let url = membership
            .get_node(&target)
            .map(|n| n.addr.clone())
            .ok_or(Error::BadLeaderTransferee)?;
        let me = self.me.upgrade().ok_or(Error::Stopped)?;
        tokio::spawn(async move { me.transfer(target, &url).await })
            .await
            .map_err(|e| Error::Internal(format!("leadership transfer: {e}")))?
    }

    async fn transfer(&self, target: u64, url: &str) -> Result<()> {
        let _one = self.transfer.lock().await;
        if !self.is_leader() {
            return Err(Error::NotLeader);
        }
        let term = self.current_term();
        let step = || Some(Duration::from_millis(TRANSFER_STEP_MS));
        let all_matched = |m: &openraft::RaftMetrics<u64, openraft::BasicNode>,
                           who: Option<u64>| {
            let last = m.last_log_index;
            m.replication.as_ref().is_some_and(|r| {
                r.iter()
                    .filter(|(id, _)| who.is_none_or(|w| **id == w))
                    .all(|(_, l)| l.map(|l| l.index) >= last)
            })
        };
        // The target must have the whole log, or it cannot win.
        self.raft
            .wait(step())
            .metrics(|m| all_matched(m, Some(target)), "transferee caught up")
            .await
            .map_err(|_| Error::Timeout)?;
        self.proposals_paused.send_replace(true);
        self.raft.runtime_config().heartbeat(false);
        let _resume = Resume(self);
        // What is in flight reaches every follower; then silence for a
        // lease (openraft's is the longest election timeout).
        let _ = self
            .raft
            .wait(step())
            .metrics(|m| all_matched(m, None), "replication quiet")
            .await;
        tokio::time::sleep(Duration::from_millis(self.config.election_max_ms + 10)).await;
        let mut client = self.pool.client(url).map_err(Error::Internal)?;
        let mut req = Request::new(keelson_proto::raft::TimeoutNowRequest { term });
        req.set_timeout(Duration::from_millis(TRANSFER_STEP_MS));
        client.timeout_now(req).await?;
        self.raft
            .wait(step())
            .metrics(|m| m.current_leader == Some(target), "new leader")
            .await
            .map(|_| ())
            .map_err(|_| Error::Timeout)
    }

    /// Raft's TimeoutNow on the transferee: stand for election at once, if
    /// the leader that asks leads the term this replica is in.
    pub async fn timeout_now(&self, term: u64) -> Result<()> {
        if self.current_term() != term {
            return Err(Error::LeaderChanged);
        }
        self.raft
            .trigger()
            .elect()
            .await
            .map_err(|e| Error::Internal(format!("start an election: {e}")))
    }
}

/// The leader's periodic cross-replica hash comparison (see the module doc).
pub async fn run_corrupt_check(
    replica: Arc<Replica>,
    every: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        if !replica.is_leader() {
            continue;
        }
        if let Err(e) = check_once(&replica).await {
            tracing::debug!(error = %e, "corruption check");
        }
    }
}

async fn check_once(replica: &Replica) -> Result<()> {
    let (hash, rev, compacted) = replica.hash_copy(0).await?;
    let m = replica.metrics();
    let peers: Vec<(u64, String)> = m
        .membership_config
        .membership()
        .nodes()
        .filter(|(id, _)| **id != replica.id)
        .map(|(id, n)| (*id, n.addr.clone()))
        .collect();
    let voters: std::collections::BTreeSet<u64> =
        m.membership_config.membership().voter_ids().collect();
    let already = replica.sm.read().alarms().clone();
    for (id, url) in peers {
        if !voters.contains(&id) || already.contains(&(id, pb::AlarmType::Corrupt as i32)) {
            continue;
        }
        let theirs = async {
            let mut client = replica.pool.client(&url).map_err(Error::Internal)?;
            let mut req = Request::new(pb::HashKvRequest { revision: rev });
            req.set_timeout(Duration::from_millis(HASH_WAIT_MS + 1000));
            Ok::<_, Error>(client.hash_kv(req).await?.into_inner())
        };
        let theirs = match theirs.await {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(member = format!("{id:x}"), error = %e, "corruption check: no hash");
                continue;
            }
        };
        if theirs.compact_revision != compacted {
            // A compaction between the two hashes; the next round compares.
            continue;
        }
        if theirs.hash != hash {
            tracing::error!(
                member = format!("{id:x}"),
                revision = rev,
                leader_hash = hash,
                member_hash = theirs.hash,
                "corruption check: a replica's store differs from the leader's; raising CORRUPT (writes stop until it is disarmed)"
            );
            replica
                .set_alarm(
                    pb::alarm_request::AlarmAction::Activate,
                    id,
                    pb::AlarmType::Corrupt,
                )
                .await?;
        }
    }
    Ok(())
}
