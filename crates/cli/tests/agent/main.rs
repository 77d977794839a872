//! Real node agents running pods as processes against a 3-replica
//! control plane.

#[path = "../common/mod.rs"]
mod common;

mod disaster_recovery;
mod pods;
mod runc;
