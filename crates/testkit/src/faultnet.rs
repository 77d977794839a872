//! A fault layer between replicas on one machine: a TCP proxy in front of
//! each replica's peer port. Every replica's peer URL points at its proxy;
//! replicas connect from addresses of their own (their peer address, see
//! the store's `PeerPool`), so a proxy knows which replica each connection
//! comes from. Per direction (from -> to) the bytes can be held back:
//! `isolate` cuts a replica off both ways, `block` one way (a replica that
//! hears the others but is not heard, or the reverse). Held bytes wait,
//! in order, until the direction is healed (as TCP retransmits across a
//! partition): the streams never get a hole, the senders feel
//! backpressure, and keep-alives and timeouts detect the silence.
//!
//! Client traffic goes through proxies too ([`FaultNet::client_proxy`]):
//! every client counts as the one sender [`CLIENTS`], so a replica can be
//! cut off from its clients, and [`FaultNet::reset`] drops every
//! connection to a replica at once (as a restarted middlebox would).

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, RwLock};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// The sender index of every client (see [`FaultNet::client_proxy`]).
pub const CLIENTS: usize = usize::MAX;

/// Which directions drop their bytes, by member index.
#[derive(Clone, Default)]
pub struct FaultNet {
    blocked: Arc<RwLock<HashSet<(usize, usize)>>>,
    /// Per member, how many times its connections were reset.
    resets: Arc<RwLock<HashMap<usize, u64>>>,
    reset_notify: Arc<tokio::sync::Notify>,
}

impl FaultNet {
    pub fn new() -> FaultNet {
        FaultNet::default()
    }

    fn is_blocked(&self, from: usize, to: usize) -> bool {
        self.blocked
            .read()
            .map(|b| b.contains(&(from, to)))
            .unwrap_or(false)
    }

    /// Drop everything `from` sends to `to`.
    pub fn block(&self, from: usize, to: usize) {
        if let Ok(mut b) = self.blocked.write() {
            b.insert((from, to));
        }
    }

    /// Cut member `i` off from the `n` members, both ways.
    pub fn isolate(&self, i: usize, n: usize) {
        for j in (0..n).filter(|j| *j != i) {
            self.block(i, j);
            self.block(j, i);
        }
    }

    /// Hold everything between the clients and member `i`, both ways.
    pub fn cut_clients(&self, i: usize) {
        self.block(CLIENTS, i);
        self.block(i, CLIENTS);
    }

    /// Close every connection open through the proxies to member `i`.
    pub fn reset(&self, i: usize) {
        if let Ok(mut r) = self.resets.write() {
            *r.entry(i).or_default() += 1;
        }
        self.reset_notify.notify_waiters();
    }

    fn resets_of(&self, i: usize) -> u64 {
        self.resets
            .read()
            .map(|r| r.get(&i).copied().unwrap_or(0))
            .unwrap_or(0)
    }

    /// Let everything through again.
    pub fn heal(&self) {
        if let Ok(mut b) = self.blocked.write() {
            b.clear();
        }
    }

    /// Proxy for member `to`: accept on `listen`, forward to `upstream`.
    /// `sources[i]` is the address member i connects from.
    pub async fn proxy(
        &self,
        to: usize,
        listen: SocketAddr,
        upstream: SocketAddr,
        sources: Arc<Vec<IpAddr>>,
    ) -> std::io::Result<JoinHandle<()>> {
        self.serve(to, listen, upstream, move |ip| {
            sources.iter().position(|s| *s == ip)
        })
        .await
    }

    /// Proxy for clients of member `to`: every connection counts as sent
    /// by [`CLIENTS`].
    pub async fn client_proxy(
        &self,
        to: usize,
        listen: SocketAddr,
        upstream: SocketAddr,
    ) -> std::io::Result<JoinHandle<()>> {
        self.serve(to, listen, upstream, |_| Some(CLIENTS)).await
    }

