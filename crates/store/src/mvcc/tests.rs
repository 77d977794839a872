//! Table-style tests of the pure state machine: no IO, no clock.

use super::*;
use keelson_proto::raft::{LeaseGrant, LeaseRevoke};

fn put(key: &str, value: &str) -> Command {
    put_req(pb::PutRequest {
        key: key.into(),
        value: value.into(),
        ..Default::default()
    })
}

fn put_req(p: pb::PutRequest) -> Command {
    Command {
        kind: Some(command::Kind::Put(p)),
    }
}

fn del(key: &str, end: &str) -> Command {
    Command {
        kind: Some(command::Kind::DeleteRange(pb::DeleteRangeRequest {
            key: key.into(),
            range_end: end.into(),
            prev_kv: true,
        })),
    }
}

fn txn(t: pb::TxnRequest) -> Command {
    Command {
        kind: Some(command::Kind::Txn(t)),
    }
}

fn get(m: &Mvcc, key: &str, end: &str, rev: i64) -> Result<pb::RangeResponse> {
    m.range(&pb::RangeRequest {
        key: key.into(),
        range_end: end.into(),
        revision: rev,
        ..Default::default()
    })
}

fn ok(r: CommandResult) -> command_result::Kind {
    match r.kind {
        Some(command_result::Kind::Error(e)) => panic!("unexpected error: {e:?}"),
        Some(k) => k,
        None => panic!("empty result"),
    }
}

fn err(r: CommandResult) -> String {
    match r.kind {
        Some(command_result::Kind::Error(e)) => e.message,
        other => panic!("expected an error, got {other:?}"),
    }
}

fn keys(r: &pb::RangeResponse) -> Vec<String> {
    r.kvs
        .iter()
        .map(|kv| String::from_utf8_lossy(&kv.key).into_owned())
        .collect()
}

#[test]
fn revisions_versions_and_create_revision() {
    let mut m = Mvcc::default();
    assert_eq!(m.revision(), 1);
    ok(m.apply(&put("a", "1")));
    ok(m.apply(&put("a", "2")));
    ok(m.apply(&put("b", "1")));
    assert_eq!(m.revision(), 4);
    let r = get(&m, "a", "", 0).unwrap();
    let kv = &r.kvs[0];
    assert_eq!((kv.create_revision, kv.mod_revision, kv.version), (2, 3, 2));
    assert_eq!(kv.value, b"2");
    // Reads at an older revision see the older value.
    let old = get(&m, "a", "", 2).unwrap();
    assert_eq!(old.kvs[0].value, b"1");
    assert_eq!(get(&m, "b", "", 3).unwrap().kvs.len(), 0);
    assert_eq!(get(&m, "a", "", 5).unwrap_err(), Error::FutureRevision);
}

#[test]
fn delete_then_recreate_resets_version() {
    let mut m = Mvcc::default();
    ok(m.apply(&put("k", "1")));
    ok(m.apply(&put("k", "2")));
    match ok(m.apply(&del("k", ""))) {
        command_result::Kind::DeleteRange(d) => {
            assert_eq!(d.deleted, 1);
            assert_eq!(d.prev_kvs[0].value, b"2");
        }
        other => panic!("{other:?}"),
    }
    assert!(get(&m, "k", "", 0).unwrap().kvs.is_empty());
    ok(m.apply(&put("k", "3")));
    let kv = get(&m, "k", "", 0).unwrap().kvs[0].clone();
    assert_eq!((kv.version, kv.create_revision, kv.mod_revision), (1, 5, 5));
}

#[test]
fn delete_of_nothing_does_not_bump_revision() {
    let mut m = Mvcc::default();
    ok(m.apply(&put("a", "1")));
    let r = m.apply(&del("zzz", ""));
    assert_eq!(r.revision, 2);
    assert_eq!(m.revision(), 2);
}

