//! The Kubernetes HTTP API: a second front end over the same registry,
//! tokens, roles and validation as the gRPC services ([`crate::service`]):
//! the handlers build the same requests and call the same `*_inner`
//! functions, so one code path decides and two encodings speak.
//!
//! It listens on a port of its own (`--listen-kube-api`), always over TLS
//! ([`serve`]): kubectl and client-go send a kubeconfig's bearer token
//! only over TLS, while the gRPC API port serves plaintext clients (the
//! SDK, agents) unless the replica has a certificate. A replica without
//! one makes a self-signed certificate for this port at its first start,
//! as kube-apiserver does.
//!
//! Served: `/version`, `/healthz`, `/livez`, `/readyz`, discovery (`/api`,
//! `/apis`, `/api/v1`, `/apis/<group>/<version>`, subresources listed),
//! OpenAPI v3 ([`openapi`]), and for the 21 built-in kinds at their Kubernetes
//! paths: get and list (and get of `status`) as JSON or as server-side
//! tables, with `labelSelector`, `fieldSelector`, `limit`, `continue`,
//! `resourceVersion` and `resourceVersionMatch` ([`version_match`]);
//! watch ([`watch`]); POST, PUT, PATCH (merge, JSON and
//! strategic merge patches) of objects, `status` and `scale`, and DELETE,
//! each with `dryRun` and `fieldValidation`, and deletecollection
//! ([`write`]); bodies as JSON,
//! YAML or protobuf ([`protobuf`]); `pods/<name>/log`; `pods/<name>/exec`
//! over WebSocket ([`exec`]); `pods/<name>/portforward` over SPDY tunnelled
//! in a WebSocket ([`portforward`], [`spdy`]); the reviews ([`review`]);
//! CRDs and custom resources, for any group no built-in kind has
//! ([`crate::custom`]). Other methods answer
//! 405 MethodNotAllowed, other subresources 404, a
//! protobuf-only `Accept` 406 (answers are JSON), server-side apply 415.
//!
//! # Layout
//! - [`discovery`]: the discovery documents (pure).
//! - [`exec`]: `kubectl exec` over WebSocket (channel protocol v5/v4).
//! - [`openapi`]: the OpenAPI v3 documents, from the types' schema (pure).
//! - [`path`]: a resource path -> [`path::Target`] (pure).
//! - [`portforward`]: `kubectl port-forward`'s session, relayed to agents.
//! - [`spdy`]: SPDY/3.1 frames and header blocks (pure).
//! - [`protobuf`]: protobuf request bodies -> JSON (pure).
//! - [`review`]: `kubectl auth whoami` and `auth can-i` (pure).
//! - [`table`]: server-side tables (pure).
//! - [`status`]: errors as `metav1.Status` with Kubernetes' codes (pure).
//! - [`serve`]: the TLS listener (h2 and http/1.1 by ALPN, deadlines).
//! - [`watch`]: watch streams as JSON lines.
//! - [`write`]: create, update and delete bodies and options.
//! - this file: the router and the handlers (authentication, the shared
//!   request functions, encoding).

pub mod discovery;
pub mod exec;
pub mod openapi;
pub mod path;
pub mod portforward;
pub mod protobuf;
pub mod review;
pub mod serve;
pub mod spdy;
pub mod status;
pub mod table;
pub mod watch;
pub mod write;

use std::collections::HashMap;
use std::time::{Instant, SystemTime};

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::Router;
use keelson_model::{manifest, Kind, Object};
use keelson_proto::api::{GetRequest, ListRequest};
use serde_json::{json, Value};

use crate::auth::Identity;
use crate::custom;
use crate::error::Error;
use crate::service::Api;
use status::Failure;
use table::Include;

/// The content type of every JSON answer.
const JSON: &str = "application/json";

/// What the handlers share.
#[derive(Clone)]
pub struct Http {
    pub api: Api,
    /// This replica's API address, as `/api` advertises it.
    pub server_address: String,
    /// The custom resource definitions this replica serves from.
    pub custom: std::sync::Arc<crate::custom::Catalog>,
}

