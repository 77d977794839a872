//! StatefulSets as `keelson server` runs their controller, over simulated
//! nodes, driven by kubectl, with every pod change watched: pods `db-0`,
//! `db-1`, `db-2` start in order (each after the one before is Ready),
//! the headless Service's Endpoints carry their hostnames, a rolling
//! update replaces them from the highest ordinal down (each after the one
//! above is back and Ready), a partition stops it, `kubectl rollout
//! history` and `undo` work from the ControllerRevisions, scale-down goes
//! from the top one at a time, and deleting the set deletes its pods and
//! revisions.

use crate::common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{admin_client, eventually, serial, simulated_nodes, start_control_plane};
use futures::StreamExt;
use keelson_sdk::types::{self as v1};
use keelson_sdk::{Api, ListParams, Resource, WatchEvent};

/// One pod change as the watch saw it.
#[derive(Clone, Debug)]
struct Seen {
    event: &'static str,
    name: String,
    image: String,
    ready: bool,
    terminating: bool,
}

fn seen(event: &'static str, p: &v1::Pod) -> Seen {
    let status = p.status.clone().unwrap_or_default();
    Seen {
        event,
        name: p.meta().name.clone(),
        image: p
            .spec
            .as_ref()
            .and_then(|s| s.containers.first())
            .map(|c| c.image.clone())
            .unwrap_or_default(),
        ready: status.phase == "Running"
            && status
                .conditions
                .iter()
                .any(|c| c.r#type == "Ready" && c.status == "True"),
        terminating: !p.meta().deletion_timestamp.is_empty(),
    }
}

/// The state of pod `name` as last seen before event `at` (None: absent).
fn state_before(log: &[Seen], at: usize, name: &str) -> Option<Seen> {
    let last = log[..at].iter().rev().find(|s| s.name == name)?;
    (last.event != "DELETED").then(|| last.clone())
}

/// Each pod of `order` after the first was created only when the one
/// before it was Ready (and not on its way out) with `image`.
fn check_ordered_creates(log: &[Seen], from: usize, order: &[&str], image: &str) {
    for w in order.windows(2) {
        let at = (from..log.len())
            .find(|&i| log[i].event == "ADDED" && log[i].name == w[1])
            .unwrap_or_else(|| panic!("{} was never created: {log:#?}", w[1]));
        let before = state_before(log, at, w[0]);
        assert!(
            before
                .as_ref()
                .is_some_and(|s| s.ready && !s.terminating && s.image == image),
            "{} created while {} was {before:?}: {log:#?}",
            w[1],
            w[0]
        );
    }
}

/// The first event from `from` on at which pod `name` started going (a
/// deletion timestamp, or gone).
fn deletion_start(log: &[Seen], from: usize, name: &str) -> Option<usize> {
    (from..log.len())
        .find(|&i| log[i].name == name && (log[i].terminating || log[i].event == "DELETED"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stateful_sets_start_in_order_update_backwards_and_scale_down_from_the_top() {
    let _g = serial().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let c = start_control_plane(1, &dir.path().join("cluster"), &[]).await;
    let _nodes = simulated_nodes(&c, 2, "n", dir.path());
    let cl = admin_client(&c);
    let k = common::Kubectl::new(dir.path(), &c, 0, &c.token("admin", None));

    // Every change to the set's pods, in order.
    let pods: Api<v1::Pod> = Api::namespaced(cl.clone(), "default");
    let log: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let mut stream = pods
        .watch(&ListParams::default().labels("app=db"), "")
        .await
        .expect("watch pods");
    let recorder = {
        let log = log.clone();
        tokio::spawn(async move {
            while let Some(Ok(ev)) = stream.next().await {
                let s = match &ev {
                    WatchEvent::Added(p) => seen("ADDED", p),
                    WatchEvent::Modified(p) => seen("MODIFIED", p),
                    WatchEvent::Deleted(p) => seen("DELETED", p),
                    WatchEvent::Bookmark(_) => continue,
                };
                log.lock().expect("log").push(s);
            }
        })
    };
    let snapshot = || log.lock().expect("log").clone();

    // Two JSON documents in a stream (a `kind: List` needs /openapi/v2 for kubectl's
    // validation, which is not served).
    let service = serde_json::json!(
        {"apiVersion": "v1", "kind": "Service",
         "metadata": {"name": "db"},
         "spec": {"clusterIP": "None", "selector": {"app": "db"},
                  "ports": [{"name": "sql", "port": 5432}]}});
    let set = serde_json::json!(
        {"apiVersion": "apps/v1", "kind": "StatefulSet",
         "metadata": {"name": "db"},
         "spec": {
            "replicas": 3, "serviceName": "db",
            "selector": {"matchLabels": {"app": "db"}},
            "template": {"metadata": {"labels": {"app": "db"}},
                         "spec": {"containers": [{"name": "main", "image": "builtin/sleep",
                                                  "ports": [{"name": "sql", "containerPort": 5432}]}]}}}});
    let manifest = format!("{service}\n{set}\n");
    let (code, out, err) = k.run_input(&["apply", "-f", "-"], manifest.as_bytes());
    assert_eq!(code, 0, "{out}{err}");
    k.ok(&["rollout", "status", "statefulset/db", "--timeout=60s"]);
    check_ordered_creates(&snapshot(), 0, &["db-0", "db-1", "db-2"], "builtin/sleep");
    let (row, table) = k.first_row(&["get", "sts", "db"]);
    assert_eq!(
        row.get(..2),
        Some(&["db", "3/3"].map(String::from)[..]),
        "{table}"
    );
    // Identity: hostname, subdomain, labels.
    let p1 = pods.get("db-1").await.expect("db-1");
    let spec = p1.spec.clone().unwrap_or_default();
    assert_eq!(
        (spec.hostname.as_str(), spec.subdomain.as_str()),
        ("db-1", "db")
    );
    assert_eq!(
        p1.meta()
            .labels
            .get("statefulset.kubernetes.io/pod-name")
            .map(String::as_str),
        Some("db-1")
    );
    assert_eq!(
        p1.meta()
            .labels
            .get("apps.kubernetes.io/pod-index")
            .map(String::as_str),
        Some("1")
    );
    // The headless Service's Endpoints name each pod: the DNS records
    // `db-N.db.default.svc`.
    eventually(
        Duration::from_secs(30),
        "hostnames in the Endpoints",
        || async {
            let out = k.run(&[
                "get",
                "endpoints",
                "db",
                "-o",
                "jsonpath={.subsets[*].addresses[*].hostname}",
            ]);
            let mut names: Vec<&str> = out.1.split_whitespace().collect();
            names.sort_unstable();
            names == ["db-0", "db-1", "db-2"]
        },
    )
    .await;

    // A rolling update: db-2, then db-1, then db-0, each once the one above
    // is back at the new image and Ready.
    let from = snapshot().len();
    k.ok(&["set", "image", "statefulset/db", "main=builtin/http-echo"]);
    k.ok(&["rollout", "status", "statefulset/db", "--timeout=90s"]);
    let l = snapshot();
    let starts: Vec<usize> = ["db-2", "db-1", "db-0"]
        .iter()
        .map(|n| deletion_start(&l, from, n).unwrap_or_else(|| panic!("{n} not replaced: {l:#?}")))
        .collect();
    assert!(
        starts.windows(2).all(|w| w[0] < w[1]),
        "replaced out of order: {l:#?}"
    );
    for (above, at) in [("db-2", starts[1]), ("db-1", starts[2])] {
        let s = state_before(&l, at, above);
        assert!(
            s.as_ref()
                .is_some_and(|s| s.ready && s.image == "builtin/http-echo"),
            "the next pod went while {above} was {s:?}: {l:#?}"
        );
    }
    let images = || async {
        let mut out = Vec::new();
        for n in ["db-0", "db-1", "db-2"] {
            let p = pods.get(n).await.ok();
            out.push(
                p.and_then(|p| p.spec)
                    .and_then(|s| s.containers.first().map(|c| c.image.clone()))
                    .unwrap_or_default(),
            );
        }
        out
    };
    assert_eq!(images().await, ["builtin/http-echo"; 3]);

    // A partition: only db-2 moves to the next template.
    k.ok(&[
        "patch",
        "statefulset",
        "db",
        "-p",
        r#"{"spec":{"updateStrategy":{"rollingUpdate":{"partition":2}}}}"#,
    ]);
    // (A third template: back to the first one would be a rollback.)
    k.ok(&["set", "image", "statefulset/db", "main=example/db:3"]);
    let out = k.ok(&["rollout", "status", "statefulset/db", "--timeout=60s"]);
    assert!(out.contains("partitioned roll out complete"), "{out}");
    assert_eq!(
        images().await,
        ["builtin/http-echo", "builtin/http-echo", "example/db:3"]
    );

    // Three templates, three revisions, listed and owned as Kubernetes
    // lists them.
    let revisions = k.ok(&["get", "controllerrevisions", "--no-headers"]);
    let rows: Vec<Vec<&str>> = revisions
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows.len(), 3, "{revisions}");
    assert!(
        rows.iter()
            .all(|r| r.get(1) == Some(&"statefulset.apps/db")),
        "{revisions}"
    );
    let history = k.ok(&["rollout", "history", "statefulset/db"]);
    for n in ["1", "2", "3"] {
        assert!(
            history
                .lines()
                .any(|l| l.split_whitespace().next() == Some(n)),
            "revision {n} missing: {history}"
        );
    }
    let second = k.ok(&["rollout", "history", "statefulset/db", "--revision=2"]);
    assert!(second.contains("builtin/http-echo"), "{second}");

    // Undo to revision 2: its template comes back as revision 4, and db-2
    // (at the partition) follows it.
    k.ok(&["rollout", "undo", "statefulset/db", "--to-revision=2"]);
    let image = k.ok(&[
        "get",
        "sts",
        "db",
        "-o",
        "jsonpath={.spec.template.spec.containers[0].image}",
    ]);
    assert_eq!(image.trim(), "builtin/http-echo");
    eventually(
        Duration::from_secs(60),
        "db-2 back at revision 2's template",
        || async { images().await == ["builtin/http-echo"; 3] },
    )
    .await;
    let numbers = k.ok(&[
        "get",
        "controllerrevisions",
        "-o",
        "jsonpath={.items[*].revision}",
    ]);
    let mut numbers: Vec<&str> = numbers.split_whitespace().collect();
    numbers.sort_unstable();
    assert_eq!(numbers, ["1", "3", "4"]);

    // Scale down: db-2 goes first, and db-1 only once db-2 is gone.
    let from = snapshot().len();
    k.ok(&["scale", "statefulset/db", "--replicas=1"]);
    eventually(Duration::from_secs(60), "one pod left", || async {
        pods.list(&ListParams::default().labels("app=db"))
            .await
            .is_ok_and(|l| l.items.len() == 1 && l.items[0].meta().name == "db-0")
    })
    .await;
    let l = snapshot();
    let gone2 = (from..l.len())
        .find(|&i| l[i].name == "db-2" && l[i].event == "DELETED")
        .unwrap_or_else(|| panic!("db-2 not deleted: {l:#?}"));
    let start1 = deletion_start(&l, from, "db-1").unwrap_or_else(|| panic!("{l:#?}"));
    assert!(gone2 < start1, "db-1 went before db-2 was gone: {l:#?}");
    let (row, table) = k.first_row(&["get", "sts", "db"]);
    assert_eq!(
        row.get(..2),
        Some(&["db", "1/1"].map(String::from)[..]),
        "{table}"
    );

    // Deleting the set deletes its pod and its revisions.
    k.ok(&["delete", "statefulset", "db"]);
    eventually(
        Duration::from_secs(30),
        "pods and revisions collected",
        || async {
            let pods_left = pods
                .list(&ListParams::default().labels("app=db"))
                .await
                .map_or(usize::MAX, |l| l.items.len());
            let revs = k.run(&["get", "controllerrevisions", "-o", "name"]);
            pods_left == 0 && revs.0 && revs.1.trim().is_empty()
        },
    )
    .await;
    recorder.abort();
}
