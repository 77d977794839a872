//! The HTTP handlers of custom resources and CRDs, and their discovery
//! and OpenAPI documents. A request under `/apis/<group>/<version>/` of a
//! group no built-in kind has comes here ([`object`]).

use std::collections::HashMap;
use std::time::{Instant, SystemTime};

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::Response;
use futures::StreamExt;
use keelson_model::selector::LabelSelector;
use serde_json::{json, Map, Value};
use tokio_stream::wrappers::ReceiverStream;

use super::store::{self, DeleteStep, Part};
use super::{columns, definition, schema, watch, Catalog, Resource};
use crate::auth::{Identity, Role};
use crate::http::discovery;
use crate::http::status::{self, Failure};
use crate::http::table::Include;
use crate::http::write::{body_value, commit_of, warned, DeleteOptions, Patch, PATCH_ATTEMPTS_MAX};
use crate::http::{format_of, json_response, q, Format, Http};
use crate::registry::{random_suffix, Commit};

/// Where a request points below its group version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub plural: String,
    pub namespace: String,
    pub name: Option<String>,
    pub subresource: Option<String>,
}

/// `[namespaces/<ns>/]<plural>[/<name>[/<subresource>]]`.
pub fn parse_path(rest: &str) -> Option<Target> {
    let parts: Vec<&str> = rest.trim_end_matches('/').split('/').collect();
    let (namespace, rest) = match parts.as_slice() {
        ["namespaces", ns, rest @ ..] if !rest.is_empty() => (ns.to_string(), rest),
        rest => (String::new(), rest),
    };
    let (plural, name, sub) = match rest {
        [p] => (p, None, None),
        [p, n] => (p, Some(n.to_string()), None),
        [p, n, s] => (p, Some(n.to_string()), Some(s.to_string())),
        _ => return None,
    };
    if plural.is_empty() || name.as_deref() == Some("") {
        return None;
    }
    Some(Target {
        plural: plural.to_string(),
        namespace,
        name,
        subresource: sub,
    })
}

fn forbidden(who: &Identity, verb: &str, res: &Resource, name: &str) -> Failure {
    let what = if name.is_empty() {
        res.qualified()
    } else {
        format!("{} {name:?}", res.qualified())
    };
    Failure::new(
        403,
        "Forbidden",
        format!(
            "{what} is forbidden: User {:?} cannot {verb} resource {:?} in API group {:?}",
            who.user, res.plural, res.group
        ),
    )
}

/// Admins do anything; viewers read; nodes nothing.
fn authorize(who: &Identity, verb: &str, res: &Resource, name: &str) -> Result<(), Failure> {
    let reads = matches!(verb, "get" | "list" | "watch");
    let allowed = match who.role {
        Role::Admin => true,
        Role::Viewer => reads,
        Role::Node => false,
    };
    if allowed {
        Ok(())
    } else {
        Err(forbidden(who, verb, res, name))
    }
}

fn not_found(res: &Resource, name: &str) -> Failure {
    Failure {
        code: 404,
        reason: "NotFound",
        message: format!("{} {name:?} not found", res.qualified()),
        details: Some(json!({"name": name, "group": res.group, "kind": res.plural})),
    }
}

fn conflict(res: &Resource, name: &str) -> Failure {
    Failure {
        code: 409,
        reason: "Conflict",
        message: format!(
            "Operation cannot be fulfilled on {} {name:?}: the object has been modified; please apply your changes to the latest version and try again",
            res.qualified()
        ),
        details: Some(json!({"name": name, "group": res.group, "kind": res.plural})),
    }
}

fn invalid(res: &Resource, name: &str, problems: &[String]) -> Failure {
    let causes = status::causes(problems);
    Failure {
        code: 422,
        reason: "Invalid",
        message: format!(
            "{}.{} {name:?} is invalid: {}",
            res.kind,
            res.group,
            problems.join(", ")
        ),
        details: Some(
            json!({"name": name, "group": res.group, "kind": res.kind, "causes": causes}),
        ),
    }
}

/// The object as served at the request's version.
fn served(mut v: Value, res: &Resource) -> Value {
    if let Some(o) = v.as_object_mut() {
        o.insert("apiVersion".into(), json!(res.api_version()));
        o.insert("kind".into(), json!(res.kind));
    }
    v
}

/// A request on a custom resource path (`rest` below
/// `/apis/<group>/<version>/`), by method.
#[allow(clippy::too_many_arguments)]
pub async fn object(
    http: &Http,
    who: &Identity,
    method: Method,
    headers: &HeaderMap,
    group: &str,
    version: &str,
    rest: &str,
    query: &HashMap<String, String>,
    body: &Bytes,
) -> Result<Response, Failure> {
    let target = parse_path(rest).ok_or_else(Failure::no_such_path)?;
    let registry = &http.api.registry;
    let res = http
        .custom
        .resolve(registry, group, version, &target.plural)?
        .ok_or_else(Failure::no_such_path)?;
    if !res.namespaced && !target.namespace.is_empty() {
        return Err(Failure::no_such_path());
    }
    match target.subresource.as_deref() {
        None => {}
        Some("status") if res.status && target.name.is_some() => {}
        Some("scale") if res.scale.is_some() && target.name.is_some() => {
            return scale(http, who, method, headers, &res, &target, query, body).await;
        }
        Some(_) => return Err(Failure::no_such_path()),
    }
    let started = Instant::now();
    let verb = crate::http::verb_of(&method, target.name.is_some(), &query_string(query));
    let r = match method {
        Method::GET if verb == "watch" => watch_objects(http, who, headers, &res, &target, query),
        Method::GET => read(http, who, headers, &res, &target, query).await,
        Method::POST => create(http, who, headers, &res, &target, query, body).await,
        Method::PUT => update(http, who, headers, &res, &target, query, body).await,
        Method::PATCH => patch(http, who, headers, &res, &target, query, body).await,
        Method::DELETE => delete(http, who, &res, &target, query, body).await,
        m => Err(Failure::new(
            405,
            "MethodNotAllowed",
            format!("{m} is not allowed on {}", res.qualified()),
        )),
    };
    let code = match &r {
        Ok(_) => tonic::Code::Ok,
        Err(f) => code_of(f.code),
    };
    http.api
        .metrics
        .observe(verb, "customresources", code, started.elapsed());
    let mut resp = r?;
    if let Some(w) = &res.deprecation_warning {
        if let Ok(v) = HeaderValue::from_str(&format!("299 - {}", Value::String(w.clone()))) {
            resp.headers_mut().append("warning", v);
        }
    }
    Ok(resp)
}

