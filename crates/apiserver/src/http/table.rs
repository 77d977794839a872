//! Server-side tables (`Accept: application/json;as=Table;v=v1;g=meta.k8s.io`):
//! what `kubectl get` prints, since kubectl has no printers of its own for
//! these kinds. The columns and cells are [`keelson_model::printers`]',
//! the same the `keelson` CLI prints; columns that only `-o wide` shows
//! have priority 1. Each row carries the object's metadata (kubectl takes
//! the NAMESPACE column of `-A` from it), or the whole object, or nothing,
//! per `includeObject`. Pure: objects and `now` in, JSON out.

use std::time::SystemTime;

use keelson_model::{manifest, printers, Kind, Object};
use serde_json::{json, Value};

/// What each row carries (`includeObject`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Include {
    None,
    #[default]
    Metadata,
    Object,
}

impl Include {
    pub fn parse(s: &str) -> Option<Include> {
        match s {
            "" | "Metadata" => Some(Include::Metadata),
            "None" => Some(Include::None),
            "Object" => Some(Include::Object),
            _ => None,
        }
    }
}

/// The columns of `kind`: every wide column, the ones beyond the narrow
/// set with priority 1.
pub fn column_definitions(kind: Kind) -> Vec<Value> {
    let narrow = printers::columns(kind, false).len();
    printers::columns(kind, true)
        .into_iter()
        .enumerate()
        .map(|(i, name)| {
            json!({
                "name": name,
                "type": "string",
                "format": if name == "NAME" { "name" } else { "" },
                "description": "",
                "priority": if i < narrow { 0 } else { 1 },
            })
        })
        .collect()
}

/// One row.
pub fn row(o: &Object, include: Include, now: SystemTime) -> Value {
    let mut r = json!({ "cells": printers::row(o, true, now) });
    match include {
        Include::None => {}
        Include::Metadata => {
            let full = manifest::to_value(o);
            r["object"] = json!({
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": full.get("metadata").cloned().unwrap_or_else(|| json!({})),
            });
        }
        Include::Object => r["object"] = manifest::to_value(o),
    }
    r
}

/// A table of `objects`; `list_metadata` is the list's (resourceVersion,
/// continue).
pub fn table(
    kind: Kind,
    objects: &[Object],
    list_metadata: Value,
    include: Include,
    now: SystemTime,
) -> Value {
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_metadata,
        "columnDefinitions": column_definitions(kind),
        "rows": objects.iter().map(|o| row(o, include, now)).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use keelson_model::Resource;
    use keelson_proto::v1;
    use std::time::Duration;

    fn pod() -> Object {
        v1::Pod {
            metadata: Some(v1::ObjectMeta {
                name: "web-1".into(),
                namespace: "prod".into(),
                creation_timestamp: "2026-01-01T00:00:00Z".into(),
                resource_version: "42".into(),
                ..Default::default()
            }),
            spec: Some(v1::PodSpec {
                node_name: "n1".into(),
                containers: vec![v1::Container {
                    name: "main".into(),
                    image: "builtin/sleep".into(),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            status: Some(v1::PodStatus {
                phase: "Running".into(),
                pod_ip: "127.11.0.1".into(),
                ..Default::default()
            }),
            ..Default::default()
        }
        .into_object()
    }

    #[test]
    fn a_pod_table_has_kubectls_columns_and_the_rows_metadata() {
        let now = keelson_model::time::parse_rfc3339("2026-01-01T00:05:00Z")
            .unwrap_or(SystemTime::UNIX_EPOCH + Duration::from_secs(0));
        let t = table(
            Kind::Pod,
            &[pod()],
            json!({"resourceVersion": "42"}),
            Include::Metadata,
            now,
        );
        assert_eq!(t["kind"], "Table");
        let cols: Vec<(String, i64)> = t["columnDefinitions"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| {
                (
                    c["name"].as_str().unwrap_or_default().to_string(),
                    c["priority"].as_i64().unwrap_or(-1),
                )
            })
            .collect();
        let narrow = printers::columns(Kind::Pod, false);
        assert_eq!(&narrow[..5], ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]);
        for (i, (name, priority)) in cols.iter().enumerate() {
            assert_eq!(*priority, i64::from(i >= narrow.len()), "{name}");
        }
        assert_eq!(t["columnDefinitions"][0]["format"], "name");
        let row = &t["rows"][0];
        assert_eq!(row["cells"][0], "web-1");
        assert_eq!(row["cells"][2], "Running");
        assert_eq!(row["cells"][4], "5m");
        assert_eq!(row["cells"].as_array().map(Vec::len), Some(cols.len()));
        assert_eq!(row["object"]["kind"], "PartialObjectMetadata");
        assert_eq!(row["object"]["metadata"]["namespace"], "prod");
        assert_eq!(t["metadata"]["resourceVersion"], "42");
    }

    #[test]
    fn include_object_decides_what_rows_carry() {
        let now = SystemTime::now();
        assert_eq!(row(&pod(), Include::None, now).get("object"), None);
        assert_eq!(row(&pod(), Include::Object, now)["object"]["kind"], "Pod");
        assert_eq!(Include::parse(""), Some(Include::Metadata));
        assert_eq!(Include::parse("Object"), Some(Include::Object));
        assert_eq!(Include::parse("All"), None);
    }
}
