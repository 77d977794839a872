//! The decisions of the registry's writes, as pure functions: each takes
//! the request, the stored object as read (with its revisions) and, where
//! time matters, `now`, and returns what to write or the error to answer.
//! Nothing here reads the store or the clock, so the tests below are
//! tables of (stored object, request, now) -> plan or error.
//!
//! The shell around them is [`Registry`](super::Registry) (and the sweep in
//! [`crate::namespaces`]): it reads (locally first, then after a read
//! barrier), calls these functions, calls the `authorize` callback the
//! service passes in, and runs a store transaction that compares the mod
//! revision it read, retrying up to `WRITE_ATTEMPTS_MAX` times when another
//! writer got there first.
//!
//! - **Create** ([`plan_create`]): the status is cleared (a Node registers
//!   with its own), defaults applied, the namespace defaulted (cleared for
//!   cluster-scoped kinds), the server's metadata set (uid and name suffix
//!   passed in, creationTimestamp = `now`, generation 1), then validation.
//! - **Update** ([`Update::new`], then per attempt [`check_update`],
//!   [`merge_update`], the shell's `authorize(old, new)`, [`plan_update`]).
//!   The resourceVersion sent must equal the stored one; one that is ahead,
//!   or an object absent, on a read made without a barrier means "this
//!   replica is behind, read again" rather than Conflict or NotFound.
//!   A spec update keeps the stored status; a status update keeps
//!   everything but the status. Both keep what the server owns (uid,
//!   creationTimestamp, deletion fields, namespace, name); generation moves
//!   on a spec change only. Then validation, and the finalizer rule: the
//!   last finalizer of an object being deleted is gone, so the key is
//!   removed, except for a namespace (its sweep removes it once empty) and
//!   a bound pod whose node has not confirmed with grace 0.
//! - **Delete** ([`Delete::new`], then per attempt the shell's
//!   `authorize(old)`, [`plan_delete`]): system namespaces are refused; the
//!   propagation policy Orphan / Foreground adds the `orphan` /
//!   `foregroundDeletion` finalizer; uid and resourceVersion preconditions;
//!   a pod bound to a node gets a grace period (the request's, else its
//!   terminationGracePeriodSeconds, else [`POD_GRACE_DEFAULT_SECS`]) and a
//!   shorter one replaces a longer one; a namespace becomes Terminating.
//!   The object is removed now, marked, or left unchanged (no write).
//! - **Namespace termination** ([`sweep_namespace`],
//!   [`namespace_removable`]): which objects of a terminating namespace to
//!   delete (those not already being deleted) and whether its key can go
//!   (nothing left, no finalizers).

use std::time::{Duration, SystemTime};

use keelson_model::time::format_rfc3339;
use keelson_model::validation::GRACE_PERIOD_MAX_SECS;
use keelson_model::{defaults, kind_of, meta_of, meta_of_mut, validation, Kind, Object};
use keelson_proto::api::object;

use super::{parse_revision, DeleteOptions, Stored};
use crate::error::{Error, Result};

/// Grace period of a pod that does not set terminationGracePeriodSeconds.
pub const POD_GRACE_DEFAULT_SECS: i64 = 30;
/// Namespaces that exist from the start and cannot be deleted.
pub const SYSTEM_NAMESPACES: [&str; 3] = ["default", "kube-node-lease", "kube-system"];

/// Namespace and name of an object, the namespace defaulted for
/// namespaced kinds and cleared for cluster-scoped ones.
pub fn scope(kind: Kind, o: &mut Object) -> (String, String) {
    let Some(m) = meta_of_mut(o) else {
        return (String::new(), String::new());
    };
    if kind.namespaced() {
        if m.namespace.is_empty() {
            m.namespace = "default".into();
        }
    } else {
        m.namespace.clear();
    }
    (m.namespace.clone(), m.name.clone())
}

/// `now` plus `secs` (clamped to `0..=GRACE_PERIOD_MAX_SECS`), in RFC 3339.
pub fn deletion_timestamp(now: SystemTime, secs: i64) -> String {
    let secs = secs.clamp(0, GRACE_PERIOD_MAX_SECS).unsigned_abs();
    let t = now.checked_add(Duration::from_secs(secs)).unwrap_or(now);
    format_rfc3339(t)
}

/// Replace `dst`'s status with `src`'s (kinds with a status).
fn copy_status(dst: &mut Object, src: &Object) {
    use object::Kind as K;
    match (dst.kind.as_mut(), src.kind.as_ref()) {
        (Some(K::Namespace(d)), Some(K::Namespace(s))) => d.status = s.status.clone(),
        (Some(K::Node(d)), Some(K::Node(s))) => d.status = s.status.clone(),
        (Some(K::Pod(d)), Some(K::Pod(s))) => d.status = s.status.clone(),
        (Some(K::ReplicaSet(d)), Some(K::ReplicaSet(s))) => d.status = s.status.clone(),
        (Some(K::Deployment(d)), Some(K::Deployment(s))) => d.status = s.status.clone(),
        (Some(K::Service(d)), Some(K::Service(s))) => d.status = s.status,
        (Some(K::Job(d)), Some(K::Job(s))) => d.status = s.status.clone(),
        (Some(K::CronJob(d)), Some(K::CronJob(s))) => d.status = s.status.clone(),
        (Some(K::DaemonSet(d)), Some(K::DaemonSet(s))) => d.status = s.status.clone(),
        (Some(K::StatefulSet(d)), Some(K::StatefulSet(s))) => d.status = s.status.clone(),
        _ => {}
    }
}

/// Clear the status (a create sets none; the defaults fill it).
fn clear_status(o: &mut Object) {
    use object::Kind as K;
    match o.kind.as_mut() {
        Some(K::Namespace(x)) => x.status = None,
        Some(K::Node(_)) => {} // a node registers with its status
        Some(K::Pod(x)) => x.status = None,
        Some(K::ReplicaSet(x)) => x.status = None,
        Some(K::Deployment(x)) => x.status = None,
        Some(K::Service(x)) => x.status = None,
        Some(K::Job(x)) => x.status = None,
        Some(K::CronJob(x)) => x.status = None,
        Some(K::DaemonSet(x)) => x.status = None,
        Some(K::StatefulSet(x)) => x.status = None,
        // Kinds without a status.
        Some(
            K::Endpoints(_)
            | K::Event(_)
            | K::Lease(_)
            | K::ConfigMap(_)
            | K::Secret(_)
            | K::ControllerRevision(_)
            | K::ServiceAccount(_)
            | K::Role(_)
            | K::RoleBinding(_)
            | K::ClusterRole(_)
            | K::ClusterRoleBinding(_),
        )
        | None => {}
    }
}

