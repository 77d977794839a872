//! The Job controller, after Kubernetes' `job_controller.go` and
//! `indexed_job_utils.go`.
//!
//! [`reconcile`] compares a Job with its pods (those whose controller
//! ownerReference carries the Job's uid) and returns the [`Action`]s that
//! run pods until `completions` of them succeed:
//!
//! - **Tracking** (Kubernetes' finalizer-based tracking): every pod is
//!   created with the [`TRACKING_FINALIZER`]. A finished pod (phase
//!   `Succeeded` or `Failed`; or deleted before it finished, which counts
//!   as a failure) is first recorded by uid in
//!   `status.uncountedTerminatedPods`, in a status write that happens
//!   before anything else; then its finalizer is removed; once its pod no
//!   longer holds the finalizer (or is gone) it moves into
//!   `status.succeeded`/`failed`. So a pod is counted exactly once even if
//!   it is deleted right after it finished, and a lagging cache cannot make
//!   the Job run more successful pods than `completions`: a pod that
//!   finished is in the status before its finalizer goes.
//! - **Parallelism**: `min(parallelism, completions - succeeded)` pods
//!   run at once (succeeded counting those not yet moved out of
//!   `uncountedTerminatedPods`); a work queue (`completions` unset) runs
//!   `parallelism` pods until one succeeded, then lets the others finish.
//! - **Failures**: with `restartPolicy: Never` each failed pod counts one
//!   (and a new pod replaces it); with `OnFailure` the kubelet restarts
//!   the container in place and its restarts count. More than
//!   `backoffLimit` fails the Job (`BackoffLimitExceeded`);
//!   `activeDeadlineSeconds` since `startTime` fails it too
//!   (`DeadlineExceeded`). A failed Job's running pods are deleted.
//! - **Completion**: `succeeded >= completions` (or, for a work queue, a
//!   success and no pod running) completes it: condition `Complete`,
//!   `completionTime`; pods still running are deleted.
//! - **Suspend**: `suspend: true` deletes the running pods and sets
//!   `Suspended`; `startTime` restarts when it resumes.
//! - **TTL**: a finished Job with `ttlSecondsAfterFinished` is deleted
//!   that long after it finished (its pods go with it, by the garbage
//!   collector).
//! - **Back-off** (`restartPolicy: Never`): a pod replacing failed ones
//!   waits 10 s after the last failure, doubling per failure since the last
//!   success, at most 10 minutes (Kubernetes' defaults).
//! - **Indexed** completion mode: each pod carries a completion index
//!   from 0 to `completions - 1` ([`COMPLETION_INDEX`] annotation and
//!   label, `JOB_COMPLETION_INDEX` in every container's env, hostname
//!   `<job>-<index>`); the lowest indexes with neither a success nor a
//!   running pod get pods, a second running pod of one index goes, and
//!   `status.completedIndexes` (ranges, `0-2,5`) lists the indexes that
//!   succeeded, written in the same status write that records the pod, so
//!   an index counts once however many of its pods succeed; the Job is
//!   complete when every index is.
//! - Not done: `podFailurePolicy`, `successPolicy`, `backoffLimitPerIndex`.

use std::borrow::Borrow;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime};

use keelson_model::defaults::JOB_BACKOFF_LIMIT;
use keelson_model::pod::is_ready;
use keelson_model::selector::LabelSelector;
use keelson_model::time::{format_rfc3339, parse_rfc3339};
use keelson_model::{controller_of, Resource};
use keelson_proto::v1;

/// The finalizer on every pod of a Job until the Job has counted it.
pub const TRACKING_FINALIZER: &str = "batch.kubernetes.io/job-tracking";
/// An Indexed Job's pod's completion index (annotation and label).
pub const COMPLETION_INDEX: &str = "batch.kubernetes.io/job-completion-index";
/// The env var with the completion index in each container.
pub const COMPLETION_INDEX_ENV: &str = "JOB_COMPLETION_INDEX";

/// The most pods created or deleted in one reconcile.
pub const BURST_PODS: usize = 500;

/// One change to make to the cluster.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Write this status, before every other action of the round (only
    /// when it differs from the current one).
    UpdateStatus(v1::JobStatus),
    /// Create a pod from the template (generateName `<job>-`, an
    /// ownerReference to the Job, the tracking finalizer).
    CreatePod(Box<v1::Pod>),
    /// Delete this running pod.
    DeletePod { name: String },
    /// Remove the tracking finalizer from this finished pod (its uid is in
    /// the status written first).
    RemoveFinalizer { name: String, uid: String },
    /// The Job's TTL after it finished has passed: delete it.
    DeleteJob,
}

fn phase(p: &v1::Pod) -> &str {
    p.status.as_ref().map_or("", |s| s.phase.as_str())
}

fn tracked(p: &v1::Pod) -> bool {
    p.meta().finalizers.iter().any(|f| f == TRACKING_FINALIZER)
}

/// How a pod stands for its Job.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fate {
    Running,
    Succeeded,
    Failed,
    /// Being deleted after it finished, or without the finalizer: nothing
    /// more to count.
    Gone,
}

fn fate(p: &v1::Pod) -> Fate {
    let deleting = !p.meta().deletion_timestamp.is_empty();
    match phase(p) {
        "Succeeded" => Fate::Succeeded,
        "Failed" => Fate::Failed,
        // Deleted before it finished: a failure (Kubernetes counts it so).
        _ if deleting && tracked(p) => Fate::Failed,
        _ if deleting => Fate::Gone,
        _ => Fate::Running,
    }
}

