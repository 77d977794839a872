//! The runc runtime with real images (root, runc, umoci, skopeo,
//! docker-registry and busybox-static are required: the test fails
//! without them). The test builds a busybox image with umoci, serves it
//! from Debian's docker-registry started on a loopback port, and runs an
//! agent with `--runtime runc` against a control plane, pods made with
//! kubectl:
//! - a pulled image runs isolated: its own hostname, an address of the
//!   node's pod CIDR (given by the node IPAM controller) on `eth0`,
//!   `imageID` the manifest's digest;
//! - pod to pod over the node's bridge (busybox httpd read with nc from
//!   another pod), and nothing leaves the machine (a pod's connection to
//!   an address outside the cluster CIDR is dropped);
//! - `keelson image load` of an oci-archive, then a pod with
//!   `imagePullPolicy: Never` runs from it; `keelson image ls|rm`;
//! - the reasons: `InvalidImageName`, `ErrImageNeverPull`, `ErrImagePull`
//!   then `ImagePullBackOff`;
//! - the agent SIGKILLed and restarted adopts its containers (same
//!   container, no restart, still serving);
//! - deleting the pods leaves no mount, cgroup, veth, pause process or
//!   file behind, and the agent stopped with `--stop-pods-on-exit` removes
//!   its bridge and nftables table.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{admin_client, eventually, serial, start_agent, start_control_plane, Kubectl};
use keelson_sdk::types::{self as v1};
use keelson_sdk::{Api, Resource};

fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?} (this project's machines have it): {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Everything a node of the runc runtime may leave on the machine, for a
/// data dir: overlay mounts under it, its pause processes, its pods'
/// veths and cgroups, files under `pods/`.
fn leftovers(data_dir: &Path, uids: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let dir = data_dir.to_string_lossy().into_owned();
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    out.extend(
        mounts
            .lines()
            .filter(|l| l.contains(&dir))
            .map(|l| format!("mount {l}")),
    );
    let links = run(Command::new("ip").args(["-o", "link", "show"]));
    for uid in uids {
        let veth = keelson_agent::network::Network::host_veth(uid);
        if links.contains(&veth) {
            out.push(format!("veth {veth}"));
        }
        for h in std::fs::read_dir("/sys/fs/cgroup")
            .into_iter()
            .flatten()
            .flatten()
        {
            let keelson = h.path().join("keelson");
            for node in std::fs::read_dir(&keelson).into_iter().flatten().flatten() {
                let p = node.path().join(format!("pod{uid}"));
                if p.exists() {
                    out.push(format!("cgroup {}", p.display()));
                }
            }
        }
    }
    if let Ok(pods) = std::fs::read_dir(data_dir.join("pods")) {
        out.extend(
            pods.flatten()
                .map(|p| format!("file {}", p.path().display())),
        );
    }
    out
}

async fn pod_of(pods: &Api<v1::Pod>, name: &str) -> Option<v1::Pod> {
    pods.get(name).await.ok()
}

fn waiting_reason(p: &v1::Pod) -> String {
    p.status
        .as_ref()
        .and_then(|s| s.container_statuses.first())
        .and_then(|c| c.state.as_ref())
        .and_then(|s| s.waiting.as_ref())
        .map(|w| w.reason.clone())
        .unwrap_or_default()
}

fn running(p: &v1::Pod) -> bool {
    p.status.as_ref().is_some_and(|s| s.phase == "Running") && keelson_model::pod::is_ready(p)
}

/// Tears the node down even when the test fails: the pods' sandboxes,
/// containers, mounts and cgroups, the bridge and its rules.
struct NodeCleanup {
    data_dir: PathBuf,
    node: String,
}

impl Drop for NodeCleanup {
    fn drop(&mut self) {
        if let Err(e) = keelson_agent::agent::stop_all_containers(
            &self.data_dir,
            Duration::ZERO,
            keelson_agent::agent::RuntimeKind::Runc,
            &self.node,
        ) {
            eprintln!("cleanup of {}: {e}", self.node);
        }
    }
}

/// A control plane, a registry serving the busybox image the test built,
/// and agent `r1` on the runc runtime. Dropped in field order: the agent,
/// its node's leftovers, the registry, the replicas, the files.
struct Setup {
    agent: common::Procs,
    _cleanup: NodeCleanup,
    registry: keelson_testkit::images::Registry,
    c: common::ProcCluster,
    kubectl: Kubectl,
    pods: Api<v1::Pod>,
    nodes: Api<v1::Node>,
    /// `<registry>/busybox:1.35`.
    image: String,
    /// The image's OCI layout (for archives).
    layout: PathBuf,
    data_dir: PathBuf,
    dir: tempfile::TempDir,
}

const AGENT_ARGS: [&str; 3] = ["--runtime", "runc", "--stop-pods-on-exit"];

async fn setup() -> Setup {
    let dir = tempfile::tempdir().expect("tempdir");
    let layout = keelson_testkit::images::build_busybox(dir.path()).expect("build the image");
    let registry = keelson_testkit::images::Registry::start(dir.path()).expect("registry");
    let image = format!("{}/busybox:1.35", registry.addr);
    keelson_testkit::images::push(&layout, &image).expect("push");
    let c = start_control_plane(1, &dir.path().join("cluster"), &[]).await;
    let data_dir = dir.path().join("r1");
    let cleanup = NodeCleanup {
        data_dir: data_dir.clone(),
        node: "r1".into(),
    };
    let agent = common::Procs(vec![start_agent(
        &c,
        "r1",
        "127.0.0.41",
        dir.path(),
        &AGENT_ARGS,
    )]);
    let client = admin_client(&c);
    let kubectl = Kubectl::new(dir.path(), &c, 0, &c.token("admin", None));
    Setup {
        agent,
        _cleanup: cleanup,
        registry,
        kubectl,
        pods: Api::namespaced(client.clone(), "default"),
        nodes: Api::all(client),
        c,
        image,
        layout,
        data_dir,
        dir,
    }
}

/// Apply a manifest (JSON) with kubectl.
fn apply(s: &Setup, manifest: serde_json::Value) {
    let file = s.dir.path().join("manifest.json");
    std::fs::write(&file, manifest.to_string()).expect("manifest");
    s.kubectl.ok(&["apply", "-f", &file.to_string_lossy()]);
}

async fn wait_running(s: &Setup, name: &str) {
    eventually(
        Duration::from_secs(30),
        &format!("{name} Running and Ready"),
        || {
            let pods = s.pods.clone();
            async move { pod_of(&pods, name).await.is_some_and(|p| running(&p)) }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_images_run_isolated_under_runc() {
    let _g = serial().await;
    let s = setup().await;
    let (dir, image, registry, data_dir) = (&s.dir, &s.image, &s.registry, &s.data_dir);
    let (pods, nodes, kubectl) = (&s.pods, &s.nodes, &s.kubectl);
    let archive = dir.path().join("busybox.tar");
    keelson_testkit::images::oci_archive(&s.layout, &archive, "keelson.test/busybox:1.35")
        .expect("archive");

    // The node IPAM controller gives the node a /24 of 10.244.0.0/16.
    let mut cidr = String::new();
    for _ in 0..100 {
        cidr = nodes
            .get("r1")
            .await
            .ok()
            .and_then(|n| n.spec)
            .map(|s| s.pod_cidr)
            .unwrap_or_default();
        if !cidr.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        cidr.starts_with("10.244.") && cidr.ends_with("/24"),
        "r1's pod CIDR: {cidr:?}"
    );
    let cidr = keelson_model::cidr::Cidr::parse(&cidr).expect("a CIDR");

    // A pulled image, its own hostname and address.
    kubectl.ok(&[
        "run",
        "hello",
        &format!("--image={image}"),
        "--",
        "sh",
        "-c",
        "echo hostname=$(hostname); ip -4 addr show eth0; exec sleep 3600",
    ]);
    kubectl.ok(&[
        "run",
        "web",
        &format!("--image={image}"),
        "--",
        "httpd",
        "-f",
        "-p",
        "8080",
        "-h",
        "/etc",
    ]);
    for name in ["hello", "web"] {
        eventually(Duration::from_secs(30), &format!("{name} Running"), || {
            let pods = pods.clone();
            async move { pod_of(&pods, name).await.is_some_and(|p| running(&p)) }
        })
        .await;
    }
    let hello = pod_of(pods, "hello").await.expect("hello");
    let st = hello.status.clone().unwrap_or_default();
    let ip: std::net::Ipv4Addr = st.pod_ip.parse().expect("a pod IP");
    assert!(cidr.contains(ip), "{ip} in {cidr}");
    let cs = &st.container_statuses[0];
    assert!(
        cs.image_id
            .starts_with(&format!("{}/busybox@sha256:", registry.addr)),
        "imageID {:?}",
        cs.image_id
    );
    assert_eq!(
        hello.spec.as_ref().unwrap().containers[0].image_pull_policy,
        "IfNotPresent"
    );
    let mut log = String::new();
    eventually(Duration::from_secs(10), "hello's log", || {
        let (_, out, err) = kubectl.run(&["logs", "hello"]);
        log = format!("{out}{err}");
        async move { out.contains("eth0") }
    })
    .await;
    assert!(log.contains("hostname=hello"), "{log}");
    assert!(log.contains(&format!("inet {ip}/24")), "{log}");

    // Pod to pod over the bridge; nothing leaves the machine.
    let web_ip = pod_of(pods, "web")
        .await
        .and_then(|p| p.status)
        .map(|s| s.pod_ip)
        .expect("web ip");
    let script = format!(
        "printf 'GET /hostname HTTP/1.0\\r\\n\\r\\n' | nc -w 3 {web_ip} 8080 | tail -1; \
         if printf x | nc -w 2 198.51.100.1 80; then echo outside=reached; else echo outside=dropped; fi"
    );
    kubectl.ok(&[
        "run",
        "client",
        "--restart=Never",
        &format!("--image={image}"),
        "--",
        "sh",
        "-c",
        &script,
    ]);
    eventually(Duration::from_secs(30), "client Succeeded", || {
        let pods = pods.clone();
        async move {
            pod_of(&pods, "client")
                .await
                .and_then(|p| p.status)
                .is_some_and(|s| s.phase == "Succeeded")
        }
    })
    .await;
    let out = kubectl.ok(&["logs", "client"]);
    assert!(
        out.contains("web\n"),
        "the client read web's hostname: {out}"
    );
    assert!(out.contains("outside=dropped"), "{out}");

    // A loaded archive runs with Never; ls and rm.
    let keelson = common::keelson_bin();
    let loaded = run(Command::new(&keelson)
        .args(["image", "load"])
        .arg(&archive)
        .arg("--data-dir")
        .arg(data_dir));
    assert!(loaded.contains("keelson.test/busybox:1.35"), "{loaded}");
    let manifest = serde_json::json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "loaded"},
        "spec": {"containers": [{"name": "main", "image": "keelson.test/busybox:1.35",
            "imagePullPolicy": "Never", "command": ["sleep", "3600"]}]}
    });
    let file = dir.path().join("loaded.json");
    std::fs::write(&file, manifest.to_string()).expect("manifest");
    kubectl.ok(&["apply", "-f", &file.to_string_lossy()]);
    eventually(Duration::from_secs(30), "loaded Running", || {
        let pods = pods.clone();
        async move { pod_of(&pods, "loaded").await.is_some_and(|p| running(&p)) }
    })
    .await;
    let ls = run(Command::new(&keelson)
        .args(["image", "ls", "--data-dir"])
        .arg(data_dir));
    assert!(
        ls.contains("keelson.test/busybox") && ls.contains(&format!("{}/busybox", registry.addr)),
        "{ls}"
    );
    // In use: refused.
    let rm = Command::new(&keelson)
        .args(["image", "rm", "keelson.test/busybox:1.35", "--data-dir"])
        .arg(data_dir)
        .output()
        .expect("keelson image rm");
    assert!(!rm.status.success(), "an image in use is kept");

    // The reasons.
    // kubectl run checks names itself; a manifest goes as written.
    let badname = serde_json::json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "badname"},
        "spec": {"containers": [{"name": "main", "image": "Bad/Name:1"}]}
    });
    std::fs::write(&file, badname.to_string()).expect("manifest");
    kubectl.ok(&["apply", "-f", &file.to_string_lossy()]);
    let never = serde_json::json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "never"},
        "spec": {"containers": [{"name": "main", "image": "keelson.test/absent:1",
            "imagePullPolicy": "Never"}]}
    });
    std::fs::write(&file, never.to_string()).expect("manifest");
    kubectl.ok(&["apply", "-f", &file.to_string_lossy()]);
    kubectl.ok(&[
        "run",
        "missing",
        &format!("--image={}/nope:1", registry.addr),
    ]);
    for (name, reason) in [
        ("badname", "InvalidImageName"),
        ("never", "ErrImageNeverPull"),
        ("missing", "ErrImagePull"),
        ("missing", "ImagePullBackOff"),
    ] {
        eventually(
            Duration::from_secs(20),
            &format!("{name}: {reason}"),
            || {
                let pods = pods.clone();
                async move {
                    pod_of(&pods, name)
                        .await
                        .is_some_and(|p| waiting_reason(&p) == reason)
                }
            },
        )
        .await;
    }

    // SIGKILL the agent; a new one adopts the containers.
    let before = pod_of(pods, "web")
        .await
        .and_then(|p| p.status)
        .expect("web");
    let mut agent = s.agent;
    keelson_testkit::process::kill(&mut agent.0[0]);
    agent.0[0] = start_agent(&s.c, "r1", "127.0.0.41", dir.path(), &AGENT_ARGS);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = pod_of(pods, "web")
        .await
        .and_then(|p| p.status)
        .expect("web");
    assert_eq!(
        after.container_statuses[0].container_id,
        before.container_statuses[0].container_id
    );
    assert_eq!(after.container_statuses[0].restart_count, 0);
    assert_eq!(after.pod_ip, before.pod_ip);
    kubectl.ok(&[
        "run",
        "client2",
        "--restart=Never",
        &format!("--image={image}"),
        "--",
        "sh",
        "-c",
        &script,
    ]);
    eventually(Duration::from_secs(30), "client2 read web", || {
        let out = kubectl.run(&["logs", "client2"]).1;
        async move { out.contains("web\n") }
    })
    .await;

    // Deleting the pods leaves nothing behind.
    let all: Vec<v1::Pod> = pods.list(&Default::default()).await.expect("list").items;
    let uids: Vec<String> = all.iter().map(|p| p.meta().uid.clone()).collect();
    kubectl.ok(&[
        "delete",
        "pods",
        "--all",
        "--grace-period=1",
        "--wait=false",
    ]);
    eventually(Duration::from_secs(40), "every pod gone", || {
        let pods = pods.clone();
        async move {
            pods.list(&Default::default())
                .await
                .is_ok_and(|l| l.items.is_empty())
        }
    })
    .await;
    let mut left = Vec::new();
    eventually(Duration::from_secs(10), "nothing left behind", || {
        left = leftovers(data_dir, &uids);
        let empty = left.is_empty();
        async move { empty }
    })
    .await;
    assert!(left.is_empty(), "{left:?}");
    // With no pod, an image can go.
    run(Command::new(&keelson)
        .args(["image", "rm", "keelson.test/busybox:1.35", "--data-dir"])
        .arg(data_dir));

    // Image garbage collection: an agent whose disk counts as past its
    // high threshold (0%) removes the images no container uses, here the
    // pulled one, and no other image is left.
    let pulled = format!("{}/busybox", registry.addr);
    assert!(run(Command::new(&keelson)
        .args(["image", "ls", "--data-dir"])
        .arg(data_dir))
    .contains(&pulled));
    keelson_testkit::process::kill(&mut agent.0[0]);
    let gc_args: Vec<&str> = AGENT_ARGS
        .iter()
        .copied()
        .chain([
            "--image-gc-high-threshold",
            "0",
            "--image-gc-low-threshold",
            "0",
        ])
        .chain(["--image-gc-period", "1"])
        .collect();
    agent.0[0] = start_agent(&s.c, "r1", "127.0.0.41", dir.path(), &gc_args);
    let mut ls = String::new();
    eventually(Duration::from_secs(20), "unused images collected", || {
        ls = run(Command::new(&keelson)
            .args(["image", "ls", "--data-dir"])
            .arg(data_dir));
        let gone = !ls.contains(&pulled);
        async move { gone }
    })
    .await;
    let blobs = std::fs::read_dir(data_dir.join("images/blobs/sha256"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(blobs, 0, "no blob is left: {ls}");
}

fn last_terminated_reason(p: &v1::Pod) -> String {
    p.status
        .as_ref()
        .and_then(|s| s.container_statuses.first())
        .and_then(|c| c.last_state.as_ref())
        .and_then(|s| s.terminated.as_ref())
        .map(|t| t.reason.clone())
        .unwrap_or_default()
}

/// Two containers share an emptyDir and localhost; an exec readiness
/// probe runs inside its container (the file it reads exists only
/// there); a container over its memory limit ends OOMKilled and restarts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn volumes_localhost_exec_probes_and_oom_under_runc() {
    let _g = serial().await;
    let s = setup().await;
    let image = s.image.clone();
    let host_dir = s.dir.path().join("host-data");
    std::fs::create_dir_all(&host_dir).expect("host dir");
    std::fs::write(host_dir.join("greeting"), "from the host\n").expect("file");
    apply(
        &s,
        serde_json::json!({
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "shared"},
            "spec": {
                "volumes": [
                    {"name": "www", "emptyDir": {}},
                    {"name": "host", "hostPath": {"path": host_dir, "type": "Directory"}},
                    {"name": "mem", "emptyDir": {"medium": "Memory", "sizeLimit": "8Mi"}}
                ],
                "containers": [
                    {"name": "server", "image": image,
                     "command": ["httpd", "-f", "-p", "8080", "-h", "/www"],
                     "volumeMounts": [{"name": "www", "mountPath": "/www"}],
                     // Ready only once the writer made the page: the probe
                     // runs in the server's own mount namespace.
                     "readinessProbe": {"exec": {"command": ["cat", "/www/page"]},
                                        "periodSeconds": 1}},
                    {"name": "writer", "image": image,
                     "command": ["sh", "-c",
                        "cat /host/greeting > /out/page; echo tmpfs=$(grep -c ' /scratch tmpfs' /proc/mounts); \
                         touch /host-ro/x 2>/dev/null && echo ro=writable || echo ro=refused; \
                         for i in $(seq 1 20); do \
                           got=$(printf 'GET /page HTTP/1.0\\r\\n\\r\\n' | nc -w 3 127.0.0.1 8080 | tail -1); \
                           [ -n \"$got\" ] && echo \"$got\" && break; sleep 1; done; \
                         exec sleep 3600"],
                     "volumeMounts": [
                        {"name": "www", "mountPath": "/out"},
                        {"name": "host", "mountPath": "/host"},
                        {"name": "host", "mountPath": "/host-ro", "readOnly": true},
                        {"name": "mem", "mountPath": "/scratch"}
                     ]}
                ]
            }
        }),
    );
    wait_running(&s, "shared").await;
    let mut log = String::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !log.contains("from the host") {
        assert!(
            std::time::Instant::now() < deadline,
            "the writer read the page over localhost: {log}\n{}",
            s.kubectl.run(&["get", "pod", "shared", "-o", "yaml"]).1
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
        let (_, out, err) = s.kubectl.run(&["logs", "shared", "-c", "writer"]);
        log = format!("{out}{err}");
    }
    assert!(
        log.contains("tmpfs=1"),
        "the Memory emptyDir is a tmpfs: {log}"
    );
    assert!(
        log.contains("ro=refused"),
        "a readOnly mount refuses writes: {log}"
    );

    // kubectl exec runs inside the container (runc exec): its files, its
    // volumes, stdin to its end, the exit code.
    let out = s
        .kubectl
        .ok(&["exec", "shared", "-c", "writer", "--", "cat", "/out/page"]);
    assert_eq!(out, "from the host\n");
    let (code, out, err) = s.kubectl.run_input(
        &[
            "exec",
            "-i",
            "shared",
            "-c",
            "server",
            "--",
            "sh",
            "-c",
            "cat > /www/typed; hostname; exit 4",
        ],
        b"typed in\n",
    );
    assert_eq!((code, out.as_str()), (4, "shared\n"), "{err}");
    let out = s
        .kubectl
        .ok(&["exec", "shared", "-c", "writer", "--", "cat", "/out/typed"]);
    assert_eq!(
        out, "typed in\n",
        "the server's write is in the shared emptyDir"
    );
    // kubectl port-forward to the server container's port.
    let (_pf, local, _) = s.kubectl.port_forward("pod/shared", 8080);
    let got = common::http_get(&format!("127.0.0.1:{local}"), "/page");
    assert_eq!(
        got.map(|(c, b)| (c, b.trim().to_string())),
        Some((200, "from the host".to_string()))
    );
    let (ok, _, err) = s
        .kubectl
        .run(&["exec", "shared", "-c", "writer", "--", "/no/such/program"]);
    assert!(!ok && err.contains("no such file"), "{err}");
    // A terminal (kubectl's stdin is one that `script` makes, 30x100):
    // the command's stdio is the container's own terminal, of that size.
    let kubectl_it = format!(
        "stty rows 30 cols 100; HOME={} kubectl --kubeconfig {} exec -it shared -c writer -- sh -c 'tty; stty size'",
        s.kubectl.home.display(),
        s.kubectl.config.display()
    );
    let out = run(Command::new("script").args(["-qec", &kubectl_it, "/dev/null"]));
    assert!(
        out.contains("/dev/pts/") && out.contains("30 100"),
        "{out:?}"
    );
    // The same with `keelson exec -it` (its client flags before `--`).
    let keelson_it = format!(
        "stty rows 25 cols 81; KEELSON_CONFIG=/nonexistent {} exec --server {} --token {} -it shared -c writer -- sh -c 'tty; stty size; exit 5'",
        common::keelson_bin().display(),
        s.c.api_endpoints().join(","),
        s.c.token("admin", None)
    );
    let out = Command::new("script")
        .args(["-qec", &keelson_it, "/dev/null"])
        .output()
        .expect("script");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("/dev/pts/") && text.contains("25 81"),
        "{text:?}"
    );
    assert_eq!(
        out.status.code(),
        Some(5),
        "the command's exit code: {text:?}"
    );

    // An exec probe that passes only inside the container: the file is
    // in the container's rootfs, not on the host.
    apply(
        &s,
        serde_json::json!({
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "probed"},
            "spec": {"containers": [{"name": "main", "image": image,
                "command": ["sh", "-c", "sleep 2; touch /keelson-ready-inside; exec sleep 3600"],
                "readinessProbe": {"exec": {"command": ["cat", "/keelson-ready-inside"]},
                                   "periodSeconds": 1}}]}
        }),
    );
    wait_running(&s, "probed").await;
    assert!(
        !Path::new("/keelson-ready-inside").exists(),
        "the probe's file is the container's"
    );

    // Over its memory limit: OOMKilled, then restarted.
    apply(
        &s,
        serde_json::json!({
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "hog"},
            "spec": {"containers": [{"name": "main", "image": image,
                "command": ["sh", "-c", "head -c 200000000 /dev/zero | tail > /dev/null"],
                "resources": {"limits": {"memory": "32Mi"}}}]}
        }),
    );
    eventually(
        Duration::from_secs(40),
        "hog OOMKilled and restarted",
        || {
            let pods = s.pods.clone();
            async move {
                pod_of(&pods, "hog").await.is_some_and(|p| {
                    last_terminated_reason(&p) == "OOMKilled"
                        && p.status
                            .as_ref()
                            .and_then(|st| st.container_statuses.first())
                            .is_some_and(|c| c.restart_count >= 1)
                })
            }
        },
    )
    .await;

    // Nothing is left behind, the tmpfs included.
    let all: Vec<v1::Pod> = s.pods.list(&Default::default()).await.expect("list").items;
    let uids: Vec<String> = all.iter().map(|p| p.meta().uid.clone()).collect();
    s.kubectl.ok(&[
        "delete",
        "pods",
        "--all",
        "--grace-period=1",
        "--wait=false",
    ]);
    eventually(Duration::from_secs(40), "every pod gone", || {
        let pods = s.pods.clone();
        async move {
            pods.list(&Default::default())
                .await
                .is_ok_and(|l| l.items.is_empty())
        }
    })
    .await;
    let mut left = Vec::new();
    eventually(Duration::from_secs(10), "nothing left behind", || {
        left = leftovers(&s.data_dir, &uids);
        let empty = left.is_empty();
        async move { empty }
    })
    .await;
    assert_eq!(
        std::fs::read_to_string(host_dir.join("greeting")).expect("host file"),
        "from the host\n",
        "a hostPath outlives its pods"
    );
}

