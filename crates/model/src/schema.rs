//! The shape of every resource type as its JSON looks on the wire: field
//! names, types, lists and maps, documentation, and how a strategic merge
//! patch treats each list (Kubernetes' `patchStrategy`/`patchMergeKey`).
//!
//! Built once from the compiled `.proto` descriptors
//! ([`keelson_proto::DESCRIPTORS`], comments included) and the JSON names
//! the generated serde types use ([`keelson_proto::json_names`]), so the
//! schema is the types the server decodes, not a second description of them.
//! The OpenAPI documents and [`crate::strategic`] read it.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use keelson_proto::json_names::{INT_OR_STRING, RENAMES};
use prost::Message;
use prost_types::field_descriptor_proto::{Label, Type as ProtoType};
use prost_types::{DescriptorProto, FileDescriptorSet};

/// The proto package the resources live in.
const PACKAGE: &str = "keelson.v1";

/// How a strategic merge patch changes a field (Kubernetes' struct tags on
/// the same fields of `k8s.io/api`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Strategy {
    /// The patch's value replaces the old one (lists are atomic).
    Replace,
    /// A list merged element by element: objects matched on the key,
    /// primitives (no key) as a set.
    Merge { key: Option<&'static str> },
    /// An object whose keys not named in the patch's `$retainKeys` go.
    RetainKeys,
}

/// Kubernetes' patch strategies for the fields of these types that have
/// one; every other field is [`Strategy::Replace`].
const STRATEGIES: &[(&str, &str, Strategy)] = &[
    (
        "ObjectMeta",
        "ownerReferences",
        Strategy::Merge { key: Some("uid") },
    ),
    ("ObjectMeta", "finalizers", Strategy::Merge { key: None }),
    (
        "NodeStatus",
        "conditions",
        Strategy::Merge { key: Some("type") },
    ),
    (
        "NodeStatus",
        "addresses",
        Strategy::Merge { key: Some("type") },
    ),
    (
        "PodSpec",
        "containers",
        Strategy::Merge { key: Some("name") },
    ),
    (
        "Container",
        "ports",
        Strategy::Merge {
            key: Some("containerPort"),
        },
    ),
    ("Container", "env", Strategy::Merge { key: Some("name") }),
    (
        "Container",
        "volumeMounts",
        Strategy::Merge {
            key: Some("mountPath"),
        },
    ),
    ("PodSpec", "volumes", Strategy::Merge { key: Some("name") }),
    (
        "PodStatus",
        "conditions",
        Strategy::Merge { key: Some("type") },
    ),
    (
        "ReplicaSetStatus",
        "conditions",
        Strategy::Merge { key: Some("type") },
    ),
    ("DeploymentSpec", "strategy", Strategy::RetainKeys),
    (
        "DeploymentStatus",
        "conditions",
        Strategy::Merge { key: Some("type") },
    ),
    (
        "ServiceSpec",
        "ports",
        Strategy::Merge { key: Some("port") },
    ),
];

/// A field's JSON value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Shape {
    String,
    /// 32- or 64-bit integer (the format).
    Integer(&'static str),
    Boolean,
    Number,
    /// Kubernetes' IntOrString.
    IntOrString,
    /// An object of the named type (a message of [`PACKAGE`]).
    Object(String),
    /// A map from strings to strings (labels, quantities).
    StringMap,
    List(Box<Shape>),
}

#[derive(Clone, Debug)]
pub struct Field {
    /// The name in JSON (`podIP`, `containerPort`).
    pub json: String,
    pub shape: Shape,
    pub doc: String,
    pub strategy: Strategy,
    /// Whether the field has presence of its own (`optional` in the
    /// proto: `replicas`, `terminationGracePeriodSeconds`), so a zero is a
    /// value and not "unset".
    pub optional: bool,
}

#[derive(Clone, Debug, Default)]
pub struct Type {
    /// The message's name (`PodSpec`).
    pub name: String,
    pub doc: String,
    pub fields: Vec<Field>,
}

impl Type {
    pub fn field(&self, json: &str) -> Option<&Field> {
        self.fields.iter().find(|f| f.json == json)
    }
}

/// Every resource type, by message name.
#[derive(Debug, Default)]
pub struct Schema {
    types: BTreeMap<String, Type>,
}