fn condition_true(s: &v1::JobStatus, t: &str) -> bool {
    s.conditions
        .iter()
        .any(|c| c.r#type == t && c.status == "True")
}

/// Whether the Job has finished (Complete or Failed).
pub fn finished(job: &v1::Job) -> bool {
    job.status
        .as_ref()
        .is_some_and(|s| condition_true(s, "Complete") || condition_true(s, "Failed"))
}

fn set_condition(s: &mut v1::JobStatus, t: &str, status: &str, reason: &str, msg: &str, now: &str) {
    if let Some(c) = s.conditions.iter_mut().find(|c| c.r#type == t) {
        if c.status != status {
            c.last_transition_time = now.to_string();
        }
        c.status = status.to_string();
        c.reason = reason.to_string();
        c.message = msg.to_string();
        c.last_probe_time = now.to_string();
        return;
    }
    s.conditions.push(v1::JobCondition {
        r#type: t.to_string(),
        status: status.to_string(),
        last_probe_time: now.to_string(),
        last_transition_time: now.to_string(),
        reason: reason.to_string(),
        message: msg.to_string(),
    });
}

/// A pod of the Job: the template's, with the tracking finalizer.
fn pod_from_template(job: &v1::Job, template: &v1::PodTemplateSpec) -> v1::Pod {
    let owner = keelson_model::controller_reference(job);
    let mut pod = crate::pod_from_template(job, template, &owner);
    pod.meta_mut()
        .finalizers
        .push(TRACKING_FINALIZER.to_string());
    pod
}

/// The completion index of an Indexed Job's pod.
fn index_of(p: &v1::Pod) -> Option<i32> {
    p.meta()
        .annotations
        .get(COMPLETION_INDEX)
        .and_then(|v| v.parse().ok())
        .filter(|i| *i >= 0)
}

/// Indexes written as Kubernetes writes `completedIndexes`: ascending,
/// each run of consecutive indexes as `a-b` (`0-2,4-5,7`).
pub fn format_indexes(set: &BTreeSet<i32>) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut iter = set.iter().copied().peekable();
    while let Some(start) = iter.next() {
        let mut end = start;
        while iter.peek() == Some(&(end + 1)) {
            end += 1;
            iter.next();
        }
        if end == start {
            parts.push(start.to_string());
        } else {
            parts.push(format!("{start}-{end}"));
        }
    }
    parts.join(",")
}

/// `completedIndexes` read back (below `limit`; unreadable parts skipped).
/// The ranges are merged before they are expanded, so the work is bounded
/// by the text's length and `limit`, however the ranges overlap.
pub fn parse_indexes(text: &str, limit: i32) -> BTreeSet<i32> {
    let mut ranges: Vec<(i32, i32)> = text
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .filter_map(|part| {
            let (a, b) = part.split_once('-').unwrap_or((part, part));
            let (a, b) = (a.parse::<i32>().ok()?, b.parse::<i32>().ok()?);
            let (a, b) = (a.max(0), b.min(limit.saturating_sub(1)));
            (a <= b).then_some((a, b))
        })
        .collect();
    ranges.sort_unstable();
    let mut out = BTreeSet::new();
    let mut covered_to: i64 = -1;
    for (a, b) in ranges {
        let from = i64::from(a).max(covered_to + 1);
        if from <= i64::from(b) {
            out.extend(i32::try_from(from).unwrap_or(b)..=b);
            covered_to = i64::from(b);
        }
    }
    out
}

/// Pod `index` of an Indexed Job: labelled and annotated with the index,
/// `JOB_COMPLETION_INDEX` in each container's env, hostname
/// `<job>-<index>`, named `<job>-<index>-<suffix>`.
fn indexed_pod(job: &v1::Job, template: &v1::PodTemplateSpec, index: i32) -> v1::Pod {
    let mut pod = pod_from_template(job, template);
    let name = &job.meta().name;
    let meta = pod.meta_mut();
    meta.generate_name = format!("{name}-{index}-");
    meta.annotations
        .insert(COMPLETION_INDEX.to_string(), index.to_string());
    meta.labels
        .insert(COMPLETION_INDEX.to_string(), index.to_string());
    let spec = pod.spec.get_or_insert_with(Default::default);
    spec.hostname = format!("{name}-{index}");
    for c in &mut spec.containers {
        c.env.retain(|e| e.name != COMPLETION_INDEX_ENV);
        c.env.push(v1::EnvVar {
            name: COMPLETION_INDEX_ENV.to_string(),
            value: index.to_string(),
            ..Default::default()
        });
    }
    pod
}

