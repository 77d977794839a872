//! Kubernetes' strategic merge patch (`application/strategic-merge-patch+json`),
//! the patch `kubectl apply`, `edit`, `set image` and `rollout restart` send.
//!
//! Like a JSON merge patch (objects merge key by key, `null` deletes), except
//! where the field's type says otherwise ([`crate::schema`]): lists with a
//! merge key (containers by `name`, ports by `containerPort`, conditions by
//! `type`...) merge element by element, lists of primitives with the merge
//! strategy (finalizers) merge as sets, and every other list is replaced.
//! Directives, as Kubernetes' `strategicpatch` package reads them:
//! - `$patch: replace` in an object (replace it whole) or as an element of a
//!   merging list (replace the list by the patch's other elements);
//!   `$patch: delete` in an object (delete it) or in a list element (delete
//!   the element with that key); `$patch: merge` (the default);
//! - `$retainKeys: [..]`: keys of the old object not listed go;
//! - `$deleteFromPrimitiveList/<field>: [..]`: values removed from a list;
//! - `$setElementOrder/<field>: [..]`: the order of a merged list. Elements
//!   the order does not name (added by someone else) keep their relative
//!   order after the named ones.
//!
//! Pure: a document and a patch in, the patched document or what is wrong
//! with the patch out.

use serde_json::{Map, Value};

use crate::schema::{Schema, Shape, Strategy, Type};

const PATCH: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const DELETE_FROM: &str = "$deleteFromPrimitiveList/";
const SET_ORDER: &str = "$setElementOrder/";

/// Apply `patch` to `doc`, an object of the type named `type_name` (a
/// message of [`Schema`]: `Pod`, `Deployment`; an unknown name merges with
/// no list merged by key, as for a type with no lists).
pub fn apply(doc: &Value, patch: &Value, type_name: &str) -> Result<Value, String> {
    let Value::Object(patch) = patch else {
        return Err("a strategic merge patch must be a JSON object".into());
    };
    let ty = Schema::get().type_of(type_name);
    let orig = match doc {
        Value::Object(m) => m.clone(),
        _ => Map::new(),
    };
    Ok(merge_map(orig, patch, ty)?
        .map(Value::Object)
        .unwrap_or_else(|| Value::Object(Map::new())))
}

/// Merge `patch` into `orig`; `None` when the patch deletes the object.
fn merge_map(
    mut orig: Map<String, Value>,
    patch: &Map<String, Value>,
    ty: Option<&Type>,
) -> Result<Option<Map<String, Value>>, String> {
    match patch.get(PATCH) {
        None => {}
        Some(Value::String(s)) if s == "merge" => {}
        Some(Value::String(s)) if s == "replace" => {
            let mut rest = patch.clone();
            rest.remove(PATCH);
            return merge_map(Map::new(), &rest, ty);
        }
        Some(Value::String(s)) if s == "delete" => return Ok(None),
        Some(other) => return Err(format!("unknown patch type {other} in {PATCH}")),
    }
    if let Some(keep) = patch.get(RETAIN_KEYS) {
        let Value::Array(keep) = keep else {
            return Err(format!("{RETAIN_KEYS} must be a list of field names"));
        };
        let keep: Vec<&str> = keep.iter().filter_map(Value::as_str).collect();
        orig.retain(|k, _| keep.contains(&k.as_str()));
    }
    for (k, v) in patch {
        if k.starts_with('$') {
            continue;
        }
        let field = ty.and_then(|t| t.field(k));
        if v.is_null() {
            orig.remove(k);
            continue;
        }
        let merged = match (orig.remove(k), v) {
            (Some(Value::Object(o)), Value::Object(p)) => {
                merge_map(o, p, object_type(field.map(|f| &f.shape)))?.map(Value::Object)
            }
            (_, Value::Object(p)) => {
                merge_map(Map::new(), p, object_type(field.map(|f| &f.shape)))?.map(Value::Object)
            }
            (old, Value::Array(p)) => {
                let old = match old {
                    Some(Value::Array(a)) => a,
                    _ => Vec::new(),
                };
                Some(Value::Array(merge_list(old, p, k, field)?))
            }
            (_, scalar) => Some(scalar.clone()),
        };
        if let Some(m) = merged {
            orig.insert(k.clone(), m);
        }
    }
    for (k, v) in patch {
        if let Some(list) = k.strip_prefix(DELETE_FROM) {
            let Value::Array(gone) = v else {
                return Err(format!("{k} must be a list"));
            };
            if let Some(Value::Array(a)) = orig.get_mut(list) {
                a.retain(|x| !gone.contains(x));
            }
        }
    }
    for (k, v) in patch {
        if let Some(list) = k.strip_prefix(SET_ORDER) {
            let Value::Array(order) = v else {
                return Err(format!("{k} must be a list"));
            };
            let key = match ty.and_then(|t| t.field(list)).map(|f| f.strategy) {
                Some(Strategy::Merge { key }) => key,
                _ => None,
            };
            if let Some(Value::Array(a)) = orig.get_mut(list) {
                reorder(a, order, key);
            }
        }
    }
    Ok(Some(orig))
}

