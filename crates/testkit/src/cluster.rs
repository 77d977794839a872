//! Local clusters of real processes on loopback (Keelson replicas or etcd
//! members), for benchmarks, chaos and integration tests: free ports picked
//! at run time, SIGKILL/SIGSTOP/SIGCONT/restart of any member, and every
//! process killed when the cluster is dropped. [`ProcCluster::keelson`]
//! starts client processes (agents, schedulers, CLI verbs) against it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use keelson_proto::etcdserverpb::kv_client::KvClient;
use keelson_proto::etcdserverpb::maintenance_client::MaintenanceClient;
use keelson_proto::etcdserverpb::{RangeRequest, StatusRequest};
use tonic::transport::{Channel, Endpoint};

use crate::process::{signal, Spawn};

/// What a cluster's members run.
#[derive(Clone, Debug)]
pub enum Program {
    /// `keelson server`, with extra flags for every replica.
    Keelson {
        bin: PathBuf,
        extra_args: Vec<String>,
    },
    /// etcd (the anchor), fsync on as by default.
    Etcd { bin: PathBuf },
}

pub struct Member {
    pub name: String,
    pub client_port: u16,
    pub peer_port: u16,
    /// Keelson's API port (unused for etcd).
    pub api_port: u16,
    /// Keelson's Kubernetes API port, TLS (unused for etcd).
    pub kube_port: u16,
    pub metrics_port: u16,
    pub data_dir: PathBuf,
    pub log_path: PathBuf,
    child: Option<Child>,
}

impl Member {
    /// Member number `i` (named m<i+1>), with fresh ports and data under `dir`.
    fn new(i: usize, dir: &Path) -> anyhow::Result<Member> {
        let name = format!("m{}", i + 1);
        let data_dir = dir.join(&name);
        std::fs::create_dir_all(&data_dir)?;
        Ok(Member {
            log_path: dir.join(format!("{name}.log")),
            name,
            client_port: free_port()?,
            peer_port: free_port()?,
            api_port: free_port()?,
            kube_port: free_port()?,
            metrics_port: free_port()?,
            data_dir,
            child: None,
        })
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }
    /// The API server's URL (Keelson).
    pub fn api_endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.api_port)
    }
    /// The Kubernetes API's URL (Keelson; TLS).
    pub fn kube_endpoint(&self) -> String {
        format!("https://127.0.0.1:{}", self.kube_port)
    }
    /// The CA of the Kubernetes API's self-signed certificate (made by the
    /// replica at its first start).
    pub fn kube_ca(&self) -> PathBuf {
        self.data_dir.join("kube-certs").join("ca.pem")
    }
    /// A kubeconfig for this member's Kubernetes API with `token`, as
    /// kubectl and kube-rs read one.
    pub fn kubeconfig(&self, token: &str) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: k\n  cluster:\n    server: {}\n    certificate-authority: {}\nusers:\n- name: u\n  user:\n    token: {token}\ncontexts:\n- name: k\n  context:\n    cluster: k\n    user: u\ncurrent-context: k\n",
            self.kube_endpoint(),
            self.kube_ca().display()
        )
    }
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }
}

/// Where members listen for peers, and the URLs they know each other by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PeerLayout {
    /// 127.0.0.1, directly.
    Direct,
    /// Own addresses 127.0.`octet`.(i+1), known through proxies on
    /// 127.0.(`octet`+1).(i+1).
    Proxied { octet: u8 },
}

fn member_octet(i: usize) -> u8 {
    u8::try_from(i + 1).unwrap_or(u8::MAX)
}

pub struct ProcCluster {
    pub program: Program,
    layout: PeerLayout,
    pub members: Vec<Member>,
    initial_cluster: String,
    /// Keelson's tokens file, shared by every replica.
    pub token_file: PathBuf,
    /// (token, user, role): an admin, a viewer, and nodes n1, n2 and r1.
    pub tokens: Vec<(String, String, String)>,
}

impl ProcCluster {
    /// The token of the first user with `role` (and `user`, when given).
    pub fn token(&self, role: &str, user: Option<&str>) -> String {
        self.tokens
            .iter()
            .find(|(_, u, r)| r == role && user.is_none_or(|x| x == u))
            .map(|(t, _, _)| t.clone())
            .unwrap_or_default()
    }

    /// `--initial-cluster` as the members are started with it.
    pub fn initial_cluster(&self) -> &str {
        &self.initial_cluster
    }

