//! The Deployment controller, after Kubernetes' `DeploymentController`
//! (`pkg/controller/deployment`: `sync.go`, `rolling.go`, `recreate.go`,
//! `progress.go` and `util/deployment_util.go`).
//!
//! [`reconcile`] compares a Deployment with the ReplicaSets and pods of its
//! namespace and returns the [`Action`]s that roll the cluster toward
//! `spec.replicas` pods of `spec.template`:
//!
//! - **Ownership.** A ReplicaSet belongs to the Deployment when its
//!   controller ownerReference carries the Deployment's uid and its labels
//!   match the selector. Orphans (no controller ownerReference, not being
//!   deleted) that match the selector are adopted (an [`Action::UpdateReplicaSet`]
//!   with the ownerReference added) and count as owned. ReplicaSets
//!   controlled by anything else are ignored.
//! - **New and old.** The new ReplicaSet is the oldest owned one whose
//!   template equals the Deployment's, ignoring the
//!   [`POD_TEMPLATE_HASH_LABEL`] (compared with [`template_hash`]); every
//!   other owned ReplicaSet is old. A new ReplicaSet is named
//!   `<deployment>-<hash>`, carries the hash as a label, in its selector and
//!   in its template, and gets revision `max(old revisions) + 1`.
//! - **Revisions.** When an old ReplicaSet becomes new again (a rollback),
//!   its revision is raised to `max(old) + 1` and the previous one is
//!   appended to `deployment.kubernetes.io/revision-history`. The
//!   Deployment's [`REVISION_ANNOTATION`] follows the new ReplicaSet's.
//! - **RollingUpdate** (`rolling.go`). `maxSurge` and `maxUnavailable`
//!   (default 25% each) resolve against `replicas`, surge rounding up and
//!   unavailable down; when both resolve to 0, `maxUnavailable` is 1. First
//!   the new ReplicaSet is scaled toward `replicas` within
//!   `replicas + maxSurge` pods in total; if it was scaled, that is all for
//!   this round. Otherwise old ReplicaSets are scaled down (oldest first):
//!   at most `allPods - minAvailable - newUnavailable`, their unavailable
//!   replicas first, then as far as `available - minAvailable` allows.
//! - **Recreate** (`recreate.go`). All old ReplicaSets are scaled to 0; the
//!   new one is created (or scaled) to `replicas` only once no old
//!   ReplicaSet reports replicas and no pod controlled by one is left in a
//!   non-terminal phase (pods being deleted still count).
//! - **Paused.** No ReplicaSet is created and nothing rolls. When `replicas`
//!   changes, the one active ReplicaSet (or the newest, if none is active)
//!   is scaled to it; with several active ones, old ones are scaled to 0 if
//!   the new one is saturated, else (RollingUpdate) all are scaled
//!   proportionally to `replicas + maxSurge`. The Progressing condition
//!   becomes `Unknown`/`DeploymentPaused` (and `DeploymentResumed` after).
//! - **Cleanup.** Once the Deployment is complete (or while paused), old
//!   ReplicaSets beyond `revisionHistoryLimit` (default 10) are deleted,
//!   lowest revision first, skipping any that still have replicas (spec or
//!   status), an unobserved generation or a deletion in progress.
//! - **Status.** Counts what is observed now (a ReplicaSet created this
//!   round counts with its new spec), with the Available, Progressing and
//!   ReplicaFailure conditions of Kubernetes (see `sync_rollout_status`).
//!   `unavailableReplicas` is the sum of the ReplicaSets' `spec.replicas`
//!   minus the available ones, as Kubernetes computes it. The status is only
//!   written when it differs from the current one, and a status written
//!   back yields no further change (as in Kubernetes, a create that did
//!   not happen is retried and sets `NewReplicaSetCreated` again).
//! - **Deletion.** A Deployment being deleted only gets its status updated.
//! - **Shared with the CLI.** The annotations and labels written here, the
//!   Progressing condition's timed-out reason and kubectl's reading of a
//!   rollout (`rollout_status`) live in [`keelson_model::deployment`].
//! - **Malformed input** (no spec, no uid, a missing, empty or malformed
//!   selector, a template the selector does not match, negative replicas,
//!   an unknown strategy, an unreadable `maxSurge`/`maxUnavailable`, a
//!   negative history limit or deadline): no actions at all.
//!
//! # Simplified relative to Kubernetes
//!
//! - ReplicaSets carry no `desired-replicas`/`max-replicas` annotations, so
//!   there is no "scaling event" detection: when `replicas` changes during
//!   an unpaused rollout, the rolling logic simply applies (the new
//!   ReplicaSet is capped at `replicas`; old ones scale down as availability
//!   allows). Proportional scaling happens only while paused and uses the
//!   current total of the active ReplicaSets as the base.
//! - Only [`CHANGE_CAUSE_ANNOTATION`] is copied from the Deployment to its
//!   new ReplicaSet (Kubernetes copies every annotation but a few).
//! - Owned ReplicaSets whose labels stop matching are left alone, not
//!   released. `spec.rollbackTo` (extensions/v1beta1) does not exist.
//! - Kubernetes may write one ReplicaSet several times in a sync (adopt,
//!   re-annotate, scale); here the changes are merged into one
//!   [`Action::UpdateReplicaSet`] per ReplicaSet and round, with one scaling
//!   event from its observed size to its final size.
//! - Requeueing to notice a passed progress deadline is up to the runner
//!   (reconcile periodically).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use keelson_model::deployment::{
    condition as get_condition, CHANGE_CAUSE_ANNOTATION, DEFAULT_REPLICAS, POD_TEMPLATE_HASH_LABEL,
    PROGRESSING, REVISION_ANNOTATION, REVISION_HISTORY_ANNOTATION, TIMED_OUT_REASON,
};
use keelson_model::selector::LabelSelector;
use keelson_model::time::{format_rfc3339, parse_rfc3339};
use keelson_model::{controller_of, Kind, Resource};
use keelson_proto::v1;

/// Kubernetes' `SafeEncodeString` alphabet: no vowels, no look-alikes.
const HASH_ALPHABET: &[u8; 27] = b"bcdfghjklmnpqrstvwxz2456789";
const HASH_LEN: usize = 10;
const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

const DEFAULT_MAX_SURGE: &str = "25%";
const DEFAULT_MAX_UNAVAILABLE: &str = "25%";
const DEFAULT_REVISION_HISTORY_LIMIT: i32 = 10;
const DEFAULT_PROGRESS_DEADLINE_SECONDS: i32 = 600;
/// Kubernetes' `maxRevHistoryLengthInChars`.
const MAX_REVISION_HISTORY_CHARS: usize = 2000;

const AVAILABLE: &str = "Available";
const REPLICA_FAILURE: &str = "ReplicaFailure";
const TRUE: &str = "True";
const FALSE: &str = "False";
const UNKNOWN: &str = "Unknown";

const MIN_AVAILABLE_REASON: &str = "MinimumReplicasAvailable";
const MIN_UNAVAILABLE_REASON: &str = "MinimumReplicasUnavailable";
const NEW_RS_REASON: &str = "NewReplicaSetCreated";
const FOUND_NEW_RS_REASON: &str = "FoundNewReplicaSet";
const RS_UPDATED_REASON: &str = "ReplicaSetUpdated";
const NEW_RS_AVAILABLE_REASON: &str = "NewReplicaSetAvailable";
const PAUSED_REASON: &str = "DeploymentPaused";
const RESUMED_REASON: &str = "DeploymentResumed";

/// One change to make to the cluster.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Create this ReplicaSet: name `<deployment>-<hash>`, the Deployment's
    /// namespace, labels = template labels + pod-template-hash, selector =
    /// the Deployment's + `matchLabels` pod-template-hash, the template with
    /// the hash label, replicas as decided, minReadySeconds copied, the
    /// revision annotation (and the Deployment's change-cause, if any), and
    /// a controller ownerReference to the Deployment.
    CreateReplicaSet(v1::ReplicaSet),
    /// Write this ReplicaSet: an observed one, modified (scaled,
    /// re-annotated, adopted). Its `metadata.resourceVersion` is the
    /// observed one, for compare-and-swap.
    UpdateReplicaSet(v1::ReplicaSet),
    /// Delete an old ReplicaSet beyond `revisionHistoryLimit` (uid as a
    /// precondition).
    DeleteReplicaSet { name: String, uid: String },
    /// Write the Deployment's metadata/spec: only to set its
    /// [`REVISION_ANNOTATION`] to the new ReplicaSet's revision.
    UpdateDeployment(v1::Deployment),
    /// Write this status (only when it differs from the current one).
    UpdateStatus(v1::DeploymentStatus),
    /// An event about the Deployment, e.g. (`Normal`, `ScalingReplicaSet`,
    /// `Scaled up replica set web-5d8f7c9b4x to 3`).
    Event {
        type_: String,
        reason: String,
        message: String,
    },
}

/// Deterministic hash of a pod template (ignoring any pod-template-hash
/// label): 10 characters from Kubernetes' `SafeEncodeString` alphabet,
/// FNV-1a 64 over the protobuf encoding (deterministic: maps are ordered).
pub fn template_hash(template: &v1::PodTemplateSpec) -> String {
    compute_hash(template, None)
}

/// As Kubernetes' `ComputeHash`: the collision count, when set, is hashed
/// after the template so that a new name can be tried.
pub(crate) fn compute_hash(template: &v1::PodTemplateSpec, collision_count: Option<i32>) -> String {
    let mut t = template.clone();
    t.metadata
        .get_or_insert_with(Default::default)
        .labels
        .remove(POD_TEMPLATE_HASH_LABEL);
    t.spec.get_or_insert_with(Default::default);
    let wrapper = v1::ReplicaSet {
        spec: Some(v1::ReplicaSetSpec {
            template: Some(t),
            ..Default::default()
        }),
        ..Default::default()
    };
    let bytes = keelson_model::encode(&wrapper.into_object());
    let mut h = fnv1a(FNV_OFFSET, &bytes);
    if let Some(c) = collision_count {
        h = fnv1a(h, &c.to_le_bytes());
    }
    let mut out = String::with_capacity(HASH_LEN);
    for _ in 0..HASH_LEN {
        let i = usize::try_from(h % 27).unwrap_or(0);
        out.push(char::from(HASH_ALPHABET[i]));
        h /= 27;
    }
    out
}

fn fnv1a(mut h: u64, bytes: &[u8]) -> u64 {
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(FNV_PRIME);
    }
    h
}

/// Decide what to do for `d`, given `rss` (all ReplicaSets of its
/// namespace), `pods` (all pods of its namespace, for Recreate) and the
/// current time. Pure: the same inputs always give the same actions.
pub fn reconcile(
    d: &v1::Deployment,
    rss: &[v1::ReplicaSet],
    pods: &[v1::Pod],
    now: SystemTime,
) -> Vec<Action> {
    let Some(cfg) = Config::parse(d) else {
        return Vec::new();
    };
    let deleting = !d.meta().deletion_timestamp.is_empty();
    let mut s = State::new(&cfg, rss, now, deleting);
    if deleting {
        // syncStatusOnly
        let status = s.calculate_status();
        return s.finish(status);
    }
    s.check_paused_conditions();
    if cfg.spec.paused {
        // sync: no new ReplicaSet (so no collision), no rollout.
        s.sync_revision(false);
        s.scale_paused();
        s.cleanup();
        let status = s.calculate_status();
        return s.finish(status);
    }
    let ok = if cfg.rolling {
        s.rollout_rolling()
    } else {
        s.rollout_recreate(pods)
    };
    let status = if ok {
        s.sync_rollout_status()
    } else {
        // A name collision: record it so the next round hashes differently.
        let mut st = s.seen.clone();
        st.collision_count = Some(st.collision_count.unwrap_or(0).saturating_add(1));
        st
    };
    s.finish(status)
}

/// What `reconcile` needs from a Deployment, checked once.
struct Config<'a> {
    d: &'a v1::Deployment,
    spec: &'a v1::DeploymentSpec,
    selector: LabelSelector,
    template: &'a v1::PodTemplateSpec,
    hash: String,
    replicas: i64,
    rolling: bool,
    /// Kubernetes' `MaxSurge(d)`: 0 for Recreate.
    max_surge: i64,
    /// Kubernetes' `MaxUnavailable(d)`: 0 for Recreate or 0 replicas, at
    /// most `replicas`.
    max_unavailable: i64,
    /// None: unlimited.
    history_limit: Option<usize>,
    /// None: no deadline.
    progress_deadline: Option<Duration>,
}

