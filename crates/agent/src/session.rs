//! The agent's one stream to the control plane (`Nodes.Session`), kept
//! open to any replica and reopened on another when that one dies.
//!
//! Up: heartbeats every `every` (each renews the node's store lease in the
//! store leader's memory) and pod statuses, batched (whatever queued while
//! the previous batch was being sent). Down: the pods bound to the node
//! (a first session lists them, ending with a BOOKMARK; a reopened one
//! resumes after the last revision seen, so no change is missed; an
//! expired revision means a fresh list), heartbeat acknowledgements (ttl 0:
//! the lease expired, so the node takes a new one and reopens) and a result
//! per status written.
//!
//! The agent sees a [`watcher`](keelson_sdk::watcher)-like stream of pod
//! events and a (uid, written) result per status it handed over.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use keelson_model::{Object, Resource};
use keelson_proto::api::node_session_down::Msg as Down;
use keelson_proto::api::node_session_up::Msg as Up;
use keelson_proto::api::nodes_client::NodesClient;
use keelson_proto::api::{NodeHeartbeat, NodeHello, NodeSessionUp, PodStatusBatch};
use keelson_proto::v1;
use keelson_sdk::watcher::Event;
use keelson_sdk::{Client, Error};
use prost::Message;
use tokio::sync::mpsc;

/// Statuses sent in one batch at most (the server takes up to 1,000).
const BATCH_MAX: usize = 256;
/// Encoded bytes of one batch at most (the server takes 4 MiB messages).
const BATCH_BYTES_MAX: usize = 1024 * 1024;
/// Pause before reopening a session (doubling to [`REOPEN_MAX`]).
const REOPEN_FIRST: Duration = Duration::from_millis(100);
const REOPEN_MAX: Duration = Duration::from_secs(2);
/// A session that lasted this long reopens without waiting.
const STABLE: Duration = Duration::from_secs(5);
/// A status the server refused is reported failed after this pause (the
/// kubelet then sends it again: no tight loop on a lasting error).
const REFUSED_PAUSE: Duration = Duration::from_secs(1);

/// What the session hands the agent.
pub struct Channels {
    /// Pod events, as a watcher yields them (unbounded: the session never
    /// waits on the agent's loop, so heartbeats keep going during a long
    /// sync).
    pub pods: mpsc::UnboundedReceiver<Event<v1::Pod>>,
    /// (pod uid, written) per status handed to `statuses` (unbounded, and
    /// safe: one answer per status sent, see `statuses`).
    pub written: mpsc::UnboundedReceiver<(String, bool)>,
    /// Statuses to write (unbounded, and safe: the agent hands over at most
    /// one status per pod until its answer comes back, so no more than
    /// the node's pods can wait).
    pub statuses: mpsc::UnboundedSender<v1::Pod>,
}

/// Start the session task for `node`: take a heartbeat lease (ttl
/// seconds), then keep a session open until the returned channels are
/// dropped.
pub fn start(client: Client, node: String, ttl: i64, every: Duration) -> Channels {
    let (pods_tx, pods) = mpsc::unbounded_channel();
    let (written_tx, written) = mpsc::unbounded_channel();
    let (statuses, statuses_rx) = mpsc::unbounded_channel();
    tokio::spawn(run(
        client,
        node,
        ttl,
        every,
        pods_tx,
        written_tx,
        statuses_rx,
    ));
    Channels {
        pods,
        written,
        statuses,
    }
}