/// Decide what to do for `job`, given the pods of its namespace and the
/// time. Pure: the same inputs give the same actions; bad input gives
/// none.
/// `pods` may be owned pods or references to them (the runner passes its
/// cache's without copying them).
pub fn reconcile<P: Borrow<v1::Pod>>(job: &v1::Job, pods: &[P], now: SystemTime) -> Vec<Action> {
    let meta = job.meta();
    let Some(spec) = job.spec.as_ref() else {
        return Vec::new();
    };
    let Some(selector) = spec
        .selector
        .as_ref()
        .and_then(|s| LabelSelector::from_proto(s).ok())
    else {
        return Vec::new();
    };
    let Some(template) = spec.template.as_ref() else {
        return Vec::new();
    };
    if meta.uid.is_empty() || selector.is_empty() {
        return Vec::new();
    }
    let now_text = format_rfc3339(now);
    let current = job.status.clone().unwrap_or_default();
    // Indexed: the indexes that succeeded so far.
    let indexed_completions = spec
        .completions
        .filter(|_| spec.completion_mode == "Indexed");
    let mut completed = indexed_completions
        .map(|c| parse_indexes(&current.completed_indexes, c))
        .unwrap_or_default();
    let mut status = current.clone();
    let mut actions = Vec::new();
    let mine: Vec<&v1::Pod> = pods
        .iter()
        .map(Borrow::borrow)
        .filter(|p| {
            controller_of(p.meta()).is_some_and(|r| r.uid == meta.uid)
                && (p.meta().namespace.is_empty() || p.meta().namespace == meta.namespace)
        })
        .collect();

    // Tracking: record finished pods, then count those released.
    let uncounted = status
        .uncounted_terminated_pods
        .get_or_insert_with(Default::default);
    let recorded: BTreeSet<String> = uncounted
        .succeeded
        .iter()
        .chain(&uncounted.failed)
        .cloned()
        .collect();
    let by_uid = |uid: &str| mine.iter().find(|p| p.meta().uid == uid);
    // Recorded earlier, now released (finalizer gone, or the pod gone):
    // counted.
    let released = |uid: &String| by_uid(uid).is_none_or(|p| !tracked(p));
    let (done_ok, still_ok): (Vec<String>, Vec<String>) =
        uncounted.succeeded.drain(..).partition(released);
    let (done_failed, still_failed): (Vec<String>, Vec<String>) =
        uncounted.failed.drain(..).partition(released);
    uncounted.succeeded = still_ok;
    uncounted.failed = still_failed;
    let add = |n: &mut i32, k: usize| *n = n.saturating_add(i32::try_from(k).unwrap_or(i32::MAX));
    add(&mut status.succeeded, done_ok.len());
    add(&mut status.failed, done_failed.len());
    let mut running: Vec<&v1::Pod> = Vec::new();
    let mut restarts: i64 = 0;
    for p in &mine {
        let f = fate(p);
        let uid = &p.meta().uid;
        if f == Fate::Running {
            running.push(p);
            if let Some(s) = &p.status {
                restarts += s
                    .container_statuses
                    .iter()
                    .map(|c| i64::from(c.restart_count))
                    .sum::<i64>();
            }
            continue;
        }
        if !tracked(p) {
            continue;
        }
        if !recorded.contains(uid) {
            match f {
                Fate::Succeeded => {
                    uncounted.succeeded.push(uid.clone());
                    // Its index is complete, in the same status write.
                    if let (Some(c), Some(i)) = (indexed_completions, index_of(p)) {
                        if i < c {
                            completed.insert(i);
                        }
                    }
                }
                Fate::Failed => uncounted.failed.push(uid.clone()),
                _ => {}
            }
        }
        if matches!(f, Fate::Succeeded | Fate::Failed) {
            actions.push(Action::RemoveFinalizer {
                name: p.meta().name.clone(),
                uid: uid.clone(),
            });
        }
    }
    let pending_ok = uncounted.succeeded.len();
    let pending_failed = uncounted.failed.len();
    if uncounted.succeeded.is_empty() && uncounted.failed.is_empty() {
        status.uncounted_terminated_pods = None;
    }
    if indexed_completions.is_some() {
        // An index counts once, however many of its pods succeeded.
        status.succeeded = i32::try_from(completed.len()).unwrap_or(i32::MAX);
        status.completed_indexes = format_indexes(&completed);
    }
    let succeeded = if indexed_completions.is_some() {
        completed.len() as i64
    } else {
        i64::from(status.succeeded) + pending_ok as i64
    };
    let failed = i64::from(status.failed) + pending_failed as i64;
    let policy = template
        .spec
        .as_ref()
        .map_or("", |s| s.restart_policy.as_str());
    let failures = failed + if policy == "OnFailure" { restarts } else { 0 };

    let deleting_job = !meta.deletion_timestamp.is_empty();
    let suspended = spec.suspend == Some(true);
    let already_finished =
        condition_true(&current, "Complete") || condition_true(&current, "Failed");
    let mut delete_running = false;
    if !already_finished && !deleting_job {
        if !suspended && status.start_time.is_empty() {
            status.start_time = now_text.clone();
        }
        let backoff_limit = i64::from(spec.backoff_limit.unwrap_or(JOB_BACKOFF_LIMIT));
        let deadline_passed = spec.active_deadline_seconds.is_some_and(|d| {
            parse_rfc3339(&status.start_time)
                .and_then(|s| s.checked_add(Duration::from_secs(u64::try_from(d).unwrap_or(0))))
                .is_some_and(|end| end <= now)
        });
        let complete = match spec.completions {
            Some(c) => succeeded >= i64::from(c),
            None => succeeded > 0 && running.is_empty(),
        };
        if complete {
            set_condition(&mut status, "Complete", "True", "", "", &now_text);
            status.completion_time = now_text.clone();
            delete_running = true;
        } else if failures > backoff_limit {
            let msg = "Job has reached the specified backoff limit";
            set_condition(
                &mut status,
                "Failed",
                "True",
                "BackoffLimitExceeded",
                msg,
                &now_text,
            );
            delete_running = true;
        } else if deadline_passed && !suspended {
            let msg = "Job was active longer than specified deadline";
            set_condition(
                &mut status,
                "Failed",
                "True",
                "DeadlineExceeded",
                msg,
                &now_text,
            );
            delete_running = true;
        } else if suspended {
            if !condition_true(&status, "Suspended") {
                set_condition(
                    &mut status,
                    "Suspended",
                    "True",
                    "JobSuspended",
                    "Job suspended",
                    &now_text,
                );
            }
            // Resumed, the deadline counts from then.
            status.start_time.clear();
            delete_running = true;
        } else {
            if condition_true(&status, "Suspended") {
                set_condition(
                    &mut status,
                    "Suspended",
                    "False",
                    "JobResumed",
                    "Job resumed",
                    &now_text,
                );
            }
            let parallelism = i64::from(spec.parallelism.unwrap_or(1).max(0));
            // After failures, a new pod waits out Kubernetes' back-off.
            let backing_off =
                policy == "Never" && failure_backoff_until(&mine).is_some_and(|until| until > now);
            if let Some(c) = indexed_completions {
                actions.extend(indexed_pods(
                    job,
                    template,
                    &running,
                    &completed,
                    c,
                    parallelism,
                    backing_off,
                ));
            } else {
                let have = running.len() as i64;
                let want = match spec.completions {
                    Some(c) => parallelism.min((i64::from(c) - succeeded).max(0)),
                    // A work queue: once one succeeded, no new pod, and the
                    // others finish their work.
                    None if succeeded > 0 => have,
                    None => parallelism,
                };
                if want > have && !backing_off {
                    let n = usize::try_from(want - have).unwrap_or(0).min(BURST_PODS);
                    let pod = pod_from_template(job, template);
                    actions.extend(std::iter::repeat_n(Action::CreatePod(Box::new(pod)), n));
                } else if have > want {
                    // The newest first.
                    let mut victims = running.clone();
                    victims.sort_by(|a, b| {
                        (&b.meta().creation_timestamp, &b.meta().name)
                            .cmp(&(&a.meta().creation_timestamp, &a.meta().name))
                    });
                    let n = usize::try_from(have - want).unwrap_or(0).min(BURST_PODS);
                    actions.extend(victims.into_iter().take(n).map(|p| Action::DeletePod {
                        name: p.meta().name.clone(),
                    }));
                }
            }
        }
    } else if already_finished {
        delete_running = true;
    }
    if delete_running {
        actions.extend(running.iter().take(BURST_PODS).map(|p| Action::DeletePod {
            name: p.meta().name.clone(),
        }));
    }
    status.active = i32::try_from(running.len()).unwrap_or(i32::MAX);
    status.ready = Some(i32::try_from(running.iter().filter(|p| is_ready(p)).count()).unwrap_or(0));
    status.terminating = Some(
        i32::try_from(
            mine.iter()
                .filter(|p| !p.meta().deletion_timestamp.is_empty() && fate(p) != Fate::Gone)
                .count(),
        )
        .unwrap_or(0),
    );
    // TTL after finishing.
    if finished_at(&status).is_some_and(|t| {
        spec.ttl_seconds_after_finished.is_some_and(|ttl| {
            t.checked_add(Duration::from_secs(u64::try_from(ttl).unwrap_or(0)))
                .is_some_and(|end| end <= now)
        })
    }) && !deleting_job
    {
        actions.push(Action::DeleteJob);
    }
    if status != current {
        actions.insert(0, Action::UpdateStatus(status));
    }
    actions
}

