//! etcd API semantics over real replica processes: forwarding and
//! linearizable reads on followers, watch ordering and compaction, lease
//! expiry and failover, limits, and hostile input.

use crate::common;

use std::time::Duration;

use common::channel;
use common::*;
use keelson_proto::etcdserverpb::lease_client::LeaseClient;
use keelson_proto::etcdserverpb::maintenance_client::MaintenanceClient;
use keelson_proto::etcdserverpb::watch_client::WatchClient;
use keelson_proto::etcdserverpb::{
    self as pb, compare, request_op, watch_request, AlarmRequest, CompactionRequest, Compare,
    DeleteRangeRequest, LeaseGrantRequest, LeaseKeepAliveRequest, PutRequest, RangeRequest,
    RequestOp, TxnRequest, WatchCreateRequest, WatchRequest,
};
use rand::{Rng, SeedableRng};
use tokio_stream::StreamExt;

const TEST_TIMEOUT: Duration = Duration::from_secs(180);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn followers_forward_writes_and_serve_linearizable_reads() {
    let _g = serial().await;
    let dir = tempfile::tempdir().unwrap();
    tokio::time::timeout(TEST_TIMEOUT, async {
        let c = start_cluster(3, dir.path(), &[]).await;
        let leader = c.leader().await.unwrap();
        let followers: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
        let mut writer = kv(&c.members[followers[0]].endpoint());
        let mut reader = kv(&c.members[followers[1]].endpoint());
        for i in 0..100 {
            let value = format!("v{i}");
            let rev = put(&mut writer, "lin", &value).await.unwrap();
            // A linearizable read on another follower right after the
            // acknowledgement must see the write.
            let r = get(&mut reader, "lin", false).await.unwrap();
            assert_eq!(
                r.kvs[0].value,
                value.as_bytes(),
                "read {i} missed the acknowledged write"
            );
            assert!(r.header.unwrap().revision >= rev);
        }

        // A read-only txn on a follower: linearizable, answered without a
        // Raft entry (the leader's raft index does not move).
        let mut maint = MaintenanceClient::new(channel(&c.members[leader].endpoint()).unwrap());
        let index = |s: pb::StatusResponse| s.raft_index;
        let before = index(
            maint
                .status(pb::StatusRequest {})
                .await
                .unwrap()
                .into_inner(),
        );
        let rev = put(&mut writer, "lin", "last").await.unwrap();
        for _ in 0..10 {
            let t = reader
                .txn(TxnRequest {
                    compare: vec![Compare {
                        result: compare::CompareResult::Equal as i32,
                        target: compare::CompareTarget::Value as i32,
                        key: b"lin".to_vec(),
                        target_union: Some(compare::TargetUnion::Value(b"last".to_vec())),
                        range_end: Vec::new(),
                    }],
                    success: vec![RequestOp {
                        request: Some(request_op::Request::RequestRange(RangeRequest {
                            key: b"lin".to_vec(),
                            ..Default::default()
                        })),
                    }],
                    failure: vec![],
                })
                .await
                .unwrap()
                .into_inner();
            assert!(t.succeeded, "the txn must see the acknowledged write");
            assert_eq!(
                t.header.unwrap().revision,
                rev,
                "a read-only txn does not bump the revision"
            );
        }
        let after = index(
            maint
                .status(pb::StatusRequest {})
                .await
                .unwrap()
                .into_inner(),
        );
        // The put is one entry; ten txns through Raft would be ten more.
        assert!(
            after <= before + 2,
            "read-only txns went through Raft: index {before} -> {after}"
        );
    })
    .await
    .expect("test timed out");
}

/// Put `key` attached to `lease`.
async fn put_leased(
    client: &mut keelson_proto::etcdserverpb::kv_client::KvClient<tonic::transport::Channel>,
    key: &str,
    lease: i64,
) {
    client
        .put(PutRequest {
            key: key.as_bytes().to_vec(),
            value: b"x".to_vec(),
            lease,
            ..Default::default()
        })
        .await
        .unwrap();
}

