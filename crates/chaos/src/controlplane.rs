//! The control plane's invariants under faults, judged from what watchers
//! and the workload recorded (every object change with the store revision
//! it happened at):
//! - no pod bound twice: once a pod (one uid) has a node, the node never
//!   changes and never goes away while the pod exists;
//! - no Deployment beyond its surge: a ReplicaSet write that raises the
//!   total replicas of a Deployment's ReplicaSets never takes it above
//!   `replicas + maxSurge` of the Deployment spec the controller had
//!   acknowledged (`status.observedGeneration == metadata.generation` at that
//!   revision; a write racing a spec change the controller has not seen yet
//!   is judged against nothing, as Kubernetes' own controller could make it);
//! - no acknowledged spec change lost: each Deployment ends with the last
//!   acknowledged write of the workload or with one it sent later without
//!   learning the result;
//! - never two pods of one StatefulSet ordinal at once: a StatefulSet's pod
//!   name gets a new uid only after the previous one's deletion;
//! - no Job beyond its completions: no Job has more Succeeded pods than
//!   `completions`;
//! - no CronJob schedule time run twice: one Job (one uid) at most per
//!   CronJob and scheduled time, ever (also after the history limit
//!   deleted it, and across controller failovers);
//! - every Deployment, StatefulSet and Job back at its desired state (or
//!   complete) within a bound after the faults stop (measured by the
//!   harness, judged here).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::invariants::Verdict;

/// A pod as one watch event showed it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodSeen {
    pub revision: i64,
    /// namespace/name.
    pub key: String,
    pub uid: String,
    /// spec.nodeName ("" = not bound).
    pub node: String,
    pub deleted: bool,
    /// The controlling owner's kind and uid.
    pub owner: Option<(String, String)>,
    /// `status.phase` is Succeeded.
    pub succeeded: bool,
}

/// A Job as one watch event showed it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobSeen {
    pub revision: i64,
    pub name: String,
    pub uid: String,
    /// The controlling CronJob's uid, if a CronJob made it.
    pub cron_job: Option<String>,
    /// Its `batch.kubernetes.io/cronjob-scheduled-timestamp`.
    pub scheduled: String,
}

/// A Deployment or ReplicaSet as one watch event showed it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    Deployment {
        revision: i64,
        uid: String,
        name: String,
        generation: i64,
        observed_generation: i64,
        replicas: i64,
        /// `spec.strategy.rollingUpdate.maxSurge` as written ("" = default
        /// 25%); None: not a RollingUpdate Deployment (no surge bound).
        max_surge: Option<String>,
        deleted: bool,
    },
    ReplicaSet {
        revision: i64,
        uid: String,
        name: String,
        /// The controlling owner's uid.
        owner: Option<String>,
        replicas: i64,
        deleted: bool,
    },
}

impl Change {
    fn revision(&self) -> i64 {
        match self {
            Change::Deployment { revision, .. } | Change::ReplicaSet { revision, .. } => *revision,
        }
    }
}

/// Once a pod has a node it keeps it: per uid, the node never changes from
/// one name to another nor back to none while the pod exists.
pub fn no_pod_bound_twice(seen: &[PodSeen]) -> Verdict {
    let mut sorted: Vec<&PodSeen> = seen.iter().collect();
    sorted.sort_by_key(|p| p.revision);
    let mut node_of: HashMap<&str, (&str, i64)> = HashMap::new();
    let mut problems = Vec::new();
    let mut bound = BTreeSet::new();
    for p in sorted {
        match node_of.get(p.uid.as_str()) {
            Some((node, at)) if *node != p.node.as_str() && !(p.deleted && p.node.is_empty()) => {
                problems.push(format!(
                    "pod {} (uid {}): bound to {node:?} at revision {at}, then {:?} at revision {}",
                    p.key, p.uid, p.node, p.revision
                ));
            }
            Some(_) => {}
            None if !p.node.is_empty() => {
                node_of.insert(p.uid.as_str(), (p.node.as_str(), p.revision));
                bound.insert(p.uid.as_str());
            }
            None => {}
        }
    }
    Verdict::new(
        "no pod bound twice",
        problems,
        format!("{} pods bound, {} pod events", bound.len(), seen.len()),
    )
}

