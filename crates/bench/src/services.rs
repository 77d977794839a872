//! `keelson bench services`: how soon a node's Service rules follow an
//! Endpoints change (issue 15's target: within a second). One agent with
//! `--runtime runc` on a 3-replica loopback cluster; a Service without a
//! selector, so its Endpoints are the benchmark's to write; each change
//! replaces the endpoint address, and the time is from the API's
//! acknowledgement of the Endpoints update to the node's nftables table
//! (`nft list table ip keelson-svc-<bridge>`, polled every 5 ms) showing
//! the new address. No pod is needed: the addresses are never dialled.

use std::time::{Duration, Instant};

use clap::Args;
use keelson_proto::v1;
use keelson_sdk::{Api, Client, Config, ListParams};
use keelson_testkit::stats::percentile;
use keelson_testkit::{ProcCluster, Program};

use crate::keelson_bin;

#[derive(Args)]
pub struct ServicesBenchArgs {
    /// Endpoints changes timed.
    #[arg(long, default_value_t = 50)]
    pub changes: usize,
}

const NODE: &str = "svc-bench";
const ADDRESS: &str = "127.0.0.24";
/// How often the node's table is read.
const POLL: Duration = Duration::from_millis(5);
/// A change not seen by then is a failure.
const CHANGE_TIMEOUT: Duration = Duration::from_secs(10);

fn endpoints(ip: &str) -> v1::Endpoints {
    v1::Endpoints {
        metadata: Some(v1::ObjectMeta {
            name: "bench".into(),
            ..Default::default()
        }),
        subsets: vec![v1::EndpointSubset {
            addresses: vec![v1::EndpointAddress {
                ip: ip.into(),
                ..Default::default()
            }],
            ports: vec![v1::EndpointPort {
                port: 8080,
                protocol: "TCP".into(),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn table_text(table: &str) -> String {
    std::process::Command::new("nft")
        .args(["list", "table", "ip", table])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

pub async fn run(a: ServicesBenchArgs) -> anyhow::Result<()> {
    keelson_agent::runc::available()
        .map_err(|e| anyhow::anyhow!("bench services needs runc: {e}"))?;
    let dir = tempfile::tempdir()?;
    println!(
        "machine: {} cores; 3 replicas, fsync on; 1 agent (runc runtime); {} Endpoints changes",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        a.changes
    );
    let me = keelson_bin()?;
    let c = ProcCluster::start(
        Program::Keelson {
            bin: me.clone(),
            extra_args: vec![],
        },
        3,
        &dir.path().join("cluster"),
    )?;
    c.wait_healthy(Duration::from_secs(60)).await?;
    let mut agent = c
        .keelson([
            "agent",
            "--runtime",
            "runc",
            "--name",
            NODE,
            "--address",
            ADDRESS,
        ])?
        .args(["--stop-pods-on-exit", "--data-dir"])
        .args([dir.path().join(NODE)])
        .named(format!("agent {NODE}"))
        .log(&dir.path().join("agent.log"))
        .spawn()?;
    let result = measure(&c, a.changes).await;
    // SIGTERM: with --stop-pods-on-exit the agent removes its bridge and
    // tables.
    keelson_testkit::signal(agent.id(), libc::SIGTERM);
    let t0 = Instant::now();
    while agent.try_wait().ok().flatten().is_none() && t0.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = agent.kill();
    let _ = agent.wait();
    let mut lat = result?;
    lat.sort_by(f64::total_cmp);
    println!();
    println!("| Service rules after an Endpoints change (update acknowledged -> the node's nftables table has it) | p50 ms | p99 ms | max ms |");
    println!("|---|---:|---:|---:|");
    println!(
        "| {} changes | {:.0} | {:.0} | {:.0} |",
        lat.len(),
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        percentile(&lat, 1.0)
    );
    println!("| target (issue 15): within 1000 ms | | 1000 | |");
    Ok(())
}

/// The latencies of `changes` Endpoints changes, in ms.
async fn measure(c: &ProcCluster, changes: usize) -> anyhow::Result<Vec<f64>> {
    let client = Client::new(&Config::new(c.api_endpoints(), c.token("admin", None)))?;
    let nodes: Api<v1::Node> = Api::all(client.clone());
    // The agent programs Services once its node has a pod CIDR.
    let t0 = Instant::now();
    loop {
        let ready = nodes
            .list(&ListParams::default())
            .await
            .map(|l| {
                l.items.iter().any(|n| {
                    n.metadata.as_ref().is_some_and(|m| m.name == NODE)
                        && n.spec.as_ref().is_some_and(|s| !s.pod_cidr.is_empty())
                })
            })
            .unwrap_or(false);
        if ready {
            break;
        }
        anyhow::ensure!(
            t0.elapsed() < Duration::from_secs(30),
            "the agent did not register"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let table =
        keelson_agent::services::table_name(&keelson_agent::network::Network::bridge_name(NODE));
    let services: Api<v1::Service> = Api::namespaced(client.clone(), "default");
    services
        .create(&v1::Service {
            metadata: Some(v1::ObjectMeta {
                name: "bench".into(),
                ..Default::default()
            }),
            spec: Some(v1::ServiceSpec {
                ports: vec![v1::ServicePort {
                    port: 80,
                    target_port: "8080".into(),
                    protocol: "TCP".into(),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        })
        .await?;
    let eps: Api<v1::Endpoints> = Api::namespaced(client, "default");
    eps.create(&endpoints("10.244.250.1")).await?;
    // The first rules (the agent's caches warm).
    let t0 = Instant::now();
    while !table_text(&table).contains("10.244.250.1:8080") {
        anyhow::ensure!(
            t0.elapsed() < Duration::from_secs(30),
            "the agent never programmed the Service (table {table})"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut lat = Vec::with_capacity(changes);
    for i in 0..changes {
        let ip = format!("10.244.251.{}", i % 250 + 1);
        let mut e = eps.get("bench").await?;
        e.subsets = endpoints(&ip).subsets;
        eps.update(&e).await?;
        let acked = Instant::now();
        let want = format!("{ip}:8080");
        loop {
            if table_text(&table).contains(&want) {
                lat.push(acked.elapsed().as_secs_f64() * 1000.0);
                break;
            }
            anyhow::ensure!(
                acked.elapsed() < CHANGE_TIMEOUT,
                "change {i} ({ip}) not in the node's rules after {CHANGE_TIMEOUT:?}"
            );
            tokio::time::sleep(POLL).await;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(lat)
}
