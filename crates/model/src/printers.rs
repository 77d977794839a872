//! What a table of objects shows for each kind: the columns and one row of
//! cells per object, as kubectl 1.32 prints them. One copy for every client:
//! `keelson get` renders these rows as text, and the API server serves them
//! as Kubernetes' server-side Tables (`kubectl get` asks for `as=Table`), so
//! both show the same columns and the same cells.
//!
//! Follows Kubernetes' `pkg/printers/internalversion/printers.go`:
//! - the column definitions of `AddHandlers`: [`columns`]. Columns with
//!   `Priority: 1` are the ones only `-o wide` shows; here they come after
//!   the others, so `columns(k, true)` starts with `columns(k, false)` (a
//!   server-side Table gives the columns past that prefix priority 1).
//!   Names are upper case, as kubectl prints them (`NOMINATED NODE`).
//! - `printPod`: [`pod_ready`], [`pod_status`], [`pod_restarts`];
//!   `printNode`: [`node_status`], `findNodeRoles`, `getNodeInternalIP` /
//!   `getNodeExternalIP`; `printDeployment` / `printReplicaSet` with
//!   `layoutContainerCells` and [`format_selector`]; `printService` with
//!   `getServiceExternalIP` and `makePortString` ([`format_ports`]);
//!   `formatEndpoints` ([`format_endpoints`]); `printEvent`
//!   ([`event_time`]), `printNamespace`, `printLease`.
//! - `translateTimestampSince`: [`crate::time::age`].
//!
//! Simplifications (fields our `v1` types do not have get kubectl's
//! placeholder, as kubectl prints them for an object without the field):
//! - pods: NOMINATED NODE and READINESS GATES are always `<none>` (no
//!   `status.nominatedNodeName`, no `spec.readinessGates`); IP is
//!   `status.podIP` (no `podIPs`).
//! - services: EXTERNAL-IP is `<none>` for ClusterIP and NodePort (no
//!   `spec.externalIPs`), `<pending>` for LoadBalancer (no load-balancer
//!   status), `<unknown>` for any other type.
//! - events have no wide columns: kubectl's wide event table puts SUBOBJECT
//!   and SOURCE before MESSAGE, which the "wide = narrow + more" shape
//!   above cannot express.
//! - cells that still differ from printers.go: RESTARTS without kubectl's
//!   `3 (2m ago)`; STATUS from the last container with a reason (kubectl:
//!   the first), Terminating even in a terminal phase; READY counts ready
//!   containers (kubectl: ready and running); a node whose Ready condition
//!   is Unknown is `Unknown` (kubectl: `NotReady`); `<none>` where kubectl
//!   leaves a cell empty (a lease without holder, a template without
//!   containers); `Active` for a namespace without phase; selector
//!   requirements unsorted.
//!
//! The NAMESPACE column of `-A` is the client's (kubectl adds it too).
//! Nothing here reads the clock: `now` is a parameter.

use std::collections::BTreeMap;
use std::time::SystemTime;

use keelson_proto::api::object::Kind as Variant;
use keelson_proto::v1;

use crate::time::age;
use crate::{kind_of, Kind, Object};

/// kubectl's placeholder for a value that is not set.
const NONE: &str = "<none>";
/// kubectl's placeholder for a value that cannot be known.
const UNKNOWN: &str = "<unknown>";
/// Endpoints shown before `+ N more...` (`formatEndpoints`' `max`).
const ENDPOINTS_SHOWN_MAX: usize = 3;

