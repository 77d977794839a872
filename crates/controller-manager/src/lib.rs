//! The controller manager: the IO shell that runs Keelson's pure
//! controllers ([`keelson_controllers`]) against the API server.
//!
//! One instance in the cluster acts at a time: every instance campaigns
//! for the `kube-system/keelson-controller-manager` leadership lease
//! ([`keelson_sdk::LeaderElector`], short TTL) and only the holder writes.
//! All instances keep their caches warm (reflectors over pods, ReplicaSets,
//! Deployments, nodes, node heartbeat leases, Services and Endpoints), so a
//! new leader acts within a lease TTL of the old one's death.
//!
//! Each controller is a loop ([`run`] spawns them): wake on a change to
//! the caches it reads (or a periodic resync, for time-based decisions),
//! wait a few milliseconds to batch changes, call the pure `reconcile` for
//! each object, and carry out the actions. Writes to existing objects are
//! compare-and-swap on the resourceVersion the decision was made from, so
//! a decision from a stale cache fails instead of overwriting.
//!
//! # Layout
//! - [`replicasets`]: pods for ReplicaSets, with create/delete expectations.
//! - [`deployments`]: ReplicaSets for Deployments (rolling update, recreate).
//! - [`endpoints`]: Endpoints of Services from their ready pods.
//! - [`gc`]: ownerReference garbage collection (background, foreground,
//!   orphan).
//! - [`nodes`]: node lifecycle (heartbeat leases -> Ready=Unknown, taints,
//!   evictions).

use std::sync::Arc;
use std::time::Duration;

use keelson_controllers::nodelifecycle;
use keelson_proto::v1;
use keelson_sdk::{
    reflector, Api, Client, LeaderElector, Leadership, ListParams, Recorder, Resource, Store,
};
use tokio::sync::watch;

/// The node lifecycle controller's settings ([`Options::node`]), for
/// callers that configure an instance without the controllers crate.
pub use keelson_controllers::nodelifecycle::Config as NodeLifecycleConfig;

pub mod deployments;
pub mod endpoints;
pub mod gc;
pub mod nodes;
pub mod replicasets;

/// The election every controller-manager instance runs in.
pub const ELECTION: (&str, &str) = ("kube-system", "keelson-controller-manager");
/// TTL of the leadership lease, in seconds: a dead leader is replaced
/// within about this long (plus a Raft election when it also led the
/// store, whose new leader gives every lease a full TTL).
pub const LEASE_TTL_SECS: i64 = 2;
/// The component name in events.
pub const COMPONENT: &str = "keelson-controller-manager";
/// Namespace of the nodes' heartbeat Lease objects.
pub const NODE_LEASE_NAMESPACE: &str = "kube-node-lease";
/// Writes one controller has in flight at once.
const WRITES_IN_FLIGHT: usize = 32;
/// Pause after a wake-up before a pass, so a burst of changes is one pass.
const BATCH_MS: u64 = 20;

/// Tuning of a controller-manager instance.
#[derive(Clone, Debug)]
pub struct Options {
    /// Names this instance in the leadership lease.
    pub identity: String,
    /// Node lifecycle: heartbeat silence before a node is marked, and the
    /// default eviction delay.
    pub node: nodelifecycle::Config,
}

impl Options {
    pub fn new(identity: &str) -> Options {
        Options {
            identity: identity.to_string(),
            node: nodelifecycle::Config::default(),
        }
    }
}

/// What every controller loop shares.
pub struct Ctx {
    pub client: Client,
    pub recorder: Recorder,
    pub leadership: watch::Receiver<Leadership>,
    pub pods: Store<v1::Pod>,
    pub replicasets: Store<v1::ReplicaSet>,
    pub deployments: Store<v1::Deployment>,
    pub nodes: Store<v1::Node>,
    pub node_leases: Store<v1::Lease>,
    pub services: Store<v1::Service>,
    pub endpoints: Store<v1::Endpoints>,
    pub options: Options,
}

impl Ctx {
    pub fn leading(&self) -> bool {
        self.leadership.borrow().leading
    }

