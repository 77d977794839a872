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

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use keelson_proto::v1;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Kubernetes' default `periodSeconds`.
pub const DEFAULT_PERIOD_SECONDS: i32 = 10;
/// Kubernetes' default `timeoutSeconds`.
pub const DEFAULT_TIMEOUT_SECONDS: i32 = 1;
/// Kubernetes' default `successThreshold`.
pub const DEFAULT_SUCCESS_THRESHOLD: i32 = 1;
/// Kubernetes' default `failureThreshold`.
pub const DEFAULT_FAILURE_THRESHOLD: i32 = 3;

/// The most output of an exec probe kept for its failure message (the
/// kubelet's limit, 10 KiB).
const MAX_EXEC_OUTPUT: usize = 10 * 1024;
/// The longest HTTP status line accepted.
const MAX_STATUS_LINE: usize = 8 * 1024;
/// How long an exec probe's output is still read after its command exited
/// (a background process it left may hold the pipes open).
const EXEC_OUTPUT_GRACE: Duration = Duration::from_millis(100);
/// PATH for exec probes when neither the container nor the agent has one.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

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

// ---------------------------------------------------------------------------
// Running a probe

/// Run one probe once, bounded by its `timeoutSeconds`:
///
/// - `exec`: runs `command[0]` with `command[1..]` in `target.working_dir`,
///   with exactly `target.env` (plus the agent's PATH when it has no PATH);
///   succeeds iff it exits 0. At the timeout it is killed and fails. The
///   failure message carries its output (up to 10 KiB).
/// - `httpGet`: an HTTP/1.1 GET of `path` (default "/") on `host` (default
///   `target.pod_ip`) and `port` (a number, or a port name resolved from
///   `target.ports`), with `httpHeaders`; succeeds iff the status is 200 to
///   399. Redirects are not followed. HTTPS is not supported (fails).
/// - `tcpSocket`: succeeds iff a TCP connection to `host` (default
///   `target.pod_ip`) and `port` opens.
///
/// A probe with no handler fails.
pub async fn run(probe: &v1::Probe, target: &Target) -> Outcome {
    let timeout = timeout(probe);
    if let Some(exec) = &probe.exec {
        run_exec(exec, target, timeout).await
    } else if let Some(http) = &probe.http_get {
        run_http(http, target, timeout).await
    } else if let Some(tcp) = &probe.tcp_socket {
        run_tcp(tcp, target, timeout).await
    } else {
        Outcome::Failure("probe has no handler".into())
    }
}

fn secs(d: Duration) -> u64 {
    d.as_secs()
}

async fn run_exec(exec: &v1::ExecAction, target: &Target, timeout: Duration) -> Outcome {
    let Some((program, args)) = exec.command.split_first() else {
        return Outcome::Failure("exec probe has no command".into());
    };
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .env_clear()
        .envs(&target.env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if !target.env.contains_key("PATH") {
        match std::env::var_os("PATH") {
            Some(path) => cmd.env("PATH", path),
            None => cmd.env("PATH", DEFAULT_PATH),
        };
    }
    if !target.working_dir.as_os_str().is_empty() {
        cmd.current_dir(&target.working_dir);
    }
    let mut child = match cmd.spawn() {
        Ok(child) => child,
        Err(e) => {
            return Outcome::Failure(format!("exec probe: cannot run {:?}: {e}", exec.command));
        }
    };
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let output = tokio::spawn(async move {
        let (mut out, err) = tokio::join!(read_capped(stdout), read_capped(stderr));
        out.extend_from_slice(&err);
        out.truncate(MAX_EXEC_OUTPUT);
        out
    });
    let status = match tokio::time::timeout(timeout, child.wait()).await {
        Ok(Ok(status)) => status,
        Ok(Err(e)) => {
            output.abort();
            let _ = child.start_kill();
            return Outcome::Failure(format!("exec probe: waiting for {:?}: {e}", exec.command));
        }
        Err(_) => {
            output.abort();
            let _ = child.start_kill();
            // Reap it (bounded: tokio reaps a dropped child in the background).
            let _ = tokio::time::timeout(Duration::from_secs(1), child.wait()).await;
            return Outcome::Failure(format!(
                "command {:?} timed out after {}s",
                exec.command,
                secs(timeout)
            ));
        }
    };
    if status.success() {
        output.abort();
        return Outcome::Success;
    }
    let abort = output.abort_handle();
    let output = match tokio::time::timeout(EXEC_OUTPUT_GRACE, output).await {
        Ok(Ok(bytes)) => String::from_utf8_lossy(&bytes).trim().to_string(),
        _ => {
            abort.abort();
            String::new()
        }
    };
    let how = match status.code() {
        Some(code) => format!("exited with code {code}"),
        None => "was killed by a signal".to_string(),
    };
    if output.is_empty() {
        Outcome::Failure(format!("command {:?} {how}", exec.command))
    } else {
        Outcome::Failure(format!("command {:?} {how}: {output}", exec.command))
    }
}

/// Everything `reader` yields until EOF (or an error), keeping the first
/// [`MAX_EXEC_OUTPUT`] bytes and draining the rest.
async fn read_capped<R: AsyncRead + Unpin>(reader: Option<R>) -> Vec<u8> {
    let mut kept = Vec::new();
    let Some(mut reader) = reader else {
        return kept;
    };
    let mut buf = [0u8; 4096];
    loop {
        match reader.read(&mut buf).await {
            Ok(0) | Err(_) => return kept,
            Ok(n) => {
                let room = MAX_EXEC_OUTPUT.saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
            }
        }
    }
}

/// The port a probe names: a number (1..=65535), or the name of one of the
/// container's ports.
fn resolve_port(port: &str, target: &Target) -> Result<u16, String> {
    let port = port.trim();
    if port.is_empty() {
        return Err("probe has no port".into());
    }
    let number = match port.parse::<i64>() {
        Ok(n) => n,
        Err(_) => match target.ports.iter().find(|(name, _)| name == port) {
            Some((_, n)) => i64::from(*n),
            None => return Err(format!("port {port:?} is not a port of the container")),
        },
    };
    match u16::try_from(number) {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("port {port:?} is out of range")),
    }
}

