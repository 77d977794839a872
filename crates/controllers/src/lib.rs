//! Keelson's controllers: the reconcile logic that drives workload objects
//! toward their spec, written as pure functions.
//!
//! # Purpose
//!
//! A controller looks at one object (a ReplicaSet, say) and the objects it
//! manages (its pods) and decides what should change. This crate holds only
//! that decision. Each `reconcile` function takes a snapshot and returns a
//! list of actions; a separate runner (not in this crate) lists and watches
//! the API server, calls `reconcile`, and carries out the actions.
//!
//! # Purity
//!
//! Nothing here does IO, spawns tasks, reads the clock or uses randomness.
//! Time is passed in as a `now: SystemTime` parameter, so every decision can
//! be reproduced and unit tested from plain values. Inputs come from API
//! clients and are treated as untrusted: malformed values produce no actions
//! (or are ignored), never a panic.
//!
//! # Layout
//!
//! - [`cronjob`]: the CronJob controller (a Job per schedule time, named
//!   for it so none runs twice; concurrency policies, history limits).
//! - [`daemonset`]: the DaemonSet controller (a pod per eligible node by
//!   nodeSelector and taints, rolling update within maxUnavailable).
//! - [`history`]: a workload's templates as ControllerRevisions (shared by
//!   the StatefulSet and DaemonSet controllers).
//! - [`job`]: the Job controller (pods until `completions` succeed, each
//!   counted once through the tracking finalizer; backoff limit, deadline,
//!   suspend, TTL).
//! - [`nodeipam`]: pod CIDRs for nodes (one subnet of the cluster CIDR each).
//! - [`serviceaccount`]: the `default` ServiceAccount of every namespace.
//! - [`statefulset`]: the StatefulSet controller (pods with stable names
//!   in ordinal order, rolling update from the highest ordinal down to a
//!   partition, revisions as ControllerRevisions).
//! - [`replicaset`]: the ReplicaSet controller (create, delete and adopt
//!   pods; compute the status), after Kubernetes' `ReplicaSetController`.

use keelson_model::{Kind, Resource};
use keelson_proto::v1;

/// A new pod of `owner` as Kubernetes' `GetPodFromTemplate` makes it: the
/// template's labels, annotations, finalizers and spec; the name left to
/// the server (`<owner>-` and a suffix); `owner_ref` its only owner.
pub fn pod_from_template<K: Resource>(
    owner: &K,
    template: &v1::PodTemplateSpec,
    owner_ref: &v1::OwnerReference,
) -> v1::Pod {
    let meta = owner.meta();
    let tm = template.metadata.clone().unwrap_or_default();
    v1::Pod {
        api_version: Kind::Pod.api_version().to_string(),
        kind: Kind::Pod.name().to_string(),
        metadata: Some(v1::ObjectMeta {
            generate_name: format!("{}-", meta.name),
            namespace: meta.namespace.clone(),
            labels: tm.labels,
            annotations: tm.annotations,
            finalizers: tm.finalizers,
            owner_references: vec![owner_ref.clone()],
            ..Default::default()
        }),
        spec: template.spec.clone(),
        status: None,
    }
}

/// A count of objects as a status field holds it.
pub(crate) fn count(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// `value` (an int or a percentage of `total`, rounded up) as a count; 0
/// when unreadable.
pub(crate) fn scaled(value: &str, total: i64) -> i64 {
    match value.strip_suffix('%') {
        Some(p) => p
            .parse::<i64>()
            .map_or(0, |p| (p.saturating_mul(total) + 99) / 100),
        None => value.parse().unwrap_or(0),
    }
}

pub mod cronjob;
pub mod daemonset;
pub mod deployment;
pub mod endpoints;
pub mod gc;
pub mod history;
pub mod job;
pub mod nodeipam;
pub mod nodelifecycle;
pub mod replicaset;
pub mod serviceaccount;
pub mod statefulset;
