//! Keelson's resource model, shared by the API server, the SDK and the CLI:
//! pure functions over the `keelson_proto::v1` types, no IO.
//!
//! # Layout
//! - [`kinds`]: the kinds, their names and store keys, and the [`Resource`]
//!   trait for generic code (`Api<K>`, caches).
//! - [`manifest`]: Kubernetes-style YAML/JSON in and out (unknown fields are
//!   errors that name them).
//! - [`selector`]: label selectors (`a=b,c in (x,y),!d`) and field selectors.
//! - [`quantity`]: resource quantities (`100m`, `64Mi`).
//! - [`validation`]: every problem with an object, as a list.
//! - [`defaults`]: the defaults the API server fills in.

pub mod defaults;
pub mod kinds;
pub mod manifest;
pub mod quantity;
pub mod selector;
pub mod validation;

pub use keelson_proto::api::Object;
pub use kinds::{decode, encode, kind_of, meta_of, meta_of_mut, Kind, Resource};
