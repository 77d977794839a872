//! Typed objects in the store: `/registry/<resource>/<namespace>/<name>`
//! holds the object as protobuf; its resourceVersion is the key's mod
//! revision. Every write is a store transaction that compares a revision,
//! so concurrent writers never overwrite each other blindly.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use keelson_model::selector::{FieldSelector, LabelSelector};
use keelson_model::time::format_rfc3339;
use keelson_model::validation::GRACE_PERIOD_MAX_SECS;
use keelson_model::{defaults, kind_of, meta_of, meta_of_mut, validation, Kind, Object};
use keelson_proto::api::object;
use keelson_proto::etcdserverpb as pb;
use keelson_proto::mvccpb;
use keelson_proto::raft::{command, command_result, Command};
use keelson_store::server::Replica;

use crate::error::{Error, Result};

/// Keys read from the store per step of a list (the state lock is held
/// for one step at a time).
const LIST_CHUNK_KEYS: i64 = 500;
/// Attempts at an update or delete that races with other writers before
/// giving up with a conflict (only when the client sent no resourceVersion).
const WRITE_ATTEMPTS_MAX: usize = 8;
/// Grace period of a pod that does not set terminationGracePeriodSeconds.
pub const POD_GRACE_DEFAULT_SECS: i64 = 30;
/// Namespaces that exist from the start and cannot be deleted.
pub const SYSTEM_NAMESPACES: [&str; 3] = ["default", "kube-node-lease", "kube-system"];

/// The store access of the API server.
#[derive(Clone)]
pub struct Registry {
    pub(crate) replica: Arc<Replica>,
}

/// A stored object and its key's revisions.
pub struct Stored {
    pub object: Object,
    pub mod_revision: i64,
    pub lease: i64,
}

pub struct ListOptions<'a> {
    pub namespace: &'a str,
    pub labels: &'a LabelSelector,
    pub fields: &'a FieldSelector,
    pub limit: i64,
    pub continue_token: &'a str,
    /// Read this replica's state without a read barrier.
    pub local: bool,
}

pub struct ListResult {
    pub items: Vec<Object>,
    pub revision: i64,
    pub continue_token: String,
}

/// Options of a delete request.
#[derive(Default)]
pub struct DeleteOptions {
    pub grace_period_seconds: Option<i64>,
    pub propagation_policy: String,
    pub precondition_uid: String,
    pub precondition_resource_version: String,
}

/// `secs` (clamped to `0..=GRACE_PERIOD_MAX_SECS`) from now, in RFC 3339.
fn rfc3339_in(secs: i64) -> String {
    let secs = secs.clamp(0, GRACE_PERIOD_MAX_SECS) as u64;
    let now = SystemTime::now();
    let t = now.checked_add(Duration::from_secs(secs)).unwrap_or(now);
    format_rfc3339(t)
}

/// The end of a prefix range (etcd's `--prefix`).
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

pub fn parse_revision(rv: &str) -> Result<Option<i64>> {
    if rv.is_empty() {
        return Ok(None);
    }
    rv.parse::<i64>()
        .ok()
        .filter(|r| *r >= 0)
        .map(Some)
        .ok_or_else(|| Error::BadRequest(format!("resourceVersion {rv:?} is not a revision")))
}

/// Decode a stored key-value as an object with its resourceVersion.
pub fn decode_kv(kind: Kind, kv: &mvccpb::KeyValue) -> Result<Object> {
    let mut o = keelson_model::decode(kind, &kv.value).map_err(|e| {
        Error::Internal(format!("decode {}: {e}", String::from_utf8_lossy(&kv.key)))
    })?;
    if let Some(m) = meta_of_mut(&mut o) {
        m.resource_version = kv.mod_revision.to_string();
    }
    Ok(o)
}

fn put_op(key: &str, value: Vec<u8>, lease: i64) -> pb::RequestOp {
    pb::RequestOp {
        request: Some(pb::request_op::Request::RequestPut(pb::PutRequest {
            key: key.as_bytes().to_vec(),
            value,
            lease,
            ..Default::default()
        })),
    }
}

