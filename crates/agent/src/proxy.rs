//! The Service proxy (kube-proxy's role, in its userspace mode): for every
//! TCP port of every Service the agent listens on `<node address>:<port>`
//! and forwards each accepted connection to one ready endpoint of that
//! Service port.
//!
//! - **Backends** ([`backends`]): the Endpoints object of the Service's
//!   name and namespace; its subsets' ready `addresses` only (never
//!   `not_ready_addresses`); the endpoint port is the one whose name equals
//!   the Service port's name, or, for a Service with a single port, the
//!   subset's only port. Addresses that are not IPs are skipped.
//! - **Choice**: round-robin per Service port ([`Picker`]). Endpoints on
//!   this node (`nodeName` = the node) are preferred when there are any, in
//!   the spirit of kube-proxy's "Local if available": the rotation runs over
//!   the local endpoints only, and the other endpoints are kept as fallback.
//!   When an endpoint refuses the connection (or does not answer within
//!   [`CONNECT_TIMEOUT`]) the next one is tried, up to all of them, before
//!   the client's connection is closed.
//! - **Changes**: every accepted connection reads the caches afresh, so
//!   endpoint changes apply to new connections; each connection is a task
//!   of its own that owns both streams, so established connections are
//!   never broken by a change, by a Service's deletion, or by the proxy
//!   stopping listening.
//! - **Listeners** are kept in sync with the Services: a deleted Service or
//!   a removed port stops its listener. When two Services want the same
//!   port, the one listening keeps it (or, when none is yet, the older
//!   Service); the other is logged with a warning. A port that cannot be
//!   bound is logged with a warning and retried on the next change of the
//!   caches (and every [`BIND_RETRY`] meanwhile).
//! - UDP and SCTP ports are skipped (debug log).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use keelson_proto::v1;
use keelson_sdk::watcher::object_key;
use keelson_sdk::{reflector, Api, Client, ListParams, Resource, Store};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::task::JoinHandle;

/// How long one endpoint has to accept a connection before the next one
/// is tried.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How often a port that could not be bound is tried again while nothing
/// changes.
pub const BIND_RETRY: Duration = Duration::from_secs(5);
/// Pause after a failed accept (for instance out of file descriptors).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// Pending connections a listener queues.
const LISTEN_BACKLOG: u32 = 1024;
const DEFAULT_PROTOCOL: &str = "TCP";

fn protocol(p: &str) -> &str {
    if p.is_empty() {
        DEFAULT_PROTOCOL
    } else {
        p
    }
}

fn is_tcp(p: &str) -> bool {
    protocol(p).eq_ignore_ascii_case(DEFAULT_PROTOCOL)
}

fn port_number(p: i32) -> Option<u16> {
    u16::try_from(p).ok().filter(|p| *p != 0)
}

fn service_ports(svc: &v1::Service) -> &[v1::ServicePort] {
    svc.spec.as_ref().map_or(&[], |s| s.ports.as_slice())
}

/// A Service port's backends: those on this node, then the others.
#[derive(Clone, Debug, Default, PartialEq)]
struct Tiers {
    local: Vec<SocketAddr>,
    remote: Vec<SocketAddr>,
}

fn tiers(
    svc: &v1::Service,
    port: &v1::ServicePort,
    endpoints: Option<&v1::Endpoints>,
    node: &str,
) -> Tiers {
    let mut out = Tiers::default();
    let Some(endpoints) = endpoints else {
        return out;
    };
    let single = service_ports(svc).len() == 1;
    let mut seen = HashSet::new();
    for subset in &endpoints.subsets {
        let by_name = subset.ports.iter().find(|p| p.name == port.name);
        let ep = match (by_name, subset.ports.as_slice()) {
            (Some(p), _) => p,
            (None, [only]) if single => only,
            _ => continue,
        };
        if protocol(&ep.protocol) != protocol(&port.protocol) {
            continue;
        }
        let Some(number) = port_number(ep.port) else {
            tracing::debug!(endpoints = %object_key(endpoints), port = ep.port, "invalid endpoint port");
            continue;
        };
        for a in &subset.addresses {
            let ip: IpAddr = match a.ip.parse() {
                Ok(ip) => ip,
                Err(_) => {
                    tracing::debug!(endpoints = %object_key(endpoints), ip = %a.ip, "endpoint address is not an IP; skipped");
                    continue;
                }
            };
            let addr = SocketAddr::new(ip, number);
            if !seen.insert(addr) {
                continue;
            }
            if !node.is_empty() && a.node_name == node {
                out.local.push(addr);
            } else {
                out.remote.push(addr);
            }
        }
    }
    out
}

