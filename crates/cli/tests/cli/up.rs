//! The seeds' workflow end to end on a cluster made by `keelson up` (3
//! replicas, 2 agents, separate processes): apply a Deployment and a
//! Service; the pods spread over both nodes, Running and Ready; traffic
//! through the Service proxies reaches every replica; SIGKILL of the
//! control-plane leader leaves the app serving (no failed request) and a
//! scale-up still completes; a rolling update to a new message fails no
//! request through the Service; SIGKILL of an agent gets its pods
//! recreated on the other node; `keelson down` stops everything and `up`
//! resumes the same cluster; the examples do what they say.

use crate::common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::fixtures::node_of;
use common::{eventually, http_get, keelson_bin, Up};
use keelson_sdk::types::{self as v1};
use keelson_sdk::{Api, Client, Config, ListParams};

fn repo_file(rel: &str) -> String {
    format!("{}/../../{rel}", env!("CARGO_MANIFEST_DIR"))
}

/// `keelson <args> --config <config>`: (success, stdout and stderr).
fn cli(config: &std::path::Path, args: &[&str]) -> (bool, String) {
    let mut all: Vec<&std::ffi::OsStr> = args.iter().map(std::ffi::OsStr::new).collect();
    all.push("--config".as_ref());
    all.push(config.as_os_str());
    common::keelson_plain(&all)
}

fn ready(p: &v1::Pod) -> bool {
    p.status.as_ref().is_some_and(|s| s.phase == "Running")
        && keelson_model::pod::is_ready(p)
        && p.metadata
            .as_ref()
            .is_some_and(|m| m.deletion_timestamp.is_empty())
}

/// The web pods that are not being deleted.
async fn web_pods(pods: &Api<v1::Pod>) -> Vec<v1::Pod> {
    pods.list(&ListParams::default().labels("app=web"))
        .await
        .map(|l| l.items)
        .unwrap_or_default()
        .into_iter()
        .filter(|p| {
            p.metadata
                .as_ref()
                .is_some_and(|m| m.deletion_timestamp.is_empty())
        })
        .collect()
}

/// Requests through both agents' Service proxies, one every 20 ms, until
/// stopped: the bodies seen and the failures (with what failed).
struct Traffic {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicUsize>,
    failures: Arc<Mutex<Vec<String>>>,
    bodies: Arc<Mutex<Vec<String>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Traffic {
    fn start(targets: Vec<String>) -> Traffic {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicUsize::new(0));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let thread = {
            let (stop, ok, failures, bodies) =
                (stop.clone(), ok.clone(), failures.clone(), bodies.clone());
            std::thread::spawn(move || {
                let mut i = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    let target = &targets[i % targets.len()];
                    i += 1;
                    match http_get(target, "/") {
                        Some((200, body)) => {
                            ok.fetch_add(1, Ordering::Relaxed);
                            if let Ok(mut b) = bodies.lock() {
                                b.push(body.trim().to_string());
                            }
                        }
                        other => {
                            if let Ok(mut f) = failures.lock() {
                                f.push(format!("{target}: {other:?}"));
                            }
                        }
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            })
        };
        Traffic {
            stop,
            ok,
            failures,
            bodies,
            thread: Some(thread),
        }
    }

    /// Stop; (requests that succeeded, failures, bodies).
    fn finish(mut self) -> (usize, Vec<String>, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let take = |m: &Mutex<Vec<String>>| m.lock().map(|v| v.clone()).unwrap_or_default();
        (
            self.ok.load(Ordering::Relaxed),
            take(&self.failures),
            take(&self.bodies),
        )
    }
}

impl Drop for Traffic {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_runs_the_seeds_workflow_end_to_end() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("cluster");
    let home = dir.path().join("home");
    std::fs::create_dir_all(&home).expect("home");
    // Addresses of our own: 127.0.<x>.1-3 for the replicas, agents at
    // 127.0.<x>.41-42 (their pods in 127.41/127.42.x.y).
    let x = address_octet();
    let replica_address = format!("127.0.{x}.1");
    let (a1, a2) = (format!("127.0.{x}.41"), format!("127.0.{x}.42"));
    let args = [
        "--replica-address",
        &replica_address,
        "--agent-address",
        &a1,
        "--no-restart",
        "--node-monitor-grace-period",
        "2",
        "--pod-eviction-timeout",
        "2",
    ];
    let mut up =
        Up::start(&keelson_bin(), &data, &args, dir.path(), &home).expect("start keelson up");
    up.wait_for_line("The cluster is up.", Duration::from_secs(90))
        .await;
    // The client config went to $HOME/.keelson/config.
    let config = home.join(".keelson").join("config");
    let (ok, text) = cli(&config, &["get", "nodes"]);
    assert!(ok && text.contains("n1") && text.contains("n2"), "{text}");
    assert!(up.output().contains(&format!("n2    agent      {a2}")));
    // And kubectl works at once: up merged context `keelson` into
    // $HOME/.kube/config (created, as there was none).
    let kubectl = std::process::Command::new("kubectl")
        .args(["get", "nodes", "--request-timeout", "20s"])
        .env("HOME", &home)
        .env_remove("KUBECONFIG")
        .output()
        .expect("kubectl must be on PATH (it is on this project's machines)");
    let text = String::from_utf8_lossy(&kubectl.stdout);
    assert!(
        kubectl.status.success() && text.contains("n1") && text.contains("n2"),
        "{text}{}",
        String::from_utf8_lossy(&kubectl.stderr)
    );
    let kube = std::fs::read_to_string(home.join(".kube").join("config")).expect("kubeconfig");
    assert!(kube.contains("current-context: keelson"), "{kube}");

