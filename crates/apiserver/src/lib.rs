//! The API server: typed resources (Pods, Nodes, Deployments...) over the
//! store, served over gRPC by every replica. This is the only crate that
//! imports `keelson-store`.
//!
//! # Layout
//! - [`registry`]: objects in the store (keys, compare-and-swap writes,
//!   graceful deletion, finalizers, paginated lists).
//! - [`watch`]: watch streams from a resourceVersion, with bookmarks.
//! - [`service`]: the gRPC services `Resources`, `Leases` and `Cluster`.
//! - [`auth`]: bearer tokens and the admin / viewer / node roles.
//! - [`metrics`]: Prometheus metrics on `/metrics`.
//! - [`namespaces`]: the sweep that empties and removes deleted namespaces.
//!
//! # Entry point
//! [`start`] opens a store replica ([`StoreConfig`]) and serves the API on
//! its own port ([`ApiConfig`]).

pub mod audit;
pub mod auth;
pub mod custom;
pub mod encryption;
pub mod error;
pub mod http;
pub mod metrics;
pub mod namespaces;
pub mod registry;
pub mod service;
pub mod session;
pub mod watch;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use keelson_proto::api::cluster_server::ClusterServer;
use keelson_proto::api::leases_server::LeasesServer;
use keelson_proto::api::resources_server::ResourcesServer;
pub use keelson_store::server::write_durably;
pub use keelson_store::{backup, BackupConfig, ClusterState, Config as StoreConfig, PeerTls};
use tokio::task::JoinHandle;

pub use auth::{Role, Tokens};
pub use error::{Error, Result};

/// Largest API request or response message (the store's request limit
/// plus room for gRPC framing).
const API_MESSAGE_BYTES_MAX: usize = 4 * 1024 * 1024;
/// Pause between attempts to create the system namespaces at start.
const BOOTSTRAP_RETRY_MS: u64 = 500;

/// The API port's configuration.
#[derive(Clone, Debug)]
pub struct ApiConfig {
    pub listen_api: SocketAddr,
    /// Prometheus `/metrics`; None: not served.
    pub listen_metrics: Option<SocketAddr>,
    pub tokens: Tokens,
    /// The file `tokens` came from: reloaded when it changes or on SIGHUP
    /// (None: the tokens are fixed).
    pub token_file: Option<std::path::PathBuf>,
    /// TLS on the API port: PEM certificate and key. None: plaintext.
    pub tls: Option<(Vec<u8>, Vec<u8>)>,
    /// The Kubernetes HTTP API's own port (always TLS); None: not served.
    pub kube: Option<KubeApiConfig>,
    /// Services' cluster IPs are allocated from here.
    pub service_cidr: keelson_model::cidr::Cidr,
    /// Secrets are encrypted at rest with this key (None: stored plain).
    pub encryption: Option<encryption::SecretBox>,
    /// The audit log (None: none kept).
    pub audit: Option<audit::AuditConfig>,
}

/// Where the Kubernetes HTTP API listens, and its certificate. A port of
/// its own, always TLS, because kubectl and client-go send a bearer token
/// only over TLS, while the gRPC API port serves plaintext clients (the
/// SDK, agents) unless the replica has a certificate.
#[derive(Clone, Debug)]
pub struct KubeApiConfig {
    pub listen: SocketAddr,
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
}

