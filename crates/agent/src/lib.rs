//! The node agent (the kubelet's and kube-proxy's roles): it registers its
//! Node, heartbeats, runs the pods bound to it through a [`runtime`], probes
//! them and reports their status. [`sim`] runs simulated nodes instead.
//!
//! Decisions and IO are apart, as in the scheduler and the controllers:
//! [`kubelet`] and [`probe::Tracker`] decide (pure, tested with a clock of
//! their own); [`agent`] carries the decisions out, every call that may
//! block (listing the runtime, spawning and signalling processes, binding
//! to check an address) on tokio's blocking pool, never on an async
//! worker.
//!
//! # Layout
//! - [`agent`]: the IO loop. Registers the Node, holds the [`session`],
//!   and each round observes the node (runtime listing, addresses in use),
//!   calls [`kubelet::Kubelet::sync`], makes the plan's runtime calls (up
//!   to 4 starts at once), hands the start results back, and sends the
//!   statuses, deletion confirmations and probes.
//! - [`session`]: the agent's side of `Nodes.Session`: one stream to any
//!   replica (heartbeats and statuses up, the node's pods down), reopened
//!   on another with back-off.
//! - [`kubelet`]: the pod lifecycle as a pure function,
//!   `sync(desired, observed, now) -> Plan`.
//! - [`probe`], in two parts: `tracker` (pure: when a probe is due,
//!   thresholds, gating) and `prober` (exec, httpGet, tcpSocket).
//! - [`runtime`]: the `Runtime` trait; [`process`]: containers as host
//!   processes (process groups, env, logs with rotation, re-adoption after
//!   an agent restart, cgroup limits where the host allows); [`runc`]: OCI
//!   images under runc, each pod a sandbox (a pause process holding its
//!   network, IPC and UTS namespaces) on the node's bridge.
//! - [`image`]: references, the node's content store (an OCI layout,
//!   layers unpacked once), pulls and archive imports.
//! - [`network`]: the node's bridge, a veth per pod, the confinement rule;
//!   [`services`]: Service rules in nftables for the runc runtime's pods.
//! - [`logs`]: the `NodeAgent.Logs` endpoint the API server relays.
//! - [`proxy`]: the Service proxy of the process runtime (a listener per
//!   Service port on the node's address, round-robin to ready endpoints,
//!   local ones first).
//! - [`sim`]: N simulated nodes in one process (kubemark, kwok).
//! - [`builtin`]: the built-in images, re-exported.
//!
//! # Entry point
//! [`agent::run`]`(client, options)`; [`sim::run`] for simulated nodes.

pub mod agent;
pub mod config;
pub mod dns;
pub mod exec;
pub mod forward;
pub mod image;
pub mod kubelet;
pub mod logs;
pub mod network;
pub mod probe;
pub mod process;
pub mod proxy;
pub mod runc;
pub mod runtime;
pub mod services;
pub mod session;
pub mod sim;
pub mod volume_files;

/// The built-in images (their own crate, for a small binary).
pub use keelson_builtin as builtin;