    /// The API endpoints of every member.
    pub fn api_endpoints(&self) -> Vec<String> {
        self.members.iter().map(|m| m.api_endpoint()).collect()
    }

    /// The keelson binary the members run (None for etcd).
    pub fn keelson_bin(&self) -> Option<&Path> {
        match &self.program {
            Program::Keelson { bin, .. } => Some(bin),
            Program::Etcd { .. } => None,
        }
    }

    /// `keelson <args> --server <every replica> --token <admin's>`, to start
    /// (an agent, a scheduler, a CLI verb).
    pub fn keelson<I, S>(&self, args: I) -> anyhow::Result<Spawn>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let bin = self
            .keelson_bin()
            .context("an etcd cluster has no keelson binary")?;
        Ok(Spawn::new(bin, args).client(&self.api_endpoints(), &self.token("admin", None)))
    }

    /// Run `keelson <args>` as the admin against every replica: (success,
    /// stdout then stderr).
    pub fn run_cli(&self, args: &[&str]) -> anyhow::Result<(bool, String)> {
        let out = self.keelson(args)?.output()?;
        Ok((
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        ))
    }

    /// An SDK client of every replica, as the admin.
    pub fn admin_client(&self) -> anyhow::Result<keelson_sdk::Client> {
        self.client_as(&self.token("admin", None))
    }

    /// An SDK client of every replica with `token`.
    pub fn client_as(&self, token: &str) -> anyhow::Result<keelson_sdk::Client> {
        Ok(keelson_sdk::Client::new(&keelson_sdk::Config::new(
            self.api_endpoints(),
            token,
        ))?)
    }
}

/// A token as the API server reads them: 32 hex digits of randomness.
fn new_token() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// A port that was free a moment ago (the OS picks it), never one this
/// process handed out before: the OS may offer a just-released port again,
/// and a cluster takes four ports per member.
pub fn free_port() -> anyhow::Result<u16> {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    for _ in 0..100 {
        let l = std::net::TcpListener::bind("127.0.0.1:0").context("bind a free port")?;
        let port = l.local_addr()?.port();
        let mut given = GIVEN.lock().unwrap_or_else(|p| p.into_inner());
        if !given.contains(&port) {
            given.push(port);
            return Ok(port);
        }
    }
    anyhow::bail!("no unused free port found")
}

/// A channel to one endpoint that connects lazily with short timeouts.
pub fn channel(endpoint: &str) -> anyhow::Result<Channel> {
    Ok(Endpoint::from_shared(endpoint.to_string())?
        .connect_timeout(Duration::from_millis(500))
        .timeout(Duration::from_secs(10))
        .tcp_nodelay(true)
        .connect_lazy())
}

impl ProcCluster {
    /// Start `n` members with data under `dir`.
    pub fn start(program: Program, n: usize, dir: &Path) -> anyhow::Result<ProcCluster> {
        ProcCluster::start_with(program, n, dir, PeerLayout::Direct)
    }

    /// Start `n` Keelson members whose peer traffic goes through proxies
    /// (see [`crate::faultnet`]): member i listens for peers on
    /// 127.0.`octet`.(i+1) and connects from there; its peer URL is its
    /// proxy's, 127.0.(`octet`+1).(i+1), same port. Start the proxies with
    /// [`ProcCluster::peer_proxies`].
    pub fn start_proxied(
        program: Program,
        n: usize,
        dir: &Path,
        octet: u8,
    ) -> anyhow::Result<ProcCluster> {
        if octet == 0 || octet >= 254 {
            anyhow::bail!("octet {octet}: use 1-253");
        }
        if matches!(program, Program::Etcd { .. }) {
            anyhow::bail!("proxied peers are for Keelson members (etcd advertises 127.0.0.1)");
        }
        ProcCluster::start_with(program, n, dir, PeerLayout::Proxied { octet })
    }

    /// (proxy address, member's peer address) per member, and the source
    /// address of each member's peer connections.
    pub fn peer_proxies(&self) -> (Vec<(SocketAddr, SocketAddr)>, Vec<std::net::IpAddr>) {
        let pairs = (0..self.members.len())
            .map(|i| (self.peer_url_addr(i), self.peer_listen_addr(i)))
            .collect();
        let sources = (0..self.members.len())
            .map(|i| self.peer_listen_addr(i).ip())
            .collect();
        (pairs, sources)
    }