/// A running replica: the store and the API server over it.
pub struct ApiServer {
    pub store: keelson_store::Server,
    pub api_addr: SocketAddr,
    /// The Kubernetes HTTP API's address, when served.
    pub kube_addr: Option<SocketAddr>,
    stop: tokio::sync::watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

/// Start a store replica and the API server over it.
pub async fn start(store: StoreConfig, api: ApiConfig) -> std::result::Result<ApiServer, String> {
    let api_listener = tokio::net::TcpListener::bind(api.listen_api)
        .await
        .map_err(|e| format!("bind API address {}: {e}", api.listen_api))?;
    let metrics_listener = match api.listen_metrics {
        Some(a) => Some(
            tokio::net::TcpListener::bind(a)
                .await
                .map_err(|e| format!("bind metrics address {a}: {e}"))?,
        ),
        None => None,
    };
    let api_addr = api_listener
        .local_addr()
        .map_err(|e| format!("API address: {e}"))?;
    let kube_listener = match &api.kube {
        Some(k) => {
            let tls = http::serve::tls_config(&k.cert_pem, &k.key_pem)
                .map_err(|e| format!("Kubernetes API TLS: {e}"))?;
            let l = tokio::net::TcpListener::bind(k.listen)
                .await
                .map_err(|e| format!("bind Kubernetes API address {}: {e}", k.listen))?;
            let addr = l
                .local_addr()
                .map_err(|e| format!("Kubernetes API address: {e}"))?;
            Some((l, addr, tls))
        }
        None => None,
    };
    let kube_addr = kube_listener.as_ref().map(|(_, a, _)| *a);
    let server = keelson_store::Server::start(store).await?;
    let replica = server.replica.clone();
    let registry = registry::Registry::new(replica.clone())
        .with_service_cidr(api.service_cidr)
        .with_encryption(api.encryption.clone());
    let metrics = Arc::new(metrics::Metrics::for_replica(&replica));
    let tokens = Arc::new(auth::TokenSource::new(
        api.tokens.clone(),
        api.token_file.clone(),
    ));
    let audit = match api.audit.clone() {
        Some(c) => Some(Arc::new(audit::AuditLog::open(c)?)),
        None => None,
    };
    let svc = service::Api {
        registry: registry.clone(),
        tokens: tokens.clone(),
        metrics: metrics.clone(),
        audit,
    };
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let mut tasks = vec![tokio::spawn(auth::watch_tokens(
        tokens.clone(),
        stop_rx.clone(),
    ))];

    let (health, health_svc) = tonic_health::server::health_reporter();
    health.set_serving::<ResourcesServer<service::Api>>().await;
    let mut stop_api = stop_rx.clone();
    let incoming =
        tonic::transport::server::TcpIncoming::from(api_listener).with_nodelay(Some(true));
    let mut builder = tonic::transport::Server::builder();
    if let Some((cert, key)) = &api.tls {
        builder = builder
            .tls_config(
                tonic::transport::ServerTlsConfig::new()
                    .identity(tonic::transport::Identity::from_pem(cert, key)),
            )
            .map_err(|e| format!("API TLS: {e}"))?;
    }
    let router = builder
        .tcp_nodelay(true)
        .http2_keepalive_interval(Some(Duration::from_secs(5)))
        .http2_keepalive_timeout(Some(Duration::from_secs(5)))
        .add_service(health_svc)
        .add_service(
            ResourcesServer::new(svc.clone())
                .max_decoding_message_size(API_MESSAGE_BYTES_MAX)
                .max_encoding_message_size(API_MESSAGE_BYTES_MAX),
        )
        .add_service(LeasesServer::new(svc.clone()))
        .add_service(
            keelson_proto::api::nodes_server::NodesServer::new(svc.clone())
                .max_decoding_message_size(API_MESSAGE_BYTES_MAX)
                .max_encoding_message_size(API_MESSAGE_BYTES_MAX),
        )
        .add_service(ClusterServer::new(svc.clone()));
    if let Some((listener, addr, tls)) = kube_listener {
        let state = http::Http {
            api: svc,
            server_address: addr.to_string(),
            custom: Default::default(),
        };
        let routes = http::routes(state.clone())
            .fallback(http::no_such_path)
            .layer(axum::middleware::from_fn(http::buffer_body))
            .layer(axum::middleware::from_fn_with_state(state, http::audit))
            .layer(axum::extract::DefaultBodyLimit::max(http::BODY_BYTES_MAX));
        tasks.push(tokio::spawn(http::serve::serve(
            listener,
            routes,
            tls,
            stop_rx.clone(),
        )));
        tracing::info!(kubernetes_api = %addr, "Kubernetes API started");
    }
    tasks.push(tokio::spawn(async move {
        let shutdown = async move {
            let _ = stop_api.wait_for(|s| *s).await;
        };
        if let Err(e) = router
            .serve_with_incoming_shutdown(incoming, shutdown)
            .await
        {
            tracing::error!(error = %e, "API server stopped");
        }
    }));
    if let Some(l) = metrics_listener {
        let beyond_localhost = l.local_addr().map_or(true, |a| !a.ip().is_loopback());
        tasks.push(tokio::spawn(metrics::serve(
            l,
            metrics,
            replica.clone(),
            beyond_localhost.then(|| tokens.clone()),
            stop_rx.clone(),
        )));
    }
    tasks.push(tokio::spawn(namespaces::run(
        registry.clone(),
        stop_rx.clone(),
    )));
    let mut stop_boot = stop_rx.clone();
    tasks.push(tokio::spawn(async move {
        loop {
            match registry.ensure_system_namespaces().await {
                Ok(()) => return,
                Err(e) => tracing::debug!(error = %e, "create system namespaces (retrying)"),
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(BOOTSTRAP_RETRY_MS)) => {}
                _ = stop_boot.changed() => return,
            }
        }
    }));
    tracing::info!(api = %api_addr, "API server started");
    Ok(ApiServer {
        store: server,
        api_addr,
        kube_addr,
        stop,
        tasks,
    })
}

impl ApiServer {
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for t in &self.tasks {
            t.abort();
        }
        self.store.shutdown().await;
    }
}
