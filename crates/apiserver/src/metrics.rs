//! Prometheus metrics, served as text on `GET /metrics` over plain HTTP
//! (and `GET /healthz`), on a port of its own.

use std::sync::Arc;
use std::time::Duration;

use keelson_store::server::Replica;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub verb: String,
    pub resource: String,
    pub code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LatencyLabels {
    pub verb: String,
    pub resource: String,
}

/// Largest HTTP request head read from a scraper.
const HTTP_HEAD_BYTES_MAX: usize = 8 * 1024;
/// How long a scraper may take to send its request.
const HTTP_READ_TIMEOUT_MS: u64 = 5000;

pub struct Metrics {
    registry: prometheus_client::registry::Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub latency: Family<LatencyLabels, Histogram>,
    pub watchers: Arc<Gauge>,
    term: Gauge,
    leader: Gauge,
    is_leader: Gauge,
    commit_index: Gauge,
    applied_index: Gauge,
    revision: Gauge,
    db_size: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        Metrics::with_registry(prometheus_client::registry::Registry::default())
    }

    /// Metrics of the API server and of the replica under it (its write
    /// path's stage timings).
    pub fn for_replica(replica: &Replica) -> Metrics {
        let mut registry = prometheus_client::registry::Registry::default();
        replica.stages.register(&mut registry);
        Metrics::with_registry(registry)
    }

    fn with_registry(mut registry: prometheus_client::registry::Registry) -> Metrics {
        let requests = Family::<RequestLabels, Counter>::default();
        // 0.25 ms .. ~8 s
        let latency = Family::<LatencyLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.00025, 2.0, 16))
        });
        let watchers: Arc<Gauge> = Arc::new(Gauge::default());
        let m = Metrics {
            requests,
            latency,
            watchers,
            term: Gauge::default(),
            leader: Gauge::default(),
            is_leader: Gauge::default(),
            commit_index: Gauge::default(),
            applied_index: Gauge::default(),
            revision: Gauge::default(),
            db_size: Gauge::default(),
            registry: Default::default(),
        };
        registry.register(
            "keelson_apiserver_requests",
            "API requests by verb, resource and gRPC code",
            m.requests.clone(),
        );
        registry.register(
            "keelson_apiserver_request_duration_seconds",
            "API request latency by verb and resource",
            m.latency.clone(),
        );
        registry.register(
            "keelson_apiserver_watchers",
            "Open watch streams",
            (*m.watchers).clone(),
        );
        registry.register("keelson_raft_term", "Current Raft term", m.term.clone());
        registry.register(
            "keelson_raft_leader_id",
            "Member id of the Raft leader as this replica sees it (0: none)",
            m.leader.clone(),
        );
        registry.register(
            "keelson_raft_is_leader",
            "1 if this replica is the Raft leader",
            m.is_leader.clone(),
        );
        registry.register(
            "keelson_raft_commit_index",
            "Highest log index known committed (leader: quorum-matched; others: applied)",
            m.commit_index.clone(),
        );
        registry.register(
            "keelson_raft_applied_index",
            "Index of the last entry applied to the state machine",
            m.applied_index.clone(),
        );
        registry.register(
            "keelson_store_revision",
            "Store revision on this replica",
            m.revision.clone(),
        );
        registry.register(
            "keelson_store_db_size_bytes",
            "Approximate size of the store's data",
            m.db_size.clone(),
        );
        Metrics { registry, ..m }
    }

    pub fn observe(&self, verb: &str, resource: &str, code: tonic::Code, elapsed: Duration) {
        self.requests
            .get_or_create(&RequestLabels {
                verb: verb.to_string(),
                resource: resource.to_string(),
                code: format!("{code:?}"),
            })
            .inc();
        self.latency
            .get_or_create(&LatencyLabels {
                verb: verb.to_string(),
                resource: resource.to_string(),
            })
            .observe(elapsed.as_secs_f64());
    }

    /// The exposition text, with the Raft and store gauges read now.
    pub fn render(&self, replica: &Replica) -> String {
        let s = replica.local_status();
        let header = s.header.unwrap_or_default();
        self.term.set(s.raft_term as i64);
        self.leader.set(s.leader as i64);
        self.is_leader.set(i64::from(replica.is_leader()));
        self.applied_index.set(s.raft_applied_index as i64);
        self.commit_index.set(s.raft_index as i64);
        self.revision.set(header.revision);
        self.db_size.set(s.db_size);
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::warn!(error = %e, "encode metrics");
        }
        out
    }
}

/// Serve `/metrics` and `/healthz` until `stop`. With `tokens` (a port
/// beyond localhost), `/metrics` answers only a request with a valid
/// bearer token (Prometheus' `bearer_token_file`); `/healthz` stays open.
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    replica: Arc<Replica>,
    tokens: Option<Arc<crate::auth::TokenSource>>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        let (mut sock, _) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "accept metrics connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = stop.changed() => return,
        };
        let metrics = metrics.clone();
        let replica = replica.clone();
        let tokens = tokens.clone();
        tokio::spawn(async move {
            let mut buf = Vec::with_capacity(1024);
            let read = tokio::time::timeout(Duration::from_millis(HTTP_READ_TIMEOUT_MS), async {
                let mut chunk = [0u8; 1024];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < HTTP_HEAD_BYTES_MAX {
                    let n = sock.read(&mut chunk).await?;
                    if n == 0 {
                        break;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                }
                Ok::<_, std::io::Error>(())
            })
            .await;
            if !matches!(read, Ok(Ok(()))) {
                return;
            }
            let head = String::from_utf8_lossy(&buf);
            let mut words = head.split_whitespace();
            let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
            let authorized = || {
                let Some(tokens) = &tokens else {
                    return true;
                };
                let header = head.lines().find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.trim()
                        .eq_ignore_ascii_case("authorization")
                        .then(|| v.trim())
                });
                tokens.authenticate_header(header).is_ok()
            };
            let (status, ctype, body) = match (method, path) {
                ("GET", "/metrics") if !authorized() => (
                    "401 Unauthorized",
                    "text/plain",
                    "a bearer token is required\n".to_string(),
                ),
                ("GET", "/metrics") => (
                    "200 OK",
                    "text/plain; version=0.0.4; charset=utf-8",
                    metrics.render(&replica),
                ),
                ("GET", "/healthz") => {
                    let s = replica.local_status();
                    if s.leader != 0 {
                        ("200 OK", "text/plain", "ok\n".to_string())
                    } else {
                        (
                            "503 Service Unavailable",
                            "text/plain",
                            "no leader\n".to_string(),
                        )
                    }
                }
                _ => ("404 Not Found", "text/plain", "not found\n".to_string()),
            };
            let resp = format!(
                "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = sock.write_all(resp.as_bytes()).await;
            let _ = sock.shutdown().await;
        });
    }
}
