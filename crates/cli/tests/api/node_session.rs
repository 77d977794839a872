//! `Nodes.Session` against 3 replica processes, over raw gRPC with node
//! tokens: who may open a session (its own node, its own lease; not a
//! viewer), the pod list ending with a BOOKMARK, heartbeats renewing the
//! lease (ttl 0 once it is revoked), batched statuses written with one
//! result per pod (another node's pod refused), and a session reopened on
//! another replica after the first one was SIGKILLed resuming from the
//! last revision seen: every change made meanwhile, nothing else.

use crate::common;

use std::time::Duration;

use common::{admin_client, fixtures, serial, start_cluster};
use keelson_proto::api::node_session_down::Msg as Down;
use keelson_proto::api::node_session_up::Msg as Up;
use keelson_proto::api::nodes_client::NodesClient;
use keelson_proto::api::{
    NodeHeartbeat, NodeHello, NodeSessionDown, NodeSessionUp, PodStatusBatch, WatchEvent,
};
use keelson_sdk::types::{self as v1};
use keelson_sdk::{leases, Api, DeleteParams, Resource};
use prost::Message;
use tokio::sync::mpsc;
use tonic::{Code, Streaming};

fn pod(name: &str, node: &str) -> v1::Pod {
    fixtures::pod(name).node(node).build()
}

fn hello(node: &str, lease_id: i64, rv: &str) -> NodeSessionUp {
    NodeSessionUp {
        msg: Some(Up::Hello(NodeHello {
            node: node.into(),
            lease_id,
            resource_version: rv.into(),
        })),
    }
}

type Session = (mpsc::Sender<NodeSessionUp>, Streaming<NodeSessionDown>);

async fn open(endpoint: &str, token: &str, first: NodeSessionUp) -> Result<Session, tonic::Status> {
    let ch = common::channel(endpoint).expect("channel");
    let (tx, rx) = mpsc::channel(16);
    tx.send(first).await.expect("queue the hello");
    let mut req = tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(rx));
    req.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("header"),
    );
    let res = NodesClient::new(ch).session(req).await?;
    Ok((tx, res.into_inner()))
}

/// Messages until `done` says so (10 s at most); all of them.
async fn until(
    s: &mut Streaming<NodeSessionDown>,
    mut done: impl FnMut(&Down) -> bool,
) -> Vec<Down> {
    let mut seen = Vec::new();
    loop {
        let m = tokio::time::timeout(Duration::from_secs(10), s.message())
            .await
            .unwrap_or_else(|_| panic!("no message within 10 s; seen {seen:?}"))
            .expect("stream ok")
            .expect("stream open");
        let Some(d) = m.msg else { continue };
        let stop = done(&d);
        seen.push(d);
        if stop {
            return seen;
        }
    }
}