    async fn serve(
        &self,
        to: usize,
        listen: SocketAddr,
        upstream: SocketAddr,
        sender: impl Fn(IpAddr) -> Option<usize> + Send + 'static,
    ) -> std::io::Result<JoinHandle<()>> {
        let listener = TcpListener::bind(listen).await?;
        let net = self.clone();
        Ok(tokio::spawn(async move {
            loop {
                let Ok((conn, peer)) = listener.accept().await else {
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                };
                let from = sender(peer.ip());
                let net = net.clone();
                tokio::spawn(async move {
                    let epoch = net.resets_of(to);
                    let Ok(up) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let _ = conn.set_nodelay(true);
                    let _ = up.set_nodelay(true);
                    let (cr, cw) = conn.into_split();
                    let (ur, uw) = up.into_split();
                    // Requests flow from -> to, replies to -> from.
                    let a = pump(cr, uw, net.clone(), from, Some(to));
                    let b = pump(ur, cw, net.clone(), Some(to), from);
                    let reset = async {
                        loop {
                            let notified = net.reset_notify.notified();
                            if net.resets_of(to) != epoch {
                                return;
                            }
                            notified.await;
                        }
                    };
                    // Dropping both halves closes both connections.
                    tokio::select! {
                        _ = a => {}
                        _ = b => {}
                        _ = reset => {}
                    }
                });
            }
        }))
    }
}

/// Copy `r` to `w`, holding the bytes while `from -> to` is blocked.
async fn pump(
    mut r: tokio::net::tcp::OwnedReadHalf,
    mut w: tokio::net::tcp::OwnedWriteHalf,
    net: FaultNet,
    from: Option<usize>,
    to: Option<usize>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match r.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        while matches!((from, to), (Some(f), Some(t)) if net.is_blocked(f, t)) {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        if w.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// An echo server's address, and a free one for a proxy.
    async fn echo_and_free_addr() -> (SocketAddr, SocketAddr) {
        let echo = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let upstream = echo.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = echo.accept().await else {
                    return;
                };
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    while let Ok(n) = s.read(&mut buf).await {
                        if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let listen = probe.local_addr().unwrap();
        (upstream, listen)
    }

    #[tokio::test]
    async fn bytes_flow_until_blocked_and_again_after_heal() {
        // An echo server as member 1; member 0 connects from 127.0.0.1.
        let (upstream, listen) = echo_and_free_addr().await;
        let net = FaultNet::new();
        let sources = Arc::new(vec![
            IpAddr::from([127, 0, 0, 1]),
            IpAddr::from([127, 0, 0, 2]),
        ]);
        let _p = net.proxy(1, listen, upstream, sources).await.unwrap();
        let mut c = TcpStream::connect(listen).await.unwrap();
        let mut buf = [0u8; 4];
        c.write_all(b"ping").await.unwrap();
        c.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"ping");
        // 0 -> 1 blocked: nothing comes back.
        net.block(0, 1);
        c.write_all(b"held").await.unwrap();
        let r = tokio::time::timeout(Duration::from_millis(300), c.read(&mut buf)).await;
        assert!(r.is_err(), "no reply while blocked");
        // Healed: the held bytes arrive, in order, then the next ones.
        net.heal();
        c.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"held");
        c.write_all(b"back").await.unwrap();
        c.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"back");
        // The reverse direction alone: requests arrive, replies wait.
        net.block(1, 0);
        c.write_all(b"half").await.unwrap();
        let r = tokio::time::timeout(Duration::from_millis(300), c.read(&mut buf)).await;
        assert!(r.is_err(), "the reply is held");
        net.heal();
        c.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"half");
        net.isolate(1, 2);
        assert!(net.is_blocked(0, 1) && net.is_blocked(1, 0));
    }

    #[tokio::test]
    async fn clients_can_be_cut_off_and_reset() {
        let (upstream, listen) = echo_and_free_addr().await;
        let net = FaultNet::new();
        let _p = net.client_proxy(0, listen, upstream).await.unwrap();
        let mut c = TcpStream::connect(listen).await.unwrap();
        let mut buf = [0u8; 4];
        c.write_all(b"ping").await.unwrap();
        c.read_exact(&mut buf).await.unwrap();
        // Cut off from its clients: held, then delivered after the heal.
        net.cut_clients(0);
        c.write_all(b"held").await.unwrap();
        let r = tokio::time::timeout(Duration::from_millis(300), c.read(&mut buf)).await;
        assert!(r.is_err(), "no reply while cut off");
        // Peers' faults do not touch clients, and a reset of another
        // member leaves this connection alone.
        net.heal();
        c.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"held");
        net.reset(1);
        c.write_all(b"live").await.unwrap();
        c.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"live");
        // A reset closes it; a new connection works.
        net.reset(0);
        let n = tokio::time::timeout(Duration::from_secs(2), c.read(&mut buf))
            .await
            .expect("closed promptly");
        assert!(matches!(n, Ok(0) | Err(_)), "closed: {n:?}");
        let mut c2 = TcpStream::connect(listen).await.unwrap();
        c2.write_all(b"anew").await.unwrap();
        c2.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"anew");
    }
}