fn query_string(query: &HashMap<String, String>) -> String {
    match query.get("watch") {
        Some(w) => format!("watch={w}"),
        None => String::new(),
    }
}

fn code_of(http_code: u16) -> tonic::Code {
    match http_code {
        400 | 422 => tonic::Code::InvalidArgument,
        401 => tonic::Code::Unauthenticated,
        403 => tonic::Code::PermissionDenied,
        404 => tonic::Code::NotFound,
        409 => tonic::Code::Aborted,
        410 => tonic::Code::OutOfRange,
        503 => tonic::Code::Unavailable,
        _ => tonic::Code::Internal,
    }
}

/// Label and field selectors of a list or watch (fields: `metadata.name`
/// and `metadata.namespace`, `=`, `==` or `!=`, as Kubernetes allows for
/// custom resources).
struct Selectors {
    labels: LabelSelector,
    fields: Vec<(String, String, bool)>,
}

impl Selectors {
    fn parse(query: &HashMap<String, String>, name: Option<&str>) -> Result<Selectors, Failure> {
        let labels = LabelSelector::parse(q(query, "labelSelector"))
            .map_err(|e| Failure::bad_request(format!("labelSelector: {e}")))?;
        let mut fields = Vec::new();
        for term in q(query, "fieldSelector")
            .split(',')
            .filter(|t| !t.trim().is_empty())
        {
            let (field, value, equal) = if let Some((f, v)) = term.split_once("!=") {
                (f, v, false)
            } else if let Some((f, v)) = term.split_once("==") {
                (f, v, true)
            } else if let Some((f, v)) = term.split_once('=') {
                (f, v, true)
            } else {
                return Err(Failure::bad_request(format!(
                    "fieldSelector: invalid selector {term:?}"
                )));
            };
            let field = field.trim();
            if field != "metadata.name" && field != "metadata.namespace" {
                return Err(Failure::bad_request(format!(
                    "fieldSelector: field label {field:?} is not supported (metadata.name, metadata.namespace)"
                )));
            }
            fields.push((field.to_string(), value.trim().to_string(), equal));
        }
        if let Some(n) = name {
            fields.push(("metadata.name".into(), n.to_string(), true));
        }
        Ok(Selectors { labels, fields })
    }

    fn matches(&self, v: &Value) -> bool {
        self.labels.matches(&store::labels(v))
            && self.fields.iter().all(|(f, want, equal)| {
                let have = match f.as_str() {
                    "metadata.name" => store::meta_str(v, "name"),
                    _ => store::meta_str(v, "namespace"),
                };
                (have == want) == *equal
            })
    }
}

fn table(res: &Resource, items: &[Value], meta: Value, include: Include) -> Value {
    let now = SystemTime::now();
    let rows: Vec<Value> = items
        .iter()
        .map(|o| {
            let mut r = json!({"cells": columns::cells(&res.columns, o, now)});
            match include {
                Include::None => {}
                Include::Metadata => {
                    r["object"] = json!({
                        "kind": "PartialObjectMetadata",
                        "apiVersion": "meta.k8s.io/v1",
                        "metadata": o.get("metadata").cloned().unwrap_or_else(|| json!({})),
                    })
                }
                Include::Object => r["object"] = o.clone(),
            }
            r
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": meta,
        "columnDefinitions": columns::definitions(&res.columns),
        "rows": rows,
    })
}

async fn read(
    http: &Http,
    who: &Identity,
    headers: &HeaderMap,
    res: &Resource,
    target: &Target,
    query: &HashMap<String, String>,
) -> Result<Response, Failure> {
    let format = format_of(headers)?;
    let include = Include::parse(q(query, "includeObject"))
        .ok_or_else(|| Failure::bad_request("includeObject must be None, Metadata or Object"))?;
    let registry = &http.api.registry;
    if let Some(name) = &target.name {
        authorize(who, "get", res, name)?;
        let key = res.key(&target.namespace, name);
        let cur = registry
            .read_json(&key, true)
            .await?
            .ok_or_else(|| not_found(res, name))?;
        let v = served(cur.value, res);
        return Ok(match format {
            Format::Json => json_response(StatusCode::OK, &v),
            Format::Table => {
                let meta = json!({"resourceVersion": cur.mod_revision.to_string()});
                json_response(StatusCode::OK, &table(res, &[v], meta, include))
            }
        });
    }
    authorize(who, "list", res, "")?;
    let limit = match q(query, "limit") {
        "" => 0,
        l => l
            .parse::<i64>()
            .map_err(|_| Failure::bad_request(format!("limit {l:?} is not a number")))?,
    };
    let selectors = Selectors::parse(query, None)?;
    let prefix = res.prefix(&target.namespace);
    let continue_token = crate::http::version_match(&prefix, query, q(query, "resourceVersion"))?;
    let page = registry
        .list_json(&prefix, limit, &continue_token, false, &|v| {
            selectors.matches(v)
        })
        .await?;
    let mut meta = json!({"resourceVersion": page.revision.to_string()});
    if !page.continue_token.is_empty() {
        meta["continue"] = json!(page.continue_token);
    }
    let items: Vec<Value> = page.items.into_iter().map(|v| served(v, res)).collect();
    Ok(match format {
        Format::Json => json_response(
            StatusCode::OK,
            &json!({"kind": res.list_kind, "apiVersion": res.api_version(), "metadata": meta, "items": items}),
        ),
        Format::Table => json_response(StatusCode::OK, &table(res, &items, meta, include)),
    })
}