fn delete_op(key: &str) -> pb::RequestOp {
    pb::RequestOp {
        request: Some(pb::request_op::Request::RequestDeleteRange(
            pb::DeleteRangeRequest {
                key: key.as_bytes().to_vec(),
                ..Default::default()
            },
        )),
    }
}

fn compare_mod(key: &str, rev: i64) -> pb::Compare {
    pb::Compare {
        result: pb::compare::CompareResult::Equal as i32,
        target: pb::compare::CompareTarget::Mod as i32,
        key: key.as_bytes().to_vec(),
        range_end: Vec::new(),
        target_union: Some(pb::compare::TargetUnion::ModRevision(rev)),
    }
}

fn compare_absent(key: &str) -> pb::Compare {
    pb::Compare {
        result: pb::compare::CompareResult::Equal as i32,
        target: pb::compare::CompareTarget::Create as i32,
        key: key.as_bytes().to_vec(),
        range_end: Vec::new(),
        target_union: Some(pb::compare::TargetUnion::CreateRevision(0)),
    }
}

/// The object without its resourceVersion, as stored.
fn encode_for_store(o: &Object) -> Vec<u8> {
    let mut o = o.clone();
    if let Some(m) = meta_of_mut(&mut o) {
        m.resource_version.clear();
    }
    keelson_model::encode(&o)
}

fn with_rv(mut o: Object, rev: i64) -> Object {
    if let Some(m) = meta_of_mut(&mut o) {
        m.resource_version = rev.to_string();
    }
    o
}

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
        _ => {}
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

impl Registry {
    pub fn new(replica: Arc<Replica>) -> Registry {
        Registry { replica }
    }

    /// The current store revision on this replica.
    pub fn revision(&self) -> i64 {
        self.replica.sm().read().revision()
    }

    pub async fn barrier(&self) -> Result<()> {
        Ok(self.replica.read_barrier().await?)
    }

    fn read_kv(&self, key: &str) -> Result<Option<mvccpb::KeyValue>> {
        let sm = self.replica.sm().read();
        let res = sm.range(&pb::RangeRequest {
            key: key.as_bytes().to_vec(),
            ..Default::default()
        })?;
        Ok(res.kvs.into_iter().next())
    }

    /// The stored object, read locally (after a barrier when `fresh`).
    pub async fn read(
        &self,
        kind: Kind,
        ns: &str,
        name: &str,
        fresh: bool,
    ) -> Result<Option<Stored>> {
        if fresh {
            self.barrier().await?;
        }
        let Some(kv) = self.read_kv(&kind.key(ns, name))? else {
            return Ok(None);
        };
        Ok(Some(Stored {
            object: decode_kv(kind, &kv)?,
            mod_revision: kv.mod_revision,
            lease: kv.lease,
        }))
    }

    /// Get, linearizable.
    pub async fn get(&self, kind: Kind, ns: &str, name: &str) -> Result<Object> {
        self.read(kind, ns, name, true)
            .await?
            .map(|s| s.object)
            .ok_or_else(|| Error::NotFound {
                kind: kind.plural(),
                name: name.to_string(),
            })
    }

