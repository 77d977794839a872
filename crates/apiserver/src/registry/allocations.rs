//! Service cluster IPs and node ports, as kube-apiserver allocates them:
//! a Service of type ClusterIP, NodePort or LoadBalancer without a
//! `clusterIP` gets the first free address of the service CIDR (10.96.0.0/16
//! by default; the network address and the first host, Kubernetes' own
//! `kubernetes` Service's, are never given), `clusterIP: None` is headless,
//! an address asked for must be in the range and free; each port of a
//! NodePort or LoadBalancer Service without a `nodePort` gets the first
//! free one of 30000-32767.
//!
//! Each allocation is a key of its own (`/registry/ranges/serviceips/<ip>`,
//! `/registry/ranges/servicenodeports/<port>`, the value naming the
//! Service) created in the same transaction as the Service, on the
//! condition that it is absent, and deleted with it: two Services can
//! never hold one address, and an address is free again only once its
//! Service is gone. An update keeps what the Service holds when it omits
//! it (as Kubernetes does), refuses a changed `clusterIP` (immutable), and
//! takes and releases node ports as its ports change.
//!
//! Pure: the registry reads what is taken and runs the transaction.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use keelson_model::cidr::Cidr;
use keelson_proto::v1;

/// What is wrong, one problem per entry (the registry makes the
/// Invalid error naming the Service).
pub type Problems = Vec<String>;

pub const IP_PREFIX: &str = "/registry/ranges/serviceips/";
pub const PORT_PREFIX: &str = "/registry/ranges/servicenodeports/";
pub const NODE_PORT_MIN: i32 = 30000;
pub const NODE_PORT_MAX: i32 = 32767;

/// The service CIDR when none is given (kube-apiserver's usual one).
pub const DEFAULT_SERVICE_CIDR: Cidr = Cidr {
    net: Ipv4Addr::new(10, 96, 0, 0),
    len: 16,
};

fn invalid(field: &str, value: &str, why: &str) -> Problems {
    vec![format!("{field}: Invalid value {value:?}: {why}")]
}

fn wants_cluster_ip(s: &v1::ServiceSpec) -> bool {
    matches!(
        s.r#type.as_str(),
        "" | "ClusterIP" | "NodePort" | "LoadBalancer"
    )
}

fn wants_node_ports(s: &v1::ServiceSpec) -> bool {
    matches!(s.r#type.as_str(), "NodePort" | "LoadBalancer")
}

/// The allocation keys `svc` holds.
pub fn held(svc: &v1::Service) -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    let Some(s) = &svc.spec else {
        return keys;
    };
    if let Ok(ip) = s.cluster_ip.parse::<Ipv4Addr>() {
        keys.insert(format!("{IP_PREFIX}{ip}"));
    }
    for p in &s.ports {
        if p.node_port != 0 {
            keys.insert(format!("{PORT_PREFIX}{}", p.node_port));
        }
    }
    keys
}

