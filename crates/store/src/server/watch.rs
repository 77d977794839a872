//! etcd's Watch: one task per client stream owns all of that stream's
//! watchers, so replies are ordered by construction: a watcher's `created`
//! reply precedes its events, a cancel reply follows its last event, and a
//! progress reply is sent only once every watcher has caught up.
//!
//! Watchers pull events from the state machine's history (the MVCC revision
//! index) from their next revision on; nothing is buffered per watcher, so a
//! slow client costs no memory, and a watcher that falls behind compaction
//! gets etcd's compacted reply.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use keelson_proto::etcdserverpb as pb;
use keelson_proto::etcdserverpb::watch_request::RequestUnion;
use keelson_proto::etcdserverpb::watch_server::Watch;
use keelson_proto::mvccpb::event::EventType;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::Replica;
use crate::error::Error;
use crate::mvcc::KeyRange;

/// Replies queued per stream before the watch task waits for the client.
const WATCH_STREAM_QUEUE_REPLIES_MAX: usize = 64;
/// Most events in one reply (a revision is never split across replies).
const WATCH_REPLY_EVENTS_MAX: usize = 1000;
/// Most watchers on one stream.
const WATCHERS_PER_STREAM_MAX: usize = 10_000;

pub struct WatchService {
    replica: Arc<Replica>,
}

