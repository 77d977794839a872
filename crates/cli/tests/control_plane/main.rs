//! The scheduler and the controllers against a real control plane with
//! simulated nodes: binding, takeover, rollouts, Endpoints, GC, node
//! lifecycle.

#[path = "../common/mod.rs"]
mod common;

mod controllers;
mod cronjobs;
mod daemonsets;
mod rbac;
mod scheduler;
mod statefulsets;
