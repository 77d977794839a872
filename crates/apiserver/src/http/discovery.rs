//! Discovery documents, as Kubernetes serves them: `/version`, `/api`
//! (`APIVersions`), `/apis` (`APIGroupList`, the legacy form: kubectl
//! reads it and then asks each group version), `/api/v1` and
//! `/apis/<group>/<version>` (`APIResourceList`). Pure: built from
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
pub const VERBS: [&str; 2] = ["get", "list"];

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
    let groups: Vec<Value> = groups()
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
    if kinds.is_empty() {
        return None;
    }
    let mut resources: Vec<Value> = Vec::new();
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
                seen.push(r["kind"].as_str().unwrap_or_default().to_string());
            }
        }
        seen.sort();
        let mut want: Vec<String> = Kind::ALL.iter().map(|k| k.name().to_string()).collect();
        want.sort();
        assert_eq!(seen, want);
    }

    #[test]
    fn documents_have_kubernetes_shapes() {
        assert_eq!(groups(), [("apps", "v1"), ("coordination.k8s.io", "v1")]);
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
                   "verbs": ["get", "list"], "shortNames": ["po"]})
        );
        let apps = api_resource_list("apps", "v1").expect("apps");
        assert_eq!(apps["groupVersion"], "apps/v1");
        assert!(api_resource_list("apps", "v2").is_none());
        assert!(api_resource_list("batch", "v1").is_none());
        let list = api_group_list();
        assert_eq!(list["groups"][0]["name"], "apps");
        assert_eq!(
            list["groups"][0]["preferredVersion"]["groupVersion"],
            "apps/v1"
        );
        assert_eq!(version()["minor"], "32");
        assert_eq!(api_versions("127.0.0.1:6443")["versions"], json!(["v1"]));
    }
}
