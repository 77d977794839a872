//! Real node agents (`keelson agent`, separate processes with node tokens)
//! running pods as processes against a 3-replica control plane: a pod runs
//! and turns Ready and answers on its own address; a crashing container
//! restarts with a growing back-off; a failing liveness probe restarts its
//! container; `keelson logs` and `kubectl logs` (current and previous); the Service proxy
//! spreads connections over pods on two nodes, prefers a local one, and
//! stops sending to a pod that turned unready; a graceful delete stops the
//! process; an agent SIGKILLed and restarted re-adopts its running pods
//! without restarting them.

use crate::common;

use std::time::Duration;

use common::fixtures::{self, http_probe, restarts};
use common::ProcCluster;
use common::{
    admin_client, eventually, run_cli, serial, start_agent, start_control_plane, PodReaper, Procs,
};
use keelson_model::pod::is_ready;
use keelson_sdk::types::{self as v1};
use keelson_sdk::{Api, DeleteParams, Resource};

fn pod(name: &str, image: &str, args: &[&str]) -> v1::Pod {
    fixtures::pod(name)
        .image(image)
        .args(args)
        .label("app", name)
        .port("http", 8080)
        .grace_seconds(5)
        .build()
}

fn status(p: &v1::Pod) -> v1::PodStatus {
    p.status.clone().unwrap_or_default()
}

/// GET http://ip:8080/path -> (status code, body), or None.
fn get(ip: &str, path: &str) -> Option<(u16, String)> {
    get_port(ip, 8080, path)
}

fn get_port(ip: &str, port: u16, path: &str) -> Option<(u16, String)> {
    common::http_get(&format!("{ip}:{port}"), path)
}

/// A 3-replica control plane with agents n1 and n2 (node tokens) and, for
/// the proxy test, n3 (tainted: the scheduler puts nothing there).
/// Dropped in field order: the agents, then their pods' processes, then
/// the replicas.
struct Nodes {
    _n3: Procs,
    agents: Procs,
    _reaper: PodReaper,
    c: ProcCluster,
    pods: Api<v1::Pod>,
    cl: keelson_sdk::Client,
    dir: tempfile::TempDir,
}

const ADDRESSES: [(&str, &str); 3] = [
    ("n1", "127.0.0.11"),
    ("n2", "127.0.0.12"),
    ("n3", "127.0.0.13"),
];

async fn nodes(with_n3: bool) -> Nodes {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = start_control_plane(3, &dir.path().join("cluster"), &[]).await;
    let reaper = PodReaper(dir.path().to_path_buf());
    let agents = Procs(
        ADDRESSES[..2]
            .iter()
            .map(|(n, a)| start_agent(&c, n, a, dir.path(), &[]))
            .collect(),
    );
    // A third node whose Service proxy has no local endpoint.
    let n3 = Procs(if with_n3 {
        vec![start_agent(
            &c,
            "n3",
            "127.0.0.13",
            dir.path(),
            &["--taint", "dedicated=proxy:NoSchedule"],
        )]
    } else {
        Vec::new()
    });
    let cl = admin_client(&c);
    let node_api: Api<v1::Node> = Api::all(cl.clone());
    let names: Vec<&str> = ADDRESSES[..if with_n3 { 3 } else { 2 }]
        .iter()
        .map(|(n, _)| *n)
        .collect();
    eventually(Duration::from_secs(20), "the nodes registered", || async {
        for n in &names {
            if node_api.get(n).await.is_err() {
                return false;
            }
        }
        true
    })
    .await;
    Nodes {
        _n3: n3,
        agents,
        _reaper: reaper,
        pods: Api::namespaced(cl.clone(), "default"),
        cl,
        c,
        dir,
    }
}

