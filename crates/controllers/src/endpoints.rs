//! The Endpoints controller, after Kubernetes' `EndpointController`.
//!
//! [`desired`] computes the Endpoints object a Service should have from the
//! pods of its namespace; [`up_to_date`] tells whether the current object
//! already says the same, so the runner writes only on change:
//!
//! - **Selection.** Only a Service with a non-empty `spec.selector` gets
//!   managed endpoints; without one the Endpoints object is the user's.
//!   Pods count when they are in the Service's namespace, their labels match
//!   the selector, they are not being deleted (`deletionTimestamp` empty),
//!   not finished (phase `Succeeded`/`Failed`) and have a `status.podIP`.
//! - **Readiness.** A pod whose `Ready` condition is `True` is listed in
//!   `addresses`, any other in `notReadyAddresses`. Each address carries the
//!   pod IP, the node name and a `targetRef` to the pod.
//! - **Ports.** Every service port becomes an endpoint port with the service
//!   port's name and protocol (default `TCP`) and the resolved target port:
//!   an empty (or `0`) `targetPort` is the service port itself, a number is
//!   that number, a name is the port of that name (and the same protocol) in
//!   the pod's containers. A pod that cannot resolve a port is left out of
//!   that port only (a numeric target outside 1..=65535 resolves for no
//!   pod). A Service without ports lists its pods with no ports.
//! - **Packing.** As Kubernetes' `RepackSubsets`: each endpoint port maps to
//!   the set of addresses offering it, and ports offered by exactly the same
//!   addresses (with the same readiness) share one subset. An address
//!   listed both ready and not ready for a port counts as not ready.
//! - **Order.** Addresses sort by IP, then pod name (then namespace, uid);
//!   ports by name, port, protocol; subsets by their ports, then addresses.
//!   The same inputs always give the same object, so [`up_to_date`] can
//!   compare field by field.
//! - The Endpoints object has the Service's name, namespace and labels.

use std::collections::BTreeMap;

use keelson_model::pod::is_ready;
use keelson_model::selector::LabelSelector;
use keelson_model::{Kind, Resource};
use keelson_proto::v1;

/// The protocol of a port that names none.
const DEFAULT_PROTOCOL: &str = "TCP";

/// The Endpoints object a Service should have, or None when the Service has
/// no selector (then endpoints are the user's to manage).
pub fn desired(service: &v1::Service, pods: &[v1::Pod]) -> Option<v1::Endpoints> {
    let meta = service.meta();
    let spec = service.spec.as_ref()?;
    if spec.selector.is_empty() {
        return None;
    }
    let selector = LabelSelector::from_map(&spec.selector);

    // Endpoint port -> address -> ready. An address is keyed by its IP and
    // target uid (as Kubernetes' addressKey), so two pods sharing an IP
    // (host network) stay two addresses.
    let mut by_port: BTreeMap<PortKey, BTreeMap<AddrKey, bool>> = BTreeMap::new();
    let mut addresses: BTreeMap<AddrKey, v1::EndpointAddress> = BTreeMap::new();
    for pod in pods {
        let pm = pod.meta();
        if pm.namespace != meta.namespace || !selector.matches(&pm.labels) || !is_serving(pod) {
            continue;
        }
        let address = endpoint_address(pod, &meta.name);
        let key = addr_key(&address);
        let ready = is_ready(pod);
        let mut offered = false;
        if spec.ports.is_empty() {
            // Kubernetes keeps port-less endpoints under a sentinel port.
            mark(&mut by_port, PortKey::None, key.clone(), ready);
            offered = true;
        }
        for sp in &spec.ports {
            if let Some(port) = resolve_port(pod, sp) {
                let ep = PortKey::Port {
                    name: sp.name.clone(),
                    port,
                    protocol: protocol(&sp.protocol).to_string(),
                };
                mark(&mut by_port, ep, key.clone(), ready);
                offered = true;
            }
        }
        if offered {
            addresses.entry(key).or_insert(address);
        }
    }

    // Group the ports by the exact address set (with readiness) they map to.
    let mut by_addrs: BTreeMap<Vec<(AddrKey, bool)>, Vec<PortKey>> = BTreeMap::new();
    for (port, addrs) in by_port {
        by_addrs
            .entry(addrs.into_iter().collect())
            .or_default()
            .push(port);
    }
    let mut subsets: Vec<v1::EndpointSubset> = by_addrs
        .into_iter()
        .map(|(addrs, ports)| {
            let mut subset = v1::EndpointSubset {
                ports: ports.iter().filter_map(PortKey::to_proto).collect(),
                ..Default::default()
            };
            for (key, ready) in addrs {
                let Some(a) = addresses.get(&key) else {
                    continue;
                };
                if ready {
                    subset.addresses.push(a.clone());
                } else {
                    subset.not_ready_addresses.push(a.clone());
                }
            }
            subset
                .addresses
                .sort_by(|a, b| address_order(a).cmp(&address_order(b)));
            subset
                .not_ready_addresses
                .sort_by(|a, b| address_order(a).cmp(&address_order(b)));
            subset
        })
        .collect();
    subsets.sort_by_cached_key(subset_order);

    Some(v1::Endpoints {
        api_version: Kind::Endpoints.api_version().to_string(),
        kind: Kind::Endpoints.name().to_string(),
        metadata: Some(v1::ObjectMeta {
            name: meta.name.clone(),
            namespace: meta.namespace.clone(),
            labels: meta.labels.clone(),
            ..Default::default()
        }),
        subsets,
    })
}

