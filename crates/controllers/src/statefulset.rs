//! The StatefulSet controller, after Kubernetes' `stateful_set_control.go`
//! and `stateful_set_utils.go`.
//!
//! [`reconcile`] compares a StatefulSet with its pods and its
//! ControllerRevisions and returns the [`Action`]s of one round:
//!
//! - **Revisions** ([`crate::history`]): each pod template the set has
//!   had is a ControllerRevision `<set>-<hash>`. The update revision is the
//!   one holding `spec.template`; the current revision is
//!   `status.currentRevision`. Revisions no pod
//!   uses beyond `revisionHistoryLimit` go, oldest first. Orphaned
//!   revisions and pods of the set's own names are adopted.
//! - **Identity.** Pod `<set>-<ordinal>` for each ordinal from
//!   `ordinals.start`, with `hostname` its name and `subdomain` the
//!   `serviceName` (so the headless Service gives it a DNS name), labelled
//!   `statefulset.kubernetes.io/pod-name`, `apps.kubernetes.io/pod-index`
//!   and `controller-revision-hash`. A pod below the partition is made from
//!   the current revision, any other from the update revision.
//! - **OrderedReady** (default): one step per round. Ordinals are created in
//!   order, each only after the ones before are Running, Ready and
//!   available (minReadySeconds); a Failed or Succeeded pod is deleted and
//!   made again; a terminating pod is waited for. Scale-down deletes the
//!   highest ordinal first, one at a time. **Parallel** creates and deletes
//!   without waiting.
//! - **Rolling update** (all pods healthy first in OrderedReady): pods with
//!   an ordinal at or above `partition` that are not at the update revision
//!   are deleted, highest ordinal first, while fewer than `maxUnavailable`
//!   (default 1) of them are unhealthy; the replica step makes them again
//!   at the update revision. `OnDelete` leaves that to the user.
//! - **Status**: replicas, ready, available, current and updated counts,
//!   the two revisions, observedGeneration; the current revision becomes
//!   the update revision once every replica is updated and ready.
//!
//! Simplifications: no volumeClaimTemplates (the field is refused as
//! unknown), no PVC retention policy; an existing pod's identity labels are
//! not repaired; conditions are not written.

use std::borrow::Borrow;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime};

use keelson_model::pod::{is_available, is_ready};
use keelson_model::selector::LabelSelector;
use keelson_model::{controller_of, controller_reference, Resource};
use keelson_proto::v1;

use crate::count;
use crate::history::{self, template_of as revision_template, RevisionWrite};

/// The label with each pod's (and revision's) revision name.
pub const REVISION_LABEL: &str = crate::daemonset::REVISION_LABEL;
/// The label with a pod's own name (Services can select one pod).
pub const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";
/// The label with a pod's ordinal.
pub const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";

/// One change to make to the cluster.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Write this status (the runner's fence: written before the rest).
    UpdateStatus(v1::StatefulSetStatus),
    /// Write a ControllerRevision (the template's, an adopted one, or one
    /// beyond the history limit to delete).
    Revision(RevisionWrite),
    /// Create this pod (its name fixed: `<set>-<ordinal>`).
    CreatePod(Box<v1::Pod>),
    /// Take in an orphan pod of the set's names: the pod with the set's
    /// ownerReference added.
    AdoptPod(Box<v1::Pod>),
    /// Delete this pod.
    DeletePod(String),
}

fn phase(p: &v1::Pod) -> &str {
    p.status.as_ref().map_or("", |s| s.phase.as_str())
}

fn terminating(p: &v1::Pod) -> bool {
    !p.meta().deletion_timestamp.is_empty()
}

fn running_and_ready(p: &v1::Pod) -> bool {
    phase(p) == "Running" && is_ready(p)
}

/// Running, ready (for minReadySeconds) and not on its way out.
fn healthy(p: &v1::Pod, min_ready: Duration, now: SystemTime) -> bool {
    running_and_ready(p) && is_available(p, min_ready, now) && !terminating(p)
}

fn revision_of(p: &v1::Pod) -> &str {
    p.meta()
        .labels
        .get(REVISION_LABEL)
        .map_or("", String::as_str)
}

/// The ordinal of pod `name` if it is one of set `set`'s names
/// (`<set>-<digits>`).
pub fn ordinal_of(set: &str, name: &str) -> Option<i32> {
    let digits = name.strip_prefix(set)?.strip_prefix('-')?;
    // As the controller names them: no sign, no leading zero (`db-01` is
    // not `db-1`).
    if digits.is_empty()
        || !digits.bytes().all(|b| b.is_ascii_digit())
        || (digits.len() > 1 && digits.starts_with('0'))
    {
        return None;
    }
    digits.parse().ok()
}

