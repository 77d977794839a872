//! Writes over HTTP: POST (create), PUT (update, `status`, `scale`),
//! PATCH (JSON merge patch, JSON patch and strategic merge patch, of the
//! object, its `status` or its `scale`), DELETE, each calling the gRPC
//! front end's request function ([`crate::service::Api`]'s `create_inner`,
//! `update_inner`, `delete_inner`, `get_inner`). Bodies are JSON (or YAML).
//! `dryRun=All` runs every check of the write (authorization, validation,
//! defaults, preconditions, name taken) and stores nothing.
//!
//! A patch reads the object, applies the patch to its JSON, and writes it
//! back as a compare-and-swap on the resourceVersion read; another
//! writer in between makes it read and apply again (up to
//! [`PATCH_ATTEMPTS_MAX`]), unless the patch names a resourceVersion of
//! its own (then Conflict, as Kubernetes). `scale` (Deployments,
//! ReplicaSets, StatefulSets) is an `autoscaling/v1 Scale` view of `spec.replicas`.
//!
//! deletecollection deletes what the selectors pick, one object at a
//! time through the same path. Not yet: server-side apply (415).

use std::collections::HashMap;
use std::time::Instant;

use axum::body::Bytes;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;
use keelson_model::{kind_of, manifest, meta_of, meta_of_mut, Kind, Object};
use keelson_proto::api::{object, DeleteRequest, ListRequest};
use serde::Deserialize;
use serde_json::Value;

use super::path::Target;
use super::status::Failure;
use super::{get_object, json_response, observe, q, Http};
use crate::auth::Identity;
use crate::error::Error;
use crate::registry::Commit;

/// Reads and writes a patch makes when other writers keep changing the
/// object between its read and its compare-and-swap.
pub const PATCH_ATTEMPTS_MAX: usize = 5;

/// Objects read per page by a deletecollection.
const DELETE_COLLECTION_PAGE: i64 = 500;

/// The request body as JSON: `application/json` (the default),
/// `application/yaml`, or Kubernetes' protobuf ([`super::protobuf`]);
/// anything else is 415.
pub fn body_value(headers: &HeaderMap, body: &[u8]) -> Result<Value, Failure> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("application/json");
    let base = ct.split(';').next().unwrap_or("").trim();
    match base {
        "" | "application/json" => serde_json::from_slice(body)
            .map_err(|e| Failure::bad_request(format!("the request body is not JSON: {e}"))),
        "application/yaml" | "application/x-yaml" | "text/yaml" => serde_yaml::from_slice(body)
            .map_err(|e| Failure::bad_request(format!("the request body is not YAML: {e}"))),
        super::protobuf::PROTOBUF => super::protobuf::decode(body),
        other => Err(Failure::new(
            415,
            "UnsupportedMediaType",
            format!("the body's content type {other:?} is not served (send application/json)"),
        )),
    }
}

/// `dryRun` (`All`: every check of the write, nothing stored).
pub(crate) fn commit_of(query: &HashMap<String, String>) -> Result<Commit, Failure> {
    dry_run_value(q(query, "dryRun"))
}

fn dry_run_value(v: &str) -> Result<Commit, Failure> {
    match v {
        "" => Ok(Commit::Write),
        "All" => Ok(Commit::DryRun),
        other => Err(Failure::bad_request(format!(
            "invalid dry run value {other:?}: the only one is \"All\""
        ))),
    }
}

/// `fieldValidation`, applied to a body's JSON before it is decoded:
/// `Strict` leaves it to the strict decoder (an unknown field is a 400
/// naming its path); `Warn` (Kubernetes' default) and `Ignore` drop the
/// fields the kind does not have; the answer is the warnings to send (one
/// per dropped field under `Warn`).
fn validate_fields(
    query: &HashMap<String, String>,
    kind: Kind,
    value: &mut Value,
) -> Result<Vec<String>, Failure> {
    match q(query, "fieldValidation") {
        "Strict" => Ok(Vec::new()),
        "" | "Warn" => Ok(keelson_model::schema::strip_unknown(value, kind.name())
            .into_iter()
            .map(|path| format!("unknown field \"{path}\""))
            .collect()),
        "Ignore" => {
            keelson_model::schema::strip_unknown(value, kind.name());
            Ok(Vec::new())
        }
        other => Err(Failure::bad_request(format!(
            "fieldValidation {other:?} is not one of Strict, Warn, Ignore"
        ))),
    }
}

