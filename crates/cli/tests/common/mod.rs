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
                    let rec = std::fs::read_to_string(&p)
                        .ok()
                        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok());
                    let field = |k: &str| rec.as_ref().and_then(|v| v.get(k)?.as_u64());
                    let pid = field("pid").and_then(|p| u32::try_from(p).ok());
                    // Only the process recorded, not a later one with its pid.
                    let same = |pid: u32| {
                        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
                            .unwrap_or_default();
                        let start = stat
                            .rfind(')')
                            .and_then(|i| stat[i + 1..].split_whitespace().nth(19))
                            .and_then(|t| t.parse::<u64>().ok());
                        start.is_some() && start == field("proc_start_time")
                    };
                    if let Some(pid) = pid.filter(|p| *p > 1 && same(*p)) {
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

/// `GET path` on `host:port` over a fresh connection: (status, body), or
/// None when the connection or the exchange failed.
pub fn http_get(addr: &str, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut s =
        std::net::TcpStream::connect_timeout(&addr.parse().ok()?, Duration::from_secs(1)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let code = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
    Some((code, body))
}

/// A `keelson up` process: started in `dir` with `args`, its output lines
/// collected. Dropping it stops the cluster (SIGTERM to `up`, then `keelson
/// down` for anything left, then the pods of agents that were killed).
pub struct Up {
    pub child: Option<std::process::Child>,
    pub data_dir: std::path::PathBuf,
    pub lines: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Up {
    /// `keelson up --data-dir <data_dir> <args>` with `cwd` and `home`.
    pub fn start(
        data_dir: &std::path::Path,
        args: &[&str],
        cwd: &std::path::Path,
        home: &std::path::Path,
    ) -> Up {
        use std::io::BufRead;
        let mut child = std::process::Command::new(keelson_bin())
            .arg("up")
            .arg("--data-dir")
            .arg(data_dir)
            .args(args)
            .current_dir(cwd)
            .env("HOME", home)
            .env_remove("KEELSON_CONFIG")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .expect("start keelson up");
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        if let Some(out) = child.stdout.take() {
            let lines = lines.clone();
            std::thread::spawn(move || {
                for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                    eprintln!("up| {line}");
                    if let Ok(mut l) = lines.lock() {
                        l.push(line);
                    }
                }
            });
        }
        Up {
            child: Some(child),
            data_dir: data_dir.to_path_buf(),
            lines,
        }
    }

    pub fn output(&self) -> String {
        self.lines.lock().map(|l| l.join("\n")).unwrap_or_default()
    }

    /// Wait until `up` printed `what`; panics if it exits first.
    pub async fn wait_for_line(&mut self, what: &str, timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if self.output().contains(what) {
                return;
            }
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(status)) = c.try_wait() {
                    panic!(
                        "keelson up exited ({status}) before {what:?}:\n{}",
                        self.output()
                    );
                }
            }
            if tokio::time::Instant::now() > deadline {
                panic!(
                    "keelson up: no {what:?} within {timeout:?}:\n{}",
                    self.output()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The pid `up` recorded for one of its processes (m1, n2...).
    pub fn pid(&self, name: &str) -> u32 {
        std::fs::read_to_string(self.data_dir.join("run").join(format!("{name}.pid")))
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or_else(|| panic!("no pid file for {name}"))
    }

    /// SIGTERM (or SIGINT) to `up`; wait for it to exit.
    pub fn stop(&mut self, sig: i32) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("up runs");
        keelson::cluster::signal(c.id(), sig);
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(s)) = c.try_wait() {
                return s;
            }
            if std::time::Instant::now() > deadline {
                let _ = c.kill();
                panic!("keelson up did not stop within 60 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        if self.child.is_some() {
            self.stop(15);
        }
        let _ = std::process::Command::new(keelson_bin())
            .arg("down")
            .arg("--data-dir")
            .arg(&self.data_dir)
            .stdout(std::process::Stdio::null())
            .status();
        // Pods of agents that were SIGKILLed (nothing stopped them).
        drop(PodReaper(self.data_dir.clone()));
    }
}
