//! Tokens reload without a restart: a token removed from the tokens file
//! stops working on every replica, a token added starts working, and a
//! file that does not parse leaves the tokens in force as they were.

use crate::common;

use std::time::Duration;

use common::{eventually, serial, start_cluster};
use keelson_sdk::types as v1;
use keelson_sdk::{Api, ListParams};

/// Whether `token` may list namespaces on replica `i` (false on 401).
async fn accepted(c: &common::ProcCluster, i: usize, token: &str) -> bool {
    let client = keelson_sdk::Client::new(&keelson_sdk::Config::new(
        vec![c.members[i].api_endpoint()],
        token,
    ))
    .expect("client");
    let ns: Api<v1::Namespace> = Api::all(client);
    match ns.list(&ListParams::default()).await {
        Ok(_) => true,
        Err(keelson_sdk::Error::Unauthenticated(_)) => false,
        Err(e) => panic!("replica {i}: {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_token_stops_working_on_every_replica_without_a_restart() {
    let _g = serial().await;
    let dir = tempfile::tempdir().unwrap();
    let c = start_cluster(3, dir.path(), &[]).await;
    let viewer = c.token("viewer", None);
    let admin = c.token("admin", None);
    for i in 0..3 {
        assert!(accepted(&c, i, &viewer).await);
    }
    let added = "0123456789abcdef0123456789abcdef".to_string();
    assert!(!accepted(&c, 0, &added).await);

    // The viewer's line goes, a new user's comes.
    let text = std::fs::read_to_string(&c.token_file).unwrap();
    let kept: String = text
        .lines()
        .filter(|l| !l.starts_with(&viewer))
        .map(|l| format!("{l}\n"))
        .collect();
    let next = format!("{kept}{added},carol,viewer\n");
    std::fs::write(&c.token_file, &next).unwrap();
    eventually(
        Duration::from_secs(3),
        "the viewer refused everywhere",
        || async {
            let mut refused = true;
            for i in 0..3 {
                refused &= !accepted(&c, i, &viewer).await;
            }
            refused
        },
    )
    .await;
    for i in 0..3 {
        assert!(
            accepted(&c, i, &added).await,
            "replica {i} takes the new token"
        );
        assert!(accepted(&c, i, &admin).await, "replica {i} keeps the admin");
    }

    // A broken file changes nothing.
    std::fs::write(&c.token_file, format!("{next}not a token line\n")).unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    for i in 0..3 {
        assert!(accepted(&c, i, &added).await);
        assert!(!accepted(&c, i, &viewer).await);
    }
    let log = std::fs::read_to_string(&c.members[0].log_path).unwrap();
    assert!(log.contains("tokens file not reloaded"), "says why");
    assert!(!log.contains(&added), "tokens are never logged");
}
