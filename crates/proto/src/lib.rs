//! Wire types and gRPC services, generated from `proto/`.
//!
//! - [`mvccpb`] and [`etcdserverpb`]: the subset of etcd's v3 API that the
//!   store serves on the client port, with etcd's package names and field
//!   numbers so etcd clients work unchanged.
//! - [`raft`]: Keelson's internal peer protocol (Raft RPCs, forwarded writes
//!   and reads, lease keep-alives), never used by clients.
//!
//! This crate depends on nothing else in the workspace.

#![allow(clippy::all, clippy::pedantic)]

pub mod mvccpb {
    tonic::include_proto!("mvccpb");
}

pub mod etcdserverpb {
    tonic::include_proto!("etcdserverpb");
}

pub mod keelson {
    pub mod raft {
        tonic::include_proto!("keelson.raft");
    }
}

pub use keelson::raft;
