//! The `keelson` client verbs against a 3-replica cluster of real
//! processes: apply (create, unchanged, configured), get in its formats,
//! describe, scale, delete, cluster status, whoami, and one-line errors.

use crate::common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{eventually, keelson_bin, serial, start_cluster};

struct Cli<'a> {
    config: &'a Path,
}

impl Cli<'_> {
    /// Run `keelson args...`; (exit ok, stdout, stderr).
    fn run(&self, args: &[&str]) -> (bool, String, String) {
        let out = Command::new(keelson_bin())
            .args(args)
            .env("KEELSON_CONFIG", self.config)
            .env_remove("KEELSON_SERVER")
            .env_remove("KEELSON_TOKEN")
            .env("RUST_BACKTRACE", "0")
            .output()
            .expect("run keelson");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn ok(&self, args: &[&str]) -> String {
        let (ok, out, err) = self.run(args);
        assert!(ok, "keelson {args:?} failed: {err}");
        out
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_verbs_against_a_cluster() {
    let _g = serial().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let c = start_cluster(3, &dir.path().join("cluster"), &[]).await;
    let config = dir.path().join("config");
    let endpoints: String = c
        .api_endpoints()
        .iter()
        .map(|e| format!("- {e}\n"))
        .collect();
    std::fs::write(
        &config,
        format!("endpoints:\n{endpoints}token: {}\n", c.token("admin", None)),
    )
    .expect("write config");
    let cli = Cli { config: &config };
    eventually(Duration::from_secs(20), "API ready", || {
        let ok = cli.run(&["get", "namespaces"]).0;
        async move { ok }
    })
    .await;

    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/web.yaml");
    let manifest = manifest.to_str().expect("utf-8 path");
    let out = cli.ok(&["apply", "-f", manifest]);
    assert!(out.contains("deployment/web created"), "{out}");
    assert!(out.contains("service/web created"), "{out}");
    let out = cli.ok(&["apply", "-f", manifest]);
    assert!(out.contains("deployment/web unchanged"), "{out}");

    let out = cli.ok(&["get", "deployments"]);
    let mut lines = out.lines();
    let header = lines.next().unwrap_or_default();
    for col in ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"] {
        assert!(header.contains(col), "{out}");
    }
    assert!(
        lines.next().unwrap_or_default().starts_with("web "),
        "{out}"
    );
    let out = cli.ok(&["get", "deployment", "web", "-o", "yaml"]);
    assert!(out.contains("apiVersion: apps/v1"), "{out}");
    assert!(out.contains("maxUnavailable: 0"), "{out}");
    let out = cli.ok(&["get", "services", "-o", "name"]);
    assert_eq!(out.trim(), "service/web");

    let out = cli.ok(&["scale", "deployment", "web", "--replicas", "5"]);
    assert!(out.contains("scaled"), "{out}");
    let out = cli.ok(&["get", "deployment", "web", "-o", "json"]);
    assert!(out.contains("\"replicas\": 5"), "{out}");
    // Apply puts the manifest's replica count back.
    let out = cli.ok(&["apply", "-f", manifest]);
    assert!(out.contains("deployment/web configured"), "{out}");

    let out = cli.ok(&["describe", "deployment", "web"]);
    assert!(out.contains("Name:") && out.contains("web"), "{out}");
    assert!(out.contains("Events:"), "{out}");

    let out = cli.ok(&["cluster", "status"]);
    assert_eq!(
        out.lines().filter(|l| l.contains('*')).count(),
        1,
        "one leader: {out}"
    );
    assert!(
        out.contains("m1") && out.contains("m2") && out.contains("m3"),
        "{out}"
    );
    let out = cli.ok(&["whoami"]);
    assert!(out.contains("admin"), "{out}");

    // Errors: one line, non-zero exit.
    let (ok, _, err) = cli.run(&["get", "pod", "nope"]);
    assert!(!ok);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("not found"), "{err}");
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n  - name: c\n    image: x\n    securityContext: {}\n",
    )
    .expect("write");
    let (ok, _, err) = cli.run(&["apply", "-f", bad.to_str().expect("path")]);
    assert!(!ok);
    assert!(err.contains("securityContext"), "{err}");
    let (ok, _, err) = cli.run(&["whoami", "--token", "wrong-token-wrong-token"]);
    assert!(!ok);
    assert!(err.contains("invalid bearer token"), "{err}");

    let out = cli.ok(&["delete", "-f", manifest]);
    assert!(out.contains("deleted"), "{out}");
    let (_, _, err) = cli.run(&["get", "deployments"]);
    assert!(err.contains("No resources found"), "{err}");
}
