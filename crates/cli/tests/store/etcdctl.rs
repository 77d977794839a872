//! etcd's own client, `etcdctl` 3.4 (Debian's etcd-client), against a
//! 3-replica Keelson cluster. `.ci/run` installs etcdctl when it is missing.

use crate::common;

use std::process::Stdio;
use std::time::Duration;

use common::*;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

struct Ctl {
    endpoints: String,
}

struct Out {
    ok: bool,
    stdout: String,
    stderr: String,
}

impl Ctl {
    /// Run etcdctl to completion (bounded), feeding `stdin`.
    async fn run(&self, args: &[&str], stdin: &str) -> Out {
        let mut child = Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", self.endpoints))
            .arg("--command-timeout=10s")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("etcdctl is installed (Debian package etcd-client; .ci/run installs it)");
        let mut input = child.stdin.take().unwrap();
        input.write_all(stdin.as_bytes()).await.unwrap();
        drop(input);
        let out = tokio::time::timeout(Duration::from_secs(120), child.wait_with_output())
            .await
            .expect("etcdctl finished in time")
            .unwrap();
        Out {
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    async fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args, "").await;
        assert!(
            out.ok,
            "etcdctl {args:?} failed: {}{}",
            out.stdout, out.stderr
        );
        out.stdout
    }
}

/// A 3-replica cluster, its client endpoints as host:port, and etcdctl
/// pointed at all of them.
async fn etcdctl_cluster(dir: &std::path::Path) -> (common::ProcCluster, Vec<String>, Ctl) {
    let c = start_cluster(3, dir, &[]).await;
    let endpoints: Vec<String> = c
        .members
        .iter()
        .map(|m| format!("127.0.0.1:{}", m.client_port))
        .collect();
    let ctl = Ctl {
        endpoints: endpoints.join(","),
    };
    (c, endpoints, ctl)
}

