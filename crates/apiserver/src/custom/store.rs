//! Objects kept as JSON in the store (custom resources and their
//! definitions) at `/registry/<group>/<plural>/[<namespace>/]<name>`:
//! reads, lists in pages at one revision, and writes as transactions that
//! compare what was read (creation: the key absent and the namespace
//! unchanged; update and delete: the key's mod revision). The stored JSON
//! has no resourceVersion; reads set it from the key's mod revision.
//!
//! The metadata rules of a write are pure ([`prepare_create`],
//! [`merge_update`], [`DeleteStep`]): names, uids, timestamps,
//! `generation` (bumped when anything but metadata and status changes),
//! finalizers (a delete of an object with finalizers marks it; the update
//! that removes the last one removes it).

use std::time::SystemTime;

use keelson_model::validation::{is_dns1123_subdomain, is_label_key, is_label_value};
use keelson_proto::etcdserverpb as pb;
use keelson_proto::mvccpb;
use serde_json::{json, Value};

use crate::error::{Error, Result};
use crate::registry::{
    compare_absent, compare_mod, delete_op, hex, prefix_end, put_op, unhex, Registry,
};

/// Keys read per step of a list.
const LIST_CHUNK_KEYS: i64 = 500;
/// The most bytes of annotations an object carries (Kubernetes' limit).
const ANNOTATIONS_BYTES_MAX: usize = 256 * 1024;

/// An object read from the store.
#[derive(Clone, Debug, PartialEq)]
pub struct Stored {
    pub value: Value,
    pub mod_revision: i64,
}

/// The key prefix of a resource (`/registry/<group>/<plural>/`), or of
/// its objects in one namespace.
pub fn prefix(group: &str, plural: &str, ns: &str) -> String {
    if ns.is_empty() {
        format!("/registry/{group}/{plural}/")
    } else {
        format!("/registry/{group}/{plural}/{ns}/")
    }
}

pub fn key(group: &str, plural: &str, ns: &str, name: &str) -> String {
    format!("{}{name}", prefix(group, plural, ns))
}

/// A stored value with its resourceVersion.
pub fn decode(kv: &mvccpb::KeyValue) -> Result<Value> {
    let mut v: Value = serde_json::from_slice(&kv.value).map_err(|e| {
        Error::Internal(format!("decode {}: {e}", String::from_utf8_lossy(&kv.key)))
    })?;
    set_resource_version(&mut v, kv.mod_revision);
    Ok(v)
}

pub fn set_resource_version(v: &mut Value, rev: i64) {
    if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        m.insert("resourceVersion".into(), json!(rev.to_string()));
    }
}

fn encode(v: &Value) -> Vec<u8> {
    let mut v = v.clone();
    if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("resourceVersion");
    }
    v.to_string().into_bytes()
}

pub fn meta_str<'a>(v: &'a Value, field: &str) -> &'a str {
    v.get("metadata")
        .and_then(|m| m.get(field))
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// An object's labels.
pub fn labels(v: &Value) -> std::collections::BTreeMap<String, String> {
    v.pointer("/metadata/labels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, x)| x.as_str().map(|s| (k.clone(), s.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

/// What is generated for a new object.
pub struct Generated {
    pub uid: String,
    pub name_suffix: String,
    pub now: String,
}

/// The metadata's problems: name, labels, annotations, finalizers.
pub fn metadata_problems(v: &Value) -> Vec<String> {
    let mut p = Vec::new();
    let name = meta_str(v, "name");
    if name.is_empty() {
        p.push("metadata.name: Required value: name or generateName is required".to_string());
    } else if !is_dns1123_subdomain(name) {
        p.push(format!(
            "metadata.name: Invalid value: {name:?}: a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character"
        ));
    }
    for (k, val) in v
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        if !is_label_key(k) {
            p.push(format!(
                "metadata.labels: Invalid value: {k:?}: not a label key"
            ));
        }
        match val.as_str() {
            Some(s) if is_label_value(s) => {}
            _ => p.push(format!(
                "metadata.labels: Invalid value: {val}: not a label value"
            )),
        }
    }
    let mut annotation_bytes = 0;
    for (k, val) in v
        .pointer("/metadata/annotations")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        if !is_label_key(k) {
            p.push(format!(
                "metadata.annotations: Invalid value: {k:?}: not an annotation key"
            ));
        }
        match val.as_str() {
            Some(s) => annotation_bytes += k.len() + s.len(),
            None => p.push(format!(
                "metadata.annotations: Invalid value: {val}: must be a string"
            )),
        }
    }
    if annotation_bytes > ANNOTATIONS_BYTES_MAX {
        p.push(format!(
            "metadata.annotations: Too long: must have at most {ANNOTATIONS_BYTES_MAX} bytes"
        ));
    }
    for (i, f) in v
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        if !f.as_str().is_some_and(is_label_key) {
            p.push(format!(
                "metadata.finalizers[{i}]: Invalid value: {f}: a finalizer is a qualified name"
            ));
        }
    }
    p
}