impl<'a> Config<'a> {
    fn parse(d: &'a v1::Deployment) -> Option<Config<'a>> {
        let spec = d.spec.as_ref()?;
        if d.meta().uid.is_empty() {
            return None;
        }
        let selector = LabelSelector::from_proto(spec.selector.as_ref()?).ok()?;
        let template = spec.template.as_ref()?;
        let no_labels = BTreeMap::new();
        let labels = template.metadata.as_ref().map_or(&no_labels, |m| &m.labels);
        if selector.is_empty() || !selector.matches(labels) {
            return None;
        }
        let replicas = i64::from(spec.replicas.unwrap_or(DEFAULT_REPLICAS));
        if replicas < 0 {
            return None;
        }
        let strategy = spec.strategy.as_ref();
        let rolling = match strategy.map_or("", |s| s.r#type.as_str()) {
            "" | "RollingUpdate" => true,
            "Recreate" => false,
            _ => return None,
        };
        let (max_surge, max_unavailable) = if rolling {
            let ru = strategy.and_then(|s| s.rolling_update.as_ref());
            let (surge, unavailable) = resolve_fenceposts(
                ru.map_or("", |r| r.max_surge.as_str()),
                ru.map_or("", |r| r.max_unavailable.as_str()),
                replicas,
            )?;
            let unavailable = if replicas == 0 {
                0
            } else {
                unavailable.min(replicas)
            };
            (surge, unavailable)
        } else {
            (0, 0)
        };
        let history_limit = match spec
            .revision_history_limit
            .unwrap_or(DEFAULT_REVISION_HISTORY_LIMIT)
        {
            i32::MAX => None,
            n => Some(usize::try_from(n).ok()?),
        };
        let progress_deadline = match spec
            .progress_deadline_seconds
            .unwrap_or(DEFAULT_PROGRESS_DEADLINE_SECONDS)
        {
            i32::MAX => None,
            n => Some(Duration::from_secs(u64::try_from(n).ok()?)),
        };
        Some(Config {
            d,
            spec,
            selector,
            template,
            hash: template_hash(template),
            replicas,
            rolling,
            max_surge,
            max_unavailable,
            history_limit,
            progress_deadline,
        })
    }
}

/// Kubernetes' `ResolveFenceposts`: (maxSurge, maxUnavailable) for
/// `desired` replicas, empty values meaning 25%. None when unreadable.
fn resolve_fenceposts(surge: &str, unavailable: &str, desired: i64) -> Option<(i64, i64)> {
    let surge = scaled_value(or_default(surge, DEFAULT_MAX_SURGE), desired, true)?;
    let unavailable = scaled_value(
        or_default(unavailable, DEFAULT_MAX_UNAVAILABLE),
        desired,
        false,
    )?;
    if surge == 0 && unavailable == 0 {
        return Some((0, 1));
    }
    Some((surge, unavailable))
}

fn or_default<'s>(v: &'s str, default: &'s str) -> &'s str {
    if v.is_empty() {
        default
    } else {
        v
    }
}

/// An IntOrString as a count: `N`, or `N%` of `total` rounded up or down.
fn scaled_value(v: &str, total: i64, round_up: bool) -> Option<i64> {
    let (digits, percent) = match v.strip_suffix('%') {
        Some(d) => (d, true),
        None => (v, false),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: i64 = digits.parse().ok()?;
    if n > i64::from(i32::MAX) {
        return None;
    }
    if !percent {
        return Some(n);
    }
    let scaled = n.checked_mul(total)?;
    let value = if round_up {
        (scaled + 99) / 100
    } else {
        scaled / 100
    };
    Some(value.min(i64::from(i32::MAX)))
}

/// A ReplicaSet as this round sees it.
struct Entry {
    /// The working copy, with this round's changes.
    rs: v1::ReplicaSet,
    /// Index in `rss`; None when created this round.
    observed: Option<usize>,
    /// `spec.replicas` as listed (or as created): what the status counts.
    listed_replicas: i64,
}

struct State<'a> {
    cfg: &'a Config<'a>,
    rss: &'a [v1::ReplicaSet],
    now: SystemTime,
    entries: Vec<Entry>,
    /// The new ReplicaSet's entry.
    new: Option<usize>,
    /// Entries changed this round, in the order of their first change.
    touched: Vec<usize>,
    deletes: Vec<(String, String)>,
    /// The Deployment's revision annotation, when it must change.
    deployment_revision: Option<String>,
    /// The Deployment's status as Kubernetes' `d.Status` evolves during a
    /// sync: observed counts, conditions updated along the way.
    seen: v1::DeploymentStatus,
}

impl<'a> State<'a> {
    /// Lists the owned ReplicaSets, adopting matching orphans unless the
    /// Deployment is being deleted, and finds the new one.
    fn new(
        cfg: &'a Config<'a>,
        rss: &'a [v1::ReplicaSet],
        now: SystemTime,
        deleting: bool,
    ) -> State<'a> {
        let dm = cfg.d.meta();
        let owner_ref = keelson_model::controller_reference(cfg.d);
        let mut s = State {
            cfg,
            rss,
            now,
            entries: Vec::new(),
            new: None,
            touched: Vec::new(),
            deletes: Vec::new(),
            deployment_revision: None,
            seen: cfg.d.status.clone().unwrap_or_default(),
        };
        for (j, rs) in rss.iter().enumerate() {
            let m = rs.meta();
            if !same_namespace(&m.namespace, &dm.namespace) || !cfg.selector.matches(&m.labels) {
                continue;
            }
            let mut working = rs.clone();
            let adopt = match controller_of(m) {
                Some(r) if r.uid == dm.uid => false,
                None if !deleting && m.deletion_timestamp.is_empty() => true,
                _ => continue,
            };
            if adopt {
                let refs = &mut working.meta_mut().owner_references;
                refs.retain(|r| r.uid != owner_ref.uid);
                refs.push(owner_ref.clone());
            }
            s.entries.push(Entry {
                rs: working,
                observed: Some(j),
                listed_replicas: spec_replicas(rs),
            });
            if adopt {
                s.touched.push(s.entries.len() - 1);
            }
        }
        // FindNewReplicaSet: the oldest one with the Deployment's template.
        s.new = (0..s.entries.len())
            .filter(|&i| template_hash(&rs_template(&s.entries[i].rs)) == cfg.hash)
            .min_by_key(|&i| creation_key(&s.entries[i].rs));
        s
    }

    fn old(&self) -> Vec<usize> {
        (0..self.entries.len())
            .filter(|&i| Some(i) != self.new)
            .collect()
    }

    /// Old ReplicaSets with replicas, oldest first.
    fn active_old_by_age(&self) -> Vec<usize> {
        let mut v: Vec<usize> = self
            .old()
            .into_iter()
            .filter(|&i| self.replicas(i) > 0)
            .collect();
        v.sort_by_cached_key(|&i| creation_key(&self.entries[i].rs));
        v
    }

    fn replicas(&self, i: usize) -> i64 {
        spec_replicas(&self.entries[i].rs)
    }

    fn available(&self, i: usize) -> i64 {
        status_counts(&self.entries[i].rs).available
    }

    fn touch(&mut self, i: usize) {
        if !self.touched.contains(&i) {
            self.touched.push(i);
        }
    }

    /// Set `spec.replicas`; whether it changed.
    fn scale(&mut self, i: usize, to: i64) -> bool {
        if self.replicas(i) == to {
            return false;
        }
        let spec = self.entries[i].rs.spec.get_or_insert_with(Default::default);
        spec.replicas = Some(to_i32(to));
        self.touch(i);
        true
    }

    fn condition(
        &self,
        type_: &str,
        status: &str,
        reason: &str,
        message: String,
    ) -> v1::DeploymentCondition {
        let now = format_rfc3339(self.now);
        v1::DeploymentCondition {
            r#type: type_.to_string(),
            status: status.to_string(),
            last_update_time: now.clone(),
            last_transition_time: now,
            reason: reason.to_string(),
            message,
        }
    }

    /// `checkPausedConditions`: mark a pause or resume so the time spent
    /// paused does not count against the progress deadline.
    fn check_paused_conditions(&mut self) {
        if self.cfg.progress_deadline.is_none() {
            return;
        }
        let cond = get_condition(&self.seen, PROGRESSING);
        if cond.is_some_and(|c| c.reason == TIMED_OUT_REASON) {
            return;
        }
        let paused_exists = cond.is_some_and(|c| c.reason == PAUSED_REASON);
        let c = if self.cfg.spec.paused && !paused_exists {
            self.condition(
                PROGRESSING,
                UNKNOWN,
                PAUSED_REASON,
                "Deployment is paused".into(),
            )
        } else if !self.cfg.spec.paused && paused_exists {
            self.condition(
                PROGRESSING,
                UNKNOWN,
                RESUMED_REASON,
                "Deployment is resumed".into(),
            )
        } else {
            return;
        };
        set_condition(&mut self.seen, c);
    }

    /// `getNewReplicaSet`: bring the new ReplicaSet's revision (and
    /// change-cause, minReadySeconds) up to date, or create it when
    /// `create`. False on a name collision.
    fn sync_revision(&mut self, create: bool) -> bool {
        let max_old = self
            .old()
            .into_iter()
            .map(|i| revision(&self.entries[i].rs))
            .max()
            .unwrap_or(0);
        let new_revision = max_old.saturating_add(1);
        let cause = self
            .cfg
            .d
            .meta()
            .annotations
            .get(CHANGE_CAUSE_ANNOTATION)
            .cloned();

        if let Some(i) = self.new {
            let mut rs = self.entries[i].rs.clone();
            let ann = &mut rs.meta_mut().annotations;
            if let Some(c) = &cause {
                if ann.get(CHANGE_CAUSE_ANNOTATION) != Some(c) {
                    ann.insert(CHANGE_CAUSE_ANNOTATION.to_string(), c.clone());
                }
            }
            let old_revision = ann.get(REVISION_ANNOTATION).cloned().unwrap_or_default();
            let old_int = if old_revision.is_empty() {
                Some(0)
            } else {
                old_revision.parse::<i64>().ok()
            };
            if old_int.is_some_and(|o| o < new_revision) {
                ann.insert(REVISION_ANNOTATION.to_string(), new_revision.to_string());
                if !old_revision.is_empty() {
                    let history = ann
                        .get(REVISION_HISTORY_ANNOTATION)
                        .cloned()
                        .unwrap_or_default();
                    if let Some(h) = append_history(&history, &old_revision) {
                        ann.insert(REVISION_HISTORY_ANNOTATION.to_string(), h);
                    }
                }
            }
            let min_ready = self.cfg.spec.min_ready_seconds;
            if let Some(spec) = rs.spec.as_mut() {
                spec.min_ready_seconds = min_ready;
            }
            if rs != self.entries[i].rs {
                self.entries[i].rs = rs;
                self.touch(i);
            }
            let rev = self.entries[i]
                .rs
                .meta()
                .annotations
                .get(REVISION_ANNOTATION)
                .cloned()
                .unwrap_or_default();
            self.set_deployment_revision(rev);
            if self.cfg.progress_deadline.is_some()
                && get_condition(&self.seen, PROGRESSING).is_none()
            {
                let name = self.entries[i].rs.meta().name.clone();
                let c = self.condition(
                    PROGRESSING,
                    TRUE,
                    FOUND_NEW_RS_REASON,
                    format!("Found new replica set \"{name}\""),
                );
                set_condition(&mut self.seen, c);
            }
            return true;
        }
        if !create {
            return true;
        }

        let hash = compute_hash(self.cfg.template, self.seen.collision_count);
        let dm = self.cfg.d.meta();
        let name = format!("{}-{hash}", dm.name);
        let taken = self.rss.iter().any(|rs| {
            let m = rs.meta();
            m.name == name && same_namespace(&m.namespace, &dm.namespace)
        });
        if taken {
            // Not ours, or not our template (ours would be the new one).
            return false;
        }
        let rs = self.new_replica_set(name.clone(), &hash, new_revision, cause);
        self.entries.push(Entry {
            rs,
            observed: None,
            listed_replicas: 0,
        });
        let i = self.entries.len() - 1;
        let n = self.new_rs_new_replicas(i);
        self.entries[i].listed_replicas = n;
        if let Some(spec) = self.entries[i].rs.spec.as_mut() {
            spec.replicas = Some(to_i32(n));
        }
        self.new = Some(i);
        self.touch(i);
        self.set_deployment_revision(new_revision.to_string());
        if self.cfg.progress_deadline.is_some() {
            let c = self.condition(
                PROGRESSING,
                TRUE,
                NEW_RS_REASON,
                format!("Created new replica set \"{name}\""),
            );
            set_condition(&mut self.seen, c);
        }
        true
    }

