//! Property tests of the state machine against a model (a map of key to
//! value and version per revision), and of the decoders of what the store
//! reads from disk and peers: random input never panics.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;

#[derive(Clone, Debug)]
enum Op {
    Put(u8, u8),
    Delete(u8),
    DeletePrefix,
    /// Compact at this fraction (0-255) of the way from the compaction
    /// point to the current revision.
    Compact(u8),
    /// Put `k`=`v` if `k`'s value is `if_v`, else delete `k`.
    CasTxn(u8, u8, u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..6, 0u8..4).prop_map(|(k, v)| Op::Put(k, v)),
        2 => (0u8..6).prop_map(Op::Delete),
        1 => Just(Op::DeletePrefix),
        1 => any::<u8>().prop_map(Op::Compact),
        2 => (0u8..6, 0u8..4, 0u8..4).prop_map(|(k, v, w)| Op::CasTxn(k, v, w)),
    ]
}

fn key(k: u8) -> Vec<u8> {
    format!("k/{k}").into_bytes()
}

fn value(v: u8) -> Vec<u8> {
    format!("v{v}").into_bytes()
}

/// The model: per key (value, create revision, version).
type Model = BTreeMap<Vec<u8>, (Vec<u8>, i64, i64)>;

fn put_cmd(k: &[u8], v: &[u8]) -> Command {
    Command {
        kind: Some(command::Kind::Put(pb::PutRequest {
            key: k.to_vec(),
            value: v.to_vec(),
            ..Default::default()
        })),
    }
}

fn all_at(m: &Mvcc, rev: i64) -> Result<Model> {
    let r = m.range(&pb::RangeRequest {
        key: b"k/".to_vec(),
        range_end: b"k0".to_vec(),
        revision: rev,
        ..Default::default()
    })?;
    Ok(r.kvs
        .into_iter()
        .map(|kv| (kv.key, (kv.value, kv.create_revision, kv.version)))
        .collect())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Every write matches the model; the revision moves by one per write
    /// that changed something; every revision since the compaction point
    /// reads as the model did then; the state survives encoding.
    #[test]
    fn mvcc_matches_a_model(ops in proptest::collection::vec(op(), 1..60)) {
        let mut m = Mvcc::default();
        let mut model = Model::new();
        let mut history: BTreeMap<i64, Model> = BTreeMap::new();
        history.insert(m.revision(), model.clone());
        for op in ops {
            let before = m.revision();
            let next = before + 1;
            let mut changed = false;
            match op {
                Op::Put(k, v) => {
                    m.apply(&put_cmd(&key(k), &value(v)));
                    let e = model.entry(key(k)).or_insert((Vec::new(), next, 0));
                    e.0 = value(v);
                    e.2 += 1;
                    changed = true;
                }
                Op::Delete(k) => {
                    m.apply(&Command {
                        kind: Some(command::Kind::DeleteRange(pb::DeleteRangeRequest {
                            key: key(k),
                            ..Default::default()
                        })),
                    });
                    changed = model.remove(&key(k)).is_some();
                }
                Op::DeletePrefix => {
                    m.apply(&Command {
                        kind: Some(command::Kind::DeleteRange(pb::DeleteRangeRequest {
                            key: b"k/".to_vec(),
                            range_end: b"k0".to_vec(),
                            ..Default::default()
                        })),
                    });
                    changed = !model.is_empty();
                    model.clear();
                }
                Op::Compact(f) => {
                    let lo = m.compacted_revision();
                    let rev = lo + (i64::from(f) * (before - lo)) / 255;
                    let r = m.apply(&Command {
                        kind: Some(command::Kind::Compact(pb::CompactionRequest {
                            revision: rev,
                            physical: false,
                        })),
                    });
                    if rev > lo {
                        prop_assert!(!matches!(r.kind, Some(command_result::Kind::Error(_))));
                        history.retain(|r, _| *r >= rev);
                    }
                }
                Op::CasTxn(k, if_v, v) => {
                    let txn = pb::TxnRequest {
                        compare: vec![pb::Compare {
                            key: key(k),
                            result: compare::CompareResult::Equal as i32,
                            target: compare::CompareTarget::Value as i32,
                            target_union: Some(compare::TargetUnion::Value(value(if_v))),
                            ..Default::default()
                        }],
                        success: vec![pb::RequestOp {
                            request: Some(request_op::Request::RequestPut(pb::PutRequest {
                                key: key(k),
                                value: value(v),
                                ..Default::default()
                            })),
                        }],
                        failure: vec![pb::RequestOp {
                            request: Some(request_op::Request::RequestDeleteRange(
                                pb::DeleteRangeRequest {
                                    key: key(k),
                                    ..Default::default()
                                },
                            )),
                        }],
                    };
                    m.apply(&Command { kind: Some(command::Kind::Txn(txn)) });
                    if model.get(&key(k)).is_some_and(|e| e.0 == value(if_v)) {
                        let e = model.entry(key(k)).or_insert((Vec::new(), next, 0));
                        e.0 = value(v);
                        e.2 += 1;
                        changed = true;
                    } else {
                        changed = model.remove(&key(k)).is_some();
                    }
                }
            }
            prop_assert_eq!(m.revision(), if changed { next } else { before });
            history.insert(m.revision(), model.clone());
            prop_assert_eq!(&all_at(&m, 0)?, &model);
        }
        for (rev, want) in &history {
            if *rev >= m.compacted_revision() {
                prop_assert_eq!(&all_at(&m, *rev)?, want, "at revision {}", rev);
            } else {
                prop_assert_eq!(all_at(&m, *rev), Err(Error::Compacted));
            }
        }
        let bytes = crate::raft::codec::encode_as(crate::raft::codec::FORMAT_V2, &m)
            .map_err(TestCaseError::fail)?;
        let (_, body) = crate::raft::codec::split(&bytes).map_err(TestCaseError::fail)?;
        let back: Mvcc = crate::raft::codec::decode_body(body).map_err(TestCaseError::fail)?;
        prop_assert_eq!(back, m);
    }

    /// Random bytes, and a real backup cut or flipped anywhere, are
    /// refused with an error, never a panic.
    #[test]
    fn backup_decoding_never_panics(
        junk in proptest::collection::vec(any::<u8>(), 0..2048),
        cut in any::<prop::sample::Index>(),
        flip in any::<prop::sample::Index>(),
    ) {
        let _ = crate::backup::decode(&junk);
        let mut with_magic = crate::backup::MAGIC.to_vec();
        with_magic.extend_from_slice(&junk);
        let _ = crate::backup::decode(&with_magic);
        let mut m = Mvcc::default();
        m.apply(&put_cmd(b"a", b"1"));
        let good = crate::backup::encode(m, "p", 1, 0).map_err(TestCaseError::fail)?;
        prop_assert!(crate::backup::decode(&good[..cut.index(good.len())]).is_err());
        let mut bad = good.clone();
        let i = flip.index(bad.len());
        bad[i] ^= 0x5a;
        prop_assert!(crate::backup::decode(&bad).is_err());
    }

    /// The codec refuses what it cannot read instead of panicking, for
    /// every record type read from disk or the peer wire.
    #[test]
    fn codec_decoding_never_panics(junk in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = crate::raft::codec::decode::<Mvcc>(&junk);
        let _ = crate::raft::codec::decode::<openraft::Entry<crate::raft::TypeConfig>>(&junk);
        let _ = crate::raft::codec::decode::<openraft::Vote<u64>>(&junk);
        let _ = crate::raft::codec::decode::<crate::raft::Request>(&junk);
    }
}