    let client = Client::new(&Config::load(&config).expect("client config")).expect("client");
    let pods: Api<v1::Pod> = Api::namespaced(client.clone(), "default");

    // Apply the example app: pods spread over both nodes, Running, Ready.
    let (ok, text) = cli(&config, &["apply", "-f", &repo_file("examples/web.yaml")]);
    assert!(ok, "{text}");
    eventually(
        Duration::from_secs(60),
        "3 web pods Ready on both nodes",
        || async {
            let ps = web_pods(&pods).await;
            let nodes: BTreeSet<String> = ps.iter().map(node_of).collect();
            ps.len() == 3 && ps.iter().all(ready) && nodes.len() == 2
        },
    )
    .await;

    // Every replica answers through the Service: n1's proxy prefers its
    // own pods, n2's its own; together they reach all three.
    let names: BTreeSet<String> = web_pods(&pods)
        .await
        .iter()
        .filter_map(|p| p.metadata.as_ref().map(|m| m.name.clone()))
        .collect();
    let targets = vec![format!("{a1}:8080"), format!("{a2}:8080")];
    eventually(
        Duration::from_secs(20),
        "every pod answers via the proxies",
        || {
            let (targets, names) = (targets.clone(), names.clone());
            async move {
                let seen: BTreeSet<String> = (0..30)
                    .filter_map(|i| http_get(&targets[i % 2], "/"))
                    .filter_map(|(_, b)| b.trim().rsplit(' ').next().map(str::to_string))
                    .collect();
                seen == names
            }
        },
    )
    .await;

    // SIGKILL the Raft leader (which, as the first elected, usually also
    // holds the scheduler and controller leases): the app keeps serving,
    // and a scale-up still completes.
    let traffic = Traffic::start(targets.clone());
    let (ok, status) = cli(&config, &["cluster", "status"]);
    assert!(ok, "{status}");
    let leader = status
        .lines()
        .find(|l| l.split_whitespace().nth(2) == Some("*"))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("a leader in\n{status}"))
        .to_string();
    keelson_testkit::signal(up.pid(&leader), libc::SIGKILL);
    up.wait_for_line(
        &format!("{leader} exited (SIGKILL); not restarted"),
        Duration::from_secs(10),
    )
    .await;
    let (ok, text) = cli(&config, &["scale", "deployment", "web", "--replicas", "5"]);
    assert!(ok, "{text}");
    eventually(
        Duration::from_secs(60),
        "5 web pods Ready after the kill",
        || async {
            let ps = web_pods(&pods).await;
            ps.len() == 5 && ps.iter().all(ready)
        },
    )
    .await;
    // Serve a little longer on the degraded control plane.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (served, failures, _) = traffic.finish();
    if !failures.is_empty() {
        diagnose(&data, &config);
    }
    assert!(served > 20, "requests went through: {served}");
    assert!(failures.is_empty(), "failed requests: {failures:?}");

    // A rolling update to a new message: no failed request meanwhile.
    let traffic = Traffic::start(targets.clone());
    let (ok, text) = cli(
        &config,
        &["apply", "-f", &repo_file("examples/web-v2.yaml")],
    );
    assert!(ok, "{text}");
    let (ok, text) = cli(
        &config,
        &["rollout", "status", "deployment/web", "--timeout", "90s"],
    );
    assert!(ok, "{text}");
    eventually(Duration::from_secs(30), "only new pods answer", || async {
        (0..10).all(|i| {
            http_get(&targets[i % 2], "/").is_some_and(|(_, b)| b.starts_with("hello again"))
        })
    })
    .await;
    let (served, failures, bodies) = traffic.finish();
    if !failures.is_empty() {
        diagnose(&data, &config);
    }
    assert!(
        failures.is_empty(),
        "failed requests during the rollout ({served} ok): {failures:?}"
    );
    assert!(bodies.iter().any(|b| b.starts_with("hello from keelson")));
    assert!(bodies.iter().any(|b| b.starts_with("hello again")));

