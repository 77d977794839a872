//! The KV workload over the etcd API: clients doing reads, writes and
//! compare-and-swaps on a few keys (fresh keys every `--rotate`), and
//! watchers of the whole prefix, every operation recorded.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use keelson_proto::etcdserverpb::kv_client::KvClient;
use keelson_proto::etcdserverpb::watch_client::WatchClient;
use keelson_proto::etcdserverpb::{
    compare, request_op, watch_request, Compare, PutRequest, RangeRequest, RequestOp, TxnRequest,
    WatchCreateRequest, WatchProgressRequest, WatchRequest, WatchResponse,
};
use keelson_testkit::channel;
use rand::{Rng, SeedableRng};

use crate::history::{Op, OpKind, Outcome};
use crate::invariants::Watched;

/// Keys live under this prefix.
const PREFIX: &str = "chaos/";
/// A client gives an operation this long.
const OP_TIMEOUT: Duration = Duration::from_secs(1);
/// Watchers of the whole run.
pub const WATCHERS: usize = 2;

/// The shared record of the run.
pub struct Recorder {
    pub t0: Instant,
    pub ops: Mutex<Vec<Op>>,
    pub watched: Mutex<Vec<Watched>>,
}

impl Recorder {
    pub fn new() -> Recorder {
        Recorder {
            t0: Instant::now(),
            ops: Mutex::new(Vec::new()),
            watched: Mutex::new(Vec::new()),
        }
    }
    pub fn now_ns(&self) -> u64 {
        u64::try_from(self.t0.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
    pub fn push(&self, op: Op) {
        if let Ok(mut ops) = self.ops.lock() {
            ops.push(op);
        }
    }
}

/// Key `i` of generation `gen`: clients move to fresh keys every
/// `--rotate`, which bounds each key's history (and so the search).
pub fn key_name(gen: u64, i: usize) -> String {
    format!("{PREFIX}g{gen:05}-k{i}")
}

pub fn kv(endpoint: &str) -> anyhow::Result<KvClient<tonic::transport::Channel>> {
    Ok(KvClient::new(channel(endpoint)?))
}

fn timed<T>(msg: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.set_timeout(OP_TIMEOUT);
    r
}

/// One operation against `client`: (outcome, revision).
pub async fn perform(
    client: &mut KvClient<tonic::transport::Channel>,
    key: &str,
    kind: &OpKind,
    serializable: bool,
) -> (Outcome, i64) {
    let rev = |h: Option<keelson_proto::etcdserverpb::ResponseHeader>| h.map_or(0, |h| h.revision);
    match kind {
        OpKind::Read => match client
            .range(timed(RangeRequest {
                key: key.as_bytes().to_vec(),
                serializable,
                ..Default::default()
            }))
            .await
        {
            Ok(r) => {
                let r = r.into_inner();
                let v = r
                    .kvs
                    .first()
                    .map(|kv| String::from_utf8_lossy(&kv.value).to_string());
                (Outcome::Read(v), rev(r.header))
            }
            // A read that failed tells nothing.
            Err(_) => (Outcome::Failed, 0),
        },
        OpKind::Write { value } => match client
            .put(timed(PutRequest {
                key: key.as_bytes().to_vec(),
                value: value.as_bytes().to_vec(),
                ..Default::default()
            }))
            .await
        {
            Ok(r) => (Outcome::Ok, rev(r.into_inner().header)),
            Err(_) => (Outcome::Unknown, 0),
        },
        OpKind::Cas { expect, new } => {
            let compare = match expect {
                Some(v) => Compare {
                    result: compare::CompareResult::Equal as i32,
                    target: compare::CompareTarget::Value as i32,
                    key: key.as_bytes().to_vec(),
                    target_union: Some(compare::TargetUnion::Value(v.as_bytes().to_vec())),
                    ..Default::default()
                },
                None => Compare {
                    result: compare::CompareResult::Equal as i32,
                    target: compare::CompareTarget::Create as i32,
                    key: key.as_bytes().to_vec(),
                    target_union: Some(compare::TargetUnion::CreateRevision(0)),
                    ..Default::default()
                },
            };
            let put = RequestOp {
                request: Some(request_op::Request::RequestPut(PutRequest {
                    key: key.as_bytes().to_vec(),
                    value: new.as_bytes().to_vec(),
                    ..Default::default()
                })),
            };
            match client
                .txn(timed(TxnRequest {
                    compare: vec![compare],
                    success: vec![put],
                    failure: vec![],
                }))
                .await
            {
                Ok(r) => {
                    let r = r.into_inner();
                    (Outcome::Swapped(r.succeeded), rev(r.header))
                }
                Err(_) => (Outcome::Unknown, 0),
            }
        }
    }
}

/// What every KV client is told.
#[derive(Clone)]
pub struct Workload {
    pub endpoints: Vec<String>,
    pub keys: usize,
    pub rotate: Duration,
    pub serializable: bool,
    pub seed: u64,
    pub until: Instant,
}

/// A KV client: one operation at a time until `until`, moving to the next
/// replica after an error.
pub async fn client_loop(id: usize, w: Workload, rec: Arc<Recorder>) {
    let Workload {
        endpoints,
        keys,
        rotate,
        serializable,
        seed,
        until,
    } = w;
    let rotate_ns = u64::try_from(rotate.as_nanos()).unwrap_or(u64::MAX).max(1);
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ (id as u64).wrapping_mul(0x9e37_79b9));
    let mut at = id % endpoints.len();
    let mut client = kv(&endpoints[at]).ok();
    let mut last_read: Vec<Option<String>> = vec![None; keys];
    let mut gen = 0u64;
    let mut n = 0u64;
    while Instant::now() < until {
        let now_gen = rec.now_ns() / rotate_ns;
        if now_gen != gen {
            gen = now_gen;
            last_read = vec![None; keys];
        }
        let k = rng.random_range(0..keys);
        let key = key_name(gen, k);
        n += 1;
        let kind = match rng.random_range(0..10) {
            0..=3 => OpKind::Read,
            4..=6 => OpKind::Write {
                value: format!("c{id}-{n}"),
            },
            _ => OpKind::Cas {
                expect: last_read[k].clone(),
                new: format!("c{id}-{n}"),
            },
        };
        let invoke_ns = rec.now_ns();
        let (outcome, revision) = match client.as_mut() {
            Some(c) => perform(c, &key, &kind, serializable).await,
            // No channel to this replica: nothing was sent.
            None => (Outcome::Failed, 0),
        };
        let complete_ns = rec.now_ns();
        if let Outcome::Read(v) = &outcome {
            last_read[k] = v.clone();
        }
        let failed = matches!(outcome, Outcome::Failed | Outcome::Unknown);
        rec.push(Op {
            client: id,
            key,
            kind,
            invoke_ns,
            complete_ns: (!matches!(outcome, Outcome::Unknown)).then_some(complete_ns),
            outcome,
            revision,
        });
        if failed {
            at = (at + 1) % endpoints.len();
            client = kv(&endpoints[at]).ok();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// A watcher of the prefix from `from` until `until`, resuming on the next
/// replica after an error; false if it could not resume (compacted).
pub async fn watch_loop(
    id: usize,
    endpoints: Vec<String>,
    from: i64,
    until: Arc<Mutex<Option<i64>>>,
    rec: Arc<Recorder>,
) -> bool {
    let mut at = id % endpoints.len();
    let mut next = from;
    let deadline = || until.lock().ok().and_then(|u| *u);
    loop {
        if deadline().is_some_and(|last| next > last) {
            return true;
        }
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let create = WatchRequest {
            request_union: Some(watch_request::RequestUnion::CreateRequest(
                WatchCreateRequest {
                    key: PREFIX.as_bytes().to_vec(),
                    range_end: prefix_end(PREFIX.as_bytes()),
                    start_revision: next,
                    ..Default::default()
                },
            )),
        };
        if tx.send(create).await.is_err() {
            return false;
        }
        let opened = match channel(&endpoints[at]) {
            Ok(ch) => {
                WatchClient::new(ch)
                    .watch(tokio_stream::wrappers::ReceiverStream::new(rx))
                    .await
            }
            Err(e) => Err(tonic::Status::unavailable(e.to_string())),
        };
        let mut stream = match opened {
            Ok(s) => s.into_inner(),
            Err(_) => {
                at = (at + 1) % endpoints.len();
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        loop {
            let msg = tokio::time::timeout(Duration::from_millis(500), stream.message()).await;
            let resp = match msg {
                Err(_) => {
                    // Idle: done if past the end, else keep waiting. Past
                    // the last KV write the store's revision still moves
                    // (the control plane writes), so ask for progress: the
                    // answer's revision is one the watcher has caught up to.
                    match deadline() {
                        Some(last) if next > last => return true,
                        Some(_) => {
                            let progress = WatchRequest {
                                request_union: Some(watch_request::RequestUnion::ProgressRequest(
                                    WatchProgressRequest {},
                                )),
                            };
                            if tx.send(progress).await.is_err() {
                                break;
                            }
                        }
                        None => {}
                    }
                    continue;
                }
                Ok(Ok(Some(r))) => r,
                Ok(_) => break,
            };
            if resp.compact_revision > 0 {
                return false;
            }
            if resp.canceled {
                break;
            }
            if is_progress(&resp) {
                if let Some(h) = &resp.header {
                    next = next.max(h.revision + 1);
                }
                continue;
            }
            for ev in resp.events {
                let Some(kv) = ev.kv else { continue };
                let value =
                    (ev.r#type == 0).then(|| String::from_utf8_lossy(&kv.value).to_string());
                if let Ok(mut w) = rec.watched.lock() {
                    w.push(Watched {
                        watcher: id,
                        revision: kv.mod_revision,
                        key: String::from_utf8_lossy(&kv.key).to_string(),
                        value,
                    });
                }
                next = next.max(kv.mod_revision + 1);
            }
        }
        // The stream broke: resume on the next replica.
        drop(tx);
        at = (at + 1) % endpoints.len();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A progress notification: no events, not a creation or cancellation;
/// its header's revision is one every watcher of the stream has seen.
fn is_progress(r: &WatchResponse) -> bool {
    r.events.is_empty() && !r.created && !r.canceled && r.compact_revision == 0
}

fn prefix_end(p: &[u8]) -> Vec<u8> {
    let mut end = p.to_vec();
    if let Some(last) = end.last_mut() {
        *last += 1;
    }
    end
}
