//! Watch: a task per stream reads the store's history from the requested
//! revision, turns key changes into ADDED / MODIFIED / DELETED events as
//! seen through the selectors (an object that stops matching is DELETED
//! for this watcher), and sends bookmarks while it is idle (every second).
//!
//! - A revision older than the compacted one ends the stream with
//!   OUT_OF_RANGE, "expired, relist" (5 minutes of history by default).
//! - Events sharing a revision (a txn, a lease's keys) carry the revision
//!   before, except the last, so a resume from any event misses nothing.
//! - An event carries the stored bytes as they are (`WatchEvent.object` is
//!   an encoded `Object`; the resourceVersion is set by appending a
//!   `metadata` field, which protobuf merges), so a hundred watchers do not
//!   decode and re-encode every object a hundred times.

use std::sync::Arc;
use std::time::Duration;

use keelson_model::selector::{FieldSelector, LabelSelector};
use keelson_model::{meta_of, Kind, Object};
use keelson_proto::api::WatchEvent;
use keelson_proto::mvccpb;
use keelson_store::mvcc::{KeyRange, PrevKv};
use tokio::sync::mpsc;
use tonic::Status;

use crate::encryption::SecretBox;
use crate::error::Error;
use crate::registry::{decode_kv, prefix_end, ListOptions, Registry};

/// Events sent per read of the store's history.
const WATCH_BATCH_EVENTS_MAX: usize = 512;
/// Events queued for a slow client before the watch task waits for it.
pub const WATCH_QUEUE_EVENTS_MAX: usize = 1024;
/// How often an idle watcher that allows bookmarks gets one.
const BOOKMARK_INTERVAL_MS: u64 = 1000;

pub struct WatchSpec {
    pub kind: Kind,
    pub namespace: String,
    pub labels: LabelSelector,
    pub fields: FieldSelector,
    /// None: send the current objects as ADDED first.
    pub from: Option<i64>,
    pub bookmarks: bool,
    /// With `from: None`: end the initial list with a BOOKMARK at its
    /// revision (node sessions: "you have everything").
    pub mark_listed: bool,
}

fn event(typ: &str, object: Option<Object>, rev: i64) -> WatchEvent {
    use prost::Message;
    WatchEvent {
        r#type: typ.to_string(),
        object: object.map(|o| o.encode_to_vec()).unwrap_or_default(),
        resource_version: rev.to_string(),
    }
}

/// An event carrying a stored version as it is, with `rev` as its
/// resourceVersion (no decode, no re-encode).
fn raw_event(typ: &str, kind: Kind, stored: &[u8], rev: i64) -> WatchEvent {
    let rv = rev.to_string();
    WatchEvent {
        r#type: typ.to_string(),
        object: keelson_model::kinds::encode_stored_as_object(kind, stored, &rv),
        resource_version: rv,
    }
}

impl WatchSpec {
    fn selects(&self, o: &Object) -> bool {
        meta_of(o).is_some_and(|m| self.labels.matches(&m.labels)) && self.fields.matches(o)
    }

    /// The event one key change means for this watcher, if any.
    fn translate(
        &self,
        ev: &mvccpb::Event,
        rev: i64,
        key: Option<&SecretBox>,
    ) -> Result<Option<WatchEvent>, Error> {
        let Some(kv) = ev.kv.as_ref() else {
            return Ok(None);
        };
        let is_delete = ev.r#type == mvccpb::event::EventType::Delete as i32;
        // Without selectors every version matches: nothing needs decoding.
        let unfiltered = self.labels.is_empty() && self.fields.is_empty();
        let was = if unfiltered {
            // It existed before unless this version created it.
            is_delete || kv.create_revision != kv.mod_revision
        } else {
            match ev.prev_kv.as_ref() {
                Some(p) => self.selects(&decode_kv(self.kind, p, key)?),
                None => false,
            }
        };
        if is_delete {
            // The deleted object's last state, at the deletion's revision.
            return Ok(match ev.prev_kv.as_ref() {
                Some(p) if was => Some(raw_event("DELETED", self.kind, &plain(key, p)?, rev)),
                _ => None,
            });
        }
        let is = unfiltered || self.selects(&decode_kv(self.kind, kv, key)?);
        let typ = match (was, is) {
            (false, true) => "ADDED",
            (true, true) => "MODIFIED",
            (true, false) => "DELETED",
            (false, false) => return Ok(None),
        };
        Ok(Some(raw_event(typ, self.kind, &plain(key, kv)?, rev)))
    }
}

