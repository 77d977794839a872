//! The defaults the API server fills in before validating and storing an
//! object, as Kubernetes does: `apiVersion` and `kind`, a Pod's restart
//! policy and probe timings, a Deployment's rolling-update strategy, a
//! Service's type and target ports...
//!
//! [`apply`] only fills fields that are empty (zero, `None`), so applying it
//! twice changes nothing the second time; a missing `spec` is left missing
//! for validation to report.

use keelson_proto::api::object::Kind as Variant;
use keelson_proto::api::Object;
use keelson_proto::v1;

use crate::kinds::kind_of;

/// Seconds a Pod gets to stop after SIGTERM.
const TERMINATION_GRACE_PERIOD_SECONDS: i64 = 30;
const PROBE_TIMEOUT_SECONDS: i32 = 1;
const PROBE_PERIOD_SECONDS: i32 = 10;
const PROBE_SUCCESS_THRESHOLD: i32 = 1;
const PROBE_FAILURE_THRESHOLD: i32 = 3;
const REPLICAS: i32 = 1;
const MAX_SURGE: &str = "25%";
const MAX_UNAVAILABLE: &str = "25%";
const REVISION_HISTORY_LIMIT: i32 = 10;
const PROGRESS_DEADLINE_SECONDS: i32 = 600;
const EVENT_COUNT: i32 = 1;

fn default_str(field: &mut String, value: &str) {
    if field.is_empty() {
        value.clone_into(field);
    }
}

fn default_num(field: &mut i32, value: i32) {
    if *field == 0 {
        *field = value;
    }
}

fn probe(p: &mut v1::Probe) {
    default_num(&mut p.timeout_seconds, PROBE_TIMEOUT_SECONDS);
    default_num(&mut p.period_seconds, PROBE_PERIOD_SECONDS);
    default_num(&mut p.success_threshold, PROBE_SUCCESS_THRESHOLD);
    default_num(&mut p.failure_threshold, PROBE_FAILURE_THRESHOLD);
    if let Some(h) = p.http_get.as_mut() {
        default_str(&mut h.path, "/");
        default_str(&mut h.scheme, "HTTP");
    }
}

/// Kubernetes' default `imagePullPolicy`: Always for an image without a
/// tag or tagged `latest`, IfNotPresent for any other tag or a digest.
pub fn default_pull_policy(image: &str) -> &'static str {
    let last = image.rsplit('/').next().unwrap_or(image);
    if last.contains('@') {
        return "IfNotPresent";
    }
    match last.split_once(':') {
        Some((_, tag)) if tag != "latest" => "IfNotPresent",
        _ => "Always",
    }
}

/// A Pod's spec, or a template's.
fn pod_spec(s: &mut v1::PodSpec) {
    default_str(&mut s.restart_policy, "Always");
    default_str(&mut s.dns_policy, "ClusterFirst");
    // A volume without a source is an emptyDir, as in Kubernetes.
    for v in &mut s.volumes {
        if v.empty_dir.is_none()
            && v.host_path.is_none()
            && v.config_map.is_none()
            && v.secret.is_none()
        {
            v.empty_dir = Some(Default::default());
        }
    }
    s.termination_grace_period_seconds
        .get_or_insert(TERMINATION_GRACE_PERIOD_SECONDS);
    for c in &mut s.containers {
        let policy = default_pull_policy(&c.image);
        default_str(&mut c.image_pull_policy, policy);
        for port in &mut c.ports {
            default_str(&mut port.protocol, "TCP");
        }
        for p in [
            &mut c.liveness_probe,
            &mut c.readiness_probe,
            &mut c.startup_probe,
        ]
        .into_iter()
        .flatten()
        {
            probe(p);
        }
    }
    // An empty operator means Equal; with an empty key only Exists is
    // valid, so that case is left for validation to report.
    for t in &mut s.tolerations {
        if !t.key.is_empty() {
            default_str(&mut t.operator, "Equal");
        }
    }
}

fn template(t: Option<&mut v1::PodTemplateSpec>) {
    if let Some(spec) = t.and_then(|t| t.spec.as_mut()) {
        pod_spec(spec);
    }
}

