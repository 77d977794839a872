//! Batching on the leader: many client commands per Raft entry, many
//! linearizable reads per read-index round.

use std::sync::Arc;

use keelson_proto::raft::{Command, CommandBatch, CommandResult};
use prost::Message;
use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::error::{Error, Result};
use crate::raft::{Raft, Request};

/// Commands queued for proposal before senders wait (backpressure).
pub const PROPOSAL_QUEUE_MAX: usize = 16 * 1024;
/// Most commands packed into one Raft entry.
pub const PROPOSAL_COMMANDS_MAX: usize = 2048;
/// Most bytes of commands packed into one Raft entry; keeps entries well
/// below the peer message limit.
const PROPOSAL_BYTES_MAX: usize = 8 * 1024 * 1024;
/// Raft entries in flight at once. While they replicate, new commands queue
/// up and form the next, larger batch: this is what amortizes fsyncs.
const PROPOSALS_IN_FLIGHT_MAX: usize = 2;
/// Linearizable reads queued before senders wait.
pub const READ_QUEUE_MAX: usize = 16 * 1024;

pub struct Pending {
    pub cmd: Command,
    pub reply: oneshot::Sender<Result<CommandResult>>,
}

/// Drain the proposal queue into batched Raft entries.
pub async fn run_proposer(raft: Raft, mut rx: mpsc::Receiver<Pending>) {
    let in_flight = Arc::new(Semaphore::new(PROPOSALS_IN_FLIGHT_MAX));
    while let Some(first) = rx.recv().await {
        let Ok(permit) = in_flight.clone().acquire_owned().await else {
            return;
        };
        let mut bytes = first.cmd.encoded_len();
        let mut batch = vec![first];
        while batch.len() < PROPOSAL_COMMANDS_MAX && bytes < PROPOSAL_BYTES_MAX {
            match rx.try_recv() {
                Ok(p) => {
                    bytes += p.cmd.encoded_len();
                    batch.push(p);
                }
                Err(_) => break,
            }
        }
        let raft = raft.clone();
        tokio::spawn(async move {
            let (cmds, replies): (Vec<Command>, Vec<_>) = batch.into_iter().map(|p| (p.cmd, p.reply)).unzip();
            let n = cmds.len();
            let res = raft.client_write(Request(CommandBatch { commands: cmds })).await;
            drop(permit);
            match res {
                Ok(resp) if resp.data.0.len() == n => {
                    for (reply, result) in replies.into_iter().zip(resp.data.0) {
                        let _ = reply.send(Ok(result));
                    }
                }
                Ok(resp) => {
                    tracing::error!(want = n, got = resp.data.0.len(), "state machine returned a wrong result count");
                    for reply in replies {
                        let _ = reply.send(Err(Error::Internal("wrong result count".into())));
                    }
                }
                Err(e) => {
                    // Not leader any more, or leadership was lost while the
                    // entry replicated: it may still commit, so the client
                    // hears "leader changed" (the outcome is unknown), as
                    // with etcd.
                    let err = if e.forward_to_leader().is_some() {
                        Error::LeaderChanged
                    } else {
                        tracing::warn!(error = %e, "propose");
                        Error::Stopped
                    };
                    for reply in replies {
                        let _ = reply.send(Err(err.clone()));
                    }
                }
            }
        });
    }
}

/// Answer queued read-index requests, one quorum round for all of them.
/// A request that arrives during a round waits for the next one: a round
/// that started before it cannot vouch for writes acknowledged before it.
pub async fn run_read_index(raft: Raft, mut rx: mpsc::Receiver<oneshot::Sender<Result<u64>>>) {
    while let Some(first) = rx.recv().await {
        let mut waiters = vec![first];
        while let Ok(w) = rx.try_recv() {
            waiters.push(w);
        }
        let res = match raft.get_read_log_id().await {
            Ok((read_log_id, _applied)) => Ok(read_log_id.map(|l| l.index).unwrap_or(0)),
            Err(e) => {
                if e.forward_to_leader::<openraft::BasicNode>().is_some() {
                    Err(Error::LeaderChanged)
                } else {
                    Err(Error::Unhealthy)
                }
            }
        };
        for w in waiters {
            let _ = w.send(res.clone());
        }
    }
}