/// Create `p` and wait until it runs, Ready, and answers on port 8080;
/// the pod as it is then.
async fn running(pods: &Api<v1::Pod>, p: v1::Pod) -> v1::Pod {
    let name = p.meta().name.clone();
    pods.create(&p).await.expect("create pod");
    eventually(
        Duration::from_secs(20),
        &format!("{name} Running and Ready"),
        || async {
            pods.get(&name)
                .await
                .is_ok_and(|p| status(&p).phase == "Running" && is_ready(&p))
        },
    )
    .await;
    let p = pods.get(&name).await.expect("get pod");
    let ip = status(&p).pod_ip;
    // Ready without a readiness probe means started; it answers once it
    // listens.
    eventually(
        Duration::from_secs(5),
        &format!("{name} answers"),
        || async { get(&ip, "/").is_some() },
    )
    .await;
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_runs_ready_on_its_own_address_until_deleted() {
    let _g = serial().await;
    let env = nodes(false).await;
    let pods = &env.pods;
    // Running, Ready (readiness probe), answering on its own IP.
    let web = pod("web", "builtin/http-echo", &["--message", "hello"]);
    let web = fixtures::PodBuilder::from(web)
        .readiness(http_probe("http", "/healthz"))
        .build();
    let web = running(pods, web).await;
    let ip = status(&web).pod_ip;
    assert!(
        ip.starts_with("127.11.") || ip.starts_with("127.12."),
        "pod ip {ip}"
    );
    let (code, body) = get(&ip, "/").expect("web answers");
    assert_eq!(code, 200);
    assert!(body.contains("hello from web"), "{body}");

    // Logs through the API server, from the agent.
    let (ok, text) = run_cli(&env.c, &["logs", "web"]);
    assert!(ok && text.contains("listening on"), "{text}");
    let (ok, text) = run_cli(&env.c, &["logs", "nosuchpod"]);
    assert!(!ok && text.contains("not found"), "{text}");
    // And through the Kubernetes API, with kubectl.
    let kubectl = common::Kubectl::new(env.dir.path(), &env.c, 1, &env.c.token("admin", None));
    let text = kubectl.ok(&["logs", "web", "--tail", "5"]);
    assert!(text.contains("listening on"), "{text}");
    let (ok, _, err) = kubectl.run(&["logs", "nosuchpod"]);
    assert!(!ok && err.contains("pods \"nosuchpod\" not found"), "{err}");

    // exec (the process runtime: a host command with the container's
    // environment and directory), with `keelson exec`...
    // (The client flags go before `--`.)
    let (servers, token) = (env.c.api_endpoints().join(","), env.c.token("admin", None));
    let out = std::process::Command::new(common::keelson_bin())
        .args(["exec", "--server", &servers, "--token", &token, "web", "--"])
        .args(["sh", "-c", "echo $POD_NAME; exit 3"])
        .env("KEELSON_CONFIG", "/nonexistent")
        .output()
        .expect("keelson exec");
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "web\n");
    // ... and kubectl (WebSocket): stdin to its end, stdout and stderr
    // apart, the exit code.
    let script = "cat; echo to-stderr >&2; exit 7";
    let (code, out, err) = kubectl.run_input(
        &["exec", "-i", "web", "--", "sh", "-c", script],
        b"from stdin\n",
    );
    assert_eq!((code, out.as_str()), (7, "from stdin\n"), "{err}");
    assert!(
        err.contains("to-stderr") && err.contains("command terminated with exit code 7"),
        "{err}"
    );
    let out = kubectl.ok(&["exec", "web", "--", "sh", "-c", "echo $POD_NAMESPACE"]);
    assert_eq!(out, "default\n");
    let (ok, _, err) = kubectl.run(&["exec", "nosuchpod", "--", "true"]);
    assert!(!ok && err.contains("pods \"nosuchpod\" not found"), "{err}");
    let viewer = common::Kubectl::new(env.dir.path(), &env.c, 1, &env.c.token("viewer", None));
    let (ok, _, err) = viewer.run(&["exec", "web", "--", "true"]);
    assert!(
        !ok && err.contains("cannot create resource \"pods/exec\""),
        "{err}"
    );

    // kubectl port-forward (SPDY in a WebSocket, through the API server
    // and the agent): connections to the pod's port, one after another
    // over the same session.
    let (_pf, local, err_file) = kubectl.port_forward("pod/web", 8080);
    for _ in 0..3 {
        let (code, body) = get_port("127.0.0.1", local, "/").unwrap_or_else(|| {
            panic!(
                "no answer through the port-forward: {}",
                std::fs::read_to_string(&err_file).unwrap_or_default()
            )
        });
        assert_eq!(code, 200);
        assert!(body.contains("hello from web"), "{body}");
    }
    // A port nothing listens on: the connection fails, and kubectl is told
    // why on the error stream.
    let (_pf, local, err_file) = kubectl.port_forward("pod/web", 9);
    assert!(get_port("127.0.0.1", local, "/").is_none());
    eventually(
        Duration::from_secs(10),
        "the forwarding error reported",
        || {
            let err = std::fs::read_to_string(&err_file).unwrap_or_default();
            async move { err.contains("error forwarding port 9 to pod web") }
        },
    )
    .await;
    let (ok, _, err) = viewer.run(&["port-forward", "pod/web", ":8080"]);
    assert!(
        !ok && err.contains("cannot create resource \"pods/portforward\""),
        "{err}"
    );

    // Graceful delete: the process is stopped, then the pod is gone.
    pods.delete("web", &DeleteParams::default())
        .await
        .expect("delete web");
    eventually(Duration::from_secs(20), "web gone", || async {
        pods.get("web").await.is_err()
    })
    .await;
    assert!(get(&ip, "/").is_none(), "the web process is stopped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashing_container_restarts_with_a_growing_backoff() {
    let _g = serial().await;
    let env = nodes(false).await;
    let pods = &env.pods;
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
    // The previous instance's log.
    let (ok, text) = run_cli(&env.c, &["logs", "crash", "--previous", "--tail", "1"]);
    assert!(ok && text.lines().count() == 1, "{text}");
    let kubectl = common::Kubectl::new(env.dir.path(), &env.c, 0, &env.c.token("admin", None));
    let text = kubectl.ok(&["logs", "crash", "--previous", "--tail", "1"]);
    assert_eq!(text.lines().count(), 1, "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_liveness_probe_restarts_its_container() {
    let _g = serial().await;
    let env = nodes(false).await;
    let pods = &env.pods;
    let live = fixtures::PodBuilder::from(pod("live", "builtin/http-echo", &[]))
        .liveness(http_probe("8080", "/healthz"))
        .build();
    let live_ip = status(&running(pods, live).await).pod_ip;
    // Make /healthz fail; the container is restarted.
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
    let _ = pods.delete("live", &DeleteParams::default()).await;
    eventually(Duration::from_secs(20), "live gone", || async {
        pods.get("live").await.is_err()
    })
    .await;
    assert!(get(&live_ip, "/").is_none(), "no process left behind");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_proxy_spreads_prefers_local_and_skips_unready_pods() {
    let _g = serial().await;
    let env = nodes(true).await;
    let pods = &env.pods;
    // Two echo pods, one per node; n3's proxy (no local endpoint) spreads
    // connections over both, n1's prefers its own; a pod that turns
    // unready gets no new connections.
    for (name, node) in [("echo-1", "n1"), ("echo-2", "n2")] {
        let p = fixtures::PodBuilder::from(pod(name, "builtin/http-echo", &[]))
            .label("app", "echo")
            .node(node)
            .readiness(http_probe("http", "/healthz"))
            .build();
        pods.create(&p).await.expect("create echo pod");
    }
    let services: Api<v1::Service> = Api::namespaced(env.cl.clone(), "default");
    services
        .create(&v1::Service {
            metadata: Some(v1::ObjectMeta {
                name: "echo".into(),
                ..Default::default()
            }),
            spec: Some(v1::ServiceSpec {
                selector: fixtures::labels(&[("app", "echo")]),
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
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_agent_readopts_its_running_pods() {
    let _g = serial().await;
    let mut env = nodes(false).await;
    let web = running(&env.pods, pod("web", "builtin/http-echo", &[])).await;
    let ip = status(&web).pod_ip;
    // The agent of web's node is SIGKILLed and restarted: its pods keep
    // running and are adopted, not restarted.
    let node = fixtures::node_of(&web);
    let idx = ADDRESSES
        .iter()
        .position(|(n, _)| *n == node)
        .expect("web on n1 or n2");
    keelson_testkit::process::kill(&mut env.agents.0[idx]);
    assert_eq!(
        get(&ip, "/").map(|r| r.0),
        Some(200),
        "web runs without its agent"
    );
    env.agents.0[idx] = start_agent(&env.c, &node, ADDRESSES[idx].1, env.dir.path(), &[]);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let again = env.pods.get("web").await.expect("web");
    let log = std::fs::read_to_string(env.dir.path().join(format!("agent-{node}.log")))
        .unwrap_or_default();
    assert_eq!(
        restarts(&again),
        0,
        "adopted, not restarted; agent log:\n{log}\n{:?}",
        again.status
    );
    assert!(is_ready(&again), "still ready after the agent came back");
    assert_eq!(status(&again).pod_ip, ip, "same address");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_process_pods_get_config_maps_and_secrets_as_env_and_files() {
    let _g = serial().await;
    let n = nodes(false).await;
    let cms: Api<v1::ConfigMap> = Api::namespaced(n.cl.clone(), "default");
    let secrets: Api<v1::Secret> = Api::namespaced(n.cl.clone(), "default");
    cms.create(&v1::ConfigMap {
        metadata: fixtures::meta("app", &[]),
        data: [("mode".to_string(), "prod".to_string())].into(),
        ..Default::default()
    })
    .await
    .expect("configmap");
    let p: v1::Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "configured", "namespace": "default"},
        "spec": {
            "volumes": [{"name": "app", "configMap": {"name": "app"}}],
            "containers": [{
                "name": "main", "image": "busybox",
                "command": ["sh", "-c", "echo \"pw=$PASSWORD pod=$ME\"; cat etc/app/mode; exec sleep 3600"],
                "env": [
                    {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}},
                    {"name": "ME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}
                ],
                "volumeMounts": [{"name": "app", "mountPath": "/etc/app"}]
            }],
            "terminationGracePeriodSeconds": 1
        }
    }))
    .expect("pod");
    n.pods.create(&p).await.expect("pod");
    eventually(
        Duration::from_secs(20),
        "the pod waits with CreateContainerConfigError",
        || async {
            n.pods.get("configured").await.is_ok_and(|p| {
                let w = status(&p)
                    .container_statuses
                    .first()
                    .and_then(|c| c.state.clone())
                    .and_then(|s| s.waiting);
                w.is_some_and(|w| {
                    w.reason == "CreateContainerConfigError"
                        && w.message == "secret \"db\" not found"
                })
            })
        },
    )
    .await;
    secrets
        .create(&v1::Secret {
            metadata: fixtures::meta("db", &[]),
            string_data: [("password".to_string(), "hunter2".to_string())].into(),
            ..Default::default()
        })
        .await
        .expect("secret");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (_, log) = run_cli(&n.c, &["logs", "configured"]);
        if log == "pw=hunter2 pod=configured\nprod" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the pod started with its env and files: {log:?}\n{:?}",
            n.pods.get("configured").await.map(|p| status(&p))
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    n.pods
        .delete("configured", &DeleteParams::default())
        .await
        .expect("delete");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_run_to_completion_fail_past_their_backoff_limit_and_expire() {
    let _g = serial().await;
    let n = nodes(false).await;
    let k = common::Kubectl::new(n.dir.path(), &n.c, 0, &n.c.token("admin", None));
    let apply = |manifest: serde_json::Value| {
        let (code, out, err) = k.run_input(&["apply", "-f", "-"], manifest.to_string().as_bytes());
        assert_eq!(code, 0, "{out}{err}");
    };
    let job = |name: &str, spec: serde_json::Value, command: &str| {
        let mut spec = spec;
        spec["template"] = serde_json::json!({"spec": {
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "main", "image": "busybox", "command": ["sh", "-c", command]}]
        }});
        serde_json::json!({"apiVersion": "batch/v1", "kind": "Job",
                           "metadata": {"name": name}, "spec": spec})
    };
    // Three completions, two at a time.
    apply(job(
        "work",
        serde_json::json!({"completions": 3, "parallelism": 2}),
        "echo did the work; sleep 0.3",
    ));
    let (code, out, err) = k.run(&[
        "wait",
        "--for=condition=complete",
        "job/work",
        "--timeout=60s",
    ]);
    assert!(
        code,
        "{out}{err}\n{}\n{}",
        k.run(&["get", "job", "work", "-o", "yaml"]).1,
        k.run(&["get", "pods", "-o", "yaml"]).1
    );
    let (row, table) = k.first_row(&["get", "job", "work"]);
    assert_eq!(&row[..3], ["work", "Complete", "3/3"], "{table}");
    let pods_of = |job: &str| {
        let pods = n.pods.clone();
        let selector = format!("batch.kubernetes.io/job-name={job}");
        async move {
            pods.list(&keelson_sdk::ListParams::default().labels(&selector))
                .await
                .map(|l| l.items)
                .unwrap_or_default()
        }
    };
    let done = pods_of("work").await;
    assert_eq!(
        done.iter()
            .filter(|p| status(p).phase == "Succeeded")
            .count(),
        3,
        "exactly completions pods succeeded: {:?}",
        done.iter().map(|p| status(p).phase).collect::<Vec<_>>()
    );
    eventually(Duration::from_secs(10), "the pods are released", || async {
        pods_of("work")
            .await
            .iter()
            .all(|p| p.meta().finalizers.is_empty())
    })
    .await;
    let log = k.ok(&["logs", "job/work"]);
    assert_eq!(log, "did the work\n");
    // Indexed: each index runs once, its pod told its index.
    apply(job(
        "indexed",
        serde_json::json!({"completions": 3, "parallelism": 3, "completionMode": "Indexed"}),
        "echo index=$JOB_COMPLETION_INDEX",
    ));
    k.ok(&[
        "wait",
        "--for=condition=complete",
        "job/indexed",
        "--timeout=60s",
    ]);
    let completed = k.ok(&[
        "get",
        "job",
        "indexed",
        "-o",
        "jsonpath={.status.completedIndexes} {.status.succeeded}",
    ]);
    assert_eq!(completed, "0-2 3");
    let mut seen = Vec::new();
    for p in pods_of("indexed").await {
        let index = p
            .meta()
            .labels
            .get("batch.kubernetes.io/job-completion-index")
            .cloned()
            .unwrap_or_default();
        let log = k.ok(&["logs", &p.meta().name]);
        assert_eq!(log, format!("index={index}\n"), "{}", p.meta().name);
        seen.push(index);
    }
    seen.sort();
    assert_eq!(seen, ["0", "1", "2"]);
    // kubectl's own generator (a protobuf body from client-go).
    k.ok(&[
        "create",
        "job",
        "quick",
        "--image=busybox",
        "--",
        "sh",
        "-c",
        "echo quick",
    ]);
    k.ok(&[
        "wait",
        "--for=condition=complete",
        "job/quick",
        "--timeout=60s",
    ]);
    assert_eq!(k.ok(&["logs", "job/quick"]), "quick\n");

    // Every pod fails: after backoffLimit + 1 failures the Job fails.
    apply(job(
        "broken",
        serde_json::json!({"backoffLimit": 1}),
        "exit 3",
    ));
    k.ok(&[
        "wait",
        "--for=condition=failed",
        "job/broken",
        "--timeout=60s",
    ]);
    // The second failure is counted once its pod is released.
    eventually(Duration::from_secs(10), "two failures counted", || async {
        k.run(&[
            "get",
            "job",
            "broken",
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Failed\")].reason} {.status.failed}",
        ])
        .1 == "BackoffLimitExceeded 2"
    })
    .await;
    let mut broken = pods_of("broken").await;
    assert_eq!(broken.len(), 2, "one pod per failure");
    // The replacement waited out the 10 s back-off after the failure.
    broken.sort_by(|a, b| {
        a.meta()
            .creation_timestamp
            .cmp(&b.meta().creation_timestamp)
    });
    let first_end = status(&broken[0])
        .container_statuses
        .iter()
        .filter_map(|c| c.state.as_ref()?.terminated.as_ref())
        .filter_map(|t| keelson_model::time::parse_rfc3339(&t.finished_at))
        .max()
        .expect("the first pod's end");
    let second_start = keelson_model::time::parse_rfc3339(&broken[1].meta().creation_timestamp)
        .expect("creation time");
    let waited = second_start.duration_since(first_end).unwrap_or_default();
    // Timestamps have whole seconds.
    assert!(
        waited >= Duration::from_secs(9),
        "replaced after {waited:?}"
    );

    // A finished Job with a TTL goes, and its pods with it; deleting a
    // Job deletes its pods.
    apply(job(
        "brief",
        serde_json::json!({"ttlSecondsAfterFinished": 1}),
        "true",
    ));
    eventually(
        Duration::from_secs(30),
        "the expired Job and its pod are gone",
        || async {
            let (ok, _, err) = k.run(&["get", "job", "brief"]);
            !ok && err.contains("NotFound") && pods_of("brief").await.is_empty()
        },
    )
    .await;
    k.ok(&["delete", "job", "work"]);
    eventually(
        Duration::from_secs(20),
        "the deleted Job's pods are gone",
        || async { pods_of("work").await.is_empty() },
    )
    .await;
}
