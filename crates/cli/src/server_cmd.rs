//! `keelson server`: flags (etcd's names where etcd has one) -> a
//! `StoreConfig` and an `ApiConfig` -> run until SIGINT/SIGTERM.
//!
//! The first start creates an admin token and a client config in the
//! data dir, and (unless `--tls-cert`) a self-signed certificate for the
//! Kubernetes API port; every start writes a kubeconfig for kubectl there. Unless `--disable-scheduler` / `--disable-controllers`, the replica
//! also runs a scheduler and a controller manager as clients of its own API
//! port, with an admin token held in memory only (never written anywhere).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use keelson_apiserver::{ApiConfig, ClusterState, KubeApiConfig, StoreConfig as Config, Tokens};

#[derive(Args, Debug)]
pub struct ServerArgs {
    /// This replica's name; must match its entry in --initial-cluster.
    #[arg(long, default_value = "default")]
    pub name: String,
    /// Where the replica keeps its data (default: ./<name>.keelson).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Address of the etcd-compatible client port.
    #[arg(long, default_value = "127.0.0.1:2379")]
    pub listen_client: String,
    /// Client URL announced to the cluster (default: http://<listen-client>).
    #[arg(long)]
    pub advertise_client: Option<String>,
    /// Address of the peer (Raft) port.
    #[arg(long, default_value = "127.0.0.1:2380")]
    pub listen_peer: String,
    /// Initial members as name=peer-url,... (default: this replica alone).
    #[arg(long)]
    pub initial_cluster: Option<String>,
    /// `new` to form a cluster, `existing` to join one after `member add`.
    #[arg(long, default_value = "new")]
    pub initial_cluster_state: String,
    /// Cluster token; members of one cluster share it.
    #[arg(long, default_value = "keelson-cluster")]
    pub initial_cluster_token: String,
    /// Largest request accepted, in bytes (etcd's default 1.5 MiB).
    #[arg(long, default_value_t = 1536 * 1024)]
    pub max_request_bytes: usize,
    /// Database quota in bytes; writes past it fail with "database space exceeded".
    #[arg(long, default_value_t = 2 * 1024 * 1024 * 1024)]
    pub quota_backend_bytes: u64,
    /// Raft entries between snapshots (etcd's default; an entry carries a batch of writes).
    #[arg(long, default_value_t = 100_000)]
    pub snapshot_count: u64,
    /// Entries kept behind a snapshot for slow followers.
    #[arg(long, default_value_t = 5_000)]
    pub snapshot_catchup_entries: u64,
    /// Raft heartbeat interval in milliseconds.
    #[arg(long, default_value_t = 50)]
    pub heartbeat_interval: u64,
    /// Election timeout in milliseconds; timeouts are drawn from [t, 2t).
    #[arg(long, default_value_t = 100)]
    pub election_timeout: u64,
    /// Keep this many seconds of history and compact older revisions
    /// automatically (0: never). Watches further behind must relist.
    #[arg(long, default_value_t = 300)]
    pub auto_compaction_retention: u64,
    /// Address of the API server (typed resources over gRPC).
    #[arg(long, default_value = "127.0.0.1:6443")]
    pub listen_api: String,
    /// Address of the Kubernetes HTTP API (kubectl, client-go, kube-rs),
    /// always TLS: with --tls-cert's certificate, else a self-signed one
    /// made at the first start in <data-dir>/kube-certs (its CA is in the
    /// data dir's kubeconfig); "off" to disable.
    #[arg(long, default_value = "127.0.0.1:7443")]
    pub listen_kube_api: String,
    /// Address of the Prometheus metrics endpoint (`/metrics`); "off" to disable.
    #[arg(long, default_value = "127.0.0.1:9379")]
    pub listen_metrics: String,
    /// Bearer tokens file (`token,user,role` lines). Default:
    /// <data-dir>/tokens.csv, created on first start with an admin token,
    /// next to a client config for it (<data-dir>/admin.config).
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// TLS certificate (PEM) for the API port and, with --tls-ca, for
    /// mutual TLS between replicas (`keelson certs` makes one).
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM).
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// CA (PEM) that signed the replicas' certificates: turns on mutual
    /// TLS on the peer port (peer URLs must then be https://).
    #[arg(long, requires = "tls_cert")]
    pub tls_ca: Option<PathBuf>,
    /// Serve the etcd client port over TLS with --tls-cert and require
    /// client certificates signed by --tls-ca (etcd's flag). Needed for a
    /// --listen-client beyond localhost.
    #[arg(long, requires = "tls_ca")]
    pub client_cert_auth: bool,
    /// Seconds between progress notifications to idle watchers that asked for them.
    #[arg(long, default_value_t = 600)]
    pub watch_progress_notify_interval: u64,
    /// Do not run a scheduler instance in this replica (run `keelson
    /// scheduler` elsewhere, or none).
    #[arg(long)]
    pub disable_scheduler: bool,
    /// Do not run a controller-manager instance in this replica.
    #[arg(long)]
    pub disable_controllers: bool,
    /// Services' cluster IPs come from this range (kube-apiserver's
    /// --service-cluster-ip-range).
    #[arg(long, default_value = "10.96.0.0/16")]
    pub service_cluster_ip_range: String,
    /// Encrypt Secrets at rest with AES-256-GCM under the key in this file
    /// (32 bytes, base64: `head -c 32 /dev/urandom | base64`); every
    /// replica needs the same key. Secrets written before are read as
    /// they are and encrypted on their next write.
    #[arg(long)]
    pub encryption_key_file: Option<PathBuf>,
    /// Write an audit log here: a JSON line (Kubernetes' audit Event,
    /// level Metadata) per request that changes something, over both APIs.
    #[arg(long)]
    pub audit_log_path: Option<PathBuf>,
    /// Rotate the audit log past this size (to <path>.1, <path>.2, ...).
    #[arg(long, default_value_t = 100 * 1024 * 1024)]
    pub audit_log_max_bytes: u64,
    /// Rotated audit logs kept.
    #[arg(long, default_value_t = 5)]
    pub audit_log_keep: usize,
    /// Log reads (get, list, watch) too.
    #[arg(long)]
    pub audit_log_reads: bool,
    /// How often the leader compares every replica's hash of the store; a
    /// replica that differs raises the CORRUPT alarm, which stops writes
    /// until `etcdctl alarm disarm` (etcd's corrupt check). 0s: never.
    #[arg(long, default_value = "5m")]
    pub corrupt_check_interval: humantime::Duration,
    /// Every --backup-interval, write a backup of this replica's store to
    /// this directory (`keelson-<name>-<unix>-<revision>.snap`, readable by
    /// `keelson snapshot status|restore`), keeping its newest --backup-keep.
    #[arg(long)]
    pub backup_dir: Option<PathBuf>,
    /// Time between backups (e.g. 30m, 1h).
    #[arg(long, default_value = "1h")]
    pub backup_interval: humantime::Duration,
    /// Backups of this replica kept in --backup-dir.
    #[arg(long, default_value_t = 24)]
    pub backup_keep: usize,
    #[command(flatten)]
    pub node_lifecycle: NodeLifecycleArgs,
}

