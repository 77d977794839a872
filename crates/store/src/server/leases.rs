//! Lease expiry, kept in the leader's memory.
//!
//! Grants and revocations go through Raft; keep-alives only move a deadline
//! in this map, so they cost no Raft write. The map is empty on a replica
//! that is not leader: a new leader therefore starts every lease's clock
//! afresh (its full TTL) before it can expire any, as etcd does.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use keelson_proto::etcdserverpb as pb;
use keelson_proto::raft::{command, Command, LeaseRevoke};
use tokio::time::Instant;

use super::Replica;
use crate::error::{Error, Result};

/// How often the leader looks for expired leases.
const LEASE_CHECK_INTERVAL_MS: u64 = 100;
/// Most revocations proposed per check, so a mass expiry cannot flood the log.
const LEASE_REVOKES_PER_CHECK_MAX: usize = 500;

#[derive(Default)]
pub struct LeaseKeeper {
    inner: Mutex<KeeperState>,
}

#[derive(Default)]
struct KeeperState {
    /// The term whose leadership the map below belongs to (None: not leading).
    leading: Option<u64>,
    deadlines: HashMap<i64, Instant>,
    /// Leases whose revocation is in flight.
    revoking: HashSet<i64>,
}

impl LeaseKeeper {
    fn lock(&self) -> std::sync::MutexGuard<'_, KeeperState> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl KeeperState {
    /// Make the map belong to `leading` (a term we lead, or None), starting
    /// every lease's clock afresh when the leadership is new.
    fn align(&mut self, leading: Option<u64>) {
        if self.leading != leading {
            self.leading = leading;
            self.deadlines.clear();
            self.revoking.clear();
        }
    }
}

impl Replica {
    /// The lease keeper's state, if this replica leads (aligned to its term).
    fn leader_keeper(&self) -> Result<std::sync::MutexGuard<'_, KeeperState>> {
        let leading = self.is_leader().then(|| self.current_term());
        let mut st = self.leases.lock();
        st.align(leading);
        if leading.is_none() {
            return Err(Error::LeaderChanged);
        }
        Ok(st)
    }

    /// Renew a lease (leader only); returns its TTL.
    pub(crate) fn keep_alive_local(&self, id: i64) -> Result<i64> {
        let ttl = self
            .sm
            .read()
            .leases()
            .get(&id)
            .map(|l| l.ttl)
            .ok_or(Error::LeaseNotFound)?;
        let mut st = self.leader_keeper()?;
        let now = Instant::now();
        // An expired lease stays expired: its revocation is (or is about to
        // be) on its way through Raft, as etcd answers for a lease past its
        // deadline.
        if st.revoking.contains(&id) || st.deadlines.get(&id).is_some_and(|d| *d <= now) {
            return Err(Error::LeaseNotFound);
        }
        st.deadlines
            .insert(id, now + Duration::from_secs(ttl as u64));
        Ok(ttl)
    }

    /// A lease's remaining and granted TTL (leader only). A missing lease
    /// answers TTL -1, as etcd does.
    pub(crate) fn time_to_live_local(
        &self,
        req: &pb::LeaseTimeToLiveRequest,
    ) -> Result<pb::LeaseTimeToLiveResponse> {
        let sm = self.sm.read();
        let revision = sm.revision();
        let Some(lease) = sm.leases().get(&req.id) else {
            return Ok(pb::LeaseTimeToLiveResponse {
                header: Some(self.header(revision)),
                id: req.id,
                ttl: -1,
                granted_ttl: 0,
                keys: Vec::new(),
            });
        };
        let st = self.leader_keeper()?;
        let now = Instant::now();
        let remaining = match st.deadlines.get(&req.id) {
            Some(d) => d.saturating_duration_since(now).as_secs() as i64,
            // Not yet seen by the expiry loop: its clock starts now.
            None => lease.ttl,
        };
        Ok(pb::LeaseTimeToLiveResponse {
            header: Some(self.header(revision)),
            id: req.id,
            ttl: remaining,
            granted_ttl: lease.ttl,
            keys: if req.keys {
                lease.keys.iter().cloned().collect()
            } else {
                Vec::new()
            },
        })
    }

    /// One pass of the expiry loop: track leases, revoke the expired.
    fn expired_leases(&self) -> Vec<i64> {
        let leading = self.is_leader().then(|| self.current_term());
        let sm = self.sm.read();
        let mut st = self.leases.lock();
        // Lost leadership, or won a (new) term: every deadline is forgotten,
        // so each lease gets a full TTL from this leader before it expires.
        st.align(leading);
        if leading.is_none() {
            return Vec::new();
        }
        let now = Instant::now();
        let known = sm.leases();
        st.deadlines.retain(|id, _| known.contains_key(id));
        for (id, lease) in known {
            st.deadlines
                .entry(*id)
                .or_insert_with(|| now + Duration::from_secs(lease.ttl as u64));
        }
        let revoking = st.revoking.clone();
        let mut expired: Vec<i64> = st
            .deadlines
            .iter()
            .filter(|(id, d)| **d <= now && !revoking.contains(id))
            .map(|(id, _)| *id)
            .collect();
        expired.sort_unstable();
        expired.truncate(LEASE_REVOKES_PER_CHECK_MAX);
        st.revoking.extend(expired.iter().copied());
        expired
    }
}

/// The expiry loop; active only while this replica leads.
pub async fn run(replica: Arc<Replica>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_millis(LEASE_CHECK_INTERVAL_MS));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        for id in replica.expired_leases() {
            let r = replica.clone();
            tokio::spawn(async move {
                let cmd = Command {
                    kind: Some(command::Kind::LeaseRevoke(LeaseRevoke { id })),
                };
                match r.propose_local(cmd).await {
                    Ok(_) => {
                        tracing::debug!(lease = format!("{id:x}"), "lease expired and revoked")
                    }
                    Err(e) => {
                        tracing::debug!(lease = format!("{id:x}"), error = %e, "revoke expired lease")
                    }
                }
                r.leases.lock().revoking.remove(&id);
            });
        }
    }
}
