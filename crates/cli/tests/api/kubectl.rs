//! The Kubernetes HTTP API, judged by the real kubectl (on this project's
//! machines; a test that cannot find it fails): discovery, `get` of every
//! kind as server-side tables (`-o wide`, `-A`, `-l`), `-o json|yaml|name`,
//! pagination, `get -w`, run/create/replace/delete, label, annotate,
//! patch (json, merge, strategic), scale, errors as kubectl prints them
//! (and refusals of what is not served yet, changing nothing), tokens and
//! roles; `apply` (create, unchanged, three-way strategic merges), `diff`,
//! server dry runs, field validation, `set image`, `edit`, `rollout
//! restart|history|undo`, `explain`, `auth whoami|can-i [--list]`, `describe`,
//! `drain`.

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

    // auth whoami (SelfSubjectReview) and can-i (SelfSubjectAccessReview,
    // sent as protobuf), decided by the same roles.
    let me = viewer.ok(&["auth", "whoami"]);
    assert!(
        words(&me).contains(&vec!["Username".to_string(), "viewer".to_string()]),
        "{me}"
    );
    assert!(me.contains("keelson:viewer"), "{me}");
    assert_eq!(
        viewer
            .ok(&["auth", "can-i", "list", "deployments.apps"])
            .trim(),
        "yes"
    );
    let (ok, out, _) = viewer.run(&["auth", "can-i", "create", "pods"]);
    assert!(!ok, "can-i answers no with exit status 1");
    assert_eq!(out.trim(), "no");
    assert_eq!(
        admin.ok(&["auth", "can-i", "delete", "nodes"]).trim(),
        "yes"
    );
    // can-i --list (SelfSubjectRulesReview): a viewer reads everything
    // but Secrets; an admin does anything.
    let rules = viewer.ok(&["auth", "can-i", "--list"]);
    let rows = words(&rules);
    assert!(
        rows.iter()
            .any(|r| r.first().is_some_and(|x| x == "pods")
                && r.join(" ").contains("[get list watch]")),
        "{rules}"
    );
    assert!(
        rows.iter()
            .any(|r| r.first().is_some_and(|x| x == "deployments.apps")),
        "{rules}"
    );
    assert!(!rules.contains("secrets"), "{rules}");
    let rules = admin.ok(&["auth", "can-i", "--list"]);
    assert!(
        words(&rules)
            .iter()
            .any(|r| r.first().is_some_and(|x| x == "*.*") && r.join(" ").contains("[*]")),
        "{rules}"
    );

    // A token the cluster does not know.
    let stranger = Kubectl::new(dir.path(), &c, 1, "not-a-token-of-this-cluster");
    let (ok, _, err) = stranger.run(&["get", "pods"]);
    assert!(!ok);
    assert!(err.contains("You must be logged in to the server"), "{err}");

    // A viewer may not write.
    let (ok, _, err) = viewer.run(&["delete", "pod", "db"]);
    assert!(!ok);
    assert!(
        err.contains(r#"Error from server (Forbidden): pods "db" is forbidden: User "viewer" cannot delete resource "pods" in API group "" in the namespace "default""#),
        "{err}"
    );

    // Writes: run (POST), create -f (POST), replace -f (PUT), delete.
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
    assert_eq!(admin.ok(&["create", "-f", &m]).trim(), "pod/batch created");
    let (ok, _, err) = admin.run(&["create", "-f", &m]);
    assert!(!ok);
    assert!(err.contains("AlreadyExists"), "{err}");
    std::fs::write(
        &manifest,
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: batch\n  labels: {app: batch, tier: low}\nspec:\n  containers:\n  - name: main\n    image: builtin/sleep\n",
    )
    .expect("manifest");
    admin.ok(&["replace", "-f", &m]);
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

    // client-go's typed clients send protobuf (kubectl create deployment,
    // namespace, service).
    assert_eq!(
        admin
            .ok(&[
                "create",
                "deployment",
                "x",
                "--image=builtin/sleep",
                "--replicas=0"
            ])
            .trim(),
        "deployment.apps/x created"
    );
    let x: serde_json::Value =
        serde_json::from_str(&admin.ok(&["get", "deployment", "x", "-o", "json"])).expect("json");
    assert_eq!(
        x["spec"]["replicas"], 0,
        "a zero with presence is kept: {x}"
    );
    assert_eq!(x["spec"]["selector"]["matchLabels"]["app"], "x", "{x}");
    assert_eq!(
        x["spec"]["template"]["spec"]["containers"],
        serde_json::json!([{"name": "sleep", "image": "builtin/sleep", "imagePullPolicy": "Always"}]),
        "{x}"
    );
    assert_eq!(
        admin.ok(&["create", "namespace", "team"]).trim(),
        "namespace/team created"
    );
    assert_eq!(
        admin
            .ok(&["create", "service", "clusterip", "x", "--tcp=80:8080"])
            .trim(),
        "service/x created"
    );
    let svc: serde_json::Value =
        serde_json::from_str(&admin.ok(&["get", "service", "x", "-o", "json"])).expect("json");
    assert_eq!(svc["spec"]["ports"][0]["port"], 80, "{svc}");
    assert_eq!(svc["spec"]["ports"][0]["targetPort"], 8080, "{svc}");
    assert_eq!(svc["spec"]["selector"]["app"], "x", "{svc}");
    std::fs::write(
        &manifest,
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: odd\nspec:\n  containers:\n  - name: main\n    image: builtin/sleep\n    bogus: 1\n",
    )
    .expect("manifest");
    let (ok, _, err) = admin.run(&["create", "-f", &m]);
    assert!(!ok);
    assert!(err.contains("bogus"), "the unknown field is named: {err}");
    let out = admin.ok(&["get", "pods"]);
    assert_eq!(
        names(&out),
        ["batch", "db", "web-0", "web-1", "web-2"],
        "{out}"
    );
    assert_eq!(names(&admin.ok(&["get", "deployments"])), ["web", "x"]);

    // describe: the object, then its events (a list by involvedObject
    // field selectors).
    let out = admin.ok(&["describe", "pod", "db"]);
    assert!(
        out.contains("Name:") && out.contains("db") && out.contains("Events:"),
        "{out}"
    );

    // drain: cordon (a strategic merge patch of the node), then an
    // eviction (policy/v1, sent as protobuf) of each pod on it.
    let out = admin.ok(&[
        "drain",
        "n1",
        "--force",
        "--grace-period=0",
        "--timeout=60s",
    ]);
    assert!(
        out.contains("node/n1 cordoned") && out.contains("node/n1 drained"),
        "{out}"
    );
    assert_eq!(names(&admin.ok(&["get", "pods"])), ["batch", "db"]);
    assert_eq!(
        admin.ok(&["get", "node", "n1", "-o", "jsonpath={.spec.unschedulable}"]),
        "true"
    );
    admin.ok(&["uncordon", "n1"]);
}