/// A stored value decrypted (see [`crate::encryption`]).
fn plain<'a>(
    key: Option<&SecretBox>,
    kv: &'a mvccpb::KeyValue,
) -> Result<std::borrow::Cow<'a, [u8]>, Error> {
    crate::encryption::open(key, &kv.value)
        .map_err(|e| Error::Internal(format!("read {}: {e}", String::from_utf8_lossy(&kv.key))))
}

/// A revision can hold several events (a txn, a lease's keys): all but its
/// last carry the revision before, so a watcher resuming from any event's
/// resourceVersion gets the rest of that revision. `events` are one batch
/// from `events_since`, which never splits a revision.
fn set_resume_revisions(events: &mut [(i64, WatchEvent)]) {
    for i in 0..events.len() {
        let same_rev_follows = events.get(i + 1).is_some_and(|n| n.0 == events[i].0);
        if same_rev_follows {
            events[i].1.resource_version = (events[i].0 - 1).to_string();
        }
    }
}

/// Run one watch until the client goes away or the history it needs is
/// compacted (then it gets OUT_OF_RANGE: "expired, relist").
pub async fn run(
    registry: Registry,
    spec: WatchSpec,
    tx: mpsc::Sender<Result<WatchEvent, Status>>,
    watchers: Arc<prometheus_client::metrics::gauge::Gauge>,
) {
    struct Counted(Arc<prometheus_client::metrics::gauge::Gauge>);
    impl Drop for Counted {
        fn drop(&mut self) {
            self.0.dec();
        }
    }
    watchers.inc();
    let _counted = Counted(watchers);
    let result = stream(&registry, &spec, &tx).await;
    if let Err(e) = result {
        let _ = tx.send(Err(e.into())).await;
    }
}