/// Never two pods of one StatefulSet ordinal at once: in revision order,
/// a pod name of a StatefulSet takes a new uid only after the uid before
/// it was deleted.
pub fn one_pod_per_ordinal(seen: &[PodSeen]) -> Verdict {
    let mut sorted: Vec<&PodSeen> = seen
        .iter()
        .filter(|p| p.owner.as_ref().is_some_and(|(k, _)| k == "StatefulSet"))
        .collect();
    sorted.sort_by_key(|p| p.revision);
    let mut live: HashMap<&str, (&str, i64)> = HashMap::new();
    let mut problems = Vec::new();
    let mut uids = BTreeSet::new();
    for p in &sorted {
        uids.insert(p.uid.as_str());
        match live.get(p.key.as_str()) {
            Some((uid, _)) if p.deleted && *uid == p.uid => {
                live.remove(p.key.as_str());
            }
            Some((uid, at)) if *uid != p.uid && !p.deleted => problems.push(format!(
                "pod {}: uid {uid} live since revision {at} when uid {} appeared at revision {}",
                p.key, p.uid, p.revision
            )),
            Some(_) => {}
            None if !p.deleted => {
                live.insert(p.key.as_str(), (p.uid.as_str(), p.revision));
            }
            None => {}
        }
    }
    Verdict::new(
        "never two pods of one StatefulSet ordinal at once",
        problems,
        format!("{} StatefulSet pods, {} events", uids.len(), sorted.len()),
    )
}

/// No Job has more Succeeded pods (distinct uids) than `completions`.
pub fn job_completions_respected(seen: &[PodSeen], completions: usize) -> Verdict {
    let mut succeeded: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for p in seen {
        if let Some((kind, owner)) = &p.owner {
            if kind == "Job" && p.succeeded {
                succeeded
                    .entry(owner.as_str())
                    .or_default()
                    .insert(p.uid.as_str());
            }
        }
    }
    let problems = succeeded
        .iter()
        .filter(|(_, pods)| pods.len() > completions)
        .map(|(job, pods)| {
            format!(
                "job uid {job}: {} succeeded pods, completions {completions}",
                pods.len()
            )
        })
        .collect();
    Verdict::new(
        "no Job beyond its completions",
        problems,
        format!(
            "{} Jobs with succeeded pods, {} succeeded pods",
            succeeded.len(),
            succeeded.values().map(BTreeSet::len).sum::<usize>()
        ),
    )
}

/// No CronJob schedule time run twice: per CronJob and scheduled time,
/// one Job uid at most in the whole history.
pub fn one_job_per_schedule_time(seen: &[JobSeen]) -> Verdict {
    let mut runs: BTreeMap<(&str, &str), BTreeSet<&str>> = BTreeMap::new();
    for j in seen {
        if let Some(cron) = &j.cron_job {
            runs.entry((cron.as_str(), j.scheduled.as_str()))
                .or_default()
                .insert(j.uid.as_str());
        }
    }
    let problems = runs
        .iter()
        .filter(|(_, uids)| uids.len() > 1)
        .map(|((cron, at), uids)| {
            format!(
                "cronjob uid {cron}: schedule time {at:?} ran {} Jobs {uids:?}",
                uids.len()
            )
        })
        .collect();
    Verdict::new(
        "no CronJob schedule time run twice",
        problems,
        format!("{} schedule times run", runs.len()),
    )
}

/// `maxSurge` of a Deployment with `replicas` (Kubernetes: a percentage
/// rounds up; "" = 25%). None when it cannot be read.
pub fn surge_of(max_surge: &str, replicas: i64) -> Option<i64> {
    let s = if max_surge.is_empty() {
        "25%"
    } else {
        max_surge
    };
    match s.strip_suffix('%') {
        Some(p) => {
            let p: i64 = p.trim().parse().ok()?;
            Some((replicas * p + 99) / 100)
        }
        None => s.trim().parse().ok(),
    }
}

