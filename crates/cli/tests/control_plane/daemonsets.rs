//! DaemonSets as `keelson server` runs their controller, over simulated
//! nodes, driven by kubectl: a pod per node, a pod for a node that joins,
//! none on a node with an untolerated NoExecute taint (and one again once
//! it goes), rolling updates (by maxUnavailable and by maxSurge) that
//! kubectl's `rollout status` follows (and `rollout history` and `undo`
//! over its ControllerRevisions), a
//! removed node's pod collected, and the DaemonSet's pods (and a
//! ConfigMap and a Secret it owns) deleted with it.

use crate::common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{admin_client, eventually, serial, simulated_nodes, start_control_plane};
use keelson_sdk::types::{self as v1};
use keelson_sdk::{Api, ListParams, Resource};

/// The DaemonSet's live pods by node: their images.
async fn pods_by_node(pods: &Api<v1::Pod>) -> BTreeMap<String, Vec<String>> {
    let mut by = BTreeMap::new();
    for p in pods
        .list(&ListParams::default().labels("app=node-agent"))
        .await
        .map(|l| l.items)
        .unwrap_or_default()
    {
        if !p.meta().deletion_timestamp.is_empty() {
            continue;
        }
        let spec = p.spec.unwrap_or_default();
        by.entry(spec.node_name)
            .or_insert_with(Vec::new)
            .extend(spec.containers.into_iter().map(|c| c.image));
    }
    by
}

