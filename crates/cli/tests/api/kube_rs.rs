//! The Kubernetes HTTP API judged by kube-rs (the `kube` crate with
//! k8s-openapi's types, a client written elsewhere): typed create, get,
//! list with selectors (and at an exact resourceVersion), watch (and
//! streaming lists), merge / strategic / JSON patches, the scale
//! subresource, a replace with a stale resourceVersion answered 409
//! Conflict, dry runs, deletecollection, and errors as kube's `Status`.

use crate::common;

use std::time::Duration;

use common::{serial, start_cluster, ProcCluster};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{Container, EnvVar, Namespace, Pod, PodSpec, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};

/// A kube client of replica `i` with `token`, from a kubeconfig as kubectl
/// would read it.
pub(crate) async fn client(c: &ProcCluster, i: usize, token: &str) -> kube::Client {
    let m = &c.members[i];
    let text = m.kubeconfig(token);
    let kc = kube::config::Kubeconfig::from_yaml(&text).expect("kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .expect("config");
    kube::Client::try_from(config).expect("client")
}

fn labels(pairs: &[(&str, &str)]) -> Option<std::collections::BTreeMap<String, String>> {
    Some(
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )
}

fn pod(name: &str, app: &str) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: labels(&[("app", app)]),
            ..Default::default()
        },
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "main".into(),
                image: Some("builtin/sleep".into()),
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn deployment(name: &str) -> Deployment {
    Deployment {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        spec: Some(DeploymentSpec {
            replicas: Some(2),
            selector: LabelSelector {
                match_labels: labels(&[("app", name)]),
                ..Default::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: labels(&[("app", name)]),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![Container {
                        name: "main".into(),
                        image: Some("builtin/sleep".into()),
                        env: Some(vec![EnvVar {
                            name: "A".into(),
                            value: Some("1".into()),
                            ..Default::default()
                        }]),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The `Status` of an API error, or a panic naming what came instead.
fn status<T: std::fmt::Debug>(r: Result<T, kube::Error>) -> kube::core::Status {
    match r {
        Err(kube::Error::Api(s)) => *s,
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_rs_typed_clients_work_unchanged() {
    let _g = serial().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let c = start_cluster(3, dir.path(), &[]).await;
    let admin = client(&c, 0, &c.token("admin", None)).await;
    let namespaces: Api<Namespace> = Api::all(admin.clone());
    common::eventually(Duration::from_secs(20), "namespace default", || {
        let ns = namespaces.clone();
        async move { ns.get("default").await.is_ok() }
    })
    .await;

    // Create and read back, typed.
    let pods: Api<Pod> = Api::namespaced(admin.clone(), "default");
    let pp = PostParams::default();
    let created = pods.create(&pp, &pod("a", "web")).await.expect("create");
    assert!(created.metadata.uid.is_some() && created.metadata.resource_version.is_some());
    pods.create(&pp, &pod("b", "web")).await.expect("create");
    pods.create(&pp, &pod("c", "db")).await.expect("create");
    let got = pods.get("a").await.expect("get");
    assert_eq!(
        got.spec.as_ref().map(|s| s.containers[0].image.clone()),
        Some(Some("builtin/sleep".to_string()))
    );
    // Already there: 409 AlreadyExists.
    let s = status(pods.create(&pp, &pod("a", "web")).await);
    assert_eq!((s.code, s.reason.as_str()), (409, "AlreadyExists"));
    // Not there: 404 NotFound.
    let s = status(pods.get("nope").await);
    assert_eq!((s.code, s.reason.as_str()), (404, "NotFound"));

    // Lists: a label selector, pages, all namespaces.
    let web = pods
        .list(&ListParams::default().labels("app=web"))
        .await
        .expect("list");
    let mut names: Vec<String> = web
        .items
        .iter()
        .filter_map(|p| p.metadata.name.clone())
        .collect();
    names.sort();
    assert_eq!(names, ["a", "b"]);
    let page = pods
        .list(&ListParams::default().limit(2))
        .await
        .expect("page");
    assert_eq!(page.items.len(), 2);
    let token = page.metadata.continue_.clone().expect("a continue token");
    let rest = pods
        .list(&ListParams::default().limit(2).continue_token(&token))
        .await
        .expect("next page");
    assert_eq!(rest.items.len(), 1);
    let all: Api<Pod> = Api::all(admin.clone());
    assert_eq!(
        all.list(&ListParams::default())
            .await
            .expect("all")
            .items
            .len(),
        3
    );

    // A watch from the list's resourceVersion sees a pod created after it.
    let rv = web.metadata.resource_version.clone().expect("list rv");
    let mut events = pods
        .watch(&WatchParams::default().labels("app=web").timeout(30), &rv)
        .await
        .expect("watch")
        .boxed();
    pods.create(&pp, &pod("d", "web")).await.expect("create d");
    let seen = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(ev) = events.try_next().await.expect("event") {
            if let WatchEvent::Added(p) = ev {
                return p.metadata.name;
            }
        }
        None
    })
    .await
    .expect("an event within 20 s");
    assert_eq!(seen.as_deref(), Some("d"));

    // A list at exactly an earlier resourceVersion: the pods then.
    let before = pods
        .list(&ListParams::default().labels("app=web"))
        .await
        .expect("list");
    let before_rv = before.metadata.resource_version.clone().expect("list rv");
    pods.create(&pp, &pod("e", "web")).await.expect("create e");
    let exact = pods
        .list(
            &ListParams::default()
                .labels("app=web")
                .at(&before_rv)
                .matching(kube::api::VersionMatch::Exact),
        )
        .await
        .expect("exact list");
    assert_eq!(exact.items.len(), before.items.len(), "e came later");
    assert_eq!(
        exact.metadata.resource_version.as_deref(),
        Some(before_rv.as_str())
    );
    let now = pods
        .list(&ListParams::default().labels("app=web"))
        .await
        .expect("list");
    assert_eq!(now.items.len(), before.items.len() + 1);
    pods.delete("e", &Default::default())
        .await
        .expect("delete e");

    // A streaming list (sendInitialEvents): the current pods as ADDED,
    // then a bookmark marking their end.
    let web_now = pods
        .list(&ListParams::default().labels("app=web"))
        .await
        .expect("list")
        .items
        .len();
    let mut initial = pods
        .watch(
            &WatchParams::default()
                .labels("app=web")
                .initial_events()
                .timeout(10),
            "",
        )
        .await
        .expect("streaming list")
        .boxed();
    let (added, end) = tokio::time::timeout(Duration::from_secs(10), async {
        let mut added = 0;
        while let Some(ev) = initial.try_next().await.expect("event") {
            match ev {
                WatchEvent::Added(_) => added += 1,
                WatchEvent::Bookmark(b) => return (added, Some(b)),
                _ => {}
            }
        }
        (added, None)
    })
    .await
    .expect("the initial events in time");
    assert_eq!(added, web_now);
    let end = end.expect("a bookmark ends them");
    assert_eq!(
        end.metadata
            .annotations
            .get("k8s.io/initial-events-end")
            .map(String::as_str),
        Some("true")
    );

    // Patches: merge (labels), strategic (a container added by name next
    // to the one there), JSON patch.
    let deployments: Api<Deployment> = Api::namespaced(admin.clone(), "default");
    deployments
        .create(&pp, &deployment("shop"))
        .await
        .expect("create deployment");
    let params = PatchParams::default();
    deployments
        .patch(
            "shop",
            &params,
            &Patch::Merge(serde_json::json!({"metadata": {"labels": {"tier": "front"}}})),
        )
        .await
        .expect("merge patch");
    let d = deployments
        .patch(
            "shop",
            &params,
            &Patch::Strategic(
                serde_json::json!({"spec": {"template": {"spec": {"containers": [
                    {"name": "main", "env": [{"name": "B", "value": "2"}]},
                    {"name": "side", "image": "builtin/sleep"}
                ]}}}}),
            ),
        )
        .await
        .expect("strategic patch");
    let containers = d
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .map(|s| s.containers.clone())
        .unwrap_or_default();
    assert_eq!(
        containers
            .iter()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>(),
        ["main", "side"]
    );
    let env: Vec<String> = containers[0]
        .env
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(env, ["A", "B"]);
    assert_eq!(
        d.metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("tier"))
            .map(String::as_str),
        Some("front")
    );
    let patch: json_patch::Patch = serde_json::from_value(serde_json::json!([
        {"op": "replace", "path": "/spec/replicas", "value": 3}
    ]))
    .expect("json patch");
    deployments
        .patch("shop", &params, &Patch::Json::<()>(patch))
        .await
        .expect("json patch");
    let scale = deployments.get_scale("shop").await.expect("scale");
    assert_eq!(scale.spec.and_then(|s| s.replicas), Some(3));

    // Compare-and-swap: a replace of what was read succeeds; a second one
    // from the same (now stale) read is a 409 Conflict.
    let read = deployments.get("shop").await.expect("get");
    let mut first = read.clone();
    if let Some(s) = first.spec.as_mut() {
        s.replicas = Some(4);
    }
    deployments
        .replace("shop", &pp, &first)
        .await
        .expect("replace");
    let mut stale = read;
    if let Some(s) = stale.spec.as_mut() {
        s.replicas = Some(5);
    }
    let s = status(deployments.replace("shop", &pp, &stale).await);
    assert_eq!((s.code, s.reason.as_str()), (409, "Conflict"));
    assert_eq!(
        deployments
            .get("shop")
            .await
            .expect("get")
            .spec
            .and_then(|s| s.replicas),
        Some(4)
    );

    // pods/binding: bound once; a second binding is a 409 Conflict.
    let binding = |node: &str| {
        serde_json::json!({
            "apiVersion": "v1", "kind": "Binding",
            "metadata": {"name": "a"},
            "target": {"apiVersion": "v1", "kind": "Node", "name": node}
        })
    };
    let done: serde_json::Value = pods
        .create_subresource("binding", "a", &pp, &binding("n1"))
        .await
        .expect("bind");
    assert_eq!(done["status"], "Success", "{done}");
    assert_eq!(
        pods.get("a")
            .await
            .expect("get")
            .spec
            .and_then(|s| s.node_name),
        Some("n1".to_string())
    );
    let s = status(
        pods.create_subresource::<_, serde_json::Value>("binding", "a", &pp, &binding("n2"))
            .await,
    );
    assert_eq!((s.code, s.reason.as_str()), (409, "Conflict"));

    // A dry-run create stores nothing.
    let dry = PostParams {
        dry_run: true,
        ..Default::default()
    };
    pods.create(&dry, &pod("ghost", "web"))
        .await
        .expect("dry run");
    assert_eq!(status(pods.get("ghost").await).code, 404);

    // deletecollection: what the selector picks, answered as a list.
    let gone = pods
        .delete_collection(
            &DeleteParams::default(),
            &ListParams::default().labels("app=db"),
        )
        .await
        .expect("delete collection");
    let gone: Vec<String> = gone
        .left()
        .expect("a list of what was deleted")
        .items
        .into_iter()
        .filter_map(|p| p.metadata.name)
        .collect();
    assert_eq!(gone, ["c"]);
    assert_eq!(status(pods.get("c").await).code, 404);

    // A viewer reads and may not write: 403 Forbidden.
    let viewer = client(&c, 2, &c.token("viewer", None)).await;
    let vpods: Api<Pod> = Api::namespaced(viewer, "default");
    assert_eq!(
        vpods
            .list(&ListParams::default())
            .await
            .expect("viewer list")
            .items
            .len(),
        3
    );
    let s = status(vpods.create(&pp, &pod("e", "web")).await);
    assert_eq!((s.code, s.reason.as_str()), (403, "Forbidden"));
}

/// A seeded generator (xorshift), so a failing run can be repeated.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len())]
    }
}

/// A hostile body: random bytes, a mangled manifest, deep nesting, a
/// protobuf envelope of junk, patches with odd directives, or one too big.
fn hostile_body(rng: &mut Rng) -> Vec<u8> {
    let pod = br#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"h","labels":{"a":"b"}},"spec":{"containers":[{"name":"c","image":"builtin/sleep"}]}}"#;
    match rng.below(10) {
        0 => (0..rng.below(2000)).map(|_| rng.next() as u8).collect(),
        1 => {
            let mut b = pod.to_vec();
            for _ in 0..1 + rng.below(5) {
                let i = rng.below(b.len());
                b[i] = rng.next() as u8;
            }
            b
        }
        2 => {
            let cut = rng.below(pod.len());
            pod[..cut].to_vec()
        }
        3 => {
            let n = 1 + rng.below(100_000);
            format!("{}{}", "[".repeat(n), "]".repeat(n)).into_bytes()
        }
        4 => {
            let n = 1 + rng.below(20_000);
            format!("{}1{}", "{\"a\":".repeat(n), "}".repeat(n)).into_bytes()
        }
        5 => {
            let mut b = b"k8s\0".to_vec();
            b.extend((0..rng.below(500)).map(|_| rng.next() as u8));
            b
        }
        6 => rng
            .pick(&[
                r#"{"$patch":"delete"}"#,
                r#"{"spec":{"containers":[{"$patch":"replace"},{"name":"x"}]}}"#,
                r#"{"spec":{"$setElementOrder/containers":[{"name":"z"}],"containers":[{"image":"no-key"}]}}"#,
                r#"{"metadata":{"$deleteFromPrimitiveList/finalizers":[1,2]}}"#,
                r#"{"spec":{"$retainKeys":["containers"]}}"#,
                r#"[{"op":"move","from":"/spec","path":"/spec/x"}]"#,
                r#"[{"op":"add","path":"/metadata/labels/~2","value":1}]"#,
                r#"{"spec":{"replicas":99999999999999999999}}"#,
                r#"{"kind":"SelfSubjectAccessReview","spec":{"resourceAttributes":{"verb":"\u0000","resource":"pods"}}}"#,
            ])
            .as_bytes()
            .to_vec(),
        7 => vec![b' '; 4 * 1024 * 1024],
        8 => pod.to_vec(),
        _ => Vec::new(),
    }
}

/// Randomized hostile requests over the Kubernetes HTTP API (through
/// kube-rs' transport): each gets an HTTP answer, never a 500 or a dropped
/// connection, and the replica serves normally afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_requests_get_an_answer_never_a_crash() {
    let _g = serial().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let c = start_cluster(1, dir.path(), &[]).await;
    let admin = client(&c, 0, &c.token("admin", None)).await;
    let paths = [
        "/api/v1/namespaces/default/pods",
        "/api/v1/namespaces/default/pods/h",
        "/api/v1/namespaces/default/pods/h/status",
        "/api/v1/namespaces/default/pods/h/log?follow=true&tailLines=-3",
        "/api/v1/namespaces/default/pods/h/exec",
        "/api/v1/pods?limit=-5",
        "/api/v1/pods?labelSelector=a%20in%20(",
        "/api/v1/pods?fieldSelector=spec.bogus%3D1",
        "/api/v1/pods?resourceVersion=abc",
        "/api/v1/pods?watch=true&timeoutSeconds=1&resourceVersion=1",
        "/api/v1/namespaces/%ff%fe/pods",
        "/api/v1/nodes/n1/status",
        "/apis/apps/v1/namespaces/default/deployments",
        "/apis/apps/v1/namespaces/default/deployments/h/scale",
        "/apis/apps/v1/namespaces/default/pods",
        "/apis/batch/v1/jobs",
        "/apis/../../etc/passwd",
        "/openapi/v3/apis/apps/v1",
        "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
        "/api/v1/namespaces/default/pods?dryRun=All&fieldValidation=Warn",
        "/api/v1/namespaces/default/pods?dryRun=Maybe",
        "/api/v1/namespaces/default/pods?fieldValidation=Loose",
        "/api",
        "/version",
    ];
    let methods = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD"];
    let content_types = [
        "application/json",
        "application/yaml",
        "application/vnd.kubernetes.protobuf",
        "application/merge-patch+json",
        "application/strategic-merge-patch+json",
        "application/json-patch+json",
        "application/apply-patch+yaml",
        "text/plain",
        "",
    ];
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut codes = std::collections::BTreeMap::<u16, usize>::new();
    for i in 0..400 {
        let path = *rng.pick(&paths);
        let method = *rng.pick(&methods);
        let ct = *rng.pick(&content_types);
        let body = hostile_body(&mut rng);
        let oversized = body.len() > 3 * 1024 * 1024;
        let mut req = http::Request::builder().method(method).uri(path);
        if !ct.is_empty() {
            req = req.header("content-type", ct);
        }
        let req = req.body(kube::client::Body::from(body)).expect("request");
        let res = tokio::time::timeout(Duration::from_secs(20), admin.send(req))
            .await
            .unwrap_or_else(|_| panic!("request {i} ({method} {path} {ct}) had no answer in 20 s"));
        let res = match res {
            Ok(r) => r,
            // Refused at its Content-Length with a 413 and the connection
            // closed: the client may see the close before the answer.
            Err(_) if oversized => {
                *codes.entry(413).or_default() += 1;
                continue;
            }
            Err(e) => panic!("request {i} ({method} {path} {ct}) failed: {e:?}"),
        };
        if oversized {
            assert_eq!(res.status().as_u16(), 413, "request {i} ({method} {path})");
        }
        let code = res.status().as_u16();
        *codes.entry(code).or_default() += 1;
        assert!(
            code < 500 || code == 503,
            "request {i} ({method} {path} {ct}) answered {code}"
        );
        // Read what there is (a watch ends by its timeoutSeconds).
        let _ = tokio::time::timeout(
            Duration::from_secs(5),
            http_body_util::BodyExt::collect(res.into_body()),
        )
        .await;
    }
    eprintln!("answers by status: {codes:?}");
    assert!(
        codes.keys().any(|c| *c < 300),
        "some requests succeed: {codes:?}"
    );
    assert!(
        codes.contains_key(&400) && codes.contains_key(&415),
        "{codes:?}"
    );
    // Still serving.
    let ns: Api<Namespace> = Api::all(admin);
    ns.get("default")
        .await
        .expect("a normal read after the barrage");
}
