//! Library side of the `keelson` binary: helpers shared by the binary's
//! benchmarks and the integration tests (a local cluster of real
//! processes on loopback).

pub mod cluster;
pub mod faultnet;
