//! The node IPAM controller's core (Kubernetes' range allocator): every
//! node without `spec.podCIDR` gets the first subnet of the cluster CIDR
//! (prefix length `node_mask`, /24 by default) that no node holds. A
//! node's CIDR is never changed once set (its pods have addresses in it),
//! and a subnet is free again only when no node holds it any more.

use std::collections::BTreeSet;

use keelson_model::cidr::Cidr;

/// What to do for one node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Set the node's `spec.podCIDR`.
    Assign { node: String, cidr: String },
    /// No subnet is left (reported as an event, as Kubernetes'
    /// `CIDRNotAvailable`).
    Exhausted { node: String },
}

/// `nodes` are (name, current podCIDR) pairs; the actions for those with
/// none, in the order given.
pub fn reconcile(cluster: Cidr, node_mask: u8, nodes: &[(String, String)]) -> Vec<Action> {
    let taken: BTreeSet<Cidr> = nodes
        .iter()
        .filter_map(|(_, c)| Cidr::parse(c).ok())
        .collect();
    let mut out = Vec::new();
    let mut next = 0u32;
    let mut given: BTreeSet<Cidr> = BTreeSet::new();
    for (node, cidr) in nodes {
        if !cidr.is_empty() {
            continue;
        }
        let free = loop {
            match cluster.subnet(node_mask, next) {
                None => break None,
                Some(s) => {
                    next += 1;
                    if !taken.iter().any(|t| t.overlaps(&s)) && !given.contains(&s) {
                        break Some(s);
                    }
                }
            }
        };
        match free {
            Some(s) => {
                given.insert(s);
                out.push(Action::Assign {
                    node: node.clone(),
                    cidr: s.to_string(),
                });
            }
            None => out.push(Action::Exhausted { node: node.clone() }),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(name: &str, cidr: &str) -> (String, String) {
        (name.into(), cidr.into())
    }

    #[test]
    fn nodes_without_a_cidr_get_the_first_free_subnets() {
        let cluster = Cidr::parse("10.244.0.0/16").unwrap();
        let nodes = [
            n("a", "10.244.0.0/24"),
            n("b", ""),
            n("c", "127.0.100.1/32"),
            n("d", ""),
            n("e", "10.244.2.0/24"),
            n("f", ""),
        ];
        assert_eq!(
            reconcile(cluster, 24, &nodes),
            [
                Action::Assign {
                    node: "b".into(),
                    cidr: "10.244.1.0/24".into()
                },
                Action::Assign {
                    node: "d".into(),
                    cidr: "10.244.3.0/24".into()
                },
                Action::Assign {
                    node: "f".into(),
                    cidr: "10.244.4.0/24".into()
                },
            ]
        );
        // Everyone has one: nothing to do.
        assert!(reconcile(cluster, 24, &[n("a", "10.244.0.0/24")]).is_empty());
    }

    #[test]
    fn an_exhausted_range_is_reported() {
        let cluster = Cidr::parse("10.0.0.0/23").unwrap();
        let nodes = [n("a", ""), n("b", ""), n("c", "")];
        assert_eq!(
            reconcile(cluster, 24, &nodes),
            [
                Action::Assign {
                    node: "a".into(),
                    cidr: "10.0.0.0/24".into()
                },
                Action::Assign {
                    node: "b".into(),
                    cidr: "10.0.1.0/24".into()
                },
                Action::Exhausted { node: "c".into() },
            ]
        );
    }
}
