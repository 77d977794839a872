//! Who am I, and may I: `SelfSubjectReview` (`authentication.k8s.io/v1`,
//! `kubectl auth whoami`), `SelfSubjectAccessReview`
//! (`authorization.k8s.io/v1`, `kubectl auth can-i`) and
//! `SelfSubjectRulesReview` (`kubectl auth can-i --list`), answered from the
//! caller's token and the same [`authorize`] every request goes through.
//! Pure.
//!
//! A review of a verb on a kind asks `authorize` without an object, so a
//! rule that depends on the object (a node's own pods) answers "no" with a
//! reason saying so.

use keelson_model::Kind;
use serde_json::{json, Value};

use super::discovery::group_version_of;
use super::status::Failure;
use crate::auth::{authorize, Identity, Role, Verb};

/// The groups a user is in: its role's, and `system:authenticated`.
fn groups(who: &Identity) -> Vec<String> {
    vec![
        format!("keelson:{}", who.role.as_str()),
        "system:authenticated".to_string(),
    ]
}

/// The answer to a `SelfSubjectReview`.
pub fn self_subject_review(who: &Identity) -> Value {
    json!({
        "kind": "SelfSubjectReview",
        "apiVersion": "authentication.k8s.io/v1",
        "metadata": {"creationTimestamp": null},
        "status": {"userInfo": {"username": who.user, "groups": groups(who)}},
    })
}

/// The answer to a `SelfSubjectAccessReview` (its spec, and the status).
pub fn self_subject_access_review(who: &Identity, body: &Value) -> Result<Value, Failure> {
    if body.get("kind").and_then(Value::as_str) != Some("SelfSubjectAccessReview") {
        return Err(Failure::bad_request(
            "the body is not a SelfSubjectAccessReview",
        ));
    }
    let spec = body.get("spec").cloned().unwrap_or_else(|| json!({}));
    let (allowed, reason) = if let Some(r) = spec.get("resourceAttributes") {
        resource_allowed(who, r)
    } else if let Some(n) = spec.get("nonResourceAttributes") {
        let verb = n.get("verb").and_then(Value::as_str).unwrap_or_default();
        // Discovery, OpenAPI, health and version are open to every
        // authenticated user for reading; nothing else is served.
        let ok = who.role == Role::Admin || verb == "get";
        (ok, String::new())
    } else {
        return Err(Failure::new(
            422,
            "Invalid",
            "SelfSubjectAccessReview.spec: exactly one of resourceAttributes, nonResourceAttributes must be set",
        ));
    };
    let mut status = json!({"allowed": allowed});
    if !reason.is_empty() {
        status["reason"] = reason.into();
    }
    Ok(json!({
        "kind": "SelfSubjectAccessReview",
        "apiVersion": "authorization.k8s.io/v1",
        "metadata": {"creationTimestamp": null},
        "spec": spec,
        "status": status,
    }))
}

fn resource_allowed(who: &Identity, r: &Value) -> (bool, String) {
    let s = |f: &str| r.get(f).and_then(Value::as_str).unwrap_or_default();
    let (group, resource, sub, name) = (s("group"), s("resource"), s("subresource"), s("name"));
    let Some(kind) = Kind::ALL
        .into_iter()
        .find(|k| k.plural() == resource && group_version_of(*k).0 == group)
    else {
        // Not a built-in kind: custom resources (or nothing served), which
        // admins do anything with and viewers read.
        let reads = matches!(s("verb"), "get" | "list" | "watch");
        return if who.role == Role::Admin
            || (who.role == Role::Viewer && reads && !group.is_empty())
        {
            (true, String::new())
        } else {
            (
                false,
                format!("{resource:?} in group {group:?} is not served here"),
            )
        };
    };
    let verb = match (s("verb"), sub) {
        ("get", _) => Verb::Get,
        ("list", _) => Verb::List,
        ("watch", _) => Verb::Watch,
        ("create", _) => Verb::Create,
        ("update" | "patch", "status") => Verb::UpdateStatus,
        ("update" | "patch", _) => Verb::Update,
        ("delete" | "deletecollection", _) => Verb::Delete,
        ("*", _) if who.role == Role::Admin => return (true, String::new()),
        (other, _) => return (false, format!("verb {other:?} is not one the API serves")),
    };
    match authorize(who, verb, kind, name, None, None) {
        Ok(()) => (true, String::new()),
        Err(_) if who.role == Role::Node && kind == Kind::Pod => (
            false,
            "a node may change only the pods bound to it; ask about a pod by name once it is bound"
                .into(),
        ),
        // A role's plain "no", as RBAC gives it: no reason (kubectl prints
        // a reason after the "no").
        Err(_) => (false, String::new()),
    }
}

