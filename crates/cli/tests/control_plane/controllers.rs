//! The scheduler and controllers as `keelson server` runs them (inside
//! every replica, one instance of each acting), against simulated nodes
//! (`keelson agent --simulate`, separate processes): a Deployment
//! converges, a rolling update never drops below `replicas -
//! maxUnavailable` ready pods nor goes beyond `replicas + maxSurge`, undo,
//! Endpoints, garbage collection; SIGKILL of the replica holding the
//! scheduler and controller leases; a node whose agent dies has its pods
//! recreated elsewhere.

use crate::common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::fixtures::{self, image_of, labels, node_of};
use common::{
    admin_client, eventually, run_cli, serial, simulated_nodes, spawn_client_process,
    start_control_plane, Procs,
};
use keelson_sdk::types::{self as v1};
use keelson_sdk::{Api, Client, DeleteParams, ListParams, Resource};

/// `replicas` pods of `image` labelled `app=<name>`, rolling one at a
/// time (maxSurge 1, maxUnavailable 1).
fn deployment(name: &str, replicas: i32, image: &str) -> v1::Deployment {
    fixtures::deployment(name, replicas)
        .image(image)
        .port("http", 8080)
        .rolling(1, 1)
        .build()
}

/// Ready and not being deleted.
fn is_ready(p: &v1::Pod) -> bool {
    p.meta().deletion_timestamp.is_empty() && keelson_model::pod::is_ready(p)
}

