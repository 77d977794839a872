//! Batching, on every replica: many client commands per Raft entry (or per
//! forwarded request when this replica follows), many linearizable reads per
//! read-index round.
//!
//! While a batch is in flight, new requests queue up and form the next,
//! larger batch; this is what amortizes fsyncs and RPCs under load, and
//! costs nothing when idle (a lone request goes out at once).

use std::sync::Arc;
use std::time::Duration;

use keelson_proto::raft::{
    command_result, Command, CommandBatch, CommandError, CommandResult, ReadIndexRequest,
};
use prost::Message;
use tokio::sync::{mpsc, oneshot, Semaphore};

use super::{Replica, Route, REQUEST_TIMEOUT_MS};
use crate::error::{Error, Result};
use crate::raft::Request;

/// Commands queued for proposal before senders wait (backpressure).
pub const PROPOSAL_QUEUE_MAX: usize = 16 * 1024;
/// A batch (one Raft entry, or one forwarded request) stops growing at
/// this many commands. Its units are never split, so the last one (a
/// follower's forwarded batch, itself at most this many) may carry it
/// past.
pub const PROPOSAL_COMMANDS_MAX: usize = 2048;
/// Most bytes of commands in one batch (one more command may follow, up to
/// the request limit). openraft gives an AppendEntries one heartbeat
/// interval and ships up to `max_payload_entries` entries in it, so entries
/// stay small.
const PROPOSAL_BYTES_MAX: usize = 1024 * 1024;
/// Batches in flight at once per replica.
const PROPOSALS_IN_FLIGHT_MAX: usize = 2;
/// Linearizable reads queued before senders wait.
pub const READ_QUEUE_MAX: usize = 16 * 1024;

/// Commands that go into one proposal together (one client's command, or
/// a batch a follower forwarded), answered together.
pub struct Pending {
    pub cmds: Vec<Command>,
    /// Forwarded to us by a follower: propose here or fail, never forward
    /// again (leadership may have moved; the client will retry).
    pub local_only: bool,
    pub reply: oneshot::Sender<Result<Vec<CommandResult>>>,
}

impl Pending {
    fn encoded_len(&self) -> usize {
        self.cmds.iter().map(|c| c.encoded_len()).sum()
    }
}

pub struct ReadWaiter {
    pub local_only: bool,
    pub reply: oneshot::Sender<Result<u64>>,
}

/// Drain the proposal queue into batches: Raft entries on the leader,
/// forwarded requests on a follower.
pub async fn run_proposer(replica: Arc<Replica>, mut rx: mpsc::Receiver<Pending>) {
    let in_flight = Arc::new(Semaphore::new(PROPOSALS_IN_FLIGHT_MAX));
    let mut paused = replica.proposals_paused.subscribe();
    while let Some(first) = rx.recv().await {
        if paused.wait_for(|p| !*p).await.is_err() {
            return;
        }
        let Ok(permit) = in_flight.clone().acquire_owned().await else {
            return;
        };
        let mut bytes = first.encoded_len();
        let mut commands = first.cmds.len();
        let mut batch = vec![first];
        while commands < PROPOSAL_COMMANDS_MAX && bytes < PROPOSAL_BYTES_MAX {
            match rx.try_recv() {
                Ok(p) => {
                    bytes += p.encoded_len();
                    commands += p.cmds.len();
                    batch.push(p);
                }
                Err(_) => break,
            }
        }
        let replica = replica.clone();
        tokio::spawn(async move {
            submit(&replica, batch).await;
            drop(permit);
        });
    }
}

