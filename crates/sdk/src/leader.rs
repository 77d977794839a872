//! Leader election on a store lease (etcd's election recipe through the
//! API): a candidate grants itself a lease with a short TTL and creates a
//! Lease object attached to it. Whoever created it leads while it keeps
//! the lease alive; when the lease expires the store deletes the object
//! and the others race to create it again.
//!
//! A leader steps down on its own before anyone else can take over: it
//! counts its term from the moment it *sent* the last keep-alive that was
//! answered, so its own deadline is never later than the store's.

use std::time::Duration;

use futures::StreamExt;
use keelson_proto::api::leases_client::LeasesClient;
use keelson_proto::api::{LeaseGrantRequest, LeaseKeepAliveRequest, LeaseRevokeRequest};
use keelson_proto::v1;
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::Instrument;

use crate::api::{Api, ListParams, WatchEvent};
use crate::client::Retry;
use crate::{Client, Error, Result};

/// The default TTL of a leadership lease.
pub const LEASE_TTL_SECS_DEFAULT: i64 = 3;
/// Keep-alives per TTL.
const KEEPALIVES_PER_TTL: u32 = 4;
/// The share of the TTL a leader gives up early, for clock-rate
/// differences between client and server.
const SAFETY_MARGIN_PERCENT: u32 = 10;

/// Who leads, as seen by one candidate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Leadership {
    /// Whether this candidate leads now.
    pub leading: bool,
    /// The holder's identity, when known.
    pub holder: String,
}

/// A candidate for one election (`namespace`/`name`).
#[derive(Clone)]
pub struct LeaderElector {
    client: Client,
    namespace: String,
    name: String,
    identity: String,
    ttl_secs: i64,
}

impl LeaderElector {
    pub fn new(client: Client, namespace: &str, name: &str, identity: &str) -> LeaderElector {
        LeaderElector {
            client,
            namespace: namespace.to_string(),
            name: name.to_string(),
            identity: identity.to_string(),
            ttl_secs: LEASE_TTL_SECS_DEFAULT,
        }
    }

    pub fn ttl(mut self, secs: i64) -> LeaderElector {
        self.ttl_secs = secs.max(1);
        self
    }

    /// Campaign forever in a background task. The receiver says whether
    /// this candidate leads; act only while it says so.
    pub fn spawn(self) -> (watch::Receiver<Leadership>, tokio::task::JoinHandle<()>) {
        let (tx, rx) = watch::channel(Leadership {
            leading: false,
            holder: String::new(),
        });
        // Every log line of the campaign names the election and candidate.
        let span = tracing::info_span!(
            "election",
            election = %format!("{}/{}", self.namespace, self.name),
            identity = %self.identity
        );
        let task = tokio::spawn(async move { self.run(tx).await }.instrument(span));
        (rx, task)
    }