fn watch_objects(
    http: &Http,
    who: &Identity,
    headers: &HeaderMap,
    res: &Resource,
    target: &Target,
    query: &HashMap<String, String>,
) -> Result<Response, Failure> {
    authorize(who, "watch", res, target.name.as_deref().unwrap_or(""))?;
    if target.subresource.is_some() {
        return Err(Failure::no_such_path());
    }
    let format = format_of(headers)?;
    let include = Include::parse(q(query, "includeObject"))
        .ok_or_else(|| Failure::bad_request("includeObject must be None, Metadata or Object"))?;
    let selectors = Selectors::parse(query, target.name.as_deref())?;
    let initial_events = crate::http::watch::send_initial_events(query)?;
    let from = match q(query, "resourceVersion") {
        _ if initial_events => None,
        "" | "0" => None,
        rv => Some(rv.parse::<i64>().ok().filter(|r| *r >= 0).ok_or_else(|| {
            Failure::bad_request(format!("resourceVersion {rv:?} is not a revision"))
        })?),
    };
    let timeout = crate::http::watch::timeout_of(q(query, "timeoutSeconds"))?;
    let spec = watch::Spec {
        prefix: res.prefix(&target.namespace),
        selects: Box::new(move |v| selectors.matches(v)),
        from,
        bookmarks: q(query, "allowWatchBookmarks") == "true" && format == Format::Json,
        mark_listed: initial_events,
    };
    let (tx, rx) = tokio::sync::mpsc::channel(watch::QUEUE_EVENTS_MAX);
    tokio::spawn(watch::run(http.api.registry.clone(), spec, tx));
    let res = res.clone();
    let deadline = tokio::time::Instant::now() + timeout;
    let mut initial_pending = initial_events;
    let lines = ReceiverStream::new(rx)
        .take_until(tokio::time::sleep_until(deadline))
        .scan(false, move |ended, item| {
            if *ended {
                return futures::future::ready(None);
            }
            let line = match item {
                Ok(("BOOKMARK", None, rev)) if initial_pending => {
                    initial_pending = false;
                    Some(crate::http::watch::initial_events_end(
                        &res.kind,
                        &res.api_version(),
                        &rev.to_string(),
                    ))
                }
                Ok((typ, object, rev)) => {
                    let object = match (object, format) {
                        (None, _) => watch::bookmark(&res.kind, &res.api_version(), rev),
                        (Some(o), Format::Json) => served(o, &res),
                        (Some(o), Format::Table) => {
                            let meta = json!({"resourceVersion": rev.to_string()});
                            table(&res, &[served(o, &res)], meta, include)
                        }
                    };
                    Some(format!("{}\n", json!({"type": typ, "object": object})))
                }
                Err(e) => {
                    *ended = true;
                    Some(crate::http::watch::error_line(&Failure::from(e)))
                }
            };
            futures::future::ready(Some(line))
        })
        .filter_map(futures::future::ready)
        .map(|l| Ok::<_, std::convert::Infallible>(Bytes::from(l)));
    let mut r = Response::new(Body::from_stream(lines));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(r)
}

