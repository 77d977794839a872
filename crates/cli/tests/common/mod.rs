//! What every integration test binary of the `keelson` crate shares: the
//! binary under test, clusters of it, and agents; everything else comes
//! from keelson-testkit, re-exported here.
#![allow(dead_code, unused_imports)]

use std::path::{Path, PathBuf};
use std::time::Duration;

pub use keelson_testkit::etcd::{dump, get, put};
pub use keelson_testkit::fixtures;
pub use keelson_testkit::http::http_get;
pub use keelson_testkit::process::{PodReaper, Procs};
pub use keelson_testkit::up::Up;
pub use keelson_testkit::{channel, eventually, serial, ProcCluster, Program};

pub fn keelson_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_keelson"))
}

/// How long a fresh cluster gets to answer linearizable reads.
const HEALTHY_TIMEOUT: Duration = Duration::from_secs(30);

/// Replicas without their scheduler and controllers (the store and API
/// alone), so tests of those see only their own writes.
pub async fn start_cluster(n: usize, dir: &Path, extra_args: &[&str]) -> ProcCluster {
    let mut args = vec!["--disable-scheduler", "--disable-controllers"];
    args.extend_from_slice(extra_args);
    start_control_plane(n, dir, &args).await
}

/// Replicas as `keelson server` runs them: scheduler and controllers too
/// (unless `extra_args` disables them).
pub async fn start_control_plane(n: usize, dir: &Path, extra_args: &[&str]) -> ProcCluster {
    let c = ProcCluster::start(
        Program::Keelson {
            bin: keelson_bin(),
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
        },
        n,
        dir,
    )
    .expect("start cluster");
    c.wait_healthy(HEALTHY_TIMEOUT)
        .await
        .expect("cluster healthy");
    c
}

/// A KV client of one member's etcd port.
pub fn kv(
    endpoint: &str,
) -> keelson_proto::etcdserverpb::kv_client::KvClient<tonic::transport::Channel> {
    keelson_testkit::etcd::kv(endpoint).expect("channel")
}

/// An SDK client of every replica, as the admin.
pub fn admin_client(c: &ProcCluster) -> keelson_sdk::Client {
    c.admin_client().expect("client")
}