impl Schema {
    /// The schema of the compiled-in descriptors (built on first use).
    pub fn get() -> &'static Schema {
        static SCHEMA: OnceLock<Schema> = OnceLock::new();
        SCHEMA.get_or_init(|| {
            // The descriptors are compiled in by this workspace's build;
            // the tests check every kind's type is here.
            FileDescriptorSet::decode(keelson_proto::DESCRIPTORS)
                .map(|set| Schema::from_descriptors(&set))
                .unwrap_or_default()
        })
    }

    pub fn from_descriptors(set: &FileDescriptorSet) -> Schema {
        let mut types = BTreeMap::new();
        for file in set.file.iter().filter(|f| f.package() == PACKAGE) {
            let docs = comments(file);
            for (i, msg) in file.message_type.iter().enumerate() {
                let doc = docs.get(&vec![4, i as i32]).cloned().unwrap_or_default();
                let fields = msg
                    .field
                    .iter()
                    .enumerate()
                    .map(|(j, f)| {
                        let doc = docs
                            .get(&vec![4, i as i32, 2, j as i32])
                            .cloned()
                            .unwrap_or_default();
                        field(msg, f, doc)
                    })
                    .collect();
                types.insert(
                    msg.name().to_string(),
                    Type {
                        name: msg.name().to_string(),
                        doc,
                        fields,
                    },
                );
            }
        }
        Schema { types }
    }

    pub fn type_of(&self, name: &str) -> Option<&Type> {
        self.types.get(name)
    }

    pub fn types(&self) -> impl Iterator<Item = &Type> {
        self.types.values()
    }
}

/// Remove the fields of `value` (an object of the type named `type_name`)
/// that the type does not have, at any depth; their paths
/// (`spec.containers[0].foo`), as Kubernetes' `fieldValidation=Warn`
/// reports them. Values of the wrong shape are left to the decoder.
pub fn strip_unknown(value: &mut serde_json::Value, type_name: &str) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(ty) = Schema::get().type_of(type_name) {
        strip(value, ty, "", &mut out);
    }
    out
}

fn strip(value: &mut serde_json::Value, ty: &Type, path: &str, out: &mut Vec<String>) {
    let serde_json::Value::Object(m) = value else {
        return;
    };
    let join = |k: &str| {
        if path.is_empty() {
            k.to_string()
        } else {
            format!("{path}.{k}")
        }
    };
    m.retain(|k, _| {
        let known = ty.field(k).is_some();
        if !known {
            out.push(join(k));
        }
        known
    });
    for (k, v) in m.iter_mut() {
        let Some(f) = ty.field(k) else { continue };
        match (&f.shape, v) {
            (Shape::Object(name), v) => {
                if let Some(t) = Schema::get().type_of(name) {
                    strip(v, t, &join(k), out);
                }
            }
            (Shape::List(inner), serde_json::Value::Array(items)) => {
                if let Shape::Object(name) = inner.as_ref() {
                    if let Some(t) = Schema::get().type_of(name) {
                        for (i, item) in items.iter_mut().enumerate() {
                            strip(item, t, &format!("{}[{i}]", join(k)), out);
                        }
                    }
                }
            }
            _ => {}
        }
    }
}

fn field(msg: &DescriptorProto, f: &prost_types::FieldDescriptorProto, doc: String) -> Field {
    let key = format!("{}.{}", msg.name(), f.name());
    let json = RENAMES
        .iter()
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v.to_string())
        .unwrap_or_else(|| f.json_name().to_string());
    let scalar = match f.r#type() {
        _ if INT_OR_STRING.contains(&key.as_str()) => Shape::IntOrString,
        ProtoType::String | ProtoType::Bytes => Shape::String,
        ProtoType::Bool => Shape::Boolean,
        ProtoType::Int64 | ProtoType::Uint64 | ProtoType::Sint64 => Shape::Integer("int64"),
        ProtoType::Fixed64 | ProtoType::Sfixed64 => Shape::Integer("int64"),
        ProtoType::Double | ProtoType::Float => Shape::Number,
        ProtoType::Message => {
            let type_name = f.type_name().rsplit('.').next().unwrap_or_default();
            let map_entry = msg.nested_type.iter().any(|n| {
                n.name() == type_name && n.options.as_ref().is_some_and(|o| o.map_entry())
            });
            if map_entry {
                Shape::StringMap
            } else {
                Shape::Object(type_name.to_string())
            }
        }
        _ => Shape::Integer("int32"),
    };
    let shape = if f.label() == Label::Repeated && scalar != Shape::StringMap {
        Shape::List(Box::new(scalar))
    } else {
        scalar
    };
    let strategy = STRATEGIES
        .iter()
        .find(|(m, j, _)| *m == msg.name() && *j == json)
        .map(|(_, _, s)| *s)
        .unwrap_or(Strategy::Replace);
    Field {
        json,
        shape,
        doc,
        strategy,
        optional: f.proto3_optional(),
    }
}

