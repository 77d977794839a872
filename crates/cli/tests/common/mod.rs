//! Shared helpers for integration tests: clusters of real `keelson server`
//! processes on loopback, and small etcd-API client calls.
#![allow(dead_code)]

use std::time::Duration;

use keelson::cluster::{channel, Kind, ProcCluster};
use keelson_proto::etcdserverpb::kv_client::KvClient;
use keelson_proto::etcdserverpb::{PutRequest, RangeRequest, RangeResponse};
use tonic::transport::Channel;

/// Cluster tests run one at a time: each starts several processes, and the
/// machine has two cores.
pub static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    SERIAL.lock().await
}

pub fn keelson_bin() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_BIN_EXE_keelson"))
}

/// Replicas without their scheduler and controllers (the store and API
/// alone), so tests of those see only their own writes.
pub async fn start_cluster(n: usize, dir: &std::path::Path, extra_args: &[&str]) -> ProcCluster {
    let mut args = vec!["--disable-scheduler", "--disable-controllers"];
    args.extend_from_slice(extra_args);
    start_control_plane(n, dir, &args).await
}

/// Replicas as `keelson server` runs them: scheduler and controllers too
/// (unless `extra_args` disables them).
pub async fn start_control_plane(
    n: usize,
    dir: &std::path::Path,
    extra_args: &[&str],
) -> ProcCluster {
    let c = ProcCluster::start(
        Kind::Keelson {
            bin: keelson_bin(),
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
        },
        n,
        dir,
    )
    .expect("start cluster");
    c.wait_healthy(Duration::from_secs(30))
        .await
        .expect("cluster healthy");
    c
}

pub fn kv(endpoint: &str) -> KvClient<Channel> {
    KvClient::new(channel(endpoint).expect("channel"))
}

pub async fn put(c: &mut KvClient<Channel>, key: &str, value: &str) -> Result<i64, tonic::Status> {
    let mut req = tonic::Request::new(PutRequest {
        key: key.as_bytes().to_vec(),
        value: value.as_bytes().to_vec(),
        ..Default::default()
    });
    req.set_timeout(Duration::from_secs(3));
    let r = c.put(req).await?.into_inner();
    Ok(r.header.map(|h| h.revision).unwrap_or(0))
}

pub async fn get(
    c: &mut KvClient<Channel>,
    key: &str,
    serializable: bool,
) -> Result<RangeResponse, tonic::Status> {
    let mut req = tonic::Request::new(RangeRequest {
        key: key.as_bytes().to_vec(),
        serializable,
        ..Default::default()
    });
    req.set_timeout(Duration::from_secs(3));
    Ok(c.range(req).await?.into_inner())
}

/// Every key (and value) from "\0" onwards, as one member sees it.
pub async fn dump(
    c: &mut KvClient<Channel>,
    serializable: bool,
) -> Result<(i64, Vec<(Vec<u8>, Vec<u8>, i64)>), tonic::Status> {
    let mut req = tonic::Request::new(RangeRequest {
        key: vec![0],
        range_end: vec![0],
        serializable,
        ..Default::default()
    });
    req.set_timeout(Duration::from_secs(5));
    let r = c.range(req).await?.into_inner();
    let rev = r.header.map(|h| h.revision).unwrap_or(0);
    Ok((
        rev,
        r.kvs
            .into_iter()
            .map(|kv| (kv.key, kv.value, kv.mod_revision))
            .collect(),
    ))
}

/// Poll `f` until it returns true or `timeout` passes.
pub async fn eventually<F, Fut>(timeout: Duration, what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if f().await {
            return;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Helper processes (agents, schedulers...), killed when dropped.
#[derive(Default)]
pub struct Procs(pub Vec<std::process::Child>);

impl Drop for Procs {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Start `keelson <args> --server <all replicas> --token <admin>`, its
/// stderr in `log`.
pub fn spawn_client_process(
    c: &ProcCluster,
    args: &[&str],
    log: &std::path::Path,
) -> std::process::Child {
    let log = std::fs::File::create(log).expect("log file");
    std::process::Command::new(keelson_bin())
        .args(args)
        .arg("--server")
        .arg(c.api_endpoints().join(","))
        .args(["--token", &c.token("admin", None)])
        .env("KEELSON_CONFIG", "/nonexistent")
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start a keelson process")
}

/// Kills, when dropped, every process an agent's runtime recorded under
/// `dir` (pods run on after their agent dies, by design; a test must not
/// leave them behind, even when it fails).
pub struct PodReaper(pub std::path::PathBuf);

impl Drop for PodReaper {
    fn drop(&mut self) {
        fn walk(dir: &std::path::Path, out: &mut Vec<u32>) {
            let Ok(entries) = std::fs::read_dir(dir) else {
                return;
            };
            for e in entries.flatten() {
                let p = e.path();
                if p.is_dir() {
                    walk(&p, out);
                } else if p.extension().is_some_and(|x| x == "json") {
                    let pid = std::fs::read_to_string(&p)
                        .ok()
                        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
                        .and_then(|v| v.get("pid").and_then(|p| p.as_u64()));
                    if let Some(pid) = pid.and_then(|p| u32::try_from(p).ok()).filter(|p| *p > 1) {
                        out.push(pid);
                    }
                }
            }
        }
        let mut pids = Vec::new();
        walk(&self.0, &mut pids);
        for pid in pids {
            // The container's process group, then the process itself.
            keelson::cluster::signal_group(pid, SIGKILL);
            keelson::cluster::signal(pid, SIGKILL);
        }
    }
}

const SIGKILL: i32 = 9;

/// An SDK client of every replica, as the admin.
pub fn admin_client(c: &ProcCluster) -> keelson_sdk::Client {
    keelson_sdk::Client::new(&keelson_sdk::Config::new(
        c.api_endpoints(),
        c.token("admin", None),
    ))
    .expect("client")
}

/// Run `keelson <args>` as the admin against every replica: (success,
/// stdout then stderr).
pub fn run_cli(c: &ProcCluster, args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(keelson_bin())
        .args(args)
        .args(["--server", &c.api_endpoints().join(",")])
        .args(["--token", &c.token("admin", None)])
        .env("KEELSON_CONFIG", "/nonexistent")
        .output()
        .expect("run keelson");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}