    /// List at one revision, filtered by selectors, in pages.
    pub async fn list(&self, kind: Kind, opts: ListOptions<'_>) -> Result<ListResult> {
        let prefix = kind.prefix(opts.namespace);
        let (revision, mut start) = if opts.continue_token.is_empty() {
            if !opts.local {
                self.barrier().await?;
            }
            (self.revision(), prefix.as_bytes().to_vec())
        } else {
            let bad = || Error::BadRequest("continue token is not valid for this list".into());
            let (rev, key) = opts.continue_token.split_once(':').ok_or_else(bad)?;
            let rev: i64 = rev.parse().map_err(|_| bad())?;
            let mut key = unhex(key).ok_or_else(bad)?;
            if !key.starts_with(prefix.as_bytes()) {
                return Err(bad());
            }
            key.push(0); // the next key after the last one returned
            if rev > self.revision() {
                // Another replica served the earlier pages: catch up.
                self.barrier().await?;
            }
            (rev, key)
        };
        let end = prefix_end(prefix.as_bytes());
        let limit = if opts.limit > 0 {
            opts.limit as usize
        } else {
            usize::MAX
        };
        let mut items = Vec::new();
        let mut last_key: Option<Vec<u8>> = None;
        loop {
            let res = {
                let sm = self.replica.sm().read();
                sm.range(&pb::RangeRequest {
                    key: start.clone(),
                    range_end: end.clone(),
                    revision,
                    limit: LIST_CHUNK_KEYS,
                    ..Default::default()
                })
            }
            .map_err(|e| match e {
                keelson_store::Error::Compacted => {
                    Error::Expired(format!("the list's revision {revision} has been compacted"))
                }
                e => e.into(),
            })?;
            for kv in &res.kvs {
                let o = decode_kv(kind, kv)?;
                let labels_ok = meta_of(&o).is_some_and(|m| opts.labels.matches(&m.labels));
                if labels_ok && opts.fields.matches(&o) {
                    items.push(o);
                }
                last_key = Some(kv.key.clone());
                if items.len() >= limit {
                    break;
                }
            }
            let full = items.len() >= limit;
            let more_in_store =
                res.more || (full && last_key.as_ref() != res.kvs.last().map(|kv| &kv.key));
            if full {
                // A continue token only if something may follow.
                let more = more_in_store || {
                    let sm = self.replica.sm().read();
                    let mut next = last_key.clone().unwrap_or_default();
                    next.push(0);
                    sm.range(&pb::RangeRequest {
                        key: next,
                        range_end: end.clone(),
                        revision,
                        limit: 1,
                        count_only: true,
                        ..Default::default()
                    })
                    .map(|r| r.count > 0)
                    .unwrap_or(false)
                };
                let continue_token = match (&last_key, more) {
                    (Some(k), true) => format!("{revision}:{}", hex(k)),
                    _ => String::new(),
                };
                return Ok(ListResult {
                    items,
                    revision,
                    continue_token,
                });
            }
            if !res.more {
                return Ok(ListResult {
                    items,
                    revision,
                    continue_token: String::new(),
                });
            }
            let Some(k) = res.kvs.last() else {
                return Ok(ListResult {
                    items,
                    revision,
                    continue_token: String::new(),
                });
            };
            start = k.key.clone();
            start.push(0);
        }
    }

    /// Run a transaction; Ok((succeeded, revision after, response)).
    async fn txn(
        &self,
        compare: Vec<pb::Compare>,
        success: Vec<pb::RequestOp>,
        failure: Vec<pb::RequestOp>,
    ) -> Result<(bool, i64)> {
        let res = self
            .replica
            .propose(Command {
                kind: Some(command::Kind::Txn(pb::TxnRequest {
                    compare,
                    success,
                    failure,
                })),
            })
            .await?;
        match res.kind {
            Some(command_result::Kind::Txn(t)) => Ok((t.succeeded, res.revision)),
            Some(command_result::Kind::Error(e)) => {
                Err(keelson_store::Error::from_parts(e.code, &e.message).into())
            }
            other => Err(Error::Internal(format!("unexpected txn result {other:?}"))),
        }
    }

    /// The namespace an object is created in must exist and not be
    /// terminating; returns its mod revision to compare on.
    async fn live_namespace(&self, ns: &str) -> Result<i64> {
        let mut found = self.read(Kind::Namespace, "", ns, false).await?;
        if found.is_none() {
            found = self.read(Kind::Namespace, "", ns, true).await?;
        }
        let Some(s) = found else {
            return Err(Error::NotFound {
                kind: "namespaces",
                name: ns.to_string(),
            });
        };
        if meta_of(&s.object).is_some_and(|m| !m.deletion_timestamp.is_empty()) {
            return Err(Error::Forbidden(format!(
                "namespace {ns:?} is being terminated; nothing new can be created in it"
            )));
        }
        Ok(s.mod_revision)
    }

