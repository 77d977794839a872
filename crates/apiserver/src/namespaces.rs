//! Namespace deletion: a deleted namespace is marked Terminating at once;
//! this sweep (on the store leader only) deletes the objects left in it,
//! pods gracefully, and removes the namespace once it is empty. Running
//! from the store leader means a replica dying half way loses nothing:
//! the next leader picks the sweep up.

use std::time::Duration;

use keelson_model::selector::{FieldSelector, LabelSelector};
use keelson_model::{meta_of, Kind, Object};

use crate::error::Result;
use crate::registry::{DeleteOptions, ListOptions, Registry};

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
        let mut left = 0;
        for kind in Kind::ALL.into_iter().filter(|k| k.namespaced()) {
            for o in all(registry, kind, &ns).await? {
                left += 1;
                let Some(m) = meta_of(&o) else { continue };
                if !m.deletion_timestamp.is_empty() {
                    continue; // already on its way out
                }
                let name = m.name.clone();
                let allow = |_: &Object| Ok(());
                if let Err(e) = registry
                    .delete(kind, &ns, &name, &DeleteOptions::default(), &allow)
                    .await
                {
                    tracing::debug!(namespace = %ns, kind = %kind, name = %name, error = %e, "delete object of a terminating namespace");
                }
            }
        }
        if left == 0 {
            let rv = meta.resource_version.clone();
            let opts = DeleteOptions {
                precondition_resource_version: rv,
                ..Default::default()
            };
            // Finalizers on the namespace itself are honoured by removing
            // it only through the registry's own finalizer rule: with
            // none left, remove the key now.
            registry.remove_namespace(&ns, &opts).await?;
            tracing::info!(namespace = %ns, "namespace deleted");
        }
    }
    Ok(())
}
