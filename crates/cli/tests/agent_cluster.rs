//! Real node agents (`keelson agent`, separate processes with node tokens)
//! running pods as processes against a 3-replica control plane: a pod runs
//! and turns Ready and answers on its own address; a crashing container
//! restarts with a growing back-off; a failing liveness probe restarts its
//! container; `keelson logs` (current and previous); the Service proxy
//! spreads connections over pods on two nodes, prefers a local one, and
//! stops sending to a pod that turned unready; a graceful delete stops the
//! process; an agent SIGKILLed and restarted re-adopts its running pods
//! without restarting them.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{
    admin_client, eventually, keelson_bin, run_cli, serial, start_control_plane, PodReaper, Procs,
};
use keelson::cluster::ProcCluster;
use keelson_sdk::types::{self as v1};
use keelson_sdk::{Api, DeleteParams, Resource};

fn start_agent(
    c: &ProcCluster,
    name: &str,
    address: &str,
    dir: &std::path::Path,
) -> std::process::Child {
    start_agent_with(c, name, address, dir, &[])
}

fn start_agent_with(
    c: &ProcCluster,
    name: &str,
    address: &str,
    dir: &std::path::Path,
    extra: &[&str],
) -> std::process::Child {
    let log = std::fs::File::create(dir.join(format!("agent-{name}.log"))).expect("log");
    std::process::Command::new(keelson_bin())
        .args(["agent", "--name", name, "--address", address, "--data-dir"])
        .arg(dir.join(name))
        .args(["--server", &c.api_endpoints().join(",")])
        // Nodes n1 and n2 have node tokens (NodeRestriction applies);
        // others use the admin's.
        .args(["--token", &{
            let t = c.token("node", Some(name));
            if t.is_empty() {
                c.token("admin", None)
            } else {
                t
            }
        }])
        .args(["--heartbeat-ttl", "4"])
        .args(extra)
        .env("KEELSON_CONFIG", "/nonexistent")
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start agent")
}

fn http_probe(port: &str, path: &str) -> v1::Probe {
    v1::Probe {
        http_get: Some(v1::HttpGetAction {
            path: path.into(),
            port: port.into(),
            ..Default::default()
        }),
        period_seconds: 1,
        failure_threshold: 2,
        ..Default::default()
    }
}

