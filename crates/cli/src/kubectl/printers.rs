//! What `keelson get` adds around the model's printers
//! ([`keelson_model::printers`], kubectl's columns and cells, shared with
//! the API server's server-side Tables): the NAMESPACE column of `-A`
//! ([`header_for`], [`row_for`]), the order of events, and how kubectl names
//! objects in messages and `-o name` ([`qualified`], [`slash_name`]).

use std::time::SystemTime;

use keelson_model::printers::{columns, event_time, row};
use keelson_model::time::parse_rfc3339;
use keelson_model::{kind_of, meta_of, Kind, Object};
use keelson_proto::api::object::Kind as Variant;

/// The resource name with its API group, as kubectl names objects in
/// messages and `-o name`: `pod`, `deployment.apps`, `lease.coordination.k8s.io`.
pub fn qualified(kind: Kind) -> String {
    let lower = kind.name().to_ascii_lowercase();
    match kind.api_version().split_once('/') {
        Some((group, _)) => format!("{lower}.{group}"),
        None => lower,
    }
}

/// `deployment/web`: the lowercased kind and the name.
pub fn slash_name(kind: Kind, name: &str) -> String {
    format!("{}/{name}", kind.name().to_ascii_lowercase())
}

/// The model's columns with a leading NAMESPACE column when listing a
/// namespaced kind across namespaces.
pub fn header_for(kind: Kind, wide: bool, all_namespaces: bool) -> Vec<String> {
    let mut h: Vec<String> = Vec::new();
    if all_namespaces && kind.namespaced() {
        h.push("NAMESPACE".into());
    }
    h.extend(columns(kind, wide).into_iter().map(String::from));
    h
}

/// The model's row with the namespace first when [`header_for`] has that
/// column.
pub fn row_for(o: &Object, wide: bool, all_namespaces: bool, now: SystemTime) -> Vec<String> {
    let mut r = Vec::new();
    if all_namespaces && kind_of(o).is_some_and(Kind::namespaced) {
        r.push(meta_of(o).map(|m| m.namespace.clone()).unwrap_or_default());
    }
    r.extend(row(o, wide, now));
    r
}

/// Events oldest first, as `kubectl get events` ends with the newest.
pub fn sort_events(objs: &mut [Object]) {
    let key = |o: &Object| match o.kind.as_ref() {
        Some(Variant::Event(e)) => parse_rfc3339(event_time(e)),
        _ => None,
    };
    objs.sort_by_key(key);
}

#[cfg(test)]
mod tests {
    use super::*;
    use keelson_model::Resource;
    use keelson_proto::v1;

    fn now() -> SystemTime {
        humantime::parse_rfc3339("2024-05-01T10:00:00Z").expect("time")
    }

    fn pod() -> v1::Pod {
        v1::Pod {
            metadata: Some(v1::ObjectMeta {
                name: "web-1".into(),
                namespace: "default".into(),
                creation_timestamp: "2024-05-01T09:57:00Z".into(),
                ..Default::default()
            }),
            spec: Some(v1::PodSpec {
                node_name: "node-a".into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn pod_row_with_namespace_column() {
        let o = pod().into_object();
        assert_eq!(header_for(Kind::Pod, false, true)[0], "NAMESPACE");
        assert_eq!(row_for(&o, false, true, now())[..2], ["default", "web-1"]);
        assert_eq!(header_for(Kind::Node, false, true)[0], "NAME");
        assert_eq!(header_for(Kind::Pod, true, false), columns(Kind::Pod, true));
        // Every cell under its header, wide or not, with NAMESPACE or not.
        for (wide, all) in [(false, false), (true, false), (false, true), (true, true)] {
            assert_eq!(
                row_for(&o, wide, all, now()).len(),
                header_for(Kind::Pod, wide, all).len(),
                "wide {wide}, all namespaces {all}"
            );
        }
        let wide = header_for(Kind::Pod, true, true);
        let node = wide.iter().position(|c| c == "NODE").expect("NODE");
        assert_eq!(row_for(&o, true, true, now())[node], "node-a");
    }

    #[test]
    fn events_sort_oldest_first() {
        let event = |name: &str, last: &str| {
            v1::Event {
                metadata: Some(v1::ObjectMeta {
                    name: name.into(),
                    ..Default::default()
                }),
                last_timestamp: last.into(),
                ..Default::default()
            }
            .into_object()
        };
        let mut objs = vec![
            event("b", "2024-05-01T09:59:00Z"),
            event("c", "2024-05-01T10:00:00Z"),
            event("a", "2024-05-01T09:00:00Z"),
        ];
        sort_events(&mut objs);
        let names: Vec<String> = objs
            .iter()
            .filter_map(|o| meta_of(o).map(|m| m.name.clone()))
            .collect();
        assert_eq!(names, ["a", "b", "c"]);
    }

    #[test]
    fn names() {
        assert_eq!(qualified(Kind::Pod), "pod");
        assert_eq!(qualified(Kind::Deployment), "deployment.apps");
        assert_eq!(qualified(Kind::Lease), "lease.coordination.k8s.io");
        assert_eq!(slash_name(Kind::ReplicaSet, "web"), "replicaset/web");
    }
}
