//! Keelson's resource model, shared by the API server, the SDK and the CLI:
//! pure functions over the `keelson_proto::v1` types, no IO.
//!
//! # Layout
//! - [`kinds`]: the kinds, their names and store keys, the [`Resource`]
//!   trait for generic code (`Api<K>`, caches), and an object's controller
//!   ([`controller_of`]).
//! - [`manifest`]: Kubernetes-style YAML/JSON in and out (unknown fields are
//!   errors that name them).
//! - [`selector`]: label selectors (`a=b,c in (x,y),!d`) and field selectors.
//! - [`quantity`]: resource quantities (`100m`, `64Mi`).
//! - [`validation`]: every problem with an object, as a list.
//! - [`defaults`]: the defaults the API server fills in.
//! - [`time`]: timestamps as the API writes them (RFC 3339, to the second),
//!   and ages as kubectl shows them (`3m`, `4d5h`).
//! - [`printers`]: what a table of objects shows per kind (kubectl's
//!   columns and cells), one copy for `keelson get` and the API server's
//!   server-side Tables.
//! - [`schema`]: every type's fields, shapes, docs and patch strategies, from
//!   the compiled `.proto` descriptors (for OpenAPI and strategic merge).
//! - [`strategic`]: Kubernetes' strategic merge patch.
//! - [`pod`]: facts about a pod several parts need (readiness).
//! - [`deployment`]: the rollout's annotations and kubectl's reading of a
//!   rollout (`rollout_status`), shared by the controller and the CLI.

pub mod cidr;
pub mod cron;
pub mod defaults;
pub mod deployment;
pub mod kinds;
pub mod manifest;
pub mod pod;
pub mod printers;
pub mod quantity;
pub mod schema;
pub mod selector;
pub mod strategic;
pub mod time;
pub mod validation;

pub use keelson_proto::api::Object;
pub use kinds::{
    controller_of, controller_reference, decode, encode, kind_of, meta_of, meta_of_mut, Kind,
    Resource,
};