/// A JSON answer with Kubernetes' `Warning` headers (`299 - "text"`).
pub(crate) fn warned(code: StatusCode, body: &Value, warnings: &[String]) -> Response {
    let mut r = json_response(code, body);
    for w in warnings {
        let text = format!("299 - {}", Value::String(w.clone()));
        if let Ok(v) = axum::http::HeaderValue::from_str(&text) {
            r.headers_mut().append("warning", v);
        }
    }
    r
}

/// The object a body holds, checked against the path: its kind, its
/// namespace (filled in from the path when absent), its name (for PUT).
pub fn object_for(target: &Target, mut value: Value) -> Result<Object, Failure> {
    drop_nulls(&mut value);
    let mut o = manifest::from_value(value)
        .map_err(|e| Failure::bad_request(format!("strict decoding error: {e}")))?;
    let kind = kind_of(&o).ok_or_else(|| Failure::bad_request("the body is not an object"))?;
    if kind != target.kind {
        return Err(Failure::bad_request(format!(
            "the body is a {} ({}), the path names {} ({})",
            kind.name(),
            kind.api_version(),
            target.kind.plural(),
            target.kind.api_version()
        )));
    }
    let m = meta_of_mut(&mut o).ok_or_else(|| Failure::bad_request("the body has no metadata"))?;
    if target.kind.namespaced() {
        if m.namespace.is_empty() {
            m.namespace = target.namespace.clone();
        } else if m.namespace != target.namespace {
            return Err(Failure::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
    }
    if let Some(name) = &target.name {
        if m.name.is_empty() {
            m.name = name.clone();
        } else if m.name != *name {
            return Err(Failure::bad_request(format!(
                "the name of the object ({}) does not match the name on the URL ({name})",
                m.name
            )));
        }
    }
    Ok(o)
}

/// A null field is an unset one, as Kubernetes reads JSON (`kubectl run`
/// sends `"creationTimestamp": null`); nulls inside lists stay (and are
/// refused by the decoder).
fn drop_nulls(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|_, x| !x.is_null());
            m.values_mut().for_each(drop_nulls);
        }
        Value::Array(a) => a.iter_mut().for_each(drop_nulls),
        _ => {}
    }
}

/// POST to a collection.
pub async fn create(
    http: &Http,
    who: &Identity,
    headers: &HeaderMap,
    target: &Target,
    query: &HashMap<String, String>,
    body: &Bytes,
) -> Result<Response, Failure> {
    match (target.kind, &target.name, target.subresource.as_deref()) {
        (_, None, None) => {}
        (Kind::Pod, Some(name), Some("binding")) => {
            let value = body_value(headers, body)?;
            return bind(http, who, target, name, commit_of(query)?, &value).await;
        }
        (Kind::Pod, Some(name), Some("eviction")) => {
            let value = body_value(headers, body)?;
            return evict(http, who, target, name, commit_of(query)?, &value).await;
        }
        _ => return Err(Failure::no_such_path()),
    }
    if target.kind.namespaced() && target.namespace.is_empty() {
        return Err(Failure::bad_request(
            "a namespaced object is created in a namespace's path (namespaces/<ns>/...)",
        ));
    }
    let commit = commit_of(query)?;
    let mut value = body_value(headers, body)?;
    let warnings = validate_fields(query, target.kind, &mut value)?;
    let obj = object_for(target, value)?;
    let started = Instant::now();
    let r = http.api.create_inner(who, obj, 0, commit).await;
    observe(http, "create", target.kind, &r, started);
    Ok(warned(
        StatusCode::CREATED,
        &manifest::to_value(&r?),
        &warnings,
    ))
}

/// The `Status` of a subresource POST that succeeded (binding, eviction).
fn success(code: StatusCode) -> Response {
    json_response(
        code,
        &serde_json::json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
                            "status": "Success", "code": code.as_u16()}),
    )
}

