//! The resource kinds: names, API groups, where each lives in the store, the
//! [`Resource`] trait that lets code work on any kind generically, and what
//! every object's metadata says about its owner ([`controller_of`]).

use keelson_proto::api::{object, Object};
use keelson_proto::v1;

/// Every kind the API serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Namespace,
    Node,
    Pod,
    ReplicaSet,
    Deployment,
    Service,
    Endpoints,
    Event,
    Lease,
    ConfigMap,
    Secret,
    Job,
    CronJob,
    DaemonSet,
    StatefulSet,
    ControllerRevision,
    ServiceAccount,
    Role,
    RoleBinding,
    ClusterRole,
    ClusterRoleBinding,
}

impl Kind {
    pub const ALL: [Kind; 21] = [
        Kind::Namespace,
        Kind::Node,
        Kind::Pod,
        Kind::ReplicaSet,
        Kind::Deployment,
        Kind::Service,
        Kind::Endpoints,
        Kind::Event,
        Kind::Lease,
        Kind::ConfigMap,
        Kind::Secret,
        Kind::Job,
        Kind::CronJob,
        Kind::DaemonSet,
        Kind::StatefulSet,
        Kind::ControllerRevision,
        Kind::ServiceAccount,
        Kind::Role,
        Kind::RoleBinding,
        Kind::ClusterRole,
        Kind::ClusterRoleBinding,
    ];

