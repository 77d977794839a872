//! `pods/<name>/portforward` as kubectl 1.31+ speaks it: a WebSocket with
//! subprotocol `SPDY/3.1+portforward.k8s.io`, its binary messages carrying
//! a SPDY/3.1 session ([`super::spdy`]) in which the client opens, per
//! forwarded connection, an `error` and a `data` stream (headers
//! `streamtype`, `port`, `requestid`). Each pair becomes one
//! `NodeAgent.PortForward` call to the agent of the pod's node, which
//! connects to the pod's port; the bytes go both ways, and a connection
//! that fails is reported on the error stream, in the kubelet's words.
//! Plain SPDY (kubectl's fallback when the WebSocket upgrade is refused) is
//! not served.

use std::collections::HashMap;

use axum::extract::ws::{Message, WebSocket};
use futures::{SinkExt, StreamExt};
use keelson_proto::api::port_forward_input::Input;
use keelson_proto::api::{PortForwardInput, PortForwardStart};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::spdy::{self, Frame, FLAG_FIN};
use crate::service::{Api, PodAgent};

/// The WebSocket subprotocol kubectl asks for.
pub const PROTOCOL: &str = "SPDY/3.1+portforward.k8s.io";

/// What the writer sends, in order (one header compressor).
enum Out {
    Reply(u32),
    Data { id: u32, data: Vec<u8>, fin: bool },
    Rst(u32, u32),
    Ping(u32),
}

/// A forwarded connection's two streams, as they arrive.
#[derive(Default)]
struct Pair {
    error: Option<u32>,
    data: Option<u32>,
    port: i32,
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> &'a str {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map_or("", |(_, v)| v.as_str())
}

/// Serve one port-forward session until the client closes it.
pub(crate) async fn serve(socket: WebSocket, api: Api, target: PodAgent) {
    let (mut sink, mut incoming) = socket.split();
    let (out_tx, mut out_rx) = mpsc::channel::<Out>(64);
    let writer = tokio::spawn(async move {
        let mut enc = spdy::Encoder::default();
        while let Some(o) = out_rx.recv().await {
            let bytes = match o {
                Out::Reply(id) => match enc.syn_reply(id, 0) {
                    Ok(b) => b,
                    Err(e) => {
                        tracing::debug!(error = %e, "port-forward: reply");
                        return;
                    }
                },
                Out::Data { id, data, fin } => {
                    spdy::data(id, if fin { FLAG_FIN } else { 0 }, &data)
                }
                Out::Rst(id, status) => spdy::rst_stream(id, status),
                Out::Ping(id) => spdy::ping(id),
            };
            if sink.send(Message::Binary(bytes.into())).await.is_err() {
                return;
            }
        }
        let _ = sink.send(Message::Close(None)).await;
    });
    let mut dec = spdy::Decoder::default();
    let mut buf = Vec::new();
    let mut pairs: HashMap<String, Pair> = HashMap::new();
    // Data stream id -> the input of its agent call.
    let mut inputs: HashMap<u32, mpsc::Sender<PortForwardInput>> = HashMap::new();
    let mut forwards = JoinSet::new();
    'session: while let Some(Ok(msg)) = incoming.next().await {
        match msg {
            Message::Binary(b) => buf.extend_from_slice(&b),
            Message::Close(_) => break,
            _ => continue,
        }
        loop {
            let frame = match dec.next(&mut buf) {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) => {
                    tracing::debug!(error = %e, "port-forward: bad SPDY");
                    break 'session;
                }
            };
            match frame {
                Frame::SynStream { id, headers, .. } => {
                    let _ = out_tx.send(Out::Reply(id)).await;
                    let port = header(&headers, "port").parse::<i32>().unwrap_or(0);
                    let request = header(&headers, "requestid").to_string();
                    if !(1..=65535).contains(&port) {
                        let _ = out_tx.send(Out::Rst(id, spdy::REFUSED_STREAM)).await;
                        continue;
                    }
                    let pair = pairs.entry(request.clone()).or_default();
                    pair.port = port;
                    match header(&headers, "streamtype") {
                        "error" => pair.error = Some(id),
                        "data" => pair.data = Some(id),
                        _ => {
                            let _ = out_tx.send(Out::Rst(id, spdy::REFUSED_STREAM)).await;
                            continue;
                        }
                    }
                    let (Some(error), Some(data)) = (pair.error, pair.data) else {
                        continue;
                    };
                    pairs.remove(&request);
                    let (in_tx, in_rx) = mpsc::channel(16);
                    inputs.insert(data, in_tx);
                    forwards.spawn(forward(
                        api.clone(),
                        target.clone(),
                        port,
                        (error, data),
                        in_rx,
                        out_tx.clone(),
                    ));
                }
                Frame::Data { id, flags, data } => {
                    if let Some(tx) = inputs.get(&id) {
                        if !data.is_empty() {
                            let _ = tx
                                .send(PortForwardInput {
                                    input: Some(Input::Data(data)),
                                })
                                .await;
                        }
                        if flags & FLAG_FIN != 0 {
                            let _ = tx
                                .send(PortForwardInput {
                                    input: Some(Input::Close(true)),
                                })
                                .await;
                            inputs.remove(&id);
                        }
                    }
                }
                Frame::RstStream { id, .. } => {
                    inputs.remove(&id);
                }
                Frame::Ping(id) => {
                    let _ = out_tx.send(Out::Ping(id)).await;
                }
                Frame::GoAway => break 'session,
                Frame::Ignored => {}
            }
        }
    }
    // The client is gone: its connections go with it.
    drop(inputs);
    forwards.abort_all();
    drop(out_tx);
    let _ = writer.await;
}

/// One forwarded connection: the agent's call, its bytes to the data
/// stream; a failure to the error stream; both streams closed at the end.
async fn forward(
    api: Api,
    target: PodAgent,
    port: i32,
    (error, data): (u32, u32),
    input: mpsc::Receiver<PortForwardInput>,
    out: mpsc::Sender<Out>,
) {
    let start = PortForwardInput {
        input: Some(Input::Start(PortForwardStart {
            pod_uid: target.pod_uid.clone(),
            pod_ip: target.pod_ip(),
            port,
        })),
    };
    let inputs = futures::stream::once(async { start })
        .chain(tokio_stream::wrappers::ReceiverStream::new(input));
    let failure = match api.port_forward_call(&target, inputs).await {
        Ok(mut outputs) => loop {
            match outputs.next().await {
                Some(Ok(o)) => {
                    let msg = Out::Data {
                        id: data,
                        data: o.data,
                        fin: false,
                    };
                    if out.send(msg).await.is_err() {
                        return;
                    }
                }
                Some(Err(s)) => break Some(s.message().to_string()),
                None => break None,
            }
        },
        Err(e) => Some(e.to_string()),
    };
    if let Some(why) = failure {
        let text = format!(
            "error forwarding port {port} to pod {}, uid {}: {why}",
            target.name(),
            target.pod_uid
        );
        let _ = out
            .send(Out::Data {
                id: error,
                data: text.into_bytes(),
                fin: false,
            })
            .await;
    }
    for id in [data, error] {
        let _ = out
            .send(Out::Data {
                id,
                data: Vec::new(),
                fin: true,
            })
            .await;
    }
}