/// A Deployment of busybox httpd behind a NodePort Service: reached by
/// its cluster IP from a pod and from the node, by its node port on the
/// node's address, and by its DNS names from a pod; an endpoint turned
/// unready drops out of the rules.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_reach_ready_pods_by_cluster_ip_and_node_port_under_runc() {
    let _g = serial().await;
    let s = setup().await;
    let image = s.image.clone();
    let ready_dir = s.dir.path().join("ready");
    std::fs::create_dir_all(&ready_dir).expect("dir");
    apply(
        &s,
        serde_json::json!({
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}}, "spec": {
                    "volumes": [{"name": "ready", "hostPath": {"path": ready_dir, "type": "Directory"}}],
                    "containers": [{"name": "httpd", "image": image,
                        "command": ["httpd", "-f", "-p", "8080", "-h", "/etc"],
                        "ports": [{"containerPort": 8080}],
                        "volumeMounts": [{"name": "ready", "mountPath": "/ready"}],
                        // Ready while the test leaves its file in place.
                        "readinessProbe": {"exec": {"command": ["sh", "-c", "test -f /ready/$(hostname)"]},
                                           "periodSeconds": 1}}]}}}
        }),
    );
    s.kubectl.ok(&[
        "expose",
        "deployment",
        "web",
        "--port",
        "80",
        "--target-port",
        "8080",
        "--type",
        "NodePort",
    ]);
    // Both pods ready (their files made once their names are known).
    let mut names: Vec<String> = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while names.len() != 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "two web pods: {names:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        if let Ok(list) = s.pods.list(&Default::default()).await {
            names = list.items.iter().map(|p| p.meta().name.clone()).collect();
        }
    }
    for n in &names {
        std::fs::write(ready_dir.join(n), "").expect("ready file");
    }
    for n in &names {
        wait_running(&s, n).await;
    }
    let svc: v1::Service = Api::<v1::Service>::namespaced(admin_client(&s.c), "default")
        .get("web")
        .await
        .expect("service");
    let spec = svc.spec.expect("spec");
    let vip = spec.cluster_ip.clone();
    assert!(
        vip.starts_with("10.96."),
        "a cluster IP from the service range: {vip}"
    );
    let node_port = spec.ports[0].node_port;
    assert!((30000..=32767).contains(&node_port), "{node_port}");

    // From the node: the cluster IP and the node port both reach each pod.
    let seen = |addr: String| async move {
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..40 {
            if let Some((200, body)) = common::http_get(&addr, "/hostname") {
                seen.insert(body.trim().to_string());
            }
        }
        seen
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let by_vip = seen(format!("{vip}:80")).await;
        if by_vip.len() == 2 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the cluster IP answers from both pods: {by_vip:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let by_node_port = seen(format!("127.0.0.41:{node_port}")).await;
    assert_eq!(
        by_node_port.len(),
        2,
        "the node port reaches both pods: {by_node_port:?}"
    );

    // From a pod, by the cluster IP.
    let script = format!(
        "for i in 1 2 3 4 5 6 7 8 9 10; do printf 'GET /hostname HTTP/1.0\\r\\n\\r\\n' | nc -w 3 {vip} 80 | tail -1; done"
    );
    s.kubectl.ok(&[
        "run",
        "client",
        "--restart=Never",
        &format!("--image={image}"),
        "--",
        "sh",
        "-c",
        &script,
    ]);
    eventually(
        Duration::from_secs(30),
        "the client read the Service",
        || {
            let out = s.kubectl.run(&["logs", "client"]).1;
            async move { out.lines().filter(|l| l.starts_with("web-")).count() == 10 }
        },
    )
    .await;

    // Cluster DNS: the Service by its full name, by `<svc>.<ns>` and
    // `<svc>` through the search path, and by name from nc.
    // (busybox's nslookup applies the search path to dotless names only;
    // nc resolves through libc, which honours ndots.)
    let dns_script = "nslookup web.default.svc.cluster.local; nslookup web; \
         nslookup nope.default.svc.cluster.local || echo nope=nxdomain; \
         printf 'GET /hostname HTTP/1.0\\r\\n\\r\\n' | nc -w 3 web 80 | tail -1; \
         printf 'GET /hostname HTTP/1.0\\r\\n\\r\\n' | nc -w 3 web.default 80 | tail -1";
    s.kubectl.ok(&[
        "run",
        "resolver",
        "--restart=Never",
        &format!("--image={image}"),
        "--",
        "sh",
        "-c",
        dns_script,
    ]);
    let mut dns_log = String::new();
    eventually(Duration::from_secs(30), "the resolver's answers", || {
        let (_, out, _) = s.kubectl.run(&["logs", "resolver"]);
        dns_log = out.clone();
        async move { out.lines().filter(|l| l.starts_with("web-")).count() == 2 }
    })
    .await;
    assert_eq!(
        dns_log.matches(&format!("Address: {vip}")).count(),
        2,
        "the full and the short name resolve to the cluster IP: {dns_log}"
    );
    assert!(dns_log.contains("nope=nxdomain"), "{dns_log}");

    // One pod unready: it drops out of the Service.
    let (gone, kept) = (&names[0], &names[1]);
    std::fs::remove_file(ready_dir.join(gone)).expect("remove");
    let began = std::time::Instant::now();
    eventually(
        Duration::from_secs(20),
        "only the ready pod answers",
        || {
            let fut = seen(format!("{vip}:80"));
            let kept = kept.clone();
            async move { fut.await == [kept].into() }
        },
    )
    .await;
    eprintln!(
        "unready endpoint out of the rules after {:?}",
        began.elapsed()
    );
    s.kubectl.ok(&["delete", "service", "web"]);
    s.kubectl.ok(&["delete", "deployment", "web"]);
}

/// A StatefulSet's pods under the headless Service its `serviceName`
/// names: each pod's hostname is its name, its hosts file leads with its
/// DNS name, and the node's cluster DNS answers `<pod>.<service>.<ns>.svc`
/// with that pod's address and the Service's name with both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stateful_set_pods_have_dns_names_under_runc() {
    let _g = serial().await;
    let s = setup().await;
    let image = s.image.clone();
    apply(
        &s,
        serde_json::json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "db"},
             "spec": {"clusterIP": "None", "selector": {"app": "db"}, "ports": [{"port": 80}]}}),
    );
    apply(
        &s,
        serde_json::json!(
            {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db"},
             "spec": {"replicas": 2, "serviceName": "db",
                      "selector": {"matchLabels": {"app": "db"}},
                      "template": {"metadata": {"labels": {"app": "db"}},
                                   "spec": {"terminationGracePeriodSeconds": 1,
                                            "containers": [{"name": "main", "image": image,
                                                            "command": ["sleep", "3600"]}]}}}}),
    );
    s.kubectl
        .ok(&["rollout", "status", "statefulset/db", "--timeout=60s"]);
    let ip = |p: Option<v1::Pod>| {
        p.and_then(|p| p.status)
            .map(|st| st.pod_ip)
            .unwrap_or_default()
    };
    let ip0 = ip(pod_of(&s.pods, "db-0").await);
    let ip1 = ip(pod_of(&s.pods, "db-1").await);
    assert!(
        ip0.starts_with("10.244.") && ip1.starts_with("10.244."),
        "{ip0} {ip1}"
    );
    let script = "hostname; grep db-0 /etc/hosts; \
                  nslookup db-1.db.default.svc.cluster.local; nslookup db.default.svc.cluster.local";
    let mut out = String::new();
    eventually(
        Duration::from_secs(30),
        "db-1 and db resolve from db-0",
        || {
            let (_, o, e) = s.kubectl.run(&["exec", "db-0", "--", "sh", "-c", script]);
            out = format!("{o}{e}");
            let both = o.matches(&format!("Address: {ip1}")).count() == 2
                && o.contains(&format!("Address: {ip0}"));
            async move { both }
        },
    )
    .await;
    assert_eq!(out.lines().next(), Some("db-0"), "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with(&ip0) && l.contains("db-0.db.default.svc.cluster.local")),
        "the hosts file names the pod's DNS name: {out}"
    );
    s.kubectl.ok(&["delete", "statefulset", "db"]);
    s.kubectl.ok(&["delete", "service", "db"]);
}

