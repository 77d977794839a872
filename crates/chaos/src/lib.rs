//! The chaos harness's judgement: histories of operations recorded under
//! faults ([`history`]) and the checkers that decide whether the store kept
//! its promises ([`linearizability`] per key, [`invariants`] for the rest of
//! the store, [`controlplane`] for scheduling and controllers).
//! Pure and deterministic; `keelson chaos` (crates/cli) runs the cluster,
//! the faults and the workloads and hands the history here.

pub mod controlplane;
pub mod history;
pub mod invariants;
pub mod linearizability;
