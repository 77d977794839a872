//! `keelson bench pods`: pods on real images under runc (2 agents on a
//! 3-replica loopback cluster), against the target (p99 create ->
//! Running under 2 s, image present) and the process runtime in the same
//! run:
//!
//! - **pull**: the busybox image (built here with umoci, served by a
//!   docker-registry on loopback) pulled into an empty store, 5 times;
//! - **startup**: P pods created at once, image present on both nodes
//!   (loaded with `keelson image load` before the agents start), each pod's
//!   create acknowledgement -> the watch showing it Running;
//! - **per-pod overhead** once every pod runs: RSS of the pause processes
//!   and of the `runc run` supervisors, and the agents' growth, per pod;
//!   and the machine's CPU from the first create to the last pod Running
//!   (busy share, CPU per pod).

use std::time::Instant;

use clap::Args;
use keelson_agent::image::pull::{pull, PullOptions};
use keelson_agent::image::{ImageRef, Store};
use keelson_testkit::images;
use keelson_testkit::stats::percentile;

use crate::nodes::{pod_startup, Startup};

#[derive(Args)]
pub struct PodsBenchArgs {
    /// Pods started on the two agents.
    #[arg(long, default_value_t = 100)]
    pub pods: usize,
    /// Pulls of the image timed.
    #[arg(long, default_value_t = 5)]
    pub pulls: usize,
}

pub async fn run(a: PodsBenchArgs) -> anyhow::Result<()> {
    keelson_agent::runc::available().map_err(|e| anyhow::anyhow!("bench pods needs runc: {e}"))?;
    let dir = tempfile::tempdir()?;
    println!(
        "machine: {} cores; 3 replicas, fsync on; {} pods on 2 agents; busybox image {} bytes of layers",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        a.pods,
        std::fs::metadata("/bin/busybox").map_or(0, |m| m.len())
    );
    let layout = images::build_busybox(dir.path())?;
    let registry = images::Registry::start(dir.path())?;
    let image = format!("{}/busybox:1.35", registry.addr);
    images::push(&layout, &image)?;
    let archive = dir.path().join("busybox.tar");
    images::oci_archive(&layout, &archive, &image)?;

    let reference = ImageRef::parse(&image).map_err(anyhow::Error::msg)?;
    let mut pull_ms = Vec::new();
    for i in 0..a.pulls.max(1) {
        let store = Store::open(&dir.path().join(format!("pull-{i}")))?;
        let t = Instant::now();
        pull(&store, &reference, &PullOptions::default())
            .await
            .map_err(anyhow::Error::msg)?;
        pull_ms.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    pull_ms.sort_by(f64::total_cmp);

    let runc = Startup {
        pods: a.pods,
        runtime: "runc",
        image: &image,
        args: &["sleep", "3600"],
        archive: Some(&archive),
    };
    let ((r50, r99, rmax), overhead) = pod_startup(&runc, &dir.path().join("runc")).await?;
    let process = Startup {
        pods: a.pods,
        runtime: "process",
        image: "builtin/sleep",
        args: &[],
        archive: None,
    };
    let ((p50, p99, pmax), _) = pod_startup(&process, &dir.path().join("process")).await?;
    drop(registry);

    println!();
    println!(
        "| pull of the image from a loopback registry (empty store) | p50 ms | max ms |\n|---|---:|---:|\n| {} pulls | {:.0} | {:.0} |",
        pull_ms.len(),
        percentile(&pull_ms, 0.5),
        percentile(&pull_ms, 1.0)
    );
    println!();
    println!(
        "| pod startup, {} pods at once, 2 agents | p50 ms | p99 ms | max ms |",
        a.pods
    );
    println!("|---|---:|---:|---:|");
    println!("| runc, image present | {r50:.0} | {r99:.0} | {rmax:.0} |");
    println!("| process runtime (builtin/sleep) | {p50:.0} | {p99:.0} | {pmax:.0} |");
    println!("| target (issue 15): p99 under 2000 ms | | 2000 | |");
    if let Some(o) = overhead {
        println!();
        println!(
            "per-pod overhead (RSS, MiB per pod): pause {:.2}, runc run supervisor {:.2}, agents' growth {:.2}",
            o.pause_mib, o.runc_mib, o.agent_mib
        );
    }
    Ok(())
}