    fn new_replica_set(
        &self,
        name: String,
        hash: &str,
        revision: i64,
        cause: Option<String>,
    ) -> v1::ReplicaSet {
        let dm = self.cfg.d.meta();
        let mut template = self.cfg.template.clone();
        let tm = template.metadata.get_or_insert_with(Default::default);
        tm.labels
            .insert(POD_TEMPLATE_HASH_LABEL.to_string(), hash.to_string());
        let labels = tm.labels.clone();
        let mut selector = self.cfg.spec.selector.clone().unwrap_or_default();
        selector
            .match_labels
            .insert(POD_TEMPLATE_HASH_LABEL.to_string(), hash.to_string());
        let mut annotations = BTreeMap::new();
        annotations.insert(REVISION_ANNOTATION.to_string(), revision.to_string());
        if let Some(c) = cause {
            annotations.insert(CHANGE_CAUSE_ANNOTATION.to_string(), c);
        }
        v1::ReplicaSet {
            api_version: Kind::ReplicaSet.api_version().to_string(),
            kind: Kind::ReplicaSet.name().to_string(),
            metadata: Some(v1::ObjectMeta {
                name,
                namespace: dm.namespace.clone(),
                labels,
                annotations,
                owner_references: vec![keelson_model::controller_reference(self.cfg.d)],
                ..Default::default()
            }),
            spec: Some(v1::ReplicaSetSpec {
                replicas: Some(0),
                min_ready_seconds: self.cfg.spec.min_ready_seconds,
                selector: Some(selector),
                template: Some(template),
            }),
            status: None,
        }
    }

    fn set_deployment_revision(&mut self, rev: String) {
        let current = self.cfg.d.meta().annotations.get(REVISION_ANNOTATION);
        self.deployment_revision = (current != Some(&rev)).then_some(rev);
    }

    /// `NewRSNewReplicas`: the size the new ReplicaSet may grow to now.
    fn new_rs_new_replicas(&self, new: usize) -> i64 {
        let replicas = self.cfg.replicas;
        if !self.cfg.rolling {
            return replicas;
        }
        let current = self.replicas(new);
        let all: i64 = (0..self.entries.len()).map(|i| self.replicas(i)).sum();
        let max_total = replicas + self.cfg.max_surge;
        if all >= max_total {
            return current;
        }
        current + (max_total - all).min(replicas - current)
    }

    /// `rolloutRolling`. False on a name collision.
    fn rollout_rolling(&mut self) -> bool {
        if !self.sync_revision(true) {
            return false;
        }
        let Some(new) = self.new else {
            return true;
        };
        if self.reconcile_new_replica_set(new) {
            return true;
        }
        if self.reconcile_old_replica_sets(new) {
            return true;
        }
        if self.complete(&self.seen) {
            self.cleanup();
        }
        true
    }

    /// `reconcileNewReplicaSet`: whether the new ReplicaSet was scaled.
    fn reconcile_new_replica_set(&mut self, new: usize) -> bool {
        let current = self.replicas(new);
        let replicas = self.cfg.replicas;
        if current == replicas {
            return false;
        }
        if current > replicas {
            return self.scale(new, replicas);
        }
        let n = self.new_rs_new_replicas(new);
        self.scale(new, n)
    }

    /// `reconcileOldReplicaSets`: whether old ReplicaSets were scaled down.
    fn reconcile_old_replica_sets(&mut self, new: usize) -> bool {
        let olds = self.active_old_by_age();
        let old_pods: i64 = olds.iter().map(|&i| self.replicas(i)).sum();
        if old_pods == 0 {
            return false;
        }
        let all_pods: i64 = (0..self.entries.len()).map(|i| self.replicas(i)).sum();
        let min_available = self.cfg.replicas - self.cfg.max_unavailable;
        let new_unavailable = self.replicas(new) - self.available(new);
        let max_scaled_down = all_pods - min_available - new_unavailable;
        if max_scaled_down <= 0 {
            return false;
        }

        // cleanupUnhealthyReplicas: unavailable replicas go first, which
        // does not reduce availability.
        let mut cleaned = 0;
        for &i in &olds {
            if cleaned >= max_scaled_down {
                break;
            }
            let r = self.replicas(i);
            let a = self.available(i);
            if r == 0 || r == a {
                continue;
            }
            let n = (max_scaled_down - cleaned).min(r - a);
            if n < 0 {
                // More available than wanted: the ReplicaSet controller has
                // not caught up. Kubernetes errors out of this step here.
                return false;
            }
            self.scale(i, r - n);
            cleaned += n;
        }

        // scaleDownOldReplicaSetsForRollingUpdate
        let available: i64 = (0..self.entries.len()).map(|i| self.available(i)).sum();
        let mut scaled = 0;
        if available > min_available {
            let total = available - min_available;
            for &i in &olds {
                if scaled >= total {
                    break;
                }
                let r = self.replicas(i);
                if r == 0 {
                    continue;
                }
                let n = r.min(total - scaled);
                self.scale(i, r - n);
                scaled += n;
            }
        }
        cleaned + scaled > 0
    }

    /// `rolloutRecreate`. False on a name collision.
    fn rollout_recreate(&mut self, pods: &[v1::Pod]) -> bool {
        self.sync_revision(false);
        let mut scaled = false;
        for i in self.active_old_by_age() {
            scaled |= self.scale(i, 0);
        }
        if scaled || self.old_pods_running(pods) {
            return true;
        }
        if self.new.is_none() && !self.sync_revision(true) {
            return false;
        }
        if let Some(new) = self.new {
            self.scale(new, self.cfg.replicas);
        }
        if self.complete(&self.seen) {
            self.cleanup();
        }
        true
    }

    /// `oldPodsRunning`: old ReplicaSets still report replicas, or a pod
    /// one of them controls is not finished (pods being deleted count).
    fn old_pods_running(&self, pods: &[v1::Pod]) -> bool {
        let olds = self.old();
        if olds
            .iter()
            .map(|&i| status_counts(&self.entries[i].rs).replicas)
            .sum::<i64>()
            > 0
        {
            return true;
        }
        let uids: BTreeSet<&str> = olds
            .iter()
            .map(|&i| self.entries[i].rs.meta().uid.as_str())
            .filter(|u| !u.is_empty())
            .collect();
        let ns = &self.cfg.d.meta().namespace;
        pods.iter().any(|p| {
            let m = p.meta();
            let phase = p.status.as_ref().map_or("", |s| s.phase.as_str());
            same_namespace(&m.namespace, ns)
                && !matches!(phase, "Succeeded" | "Failed")
                && controller_of(m).is_some_and(|r| uids.contains(r.uid.as_str()))
        })
    }

    /// Kubernetes' `scale` for a paused Deployment (see the module docs).
    fn scale_paused(&mut self) {
        let replicas = self.cfg.replicas;
        let mut olds = self.old();
        olds.sort_by_cached_key(|&i| Reverse(creation_key(&self.entries[i].rs)));
        if self.new.is_none() && olds.is_empty() {
            return;
        }
        let active: Vec<usize> = olds
            .iter()
            .copied()
            .chain(self.new)
            .filter(|&i| self.replicas(i) > 0)
            .collect();
        // FindActiveOrLatest
        let target = match active.len() {
            0 => self.new.or_else(|| olds.first().copied()),
            1 => active.first().copied(),
            _ => None,
        };
        if let Some(i) = target {
            self.scale(i, replicas);
            return;
        }
        // IsSaturated: old ones are leftovers.
        if let Some(new) = self.new {
            if self.replicas(new) == replicas && self.available(new) == replicas {
                for i in active.into_iter().filter(|&i| i != new) {
                    self.scale(i, 0);
                }
                return;
            }
        }
        if self.cfg.rolling {
            self.scale_proportionally(active);
        }
    }

    /// Spread `replicas + maxSurge` over the active ReplicaSets in
    /// proportion to their current sizes (Kubernetes uses the sizes recorded
    /// in `max-replicas` annotations; here the current total is the base).
    fn scale_proportionally(&mut self, mut active: Vec<usize>) {
        let total: i64 = active.iter().map(|&i| self.replicas(i)).sum();
        let allowed = if self.cfg.replicas > 0 {
            self.cfg.replicas + self.cfg.max_surge
        } else {
            0
        };
        let to_add = allowed - total;
        if to_add == 0 || total == 0 {
            return;
        }
        // Larger first; on a tie newer first when growing, older first
        // when shrinking (ReplicaSetsBySizeNewer / ReplicaSetsBySizeOlder).
        let keys: Vec<(i64, (SystemTime, String))> = (0..self.entries.len())
            .map(|i| (self.replicas(i), creation_key(&self.entries[i].rs)))
            .collect();
        active.sort_by(|&a, &b| {
            let by_age = if to_add > 0 {
                keys[b].1.cmp(&keys[a].1)
            } else {
                keys[a].1.cmp(&keys[b].1)
            };
            keys[b].0.cmp(&keys[a].0).then(by_age)
        });
        let mut added = 0;
        let mut sizes = Vec::with_capacity(active.len());
        for &i in &active {
            let r = self.replicas(i);
            let proportion = if r == 0 || added == to_add {
                0
            } else {
                let fraction = if self.cfg.replicas == 0 {
                    -r
                } else {
                    // round(r * allowed / total), half away from zero.
                    let (r, allowed, total) =
                        (i128::from(r), i128::from(allowed), i128::from(total));
                    let size = (2 * r * allowed + total) / (2 * total);
                    i64::try_from(size - r).unwrap_or(i64::MAX)
                };
                let left = to_add - added;
                if to_add > 0 {
                    fraction.min(left)
                } else {
                    fraction.max(left)
                }
            };
            sizes.push(r + proportion);
            added += proportion;
        }
        if let Some(first) = sizes.first_mut() {
            *first = (*first + to_add - added).max(0);
        }
        for (&i, n) in active.iter().zip(sizes) {
            self.scale(i, n);
        }
    }

    /// `cleanupDeployment`: delete old ReplicaSets beyond the history
    /// limit, lowest revision first, only empty and settled ones.
    fn cleanup(&mut self) {
        let Some(limit) = self.cfg.history_limit else {
            return;
        };
        let mut cleanable: Vec<usize> = self
            .old()
            .into_iter()
            .filter(|&i| {
                self.entries[i].observed.is_some()
                    && self.entries[i].rs.meta().deletion_timestamp.is_empty()
            })
            .collect();
        if cleanable.len() <= limit {
            return;
        }
        let diff = cleanable.len() - limit;
        cleanable.sort_by_cached_key(|&i| {
            let rs = &self.entries[i].rs;
            (revision(rs), creation_key(rs))
        });
        for &i in cleanable.iter().take(diff) {
            let rs = &self.entries[i].rs;
            let st = rs.status.clone().unwrap_or_default();
            if st.replicas != 0
                || spec_replicas(rs) != 0
                || rs.meta().generation > st.observed_generation
            {
                continue;
            }
            let m = rs.meta();
            self.deletes.push((m.name.clone(), m.uid.clone()));
        }
    }

    /// `DeploymentComplete`: all replicas updated and available.
    fn complete(&self, st: &v1::DeploymentStatus) -> bool {
        let r = self.cfg.replicas;
        i64::from(st.updated_replicas) == r
            && i64::from(st.replicas) == r
            && i64::from(st.available_replicas) == r
            && st.observed_generation >= self.cfg.d.meta().generation
    }

    /// `calculateStatus`: counts over the owned ReplicaSets and the
    /// Available condition.
    fn calculate_status(&self) -> v1::DeploymentStatus {
        let counts: Vec<Counts> = self.entries.iter().map(|e| status_counts(&e.rs)).collect();
        let available: i64 = counts.iter().map(|c| c.available).sum();
        let total: i64 = self.entries.iter().map(|e| e.listed_replicas).sum();
        let mut st = v1::DeploymentStatus {
            observed_generation: self.cfg.d.meta().generation,
            replicas: to_i32(counts.iter().map(|c| c.replicas).sum()),
            updated_replicas: to_i32(self.new.map_or(0, |i| counts[i].replicas)),
            ready_replicas: to_i32(counts.iter().map(|c| c.ready).sum()),
            available_replicas: to_i32(available),
            unavailable_replicas: to_i32(total - available),
            conditions: self.seen.conditions.clone(),
            collision_count: self.seen.collision_count,
        };
        let c = if available >= self.cfg.replicas - self.cfg.max_unavailable {
            self.condition(
                AVAILABLE,
                TRUE,
                MIN_AVAILABLE_REASON,
                "Deployment has minimum availability.".into(),
            )
        } else {
            self.condition(
                AVAILABLE,
                FALSE,
                MIN_UNAVAILABLE_REASON,
                "Deployment does not have minimum availability.".into(),
            )
        };
        set_condition(&mut st, c);
        st
    }