/// The type of an object-valued field (or of a list's elements).
fn object_type(shape: Option<&Shape>) -> Option<&'static Type> {
    match shape? {
        Shape::Object(name) => Schema::get().type_of(name),
        Shape::List(inner) => object_type(Some(inner)),
        _ => None,
    }
}

fn merge_list(
    orig: Vec<Value>,
    patch: &[Value],
    name: &str,
    field: Option<&crate::schema::Field>,
) -> Result<Vec<Value>, String> {
    let strategy = field.map(|f| f.strategy).unwrap_or(Strategy::Replace);
    let elem_ty = object_type(field.map(|f| &f.shape));
    let directive = |p: &Value| p.get(PATCH).and_then(Value::as_str).map(str::to_string);
    // `{"$patch": "replace"}` among the elements: the rest is the list.
    let replace = patch.iter().any(|p| {
        p.as_object().is_some_and(|m| m.len() == 1) && directive(p).as_deref() == Some("replace")
    });
    match strategy {
        Strategy::Merge { key: Some(key) } => {
            let mut out = if replace { Vec::new() } else { orig };
            for p in patch {
                let Value::Object(pm) = p else {
                    return Err(format!(
                        "{name}: a list merged by {key:?} holds objects, not {p}"
                    ));
                };
                if replace && pm.len() == 1 && pm.contains_key(PATCH) {
                    continue;
                }
                let Some(id) = pm.get(key) else {
                    return Err(format!("{name}: an element has no merge key {key:?}: {p}"));
                };
                let at = out.iter().position(|o| o.get(key) == Some(id));
                if directive(p).as_deref() == Some("delete") {
                    out.retain(|o| o.get(key) != Some(id));
                    continue;
                }
                match at {
                    Some(i) => {
                        let old = match std::mem::take(&mut out[i]) {
                            Value::Object(m) => m,
                            _ => Map::new(),
                        };
                        match merge_map(old, pm, elem_ty)? {
                            Some(m) => out[i] = Value::Object(m),
                            None => {
                                out.remove(i);
                            }
                        }
                    }
                    None => {
                        if let Some(m) = merge_map(Map::new(), pm, elem_ty)? {
                            out.push(Value::Object(m));
                        }
                    }
                }
            }
            Ok(out)
        }
        Strategy::Merge { key: None } => {
            let mut out = if replace { Vec::new() } else { orig };
            for p in patch {
                if p.is_object() && directive(p).is_some() {
                    continue;
                }
                if !out.contains(p) {
                    out.push(p.clone());
                }
            }
            Ok(out)
        }
        Strategy::Replace | Strategy::RetainKeys => {
            // Atomic: the patch's list, its objects cleared of directives.
            patch
                .iter()
                .map(|p| match p {
                    Value::Object(pm) => Ok(merge_map(Map::new(), pm, elem_ty)?
                        .map(Value::Object)
                        .unwrap_or(Value::Null)),
                    other => Ok(other.clone()),
                })
                .filter(|r| !matches!(r, Ok(Value::Null)))
                .collect()
        }
    }
}

