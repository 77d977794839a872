//! CustomResourceDefinitions and custom resources over the Kubernetes HTTP
//! API, judged by kubectl and kube-rs: `kubectl apply` of a CRD and then of
//! objects of its kind, on another replica than the one that took the CRD;
//! tables with the CRD's printer columns; `kubectl explain`; schema
//! defaults, pruning (Strict field validation) and validation; the status
//! subresource; generations; the scale subresource; finalizers; watch and
//! dynamic objects with kube-rs; a namespace's deletion and the CRD's
//! deletion taking the objects along; a viewer refused writes.

use crate::common;

use std::time::Duration;

use common::{eventually, serial, start_cluster, Kubectl};
use futures::{StreamExt, TryStreamExt};
use kube::api::{Api, ApiResource, DynamicObject, PostParams, WatchEvent, WatchParams};
use kube::core::GroupVersionKind;
use serde_json::{json, Value};

fn crd() -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "crontabs.stable.example.com"},
        "spec": {
            "group": "stable.example.com",
            "scope": "Namespaced",
            "names": {"plural": "crontabs", "singular": "crontab", "kind": "CronTab", "shortNames": ["ct"]},
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "properties": {
                        "spec": {
                            "type": "object",
                            "required": ["cronSpec"],
                            "properties": {
                                "cronSpec": {"type": "string"},
                                "image": {"type": "string"},
                                "replicas": {"type": "integer", "minimum": 1, "maximum": 10, "default": 1}
                            }
                        },
                        "status": {"type": "object", "properties": {
                            "ready": {"type": "boolean"}, "replicas": {"type": "integer"}}}
                    }
                }},
                "subresources": {
                    "status": {},
                    "scale": {"specReplicasPath": ".spec.replicas", "statusReplicasPath": ".status.replicas"}
                },
                "additionalPrinterColumns": [
                    {"name": "Spec", "type": "string", "jsonPath": ".spec.cronSpec"},
                    {"name": "Replicas", "type": "integer", "jsonPath": ".spec.replicas"},
                    {"name": "Ready", "type": "boolean", "jsonPath": ".status.ready"},
                    {"name": "Image", "type": "string", "jsonPath": ".spec.image", "priority": 1}
                ]
            }]
        }
    })
}

fn crontab(name: &str, spec: Value) -> Value {
    json!({
        "apiVersion": "stable.example.com/v1",
        "kind": "CronTab",
        "metadata": {"name": name},
        "spec": spec,
    })
}

fn apply(k: &Kubectl, ns: &str, v: &Value) -> (i32, String, String) {
    k.run_input(&["apply", "-n", ns, "-f", "-"], v.to_string().as_bytes())
}