/// Node lifecycle tuning (the controller manager's).
#[derive(Args, Debug, Clone)]
pub struct NodeLifecycleArgs {
    /// Seconds a node's heartbeat may be silent before it is marked
    /// Ready=Unknown and tainted unreachable.
    #[arg(long, default_value_t = 5.0)]
    pub node_monitor_grace_period: f64,
    /// Seconds pods stay on an unreachable node before eviction (pods'
    /// own tolerationSeconds for the taint win).
    #[arg(long, default_value_t = 30.0)]
    pub pod_eviction_timeout: f64,
}

impl NodeLifecycleArgs {
    pub fn config(&self) -> anyhow::Result<keelson_controller_manager::NodeLifecycleConfig> {
        let secs = |name: &str, v: f64| {
            Duration::try_from_secs_f64(v)
                .map_err(|_| anyhow::anyhow!("--{name} must be a non-negative number of seconds"))
        };
        Ok(keelson_controller_manager::NodeLifecycleConfig {
            monitor_grace: secs("node-monitor-grace-period", self.node_monitor_grace_period)?,
            eviction_timeout: secs("pod-eviction-timeout", self.pod_eviction_timeout)?,
        })
    }
}

/// Accept `host:port` or `http://host:port`.
pub fn parse_addr(s: &str) -> anyhow::Result<SocketAddr> {
    let trimmed = s
        .trim_start_matches("http://")
        .trim_start_matches("https://")
        .trim_end_matches('/');
    trimmed
        .parse()
        .with_context(|| format!("not an address (host:port): {s}"))
}

