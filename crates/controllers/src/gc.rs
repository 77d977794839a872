//! The garbage collector, after Kubernetes' `GarbageCollector`: deletes
//! objects whose owners are gone and carries out foreground and orphan
//! deletion through `ownerReferences`.
//!
//! [`reconcile`] looks at a snapshot of every tracked object (as [`Node`]s
//! of the ownership graph) and returns the [`Action`]s to take:
//!
//! - **Owners.** An ownerReference points at the object with its uid, in
//!   the dependent's namespace, or cluster-scoped (a namespaced dependent may
//!   have a cluster-scoped owner; a cluster-scoped dependent only a
//!   cluster-scoped one). A uid found only in another namespace is absent.
//!   A reference to the object itself is to a present owner that never
//!   waits for it. References without a uid, and objects without one, are
//!   ignored.
//! - **Orphans.** An object none of whose owners is present is deleted
//!   ([`Action::DeleteOrphaned`], background). One present owner is enough
//!   to keep it. An object already being deleted is never deleted again.
//! - **Foreground.** A dependent whose present owners are all being deleted
//!   with the `foregroundDeletion` finalizer is deleted in the foreground
//!   ([`Action::DeleteDependent`], so the deletion recurses), unless it is
//!   already being deleted. A dependent that also has an owner not being
//!   deleted that way is kept, and its references to the foreground owners
//!   are removed (as Kubernetes does), so those owners do not wait for it.
//!   The owner's finalizer is removed ([`Action::RemoveFinalizer`]) once no
//!   object references it any more; dependents still being deleted count.
//! - **Orphan propagation.** An owner being deleted with the `orphan`
//!   finalizer has its reference removed from every dependent
//!   ([`Action::RemoveOwnerRef`]); once none is left, its finalizer is
//!   removed. The orphan finalizer wins over a foreground one on the same
//!   owner: its dependents are released, not deleted.
//! - Objects without ownerReferences are never touched as dependents.
//! - **Order.** First the actions on dependents, then the finalizer
//!   removals on owners, each visiting objects by kind, namespace, name and
//!   uid (reference removals of one dependent by owner uid). An object listed
//!   twice (same kind, namespace, name and uid) is looked at once, so no
//!   action appears twice.

use std::collections::{BTreeSet, HashMap, HashSet};

use keelson_model::Kind;
use keelson_proto::v1;

/// The finalizer the API server puts on an object deleted with
/// `propagationPolicy: Orphan`.
pub const ORPHAN_FINALIZER: &str = "orphan";
/// The finalizer the API server puts on an object deleted with
/// `propagationPolicy: Foreground`.
pub const FOREGROUND_FINALIZER: &str = "foregroundDeletion";

/// What the collector needs of any object of a kind it tracks.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub kind: Kind,
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub owners: Vec<v1::OwnerReference>,
    pub finalizers: Vec<String>,
    /// `deletionTimestamp` is set.
    pub deleting: bool,
}

/// One change to make to the cluster.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Every owner of this object is absent (no object with the owner's uid
    /// in the same namespace — or cluster-scoped owner): delete it
    /// (background). `owners` lists the owner refs so the runner can confirm
    /// each absence with a live GET before deleting (caches may lag).
    DeleteOrphaned {
        kind: Kind,
        namespace: String,
        name: String,
        uid: String,
        owners: Vec<v1::OwnerReference>,
    },
    /// An owner is being deleted in the foreground: delete this dependent
    /// (foreground too, so it recurses).
    DeleteDependent {
        kind: Kind,
        namespace: String,
        name: String,
        uid: String,
    },
    /// An owner is being deleted with orphan propagation: remove the
    /// ownerReference with `owner_uid` from this dependent. (Also used to
    /// release a dependent from a foreground owner when another owner keeps
    /// it.)
    RemoveOwnerRef {
        kind: Kind,
        namespace: String,
        name: String,
        uid: String,
        owner_uid: String,
    },
    /// An owner being deleted has no dependents left (foreground) or none
    /// still referencing it (orphan): remove this finalizer from it so the
    /// deletion completes.
    RemoveFinalizer {
        kind: Kind,
        namespace: String,
        name: String,
        uid: String,
        finalizer: String,
    },
}

