//! What a Deployment's rollout looks like from outside the controller:
//! the annotations and labels the Deployment controller writes (revisions,
//! the pod-template hash, the change cause) and kubectl's reading of a
//! rollout's progress (`rollout status`), shared by the controllers, which
//! write them, and the CLI, which reads them.

use keelson_proto::v1;

use crate::Resource;

/// The revision of a ReplicaSet (and, copied, of its Deployment).
pub const REVISION_ANNOTATION: &str = "deployment.kubernetes.io/revision";
/// Earlier revisions of a ReplicaSet that was rolled back to.
pub const REVISION_HISTORY_ANNOTATION: &str = "deployment.kubernetes.io/revision-history";
/// The label that keeps the pods of a Deployment's ReplicaSets apart.
pub const POD_TEMPLATE_HASH_LABEL: &str = "pod-template-hash";
/// Why a rollout happened (`kubectl annotate ... kubernetes.io/change-cause`).
pub const CHANGE_CAUSE_ANNOTATION: &str = "kubernetes.io/change-cause";
/// The condition that tracks a rollout's progress.
pub const PROGRESSING: &str = "Progressing";
/// The Progressing condition's reason once the progress deadline passed.
pub const TIMED_OUT_REASON: &str = "ProgressDeadlineExceeded";
/// `spec.replicas` when unset.
pub const DEFAULT_REPLICAS: i32 = 1;

/// The condition of `type_` in a Deployment's status.
pub fn condition<'s>(
    st: &'s v1::DeploymentStatus,
    type_: &str,
) -> Option<&'s v1::DeploymentCondition> {
    st.conditions.iter().find(|c| c.r#type == type_)
}

/// Whether the Deployment's Progressing condition says its progress
/// deadline passed (kubectl's rollout status then fails).
pub fn progress_deadline_exceeded(d: &v1::Deployment) -> bool {
    d.status
        .as_ref()
        .and_then(|st| condition(st, PROGRESSING))
        .is_some_and(|c| c.reason == TIMED_OUT_REASON)
}

/// For `keelson rollout status`: whether the rollout is done, and kubectl's
/// message. A Deployment past its progress deadline is not done and never
/// will be (see [`progress_deadline_exceeded`]).
pub fn rollout_status(d: &v1::Deployment) -> (bool, String) {
    let meta = d.meta();
    let name = &meta.name;
    let st = d.status.clone().unwrap_or_default();
    if meta.generation > st.observed_generation {
        return (
            false,
            "Waiting for deployment spec update to be observed...".to_string(),
        );
    }
    if progress_deadline_exceeded(d) {
        return (
            false,
            format!("deployment \"{name}\" exceeded its progress deadline"),
        );
    }
    let replicas = d
        .spec
        .as_ref()
        .and_then(|s| s.replicas)
        .unwrap_or(DEFAULT_REPLICAS);
    let msg = if st.updated_replicas < replicas {
        format!(
            "{} out of {replicas} new replicas have been updated...",
            st.updated_replicas
        )
    } else if st.replicas > st.updated_replicas {
        format!(
            "{} old replicas are pending termination...",
            st.replicas.saturating_sub(st.updated_replicas)
        )
    } else if st.available_replicas < st.updated_replicas {
        format!(
            "{} of {} updated replicas are available...",
            st.available_replicas, st.updated_replicas
        )
    } else {
        return (
            true,
            format!("deployment \"{name}\" successfully rolled out"),
        );
    };
    (
        false,
        format!("Waiting for deployment \"{name}\" rollout to finish: {msg}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment(generation: i64, status: Option<v1::DeploymentStatus>) -> v1::Deployment {
        v1::Deployment {
            metadata: Some(v1::ObjectMeta {
                name: "web".into(),
                generation,
                ..Default::default()
            }),
            spec: Some(v1::DeploymentSpec {
                replicas: Some(3),
                ..Default::default()
            }),
            status,
            ..Default::default()
        }
    }

    fn st(observed: i64, replicas: i32, updated: i32, available: i32) -> v1::Deployment {
        deployment(
            2,
            Some(v1::DeploymentStatus {
                observed_generation: observed,
                replicas,
                updated_replicas: updated,
                available_replicas: available,
                ..Default::default()
            }),
        )
    }

    #[test]
    fn rollout_status_messages() {
        let waiting = |m: &str| {
            (
                false,
                format!("Waiting for deployment \"web\" rollout to finish: {m}"),
            )
        };
        let unobserved = (
            false,
            "Waiting for deployment spec update to be observed...".to_string(),
        );
        let done = (
            true,
            "deployment \"web\" successfully rolled out".to_string(),
        );
        let cases = vec![
            (st(1, 3, 3, 3), unobserved.clone()),
            (
                st(2, 3, 1, 3),
                waiting("1 out of 3 new replicas have been updated..."),
            ),
            (
                st(2, 4, 3, 3),
                waiting("1 old replicas are pending termination..."),
            ),
            (
                st(2, 3, 3, 1),
                waiting("1 of 3 updated replicas are available..."),
            ),
            (st(2, 3, 3, 3), done.clone()),
            (st(3, 3, 3, 3), done),
            (deployment(2, None), unobserved),
        ];
        for (d, want) in cases {
            assert_eq!(rollout_status(&d), want);
        }
    }

    #[test]
    fn a_passed_progress_deadline_is_never_done() {
        let mut d = st(2, 3, 3, 3);
        assert!(!progress_deadline_exceeded(&d));
        if let Some(s) = d.status.as_mut() {
            s.conditions.push(v1::DeploymentCondition {
                r#type: PROGRESSING.into(),
                status: "False".into(),
                reason: TIMED_OUT_REASON.into(),
                ..Default::default()
            });
        }
        assert!(progress_deadline_exceeded(&d));
        assert_eq!(
            rollout_status(&d),
            (
                false,
                "deployment \"web\" exceeded its progress deadline".to_string()
            )
        );
    }
}
