//! The DaemonSet controller, after Kubernetes' `daemon_controller.go` and
//! `update.go` (rolling update by maxUnavailable or by maxSurge).
//!
//! [`reconcile`] compares a DaemonSet with the nodes and its pods (those
//! whose controller ownerReference carries its uid) and returns the
//! [`Action`]s that put one pod on every node that should run one:
//!
//! - **Which nodes** ([`placement`], as `NodeShouldRunDaemonPod`): the
//!   template's `nodeSelector` matches the node's labels and every
//!   `NoSchedule`/`NoExecute` taint is tolerated (the pod's tolerations
//!   plus those every DaemonSet pod gets: not-ready and unreachable
//!   `NoExecute`, the pressure and unschedulable `NoSchedule` taints). A
//!   pod already on a node whose untolerated taints are only `NoSchedule`
//!   keeps running there; a node that stops matching otherwise loses it.
//! - **Pods** are created bound to their node (`spec.nodeName`; the
//!   scheduler is not involved), labelled `controller-revision-hash` with
//!   the hash of the template's ControllerRevision ([`crate::history`]:
//!   one per template, so `kubectl rollout history|undo` work; those no
//!   pod runs beyond `revisionHistoryLimit` go). A failed pod is deleted (and replaced on the next
//!   round); of two pods on one node the newer goes; a pod on a node that
//!   no longer exists is deleted at once (grace 0: no kubelet will confirm
//!   it).
//! - **Rolling update** with maxSurge 0: an old pod that is not available
//!   is replaced at once; available old pods are deleted while fewer than
//!   `maxUnavailable` (of the desired count, a percentage rounded up) nodes
//!   lack an available pod. With a surge (then maxUnavailable is 0): a new
//!   pod starts beside the old one (at once when the old one is not
//!   available, else on at most `maxSurge` nodes at a time), and the old
//!   one goes when the new one is available. `OnDelete` replaces a pod only when someone
//!   deleted it.
//! - **Status**: desired, current, misscheduled, ready, up to date,
//!   available and unavailable counts, observedGeneration.

use std::borrow::Borrow;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime};

use keelson_model::pod::{is_available, is_ready, tolerates};
use keelson_model::selector::LabelSelector;
use keelson_model::{controller_of, controller_reference, Resource};
use keelson_proto::v1;

use crate::history::{self, RevisionWrite};
use crate::{count, scaled};

/// The label every DaemonSet pod carries: its template's hash.
pub const REVISION_LABEL: &str = "controller-revision-hash";

/// One change to make to the cluster.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Write this status (only when it differs from the current one).
    UpdateStatus(v1::DaemonSetStatus),
    /// Create this pod, bound to its node.
    CreatePod(Box<v1::Pod>),
    /// Delete this pod; `force` (grace 0) when its node is gone.
    DeletePod { name: String, force: bool },
    /// Write a ControllerRevision (the template's, an adopted one, or one
    /// beyond the history limit to delete).
    Revision(RevisionWrite),
}

/// Whether a node should run the DaemonSet's pod, and whether one already
/// there may stay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    pub should_run: bool,
    pub may_stay: bool,
}

/// The tolerations every DaemonSet pod gets (Kubernetes'
/// `AddOrUpdateDaemonPodTolerations`), besides its own.
pub fn default_tolerations() -> Vec<v1::Toleration> {
    let t = |key: &str, effect: &str| v1::Toleration {
        key: key.to_string(),
        operator: "Exists".into(),
        effect: effect.to_string(),
        ..Default::default()
    };
    vec![
        t("node.kubernetes.io/not-ready", "NoExecute"),
        t("node.kubernetes.io/unreachable", "NoExecute"),
        t("node.kubernetes.io/disk-pressure", "NoSchedule"),
        t("node.kubernetes.io/memory-pressure", "NoSchedule"),
        t("node.kubernetes.io/pid-pressure", "NoSchedule"),
        t("node.kubernetes.io/unschedulable", "NoSchedule"),
    ]
}

