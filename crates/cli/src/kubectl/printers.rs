//! What `keelson get` shows for each kind: the columns (kubectl's) and one
//! row per object. Pure functions of the object and the current time.

use std::collections::BTreeMap;
use std::time::SystemTime;

use keelson_model::{kind_of, meta_of, Kind, Object};
use keelson_proto::api::object::Kind as Variant;
use keelson_proto::v1;

use super::table::age;

const NONE: &str = "<none>";
/// Endpoints shown before `+ N more...`.
const ENDPOINTS_SHOWN_MAX: usize = 3;

/// The resource name with its API group, as kubectl names objects in
/// messages and `-o name`: `pod`, `deployment.apps`, `lease.coordination.k8s.io`.
pub fn qualified(kind: Kind) -> String {
    let lower = kind.name().to_ascii_lowercase();
    match kind.api_version().split_once('/') {
        Some((group, _)) => format!("{lower}.{group}"),
        None => lower,
    }
}

/// `deployment/web`: the lowercased kind and the name.
pub fn slash_name(kind: Kind, name: &str) -> String {
    format!("{}/{name}", kind.name().to_ascii_lowercase())
}

/// The table's columns for `kind`.
pub fn columns(kind: Kind, wide: bool) -> Vec<&'static str> {
    let (mut base, extra): (Vec<&str>, &[&str]) = match kind {
        Kind::Pod => (
            vec!["NAME", "READY", "STATUS", "RESTARTS", "AGE"],
            &["IP", "NODE"],
        ),
        Kind::Node => (
            vec!["NAME", "STATUS", "ROLES", "AGE", "VERSION"],
            &["INTERNAL-IP"],
        ),
        Kind::Deployment => (
            vec!["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"],
            &["CONTAINERS", "IMAGES", "SELECTOR"],
        ),
        Kind::ReplicaSet => (
            vec!["NAME", "DESIRED", "CURRENT", "READY", "AGE"],
            &["CONTAINERS", "IMAGES", "SELECTOR"],
        ),
        Kind::Service => (
            vec!["NAME", "TYPE", "CLUSTER-IP", "PORT(S)", "AGE"],
            &["SELECTOR"],
        ),
        Kind::Endpoints => (vec!["NAME", "ENDPOINTS", "AGE"], &[]),
        Kind::Event => (
            vec!["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"],
            &[],
        ),
        Kind::Namespace => (vec!["NAME", "STATUS", "AGE"], &[]),
        Kind::Lease => (vec!["NAME", "HOLDER", "AGE"], &[]),
    };
    if wide {
        base.extend_from_slice(extra);
    }
    base
}

/// One row for `o` under [`columns`]`(kind_of(o), wide)`.
pub fn row(o: &Object, wide: bool, now: SystemTime) -> Vec<String> {
    let Some(kind) = o.kind.as_ref() else {
        return Vec::new();
    };
    let mut r = match kind {
        Variant::Pod(p) => pod_row(p, wide, now),
        Variant::Node(n) => node_row(n, wide, now),
        Variant::Deployment(d) => deployment_row(d, wide, now),
        Variant::ReplicaSet(rs) => replica_set_row(rs, wide, now),
        Variant::Service(s) => service_row(s, wide, now),
        Variant::Endpoints(e) => vec![
            name(&e.metadata),
            format_endpoints(&e.subsets),
            created(&e.metadata, now),
        ],
        Variant::Event(e) => event_row(e, now),
        Variant::Namespace(ns) => vec![
            name(&ns.metadata),
            ns.status
                .as_ref()
                .map(|s| s.phase.clone())
                .filter(|p| !p.is_empty())
                .unwrap_or_else(|| "Active".into()),
            created(&ns.metadata, now),
        ],
        Variant::Lease(l) => vec![
            name(&l.metadata),
            l.spec
                .as_ref()
                .map(|s| s.holder_identity.clone())
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| NONE.into()),
            created(&l.metadata, now),
        ],
    };
    // Keep rows as long as the header even for odd objects.
    if let Some(k) = kind_of(o) {
        r.resize(columns(k, wide).len(), String::new());
    }
    r
}