/// The columns of `kind` that every table shows, and the ones `-o wide`
/// adds after them.
fn column_sets(kind: Kind) -> (&'static [&'static str], &'static [&'static str]) {
    match kind {
        Kind::Pod => (
            &["NAME", "READY", "STATUS", "RESTARTS", "AGE"],
            &["IP", "NODE", "NOMINATED NODE", "READINESS GATES"],
        ),
        Kind::Node => (
            &["NAME", "STATUS", "ROLES", "AGE", "VERSION"],
            &[
                "INTERNAL-IP",
                "EXTERNAL-IP",
                "OS-IMAGE",
                "KERNEL-VERSION",
                "CONTAINER-RUNTIME",
            ],
        ),
        Kind::Deployment => (
            &["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"],
            &["CONTAINERS", "IMAGES", "SELECTOR"],
        ),
        Kind::ReplicaSet => (
            &["NAME", "DESIRED", "CURRENT", "READY", "AGE"],
            &["CONTAINERS", "IMAGES", "SELECTOR"],
        ),
        Kind::Service => (
            &[
                "NAME",
                "TYPE",
                "CLUSTER-IP",
                "EXTERNAL-IP",
                "PORT(S)",
                "AGE",
            ],
            &["SELECTOR"],
        ),
        Kind::Endpoints => (&["NAME", "ENDPOINTS", "AGE"], &[]),
        Kind::Event => (&["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"], &[]),
        Kind::Namespace => (&["NAME", "STATUS", "AGE"], &[]),
        Kind::Lease => (&["NAME", "HOLDER", "AGE"], &[]),
        Kind::ConfigMap => (&["NAME", "DATA", "AGE"], &[]),
        Kind::Secret => (&["NAME", "TYPE", "DATA", "AGE"], &[]),
        Kind::Job => (
            &["NAME", "STATUS", "COMPLETIONS", "DURATION", "AGE"],
            &["CONTAINERS", "IMAGES", "SELECTOR"],
        ),
        Kind::DaemonSet => (
            &[
                "NAME",
                "DESIRED",
                "CURRENT",
                "READY",
                "UP-TO-DATE",
                "AVAILABLE",
                "NODE SELECTOR",
                "AGE",
            ],
            &["CONTAINERS", "IMAGES", "SELECTOR"],
        ),
        Kind::StatefulSet => (&["NAME", "READY", "AGE"], &["CONTAINERS", "IMAGES"]),
        Kind::ControllerRevision => (&["NAME", "CONTROLLER", "REVISION", "AGE"], &[]),
        Kind::ServiceAccount => (&["NAME", "SECRETS", "AGE"], &[]),
        Kind::Role | Kind::ClusterRole => (&["NAME", "CREATED AT"], &[]),
        Kind::RoleBinding | Kind::ClusterRoleBinding => (
            &["NAME", "ROLE", "AGE"],
            &["USERS", "GROUPS", "SERVICEACCOUNTS"],
        ),
        Kind::CronJob => (
            &[
                "NAME",
                "SCHEDULE",
                "TIMEZONE",
                "SUSPEND",
                "ACTIVE",
                "LAST SCHEDULE",
                "AGE",
            ],
            &["CONTAINERS", "IMAGES", "SELECTOR"],
        ),
    }
}

/// The table's columns for `kind`; with `wide`, those of `-o wide` (the
/// narrow ones, then more).
pub fn columns(kind: Kind, wide: bool) -> Vec<&'static str> {
    let (base, extra) = column_sets(kind);
    let extra = if wide { extra } else { &[] };
    base.iter().chain(extra).copied().collect()
}

/// One row for `o`, a cell per column of [`columns`]`(kind_of(o), wide)`;
/// empty for an `Object` without a kind.
pub fn row(o: &Object, wide: bool, now: SystemTime) -> Vec<String> {
    let Some(variant) = o.kind.as_ref() else {
        return Vec::new();
    };
    let r = match variant {
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
        Variant::ConfigMap(cm) => vec![
            name(&cm.metadata),
            (cm.data.len() + cm.binary_data.len()).to_string(),
            created(&cm.metadata, now),
        ],
        Variant::Secret(sec) => vec![
            name(&sec.metadata),
            sec.r#type.clone(),
            sec.data.len().to_string(),
            created(&sec.metadata, now),
        ],
        Variant::Job(j) => job_row(j, wide, now),
        Variant::CronJob(cj) => cron_job_row(cj, wide, now),
        Variant::DaemonSet(ds) => daemon_set_row(ds, wide, now),
        Variant::StatefulSet(sts) => stateful_set_row(sts, wide, now),
        Variant::ControllerRevision(r) => controller_revision_row(r, now),
        Variant::ServiceAccount(sa) => vec![
            name(&sa.metadata),
            sa.secrets.len().to_string(),
            created(&sa.metadata, now),
        ],
        Variant::Role(r) => vec![name(&r.metadata), created_at(&r.metadata)],
        Variant::ClusterRole(r) => vec![name(&r.metadata), created_at(&r.metadata)],
        Variant::RoleBinding(b) => {
            binding_row(&b.metadata, b.role_ref.as_ref(), &b.subjects, wide, now)
        }
        Variant::ClusterRoleBinding(b) => {
            binding_row(&b.metadata, b.role_ref.as_ref(), &b.subjects, wide, now)
        }
        Variant::Lease(l) => vec![
            name(&l.metadata),
            or_none(l.spec.as_ref().map_or("", |s| s.holder_identity.as_str())),
            created(&l.metadata, now),
        ],
    };
    debug_assert_eq!(
        Some(r.len()),
        kind_of(o).map(|k| columns(k, wide).len()),
        "a cell per column"
    );
    r
}