    /// The kind as written in manifests (`kind: Deployment`).
    pub fn name(self) -> &'static str {
        match self {
            Kind::Namespace => "Namespace",
            Kind::Node => "Node",
            Kind::Pod => "Pod",
            Kind::ReplicaSet => "ReplicaSet",
            Kind::Deployment => "Deployment",
            Kind::Service => "Service",
            Kind::Endpoints => "Endpoints",
            Kind::Event => "Event",
            Kind::Lease => "Lease",
            Kind::ConfigMap => "ConfigMap",
            Kind::Secret => "Secret",
            Kind::Job => "Job",
            Kind::CronJob => "CronJob",
            Kind::DaemonSet => "DaemonSet",
            Kind::StatefulSet => "StatefulSet",
            Kind::ControllerRevision => "ControllerRevision",
            Kind::ServiceAccount => "ServiceAccount",
            Kind::Role => "Role",
            Kind::RoleBinding => "RoleBinding",
            Kind::ClusterRole => "ClusterRole",
            Kind::ClusterRoleBinding => "ClusterRoleBinding",
        }
    }

    /// The plural resource name used in requests and store keys.
    pub fn plural(self) -> &'static str {
        match self {
            Kind::Namespace => "namespaces",
            Kind::Node => "nodes",
            Kind::Pod => "pods",
            Kind::ReplicaSet => "replicasets",
            Kind::Deployment => "deployments",
            Kind::Service => "services",
            Kind::Endpoints => "endpoints",
            Kind::Event => "events",
            Kind::Lease => "leases",
            Kind::ConfigMap => "configmaps",
            Kind::Secret => "secrets",
            Kind::Job => "jobs",
            Kind::CronJob => "cronjobs",
            Kind::DaemonSet => "daemonsets",
            Kind::StatefulSet => "statefulsets",
            Kind::ControllerRevision => "controllerrevisions",
            Kind::ServiceAccount => "serviceaccounts",
            Kind::Role => "roles",
            Kind::RoleBinding => "rolebindings",
            Kind::ClusterRole => "clusterroles",
            Kind::ClusterRoleBinding => "clusterrolebindings",
        }
    }

    /// `apiVersion` as Kubernetes spells it for this kind.
    pub fn api_version(self) -> &'static str {
        match self {
            Kind::ReplicaSet
            | Kind::Deployment
            | Kind::DaemonSet
            | Kind::StatefulSet
            | Kind::ControllerRevision => "apps/v1",
            Kind::Lease => "coordination.k8s.io/v1",
            Kind::Job | Kind::CronJob => "batch/v1",
            Kind::Role | Kind::RoleBinding | Kind::ClusterRole | Kind::ClusterRoleBinding => {
                "rbac.authorization.k8s.io/v1"
            }
            _ => "v1",
        }
    }

    /// Whether objects of this kind live in a namespace.
    pub fn namespaced(self) -> bool {
        !matches!(
            self,
            Kind::Namespace | Kind::Node | Kind::ClusterRole | Kind::ClusterRoleBinding
        )
    }

    /// Whether objects of this kind have a status the status verb updates
    /// (for the others, update writes the whole object).
    pub fn has_status(self) -> bool {
        !matches!(
            self,
            Kind::Endpoints
                | Kind::Event
                | Kind::Lease
                | Kind::ConfigMap
                | Kind::Secret
                | Kind::ControllerRevision
                | Kind::ServiceAccount
                | Kind::Role
                | Kind::RoleBinding
                | Kind::ClusterRole
                | Kind::ClusterRoleBinding
        )
    }

    /// Whether objects of this kind have the `scale` subresource (an
    /// `autoscaling/v1 Scale` view of `spec.replicas`).
    pub fn has_scale(self) -> bool {
        matches!(
            self,
            Kind::Deployment | Kind::ReplicaSet | Kind::StatefulSet
        )
    }

    /// kubectl's short names of the kind (`po`, `deploy`, `svc`...), as
    /// Kubernetes' discovery documents list them.
    pub fn short_names(self) -> &'static [&'static str] {
        match self {
            Kind::Namespace => &["ns"],
            Kind::Node => &["no"],
            Kind::Pod => &["po"],
            Kind::ReplicaSet => &["rs"],
            Kind::Deployment => &["deploy"],
            Kind::Service => &["svc"],
            Kind::Endpoints => &["ep"],
            Kind::Event => &["ev"],
            Kind::Lease => &[],
            Kind::ConfigMap => &["cm"],
            Kind::Secret => &[],
            Kind::Job => &[],
            Kind::CronJob => &["cj"],
            Kind::DaemonSet => &["ds"],
            Kind::StatefulSet => &["sts"],
            Kind::ControllerRevision => &[],
            Kind::ServiceAccount => &["sa"],
            Kind::Role => &[],
            Kind::RoleBinding => &[],
            Kind::ClusterRole => &[],
            Kind::ClusterRoleBinding => &[],
        }
    }

    /// The singular resource name (`pod`, `endpoints`).
    pub fn singular(self) -> String {
        match self {
            Kind::Endpoints => "endpoints".into(),
            k => k.name().to_ascii_lowercase(),
        }
    }

    /// Names a user may type: plural, singular, kind, and kubectl's short
    /// names (`po`, `deploy`, `svc`, `ns`...), case-insensitive.
    pub fn parse(s: &str) -> Option<Kind> {
        let s = s.to_ascii_lowercase();
        Kind::ALL
            .into_iter()
            .find(|k| s == k.plural() || s == k.singular() || k.short_names().contains(&s.as_str()))
    }

    /// The store key prefix of this kind in `namespace` (all namespaces when
    /// empty): `/registry/pods/default/`.
    pub fn prefix(self, namespace: &str) -> String {
        if self.namespaced() && !namespace.is_empty() {
            format!("/registry/{}/{}/", self.plural(), namespace)
        } else {
            format!("/registry/{}/", self.plural())
        }
    }

    /// The store key of one object.
    pub fn key(self, namespace: &str, name: &str) -> String {
        if self.namespaced() {
            format!("/registry/{}/{}/{}", self.plural(), namespace, name)
        } else {
            format!("/registry/{}/{}", self.plural(), name)
        }
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A typed resource: what `Api<K>` and the reflector need to know about K.
pub trait Resource: Clone + Default + Send + Sync + 'static + prost::Message {
    const KIND: Kind;
    fn meta(&self) -> &v1::ObjectMeta;
    fn meta_mut(&mut self) -> &mut v1::ObjectMeta;
    fn into_object(self) -> Object;
    /// The object if it is of this kind.
    fn from_object(o: Object) -> Option<Self>;
}

macro_rules! resource {
    ($t:ident, $variant:ident) => {
        impl Resource for v1::$t {
            const KIND: Kind = Kind::$t;
            fn meta(&self) -> &v1::ObjectMeta {
                static EMPTY: std::sync::OnceLock<v1::ObjectMeta> = std::sync::OnceLock::new();
                self.metadata
                    .as_ref()
                    .unwrap_or_else(|| EMPTY.get_or_init(Default::default))
            }
            fn meta_mut(&mut self) -> &mut v1::ObjectMeta {
                self.metadata.get_or_insert_with(Default::default)
            }
            fn into_object(self) -> Object {
                Object {
                    kind: Some(object::Kind::$variant(self)),
                }
            }
            fn from_object(o: Object) -> Option<Self> {
                match o.kind {
                    Some(object::Kind::$variant(x)) => Some(x),
                    _ => None,
                }
            }
        }
    };
}

