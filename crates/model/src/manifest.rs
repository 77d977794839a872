//! Kubernetes-style manifests: YAML (one or many documents) or JSON in,
//! typed objects out, and back. Field names are Kubernetes' (camelCase);
//! a field Keelson does not support is an error naming it with its path.

use crate::kinds::Resource as _;
use keelson_proto::api::Object;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::kinds::{kind_of, Kind};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("document {doc}: not valid YAML: {msg}")]
    Syntax { doc: usize, msg: String },
    #[error("document {doc}: {msg}")]
    Shape { doc: usize, msg: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Parse every document in `text` (YAML, of which JSON is a subset). Empty
/// documents are skipped; `kind: List` documents contribute their items.
pub fn parse(text: &str) -> Result<Vec<Object>> {
    let mut out = Vec::new();
    for (i, de) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let doc = i + 1;
        let value = serde_yaml::Value::deserialize_from(de, doc)?;
        if value.is_null() {
            continue;
        }
        let value: serde_json::Value = serde_json::to_value(&value).map_err(|e| Error::Shape {
            doc,
            msg: e.to_string(),
        })?;
        if value.get("kind").and_then(|k| k.as_str()) == Some("List") {
            let items = value
                .get("items")
                .and_then(|i| i.as_array())
                .cloned()
                .unwrap_or_default();
            for item in items {
                out.push(from_value(item).map_err(|msg| Error::Shape { doc, msg })?);
            }
            continue;
        }
        out.push(from_value(value).map_err(|msg| Error::Shape { doc, msg })?);
    }
    Ok(out)
}

trait DeserializeFrom {
    fn deserialize_from(de: serde_yaml::Deserializer<'_>, doc: usize) -> Result<serde_yaml::Value>;
}

impl DeserializeFrom for serde_yaml::Value {
    fn deserialize_from(de: serde_yaml::Deserializer<'_>, doc: usize) -> Result<serde_yaml::Value> {
        serde::Deserialize::deserialize(de).map_err(|e: serde_yaml::Error| Error::Syntax {
            doc,
            msg: e.to_string(),
        })
    }
}

/// One object from a JSON value with `apiVersion` and `kind`.
pub fn from_value(value: serde_json::Value) -> Result<Object, String> {
    let kind_name = value
        .get("kind")
        .and_then(|k| k.as_str())
        .ok_or("missing `kind`")?
        .to_string();
    let kind = Kind::ALL
        .into_iter()
        .find(|k| k.name() == kind_name)
        .ok_or_else(|| {
            format!(
                "kind {kind_name:?} is not supported (supported: {})",
                Kind::ALL.map(|k| k.name()).join(", ")
            )
        })?;
    let api_version = value
        .get("apiVersion")
        .and_then(|k| k.as_str())
        .ok_or("missing `apiVersion`")?;
    if api_version != kind.api_version() {
        return Err(format!(
            "{kind_name} has apiVersion {api_version:?}; keelson serves {kind_name} as {:?}",
            kind.api_version()
        ));
    }
    let name = value
        .pointer("/metadata/name")
        .and_then(|n| n.as_str())
        .unwrap_or("")
        .to_string();
    let what = if name.is_empty() {
        kind_name.clone()
    } else {
        format!("{kind_name} {name}")
    };
    let typed = |e: String| format!("{what}: {e}");
    Ok(crate::for_kind!(kind, T => typed_from::<T>(value).map_err(typed)?.into_object()))
}

/// Deserialize with the path of the offending field in the error:
/// `spec.template.spec.containers[0]: unknown field `foo``.
fn typed_from<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, String> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        // serde lists every expected field after an unknown one; the name
        // and the path are what the user needs.
        let inner = match inner.find(", expected") {
            Some(i) if inner.starts_with("unknown field") => {
                format!("{} (not supported by keelson)", &inner[..i])
            }
            _ => inner,
        };
        if path.is_empty() || path == "." {
            inner
        } else {
            format!("{path}: {inner}")
        }
    })
}

/// The object as Kubernetes-style JSON: `apiVersion` and `kind` filled in,
/// empty and unset fields left out.
pub fn to_value(o: &Object) -> serde_json::Value {
    let Some(kind) = kind_of(o) else {
        return serde_json::Value::Null;
    };
    let mut v = match o.kind.as_ref() {
        Some(k) => crate::with_object!(k, x => json(x)),
        None => serde_json::Value::Null,
    };
    if let serde_json::Value::Object(m) = &mut v {
        m.insert("apiVersion".into(), kind.api_version().into());
        m.insert("kind".into(), kind.name().into());
    }
    prune(&mut v);
    v
}

fn json<T: Serialize>(x: &T) -> serde_json::Value {
    // Serializing these generated types cannot fail: string keys, no
    // non-finite floats.
    serde_json::to_value(x).unwrap_or(serde_json::Value::Null)
}

/// Drop nulls, empty strings, empty lists and empty maps, recursively.
fn prune(v: &mut serde_json::Value) -> bool {
    use serde_json::Value;
    match v {
        Value::Null => false,
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => {
            a.retain_mut(prune_keep_item);
            !a.is_empty()
        }
        Value::Object(m) => {
            m.retain(|_, x| prune(x));
            !m.is_empty()
        }
        _ => true,
    }
}