    // SIGKILL an agent: its node turns unreachable and its pods are
    // recreated on the other node (grace 2 s + eviction 2 s here).
    let victim = "n1";
    let n1_ips: Vec<String> = web_pods(&pods)
        .await
        .iter()
        .filter(|p| node_of(p) == victim)
        .filter_map(|p| p.status.as_ref().map(|s| s.pod_ip.clone()))
        .collect();
    assert!(!n1_ips.is_empty(), "web pods on n1 before its agent dies");
    keelson_testkit::signal(up.pid(victim), libc::SIGKILL);
    let t0 = std::time::Instant::now();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let ps = web_pods(&pods).await;
        // web-v2.yaml says replicas: 3 (the apply undid the scale to 5).
        if ps.len() == 3 && ps.iter().all(|p| ready(p) && node_of(p) == "n2") {
            break;
        }
        if std::time::Instant::now() > deadline {
            diagnose(&data, &config);
            panic!("web pods not all Ready on n2 within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "pods recreated on n2 {:?} after the agent's SIGKILL",
        t0.elapsed()
    );
    let nodes: Api<v1::Node> = Api::all(client.clone());
    let n1 = nodes.get("n1").await.expect("n1");
    let n1_ready = n1
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.r#type == "Ready"))
        .map(|c| c.status.clone());
    assert_eq!(n1_ready.as_deref(), Some("Unknown"));
    assert!(http_get(&format!("{a2}:8080"), "/").is_some_and(|(c, _)| c == 200));

    // The examples: probes (Ready with every probe kind) and a pod no node
    // can take (Pending, the reasons counted per node).
    let (ok, text) = cli(
        &config,
        &[
            "apply",
            "-f",
            &repo_file("examples/probes.yaml"),
            "-f",
            &repo_file("examples/unschedulable.yaml"),
        ],
    );
    assert!(ok, "{text}");
    eventually(Duration::from_secs(60), "probed pods Ready", || async {
        let ps = pods
            .list(&ListParams::default().labels("app=probed"))
            .await
            .map(|l| l.items)
            .unwrap_or_default();
        ps.len() == 2 && ps.iter().all(ready)
    })
    .await;
    eventually(Duration::from_secs(30), "too-big explained", || async {
        let (_, text) = cli(&config, &["describe", "pod", "too-big"]);
        text.contains("0/2 nodes are available")
            && text.contains("Insufficient cpu")
            && text.contains("FailedScheduling")
    })
    .await;

    // `keelson down` stops everything; `up` again resumes the same cluster.
    let n2_ips: Vec<String> = pods
        .list(&ListParams::default())
        .await
        .expect("pods")
        .items
        .iter()
        .filter(|p| node_of(p) == "n2")
        .filter_map(|p| p.status.as_ref().map(|s| s.pod_ip.clone()))
        .filter(|ip| !ip.is_empty())
        .collect();
    assert!(!n2_ips.is_empty());
    let (ok, text) = common::keelson_plain(&["down", "--data-dir", &data.display().to_string()]);
    assert!(ok && text.contains("stopped"), "{text}");
    let status = up.stop(libc::SIGTERM);
    assert!(status.success(), "up ended with {status}");
    let leftovers: Vec<String> = std::fs::read_dir(data.join("run"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().to_string())
                .collect()
        })
        .unwrap_or_default();
    assert!(leftovers.is_empty(), "pid files left: {leftovers:?}");
    assert!(
        http_get(&format!("{a2}:8080"), "/").is_none(),
        "n2's proxy is gone"
    );
    // n2's pods stopped with their agent; n1's, orphaned by its SIGKILL
    // (still answering until now), were stopped by `up` on its way out.
    for ip in n2_ips.iter().chain(&n1_ips) {
        assert!(
            http_get(&format!("{ip}:8080"), "/").is_none(),
            "pod {ip} still answers after `down`"
        );
    }