/// `fieldValidation`: Strict refuses unknown fields, Warn (the default)
/// and Ignore drop them (Warn names them in warnings).
fn field_validation(
    query: &HashMap<String, String>,
    res: &Resource,
    dropped: Vec<String>,
) -> Result<Vec<String>, Failure> {
    match q(query, "fieldValidation") {
        "Strict" if !dropped.is_empty() => Err(Failure::bad_request(format!(
            "{} in version {:?} cannot be handled as a {}: strict decoding error: {}",
            res.kind,
            res.version,
            res.kind,
            dropped
                .iter()
                .map(|d| format!("unknown field {d:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        ))),
        "Strict" | "Ignore" => Ok(Vec::new()),
        "" | "Warn" => Ok(dropped
            .into_iter()
            .map(|d| format!("unknown field {d:?}"))
            .collect()),
        other => Err(Failure::bad_request(format!(
            "fieldValidation {other:?} is not one of Strict, Warn, Ignore"
        ))),
    }
}

/// The body checked against the path: its apiVersion and kind, its
/// namespace (from the path when absent), its name (for writes to one
/// object).
fn check_body(res: &Resource, target: &Target, v: &mut Value) -> Result<(), Failure> {
    if !v.is_object() {
        return Err(Failure::bad_request("the body must be a JSON object"));
    }
    let api_version = v.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    if api_version != res.api_version() {
        return Err(Failure::bad_request(format!(
            "the API version in the data ({api_version}) does not match the expected API version ({})",
            res.api_version()
        )));
    }
    let kind = v.get("kind").and_then(Value::as_str).unwrap_or("");
    if kind != res.kind {
        return Err(Failure::bad_request(format!(
            "the kind in the data ({kind}) does not match the expected kind ({})",
            res.kind
        )));
    }
    let meta = v
        .as_object_mut()
        .and_then(|o| {
            o.entry("metadata")
                .or_insert_with(|| json!({}))
                .as_object_mut()
        })
        .ok_or_else(|| Failure::bad_request("metadata must be an object"))?;
    let ns = meta.get("namespace").and_then(Value::as_str).unwrap_or("");
    if res.namespaced && !ns.is_empty() && ns != target.namespace {
        return Err(Failure::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        ));
    }
    if let Some(name) = &target.name {
        let given = meta.get("name").and_then(Value::as_str).unwrap_or("");
        if given.is_empty() {
            meta.insert("name".into(), json!(name));
        } else if given != name {
            return Err(Failure::bad_request(format!(
                "the name of the object ({given}) does not match the name on the URL ({name})"
            )));
        }
    }
    Ok(())
}

/// Unknown fields of a body dropped (by the schema; a CRD has none):
/// the warnings to send, or Strict's refusal.
fn prune(
    res: &Resource,
    v: &mut Value,
    query: &HashMap<String, String>,
) -> Result<Vec<String>, Failure> {
    let dropped = match &res.schema {
        Some((s, _)) => schema::prune(v, s),
        None => schema::prune(v, &definition::known_fields()),
    };
    field_validation(query, res, dropped)
}

/// Defaults filled in, then the object's problems (a custom resource's
/// by its schema, a CRD's by Kubernetes' checks).
fn check(res: &Resource, v: &mut Value) -> Vec<String> {
    match &res.schema {
        Some((s, validator)) => {
            schema::apply_defaults(v, s);
            validator.problems(v)
        }
        None => {
            definition::default(v);
            let mut problems = definition::validate(v);
            if problems.is_empty() {
                problems.extend(schemas_compile(v));
            }
            problems
        }
    }
}

/// Each version's schema as the validator compiles it (a bad `pattern`,
/// an empty `required`): the problems.
fn schemas_compile(crd: &Value) -> Vec<String> {
    crd.pointer("/spec/versions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
        .filter_map(|(i, v)| {
            let s = v.pointer("/schema/openAPIV3Schema")?;
            schema::Validator::new(s)
                .err()
                .map(|e| format!("spec.versions[{i}].schema.openAPIV3Schema: Invalid value: {e}"))
        })
        .collect()
}

/// A CRD's status, from the other definitions.
fn definition_status(http: &Http, v: &Value, previous: Option<&Value>) -> Result<Value, Failure> {
    let entries = http.custom.load(&http.api.registry)?;
    let others: Vec<definition::Definition> = super::established(&entries).cloned().collect();
    Ok(definition::status(v, &others, previous, &store::now()))
}

async fn create(
    http: &Http,
    who: &Identity,
    headers: &HeaderMap,
    res: &Resource,
    target: &Target,
    query: &HashMap<String, String>,
    body: &Bytes,
) -> Result<Response, Failure> {
    if target.name.is_some() {
        return Err(Failure::no_such_path());
    }
    if res.namespaced && target.namespace.is_empty() {
        return Err(Failure::bad_request(
            "a namespaced object is created in a namespace's path (namespaces/<ns>/...)",
        ));
    }
    if res.terminating {
        return Err(Failure::new(
            405,
            "MethodNotAllowed",
            format!(
                "create not allowed while custom resource definition {} is terminating",
                res.qualified()
            ),
        ));
    }
    let commit = commit_of(query)?;
    let mut v = body_value(headers, body)?;
    check_body(res, target, &mut v)?;
    authorize(who, "create", res, store::meta_str(&v, "name"))?;
    let warnings = prune(res, &mut v, query)?;
    let generated = store::Generated {
        uid: uuid::Uuid::new_v4().to_string(),
        name_suffix: random_suffix(),
        now: store::now(),
    };
    let mut problems = store::prepare_create(&mut v, &target.namespace, res.status, &generated)
        .err()
        .unwrap_or_default();
    problems.extend(check(res, &mut v));
    let name = store::meta_str(&v, "name").to_string();
    if !problems.is_empty() {
        return Err(invalid(res, &name, &problems));
    }
    if res.is_definitions() {
        let status = definition_status(http, &v, None)?;
        v["status"] = status;
    }
    let key = res.key(&target.namespace, &name);
    let registry = &http.api.registry;
    let exists = || Failure {
        code: 409,
        reason: "AlreadyExists",
        message: format!("{} {name:?} already exists", res.qualified()),
        details: Some(json!({"name": name, "group": res.group, "kind": res.plural})),
    };
    if commit == Commit::DryRun {
        if res.namespaced {
            registry.live_namespace(&target.namespace).await?;
        }
        if registry.read_json(&key, true).await?.is_some() {
            return Err(exists());
        }
        return Ok(warned(StatusCode::CREATED, &v, &warnings));
    }
    match registry.create_json(&key, &target.namespace, &v).await? {
        Some(rev) => {
            store::set_resource_version(&mut v, rev);
            Ok(warned(StatusCode::CREATED, &v, &warnings))
        }
        None => Err(exists()),
    }
}

/// Write `new` (the client's whole object) over the stored one as `part`
/// says, if the stored one is still at `read_rv`: the stored object.
/// Err(None): the object changed meanwhile.
#[allow(clippy::too_many_arguments)]
async fn replace(
    http: &Http,
    res: &Resource,
    target: &Target,
    name: &str,
    cur: &store::Stored,
    mut new: Value,
    query: &HashMap<String, String>,
    commit: Commit,
) -> Result<(Value, Vec<String>), Option<Failure>> {
    let part = if target.subresource.is_some() {
        Part::Status
    } else {
        Part::Main {
            status_subresource: res.status,
        }
    };
    let warnings = prune(res, &mut new, query).map_err(Some)?;
    let mut merged = store::merge_update(&cur.value, &new, part);
    let mut problems = check(res, &mut merged);
    problems.extend(store::metadata_problems(&merged));
    if res.is_definitions() {
        problems.extend(definition::validate_update(&cur.value, &merged));
    }
    if !problems.is_empty() {
        return Err(Some(invalid(res, name, &problems)));
    }
    if res.is_definitions() && part != Part::Status {
        let status = definition_status(http, &merged, cur.value.get("status")).map_err(Some)?;
        merged["status"] = status;
    }
    let key = res.key(&target.namespace, name);
    let gone = store::finished(&merged);
    if commit == Commit::DryRun {
        store::set_resource_version(&mut merged, cur.mod_revision);
        return Ok((merged, warnings));
    }
    let registry = &http.api.registry;
    let written = if gone && res.is_definitions() {
        let objects = objects_prefix(&merged);
        registry
            .remove_json_with(&key, cur.mod_revision, objects.as_deref())
            .await
    } else {
        registry
            .swap_json(&key, cur.mod_revision, (!gone).then_some(&merged))
            .await
    };
    match written.map_err(|e| Some(Failure::from(e)))? {
        Some(rev) => {
            if gone && res.is_definitions() {
                reaccept(http, &merged).await;
            }
            store::set_resource_version(&mut merged, rev);
            Ok((merged, warnings))
        }
        None => Err(None),
    }
}

/// Once a definition is gone, the others of its group refused for a
/// names clash are looked at again: those whose names are now free are
/// accepted (and established). Best effort: a failure is logged, and the
/// next write of such a definition decides again.
async fn reaccept(http: &Http, gone: &Value) {
    let group = definition::parse(gone).group;
    let registry = &http.api.registry;
    let prefix = Resource::definitions().prefix("");
    let page = match registry.list_json(&prefix, 0, "", false, &|_| true).await {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(error = %e, "list definitions to accept their names again");
            return;
        }
    };
    let mut accepted: Vec<definition::Definition> = page
        .items
        .iter()
        .map(definition::parse)
        .filter(|d| d.established)
        .collect();
    for crd in &page.items {
        let d = definition::parse(crd);
        if d.group != group || d.established || d.terminating {
            continue;
        }
        let status = definition::status(crd, &accepted, crd.get("status"), &store::now());
        let now_established = status["conditions"].as_array().is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == "Established" && c["status"] == "True")
        });
        if !now_established {
            continue;
        }
        let mut updated = crd.clone();
        updated["status"] = status;
        let rev: i64 = store::meta_str(crd, "resourceVersion").parse().unwrap_or(0);
        let key = Resource::definitions().key("", &d.name);
        match registry.swap_json(&key, rev, Some(&updated)).await {
            Ok(Some(_)) => accepted.push(definition::parse(&updated)),
            Ok(None) => {}
            Err(e) => tracing::warn!(crd = %d.name, error = %e, "accept a definition's names"),
        }
    }
}

/// The key prefix of a definition's objects.
fn objects_prefix(crd: &Value) -> Option<String> {
    let d = definition::parse(crd);
    (!d.group.is_empty() && !d.names.plural.is_empty())
        .then(|| store::prefix(&d.group, &d.names.plural, ""))
}

async fn update(
    http: &Http,
    who: &Identity,
    headers: &HeaderMap,
    res: &Resource,
    target: &Target,
    query: &HashMap<String, String>,
    body: &Bytes,
) -> Result<Response, Failure> {
    let Some(name) = target.name.clone() else {
        return Err(Failure::new(
            405,
            "MethodNotAllowed",
            "a collection cannot be replaced",
        ));
    };
    authorize(who, "update", res, &name)?;
    let commit = commit_of(query)?;
    let mut v = body_value(headers, body)?;
    check_body(res, target, &mut v)?;
    let rv = store::meta_str(&v, "resourceVersion").to_string();
    if rv.is_empty() {
        return Err(invalid(
            res,
            &name,
            &[
                "metadata.resourceVersion: Invalid value: 0x0: must be specified for an update"
                    .into(),
            ],
        ));
    }
    let registry = &http.api.registry;
    let key = res.key(&target.namespace, &name);
    let cur = registry
        .read_json(&key, true)
        .await?
        .ok_or_else(|| not_found(res, &name))?;
    if cur.mod_revision.to_string() != rv {
        return Err(conflict(res, &name));
    }
    match replace(http, res, target, &name, &cur, v, query, commit).await {
        Ok((stored, warnings)) => Ok(warned(StatusCode::OK, &served(stored, res), &warnings)),
        Err(Some(f)) => Err(f),
        Err(None) => Err(conflict(res, &name)),
    }
}

async fn patch(
    http: &Http,
    who: &Identity,
    headers: &HeaderMap,
    res: &Resource,
    target: &Target,
    query: &HashMap<String, String>,
    body: &Bytes,
) -> Result<Response, Failure> {
    let Some(name) = target.name.clone() else {
        return Err(Failure::new(
            405,
            "MethodNotAllowed",
            "a collection cannot be patched",
        ));
    };
    authorize(who, "patch", res, &name)?;
    let commit = commit_of(query)?;
    let p = match Patch::parse(headers, body)? {
        // Kubernetes has no merge strategy for custom fields.
        Patch::Strategic(_) if !res.is_definitions() => {
            return Err(Failure::new(
                415,
                "UnsupportedMediaType",
                "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json",
            ))
        }
        Patch::Strategic(s) => Patch::Merge(s),
        p => p,
    };
    let registry = &http.api.registry;
    let key = res.key(&target.namespace, &name);
    for _ in 0..PATCH_ATTEMPTS_MAX {
        let cur = registry
            .read_json(&key, true)
            .await?
            .ok_or_else(|| not_found(res, &name))?;
        // The patch's own resourceVersion, if it sets one, is a
        // precondition; the one read is not.
        let mut doc = served(cur.value.clone(), res);
        if let Some(m) = doc.get_mut("metadata").and_then(Value::as_object_mut) {
            m.remove("resourceVersion");
        }
        p.apply(&mut doc, &res.kind)?;
        check_body(res, target, &mut doc)?;
        let own_rv = store::meta_str(&doc, "resourceVersion").to_string();
        if !own_rv.is_empty() && own_rv != cur.mod_revision.to_string() {
            return Err(conflict(res, &name));
        }
        match replace(http, res, target, &name, &cur, doc, query, commit).await {
            Ok((stored, warnings)) => {
                return Ok(warned(StatusCode::OK, &served(stored, res), &warnings))
            }
            Err(Some(f)) => return Err(f),
            Err(None) if own_rv.is_empty() => continue,
            Err(None) => return Err(conflict(res, &name)),
        }
    }
    Err(Failure::new(
        409,
        "Conflict",
        format!(
            "{} {name:?} changed {PATCH_ATTEMPTS_MAX} times while being patched; try again",
            res.qualified()
        ),
    ))
}

/// Delete one object: removed, or marked while finalizers hold it (a
/// CRD's objects go with it, in the same transaction). Ok(the object as
/// it was or is).
async fn delete_one(
    http: &Http,
    res: &Resource,
    ns: &str,
    name: &str,
    opts: &DeleteOptions,
    commit: Commit,
) -> Result<Value, Failure> {
    let registry = &http.api.registry;
    let key = res.key(ns, name);
    let pre = opts.preconditions.as_ref();
    for _ in 0..PATCH_ATTEMPTS_MAX {
        let cur = registry
            .read_json(&key, true)
            .await?
            .ok_or_else(|| not_found(res, name))?;
        if let Some(uid) = pre.and_then(|p| p.uid.as_deref()) {
            if uid != store::meta_str(&cur.value, "uid") {
                return Err(Failure::new(
                    409,
                    "Conflict",
                    format!(
                        "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                        store::meta_str(&cur.value, "uid")
                    ),
                ));
            }
        }
        if let Some(rv) = pre.and_then(|p| p.resource_version.as_deref()) {
            if rv != cur.mod_revision.to_string() {
                return Err(Failure::new(
                    409,
                    "Conflict",
                    format!(
                        "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                        cur.mod_revision
                    ),
                ));
            }
        }
        let (write, out) = match DeleteStep::of(&cur.value, &store::now()) {
            DeleteStep::Unchanged => return Ok(served(cur.value, res)),
            DeleteStep::Remove => (None, cur.value.clone()),
            DeleteStep::Mark(m) => (Some(m.clone()), m),
        };
        if commit == Commit::DryRun {
            return Ok(served(out, res));
        }
        let written = match (&write, res.is_definitions()) {
            (None, true) => {
                let objects = objects_prefix(&cur.value);
                registry
                    .remove_json_with(&key, cur.mod_revision, objects.as_deref())
                    .await?
            }
            _ => {
                registry
                    .swap_json(&key, cur.mod_revision, write.as_ref())
                    .await?
            }
        };
        if written.is_some() {
            if write.is_none() && res.is_definitions() {
                reaccept(http, &cur.value).await;
            }
            return Ok(served(out, res));
        }
    }
    Err(conflict(res, name))
}

async fn delete(
    http: &Http,
    who: &Identity,
    res: &Resource,
    target: &Target,
    query: &HashMap<String, String>,
    body: &Bytes,
) -> Result<Response, Failure> {
    if target.subresource.is_some() {
        return Err(Failure::no_such_path());
    }
    let opts = DeleteOptions::from_body(body)?;
    let commit = opts.commit(commit_of(query)?)?;
    if let Some(name) = &target.name {
        authorize(who, "delete", res, name)?;
        let v = delete_one(http, res, &target.namespace, name, &opts, commit).await?;
        return Ok(json_response(StatusCode::OK, &v));
    }
    authorize(who, "deletecollection", res, "")?;
    let selectors = Selectors::parse(query, None)?;
    let page = http
        .api
        .registry
        .list_json(&res.prefix(&target.namespace), 0, "", false, &|v| {
            selectors.matches(v)
        })
        .await?;
    let mut deleted = Vec::new();
    for o in page.items {
        let ns = store::meta_str(&o, "namespace").to_string();
        let name = store::meta_str(&o, "name").to_string();
        match delete_one(http, res, &ns, &name, &opts, commit).await {
            Ok(v) => deleted.push(v),
            Err(f) if f.code == 404 => {}
            Err(f) => return Err(f),
        }
    }
    Ok(json_response(
        StatusCode::OK,
        &json!({"kind": res.list_kind, "apiVersion": res.api_version(),
                "metadata": {"resourceVersion": page.revision.to_string()}, "items": deleted}),
    ))
}

/// A value at a simple path (`.spec.replicas`).
fn at_path<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    path.trim_start_matches('.')
        .split('.')
        .try_fold(v, |acc, f| acc.get(f))
}

