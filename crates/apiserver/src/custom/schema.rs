//! A custom resource's OpenAPI v3 schema at work, pure: whether a CRD's
//! schema is structural (every field typed), pruning (fields the schema
//! does not declare are dropped, or named for `fieldValidation=Strict`,
//! unless `x-kubernetes-preserve-unknown-fields`), nulls dropped where a
//! field is not `nullable`, `default`s filled in, and validation of the
//! rest by a JSON-schema validator (the `jsonschema` crate, draft 4, which
//! OpenAPI 3.0's schema objects follow) with Kubernetes' field paths in
//! its messages. `metadata`, `apiVersion` and `kind` at the root are the
//! server's, never pruned or validated by the schema.

use serde_json::{Map, Value};

const PRESERVE: &str = "x-kubernetes-preserve-unknown-fields";
const INT_OR_STRING: &str = "x-kubernetes-int-or-string";
const EMBEDDED: &str = "x-kubernetes-embedded-resource";

/// Fields of the root every object has, whatever its schema says.
const ROOT_FIELDS: &[&str] = &["apiVersion", "kind", "metadata"];

fn flag(s: &Value, name: &str) -> bool {
    s.get(name).and_then(Value::as_bool) == Some(true)
}

/// Why a CRD's schema is not structural, as `path: message`.
pub fn structural_problems(schema: &Value, path: &str) -> Vec<String> {
    let mut p = Vec::new();
    if schema.get("type").and_then(Value::as_str) != Some("object") {
        p.push(format!(
            "{path}.type: Invalid value: {}: must be object at the root",
            schema.get("type").unwrap_or(&Value::Null)
        ));
    }
    walk_structural(schema, path, &mut p);
    p
}

fn walk_structural(s: &Value, path: &str, p: &mut Vec<String>) {
    let Some(m) = s.as_object() else {
        p.push(format!(
            "{path}: Invalid value: {s}: must be a schema object"
        ));
        return;
    };
    let typ = m.get("type").and_then(Value::as_str).unwrap_or("");
    match typ {
        "" if flag(s, INT_OR_STRING) || flag(s, PRESERVE) => {}
        "" => p.push(format!(
            "{path}.type: Required value: must not be empty for specified fields"
        )),
        "object" | "array" | "string" | "integer" | "number" | "boolean" => {}
        other => p.push(format!(
            "{path}.type: Unsupported value: {other:?}: supported values: \"array\", \"boolean\", \"integer\", \"number\", \"object\", \"string\""
        )),
    }
    if m.contains_key("$ref") {
        p.push(format!("{path}.$ref: Forbidden: $ref is not supported"));
    }
    if let Some(props) = m.get("properties").and_then(Value::as_object) {
        if typ != "object" && !flag(s, PRESERVE) {
            p.push(format!(
                "{path}.properties: Forbidden: only allowed for type object"
            ));
        }
        if m.get("additionalProperties").is_some_and(Value::is_object) {
            p.push(format!(
                "{path}.additionalProperties: Forbidden: additionalProperties and properties are mutually exclusive"
            ));
        }
        for (k, v) in props {
            walk_structural(v, &format!("{path}.properties[{k}]"), p);
        }
    }
    if let Some(items) = m.get("items") {
        walk_structural(items, &format!("{path}.items"), p);
    } else if typ == "array" {
        p.push(format!(
            "{path}.items: Required value: must be specified for arrays"
        ));
    }
    if let Some(ap) = m.get("additionalProperties").filter(|v| v.is_object()) {
        walk_structural(ap, &format!("{path}.additionalProperties"), p);
    }
}