impl Node {
    fn has_finalizer(&self, f: &str) -> bool {
        self.finalizers.iter().any(|x| x == f)
    }

    /// Being deleted with orphan propagation: dependents are released.
    fn orphaning(&self) -> bool {
        self.deleting && self.has_finalizer(ORPHAN_FINALIZER)
    }

    /// Being deleted in the foreground: dependents are deleted first.
    fn deleting_dependents(&self) -> bool {
        self.deleting && self.has_finalizer(FOREGROUND_FINALIZER) && !self.orphaning()
    }

    /// Whether `owner` may be the object an ownerReference of `self` with
    /// the owner's uid points at.
    fn can_be_owned_by(&self, owner: &Node) -> bool {
        !owner.kind.namespaced() || owner.namespace == self.namespace
    }

    /// The ownerReferences that count: with a uid, not to the object itself.
    fn refs(&self) -> impl Iterator<Item = &v1::OwnerReference> {
        self.owners
            .iter()
            .filter(move |r| !r.uid.is_empty() && r.uid != self.uid)
    }
}

/// Decide what to do, given every tracked object. Pure: the same inputs
/// always give the same actions, whatever their order.
pub fn reconcile(objects: &[Node]) -> Vec<Action> {
    let mut nodes: Vec<&Node> = objects.iter().filter(|n| !n.uid.is_empty()).collect();
    nodes.sort_by_cached_key(|n| order_key(n));
    nodes.dedup_by(|a, b| identity(a) == identity(b));
    let mut by_uid: HashMap<&str, Vec<&Node>> = HashMap::new();
    for n in &nodes {
        by_uid.entry(n.uid.as_str()).or_default().push(n);
    }
    let owner_of = |dependent: &Node, uid: &str| -> Option<&Node> {
        by_uid
            .get(uid)?
            .iter()
            .copied()
            .find(|o| dependent.can_be_owned_by(o))
    };

    // Owners (by uid, namespace-qualified) that some object still references.
    let mut referenced: HashSet<(&str, &str)> = HashSet::new();
    let mut actions = Vec::new();
    for dep in &nodes {
        let mut foreground: BTreeSet<&str> = BTreeSet::new();
        let mut orphaning: BTreeSet<&str> = BTreeSet::new();
        // A reference to the object itself is to a present owner: it keeps
        // the object, but does not hold up the object's own deletion.
        let mut any_ref = dep.owners.iter().any(|r| r.uid == dep.uid);
        let mut solid = any_ref;
        for r in dep.refs() {
            any_ref = true;
            let Some(owner) = owner_of(dep, &r.uid) else {
                continue;
            };
            referenced.insert((owner.uid.as_str(), owner.namespace.as_str()));
            if owner.orphaning() {
                orphaning.insert(owner.uid.as_str());
            } else if owner.deleting_dependents() {
                foreground.insert(owner.uid.as_str());
            }
            if !owner.deleting_dependents() {
                solid = true;
            }
        }
        if !any_ref {
            continue;
        }
        let present = solid || !foreground.is_empty();
        if !present {
            if !dep.deleting {
                actions.push(Action::DeleteOrphaned {
                    kind: dep.kind,
                    namespace: dep.namespace.clone(),
                    name: dep.name.clone(),
                    uid: dep.uid.clone(),
                    owners: dep.owners.clone(),
                });
            }
            continue;
        }
        let mut release: BTreeSet<&str> = orphaning;
        if !solid {
            if !dep.deleting {
                actions.push(Action::DeleteDependent {
                    kind: dep.kind,
                    namespace: dep.namespace.clone(),
                    name: dep.name.clone(),
                    uid: dep.uid.clone(),
                });
            }
        } else if !dep.deleting {
            // Kept by another owner: the foreground owners must not wait.
            release.extend(foreground);
        }
        for owner_uid in release {
            actions.push(Action::RemoveOwnerRef {
                kind: dep.kind,
                namespace: dep.namespace.clone(),
                name: dep.name.clone(),
                uid: dep.uid.clone(),
                owner_uid: owner_uid.to_string(),
            });
        }
    }

    // Owners whose deletion waits on a finalizer this collector handles.
    let mut finalizing = Vec::new();
    for owner in &nodes {
        if !owner.deleting || referenced.contains(&(owner.uid.as_str(), owner.namespace.as_str())) {
            continue;
        }
        for f in [ORPHAN_FINALIZER, FOREGROUND_FINALIZER] {
            if owner.has_finalizer(f) {
                finalizing.push(Action::RemoveFinalizer {
                    kind: owner.kind,
                    namespace: owner.namespace.clone(),
                    name: owner.name.clone(),
                    uid: owner.uid.clone(),
                    finalizer: f.to_string(),
                });
            }
        }
    }
    actions.extend(finalizing);
    actions
}

