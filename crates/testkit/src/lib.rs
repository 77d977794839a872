//! Keelson's test kit: clusters of real processes on loopback for the
//! integration tests, `keelson chaos` and `keelson bench`.
//!
//! # Layout
//! - [`process`]: the one way our processes are started ([`process::Spawn`]),
//!   signals, and guards that kill what a test started ([`process::Procs`],
//!   [`process::PodReaper`]).
//! - [`cluster`]: [`cluster::ProcCluster`], replicas (or etcd members) with
//!   free ports, SIGKILL/SIGSTOP/restart, and client processes against them.
//! - [`faultnet`]: the fault layer, proxies that hold or drop bytes between
//!   replicas and between clients and replicas.
//! - [`up`]: a `keelson up` process under test.
//! - [`fixtures`]: the pods, nodes and Deployments tests create.
//! - [`images`]: a busybox image built with umoci, a docker-registry on
//!   loopback, pushes and archives (the runc runtime's tests and bench).
//! - [`etcd`], [`http`], [`wait`]: small client calls and polling.
//! - [`stats`], percentiles.
//!
//! # Invariants
//! Nothing here starts a process that outlives its owner: clusters, [`process::Procs`],
//! [`up::Up`] and [`process::PodReaper`] kill what they started when dropped. Tests bind
//! loopback addresses only; ports come from the OS ([`cluster::free_port`]).
//! No dependency on the server crates: processes are started from a binary path.

pub mod cluster;
pub mod etcd;
pub mod faultnet;
pub mod fixtures;
pub mod http;
pub mod images;
pub mod process;
pub mod stats;
pub mod up;
pub mod wait;

pub use cluster::{channel, free_port, ProcCluster, Program};
pub use process::{signal, signal_group, Procs, Spawn};
pub use wait::{eventually, serial};

/// The `keelson` binary of the calling package's integration tests (cargo
/// builds it before they run).
#[macro_export]
macro_rules! keelson_bin {
    () => {
        ::std::path::PathBuf::from(env!("CARGO_BIN_EXE_keelson"))
    };
}