    let mut again =
        Up::start(&keelson_bin(), &data, &[], dir.path(), &home).expect("start keelson up");
    again
        .wait_for_line("resuming 3 replicas and 2 agents", Duration::from_secs(10))
        .await;
    again
        .wait_for_line("The cluster is up.", Duration::from_secs(90))
        .await;
    let (ok, text) = cli(&config, &["get", "deployment", "web"]);
    assert!(ok && text.contains("web"), "{text}");
    eventually(
        Duration::from_secs(60),
        "web serves again after the resume",
        || async {
            let ps = web_pods(&pods).await;
            ps.len() == 3
                && ps.iter().all(ready)
                && http_get(&format!("{a2}:8080"), "/")
                    .is_some_and(|(c, b)| c == 200 && b.starts_with("hello again"))
        },
    )
    .await;
    // Ctrl-C stops it too.
    let status = again.stop(libc::SIGINT);
    assert!(status.success(), "up ended with {status}");
    drop(again);
    drop(up);
}

/// Print what helps to tell why requests failed.
fn diagnose(data: &std::path::Path, config: &std::path::Path) {
    for args in [
        &["get", "pods", "-o", "wide"][..],
        &["get", "endpoints", "web", "-o", "yaml"][..],
        &["cluster", "status"][..],
    ] {
        eprintln!("$ keelson {}\n{}", args.join(" "), cli(config, args).1);
    }
    for name in ["n1", "n2"] {
        let log = std::fs::read_to_string(data.join("logs").join(format!("{name}.log")))
            .unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(30).collect();
        eprintln!("--- {name}.log (last lines)");
        for l in tail.into_iter().rev() {
            eprintln!("{l}");
        }
    }
}

/// The third octet of a test's own addresses (127.0.<x>.y), 20-219:
/// random per run (so a cluster left by an earlier run is not in the way)
/// and never the same for two tests of this process, which run at once.
fn address_octet() -> u32 {
    static TAKEN: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    static BASE: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    let base = *BASE.get_or_init(|| {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        t ^ std::process::id()
    });
    let n = TAKEN.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    20 + base.wrapping_add(n.wrapping_mul(97)) % 200
}

/// `keelson up --runtime runc --demo`: the demo on real containers, from
/// an image `up` built from busybox-static and loaded into each node
/// itself (no registry): pods on the nodes' bridges, the node port
/// answering from more than one pod, `kubectl exec deploy/web` inside
/// one; stopping `up` removes the nodes' bridges and tables.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_runs_the_demo_on_real_images_under_runc() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("cluster");
    let home = dir.path().join("home");
    std::fs::create_dir_all(&home).expect("home");
    let x = address_octet();
    let replica_address = format!("127.0.{x}.1");
    let a1 = format!("127.0.{x}.41");
    let args = [
        "--replica-address",
        &replica_address,
        "--agent-address",
        &a1,
        "--replicas",
        "1",
        "--runtime",
        "runc",
        "--demo",
        "--no-restart",
    ];
    let mut up =
        Up::start(&keelson_bin(), &data, &args, dir.path(), &home).expect("start keelson up");
    up.wait_for_line("The cluster is up.", Duration::from_secs(180))
        .await;
    assert!(
        up.output().contains(&format!("curl -s {a1}:30080")),
        "{}",
        up.output()
    );
    let kubectl = |args: &[&str]| {
        let out = std::process::Command::new("kubectl")
            .args(["--request-timeout", "20s"])
            .args(args)
            .env("HOME", &home)
            .env_remove("KUBECONFIG")
            .output()
            .expect("kubectl must be on PATH (it is on this project's machines)");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, ips, err) = kubectl(&[
        "get",
        "pods",
        "-l",
        "app=web",
        "-o",
        "jsonpath={.items[*].status.podIP}",
    ]);
    let ips: Vec<&str> = ips.split_whitespace().collect();
    assert!(
        ok && ips.len() == 3 && ips.iter().all(|ip| ip.starts_with("10.244.")),
        "{ips:?} {err}"
    );
    // The node port on the first node answers from more than one pod.
    let mut seen = BTreeSet::new();
    eventually(
        Duration::from_secs(30),
        "the node port answers from two pods",
        || {
            if let Some((200, body)) = http_get(&format!("{a1}:30080"), "/") {
                seen.insert(body);
            }
            let two = seen.len() >= 2;
            async move { two }
        },
    )
    .await;
    assert!(
        seen.iter().all(|b| b.starts_with("hello from web-")),
        "{seen:?}"
    );
    let (ok, page, err) = kubectl(&["exec", "deploy/web", "--", "cat", "/www/index.html"]);
    assert!(ok && page.starts_with("hello from web-"), "{page}{err}");

    up.stop(libc::SIGTERM);
    let links = std::process::Command::new("ip")
        .args(["-o", "link", "show"])
        .output()
        .expect("ip");
    let links = String::from_utf8_lossy(&links.stdout);
    for node in ["n1", "n2"] {
        let bridge = keelson_agent::network::Network::bridge_name(node);
        assert!(!links.contains(&bridge), "{node}'s bridge {bridge} is left");
    }
}
