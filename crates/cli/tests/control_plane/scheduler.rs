//! The scheduler against a 3-replica cluster, as separate processes: two
//! instances (one leads), nodes registered through the API, pods bound
//! with their spread, an unschedulable pod's reasons, and a takeover after
//! the leading instance is SIGKILLed.

use crate::common;

use std::process::Child;
use std::time::Duration;

use common::fixtures::{self, node_of};
use common::{eventually, run_cli, serial, start_cluster, ProcCluster, Procs};
use keelson_sdk::types::{self as v1};
use keelson_sdk::{Api, Client, Config, ListParams, Resource};

fn start_scheduler(c: &ProcCluster, identity: &str, log: &std::path::Path) -> Child {
    c.keelson(["scheduler", "--identity", identity])
        .and_then(|s| s.log(log).spawn())
        .expect("start scheduler")
}

/// A `builtin/sleep` pod requesting `cpu`, no namespace.
fn pod(name: &str, cpu: &str) -> v1::Pod {
    fixtures::pod(name).no_namespace().cpu(cpu).build()
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
        nodes
            .create(&fixtures::node(n).build())
            .await
            .expect("register node");
    }
    let ids = ["s1", "s2"];
    let mut scheds = Procs::default();
    for id in ids {
        scheds.0.push(start_scheduler(
            &c,
            id,
            &dir.path().join(format!("{id}.log")),
        ));
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
    // The event is recorded after the condition (as the kube-scheduler's
    // event recorder does), so it may come a moment later.
    let events: Api<v1::Event> = Api::namespaced(cl.clone(), "default");
    eventually(Duration::from_secs(10), "a FailedScheduling event", || {
        let events = events.clone();
        async move {
            events
                .list(
                    &ListParams::default()
                        .fields("involvedObject.name=huge,reason=FailedScheduling"),
                )
                .await
                .is_ok_and(|l| !l.items.is_empty())
        }
    })
    .await;

    // SIGKILL the leading instance: the other takes over.
    let leases: Api<v1::Lease> = Api::namespaced(cl.clone(), "kube-system");
    let holder = leases
        .get("keelson-scheduler")
        .await
        .expect("scheduler lease")
        .spec
        .map(|s| s.holder_identity)
        .unwrap_or_default();
    let i = ids
        .iter()
        .position(|id| *id == holder)
        .expect("holder is ours");
    keelson_testkit::process::kill(&mut scheds.0[i]);
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
    let (_, text) = run_cli(&c, &["cluster", "status"]);
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
