//! The store's errors, and their one mapping to gRPC statuses with etcd's
//! messages (clients such as etcdctl match on those strings).

use tonic::{Code, Status};

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Errors a client can cause or see. The messages are etcd's, verbatim.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("etcdserver: key is not provided")]
    EmptyKey,
    #[error("etcdserver: key not found")]
    KeyNotFound,
    #[error("etcdserver: value is provided")]
    ValueProvided,
    #[error("etcdserver: lease is provided")]
    LeaseProvided,
    #[error("etcdserver: too many operations in txn request")]
    TooManyOps,
    #[error("etcdserver: duplicate key given in txn request")]
    DuplicateKey,
    #[error("etcdserver: mvcc: required revision has been compacted")]
    Compacted,
    #[error("etcdserver: mvcc: required revision is a future revision")]
    FutureRevision,
    #[error("etcdserver: mvcc: database space exceeded")]
    NoSpace,
    #[error("etcdserver: corrupt cluster")]
    Corrupt,
    #[error("etcdserver: requested lease not found")]
    LeaseNotFound,
    #[error("etcdserver: lease already exists")]
    LeaseExists,
    #[error("etcdserver: too large lease TTL")]
    LeaseTtlTooLarge,
    #[error("etcdserver: member not found")]
    MemberNotFound,
    #[error("etcdserver: Peer URLs already exists")]
    PeerUrlExists,
    #[error("etcdserver: given member URLs are invalid")]
    MemberBadUrls,
    #[error("etcdserver: request is too large")]
    RequestTooLarge,
    #[error("etcdserver: no leader")]
    NoLeader,
    #[error("etcdserver: not leader")]
    NotLeader,
    #[error("etcdserver: bad leader transferee")]
    BadLeaderTransferee,
    #[error("etcdserver: leader changed")]
    LeaderChanged,
    #[error("etcdserver: request timed out")]
    Timeout,
    #[error("etcdserver: server stopped")]
    Stopped,
    #[error("etcdserver: unhealthy cluster")]
    Unhealthy,
    /// A request the store does not understand or support.
    #[error("{0}")]
    InvalidArgument(String),
    /// An internal failure (storage, Raft); the message says what failed.
    #[error("{0}")]
    Internal(String),
    /// Any status passed through unchanged (from a forwarded request).
    #[error("{message}")]
    Remote { code: i32, message: String },
}

impl Error {
    pub fn code(&self) -> Code {
        use Error::*;
        match self {
            EmptyKey | KeyNotFound | ValueProvided | LeaseProvided | TooManyOps | DuplicateKey
            | MemberBadUrls | RequestTooLarge | InvalidArgument(_) => Code::InvalidArgument,
            Compacted | FutureRevision | LeaseTtlTooLarge => Code::OutOfRange,
            NoSpace => Code::ResourceExhausted,
            Corrupt => Code::DataLoss,
            LeaseNotFound | MemberNotFound => Code::NotFound,
            LeaseExists | PeerUrlExists => Code::FailedPrecondition,
            NoLeader | LeaderChanged | Timeout | Stopped | Unhealthy => Code::Unavailable,
            NotLeader => Code::FailedPrecondition,
            BadLeaderTransferee => Code::FailedPrecondition,
            Internal(_) => Code::Internal,
            Remote { code, .. } => Code::from_i32(*code),
        }
    }

    /// Rebuild an error from a code and message (a forwarded status or a
    /// result recorded in the Raft log), restoring the known variants.
    pub fn from_parts(code: i32, message: &str) -> Error {
        const KNOWN: &[Error] = &[
            Error::EmptyKey,
            Error::KeyNotFound,
            Error::ValueProvided,
            Error::LeaseProvided,
            Error::TooManyOps,
            Error::DuplicateKey,
            Error::Compacted,
            Error::FutureRevision,
            Error::NoSpace,
            Error::Corrupt,
            Error::LeaseNotFound,
            Error::LeaseExists,
            Error::LeaseTtlTooLarge,
            Error::MemberNotFound,
            Error::PeerUrlExists,
            Error::MemberBadUrls,
            Error::RequestTooLarge,
            Error::NoLeader,
            Error::LeaderChanged,
            Error::NotLeader,
            Error::BadLeaderTransferee,
            Error::Timeout,
            Error::Stopped,
            Error::Unhealthy,
        ];
        KNOWN
            .iter()
            .find(|e| e.to_string() == message)
            .cloned()
            .unwrap_or_else(|| Error::Remote {
                code,
                message: message.to_string(),
            })
    }

    /// Whether a client may safely retry the request elsewhere: the write was
    /// certainly not applied.
    pub fn is_unavailable(&self) -> bool {
        self.code() == Code::Unavailable
    }
}

impl From<Error> for Status {
    fn from(e: Error) -> Status {
        Status::new(e.code(), e.to_string())
    }
}

impl From<Status> for Error {
    fn from(s: Status) -> Error {
        Error::from_parts(s.code() as i32, s.message())
    }
}