/// Set a value at a simple path, making the objects on the way.
fn set_path(v: &mut Value, path: &str, value: Value) -> Result<(), Failure> {
    let fields: Vec<&str> = path.trim_start_matches('.').split('.').collect();
    let mut cur = v;
    for (i, f) in fields.iter().enumerate() {
        let obj = cur.as_object_mut().ok_or_else(|| {
            Failure::bad_request(format!(
                "{path}: {f:?} is inside a value that is not an object"
            ))
        })?;
        if i + 1 == fields.len() {
            obj.insert(f.to_string(), value);
            return Ok(());
        }
        cur = obj.entry(f.to_string()).or_insert_with(|| json!({}));
    }
    Ok(())
}

/// The `autoscaling/v1 Scale` of a custom resource, from its
/// `subresources.scale` paths.
fn scale_of(res: &Resource, v: &Value, rev: i64) -> Value {
    let Some(sc) = &res.scale else {
        return Value::Null;
    };
    let int = |path: &str| at_path(v, path).and_then(Value::as_i64).unwrap_or(0);
    let mut status = json!({"replicas": int(&sc.status_replicas_path)});
    if !sc.label_selector_path.is_empty() {
        if let Some(sel) = at_path(v, &sc.label_selector_path).and_then(Value::as_str) {
            status["selector"] = json!(sel);
        }
    }
    let mut meta = json!({
        "name": store::meta_str(v, "name"),
        "uid": store::meta_str(v, "uid"),
        "resourceVersion": rev.to_string(),
        "creationTimestamp": store::meta_str(v, "creationTimestamp"),
    });
    if res.namespaced {
        meta["namespace"] = json!(store::meta_str(v, "namespace"));
    }
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": meta,
        "spec": {"replicas": int(&sc.spec_replicas_path)},
        "status": status,
    })
}

