//! Protobuf request bodies (`application/vnd.kubernetes.protobuf`), the
//! encoding client-go's typed clients send (`kubectl create deployment`,
//! `create namespace`, `create service`), decoded into Kubernetes' JSON so
//! they take the same path as a JSON body.
//!
//! The wire form: the magic `k8s\0`, then a `runtime.Unknown` holding the
//! object's `apiVersion`/`kind` and its bytes, a message of Kubernetes' own
//! `generated.proto` (vendored under `crates/proto/proto/k8s.io`, compiled
//! to descriptors only). The bytes are decoded with those descriptors
//! ([`prost_reflect`]) and written as JSON the way Kubernetes' JSON reads:
//! `Time` as RFC 3339, `Quantity` as its string, `IntOrString` as a number
//! or a string, `RawExtension` as its JSON, `bytes` as base64. Go's
//! non-pointer fields are always on the wire, zero or not, so in Keelson's
//! kinds zero values are dropped where Keelson's type gives the field no
//! presence of its own ([`drop_wire_zeros`]); a zero on a field with
//! presence (`replicas: 0`) is kept.
//!
//! Answers stay JSON: client-go accepts a JSON answer to a protobuf
//! request.

use std::sync::OnceLock;

use base64::Engine;
use keelson_model::schema::{Schema, Shape};
use prost_reflect::{
    DescriptorPool, DynamicMessage, MapKey, MessageDescriptor, ReflectMessage, Value as PValue,
};
use serde_json::{Map, Value};

use super::status::Failure;

/// The magic every Kubernetes protobuf body starts with.
pub const MAGIC: &[u8] = b"k8s\0";

/// The media type.
pub const PROTOBUF: &str = "application/vnd.kubernetes.protobuf";

fn pool() -> Option<&'static DescriptorPool> {
    static POOL: OnceLock<Option<DescriptorPool>> = OnceLock::new();
    POOL.get_or_init(|| DescriptorPool::decode(keelson_proto::KUBERNETES_DESCRIPTORS).ok())
        .as_ref()
}

fn unsupported(msg: impl Into<String>) -> Failure {
    Failure::new(415, "UnsupportedMediaType", msg)
}

/// The protobuf package of an apiVersion served here.
fn package_of(api_version: &str) -> Option<&'static str> {
    match api_version {
        "v1" => Some("k8s.io.api.core.v1"),
        "apps/v1" => Some("k8s.io.api.apps.v1"),
        "coordination.k8s.io/v1" => Some("k8s.io.api.coordination.v1"),
        "authentication.k8s.io/v1" => Some("k8s.io.api.authentication.v1"),
        "authorization.k8s.io/v1" => Some("k8s.io.api.authorization.v1"),
        "policy/v1" => Some("k8s.io.api.policy.v1"),
        "batch/v1" => Some("k8s.io.api.batch.v1"),
        "rbac.authorization.k8s.io/v1" => Some("k8s.io.api.rbac.v1"),
        _ => None,
    }
}

/// A protobuf body as the JSON object it encodes (with `apiVersion` and
/// `kind`).
pub fn decode(body: &[u8]) -> Result<Value, Failure> {
    let pool =
        pool().ok_or_else(|| unsupported("protobuf descriptors are missing from this build"))?;
    let rest = body
        .strip_prefix(MAGIC)
        .ok_or_else(|| Failure::bad_request("a protobuf body must start with the k8s\\0 magic"))?;
    let unknown_desc = message(pool, "k8s.io.apimachinery.pkg.runtime.Unknown")?;
    let unknown = DynamicMessage::decode(unknown_desc, rest).map_err(|e| {
        Failure::bad_request(format!("the protobuf envelope cannot be decoded: {e}"))
    })?;
    let type_meta = match unknown.get_field_by_name("typeMeta").as_deref() {
        Some(PValue::Message(m)) => m.clone(),
        _ => {
            return Err(Failure::bad_request(
                "the protobuf envelope has no typeMeta",
            ))
        }
    };
    let text = |m: &DynamicMessage, f: &str| match m.get_field_by_name(f).as_deref() {
        Some(PValue::String(s)) => s.clone(),
        _ => String::new(),
    };
    let api_version = text(&type_meta, "apiVersion");
    let kind = text(&type_meta, "kind");
    let encoding = text(&unknown, "contentEncoding");
    if !encoding.is_empty() {
        return Err(unsupported(format!(
            "content encoding {encoding:?} is not served"
        )));
    }
    let raw = match unknown.get_field_by_name("raw").as_deref() {
        Some(PValue::Bytes(b)) => b.clone(),
        _ => Default::default(),
    };
    let package = package_of(&api_version)
        .ok_or_else(|| Failure::bad_request(format!("apiVersion {api_version:?} is not served")))?;
    let desc = pool
        .get_message_by_name(&format!("{package}.{kind}"))
        .ok_or_else(|| Failure::bad_request(format!("{kind:?} is not a kind of {api_version}")))?;
    let obj = DynamicMessage::decode(desc, raw)
        .map_err(|e| Failure::bad_request(format!("the protobuf {kind} cannot be decoded: {e}")))?;
    let mut v = message_json(&obj)?;
    if let Value::Object(m) = &mut v {
        m.insert("apiVersion".into(), api_version.into());
        m.insert("kind".into(), kind.clone().into());
    }
    // Only for Keelson's kinds: for the other bodies (reviews, bindings,
    // evictions) the handler reads the fields it needs, and their pointer
    // fields (an eviction's gracePeriodSeconds: 0) are on the wire only
    // when set, so a zero there is a value.
    if Schema::get().type_of(&kind).is_some() {
        drop_wire_zeros(&mut v, Some(&kind));
    }
    Ok(v)
}