/// An Indexed Job's pod writes: running pods without a valid index, of an
/// index already complete, or a second one of an index go; the lowest
/// indexes with neither a success nor a running pod get one, up to
/// `parallelism` running (none while `backing_off`); beyond `parallelism`
/// the highest indexes go.
fn indexed_pods(
    job: &v1::Job,
    template: &v1::PodTemplateSpec,
    running: &[&v1::Pod],
    completed: &BTreeSet<i32>,
    completions: i32,
    parallelism: i64,
    backing_off: bool,
) -> Vec<Action> {
    let delete = |p: &v1::Pod| Action::DeletePod {
        name: p.meta().name.clone(),
    };
    let mut actions = Vec::new();
    let mut by_index: BTreeMap<i32, Vec<&v1::Pod>> = BTreeMap::new();
    for p in running {
        match index_of(p).filter(|i| *i < completions && !completed.contains(i)) {
            Some(i) => by_index.entry(i).or_default().push(p),
            None => actions.push(delete(p)),
        }
    }
    for pods in by_index.values_mut() {
        // The oldest stays.
        pods.sort_by(|a, b| {
            (&a.meta().creation_timestamp, &a.meta().name)
                .cmp(&(&b.meta().creation_timestamp, &b.meta().name))
        });
        actions.extend(pods.iter().skip(1).map(|p| delete(p)));
    }
    let active = by_index.len() as i64;
    let left = i64::from(completions) - completed.len() as i64;
    let want = parallelism.min(left.max(0));
    if want > active && !backing_off {
        let n = usize::try_from(want - active).unwrap_or(0).min(BURST_PODS);
        actions.extend(
            (0..completions)
                .filter(|i| !completed.contains(i) && !by_index.contains_key(i))
                .take(n)
                .map(|i| Action::CreatePod(Box::new(indexed_pod(job, template, i)))),
        );
    } else if active > want {
        let n = usize::try_from(active - want).unwrap_or(0).min(BURST_PODS);
        actions.extend(
            by_index
                .values()
                .rev()
                .take(n)
                .filter_map(|pods| pods.first().map(|p| delete(p))),
        );
    }
    actions
}