async fn submit(replica: &Replica, batch: Vec<Pending>) {
    let route = match replica.route().await {
        Ok(r) => r,
        Err(e) => {
            for p in batch {
                let _ = p.reply.send(Err(e.clone()));
            }
            return;
        }
    };
    let mut batch = batch;
    if let Route::Remote(_) = route {
        // Requests a follower forwarded to us must not travel further.
        let (keep, refuse): (Vec<_>, Vec<_>) = batch.into_iter().partition(|p| !p.local_only);
        for p in refuse {
            let _ = p.reply.send(Err(Error::LeaderChanged));
        }
        batch = keep;
        if batch.is_empty() {
            return;
        }
    }
    let mut cmds = Vec::with_capacity(batch.iter().map(|p| p.cmds.len()).sum());
    let mut replies = Vec::with_capacity(batch.len());
    for p in batch {
        replies.push((p.cmds.len(), p.reply));
        cmds.extend(p.cmds);
    }
    let n = cmds.len();
    let started = std::time::Instant::now();
    let route_name = match route {
        Route::Local => "leader",
        Route::Remote(_) => "forwarded",
    };
    let results: Result<Vec<CommandResult>> = match route {
        Route::Local => match replica
            .raft
            .client_write(Request(CommandBatch { commands: cmds }))
            .await
        {
            Ok(resp) => Ok(resp.data.0),
            // Not leader any more, or leadership was lost while the entry
            // replicated: it may still commit, so the outcome is unknown and
            // the client hears "leader changed", as with etcd.
            Err(e) if e.forward_to_leader().is_some() => Err(Error::LeaderChanged),
            Err(e) => {
                tracing::warn!(error = %e, "propose");
                Err(Error::Stopped)
            }
        },
        Route::Remote(mut client) => {
            let mut req = tonic::Request::new(CommandBatch { commands: cmds });
            req.set_timeout(Duration::from_millis(REQUEST_TIMEOUT_MS));
            match client.propose(req).await {
                Ok(r) => Ok(r.into_inner().results),
                Err(s) if s.code() == tonic::Code::DeadlineExceeded => Err(Error::Timeout),
                Err(s) if s.code() == tonic::Code::InvalidArgument => Err(s.into()),
                // The leader may or may not have the writes.
                Err(_) => Err(Error::LeaderChanged),
            }
        }
    };
    replica
        .stages
        .observe_propose(route_name, started.elapsed());
    match results {
        Ok(results) if results.len() == n => {
            let mut results = results.into_iter();
            for (count, reply) in replies {
                let _ = reply.send(Ok(results.by_ref().take(count).collect()));
            }
        }
        Ok(results) => {
            tracing::error!(
                want = n,
                got = results.len(),
                "wrong number of results for a batch"
            );
            for (_, reply) in replies {
                let _ = reply.send(Err(Error::Internal(
                    "wrong number of results for a batch".into(),
                )));
            }
        }
        Err(e) => {
            for (_, reply) in replies {
                let _ = reply.send(Err(e.clone()));
            }
        }
    }
}

/// Turn a failure into a per-command result, for forwarded batches.
pub fn error_result(e: &Error) -> CommandResult {
    CommandResult {
        revision: 0,
        kind: Some(command_result::Kind::Error(CommandError {
            code: e.code() as i32,
            message: e.to_string(),
        })),
    }
}

/// Answer queued read-index requests, one round for all of them: a quorum
/// heartbeat on the leader, one forwarded request on a follower. A request
/// that arrives during a round waits for the next one: a round that started
/// before it cannot vouch for writes acknowledged before it.
pub async fn run_read_index(replica: Arc<Replica>, mut rx: mpsc::Receiver<ReadWaiter>) {
    // A read index round sends heartbeats, which renew the followers'
    // leader leases: held back, like proposals, during a transfer.
    let mut paused = replica.proposals_paused.subscribe();
    while let Some(first) = rx.recv().await {
        if paused.wait_for(|p| !*p).await.is_err() {
            return;
        }
        let mut waiters = vec![first];
        while let Ok(w) = rx.try_recv() {
            waiters.push(w);
        }
        let res = match replica.route().await {
            Ok(Route::Local) => match replica.raft.get_read_log_id().await {
                Ok((read_log_id, _applied)) => Ok(read_log_id.map(|l| l.index).unwrap_or(0)),
                Err(e) if e.forward_to_leader::<openraft::BasicNode>().is_some() => {
                    Err(Error::LeaderChanged)
                }
                Err(_) => Err(Error::Unhealthy),
            },
            Ok(Route::Remote(mut client)) => {
                let (keep, refuse): (Vec<_>, Vec<_>) =
                    waiters.into_iter().partition(|w| !w.local_only);
                for w in refuse {
                    let _ = w.reply.send(Err(Error::LeaderChanged));
                }
                waiters = keep;
                if waiters.is_empty() {
                    continue;
                }
                let mut req = tonic::Request::new(ReadIndexRequest {});
                req.set_timeout(Duration::from_millis(REQUEST_TIMEOUT_MS));
                match client.read_index(req).await {
                    Ok(r) => Ok(r.into_inner().index),
                    Err(s) if s.code() == tonic::Code::DeadlineExceeded => Err(Error::Timeout),
                    Err(_) => Err(Error::LeaderChanged),
                }
            }
            Err(e) => Err(e),
        };
        for w in waiters {
            let _ = w.reply.send(res.clone());
        }
    }
}