/// `.../scale`: GET the Scale; PUT or PATCH one, which sets the object's
/// replicas (a compare-and-swap on the object read, retried unless the
/// Scale names a resourceVersion).
#[allow(clippy::too_many_arguments)]
async fn scale(
    http: &Http,
    who: &Identity,
    method: Method,
    headers: &HeaderMap,
    res: &Resource,
    target: &Target,
    query: &HashMap<String, String>,
    body: &Bytes,
) -> Result<Response, Failure> {
    let Some(name) = target.name.clone() else {
        return Err(Failure::no_such_path());
    };
    let Some(sc) = res.scale.clone() else {
        return Err(Failure::no_such_path());
    };
    let registry = &http.api.registry;
    let key = res.key(&target.namespace, &name);
    let read_scale = || async {
        let cur = registry
            .read_json(&key, true)
            .await?
            .ok_or_else(|| not_found(res, &name))?;
        let scale = scale_of(res, &cur.value, cur.mod_revision);
        Ok::<_, Failure>((cur, scale))
    };
    let change: Box<dyn Fn(Value) -> Result<Value, Failure> + Send + Sync> = match method {
        Method::GET => {
            authorize(who, "get", res, &name)?;
            let (_, scale) = read_scale().await?;
            return Ok(json_response(StatusCode::OK, &scale));
        }
        Method::PUT => {
            let v = body_value(headers, body)?;
            Box::new(move |_| Ok(v.clone()))
        }
        Method::PATCH => {
            let p = match Patch::parse(headers, body)? {
                Patch::Strategic(s) => Patch::Merge(s),
                p => p,
            };
            Box::new(move |mut scale| {
                p.apply(&mut scale, "Scale")?;
                Ok(scale)
            })
        }
        m => {
            return Err(Failure::new(
                405,
                "MethodNotAllowed",
                format!("{m} is not allowed on the scale of {}", res.qualified()),
            ))
        }
    };
    authorize(who, "update", res, &name)?;
    let commit = commit_of(query)?;
    let replica_target = Target {
        subresource: None,
        ..target.clone()
    };
    for _ in 0..PATCH_ATTEMPTS_MAX {
        let (cur, before) = read_scale().await?;
        let mut unpinned = before.clone();
        if let Some(m) = unpinned.get_mut("metadata").and_then(Value::as_object_mut) {
            m.remove("resourceVersion");
        }
        let wanted = change(unpinned)?;
        let own_rv = wanted
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        if !own_rv.is_empty() && own_rv != cur.mod_revision.to_string() {
            return Err(conflict(res, &name));
        }
        let replicas = wanted
            .pointer("/spec/replicas")
            .and_then(Value::as_i64)
            .filter(|r| *r >= 0 && i32::try_from(*r).is_ok())
            .ok_or_else(|| {
                invalid(
                    res,
                    &name,
                    &[
                        "spec.replicas: Invalid value: must be a non-negative 32-bit integer"
                            .into(),
                    ],
                )
            })?;
        let mut new = served(cur.value.clone(), res);
        set_path(&mut new, &sc.spec_replicas_path, json!(replicas))?;
        match replace(http, res, &replica_target, &name, &cur, new, query, commit).await {
            Ok((stored, _)) => {
                let rev = store::meta_str(&stored, "resourceVersion")
                    .parse()
                    .unwrap_or(cur.mod_revision);
                return Ok(json_response(StatusCode::OK, &scale_of(res, &stored, rev)));
            }
            Err(Some(f)) => return Err(f),
            Err(None) if own_rv.is_empty() => continue,
            Err(None) => return Err(conflict(res, &name)),
        }
    }
    Err(conflict(res, &name))
}

