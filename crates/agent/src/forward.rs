//! `kubectl port-forward` on the node (`NodeAgent.PortForward`): one TCP
//! connection to a pod's port per call, bytes relayed both ways. The
//! connection goes to the pod's address (so a port the pod binds only on
//! its own localhost is not reached, unlike the kubelet, which connects
//! from inside the pod's network namespace).

use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use keelson_proto::api::port_forward_input::Input;
use keelson_proto::api::{PortForwardInput, PortForwardOutput};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tonic::Status;

use crate::runtime::{Runtime, State};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const CHUNK_BYTES: usize = 32 * 1024;

pub type ForwardStream = Pin<Box<dyn Stream<Item = Result<PortForwardOutput, Status>> + Send>>;

/// Serve one port-forward call: `input` starts with `start`.
pub async fn port_forward<S>(
    runtime: Arc<dyn Runtime>,
    mut input: S,
) -> Result<ForwardStream, Status>
where
    S: Stream<Item = Result<PortForwardInput, Status>> + Unpin + Send + 'static,
{
    let start = match input.next().await {
        Some(Ok(PortForwardInput {
            input: Some(Input::Start(s)),
        })) => s,
        Some(Err(e)) => return Err(e),
        _ => {
            return Err(Status::invalid_argument(
                "the first port-forward input must be start",
            ))
        }
    };
    let port = u16::try_from(start.port)
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| Status::invalid_argument(format!("invalid port {}", start.port)))?;
    let ip: IpAddr = start
        .pod_ip
        .parse()
        .map_err(|_| Status::failed_precondition("the pod has no address yet"))?;
    let uid = start.pod_uid.clone();
    let runs_here = tokio::task::spawn_blocking(move || {
        runtime
            .list()
            .iter()
            .any(|c| c.pod_uid == uid && matches!(c.state, State::Running { .. }))
    })
    .await
    .map_err(|e| Status::internal(format!("port-forward: {e}")))?;
    if !runs_here {
        return Err(Status::failed_precondition(
            "the pod runs no container on this node",
        ));
    }
    let addr = SocketAddr::new(ip, port);
    let conn =
        match tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(addr)).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                return Err(Status::failed_precondition(format!(
                    "failed to connect to port {port} of the pod: {e}"
                )))
            }
            Err(_) => {
                return Err(Status::failed_precondition(format!(
                    "failed to connect to port {port} of the pod: timed out"
                )))
            }
        };
    let _ = conn.set_nodelay(true);
    let (mut rd, mut wr) = conn.into_split();
    let (tx, rx) = mpsc::channel(16);
    // The pod's bytes out, until it closes its side or the caller goes.
    let out = tx.clone();
    let reader = tokio::spawn(async move {
        let mut buf = vec![0u8; CHUNK_BYTES];
        loop {
            let n = match rd.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let msg = PortForwardOutput {
                data: buf[..n].to_vec(),
            };
            if out.send(Ok(msg)).await.is_err() {
                return;
            }
        }
    });
    drop(tx);
    // The caller's bytes in; `close` (or the input's end) ends our
    // sending half; an error (the caller gone) ends the connection.
    tokio::spawn(async move {
        while let Some(msg) = input.next().await {
            match msg {
                Ok(PortForwardInput {
                    input: Some(Input::Data(d)),
                }) => {
                    if wr.write_all(&d).await.is_err() {
                        break;
                    }
                }
                Ok(PortForwardInput {
                    input: Some(Input::Close(true)),
                }) => break,
                Ok(_) => {}
                Err(_) => {
                    reader.abort();
                    return;
                }
            }
        }
        let _ = wr.shutdown().await;
    });
    Ok(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx)))
}
