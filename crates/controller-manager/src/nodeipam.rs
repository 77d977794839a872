//! The node IPAM controller around
//! [`keelson_controllers::nodeipam::reconcile`]: nodes without
//! `spec.podCIDR` get a subnet of the cluster CIDR (`--cluster-cidr`,
//! 10.244.0.0/16, a /24 each), written with the node's resourceVersion (a
//! conflict is retried on the newer copy). A node the range cannot serve
//! gets a `CIDRNotAvailable` warning event. Retried per node.

use std::time::Duration;

use keelson_controllers::nodeipam::{reconcile, Action};
use keelson_model::Kind;
use keelson_proto::v1;
use keelson_sdk::{Error, Involved, Resource};
use tokio::sync::watch;

use crate::controller::{kind_key, Controller, PassCtx};
use crate::Ctx;

/// The node IPAM controller (no state of its own).
pub struct NodeIpam;

impl Controller for NodeIpam {
    const NAME: &'static str = "nodeipam";
    const RESYNC: Duration = Duration::from_secs(5);

    fn changes(ctx: &Ctx) -> Vec<watch::Receiver<u64>> {
        vec![ctx.nodes.changes()]
    }

    async fn pass(&mut self, ctx: &Ctx, p: &mut PassCtx<'_>) {
        if !ctx.leading() {
            return;
        }
        let mut nodes: Vec<v1::Node> = ctx.nodes.list().iter().map(|n| (**n).clone()).collect();
        // Oldest first, so the order of allocation is the order of arrival.
        nodes.sort_by(|a, b| {
            (&a.meta().creation_timestamp, &a.meta().name)
                .cmp(&(&b.meta().creation_timestamp, &b.meta().name))
        });
        let pairs: Vec<(String, String)> = nodes
            .iter()
            .map(|n| {
                let cidr = n
                    .spec
                    .as_ref()
                    .map(|s| s.pod_cidr.clone())
                    .unwrap_or_default();
                (n.meta().name.clone(), cidr)
            })
            .collect();
        let o = &ctx.options;
        for a in reconcile(o.cluster_cidr, o.node_cidr_mask, &pairs) {
            match a {
                Action::Assign { node, cidr } => {
                    let key = kind_key(Kind::Node.name(), "", &node);
                    if !p.due(&key) {
                        continue;
                    }
                    let Some(mut n) = nodes.iter().find(|n| n.meta().name == node).cloned() else {
                        continue;
                    };
                    n.spec.get_or_insert_with(Default::default).pod_cidr = cidr.clone();
                    let r = match ctx.api::<v1::Node>("").update(&n).await {
                        Ok(_) => {
                            tracing::info!(node = %node, cidr = %cidr, "pod CIDR assigned");
                            Ok(())
                        }
                        Err(Error::NotFound(_)) => Ok(()),
                        Err(e) => Err(e),
                    };
                    p.report(&key, r);
                }
                Action::Exhausted { node } => {
                    if let Some(n) = nodes.iter().find(|n| n.meta().name == node) {
                        let key = kind_key(Kind::Node.name(), "", &node);
                        if p.due(&key) {
                            ctx.recorder.record(
                                Involved::of(n),
                                "Warning",
                                "CIDRNotAvailable",
                                &format!(
                                    "Node {node} status is now: CIDRNotAvailable (no /{} left in {})",
                                    o.node_cidr_mask, o.cluster_cidr
                                ),
                            );
                            p.failed(&key, Error::Other("no pod CIDR left".into()));
                        }
                    }
                }
            }
        }
    }
}