/// The comments of a file's declarations, by their descriptor path.
fn comments(file: &prost_types::FileDescriptorProto) -> BTreeMap<Vec<i32>, String> {
    let mut out = BTreeMap::new();
    let Some(info) = &file.source_code_info else {
        return out;
    };
    for loc in &info.location {
        let text = [loc.leading_comments(), loc.trailing_comments()]
            .iter()
            .map(|c| c.trim())
            .filter(|c| !c.is_empty())
            .collect::<Vec<_>>()
            .join(" ");
        if !text.is_empty() {
            let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
            out.insert(loc.path.clone(), text);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Kind;

    /// Every field serde writes is in the schema under the same name, and
    /// nothing else is: the schema and the decoder agree.
    #[test]
    fn the_schema_names_fields_as_serde_does() {
        let schema = Schema::get();
        for kind in Kind::ALL {
            assert!(schema.type_of(kind.name()).is_some(), "{kind:?}");
        }
        let samples: Vec<(&str, serde_json::Value)> = vec![
            (
                "PodStatus",
                serde_json::to_value(keelson_proto::v1::PodStatus::default()).unwrap(),
            ),
            (
                "ContainerPort",
                serde_json::to_value(keelson_proto::v1::ContainerPort::default()).unwrap(),
            ),
            (
                "NodeSpec",
                serde_json::to_value(keelson_proto::v1::NodeSpec::default()).unwrap(),
            ),
            (
                "DaemonEndpoint",
                serde_json::to_value(keelson_proto::v1::DaemonEndpoint::default()).unwrap(),
            ),
            (
                "Container",
                serde_json::to_value(keelson_proto::v1::Container::default()).unwrap(),
            ),
            (
                "ObjectMeta",
                serde_json::to_value(keelson_proto::v1::ObjectMeta::default()).unwrap(),
            ),
            (
                "Probe",
                serde_json::to_value(keelson_proto::v1::Probe::default()).unwrap(),
            ),
        ];
        for (name, v) in samples {
            let mut serde_keys: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
            let mut schema_keys: Vec<String> = schema
                .type_of(name)
                .unwrap()
                .fields
                .iter()
                .map(|f| f.json.clone())
                .collect();
            serde_keys.sort();
            schema_keys.sort();
            assert_eq!(serde_keys, schema_keys, "{name}");
        }
    }

    #[test]
    fn unknown_fields_are_stripped_and_named() {
        let mut v = serde_json::json!({
            "apiVersion": "apps/v1", "kind": "Deployment", "extra": 1,
            "metadata": {"name": "web", "labels": {"any": "label"}, "nmae": "x"},
            "spec": {"replicas": 2, "template": {"spec": {"containers": [
                {"name": "a", "image": "i"},
                {"name": "b", "imagePullPolicy": "Always", "imgae": "typo"}]}}}
        });
        let gone = strip_unknown(&mut v, "Deployment");
        assert_eq!(
            gone,
            [
                "extra",
                "metadata.nmae",
                "spec.template.spec.containers[1].imgae"
            ]
        );
        assert_eq!(
            v["spec"]["template"]["spec"]["containers"][1],
            serde_json::json!({"name": "b", "imagePullPolicy": "Always"})
        );
        assert_eq!(v["metadata"]["labels"]["any"], "label");
        assert!(strip_unknown(&mut v, "Deployment").is_empty());
    }

    #[test]
    fn shapes_strategies_and_docs() {
        let schema = Schema::get();
        let spec = schema.type_of("PodSpec").unwrap();
        let containers = spec.field("containers").unwrap();
        assert_eq!(
            containers.shape,
            Shape::List(Box::new(Shape::Object("Container".into())))
        );
        assert_eq!(containers.strategy, Strategy::Merge { key: Some("name") });
        assert_eq!(spec.field("nodeSelector").unwrap().shape, Shape::StringMap);
        assert_eq!(
            spec.field("tolerations").unwrap().strategy,
            Strategy::Replace
        );
        assert_eq!(
            spec.field("terminationGracePeriodSeconds").unwrap().shape,
            Shape::Integer("int64")
        );
        assert!(spec
            .field("dnsPolicy")
            .unwrap()
            .doc
            .contains("ClusterFirst"));
        let port = schema
            .type_of("HTTPGetAction")
            .unwrap()
            .field("port")
            .unwrap();
        assert_eq!(port.shape, Shape::IntOrString);
        assert_eq!(
            schema
                .type_of("ObjectMeta")
                .unwrap()
                .field("finalizers")
                .unwrap()
                .shape,
            Shape::List(Box::new(Shape::String))
        );
        // Every strategy names a field that exists.
        for (m, f, _) in STRATEGIES {
            assert!(
                schema.type_of(m).and_then(|t| t.field(f)).is_some(),
                "{m}.{f}"
            );
        }
    }
}