/// The waiting message of a pod's first container.
fn waiting_message(p: &v1::Pod) -> String {
    p.status
        .as_ref()
        .and_then(|s| s.container_statuses.first())
        .and_then(|c| c.state.as_ref())
        .and_then(|s| s.waiting.as_ref())
        .map(|w| w.message.clone())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_maps_and_secrets_reach_containers_as_env_and_files_under_runc() {
    let _g = serial().await;
    let s = setup().await;
    let image = s.image.clone();
    s.kubectl.ok(&[
        "create",
        "configmap",
        "app",
        "--from-literal=mode=prod",
        "--from-literal=level=3",
    ]);
    // The pod names a Secret that does not exist yet: it waits with the
    // kubelet's reason, and starts once the Secret is created.
    apply(
        &s,
        serde_json::json!({
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "configured"},
            "spec": {
                "volumes": [
                    {"name": "app", "configMap": {"name": "app"}},
                    {"name": "db", "secret": {"secretName": "db", "defaultMode": 0o400}}
                ],
                "containers": [{
                    "name": "main", "image": image,
                    "command": ["sh", "-c", "echo \"pw=$PASSWORD level=$CFG_level\"; exec sleep 3600"],
                    "env": [{"name": "PASSWORD",
                             "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}}],
                    "envFrom": [{"prefix": "CFG_", "configMapRef": {"name": "app"}}],
                    "volumeMounts": [
                        {"name": "app", "mountPath": "/etc/app"},
                        {"name": "db", "mountPath": "/etc/db"}
                    ]
                }]
            }
        }),
    );
    eventually(
        Duration::from_secs(20),
        "the pod waits for its Secret",
        || {
            let pods = s.pods.clone();
            async move {
                pod_of(&pods, "configured").await.is_some_and(|p| {
                    waiting_message(&p).contains("not found")
                        && matches!(
                            waiting_reason(&p).as_str(),
                            "CreateContainerConfigError" | "ContainerCreating"
                        )
                })
            }
        },
    )
    .await;
    let p = pod_of(&s.pods, "configured").await.expect("pod");
    assert_eq!(
        waiting_message(&p),
        "MountVolume.SetUp failed for volume \"db\" : secret \"db\" not found",
        "the missing Secret volume is named"
    );
    s.kubectl.ok(&[
        "create",
        "secret",
        "generic",
        "db",
        "--from-literal=password=hunter2",
    ]);
    wait_running(&s, "configured").await;
    let mut log = String::new();
    for _ in 0..50 {
        log = s.kubectl.ok(&["logs", "configured"]);
        if !log.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(log, "pw=hunter2 level=3\n");
    let exec = |cmd: &str| {
        s.kubectl
            .run(&["exec", "configured", "--", "sh", "-c", cmd])
    };
    let (ok, out, err) = exec(
        "cat /etc/app/mode; echo; cat /etc/db/password; echo; stat -L -c %a /etc/db/password; \
         touch /etc/app/x 2>/dev/null && echo writable || echo read-only",
    );
    assert!(ok, "{err}");
    assert_eq!(out, "prod\nhunter2\n400\nread-only\n");

    // Changed objects reach the running container's files in place (no
    // restart); its environment stays as it started, as in Kubernetes.
    s.kubectl.ok(&[
        "patch",
        "configmap",
        "app",
        "-p",
        r#"{"data":{"mode":"staging","extra":"x"}}"#,
    ]);
    let began = std::time::Instant::now();
    eventually(
        Duration::from_secs(20),
        "the volume follows the ConfigMap",
        || {
            let out = exec("cat /etc/app/mode; echo; ls /etc/app").1;
            async move { out == "staging\nextra\nlevel\nmode\n" }
        },
    )
    .await;
    eprintln!("ConfigMap change in the volume after {:?}", began.elapsed());
    let p = pod_of(&s.pods, "configured").await.expect("pod");
    let restarts = p
        .status
        .as_ref()
        .and_then(|st| st.container_statuses.first())
        .map(|c| c.restart_count);
    assert_eq!(restarts, Some(0), "no restart for a volume update");
    s.kubectl
        .ok(&["delete", "pod", "configured", "--wait=true"]);
    let uid = p
        .metadata
        .as_ref()
        .map(|m| m.uid.clone())
        .unwrap_or_default();
    eventually(
        Duration::from_secs(20),
        "nothing of the pod is left",
        || {
            let left = leftovers(&s.data_dir, std::slice::from_ref(&uid));
            async move { left.is_empty() }
        },
    )
    .await;
}