/// The pure part: which backends a service port has, in order of
/// preference: the ready endpoints on `node` first, then the other ready
/// endpoints, each group in the Endpoints object's order, without
/// duplicates. Empty without an Endpoints object.
pub fn backends(
    svc: &v1::Service,
    port: &v1::ServicePort,
    endpoints: Option<&v1::Endpoints>,
    node: &str,
) -> Vec<SocketAddr> {
    let Tiers { mut local, remote } = tiers(svc, port, endpoints, node);
    local.extend(remote);
    local
}

/// Round-robin picker state per service port (pure).
#[derive(Clone, Debug, Default)]
pub struct Picker {
    next: usize,
}

impl Picker {
    pub fn new() -> Picker {
        Picker::default()
    }

    /// All of `backends`, rotated to start at the next one in turn: the
    /// first is the one to use, the rest are the fallbacks in order. The
    /// start advances by one on each call with a non-empty list.
    pub fn order(&mut self, backends: &[SocketAddr]) -> Vec<SocketAddr> {
        if backends.is_empty() {
            return Vec::new();
        }
        let start = self.next % backends.len();
        self.next = self.next.wrapping_add(1);
        let mut out = Vec::with_capacity(backends.len());
        out.extend_from_slice(&backends[start..]);
        out.extend_from_slice(&backends[..start]);
        out
    }
}