    /// `syncRolloutStatus`: the status with the Progressing condition
    /// estimated (complete, progressing, or past its deadline) and the
    /// ReplicaSets' ReplicaFailure condition carried over.
    fn sync_rollout_status(&self) -> v1::DeploymentStatus {
        let mut st = self.calculate_status();
        let has_deadline = self.cfg.progress_deadline.is_some();
        if !has_deadline {
            remove_condition(&mut st, PROGRESSING);
        }
        let current = get_condition(&self.seen, PROGRESSING);
        // A resync of a complete rollout estimates nothing.
        let complete_before = st.replicas == st.updated_replicas
            && current.is_some_and(|c| c.reason == NEW_RS_AVAILABLE_REASON);
        if has_deadline && !complete_before {
            let subject = match self.new {
                Some(i) => format!("ReplicaSet \"{}\"", self.entries[i].rs.meta().name),
                None => format!("Deployment \"{}\"", self.cfg.d.meta().name),
            };
            if self.complete(&st) {
                let c = self.condition(
                    PROGRESSING,
                    TRUE,
                    NEW_RS_AVAILABLE_REASON,
                    format!("{subject} has successfully progressed."),
                );
                set_condition(&mut st, c);
            } else if progressing(&self.seen, &st) {
                // Refresh lastUpdateTime even with an unchanged reason.
                let mut c = self.condition(
                    PROGRESSING,
                    TRUE,
                    RS_UPDATED_REASON,
                    format!("{subject} is progressing."),
                );
                if let Some(cur) = current {
                    if cur.status == TRUE {
                        c.last_transition_time = cur.last_transition_time.clone();
                    }
                    remove_condition(&mut st, PROGRESSING);
                }
                set_condition(&mut st, c);
            } else if self.timed_out(&st) {
                let c = self.condition(
                    PROGRESSING,
                    FALSE,
                    TIMED_OUT_REASON,
                    format!("{subject} has timed out progressing."),
                );
                set_condition(&mut st, c);
            }
        }
        match self.replica_failure() {
            Some(c) => set_condition(&mut st, c),
            None => remove_condition(&mut st, REPLICA_FAILURE),
        }
        st
    }

    /// `DeploymentTimedOut`.
    fn timed_out(&self, st: &v1::DeploymentStatus) -> bool {
        let Some(deadline) = self.cfg.progress_deadline else {
            return false;
        };
        let Some(c) = get_condition(st, PROGRESSING) else {
            return false;
        };
        match c.reason.as_str() {
            NEW_RS_AVAILABLE_REASON => false,
            TIMED_OUT_REASON => true,
            _ => parse_rfc3339(&c.last_update_time)
                .and_then(|t| t.checked_add(deadline))
                .is_some_and(|t| t < self.now),
        }
    }

