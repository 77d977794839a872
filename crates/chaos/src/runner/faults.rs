//! The fault schedule: seeded, one fault at a time, each undone (restart,
//! SIGCONT, heal) before the next.

use std::time::{Duration, Instant};

use anyhow::bail;
use keelson_testkit::faultnet::FaultNet;
use keelson_testkit::ProcCluster;
use rand::{Rng, SeedableRng};

use super::controlplane::Agents;

/// Every fault kind.
pub const ALL_FAULTS: &str = "kill-leader,kill-random,pause-leader,pause-random,partition-random,partition-leader,one-way-leader,clients-cut-random,clients-cut-leader,clients-reset,kill-agent";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultKind {
    KillLeader,
    KillRandom,
    PauseLeader,
    PauseRandom,
    /// A replica cut off from the others, both ways.
    PartitionRandom,
    PartitionLeader,
    /// The leader's messages to the others lost (it still hears them).
    OneWayLeader,
    /// A replica unreachable for clients (held both ways).
    ClientsCutRandom,
    ClientsCutLeader,
    /// Every client connection to a replica closed.
    ClientsReset,
    /// SIGKILL of an agent process, then a restart.
    KillAgent,
}

impl FaultKind {
    pub fn parse(s: &str) -> anyhow::Result<FaultKind> {
        Ok(match s.trim() {
            "kill-leader" => FaultKind::KillLeader,
            "kill-random" => FaultKind::KillRandom,
            "pause-leader" => FaultKind::PauseLeader,
            "pause-random" => FaultKind::PauseRandom,
            "partition-random" => FaultKind::PartitionRandom,
            "partition-leader" => FaultKind::PartitionLeader,
            "one-way-leader" => FaultKind::OneWayLeader,
            "clients-cut-random" => FaultKind::ClientsCutRandom,
            "clients-cut-leader" => FaultKind::ClientsCutLeader,
            "clients-reset" => FaultKind::ClientsReset,
            "kill-agent" => FaultKind::KillAgent,
            other => bail!("unknown fault {other:?} (one of {ALL_FAULTS})"),
        })
    }
}

/// One fault injected: when, what, how long.
pub struct Fault {
    pub at: Duration,
    pub what: String,
    pub lasted: Duration,
}

/// Inject faults until `until`: one at a time, each undone (restart,
/// SIGCONT) before the next.
#[allow(clippy::too_many_arguments)]
pub async fn faults_loop(
    c: &mut ProcCluster,
    net: &FaultNet,
    agents: &mut Option<&mut Agents>,
    kinds: &[FaultKind],
    every: Duration,
    seed: u64,
    t0: Instant,
    until: Instant,
) -> Vec<Fault> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ 0xfa17);
    let mut done = Vec::new();
    loop {
        let wait = every.mul_f64(rng.random_range(0.5..1.5));
        if Instant::now() + wait >= until {
            return done;
        }
        tokio::time::sleep(wait).await;
        let kind = kinds[rng.random_range(0..kinds.len())];
        let n = c.members.len();
        let target = match kind {
            FaultKind::KillLeader
            | FaultKind::PauseLeader
            | FaultKind::PartitionLeader
            | FaultKind::OneWayLeader
            | FaultKind::ClientsCutLeader => match c.leader().await {
                Some(i) => i,
                None => rng.random_range(0..n),
            },
            FaultKind::KillAgent => rng.random_range(0..agents.as_ref().map_or(1, |a| a.count())),
            _ => rng.random_range(0..n),
        };
        let mut lasted = Duration::from_millis(rng.random_range(500..3000));
        let at = t0.elapsed();
        let name = match kind {
            FaultKind::KillAgent => format!("agent {target}"),
            _ => c.members[target].name.clone(),
        };
        match kind {
            FaultKind::KillLeader | FaultKind::KillRandom => {
                c.kill(target);
                tokio::time::sleep(lasted).await;
                if let Err(e) = c.restart(target) {
                    eprintln!("restart {name}: {e:#}");
                }
            }
            FaultKind::PauseLeader | FaultKind::PauseRandom => {
                c.pause(target, true);
                tokio::time::sleep(lasted).await;
                c.pause(target, false);
            }
            FaultKind::PartitionRandom | FaultKind::PartitionLeader => {
                net.isolate(target, n);
                tokio::time::sleep(lasted).await;
                net.heal();
            }
            FaultKind::OneWayLeader => {
                for j in (0..n).filter(|j| *j != target) {
                    net.block(target, j);
                }
                tokio::time::sleep(lasted).await;
                net.heal();
            }
            FaultKind::ClientsCutRandom | FaultKind::ClientsCutLeader => {
                net.cut_clients(target);
                tokio::time::sleep(lasted).await;
                net.heal();
            }
            FaultKind::ClientsReset => {
                net.reset(target);
                lasted = Duration::ZERO;
            }
            FaultKind::KillAgent => {
                if let Some(a) = agents.as_mut() {
                    a.kill(target);
                    tokio::time::sleep(lasted).await;
                    if let Err(e) = a.restart(target) {
                        eprintln!("restart agent {target}: {e:#}");
                    }
                }
            }
        }
        let what = match kind {
            FaultKind::KillLeader => format!("SIGKILL leader {name}, restarted"),
            FaultKind::KillRandom => format!("SIGKILL {name}, restarted"),
            FaultKind::PauseLeader => format!("SIGSTOP leader {name}, SIGCONT"),
            FaultKind::PauseRandom => format!("SIGSTOP {name}, SIGCONT"),
            FaultKind::PartitionRandom => format!("partition: {name} cut off, healed"),
            FaultKind::PartitionLeader => format!("partition: leader {name} cut off, healed"),
            FaultKind::OneWayLeader => {
                format!("one-way: leader {name} not heard by the others, healed")
            }
            FaultKind::ClientsCutRandom => format!("clients cut off from {name}, healed"),
            FaultKind::ClientsCutLeader => format!("clients cut off from leader {name}, healed"),
            FaultKind::ClientsReset => format!("every client connection to {name} reset"),
            FaultKind::KillAgent => format!("SIGKILL {name} (simulated nodes), restarted"),
        };
        done.push(Fault { at, what, lasted });
    }
}
