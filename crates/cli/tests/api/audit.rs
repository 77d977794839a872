//! The audit log (`--audit-log-path`), read back: kubectl's writes over the
//! Kubernetes API and an SDK write over gRPC, each a line in the shape of
//! Kubernetes' audit Event with the user, verb, object and answer; a
//! refused write logged with its 403; reads left out.

use crate::common;

use std::time::Duration;

use common::{admin_client, eventually, serial, start_cluster, Kubectl};
use keelson_sdk::types as v1;
use keelson_sdk::Api;
use serde_json::Value;

fn events(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("every line is JSON"))
        .collect()
}

fn find<'a>(events: &'a [Value], verb: &str, name: &str, user: &str) -> Option<&'a Value> {
    events.iter().find(|e| {
        e["verb"] == verb && e["objectRef"]["name"] == name && e["user"]["username"] == user
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_write_is_in_the_audit_log_with_who_what_and_the_answer() {
    let _g = serial().await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit/audit.log");
    let log_arg = log.to_str().unwrap().to_string();
    let c = start_cluster(
        1,
        &dir.path().join("cluster"),
        &["--audit-log-path", &log_arg],
    )
    .await;
    let admin = Kubectl::new(dir.path(), &c, 0, &c.token("admin", None));
    let viewer = Kubectl::new(dir.path(), &c, 0, &c.token("viewer", None));
    admin.ok(&["create", "configmap", "audited", "--from-literal=a=b"]);
    admin.ok(&["label", "configmap", "audited", "x=y"]);
    admin.ok(&["get", "configmaps"]);
    let (ok, _, err) = viewer.run(&["delete", "configmap", "audited"]);
    assert!(!ok && err.contains("forbidden"), "{err}");
    admin.ok(&["delete", "configmap", "audited"]);
    let cms: Api<v1::ConfigMap> = Api::namespaced(admin_client(&c), "default");
    cms.create(&v1::ConfigMap {
        metadata: common::fixtures::meta("over-grpc", &[]),
        ..Default::default()
    })
    .await
    .unwrap();

    eventually(Duration::from_secs(10), "the audit lines", || async {
        find(&events(&log), "create", "over-grpc", "admin").is_some()
    })
    .await;
    let ev = events(&log);
    let created = find(&ev, "create", "audited", "admin").expect("kubectl create");
    assert_eq!(created["apiVersion"], "audit.k8s.io/v1");
    assert_eq!(created["kind"], "Event");
    assert_eq!(created["stage"], "ResponseComplete");
    assert_eq!(created["responseStatus"]["code"], 201);
    assert_eq!(created["objectRef"]["resource"], "configmaps");
    assert_eq!(created["objectRef"]["namespace"], "default");
    assert_eq!(created["objectRef"]["apiVersion"], "v1");
    assert_eq!(created["annotations"]["keelson.dev/api"], "kubernetes");
    assert!(created["requestURI"]
        .as_str()
        .unwrap()
        .starts_with("/api/v1/namespaces/default/configmaps"));
    assert!(created["userAgent"]
        .as_str()
        .unwrap()
        .starts_with("kubectl"));
    let latency: f64 = created["annotations"]["keelson.dev/latency-ms"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(latency > 0.0);
    let patched = find(&ev, "patch", "audited", "admin").expect("kubectl label");
    assert_eq!(patched["responseStatus"]["code"], 200);
    let refused = find(&ev, "delete", "audited", "viewer").expect("the viewer's delete");
    assert_eq!(refused["responseStatus"]["code"], 403);
    let deleted = find(&ev, "delete", "audited", "admin").expect("kubectl delete");
    assert_eq!(deleted["responseStatus"]["code"], 200);
    let grpc = find(&ev, "create", "over-grpc", "admin").expect("the SDK's create");
    assert_eq!(grpc["annotations"]["keelson.dev/api"], "grpc");
    assert_eq!(grpc["responseStatus"]["code"], 201);
    assert_eq!(grpc["user"]["groups"][0], "keelson:admin");
    assert!(
        ev.iter()
            .all(|e| !matches!(e["verb"].as_str(), Some("get" | "list" | "watch"))),
        "reads are not logged without --audit-log-reads"
    );
    // Time order: each line's stage time is after its receipt.
    for e in &ev {
        let t = |k: &str| humantime::parse_rfc3339(e[k].as_str().unwrap()).unwrap();
        assert!(t("stageTimestamp") >= t("requestReceivedTimestamp"));
    }
}
