//! The CronJob controller, after Kubernetes' `cronjob_controllerv2.go`.
//!
//! [`reconcile`] compares a CronJob with its Jobs (those whose controller
//! ownerReference carries its uid) at a time `now` and returns a [`Plan`]:
//!
//! - **Status**: `active` holds the Jobs that have not finished: a Job of
//!   the CronJob that finished leaves it (a successful one moves
//!   `lastSuccessfulTime`), an unfinished Job of the CronJob missing from it
//!   joins it (the controller died between creating it and recording it). A
//!   Job in `active` that the cache does not show is kept and named in
//!   [`Plan::verify`], for the runner to read live (a cache may lag).
//! - **Schedule**: the run due is the latest schedule time after
//!   `lastScheduleTime` (or the creation) and at or before `now`; earlier
//!   missed times are skipped, as Kubernetes does (more than 100 are
//!   reported as `TooManyMissedTimes`). With `startingDeadlineSeconds`, a
//!   time older than that is missed (`MissSchedule`), not run.
//! - **One run per schedule time**: a run's Job is named
//!   `<cronjob>-<schedule time in minutes since the epoch>`, so creating
//!   it twice (two leaders, or a leader that died between creating it and
//!   recording `lastScheduleTime`) fails with AlreadyExists instead of
//!   running it again; a Job of that name already in the cache only moves
//!   `lastScheduleTime`.
//! - **concurrencyPolicy**: `Allow` runs regardless; `Forbid` skips the run
//!   while a Job is active (it starts once none is, if still within the
//!   starting deadline); `Replace` deletes the active Jobs, then runs.
//! - **suspend** stops new runs; a CronJob being deleted starts none.
//! - **History**: finished Jobs beyond `successfulJobsHistoryLimit` and
//!   `failedJobsHistoryLimit` are deleted, the oldest first.

use std::borrow::Borrow;
use std::time::{Duration, SystemTime};

use keelson_model::cron::Schedule;
use keelson_model::time::{format_rfc3339, parse_rfc3339};
use keelson_model::{controller_of, Kind, Resource};
use keelson_proto::v1;

/// The annotation on a CronJob's Job: its schedule time, RFC 3339 in the
/// CronJob's time zone.
pub const SCHEDULED_TIMESTAMP: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";
/// Missed schedule times beyond which Kubernetes warns.
pub const TOO_MANY_MISSED: usize = 100;

/// A run to start: the Job to create (named for its schedule time) and
/// that time, recorded as `lastScheduleTime` once the Job exists.
#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    pub job: Box<v1::Job>,
    pub scheduled: SystemTime,
}

/// An event to record on the CronJob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub warning: bool,
    pub reason: &'static str,
    pub message: String,
}

/// What to do for one CronJob, in this order: verify, delete the Jobs
/// `replace`d, start `run` (adding it to `status.active` and setting
/// `lastScheduleTime`), write `status` if it differs from the current
/// one, then delete the `expired` history.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    /// The status from the Jobs seen (before the run, if any).
    pub status: v1::CronJobStatus,
    /// Active Jobs the cache does not show: read them live; those gone
    /// leave `status.active`.
    pub verify: Vec<v1::ObjectReference>,
    /// Active Jobs to delete before the run (`Replace`).
    pub replace: Vec<v1::ObjectReference>,
    pub run: Option<Run>,
    /// Finished Jobs beyond the history limits.
    pub expired: Vec<v1::ObjectReference>,
    pub notes: Vec<Note>,
    /// When the next schedule time comes (None: never, or not scheduling).
    pub next: Option<SystemTime>,
}

