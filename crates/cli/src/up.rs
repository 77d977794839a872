//! `keelson up` / `keelson down`: a local HA cluster in one command.
//!
//! `up` starts `--replicas` control-plane replicas and `--agents` node
//! agents as separate OS processes (this binary, `keelson server` and
//! `keelson agent`), each in its own process group with its data under the
//! data dir, waits until the cluster is healthy, writes the client config
//! and a kubeconfig (merged into `~/.kube/config` as context `keelson`),
//! then supervises: a process that dies is started again (unless
//! `--no-restart`). SIGINT/SIGTERM (Ctrl-C, or `keelson down`) stops the
//! agents first (they stop their pods), then the replicas.
//!
//! The data dir's layout:
//!
//! ```text
//! cluster.json        what runs where (fixed at the first start; a second
//!                     start resumes it)
//! tokens.csv          the replicas' tokens: one admin, one per node
//! admin.config        client config (all API endpoints, the admin token)
//! kubeconfig          for kubectl (the first replica's Kubernetes API)
//! m1/ m2/ m3/         replicas' data         n1/ n2/   agents' data
//! n1.config ...       each agent's client config (its node token)
//! logs/<name>.log     each process' output    run/<name>.pid, run/up.pid
//! ```
//!
//! Replica i listens on its own loopback address (`--replica-address`
//! counting up: 127.0.10.1, .2, ...) with etcd's and Kubernetes' usual
//! ports (etcd 2379, peers 2380, API 6443, Kubernetes API 7443, metrics
//! 9379); agent j on
//! `--agent-address` counting up (127.0.0.11, .12, ...), its pods on
//! 127.<last octet>.x.y, its Service proxy ports on its own address.

use std::collections::BTreeMap;

use crate::files::write_file;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use clap::Args;
use keelson_proto::api::cluster_client::ClusterClient;
use keelson_proto::api::ClusterStatusRequest;
use keelson_proto::v1;
use keelson_sdk::client::Retry;
use keelson_sdk::{Api, Client, Config, ListParams};
use keelson_testkit::process::{signal, Spawn};
use serde::{Deserialize, Serialize};

use crate::server_cmd::NodeLifecycleArgs;

/// The demo app `up --demo` applies (also `examples/web.yaml`).
const DEMO: &str = include_str!("../../../examples/web.yaml");
/// The demo on real containers (`up --demo --runtime runc`), and the
/// image it runs, which `up` builds from busybox-static into each node.
const DEMO_RUNC: &str = include_str!("../../../examples/web-runc.yaml");
const DEMO_IMAGE: &str = "keelson.local/busybox:demo";
/// The demo Service's node port (in `examples/web-runc.yaml`).
const DEMO_NODE_PORT: u16 = 30080;
/// First line of a `~/.keelson/config` that `up` may overwrite.
const CONFIG_MARK: &str = "# written by keelson up";
/// How long `up` waits for the cluster to turn healthy.
const READY_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a stopping agent or replica gets before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(20);

#[derive(Args, Debug)]
pub struct UpArgs {
    /// Control-plane replicas (first start only; a restart resumes the
    /// data dir's cluster).
    #[arg(long)]
    pub replicas: Option<usize>,
    /// Node agents (first start only).
    #[arg(long)]
    pub agents: Option<usize>,
    /// Where everything is kept.
    #[arg(long, default_value = ".keelson")]
    pub data_dir: PathBuf,
    /// Also apply the demo app (a Deployment of 3 replicas and a Service:
    /// builtin/http-echo on port 8080 under the process runtime; under
    /// runc busybox's httpd from an image `up` builds from busybox-static,
    /// on node port 30080) and print where to curl it.
    #[arg(long)]
    pub demo: bool,
    /// How the agents run pods (first start only): `process` (host
    /// processes on loopback addresses), `runc` (real images, each pod in
    /// namespaces of its own on its node's bridge; root and runc needed),
    /// or `auto` (runc where root and runc are there) [default: process].
    #[arg(long, value_parser = ["process", "runc", "auto"])]
    pub runtime: Option<String>,
    /// First replica's address; the next ones count up (first start only).
    #[arg(long)]
    pub replica_address: Option<Ipv4Addr>,
    /// First agent's address; the next ones count up (first start only).
    #[arg(long)]
    pub agent_address: Option<Ipv4Addr>,
    /// Leave a process that died stopped (fault tests) instead of starting
    /// it again.
    #[arg(long)]
    pub no_restart: bool,
    /// Client config to write for the CLI [default: $KEELSON_CONFIG or
    /// ~/.keelson/config, unless that file is someone else's].
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// kubeconfig to merge the `keelson` context into [default: the first
    /// file of $KUBECONFIG, else ~/.kube/config]; other contexts are kept.
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    #[command(flatten)]
    pub node_lifecycle: NodeLifecycleArgs,
}

#[derive(Args, Debug)]
pub struct DownArgs {
    /// The data dir `keelson up` was started with.
    #[arg(long, default_value = ".keelson")]
    pub data_dir: PathBuf,
}