/// Pod `ordinal` of `sts` from `template` at revision `revision`.
fn new_pod(
    sts: &v1::StatefulSet,
    template: &v1::PodTemplateSpec,
    revision: &str,
    ordinal: i32,
) -> v1::Pod {
    let m = sts.meta();
    let mut pod = crate::pod_from_template(sts, template, &controller_reference(sts));
    let name = format!("{}-{ordinal}", m.name);
    let meta = pod.meta_mut();
    meta.generate_name.clear();
    meta.name.clone_from(&name);
    meta.labels.insert(POD_NAME_LABEL.to_string(), name.clone());
    meta.labels
        .insert(POD_INDEX_LABEL.to_string(), ordinal.to_string());
    meta.labels
        .insert(REVISION_LABEL.to_string(), revision.to_string());
    let spec = pod.spec.get_or_insert_with(Default::default);
    spec.hostname = name;
    spec.subdomain = sts
        .spec
        .as_ref()
        .map(|s| s.service_name.clone())
        .unwrap_or_default();
    pod
}

/// `value` (an int or a percentage of `total`, rounded up) as a count;
/// unset or unreadable: 1.
fn max_unavailable(value: &str, total: i64) -> i64 {
    crate::scaled(value, total).max(1)
}

/// Decide what to do for `sts` given the pods and ControllerRevisions of
/// its namespace at `now`. Pure; bad input (no spec, no template, an empty
/// selector or one the template does not match) gives no actions, and a
/// set being deleted only gets its status (the garbage collector removes
/// its pods). `pods` and `revisions` may be owned values or references.
pub fn reconcile<P: Borrow<v1::Pod>, R: Borrow<v1::ControllerRevision>>(
    sts: &v1::StatefulSet,
    pods: &[P],
    revisions: &[R],
    now: SystemTime,
) -> Vec<Action> {
    let m = sts.meta();
    let Some(spec) = sts.spec.as_ref() else {
        return Vec::new();
    };
    let Some(template) = spec.template.as_ref() else {
        return Vec::new();
    };
    let Some(selector) = spec
        .selector
        .as_ref()
        .and_then(|s| LabelSelector::from_proto(s).ok())
    else {
        return Vec::new();
    };
    let template_labels = template
        .metadata
        .as_ref()
        .map(|t| t.labels.clone())
        .unwrap_or_default();
    if m.uid.is_empty() || selector.is_empty() || !selector.matches(&template_labels) {
        return Vec::new();
    }
    if !m.deletion_timestamp.is_empty() {
        return Vec::new();
    }
    let all_revisions: Vec<&v1::ControllerRevision> =
        revisions.iter().map(Borrow::borrow).collect();
    let collision_count = sts.status.as_ref().and_then(|s| s.collision_count);
    let revs = history::resolve(sts, template, &selector, &all_revisions, collision_count);
    let mut actions: Vec<Action> = revs.writes.iter().cloned().map(Action::Revision).collect();
    let update = &revs.update;
    // The current revision: the status's, while it exists.
    let current_name = sts
        .status
        .as_ref()
        .map_or("", |s| s.current_revision.as_str());
    let current = revs
        .owned
        .iter()
        .copied()
        .find(|r| r.meta().name == current_name && !current_name.is_empty())
        .unwrap_or(update);
    let current_name = current.meta().name.as_str();
    let update_name = update.meta().name.as_str();

    let replicas = spec.replicas.unwrap_or(1).max(0);
    let start = spec.ordinals.as_ref().map_or(0, |o| o.start.max(0));
    let end = start.saturating_add(replicas);
    let min_ready = Duration::from_secs(u64::try_from(spec.min_ready_seconds).unwrap_or(0));
    let monotonic = spec.pod_management_policy != "Parallel";
    let strategy = spec.update_strategy.clone().unwrap_or_default();
    let rolling = strategy.r#type != "OnDelete";
    // The partition counts from the first ordinal.
    let partition = start.saturating_add(
        strategy
            .rolling_update
            .as_ref()
            .and_then(|r| r.partition)
            .unwrap_or(0)
            .max(0),
    );

    // The set's pods by ordinal: owned ones, and orphans of its names that
    // its selector matches (adopted).
    let owner = controller_reference(sts);
    let mut slots: BTreeMap<i32, &v1::Pod> = BTreeMap::new();
    for p in pods.iter().map(Borrow::borrow) {
        let pm = p.meta();
        if pm.namespace != m.namespace {
            continue;
        }
        let Some(ordinal) = ordinal_of(&m.name, &pm.name) else {
            continue;
        };
        match controller_of(pm) {
            Some(o) if o.uid == m.uid => {}
            None if selector.matches(&pm.labels) && !terminating(p) => {
                let mut adopted = p.clone();
                let refs = &mut adopted.meta_mut().owner_references;
                refs.retain(|o| o.uid != owner.uid);
                refs.push(owner.clone());
                actions.push(Action::AdoptPod(Box::new(adopted)));
            }
            _ => continue,
        }
        slots.insert(ordinal, p);
    }

    // Status, from the pods as they are.
    let mut status = v1::StatefulSetStatus {
        observed_generation: m.generation,
        current_revision: current_name.to_string(),
        update_revision: update_name.to_string(),
        collision_count: revs.collision_count,
        conditions: sts
            .status
            .as_ref()
            .map(|s| s.conditions.clone())
            .unwrap_or_default(),
        ..Default::default()
    };
    let (mut created, mut ready, mut available) = (0usize, 0usize, 0usize);
    let (mut at_current, mut at_update) = (0usize, 0usize);
    for p in slots.values() {
        created += 1;
        if running_and_ready(p) {
            ready += 1;
            available += usize::from(is_available(p, min_ready, now));
        }
        if !terminating(p) {
            at_current += usize::from(revision_of(p) == current_name);
            at_update += usize::from(revision_of(p) == update_name);
        }
    }
    status.replicas = count(created);
    status.ready_replicas = count(ready);
    status.available_replicas = count(available);
    status.current_replicas = count(at_current);
    status.updated_replicas = count(at_update);
    if rolling
        && status.updated_replicas == replicas
        && status.ready_replicas == replicas
        && status.replicas == replicas
    {
        status.current_replicas = status.updated_replicas;
        status.current_revision = status.update_revision.clone();
    }

    let mut pod_actions = Vec::new();
    let blocked = replica_step(
        sts,
        &slots,
        start..end,
        &StepCtx {
            current,
            update,
            rolling,
            partition,
            monotonic,
            min_ready,
            now,
        },
        &mut pod_actions,
    ) || condemned_step(&slots, start..end, monotonic, &mut pod_actions);
    if !blocked && rolling {
        update_step(
            &slots,
            start..end,
            update_name,
            partition,
            max_unavailable(
                strategy
                    .rolling_update
                    .as_ref()
                    .map_or("", |r| r.max_unavailable.as_str()),
                i64::from(replicas),
            ),
            (min_ready, now),
            &mut pod_actions,
        );
    }
    actions.extend(pod_actions);

    // History beyond the limit, oldest first; never a revision in use.
    let live: BTreeSet<&str> = slots
        .values()
        .map(|p| revision_of(p))
        .chain([current_name, update_name, status.current_revision.as_str()])
        .collect();
    let limit = spec.revision_history_limit.unwrap_or(10);
    actions.extend(
        history::trim(&revs.owned, &live, limit)
            .into_iter()
            .map(|n| Action::Revision(RevisionWrite::Delete(n))),
    );

    if sts.status.as_ref() != Some(&status) || !actions.is_empty() {
        actions.insert(0, Action::UpdateStatus(status));
    }
    actions
}