/// Put the elements of `list` named in `order` first, in that order; the
/// others keep their relative order after them.
fn reorder(list: &mut [Value], order: &[Value], key: Option<&str>) {
    let id = |v: &Value| -> Value {
        match key {
            Some(k) => v.get(k).cloned().unwrap_or(Value::Null),
            None => v.clone(),
        }
    };
    let rank = |v: &Value| -> usize {
        let i = id(v);
        order
            .iter()
            .position(|o| match key {
                Some(k) => o.get(k) == Some(&i),
                None => *o == i,
            })
            .unwrap_or(order.len())
    };
    // A stable sort keeps the unnamed ones in their order.
    list.sort_by_key(|v| rank(v));
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment(containers: Value) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
               "metadata": {"name": "web", "labels": {"app": "web", "tier": "front"}},
               "spec": {"replicas": 2,
                        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}},
                        "template": {"spec": {"containers": containers,
                                              "tolerations": [{"key": "a", "operator": "Exists"}]}}}})
    }

    fn containers(d: &Value) -> &Value {
        &d["spec"]["template"]["spec"]["containers"]
    }

    /// The cases of Kubernetes' "Update API objects in place using kubectl
    /// patch" task and of its strategic-merge-patch design document.
    #[test]
    fn kubernetes_documented_cases() {
        let doc = deployment(json!([{"name": "nginx", "image": "nginx",
                                     "ports": [{"containerPort": 80}],
                                     "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]}]));
        // A container added by name: both are there (a merge patch would
        // have replaced the list).
        let p = json!({"spec": {"template": {"spec": {"containers": [{"name": "redis", "image": "redis"}]}}}});
        let out = apply(&doc, &p, "Deployment").unwrap();
        assert_eq!(
            containers(&out)
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["name"].clone())
                .collect::<Vec<_>>(),
            vec![json!("nginx"), json!("redis")]
        );
        // The same container by name: merged field by field.
        let p = json!({"spec": {"template": {"spec": {"containers": [{"name": "nginx", "image": "nginx:1.28"}]}}}});
        let out = apply(&doc, &p, "Deployment").unwrap();
        assert_eq!(containers(&out)[0]["image"], "nginx:1.28");
        assert_eq!(containers(&out)[0]["ports"], json!([{"containerPort": 80}]));
        // Tolerations have no merge key: replaced (as in the task's example).
        let p = json!({"spec": {"template": {"spec": {"tolerations": [{"key": "b", "operator": "Exists"}]}}}});
        let out = apply(&doc, &p, "Deployment").unwrap();
        assert_eq!(
            out["spec"]["template"]["spec"]["tolerations"],
            json!([{"key": "b", "operator": "Exists"}])
        );
        // $retainKeys: the strategy becomes Recreate and rollingUpdate goes.
        let p = json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}});
        let out = apply(&doc, &p, "Deployment").unwrap();
        assert_eq!(out["spec"]["strategy"], json!({"type": "Recreate"}));
        // Without it, a merge keeps rollingUpdate.
        let p = json!({"spec": {"strategy": {"type": "Recreate"}}});
        let out = apply(&doc, &p, "Deployment").unwrap();
        assert_eq!(
            out["spec"]["strategy"]["rollingUpdate"],
            json!({"maxSurge": 1})
        );
        // $patch: delete of a list element, by its key.
        let p = json!({"spec": {"template": {"spec": {"containers": [{"name": "nginx", "env": [{"name": "A", "$patch": "delete"}]}]}}}});
        let out = apply(&doc, &p, "Deployment").unwrap();
        assert_eq!(
            containers(&out)[0]["env"],
            json!([{"name": "B", "value": "2"}])
        );
        // $patch: replace as a list element: the list is the rest.
        let p = json!({"spec": {"template": {"spec": {"containers": [{"name": "nginx", "env": [{"$patch": "replace"}, {"name": "C", "value": "3"}]}]}}}});
        let out = apply(&doc, &p, "Deployment").unwrap();
        assert_eq!(
            containers(&out)[0]["env"],
            json!([{"name": "C", "value": "3"}])
        );
        // $patch: replace in an object: the object is the patch's.
        let p = json!({"metadata": {"labels": {"$patch": "replace", "only": "this"}}});
        let out = apply(&doc, &p, "Deployment").unwrap();
        assert_eq!(out["metadata"]["labels"], json!({"only": "this"}));
        // $patch: delete in an object: gone.
        let p = json!({"spec": {"strategy": {"$patch": "delete"}}});
        let out = apply(&doc, &p, "Deployment").unwrap();
        assert!(out["spec"].get("strategy").is_none());
        // null deletes a key, as in a merge patch; maps merge.
        let p = json!({"metadata": {"labels": {"tier": null, "new": "x"}}});
        let out = apply(&doc, &p, "Deployment").unwrap();
        assert_eq!(out["metadata"]["labels"], json!({"app": "web", "new": "x"}));
    }

    #[test]
    fn set_element_order_and_primitive_lists() {
        let doc = deployment(
            json!([{"name": "a", "image": "x"}, {"name": "b", "image": "y"}, {"name": "sidecar", "image": "z"}]),
        );
        // kubectl apply's shape: the order of the manifest's containers,
        // one changed; the sidecar it never managed stays, after them.
        let p = json!({"spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "b"}, {"name": "a"}],
            "containers": [{"name": "a", "image": "x2"}]}}}});
        let out = apply(&doc, &p, "Deployment").unwrap();
        let names: Vec<_> = containers(&out)
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(names, ["b", "a", "sidecar"]);
        assert_eq!(containers(&out)[1]["image"], "x2");
        // Finalizers merge as a set; $deleteFromPrimitiveList removes.
        let doc = json!({"metadata": {"name": "p", "finalizers": ["a", "b"]}});
        let out = apply(
            &doc,
            &json!({"metadata": {"finalizers": ["b", "c"]}}),
            "Pod",
        )
        .unwrap();
        assert_eq!(out["metadata"]["finalizers"], json!(["a", "b", "c"]));
        let out = apply(
            &doc,
            &json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}}),
            "Pod",
        )
        .unwrap();
        assert_eq!(out["metadata"]["finalizers"], json!(["b"]));
        // Lists of primitives without the strategy are replaced.
        let doc = json!({"spec": {"containers": [{"name": "c", "command": ["a", "b"]}]}});
        let p = json!({"spec": {"containers": [{"name": "c", "command": ["z"]}]}});
        let out = apply(&doc, &p, "Pod").unwrap();
        assert_eq!(out["spec"]["containers"][0]["command"], json!(["z"]));
        // Conditions merge by type (a status patch).
        let doc = json!({"status": {"conditions": [{"type": "Ready", "status": "False"}, {"type": "PodScheduled", "status": "True"}]}});
        let p = json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}});
        let out = apply(&doc, &p, "Pod").unwrap();
        assert_eq!(
            out["status"]["conditions"],
            json!([{"type": "Ready", "status": "True"}, {"type": "PodScheduled", "status": "True"}])
        );
        // Service ports merge by port.
        let doc = json!({"spec": {"ports": [{"port": 80, "targetPort": 8080}]}});
        let p = json!({"spec": {"ports": [{"port": 80, "name": "http"}, {"port": 443}]}});
        let out = apply(&doc, &p, "Service").unwrap();
        assert_eq!(
            out["spec"]["ports"],
            json!([{"port": 80, "targetPort": 8080, "name": "http"}, {"port": 443}])
        );
    }

    #[test]
    fn bad_patches_are_errors_not_panics() {
        let doc = deployment(json!([{"name": "a"}]));
        for p in [
            json!([1, 2]),
            json!({"$patch": "explode"}),
            json!({"spec": {"template": {"spec": {"containers": [{"image": "no-name"}]}}}}),
            json!({"spec": {"template": {"spec": {"containers": ["not an object"]}}}}),
            json!({"spec": {"$retainKeys": "type"}}),
            json!({"metadata": {"$deleteFromPrimitiveList/finalizers": "a"}}),
            json!({"spec": {"template": {"spec": {"$setElementOrder/containers": 3}}}}),
        ] {
            assert!(apply(&doc, &p, "Deployment").is_err(), "{p}");
        }
        // Values of the wrong type are the decoder's business: the patch
        // applies, the strict decode after it refuses.
        let out = apply(&doc, &json!({"spec": {"replicas": "many"}}), "Deployment").unwrap();
        assert_eq!(out["spec"]["replicas"], "many");
    }
}