/// True when `current` already says what `desired` says (subsets and
/// labels), so no write is needed.
pub fn up_to_date(current: &v1::Endpoints, desired: &v1::Endpoints) -> bool {
    current.subsets == desired.subsets && current.meta().labels == desired.meta().labels
}

/// An endpoint port, or the sentinel under which a Service without ports
/// keeps its addresses. Orders by name, port, protocol.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum PortKey {
    None,
    Port {
        name: String,
        port: i32,
        protocol: String,
    },
}

impl PortKey {
    fn to_proto(&self) -> Option<v1::EndpointPort> {
        match self {
            PortKey::None => None,
            PortKey::Port {
                name,
                port,
                protocol,
            } => Some(v1::EndpointPort {
                name: name.clone(),
                port: *port,
                protocol: protocol.clone(),
            }),
        }
    }
}

/// Which address an entry is: its IP and the uid of the pod behind it.
type AddrKey = (String, String);

fn addr_key(a: &v1::EndpointAddress) -> AddrKey {
    let uid = a.target_ref.as_ref().map_or("", |r| r.uid.as_str());
    (a.ip.clone(), uid.to_string())
}

/// Record that `addr` offers `port`; not ready trumps ready.
fn mark(
    by_port: &mut BTreeMap<PortKey, BTreeMap<AddrKey, bool>>,
    port: PortKey,
    addr: AddrKey,
    ready: bool,
) {
    let entry = by_port
        .entry(port)
        .or_default()
        .entry(addr)
        .or_insert(ready);
    *entry &= ready;
}

fn protocol(p: &str) -> &str {
    if p.is_empty() {
        DEFAULT_PROTOCOL
    } else {
        p
    }
}

/// The pod port a service port sends to, as Kubernetes' `FindPort`: None
/// when the pod has no container port of the target's name and protocol,
/// or the target is a number outside the port range.
fn resolve_port(pod: &v1::Pod, sp: &v1::ServicePort) -> Option<i32> {
    let target = sp.target_port.as_str();
    if target.is_empty() {
        return valid_port(sp.port);
    }
    if let Ok(n) = target.parse::<i64>() {
        return match n {
            0 => valid_port(sp.port),
            n => i32::try_from(n).ok().and_then(valid_port),
        };
    }
    let want = protocol(&sp.protocol);
    pod.spec
        .as_ref()?
        .containers
        .iter()
        .flat_map(|c| c.ports.iter())
        .find(|p| p.name == target && protocol(&p.protocol) == want)
        .and_then(|p| valid_port(p.container_port))
}

fn valid_port(p: i32) -> Option<i32> {
    (1..=65535).contains(&p).then_some(p)
}

fn phase(pod: &v1::Pod) -> &str {
    pod.status.as_ref().map_or("", |s| s.phase.as_str())
}

/// Not being deleted, not finished, and with an IP to send to.
fn is_serving(pod: &v1::Pod) -> bool {
    pod.meta().deletion_timestamp.is_empty()
        && !matches!(phase(pod), "Succeeded" | "Failed")
        && pod.status.as_ref().is_some_and(|s| !s.pod_ip.is_empty())
}

