//! The connection to the cluster: one lazily connected channel per API
//! endpoint, the bearer token on every call, and failover: a call that
//! fails because its replica is unreachable moves to the next endpoint and
//! is retried with backoff, but only if repeating it is safe.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request, Status};

use crate::{Config, Error, Result};

/// How long one attempt of a unary call may take.
pub const ATTEMPT_TIMEOUT_MS: u64 = 10_000;
/// How long a call keeps failing over and retrying before it gives up.
pub const CALL_DEADLINE_MS: u64 = 20_000;
/// Connecting to one endpoint.
const CONNECT_TIMEOUT_MS: u64 = 1_000;
/// Backoff between retries: doubles from the first to the last value.
const BACKOFF_FIRST_MS: u64 = 25;
const BACKOFF_MAX_MS: u64 = 1_000;

/// Whether a call may be repeated after a failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retry {
    /// Reads, and writes that are compare-and-swaps or naturally idempotent:
    /// retried on any unavailability.
    Idempotent,
    /// Writes that must not run twice: retried only when the request
    /// certainly never reached a server (the connection was refused).
    UnsentOnly,
}

#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    endpoints: Vec<(String, Channel)>,
    token: Option<MetadataValue<Ascii>>,
    /// The endpoint calls go to; moves on when it fails.
    current: AtomicUsize,
}

/// Whether a failed call never left this process: no connection could be
/// made, so no server saw it.
fn unsent(s: &Status) -> bool {
    if s.code() != Code::Unavailable {
        return false;
    }
    // Only failures of the connect phase: a reset or closed connection may
    // have carried the request.
    let m = s.message().to_ascii_lowercase();
    m.contains("tcp connect error")
        || m.contains("error trying to connect")
        || m.contains("connection refused")
        || m.contains("dns error")
}

fn retryable(s: &Status, retry: Retry) -> bool {
    match retry {
        Retry::UnsentOnly => unsent(s),
        Retry::Idempotent => matches!(
            s.code(),
            Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Unknown
        ),
    }
}

impl Client {
    /// A client for `config`'s endpoints. Connects lazily: this does not
    /// fail when replicas are down.
    pub fn new(config: &Config) -> Result<Client> {
        if config.endpoints.is_empty() {
            return Err(Error::Config("no endpoints".into()));
        }
        let tls = if config.ca.is_empty() {
            None
        } else {
            let pem = std::fs::read(&config.ca)
                .map_err(|e| Error::Config(format!("read CA {}: {e}", config.ca)))?;
            Some(
                tonic::transport::ClientTlsConfig::new()
                    .ca_certificate(tonic::transport::Certificate::from_pem(pem)),
            )
        };
        let mut endpoints = Vec::new();
        for url in &config.endpoints {
            let mut e = Endpoint::from_shared(url.clone())
                .map_err(|e| Error::Config(format!("endpoint {url:?}: {e}")))?;
            if url.starts_with("https://") {
                let tls = tls.clone().ok_or_else(|| {
                    Error::Config(format!("endpoint {url} is https: the config needs `ca`"))
                })?;
                e = e
                    .tls_config(tls)
                    .map_err(|e| Error::Config(format!("TLS for {url}: {e}")))?;
            }
            let ch = e
                .connect_timeout(Duration::from_millis(CONNECT_TIMEOUT_MS))
                .tcp_nodelay(true)
                .http2_keep_alive_interval(Duration::from_secs(2))
                .keep_alive_timeout(Duration::from_secs(2))
                .keep_alive_while_idle(true)
                .connect_lazy();
            endpoints.push((url.clone(), ch));
        }
        let token = if config.token.is_empty() {
            None
        } else {
            Some(format!("Bearer {}", config.token).parse().map_err(|_| {
                Error::Config("token has characters not allowed in a header".into())
            })?)
        };
        // Spread clients over the replicas.
        let start = rand::random::<u32>() as usize % endpoints.len();
        Ok(Client {
            inner: Arc::new(Inner {
                endpoints,
                token,
                current: AtomicUsize::new(start),
            }),
        })
    }