/// Aborts background tasks when dropped.
struct AbortOnDrop(Vec<JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

/// Run the proxy until dropped: reflectors over Services and Endpoints (all
/// namespaces), listeners kept in sync with them.
pub async fn run(client: Client, node: String, address: Ipv4Addr) {
    let (services, s_task) = reflector(
        Api::<v1::Service>::all(client.clone()),
        ListParams::default(),
    );
    let (endpoints, e_task) = reflector(Api::<v1::Endpoints>::all(client), ListParams::default());
    let _reflectors = AbortOnDrop(vec![s_task, e_task]);
    run_with(services, endpoints, node, address).await
}

/// Same, with the caches given (for tests): (services store, endpoints
/// store). Waits for both caches' first list before listening.
pub async fn run_with(
    services: Store<v1::Service>,
    endpoints: Store<v1::Endpoints>,
    node: String,
    address: Ipv4Addr,
) {
    services.wait_ready().await;
    endpoints.wait_ready().await;
    let mut svc_changes = services.changes();
    let mut ep_changes = endpoints.changes();
    let mut proxy = Proxy {
        ctx: Arc::new(Ctx {
            services,
            endpoints,
            node,
        }),
        address,
        listeners: HashMap::new(),
        conflicts: HashSet::new(),
        bind_errors: HashMap::new(),
    };
    tracing::info!(node = %proxy.ctx.node, %address, "service proxy started");
    let (mut svc_open, mut ep_open) = (true, true);
    loop {
        svc_changes.borrow_and_update();
        ep_changes.borrow_and_update();
        proxy.sync().await;
        let retry = !proxy.bind_errors.is_empty();
        tokio::select! {
            r = svc_changes.changed(), if svc_open => svc_open = r.is_ok(),
            r = ep_changes.changed(), if ep_open => ep_open = r.is_ok(),
            _ = tokio::time::sleep(BIND_RETRY), if retry => {}
            else => std::future::pending::<()>().await,
        }
    }
}

/// What the accept loops read.
struct Ctx {
    services: Store<v1::Service>,
    endpoints: Store<v1::Endpoints>,
    node: String,
}

impl Ctx {
    /// The backends of `key`'s TCP port `port` now.
    fn lookup(&self, key: &str, port: u16) -> Tiers {
        let Some(svc) = self.services.get(key) else {
            return Tiers::default();
        };
        let Some(sp) = service_ports(&svc)
            .iter()
            .find(|p| is_tcp(&p.protocol) && p.port == i32::from(port))
        else {
            return Tiers::default();
        };
        let endpoints = self.endpoints.get(key);
        tiers(&svc, sp, endpoints.as_deref(), &self.node)
    }
}

/// A port being listened on for a Service.
struct Listener {
    key: String,
    task: JoinHandle<()>,
}

impl Listener {
    /// Stop listening, and return once the socket is closed.
    async fn stop(mut self) {
        self.task.abort();
        let _ = (&mut self.task).await;
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Proxy {
    ctx: Arc<Ctx>,
    address: Ipv4Addr,
    /// By port.
    listeners: HashMap<u16, Listener>,
    /// (port, service left out, service holding it), as last warned.
    conflicts: HashSet<(u16, String, String)>,
    /// Port -> (service, error), as last warned.
    bind_errors: HashMap<u16, (String, String)>,
}

impl Proxy {
    /// Which Service each port should be listened on for.
    fn wanted(&mut self) -> BTreeMap<u16, String> {
        let services = self.ctx.services.snapshot();
        // Port -> (creation time, service key) of the Services wanting it.
        let mut claims: BTreeMap<u16, Vec<(String, String)>> = BTreeMap::new();
        for (key, svc) in services.iter() {
            for sp in service_ports(svc) {
                if !is_tcp(&sp.protocol) {
                    tracing::debug!(service = %key, port = sp.port, protocol = %sp.protocol, "not TCP; not proxied");
                    continue;
                }
                let Some(port) = port_number(sp.port) else {
                    tracing::debug!(service = %key, port = sp.port, "invalid service port; not proxied");
                    continue;
                };
                claims
                    .entry(port)
                    .or_default()
                    .push((svc.meta().creation_timestamp.clone(), key.clone()));
            }
        }
        let mut wanted = BTreeMap::new();
        let mut conflicts = HashSet::new();
        for (port, mut claimants) in claims {
            claimants.sort();
            claimants.dedup();
            let holder = self.listeners.get(&port).map(|l| l.key.as_str());
            let winner = match (holder, claimants.first()) {
                (Some(h), _) if claimants.iter().any(|(_, k)| k == h) => h.to_string(),
                (_, Some((_, oldest))) => oldest.clone(),
                (_, None) => continue,
            };
            for (_, k) in claimants {
                if k != winner {
                    conflicts.insert((port, k, winner.clone()));
                }
            }
            wanted.insert(port, winner);
        }
        for c in &conflicts {
            if !self.conflicts.contains(c) {
                let (port, loser, holder) = c;
                tracing::warn!(port, service = %loser, holder = %holder, "service port already taken by another service on this node; not proxied");
            }
        }
        self.conflicts = conflicts;
        wanted
    }

    /// Make the listeners match the Services.
    async fn sync(&mut self) {
        let wanted = self.wanted();
        let stale: Vec<u16> = self
            .listeners
            .iter()
            .filter(|(port, l)| wanted.get(port) != Some(&l.key))
            .map(|(port, _)| *port)
            .collect();
        for port in stale {
            if let Some(l) = self.listeners.remove(&port) {
                let key = l.key.clone();
                l.stop().await;
                tracing::info!(service = %key, port, "stopped listening");
            }
        }
        self.bind_errors
            .retain(|port, (key, _)| wanted.get(port) == Some(key));
        for (port, key) in wanted {
            if self.listeners.contains_key(&port) {
                continue;
            }
            let at = SocketAddr::new(IpAddr::V4(self.address), port);
            match bind(at) {
                Ok(listener) => {
                    self.bind_errors.remove(&port);
                    tracing::info!(service = %key, address = %at, "listening");
                    let task = tokio::spawn(serve(listener, self.ctx.clone(), key.clone(), port));
                    self.listeners.insert(port, Listener { key, task });
                }
                Err(e) => {
                    let failure = (key, e.to_string());
                    if self.bind_errors.get(&port) != Some(&failure) {
                        tracing::warn!(service = %failure.0, address = %at, error = %failure.1, "cannot listen; will retry");
                    }
                    self.bind_errors.insert(port, failure);
                }
            }
        }
    }
}

fn bind(at: SocketAddr) -> io::Result<TcpListener> {
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(at)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Accept connections for `key`'s port `port` until aborted.
async fn serve(listener: TcpListener, ctx: Arc<Ctx>, key: String, port: u16) {
    let mut local = Picker::new();
    let mut remote = Picker::new();
    loop {
        let (conn, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(service = %key, port, error = %e, "accept");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let tiers = ctx.lookup(&key, port);
        let mut order = local.order(&tiers.local);
        order.extend(remote.order(&tiers.remote));
        if order.is_empty() {
            tracing::debug!(service = %key, port, %peer, "no ready endpoint; connection closed");
            continue;
        }
        tokio::spawn(forward(conn, order, key.clone(), port));
    }
}

/// Connect to the first of `order` that accepts, then copy both ways until
/// both sides are done.
async fn forward(mut client: TcpStream, order: Vec<SocketAddr>, key: String, port: u16) {
    let mut upstream = None;
    for backend in &order {
        match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(backend)).await {
            Ok(Ok(s)) => {
                upstream = Some(s);
                break;
            }
            Ok(Err(e)) => {
                tracing::debug!(service = %key, port, %backend, error = %e, "endpoint refused; trying the next")
            }
            Err(_) => {
                tracing::debug!(service = %key, port, %backend, "endpoint did not answer; trying the next")
            }
        }
    }
    let Some(mut upstream) = upstream else {
        tracing::debug!(service = %key, port, tried = order.len(), "no endpoint accepted; connection closed");
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
        tracing::debug!(service = %key, port, error = %e, "proxied connection ended");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keelson_sdk::watcher::{Event, Writer};
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
    use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

    const WAIT: Duration = Duration::from_secs(10);

    fn meta(name: &str, created: &str) -> Option<v1::ObjectMeta> {
        Some(v1::ObjectMeta {
            name: name.into(),
            namespace: "default".into(),
            creation_timestamp: created.into(),
            ..Default::default()
        })
    }

    fn sport(name: &str, protocol: &str, port: i32) -> v1::ServicePort {
        v1::ServicePort {
            name: name.into(),
            protocol: protocol.into(),
            port,
            ..Default::default()
        }
    }

    fn service(name: &str, created: &str, ports: Vec<v1::ServicePort>) -> v1::Service {
        v1::Service {
            metadata: meta(name, created),
            spec: Some(v1::ServiceSpec {
                ports,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn eport(name: &str, port: i32) -> v1::EndpointPort {
        v1::EndpointPort {
            name: name.into(),
            port,
            protocol: "TCP".into(),
        }
    }

    fn address(ip: &str, node: &str) -> v1::EndpointAddress {
        v1::EndpointAddress {
            ip: ip.into(),
            node_name: node.into(),
            ..Default::default()
        }
    }

    fn subset(
        ready: Vec<v1::EndpointAddress>,
        not_ready: Vec<v1::EndpointAddress>,
        ports: Vec<v1::EndpointPort>,
    ) -> v1::EndpointSubset {
        v1::EndpointSubset {
            addresses: ready,
            not_ready_addresses: not_ready,
            ports,
        }
    }

    fn endpoints(name: &str, subsets: Vec<v1::EndpointSubset>) -> v1::Endpoints {
        v1::Endpoints {
            metadata: meta(name, ""),
            subsets,
            ..Default::default()
        }
    }

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    /// What, service, index of its port, endpoints, the backends wanted.
    type Case<'a> = (
        &'a str,
        &'a v1::Service,
        usize,
        Option<v1::Endpoints>,
        Vec<&'a str>,
    );

    #[test]
    fn backends_table() {
        let web = service("web", "", vec![sport("http", "TCP", 80)]);
        let two = service(
            "two",
            "",
            vec![sport("http", "TCP", 80), sport("metrics", "", 9090)],
        );
        let unnamed = service("u", "", vec![sport("", "", 80)]);
        let cases: Vec<Case> = vec![
            ("no endpoints object", &web, 0, None, vec![]),
            (
                "no subsets",
                &web,
                0,
                Some(endpoints("web", vec![])),
                vec![],
            ),
            (
                "ready only",
                &web,
                0,
                Some(endpoints(
                    "web",
                    vec![subset(
                        vec![address("10.0.0.1", "n1")],
                        vec![address("10.0.0.2", "n1")],
                        vec![eport("http", 8080)],
                    )],
                )),
                vec!["10.0.0.1:8080"],
            ),
            (
                "port by name",
                &two,
                1,
                Some(endpoints(
                    "two",
                    vec![subset(
                        vec![address("10.0.0.1", "n1")],
                        vec![],
                        vec![eport("http", 8080), eport("metrics", 9100)],
                    )],
                )),
                vec!["10.0.0.1:9100"],
            ),
            (
                "a multi-port service does not take another port's only port",
                &two,
                0,
                Some(endpoints(
                    "two",
                    vec![
                        subset(
                            vec![address("10.0.0.1", "n1")],
                            vec![],
                            vec![eport("metrics", 9100)],
                        ),
                        subset(
                            vec![address("10.0.0.2", "n1")],
                            vec![],
                            vec![eport("http", 8080)],
                        ),
                    ],
                )),
                vec!["10.0.0.2:8080"],
            ),
            (
                "single unnamed port",
                &unnamed,
                0,
                Some(endpoints(
                    "u",
                    vec![subset(
                        vec![address("10.0.0.1", "n1")],
                        vec![],
                        vec![eport("", 8080)],
                    )],
                )),
                vec!["10.0.0.1:8080"],
            ),
            (
                "a single-port service takes the subset's only port",
                &web,
                0,
                Some(endpoints(
                    "web",
                    vec![subset(
                        vec![address("10.0.0.1", "n1")],
                        vec![],
                        vec![eport("", 8080)],
                    )],
                )),
                vec!["10.0.0.1:8080"],
            ),
            (
                "local endpoints first, order kept, duplicates dropped",
                &web,
                0,
                Some(endpoints(
                    "web",
                    vec![
                        subset(
                            vec![
                                address("10.0.0.1", "n2"),
                                address("10.0.0.2", "me"),
                                address("10.0.0.3", "n3"),
                                address("10.0.0.4", "me"),
                            ],
                            vec![],
                            vec![eport("http", 8080)],
                        ),
                        subset(
                            vec![address("10.0.0.1", "n2")],
                            vec![],
                            vec![eport("http", 8080)],
                        ),
                    ],
                )),
                vec![
                    "10.0.0.2:8080",
                    "10.0.0.4:8080",
                    "10.0.0.1:8080",
                    "10.0.0.3:8080",
                ],
            ),
            (
                "malformed ips skipped",
                &web,
                0,
                Some(endpoints(
                    "web",
                    vec![subset(
                        vec![
                            address("10.0.0.300", "n1"),
                            address("", "n1"),
                            address("pod-a", "n1"),
                            address("10.0.0.5", "n1"),
                            address("fd00::1", "n1"),
                        ],
                        vec![],
                        vec![eport("http", 8080)],
                    )],
                )),
                vec!["10.0.0.5:8080", "[fd00::1]:8080"],
            ),
            (
                "invalid endpoint port or other protocol skipped",
                &web,
                0,
                Some(endpoints(
                    "web",
                    vec![
                        subset(
                            vec![address("10.0.0.1", "n1")],
                            vec![],
                            vec![eport("http", 70000)],
                        ),
                        subset(
                            vec![address("10.0.0.2", "n1")],
                            vec![],
                            vec![v1::EndpointPort {
                                name: "http".into(),
                                port: 8080,
                                protocol: "UDP".into(),
                            }],
                        ),
                    ],
                )),
                vec![],
            ),
        ];
        for (what, svc, port, eps, want) in cases {
            let sp = &service_ports(svc)[port];
            let got = backends(svc, sp, eps.as_ref(), "me");
            let want: Vec<SocketAddr> = want.into_iter().map(sa).collect();
            assert_eq!(got, want, "{what}");
        }
    }

    #[test]
    fn picker_rotates() {
        let (a, b, c) = (sa("10.0.0.1:1"), sa("10.0.0.2:1"), sa("10.0.0.3:1"));
        let mut p = Picker::new();
        assert!(p.order(&[]).is_empty());
        assert_eq!(p.order(&[a, b, c]), vec![a, b, c]);
        assert_eq!(p.order(&[a, b, c]), vec![b, c, a]);
        assert_eq!(p.order(&[a, b, c]), vec![c, a, b]);
        assert_eq!(p.order(&[a, b, c]), vec![a, b, c]);
        assert_eq!(p.order(&[a, b]), vec![a, b]);
        assert_eq!(p.order(&[a, b]), vec![b, a]);
        assert_eq!(p.order(&[c]), vec![c]);
    }

    /// A server answering each line `l` with `<id>:l`.
    async fn server(id: &'static str) -> (SocketAddr, JoinHandle<()>) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let task = tokio::spawn(async move {
            while let Ok((s, _)) = l.accept().await {
                tokio::spawn(async move {
                    let (r, mut w) = s.into_split();
                    let mut lines = BufReader::new(r).lines();
                    while let Ok(Some(line)) = lines.next_line().await {
                        if w.write_all(format!("{id}:{line}\n").as_bytes())
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                });
            }
        });
        (addr, task)
    }

    fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    struct Conn {
        lines: Lines<BufReader<OwnedReadHalf>>,
        w: OwnedWriteHalf,
    }

    impl Conn {
        async fn open(port: u16) -> io::Result<Conn> {
            let s = TcpStream::connect(("127.0.0.1", port)).await?;
            let (r, w) = s.into_split();
            Ok(Conn {
                lines: BufReader::new(r).lines(),
                w,
            })
        }

        /// Send `msg`, return the answer's server id.
        async fn say(&mut self, msg: &str) -> io::Result<String> {
            let exchange = async {
                self.w.write_all(format!("{msg}\n").as_bytes()).await?;
                let line = self
                    .lines
                    .next_line()
                    .await?
                    .ok_or_else(|| io::Error::other("closed"))?;
                let (id, echoed) = line
                    .split_once(':')
                    .ok_or_else(|| io::Error::other("bad answer"))?;
                if echoed != msg {
                    return Err(io::Error::other("wrong echo"));
                }
                Ok(id.to_string())
            };
            tokio::time::timeout(Duration::from_secs(5), exchange)
                .await
                .map_err(|_| io::Error::other("timed out"))?
        }
    }

    /// One connection, one exchange: the id of the server that answered.
    async fn ask(port: u16) -> io::Result<String> {
        Conn::open(port).await?.say("hi").await
    }

    /// Ask until the answer is `want`.
    async fn until_answer(port: u16, want: &str) {
        tokio::time::timeout(WAIT, async {
            loop {
                if ask(port).await.ok().as_deref() == Some(want) {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("no answer from {want} through port {port}"));
    }

    async fn until_refused(port: u16) {
        tokio::time::timeout(WAIT, async {
            loop {
                match TcpStream::connect(("127.0.0.1", port)).await {
                    Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => return,
                    _ => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("port {port} still listening"));
    }

    fn start(services: Store<v1::Service>, endpoints: Store<v1::Endpoints>) -> JoinHandle<()> {
        tokio::spawn(run_with(
            services,
            endpoints,
            "me".into(),
            Ipv4Addr::LOCALHOST,
        ))
    }

    fn backend_port(a: SocketAddr) -> v1::EndpointPort {
        eport("http", i32::from(a.port()))
    }

    #[tokio::test]
    async fn proxies_round_robin_follows_readiness_and_stops() {
        let (a, a_task) = server("a").await;
        let (b, b_task) = server("b").await;
        // Both backends listen on 127.0.0.1 on their own ports: one subset each.
        let eps = |b_ready: bool| {
            let b_addr = vec![address("127.0.0.1", "other")];
            let (ready, not_ready) = if b_ready {
                (b_addr, vec![])
            } else {
                (vec![], b_addr)
            };
            endpoints(
                "web",
                vec![
                    subset(
                        vec![address("127.0.0.1", "other")],
                        vec![],
                        vec![backend_port(a)],
                    ),
                    subset(ready, not_ready, vec![backend_port(b)]),
                ],
            )
        };
        let port = free_port();
        let svc = service("web", "", vec![sport("http", "TCP", i32::from(port))]);
        let (sw, services) = Writer::new();
        let (ew, endpoints_store) = Writer::new();
        sw.apply(Event::Restarted(vec![svc.clone()]));
        ew.apply(Event::Restarted(vec![eps(true)]));
        let proxy = start(services, endpoints_store);

        until_answer(port, "a").await;
        // The last connection went to a: the next ones alternate from b.
        let mut ids = Vec::new();
        for _ in 0..4 {
            ids.push(ask(port).await.unwrap());
        }
        assert_eq!(ids, ["b", "a", "b", "a"]);

        // A connection to b, held across the change.
        let mut held = Conn::open(port).await.unwrap();
        assert_eq!(held.say("first").await.unwrap(), "b");

        ew.apply(Event::Applied(eps(false)));
        for _ in 0..4 {
            assert_eq!(ask(port).await.unwrap(), "a", "b is not ready");
        }
        assert_eq!(held.say("still").await.unwrap(), "b", "held connection");

        sw.apply(Event::Deleted(svc));
        until_refused(port).await;
        assert_eq!(held.say("after").await.unwrap(), "b", "held connection");

        drop(held);
        proxy.abort();
        a_task.abort();
        b_task.abort();
    }

    #[tokio::test]
    async fn refused_endpoints_are_skipped() {
        let (a, a_task) = server("a").await;
        let dead = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), free_port());
        let port = free_port();
        let svc = service("web", "", vec![sport("http", "TCP", i32::from(port))]);
        let eps = endpoints(
            "web",
            vec![
                subset(
                    vec![address("127.0.0.1", "me")],
                    vec![],
                    vec![backend_port(dead)],
                ),
                subset(
                    vec![address("127.0.0.1", "other")],
                    vec![],
                    vec![backend_port(a)],
                ),
            ],
        );
        let (sw, services) = Writer::new();
        let (ew, endpoints_store) = Writer::new();
        sw.apply(Event::Restarted(vec![svc]));
        ew.apply(Event::Restarted(vec![eps]));
        let proxy = start(services, endpoints_store);
        until_answer(port, "a").await;
        for _ in 0..3 {
            assert_eq!(ask(port).await.unwrap(), "a");
        }
        proxy.abort();
        a_task.abort();
    }

    #[tokio::test]
    async fn port_conflicts_and_bind_retries() {
        let (a, a_task) = server("a").await;
        let (b, b_task) = server("b").await;
        let port = free_port();
        let blocker = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        let ports = || {
            vec![
                sport("http", "TCP", i32::from(port)),
                sport("dns", "UDP", 53),
            ]
        };
        let first = service("first", "2024-01-01T00:00:00Z", ports());
        let second = service("second", "2024-01-02T00:00:00Z", ports());
        let eps = |name: &str, to: SocketAddr| {
            endpoints(
                name,
                vec![subset(
                    vec![address("127.0.0.1", "other")],
                    vec![],
                    vec![backend_port(to)],
                )],
            )
        };
        let (sw, services) = Writer::new();
        let (ew, endpoints_store) = Writer::new();
        sw.apply(Event::Restarted(vec![second.clone(), first.clone()]));
        ew.apply(Event::Restarted(vec![eps("first", a), eps("second", b)]));
        let proxy = start(services, endpoints_store);

        // The port is taken: the proxy retries on the next change.
        tokio::time::sleep(Duration::from_millis(100)).await;
        drop(blocker);
        ew.apply(Event::Applied(eps("first", a)));
        // The older Service gets the port.
        until_answer(port, "a").await;

        // The holder keeps it even against an older claimant.
        let mut older = second.clone();
        if let Some(m) = older.metadata.as_mut() {
            m.creation_timestamp = "2023-01-01T00:00:00Z".into();
        }
        sw.apply(Event::Applied(older));
        for _ in 0..3 {
            assert_eq!(ask(port).await.unwrap(), "a");
        }

        // The holder gone, the other one takes the port.
        sw.apply(Event::Deleted(first));
        until_answer(port, "b").await;

        // A removed port stops its listener.
        let mut no_tcp = second;
        if let Some(s) = no_tcp.spec.as_mut() {
            s.ports.retain(|p| p.protocol != "TCP");
        }
        sw.apply(Event::Applied(no_tcp));
        until_refused(port).await;

        proxy.abort();
        a_task.abort();
        b_task.abort();
    }
}
