//! The store over real replica processes: etcd API semantics (api), etcd's
//! own client (etcdctl), and faults (SIGKILL, snapshots, restarts,
//! membership).

#[path = "../common/mod.rs"]
mod common;

mod api;
mod etcdctl;
mod faults;
mod upgrade;
