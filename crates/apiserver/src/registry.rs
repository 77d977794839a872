//! Typed objects in the store: `/registry/<resource>/<namespace>/<name>`
//! holds the object as protobuf; its resourceVersion is the key's mod
//! revision. Every write is a store transaction that compares a revision,
//! so concurrent writers never overwrite each other blindly.
//!
//! # Layout
//! - [`rules`]: the decisions of create, update, delete and namespace
//!   termination, as pure functions of the request, the stored object and
//!   `now`; table-tested.
//! - [`allocations`]: Services' cluster IPs and node ports, each a key of
//!   its own written in the Service's own transaction.
//! - This module is the IO around them: [`Registry`] reads (locally first,
//!   then after a read barrier), calls the rules, calls the `authorize`
//!   callback the service passes in, and runs the transaction comparing
//!   the revision it read, retrying up to `WRITE_ATTEMPTS_MAX` times when
//!   another writer got there first. It passes `now` (the clock is read
//!   here, not in the rules) and a new object's uid and name suffix. It
//!   also serves gets and paginated lists.

pub mod allocations;
pub mod rules;

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::SystemTime;

use keelson_model::cidr::Cidr;
use keelson_model::Resource;
use keelson_proto::v1;

use keelson_model::selector::{FieldSelector, LabelSelector};
use keelson_model::{kind_of, meta_of, meta_of_mut, Kind, Object};
use keelson_proto::etcdserverpb as pb;
use keelson_proto::mvccpb;
use keelson_proto::raft::{command, command_result, Command};
use keelson_store::server::Replica;

use crate::encryption::SecretBox;
use crate::error::{Error, Result};
pub use rules::{scope, POD_GRACE_DEFAULT_SECS, SYSTEM_NAMESPACES};
use rules::{DeletePlan, Precondition, UpdatePlan};

/// Keys read from the store per step of a list (the state lock is held
/// for one step at a time).
const LIST_CHUNK_KEYS: i64 = 500;
/// Attempts at an update or delete that races with other writers before
/// giving up with a conflict (only when the client sent no resourceVersion).
const WRITE_ATTEMPTS_MAX: usize = 8;

/// The store access of the API server.
#[derive(Clone)]
pub struct Registry {
    pub(crate) replica: Arc<Replica>,
    /// Services' cluster IPs come from here.
    service_cidr: Cidr,
    /// Secrets are encrypted at rest with this, when set.
    secrets: Option<SecretBox>,
}

/// A stored object and its key's revisions.
#[derive(Clone, Debug, PartialEq)]
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
#[derive(Clone, Debug, Default)]
pub struct DeleteOptions {
    pub grace_period_seconds: Option<i64>,
    pub propagation_policy: String,
    pub precondition_uid: String,
    pub precondition_resource_version: String,
}

/// Whether a write is made or only checked (Kubernetes' `dryRun=All`: every
/// check, validation and default of the real write, nothing stored).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Commit {
    Write,
    DryRun,
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

pub(crate) fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

