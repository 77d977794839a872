//! The pure core of Keelson's pod scheduler: given a pod and a snapshot of
//! the cluster, pick the node to bind it to, or say why no node fits.
//!
//! The shape is kube-scheduler's framework: every node goes through the
//! **filters** (may the pod run there at all?), the nodes that pass are
//! **scored** (where would it run best?), and the highest score wins. There
//! is no IO, no clock and no async in the core modules: the scheduler's loop
//! ([`runner`], the IO shell)
//! watches pods and nodes through the SDK, builds a [`NodeInfo`] per node,
//! calls [`schedule()`] and binds the pod with a compare-and-swap.
//!
//! # Layout
//! - [`resources`]: what a pod requests (sum of its containers' requests,
//!   limits standing in for missing requests) and what a node can hold
//!   (allocatable, falling back to capacity).
//! - [`node_info`]: [`NodeInfo`], a node with the pods bound or assumed on
//!   it and their totals (requested cpu and memory, pod count, host ports);
//!   [`snapshot`] groups a cluster's pods by node.
//! - [`filter`](mod@filter): the filters, each a pure `fn(&Pod, &NodeInfo) -> Result<(),
//!   Reason>` (ready, schedulable, node selector, taints, pod count, cpu,
//!   memory, host ports), and [`filter()`], which runs them all.
//! - [`score`](mod@score): the scores, 0 to [`MAX_NODE_SCORE`]: [`least_allocated`]
//!   and [`spread`], combined by weight in [`score()`].
//! - [`schedule`](mod@schedule): [`schedule()`], the entry point, and
//!   [`Unschedulable`], the per-reason node counts that become the pod's
//!   `PodScheduled=False` condition and event.
//!
//! # Entry point
//! [`schedule()`]`(pod, nodes) -> Result<node name, Unschedulable>`.
//! "Unschedulable, with reasons" is an ordinary outcome, not an error: it
//! carries Kubernetes' message (`0/3 nodes are available: 2 Insufficient cpu,
//! 1 node(s) had untolerated taint {node.kubernetes.io/unreachable}.`).
//!
//! # Client input
//! Quantities in pods and nodes come from clients. The API server validates
//! them, but this crate never panics on one it cannot parse: an unparsable
//! quantity counts as 0 (a pod asking for `"lots"` of cpu requests none; a
//! node offering `"lots"` offers none).

pub mod filter;
pub mod node_info;
pub mod resources;
pub mod runner;
pub mod schedule;
pub mod score;

#[cfg(test)]
mod testutil;

pub use filter::{filter, filter_info, tolerates, Filter, PodInfo, Reason, FILTERS};
pub use node_info::{host_ports, snapshot, HostPort, NodeInfo};
pub use resources::{node_allocatable, pod_requests, pod_requests_for_scoring};
pub use resources::{Allocatable, Resources};
pub use schedule::{feasible_nodes_to_find, schedule, schedule_sampled, Unschedulable};
pub use score::{least_allocated, score, score_info, spread, MAX_NODE_SCORE};