/// List items are kept even when empty (a position means something).
fn prune_keep_item(v: &mut serde_json::Value) -> bool {
    prune(v);
    true
}

/// What a client decides about an object: everything but the status, with
/// metadata reduced to name, namespace, labels and annotations, defaults
/// applied. A manifest and the object the server stored from it compare
/// equal.
pub fn desired_state(o: &Object) -> serde_json::Value {
    let mut o = o.clone();
    crate::defaults::apply(&mut o);
    let mut v = to_value(&o);
    if let Some(map) = v.as_object_mut() {
        map.remove("status");
        if let Some(meta) = map.get_mut("metadata").and_then(|m| m.as_object_mut()) {
            meta.retain(|k, _| {
                matches!(k.as_str(), "name" | "namespace" | "labels" | "annotations")
            });
        }
    }
    v
}

/// The object as YAML.
pub fn to_yaml(o: &Object) -> String {
    serde_yaml::to_string(&to_value(o)).unwrap_or_default()
}

/// The object as pretty JSON.
pub fn to_json(o: &Object) -> String {
    serde_json::to_string_pretty(&to_value(o)).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use keelson_proto::v1;

    const DEPLOYMENT: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web}
spec:
  replicas: 3
  selector:
    matchLabels: {app: web}
  strategy:
    type: RollingUpdate
    rollingUpdate: {maxSurge: 1, maxUnavailable: 25%}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: builtin/http-echo
        imagePullPolicy: IfNotPresent
        ports:
        - containerPort: 8080
          name: http
        resources:
          requests: {cpu: 100m, memory: 64Mi}
        readinessProbe:
          httpGet: {path: /, port: http}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  clusterIP: 10.0.0.1
  ports:
  - port: 80
    targetPort: 8080
"#;

    #[test]
    fn parses_ordinary_manifests() {
        let objs = parse(DEPLOYMENT).expect("parse");
        assert_eq!(objs.len(), 2);
        let d = v1::Deployment::from_object(objs[0].clone()).expect("deployment");
        let spec = d.spec.as_ref().expect("spec");
        assert_eq!(spec.replicas, Some(3));
        let ru = spec
            .strategy
            .as_ref()
            .and_then(|s| s.rolling_update.as_ref())
            .expect("rolling update");
        assert_eq!(ru.max_surge, "1");
        assert_eq!(ru.max_unavailable, "25%");
        let c = &spec
            .template
            .as_ref()
            .and_then(|t| t.spec.as_ref())
            .expect("pod spec")
            .containers[0];
        assert_eq!(c.ports[0].container_port, 8080);
        assert_eq!(
            c.resources.as_ref().map(|r| r.requests["cpu"].as_str()),
            Some("100m")
        );
        let port = c
            .readiness_probe
            .as_ref()
            .and_then(|p| p.http_get.as_ref())
            .map(|h| h.port.as_str());
        assert_eq!(port, Some("http"));
        let s = v1::Service::from_object(objs[1].clone()).expect("service");
        let sspec = s.spec.expect("spec");
        assert_eq!(sspec.cluster_ip, "10.0.0.1");
        assert_eq!(sspec.ports[0].target_port, "8080");
    }

    #[test]
    fn unknown_field_is_named_with_its_path() {
        let text = "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n  - name: c\n    image: x\n    securityContext: {}\n";
        let err = parse(text).expect_err("unsupported field").to_string();
        assert!(err.contains("securityContext"), "{err}");
        assert!(err.contains("spec.containers[0]"), "{err}");
        assert!(err.contains("Pod p"), "{err}");
    }

    #[test]
    fn wrong_api_version_and_unknown_kind_are_errors() {
        let err = parse("apiVersion: v1\nkind: Deployment\nmetadata: {name: d}\n")
            .expect_err("apps/v1 only")
            .to_string();
        assert!(err.contains("apps/v1"), "{err}");
        let err = parse("apiVersion: v1\nkind: StorageClass\nmetadata: {name: d}\n")
            .expect_err("unknown kind")
            .to_string();
        assert!(err.contains("StorageClass"), "{err}");
        assert!(parse("a: [").is_err());
    }

    #[test]
    fn round_trips_through_yaml_without_empty_fields() {
        let objs = parse(DEPLOYMENT).expect("parse");
        for o in &objs {
            let yaml = to_yaml(o);
            assert!(!yaml.contains("null"), "{yaml}");
            assert!(!yaml.contains("''"), "{yaml}");
            assert!(yaml.starts_with("apiVersion:"), "{yaml}");
            let again = parse(&yaml).expect("reparse");
            assert_eq!(&again[0], o);
        }
        let yaml = to_yaml(&objs[0]);
        assert!(yaml.contains("maxSurge: 1\n"), "{yaml}");
        assert!(yaml.contains("maxUnavailable: 25%"), "{yaml}");
        let svc = to_json(&objs[1]);
        assert!(svc.contains("\"clusterIP\""), "{svc}");
        assert!(svc.contains("\"targetPort\": 8080"), "{svc}");
    }
}
