use tonic::{Code, Status};

/// What a call can fail with, by what the caller should do about it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    /// The object changed since it was read: read it again and retry.
    #[error("{0}")]
    Conflict(String),
    /// The resourceVersion was compacted: relist.
    #[error("{0}")]
    Expired(String),
    #[error("{0}")]
    Invalid(String),
    #[error("unauthenticated: {0}")]
    Unauthenticated(String),
    #[error("{0}")]
    Forbidden(String),
    /// No replica could serve the call (after failover and retries), or a
    /// write's outcome is unknown because its replica failed mid-call.
    #[error("unavailable: {0}")]
    Unavailable(String),
    #[error("config: {0}")]
    Config(String),
    #[error("{0}")]
    Other(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<Status> for Error {
    fn from(s: Status) -> Error {
        let m = s.message().to_string();
        match s.code() {
            Code::NotFound => Error::NotFound(m),
            Code::AlreadyExists => Error::AlreadyExists(m),
            Code::Aborted => Error::Conflict(m),
            Code::OutOfRange => Error::Expired(m),
            Code::InvalidArgument => Error::Invalid(m),
            Code::Unauthenticated => Error::Unauthenticated(m),
            Code::PermissionDenied => Error::Forbidden(m),
            // Unknown: the transport failed mid-call (the replica died); the
            // outcome of a write is not known.
            Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Unknown => {
                Error::Unavailable(m)
            }
            c => Error::Other(format!("{c:?}: {m}")),
        }
    }
}
