//! Who am I, and may I: `SelfSubjectReview` (`authentication.k8s.io/v1`,
//! `kubectl auth whoami`) and `SelfSubjectAccessReview`
//! (`authorization.k8s.io/v1`, `kubectl auth can-i`), answered from the
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
        // Only an admin may do anything at all, served or not.
        return if who.role == Role::Admin {
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