/// What the pod steps need to know beyond the pods.
struct StepCtx<'a> {
    current: &'a v1::ControllerRevision,
    update: &'a v1::ControllerRevision,
    rolling: bool,
    partition: i32,
    monotonic: bool,
    min_ready: Duration,
    now: SystemTime,
}

/// The most pods one round creates (Parallel; OrderedReady creates one).
pub const BURST_PODS: usize = 500;

/// Make and mend the replicas in ordinal order; true when OrderedReady
/// must wait (nothing after this step runs this round). Parallel creates
/// at most [`BURST_PODS`] per round.
fn replica_step(
    sts: &v1::StatefulSet,
    slots: &BTreeMap<i32, &v1::Pod>,
    range: std::ops::Range<i32>,
    c: &StepCtx<'_>,
    out: &mut Vec<Action>,
) -> bool {
    // Creates so far: a pod is made only where none is.
    let mut creates = 0usize;
    for ordinal in range {
        match slots.get(&ordinal) {
            None if creates == BURST_PODS => break,
            None => {
                // Below the partition a pod keeps the current revision.
                let r = if c.rolling && ordinal < c.partition {
                    c.current
                } else {
                    c.update
                };
                let pod = new_pod(sts, &revision_template(r), &r.meta().name, ordinal);
                out.push(Action::CreatePod(Box::new(pod)));
                creates += 1;
                if c.monotonic {
                    return true;
                }
            }
            // Waited for.
            Some(p) if terminating(p) => {
                if c.monotonic {
                    return true;
                }
            }
            // Made again once gone.
            Some(p) if matches!(phase(p), "Failed" | "Succeeded") => {
                out.push(Action::DeletePod(p.meta().name.clone()));
                if c.monotonic {
                    return true;
                }
            }
            Some(p) => {
                if c.monotonic && !healthy(p, c.min_ready, c.now) {
                    return true;
                }
            }
        }
    }
    false
}