/// Where the template's pod belongs on `node`.
pub fn placement(template: &v1::PodTemplateSpec, node: &v1::Node) -> Placement {
    let spec = template.spec.clone().unwrap_or_default();
    let empty = BTreeMap::new();
    let labels = node.metadata.as_ref().map_or(&empty, |m| &m.labels);
    if !LabelSelector::from_map(&spec.node_selector).matches(labels) {
        return Placement {
            should_run: false,
            may_stay: false,
        };
    }
    let mut tolerations = spec.tolerations;
    tolerations.extend(default_tolerations());
    let untolerated: Vec<&v1::Taint> = node
        .spec
        .iter()
        .flat_map(|s| &s.taints)
        .filter(|t| t.effect == "NoSchedule" || t.effect == "NoExecute")
        .filter(|taint| !tolerations.iter().any(|t| tolerates(t, taint)))
        .collect();
    Placement {
        should_run: untolerated.is_empty(),
        may_stay: untolerated.iter().all(|t| t.effect == "NoSchedule"),
    }
}

fn phase(p: &v1::Pod) -> &str {
    p.status.as_ref().map_or("", |s| s.phase.as_str())
}

fn node_of(p: &v1::Pod) -> &str {
    p.spec.as_ref().map_or("", |s| s.node_name.as_str())
}

/// A pod of the DaemonSet for `node`: the template's, labelled with its
/// hash, bound to the node, with the DaemonSet tolerations.
fn pod_for(ds: &v1::DaemonSet, template: &v1::PodTemplateSpec, hash: &str, node: &str) -> v1::Pod {
    let mut pod = crate::pod_from_template(ds, template, &controller_reference(ds));
    pod.meta_mut()
        .labels
        .insert(REVISION_LABEL.to_string(), hash.to_string());
    let spec = pod.spec.get_or_insert_with(Default::default);
    spec.node_name = node.to_string();
    for t in default_tolerations() {
        if !spec.tolerations.contains(&t) {
            spec.tolerations.push(t);
        }
    }
    pod
}