impl WatchService {
    pub fn new(replica: Arc<Replica>) -> WatchService {
        WatchService { replica }
    }
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<pb::WatchResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Watch for WatchService {
    type WatchStream = WatchStream;

    async fn watch(
        &self,
        req: Request<Streaming<pb::WatchRequest>>,
    ) -> Result<Response<WatchStream>, Status> {
        let inbound = req.into_inner();
        let (tx, rx) = mpsc::channel(WATCH_STREAM_QUEUE_REPLIES_MAX);
        let stream = WatchStreamTask {
            replica: self.replica.clone(),
            out: tx,
            watchers: BTreeMap::new(),
            next_auto_id: 0,
            progress_pending: false,
        };
        tokio::spawn(stream.run(inbound));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

struct Watcher {
    range: KeyRange,
    next_rev: i64,
    prev_kv: bool,
    no_put: bool,
    no_delete: bool,
    progress_notify: bool,
}

struct WatchStreamTask {
    replica: Arc<Replica>,
    out: mpsc::Sender<Result<pb::WatchResponse, Status>>,
    watchers: BTreeMap<i64, Watcher>,
    next_auto_id: i64,
    /// A progress request waits until every watcher has caught up.
    progress_pending: bool,
}

/// The client went away; the task ends.
struct Closed;

impl WatchStreamTask {
    async fn send(&self, resp: pb::WatchResponse) -> Result<(), Closed> {
        self.out.send(Ok(resp)).await.map_err(|_| Closed)
    }

    fn header(&self, revision: i64) -> Option<pb::ResponseHeader> {
        Some(self.replica.header(revision))
    }

    async fn run(mut self, mut inbound: Streaming<pb::WatchRequest>) {
        let mut revisions = self.replica.sm.subscribe();
        let mut progress = tokio::time::interval(self.replica.config.watch_progress_interval);
        progress.tick().await;
        loop {
            let caught_up = match self.sync().await {
                Ok(c) => c,
                Err(Closed) => return,
            };
            let Some(revision) = caught_up else {
                // More history to send: yield, then keep going.
                tokio::task::yield_now().await;
                if let Some(r) = futures::FutureExt::now_or_never(inbound.message()) {
                    if self.handle_inbound(r).await.is_err() {
                        return;
                    }
                }
                continue;
            };
            if self.progress_pending {
                // Every watcher has sent everything up to `revision`.
                self.progress_pending = false;
                let reply = pb::WatchResponse {
                    header: self.header(revision),
                    watch_id: -1,
                    ..Default::default()
                };
                if self.send(reply).await.is_err() {
                    return;
                }
            }
            let step = tokio::select! {
                msg = inbound.message() => self.handle_inbound(msg).await,
                changed = revisions.changed() => if changed.is_err() { Err(Closed) } else { Ok(()) },
                _ = progress.tick() => self.send_progress_notifications().await,
            };
            if step.is_err() {
                return;
            }
        }
    }

    async fn handle_inbound(
        &mut self,
        msg: Result<Option<pb::WatchRequest>, Status>,
    ) -> Result<(), Closed> {
        let req = match msg {
            Ok(Some(r)) => r,
            Ok(None) | Err(_) => return Err(Closed),
        };
        match req.request_union {
            Some(RequestUnion::CreateRequest(c)) => self.create(c).await,
            Some(RequestUnion::CancelRequest(c)) => {
                if self.watchers.remove(&c.watch_id).is_some() {
                    let revision = self.replica.sm.read().revision();
                    self.send(pb::WatchResponse {
                        header: self.header(revision),
                        watch_id: c.watch_id,
                        canceled: true,
                        ..Default::default()
                    })
                    .await?;
                }
                Ok(())
            }
            Some(RequestUnion::ProgressRequest(_)) => {
                // Answered once every watcher has caught up (see `run`).
                self.progress_pending = true;
                Ok(())
            }
            None => Ok(()),
        }
    }

    async fn create(&mut self, c: pb::WatchCreateRequest) -> Result<(), Closed> {
        let revision = self.replica.sm.read().revision();
        let fail = |reason: String| pb::WatchResponse {
            header: Some(self.replica.header(revision)),
            watch_id: -1,
            created: true,
            canceled: true,
            cancel_reason: reason,
            ..Default::default()
        };
        if c.key.is_empty() {
            return self.send(fail(Error::EmptyKey.to_string())).await;
        }
        if !c.range_end.is_empty() && c.range_end != [0] && c.key >= c.range_end {
            return self.send(fail("mvcc: watcher range is empty".into())).await;
        }
        if c.start_revision < 0 {
            return self.send(fail(Error::Compacted.to_string())).await;
        }
        if self.watchers.len() >= WATCHERS_PER_STREAM_MAX {
            return self
                .send(fail(format!(
                    "too many watchers on one stream (max {WATCHERS_PER_STREAM_MAX})"
                )))
                .await;
        }
        let id = if c.watch_id != 0 {
            if self.watchers.contains_key(&c.watch_id) {
                return self
                    .send(fail("mvcc: duplicate watch ID provided".into()))
                    .await;
            }
            c.watch_id
        } else {
            while self.watchers.contains_key(&self.next_auto_id) {
                self.next_auto_id += 1;
            }
            let id = self.next_auto_id;
            self.next_auto_id += 1;
            id
        };
        let filters: Vec<i32> = c.filters.clone();
        let watcher = Watcher {
            range: KeyRange::new(&c.key, &c.range_end),
            next_rev: if c.start_revision == 0 {
                revision + 1
            } else {
                c.start_revision
            },
            prev_kv: c.prev_kv,
            no_put: filters.contains(&(pb::watch_create_request::FilterType::Noput as i32)),
            no_delete: filters.contains(&(pb::watch_create_request::FilterType::Nodelete as i32)),
            progress_notify: c.progress_notify,
        };
        self.send(pb::WatchResponse {
            header: self.header(revision),
            watch_id: id,
            created: true,
            ..Default::default()
        })
        .await?;
        self.watchers.insert(id, watcher);
        Ok(())
    }

    /// Send every watcher its pending events, one bounded batch each.
    /// Returns the revision every watcher has caught up to, if they all have.
    async fn sync(&mut self) -> Result<Option<i64>, Closed> {
        let mut replies = Vec::new();
        let mut compacted = Vec::new();
        let mut caught_up = true;
        let current;
        {
            let sm = self.replica.sm.read();
            current = sm.revision();
            for (id, w) in self.watchers.iter_mut() {
                if w.next_rev > current {
                    continue;
                }
                match sm.events_since(w.next_rev, &w.range, w.prev_kv, WATCH_REPLY_EVENTS_MAX) {
                    Err(_) => compacted.push((*id, sm.compacted_revision())),
                    Ok((events, next)) => {
                        w.next_rev = next;
                        if next <= current {
                            caught_up = false;
                        }
                        let events: Vec<_> = events
                            .into_iter()
                            .filter(|e| {
                                let put = e.event.r#type == EventType::Put as i32;
                                !(put && w.no_put || !put && w.no_delete)
                            })
                            .map(|e| e.event)
                            .collect();
                        if !events.is_empty() {
                            replies.push(pb::WatchResponse {
                                header: Some(self.replica.header(current)),
                                watch_id: *id,
                                events,
                                ..Default::default()
                            });
                        }
                    }
                }
            }
        }
        for (id, compact_revision) in compacted {
            self.watchers.remove(&id);
            replies.push(pb::WatchResponse {
                header: self.header(compact_revision),
                watch_id: id,
                canceled: true,
                compact_revision,
                cancel_reason: Error::Compacted.to_string(),
                ..Default::default()
            });
        }
        for r in replies {
            self.send(r).await?;
        }
        Ok(caught_up.then_some(current))
    }

    async fn send_progress_notifications(&mut self) -> Result<(), Closed> {
        let revision = self.replica.sm.read().revision();
        let due: Vec<i64> = self
            .watchers
            .iter()
            .filter(|(_, w)| w.progress_notify && w.next_rev > revision)
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            self.send(pb::WatchResponse {
                header: self.header(revision),
                watch_id: id,
                ..Default::default()
            })
            .await?;
        }
        Ok(())
    }
}