resource!(Namespace, Namespace);
resource!(Node, Node);
resource!(Pod, Pod);
resource!(ReplicaSet, ReplicaSet);
resource!(Deployment, Deployment);
resource!(Service, Service);
resource!(Endpoints, Endpoints);
resource!(Event, Event);
resource!(Lease, Lease);
resource!(ConfigMap, ConfigMap);
resource!(Secret, Secret);
resource!(Job, Job);
resource!(CronJob, CronJob);
resource!(DaemonSet, DaemonSet);
resource!(StatefulSet, StatefulSet);
resource!(ControllerRevision, ControllerRevision);
resource!(ServiceAccount, ServiceAccount);
resource!(Role, Role);
resource!(RoleBinding, RoleBinding);
resource!(ClusterRole, ClusterRole);
resource!(ClusterRoleBinding, ClusterRoleBinding);

/// Calls `$f` with the typed object inside an [`Object`], whatever its kind.
#[macro_export]
macro_rules! with_object {
    ($obj:expr, $x:ident => $body:expr) => {
        match $obj {
            ::keelson_proto::api::object::Kind::Namespace($x) => $body,
            ::keelson_proto::api::object::Kind::Node($x) => $body,
            ::keelson_proto::api::object::Kind::Pod($x) => $body,
            ::keelson_proto::api::object::Kind::ReplicaSet($x) => $body,
            ::keelson_proto::api::object::Kind::Deployment($x) => $body,
            ::keelson_proto::api::object::Kind::Service($x) => $body,
            ::keelson_proto::api::object::Kind::Endpoints($x) => $body,
            ::keelson_proto::api::object::Kind::Event($x) => $body,
            ::keelson_proto::api::object::Kind::Lease($x) => $body,
            ::keelson_proto::api::object::Kind::ConfigMap($x) => $body,
            ::keelson_proto::api::object::Kind::Secret($x) => $body,
            ::keelson_proto::api::object::Kind::Job($x) => $body,
            ::keelson_proto::api::object::Kind::CronJob($x) => $body,
            ::keelson_proto::api::object::Kind::DaemonSet($x) => $body,
            ::keelson_proto::api::object::Kind::StatefulSet($x) => $body,
            ::keelson_proto::api::object::Kind::ControllerRevision($x) => $body,
            ::keelson_proto::api::object::Kind::ServiceAccount($x) => $body,
            ::keelson_proto::api::object::Kind::Role($x) => $body,
            ::keelson_proto::api::object::Kind::RoleBinding($x) => $body,
            ::keelson_proto::api::object::Kind::ClusterRole($x) => $body,
            ::keelson_proto::api::object::Kind::ClusterRoleBinding($x) => $body,
        }
    };
}

/// Evaluates `$body` with `$t` naming the Rust type of `$kind`, whatever
/// the kind: `for_kind!(kind, T => api::<T>().get(name))`.
#[macro_export]
macro_rules! for_kind {
    ($kind:expr, $t:ident => $body:expr) => {
        match $kind {
            $crate::Kind::Namespace => {
                type $t = ::keelson_proto::v1::Namespace;
                $body
            }
            $crate::Kind::Node => {
                type $t = ::keelson_proto::v1::Node;
                $body
            }
            $crate::Kind::Pod => {
                type $t = ::keelson_proto::v1::Pod;
                $body
            }
            $crate::Kind::ReplicaSet => {
                type $t = ::keelson_proto::v1::ReplicaSet;
                $body
            }
            $crate::Kind::Deployment => {
                type $t = ::keelson_proto::v1::Deployment;
                $body
            }
            $crate::Kind::Service => {
                type $t = ::keelson_proto::v1::Service;
                $body
            }
            $crate::Kind::Endpoints => {
                type $t = ::keelson_proto::v1::Endpoints;
                $body
            }
            $crate::Kind::Event => {
                type $t = ::keelson_proto::v1::Event;
                $body
            }
            $crate::Kind::Lease => {
                type $t = ::keelson_proto::v1::Lease;
                $body
            }
            $crate::Kind::ConfigMap => {
                type $t = ::keelson_proto::v1::ConfigMap;
                $body
            }
            $crate::Kind::Secret => {
                type $t = ::keelson_proto::v1::Secret;
                $body
            }
            $crate::Kind::Job => {
                type $t = ::keelson_proto::v1::Job;
                $body
            }
            $crate::Kind::CronJob => {
                type $t = ::keelson_proto::v1::CronJob;
                $body
            }
            $crate::Kind::DaemonSet => {
                type $t = ::keelson_proto::v1::DaemonSet;
                $body
            }
            $crate::Kind::StatefulSet => {
                type $t = ::keelson_proto::v1::StatefulSet;
                $body
            }
            $crate::Kind::ControllerRevision => {
                type $t = ::keelson_proto::v1::ControllerRevision;
                $body
            }
            $crate::Kind::ServiceAccount => {
                type $t = ::keelson_proto::v1::ServiceAccount;
                $body
            }
            $crate::Kind::Role => {
                type $t = ::keelson_proto::v1::Role;
                $body
            }
            $crate::Kind::RoleBinding => {
                type $t = ::keelson_proto::v1::RoleBinding;
                $body
            }
            $crate::Kind::ClusterRole => {
                type $t = ::keelson_proto::v1::ClusterRole;
                $body
            }
            $crate::Kind::ClusterRoleBinding => {
                type $t = ::keelson_proto::v1::ClusterRoleBinding;
                $body
            }
        }
    };
}