/// The Kubernetes routes, to merge into the port's router (which sets
/// [`no_such_path`] as its fallback: a router merged into another must
/// have none).
pub fn routes(http: Http) -> Router {
    Router::new()
        .route("/version", get(version))
        .route("/healthz", get(health))
        .route("/livez", get(health))
        .route("/readyz", get(health))
        .route("/api", get(api_versions))
        .route("/api/", get(api_versions))
        .route("/apis", get(api_groups))
        .route("/apis/", get(api_groups))
        .route("/api/v1", get(core_resources))
        .route("/api/v1/", get(core_resources))
        .route("/apis/{group}/{version}", get(group_resources))
        .route("/apis/{group}/{version}/", get(group_resources))
        .route("/openapi/v3", get(openapi_index))
        .route("/openapi/v3/", get(openapi_index))
        .route("/openapi/v3/{*path}", get(openapi_document))
        .route(
            "/apis/authentication.k8s.io/v1/selfsubjectreviews",
            post(whoami),
        )
        .route(
            "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
            post(can_i),
        )
        .route(
            "/apis/authorization.k8s.io/v1/selfsubjectrulesreviews",
            post(rules_review),
        )
        .route(
            "/api/v1/namespaces/{namespace}/pods/{name}/exec",
            any(pod_exec),
        )
        .route(
            "/api/v1/namespaces/{namespace}/pods/{name}/portforward",
            any(pod_port_forward),
        )
        .route("/api/v1/{*rest}", any(core_object))
        .route("/apis/{group}/{version}/{*rest}", any(group_object))
        .method_not_allowed_fallback(not_allowed)
        .with_state(http)
}

/// The largest request body accepted (Kubernetes' limit, 3 MiB).
pub const BODY_BYTES_MAX: usize = 3 * 1024 * 1024;

/// How long a client may take to send a request's body.
const BODY_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// Middleware for every request of the port (routes and fallback): read
/// the body whole, up to [`BODY_BYTES_MAX`] and within
/// [`BODY_READ_TIMEOUT`], before any handler runs. A body never left half
/// read means a kept-alive connection is never closed under a client that
/// is about to reuse it; one too big or too slow is answered with a
/// `Status` (413, 408) and `Connection: close`.
pub async fn buffer_body(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let (parts, body) = req.into_parts();
    let closing = |f: Failure| {
        let mut r = f.into_response();
        r.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        r
    };
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    let too_large = || {
        Failure::new(
            413,
            "RequestEntityTooLarge",
            format!("the request body is larger than the limit of {BODY_BYTES_MAX} bytes"),
        )
    };
    if declared.is_some_and(|n| n > BODY_BYTES_MAX) {
        return closing(too_large());
    }
    let bytes = match tokio::time::timeout(
        BODY_READ_TIMEOUT,
        axum::body::to_bytes(body, BODY_BYTES_MAX),
    )
    .await
    {
        Ok(Ok(b)) => b,
        Ok(Err(_)) => return closing(too_large()),
        Err(_) => {
            return closing(Failure::new(
                408,
                "Timeout",
                format!(
                    "the request body did not arrive within {} s",
                    BODY_READ_TIMEOUT.as_secs()
                ),
            ))
        }
    };
    next.run(axum::extract::Request::from_parts(
        parts,
        axum::body::Body::from(bytes),
    ))
    .await
}

/// The Kubernetes verb of an HTTP request (what RBAC and the audit log
/// call it).
pub(crate) fn verb_of(method: &Method, named: bool, query: &str) -> &'static str {
    let watch = form_urlencoded::parse(query.as_bytes())
        .any(|(k, v)| k == "watch" && (v == "1" || v == "true"));
    match *method {
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE if named => "delete",
        Method::DELETE => "deletecollection",
        _ if watch => "watch",
        _ if named => "get",
        _ => "list",
    }
}

/// The object a path names, for the audit log: (group/version, target).
fn audit_target(path: &str) -> Option<(String, path::Target)> {
    if let Some(rest) = path.strip_prefix("/api/v1/") {
        return path::parse("", "v1", rest)
            .ok()
            .map(|t| ("v1".to_string(), t));
    }
    let rest = path.strip_prefix("/apis/")?;
    let mut parts = rest.splitn(3, '/');
    let (group, version, rest) = (parts.next()?, parts.next()?, parts.next()?);
    path::parse(group, version, rest)
        .ok()
        .map(|t| (format!("{group}/{version}"), t))
}

