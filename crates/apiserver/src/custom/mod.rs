//! Custom resources: CustomResourceDefinitions and the kinds they define,
//! served over the Kubernetes HTTP API as JSON.
//!
//! A CRD is stored as JSON at
//! `/registry/apiextensions.k8s.io/customresourcedefinitions/<name>`; once
//! its names are accepted (its status says `Established`) every replica
//! serves its kind at `/apis/<group>/<version>/...` — create, get, list,
//! watch, update, patch (JSON merge and JSON patches; strategic merge
//! patches are refused as Kubernetes refuses them for custom resources),
//! delete and deletecollection, the `status` and `scale` subresources, tables with the
//! CRD's printer columns — and lists it in discovery and OpenAPI v3. Each
//! replica reads the definitions from its own state ([`Catalog`]), so a
//! CRD is served wherever it has been applied, within the replication
//! delay. Objects are checked against the version's schema (pruning,
//! defaults, validation: [`schema`]); a CRD's deletion removes its
//! objects; a namespace's deletion removes the namespace's objects of
//! every custom kind ([`remove_in_namespace`]).
//!
//! Not yet: conversion between versions other
//! than `None` (objects are served at every served version as stored,
//! with that version's apiVersion), validation rules (CEL), and the typed
//! gRPC API and SDK (custom resources are HTTP only).
//!
//! # Layout
//! - [`definition`]: a CRD's checks, defaults and status (pure).
//! - [`schema`]: structural schemas, pruning, defaults, validation (pure).
//! - [`columns`]: printer columns and their JSONPaths (pure).
//! - [`store`]: JSON objects in the store, and their metadata rules.
//! - [`watch`]: watch streams of JSON objects.
//! - [`http`]: the handlers, discovery and OpenAPI documents.

pub mod columns;
pub mod definition;
pub mod http;
pub mod schema;
pub mod store;
pub mod watch;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use keelson_proto::etcdserverpb as pb;
use serde_json::Value;

use crate::error::Result;
use crate::registry::{prefix_end, Registry};
use definition::{Column, Definition};

/// A resource the custom handlers serve: a custom kind at one version, or
/// the CustomResourceDefinitions themselves.
#[derive(Clone, Debug)]
pub struct Resource {
    pub group: String,
    pub version: String,
    pub plural: String,
    pub singular: String,
    pub kind: String,
    pub list_kind: String,
    pub namespaced: bool,
    /// Has a `status` subresource.
    pub status: bool,
    /// Has a `scale` subresource (its paths).
    pub scale: Option<definition::Scale>,
    pub columns: Vec<Column>,
    /// The version's schema and its validator (None for the CRDs).
    pub schema: Option<(Value, Arc<schema::Validator>)>,
    /// Sent as a `Warning` with every answer.
    pub deprecation_warning: Option<String>,
    /// Its definition is being deleted: nothing new is created.
    pub terminating: bool,
}

impl Resource {
    /// The CustomResourceDefinitions.
    pub fn definitions() -> Resource {
        Resource {
            group: definition::GROUP.into(),
            version: definition::VERSION.into(),
            plural: definition::PLURAL.into(),
            singular: definition::SINGULAR.into(),
            kind: definition::KIND.into(),
            list_kind: format!("{}List", definition::KIND),
            namespaced: false,
            status: true,
            scale: None,
            columns: vec![Column {
                name: "Created At".into(),
                type_: "string".into(),
                format: "date-time".into(),
                description: String::new(),
                priority: 0,
                json_path: ".metadata.creationTimestamp".into(),
            }],
            schema: None,
            deprecation_warning: None,
            terminating: false,
        }
    }

    pub fn is_definitions(&self) -> bool {
        self.group == definition::GROUP
    }

    pub fn api_version(&self) -> String {
        format!("{}/{}", self.group, self.version)
    }

    /// `crontabs.stable.example.com`, as messages name the resource.
    pub fn qualified(&self) -> String {
        format!("{}.{}", self.plural, self.group)
    }

    pub fn prefix(&self, ns: &str) -> String {
        store::prefix(&self.group, &self.plural, ns)
    }

    pub fn key(&self, ns: &str, name: &str) -> String {
        store::key(&self.group, &self.plural, ns, name)
    }
}

/// A definition with its compiled validators, by version.
#[derive(Debug)]
pub struct Entry {
    pub definition: Definition,
    pub mod_revision: i64,
    validators: BTreeMap<String, Arc<schema::Validator>>,
}

impl Entry {
    fn new(crd: &Value, mod_revision: i64) -> Entry {
        let definition = definition::parse(crd);
        let validators = definition
            .versions
            .iter()
            .filter_map(|v| {
                schema::Validator::new(&v.schema)
                    .map_err(|e| {
                        tracing::warn!(crd = %definition.name, version = %v.name, error = %e, "a stored schema does not compile");
                    })
                    .ok()
                    .map(|val| (v.name.clone(), Arc::new(val)))
            })
            .collect();
        Entry {
            definition,
            mod_revision,
            validators,
        }
    }

