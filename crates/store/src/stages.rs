//! Where a write's time goes: one histogram per stage of the write path,
//! kept by every replica and exported on the API server's `/metrics`
//! (`keelson_store_*_duration_seconds`). `keelson bench write-path` reads
//! them before and after a run of lone writes and prints the breakdown.
//!
//! A write's stages, in order: the client's replica queues it
//! (`propose`, labelled by route: proposed here as leader, or forwarded
//! to the leader), the leader appends it to its log (`wal_fsync` times the
//! flush; replication does not wait for it), sends it to each follower
//! (`peer_append`, the AppendEntries round trip as the leader sees it),
//! each follower appends and flushes it (`peer_append_handle`, inside the
//! follower), and once a quorum holds it the leader applies it (`apply`)
//! and answers.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::time::Duration;

/// How a replica got a batch of writes to the leader.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabel {
    /// "leader": proposed to Raft here; "forwarded": sent to the leader.
    pub route: &'static str,
}

pub struct Stages {
    /// One flush of the Raft log's write-ahead log (covering every append
    /// queued since the last one).
    pub wal_fsync: Histogram,
    /// A batch of commands from its turn in the proposer to its results.
    pub propose: Family<RouteLabel, Histogram>,
    /// On the leader: a follower's forwarded batch, received to answered.
    pub forwarded: Histogram,
    /// On the leader: one AppendEntries round trip to a follower.
    pub peer_append: Histogram,
    /// On a follower: one AppendEntries, received to answered (its own
    /// append and flush included).
    pub peer_append_handle: Histogram,
    /// Applying a run of committed entries to the state machine.
    pub apply: Histogram,
}

fn histogram() -> Histogram {
    // 25 µs .. ~3.3 s
    Histogram::new(exponential_buckets(0.000_025, 2.0, 18))
}

impl Default for Stages {
    fn default() -> Self {
        Stages {
            wal_fsync: histogram(),
            propose: Family::new_with_constructor(histogram),
            forwarded: histogram(),
            peer_append: histogram(),
            peer_append_handle: histogram(),
            apply: histogram(),
        }
    }
}

impl Stages {
    pub fn observe_propose(&self, route: &'static str, elapsed: Duration) {
        self.propose
            .get_or_create(&RouteLabel { route })
            .observe(elapsed.as_secs_f64());
    }

    /// Add every histogram to a Prometheus registry.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "keelson_store_wal_fsync_duration_seconds",
            "Flushes of the Raft log's write-ahead log",
            self.wal_fsync.clone(),
        );
        registry.register(
            "keelson_store_propose_duration_seconds",
            "Batches of writes, queued to answered, by route (proposed here as leader, or forwarded)",
            self.propose.clone(),
        );
        registry.register(
            "keelson_store_forwarded_propose_duration_seconds",
            "On the leader: batches forwarded by a follower, received to answered",
            self.forwarded.clone(),
        );
        registry.register(
            "keelson_store_peer_append_duration_seconds",
            "On the leader: AppendEntries round trips to followers",
            self.peer_append.clone(),
        );
        registry.register(
            "keelson_store_peer_append_handle_duration_seconds",
            "On a follower: AppendEntries received to answered (its append and flush included)",
            self.peer_append_handle.clone(),
        );
        registry.register(
            "keelson_store_apply_duration_seconds",
            "Runs of committed entries applied to the state machine",
            self.apply.clone(),
        );
    }
}