/// No ReplicaSet write raises a Deployment's total above its acknowledged
/// `replicas + maxSurge` (see the module's doc).
pub fn surge_respected(changes: &[Change]) -> Verdict {
    let mut sorted: Vec<&Change> = changes.iter().collect();
    // Stable: events of one revision keep their order.
    sorted.sort_by_key(|c| c.revision());
    struct Dep<'a> {
        name: &'a str,
        generation: i64,
        observed: i64,
        replicas: i64,
        max_surge: Option<&'a str>,
    }
    let mut deps: HashMap<&str, Dep> = HashMap::new();
    // ReplicaSet uid -> (owner uid, replicas).
    let mut sets: HashMap<&str, (Option<&str>, i64)> = HashMap::new();
    let total = |sets: &HashMap<&str, (Option<&str>, i64)>, owner: &str| -> i64 {
        sets.values()
            .filter(|(o, _)| *o == Some(owner))
            .map(|(_, r)| *r)
            .sum()
    };
    let mut problems = Vec::new();
    let mut judged = 0usize;
    for c in sorted {
        match c {
            Change::Deployment {
                uid,
                name,
                generation,
                observed_generation,
                replicas,
                max_surge,
                deleted,
                ..
            } => {
                if *deleted {
                    deps.remove(uid.as_str());
                } else {
                    deps.insert(
                        uid.as_str(),
                        Dep {
                            name,
                            generation: *generation,
                            observed: *observed_generation,
                            replicas: *replicas,
                            max_surge: max_surge.as_deref(),
                        },
                    );
                }
            }
            Change::ReplicaSet {
                revision,
                uid,
                name,
                owner,
                replicas,
                deleted,
            } => {
                let owner = owner.as_deref();
                let before = owner.map(|o| total(&sets, o));
                if *deleted {
                    sets.remove(uid.as_str());
                } else {
                    sets.insert(uid.as_str(), (owner, *replicas));
                }
                let (Some(o), Some(before)) = (owner, before) else {
                    continue;
                };
                let after = total(&sets, o);
                if after <= before {
                    continue;
                }
                let Some(d) = deps.get(o) else { continue };
                if d.observed != d.generation {
                    continue;
                }
                let Some(ms) = d.max_surge else { continue };
                judged += 1;
                match surge_of(ms, d.replicas) {
                    Some(surge) if after <= d.replicas + surge => {}
                    Some(surge) => {
                        let mut sizes: Vec<String> = sets
                            .iter()
                            .filter(|(_, (owner, r))| *owner == Some(o) && *r > 0)
                            .map(|(uid, (_, r))| format!("{uid}={r}"))
                            .collect();
                        sizes.sort();
                        problems.push(format!(
                            "deployment {}: replicaset {name} raised the total to {after} > {} + {surge} at revision {revision} (generation {} observed; sets {})",
                            d.name,
                            d.replicas,
                            d.generation,
                            sizes.join(", ")
                        ))
                    }
                    None => {
                        problems.push(format!("deployment {}: maxSurge {ms:?} unreadable", d.name))
                    }
                }
            }
        }
    }
    Verdict::new(
        "no ReplicaSet beyond its surge",
        problems,
        format!("{judged} scale-ups judged against an acknowledged spec"),
    )
}

/// One spec change the workload sent to a Deployment, identified by a
/// sequence number it also wrote into the object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpecWrite {
    pub deployment: String,
    pub seq: u64,
    /// None: the client does not know whether it landed; Some(true):
    /// acknowledged; Some(false): refused (it did not land).
    pub acked: Option<bool>,
}