/// The first delay before a pod replaces a failed one; it doubles with
/// each failure since the last success, up to [`BACKOFF_MAX`]
/// (Kubernetes' `DefaultJobPodFailureBackOff`, `MaxJobPodFailureBackOff`).
pub const BACKOFF_BASE: Duration = Duration::from_secs(10);
pub const BACKOFF_MAX: Duration = Duration::from_secs(600);

/// When the pod's containers last finished, if it says.
fn finished_at_of(p: &v1::Pod) -> Option<SystemTime> {
    p.status
        .as_ref()?
        .container_statuses
        .iter()
        .filter_map(|c| c.state.as_ref()?.terminated.as_ref())
        .filter_map(|t| parse_rfc3339(&t.finished_at))
        .max()
}

/// Until when a new pod waits after the failures since the last success
/// (None: no failure to wait for): the last failure's time plus
/// `BACKOFF_BASE * 2^(failures - 1)`, at most `BACKOFF_MAX`. Failures
/// are the failed pods still there whose finish time is readable.
fn failure_backoff_until(pods: &[&v1::Pod]) -> Option<SystemTime> {
    let last_success = pods
        .iter()
        .filter(|p| phase(p) == "Succeeded")
        .filter_map(|p| finished_at_of(p))
        .max();
    let failures: Vec<SystemTime> = pods
        .iter()
        .filter(|p| phase(p) == "Failed")
        .filter_map(|p| finished_at_of(p))
        .filter(|t| last_success.is_none_or(|s| *t > s))
        .collect();
    let last = failures.iter().max()?;
    let doublings = u32::try_from(failures.len() - 1)
        .unwrap_or(u32::MAX)
        .min(16);
    let delay = BACKOFF_BASE
        .checked_mul(1u32 << doublings)
        .unwrap_or(BACKOFF_MAX)
        .min(BACKOFF_MAX);
    last.checked_add(delay)
}

