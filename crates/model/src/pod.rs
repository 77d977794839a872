//! Facts about a pod that several parts need alike (the controllers, the
//! scheduler, the agent, the CLI, chaos and tests): one definition each.

use std::time::{Duration, SystemTime};

use keelson_proto::v1;

/// The pod's Ready condition, if it has one.
pub fn ready_condition(p: &v1::Pod) -> Option<&v1::PodCondition> {
    p.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.r#type == "Ready")
}

/// Whether the pod is Ready (its Ready condition is "True").
pub fn is_ready(p: &v1::Pod) -> bool {
    ready_condition(p).is_some_and(|c| c.status == "True")
}

/// Ready, and (with `min_ready` above zero) ready since strictly more than
/// `min_ready` before `now`. An unreadable transition time is not available.
pub fn is_available(pod: &v1::Pod, min_ready: Duration, now: SystemTime) -> bool {
    let Some(c) = ready_condition(pod).filter(|c| c.status == "True") else {
        return false;
    };
    if min_ready.is_zero() {
        return true;
    }
    crate::time::parse_rfc3339(&c.last_transition_time)
        .and_then(|t| t.checked_add(min_ready))
        .is_some_and(|t| t < now)
}

/// Whether the toleration tolerates the taint, as Kubernetes'
/// `Toleration.ToleratesTaint`: an empty effect matches every effect, an
/// empty key every key; operator `Exists` matches any value, `Equal` (or
/// empty) the same value; an unknown operator matches nothing.
pub fn tolerates(toleration: &v1::Toleration, taint: &v1::Taint) -> bool {
    if !toleration.effect.is_empty() && toleration.effect != taint.effect {
        return false;
    }
    if !toleration.key.is_empty() && toleration.key != taint.key {
        return false;
    }
    match toleration.operator.as_str() {
        "" | "Equal" => toleration.value == taint.value,
        "Exists" => true,
        _ => false,
    }
}

/// A ConfigMap or Secret a pod reads, in the pod's namespace.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConfigRef {
    /// [`crate::Kind::ConfigMap`] or [`crate::Kind::Secret`].
    pub kind: crate::Kind,
    pub name: String,
    /// Whether the pod starts without it (every use of it says
    /// `optional: true`).
    pub optional: bool,
}

/// The ConfigMaps and Secrets a pod reads (env, envFrom, volumes), each
/// once, sorted; a name used both optionally and not counts as required.
pub fn config_refs(p: &v1::Pod) -> Vec<ConfigRef> {
    use crate::Kind;
    let mut refs: std::collections::BTreeMap<(Kind, String), bool> = Default::default();
    let mut add = |kind: Kind, name: &str, optional: Option<bool>| {
        if name.is_empty() {
            return;
        }
        let o = refs.entry((kind, name.to_string())).or_insert(true);
        *o = *o && optional == Some(true);
    };
    let Some(spec) = p.spec.as_ref() else {
        return Vec::new();
    };
    for c in &spec.containers {
        for e in &c.env {
            let Some(from) = &e.value_from else { continue };
            if let Some(r) = &from.config_map_key_ref {
                add(Kind::ConfigMap, &r.name, r.optional);
            }
            if let Some(r) = &from.secret_key_ref {
                add(Kind::Secret, &r.name, r.optional);
            }
        }
        for f in &c.env_from {
            if let Some(r) = &f.config_map_ref {
                add(Kind::ConfigMap, &r.name, r.optional);
            }
            if let Some(r) = &f.secret_ref {
                add(Kind::Secret, &r.name, r.optional);
            }
        }
    }
    for v in &spec.volumes {
        if let Some(c) = &v.config_map {
            add(Kind::ConfigMap, &c.name, c.optional);
        }
        if let Some(s) = &v.secret {
            add(Kind::Secret, &s.secret_name, s.optional);
        }
    }
    refs.into_iter()
        .map(|((kind, name), optional)| ConfigRef {
            kind,
            name,
            optional,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_refs_are_every_use_once() {
        let pod: v1::Pod = serde_json::from_value(serde_json::json!({
            "spec": {
                "containers": [{
                    "name": "a", "image": "x",
                    "env": [
                        {"name": "A", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "a"}}},
                        {"name": "B", "valueFrom": {"secretKeyRef": {"name": "db", "key": "pw", "optional": true}}},
                        {"name": "C", "value": "plain"}
                    ],
                    "envFrom": [{"configMapRef": {"name": "cfg", "optional": true}}, {"secretRef": {"name": "tls"}}]
                }],
                "volumes": [
                    {"name": "v", "configMap": {"name": "files", "optional": true}},
                    {"name": "w", "secret": {"secretName": "db", "optional": true}},
                    {"name": "e", "emptyDir": {}}
                ]
            }
        }))
        .expect("pod");
        let refs = config_refs(&pod);
        let got: Vec<(crate::Kind, &str, bool)> = refs
            .iter()
            .map(|r| (r.kind, r.name.as_str(), r.optional))
            .collect();
        use crate::Kind::{ConfigMap, Secret};
        assert_eq!(
            got,
            vec![
                (ConfigMap, "cfg", false),
                (ConfigMap, "files", true),
                (Secret, "db", true),
                (Secret, "tls", false),
            ]
        );
    }

    fn pod(conditions: &[(&str, &str)]) -> v1::Pod {
        v1::Pod {
            status: Some(v1::PodStatus {
                conditions: conditions
                    .iter()
                    .map(|(t, s)| v1::PodCondition {
                        r#type: t.to_string(),
                        status: s.to_string(),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn ready_means_a_true_ready_condition() {
        assert!(is_ready(&pod(&[
            ("PodScheduled", "True"),
            ("Ready", "True")
        ])));
        assert!(!is_ready(&pod(&[("Ready", "False")])));
        assert!(!is_ready(&pod(&[("Ready", "Unknown")])));
        assert!(!is_ready(&pod(&[("PodScheduled", "True")])));
        assert!(!is_ready(&v1::Pod::default()));
        assert_eq!(
            ready_condition(&pod(&[("Ready", "False")])).map(|c| c.status.as_str()),
            Some("False")
        );
    }
}