/// Middleware for every request of the port: the audit log's line for it
/// (when the replica keeps one and wants the verb).
pub async fn audit(
    State(http): State<Http>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let Some(log) = http.api.audit.clone() else {
        return next.run(req).await;
    };
    let target = audit_target(req.uri().path());
    let named = target.as_ref().is_some_and(|(_, t)| t.name.is_some());
    let verb = verb_of(req.method(), named, req.uri().query().unwrap_or(""));
    if !log.wants(verb) {
        return next.run(req).await;
    }
    let received = SystemTime::now();
    let started = Instant::now();
    let uri = req
        .uri()
        .path_and_query()
        .map_or_else(|| req.uri().path().to_string(), |p| p.to_string());
    let who = authenticate(&http, req.headers()).ok();
    let user_agent = req
        .headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let mut resp = next.run(req).await;
    // A create names its object in the body, which may be protobuf; the
    // answer (always JSON, small) names it too, generated names included.
    let mut created = String::new();
    if verb == "create"
        && target
            .as_ref()
            .is_some_and(|(_, t)| t.subresource.is_none())
    {
        let (parts, body) = resp.into_parts();
        let bytes = axum::body::to_bytes(body, BODY_BYTES_MAX)
            .await
            .unwrap_or_default();
        if let Ok(v) = serde_json::from_slice::<Value>(&bytes) {
            let name = v["metadata"]["name"]
                .as_str()
                .or_else(|| v["details"]["name"].as_str());
            created = name.unwrap_or("").to_string();
        }
        resp = Response::from_parts(parts, axum::body::Body::from(bytes));
    }
    let object = target.as_ref().map(|(gv, t)| crate::audit::ObjectRef {
        resource: t.kind.plural(),
        namespace: &t.namespace,
        name: t.name.as_deref().unwrap_or(&created),
        api_version: gv,
        subresource: t.subresource.as_deref().unwrap_or(""),
    });
    log.record(crate::audit::Entry {
        verb,
        request_uri: &uri,
        user: who.as_ref().map_or("", |w| w.user.as_str()),
        groups: who
            .as_ref()
            .map(|w| vec![format!("keelson:{}", w.role.as_str())])
            .unwrap_or_default(),
        object,
        code: resp.status().as_u16(),
        received,
        latency: started.elapsed(),
        user_agent: &user_agent,
        via: "kubernetes",
    });
    resp
}

/// A JSON answer.
pub(crate) fn json_response(code: StatusCode, body: &Value) -> Response {
    let mut r = (code, body.to_string()).into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(JSON));
    r
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let code = StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut r = json_response(code, &self.body());
        if let Some(secs) = self.retry_after() {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        r
    }
}

/// Any path nobody serves: 404 with a `Status`.
pub async fn no_such_path() -> Failure {
    Failure::no_such_path()
}

async fn not_allowed(method: Method) -> Failure {
    Failure::new(
        405,
        "MethodNotAllowed",
        format!("the server does not allow this method on the requested resource ({method} is not served over HTTP yet)"),
    )
}

async fn version() -> Response {
    json_response(StatusCode::OK, &discovery::version())
}

async fn health() -> &'static str {
    "ok"
}

fn authenticate(http: &Http, headers: &HeaderMap) -> Result<Identity, Failure> {
    let header = headers
        .get(header::AUTHORIZATION)
        .map(|h| h.to_str().unwrap_or(""));
    Ok(http.api.tokens.authenticate_header(header)?)
}

/// Whether the `Accept` asks for aggregated discovery.
fn wants_aggregated(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|a| a.to_str().ok())
        .is_some_and(discovery::wants_aggregated)
}

/// An aggregated discovery answer.
fn aggregated_response(list: &Value) -> Response {
    let mut r = json_response(StatusCode::OK, list);
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(discovery::AGGREGATED),
    );
    r
}

async fn api_versions(State(http): State<Http>, headers: HeaderMap) -> Result<Response, Failure> {
    authenticate(&http, &headers)?;
    if wants_aggregated(&headers) {
        return Ok(aggregated_response(&discovery::aggregated(true)));
    }
    Ok(json_response(
        StatusCode::OK,
        &discovery::api_versions(&http.server_address),
    ))
}