/// Delete pods beyond the replicas, highest ordinal first (one at a time
/// in OrderedReady, waiting for each to go); true when it must wait.
fn condemned_step(
    slots: &BTreeMap<i32, &v1::Pod>,
    range: std::ops::Range<i32>,
    monotonic: bool,
    out: &mut Vec<Action>,
) -> bool {
    for (_, p) in slots.iter().rev().filter(|(o, _)| !range.contains(o)) {
        if terminating(p) {
            if monotonic {
                return true;
            }
            continue;
        }
        out.push(Action::DeletePod(p.meta().name.clone()));
        if monotonic {
            return true;
        }
    }
    false
}

/// Delete replicas at or above the partition (an ordinal) that are not at
/// the update revision, highest ordinal first, while fewer than
/// `max_unavailable` of those replicas are unhealthy (a missing one
/// counts as unhealthy). Finished pods are the replica step's.
fn update_step(
    slots: &BTreeMap<i32, &v1::Pod>,
    range: std::ops::Range<i32>,
    update: &str,
    partition: i32,
    max_unavailable: i64,
    (min_ready, now): (Duration, SystemTime),
    out: &mut Vec<Action>,
) {
    let from = range.start.max(partition);
    let targets = i64::from(range.end) - i64::from(from);
    if targets <= 0 {
        return;
    }
    let existing = slots.range(from..range.end);
    let healthy_count = existing
        .clone()
        .filter(|(_, p)| healthy(p, min_ready, now))
        .count();
    let unhealthy = targets - i64::try_from(healthy_count).unwrap_or(i64::MAX);
    let mut budget = max_unavailable - unhealthy;
    for (_, p) in existing.rev() {
        if revision_of(p) == update || terminating(p) || matches!(phase(p), "Failed" | "Succeeded")
        {
            continue;
        }
        // An unhealthy old pod is replaced without spending the budget.
        if healthy(p, min_ready, now) {
            if budget <= 0 {
                break;
            }
            budget -= 1;
        }
        out.push(Action::DeletePod(p.meta().name.clone()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keelson_model::time::format_rfc3339;
    use serde_json::json;

    const NO_PODS: &[v1::Pod] = &[];
    const NO_REVISIONS: &[v1::ControllerRevision] = &[];

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_261_600 + secs)
    }

    fn template(image: &str) -> serde_json::Value {
        json!({"metadata": {"labels": {"app": "db"}},
               "spec": {"containers": [{"name": "c", "image": image}]}})
    }

    /// Set `db` (3 replicas of `db:1` unless `spec` says otherwise).
    fn sts(spec: serde_json::Value) -> v1::StatefulSet {
        let mut full = json!({"replicas": 3, "serviceName": "db",
            "selector": {"matchLabels": {"app": "db"}}, "template": template("db:1")});
        if let (Some(f), Some(s)) = (full.as_object_mut(), spec.as_object()) {
            for (k, v) in s {
                f.insert(k.clone(), v.clone());
            }
        }
        serde_json::from_value(json!({
            "metadata": {"name": "db", "namespace": "default", "uid": "sts-uid", "generation": 1},
            "spec": full
        }))
        .expect("sts")
    }

    fn spec_template(s: &v1::StatefulSet) -> v1::PodTemplateSpec {
        s.spec
            .as_ref()
            .and_then(|s| s.template.clone())
            .expect("template")
    }

    fn revision(s: &v1::StatefulSet, image: &str, number: i64) -> v1::ControllerRevision {
        let t: v1::PodTemplateSpec = serde_json::from_value(template(image)).expect("template");
        history::new_revision(s, &t, number, None)
    }

    /// Pod `ordinal` of `s` at revision `r`, Running, Ready since `ready_at`
    /// (None: not ready).
    fn pod(
        s: &v1::StatefulSet,
        r: &v1::ControllerRevision,
        ordinal: i32,
        ready_at: Option<u64>,
    ) -> v1::Pod {
        let mut p = new_pod(s, &revision_template(r), &r.meta().name, ordinal);
        p.meta_mut().uid = format!("uid-{ordinal}");
        p.status = Some(
            serde_json::from_value(json!({"phase": "Running", "conditions": [{"type": "Ready",
                "status": if ready_at.is_some() { "True" } else { "False" },
                "lastTransitionTime": format_rfc3339(at(ready_at.unwrap_or(0)))}]}))
            .expect("status"),
        );
        p
    }

    /// The pod actions as `+name@revision-image`, `-name`, `adopt name`.
    fn summary(a: &[Action]) -> Vec<String> {
        a.iter()
            .filter_map(|a| match a {
                Action::CreatePod(p) => {
                    let image = p
                        .spec
                        .as_ref()
                        .and_then(|s| s.containers.first())
                        .map_or("", |c| c.image.as_str());
                    Some(format!("+{}@{image}", p.meta().name))
                }
                Action::DeletePod(n) => Some(format!("-{n}")),
                Action::AdoptPod(p) => Some(format!("adopt {}", p.meta().name)),
                _ => None,
            })
            .collect()
    }

    fn status(a: &[Action]) -> v1::StatefulSetStatus {
        a.iter()
            .find_map(|a| match a {
                Action::UpdateStatus(s) => Some(s.clone()),
                _ => None,
            })
            .expect("a status")
    }

    #[test]
    fn ordinals_parse_only_the_sets_names() {
        assert_eq!(ordinal_of("web", "web-0"), Some(0));
        assert_eq!(ordinal_of("web", "web-12"), Some(12));
        for bad in [
            "web", "web-", "web-x", "web--1", "web-+1", "webs-1", "web-1a", "web-01",
        ] {
            assert_eq!(ordinal_of("web", bad), None, "{bad}");
        }
        assert_eq!(ordinal_of("web", "web-99999999999"), None, "overflows i32");
    }

    #[test]
    fn ordered_ready_creates_one_at_a_time_with_identities() {
        let s = sts(json!({}));
        let a = reconcile(&s, NO_PODS, NO_REVISIONS, at(10));
        // The first revision, then only ordinal 0.
        let created: Vec<&v1::ControllerRevision> = a
            .iter()
            .filter_map(|a| match a {
                Action::Revision(RevisionWrite::Create(r)) => Some(&**r),
                _ => None,
            })
            .collect();
        assert_eq!(created.len(), 1);
        let r = created[0];
        assert_eq!(r.revision, 1);
        assert_eq!(revision_template(r), spec_template(&s));
        assert!(r.meta().name.starts_with("db-"));
        assert_eq!(summary(&a), ["+db-0@db:1"]);
        let p = a
            .iter()
            .find_map(|a| match a {
                Action::CreatePod(p) => Some(p.clone()),
                _ => None,
            })
            .expect("pod");
        let spec = p.spec.clone().unwrap_or_default();
        assert_eq!(
            (spec.hostname.as_str(), spec.subdomain.as_str()),
            ("db-0", "db")
        );
        assert_eq!(p.meta().generate_name, "");
        assert_eq!(p.meta().labels[POD_NAME_LABEL], "db-0");
        assert_eq!(p.meta().labels[POD_INDEX_LABEL], "0");
        assert_eq!(p.meta().labels[REVISION_LABEL], r.meta().name);
        assert_eq!(
            controller_of(p.meta()).map(|o| o.kind.as_str()),
            Some("StatefulSet")
        );
        let st = status(&a);
        assert_eq!(st.update_revision, r.meta().name);
        assert_eq!(st.current_revision, r.meta().name);

        // db-0 not ready yet: wait. Ready: db-1 next.
        let r1 = revision(&s, "db:1", 1);
        let revs = [r1.clone()];
        let p0 = pod(&s, &r1, 0, None);
        assert_eq!(
            summary(&reconcile(&s, &[p0], &revs, at(10))),
            Vec::<String>::new()
        );
        let p0 = pod(&s, &r1, 0, Some(5));
        assert_eq!(
            summary(&reconcile(&s, std::slice::from_ref(&p0), &revs, at(10))),
            ["+db-1@db:1"]
        );
        // minReadySeconds holds the next ordinal back until available.
        let slow = sts(json!({"minReadySeconds": 30}));
        let p0s = pod(&slow, &r1, 0, Some(5));
        assert!(summary(&reconcile(&slow, std::slice::from_ref(&p0s), &revs, at(10))).is_empty());
        assert_eq!(
            summary(&reconcile(&slow, &[p0s], &revs, at(40))),
            ["+db-1@db:1"]
        );
        // All three healthy: nothing to do, status says so, and a second
        // round with that status writes nothing.
        let pods = [p0, pod(&s, &r1, 1, Some(5)), pod(&s, &r1, 2, Some(5))];
        let a = reconcile(&s, &pods, &revs, at(10));
        assert!(summary(&a).is_empty());
        let st = status(&a);
        assert_eq!(
            (
                st.replicas,
                st.ready_replicas,
                st.available_replicas,
                st.current_replicas,
                st.updated_replicas
            ),
            (3, 3, 3, 3, 3)
        );
        let mut settled = s.clone();
        settled.status = Some(st);
        assert_eq!(reconcile(&settled, &pods, &revs, at(10)), Vec::new());
    }

    #[test]
    fn parallel_creates_and_deletes_without_waiting() {
        let s = sts(json!({"podManagementPolicy": "Parallel"}));
        let r1 = revision(&s, "db:1", 1);
        let revs = [r1.clone()];
        assert_eq!(
            summary(&reconcile(&s, NO_PODS, &revs, at(10))),
            ["+db-0@db:1", "+db-1@db:1", "+db-2@db:1"]
        );
        let down = sts(json!({"podManagementPolicy": "Parallel", "replicas": 1}));
        let pods: Vec<v1::Pod> = (0..3).map(|o| pod(&down, &r1, o, None)).collect();
        assert_eq!(
            summary(&reconcile(&down, &pods, &revs, at(10))),
            ["-db-2", "-db-1"]
        );
    }

    #[test]
    fn ordered_scale_down_goes_from_the_top_one_at_a_time() {
        let s = sts(json!({"replicas": 1}));
        let r1 = revision(&s, "db:1", 1);
        let revs = [r1.clone()];
        let mut pods: Vec<v1::Pod> = (0..3).map(|o| pod(&s, &r1, o, Some(1))).collect();
        assert_eq!(summary(&reconcile(&s, &pods, &revs, at(10))), ["-db-2"]);
        // db-2 terminating: wait for it, even though db-1 is condemned too.
        pods[2].meta_mut().deletion_timestamp = format_rfc3339(at(9));
        assert!(summary(&reconcile(&s, &pods, &revs, at(10))).is_empty());
        pods.pop();
        assert_eq!(summary(&reconcile(&s, &pods, &revs, at(10))), ["-db-1"]);
        // An unready replica blocks scale-down in OrderedReady.
        let mut unready = pods.clone();
        unready[0] = pod(&s, &r1, 0, None);
        assert!(summary(&reconcile(&s, &unready, &revs, at(10))).is_empty());
    }

    #[test]
    fn failed_pods_are_replaced_and_terminating_ones_waited_for() {
        let s = sts(json!({}));
        let r1 = revision(&s, "db:1", 1);
        let revs = [r1.clone()];
        let mut pods: Vec<v1::Pod> = (0..3).map(|o| pod(&s, &r1, o, Some(1))).collect();
        if let Some(st) = pods[1].status.as_mut() {
            st.phase = "Failed".into();
        }
        assert_eq!(summary(&reconcile(&s, &pods, &revs, at(10))), ["-db-1"]);
        pods[1].meta_mut().deletion_timestamp = format_rfc3339(at(9));
        assert!(summary(&reconcile(&s, &pods, &revs, at(10))).is_empty());
        pods.remove(1);
        assert_eq!(
            summary(&reconcile(&s, &pods, &revs, at(10))),
            ["+db-1@db:1"]
        );
    }

    #[test]
    fn rolling_update_goes_down_from_the_highest_ordinal_and_respects_the_partition() {
        let old = sts(json!({}));
        let r1 = revision(&old, "db:1", 1);
        let mut s = sts(json!({"template": template("db:2"),
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 2}}}));
        s.status = Some(v1::StatefulSetStatus {
            current_revision: r1.meta().name.clone(),
            ..Default::default()
        });
        let pods: Vec<v1::Pod> = (0..3).map(|o| pod(&old, &r1, o, Some(1))).collect();
        // A new revision, numbered after r1, and db-2 goes first.
        let a = reconcile(&s, &pods, std::slice::from_ref(&r1), at(10));
        let r2 = a
            .iter()
            .find_map(|a| match a {
                Action::Revision(RevisionWrite::Create(r)) => Some((**r).clone()),
                _ => None,
            })
            .expect("revision 2");
        assert_eq!(r2.revision, 2);
        assert_eq!(summary(&a), ["-db-2"]);
        let st = status(&a);
        assert_eq!(st.current_revision, r1.meta().name);
        assert_eq!(st.update_revision, r2.meta().name);
        assert_eq!((st.current_replicas, st.updated_replicas), (3, 0));
        let revs = [r1.clone(), r2.clone()];
        // db-2 gone: made again at the update revision.
        assert_eq!(
            summary(&reconcile(&s, &pods[..2], &revs, at(10))),
            ["+db-2@db:2"]
        );
        // db-2 updated but not ready: wait.
        let mut pods2 = pods[..2].to_vec();
        pods2.push(pod(&s, &r2, 2, None));
        assert!(summary(&reconcile(&s, &pods2, &revs, at(10))).is_empty());
        // Ready: db-1 is below the partition, so the update stops there.
        pods2[2] = pod(&s, &r2, 2, Some(5));
        let a = reconcile(&s, &pods2, &revs, at(10));
        assert!(summary(&a).is_empty());
        let st = status(&a);
        assert_eq!((st.current_replicas, st.updated_replicas), (2, 1));
        assert_eq!(
            st.current_revision,
            r1.meta().name,
            "partitioned: not complete"
        );
        // A deleted pod below the partition comes back at the current revision.
        let without_0 = [pods2[1].clone(), pods2[2].clone()];
        assert_eq!(
            summary(&reconcile(&s, &without_0, &revs, at(10))),
            ["+db-0@db:1"]
        );
        // Partition 0: db-1 then db-0, and then the update is complete.
        let mut s0 = s.clone();
        if let Some(ru) = s0
            .spec
            .as_mut()
            .and_then(|s| s.update_strategy.as_mut())
            .and_then(|u| u.rolling_update.as_mut())
        {
            ru.partition = Some(0);
        }
        assert_eq!(summary(&reconcile(&s0, &pods2, &revs, at(10))), ["-db-1"]);
        let all_new: Vec<v1::Pod> = (0..3).map(|o| pod(&s0, &r2, o, Some(5))).collect();
        let st = status(&reconcile(&s0, &all_new, &revs, at(10)));
        assert_eq!(st.current_revision, r2.meta().name);
        assert_eq!((st.current_replicas, st.updated_replicas), (3, 3));
    }

    #[test]
    fn max_unavailable_and_on_delete() {
        let old = sts(json!({}));
        let r1 = revision(&old, "db:1", 1);
        let pods: Vec<v1::Pod> = (0..4).map(|o| pod(&old, &r1, o, Some(1))).collect();
        let new_spec = |strategy: serde_json::Value| {
            let mut s = sts(json!({"replicas": 4, "template": template("db:2"),
                "updateStrategy": strategy}));
            s.status = Some(v1::StatefulSetStatus {
                current_revision: r1.meta().name.clone(),
                ..Default::default()
            });
            s
        };
        let two =
            new_spec(json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 2}}));
        assert_eq!(
            summary(&reconcile(&two, &pods, std::slice::from_ref(&r1), at(10))),
            ["-db-3", "-db-2"]
        );
        let half =
            new_spec(json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "50%"}}));
        assert_eq!(
            summary(&reconcile(&half, &pods, std::slice::from_ref(&r1), at(10))),
            ["-db-3", "-db-2"]
        );
        let on_delete = new_spec(json!({"type": "OnDelete"}));
        let a = reconcile(&on_delete, &pods, std::slice::from_ref(&r1), at(10));
        assert!(summary(&a).is_empty());
        // A pod the user deleted comes back at the new template.
        assert_eq!(
            summary(&reconcile(
                &on_delete,
                &pods[..3],
                std::slice::from_ref(&r1),
                at(10)
            )),
            ["+db-3@db:2"]
        );
    }

    #[test]
    fn rollback_renumbers_the_old_revision_and_history_is_trimmed() {
        let s = sts(json!({"revisionHistoryLimit": 1}));
        let revs = [
            revision(&s, "db:1", 1),
            revision(&s, "db:2", 2),
            revision(&s, "db:3", 3),
            revision(&s, "db:4", 4),
        ];
        let pods: Vec<v1::Pod> = (0..3).map(|o| pod(&s, &revs[3], o, Some(1))).collect();
        let mut s = s;
        s.status = Some(v1::StatefulSetStatus {
            current_revision: revs[3].meta().name.clone(),
            ..Default::default()
        });
        // The template is db:1 again: revision 1 becomes number 5, no new
        // revision; of the unused db:2 and db:3 only the newest is kept.
        let a = reconcile(&s, &pods, &revs, at(10));
        let updated: Vec<(String, i64)> = a
            .iter()
            .filter_map(|a| match a {
                Action::Revision(RevisionWrite::Update(r)) => {
                    Some((r.meta().name.clone(), r.revision))
                }
                _ => None,
            })
            .collect();
        assert_eq!(updated, [(revs[0].meta().name.clone(), 5)]);
        assert!(!a
            .iter()
            .any(|a| matches!(a, Action::Revision(RevisionWrite::Create(_)))));
        let deleted: Vec<&str> = a
            .iter()
            .filter_map(|a| match a {
                Action::Revision(RevisionWrite::Delete(n)) => Some(n.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(deleted, [revs[1].meta().name.as_str()]);
        assert_eq!(summary(&a), ["-db-2"]);
    }

    #[test]
    fn orphans_of_its_names_are_adopted_and_others_left_alone() {
        let s = sts(json!({"replicas": 1}));
        let r1 = revision(&s, "db:1", 1);
        let mut orphan_rev = r1.clone();
        orphan_rev.meta_mut().owner_references.clear();
        let mut orphan = pod(&s, &r1, 0, Some(1));
        orphan.meta_mut().owner_references.clear();
        let mut foreign = pod(&s, &r1, 1, Some(1));
        foreign.meta_mut().owner_references[0].uid = "other".into();
        let mut stranger = pod(&s, &r1, 0, Some(1));
        stranger.meta_mut().name = "dbx-0".into();
        stranger.meta_mut().owner_references.clear();
        let a = reconcile(&s, &[orphan, foreign, stranger], &[orphan_rev], at(10));
        assert_eq!(summary(&a), ["adopt db-0"]);
        let adopted = a.iter().find_map(|a| match a {
            Action::Revision(RevisionWrite::Update(r)) => Some(r.clone()),
            _ => None,
        });
        assert_eq!(
            adopted.and_then(|r| controller_of(r.meta()).map(|o| o.uid.clone())),
            Some("sts-uid".to_string())
        );
        assert!(!a
            .iter()
            .any(|a| matches!(a, Action::Revision(RevisionWrite::Create(_)))));
    }

    #[test]
    fn a_taken_revision_name_counts_a_collision() {
        let s = sts(json!({}));
        let mut squatter = revision(&s, "db:1", 1);
        squatter.meta_mut().owner_references[0].uid = "someone-else".into();
        let a = reconcile(&s, NO_PODS, &[squatter.clone()], at(10));
        let fresh = a
            .iter()
            .find_map(|a| match a {
                Action::Revision(RevisionWrite::Create(r)) => Some(r.clone()),
                _ => None,
            })
            .expect("a revision");
        assert_ne!(fresh.meta().name, squatter.meta().name);
        assert_eq!(status(&a).collision_count, Some(1));
    }

    #[test]
    fn the_partition_counts_from_the_first_ordinal_and_huge_sets_are_bounded() {
        let old = sts(json!({"ordinals": {"start": 5}}));
        let r1 = revision(&old, "db:1", 1);
        let mut s = sts(
            json!({"ordinals": {"start": 5}, "template": template("db:2"),
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 2}}}),
        );
        s.status = Some(v1::StatefulSetStatus {
            current_revision: r1.meta().name.clone(),
            ..Default::default()
        });
        let pods: Vec<v1::Pod> = (5..8).map(|o| pod(&old, &r1, o, Some(1))).collect();
        // Only ordinal 7 (position 2) is updated...
        let a = reconcile(&s, &pods, std::slice::from_ref(&r1), at(10));
        assert_eq!(summary(&a), ["-db-7"]);
        // ...and 5 and 6 come back at the current revision.
        assert_eq!(
            summary(&reconcile(
                &s,
                &pods[1..],
                std::slice::from_ref(&r1),
                at(10)
            )),
            ["+db-5@db:1"]
        );
        // A client's revision number at the top of the range: no overflow.
        let mut top = revision(&old, "db:1", i64::MAX);
        top.meta_mut().name = "db-top".into();
        let a = reconcile(&s, &pods, &[top], at(10));
        assert!(a.iter().any(
            |a| matches!(a, Action::Revision(RevisionWrite::Create(r)) if r.revision == i64::MAX)
        ));
        // Parallel with an enormous replica count: one bounded round.
        let huge = sts(json!({"replicas": i32::MAX, "podManagementPolicy": "Parallel"}));
        let a = reconcile(&huge, NO_PODS, NO_REVISIONS, at(10));
        assert_eq!(summary(&a).len(), BURST_PODS);
    }

    #[test]
    fn bad_input_gives_nothing() {
        let mut no_selector = sts(json!({}));
        if let Some(s) = no_selector.spec.as_mut() {
            s.selector = None;
        }
        let mismatched = sts(json!({"selector": {"matchLabels": {"app": "other"}}}));
        let mut deleting = sts(json!({}));
        deleting.meta_mut().deletion_timestamp = format_rfc3339(at(1));
        let mut no_uid = sts(json!({}));
        no_uid.meta_mut().uid.clear();
        for s in [
            no_selector,
            mismatched,
            deleting,
            no_uid,
            v1::StatefulSet::default(),
        ] {
            assert_eq!(reconcile(&s, NO_PODS, NO_REVISIONS, at(1)), Vec::new());
        }
        assert_eq!(max_unavailable("x", 4), 1);
        assert_eq!(max_unavailable("0", 4), 1);
        assert_eq!(max_unavailable("25%", 10), 3);
    }
}
