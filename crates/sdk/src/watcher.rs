//! A watch that lasts: lists, then watches from the list's revision,
//! resumes from the last revision it saw when its replica goes away
//! (on another replica), and relists when that revision has been
//! compacted. Nothing is lost, duplicated or reordered across a resume.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::{Stream, StreamExt};
use keelson_model::Resource;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tracing::Instrument;

use crate::api::{Api, ListParams, WatchEvent};
use crate::{Error, Result};

/// Events queued for a slow consumer before the watcher waits for it.
const WATCHER_QUEUE_EVENTS_MAX: usize = 1024;
/// Page size of the lists a watcher makes.
const LIST_PAGE_ITEMS: i64 = 500;
/// Backoff between reconnects.
const RETRY_FIRST_MS: u64 = 50;
const RETRY_MAX_MS: u64 = 2_000;

/// What a watcher reports.
#[derive(Clone, Debug, PartialEq)]
pub enum Event<K> {
    /// Created or changed.
    Applied(K),
    Deleted(K),
    /// A (re)list: this is now everything there is.
    Restarted(Vec<K>),
}

/// Watch `api`'s objects matching `params`, for as long as the stream is
/// held. Errors that retrying cannot fix (authentication, permission, a bad
/// selector) are yielded, and the watcher keeps retrying with backoff.
pub fn watcher<K: Resource>(
    api: Api<K>,
    params: ListParams,
) -> impl Stream<Item = Result<Event<K>>> {
    let (tx, rx) = mpsc::channel(WATCHER_QUEUE_EVENTS_MAX);
    // Every log line of this watch names what it watches.
    let span = tracing::info_span!("watch", kind = %K::KIND, namespace = %api.namespace());
    tokio::spawn(run(api, params, tx).instrument(span));
    ReceiverStream::new(rx)
}

async fn list_all<K: Resource>(api: &Api<K>, params: &ListParams) -> Result<(Vec<K>, String)> {
    let mut p = params.clone();
    p.limit = LIST_PAGE_ITEMS;
    p.continue_token.clear();
    let mut items = Vec::new();
    loop {
        let page = api.list(&p).await?;
        items.extend(page.items);
        if page.continue_token.is_empty() {
            return Ok((items, page.resource_version));
        }
        p.continue_token = page.continue_token;
    }
}

async fn run<K: Resource>(api: Api<K>, params: ListParams, tx: mpsc::Sender<Result<Event<K>>>) {
    let mut rv: Option<String> = None;
    let mut backoff = RETRY_FIRST_MS;
    while !tx.is_closed() {
        let from = match &rv {
            Some(r) => r.clone(),
            None => match list_all(&api, &params).await {
                Ok((items, at)) => {
                    if tx.send(Ok(Event::Restarted(items))).await.is_err() {
                        return;
                    }
                    rv = Some(at.clone());
                    at
                }
                Err(e) => {
                    if !matches!(e, Error::Unavailable(_)) && tx.send(Err(e)).await.is_err() {
                        return;
                    }
                    pause(&mut backoff).await;
                    continue;
                }
            },
        };
        tracing::debug!(from = %from, endpoint = %api.client().current_endpoint(), "watching");
        let mut stream = match api.watch_with_revisions(&params, &from).await {
            Ok(s) => Box::pin(s),
            Err(Error::Expired(_)) => {
                rv = None;
                continue;
            }
            Err(e) => {
                if !matches!(e, Error::Unavailable(_)) && tx.send(Err(e)).await.is_err() {
                    return;
                }
                pause(&mut backoff).await;
                continue;
            }
        };
        while let Some(item) = stream.next().await {
            match item {
                Ok((at, ev)) => {
                    backoff = RETRY_FIRST_MS;
                    rv = Some(at);
                    let out = match ev {
                        WatchEvent::Added(k) | WatchEvent::Modified(k) => Event::Applied(k),
                        WatchEvent::Deleted(k) => Event::Deleted(k),
                        WatchEvent::Bookmark(_) => continue,
                    };
                    if tx.send(Ok(out)).await.is_err() {
                        return;
                    }
                }
                Err(Error::Expired(_)) => {
                    rv = None;
                    break;
                }
                Err(e) => {
                    tracing::debug!(error = %e, "watch broke; resuming");
                    break;
                }
            }
        }
        tracing::debug!(rv = ?rv, "watch ended");
        pause(&mut backoff).await;
    }
}

fn pause(backoff: &mut u64) -> tokio::time::Sleep {
    let d = Duration::from_millis(*backoff);
    *backoff = (*backoff * 2).min(RETRY_MAX_MS);
    tokio::time::sleep(d)
}

/// The key of an object in a cache: `namespace/name` (or `name`).
pub fn object_key<K: Resource>(k: &K) -> String {
    let m = k.meta();
    if m.namespace.is_empty() {
        m.name.clone()
    } else {
        format!("{}/{}", m.namespace, m.name)
    }
}