async fn api_groups(State(http): State<Http>, headers: HeaderMap) -> Result<Response, Failure> {
    authenticate(&http, &headers)?;
    if wants_aggregated(&headers) {
        let mut list = discovery::aggregated(false);
        if let Some(items) = list["items"].as_array_mut() {
            items.extend(custom::http::aggregated_items(
                &http.custom,
                &http.api.registry,
            ));
        }
        return Ok(aggregated_response(&list));
    }
    let custom_groups = custom::http::groups(&http.custom, &http.api.registry);
    let mut list = discovery::api_group_list();
    if let Some(groups) = list["groups"].as_array_mut() {
        groups.extend(custom::http::api_groups(&custom_groups));
    }
    Ok(json_response(StatusCode::OK, &list))
}

async fn openapi_index(State(http): State<Http>, headers: HeaderMap) -> Result<Response, Failure> {
    authenticate(&http, &headers)?;
    let mut index = openapi::index();
    for (group, versions) in custom::http::groups(&http.custom, &http.api.registry) {
        for version in versions {
            if let Some(doc) =
                custom::http::openapi_document(&http.custom, &http.api.registry, &group, &version)
            {
                let path = format!("apis/{group}/{version}");
                index["paths"][&path] = json!({"serverRelativeURL": format!(
                    "/openapi/v3/{path}?hash={}",
                    openapi::hash_of(&doc)
                )});
            }
        }
    }
    Ok(json_response(StatusCode::OK, &index))
}

async fn openapi_document(
    State(http): State<Http>,
    headers: HeaderMap,
    Path(path): Path<String>,
) -> Result<Response, Failure> {
    authenticate(&http, &headers)?;
    if let Some(doc) = openapi::document_at(&path) {
        return Ok(json_response(StatusCode::OK, doc));
    }
    let custom_doc = path
        .trim_matches('/')
        .strip_prefix("apis/")
        .and_then(|gv| gv.split_once('/'))
        .and_then(|(group, version)| {
            custom::http::openapi_document(&http.custom, &http.api.registry, group, version)
        })
        .ok_or_else(Failure::no_such_path)?;
    Ok(json_response(StatusCode::OK, &custom_doc))
}

async fn whoami(State(http): State<Http>, headers: HeaderMap) -> Result<Response, Failure> {
    let who = authenticate(&http, &headers)?;
    Ok(json_response(
        StatusCode::CREATED,
        &review::self_subject_review(&who),
    ))
}