/// The host to connect to (without IPv6 brackets), and its `host:port`
/// form (with them).
fn resolve_host(host: &str, target: &Target, port: u16) -> Result<(String, String), String> {
    let host = match host.trim() {
        "" => target.pod_ip.trim(),
        h => h,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err("probe has no host and the pod has no IP".into());
    }
    let authority = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    Ok((host.to_string(), authority))
}

/// Whether `name` is an HTTP header name (an RFC 9110 token).
fn is_token(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

async fn run_http(http: &v1::HttpGetAction, target: &Target, timeout: Duration) -> Outcome {
    match http.scheme.trim().to_ascii_uppercase().as_str() {
        "" | "HTTP" => {}
        "HTTPS" => return Outcome::Failure("https probes are not supported".into()),
        other => return Outcome::Failure(format!("unsupported probe scheme {other:?}")),
    }
    let port = match resolve_port(&http.port, target) {
        Ok(p) => p,
        Err(e) => return Outcome::Failure(e),
    };
    let (host, authority) = match resolve_host(&http.host, target, port) {
        Ok(h) => h,
        Err(e) => return Outcome::Failure(e),
    };
    let path = match http.path.as_str() {
        "" => "/".to_string(),
        p if p.starts_with('/') => p.to_string(),
        p => format!("/{p}"),
    };
    if path.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Outcome::Failure(format!("invalid probe path {:?}", http.path));
    }
    let url = format!("http://{authority}{path}");

    // The request: our Host, User-Agent and Accept unless the probe sets
    // its own; always Connection: close.
    let has = |name: &str| {
        http.http_headers
            .iter()
            .any(|h| h.name.eq_ignore_ascii_case(name))
    };
    let mut request = format!("GET {path} HTTP/1.1\r\n");
    if !has("host") {
        request.push_str(&format!("Host: {authority}\r\n"));
    }
    if !has("user-agent") {
        request.push_str(&format!(
            "User-Agent: keelson-probe/{}\r\n",
            env!("CARGO_PKG_VERSION")
        ));
    }
    if !has("accept") {
        request.push_str("Accept: */*\r\n");
    }
    for h in &http.http_headers {
        if !is_token(&h.name) {
            return Outcome::Failure(format!("invalid probe header name {:?}", h.name));
        }
        if h.value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
            return Outcome::Failure(format!("invalid value of probe header {:?}", h.name));
        }
        if h.name.eq_ignore_ascii_case("connection") {
            continue;
        }
        request.push_str(&format!("{}: {}\r\n", h.name, h.value));
    }
    request.push_str("Connection: close\r\n\r\n");

    let exchange = async {
        let mut stream = TcpStream::connect((host.as_str(), port))
            .await
            .map_err(|e| format!("connect: {e}"))?;
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| format!("sending the request: {e}"))?;
        let line = read_status_line(&mut stream).await?;
        parse_status(&line).ok_or_else(|| format!("malformed status line {line:?}"))
    };
    match tokio::time::timeout(timeout, exchange).await {
        Err(_) => Outcome::Failure(format!(
            "HTTP probe of {url} timed out after {}s",
            secs(timeout)
        )),
        Ok(Err(e)) => Outcome::Failure(format!("HTTP probe of {url} failed: {e}")),
        Ok(Ok(code)) if (200..=399).contains(&code) => Outcome::Success,
        Ok(Ok(code)) => Outcome::Failure(format!("HTTP probe failed with statuscode: {code}")),
    }
}

/// The first line of the response, without its line ending.
async fn read_status_line(stream: &mut TcpStream) -> Result<String, String> {
    let mut line = Vec::with_capacity(128);
    let mut buf = [0u8; 1024];
    loop {
        if let Some(end) = line.iter().position(|&b| b == b'\n') {
            line.truncate(end);
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            return Ok(String::from_utf8_lossy(&line).into_owned());
        }
        if line.len() > MAX_STATUS_LINE {
            return Err("status line too long".into());
        }
        let n = stream
            .read(&mut buf)
            .await
            .map_err(|e| format!("reading the response: {e}"))?;
        if n == 0 {
            return Err("connection closed before a response".into());
        }
        line.extend_from_slice(&buf[..n]);
    }
}

/// The status code of an HTTP/1.x status line ("HTTP/1.1 200 OK").
fn parse_status(line: &str) -> Option<u16> {
    let mut parts = line.splitn(3, ' ');
    if !parts.next()?.starts_with("HTTP/") {
        return None;
    }
    let code = parts.next()?;
    if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    code.parse().ok()
}

async fn run_tcp(tcp: &v1::TcpSocketAction, target: &Target, timeout: Duration) -> Outcome {
    let port = match resolve_port(&tcp.port, target) {
        Ok(p) => p,
        Err(e) => return Outcome::Failure(e),
    };
    let (host, authority) = match resolve_host(&tcp.host, target, port) {
        Ok(h) => h,
        Err(e) => return Outcome::Failure(e),
    };
    match tokio::time::timeout(timeout, TcpStream::connect((host.as_str(), port))).await {
        Ok(Ok(_)) => Outcome::Success,
        Ok(Err(e)) => Outcome::Failure(format!("dial tcp {authority}: {e}")),
        Err(_) => Outcome::Failure(format!(
            "dial tcp {authority}: timed out after {}s",
            secs(timeout)
        )),
    }
}

// ---------------------------------------------------------------------------
// The state of probes

/// The pure state of one probe of one container: when it is due, and its
/// result after thresholds. No IO, time passed in.
#[derive(Clone, Debug)]
pub struct Tracker {
    kind: ProbeKind,
    probe: v1::Probe,
    settings: Settings,
    container_started: Instant,
    last_sent: Option<Instant>,
    in_flight: bool,
    /// The overall result (ready / healthy / started).
    passing: bool,
    /// The failure threshold was reached (and the success threshold not
    /// since), with the failure that reached it.
    failed: Option<String>,
    /// The last outcome (success?) and how many in a row were the same.
    last_success: Option<bool>,
    run: u32,
    last_failure: Option<String>,
}