/// Each Deployment ends with the sequence number of its last acknowledged
/// write or of a later unknown one (`last` maps each Deployment to the
/// sequence number its object carries at the end; None: not readable).
pub fn spec_writes_kept(writes: &[SpecWrite], last: &BTreeMap<String, Option<u64>>) -> Verdict {
    let mut problems = Vec::new();
    let mut acked = 0usize;
    for (dep, end) in last {
        let mine: Vec<&SpecWrite> = writes.iter().filter(|w| &w.deployment == dep).collect();
        acked += mine.iter().filter(|w| w.acked == Some(true)).count();
        let last_acked = mine
            .iter()
            .filter(|w| w.acked == Some(true))
            .map(|w| w.seq)
            .max();
        let Some(end) = end else {
            problems.push(format!("deployment {dep}: not readable at the end"));
            continue;
        };
        let allowed = match last_acked {
            Some(a) => {
                *end == a
                    || mine
                        .iter()
                        .any(|w| w.seq == *end && w.seq > a && w.acked.is_none())
            }
            None => *end == 0 || mine.iter().any(|w| w.seq == *end && w.acked.is_none()),
        };
        if !allowed {
            problems.push(format!(
                "deployment {dep}: ends with write {end}, the last acknowledged was {last_acked:?}"
            ));
        }
    }
    Verdict::new(
        "no acknowledged Deployment change lost",
        problems,
        format!(
            "{} deployments, {acked} acknowledged changes, {} sent",
            last.len(),
            writes.len()
        ),
    )
}