/// A Job's end: `Complete` or `Failed` and when.
fn finished(j: &v1::Job) -> Option<(bool, SystemTime)> {
    let s = j.status.as_ref()?;
    let c = s
        .conditions
        .iter()
        .find(|c| (c.r#type == "Complete" || c.r#type == "Failed") && c.status == "True")?;
    let ok = c.r#type == "Complete";
    let at = parse_rfc3339(&s.completion_time)
        .filter(|_| ok)
        .or_else(|| parse_rfc3339(&c.last_transition_time))
        .unwrap_or(SystemTime::UNIX_EPOCH);
    Some((ok, at))
}

/// An ObjectReference to the Job, as `status.active` holds them.
pub fn reference(j: &v1::Job) -> v1::ObjectReference {
    let m = j.meta();
    v1::ObjectReference {
        api_version: Kind::Job.api_version().to_string(),
        kind: Kind::Job.name().to_string(),
        namespace: m.namespace.clone(),
        name: m.name.clone(),
        uid: m.uid.clone(),
        resource_version: m.resource_version.clone(),
        field_path: String::new(),
    }
}

/// The name of the CronJob's Job for schedule time `t`: Kubernetes'
/// `<name>-<minutes since the epoch>`.
pub fn job_name(cron_job: &str, t: SystemTime) -> String {
    let minutes = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
        / 60;
    format!("{cron_job}-{minutes}")
}

/// The Job for the run at `t`: the template's labels, annotations and
/// spec, the scheduled-timestamp annotation, a controller ownerReference.
pub fn job_for(cj: &v1::CronJob, schedule: &Schedule, t: SystemTime) -> v1::Job {
    let m = cj.meta();
    let template = cj
        .spec
        .as_ref()
        .and_then(|s| s.job_template.clone())
        .unwrap_or_default();
    let tm = template.metadata.unwrap_or_default();
    let mut annotations = tm.annotations;
    annotations.insert(SCHEDULED_TIMESTAMP.to_string(), schedule.format_local(t));
    v1::Job {
        api_version: Kind::Job.api_version().to_string(),
        kind: Kind::Job.name().to_string(),
        metadata: Some(v1::ObjectMeta {
            name: job_name(&m.name, t),
            namespace: m.namespace.clone(),
            labels: tm.labels,
            annotations,
            owner_references: vec![keelson_model::controller_reference(cj)],
            ..Default::default()
        }),
        spec: template.spec,
        status: None,
    }
}

/// Decide what to do for `cj` given the Jobs of its namespace and the
/// time. Pure; bad input (no spec, an unreadable schedule) gives a plan
/// that only keeps the status and says why.
/// `jobs` may be owned Jobs or references to them.
pub fn reconcile<J: Borrow<v1::Job>>(cj: &v1::CronJob, jobs: &[J], now: SystemTime) -> Plan {
    let m = cj.meta();
    let mut plan = Plan {
        status: cj.status.clone().unwrap_or_default(),
        ..Plan::default()
    };
    let Some(spec) = cj.spec.as_ref() else {
        return plan;
    };
    if m.uid.is_empty() {
        return plan;
    }
    let mine: Vec<&v1::Job> = jobs
        .iter()
        .map(Borrow::borrow)
        .filter(|j| {
            controller_of(j.meta()).is_some_and(|r| r.uid == m.uid)
                && j.meta().namespace == m.namespace
        })
        .collect();

    // The status from the Jobs seen.
    let status = &mut plan.status;
    let mut active = Vec::new();
    for r in std::mem::take(&mut status.active) {
        match mine.iter().find(|j| j.meta().uid == r.uid) {
            Some(j) if finished(j).is_some() => {}
            Some(_) => active.push(r),
            None => {
                // Not in the cache: kept until read live.
                plan.verify.push(r.clone());
                active.push(r);
            }
        }
    }
    for j in &mine {
        let done = finished(j);
        if done.is_none()
            && j.meta().deletion_timestamp.is_empty()
            && !active.iter().any(|r| r.uid == j.meta().uid)
        {
            active.push(reference(j));
        }
        if let Some((true, at)) = done {
            if parse_rfc3339(&status.last_successful_time).is_none_or(|last| at > last) {
                status.last_successful_time = format_rfc3339(at);
            }
        }
    }
    active.sort_by(|a, b| a.name.cmp(&b.name));
    status.active = active;

    // History: the oldest finished Jobs beyond the limits.
    let mut history = |ok: bool, limit: Option<i32>| {
        let Some(limit) = limit else { return };
        let mut done: Vec<(SystemTime, &v1::Job)> = mine
            .iter()
            .filter(|j| j.meta().deletion_timestamp.is_empty())
            .filter_map(|j| {
                finished(j)
                    .filter(|(o, _)| *o == ok)
                    .map(|(_, at)| (at, *j))
            })
            .collect();
        done.sort_by(|a, b| (a.0, &a.1.meta().name).cmp(&(b.0, &b.1.meta().name)));
        let keep = usize::try_from(limit.max(0)).unwrap_or(0);
        let n = done.len().saturating_sub(keep);
        plan.expired
            .extend(done.into_iter().take(n).map(|(_, j)| reference(j)));
    };
    history(true, spec.successful_jobs_history_limit);
    history(false, spec.failed_jobs_history_limit);

    if !m.deletion_timestamp.is_empty() || spec.suspend == Some(true) {
        return plan;
    }
    let tz = spec.time_zone.as_deref().unwrap_or("");
    let schedule = match Schedule::parse(&spec.schedule, tz) {
        Ok(s) => s,
        Err(why) => {
            let reason = if why.contains("time zone") {
                "UnknownTimeZone"
            } else {
                "InvalidSchedule"
            };
            plan.notes.push(Note {
                warning: true,
                reason,
                message: format!("invalid schedule: {} : {why}", spec.schedule),
            });
            return plan;
        }
    };
    plan.next = schedule.next_after(now);
    let created = parse_rfc3339(&m.creation_timestamp).unwrap_or(now);
    let mut earliest = parse_rfc3339(&plan.status.last_schedule_time).unwrap_or(created);
    let deadline = spec
        .starting_deadline_seconds
        .map(|d| Duration::from_secs(u64::try_from(d).unwrap_or(0)));
    if let Some(d) = deadline {
        if let Some(from) = now.checked_sub(d) {
            earliest = earliest.max(from);
        }
    }
    let (due, too_many) = schedule.most_recent(earliest, now, TOO_MANY_MISSED);
    let Some(t) = due else {
        return plan;
    };
    if too_many {
        plan.notes.push(Note {
            warning: true,
            reason: "TooManyMissedTimes",
            message: format!(
                "too many missed start times: more than {TOO_MANY_MISSED}. Set or decrease \
                 .spec.startingDeadlineSeconds or check clock skew"
            ),
        });
    }
    let name = job_name(&m.name, t);
    if mine.iter().any(|j| j.meta().name == name) {
        // Started already (the record of it was lost): only record it.
        plan.status.last_schedule_time = format_rfc3339(t);
        return plan;
    }
    if deadline.is_some_and(|d| t.checked_add(d).is_some_and(|end| end < now)) {
        plan.notes.push(Note {
            warning: true,
            reason: "MissSchedule",
            message: format!(
                "Missed scheduled time to start a job: {}",
                schedule.format_local(t)
            ),
        });
        return plan;
    }
    let running = !plan.status.active.is_empty();
    match spec.concurrency_policy.as_str() {
        "Forbid" if running => {
            plan.notes.push(Note {
                warning: false,
                reason: "JobAlreadyActive",
                message: "Not starting job because prior execution is running and \
                          concurrency policy is Forbid"
                    .into(),
            });
            return plan;
        }
        "Replace" => plan.replace = plan.status.active.clone(),
        _ => {}
    }
    plan.run = Some(Run {
        job: Box::new(job_for(cj, &schedule, t)),
        scheduled: t,
    });
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    const NO_JOBS: &[v1::Job] = &[];
    use keelson_model::time::format_rfc3339;
    use serde_json::json;

    /// 2026-01-01T10:00:00Z.
    const T0: u64 = 1_767_261_600;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(T0 + secs)
    }

    fn cron(spec: serde_json::Value, status: serde_json::Value) -> v1::CronJob {
        let mut spec = spec;
        spec["jobTemplate"] = json!({"metadata": {"labels": {"app": "report"}},
            "spec": {"template": {"spec": {"restartPolicy": "Never",
                     "containers": [{"name": "c", "image": "busybox"}]}}}});
        serde_json::from_value(json!({
            "metadata": {"name": "report", "namespace": "default", "uid": "cj-uid",
                         "creationTimestamp": format_rfc3339(at(0))},
            "spec": spec,
            "status": status
        }))
        .expect("cronjob")
    }

    /// A Job of the CronJob for the schedule time `t` (seconds after T0):
    /// running, or finished `Complete`/`Failed` at `end`.
    fn job(t: u64, state: &str, end: u64) -> v1::Job {
        let name = job_name("report", at(t));
        let status = match state {
            "Running" => json!({"active": 1}),
            c => json!({"conditions": [{"type": c, "status": "True",
                                        "lastTransitionTime": format_rfc3339(at(end))}],
                        "completionTime": if c == "Complete" { format_rfc3339(at(end)) } else { String::new() }}),
        };
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}"),
                         "ownerReferences": [{"apiVersion": "batch/v1", "kind": "CronJob",
                                              "name": "report", "uid": "cj-uid", "controller": true}]},
            "status": status
        }))
        .expect("job")
    }

    fn active(j: &v1::Job) -> serde_json::Value {
        json!({"kind": "Job", "apiVersion": "batch/v1", "namespace": "default",
               "name": j.meta().name, "uid": j.meta().uid})
    }

    fn run_time(p: &Plan) -> Option<SystemTime> {
        p.run.as_ref().map(|r| r.scheduled)
    }

    #[test]
    fn runs_the_latest_schedule_time_once() {
        let cj = cron(json!({"schedule": "*/5 * * * *"}), json!({}));
        // Before the first schedule time: nothing, the next one named.
        let p = reconcile(&cj, NO_JOBS, at(299));
        assert_eq!((run_time(&p), p.next), (None, Some(at(300))));
        // Due: the Job is named for its time and carries the template.
        let p = reconcile(&cj, NO_JOBS, at(301));
        assert_eq!(run_time(&p), Some(at(300)));
        let j = &p.run.as_ref().expect("run").job;
        assert_eq!(j.meta().name, format!("report-{}", (T0 + 300) / 60));
        assert_eq!(
            j.meta().labels.get("app").map(String::as_str),
            Some("report")
        );
        assert_eq!(
            j.meta()
                .annotations
                .get(SCHEDULED_TIMESTAMP)
                .map(String::as_str),
            Some("2026-01-01T10:05:00Z")
        );
        assert_eq!(
            controller_of(j.meta()).map(|r| r.uid.as_str()),
            Some("cj-uid")
        );
        // Missed three: only the latest runs.
        let p = reconcile(&cj, NO_JOBS, at(17 * 60));
        assert_eq!(run_time(&p), Some(at(15 * 60)));
        // Recorded: no run until the next time.
        let done = cron(
            json!({"schedule": "*/5 * * * *"}),
            json!({"lastScheduleTime": format_rfc3339(at(300))}),
        );
        assert_eq!(run_time(&reconcile(&done, NO_JOBS, at(599))), None);
        assert_eq!(run_time(&reconcile(&done, NO_JOBS, at(600))), Some(at(600)));
    }

    #[test]
    fn a_job_started_but_not_recorded_is_recorded_not_run_again() {
        let cj = cron(json!({"schedule": "*/5 * * * *"}), json!({}));
        let started = job(300, "Running", 0);
        let p = reconcile(&cj, std::slice::from_ref(&started), at(310));
        assert_eq!(p.run, None);
        assert_eq!(p.status.last_schedule_time, format_rfc3339(at(300)));
        assert_eq!(p.status.active.len(), 1, "adopted into active");
        assert_eq!(p.status.active[0].name, started.meta().name);
    }

    #[test]
    fn concurrency_policies() {
        let running = job(300, "Running", 0);
        let status = json!({"lastScheduleTime": format_rfc3339(at(300)),
                            "active": [active(&running)]});
        let jobs = std::slice::from_ref(&running);
        let allow = cron(
            json!({"schedule": "*/5 * * * *", "concurrencyPolicy": "Allow"}),
            status.clone(),
        );
        let p = reconcile(&allow, jobs, at(601));
        assert_eq!((run_time(&p), p.replace.len()), (Some(at(600)), 0));
        let forbid = cron(
            json!({"schedule": "*/5 * * * *", "concurrencyPolicy": "Forbid"}),
            status.clone(),
        );
        let p = reconcile(&forbid, jobs, at(601));
        assert_eq!(p.run, None);
        assert_eq!(p.notes.first().map(|n| n.reason), Some("JobAlreadyActive"));
        // Once the earlier run finished, the skipped time runs.
        let finished = job(300, "Complete", 620);
        let p = reconcile(&forbid, std::slice::from_ref(&finished), at(630));
        assert_eq!(run_time(&p), Some(at(600)));
        assert!(p.status.active.is_empty());
        assert_eq!(p.status.last_successful_time, format_rfc3339(at(620)));
        let replace = cron(
            json!({"schedule": "*/5 * * * *", "concurrencyPolicy": "Replace"}),
            status,
        );
        let p = reconcile(&replace, jobs, at(601));
        assert_eq!(run_time(&p), Some(at(600)));
        assert_eq!(
            p.replace.iter().map(|r| r.name.clone()).collect::<Vec<_>>(),
            [running.meta().name.clone()]
        );
    }

    #[test]
    fn starting_deadline_suspend_and_deletion() {
        let late = cron(
            json!({"schedule": "0 * * * *", "startingDeadlineSeconds": 60}),
            json!({}),
        );
        // At 11:00:30 the 11:00 run is 30 s late: it runs. At 11:02 it is
        // two minutes late: missed.
        assert_eq!(
            run_time(&reconcile(&late, NO_JOBS, at(3630))),
            Some(at(3600))
        );
        let p = reconcile(&late, NO_JOBS, at(3720));
        assert_eq!(p.run, None, "outside the starting deadline");
        let suspended = cron(json!({"schedule": "* * * * *", "suspend": true}), json!({}));
        assert_eq!(reconcile(&suspended, NO_JOBS, at(3600)).run, None);
        let mut deleting = cron(json!({"schedule": "* * * * *"}), json!({}));
        deleting.meta_mut().deletion_timestamp = format_rfc3339(at(10));
        assert_eq!(reconcile(&deleting, NO_JOBS, at(3600)).run, None);
    }

    #[test]
    fn too_many_missed_times_are_reported_and_the_latest_runs() {
        let cj = cron(json!({"schedule": "* * * * *"}), json!({}));
        let p = reconcile(&cj, NO_JOBS, at(3 * 3600 + 10));
        assert_eq!(run_time(&p), Some(at(3 * 3600)));
        assert_eq!(
            p.notes.first().map(|n| n.reason),
            Some("TooManyMissedTimes")
        );
    }

    #[test]
    fn time_zones() {
        // 09:00 in Tokyo is 00:00 UTC; the annotation is in Tokyo time.
        let cj = cron(
            json!({"schedule": "0 9 * * *", "timeZone": "Asia/Tokyo"}),
            json!({}),
        );
        let midnight = 14 * 3600; // 2026-01-02T00:00:00Z
        assert_eq!(run_time(&reconcile(&cj, NO_JOBS, at(midnight - 1))), None);
        let p = reconcile(&cj, NO_JOBS, at(midnight + 1));
        assert_eq!(run_time(&p), Some(at(midnight)));
        let j = &p.run.expect("run").job;
        assert_eq!(
            j.meta()
                .annotations
                .get(SCHEDULED_TIMESTAMP)
                .map(String::as_str),
            Some("2026-01-02T09:00:00+09:00")
        );
        let bad = cron(
            json!({"schedule": "0 9 * * *", "timeZone": "Mars/Base"}),
            json!({}),
        );
        let p = reconcile(&bad, NO_JOBS, at(midnight + 1));
        assert_eq!(
            (p.run.is_none(), p.notes[0].reason),
            (true, "UnknownTimeZone")
        );
    }

    #[test]
    fn history_limits_and_unseen_active_jobs() {
        let jobs = [
            job(60, "Complete", 70),
            job(120, "Complete", 130),
            job(180, "Failed", 190),
            job(240, "Failed", 250),
            job(300, "Complete", 310),
        ];
        let cj = cron(
            json!({"schedule": "* * * * *", "successfulJobsHistoryLimit": 1,
                   "failedJobsHistoryLimit": 1}),
            json!({"lastScheduleTime": format_rfc3339(at(300)),
                   "active": [{"kind": "Job", "name": "report-gone", "uid": "uid-gone",
                               "namespace": "default"}]}),
        );
        let p = reconcile(&cj, &jobs, at(330));
        let expired: Vec<&str> = p.expired.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(
            expired,
            [
                jobs[0].meta().name.as_str(),
                jobs[1].meta().name.as_str(),
                jobs[2].meta().name.as_str()
            ]
        );
        // Not in the cache: kept, to be read live.
        assert_eq!(p.verify.len(), 1);
        assert_eq!(p.status.active.len(), 1);
        assert_eq!(p.status.last_successful_time, format_rfc3339(at(310)));
        // Pure and total: no spec, no uid, nothing.
        let mut bare = cj.clone();
        bare.spec = None;
        assert_eq!(reconcile(&bare, &jobs, at(330)).run, None);
    }
}