    fn peer_listen_addr(&self, i: usize) -> SocketAddr {
        let port = self.members[i].peer_port;
        match self.layout {
            PeerLayout::Direct => SocketAddr::from(([127, 0, 0, 1], port)),
            PeerLayout::Proxied { octet } => {
                SocketAddr::from(([127, 0, octet, member_octet(i)], port))
            }
        }
    }

    fn peer_url_addr(&self, i: usize) -> SocketAddr {
        let port = self.members[i].peer_port;
        match self.layout {
            PeerLayout::Direct => SocketAddr::from(([127, 0, 0, 1], port)),
            PeerLayout::Proxied { octet } => {
                SocketAddr::from(([127, 0, octet + 1, member_octet(i)], port))
            }
        }
    }

    fn start_with(
        program: Program,
        n: usize,
        dir: &Path,
        layout: PeerLayout,
    ) -> anyhow::Result<ProcCluster> {
        let mut members = Vec::new();
        for i in 0..n {
            members.push(Member::new(i, dir)?);
        }
        // Mutual TLS between replicas means https:// peer URLs.
        let scheme = match &program {
            Program::Keelson { extra_args, .. } if extra_args.iter().any(|a| a == "--tls-ca") => {
                "https"
            }
            _ => "http",
        };
        let initial_cluster = members
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let host = match layout {
                    PeerLayout::Direct => "127.0.0.1".to_string(),
                    PeerLayout::Proxied { octet } => {
                        format!("127.0.{}.{}", octet + 1, member_octet(i))
                    }
                };
                format!("{}={scheme}://{host}:{}", m.name, m.peer_port)
            })
            .collect::<Vec<_>>()
            .join(",");
        let tokens: Vec<(String, String, String)> = [
            ("admin", "admin"),
            ("viewer", "viewer"),
            ("n1", "node"),
            ("n2", "node"),
            ("r1", "node"),
        ]
        .iter()
        .map(|(u, r)| (new_token(), u.to_string(), r.to_string()))
        .collect();
        let token_file = dir.join("tokens.csv");
        std::fs::write(
            &token_file,
            tokens
                .iter()
                .map(|(t, u, r)| format!("{t},{u},{r}\n"))
                .collect::<String>(),
        )
        .context("write tokens file")?;
        let mut c = ProcCluster {
            program,
            layout,
            members,
            initial_cluster,
            token_file,
            tokens,
        };
        for i in 0..n {
            c.spawn(i, "new")?;
        }
        Ok(c)
    }

    fn command(&self, i: usize, state: &str) -> Spawn {
        let m = &self.members[i];
        let data_dir = m.data_dir.as_os_str();
        match &self.program {
            Program::Keelson { bin, extra_args } => Spawn::new(bin, ["server", "--name", &m.name])
                .args([std::ffi::OsStr::new("--data-dir"), data_dir])
                .args([
                    "--listen-client",
                    &format!("127.0.0.1:{}", m.client_port),
                    "--listen-peer",
                    &self.peer_listen_addr(i).to_string(),
                    "--initial-cluster",
                    &self.initial_cluster,
                    "--initial-cluster-state",
                    state,
                    "--listen-api",
                    &format!("127.0.0.1:{}", m.api_port),
                    "--listen-metrics",
                    &format!("127.0.0.1:{}", m.metrics_port),
                    "--listen-kube-api",
                    &format!("127.0.0.1:{}", m.kube_port),
                ])
                .args([
                    std::ffi::OsStr::new("--token-file"),
                    self.token_file.as_os_str(),
                ])
                .args(extra_args),
            Program::Etcd { bin } => {
                let client = format!("http://127.0.0.1:{}", m.client_port);
                let peer = format!("http://127.0.0.1:{}", m.peer_port);
                Spawn::new(bin, ["--name", &m.name])
                    .args([std::ffi::OsStr::new("--data-dir"), data_dir])
                    .args([
                        "--listen-client-urls",
                        &client,
                        "--advertise-client-urls",
                        &client,
                        "--listen-peer-urls",
                        &peer,
                        "--initial-advertise-peer-urls",
                        &peer,
                        "--initial-cluster",
                        &self.initial_cluster,
                        "--initial-cluster-state",
                        state,
                        "--initial-cluster-token",
                        "keelson-bench",
                    ])
            }
        }
    }

    fn spawn(&mut self, i: usize, state: &str) -> anyhow::Result<()> {
        let m = &self.members[i];
        let child = self
            .command(i, state)
            .log(&m.log_path)
            .named(format!("member {}", m.name))
            .spawn()?;
        self.members[i].child = Some(child);
        Ok(())
    }

    /// Pids of the running members.
    pub fn pids(&self) -> Vec<u32> {
        self.members.iter().filter_map(|m| m.pid()).collect()
    }

    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(|m| m.endpoint()).collect()
    }

    /// SIGKILL member `i` and reap it.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.members[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM member `i` and wait for it to exit (SIGKILL after 10 s).
    pub fn stop(&mut self, i: usize) {
        if let Some(mut c) = self.members[i].child.take() {
            signal(c.id(), libc::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGSTOP (pause) or SIGCONT (resume) member `i`.
    pub fn pause(&self, i: usize, paused: bool) {
        if let Some(pid) = self.members[i].pid() {
            signal(pid, if paused { libc::SIGSTOP } else { libc::SIGCONT });
        }
    }

    /// Start member `i` again with its data.
    pub fn restart(&mut self, i: usize) -> anyhow::Result<()> {
        if self.members[i].is_running() {
            bail!("member {} is still running", self.members[i].name);
        }
        self.spawn(i, "existing")
    }

    /// Prepare a new member (not started): ports, data dir, and its place
    /// in the initial cluster list used from now on. Returns its index and
    /// peer URL, for `member add`; start it with [`ProcCluster::start_joining`].
    pub fn prepare_member(&mut self, dir: &Path) -> anyhow::Result<(usize, String)> {
        let m = Member::new(self.members.len(), dir)?;
        let peer_url = format!("http://127.0.0.1:{}", m.peer_port);
        self.initial_cluster = format!("{},{}={}", self.initial_cluster, m.name, peer_url);
        self.members.push(m);
        Ok((self.members.len() - 1, peer_url))
    }

    /// Start a prepared member that joins the running cluster.
    pub fn start_joining(&mut self, i: usize) -> anyhow::Result<()> {
        self.spawn(i, "existing")
    }

    /// Member status over Maintenance.Status: (leader id, member id, raft term).
    pub async fn status(&self, i: usize) -> anyhow::Result<(u64, u64, u64)> {
        let mut c = MaintenanceClient::new(channel(&self.members[i].endpoint())?);
        let mut req = tonic::Request::new(StatusRequest {});
        req.set_timeout(Duration::from_millis(500));
        let s = c.status(req).await?.into_inner();
        let h = s.header.unwrap_or_default();
        Ok((s.leader, h.member_id, s.raft_term))
    }

    /// The index of the member that leads, as the running members agree.
    pub async fn leader(&self) -> Option<usize> {
        for (i, m) in self.members.iter().enumerate() {
            if !m.is_running() {
                continue;
            }
            if let Ok((leader, me, _)) = self.status(i).await {
                if leader != 0 && leader == me {
                    return Some(i);
                }
            }
        }
        None
    }

    /// Wait until every running member answers a linearizable read.
    pub async fn wait_healthy(&self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        for m in self.members.iter().filter(|m| m.is_running()) {
            let mut kv = KvClient::new(channel(&m.endpoint())?);
            loop {
                let mut req = tonic::Request::new(RangeRequest {
                    key: b"health".to_vec(),
                    ..Default::default()
                });
                req.set_timeout(Duration::from_secs(1));
                match kv.range(req).await {
                    Ok(_) => break,
                    Err(e) if Instant::now() > deadline => {
                        bail!(
                            "member {} not healthy after {timeout:?}: {e} (log: {})",
                            m.name,
                            m.log_path.display()
                        )
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        }
        Ok(())
    }
}

impl Drop for ProcCluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // A failing test: show what each member said last.
            for m in &self.members {
                let log = std::fs::read_to_string(&m.log_path).unwrap_or_default();
                // Backtrace frames would crowd out the error above them.
                let frame = |l: &&str| {
                    let t = l.trim_start();
                    t.starts_with("at ")
                        || t.split_once(": ")
                            .is_some_and(|(n, _)| n.chars().all(|c| c.is_ascii_digit()))
                };
                let tail: Vec<&str> = log.lines().rev().filter(|l| !frame(l)).take(40).collect();
                eprintln!(
                    "---- last lines of {} ({}) ----",
                    m.name,
                    m.log_path.display()
                );
                for line in tail.iter().rev() {
                    eprintln!("{line}");
                }
            }
        }
        for i in 0..self.members.len() {
            // A paused process must be resumed to die promptly on SIGKILL's
            // reaping path; SIGKILL works on stopped processes, but be sure.
            self.pause(i, false);
            self.kill(i);
        }
    }
}