/// A new object's metadata as the server sets it: the name (from
/// `generateName` when there is none), the namespace, uid,
/// creationTimestamp and generation 1; what a client may not set
/// (resourceVersion, deletion, selfLink) dropped; `status` dropped when
/// the resource has a status subresource.
pub fn prepare_create(
    v: &mut Value,
    ns: &str,
    drop_status: bool,
    g: &Generated,
) -> std::result::Result<(), Vec<String>> {
    let Some(obj) = v.as_object_mut() else {
        return Err(vec!["the body must be a JSON object".to_string()]);
    };
    if drop_status {
        obj.remove("status");
    }
    let meta = obj
        .entry("metadata")
        .or_insert_with(|| json!({}))
        .as_object_mut()
        .ok_or_else(|| vec!["metadata: Invalid value: must be an object".to_string()])?;
    let name = meta.get("name").and_then(Value::as_str).unwrap_or("");
    if name.is_empty() {
        if let Some(prefix) = meta
            .get("generateName")
            .and_then(Value::as_str)
            .filter(|p| !p.is_empty())
        {
            let generated = format!("{prefix}{}", g.name_suffix);
            meta.insert("name".into(), json!(generated));
        }
    }
    if ns.is_empty() {
        meta.remove("namespace");
    } else {
        meta.insert("namespace".into(), json!(ns));
    }
    meta.insert("uid".into(), json!(g.uid));
    meta.insert("creationTimestamp".into(), json!(g.now));
    meta.insert("generation".into(), json!(1));
    for f in [
        "resourceVersion",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "selfLink",
        "managedFields",
    ] {
        meta.remove(f);
    }
    let problems = metadata_problems(v);
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

/// Which part of an object an update writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    /// Everything but the status (kept from the stored object) when the
    /// resource has a status subresource; everything when it has none.
    Main { status_subresource: bool },
    /// The status only (`.../status`).
    Status,
}

fn without(v: &Value, fields: &[&str]) -> Value {
    let mut v = v.clone();
    if let Some(o) = v.as_object_mut() {
        for f in fields {
            o.remove(*f);
        }
    }
    v
}

/// The object an update stores: `new` (the client's) merged with `old`
/// (the stored one) as `part` says, the server's metadata fields kept,
/// `generation` bumped when the spec (anything but metadata, and status
/// with a status subresource) changed.
pub fn merge_update(old: &Value, new: &Value, part: Part) -> Value {
    let mut out = match part {
        Part::Status => {
            let mut o = old.clone();
            match (o.as_object_mut(), new.get("status")) {
                (Some(m), Some(s)) => {
                    m.insert("status".into(), s.clone());
                }
                (Some(m), None) => {
                    m.remove("status");
                }
                _ => {}
            }
            return o;
        }
        Part::Main { status_subresource } => {
            let mut o = new.clone();
            if status_subresource {
                if let Some(m) = o.as_object_mut() {
                    match old.get("status") {
                        Some(s) => m.insert("status".into(), s.clone()),
                        None => m.remove("status"),
                    };
                }
            }
            o
        }
    };
    let spec_fields: &[&str] = match part {
        Part::Main {
            status_subresource: true,
        } => &["metadata", "status"],
        _ => &["metadata"],
    };
    let changed = without(old, spec_fields) != without(&out, spec_fields);
    let generation = old
        .pointer("/metadata/generation")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    if let (Some(m), Some(old_meta)) = (
        out.get_mut("metadata").and_then(Value::as_object_mut),
        old.get("metadata").and_then(Value::as_object),
    ) {
        for f in [
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "namespace",
            "name",
        ] {
            match old_meta.get(f) {
                Some(x) => m.insert(f.to_string(), x.clone()),
                None => m.remove(f),
            };
        }
        m.remove("selfLink");
        m.remove("managedFields");
        m.insert(
            "generation".into(),
            json!(if changed {
                generation.saturating_add(1)
            } else {
                generation
            }),
        );
    }
    out
}

