//! The upgrade path: a replica starts on a data dir an earlier Keelson
//! wrote (the committed fixture `crates/store/fixtures/v1`, see its
//! README) and serves every key, revision and lease of it; a backup file
//! of that version restores; data of a newer format is refused with an
//! error that says so.

use crate::common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use keelson_testkit::{free_port, Spawn};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../store/fixtures/v1")
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
}

/// `keelson server` as the fixture's one replica on `data`, with free
/// ports (the fixture's peer URL is only a name here: one member dials no
/// peer). Returns the process and its etcd client endpoint.
fn start(data: &Path, log: &Path) -> (std::process::Child, String) {
    let client = format!("127.0.0.1:{}", free_port().unwrap());
    let child = Spawn::new(&keelson_bin(), ["server", "--name", "fx"])
        .args([std::ffi::OsStr::new("--data-dir"), data.as_os_str()])
        .args([
            "--initial-cluster",
            "fx=http://127.0.0.1:23801",
            "--listen-peer",
            &format!("127.0.0.1:{}", free_port().unwrap()),
            "--listen-client",
            &client,
            "--listen-api",
            &format!("127.0.0.1:{}", free_port().unwrap()),
            "--listen-kube-api",
            "off",
            "--listen-metrics",
            "off",
            "--disable-scheduler",
            "--disable-controllers",
        ])
        .log(log)
        .named("fixture replica")
        .spawn()
        .unwrap();
    (child, client)
}

async fn etcdctl(endpoint: &str, args: &[&str]) -> (bool, String) {
    let out = tokio::process::Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoint}"))
        .arg("--command-timeout=5s")
        .args(args)
        .kill_on_drop(true)
        .output()
        .await
        .expect("etcdctl is installed");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// The fixture's keys as etcdctl prints them, once the replica answers.
async fn fixture_keys(endpoint: &str) -> serde_json::Value {
    let mut last = String::new();
    for _ in 0..100 {
        let (ok, out) = etcdctl(endpoint, &["get", "fixture/", "--prefix", "-w", "json"]).await;
        if ok {
            return serde_json::from_str(&out).expect("json");
        }
        last = out;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("the replica never answered: {last}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_reads_the_previous_format_and_refuses_a_newer_one() {
    let _g = serial().await;
    let dir = tempfile::tempdir().unwrap();
    tokio::time::timeout(Duration::from_secs(120), async {
        let expected: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(fixture().join("expected.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(expected["kvs"].as_array().unwrap().len(), 40);

        // The v1 data dir: every key at its revisions, the lease, the
        // compaction, and new writes after them.
        let data = dir.path().join("data");
        copy_dir(&fixture().join("data"), &data);
        let log = dir.path().join("v1.log");
        let (mut child, ep) = start(&data, &log);
        let got = fixture_keys(&ep).await;
        assert_eq!(got["kvs"], expected["kvs"]);
        let (ok, out) = etcdctl(&ep, &["lease", "timetolive", "41de9089127c78ee", "--keys"]).await;
        assert!(
            ok && out.contains("attached keys([fixture/leased])"),
            "{out}"
        );
        let (ok, out) = etcdctl(&ep, &["get", "fixture/k3", "--rev=4"]).await;
        assert!(!ok && out.contains("compacted"), "{out}");
        let (ok, out) = etcdctl(&ep, &["put", "fixture/new", "n"]).await;
        assert!(ok, "{out}");
        keelson_testkit::process::kill(&mut child);

        // The v1 backup file: status and a restore that serves it.
        let backup = fixture().join("backup-v1.snap");
        let out = std::process::Command::new(keelson_bin())
            .args(["snapshot", "status", "-w", "json"])
            .arg(&backup)
            .output()
            .unwrap();
        let status: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|_| panic!("status: {}", String::from_utf8_lossy(&out.stderr)));
        assert_eq!(status["revision"].as_i64(), Some(47));
        let restored = dir.path().join("restored");
        let out = std::process::Command::new(keelson_bin())
            .args(["snapshot", "restore"])
            .arg(&backup)
            .arg("--data-dir")
            .arg(&restored)
            .args([
                "--name",
                "fx",
                "--initial-cluster",
                "fx=http://127.0.0.1:23801",
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let (mut child, ep) = start(&restored, &dir.path().join("restored.log"));
        let got = fixture_keys(&ep).await;
        assert_eq!(got["kvs"], expected["kvs"]);
        keelson_testkit::process::kill(&mut child);

        // Data of a newer format: refused at start, naming the file and
        // the format.
        let newer = dir.path().join("newer");
        copy_dir(&fixture().join("data"), &newer);
        let snap = newer.join("state/snapshot.bin");
        let mut bytes = std::fs::read(&snap).unwrap();
        bytes[0] = 99;
        std::fs::write(&snap, &bytes).unwrap();
        let newer_log = dir.path().join("newer.log");
        let (mut child, _) = start(&newer, &newer_log);
        let status = tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                if let Some(s) = child.try_wait().unwrap() {
                    return s;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
        .await
        .expect("the replica exits");
        assert!(!status.success());
        let text = std::fs::read_to_string(&newer_log).unwrap();
        assert!(
            text.contains("snapshot.bin") && text.contains("format 99") && text.contains("newer"),
            "{text}"
        );
    })
    .await
    .expect("test timed out");
}