    /// `getReplicaFailures`: the new ReplicaSet's first, else any.
    fn replica_failure(&self) -> Option<v1::DeploymentCondition> {
        let failure = |e: &Entry| -> Option<v1::DeploymentCondition> {
            let c =
                e.rs.status
                    .as_ref()?
                    .conditions
                    .iter()
                    .find(|c| c.r#type == REPLICA_FAILURE)?;
            Some(v1::DeploymentCondition {
                r#type: c.r#type.clone(),
                status: c.status.clone(),
                last_update_time: c.last_transition_time.clone(),
                last_transition_time: c.last_transition_time.clone(),
                reason: c.reason.clone(),
                message: c.message.clone(),
            })
        };
        self.new
            .and_then(|i| failure(&self.entries[i]))
            .or_else(|| self.entries.iter().find_map(failure))
    }

    /// The round's actions, in order: ReplicaSet creates and updates (each
    /// followed by its scaling event), deletes, the Deployment's revision,
    /// the status.
    fn finish(self, status: v1::DeploymentStatus) -> Vec<Action> {
        let mut actions = Vec::new();
        for &i in &self.touched {
            let e = &self.entries[i];
            let name = e.rs.meta().name.clone();
            let to = spec_replicas(&e.rs);
            match e.observed {
                None => {
                    actions.push(Action::CreateReplicaSet(e.rs.clone()));
                    if to > 0 {
                        actions.push(scaling_event("up", &name, to));
                    }
                }
                Some(j) => {
                    let before = &self.rss[j];
                    if e.rs == *before {
                        continue;
                    }
                    actions.push(Action::UpdateReplicaSet(e.rs.clone()));
                    let from = spec_replicas(before);
                    if to != from {
                        actions.push(scaling_event(
                            if to > from { "up" } else { "down" },
                            &name,
                            to,
                        ));
                    }
                }
            }
        }
        for (name, uid) in self.deletes {
            actions.push(Action::DeleteReplicaSet { name, uid });
        }
        if let Some(rev) = self.deployment_revision {
            let mut d = self.cfg.d.clone();
            d.meta_mut()
                .annotations
                .insert(REVISION_ANNOTATION.to_string(), rev);
            actions.push(Action::UpdateDeployment(d));
        }
        if status != self.cfg.d.status.clone().unwrap_or_default() {
            actions.push(Action::UpdateStatus(status));
        }
        actions
    }
}

/// `DeploymentProgressing`: more updated, ready or available replicas, or
/// fewer old ones, than the current status says.
fn progressing(old: &v1::DeploymentStatus, new: &v1::DeploymentStatus) -> bool {
    let old_old = i64::from(old.replicas) - i64::from(old.updated_replicas);
    let new_old = i64::from(new.replicas) - i64::from(new.updated_replicas);
    new.updated_replicas > old.updated_replicas
        || new_old < old_old
        || new.ready_replicas > old.ready_replicas
        || new.available_replicas > old.available_replicas
}

fn scaling_event(direction: &str, name: &str, to: i64) -> Action {
    Action::Event {
        type_: "Normal".to_string(),
        reason: "ScalingReplicaSet".to_string(),
        message: format!("Scaled {direction} replica set {name} to {to}"),
    }
}

fn remove_condition(st: &mut v1::DeploymentStatus, type_: &str) {
    st.conditions.retain(|c| c.r#type != type_);
}

/// `SetDeploymentCondition`: nothing changes when status and reason are
/// the same; the transition time is kept when only the reason changes.
fn set_condition(st: &mut v1::DeploymentStatus, mut c: v1::DeploymentCondition) {
    if let Some(cur) = get_condition(st, &c.r#type) {
        if cur.status == c.status && cur.reason == c.reason {
            return;
        }
        if cur.status == c.status {
            c.last_transition_time = cur.last_transition_time.clone();
        }
    }
    remove_condition(st, &c.r#type);
    st.conditions.push(c);
}

/// Appends `revision` to a comma-separated history, dropping the oldest
/// entries beyond Kubernetes' length limit. None when it cannot fit.
fn append_history(history: &str, revision: &str) -> Option<String> {
    if history.is_empty() {
        return Some(revision.to_string());
    }
    let mut parts: Vec<&str> = history.split(',').collect();
    let mut total = history.len() + revision.len() + 1;
    let mut start = 0;
    while total > MAX_REVISION_HISTORY_CHARS && start < parts.len() {
        total -= parts[start].len() + 1;
        start += 1;
    }
    if total > MAX_REVISION_HISTORY_CHARS {
        return None;
    }
    parts.drain(..start);
    parts.push(revision);
    Some(parts.join(","))
}

fn same_namespace(a: &str, b: &str) -> bool {
    a.is_empty() || b.is_empty() || a == b
}

fn rs_template(rs: &v1::ReplicaSet) -> v1::PodTemplateSpec {
    rs.spec
        .as_ref()
        .and_then(|s| s.template.clone())
        .unwrap_or_default()
}

/// `spec.replicas` (1 when unset, 0 without a spec, never negative).
fn spec_replicas(rs: &v1::ReplicaSet) -> i64 {
    rs.spec.as_ref().map_or(0, |s| {
        i64::from(s.replicas.unwrap_or(DEFAULT_REPLICAS).max(0))
    })
}

struct Counts {
    replicas: i64,
    ready: i64,
    available: i64,
}

fn status_counts(rs: &v1::ReplicaSet) -> Counts {
    let st = rs.status.clone().unwrap_or_default();
    Counts {
        replicas: i64::from(st.replicas.max(0)),
        ready: i64::from(st.ready_replicas.max(0)),
        available: i64::from(st.available_replicas.max(0)),
    }
}

/// The revision annotation; 0 when missing or unreadable.
fn revision(rs: &v1::ReplicaSet) -> i64 {
    rs.meta()
        .annotations
        .get(REVISION_ANNOTATION)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Kubernetes' `ReplicaSetsByCreationTimestamp`: oldest first, then by
/// name. A missing or unreadable timestamp sorts first.
fn creation_key(rs: &v1::ReplicaSet) -> (SystemTime, String) {
    let m = rs.meta();
    (
        parse_rfc3339(&m.creation_timestamp).unwrap_or(UNIX_EPOCH),
        m.name.clone(),
    )
}

fn to_i32(n: i64) -> i32 {
    i32::try_from(n.max(0)).unwrap_or(i32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use keelson_model::deployment::{progress_deadline_exceeded, rollout_status};

    const UID: &str = "dep-uid-1";

    /// 2024-05-01T10:00:00Z
    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_714_557_600)
    }
    fn stamp(t: SystemTime) -> String {
        format_rfc3339(t)
    }
    fn labels(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }
    fn strs(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    /// The pod template of version `tag` (image `nginx:<tag>`).
    fn template(tag: &str) -> v1::PodTemplateSpec {
        v1::PodTemplateSpec {
            metadata: Some(v1::ObjectMeta {
                labels: labels(&[("app", "web")]),
                ..Default::default()
            }),
            spec: Some(v1::PodSpec {
                containers: vec![v1::Container {
                    name: "web".into(),
                    image: format!("nginx:{tag}"),
                    ..Default::default()
                }],
                ..Default::default()
            }),
        }
    }

    /// The name the controller gives version `tag`'s ReplicaSet.
    fn rs_name(tag: &str) -> String {
        format!("web-{}", template_hash(&template(tag)))
    }

    /// Deployment "web" of version "1", defaulted as the API server does.
    fn deployment(replicas: i32) -> v1::Deployment {
        v1::Deployment {
            api_version: "apps/v1".into(),
            kind: "Deployment".into(),
            metadata: Some(v1::ObjectMeta {
                name: "web".into(),
                namespace: "default".into(),
                uid: UID.into(),
                generation: 1,
                resource_version: "5".into(),
                ..Default::default()
            }),
            spec: Some(v1::DeploymentSpec {
                replicas: Some(replicas),
                selector: Some(v1::LabelSelector {
                    match_labels: labels(&[("app", "web")]),
                    ..Default::default()
                }),
                template: Some(template("1")),
                strategy: Some(v1::DeploymentStrategy {
                    r#type: "RollingUpdate".into(),
                    rolling_update: Some(v1::RollingUpdateDeployment {
                        max_surge: "25%".into(),
                        max_unavailable: "25%".into(),
                    }),
                }),
                min_ready_seconds: 0,
                revision_history_limit: Some(10),
                paused: false,
                progress_deadline_seconds: Some(600),
            }),
            status: None,
        }
    }

    fn with(mut d: v1::Deployment, f: impl FnOnce(&mut v1::Deployment)) -> v1::Deployment {
        f(&mut d);
        d
    }
    fn spec_mut(d: &mut v1::Deployment) -> &mut v1::DeploymentSpec {
        d.spec.get_or_insert_with(Default::default)
    }
    /// A spec change: the template of version `tag`, a new generation.
    fn image(d: v1::Deployment, tag: &str) -> v1::Deployment {
        with(d, |d| {
            spec_mut(d).template = Some(template(tag));
            d.meta_mut().generation += 1;
        })
    }
    fn scaled(d: v1::Deployment, replicas: i32) -> v1::Deployment {
        with(d, |d| {
            spec_mut(d).replicas = Some(replicas);
            d.meta_mut().generation += 1;
        })
    }
    fn strategy(d: v1::Deployment, surge: &str, unavailable: &str) -> v1::Deployment {
        with(d, |d| {
            spec_mut(d).strategy = Some(v1::DeploymentStrategy {
                r#type: "RollingUpdate".into(),
                rolling_update: Some(v1::RollingUpdateDeployment {
                    max_surge: surge.into(),
                    max_unavailable: unavailable.into(),
                }),
            })
        })
    }
    fn recreate(d: v1::Deployment) -> v1::Deployment {
        with(d, |d| {
            spec_mut(d).strategy = Some(v1::DeploymentStrategy {
                r#type: "Recreate".into(),
                rolling_update: None,
            })
        })
    }
    fn paused(d: v1::Deployment, p: bool) -> v1::Deployment {
        with(d, |d| spec_mut(d).paused = p)
    }

    /// Version `tag`'s ReplicaSet as the controller creates it, stored
    /// (uid, resourceVersion, creation time from the revision) and settled:
    /// `replicas` pods, all available.
    fn rs(tag: &str, revision: i64, replicas: i32) -> v1::ReplicaSet {
        let d = image(deployment(replicas), tag);
        let mut rs = reconcile(&d, &[], &[], now())
            .into_iter()
            .find_map(|a| match a {
                Action::CreateReplicaSet(rs) => Some(rs),
                _ => None,
            })
            .expect("a fresh deployment creates a ReplicaSet");
        let m = rs.meta_mut();
        m.uid = format!("uid-{}", m.name);
        m.resource_version = "7".into();
        m.generation = 1;
        m.creation_timestamp = format!("2024-04-{:02}T00:00:00Z", revision.clamp(1, 28));
        m.annotations
            .insert(REVISION_ANNOTATION.into(), revision.to_string());
        set_pods(rs, replicas, replicas)
    }
    fn set_pods(mut rs: v1::ReplicaSet, replicas: i32, available: i32) -> v1::ReplicaSet {
        if let Some(s) = rs.spec.as_mut() {
            s.replicas = Some(replicas);
        }
        rs.status = Some(v1::ReplicaSetStatus {
            replicas,
            fully_labeled_replicas: replicas,
            ready_replicas: available,
            available_replicas: available,
            observed_generation: rs.meta().generation,
            conditions: vec![],
        });
        rs
    }
    fn rs_with(mut rs: v1::ReplicaSet, f: impl FnOnce(&mut v1::ReplicaSet)) -> v1::ReplicaSet {
        f(&mut rs);
        rs
    }
    fn orphan(rs: v1::ReplicaSet) -> v1::ReplicaSet {
        rs_with(rs, |rs| rs.meta_mut().owner_references.clear())
    }

    /// A pod controlled by ReplicaSet `owner`.
    fn pod(name: &str, owner: &v1::ReplicaSet, phase: &str) -> v1::Pod {
        v1::Pod {
            api_version: "v1".into(),
            kind: "Pod".into(),
            metadata: Some(v1::ObjectMeta {
                name: name.into(),
                namespace: "default".into(),
                uid: format!("uid-{name}"),
                labels: labels(&[("app", "web")]),
                owner_references: vec![v1::OwnerReference {
                    api_version: "apps/v1".into(),
                    kind: "ReplicaSet".into(),
                    name: owner.meta().name.clone(),
                    uid: owner.meta().uid.clone(),
                    controller: Some(true),
                    block_owner_deletion: Some(true),
                }],
                ..Default::default()
            }),
            spec: None,
            status: Some(v1::PodStatus {
                phase: phase.into(),
                ..Default::default()
            }),
        }
    }

    /// `d` with the status (and revision) `reconcile` writes stored on it,
    /// as at `at`; ReplicaSet actions are not applied.
    fn settled_at(
        mut d: v1::Deployment,
        rss: &[v1::ReplicaSet],
        pods: &[v1::Pod],
        at: SystemTime,
    ) -> v1::Deployment {
        for _ in 0..3 {
            let actions = reconcile(&d, rss, pods, at);
            apply_to_deployment(&mut d, &actions);
        }
        d
    }
    fn settled(d: v1::Deployment, rss: &[v1::ReplicaSet], pods: &[v1::Pod]) -> v1::Deployment {
        settled_at(d, rss, pods, now())
    }
    fn apply_to_deployment(d: &mut v1::Deployment, actions: &[Action]) {
        for a in actions {
            match a {
                Action::UpdateStatus(s) => d.status = Some(s.clone()),
                Action::UpdateDeployment(nd) => {
                    d.metadata = nd.metadata.clone();
                    d.spec = nd.spec.clone();
                }
                _ => {}
            }
        }
    }

    /// Actions as short strings, so cases read as tables. ReplicaSets of
    /// versions 1..=20 appear as `web-<version>`.
    fn summarize(actions: &[Action]) -> Vec<String> {
        let rev = |rs: &v1::ReplicaSet| {
            rs.meta()
                .annotations
                .get(REVISION_ANNOTATION)
                .cloned()
                .unwrap_or_default()
        };
        let lines = actions.iter().map(|a| match a {
            Action::CreateReplicaSet(rs) => format!(
                "create {} r={} rev={}",
                rs.meta().name,
                spec_replicas(rs),
                rev(rs)
            ),
            Action::UpdateReplicaSet(rs) => format!(
                "update {} r={} rev={}",
                rs.meta().name,
                spec_replicas(rs),
                rev(rs)
            ),
            Action::DeleteReplicaSet { name, .. } => format!("delete {name}"),
            Action::UpdateDeployment(d) => format!(
                "deployment rev={}",
                d.meta()
                    .annotations
                    .get(REVISION_ANNOTATION)
                    .cloned()
                    .unwrap_or_default()
            ),
            Action::UpdateStatus(s) => {
                let mut conds: Vec<String> = s
                    .conditions
                    .iter()
                    .map(|c| format!(" {}={}/{}", c.r#type, c.status, c.reason))
                    .collect();
                conds.sort();
                format!(
                    "status r={} upd={} ready={} avail={} unavail={} gen={}{}",
                    s.replicas,
                    s.updated_replicas,
                    s.ready_replicas,
                    s.available_replicas,
                    s.unavailable_replicas,
                    s.observed_generation,
                    conds.concat()
                )
            }
            Action::Event {
                type_,
                reason,
                message,
            } => format!("event {type_} {reason}: {message}"),
        });
        lines
            .map(|mut l| {
                for v in 1..=20 {
                    let tag = v.to_string();
                    l = l.replace(&rs_name(&tag), &format!("web-{tag}"));
                }
                l
            })
            .collect()
    }

    /// An in-memory cluster: applies actions like the runner and the API
    /// server would, and lets pods catch up with the ReplicaSets.
    struct Sim {
        d: v1::Deployment,
        rss: Vec<v1::ReplicaSet>,
        clock: SystemTime,
        /// New pods become available one round after they are created.
        lag: bool,
        /// Summaries of each round's actions.
        log: Vec<Vec<String>>,
    }

    impl Sim {
        fn new(d: v1::Deployment, lag: bool) -> Sim {
            Sim {
                d,
                rss: Vec::new(),
                clock: now(),
                lag,
                log: Vec::new(),
            }
        }

        fn apply(&mut self, actions: &[Action]) {
            for a in actions {
                match a {
                    Action::CreateReplicaSet(rs) => {
                        let name = rs.meta().name.clone();
                        assert!(
                            self.rss.iter().all(|r| r.meta().name != name),
                            "{name} exists"
                        );
                        let mut rs = rs.clone();
                        let m = rs.meta_mut();
                        m.uid = format!("uid-{name}");
                        m.resource_version = "1".into();
                        m.generation = 1;
                        m.creation_timestamp = stamp(self.clock);
                        self.rss.push(rs);
                    }
                    Action::UpdateReplicaSet(rs) => {
                        let name = &rs.meta().name;
                        let stored = self
                            .rss
                            .iter_mut()
                            .find(|r| &r.meta().name == name)
                            .expect("update of a stored ReplicaSet");
                        assert_eq!(
                            stored.meta().resource_version,
                            rs.meta().resource_version,
                            "compare-and-swap of {name}"
                        );
                        let mut new = rs.clone();
                        new.status = stored.status.clone();
                        let m = new.meta_mut();
                        let rv: u64 = m.resource_version.parse().unwrap();
                        m.resource_version = (rv + 1).to_string();
                        if new.spec != stored.spec {
                            new.meta_mut().generation += 1;
                        }
                        *stored = new;
                    }
                    Action::DeleteReplicaSet { name, uid } => {
                        let before = self.rss.len();
                        self.rss
                            .retain(|r| !(&r.meta().name == name && &r.meta().uid == uid));
                        assert_eq!(self.rss.len() + 1, before, "delete {name}");
                    }
                    _ => {}
                }
            }
            apply_to_deployment(&mut self.d, actions);
        }

        /// Pods catch up: each ReplicaSet gets its replicas; pods that
        /// existed before become available (all of them without lag).
        fn progress(&mut self) {
            for rs in &mut self.rss {
                let spec = to_i32(spec_replicas(rs));
                let generation = rs.meta().generation;
                let st = rs.status.get_or_insert_with(Default::default);
                let available = if self.lag {
                    spec.min(st.replicas)
                } else {
                    spec
                };
                st.replicas = spec;
                st.fully_labeled_replicas = spec;
                st.ready_replicas = available;
                st.available_replicas = available;
                st.observed_generation = generation;
            }
        }

        /// Rounds until one has no actions, calling `check` after each
        /// round's actions are applied (before pods catch up).
        fn converge(&mut self, check: impl Fn(&Sim)) -> usize {
            for round in 1..=200 {
                self.clock += Duration::from_secs(10);
                let actions = reconcile(&self.d, &self.rss, &[], self.clock);
                if actions.is_empty() {
                    return round;
                }
                self.log.push(summarize(&actions));
                self.apply(&actions);
                check(self);
                self.progress();
            }
            panic!("no convergence: {:#?}", self.log);
        }

        fn get(&self, tag: &str) -> &v1::ReplicaSet {
            let name = rs_name(tag);
            self.rss
                .iter()
                .find(|r| r.meta().name == name)
                .unwrap_or_else(|| panic!("no ReplicaSet {name}"))
        }

        fn status(&self) -> v1::DeploymentStatus {
            self.d.status.clone().unwrap_or_default()
        }
    }

    /// A cluster where `d` has rolled out completely.
    fn converged(d: v1::Deployment, lag: bool) -> Sim {
        let mut sim = Sim::new(d, lag);
        sim.converge(|_| {});
        sim.log.clear();
        sim
    }

    fn condition<'s>(st: &'s v1::DeploymentStatus, t: &str) -> &'s v1::DeploymentCondition {
        get_condition(st, t).unwrap_or_else(|| panic!("no {t} condition in {st:?}"))
    }

    #[test]
    fn template_hash_is_stable_and_ignores_the_hash_label() {
        let t = template("1");
        let h = template_hash(&t);
        // Pinned: a changed hash would make every Deployment roll out anew.
        assert_eq!(h, template_hash(&template("1")));
        assert_eq!(h.len(), HASH_LEN);
        assert!(h.bytes().all(|b| HASH_ALPHABET.contains(&b)), "{h}");
        assert_eq!(h, "f6s4hgbtgw");

        let mut labeled = t.clone();
        if let Some(m) = labeled.metadata.as_mut() {
            m.labels
                .insert(POD_TEMPLATE_HASH_LABEL.into(), "whatever".into());
        }
        assert_eq!(template_hash(&labeled), h);
        assert_ne!(template_hash(&template("2")), h);
        let mut relabeled = t.clone();
        if let Some(m) = relabeled.metadata.as_mut() {
            m.labels.insert("tier".into(), "front".into());
        }
        assert_ne!(template_hash(&relabeled), h);
        assert_ne!(compute_hash(&t, Some(1)), h);
        assert_ne!(compute_hash(&t, Some(1)), compute_hash(&t, Some(2)));
        assert_eq!(compute_hash(&t, None), h);
    }

    #[test]
    fn fresh_deployment_creates_its_replica_set() {
        let d = with(deployment(3), |d| {
            spec_mut(d).min_ready_seconds = 5;
            d.meta_mut()
                .annotations
                .insert(CHANGE_CAUSE_ANNOTATION.into(), "first".into());
        });
        let actions = reconcile(&d, &[], &[], now());
        let hash = template_hash(&template("1"));
        let name = format!("web-{hash}");
        let Some(Action::CreateReplicaSet(rs)) = actions.first() else {
            panic!("expected a create first, got {actions:?}");
        };
        let with_hash = labels(&[("app", "web"), (POD_TEMPLATE_HASH_LABEL, &hash)]);
        let m = rs.meta();
        assert_eq!(
            (rs.api_version.as_str(), rs.kind.as_str()),
            ("apps/v1", "ReplicaSet")
        );
        assert_eq!(m.name, name);
        assert_eq!(m.namespace, "default");
        assert_eq!(m.labels, with_hash);
        assert_eq!(
            m.annotations,
            labels(&[
                (REVISION_ANNOTATION, "1"),
                (CHANGE_CAUSE_ANNOTATION, "first")
            ])
        );
        assert_eq!(
            m.owner_references,
            vec![v1::OwnerReference {
                api_version: "apps/v1".into(),
                kind: "Deployment".into(),
                name: "web".into(),
                uid: UID.into(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            }]
        );
        let spec = rs.spec.clone().unwrap();
        assert_eq!(spec.replicas, Some(3));
        assert_eq!(spec.min_ready_seconds, 5);
        assert_eq!(spec.selector.unwrap().match_labels, with_hash);
        let mut want_template = template("1");
        want_template.metadata.as_mut().unwrap().labels = with_hash.clone();
        assert_eq!(spec.template, Some(want_template));
        assert_eq!(template_hash(&rs_template(rs)), hash);

        assert_eq!(
            summarize(&actions),
            strs(&[
                "create web-1 r=3 rev=1",
                "event Normal ScalingReplicaSet: Scaled up replica set web-1 to 3",
                "deployment rev=1",
                "status r=0 upd=0 ready=0 avail=0 unavail=3 gen=1 \
                 Available=False/MinimumReplicasUnavailable Progressing=True/NewReplicaSetCreated",
            ])
        );
        let Some(Action::UpdateStatus(st)) = actions.last() else {
            panic!("expected a status last");
        };
        let p = condition(st, PROGRESSING);
        assert_eq!(p.message, format!("Created new replica set \"{name}\""));
        assert_eq!(p.last_update_time, "2024-05-01T10:00:00Z");
        assert_eq!(p.last_transition_time, "2024-05-01T10:00:00Z");
        let Some(Action::UpdateDeployment(nd)) = actions.get(2) else {
            panic!("expected the deployment's revision");
        };
        assert_eq!(nd.spec, d.spec);
        assert_eq!(nd.meta().resource_version, "5");
    }

    struct Case {
        name: &'static str,
        d: v1::Deployment,
        rss: Vec<v1::ReplicaSet>,
        pods: Vec<v1::Pod>,
        want: Vec<String>,
    }

    fn case(
        name: &'static str,
        d: v1::Deployment,
        rss: Vec<v1::ReplicaSet>,
        pods: Vec<v1::Pod>,
        want: &[&str],
    ) -> Case {
        Case {
            name,
            d,
            rss,
            pods,
            want: strs(want),
        }
    }

    #[test]
    fn reconcile_table() {
        let v1_3 = rs("1", 1, 3);
        let steady = settled(deployment(3), std::slice::from_ref(&v1_3), &[]);
        let steady5 = settled(deployment(5), &[rs("1", 1, 5)], &[]);
        let old_gone = set_pods(v1_3.clone(), 0, 0);
        let old_reporting = rs_with(old_gone.clone(), |rs| {
            rs.status.as_mut().unwrap().replicas = 1
        });
        let recreating = recreate(image(recreate(steady.clone()), "2"));
        let paused3 = settled(
            paused(deployment(3), true),
            std::slice::from_ref(&v1_3),
            &[],
        );
        let other = rs_with(rs("1", 1, 3), |rs| {
            let m = rs.meta_mut();
            m.name = "other".into();
            m.owner_references[0].uid = "someone-else".into();
        });
        let elsewhere = rs_with(v1_3.clone(), |rs| rs.meta_mut().namespace = "prod".into());
        let mid_old = set_pods(rs("1", 1, 2), 2, 2);
        let mid_new = set_pods(rs("2", 2, 2), 2, 2);
        let mid_rollout = paused(
            settled(
                paused(image(deployment(4), "2"), true),
                &[mid_old.clone(), mid_new.clone()],
                &[],
            ),
            true,
        );
        let cases = vec![
            case("steady state: no actions", steady.clone(), vec![v1_3.clone()], vec![], &[]),
            case(
                "fresh deployment: create at full size (surge room), revision 1",
                deployment(3),
                vec![],
                vec![],
                &[
                    "create web-1 r=3 rev=1",
                    "event Normal ScalingReplicaSet: Scaled up replica set web-1 to 3",
                    "deployment rev=1",
                    "status r=0 upd=0 ready=0 avail=0 unavail=3 gen=1 \
                     Available=False/MinimumReplicasUnavailable Progressing=True/NewReplicaSetCreated",
                ],
            ),
            case(
                "scale up in steady state",
                scaled(steady.clone(), 5),
                vec![v1_3.clone()],
                vec![],
                &[
                    "update web-1 r=5 rev=1",
                    "event Normal ScalingReplicaSet: Scaled up replica set web-1 to 5",
                    "status r=3 upd=3 ready=3 avail=3 unavail=0 gen=2 \
                     Available=False/MinimumReplicasUnavailable Progressing=True/NewReplicaSetAvailable",
                ],
            ),
            case(
                "scale down in steady state",
                scaled(steady5.clone(), 3),
                vec![rs("1", 1, 5)],
                vec![],
                &[
                    "update web-1 r=3 rev=1",
                    "event Normal ScalingReplicaSet: Scaled down replica set web-1 to 3",
                    "status r=5 upd=5 ready=5 avail=5 unavail=0 gen=2 \
                     Available=True/MinimumReplicasAvailable Progressing=True/NewReplicaSetAvailable",
                ],
            ),
            case(
                "new template: a new ReplicaSet within maxSurge, revision 2",
                image(steady.clone(), "2"),
                vec![v1_3.clone()],
                vec![],
                &[
                    "create web-2 r=1 rev=2",
                    "event Normal ScalingReplicaSet: Scaled up replica set web-2 to 1",
                    "deployment rev=2",
                    "status r=3 upd=0 ready=3 avail=3 unavail=1 gen=2 \
                     Available=True/MinimumReplicasAvailable Progressing=True/NewReplicaSetCreated",
                ],
            ),
            case(
                "new template with maxSurge 0: created empty, an old replica goes first",
                image(strategy(steady.clone(), "0", "1"), "2"),
                vec![v1_3.clone()],
                vec![],
                &[
                    "create web-2 r=0 rev=2",
                    "update web-1 r=2 rev=1",
                    "event Normal ScalingReplicaSet: Scaled down replica set web-1 to 2",
                    "deployment rev=2",
                    "status r=3 upd=0 ready=3 avail=3 unavail=0 gen=2 \
                     Available=True/MinimumReplicasAvailable Progressing=True/NewReplicaSetCreated",
                ],
            ),
            case(
                "matching orphan is adopted and is the new ReplicaSet",
                steady.clone(),
                vec![orphan(v1_3.clone())],
                vec![],
                &["update web-1 r=3 rev=1"],
            ),
            case(
                "ReplicaSets of other controllers and namespaces are ignored",
                deployment(3),
                vec![other.clone(), elsewhere.clone()],
                vec![],
                &[
                    "create web-1 r=3 rev=1",
                    "event Normal ScalingReplicaSet: Scaled up replica set web-1 to 3",
                    "deployment rev=1",
                    "status r=0 upd=0 ready=0 avail=0 unavail=3 gen=1 \
                     Available=False/MinimumReplicasUnavailable Progressing=True/NewReplicaSetCreated",
                ],
            ),
            case(
                "Recreate: old ReplicaSets are scaled to 0 first, nothing created",
                recreating.clone(),
                vec![v1_3.clone()],
                vec![],
                &[
                    "update web-1 r=0 rev=1",
                    "event Normal ScalingReplicaSet: Scaled down replica set web-1 to 0",
                    "status r=3 upd=0 ready=3 avail=3 unavail=0 gen=2 \
                     Available=True/MinimumReplicasAvailable Progressing=True/NewReplicaSetAvailable",
                ],
            ),
            case(
                "Recreate: waits while the old ReplicaSet reports replicas",
                settled(recreating.clone(), std::slice::from_ref(&old_reporting), &[]),
                vec![old_reporting.clone()],
                vec![],
                &[],
            ),
            case(
                "Recreate: waits while an old pod is terminating",
                settled(
                    recreating.clone(),
                    std::slice::from_ref(&old_gone),
                    &[with_pod(pod("p", &old_gone, "Running"), |p| {
                        p.meta_mut().deletion_timestamp = "2024-05-01T09:59:00Z".into()
                    })],
                ),
                vec![old_gone.clone()],
                vec![with_pod(pod("p", &old_gone, "Running"), |p| {
                    p.meta_mut().deletion_timestamp = "2024-05-01T09:59:00Z".into()
                })],
                &[],
            ),
            case(
                "Recreate: waits while an old pod is Pending or Unknown",
                settled(recreating.clone(), std::slice::from_ref(&old_gone), &[pod("p", &old_gone, "Unknown")]),
                vec![old_gone.clone()],
                vec![pod("p", &old_gone, "Unknown"), pod("q", &old_gone, "Pending")],
                &[],
            ),
            case(
                "Recreate: finished old pods don't count; the new ReplicaSet gets all replicas",
                settled(recreating.clone(), std::slice::from_ref(&old_gone), &[]),
                vec![old_gone.clone()],
                vec![pod("p", &old_gone, "Succeeded"), pod("q", &old_gone, "Failed")],
                &[
                    "create web-2 r=3 rev=2",
                    "event Normal ScalingReplicaSet: Scaled up replica set web-2 to 3",
                ],
            ),
            case(
                "paused fresh deployment: nothing created, Progressing Unknown",
                paused(deployment(3), true),
                vec![],
                vec![],
                &["status r=0 upd=0 ready=0 avail=0 unavail=0 gen=1 \
                   Available=False/MinimumReplicasUnavailable Progressing=Unknown/DeploymentPaused"],
            ),
            case(
                "paused with a new template: no new ReplicaSet",
                settled(image(paused3.clone(), "2"), std::slice::from_ref(&v1_3), &[]),
                vec![v1_3.clone()],
                vec![],
                &[],
            ),
            case(
                "paused and scaled: the one active ReplicaSet follows",
                scaled(paused3.clone(), 5),
                vec![v1_3.clone()],
                vec![],
                &[
                    "update web-1 r=5 rev=1",
                    "event Normal ScalingReplicaSet: Scaled up replica set web-1 to 5",
                    "status r=3 upd=3 ready=3 avail=3 unavail=0 gen=2 \
                     Available=False/MinimumReplicasUnavailable Progressing=Unknown/DeploymentPaused",
                ],
            ),
            case(
                "paused mid-rollout: replicas + maxSurge spread proportionally, newer first",
                mid_rollout.clone(),
                vec![mid_old.clone(), mid_new.clone()],
                vec![],
                &[
                    "update web-2 r=3 rev=2",
                    "event Normal ScalingReplicaSet: Scaled up replica set web-2 to 3",
                ],
            ),
            case(
                "paused, new ReplicaSet saturated: old ones scaled to 0",
                scaled(mid_rollout.clone(), 2),
                vec![mid_old.clone(), mid_new.clone()],
                vec![],
                &[
                    "update web-1 r=0 rev=1",
                    "event Normal ScalingReplicaSet: Scaled down replica set web-1 to 0",
                    "status r=4 upd=2 ready=4 avail=4 unavail=0 gen=3 \
                     Available=True/MinimumReplicasAvailable Progressing=Unknown/DeploymentPaused",
                ],
            ),
            case(
                "paused mid-rollout scaled down: proportionally, older first",
                scaled(mid_rollout.clone(), 1),
                vec![mid_old.clone(), mid_new.clone()],
                vec![],
                &[
                    "update web-1 r=1 rev=1",
                    "event Normal ScalingReplicaSet: Scaled down replica set web-1 to 1",
                    "update web-2 r=1 rev=2",
                    "event Normal ScalingReplicaSet: Scaled down replica set web-2 to 1",
                    "status r=4 upd=2 ready=4 avail=4 unavail=0 gen=3 \
                     Available=True/MinimumReplicasAvailable Progressing=Unknown/DeploymentPaused",
                ],
            ),
            case(
                "paused mid-rollout at replicas + maxSurge: nothing to do",
                scaled(mid_rollout.clone(), 3),
                vec![mid_old.clone(), mid_new.clone()],
                vec![],
                &["status r=4 upd=2 ready=4 avail=4 unavail=0 gen=3 \
                   Available=True/MinimumReplicasAvailable Progressing=Unknown/DeploymentPaused"],
            ),
            case(
                "resumed: Progressing is estimated again",
                paused(paused3.clone(), false),
                vec![v1_3.clone()],
                vec![],
                &["status r=3 upd=3 ready=3 avail=3 unavail=0 gen=1 \
                   Available=True/MinimumReplicasAvailable Progressing=True/NewReplicaSetAvailable"],
            ),
            case(
                "deleted deployment: status only, no adoption, no rollout",
                with(image(steady.clone(), "2"), |d| {
                    d.meta_mut().deletion_timestamp = "2024-05-01T09:59:00Z".into()
                }),
                vec![v1_3.clone(), orphan(rs("3", 3, 1))],
                vec![],
                &["status r=3 upd=0 ready=3 avail=3 unavail=0 gen=2 \
                   Available=True/MinimumReplicasAvailable Progressing=True/NewReplicaSetAvailable"],
            ),
        ];
        for c in cases {
            let got = summarize(&reconcile(&c.d, &c.rss, &c.pods, now()));
            assert_eq!(got, c.want, "case: {}", c.name);
        }
    }

    fn with_pod(mut p: v1::Pod, f: impl FnOnce(&mut v1::Pod)) -> v1::Pod {
        f(&mut p);
        p
    }

    #[test]
    fn rolling_update_step_by_step() {
        let mut sim = converged(deployment(3), false);
        sim.d = image(sim.d.clone(), "2");
        sim.converge(|_| {});
        let scaling: Vec<Vec<String>> = sim
            .log
            .iter()
            .map(|round| {
                round
                    .iter()
                    .filter(|l| l.starts_with("create") || l.starts_with("update"))
                    .cloned()
                    .collect()
            })
            .collect();
        let want: Vec<Vec<String>> = vec![
            strs(&["create web-2 r=1 rev=2"]),
            strs(&["update web-1 r=2 rev=1"]),
            strs(&["update web-2 r=2 rev=2"]),
            strs(&["update web-1 r=1 rev=1"]),
            strs(&["update web-2 r=3 rev=2"]),
            strs(&["update web-1 r=0 rev=1"]),
            vec![],
        ];
        assert_eq!(scaling, want, "{:#?}", sim.log);
        assert_eq!(
            sim.log.last().cloned().unwrap_or_default(),
            strs(&["status r=3 upd=3 ready=3 avail=3 unavail=0 gen=2 \
                    Available=True/MinimumReplicasAvailable Progressing=True/NewReplicaSetAvailable"])
        );
    }

    #[test]
    fn rolling_update_keeps_its_bounds_and_converges() {
        let combos: &[(i32, &str, &str)] = &[
            (3, "25%", "25%"),
            (10, "25%", "25%"),
            (10, "3", "2"),
            (5, "0", "1"),
            (5, "1", "0"),
            (4, "50%", "0%"),
            (1, "25%", "25%"),
            (7, "0%", "30%"),
            (2, "0", "0"),
            (6, "100%", "0"),
            (6, "0", "100%"),
            (9, "", ""),
            (0, "25%", "25%"),
        ];
        for lag in [false, true] {
            for &(replicas, surge, unavailable) in combos {
                let label = format!(
                    "{replicas} replicas, surge {surge:?}, unavailable {unavailable:?}, lag {lag}"
                );
                let mut sim = converged(strategy(deployment(replicas), surge, unavailable), lag);
                sim.d = image(sim.d.clone(), "2");
                let cfg_d = sim.d.clone();
                let cfg = Config::parse(&cfg_d).expect("valid deployment");
                let max_total = i64::from(replicas) + cfg.max_surge;
                let min_available = i64::from(replicas) - cfg.max_unavailable;
                let rounds = sim.converge(|s| {
                    let total: i64 = s.rss.iter().map(spec_replicas).sum();
                    let available: i64 = s
                        .rss
                        .iter()
                        .map(|rs| status_counts(rs).available.min(spec_replicas(rs)))
                        .sum();
                    assert!(
                        total <= max_total,
                        "{label}: {total} pods > {max_total}: {:#?}",
                        s.log
                    );
                    assert!(
                        available >= min_available,
                        "{label}: {available} available < {min_available}: {:#?}",
                        s.log
                    );
                });
                assert!(rounds < 60, "{label}: {rounds} rounds");
                let new = sim.get("2");
                let old = sim.get("1");
                assert_eq!(spec_replicas(new), i64::from(replicas), "{label}");
                assert_eq!(status_counts(new).available, i64::from(replicas), "{label}");
                assert_eq!(
                    (spec_replicas(old), status_counts(old).replicas),
                    (0, 0),
                    "{label}"
                );
                let st = sim.status();
                assert_eq!(
                    (
                        st.replicas,
                        st.updated_replicas,
                        st.available_replicas,
                        st.unavailable_replicas
                    ),
                    (replicas, replicas, replicas, 0),
                    "{label}"
                );
                assert_eq!(
                    condition(&st, PROGRESSING).reason,
                    NEW_RS_AVAILABLE_REASON,
                    "{label}"
                );
                assert_eq!(condition(&st, AVAILABLE).status, TRUE, "{label}");
                assert_eq!(
                    rollout_status(&sim.d),
                    (
                        true,
                        "deployment \"web\" successfully rolled out".to_string()
                    ),
                    "{label}"
                );
                assert_eq!(
                    sim.d
                        .meta()
                        .annotations
                        .get(REVISION_ANNOTATION)
                        .map(String::as_str),
                    Some("2")
                );
            }
        }
    }

    #[test]
    fn recreate_never_runs_old_and_new_together() {
        for lag in [false, true] {
            let mut sim = converged(recreate(deployment(4)), lag);
            sim.d = image(sim.d.clone(), "2");
            sim.converge(|s| {
                let new = rs_name("2");
                let old_running: i64 = s
                    .rss
                    .iter()
                    .filter(|rs| rs.meta().name != new)
                    .map(|rs| status_counts(rs).replicas)
                    .sum();
                let new_wanted: i64 = s
                    .rss
                    .iter()
                    .filter(|rs| rs.meta().name == new)
                    .map(spec_replicas)
                    .sum();
                assert!(old_running == 0 || new_wanted == 0, "{:#?}", s.log);
            });
            assert_eq!(
                sim.log.first().cloned().unwrap_or_default()[..2],
                strs(&[
                    "update web-1 r=0 rev=1",
                    "event Normal ScalingReplicaSet: Scaled down replica set web-1 to 0"
                ])
            );
            assert_eq!(spec_replicas(sim.get("2")), 4);
            assert_eq!(spec_replicas(sim.get("1")), 0);
            assert!(rollout_status(&sim.d).0);
        }
    }

    #[test]
    fn rollback_makes_an_old_replica_set_new_with_the_next_revision() {
        let mut sim = converged(deployment(3), false);
        sim.d = image(sim.d.clone(), "2");
        sim.converge(|_| {});
        sim.log.clear();
        // Undo: the template of revision 1 again.
        sim.d = image(sim.d.clone(), "1");
        sim.converge(|_| {});
        assert_eq!(
            sim.log.first().cloned().unwrap_or_default()[..3],
            strs(&[
                "update web-1 r=1 rev=3",
                "event Normal ScalingReplicaSet: Scaled up replica set web-1 to 1",
                "deployment rev=3",
            ]),
            "{:#?}",
            sim.log
        );
        assert_eq!(sim.rss.len(), 2, "no new ReplicaSet");
        let back = sim.get("1");
        assert_eq!(
            back.meta().annotations,
            labels(&[
                (REVISION_ANNOTATION, "3"),
                (REVISION_HISTORY_ANNOTATION, "1")
            ])
        );
        assert_eq!(spec_replicas(back), 3);
        assert_eq!(spec_replicas(sim.get("2")), 0);
        assert_eq!(revision(sim.get("2")), 2);
        assert_eq!(
            sim.d
                .meta()
                .annotations
                .get(REVISION_ANNOTATION)
                .map(String::as_str),
            Some("3")
        );
        assert!(rollout_status(&sim.d).0);

        // And forward again: revision 4, history "2".
        sim.d = image(sim.d.clone(), "2");
        sim.converge(|_| {});
        assert_eq!(revision(sim.get("2")), 4);
        assert_eq!(
            sim.get("2")
                .meta()
                .annotations
                .get(REVISION_HISTORY_ANNOTATION)
                .map(String::as_str),
            Some("2")
        );
    }

    #[test]
    fn revision_history_is_appended_within_its_limit() {
        assert_eq!(append_history("", "3"), Some("3".into()));
        assert_eq!(append_history("1,2", "3"), Some("1,2,3".into()));
        let long = vec!["9"; 1000].join(",");
        let got = append_history(&long, "12").unwrap();
        assert!(got.len() <= MAX_REVISION_HISTORY_CHARS);
        assert!(got.ends_with(",9,12"));
    }

    #[test]
    fn old_replica_sets_beyond_the_history_limit_are_deleted_oldest_first() {
        let mut rss = vec![rs("14", 14, 3)];
        rss.extend((1..=13).map(|i| rs(&i.to_string(), i, 0)));
        // Revision 2 has an unobserved spec change: kept this round.
        rss[2] = rs_with(rss[2].clone(), |rs| rs.meta_mut().generation = 2);
        let d = image(deployment(3), "14");
        let d = settled(d, &rss, &[]);
        assert_eq!(
            summarize(&reconcile(&d, &rss, &[], now())),
            strs(&["delete web-1", "delete web-3"])
        );
        let Some(Action::DeleteReplicaSet { uid, .. }) =
            reconcile(&d, &rss, &[], now()).first().cloned()
        else {
            panic!("expected a delete");
        };
        assert_eq!(uid, format!("uid-{}", rs_name("1")));

        // Limit 0: every empty old ReplicaSet goes; one being deleted is
        // neither counted nor deleted again.
        let zero = with(d.clone(), |d| spec_mut(d).revision_history_limit = Some(0));
        rss[5] = rs_with(rss[5].clone(), |rs| {
            rs.meta_mut().deletion_timestamp = "2024-05-01T09:00:00Z".into()
        });
        let got = summarize(&reconcile(&zero, &rss, &[], now()));
        let want: Vec<String> = [1, 3, 4, 6, 7, 8, 9, 10, 11, 12, 13]
            .iter()
            .map(|i| format!("delete web-{i}"))
            .collect();
        assert_eq!(got, want);

        // Within the limit, or not complete yet: nothing deleted.
        let within = with(d.clone(), |d| spec_mut(d).revision_history_limit = Some(13));
        assert_eq!(
            summarize(&reconcile(&within, &rss, &[], now())),
            Vec::<String>::new()
        );
        let unsettled = with(d.clone(), |d| d.status = None);
        assert!(!summarize(&reconcile(&unsettled, &rss, &[], now()))
            .iter()
            .any(|l| l.starts_with("delete")));
        // Old ReplicaSets with replicas are never deleted.
        let busy: Vec<v1::ReplicaSet> = rss
            .iter()
            .map(|rs| {
                if revision(rs) < 14 {
                    set_pods(rs.clone(), 0, 0)
                } else {
                    rs.clone()
                }
            })
            .map(|rs| {
                rs_with(rs, |rs| {
                    rs.status.as_mut().unwrap().replicas = i32::from(revision(rs) < 14)
                })
            })
            .collect();
        assert!(!summarize(&reconcile(&zero, &busy, &[], now()))
            .iter()
            .any(|l| l.starts_with("delete")));
    }

    #[test]
    fn progress_deadline_and_condition_times() {
        let t0 = now() - Duration::from_secs(20 * 60);
        // Mid-rollout, the new pods never become available.
        let rss = vec![rs("1", 1, 2), set_pods(rs("2", 2, 2), 2, 0)];
        let d = settled_at(image(deployment(3), "2"), &rss, &[], t0);
        let st0 = d.status.clone().unwrap();
        let p0 = condition(&st0, PROGRESSING);
        // Found, and progress against the empty status in the same round.
        assert_eq!(
            (p0.status.as_str(), p0.reason.as_str()),
            (TRUE, RS_UPDATED_REASON)
        );
        assert_eq!(p0.last_update_time, stamp(t0));
        assert_eq!(p0.last_transition_time, stamp(t0));

        // Within the deadline: nothing to write.
        let early = t0 + Duration::from_secs(599);
        assert!(reconcile(&d, &rss, &[], early).is_empty());

        // A pod becomes available: progress, same transition time.
        let progressed = vec![rs("1", 1, 2), set_pods(rs("2", 2, 2), 2, 1)];
        let t1 = t0 + Duration::from_secs(300);
        let d1 = settled_at(d.clone(), &progressed, &[], t1);
        let p1 = condition(d1.status.as_ref().unwrap(), PROGRESSING).clone();
        assert_eq!(
            (p1.status.as_str(), p1.reason.as_str()),
            (TRUE, RS_UPDATED_REASON)
        );
        assert_eq!(
            p1.message,
            format!("ReplicaSet \"{}\" is progressing.", rs_name("2"))
        );
        assert_eq!(p1.last_update_time, stamp(t1));
        assert_eq!(p1.last_transition_time, stamp(t0));

        // No more progress: past lastUpdateTime + 600s the deadline is
        // exceeded, and stays so.
        let late = t1 + Duration::from_secs(601);
        let actions = reconcile(&d1, &progressed, &[], late);
        let Some(Action::UpdateStatus(st)) = actions.last() else {
            panic!("expected a status, got {actions:?}");
        };
        let p2 = condition(st, PROGRESSING);
        assert_eq!(
            (p2.status.as_str(), p2.reason.as_str()),
            (FALSE, TIMED_OUT_REASON)
        );
        assert_eq!(
            p2.message,
            format!("ReplicaSet \"{}\" has timed out progressing.", rs_name("2"))
        );
        assert_eq!(p2.last_transition_time, stamp(late));
        let d2 = settled_at(d1.clone(), &progressed, &[], late);
        assert!(reconcile(&d2, &progressed, &[], late + Duration::from_secs(3600)).is_empty());
        assert!(progress_deadline_exceeded(&d2));
        assert_eq!(
            rollout_status(&d2),
            (
                false,
                "deployment \"web\" exceeded its progress deadline".to_string()
            )
        );

        // Paused while timed out: the timeout is kept.
        let p = paused(d2.clone(), true);
        assert!(reconcile(&p, &progressed, &[], late).is_empty());

        // Without a deadline there is no Progressing condition.
        let none = with(d1.clone(), |d| {
            spec_mut(d).progress_deadline_seconds = Some(i32::MAX)
        });
        let st = settled_at(none, &progressed, &[], late).status.unwrap();
        assert!(get_condition(&st, PROGRESSING).is_none());
        assert_eq!(condition(&st, AVAILABLE).reason, MIN_AVAILABLE_REASON);
    }

    #[test]
    fn replica_failures_are_carried_over() {
        let failure = v1::ReplicaSetCondition {
            r#type: REPLICA_FAILURE.into(),
            status: TRUE.into(),
            last_transition_time: "2024-05-01T09:00:00Z".into(),
            reason: "FailedCreate".into(),
            message: "quota".into(),
        };
        let failing = rs_with(rs("1", 1, 3), |rs| {
            rs.status.as_mut().unwrap().conditions = vec![failure.clone()]
        });
        let d = settled(deployment(3), std::slice::from_ref(&failing), &[]);
        let c = condition(d.status.as_ref().unwrap(), REPLICA_FAILURE);
        assert_eq!(
            (c.reason.as_str(), c.message.as_str()),
            ("FailedCreate", "quota")
        );
        assert_eq!(c.last_update_time, "2024-05-01T09:00:00Z");
        // Fixed: the condition goes away.
        let actions = reconcile(&d, &[rs("1", 1, 3)], &[], now());
        let Some(Action::UpdateStatus(st)) = actions.last() else {
            panic!("expected a status, got {actions:?}");
        };
        assert!(get_condition(st, REPLICA_FAILURE).is_none());
    }

    #[test]
    fn status_written_back_is_stable() {
        let v1_3 = rs("1", 1, 3);
        let mid = vec![rs("1", 1, 2), set_pods(rs("2", 2, 2), 2, 1)];
        // Each scenario starts from the status of the state before (as the
        // runner sees it) and changes something.
        let steady = settled(deployment(3), std::slice::from_ref(&v1_3), &[]);
        let scenarios: Vec<(&str, v1::Deployment, Vec<v1::ReplicaSet>, Vec<v1::Pod>)> = vec![
            ("fresh", deployment(3), vec![], vec![]),
            (
                "steady, status lost",
                deployment(3),
                vec![v1_3.clone()],
                vec![],
            ),
            (
                "new template",
                image(steady.clone(), "2"),
                vec![v1_3.clone()],
                vec![],
            ),
            (
                "mid-rollout, status lost",
                image(deployment(3), "2"),
                mid.clone(),
                vec![],
            ),
            (
                "scaled",
                scaled(steady.clone(), 7),
                vec![v1_3.clone()],
                vec![],
            ),
            (
                "paused",
                paused(image(steady.clone(), "2"), true),
                mid.clone(),
                vec![],
            ),
            (
                "recreate",
                recreate(image(steady.clone(), "2")),
                vec![v1_3.clone()],
                vec![],
            ),
            ("orphan", deployment(3), vec![orphan(v1_3.clone())], vec![]),
            (
                "deleting",
                with(image(steady.clone(), "2"), |d| {
                    d.meta_mut().deletion_timestamp = "x".into()
                }),
                vec![v1_3.clone()],
                vec![],
            ),
        ];
        for (name, d, rss, pods) in scenarios {
            let mut d = d;
            let first = reconcile(&d, &rss, &pods, now());
            assert!(
                first.iter().any(|a| matches!(a, Action::UpdateStatus(_))),
                "{name}: a first status"
            );
            apply_to_deployment(&mut d, &first);
            for later in [now(), now() + Duration::from_secs(5)] {
                let again = reconcile(&d, &rss, &pods, later);
                assert!(
                    !again.iter().any(|a| matches!(
                        a,
                        Action::UpdateStatus(_) | Action::UpdateDeployment(_)
                    )),
                    "{name}: {:?}",
                    summarize(&again)
                );
                // Whatever else it does, it decides the same again.
                let firsts: Vec<String> = summarize(&first)
                    .into_iter()
                    .filter(|l| !l.starts_with("status") && !l.starts_with("deployment"))
                    .collect();
                assert_eq!(summarize(&again), firsts, "{name}");
            }
        }
    }

    #[test]
    fn a_name_collision_bumps_the_collision_count() {
        // Someone else's ReplicaSet has the name the template hashes to.
        let squatter = rs_with(orphan(rs("1", 1, 1)), |rs| {
            rs.meta_mut().labels = labels(&[("app", "other")]);
        });
        let mut d = deployment(3);
        let actions = reconcile(&d, std::slice::from_ref(&squatter), &[], now());
        assert!(!actions
            .iter()
            .any(|a| matches!(a, Action::CreateReplicaSet(_))));
        let Some(Action::UpdateStatus(st)) = actions.last() else {
            panic!("expected a status, got {actions:?}");
        };
        assert_eq!(st.collision_count, Some(1));
        apply_to_deployment(&mut d, &actions);

        let actions = reconcile(&d, std::slice::from_ref(&squatter), &[], now());
        let Some(Action::CreateReplicaSet(created)) = actions.first() else {
            panic!("expected a create, got {actions:?}");
        };
        let hash = compute_hash(&template("1"), Some(1));
        assert_eq!(created.meta().name, format!("web-{hash}"));
        assert_eq!(
            created.meta().labels.get(POD_TEMPLATE_HASH_LABEL),
            Some(&hash)
        );
        assert_ne!(created.meta().name, squatter.meta().name);

        // Once it exists it is the new ReplicaSet: nothing more to create.
        apply_to_deployment(&mut d, &actions);
        let stored = rs_with(set_pods(created.clone(), 3, 3), |rs| {
            rs.meta_mut().uid = "uid-created".into()
        });
        let actions = reconcile(&d, &[squatter, stored], &[], now());
        assert!(
            !actions
                .iter()
                .any(|a| matches!(a, Action::CreateReplicaSet(_) | Action::UpdateReplicaSet(_))),
            "{actions:?}"
        );
    }

    #[test]
    fn fenceposts_resolve_like_kubernetes() {
        type Want = Option<(i64, i64)>;
        let cases: &[(&str, &str, i64, Want)] = &[
            ("25%", "25%", 10, Some((3, 2))),
            ("25%", "25%", 3, Some((1, 0))),
            ("25%", "25%", 1, Some((1, 0))),
            ("", "", 4, Some((1, 1))),
            ("0", "0", 5, Some((0, 1))),
            ("0%", "10%", 5, Some((0, 1))),
            ("3", "2", 10, Some((3, 2))),
            ("100%", "0", 6, Some((6, 0))),
            ("abc%", "1", 3, None),
            ("1", "-1", 3, None),
            ("%", "1", 3, None),
            ("1.5", "1", 3, None),
            ("99999999999999999999", "1", 3, None),
        ];
        for &(surge, unavailable, desired, want) in cases {
            assert_eq!(
                resolve_fenceposts(surge, unavailable, desired),
                want,
                "{surge:?} {unavailable:?} of {desired}"
            );
        }
    }

    #[test]
    fn malformed_input_yields_no_actions() {
        let orphans = vec![orphan(rs("1", 1, 3)), rs("2", 2, 1)];
        let selector = |sel: Option<v1::LabelSelector>| {
            with(deployment(3), move |d| spec_mut(d).selector = sel)
        };
        let cases: Vec<(&str, v1::Deployment)> = vec![
            ("no spec", with(deployment(3), |d| d.spec = None)),
            ("no uid", with(deployment(3), |d| d.meta_mut().uid.clear())),
            ("no selector", selector(None)),
            (
                "empty selector",
                selector(Some(v1::LabelSelector::default())),
            ),
            (
                "bad selector operator",
                selector(Some(v1::LabelSelector {
                    match_expressions: vec![v1::LabelSelectorRequirement {
                        key: "app".into(),
                        operator: "Bogus".into(),
                        values: vec!["web".into()],
                    }],
                    ..Default::default()
                })),
            ),
            (
                "selector not matching the template",
                selector(Some(v1::LabelSelector {
                    match_labels: labels(&[("app", "db")]),
                    ..Default::default()
                })),
            ),
            (
                "no template",
                with(deployment(3), |d| spec_mut(d).template = None),
            ),
            (
                "negative replicas",
                with(deployment(3), |d| spec_mut(d).replicas = Some(-1)),
            ),
            ("maxSurge abc%", strategy(deployment(3), "abc%", "25%")),
            ("maxUnavailable -1", strategy(deployment(3), "25%", "-1")),
            (
                "unknown strategy",
                with(deployment(3), |d| {
                    spec_mut(d).strategy = Some(v1::DeploymentStrategy {
                        r#type: "Bogus".into(),
                        rolling_update: None,
                    })
                }),
            ),
            (
                "negative history limit",
                with(deployment(3), |d| {
                    spec_mut(d).revision_history_limit = Some(-1)
                }),
            ),
            (
                "negative progress deadline",
                with(deployment(3), |d| {
                    spec_mut(d).progress_deadline_seconds = Some(-5)
                }),
            ),
        ];
        for (name, d) in cases {
            assert_eq!(reconcile(&d, &orphans, &[], now()), vec![], "case: {name}");
            let _ = rollout_status(&d);
        }
        // A Recreate deployment ignores its (forbidden) rollingUpdate.
        let r = recreate(strategy(deployment(3), "abc%", "-1"));
        let r = with(r, |d| {
            spec_mut(d).strategy.as_mut().unwrap().r#type = "Recreate".into()
        });
        assert!(!reconcile(&r, &[], &[], now()).is_empty());
    }

    #[test]
    fn malformed_replica_sets_do_not_panic() {
        let weird = vec![
            rs_with(orphan(rs("1", 1, 3)), |rs| rs.spec = None),
            rs_with(rs("2", 2, 3), |rs| {
                rs.spec.as_mut().unwrap().replicas = Some(-4);
                rs.status = Some(v1::ReplicaSetStatus {
                    replicas: -1,
                    available_replicas: i32::MAX,
                    ready_replicas: i32::MIN,
                    ..Default::default()
                });
                rs.meta_mut()
                    .annotations
                    .insert(REVISION_ANNOTATION.into(), "x".into());
                rs.meta_mut().creation_timestamp = "yesterday".into();
            }),
            rs_with(rs("3", 3, 3), |rs| {
                rs.spec.as_mut().unwrap().replicas = None;
                rs.meta_mut()
                    .annotations
                    .insert(REVISION_ANNOTATION.into(), i64::MAX.to_string());
            }),
            rs_with(rs("4", 4, 3), |rs| rs.metadata = None),
        ];
        for d in [
            deployment(i32::MAX),
            deployment(0),
            image(deployment(3), "3"),
            recreate(deployment(3)),
            paused(deployment(3), true),
            strategy(deployment(i32::MAX), "100%", "100%"),
            with(deployment(3), |d| {
                d.status = Some(v1::DeploymentStatus {
                    conditions: vec![v1::DeploymentCondition {
                        r#type: PROGRESSING.into(),
                        status: TRUE.into(),
                        last_update_time: "garbage".into(),
                        ..Default::default()
                    }],
                    collision_count: Some(i32::MAX),
                    ..Default::default()
                })
            }),
        ] {
            let a = reconcile(&d, &weird, &[], now());
            assert_eq!(a, reconcile(&d, &weird, &[], now()), "deterministic");
        }
    }

    #[test]
    fn huge_numbers_do_not_overflow() {
        let big = i32::MAX - 1;
        let d = settled(
            paused(strategy(image(deployment(big), "2"), "100%", "100%"), true),
            &[],
            &[],
        );
        let d = scaled(d, i32::MAX);
        let rss = vec![
            set_pods(rs("1", 1, 1), big, 1),
            set_pods(rs("2", 2, 1), big / 2, 1),
        ];
        let actions = reconcile(&d, &rss, &[], now());
        let total: i64 = actions
            .iter()
            .filter_map(|a| match a {
                Action::UpdateReplicaSet(rs) => Some(spec_replicas(rs)),
                _ => None,
            })
            .sum();
        assert!(total > 0, "{:?}", summarize(&actions));
        let unpaused = paused(d, false);
        let _ = reconcile(&unpaused, &rss, &[], now());
    }
}