/// Whether the desired state (everything but metadata and status) differs.
fn spec_changed(a: &Object, b: &Object) -> bool {
    let strip = |o: &Object| {
        let mut o = o.clone();
        if let Some(m) = meta_of_mut(&mut o) {
            *m = Default::default();
        }
        clear_status(&mut o);
        if let Some(object::Kind::Node(n)) = o.kind.as_mut() {
            n.status = None;
        }
        o
    };
    strip(a) != strip(b)
}

fn pod_node_name(o: &Object) -> Option<&str> {
    match o.kind.as_ref()? {
        object::Kind::Pod(p) => p.spec.as_ref().map(|s| s.node_name.as_str()),
        _ => None,
    }
}

/// A pod's own grace period, clamped to `0..=GRACE_PERIOD_MAX_SECS`.
fn pod_grace(o: &Object) -> i64 {
    match o.kind.as_ref() {
        Some(object::Kind::Pod(p)) => p
            .spec
            .as_ref()
            .and_then(|s| s.termination_grace_period_seconds)
            .unwrap_or(POD_GRACE_DEFAULT_SECS)
            .clamp(0, GRACE_PERIOD_MAX_SECS),
        _ => 0,
    }
}

fn invalid(kind: Kind, name: &str, problems: Vec<String>) -> Error {
    Error::Invalid {
        what: format!("{kind} {name:?}"),
        problems,
    }
}

/// What the server generates for a new object besides the clock: passed
/// in so that [`plan_create`] stays a function of its inputs.
pub struct Generated {
    pub uid: String,
    /// Appended to `generateName` when the object has no name.
    pub name_suffix: String,
}

/// A new object, ready to be written under `kind.key(namespace, name)`.
#[derive(Debug)]
pub struct CreatePlan {
    pub kind: Kind,
    pub namespace: String,
    pub name: String,
    pub object: Object,
}

/// Create: status cleared, defaults, scope, the server's metadata (created
/// `now`), validation.
pub fn plan_create(mut obj: Object, generated: Generated, now: SystemTime) -> Result<CreatePlan> {
    let kind = kind_of(&obj).ok_or_else(|| Error::BadRequest("empty object".into()))?;
    clear_status(&mut obj);
    defaults::apply(&mut obj);
    let (namespace, _) = scope(kind, &mut obj);
    if let Some(m) = meta_of_mut(&mut obj) {
        if m.name.is_empty() && !m.generate_name.is_empty() {
            m.name = format!("{}{}", m.generate_name, generated.name_suffix);
        }
        m.uid = generated.uid;
        m.creation_timestamp = format_rfc3339(now);
        m.resource_version.clear();
        m.deletion_timestamp.clear();
        m.deletion_grace_period_seconds = None;
        m.generation = 1;
    }
    defaults::on_create(&mut obj);
    let name = meta_of(&obj).map(|m| m.name.clone()).unwrap_or_default();
    validation::validate(&obj).map_err(|p| invalid(kind, &name, p))?;
    Ok(CreatePlan {
        kind,
        namespace,
        name,
        object: obj,
    })
}

/// An update as sent, checked and scoped: what the update rules need
/// besides the stored object.
#[derive(Clone, Debug)]
pub struct Update {
    pub kind: Kind,
    pub namespace: String,
    pub name: String,
    /// The object sent, its namespace scoped.
    pub object: Object,
    /// Update-status: only the status is taken from `object`.
    pub status_only: bool,
    /// The resourceVersion sent: the update is a compare-and-swap on it.
    pub resource_version: Option<i64>,
    /// The lease to attach the object to; 0 keeps the stored one's.
    pub lease: i64,
}

impl Update {
    pub fn new(mut object: Object, lease: i64, status_only: bool) -> Result<Update> {
        let kind = kind_of(&object).ok_or_else(|| Error::BadRequest("empty object".into()))?;
        if status_only && !kind.has_status() {
            return Err(Error::BadRequest(format!("{kind} has no status to update")));
        }
        let (namespace, name) = scope(kind, &mut object);
        let resource_version =
            parse_revision(meta_of(&object).map_or("", |m| &m.resource_version))?;
        Ok(Update {
            kind,
            namespace,
            name,
            object,
            status_only,
            resource_version,
            lease,
        })
    }
}

/// Whether the object read is one an update may replace.
#[derive(Debug)]
pub enum Precondition<'a> {
    /// Replace this one.
    Met(&'a Stored),
    /// The object is absent, or older than the resourceVersion sent, on a
    /// read made without a barrier: this replica may be behind. Read again
    /// after a barrier.
    ReadAgain,
}

/// The update's precondition on the object read (`None`: absent).
/// `after_barrier`: the read followed a read barrier, so it is as fresh as
/// the store's leader.
pub fn check_update<'a>(
    req: &Update,
    stored: Option<&'a Stored>,
    after_barrier: bool,
) -> Result<Precondition<'a>> {
    let Some(cur) = stored else {
        if !after_barrier {
            return Ok(Precondition::ReadAgain);
        }
        return Err(Error::NotFound {
            kind: req.kind.plural(),
            name: req.name.clone(),
        });
    };
    if let Some(rv) = req.resource_version {
        if rv > cur.mod_revision && !after_barrier {
            return Ok(Precondition::ReadAgain);
        }
        if rv != cur.mod_revision {
            return Err(Error::Conflict(format!(
                "{} {:?} was modified (resourceVersion {rv} is now {}); read it again and retry",
                req.kind, req.name, cur.mod_revision
            )));
        }
    }
    Ok(Precondition::Met(cur))
}