/// `--initial-cluster`'s `name=peer-url,...`.
pub fn parse_initial_cluster(s: &str) -> anyhow::Result<Vec<(String, String)>> {
    s.split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|pair| {
            let (name, url) = pair.split_once('=').with_context(|| {
                format!("--initial-cluster entry {pair:?} is not name=peer-url")
            })?;
            let url = url.trim().trim_end_matches('/').to_string();
            if !url.starts_with("http://") && !url.starts_with("https://") {
                bail!("--initial-cluster peer URL {url:?} must start with http:// or https://");
            }
            parse_addr(&url)?;
            Ok((name.trim().to_string(), url))
        })
        .collect()
}

pub fn config_from_args(a: &ServerArgs) -> anyhow::Result<Config> {
    let listen_client = parse_addr(&a.listen_client)?;
    let listen_peer = parse_addr(&a.listen_peer)?;
    let initial_cluster: Vec<(String, String)> = match &a.initial_cluster {
        None => vec![(a.name.clone(), format!("http://{listen_peer}"))],
        Some(s) => parse_initial_cluster(s)?,
    };
    for (_, url) in &initial_cluster {
        if url.starts_with("https://") != a.tls_ca.is_some() {
            bail!("peer URL {url:?}: use https:// peer URLs exactly when --tls-ca is given (mutual TLS between replicas)");
        }
    }
    let advertise_peer = initial_cluster
        .iter()
        .find(|(n, _)| *n == a.name)
        .map(|(_, u)| u.clone())
        .with_context(|| format!("--initial-cluster has no entry for --name {}", a.name))?;
    let initial_cluster_state = match a.initial_cluster_state.as_str() {
        "new" => ClusterState::New,
        "existing" => ClusterState::Existing,
        other => bail!("--initial-cluster-state must be new or existing, not {other:?}"),
    };
    if a.heartbeat_interval == 0 || a.election_timeout <= a.heartbeat_interval {
        bail!("--election-timeout must be larger than --heartbeat-interval, and both positive");
    }
    if a.max_request_bytes == 0 {
        bail!("--max-request-bytes must be positive");
    }
    let mut c = Config::single(
        &a.name,
        a.data_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(format!("{}.keelson", a.name))),
    );
    c.listen_client = listen_client;
    c.advertise_client = a
        .advertise_client
        .clone()
        .unwrap_or_else(|| format!("http://{listen_client}"));
    c.listen_peer = listen_peer;
    c.advertise_peer = advertise_peer;
    c.initial_cluster = initial_cluster;
    c.initial_cluster_state = initial_cluster_state;
    c.cluster_token = a.initial_cluster_token.clone();
    c.max_request_bytes = a.max_request_bytes;
    c.quota_bytes = a.quota_backend_bytes;
    c.snapshot_count = a.snapshot_count.max(1);
    c.snapshot_catchup_entries = a.snapshot_catchup_entries;
    c.heartbeat_ms = a.heartbeat_interval;
    c.election_min_ms = a.election_timeout;
    c.election_max_ms = a.election_timeout * 2;
    c.watch_progress_interval = Duration::from_secs(a.watch_progress_notify_interval.max(1));
    if let (Some(cert), Some(key), Some(ca)) = (&a.tls_cert, &a.tls_key, &a.tls_ca) {
        let tls = keelson_apiserver::PeerTls {
            cert_pem: read(cert)?,
            key_pem: read(key)?,
            ca_pem: read(ca)?,
        };
        if a.client_cert_auth {
            c.client_tls = Some(tls.clone());
            c.advertise_client = a
                .advertise_client
                .clone()
                .unwrap_or_else(|| format!("https://{listen_client}"));
        }
        c.peer_tls = Some(tls);
    }
    c.auto_compaction_retention =
        (a.auto_compaction_retention > 0).then(|| Duration::from_secs(a.auto_compaction_retention));
    let corrupt_check: Duration = a.corrupt_check_interval.into();
    c.corrupt_check_interval = (!corrupt_check.is_zero()).then_some(corrupt_check);
    if let Some(dir) = &a.backup_dir {
        if a.backup_keep == 0 {
            bail!("--backup-keep must be at least 1");
        }
        let interval: Duration = a.backup_interval.into();
        if interval < Duration::from_secs(1) {
            bail!("--backup-interval must be at least 1s");
        }
        c.backup = Some(keelson_apiserver::BackupConfig {
            dir: dir.clone(),
            interval,
            keep: a.backup_keep,
        });
    }
    Ok(c)
}

