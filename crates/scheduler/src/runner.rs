//! The scheduler's loop, the IO shell around the pure core: while this
//! instance holds the `kube-system/keelson-scheduler` leadership lease it
//! takes the unscheduled pods (highest priority first, then oldest), picks
//! a node for each with [`schedule()`](crate::schedule()) over a snapshot of
//! nodes and bound pods, and binds with a compare-and-swap on the pod's
//! resourceVersion (so a pod is never bound twice, even by two instances).
//! Binds it made but has not yet seen come back are kept as assumed pods,
//! so back-to-back decisions see each other. A pod no node fits gets
//! `PodScheduled=False` with the reasons and a `FailedScheduling` event, and
//! is retried with backoff, or at once when nodes or pods change.

use std::collections::HashMap;
use std::time::Duration;

use keelson_proto::v1;
use keelson_sdk::{reflector, Api, Client, Error, LeaderElector, ListParams, Resource};
use tokio::time::Instant;

use crate::node_info::NodeInfo;

/// The election every scheduler instance runs in.
pub const ELECTION: (&str, &str) = ("kube-system", "keelson-scheduler");
/// Pause between scheduling rounds when nothing changed.
const ROUND_INTERVAL_MS: u64 = 50;
/// Backoff of an unschedulable pod: doubles from the first to the last.
const BACKOFF_FIRST_MS: u64 = 1_000;
const BACKOFF_MAX_MS: u64 = 10_000;
/// How long an assumed binding is trusted without the watch showing it.
const ASSUMED_TTL_MS: u64 = 30_000;

fn key(p: &v1::Pod) -> String {
    format!("{}/{}", p.meta().namespace, p.meta().name)
}

fn pending(p: &v1::Pod) -> bool {
    p.spec.as_ref().is_some_and(|s| s.node_name.is_empty())
        && p.meta().deletion_timestamp.is_empty()
}

/// Run until the task is dropped. `identity` names this instance in the
/// leadership lease.
pub async fn run(client: Client, identity: String) {
    let (leadership, _elector) =
        LeaderElector::new(client.clone(), ELECTION.0, ELECTION.1, &identity).spawn();
    let (nodes, _n) = reflector(Api::<v1::Node>::all(client.clone()), ListParams::default());
    let (pods, _p) = reflector(Api::<v1::Pod>::all(client.clone()), ListParams::default());
    nodes.wait_ready().await;
    pods.wait_ready().await;
    let mut assumed: HashMap<String, (String, Instant)> = HashMap::new();
    let mut backoff: HashMap<String, (Instant, u64)> = HashMap::new();
    let mut last_seen = (0usize, 0usize);
    loop {
        tokio::time::sleep(Duration::from_millis(ROUND_INTERVAL_MS)).await;
        if !leadership.borrow().leading {
            assumed.clear();
            continue;
        }
        let node_list: Vec<v1::Node> = nodes.list().iter().map(|n| (**n).clone()).collect();
        let pod_list: Vec<v1::Pod> = pods.list().iter().map(|p| (**p).clone()).collect();
        // Any change in the cluster: retry the unschedulable at once.
        let fingerprint = (
            node_list.len(),
            pod_list.iter().filter(|p| !pending(p)).count(),
        );
        if fingerprint != last_seen {
            backoff.clear();
            last_seen = fingerprint;
        }
        let now = Instant::now();
        assumed.retain(|k, (_, at)| {
            now.duration_since(*at) < Duration::from_millis(ASSUMED_TTL_MS)
                && pod_list.iter().any(|p| key(p) == *k && pending(p))
        });
        let mut bound: Vec<v1::Pod> = pod_list.iter().filter(|p| !pending(p)).cloned().collect();
        for p in pod_list.iter().filter(|p| pending(p)) {
            if let Some((node, _)) = assumed.get(&key(p)) {
                let mut a = p.clone();
                if let Some(s) = a.spec.as_mut() {
                    s.node_name = node.clone();
                }
                bound.push(a);
            }
        }
        let mut infos: Vec<NodeInfo> = crate::node_info::snapshot(node_list, bound);
        let mut queue: Vec<&v1::Pod> = pod_list
            .iter()
            .filter(|p| pending(p) && !assumed.contains_key(&key(p)))
            .filter(|p| backoff.get(&key(p)).is_none_or(|(until, _)| *until <= now))
            .collect();
        queue.sort_by(|a, b| {
            let prio = |p: &v1::Pod| p.spec.as_ref().and_then(|s| s.priority).unwrap_or(0);
            prio(b).cmp(&prio(a)).then_with(|| {
                a.meta()
                    .creation_timestamp
                    .cmp(&b.meta().creation_timestamp)
            })
        });
        for pod in queue {
            if !leadership.borrow().leading {
                break;
            }
            let api: Api<v1::Pod> = Api::namespaced(client.clone(), &pod.meta().namespace);
            match crate::schedule(pod, &infos) {
                Ok(node) => {
                    let mut b = pod.clone();
                    if let Some(s) = b.spec.as_mut() {
                        s.node_name = node.clone();
                    }
                    match api.update(&b).await {
                        Ok(_) => {
                            tracing::info!(pod = %key(pod), node = %node, "bound");
                            assumed.insert(key(pod), (node.clone(), Instant::now()));
                            backoff.remove(&key(pod));
                            if let Some(info) = infos.iter_mut().find(|i| i.name() == node) {
                                info.add_pod(b.clone());
                            }
                            event(
                                &client,
                                pod,
                                "Normal",
                                "Scheduled",
                                &format!("Successfully assigned {} to {node}", key(pod)),
                            )
                            .await;
                        }
                        Err(Error::Conflict(_)) | Err(Error::NotFound(_)) => {}
                        Err(e) => tracing::warn!(pod = %key(pod), error = %e, "bind"),
                    }
                }
                Err(u) => {
                    let message = u.to_string();
                    let k = key(pod);
                    let next = backoff
                        .get(&k)
                        .map_or(BACKOFF_FIRST_MS, |(_, d)| (d * 2).min(BACKOFF_MAX_MS));
                    backoff.insert(k, (Instant::now() + Duration::from_millis(next), next));
                    mark_unschedulable(&api, pod, &message).await;
                    event(&client, pod, "Warning", "FailedScheduling", &message).await;
                }
            }
        }
    }
}

