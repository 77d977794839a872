//! Discovery documents, as Kubernetes serves them: `/version`, `/api`
//! and `/apis` as aggregated discovery (`apidiscovery.k8s.io/v2`, when the
//! `Accept` asks for it, as kubectl does: one request each), or in the
//! legacy forms (`APIVersions`, `APIGroupList`: a client then asks each
//! group version), `/api/v1` and `/apis/<group>/<version>`
//! (`APIResourceList`). Pure: built from
//! [`Kind::ALL`], so a kind the registry serves is a kind discovery lists.

use keelson_model::Kind;
use serde_json::{json, Value};

/// The Kubernetes version this API answers to. kubectl on this project's
/// machines is a dispatcher that runs the client matching the server's
/// minor version, so the minor must be one it has (32).
pub const KUBERNETES_MAJOR: &str = "1";
pub const KUBERNETES_MINOR: &str = "32";
pub const KUBERNETES_GIT_VERSION: &str = "v1.32.0-keelson";

/// The verbs served for every kind over HTTP.
pub const VERBS: [&str; 8] = [
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

/// A group version: `("", "v1")` for the core group.
pub fn group_version_of(kind: Kind) -> (&'static str, &'static str) {
    match kind.api_version().split_once('/') {
        Some((group, version)) => (group, version),
        None => ("", kind.api_version()),
    }
}

/// The kinds served at a group version (`""` for the core group).
pub fn kinds_at(group: &str, version: &str) -> Vec<Kind> {
    Kind::ALL
        .into_iter()
        .filter(|k| group_version_of(*k) == (group, version))
        .collect()
}

/// The named groups (every group but the core one), each with its one
/// version, in a stable order.
pub fn groups() -> Vec<(&'static str, &'static str)> {
    let mut out: Vec<(&str, &str)> = Vec::new();
    for k in Kind::ALL {
        let gv = group_version_of(k);
        if !gv.0.is_empty() && !out.contains(&gv) {
            out.push(gv);
        }
    }
    out.sort();
    out
}

/// The review APIs ([`super::review`]): (group, version, resource, kind),
/// cluster-scoped, `create` only.
pub const REVIEWS: [(&str, &str, &str, &str); 3] = [
    (
        "authentication.k8s.io",
        "v1",
        "selfsubjectreviews",
        "SelfSubjectReview",
    ),
    (
        "authorization.k8s.io",
        "v1",
        "selfsubjectaccessreviews",
        "SelfSubjectAccessReview",
    ),
    (
        "authorization.k8s.io",
        "v1",
        "selfsubjectrulesreviews",
        "SelfSubjectRulesReview",
    ),
];

/// The named groups discovery lists: the kinds' and the reviews'.
fn discovery_groups() -> Vec<(&'static str, &'static str)> {
    let mut out = groups();
    for (g, v, _, _) in REVIEWS {
        if !out.contains(&(g, v)) {
            out.push((g, v));
        }
    }
    out.sort();
    out
}

fn reviews_at<'a>(
    group: &'a str,
    version: &'a str,
) -> impl Iterator<Item = (&'static str, &'static str)> + 'a {
    REVIEWS
        .into_iter()
        .filter(move |(g, v, _, _)| *g == group && *v == version)
        .map(|(_, _, r, k)| (r, k))
}

/// `/version`.
pub fn version() -> Value {
    json!({
        "major": KUBERNETES_MAJOR,
        "minor": KUBERNETES_MINOR,
        "gitVersion": KUBERNETES_GIT_VERSION,
        "gitCommit": "",
        "gitTreeState": "clean",
        "buildDate": "",
        "goVersion": "",
        "compiler": "rustc",
        "platform": format!("{}/{}", std::env::consts::OS, std::env::consts::ARCH),
    })
}

/// `/api`.
pub fn api_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [
            {"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}
        ],
    })
}

