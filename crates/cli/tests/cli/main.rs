//! The `keelson` binary as users run it: client verbs, `keelson up` end to
//! end, and README.md's tour.

#[path = "../common/mod.rs"]
mod common;

mod readme_tour;
mod up;
mod verbs;
