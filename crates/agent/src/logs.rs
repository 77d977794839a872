//! The agent's endpoint (`keelson.api.NodeAgent`, on the node's address
//! at the port its Node records in `status.daemonEndpoints`), which the
//! API server relays to clients.
//!
//! Logs (here): a container's log file (the rotated part first),
//! optionally only its last lines, and with `follow` what it writes next,
//! across rotations (copytruncate: a file that shrank is read again from
//! its start). Logs need no credential: the endpoint binds the node's
//! address (loopback in a local cluster).
//!
//! Exec ([`crate::exec`]) runs commands in containers and port-forward
//! ([`crate::forward`]) reaches pods' ports, so they are served
//! only to a caller that presents the agent's own token (as the API
//! servers do: they know every node's token), compared in constant time.

use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use keelson_proto::api::node_agent_server::{NodeAgent, NodeAgentServer};
use keelson_proto::api::{ExecInput, LogChunk, NodeLogsRequest, PortForwardInput};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::sync::mpsc;
use tonic::{Request, Response, Status};

use crate::runtime::Runtime;

const CHUNK_BYTES: usize = 64 * 1024;
const FOLLOW_POLL: Duration = Duration::from_millis(200);

pub struct LogService {
    runtime: Arc<dyn Runtime>,
    /// `Bearer <the agent's token>`; None: exec is refused.
    authorization: Option<String>,
}

/// Equal, in a time that depends on the lengths only.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Does the call carry `authorization` (one of its values, as the API
/// server sends each token of the node)?
fn authorized<T>(req: &Request<T>, authorization: Option<&str>) -> bool {
    let Some(want) = authorization else {
        return false;
    };
    req.metadata()
        .get_all("authorization")
        .iter()
        .fold(false, |ok, v| ok | same(v.as_bytes(), want.as_bytes()))
}

/// The last `n` lines of `data` (all when n <= 0).
pub fn tail(data: &[u8], n: i64) -> &[u8] {
    if n <= 0 {
        return data;
    }
    let mut lines = 0i64;
    // A trailing newline ends the last line; it does not start another.
    let end = if data.last() == Some(&b'\n') {
        data.len() - 1
    } else {
        data.len()
    };
    for i in (0..end).rev() {
        if data[i] == b'\n' {
            lines += 1;
            if lines == n {
                return &data[i + 1..];
            }
        }
    }
    data
}

async fn read_all(path: &Path) -> Vec<u8> {
    tokio::fs::read(path).await.unwrap_or_default()
}

type LogStream = Pin<Box<dyn Stream<Item = Result<LogChunk, Status>> + Send>>;

#[tonic::async_trait]
impl NodeAgent for LogService {
    type LogsStream = LogStream;
    type ExecStream = crate::exec::ExecStream;
    type PortForwardStream = crate::forward::ForwardStream;

    async fn port_forward(
        &self,
        req: Request<tonic::Streaming<PortForwardInput>>,
    ) -> Result<Response<Self::PortForwardStream>, Status> {
        if !authorized(&req, self.authorization.as_deref()) {
            return Err(Status::unauthenticated(
                "port-forward needs the agent's own token",
            ));
        }
        crate::forward::port_forward(self.runtime.clone(), req.into_inner())
            .await
            .map(Response::new)
    }

    async fn exec(
        &self,
        req: Request<tonic::Streaming<ExecInput>>,
    ) -> Result<Response<Self::ExecStream>, Status> {
        if !authorized(&req, self.authorization.as_deref()) {
            return Err(Status::unauthenticated("exec needs the agent's own token"));
        }
        crate::exec::exec(self.runtime.clone(), req.into_inner())
            .await
            .map(Response::new)
    }

    async fn logs(&self, req: Request<NodeLogsRequest>) -> Result<Response<LogStream>, Status> {
        let r = req.into_inner();
        for (what, v) in [("pod uid", &r.pod_uid), ("container", &r.container)] {
            if v.is_empty() || v.contains(['/', '\0']) || v == ".." || v == "." {
                return Err(Status::invalid_argument(format!("invalid {what} {v:?}")));
            }
        }
        // The asked-for start, or the newest one before it that has a log:
        // a container waiting to restart has not written its next log yet.
        let Some((current, rotated)) = (0..=r.attempt)
            .rev()
            .take(2)
            .map(|a| self.runtime.log_paths(&r.pod_uid, &r.container, a))
            .find(|(c, _)| c.exists())
        else {
            return Err(Status::not_found(format!(
                "no log of container {:?} (start {}) on this node",
                r.container, r.attempt
            )));
        };
        let (tx, rx) = mpsc::channel::<Result<LogChunk, Status>>(16);
        tokio::spawn(async move {
            let mut data = read_all(&rotated).await;
            let now = read_all(&current).await;
            let mut offset = now.len() as u64;
            data.extend_from_slice(&now);
            let out = tail(&data, r.tail_lines);
            for chunk in out.chunks(CHUNK_BYTES) {
                if tx
                    .send(Ok(LogChunk {
                        data: chunk.to_vec(),
                    }))
                    .await
                    .is_err()
                {
                    return;
                }
            }
            if !r.follow {
                return;
            }
            loop {
                tokio::time::sleep(FOLLOW_POLL).await;
                if tx.is_closed() {
                    return;
                }
                let Ok(meta) = tokio::fs::metadata(&current).await else {
                    return; // the pod was removed
                };
                let len = meta.len();
                if len < offset {
                    offset = 0; // rotated (copytruncate)
                }
                if len == offset {
                    continue;
                }
                let Ok(mut f) = tokio::fs::File::open(&current).await else {
                    return;
                };
                if f.seek(std::io::SeekFrom::Start(offset)).await.is_err() {
                    continue;
                }
                let mut buf = Vec::new();
                if f.read_to_end(&mut buf).await.is_err() {
                    continue;
                }
                offset += buf.len() as u64;
                for chunk in buf.chunks(CHUNK_BYTES) {
                    if tx
                        .send(Ok(LogChunk {
                            data: chunk.to_vec(),
                        }))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }
}

/// Serve the endpoint on `addr` until the future is dropped; exec is
/// served to callers presenting `authorization` (`Bearer <token>`).
pub async fn serve(
    runtime: Arc<dyn Runtime>,
    addr: SocketAddr,
    authorization: Option<String>,
) -> Result<(), String> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("bind the log endpoint {addr}: {e}"))?;
    tonic::transport::Server::builder()
        .add_service(NodeAgentServer::new(LogService {
            runtime,
            authorization,
        }))
        .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
        .await
        .map_err(|e| format!("log endpoint: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_agents_token_is_authorized() {
        let mut req = Request::new(());
        assert!(!authorized(&req, Some("Bearer abc")));
        req.metadata_mut()
            .append("authorization", "Bearer other".parse().expect("value"));
        assert!(!authorized(&req, Some("Bearer abc")));
        assert!(!authorized(&req, None));
        req.metadata_mut()
            .append("authorization", "Bearer abc".parse().expect("value"));
        assert!(authorized(&req, Some("Bearer abc")));
        assert!(!authorized(&req, Some("Bearer abcd")));
        assert!(same(b"", b""));
        assert!(!same(b"a", b""));
    }

    #[test]
    fn tail_lines() {
        let d = b"a\nb\nc\n";
        assert_eq!(tail(d, 0), d);
        assert_eq!(tail(d, 1), b"c\n");
        assert_eq!(tail(d, 2), b"b\nc\n");
        assert_eq!(tail(d, 5), d);
        assert_eq!(tail(b"a\nb", 1), b"b");
        assert_eq!(tail(b"", 3), b"");
    }
}
