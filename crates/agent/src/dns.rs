//! Cluster DNS for the runc runtime's pods: a small DNS server of each
//! node's agent on its bridge gateway (`<gateway>:53`, UDP), answering from
//! the Services and Endpoints caches (a watch), as CoreDNS' kubernetes
//! plugin does:
//!
//! - `<svc>.<ns>.svc.cluster.local` A: the Service's cluster IP, or for a
//!   headless Service (`clusterIP: None`) its ready endpoints' addresses;
//! - `<hostname>.<svc>.<ns>.svc.cluster.local` A: the ready endpoint of a
//!   headless Service with that `hostname`;
//! - `<a-b-c-d>.<ns>.pod.cluster.local` A: the address it spells;
//! - any other name under `cluster.local`: NXDOMAIN; another record type
//!   of a cluster name: no answer (NODATA);
//! - names outside the cluster domain are forwarded to the node's own
//!   nameservers (its `/etc/resolv.conf`) and the answer relayed.
//!
//! Pods with `dnsPolicy: ClusterFirst` (the default) get a `resolv.conf`
//! naming this server with Kubernetes' search path (`<ns>.svc.cluster.local
//! svc.cluster.local cluster.local`, `ndots:5`): the client's resolver
//! expands short names (`<svc>`, `<svc>.<ns>`). Messages are parsed and
//! written with hickory-proto.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{RData, Record, RecordType};
use keelson_proto::v1;
use keelson_sdk::Store;

pub const CLUSTER_DOMAIN: &str = "cluster.local";
/// Seconds a client may cache an answer.
const TTL: u32 = 5;
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);
const MAX_UDP: usize = 4096;

/// How a name resolves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// A cluster name: its addresses (empty: it exists with no address
    /// now, e.g. a headless Service without ready endpoints).
    Cluster(Vec<Ipv4Addr>),
    /// A cluster name that does not exist.
    NxDomain,
    /// Not a cluster name: ask upstream.
    Forward,
}

/// `resolv.conf` of a pod in namespace `ns` whose node's DNS server is
/// `server`.
pub fn resolv_conf(server: Ipv4Addr, ns: &str) -> String {
    format!(
        "nameserver {server}\nsearch {ns}.svc.{CLUSTER_DOMAIN} svc.{CLUSTER_DOMAIN} {CLUSTER_DOMAIN}\noptions ndots:5\n"
    )
}

fn ready_addresses(ep: Option<&v1::Endpoints>) -> Vec<(Ipv4Addr, String)> {
    let mut out = Vec::new();
    for s in ep.map_or(&[][..], |e| e.subsets.as_slice()) {
        for a in &s.addresses {
            if let Ok(ip) = a.ip.parse::<Ipv4Addr>() {
                if !out.iter().any(|(x, _)| *x == ip) {
                    out.push((ip, a.hostname.clone()));
                }
            }
        }
    }
    out
}

/// Resolve `name` (any case, with or without the final dot) from the
/// caches' contents: `service(ns, name)` and `endpoints(ns, name)`.
pub fn resolve(
    name: &str,
    service: &dyn Fn(&str, &str) -> Option<Arc<v1::Service>>,
    endpoints: &dyn Fn(&str, &str) -> Option<Arc<v1::Endpoints>>,
) -> Answer {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    let Some(rest) = name.strip_suffix(CLUSTER_DOMAIN).and_then(|r| {
        if r.is_empty() {
            Some(r)
        } else {
            r.strip_suffix('.')
        }
    }) else {
        return Answer::Forward;
    };
    let labels: Vec<&str> = if rest.is_empty() {
        Vec::new()
    } else {
        rest.split('.').collect()
    };
    match labels.as_slice() {
        [svc, ns, "svc"] => {
            let Some(s) = service(ns, svc) else {
                return Answer::NxDomain;
            };
            let ip = s.spec.as_ref().map(|s| s.cluster_ip.as_str()).unwrap_or("");
            match ip.parse::<Ipv4Addr>() {
                Ok(ip) => Answer::Cluster(vec![ip]),
                // Headless: the ready endpoints.
                Err(_) => Answer::Cluster(
                    ready_addresses(endpoints(ns, svc).as_deref())
                        .into_iter()
                        .map(|(ip, _)| ip)
                        .collect(),
                ),
            }
        }
        [host, svc, ns, "svc"] => {
            let headless = service(ns, svc)
                .is_some_and(|s| s.spec.as_ref().is_some_and(|s| s.cluster_ip == "None"));
            if !headless {
                return Answer::NxDomain;
            }
            let ips: Vec<Ipv4Addr> = ready_addresses(endpoints(ns, svc).as_deref())
                .into_iter()
                .filter(|(_, h)| h == host)
                .map(|(ip, _)| ip)
                .collect();
            if ips.is_empty() {
                Answer::NxDomain
            } else {
                Answer::Cluster(ips)
            }
        }
        [ip, _ns, "pod"] => match ip.replace('-', ".").parse::<Ipv4Addr>() {
            Ok(ip) => Answer::Cluster(vec![ip]),
            Err(_) => Answer::NxDomain,
        },
        _ => Answer::NxDomain,
    }
}