impl Tracker {
    pub fn new(kind: ProbeKind, probe: &v1::Probe, container_started: Instant) -> Tracker {
        Tracker {
            kind,
            probe: probe.clone(),
            settings: Settings::new(kind, probe),
            container_started,
            last_sent: None,
            in_flight: false,
            passing: kind == ProbeKind::Liveness,
            failed: None,
            last_success: None,
            run: 0,
            last_failure: None,
        }
    }

    pub fn kind(&self) -> ProbeKind {
        self.kind
    }

    pub fn probe(&self) -> &v1::Probe {
        &self.probe
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Whether the probe is done for this container: a startup probe that
    /// passed, or a liveness or startup probe that failed (the container
    /// must be restarted).
    fn on_hold(&self) -> bool {
        match self.kind {
            ProbeKind::Readiness => false,
            ProbeKind::Liveness => self.failed.is_some(),
            ProbeKind::Startup => self.passing || self.failed.is_some(),
        }
    }

    /// When the next probe becomes due: None while one is in flight, when
    /// the probe is on hold, or beyond the clock's range.
    pub fn next_due(&self) -> Option<Instant> {
        if self.in_flight || self.on_hold() {
            return None;
        }
        let first = self
            .container_started
            .checked_add(self.settings.initial_delay)?;
        match self.last_sent {
            None => Some(first),
            Some(last) => Some(first.max(last.checked_add(self.settings.period)?)),
        }
    }

    /// Whether a probe should be sent now (initial delay passed; a period
    /// since the last one; not while one is in flight; not on hold).
    pub fn due(&self, now: Instant) -> bool {
        self.next_due().is_some_and(|at| now >= at)
    }

    /// A probe was sent at `now` (marks in flight).
    pub fn sent(&mut self, now: Instant) {
        self.last_sent = Some(now);
        self.in_flight = true;
    }

    /// Its outcome arrived: apply thresholds; returns true when the overall
    /// result changed. (An outcome without [`Tracker::sent`] counts as sent
    /// at `now`.)
    pub fn record(&mut self, outcome: &Outcome, now: Instant) -> bool {
        self.in_flight = false;
        if self.last_sent.is_none() {
            self.last_sent = Some(now);
        }
        let success = *outcome == Outcome::Success;
        self.last_failure = match outcome {
            Outcome::Success => None,
            Outcome::Failure(message) => Some(message.clone()),
        };
        if self.last_success == Some(success) {
            self.run = self.run.saturating_add(1);
        } else {
            self.last_success = Some(success);
            self.run = 1;
        }
        let threshold = if success {
            self.settings.success_threshold
        } else {
            self.settings.failure_threshold
        };
        if self.run < threshold {
            return false;
        }
        if success {
            self.failed = None;
        } else if self.failed.is_none() {
            self.failed = self.last_failure.clone();
        }
        let changed = self.passing != success;
        self.passing = success;
        changed
    }

    /// The current overall result: for Readiness "ready", for Liveness
    /// "healthy", for Startup "started".
    pub fn passing(&self) -> bool {
        self.passing
    }

    /// The failure threshold was reached (and the success threshold not
    /// since): the failure that reached it.
    pub fn failed(&self) -> Option<&str> {
        self.failed.as_deref()
    }

    /// The last failure message (for events/status), if the last outcome
    /// failed.
    pub fn last_failure(&self) -> Option<&str> {
        self.last_failure.as_deref()
    }
}

/// The probes of one container with Kubernetes' gating: startup first;
/// liveness and readiness only once started.
#[derive(Clone, Debug)]
pub struct ContainerProbes {
    startup: Option<Tracker>,
    liveness: Option<Tracker>,
    readiness: Option<Tracker>,
}

impl ContainerProbes {
    /// The probes of `container`, which started at `started`.
    pub fn new(container: &v1::Container, started: Instant) -> ContainerProbes {
        let tracker = |kind, probe: &Option<v1::Probe>| {
            probe.as_ref().map(|p| Tracker::new(kind, p, started))
        };
        ContainerProbes {
            startup: tracker(ProbeKind::Startup, &container.startup_probe),
            liveness: tracker(ProbeKind::Liveness, &container.liveness_probe),
            readiness: tracker(ProbeKind::Readiness, &container.readiness_probe),
        }
    }

    pub fn tracker(&self, kind: ProbeKind) -> Option<&Tracker> {
        match kind {
            ProbeKind::Startup => self.startup.as_ref(),
            ProbeKind::Liveness => self.liveness.as_ref(),
            ProbeKind::Readiness => self.readiness.as_ref(),
        }
    }

    fn tracker_mut(&mut self, kind: ProbeKind) -> Option<&mut Tracker> {
        match kind {
            ProbeKind::Startup => self.startup.as_mut(),
            ProbeKind::Liveness => self.liveness.as_mut(),
            ProbeKind::Readiness => self.readiness.as_mut(),
        }
    }

    /// The trackers that may run now: the startup probe until it passed,
    /// then liveness and readiness.
    fn active(&self) -> Vec<&Tracker> {
        match &self.startup {
            Some(startup) if !startup.passing() => vec![startup],
            _ => [&self.liveness, &self.readiness]
                .into_iter()
                .flatten()
                .collect(),
        }
    }

    /// Which probes to send now (kinds), given gating and `due`, in the
    /// order startup, liveness, readiness.
    pub fn due(&self, now: Instant) -> Vec<ProbeKind> {
        self.active()
            .into_iter()
            .filter(|t| t.due(now))
            .map(Tracker::kind)
            .collect()
    }

    /// When the next probe becomes due under the gating (None: nothing to
    /// wait for until an outcome arrives, or no probes).
    pub fn next_due(&self) -> Option<Instant> {
        self.active()
            .into_iter()
            .filter_map(Tracker::next_due)
            .min()
    }

    /// A `kind` probe was sent at `now` (no-op when the container has none).
    pub fn sent(&mut self, kind: ProbeKind, now: Instant) {
        if let Some(t) = self.tracker_mut(kind) {
            t.sent(now);
        }
    }