/// Decide what to do for `ds` given every node and the pods and
/// ControllerRevisions of its namespace at `now`. Pure; bad input (no
/// spec, no template, an empty or unreadable selector) gives no actions.
/// `pods` and `revisions` may be owned values or references to them.
pub fn reconcile<P: Borrow<v1::Pod>, R: Borrow<v1::ControllerRevision>>(
    ds: &v1::DaemonSet,
    nodes: &[v1::Node],
    pods: &[P],
    revisions: &[R],
    now: SystemTime,
) -> Vec<Action> {
    let m = ds.meta();
    let Some(spec) = ds.spec.as_ref() else {
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
    if m.uid.is_empty() || selector.is_empty() || !m.deletion_timestamp.is_empty() {
        return Vec::new();
    }
    // The template's revision: its hash labels the pods.
    let all_revisions: Vec<&v1::ControllerRevision> =
        revisions.iter().map(Borrow::borrow).collect();
    let collision_count = ds.status.as_ref().and_then(|s| s.collision_count);
    let revs = history::resolve(ds, template, &selector, &all_revisions, collision_count);
    let hash = history::hash_of(&revs.update).to_string();
    let min_ready = Duration::from_secs(u64::try_from(spec.min_ready_seconds).unwrap_or(0));
    let mine: Vec<&v1::Pod> = pods
        .iter()
        .map(Borrow::borrow)
        .filter(|p| {
            controller_of(p.meta()).is_some_and(|r| r.uid == m.uid)
                && p.meta().namespace == m.namespace
                && p.meta().deletion_timestamp.is_empty()
        })
        .collect();
    let mut by_node: BTreeMap<&str, Vec<&v1::Pod>> = BTreeMap::new();
    for p in &mine {
        by_node.entry(node_of(p)).or_default().push(p);
    }
    let mut actions: Vec<Action> = revs.writes.iter().cloned().map(Action::Revision).collect();
    let delete = |p: &v1::Pod, force: bool| Action::DeletePod {
        name: p.meta().name.clone(),
        force,
    };
    // Pods on nodes that are gone (or never bound).
    for (node, ps) in &by_node {
        if !nodes.iter().any(|n| n.meta().name == *node) {
            actions.extend(ps.iter().map(|p| delete(p, true)));
        }
    }
    let strategy = spec.update_strategy.clone().unwrap_or_default();
    let rolling = strategy.r#type != "OnDelete";
    let eligible = nodes
        .iter()
        .filter(|n| placement(template, n).should_run)
        .count() as i64;
    // A surge: a node holds its old pod and a new one until the new one
    // is available (then the old one goes), at most `maxSurge` at once.
    let max_surge = match (&strategy.rolling_update, rolling) {
        (Some(r), true) => scaled(&r.max_surge, eligible),
        _ => 0,
    };
    let is_new = |p: &v1::Pod| p.meta().labels.get(REVISION_LABEL) == Some(&hash);
    // Per node with a pod of each revision under a surge: (node, old, new).
    let mut pairs: Vec<(&str, &v1::Pod, Option<&v1::Pod>)> = Vec::new();
    let (mut desired, mut current, mut misscheduled) = (0usize, 0usize, 0usize);
    let (mut ready, mut updated, mut available) = (0usize, 0usize, 0usize);
    // Per node that should run the pod: its old pod, if it is the one
    // left there, and whether the node has an available pod.
    let mut old_on: Vec<(&v1::Pod, bool)> = Vec::new();
    let mut unavailable_nodes = 0i64;
    for node in nodes {
        let name = node.meta().name.as_str();
        let place = placement(template, node);
        let mut here: Vec<&v1::Pod> = by_node.get(name).cloned().unwrap_or_default();
        // Failed pods go, and are replaced on a later round.
        let (failed, live): (Vec<&v1::Pod>, Vec<&v1::Pod>) =
            here.drain(..).partition(|p| phase(p) == "Failed");
        actions.extend(failed.iter().map(|p| delete(p, false)));
        let mut live = live;
        if place.should_run {
            desired += 1;
        }
        if !place.should_run {
            if !live.is_empty() {
                misscheduled += 1;
                // Kept where only NoSchedule taints are untolerated.
                if !place.may_stay {
                    actions.extend(live.iter().map(|p| delete(p, false)));
                }
            }
            continue;
        }
        // The oldest stays; any other goes (under a surge, the oldest of
        // each revision stays).
        live.sort_by(|a, b| {
            (&a.meta().creation_timestamp, &a.meta().name)
                .cmp(&(&b.meta().creation_timestamp, &b.meta().name))
        });
        if max_surge > 0 {
            let mut old_pod: Option<&v1::Pod> = None;
            let mut new_pod: Option<&v1::Pod> = None;
            for p in &live {
                let slot = if is_new(p) {
                    &mut new_pod
                } else {
                    &mut old_pod
                };
                match slot {
                    None => *slot = Some(*p),
                    Some(_) => actions.push(delete(p, false)),
                }
            }
            if let Some(o) = old_pod {
                pairs.push((name, o, new_pod));
            }
            live.retain(|p| Some(*p) == old_pod || Some(*p) == new_pod);
        } else if live.len() > 1 {
            actions.extend(live[1..].iter().map(|p| delete(p, false)));
        }
        let Some(pod) = live.first().copied() else {
            unavailable_nodes += 1;
            if failed.is_empty() {
                actions.push(Action::CreatePod(Box::new(pod_for(
                    ds, template, &hash, name,
                ))));
            }
            continue;
        };
        current += 1;
        // The status counts the node's oldest pod, as Kubernetes does.
        let pod_is_new = is_new(pod);
        let avail = is_available(pod, min_ready, now);
        ready += usize::from(is_ready(pod));
        updated += usize::from(pod_is_new);
        available += usize::from(avail);
        if !avail {
            unavailable_nodes += 1;
        }
        if !pod_is_new && max_surge == 0 {
            old_on.push((pod, avail));
        }
    }
    if rolling && max_surge > 0 {
        // Kubernetes' surge: an old pod that is not available gets its
        // replacement at once; an available one is a candidate while
        // fewer than maxSurge nodes wait for a new pod; a node whose new
        // pod is available loses its old one.
        let mut waiting = 0i64;
        let mut now_nodes: Vec<&str> = Vec::new();
        let mut candidates: Vec<&str> = Vec::new();
        for (node, old_pod, new_pod) in &pairs {
            match new_pod {
                None if !is_available(old_pod, min_ready, now) => now_nodes.push(node),
                None => candidates.push(node),
                Some(n) if is_available(n, min_ready, now) => actions.push(delete(old_pod, false)),
                Some(_) => waiting += 1,
            }
        }
        let room = usize::try_from((max_surge - waiting).max(0)).unwrap_or(0);
        for node in now_nodes
            .into_iter()
            .chain(candidates.into_iter().take(room))
        {
            actions.push(Action::CreatePod(Box::new(pod_for(
                ds, template, &hash, node,
            ))));
        }
    } else if rolling {
        let max_unavailable = strategy
            .rolling_update
            .as_ref()
            .map_or(1, |r| scaled(&r.max_unavailable, desired as i64))
            .max(1);
        // Old pods that are not available anyway: replaced at once.
        for (p, _) in old_on.iter().filter(|(_, avail)| !avail) {
            actions.push(delete(p, false));
        }
        let mut budget = max_unavailable - unavailable_nodes;
        let mut candidates: Vec<&v1::Pod> = old_on
            .iter()
            .filter(|(_, avail)| *avail)
            .map(|(p, _)| *p)
            .collect();
        candidates.sort_by(|a, b| node_of(a).cmp(node_of(b)));
        for p in candidates {
            if budget <= 0 {
                break;
            }
            actions.push(delete(p, false));
            budget -= 1;
        }
    }
    let status = v1::DaemonSetStatus {
        current_number_scheduled: count(current),
        number_misscheduled: count(misscheduled),
        desired_number_scheduled: count(desired),
        number_ready: count(ready),
        observed_generation: m.generation,
        updated_number_scheduled: count(updated),
        number_available: count(available),
        number_unavailable: count(desired.saturating_sub(available)),
        collision_count: revs.collision_count,
        conditions: ds
            .status
            .as_ref()
            .map(|s| s.conditions.clone())
            .unwrap_or_default(),
    };
    // History beyond the limit, oldest first; never the template's own
    // revision nor one a pod runs.
    let pod_hashes: BTreeSet<&str> = mine
        .iter()
        .filter_map(|p| p.meta().labels.get(REVISION_LABEL))
        .map(String::as_str)
        .collect();
    let live: BTreeSet<&str> = revs
        .owned
        .iter()
        .filter(|r| pod_hashes.contains(history::hash_of(r)))
        .map(|r| r.meta().name.as_str())
        .chain([revs.update.meta().name.as_str()])
        .collect();
    let limit = spec.revision_history_limit.unwrap_or(10);
    actions.extend(
        history::trim(&revs.owned, &live, limit)
            .into_iter()
            .map(|n| Action::Revision(RevisionWrite::Delete(n))),
    );
    if ds.status.as_ref() != Some(&status) {
        actions.insert(0, Action::UpdateStatus(status));
    }
    actions
}

#[cfg(test)]
mod tests {
    use super::*;

    const NO_PODS: &[v1::Pod] = &[];
    const NO_REVISIONS: &[v1::ControllerRevision] = &[];
    use keelson_model::time::format_rfc3339;
    use serde_json::json;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_261_600 + secs)
    }

    fn ds(spec: serde_json::Value) -> v1::DaemonSet {
        let mut spec = spec;
        spec["selector"] = json!({"matchLabels": {"app": "agent"}});
        if spec.get("template").is_none() {
            spec["template"] = json!({"metadata": {"labels": {"app": "agent"}},
                "spec": {"containers": [{"name": "c", "image": "agent:1"}]}});
        }
        serde_json::from_value(json!({
            "metadata": {"name": "agent", "namespace": "kube-system", "uid": "ds-uid", "generation": 2},
            "spec": spec
        }))
        .expect("ds")
    }

    fn node(name: &str, labels: serde_json::Value, taints: serde_json::Value) -> v1::Node {
        serde_json::from_value(json!({"metadata": {"name": name, "labels": labels},
                                      "spec": {"taints": taints}}))
        .expect("node")
    }

    /// A pod of `d` on `node` from its template (of `image`), Ready since
    /// `ready_at` (None: not ready).
    fn pod(d: &v1::DaemonSet, name: &str, node: &str, ready_at: Option<u64>) -> v1::Pod {
        let t = d
            .spec
            .as_ref()
            .and_then(|s| s.template.clone())
            .expect("template");
        let mut p = pod_for(d, &t, &crate::deployment::template_hash(&t), node);
        let meta = p.meta_mut();
        meta.name = name.to_string();
        meta.uid = format!("uid-{name}");
        meta.creation_timestamp = format_rfc3339(at(0));
        p.status = Some(
            serde_json::from_value(json!({"phase": "Running", "conditions": [{"type": "Ready",
                "status": if ready_at.is_some() { "True" } else { "False" },
                "lastTransitionTime": format_rfc3339(at(ready_at.unwrap_or(0)))}]}))
            .expect("status"),
        );
        p
    }

    fn creates(a: &[Action]) -> Vec<String> {
        a.iter()
            .filter_map(|a| match a {
                Action::CreatePod(p) => p.spec.as_ref().map(|s| s.node_name.clone()),
                _ => None,
            })
            .collect()
    }

    fn deletes(a: &[Action]) -> Vec<(String, bool)> {
        a.iter()
            .filter_map(|a| match a {
                Action::DeletePod { name, force } => Some((name.clone(), *force)),
                _ => None,
            })
            .collect()
    }

    fn status(a: &[Action]) -> Option<v1::DaemonSetStatus> {
        a.iter().find_map(|a| match a {
            Action::UpdateStatus(s) => Some(s.clone()),
            _ => None,
        })
    }

    #[test]
    fn a_pod_per_eligible_node() {
        let d = ds(json!({}));
        let nodes = [
            node("a", json!({}), json!([])),
            node(
                "b",
                json!({}),
                json!([{"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}]),
            ),
            node(
                "c",
                json!({}),
                json!([{"key": "gpu", "value": "yes", "effect": "NoSchedule"}]),
            ),
            node(
                "d",
                json!({}),
                json!([{"key": "node.kubernetes.io/not-ready", "effect": "NoExecute"}]),
            ),
        ];
        let a = reconcile(&d, &nodes, NO_PODS, NO_REVISIONS, at(10));
        // A cordoned node and a not-ready one are tolerated; a tainted one is not.
        assert_eq!(creates(&a), ["a", "b", "d"]);
        let p = a.iter().find_map(|a| match a {
            Action::CreatePod(p) => Some(p.clone()),
            _ => None,
        });
        let p = p.expect("pod");
        assert_eq!(p.meta().generate_name, "agent-");
        assert!(p.meta().labels.contains_key(REVISION_LABEL));
        assert_eq!(
            controller_of(p.meta()).map(|r| r.kind.as_str()),
            Some("DaemonSet")
        );
        assert_eq!(status(&a).map(|s| s.desired_number_scheduled), Some(3));
        // With a toleration the tainted node runs it too.
        let tolerant = ds(
            json!({"template": {"metadata": {"labels": {"app": "agent"}},
            "spec": {"tolerations": [{"key": "gpu", "operator": "Exists"}],
                     "containers": [{"name": "c", "image": "agent:1"}]}}}),
        );
        assert_eq!(
            creates(&reconcile(&tolerant, &nodes, NO_PODS, NO_REVISIONS, at(10))),
            ["a", "b", "c", "d"]
        );
    }

    #[test]
    fn node_selectors_taints_and_removed_nodes() {
        let d = ds(
            json!({"template": {"metadata": {"labels": {"app": "agent"}},
            "spec": {"nodeSelector": {"role": "edge"}, "containers": [{"name": "c", "image": "agent:1"}]}}}),
        );
        let edge = node("a", json!({"role": "edge"}), json!([]));
        let plain = node("b", json!({}), json!([]));
        let tainted_soft = node(
            "c",
            json!({"role": "edge"}),
            json!([{"key": "x", "effect": "NoSchedule"}]),
        );
        let tainted_hard = node(
            "e",
            json!({"role": "edge"}),
            json!([{"key": "x", "effect": "NoExecute"}]),
        );
        let pods = [
            pod(&d, "on-a", "a", Some(0)),
            pod(&d, "on-b", "b", Some(0)),
            pod(&d, "on-c", "c", Some(0)),
            pod(&d, "on-e", "e", Some(0)),
            pod(&d, "on-gone", "gone", Some(0)),
        ];
        let a = reconcile(
            &d,
            &[edge, plain, tainted_soft, tainted_hard],
            &pods,
            NO_REVISIONS,
            at(100),
        );
        assert_eq!(creates(&a), Vec::<String>::new());
        let mut del = deletes(&a);
        del.sort();
        assert_eq!(
            del,
            [
                ("on-b".to_string(), false),
                ("on-e".to_string(), false),
                ("on-gone".to_string(), true)
            ]
        );
        let s = status(&a).expect("status");
        assert_eq!(
            (s.desired_number_scheduled, s.current_number_scheduled),
            (1, 1)
        );
        assert_eq!(
            s.number_misscheduled, 3,
            "b and e (being removed) and c (kept)"
        );
    }

    #[test]
    fn failed_and_duplicate_pods_are_replaced() {
        let d = ds(json!({}));
        let nodes = [
            node("a", json!({}), json!([])),
            node("b", json!({}), json!([])),
        ];
        let mut failed = pod(&d, "failed", "a", None);
        failed.status.as_mut().expect("status").phase = "Failed".into();
        let mut newer = pod(&d, "newer", "b", Some(0));
        newer.meta_mut().creation_timestamp = format_rfc3339(at(5));
        let pods = [failed, pod(&d, "older", "b", Some(0)), newer];
        let a = reconcile(&d, &nodes, &pods, NO_REVISIONS, at(10));
        assert_eq!(
            deletes(&a),
            [("failed".to_string(), false), ("newer".to_string(), false)]
        );
        assert_eq!(
            creates(&a),
            Vec::<String>::new(),
            "the replacement comes next round"
        );
    }

    #[test]
    fn rolling_update_within_max_unavailable() {
        let old = ds(json!({"updateStrategy": {"type": "RollingUpdate",
                                               "rollingUpdate": {"maxUnavailable": "50%"}}}));
        let nodes: Vec<v1::Node> = ["a", "b", "c", "d"]
            .iter()
            .map(|n| node(n, json!({}), json!([])))
            .collect();
        let pods: Vec<v1::Pod> = ["a", "b", "c", "d"]
            .iter()
            .map(|n| pod(&old, &format!("old-{n}"), n, Some(0)))
            .collect();
        let mut new = old.clone();
        if let Some(t) = new.spec.as_mut().and_then(|s| s.template.as_mut()) {
            if let Some(s) = t.spec.as_mut() {
                s.containers[0].image = "agent:2".into();
            }
        }
        // 50% of 4: two at a time.
        let a = reconcile(&new, &nodes, &pods, NO_REVISIONS, at(10));
        assert_eq!(
            deletes(&a),
            [("old-a".to_string(), false), ("old-b".to_string(), false)]
        );
        // a replaced and not yet ready, b gone: nothing more may go.
        let mut mid = vec![pod(&new, "new-a", "a", None)];
        mid.extend(pods[2..].iter().cloned());
        let a = reconcile(&new, &nodes, &mid, NO_REVISIONS, at(20));
        assert_eq!(creates(&a), ["b"]);
        assert_eq!(deletes(&a), Vec::<(String, bool)>::new());
        let s = status(&a).expect("status");
        assert_eq!(
            (
                s.updated_number_scheduled,
                s.number_available,
                s.number_unavailable
            ),
            (1, 2, 2)
        );
        // An old pod that is not available is replaced at once.
        let sick = [pod(&old, "sick", "a", None)];
        let a = reconcile(&new, &nodes[..1], &sick, NO_REVISIONS, at(30));
        assert_eq!(deletes(&a), [("sick".to_string(), false)]);
        // OnDelete: old pods stay.
        let mut on_delete = new.clone();
        if let Some(s) = on_delete.spec.as_mut() {
            s.update_strategy = Some(v1::DaemonSetUpdateStrategy {
                r#type: "OnDelete".into(),
                rolling_update: None,
            });
        }
        assert_eq!(
            deletes(&reconcile(&on_delete, &nodes, &pods, NO_REVISIONS, at(10))),
            Vec::<(String, bool)>::new()
        );
    }

    #[test]
    fn rolling_update_by_surge() {
        let old = ds(json!({"updateStrategy": {"type": "RollingUpdate",
            "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}}));
        let nodes: Vec<v1::Node> = ["a", "b", "c"]
            .iter()
            .map(|n| node(n, json!({}), json!([])))
            .collect();
        // New pods are created after the old ones.
        let newer = |d: &v1::DaemonSet, name: &str, node: &str, ready_at: Option<u64>| {
            let mut p = pod(d, name, node, ready_at);
            p.meta_mut().creation_timestamp = format_rfc3339(at(5));
            p
        };
        let pods: Vec<v1::Pod> = ["a", "b", "c"]
            .iter()
            .map(|n| pod(&old, &format!("old-{n}"), n, Some(0)))
            .collect();
        // Nothing to do while the template is the pods'.
        let a = reconcile(&old, &nodes, &pods, NO_REVISIONS, at(10));
        assert!(creates(&a).is_empty() && deletes(&a).is_empty(), "{a:?}");
        let mut new = old.clone();
        if let Some(t) = new.spec.as_mut().and_then(|s| s.template.as_mut()) {
            if let Some(s) = t.spec.as_mut() {
                s.containers[0].image = "agent:2".into();
            }
        }
        // One new pod beside an old one; no old pod goes yet.
        let a = reconcile(&new, &nodes, &pods, NO_REVISIONS, at(10));
        assert_eq!(creates(&a), ["a"]);
        assert!(deletes(&a).is_empty());
        // While it is not available, no other node surges.
        let mut mid = pods.clone();
        mid.push(newer(&new, "new-a", "a", None));
        let a = reconcile(&new, &nodes, &mid, NO_REVISIONS, at(20));
        assert!(creates(&a).is_empty() && deletes(&a).is_empty(), "{a:?}");
        let s = status(&a).expect("status");
        assert_eq!((s.current_number_scheduled, s.number_available), (3, 3));
        // Once available, the old one goes and the next node surges (in
        // the same round, as Kubernetes).
        mid.pop();
        mid.push(newer(&new, "new-a", "a", Some(15)));
        let a = reconcile(&new, &nodes, &mid, NO_REVISIONS, at(20));
        assert_eq!(deletes(&a), [("old-a".to_string(), false)]);
        assert_eq!(creates(&a), ["b"], "a no longer takes the surge");
        let mut later: Vec<v1::Pod> = mid[1..3].to_vec();
        later.push(newer(&new, "new-a", "a", Some(15)));
        let a = reconcile(&new, &nodes, &later, NO_REVISIONS, at(30));
        assert_eq!(creates(&a), ["b"]);
        // An old pod that is not available gets its replacement at once,
        // beyond the surge.
        let sick = vec![
            pod(&old, "old-a", "a", None),
            pod(&old, "old-b", "b", Some(0)),
            newer(&new, "new-c", "c", None),
            pod(&old, "old-c", "c", Some(0)),
        ];
        let a = reconcile(&new, &nodes, &sick, NO_REVISIONS, at(30));
        assert_eq!(creates(&a), ["a"]);
        // A second new pod on a node goes.
        let twice = vec![
            newer(&new, "new-a", "a", Some(0)),
            newer(&new, "new-a2", "a", Some(0)),
        ];
        let a = reconcile(&new, &nodes[..1], &twice, NO_REVISIONS, at(30));
        assert_eq!(deletes(&a), [("new-a2".to_string(), false)]);
    }

    #[test]
    fn min_ready_seconds_and_bad_input() {
        let d = ds(json!({"minReadySeconds": 30}));
        let nodes = [node("a", json!({}), json!([]))];
        let pods = [pod(&d, "p", "a", Some(0))];
        let s = status(&reconcile(&d, &nodes, &pods, NO_REVISIONS, at(10))).expect("status");
        assert_eq!((s.number_ready, s.number_available), (1, 0));
        let s = status(&reconcile(&d, &nodes, &pods, NO_REVISIONS, at(31))).expect("status");
        assert_eq!((s.number_available, s.observed_generation), (1, 2));
        let mut bare = d.clone();
        bare.spec = None;
        assert!(reconcile(&bare, &nodes, &pods, NO_REVISIONS, at(10)).is_empty());
    }

    #[test]
    fn templates_are_revisions_and_old_ones_are_trimmed() {
        let d = ds(json!({"revisionHistoryLimit": 1}));
        let nodes = [node("a", json!({}), json!([]))];
        let t = |image: &str| -> v1::PodTemplateSpec {
            serde_json::from_value(json!({"metadata": {"labels": {"app": "agent"}},
                "spec": {"containers": [{"name": "c", "image": image}]}}))
            .expect("template")
        };
        // No revision yet: the template's is made, named for its hash, and
        // the pod is labelled with that hash.
        let a = reconcile(&d, &nodes, NO_PODS, NO_REVISIONS, at(10));
        let made: Vec<v1::ControllerRevision> = a
            .iter()
            .filter_map(|a| match a {
                Action::Revision(RevisionWrite::Create(r)) => Some((**r).clone()),
                _ => None,
            })
            .collect();
        assert_eq!(made.len(), 1);
        let r = &made[0];
        assert_eq!(r.revision, 1);
        assert_eq!(history::template_of(r), t("agent:1"));
        assert_eq!(r.meta().name, format!("agent-{}", history::hash_of(r)));
        let created = a
            .iter()
            .find_map(|a| match a {
                Action::CreatePod(p) => Some(p.clone()),
                _ => None,
            })
            .expect("pod");
        assert_eq!(
            created
                .meta()
                .labels
                .get(REVISION_LABEL)
                .map(String::as_str),
            Some(history::hash_of(r))
        );
        // Back to an old template: that revision is renumbered, nothing
        // made; of the two unused ones only the newest stays, and the one
        // the running pod uses is kept.
        let revs = [
            history::new_revision(&d, &t("agent:1"), 1, None),
            history::new_revision(&d, &t("agent:2"), 2, None),
            history::new_revision(&d, &t("agent:3"), 3, None),
            history::new_revision(&d, &t("agent:4"), 4, None),
        ];
        let mut running = pod(&d, "p", "a", Some(0));
        running
            .meta_mut()
            .labels
            .insert(REVISION_LABEL.into(), history::hash_of(&revs[3]).into());
        let a = reconcile(&d, &nodes, &[running], &revs, at(10));
        let writes: Vec<(String, String)> = a
            .iter()
            .filter_map(|a| match a {
                Action::Revision(RevisionWrite::Create(r)) => {
                    Some(("create".into(), r.meta().name.clone()))
                }
                Action::Revision(RevisionWrite::Update(r)) => {
                    Some((format!("number {}", r.revision), r.meta().name.clone()))
                }
                Action::Revision(RevisionWrite::Delete(n)) => Some(("delete".into(), n.clone())),
                _ => None,
            })
            .collect();
        assert_eq!(
            writes,
            [
                ("number 5".to_string(), revs[0].meta().name.clone()),
                ("delete".to_string(), revs[1].meta().name.clone()),
            ]
        );
        // The old pod is replaced by one of the renumbered template.
        assert_eq!(deletes(&a), [("p".to_string(), false)]);
    }
}