/// `columns` with a leading NAMESPACE column when listing a namespaced
/// kind across namespaces.
pub fn header_for(kind: Kind, wide: bool, all_namespaces: bool) -> Vec<String> {
    let mut h: Vec<String> = Vec::new();
    if all_namespaces && kind.namespaced() {
        h.push("NAMESPACE".into());
    }
    h.extend(columns(kind, wide).into_iter().map(String::from));
    h
}

/// `row` with the namespace first when [`header_for`] has that column.
pub fn row_for(o: &Object, wide: bool, all_namespaces: bool, now: SystemTime) -> Vec<String> {
    let mut r = Vec::new();
    if all_namespaces && kind_of(o).is_some_and(Kind::namespaced) {
        r.push(meta_of(o).map(|m| m.namespace.clone()).unwrap_or_default());
    }
    r.extend(row(o, wide, now));
    r
}

fn name(m: &Option<v1::ObjectMeta>) -> String {
    m.as_ref().map(|m| m.name.clone()).unwrap_or_default()
}

fn created(m: &Option<v1::ObjectMeta>, now: SystemTime) -> String {
    age(
        m.as_ref()
            .map(|m| m.creation_timestamp.as_str())
            .unwrap_or(""),
        now,
    )
}

fn or_none(s: &str) -> String {
    if s.is_empty() {
        NONE.into()
    } else {
        s.to_string()
    }
}

/// kubectl's pod STATUS: Terminating, else the reason a container is
/// waiting or terminated with (CrashLoopBackOff, Error...), else the
/// pod's reason, else its phase (Pending when unset).
pub fn pod_status(p: &v1::Pod) -> String {
    if p.metadata
        .as_ref()
        .is_some_and(|m| !m.deletion_timestamp.is_empty())
    {
        return "Terminating".into();
    }
    let status = p.status.clone().unwrap_or_default();
    let mut reason = if status.reason.is_empty() {
        status.phase.clone()
    } else {
        status.reason.clone()
    };
    if reason.is_empty() {
        reason = "Pending".into();
    }
    // As kubectl: the last container with a reason wins.
    for cs in status.container_statuses.iter().rev() {
        let Some(state) = cs.state.as_ref() else {
            continue;
        };
        if let Some(w) = state.waiting.as_ref().filter(|w| !w.reason.is_empty()) {
            return w.reason.clone();
        }
        if let Some(t) = state.terminated.as_ref() {
            return if !t.reason.is_empty() {
                t.reason.clone()
            } else if t.signal != 0 {
                format!("Signal:{}", t.signal)
            } else {
                format!("ExitCode:{}", t.exit_code)
            };
        }
    }
    reason
}

/// READY as `ready/total` containers.
pub fn pod_ready(p: &v1::Pod) -> String {
    let total = p.spec.as_ref().map_or(0, |s| s.containers.len());
    let ready = p.status.as_ref().map_or(0, |s| {
        s.container_statuses.iter().filter(|c| c.ready).count()
    });
    format!("{ready}/{total}")
}

pub fn pod_restarts(p: &v1::Pod) -> i64 {
    p.status.as_ref().map_or(0, |s| {
        s.container_statuses
            .iter()
            .map(|c| i64::from(c.restart_count))
            .sum()
    })
}

pub fn pod_row(p: &v1::Pod, wide: bool, now: SystemTime) -> Vec<String> {
    let mut r = vec![
        name(&p.metadata),
        pod_ready(p),
        pod_status(p),
        pod_restarts(p).to_string(),
        created(&p.metadata, now),
    ];
    if wide {
        r.push(or_none(p.status.as_ref().map_or("", |s| s.pod_ip.as_str())));
        r.push(or_none(
            p.spec.as_ref().map_or("", |s| s.node_name.as_str()),
        ));
    }
    r
}