/// When the Job finished (its Complete or Failed condition's transition).
pub fn finished_at(s: &v1::JobStatus) -> Option<SystemTime> {
    s.conditions
        .iter()
        .find(|c| (c.r#type == "Complete" || c.r#type == "Failed") && c.status == "True")
        .and_then(|c| parse_rfc3339(&c.last_transition_time))
}

/// When the Job next needs a look without any change to its pods: its
/// deadline or its TTL (None: only changes matter).
pub fn next_due(job: &v1::Job) -> Option<SystemTime> {
    let spec = job.spec.as_ref()?;
    let status = job.status.as_ref()?;
    if let Some(t) = finished_at(status) {
        let ttl = spec.ttl_seconds_after_finished?;
        return t.checked_add(Duration::from_secs(u64::try_from(ttl).ok()?));
    }
    let d = spec.active_deadline_seconds?;
    parse_rfc3339(&status.start_time)?.checked_add(Duration::from_secs(u64::try_from(d).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NO_PODS: &[v1::Pod] = &[];
    use serde_json::json;

    const T0: u64 = 1_700_000_000;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(T0 + secs)
    }

    fn job(spec: serde_json::Value) -> v1::Job {
        let mut j: v1::Job = serde_json::from_value(json!({
            "metadata": {"name": "pi", "namespace": "default", "uid": "job-uid"},
            "spec": spec
        }))
        .expect("job");
        let s = j.spec.get_or_insert_with(Default::default);
        s.selector = Some(v1::LabelSelector {
            match_labels: [(
                "batch.kubernetes.io/controller-uid".to_string(),
                "job-uid".to_string(),
            )]
            .into(),
            ..Default::default()
        });
        s.template = Some(
            serde_json::from_value(json!({
                "metadata": {"labels": {"batch.kubernetes.io/controller-uid": "job-uid"}},
                "spec": {"restartPolicy": s.template.as_ref()
                    .and_then(|t| t.spec.as_ref()).map(|p| p.restart_policy.clone())
                    .filter(|p| !p.is_empty()).unwrap_or_else(|| "Never".into()),
                         "containers": [{"name": "c", "image": "busybox"}]}
            }))
            .expect("template"),
        );
        j
    }

    fn pod(name: &str, phase: &str, tracked: bool) -> v1::Pod {
        let mut p: v1::Pod = serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}"),
                         "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": "pi",
                                              "uid": "job-uid", "controller": true}]},
            "status": {"phase": phase}
        }))
        .expect("pod");
        if tracked {
            p.meta_mut().finalizers.push(TRACKING_FINALIZER.into());
        }
        p
    }

    /// Actions as short lines.
    fn lines(actions: &[Action]) -> Vec<String> {
        actions
            .iter()
            .map(|a| match a {
                Action::UpdateStatus(s) => {
                    let u = s.uncounted_terminated_pods.clone().unwrap_or_default();
                    let conds: Vec<String> = s
                        .conditions
                        .iter()
                        .filter(|c| c.status == "True")
                        .map(|c| format!("{}:{}", c.r#type, c.reason))
                        .collect();
                    format!(
                        "status active={} succeeded={} failed={} uncounted={:?}/{:?} {}",
                        s.active,
                        s.succeeded,
                        s.failed,
                        u.succeeded,
                        u.failed,
                        conds.join(",")
                    )
                }
                Action::CreatePod(p) => format!(
                    "create {} finalizers={:?}",
                    p.meta().generate_name,
                    p.meta().finalizers
                ),
                Action::DeletePod { name } => format!("delete {name}"),
                Action::RemoveFinalizer { name, .. } => format!("release {name}"),
                Action::DeleteJob => "delete job".into(),
            })
            .collect()
    }

    fn with_status(mut j: v1::Job, actions: &[Action]) -> v1::Job {
        for a in actions {
            if let Action::UpdateStatus(s) = a {
                j.status = Some(s.clone());
            }
        }
        j
    }

    /// A pod that ended at `at(secs)`.
    fn ended(name: &str, phase: &str, secs: u64) -> v1::Pod {
        let mut p = pod(name, phase, false);
        p.status = Some(
            serde_json::from_value(json!({"phase": phase, "containerStatuses": [{"name": "c",
                "state": {"terminated": {"exitCode": if phase == "Failed" { 1 } else { 0 },
                                         "finishedAt": format_rfc3339(at(secs))}}}]}))
            .expect("status"),
        );
        p
    }

    #[test]
    fn failed_pods_are_replaced_after_a_doubling_back_off() {
        let j = job(json!({"completions": 2, "parallelism": 1, "backoffLimit": 6}));
        let creates = |pods: &[v1::Pod], secs: u64| {
            reconcile(&j, pods, at(secs))
                .iter()
                .filter(|a| matches!(a, Action::CreatePod(_)))
                .count()
        };
        let one = [ended("a", "Failed", 100)];
        assert_eq!(creates(&one, 105), 0, "10 s after the first failure");
        assert_eq!(creates(&one, 111), 1);
        let two = [ended("a", "Failed", 100), ended("b", "Failed", 120)];
        assert_eq!(creates(&two, 135), 0, "20 s after the second");
        assert_eq!(creates(&two, 141), 1);
        // A success since: the count starts again.
        let mixed = [
            ended("a", "Failed", 100),
            ended("b", "Succeeded", 110),
            ended("c", "Failed", 120),
        ];
        assert_eq!(creates(&mixed, 125), 0);
        assert_eq!(creates(&mixed, 131), 1);
        // Capped at ten minutes.
        let many: Vec<v1::Pod> = (0..12)
            .map(|i| ended(&format!("f{i}"), "Failed", 100 + i))
            .collect();
        assert_eq!(creates(&many, 111 + 599), 0);
        assert_eq!(creates(&many, 111 + 601), 1);
    }

    #[test]
    fn runs_parallelism_pods_until_completions_succeed() {
        let j = job(json!({"completions": 3, "parallelism": 2}));
        let a = reconcile(&j, NO_PODS, at(0));
        assert_eq!(
            lines(&a),
            [
                "status active=0 succeeded=0 failed=0 uncounted=[]/[] ",
                "create pi- finalizers=[\"batch.kubernetes.io/job-tracking\"]",
                "create pi- finalizers=[\"batch.kubernetes.io/job-tracking\"]",
            ]
        );
        let j = with_status(j, &a);
        assert_eq!(
            j.status.as_ref().map(|s| s.start_time.clone()),
            Some(format_rfc3339(at(0)))
        );
        // One succeeded: recorded first (its finalizer released in the
        // same round, after the status), one more pod for the third.
        let pods = vec![pod("a", "Succeeded", true), pod("b", "Running", true)];
        let a = reconcile(&j, &pods, at(1));
        assert_eq!(
            lines(&a),
            [
                "status active=1 succeeded=0 failed=0 uncounted=[\"uid-a\"]/[] ",
                "release a",
                "create pi- finalizers=[\"batch.kubernetes.io/job-tracking\"]",
            ]
        );
        let j = with_status(j, &a);
        // The finalizer went: counted. The pod may even be gone already.
        let pods = vec![pod("b", "Succeeded", true), pod("c", "Running", true)];
        let a = reconcile(&j, &pods, at(2));
        assert_eq!(
            lines(&a),
            [
                "status active=1 succeeded=1 failed=0 uncounted=[\"uid-b\"]/[] ",
                "release b",
            ]
        );
        let j = with_status(j, &a);
        let pods = vec![pod("b", "Succeeded", false), pod("c", "Succeeded", true)];
        let a = reconcile(&j, &pods, at(3));
        assert_eq!(
            lines(&a),
            [
                "status active=0 succeeded=2 failed=0 uncounted=[\"uid-c\"]/[] Complete:",
                "release c",
            ]
        );
        let j = with_status(j, &a);
        assert_eq!(
            j.status.as_ref().map(|s| s.completion_time.clone()),
            Some(format_rfc3339(at(3)))
        );
        let pods = vec![pod("b", "Succeeded", false), pod("c", "Succeeded", false)];
        let a = reconcile(&j, &pods, at(4));
        assert_eq!(
            lines(&a),
            ["status active=0 succeeded=3 failed=0 uncounted=[]/[] Complete:"]
        );
        let j = with_status(j, &a);
        assert_eq!(reconcile(&j, &pods, at(5)), []);
    }

    #[test]
    fn a_stale_cache_never_runs_more_successes_than_completions() {
        // completions 1: a pod succeeded and was recorded; the cache still
        // shows it Running (stale) or lost it: no second pod is created
        // while the success is pending in the status.
        let creates = |a: &[Action]| {
            a.iter()
                .filter(|a| matches!(a, Action::CreatePod(_)))
                .count()
        };
        let j = job(json!({"completions": 2}));
        let a = reconcile(&j, NO_PODS, at(0));
        assert_eq!(creates(&a), 1);
        let j = with_status(j, &a);
        let a = reconcile(&j, &[pod("a", "Succeeded", true)], at(1));
        assert_eq!(creates(&a), 1, "the second of two");
        let j = with_status(j, &a);
        // The cache lags: it shows a still running and not the new pod.
        let stale = vec![pod("a", "Running", true)];
        assert_eq!(creates(&reconcile(&j, &stale, at(2))), 0);
        // It shows a released and the second pod succeeded: complete, and
        // never a third pod.
        let a = reconcile(
            &j,
            &[pod("a", "Succeeded", false), pod("b", "Succeeded", true)],
            at(3),
        );
        assert_eq!(creates(&a), 0);
        assert!(lines(&a)[0].ends_with("Complete:"), "{:?}", lines(&a));
    }

    #[test]
    fn failures_past_the_backoff_limit_fail_the_job() {
        let j = job(json!({"completions": 2, "parallelism": 2, "backoffLimit": 1}));
        let j = with_status(j.clone(), &reconcile(&j, NO_PODS, at(0)));
        let pods = vec![pod("a", "Failed", true), pod("b", "Running", true)];
        let a = reconcile(&j, &pods, at(1));
        // One failure: a replacement.
        assert_eq!(
            lines(&a),
            [
                "status active=1 succeeded=0 failed=0 uncounted=[]/[\"uid-a\"] ",
                "release a",
                "create pi- finalizers=[\"batch.kubernetes.io/job-tracking\"]",
            ]
        );
        let j = with_status(j, &a);
        let pods = vec![pod("b", "Running", true), pod("c", "Failed", true)];
        let a = reconcile(&j, &pods, at(2));
        assert_eq!(
            lines(&a),
            [
                "status active=1 succeeded=0 failed=1 uncounted=[]/[\"uid-c\"] Failed:BackoffLimitExceeded",
                "release c",
                "delete b",
            ]
        );
        // OnFailure: container restarts count.
        let j = job(
            json!({"completions": 1, "backoffLimit": 2, "template": {"spec": {"restartPolicy": "OnFailure"}}}),
        );
        let j = with_status(j.clone(), &reconcile(&j, NO_PODS, at(0)));
        let mut p = pod("a", "Running", true);
        if let Some(s) = p.status.as_mut() {
            s.container_statuses.push(v1::ContainerStatus {
                name: "c".into(),
                restart_count: 3,
                ..Default::default()
            });
        }
        let a = reconcile(&j, &[p], at(1));
        assert_eq!(
            lines(&a),
            [
                "status active=1 succeeded=0 failed=0 uncounted=[]/[] Failed:BackoffLimitExceeded",
                "delete a",
            ]
        );
    }

    #[test]
    fn deadlines_suspension_work_queues_and_ttl() {
        let j = job(json!({"completions": 1, "activeDeadlineSeconds": 10}));
        let j = with_status(j.clone(), &reconcile(&j, NO_PODS, at(0)));
        assert_eq!(next_due(&j), Some(at(10)));
        let running = vec![pod("a", "Running", true)];
        assert_eq!(
            reconcile(&j, &running, at(9))
                .iter()
                .filter(|a| matches!(a, Action::DeletePod { .. }))
                .count(),
            0
        );
        assert_eq!(
            lines(&reconcile(&j, &running, at(10))),
            [
                "status active=1 succeeded=0 failed=0 uncounted=[]/[] Failed:DeadlineExceeded",
                "delete a",
            ]
        );
        // Suspended: running pods go, none created.
        let j = job(json!({"completions": 2, "suspend": true}));
        assert_eq!(
            lines(&reconcile(&j, &running, at(0))),
            [
                "status active=1 succeeded=0 failed=0 uncounted=[]/[] Suspended:JobSuspended",
                "delete a",
            ]
        );
        // A work queue: parallel pods until one succeeds, then no new one;
        // complete when none runs.
        let j = job(json!({"parallelism": 3}));
        let a = reconcile(&j, NO_PODS, at(0));
        assert_eq!(
            a.iter()
                .filter(|a| matches!(a, Action::CreatePod(_)))
                .count(),
            3
        );
        let j = with_status(j, &a);
        let pods = vec![pod("a", "Succeeded", false), pod("b", "Running", true)];
        let j = with_status(
            j.clone(),
            &reconcile(
                &j,
                &[pod("a", "Succeeded", true), pod("b", "Running", true)],
                at(1),
            ),
        );
        let a = reconcile(&j, &pods, at(2));
        assert!(
            !a.iter()
                .any(|a| matches!(a, Action::CreatePod(_) | Action::DeletePod { .. })),
            "the others finish: {:?}",
            lines(&a)
        );
        let j = with_status(j, &a);
        let a = reconcile(
            &j,
            &[pod("a", "Succeeded", false), pod("b", "Succeeded", true)],
            at(3),
        );
        assert!(lines(&a)[0].ends_with("Complete:"), "{:?}", lines(&a));
        // TTL: deleted that long after it finished.
        let j = job(json!({"completions": 1, "ttlSecondsAfterFinished": 5}));
        let j = with_status(
            j.clone(),
            &reconcile(&j, &[pod("a", "Succeeded", true)], at(0)),
        );
        let j = with_status(j.clone(), &reconcile(&j, NO_PODS, at(0)));
        assert!(finished(&j));
        assert_eq!(next_due(&j), Some(at(5)));
        assert_eq!(reconcile(&j, NO_PODS, at(4)), []);
        assert_eq!(lines(&reconcile(&j, NO_PODS, at(5))), ["delete job"]);
    }

    #[test]
    fn a_tracked_pod_deleted_before_it_finished_is_a_failure() {
        let j = job(json!({"completions": 1}));
        let j = with_status(j.clone(), &reconcile(&j, NO_PODS, at(0)));
        let mut p = pod("a", "Running", true);
        p.meta_mut().deletion_timestamp = format_rfc3339(at(1));
        let a = reconcile(&j, &[p], at(1));
        assert_eq!(
            lines(&a),
            [
                "status active=0 succeeded=0 failed=0 uncounted=[]/[\"uid-a\"] ",
                "release a",
                "create pi- finalizers=[\"batch.kubernetes.io/job-tracking\"]",
            ]
        );
        // Bad input: nothing.
        assert_eq!(reconcile(&v1::Job::default(), NO_PODS, at(0)), []);
    }

    /// Pod `name` of index `i` in `phase`, tracked.
    fn at_index(name: &str, i: i32, phase: &str) -> v1::Pod {
        let mut p = pod(name, phase, true);
        p.meta_mut()
            .annotations
            .insert(COMPLETION_INDEX.into(), i.to_string());
        p
    }

    fn created_indexes(a: &[Action]) -> Vec<String> {
        a.iter()
            .filter_map(|a| match a {
                Action::CreatePod(p) => p.meta().annotations.get(COMPLETION_INDEX).cloned(),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn indexed_jobs_run_each_index_once() {
        let j = job(json!({"completions": 5, "parallelism": 2, "completionMode": "Indexed"}));
        // The lowest two indexes first, each pod with its identity.
        let a = reconcile(&j, NO_PODS, at(0));
        assert_eq!(created_indexes(&a), ["0", "1"]);
        let p = a
            .iter()
            .find_map(|a| match a {
                Action::CreatePod(p) => Some(p.clone()),
                _ => None,
            })
            .expect("a pod");
        assert_eq!(p.meta().generate_name, "pi-0-");
        assert_eq!(p.meta().labels[COMPLETION_INDEX], "0");
        let spec = p.spec.clone().unwrap_or_default();
        assert_eq!(spec.hostname, "pi-0");
        assert!(spec.containers[0]
            .env
            .iter()
            .any(|e| e.name == COMPLETION_INDEX_ENV && e.value == "0"));
        assert!(p
            .meta()
            .finalizers
            .contains(&TRACKING_FINALIZER.to_string()));

        // Index 1 succeeded (twice: a duplicate pod), index 0 failed: the
        // index counts once, in the same write that records the pods.
        let mut failed = ended("a", "Failed", 1);
        failed.meta_mut().finalizers.push(TRACKING_FINALIZER.into());
        failed
            .meta_mut()
            .annotations
            .insert(COMPLETION_INDEX.into(), "0".into());
        let pods = [
            failed,
            at_index("b", 1, "Succeeded"),
            at_index("b2", 1, "Succeeded"),
        ];
        let a = reconcile(&j, &pods, at(1));
        let st = match &a[0] {
            Action::UpdateStatus(s) => s.clone(),
            other => panic!("status first: {other:?}"),
        };
        assert_eq!((st.succeeded, st.completed_indexes.as_str()), (1, "1"));
        // Index 0 waits out the back-off; once it passed, 0 and 2 run.
        assert!(created_indexes(&a).is_empty(), "{:?}", lines(&a));
        let j = with_status(j, &a);
        let released = [
            pod("a", "Failed", false),
            pod("b", "Succeeded", false),
            pod("b2", "Succeeded", false),
        ];
        let a = reconcile(&j, &released, at(100));
        assert_eq!(created_indexes(&a), ["0", "2"]);
        let j = with_status(j, &a);
        let st = j.status.clone().unwrap_or_default();
        assert_eq!((st.succeeded, st.failed), (1, 1));

        // A second running pod of one index and a pod of a completed index
        // go; the rest succeed and the Job completes at 5 indexes.
        let pods = [
            at_index("c", 0, "Running"),
            at_index("c2", 0, "Running"),
            at_index("d", 1, "Running"),
        ];
        let deleted: Vec<String> = reconcile(&j, &pods, at(101))
            .iter()
            .filter_map(|a| match a {
                Action::DeletePod { name } => Some(name.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(deleted, ["d", "c2"]);
        let done: Vec<v1::Pod> = [0, 2, 3, 4]
            .iter()
            .map(|i| at_index(&format!("e{i}"), *i, "Succeeded"))
            .collect();
        let a = reconcile(&j, &done, at(102));
        let st = with_status(j, &a).status.unwrap_or_default();
        assert_eq!(st.completed_indexes, "0-4");
        assert_eq!(st.succeeded, 5);
        assert!(
            st.conditions
                .iter()
                .any(|c| c.r#type == "Complete" && c.status == "True"),
            "{:?}",
            lines(&a)
        );
    }

    #[test]
    fn completed_indexes_round_trip_as_kubernetes_writes_them() {
        let set: BTreeSet<i32> = [0, 1, 2, 4, 5, 7].into();
        assert_eq!(format_indexes(&set), "0-2,4-5,7");
        assert_eq!(parse_indexes("0-2,4-5,7", 10), set);
        assert_eq!(format_indexes(&BTreeSet::new()), "");
        // Beyond completions, reversed or unreadable parts are dropped.
        assert_eq!(parse_indexes("3-1,x,8-12", 10), [8, 9].into());
        // Overlapping ranges are merged before they are expanded, so a
        // large hostile status is one pass (expanded part by part it would
        // be 10^10 inserts).
        let hostile = vec!["0-99999"; 100_000].join(",");
        assert_eq!(parse_indexes(&hostile, 100_000).len(), 100_000);
        assert_eq!(parse_indexes("5-9,0-7,2-3", 100), (0..=9).collect());
    }
}