    /// From `$KEELSON_CONFIG` or `~/.keelson/config`.
    pub fn from_default_config() -> Result<Client> {
        Client::new(&Config::load(&Config::default_path())?)
    }

    /// The endpoint calls go to now.
    pub fn current_endpoint(&self) -> &str {
        let i = self.inner.current.load(Ordering::Relaxed) % self.inner.endpoints.len();
        &self.inner.endpoints[i].0
    }

    /// The `authorization` value calls carry (`Bearer <token>`), if any.
    pub fn authorization(&self) -> Option<&str> {
        self.inner.token.as_ref().and_then(|t| t.to_str().ok())
    }

    /// A request carrying the token (and a timeout when given).
    pub fn request<T>(&self, msg: T, timeout: Option<Duration>) -> Request<T> {
        let mut r = Request::new(msg);
        if let Some(t) = &self.inner.token {
            r.metadata_mut().insert("authorization", t.clone());
        }
        if let Some(t) = timeout {
            r.set_timeout(t);
        }
        r
    }

    fn pick(&self) -> (usize, Channel) {
        let i = self.inner.current.load(Ordering::Relaxed) % self.inner.endpoints.len();
        (i, self.inner.endpoints[i].1.clone())
    }

    /// Move off endpoint `i` (unless another call already did).
    fn fail_over(&self, i: usize) {
        let n = self.inner.endpoints.len();
        let _ = self.inner.current.compare_exchange(
            i,
            (i + 1) % n,
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    }

    /// Run `f` on a channel, failing over and retrying as `retry` allows.
    pub async fn call<T, F, Fut>(&self, retry: Retry, f: F) -> Result<T>
    where
        F: Fn(Channel) -> Fut,
        Fut: Future<Output = std::result::Result<T, Status>>,
    {
        let deadline = tokio::time::Instant::now() + Duration::from_millis(CALL_DEADLINE_MS);
        let mut backoff = BACKOFF_FIRST_MS;
        loop {
            let (i, ch) = self.pick();
            match f(ch).await {
                Ok(v) => return Ok(v),
                Err(s) if retryable(&s, retry) && tokio::time::Instant::now() < deadline => {
                    tracing::debug!(endpoint = %self.inner.endpoints[i].0, error = %s, "call failed; trying another replica");
                    self.fail_over(i);
                    // Try the next replica at once after a refused
                    // connection; back off when all may be busy electing.
                    if !unsent(&s) || i + 1 == self.inner.endpoints.len() {
                        tokio::time::sleep(Duration::from_millis(backoff)).await;
                        backoff = (backoff * 2).min(BACKOFF_MAX_MS);
                    }
                }
                Err(s) => return Err(s.into()),
            }
        }
    }

    /// The channel to use for a long-lived stream (watch), and a way to
    /// report that it failed so the next one goes elsewhere.
    pub fn stream_channel(&self) -> StreamTarget {
        let (i, ch) = self.pick();
        StreamTarget {
            client: self.clone(),
            index: i,
            channel: ch,
        }
    }
}

/// One endpoint chosen for a stream.
pub struct StreamTarget {
    client: Client,
    index: usize,
    pub channel: Channel,
}

impl StreamTarget {
    /// The stream broke: later streams go to the next endpoint.
    pub fn failed(&self) {
        self.client.fail_over(self.index);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_rules() {
        let refused = Status::unavailable("tcp connect error: Connection refused (os error 111)");
        let no_leader = Status::unavailable("store unavailable: no leader");
        let conflict = Status::aborted("conflict");
        assert!(retryable(&refused, Retry::UnsentOnly));
        assert!(!retryable(&no_leader, Retry::UnsentOnly));
        assert!(retryable(&no_leader, Retry::Idempotent));
        assert!(!retryable(&conflict, Retry::Idempotent));
        assert!(!retryable(
            &Status::deadline_exceeded("slow"),
            Retry::UnsentOnly
        ));
    }

    #[test]
    fn config_errors() {
        assert!(Client::new(&Config::default()).is_err());
        assert!(Client::new(&Config::new(vec!["not a url".into()], "")).is_err());
    }
}