/// `pods/<name>/binding` (a `Binding`): the pod is bound to the target
/// node when it is bound to none yet (else 409, as Kubernetes), with a
/// compare-and-swap on the pod read.
async fn bind(
    http: &Http,
    who: &Identity,
    target: &Target,
    name: &str,
    commit: Commit,
    body: &Value,
) -> Result<Response, Failure> {
    if body.get("kind").and_then(Value::as_str) != Some("Binding") {
        return Err(Failure::bad_request("the body is not a Binding"));
    }
    let node = body
        .pointer("/target/name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| {
            Failure::new(
                422,
                "Invalid",
                "Binding.target.name: Required value: the node to bind to",
            )
        })?;
    if let Some(kind) = body.pointer("/target/kind").and_then(Value::as_str) {
        if !kind.is_empty() && kind != "Node" {
            return Err(Failure::new(
                422,
                "Invalid",
                format!("Binding.target.kind: Unsupported value: {kind:?}: a pod binds to a Node"),
            ));
        }
    }
    let mut pod = get_object(http, who, target, name, String::new()).await?;
    if let Some(object::Kind::Pod(p)) = pod.kind.as_mut() {
        let spec = p.spec.get_or_insert_with(Default::default);
        if !spec.node_name.is_empty() {
            return Err(Failure::new(
                409,
                "Conflict",
                format!("Operation cannot be fulfilled on pods/binding {name:?}: pod {name} is already assigned to node {:?}", spec.node_name),
            ));
        }
        spec.node_name = node.to_string();
    }
    let started = Instant::now();
    let r = http.api.update_inner(who, pod, 0, false, commit).await;
    observe(http, "update", Kind::Pod, &r, started);
    r?;
    Ok(success(StatusCode::CREATED))
}

/// `pods/<name>/eviction` (a `policy/v1 Eviction`): with no disruption
/// budgets to consult, the pod is deleted with the eviction's
/// `deleteOptions`, as a DELETE of it would be.
async fn evict(
    http: &Http,
    who: &Identity,
    target: &Target,
    name: &str,
    commit: Commit,
    body: &Value,
) -> Result<Response, Failure> {
    if body.get("kind").and_then(Value::as_str) != Some("Eviction") {
        return Err(Failure::bad_request("the body is not an Eviction"));
    }
    let opts: DeleteOptions = match body.get("deleteOptions") {
        Some(o) => serde_json::from_value(o.clone())
            .map_err(|e| Failure::bad_request(format!("Eviction.deleteOptions: {e}")))?,
        None => DeleteOptions::default(),
    };
    let commit = opts.commit(commit)?;
    let req = opts.request(Kind::Pod, &target.namespace, name);
    let started = Instant::now();
    let r = http.api.delete_inner(who, req, commit).await;
    observe(http, "delete", Kind::Pod, &r, started);
    r?;
    Ok(success(StatusCode::CREATED))
}

/// PUT of an object (or its `status`).
pub async fn update(
    http: &Http,
    who: &Identity,
    headers: &HeaderMap,
    target: &Target,
    query: &HashMap<String, String>,
    body: &Bytes,
) -> Result<Response, Failure> {
    let status_only = match (&target.name, target.subresource.as_deref()) {
        (Some(_), None) => false,
        (Some(_), Some("status")) if target.kind.has_status() => true,
        (Some(_), Some("scale")) => {
            let commit = commit_of(query)?;
            let value = body_value(headers, body)?;
            return change_scale(http, who, target, commit, |_| Ok(value.clone())).await;
        }
        _ => return Err(Failure::no_such_path()),
    };
    let commit = commit_of(query)?;
    let mut value = body_value(headers, body)?;
    let warnings = validate_fields(query, target.kind, &mut value)?;
    let obj = object_for(target, value)?;
    let started = Instant::now();
    let verb = if status_only {
        "update-status"
    } else {
        "update"
    };
    let r = http
        .api
        .update_inner(who, obj, 0, status_only, commit)
        .await;
    observe(http, verb, target.kind, &r, started);
    Ok(warned(StatusCode::OK, &manifest::to_value(&r?), &warnings))
}

/// How a PATCH body says what to change.
#[derive(Clone, Debug, PartialEq)]
pub enum Patch {
    /// RFC 7386 (`application/merge-patch+json`).
    Merge(Value),
    /// RFC 6902 (`application/json-patch+json`).
    Json(json_patch::Patch),
    /// Kubernetes' strategic merge patch
    /// (`application/strategic-merge-patch+json`, [`keelson_model::strategic`]).
    Strategic(Value),
}