/// The manifest `kubectl apply` is given: a Deployment (two containers,
/// the first with `image` and `extra` env lines) and a Service.
fn shop(image: &str, extra_env: &str, sidecar: bool) -> String {
    let side = if sidecar {
        "      - name: side\n        image: builtin/sleep\n"
    } else {
        ""
    };
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: shop\n  labels: {{app: shop}}\nspec:\n  replicas: 2\n  selector:\n    matchLabels: {{app: shop}}\n  template:\n    metadata:\n      labels: {{app: shop}}\n    spec:\n      containers:\n      - name: main\n        image: {image}\n        env:\n        - name: MODE\n          value: prod\n{extra_env}{side}---\napiVersion: v1\nkind: Service\nmetadata:\n  name: shop\nspec:\n  selector: {{app: shop}}\n  ports:\n  - port: 80\n    targetPort: 8080\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_apply_edit_diff_explain_and_dry_runs() {
    let _g = serial().await;
    let dir = tempfile::tempdir().expect("tempdir");
    // Controllers on (rollout history needs ReplicaSets), no scheduler.
    let c = common::start_control_plane(3, dir.path(), &["--disable-scheduler"]).await;
    let k = Kubectl::new(dir.path(), &c, 1, &c.token("admin", None));
    eventually(Duration::from_secs(20), "namespace default exists", || {
        let (ok, _, _) = k.run(&["get", "ns", "default"]);
        async move { ok }
    })
    .await;
    let file = dir.path().join("shop.yaml");
    let m = file.display().to_string();
    let deployment = |k: &Kubectl| -> serde_json::Value {
        serde_json::from_str(&k.ok(&["get", "deployment", "shop", "-o", "json"])).expect("json")
    };
    let containers = |d: &serde_json::Value| -> Vec<(String, String)> {
        d["spec"]["template"]["spec"]["containers"]
            .as_array()
            .expect("containers")
            .iter()
            .map(|c| {
                (
                    c["name"].as_str().unwrap_or_default().to_string(),
                    c["image"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect()
    };

    // Client-side apply with validation on (kubectl reads /openapi/v3):
    // created, then unchanged.
    std::fs::write(&file, shop("builtin/sleep", "", true)).expect("manifest");
    assert_eq!(
        k.ok(&["apply", "-f", &m]).trim(),
        "deployment.apps/shop created\nservice/shop created"
    );
    assert_eq!(
        k.ok(&["apply", "-f", &m]).trim(),
        "deployment.apps/shop unchanged\nservice/shop unchanged"
    );
    // A label someone else added survives the next apply (three-way
    // merge: it is not in the last-applied configuration).
    k.ok(&["label", "deployment", "shop", "owner=ops"]);
    // A changed manifest: a new image and one more env var, sent as a
    // strategic merge patch (containers merged by name, env by name).
    std::fs::write(
        &file,
        shop(
            "builtin/serve",
            "        - name: LEVEL\n          value: debug\n",
            true,
        ),
    )
    .expect("manifest");
    assert_eq!(
        k.ok(&["apply", "-f", &m]).trim(),
        "deployment.apps/shop configured\nservice/shop unchanged"
    );
    let d = deployment(&k);
    assert_eq!(
        containers(&d),
        [
            ("main".to_string(), "builtin/serve".to_string()),
            ("side".to_string(), "builtin/sleep".to_string())
        ]
    );
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["env"],
        serde_json::json!([{"name": "MODE", "value": "prod"}, {"name": "LEVEL", "value": "debug"}])
    );
    assert_eq!(d["metadata"]["labels"]["owner"], "ops", "{d}");
    assert!(
        d["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
            .as_str()
            .is_some_and(|a| a.contains("builtin/serve"))
    );
    // A container taken out of the manifest goes (a `$patch: delete`).
    std::fs::write(&file, shop("builtin/serve", "", false)).expect("manifest");
    k.ok(&["apply", "-f", &m]);
    let d = deployment(&k);
    assert_eq!(
        containers(&d),
        [("main".to_string(), "builtin/serve".to_string())]
    );
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["env"],
        serde_json::json!([{"name": "MODE", "value": "prod"}])
    );

    // diff and apply --dry-run=server show a change and make none.
    std::fs::write(&file, shop("builtin/echo", "", false)).expect("manifest");
    let (same, out, err) = k.run(&["diff", "-f", &m]);
    assert!(!same, "kubectl diff exits 1 on a difference: {err}");
    assert!(
        out.contains("-        image: builtin/serve")
            && out.contains("+        image: builtin/echo"),
        "{out}\n{err}"
    );
    assert_eq!(
        k.ok(&["apply", "-f", &m, "--dry-run=server"]).trim(),
        "deployment.apps/shop configured (server dry run)\nservice/shop unchanged (server dry run)"
    );
    assert_eq!(containers(&deployment(&k))[0].1, "builtin/serve");
    assert_eq!(
        k.ok(&["delete", "service", "shop", "--dry-run=server"])
            .trim(),
        "service \"shop\" deleted (server dry run)"
    );
    k.ok(&["get", "service", "shop"]);
    std::fs::write(
        &file,
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: dry\nspec:\n  containers:\n  - name: main\n    image: builtin/sleep\n",
    )
    .expect("manifest");
    assert_eq!(
        k.ok(&["create", "-f", &m, "--dry-run=server"]).trim(),
        "pod/dry created (server dry run)"
    );
    let (found, _, _) = k.run(&["get", "pod", "dry"]);
    assert!(!found, "a dry-run create stores nothing");

    // Field validation: Strict (kubectl's default) refuses an unknown
    // field naming its path; warn creates and prints a warning; false
    // (Ignore) creates silently.
    std::fs::write(
        &file,
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: odd\nspec:\n  containers:\n  - name: main\n    image: builtin/sleep\n    bogus: 1\n",
    )
    .expect("manifest");
    let (ok, _, err) = k.run(&["apply", "-f", &m]);
    assert!(!ok);
    assert!(err.contains("bogus"), "the unknown field is named: {err}");
    let (ok, out, err) = k.run(&["apply", "-f", &m, "--validate=warn"]);
    assert!(ok, "{out}{err}");
    assert!(
        err.contains("unknown field \"spec.containers[0].bogus\""),
        "a warning names the field: {err}"
    );
    k.ok(&["delete", "pod", "odd", "--wait=false"]);

    // kubectl patch (strategic by default), set image, edit, rollout.
    k.ok(&[
        "patch",
        "deployment",
        "shop",
        "-p",
        r#"{"spec":{"template":{"spec":{"containers":[{"name":"main","env":[{"name":"EXTRA","value":"1"}]}]}}}}"#,
    ]);
    assert_eq!(
        deployment(&k)["spec"]["template"]["spec"]["containers"][0]["env"],
        serde_json::json!([{"name": "MODE", "value": "prod"}, {"name": "EXTRA", "value": "1"}])
    );
    k.ok(&["set", "image", "deployment/shop", "main=builtin/echo"]);
    assert_eq!(containers(&deployment(&k))[0].1, "builtin/echo");
    let editor = dir.path().join("editor.sh");
    std::fs::write(
        &editor,
        "#!/bin/sh\nsed -i 's/replicas: 2/replicas: 4/' \"$1\"\n",
    )
    .expect("editor");
    std::fs::set_permissions(&editor, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    let out = std::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&k.config)
        .args(["edit", "deployment", "shop"])
        .env("HOME", &k.home)
        .env("KUBE_EDITOR", &editor)
        .env_remove("KUBECONFIG")
        .output()
        .expect("kubectl edit");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(deployment(&k)["spec"]["replicas"], 4);
    k.ok(&["rollout", "restart", "deployment/shop"]);
    assert!(
        deployment(&k)["spec"]["template"]["metadata"]["annotations"]
            ["kubectl.kubernetes.io/restartedAt"]
            .is_string()
    );
    // The controller made a ReplicaSet per template: history lists them,
    // and undo goes back to the one before.
    eventually(Duration::from_secs(20), "rollout history", || {
        let (ok, out, _) = k.run(&["rollout", "history", "deployment/shop"]);
        async move {
            ok && out
                .lines()
                .filter(|l| l.trim_start().starts_with(char::is_numeric))
                .count()
                >= 2
        }
    })
    .await;
    k.ok(&["rollout", "undo", "deployment/shop"]);
    assert!(deployment(&k)["spec"]["template"]["metadata"]
        .get("annotations")
        .and_then(|a| a.get("kubectl.kubernetes.io/restartedAt"))
        .is_none());

    // explain reads the OpenAPI document's schemas and the docs in them.
    let out = k.ok(&["explain", "deployment.spec.strategy"]);
    assert!(out.contains("rollingUpdate"), "{out}");
    let out = k.ok(&["explain", "pods.spec.dnsPolicy"]);
    assert!(out.contains("ClusterFirst"), "{out}");
}
