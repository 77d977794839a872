//! The Job controller around [`keelson_controllers::job::reconcile`]: for
//! each Job, record and release its finished pods, create or delete pods,
//! write its status, and delete it once its TTL after finishing passed.
//! Retried per Job (key `namespace/name`).
//!
//! **Order**: the status is written first, as a compare-and-swap on the
//! Job the decision was made from (the fence, as the ReplicaSet
//! controller's); only then are finalizers removed (their pods are in the
//! status written) and pods created or deleted. **Expectations**, as the
//! ReplicaSet controller's: after creating or deleting pods a Job waits
//! for its cache to show them before it is decided on again.
//!
//! Pods holding the tracking finalizer whose Job is gone (confirmed by a
//! live read) have the finalizer removed, so they can go.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant, SystemTime};

use keelson_controllers::job::{reconcile, Action, TRACKING_FINALIZER};
use keelson_proto::v1;
use keelson_sdk::watcher::object_key;
use keelson_sdk::{DeleteParams, Error, Involved, Resource};
use tokio::sync::watch;

use crate::controller::{kind_key, Controller, PassCtx};
use crate::expectations::{self, Expect};
use crate::replicasets::controller_uid;
use crate::{concurrently, Ctx};

/// The Job controller and its expectations (by Job uid).
#[derive(Default)]
pub struct Jobs {
    expectations: HashMap<String, Expect>,
}

impl Controller for Jobs {
    const NAME: &'static str = "job";
    const RESYNC: Duration = Duration::from_secs(1);

    fn changes(ctx: &Ctx) -> Vec<watch::Receiver<u64>> {
        vec![ctx.pods.changes(), ctx.jobs.changes()]
    }

    async fn pass(&mut self, ctx: &Ctx, p: &mut PassCtx<'_>) {
        pass(ctx, &mut self.expectations, p).await
    }
}

async fn pass(ctx: &Ctx, expectations: &mut HashMap<String, Expect>, p: &mut PassCtx<'_>) {
    let pods = ctx.pods.snapshot();
    let jobs = ctx.jobs.list();
    let job_uids: HashSet<&str> = jobs.iter().map(|j| j.meta().uid.as_str()).collect();
    let mut owned: HashMap<&str, Vec<&v1::Pod>> = HashMap::new();
    let mut stray: Vec<v1::Pod> = Vec::new();
    for pod in pods.values() {
        let Some(uid) = controller_uid(pod.meta()) else {
            continue;
        };
        let is_job_pod = keelson_model::controller_of(pod.meta()).is_some_and(|r| r.kind == "Job");
        if !is_job_pod {
            continue;
        }
        owned.entry(uid).or_default().push(pod);
        let tracked = pod
            .meta()
            .finalizers
            .iter()
            .any(|f| f == TRACKING_FINALIZER);
        if is_job_pod && tracked && !job_uids.contains(uid) {
            stray.push((**pod).clone());
        }
    }
    let now = Instant::now();
    expectations::prune(expectations, &pods, now);
    for job in &jobs {
        let m = job.meta();
        let key = object_key(&**job);
        if expectations.contains_key(&m.uid) || !p.due(&key) {
            continue;
        }
        let mine: &[&v1::Pod] = owned.get(m.uid.as_str()).map_or(&[], Vec::as_slice);
        let actions = reconcile(job, mine, SystemTime::now());
        if actions.is_empty() {
            p.succeeded(&key);
            continue;
        }
        if !ctx.leading() {
            return;
        }
        let (expect, result) = act(ctx, job, mine, actions).await;
        if let Some(e) = expect {
            expectations.insert(m.uid.clone(), e);
        }
        p.report(&key, result);
    }
    for pod in stray {
        let m = pod.meta();
        let key = kind_key("Pod", &m.namespace, &m.name);
        if !p.due(&key) || !ctx.leading() {
            continue;
        }
        let r = release_stray(ctx, &pod).await;
        p.report(&key, r);
    }
}

/// A tracked pod whose Job is not in the cache: if the Job is really gone
/// (read live, by name and uid), remove the finalizer.
async fn release_stray(ctx: &Ctx, pod: &v1::Pod) -> keelson_sdk::Result<()> {
    let m = pod.meta();
    let Some(owner) = keelson_model::controller_of(m) else {
        return Ok(());
    };
    match ctx.api::<v1::Job>(&m.namespace).get(&owner.name).await {
        Ok(j) if j.meta().uid == owner.uid => return Ok(()),
        Ok(_) | Err(Error::NotFound(_)) => {}
        Err(e) => return Err(e),
    }
    remove_finalizer(ctx, pod).await
}

/// The pod without the tracking finalizer, written as a compare-and-swap
/// on the version seen.
async fn remove_finalizer(ctx: &Ctx, pod: &v1::Pod) -> keelson_sdk::Result<()> {
    let mut p = pod.clone();
    p.meta_mut().finalizers.retain(|f| f != TRACKING_FINALIZER);
    match ctx.api::<v1::Pod>(&pod.meta().namespace).update(&p).await {
        Ok(_) | Err(Error::NotFound(_)) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Carry out one Job's actions, the status first; the expectations to
/// wait for, and the first failure.
async fn act(
    ctx: &Ctx,
    job: &v1::Job,
    pods: &[&v1::Pod],
    actions: Vec<Action>,
) -> (Option<Expect>, keelson_sdk::Result<()>) {
    let m = job.meta();
    let ns = m.namespace.clone();
    let mut status = None;
    let (mut creates, mut deletes, mut releases) = (Vec::new(), Vec::new(), Vec::new());
    let mut delete_job = false;
    for a in actions {
        match a {
            Action::UpdateStatus(s) => status = Some(s),
            Action::CreatePod(p) => creates.push(*p),
            Action::DeletePod { name } => deletes.push(name),
            Action::RemoveFinalizer { uid, .. } => {
                if let Some(p) = pods.iter().find(|p| p.meta().uid == uid) {
                    releases.push((*p).clone());
                }
            }
            Action::DeleteJob => delete_job = true,
        }
    }
    // The fence, and the record of finished pods before their release.
    if status.is_some() || !creates.is_empty() || !deletes.is_empty() || !releases.is_empty() {
        let mut w = job.clone();
        if let Some(s) = status {
            w.status = Some(s);
        }
        if let Err(e) = ctx.api::<v1::Job>(&ns).update_status(&w).await {
            return (None, Err(e));
        }
    }
    let mut result: keelson_sdk::Result<()> = Ok(());
    let mut keep = |r: keelson_sdk::Result<()>| {
        if let Err(e) = r {
            if result.is_ok() {
                result = Err(e);
            }
        }
    };
    for r in concurrently(releases, |p| async move {
        if !ctx.leading() {
            return Ok(());
        }
        remove_finalizer(ctx, &p).await
    })
    .await
    {
        keep(r);
    }
    if delete_job && ctx.leading() {
        let dp = DeleteParams {
            propagation_policy: "Background".into(),
            precondition_uid: m.uid.clone(),
            ..Default::default()
        };
        match ctx.api::<v1::Job>(&ns).delete(&m.name, &dp).await {
            Ok(_) | Err(Error::NotFound(_)) | Err(Error::Conflict(_)) => {}
            Err(e) => keep(Err(e)),
        }
    }
    if creates.is_empty() && deletes.is_empty() {
        return (None, result);
    }
    let deletes = deletes
        .into_iter()
        .map(|n| (n, DeleteParams::default()))
        .collect();
    let (expect, written) =
        expectations::write_pods(ctx, &Involved::of(job), &ns, creates, deletes).await;
    keep(written);
    (Some(expect), result)
}
