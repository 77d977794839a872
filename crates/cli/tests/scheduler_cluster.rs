//! The scheduler against a 3-replica cluster, as separate processes: two
//! instances (one leads), nodes registered through the API, pods bound
//! with their spread, an unschedulable pod's reasons, and a takeover after
//! the leading instance is SIGKILLed.

mod common;

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{eventually, keelson_bin, serial, start_cluster};
use keelson::cluster::ProcCluster;
use keelson_sdk::types::{self as v1};
use keelson_sdk::{Api, Client, Config, ListParams, Resource};

/// Scheduler processes, killed when dropped.
struct Schedulers(Vec<(String, Child)>);

impl Drop for Schedulers {
    fn drop(&mut self) {
        for (_, c) in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn start_scheduler(c: &ProcCluster, identity: &str, log: &std::path::Path) -> Child {
    let log = std::fs::File::create(log).expect("log file");
    Command::new(keelson_bin())
        .args(["scheduler", "--identity", identity, "--server"])
        .arg(c.api_endpoints().join(","))
        .args(["--token", &c.token("admin", None)])
        .env("KEELSON_CONFIG", "/nonexistent")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start scheduler")
}

fn node(name: &str) -> v1::Node {
    let res: BTreeMap<String, String> = [("cpu", "2"), ("memory", "4Gi"), ("pods", "110")]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    v1::Node {
        metadata: Some(v1::ObjectMeta {
            name: name.into(),
            ..Default::default()
        }),
        status: Some(v1::NodeStatus {
            capacity: res.clone(),
            allocatable: res,
            conditions: vec![v1::NodeCondition {
                r#type: "Ready".into(),
                status: "True".into(),
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn pod(name: &str, cpu: &str) -> v1::Pod {
    v1::Pod {
        metadata: Some(v1::ObjectMeta {
            name: name.into(),
            ..Default::default()
        }),
        spec: Some(v1::PodSpec {
            containers: vec![v1::Container {
                name: "main".into(),
                image: "builtin/sleep".into(),
                resources: Some(v1::ResourceRequirements {
                    requests: [("cpu".to_string(), cpu.to_string())].into(),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn node_of(p: &v1::Pod) -> String {
    p.spec
        .as_ref()
        .map(|s| s.node_name.clone())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_are_bound_spread_and_rescheduled_after_a_scheduler_dies() {
    let _g = serial().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let c = start_cluster(3, &dir.path().join("cluster"), &[]).await;
    let cl = Client::new(&Config::new(c.api_endpoints(), c.token("admin", None))).expect("client");
    let nodes: Api<v1::Node> = Api::all(cl.clone());
    eventually(Duration::from_secs(20), "API ready", || {
        let nodes = nodes.clone();
        async move { nodes.list(&ListParams::default()).await.is_ok() }
    })
    .await;
    for n in ["n1", "n2"] {
        nodes.create(&node(n)).await.expect("register node");
    }
    let mut scheds = Schedulers(Vec::new());
    for id in ["s1", "s2"] {
        let child = start_scheduler(&c, id, &dir.path().join(format!("{id}.log")));
        scheds.0.push((id.to_string(), child));
    }
    let pods: Api<v1::Pod> = Api::namespaced(cl.clone(), "default");
    for i in 0..4 {
        pods.create(&pod(&format!("p{i}"), "500m"))
            .await
            .expect("create pod");
    }
    eventually(Duration::from_secs(30), "4 pods bound, 2 per node", || {
        let pods = pods.clone();
        async move {
            let Ok(l) = pods.list(&ListParams::default()).await else {
                return false;
            };
            let on = |n: &str| l.items.iter().filter(|p| node_of(p) == n).count();
            on("n1") == 2 && on("n2") == 2
        }
    })
    .await;

    // Too big for any node: reasons on the pod, and an event.
    pods.create(&pod("huge", "3")).await.expect("create pod");
    eventually(Duration::from_secs(20), "huge marked unschedulable", || {
        let pods = pods.clone();
        async move {
            pods.get("huge")
                .await
                .ok()
                .and_then(|p| p.status)
                .is_some_and(|s| {
                    s.conditions.iter().any(|c| {
                        c.r#type == "PodScheduled"
                            && c.status == "False"
                            && c.message == "0/2 nodes are available: 2 Insufficient cpu."
                    })
                })
        }
    })
    .await;
    let events: Api<v1::Event> = Api::namespaced(cl.clone(), "default");
    let failed = events
        .list(&ListParams::default().fields("involvedObject.name=huge,reason=FailedScheduling"))
        .await
        .expect("events");
    assert!(!failed.items.is_empty());

    // SIGKILL the leading instance: the other takes over.
    let leases: Api<v1::Lease> = Api::namespaced(cl.clone(), "kube-system");
    let holder = leases
        .get("keelson-scheduler")
        .await
        .expect("scheduler lease")
        .spec
        .map(|s| s.holder_identity)
        .unwrap_or_default();
    let i = scheds
        .0
        .iter()
        .position(|(id, _)| *id == holder)
        .expect("holder is ours");
    let (_, mut leader) = scheds.0.remove(i);
    leader.kill().expect("kill scheduler");
    let _ = leader.wait();
    pods.create(&pod("after", "100m"))
        .await
        .expect("create pod");
    eventually(
        Duration::from_secs(20),
        "pod bound by the other scheduler",
        || {
            let pods = pods.clone();
            async move {
                pods.get("after")
                    .await
                    .is_ok_and(|p| !node_of(&p).is_empty())
            }
        },
    )
    .await;
    let new_holder = leases
        .get("keelson-scheduler")
        .await
        .expect("lease")
        .spec
        .map(|s| s.holder_identity)
        .unwrap_or_default();
    assert_ne!(new_holder, holder);
    let status = Command::new(keelson_bin())
        .args(["cluster", "status", "--server"])
        .arg(c.api_endpoints().join(","))
        .args(["--token", &c.token("admin", None)])
        .env("KEELSON_CONFIG", "/nonexistent")
        .output()
        .expect("cluster status");
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(
        text.contains(&format!("keelson-scheduler: held by {new_holder}")),
        "{text}"
    );
    // Never bound twice: every pod has one node, and "huge" none.
    let all = pods.list(&ListParams::default()).await.expect("list");
    assert_eq!(
        all.items.iter().filter(|p| node_of(p).is_empty()).count(),
        1
    );
    assert!(all
        .items
        .iter()
        .all(|p| p.meta().name != "huge" || node_of(p).is_empty()));
}