/// A watch stream on `endpoint`: requests go in through the sender.
async fn open_watch(
    endpoint: &str,
) -> (
    tokio::sync::mpsc::Sender<WatchRequest>,
    tonic::Streaming<pb::WatchResponse>,
) {
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    let stream = WatchClient::new(channel(endpoint).unwrap())
        .watch(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    (tx, stream)
}

async fn next_watch(stream: &mut tonic::Streaming<pb::WatchResponse>) -> pb::WatchResponse {
    tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("a watch reply in time")
        .expect("stream open")
        .expect("no error")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_replies_in_order_and_reports_compaction() {
    let _g = serial().await;
    let dir = tempfile::tempdir().unwrap();
    tokio::time::timeout(TEST_TIMEOUT, async {
        let c = start_cluster(3, dir.path(), &[]).await;
        let mut client = kv(&c.members[0].endpoint());
        let key = vec![b'b', 0, b'k'];
        let mut revs = Vec::new();
        for v in ["1", "2", "3"] {
            let r = client
                .put(PutRequest {
                    key: key.clone(),
                    value: v.into(),
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner();
            revs.push(r.header.unwrap().revision);
        }
        let (tx, mut stream) = open_watch(&c.members[1].endpoint()).await;
        let create = |key: Vec<u8>, start: i64, prev_kv: bool| WatchRequest {
            request_union: Some(watch_request::RequestUnion::CreateRequest(
                WatchCreateRequest {
                    key,
                    start_revision: start,
                    prev_kv,
                    ..Default::default()
                },
            )),
        };
        // Two creates in a row: two created replies, in order, then history.
        tx.send(create(key.clone(), revs[0], true)).await.unwrap();
        tx.send(create(b"other".to_vec(), 0, false)).await.unwrap();
        let mut created = Vec::new();
        let mut events = Vec::new();
        while created.len() < 2 || events.len() < 3 {
            let r = next_watch(&mut stream).await;
            if r.created {
                assert!(
                    events.is_empty() || r.watch_id != 0,
                    "created must precede that watcher's events"
                );
                created.push(r.watch_id);
            }
            events.extend(r.events);
        }
        assert_eq!(
            created,
            vec![0, 1],
            "one created reply per create, in order, ids from 0"
        );
        let values: Vec<_> = events
            .iter()
            .map(|e| e.kv.as_ref().unwrap().value.clone())
            .collect();
        assert_eq!(values, vec![b"1".to_vec(), b"2".to_vec(), b"3".to_vec()]);
        assert_eq!(events[1].prev_kv.as_ref().unwrap().value, b"1");
        assert_eq!(
            events[0].kv.as_ref().unwrap().key,
            key,
            "binary key with NUL survives"
        );

        // Live delete reaches the watcher.
        client
            .delete_range(DeleteRangeRequest {
                key: key.clone(),
                ..Default::default()
            })
            .await
            .unwrap();
        let r = next_watch(&mut stream).await;
        assert_eq!(r.events[0].r#type, 1, "DELETE event");

        // Compact, then watch from before it: created, then canceled with
        // the compact revision.
        client
            .compact(CompactionRequest {
                revision: revs[2],
                physical: false,
            })
            .await
            .unwrap();
        // A linearizable range below the compaction, on the watcher's
        // member, is refused with etcd's error (and makes sure that member
        // has applied the compaction before the watch below).
        let err = kv(&c.members[1].endpoint())
            .range(RangeRequest {
                key: key.clone(),
                revision: revs[0],
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(
            err.message(),
            "etcdserver: mvcc: required revision has been compacted"
        );
        tx.send(create(key.clone(), revs[0], false)).await.unwrap();
        let r = next_watch(&mut stream).await;
        assert!(r.created && !r.canceled);
        let id = r.watch_id;
        let r = next_watch(&mut stream).await;
        assert_eq!(
            (r.watch_id, r.canceled, r.compact_revision),
            (id, true, revs[2])
        );
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_expiry_deletes_keys_and_a_new_leader_extends_leases() {
    let _g = serial().await;
    let dir = tempfile::tempdir().unwrap();
    tokio::time::timeout(TEST_TIMEOUT, async {
        let mut c = start_cluster(3, dir.path(), &[]).await;
        let leader = c.leader().await.unwrap();
        let follower = (leader + 1) % 3;
        let ep = c.members[follower].endpoint();
        let mut lease = LeaseClient::new(channel(&ep).unwrap());
        let mut client = kv(&ep);
        let grant = |ttl| LeaseGrantRequest { ttl, id: 0 };

        // Expiry deletes the attached key, and a watcher sees the delete.
        let short = lease.lease_grant(grant(2)).await.unwrap().into_inner();
        put_leased(&mut client, "ephemeral", short.id).await;
        let (tx, mut stream) = open_watch(&c.members[(leader + 2) % 3].endpoint()).await;
        tx.send(WatchRequest {
            request_union: Some(watch_request::RequestUnion::CreateRequest(
                WatchCreateRequest {
                    key: b"ephemeral".to_vec(),
                    ..Default::default()
                },
            )),
        })
        .await
        .unwrap();
        assert!(next_watch(&mut stream).await.created);
        // The watch starts at its replica's current revision, which may
        // not have applied the put yet: then the put comes first.
        let mut seen = next_watch(&mut stream).await.events;
        if seen.iter().all(|e| e.r#type == 0) {
            seen.extend(next_watch(&mut stream).await.events);
        }
        let types: Vec<i32> = seen.iter().map(|e| e.r#type).collect();
        assert!(
            types == [1] || types == [0, 1],
            "the watcher sees the expiry's delete (after at most the put): {types:?}"
        );
        assert!(get(&mut client, "ephemeral", false)
            .await
            .unwrap()
            .kvs
            .is_empty());

        // Keep-alives through a follower keep a lease alive past its TTL.
        let kept = lease.lease_grant(grant(2)).await.unwrap().into_inner();
        put_leased(&mut client, "kept", kept.id).await;
        let (ka_tx, ka_rx) = tokio::sync::mpsc::channel(4);
        let mut ka = lease
            .lease_keep_alive(tokio_stream::wrappers::ReceiverStream::new(ka_rx))
            .await
            .unwrap()
            .into_inner();
        for _ in 0..8 {
            ka_tx
                .send(LeaseKeepAliveRequest { id: kept.id })
                .await
                .unwrap();
            let r = ka.next().await.unwrap().unwrap();
            assert_eq!(r.ttl, 2);
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        assert_eq!(
            get(&mut client, "kept", false).await.unwrap().kvs.len(),
            1,
            "kept alive past its TTL"
        );

        // A lease survives a leader change: the new leader gives it its full
        // TTL before it may expire it.
        let long = lease.lease_grant(grant(4)).await.unwrap().into_inner();
        put_leased(&mut client, "survivor", long.id).await;
        tokio::time::sleep(Duration::from_millis(2500)).await;
        let started = tokio::time::Instant::now();
        c.kill(leader);
        eventually(Duration::from_secs(10), "a new leader", || {
            let c = &c;
            async move { c.leader().await.is_some() }
        })
        .await;
        // 2.5 s of the 4 s TTL had passed; the new leader restarts the clock.
        tokio::time::sleep(Duration::from_millis(2000).saturating_sub(started.elapsed())).await;
        assert_eq!(
            get(&mut client, "survivor", false).await.unwrap().kvs.len(),
            1,
            "the new leader must not expire a lease before a full TTL"
        );
        eventually(
            Duration::from_secs(10),
            "the lease expires without keep-alives",
            || {
                let mut cl = client.clone();
                async move {
                    get(&mut cl, "survivor", false)
                        .await
                        .map(|r| r.kvs.is_empty())
                        .unwrap_or(false)
                }
            },
        )
        .await;
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_answer_with_etcds_errors() {
    let _g = serial().await;
    let dir = tempfile::tempdir().unwrap();
    tokio::time::timeout(TEST_TIMEOUT, async {
        let c = start_cluster(
            1,
            dir.path(),
            &[
                "--quota-backend-bytes",
                "200000",
                "--max-request-bytes",
                "65536",
            ],
        )
        .await;
        let ep = c.members[0].endpoint();
        let mut client = kv(&ep);
        let big = |n| PutRequest {
            key: b"big".to_vec(),
            value: vec![b'x'; n],
            ..Default::default()
        };
        let err = client.put(big(70_000)).await.unwrap_err();
        assert_eq!(
            (err.code(), err.message()),
            (
                tonic::Code::InvalidArgument,
                "etcdserver: request is too large"
            )
        );
        client.put(big(60_000)).await.unwrap();

        let err = client.put(PutRequest::default()).await.unwrap_err();
        assert_eq!(
            (err.code(), err.message()),
            (
                tonic::Code::InvalidArgument,
                "etcdserver: key is not provided"
            )
        );
        let err = client.range(RangeRequest::default()).await.unwrap_err();
        assert_eq!(err.message(), "etcdserver: key is not provided");

        // Fill the quota.
        let mut last = None;
        for i in 0..20 {
            match client
                .put(PutRequest {
                    key: format!("fill/{i}").into_bytes(),
                    value: vec![b'y'; 30_000],
                    ..Default::default()
                })
                .await
            {
                Ok(_) => {}
                Err(e) => {
                    last = Some(e);
                    break;
                }
            }
        }
        let err = last.expect("the quota stops writes");
        assert_eq!(
            (err.code(), err.message()),
            (
                tonic::Code::ResourceExhausted,
                "etcdserver: mvcc: database space exceeded"
            )
        );
        let mut maint = MaintenanceClient::new(channel(&ep).unwrap());
        let alarms = maint
            .alarm(AlarmRequest::default())
            .await
            .unwrap()
            .into_inner()
            .alarms;
        assert_eq!(alarms.len(), 1, "NOSPACE alarm while over quota");
        // Deleting and compacting frees space; writes work again.
        let del = client
            .delete_range(DeleteRangeRequest {
                key: vec![0],
                range_end: vec![0],
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        client
            .compact(CompactionRequest {
                revision: del.header.unwrap().revision,
                physical: true,
            })
            .await
            .unwrap();
        let err = client.put(big(1000)).await.unwrap_err();
        assert_eq!(
            err.message(),
            "etcdserver: mvcc: database space exceeded",
            "armed until disarmed"
        );
        // Disarmed as etcdctl does it: the member the list names. The
        // answer lists what was cleared.
        let disarm = AlarmRequest {
            action: pb::alarm_request::AlarmAction::Deactivate as i32,
            member_id: alarms[0].member_id,
            alarm: pb::AlarmType::Nospace as i32,
        };
        assert_eq!(
            maint.alarm(disarm).await.unwrap().into_inner().alarms,
            alarms
        );
        assert!(maint
            .alarm(AlarmRequest::default())
            .await
            .unwrap()
            .into_inner()
            .alarms
            .is_empty());
        client.put(big(1000)).await.unwrap();
    })
    .await
    .expect("test timed out");
}

fn random_bytes(rng: &mut rand::rngs::StdRng) -> Vec<u8> {
    let n = rng.random_range(0..6);
    (0..n).map(|_| rng.random_range(0..4u8) * 85).collect()
}

fn random_op(rng: &mut rand::rngs::StdRng, depth: u32) -> RequestOp {
    let request = match rng.random_range(0..if depth > 2 { 3 } else { 4 }) {
        0 => request_op::Request::RequestRange(RangeRequest {
            key: random_bytes(rng),
            range_end: random_bytes(rng),
            limit: rng.random_range(-3..4),
            revision: rng.random_range(-3..40),
            sort_order: rng.random_range(-1..5),
            sort_target: rng.random_range(-1..7),
            count_only: rng.random(),
            keys_only: rng.random(),
            min_mod_revision: rng.random_range(-2..30),
            max_create_revision: rng.random_range(-2..30),
            ..Default::default()
        }),
        1 => request_op::Request::RequestPut(PutRequest {
            key: random_bytes(rng),
            value: random_bytes(rng),
            lease: rng.random_range(-1..2),
            prev_kv: rng.random(),
            ignore_value: rng.random(),
            ignore_lease: rng.random(),
        }),
        2 => request_op::Request::RequestDeleteRange(DeleteRangeRequest {
            key: random_bytes(rng),
            range_end: random_bytes(rng),
            prev_kv: rng.random(),
        }),
        _ => request_op::Request::RequestTxn(random_txn(rng, depth + 1)),
    };
    RequestOp {
        request: Some(request),
    }
}

fn random_txn(rng: &mut rand::rngs::StdRng, depth: u32) -> TxnRequest {
    let compare = (0..rng.random_range(0..3))
        .map(|_| Compare {
            result: rng.random_range(-1..5),
            target: rng.random_range(-1..6),
            key: random_bytes(rng),
            range_end: random_bytes(rng),
            target_union: match rng.random_range(0..6) {
                0 => None,
                1 => Some(compare::TargetUnion::Version(rng.random_range(-1..3))),
                2 => Some(compare::TargetUnion::CreateRevision(
                    rng.random_range(-1..30),
                )),
                3 => Some(compare::TargetUnion::ModRevision(rng.random_range(-1..30))),
                4 => Some(compare::TargetUnion::Value(random_bytes(rng))),
                _ => Some(compare::TargetUnion::Lease(rng.random_range(-1..2))),
            },
        })
        .collect();
    TxnRequest {
        compare,
        success: (0..rng.random_range(0..4))
            .map(|_| random_op(rng, depth))
            .collect(),
        failure: (0..rng.random_range(0..4))
            .map(|_| random_op(rng, depth))
            .collect(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_requests_get_errors_not_crashes() {
    let _g = serial().await;
    let dir = tempfile::tempdir().unwrap();
    tokio::time::timeout(TEST_TIMEOUT, async {
        let c = start_cluster(3, dir.path(), &[]).await;
        let mut client = kv(&c.members[1].endpoint());
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for _ in 0..1500 {
            let _ = match rng.random_range(0..5) {
                0 => client.txn(random_txn(&mut rng, 0)).await.map(|_| ()),
                1 => match random_op(&mut rng, 3).request {
                    Some(request_op::Request::RequestRange(r)) => client.range(r).await.map(|_| ()),
                    Some(request_op::Request::RequestPut(p)) => client.put(p).await.map(|_| ()),
                    Some(request_op::Request::RequestDeleteRange(d)) => {
                        client.delete_range(d).await.map(|_| ())
                    }
                    _ => Ok(()),
                },
                2 => client
                    .compact(CompactionRequest {
                        revision: rng.random_range(-5..200),
                        physical: rng.random(),
                    })
                    .await
                    .map(|_| ()),
                3 => LeaseClient::new(channel(&c.members[0].endpoint()).unwrap())
                    .lease_grant(LeaseGrantRequest {
                        ttl: rng.random_range(-5..i64::MAX),
                        id: rng.random_range(-2..3),
                    })
                    .await
                    .map(|_| ()),
                _ => client
                    .range(RangeRequest {
                        key: random_bytes(&mut rng),
                        range_end: vec![0],
                        limit: i64::MAX,
                        revision: i64::MAX,
                        ..Default::default()
                    })
                    .await
                    .map(|_| ()),
            };
        }
        // Every replica is still up and agrees.
        for e in c.endpoints() {
            let mut k = kv(&e);
            let r = put(&mut k, "still-alive", &e).await;
            assert!(r.is_ok(), "{e} stopped answering: {r:?}");
        }
        let views = {
            let mut v = Vec::new();
            for e in c.endpoints() {
                v.push(dump(&mut kv(&e), false).await.unwrap());
            }
            v
        };
        assert!(views.windows(2).all(|w| w[0] == w[1]), "replicas diverged");
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_filters_cancel_and_progress() {
    let _g = serial().await;
    let dir = tempfile::tempdir().unwrap();
    tokio::time::timeout(TEST_TIMEOUT, async {
        let c = start_cluster(1, dir.path(), &["--watch-progress-notify-interval", "1"]).await;
        let ep = c.members[0].endpoint();
        let mut client = kv(&ep);
        let (tx, mut stream) = open_watch(&ep).await;
        let send = |r: watch_request::RequestUnion| {
            let tx = tx.clone();
            async move {
                tx.send(WatchRequest {
                    request_union: Some(r),
                })
                .await
                .unwrap()
            }
        };
        // A watcher that filters out puts.
        send(watch_request::RequestUnion::CreateRequest(
            WatchCreateRequest {
                key: b"f".to_vec(),
                filters: vec![pb::watch_create_request::FilterType::Noput as i32],
                ..Default::default()
            },
        ))
        .await;
        let filtered = next_watch(&mut stream).await;
        assert!(filtered.created);
        put(&mut client, "f", "1").await.unwrap();
        client
            .delete_range(DeleteRangeRequest {
                key: b"f".to_vec(),
                ..Default::default()
            })
            .await
            .unwrap();
        let r = next_watch(&mut stream).await;
        assert_eq!(r.events.len(), 1);
        assert_eq!(
            r.events[0].r#type, 1,
            "only the delete passes a NOPUT filter"
        );

        // Progress notifications for an idle watcher that asked for them.
        send(watch_request::RequestUnion::CreateRequest(
            WatchCreateRequest {
                key: b"p".to_vec(),
                progress_notify: true,
                ..Default::default()
            },
        ))
        .await;
        let progress_watch = next_watch(&mut stream).await;
        assert!(progress_watch.created);
        let notify = next_watch(&mut stream).await;
        assert_eq!(notify.watch_id, progress_watch.watch_id);
        assert!(notify.events.is_empty() && !notify.canceled && !notify.created);

        // Cancel: one canceled reply, and no events for that watcher after it.
        send(watch_request::RequestUnion::CancelRequest(
            pb::WatchCancelRequest {
                watch_id: filtered.watch_id,
            },
        ))
        .await;
        let mut canceled = false;
        while !canceled {
            let r = next_watch(&mut stream).await;
            canceled = r.canceled && r.watch_id == filtered.watch_id;
        }
        put(&mut client, "f", "2").await.unwrap();
        client
            .delete_range(DeleteRangeRequest {
                key: b"f".to_vec(),
                ..Default::default()
            })
            .await
            .unwrap();
        // A progress request: answered (watch id -1) once every watcher has
        // caught up, so anything for the canceled watcher would come first.
        send(watch_request::RequestUnion::ProgressRequest(
            pb::WatchProgressRequest {},
        ))
        .await;
        loop {
            let r = next_watch(&mut stream).await;
            assert_ne!(r.watch_id, filtered.watch_id, "events after cancel: {r:?}");
            if r.watch_id == -1 {
                let rev = client
                    .range(RangeRequest {
                        key: b"f".to_vec(),
                        ..Default::default()
                    })
                    .await
                    .unwrap()
                    .into_inner()
                    .header
                    .unwrap()
                    .revision;
                assert_eq!(r.header.unwrap().revision, rev);
                break;
            }
        }
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_compaction_keeps_a_bounded_window() {
    let _g = serial().await;
    let dir = tempfile::tempdir().unwrap();
    tokio::time::timeout(TEST_TIMEOUT, async {
        let c = start_cluster(3, dir.path(), &["--auto-compaction-retention", "2"]).await;
        let mut client = kv(&c.members[0].endpoint());
        let first = put(&mut client, "ac", "1").await.unwrap();
        put(&mut client, "ac", "2").await.unwrap();
        // Within 2 s of retention, plus a sampling step, the old revision
        // goes; the current value stays.
        eventually(Duration::from_secs(10), "the old revision is compacted", || {
            let mut cl = client.clone();
            async move {
                let r = cl
                    .range(RangeRequest {
                        key: b"ac".to_vec(),
                        revision: first,
                        ..Default::default()
                    })
                    .await;
                matches!(r, Err(e) if e.message() == "etcdserver: mvcc: required revision has been compacted")
            }
        })
        .await;
        assert_eq!(get(&mut client, "ac", false).await.unwrap().kvs[0].value, b"2");
    })
    .await
    .expect("test timed out");
}
