//! A workload's template history as ControllerRevisions, after Kubernetes'
//! `controller_history.go` and the revision handling its StatefulSet and
//! DaemonSet controllers share.
//!
//! Each pod template an owner has had is one ControllerRevision named
//! `<owner>-<hash of the template>`, numbered in order, labelled with the
//! template's labels and `controller.kubernetes.io/hash`, holding the
//! template as Kubernetes writes it: a strategic merge patch
//! `{"spec":{"template":{..., "$patch":"replace"}}}` (what `kubectl rollout
//! undo` sends back). [`resolve`] finds the revision of the owner's
//! current template (making it when missing; an older one equal to it gets
//! the next number again, as after a rollback), adopts orphans its
//! selector matches, and counts a hash collision when another revision
//! holds the name; [`trim`] picks the revisions beyond the history limit.

use std::collections::BTreeSet;

use keelson_model::selector::LabelSelector;
use keelson_model::{controller_of, controller_reference, Kind, Resource};
use keelson_proto::v1;

use crate::deployment::compute_hash;

/// The label with a revision's template hash.
pub const REVISION_HASH_LABEL: &str = "controller.kubernetes.io/hash";

/// One write to a revision.
#[derive(Debug, Clone, PartialEq)]
pub enum RevisionWrite {
    Create(Box<v1::ControllerRevision>),
    /// Replace it (a new number, or an ownerReference adopting it).
    Update(Box<v1::ControllerRevision>),
    Delete(String),
}

/// The template a revision holds.
pub fn template_of(r: &v1::ControllerRevision) -> v1::PodTemplateSpec {
    let t = r
        .data
        .as_ref()
        .and_then(|d| d.spec.as_ref())
        .and_then(|s| s.template.clone())
        .unwrap_or_default();
    v1::PodTemplateSpec {
        metadata: t.metadata,
        spec: t.spec,
    }
}

/// The template hash a revision was named with.
pub fn hash_of(r: &v1::ControllerRevision) -> &str {
    r.meta()
        .labels
        .get(REVISION_HASH_LABEL)
        .map_or("", String::as_str)
}

/// A new revision of `owner` holding `template`, numbered `number`, named
/// with the template's hash (and the collision count, when set). As
/// Kubernetes, it carries the owner's annotations (kubectl's change-cause
/// for `rollout history`).
pub fn new_revision<K: Resource>(
    owner: &K,
    template: &v1::PodTemplateSpec,
    number: i64,
    collision_count: Option<i32>,
) -> v1::ControllerRevision {
    let m = owner.meta();
    let hash = compute_hash(template, collision_count);
    let mut labels = template
        .metadata
        .as_ref()
        .map(|t| t.labels.clone())
        .unwrap_or_default();
    labels.insert(REVISION_HASH_LABEL.to_string(), hash.clone());
    v1::ControllerRevision {
        api_version: Kind::ControllerRevision.api_version().to_string(),
        kind: Kind::ControllerRevision.name().to_string(),
        metadata: Some(v1::ObjectMeta {
            name: format!("{}-{hash}", m.name),
            namespace: m.namespace.clone(),
            labels,
            annotations: m.annotations.clone(),
            owner_references: vec![controller_reference(owner)],
            ..Default::default()
        }),
        data: Some(v1::RevisionData {
            spec: Some(v1::RevisionSpec {
                template: Some(v1::RevisionTemplate {
                    metadata: template.metadata.clone(),
                    spec: template.spec.clone(),
                    patch: "replace".to_string(),
                }),
            }),
        }),
        revision: number,
    }
}

/// An owner's revisions in one round.
pub struct History<'a> {
    /// The revision holding the owner's template.
    pub update: v1::ControllerRevision,
    /// The owner's revisions (its own and adopted), oldest number first.
    pub owned: Vec<&'a v1::ControllerRevision>,
    /// The owner's `status.collisionCount` after this round.
    pub collision_count: Option<i32>,
    pub writes: Vec<RevisionWrite>,
}

/// The revisions of `owner` (whose pods have `template` and whose
/// selector is `selector`) among `all` revisions of its namespace.
pub fn resolve<'a, K: Resource>(
    owner: &K,
    template: &v1::PodTemplateSpec,
    selector: &LabelSelector,
    all: &[&'a v1::ControllerRevision],
    collision_count: Option<i32>,
) -> History<'a> {
    let m = owner.meta();
    let owner_ref = controller_reference(owner);
    let mut writes = Vec::new();
    let mut owned: Vec<&v1::ControllerRevision> = Vec::new();
    for r in all {
        let rm = r.meta();
        if rm.namespace != m.namespace || !rm.deletion_timestamp.is_empty() {
            continue;
        }
        match controller_of(rm) {
            Some(o) if o.uid == m.uid => owned.push(r),
            Some(_) => {}
            None if selector.matches(&rm.labels) => {
                let mut adopted = (*r).clone();
                let refs = &mut adopted.meta_mut().owner_references;
                refs.retain(|o| o.uid != owner_ref.uid);
                refs.push(owner_ref.clone());
                writes.push(RevisionWrite::Update(Box::new(adopted)));
                owned.push(r);
            }
            None => {}
        }
    }
    owned.sort_by(|a, b| (a.revision, &a.meta().name).cmp(&(b.revision, &b.meta().name)));
    let latest = owned.last().map_or(0, |r| r.revision);
    // A client may write any number: the next one saturates, never panics.
    let next_number = latest.saturating_add(1);
    let mut collision_count = collision_count;
    // The newest revision equal to the template is the update revision.
    let equal = owned
        .iter()
        .rev()
        .find(|r| template_of(r) == *template)
        .copied();
    let update = match equal {
        Some(r) if r.revision == latest => r.clone(),
        Some(r) => {
            // Back to an older template: it becomes the newest revision.
            let mut bumped = r.clone();
            bumped.revision = next_number;
            if controller_of(bumped.meta()).is_none() {
                bumped.meta_mut().owner_references.push(owner_ref.clone());
            }
            writes.retain(
                |w| !matches!(w, RevisionWrite::Update(x) if x.meta().name == r.meta().name),
            );
            writes.push(RevisionWrite::Update(Box::new(bumped.clone())));
            bumped
        }
        None => {
            let mut fresh = new_revision(owner, template, next_number, collision_count);
            // A name taken by another template (or another owner's
            // revision): count a collision and hash again.
            let taken = |name: &str| all.iter().any(|r| r.meta().name == name);
            while taken(&fresh.meta().name) {
                let next = collision_count.unwrap_or(0).saturating_add(1);
                collision_count = Some(next);
                fresh = new_revision(owner, template, next_number, collision_count);
                if next == i32::MAX {
                    break;
                }
            }
            writes.push(RevisionWrite::Create(Box::new(fresh.clone())));
            fresh
        }
    };
    History {
        update,
        owned,
        collision_count,
        writes,
    }
}

/// The revisions of `owned` (oldest first) to delete: those not `live`
/// beyond the newest `limit` of them.
pub fn trim(owned: &[&v1::ControllerRevision], live: &BTreeSet<&str>, limit: i32) -> Vec<String> {
    let limit = usize::try_from(limit).unwrap_or(0);
    let history: Vec<&&v1::ControllerRevision> = owned
        .iter()
        .filter(|r| !live.contains(r.meta().name.as_str()))
        .collect();
    let excess = history.len().saturating_sub(limit);
    history[..excess]
        .iter()
        .map(|r| r.meta().name.clone())
        .collect()
}
