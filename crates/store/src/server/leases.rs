//! Lease expiry, kept in the leader's memory.
//!
//! Grants and revocations go through Raft; keep-alives only move a deadline
//! in this map, so they cost no Raft write. The map is empty on a replica
//! that is not leader: a new leader therefore starts every lease's clock
//! afresh (its full TTL) before it can expire any, as etcd does.
//!
//! The decisions (which leases expired, whether a keep-alive renews, how
//! long a lease has left) are pure methods of [`KeeperState`] over the
//! leases the state machine knows, the term this replica leads and `now`;
//! the [`Replica`] methods and the loop around them only read those and
//! carry out the revocations.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use keelson_proto::etcdserverpb as pb;
use keelson_proto::raft::{command, Command, LeaseRevoke};
use tokio::time::Instant;

use super::Replica;
use crate::error::{Error, Result};
use crate::mvcc::LeaseRecord;

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

fn ttl_duration(ttl: i64) -> Duration {
    Duration::from_secs(u64::try_from(ttl).unwrap_or(0))
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

    /// Renew lease `id` of `ttl` seconds at `now`. An expired lease stays
    /// expired: its revocation is (or is about to be) on its way through
    /// Raft, as etcd answers for a lease past its deadline.
    fn keep_alive(&mut self, id: i64, ttl: i64, now: Instant) -> Result<()> {
        if self.revoking.contains(&id) || self.deadlines.get(&id).is_some_and(|d| *d <= now) {
            return Err(Error::LeaseNotFound);
        }
        self.deadlines.insert(id, now + ttl_duration(ttl));
        Ok(())
    }

    /// Seconds lease `id` of `ttl` has left at `now`; a lease the expiry
    /// pass has not seen yet has its whole TTL (its clock starts then).
    fn remaining(&self, id: i64, ttl: i64, now: Instant) -> i64 {
        match self.deadlines.get(&id) {
            Some(d) => {
                i64::try_from(d.saturating_duration_since(now).as_secs()).unwrap_or(i64::MAX)
            }
            None => ttl,
        }
    }

    /// One expiry pass at `now` over the leases the state machine knows,
    /// while leading `leading`: forget leases gone, start the
    /// clock of new ones, and return (at most
    /// [`LEASE_REVOKES_PER_CHECK_MAX`], lowest ids first) those past their
    /// deadline and not already being revoked, now marked as revoking.
    fn expire(
        &mut self,
        leading: Option<u64>,
        known: &BTreeMap<i64, LeaseRecord>,
        now: Instant,
    ) -> Vec<i64> {
        // Lost leadership, or won a (new) term: every deadline is forgotten,
        // so each lease gets a full TTL from this leader before it expires.
        self.align(leading);
        if leading.is_none() {
            return Vec::new();
        }
        self.deadlines.retain(|id, _| known.contains_key(id));
        for (id, lease) in known {
            self.deadlines
                .entry(*id)
                .or_insert_with(|| now + ttl_duration(lease.ttl));
        }
        let mut expired: Vec<i64> = self
            .deadlines
            .iter()
            .filter(|(id, d)| **d <= now && !self.revoking.contains(id))
            .map(|(id, _)| *id)
            .collect();
        expired.sort_unstable();
        expired.truncate(LEASE_REVOKES_PER_CHECK_MAX);
        self.revoking.extend(expired.iter().copied());
        expired
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
        self.leader_keeper()?.keep_alive(id, ttl, Instant::now())?;
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
        let remaining = self
            .leader_keeper()?
            .remaining(req.id, lease.ttl, Instant::now());
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

    /// One pass of the expiry loop: the leases to revoke now.
    fn expired_leases(&self) -> Vec<i64> {
        let leading = self.is_leader().then(|| self.current_term());
        let sm = self.sm.read();
        self.leases
            .lock()
            .expire(leading, sm.leases(), Instant::now())
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

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    fn known(leases: &[(i64, i64)]) -> BTreeMap<i64, LeaseRecord> {
        leases
            .iter()
            .map(|(id, ttl)| {
                (
                    *id,
                    LeaseRecord {
                        ttl: *ttl,
                        ..Default::default()
                    },
                )
            })
            .collect()
    }

    #[test]
    fn a_lease_expires_a_ttl_after_it_was_first_seen_or_renewed() {
        let t0 = Instant::now();
        let mut st = KeeperState::default();
        let leases = known(&[(1, 5), (2, 10)]);
        assert!(st.expire(Some(3), &leases, t0).is_empty());
        assert_eq!(st.remaining(1, 5, t0 + secs(2)), 3);
        // Renewed at t0+4: good until t0+9.
        assert!(st.keep_alive(1, 5, t0 + secs(4)).is_ok());
        assert!(st.expire(Some(3), &leases, t0 + secs(6)).is_empty());
        assert_eq!(st.expire(Some(3), &leases, t0 + secs(9)), vec![1]);
        // Being revoked: not returned again, not renewable.
        assert!(st.expire(Some(3), &leases, t0 + secs(9)).is_empty());
        assert!(matches!(
            st.keep_alive(1, 5, t0 + secs(9)),
            Err(Error::LeaseNotFound)
        ));
        assert_eq!(st.expire(Some(3), &leases, t0 + secs(10)), vec![2]);
    }

    #[test]
    fn a_lease_past_its_deadline_cannot_be_renewed() {
        let t0 = Instant::now();
        let mut st = KeeperState::default();
        st.expire(Some(1), &known(&[(7, 2)]), t0);
        assert!(matches!(
            st.keep_alive(7, 2, t0 + secs(2)),
            Err(Error::LeaseNotFound)
        ));
        assert!(st.keep_alive(7, 2, t0 + secs(1)).is_ok());
    }

    #[test]
    fn a_new_term_gives_every_lease_its_whole_ttl_again() {
        let t0 = Instant::now();
        let mut st = KeeperState::default();
        let leases = known(&[(1, 5)]);
        st.expire(Some(1), &leases, t0);
        // Not leading: nothing expires, the clocks are forgotten.
        assert!(st.expire(None, &leases, t0 + secs(6)).is_empty());
        assert!(st.deadlines.is_empty());
        // Leading term 2 from t0+6: the lease lives until t0+11.
        assert!(st.expire(Some(2), &leases, t0 + secs(6)).is_empty());
        assert!(st.expire(Some(2), &leases, t0 + secs(10)).is_empty());
        assert_eq!(st.expire(Some(2), &leases, t0 + secs(11)), vec![1]);
        // A term change while revoking clears the revocations too.
        assert!(st.expire(Some(3), &leases, t0 + secs(11)).is_empty());
        assert!(st.revoking.is_empty());
    }

    #[test]
    fn revoked_leases_are_forgotten_and_a_mass_expiry_is_capped() {
        let t0 = Instant::now();
        let mut st = KeeperState::default();
        let n = i64::try_from(LEASE_REVOKES_PER_CHECK_MAX).unwrap_or(i64::MAX) + 10;
        let many = known(&(0..n).map(|id| (id, 1)).collect::<Vec<_>>());
        st.expire(Some(1), &many, t0);
        let first = st.expire(Some(1), &many, t0 + secs(1));
        assert_eq!(first.len(), LEASE_REVOKES_PER_CHECK_MAX);
        assert_eq!(first[0], 0, "lowest ids first");
        let rest = st.expire(Some(1), &many, t0 + secs(1));
        assert_eq!(rest.len(), 10);
        // Gone from the state machine: gone from the map.
        assert!(st
            .expire(Some(1), &BTreeMap::new(), t0 + secs(2))
            .is_empty());
        assert!(st.deadlines.is_empty());
    }
}