/// Ready / NotReady / Unknown from the Ready condition, plus
/// `,SchedulingDisabled` for a cordoned node.
pub fn node_status(n: &v1::Node) -> String {
    let ready = n
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.r#type == "Ready"))
        .map(|c| c.status.as_str());
    let mut s = match ready {
        Some("True") => "Ready".to_string(),
        Some("False") => "NotReady".to_string(),
        _ => "Unknown".to_string(),
    };
    if n.spec.as_ref().is_some_and(|s| s.unschedulable) {
        s.push_str(",SchedulingDisabled");
    }
    s
}

fn node_roles(n: &v1::Node) -> String {
    let labels = n.metadata.as_ref().map(|m| &m.labels);
    let roles: Vec<&str> = labels
        .into_iter()
        .flatten()
        .filter_map(|(k, _)| k.strip_prefix("node-role.kubernetes.io/"))
        .filter(|r| !r.is_empty())
        .collect();
    or_none(&roles.join(","))
}

fn node_row(n: &v1::Node, wide: bool, now: SystemTime) -> Vec<String> {
    let status = n.status.clone().unwrap_or_default();
    let mut r = vec![
        name(&n.metadata),
        node_status(n),
        node_roles(n),
        created(&n.metadata, now),
        status
            .node_info
            .as_ref()
            .map(|i| i.kubelet_version.clone())
            .unwrap_or_default(),
    ];
    if wide {
        let ip = status
            .addresses
            .iter()
            .find(|a| a.r#type == "InternalIP")
            .map_or("", |a| a.address.as_str());
        r.push(or_none(ip));
    }
    r
}

/// A label selector as text: `app=web,tier in (a,b),!old`.
pub fn format_selector(sel: Option<&v1::LabelSelector>) -> String {
    let Some(sel) = sel else {
        return NONE.into();
    };
    let mut parts: Vec<String> = sel
        .match_labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    for e in &sel.match_expressions {
        parts.push(match e.operator.as_str() {
            "In" => format!("{} in ({})", e.key, e.values.join(",")),
            "NotIn" => format!("{} notin ({})", e.key, e.values.join(",")),
            "Exists" => e.key.clone(),
            "DoesNotExist" => format!("!{}", e.key),
            op => format!("{} {op} ({})", e.key, e.values.join(",")),
        });
    }
    or_none(&parts.join(","))
}

fn format_map(m: &BTreeMap<String, String>) -> String {
    let parts: Vec<String> = m.iter().map(|(k, v)| format!("{k}={v}")).collect();
    or_none(&parts.join(","))
}

fn template_columns(
    t: Option<&v1::PodTemplateSpec>,
    sel: Option<&v1::LabelSelector>,
) -> [String; 3] {
    let containers = t
        .and_then(|t| t.spec.as_ref())
        .map(|s| s.containers.as_slice())
        .unwrap_or_default();
    let names: Vec<&str> = containers.iter().map(|c| c.name.as_str()).collect();
    let images: Vec<&str> = containers.iter().map(|c| c.image.as_str()).collect();
    [
        or_none(&names.join(",")),
        or_none(&images.join(",")),
        format_selector(sel),
    ]
}

pub fn deployment_row(d: &v1::Deployment, wide: bool, now: SystemTime) -> Vec<String> {
    let spec = d.spec.clone().unwrap_or_default();
    let status = d.status.clone().unwrap_or_default();
    let mut r = vec![
        name(&d.metadata),
        format!("{}/{}", status.ready_replicas, spec.replicas.unwrap_or(1)),
        status.updated_replicas.to_string(),
        status.available_replicas.to_string(),
        created(&d.metadata, now),
    ];
    if wide {
        r.extend(template_columns(
            spec.template.as_ref(),
            spec.selector.as_ref(),
        ));
    }
    r
}

fn replica_set_row(rs: &v1::ReplicaSet, wide: bool, now: SystemTime) -> Vec<String> {
    let spec = rs.spec.clone().unwrap_or_default();
    let status = rs.status.clone().unwrap_or_default();
    let mut r = vec![
        name(&rs.metadata),
        spec.replicas.unwrap_or(1).to_string(),
        status.replicas.to_string(),
        status.ready_replicas.to_string(),
        created(&rs.metadata, now),
    ];
    if wide {
        r.extend(template_columns(
            spec.template.as_ref(),
            spec.selector.as_ref(),
        ));
    }
    r
}

/// PORT(S): `80/TCP`, `80:30080/TCP`, joined by commas.
pub fn format_ports(ports: &[v1::ServicePort]) -> String {
    let parts: Vec<String> = ports
        .iter()
        .map(|p| {
            let proto = if p.protocol.is_empty() {
                "TCP"
            } else {
                p.protocol.as_str()
            };
            if p.node_port != 0 {
                format!("{}:{}/{proto}", p.port, p.node_port)
            } else {
                format!("{}/{proto}", p.port)
            }
        })
        .collect();
    or_none(&parts.join(","))
}

pub fn service_row(s: &v1::Service, wide: bool, now: SystemTime) -> Vec<String> {
    let spec = s.spec.clone().unwrap_or_default();
    let mut r = vec![
        name(&s.metadata),
        if spec.r#type.is_empty() {
            "ClusterIP".into()
        } else {
            spec.r#type.clone()
        },
        or_none(&spec.cluster_ip),
        format_ports(&spec.ports),
        created(&s.metadata, now),
    ];
    if wide {
        r.push(format_map(&spec.selector));
    }
    r
}