/// Fill in `svc`'s cluster IP and node ports. `old` is the stored Service
/// of an update; `taken_ips` and `taken_ports` are what the store's
/// allocation keys hold (the old Service's own among them).
pub fn assign(
    svc: &mut v1::Service,
    old: Option<&v1::Service>,
    cidr: Cidr,
    taken_ips: &BTreeSet<Ipv4Addr>,
    taken_ports: &BTreeSet<i32>,
) -> Result<(), Problems> {
    let old_spec = old.and_then(|o| o.spec.clone()).unwrap_or_default();
    let Some(s) = svc.spec.as_mut() else {
        return Ok(());
    };
    let own_ips: BTreeSet<Ipv4Addr> = old_spec.cluster_ip.parse().into_iter().collect();
    let own_ports: BTreeSet<i32> = old_spec.ports.iter().map(|p| p.node_port).collect();
    // The cluster IP.
    if old.is_some() {
        if s.cluster_ip.is_empty() {
            s.cluster_ip = old_spec.cluster_ip.clone();
        } else if s.cluster_ip != old_spec.cluster_ip && !old_spec.cluster_ip.is_empty() {
            return Err(invalid(
                "spec.clusterIP",
                &s.cluster_ip,
                "field is immutable",
            ));
        }
    }
    if wants_cluster_ip(s) {
        match s.cluster_ip.as_str() {
            "None" => {}
            "" => {
                let first = cidr
                    .pod_addresses()
                    .find(|ip| !taken_ips.contains(ip))
                    .ok_or_else(|| {
                        vec![format!(
                            "spec.clusterIP: Internal error: failed to allocate a serviceIP: range {cidr} is full"
                        )]
                    })?;
                s.cluster_ip = first.to_string();
            }
            asked => {
                let ip: Ipv4Addr = asked.parse().map_err(|_| {
                    invalid(
                        "spec.clusterIP",
                        asked,
                        "must be empty, 'None' or a valid IP address",
                    )
                })?;
                if !cidr.contains(ip) || cidr.network() == ip || cidr.gateway() == Some(ip) {
                    return Err(invalid(
                        "spec.clusterIP",
                        asked,
                        &format!("provided IP is not in the valid range. The range of valid IPs is {cidr}"),
                    ));
                }
                if taken_ips.contains(&ip) && !own_ips.contains(&ip) {
                    return Err(invalid(
                        "spec.clusterIP",
                        asked,
                        "provided IP is already allocated",
                    ));
                }
            }
        }
    } else if !s.cluster_ip.is_empty() && s.cluster_ip != "None" && old.is_none() {
        return Err(invalid(
            "spec.clusterIP",
            &s.cluster_ip,
            "may not be set for a Service of type ExternalName",
        ));
    }
    // Node ports.
    // (A nodePort on a ClusterIP Service is refused by validation.)
    if !wants_node_ports(s) {
        return Ok(());
    }
    // An update that omits a port's nodePort keeps the old one of the same
    // port number and protocol.
    for p in s.ports.iter_mut() {
        if p.node_port == 0 {
            if let Some(o) = old_spec
                .ports
                .iter()
                .find(|o| o.port == p.port && o.protocol == p.protocol && o.node_port != 0)
            {
                p.node_port = o.node_port;
            }
        }
    }
    let mut used: BTreeSet<i32> = BTreeSet::new();
    for (i, p) in s.ports.iter().enumerate() {
        if p.node_port == 0 {
            continue;
        }
        if (taken_ports.contains(&p.node_port) && !own_ports.contains(&p.node_port))
            || !used.insert(p.node_port)
        {
            return Err(invalid(
                &format!("spec.ports[{i}].nodePort"),
                &p.node_port.to_string(),
                "provided port is already allocated",
            ));
        }
    }
    let mut next = NODE_PORT_MIN;
    for p in s.ports.iter_mut() {
        if p.node_port != 0 {
            continue;
        }
        while next <= NODE_PORT_MAX
            && ((taken_ports.contains(&next) && !own_ports.contains(&next)) || used.contains(&next))
        {
            next += 1;
        }
        if next > NODE_PORT_MAX {
            return Err(vec![
                "spec.ports: Internal error: failed to allocate a nodePort: range 30000-32767 is full"
                    .into(),
            ]);
        }
        p.node_port = next;
        used.insert(next);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(ty: &str, ip: &str, ports: &[(i32, i32)]) -> v1::Service {
        v1::Service {
            spec: Some(v1::ServiceSpec {
                r#type: ty.into(),
                cluster_ip: ip.into(),
                ports: ports
                    .iter()
                    .map(|(port, node_port)| v1::ServicePort {
                        port: *port,
                        node_port: *node_port,
                        protocol: "TCP".into(),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn ips(v: &[&str]) -> BTreeSet<Ipv4Addr> {
        v.iter().map(|s| s.parse().unwrap()).collect()
    }

    const CIDR: Cidr = DEFAULT_SERVICE_CIDR;

    #[test]
    fn cluster_ips_are_the_first_free_ones_and_never_shared() {
        let (no_ips, no_ports): (BTreeSet<Ipv4Addr>, BTreeSet<i32>) =
            (BTreeSet::new(), BTreeSet::new());
        let mut a = svc("ClusterIP", "", &[(80, 0)]);
        assign(&mut a, None, CIDR, &no_ips, &no_ports).unwrap();
        assert_eq!(a.spec.as_ref().unwrap().cluster_ip, "10.96.0.2");
        let mut b = svc("ClusterIP", "", &[(80, 0)]);
        assign(
            &mut b,
            None,
            CIDR,
            &ips(&["10.96.0.2", "10.96.0.3"]),
            &no_ports,
        )
        .unwrap();
        assert_eq!(b.spec.as_ref().unwrap().cluster_ip, "10.96.0.4");
        assert_eq!(
            held(&b),
            ["/registry/ranges/serviceips/10.96.0.4".to_string()].into()
        );
        // Asked for: in range and free.
        let mut c = svc("", "10.96.0.2", &[(80, 0)]);
        let e = assign(&mut c, None, CIDR, &ips(&["10.96.0.2"]), &no_ports).unwrap_err();
        assert!(e.join(" ").contains("already allocated"), "{e:?}");
        let mut d = svc("", "10.0.0.9", &[(80, 0)]);
        let e = assign(&mut d, None, CIDR, &no_ips, &no_ports).unwrap_err();
        assert!(e.join(" ").contains("not in the valid range"), "{e:?}");
        // Headless.
        let mut h = svc("ClusterIP", "None", &[(80, 0)]);
        assign(&mut h, None, CIDR, &no_ips, &no_ports).unwrap();
        assert!(held(&h).is_empty());
        // Full.
        let small = Cidr::parse("10.0.0.0/30").unwrap();
        let mut f = svc("", "", &[(80, 0)]);
        let e = assign(&mut f, None, small, &ips(&["10.0.0.2"]), &no_ports).unwrap_err();
        assert!(e.join(" ").contains("full"), "{e:?}");
    }

    #[test]
    fn updates_keep_what_they_omit_and_cannot_change_the_ip() {
        let no_ports: BTreeSet<i32> = BTreeSet::new();
        let old = svc("NodePort", "10.96.0.7", &[(80, 30001)]);
        let taken_ips = ips(&["10.96.0.7"]);
        let taken_ports: BTreeSet<i32> = [30001].into();
        let mut new = svc("NodePort", "", &[(80, 0), (81, 0)]);
        new.spec.as_mut().unwrap().ports[1].protocol = "TCP".into();
        assign(&mut new, Some(&old), CIDR, &taken_ips, &taken_ports).unwrap();
        let s = new.spec.unwrap();
        assert_eq!(s.cluster_ip, "10.96.0.7");
        assert_eq!(s.ports[0].node_port, 30001);
        assert_eq!(s.ports[1].node_port, 30000);
        let mut moved = svc("NodePort", "10.96.0.8", &[(80, 0)]);
        let e = assign(&mut moved, Some(&old), CIDR, &taken_ips, &no_ports).unwrap_err();
        assert!(e.join(" ").contains("immutable"), "{e:?}");
    }

    #[test]
    fn node_ports_are_free_ones_and_never_shared() {
        let (no_ips, no_ports): (BTreeSet<Ipv4Addr>, BTreeSet<i32>) =
            (BTreeSet::new(), BTreeSet::new());
        let taken: BTreeSet<i32> = [30000, 30002].into();
        let mut a = svc("NodePort", "", &[(80, 0), (443, 0)]);
        assign(&mut a, None, CIDR, &no_ips, &taken).unwrap();
        let ports: Vec<i32> = a
            .spec
            .as_ref()
            .unwrap()
            .ports
            .iter()
            .map(|p| p.node_port)
            .collect();
        assert_eq!(ports, [30001, 30003]);
        let mut b = svc("NodePort", "", &[(80, 30002)]);
        let e = assign(&mut b, None, CIDR, &no_ips, &taken).unwrap_err();
        assert!(e.join(" ").contains("nodePort"), "{e:?}");
        // A ClusterIP Service gets none.
        let mut c = svc("ClusterIP", "", &[(80, 0)]);
        assign(&mut c, None, CIDR, &no_ips, &no_ports).unwrap();
        assert_eq!(c.spec.unwrap().ports[0].node_port, 0);
    }
}