/// The named groups custom kinds (and the CRDs) are served in, for
/// `/apis`: (group, served versions, preferred first).
pub fn groups(
    catalog: &Catalog,
    registry: &crate::registry::Registry,
) -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = vec![(
        definition::GROUP.to_string(),
        vec![definition::VERSION.to_string()],
    )];
    let Ok(entries) = catalog.load(registry) else {
        return out;
    };
    for d in super::established(&entries) {
        let versions: Vec<String> = d.served_versions().map(|v| v.name.clone()).collect();
        if versions.is_empty() {
            continue;
        }
        match out.iter_mut().find(|(g, _)| *g == d.group) {
            Some((_, vs)) => {
                for v in versions {
                    if !vs.contains(&v) {
                        vs.push(v);
                    }
                }
            }
            None => out.push((d.group.clone(), versions)),
        }
    }
    out
}

/// `APIGroup` entries of `/apis` for the custom groups.
pub fn api_groups(groups: &[(String, Vec<String>)]) -> Vec<Value> {
    groups
        .iter()
        .map(|(g, vs)| {
            let gv = |v: &String| json!({"groupVersion": format!("{g}/{v}"), "version": v});
            json!({
                "name": g,
                "versions": vs.iter().map(gv).collect::<Vec<_>>(),
                "preferredVersion": vs.first().map(gv).unwrap_or(Value::Null),
            })
        })
        .collect()
}

/// The resources served at a custom group version, as discovery lists
/// them: (resource, its status subresource?) pairs.
fn resources_at(
    catalog: &Catalog,
    registry: &crate::registry::Registry,
    group: &str,
    version: &str,
) -> Vec<Resource> {
    if group == definition::GROUP {
        return if version == definition::VERSION {
            vec![Resource::definitions()]
        } else {
            Vec::new()
        };
    }
    let Ok(entries) = catalog.load(registry) else {
        return Vec::new();
    };
    entries
        .iter()
        .filter(|e| e.definition.established && e.definition.group == group)
        .filter_map(|e| e.resource(version))
        .collect()
}

fn short_names(
    catalog: &Catalog,
    registry: &crate::registry::Registry,
    r: &Resource,
) -> (Vec<String>, Vec<String>) {
    if r.is_definitions() {
        return (
            definition::SHORT_NAMES
                .iter()
                .map(|s| s.to_string())
                .collect(),
            Vec::new(),
        );
    }
    catalog
        .load(registry)
        .ok()
        .and_then(|entries| {
            entries
                .iter()
                .find(|e| e.definition.group == r.group && e.definition.names.plural == r.plural)
                .map(|e| {
                    (
                        e.definition.names.short_names.clone(),
                        e.definition.names.categories.clone(),
                    )
                })
        })
        .unwrap_or_default()
}

/// `/apis/<group>/<version>` of a custom group.
pub fn api_resource_list(
    catalog: &Catalog,
    registry: &crate::registry::Registry,
    group: &str,
    version: &str,
) -> Option<Value> {
    let resources = resources_at(catalog, registry, group, version);
    if resources.is_empty() {
        return None;
    }
    let mut out = Vec::new();
    for r in &resources {
        let (short, categories) = short_names(catalog, registry, r);
        let mut entry = json!({
            "name": r.plural, "singularName": r.singular, "namespaced": r.namespaced,
            "kind": r.kind, "verbs": discovery::VERBS,
        });
        if !short.is_empty() {
            entry["shortNames"] = json!(short);
        }
        if !categories.is_empty() {
            entry["categories"] = json!(categories);
        }
        out.push(entry);
        if r.status {
            out.push(json!({
                "name": format!("{}/status", r.plural), "singularName": "",
                "namespaced": r.namespaced, "kind": r.kind, "verbs": ["get", "patch", "update"],
            }));
        }
        if r.scale.is_some() {
            out.push(json!({
                "name": format!("{}/scale", r.plural), "singularName": "",
                "namespaced": r.namespaced, "group": "autoscaling", "version": "v1",
                "kind": "Scale", "verbs": ["get", "patch", "update"],
            }));
        }
    }
    Some(json!({
        "kind": "APIResourceList", "apiVersion": "v1",
        "groupVersion": format!("{group}/{version}"), "resources": out,
    }))
}

/// Aggregated discovery items (`apidiscovery.k8s.io/v2`) of the custom
/// groups.
pub fn aggregated_items(catalog: &Catalog, registry: &crate::registry::Registry) -> Vec<Value> {
    groups(catalog, registry)
        .into_iter()
        .map(|(group, versions)| {
            let versions: Vec<Value> = versions
                .iter()
                .map(|version| {
                    let resources: Vec<Value> = resources_at(catalog, registry, &group, version)
                        .iter()
                        .map(|r| {
                            let (short, categories) = short_names(catalog, registry, r);
                            let kind_ref = json!({"group": group, "version": version, "kind": r.kind});
                            let mut e = json!({
                                "resource": r.plural, "responseKind": kind_ref,
                                "scope": if r.namespaced { "Namespaced" } else { "Cluster" },
                                "singularResource": r.singular, "verbs": discovery::VERBS,
                            });
                            if !short.is_empty() {
                                e["shortNames"] = json!(short);
                            }
                            if !categories.is_empty() {
                                e["categories"] = json!(categories);
                            }
                            let mut subresources = Vec::new();
                            if r.status {
                                subresources.push(json!({"subresource": "status",
                                    "responseKind": kind_ref, "verbs": ["get", "patch", "update"]}));
                            }
                            if r.scale.is_some() {
                                subresources.push(json!({"subresource": "scale",
                                    "responseKind": {"group": "autoscaling", "version": "v1", "kind": "Scale"},
                                    "verbs": ["get", "patch", "update"]}));
                            }
                            if !subresources.is_empty() {
                                e["subresources"] = Value::Array(subresources);
                            }
                            e
                        })
                        .collect();
                    json!({"version": version, "resources": resources, "freshness": "Current"})
                })
                .collect();
            json!({"metadata": {"name": group, "creationTimestamp": null}, "versions": versions})
        })
        .collect()
}