fn name(m: &Option<v1::ObjectMeta>) -> String {
    m.as_ref().map(|m| m.name.clone()).unwrap_or_default()
}

/// AGE: since the object's creation.
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

fn or_unknown(s: &str) -> String {
    if s.is_empty() {
        UNKNOWN.into()
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
    // The last container with a reason wins.
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

/// RESTARTS: the containers' restarts, summed.
pub fn pod_restarts(p: &v1::Pod) -> i64 {
    p.status.as_ref().map_or(0, |s| {
        s.container_statuses
            .iter()
            .map(|c| i64::from(c.restart_count))
            .sum()
    })
}

fn pod_row(p: &v1::Pod, wide: bool, now: SystemTime) -> Vec<String> {
    let mut r = vec![
        name(&p.metadata),
        pod_ready(p),
        pod_status(p),
        pod_restarts(p).to_string(),
        created(&p.metadata, now),
    ];
    if wide {
        r.extend([
            or_none(p.status.as_ref().map_or("", |s| s.pod_ip.as_str())),
            or_none(p.spec.as_ref().map_or("", |s| s.node_name.as_str())),
            // NOMINATED NODE, READINESS GATES: fields we do not have.
            NONE.into(),
            NONE.into(),
        ]);
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

/// The first address of `kind` (`InternalIP`, `ExternalIP`), or `<none>`.
fn node_address(status: &v1::NodeStatus, kind: &str) -> String {
    or_none(
        status
            .addresses
            .iter()
            .find(|a| a.r#type == kind)
            .map_or("", |a| a.address.as_str()),
    )
}

fn node_row(n: &v1::Node, wide: bool, now: SystemTime) -> Vec<String> {
    let status = n.status.clone().unwrap_or_default();
    let info = status.node_info.clone().unwrap_or_default();
    let mut r = vec![
        name(&n.metadata),
        node_status(n),
        node_roles(n),
        created(&n.metadata, now),
        info.kubelet_version.clone(),
    ];
    if wide {
        r.extend([
            node_address(&status, "InternalIP"),
            node_address(&status, "ExternalIP"),
            or_unknown(&info.os_image),
            or_unknown(&info.kernel_version),
            or_unknown(&info.container_runtime_version),
        ]);
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

/// CONTAINERS, IMAGES and SELECTOR of a workload's `-o wide`.
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

fn deployment_row(d: &v1::Deployment, wide: bool, now: SystemTime) -> Vec<String> {
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

/// A DaemonSet's row, as kubectl's `printDaemonSet`.
fn daemon_set_row(ds: &v1::DaemonSet, wide: bool, now: SystemTime) -> Vec<String> {
    let spec = ds.spec.clone().unwrap_or_default();
    let s = ds.status.clone().unwrap_or_default();
    let selector: Vec<String> = spec
        .template
        .as_ref()
        .and_then(|t| t.spec.as_ref())
        .map(|p| {
            p.node_selector
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect()
        })
        .unwrap_or_default();
    let mut r = vec![
        name(&ds.metadata),
        s.desired_number_scheduled.to_string(),
        s.current_number_scheduled.to_string(),
        s.number_ready.to_string(),
        s.updated_number_scheduled.to_string(),
        s.number_available.to_string(),
        or_none(&selector.join(",")),
        created(&ds.metadata, now),
    ];
    if wide {
        r.extend(template_columns(
            spec.template.as_ref(),
            spec.selector.as_ref(),
        ));
    }
    r
}

/// A StatefulSet's row, as kubectl's `printStatefulSet`: READY is ready
/// of desired replicas.
fn stateful_set_row(sts: &v1::StatefulSet, wide: bool, now: SystemTime) -> Vec<String> {
    let spec = sts.spec.clone().unwrap_or_default();
    let s = sts.status.clone().unwrap_or_default();
    let mut r = vec![
        name(&sts.metadata),
        format!("{}/{}", s.ready_replicas, spec.replicas.unwrap_or(1)),
        created(&sts.metadata, now),
    ];
    if wide {
        let [containers, images, _] = template_columns(spec.template.as_ref(), None);
        r.extend([containers, images]);
    }
    r
}

/// CREATED AT: the creation time as written (RFC 3339).
fn created_at(m: &Option<v1::ObjectMeta>) -> String {
    m.as_ref()
        .map(|m| m.creation_timestamp.clone())
        .unwrap_or_default()
}

/// A RoleBinding's or ClusterRoleBinding's row, as kubectl's
/// `printRoleBinding`: ROLE is `<kind>/<name>`; wide adds the users, groups
/// and service accounts (`<namespace>/<name>`) it binds.
fn binding_row(
    m: &Option<v1::ObjectMeta>,
    role: Option<&v1::RoleRef>,
    subjects: &[v1::Subject],
    wide: bool,
    now: SystemTime,
) -> Vec<String> {
    let role = role.map_or(String::new(), |r| format!("{}/{}", r.kind, r.name));
    let mut r = vec![name(m), role, created(m, now)];
    if wide {
        let of = |kind: &str| -> String {
            let names: Vec<String> = subjects
                .iter()
                .filter(|s| s.kind == kind)
                .map(|s| {
                    if kind == "ServiceAccount" {
                        format!("{}/{}", s.namespace, s.name)
                    } else {
                        s.name.clone()
                    }
                })
                .collect();
            names.join(", ")
        };
        r.extend([of("User"), of("Group"), of("ServiceAccount")]);
    }
    r
}

/// A ControllerRevision's row, as kubectl's `printControllerRevision`:
/// CONTROLLER is `<kind>.<group>/<name>` of its controller.
fn controller_revision_row(r: &v1::ControllerRevision, now: SystemTime) -> Vec<String> {
    let controller = r
        .metadata
        .as_ref()
        .and_then(|m| crate::controller_of(m))
        .map_or_else(
            || NONE.to_string(),
            |o| {
                let group = o.api_version.split_once('/').map_or("", |(g, _)| g);
                let kind = o.kind.to_ascii_lowercase();
                if group.is_empty() {
                    format!("{kind}/{}", o.name)
                } else {
                    format!("{kind}.{group}/{}", o.name)
                }
            },
        );
    vec![
        name(&r.metadata),
        controller,
        r.revision.to_string(),
        created(&r.metadata, now),
    ]
}

/// A CronJob's row, as kubectl's `printCronJob`: LAST SCHEDULE is the
/// time since the last schedule time (`<none>` before the first).
fn cron_job_row(cj: &v1::CronJob, wide: bool, now: SystemTime) -> Vec<String> {
    let spec = cj.spec.clone().unwrap_or_default();
    let status = cj.status.clone().unwrap_or_default();
    let last = if status.last_schedule_time.is_empty() {
        NONE.to_string()
    } else {
        age(&status.last_schedule_time, now)
    };
    let mut r = vec![
        name(&cj.metadata),
        spec.schedule.clone(),
        or_none(spec.time_zone.as_deref().unwrap_or("")),
        if spec.suspend == Some(true) {
            "True"
        } else {
            "False"
        }
        .to_string(),
        status.active.len().to_string(),
        last,
        created(&cj.metadata, now),
    ];
    if wide {
        let js = spec.job_template.and_then(|t| t.spec).unwrap_or_default();
        r.extend(template_columns(js.template.as_ref(), js.selector.as_ref()));
    }
    r
}

/// A Job's row, as kubectl's `printJob`: STATUS from its conditions,
/// COMPLETIONS `succeeded/completions` (`n/1` or `n/1 of p` for a work
/// queue), DURATION from start to completion (or to now).
fn job_row(j: &v1::Job, wide: bool, now: SystemTime) -> Vec<String> {
    let spec = j.spec.clone().unwrap_or_default();
    let status = j.status.clone().unwrap_or_default();
    let has = |t: &str| {
        status
            .conditions
            .iter()
            .any(|c| c.r#type == t && c.status == "True")
    };
    let deleting = j
        .metadata
        .as_ref()
        .is_some_and(|m| !m.deletion_timestamp.is_empty());
    let state = if has("Complete") {
        "Complete"
    } else if has("Failed") {
        "Failed"
    } else if deleting {
        "Terminating"
    } else if has("Suspended") {
        "Suspended"
    } else if has("FailureTarget") {
        "FailureTarget"
    } else if has("SuccessCriteriaMet") {
        "SuccessCriteriaMet"
    } else {
        "Running"
    };
    let completions = match (spec.completions, spec.parallelism.unwrap_or(0)) {
        (Some(c), _) => format!("{}/{c}", status.succeeded),
        (None, p) if p > 1 => format!("{}/1 of {p}", status.succeeded),
        (None, _) => format!("{}/1", status.succeeded),
    };
    let start = crate::time::parse_rfc3339(&status.start_time);
    let end = crate::time::parse_rfc3339(&status.completion_time).unwrap_or(now);
    let duration = start
        .map(|s| crate::time::human_duration(end.duration_since(s).unwrap_or_default()))
        .unwrap_or_default();
    let mut r = vec![
        name(&j.metadata),
        state.to_string(),
        completions,
        duration,
        created(&j.metadata, now),
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

/// EXTERNAL-IP of a service of type `ty` (kubectl's `getServiceExternalIP`
/// for a service without `externalIPs` or load-balancer status).
fn service_external_ip(ty: &str) -> &'static str {
    match ty {
        "" | "ClusterIP" | "NodePort" => NONE,
        "LoadBalancer" => "<pending>",
        _ => UNKNOWN,
    }
}

fn service_row(s: &v1::Service, wide: bool, now: SystemTime) -> Vec<String> {
    let spec = s.spec.clone().unwrap_or_default();
    let mut r = vec![
        name(&s.metadata),
        if spec.r#type.is_empty() {
            "ClusterIP".into()
        } else {
            spec.r#type.clone()
        },
        or_none(&spec.cluster_ip),
        service_external_ip(&spec.r#type).into(),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Resource;

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

    /// Golden: printers.go's column definitions, upper-cased, per kind.
    #[test]
    fn columns_as_kubectl_prints_them() {
        let cases: [(Kind, &[&str], &[&str]); 9] = [
            (
                Kind::Pod,
                &["NAME", "READY", "STATUS", "RESTARTS", "AGE"],
                &["IP", "NODE", "NOMINATED NODE", "READINESS GATES"],
            ),
            (
                Kind::Node,
                &["NAME", "STATUS", "ROLES", "AGE", "VERSION"],
                &[
                    "INTERNAL-IP",
                    "EXTERNAL-IP",
                    "OS-IMAGE",
                    "KERNEL-VERSION",
                    "CONTAINER-RUNTIME",
                ],
            ),
            (
                Kind::Deployment,
                &["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"],
                &["CONTAINERS", "IMAGES", "SELECTOR"],
            ),
            (
                Kind::ReplicaSet,
                &["NAME", "DESIRED", "CURRENT", "READY", "AGE"],
                &["CONTAINERS", "IMAGES", "SELECTOR"],
            ),
            (
                Kind::Service,
                &[
                    "NAME",
                    "TYPE",
                    "CLUSTER-IP",
                    "EXTERNAL-IP",
                    "PORT(S)",
                    "AGE",
                ],
                &["SELECTOR"],
            ),
            (Kind::Endpoints, &["NAME", "ENDPOINTS", "AGE"], &[]),
            (
                Kind::Event,
                &["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"],
                &[],
            ),
            (Kind::Namespace, &["NAME", "STATUS", "AGE"], &[]),
            (Kind::Lease, &["NAME", "HOLDER", "AGE"], &[]),
        ];
        for (kind, base, extra) in cases {
            assert_eq!(columns(kind, false), base, "{kind}");
            let wide: Vec<&str> = base.iter().chain(extra).copied().collect();
            assert_eq!(columns(kind, true), wide, "{kind} wide");
        }
    }

    /// What a server-side Table relies on: the wide columns are the narrow
    /// ones followed by more, and every row has a cell per column.
    #[test]
    fn wide_columns_extend_the_narrow_ones_and_rows_fill_them() {
        for kind in Kind::ALL {
            let narrow = columns(kind, false);
            let wide = columns(kind, true);
            assert_eq!(wide[..narrow.len()], narrow[..], "{kind}");
            // An empty object of the kind: every field unset.
            let o = crate::decode(kind, &[]).expect("empty message decodes");
            assert_eq!(row(&o, false, now()).len(), narrow.len(), "{kind}");
            assert_eq!(row(&o, true, now()).len(), wide.len(), "{kind} wide");
        }
        assert!(row(&Object::default(), true, now()).is_empty());
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
            ["10.1.0.7", "node-a", "<none>", "<none>"]
        );
        let pending = v1::Pod {
            metadata: meta("web-2", "2024-05-01T09:59:00Z"),
            ..Default::default()
        };
        assert_eq!(
            row(&pending.into_object(), true, now()),
            ["web-2", "0/0", "Pending", "0", "60s", "<none>", "<none>", "<none>", "<none>"]
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
    fn service_ports_and_external_ip() {
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
        let mut s = v1::Service {
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
                "<none>",
                "80:30080/TCP",
                "60m",
                "app=web"
            ]
        );
        for (ty, shown, external) in [
            ("", "ClusterIP", "<none>"),
            ("ClusterIP", "ClusterIP", "<none>"),
            ("LoadBalancer", "LoadBalancer", "<pending>"),
            ("ExternalName", "ExternalName", "<unknown>"),
        ] {
            if let Some(spec) = s.spec.as_mut() {
                spec.r#type = ty.into();
            }
            assert_eq!(
                service_row(&s, false, now())[1..4],
                [shown, "10.96.0.10", external],
                "{ty:?}"
            );
        }
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
            ["web,log", "img/web,img/log", "app=web,tier in (a,b)"]
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
    fn node_status_and_wide_columns() {
        let mut n = v1::Node {
            metadata: meta("n1", "2024-05-01T09:00:00Z"),
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
                addresses: vec![
                    v1::NodeAddress {
                        r#type: "Hostname".into(),
                        address: "n1".into(),
                    },
                    v1::NodeAddress {
                        r#type: "InternalIP".into(),
                        address: "127.0.0.11".into(),
                    },
                ],
                node_info: Some(v1::NodeSystemInfo {
                    kubelet_version: "v1.32.0-keelson".into(),
                    os_image: "Debian GNU/Linux 12 (bookworm)".into(),
                    kernel_version: "6.1.0-18-amd64".into(),
                    container_runtime_version: "keelson://0.1.0".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(node_status(&n), "Ready,SchedulingDisabled");
        assert_eq!(
            row(&n.clone().into_object(), true, now()),
            [
                "n1",
                "Ready,SchedulingDisabled",
                "<none>",
                "60m",
                "v1.32.0-keelson",
                "127.0.0.11",
                "<none>",
                "Debian GNU/Linux 12 (bookworm)",
                "6.1.0-18-amd64",
                "keelson://0.1.0",
            ]
        );
        n.metadata = meta("n1", "");
        n.spec = None;
        n.status = None;
        assert_eq!(node_status(&n), "Unknown");
        assert_eq!(
            row(&n.into_object(), true, now())[3..],
            [
                "<unknown>",
                "",
                "<none>",
                "<none>",
                "<unknown>",
                "<unknown>",
                "<unknown>"
            ]
        );
    }

    #[test]
    fn event_lease_and_namespace_rows() {
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
            row(&e.into_object(), true, now()),
            vec!["30s", "Normal", "Started", "pod/web-1", "started"]
        );
        let l = v1::Lease {
            metadata: meta("kube-scheduler", "2024-05-01T09:00:00Z"),
            spec: Some(v1::LeaseSpec {
                holder_identity: "m1".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            row(&l.into_object(), false, now()),
            ["kube-scheduler", "m1", "60m"]
        );
        let ns = v1::Namespace {
            metadata: meta("prod", "2024-05-01T09:00:00Z"),
            ..Default::default()
        };
        assert_eq!(
            row(&ns.into_object(), false, now()),
            ["prod", "Active", "60m"]
        );
    }
}
