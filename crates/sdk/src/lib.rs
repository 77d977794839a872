//! The Keelson client SDK: typed access to the API server over gRPC, with
//! failover between replicas.
//!
//! # Layout
//! - [`Config`]: endpoints and token (`~/.keelson/config`).
//! - [`Client`]: channels to every endpoint, failover and retries
//!   (idempotent calls retry on any unavailability; writes that must not
//!   run twice retry only when they never left).
//! - [`DynamicApi`]: get, list, create, update, update_status, delete and
//!   watch of any kind (as [`keelson_proto::api::Object`]), with the retry
//!   policy of each verb; [`Api`]: the same, typed (`Api<Pod>`).
//! - [`watcher()`] and [`reflector()`]: a resumable watch and a cache
//!   built on it (one writer, many readers).
//! - [`LeaderElector`]: leader election on a store lease.
//! - [`Recorder`]: Events written in the background, repeats aggregated.
//!
//! # Example
//! ```no_run
//! use keelson_sdk::{Api, Client, ListParams};
//! use keelson_proto::v1::Pod;
//! # async fn run() -> keelson_sdk::Result<()> {
//! let client = Client::from_default_config()?;
//! let pods: Api<Pod> = Api::namespaced(client, "default");
//! for p in pods.list(&ListParams::default().labels("app=web")).await?.items {
//!     println!("{}", p.metadata.unwrap_or_default().name);
//! }
//! # Ok(()) }
//! ```
//! Runnable examples: `cargo run -p keelson-sdk --example list_pods`,
//! `--example watch_pods`, `--example leader`.

pub mod api;
pub mod client;
pub mod config;
pub mod dynamic;
pub mod error;
pub mod events;
pub mod leader;
pub mod leases;
pub mod watcher;

pub use api::{Api, DeleteParams, ListParams, ObjectList, WatchEvent};
pub use client::Client;
pub use config::Config;
pub use dynamic::DynamicApi;
pub use error::{Error, Result};
pub use events::{Involved, Recorder};
pub use keelson_model::{Kind, Resource};
pub use keelson_proto::v1 as types;
pub use leader::{LeaderElector, Leadership};
pub use watcher::{reflector, watcher, Event, Store};