/// A pod's address in Service `service`'s Endpoints: with the pod's
/// hostname when its subdomain names that Service (as Kubernetes'
/// `podToEndpointAddressForService`), which the cluster DNS serves as
/// `<hostname>.<service>.<ns>.svc`.
fn endpoint_address(pod: &v1::Pod, service: &str) -> v1::EndpointAddress {
    let meta = pod.meta();
    let hostname = pod
        .spec
        .as_ref()
        .filter(|s| !s.hostname.is_empty() && s.subdomain == service)
        .map(|s| s.hostname.clone())
        .unwrap_or_default();
    v1::EndpointAddress {
        ip: pod
            .status
            .as_ref()
            .map(|s| s.pod_ip.clone())
            .unwrap_or_default(),
        hostname,
        node_name: pod
            .spec
            .as_ref()
            .map(|s| s.node_name.clone())
            .unwrap_or_default(),
        target_ref: Some(v1::ObjectReference {
            kind: Kind::Pod.name().to_string(),
            namespace: meta.namespace.clone(),
            name: meta.name.clone(),
            uid: meta.uid.clone(),
            ..Default::default()
        }),
    }
}

type AddressOrder<'a> = (&'a str, &'a str, &'a str, &'a str, &'a str);

fn address_order(a: &v1::EndpointAddress) -> AddressOrder<'_> {
    let r = a.target_ref.as_ref();
    (
        a.ip.as_str(),
        r.map_or("", |r| r.name.as_str()),
        r.map_or("", |r| r.namespace.as_str()),
        r.map_or("", |r| r.uid.as_str()),
        a.node_name.as_str(),
    )
}

type SubsetOrder = (
    Vec<(String, i32, String)>,
    Vec<(String, String)>,
    Vec<(String, String)>,
);