/// Drop what `schema` does not declare from `v` (in place), and nulls of
/// fields that are not nullable; the paths of the dropped fields
/// (`spec.foo`, `spec.items[0].bar`), nulls not counted.
pub fn prune(v: &mut Value, schema: &Value) -> Vec<String> {
    let mut dropped = Vec::new();
    prune_at(v, schema, "", true, &mut dropped);
    dropped
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn prune_at(v: &mut Value, s: &Value, path: &str, root: bool, dropped: &mut Vec<String>) {
    match v {
        Value::Object(obj) => {
            let props = s.get("properties").and_then(Value::as_object);
            let additional = s.get("additionalProperties").filter(|a| a.is_object());
            let preserve = flag(s, PRESERVE);
            let embedded = flag(s, EMBEDDED);
            let keys: Vec<String> = obj.keys().cloned().collect();
            for k in keys {
                let keep_as_is = (root || embedded) && ROOT_FIELDS.contains(&k.as_str());
                if keep_as_is {
                    continue;
                }
                let sub = props.and_then(|p| p.get(&k)).or(additional);
                let nullable = sub.is_some_and(|x| flag(x, "nullable"));
                if obj.get(&k).is_some_and(Value::is_null) && !nullable {
                    obj.remove(&k);
                    continue;
                }
                match sub {
                    Some(sub) => {
                        if let Some(child) = obj.get_mut(&k) {
                            prune_at(child, sub, &join(path, &k), false, dropped);
                        }
                    }
                    None if preserve => {}
                    None => {
                        obj.remove(&k);
                        dropped.push(join(path, &k));
                    }
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = s.get("items") {
                for (i, item) in items.iter_mut().enumerate() {
                    prune_at(item, item_schema, &format!("{path}[{i}]"), false, dropped);
                }
            }
        }
        _ => {}
    }
}

/// Fill in the schema's `default`s for fields left out (in objects that
/// are there), in place.
pub fn apply_defaults(v: &mut Value, s: &Value) {
    match v {
        Value::Object(obj) => {
            if let Some(props) = s.get("properties").and_then(Value::as_object) {
                for (k, sub) in props {
                    if !obj.contains_key(k) {
                        if let Some(d) = sub.get("default") {
                            obj.insert(k.clone(), d.clone());
                        }
                    }
                    if let Some(child) = obj.get_mut(k) {
                        apply_defaults(child, sub);
                    }
                }
            }
            if let Some(ap) = s.get("additionalProperties").filter(|a| a.is_object()) {
                for child in obj.values_mut() {
                    apply_defaults(child, ap);
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = s.get("items") {
                for item in items {
                    apply_defaults(item, item_schema);
                }
            }
        }
        _ => {}
    }
}

/// The schema as a draft-4 JSON schema: `nullable` becomes a `null` type,
/// int-or-string an integer-or-string type; the root's `metadata`,
/// `apiVersion` and `kind` are left to the server.
pub fn to_json_schema(s: &Value) -> Value {
    let mut out = convert(s);
    if let Some(props) = out.get_mut("properties").and_then(Value::as_object_mut) {
        for f in ROOT_FIELDS {
            props.remove(*f);
        }
    }
    if let Some(req) = out.get_mut("required").and_then(Value::as_array_mut) {
        req.retain(|r| !r.as_str().is_some_and(|r| ROOT_FIELDS.contains(&r)));
    }
    out
}

fn convert(s: &Value) -> Value {
    let Some(m) = s.as_object() else {
        return s.clone();
    };
    let mut out = Map::new();
    for (k, v) in m {
        let converted = match k.as_str() {
            "properties" | "patternProperties" | "definitions" => match v.as_object() {
                Some(props) => Value::Object(
                    props
                        .iter()
                        .map(|(pk, pv)| (pk.clone(), convert(pv)))
                        .collect(),
                ),
                None => v.clone(),
            },
            "items" | "additionalProperties" | "not" => convert(v),
            "allOf" | "anyOf" | "oneOf" => match v.as_array() {
                Some(a) => Value::Array(a.iter().map(convert).collect()),
                None => v.clone(),
            },
            // Kubernetes' extensions and OpenAPI's annotations mean
            // nothing to the validator.
            k if k.starts_with("x-") => continue,
            "nullable" | "example" | "externalDocs" => continue,
            _ => v.clone(),
        };
        out.insert(k.clone(), converted);
    }
    if flag(s, INT_OR_STRING) && !out.contains_key("type") {
        out.insert("type".into(), serde_json::json!(["integer", "string"]));
    }
    if flag(s, "nullable") {
        if let Some(t) = out.get("type").and_then(Value::as_str).map(str::to_string) {
            out.insert("type".into(), serde_json::json!([t, "null"]));
        }
    }
    Value::Object(out)
}

/// A compiled schema validator.
pub struct Validator(jsonschema::Validator);

impl std::fmt::Debug for Validator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Validator")
    }
}

impl Validator {
    /// Compile a CRD version's schema; Err: why the schema is not one.
    pub fn new(schema: &Value) -> Result<Validator, String> {
        jsonschema::draft4::options()
            .build(&to_json_schema(schema))
            .map(Validator)
            .map_err(|e| e.to_string())
    }

    /// The object's problems, as `path: Invalid value: ...: message`.
    pub fn problems(&self, v: &Value) -> Vec<String> {
        let mut out: Vec<String> = self
            .0
            .iter_errors(v)
            .map(|e| {
                let path = field_path(e.instance_path().as_str());
                match e.kind() {
                    jsonschema::error::ValidationErrorKind::Required { property } => {
                        let name = property.as_str().unwrap_or("");
                        format!("{}: Required value", join(&path, name))
                    }
                    _ => {
                        let shown = match e.instance().as_ref() {
                            Value::Object(_) => "object".to_string(),
                            Value::Array(_) => "array".to_string(),
                            other => other.to_string(),
                        };
                        let at = if path.is_empty() { "<root>" } else { &path };
                        format!("{at}: Invalid value: {shown}: {at} in body: {e}")
                    }
                }
            })
            .collect();
        out.sort();
        out.dedup();
        out
    }
}

/// A JSON pointer (`/spec/items/0/name`) as Kubernetes' field path
/// (`spec.items[0].name`).
fn field_path(pointer: &str) -> String {
    let mut out = String::new();
    for seg in pointer.split('/').skip(1) {
        let seg = seg.replace("~1", "/").replace("~0", "~");
        if !seg.is_empty() && seg.chars().all(|c| c.is_ascii_digit()) {
            out.push_str(&format!("[{seg}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(&seg);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Value {
        json!({
            "type": "object",
            "properties": {
                "spec": {
                    "type": "object",
                    "required": ["cronSpec"],
                    "properties": {
                        "cronSpec": {"type": "string", "pattern": "^(\\d+|\\*)(/\\d+)?(\\s+(\\d+|\\*)(/\\d+)?){4}$"},
                        "image": {"type": "string"},
                        "replicas": {"type": "integer", "minimum": 1, "maximum": 10, "default": 1},
                        "port": {"x-kubernetes-int-or-string": true},
                        "note": {"type": "string", "nullable": true},
                        "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                        "items": {"type": "array", "items": {"type": "object", "properties": {
                            "name": {"type": "string"}, "size": {"type": "string", "default": "small"}}}}
                    }
                },
                "status": {"type": "object", "properties": {"ready": {"type": "boolean"}}}
            }
        })
    }

    #[test]
    fn structural_schemas() {
        assert_eq!(structural_problems(&schema(), "s"), Vec::<String>::new());
        let bad = json!({"type": "object", "properties": {
            "a": {"properties": {"b": {"type": "string"}}},
            "c": {"type": "array"},
            "d": {"type": "colour"}
        }});
        let p = structural_problems(&bad, "s");
        assert!(
            p.contains(
                &"s.properties[a].type: Required value: must not be empty for specified fields"
                    .to_string()
            ),
            "{p:?}"
        );
        assert!(
            p.iter()
                .any(|x| x.starts_with("s.properties[c].items: Required value")),
            "{p:?}"
        );
        assert!(
            p.iter()
                .any(|x| x.starts_with("s.properties[d].type: Unsupported value")),
            "{p:?}"
        );
        assert!(structural_problems(&json!({"type": "string"}), "s")[0]
            .contains("must be object at the root"));
    }

    #[test]
    fn pruning_names_what_it_drops() {
        let mut v = json!({
            "apiVersion": "stable.example.com/v1", "kind": "CronTab",
            "metadata": {"name": "a", "labels": {"x": "y"}},
            "spec": {
                "cronSpec": "* * * * */5", "bogus": 1, "note": null, "image": null,
                "extra": {"anything": {"goes": true}},
                "labels": {"k": "v"},
                "items": [{"name": "i", "colour": "red"}]
            },
            "top": true
        });
        let mut dropped = prune(&mut v, &schema());
        dropped.sort();
        assert_eq!(dropped, vec!["spec.bogus", "spec.items[0].colour", "top"]);
        assert_eq!(
            v["metadata"]["labels"]["x"], "y",
            "metadata is the server's"
        );
        assert_eq!(v["spec"]["note"], Value::Null, "nullable: kept");
        assert!(
            v["spec"].get("image").is_none(),
            "a null that may not be: dropped"
        );
        assert_eq!(v["spec"]["extra"]["anything"]["goes"], true);
        assert_eq!(v["spec"]["labels"]["k"], "v");
    }

    #[test]
    fn defaults_fill_in_what_is_left_out() {
        let mut v = json!({"spec": {"cronSpec": "x", "items": [{"name": "a"}, {"size": "big"}]}});
        apply_defaults(&mut v, &schema());
        assert_eq!(v["spec"]["replicas"], 1);
        assert_eq!(v["spec"]["items"][0]["size"], "small");
        assert_eq!(v["spec"]["items"][1]["size"], "big");
        assert!(v.get("status").is_none(), "only objects that are there");
    }

    #[test]
    fn validation_speaks_in_field_paths() {
        let val = Validator::new(&schema()).expect("compiles");
        let ok = json!({"metadata": {"name": 5}, "spec": {"cronSpec": "* * * * */5", "port": "http", "note": null}});
        assert_eq!(val.problems(&ok), Vec::<String>::new());
        let bad = json!({"spec": {"replicas": 20, "port": 1.5, "items": [{"name": 3}]}});
        let p = val.problems(&bad);
        assert!(
            p.contains(&"spec.cronSpec: Required value".to_string()),
            "{p:?}"
        );
        assert!(
            p.iter()
                .any(|x| x.starts_with("spec.replicas: Invalid value: 20: ")),
            "{p:?}"
        );
        assert!(
            p.iter()
                .any(|x| x.starts_with("spec.port: Invalid value: 1.5")),
            "{p:?}"
        );
        assert!(
            p.iter()
                .any(|x| x.starts_with("spec.items[0].name: Invalid value: 3")),
            "{p:?}"
        );
        let pattern = json!({"spec": {"cronSpec": "every minute"}});
        assert!(
            val.problems(&pattern)[0].starts_with("spec.cronSpec: Invalid value: \"every minute\"")
        );
    }
}