/// Pods of app `app` that are not being deleted.
async fn live_pods(cl: &Client, app: &str) -> Vec<v1::Pod> {
    let api: Api<v1::Pod> = Api::namespaced(cl.clone(), "default");
    match api
        .list(&ListParams::default().labels(&format!("app={app}")))
        .await
    {
        Ok(l) => l
            .items
            .into_iter()
            .filter(|p| p.meta().deletion_timestamp.is_empty())
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// The deployment's status says it has rolled out `replicas` of `image`,
/// and exactly that many live pods run that image, all ready.
async fn rolled_out(cl: &Client, name: &str, replicas: i32, image: &str) -> bool {
    let api: Api<v1::Deployment> = Api::namespaced(cl.clone(), "default");
    let Ok(d) = api.get(name).await else {
        return false;
    };
    let st = d.status.clone().unwrap_or_default();
    let pods = live_pods(cl, name).await;
    st.observed_generation == d.meta().generation
        && st.updated_replicas == replicas
        && st.available_replicas == replicas
        && st.replicas == replicas
        && pods.len() == replicas as usize
        && pods.iter().all(|p| image_of(p) == image && is_ready(p))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployment_rolls_out_within_its_bounds_undoes_and_is_collected() {
    let _g = serial().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let c = start_control_plane(3, &dir.path().join("cluster"), &[]).await;
    let _agents = simulated_nodes(&c, 3, "n", dir.path());
    let cl = admin_client(&c);
    let deployments: Api<v1::Deployment> = Api::namespaced(cl.clone(), "default");
    deployments
        .create(&deployment("web", 4, "builtin/http-echo:v1"))
        .await
        .expect("create deployment");
    eventually(
        Duration::from_secs(30),
        "web converges to 4 ready pods",
        || rolled_out(&cl, "web", 4, "builtin/http-echo:v1"),
    )
    .await;
    let nodes: BTreeSet<String> = live_pods(&cl, "web").await.iter().map(node_of).collect();
    assert!(nodes.len() >= 2, "pods spread over nodes: {nodes:?}");

    // A Service gets Endpoints listing the four ready pods.
    let services: Api<v1::Service> = Api::namespaced(cl.clone(), "default");
    services
        .create(&v1::Service {
            metadata: Some(v1::ObjectMeta {
                name: "web".into(),
                ..Default::default()
            }),
            spec: Some(v1::ServiceSpec {
                selector: labels(&[("app", "web")]),
                ports: vec![v1::ServicePort {
                    port: 80,
                    target_port: "http".into(),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .expect("create service");
    let endpoints: Api<v1::Endpoints> = Api::namespaced(cl.clone(), "default");
    eventually(
        Duration::from_secs(20),
        "endpoints list 4 ready pods on port 8080",
        || async {
            endpoints.get("web").await.is_ok_and(|e| {
                e.subsets.len() == 1
                    && e.subsets[0].addresses.len() == 4
                    && e.subsets[0]
                        .ports
                        .iter()
                        .map(|p| p.port)
                        .collect::<Vec<_>>()
                        == [8080]
            })
        },
    )
    .await;

    // Rolling update, watched by a sampler for its bounds.
    let violations = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (cl, violations, stop) = (cl.clone(), violations.clone(), stop.clone());
        tokio::spawn(async move {
            let mut samples = 0u32;
            while !stop.load(Ordering::Relaxed) {
                let pods = live_pods(&cl, "web").await;
                if !pods.is_empty() {
                    samples += 1;
                    let ready = pods.iter().filter(|p| is_ready(p)).count();
                    if ready < 3 {
                        violations
                            .lock()
                            .unwrap()
                            .push(format!("{ready} ready < 4 - 1"));
                    }
                    if pods.len() > 5 {
                        violations
                            .lock()
                            .unwrap()
                            .push(format!("{} pods > 4 + 1", pods.len()));
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            samples
        })
    };
    let mut d = deployments.get("web").await.expect("get");
    d.spec
        .as_mut()
        .unwrap()
        .template
        .as_mut()
        .unwrap()
        .spec
        .as_mut()
        .unwrap()
        .containers[0]
        .image = "builtin/http-echo:v2".into();
    deployments.update(&d).await.expect("update image");
    eventually(Duration::from_secs(60), "web rolls out v2", || {
        rolled_out(&cl, "web", 4, "builtin/http-echo:v2")
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    let samples = sampler.await.expect("sampler");
    let v = violations.lock().unwrap().clone();
    assert!(v.is_empty(), "rolling update out of bounds: {v:?}");
    assert!(samples > 10, "the sampler ran ({samples} samples)");

    // Two ReplicaSets, revisions 1 and 2; the old one scaled to 0.
    let rss: Api<v1::ReplicaSet> = Api::namespaced(cl.clone(), "default");
    let list = rss
        .list(&ListParams::default())
        .await
        .expect("list rs")
        .items;
    let mut revs: Vec<(String, i32)> = list
        .iter()
        .map(|rs| {
            (
                rs.meta()
                    .annotations
                    .get("deployment.kubernetes.io/revision")
                    .cloned()
                    .unwrap_or_default(),
                rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(-1),
            )
        })
        .collect();
    revs.sort();
    assert_eq!(revs, [("1".to_string(), 0), ("2".to_string(), 4)]);
    let (ok, text) = run_cli(&c, &["rollout", "history", "deployment/web"]);
    assert!(
        ok && text.contains("REVISION") && text.contains('2'),
        "{text}"
    );

    // Undo goes back to v1 (revision 3), and rollout status says so.
    let (ok, text) = run_cli(&c, &["rollout", "undo", "deployment/web"]);
    assert!(ok && text.contains("rolled back"), "{text}");
    let (ok, text) = run_cli(
        &c,
        &["rollout", "status", "deployment/web", "--timeout", "60s"],
    );
    assert!(ok && text.contains("successfully rolled out"), "{text}");
    eventually(Duration::from_secs(30), "web back on v1", || {
        rolled_out(&cl, "web", 4, "builtin/http-echo:v1")
    })
    .await;

    // Events from the controllers and the scheduler.
    let events: Api<v1::Event> = Api::namespaced(cl.clone(), "default");
    eventually(Duration::from_secs(10), "events were recorded", || async {
        let reasons: BTreeSet<String> = events
            .list(&ListParams::default())
            .await
            .map(|l| l.items.into_iter().map(|e| e.reason).collect())
            .unwrap_or_default();
        [
            "ScalingReplicaSet",
            "SuccessfulCreate",
            "SuccessfulDelete",
            "Scheduled",
        ]
        .iter()
        .all(|r| reasons.contains(*r))
    })
    .await;

    // Deleting the Deployment (background) collects its ReplicaSets and pods.
    deployments
        .delete("web", &DeleteParams::default())
        .await
        .expect("delete deployment");
    eventually(
        Duration::from_secs(30),
        "replicasets and pods collected",
        || async {
            rss.list(&ListParams::default())
                .await
                .is_ok_and(|l| l.items.is_empty())
                && live_pods(&cl, "web").await.is_empty()
        },
    )
    .await;
    // The Endpoints follow: no pods, no addresses.
    eventually(Duration::from_secs(20), "endpoints emptied", || async {
        endpoints
            .get("web")
            .await
            .is_ok_and(|e| e.subsets.iter().all(|s| s.addresses.is_empty()))
    })
    .await;
}

/// The replica holding `name`'s leadership lease.
pub(crate) async fn holder(cl: &Client, name: &str) -> Option<String> {
    let leases: Api<v1::Lease> = Api::namespaced(cl.clone(), "kube-system");
    leases
        .get(name)
        .await
        .ok()
        .and_then(|l| l.spec.map(|s| s.holder_identity))
        .filter(|h| !h.is_empty())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_replica_takes_over_after_the_lease_holder_is_killed() {
    let _g = serial().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut c = start_control_plane(3, &dir.path().join("cluster"), &[]).await;
    let _agents = simulated_nodes(&c, 2, "n", dir.path());
    let cl = admin_client(&c);
    let deployments: Api<v1::Deployment> = Api::namespaced(cl.clone(), "default");
    deployments
        .create(&deployment("api", 2, "builtin/sleep"))
        .await
        .expect("create deployment");
    eventually(Duration::from_secs(30), "api converges", || {
        rolled_out(&cl, "api", 2, "builtin/sleep")
    })
    .await;
    // A sampler checks the ReplicaSet never overshoots (desired only grows).
    let desired = Arc::new(std::sync::atomic::AtomicUsize::new(2));
    let overshoots = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (cl, desired, overshoots, stop) = (
            cl.clone(),
            desired.clone(),
            overshoots.clone(),
            stop.clone(),
        );
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let want = desired.load(Ordering::SeqCst);
                let n = live_pods(&cl, "api").await.len();
                if n > want {
                    overshoots
                        .lock()
                        .unwrap()
                        .push(format!("{n} pods > {want}"));
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    // SIGKILL the replica holding the controller lease, then the one then
    // holding the scheduler's, each time scaling up: new pods need a
    // controller to create them and the scheduler to bind them.
    let api: Api<v1::Deployment> = Api::namespaced(cl.clone(), "default");
    let mut replicas = 2;
    for election in ["keelson-controller-manager", "keelson-scheduler"] {
        let victim = holder(&cl, election).await.expect("a lease holder");
        let i = c
            .members
            .iter()
            .position(|m| m.name == victim)
            .expect("the holder is a replica");
        c.kill(i);
        let killed_at = Instant::now();
        replicas += 1;
        desired.store(replicas as usize, Ordering::SeqCst);
        eventually(Duration::from_secs(20), "scale up", || async {
            let Ok(mut d) = api.get("api").await else {
                return false;
            };
            d.spec.as_mut().unwrap().replicas = Some(replicas);
            api.update(&d).await.is_ok()
        })
        .await;
        eventually(
            Duration::from_secs(40),
            "api scaled up after the kill",
            || rolled_out(&cl, "api", replicas, "builtin/sleep"),
        )
        .await;
        eprintln!(
            "{victim} ({election}) killed: takeover and scale-up to {replicas} done in {:?}",
            killed_at.elapsed()
        );
        let h = holder(&cl, election).await.expect("a holder");
        assert_ne!(h, victim, "{election} moved off the killed replica");
        c.restart(i).expect("restart the killed replica");
        c.wait_healthy(Duration::from_secs(30))
            .await
            .expect("healthy again");
    }
    stop.store(true, Ordering::Relaxed);
    sampler.await.expect("sampler");
    let o = overshoots.lock().unwrap().clone();
    assert!(o.is_empty(), "the ReplicaSet overshot: {o:?}");
    let now_ctrl = holder(&cl, "keelson-controller-manager")
        .await
        .expect("holder");
    let (ok, text) = run_cli(&c, &["cluster", "status"]);
    assert!(
        ok && text.contains(&format!("keelson-controller-manager: held by {now_ctrl}")),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_of_a_dead_node_are_recreated_elsewhere() {
    let _g = serial().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let c = start_control_plane(
        3,
        &dir.path().join("cluster"),
        &[
            "--node-monitor-grace-period",
            "2",
            "--pod-eviction-timeout",
            "2",
        ],
    )
    .await;
    let mut agents = Procs(vec![
        spawn_client_process(
            &c,
            &[
                "agent",
                "--simulate",
                "1",
                "--name-prefix",
                "a",
                "--heartbeat-ttl",
                "3",
            ],
            &dir.path().join("agent-a.log"),
        ),
        spawn_client_process(
            &c,
            &[
                "agent",
                "--simulate",
                "1",
                "--name-prefix",
                "b",
                "--first-address",
                "127.0.101.1",
                "--heartbeat-ttl",
                "3",
            ],
            &dir.path().join("agent-b.log"),
        ),
    ]);
    let cl = admin_client(&c);
    let deployments: Api<v1::Deployment> = Api::namespaced(cl.clone(), "default");
    deployments
        .create(&deployment("db", 4, "builtin/sleep"))
        .await
        .expect("create deployment");
    eventually(
        Duration::from_secs(30),
        "db converges on both nodes",
        || async {
            rolled_out(&cl, "db", 4, "builtin/sleep").await
                && live_pods(&cl, "db")
                    .await
                    .iter()
                    .map(node_of)
                    .collect::<BTreeSet<_>>()
                    .len()
                    == 2
        },
    )
    .await;
    // SIGKILL agent b: its node goes silent.
    let _ = agents.0[1].kill();
    let _ = agents.0[1].wait();
    let killed = Instant::now();
    let nodes: Api<v1::Node> = Api::all(cl.clone());
    eventually(
        Duration::from_secs(20),
        "b-0 marked unreachable",
        || async {
            nodes.get("b-0").await.is_ok_and(|n| {
                n.spec.as_ref().is_some_and(|s| {
                    s.taints.iter().any(|t| {
                        t.key == "node.kubernetes.io/unreachable" && t.effect == "NoExecute"
                    })
                }) && n.status.as_ref().is_some_and(|s| {
                    s.conditions
                        .iter()
                        .any(|c| c.r#type == "Ready" && c.status == "Unknown")
                })
            })
        },
    )
    .await;
    eventually(
        Duration::from_secs(30),
        "db runs 4 pods on a-0 only",
        || async {
            let pods = live_pods(&cl, "db").await;
            pods.len() == 4 && pods.iter().all(|p| node_of(p) == "a-0" && is_ready(p))
        },
    )
    .await;
    eprintln!(
        "pods moved {:?} after the agent's SIGKILL",
        killed.elapsed()
    );
    // Agent b comes back: the node is Ready again, untainted.
    agents.0.push(spawn_client_process(
        &c,
        &[
            "agent",
            "--simulate",
            "1",
            "--name-prefix",
            "b",
            "--first-address",
            "127.0.101.1",
            "--heartbeat-ttl",
            "3",
        ],
        &dir.path().join("agent-b2.log"),
    ));
    eventually(Duration::from_secs(20), "b-0 ready again", || async {
        nodes.get("b-0").await.is_ok_and(|n| {
            n.spec.as_ref().is_none_or(|s| s.taints.is_empty())
                && n.status.as_ref().is_some_and(|s| {
                    s.conditions
                        .iter()
                        .any(|c| c.r#type == "Ready" && c.status == "True")
                })
        })
    })
    .await;
}