/// The object an update would write in place of `old`: the sent object
/// with the stored status (defaults applied), or with `status_only` the
/// stored object with the sent status; in both, the metadata the server
/// owns comes from `old`, and generation moves on a spec change only. This
/// is what `authorize(old, new)` sees.
pub fn merge_update(req: &Update, old: &Object) -> Object {
    let mut new = if req.status_only {
        let mut n = old.clone();
        copy_status(&mut n, &req.object);
        n
    } else {
        let mut n = req.object.clone();
        copy_status(&mut n, old);
        defaults::apply(&mut n);
        n
    };
    let changed = spec_changed(old, &new);
    if let (Some(m), Some(o)) = (meta_of_mut(&mut new), meta_of(old)) {
        m.uid = o.uid.clone();
        m.creation_timestamp = o.creation_timestamp.clone();
        m.deletion_timestamp = o.deletion_timestamp.clone();
        m.deletion_grace_period_seconds = o.deletion_grace_period_seconds;
        m.generation = o.generation + i64::from(changed && !req.status_only);
        m.namespace = o.namespace.clone();
        m.name = o.name.clone();
        m.resource_version.clear();
        if req.status_only {
            m.labels = o.labels.clone();
            m.annotations = o.annotations.clone();
            m.owner_references = o.owner_references.clone();
            m.finalizers = o.finalizers.clone();
        }
    }
    new
}

/// What an update writes.
#[derive(Debug, PartialEq)]
pub enum UpdatePlan {
    /// Write `object`, attached to `lease`.
    Put { object: Object, lease: i64 },
    /// The last finalizer of an object being deleted is gone: remove the
    /// key; `object` is the answer.
    Remove { object: Object },
}

/// Validate `new` (the result of [`merge_update`], once authorized)
/// against `stored` and decide whether it is written or its key removed.
pub fn plan_update(req: &Update, stored: &Stored, new: Object) -> Result<UpdatePlan> {
    let (kind, name) = (req.kind, &req.name);
    validation::validate(&new).map_err(|p| invalid(kind, name, p))?;
    validation::validate_update(&stored.object, &new).map_err(|p| invalid(kind, name, p))?;
    // The last finalizer of an object being deleted is gone: remove it,
    // unless it is a namespace (the sweep removes it once empty) or a
    // bound pod its node has not confirmed (grace 0).
    let finished = meta_of(&new).is_some_and(|m| {
        !m.deletion_timestamp.is_empty()
            && m.finalizers.is_empty()
            && match kind {
                Kind::Namespace => false,
                Kind::Pod => {
                    pod_node_name(&new).is_none_or(str::is_empty)
                        || m.deletion_grace_period_seconds == Some(0)
                }
                _ => true,
            }
    });
    Ok(if finished {
        UpdatePlan::Remove { object: new }
    } else {
        let lease = if req.lease != 0 {
            req.lease
        } else {
            stored.lease
        };
        UpdatePlan::Put { object: new, lease }
    })
}

/// A delete request, checked: what [`plan_delete`] needs besides the
/// stored object.
#[derive(Debug)]
pub struct Delete<'a> {
    pub kind: Kind,
    pub name: &'a str,
    pub options: &'a DeleteOptions,
    /// The finalizer the propagation policy adds: `orphan` (Orphan) or
    /// `foregroundDeletion` (Foreground); none for Background.
    pub finalizer: Option<&'static str>,
}

impl<'a> Delete<'a> {
    /// The checks that need no stored object: system namespaces, the
    /// propagation policy, a negative grace period.
    pub fn new(kind: Kind, name: &'a str, options: &'a DeleteOptions) -> Result<Delete<'a>> {
        if kind == Kind::Namespace && SYSTEM_NAMESPACES.contains(&name) {
            return Err(Error::Forbidden(format!(
                "namespace {name:?} cannot be deleted"
            )));
        }
        let finalizer = match options.propagation_policy.as_str() {
            "" | "Background" => None,
            "Orphan" => Some("orphan"),
            "Foreground" => Some("foregroundDeletion"),
            other => {
                return Err(Error::BadRequest(format!(
                    "propagationPolicy {other:?} is not Background, Foreground or Orphan"
                )))
            }
        };
        if options.grace_period_seconds.is_some_and(|g| g < 0) {
            return Err(Error::BadRequest(
                "gracePeriodSeconds must not be negative".into(),
            ));
        }
        Ok(Delete {
            kind,
            name,
            options,
            finalizer,
        })
    }
}

/// What a delete does.
#[derive(Debug, PartialEq)]
pub enum DeletePlan {
    /// Remove the key now; the stored object is the answer.
    Remove,
    /// Write this object (deletionTimestamp, finalizers, a namespace's
    /// Terminating phase) and keep the key.
    Mark(Box<Object>),
    /// The stored object already says everything this delete would: answer
    /// it as it is, without a write.
    Unchanged,
}

/// Delete `stored` at `now`: preconditions, then remove now or mark.
pub fn plan_delete(req: &Delete, stored: &Stored, now: SystemTime) -> Result<DeletePlan> {
    let (kind, name, opts) = (req.kind, req.name, req.options);
    let meta = meta_of(&stored.object).cloned().unwrap_or_default();
    if !opts.precondition_uid.is_empty() && opts.precondition_uid != meta.uid {
        return Err(Error::Conflict(format!(
            "{kind} {name:?} has uid {}, not {}",
            meta.uid, opts.precondition_uid
        )));
    }
    if !opts.precondition_resource_version.is_empty()
        && opts.precondition_resource_version != stored.mod_revision.to_string()
    {
        return Err(Error::Conflict(format!(
            "{kind} {name:?} has resourceVersion {}, not {}",
            stored.mod_revision, opts.precondition_resource_version
        )));
    }
    let mut finalizers = meta.finalizers;
    if let Some(f) = req.finalizer {
        if !finalizers.iter().any(|x| x == f) {
            finalizers.push(f.to_string());
        }
    }
    let bound_pod =
        kind == Kind::Pod && pod_node_name(&stored.object).is_some_and(|n| !n.is_empty());
    let grace = if bound_pod {
        opts.grace_period_seconds
            .unwrap_or_else(|| pod_grace(&stored.object))
    } else {
        0
    };
    if finalizers.is_empty() && grace == 0 && kind != Kind::Namespace {
        return Ok(DeletePlan::Remove);
    }
    let mut marked = stored.object.clone();
    let m = meta_of_mut(&mut marked).ok_or_else(|| Error::Internal("no metadata".into()))?;
    m.finalizers = finalizers;
    if m.deletion_timestamp.is_empty() || bound_pod {
        // A shorter grace period may replace a longer one.
        let prev = m.deletion_grace_period_seconds.unwrap_or(i64::MAX);
        if m.deletion_timestamp.is_empty() || grace < prev {
            m.deletion_timestamp = deletion_timestamp(now, grace);
            m.deletion_grace_period_seconds = Some(grace);
        }
    }
    if let Some(object::Kind::Namespace(n)) = marked.kind.as_mut() {
        n.status.get_or_insert_with(Default::default).phase = "Terminating".into();
    }
    Ok(if marked == stored.object {
        DeletePlan::Unchanged
    } else {
        DeletePlan::Mark(Box::new(marked))
    })
}

