//! Hundreds of connections per port (1,500 in all), idle or stalled half-way through a request,
//! on every port of a replica (etcd client, API, Kubernetes API, metrics,
//! peer): the replica keeps serving every client while they are open,
//! its memory stays bounded (printed, and checked against a generous
//! bound), nothing panics, and they are let go of.

use crate::common;

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use common::{admin_client, serial, start_cluster, Kubectl};
use keelson_sdk::types as v1;
use keelson_sdk::{Api, ListParams};

/// Idle and half-sent connections per port.
const PER_PORT: usize = 300;

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

/// `PER_PORT` connections to `port`: half idle, half having sent the
/// start of what the port speaks and then nothing more.
fn flood(port: u16, partial: &'static [u8]) -> Vec<TcpStream> {
    let mut out = Vec::with_capacity(PER_PORT);
    for i in 0..PER_PORT {
        let Ok(mut s) = TcpStream::connect_timeout(
            &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
            Duration::from_secs(2),
        ) else {
            continue;
        };
        if i % 2 == 1 {
            let _ = s.write_all(partial);
        }
        out.push(s);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_idle_and_stalled_connections_starve_no_client() {
    let _g = serial().await;
    let dir = tempfile::tempdir().unwrap();
    let c = start_cluster(3, &dir.path().join("cluster"), &[]).await;
    let m = &c.members[0];
    let pid = m.pid().expect("replica running");
    let before = rss_kib(pid);
    let ports: Vec<(u16, &'static [u8])> = vec![
        (m.client_port, b"PRI * HTTP/2.0\r\n"),
        (m.api_port, b"PRI * HTTP/2.0\r\n\r\nSM"),
        // A TLS record header announcing a ClientHello that never comes.
        (m.kube_port, &[0x16, 0x03, 0x01, 0x02, 0x00]),
        (m.metrics_port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n"),
        (m.peer_port, b"PRI * HTTP/2.0\r\n"),
    ];
    let held = tokio::task::spawn_blocking(move || {
        ports
            .into_iter()
            .map(|(p, partial)| flood(p, partial))
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    let opened: usize = held.iter().map(Vec::len).sum();
    assert!(
        opened >= 5 * PER_PORT * 9 / 10,
        "only {opened} connections opened"
    );

    // Every kind of client still gets answers from this replica.
    let mut kv = common::kv(&m.endpoint());
    keelson_testkit::etcd::put(&mut kv, "flood/key", "v")
        .await
        .expect("etcd put");
    let one = keelson_sdk::Client::new(&keelson_sdk::Config::new(
        vec![m.api_endpoint()],
        c.token("admin", None),
    ))
    .unwrap();
    let ns: Api<v1::Namespace> = Api::all(one);
    ns.list(&ListParams::default()).await.expect("gRPC list");
    let started = std::time::Instant::now();
    let kubectl = Kubectl::new(dir.path(), &c, 0, &c.token("admin", None));
    let out = kubectl.ok(&["get", "namespaces", "-o", "name"]);
    println!("kubectl get took {:?} during the flood", started.elapsed());
    assert!(out.contains("namespace/default"), "{out}");
    let metrics = common::http_get(&format!("127.0.0.1:{}", m.metrics_port), "/metrics");
    assert_eq!(metrics.map(|r| r.0), Some(200));
    // Raft among the replicas goes on: a write through another replica.
    let cms: Api<v1::ConfigMap> = Api::namespaced(admin_client(&c), "default");
    cms.create(&v1::ConfigMap {
        metadata: common::fixtures::meta("during-flood", &[]),
        ..Default::default()
    })
    .await
    .expect("create during the flood");

    let during = rss_kib(pid);
    println!(
        "replica RSS: {before} KiB before, {during} KiB with {opened} connections open ({:.1} KiB each)",
        (during.saturating_sub(before)) as f64 / opened as f64
    );
    assert!(
        during < before + 256 * 1024,
        "RSS grew from {before} to {during} KiB for {opened} connections"
    );
    drop(held);
    tokio::time::sleep(Duration::from_secs(1)).await;
    keelson_testkit::etcd::put(&mut kv, "flood/after", "v")
        .await
        .expect("put after");
    for m in &c.members {
        assert!(m.is_running(), "{} still running", m.name);
        let log = std::fs::read_to_string(&m.log_path).unwrap_or_default();
        assert!(!log.contains("panicked"), "{}: {log}", m.name);
    }
}