#[test]
fn ranges_prefix_all_keys_and_binary_keys() {
    let mut m = Mvcc::default();
    for k in ["a", "ab", "abc", "b", "c"] {
        ok(m.apply(&put(k, "v")));
    }
    ok(m.apply(&put_req(pb::PutRequest {
        key: vec![b'a', 0, b'z'],
        value: vec![0, 1, 2],
        ..Default::default()
    })));
    // Prefix "a": range_end "b".
    assert_eq!(
        keys(&get(&m, "a", "b", 0).unwrap()),
        vec!["a", "a\0z", "ab", "abc"]
    );
    // "\0" as range_end: every key >= key.
    assert_eq!(keys(&get(&m, "b", "\0", 0).unwrap()), vec!["b", "c"]);
    // key "\0" with range_end "\0": everything.
    assert_eq!(get(&m, "\0", "\0", 0).unwrap().count, 6);
    // An inverted range is empty, not a panic.
    assert!(get(&m, "c", "a", 0).unwrap().kvs.is_empty());
    let nul = m
        .range(&pb::RangeRequest {
            key: vec![b'a', 0, b'z'],
            ..Default::default()
        })
        .unwrap();
    assert_eq!(nul.kvs[0].value, vec![0, 1, 2]);
}

#[test]
fn limit_sort_count_keys_only() {
    let mut m = Mvcc::default();
    for (k, v) in [("a", "3"), ("b", "1"), ("c", "2")] {
        ok(m.apply(&put(k, v)));
    }
    let req = |limit, order: range_request::SortOrder, target: range_request::SortTarget| {
        pb::RangeRequest {
            key: b"a".to_vec(),
            range_end: b"z".to_vec(),
            limit,
            sort_order: order as i32,
            sort_target: target as i32,
            ..Default::default()
        }
    };
    use range_request::{SortOrder as O, SortTarget as T};
    let r = m.range(&req(2, O::None, T::Key)).unwrap();
    assert_eq!(
        (keys(&r), r.more, r.count),
        (vec!["a".to_string(), "b".into()], true, 3)
    );
    let r = m.range(&req(0, O::Descend, T::Key)).unwrap();
    assert_eq!(keys(&r), vec!["c", "b", "a"]);
    let r = m.range(&req(0, O::None, T::Value)).unwrap();
    assert_eq!(
        keys(&r),
        vec!["b", "c", "a"],
        "a non-key target sorts ascending"
    );
    let r = m.range(&req(1, O::Descend, T::Value)).unwrap();
    assert_eq!((keys(&r), r.more), (vec!["a".to_string()], true));
    let r = m
        .range(&pb::RangeRequest {
            key: b"a".to_vec(),
            range_end: b"z".to_vec(),
            count_only: true,
            ..Default::default()
        })
        .unwrap();
    assert_eq!((r.count, r.kvs.len()), (3, 0));
    let r = m
        .range(&pb::RangeRequest {
            key: b"a".to_vec(),
            keys_only: true,
            ..Default::default()
        })
        .unwrap();
    assert!(r.kvs[0].value.is_empty());
    let r = m
        .range(&pb::RangeRequest {
            key: b"a".to_vec(),
            range_end: b"z".to_vec(),
            min_mod_revision: 3,
            ..Default::default()
        })
        .unwrap();
    assert_eq!((keys(&r), r.count), (vec!["b".to_string(), "c".into()], 3));
}

#[test]
fn empty_key_and_put_flags() {
    let mut m = Mvcc::default();
    assert_eq!(
        err(m.apply(&put("", "v"))),
        "etcdserver: key is not provided"
    );
    let ignore = |value: &str, lease| {
        put_req(pb::PutRequest {
            key: b"k".to_vec(),
            value: value.into(),
            ignore_value: true,
            lease,
            ..Default::default()
        })
    };
    assert_eq!(err(m.apply(&ignore("", 0))), "etcdserver: key not found");
    assert_eq!(
        err(m.apply(&ignore("x", 0))),
        "etcdserver: value is provided"
    );
    ok(m.apply(&put("k", "keep")));
    ok(m.apply(&ignore("", 0)));
    assert_eq!(get(&m, "k", "", 0).unwrap().kvs[0].value, b"keep");
    assert_eq!(
        err(m.apply(&ignore("", 99))),
        "etcdserver: requested lease not found"
    );
    assert_eq!(m.revision(), 3, "failed writes do not bump the revision");
}

fn cmp(
    key: &str,
    target: compare::CompareTarget,
    result: compare::CompareResult,
    u: compare::TargetUnion,
) -> Compare {
    Compare {
        result: result as i32,
        target: target as i32,
        key: key.into(),
        target_union: Some(u),
        range_end: Vec::new(),
    }
}

fn op_put(key: &str, value: &str) -> pb::RequestOp {
    pb::RequestOp {
        request: Some(request_op::Request::RequestPut(pb::PutRequest {
            key: key.into(),
            value: value.into(),
            ..Default::default()
        })),
    }
}