fn message(pool: &DescriptorPool, name: &str) -> Result<MessageDescriptor, Failure> {
    pool.get_message_by_name(name)
        .ok_or_else(|| unsupported(format!("protobuf type {name} is missing from this build")))
}

const META: &str = "k8s.io.apimachinery.pkg.apis.meta.v1";

fn message_json(m: &DynamicMessage) -> Result<Value, Failure> {
    let name = m.descriptor().full_name().to_string();
    let field = |f: &str| m.get_field_by_name(f).map(|v| v.into_owned());
    let int = |f: &str| match field(f) {
        Some(PValue::I64(n)) => n,
        Some(PValue::I32(n)) => i64::from(n),
        _ => 0,
    };
    let string = |f: &str| match field(f) {
        Some(PValue::String(s)) => s,
        _ => String::new(),
    };
    let raw_json = |f: &str| -> Result<Value, Failure> {
        match field(f) {
            Some(PValue::Bytes(b)) if !b.is_empty() => serde_json::from_slice(&b).map_err(|e| {
                Failure::bad_request(format!(
                    "a raw JSON field in the protobuf body is not JSON: {e}"
                ))
            }),
            _ => Ok(Value::Null),
        }
    };
    match name.as_str() {
        n if n == format!("{META}.Time") || n == format!("{META}.MicroTime") => {
            let (secs, nanos) = (int("seconds"), int("nanos"));
            if secs == 0 && nanos == 0 {
                // Go's zero time, which its JSON writes as null.
                return Ok(Value::Null);
            }
            let t = std::time::UNIX_EPOCH
                .checked_add(std::time::Duration::from_secs(secs.max(0).unsigned_abs()))
                .ok_or_else(|| {
                    Failure::bad_request("a time in the protobuf body is out of range")
                })?;
            Ok(keelson_model::time::format_rfc3339(t).into())
        }
        n if n == format!("{META}.Duration") => {
            let ns = int("duration");
            Ok(if ns % 1_000_000_000 == 0 {
                format!("{}s", ns / 1_000_000_000)
            } else {
                format!("{ns}ns")
            }
            .into())
        }
        "k8s.io.apimachinery.pkg.api.resource.Quantity" => Ok(string("string").into()),
        "k8s.io.apimachinery.pkg.util.intstr.IntOrString" => Ok(if int("type") == 0 {
            int("intVal").into()
        } else {
            string("strVal").into()
        }),
        "k8s.io.apimachinery.pkg.runtime.RawExtension" => raw_json("raw"),
        n if n == format!("{META}.FieldsV1") => raw_json("Raw"),
        _ => {
            let mut out = Map::new();
            for (f, v) in m.fields() {
                out.insert(f.name().to_string(), value_json(v)?);
            }
            Ok(Value::Object(out))
        }
    }
}

