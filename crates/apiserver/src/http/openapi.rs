//! OpenAPI v3 documents, as kube-apiserver serves them: `/openapi/v3` (an
//! index of group versions, each with a `serverRelativeURL` carrying the
//! document's hash) and `/openapi/v3/<api/v1|apis/group/version>` (an
//! OpenAPI 3.0 document: the kinds' schemas and their paths).
//!
//! What reads them: `kubectl apply` (it needs a document for the group
//! version before it writes, finds server-side field validation through the
//! `fieldValidation` parameter of each kind's PATCH operation, and builds
//! strategic merge patches from the schemas' `x-kubernetes-patch-*`
//! extensions), `kubectl explain` (the kind's schema found through its
//! `x-kubernetes-group-version-kind`, field docs from the `.proto`'s
//! comments) and client generators.
//!
//! Pure, and built from [`Schema`] (the compiled descriptors of the types
//! the server decodes), so a field the server accepts is a field the
//! document names, under the same JSON name and shape.

use std::collections::BTreeSet;
use std::hash::{Hash, Hasher};
use std::sync::OnceLock;

use keelson_model::schema::{Schema, Shape, Strategy, Type};
use keelson_model::Kind;
use serde_json::{json, Map, Value};

use super::discovery::{group_version_of, groups, kinds_at};

/// The schema name of a type (`io.keelson.v1.PodSpec`).
fn schema_name(ty: &str) -> String {
    format!("io.keelson.v1.{ty}")
}

fn reference(ty: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{}", schema_name(ty))})
}

/// The path of a group version's document (`api/v1`, `apis/apps/v1`).
fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// Every group version served, core first.
fn group_versions() -> Vec<(&'static str, &'static str)> {
    let mut out = vec![("", "v1")];
    out.extend(groups());
    out
}

/// Every group version's document, with its path and hash: built once
/// (they depend only on the compiled-in schema).
fn documents() -> &'static [(String, Value, String)] {
    static DOCS: OnceLock<Vec<(String, Value, String)>> = OnceLock::new();
    DOCS.get_or_init(|| {
        group_versions()
            .into_iter()
            .filter_map(|(g, v)| {
                let doc = document(g, v)?;
                let hash = hash_of(&doc);
                Some((gv_path(g, v), doc, hash))
            })
            .collect()
    })
}

/// `/openapi/v3`.
pub fn index() -> Value {
    let mut paths = Map::new();
    for (path, _, hash) in documents() {
        paths.insert(
            path.clone(),
            json!({"serverRelativeURL": format!("/openapi/v3/{path}?hash={hash}")}),
        );
    }
    json!({"paths": paths})
}

/// A document's hash, as its `serverRelativeURL` carries it (kubectl
/// caches documents by it). Deterministic: std's `DefaultHasher::new()`
/// has fixed keys.
pub fn hash_of(doc: &Value) -> String {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    doc.to_string().hash(&mut h);
    format!("{:016X}", h.finish())
}

/// The document at `path` below `/openapi/v3/` (`api/v1`,
/// `apis/apps/v1`); None when no group version is served there.
pub fn document_at(path: &str) -> Option<&'static Value> {
    let path = path.trim_matches('/');
    documents()
        .iter()
        .find(|(p, _, _)| p == path)
        .map(|(_, doc, _)| doc)
}

/// The OpenAPI 3.0 document of one group version.
pub fn document(group: &str, version: &str) -> Option<Value> {
    let kinds = kinds_at(group, version);
    if kinds.is_empty() {
        return None;
    }
    let schema = Schema::get();
    let mut schemas = Map::new();
    let mut wanted: Vec<String> = kinds.iter().map(|k| k.name().to_string()).collect();
    let mut seen = BTreeSet::new();
    while let Some(name) = wanted.pop() {
        if !seen.insert(name.clone()) {
            continue;
        }
        let Some(ty) = schema.type_of(&name) else {
            continue;
        };
        wanted.extend(referenced(ty));
        let kind = kinds.iter().find(|k| k.name() == name).copied();
        schemas.insert(schema_name(&name), type_schema(ty, kind));
    }
    schemas.insert(
        "io.k8s.apimachinery.pkg.apis.meta.v1.Status".into(),
        json!({"type": "object", "description": "Status is a return value for calls that do not return other objects."}),
    );
    let mut paths = Map::new();
    for kind in &kinds {
        paths.extend(kind_paths(*kind));
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Keelson", "version": super::discovery::KUBERNETES_GIT_VERSION},
        "paths": paths,
        "components": {"schemas": schemas},
    }))
}

/// The types a type's fields refer to.
fn referenced(ty: &Type) -> Vec<String> {
    fn of(shape: &Shape, out: &mut Vec<String>) {
        match shape {
            Shape::Object(name) => out.push(name.clone()),
            Shape::List(inner) => of(inner, out),
            _ => {}
        }
    }
    let mut out = Vec::new();
    for f in &ty.fields {
        of(&f.shape, &mut out);
    }
    out
}