/// The OpenAPI v3 document of a custom group version: each kind's schema
/// (with its `x-kubernetes-group-version-kind`) and paths whose PATCH
/// operations take merge and JSON patches (no strategic merge: kubectl
/// then sends merge patches) and a `fieldValidation` parameter (kubectl
/// then relies on the server's validation).
pub fn openapi_document(
    catalog: &Catalog,
    registry: &crate::registry::Registry,
    group: &str,
    version: &str,
) -> Option<Value> {
    let resources = resources_at(catalog, registry, group, version);
    if resources.is_empty() {
        return None;
    }
    let mut schemas = Map::new();
    let mut paths = Map::new();
    let param = |name: &str, place: &str| json!({"name": name, "in": place, "schema": {"type": "string"}, "required": place == "path"});
    for r in &resources {
        let schema_name = format!("{}.{}.{}", reverse_domain(&r.group), r.version, r.kind);
        let gvk = json!({"group": r.group, "version": r.version, "kind": r.kind});
        let mut s = match &r.schema {
            Some((s, _)) => s.clone(),
            None => json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}),
        };
        if let Some(props) = s
            .as_object_mut()
            .map(|o| o.entry("properties").or_insert_with(|| json!({})))
            .and_then(Value::as_object_mut)
        {
            props.insert("apiVersion".into(), json!({"type": "string"}));
            props.insert("kind".into(), json!({"type": "string"}));
            props.insert("metadata".into(), json!({"type": "object"}));
        }
        s["x-kubernetes-group-version-kind"] = json!([gvk]);
        schemas.insert(schema_name.clone(), s);
        let reference = json!({"$ref": format!("#/components/schemas/{schema_name}")});
        let ok = json!({"200": {"description": "OK", "content": {"application/json": {"schema": reference}}}});
        let write_params = vec![
            param("dryRun", "query"),
            param("fieldManager", "query"),
            param("fieldValidation", "query"),
        ];
        let op = |action: &str, id: &str, mut params: Vec<Value>, body: Option<Value>| {
            if !matches!(action, "get" | "list") {
                params.extend(write_params.clone());
            }
            let mut o = json!({"operationId": id, "x-kubernetes-action": action,
                "x-kubernetes-group-version-kind": gvk, "parameters": params, "responses": ok});
            if let Some(b) = body {
                o["requestBody"] = json!({"required": true, "content": b});
            }
            o
        };
        let ns = if r.namespaced {
            "/namespaces/{namespace}"
        } else {
            ""
        };
        let collection = format!("/apis/{}/{}{ns}/{}", r.group, r.version, r.plural);
        let object = format!("{collection}/{{name}}");
        let ns_params = || {
            if r.namespaced {
                vec![param("namespace", "path")]
            } else {
                vec![]
            }
        };
        let name_params = || {
            let mut p = ns_params();
            p.push(param("name", "path"));
            p
        };
        let json_body = json!({"application/json": {"schema": reference}});
        let patch_body = json!({
            "application/json-patch+json": {"schema": {"type": "object"}},
            "application/merge-patch+json": {"schema": {"type": "object"}},
        });
        let k = &r.kind;
        paths.insert(
            collection.clone(),
            json!({
                "get": op("list", &format!("list{k}"), ns_params(), None),
                "post": op("post", &format!("create{k}"), ns_params(), Some(json_body.clone())),
            }),
        );
        paths.insert(
            object.clone(),
            json!({
                "get": op("get", &format!("read{k}"), name_params(), None),
                "put": op("put", &format!("replace{k}"), name_params(), Some(json_body.clone())),
                "patch": op("patch", &format!("patch{k}"), name_params(), Some(patch_body.clone())),
                "delete": op("delete", &format!("delete{k}"), name_params(), None),
            }),
        );
        if r.status {
            paths.insert(
                format!("{object}/status"),
                json!({
                    "get": op("get", &format!("read{k}Status"), name_params(), None),
                    "put": op("put", &format!("replace{k}Status"), name_params(), Some(json_body)),
                    "patch": op("patch", &format!("patch{k}Status"), name_params(), Some(patch_body)),
                }),
            );
        }
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes CRD Swagger", "version": "v0.1.0"},
        "paths": paths,
        "components": {"schemas": schemas},
    }))
}

/// `stable.example.com` -> `com.example.stable`, as schema names go.
fn reverse_domain(group: &str) -> String {
    group.split('.').rev().collect::<Vec<_>>().join(".")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_of_custom_resources() {
        let t = |ns: &str, plural: &str, name: Option<&str>, sub: Option<&str>| Target {
            plural: plural.into(),
            namespace: ns.into(),
            name: name.map(str::to_string),
            subresource: sub.map(str::to_string),
        };
        assert_eq!(parse_path("crontabs"), Some(t("", "crontabs", None, None)));
        assert_eq!(
            parse_path("namespaces/prod/crontabs/a/status"),
            Some(t("prod", "crontabs", Some("a"), Some("status")))
        );
        assert_eq!(
            parse_path("crontabs/a"),
            Some(t("", "crontabs", Some("a"), None))
        );
        assert_eq!(
            parse_path("namespaces/prod"),
            Some(t("", "namespaces", Some("prod"), None))
        );
        assert_eq!(parse_path("a/b/c/d"), None);
        assert_eq!(parse_path(""), None);
    }

    #[test]
    fn field_selectors_of_custom_resources() {
        let mut query = HashMap::new();
        query.insert("fieldSelector".to_string(), "metadata.name!=b".to_string());
        query.insert("labelSelector".to_string(), "app=web".to_string());
        let s = Selectors::parse(&query, None).unwrap_or_else(|f| panic!("{}", f.message));
        let o = |name: &str, app: &str| json!({"metadata": {"name": name, "labels": {"app": app}}});
        assert!(s.matches(&o("a", "web")));
        assert!(!s.matches(&o("b", "web")));
        assert!(!s.matches(&o("a", "db")));
        query.insert("fieldSelector".to_string(), "spec.x=1".to_string());
        assert!(Selectors::parse(&query, None).is_err());
    }

    #[test]
    fn schema_names_reverse_the_group() {
        assert_eq!(reverse_domain("stable.example.com"), "com.example.stable");
    }
}