/// The reply to `query` (raw bytes) from the caches, or None when it must
/// be forwarded (or is no query at all: then nothing is sent).
pub fn reply(
    query: &[u8],
    service: &dyn Fn(&str, &str) -> Option<Arc<v1::Service>>,
    endpoints: &dyn Fn(&str, &str) -> Option<Arc<v1::Endpoints>>,
) -> Result<Option<Vec<u8>>, String> {
    let req = Message::from_vec(query).map_err(|e| format!("a bad DNS message: {e}"))?;
    if req.message_type() != MessageType::Query {
        return Err("not a query".into());
    }
    let mut resp = Message::new();
    resp.set_id(req.id())
        .set_message_type(MessageType::Response)
        .set_op_code(req.op_code())
        .set_recursion_desired(req.recursion_desired())
        .set_recursion_available(true);
    resp.add_queries(req.queries().to_vec());
    let Some(q) = req.queries().first() else {
        resp.set_response_code(ResponseCode::FormErr);
        return resp.to_vec().map(Some).map_err(|e| e.to_string());
    };
    let name = q.name().to_ascii();
    match resolve(&name, service, endpoints) {
        Answer::Forward => return Ok(None),
        Answer::NxDomain => {
            resp.set_authoritative(true);
            resp.set_response_code(ResponseCode::NXDomain);
        }
        Answer::Cluster(ips) => {
            resp.set_authoritative(true);
            if q.query_type() == RecordType::A || q.query_type() == RecordType::ANY {
                for ip in ips {
                    resp.add_answer(Record::from_rdata(q.name().clone(), TTL, RData::A(A(ip))));
                }
            }
        }
    }
    resp.to_vec().map(Some).map_err(|e| e.to_string())
}

/// The node's own nameservers (its `/etc/resolv.conf`), for names outside
/// the cluster.
pub fn upstreams() -> Vec<SocketAddr> {
    std::fs::read_to_string("/etc/resolv.conf")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .filter_map(|a| a.trim().parse::<std::net::IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, 53))
        .collect()
}

/// Serve DNS on `addr` (UDP) until the future is dropped.
pub async fn serve(
    addr: SocketAddr,
    services: Store<v1::Service>,
    endpoints: Store<v1::Endpoints>,
    upstreams: Vec<SocketAddr>,
) -> std::io::Result<()> {
    let sock = Arc::new(tokio::net::UdpSocket::bind(addr).await?);
    tracing::info!(%addr, "cluster DNS serving");
    let mut buf = vec![0u8; MAX_UDP];
    loop {
        let (n, peer) = match sock.recv_from(&mut buf).await {
            Ok(x) => x,
            Err(e) => {
                tracing::debug!(error = %e, "dns recv");
                continue;
            }
        };
        let query = buf[..n].to_vec();
        let svc = |ns: &str, name: &str| services.get(&format!("{ns}/{name}"));
        let eps = |ns: &str, name: &str| endpoints.get(&format!("{ns}/{name}"));
        match reply(&query, &svc, &eps) {
            Ok(Some(bytes)) => {
                let _ = sock.send_to(&bytes, peer).await;
            }
            Ok(None) => {
                let (sock, upstreams) = (sock.clone(), upstreams.clone());
                tokio::spawn(async move {
                    if let Some(bytes) = forward(&query, &upstreams).await {
                        let _ = sock.send_to(&bytes, peer).await;
                    }
                });
            }
            Err(e) => tracing::debug!(%peer, error = %e, "dns query"),
        }
    }
}