fn gvk(kind: Kind) -> Value {
    let (group, version) = group_version_of(kind);
    json!([{"group": group, "version": version, "kind": kind.name()}])
}

fn type_schema(ty: &Type, kind: Option<Kind>) -> Value {
    let mut properties = Map::new();
    for f in &ty.fields {
        let mut p = match &f.shape {
            // A reference with siblings (a description, a patch strategy)
            // goes in an allOf, as Kubernetes' documents do.
            Shape::Object(name) => json!({"allOf": [reference(name)]}),
            other => shape_schema(other),
        };
        if let Value::Object(m) = &mut p {
            if !f.doc.is_empty() {
                m.insert("description".into(), f.doc.clone().into());
            }
            match f.strategy {
                Strategy::Replace => {
                    if matches!(f.shape, Shape::List(_)) {
                        m.insert("x-kubernetes-list-type".into(), "atomic".into());
                    }
                }
                Strategy::Merge { key: Some(key) } => {
                    m.insert("x-kubernetes-patch-strategy".into(), "merge".into());
                    m.insert("x-kubernetes-patch-merge-key".into(), key.into());
                    m.insert("x-kubernetes-list-type".into(), "map".into());
                    m.insert("x-kubernetes-list-map-keys".into(), json!([key]));
                }
                Strategy::Merge { key: None } => {
                    m.insert("x-kubernetes-patch-strategy".into(), "merge".into());
                    m.insert("x-kubernetes-list-type".into(), "set".into());
                }
                Strategy::RetainKeys => {
                    m.insert("x-kubernetes-patch-strategy".into(), "retainKeys".into());
                }
            }
        }
        properties.insert(f.json.clone(), p);
    }
    let mut s = json!({"type": "object", "properties": properties});
    if !ty.doc.is_empty() {
        s["description"] = ty.doc.clone().into();
    }
    if let Some(kind) = kind {
        s["x-kubernetes-group-version-kind"] = gvk(kind);
    }
    s
}

fn shape_schema(shape: &Shape) -> Value {
    match shape {
        Shape::String => json!({"type": "string"}),
        Shape::Integer(format) => json!({"type": "integer", "format": format}),
        Shape::Boolean => json!({"type": "boolean"}),
        Shape::Number => json!({"type": "number", "format": "double"}),
        Shape::IntOrString => {
            json!({"x-kubernetes-int-or-string": true, "anyOf": [{"type": "integer"}, {"type": "string"}]})
        }
        Shape::Object(name) => reference(name),
        Shape::StringMap => json!({"type": "object", "additionalProperties": {"type": "string"}}),
        Shape::List(inner) => json!({"type": "array", "items": shape_schema(inner)}),
    }
}

fn param(name: &str, place: &str, description: &str) -> Value {
    json!({"name": name, "in": place, "description": description, "schema": {"type": "string"}, "required": place == "path"})
}

fn write_params() -> Vec<Value> {
    vec![
        param("dryRun", "query", "When present (All), the change is checked and not persisted."),
        param("fieldManager", "query", "The name of the actor making the change."),
        param(
            "fieldValidation",
            "query",
            "How unknown and duplicate fields are treated: Strict (an error naming them), Warn or Ignore.",
        ),
    ]
}

fn ok(kind: Kind) -> Value {
    json!({"200": {"description": "OK", "content": {"application/json": {"schema": reference(kind.name())}}},
           "401": {"description": "Unauthorized"}})
}

fn operation(
    kind: Kind,
    action: &str,
    id: &str,
    mut params: Vec<Value>,
    body: Option<Value>,
) -> Value {
    let mut op = json!({
        "operationId": id,
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": gvk(kind)[0].clone(),
        "responses": ok(kind),
    });
    if action != "get" && action != "list" && action != "watch" {
        params.extend(write_params());
    }
    op["parameters"] = Value::Array(params);
    if let Some(b) = body {
        op["requestBody"] = json!({"required": true, "content": b});
    }
    op
}