    pub fn api<K: Resource>(&self, namespace: &str) -> Api<K> {
        if K::KIND.namespaced() {
            Api::namespaced(self.client.clone(), namespace)
        } else {
            Api::all(self.client.clone())
        }
    }

    /// Wait until one of `changes` moves, leadership changes, or `resync`
    /// passes; then a short batching pause. Returns whether this instance
    /// leads (act only then).
    pub async fn wait_for_work(
        &self,
        changes: &mut [watch::Receiver<u64>],
        leadership: &mut watch::Receiver<Leadership>,
        resync: Duration,
    ) -> bool {
        {
            let any_change =
                futures::future::select_all(changes.iter_mut().map(|c| Box::pin(c.changed())));
            tokio::select! {
                (r, _, _) = any_change => {
                    if r.is_err() {
                        tokio::time::sleep(resync).await;
                    }
                }
                _ = leadership.changed() => {}
                _ = tokio::time::sleep(resync) => {}
            }
        }
        tokio::time::sleep(Duration::from_millis(BATCH_MS)).await;
        for c in changes.iter_mut() {
            c.borrow_and_update();
        }
        self.leading()
    }
}

/// Run every controller until the returned handles are dropped... or
/// forever: this future completes only if the leader elector stops.
pub async fn run(client: Client, options: Options) {
    let (leadership, _elector) =
        LeaderElector::new(client.clone(), ELECTION.0, ELECTION.1, &options.identity)
            .ttl(LEASE_TTL_SECS)
            .spawn();
    let all = ListParams::default();
    let (pods, _t1) = reflector(Api::<v1::Pod>::all(client.clone()), all.clone());
    let (replicasets, _t2) = reflector(Api::<v1::ReplicaSet>::all(client.clone()), all.clone());
    let (deployments, _t3) = reflector(Api::<v1::Deployment>::all(client.clone()), all.clone());
    let (nodes, _t4) = reflector(Api::<v1::Node>::all(client.clone()), all.clone());
    let (node_leases, _t5) = reflector(
        Api::<v1::Lease>::namespaced(client.clone(), NODE_LEASE_NAMESPACE),
        all.clone(),
    );
    let (services, _t6) = reflector(Api::<v1::Service>::all(client.clone()), all.clone());
    let (endpoints, _t7) = reflector(Api::<v1::Endpoints>::all(client.clone()), all);
    pods.wait_ready().await;
    replicasets.wait_ready().await;
    deployments.wait_ready().await;
    nodes.wait_ready().await;
    node_leases.wait_ready().await;
    services.wait_ready().await;
    endpoints.wait_ready().await;
    let ctx = Arc::new(Ctx {
        recorder: Recorder::new(client.clone(), COMPONENT),
        client,
        leadership: leadership.clone(),
        pods,
        replicasets,
        deployments,
        nodes,
        node_leases,
        services,
        endpoints,
        options,
    });
    // The loops and reflectors live exactly as long as this future: when
    // it is dropped they are aborted, the leadership receivers go, and the
    // elector gives the lease back.
    let _reflectors = AbortOnDrop(vec![_t1, _t2, _t3, _t4, _t5, _t6, _t7]);
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(replicasets::run(ctx.clone()));
    tasks.spawn(deployments::run(ctx.clone()));
    tasks.spawn(endpoints::run(ctx.clone()));
    tasks.spawn(gc::run(ctx.clone()));
    tasks.spawn(nodes::run(ctx.clone()));
    drop(ctx);
    while let Some(r) = tasks.join_next().await {
        if let Err(e) = r {
            tracing::error!(error = %e, "controller task ended");
        }
    }
}

/// Aborts its tasks when dropped.
struct AbortOnDrop(Vec<tokio::task::JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

/// Run `f` over `items` with at most [`WRITES_IN_FLIGHT`] at once,
/// collecting the results.
pub(crate) async fn concurrently<T, R, F, Fut>(items: Vec<T>, f: F) -> Vec<R>
where
    F: Fn(T) -> Fut,
    Fut: std::future::Future<Output = R>,
{
    use futures::StreamExt;
    futures::stream::iter(items.into_iter().map(f))
        .buffer_unordered(WRITES_IN_FLIGHT)
        .collect()
        .await
}
