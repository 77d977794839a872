//! Watch pods across every namespace, surviving replica failures:
//! `cargo run -p keelson-sdk --example watch_pods` (Ctrl-C to stop).

use futures::StreamExt;
use keelson_sdk::types::Pod;
use keelson_sdk::{watcher, Api, Client, Event, ListParams, Resource};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let client = Client::from_default_config()?;
    let pods: Api<Pod> = Api::all(client);
    let mut events = Box::pin(watcher(pods, ListParams::default()));
    while let Some(ev) = events.next().await {
        match ev? {
            Event::Restarted(all) => println!("(re)listed: {} pods", all.len()),
            Event::Applied(p) => {
                println!("applied {} rv={}", p.meta().name, p.meta().resource_version)
            }
            Event::Deleted(p) => println!("deleted {}", p.meta().name),
        }
    }
    Ok(())
}
