//! The node agent (the kubelet's and kube-proxy's roles). So far: the
//! simulated nodes ([`sim`]) that scale tests, the scheduler's and the
//! controllers' tests and benchmarks run against.

pub mod sim;