/// Whether a stored object is being deleted and has no finalizers left:
/// then the write removes it.
pub fn finished(v: &Value) -> bool {
    v.pointer("/metadata/deletionTimestamp").is_some()
        && v.pointer("/metadata/finalizers")
            .and_then(Value::as_array)
            .is_none_or(Vec::is_empty)
}

/// What a delete does to a stored object.
#[derive(Clone, Debug, PartialEq)]
pub enum DeleteStep {
    /// Remove it.
    Remove,
    /// Mark it (finalizers hold it): the marked object.
    Mark(Value),
    /// Already marked: nothing to write.
    Unchanged,
}

impl DeleteStep {
    pub fn of(v: &Value, now: &str) -> DeleteStep {
        let has_finalizers = v
            .pointer("/metadata/finalizers")
            .and_then(Value::as_array)
            .is_some_and(|f| !f.is_empty());
        if !has_finalizers {
            return DeleteStep::Remove;
        }
        if v.pointer("/metadata/deletionTimestamp").is_some() {
            return DeleteStep::Unchanged;
        }
        let mut marked = v.clone();
        if let Some(m) = marked.get_mut("metadata").and_then(Value::as_object_mut) {
            m.insert("deletionTimestamp".into(), json!(now));
            m.insert("deletionGracePeriodSeconds".into(), json!(0));
        }
        DeleteStep::Mark(marked)
    }
}

/// A page of a list.
pub struct Page {
    pub items: Vec<Value>,
    pub revision: i64,
    pub continue_token: String,
}

impl Registry {
    /// The object at `key`, read locally (after a barrier when `fresh`).
    pub async fn read_json(&self, key: &str, fresh: bool) -> Result<Option<Stored>> {
        if fresh {
            self.barrier().await?;
        }
        let Some(kv) = self.read_kv(key)? else {
            return Ok(None);
        };
        Ok(Some(Stored {
            value: decode(&kv)?,
            mod_revision: kv.mod_revision,
        }))
    }

    /// The objects under `prefix` that `keep` selects, in pages of
    /// `limit` (0: all), at one revision; linearizable unless `local`.
    pub async fn list_json(
        &self,
        prefix: &str,
        limit: i64,
        continue_token: &str,
        local: bool,
        keep: &(dyn Fn(&Value) -> bool + Send + Sync),
    ) -> Result<Page> {
        let (revision, mut start) = if continue_token.is_empty() {
            if !local {
                self.barrier().await?;
            }
            (self.revision(), prefix.as_bytes().to_vec())
        } else {
            let bad = || Error::BadRequest("continue token is not valid for this list".into());
            let (rev, key) = continue_token.split_once(':').ok_or_else(bad)?;
            let rev: i64 = rev.parse().map_err(|_| bad())?;
            let mut key = unhex(key).ok_or_else(bad)?;
            if !key.starts_with(prefix.as_bytes()) {
                return Err(bad());
            }
            key.push(0);
            if rev > self.revision() {
                self.barrier().await?;
            }
            (rev, key)
        };
        let end = prefix_end(prefix.as_bytes());
        let limit = usize::try_from(limit)
            .ok()
            .filter(|l| *l > 0)
            .unwrap_or(usize::MAX);
        let mut items = Vec::new();
        loop {
            let res = {
                let sm = self.replica.sm().read();
                sm.range(&pb::RangeRequest {
                    key: start.clone(),
                    range_end: end.clone(),
                    revision,
                    limit: LIST_CHUNK_KEYS,
                    ..Default::default()
                })
            }
            .map_err(|e| match e {
                keelson_store::Error::Compacted => {
                    Error::Expired(format!("the list's revision {revision} has been compacted"))
                }
                e => e.into(),
            })?;
            for (i, kv) in res.kvs.iter().enumerate() {
                let v = decode(kv)?;
                if keep(&v) {
                    items.push(v);
                }
                if items.len() >= limit {
                    let more = res.more || i + 1 < res.kvs.len() || {
                        let mut next = kv.key.clone();
                        next.push(0);
                        let sm = self.replica.sm().read();
                        sm.range(&pb::RangeRequest {
                            key: next,
                            range_end: end.clone(),
                            revision,
                            limit: 1,
                            count_only: true,
                            ..Default::default()
                        })
                        .map(|r| r.count > 0)
                        .unwrap_or(false)
                    };
                    return Ok(Page {
                        items,
                        revision,
                        continue_token: if more {
                            format!("{revision}:{}", hex(&kv.key))
                        } else {
                            String::new()
                        },
                    });
                }
            }
            match res.kvs.last() {
                Some(k) if res.more => {
                    start = k.key.clone();
                    start.push(0);
                }
                _ => {
                    return Ok(Page {
                        items,
                        revision,
                        continue_token: String::new(),
                    })
                }
            }
        }
    }