/// What the sweep does with a namespace, given the objects left in it.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct NamespaceSweep {
    /// Objects to delete (kind, name): those not already being deleted.
    pub delete: Vec<(Kind, String)>,
    /// Nothing is left and the namespace may go ([`namespace_removable`]).
    pub remove: bool,
}

/// A namespace's key may be removed once it is empty: it is being deleted
/// and has no finalizers left.
pub fn namespace_removable(namespace: &Object) -> bool {
    meta_of(namespace).is_some_and(|m| !m.deletion_timestamp.is_empty() && m.finalizers.is_empty())
}

/// The sweep of one namespace: nothing unless it is terminating; then
/// every object left that is not already on its way out is deleted, and
/// the namespace is removed once nothing is left in it.
pub fn sweep_namespace(namespace: &Object, left: &[(Kind, Object)]) -> NamespaceSweep {
    if meta_of(namespace).is_none_or(|m| m.deletion_timestamp.is_empty()) {
        return NamespaceSweep::default();
    }
    let delete = left
        .iter()
        .filter_map(|(kind, o)| {
            let m = meta_of(o)?;
            m.deletion_timestamp
                .is_empty()
                .then(|| (*kind, m.name.clone()))
        })
        .collect();
    NamespaceSweep {
        delete,
        remove: left.is_empty() && namespace_removable(namespace),
    }
}

#[cfg(test)]
mod tests {
    use keelson_model::Resource;
    use keelson_proto::v1;

    use super::*;