/// The tokens to serve: the given file, or the data dir's own, created
/// with a fresh admin token (and a client config for it) on first start.
fn tokens(
    args: &ServerArgs,
    data_dir: &std::path::Path,
    api: SocketAddr,
) -> anyhow::Result<(Tokens, PathBuf)> {
    if let Some(path) = &args.token_file {
        return Ok((
            Tokens::load(path).map_err(anyhow::Error::msg)?,
            path.clone(),
        ));
    }
    let path = data_dir.join("tokens.csv");
    if !path.exists() {
        std::fs::create_dir_all(data_dir)
            .with_context(|| format!("create {}", data_dir.display()))?;
        let token = keelson_apiserver::auth::new_token();
        let scheme = if args.tls_cert.is_some() {
            "https"
        } else {
            "http"
        };
        write_private(&path, &format!("{token},admin,admin\n"))?;
        let config = data_dir.join("admin.config");
        write_private(
            &config,
            &format!(
                "endpoints:\n- {scheme}://{api}\ntoken: {token}\n{}",
                match &args.tls_ca {
                    Some(ca) => format!("ca: {}\n", std::path::absolute(ca)?.display()),
                    None => String::new(),
                }
            ),
        )?;
        tracing::info!(
            tokens = %path.display(),
            config = %config.display(),
            "created an admin token; use it with: export KEELSON_CONFIG={}",
            config.display()
        );
    }
    Ok((Tokens::load(&path).map_err(anyhow::Error::msg)?, path))
}

/// The Kubernetes API's certificate: the replica's own (`--tls-cert`),
/// else a self-signed one in `<data-dir>/kube-certs`, made at the first
/// start for the listen address, 127.0.0.1 and localhost. With the CA
/// file clients verify it with.
fn kube_api(
    args: &ServerArgs,
    data_dir: &std::path::Path,
    listen: SocketAddr,
) -> anyhow::Result<(KubeApiConfig, PathBuf)> {
    let (cert, key, ca) = match (&args.tls_cert, &args.tls_key) {
        (Some(c), Some(k)) => (
            c.clone(),
            k.clone(),
            args.tls_ca.clone().unwrap_or_else(|| c.clone()),
        ),
        _ => {
            let dir = data_dir.join("kube-certs");
            let (cert, key, ca) = (
                dir.join("server.pem"),
                dir.join("server-key.pem"),
                dir.join("ca.pem"),
            );
            if !(cert.exists() && key.exists() && ca.exists()) {
                let mut hosts = vec![listen.ip().to_string()];
                for h in ["127.0.0.1", "localhost"] {
                    if !hosts.iter().any(|x| x == h) {
                        hosts.push(h.to_string());
                    }
                }
                let w = crate::certs::generate(&dir, &hosts)
                    .context("make the Kubernetes API's certificate")?;
                tracing::info!(dir = %dir.display(), "made a self-signed certificate for the Kubernetes API");
                (w.cert, w.key, w.ca)
            } else {
                (cert, key, ca)
            }
        }
    };
    let config = KubeApiConfig {
        listen,
        cert_pem: read(&cert)?,
        key_pem: read(&key)?,
    };
    Ok((config, std::path::absolute(&ca)?))
}

/// `<data-dir>/kubeconfig` for kubectl (the Kubernetes API's address and
/// CA, the admin token of the data dir's client config), written at every
/// start, when the data dir has its own admin token.
fn write_kubeconfig(
    data_dir: &std::path::Path,
    listen: SocketAddr,
    ca: &std::path::Path,
) -> anyhow::Result<()> {
    let admin = data_dir.join("admin.config");
    if !admin.exists() {
        return Ok(());
    }
    let config = keelson_sdk::Config::load(&admin).map_err(|e| anyhow::anyhow!("{e}"))?;
    let host = if listen.ip().is_unspecified() {
        SocketAddr::from(([127, 0, 0, 1], listen.port()))
    } else {
        listen
    };
    let entry = crate::kubeconfig::Entry {
        server: format!("https://{host}"),
        token: config.token.clone(),
        ca: Some(ca.display().to_string()),
    };
    let path = data_dir.join("kubeconfig");
    crate::files::write_file(&path, &crate::kubeconfig::document(&entry), true)?;
    tracing::info!(kubeconfig = %path.display(), "kubectl: export KUBECONFIG={}", path.display());
    Ok(())
}

