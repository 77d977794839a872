//! Keelson's store: a Raft-replicated key-value store with etcd's data model
//! and etcd's v3 gRPC API on its client port, so etcd clients work unchanged.
//!
//! # Layout
//! - [`mvcc`]: the pure state machine (revisions, ranges, txns, compaction,
//!   leases, watch history). No IO, no clock; unit-tested on its own.
//! - `raft`: openraft wiring: RocksDB log storage, the state machine with
//!   snapshots, the gRPC peer network.
//! - [`server`]: a replica: proposal and read-index batching, leader-side
//!   lease expiry, the peer port and the etcd-compatible client port.
//! - [`backup`]: backup files (a replica's whole state, checksummed) and
//!   the restore that seeds a new cluster from one.
//! - [`error`]: errors with etcd's messages and their gRPC mapping.
//!
//! # Entry point
//! [`server::Server::start`] with a [`server::Config`].

pub mod backup;
pub mod error;
pub mod mvcc;
mod raft;
pub mod server;
pub mod stages;

pub use error::{Error, Result};
pub use server::{BackupConfig, ClusterState, Config, PeerTls, Server};

#[cfg(test)]
mod storage_suite;