fn deployment(s: &mut v1::DeploymentSpec) {
    s.replicas.get_or_insert(REPLICAS);
    let strategy = s.strategy.get_or_insert_with(Default::default);
    default_str(&mut strategy.r#type, "RollingUpdate");
    if strategy.r#type == "RollingUpdate" {
        let ru = strategy.rolling_update.get_or_insert_with(Default::default);
        default_str(&mut ru.max_surge, MAX_SURGE);
        default_str(&mut ru.max_unavailable, MAX_UNAVAILABLE);
    }
    s.revision_history_limit
        .get_or_insert(REVISION_HISTORY_LIMIT);
    s.progress_deadline_seconds
        .get_or_insert(PROGRESS_DEADLINE_SECONDS);
    template(s.template.as_mut());
}

fn service(s: &mut v1::ServiceSpec) {
    default_str(&mut s.r#type, "ClusterIP");
    default_str(&mut s.session_affinity, "None");
    for p in &mut s.ports {
        default_str(&mut p.protocol, "TCP");
        if p.target_port.is_empty() && p.port != 0 {
            p.target_port = p.port.to_string();
        }
    }
}

/// Fills Kubernetes' defaults into `o`, in place.
pub fn apply(o: &mut Object) {
    let Some(kind) = kind_of(o) else { return };
    let Some(variant) = o.kind.as_mut() else {
        return;
    };
    crate::with_object!(&mut *variant, x => {
        kind.api_version().clone_into(&mut x.api_version);
        kind.name().clone_into(&mut x.kind);
    });
    match variant {
        Variant::Pod(p) => {
            if let Some(s) = p.spec.as_mut() {
                pod_spec(s);
            }
            let status = p.status.get_or_insert_with(Default::default);
            default_str(&mut status.phase, "Pending");
        }
        Variant::ReplicaSet(rs) => {
            if let Some(s) = rs.spec.as_mut() {
                s.replicas.get_or_insert(REPLICAS);
                template(s.template.as_mut());
            }
        }
        Variant::Deployment(d) => {
            if let Some(s) = d.spec.as_mut() {
                deployment(s);
            }
        }
        Variant::Service(s) => {
            if let Some(s) = s.spec.as_mut() {
                service(s);
            }
        }
        Variant::Endpoints(ep) => {
            for port in ep.subsets.iter_mut().flat_map(|s| s.ports.iter_mut()) {
                default_str(&mut port.protocol, "TCP");
            }
        }
        Variant::Event(ev) => {
            default_str(&mut ev.r#type, "Normal");
            default_num(&mut ev.count, EVENT_COUNT);
        }
        Variant::Namespace(ns) => {
            let status = ns.status.get_or_insert_with(Default::default);
            default_str(&mut status.phase, "Active");
        }
        Variant::Secret(sec) => {
            default_str(&mut sec.r#type, "Opaque");
            // stringData is write-only: merged over data, never stored.
            for (k, v) in std::mem::take(&mut sec.string_data) {
                sec.data.insert(k, v.into_bytes());
            }
        }
        Variant::Job(j) => {
            if let Some(s) = j.spec.as_mut() {
                job(s);
            }
        }
        Variant::StatefulSet(sts) => {
            if let Some(s) = sts.spec.as_mut() {
                s.replicas.get_or_insert(REPLICAS);
                default_str(&mut s.pod_management_policy, "OrderedReady");
                let u = s.update_strategy.get_or_insert_with(Default::default);
                default_str(&mut u.r#type, "RollingUpdate");
                if u.r#type == "RollingUpdate" {
                    let ru = u.rolling_update.get_or_insert_with(Default::default);
                    ru.partition.get_or_insert(0);
                }
                s.revision_history_limit
                    .get_or_insert(REVISION_HISTORY_LIMIT);
                template(s.template.as_mut());
            }
        }
        Variant::DaemonSet(ds) => {
            if let Some(s) = ds.spec.as_mut() {
                let u = s.update_strategy.get_or_insert_with(Default::default);
                default_str(&mut u.r#type, "RollingUpdate");
                if u.r#type == "RollingUpdate" {
                    let ru = u.rolling_update.get_or_insert_with(Default::default);
                    default_str(&mut ru.max_unavailable, "1");
                    default_str(&mut ru.max_surge, "0");
                }
                s.revision_history_limit
                    .get_or_insert(REVISION_HISTORY_LIMIT);
                template(s.template.as_mut());
            }
        }
        Variant::CronJob(cj) => {
            if let Some(s) = cj.spec.as_mut() {
                default_str(&mut s.concurrency_policy, "Allow");
                s.suspend.get_or_insert(false);
                s.successful_jobs_history_limit.get_or_insert(3);
                s.failed_jobs_history_limit.get_or_insert(1);
                // Kubernetes defaults the pod template inside, not the
                // Job spec (the Job gets its defaults when created).
                let t = s.job_template.as_mut().and_then(|t| t.spec.as_mut());
                template(t.and_then(|s| s.template.as_mut()));
            }
        }
        Variant::RoleBinding(b) => rbac_binding(&mut b.subjects, b.role_ref.as_mut()),
        Variant::ClusterRoleBinding(b) => rbac_binding(&mut b.subjects, b.role_ref.as_mut()),
        Variant::Node(_)
        | Variant::Lease(_)
        | Variant::ConfigMap(_)
        | Variant::ControllerRevision(_)
        | Variant::ServiceAccount(_)
        | Variant::Role(_)
        | Variant::ClusterRole(_) => {}
    }
}

/// The RBAC API group.
pub const RBAC_GROUP: &str = "rbac.authorization.k8s.io";

/// Kubernetes' binding defaults: the role's API group, and a subject's
/// (none for a ServiceAccount, the RBAC group for a User or a Group).
fn rbac_binding(subjects: &mut [v1::Subject], role_ref: Option<&mut v1::RoleRef>) {
    if let Some(r) = role_ref {
        default_str(&mut r.api_group, RBAC_GROUP);
    }
    for s in subjects {
        if s.kind == "User" || s.kind == "Group" {
            default_str(&mut s.api_group, RBAC_GROUP);
        }
    }
}

/// Kubernetes' Job defaults (`SetDefaults_Job`).
fn job(s: &mut v1::JobSpec) {
    if s.completions.is_none() && s.parallelism.is_none() {
        s.completions = Some(1);
    }
    s.parallelism.get_or_insert(1);
    s.backoff_limit.get_or_insert(JOB_BACKOFF_LIMIT);
    default_str(&mut s.completion_mode, "NonIndexed");
    s.suspend.get_or_insert(false);
    s.manual_selector.get_or_insert(false);
    template(s.template.as_mut());
}

/// The label a Job's selector and pods carry: the Job's uid.
pub const JOB_CONTROLLER_UID_LABEL: &str = "batch.kubernetes.io/controller-uid";
/// The label a Job's pods carry: the Job's name.
pub const JOB_NAME_LABEL: &str = "batch.kubernetes.io/job-name";
/// Kubernetes' default `backoffLimit`.
pub const JOB_BACKOFF_LIMIT: i32 = 6;

/// Defaults that need the object's name and uid, applied once on create:
/// a Job without `manualSelector` selects its pods by its uid (the
/// selector and the template's labels, as Kubernetes' job strategy
/// generates them; what the user set is kept, and validation refuses a
/// selector that is not the generated one).
pub fn on_create(o: &mut Object) {
    let Some(Variant::Job(j)) = o.kind.as_mut() else {
        return;
    };
    let (name, uid) = match j.metadata.as_ref() {
        Some(m) => (m.name.clone(), m.uid.clone()),
        None => return,
    };
    let Some(spec) = j.spec.as_mut() else { return };
    if spec.manual_selector == Some(true) {
        return;
    }
    let t = spec.template.get_or_insert_with(Default::default);
    let labels = &mut t.metadata.get_or_insert_with(Default::default).labels;
    for (k, v) in [
        (JOB_CONTROLLER_UID_LABEL, &uid),
        (JOB_NAME_LABEL, &name),
        ("controller-uid", &uid),
        ("job-name", &name),
    ] {
        labels.entry(k.to_string()).or_insert_with(|| v.clone());
    }
    spec.selector
        .get_or_insert_with(Default::default)
        .match_labels
        .entry(JOB_CONTROLLER_UID_LABEL.to_string())
        .or_insert(uid);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validation::validate;
    use crate::Resource;
    use serde::de::DeserializeOwned;
    use serde_json::{json, Value};

    fn obj<T: Resource + DeserializeOwned>(v: Value) -> Object {
        serde_json::from_value::<T>(v).unwrap().into_object()
    }

    fn applied(o: &Object) -> Object {
        let mut o = o.clone();
        apply(&mut o);
        o
    }

    fn minimal_deployment() -> Object {
        obj::<v1::Deployment>(json!({
            "metadata": {"name": "web"},
            "spec": {
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "web", "image": "nginx"}]}
                }
            }
        }))
    }

    #[test]
    fn pod_defaults() {
        let pod = obj::<v1::Pod>(json!({
            "metadata": {"name": "p"},
            "spec": {
                "containers": [{
                    "name": "c", "image": "i",
                    "ports": [{"containerPort": 80}, {"containerPort": 53, "protocol": "UDP"}],
                    "livenessProbe": {"httpGet": {"port": 80}},
                    "readinessProbe": {"exec": {"command": ["true"]}, "periodSeconds": 3}
                }],
                "tolerations": [{"key": "k", "value": "v"}, {"operator": "Exists"}],
                "volumes": [{"name": "scratch"}, {"name": "h", "hostPath": {"path": "/tmp"}},
                            {"name": "c", "configMap": {"name": "cfg"}},
                            {"name": "s", "secret": {"secretName": "db"}}]
            }
        }));
        let Some(v1::Pod {
            api_version,
            kind,
            spec: Some(s),
            status: Some(st),
            ..
        }) = v1::Pod::from_object(applied(&pod))
        else {
            panic!("not a pod with spec and status");
        };
        assert_eq!((api_version.as_str(), kind.as_str()), ("v1", "Pod"));
        assert_eq!(st.phase, "Pending");
        assert_eq!(s.restart_policy, "Always");
        assert_eq!(s.dns_policy, "ClusterFirst");
        assert_eq!(s.termination_grace_period_seconds, Some(30));
        let c = &s.containers[0];
        assert_eq!(c.ports[0].protocol, "TCP");
        assert_eq!(c.ports[1].protocol, "UDP");
        let live = c.liveness_probe.clone().unwrap();
        let get = live.http_get.unwrap();
        assert_eq!((get.path.as_str(), get.scheme.as_str()), ("/", "HTTP"));
        assert_eq!(
            (
                live.timeout_seconds,
                live.period_seconds,
                live.success_threshold,
                live.failure_threshold
            ),
            (1, 10, 1, 3)
        );
        assert_eq!(c.readiness_probe.as_ref().unwrap().period_seconds, 3);
        assert_eq!(s.tolerations[0].operator, "Equal");
        assert_eq!(s.tolerations[1].operator, "Exists");
        // An image without a tag is pulled Always; a volume without a
        // source is an emptyDir.
        assert_eq!(c.image_pull_policy, "Always");
        assert!(s.volumes[0].empty_dir.is_some());
        assert!(s.volumes[1].empty_dir.is_none());
        assert!(s.volumes[2].empty_dir.is_none());
        assert!(s.volumes[3].empty_dir.is_none());
    }

    #[test]
    fn pull_policy_follows_the_tag() {
        for (image, policy) in [
            ("busybox", "Always"),
            ("busybox:latest", "Always"),
            ("busybox:1.35", "IfNotPresent"),
            ("127.0.0.1:5000/busybox", "Always"),
            ("127.0.0.1:5000/busybox:1", "IfNotPresent"),
            ("r.example/b@sha256:00", "IfNotPresent"),
        ] {
            assert_eq!(default_pull_policy(image), policy, "{image}");
        }
    }

    #[test]
    fn deployment_defaults_then_validate() {
        let d = applied(&minimal_deployment());
        assert_eq!(validate(&d), Ok(()));
        let Some(v1::Deployment {
            api_version,
            kind,
            spec: Some(s),
            ..
        }) = v1::Deployment::from_object(d)
        else {
            panic!("not a deployment with spec");
        };
        assert_eq!(
            (api_version.as_str(), kind.as_str()),
            ("apps/v1", "Deployment")
        );
        assert_eq!(s.replicas, Some(1));
        assert_eq!(s.revision_history_limit, Some(10));
        assert_eq!(s.progress_deadline_seconds, Some(600));
        let strategy = s.strategy.unwrap();
        assert_eq!(strategy.r#type, "RollingUpdate");
        let ru = strategy.rolling_update.unwrap();
        assert_eq!(
            (ru.max_surge.as_str(), ru.max_unavailable.as_str()),
            ("25%", "25%")
        );
        let t = s.template.unwrap().spec.unwrap();
        assert_eq!(t.restart_policy, "Always");

        // Explicit values are kept; Recreate gets no rollingUpdate.
        let d = obj::<v1::Deployment>(json!({
            "spec": {"replicas": 0, "strategy": {"type": "Recreate"}, "revisionHistoryLimit": 2}
        }));
        let s = v1::Deployment::from_object(applied(&d))
            .unwrap()
            .spec
            .unwrap();
        assert_eq!((s.replicas, s.revision_history_limit), (Some(0), Some(2)));
        assert_eq!(s.strategy.unwrap().rolling_update, None);
        // A partly given rollingUpdate is completed.
        let d = obj::<v1::Deployment>(
            json!({"spec": {"strategy": {"rollingUpdate": {"maxSurge": 2}}}}),
        );
        let ru = v1::Deployment::from_object(applied(&d))
            .unwrap()
            .spec
            .unwrap()
            .strategy
            .unwrap();
        assert_eq!(ru.r#type, "RollingUpdate");
        let ru = ru.rolling_update.unwrap();
        assert_eq!(
            (ru.max_surge.as_str(), ru.max_unavailable.as_str()),
            ("2", "25%")
        );
    }

    #[test]
    fn other_defaults() {
        let svc = obj::<v1::Service>(json!({
            "metadata": {"name": "s"},
            "spec": {"ports": [{"port": 80}, {"port": 53, "protocol": "UDP", "targetPort": "dns"}]}
        }));
        let s = v1::Service::from_object(applied(&svc))
            .unwrap()
            .spec
            .unwrap();
        assert_eq!(
            (s.r#type.as_str(), s.session_affinity.as_str()),
            ("ClusterIP", "None")
        );
        assert_eq!(
            (
                s.ports[0].protocol.as_str(),
                s.ports[0].target_port.as_str()
            ),
            ("TCP", "80")
        );
        assert_eq!(
            (
                s.ports[1].protocol.as_str(),
                s.ports[1].target_port.as_str()
            ),
            ("UDP", "dns")
        );

        let rs = obj::<v1::ReplicaSet>(json!({"spec": {"template": {"spec": {"containers": []}}}}));
        let s = v1::ReplicaSet::from_object(applied(&rs))
            .unwrap()
            .spec
            .unwrap();
        assert_eq!(s.replicas, Some(1));
        assert_eq!(s.template.unwrap().spec.unwrap().restart_policy, "Always");

        let ev = v1::Event::from_object(applied(&obj::<v1::Event>(json!({})))).unwrap();
        assert_eq!(
            (ev.r#type.as_str(), ev.count, ev.kind.as_str()),
            ("Normal", 1, "Event")
        );
        let ns = v1::Namespace::from_object(applied(&obj::<v1::Namespace>(json!({})))).unwrap();
        assert_eq!(ns.status.unwrap().phase, "Active");
        let lease = v1::Lease::from_object(applied(&obj::<v1::Lease>(json!({})))).unwrap();
        assert_eq!(lease.api_version, "coordination.k8s.io/v1");
        let ep = obj::<v1::Endpoints>(json!({"subsets": [{"ports": [{"port": 80}]}]}));
        let ep = v1::Endpoints::from_object(applied(&ep)).unwrap();
        assert_eq!(ep.subsets[0].ports[0].protocol, "TCP");

        let mut empty = Object::default();
        apply(&mut empty);
        assert_eq!(empty, Object::default());
    }

    #[test]
    fn idempotent() {
        let objects = [
            minimal_deployment(),
            obj::<v1::Pod>(json!({"spec": {"containers": [{"name": "c", "image": "i",
                "ports": [{"containerPort": 1}], "startupProbe": {"tcpSocket": {"port": 1}}}],
                "tolerations": [{"key": "a"}, {"value": "b"}]}})),
            obj::<v1::ReplicaSet>(json!({"spec": {}})),
            obj::<v1::Service>(json!({"spec": {"ports": [{"port": 0}, {"port": 8}]}})),
            obj::<v1::Event>(json!({"count": 5})),
            obj::<v1::Namespace>(json!({"status": {"phase": "Terminating"}})),
            obj::<v1::Node>(json!({})),
            obj::<v1::Endpoints>(json!({})),
            obj::<v1::Lease>(json!({})),
            obj::<v1::Deployment>(json!({"kind": "Wrong", "apiVersion": "v0"})),
        ];
        for o in &objects {
            let once = applied(o);
            assert_eq!(applied(&once), once);
            assert_eq!(crate::kinds::kind_of(&once), crate::kinds::kind_of(o));
        }
    }
}