async fn can_i(
    State(http): State<Http>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Failure> {
    let who = authenticate(&http, &headers)?;
    let value = write::body_value(&headers, &body)?;
    Ok(json_response(
        StatusCode::CREATED,
        &review::self_subject_access_review(&who, &value)?,
    ))
}

async fn rules_review(
    State(http): State<Http>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Failure> {
    let who = authenticate(&http, &headers)?;
    let value = write::body_value(&headers, &body)?;
    let custom_groups: Vec<String> = custom::http::groups(&http.custom, &http.api.registry)
        .into_iter()
        .map(|(g, _)| g)
        .collect();
    Ok(json_response(
        StatusCode::CREATED,
        &review::self_subject_rules_review(&who, &value, &custom_groups)?,
    ))
}

async fn core_resources(State(http): State<Http>, headers: HeaderMap) -> Result<Response, Failure> {
    resources_at(&http, &headers, "", "v1")
}

async fn group_resources(
    State(http): State<Http>,
    headers: HeaderMap,
    Path((group, version)): Path<(String, String)>,
) -> Result<Response, Failure> {
    resources_at(&http, &headers, &group, &version)
}

fn resources_at(
    http: &Http,
    headers: &HeaderMap,
    group: &str,
    version: &str,
) -> Result<Response, Failure> {
    authenticate(http, headers)?;
    let list = discovery::api_resource_list(group, version)
        .or_else(|| {
            custom::http::api_resource_list(&http.custom, &http.api.registry, group, version)
        })
        .ok_or_else(Failure::no_such_path)?;
    Ok(json_response(StatusCode::OK, &list))
}

/// The WebSocket subprotocols a request offers, comma-separated (every
/// `Sec-WebSocket-Protocol` header).
fn offered_protocols(headers: &HeaderMap) -> String {
    headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect::<Vec<_>>()
        .join(",")
}

/// A WebSocket upgrade, if the request asked for one.
type Upgrade = Result<
    axum::extract::ws::WebSocketUpgrade,
    axum::extract::ws::rejection::WebSocketUpgradeRejection,
>;

/// `pods/<name>/exec`: checked, then upgraded to a WebSocket relayed to
/// the agent ([`exec`]).
async fn pod_exec(
    State(http): State<Http>,
    headers: HeaderMap,
    Path((namespace, name)): Path<(String, String)>,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
    ws: Upgrade,
) -> Result<Response, Failure> {
    let started = Instant::now();
    let who = authenticate(&http, &headers)?;
    let q = exec::parse_query(query.as_deref().unwrap_or(""))?;
    let start = exec::start_of(&namespace, &name, &q);
    let r = http.api.exec_target(&who, &start).await;
    observe(&http, "exec", Kind::Pod, &r, started);
    let target = r?;
    let offered = offered_protocols(&headers);
    let (ws, protocol) = match (ws, exec::choose_protocol(&offered)) {
        (Ok(ws), Some(p)) => (ws, p),
        _ => {
            return Err(Failure::bad_request(format!(
            "exec is served over WebSocket with subprotocol {} or {} only (SPDY is not supported)",
            exec::V5,
            exec::V4
        )))
        }
    };
    let r = http.api.exec_start(target, start).await;
    if r.is_err() {
        observe(&http, "exec", Kind::Pod, &r, started);
    }
    let (tx, outputs) = r?;
    Ok(exec::upgrade(ws, protocol, q, tx, outputs))
}

/// `pods/<name>/portforward`: checked, then upgraded to a WebSocket that
/// carries kubectl's SPDY session ([`portforward`]).
async fn pod_port_forward(
    State(http): State<Http>,
    headers: HeaderMap,
    Path((namespace, name)): Path<(String, String)>,
    ws: Upgrade,
) -> Result<Response, Failure> {
    let started = Instant::now();
    let who = authenticate(&http, &headers)?;
    let r = http.api.port_forward_target(&who, &namespace, &name).await;
    observe(&http, "portforward", Kind::Pod, &r, started);
    let target = r?;
    let offered = offered_protocols(&headers);
    let wanted = offered
        .split(',')
        .any(|p| p.trim() == portforward::PROTOCOL);
    let ws = match ws {
        Ok(ws) if wanted => ws,
        _ => {
            return Err(Failure::bad_request(format!(
                "port-forward is served over WebSocket with subprotocol {} only (plain SPDY is not supported)",
                portforward::PROTOCOL
            )))
        }
    };
    let api = http.api.clone();
    Ok(ws
        .protocols([portforward::PROTOCOL])
        .on_upgrade(move |socket| portforward::serve(socket, api, target)))
}

async fn core_object(
    State(http): State<Http>,
    method: Method,
    headers: HeaderMap,
    Path(rest): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    body: Bytes,
) -> Result<Response, Failure> {
    let target = path::parse("", "v1", &rest)?;
    object(&http, method, &headers, target, &query, &body).await
}

async fn group_object(
    State(http): State<Http>,
    method: Method,
    headers: HeaderMap,
    Path((group, version, rest)): Path<(String, String, String)>,
    Query(query): Query<HashMap<String, String>>,
    body: Bytes,
) -> Result<Response, Failure> {
    if !discovery::groups().iter().any(|(g, _)| *g == group) {
        // A group no built-in kind has: CRDs and custom resources.
        let who = authenticate(&http, &headers)?;
        return custom::http::object(
            &http, &who, method, &headers, &group, &version, &rest, &query, &body,
        )
        .await;
    }
    let target = path::parse(&group, &version, &rest)?;
    object(&http, method, &headers, target, &query, &body).await
}

/// A request on a resource path, by method.
#[tracing::instrument(name = "http", skip_all, fields(method = %method, kind = %target.kind, namespace = %target.namespace, name = target.name.as_deref().unwrap_or("")))]
async fn object(
    http: &Http,
    method: Method,
    headers: &HeaderMap,
    target: path::Target,
    query: &HashMap<String, String>,
    body: &Bytes,
) -> Result<Response, Failure> {
    let who = authenticate(http, headers)?;
    match method {
        Method::GET => read(http, &who, headers, target, query).await,
        Method::POST => write::create(http, &who, headers, &target, query, body).await,
        Method::PUT => write::update(http, &who, headers, &target, query, body).await,
        Method::PATCH => write::patch(http, &who, headers, &target, query, body).await,
        Method::DELETE => write::delete(http, &who, &target, query, body).await,
        m => Err(not_allowed(m).await),
    }
}

/// How the client wants its answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Json,
    Table,
}

/// From the `Accept` header: a table when one of its types asks for
/// `as=Table`, JSON when it takes JSON (or anything); else none we speak.
pub(crate) fn format_of(headers: &HeaderMap) -> Result<Format, Failure> {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    if accept.trim().is_empty() {
        return Ok(Format::Json);
    }
    let types: Vec<&str> = accept.split(',').map(str::trim).collect();
    if types
        .iter()
        .any(|t| t.starts_with("application/json") && t.contains("as=Table"))
    {
        return Ok(Format::Table);
    }
    if types.iter().any(|t| {
        let base = t.split(';').next().unwrap_or("").trim();
        (base == JSON || base == "*/*" || base == "application/*") && !t.contains("as=")
    }) {
        return Ok(Format::Json);
    }
    Err(Failure::not_acceptable(format!(
        "only application/json (and its Table form) is served over HTTP yet, not {accept:?}"
    )))
}

/// A GET of a resource path: one object, a list, or a watch.
async fn read(
    http: &Http,
    who: &Identity,
    headers: &HeaderMap,
    target: path::Target,
    query: &HashMap<String, String>,
) -> Result<Response, Failure> {
    let format = format_of(headers)?;
    let include = Include::parse(q(query, "includeObject"))
        .ok_or_else(|| Failure::bad_request("includeObject must be None, Metadata or Object"))?;
    let kind = target.kind;
    let resource_version = q(query, "resourceVersion").to_string();
    if matches!(q(query, "watch"), "true" | "1") {
        if target.subresource.is_some() {
            return Err(Failure::no_such_path());
        }
        let initial_events = watch::send_initial_events(query)?;
        let mut req = watch::request(
            kind,
            &target.namespace,
            target.name.as_deref(),
            q(query, "labelSelector"),
            q(query, "fieldSelector"),
            &resource_version,
            q(query, "allowWatchBookmarks") == "true" && format == Format::Json,
        );
        req.send_initial_events = initial_events;
        let timeout = watch::timeout_of(q(query, "timeoutSeconds"))?;
        let started = Instant::now();
        let r = http.api.watch_inner(who, &req);
        observe(http, "watch", kind, &r, started);
        let enc = watch::Encoding {
            kind,
            format,
            include,
        };
        return Ok(watch::response(r?, enc, timeout, initial_events));
    }
    let started = Instant::now();
    match (&target.name, target.subresource.as_deref()) {
        (Some(name), None | Some("status")) => {
            let o = get_object(http, who, &target, name, resource_version).await?;
            Ok(match format {
                Format::Json => json_response(StatusCode::OK, &manifest::to_value(&o)),
                Format::Table => {
                    let rv = keelson_model::meta_of(&o)
                        .map(|m| m.resource_version.clone())
                        .unwrap_or_default();
                    let t = table::table(
                        kind,
                        std::slice::from_ref(&o),
                        json!({ "resourceVersion": rv }),
                        include,
                        SystemTime::now(),
                    );
                    json_response(StatusCode::OK, &t)
                }
            })
        }
        (Some(name), Some("log")) if kind == Kind::Pod => {
            logs(http, who, &target.namespace, name, query).await
        }
        (Some(name), Some("scale")) if kind.has_scale() => {
            let o = get_object(http, who, &target, name, resource_version).await?;
            Ok(json_response(StatusCode::OK, &write::scale_of(&o)?))
        }
        (Some(_), Some(_)) => Err(Failure::no_such_path()),
        (None, _) => {
            let limit = match q(query, "limit") {
                "" => 0,
                l => l
                    .parse::<i64>()
                    .map_err(|_| Failure::bad_request(format!("limit {l:?} is not a number")))?,
            };
            let continue_token =
                version_match(&kind.prefix(&target.namespace), query, &resource_version)?;
            let req = ListRequest {
                resource: kind.plural().into(),
                namespace: target.namespace.clone(),
                label_selector: q(query, "labelSelector").into(),
                field_selector: q(query, "fieldSelector").into(),
                limit,
                continue_token,
                resource_version,
            };
            let r = http.api.list_inner(who, &req).await;
            observe(http, "list", kind, &r, started);
            let page = r?;
            let mut meta = json!({ "resourceVersion": page.resource_version });
            if !page.continue_token.is_empty() {
                meta["continue"] = json!(page.continue_token);
            }
            Ok(match format {
                Format::Json => json_response(StatusCode::OK, &list_json(kind, &page.items, meta)),
                Format::Table => json_response(
                    StatusCode::OK,
                    &table::table(kind, &page.items, meta, include, SystemTime::now()),
                ),
            })
        }
    }
}

/// The continue token a list starts from, by `resourceVersionMatch`:
/// the client's (NotOlderThan, the default), or for `Exact` a first page
/// read at exactly `resourceVersion` (a revision compacted since is 410
/// Expired, one in the future 400), as a continue token at that revision
/// starting before the first key under `prefix`.
pub(crate) fn version_match(
    prefix: &str,
    query: &HashMap<String, String>,
    resource_version: &str,
) -> Result<String, Failure> {
    let continue_token = q(query, "continue");
    match q(query, "resourceVersionMatch") {
        "" | "NotOlderThan" => Ok(continue_token.to_string()),
        "Exact" => {
            if !continue_token.is_empty() {
                return Err(Failure::bad_request(
                    "resourceVersionMatch is forbidden when continue is provided",
                ));
            }
            let rv = crate::registry::parse_revision(resource_version)?
                .filter(|r| *r > 0)
                .ok_or_else(|| {
                    Failure::bad_request(format!(
                        "resourceVersionMatch \"Exact\" needs a resourceVersion other than {resource_version:?}"
                    ))
                })?;
            // Names are never empty, so every key under the prefix sorts
            // after `<prefix>\0`, where a continue token starts.
            Ok(format!("{rv}:{}", crate::registry::hex(prefix.as_bytes())))
        }
        other => Err(Failure::bad_request(format!(
            "resourceVersionMatch {other:?} is not one of Exact, NotOlderThan"
        ))),
    }
}

/// One object the path names, read as `resourceVersion` asks ("": the
/// latest), counted and timed.
pub(crate) async fn get_object(
    http: &Http,
    who: &Identity,
    target: &path::Target,
    name: &str,
    resource_version: String,
) -> Result<Object, Failure> {
    let req = GetRequest {
        resource: target.kind.plural().into(),
        namespace: target.namespace.clone(),
        name: name.to_string(),
        resource_version,
    };
    let started = Instant::now();
    let r = http.api.get_inner(who, &req).await;
    observe(http, "get", target.kind, &r, started);
    Ok(r?)
}

/// `pods/<name>/log`: the container's log, relayed from its node's agent
/// as the gRPC `Logs` call does (`container`, `follow`, `previous`,
/// `tailLines`), as plain text, streamed while `follow` lasts.
async fn logs(
    http: &Http,
    who: &Identity,
    namespace: &str,
    name: &str,
    query: &HashMap<String, String>,
) -> Result<Response, Failure> {
    for p in ["sinceSeconds", "sinceTime", "limitBytes"] {
        if !q(query, p).is_empty() {
            return Err(Failure::bad_request(format!("{p} is not supported yet")));
        }
    }
    if q(query, "timestamps") == "true" {
        return Err(Failure::bad_request("timestamps is not supported yet"));
    }
    let tail_lines = match q(query, "tailLines") {
        "" => 0,
        t => t
            .parse::<i64>()
            .map_err(|_| Failure::bad_request(format!("tailLines {t:?} is not a number")))?,
    };
    let req = keelson_proto::api::LogsRequest {
        namespace: namespace.to_string(),
        name: name.to_string(),
        container: q(query, "container").to_string(),
        follow: q(query, "follow") == "true",
        tail_lines,
        previous: q(query, "previous") == "true",
    };
    let started = Instant::now();
    let r = http.api.logs_inner(who, req).await;
    observe(http, "logs", Kind::Pod, &r, started);
    // An agent that goes away mid-stream ends the log (as a closed
    // connection to the kubelet would).
    let chunks = futures::StreamExt::map(
        futures::StreamExt::take_while(r?, |c| futures::future::ready(c.is_ok())),
        |c| Ok::<_, std::convert::Infallible>(Bytes::from(c.map(|c| c.data).unwrap_or_default())),
    );
    let mut resp = Response::new(axum::body::Body::from_stream(chunks));
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    Ok(resp)
}

/// A query parameter, "" when absent.
pub(crate) fn q<'a>(query: &'a HashMap<String, String>, name: &str) -> &'a str {
    query.get(name).map_or("", String::as_str)
}