/// What runs where; fixed at the first start.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layout {
    pub replicas: Vec<Member>,
    pub agents: Vec<Member>,
    /// The agents' runtime: `process` or `runc`.
    #[serde(default = "process_runtime")]
    pub runtime: String,
}

fn process_runtime() -> String {
    "process".into()
}

/// `--runtime` as the agents take it (`auto` resolved here).
fn resolve_runtime(r: &str) -> anyhow::Result<String> {
    match r {
        "auto" => Ok(match keelson_agent::agent::RuntimeKind::detect() {
            (keelson_agent::agent::RuntimeKind::Runc, _) => "runc",
            _ => "process",
        }
        .to_string()),
        "runc" => {
            keelson_agent::runc::available().map_err(|e| anyhow!("--runtime runc: {e}"))?;
            Ok("runc".into())
        }
        "process" => Ok("process".into()),
        other => bail!("--runtime {other:?} is not process, runc or auto"),
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub name: String,
    pub address: Ipv4Addr,
}

pub const CLIENT_PORT: u16 = 2379;
pub const PEER_PORT: u16 = 2380;
pub const API_PORT: u16 = 6443;
/// The Kubernetes HTTP API (TLS), beside the gRPC API port.
pub const KUBE_API_PORT: u16 = 7443;
pub const METRICS_PORT: u16 = 9379;

impl Layout {
    /// `count` addresses counting up from `first` (None past the range).
    fn addresses(first: Ipv4Addr, count: usize) -> anyhow::Result<Vec<Ipv4Addr>> {
        let base = u32::from(first);
        (0..count)
            .map(|i| {
                let a = u32::try_from(i)
                    .ok()
                    .and_then(|i| base.checked_add(i))
                    .map(Ipv4Addr::from)
                    .filter(|a| a.is_loopback() && a.octets()[3] != 0 && a.octets()[3] != 255)
                    .ok_or_else(|| anyhow!("{count} addresses from {first} leave 127.x.y.1-254"))?;
                Ok(a)
            })
            .collect()
    }

    pub fn new(
        replicas: usize,
        agents: usize,
        replica_address: Ipv4Addr,
        agent_address: Ipv4Addr,
    ) -> anyhow::Result<Layout> {
        if replicas == 0 || replicas > 9 {
            bail!("--replicas must be 1 to 9 (an odd number survives failures best)");
        }
        if agents > 50 {
            bail!("--agents must be at most 50");
        }
        if !replica_address.is_loopback() || !agent_address.is_loopback() {
            bail!("--replica-address and --agent-address must be loopback addresses (127.x.y.z)");
        }
        let r = Layout::addresses(replica_address, replicas)?;
        let a = Layout::addresses(agent_address, agents)?;
        if let Some(x) = r.iter().find(|x| a.contains(x)) {
            bail!("replicas and agents would share the address {x}");
        }
        // Pods of agent 127.a.b.N live in 127.N.0.0/16: keep replicas out.
        let pod_ranges: Vec<u8> = a.iter().map(|x| x.octets()[3]).collect();
        if let Some(x) = r.iter().find(|x| pod_ranges.contains(&x.octets()[1])) {
            bail!(
                "replica address {x} is inside an agent's pod range (127.<agent's last octet>.x.y)"
            );
        }
        let members = |prefix: &str, addrs: Vec<Ipv4Addr>| {
            addrs
                .into_iter()
                .enumerate()
                .map(|(i, address)| Member {
                    name: format!("{prefix}{}", i + 1),
                    address,
                })
                .collect()
        };
        Ok(Layout {
            replicas: members("m", r),
            agents: members("n", a),
            runtime: process_runtime(),
        })
    }

    pub fn api_endpoints(&self) -> Vec<String> {
        self.replicas
            .iter()
            .map(|m| format!("http://{}:{API_PORT}", m.address))
            .collect()
    }

    fn initial_cluster(&self) -> String {
        self.replicas
            .iter()
            .map(|m| format!("{}=http://{}:{PEER_PORT}", m.name, m.address))
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// Paths inside the data dir.
struct Dirs {
    root: PathBuf,
}

impl Dirs {
    fn layout(&self) -> PathBuf {
        self.root.join("cluster.json")
    }
    fn tokens(&self) -> PathBuf {
        self.root.join("tokens.csv")
    }
    fn admin_config(&self) -> PathBuf {
        self.root.join("admin.config")
    }
    fn kubeconfig(&self) -> PathBuf {
        self.root.join("kubeconfig")
    }
    fn agent_config(&self, name: &str) -> PathBuf {
        self.root.join(format!("{name}.config"))
    }
    fn data(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }
    fn log(&self, name: &str) -> PathBuf {
        self.root.join("logs").join(format!("{name}.log"))
    }
    fn pid(&self, name: &str) -> PathBuf {
        self.root.join("run").join(format!("{name}.pid"))
    }
}

/// Whether `pid` is alive, runs this program and has `needle` among its
/// arguments (not a recycled pid, not a pod of the same binary). A needle
/// that is a path matches the same file however either side spelled it.
fn alive_keelson_with(pid: u32, needle: &str) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).unwrap_or_default();
    let want = std::fs::canonicalize(needle).ok();
    alive_keelson(pid)
        && cmdline.split(|b| *b == 0).skip(1).any(|arg| {
            let arg = String::from_utf8_lossy(arg);
            arg == needle
                || want.as_ref().is_some_and(|w| {
                    std::fs::canonicalize(cwd.join(arg.as_ref())).ok().as_ref() == Some(w)
                })
        })
}

/// Whether `pid` is alive and runs this program.
fn alive_keelson(pid: u32) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let zombie = stat
        .rfind(')')
        .and_then(|i| stat[i + 1..].split_whitespace().next())
        .is_some_and(|s| s == "Z");
    let argv0 = cmdline.split(|b| *b == 0).next().unwrap_or_default();
    !zombie && String::from_utf8_lossy(argv0).contains("keelson")
}