pub(crate) fn unhex(s: &str) -> Option<Vec<u8>> {
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
/// Encrypted values (see [`crate::encryption`]) are decrypted with `key`.
pub fn decode_kv(kind: Kind, kv: &mvccpb::KeyValue, key: Option<&SecretBox>) -> Result<Object> {
    let plain = crate::encryption::open(key, &kv.value)
        .map_err(|e| Error::Internal(format!("read {}: {e}", String::from_utf8_lossy(&kv.key))))?;
    let mut o = keelson_model::decode(kind, &plain).map_err(|e| {
        Error::Internal(format!("decode {}: {e}", String::from_utf8_lossy(&kv.key)))
    })?;
    if let Some(m) = meta_of_mut(&mut o) {
        m.resource_version = kv.mod_revision.to_string();
    }
    Ok(o)
}

pub(crate) fn put_op(key: &str, value: Vec<u8>, lease: i64) -> pb::RequestOp {
    pb::RequestOp {
        request: Some(pb::request_op::Request::RequestPut(pb::PutRequest {
            key: key.as_bytes().to_vec(),
            value,
            lease,
            ..Default::default()
        })),
    }
}

pub(crate) fn delete_op(key: &str) -> pb::RequestOp {
    pb::RequestOp {
        request: Some(pb::request_op::Request::RequestDeleteRange(
            pb::DeleteRangeRequest {
                key: key.as_bytes().to_vec(),
                ..Default::default()
            },
        )),
    }
}

pub(crate) fn compare_mod(key: &str, rev: i64) -> pb::Compare {
    pb::Compare {
        result: pb::compare::CompareResult::Equal as i32,
        target: pb::compare::CompareTarget::Mod as i32,
        key: key.as_bytes().to_vec(),
        range_end: Vec::new(),
        target_union: Some(pb::compare::TargetUnion::ModRevision(rev)),
    }
}

pub(crate) fn compare_absent(key: &str) -> pb::Compare {
    pb::Compare {
        result: pb::compare::CompareResult::Equal as i32,
        target: pb::compare::CompareTarget::Create as i32,
        key: key.as_bytes().to_vec(),
        range_end: Vec::new(),
        target_union: Some(pb::compare::TargetUnion::CreateRevision(0)),
    }
}

/// The object without its resourceVersion, as stored: a Secret sealed
/// with `key` when there is one.
fn encode_for_store(o: &Object, key: Option<&SecretBox>) -> Result<Vec<u8>> {
    let mut o = o.clone();
    if let Some(m) = meta_of_mut(&mut o) {
        m.resource_version.clear();
    }
    let plain = keelson_model::encode(&o);
    match key {
        Some(k) if kind_of(&o) == Some(Kind::Secret) => k.seal(&plain).map_err(Error::Internal),
        _ => Ok(plain),
    }
}

fn with_rv(mut o: Object, rev: i64) -> Object {
    if let Some(m) = meta_of_mut(&mut o) {
        m.resource_version = rev.to_string();
    }
    o
}

impl Registry {
    pub fn new(replica: Arc<Replica>) -> Registry {
        Registry {
            replica,
            service_cidr: allocations::DEFAULT_SERVICE_CIDR,
            secrets: None,
        }
    }

    /// Encrypt Secrets at rest with `key`.
    pub fn with_encryption(mut self, key: Option<SecretBox>) -> Registry {
        self.secrets = key;
        self
    }

    /// The key Secrets are sealed with, if any.
    pub fn secret_box(&self) -> Option<&SecretBox> {
        self.secrets.as_ref()
    }

    /// Give Services cluster IPs from `cidr`.
    pub fn with_service_cidr(mut self, cidr: Cidr) -> Registry {
        self.service_cidr = cidr;
        self
    }

    /// The cluster IPs and node ports the store's allocation keys hold
    /// (read locally: the transaction that takes one checks it is free).
    fn taken(&self) -> Result<(BTreeSet<Ipv4Addr>, BTreeSet<i32>)> {
        let sm = self.replica.sm().read();
        let keys = |prefix: &str| -> Result<Vec<String>> {
            let res = sm.range(&pb::RangeRequest {
                key: prefix.as_bytes().to_vec(),
                range_end: prefix_end(prefix.as_bytes()),
                keys_only: true,
                ..Default::default()
            })?;
            Ok(res
                .kvs
                .into_iter()
                .filter_map(|kv| {
                    String::from_utf8(kv.key)
                        .ok()
                        .and_then(|k| k.strip_prefix(prefix).map(str::to_string))
                })
                .collect())
        };
        let ips = keys(allocations::IP_PREFIX)?
            .iter()
            .filter_map(|k| k.parse().ok())
            .collect();
        let ports = keys(allocations::PORT_PREFIX)?
            .iter()
            .filter_map(|k| k.parse().ok())
            .collect();
        Ok((ips, ports))
    }

    /// A Service given its cluster IP and node ports (`old`: the stored
    /// one of an update); the allocation keys it holds.
    fn allocate(&self, obj: Object, old: Option<&Object>) -> Result<(Object, BTreeSet<String>)> {
        let Some(mut svc) = v1::Service::from_object(obj.clone()) else {
            return Ok((obj, BTreeSet::new()));
        };
        let old = old.and_then(|o| v1::Service::from_object(o.clone()));
        let (ips, ports) = self.taken()?;
        allocations::assign(&mut svc, old.as_ref(), self.service_cidr, &ips, &ports).map_err(
            |problems| Error::Invalid {
                what: format!("{} {:?}", Kind::Service, svc.meta().name),
                problems,
            },
        )?;
        let keys = allocations::held(&svc);
        Ok((svc.into_object(), keys))
    }

    /// The current store revision on this replica.
    pub fn revision(&self) -> i64 {
        self.replica.sm().read().revision()
    }

    pub async fn barrier(&self) -> Result<()> {
        Ok(self.replica.read_barrier().await?)
    }

    pub(crate) fn read_kv(&self, key: &str) -> Result<Option<mvccpb::KeyValue>> {
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
            object: decode_kv(kind, &kv, self.secrets.as_ref())?,
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
                let o = decode_kv(kind, kv, self.secrets.as_ref())?;
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
    pub(crate) async fn txn(
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
    pub(crate) async fn live_namespace(&self, ns: &str) -> Result<i64> {
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

    /// Create ([`rules::plan_create`]), then a transaction that fails if
    /// the name is taken (or the namespace changed meanwhile). A dry run
    /// checks the same (namespace, name free) and writes nothing.
    pub async fn create(&self, obj: Object, lease: i64, commit: Commit) -> Result<Object> {
        let generated = rules::Generated {
            uid: uuid::Uuid::new_v4().to_string(),
            name_suffix: random_suffix(),
        };
        let rules::CreatePlan {
            kind,
            namespace: ns,
            name,
            object: obj,
        } = rules::plan_create(obj, generated, SystemTime::now())?;
        let key = kind.key(&ns, &name);
        let mut obj = obj;
        if commit == Commit::DryRun {
            if kind == Kind::Service {
                obj = self.allocate(obj, None)?.0;
            }
            if kind.namespaced() {
                self.live_namespace(&ns).await?;
            }
            if self.read(kind, &ns, &name, true).await?.is_some() {
                return Err(Error::AlreadyExists {
                    kind: kind.plural(),
                    name,
                });
            }
            return Ok(obj);
        }
        let requested = obj;
        for _ in 0..WRITE_ATTEMPTS_MAX {
            let mut compare = vec![compare_absent(&key)];
            if kind.namespaced() {
                let ns_rev = self.live_namespace(&ns).await?;
                compare.push(compare_mod(&Kind::Namespace.key("", &ns), ns_rev));
            }
            // A Service takes its cluster IP and node ports in the same
            // transaction, each on the condition that it is free.
            let (obj, keys) = if kind == Kind::Service {
                self.allocate(requested.clone(), None)?
            } else {
                (requested.clone(), BTreeSet::new())
            };
            let mut ops = vec![put_op(
                &key,
                encode_for_store(&obj, self.secrets.as_ref())?,
                lease,
            )];
            for k in &keys {
                compare.push(compare_absent(k));
                ops.push(put_op(k, format!("{ns}/{name}").into_bytes(), 0));
            }
            let (ok, rev) = self.txn(compare, ops, vec![]).await?;
            if ok {
                return Ok(with_rv(obj, rev));
            }
            if !keys.is_empty() {
                // Another Service took one of them meanwhile: read what
                // is taken again (after a barrier) and choose again.
                self.barrier().await?;
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
    /// compare-and-swap. `authorize(old, new)` runs before validation and
    /// the write. The decisions are [`rules::check_update`],
    /// [`rules::merge_update`] and [`rules::plan_update`].
    #[tracing::instrument(skip_all, fields(
        kind = tracing::field::Empty,
        namespace = tracing::field::Empty,
        name = tracing::field::Empty,
    ))]
    pub async fn update(
        &self,
        obj: Object,
        lease: i64,
        status_only: bool,
        commit: Commit,
        authorize: &(dyn Fn(&Object, &Object) -> Result<()> + Send + Sync),
    ) -> Result<Object> {
        let req = rules::Update::new(obj, lease, status_only)?;
        let (kind, ns, name) = (req.kind, req.namespace.as_str(), req.name.as_str());
        let span = tracing::Span::current();
        span.record("kind", tracing::field::display(kind));
        span.record("namespace", ns);
        span.record("name", name);
        let key = kind.key(ns, name);
        for attempt in 0..WRITE_ATTEMPTS_MAX {
            // The first read is local: this replica may not have applied
            // the object's creation yet, so "absent" is only an answer
            // after a read barrier.
            let after_barrier = attempt > 0;
            let stored = self.read(kind, ns, name, after_barrier).await?;
            let cur = match rules::check_update(&req, stored.as_ref(), after_barrier)? {
                Precondition::Met(cur) => cur,
                Precondition::ReadAgain => continue,
            };
            let new = rules::merge_update(&req, &cur.object);
            authorize(&cur.object, &new)?;
            let read_revision = cur.mod_revision;
            // A Service keeps its cluster IP; node ports are taken and
            // released as its ports change.
            let (new, held_now, held_before) = if kind == Kind::Service && !status_only {
                let before = v1::Service::from_object(cur.object.clone())
                    .map(|s| allocations::held(&s))
                    .unwrap_or_default();
                let (new, keys) = self.allocate(new, Some(&cur.object))?;
                (new, keys, before)
            } else {
                (new, BTreeSet::new(), BTreeSet::new())
            };
            let (op, object) = match rules::plan_update(&req, cur, new)? {
                UpdatePlan::Put { object, lease } => (
                    put_op(
                        &key,
                        encode_for_store(&object, self.secrets.as_ref())?,
                        lease,
                    ),
                    object,
                ),
                UpdatePlan::Remove { object } => (delete_op(&key), object),
            };
            if commit == Commit::DryRun {
                return Ok(with_rv(object, read_revision));
            }
            let mut compare = vec![compare_mod(&key, read_revision)];
            let mut ops = vec![op];
            for k in held_now.difference(&held_before) {
                compare.push(compare_absent(k));
                ops.push(put_op(k, format!("{ns}/{name}").into_bytes(), 0));
            }
            for k in held_before.difference(&held_now) {
                ops.push(delete_op(k));
            }
            let (ok, rev) = self.txn(compare, ops, vec![]).await?;
            if ok {
                return Ok(with_rv(object, rev));
            }
            if req.resource_version.is_some() {
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
    /// finalizer goes. `authorize(old)` runs before the preconditions.
    /// Returns the object and whether it is gone. The decisions are
    /// [`rules::Delete::new`] and [`rules::plan_delete`].
    #[tracing::instrument(skip_all, fields(kind = %kind, namespace = %ns, name = %name))]
    pub async fn delete(
        &self,
        kind: Kind,
        ns: &str,
        name: &str,
        opts: &DeleteOptions,
        commit: Commit,
        authorize: &(dyn Fn(&Object) -> Result<()> + Send + Sync),
    ) -> Result<(Object, bool)> {
        let req = rules::Delete::new(kind, name, opts)?;
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
            // A Service gone releases its cluster IP and node ports.
            let released: BTreeSet<String> = v1::Service::from_object(cur.object.clone())
                .filter(|_| kind == Kind::Service)
                .map(|s| allocations::held(&s))
                .unwrap_or_default();
            let (op, object, gone) = match rules::plan_delete(&req, &cur, SystemTime::now())? {
                DeletePlan::Unchanged => return Ok((cur.object, false)),
                DeletePlan::Remove => (delete_op(&key), cur.object, true),
                DeletePlan::Mark(marked) => (
                    put_op(
                        &key,
                        encode_for_store(&marked, self.secrets.as_ref())?,
                        cur.lease,
                    ),
                    *marked,
                    false,
                ),
            };
            if commit == Commit::DryRun {
                return Ok((object, gone));
            }
            let mut ops = vec![op];
            if gone {
                ops.extend(released.iter().map(|k| delete_op(k)));
            }
            let (ok, rev) = self
                .txn(vec![compare_mod(&key, cur.mod_revision)], ops, vec![])
                .await?;
            if ok {
                return Ok((with_rv(object, rev), gone));
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
            match self.create(obj, 0, Commit::Write).await {
                Ok(_) | Err(Error::AlreadyExists { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

pub(crate) fn random_suffix() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut rng = rand::rng();
    (0..5)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

impl Registry {
    /// Remove an empty, terminating namespace (the last step of its
    /// deletion) if it may go ([`rules::namespace_removable`]) and its
    /// resourceVersion is still `opts.precondition_resource_version` (when
    /// set). Returns whether it was removed.
    pub async fn remove_namespace(&self, ns: &str, opts: &DeleteOptions) -> Result<bool> {
        let key = Kind::Namespace.key("", ns);
        let Some(cur) = self.read(Kind::Namespace, "", ns, true).await? else {
            return Ok(false);
        };
        if !rules::namespace_removable(&cur.object) {
            return Ok(false);
        }
        if !opts.precondition_resource_version.is_empty()
            && opts.precondition_resource_version != cur.mod_revision.to_string()
        {
            return Ok(false);
        }
        let (removed, _) = self
            .txn(
                vec![compare_mod(&key, cur.mod_revision)],
                vec![delete_op(&key)],
                vec![],
            )
            .await?;
        Ok(removed)
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