fn lines(s: &str) -> Vec<&str> {
    s.lines().filter(|l| !l.is_empty()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcdctl_kv_txn_watch_lease_and_cluster_commands() {
    let _g = serial().await;
    let dir = tempfile::tempdir().unwrap();
    let (c, endpoints, ctl) = etcdctl_cluster(dir.path()).await;

    // put / get / prefix / limit / rev / del
    assert_eq!(ctl.ok(&["put", "foo", "bar"]).await.trim(), "OK");
    assert_eq!(lines(&ctl.ok(&["get", "foo"]).await), vec!["foo", "bar"]);
    let json = ctl.ok(&["get", "foo", "-w", "json"]).await;
    let rev_of = |json: &str| -> i64 {
        let i = json.find("\"mod_revision\":").unwrap() + "\"mod_revision\":".len();
        json[i..]
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    let first_rev = rev_of(&json);
    ctl.ok(&["put", "foo", "baz"]).await;
    assert_eq!(
        lines(&ctl.ok(&["get", "foo", &format!("--rev={first_rev}")]).await),
        vec!["foo", "bar"]
    );
    for k in ["p/a", "p/b", "p/c"] {
        ctl.ok(&["put", k, "v"]).await;
    }
    assert_eq!(
        lines(&ctl.ok(&["get", "p/", "--prefix", "--keys-only"]).await),
        vec!["p/a", "p/b", "p/c"]
    );
    assert_eq!(
        lines(
            &ctl.ok(&["get", "p/", "--prefix", "--keys-only", "--limit=2"])
                .await
        ),
        vec!["p/a", "p/b"]
    );
    assert_eq!(ctl.ok(&["del", "p/", "--prefix"]).await.trim(), "3");
    assert!(ctl.ok(&["get", "p/", "--prefix"]).await.trim().is_empty());

    // txn through stdin: compare, success and failure branches
    let txn = "value(\"foo\") = \"baz\"\n\nput foo qux\nput t/1 yes\n\nput t/1 no\n\n";
    let out = ctl.run(&["txn"], txn).await;
    assert!(out.ok, "{}", out.stderr);
    assert_eq!(lines(&out.stdout), vec!["SUCCESS", "OK", "OK"]);
    assert_eq!(
        lines(&ctl.ok(&["get", "t/1", "--print-value-only"]).await),
        vec!["yes"]
    );
    let out = ctl.run(&["txn"], txn).await;
    assert_eq!(lines(&out.stdout), vec!["FAILURE", "OK"]);
    assert_eq!(
        lines(&ctl.ok(&["get", "t/1", "--print-value-only"]).await),
        vec!["no"]
    );

    // watch --rev replays history, then follows live changes
    let mut watch = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={}", endpoints[2]))
        .args(["watch", "foo", &format!("--rev={first_rev}")])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    ctl.ok(&["put", "foo", "live"]).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    watch.start_kill().unwrap();
    let out = watch.wait_with_output().await.unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        lines(&text),
        vec!["PUT", "foo", "bar", "PUT", "foo", "baz", "PUT", "foo", "qux", "PUT", "foo", "live"],
        "watch output"
    );

    // leases: grant, attach, timetolive with keys, keep-alive, revoke
    let granted = ctl.ok(&["lease", "grant", "30"]).await;
    let id = granted.split_whitespace().nth(1).unwrap().to_string();
    assert!(granted.contains("granted with TTL(30s)"), "{granted}");
    ctl.ok(&["put", "leased", "v", &format!("--lease={id}")])
        .await;
    let ttl = ctl.ok(&["lease", "timetolive", &id, "--keys"]).await;
    assert!(
        ttl.contains("granted with TTL(30s)") && ttl.contains("attached keys([leased])"),
        "{ttl}"
    );
    let ka = ctl.ok(&["lease", "keep-alive", "--once", &id]).await;
    assert!(ka.contains("keepalived with TTL(30)"), "{ka}");
    assert!(ctl.ok(&["lease", "list"]).await.contains(&id));
    ctl.ok(&["lease", "revoke", &id]).await;
    assert!(
        ctl.ok(&["get", "leased"]).await.trim().is_empty(),
        "revoking deletes attached keys"
    );
    assert!(ctl
        .ok(&["lease", "timetolive", &id])
        .await
        .contains("already expired"));

    // cluster views
    let members = ctl.ok(&["member", "list"]).await;
    assert_eq!(lines(&members).len(), 3, "{members}");
    for m in &c.members {
        assert!(
            members.contains(&format!(
                "started, {}, http://127.0.0.1:{}",
                m.name, m.peer_port
            )),
            "{members}"
        );
    }
    let status = ctl.ok(&["endpoint", "status"]).await;
    assert_eq!(lines(&status).len(), 3, "{status}");
    assert_eq!(
        status.matches(", true, false,").count(),
        1,
        "exactly one leader: {status}"
    );
    let health = ctl.run(&["endpoint", "health"], "").await;
    assert!(health.ok, "{}", health.stderr);
    assert_eq!(
        health.stderr.matches("is healthy").count(),
        3,
        "{}",
        health.stderr
    );

    // errors carry etcd's messages
    let empty = ctl.run(&["put", "", "v"], "").await;
    assert!(!empty.ok);
    let compact = ctl.run(&["compact", "1000000"], "").await;
    assert!(
        compact
            .stderr
            .contains("required revision is a future revision"),
        "{}",
        compact.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcdctl_check_perf_passes() {
    let _g = serial().await;
    let dir = tempfile::tempdir().unwrap();
    // `_cluster` (not `_`) keeps the processes alive until the end.
    let (_cluster, _endpoints, ctl) = etcdctl_cluster(dir.path()).await;
    // Load "s": 50 clients, 150 puts/s for 60 s; fails on any error, on
    // throughput under 90%, on a request over 0.5 s or a stddev over 0.1 s.
    let out = ctl.run(&["check", "perf", "--load=s"], "").await;
    let tail: String = out
        .stdout
        .lines()
        .rev()
        .take(6)
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        out.ok && out.stdout.contains("PASS"),
        "check perf failed:\n{tail}\n{}",
        out.stderr
    );
}
