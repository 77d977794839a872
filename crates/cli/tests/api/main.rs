//! The API server over real replica processes: resources through the SDK
//! (CRUD, auth, watches, failover, TLS, partitions), node sessions, and
//! the Kubernetes HTTP API judged by kubectl and kube-rs.

#[path = "../common/mod.rs"]
mod common;

mod audit;
mod config;
mod connections;
mod custom_resources;
mod kube_rs;
mod kubectl;
mod node_session;
mod resources;
mod token_reload;