/// The ownerReference a controller puts on what it makes: `owner` as
/// the controller, blocking the owner's foreground deletion.
pub fn controller_reference<K: Resource>(owner: &K) -> v1::OwnerReference {
    let m = owner.meta();
    v1::OwnerReference {
        api_version: K::KIND.api_version().to_string(),
        kind: K::KIND.name().to_string(),
        name: m.name.clone(),
        uid: m.uid.clone(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// The kind of an object (None for an empty `Object`).
pub fn kind_of(o: &Object) -> Option<Kind> {
    Some(match o.kind.as_ref()? {
        object::Kind::Namespace(_) => Kind::Namespace,
        object::Kind::Node(_) => Kind::Node,
        object::Kind::Pod(_) => Kind::Pod,
        object::Kind::ReplicaSet(_) => Kind::ReplicaSet,
        object::Kind::Deployment(_) => Kind::Deployment,
        object::Kind::Service(_) => Kind::Service,
        object::Kind::Endpoints(_) => Kind::Endpoints,
        object::Kind::Event(_) => Kind::Event,
        object::Kind::Lease(_) => Kind::Lease,
        object::Kind::ConfigMap(_) => Kind::ConfigMap,
        object::Kind::Secret(_) => Kind::Secret,
        object::Kind::Job(_) => Kind::Job,
        object::Kind::CronJob(_) => Kind::CronJob,
        object::Kind::DaemonSet(_) => Kind::DaemonSet,
        object::Kind::StatefulSet(_) => Kind::StatefulSet,
        object::Kind::ControllerRevision(_) => Kind::ControllerRevision,
        object::Kind::ServiceAccount(_) => Kind::ServiceAccount,
        object::Kind::Role(_) => Kind::Role,
        object::Kind::RoleBinding(_) => Kind::RoleBinding,
        object::Kind::ClusterRole(_) => Kind::ClusterRole,
        object::Kind::ClusterRoleBinding(_) => Kind::ClusterRoleBinding,
    })
}

/// An object's metadata (None for an empty `Object` or one without it).
pub fn meta_of(o: &Object) -> Option<&v1::ObjectMeta> {
    with_object!(o.kind.as_ref()?, x => x.metadata.as_ref())
}

/// An object's metadata, created if missing.
pub fn meta_of_mut(o: &mut Object) -> Option<&mut v1::ObjectMeta> {
    Some(with_object!(o.kind.as_mut()?, x => x.metadata.get_or_insert_with(Default::default)))
}

/// The controller ownerReference of an object (the one with
/// `controller: true`), if any.
pub fn controller_of(meta: &v1::ObjectMeta) -> Option<&v1::OwnerReference> {
    meta.owner_references
        .iter()
        .find(|r| r.controller == Some(true))
}

/// Decode a stored object of `kind` (protobuf).
pub fn decode(kind: Kind, bytes: &[u8]) -> Result<Object, prost::DecodeError> {
    use prost::Message;
    Ok(crate::for_kind!(kind, T => T::decode(bytes)?.into_object()))
}

/// Encode an object for the store (the typed message, protobuf).
pub fn encode(o: &Object) -> Vec<u8> {
    use prost::Message;
    match o.kind.as_ref() {
        Some(k) => with_object!(k, x => x.encode_to_vec()),
        None => Vec::new(),
    }
}

/// The `Object` oneof field number of each kind (api.proto).
fn object_field(kind: Kind) -> u32 {
    match kind {
        Kind::Namespace => 1,
        Kind::Node => 2,
        Kind::Pod => 3,
        Kind::ReplicaSet => 4,
        Kind::Deployment => 5,
        Kind::Service => 6,
        Kind::Endpoints => 7,
        Kind::Event => 8,
        Kind::Lease => 9,
        Kind::ConfigMap => 10,
        Kind::Secret => 11,
        Kind::Job => 12,
        Kind::CronJob => 13,
        Kind::DaemonSet => 14,
        Kind::StatefulSet => 15,
        Kind::ControllerRevision => 16,
        Kind::ServiceAccount => 17,
        Kind::Role => 18,
        Kind::RoleBinding => 19,
        Kind::ClusterRole => 20,
        Kind::ClusterRoleBinding => 21,
    }
}

/// The metadata field number, the same in every kind's message.
const METADATA_FIELD: u32 = 3;
/// `ObjectMeta.resource_version`.
const RESOURCE_VERSION_FIELD: u32 = 5;

/// An encoded `Object` holding a stored object of `kind` (its protobuf
/// encoding, as [`encode`] makes it) with `resource_version` set, built
/// without decoding it: protobuf merges a repeated occurrence of a message
/// field into the first, so appending `metadata { resource_version }` sets
/// that one field. Decodes to the same `Object` as decoding the stored
/// bytes and setting the field would.
pub fn encode_stored_as_object(kind: Kind, stored: &[u8], resource_version: &str) -> Vec<u8> {
    use prost::encoding::{encode_key, encode_varint, WireType};
    let mut meta = Vec::with_capacity(resource_version.len() + 2);
    encode_key(RESOURCE_VERSION_FIELD, WireType::LengthDelimited, &mut meta);
    encode_varint(resource_version.len() as u64, &mut meta);
    meta.extend_from_slice(resource_version.as_bytes());
    let inner_len =
        stored.len() + 1 + prost::encoding::encoded_len_varint(meta.len() as u64) + meta.len();
    let mut out = Vec::with_capacity(inner_len + 6);
    encode_key(object_field(kind), WireType::LengthDelimited, &mut out);
    encode_varint(inner_len as u64, &mut out);
    out.extend_from_slice(stored);
    encode_key(METADATA_FIELD, WireType::LengthDelimited, &mut out);
    encode_varint(meta.len() as u64, &mut out);
    out.extend_from_slice(&meta);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn the_controller_is_the_owner_marked_controller() {
        let owner = |name: &str, controller: Option<bool>| v1::OwnerReference {
            name: name.into(),
            controller,
            ..Default::default()
        };
        let mut m = v1::ObjectMeta::default();
        assert!(controller_of(&m).is_none());
        m.owner_references = vec![owner("a", None), owner("b", Some(false))];
        assert!(controller_of(&m).is_none());
        m.owner_references.push(owner("c", Some(true)));
        assert_eq!(controller_of(&m).map(|r| r.name.as_str()), Some("c"));
    }

    #[test]
    fn stored_bytes_become_an_object_with_its_resource_version() {
        let pod = v1::Pod {
            metadata: Some(v1::ObjectMeta {
                name: "web-1".into(),
                namespace: "default".into(),
                labels: [("app".to_string(), "web".to_string())].into(),
                ..Default::default()
            }),
            spec: Some(v1::PodSpec {
                node_name: "n1".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut want = pod.clone();
        want.meta_mut().resource_version = "12345".into();
        let raw = encode_stored_as_object(Kind::Pod, &pod.encode_to_vec(), "12345");
        let got = Object::decode(raw.as_slice()).expect("decodes");
        assert_eq!(got, want.into_object());
        // Every kind, even one stored without metadata.
        for kind in Kind::ALL {
            let raw = encode_stored_as_object(kind, &[], "7");
            let o = Object::decode(raw.as_slice()).expect("decodes");
            assert_eq!(kind_of(&o), Some(kind));
            assert_eq!(meta_of(&o).map(|m| m.resource_version.as_str()), Some("7"));
        }
    }
}
