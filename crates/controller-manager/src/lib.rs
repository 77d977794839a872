//! The controller manager: the IO shell that runs Keelson's pure
//! controllers ([`keelson_controllers`]) against the API server.
//!
//! One instance in the cluster acts at a time: every instance campaigns
//! for the `kube-system/keelson-controller-manager` leadership lease
//! ([`keelson_sdk::LeaderElector`], short TTL) and only the holder writes.
//! All instances keep their caches warm (reflectors over pods, ReplicaSets,
//! Deployments, DaemonSets, StatefulSets, ControllerRevisions, Jobs,
//! CronJobs, ConfigMaps, Secrets, namespaces, ServiceAccounts, nodes, node
//! heartbeat leases, Services and Endpoints), so a
//! new leader acts within a lease TTL of the old one's death.
//!
//! Every controller runs in the same loop,
//! [`controller::run_controller`] ([`run`] spawns one per controller): wake
//! on a change to the caches it reads, a periodic resync (for time-based
//! decisions), or an object's retry coming due; wait [`controller::BATCH_MS`]
//! to batch changes; then, while leading, a pass that calls the pure
//! `reconcile` for each object and carries out the actions. Writes to
//! existing objects are compare-and-swap on the resourceVersion the decision
//! was made from, so a decision from a stale cache fails instead of
//! overwriting.
//!
//! **Retries** (kube-rs' `error_policy`, client-go's rate-limited
//! workqueue): a pass reports per object (`namespace/name`, or
//! `Kind/namespace/name` where kinds mix) whether its writes succeeded. A
//! failure (a conflict, an unavailable API, a ReplicaSet's failed create...)
//! makes the object wait out a back-off, 50 ms doubling to 1 s
//! ([`retry::RETRY_BASE_MS`], [`retry::RETRY_MAX_MS`]): passes skip it until
//! then, and the loop wakes when it is due. A success forgets the back-off.
//! NotFound and AlreadyExists where the write's aim is already met count
//! as success. The bookkeeping is the pure [`retry::Retries`]; each failure
//! is logged once, by the loop, with the object's key.
//!
//! # Layout
//! - [`controller`]: the [`controller::Controller`] trait and the loop.
//! - [`retry`]: per-object back-off.
//! - [`replicasets`]: pods for ReplicaSets, with create/delete expectations.
//! - [`deployments`]: ReplicaSets for Deployments (rolling update, recreate).
//! - [`endpoints`]: Endpoints of Services from their ready pods.
//! - [`cronjobs`]: a Job per CronJob schedule time, never two.
//! - [`daemonsets`]: a pod per eligible node, rolled out within
//!   maxUnavailable.
//! - [`serviceaccounts`]: a `default` ServiceAccount in every namespace.
//! - [`statefulsets`]: pods `<set>-<ordinal>` in order, their revisions as
//!   ControllerRevisions, rolled out from the highest ordinal.
//! - [`gc`]: ownerReference garbage collection (background, foreground,
//!   orphan).
//! - [`jobs`]: pods for Jobs, each finished pod counted once.
//! - [`nodes`]: node lifecycle (heartbeat leases -> Ready=Unknown, taints,
//!   evictions).

use std::sync::Arc;

use keelson_controllers::nodelifecycle;
use keelson_proto::v1;
use keelson_sdk::{
    reflector, Api, Client, LeaderElector, Leadership, ListParams, Recorder, Resource, Store,
};
use tokio::sync::watch;

use crate::controller::run_controller;

/// The node lifecycle controller's settings ([`Options::node`]), for
/// callers that configure an instance without the controllers crate.
pub use keelson_controllers::nodelifecycle::Config as NodeLifecycleConfig;

pub mod controller;
pub mod cronjobs;
pub mod daemonsets;
pub mod deployments;
pub mod endpoints;
pub mod expectations;
pub mod gc;
pub mod history;
pub mod jobs;
pub mod nodeipam;
pub mod nodes;
pub mod replicasets;
pub mod retry;
pub mod serviceaccounts;
pub mod statefulsets;

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

/// Tuning of a controller-manager instance.
#[derive(Clone, Debug)]
pub struct Options {
    /// Names this instance in the leadership lease.
    pub identity: String,
    /// Node lifecycle: heartbeat silence before a node is marked, and the
    /// default eviction delay.
    pub node: nodelifecycle::Config,
    /// Pod addresses of the whole cluster: each node gets a subnet of it
    /// (`spec.podCIDR`) of prefix length `node_cidr_mask`.
    pub cluster_cidr: keelson_model::cidr::Cidr,
    pub node_cidr_mask: u8,
}