/// ENDPOINTS: `ip:port` pairs, the first three then ` + N more...`.
pub fn format_endpoints(subsets: &[v1::EndpointSubset]) -> String {
    let mut all = Vec::new();
    for s in subsets {
        for a in &s.addresses {
            if s.ports.is_empty() {
                all.push(a.ip.clone());
            }
            for p in &s.ports {
                all.push(format!("{}:{}", a.ip, p.port));
            }
        }
    }
    if all.is_empty() {
        return NONE.into();
    }
    let mut out = all
        .iter()
        .take(ENDPOINTS_SHOWN_MAX)
        .cloned()
        .collect::<Vec<_>>()
        .join(",");
    if all.len() > ENDPOINTS_SHOWN_MAX {
        out.push_str(&format!(" + {} more...", all.len() - ENDPOINTS_SHOWN_MAX));
    }
    out
}

/// When an event last happened: lastTimestamp, else firstTimestamp, else
/// its creation.
pub fn event_time(e: &v1::Event) -> &str {
    [
        e.last_timestamp.as_str(),
        e.first_timestamp.as_str(),
        e.metadata
            .as_ref()
            .map_or("", |m| m.creation_timestamp.as_str()),
    ]
    .into_iter()
    .find(|t| !t.is_empty())
    .unwrap_or("")
}

fn event_row(e: &v1::Event, now: SystemTime) -> Vec<String> {
    let obj = e.involved_object.clone().unwrap_or_default();
    vec![
        age(event_time(e), now),
        e.r#type.clone(),
        e.reason.clone(),
        format!("{}/{}", obj.kind.to_ascii_lowercase(), obj.name),
        e.message.clone(),
    ]
}

/// Events oldest first, as `kubectl get events` ends with the newest.
pub fn sort_events(objs: &mut [Object]) {
    let key = |o: &Object| match o.kind.as_ref() {
        Some(Variant::Event(e)) => super::table::parse_time(event_time(e)),
        _ => None,
    };
    objs.sort_by_key(key);
}

#[cfg(test)]
mod tests {
    use super::*;
    use keelson_model::Resource;

    fn now() -> SystemTime {
        humantime::parse_rfc3339("2024-05-01T10:00:00Z").expect("time")
    }

    fn meta(name: &str, created: &str) -> Option<v1::ObjectMeta> {
        Some(v1::ObjectMeta {
            name: name.into(),
            namespace: "default".into(),
            creation_timestamp: created.into(),
            ..Default::default()
        })
    }

