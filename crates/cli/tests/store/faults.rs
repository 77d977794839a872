//! Fault tests of the store with 3 real replica processes: SIGKILL of the
//! leader under continuous writes, a lagging replica caught up through a
//! snapshot, a full restart, and membership changes.

use crate::common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use keelson_proto::etcdserverpb::cluster_client::ClusterClient;
use keelson_proto::etcdserverpb::{MemberAddRequest, MemberListRequest, MemberRemoveRequest};

const TEST_TIMEOUT: Duration = Duration::from_secs(240);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_sigkill_under_writes_loses_no_acknowledged_write() {
    let _g = serial().await;
    let dir = tempfile::tempdir().unwrap();
    tokio::time::timeout(TEST_TIMEOUT, async {
        let mut c = start_cluster(3, dir.path(), &[]).await;
        let endpoints = c.endpoints();
        let acked: Arc<Mutex<BTreeMap<String, String>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let mut writers = Vec::new();
        for w in 0..6 {
            let endpoints = endpoints.clone();
            let acked = acked.clone();
            let stop = stop.clone();
            writers.push(tokio::spawn(async move {
                let mut seq = 0u64;
                let mut clients: Vec<_> = endpoints.iter().map(|e| kv(e)).collect();
                while !stop.load(Ordering::Relaxed) {
                    let key = format!("w/{w}/{seq:06}");
                    let value = format!("v{seq}");
                    let n = clients.len();
                    let client = &mut clients[(w + seq as usize) % n];
                    // Only a successful reply counts as acknowledged; an
                    // error leaves the outcome unknown, so it is not checked.
                    if put(client, &key, &value).await.is_ok() {
                        acked.lock().unwrap().insert(key, value);
                    }
                    seq += 1;
                }
            }));
        }
        let mut kills = 0;
        for _ in 0..4 {
            tokio::time::sleep(Duration::from_millis(1500)).await;
            let Some(leader) = c.leader().await else {
                continue;
            };
            c.kill(leader);
            kills += 1;
            tokio::time::sleep(Duration::from_millis(1500)).await;
            c.restart(leader).unwrap();
            c.wait_healthy(Duration::from_secs(30)).await.unwrap();
        }
        stop.store(true, Ordering::Relaxed);
        for w in writers {
            w.await.unwrap();
        }
        assert!(kills >= 3, "only {kills} leader kills happened");
        let acked = acked.lock().unwrap().clone();
        assert!(
            acked.len() > 100,
            "too few writes acknowledged: {}",
            acked.len()
        );

        // Every acknowledged write is on every replica.
        for e in &endpoints {
            let mut client = kv(e);
            let mut data = BTreeMap::new();
            eventually(
                Duration::from_secs(20),
                "replica applied everything",
                || {
                    let mut client = client.clone();
                    async move { dump(&mut client, false).await.is_ok() }
                },
            )
            .await;
            let (_, kvs) = dump(&mut client, false).await.unwrap();
            for (k, v, _) in kvs {
                data.insert(String::from_utf8(k).unwrap(), String::from_utf8(v).unwrap());
            }
            let missing: Vec<_> = acked
                .iter()
                .filter(|(k, v)| data.get(*k) != Some(v))
                .take(5)
                .collect();
            assert!(
                missing.is_empty(),
                "{e} lacks acknowledged writes, e.g. {missing:?}"
            );
        }
        // And the replicas agree with each other (serializable reads).
        let mut views = Vec::new();
        for e in &endpoints {
            let mut client = kv(e);
            let target = dump(&mut kv(&endpoints[0]), false).await.unwrap();
            eventually(Duration::from_secs(20), "replicas converge", || {
                let mut client = client.clone();
                let target = target.clone();
                async move {
                    dump(&mut client, true)
                        .await
                        .map(|d| d == target)
                        .unwrap_or(false)
                }
            })
            .await;
            views.push(dump(&mut client, true).await.unwrap());
        }
        assert!(views.windows(2).all(|w| w[0] == w[1]));
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lagging_replica_catches_up_through_a_snapshot() {
    let _g = serial().await;
    let dir = tempfile::tempdir().unwrap();
    tokio::time::timeout(TEST_TIMEOUT, async {
        let args = ["--snapshot-count", "50", "--snapshot-catchup-entries", "10"];
        let mut c = start_cluster(3, dir.path(), &args).await;
        let leader = c.leader().await.expect("a leader");
        let lagging = (leader + 1) % 3;
        c.kill(lagging);
        let mut client = kv(&c.members[leader].endpoint());
        let mut last_rev = 0;
        for i in 0..400 {
            last_rev = put(&mut client, &format!("lag/{i:04}"), &format!("v{i}"))
                .await
                .unwrap();
        }
        c.restart(lagging).unwrap();
        let mut follower = kv(&c.members[lagging].endpoint());
        eventually(Duration::from_secs(60), "lagging replica caught up", || {
            let mut f = follower.clone();
            async move {
                match get(&mut f, "lag/0399", true).await {
                    Ok(r) => r.kvs.first().map(|kv| kv.value == b"v399").unwrap_or(false),
                    Err(_) => false,
                }
            }
        })
        .await;
        let (rev, kvs) = dump(&mut follower, true).await.unwrap();
        assert!(rev >= last_rev);
        assert_eq!(
            kvs.iter()
                .filter(|(k, _, _)| k.starts_with(b"lag/"))
                .count(),
            400
        );
        let log = std::fs::read_to_string(&c.members[lagging].log_path).unwrap();
        assert!(
            log.contains("installed snapshot"),
            "the lagging replica should have caught up through a snapshot; its log:\n{log}"
        );
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_restart_keeps_every_key_and_revision() {
    let _g = serial().await;
    let dir = tempfile::tempdir().unwrap();
    tokio::time::timeout(TEST_TIMEOUT, async {
        let mut c = start_cluster(3, dir.path(), &["--snapshot-count", "100"]).await;
        let mut client = kv(&c.members[0].endpoint());
        for i in 0..300 {
            put(&mut client, &format!("r/{}", i % 120), &format!("v{i}"))
                .await
                .unwrap();
        }
        let before = dump(&mut client, false).await.unwrap();
        for i in 0..3 {
            c.kill(i);
        }
        for i in 0..3 {
            c.restart(i).unwrap();
        }
        c.wait_healthy(Duration::from_secs(30)).await.unwrap();
        for e in c.endpoints() {
            let after = dump(&mut kv(&e), false).await.unwrap();
            assert_eq!(after, before, "{e} after a full restart");
        }
        // The revision keeps counting from where it was. (A write may meet a
        // leader election right after the restart and be retried; the first
        // application of it is what counts.)
        eventually(Duration::from_secs(10), "a write after the restart", || {
            let mut c = client.clone();
            async move { put(&mut c, "r/after", "x").await.is_ok() }
        })
        .await;
        let after = get(&mut client, "r/after", false).await.unwrap();
        assert_eq!(after.kvs[0].create_revision, before.0 + 1);
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn member_add_then_remove() {
    let _g = serial().await;
    let dir = tempfile::tempdir().unwrap();
    tokio::time::timeout(TEST_TIMEOUT, async {
        let mut c = start_cluster(3, dir.path(), &[]).await;
        let mut client = kv(&c.members[0].endpoint());
        put(&mut client, "before-add", "1").await.unwrap();

        let (idx, peer_url) = c.prepare_member(dir.path()).unwrap();
        let mut cluster = ClusterClient::new(common::channel(&c.members[1].endpoint()).unwrap());
        let added = cluster
            .member_add(MemberAddRequest {
                peer_ur_ls: vec![peer_url.clone()],
                is_learner: false,
            })
            .await
            .unwrap()
            .into_inner();
        let new_id = added.member.unwrap().id;
        assert_eq!(added.members.len(), 4);
        // Adding the same URL again is refused with etcd's error.
        let again = cluster
            .member_add(MemberAddRequest {
                peer_ur_ls: vec![peer_url],
                is_learner: false,
            })
            .await
            .unwrap_err();
        assert_eq!(again.message(), "etcdserver: Peer URLs already exists");

        c.start_joining(idx).unwrap();
        let mut newcomer = kv(&c.members[idx].endpoint());
        eventually(
            Duration::from_secs(30),
            "the new member has the data",
            || {
                let mut n = newcomer.clone();
                async move {
                    get(&mut n, "before-add", true)
                        .await
                        .map(|r| r.kvs.len() == 1)
                        .unwrap_or(false)
                }
            },
        )
        .await;
        eventually(
            Duration::from_secs(30),
            "the new member published its name",
            || {
                let mut cl = cluster.clone();
                async move {
                    cl.member_list(MemberListRequest {})
                        .await
                        .map(|r| {
                            r.into_inner()
                                .members
                                .iter()
                                .any(|m| m.id == new_id && m.name == "m4")
                        })
                        .unwrap_or(false)
                }
            },
        )
        .await;

        // Remove an original member; the other three carry on.
        let list = cluster
            .member_list(MemberListRequest {})
            .await
            .unwrap()
            .into_inner();
        let victim = list.members.iter().find(|m| m.name == "m1").unwrap().id;
        cluster
            .member_remove(MemberRemoveRequest { id: victim })
            .await
            .unwrap();
        let list = cluster
            .member_list(MemberListRequest {})
            .await
            .unwrap()
            .into_inner();
        assert_eq!(list.members.len(), 3);
        assert!(list.members.iter().all(|m| m.id != victim));
        let missing = cluster
            .member_remove(MemberRemoveRequest { id: victim })
            .await
            .unwrap_err();
        assert_eq!(missing.message(), "etcdserver: member not found");
        c.kill(0);
        let survivor = kv(&c.members[2].endpoint());
        eventually(
            Duration::from_secs(20),
            "writes work without the removed member",
            || {
                let mut s = survivor.clone();
                async move { put(&mut s, "after-remove", "1").await.is_ok() }
            },
        )
        .await;
        assert_eq!(
            get(&mut newcomer, "after-remove", false)
                .await
                .unwrap()
                .kvs
                .len(),
            1
        );
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_leader_is_replaced_and_catches_up_after_resume() {
    let _g = serial().await;
    let dir = tempfile::tempdir().unwrap();
    tokio::time::timeout(TEST_TIMEOUT, async {
        let c = start_cluster(3, dir.path(), &[]).await;
        let leader = c.leader().await.expect("a leader");
        let others: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
        let mut client = kv(&c.members[others[0]].endpoint());
        put(&mut client, "before-pause", "1").await.unwrap();

        // SIGSTOP: the leader's sockets stay open, so only the election
        // timers can notice; the others must elect a new leader and go on.
        c.pause(leader, true);
        let mut acked = Vec::new();
        eventually(
            Duration::from_secs(15),
            "writes resume without the paused leader",
            || {
                let mut cl = client.clone();
                async move { put(&mut cl, "during-pause/0", "v").await.is_ok() }
            },
        )
        .await;
        acked.push("during-pause/0".to_string());
        for i in 1..50 {
            let key = format!("during-pause/{i}");
            if put(&mut client, &key, "v").await.is_ok() {
                acked.push(key);
            }
        }
        assert!(
            acked.len() > 40,
            "writes kept failing while the old leader was paused"
        );
        let new_leader = c.leader().await.expect("a new leader");
        assert_ne!(new_leader, leader);

        // SIGCONT: the old leader learns the new term, follows, and catches up.
        c.pause(leader, false);
        let mut old = kv(&c.members[leader].endpoint());
        eventually(
            Duration::from_secs(20),
            "the resumed replica has every acknowledged write",
            || {
                let mut o = old.clone();
                let last = acked.last().cloned().unwrap_or_default();
                async move {
                    get(&mut o, &last, true)
                        .await
                        .map(|r| r.kvs.len() == 1)
                        .unwrap_or(false)
                }
            },
        )
        .await;
        let (_, kvs) = dump(&mut old, false).await.unwrap();
        for k in &acked {
            assert!(
                kvs.iter().any(|(key, _, _)| key == k.as_bytes()),
                "{k} missing on the resumed replica"
            );
        }
        assert_eq!(
            get(&mut old, "before-pause", false)
                .await
                .unwrap()
                .kvs
                .len(),
            1
        );
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn learner_added_then_promoted() {
    let _g = serial().await;
    let dir = tempfile::tempdir().unwrap();
    tokio::time::timeout(TEST_TIMEOUT, async {
        let mut c = start_cluster(3, dir.path(), &[]).await;
        let mut client = kv(&c.members[0].endpoint());
        put(&mut client, "for-the-learner", "1").await.unwrap();
        let (idx, peer_url) = c.prepare_member(dir.path()).unwrap();
        let mut cluster = ClusterClient::new(common::channel(&c.members[2].endpoint()).unwrap());
        let added = cluster
            .member_add(MemberAddRequest {
                peer_ur_ls: vec![peer_url],
                is_learner: true,
            })
            .await
            .unwrap()
            .into_inner();
        let id = added.member.unwrap().id;
        c.start_joining(idx).unwrap();
        let learner = kv(&c.members[idx].endpoint());
        eventually(Duration::from_secs(30), "the learner replicates", || {
            let mut l = learner.clone();
            async move {
                get(&mut l, "for-the-learner", true)
                    .await
                    .map(|r| r.kvs.len() == 1)
                    .unwrap_or(false)
            }
        })
        .await;
        let is_learner = |members: &[keelson_proto::etcdserverpb::Member]| {
            members.iter().find(|m| m.id == id).map(|m| m.is_learner)
        };
        let list = cluster
            .member_list(MemberListRequest {})
            .await
            .unwrap()
            .into_inner();
        assert_eq!(is_learner(&list.members), Some(true));
        let promoted = cluster
            .member_promote(keelson_proto::etcdserverpb::MemberPromoteRequest { id })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(is_learner(&promoted.members), Some(false));
        let again = cluster
            .member_promote(keelson_proto::etcdserverpb::MemberPromoteRequest { id })
            .await
            .unwrap_err();
        assert_eq!(
            again.message(),
            "etcdserver: can only promote a learner member"
        );
    })
    .await
    .expect("test timed out");
}