/// A client of this replica's own API (loopback when it listens on every
/// address), for the embedded scheduler and controllers.
fn internal_client(
    args: &ServerArgs,
    api: SocketAddr,
    token: &str,
) -> anyhow::Result<keelson_sdk::Client> {
    let mut target = api;
    if target.ip().is_unspecified() {
        target.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let mut config = keelson_sdk::Config::new(Vec::new(), token);
    if args.tls_cert.is_some() {
        // The replica's certificate is verified against --tls-ca, or, when
        // there is none, against itself (a self-signed certificate).
        let ca = args.tls_ca.clone().or_else(|| args.tls_cert.clone());
        config.ca = ca.map(|p| p.display().to_string()).unwrap_or_default();
        config.endpoints = vec![format!("https://{target}")];
    } else {
        config.endpoints = vec![format!("http://{target}")];
    }
    keelson_sdk::Client::new(&config).map_err(|e| anyhow::anyhow!("internal client: {e}"))
}

fn read(path: &std::path::Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("read {}", path.display()))
}

/// Write a file only its owner can read.
fn write_private(path: &std::path::Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("create {}", path.display()))?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .with_context(|| format!("write {}", path.display()))
}

pub async fn run(args: ServerArgs) -> anyhow::Result<()> {
    let config = config_from_args(&args)?;
    let listen_api = parse_addr(&args.listen_api)?;
    let listen_metrics = match args.listen_metrics.as_str() {
        "off" | "" => None,
        a => Some(parse_addr(a)?),
    };
    let (mut tokens, token_file) = tokens(&args, &config.data_dir, listen_api)?;
    let node_config = args.node_lifecycle.config()?;
    // The replica's own scheduler and controllers reach its API with an
    // in-memory admin token that never leaves the process.
    let internal_token = keelson_apiserver::auth::new_token();
    tokens.insert(
        &internal_token,
        &format!("system:keelson:{}", args.name),
        keelson_apiserver::Role::Admin,
    );
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(c), Some(k)) => Some((read(c)?, read(k)?)),
        _ => None,
    };
    let kube = match args.listen_kube_api.as_str() {
        "off" | "" => None,
        a => {
            let (kube, ca) = kube_api(&args, &config.data_dir, parse_addr(a)?)?;
            write_kubeconfig(&config.data_dir, kube.listen, &ca)?;
            Some(kube)
        }
    };
    let api = ApiConfig {
        listen_api,
        listen_metrics,
        tokens,
        token_file: Some(token_file),
        tls,
        kube,
        service_cidr: keelson_model::cidr::Cidr::parse(&args.service_cluster_ip_range)
            .map_err(|e| anyhow::anyhow!("--service-cluster-ip-range: {e}"))?,
        encryption: match &args.encryption_key_file {
            Some(path) => Some(
                keelson_apiserver::encryption::SecretBox::from_key_file(&read(path)?).map_err(
                    |e| anyhow::anyhow!("--encryption-key-file {}: {e}", path.display()),
                )?,
            ),
            None => None,
        },
        audit: match &args.audit_log_path {
            Some(path) => {
                if args.audit_log_max_bytes == 0 {
                    bail!("--audit-log-max-bytes must be positive");
                }
                Some(keelson_apiserver::audit::AuditConfig {
                    path: path.clone(),
                    max_bytes: args.audit_log_max_bytes,
                    keep: args.audit_log_keep,
                    reads: args.audit_log_reads,
                })
            }
            None => None,
        },
    };
    let server = keelson_apiserver::start(config, api)
        .await
        .map_err(anyhow::Error::msg)?;
    let mut components = Vec::new();
    if !args.disable_scheduler || !args.disable_controllers {
        let client = internal_client(&args, server.api_addr, &internal_token)?;
        let identity = args.name.clone();
        if !args.disable_scheduler {
            let (c, id) = (client.clone(), identity.clone());
            components.push(tokio::spawn(async move {
                keelson_scheduler::runner::run(c, id).await
            }));
        }
        if !args.disable_controllers {
            let mut opts = keelson_controller_manager::Options::new(&identity);
            opts.node = node_config;
            components.push(tokio::spawn(keelson_controller_manager::run(client, opts)));
        }
    }
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down");
    let had_components = !components.is_empty();
    for c in components {
        c.abort();
    }
    if had_components {
        // Their leader electors give the leadership leases back (through
        // this replica's API, still up) so others take over at once.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    server.shutdown().await;
    Ok(())
}