/// The rules of one resource group: (apiGroups, resources, verbs,
/// resourceNames).
fn rule(groups: &[&str], resources: &[String], verbs: &[&str], names: &[&str]) -> Value {
    let mut r = json!({"verbs": verbs, "apiGroups": groups, "resources": resources});
    if !names.is_empty() {
        r["resourceNames"] = json!(names);
    }
    r
}

/// Each built-in group's resources (`kinds` picked), with `status` for
/// those that have one: one rule per group with `verbs`.
fn per_group(kinds: impl Fn(Kind) -> bool, verbs: &[&str]) -> Vec<Value> {
    let mut groups: Vec<(&str, Vec<String>)> = Vec::new();
    for k in Kind::ALL.into_iter().filter(|k| kinds(*k)) {
        let g = group_version_of(k).0;
        let mut resources = vec![k.plural().to_string()];
        if k.has_status() {
            resources.push(format!("{}/status", k.plural()));
        }
        if k == Kind::Pod {
            resources.push("pods/log".to_string());
        }
        match groups.iter_mut().find(|(x, _)| *x == g) {
            Some((_, r)) => r.extend(resources),
            None => groups.push((g, resources)),
        }
    }
    groups
        .into_iter()
        .map(|(g, r)| rule(&[g], &r, verbs, &[]))
        .collect()
}

const READ_VERBS: &[&str] = &["get", "list", "watch"];

