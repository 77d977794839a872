//! Periodic auto-compaction, etcd's `--auto-compaction-retention` in its
//! periodic mode: the leader samples the store revision at regular
//! intervals and compacts to the revision it saw `retention` ago, so history
//! (and memory) stays bounded while watchers keep `retention` of it.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use keelson_proto::etcdserverpb::CompactionRequest;
use keelson_proto::raft::{command, Command};
use tokio::time::Instant;

use super::Replica;

/// How many revision samples a retention window is cut into: compaction
/// lags the ideal point by at most retention / this.
const SAMPLES_PER_RETENTION: u32 = 10;

pub async fn run(
    replica: Arc<Replica>,
    retention: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let every = (retention / SAMPLES_PER_RETENTION).max(Duration::from_millis(100));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // (when, revision) samples taken while leading, oldest first.
    let mut samples: VecDeque<(Instant, i64)> = VecDeque::new();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        if !replica.is_leader() {
            samples.clear();
            continue;
        }
        let now = Instant::now();
        let (revision, compacted) = {
            let sm = replica.sm.read();
            (sm.revision(), sm.compacted_revision())
        };
        samples.push_back((now, revision));
        // The newest sample at least `retention` old is the compaction point.
        let mut target = None;
        while let Some(&(at, rev)) = samples.front() {
            if now.duration_since(at) < retention {
                break;
            }
            target = Some(rev);
            samples.pop_front();
        }
        let Some(rev) = target else { continue };
        if rev <= compacted {
            continue;
        }
        let cmd = Command {
            kind: Some(command::Kind::Compact(CompactionRequest {
                revision: rev,
                physical: false,
            })),
        };
        match replica.propose_local(cmd).await {
            Ok(_) => tracing::info!(revision = rev, "auto-compacted history"),
            Err(e) => tracing::debug!(revision = rev, error = %e, "auto-compaction"),
        }
    }
}
