//! The Endpoints loop around [`keelson_controllers::endpoints::desired`]:
//! every Service with a selector gets an Endpoints object of the same name
//! listing its pods' addresses (ready and not ready apart); Endpoints whose
//! Service is gone (confirmed with a read, as caches may lag) are deleted.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use keelson_controllers::endpoints::{desired, up_to_date};
use keelson_model::selector::LabelSelector;
use keelson_proto::v1;
use keelson_sdk::{DeleteParams, Error, Resource};

use crate::Ctx;

const RESYNC: Duration = Duration::from_secs(5);

pub async fn run(ctx: Arc<Ctx>) {
    let mut changes = vec![
        ctx.services.changes(),
        ctx.pods.changes(),
        ctx.endpoints.changes(),
    ];
    let mut leadership = ctx.leadership.clone();
    loop {
        if ctx
            .wait_for_work(&mut changes, &mut leadership, RESYNC)
            .await
        {
            pass(&ctx).await;
        }
    }
}

fn key(ns: &str, name: &str) -> String {
    format!("{ns}/{name}")
}

async fn pass(ctx: &Ctx) {
    let pods = ctx.pods.snapshot();
    let mut by_ns: HashMap<&str, Vec<&v1::Pod>> = HashMap::new();
    for p in pods.values() {
        by_ns
            .entry(p.meta().namespace.as_str())
            .or_default()
            .push(p);
    }
    let services = ctx.services.snapshot();
    let existing = ctx.endpoints.snapshot();
    for svc in services.values() {
        let m = svc.meta();
        if !m.deletion_timestamp.is_empty() {
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
                .filter(|p| sel.matches(&p.meta().labels))
                .map(|p| (*p).clone())
                .collect(),
            None => Vec::new(),
        };
        let Some(mut want) = desired(svc, &in_ns) else {
            continue;
        };
        let api = ctx.api::<v1::Endpoints>(&m.namespace);
        let r = match existing.get(&key(&m.namespace, &m.name)) {
            Some(cur) if up_to_date(cur, &want) => continue,
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
        if let Err(e) = r {
            tracing::debug!(service = %m.name, error = %e, "endpoints");
        }
        if !ctx.leading() {
            return;
        }
    }
    for ep in existing.values() {
        let m = ep.meta();
        if services.contains_key(&key(&m.namespace, &m.name)) || !m.deletion_timestamp.is_empty() {
            continue;
        }
        if !ctx.leading() {
            return;
        }
        // The Service cache may lag the Endpoints cache: confirm it is gone.
        match ctx.api::<v1::Service>(&m.namespace).get(&m.name).await {
            Err(Error::NotFound(_)) => {}
            _ => continue,
        }
        let p = DeleteParams {
            precondition_uid: m.uid.clone(),
            ..Default::default()
        };
        match ctx
            .api::<v1::Endpoints>(&m.namespace)
            .delete(&m.name, &p)
            .await
        {
            Ok(_) | Err(Error::NotFound(_)) => {}
            Err(e) => tracing::debug!(endpoints = %m.name, error = %e, "delete endpoints"),
        }
    }
}
