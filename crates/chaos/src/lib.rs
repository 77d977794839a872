//! `keelson chaos`: a real cluster under seeded faults and workloads
//! ([`runner`]), and the judgement of what it recorded: histories of
//! operations ([`history`]) and the checkers that decide whether the store
//! and the control plane kept their promises ([`linearizability`] per key,
//! [`invariants`] for the rest of the store, [`controlplane`] for
//! scheduling and controllers).
//!
//! # Layout
//! - [`history`], [`linearizability`], [`invariants`], [`controlplane`]:
//!   pure and deterministic checkers, unit-tested with known good and bad
//!   histories.
//! - [`runner`]: the run itself (cluster, fault schedule, KV and
//!   control-plane workloads, report); `keelson chaos` hands off to
//!   [`runner::run`].

pub mod controlplane;
pub mod history;
pub mod invariants;
pub mod linearizability;
pub mod runner;
