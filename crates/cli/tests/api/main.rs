//! The API server over real replica processes: resources through the SDK
//! (CRUD, auth, watches, failover, TLS, partitions) and node sessions.

#[path = "../common/mod.rs"]
mod common;

mod kubectl;
mod node_session;
mod resources;