fn value_json(v: &PValue) -> Result<Value, Failure> {
    Ok(match v {
        PValue::Bool(b) => (*b).into(),
        PValue::I32(n) => (*n).into(),
        PValue::I64(n) => (*n).into(),
        PValue::U32(n) => (*n).into(),
        PValue::U64(n) => (*n).into(),
        PValue::F32(n) => {
            serde_json::Number::from_f64(f64::from(*n)).map_or(Value::Null, Value::Number)
        }
        PValue::F64(n) => serde_json::Number::from_f64(*n).map_or(Value::Null, Value::Number),
        PValue::String(s) => s.clone().into(),
        PValue::Bytes(b) => base64::engine::general_purpose::STANDARD.encode(b).into(),
        PValue::EnumNumber(n) => (*n).into(),
        PValue::Message(m) => message_json(m)?,
        PValue::List(items) => {
            Value::Array(items.iter().map(value_json).collect::<Result<_, _>>()?)
        }
        PValue::Map(entries) => {
            let mut out = Map::new();
            for (k, v) in entries {
                let key = match k {
                    MapKey::String(s) => s.clone(),
                    MapKey::Bool(b) => b.to_string(),
                    MapKey::I32(n) => n.to_string(),
                    MapKey::I64(n) => n.to_string(),
                    MapKey::U32(n) => n.to_string(),
                    MapKey::U64(n) => n.to_string(),
                };
                out.insert(key, value_json(v)?);
            }
            Value::Object(out)
        }
    })
}

/// Whether a JSON value is what Go writes for a zero field.
fn is_zero(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(m) => m.is_empty(),
    }
}