    /// Store a new object at `key` unless the key is taken (false), in
    /// the live namespace `ns` when there is one. Ok(revision).
    pub async fn create_json(&self, key: &str, ns: &str, v: &Value) -> Result<Option<i64>> {
        let mut compare = vec![compare_absent(key)];
        if !ns.is_empty() {
            let ns_rev = self.live_namespace(ns).await?;
            compare.push(compare_mod(
                &keelson_model::Kind::Namespace.key("", ns),
                ns_rev,
            ));
        }
        let (ok, rev) = self
            .txn(compare, vec![put_op(key, encode(v), 0)], vec![])
            .await?;
        Ok(ok.then_some(rev))
    }

    /// Replace (or with `v` None, remove) the object at `key` if it is
    /// still at `read_revision`. Ok(Some(revision)) when written.
    pub async fn swap_json(
        &self,
        key: &str,
        read_revision: i64,
        v: Option<&Value>,
    ) -> Result<Option<i64>> {
        let op = match v {
            Some(v) => put_op(key, encode(v), 0),
            None => delete_op(key),
        };
        let (ok, rev) = self
            .txn(vec![compare_mod(key, read_revision)], vec![op], vec![])
            .await?;
        Ok(ok.then_some(rev))
    }

    /// Remove the object at `key` if it is still at `read_revision`, and
    /// in the same transaction every key under `objects` (a definition's
    /// objects go with it). Ok(Some(revision)) when removed.
    pub async fn remove_json_with(
        &self,
        key: &str,
        read_revision: i64,
        objects: Option<&str>,
    ) -> Result<Option<i64>> {
        let mut ops = vec![delete_op(key)];
        if let Some(prefix) = objects {
            ops.push(pb::RequestOp {
                request: Some(pb::request_op::Request::RequestDeleteRange(
                    pb::DeleteRangeRequest {
                        key: prefix.as_bytes().to_vec(),
                        range_end: prefix_end(prefix.as_bytes()),
                        ..Default::default()
                    },
                )),
            });
        }
        let (ok, rev) = self
            .txn(vec![compare_mod(key, read_revision)], ops, vec![])
            .await?;
        Ok(ok.then_some(rev))
    }
}

