//! The Endpoints controller around [`keelson_controllers::endpoints::desired`]:
//! every Service with a selector gets an Endpoints object of the same name
//! listing its pods' addresses (ready and not ready apart); Endpoints whose
//! Service is gone (confirmed with a read, as caches may lag) are deleted.
//! Retried per Endpoints object (key `namespace/name`, the Service's):
//! a failed create, update (a conflict included), confirmation read or
//! delete is a failure; AlreadyExists on a create and NotFound on a delete
//! count as done.

use std::collections::HashMap;
use std::time::Duration;

use keelson_controllers::endpoints::{desired, up_to_date};
use keelson_model::selector::LabelSelector;
use keelson_proto::v1;
use keelson_sdk::{DeleteParams, Error, Resource};
use tokio::sync::watch;

use crate::controller::{Controller, PassCtx};
use crate::Ctx;

/// The Endpoints controller (no state of its own).
pub struct Endpoints;

impl Controller for Endpoints {
    const NAME: &'static str = "endpoints";
    const RESYNC: Duration = Duration::from_secs(5);

    fn changes(ctx: &Ctx) -> Vec<watch::Receiver<u64>> {
        vec![
            ctx.services.changes(),
            ctx.pods.changes(),
            ctx.endpoints.changes(),
        ]
    }

    async fn pass(&mut self, ctx: &Ctx, p: &mut PassCtx<'_>) {
        pass(ctx, p).await
    }
}

fn key(ns: &str, name: &str) -> String {
    format!("{ns}/{name}")
}

async fn pass(ctx: &Ctx, p: &mut PassCtx<'_>) {
    let pods = ctx.pods.snapshot();
    let mut by_ns: HashMap<&str, Vec<&v1::Pod>> = HashMap::new();
    for pod in pods.values() {
        by_ns
            .entry(pod.meta().namespace.as_str())
            .or_default()
            .push(pod);
    }
    let services = ctx.services.snapshot();
    let existing = ctx.endpoints.snapshot();
    for svc in services.values() {
        let m = svc.meta();
        let k = key(&m.namespace, &m.name);
        if !m.deletion_timestamp.is_empty() || !p.due(&k) {
            continue;
        }
        // Only the selected pods are copied for the pure function.
        let selector = svc
            .spec
            .as_ref()
            .filter(|s| !s.selector.is_empty())
            .map(|s| LabelSelector::from_map(&s.selector));
        let in_ns: Vec<v1::Pod> = match &selector {
            Some(sel) => by_ns
                .get(m.namespace.as_str())
                .into_iter()
                .flatten()
                .filter(|pod| sel.matches(&pod.meta().labels))
                .map(|pod| (*pod).clone())
                .collect(),
            None => Vec::new(),
        };
        let Some(mut want) = desired(svc, &in_ns) else {
            continue;
        };
        let current = existing.get(&k);
        if current.is_some_and(|cur| up_to_date(cur, &want)) {
            p.succeeded(&k);
            continue;
        }
        if !ctx.leading() {
            return;
        }
        let api = ctx.api::<v1::Endpoints>(&m.namespace);
        let r = match current {
            Some(cur) => {
                want.meta_mut().resource_version = cur.meta().resource_version.clone();
                want.meta_mut().uid = cur.meta().uid.clone();
                api.update(&want).await.map(drop)
            }
            None => match api.create(&want).await {
                Err(Error::AlreadyExists(_)) => Ok(()),
                r => r.map(drop),
            },
        };
        p.report(&k, r);
    }
    for ep in existing.values() {
        let m = ep.meta();
        let k = key(&m.namespace, &m.name);
        if services.contains_key(&k) || !m.deletion_timestamp.is_empty() || !p.due(&k) {
            continue;
        }
        if !ctx.leading() {
            return;
        }
        // The Service cache may lag the Endpoints cache: confirm it is gone.
        match ctx.api::<v1::Service>(&m.namespace).get(&m.name).await {
            Err(Error::NotFound(_)) => {}
            Ok(_) => {
                p.succeeded(&k);
                continue;
            }
            Err(e) => {
                p.failed(&k, e);
                continue;
            }
        }
        let params = DeleteParams {
            precondition_uid: m.uid.clone(),
            ..Default::default()
        };
        let r = match ctx
            .api::<v1::Endpoints>(&m.namespace)
            .delete(&m.name, &params)
            .await
        {
            Ok(_) | Err(Error::NotFound(_)) => Ok(()),
            Err(e) => Err(e),
        };
        p.report(&k, r);
    }
}