impl Options {
    pub fn new(identity: &str) -> Options {
        Options {
            identity: identity.to_string(),
            node: nodelifecycle::Config::default(),
            cluster_cidr: keelson_model::cidr::Cidr {
                net: std::net::Ipv4Addr::new(10, 244, 0, 0),
                len: 16,
            },
            node_cidr_mask: 24,
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
    pub jobs: Store<v1::Job>,
    pub cronjobs: Store<v1::CronJob>,
    pub daemonsets: Store<v1::DaemonSet>,
    pub statefulsets: Store<v1::StatefulSet>,
    /// ControllerRevisions (the StatefulSets' template history).
    pub revisions: Store<v1::ControllerRevision>,
    pub namespaces: Store<v1::Namespace>,
    pub serviceaccounts: Store<v1::ServiceAccount>,
    /// For the garbage collector's graph (dependents by ownerReference).
    pub configmaps: Store<v1::ConfigMap>,
    pub secrets: Store<v1::Secret>,
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
    let (endpoints, _t7) = reflector(Api::<v1::Endpoints>::all(client.clone()), all.clone());
    let (jobs, _t8) = reflector(Api::<v1::Job>::all(client.clone()), all.clone());
    let (cronjobs, _t9) = reflector(Api::<v1::CronJob>::all(client.clone()), all.clone());
    let (daemonsets, _t10) = reflector(Api::<v1::DaemonSet>::all(client.clone()), all.clone());
    let (configmaps, _t11) = reflector(Api::<v1::ConfigMap>::all(client.clone()), all.clone());
    let (secrets, _t12) = reflector(Api::<v1::Secret>::all(client.clone()), all.clone());
    let (statefulsets, _t13) = reflector(Api::<v1::StatefulSet>::all(client.clone()), all.clone());
    let (revisions, _t14) = reflector(
        Api::<v1::ControllerRevision>::all(client.clone()),
        all.clone(),
    );
    let (namespaces, _t15) = reflector(Api::<v1::Namespace>::all(client.clone()), all.clone());
    let (serviceaccounts, _t16) = reflector(Api::<v1::ServiceAccount>::all(client.clone()), all);
    pods.wait_ready().await;
    replicasets.wait_ready().await;
    deployments.wait_ready().await;
    nodes.wait_ready().await;
    node_leases.wait_ready().await;
    services.wait_ready().await;
    endpoints.wait_ready().await;
    jobs.wait_ready().await;
    cronjobs.wait_ready().await;
    daemonsets.wait_ready().await;
    configmaps.wait_ready().await;
    secrets.wait_ready().await;
    statefulsets.wait_ready().await;
    revisions.wait_ready().await;
    namespaces.wait_ready().await;
    serviceaccounts.wait_ready().await;
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
        jobs,
        cronjobs,
        daemonsets,
        statefulsets,
        revisions,
        namespaces,
        serviceaccounts,
        configmaps,
        secrets,
        options,
    });
    // The loops and reflectors live exactly as long as this future: when
    // it is dropped they are aborted, the leadership receivers go, and the
    // elector gives the lease back.
    let _reflectors = AbortOnDrop(vec![
        _t1, _t2, _t3, _t4, _t5, _t6, _t7, _t8, _t9, _t10, _t11, _t12, _t13, _t14, _t15, _t16,
    ]);
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(run_controller(
        ctx.clone(),
        replicasets::ReplicaSets::default(),
    ));
    tasks.spawn(run_controller(ctx.clone(), deployments::Deployments));
    tasks.spawn(run_controller(ctx.clone(), cronjobs::CronJobs::default()));
    tasks.spawn(run_controller(
        ctx.clone(),
        daemonsets::DaemonSets::default(),
    ));
    tasks.spawn(run_controller(
        ctx.clone(),
        statefulsets::StatefulSets::default(),
    ));
    tasks.spawn(run_controller(ctx.clone(), endpoints::Endpoints));
    tasks.spawn(run_controller(
        ctx.clone(),
        serviceaccounts::ServiceAccounts,
    ));
    tasks.spawn(run_controller(ctx.clone(), gc::GarbageCollector));
    tasks.spawn(run_controller(ctx.clone(), jobs::Jobs::default()));
    tasks.spawn(run_controller(ctx.clone(), nodes::NodeLifecycle::default()));
    tasks.spawn(run_controller(ctx.clone(), nodeipam::NodeIpam));
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

/// Cached objects grouped by namespace (borrowed from the cache's
/// snapshot).
pub(crate) fn by_namespace<'a, K: Resource + 'a>(
    objects: impl IntoIterator<Item = &'a K>,
) -> std::collections::HashMap<&'a str, Vec<&'a K>> {
    let mut out: std::collections::HashMap<&str, Vec<&K>> = std::collections::HashMap::new();
    for o in objects {
        out.entry(o.meta().namespace.as_str()).or_default().push(o);
    }
    out
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
