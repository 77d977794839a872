//! The Kubernetes HTTP API, judged by the real kubectl (on this project's
//! machines; a test that cannot find it fails): discovery, `get` of every
//! kind as server-side tables (`-o wide`, `-A`, `-l`), `-o json|yaml|name`,
//! pagination, `get -w`, run/create/replace/delete, label, annotate,
//! patch (json, merge), scale, errors as kubectl
//! prints them (and refusals of what is not served yet, changing
//! nothing), tokens and roles.

use crate::common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::ProcCluster;
use common::{eventually, fixtures, serial, start_cluster, KillOnDrop, Kubectl};
use keelson_sdk::types::{self as v1};
use keelson_sdk::Api;

/// The words of each line.
fn words(out: &str) -> Vec<Vec<String>> {
    out.lines()
        .map(|l| l.split_whitespace().map(String::from).collect())
        .collect()
}

/// The first column of every line but the header.
fn names(out: &str) -> Vec<String> {
    words(out)
        .into_iter()
        .skip(1)
        .filter_map(|w| w.into_iter().next())
        .collect()
}

async fn seeded_cluster(dir: &Path) -> ProcCluster {
    let c = start_cluster(3, dir, &[]).await;
    let cl = common::admin_client(&c);
    let ns: Api<v1::Namespace> = Api::all(cl.clone());
    eventually(Duration::from_secs(20), "namespace default exists", || {
        let ns = ns.clone();
        async move { ns.get("default").await.is_ok() }
    })
    .await;
    ns.create(&v1::Namespace {
        metadata: fixtures::meta("prod", &[]),
        ..Default::default()
    })
    .await
    .expect("namespace prod");
    let nodes: Api<v1::Node> = Api::all(cl.clone());
    for n in ["n1", "n2"] {
        nodes
            .create(&fixtures::node(n).build())
            .await
            .expect("node");
    }
    let pods: Api<v1::Pod> = Api::namespaced(cl.clone(), "default");
    for i in 0..3 {
        pods.create(
            &fixtures::pod(&format!("web-{i}"))
                .no_namespace()
                .labels(&[("app", "web")])
                .node("n1")
                .build(),
        )
        .await
        .expect("pod");
    }
    pods.create(
        &fixtures::pod("db")
            .no_namespace()
            .labels(&[("app", "db")])
            .build(),
    )
    .await
    .expect("pod");
    let prod: Api<v1::Pod> = Api::namespaced(cl.clone(), "prod");
    prod.create(&fixtures::pod("api").no_namespace().node("n2").build())
        .await
        .expect("pod in prod");
    let deps: Api<v1::Deployment> = Api::namespaced(cl, "default");
    deps.create(&fixtures::deployment("web", 3).build())
        .await
        .expect("deployment");
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_gets_every_kind_as_tables_and_objects() {
    let _g = serial().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let c = seeded_cluster(dir.path()).await;
    // Any replica serves it; this one was not the one written to.
    let k = Kubectl::new(dir.path(), &c, 2, &c.token("admin", None));

    // The dispatcher in /usr/bin/kubectl picks its client by this.
    let v: serde_json::Value =
        serde_json::from_str(&k.ok(&["version", "-o", "json"])).expect("version json");
    assert_eq!(v["serverVersion"]["minor"], "32", "{v}");

    let out = k.ok(&["get", "nodes"]);
    assert_eq!(
        words(&out)[0],
        ["NAME", "STATUS", "ROLES", "AGE", "VERSION"],
        "{out}"
    );
    assert_eq!(names(&out), ["n1", "n2"], "{out}");
    let wide = k.ok(&["get", "nodes", "-o", "wide"]);
    assert!(
        wide.lines()
            .next()
            .is_some_and(|h| h.contains("INTERNAL-IP")),
        "{wide}"
    );

    let out = k.ok(&["get", "pods"]);
    assert_eq!(
        words(&out)[0],
        ["NAME", "READY", "STATUS", "RESTARTS", "AGE"],
        "{out}"
    );
    assert_eq!(names(&out), ["db", "web-0", "web-1", "web-2"], "{out}");
    let wide = k.ok(&["get", "pods", "-o", "wide"]);
    let header = wide.lines().next().unwrap_or_default().to_string();
    assert!(header.contains("IP") && header.contains("NODE"), "{wide}");
    assert!(
        wide.lines()
            .any(|l| l.starts_with("web-0") && l.contains("n1")),
        "{wide}"
    );

    // Across namespaces: kubectl adds NAMESPACE from each row's metadata.
    let all = k.ok(&["get", "pods", "-A"]);
    assert_eq!(words(&all)[0][0], "NAMESPACE", "{all}");
    assert!(
        words(&all)
            .iter()
            .any(|w| w.first().map(String::as_str) == Some("prod")
                && w.get(1).map(String::as_str) == Some("api")),
        "{all}"
    );
    assert_eq!(names(&k.ok(&["get", "pods", "-n", "prod"])), ["api"]);

    // Selectors, names, pagination.
    assert_eq!(
        names(&k.ok(&["get", "pods", "-l", "app=web"])),
        ["web-0", "web-1", "web-2"]
    );
    assert_eq!(
        names(&k.ok(&["get", "pods", "--field-selector", "spec.nodeName=n1"])),
        ["web-0", "web-1", "web-2"]
    );
    assert_eq!(
        k.ok(&["get", "pods", "-o", "name", "-l", "app=db"]).trim(),
        "pod/db"
    );
    assert_eq!(
        names(&k.ok(&["get", "pods", "--chunk-size", "1"])),
        ["db", "web-0", "web-1", "web-2"]
    );

    // Other groups and kinds, by their short names too.
    let out = k.ok(&["get", "deploy"]);
    assert_eq!(
        words(&out)[0],
        ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"],
        "{out}"
    );
    assert_eq!(names(&out), ["web"]);
    assert!(names(&k.ok(&["get", "ns"])).contains(&"prod".to_string()));
    k.ok(&["get", "leases", "-A"]);
    k.ok(&["get", "svc,ep,rs,events", "-A"]);

    // Objects as JSON and YAML.
    let pod: serde_json::Value =
        serde_json::from_str(&k.ok(&["get", "pod", "web-1", "-o", "json"])).expect("json");
    assert_eq!(pod["kind"], "Pod");
    assert_eq!(pod["apiVersion"], "v1");
    assert_eq!(pod["metadata"]["name"], "web-1");
    assert_eq!(pod["spec"]["nodeName"], "n1");
    let list: serde_json::Value =
        serde_json::from_str(&k.ok(&["get", "pods", "-n", "prod", "-o", "json"])).expect("json");
    assert_eq!(list["kind"], "List");
    assert_eq!(list["items"][0]["metadata"]["name"], "api");
    let yaml = k.ok(&["get", "deployment", "web", "-o", "yaml"]);
    assert!(
        yaml.contains("kind: Deployment") && yaml.contains("replicas: 3"),
        "{yaml}"
    );
    let jp = k.ok(&["get", "pod", "web-2", "-o", "jsonpath={.spec.nodeName}"]);
    assert_eq!(jp, "n1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_writes_watches_errors_tokens_and_roles() {
    let _g = serial().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let c = seeded_cluster(dir.path()).await;
    let admin = Kubectl::new(dir.path(), &c, 0, &c.token("admin", None));

    let (ok, _, err) = admin.run(&["get", "pod", "nope"]);
    assert!(!ok);
    assert!(
        err.contains("Error from server (NotFound): pods \"nope\" not found"),
        "{err}"
    );
    let (ok, _, err) = admin.run(&["get", "widgets"]);
    assert!(!ok);
    assert!(
        err.contains("the server doesn't have a resource type \"widgets\""),
        "{err}"
    );

    // A viewer reads; a node reads too (as its role allows).
    let viewer = Kubectl::new(dir.path(), &c, 1, &c.token("viewer", None));
    assert_eq!(names(&viewer.ok(&["get", "nodes"])), ["n1", "n2"]);

    // A token the cluster does not know.
    let stranger = Kubectl::new(dir.path(), &c, 1, "not-a-token-of-this-cluster");
    let (ok, _, err) = stranger.run(&["get", "pods"]);
    assert!(!ok);
    assert!(err.contains("You must be logged in to the server"), "{err}");

    // A viewer may not write.
    let (ok, _, err) = viewer.run(&["delete", "pod", "db"]);
    assert!(!ok);
    assert!(err.contains("Error from server (Forbidden)"), "{err}");

    // Writes: run (POST), create -f (POST; no OpenAPI yet, so client-side
    // validation off), replace -f (PUT), delete.
    admin.ok(&[
        "run",
        "cache",
        "--image=builtin/sleep",
        "--labels=app=cache",
    ]);
    let manifest = dir.path().join("job.yaml");
    std::fs::write(
        &manifest,
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: batch\n  labels: {app: batch}\nspec:\n  containers:\n  - name: main\n    image: builtin/sleep\n",
    )
    .expect("manifest");
    let m = manifest.display().to_string();
    assert_eq!(
        admin.ok(&["create", "-f", &m, "--validate=false"]).trim(),
        "pod/batch created"
    );
    let (ok, _, err) = admin.run(&["create", "-f", &m, "--validate=false"]);
    assert!(!ok);
    assert!(err.contains("AlreadyExists"), "{err}");
    std::fs::write(
        &manifest,
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: batch\n  labels: {app: batch, tier: low}\nspec:\n  containers:\n  - name: main\n    image: builtin/sleep\n",
    )
    .expect("manifest");
    admin.ok(&["replace", "-f", &m, "--validate=false"]);
    assert_eq!(
        names(&admin.ok(&["get", "pods", "-l", "tier=low"])),
        ["batch"]
    );

    // A watch (kubectl get -w) sees a delete made meanwhile.
    let mut watch = KillOnDrop(
        Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&admin.config)
            .args(["get", "pods", "-w", "-l", "app=cache"])
            .env("HOME", &admin.home)
            .env_remove("KUBECONFIG")
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("kubectl get -w"),
    );
    let stdout = watch.0.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let next = |what: &str| {
        rx.recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("kubectl get -w printed no {what}"))
    };
    // The list first (a header and the pod), then the deletion.
    let header = next("header");
    assert!(header.starts_with("NAME"), "{header}");
    let listed = next("row for the pod");
    assert!(listed.starts_with("cache"), "{listed}");
    assert_eq!(
        admin.ok(&["delete", "pod", "cache"]).trim(),
        "pod \"cache\" deleted"
    );
    let deleted = next("row for the deletion");
    assert!(deleted.starts_with("cache"), "{deleted}");
    drop(watch);
    assert!(names(&admin.ok(&["get", "pods"]))
        .iter()
        .all(|n| n != "cache"));

    // Patches: label and annotate (merge patches), patch --type=json and
    // --type=merge, scale (a merge patch of the Scale subresource).
    admin.ok(&["label", "pod", "db", "tier=data"]);
    admin.ok(&["annotate", "pod", "db", "note=kept"]);
    admin.ok(&[
        "patch",
        "pod",
        "db",
        "--type=json",
        "-p",
        r#"[{"op":"add","path":"/metadata/labels/patched","value":"yes"}]"#,
    ]);
    admin.ok(&[
        "patch",
        "pod",
        "db",
        "--type=merge",
        "-p",
        r#"{"metadata":{"labels":{"tier":null}}}"#,
    ]);
    let db: serde_json::Value =
        serde_json::from_str(&admin.ok(&["get", "pod", "db", "-o", "json"])).expect("json");
    assert_eq!(db["metadata"]["labels"]["patched"], "yes", "{db}");
    assert_eq!(db["metadata"]["labels"].get("tier"), None, "{db}");
    assert_eq!(db["metadata"]["annotations"]["note"], "kept", "{db}");
    assert_eq!(
        admin
            .ok(&["scale", "deployment", "web", "--replicas=5"])
            .trim(),
        "deployment.apps/web scaled"
    );
    let replicas = admin.ok(&[
        "get",
        "deployment",
        "web",
        "-o",
        "jsonpath={.spec.replicas}",
    ]);
    assert_eq!(replicas, "5");
    let (ok, _, err) = admin.run(&[
        "patch",
        "pod",
        "db",
        "--type=json",
        "-p",
        r#"[{"op":"test","path":"/metadata/name","value":"other"}]"#,
    ]);
    assert!(!ok);
    assert!(err.contains("cannot be applied"), "{err}");

    // What is not served yet is refused clearly, and nothing changes.
    let (ok, _, err) = admin.run(&[
        "patch",
        "pod",
        "db",
        "-p",
        r#"{"metadata":{"labels":{"s":"t"}}}"#,
    ]);
    assert!(!ok);
    assert!(
        err.contains("strategic merge patch is not served yet"),
        "{err}"
    );
    let (ok, _, err) = admin.run(&["create", "deployment", "x", "--image=builtin/sleep"]);
    assert!(!ok);
    assert!(err.contains("not served yet"), "{err}");
    let (ok, _, err) = admin.run(&["delete", "pod", "db", "--dry-run=server"]);
    assert!(!ok);
    assert!(err.contains("dryRun is not supported yet"), "{err}");
    std::fs::write(
        &manifest,
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: odd\nspec:\n  containers:\n  - name: main\n    image: builtin/sleep\n    bogus: 1\n",
    )
    .expect("manifest");
    let (ok, _, err) = admin.run(&["create", "-f", &m, "--validate=false"]);
    assert!(!ok);
    assert!(err.contains("bogus"), "the unknown field is named: {err}");
    let out = admin.ok(&["get", "pods"]);
    assert_eq!(
        names(&out),
        ["batch", "db", "web-0", "web-1", "web-2"],
        "{out}"
    );
    assert_eq!(names(&admin.ok(&["get", "deployments"])), ["web"]);
}