    /// Create: defaults, server-set metadata, validation, then a
    /// transaction that fails if the name is taken (or the namespace
    /// changed meanwhile).
    pub async fn create(&self, mut obj: Object, lease: i64) -> Result<Object> {
        let kind = kind_of(&obj).ok_or_else(|| Error::BadRequest("empty object".into()))?;
        clear_status(&mut obj);
        defaults::apply(&mut obj);
        let (ns, _) = scope(kind, &mut obj);
        if let Some(m) = meta_of_mut(&mut obj) {
            if m.name.is_empty() && !m.generate_name.is_empty() {
                m.name = format!("{}{}", m.generate_name, random_suffix());
            }
            m.uid = uuid::Uuid::new_v4().to_string();
            m.creation_timestamp = format_rfc3339(SystemTime::now());
            m.resource_version.clear();
            m.deletion_timestamp.clear();
            m.deletion_grace_period_seconds = None;
            m.generation = 1;
        }
        let name = meta_of(&obj).map(|m| m.name.clone()).unwrap_or_default();
        validation::validate(&obj).map_err(|p| invalid(kind, &name, p))?;
        let key = kind.key(&ns, &name);
        for _ in 0..WRITE_ATTEMPTS_MAX {
            let mut compare = vec![compare_absent(&key)];
            if kind.namespaced() {
                let ns_rev = self.live_namespace(&ns).await?;
                compare.push(compare_mod(&Kind::Namespace.key("", &ns), ns_rev));
            }
            let (ok, rev) = self
                .txn(
                    compare,
                    vec![put_op(&key, encode_for_store(&obj), lease)],
                    vec![],
                )
                .await?;
            if ok {
                return Ok(with_rv(obj, rev));
            }
            if self.read(kind, &ns, &name, true).await?.is_some() {
                return Err(Error::AlreadyExists {
                    kind: kind.plural(),
                    name,
                });
            }
            // The namespace changed under us: check it again.
        }
        Err(Error::Conflict(format!(
            "{kind} {name:?}: too many concurrent changes"
        )))
    }

    /// Update the spec (status kept) or, with `status_only`, the status
    /// (everything else kept). A resourceVersion in the object makes it a
    /// compare-and-swap. `authorize(old, new)` runs before writing.
    pub async fn update(
        &self,
        mut obj: Object,
        lease: i64,
        status_only: bool,
        authorize: &(dyn Fn(&Object, &Object) -> Result<()> + Send + Sync),
    ) -> Result<Object> {
        let kind = kind_of(&obj).ok_or_else(|| Error::BadRequest("empty object".into()))?;
        if status_only && !kind.has_status() {
            return Err(Error::BadRequest(format!("{kind} has no status to update")));
        }
        let (ns, name) = scope(kind, &mut obj);
        let client_rv = parse_revision(
            &meta_of(&obj)
                .map(|m| m.resource_version.clone())
                .unwrap_or_default(),
        )?;
        let not_found = || Error::NotFound {
            kind: kind.plural(),
            name: name.clone(),
        };
        for attempt in 0..WRITE_ATTEMPTS_MAX {
            // The first read is local: this replica may not have applied
            // the object's creation yet, so "absent" is only an answer
            // after a read barrier.
            let Some(cur) = self.read(kind, &ns, &name, attempt > 0).await? else {
                if attempt == 0 {
                    continue;
                }
                return Err(not_found());
            };
            if let Some(rv) = client_rv {
                if rv > cur.mod_revision && attempt == 0 {
                    continue; // this replica is behind: read again after a barrier
                }
                if rv != cur.mod_revision {
                    return Err(Error::Conflict(format!(
                        "{kind} {name:?} was modified (resourceVersion {rv} is now {}); read it again and retry",
                        cur.mod_revision
                    )));
                }
            }
            let old = &cur.object;
            let mut new = if status_only {
                let mut n = old.clone();
                copy_status(&mut n, &obj);
                n
            } else {
                let mut n = obj.clone();
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
                m.generation = o.generation + i64::from(changed && !status_only);
                m.namespace = o.namespace.clone();
                m.name = o.name.clone();
                m.resource_version.clear();
                if status_only {
                    m.labels = o.labels.clone();
                    m.annotations = o.annotations.clone();
                    m.owner_references = o.owner_references.clone();
                    m.finalizers = o.finalizers.clone();
                }
            }
            authorize(old, &new)?;
            validation::validate(&new).map_err(|p| invalid(kind, &name, p))?;
            validation::validate_update(old, &new).map_err(|p| invalid(kind, &name, p))?;
            let key = kind.key(&ns, &name);
            // The last finalizer of an object being deleted is gone: remove
            // it, unless it is a namespace (the sweep removes it once empty)
            // or a bound pod its node has not confirmed (grace 0).
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
            let op = if finished {
                delete_op(&key)
            } else {
                let lease = if lease != 0 { lease } else { cur.lease };
                put_op(&key, encode_for_store(&new), lease)
            };
            let (ok, rev) = self
                .txn(vec![compare_mod(&key, cur.mod_revision)], vec![op], vec![])
                .await?;
            if ok {
                return Ok(with_rv(new, rev));
            }
            if client_rv.is_some() {
                return Err(Error::Conflict(format!(
                    "{kind} {name:?} was modified concurrently; read it again and retry"
                )));
            }
        }
        Err(Error::Conflict(format!(
            "{kind} {name:?}: too many concurrent changes"
        )))
    }

