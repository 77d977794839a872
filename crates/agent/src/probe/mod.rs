//! Container probes, after the kubelet's prober.
//!
//! [`run`] sends one probe (exec, HTTP GET or TCP connect) and returns its
//! [`Outcome`]; [`Tracker`] is the pure state of one probe of one container
//! (when the next one is due, and the result after thresholds); and
//! [`ContainerProbes`] holds a container's three probes with Kubernetes'
//! gating. The agent drives them: it asks [`ContainerProbes::due`] which
//! probes to send, marks them [`ContainerProbes::sent`], runs them, and
//! [`ContainerProbes::record`]s the outcomes.
//!
//! - **Settings.** `initialDelaySeconds` (default 0), `periodSeconds`
//!   (default 10), `timeoutSeconds` (default 1), `successThreshold`
//!   (default 1, and always 1 for liveness and startup probes) and
//!   `failureThreshold` (default 3). Protobuf cannot tell an unset field from
//!   0, so 0 means the default; negative values (which Kubernetes' validation
//!   rejects) are clamped to Kubernetes' minimums: 0 s initial delay, 1 s
//!   period and timeout, thresholds of 1. See [`Settings`].
//! - **Timing.** The first probe is due once the initial delay has passed
//!   since the container started, then one period after the previous one was
//!   sent, never while one is in flight.
//! - **Thresholds.** The overall result changes only after
//!   `successThreshold` consecutive successes or `failureThreshold`
//!   consecutive failures. Readiness starts not ready, liveness healthy,
//!   startup not started.
//! - **Gating.** While a container has a startup probe that has not
//!   succeeded, only the startup probe runs; liveness and readiness start
//!   once it has (their initial delays still count from the container's
//!   start). A startup probe that succeeded is not run again.
//! - **Failure.** A liveness or startup probe that reaches its failure
//!   threshold is put on hold (no more probes): the container must be
//!   restarted, and the restarted container gets new [`ContainerProbes`].
//!   A readiness failure only makes the container not ready; it keeps being
//!   probed and becomes ready again after `successThreshold` successes.
//! - **Handlers.** The first of `exec`, `httpGet`, `tcpSocket` that is set
//!   is used; a probe with none fails. Every probe is bounded by
//!   `timeoutSeconds`; a probe that times out fails.
//!
//! # Layout
//! - this module: the shared types ([`ProbeKind`], [`Outcome`], [`Target`])
//!   and [`Settings`] (a probe's fields with defaults applied);
//! - `tracker.rs`: the pure [`Tracker`] and [`ContainerProbes`] (no IO, time
//!   passed in);
//! - `prober.rs`: [`run`], which sends one probe (the only IO here).

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use keelson_proto::v1;

mod prober;
mod tracker;

pub use prober::run;
pub use tracker::{ContainerProbes, Tracker};

/// Kubernetes' default `periodSeconds`.
pub const DEFAULT_PERIOD_SECONDS: i32 = 10;
/// Kubernetes' default `timeoutSeconds`.
pub const DEFAULT_TIMEOUT_SECONDS: i32 = 1;
/// Kubernetes' default `successThreshold`.
pub const DEFAULT_SUCCESS_THRESHOLD: i32 = 1;
/// Kubernetes' default `failureThreshold`.
pub const DEFAULT_FAILURE_THRESHOLD: i32 = 3;

/// Which of a container's three probes (the kubelet's `probeType`); not
/// the handler (exec, HTTP GET, TCP), which the [`v1::Probe`] says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProbeKind {
    Startup,
    Liveness,
    Readiness,
}

impl fmt::Display for ProbeKind {
    /// "Startup", "Liveness" or "Readiness", as in the kubelet's events
    /// ("Liveness probe failed: ...").
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ProbeKind::Startup => "Startup",
            ProbeKind::Liveness => "Liveness",
            ProbeKind::Readiness => "Readiness",
        })
    }
}

/// The outcome of one probe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// Failed, with why (for events and status).
    Failure(String),
}

/// Where and how to probe one container.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Target {
    /// The default host of HTTP and TCP probes.
    pub pod_ip: String,
    /// The container's ports, `(name, containerPort)`, to resolve named
    /// probe ports.
    pub ports: Vec<(String, i32)>,
    /// Where exec probes run (empty: the agent's own directory).
    pub working_dir: PathBuf,
    /// The environment of exec probes (plus PATH when it has none).
    pub env: BTreeMap<String, String>,
    /// A program and arguments that run a command inside the container
    /// (the runc runtime's `runc exec <id>`); empty: exec probes run on
    /// the host, as the process runtime's containers do.
    pub exec_prefix: Vec<String>,
}

/// A probe's settings with defaults applied and values clamped to
/// Kubernetes' minimums.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settings {
    pub initial_delay: Duration,
    pub period: Duration,
    pub timeout: Duration,
    pub success_threshold: u32,
    pub failure_threshold: u32,
}

impl Settings {
    /// The settings of `probe` used as a `kind` probe: 0 is the default,
    /// negative the minimum; `successThreshold` is 1 for liveness and
    /// startup probes whatever the spec says.
    pub fn new(kind: ProbeKind, probe: &v1::Probe) -> Settings {
        let success_threshold = match kind {
            ProbeKind::Readiness => positive(probe.success_threshold, DEFAULT_SUCCESS_THRESHOLD),
            ProbeKind::Liveness | ProbeKind::Startup => 1,
        };
        Settings {
            initial_delay: Duration::from_secs(
                probe.initial_delay_seconds.max(0).unsigned_abs().into(),
            ),
            period: Duration::from_secs(
                positive(probe.period_seconds, DEFAULT_PERIOD_SECONDS).into(),
            ),
            timeout: timeout(probe),
            success_threshold,
            failure_threshold: positive(probe.failure_threshold, DEFAULT_FAILURE_THRESHOLD),
        }
    }
}

/// `value` when positive, `default` when 0, 1 when negative.
fn positive(value: i32, default: i32) -> u32 {
    let v = match value {
        0 => default,
        v => v.max(1),
    };
    v.unsigned_abs()
}

/// A probe's `timeoutSeconds` (default 1 s, at least 1 s).
fn timeout(probe: &v1::Probe) -> Duration {
    Duration::from_secs(positive(probe.timeout_seconds, DEFAULT_TIMEOUT_SECONDS).into())
}
