//! Fast failover: a follower holds a [`LeaderProbe`] stream open to the
//! leader. When the leader's process dies its sockets close, the stream
//! fails at once, and the follower campaigns as soon as the other
//! followers' leader leases (one maximum election timeout after the last
//! heartbeat) have run out, instead of waiting a further random election
//! timeout. Followers campaign in id order, spaced apart, so they do not
//! split the vote; one that sees a new leader first stands down.
//!
//! A paused or partitioned leader keeps its sockets open: then the ordinary
//! election timer acts, as without this module.
//!
//! [`LeaderProbe`]: keelson_proto::raft::raft_peer_client::RaftPeerClient::leader_probe

use std::sync::Arc;
use std::time::Duration;

use keelson_proto::raft::LeaderProbeRequest;
use openraft::ServerState;

use super::Replica;

/// How long a second look at the leader may take.
const LEADER_RECHECK_TIMEOUT_MS: u64 = 500;

/// A second look before campaigning: only a leader whose port now refuses
/// connections is taken for dead. One that answers, or is merely slow (busy,
/// paused), is left to the ordinary election timer, so a dropped connection
/// never disrupts a live leader.
async fn leader_is_gone(replica: &Replica, url: &str) -> bool {
    let Ok(mut client) = replica.pool.client(url) else {
        return false;
    };
    let call = client.leader_probe(LeaderProbeRequest {});
    match tokio::time::timeout(Duration::from_millis(LEADER_RECHECK_TIMEOUT_MS), call).await {
        Ok(Err(status)) => status.code() == tonic::Code::Unavailable,
        Ok(Ok(_)) | Err(_) => false,
    }
}

pub async fn run(replica: Arc<Replica>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut metrics = replica.raft.metrics();
    loop {
        // Wait for a leader other than us.
        let (leader, url, term, rank) = loop {
            let found = {
                let m = metrics.borrow_and_update();
                let membership = m.membership_config.membership();
                let voters: Vec<u64> = membership.voter_ids().collect();
                match m.current_leader {
                    Some(l)
                        if l != replica.id
                            && m.state == ServerState::Follower
                            && voters.contains(&replica.id) =>
                    {
                        let mut others: Vec<u64> = voters.into_iter().filter(|v| *v != l).collect();
                        others.sort_unstable();
                        let rank = others.iter().position(|v| *v == replica.id).unwrap_or(0);
                        membership
                            .get_node(&l)
                            .map(|n| (l, n.addr.clone(), m.current_term, rank))
                    }
                    _ => None,
                }
            };
            if let Some(f) = found {
                break f;
            }
            tokio::select! {
                r = metrics.changed() => if r.is_err() { return },
                _ = stop.changed() => return,
            }
        };

        // Hold the probe until it fails or the leader changes.
        let probe = async {
            let Ok(mut client) = replica.pool.client(&url) else {
                return;
            };
            if let Ok(resp) = client.leader_probe(LeaderProbeRequest {}).await {
                let mut stream = resp.into_inner();
                while let Ok(Some(_)) = stream.message().await {}
            }
        };
        let leader_changed = async {
            let mut m = replica.raft.metrics();
            let _ = m
                .wait_for(|m| m.current_leader != Some(leader) || m.current_term != term)
                .await;
        };
        tokio::select! {
            _ = probe => {}
            _ = leader_changed => continue,
            _ = stop.changed() => return,
        }

        // The leader's connection is gone. Give the other followers' leases
        // time to lapse, staggered by rank, then campaign unless a new
        // leader appeared meanwhile.
        let cfg = &replica.config;
        let delay =
            cfg.election_max_ms + rank as u64 * (cfg.election_min_ms / 2).max(cfg.heartbeat_ms);
        tokio::time::sleep(Duration::from_millis(delay)).await;
        let still_same = {
            let m = replica.raft.metrics();
            let m = m.borrow();
            m.current_leader == Some(leader) && m.current_term == term
        };
        if still_same && leader_is_gone(&replica, &url).await {
            tracing::info!(
                leader = format!("{leader:x}"),
                "leader connection lost; campaigning"
            );
            let _ = replica.raft.trigger().elect().await;
        }
        // Do not probe the same dead leader again.
        let mut m = replica.raft.metrics();
        tokio::select! {
            _ = m.wait_for(|m| m.current_leader != Some(leader) || m.current_term != term) => {}
            _ = stop.changed() => return,
        }
    }
}
