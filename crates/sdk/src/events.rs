//! Recording Events (what a controller or the scheduler decided) without
//! slowing the decisions down, after client-go's event broadcaster:
//!
//! - [`Recorder::record`] never waits: the event goes into a bounded queue
//!   and a background task writes it. When the queue is full (the API is
//!   slow or down) the event is dropped and counted, as client-go does;
//!   events are best-effort by nature.
//! - Repeats are aggregated: the same object, type, reason and message
//!   again bumps `count` and `lastTimestamp` of the Event already written
//!   (a compare-and-swap update) instead of creating another.
//! - Events expire: each is attached to a store lease of [`EVENT_TTL_SECS`]
//!   (Kubernetes' default `--event-ttl` of an hour), a new lease every
//!   [`EVENT_LEASE_ROTATE_SECS`], so the store does not fill with them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use keelson_model::time::format_rfc3339;
use keelson_model::Resource;
use keelson_proto::v1;
use tokio::sync::mpsc;
use tracing::Instrument;

use crate::{Api, Client, Error};

/// Events queued for writing before new ones are dropped.
const QUEUE_EVENTS_MAX: usize = 1024;
/// How long an Event lives after its lease was granted.
pub const EVENT_TTL_SECS: i64 = 3600;
/// A new lease for new Events this often (so they expire between
/// `EVENT_TTL_SECS - EVENT_LEASE_ROTATE_SECS` and `EVENT_TTL_SECS`).
pub const EVENT_LEASE_ROTATE_SECS: u64 = 600;
/// Written events remembered for aggregation; the memory is cleared when
/// it grows past this (later repeats then start a new Event).
const REMEMBERED_EVENTS_MAX: usize = 4096;

/// What an event is about, as [`Recorder::record`] takes it.
#[derive(Clone, Debug, PartialEq)]
pub struct Involved {
    pub kind: String,
    pub api_version: String,
    pub namespace: String,
    pub name: String,
    pub uid: String,
}

impl Involved {
    /// The involved object of an event about `obj`.
    pub fn of<K: Resource>(obj: &K) -> Involved {
        let m = obj.meta();
        Involved {
            kind: K::KIND.name().to_string(),
            api_version: K::KIND.api_version().to_string(),
            namespace: m.namespace.clone(),
            name: m.name.clone(),
            uid: m.uid.clone(),
        }
    }
}

struct Pending {
    involved: Involved,
    type_: String,
    reason: String,
    message: String,
    at: SystemTime,
}

/// A handle to record events as one component (`source.component`).
/// Cheap to clone; the writer task stops when every handle is dropped.
#[derive(Clone)]
pub struct Recorder {
    tx: mpsc::Sender<Pending>,
    dropped: Arc<AtomicU64>,
}

impl Recorder {
    pub fn new(client: Client, component: &str) -> Recorder {
        let (tx, rx) = mpsc::channel(QUEUE_EVENTS_MAX);
        let span = tracing::info_span!("events", component = %component);
        tokio::spawn(write_events(client, component.to_string(), rx).instrument(span));
        Recorder {
            tx,
            dropped: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Queue an event (`type_` is `Normal` or `Warning`). Never waits.
    pub fn record(&self, involved: Involved, type_: &str, reason: &str, message: &str) {
        let p = Pending {
            involved,
            type_: type_.to_string(),
            reason: reason.to_string(),
            message: message.to_string(),
            at: SystemTime::now(),
        };
        if self.tx.try_send(p).is_err() {
            let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if n.is_power_of_two() {
                tracing::warn!(dropped = n, "event queue full; dropping events");
            }
        }
    }

    /// Events dropped so far because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

type AggregateKey = (String, String, String, String, String);

async fn write_events(client: Client, component: String, mut rx: mpsc::Receiver<Pending>) {
    // The last written Event per (namespace, uid/name, type, reason,
    // message), for aggregation.
    let mut written: HashMap<AggregateKey, v1::Event> = HashMap::new();
    let mut lease: Option<(i64, std::time::Instant)> = None;
    while let Some(p) = rx.recv().await {
        let key: AggregateKey = (
            p.involved.namespace.clone(),
            format!("{}/{}", p.involved.uid, p.involved.name),
            p.type_.clone(),
            p.reason.clone(),
            p.message.clone(),
        );
        // Events live in their object's namespace; cluster-scoped objects'
        // events go to "default", as in Kubernetes.
        let ns = if p.involved.namespace.is_empty() {
            "default".to_string()
        } else {
            p.involved.namespace.clone()
        };
        let api: Api<v1::Event> = Api::namespaced(client.clone(), &ns);
        if let Some(prev) = written.get(&key) {
            let mut e = prev.clone();
            e.count = e.count.saturating_add(1);
            e.last_timestamp = format_rfc3339(p.at);
            match api.update(&e).await {
                Ok(stored) => {
                    written.insert(key, stored);
                    continue;
                }
                Err(Error::NotFound(_)) | Err(Error::Conflict(_)) => {
                    written.remove(&key);
                }
                Err(e) => {
                    tracing::debug!(error = %e, "update event");
                    continue;
                }
            }
        }
        let now = format_rfc3339(p.at);
        let e = v1::Event {
            metadata: Some(v1::ObjectMeta {
                generate_name: format!(
                    "{}.",
                    if p.involved.name.is_empty() {
                        "event"
                    } else {
                        &p.involved.name
                    }
                ),
                namespace: ns.clone(),
                ..Default::default()
            }),
            involved_object: Some(v1::ObjectReference {
                kind: p.involved.kind.clone(),
                api_version: p.involved.api_version.clone(),
                namespace: p.involved.namespace.clone(),
                name: p.involved.name.clone(),
                uid: p.involved.uid.clone(),
                ..Default::default()
            }),
            reason: p.reason.clone(),
            message: p.message.clone(),
            r#type: p.type_.clone(),
            source: Some(v1::EventSource {
                component: component.clone(),
                ..Default::default()
            }),
            reporting_component: component.clone(),
            first_timestamp: now.clone(),
            last_timestamp: now,
            count: 1,
            ..Default::default()
        };
        let rotate = std::time::Duration::from_secs(EVENT_LEASE_ROTATE_SECS);
        if lease.is_none_or(|(_, at)| at.elapsed() >= rotate) {
            match crate::leases::grant(&client, EVENT_TTL_SECS).await {
                Ok(id) => lease = Some((id, std::time::Instant::now())),
                Err(e) => {
                    tracing::debug!(error = %e, "event lease");
                    continue;
                }
            }
        }
        let lease_id = lease.map_or(0, |(id, _)| id);
        match api.create_with_lease(&e, lease_id).await {
            Ok(stored) => {
                if written.len() >= REMEMBERED_EVENTS_MAX {
                    written.clear();
                }
                written.insert(key, stored);
            }
            Err(e) if e.to_string().contains("lease not found") => {
                // The lease ended early (revoked, or a store restore):
                // the next event takes a new one.
                lease = None;
            }
            Err(e) => tracing::debug!(error = %e, "record event"),
        }
    }
}