impl Patch {
    /// The patch a request carries, by its content type.
    pub fn parse(headers: &HeaderMap, body: &[u8]) -> Result<Patch, Failure> {
        let ct = headers
            .get(header::CONTENT_TYPE)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("");
        let base = ct.split(';').next().unwrap_or("").trim();
        let json = |what: &str| -> Result<Value, Failure> {
            serde_json::from_slice(body)
                .map_err(|e| Failure::bad_request(format!("the {what} is not JSON: {e}")))
        };
        match base {
            "application/merge-patch+json" => Ok(Patch::Merge(json("merge patch")?)),
            "application/json-patch+json" => serde_json::from_value(json("JSON patch")?)
                .map(Patch::Json)
                .map_err(|e| Failure::bad_request(format!("the JSON patch is not valid: {e}"))),
            "application/strategic-merge-patch+json" => {
                Ok(Patch::Strategic(json("strategic merge patch")?))
            }
            "application/apply-patch+yaml" => Err(Failure::new(
                415,
                "UnsupportedMediaType",
                "server-side apply is not served yet",
            )),
            other => Err(Failure::new(
                415,
                "UnsupportedMediaType",
                format!("the patch's content type {other:?} is not a patch type served here"),
            )),
        }
    }

    /// Apply to a document of the type named `type_name` (the kind's name,
    /// or `Scale`), pure.
    pub fn apply(&self, doc: &mut Value, type_name: &str) -> Result<(), Failure> {
        match self {
            Patch::Merge(p) => {
                if !p.is_object() {
                    return Err(Failure::bad_request("a merge patch must be a JSON object"));
                }
                json_patch::merge(doc, p);
                Ok(())
            }
            Patch::Strategic(p) => {
                *doc = keelson_model::strategic::apply(doc, p, type_name).map_err(|e| {
                    Failure::new(
                        422,
                        "Invalid",
                        format!("the strategic merge patch cannot be applied: {e}"),
                    )
                })?;
                Ok(())
            }
            Patch::Json(p) => json_patch::patch(doc, p).map_err(|e| {
                Failure::new(
                    422,
                    "Invalid",
                    format!("the JSON patch cannot be applied: {e}"),
                )
            }),
        }
    }
}

/// PATCH of an object (or its `status`, or its `scale`).
pub async fn patch(
    http: &Http,
    who: &Identity,
    headers: &HeaderMap,
    target: &Target,
    query: &HashMap<String, String>,
    body: &Bytes,
) -> Result<Response, Failure> {
    let Some(name) = &target.name else {
        return Err(Failure::new(
            405,
            "MethodNotAllowed",
            "a collection cannot be patched",
        ));
    };
    let status_only = match target.subresource.as_deref() {
        None => false,
        Some("status") if target.kind.has_status() => true,
        Some("scale") => {
            let commit = commit_of(query)?;
            let p = Patch::parse(headers, body)?;
            return change_scale(http, who, target, commit, |mut scale| {
                p.apply(&mut scale, "Scale")?;
                Ok(scale)
            })
            .await;
        }
        Some(_) => return Err(Failure::no_such_path()),
    };
    let commit = commit_of(query)?;
    let p = Patch::parse(headers, body)?;
    let verb = if status_only {
        "update-status"
    } else {
        "update"
    };
    for _ in 0..PATCH_ATTEMPTS_MAX {
        let cur = get_object(http, who, target, name, String::new()).await?;
        let read_rv = meta_of(&cur)
            .map(|m| m.resource_version.clone())
            .unwrap_or_default();
        let mut doc = manifest::to_value(&cur);
        p.apply(&mut doc, target.kind.name())?;
        let warnings = validate_fields(query, target.kind, &mut doc)?;
        let mut obj = object_for(target, doc)?;
        // The patch's own resourceVersion, if it set one, is a
        // precondition; else the one read makes the write a CAS.
        let m = meta_of_mut(&mut obj).ok_or_else(|| Failure::bad_request("no metadata"))?;
        let own_rv = !m.resource_version.is_empty() && m.resource_version != read_rv;
        if m.resource_version.is_empty() {
            m.resource_version = read_rv;
        }
        let started = Instant::now();
        let r = http
            .api
            .update_inner(who, obj, 0, status_only, commit)
            .await;
        observe(http, verb, target.kind, &r, started);
        match r {
            Ok(o) => return Ok(warned(StatusCode::OK, &manifest::to_value(&o), &warnings)),
            Err(Error::Conflict(_)) if !own_rv => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(Failure::new(
        409,
        "Conflict",
        format!(
            "{} {name:?} changed {PATCH_ATTEMPTS_MAX} times while being patched; try again",
            target.kind.plural()
        ),
    ))
}

/// The `autoscaling/v1 Scale` of a Deployment, ReplicaSet or StatefulSet
/// (pure).
pub fn scale_of(o: &Object) -> Result<Value, Failure> {
    let (spec_replicas, status_replicas, selector) = match o.kind.as_ref() {
        Some(object::Kind::Deployment(d)) => (
            d.spec.as_ref().and_then(|s| s.replicas),
            d.status.as_ref().map_or(0, |s| s.replicas),
            d.spec.as_ref().and_then(|s| s.selector.as_ref()),
        ),
        Some(object::Kind::ReplicaSet(r)) => (
            r.spec.as_ref().and_then(|s| s.replicas),
            r.status.as_ref().map_or(0, |s| s.replicas),
            r.spec.as_ref().and_then(|s| s.selector.as_ref()),
        ),
        Some(object::Kind::StatefulSet(r)) => (
            r.spec.as_ref().and_then(|s| s.replicas),
            r.status.as_ref().map_or(0, |s| s.replicas),
            r.spec.as_ref().and_then(|s| s.selector.as_ref()),
        ),
        _ => return Err(Failure::no_such_path()),
    };
    let m = meta_of(o).cloned().unwrap_or_default();
    let mut meta = serde_json::json!({
        "name": m.name, "namespace": m.namespace, "uid": m.uid,
        "resourceVersion": m.resource_version, "creationTimestamp": m.creation_timestamp,
    });
    if let Some(map) = meta.as_object_mut() {
        map.retain(|_, v| v.as_str().is_some_and(|s| !s.is_empty()));
    }
    let selector = selector.map(|s| keelson_model::printers::format_selector(Some(s)));
    Ok(serde_json::json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": meta,
        "spec": {"replicas": spec_replicas.unwrap_or(1)},
        "status": {"replicas": status_replicas, "selector": selector.unwrap_or_default()},
    }))
}