/// Set `PodScheduled=False` with the reasons (if not already so).
async fn mark_unschedulable(api: &Api<v1::Pod>, pod: &v1::Pod, message: &str) {
    let mut p = pod.clone();
    let status = p.status.get_or_insert_with(Default::default);
    let cond = v1::PodCondition {
        r#type: "PodScheduled".into(),
        status: "False".into(),
        reason: "Unschedulable".into(),
        message: message.to_string(),
        last_transition_time: humantime::format_rfc3339_seconds(std::time::SystemTime::now())
            .to_string(),
        ..Default::default()
    };
    if status
        .conditions
        .iter()
        .any(|c| c.r#type == "PodScheduled" && c.status == "False" && c.message == message)
    {
        return;
    }
    status.conditions.retain(|c| c.r#type != "PodScheduled");
    status.conditions.push(cond);
    if let Err(e) = api.update_status(&p).await {
        tracing::debug!(pod = %key(pod), error = %e, "mark unschedulable");
    }
}

/// Record an event about a pod (best effort).
async fn event(client: &Client, pod: &v1::Pod, typ: &str, reason: &str, message: &str) {
    let ns = pod.meta().namespace.clone();
    let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let e = v1::Event {
        metadata: Some(v1::ObjectMeta {
            generate_name: format!("{}.", pod.meta().name),
            namespace: ns.clone(),
            ..Default::default()
        }),
        involved_object: Some(v1::ObjectReference {
            kind: "Pod".into(),
            namespace: ns.clone(),
            name: pod.meta().name.clone(),
            uid: pod.meta().uid.clone(),
            api_version: "v1".into(),
            ..Default::default()
        }),
        reason: reason.into(),
        message: message.into(),
        r#type: typ.into(),
        source: Some(v1::EventSource {
            component: "keelson-scheduler".into(),
            ..Default::default()
        }),
        first_timestamp: now.clone(),
        last_timestamp: now,
        count: 1,
        ..Default::default()
    };
    let api: Api<v1::Event> = Api::namespaced(client.clone(), &ns);
    if let Err(e) = api.create(&e).await {
        tracing::debug!(error = %e, "record event");
    }
}