    fn container(name: &str) -> v1::Container {
        v1::Container {
            name: name.into(),
            image: format!("img/{name}"),
            ..Default::default()
        }
    }

    fn status(name: &str, ready: bool, restarts: i32, waiting: &str) -> v1::ContainerStatus {
        v1::ContainerStatus {
            name: name.into(),
            ready,
            restart_count: restarts,
            state: Some(v1::ContainerState {
                waiting: (!waiting.is_empty()).then(|| v1::ContainerStateWaiting {
                    reason: waiting.into(),
                    message: String::new(),
                }),
                running: waiting.is_empty().then(v1::ContainerStateRunning::default),
                terminated: None,
            }),
            ..Default::default()
        }
    }

    fn pod() -> v1::Pod {
        v1::Pod {
            metadata: meta("web-1", "2024-05-01T09:57:00Z"),
            spec: Some(v1::PodSpec {
                containers: vec![container("web"), container("sidecar")],
                node_name: "node-a".into(),
                ..Default::default()
            }),
            status: Some(v1::PodStatus {
                phase: "Running".into(),
                pod_ip: "10.1.0.7".into(),
                container_statuses: vec![
                    status("web", true, 2, ""),
                    status("sidecar", false, 5, "CrashLoopBackOff"),
                ],
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn pod_row_ready_status_restarts() {
        let p = pod();
        assert_eq!(
            pod_row(&p, false, now()),
            vec!["web-1", "1/2", "CrashLoopBackOff", "7", "3m"]
        );
        assert_eq!(
            pod_row(&p, true, now())[5..],
            ["10.1.0.7".to_string(), "node-a".to_string()]
        );
        assert_eq!(
            columns(Kind::Pod, true).len(),
            pod_row(&p, true, now()).len()
        );
    }

    #[test]
    fn pod_status_rules() {
        let mut p = pod();
        p.status = Some(v1::PodStatus {
            container_statuses: vec![status("web", true, 0, ""), status("sidecar", true, 0, "")],
            phase: "Running".into(),
            ..Default::default()
        });
        assert_eq!(pod_status(&p), "Running");
        assert_eq!(pod_ready(&p), "2/2");
        assert_eq!(pod_restarts(&p), 0);

        p.status = None;
        assert_eq!(pod_status(&p), "Pending");
        assert_eq!(pod_ready(&p), "0/2");

        let mut done = pod();
        done.status = Some(v1::PodStatus {
            phase: "Failed".into(),
            container_statuses: vec![v1::ContainerStatus {
                state: Some(v1::ContainerState {
                    terminated: Some(v1::ContainerStateTerminated {
                        exit_code: 137,
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            ..Default::default()
        });
        assert_eq!(pod_status(&done), "ExitCode:137");

        let mut gone = pod();
        if let Some(m) = gone.metadata.as_mut() {
            m.deletion_timestamp = "2024-05-01T10:00:00Z".into();
        }
        assert_eq!(pod_status(&gone), "Terminating");
    }

    #[test]
    fn pod_row_with_namespace_column() {
        let o = pod().into_object();
        assert_eq!(header_for(Kind::Pod, false, true)[0], "NAMESPACE");
        assert_eq!(row_for(&o, false, true, now())[..2], ["default", "web-1"]);
        assert_eq!(header_for(Kind::Node, false, true)[0], "NAME");
    }

    #[test]
    fn service_ports() {
        let port = |port, node_port, protocol: &str| v1::ServicePort {
            port,
            node_port,
            protocol: protocol.into(),
            ..Default::default()
        };
        assert_eq!(format_ports(&[port(80, 0, "TCP")]), "80/TCP");
        assert_eq!(
            format_ports(&[
                port(80, 30080, "TCP"),
                port(53, 0, "UDP"),
                port(8080, 0, "")
            ]),
            "80:30080/TCP,53/UDP,8080/TCP"
        );
        assert_eq!(format_ports(&[]), "<none>");
        let s = v1::Service {
            metadata: meta("web", "2024-05-01T09:00:00Z"),
            spec: Some(v1::ServiceSpec {
                r#type: "NodePort".into(),
                cluster_ip: "10.96.0.10".into(),
                ports: vec![port(80, 30080, "TCP")],
                selector: [("app".to_string(), "web".to_string())].into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            service_row(&s, true, now()),
            vec![
                "web",
                "NodePort",
                "10.96.0.10",
                "80:30080/TCP",
                "60m",
                "app=web"
            ]
        );
    }

    #[test]
    fn deployment_row_counts() {
        let d = v1::Deployment {
            metadata: meta("web", "2024-04-26T10:00:00Z"),
            spec: Some(v1::DeploymentSpec {
                replicas: Some(3),
                selector: Some(v1::LabelSelector {
                    match_labels: [("app".to_string(), "web".to_string())].into(),
                    match_expressions: vec![v1::LabelSelectorRequirement {
                        key: "tier".into(),
                        operator: "In".into(),
                        values: vec!["a".into(), "b".into()],
                    }],
                }),
                template: Some(v1::PodTemplateSpec {
                    metadata: None,
                    spec: Some(v1::PodSpec {
                        containers: vec![container("web"), container("log")],
                        ..Default::default()
                    }),
                }),
                ..Default::default()
            }),
            status: Some(v1::DeploymentStatus {
                ready_replicas: 2,
                updated_replicas: 3,
                available_replicas: 1,
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            deployment_row(&d, false, now()),
            vec!["web", "2/3", "3", "1", "5d"]
        );
        assert_eq!(
            deployment_row(&d, true, now())[5..],
            [
                "web,log".to_string(),
                "img/web,img/log".to_string(),
                "app=web,tier in (a,b)".to_string()
            ]
        );
    }

    #[test]
    fn endpoints_list_three_then_more() {
        let addr = |ip: &str| v1::EndpointAddress {
            ip: ip.into(),
            ..Default::default()
        };
        let subset = v1::EndpointSubset {
            addresses: (1..=5).map(|i| addr(&format!("10.0.0.{i}"))).collect(),
            ports: vec![v1::EndpointPort {
                port: 8080,
                ..Default::default()
            }],
            ..Default::default()
        };
        assert_eq!(
            format_endpoints(&[subset]),
            "10.0.0.1:8080,10.0.0.2:8080,10.0.0.3:8080 + 2 more..."
        );
        assert_eq!(format_endpoints(&[]), "<none>");
    }

    #[test]
    fn node_status_and_event_object() {
        let mut n = v1::Node {
            metadata: meta("n1", ""),
            spec: Some(v1::NodeSpec {
                unschedulable: true,
                ..Default::default()
            }),
            status: Some(v1::NodeStatus {
                conditions: vec![v1::NodeCondition {
                    r#type: "Ready".into(),
                    status: "True".into(),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(node_status(&n), "Ready,SchedulingDisabled");
        n.spec = None;
        n.status = None;
        assert_eq!(node_status(&n), "Unknown");
        assert_eq!(row(&n.clone().into_object(), false, now())[3], "<unknown>");

        let e = v1::Event {
            metadata: meta("web-1.abc", "2024-05-01T09:00:00Z"),
            involved_object: Some(v1::ObjectReference {
                kind: "Pod".into(),
                name: "web-1".into(),
                ..Default::default()
            }),
            reason: "Started".into(),
            r#type: "Normal".into(),
            message: "started".into(),
            last_timestamp: "2024-05-01T09:59:30Z".into(),
            ..Default::default()
        };
        assert_eq!(
            row(&e.into_object(), false, now()),
            vec!["30s", "Normal", "Started", "pod/web-1", "started"]
        );
    }

    #[test]
    fn names() {
        assert_eq!(qualified(Kind::Pod), "pod");
        assert_eq!(qualified(Kind::Deployment), "deployment.apps");
        assert_eq!(qualified(Kind::Lease), "lease.coordination.k8s.io");
        assert_eq!(slash_name(Kind::ReplicaSet, "web"), "replicaset/web");
    }
}