    async fn run(self, tx: watch::Sender<Leadership>) {
        let api: Api<v1::Lease> = Api::namespaced(self.client.clone(), &self.namespace);
        loop {
            if tx.is_closed() {
                return;
            }
            match self.campaign(&api, &tx).await {
                Ok(()) => {}
                Err(e) => {
                    tracing::debug!(error = %e, "campaign");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
            tx.send_if_modified(|l| {
                let changed = l.leading;
                l.leading = false;
                changed
            });
        }
    }

    /// One round: grant, try to take the lock, and either lead until the
    /// lease is lost or wait until the current holder's object is gone.
    async fn campaign(&self, api: &Api<v1::Lease>, tx: &watch::Sender<Leadership>) -> Result<()> {
        let ttl = self.ttl_secs;
        // The store starts the lease's clock when it applies the grant,
        // which is after this instant: counting from here is safe.
        let granted_at = Instant::now();
        let grant = self
            .client
            .call(Retry::Idempotent, |ch| {
                let r = self
                    .client
                    .request(LeaseGrantRequest { ttl_seconds: ttl }, None);
                async move { LeasesClient::new(ch).grant(r).await }
            })
            .await?
            .into_inner();
        let lease_id = grant.id;
        let lock = v1::Lease {
            metadata: Some(v1::ObjectMeta {
                name: self.name.clone(),
                namespace: self.namespace.clone(),
                ..Default::default()
            }),
            spec: Some(v1::LeaseSpec {
                holder_identity: self.identity.clone(),
                lease_duration_seconds: Some(ttl as i32),
                acquire_time: keelson_model::time::format_rfc3339(std::time::SystemTime::now()),
                ..Default::default()
            }),
            ..Default::default()
        };
        match api.create_with_lease(&lock, lease_id).await {
            Ok(_) => {
                let ttl_d = Duration::from_secs(ttl as u64);
                if Instant::now() >= granted_at + ttl_d - ttl_d * SAFETY_MARGIN_PERCENT / 100 {
                    // The create took so long the lease may be gone.
                    self.revoke(lease_id).await;
                    return Err(Error::Unavailable(
                        "took the lock too late to trust the lease".into(),
                    ));
                }
                tracing::info!("became leader");
                tx.send_replace(Leadership {
                    leading: true,
                    holder: self.identity.clone(),
                });
                let r = self.hold(lease_id, granted_at, tx).await;
                tx.send_replace(Leadership {
                    leading: false,
                    holder: String::new(),
                });
                tracing::info!("lost leadership");
                self.revoke(lease_id).await;
                r
            }
            Err(Error::AlreadyExists(_)) => {
                self.revoke(lease_id).await;
                self.wait_for_vacancy(api, tx).await
            }
            Err(e) => {
                self.revoke(lease_id).await;
                Err(e)
            }
        }
    }

    async fn revoke(&self, id: i64) {
        let r = self
            .client
            .call(Retry::Idempotent, |ch| {
                let r = self
                    .client
                    .request(LeaseRevokeRequest { id }, Some(Duration::from_secs(2)));
                async move { LeasesClient::new(ch).revoke(r).await }
            })
            .await;
        if let Err(e) = r {
            tracing::debug!(error = %e, "revoke lease (it will expire)");
        }
    }

    /// Keep the lease alive; return when it can no longer be trusted.
    async fn hold(
        &self,
        lease_id: i64,
        granted_at: Instant,
        tx: &watch::Sender<Leadership>,
    ) -> Result<()> {
        let ttl = Duration::from_secs(self.ttl_secs as u64);
        let margin = ttl * SAFETY_MARGIN_PERCENT / 100;
        let mut valid_until = granted_at + ttl - margin;
        let every = ttl / KEEPALIVES_PER_TTL;
        loop {
            // One keep-alive stream at a time; a broken one is replaced
            // (on another replica) while the deadline allows.
            let target = self.client.stream_channel();
            let (req_tx, req_rx) = tokio::sync::mpsc::channel::<LeaseKeepAliveRequest>(4);
            let outbound = tokio_stream::wrappers::ReceiverStream::new(req_rx);
            let mut leases = LeasesClient::new(target.channel.clone());
            let call = leases.keep_alive(self.client.request(outbound, None));
            let mut inbound = match tokio::time::timeout_at(valid_until, call).await {
                Ok(Ok(s)) => s.into_inner(),
                Ok(Err(e)) => {
                    target.failed();
                    if Instant::now() >= valid_until {
                        return Err(e.into());
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
                Err(_) => return Err(Error::Unavailable("lease deadline passed".into())),
            };
            let mut tick = tokio::time::interval(every);
            let mut sent: std::collections::VecDeque<Instant> = Default::default();
            loop {
                tokio::select! {
                    _ = tick.tick() => {
                        if req_tx.send(LeaseKeepAliveRequest { id: lease_id }).await.is_err() {
                            break;
                        }
                        sent.push_back(Instant::now());
                    }
                    reply = inbound.next() => match reply {
                        Some(Ok(r)) => {
                            let Some(at) = sent.pop_front() else { continue };
                            if r.ttl_seconds <= 0 {
                                return Err(Error::NotFound("the leadership lease expired".into()));
                            }
                            valid_until = at + Duration::from_secs(r.ttl_seconds as u64) - margin;
                        }
                        Some(Err(_)) | None => {
                            target.failed();
                            break;
                        }
                    },
                    // Nobody listens any more (the component stopped):
                    // give the lease back so another takes over at once.
                    _ = tx.closed() => return Ok(()),
                    _ = tokio::time::sleep_until(valid_until) => {
                        return Err(Error::Unavailable("could not renew the leadership lease in time".into()));
                    }
                }
            }
        }
    }

    /// Wait until the lock object is gone (its holder's lease ended).
    async fn wait_for_vacancy(
        &self,
        api: &Api<v1::Lease>,
        tx: &watch::Sender<Leadership>,
    ) -> Result<()> {
        let params = ListParams::default().fields(&format!("metadata.name={}", self.name));
        // List first: if the holder's lease already ended, campaign at once.
        let list = api.list(&params).await?;
        let Some(current) = list.items.into_iter().next() else {
            return Ok(());
        };
        let note = |l: v1::Lease| {
            let holder = l.spec.map(|s| s.holder_identity).unwrap_or_default();
            tx.send_if_modified(|cur| {
                let changed = cur.holder != holder;
                cur.holder = holder.clone();
                changed
            });
        };
        note(current);
        let mut events = Box::pin(api.watch(&params, &list.resource_version).await?);
        while let Some(ev) = events.next().await {
            match ev? {
                WatchEvent::Added(l) | WatchEvent::Modified(l) => note(l),
                WatchEvent::Deleted(_) => return Ok(()),
                WatchEvent::Bookmark(_) => {}
            }
        }
        Err(Error::Unavailable(
            "watch of the leadership lock ended".into(),
        ))
    }
}