/// `/apis`.
pub fn api_group_list() -> Value {
    let groups: Vec<Value> = discovery_groups()
        .into_iter()
        .map(|(group, version)| {
            let gv = json!({"groupVersion": format!("{group}/{version}"), "version": version});
            json!({
                "name": group,
                "versions": [gv.clone()],
                "preferredVersion": gv,
            })
        })
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// `/api/v1` or `/apis/<group>/<version>`; None when nothing is served
/// there.
pub fn api_resource_list(group: &str, version: &str) -> Option<Value> {
    let kinds = kinds_at(group, version);
    let mut resources: Vec<Value> = reviews_at(group, version)
        .map(|(r, k)| {
            json!({"name": r, "singularName": "", "namespaced": false, "kind": k, "verbs": ["create"]})
        })
        .collect();
    if kinds.is_empty() && resources.is_empty() {
        return None;
    }
    for k in kinds {
        let mut r = json!({
            "name": k.plural(),
            "singularName": k.singular(),
            "namespaced": k.namespaced(),
            "kind": k.name(),
            "verbs": VERBS,
        });
        if !k.short_names().is_empty() {
            r["shortNames"] = json!(k.short_names());
        }
        resources.push(r);
        // Subresources, as Kubernetes lists them (kubectl finds `scale`
        // here).
        let sub = |name: &str, kind: &str, verbs: &[&str]| {
            json!({"name": format!("{}/{name}", k.plural()), "singularName": "",
                   "namespaced": k.namespaced(), "kind": kind, "verbs": verbs})
        };
        if k.has_status() {
            resources.push(sub("status", k.name(), &["get", "patch", "update"]));
        }
        if k.has_scale() {
            let mut scale = sub("scale", "Scale", &["get", "patch", "update"]);
            scale["group"] = "autoscaling".into();
            scale["version"] = "v1".into();
            resources.push(scale);
        }
        if k == Kind::Pod {
            resources.push(sub("log", "Pod", &["get"]));
            resources.push(sub("binding", "Binding", &["create"]));
            let mut eviction = sub("eviction", "Eviction", &["create"]);
            eviction["group"] = "policy".into();
            eviction["version"] = "v1".into();
            resources.push(eviction);
        }
    }
    let group_version = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": resources,
    }))
}

/// The media type of aggregated discovery (`/api` and `/apis` in one
/// answer each), as client-go compares it, exactly.
pub const AGGREGATED: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

/// Whether an `Accept` header asks for aggregated discovery v2.
pub fn wants_aggregated(accept: &str) -> bool {
    accept.split(',').any(|range| {
        let params: Vec<&str> = range.split(';').map(str::trim).collect();
        params.first() == Some(&"application/json")
            && params.contains(&"g=apidiscovery.k8s.io")
            && params.contains(&"v=v2")
            && params.contains(&"as=APIGroupDiscoveryList")
    })
}

