//! Kubernetes' `ControllerExpectations`, and the pod writes they follow
//! ([`write_pods`]), shared by the controllers that create and delete
//! pods (ReplicaSets, Jobs, DaemonSets, StatefulSets): after writing
//! pods for an owner, the owner is not decided on again until the pod
//! cache shows those creates and deletes (or [`TIMEOUT`] passes), so a
//! lagging cache never makes a controller create the same pods twice.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use keelson_proto::v1;
use keelson_sdk::watcher::Map;
use keelson_sdk::{DeleteParams, Error, Involved, Resource};

use crate::{concurrently, Ctx};

/// How long an owner waits for its cache to show its own writes.
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// The pods (keys `namespace/name`) an owner created and deleted.
pub struct Expect {
    pub adds: HashSet<String>,
    pub deletes: HashSet<String>,
    pub deadline: Instant,
}

impl Expect {
    pub fn new(adds: HashSet<String>, deletes: HashSet<String>) -> Expect {
        Expect {
            adds,
            deletes,
            deadline: Instant::now() + TIMEOUT,
        }
    }
}

/// Forget the expectations the cache `pods` now meets, and those timed
/// out (by owner uid).
pub fn prune(expectations: &mut HashMap<String, Expect>, pods: &Map<v1::Pod>, now: Instant) {
    expectations.retain(|_, e| {
        let adds_seen = e.adds.iter().all(|k| pods.contains_key(k));
        let deletes_seen = e.deletes.iter().all(|k| {
            pods.get(k)
                .is_none_or(|p| !p.meta().deletion_timestamp.is_empty())
        });
        !(adds_seen && deletes_seen) && now < e.deadline
    });
}

/// Create and delete an owner's pods (each write checking leadership
/// first, so an instance that lost its lease stops within one request),
/// with Kubernetes' events (`SuccessfulCreate`, `FailedCreate`,
/// `SuccessfulDelete`) on `involved`: what to expect of the cache, and
/// the first failure. A pod already gone counts as deleted.
pub async fn write_pods(
    ctx: &Ctx,
    involved: &Involved,
    ns: &str,
    creates: Vec<v1::Pod>,
    deletes: Vec<(String, DeleteParams)>,
) -> (Expect, keelson_sdk::Result<()>) {
    let pods = ctx.api::<v1::Pod>(ns);
    // Each write: Ok(Some(name)) done, Ok(None) not tried (leadership lost).
    let created = concurrently(creates, |p| {
        let (pods, involved) = (pods.clone(), involved.clone());
        async move {
            if !ctx.leading() {
                return Ok(None);
            }
            match pods.create(&p).await {
                Ok(c) => {
                    let name = c.meta().name.clone();
                    let msg = format!("Created pod: {name}");
                    ctx.recorder
                        .record(involved, "Normal", "SuccessfulCreate", &msg);
                    Ok(Some(name))
                }
                Err(e) => {
                    let msg = format!("Error creating: {e}");
                    ctx.recorder
                        .record(involved, "Warning", "FailedCreate", &msg);
                    Err(e)
                }
            }
        }
    })
    .await;
    let deleted = concurrently(deletes, |(name, dp)| {
        let (pods, involved) = (pods.clone(), involved.clone());
        async move {
            if !ctx.leading() {
                return Ok(None);
            }
            match pods.delete(&name, &dp).await {
                Ok(_) | Err(Error::NotFound(_)) => {
                    let msg = format!("Deleted pod: {name}");
                    ctx.recorder
                        .record(involved, "Normal", "SuccessfulDelete", &msg);
                    Ok(Some(name))
                }
                Err(e) => Err(e),
            }
        }
    })
    .await;
    let mut result = Ok(());
    // The pods written, as pod-cache keys; the first failure goes to `result`.
    let mut written = |writes: Vec<keelson_sdk::Result<Option<String>>>| -> HashSet<String> {
        let mut keys = HashSet::new();
        for w in writes {
            match w {
                Ok(Some(name)) => {
                    keys.insert(format!("{ns}/{name}"));
                }
                Ok(None) => {}
                Err(e) => {
                    if result.is_ok() {
                        result = Err(e);
                    }
                }
            }
        }
        keys
    };
    let expect = Expect::new(written(created), written(deleted));
    (expect, result)
}