fn get_json(k: &Kubectl, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["-o", "json"]);
    serde_json::from_str(&k.ok(&all)).expect("kubectl -o json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_applies_a_crd_and_its_objects() {
    let _g = serial().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let c = start_cluster(3, dir.path(), &[]).await;
    let admin = c.token("admin", None);
    let k0 = Kubectl::new(dir.path(), &c, 0, &admin);
    let k2 = Kubectl::new(dir.path(), &c, 2, &admin);
    eventually(Duration::from_secs(20), "namespace default exists", || {
        let ok = k0.run(&["get", "namespace", "default"]).0;
        async move { ok }
    })
    .await;

    // A CRD that is not one is refused, naming its fields.
    let mut bad = crd();
    bad["spec"]["group"] = json!("example");
    bad["metadata"]["name"] = json!("crontabs.example");
    let (code, _, err) = apply(&k0, "default", &bad);
    assert_ne!(code, 0);
    assert!(
        err.contains("spec.group") && err.contains("should be a domain with at least one dot"),
        "{err}"
    );

    let (code, out, err) = apply(&k0, "default", &crd());
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains(
            "customresourcedefinition.apiextensions.k8s.io/crontabs.stable.example.com created"
        ),
        "{out}"
    );
    let got = get_json(&k0, &["get", "crd", "crontabs.stable.example.com"]);
    let conditions = got["status"]["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        conditions
            .iter()
            .any(|c| c["type"] == "Established" && c["status"] == "True"),
        "{got}"
    );
    assert_eq!(got["spec"]["names"]["listKind"], "CronTabList", "defaulted");
    let out = k0.ok(&["get", "crds"]);
    assert!(out.contains("crontabs.stable.example.com"), "{out}");

    // Another replica serves the kind (discovery included) within a second.
    let started = std::time::Instant::now();
    eventually(Duration::from_secs(5), "replica 2 serves crontabs", || {
        let (ok, _, _) = k2.run(&["get", "crontabs"]);
        async move { ok }
    })
    .await;
    assert!(started.elapsed() < Duration::from_secs(5));

    // An object of the kind, applied on replica 2; the default filled in.
    let (code, out, err) = apply(
        &k2,
        "default",
        &crontab(
            "nightly",
            json!({"cronSpec": "0 3 * * *", "image": "busybox"}),
        ),
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("crontab.stable.example.com/nightly created"),
        "{out}"
    );
    let o = get_json(&k0, &["get", "ct", "nightly"]);
    assert_eq!(o["spec"]["replicas"], 1, "the schema's default: {o}");
    assert_eq!(o["metadata"]["generation"], 1);
    assert!(o["metadata"]["uid"].as_str().is_some_and(|u| !u.is_empty()));

    // Tables with the printer columns (Image only with -o wide).
    let out = k0.ok(&["get", "crontabs"]);
    let header: Vec<&str> = out
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    assert_eq!(header, ["NAME", "SPEC", "REPLICAS", "READY"], "{out}");
    assert!(
        out.contains("nightly") && out.contains("0 3 * * *"),
        "{out}"
    );
    let wide = k0.ok(&["get", "crontabs", "-o", "wide"]);
    assert!(wide.contains("IMAGE") && wide.contains("busybox"), "{wide}");

    // kubectl explain reads the kind's schema from OpenAPI v3.
    let explained = k0.ok(&["explain", "crontabs.spec"]);
    assert!(
        explained.contains("cronSpec") && explained.contains("replicas"),
        "{explained}"
    );

    // Unknown fields: Strict (kubectl's default) refuses them.
    let (code, _, err) = apply(
        &k0,
        "default",
        &crontab("odd", json!({"cronSpec": "* * * * *", "bogus": 1})),
    );
    assert_ne!(code, 0);
    assert!(err.contains("unknown field \"spec.bogus\""), "{err}");
    // The schema's bounds and required fields.
    let (code, _, err) = apply(
        &k0,
        "default",
        &crontab("big", json!({"cronSpec": "* * * * *", "replicas": 20})),
    );
    assert_ne!(code, 0);
    assert!(
        err.contains("spec.replicas") && err.contains("is invalid"),
        "{err}"
    );
    let (code, _, err) = apply(&k0, "default", &crontab("empty", json!({"image": "x"})));
    assert_ne!(code, 0);
    assert!(err.contains("spec.cronSpec: Required value"), "{err}");
    let (ok, _, _) = k0.run(&["get", "ct", "odd"]);
    assert!(!ok, "nothing was stored");

    // A second apply changes the spec: a new generation.
    let (code, out, err) = apply(
        &k0,
        "default",
        &crontab(
            "nightly",
            json!({"cronSpec": "0 4 * * *", "image": "busybox"}),
        ),
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("configured"), "{out}");
    let o = get_json(&k0, &["get", "ct", "nightly"]);
    assert_eq!(o["spec"]["cronSpec"], "0 4 * * *");
    assert_eq!(o["metadata"]["generation"], 2);

    // The status subresource: only it writes the status, and it is no
    // new generation.
    k0.ok(&[
        "patch",
        "ct",
        "nightly",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"ready":true}}"#,
    ]);
    k0.ok(&[
        "patch",
        "ct",
        "nightly",
        "--type=merge",
        "-p",
        r#"{"status":{"ready":false}}"#,
    ]);
    let o = get_json(&k0, &["get", "ct", "nightly"]);
    assert_eq!(o["status"]["ready"], true, "{o}");
    assert_eq!(o["metadata"]["generation"], 2);
    let out = k0.ok(&["get", "ct", "nightly"]);
    assert!(out.contains("true"), "{out}");
    // A strategic merge patch has no meaning for a custom kind.
    let (ok, _, err) = k0.run(&["patch", "ct", "nightly", "-p", r#"{"spec":{"replicas":2}}"#]);
    assert!(!ok, "{err}");
    // A JSON patch does.
    k0.ok(&[
        "patch",
        "ct",
        "nightly",
        "--type=json",
        "-p",
        r#"[{"op":"replace","path":"/spec/replicas","value":3}]"#,
    ]);
    assert_eq!(
        get_json(&k0, &["get", "ct", "nightly"])["spec"]["replicas"],
        3
    );

    // The scale subresource: kubectl scale, within the schema's bounds.
    k0.ok(&["scale", "ct", "nightly", "--replicas=5"]);
    let o = get_json(&k0, &["get", "ct", "nightly"]);
    assert_eq!(o["spec"]["replicas"], 5, "{o}");
    let (ok, _, err) = k0.run(&["scale", "ct", "nightly", "--replicas=20"]);
    assert!(!ok && err.contains("spec.replicas"), "{err}");
    let scale = get_json(&k0, &["get", "ct", "nightly", "--subresource=scale"]);
    assert_eq!(scale["kind"], "Scale", "{scale}");
    assert_eq!(scale["spec"]["replicas"], 5, "{scale}");

    // Labels and selectors.
    k0.ok(&["label", "ct", "nightly", "tier=batch"]);
    let out = k0.ok(&["get", "ct", "-l", "tier=batch", "-o", "name"]);
    assert_eq!(out.trim(), "crontab.stable.example.com/nightly");
    let out = k0.ok(&["get", "ct", "-l", "tier=web", "-o", "name"]);
    assert_eq!(out.trim(), "");

    // Finalizers hold a deleted object until they are gone.
    let mut held = crontab("held", json!({"cronSpec": "* * * * *"}));
    held["metadata"]["finalizers"] = json!(["example.com/hold"]);
    let (code, out, err) = apply(&k0, "default", &held);
    assert_eq!(code, 0, "{out}{err}");
    k0.ok(&["delete", "ct", "held", "--wait=false"]);
    let o = get_json(&k0, &["get", "ct", "held"]);
    assert!(o["metadata"]["deletionTimestamp"].is_string(), "{o}");
    k0.ok(&[
        "patch",
        "ct",
        "held",
        "--type=merge",
        "-p",
        r#"{"metadata":{"finalizers":null}}"#,
    ]);
    let (ok, _, err) = k0.run(&["get", "ct", "held"]);
    assert!(!ok && err.contains("not found"), "{err}");

    // A viewer reads and is refused writes.
    let viewer = Kubectl::new(dir.path(), &c, 1, &c.token("viewer", None));
    viewer.ok(&["get", "ct", "nightly"]);
    let (ok, _, err) = viewer.run(&["delete", "ct", "nightly"]);
    assert!(!ok && err.contains("forbidden"), "{err}");

    // A namespace's deletion takes its custom resources along.
    k0.ok(&["create", "namespace", "team"]);
    let (code, out, err) = apply(
        &k0,
        "team",
        &crontab("weekly", json!({"cronSpec": "0 0 * * 0"})),
    );
    assert_eq!(code, 0, "{out}{err}");
    k0.ok(&["delete", "namespace", "team", "--wait=false"]);
    eventually(Duration::from_secs(20), "namespace team is gone", || {
        let (ok, _, _) = k0.run(&["get", "namespace", "team"]);
        async move { !ok }
    })
    .await;
    k0.ok(&["create", "namespace", "team"]);
    let out = k0.ok(&["get", "ct", "-n", "team", "-o", "name"]);
    assert_eq!(out.trim(), "", "the old namespace's objects are gone");

    // A second CRD of the group with the same kind: its names are not
    // accepted while the first holds them.
    let mut twin = crd();
    twin["metadata"]["name"] = json!("crontabz.stable.example.com");
    twin["spec"]["names"] =
        json!({"plural": "crontabz", "singular": "crontabz", "kind": "CronTab"});
    let (code, out, err) = apply(&k0, "default", &twin);
    assert_eq!(code, 0, "{out}{err}");
    let established = |k: &Kubectl, name: &str| -> String {
        let v = get_json(k, &["get", "crd", name]);
        v["status"]["conditions"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["type"] == "NamesAccepted").cloned())
            .map(|c| format!("{} {}", c["status"], c["message"]))
            .unwrap_or_default()
    };
    let twin_names = established(&k0, "crontabz.stable.example.com");
    assert!(
        twin_names.contains("False") && twin_names.contains("already in use"),
        "{twin_names}"
    );
    let (ok, _, _) = k0.run(&["get", "crontabz.stable.example.com"]);
    assert!(!ok, "not served");

    // The CRD's deletion takes its objects along (and frees its names for
    // the twin); a new CRD of the same name starts empty.
    k0.ok(&["delete", "crd", "crontabs.stable.example.com"]);
    eventually(Duration::from_secs(5), "crontabs are not served", || {
        let (ok, _, _) = k2.run(&["get", "crontabs.stable.example.com"]);
        async move { !ok }
    })
    .await;
    let twin_names = established(&k0, "crontabz.stable.example.com");
    assert!(twin_names.contains("True"), "{twin_names}");
    eventually(Duration::from_secs(5), "crontabz are served", || {
        let (ok, _, _) = k0.run(&["get", "crontabz.stable.example.com"]);
        async move { ok }
    })
    .await;
    k0.ok(&["delete", "crd", "crontabz.stable.example.com"]);
    let (code, out, err) = apply(&k0, "default", &crd());
    assert_eq!(code, 0, "{out}{err}");
    eventually(Duration::from_secs(5), "crontabs are served again", || {
        let r = k0.run(&["get", "crontabs", "-A", "-o", "name"]);
        async move { r.0 && r.1.trim().is_empty() }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_rs_uses_custom_resources_as_dynamic_objects() {
    let _g = serial().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let c = start_cluster(3, dir.path(), &[]).await;
    let admin = c.token("admin", None);
    let k = Kubectl::new(dir.path(), &c, 0, &admin);
    eventually(Duration::from_secs(20), "namespace default exists", || {
        let ok = k.run(&["get", "namespace", "default"]).0;
        async move { ok }
    })
    .await;
    let (code, out, err) = apply(&k, "default", &crd());
    assert_eq!(code, 0, "{out}{err}");

    let client = crate::kube_rs::client(&c, 1, &admin).await;
    // Discovery finds the kind on this replica.
    let gvk = GroupVersionKind::gvk("stable.example.com", "v1", "CronTab");
    let mut found = None;
    for _ in 0..50 {
        if let Ok((ar, _caps)) = kube::discovery::pinned_kind(&client, &gvk).await {
            found = Some(ar);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ar: ApiResource = found.expect("discovery finds CronTab");
    assert_eq!(ar.plural, "crontabs");
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), "default", &ar);

    let mut events = api
        .watch(&WatchParams::default(), "0")
        .await
        .expect("watch")
        .boxed();
    let mut obj = DynamicObject::new("a", &ar).within("default");
    obj.data = json!({"spec": {"cronSpec": "* * * * *"}});
    let created = api
        .create(&PostParams::default(), &obj)
        .await
        .expect("create");
    assert_eq!(created.data["spec"]["replicas"], 1);
    let added = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match events.try_next().await {
                Ok(Some(WatchEvent::Bookmark(_))) => continue,
                other => return other,
            }
        }
    })
    .await
    .expect("an event in time")
    .expect("no watch error");
    match added {
        Some(WatchEvent::Added(o)) => assert_eq!(o.metadata.name.as_deref(), Some("a")),
        other => panic!("{other:?}"),
    }
    // A stale resourceVersion is a Conflict.
    let mut stale = created.clone();
    stale.metadata.resource_version = Some("1".into());
    match api.replace("a", &PostParams::default(), &stale).await {
        Err(kube::Error::Api(s)) => assert_eq!(s.code, 409, "{s:?}"),
        other => panic!("{other:?}"),
    }
    let list = api.list(&Default::default()).await.expect("list");
    assert_eq!(list.items.len(), 1);
    // A streaming list of the kind: "a", then the bookmark ending it.
    let mut initial = api
        .watch(&WatchParams::default().initial_events().timeout(10), "")
        .await
        .expect("streaming list")
        .boxed();
    let mut seen = Vec::new();
    let end = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(ev) = initial.try_next().await.expect("event") {
            match ev {
                WatchEvent::Added(o) => seen.push(o.metadata.name.unwrap_or_default()),
                WatchEvent::Bookmark(b) => return Some(b),
                _ => {}
            }
        }
        None
    })
    .await
    .expect("the initial events in time")
    .expect("a bookmark ends them");
    assert_eq!(seen, ["a"]);
    assert_eq!(
        end.metadata
            .annotations
            .get("k8s.io/initial-events-end")
            .map(String::as_str),
        Some("true")
    );
    api.delete("a", &Default::default()).await.expect("delete");
    let deleted = tokio::time::timeout(Duration::from_secs(10), async {
        while let Ok(Some(e)) = events.try_next().await {
            if let WatchEvent::Deleted(o) = e {
                return Some(o);
            }
        }
        None
    })
    .await
    .expect("the deletion in time");
    assert_eq!(deleted.and_then(|o| o.metadata.name).as_deref(), Some("a"));
    match api.get("a").await {
        Err(kube::Error::Api(s)) => assert_eq!(s.code, 404),
        other => panic!("{other:?}"),
    }
    // A list at exactly the earlier resourceVersion still has "a".
    let then = list.metadata.resource_version.clone().expect("list rv");
    let exact = api
        .list(
            &kube::api::ListParams::default()
                .at(&then)
                .matching(kube::api::VersionMatch::Exact),
        )
        .await
        .expect("exact list");
    let names: Vec<String> = exact
        .items
        .iter()
        .filter_map(|o| o.metadata.name.clone())
        .collect();
    assert_eq!(names, ["a"]);
    assert!(api
        .list(&Default::default())
        .await
        .expect("list")
        .items
        .is_empty());
}