/// Take a heartbeat lease, retrying until it works (or the agent is gone).
async fn lease(
    client: &Client,
    node: &str,
    ttl: i64,
    pods: &mpsc::UnboundedSender<Event<v1::Pod>>,
) -> Option<i64> {
    let mut pause = REOPEN_FIRST;
    loop {
        match crate::sim::take_lease(client, node, ttl).await {
            Ok(id) => return Some(id),
            Err(e) => tracing::warn!(node, error = %e, "heartbeat lease; retrying"),
        }
        if pods.is_closed() {
            return None;
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(REOPEN_MAX);
    }
}

/// How one session ended.
enum End {
    /// The agent is gone.
    Gone,
    /// Reopen (after a pause unless the session was stable).
    Reopen,
    /// The lease is gone: take a new one, then reopen.
    LeaseLost,
}

struct State {
    /// Resume the pods after this revision (None: list).
    resume: Option<String>,
    /// A list in progress (until its BOOKMARK).
    listing: Option<Vec<v1::Pod>>,
}

async fn run(
    client: Client,
    node: String,
    ttl: i64,
    every: Duration,
    pods: mpsc::UnboundedSender<Event<v1::Pod>>,
    written: mpsc::UnboundedSender<(String, bool)>,
    mut statuses: mpsc::UnboundedReceiver<v1::Pod>,
) {
    let Some(mut lease_id) = lease(&client, &node, ttl, &pods).await else {
        return;
    };
    tracing::info!(node = %node, "registered; heartbeating over a session");
    let mut state = State {
        resume: None,
        listing: None,
    };
    let mut pause = REOPEN_FIRST;
    loop {
        let opened = Instant::now();
        let end = session(
            &client,
            &node,
            lease_id,
            every,
            &mut state,
            &pods,
            &written,
            &mut statuses,
        )
        .await;
        match end {
            End::Gone => return,
            End::LeaseLost => {
                tracing::warn!(node = %node, "heartbeat lease expired; taking a new one");
                match lease(&client, &node, ttl, &pods).await {
                    Some(id) => lease_id = id,
                    None => return,
                }
            }
            End::Reopen => {}
        }
        if opened.elapsed() >= STABLE {
            pause = REOPEN_FIRST;
        } else {
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(REOPEN_MAX);
        }
    }
}

/// One session, until it breaks.
#[allow(clippy::too_many_arguments)]
async fn session(
    client: &Client,
    node: &str,
    lease_id: i64,
    every: Duration,
    state: &mut State,
    pods: &mpsc::UnboundedSender<Event<v1::Pod>>,
    written: &mpsc::UnboundedSender<(String, bool)>,
    statuses: &mut mpsc::UnboundedReceiver<v1::Pod>,
) -> End {
    let target = client.stream_channel();
    let (up, up_rx) = mpsc::channel::<NodeSessionUp>(64);
    // The hello is queued before the call: the server reads it first.
    let hello = NodeHello {
        node: node.to_string(),
        lease_id,
        resource_version: state.resume.clone().unwrap_or_default(),
    };
    state.listing = state.resume.is_none().then(Vec::new);
    if up
        .send(NodeSessionUp {
            msg: Some(Up::Hello(hello)),
        })
        .await
        .is_err()
    {
        return End::Gone;
    }
    let call = NodesClient::new(target.channel.clone())
        .session(client.request(tokio_stream::wrappers::ReceiverStream::new(up_rx), None))
        .await;
    let mut inbound = match call {
        Ok(r) => r.into_inner(),
        Err(status) => {
            return ended(node, status, &target, state);
        }
    };
    let mut heartbeat = tokio::time::interval(every);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seq: u64 = 0;
    // Batch seq -> the uids it carried, in order.
    let mut in_flight: HashMap<u64, Vec<String>> = HashMap::new();
    let end = loop {
        tokio::select! {
            _ = heartbeat.tick() => {
                seq += 1;
                let msg = NodeSessionUp { msg: Some(Up::Heartbeat(NodeHeartbeat { seq })) };
                if up.send(msg).await.is_err() {
                    break End::Reopen;
                }
            }
            first = statuses.recv() => {
                let Some(first) = first else { break End::Gone };
                let mut bytes = first.encoded_len();
                let mut batch = vec![first];
                while batch.len() < BATCH_MAX && bytes < BATCH_BYTES_MAX {
                    match statuses.try_recv() {
                        Ok(p) => {
                            bytes += p.encoded_len();
                            batch.push(p);
                        }
                        Err(_) => break,
                    }
                }
                seq += 1;
                in_flight.insert(seq, batch.iter().map(|p| p.meta().uid.clone()).collect());
                let msg = NodeSessionUp { msg: Some(Up::Statuses(PodStatusBatch { seq, pods: batch })) };
                if up.send(msg).await.is_err() {
                    break End::Reopen;
                }
            }
            msg = inbound.message() => match msg {
                Ok(Some(down)) => match down.msg {
                    Some(Down::Pod(ev)) => {
                        if !pod_event(ev, state, pods) {
                            break End::Gone;
                        }
                    }
                    Some(Down::Heartbeat(ack)) if ack.ttl_seconds <= 0 => break End::LeaseLost,
                    Some(Down::Heartbeat(_)) | None => {}
                    Some(Down::Statuses(res)) => {
                        let uids = in_flight.remove(&res.seq).unwrap_or_default();
                        for (i, uid) in uids.into_iter().enumerate() {
                            let error = res.errors.get(i).map_or("no result", String::as_str);
                            if error.is_empty() {
                                let _ = written.send((uid, true));
                            } else {
                                tracing::warn!(pod_uid = %uid, error, "pod status refused; will retry");
                                let written = written.clone();
                                tokio::spawn(async move {
                                    tokio::time::sleep(REFUSED_PAUSE).await;
                                    let _ = written.send((uid, false));
                                });
                            }
                        }
                    }
                },
                Ok(None) => break End::Reopen,
                Err(status) => break ended(node, status, &target, state),
            }
        }
    };
    // Statuses whose outcome is unknown are sent again by the kubelet.
    for uid in in_flight.into_values().flatten() {
        let _ = written.send((uid, false));
    }
    end
}

/// What a failed call or a broken stream means.
fn ended(
    node: &str,
    status: tonic::Status,
    target: &keelson_sdk::client::StreamTarget,
    state: &mut State,
) -> End {
    match status.code() {
        tonic::Code::FailedPrecondition => End::LeaseLost,
        tonic::Code::OutOfRange => {
            // Compacted past our revision: list again.
            tracing::info!(node, "pod stream expired; relisting");
            state.resume = None;
            End::Reopen
        }
        code => {
            if matches!(code, tonic::Code::Unavailable | tonic::Code::Unknown) {
                target.failed();
            }
            tracing::debug!(node, error = %Error::from(status), "session ended; reopening");
            End::Reopen
        }
    }
}

/// Hand one pod event to the agent; false when the agent is gone.
fn pod_event(
    ev: keelson_proto::api::WatchEvent,
    state: &mut State,
    pods: &mpsc::UnboundedSender<Event<v1::Pod>>,
) -> bool {
    // The resume point moves with the changes, and with a list only once
    // it is complete (a list cut short is taken again from the start).
    if !ev.resource_version.is_empty() && (state.listing.is_none() || ev.r#type == "BOOKMARK") {
        state.resume = Some(ev.resource_version.clone());
    }
    let pod = || {
        Object::decode(ev.object.as_slice())
            .ok()
            .and_then(v1::Pod::from_object)
    };
    let out = match ev.r#type.as_str() {
        "BOOKMARK" => match state.listing.take() {
            Some(list) => Event::Restarted(list),
            None => return true,
        },
        "ADDED" | "MODIFIED" => {
            let Some(p) = pod() else { return true };
            if let Some(list) = state.listing.as_mut() {
                list.push(p);
                return true;
            }
            Event::Applied(p)
        }
        "DELETED" => {
            let Some(p) = pod() else { return true };
            Event::Deleted(p)
        }
        _ => return true,
    };
    pods.send(out).is_ok()
}