/// Drop the zero values Go's protobuf writes for fields it always writes,
/// at any depth of an object of the type named `type_name` (Keelson's
/// schema): a zero is the same as absent for a field without presence
/// (every field of Keelson's types but the `optional` ones) and for a field
/// Keelson does not have. Objects left empty go too.
pub fn drop_wire_zeros(v: &mut Value, type_name: Option<&str>) {
    let schema = Schema::get();
    let ty = type_name.and_then(|n| schema.type_of(n));
    let Value::Object(m) = v else { return };
    for (k, x) in m.iter_mut() {
        let shape = ty.and_then(|t| t.field(k)).map(|f| &f.shape);
        match (shape, &mut *x) {
            (Some(Shape::Object(name)), x) => drop_wire_zeros(x, Some(name)),
            (Some(Shape::List(inner)), Value::Array(items)) => {
                let elem = match inner.as_ref() {
                    Shape::Object(name) => Some(name.as_str()),
                    _ => None,
                };
                items.iter_mut().for_each(|i| drop_wire_zeros(i, elem));
            }
            (Some(Shape::StringMap), _) => {}
            (None, x) => drop_wire_zeros(x, None),
            _ => {}
        }
    }
    m.retain(|k, x| {
        let optional = ty.and_then(|t| t.field(k)).is_some_and(|f| f.optional);
        !is_zero(x) || (optional && !x.is_null())
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost_reflect::Value as P;

    fn msg(name: &str) -> DynamicMessage {
        DynamicMessage::new(
            pool()
                .expect("descriptors")
                .get_message_by_name(name)
                .expect(name),
        )
    }

    /// A body as client-go writes it: every non-pointer field present.
    fn wire(api_version: &str, kind: &str, obj: &DynamicMessage) -> Vec<u8> {
        use prost::Message;
        let mut tm = msg("k8s.io.apimachinery.pkg.runtime.TypeMeta");
        tm.set_field_by_name("apiVersion", P::String(api_version.into()));
        tm.set_field_by_name("kind", P::String(kind.into()));
        let mut u = msg("k8s.io.apimachinery.pkg.runtime.Unknown");
        u.set_field_by_name("typeMeta", P::Message(tm));
        u.set_field_by_name("raw", P::Bytes(obj.encode_to_vec().into()));
        u.set_field_by_name("contentEncoding", P::String(String::new()));
        u.set_field_by_name("contentType", P::String(String::new()));
        let mut out = MAGIC.to_vec();
        out.extend(u.encode_to_vec());
        out
    }

    #[test]
    fn a_deployment_as_kubectl_create_sends_it() {
        let mut meta = msg(&format!("{META}.ObjectMeta"));
        meta.set_field_by_name("name", P::String("web".into()));
        meta.set_field_by_name("generateName", P::String(String::new()));
        meta.set_field_by_name(
            "creationTimestamp",
            P::Message(msg(&format!("{META}.Time"))),
        );
        let mut labels = std::collections::HashMap::new();
        labels.insert(MapKey::String("app".into()), P::String("web".into()));
        meta.set_field_by_name("labels", P::Map(labels));
        let mut c = msg("k8s.io.api.core.v1.Container");
        c.set_field_by_name("name", P::String("nginx".into()));
        c.set_field_by_name("image", P::String("nginx".into()));
        c.set_field_by_name("terminationMessagePath", P::String(String::new()));
        c.set_field_by_name("stdin", P::Bool(false));
        c.set_field_by_name(
            "resources",
            P::Message(msg("k8s.io.api.core.v1.ResourceRequirements")),
        );
        let mut port = msg("k8s.io.api.core.v1.ContainerPort");
        port.set_field_by_name("containerPort", P::I32(80));
        port.set_field_by_name("hostPort", P::I32(0));
        c.set_field_by_name("ports", P::List(vec![P::Message(port)]));
        let mut pod_spec = msg("k8s.io.api.core.v1.PodSpec");
        pod_spec.set_field_by_name("containers", P::List(vec![P::Message(c)]));
        pod_spec.set_field_by_name("hostNetwork", P::Bool(false));
        let mut tmpl = msg("k8s.io.api.core.v1.PodTemplateSpec");
        tmpl.set_field_by_name("metadata", P::Message(meta.clone()));
        tmpl.set_field_by_name("spec", P::Message(pod_spec));
        let mut spec = msg("k8s.io.api.apps.v1.DeploymentSpec");
        spec.set_field_by_name("replicas", P::I32(0));
        spec.set_field_by_name("template", P::Message(tmpl));
        spec.set_field_by_name(
            "strategy",
            P::Message(msg("k8s.io.api.apps.v1.DeploymentStrategy")),
        );
        spec.set_field_by_name("minReadySeconds", P::I32(0));
        let mut d = msg("k8s.io.api.apps.v1.Deployment");
        d.set_field_by_name("metadata", P::Message(meta));
        d.set_field_by_name("spec", P::Message(spec));
        d.set_field_by_name(
            "status",
            P::Message(msg("k8s.io.api.apps.v1.DeploymentStatus")),
        );
        let v = decode(&wire("apps/v1", "Deployment", &d)).expect("decoded");
        assert_eq!(
            v,
            serde_json::json!({
                "metadata": {"name": "web", "labels": {"app": "web"}},
                "spec": {
                    "replicas": 0,
                    "template": {
                        "metadata": {"name": "web", "labels": {"app": "web"}},
                        "spec": {"containers": [{"name": "nginx", "image": "nginx", "ports": [{"containerPort": 80}]}]}
                    }
                },
                "apiVersion": "apps/v1",
                "kind": "Deployment"
            })
        );
        // It is a Deployment Keelson reads.
        keelson_model::manifest::from_value(v).expect("a Deployment");
    }

    #[test]
    fn special_types_and_bad_bodies() {
        let mut port = msg("k8s.io.api.core.v1.ServicePort");
        port.set_field_by_name("port", P::I32(80));
        let mut target = msg("k8s.io.apimachinery.pkg.util.intstr.IntOrString");
        target.set_field_by_name("type", P::I64(1));
        target.set_field_by_name("strVal", P::String("http".into()));
        port.set_field_by_name("targetPort", P::Message(target));
        let mut spec = msg("k8s.io.api.core.v1.ServiceSpec");
        spec.set_field_by_name("ports", P::List(vec![P::Message(port)]));
        let mut svc = msg("k8s.io.api.core.v1.Service");
        svc.set_field_by_name("spec", P::Message(spec));
        let mut meta = msg(&format!("{META}.ObjectMeta"));
        let mut t = msg(&format!("{META}.Time"));
        t.set_field_by_name("seconds", P::I64(1_700_000_000));
        meta.set_field_by_name("creationTimestamp", P::Message(t));
        svc.set_field_by_name("metadata", P::Message(meta));
        let v = decode(&wire("v1", "Service", &svc)).expect("decoded");
        assert_eq!(v["spec"]["ports"][0]["targetPort"], "http");
        assert_eq!(v["metadata"]["creationTimestamp"], "2023-11-14T22:13:20Z");

        assert_eq!(decode(b"nope").err().map(|f| f.code), Some(400));
        assert_eq!(
            decode(b"k8s\0\xff\xff\xff").err().map(|f| f.code),
            Some(400)
        );
        assert_eq!(
            decode(&wire("storage.k8s.io/v1", "StorageClass", &svc))
                .err()
                .map(|f| f.code),
            Some(400)
        );
        assert_eq!(
            decode(&wire("v1", "Widget", &svc)).err().map(|f| f.code),
            Some(400)
        );
        // The bytes of a Service read as a Pod: wrong wire types are an
        // error or a different object, never a panic.
        let _ = decode(&wire("v1", "Pod", &svc));
        for len in 0..40 {
            let body = wire("v1", "Service", &svc);
            let _ = decode(&body[..len.min(body.len())]);
        }
    }
}