/// Ask each upstream in turn; the first answer.
async fn forward(query: &[u8], upstreams: &[SocketAddr]) -> Option<Vec<u8>> {
    for up in upstreams {
        let local: SocketAddr = if up.is_ipv4() {
            (Ipv4Addr::UNSPECIFIED, 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let Ok(s) = tokio::net::UdpSocket::bind(local).await else {
            continue;
        };
        if s.send_to(query, up).await.is_err() {
            continue;
        }
        let mut buf = vec![0u8; MAX_UDP];
        if let Ok(Ok((n, _))) = tokio::time::timeout(UPSTREAM_TIMEOUT, s.recv_from(&mut buf)).await
        {
            buf.truncate(n);
            return Some(buf);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::Query;
    use hickory_proto::rr::Name;
    use std::collections::HashMap;

    fn svc(ip: &str) -> Arc<v1::Service> {
        Arc::new(v1::Service {
            spec: Some(v1::ServiceSpec {
                cluster_ip: ip.into(),
                ..Default::default()
            }),
            ..Default::default()
        })
    }

    fn eps(addrs: &[(&str, &str)]) -> Arc<v1::Endpoints> {
        Arc::new(v1::Endpoints {
            subsets: vec![v1::EndpointSubset {
                addresses: addrs
                    .iter()
                    .map(|(ip, host)| v1::EndpointAddress {
                        ip: ip.to_string(),
                        hostname: host.to_string(),
                        ..Default::default()
                    })
                    .collect(),
                not_ready_addresses: vec![v1::EndpointAddress {
                    ip: "10.244.9.9".into(),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        })
    }

    struct Caches {
        services: HashMap<String, Arc<v1::Service>>,
        endpoints: HashMap<String, Arc<v1::Endpoints>>,
    }

    impl Caches {
        fn new() -> Caches {
            Caches {
                services: [
                    ("default/web".to_string(), svc("10.96.0.5")),
                    ("db/pg".to_string(), svc("None")),
                ]
                .into(),
                endpoints: [(
                    "db/pg".to_string(),
                    eps(&[("10.244.0.7", "pg-0"), ("10.244.1.8", "pg-1")]),
                )]
                .into(),
            }
        }
        fn resolve(&self, name: &str) -> Answer {
            resolve(
                name,
                &|ns, n| self.services.get(&format!("{ns}/{n}")).cloned(),
                &|ns, n| self.endpoints.get(&format!("{ns}/{n}")).cloned(),
            )
        }
    }

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn cluster_names_resolve_as_coredns_would() {
        let c = Caches::new();
        assert_eq!(
            c.resolve("web.default.svc.cluster.local."),
            Answer::Cluster(vec![ip("10.96.0.5")])
        );
        assert_eq!(
            c.resolve("WEB.Default.svc.cluster.local"),
            Answer::Cluster(vec![ip("10.96.0.5")])
        );
        assert_eq!(
            c.resolve("pg.db.svc.cluster.local"),
            Answer::Cluster(vec![ip("10.244.0.7"), ip("10.244.1.8")]),
            "headless: the ready endpoints"
        );
        assert_eq!(
            c.resolve("pg-1.pg.db.svc.cluster.local"),
            Answer::Cluster(vec![ip("10.244.1.8")])
        );
        assert_eq!(c.resolve("pg-9.pg.db.svc.cluster.local"), Answer::NxDomain);
        assert_eq!(
            c.resolve("nope.default.svc.cluster.local"),
            Answer::NxDomain
        );
        assert_eq!(c.resolve("web.default.cluster.local"), Answer::NxDomain);
        assert_eq!(
            c.resolve("10-244-0-7.db.pod.cluster.local"),
            Answer::Cluster(vec![ip("10.244.0.7")])
        );
        assert_eq!(c.resolve("example.com"), Answer::Forward);
        assert_eq!(c.resolve("notcluster.local"), Answer::Forward);
    }

    #[test]
    fn messages_round_trip() {
        let c = Caches::new();
        let mut q = Message::new();
        q.set_id(77)
            .set_message_type(MessageType::Query)
            .set_recursion_desired(true);
        q.add_query(Query::query(
            Name::from_ascii("web.default.svc.cluster.local.").unwrap(),
            RecordType::A,
        ));
        let bytes = q.to_vec().unwrap();
        let svc = |ns: &str, n: &str| c.services.get(&format!("{ns}/{n}")).cloned();
        let ep = |ns: &str, n: &str| c.endpoints.get(&format!("{ns}/{n}")).cloned();
        let r = Message::from_vec(&reply(&bytes, &svc, &ep).unwrap().unwrap()).unwrap();
        assert_eq!(r.id(), 77);
        assert_eq!(r.response_code(), ResponseCode::NoError);
        assert_eq!(r.answers().len(), 1);
        assert_eq!(r.answers()[0].data(), &RData::A(A(ip("10.96.0.5"))));
        // NXDOMAIN, and a name to forward.
        let mut q = Message::new();
        q.set_id(78).set_message_type(MessageType::Query);
        q.add_query(Query::query(
            Name::from_ascii("x.default.svc.cluster.local.").unwrap(),
            RecordType::A,
        ));
        let r =
            Message::from_vec(&reply(&q.to_vec().unwrap(), &svc, &ep).unwrap().unwrap()).unwrap();
        assert_eq!(r.response_code(), ResponseCode::NXDomain);
        let mut q = Message::new();
        q.set_id(79).set_message_type(MessageType::Query);
        q.add_query(Query::query(
            Name::from_ascii("example.com.").unwrap(),
            RecordType::A,
        ));
        assert_eq!(reply(&q.to_vec().unwrap(), &svc, &ep).unwrap(), None);
        // Garbage is an error, never a panic.
        assert!(reply(&[1, 2, 3], &svc, &ep).is_err());
        assert_eq!(
            resolv_conf(ip("10.244.0.1"), "team"),
            "nameserver 10.244.0.1\nsearch team.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n"
        );
    }
}