/// `PodList` and the like.
pub(crate) fn list_json(kind: Kind, items: &[Object], metadata: Value) -> Value {
    json!({
        "kind": format!("{}List", kind.name()),
        "apiVersion": kind.api_version(),
        "metadata": metadata,
        "items": items.iter().map(manifest::to_value).collect::<Vec<_>>(),
    })
}

/// Count and time a call, as the gRPC front end does.
pub(crate) fn observe<T>(
    http: &Http,
    verb: &str,
    kind: Kind,
    r: &Result<T, Error>,
    started: Instant,
) {
    let code = match r {
        Ok(_) => tonic::Code::Ok,
        Err(e) => e.code(),
    };
    http.api
        .metrics
        .observe(verb, kind.plural(), code, started.elapsed());
    if let Err(e) = r {
        if e.code() == tonic::Code::Internal {
            tracing::error!(verb, resource = kind.plural(), error = %e, "request failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Ok(v) = HeaderValue::from_str(v) {
            h.insert(header::ACCEPT, v);
        }
        h
    }

    #[test]
    fn accept_headers_pick_the_format() {
        let cases = [
            ("", Some(Format::Json)),
            ("application/json", Some(Format::Json)),
            ("*/*", Some(Format::Json)),
            // kubectl get
            ("application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json", Some(Format::Table)),
            // kubectl describe's second GET
            ("application/vnd.kubernetes.protobuf,application/json", Some(Format::Json)),
            ("application/vnd.kubernetes.protobuf", None),
            ("text/html", None),
        ];
        for (a, want) in cases {
            assert_eq!(format_of(&accept(a)).ok(), want, "{a}");
        }
        assert_eq!(
            format_of(&accept("text/html")).err().map(|f| f.code),
            Some(406)
        );
    }

    #[test]
    fn exact_lists_start_at_their_revision() {
        let q = |pairs: &[(&str, &str)]| -> HashMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let prefix = "/registry/pods/default/";
        assert_eq!(
            version_match(prefix, &q(&[("continue", "7:ab")]), "").ok(),
            Some("7:ab".into())
        );
        let exact = q(&[("resourceVersionMatch", "Exact")]);
        assert_eq!(
            version_match(prefix, &exact, "42").ok(),
            Some(format!("42:{}", crate::registry::hex(prefix.as_bytes())))
        );
        for (query, rv) in [
            (exact.clone(), "0"),
            (exact.clone(), ""),
            (exact.clone(), "x"),
            (
                q(&[("resourceVersionMatch", "Exact"), ("continue", "1:00")]),
                "42",
            ),
            (q(&[("resourceVersionMatch", "Newest")]), "42"),
        ] {
            assert_eq!(
                version_match(prefix, &query, rv).err().map(|f| f.code),
                Some(400),
                "{query:?} {rv}"
            );
        }
    }

    #[test]
    fn lists_are_named_after_their_kind() {
        let l = list_json(Kind::Deployment, &[], json!({"resourceVersion": "7"}));
        assert_eq!(l["kind"], "DeploymentList");
        assert_eq!(l["apiVersion"], "apps/v1");
        assert_eq!(l["items"], json!([]));
        assert_eq!(l["metadata"]["resourceVersion"], "7");
    }
}
