//! `keelson describe`: an object as "Key: value" lines and indented YAML
//! sections, then its events.

use std::collections::BTreeMap;
use std::time::SystemTime;

use keelson_model::printers::event_time;
use keelson_model::time::{age, parse_rfc3339};
use keelson_model::{manifest, meta_of, Object};
use keelson_proto::v1;

use super::table::{header, render};

/// Width of the "Key:" column.
const KEY_WIDTH: usize = 15;

fn line(out: &mut String, key: &str, value: &str) {
    out.push_str(&format!("{:<KEY_WIDTH$}{value}\n", format!("{key}:")));
}

/// `k=v` one per line, aligned under the first; `<none>` when empty.
fn map_lines(out: &mut String, key: &str, m: &BTreeMap<String, String>) {
    if m.is_empty() {
        line(out, key, "<none>");
        return;
    }
    for (i, (k, v)) in m.iter().enumerate() {
        let text = format!("{k}={v}");
        if i == 0 {
            line(out, key, &text);
        } else {
            out.push_str(&format!("{:KEY_WIDTH$}{text}\n", ""));
        }
    }
}

fn title(key: &str) -> String {
    let mut c = key.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

fn indent(text: &str, by: usize) -> String {
    let pad = " ".repeat(by);
    text.lines()
        .map(|l| {
            if l.is_empty() {
                "\n".to_string()
            } else {
                format!("{pad}{l}\n")
            }
        })
        .collect()
}

/// The whole description of `o` with its `events` (already filtered to it).
pub fn describe(o: &Object, events: &[v1::Event], now: SystemTime) -> String {
    let mut out = String::new();
    let meta = meta_of(o).cloned().unwrap_or_default();
    line(&mut out, "Name", &meta.name);
    if !meta.namespace.is_empty() {
        line(&mut out, "Namespace", &meta.namespace);
    }
    map_lines(&mut out, "Labels", &meta.labels);
    map_lines(&mut out, "Annotations", &meta.annotations);
    let created = if meta.creation_timestamp.is_empty() {
        "<unknown>".to_string()
    } else {
        format!(
            "{} ({} ago)",
            meta.creation_timestamp,
            age(&meta.creation_timestamp, now)
        )
    };
    line(&mut out, "Created", &created);
    if !meta.deletion_timestamp.is_empty() {
        line(&mut out, "Deleting", &meta.deletion_timestamp);
    }
    if let Some(owner) = keelson_model::controller_of(&meta).or(meta.owner_references.first()) {
        line(
            &mut out,
            "Controlled By",
            &format!("{}/{}", owner.kind, owner.name),
        );
    }
    if !meta.finalizers.is_empty() {
        line(&mut out, "Finalizers", &meta.finalizers.join(", "));
    }
    if let serde_json::Value::Object(fields) = manifest::to_value(o) {
        for (k, v) in fields {
            if matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
                continue;
            }
            match &v {
                serde_json::Value::Object(_) | serde_json::Value::Array(_) => {
                    out.push_str(&format!("{}:\n", title(&k)));
                    let yaml = serde_yaml::to_string(&v).unwrap_or_default();
                    out.push_str(&indent(&yaml, 2));
                }
                serde_json::Value::String(s) => line(&mut out, &title(&k), s),
                other => line(&mut out, &title(&k), &other.to_string()),
            }
        }
    }
    out.push_str(&events_section(events, now));
    out
}

/// `Events:` and a TYPE REASON AGE FROM MESSAGE table, or `Events: <none>`.
pub fn events_section(events: &[v1::Event], now: SystemTime) -> String {
    if events.is_empty() {
        let mut s = String::new();
        line(&mut s, "Events", "<none>");
        return s;
    }
    let mut sorted: Vec<&v1::Event> = events.iter().collect();
    sorted.sort_by_key(|e| parse_rfc3339(event_time(e)));
    let rows: Vec<Vec<String>> = sorted
        .into_iter()
        .map(|e| {
            let mut when = age(event_time(e), now);
            if e.count > 1 && !e.first_timestamp.is_empty() {
                when = format!(
                    "{when} (x{} over {})",
                    e.count,
                    age(&e.first_timestamp, now)
                );
            }
            let from = e
                .source
                .as_ref()
                .map(|s| s.component.clone())
                .filter(|c| !c.is_empty())
                .unwrap_or_else(|| e.reporting_component.clone());
            vec![
                e.r#type.clone(),
                e.reason.clone(),
                when,
                from,
                e.message.clone(),
            ]
        })
        .collect();
    let table = render(
        &header(&["TYPE", "REASON", "AGE", "FROM", "MESSAGE"]),
        &rows,
    );
    format!("Events:\n{}", indent(&table, 2))
}

#[cfg(test)]
mod tests {
    use super::*;
    use keelson_model::Resource;

    fn now() -> SystemTime {
        humantime::parse_rfc3339("2024-05-01T10:00:00Z").expect("time")
    }

    #[test]
    fn describes_metadata_sections_and_events() {
        let d = manifest::parse(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  namespace: default\n  labels: {app: web, tier: front}\n  creationTimestamp: 2024-05-01T09:00:00Z\nspec:\n  replicas: 2\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec: {containers: [{name: web, image: x}]}\n",
        )
        .expect("parse")
        .remove(0);
        let ev = v1::Event {
            r#type: "Normal".into(),
            reason: "ScalingReplicaSet".into(),
            message: "Scaled up replica set web-1 to 2".into(),
            source: Some(v1::EventSource {
                component: "deployment-controller".into(),
                host: String::new(),
            }),
            first_timestamp: "2024-05-01T09:00:00Z".into(),
            last_timestamp: "2024-05-01T09:58:00Z".into(),
            count: 3,
            ..Default::default()
        };
        let text = describe(&d, &[ev], now());
        assert!(
            text.starts_with("Name:          web\nNamespace:     default\n"),
            "{text}"
        );
        assert!(
            text.contains("Labels:        app=web\n               tier=front\n"),
            "{text}"
        );
        assert!(text.contains("Annotations:   <none>\n"), "{text}");
        assert!(
            text.contains("Created:       2024-05-01T09:00:00Z (60m ago)\n"),
            "{text}"
        );
        assert!(text.contains("Spec:\n  replicas: 2\n"), "{text}");
        assert!(text.contains("Events:\n  TYPE     REASON"), "{text}");
        assert!(text.contains("2m (x3 over 60m)"), "{text}");
        assert!(text.contains("deployment-controller"), "{text}");

        let ns = v1::Namespace::default().into_object();
        let text = describe(&ns, &[], now());
        assert!(text.ends_with("Events:        <none>\n"), "{text}");
        assert!(text.contains("Created:       <unknown>"), "{text}");
    }
}