/// `keelson <args>` with no client config involved (file verbs, local
/// commands): (success, stdout then stderr).
#[allow(dead_code)]
pub fn keelson_plain<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> (bool, String) {
    let out = std::process::Command::new(keelson_bin())
        .args(args)
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

/// Run `keelson <args>` as the admin against every replica: (success,
/// stdout then stderr).
pub fn run_cli(c: &ProcCluster, args: &[&str]) -> (bool, String) {
    c.run_cli(args).expect("run keelson")
}

/// `keelson <args>` as the admin against every replica, its output in `log`.
pub fn spawn_client_process(c: &ProcCluster, args: &[&str], log: &Path) -> std::process::Child {
    c.keelson(args)
        .and_then(|s| s.log(log).spawn())
        .expect("start a keelson process")
}

/// `keelson agent --simulate <count> --name-prefix <prefix>`: simulated
/// nodes `<prefix>-0`... in one process (stopped when dropped), its output
/// in `<dir>/agent-<prefix>.log`.
pub fn simulated_nodes(c: &ProcCluster, count: usize, prefix: &str, dir: &Path) -> Procs {
    let count = count.to_string();
    Procs(vec![spawn_client_process(
        c,
        &["agent", "--simulate", &count, "--name-prefix", prefix],
        &dir.join(format!("agent-{prefix}.log")),
    )])
}

/// `keelson agent` for node `name` on `address`, its data under
/// `dir/<name>`, its log `dir/agent-<name>.log`, a 4 s heartbeat lease.
/// Nodes n1, n2 and r1 have node tokens (NodeRestriction applies); others use
/// the admin's.
pub fn start_agent(
    c: &ProcCluster,
    name: &str,
    address: &str,
    dir: &Path,
    extra: &[&str],
) -> std::process::Child {
    let token = match c.token("node", Some(name)) {
        t if t.is_empty() => c.token("admin", None),
        t => t,
    };
    keelson_testkit::Spawn::new(
        &keelson_bin(),
        ["agent", "--name", name, "--address", address],
    )
    .args([
        std::ffi::OsStr::new("--data-dir"),
        dir.join(name).as_os_str(),
    ])
    .args(["--heartbeat-ttl", "4"])
    // The process runtime unless the test asks for another.
    .args(if extra.contains(&"--runtime") {
        &[][..]
    } else {
        &["--runtime", "process"][..]
    })
    .args(extra)
    .client(&c.api_endpoints(), &token)
    .named(format!("agent {name}"))
    .log(&dir.join(format!("agent-{name}.log")))
    .spawn()
    .expect("start agent")
}

/// A kubeconfig for replica `i`'s Kubernetes API (TLS, verified with the
/// CA of the certificate the replica made) with `token`, and a HOME of its
/// own (so kubectl's discovery cache is the test's).
pub struct Kubectl {
    pub config: PathBuf,
    pub home: PathBuf,
}

impl Kubectl {
    pub fn new(dir: &Path, c: &ProcCluster, i: usize, token: &str) -> Kubectl {
        let home = dir.join(format!("home-{i}-{}", &token[..6]));
        std::fs::create_dir_all(&home).expect("home");
        let config = home.join("kubeconfig");
        let m = &c.members[i];
        let text = m.kubeconfig(token);
        std::fs::write(&config, text).expect("kubeconfig");
        Kubectl { config, home }
    }

    /// kubectl with this config and HOME (never the user's KUBECONFIG).
    fn command(&self) -> std::process::Command {
        let mut c = std::process::Command::new("kubectl");
        c.arg("--kubeconfig")
            .arg(&self.config)
            .env("HOME", &self.home)
            .env_remove("KUBECONFIG");
        c
    }

    /// Run kubectl; (success, stdout, stderr).
    pub fn run(&self, args: &[&str]) -> (bool, String, String) {
        let out = self
            .command()
            .args(["--request-timeout", "20s"])
            .args(args)
            .output()
            .expect("kubectl must be on PATH (it is on this project's machines)");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Run kubectl with `input` as its stdin; (exit code, stdout, stderr).
    pub fn run_input(&self, args: &[&str], input: &[u8]) -> (i32, String, String) {
        use std::io::Write;
        let mut child = self
            .command()
            .args(["--request-timeout", "20s"])
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("kubectl must be on PATH (it is on this project's machines)");
        if let Some(mut stdin) = child.stdin.take() {
            let _ = stdin.write_all(input);
        }
        let out = child.wait_with_output().expect("kubectl output");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// `kubectl port-forward <target> :<port>` left running (killed when
    /// dropped): the local port it chose, and the file its stderr goes to.
    pub fn port_forward(&self, target: &str, port: u16) -> (KillOnDrop, u16, PathBuf) {
        use std::io::BufRead;
        let err_path = self.home.join(format!("port-forward-{port}.err"));
        let err = std::fs::File::create(&err_path).expect("stderr file");
        let mut child = self
            .command()
            .args(["port-forward", target, &format!(":{port}")])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(err)
            .spawn()
            .expect("kubectl must be on PATH (it is on this project's machines)");
        let stdout = child.stdout.take().expect("stdout");
        let child = KillOnDrop(child);
        let (tx, rx) = std::sync::mpsc::channel();
        // Read to the end: a closed pipe would kill kubectl (SIGPIPE) at
        // its next line ("Handling connection for ...").
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                let _ = tx.send(line);
            }
        });
        // "Forwarding from 127.0.0.1:41234 -> 8080"
        let line = rx
            .recv_timeout(std::time::Duration::from_secs(20))
            .unwrap_or_else(|_| {
                panic!(
                    "kubectl port-forward said nothing: {}",
                    std::fs::read_to_string(&err_path).unwrap_or_default()
                )
            });
        let local = line
            .split("127.0.0.1:")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .and_then(|p| p.parse::<u16>().ok())
            .unwrap_or_else(|| panic!("kubectl port-forward: {line:?}"));
        (child, local, err_path)
    }

    /// Run kubectl and expect success; its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let (ok, out, err) = self.run(args);
        assert!(ok, "kubectl {args:?} failed:\n{out}\n{err}");
        out
    }

    /// Run kubectl (a `get` printing a table) and expect success: the
    /// first row's cells split on whitespace, and the whole table.
    pub fn first_row(&self, args: &[&str]) -> (Vec<String>, String) {
        let table = self.ok(args);
        let row = table
            .lines()
            .nth(1)
            .map(|l| l.split_whitespace().map(str::to_string).collect())
            .unwrap_or_default();
        (row, table)
    }
}

/// A kubectl left running (a watch) dies with the test, even a failing one.
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
