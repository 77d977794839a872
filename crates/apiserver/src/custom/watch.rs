//! Watches of JSON objects (custom resources, CRDs): the current objects
//! first (unless the client names a resourceVersion), then every change
//! under the resource's prefix from the store's history, as seen through
//! the selectors (an object that stops matching is DELETED for this
//! watcher), with bookmarks while idle when asked for. Events sharing a
//! revision carry the revision before, except the last, as the typed
//! watch does ([`crate::watch`]).

use std::time::Duration;

use keelson_proto::mvccpb;
use keelson_store::mvcc::{KeyRange, PrevKv};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::error::Error;
use crate::registry::{prefix_end, Registry};

use super::store;

const WATCH_BATCH_EVENTS_MAX: usize = 512;
const BOOKMARK_INTERVAL_MS: u64 = 1000;
/// Events queued for a slow client before the task waits for it.
pub const QUEUE_EVENTS_MAX: usize = 1024;

/// An event: (type, the object or for a BOOKMARK None, resourceVersion).
pub type Event = (&'static str, Option<Value>, i64);

/// What a watcher wants.
pub struct Spec {
    pub prefix: String,
    /// Whether an object is one this watcher sees (selectors).
    pub selects: Box<dyn Fn(&Value) -> bool + Send + Sync>,
    /// None: the current objects first.
    pub from: Option<i64>,
    pub bookmarks: bool,
    /// With `from: None`: end the current objects with a BOOKMARK at their
    /// revision (`sendInitialEvents`).
    pub mark_listed: bool,
}

fn translate(spec: &Spec, ev: &mvccpb::Event, rev: i64) -> Result<Option<Event>, Error> {
    let Some(kv) = ev.kv.as_ref() else {
        return Ok(None);
    };
    let was = match ev.prev_kv.as_ref() {
        Some(p) => (spec.selects)(&store::decode(p)?),
        None => false,
    };
    if ev.r#type == mvccpb::event::EventType::Delete as i32 {
        return Ok(match ev.prev_kv.as_ref() {
            Some(p) if was => {
                let mut v = store::decode(p)?;
                store::set_resource_version(&mut v, rev);
                Some(("DELETED", Some(v), rev))
            }
            _ => None,
        });
    }
    let mut v = store::decode(kv)?;
    store::set_resource_version(&mut v, rev);
    let is = (spec.selects)(&v);
    let typ = match (was, is) {
        (false, true) => "ADDED",
        (true, true) => "MODIFIED",
        (true, false) => "DELETED",
        (false, false) => return Ok(None),
    };
    Ok(Some((typ, Some(v), rev)))
}

/// Run one watch until the client goes away or the history it needs is
/// compacted (then an Expired error ends it).
pub async fn run(registry: Registry, spec: Spec, tx: mpsc::Sender<Result<Event, Error>>) {
    if let Err(e) = stream(&registry, &spec, &tx).await {
        let _ = tx.send(Err(e)).await;
    }
}

async fn stream(
    registry: &Registry,
    spec: &Spec,
    tx: &mpsc::Sender<Result<Event, Error>>,
) -> Result<(), Error> {
    let mut revision_rx = registry.replica.sm().subscribe();
    let mut next = match spec.from {
        Some(rv) => rv + 1,
        None => {
            let mut token = String::new();
            loop {
                let page = registry
                    .list_json(
                        &spec.prefix,
                        WATCH_BATCH_EVENTS_MAX as i64,
                        &token,
                        false,
                        &*spec.selects,
                    )
                    .await?;
                for o in page.items {
                    if tx
                        .send(Ok(("ADDED", Some(o), page.revision)))
                        .await
                        .is_err()
                    {
                        return Ok(());
                    }
                }
                if page.continue_token.is_empty() {
                    if spec.mark_listed
                        && tx
                            .send(Ok(("BOOKMARK", None, page.revision)))
                            .await
                            .is_err()
                    {
                        return Ok(());
                    }
                    break page.revision + 1;
                }
                token = page.continue_token;
            }
        }
    };
    let range = KeyRange::new(spec.prefix.as_bytes(), &prefix_end(spec.prefix.as_bytes()));
    // The first bookmark an interval from now, never at once.
    let every = Duration::from_millis(BOOKMARK_INTERVAL_MS);
    let mut bookmark = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    bookmark.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut sent_since_bookmark = false;
    loop {
        let (events, upto) = {
            let sm = registry.replica.sm().read();
            match sm.events_since(next, &range, PrevKv::All, WATCH_BATCH_EVENTS_MAX) {
                Ok(x) => x,
                Err(keelson_store::Error::Compacted) => {
                    return Err(Error::Expired(format!(
                        "resourceVersion {} is too old: history before {} has been compacted",
                        next - 1,
                        sm.compacted_revision()
                    )))
                }
                Err(e) => return Err(e.into()),
            }
        };
        let mut outs: Vec<Event> = Vec::new();
        for ev in &events {
            if let Some(out) = translate(spec, &ev.event, ev.revision)? {
                outs.push(out);
            }
        }
        // Events sharing a revision: all but the last carry the one before.
        for i in 0..outs.len() {
            if outs.get(i + 1).is_some_and(|n| n.2 == outs[i].2) {
                let before = outs[i].2 - 1;
                if let Some(v) = outs[i].1.as_mut() {
                    store::set_resource_version(v, before);
                }
            }
        }
        for out in outs {
            sent_since_bookmark = true;
            if tx.send(Ok(out)).await.is_err() {
                return Ok(());
            }
        }
        next = upto.max(next);
        if next <= registry.revision() {
            tokio::task::yield_now().await;
            continue;
        }
        tokio::select! {
            changed = revision_rx.changed() => {
                if changed.is_err() {
                    return Err(Error::Unavailable("the replica is shutting down".into()));
                }
            }
            _ = bookmark.tick() => {
                if spec.bookmarks && !sent_since_bookmark {
                    let rv = (next - 1).max(0);
                    if tx.send(Ok(("BOOKMARK", None, rv))).await.is_err() {
                        return Ok(());
                    }
                }
                sent_since_bookmark = false;
            }
            _ = tx.closed() => return Ok(()),
        }
    }
}

/// A BOOKMARK's object.
pub fn bookmark(kind: &str, api_version: &str, rev: i64) -> Value {
    json!({"kind": kind, "apiVersion": api_version, "metadata": {"resourceVersion": rev.to_string()}})
}