/// Aggregated discovery (`apidiscovery.k8s.io/v2`): `/api` (`core` true:
/// the core group) or `/apis` (the named groups), every resource of every
/// version with its verbs and subresources.
pub fn aggregated(core: bool) -> Value {
    let gvs: Vec<(&str, &str)> = if core {
        vec![("", "v1")]
    } else {
        discovery_groups()
    };
    let items: Vec<Value> = gvs
        .into_iter()
        .map(|(group, version)| {
            let reviews = reviews_at(group, version).map(|(r, k)| {
                json!({"resource": r, "responseKind": {"group": group, "version": version, "kind": k},
                       "scope": "Cluster", "singularResource": "", "verbs": ["create"]})
            });
            let resources: Vec<Value> = kinds_at(group, version)
                .into_iter()
                .map(|k| {
                    let mut subresources = Vec::new();
                    let kind_ref = |g: &str, v: &str, kind: &str| json!({"group": g, "version": v, "kind": kind});
                    if k.has_status() {
                        subresources.push(json!({"subresource": "status",
                            "responseKind": kind_ref(group, version, k.name()),
                            "verbs": ["get", "patch", "update"]}));
                    }
                    if k.has_scale() {
                        subresources.push(json!({"subresource": "scale",
                            "responseKind": kind_ref("autoscaling", "v1", "Scale"),
                            "verbs": ["get", "patch", "update"]}));
                    }
                    if k == Kind::Pod {
                        subresources.push(json!({"subresource": "log",
                            "responseKind": kind_ref(group, version, "Pod"), "verbs": ["get"]}));
                        subresources.push(json!({"subresource": "binding",
                            "responseKind": kind_ref(group, version, "Binding"), "verbs": ["create"]}));
                        subresources.push(json!({"subresource": "eviction",
                            "responseKind": kind_ref("policy", "v1", "Eviction"), "verbs": ["create"]}));
                    }
                    let mut r = json!({
                        "resource": k.plural(),
                        "responseKind": kind_ref(group, version, k.name()),
                        "scope": if k.namespaced() { "Namespaced" } else { "Cluster" },
                        "singularResource": k.singular(),
                        "verbs": VERBS,
                    });
                    if !k.short_names().is_empty() {
                        r["shortNames"] = json!(k.short_names());
                    }
                    if !subresources.is_empty() {
                        r["subresources"] = Value::Array(subresources);
                    }
                    r
                })
                .chain(reviews)
                .collect();
            json!({
                "metadata": {"name": group, "creationTimestamp": null},
                "versions": [{"version": version, "resources": resources, "freshness": "Current"}],
            })
        })
        .collect();
    json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": "apidiscovery.k8s.io/v2",
        "metadata": {},
        "items": items,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_is_listed_once_at_its_group_version() {
        let mut seen = Vec::new();
        let mut gvs = vec![("", "v1")];
        gvs.extend(groups());
        for (g, v) in gvs {
            let list = api_resource_list(g, v).expect("served");
            for r in list["resources"].as_array().expect("resources") {
                if r["name"].as_str().is_some_and(|n| n.contains('/')) {
                    continue;
                }
                seen.push(r["kind"].as_str().unwrap_or_default().to_string());
            }
        }
        seen.sort();
        let mut want: Vec<String> = Kind::ALL.iter().map(|k| k.name().to_string()).collect();
        want.sort();
        assert_eq!(seen, want);
    }

    #[test]
    fn aggregated_discovery() {
        // kubectl's Accept, then a plain one.
        assert!(wants_aggregated("application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json"));
        assert!(!wants_aggregated("application/json"));
        assert!(!wants_aggregated(
            "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList"
        ));
        let core = aggregated(true);
        assert_eq!(core["items"][0]["metadata"]["name"], "");
        let pods = core["items"][0]["versions"][0]["resources"]
            .as_array()
            .and_then(|a| a.iter().find(|r| r["resource"] == "pods"))
            .cloned()
            .expect("pods");
        assert_eq!(pods["scope"], "Namespaced");
        assert_eq!(pods["responseKind"]["kind"], "Pod");
        assert_eq!(pods["subresources"][1]["subresource"], "log");
        let apis = aggregated(false);
        let names: Vec<&str> = apis["items"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|i| i["metadata"]["name"].as_str())
                    .collect()
            })
            .unwrap_or_default();
        assert_eq!(
            names,
            [
                "apps",
                "authentication.k8s.io",
                "authorization.k8s.io",
                "batch",
                "coordination.k8s.io",
                "rbac.authorization.k8s.io"
            ]
        );
    }

    #[test]
    fn documents_have_kubernetes_shapes() {
        assert_eq!(
            groups(),
            [
                ("apps", "v1"),
                ("batch", "v1"),
                ("coordination.k8s.io", "v1"),
                ("rbac.authorization.k8s.io", "v1")
            ]
        );
        let core = api_resource_list("", "v1").expect("core");
        assert_eq!(core["groupVersion"], "v1");
        let pods = core["resources"]
            .as_array()
            .and_then(|a| a.iter().find(|r| r["name"] == "pods"))
            .cloned()
            .expect("pods");
        assert_eq!(
            pods,
            json!({"name": "pods", "singularName": "pod", "namespaced": true, "kind": "Pod",
                   "verbs": ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"],
                   "shortNames": ["po"]})
        );
        let names: Vec<&str> = core["resources"]
            .as_array()
            .map(|a| a.iter().filter_map(|r| r["name"].as_str()).collect())
            .unwrap_or_default();
        assert!(names.contains(&"pods/status") && names.contains(&"pods/log"));
        assert!(!names.contains(&"events/status"));
        let apps = api_resource_list("apps", "v1").expect("apps");
        let scale = apps["resources"]
            .as_array()
            .and_then(|a| a.iter().find(|r| r["name"] == "deployments/scale"))
            .cloned()
            .expect("deployments/scale");
        assert_eq!(
            (scale["group"].as_str(), scale["kind"].as_str()),
            (Some("autoscaling"), Some("Scale"))
        );
        assert_eq!(apps["groupVersion"], "apps/v1");
        assert!(api_resource_list("apps", "v2").is_none());
        assert!(api_resource_list("batch", "v1").is_some());
        assert!(api_resource_list("storage.k8s.io", "v1").is_none());
        let list = api_group_list();
        assert_eq!(list["groups"][0]["name"], "apps");
        assert_eq!(list["groups"][1]["name"], "authentication.k8s.io");
        let authz = api_resource_list("authorization.k8s.io", "v1").expect("authz");
        assert_eq!(authz["resources"][0]["kind"], "SelfSubjectAccessReview");
        assert_eq!(
            list["groups"][0]["preferredVersion"]["groupVersion"],
            "apps/v1"
        );
        assert_eq!(version()["minor"], "32");
        assert_eq!(api_versions("127.0.0.1:6443")["versions"], json!(["v1"]));
    }
}
