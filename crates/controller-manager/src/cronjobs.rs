//! The CronJob controller around [`keelson_controllers::cronjob::reconcile`]:
//! for each CronJob, check the active Jobs the cache does not show,
//! delete the Jobs a `Replace` run replaces, start the run due, write the
//! status, and delete the finished Jobs beyond the history limits.
//!
//! **No run twice**: a run's Job is named for its schedule time, so a
//! second create for that time (another leader, or this one after losing
//! the status write) gets AlreadyExists; when the existing Job is this
//! CronJob's, the run is recorded as started, never started again. The
//! status is written after the Job exists, as a compare-and-swap on the
//! CronJob the decision was made from.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use keelson_controllers::cronjob::{reconcile, reference, Note, Plan};
use keelson_model::time::format_rfc3339;
use keelson_proto::v1;
use keelson_sdk::watcher::object_key;
use keelson_sdk::{DeleteParams, Error, Involved, Resource};
use tokio::sync::watch;

use crate::controller::{Controller, PassCtx};
use crate::Ctx;

/// The CronJob controller; remembers the last note per CronJob (uid), so
/// a condition that lasts (a Forbid skip, a bad schedule) is one event,
/// not one per pass.
#[derive(Default)]
pub struct CronJobs {
    noted: HashMap<String, (&'static str, String)>,
}

impl Controller for CronJobs {
    const NAME: &'static str = "cronjob";
    /// Schedule times come by the clock: look every half second.
    const RESYNC: Duration = Duration::from_millis(500);

    fn changes(ctx: &Ctx) -> Vec<watch::Receiver<u64>> {
        vec![ctx.cronjobs.changes(), ctx.jobs.changes()]
    }

    async fn pass(&mut self, ctx: &Ctx, p: &mut PassCtx<'_>) {
        let cronjobs = ctx.cronjobs.list();
        if cronjobs.is_empty() {
            self.noted.clear();
            return;
        }
        let all = ctx.jobs.snapshot();
        let jobs: Vec<&v1::Job> = all
            .values()
            .filter(|j| keelson_model::controller_of(j.meta()).is_some_and(|r| r.kind == "CronJob"))
            .map(|j| &**j)
            .collect();
        self.noted
            .retain(|uid, _| cronjobs.iter().any(|c| &c.meta().uid == uid));
        for cj in &cronjobs {
            let key = object_key(&**cj);
            if !p.due(&key) {
                continue;
            }
            let plan = reconcile(cj, &jobs, SystemTime::now());
            let involved = Involved::of(&**cj);
            for n in &plan.notes {
                let last = (n.reason, n.message.clone());
                if self.noted.get(&cj.meta().uid) != Some(&last) {
                    note(ctx, involved.clone(), n);
                    self.noted.insert(cj.meta().uid.clone(), last);
                }
            }
            if !ctx.leading() {
                return;
            }
            let r = act(ctx, cj, plan).await;
            p.report(&key, r);
        }
    }
}

fn note(ctx: &Ctx, involved: Involved, n: &Note) {
    let kind = if n.warning { "Warning" } else { "Normal" };
    ctx.recorder.record(involved, kind, n.reason, &n.message);
}

fn background() -> DeleteParams {
    DeleteParams {
        propagation_policy: "Background".into(),
        ..Default::default()
    }
}

async fn act(ctx: &Ctx, cj: &v1::CronJob, mut plan: Plan) -> keelson_sdk::Result<()> {
    let m = cj.meta();
    let ns = &m.namespace;
    let jobs = ctx.api::<v1::Job>(ns);
    let involved = Involved::of(cj);
    // Active Jobs the cache does not show: gone when a live read says so.
    for r in &plan.verify {
        let gone = match jobs.get(&r.name).await {
            Ok(j) => j.meta().uid != r.uid,
            Err(Error::NotFound(_)) => true,
            Err(e) => return Err(e),
        };
        if gone {
            plan.status.active.retain(|a| a.uid != r.uid);
        }
    }
    for r in &plan.replace {
        let dp = DeleteParams {
            precondition_uid: r.uid.clone(),
            ..background()
        };
        match jobs.delete(&r.name, &dp).await {
            Ok(_) | Err(Error::NotFound(_)) | Err(Error::Conflict(_)) => {
                ctx.recorder.record(
                    involved.clone(),
                    "Normal",
                    "SuccessfulDelete",
                    &format!("Deleted job {}", r.name),
                );
                plan.status.active.retain(|a| a.uid != r.uid);
            }
            Err(e) => return Err(e),
        }
    }
    if let Some(run) = plan.run.take() {
        let name = run.job.meta().name.clone();
        let job = match jobs.create(&run.job).await {
            Ok(j) => {
                ctx.recorder.record(
                    involved.clone(),
                    "Normal",
                    "SuccessfulCreate",
                    &format!("Created job {name}"),
                );
                Some(j)
            }
            Err(Error::AlreadyExists(_)) => {
                // Started for this time already: record it if it is ours.
                let j = jobs.get(&name).await?;
                let ours = keelson_model::controller_of(j.meta()).is_some_and(|r| r.uid == m.uid);
                if !ours {
                    ctx.recorder.record(
                        involved.clone(),
                        "Warning",
                        "FailedCreate",
                        &format!("Error creating job: {name} exists and is not this CronJob's"),
                    );
                    return Err(Error::AlreadyExists(name));
                }
                Some(j)
            }
            Err(e) => {
                ctx.recorder.record(
                    involved.clone(),
                    "Warning",
                    "FailedCreate",
                    &format!("Error creating job: {e}"),
                );
                return Err(e);
            }
        };
        if let Some(j) = job {
            if !plan.status.active.iter().any(|a| a.uid == j.meta().uid) {
                plan.status.active.push(reference(&j));
            }
            plan.status.last_schedule_time = format_rfc3339(run.scheduled);
        }
    }
    if cj.status.as_ref() != Some(&plan.status)
        && !(cj.status.is_none() && plan.status == v1::CronJobStatus::default())
    {
        let mut w = cj.clone();
        w.status = Some(plan.status);
        ctx.api::<v1::CronJob>(ns).update_status(&w).await?;
    }
    for r in &plan.expired {
        let dp = DeleteParams {
            precondition_uid: r.uid.clone(),
            ..background()
        };
        match jobs.delete(&r.name, &dp).await {
            Ok(_) => ctx.recorder.record(
                involved.clone(),
                "Normal",
                "SuccessfulDelete",
                &format!("Deleted job {}", r.name),
            ),
            Err(Error::NotFound(_)) | Err(Error::Conflict(_)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