    /// 2024-05-01T12:00:00Z.
    fn now() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_714_564_800)
    }

    fn at(secs: u64) -> String {
        format_rfc3339(now() + Duration::from_secs(secs))
    }

    /// The revision and lease of the stored objects below.
    const REV: i64 = 7;
    const LEASE: i64 = 42;

    fn meta(name: &str, namespace: &str) -> v1::ObjectMeta {
        v1::ObjectMeta {
            name: name.into(),
            namespace: namespace.into(),
            uid: format!("uid-{name}"),
            generation: 1,
            creation_timestamp: "2024-05-01T10:00:00Z".into(),
            labels: [("app".to_string(), "web".to_string())].into(),
            ..Default::default()
        }
    }

    /// Pod `web` in `default`, as the server stored it, bound to `node`
    /// ("" for none).
    fn pod(node: &str) -> Object {
        let mut o = v1::Pod {
            metadata: Some(meta("web", "default")),
            spec: Some(v1::PodSpec {
                containers: vec![v1::Container {
                    name: "web".into(),
                    image: "nginx:1.25".into(),
                    ..Default::default()
                }],
                node_name: node.into(),
                ..Default::default()
            }),
            status: Some(v1::PodStatus {
                phase: "Running".into(),
                ..Default::default()
            }),
            ..Default::default()
        }
        .into_object();
        defaults::apply(&mut o);
        o
    }

    fn lease_obj() -> Object {
        let mut o = v1::Lease {
            metadata: Some(meta("lock", "default")),
            ..Default::default()
        }
        .into_object();
        defaults::apply(&mut o);
        o
    }

    fn namespace(name: &str) -> Object {
        let mut o = v1::Namespace {
            metadata: Some(meta(name, "")),
            status: Some(v1::NamespaceStatus {
                phase: "Active".into(),
            }),
            ..Default::default()
        }
        .into_object();
        defaults::apply(&mut o);
        o
    }

    fn node(name: &str) -> Object {
        v1::Node {
            metadata: Some(v1::ObjectMeta {
                name: name.into(),
                ..Default::default()
            }),
            status: Some(Default::default()),
            ..Default::default()
        }
        .into_object()
    }

    /// `o` changed by `f`.
    fn with(mut o: Object, f: impl FnOnce(&mut Object)) -> Object {
        f(&mut o);
        o
    }

    fn with_meta(o: Object, f: impl FnOnce(&mut v1::ObjectMeta)) -> Object {
        with(o, |o| {
            if let Some(m) = meta_of_mut(o) {
                f(m)
            }
        })
    }

    fn with_pod(o: Object, f: impl FnOnce(&mut v1::Pod)) -> Object {
        with(o, |o| {
            if let Some(object::Kind::Pod(p)) = o.kind.as_mut() {
                f(p)
            }
        })
    }

    fn pod_spec(p: &mut v1::Pod) -> &mut v1::PodSpec {
        p.spec.get_or_insert_with(Default::default)
    }

    fn phase(o: Object, phase: &str) -> Object {
        with(o, |o| match o.kind.as_mut() {
            Some(object::Kind::Pod(p)) => {
                p.status.get_or_insert_with(Default::default).phase = phase.into()
            }
            Some(object::Kind::Namespace(n)) => {
                n.status.get_or_insert_with(Default::default).phase = phase.into()
            }
            _ => {}
        })
    }

    fn image(o: Object, image: &str) -> Object {
        with_pod(o, |p| pod_spec(p).containers[0].image = image.into())
    }

    fn rv(o: Object, rv: &str) -> Object {
        with_meta(o, |m| m.resource_version = rv.into())
    }

    fn generation(o: Object, g: i64) -> Object {
        with_meta(o, |m| m.generation = g)
    }

    fn finalizers(o: Object, f: &[&str]) -> Object {
        with_meta(o, |m| {
            m.finalizers = f.iter().map(|s| s.to_string()).collect()
        })
    }

    /// Being deleted since `ts`, with `grace`.
    fn deleting(o: Object, ts: &str, grace: i64) -> Object {
        with_meta(o, |m| {
            m.deletion_timestamp = ts.into();
            m.deletion_grace_period_seconds = Some(grace);
        })
    }

    /// `o` as read from the store: resourceVersion [`REV`], lease [`LEASE`].
    fn stored(o: Object) -> Stored {
        Stored {
            object: rv(o, &REV.to_string()),
            mod_revision: REV,
            lease: LEASE,
        }
    }

    #[derive(Debug, PartialEq)]
    enum UpdateOutcome {
        ReadAgain,
        /// The object to write (without resourceVersion) and its lease.
        Put(Object, i64),
        Remove(Object),
        /// The error, as the client reads it.
        Err(String),
    }

    /// One attempt of the registry's update, minus the IO: check, merge,
    /// (authorize: allowed), plan.
    fn decide_update(
        sent: Object,
        lease: i64,
        status_only: bool,
        stored: Option<&Stored>,
        after_barrier: bool,
    ) -> UpdateOutcome {
        let run = || -> Result<UpdateOutcome> {
            let req = Update::new(sent, lease, status_only)?;
            let cur = match check_update(&req, stored, after_barrier)? {
                Precondition::Met(cur) => cur,
                Precondition::ReadAgain => return Ok(UpdateOutcome::ReadAgain),
            };
            let new = merge_update(&req, &cur.object);
            Ok(match plan_update(&req, cur, new)? {
                UpdatePlan::Put { object, lease } => UpdateOutcome::Put(object, lease),
                UpdatePlan::Remove { object } => UpdateOutcome::Remove(object),
            })
        };
        run().unwrap_or_else(|e| UpdateOutcome::Err(e.to_string()))
    }

    struct UpdateCase {
        name: &'static str,
        stored: Option<Object>,
        /// The object the client sends.
        sent: Object,
        status_only: bool,
        lease: i64,
        after_barrier: bool,
        want: UpdateOutcome,
    }

    /// A spec update of `sent` over `stored`, read after a barrier, no lease.
    fn spec_update(
        name: &'static str,
        stored: Object,
        sent: Object,
        want: UpdateOutcome,
    ) -> UpdateCase {
        UpdateCase {
            name,
            stored: Some(stored),
            sent,
            status_only: false,
            lease: 0,
            after_barrier: true,
            want,
        }
    }

    fn status_update(
        name: &'static str,
        stored: Object,
        sent: Object,
        want: UpdateOutcome,
    ) -> UpdateCase {
        UpdateCase {
            status_only: true,
            ..spec_update(name, stored, sent, want)
        }
    }

    /// Every kind with a status has it copied by a status update and
    /// cleared on create (a Node keeps the status it registers with).
    #[test]
    fn every_kind_with_a_status_has_it_copied_and_cleared() {
        for kind in Kind::ALL {
            let has = |o: &Object| {
                keelson_model::for_kind!(kind, T => {
                    let x = T::from_object(o.clone()).expect("kind");
                    !serde_json::to_value(&x).expect("json")["status"].is_null()
                })
            };
            let with_status = keelson_model::for_kind!(kind, T => {
                let v = serde_json::json!({"metadata": {"name": "x"}, "status": {}});
                match serde_json::from_value::<T>(v) {
                    Ok(x) => x.into_object(),
                    // A kind whose wire shape has no status.
                    Err(_) => continue,
                }
            });
            let mut dst = keelson_model::for_kind!(kind, T => T::default().into_object());
            copy_status(&mut dst, &with_status);
            assert_eq!(has(&dst), kind.has_status(), "{kind}: status copied");
            let mut cleared = with_status.clone();
            clear_status(&mut cleared);
            assert_eq!(
                has(&cleared),
                kind == Kind::Node || !kind.has_status(),
                "{kind}: status cleared"
            );
        }
    }

    fn err(msg: &str) -> UpdateOutcome {
        UpdateOutcome::Err(msg.to_string())
    }

    #[test]
    fn update_table() {
        use UpdateOutcome::{Put, ReadAgain, Remove};
        let bound = pod("n1");
        let deleting_bound = finalizers(deleting(pod("n1"), &at(0), 30), &["example.com/hold"]);
        let cases = vec![
            // resourceVersion and presence
            UpdateCase {
                after_barrier: false,
                ..spec_update("absent on a local read: read again", pod(""), pod(""), ReadAgain)
            }
            .without_stored(),
            spec_update("absent after a barrier: not found", pod(""), pod(""), err("pods \"web\" not found"))
                .without_stored(),
            UpdateCase {
                after_barrier: false,
                ..spec_update(
                    "resourceVersion ahead on a local read: this replica is behind, read again",
                    pod(""),
                    rv(pod(""), "9"),
                    ReadAgain,
                )
            },
            spec_update(
                "resourceVersion ahead after a barrier: conflict",
                pod(""),
                rv(pod(""), "9"),
                err("conflict: Pod \"web\" was modified (resourceVersion 9 is now 7); read it again and retry"),
            ),
            UpdateCase {
                after_barrier: false,
                ..spec_update(
                    "resourceVersion behind on a local read: conflict",
                    pod(""),
                    rv(pod(""), "5"),
                    err("conflict: Pod \"web\" was modified (resourceVersion 5 is now 7); read it again and retry"),
                )
            },
            spec_update(
                "resourceVersion that is not a revision",
                pod(""),
                rv(pod(""), "abc"),
                err("resourceVersion \"abc\" is not a revision"),
            ),
            UpdateCase {
                after_barrier: false,
                ..spec_update(
                    "matching resourceVersion on a local read: spec change bumps generation, keeps the lease",
                    pod(""),
                    rv(image(pod(""), "nginx:1.26"), "7"),
                    Put(generation(image(pod(""), "nginx:1.26"), 2), LEASE),
                )
            },
            spec_update(
                "no resourceVersion: unconditional",
                pod(""),
                image(pod(""), "nginx:1.26"),
                Put(generation(image(pod(""), "nginx:1.26"), 2), LEASE),
            ),
            // request checks
            spec_update("empty object", pod(""), Object::default(), err("empty object")),
            status_update(
                "status update of a kind without a status",
                lease_obj(),
                lease_obj(),
                err("Lease has no status to update"),
            ),
            // spec update: what is kept
            spec_update(
                "spec update keeps the stored status",
                pod(""),
                phase(image(pod(""), "nginx:1.26"), "Failed"),
                Put(generation(image(pod(""), "nginx:1.26"), 2), LEASE),
            ),
            spec_update(
                "spec update keeps the metadata the server owns",
                deleting_bound.clone(),
                with_meta(deleting_bound.clone(), |m| {
                    m.uid = "forged".into();
                    m.creation_timestamp = "2000-01-01T00:00:00Z".into();
                    m.deletion_timestamp = String::new();
                    m.deletion_grace_period_seconds = None;
                    m.generation = 99;
                    m.namespace = String::new(); // scoped to "default"
                    m.labels.insert("tier".into(), "front".into());
                }),
                Put(
                    with_meta(deleting_bound.clone(), |m| {
                        m.labels.insert("tier".into(), "front".into());
                    }),
                    LEASE,
                ),
            ),
            spec_update(
                "spec update without a spec change keeps the generation",
                pod(""),
                with_meta(pod(""), |m| {
                    m.annotations.insert("note".into(), "x".into());
                }),
                Put(
                    with_meta(pod(""), |m| {
                        m.annotations.insert("note".into(), "x".into());
                    }),
                    LEASE,
                ),
            ),
            spec_update(
                "spec update applies the defaults before comparing specs",
                pod(""),
                with_pod(pod(""), |p| {
                    let s = pod_spec(p);
                    s.restart_policy = String::new();
                    s.termination_grace_period_seconds = None;
                    p.api_version = String::new();
                }),
                Put(pod(""), LEASE),
            ),
            UpdateCase {
                lease: 99,
                ..spec_update("a lease sent replaces the stored one", pod(""), pod(""), Put(pod(""), 99))
            },
            // status update: what is kept
            status_update(
                "status update takes the status only",
                finalizers(pod("n1"), &["example.com/hold"]),
                with_meta(phase(image(pod("n2"), "nginx:1.26"), "Failed"), |m| {
                    m.labels.clear();
                    m.annotations.insert("note".into(), "x".into());
                    m.owner_references.push(v1::OwnerReference {
                        api_version: "apps/v1".into(),
                        kind: "ReplicaSet".into(),
                        name: "web-1".into(),
                        uid: "uid-rs".into(),
                        ..Default::default()
                    });
                    m.generation = 5;
                }),
                Put(phase(finalizers(pod("n1"), &["example.com/hold"]), "Failed"), LEASE),
            ),
            status_update(
                "status update of a deleting pod keeps its finalizer",
                deleting_bound.clone(),
                phase(finalizers(deleting_bound.clone(), &[]), "Succeeded"),
                Put(phase(deleting_bound.clone(), "Succeeded"), LEASE),
            ),
            // validation
            spec_update(
                "invalid object",
                pod(""),
                image(pod(""), ""),
                err("Pod \"web\" is invalid: spec.containers[0].image: Required value"),
            ),
            spec_update(
                "validate_update: a bound pod's node is fixed",
                bound.clone(),
                with_pod(bound.clone(), |p| pod_spec(p).node_name = "n2".into()),
                err("Pod \"web\" is invalid: spec.nodeName: Invalid value \"n2\": may not be changed once set (was \"n1\")"),
            ),
            // the last finalizer
            spec_update(
                "last finalizer of a deleting object gone: remove",
                deleting(finalizers(lease_obj(), &["example.com/hold"]), &at(0), 0),
                deleting(lease_obj(), &at(0), 0),
                Remove(deleting(lease_obj(), &at(0), 0)),
            ),
            spec_update(
                "a finalizer left: put",
                deleting(finalizers(lease_obj(), &["a", "b"]), &at(0), 0),
                finalizers(lease_obj(), &["b"]),
                Put(deleting(finalizers(lease_obj(), &["b"]), &at(0), 0), LEASE),
            ),
            spec_update(
                "finalizers gone but not deleting: put",
                finalizers(lease_obj(), &["a"]),
                lease_obj(),
                Put(lease_obj(), LEASE),
            ),
            spec_update(
                "last finalizer of an unbound deleting pod gone: remove",
                deleting(finalizers(pod(""), &["a"]), &at(0), 0),
                pod(""),
                Remove(deleting(pod(""), &at(0), 0)),
            ),
            spec_update(
                "last finalizer of a bound pod its node has not confirmed: put",
                deleting_bound.clone(),
                finalizers(deleting_bound.clone(), &[]),
                Put(finalizers(deleting_bound.clone(), &[]), LEASE),
            ),
            spec_update(
                "last finalizer of a bound pod confirmed with grace 0: remove",
                deleting(finalizers(pod("n1"), &["a"]), &at(0), 0),
                pod("n1"),
                Remove(deleting(pod("n1"), &at(0), 0)),
            ),
            spec_update(
                "last finalizer of a namespace: put (the sweep removes it)",
                phase(deleting(finalizers(namespace("team-a"), &["a"]), &at(0), 0), "Terminating"),
                namespace("team-a"),
                Put(phase(deleting(namespace("team-a"), &at(0), 0), "Terminating"), LEASE),
            ),
        ];
        let mut failed = Vec::new();
        for c in cases {
            let stored = c.stored.map(stored);
            let got = decide_update(
                c.sent,
                c.lease,
                c.status_only,
                stored.as_ref(),
                c.after_barrier,
            );
            if got != c.want {
                failed.push(format!("{}:\n  got  {got:?}\n  want {:?}", c.name, c.want));
            }
        }
        assert!(failed.is_empty(), "{}", failed.join("\n"));
    }

    impl UpdateCase {
        fn without_stored(self) -> UpdateCase {
            UpdateCase {
                stored: None,
                ..self
            }
        }
    }

    struct DeleteCase {
        name: &'static str,
        kind: Kind,
        stored: Object,
        options: DeleteOptions,
        want: Result<DeletePlan, &'static str>,
    }

    fn delete_case(
        name: &'static str,
        stored: Object,
        options: DeleteOptions,
        want: Result<DeletePlan, &'static str>,
    ) -> DeleteCase {
        DeleteCase {
            name,
            kind: kind_of(&stored).unwrap_or(Kind::Pod),
            stored,
            options,
            want,
        }
    }

    fn grace(secs: i64) -> DeleteOptions {
        DeleteOptions {
            grace_period_seconds: Some(secs),
            ..Default::default()
        }
    }

    fn policy(p: &str) -> DeleteOptions {
        DeleteOptions {
            propagation_policy: p.into(),
            ..Default::default()
        }
    }

    fn with_tgps(o: Object, secs: Option<i64>) -> Object {
        with_pod(o, |p| pod_spec(p).termination_grace_period_seconds = secs)
    }

    fn marked(o: Object) -> Result<DeletePlan, &'static str> {
        Ok(DeletePlan::Mark(Box::new(rv(o, "7"))))
    }

    #[test]
    fn delete_table() {
        use DeletePlan::{Remove, Unchanged};
        let none = DeleteOptions::default;
        let max = GRACE_PERIOD_MAX_SECS;
        let cases = vec![
            // request checks
            delete_case(
                "a system namespace is refused",
                namespace("default"),
                none(),
                Err("forbidden: namespace \"default\" cannot be deleted"),
            ),
            delete_case(
                "an unknown propagation policy is refused",
                pod(""),
                policy("Sideways"),
                Err("propagationPolicy \"Sideways\" is not Background, Foreground or Orphan"),
            ),
            delete_case(
                "a negative grace period is refused",
                pod(""),
                grace(-1),
                Err("gracePeriodSeconds must not be negative"),
            ),
            // preconditions
            delete_case(
                "uid precondition not met",
                pod(""),
                DeleteOptions {
                    precondition_uid: "uid-other".into(),
                    ..Default::default()
                },
                Err("conflict: Pod \"web\" has uid uid-web, not uid-other"),
            ),
            delete_case(
                "uid precondition met",
                pod(""),
                DeleteOptions {
                    precondition_uid: "uid-web".into(),
                    ..Default::default()
                },
                Ok(Remove),
            ),
            delete_case(
                "resourceVersion precondition not met",
                pod(""),
                DeleteOptions {
                    precondition_resource_version: "6".into(),
                    ..Default::default()
                },
                Err("conflict: Pod \"web\" has resourceVersion 7, not 6"),
            ),
            delete_case(
                "resourceVersion precondition met",
                pod(""),
                DeleteOptions {
                    precondition_resource_version: "7".into(),
                    ..Default::default()
                },
                Ok(Remove),
            ),
            // remove now
            delete_case("an unbound pod goes now", pod(""), none(), Ok(Remove)),
            delete_case(
                "an unbound pod ignores the grace sent",
                pod(""),
                grace(10),
                Ok(Remove),
            ),
            delete_case(
                "Background is the default",
                lease_obj(),
                policy("Background"),
                Ok(Remove),
            ),
            // finalizers
            delete_case(
                "Orphan adds the orphan finalizer and marks",
                lease_obj(),
                policy("Orphan"),
                marked(deleting(finalizers(lease_obj(), &["orphan"]), &at(0), 0)),
            ),
            delete_case(
                "Foreground adds foregroundDeletion after the others",
                finalizers(lease_obj(), &["a"]),
                policy("Foreground"),
                marked(deleting(
                    finalizers(lease_obj(), &["a", "foregroundDeletion"]),
                    &at(0),
                    0,
                )),
            ),
            delete_case(
                "a finalizer holds the object: marked",
                finalizers(lease_obj(), &["a"]),
                none(),
                marked(deleting(finalizers(lease_obj(), &["a"]), &at(0), 0)),
            ),
            delete_case(
                "already marked and held: unchanged, no write",
                deleting(finalizers(lease_obj(), &["a"]), "2024-05-01T11:00:00Z", 0),
                none(),
                Ok(Unchanged),
            ),
            delete_case(
                "the policy's finalizer already there: unchanged",
                deleting(
                    finalizers(lease_obj(), &["orphan"]),
                    "2024-05-01T11:00:00Z",
                    0,
                ),
                policy("Orphan"),
                Ok(Unchanged),
            ),
            delete_case(
                "a new policy on a marked object adds its finalizer, keeps the timestamp",
                deleting(finalizers(lease_obj(), &["a"]), "2024-05-01T11:00:00Z", 0),
                policy("Orphan"),
                marked(deleting(
                    finalizers(lease_obj(), &["a", "orphan"]),
                    "2024-05-01T11:00:00Z",
                    0,
                )),
            ),
            // bound pods: grace
            delete_case(
                "bound pod: the request's grace",
                pod("n1"),
                grace(10),
                marked(deleting(pod("n1"), &at(10), 10)),
            ),
            delete_case(
                "bound pod: its terminationGracePeriodSeconds",
                with_tgps(pod("n1"), Some(45)),
                none(),
                marked(deleting(with_tgps(pod("n1"), Some(45)), &at(45), 45)),
            ),
            delete_case(
                "bound pod: 30 seconds when it sets none",
                with_tgps(pod("n1"), None),
                none(),
                marked(deleting(with_tgps(pod("n1"), None), &at(30), 30)),
            ),
            delete_case(
                "bound pod: its own grace clamped to the maximum",
                with_tgps(pod("n1"), Some(max + 1)),
                none(),
                marked(deleting(
                    with_tgps(pod("n1"), Some(max + 1)),
                    &at(max as u64),
                    max,
                )),
            ),
            delete_case(
                "bound pod: the request's grace clamped in the timestamp only",
                pod("n1"),
                grace(max + 1),
                marked(deleting(pod("n1"), &at(max as u64), max + 1)),
            ),
            delete_case(
                "bound pod: grace 0 goes now",
                pod("n1"),
                grace(0),
                Ok(Remove),
            ),
            delete_case(
                "bound pod: a shorter grace replaces a longer one",
                deleting(pod("n1"), "2024-05-01T12:00:30Z", 30),
                grace(5),
                marked(deleting(pod("n1"), &at(5), 5)),
            ),
            delete_case(
                "bound pod: a longer grace does not replace a shorter one",
                deleting(pod("n1"), "2024-05-01T12:00:05Z", 5),
                grace(30),
                Ok(Unchanged),
            ),
            delete_case(
                "bound pod: the node confirms with grace 0",
                deleting(pod("n1"), "2024-05-01T11:59:30Z", 30),
                grace(0),
                Ok(Remove),
            ),
            delete_case(
                "bound pod: confirmed, but a finalizer holds it",
                finalizers(deleting(pod("n1"), "2024-05-01T11:59:30Z", 30), &["a"]),
                grace(0),
                marked(finalizers(deleting(pod("n1"), &at(0), 0), &["a"])),
            ),
            // namespaces
            delete_case(
                "a namespace is marked Terminating",
                namespace("team-a"),
                none(),
                marked(phase(
                    deleting(namespace("team-a"), &at(0), 0),
                    "Terminating",
                )),
            ),
            delete_case(
                "a terminating namespace: unchanged",
                phase(
                    deleting(namespace("team-a"), "2024-05-01T11:00:00Z", 0),
                    "Terminating",
                ),
                none(),
                Ok(Unchanged),
            ),
            delete_case("a node goes now", node("n1"), none(), Ok(Remove)),
        ];
        let mut failed = Vec::new();
        for c in cases {
            let name = meta_of(&c.stored)
                .map(|m| m.name.clone())
                .unwrap_or_default();
            let stored = stored(c.stored);
            let got = Delete::new(c.kind, &name, &c.options)
                .and_then(|req| plan_delete(&req, &stored, now()))
                .map_err(|e| e.to_string());
            let want = c.want.map_err(str::to_string);
            if got != want {
                failed.push(format!("{}:\n  got  {got:?}\n  want {want:?}", c.name));
            }
        }
        assert!(failed.is_empty(), "{}", failed.join("\n"));
    }

    #[test]
    fn namespace_sweep_table() {
        let terminating = |f: &[&str]| finalizers(deleting(namespace("team-a"), &at(0), 0), f);
        let lease_deleting = deleting(lease_obj(), &at(0), 0);
        /// (case, the namespace, the objects left in it, what the sweep does)
        type Case = (&'static str, Object, Vec<(Kind, Object)>, NamespaceSweep);
        let cases: Vec<Case> = vec![
            (
                "an active namespace: nothing",
                namespace("team-a"),
                vec![(Kind::Pod, pod(""))],
                NamespaceSweep::default(),
            ),
            (
                "terminating and empty: removed",
                terminating(&[]),
                vec![],
                NamespaceSweep {
                    delete: vec![],
                    remove: true,
                },
            ),
            (
                "terminating and empty, with a finalizer: kept",
                terminating(&["a"]),
                vec![],
                NamespaceSweep::default(),
            ),
            (
                "objects left: deleted unless already deleting; the namespace stays",
                terminating(&[]),
                vec![
                    (Kind::Pod, pod("n1")),
                    (Kind::Lease, lease_deleting.clone()),
                ],
                NamespaceSweep {
                    delete: vec![(Kind::Pod, "web".into())],
                    remove: false,
                },
            ),
            (
                "only objects on their way out: wait",
                terminating(&[]),
                vec![(Kind::Lease, lease_deleting)],
                NamespaceSweep::default(),
            ),
        ];
        for (name, ns, left, want) in cases {
            assert_eq!(sweep_namespace(&ns, &left), want, "{name}");
        }
        assert!(!namespace_removable(&namespace("team-a")));
        assert!(namespace_removable(&terminating(&[])));
        assert!(!namespace_removable(&terminating(&["a"])));
    }

    #[test]
    fn create_table() {
        let generated = || Generated {
            uid: "uid-new".into(),
            name_suffix: "x7k2q".into(),
        };
        // What the server sets on the pod the client sends as `pod("")`.
        let created = |name: &str| {
            with_meta(phase(pod(""), "Pending"), |m| {
                m.name = name.into();
                m.uid = "uid-new".into();
                m.creation_timestamp = at(0);
            })
        };
        /// (case, the object sent, Ok((namespace, name, object)) or the error)
        type Case = (
            &'static str,
            Object,
            Result<(&'static str, &'static str, Object), &'static str>,
        );
        let cases: Vec<Case> = vec![
            (
                "server-set metadata; the status cleared then defaulted",
                with_meta(phase(pod(""), "Running"), |m| {
                    m.uid = "forged".into();
                    m.creation_timestamp = "2000-01-01T00:00:00Z".into();
                    m.resource_version = "3".into();
                    m.generation = 9;
                    m.deletion_timestamp = at(0);
                    m.deletion_grace_period_seconds = Some(0);
                    m.namespace = String::new();
                }),
                Ok(("default", "web", created("web"))),
            ),
            (
                "generateName gets the suffix",
                with_meta(pod(""), |m| {
                    m.name = String::new();
                    m.generate_name = "web-".into();
                }),
                Ok((
                    "default",
                    "web-x7k2q",
                    with_meta(created("web-x7k2q"), |m| m.generate_name = "web-".into()),
                )),
            ),
            (
                "a cluster-scoped kind has no namespace; a node keeps its status",
                with_meta(node("n1"), |m| m.namespace = "default".into()),
                Ok((
                    "",
                    "n1",
                    with(
                        with_meta(node("n1"), |m| {
                            m.uid = "uid-new".into();
                            m.creation_timestamp = at(0);
                            m.generation = 1;
                        }),
                        defaults::apply,
                    ),
                )),
            ),
            ("an empty object", Object::default(), Err("empty object")),
            (
                "invalid",
                image(pod(""), ""),
                Err("Pod \"web\" is invalid: spec.containers[0].image: Required value"),
            ),
        ];
        for (name, sent, want) in cases {
            let got = plan_create(sent, generated(), now())
                .map(|p| {
                    assert_eq!(kind_of(&p.object), Some(p.kind), "{name}");
                    (p.namespace, p.name, p.object)
                })
                .map_err(|e| e.to_string());
            let want = want
                .map(|(ns, n, o)| (ns.to_string(), n.to_string(), o))
                .map_err(str::to_string);
            assert_eq!(got, want, "{name}");
        }
    }

    #[test]
    fn deletion_timestamps_are_clamped() {
        assert_eq!(deletion_timestamp(now(), 0), "2024-05-01T12:00:00Z");
        assert_eq!(deletion_timestamp(now(), 90), "2024-05-01T12:01:30Z");
        assert_eq!(deletion_timestamp(now(), -5), "2024-05-01T12:00:00Z");
        assert_eq!(
            deletion_timestamp(now(), i64::MAX),
            at(GRACE_PERIOD_MAX_SECS.unsigned_abs())
        );
    }
}
