//! Namespace deletion: a deleted namespace is marked Terminating at once;
//! this sweep (on the store leader only) deletes the objects left in it,
//! pods gracefully, and removes the namespace once it is empty. Running
//! from the store leader means a replica dying half way loses nothing:
//! the next leader picks the sweep up.
//!
//! What to delete and when the namespace may go is decided by the pure
//! [`rules::sweep_namespace`]; this module only lists (this replica's
//! state, no barrier), deletes through [`Registry::delete`] and removes the
//! namespace through [`Registry::remove_namespace`], which checks again on
//! a fresh read.

use std::time::Duration;

use keelson_model::selector::{FieldSelector, LabelSelector};
use keelson_model::{meta_of, Kind, Object};

use crate::error::Result;
use crate::registry::{rules, Commit, DeleteOptions, ListOptions, Registry};

/// Pause between sweeps.
const SWEEP_INTERVAL_MS: u64 = 1000;

pub async fn run(registry: Registry, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_millis(SWEEP_INTERVAL_MS));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        if !registry.replica.is_leader() {
            continue;
        }
        if let Err(e) = sweep(&registry).await {
            tracing::debug!(error = %e, "sweep terminating namespaces");
        }
    }
}

async fn all(registry: &Registry, kind: Kind, ns: &str) -> Result<Vec<Object>> {
    let labels = LabelSelector::default();
    let fields = FieldSelector::default();
    Ok(registry
        .list(
            kind,
            ListOptions {
                namespace: ns,
                labels: &labels,
                fields: &fields,
                limit: 0,
                continue_token: "",
                local: true,
            },
        )
        .await?
        .items)
}

async fn sweep(registry: &Registry) -> Result<()> {
    for ns_obj in all(registry, Kind::Namespace, "").await? {
        let Some(meta) = meta_of(&ns_obj) else {
            continue;
        };
        if meta.deletion_timestamp.is_empty() {
            continue;
        }
        let ns = meta.name.clone();
        let mut left = Vec::new();
        for kind in Kind::ALL.into_iter().filter(|k| k.namespaced()) {
            left.extend(
                all(registry, kind, &ns)
                    .await?
                    .into_iter()
                    .map(|o| (kind, o)),
            );
        }
        let plan = rules::sweep_namespace(&ns_obj, &left);
        for (kind, name) in plan.delete {
            let allow = |_: &Object| Ok(());
            if let Err(e) = registry
                .delete(
                    kind,
                    &ns,
                    &name,
                    &DeleteOptions::default(),
                    Commit::Write,
                    &allow,
                )
                .await
            {
                tracing::debug!(namespace = %ns, kind = %kind, name = %name, error = %e, "delete object of a terminating namespace");
            }
        }
        // Custom resources go too; the namespace waits for those that
        // finalizers hold.
        let held = match crate::custom::remove_in_namespace(registry, &ns).await {
            Ok(held) => held,
            Err(e) => {
                tracing::debug!(namespace = %ns, error = %e, "delete custom resources of a terminating namespace");
                continue;
            }
        };
        if plan.remove && held == 0 {
            let opts = DeleteOptions {
                precondition_resource_version: meta.resource_version.clone(),
                ..Default::default()
            };
            if registry.remove_namespace(&ns, &opts).await? {
                tracing::info!(namespace = %ns, "namespace deleted");
            }
        }
    }
    Ok(())
}