fn read_pid(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// The layout (read, or made and written at the first start) and the
/// tokens (`token,user,role`).
fn prepare(a: &UpArgs, dirs: &Dirs) -> anyhow::Result<Layout> {
    let layout = if dirs.layout().exists() {
        let text = std::fs::read_to_string(dirs.layout())
            .with_context(|| format!("read {}", dirs.layout().display()))?;
        let layout: Layout = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a cluster layout", dirs.layout().display()))?;
        let differs = a.replicas.is_some_and(|n| n != layout.replicas.len())
            || a.agents.is_some_and(|n| n != layout.agents.len())
            || a.replica_address
                .is_some_and(|x| layout.replicas.first().map(|m| m.address) != Some(x))
            || a.agent_address
                .is_some_and(|x| layout.agents.first().map(|m| m.address) != Some(x))
            || a.runtime
                .as_deref()
                .is_some_and(|r| r != "auto" && r != layout.runtime);
        if differs {
            bail!(
                "{} holds a cluster of {} replicas and {} agents, started with other flags; \
                 use another --data-dir for a different cluster (or `rm -r` this one)",
                a.data_dir.display(),
                layout.replicas.len(),
                layout.agents.len()
            );
        }
        layout
    } else {
        let mut layout = Layout::new(
            a.replicas.unwrap_or(3),
            a.agents.unwrap_or(2),
            a.replica_address.unwrap_or(Ipv4Addr::new(127, 0, 10, 1)),
            a.agent_address.unwrap_or(Ipv4Addr::new(127, 0, 0, 11)),
        )?;
        layout.runtime = resolve_runtime(a.runtime.as_deref().unwrap_or("process"))?;
        let admin = keelson_apiserver::auth::new_token();
        let mut tokens = format!("{admin},admin,admin\n");
        for n in &layout.agents {
            let t = keelson_apiserver::auth::new_token();
            tokens.push_str(&format!("{t},{},node\n", n.name));
            let mut cfg = Config::new(layout.api_endpoints(), &t);
            cfg.ca.clear();
            write_file(
                &dirs.agent_config(&n.name),
                &serde_yaml::to_string(&cfg)?,
                true,
            )?;
        }
        write_file(&dirs.tokens(), &tokens, true)?;
        let cfg = Config::new(layout.api_endpoints(), &admin);
        write_file(&dirs.admin_config(), &serde_yaml::to_string(&cfg)?, true)?;
        // Last: its presence means the rest is there.
        write_file(
            &dirs.layout(),
            &serde_json::to_string_pretty(&layout)?,
            false,
        )?;
        layout
    };
    Ok(layout)
}

/// Copy the admin config where the CLI looks for it, unless a config of
/// someone else's is there. Where it went, or why not.
fn install_client_config(a: &UpArgs, dirs: &Dirs) -> Result<PathBuf, String> {
    let target = a.config.clone().unwrap_or_else(Config::default_path);
    let admin = std::fs::read_to_string(dirs.admin_config())
        .map_err(|e| format!("read {}: {e}", dirs.admin_config().display()))?;
    if let Ok(existing) = std::fs::read_to_string(&target) {
        let ours = existing.starts_with(CONFIG_MARK);
        if !ours && a.config.is_none() {
            return Err(format!(
                "{} exists and was not written by keelson up; left alone",
                target.display()
            ));
        }
    }
    let data_dir = std::path::absolute(&a.data_dir).unwrap_or_else(|_| a.data_dir.clone());
    write_file(
        &target,
        &format!("{CONFIG_MARK} ({})\n{admin}", data_dir.display()),
        true,
    )
    .map_err(|e| format!("{e:#}"))?;
    Ok(target)
}

/// Write `<data-dir>/kubeconfig` (the admin token, the first replica's
/// Kubernetes API and the CA of its certificate) and merge its entries
/// into the user's kubeconfig. Where it went.
fn install_kubeconfig(a: &UpArgs, dirs: &Dirs, layout: &Layout) -> anyhow::Result<PathBuf> {
    let admin = Config::load(&dirs.admin_config()).map_err(|e| anyhow!("{e}"))?;
    let first = layout
        .replicas
        .first()
        .ok_or_else(|| anyhow!("the layout has no replica"))?;
    let ca = dirs.data(&first.name).join("kube-certs").join("ca.pem");
    let entry = crate::kubeconfig::Entry {
        server: format!("https://{}:{KUBE_API_PORT}", first.address),
        token: admin.token.clone(),
        ca: Some(std::path::absolute(&ca)?.display().to_string()),
    };
    write_file(
        &dirs.kubeconfig(),
        &crate::kubeconfig::document(&entry),
        true,
    )?;
    let target = a
        .kubeconfig
        .clone()
        .unwrap_or_else(crate::kubeconfig::default_path);
    crate::kubeconfig::merge_into(&target, &entry)?;
    Ok(target)
}

/// One supervised process.
struct Proc {
    name: String,
    args: Vec<String>,
    child: Option<Child>,
    starts: u32,
    /// When it died (restart after a pause).
    died_at: Option<Instant>,
}

impl Proc {
    fn spawn(&mut self, dirs: &Dirs) -> anyhow::Result<()> {
        let exe = std::env::current_exe().context("find the keelson binary")?;
        let child = Spawn::new(&exe, &self.args)
            .named(&self.name)
            .log(&dirs.log(&self.name))
            // Ctrl-C reaches `up` only, which stops everything in order.
            .own_process_group()
            .spawn()?;
        let pid = child.id();
        // Tracked before anything else can fail, so it is always stopped.
        self.child = Some(child);
        self.starts += 1;
        self.died_at = None;
        write_file(&dirs.pid(&self.name), &format!("{pid}\n"), false)
    }

    fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether it runs; records a death.
    fn check(&mut self) -> Option<std::process::ExitStatus> {
        let child = self.child.as_mut()?;
        match child.try_wait() {
            Ok(Some(status)) => {
                self.child = None;
                self.died_at = Some(Instant::now());
                Some(status)
            }
            _ => None,
        }
    }
}

fn describe_exit(s: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (s.code(), s.signal()) {
        (Some(c), _) => format!("exit code {c}"),
        (None, Some(9)) => "SIGKILL".into(),
        (None, Some(sig)) => format!("signal {sig}"),
        _ => "unknown status".into(),
    }
}

/// Stop processes: SIGTERM, then SIGKILL after `grace`.
async fn stop_all(procs: &mut [Proc], grace: Duration) {
    for p in procs.iter() {
        if let Some(pid) = p.pid() {
            signal(pid, libc::SIGTERM);
        }
    }
    let deadline = Instant::now() + grace;
    loop {
        let mut running = 0;
        for p in procs.iter_mut() {
            p.check();
            running += usize::from(p.child.is_some());
        }
        if running == 0 {
            return;
        }
        if Instant::now() >= deadline {
            for p in procs.iter_mut() {
                if let Some(c) = p.child.as_mut() {
                    eprintln!("{} did not stop within {grace:?}: SIGKILL", p.name);
                    let _ = c.kill();
                    let _ = c.wait();
                }
                p.child = None;
            }
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Stop the pods agents left running: those of an agent that was SIGKILLed
/// (and not restarted) outlive it. Each agent's data dir records its
/// containers.
async fn stop_orphaned_pods(dirs: &Dirs, layout: &Layout) {
    for m in &layout.agents {
        let dir = dirs.data(&m.name);
        if !dir.exists() {
            continue;
        }
        let name = m.name.clone();
        let node = m.name.clone();
        let res = tokio::task::spawn_blocking(move || {
            keelson_agent::agent::stop_all_containers(
                &dir,
                Duration::from_secs(5),
                keelson_agent::agent::RuntimeKind::Process,
                &node,
            )
        })
        .await;
        match res {
            Ok(Ok(0)) => {}
            Ok(Ok(n)) => println!("stopped {n} container(s) {name} had left running"),
            Ok(Err(e)) => eprintln!("{name}: cannot stop its containers: {e:#}"),
            Err(e) => eprintln!("{name}: {e}"),
        }
    }
}

/// Progress lines: `[ 1.2s] message`.
struct Progress {
    t0: Instant,
}

impl Progress {
    fn say(&self, msg: &str) {
        println!("[{:5.1}s] {msg}", self.t0.elapsed().as_secs_f64());
    }
}

/// Wait until every replica answers with one leader among them.
async fn replicas_healthy(client: &Client, n: usize) -> Result<(), String> {
    let res = client
        .call(Retry::Idempotent, |ch| {
            let r = client.request(ClusterStatusRequest {}, Some(Duration::from_secs(2)));
            async move { ClusterClient::new(ch).status(r).await }
        })
        .await
        .map_err(|e| e.to_string())?
        .into_inner();
    let reached = res.replicas.iter().filter(|r| r.error.is_empty()).count();
    let leaders = res.replicas.iter().filter(|r| r.leader).count();
    if reached == n && leaders == 1 {
        Ok(())
    } else {
        Err(format!(
            "{reached}/{n} replicas answer, {leaders} leader(s)"
        ))
    }
}

/// Names of the agents' nodes that are Ready.
async fn ready_nodes(client: &Client) -> Result<Vec<String>, String> {
    let nodes: Api<v1::Node> = Api::all(client.clone());
    let list = nodes
        .list(&ListParams::default())
        .await
        .map_err(|e| e.to_string())?;
    Ok(list
        .items
        .iter()
        .filter(|n| {
            n.status.as_ref().is_some_and(|s| {
                s.conditions
                    .iter()
                    .any(|c| c.r#type == "Ready" && c.status == "True")
            })
        })
        .filter_map(|n| n.metadata.as_ref().map(|m| m.name.clone()))
        .collect())
}

/// Each node's heartbeat Lease (uid by name): an agent takes a new one
/// every time it starts, so a changed uid tells a fresh agent from a
/// previous run's Node that still says Ready.
async fn heartbeat_leases(client: &Client) -> Result<BTreeMap<String, String>, String> {
    let leases: Api<v1::Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let list = leases
        .list(&ListParams::default())
        .await
        .map_err(|e| e.to_string())?;
    Ok(list
        .items
        .iter()
        .filter_map(|l| l.metadata.as_ref())
        .map(|m| (m.name.clone(), m.uid.clone()))
        .collect())
}

/// Why a wait goes on, or must stop.
enum NotYet {
    Waiting(String),
    Fatal(String),
}

async fn wait_for<F, Fut>(what: &str, timeout: Duration, mut f: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), NotYet>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        let last = match f().await {
            Ok(()) => return Ok(()),
            Err(NotYet::Fatal(e)) => bail!("{what}: {e}"),
            Err(NotYet::Waiting(e)) => e,
        };
        if Instant::now() >= deadline {
            bail!("{what}: not within {timeout:?} ({last})");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Retry `f` until it answers (or the time is up).
async fn wait_for_value<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        match f().await {
            Ok(v) => return Ok(v),
            Err(e) if Instant::now() >= deadline => bail!("{what}: not within {timeout:?} ({e})"),
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// Refuse to start over a cluster that is already running from this dir.
fn check_not_running(dirs: &Dirs, layout: &Layout) -> anyhow::Result<()> {
    if let Some(pid) = read_pid(&dirs.pid("up")).filter(|p| alive_keelson_with(*p, "up")) {
        bail!(
            "a cluster is already up from {} (keelson up, pid {pid}); `keelson down` stops it",
            dirs.root.display()
        );
    }
    for m in layout.replicas.iter().chain(&layout.agents) {
        let data = dirs.data(&m.name).display().to_string();
        if let Some(pid) = read_pid(&dirs.pid(&m.name)).filter(|p| alive_keelson_with(*p, &data)) {
            bail!(
                "{} still runs from an earlier `keelson up` (pid {pid}); `keelson down --data-dir {}` stops it",
                m.name,
                dirs.root.display()
            );
        }
    }
    Ok(())
}

pub async fn up(a: UpArgs) -> anyhow::Result<()> {
    let progress = Progress { t0: Instant::now() };
    let dirs = Dirs {
        root: a.data_dir.clone(),
    };
    let resumed = dirs.layout().exists();
    let layout = prepare(&a, &dirs)?;
    check_not_running(&dirs, &layout)?;
    write_file(&dirs.pid("up"), &format!("{}\n", std::process::id()), false)?;
    let lifecycle = [
        "--node-monitor-grace-period".to_string(),
        a.node_lifecycle.node_monitor_grace_period.to_string(),
        "--pod-eviction-timeout".to_string(),
        a.node_lifecycle.pod_eviction_timeout.to_string(),
    ];
    let path = |p: PathBuf| p.display().to_string();
    let mut replicas: Vec<Proc> = layout
        .replicas
        .iter()
        .map(|m| {
            let addr = |port: u16| format!("{}:{port}", m.address);
            let mut args = vec![
                "server".to_string(),
                "--name".into(),
                m.name.clone(),
                "--data-dir".into(),
                path(dirs.data(&m.name)),
                "--listen-client".into(),
                addr(CLIENT_PORT),
                "--listen-peer".into(),
                addr(PEER_PORT),
                "--listen-api".into(),
                addr(API_PORT),
                "--listen-metrics".into(),
                addr(METRICS_PORT),
                "--listen-kube-api".into(),
                addr(KUBE_API_PORT),
                "--token-file".into(),
                path(dirs.tokens()),
                "--initial-cluster".into(),
                layout.initial_cluster(),
            ];
            args.extend(lifecycle.iter().cloned());
            Proc {
                name: m.name.clone(),
                args,
                child: None,
                starts: 0,
                died_at: None,
            }
        })
        .collect();
    let mut agents: Vec<Proc> = layout
        .agents
        .iter()
        .map(|m| Proc {
            name: m.name.clone(),
            args: vec![
                "agent".into(),
                "--name".into(),
                m.name.clone(),
                "--address".into(),
                m.address.to_string(),
                "--data-dir".into(),
                path(dirs.data(&m.name)),
                "--config".into(),
                path(dirs.agent_config(&m.name)),
                "--stop-pods-on-exit".into(),
                "--runtime".into(),
                layout.runtime.clone(),
            ],
            child: None,
            starts: 0,
            died_at: None,
        })
        .collect();

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    // A closed terminal stops the cluster too, rather than orphaning it.
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    let result = tokio::select! {
        r = run(&a, &dirs, &layout, &mut replicas, &mut agents, &progress, resumed) => r,
        _ = tokio::signal::ctrl_c() => Ok(()),
        _ = term.recv() => Ok(()),
        _ = hup.recv() => Ok(()),
    };
    if let Err(e) = &result {
        eprintln!("error: {e:#}");
    }
    progress.say("stopping: agents (and their pods) first, then the replicas");
    stop_all(&mut agents, STOP_GRACE).await;
    stop_orphaned_pods(&dirs, &layout).await;
    stop_all(&mut replicas, STOP_GRACE).await;
    for m in layout.replicas.iter().chain(&layout.agents) {
        let _ = std::fs::remove_file(dirs.pid(&m.name));
    }
    let _ = std::fs::remove_file(dirs.pid("up"));
    progress.say(&format!(
        "stopped; `keelson up --data-dir {}` resumes this cluster",
        a.data_dir.display()
    ));
    result
}

/// Start, wait until healthy, tell the user, supervise.
async fn run(
    a: &UpArgs,
    dirs: &Dirs,
    layout: &Layout,
    replicas: &mut [Proc],
    agents: &mut [Proc],
    progress: &Progress,
    resumed: bool,
) -> anyhow::Result<()> {
    progress.say(&format!(
        "{} {} replicas and {} agents from {}",
        if resumed { "resuming" } else { "creating" },
        layout.replicas.len(),
        layout.agents.len(),
        dirs.root.display()
    ));
    for p in replicas.iter_mut() {
        p.spawn(dirs)?;
    }
    progress.say(&format!(
        "started replicas {} (logs in {})",
        names(replicas),
        dirs.root.join("logs").display()
    ));
    let admin = Config::load(&dirs.admin_config()).map_err(|e| anyhow!("{e}"))?;
    let client = Client::new(&admin).map_err(|e| anyhow!("{e}"))?;
    let n = layout.replicas.len();
    wait_for("replicas healthy", READY_TIMEOUT, || {
        let dead = exited(replicas);
        let client = client.clone();
        async move {
            if let Some(dead) = dead {
                return Err(NotYet::Fatal(dead));
            }
            replicas_healthy(&client, n).await.map_err(NotYet::Waiting)
        }
    })
    .await?;
    progress.say("control plane healthy: one leader, every replica in");
    let before = wait_for_value("heartbeat leases listed", READY_TIMEOUT, || {
        heartbeat_leases(&client)
    })
    .await?;
    for p in agents.iter_mut() {
        p.spawn(dirs)?;
    }
    let want: Vec<String> = layout.agents.iter().map(|m| m.name.clone()).collect();
    wait_for("nodes Ready", READY_TIMEOUT, || {
        let dead = exited(agents);
        let (client, want, before) = (client.clone(), want.clone(), before.clone());
        async move {
            if let Some(dead) = dead {
                return Err(NotYet::Fatal(dead));
            }
            let ready = ready_nodes(&client).await.map_err(NotYet::Waiting)?;
            let leases = heartbeat_leases(&client).await.map_err(NotYet::Waiting)?;
            let fresh = |n: &String| leases.get(n).is_some_and(|uid| before.get(n) != Some(uid));
            let missing: Vec<&String> = want
                .iter()
                .filter(|w| !ready.contains(w) || !fresh(w))
                .collect();
            if missing.is_empty() {
                Ok(())
            } else {
                Err(NotYet::Waiting(format!("not Ready yet: {missing:?}")))
            }
        }
    })
    .await?;
    progress.say(&format!("nodes Ready: {}", names(agents)));
    let config_line = match install_client_config(a, dirs) {
        Ok(p) => format!(
            "client config: {} (keelson get nodes works now)",
            p.display()
        ),
        Err(why) => format!(
            "client config: {why}; use `export KEELSON_CONFIG={}`",
            std::path::absolute(dirs.admin_config())
                .unwrap_or_else(|_| dirs.admin_config())
                .display()
        ),
    };
    progress.say(&config_line);
    let kube_line = match install_kubeconfig(a, dirs, layout) {
        Ok(p) => format!(
            "kubeconfig: context keelson in {} (kubectl get nodes works now)",
            p.display()
        ),
        Err(e) => format!(
            "kubeconfig: {e:#}; use `export KUBECONFIG={}`",
            std::path::absolute(dirs.kubeconfig())
                .unwrap_or_else(|_| dirs.kubeconfig())
                .display()
        ),
    };
    progress.say(&kube_line);
    let runc = layout.runtime == "runc";
    if a.demo {
        if runc {
            progress.say(&format!(
                "building the demo image {DEMO_IMAGE} from /bin/busybox into each node's store"
            ));
            for n in &layout.agents {
                let store = keelson_agent::image::Store::open(&dirs.data(&n.name).join("images"))
                    .with_context(|| format!("open {}'s image store", n.name))?;
                keelson_agent::image::busybox::busybox_image(
                    &store,
                    DEMO_IMAGE,
                    Path::new("/bin/busybox"),
                )
                .map_err(|e| anyhow!("the demo image for {}: {e}", n.name))?;
            }
            progress.say(
                "applying the demo app (examples/web-runc.yaml: Deployment web x3, Service web:8080, node port 30080)",
            );
        } else {
            progress.say(
                "applying the demo app (examples/web.yaml: Deployment web x3, Service web:8080)",
            );
        }
        apply_demo(dirs, if runc { DEMO_RUNC } else { DEMO }).await?;
        let deployments: Api<v1::Deployment> = Api::namespaced(client.clone(), "default");
        wait_for("demo app available", READY_TIMEOUT, || {
            let d = deployments.clone();
            async move {
                let dep = d
                    .get("web")
                    .await
                    .map_err(|e| NotYet::Waiting(e.to_string()))?;
                let want = dep.spec.as_ref().map_or(0, |s| s.replicas.unwrap_or(1));
                let ready = dep.status.as_ref().map_or(0, |s| s.available_replicas);
                if ready >= want {
                    Ok(())
                } else {
                    Err(NotYet::Waiting(format!("{ready}/{want} available")))
                }
            }
        })
        .await?;
        progress.say("demo app available");
    }
    print!("{}", summary(layout, dirs, a.demo));
    supervise(a, dirs, replicas, agents, progress).await
}

fn names(procs: &[Proc]) -> String {
    procs
        .iter()
        .map(|p| p.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// A replica that exited while the cluster was forming (a port in use...).
fn exited(procs: &mut [Proc]) -> Option<String> {
    procs.iter_mut().find_map(|p| {
        p.check()
            .map(|s| format!("{} exited ({}); see its log", p.name, describe_exit(s)))
    })
}

async fn apply_demo(dirs: &Dirs, manifest: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let exe = std::env::current_exe().context("find the keelson binary")?;
    let mut child = Command::new(exe)
        .args(["apply", "-f", "-", "--config"])
        .arg(dirs.admin_config())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .context("run keelson apply")?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(manifest.as_bytes())
            .context("write the demo manifest")?;
    }
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .context("wait for keelson apply")?
        .context("wait for keelson apply")?;
    if !status.success() {
        bail!("applying the demo app failed ({})", describe_exit(status));
    }
    Ok(())
}

/// What runs where and what to try next.
fn summary(layout: &Layout, dirs: &Dirs, demo: bool) -> String {
    let mut s =
        String::from("\nThe cluster is up.\n\n  NAME  ROLE       ADDRESS          API / etcd\n");
    for m in &layout.replicas {
        s.push_str(&format!(
            "  {:<5} replica    {:<16} http://{}:{API_PORT} / {}:{CLIENT_PORT}\n",
            m.name, m.address, m.address, m.address
        ));
    }
    let runc = layout.runtime == "runc";
    for m in &layout.agents {
        if runc {
            s.push_str(&format!(
                "  {:<5} agent      {:<16} pods under runc on its bridge (a /24 of 10.244.0.0/16), node ports on {}\n",
                m.name, m.address, m.address
            ));
        } else {
            s.push_str(&format!(
                "  {:<5} agent      {:<16} pods on 127.{}.x.y, Service ports on {}\n",
                m.name,
                m.address,
                m.address.octets()[3],
                m.address
            ));
        }
    }
    s.push_str(&format!(
        "\nData, logs and pids: {}  (tokens.csv, admin.config, kubeconfig, logs/, run/)\n\nTry:\n",
        dirs.root.display()
    ));
    s.push_str("  keelson get nodes\n  keelson cluster status\n  kubectl get nodes -o wide\n  kubectl get pods -A\n");
    if demo {
        if let Some(n) = layout.agents.first() {
            let port = if runc { DEMO_NODE_PORT } else { 8080 };
            s.push_str(&format!("  curl -s {}:{port}\n", n.address));
        }
        if runc {
            s.push_str("  kubectl exec -it deploy/web -- sh\n");
        }
        s.push_str("  keelson get pods -o wide\n  keelson scale deployment web --replicas 5\n");
    } else {
        s.push_str("  keelson apply -f examples/web.yaml\n  keelson get pods -o wide\n");
    }
    s.push_str("\nCtrl-C (or `keelson down` elsewhere) stops everything.\n");
    s
}

/// Start again what died (after a second), unless `--no-restart`.
async fn supervise(
    a: &UpArgs,
    dirs: &Dirs,
    replicas: &mut [Proc],
    agents: &mut [Proc],
    progress: &Progress,
) -> anyhow::Result<()> {
    let mut told: BTreeMap<String, u32> = BTreeMap::new();
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        for p in replicas.iter_mut().chain(agents.iter_mut()) {
            if let Some(status) = p.check() {
                progress.say(&format!(
                    "{} exited ({}){}",
                    p.name,
                    describe_exit(status),
                    if a.no_restart {
                        "; not restarted (--no-restart)"
                    } else {
                        "; starting it again in 1 s"
                    }
                ));
            }
            let due = p
                .died_at
                .is_some_and(|t| t.elapsed() >= Duration::from_secs(1));
            if due && !a.no_restart {
                match p.spawn(dirs) {
                    Ok(()) => {
                        told.remove(&p.name);
                        progress.say(&format!("{} started again (start #{})", p.name, p.starts));
                    }
                    Err(e) => {
                        p.died_at = Some(Instant::now());
                        let n = told.entry(p.name.clone()).or_default();
                        if *n == 0 {
                            progress.say(&format!("{}: {e:#}; retrying", p.name));
                        }
                        *n += 1;
                    }
                }
            }
        }
    }
}

pub async fn down(a: DownArgs) -> anyhow::Result<()> {
    let dirs = Dirs {
        root: a.data_dir.clone(),
    };
    let text = std::fs::read_to_string(dirs.layout()).map_err(|_| {
        anyhow!(
            "no cluster in {} (keelson up creates one; --data-dir picks another)",
            a.data_dir.display()
        )
    })?;
    let layout: Layout = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a cluster layout", dirs.layout().display()))?;
    let t0 = Instant::now();
    let mut stopped = false;
    if let Some(pid) = read_pid(&dirs.pid("up")).filter(|p| alive_keelson_with(*p, "up")) {
        signal(pid, libc::SIGTERM);
        // `up` stops the agents, then the replicas.
        let deadline = Instant::now() + STOP_GRACE * 3;
        while alive_keelson(pid) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        stopped = true;
    }
    // Whatever is left (an `up` that was SIGKILLed): agents, then replicas.
    for group in [&layout.agents, &layout.replicas] {
        let pids: Vec<(String, u32)> = group
            .iter()
            .filter_map(|m| {
                let data = dirs.data(&m.name).display().to_string();
                read_pid(&dirs.pid(&m.name))
                    .filter(|p| alive_keelson_with(*p, &data))
                    .map(|p| (m.name.clone(), p))
            })
            .collect();
        for (_, pid) in &pids {
            signal(*pid, libc::SIGTERM);
            stopped = true;
        }
        let deadline = Instant::now() + STOP_GRACE;
        while pids.iter().any(|(_, p)| alive_keelson(*p)) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        for (name, pid) in &pids {
            if alive_keelson(*pid) {
                eprintln!("{name} did not stop: SIGKILL");
                signal(*pid, libc::SIGKILL);
            }
        }
    }
    stop_orphaned_pods(&dirs, &layout).await;
    for m in layout.replicas.iter().chain(&layout.agents) {
        let _ = std::fs::remove_file(dirs.pid(&m.name));
    }
    let _ = std::fs::remove_file(dirs.pid("up"));
    if stopped {
        println!(
            "stopped the cluster in {} ({:.1} s)",
            a.data_dir.display(),
            t0.elapsed().as_secs_f64()
        );
    } else {
        println!("nothing was running from {}", a.data_dir.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The default shape: 3 replicas from 127.0.10.1, 2 agents from 127.0.0.11.
    fn default_layout() -> Layout {
        Layout::new(
            3,
            2,
            Ipv4Addr::new(127, 0, 10, 1),
            Ipv4Addr::new(127, 0, 0, 11),
        )
        .expect("layout")
    }

    #[test]
    fn layout_counts_addresses_up() {
        let l = default_layout();
        let r: Vec<String> = l
            .replicas
            .iter()
            .map(|m| format!("{}@{}", m.name, m.address))
            .collect();
        assert_eq!(r, ["m1@127.0.10.1", "m2@127.0.10.2", "m3@127.0.10.3"]);
        let a: Vec<String> = l
            .agents
            .iter()
            .map(|m| format!("{}@{}", m.name, m.address))
            .collect();
        assert_eq!(a, ["n1@127.0.0.11", "n2@127.0.0.12"]);
        assert_eq!(
            l.initial_cluster(),
            "m1=http://127.0.10.1:2380,m2=http://127.0.10.2:2380,m3=http://127.0.10.3:2380"
        );
        assert_eq!(l.api_endpoints()[2], "http://127.0.10.3:6443");
    }

    #[test]
    fn layout_rejects_bad_shapes() {
        let ok = Ipv4Addr::new(127, 0, 10, 1);
        let ag = Ipv4Addr::new(127, 0, 0, 11);
        assert!(Layout::new(0, 2, ok, ag).is_err());
        assert!(Layout::new(10, 2, ok, ag).is_err());
        assert!(Layout::new(3, 2, Ipv4Addr::new(10, 0, 0, 1), ag).is_err());
        // Past the end of the last octet.
        assert!(Layout::new(3, 2, Ipv4Addr::new(127, 0, 10, 253), ag).is_err());
        // Shared addresses, and a replica inside an agent's pod range.
        assert!(Layout::new(3, 2, Ipv4Addr::new(127, 0, 0, 10), ag).is_err());
        assert!(Layout::new(1, 2, Ipv4Addr::new(127, 11, 0, 1), ag).is_err());
        assert!(Layout::new(1, 0, ok, ag).is_ok());
    }

    #[test]
    fn summary_names_everything() {
        let l = default_layout();
        let dirs = Dirs {
            root: PathBuf::from(".keelson"),
        };
        let s = summary(&l, &dirs, true);
        for want in [
            "m3    replica    127.0.10.3",
            "http://127.0.10.1:6443",
            "n2    agent      127.0.0.12",
            "127.12.x.y",
            "curl -s 127.0.0.11:8080",
        ] {
            assert!(s.contains(want), "{want:?} in\n{s}");
        }
    }
}
