//! The API server against a 3-replica cluster of real processes, through
//! the SDK: CRUD, conflicts, validation, selectors, pagination, graceful
//! deletion, finalizers, namespaces, authentication and authorization,
//! watches that resume across a SIGKILLed replica, SDK failover, leader
//! election, metrics and cluster status.

use crate::common;

use std::time::Duration;

use common::ProcCluster;
use common::{eventually, fixtures, serial, start_cluster};
use futures::StreamExt;
use keelson_sdk::types::{self as v1};
use keelson_sdk::{
    watcher, Api, Client, Config, DeleteParams, Error, Event, LeaderElector, ListParams, Resource,
};

fn client(c: &ProcCluster, token: &str) -> Client {
    c.client_as(token).expect("client")
}

fn admin(c: &ProcCluster) -> Client {
    client(c, &c.token("admin", None))
}

/// A `builtin/sleep` pod, no namespace (the API path gives it).
fn pod(name: &str, labels: &[(&str, &str)], node: &str) -> v1::Pod {
    fixtures::pod(name)
        .no_namespace()
        .labels(labels)
        .node(node)
        .build()
}

/// Wait until the API answers (the system namespaces exist).
async fn wait_api(c: &ProcCluster) {
    let ns: Api<v1::Namespace> = Api::all(admin(c));
    eventually(Duration::from_secs(20), "namespace default exists", || {
        let ns = ns.clone();
        async move { ns.get("default").await.is_ok() }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_and_update_compare_revisions() {
    let _g = serial().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let c = start_cluster(3, dir.path(), &[]).await;
    wait_api(&c).await;
    let cl = admin(&c);
    let deps: Api<v1::Deployment> = Api::namespaced(cl.clone(), "default");

    // Create: server-set metadata and defaults.
    let d = deps
        .create(&fixtures::deployment("web", 2).build())
        .await
        .expect("create");
    let m = d.meta().clone();
    assert!(!m.uid.is_empty() && !m.creation_timestamp.is_empty());
    assert_eq!(m.generation, 1);
    let rv1: i64 = m.resource_version.parse().expect("numeric resourceVersion");
    let strategy = d
        .spec
        .as_ref()
        .and_then(|s| s.strategy.clone())
        .expect("defaulted strategy");
    assert_eq!(strategy.r#type, "RollingUpdate");
    assert_eq!(
        strategy.rolling_update.map(|r| r.max_surge),
        Some("25%".into())
    );
    assert!(matches!(
        deps.create(&fixtures::deployment("web", 2).build()).await,
        Err(Error::AlreadyExists(_))
    ));

    // Update: compare-and-swap on resourceVersion; generation on spec only.
    let mut newer = d.clone();
    newer.spec.as_mut().expect("spec").replicas = Some(3);
    let d2 = deps.update(&newer).await.expect("update");
    assert_eq!(d2.meta().generation, 2);
    assert!(d2.meta().resource_version.parse::<i64>().expect("rv") > rv1);
    let stale = deps.update(&newer).await;
    assert!(matches!(stale, Err(Error::Conflict(_))), "{stale:?}");
    let mut st = d2.clone();
    st.status = Some(v1::DeploymentStatus {
        replicas: 3,
        ..Default::default()
    });
    st.spec.as_mut().expect("spec").replicas = Some(9); // ignored by the status verb
    let d3 = deps.update_status(&st).await.expect("update status");
    assert_eq!(d3.meta().generation, 2);
    assert_eq!(d3.spec.as_ref().and_then(|s| s.replicas), Some(3));
    assert_eq!(d3.status.as_ref().map(|s| s.replicas), Some(3));
    let got = deps.get("web").await.expect("get");
    assert_eq!(got, d3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validation_lists_every_problem() {
    let _g = serial().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let c = start_cluster(3, dir.path(), &[]).await;
    wait_api(&c).await;
    let cl = admin(&c);

    // Validation lists every problem.
    let pods: Api<v1::Pod> = Api::namespaced(cl.clone(), "default");
    let mut bad = pod("Bad_Name", &[], "");
    if let Some(s) = bad.spec.as_mut() {
        s.containers[0].image.clear();
        s.containers[0].ports.push(v1::ContainerPort {
            container_port: 70000,
            ..Default::default()
        });
    }
    match pods.create(&bad).await {
        Err(Error::Invalid(msg)) => {
            assert!(msg.contains("metadata.name"), "{msg}");
            assert!(msg.contains("image"), "{msg}");
            assert!(msg.contains("containerPort"), "{msg}");
        }
        other => panic!("expected invalid, got {other:?}"),
    }
    let nowhere: Api<v1::Pod> = Api::namespaced(cl.clone(), "nowhere");
    assert!(matches!(
        nowhere.create(&pod("p", &[], "")).await,
        Err(Error::NotFound(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn selectors_pagination_and_graceful_deletion() {
    let _g = serial().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let c = start_cluster(3, dir.path(), &[]).await;
    wait_api(&c).await;
    let cl = admin(&c);
    let pods: Api<v1::Pod> = Api::namespaced(cl.clone(), "default");

    // Selectors and pagination.
    for i in 0..5 {
        let tier = if i % 2 == 0 { "front" } else { "back" };
        let node = if i < 2 { "n1" } else { "" };
        pods.create(&pod(&format!("p{i}"), &[("tier", tier)], node))
            .await
            .expect("create pod");
    }
    let front = pods
        .list(&ListParams::default().labels("tier=front"))
        .await
        .expect("list");
    assert_eq!(front.items.len(), 3);
    let not_front = pods
        .list(&ListParams::default().labels("tier notin (front),tier"))
        .await
        .expect("list");
    assert_eq!(not_front.items.len(), 2);
    let on_n1 = pods
        .list(&ListParams::default().fields("spec.nodeName=n1"))
        .await
        .expect("list");
    assert_eq!(on_n1.items.len(), 2);
    assert!(matches!(
        pods.list(&ListParams::default().fields("spec.bogus=1"))
            .await,
        Err(Error::Invalid(_))
    ));
    let mut names = Vec::new();
    let mut p = ListParams::default().limit(2);
    let mut pages = 0;
    loop {
        let page = pods.list(&p).await.expect("page");
        pages += 1;
        names.extend(page.items.iter().map(|x| x.meta().name.clone()));
        if page.continue_token.is_empty() {
            break;
        }
        p.continue_token = page.continue_token;
    }
    assert_eq!(pages, 3);
    assert_eq!(names, ["p0", "p1", "p2", "p3", "p4"]);

    // Graceful deletion: unbound pods go at once; bound ones wait for
    // their node (a delete with grace 0).
    let (_, gone) = pods
        .delete("p2", &DeleteParams::default())
        .await
        .expect("delete");
    assert!(gone);
    assert!(matches!(pods.get("p2").await, Err(Error::NotFound(_))));
    let (marked, gone) = pods
        .delete("p0", &DeleteParams::default())
        .await
        .expect("delete");
    assert!(!gone);
    assert!(!marked.meta().deletion_timestamp.is_empty());
    assert_eq!(marked.meta().deletion_grace_period_seconds, Some(30));
    assert!(pods.get("p0").await.is_ok());
    let confirm = DeleteParams {
        grace_period_seconds: Some(0),
        ..Default::default()
    };
    let (_, gone) = pods.delete("p0", &confirm).await.expect("confirm");
    assert!(gone);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finalizers_and_namespace_deletion() {
    let _g = serial().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let c = start_cluster(3, dir.path(), &[]).await;
    wait_api(&c).await;
    let cl = admin(&c);

    // Finalizers hold an object until the last one is removed.
    let svcs: Api<v1::Service> = Api::namespaced(cl.clone(), "default");
    let mut svc = v1::Service {
        metadata: fixtures::meta("held", &[]),
        spec: Some(v1::ServiceSpec {
            ports: vec![v1::ServicePort {
                port: 80,
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    };
    svc.meta_mut().finalizers = vec!["example.com/hold".into()];
    svcs.create(&svc).await.expect("create service");
    let (held, gone) = svcs
        .delete("held", &DeleteParams::default())
        .await
        .expect("delete");
    assert!(!gone && !held.meta().deletion_timestamp.is_empty());
    let mut release = svcs.get("held").await.expect("still there");
    release.meta_mut().finalizers.clear();
    svcs.update(&release).await.expect("remove finalizer");
    assert!(matches!(svcs.get("held").await, Err(Error::NotFound(_))));

    // Deleting a namespace deletes what is in it.
    let nss: Api<v1::Namespace> = Api::all(cl.clone());
    nss.create(&v1::Namespace {
        metadata: fixtures::meta("team", &[]),
        ..Default::default()
    })
    .await
    .expect("create namespace");
    let team: Api<v1::Pod> = Api::namespaced(cl.clone(), "team");
    team.create(&pod("t1", &[], ""))
        .await
        .expect("create in team");
    let (ns, gone) = nss
        .delete("team", &DeleteParams::default())
        .await
        .expect("delete ns");
    assert!(!gone);
    assert_eq!(ns.status.map(|s| s.phase), Some("Terminating".into()));
    assert!(matches!(
        nss.delete("default", &DeleteParams::default()).await,
        Err(Error::Forbidden(_))
    ));
    eventually(
        Duration::from_secs(15),
        "namespace team and its pod gone",
        || {
            let (nss, team) = (nss.clone(), team.clone());
            async move {
                matches!(nss.get("team").await, Err(Error::NotFound(_)))
                    && matches!(team.get("t1").await, Err(Error::NotFound(_)))
            }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authentication_and_authorization() {
    let _g = serial().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let c = start_cluster(3, dir.path(), &[]).await;
    wait_api(&c).await;
    let admin_pods: Api<v1::Pod> = Api::namespaced(admin(&c), "default");
    admin_pods
        .create(&pod("on-n1", &[], "n1"))
        .await
        .expect("create");
    admin_pods
        .create(&pod("on-n2", &[], "n2"))
        .await
        .expect("create");

    let anonymous: Api<v1::Pod> = Api::namespaced(client(&c, ""), "default");
    assert!(matches!(
        anonymous.get("on-n1").await,
        Err(Error::Unauthenticated(_))
    ));
    let forged: Api<v1::Pod> = Api::namespaced(client(&c, "not-a-real-token-at-all"), "default");
    assert!(matches!(
        forged.list(&ListParams::default()).await,
        Err(Error::Unauthenticated(_))
    ));

    let viewer: Api<v1::Pod> = Api::namespaced(client(&c, &c.token("viewer", None)), "default");
    assert_eq!(
        viewer
            .list(&ListParams::default())
            .await
            .expect("viewer lists")
            .items
            .len(),
        2
    );
    assert!(matches!(
        viewer.create(&pod("v", &[], "")).await,
        Err(Error::Forbidden(_))
    ));
    assert!(matches!(
        viewer.delete("on-n1", &DeleteParams::default()).await,
        Err(Error::Forbidden(_))
    ));

    let n1 = client(&c, &c.token("node", Some("n1")));
    let n1_pods: Api<v1::Pod> = Api::namespaced(n1.clone(), "default");
    let mut mine = n1_pods.get("on-n1").await.expect("node reads");
    mine.status = Some(v1::PodStatus {
        phase: "Running".into(),
        ..Default::default()
    });
    n1_pods
        .update_status(&mine)
        .await
        .expect("node updates its own pod");
    let mut theirs = n1_pods.get("on-n2").await.expect("node reads");
    theirs.status = Some(v1::PodStatus {
        phase: "Failed".into(),
        ..Default::default()
    });
    assert!(matches!(
        n1_pods.update_status(&theirs).await,
        Err(Error::Forbidden(_))
    ));
    assert!(matches!(
        n1_pods.create(&pod("x", &[], "n1")).await,
        Err(Error::Forbidden(_))
    ));
    let nodes: Api<v1::Node> = Api::all(n1);
    let node = |name: &str| v1::Node {
        metadata: fixtures::meta(name, &[]),
        ..Default::default()
    };
    nodes
        .create(&node("n1"))
        .await
        .expect("node registers itself");
    assert!(matches!(
        nodes.create(&node("n2")).await,
        Err(Error::Forbidden(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_resumes_across_a_killed_replica() {
    let _g = serial().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut c = start_cluster(3, dir.path(), &[]).await;
    wait_api(&c).await;
    let watch_client = admin(&c);
    let pods: Api<v1::Pod> = Api::namespaced(watch_client.clone(), "default");
    let mut events = Box::pin(watcher(pods, ListParams::default()));
    match tokio::time::timeout(Duration::from_secs(10), events.next()).await {
        Ok(Some(Ok(Event::Restarted(items)))) => assert!(items.is_empty()),
        other => panic!("expected the initial list, got {other:?}"),
    }
    let victim = c
        .members
        .iter()
        .position(|m| m.api_endpoint() == watch_client.current_endpoint())
        .expect("watch endpoint is a member");
    const PODS: usize = 120;
    let writer_api: Api<v1::Pod> = Api::namespaced(admin(&c), "default");
    let writer = tokio::spawn(async move {
        for i in 0..PODS {
            let name = format!("w{i:03}");
            // A create whose replica died mid-call has an unknown outcome:
            // the SDK does not repeat it; the writer checks and retries.
            for attempt in 0.. {
                match writer_api.create(&pod(&name, &[], "")).await {
                    Ok(_) => break,
                    Err(Error::AlreadyExists(_)) if attempt > 0 => break,
                    Err(Error::Unavailable(_)) if attempt < 20 => {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    Err(e) => return Err(format!("create {name}: {e}")),
                }
            }
        }
        Ok::<(), String>(())
    });
    let mut seen: Vec<(String, i64)> = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut killed = false;
    while seen.len() < PODS {
        let ev = tokio::time::timeout_at(deadline, events.next())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "timed out with {} of {PODS} events (writer finished: {})",
                    seen.len(),
                    writer.is_finished()
                )
            })
            .expect("watcher ended");
        match ev.expect("watch event") {
            Event::Applied(p) => {
                let rv = p.meta().resource_version.parse::<i64>().expect("rv");
                seen.push((p.meta().name.clone(), rv));
            }
            other => panic!("unexpected event {other:?}"),
        }
        if seen.len() == PODS / 3 && !killed {
            c.kill(victim);
            killed = true;
        }
    }
    writer.await.expect("writer task").expect("writer");
    assert!(killed);
    let names: Vec<String> = seen.iter().map(|(n, _)| n.clone()).collect();
    let want: Vec<String> = (0..PODS).map(|i| format!("w{i:03}")).collect();
    assert_eq!(names, want, "every create exactly once, in order");
    assert!(
        seen.windows(2).all(|w| w[0].1 < w[1].1),
        "revisions increase"
    );
    // Nothing more arrives (no duplicates after the resume).
    if let Ok(Some(ev)) = tokio::time::timeout(Duration::from_millis(1500), events.next()).await {
        panic!("unexpected extra event {ev:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_failover_leader_election_metrics_status_and_expiry() {
    let _g = serial().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut c = start_cluster(3, dir.path(), &["--auto-compaction-retention", "1"]).await;
    wait_api(&c).await;
    let cl = admin(&c);

    // Two candidates; exactly one leads.
    let (mut a, task_a) = LeaderElector::new(admin(&c), "kube-system", "demo", "a")
        .ttl(2)
        .spawn();
    let (mut b, task_b) = LeaderElector::new(admin(&c), "kube-system", "demo", "b")
        .ttl(2)
        .spawn();
    eventually(Duration::from_secs(10), "a leader", || {
        let (x, y) = (a.borrow().leading, b.borrow().leading);
        async move { x ^ y }
    })
    .await;
    let leases: Api<v1::Lease> = Api::namespaced(cl.clone(), "kube-system");
    let lock = leases.get("demo").await.expect("lock object");
    let holder = lock.spec.map(|s| s.holder_identity).unwrap_or_default();
    let (leader_task, mut follower) = if a.borrow().leading {
        assert_eq!(holder, "a");
        (task_a, b.clone())
    } else {
        assert_eq!(holder, "b");
        (task_b, a.clone())
    };
    // The leader's process stops renewing: the other takes over after the TTL.
    leader_task.abort();
    tokio::time::timeout(Duration::from_secs(10), follower.wait_for(|l| l.leading))
        .await
        .expect("takeover in time")
        .expect("elector alive");
    let _ = a.borrow_and_update();
    let _ = b.borrow_and_update();

    // SDK failover: with a replica killed, calls still succeed.
    let pods: Api<v1::Pod> = Api::namespaced(cl.clone(), "default");
    c.kill(0);
    for i in 0..10 {
        pods.create(&pod(&format!("f{i}"), &[], ""))
            .await
            .expect("create after a kill");
        pods.get(&format!("f{i}")).await.expect("get after a kill");
    }

    // Metrics on a live replica, after it served a request.
    let one = Client::new(&Config::new(
        vec![c.members[1].api_endpoint()],
        c.token("admin", None),
    ))
    .expect("client");
    Api::<v1::Pod>::namespaced(one, "default")
        .get("f0")
        .await
        .expect("get on replica 2");
    let port = c.members[1].metrics_port;
    let body = http_get(port, "/metrics").await;
    for name in [
        "keelson_raft_term",
        "keelson_raft_applied_index",
        "keelson_raft_commit_index",
        "keelson_raft_is_leader",
        "keelson_store_db_size_bytes",
        "keelson_apiserver_requests_total{",
        "keelson_apiserver_request_duration_seconds_bucket{",
        "keelson_apiserver_watchers",
    ] {
        assert!(body.contains(name), "metrics lack {name}:\n{body}");
    }
    // The write path's stage timings: this replica flushed its log and
    // applied entries for the creates above (as leader or follower).
    for name in [
        "keelson_store_wal_fsync_duration_seconds_count",
        "keelson_store_apply_duration_seconds_count",
    ] {
        let count: f64 = body
            .lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("metrics lack {name}:\n{body}"));
        assert!(count > 0.0, "{name} is {count}");
    }

    // Cluster status: three replicas, one unreachable, one leader.
    let status = keelson_proto::api::cluster_client::ClusterClient::new(
        common::channel(&c.members[1].api_endpoint()).expect("channel"),
    )
    .status(cl.request(keelson_proto::api::ClusterStatusRequest {}, None))
    .await
    .expect("status")
    .into_inner();
    assert_eq!(status.replicas.len(), 3);
    assert_eq!(status.replicas.iter().filter(|r| r.leader).count(), 1);
    assert_eq!(
        status
            .replicas
            .iter()
            .filter(|r| !r.error.is_empty())
            .count(),
        1
    );

    // History older than the retention is compacted: an old watch must relist.
    tokio::time::sleep(Duration::from_secs(3)).await;
    pods.create(&pod("late", &[], "")).await.expect("create");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let r = pods.watch(&ListParams::default(), "1").await;
    let err = match r {
        Err(e) => e,
        Ok(s) => {
            let mut s = Box::pin(s);
            match tokio::time::timeout(Duration::from_secs(5), s.next()).await {
                Ok(Some(Err(e))) => e,
                other => panic!("expected an expired error, got {other:?}"),
            }
        }
    };
    assert!(matches!(err, Error::Expired(_)), "{err:?}");
    assert!(err.to_string().contains("relist"), "{err}");
}

async fn http_get(port: u16, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect metrics");
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).await.expect("read");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_on_the_api_and_mutual_tls_between_replicas() {
    let _g = serial().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let certs = dir.path().join("certs");
    let out = std::process::Command::new(common::keelson_bin())
        .args(["certs", "--dir"])
        .arg(&certs)
        .output()
        .expect("run keelson certs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let p = |f: &str| certs.join(f).display().to_string();
    let (cert, key, ca) = (p("server.pem"), p("server-key.pem"), p("ca.pem"));
    let c = start_cluster(
        3,
        &dir.path().join("cluster"),
        &["--tls-cert", &cert, "--tls-key", &key, "--tls-ca", &ca],
    )
    .await;
    let https: Vec<String> = c
        .members
        .iter()
        .map(|m| format!("https://127.0.0.1:{}", m.api_port))
        .collect();
    let mut config = Config::new(https.clone(), c.token("admin", None));
    config.ca = ca.clone();
    let secure = Client::new(&config).expect("TLS client");
    let ns: Api<v1::Namespace> = Api::all(secure.clone());
    eventually(Duration::from_secs(20), "API over TLS", || {
        let ns = ns.clone();
        async move { ns.get("default").await.is_ok() }
    })
    .await;
    // Writes replicate over mutual TLS between the replicas.
    let pods: Api<v1::Pod> = Api::namespaced(secure, "default");
    pods.create(&pod("secure", &[], ""))
        .await
        .expect("create over TLS");
    for e in &https {
        let mut one = Config::new(vec![e.clone()], c.token("admin", None));
        one.ca = ca.clone();
        let api: Api<v1::Pod> = Api::namespaced(Client::new(&one).expect("client"), "default");
        api.get("secure").await.expect("read on every replica");
    }
    // Plaintext is refused, and https without the CA is a config error.
    let plain: Api<v1::Pod> = Api::namespaced(admin(&c), "default");
    assert!(plain.get("secure").await.is_err());
    assert!(Client::new(&Config::new(https, "x")).is_err());
}

/// 3 replicas (store and API only) whose peer traffic goes through a fault
/// layer the test controls, healthy and answering; and the proxies' tasks.
async fn start_partitionable(
    dir: &std::path::Path,
) -> (
    ProcCluster,
    keelson_testkit::faultnet::FaultNet,
    Vec<tokio::task::JoinHandle<()>>,
) {
    let octet: u8 = 20 + (std::process::id() % 100) as u8 * 2;
    let c = ProcCluster::start_proxied(
        common::Program::Keelson {
            bin: common::keelson_bin(),
            extra_args: vec!["--disable-scheduler".into(), "--disable-controllers".into()],
        },
        3,
        dir,
        octet,
    )
    .expect("start cluster");
    let net = keelson_testkit::faultnet::FaultNet::new();
    let (pairs, sources) = c.peer_proxies();
    let sources = std::sync::Arc::new(sources);
    let mut proxies = Vec::new();
    for (i, (listen, upstream)) in pairs.into_iter().enumerate() {
        proxies.push(
            net.proxy(i, listen, upstream, sources.clone())
                .await
                .expect("proxy"),
        );
    }
    c.wait_healthy(Duration::from_secs(30))
        .await
        .expect("healthy");
    wait_api(&c).await;
    (c, net, proxies)
}

/// A leader cut off from the others must not renew leases in its own
/// memory (the old behaviour): meanwhile a new leader runs the leases'
/// clocks down, and a leadership lease would have two holders acting at
/// once. Found by `keelson chaos` (two controller managers, a ReplicaSet
/// beyond its surge).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_cut_off_renews_no_lease() {
    use keelson_proto::etcdserverpb::lease_client::LeaseClient;
    use keelson_proto::etcdserverpb::{LeaseGrantRequest, LeaseKeepAliveRequest};
    let _g = serial().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (c, net, proxies) = start_partitionable(dir.path()).await;
    let leader = c.leader().await.expect("a leader");
    let mut lease =
        LeaseClient::new(common::channel(&c.members[leader].endpoint()).expect("channel"));
    let granted = lease
        .lease_grant(LeaseGrantRequest { ttl: 5, id: 0 })
        .await
        .expect("grant")
        .into_inner();
    let keep_alive = |lease: &mut LeaseClient<tonic::transport::Channel>| {
        let mut lease = lease.clone();
        async move {
            let (tx, rx) = tokio::sync::mpsc::channel(1);
            tx.send(LeaseKeepAliveRequest { id: granted.id })
                .await
                .ok()?;
            let mut s = lease
                .lease_keep_alive(tokio_stream::wrappers::ReceiverStream::new(rx))
                .await
                .ok()?
                .into_inner();
            let r = tokio::time::timeout(Duration::from_secs(3), s.next()).await;
            r.ok()??.ok().map(|r| r.ttl)
        }
    };
    assert_eq!(
        keep_alive(&mut lease).await,
        Some(5),
        "renewed while healthy"
    );
    net.isolate(leader, 3);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let renewed = keep_alive(&mut lease).await;
    assert!(
        renewed.is_none_or(|ttl| ttl <= 0),
        "a leader cut off from the others renewed a lease: ttl {renewed:?}"
    );
    net.heal();
    for p in proxies {
        p.abort();
    }
}

/// A replica that has not applied an object's creation yet must not
/// answer an update of it with NotFound (it reads again after a barrier):
/// a follower cut off from the others misses a pod's creation; an update
/// of the pod's status sent to it succeeds once the partition heals.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_on_a_replica_behind_is_not_answered_not_found() {
    let _g = serial().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (c, net, proxies) = start_partitionable(dir.path()).await;
    let leader = c.leader().await.expect("a leader");
    let behind = (leader + 1) % 3;
    let token = c.token("admin", None);
    let only = |i: usize| {
        Client::new(&Config::new(vec![c.members[i].api_endpoint()], &token)).expect("client")
    };
    net.isolate(behind, 3);
    let at_leader: Api<v1::Pod> = Api::namespaced(only(leader), "default");
    let created = at_leader
        .create(&pod("late", &[], "n1"))
        .await
        .expect("create through the leader");
    let mut p = created.clone();
    p.status = Some(v1::PodStatus {
        phase: "Running".into(),
        ..Default::default()
    });
    let at_behind: Api<v1::Pod> = Api::namespaced(only(behind), "default");
    let update = tokio::spawn(async move { at_behind.update_status(&p).await });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    net.heal();
    let updated = tokio::time::timeout(Duration::from_secs(30), update)
        .await
        .expect("the update returns")
        .expect("join")
        .expect("the update succeeds on the replica that was behind");
    assert_eq!(
        updated.status.map(|s| s.phase).unwrap_or_default(),
        "Running"
    );
    for p in proxies {
        p.abort();
    }
}