fn nodes_of(by: &BTreeMap<String, Vec<String>>) -> Vec<&str> {
    by.keys().map(String::as_str).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_sets_follow_nodes_taints_and_roll_out() {
    let _g = serial().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let c = start_control_plane(1, &dir.path().join("cluster"), &[]).await;
    let _nodes = simulated_nodes(&c, 2, "n", dir.path());
    let cl = admin_client(&c);
    let k = common::Kubectl::new(dir.path(), &c, 0, &c.token("admin", None));
    let manifest = serde_json::json!({
        "apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": {"name": "node-agent"},
        "spec": {
            "selector": {"matchLabels": {"app": "node-agent"}},
            "template": {"metadata": {"labels": {"app": "node-agent"}},
                         "spec": {"containers": [{"name": "main", "image": "builtin/sleep"}]}}
        }
    });
    let (code, out, err) = k.run_input(&["apply", "-f", "-"], manifest.to_string().as_bytes());
    assert_eq!(code, 0, "{out}{err}");
    k.ok(&["rollout", "status", "daemonset/node-agent", "--timeout=60s"]);
    let pods: Api<v1::Pod> = Api::namespaced(cl.clone(), "default");
    assert_eq!(nodes_of(&pods_by_node(&pods).await), ["n-0", "n-1"]);
    let (row, table) = k.first_row(&["get", "ds", "node-agent"]);
    assert_eq!(
        row.get(..7),
        Some(&["node-agent", "2", "2", "2", "2", "2", "<none>"].map(String::from)[..]),
        "{table}"
    );

    // A node that joins gets a pod.
    let mut extra = simulated_nodes(&c, 1, "m", dir.path());
    eventually(Duration::from_secs(30), "a pod on the new node", || async {
        nodes_of(&pods_by_node(&pods).await) == ["m-0", "n-0", "n-1"]
    })
    .await;

    // An untolerated NoExecute taint takes the pod off; without it, back.
    k.ok(&["taint", "nodes", "n-1", "dedicated=infra:NoExecute"]);
    eventually(
        Duration::from_secs(30),
        "no pod on the tainted node",
        || async { nodes_of(&pods_by_node(&pods).await) == ["m-0", "n-0"] },
    )
    .await;
    k.ok(&["taint", "nodes", "n-1", "dedicated-"]);
    eventually(Duration::from_secs(30), "the pod is back", || async {
        nodes_of(&pods_by_node(&pods).await) == ["m-0", "n-0", "n-1"]
    })
    .await;

    // A rolling update (one node at a time) that kubectl follows.
    k.ok(&[
        "set",
        "image",
        "daemonset/node-agent",
        "main=builtin/http-echo",
    ]);
    k.ok(&["rollout", "status", "daemonset/node-agent", "--timeout=60s"]);
    let by = pods_by_node(&pods).await;
    assert!(
        by.len() == 3 && by.values().all(|i| i == &["builtin/http-echo"]),
        "{by:?}"
    );

    // Each template is a ControllerRevision: the history lists both, and
    // undo brings the first one back (as revision 3).
    let history = k.ok(&["rollout", "history", "daemonset/node-agent"]);
    for n in ["1", "2"] {
        assert!(
            history
                .lines()
                .any(|l| l.split_whitespace().next() == Some(n)),
            "revision {n} missing: {history}"
        );
    }
    let first = k.ok(&["rollout", "history", "daemonset/node-agent", "--revision=1"]);
    assert!(first.contains("builtin/sleep"), "{first}");
    k.ok(&["rollout", "undo", "daemonset/node-agent"]);
    k.ok(&["rollout", "status", "daemonset/node-agent", "--timeout=60s"]);
    eventually(
        Duration::from_secs(30),
        "the first template back",
        || async {
            let by = pods_by_node(&pods).await;
            by.len() == 3 && by.values().all(|i| i == &["builtin/sleep"])
        },
    )
    .await;
    let numbers = k.ok(&[
        "get",
        "controllerrevisions",
        "-l",
        "app=node-agent",
        "-o",
        "jsonpath={.items[*].revision}",
    ]);
    let mut numbers: Vec<&str> = numbers.split_whitespace().collect();
    numbers.sort_unstable();
    assert_eq!(numbers, ["2", "3"]);

    // A node removed for good: its pod is collected.
    extra.0.iter_mut().for_each(keelson_testkit::process::kill);
    k.ok(&["delete", "node", "m-0"]);
    eventually(
        Duration::from_secs(30),
        "the removed node's pod is gone",
        || async {
            pods.list(&ListParams::default().labels("app=node-agent"))
                .await
                .is_ok_and(|l| {
                    l.items.len() == 2
                        && l.items
                            .iter()
                            .all(|p| p.spec.as_ref().is_some_and(|s| s.node_name != "m-0"))
                })
        },
    )
    .await;

    // A rolling update by surge: a new pod starts beside each old one,
    // which goes once the new one is available.
    k.ok(&[
        "patch",
        "daemonset",
        "node-agent",
        "--type=merge",
        "-p",
        r#"{"spec":{"updateStrategy":{"rollingUpdate":{"maxSurge":1,"maxUnavailable":0}}}}"#,
    ]);
    k.ok(&[
        "set",
        "image",
        "daemonset/node-agent",
        "main=builtin/http-echo",
    ]);
    k.ok(&["rollout", "status", "daemonset/node-agent", "--timeout=60s"]);
    eventually(Duration::from_secs(30), "one new pod per node", || async {
        let by = pods_by_node(&pods).await;
        by.len() == 2 && by.values().all(|i| i == &["builtin/http-echo"])
    })
    .await;

    // Deleting the DaemonSet deletes its pods, and a ConfigMap and a
    // Secret it owns (the garbage collector's graph covers them).
    let uid = k.ok(&["get", "ds", "node-agent", "-o", "jsonpath={.metadata.uid}"]);
    for kind in ["ConfigMap", "Secret"] {
        let owned = serde_json::json!({
            "apiVersion": "v1", "kind": kind,
            "metadata": {"name": "node-agent-conf", "ownerReferences": [{
                "apiVersion": "apps/v1", "kind": "DaemonSet", "name": "node-agent", "uid": uid}]},
            "data": {}
        });
        let (code, out, err) = k.run_input(&["create", "-f", "-"], owned.to_string().as_bytes());
        assert_eq!(code, 0, "{out}{err}");
    }
    k.ok(&["delete", "daemonset", "node-agent"]);
    eventually(Duration::from_secs(30), "its pods are gone", || async {
        pods.list(&ListParams::default().labels("app=node-agent"))
            .await
            .is_ok_and(|l| l.items.is_empty())
    })
    .await;
    eventually(Duration::from_secs(30), "what it owned is gone", || async {
        let (ok, names, _) = k.run(&["get", "configmap,secret", "-o", "name"]);
        ok && !names.contains("node-agent-conf")
    })
    .await;
}
