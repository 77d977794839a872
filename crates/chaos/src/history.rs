//! What the workloads record: every operation with its invocation and
//! completion times and what the client learned.

use serde::{Deserialize, Serialize};

/// An operation on one key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum OpKind {
    /// A linearizable read.
    Read,
    /// A write of a value no one else writes.
    Write { value: String },
    /// Write `new` if the value is `expect` (None: the key is absent).
    Cas { expect: Option<String>, new: String },
}

/// What the client learned.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// A read's answer.
    Read(Option<String>),
    /// A write acknowledged.
    Ok,
    /// A compare-and-swap's answer: whether it swapped.
    Swapped(bool),
    /// Known not to have happened (refused before it was sent).
    Failed,
    /// The client cannot know (a timeout, a connection lost in flight).
    Unknown,
}

impl Outcome {
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Read(_) | Outcome::Ok | Outcome::Swapped(_) => "ok",
            Outcome::Failed => "failed",
            Outcome::Unknown => "indeterminate",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Op {
    pub client: usize,
    pub key: String,
    pub kind: OpKind,
    /// Nanoseconds since the start of the run.
    pub invoke_ns: u64,
    /// None while in flight (or never answered).
    pub complete_ns: Option<u64>,
    pub outcome: Outcome,
    /// The store revision the answer carried (0: none).
    pub revision: i64,
}