fn op_get(key: &str) -> pb::RequestOp {
    pb::RequestOp {
        request: Some(request_op::Request::RequestRange(pb::RangeRequest {
            key: key.into(),
            ..Default::default()
        })),
    }
}

#[test]
fn txn_compares_on_every_target() {
    use compare::{CompareResult as R, CompareTarget as T, TargetUnion as U};
    let mut m = Mvcc::default();
    ok(m.apply(&put("k", "v1"))); // rev 2
    ok(m.apply(&put("k", "v2"))); // rev 3
    let cases = vec![
        (cmp("k", T::Value, R::Equal, U::Value(b"v2".to_vec())), true),
        (
            cmp("k", T::Value, R::Greater, U::Value(b"v1".to_vec())),
            true,
        ),
        (cmp("k", T::Version, R::Equal, U::Version(2)), true),
        (cmp("k", T::Version, R::Less, U::Version(2)), false),
        (cmp("k", T::Create, R::Equal, U::CreateRevision(2)), true),
        (cmp("k", T::Mod, R::NotEqual, U::ModRevision(3)), false),
        (cmp("k", T::Lease, R::Equal, U::Lease(0)), true),
        // A value given for another target compares against zero, as etcd.
        (
            cmp("k", T::Version, R::Greater, U::Value(b"x".to_vec())),
            true,
        ),
        (cmp("k", T::Mod, R::Equal, U::Version(3)), false),
        // A missing key: version/create/mod are 0, and value compares fail.
        (cmp("missing", T::Version, R::Equal, U::Version(0)), true),
        (
            cmp("missing", T::Create, R::Equal, U::CreateRevision(0)),
            true,
        ),
        (
            cmp("missing", T::Value, R::NotEqual, U::Value(b"x".to_vec())),
            false,
        ),
    ];
    for (c, want) in cases {
        let resp = ok(m.apply(&txn(pb::TxnRequest {
            compare: vec![c.clone()],
            success: vec![op_get("k")],
            failure: vec![],
        })));
        match resp {
            command_result::Kind::Txn(t) => assert_eq!(t.succeeded, want, "{c:?}"),
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn txn_compare_over_a_range() {
    use compare::{CompareResult as R, CompareTarget as T, TargetUnion as U};
    let mut m = Mvcc::default();
    ok(m.apply(&put("p/a", "1")));
    ok(m.apply(&put("p/b", "1")));
    let mut c = cmp("p/", T::Value, R::Equal, U::Value(b"1".to_vec()));
    c.range_end = b"p0".to_vec();
    let run = |m: &mut Mvcc, c: &Compare| match ok(m.apply(&txn(pb::TxnRequest {
        compare: vec![c.clone()],
        ..Default::default()
    }))) {
        command_result::Kind::Txn(t) => t.succeeded,
        other => panic!("{other:?}"),
    };
    assert!(run(&mut m, &c));
    ok(m.apply(&put("p/b", "2")));
    assert!(!run(&mut m, &c));
}

#[test]
fn txn_writes_are_one_revision_and_reads_see_them() {
    let mut m = Mvcc::default();
    let resp = ok(m.apply(&txn(pb::TxnRequest {
        compare: vec![],
        success: vec![op_put("a", "1"), op_put("b", "2"), op_get("a")],
        failure: vec![],
    })));
    assert_eq!(m.revision(), 2);
    let command_result::Kind::Txn(t) = resp else {
        panic!()
    };
    assert!(t.succeeded);
    match &t.responses[2].response {
        Some(response_op::Response::ResponseRange(r)) => assert_eq!(r.kvs[0].value, b"1"),
        other => panic!("{other:?}"),
    }
    assert_eq!(get(&m, "b", "", 0).unwrap().kvs[0].mod_revision, 2);
}

#[test]
fn txn_rejects_duplicates_and_too_many_ops() {
    let mut m = Mvcc::default();
    let dup = txn(pb::TxnRequest {
        success: vec![op_put("a", "1"), op_put("a", "2")],
        ..Default::default()
    });
    assert_eq!(
        err(m.apply(&dup)),
        "etcdserver: duplicate key given in txn request"
    );
    let put_and_delete = txn(pb::TxnRequest {
        success: vec![
            op_put("a/1", "1"),
            pb::RequestOp {
                request: Some(request_op::Request::RequestDeleteRange(
                    pb::DeleteRangeRequest {
                        key: b"a/".to_vec(),
                        range_end: b"a0".to_vec(),
                        prev_kv: false,
                    },
                )),
            },
        ],
        ..Default::default()
    });
    assert_eq!(validate(&put_and_delete), Err(Error::DuplicateKey));
    let many = txn(pb::TxnRequest {
        success: (0..129).map(|i| op_put(&format!("k{i}"), "v")).collect(),
        ..Default::default()
    });
    assert_eq!(validate(&many), Err(Error::TooManyOps));
    // Puts to the same key in the two branches are fine: only one runs.
    let branches = txn(pb::TxnRequest {
        success: vec![op_put("a", "1")],
        failure: vec![op_put("a", "2")],
        ..Default::default()
    });
    assert_eq!(validate(&branches), Ok(()));
}

#[test]
fn failed_txn_op_leaves_no_partial_write() {
    let mut m = Mvcc::default();
    let bad = txn(pb::TxnRequest {
        success: vec![
            op_put("a", "1"),
            pb::RequestOp {
                request: Some(request_op::Request::RequestPut(pb::PutRequest {
                    key: b"b".to_vec(),
                    lease: 42,
                    ..Default::default()
                })),
            },
        ],
        ..Default::default()
    });
    assert_eq!(err(m.apply(&bad)), "etcdserver: requested lease not found");
    assert_eq!(m.revision(), 1);
    assert!(get(&m, "a", "", 0).unwrap().kvs.is_empty());
    assert_eq!(m, Mvcc::default());
}

#[test]
fn nested_txn_sees_outer_writes() {
    use compare::{CompareResult as R, CompareTarget as T, TargetUnion as U};
    let mut m = Mvcc::default();
    let nested = pb::TxnRequest {
        compare: vec![cmp("x", T::Value, R::Equal, U::Value(b"1".to_vec()))],
        success: vec![op_put("y", "yes")],
        failure: vec![op_put("y", "no")],
    };
    ok(m.apply(&txn(pb::TxnRequest {
        success: vec![
            op_put("x", "1"),
            pb::RequestOp {
                request: Some(request_op::Request::RequestTxn(nested)),
            },
        ],
        ..Default::default()
    })));
    assert_eq!(get(&m, "y", "", 0).unwrap().kvs[0].value, b"yes");
    assert_eq!(m.revision(), 2);
}

#[test]
fn compaction_keeps_state_at_and_after_the_revision() {
    let mut m = Mvcc::default();
    ok(m.apply(&put("a", "1"))); // 2
    ok(m.apply(&put("a", "2"))); // 3
    ok(m.apply(&put("b", "1"))); // 4
    ok(m.apply(&del("b", ""))); // 5
    ok(m.apply(&put("c", "1"))); // 6
    let compact = |rev| Command {
        kind: Some(command::Kind::Compact(pb::CompactionRequest {
            revision: rev,
            physical: false,
        })),
    };
    assert_eq!(
        err(m.apply(&compact(7))),
        "etcdserver: mvcc: required revision is a future revision"
    );
    ok(m.apply(&compact(5)));
    assert_eq!(
        err(m.apply(&compact(5))),
        "etcdserver: mvcc: required revision has been compacted"
    );
    assert_eq!(get(&m, "a", "", 4).unwrap_err(), Error::Compacted);
    assert_eq!(get(&m, "a", "", 5).unwrap().kvs[0].value, b"2");
    assert_eq!(get(&m, "a", "\0", 0).unwrap().count, 2);
    // The deleted key's history is gone, except the delete at revision 5.
    let (events, _) = m
        .events_since(5, &KeyRange::new(b"b", b""), false, 100)
        .unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(
        m.events_since(4, &KeyRange::new(b"a", b""), false, 100)
            .unwrap_err(),
        Error::Compacted
    );
    let before = m.size_bytes();
    ok(m.apply(&compact(6)));
    assert!(m.size_bytes() < before, "compaction frees space");
}

#[test]
fn events_in_revision_order_with_prev_kv_and_batching() {
    let mut m = Mvcc::default();
    ok(m.apply(&put("w/a", "1"))); // 2
    ok(m.apply(&put("x", "1"))); // 3
    ok(m.apply(&txn(pb::TxnRequest {
        success: vec![op_put("w/a", "2"), op_put("w/b", "1")],
        ..Default::default()
    }))); // 4
    ok(m.apply(&del("w/", "w0"))); // 5
    let range = KeyRange::new(b"w/", b"w0");
    let (events, next) = m.events_since(2, &range, true, 100).unwrap();
    let summary: Vec<(i64, i32, String)> = events
        .iter()
        .map(|e| {
            let kv = e.event.kv.as_ref().unwrap();
            (
                e.revision,
                e.event.r#type,
                String::from_utf8_lossy(&kv.key).into_owned(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            (2, 0, "w/a".into()),
            (4, 0, "w/a".into()),
            (4, 0, "w/b".into()),
            (5, 1, "w/a".into()),
            (5, 1, "w/b".into()),
        ]
    );
    assert_eq!(next, 6);
    assert_eq!(events[1].event.prev_kv.as_ref().unwrap().value, b"1");
    assert_eq!(events[3].event.prev_kv.as_ref().unwrap().value, b"2");
    // A small batch stops at a revision boundary: revision 4 stays whole.
    let (first, next) = m.events_since(2, &range, false, 2).unwrap();
    assert_eq!(first.len(), 3);
    assert_eq!(next, 5);
    // Nothing new: next stays at current + 1.
    let (none, next) = m.events_since(6, &range, false, 10).unwrap();
    assert!(none.is_empty());
    assert_eq!(next, 6);
}

#[test]
fn lease_grant_attach_revoke_deletes_keys() {
    let mut m = Mvcc::default();
    let grant = |id, ttl| Command {
        kind: Some(command::Kind::LeaseGrant(LeaseGrant { id, ttl })),
    };
    match ok(m.apply(&grant(7, 1))) {
        command_result::Kind::LeaseGrant(g) => assert_eq!(g.ttl, LEASE_TTL_MIN_SECS),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        err(m.apply(&grant(7, 10))),
        "etcdserver: lease already exists"
    );
    assert_eq!(
        err(m.apply(&grant(8, LEASE_TTL_MAX_SECS + 1))),
        "etcdserver: too large lease TTL"
    );
    let leased = |k: &str| {
        put_req(pb::PutRequest {
            key: k.into(),
            value: b"v".to_vec(),
            lease: 7,
            ..Default::default()
        })
    };
    ok(m.apply(&leased("l1")));
    ok(m.apply(&leased("l2")));
    ok(m.apply(&put("l2", "detached"))); // no lease any more
    assert_eq!(m.leases()[&7].keys.len(), 1);
    let rev_before = m.revision();
    ok(m.apply(&Command {
        kind: Some(command::Kind::LeaseRevoke(LeaseRevoke { id: 7 })),
    }));
    assert_eq!(
        m.revision(),
        rev_before + 1,
        "a revoke deletes its keys in one revision"
    );
    assert!(get(&m, "l1", "", 0).unwrap().kvs.is_empty());
    assert_eq!(get(&m, "l2", "", 0).unwrap().kvs[0].value, b"detached");
    assert!(m.leases().is_empty());
    let revoke_again = Command {
        kind: Some(command::Kind::LeaseRevoke(LeaseRevoke { id: 7 })),
    };
    assert_eq!(
        err(m.apply(&revoke_again)),
        "etcdserver: requested lease not found"
    );
    let (events, _) = m
        .events_since(rev_before + 1, &KeyRange::new(b"l", b"m"), false, 10)
        .unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].event.r#type, EventType::Delete as i32);
}

#[test]
fn state_survives_serialization() {
    let mut m = Mvcc::default();
    ok(m.apply(&put("a", "1")));
    ok(m.apply(&put_req(pb::PutRequest {
        key: vec![0, 0xff],
        value: vec![],
        ..Default::default()
    })));
    let bytes = bincode::serde::encode_to_vec(&m, bincode::config::standard()).unwrap();
    let (back, _): (Mvcc, usize) =
        bincode::serde::decode_from_slice(&bytes, bincode::config::standard()).unwrap();
    assert_eq!(back, m);
}

fn alarm(action: pb::alarm_request::AlarmAction, member: u64, a: pb::AlarmType) -> Command {
    Command {
        kind: Some(command::Kind::Alarm(pb::AlarmRequest {
            action: action as i32,
            member_id: member,
            alarm: a as i32,
        })),
    }
}

#[test]
fn alarms_refuse_writes_alike_until_disarmed() {
    use pb::alarm_request::AlarmAction::{Activate, Deactivate};
    let mut m = Mvcc::default();
    ok(m.apply(&put("a", "1")));
    ok(m.apply(&alarm(Activate, 7, pb::AlarmType::Nospace)));
    assert_eq!(
        m.alarms().iter().copied().collect::<Vec<_>>(),
        vec![(7, pb::AlarmType::Nospace as i32)]
    );
    // NOSPACE: puts (also inside a txn) and lease grants refused; deletes,
    // delete-only txns and compaction go on, so space can be reclaimed.
    assert_eq!(err(m.apply(&put("b", "2"))), Error::NoSpace.to_string());
    let nested_put = pb::TxnRequest {
        failure: vec![pb::RequestOp {
            request: Some(request_op::Request::RequestTxn(pb::TxnRequest {
                success: vec![pb::RequestOp {
                    request: Some(request_op::Request::RequestPut(pb::PutRequest {
                        key: "c".into(),
                        ..Default::default()
                    })),
                }],
                ..Default::default()
            })),
        }],
        ..Default::default()
    };
    assert_eq!(err(m.apply(&txn(nested_put))), Error::NoSpace.to_string());
    let grant = Command {
        kind: Some(command::Kind::LeaseGrant(LeaseGrant { id: 5, ttl: 60 })),
    };
    assert_eq!(err(m.apply(&grant)), Error::NoSpace.to_string());
    ok(m.apply(&del("a", "")));
    // CORRUPT: every write refused, deletes too.
    ok(m.apply(&alarm(Activate, 9, pb::AlarmType::Corrupt)));
    assert_eq!(err(m.apply(&del("a", ""))), Error::Corrupt.to_string());
    // Disarming one member's alarm leaves the other's.
    ok(m.apply(&alarm(Deactivate, 9, pb::AlarmType::None)));
    assert_eq!(err(m.apply(&put("b", "2"))), Error::NoSpace.to_string());
    ok(m.apply(&alarm(Deactivate, 7, pb::AlarmType::Nospace)));
    ok(m.apply(&put("b", "2")));
    assert!(m.alarms().is_empty());
    // A member leaving takes its alarms with it.
    ok(m.apply(&alarm(Activate, 3, pb::AlarmType::Corrupt)));
    ok(m.apply(&Command {
        kind: Some(command::Kind::MemberForget(3)),
    }));
    ok(m.apply(&put("c", "3")));
}

#[test]
fn hash_kv_agrees_on_equal_histories_and_not_otherwise() {
    let mut a = Mvcc::default();
    let mut b = Mvcc::default();
    for m in [&mut a, &mut b] {
        ok(m.apply(&put("k1", "v1")));
        ok(m.apply(&put("k2", "v2")));
        ok(m.apply(&put("k1", "v3")));
    }
    assert_eq!(a.hash_kv(0), b.hash_kv(0));
    let (h4, rev, compacted) = a.hash_kv(0).expect("hash");
    assert_eq!((rev, compacted), (4, 0));
    // A hash at an earlier revision ignores later versions.
    ok(a.apply(&put("k3", "later")));
    assert_eq!(a.hash_kv(4).expect("hash").0, h4);
    assert_ne!(a.hash_kv(0).expect("hash").0, h4);
    // The same keys with one value differing: another hash.
    ok(b.apply(&put("k3", "LATER")));
    assert_ne!(a.hash_kv(5), b.hash_kv(5));
    assert_eq!(a.hash_kv(6), Err(Error::FutureRevision));
    ok(a.apply(&Command {
        kind: Some(command::Kind::Compact(pb::CompactionRequest {
            revision: 3,
            physical: false,
        })),
    }));
    assert_eq!(a.hash_kv(2), Err(Error::Compacted));
    assert_eq!(a.hash_kv(0).expect("hash").2, 3);
}

#[test]
fn state_format_1_reads_into_today_s_state() {
    // A backup written by format 1 (the committed fixture) decodes, with
    // no alarms, its 40 keys and its lease.
    let bytes = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/v1/backup-v1.snap"
    ))
    .expect("fixture");
    let s = crate::backup::decode(&bytes).expect("decode v1").status();
    assert_eq!(s.revision, 47);
    assert_eq!(s.leases, 1);
    assert_eq!(s.alarms, 0);
    assert!(s.total_keys >= 40, "{s:?}");
}