/// A cache's content: a persistent map, so a snapshot is an O(1) copy
/// and a change to the cache copies a path of the tree, not the map.
pub type Map<K> = imbl::HashMap<String, Arc<K>>;

/// A read-only view of a reflector's cache, cheap to clone and share.
pub struct Store<K> {
    map: Arc<RwLock<Map<K>>>,
    ready: tokio::sync::watch::Receiver<bool>,
    changes: tokio::sync::watch::Receiver<u64>,
}

impl<K> Clone for Store<K> {
    fn clone(&self) -> Self {
        Store {
            map: self.map.clone(),
            ready: self.ready.clone(),
            changes: self.changes.clone(),
        }
    }
}

impl<K: Resource> Store<K> {
    /// One object by `namespace/name` (or `name` for cluster-scoped kinds).
    pub fn get(&self, key: &str) -> Option<Arc<K>> {
        self.snapshot().get(key).cloned()
    }

    /// The whole cache at one moment (an O(1) copy): later changes do not
    /// affect it.
    pub fn snapshot(&self) -> Map<K> {
        self.map.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn list(&self) -> Vec<Arc<K>> {
        self.snapshot().values().cloned().collect()
    }

    pub fn len(&self) -> usize {
        self.snapshot().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A receiver that is notified after every change to the cache (its
    /// value counts the changes), to wake a controller instead of polling.
    pub fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.clone()
    }

    /// Wait until the first list has been loaded.
    pub async fn wait_ready(&self) {
        let mut r = self.ready.clone();
        let _ = r.wait_for(|x| *x).await;
    }
}

/// The single writer of a [`Store`].
pub struct Writer<K> {
    map: Arc<RwLock<Map<K>>>,
    ready: tokio::sync::watch::Sender<bool>,
    changes: tokio::sync::watch::Sender<u64>,
}

impl<K: Resource> Writer<K> {
    pub fn new() -> (Writer<K>, Store<K>) {
        let map = Arc::new(RwLock::new(Map::new()));
        let (tx, rx) = tokio::sync::watch::channel(false);
        let (ctx, crx) = tokio::sync::watch::channel(0u64);
        (
            Writer {
                map: map.clone(),
                ready: tx,
                changes: ctx,
            },
            Store {
                map,
                ready: rx,
                changes: crx,
            },
        )
    }

    /// Apply one watcher event. A relist replaces the whole map in one
    /// swap; a single change shares everything else with the snapshots
    /// readers hold.
    pub fn apply(&self, ev: Event<K>) {
        let mut guard = self.map.write().unwrap_or_else(|p| p.into_inner());
        match ev {
            Event::Restarted(items) => {
                *guard = items
                    .into_iter()
                    .map(|k| (object_key(&k), Arc::new(k)))
                    .collect();
                self.ready.send_replace(true);
            }
            Event::Applied(k) => {
                guard.insert(object_key(&k), Arc::new(k));
            }
            Event::Deleted(k) => {
                guard.remove(&object_key(&k));
            }
        }
        drop(guard);
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }
}

/// A cache of `api`'s objects matching `params`, kept current by a
/// watcher in a background task (stopped when the handle is aborted).
pub fn reflector<K: Resource>(
    api: Api<K>,
    params: ListParams,
) -> (Store<K>, tokio::task::JoinHandle<()>) {
    let (writer, store) = Writer::new();
    let span = tracing::info_span!("reflector", kind = %K::KIND, namespace = %api.namespace());
    let task = tokio::spawn(
        async move {
            let mut events = Box::pin(watcher(api, params));
            while let Some(ev) = events.next().await {
                match ev {
                    Ok(ev) => writer.apply(ev),
                    Err(e) => tracing::warn!(error = %e, "reflector watch"),
                }
            }
        }
        .instrument(span),
    );
    (store, task)
}

#[cfg(test)]
mod tests {
    use super::*;
    use keelson_proto::v1;

    fn pod(name: &str, rv: &str) -> v1::Pod {
        v1::Pod {
            metadata: Some(v1::ObjectMeta {
                name: name.into(),
                namespace: "default".into(),
                resource_version: rv.into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn writer_applies_and_snapshots_stay_put() {
        let (w, s) = Writer::new();
        w.apply(Event::Restarted(vec![pod("a", "1"), pod("b", "2")]));
        let before = s.snapshot();
        w.apply(Event::Applied(pod("c", "3")));
        w.apply(Event::Deleted(pod("a", "4")));
        w.apply(Event::Applied(pod("b", "5")));
        assert_eq!(before.len(), 2, "a snapshot does not change");
        assert!(s.get("default/a").is_none());
        assert_eq!(
            s.get("default/b")
                .map(|p| p.meta().resource_version.clone()),
            Some("5".into())
        );
        assert_eq!(s.len(), 2);
        w.apply(Event::Restarted(vec![pod("z", "9")]));
        assert_eq!(s.list().len(), 1);
        assert!(s.get("default/z").is_some());
    }
}
