//! The API server's errors and their one mapping to gRPC statuses.

use tonic::{Code, Status};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Validation failed: every problem, one per entry.
    #[error("{what} is invalid: {}", problems.join("; "))]
    Invalid { what: String, problems: Vec<String> },
    #[error("{0}")]
    BadRequest(String),
    #[error("{kind} {name:?} not found")]
    NotFound { kind: &'static str, name: String },
    #[error("{kind} {name:?} already exists")]
    AlreadyExists { kind: &'static str, name: String },
    /// The object changed since the client read it (Kubernetes' Conflict).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The requested revision was compacted: the client must relist.
    #[error("expired, relist: {0}")]
    Expired(String),
    #[error("{0}")]
    Unauthenticated(String),
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// The store could not serve the request (no leader, timeout): retry.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn code(&self) -> Code {
        match self {
            Error::Invalid { .. } | Error::BadRequest(_) => Code::InvalidArgument,
            Error::NotFound { .. } => Code::NotFound,
            Error::AlreadyExists { .. } => Code::AlreadyExists,
            Error::Conflict(_) => Code::Aborted,
            Error::Expired(_) => Code::OutOfRange,
            Error::Unauthenticated(_) => Code::Unauthenticated,
            Error::Forbidden(_) => Code::PermissionDenied,
            Error::Unavailable(_) => Code::Unavailable,
            Error::Internal(_) => Code::Internal,
        }
    }
}

impl From<Error> for Status {
    fn from(e: Error) -> Status {
        Status::new(e.code(), e.to_string())
    }
}

impl From<keelson_store::Error> for Error {
    fn from(e: keelson_store::Error) -> Error {
        use keelson_store::Error as S;
        match e {
            S::Compacted => Error::Expired("the revision has been compacted".into()),
            S::FutureRevision => Error::BadRequest("resourceVersion is in the future".into()),
            S::NoSpace => Error::Unavailable("database space exceeded".into()),
            S::RequestTooLarge => Error::BadRequest("request is too large".into()),
            S::NoLeader | S::LeaderChanged | S::Timeout | S::Stopped | S::Unhealthy => {
                Error::Unavailable(e.to_string())
            }
            other => {
                let status = Status::from(other);
                match status.code() {
                    Code::Unavailable | Code::DeadlineExceeded => {
                        Error::Unavailable(status.message().to_string())
                    }
                    _ => Error::Internal(status.message().to_string()),
                }
            }
        }
    }
}