/// Which object a node is.
fn identity(n: &Node) -> (Kind, &str, &str, &str) {
    (n.kind, &n.namespace, &n.name, &n.uid)
}

/// A total order on nodes, so that which of two copies of one object wins
/// does not depend on the input order.
type OrderKey<'a> = (
    (Kind, &'a str, &'a str, &'a str),
    bool,
    &'a [String],
    Vec<(&'a str, &'a str, &'a str)>,
);

fn order_key(n: &Node) -> OrderKey<'_> {
    (
        identity(n),
        n.deleting,
        &n.finalizers,
        n.owners
            .iter()
            .map(|r| (r.uid.as_str(), r.kind.as_str(), r.name.as_str()))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(kind: Kind, ns: &str, name: &str) -> Node {
        Node {
            kind,
            namespace: ns.into(),
            name: name.into(),
            uid: format!("uid-{name}"),
            owners: vec![],
            finalizers: vec![],
            deleting: false,
        }
    }
    fn rs(name: &str) -> Node {
        obj(Kind::ReplicaSet, "default", name)
    }
    fn pod(name: &str) -> Node {
        obj(Kind::Pod, "default", name)
    }
    fn owner_ref(name: &str) -> v1::OwnerReference {
        v1::OwnerReference {
            api_version: "apps/v1".into(),
            kind: "ReplicaSet".into(),
            name: name.into(),
            uid: format!("uid-{name}"),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }
    }
    /// `n` with ownerReferences to the objects named `owners`.
    fn owned_by(mut n: Node, owners: &[&str]) -> Node {
        n.owners = owners.iter().map(|o| owner_ref(o)).collect();
        n
    }
    fn in_ns(mut n: Node, ns: &str) -> Node {
        n.namespace = ns.into();
        n
    }
    /// `n` being deleted, with these finalizers.
    fn deleting(mut n: Node, finalizers: &[&str]) -> Node {
        n.deleting = true;
        n.finalizers = finalizers.iter().map(|f| f.to_string()).collect();
        n
    }
    fn foreground(n: Node) -> Node {
        deleting(n, &[FOREGROUND_FINALIZER])
    }
    fn orphaning(n: Node) -> Node {
        deleting(n, &[ORPHAN_FINALIZER])
    }

    /// Actions as short strings, so cases read as tables.
    fn summarize(actions: &[Action]) -> Vec<String> {
        actions
            .iter()
            .map(|a| match a {
                Action::DeleteOrphaned {
                    kind,
                    namespace,
                    name,
                    owners,
                    ..
                } => {
                    let o: Vec<&str> = owners.iter().map(|r| r.name.as_str()).collect();
                    format!(
                        "delete-orphaned {kind} {namespace}/{name} [{}]",
                        o.join(",")
                    )
                }
                Action::DeleteDependent {
                    kind,
                    namespace,
                    name,
                    ..
                } => format!("delete-dependent {kind} {namespace}/{name}"),
                Action::RemoveOwnerRef {
                    kind,
                    namespace,
                    name,
                    owner_uid,
                    ..
                } => format!("remove-ref {kind} {namespace}/{name} {owner_uid}"),
                Action::RemoveFinalizer {
                    kind,
                    namespace,
                    name,
                    finalizer,
                    ..
                } => format!("remove-finalizer {kind} {namespace}/{name} {finalizer}"),
            })
            .collect()
    }

    fn strs(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn reconcile_table() {
        let cases: Vec<(&str, Vec<Node>, Vec<String>)> = vec![
            ("nothing", vec![], vec![]),
            (
                "objects without owners are never touched",
                vec![rs("a"), pod("p"), deleting(pod("q"), &["custom"])],
                vec![],
            ),
            (
                "owner present: kept",
                vec![rs("a"), owned_by(pod("p"), &["a"])],
                vec![],
            ),
            (
                "owner gone: deleted",
                vec![owned_by(pod("p"), &["a"])],
                strs(&["delete-orphaned Pod default/p [a]"]),
            ),
            (
                "one of two owners gone: kept",
                vec![rs("b"), owned_by(pod("p"), &["a", "b"])],
                vec![],
            ),
            (
                "both owners gone: deleted, listing both",
                vec![owned_by(pod("p"), &["a", "b"])],
                strs(&["delete-orphaned Pod default/p [a,b]"]),
            ),
            (
                "an object already being deleted is never deleted again",
                vec![deleting(owned_by(pod("p"), &["a"]), &[])],
                vec![],
            ),
            (
                "owner with the uid in another namespace does not count",
                vec![in_ns(rs("a"), "other"), owned_by(pod("p"), &["a"])],
                strs(&["delete-orphaned Pod default/p [a]"]),
            ),
            (
                "cluster-scoped owner of a namespaced dependent counts",
                vec![obj(Kind::Node, "", "a"), owned_by(pod("p"), &["a"])],
                vec![],
            ),
            (
                "namespaced owner of a cluster-scoped dependent does not count",
                vec![rs("a"), owned_by(obj(Kind::Namespace, "", "ns1"), &["a"])],
                strs(&["delete-orphaned Namespace /ns1 [a]"]),
            ),
            (
                "a reference to itself keeps the object",
                vec![owned_by(rs("a"), &["a", "gone"])],
                vec![],
            ),
            (
                "a reference to itself does not hold up its own deletion",
                vec![foreground(owned_by(rs("a"), &["a"]))],
                strs(&["remove-finalizer ReplicaSet default/a foregroundDeletion"]),
            ),
            (
                "owner being deleted in the background still keeps its dependents",
                vec![deleting(rs("a"), &["custom"]), owned_by(pod("p"), &["a"])],
                vec![],
            ),
            (
                "foreground: dependents deleted, finalizer kept",
                vec![
                    foreground(rs("a")),
                    owned_by(pod("p"), &["a"]),
                    owned_by(pod("q"), &["a"]),
                ],
                strs(&[
                    "delete-dependent Pod default/p",
                    "delete-dependent Pod default/q",
                ]),
            ),
            (
                "foreground: a dependent being deleted still counts (its own finalizer goes)",
                vec![foreground(rs("a")), foreground(owned_by(pod("p"), &["a"]))],
                strs(&["remove-finalizer Pod default/p foregroundDeletion"]),
            ),
            (
                "foreground: no dependent left, finalizer removed",
                vec![foreground(rs("a")), pod("unrelated")],
                strs(&["remove-finalizer ReplicaSet default/a foregroundDeletion"]),
            ),
            (
                "foreground recursion: middle deleted first, its own dependents next round",
                vec![
                    foreground(obj(Kind::Deployment, "default", "d")),
                    owned_by(rs("r"), &["d"]),
                    owned_by(pod("p"), &["r"]),
                ],
                strs(&["delete-dependent ReplicaSet default/r"]),
            ),
            (
                "foreground recursion, next round",
                vec![
                    foreground(obj(Kind::Deployment, "default", "d")),
                    foreground(owned_by(rs("r"), &["d"])),
                    owned_by(pod("p"), &["r"]),
                ],
                strs(&["delete-dependent Pod default/p"]),
            ),
            (
                "foreground recursion, the leaf gone: the middle's finalizer goes",
                vec![
                    foreground(obj(Kind::Deployment, "default", "d")),
                    foreground(owned_by(rs("r"), &["d"])),
                ],
                strs(&["remove-finalizer ReplicaSet default/r foregroundDeletion"]),
            ),
            (
                "foreground with another owner keeping the dependent: reference removed",
                vec![
                    foreground(rs("a")),
                    rs("b"),
                    owned_by(pod("p"), &["a", "b"]),
                ],
                strs(&["remove-ref Pod default/p uid-a"]),
            ),
            (
                "foreground and a gone owner: the dependent is deleted",
                vec![foreground(rs("a")), owned_by(pod("p"), &["a", "gone"])],
                strs(&["delete-dependent Pod default/p"]),
            ),
            (
                "foreground owner in another namespace: not the owner",
                vec![
                    in_ns(foreground(rs("a")), "other"),
                    owned_by(pod("p"), &["a"]),
                ],
                strs(&[
                    "delete-orphaned Pod default/p [a]",
                    "remove-finalizer ReplicaSet other/a foregroundDeletion",
                ]),
            ),
            (
                "orphan: references removed, finalizer kept",
                vec![
                    orphaning(rs("a")),
                    owned_by(pod("p"), &["a"]),
                    deleting(owned_by(pod("q"), &["a"]), &[]),
                ],
                strs(&[
                    "remove-ref Pod default/p uid-a",
                    "remove-ref Pod default/q uid-a",
                ]),
            ),
            (
                "orphan: only the orphaning owner's reference is removed",
                vec![orphaning(rs("a")), rs("b"), owned_by(pod("p"), &["b", "a"])],
                strs(&["remove-ref Pod default/p uid-a"]),
            ),
            (
                "orphan: no dependent references it, finalizer removed",
                vec![orphaning(rs("a")), pod("p")],
                strs(&["remove-finalizer ReplicaSet default/a orphan"]),
            ),
            (
                "orphan wins over foreground on one owner",
                vec![
                    deleting(rs("a"), &[ORPHAN_FINALIZER, FOREGROUND_FINALIZER]),
                    owned_by(pod("p"), &["a"]),
                ],
                strs(&["remove-ref Pod default/p uid-a"]),
            ),
            (
                "orphan and foreground finalizers both go when nothing references it",
                vec![deleting(
                    rs("a"),
                    &[FOREGROUND_FINALIZER, "custom", ORPHAN_FINALIZER],
                )],
                strs(&[
                    "remove-finalizer ReplicaSet default/a orphan",
                    "remove-finalizer ReplicaSet default/a foregroundDeletion",
                ]),
            ),
            (
                "finalizers of objects not being deleted are left alone",
                vec![deleting(rs("x"), &[]), {
                    let mut n = rs("a");
                    n.finalizers = strs(&[ORPHAN_FINALIZER, FOREGROUND_FINALIZER]);
                    n
                }],
                vec![],
            ),
            (
                "objects without a uid, and references without one, are ignored",
                vec![
                    {
                        let mut n = owned_by(pod("nouid"), &["gone"]);
                        n.uid.clear();
                        n
                    },
                    {
                        let mut n = pod("emptyref");
                        n.owners = vec![v1::OwnerReference::default()];
                        n
                    },
                ],
                vec![],
            ),
            (
                "an object listed twice is handled once",
                vec![owned_by(pod("p"), &["a"]), owned_by(pod("p"), &["a"])],
                strs(&["delete-orphaned Pod default/p [a]"]),
            ),
        ];
        for (name, objects, want) in cases {
            let got = summarize(&reconcile(&objects));
            assert_eq!(got, want, "case: {name}");
            let reversed: Vec<Node> = objects.iter().rev().cloned().collect();
            assert_eq!(
                reconcile(&reversed),
                reconcile(&objects),
                "case (reversed): {name}"
            );
        }
    }

    #[test]
    fn delete_orphaned_carries_the_full_owner_references() {
        let p = owned_by(pod("p"), &["a"]);
        let actions = reconcile(std::slice::from_ref(&p));
        assert_eq!(
            actions,
            vec![Action::DeleteOrphaned {
                kind: Kind::Pod,
                namespace: "default".into(),
                name: "p".into(),
                uid: "uid-p".into(),
                owners: vec![owner_ref("a")],
            }]
        );
    }

    #[test]
    fn actions_are_ordered_by_kind_namespace_name() {
        let objects = vec![
            owned_by(in_ns(pod("z"), "a-ns"), &["gone"]),
            owned_by(rs("b"), &["gone"]),
            owned_by(pod("b"), &["gone"]),
            owned_by(pod("a"), &["gone"]),
            foreground(rs("owner")),
        ];
        assert_eq!(
            summarize(&reconcile(&objects)),
            strs(&[
                "delete-orphaned Pod a-ns/z [gone]",
                "delete-orphaned Pod default/a [gone]",
                "delete-orphaned Pod default/b [gone]",
                "delete-orphaned ReplicaSet default/b [gone]",
                "remove-finalizer ReplicaSet default/owner foregroundDeletion",
            ])
        );
    }
}
