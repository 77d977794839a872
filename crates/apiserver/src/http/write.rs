//! Writes over HTTP: POST (create), PUT (update, and `status`), DELETE,
//! each calling the gRPC front end's request function
//! ([`crate::service::Api`]'s `create_inner`, `update_inner`,
//! `delete_inner`). Bodies are JSON (or YAML), decoded strictly: an
//! unknown field is refused naming its path, whatever `fieldValidation`
//! asks (Kubernetes' `Strict`). `dryRun` is refused before anything is
//! done, never half honoured. Not yet: PATCH, deletecollection, protobuf
//! bodies.

use std::collections::HashMap;
use std::time::Instant;

use axum::body::Bytes;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;
use keelson_model::{kind_of, manifest, meta_of_mut, Object};
use keelson_proto::api::DeleteRequest;
use serde::Deserialize;
use serde_json::Value;

use super::path::Target;
use super::status::Failure;
use super::{json_response, observe, q, Http};
use crate::auth::Identity;

/// The request body as JSON: `application/json` (the default) or
/// `application/yaml`; anything else (protobuf) is 415.
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
        other => Err(Failure::new(
            415,
            "UnsupportedMediaType",
            format!("the body's content type {other:?} is not served yet (send application/json)"),
        )),
    }
}

fn refuse_dry_run(query: &HashMap<String, String>) -> Result<(), Failure> {
    if q(query, "dryRun").is_empty() {
        Ok(())
    } else {
        Err(Failure::bad_request(
            "dryRun is not supported yet; nothing was changed",
        ))
    }
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
    if target.name.is_some() || target.subresource.is_some() {
        return Err(Failure::no_such_path());
    }
    if target.kind.namespaced() && target.namespace.is_empty() {
        return Err(Failure::bad_request(
            "a namespaced object is created in a namespace's path (namespaces/<ns>/...)",
        ));
    }
    refuse_dry_run(query)?;
    let obj = object_for(target, body_value(headers, body)?)?;
    let started = Instant::now();
    let r = http.api.create_inner(who, obj, 0).await;
    observe(http, "create", target.kind, &r, started);
    Ok(json_response(StatusCode::CREATED, &manifest::to_value(&r?)))
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
        _ => return Err(Failure::no_such_path()),
    };
    refuse_dry_run(query)?;
    let obj = object_for(target, body_value(headers, body)?)?;
    let started = Instant::now();
    let verb = if status_only {
        "update-status"
    } else {
        "update"
    };
    let r = http.api.update_inner(who, obj, 0, status_only).await;
    observe(http, verb, target.kind, &r, started);
    Ok(json_response(StatusCode::OK, &manifest::to_value(&r?)))
}

/// `DeleteOptions`, from a DELETE's body.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeleteOptions {
    #[serde(default)]
    grace_period_seconds: Option<i64>,
    #[serde(default)]
    propagation_policy: Option<String>,
    #[serde(default)]
    preconditions: Option<Preconditions>,
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

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Preconditions {
    #[serde(default)]
    uid: Option<String>,
    #[serde(default)]
    resource_version: Option<String>,
}

/// DELETE of an object.
pub async fn delete(
    http: &Http,
    who: &Identity,
    target: &Target,
    query: &HashMap<String, String>,
    body: &Bytes,
) -> Result<Response, Failure> {
    let Some(name) = &target.name else {
        return Err(Failure::new(
            405,
            "MethodNotAllowed",
            "deletecollection is not served yet; delete objects one by one",
        ));
    };
    if target.subresource.is_some() {
        return Err(Failure::no_such_path());
    }
    refuse_dry_run(query)?;
    let opts: DeleteOptions = if body.iter().all(u8::is_ascii_whitespace) {
        DeleteOptions::default()
    } else {
        serde_json::from_slice(body)
            .map_err(|e| Failure::bad_request(format!("DeleteOptions: {e}")))?
    };
    if !opts.dry_run.is_empty() {
        return Err(Failure::bad_request(
            "dryRun is not supported yet; nothing was changed",
        ));
    }
    let grace = match (opts.grace_period_seconds, q(query, "gracePeriodSeconds")) {
        (Some(g), _) => Some(g),
        (None, "") => None,
        (None, g) => Some(g.parse::<i64>().map_err(|_| {
            Failure::bad_request(format!("gracePeriodSeconds {g:?} is not a number"))
        })?),
    };
    let policy = opts
        .propagation_policy
        .unwrap_or_else(|| q(query, "propagationPolicy").to_string());
    let pre = opts.preconditions.unwrap_or_default();
    let req = DeleteRequest {
        resource: target.kind.plural().into(),
        namespace: target.namespace.clone(),
        name: name.clone(),
        grace_period_seconds: grace,
        propagation_policy: policy,
        precondition_uid: pre.uid.unwrap_or_default(),
        precondition_resource_version: pre.resource_version.unwrap_or_default(),
    };
    let started = Instant::now();
    let r = http.api.delete_inner(who, req).await;
    observe(http, "delete", target.kind, &r, started);
    let (object, _gone) = r?;
    Ok(json_response(StatusCode::OK, &manifest::to_value(&object)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use keelson_model::{meta_of, Kind};
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
        assert_eq!(body_value(&h, b"k8s\0").err().map(|f| f.code), Some(415));
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

    #[test]
    fn dry_run_is_refused_before_anything_happens() {
        let mut q = HashMap::new();
        assert!(refuse_dry_run(&q).is_ok());
        q.insert("dryRun".to_string(), "All".to_string());
        assert_eq!(refuse_dry_run(&q).err().map(|f| f.code), Some(400));
    }
}
