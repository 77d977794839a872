//! Service rules for the runc runtime's pods: kube-proxy's nftables mode.
//! Each node programs one table of its own (`ip keelson-svc-<bridge>`):
//!
//! - a Service's `clusterIP` and port (TCP or UDP) DNAT to one of its
//!   ready endpoints, chosen at random (`numgen random`), for traffic from
//!   pods (prerouting) and from the node itself (output);
//! - a NodePort Service's `nodePort` on any of the node's own addresses
//!   (`fib daddr type local`) likewise, masqueraded (as kube-proxy does
//!   for externalTrafficPolicy Cluster; `route_localnet` lets a node
//!   address on loopback reach it);
//! - an endpoint reaching its own Service (hairpin) is masqueraded (the
//!   pod's bridge port has hairpin on), so the reply comes back through
//!   the node;
//! - a Service port with no ready endpoint rejects connections (TCP
//!   reset) rather than leaving them to time out;
//! - without br_netfilter (bridged packets skip the IP hooks, so a reply
//!   between two pods of one bridge would bypass the un-DNAT), pods'
//!   Service traffic is masqueraded (`masquerade_from`), as kube-proxy's
//!   masquerade-all does;
//! - `sessionAffinity: ClientIP` is not implemented (random balancing).
//!
//! The table is rewritten whole in one `nft -f` transaction whenever the
//! rules it would hold change (the Services and Endpoints caches wake
//! it), so a packet sees either the old rules or the new ones. The rule
//! text is a pure function of the caches ([`ruleset`]), tested alone.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use keelson_model::cidr::Cidr;
use keelson_proto::v1;
use keelson_sdk::watcher::object_key;
use keelson_sdk::Store;

/// Marks a packet for masquerading in postrouting.
const MASQ_MARK: u32 = 0x4000;

fn protocol_keyword(p: &str) -> Option<&'static str> {
    match p {
        "" | "TCP" => Some("tcp"),
        "UDP" => Some("udp"),
        _ => None,
    }
}

/// The nftables table name of the node whose bridge is `bridge`.
pub fn table_name(bridge: &str) -> String {
    format!("keelson-svc-{bridge}")
}