fn subset_order(s: &v1::EndpointSubset) -> SubsetOrder {
    let addrs = |v: &[v1::EndpointAddress]| {
        v.iter()
            .map(|a| {
                let name = a.target_ref.as_ref().map_or("", |r| r.name.as_str());
                (a.ip.clone(), name.to_string())
            })
            .collect()
    };
    (
        s.ports
            .iter()
            .map(|p| (p.name.clone(), p.port, p.protocol.clone()))
            .collect(),
        addrs(&s.addresses),
        addrs(&s.not_ready_addresses),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn sport(name: &str, port: i32, target: &str) -> v1::ServicePort {
        v1::ServicePort {
            name: name.into(),
            port,
            target_port: target.into(),
            ..Default::default()
        }
    }

    /// Service "web" in "default", selecting app=web, with these ports.
    fn svc(ports: Vec<v1::ServicePort>) -> v1::Service {
        v1::Service {
            api_version: "v1".into(),
            kind: "Service".into(),
            metadata: Some(v1::ObjectMeta {
                name: "web".into(),
                namespace: "default".into(),
                uid: "svc-uid".into(),
                resource_version: "7".into(),
                labels: labels(&[("team", "a")]),
                ..Default::default()
            }),
            spec: Some(v1::ServiceSpec {
                ports,
                selector: labels(&[("app", "web")]),
                ..Default::default()
            }),
            status: None,
        }
    }

    fn svc_with(mut s: v1::Service, f: impl FnOnce(&mut v1::Service)) -> v1::Service {
        f(&mut s);
        s
    }

    /// A running, ready pod labelled app=web on node-1 with IP `ip` and a
    /// container port "http" 8080/TCP.
    fn pod(name: &str, ip: &str) -> v1::Pod {
        v1::Pod {
            api_version: "v1".into(),
            kind: "Pod".into(),
            metadata: Some(v1::ObjectMeta {
                name: name.into(),
                namespace: "default".into(),
                uid: format!("uid-{name}"),
                labels: labels(&[("app", "web")]),
                ..Default::default()
            }),
            spec: Some(v1::PodSpec {
                node_name: "node-1".into(),
                containers: vec![v1::Container {
                    name: "c".into(),
                    ports: vec![container_port("http", 8080, "")],
                    ..Default::default()
                }],
                ..Default::default()
            }),
            status: Some(v1::PodStatus {
                phase: "Running".into(),
                pod_ip: ip.into(),
                conditions: vec![v1::PodCondition {
                    r#type: "Ready".into(),
                    status: "True".into(),
                    ..Default::default()
                }],
                ..Default::default()
            }),
        }
    }

    fn container_port(name: &str, port: i32, protocol: &str) -> v1::ContainerPort {
        v1::ContainerPort {
            name: name.into(),
            container_port: port,
            protocol: protocol.into(),
            ..Default::default()
        }
    }

    fn with(mut p: v1::Pod, f: impl FnOnce(&mut v1::Pod)) -> v1::Pod {
        f(&mut p);
        p
    }
    fn not_ready(p: v1::Pod) -> v1::Pod {
        with(p, |p| {
            if let Some(s) = p.status.as_mut() {
                for c in &mut s.conditions {
                    c.status = "False".into();
                }
            }
        })
    }
    fn no_conditions(p: v1::Pod) -> v1::Pod {
        with(p, |p| {
            if let Some(s) = p.status.as_mut() {
                s.conditions.clear();
            }
        })
    }
    fn phase_of(p: v1::Pod, phase: &str) -> v1::Pod {
        with(p, |p| {
            p.status.get_or_insert_with(Default::default).phase = phase.into()
        })
    }
    fn terminating(p: v1::Pod) -> v1::Pod {
        with(p, |p| {
            p.meta_mut().deletion_timestamp = "2024-05-01T10:00:00Z".into()
        })
    }
    fn in_namespace(p: v1::Pod, ns: &str) -> v1::Pod {
        with(p, |p| p.meta_mut().namespace = ns.into())
    }
    fn relabel(p: v1::Pod, kv: &[(&str, &str)]) -> v1::Pod {
        with(p, |p| p.meta_mut().labels = labels(kv))
    }
    fn ports(p: v1::Pod, ports: Vec<v1::ContainerPort>) -> v1::Pod {
        with(p, |p| {
            if let Some(c) = p.spec.as_mut().and_then(|s| s.containers.first_mut()) {
                c.ports = ports;
            }
        })
    }

    /// Subsets as short strings: "ports | ready | not ready".
    fn summarize(e: &v1::Endpoints) -> Vec<String> {
        let addrs = |v: &[v1::EndpointAddress]| {
            v.iter()
                .map(|a| {
                    let n = a.target_ref.as_ref().map_or("", |r| r.name.as_str());
                    format!("{}({n})", a.ip)
                })
                .collect::<Vec<_>>()
                .join(",")
        };
        e.subsets
            .iter()
            .map(|s| {
                let ports = s
                    .ports
                    .iter()
                    .map(|p| format!("{}:{}/{}", p.name, p.port, p.protocol))
                    .collect::<Vec<_>>()
                    .join(",");
                format!(
                    "{ports} | {} | {}",
                    addrs(&s.addresses),
                    addrs(&s.not_ready_addresses)
                )
            })
            .collect()
    }

    fn strs(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    /// Name, service, pods, the summarized subsets (None: no endpoints).
    type Case = (&'static str, v1::Service, Vec<v1::Pod>, Option<Vec<String>>);

    #[test]
    fn desired_table() {
        let http = || svc(vec![sport("http", 80, "http")]);
        let cases: Vec<Case> = vec![
            (
                "ready and not ready pods split, sorted by ip",
                http(),
                vec![
                    pod("b", "10.0.0.2"),
                    not_ready(pod("c", "10.0.0.3")),
                    pod("a", "10.0.0.10"),
                    no_conditions(pod("d", "10.0.0.1")),
                ],
                Some(strs(&[
                    "http:8080/TCP | 10.0.0.10(a),10.0.0.2(b) | 10.0.0.1(d),10.0.0.3(c)",
                ])),
            ),
            (
                "same ip: by name",
                http(),
                vec![pod("y", "10.0.0.1"), pod("x", "10.0.0.1")],
                Some(strs(&["http:8080/TCP | 10.0.0.1(x),10.0.0.1(y) | "])),
            ),
            (
                "numeric target port",
                svc(vec![sport("http", 80, "9090")]),
                vec![pod("a", "10.0.0.1")],
                Some(strs(&["http:9090/TCP | 10.0.0.1(a) | "])),
            ),
            (
                "empty and zero target ports are the service port",
                svc(vec![sport("a", 80, ""), sport("b", 81, "0")]),
                vec![pod("a", "10.0.0.1")],
                Some(strs(&["a:80/TCP,b:81/TCP | 10.0.0.1(a) | "])),
            ),
            (
                "protocol is kept, and a named port must match it",
                svc(vec![
                    v1::ServicePort {
                        protocol: "UDP".into(),
                        ..sport("dns", 53, "dns")
                    },
                    v1::ServicePort {
                        protocol: "UDP".into(),
                        ..sport("udp-http", 80, "http")
                    },
                ]),
                vec![ports(
                    pod("a", "10.0.0.1"),
                    vec![
                        container_port("dns", 5353, "UDP"),
                        container_port("http", 8080, "TCP"),
                    ],
                )],
                Some(strs(&["dns:5353/UDP | 10.0.0.1(a) | "])),
            ),
            (
                "pod without the named port is left out of that port only",
                svc(vec![sport("http", 80, "http"), sport("metrics", 9100, "")]),
                vec![pod("a", "10.0.0.1"), ports(pod("b", "10.0.0.2"), vec![])],
                Some(strs(&[
                    "http:8080/TCP | 10.0.0.1(a) | ",
                    "metrics:9100/TCP | 10.0.0.1(a),10.0.0.2(b) | ",
                ])),
            ),
            (
                "pod resolving no port is not listed",
                http(),
                vec![pod("a", "10.0.0.1"), ports(pod("b", "10.0.0.2"), vec![])],
                Some(strs(&["http:8080/TCP | 10.0.0.1(a) | "])),
            ),
            (
                "different port numbers for the name: two subsets",
                http(),
                vec![
                    pod("a", "10.0.0.1"),
                    ports(pod("b", "10.0.0.2"), vec![container_port("http", 9090, "")]),
                    pod("c", "10.0.0.3"),
                ],
                Some(strs(&[
                    "http:8080/TCP | 10.0.0.1(a),10.0.0.3(c) | ",
                    "http:9090/TCP | 10.0.0.2(b) | ",
                ])),
            ),
            (
                "ports offered by the same pods share a subset",
                svc(vec![sport("https", 443, "8443"), sport("http", 80, "http")]),
                vec![pod("a", "10.0.0.1"), not_ready(pod("b", "10.0.0.2"))],
                Some(strs(&[
                    "http:8080/TCP,https:8443/TCP | 10.0.0.1(a) | 10.0.0.2(b)",
                ])),
            ),
            (
                "terminating, terminal and ip-less pods are excluded",
                http(),
                vec![
                    pod("a", "10.0.0.1"),
                    terminating(pod("t", "10.0.0.2")),
                    phase_of(pod("f", "10.0.0.3"), "Failed"),
                    phase_of(pod("s", "10.0.0.4"), "Succeeded"),
                    pod("noip", ""),
                    phase_of(pod("p", "10.0.0.5"), "Pending"),
                ],
                Some(strs(&["http:8080/TCP | 10.0.0.1(a),10.0.0.5(p) | "])),
            ),
            (
                "other namespace and non-matching labels are excluded",
                http(),
                vec![
                    in_namespace(pod("o", "10.0.0.2"), "other"),
                    relabel(pod("db", "10.0.0.3"), &[("app", "db")]),
                    pod("a", "10.0.0.1"),
                ],
                Some(strs(&["http:8080/TCP | 10.0.0.1(a) | "])),
            ),
            ("no pods: no subsets", http(), vec![], Some(vec![])),
            (
                "service without ports lists its pods without ports",
                svc(vec![]),
                vec![pod("a", "10.0.0.1"), not_ready(pod("b", "10.0.0.2"))],
                Some(strs(&[" | 10.0.0.1(a) | 10.0.0.2(b)"])),
            ),
            (
                "malformed target ports resolve for no pod",
                svc(vec![
                    sport("neg", 80, "-1"),
                    sport("big", 80, "70000"),
                    sport("huge", 80, "99999999999"),
                    sport("space", 80, " 80"),
                ]),
                vec![pod("a", "10.0.0.1")],
                Some(vec![]),
            ),
            (
                "no selector: None",
                svc_with(http(), |s| {
                    if let Some(spec) = s.spec.as_mut() {
                        spec.selector.clear();
                    }
                }),
                vec![pod("a", "10.0.0.1")],
                None,
            ),
            (
                "no spec: None",
                svc_with(http(), |s| s.spec = None),
                vec![pod("a", "10.0.0.1")],
                None,
            ),
        ];
        for (name, svc, pods, want) in cases {
            let got = desired(&svc, &pods).map(|e| summarize(&e));
            assert_eq!(got, want, "case: {name}");
            // Input order does not matter.
            let reversed: Vec<v1::Pod> = pods.iter().rev().cloned().collect();
            assert_eq!(
                desired(&svc, &reversed),
                desired(&svc, &pods),
                "case (reversed): {name}"
            );
        }
    }

    #[test]
    fn a_pods_hostname_is_published_under_the_service_its_subdomain_names() {
        let mut named = pod("a", "10.0.0.1");
        if let Some(spec) = named.spec.as_mut() {
            spec.hostname = "db-0".into();
            spec.subdomain = "web".into();
        }
        let mut elsewhere = pod("b", "10.0.0.2");
        if let Some(spec) = elsewhere.spec.as_mut() {
            spec.hostname = "db-1".into();
            spec.subdomain = "other".into();
        }
        let e = desired(&svc(vec![sport("http", 80, "http")]), &[named, elsewhere]);
        let hosts: Vec<(String, String)> = e
            .iter()
            .flat_map(|e| &e.subsets)
            .flat_map(|s| &s.addresses)
            .map(|a| (a.ip.clone(), a.hostname.clone()))
            .collect();
        assert_eq!(
            hosts,
            [
                ("10.0.0.1".to_string(), "db-0".to_string()),
                ("10.0.0.2".to_string(), String::new())
            ]
        );
    }

    #[test]
    fn desired_object_fields() {
        let e = desired(
            &svc(vec![sport("http", 80, "http")]),
            &[pod("a", "10.0.0.1")],
        );
        let want = v1::Endpoints {
            api_version: "v1".into(),
            kind: "Endpoints".into(),
            metadata: Some(v1::ObjectMeta {
                name: "web".into(),
                namespace: "default".into(),
                labels: labels(&[("team", "a")]),
                ..Default::default()
            }),
            subsets: vec![v1::EndpointSubset {
                addresses: vec![v1::EndpointAddress {
                    ip: "10.0.0.1".into(),
                    hostname: String::new(),
                    node_name: "node-1".into(),
                    target_ref: Some(v1::ObjectReference {
                        kind: "Pod".into(),
                        namespace: "default".into(),
                        name: "a".into(),
                        uid: "uid-a".into(),
                        ..Default::default()
                    }),
                }],
                not_ready_addresses: vec![],
                ports: vec![v1::EndpointPort {
                    name: "http".into(),
                    port: 8080,
                    protocol: "TCP".into(),
                }],
            }],
        };
        assert_eq!(e, Some(want));
    }

    #[test]
    fn up_to_date_table() {
        let s = svc(vec![sport("http", 80, "http")]);
        let pods = [pod("a", "10.0.0.1"), pod("b", "10.0.0.2")];
        let Some(want) = desired(&s, &pods) else {
            panic!("service with a selector must have endpoints");
        };
        let edit = |f: &dyn Fn(&mut v1::Endpoints)| {
            let mut e = want.clone();
            f(&mut e);
            e
        };
        let cases: Vec<(&str, v1::Endpoints, bool)> = vec![
            ("identical", want.clone(), true),
            (
                "other metadata (resourceVersion, annotations) does not matter",
                edit(&|e| {
                    let m = e.meta_mut();
                    m.resource_version = "42".into();
                    m.uid = "ep-uid".into();
                    m.annotations = labels(&[("note", "x")]);
                }),
                true,
            ),
            (
                "labels differ",
                edit(&|e| e.meta_mut().labels = labels(&[("team", "b")])),
                false,
            ),
            ("labels missing", edit(&|e| e.metadata = None), false),
            (
                "an address less",
                edit(&|e| {
                    e.subsets[0].addresses.pop();
                }),
                false,
            ),
            (
                "an address moved to not ready",
                edit(&|e| {
                    if let Some(a) = e.subsets[0].addresses.pop() {
                        e.subsets[0].not_ready_addresses.push(a);
                    }
                }),
                false,
            ),
            (
                "another port",
                edit(&|e| e.subsets[0].ports[0].port = 9090),
                false,
            ),
            ("no subsets", edit(&|e| e.subsets.clear()), false),
        ];
        for (name, current, want_up_to_date) in cases {
            assert_eq!(up_to_date(&current, &want), want_up_to_date, "case: {name}");
        }
        // After a pod turns unready, the old object is stale.
        let changed = [pod("a", "10.0.0.1"), not_ready(pod("b", "10.0.0.2"))];
        let Some(next) = desired(&s, &changed) else {
            panic!("service with a selector must have endpoints");
        };
        assert!(!up_to_date(&want, &next));
        assert!(up_to_date(&next, &next));
    }
}
