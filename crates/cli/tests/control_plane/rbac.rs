//! ServiceAccounts, Roles, ClusterRoles and their bindings as kubectl
//! creates them (client-go sends these as protobuf), with `keelson server`'s
//! controllers running: every namespace gets a `default` ServiceAccount
//! (again after it is deleted), kubectl's tables, Kubernetes' defaults and
//! validation (role references, subjects, rules; a binding's roleRef never
//! changes), and namespace deletion taking them along.

use crate::common;

use std::time::Duration;

use common::{eventually, serial, start_control_plane};
use serde_json::Value;

fn json(out: &str) -> Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_accounts_roles_and_bindings_over_kubectl() {
    let _g = serial().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let c = start_control_plane(1, &dir.path().join("cluster"), &[]).await;
    let k = common::Kubectl::new(dir.path(), &c, 0, &c.token("admin", None));

    // A new namespace gets its default account; a deleted one comes back.
    k.ok(&["create", "namespace", "team"]);
    let uid_of_default = || {
        let (ok, out, _) = k.run(&[
            "get",
            "serviceaccount",
            "default",
            "-n",
            "team",
            "-o",
            "jsonpath={.metadata.uid}",
        ]);
        ok.then_some(out).filter(|u| !u.is_empty())
    };
    let mut first = None;
    eventually(Duration::from_secs(20), "team's default account", || {
        first = uid_of_default();
        let found = first.is_some();
        async move { found }
    })
    .await;
    k.ok(&["delete", "serviceaccount", "default", "-n", "team"]);
    eventually(Duration::from_secs(20), "a new default account", || {
        let again = uid_of_default();
        let back = again.is_some() && again != first;
        async move { back }
    })
    .await;
    k.ok(&["create", "serviceaccount", "builder", "-n", "team"]);
    let (row, table) = k.first_row(&["get", "sa", "builder", "-n", "team"]);
    assert_eq!(
        row.get(..2),
        Some(&["builder", "0"].map(String::from)[..]),
        "{table}"
    );

    // A Role and a RoleBinding to a ServiceAccount and a user.
    k.ok(&[
        "create",
        "role",
        "pod-reader",
        "--verb=get,list,watch",
        "--resource=pods,pods/log",
        "-n",
        "team",
    ]);
    let role = json(&k.ok(&["get", "role", "pod-reader", "-n", "team", "-o", "json"]));
    assert_eq!(role["apiVersion"], "rbac.authorization.k8s.io/v1");
    assert_eq!(
        role["rules"][0]["verbs"],
        serde_json::json!(["get", "list", "watch"])
    );
    assert_eq!(
        role["rules"][0]["resources"],
        serde_json::json!(["pods", "pods/log"])
    );
    k.ok(&[
        "create",
        "rolebinding",
        "read-pods",
        "--role=pod-reader",
        "--serviceaccount=team:builder",
        "--user=alice",
        "-n",
        "team",
    ]);
    let binding = json(&k.ok(&[
        "get",
        "rolebinding",
        "read-pods",
        "-n",
        "team",
        "-o",
        "json",
    ]));
    assert_eq!(
        binding["roleRef"],
        serde_json::json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "pod-reader"})
    );
    let subjects = binding["subjects"].as_array().cloned().unwrap_or_default();
    assert!(
        subjects.contains(
            &serde_json::json!({"kind": "ServiceAccount", "name": "builder", "namespace": "team"})
        ),
        "{binding}"
    );
    assert!(
        subjects.contains(&serde_json::json!({"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": "alice"})),
        "{binding}"
    );
    let (row, table) = k.first_row(&["get", "rolebinding", "-n", "team", "-o", "wide"]);
    assert_eq!(
        row.get(..2),
        Some(&["read-pods", "Role/pod-reader"].map(String::from)[..]),
        "{table}"
    );
    assert!(
        table.contains("team/builder") && table.contains("alice"),
        "{table}"
    );

    // Cluster-wide: a ClusterRole with a resource rule and a non-resource
    // rule, bound to a group.
    k.ok(&[
        "create",
        "clusterrole",
        "node-reader",
        "--verb=get,list",
        "--resource=nodes",
    ]);
    k.ok(&[
        "create",
        "clusterrolebinding",
        "read-nodes",
        "--clusterrole=node-reader",
        "--group=ops",
    ]);
    let (row, table) = k.first_row(&["get", "clusterrolebinding", "read-nodes"]);
    assert_eq!(
        row.get(..2),
        Some(&["read-nodes", "ClusterRole/node-reader"].map(String::from)[..]),
        "{table}"
    );
    let health = serde_json::json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": "health"},
        "rules": [{"verbs": ["get"], "nonResourceURLs": ["/healthz", "/readyz"]}]});
    let (code, out, err) = k.run_input(&["apply", "-f", "-"], health.to_string().as_bytes());
    assert_eq!(code, 0, "{out}{err}");
    let got = json(&k.ok(&["get", "clusterrole", "health", "-o", "json"]));
    assert_eq!(
        got["rules"][0]["nonResourceURLs"],
        serde_json::json!(["/healthz", "/readyz"])
    );

    // Kubernetes' validation.
    let refused = |manifest: Value, why: &str| {
        let (code, out, err) = k.run_input(&["apply", "-f", "-"], manifest.to_string().as_bytes());
        assert_ne!(code, 0, "{manifest} was accepted: {out}");
        assert!(err.contains(why), "{manifest}: {err}");
    };
    refused(
        serde_json::json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": "bad"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "pod-reader"},
            "subjects": [{"kind": "Group", "name": "ops", "apiGroup": "rbac.authorization.k8s.io"}]}),
        r#"The ClusterRoleBinding "bad" is invalid: roleRef.kind: Unsupported value "Role""#,
    );
    refused(
        serde_json::json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": "bad"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "node-reader"},
            "subjects": [{"kind": "ServiceAccount", "name": "builder"}]}),
        "subjects[0].namespace: Required value",
    );
    refused(
        serde_json::json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": {"name": "bad", "namespace": "team"},
            "rules": [{"apiGroups": [""], "resources": ["pods"]}]}),
        "rules[0].verbs: Required value",
    );
    refused(
        serde_json::json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": {"name": "bad", "namespace": "team"},
            "rules": [{"verbs": ["get"], "nonResourceURLs": ["/healthz"]}]}),
        "namespaced rules cannot apply to non-resource URLs",
    );
    let (ok, _, err) = k.run(&[
        "patch",
        "rolebinding",
        "read-pods",
        "-n",
        "team",
        "--type=merge",
        "-p",
        r#"{"roleRef":{"name":"other"}}"#,
    ]);
    assert!(!ok && err.contains("cannot change roleRef"), "{err}");

    // The namespace takes its accounts, roles and bindings with it.
    k.ok(&["delete", "namespace", "team", "--timeout=60s"]);
    eventually(Duration::from_secs(30), "team gone", || {
        let (ok, _, _) = k.run(&["get", "namespace", "team"]);
        async move { !ok }
    })
    .await;
    for kind in ["serviceaccounts", "roles", "rolebindings"] {
        let out = k.ok(&["get", kind, "-n", "team", "-o", "name"]);
        assert!(out.trim().is_empty(), "{kind} left: {out}");
    }
}