/// How long each Deployment took to be back at its desired state after the
/// faults stopped (None: not within the bound).
pub fn converged(
    what: &str,
    took: &BTreeMap<String, Option<std::time::Duration>>,
    bound: std::time::Duration,
) -> Verdict {
    let problems: Vec<String> = took
        .iter()
        .filter(|(_, t)| t.is_none_or(|t| t > bound))
        .map(|(d, _)| format!("{d} not at its desired state {bound:?} after the faults"))
        .collect();
    let slowest = took.values().flatten().max().copied().unwrap_or_default();
    Verdict::new(
        &format!("every {what} back at its desired state"),
        problems,
        format!(
            "{} objects within {:.1} s (bound {} s)",
            took.len(),
            slowest.as_secs_f64(),
            bound.as_secs()
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn pod(rev: i64, uid: &str, node: &str, deleted: bool) -> PodSeen {
        PodSeen {
            revision: rev,
            key: format!("default/{uid}"),
            uid: uid.into(),
            node: node.into(),
            deleted,
            owner: None,
            succeeded: false,
        }
    }

    /// A pod of `kind` `owner` named `name`.
    fn owned(rev: i64, name: &str, uid: &str, kind: &str, owner: &str, deleted: bool) -> PodSeen {
        PodSeen {
            key: format!("default/{name}"),
            owner: Some((kind.into(), owner.into())),
            ..pod(rev, uid, "n1", deleted)
        }
    }

    #[test]
    fn an_ordinal_has_one_pod_at_a_time() {
        let fine = vec![
            owned(1, "db-0", "a", "StatefulSet", "s", false),
            owned(2, "db-0", "a", "StatefulSet", "s", false),
            owned(4, "db-0", "a", "StatefulSet", "s", true),
            owned(5, "db-0", "b", "StatefulSet", "s", false),
            owned(3, "db-1", "c", "StatefulSet", "s", false),
            // Not a StatefulSet's: not judged.
            owned(2, "web-0", "x", "ReplicaSet", "r", false),
            owned(3, "web-0", "y", "ReplicaSet", "r", false),
        ];
        let v = one_pod_per_ordinal(&fine);
        assert!(v.ok, "{v:?}");
        assert!(v.detail.starts_with("3 StatefulSet pods"), "{v:?}");
        let mut bad = fine.clone();
        bad.push(owned(3, "db-0", "z", "StatefulSet", "s", false));
        let v = one_pod_per_ordinal(&bad);
        assert!(!v.ok && v.detail.contains("uid z"), "{v:?}");
    }

    #[test]
    fn a_schedule_time_runs_one_job() {
        let job = |uid: &str, at: &str| JobSeen {
            revision: 1,
            name: format!("tick-{at}"),
            uid: uid.into(),
            cron_job: Some("c".into()),
            scheduled: at.into(),
        };
        let mut seen = vec![
            job("a", "t1"),
            job("a", "t1"), // seen again (modified, deleted)
            job("b", "t2"),
            JobSeen {
                cron_job: None,
                ..job("x", "")
            },
            JobSeen {
                cron_job: None,
                ..job("y", "")
            },
        ];
        let v = one_job_per_schedule_time(&seen);
        assert!(v.ok && v.detail.starts_with("2 schedule times"), "{v:?}");
        seen.push(job("c", "t1"));
        let v = one_job_per_schedule_time(&seen);
        assert!(!v.ok && v.detail.contains("ran 2 Jobs"), "{v:?}");
    }

    #[test]
    fn a_job_succeeds_at_most_its_completions() {
        let done = |rev: i64, uid: &str, job: &str| PodSeen {
            succeeded: true,
            ..owned(rev, uid, uid, "Job", job, false)
        };
        let mut seen = vec![
            done(1, "a", "j1"),
            done(2, "a", "j1"), // the same pod seen twice
            done(3, "b", "j1"),
            done(4, "c", "j2"),
            owned(5, "d", "d", "Job", "j1", false), // running
        ];
        assert!(job_completions_respected(&seen, 2).ok);
        seen.push(done(6, "e", "j1"));
        let v = job_completions_respected(&seen, 2);
        assert!(!v.ok && v.detail.contains("j1: 3 succeeded"), "{v:?}");
    }

    #[test]
    fn a_pod_keeps_its_node() {
        let fine = vec![
            pod(1, "a", "", false),
            pod(2, "a", "n1", false),
            pod(5, "a", "n1", false),
            pod(7, "a", "n1", true),
            // The same name again, a new uid, elsewhere: a new pod.
            pod(8, "b", "n2", false),
            pod(3, "c", "", true),
        ];
        let v = no_pod_bound_twice(&fine);
        assert!(v.ok, "{v:?}");
        assert!(v.detail.starts_with("2 pods bound"), "{v:?}");
        // Rebound to another node.
        let mut bad = fine.clone();
        bad.push(pod(6, "a", "n3", false));
        let v = no_pod_bound_twice(&bad);
        assert!(!v.ok && v.detail.contains("n3"), "{v:?}");
        // Unbound while it exists.
        let mut bad = fine.clone();
        bad.push(pod(4, "a", "", false));
        assert!(!no_pod_bound_twice(&bad).ok);
        // Judged in revision order, whatever order the streams gave.
        let mut shuffled = fine.clone();
        shuffled.reverse();
        assert!(no_pod_bound_twice(&shuffled).ok);
    }

    #[test]
    fn surge_resolution() {
        assert_eq!(surge_of("1", 4), Some(1));
        assert_eq!(surge_of("25%", 4), Some(1));
        assert_eq!(surge_of("25%", 5), Some(2));
        assert_eq!(surge_of("", 8), Some(2));
        assert_eq!(surge_of("0%", 8), Some(0));
        assert_eq!(surge_of("x", 8), None);
    }

    fn dep(rev: i64, gen: i64, observed: i64, replicas: i64) -> Change {
        Change::Deployment {
            revision: rev,
            uid: "d".into(),
            name: "web".into(),
            generation: gen,
            observed_generation: observed,
            replicas,
            max_surge: Some("1".into()),
            deleted: false,
        }
    }
    fn rs(rev: i64, uid: &str, replicas: i64) -> Change {
        Change::ReplicaSet {
            revision: rev,
            uid: uid.into(),
            name: format!("web-{uid}"),
            owner: Some("d".into()),
            replicas,
            deleted: false,
        }
    }

    #[test]
    fn rolling_within_surge() {
        // 4 replicas, surge 1: old 4 -> new 1 (5), old 3, new 2 (5), ...
        let changes = vec![
            dep(1, 1, 1, 4),
            rs(2, "old", 4),
            dep(3, 2, 1, 4),
            dep(4, 2, 2, 4),
            rs(5, "new", 1),
            rs(6, "old", 3),
            rs(7, "new", 2),
            rs(8, "old", 2),
            rs(9, "new", 3),
        ];
        let v = surge_respected(&changes);
        assert!(v.ok, "{v:?}");
        assert!(v.detail.starts_with("4 scale-ups"), "{v:?}");
        // The new set raised to 3 before the old one came down: 4 + 3 > 5.
        let mut bad = changes.clone();
        bad.insert(5, rs(6, "new", 3));
        let v = surge_respected(&bad);
        assert!(!v.ok && v.detail.contains("total to 7"), "{v:?}");
    }

    #[test]
    fn surge_judged_against_the_acknowledged_spec_only() {
        // Scaled from 8 down to 2 (generation 2): until the controller has
        // observed it, a scale-up (decided on the old spec) is not judged;
        // above 2 + 1 while it scales down is fine.
        let changes = vec![
            dep(1, 1, 1, 8),
            rs(2, "a", 7),
            dep(3, 2, 1, 2),
            rs(4, "a", 8),
            rs(5, "a", 2),
            dep(6, 2, 2, 2),
        ];
        assert!(surge_respected(&changes).ok);
        // Once observed, a scale-up beyond 2 + 1 is a violation.
        let mut bad = changes.clone();
        bad.push(rs(7, "a", 4));
        assert!(!surge_respected(&bad).ok);
        // A deleted set leaves the total.
        let mut fine = changes.clone();
        fine.push(Change::ReplicaSet {
            revision: 7,
            uid: "a".into(),
            name: "web-a".into(),
            owner: Some("d".into()),
            replicas: 2,
            deleted: true,
        });
        fine.push(rs(8, "b", 3));
        assert!(surge_respected(&fine).ok);
    }

    fn w(seq: u64, acked: Option<bool>) -> SpecWrite {
        SpecWrite {
            deployment: "web".into(),
            seq,
            acked,
        }
    }

    #[test]
    fn acknowledged_spec_writes_are_kept() {
        let writes = vec![w(1, Some(true)), w(2, None), w(3, Some(true)), w(4, None)];
        let end = |s: Option<u64>| BTreeMap::from([("web".to_string(), s)]);
        assert!(spec_writes_kept(&writes, &end(Some(3))).ok);
        // A later unknown write may have landed.
        assert!(spec_writes_kept(&writes, &end(Some(4))).ok);
        // An earlier one may not win over an acknowledged one.
        assert!(!spec_writes_kept(&writes, &end(Some(2))).ok);
        assert!(!spec_writes_kept(&writes, &end(Some(1))).ok);
        // A refused write must not be there.
        let refused = vec![w(1, Some(true)), w(2, Some(false))];
        assert!(!spec_writes_kept(&refused, &end(Some(2))).ok);
        assert!(!spec_writes_kept(&writes, &end(None)).ok);
        // Nothing acknowledged: the initial object (0) or an unknown write.
        assert!(spec_writes_kept(&[w(1, None)], &end(Some(0))).ok);
        assert!(spec_writes_kept(&[w(1, None)], &end(Some(1))).ok);
    }

    #[test]
    fn convergence_within_the_bound() {
        let b = Duration::from_secs(60);
        let took = BTreeMap::from([
            ("a".to_string(), Some(Duration::from_secs(3))),
            ("b".to_string(), Some(Duration::from_secs(12))),
        ]);
        let v = converged("Deployment", &took, b);
        assert!(v.ok && v.detail.contains("12.0 s"), "{v:?}");
        let mut late = took.clone();
        late.insert("c".into(), None);
        assert!(!converged("Deployment", &late, b).ok);
        late.insert("c".into(), Some(Duration::from_secs(61)));
        assert!(!converged("Deployment", &late, b).ok);
    }
}
