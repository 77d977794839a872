//! Resource paths, as Kubernetes lays them out under a group version
//! (`/api/v1`, `/apis/apps/v1`):
//!
//! ```text
//! <resource>                                   list (every namespace)
//! <resource>/<name>[/<subresource>]            a cluster-scoped object
//! namespaces/<ns>/<resource>                   list in a namespace
//! namespaces/<ns>/<resource>/<name>[/<sub>]    a namespaced object
//! ```
//!
//! `namespaces/<name>/status` is the Namespace's own status subresource.
//! Pure: a path in, a [`Target`] or the failure to answer out.

use keelson_model::Kind;

use super::discovery::kinds_at;
use super::status::Failure;

/// What a resource path names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub kind: Kind,
    /// "" for cluster-scoped kinds, and for a list across namespaces.
    pub namespace: String,
    /// None: the collection.
    pub name: Option<String>,
    pub subresource: Option<String>,
}

/// The kind `resource` names at a group version.
fn kind_at(group: &str, version: &str, resource: &str) -> Option<Kind> {
    kinds_at(group, version)
        .into_iter()
        .find(|k| k.plural() == resource)
}

/// Parse `rest`, the path after `/api/v1/` or `/apis/<group>/<version>/`.
pub fn parse(group: &str, version: &str, rest: &str) -> Result<Target, Failure> {
    let segments: Vec<&str> = rest.trim_end_matches('/').split('/').collect();
    if segments.iter().any(|s| s.is_empty()) {
        return Err(Failure::no_such_path());
    }
    let kind = |resource: &str| kind_at(group, version, resource).ok_or_else(Failure::no_such_path);
    let target = |kind: Kind, namespace: &str, name: Option<&str>, sub: Option<&str>| Target {
        kind,
        namespace: namespace.to_string(),
        name: name.map(str::to_string),
        subresource: sub.map(str::to_string),
    };
    match segments.as_slice() {
        ["namespaces", ns, resource, rest @ ..] if !(group.is_empty() && is_ns_sub(resource)) => {
            let k = kind(resource)?;
            if !k.namespaced() {
                return Err(Failure::no_such_path());
            }
            match rest {
                [] => Ok(target(k, ns, None, None)),
                [name] => Ok(target(k, ns, Some(name), None)),
                [name, sub] => Ok(target(k, ns, Some(name), Some(sub))),
                _ => Err(Failure::no_such_path()),
            }
        }
        [resource, rest @ ..] => {
            let k = kind(resource)?;
            match rest {
                [] => Ok(target(k, "", None, None)),
                // A namespaced object needs its namespace in the path.
                _ if k.namespaced() => Err(Failure::no_such_path()),
                [name] => Ok(target(k, "", Some(name), None)),
                [name, sub] => Ok(target(k, "", Some(name), Some(sub))),
                _ => Err(Failure::no_such_path()),
            }
        }
        [] => Err(Failure::no_such_path()),
    }
}

/// Subresources of a Namespace (`namespaces/<name>/status`), which share
/// the shape of `namespaces/<ns>/<resource>`.
fn is_ns_sub(segment: &str) -> bool {
    matches!(segment, "status" | "finalize")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(kind: Kind, ns: &str, name: Option<&str>, sub: Option<&str>) -> Target {
        Target {
            kind,
            namespace: ns.into(),
            name: name.map(Into::into),
            subresource: sub.map(Into::into),
        }
    }

    #[test]
    fn paths_name_their_targets() {
        let cases: Vec<(&str, &str, &str, Option<Target>)> = vec![
            ("", "v1", "pods", Some(t(Kind::Pod, "", None, None))),
            (
                "",
                "v1",
                "namespaces/default/pods",
                Some(t(Kind::Pod, "default", None, None)),
            ),
            (
                "",
                "v1",
                "namespaces/default/pods/web",
                Some(t(Kind::Pod, "default", Some("web"), None)),
            ),
            (
                "",
                "v1",
                "namespaces/default/pods/web/log",
                Some(t(Kind::Pod, "default", Some("web"), Some("log"))),
            ),
            ("", "v1", "nodes", Some(t(Kind::Node, "", None, None))),
            (
                "",
                "v1",
                "nodes/n1",
                Some(t(Kind::Node, "", Some("n1"), None)),
            ),
            (
                "",
                "v1",
                "nodes/n1/status",
                Some(t(Kind::Node, "", Some("n1"), Some("status"))),
            ),
            (
                "",
                "v1",
                "namespaces",
                Some(t(Kind::Namespace, "", None, None)),
            ),
            (
                "",
                "v1",
                "namespaces/prod",
                Some(t(Kind::Namespace, "", Some("prod"), None)),
            ),
            (
                "",
                "v1",
                "namespaces/prod/status",
                Some(t(Kind::Namespace, "", Some("prod"), Some("status"))),
            ),
            (
                "apps",
                "v1",
                "namespaces/a/deployments/web/scale",
                Some(t(Kind::Deployment, "a", Some("web"), Some("scale"))),
            ),
            (
                "apps",
                "v1",
                "deployments",
                Some(t(Kind::Deployment, "", None, None)),
            ),
            (
                "coordination.k8s.io",
                "v1",
                "namespaces/kube-node-lease/leases",
                Some(t(Kind::Lease, "kube-node-lease", None, None)),
            ),
            ("", "v1", "pods/", Some(t(Kind::Pod, "", None, None))),
            // Wrong group, unknown resource, a namespaced object without
            // its namespace, a cluster-scoped kind inside one, too deep.
            ("", "v1", "deployments", None),
            ("apps", "v1", "pods", None),
            ("", "v1", "widgets", None),
            ("", "v1", "pods/web", None),
            ("", "v1", "namespaces/default/nodes", None),
            ("", "v1", "namespaces/default/pods/web/log/extra", None),
            ("", "v1", "namespaces//pods", None),
            ("", "v1", "", None),
        ];
        for (g, v, rest, want) in cases {
            assert_eq!(parse(g, v, rest).ok(), want, "{g}/{v} {rest}");
        }
        assert_eq!(parse("", "v1", "widgets").err().map(|f| f.code), Some(404));
    }
}