/// The whole table for these Services and Endpoints (`node`: this node,
/// whose endpoints come first in nothing here: every ready endpoint is
/// equally likely, as in kube-proxy).
pub fn ruleset(
    table: &str,
    services: &[Arc<v1::Service>],
    endpoints: &dyn Fn(&str) -> Option<Arc<v1::Endpoints>>,
    node: &str,
    masquerade_from: Option<Cidr>,
) -> String {
    let mut dispatch = String::new();
    let mut chains = String::new();
    let mut rejects: Vec<String> = Vec::new();
    let mut sorted: Vec<&Arc<v1::Service>> = services.iter().collect();
    sorted.sort_by_key(|s| object_key(s.as_ref()));
    let mut n = 0usize;
    for svc in sorted {
        let Some(spec) = &svc.spec else { continue };
        let vip = spec.cluster_ip.parse::<std::net::Ipv4Addr>().ok();
        let eps = endpoints(&object_key(svc.as_ref()));
        for port in &spec.ports {
            let Some(proto) = protocol_keyword(&port.protocol) else {
                continue;
            };
            let backends: Vec<SocketAddr> = crate::proxy::backends(svc, port, eps.as_deref(), node)
                .into_iter()
                .filter(|a| a.is_ipv4())
                .collect();
            let chain = format!("svc{n}");
            n += 1;
            if backends.is_empty() {
                if let Some(ip) = vip {
                    let verdict = if proto == "tcp" {
                        "reject with tcp reset"
                    } else {
                        "reject"
                    };
                    rejects.push(format!(
                        "ip daddr {ip} {proto} dport {} {verdict}",
                        port.port
                    ));
                }
                continue;
            }
            if let Some(ip) = vip {
                let _ = writeln!(
                    dispatch,
                    "    ip daddr {ip} {proto} dport {} goto {chain}",
                    port.port
                );
            }
            if port.node_port != 0 {
                let _ = writeln!(
                    dispatch,
                    "    fib daddr type local {proto} dport {} meta mark set meta mark | {MASQ_MARK:#x} goto {chain}",
                    port.node_port
                );
            }
            let _ = writeln!(chains, "  chain {chain} {{");
            if backends.len() == 1 {
                let _ = writeln!(chains, "    goto {chain}_0");
            } else {
                let arms: Vec<String> = (0..backends.len())
                    .map(|i| format!("{i} : goto {chain}_{i}"))
                    .collect();
                let _ = writeln!(
                    chains,
                    "    numgen random mod {} vmap {{ {} }}",
                    backends.len(),
                    arms.join(", ")
                );
            }
            let _ = writeln!(chains, "  }}");
            for (i, b) in backends.iter().enumerate() {
                let _ = writeln!(chains, "  chain {chain}_{i} {{");
                let _ = writeln!(
                    chains,
                    "    ip saddr {} meta mark set meta mark | {MASQ_MARK:#x}",
                    b.ip()
                );
                let _ = writeln!(chains, "    meta l4proto {proto} dnat to {b}");
                let _ = writeln!(chains, "  }}");
            }
        }
    }
    let mut t = String::new();
    // Create-then-delete makes the delete valid on a first run; the whole
    // file is one transaction.
    let _ = writeln!(
        t,
        "table ip {table} {{}}\ndelete table ip {table}\ntable ip {table} {{"
    );
    let _ = writeln!(t, "  chain services {{\n{dispatch}  }}");
    let _ = writeln!(
        t,
        "  chain prerouting {{\n    type nat hook prerouting priority dstnat; policy accept;\n    jump services\n  }}"
    );
    let _ = writeln!(
        t,
        "  chain output {{\n    type nat hook output priority -100; policy accept;\n    jump services\n  }}"
    );
    let all = masquerade_from
        .map(|c| format!("    ct status dnat ip saddr {c} masquerade\n"))
        .unwrap_or_default();
    let _ = writeln!(
        t,
        "  chain postrouting {{\n    type nat hook postrouting priority srcnat; policy accept;\n    meta mark & {MASQ_MARK:#x} == {MASQ_MARK:#x} masquerade\n{all}  }}"
    );
    let mut rejects_text = String::new();
    for r in &rejects {
        let _ = writeln!(rejects_text, "    {r}");
    }
    for (name, hook) in [
        ("no_endpoints_out", "output"),
        ("no_endpoints_fwd", "forward"),
    ] {
        let _ = writeln!(
            t,
            "  chain {name} {{\n    type filter hook {hook} priority filter; policy accept;\n{rejects_text}  }}"
        );
    }
    t.push_str(&chains);
    t.push_str("}\n");
    t
}

/// Keep the node's table in step with the Services and Endpoints until
/// the future is dropped (the table stays: pods keep their Services while
/// the agent restarts; [`remove`] takes it away).
pub async fn run(
    services: Store<v1::Service>,
    endpoints: Store<v1::Endpoints>,
    node: String,
    bridge: String,
    masquerade_from: Option<Cidr>,
) {
    services.wait_ready().await;
    endpoints.wait_ready().await;
    let table = table_name(&bridge);
    let mut svc_changes = services.changes();
    let mut ep_changes = endpoints.changes();
    let mut applied = String::new();
    let mut failing = false;
    loop {
        svc_changes.borrow_and_update();
        ep_changes.borrow_and_update();
        let text = ruleset(
            &table,
            &services.list(),
            &|k| endpoints.get(k),
            &node,
            masquerade_from,
        );
        if text != applied || failing {
            let began = Instant::now();
            let t = text.clone();
            match tokio::task::spawn_blocking(move || apply(&t)).await {
                Ok(Ok(())) => {
                    tracing::debug!(
                        took_ms = began.elapsed().as_millis() as u64,
                        "service rules applied"
                    );
                    applied = text;
                    failing = false;
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "cannot apply the service rules; retrying");
                    failing = true;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "apply the service rules");
                    failing = true;
                }
            }
        }
        tokio::select! {
            r = svc_changes.changed() => if r.is_err() { return },
            r = ep_changes.changed() => if r.is_err() { return },
            _ = tokio::time::sleep(Duration::from_secs(1)), if failing => {}
        }
    }
}

fn apply(text: &str) -> Result<(), String> {
    crate::network::run_stdin(std::process::Command::new("nft").args(["-f", "-"]), text)
}

