//! Facts about a pod that several parts need alike (the controllers, the
//! scheduler, the agent, the CLI, chaos and tests): one definition each.

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

#[cfg(test)]
mod tests {
    use super::*;

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