    /// Delete. Pods bound to a node are marked (deletionTimestamp plus the
    /// grace period) and removed when the node confirms with grace 0;
    /// objects with finalizers are marked and removed when the last
    /// finalizer goes. Returns the object and whether it is gone.
    pub async fn delete(
        &self,
        kind: Kind,
        ns: &str,
        name: &str,
        opts: &DeleteOptions,
        authorize: &(dyn Fn(&Object) -> Result<()> + Send + Sync),
    ) -> Result<(Object, bool)> {
        if kind == Kind::Namespace && SYSTEM_NAMESPACES.contains(&name) {
            return Err(Error::Forbidden(format!(
                "namespace {name:?} cannot be deleted"
            )));
        }
        let policy = match opts.propagation_policy.as_str() {
            "" | "Background" => None,
            "Orphan" => Some("orphan"),
            "Foreground" => Some("foregroundDeletion"),
            other => {
                return Err(Error::BadRequest(format!(
                    "propagationPolicy {other:?} is not Background, Foreground or Orphan"
                )))
            }
        };
        if opts.grace_period_seconds.is_some_and(|g| g < 0) {
            return Err(Error::BadRequest(
                "gracePeriodSeconds must not be negative".into(),
            ));
        }
        let key = kind.key(ns, name);
        for _ in 0..WRITE_ATTEMPTS_MAX {
            let cur = self
                .read(kind, ns, name, true)
                .await?
                .ok_or_else(|| Error::NotFound {
                    kind: kind.plural(),
                    name: name.to_string(),
                })?;
            authorize(&cur.object)?;
            let meta = meta_of(&cur.object).cloned().unwrap_or_default();
            if !opts.precondition_uid.is_empty() && opts.precondition_uid != meta.uid {
                return Err(Error::Conflict(format!(
                    "{kind} {name:?} has uid {}, not {}",
                    meta.uid, opts.precondition_uid
                )));
            }
            if !opts.precondition_resource_version.is_empty()
                && opts.precondition_resource_version != cur.mod_revision.to_string()
            {
                return Err(Error::Conflict(format!(
                    "{kind} {name:?} has resourceVersion {}, not {}",
                    cur.mod_revision, opts.precondition_resource_version
                )));
            }
            let mut marked = cur.object.clone();
            let mut finalizers = meta.finalizers.clone();
            if let Some(f) = policy {
                if !finalizers.iter().any(|x| x == f) {
                    finalizers.push(f.to_string());
                }
            }
            let bound_pod =
                kind == Kind::Pod && pod_node_name(&cur.object).is_some_and(|n| !n.is_empty());
            let grace = if bound_pod {
                opts.grace_period_seconds
                    .unwrap_or_else(|| pod_grace(&cur.object))
            } else {
                0
            };
            let remove_now = finalizers.is_empty() && grace == 0 && kind != Kind::Namespace;
            let (op, gone) = if remove_now {
                (delete_op(&key), true)
            } else {
                let m = meta_of_mut(&mut marked)
                    .ok_or_else(|| Error::Internal("no metadata".into()))?;
                m.finalizers = finalizers;
                if m.deletion_timestamp.is_empty() || bound_pod {
                    // A shorter grace period may replace a longer one.
                    let prev = m.deletion_grace_period_seconds.unwrap_or(i64::MAX);
                    if m.deletion_timestamp.is_empty() || grace < prev {
                        m.deletion_timestamp = rfc3339_in(grace);
                        m.deletion_grace_period_seconds = Some(grace);
                    }
                }
                if let Some(object::Kind::Namespace(n)) = marked.kind.as_mut() {
                    n.status.get_or_insert_with(Default::default).phase = "Terminating".into();
                }
                if marked == cur.object {
                    return Ok((marked, false));
                }
                (put_op(&key, encode_for_store(&marked), cur.lease), false)
            };
            let (ok, rev) = self
                .txn(vec![compare_mod(&key, cur.mod_revision)], vec![op], vec![])
                .await?;
            if ok {
                return Ok((with_rv(marked, rev), gone));
            }
        }
        Err(Error::Conflict(format!(
            "{kind} {name:?}: too many concurrent changes"
        )))
    }