    /// A `kind` probe's outcome arrived; true when that probe's overall
    /// result changed (false when the container has no such probe).
    pub fn record(&mut self, kind: ProbeKind, outcome: &Outcome, now: Instant) -> bool {
        self.tracker_mut(kind)
            .is_some_and(|t| t.record(outcome, now))
    }

    /// Started: no startup probe, or it passed.
    pub fn started(&self) -> bool {
        self.startup.as_ref().is_none_or(Tracker::passing)
    }

    /// Ready: started, and readiness passing (no readiness probe: ready once
    /// started).
    pub fn ready(&self) -> bool {
        self.started() && self.readiness.as_ref().is_none_or(Tracker::passing)
    }

    /// Liveness failed past its threshold (the container must be
    /// restarted), with the failure message.
    pub fn liveness_failed(&self) -> Option<String> {
        self.liveness
            .as_ref()
            .and_then(Tracker::failed)
            .map(str::to_string)
    }

    /// Startup failed past its threshold (the container must be
    /// restarted), with the failure message.
    pub fn startup_failed(&self) -> Option<String> {
        self.startup
            .as_ref()
            .and_then(Tracker::failed)
            .map(str::to_string)
    }

    /// The container's `kind` probe, if it has one.
    pub fn probe(&self, kind: ProbeKind) -> Option<&v1::Probe> {
        self.tracker(kind).map(Tracker::probe)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    fn t0() -> Instant {
        Instant::now()
    }

    fn s(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    fn fail() -> Outcome {
        Outcome::Failure("boom".into())
    }

    /// A probe (tcpSocket on 80) with these timings.
    fn probe(delay: i32, period: i32, success: i32, failure: i32) -> v1::Probe {
        v1::Probe {
            tcp_socket: Some(v1::TcpSocketAction {
                port: "80".into(),
                host: String::new(),
            }),
            initial_delay_seconds: delay,
            period_seconds: period,
            success_threshold: success,
            failure_threshold: failure,
            ..Default::default()
        }
    }

    fn container(
        startup: Option<v1::Probe>,
        liveness: Option<v1::Probe>,
        readiness: Option<v1::Probe>,
    ) -> v1::Container {
        v1::Container {
            name: "c".into(),
            startup_probe: startup,
            liveness_probe: liveness,
            readiness_probe: readiness,
            ..Default::default()
        }
    }

    /// Send and record one outcome at `at`; whether the result changed.
    fn step(t: &mut Tracker, outcome: &Outcome, at: Instant) -> bool {
        assert!(t.due(at), "{:?} not due at {:?}", t.kind(), at);
        t.sent(at);
        t.record(outcome, at)
    }

    #[test]
    fn settings_defaults_and_clamping() {
        let defaults = Settings {
            initial_delay: s(0),
            period: s(10),
            timeout: s(1),
            success_threshold: 1,
            failure_threshold: 3,
        };
        let minimums = Settings {
            initial_delay: s(0),
            period: s(1),
            timeout: s(1),
            success_threshold: 1,
            failure_threshold: 1,
        };
        let negative = v1::Probe {
            initial_delay_seconds: -5,
            timeout_seconds: -1,
            period_seconds: i32::MIN,
            success_threshold: -3,
            failure_threshold: -7,
            ..Default::default()
        };
        let explicit = v1::Probe {
            initial_delay_seconds: 7,
            timeout_seconds: 4,
            period_seconds: 2,
            success_threshold: 5,
            failure_threshold: 6,
            ..Default::default()
        };
        let cases: Vec<(&str, ProbeKind, v1::Probe, Settings)> = vec![
            (
                "zero: defaults",
                ProbeKind::Readiness,
                v1::Probe::default(),
                defaults,
            ),
            (
                "zero liveness",
                ProbeKind::Liveness,
                v1::Probe::default(),
                defaults,
            ),
            (
                "negative: minimums",
                ProbeKind::Readiness,
                negative.clone(),
                minimums,
            ),
            ("negative startup", ProbeKind::Startup, negative, minimums),
            (
                "explicit readiness",
                ProbeKind::Readiness,
                explicit.clone(),
                Settings {
                    initial_delay: s(7),
                    period: s(2),
                    timeout: s(4),
                    success_threshold: 5,
                    failure_threshold: 6,
                },
            ),
            (
                "liveness forces successThreshold 1",
                ProbeKind::Liveness,
                explicit.clone(),
                Settings {
                    initial_delay: s(7),
                    period: s(2),
                    timeout: s(4),
                    success_threshold: 1,
                    failure_threshold: 6,
                },
            ),
            (
                "startup forces successThreshold 1",
                ProbeKind::Startup,
                explicit,
                Settings {
                    initial_delay: s(7),
                    period: s(2),
                    timeout: s(4),
                    success_threshold: 1,
                    failure_threshold: 6,
                },
            ),
        ];
        for (name, kind, p, want) in cases {
            assert_eq!(Settings::new(kind, &p), want, "{name}");
        }
    }

    #[test]
    fn initial_states() {
        let start = t0();
        let p = probe(0, 0, 0, 0);
        for (kind, passing) in [
            (ProbeKind::Readiness, false),
            (ProbeKind::Liveness, true),
            (ProbeKind::Startup, false),
        ] {
            let t = Tracker::new(kind, &p, start);
            assert_eq!(t.passing(), passing, "{kind}");
            assert_eq!(t.last_failure(), None, "{kind}");
            assert_eq!(t.failed(), None, "{kind}");
            assert!(t.due(start), "{kind}: due at once without initial delay");
        }
    }

    #[test]
    fn initial_delay_and_period() {
        let start = t0();
        let mut t = Tracker::new(ProbeKind::Readiness, &probe(5, 3, 0, 0), start);
        // (seconds after start, due?)
        for (at, due) in [(0, false), (4, false), (5, true), (6, true)] {
            assert_eq!(t.due(start + s(at)), due, "before the first, at {at}s");
        }
        assert_eq!(t.next_due(), Some(start + s(5)));
        t.sent(start + s(6));
        assert!(!t.due(start + s(100)), "not while in flight");
        assert_eq!(t.next_due(), None);
        t.record(&Outcome::Success, start + s(6));
        // A period after the last one *sent* (at 6 s).
        for (at, due) in [(6, false), (8, false), (9, true), (20, true)] {
            assert_eq!(t.due(start + s(at)), due, "after the first, at {at}s");
        }
        assert_eq!(t.next_due(), Some(start + s(9)));
    }

    #[test]
    fn default_period_is_ten_seconds() {
        let start = t0();
        let mut t = Tracker::new(ProbeKind::Liveness, &probe(0, 0, 0, 0), start);
        step(&mut t, &Outcome::Success, start);
        assert!(!t.due(start + s(9)));
        assert!(t.due(start + s(10)));
    }

    #[test]
    fn huge_initial_delay_does_not_panic() {
        let start = t0();
        let t = Tracker::new(
            ProbeKind::Readiness,
            &probe(i32::MAX, i32::MAX, 0, 0),
            start,
        );
        assert!(!t.due(start + s(1_000_000)));
        let mut t = Tracker::new(ProbeKind::Readiness, &probe(0, i32::MAX, 0, 0), start);
        step(&mut t, &Outcome::Success, start);
        assert!(!t.due(start + s(1_000_000)));
    }

    #[test]
    fn thresholds() {
        let ok = Outcome::Success;
        let no = fail();
        // (name, kind, successThreshold, failureThreshold, outcomes,
        //  expected passing after each, expected "changed" after each)
        type Case<'a> = (
            &'a str,
            ProbeKind,
            i32,
            i32,
            Vec<&'a Outcome>,
            Vec<bool>,
            Vec<bool>,
        );
        let cases: Vec<Case> = vec![
            (
                "readiness: ready after one success by default",
                ProbeKind::Readiness,
                0,
                0,
                vec![&ok, &ok],
                vec![true, true],
                vec![true, false],
            ),
            (
                "readiness: not ready after 3 failures by default",
                ProbeKind::Readiness,
                0,
                0,
                vec![&ok, &no, &no, &no, &no],
                vec![true, true, true, false, false],
                vec![true, false, false, true, false],
            ),
            (
                "readiness: successThreshold 3 needs 3 in a row",
                ProbeKind::Readiness,
                3,
                1,
                vec![&ok, &ok, &no, &ok, &ok, &ok],
                vec![false, false, false, false, false, true],
                vec![false, false, false, false, false, true],
            ),
            (
                "readiness: failureThreshold 2, a success in between resets",
                ProbeKind::Readiness,
                1,
                2,
                vec![&ok, &no, &ok, &no, &no],
                vec![true, true, true, true, false],
                vec![true, false, false, false, true],
            ),
            (
                "liveness: healthy until 3 failures in a row",
                ProbeKind::Liveness,
                0,
                0,
                vec![&no, &no, &ok, &no, &no, &no],
                vec![true, true, true, true, true, false],
                vec![false, false, false, false, false, true],
            ),
            (
                "liveness: failureThreshold 1",
                ProbeKind::Liveness,
                0,
                1,
                vec![&ok, &no],
                vec![true, false],
                vec![false, true],
            ),
            (
                "liveness ignores successThreshold",
                ProbeKind::Liveness,
                5,
                1,
                vec![&no],
                vec![false],
                vec![true],
            ),
            (
                "startup: started after one success",
                ProbeKind::Startup,
                0,
                0,
                vec![&no, &no, &ok],
                vec![false, false, true],
                vec![false, false, true],
            ),
            (
                "startup ignores successThreshold",
                ProbeKind::Startup,
                4,
                0,
                vec![&ok],
                vec![true],
                vec![true],
            ),
        ];
        for (name, kind, success, failure, outcomes, passing, changed) in cases {
            let start = t0();
            let mut t = Tracker::new(kind, &probe(0, 1, success, failure), start);
            for (i, outcome) in outcomes.iter().enumerate() {
                let at = start + s(i as u64);
                let c = step(&mut t, outcome, at);
                assert_eq!(t.passing(), passing[i], "{name}: passing after #{i}");
                assert_eq!(c, changed[i], "{name}: changed after #{i}");
                let want_failure = (**outcome != Outcome::Success).then_some("boom");
                assert_eq!(t.last_failure(), want_failure, "{name}: last failure #{i}");
            }
        }
    }

    #[test]
    fn readiness_flapping() {
        let start = t0();
        let mut t = Tracker::new(ProbeKind::Readiness, &probe(0, 1, 1, 1), start);
        for i in 0..10u64 {
            let outcome = if i % 2 == 0 { Outcome::Success } else { fail() };
            assert!(
                step(&mut t, &outcome, start + s(i)),
                "changes every time: #{i}"
            );
            assert_eq!(t.passing(), i % 2 == 0, "#{i}");
            assert_eq!(t.failed().is_some(), i % 2 == 1, "#{i}");
        }
        // Readiness never goes on hold.
        assert!(t.due(start + s(10)));
    }

    #[test]
    fn liveness_and_startup_failures_hold() {
        let start = t0();
        let mut t = Tracker::new(ProbeKind::Liveness, &probe(0, 1, 0, 2), start);
        step(&mut t, &Outcome::Failure("first".into()), start);
        assert_eq!(t.failed(), None);
        step(&mut t, &Outcome::Failure("second".into()), start + s(1));
        assert_eq!(t.failed(), Some("second"));
        assert!(!t.due(start + s(100)), "on hold after a liveness failure");

        let mut t = Tracker::new(ProbeKind::Startup, &probe(0, 1, 0, 1), start);
        step(&mut t, &fail(), start);
        assert_eq!(t.failed(), Some("boom"));
        assert!(!t.passing());
        assert!(!t.due(start + s(100)), "on hold after a startup failure");

        let mut t = Tracker::new(ProbeKind::Startup, &probe(0, 1, 0, 0), start);
        step(&mut t, &Outcome::Success, start);
        assert!(
            !t.due(start + s(100)),
            "a startup probe that passed is done"
        );
    }

    #[test]
    fn record_without_sent_counts_as_sent() {
        let start = t0();
        let mut t = Tracker::new(ProbeKind::Readiness, &probe(0, 5, 0, 0), start);
        assert!(t.record(&Outcome::Success, start + s(2)));
        assert!(!t.due(start + s(6)));
        assert!(t.due(start + s(7)));
    }

    #[test]
    fn no_probes_ready_once_started() {
        let start = t0();
        let p = ContainerProbes::new(&container(None, None, None), start);
        assert!(p.started());
        assert!(p.ready());
        assert!(p.due(start).is_empty());
        assert_eq!(p.next_due(), None);
        assert_eq!(p.liveness_failed(), None);
        assert_eq!(p.startup_failed(), None);
        for kind in [
            ProbeKind::Startup,
            ProbeKind::Liveness,
            ProbeKind::Readiness,
        ] {
            assert_eq!(p.probe(kind), None);
        }
    }

    #[test]
    fn container_probes_table() {
        let rp = probe(0, 1, 0, 0);
        let lp = probe(0, 1, 0, 0);
        let sp = probe(0, 1, 0, 0);
        // (name, container, started, ready, due at start)
        let cases = vec![
            (
                "readiness only",
                container(None, None, Some(rp.clone())),
                true,
                false,
                vec![ProbeKind::Readiness],
            ),
            (
                "liveness only: ready at once",
                container(None, Some(lp.clone()), None),
                true,
                true,
                vec![ProbeKind::Liveness],
            ),
            (
                "liveness and readiness",
                container(None, Some(lp.clone()), Some(rp.clone())),
                true,
                false,
                vec![ProbeKind::Liveness, ProbeKind::Readiness],
            ),
            (
                "startup gates the others",
                container(Some(sp.clone()), Some(lp.clone()), Some(rp.clone())),
                false,
                false,
                vec![ProbeKind::Startup],
            ),
            (
                "startup only",
                container(Some(sp), None, None),
                false,
                false,
                vec![ProbeKind::Startup],
            ),
        ];
        for (name, c, started, ready, due) in cases {
            let start = t0();
            let p = ContainerProbes::new(&c, start);
            assert_eq!(p.started(), started, "{name}");
            assert_eq!(p.ready(), ready, "{name}");
            assert_eq!(p.due(start), due, "{name}");
            assert_eq!(
                p.probe(ProbeKind::Startup),
                c.startup_probe.as_ref(),
                "{name}"
            );
            assert_eq!(
                p.probe(ProbeKind::Liveness),
                c.liveness_probe.as_ref(),
                "{name}"
            );
            assert_eq!(
                p.probe(ProbeKind::Readiness),
                c.readiness_probe.as_ref(),
                "{name}"
            );
        }
    }

    #[test]
    fn gating_by_startup() {
        let start = t0();
        let c = container(
            Some(probe(0, 2, 0, 5)),
            Some(probe(0, 1, 0, 0)),
            Some(probe(3, 1, 0, 0)),
        );
        let mut p = ContainerProbes::new(&c, start);
        // Startup fails twice (under its threshold): still only startup.
        for i in 0..2u64 {
            let at = start + s(2 * i);
            assert_eq!(p.due(at), vec![ProbeKind::Startup], "#{i}");
            p.sent(ProbeKind::Startup, at);
            assert!(p.due(at).is_empty(), "in flight");
            assert!(!p.record(ProbeKind::Startup, &fail(), at));
            assert!(!p.started());
            assert!(!p.ready());
        }
        assert_eq!(p.next_due(), Some(start + s(4)));
        // It passes at 4 s: started, liveness due; readiness too (its
        // initial delay of 3 s counts from the container's start).
        let at = start + s(4);
        p.sent(ProbeKind::Startup, at);
        assert!(p.record(ProbeKind::Startup, &Outcome::Success, at));
        assert!(p.started());
        assert!(!p.ready(), "readiness has not passed yet");
        assert_eq!(p.due(at), vec![ProbeKind::Liveness, ProbeKind::Readiness]);
        p.sent(ProbeKind::Readiness, at);
        assert!(p.record(ProbeKind::Readiness, &Outcome::Success, at));
        assert!(p.ready());
        // Startup is never sent again.
        assert!(!p.due(start + s(100)).contains(&ProbeKind::Startup));
    }

    #[test]
    fn readiness_initial_delay_after_startup() {
        let start = t0();
        let c = container(Some(probe(0, 1, 0, 0)), None, Some(probe(10, 1, 0, 0)));
        let mut p = ContainerProbes::new(&c, start);
        p.sent(ProbeKind::Startup, start);
        p.record(ProbeKind::Startup, &Outcome::Success, start);
        assert!(p.due(start + s(9)).is_empty());
        assert_eq!(p.next_due(), Some(start + s(10)));
        assert_eq!(p.due(start + s(10)), vec![ProbeKind::Readiness]);
    }

    #[test]
    fn startup_failure() {
        let start = t0();
        let c = container(Some(probe(0, 1, 0, 2)), Some(probe(0, 1, 0, 0)), None);
        let mut p = ContainerProbes::new(&c, start);
        for i in 0..2u64 {
            let at = start + s(i);
            p.sent(ProbeKind::Startup, at);
            p.record(
                ProbeKind::Startup,
                &Outcome::Failure(format!("no #{i}")),
                at,
            );
        }
        assert_eq!(p.startup_failed().as_deref(), Some("no #1"));
        assert_eq!(p.liveness_failed(), None);
        assert!(!p.started());
        assert!(p.due(start + s(100)).is_empty(), "nothing runs any more");
    }

    #[test]
    fn liveness_failure() {
        let start = t0();
        let c = container(None, Some(probe(0, 1, 0, 3)), Some(probe(0, 1, 0, 0)));
        let mut p = ContainerProbes::new(&c, start);
        for i in 0..3u64 {
            let at = start + s(i);
            assert_eq!(p.liveness_failed(), None, "#{i}");
            p.sent(ProbeKind::Liveness, at);
            let changed = p.record(ProbeKind::Liveness, &Outcome::Failure("dead".into()), at);
            assert_eq!(changed, i == 2, "#{i}");
        }
        assert_eq!(p.liveness_failed().as_deref(), Some("dead"));
        // Liveness is on hold; readiness keeps going.
        assert_eq!(p.due(start + s(10)), vec![ProbeKind::Readiness]);
        // An absent probe is a no-op.
        let mut none = ContainerProbes::new(&container(None, None, None), start);
        none.sent(ProbeKind::Liveness, start);
        assert!(!none.record(ProbeKind::Liveness, &fail(), start));
        assert_eq!(none.liveness_failed(), None);
    }

    #[test]
    fn malformed_probes_do_not_panic() {
        let start = t0();
        let weird = v1::Probe {
            initial_delay_seconds: i32::MIN,
            timeout_seconds: i32::MIN,
            period_seconds: -1,
            success_threshold: i32::MIN,
            failure_threshold: 0,
            ..Default::default()
        };
        let c = container(Some(weird.clone()), Some(weird.clone()), Some(weird));
        let mut p = ContainerProbes::new(&c, start);
        assert_eq!(p.due(start), vec![ProbeKind::Startup]);
        p.sent(ProbeKind::Startup, start);
        p.record(ProbeKind::Startup, &Outcome::Success, start);
        assert_eq!(
            p.due(start),
            vec![ProbeKind::Liveness, ProbeKind::Readiness]
        );
        p.sent(ProbeKind::Readiness, start);
        p.record(ProbeKind::Readiness, &Outcome::Success, start);
        assert!(p.ready());
        assert!(
            p.due(start + s(1)).contains(&ProbeKind::Readiness),
            "period 1 s"
        );
    }

    // -- run ---------------------------------------------------------------

    /// A server on 127.0.0.1:0 answering every request with `status`; the
    /// requests it read go to the returned channel.
    async fn http_server(status: u16) -> (u16, tokio::sync::mpsc::UnboundedReceiver<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            loop {
                let Ok((mut conn, _)) = listener.accept().await else {
                    return;
                };
                let tx = tx.clone();
                tokio::spawn(async move {
                    let mut req = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                        match conn.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => req.extend_from_slice(&buf[..n]),
                        }
                    }
                    let _ = tx.send(String::from_utf8_lossy(&req).into_owned());
                    let body = "hello";
                    let resp = format!(
                        "HTTP/1.1 {status} Whatever\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = conn.write_all(resp.as_bytes()).await;
                });
            }
        });
        (port, rx)
    }

    fn local() -> Target {
        Target {
            pod_ip: "127.0.0.1".into(),
            ..Default::default()
        }
    }

    fn http_probe(port: &str, path: &str) -> v1::Probe {
        v1::Probe {
            http_get: Some(v1::HttpGetAction {
                port: port.into(),
                path: path.into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn tcp_probe(port: &str) -> v1::Probe {
        v1::Probe {
            tcp_socket: Some(v1::TcpSocketAction {
                port: port.into(),
                host: String::new(),
            }),
            ..Default::default()
        }
    }

    fn exec_probe(script: &str, timeout: i32) -> v1::Probe {
        v1::Probe {
            exec: Some(v1::ExecAction {
                command: vec!["sh".into(), "-c".into(), script.into()],
            }),
            timeout_seconds: timeout,
            ..Default::default()
        }
    }

    /// A port nothing listens on.
    async fn closed_port() -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap().port()
    }

    fn is_failure(o: &Outcome) -> bool {
        matches!(o, Outcome::Failure(_))
    }

    #[tokio::test]
    async fn http_success_and_request_shape() {
        let (port, mut rx) = http_server(200).await;
        let mut p = http_probe(&port.to_string(), "healthz?x=1");
        if let Some(h) = p.http_get.as_mut() {
            h.http_headers = vec![v1::HttpHeader {
                name: "X-Custom".into(),
                value: "yes".into(),
            }];
        }
        assert_eq!(run(&p, &local()).await, Outcome::Success);
        let req = rx.recv().await.unwrap();
        assert!(req.starts_with("GET /healthz?x=1 HTTP/1.1\r\n"), "{req}");
        assert!(
            req.contains(&format!("\r\nHost: 127.0.0.1:{port}\r\n")),
            "{req}"
        );
        assert!(req.contains("\r\nConnection: close\r\n"), "{req}");
        assert!(req.contains("\r\nX-Custom: yes\r\n"), "{req}");
    }

    #[tokio::test]
    async fn http_default_path_and_host_override() {
        let (port, mut rx) = http_server(302).await;
        let mut p = http_probe(&port.to_string(), "");
        if let Some(h) = p.http_get.as_mut() {
            h.host = "127.0.0.1".into();
            h.http_headers = vec![v1::HttpHeader {
                name: "host".into(),
                value: "example.test".into(),
            }];
        }
        let target = Target {
            pod_ip: "192.0.2.1".into(), // unused: the probe names its host
            ..Default::default()
        };
        assert_eq!(run(&p, &target).await, Outcome::Success, "3xx passes");
        let req = rx.recv().await.unwrap();
        assert!(req.starts_with("GET / HTTP/1.1\r\n"), "{req}");
        assert!(req.contains("\r\nhost: example.test\r\n"), "{req}");
        assert!(!req.contains("Host: 127.0.0.1"), "{req}");
    }

    #[tokio::test]
    async fn http_failures() {
        let (port, _rx) = http_server(500).await;
        assert_eq!(
            run(&http_probe(&port.to_string(), "/"), &local()).await,
            Outcome::Failure("HTTP probe failed with statuscode: 500".into())
        );
        let closed = closed_port().await;
        assert!(is_failure(
            &run(&http_probe(&closed.to_string(), "/"), &local()).await
        ));

        let mut https = http_probe(&port.to_string(), "/");
        if let Some(h) = https.http_get.as_mut() {
            h.scheme = "HTTPS".into();
        }
        assert_eq!(
            run(&https, &local()).await,
            Outcome::Failure("https probes are not supported".into())
        );
        for bad_port in ["", "0", "70000", "-1", "web"] {
            let o = run(&http_probe(bad_port, "/"), &local()).await;
            assert!(is_failure(&o), "port {bad_port:?}: {o:?}");
        }
        let o = run(&http_probe(&port.to_string(), "/a b"), &local()).await;
        assert!(is_failure(&o), "path with a space: {o:?}");
        let mut injected = http_probe(&port.to_string(), "/");
        if let Some(h) = injected.http_get.as_mut() {
            h.http_headers = vec![v1::HttpHeader {
                name: "X".into(),
                value: "a\r\nEvil: 1".into(),
            }];
        }
        assert!(is_failure(&run(&injected, &local()).await));
        let o = run(&http_probe(&port.to_string(), "/"), &Target::default()).await;
        assert!(is_failure(&o), "no host: {o:?}");
    }

    #[tokio::test]
    async fn http_named_port() {
        let (port, _rx) = http_server(204).await;
        let target = Target {
            pod_ip: "127.0.0.1".into(),
            ports: vec![("metrics".into(), 1), ("http".into(), i32::from(port))],
            ..Default::default()
        };
        assert_eq!(
            run(&http_probe("http", "/"), &target).await,
            Outcome::Success
        );
        let o = run(&http_probe("nope", "/"), &target).await;
        assert!(is_failure(&o), "{o:?}");
    }

    #[tokio::test]
    async fn http_timeout() {
        // Accepts and never answers.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((conn, _)) = listener.accept().await {
                held.push(conn);
            }
        });
        let started = Instant::now();
        let mut p = http_probe(&port.to_string(), "/");
        p.timeout_seconds = 1;
        let o = run(&p, &local()).await;
        let took = started.elapsed();
        assert!(is_failure(&o), "{o:?}");
        assert!(
            took >= Duration::from_millis(900) && took < s(3),
            "{took:?}"
        );
        server.abort();
    }

    #[tokio::test]
    async fn tcp_probes() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        assert_eq!(
            run(&tcp_probe(&port.to_string()), &local()).await,
            Outcome::Success
        );
        let named = Target {
            pod_ip: "127.0.0.1".into(),
            ports: vec![("db".into(), i32::from(port))],
            ..Default::default()
        };
        assert_eq!(run(&tcp_probe("db"), &named).await, Outcome::Success);
        assert!(is_failure(&run(&tcp_probe("other"), &named).await));
        drop(listener);
        let closed = closed_port().await;
        let o = run(&tcp_probe(&closed.to_string()), &local()).await;
        assert!(is_failure(&o), "{o:?}");
    }

    #[tokio::test]
    async fn no_handler() {
        assert_eq!(
            run(&v1::Probe::default(), &local()).await,
            Outcome::Failure("probe has no handler".into())
        );
    }

    #[tokio::test]
    async fn exec_exit_codes() {
        assert_eq!(
            run(&exec_probe("exit 0", 0), &local()).await,
            Outcome::Success
        );
        match run(&exec_probe("echo not ok; exit 3", 0), &local()).await {
            Outcome::Failure(m) => {
                assert!(m.contains("exited with code 3"), "{m}");
                assert!(m.contains("not ok"), "output in the message: {m}");
            }
            o => panic!("{o:?}"),
        }
        let empty = v1::Probe {
            exec: Some(v1::ExecAction::default()),
            ..Default::default()
        };
        assert!(is_failure(&run(&empty, &local()).await));
        let missing = v1::Probe {
            exec: Some(v1::ExecAction {
                command: vec!["/nonexistent/keelson-probe-test".into()],
            }),
            ..Default::default()
        };
        assert!(is_failure(&run(&missing, &local()).await));
    }

    #[tokio::test]
    async fn exec_env_and_working_dir() {
        let dir = std::env::temp_dir().canonicalize().unwrap();
        let target = Target {
            working_dir: dir.clone(),
            env: [("GREETING".to_string(), "hi there".to_string())].into(),
            ..Default::default()
        };
        let script = format!(
            "test \"$GREETING\" = 'hi there' && test \"$(pwd -P)\" = '{}' && test -n \"$PATH\"",
            dir.display()
        );
        assert_eq!(
            run(&exec_probe(&script, 0), &target).await,
            Outcome::Success
        );
        // Nothing of the agent's environment but PATH.
        if std::env::var_os("HOME").is_some() {
            let o = run(&exec_probe("test -z \"$HOME\"", 0), &target).await;
            assert_eq!(o, Outcome::Success);
        }
        // The container's PATH wins.
        let own_path = Target {
            env: [("PATH".to_string(), "/keelson/bin:/usr/bin:/bin".to_string())].into(),
            ..Default::default()
        };
        let o = run(
            &exec_probe("test \"$PATH\" = /keelson/bin:/usr/bin:/bin", 0),
            &own_path,
        )
        .await;
        assert_eq!(o, Outcome::Success);
        let missing_dir = Target {
            working_dir: "/nonexistent/keelson-probe-dir".into(),
            ..Default::default()
        };
        assert!(is_failure(
            &run(&exec_probe("exit 0", 0), &missing_dir).await
        ));
    }

    #[tokio::test]
    async fn exec_timeout_kills() {
        let started = Instant::now();
        let o = run(&exec_probe("sleep 5", 1), &local()).await;
        let took = started.elapsed();
        match o {
            Outcome::Failure(m) => assert!(m.contains("timed out"), "{m}"),
            o => panic!("{o:?}"),
        }
        assert!(
            took >= Duration::from_millis(900) && took < s(3),
            "{took:?}"
        );
    }

    #[tokio::test]
    async fn exec_background_child_does_not_block() {
        // A background process holding the output pipes does not hold up
        // the result past the grace period.
        let started = Instant::now();
        let o = run(&exec_probe("sleep 3 & exit 4", 2), &local()).await;
        assert!(is_failure(&o), "{o:?}");
        assert!(started.elapsed() < s(2), "{:?}", started.elapsed());
        let started = Instant::now();
        let o = run(&exec_probe("sleep 3 & exit 0", 2), &local()).await;
        assert_eq!(o, Outcome::Success);
        assert!(started.elapsed() < s(2), "{:?}", started.elapsed());
    }
}
