//! Failures as Kubernetes answers them: an HTTP code and a `metav1.Status`
//! body (`reason`, `message`, `details`, `code`), which kubectl prints as
//! `Error from server (NotFound): pods "x" not found`. The one mapping
//! from the API server's [`Error`] to HTTP lives here, beside the one to
//! gRPC codes in [`crate::error`].

use serde_json::{json, Value};

use crate::error::Error;

/// How long a client should wait before retrying a request the store could
/// not serve (no leader yet, a timeout): about one Raft election.
pub const RETRY_AFTER_SECS: u32 = 1;

/// A failed request.
#[derive(Clone, Debug, PartialEq)]
pub struct Failure {
    pub code: u16,
    /// Kubernetes' `StatusReason`: NotFound, AlreadyExists, Conflict...
    pub reason: &'static str,
    pub message: String,
    /// `details` (name, kind, causes), when there are any.
    pub details: Option<Value>,
}

impl Failure {
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Failure {
        Failure {
            code,
            reason,
            message: message.into(),
            details: None,
        }
    }

    /// A path no handler serves (Kubernetes' words for it).
    pub fn no_such_path() -> Failure {
        Failure::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )
    }

    pub fn bad_request(message: impl Into<String>) -> Failure {
        Failure::new(400, "BadRequest", message)
    }

    pub fn not_acceptable(message: impl Into<String>) -> Failure {
        Failure::new(406, "NotAcceptable", message)
    }

    /// Seconds for a `Retry-After` header, for failures worth retrying.
    pub fn retry_after(&self) -> Option<u32> {
        matches!(self.code, 429 | 503).then_some(RETRY_AFTER_SECS)
    }

    /// The `metav1.Status` body.
    pub fn body(&self) -> Value {
        let mut v = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(d) = &self.details {
            v["details"] = d.clone();
        }
        v
    }
}

/// The `causes` of an Invalid status: each problem `field: message`
/// split into its field and message.
pub fn causes(problems: &[String]) -> Vec<Value> {
    problems
        .iter()
        .map(|p| match p.split_once(": ") {
            Some((field, msg)) if !field.contains(' ') => {
                json!({"reason": "FieldValueInvalid", "message": msg, "field": field})
            }
            _ => json!({"reason": "FieldValueInvalid", "message": p}),
        })
        .collect()
}

impl From<Error> for Failure {
    fn from(e: Error) -> Failure {
        let message = e.to_string();
        match e {
            Error::Invalid { what, problems } => {
                let causes = causes(&problems);
                // `what` is `Kind "name"`: kubectl prints the details'
                // kind and name ("The Pod \"p\" is invalid: ...").
                let (kind, name) = match what.split_once(' ') {
                    Some((kind, quoted)) => (
                        kind.to_string(),
                        serde_json::from_str::<String>(quoted)
                            .unwrap_or_else(|_| quoted.to_string()),
                    ),
                    None => (String::new(), what),
                };
                Failure {
                    code: 422,
                    reason: "Invalid",
                    message,
                    details: Some(json!({"kind": kind, "name": name, "causes": causes})),
                }
            }
            Error::BadRequest(_) => Failure::new(400, "BadRequest", message),
            Error::NotFound { kind, name } => Failure {
                code: 404,
                reason: "NotFound",
                message,
                details: Some(json!({"name": name, "kind": kind})),
            },
            Error::AlreadyExists { kind, name } => Failure {
                code: 409,
                reason: "AlreadyExists",
                message,
                details: Some(json!({"name": name, "kind": kind})),
            },
            Error::Conflict(_) => Failure::new(409, "Conflict", message),
            Error::Expired(_) => Failure::new(410, "Expired", message),
            Error::Unauthenticated(_) => Failure::new(401, "Unauthorized", message),
            // Kubernetes' own wording ("pods \"x\" is forbidden: ..."),
            // without the gRPC message's "forbidden: " prefix.
            Error::Forbidden(m) => Failure::new(403, "Forbidden", m),
            Error::Unavailable(_) => Failure::new(503, "ServiceUnavailable", message),
            Error::Internal(_) => Failure::new(500, "InternalError", message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_map_to_kubernetes_codes_and_reasons() {
        let cases: Vec<(Error, u16, &str)> = vec![
            (Error::BadRequest("x".into()), 400, "BadRequest"),
            (
                Error::NotFound {
                    kind: "pods",
                    name: "web".into(),
                },
                404,
                "NotFound",
            ),
            (
                Error::AlreadyExists {
                    kind: "pods",
                    name: "web".into(),
                },
                409,
                "AlreadyExists",
            ),
            (Error::Conflict("x".into()), 409, "Conflict"),
            (Error::Expired("x".into()), 410, "Expired"),
            (Error::Unauthenticated("x".into()), 401, "Unauthorized"),
            (Error::Forbidden("x".into()), 403, "Forbidden"),
            (Error::Unavailable("x".into()), 503, "ServiceUnavailable"),
            (Error::Internal("x".into()), 500, "InternalError"),
        ];
        for (e, code, reason) in cases {
            let f = Failure::from(e);
            assert_eq!((f.code, f.reason), (code, reason), "{f:?}");
            assert_eq!(f.body()["code"], code);
            assert_eq!(f.body()["kind"], "Status");
            assert_eq!(f.retry_after().is_some(), code == 503);
        }
    }

    #[test]
    fn not_found_reads_as_kubectl_prints_it() {
        let f = Failure::from(Error::NotFound {
            kind: "pods",
            name: "web".into(),
        });
        assert_eq!(f.body()["message"], "pods \"web\" not found");
        assert_eq!(f.body()["details"], json!({"name": "web", "kind": "pods"}));
    }

    #[test]
    fn invalid_lists_every_problem_as_a_cause() {
        let f = Failure::from(Error::Invalid {
            what: "Pod \"p\"".into(),
            problems: vec![
                "spec.containers: Required value".into(),
                "metadata.name must be a DNS label".into(),
            ],
        });
        assert_eq!(f.code, 422);
        assert_eq!(f.body()["details"]["kind"], "Pod");
        assert_eq!(f.body()["details"]["name"], "p");
        let causes = &f.body()["details"]["causes"];
        assert_eq!(causes[0]["field"], "spec.containers");
        assert_eq!(causes[0]["message"], "Required value");
        assert_eq!(causes[1].get("field"), None);
        assert_eq!(causes[1]["message"], "metadata.name must be a DNS label");
    }
}
