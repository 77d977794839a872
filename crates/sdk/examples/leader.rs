//! Campaign for leadership of an election and report changes:
//! `cargo run -p keelson-sdk --example leader -- my-election my-identity`.
//! Run it twice and stop the leader: the other takes over within the TTL.

use keelson_sdk::{Client, LeaderElector};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let election = args.next().unwrap_or_else(|| "example".into());
    let identity = args
        .next()
        .unwrap_or_else(|| format!("pid-{}", std::process::id()));
    let client = Client::from_default_config()?;
    let (mut rx, _task) = LeaderElector::new(client, "kube-system", &election, &identity).spawn();
    loop {
        let l = rx.borrow_and_update().clone();
        println!("leading={} holder={:?}", l.leading, l.holder);
        if rx.changed().await.is_err() {
            return Ok(());
        }
    }
}