    /// Create the system namespaces if they do not exist.
    pub async fn ensure_system_namespaces(&self) -> Result<()> {
        for ns in SYSTEM_NAMESPACES {
            if self.read(Kind::Namespace, "", ns, true).await?.is_some() {
                continue;
            }
            let obj = keelson_model::Resource::into_object(keelson_proto::v1::Namespace {
                metadata: Some(keelson_proto::v1::ObjectMeta {
                    name: ns.to_string(),
                    ..Default::default()
                }),
                ..Default::default()
            });
            match self.create(obj, 0).await {
                Ok(_) | Err(Error::AlreadyExists { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

fn random_suffix() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut rng = rand::rng();
    (0..5)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

impl Registry {
    /// Remove an empty, terminating namespace (the last step of its
    /// deletion), if it has no finalizers and has not changed.
    pub async fn remove_namespace(&self, ns: &str, opts: &DeleteOptions) -> Result<()> {
        let key = Kind::Namespace.key("", ns);
        let Some(cur) = self.read(Kind::Namespace, "", ns, true).await? else {
            return Ok(());
        };
        let meta = meta_of(&cur.object).cloned().unwrap_or_default();
        if meta.deletion_timestamp.is_empty() || !meta.finalizers.is_empty() {
            return Ok(());
        }
        if !opts.precondition_resource_version.is_empty()
            && opts.precondition_resource_version != cur.mod_revision.to_string()
        {
            return Ok(());
        }
        self.txn(
            vec![compare_mod(&key, cur.mod_revision)],
            vec![delete_op(&key)],
            vec![],
        )
        .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_and_hex() {
        assert_eq!(prefix_end(b"/registry/pods/"), b"/registry/pods0".to_vec());
        assert_eq!(prefix_end(b"a\xff"), b"b".to_vec());
        assert_eq!(
            unhex(&hex(b"/registry/x\x00")),
            Some(b"/registry/x\x00".to_vec())
        );
        assert_eq!(unhex("zz"), None);
        assert_eq!(unhex("abc"), None);
    }

    #[test]
    fn revisions_parse() {
        assert_eq!(parse_revision("").ok(), Some(None));
        assert_eq!(parse_revision("42").ok(), Some(Some(42)));
        assert!(parse_revision("-1").is_err());
        assert!(parse_revision("abc").is_err());
    }
}