fn pod(name: &str, image: &str, args: &[&str]) -> v1::Pod {
    v1::Pod {
        metadata: Some(v1::ObjectMeta {
            name: name.into(),
            namespace: "default".into(),
            labels: BTreeMap::from([("app".to_string(), name.to_string())]),
            ..Default::default()
        }),
        spec: Some(v1::PodSpec {
            termination_grace_period_seconds: Some(5),
            containers: vec![v1::Container {
                name: "main".into(),
                image: image.into(),
                args: args.iter().map(|s| s.to_string()).collect(),
                ports: vec![v1::ContainerPort {
                    name: "http".into(),
                    container_port: 8080,
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn status(p: &v1::Pod) -> v1::PodStatus {
    p.status.clone().unwrap_or_default()
}

fn is_ready(p: &v1::Pod) -> bool {
    status(p)
        .conditions
        .iter()
        .any(|c| c.r#type == "Ready" && c.status == "True")
}

fn restarts(p: &v1::Pod) -> i32 {
    status(p)
        .container_statuses
        .first()
        .map_or(0, |c| c.restart_count)
}

/// GET http://ip:8080/path -> (status code, body), or None.
fn get(ip: &str, path: &str) -> Option<(u16, String)> {
    get_port(ip, 8080, path)
}

fn get_port(ip: &str, port: u16, path: &str) -> Option<(u16, String)> {
    common::http_get(&format!("{ip}:{port}"), path)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_run_probe_restart_delete_and_readopt_pods() {
    let _g = serial().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let c = start_control_plane(3, &dir.path().join("cluster"), &[]).await;
    // Dropped after the agents: their pods' processes go too.
    let _reaper = PodReaper(dir.path().to_path_buf());
    let mut agents = Procs(vec![
        start_agent(&c, "n1", "127.0.0.11", dir.path()),
        start_agent(&c, "n2", "127.0.0.12", dir.path()),
    ]);
    // A third node whose Service proxy has no local endpoint; tainted so
    // the scheduler puts nothing there.
    let _n3 = Procs(vec![start_agent_with(
        &c,
        "n3",
        "127.0.0.13",
        dir.path(),
        &["--taint", "dedicated=proxy:NoSchedule"],
    )]);
    let cl = admin_client(&c);
    let pods: Api<v1::Pod> = Api::namespaced(cl.clone(), "default");
    let nodes: Api<v1::Node> = Api::all(cl.clone());
    eventually(Duration::from_secs(20), "the nodes registered", || async {
        nodes.get("n1").await.is_ok()
            && nodes.get("n2").await.is_ok()
            && nodes.get("n3").await.is_ok()
    })
    .await;

    // A web pod: Running, Ready (readiness probe), answering on its own IP.
    let mut web = pod("web", "builtin/http-echo", &["--message", "hello"]);
    web.spec.as_mut().unwrap().containers[0].readiness_probe = Some(http_probe("http", "/healthz"));
    pods.create(&web).await.expect("create web");
    eventually(Duration::from_secs(20), "web Running and Ready", || async {
        pods.get("web")
            .await
            .is_ok_and(|p| status(&p).phase == "Running" && is_ready(&p))
    })
    .await;
    let web = pods.get("web").await.expect("web");
    let ip = status(&web).pod_ip;
    assert!(
        ip.starts_with("127.11.") || ip.starts_with("127.12."),
        "pod ip {ip}"
    );
    // Ready without a readiness probe means started; it answers once it
    // listens.
    eventually(Duration::from_secs(5), "web answers", || async {
        get(&ip, "/").is_some()
    })
    .await;
    let (code, body) = get(&ip, "/").expect("web answers");
    assert_eq!(code, 200);
    assert!(body.contains("hello from web"), "{body}");

    // A crashing container: restarts, with a growing back-off.
    pods.create(&pod("crash", "builtin/crash-after", &["0", "3"]))
        .await
        .expect("create crash");
    let seen_backoff = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let t0 = std::time::Instant::now();
    eventually(Duration::from_secs(30), "crash restarted 3 times", || {
        let pods = pods.clone();
        let seen = seen_backoff.clone();
        async move {
            let Ok(p) = pods.get("crash").await else {
                return false;
            };
            let st = status(&p);
            if let Some(cs) = st.container_statuses.first() {
                if cs
                    .state
                    .as_ref()
                    .and_then(|s| s.waiting.as_ref())
                    .is_some_and(|w| w.reason == "CrashLoopBackOff")
                {
                    seen.store(true, std::sync::atomic::Ordering::Relaxed);
                }
                let last_exit = cs
                    .last_state
                    .as_ref()
                    .and_then(|s| s.terminated.as_ref())
                    .map(|t| t.exit_code);
                return cs.restart_count >= 3 && last_exit == Some(3);
            }
            false
        }
    })
    .await;
    // Three instances ended: the second and third started after back-offs
    // of 1 and 2 s.
    assert!(
        t0.elapsed() >= Duration::from_secs(3),
        "back-off grew: {:?}",
        t0.elapsed()
    );
    assert!(
        seen_backoff.load(std::sync::atomic::Ordering::Relaxed),
        "CrashLoopBackOff was reported"
    );

    // Liveness: make /healthz fail; the container is restarted.
    let mut live = pod("live", "builtin/http-echo", &[]);
    live.spec.as_mut().unwrap().containers[0].liveness_probe = Some(http_probe("8080", "/healthz"));
    pods.create(&live).await.expect("create live");
    eventually(Duration::from_secs(20), "live Running", || async {
        pods.get("live")
            .await
            .is_ok_and(|p| status(&p).phase == "Running" && is_ready(&p))
    })
    .await;
    let live_ip = status(&pods.get("live").await.expect("live")).pod_ip;
    eventually(Duration::from_secs(5), "live answers", || async {
        get(&live_ip, "/").is_some()
    })
    .await;
    assert_eq!(get(&live_ip, "/fail").map(|r| r.0), Some(200));
    eventually(
        Duration::from_secs(20),
        "live restarted by its liveness probe",
        || async {
            pods.get("live")
                .await
                .is_ok_and(|p| restarts(&p) >= 1 && is_ready(&p))
        },
    )
    .await;
    // Without a readiness probe, Ready means started, not yet listening:
    // the fresh process answers healthy once it listens.
    eventually(Duration::from_secs(5), "a fresh process", || async {
        get(&live_ip, "/healthz").map(|r| r.0) == Some(200)
    })
    .await;

    // Logs through the API server, from the agent: current and previous.
    let (ok, text) = run_cli(&c, &["logs", "web"]);
    assert!(ok && text.contains("listening on"), "{text}");
    let (ok, text) = run_cli(&c, &["logs", "crash", "--previous", "--tail", "1"]);
    assert!(ok && text.lines().count() == 1, "{text}");
    let (ok, text) = run_cli(&c, &["logs", "nosuchpod"]);
    assert!(!ok && text.contains("not found"), "{text}");

    // The Service proxy: two echo pods, one per node; n3's proxy (no local
    // endpoint) spreads connections over both, n1's prefers its own; a pod
    // that turns unready gets no new connections.
    for (name, node) in [("echo-1", "n1"), ("echo-2", "n2")] {
        let mut p = pod(name, "builtin/http-echo", &[]);
        p.meta_mut().labels = BTreeMap::from([("app".to_string(), "echo".to_string())]);
        let spec = p.spec.as_mut().unwrap();
        spec.node_name = node.into();
        spec.containers[0].readiness_probe = Some(http_probe("http", "/healthz"));
        pods.create(&p).await.expect("create echo pod");
    }
    let services: Api<v1::Service> = Api::namespaced(cl.clone(), "default");
    services
        .create(&v1::Service {
            metadata: Some(v1::ObjectMeta {
                name: "echo".into(),
                ..Default::default()
            }),
            spec: Some(v1::ServiceSpec {
                selector: BTreeMap::from([("app".to_string(), "echo".to_string())]),
                ports: vec![v1::ServicePort {
                    port: 18080,
                    target_port: "http".into(),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .expect("create service");
    let who = |ip: &str| get_port(ip, 18080, "/").map(|(_, b)| b);
    eventually(
        Duration::from_secs(30),
        "n3's proxy reaches both echo pods",
        || async {
            let seen: std::collections::BTreeSet<String> =
                (0..6).filter_map(|_| who("127.0.0.13")).collect();
            seen.len() == 2
        },
    )
    .await;
    let local: std::collections::BTreeSet<String> =
        (0..4).filter_map(|_| who("127.0.0.11")).collect();
    assert_eq!(
        local.len(),
        1,
        "n1's proxy prefers its local pod: {local:?}"
    );
    assert!(local.iter().all(|b| b.contains("echo-1")), "{local:?}");
    let echo2 = status(&pods.get("echo-2").await.expect("echo-2")).pod_ip;
    assert_eq!(get(&echo2, "/fail").map(|r| r.0), Some(200));
    eventually(
        Duration::from_secs(20),
        "echo-2 unready: n3 sends only to echo-1",
        || async {
            let seen: Vec<String> = (0..6).filter_map(|_| who("127.0.0.13")).collect();
            seen.len() == 6 && seen.iter().all(|b| b.contains("echo-1"))
        },
    )
    .await;
    for name in ["echo-1", "echo-2"] {
        let _ = pods.delete(name, &DeleteParams::default()).await;
    }

    // The agent of web's node is SIGKILLed and restarted: its pods keep
    // running and are adopted, not restarted.
    let node = web.spec.as_ref().unwrap().node_name.clone();
    let idx = if node == "n1" { 0 } else { 1 };
    let _ = agents.0[idx].kill();
    let _ = agents.0[idx].wait();
    assert_eq!(
        get(&ip, "/").map(|r| r.0),
        Some(200),
        "web runs without its agent"
    );
    let address = if node == "n1" {
        "127.0.0.11"
    } else {
        "127.0.0.12"
    };
    agents.0[idx] = start_agent(&c, &node, address, dir.path());
    tokio::time::sleep(Duration::from_secs(3)).await;
    let again = pods.get("web").await.expect("web");
    let log =
        std::fs::read_to_string(dir.path().join(format!("agent-{node}.log"))).unwrap_or_default();
    assert_eq!(
        restarts(&again),
        0,
        "adopted, not restarted; agent log:\n{log}\n{:?}",
        again.status
    );
    assert!(is_ready(&again), "still ready after the agent came back");
    assert_eq!(status(&again).pod_ip, ip, "same address");

    // Graceful delete: the process is stopped, then the pod is gone.
    pods.delete("web", &DeleteParams::default())
        .await
        .expect("delete web");
    eventually(Duration::from_secs(20), "web gone", || async {
        pods.get("web").await.is_err()
    })
    .await;
    assert!(get(&ip, "/").is_none(), "the web process is stopped");
    let _ = pods.delete("live", &DeleteParams::default()).await;
    let _ = pods.delete("crash", &DeleteParams::default()).await;
    eventually(Duration::from_secs(20), "all pods gone", || async {
        pods.get("live").await.is_err() && pods.get("crash").await.is_err()
    })
    .await;
    assert!(get(&live_ip, "/").is_none(), "no process left behind");
}