/// The paths of one kind: the collection (in a namespace and across
/// them), the object, and its `status`.
fn kind_paths(kind: Kind) -> Map<String, Value> {
    let (group, version) = group_version_of(kind);
    let prefix = format!("/{}", gv_path(group, version));
    let ns = if kind.namespaced() {
        "/namespaces/{namespace}"
    } else {
        ""
    };
    let collection = format!("{prefix}{ns}/{}", kind.plural());
    let object = format!("{collection}/{{name}}");
    let k = kind.name();
    let ns_param = || {
        if kind.namespaced() {
            vec![param("namespace", "path", "The object's namespace.")]
        } else {
            vec![]
        }
    };
    let with_name = || {
        let mut p = ns_param();
        p.push(param("name", "path", "The object's name."));
        p
    };
    let json_body = json!({"application/json": {"schema": reference(k)}});
    let patch_body = json!({
        "application/json-patch+json": {"schema": {"type": "object"}},
        "application/merge-patch+json": {"schema": {"type": "object"}},
        "application/strategic-merge-patch+json": {"schema": {"type": "object"}},
    });
    let mut out = Map::new();
    out.insert(
        collection.clone(),
        json!({
            "get": operation(kind, "list", &format!("list{k}"), ns_param(), None),
            "post": operation(kind, "post", &format!("create{k}"), ns_param(), Some(json_body.clone())),
        }),
    );
    out.insert(
        object.clone(),
        json!({
            "get": operation(kind, "get", &format!("read{k}"), with_name(), None),
            "put": operation(kind, "put", &format!("replace{k}"), with_name(), Some(json_body.clone())),
            "patch": operation(kind, "patch", &format!("patch{k}"), with_name(), Some(patch_body.clone())),
            "delete": operation(kind, "delete", &format!("delete{k}"), with_name(), None),
        }),
    );
    if kind.has_status() {
        out.insert(
            format!("{object}/status"),
            json!({
                "get": operation(kind, "get", &format!("read{k}Status"), with_name(), None),
                "put": operation(kind, "put", &format!("replace{k}Status"), with_name(), Some(json_body)),
                "patch": operation(kind, "patch", &format!("patch{k}Status"), with_name(), Some(patch_body)),
            }),
        );
    }
    if kind.namespaced() {
        out.insert(
            format!("{prefix}/{}", kind.plural()),
            json!({"get": operation(kind, "list", &format!("list{k}ForAllNamespaces"), vec![], None)}),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_index_points_at_every_document_by_hash() {
        let index = index();
        let paths = index["paths"].as_object().unwrap();
        let names: Vec<&String> = paths.keys().collect();
        assert_eq!(
            names,
            [
                "api/v1",
                "apis/apps/v1",
                "apis/batch/v1",
                "apis/coordination.k8s.io/v1",
                "apis/rbac.authorization.k8s.io/v1"
            ]
        );
        let url = paths["apis/apps/v1"]["serverRelativeURL"].as_str().unwrap();
        let doc = document_at("apis/apps/v1").unwrap();
        assert_eq!(
            url,
            format!("/openapi/v3/apis/apps/v1?hash={}", hash_of(doc))
        );
        assert!(document_at("apis/batch/v1").is_some());
        assert!(document_at("apis/storage.k8s.io/v1").is_none());
        assert!(document_at("api/v2").is_none());
    }

    /// What kubectl looks for: each kind's schema by its GVK, with every
    /// type it refers to present; a PATCH operation of the kind with a
    /// fieldValidation parameter; patch strategies on merged lists.
    #[test]
    fn documents_carry_what_kubectl_reads() {
        for (g, v) in group_versions() {
            let doc = document(g, v).unwrap();
            let schemas = doc["components"]["schemas"].as_object().unwrap();
            for kind in kinds_at(g, v) {
                let s = &schemas[&schema_name(kind.name())];
                assert_eq!(s["x-kubernetes-group-version-kind"][0]["kind"], kind.name());
                let patch_has_validation = doc["paths"].as_object().unwrap().values().any(|p| {
                    p["patch"]["x-kubernetes-group-version-kind"]["kind"] == kind.name()
                        && p["patch"]["parameters"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .any(|x| x["name"] == "fieldValidation")
                });
                assert!(patch_has_validation, "{kind:?}");
            }
            // Every reference resolves.
            let text = doc.to_string();
            for piece in text.split("#/components/schemas/").skip(1) {
                let name = piece.split('"').next().unwrap();
                assert!(schemas.contains_key(name), "{name} in {g}/{v}");
            }
        }
        let apps = document("apps", "v1").unwrap();
        let s = &apps["components"]["schemas"];
        let containers = &s["io.keelson.v1.PodSpec"]["properties"]["containers"];
        assert_eq!(containers["x-kubernetes-patch-merge-key"], "name");
        assert_eq!(containers["x-kubernetes-patch-strategy"], "merge");
        assert_eq!(
            containers["items"]["$ref"],
            "#/components/schemas/io.keelson.v1.Container"
        );
        assert_eq!(
            s["io.keelson.v1.DeploymentSpec"]["properties"]["strategy"]
                ["x-kubernetes-patch-strategy"],
            "retainKeys"
        );
        assert!(apps["paths"]
            .get("/apis/apps/v1/namespaces/{namespace}/deployments/{name}")
            .is_some());
        assert!(apps["paths"].get("/apis/apps/v1/deployments").is_some());
        let core = document("", "v1").unwrap();
        assert_eq!(
            core["components"]["schemas"]["io.keelson.v1.PodStatus"]["properties"]["podIP"]["type"],
            "string"
        );
        assert!(core["paths"].get("/api/v1/nodes/{name}/status").is_some());
        assert!(core["paths"]
            .get("/api/v1/namespaces/{namespace}/events/{name}/status")
            .is_none());
    }
}
