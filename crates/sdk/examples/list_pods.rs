//! List the pods of a namespace: `cargo run -p keelson-sdk --example list_pods [namespace]`
//! (uses `$KEELSON_CONFIG` or `~/.keelson/config`).

use keelson_sdk::types::Pod;
use keelson_sdk::{Api, Client, ListParams};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let ns = std::env::args().nth(1).unwrap_or_else(|| "default".into());
    let client = Client::from_default_config()?;
    let pods: Api<Pod> = Api::namespaced(client, &ns);
    let list = pods.list(&ListParams::default()).await?;
    println!(
        "{} pods in {ns} at resourceVersion {}",
        list.items.len(),
        list.resource_version
    );
    for p in list.items {
        let m = p.metadata.unwrap_or_default();
        let phase = p.status.map(|s| s.phase).unwrap_or_default();
        println!("{}\t{}", m.name, phase);
    }
    Ok(())
}