/// Remove node `bridge`'s Service table.
pub fn remove(bridge: &str) {
    let t = table_name(bridge);
    let _ = apply(&format!("table ip {t} {{}}\ndelete table ip {t}\n"));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(name: &str, ip: &str, port: i32, node_port: i32) -> Arc<v1::Service> {
        Arc::new(v1::Service {
            metadata: Some(v1::ObjectMeta {
                name: name.into(),
                namespace: "default".into(),
                ..Default::default()
            }),
            spec: Some(v1::ServiceSpec {
                cluster_ip: ip.into(),
                r#type: if node_port != 0 {
                    "NodePort".into()
                } else {
                    "ClusterIP".into()
                },
                ports: vec![v1::ServicePort {
                    port,
                    node_port,
                    target_port: "8080".into(),
                    protocol: "TCP".into(),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        })
    }

    fn endpoints(name: &str, ready: &[&str], not_ready: &[&str]) -> Arc<v1::Endpoints> {
        let addr = |ip: &&str| v1::EndpointAddress {
            ip: ip.to_string(),
            ..Default::default()
        };
        Arc::new(v1::Endpoints {
            metadata: Some(v1::ObjectMeta {
                name: name.into(),
                namespace: "default".into(),
                ..Default::default()
            }),
            subsets: vec![v1::EndpointSubset {
                addresses: ready.iter().map(addr).collect(),
                not_ready_addresses: not_ready.iter().map(addr).collect(),
                ports: vec![v1::EndpointPort {
                    port: 8080,
                    protocol: "TCP".into(),
                    ..Default::default()
                }],
            }],
            ..Default::default()
        })
    }

    #[test]
    fn services_dnat_to_ready_endpoints_at_random() {
        let svcs = vec![
            service("web", "10.96.0.2", 80, 30001),
            service("empty", "10.96.0.3", 80, 0),
            service("headless", "None", 80, 0),
        ];
        let eps: std::collections::HashMap<String, Arc<v1::Endpoints>> = [
            (
                "default/web".to_string(),
                endpoints("web", &["10.244.0.2", "10.244.1.2"], &["10.244.0.9"]),
            ),
            (
                "default/empty".to_string(),
                endpoints("empty", &[], &["10.244.0.7"]),
            ),
        ]
        .into();
        let text = ruleset("t", &svcs, &|k| eps.get(k).cloned(), "n1", None);
        assert!(
            text.starts_with("table ip t {}\ndelete table ip t\ntable ip t {"),
            "{text}"
        );
        assert!(
            text.contains("ip daddr 10.96.0.2 tcp dport 80 goto svc"),
            "{text}"
        );
        assert!(
            text.contains(
                "fib daddr type local tcp dport 30001 meta mark set meta mark | 0x4000 goto svc"
            ),
            "{text}"
        );
        assert!(text.contains("numgen random mod 2 vmap"), "{text}");
        assert!(text.contains("dnat to 10.244.0.2:8080"), "{text}");
        assert!(text.contains("dnat to 10.244.1.2:8080"), "{text}");
        // Not ready: no rule; no ready endpoint: a reset.
        assert!(!text.contains("10.244.0.9"), "{text}");
        assert!(!text.contains("10.244.0.7"), "{text}");
        assert!(
            text.contains("ip daddr 10.96.0.3 tcp dport 80 reject with tcp reset"),
            "{text}"
        );
        // Hairpin: an endpoint to itself is masqueraded.
        assert!(
            text.contains("ip saddr 10.244.0.2 meta mark set meta mark | 0x4000"),
            "{text}"
        );
    }

    #[test]
    fn without_br_netfilter_pods_service_traffic_is_masqueraded() {
        let svcs = vec![service("web", "10.96.0.2", 80, 0)];
        let none = |_: &str| None;
        let cluster = Cidr::parse("10.244.0.0/16").unwrap();
        let text = ruleset("t", &svcs, &none, "n1", Some(cluster));
        assert!(
            text.contains("ct status dnat ip saddr 10.244.0.0/16 masquerade"),
            "{text}"
        );
        assert!(!ruleset("t", &svcs, &none, "n1", None).contains("ct status dnat"));
    }

    #[test]
    fn names() {
        assert_eq!(table_name("kb01"), "keelson-svc-kb01");
        assert_eq!(protocol_keyword(""), Some("tcp"));
        assert_eq!(protocol_keyword("UDP"), Some("udp"));
        assert_eq!(protocol_keyword("SCTP"), None);
    }
}
