//! Store leases through the API server (`Leases` service): grant, revoke
//! and one keep-alive stream renewing many leases. Objects created with
//! [`Api::create_with_lease`](crate::Api::create_with_lease) are deleted when
//! their lease ends. Keep-alives are served from the store leader's memory
//! (no Raft write per renewal).

use std::time::Duration;

use futures::StreamExt;
use keelson_proto::api::leases_client::LeasesClient;
use keelson_proto::api::{LeaseGrantRequest, LeaseKeepAliveRequest, LeaseRevokeRequest};
use tokio::sync::mpsc;

use crate::client::Retry;
use crate::{Client, Error, Result};

/// Grant a lease of `ttl_secs`; its id.
pub async fn grant(client: &Client, ttl_secs: i64) -> Result<i64> {
    let res = client
        .call(Retry::Idempotent, |ch| {
            let r = client.request(
                LeaseGrantRequest {
                    ttl_seconds: ttl_secs,
                },
                Some(Duration::from_secs(5)),
            );
            async move { LeasesClient::new(ch).grant(r).await }
        })
        .await?;
    Ok(res.into_inner().id)
}

/// Revoke a lease (its objects are deleted at once).
pub async fn revoke(client: &Client, id: i64) -> Result<()> {
    client
        .call(Retry::Idempotent, |ch| {
            let r = client.request(LeaseRevokeRequest { id }, Some(Duration::from_secs(5)));
            async move { LeasesClient::new(ch).revoke(r).await }
        })
        .await
        .map(drop)
}

/// An open keep-alive stream to one replica.
pub struct KeepAlive {
    tx: mpsc::Sender<LeaseKeepAliveRequest>,
    rx: futures::stream::BoxStream<'static, std::result::Result<(i64, i64), Error>>,
}

impl KeepAlive {
    /// Open a stream (on the client's current endpoint; a failure moves the
    /// client to the next one).
    pub async fn open(client: &Client) -> Result<KeepAlive> {
        let target = client.stream_channel();
        let (tx, req_rx) = mpsc::channel::<LeaseKeepAliveRequest>(1024);
        let outbound = tokio_stream::wrappers::ReceiverStream::new(req_rx);
        let call = LeasesClient::new(target.channel.clone())
            .keep_alive(client.request(outbound, None))
            .await;
        let inbound = match call {
            Ok(s) => s.into_inner(),
            Err(e) => {
                target.failed();
                return Err(e.into());
            }
        };
        let rx = inbound
            .map(move |r| match r {
                Ok(r) => Ok((r.id, r.ttl_seconds)),
                Err(e) => {
                    target.failed();
                    Err(Error::from(e))
                }
            })
            .boxed();
        Ok(KeepAlive { tx, rx })
    }

    /// A handle that sends renewals on this stream from another task (so a
    /// burst of renewals never waits on the replies being read).
    pub fn renewer(&self) -> Renewer {
        Renewer {
            tx: self.tx.clone(),
        }
    }

    /// Ask for a renewal of `id`; the reply comes from [`KeepAlive::next`].
    pub async fn renew(&mut self, id: i64) -> Result<()> {
        self.tx
            .send(LeaseKeepAliveRequest { id })
            .await
            .map_err(|_| Error::Unavailable("keep-alive stream closed".into()))
    }

    /// The next reply: (lease id, remaining TTL; 0 when it has expired).
    /// None when the stream ended.
    pub async fn next(&mut self) -> Option<Result<(i64, i64)>> {
        self.rx.next().await
    }
}

/// Sends renewals on a [`KeepAlive`] stream.
#[derive(Clone)]
pub struct Renewer {
    tx: mpsc::Sender<LeaseKeepAliveRequest>,
}

impl Renewer {
    pub async fn renew(&self, id: i64) -> Result<()> {
        self.tx
            .send(LeaseKeepAliveRequest { id })
            .await
            .map_err(|_| Error::Unavailable("keep-alive stream closed".into()))
    }
}