/// The current time as metadata carries it.
pub fn now() -> String {
    keelson_model::time::format_rfc3339(SystemTime::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn generated() -> Generated {
        Generated {
            uid: "u-1".into(),
            name_suffix: "x7k2q".into(),
            now: "2026-01-01T00:00:00Z".into(),
        }
    }

    #[test]
    fn creation_sets_the_servers_fields() {
        let mut v = json!({
            "apiVersion": "stable.example.com/v1", "kind": "CronTab",
            "metadata": {"generateName": "ct-", "resourceVersion": "5", "uid": "mine",
                         "labels": {"app": "x"}},
            "spec": {"a": 1}, "status": {"ready": true}
        });
        assert_eq!(
            prepare_create(&mut v, "default", true, &generated()),
            Ok(())
        );
        assert_eq!(v["metadata"]["name"], "ct-x7k2q");
        assert_eq!(v["metadata"]["namespace"], "default");
        assert_eq!(v["metadata"]["uid"], "u-1");
        assert_eq!(v["metadata"]["generation"], 1);
        assert!(v["metadata"].get("resourceVersion").is_none());
        assert!(v.get("status").is_none(), "the status subresource owns it");

        let mut bad = json!({"metadata": {"name": "Not_Valid", "labels": {"k": "bad value"}}});
        let p = prepare_create(&mut bad, "", false, &generated())
            .err()
            .unwrap_or_default();
        assert!(
            p[0].starts_with("metadata.name: Invalid value: \"Not_Valid\""),
            "{p:?}"
        );
        assert!(
            p[1].starts_with("metadata.labels: Invalid value: \"bad value\""),
            "{p:?}"
        );
        let mut nameless = json!({"metadata": {}});
        assert!(prepare_create(&mut nameless, "", false, &generated()).is_err());
    }

    #[test]
    fn updates_keep_the_servers_fields_and_count_generations() {
        let old = json!({
            "metadata": {"name": "a", "uid": "u", "creationTimestamp": "t", "generation": 3,
                         "labels": {"x": "1"}},
            "spec": {"n": 1}, "status": {"ready": true}
        });
        // A label change is not a new generation; the status is kept.
        let new = json!({"metadata": {"name": "a", "uid": "other", "labels": {"x": "2"}},
                         "spec": {"n": 1}, "status": {"ready": false}});
        let m = merge_update(
            &old,
            &new,
            Part::Main {
                status_subresource: true,
            },
        );
        assert_eq!(m["metadata"]["uid"], "u");
        assert_eq!(m["metadata"]["generation"], 3);
        assert_eq!(m["metadata"]["labels"]["x"], "2");
        assert_eq!(m["status"]["ready"], true);
        // A spec change is.
        let new = json!({"metadata": {"name": "a"}, "spec": {"n": 2}});
        let m = merge_update(
            &old,
            &new,
            Part::Main {
                status_subresource: true,
            },
        );
        assert_eq!(m["metadata"]["generation"], 4);
        // Without a status subresource the status is the client's, and
        // counts as a change.
        let new = json!({"metadata": {"name": "a"}, "spec": {"n": 1}, "status": {"ready": false}});
        let m = merge_update(
            &old,
            &new,
            Part::Main {
                status_subresource: false,
            },
        );
        assert_eq!(m["status"]["ready"], false);
        assert_eq!(m["metadata"]["generation"], 4);
        // A status write changes only the status.
        let new = json!({"metadata": {"name": "a", "labels": {}}, "spec": {"n": 9}, "status": {"ready": false}});
        let m = merge_update(&old, &new, Part::Status);
        assert_eq!(m["spec"]["n"], 1);
        assert_eq!(m["metadata"]["labels"]["x"], "1");
        assert_eq!(m["status"]["ready"], false);
    }

    #[test]
    fn finalizers_hold_a_deleted_object() {
        let plain = json!({"metadata": {"name": "a"}});
        assert_eq!(DeleteStep::of(&plain, "t"), DeleteStep::Remove);
        let held = json!({"metadata": {"name": "a", "finalizers": ["example.com/hold"]}});
        let DeleteStep::Mark(marked) = DeleteStep::of(&held, "t") else {
            panic!("marked");
        };
        assert_eq!(marked["metadata"]["deletionTimestamp"], "t");
        assert_eq!(DeleteStep::of(&marked, "t2"), DeleteStep::Unchanged);
        assert!(!finished(&marked));
        let mut released = marked.clone();
        released["metadata"]["finalizers"] = json!([]);
        assert!(finished(&released));
        // The update that drops the last finalizer keeps the mark.
        let m = merge_update(
            &marked,
            &json!({"metadata": {"name": "a"}}),
            Part::Main {
                status_subresource: false,
            },
        );
        assert!(finished(&m));
    }
}