async fn stream(
    registry: &Registry,
    spec: &WatchSpec,
    tx: &mpsc::Sender<Result<WatchEvent, Status>>,
) -> Result<(), Error> {
    let mut revision_rx = registry.replica.sm().subscribe();
    let mut next = match spec.from {
        Some(rv) => rv + 1,
        None => {
            // The current state first, then the changes after it.
            let mut token = String::new();
            let at = loop {
                let page = registry
                    .list(
                        spec.kind,
                        ListOptions {
                            namespace: &spec.namespace,
                            labels: &spec.labels,
                            fields: &spec.fields,
                            limit: WATCH_BATCH_EVENTS_MAX as i64,
                            continue_token: &token,
                            local: false,
                        },
                    )
                    .await?;
                for o in page.items {
                    if tx
                        .send(Ok(event("ADDED", Some(o), page.revision)))
                        .await
                        .is_err()
                    {
                        return Ok(());
                    }
                }
                if page.continue_token.is_empty() {
                    if spec.mark_listed
                        && tx
                            .send(Ok(event("BOOKMARK", None, page.revision)))
                            .await
                            .is_err()
                    {
                        return Ok(());
                    }
                    break page.revision;
                }
                token = page.continue_token;
            };
            at + 1
        }
    };
    // With selectors, an update's previous version decides ADDED/DELETED
    // for this watcher; without, only a deletion needs it.
    let prev_kv = if spec.labels.is_empty() && spec.fields.is_empty() {
        PrevKv::Deletes
    } else {
        PrevKv::All
    };
    let prefix = spec.kind.prefix(&spec.namespace);
    let range = KeyRange::new(prefix.as_bytes(), &prefix_end(prefix.as_bytes()));
    let mut bookmark = tokio::time::interval(Duration::from_millis(BOOKMARK_INTERVAL_MS));
    bookmark.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut sent_since_bookmark = false;
    loop {
        // Read what is there, without holding the state lock across sends.
        let (events, upto) = {
            let sm = registry.replica.sm().read();
            match sm.events_since(next, &range, prev_kv, WATCH_BATCH_EVENTS_MAX) {
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
        let mut outs = Vec::new();
        for ev in &events {
            if let Some(out) = spec.translate(&ev.event, ev.revision, registry.secret_box())? {
                outs.push((ev.revision, out));
            }
        }
        set_resume_revisions(&mut outs);
        for (_, out) in outs {
            sent_since_bookmark = true;
            if tx.send(Ok(out)).await.is_err() {
                return Ok(());
            }
        }
        next = upto.max(next);
        if next <= registry.revision() {
            // More history is waiting; let other tasks run in between.
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
                    if tx.send(Ok(event("BOOKMARK", None, rv))).await.is_err() {
                        return Ok(());
                    }
                }
                sent_since_bookmark = false;
            }
            _ = tx.closed() => return Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keelson_model::Resource;
    use keelson_proto::v1;

    fn pod_kv(app: &str, create: i64, modr: i64) -> mvccpb::KeyValue {
        let p = v1::Pod {
            metadata: Some(v1::ObjectMeta {
                name: "p".into(),
                namespace: "default".into(),
                labels: [("app".to_string(), app.to_string())].into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        mvccpb::KeyValue {
            key: b"/registry/pods/default/p".to_vec(),
            value: keelson_model::encode(&p.into_object()),
            create_revision: create,
            mod_revision: modr,
            ..Default::default()
        }
    }

    fn put(cur: mvccpb::KeyValue, prev: Option<mvccpb::KeyValue>) -> mvccpb::Event {
        mvccpb::Event {
            r#type: mvccpb::event::EventType::Put as i32,
            kv: Some(cur),
            prev_kv: prev,
        }
    }

    fn delete(prev: mvccpb::KeyValue, rev: i64) -> mvccpb::Event {
        mvccpb::Event {
            r#type: mvccpb::event::EventType::Delete as i32,
            kv: Some(mvccpb::KeyValue {
                key: prev.key.clone(),
                mod_revision: rev,
                ..Default::default()
            }),
            prev_kv: Some(prev),
        }
    }

    fn spec(labels: &str) -> WatchSpec {
        WatchSpec {
            kind: Kind::Pod,
            namespace: String::new(),
            labels: LabelSelector::parse(labels).expect("selector"),
            fields: FieldSelector::default(),
            from: Some(0),
            bookmarks: false,
            mark_listed: false,
        }
    }

    fn kind_of(e: Option<WatchEvent>) -> String {
        e.map(|e| e.r#type).unwrap_or_else(|| "-".into())
    }

    #[test]
    fn shared_revisions_resume_inside_the_revision() {
        let mut evs: Vec<(i64, WatchEvent)> = [5, 6, 6, 6, 7]
            .iter()
            .map(|r| (*r, event("DELETED", None, *r)))
            .collect();
        set_resume_revisions(&mut evs);
        let rvs: Vec<&str> = evs
            .iter()
            .map(|(_, e)| e.resource_version.as_str())
            .collect();
        assert_eq!(rvs, ["5", "5", "5", "6", "7"]);
    }

    #[test]
    fn events_as_each_watcher_sees_them() {
        let all = spec("");
        let web = spec("app=web");
        // (event, revision, seen without selector, seen with app=web)
        let cases = vec![
            (put(pod_kv("web", 5, 5), None), 5, "ADDED", "ADDED"),
            (
                put(pod_kv("web", 5, 6), Some(pod_kv("web", 5, 5))),
                6,
                "MODIFIED",
                "MODIFIED",
            ),
            // Unfiltered watchers get no previous version for updates.
            (put(pod_kv("web", 5, 6), None), 6, "MODIFIED", "ADDED"),
            (
                put(pod_kv("db", 5, 7), Some(pod_kv("web", 5, 6))),
                7,
                "MODIFIED",
                "DELETED",
            ),
            (
                put(pod_kv("web", 5, 8), Some(pod_kv("db", 5, 7))),
                8,
                "MODIFIED",
                "ADDED",
            ),
            (
                put(pod_kv("db", 5, 9), Some(pod_kv("db", 5, 8))),
                9,
                "MODIFIED",
                "-",
            ),
            (delete(pod_kv("web", 5, 8), 10), 10, "DELETED", "DELETED"),
            (delete(pod_kv("db", 5, 9), 11), 11, "DELETED", "-"),
        ];
        for (i, (ev, rev, want_all, want_web)) in cases.into_iter().enumerate() {
            let got_all = all.translate(&ev, rev, None).expect("translate");
            if let Some(e) = &got_all {
                assert_eq!(e.resource_version, rev.to_string(), "case {i}");
                let o = <Object as prost::Message>::decode(e.object.as_slice()).expect("object");
                assert_eq!(
                    keelson_model::meta_of(&o).map(|m| m.resource_version.clone()),
                    Some(rev.to_string()),
                    "case {i}: the object carries the event's revision"
                );
            }
            assert_eq!(kind_of(got_all), want_all, "case {i} unfiltered");
            assert_eq!(
                kind_of(web.translate(&ev, rev, None).expect("translate")),
                want_web,
                "case {i} app=web"
            );
        }
    }
}
