//! The node agent (the kubelet's and kube-proxy's roles): it registers its
//! Node, heartbeats, runs the pods bound to it through a [`runtime`], probes
//! them and reports their status. [`sim`] runs simulated nodes instead.

pub mod agent;
pub mod kubelet;
pub mod logs;
pub mod probe;
pub mod process;
pub mod proxy;
pub mod runtime;
pub mod session;
pub mod sim;

/// The built-in images (their own crate, for a small binary).
pub use keelson_builtin as builtin;