/// The answer to a `SelfSubjectRulesReview` (`kubectl auth can-i
/// --list`): what the caller's role allows in `spec.namespace`, as RBAC
/// rules. `custom_groups`: the groups of the custom resources served
/// (viewers read them). A node's rules that depend on the objects (its own
/// pods, the Secrets its pods use) make the answer `incomplete`.
pub fn self_subject_rules_review(
    who: &Identity,
    body: &Value,
    custom_groups: &[String],
) -> Result<Value, Failure> {
    if body.get("kind").and_then(Value::as_str) != Some("SelfSubjectRulesReview") {
        return Err(Failure::bad_request(
            "the body is not a SelfSubjectRulesReview",
        ));
    }
    let spec = body.get("spec").cloned().unwrap_or_else(|| json!({}));
    let discovery_urls = [
        "/api",
        "/api/*",
        "/apis",
        "/apis/*",
        "/healthz",
        "/livez",
        "/readyz",
        "/version",
        "/version/",
        "/openapi",
        "/openapi/*",
    ];
    let read_urls = json!([{"verbs": ["get"], "nonResourceURLs": discovery_urls}]);
    let reviews = rule(
        &["authentication.k8s.io", "authorization.k8s.io"],
        &[
            "selfsubjectreviews".to_string(),
            "selfsubjectaccessreviews".to_string(),
            "selfsubjectrulesreviews".to_string(),
        ],
        &["create"],
        &[],
    );
    let (resource_rules, non_resource_rules, incomplete) = match who.role {
        Role::Admin => (
            vec![rule(&["*"], &["*".to_string()], &["*"], &[])],
            json!([{"verbs": ["*"], "nonResourceURLs": ["*"]}]),
            false,
        ),
        Role::Viewer => {
            let mut rules = per_group(|k| k != Kind::Secret, READ_VERBS);
            let custom: Vec<&str> = custom_groups.iter().map(String::as_str).collect();
            if !custom.is_empty() {
                rules.push(rule(&custom, &["*".to_string()], READ_VERBS, &[]));
            }
            rules.push(reviews);
            (rules, read_urls, false)
        }
        Role::Node => {
            let me = who.user.as_str();
            let mut rules = per_group(|k| !matches!(k, Kind::Secret | Kind::ConfigMap), READ_VERBS);
            rules.push(rule(
                &[""],
                &["nodes".to_string(), "nodes/status".to_string()],
                &["create", "update", "patch"],
                &[me],
            ));
            rules.push(rule(
                &["coordination.k8s.io"],
                &["leases".to_string()],
                &["*"],
                &[me],
            ));
            rules.push(rule(&[""], &["events".to_string()], &["create"], &[]));
            rules.push(reviews);
            (rules, read_urls, true)
        }
    };
    let mut status = json!({
        "resourceRules": resource_rules,
        "nonResourceRules": non_resource_rules,
        "incomplete": incomplete,
    });
    if incomplete {
        status["evaluationError"] = json!(
            "a node's reads of Secrets and ConfigMaps, and its writes of pods, depend on the pods bound to it"
        );
    }
    Ok(json!({
        "kind": "SelfSubjectRulesReview",
        "apiVersion": "authorization.k8s.io/v1",
        "metadata": {"creationTimestamp": null},
        "spec": spec,
        "status": status,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who(role: Role) -> Identity {
        Identity {
            user: "alice".into(),
            role,
        }
    }

    fn review(attrs: Value) -> Value {
        json!({"kind": "SelfSubjectAccessReview", "apiVersion": "authorization.k8s.io/v1",
               "spec": {"resourceAttributes": attrs}})
    }

    fn allowed(role: Role, attrs: Value) -> bool {
        self_subject_access_review(&who(role), &review(attrs)).expect("review")["status"]["allowed"]
            == true
    }

    #[test]
    fn can_i_follows_the_roles() {
        let pods = |verb: &str| json!({"verb": verb, "resource": "pods", "namespace": "default"});
        assert!(allowed(Role::Admin, pods("create")));
        assert!(allowed(Role::Viewer, pods("list")));
        assert!(!allowed(Role::Viewer, pods("create")));
        assert!(!allowed(Role::Viewer, pods("delete")));
        assert!(allowed(
            Role::Viewer,
            json!({"verb": "watch", "group": "apps", "resource": "deployments"})
        ));
        // deployments are in apps, not the core group.
        assert!(!allowed(
            Role::Viewer,
            json!({"verb": "get", "resource": "deployments"})
        ));
        assert!(allowed(
            Role::Admin,
            json!({"verb": "*", "resource": "pods"})
        ));
        assert!(!allowed(
            Role::Viewer,
            json!({"verb": "escalate", "resource": "pods"})
        ));
        let node = Identity {
            user: "n1".into(),
            role: Role::Node,
        };
        let r = self_subject_access_review(
            &node,
            &review(json!({"verb": "update", "resource": "nodes", "name": "n1", "subresource": "status"})),
        )
        .expect("review");
        assert_eq!(r["status"]["allowed"], true);
        let r = self_subject_access_review(
            &node,
            &review(json!({"verb": "update", "resource": "nodes", "name": "n2"})),
        )
        .expect("review");
        assert_eq!(r["status"]["allowed"], false);
        assert!(r["status"].get("reason").is_none(), "a plain no: {r}");
        assert_eq!(r["spec"]["resourceAttributes"]["name"], "n2");
    }

    #[test]
    fn rules_reviews_list_what_a_role_allows() {
        let body = json!({"kind": "SelfSubjectRulesReview", "apiVersion": "authorization.k8s.io/v1",
                          "spec": {"namespace": "default"}});
        let custom = vec!["stable.example.com".to_string()];
        let admin = self_subject_rules_review(&who(Role::Admin), &body, &custom).expect("review");
        assert_eq!(admin["status"]["resourceRules"][0]["verbs"], json!(["*"]));
        assert_eq!(admin["status"]["incomplete"], false);
        assert_eq!(admin["spec"]["namespace"], "default");
        let viewer = self_subject_rules_review(&who(Role::Viewer), &body, &custom).expect("review");
        let rules = viewer["status"]["resourceRules"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let resources: Vec<String> = rules
            .iter()
            .flat_map(|r| r["resources"].as_array().cloned().unwrap_or_default())
            .filter_map(|r| r.as_str().map(str::to_string))
            .collect();
        assert!(resources.contains(&"pods".to_string()), "{resources:?}");
        assert!(
            resources.contains(&"deployments".to_string()),
            "{resources:?}"
        );
        assert!(!resources.contains(&"secrets".to_string()), "{resources:?}");
        assert!(rules
            .iter()
            .any(|r| r["apiGroups"] == json!(["stable.example.com"])
                && r["verbs"] == json!(["get", "list", "watch"])));
        let node = Identity {
            user: "n1".into(),
            role: Role::Node,
        };
        let n = self_subject_rules_review(&node, &body, &[]).expect("review");
        assert_eq!(n["status"]["incomplete"], true);
        assert!(n["status"]["resourceRules"]
            .as_array()
            .is_some_and(|rs| rs.iter().any(|r| r["resourceNames"] == json!(["n1"]))));
        assert!(self_subject_rules_review(&node, &json!({"kind": "Pod"}), &[]).is_err());
        // Access reviews of custom resources follow the same roles.
        assert!(allowed(
            Role::Viewer,
            json!({"verb": "list", "group": "stable.example.com", "resource": "crontabs"})
        ));
        assert!(!allowed(
            Role::Viewer,
            json!({"verb": "create", "group": "stable.example.com", "resource": "crontabs"})
        ));
    }

    #[test]
    fn bad_reviews_and_whoami() {
        assert_eq!(
            self_subject_access_review(&who(Role::Admin), &json!({"kind": "Pod"}))
                .err()
                .map(|f| f.code),
            Some(400)
        );
        assert_eq!(
            self_subject_access_review(
                &who(Role::Admin),
                &json!({"kind": "SelfSubjectAccessReview", "spec": {}})
            )
            .err()
            .map(|f| f.code),
            Some(422)
        );
        let me = self_subject_review(&who(Role::Viewer));
        assert_eq!(me["status"]["userInfo"]["username"], "alice");
        assert_eq!(me["status"]["userInfo"]["groups"][0], "keelson:viewer");
    }
}