    /// The resource this definition serves at `version`.
    pub fn resource(&self, version: &str) -> Option<Resource> {
        let d = &self.definition;
        let v = d.served(version)?;
        let validator = self.validators.get(version)?.clone();
        Some(Resource {
            group: d.group.clone(),
            version: v.name.clone(),
            plural: d.names.plural.clone(),
            singular: d.names.singular.clone(),
            kind: d.names.kind.clone(),
            list_kind: d.names.list_kind.clone(),
            namespaced: d.namespaced,
            status: v.status,
            scale: v.scale.clone(),
            columns: columns::effective(&v.columns),
            schema: Some((v.schema.clone(), validator)),
            deprecation_warning: v.deprecation_warning.clone(),
            terminating: d.terminating,
        })
    }
}

/// The definitions this replica's state holds, reread when the store has
/// moved on (only changed definitions are parsed again).
#[derive(Default)]
pub struct Catalog {
    cached: Mutex<(i64, Arc<Vec<Arc<Entry>>>)>,
}

impl Catalog {
    /// Every stored definition, as of this replica's latest revision.
    pub fn load(&self, registry: &Registry) -> Result<Arc<Vec<Arc<Entry>>>> {
        let revision = registry.revision();
        let previous = match self.cached.lock() {
            Ok(c) if c.0 == revision => return Ok(c.1.clone()),
            Ok(c) => c.1.clone(),
            Err(_) => Arc::new(Vec::new()),
        };
        let prefix = Resource::definitions().prefix("");
        let kvs = {
            let sm = registry.replica.sm().read();
            sm.range(&pb::RangeRequest {
                key: prefix.as_bytes().to_vec(),
                range_end: prefix_end(prefix.as_bytes()),
                ..Default::default()
            })?
            .kvs
        };
        let mut entries = Vec::with_capacity(kvs.len());
        for kv in &kvs {
            let name = String::from_utf8_lossy(&kv.key[prefix.len()..]).to_string();
            let same = previous
                .iter()
                .find(|e| e.definition.name == name && e.mod_revision == kv.mod_revision);
            match same {
                Some(e) => entries.push(e.clone()),
                None => match store::decode(kv) {
                    Ok(v) => entries.push(Arc::new(Entry::new(&v, kv.mod_revision))),
                    Err(e) => tracing::warn!(crd = %name, error = %e, "an unreadable definition"),
                },
            }
        }
        let entries = Arc::new(entries);
        if let Ok(mut c) = self.cached.lock() {
            *c = (revision, entries.clone());
        }
        Ok(entries)
    }

    /// The resource served at `group/version/plural`, if any: the CRDs
    /// themselves, or an established custom kind.
    pub fn resolve(
        &self,
        registry: &Registry,
        group: &str,
        version: &str,
        plural: &str,
    ) -> Result<Option<Resource>> {
        if group == definition::GROUP {
            return Ok(
                (version == definition::VERSION && plural == definition::PLURAL)
                    .then(Resource::definitions),
            );
        }
        Ok(self
            .load(registry)?
            .iter()
            .filter(|e| e.definition.established && e.definition.group == group)
            .find(|e| e.definition.names.plural == plural)
            .and_then(|e| e.resource(version)))
    }
}

/// The established definitions of `entries`.
pub fn established(entries: &[Arc<Entry>]) -> impl Iterator<Item = &Definition> {
    entries
        .iter()
        .map(|e| &e.definition)
        .filter(|d| d.established)
}

/// Remove the objects of every namespaced custom kind in `ns` (a
/// terminating namespace); returns how many are held by finalizers (they
/// are marked deleted; the namespace waits for them).
pub async fn remove_in_namespace(registry: &Registry, ns: &str) -> Result<usize> {
    let prefix = Resource::definitions().prefix("");
    let page = registry.list_json(&prefix, 0, "", true, &|_| true).await?;
    let mut held = 0;
    for crd in page.items {
        let d = definition::parse(&crd);
        if !d.namespaced || d.names.plural.is_empty() {
            continue;
        }
        let objects = registry
            .list_json(
                &store::prefix(&d.group, &d.names.plural, ns),
                0,
                "",
                true,
                &|_| true,
            )
            .await?;
        for o in objects.items {
            let name = store::meta_str(&o, "name").to_string();
            let key = store::key(&d.group, &d.names.plural, ns, &name);
            let Some(cur) = registry.read_json(&key, false).await? else {
                continue;
            };
            let value = match store::DeleteStep::of(&cur.value, &store::now()) {
                store::DeleteStep::Remove => None,
                store::DeleteStep::Mark(m) => {
                    held += 1;
                    Some(m)
                }
                store::DeleteStep::Unchanged => {
                    held += 1;
                    continue;
                }
            };
            let written = registry
                .swap_json(&key, cur.mod_revision, value.as_ref())
                .await?;
            if written.is_none() {
                // It changed meanwhile: the next sweep looks again.
                held += 1;
            }
        }
    }
    Ok(held)
}