/// (type, pod name, resourceVersion) of the pod events among `msgs`.
fn pod_events(msgs: &[Down]) -> Vec<(String, String, String)> {
    msgs.iter()
        .filter_map(|m| match m {
            Down::Pod(WatchEvent {
                r#type,
                object,
                resource_version,
            }) => {
                let name = keelson_proto::api::Object::decode(object.as_slice())
                    .ok()
                    .and_then(v1::Pod::from_object)
                    .map(|p| p.meta().name.clone())
                    .unwrap_or_default();
                Some((r#type.clone(), name, resource_version.clone()))
            }
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_sessions_authorize_list_heartbeat_write_and_resume() {
    let _g = serial().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut c = start_cluster(3, dir.path(), &[]).await;
    let admin = admin_client(&c);
    let n1 = c.token("node", Some("n1"));
    let viewer = c.token("viewer", None);
    let ep0 = c.members[0].api_endpoint();

    // n1's heartbeat lease, with its Lease object attached.
    let lease = leases::grant(&admin, 30).await.expect("grant");
    let node_leases: Api<v1::Lease> = Api::namespaced(admin.clone(), "kube-node-lease");
    let mut obj = v1::Lease::default();
    obj.meta_mut().name = "n1".into();
    node_leases
        .create_with_lease(&obj, lease)
        .await
        .expect("n1's Lease");
    let pods: Api<v1::Pod> = Api::namespaced(admin.clone(), "default");
    pods.create(&pod("a", "n1")).await.expect("pod a");
    pods.create(&pod("x", "n2")).await.expect("pod x");

    // Who may open which session.
    let code = |r: Result<Session, tonic::Status>| r.err().map(|e| e.code());
    assert_eq!(
        code(open(&ep0, &viewer, hello("n1", lease, "")).await),
        Some(Code::PermissionDenied)
    );
    assert_eq!(
        code(open(&ep0, &n1, hello("n2", lease, "")).await),
        Some(Code::PermissionDenied),
        "a node token speaks only for its node"
    );
    assert_eq!(
        code(open(&ep0, &n1, hello("", lease + 1, "")).await),
        Some(Code::FailedPrecondition),
        "only the lease n1's Lease object is attached to"
    );
    let heartbeat_first = NodeSessionUp {
        msg: Some(Up::Heartbeat(NodeHeartbeat { seq: 1 })),
    };
    assert_eq!(
        code(open(&ep0, &n1, heartbeat_first).await),
        Some(Code::InvalidArgument)
    );

    // A fresh session: n1's pods, then a BOOKMARK.
    let (tx, mut rx) = open(&ep0, &n1, hello("", lease, ""))
        .await
        .expect("session");
    let msgs = until(
        &mut rx,
        |m| matches!(m, Down::Pod(e) if e.r#type == "BOOKMARK"),
    )
    .await;
    let evs = pod_events(&msgs);
    assert_eq!(
        evs.iter()
            .map(|(t, n, _)| format!("{t} {n}"))
            .collect::<Vec<_>>(),
        ["ADDED a", "BOOKMARK "]
    );
    assert!(
        !evs[1].2.is_empty(),
        "the BOOKMARK carries the list's revision"
    );

    // Heartbeats renew the lease.
    tx.send(NodeSessionUp {
        msg: Some(Up::Heartbeat(NodeHeartbeat { seq: 7 })),
    })
    .await
    .expect("send");
    let msgs = until(&mut rx, |m| matches!(m, Down::Heartbeat(_))).await;
    match msgs.last() {
        Some(Down::Heartbeat(a)) => {
            assert_eq!(a.seq, 7);
            assert!(a.ttl_seconds > 0 && a.ttl_seconds <= 30, "{a:?}");
        }
        other => panic!("a heartbeat ack, not {other:?}"),
    }

    // A batch of statuses: n1's own pod written, n2's refused.
    let mut a = pods.get("a").await.expect("a");
    a.status = Some(v1::PodStatus {
        phase: "Running".into(),
        ..Default::default()
    });
    let mut x = pods.get("x").await.expect("x");
    x.status = Some(v1::PodStatus {
        phase: "Running".into(),
        ..Default::default()
    });
    tx.send(NodeSessionUp {
        msg: Some(Up::Statuses(PodStatusBatch {
            seq: 9,
            pods: vec![a, x],
        })),
    })
    .await
    .expect("send");
    // The batch's result and our own write coming back as a change of a,
    // in either order.
    let (mut result, mut modified) = (None, false);
    let msgs = until(&mut rx, |m| {
        match m {
            Down::Statuses(r) => result = Some(r.clone()),
            Down::Pod(e) if e.r#type == "MODIFIED" => modified = true,
            _ => {}
        }
        result.is_some() && modified
    })
    .await;
    let r = result.expect("a batch result");
    assert_eq!(r.seq, 9);
    assert_eq!(r.errors.len(), 2);
    assert!(r.errors[0].is_empty(), "{:?}", r.errors);
    assert!(
        !r.errors[1].is_empty(),
        "n2's pod is refused: {:?}",
        r.errors
    );
    let status = |p: &v1::Pod| {
        p.status
            .as_ref()
            .map(|s| s.phase.clone())
            .unwrap_or_default()
    };
    assert_eq!(status(&pods.get("a").await.expect("a")), "Running");
    assert_ne!(status(&pods.get("x").await.expect("x")), "Running");
    let evs = pod_events(&msgs);
    let (_, name, rv) = evs.last().expect("a's change");
    assert_eq!(name, "a");
    let last_rv = rv.clone();

    // The agent loses its replica; meanwhile b is bound to n1, a deleted,
    // y bound to n2. Resumed on another replica: b and a's deletion only.
    drop(tx);
    drop(rx);
    c.kill(0);
    pods.create(&pod("b", "n1")).await.expect("pod b");
    pods.delete(
        "a",
        &DeleteParams {
            grace_period_seconds: Some(0),
            ..Default::default()
        },
    )
    .await
    .expect("delete a");
    pods.create(&pod("y", "n2")).await.expect("pod y");
    let ep1 = c.members[1].api_endpoint();
    let (tx, mut rx) = open(&ep1, &n1, hello("", lease, &last_rv))
        .await
        .expect("resumed session");
    let msgs = until(
        &mut rx,
        |m| matches!(m, Down::Pod(e) if e.r#type == "DELETED"),
    )
    .await;
    assert_eq!(
        pod_events(&msgs)
            .iter()
            .map(|(t, n, _)| format!("{t} {n}"))
            .collect::<Vec<_>>(),
        ["ADDED b", "DELETED a"],
        "every change since the last revision seen, nothing else"
    );

    // The lease revoked: the next heartbeat says ttl 0.
    leases::revoke(&admin, lease).await.expect("revoke");
    tx.send(NodeSessionUp {
        msg: Some(Up::Heartbeat(NodeHeartbeat { seq: 8 })),
    })
    .await
    .expect("send");
    let msgs = until(&mut rx, |m| matches!(m, Down::Heartbeat(_))).await;
    match msgs.last() {
        Some(Down::Heartbeat(a)) => assert_eq!(a.ttl_seconds, 0, "{a:?}"),
        other => panic!("a heartbeat ack, not {other:?}"),
    }
}