/// `o` with `spec.replicas` set (pure).
fn with_replicas(mut o: Object, replicas: i32) -> Object {
    match o.kind.as_mut() {
        Some(object::Kind::Deployment(d)) => {
            d.spec.get_or_insert_with(Default::default).replicas = Some(replicas);
        }
        Some(object::Kind::ReplicaSet(r)) => {
            r.spec.get_or_insert_with(Default::default).replicas = Some(replicas);
        }
        Some(object::Kind::StatefulSet(r)) => {
            r.spec.get_or_insert_with(Default::default).replicas = Some(replicas);
        }
        _ => {}
    }
    o
}

/// Read the object's Scale, let `change` make the new one, write
/// `spec.replicas` back (a CAS on the resourceVersion read, retried when
/// another writer got there first), answer the new Scale.
async fn change_scale(
    http: &Http,
    who: &Identity,
    target: &Target,
    commit: Commit,
    change: impl Fn(Value) -> Result<Value, Failure>,
) -> Result<Response, Failure> {
    if !target.kind.has_scale() {
        return Err(Failure::no_such_path());
    }
    let name = target.name.as_deref().ok_or_else(Failure::no_such_path)?;
    for _ in 0..PATCH_ATTEMPTS_MAX {
        let cur = get_object(http, who, target, name, String::new()).await?;
        let new = change(scale_of(&cur)?)?;
        if new
            .get("kind")
            .and_then(Value::as_str)
            .is_some_and(|k| k != "Scale")
        {
            return Err(Failure::bad_request("the body is not a Scale"));
        }
        let replicas = new
            .pointer("/spec/replicas")
            .and_then(Value::as_i64)
            .and_then(|r| i32::try_from(r).ok())
            .ok_or_else(|| Failure::bad_request("spec.replicas must be a number"))?;
        let own_rv = new
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .filter(|rv| Some(*rv) != meta_of(&cur).map(|m| m.resource_version.as_str()))
            .map(str::to_string);
        let mut obj = with_replicas(cur, replicas);
        if let (Some(rv), Some(m)) = (&own_rv, meta_of_mut(&mut obj)) {
            m.resource_version = rv.clone();
        }
        let started = Instant::now();
        let r = http.api.update_inner(who, obj, 0, false, commit).await;
        observe(http, "update", target.kind, &r, started);
        match r {
            Ok(o) => return Ok(json_response(StatusCode::OK, &scale_of(&o)?)),
            Err(Error::Conflict(_)) if own_rv.is_none() => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(Failure::new(
        409,
        "Conflict",
        format!(
            "{} {name:?} changed {PATCH_ATTEMPTS_MAX} times while being scaled; try again",
            target.kind.plural()
        ),
    ))
}

/// `DeleteOptions`, from a DELETE's body.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DeleteOptions {
    #[serde(default)]
    grace_period_seconds: Option<i64>,
    #[serde(default)]
    propagation_policy: Option<String>,
    #[serde(default)]
    pub(crate) preconditions: Option<Preconditions>,
    #[serde(default)]
    dry_run: Vec<String>,
    // Sent by clients, decided by the server alone.
    #[serde(default)]
    #[allow(dead_code)]
    orphan_dependents: Option<bool>,
    #[serde(default)]
    #[allow(dead_code)]
    kind: Option<String>,
    #[serde(default)]
    #[allow(dead_code)]
    api_version: Option<String>,
}

impl DeleteOptions {
    /// A DELETE's body (none: the defaults).
    pub(crate) fn from_body(body: &[u8]) -> Result<DeleteOptions, Failure> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(DeleteOptions::default());
        }
        serde_json::from_slice(body)
            .map_err(|e| Failure::bad_request(format!("DeleteOptions: {e}")))
    }

    /// The write's commit once the options' own `dryRun` is counted.
    pub(crate) fn commit(&self, mut commit: Commit) -> Result<Commit, Failure> {
        for v in &self.dry_run {
            if dry_run_value(v)? == Commit::DryRun {
                commit = Commit::DryRun;
            }
        }
        Ok(commit)
    }

    /// The delete of one object with these options.
    fn request(&self, kind: Kind, namespace: &str, name: &str) -> DeleteRequest {
        let pre = self.preconditions.as_ref();
        DeleteRequest {
            resource: kind.plural().into(),
            namespace: namespace.to_string(),
            name: name.to_string(),
            grace_period_seconds: self.grace_period_seconds,
            propagation_policy: self.propagation_policy.clone().unwrap_or_default(),
            precondition_uid: pre.and_then(|p| p.uid.clone()).unwrap_or_default(),
            precondition_resource_version: pre
                .and_then(|p| p.resource_version.clone())
                .unwrap_or_default(),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Preconditions {
    #[serde(default)]
    pub(crate) uid: Option<String>,
    #[serde(default)]
    pub(crate) resource_version: Option<String>,
}

/// DELETE of an object, or of a collection (deletecollection: every object
/// the `labelSelector` and `fieldSelector` pick, each deleted as a DELETE
/// of it would be, with the same options; the answer is the list of them).
pub async fn delete(
    http: &Http,
    who: &Identity,
    target: &Target,
    query: &HashMap<String, String>,
    body: &Bytes,
) -> Result<Response, Failure> {
    if target.subresource.is_some() {
        return Err(Failure::no_such_path());
    }
    let mut opts = DeleteOptions::from_body(body)?;
    let commit = opts.commit(commit_of(query)?)?;
    if opts.grace_period_seconds.is_none() {
        opts.grace_period_seconds = match q(query, "gracePeriodSeconds") {
            "" => None,
            g => Some(g.parse::<i64>().map_err(|_| {
                Failure::bad_request(format!("gracePeriodSeconds {g:?} is not a number"))
            })?),
        };
    }
    if opts.propagation_policy.is_none() {
        opts.propagation_policy = Some(q(query, "propagationPolicy").to_string());
    }
    let request = |name: &str| opts.request(target.kind, &target.namespace, name);
    let Some(name) = &target.name else {
        return delete_collection(http, who, target, query, commit, request).await;
    };
    let started = Instant::now();
    let r = http.api.delete_inner(who, request(name), commit).await;
    observe(http, "delete", target.kind, &r, started);
    let (object, _gone) = r?;
    Ok(json_response(StatusCode::OK, &manifest::to_value(&object)))
}

/// The objects a collection's selectors pick, read a page at a time, and
/// each deleted.
async fn delete_collection(
    http: &Http,
    who: &Identity,
    target: &Target,
    query: &HashMap<String, String>,
    commit: Commit,
    request: impl Fn(&str) -> DeleteRequest,
) -> Result<Response, Failure> {
    let mut deleted = Vec::new();
    let mut continue_token = String::new();
    let mut revision = String::new();
    loop {
        let req = ListRequest {
            resource: target.kind.plural().into(),
            namespace: target.namespace.clone(),
            label_selector: q(query, "labelSelector").into(),
            field_selector: q(query, "fieldSelector").into(),
            limit: DELETE_COLLECTION_PAGE,
            continue_token: continue_token.clone(),
            resource_version: String::new(),
        };
        let page = http.api.list_inner(who, &req).await?;
        if revision.is_empty() {
            revision = page.resource_version.clone();
        }
        for o in &page.items {
            let Some(m) = meta_of(o) else { continue };
            let mut req = request(&m.name);
            req.namespace = m.namespace.clone();
            let started = Instant::now();
            let r = http.api.delete_inner(who, req, commit).await;
            observe(http, "delete", target.kind, &r, started);
            match r {
                Ok((object, _)) => deleted.push(object),
                // Gone meanwhile: what deletecollection wanted.
                Err(Error::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        if page.continue_token.is_empty() {
            break;
        }
        continue_token = page.continue_token;
    }
    Ok(json_response(
        StatusCode::OK,
        &super::list_json(
            target.kind,
            &deleted,
            serde_json::json!({ "resourceVersion": revision }),
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn target(kind: Kind, ns: &str, name: Option<&str>) -> Target {
        Target {
            kind,
            namespace: ns.into(),
            name: name.map(Into::into),
            subresource: None,
        }
    }

    fn pod(ns: Option<&str>, name: &str) -> Value {
        let mut v = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name},
            "spec": {"containers": [{"name": "main", "image": "builtin/sleep"}]}
        });
        if let Some(ns) = ns {
            v["metadata"]["namespace"] = json!(ns);
        }
        v
    }

    #[test]
    fn bodies_are_checked_against_the_path() {
        let t = target(Kind::Pod, "prod", None);
        let o = object_for(&t, pod(None, "web")).expect("namespace from the path");
        assert_eq!(meta_of(&o).map(|m| m.namespace.as_str()), Some("prod"));
        assert!(object_for(&t, pod(Some("prod"), "web")).is_ok());
        let cases: Vec<(Target, Value, &str)> = vec![
            (
                t.clone(),
                pod(Some("dev"), "web"),
                "does not match the namespace",
            ),
            (
                target(Kind::Deployment, "prod", None),
                pod(None, "web"),
                "the path names deployments",
            ),
            (
                target(Kind::Pod, "prod", Some("api")),
                pod(None, "web"),
                "does not match the name on the URL",
            ),
            (
                t.clone(),
                json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"}, "spec": {"bogus": 1}}),
                "strict decoding error",
            ),
            (t.clone(), json!({"apiVersion": "v1", "kind": "Widget"}), ""),
        ];
        for (t, v, want) in cases {
            let f = object_for(&t, v).expect_err("refused");
            assert_eq!(f.code, 400, "{f:?}");
            assert!(f.message.contains(want), "{} lacks {want:?}", f.message);
        }
        let mut with_nulls = pod(None, "web");
        with_nulls["metadata"]["creationTimestamp"] = Value::Null;
        with_nulls["status"] = json!({});
        assert!(object_for(&t, with_nulls).is_ok(), "null is unset");
        let named = object_for(&target(Kind::Pod, "prod", Some("web")), pod(None, ""))
            .expect("name from the URL");
        assert_eq!(meta_of(&named).map(|m| m.name.as_str()), Some("web"));
    }

    #[test]
    fn content_types() {
        let mut h = HeaderMap::new();
        assert!(body_value(&h, b"{\"a\":1}").is_ok(), "JSON by default");
        h.insert(
            header::CONTENT_TYPE,
            "application/yaml".parse().expect("header"),
        );
        assert_eq!(body_value(&h, b"a: 1").ok(), Some(json!({"a": 1})));
        h.insert(
            header::CONTENT_TYPE,
            "application/vnd.kubernetes.protobuf"
                .parse()
                .expect("header"),
        );
        // An envelope with no object in it.
        assert_eq!(body_value(&h, b"k8s\0").err().map(|f| f.code), Some(400));
        h.insert(header::CONTENT_TYPE, "text/plain".parse().expect("header"));
        assert_eq!(body_value(&h, b"x").err().map(|f| f.code), Some(415));
        h.insert(
            header::CONTENT_TYPE,
            "application/json".parse().expect("header"),
        );
        assert_eq!(body_value(&h, b"{nope").err().map(|f| f.code), Some(400));
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert_eq!(
            body_value(&h, deep.as_bytes()).err().map(|f| f.code),
            Some(400)
        );
    }

    fn content(ct: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_TYPE, ct.parse().expect("header"));
        h
    }

    #[test]
    fn patches_by_content_type() {
        let doc = json!({"metadata": {"name": "web", "labels": {"a": "1", "b": "2"}}, "spec": {"replicas": 3}});
        let cases: Vec<(&str, &str, Result<Value, u16>)> = vec![
            // kubectl label / annotate / scale: merge patches; null removes.
            (
                "application/merge-patch+json",
                r#"{"metadata":{"labels":{"a":null,"c":"3"}}}"#,
                Ok(
                    json!({"metadata": {"name": "web", "labels": {"b": "2", "c": "3"}}, "spec": {"replicas": 3}}),
                ),
            ),
            (
                "application/json-patch+json",
                r#"[{"op":"replace","path":"/spec/replicas","value":5}]"#,
                Ok(
                    json!({"metadata": {"name": "web", "labels": {"a": "1", "b": "2"}}, "spec": {"replicas": 5}}),
                ),
            ),
            (
                "application/json-patch+json",
                r#"[{"op":"test","path":"/spec/replicas","value":4}]"#,
                Err(422),
            ),
            ("application/json-patch+json", r#"{"op":"add"}"#, Err(400)),
            ("application/merge-patch+json", r#"[1]"#, Err(400)),
            ("application/merge-patch+json", r#"{nope"#, Err(400)),
            (
                "application/strategic-merge-patch+json",
                r#"{"metadata":{"labels":{"a":null}},"spec":{"replicas":1}}"#,
                Ok(
                    json!({"metadata": {"name": "web", "labels": {"b": "2"}}, "spec": {"replicas": 1}}),
                ),
            ),
            (
                "application/strategic-merge-patch+json",
                r#"{"$patch":"explode"}"#,
                Err(422),
            ),
            ("application/strategic-merge-patch+json", r#"[1]"#, Err(422)),
            ("application/apply-patch+yaml", "a: 1", Err(415)),
            ("text/plain", "x", Err(415)),
        ];
        for (ct, body, want) in cases {
            let got = Patch::parse(&content(ct), body.as_bytes()).and_then(|p| {
                let mut d = doc.clone();
                p.apply(&mut d, "Deployment").map(|()| d)
            });
            assert_eq!(got.map_err(|f| f.code), want, "{ct} {body}");
        }
    }

    #[test]
    fn scale_is_a_view_of_spec_replicas() {
        use keelson_model::Resource;
        use keelson_proto::v1;
        let d = v1::Deployment {
            metadata: Some(v1::ObjectMeta {
                name: "web".into(),
                namespace: "prod".into(),
                resource_version: "9".into(),
                ..Default::default()
            }),
            spec: Some(v1::DeploymentSpec {
                replicas: Some(3),
                selector: Some(v1::LabelSelector {
                    match_labels: [("app".to_string(), "web".to_string())].into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            status: Some(v1::DeploymentStatus {
                replicas: 2,
                ..Default::default()
            }),
            ..Default::default()
        }
        .into_object();
        let s = scale_of(&d).expect("scale");
        assert_eq!(s["kind"], "Scale");
        assert_eq!(s["apiVersion"], "autoscaling/v1");
        assert_eq!(s["spec"]["replicas"], 3);
        assert_eq!(s["status"], json!({"replicas": 2, "selector": "app=web"}));
        assert_eq!(s["metadata"]["resourceVersion"], "9");
        let scaled = scale_of(&with_replicas(d, 7)).expect("scale");
        assert_eq!(scaled["spec"]["replicas"], 7);
        let pod = v1::Pod::default().into_object();
        assert_eq!(scale_of(&pod).err().map(|f| f.code), Some(404));
    }

    #[test]
    fn dry_run_values() {
        let mut q = HashMap::new();
        assert_eq!(commit_of(&q).ok(), Some(Commit::Write));
        q.insert("dryRun".to_string(), "All".to_string());
        assert_eq!(commit_of(&q).ok(), Some(Commit::DryRun));
        q.insert("dryRun".to_string(), "Some".to_string());
        assert_eq!(commit_of(&q).err().map(|f| f.code), Some(400));
    }
}
