//! Validation of objects as the API server receives them: every problem at
//! once, each a message naming the field in Kubernetes' style:
//!
//! ```text
//! metadata.name: Invalid value "Web_1": must be a lowercase RFC 1123 subdomain ...
//! spec.containers[0].image: Required value
//! ```
//!
//! [`validate`] checks one object on its own; [`validate_update`] checks
//! only what may not change between two versions (the caller checks
//! name, namespace and uid, and validates the new object itself).
//! Nothing here panics, whatever the input.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Debug;
use std::net::IpAddr;

use keelson_proto::api::object::Kind as Variant;
use keelson_proto::api::Object;
use keelson_proto::v1;

use crate::kinds::{kind_of, meta_of, Kind};
use crate::quantity;
use crate::selector::LabelSelector;

/// Longest DNS-1123 label (namespace, service and container names).
const DNS1123_LABEL_MAX: usize = 63;
/// Longest DNS-1123 subdomain (most object names, label key prefixes).
const DNS1123_SUBDOMAIN_MAX: usize = 253;
/// Longest label value, and name part of a label key.
const LABEL_NAME_MAX: usize = 63;
/// Longest IANA service name (container port names).
const IANA_SVC_NAME_MAX: usize = 15;
/// Highest TCP/UDP port.
const PORT_MAX: i32 = 65535;
/// Longest grace period accepted (a year): deadlines must stay representable.
pub const GRACE_PERIOD_MAX_SECS: i64 = 365 * 24 * 3600;
/// The node port range.
const NODE_PORT_MIN: i32 = 30000;
const NODE_PORT_MAX: i32 = 32767;
/// Highest percentage of `maxUnavailable`.
const PERCENT_MAX: i64 = 100;
/// Stands for the random suffix appended to `generateName`.
const GENERATED_SUFFIX: &str = "x1234";

const PROTOCOLS: &[&str] = &["TCP", "UDP", "SCTP"];
const RESTART_POLICIES: &[&str] = &["Always", "OnFailure", "Never"];
const TEMPLATE_RESTART_POLICIES: &[&str] = &["Always"];
const TAINT_EFFECTS: &[&str] = &["NoSchedule", "PreferNoSchedule", "NoExecute"];
const TOLERATION_OPERATORS: &[&str] = &["Exists", "Equal"];
const PROBE_SCHEMES: &[&str] = &["HTTP", "HTTPS"];
const SELECTOR_OPERATORS: &[&str] = &["In", "NotIn", "Exists", "DoesNotExist"];
const STRATEGY_TYPES: &[&str] = &["RollingUpdate", "Recreate"];
const SERVICE_TYPES: &[&str] = &["ClusterIP", "NodePort", "LoadBalancer"];
const SESSION_AFFINITIES: &[&str] = &["None", "ClientIP"];
const EVENT_TYPES: &[&str] = &["Normal", "Warning"];
const CONTAINER_RESOURCES: &[&str] = &["cpu", "memory", "ephemeral-storage", "pods"];

const MSG_SUBDOMAIN: &str = "must be a lowercase RFC 1123 subdomain: lowercase alphanumerics, \
     '-' or '.', starting and ending with an alphanumeric, at most 253 characters (e.g. 'example.com')";
const MSG_LABEL: &str = "must be a lowercase RFC 1123 label: lowercase alphanumerics or '-', \
     starting and ending with an alphanumeric, at most 63 characters (e.g. 'my-name')";
const MSG_LABEL_KEY: &str = "must be an optional DNS subdomain prefix and '/', then a name of at \
     most 63 alphanumerics, '-', '_' or '.', starting and ending with an alphanumeric \
     (e.g. 'app' or 'example.com/app')";
const MSG_LABEL_VALUE: &str = "must be empty or at most 63 alphanumerics, '-', '_' or '.', \
     starting and ending with an alphanumeric";
const MSG_PORT_NAME: &str = "must be an IANA service name: at most 15 lowercase alphanumerics \
     or '-', with at least one letter, not starting or ending with '-' and without '--'";
const MSG_PORT: &str = "must be between 1 and 65535, inclusive";
const MSG_NON_NEGATIVE: &str = "must be greater than or equal to 0";
const MSG_IP: &str = "must be a valid IP address";
const MSG_CONFIG_KEY: &str = "a valid config key must consist of alphanumeric characters, '-',      '_' or '.' (e.g. 'key.name', or 'KEY_NAME', or 'key-name', regex used for validation is      '[-._a-zA-Z0-9]+')";
const MSG_RELATIVE_PATH: &str = "must be a relative path without '..'";

/// The problems found so far.
#[derive(Default)]
struct Errors(Vec<String>);

impl Errors {
    fn required(&mut self, path: &str) {
        self.0.push(format!("{path}: Required value"));
    }

    fn required_because(&mut self, path: &str, why: &str) {
        self.0.push(format!("{path}: Required value: {why}"));
    }

    fn invalid(&mut self, path: &str, value: impl Debug, why: &str) {
        self.0
            .push(format!("{path}: Invalid value {value:?}: {why}"));
    }

    fn forbidden(&mut self, path: &str, why: &str) {
        self.0.push(format!("{path}: Forbidden: {why}"));
    }

    fn duplicate(&mut self, path: &str, value: impl Debug) {
        self.0.push(format!("{path}: Duplicate value {value:?}"));
    }

    fn unsupported(&mut self, path: &str, value: &str, supported: &[&str]) {
        let list: Vec<String> = supported.iter().map(|s| format!("{s:?}")).collect();
        self.0.push(format!(
            "{path}: Unsupported value {value:?}: supported values: {}",
            list.join(", ")
        ));
    }

    /// `value` must be empty (the default) or one of `supported`.
    fn empty_or_one_of(&mut self, path: &str, value: &str, supported: &[&str]) {
        if !value.is_empty() && !supported.contains(&value) {
            self.unsupported(path, value, supported);
        }
    }

    fn too_long(&mut self, path: &str, max_bytes: usize) {
        self.0.push(format!(
            "{path}: Too long: must have at most {max_bytes} bytes"
        ));
    }

    fn non_negative(&mut self, path: &str, value: impl Into<i64>) {
        let value = value.into();
        if value < 0 {
            self.invalid(path, value, MSG_NON_NEGATIVE);
        }
    }

    fn port(&mut self, path: &str, port: i32) {
        if !(1..=PORT_MAX).contains(&port) {
            self.invalid(path, port, MSG_PORT);
        }
    }

    fn into_result(self) -> Result<(), Vec<String>> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(self.0)
        }
    }
}

// ---- names ----

fn alnum_ends(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.ends_with(|c: char| c.is_ascii_alphanumeric())
}

/// Lowercase alphanumerics and '-', starting and ending with an alphanumeric.
fn is_label_shaped(s: &str) -> bool {
    alnum_ends(s)
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// A DNS-1123 label: `my-name`, at most 63 characters, no dots.
pub fn is_dns1123_label(s: &str) -> bool {
    s.len() <= DNS1123_LABEL_MAX && is_label_shaped(s)
}

/// A DNS-1123 subdomain: dot-separated labels, at most 253 characters.
pub fn is_dns1123_subdomain(s: &str) -> bool {
    s.len() <= DNS1123_SUBDOMAIN_MAX && s.split('.').all(is_label_shaped)
}

/// The name part of a label key, or a non-empty label value.
fn is_qualified_name_part(s: &str) -> bool {
    s.len() <= LABEL_NAME_MAX
        && alnum_ends(s)
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// A label (or annotation, node selector, taint) key: `app`,
/// `example.com/app`.
pub fn is_label_key(s: &str) -> bool {
    match s.split_once('/') {
        Some((prefix, name)) => is_dns1123_subdomain(prefix) && is_qualified_name_part(name),
        None => is_qualified_name_part(s),
    }
}

/// A label value: empty, or like the name part of a key.
pub fn is_label_value(s: &str) -> bool {
    s.is_empty() || is_qualified_name_part(s)
}

/// An IANA service name, as container and probe ports are named: `http`.
fn is_iana_svc_name(s: &str) -> bool {
    s.len() <= IANA_SVC_NAME_MAX
        && is_label_shaped(s)
        && s.chars().any(|c| c.is_ascii_lowercase())
        && !s.contains("--")
}

/// An environment variable name: `[-._a-zA-Z][-._a-zA-Z0-9]*`.
fn is_env_var_name(s: &str) -> bool {
    !s.starts_with(|c: char| c.is_ascii_digit())
        && !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn is_ip(s: &str) -> bool {
    s.parse::<IpAddr>().is_ok()
}

// ---- shared pieces ----

fn check_labels(e: &mut Errors, path: &str, labels: &BTreeMap<String, String>) {
    for (key, value) in labels {
        if !is_label_key(key) {
            e.invalid(path, key, MSG_LABEL_KEY);
        }
        if !is_label_value(value) {
            e.invalid(&format!("{path}[{key}]"), value, MSG_LABEL_VALUE);
        }
    }
}

fn check_annotations(e: &mut Errors, path: &str, annotations: &BTreeMap<String, String>) {
    for key in annotations.keys().filter(|k| !is_label_key(k)) {
        e.invalid(path, key, MSG_LABEL_KEY);
    }
}

fn check_meta(e: &mut Errors, kind: Kind, meta: Option<&v1::ObjectMeta>) {
    let default = v1::ObjectMeta::default();
    let m = meta.unwrap_or(&default);
    let (valid_name, msg): (fn(&str) -> bool, &str) = match kind {
        Kind::Namespace | Kind::Service => (is_dns1123_label, MSG_LABEL),
        _ => (is_dns1123_subdomain, MSG_SUBDOMAIN),
    };
    if !m.name.is_empty() {
        if !valid_name(&m.name) {
            e.invalid("metadata.name", &m.name, msg);
        }
    } else if m.generate_name.is_empty() {
        e.required_because("metadata.name", "name or generateName is required");
    } else if !valid_name(&format!("{}{GENERATED_SUFFIX}", m.generate_name)) {
        e.invalid("metadata.generateName", &m.generate_name, msg);
    }
    if !m.namespace.is_empty() && !is_dns1123_label(&m.namespace) {
        e.invalid("metadata.namespace", &m.namespace, MSG_LABEL);
    }
    check_labels(e, "metadata.labels", &m.labels);
    check_annotations(e, "metadata.annotations", &m.annotations);
    for (i, r) in m.owner_references.iter().enumerate() {
        for (field, value) in [
            ("apiVersion", &r.api_version),
            ("kind", &r.kind),
            ("name", &r.name),
            ("uid", &r.uid),
        ] {
            if value.is_empty() {
                e.required(&format!("metadata.ownerReferences[{i}].{field}"));
            }
        }
    }
}

/// An int-or-string port: 1..=65535 or an IANA service name. Returns the
/// name when it is one.
fn check_int_or_name<'a>(e: &mut Errors, path: &str, port: &'a str) -> Option<&'a str> {
    match port.parse::<i64>() {
        Ok(n) if (1..=i64::from(PORT_MAX)).contains(&n) => None,
        Ok(n) => {
            e.invalid(path, n, MSG_PORT);
            None
        }
        Err(_) if is_iana_svc_name(port) => Some(port),
        Err(_) => {
            e.invalid(path, port, MSG_PORT_NAME);
            None
        }
    }
}

// ---- pods ----

/// `policies`: the restart policies allowed (a pod's, or a template's).
fn check_pod_spec(e: &mut Errors, p: &str, spec: Option<&v1::PodSpec>, policies: &[&str]) {
    let Some(spec) = spec else {
        e.required(p);
        return;
    };
    if spec.containers.is_empty() {
        e.required(&format!("{p}.containers"));
    }
    let mut names = HashSet::new();
    let mut port_names = HashSet::new();
    let volumes = check_volumes(e, p, &spec.volumes);
    for (i, c) in spec.containers.iter().enumerate() {
        let cp = format!("{p}.containers[{i}]");
        check_container(e, &cp, c, &mut names, &mut port_names);
        check_mounts(e, &cp, c, &volumes);
    }
    e.empty_or_one_of(
        &format!("{p}.restartPolicy"),
        &spec.restart_policy,
        policies,
    );
    e.empty_or_one_of(
        &format!("{p}.dnsPolicy"),
        &spec.dns_policy,
        &["ClusterFirst", "ClusterFirstWithHostNet", "Default", "None"],
    );
    if let Some(t) = spec.termination_grace_period_seconds {
        e.non_negative(&format!("{p}.terminationGracePeriodSeconds"), t);
        if t > GRACE_PERIOD_MAX_SECS {
            e.invalid(
                &format!("{p}.terminationGracePeriodSeconds"),
                t,
                "must be at most a year (31536000)",
            );
        }
    }
    check_labels(e, &format!("{p}.nodeSelector"), &spec.node_selector);
    if !spec.node_name.is_empty() && !is_dns1123_subdomain(&spec.node_name) {
        e.invalid(&format!("{p}.nodeName"), &spec.node_name, MSG_SUBDOMAIN);
    }
    if !spec.hostname.is_empty() && !is_dns1123_label(&spec.hostname) {
        e.invalid(&format!("{p}.hostname"), &spec.hostname, MSG_LABEL);
    }
    if !spec.subdomain.is_empty() && !is_dns1123_label(&spec.subdomain) {
        e.invalid(&format!("{p}.subdomain"), &spec.subdomain, MSG_LABEL);
    }
    for (i, t) in spec.tolerations.iter().enumerate() {
        check_toleration(e, &format!("{p}.tolerations[{i}]"), t);
    }
}

const HOST_PATH_TYPES: &[&str] = &[
    "",
    "DirectoryOrCreate",
    "Directory",
    "FileOrCreate",
    "File",
    "Socket",
    "CharDevice",
    "BlockDevice",
];

/// A pod's volumes; the names of the valid ones.
fn check_volumes(e: &mut Errors, p: &str, volumes: &[v1::Volume]) -> HashSet<String> {
    let mut names = HashSet::new();
    for (i, v) in volumes.iter().enumerate() {
        let vp = format!("{p}.volumes[{i}]");
        if v.name.is_empty() {
            e.required(&format!("{vp}.name"));
        } else if !is_dns1123_label(&v.name) {
            e.invalid(&format!("{vp}.name"), &v.name, MSG_LABEL);
        } else if !names.insert(v.name.clone()) {
            e.duplicate(&format!("{vp}.name"), &v.name);
        }
        let sources = [
            ("emptyDir", v.empty_dir.is_some()),
            ("hostPath", v.host_path.is_some()),
            ("configMap", v.config_map.is_some()),
            ("secret", v.secret.is_some()),
        ];
        let mut given = sources.iter().filter(|(_, set)| *set).map(|(n, _)| *n);
        match (given.next(), given.next()) {
            (None, _) => e.required_because(&vp, "must specify a volume type"),
            (Some(_), Some(second)) => e.forbidden(
                &format!("{vp}.{second}"),
                "may not specify more than 1 volume type",
            ),
            (Some(_), None) => {}
        }
        if let Some(c) = &v.config_map {
            let cp = format!("{vp}.configMap");
            check_projected(e, &cp, "name", &c.name, &c.items, c.default_mode);
        }
        if let Some(sec) = &v.secret {
            let sp = format!("{vp}.secret");
            check_projected(
                e,
                &sp,
                "secretName",
                &sec.secret_name,
                &sec.items,
                sec.default_mode,
            );
        }
        match (&v.empty_dir, &v.host_path) {
            (Some(d), None) => {
                e.empty_or_one_of(&format!("{vp}.emptyDir.medium"), &d.medium, &["Memory"]);
                if !d.size_limit.is_empty()
                    && crate::quantity::parse("memory", &d.size_limit).is_err()
                {
                    e.invalid(
                        &format!("{vp}.emptyDir.sizeLimit"),
                        &d.size_limit,
                        "must be a quantity",
                    );
                }
            }
            (None, Some(h)) => {
                if h.path.is_empty() {
                    e.required(&format!("{vp}.hostPath.path"));
                } else if !h.path.starts_with('/') || h.path.split('/').any(|c| c == "..") {
                    e.invalid(
                        &format!("{vp}.hostPath.path"),
                        &h.path,
                        "must be an absolute path without '..'",
                    );
                }
                let t = h.r#type.clone().unwrap_or_default();
                if !HOST_PATH_TYPES.contains(&t.as_str()) {
                    e.unsupported(&format!("{vp}.hostPath.type"), &t, &HOST_PATH_TYPES[1..]);
                }
            }
            _ => {}
        }
    }
    names
}

/// A ConfigMap or Secret volume: the object's name, the keys projected to
/// files and the files' modes.
fn check_projected(
    e: &mut Errors,
    p: &str,
    name_field: &str,
    name: &str,
    items: &[v1::KeyToPath],
    default_mode: Option<i32>,
) {
    if name.is_empty() {
        e.required(&format!("{p}.{name_field}"));
    } else if !is_dns1123_subdomain(name) {
        e.invalid(&format!("{p}.{name_field}"), name, MSG_SUBDOMAIN);
    }
    if let Some(m) = default_mode {
        check_mode(e, &format!("{p}.defaultMode"), m);
    }
    let mut paths = HashSet::new();
    for (i, item) in items.iter().enumerate() {
        let ip = format!("{p}.items[{i}]");
        if item.key.is_empty() {
            e.required(&format!("{ip}.key"));
        }
        if item.path.is_empty() {
            e.required(&format!("{ip}.path"));
        } else if !is_relative_path(&item.path) {
            e.invalid(&format!("{ip}.path"), &item.path, MSG_RELATIVE_PATH);
        } else if !paths.insert(item.path.as_str()) {
            e.duplicate(&format!("{ip}.path"), &item.path);
        }
        if let Some(m) = item.mode {
            check_mode(e, &format!("{ip}.mode"), m);
        }
    }
}

/// A file's mode bits: 0 to 0777.
fn check_mode(e: &mut Errors, path: &str, mode: i32) {
    if !(0..=0o777).contains(&mode) {
        e.invalid(
            path,
            mode,
            "must be a number between 0 and 0777 (octal), both inclusive",
        );
    }
}

/// A relative path that stays inside its directory: not absolute, no `..`
/// component, not starting with `..`.
fn is_relative_path(p: &str) -> bool {
    !p.starts_with('/') && !p.split('/').any(|c| c == "..")
}

/// A ConfigMap or Secret key: `[-._a-zA-Z0-9]+`, at most 253 characters,
/// not `.` or `..` (nor starting with `..`).
pub fn is_config_key(k: &str) -> bool {
    !k.is_empty()
        && k.len() <= 253
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && k != "."
        && !k.starts_with("..")
}

/// The most a ConfigMap's or Secret's data may hold (Kubernetes' 1 MiB).
pub const MAX_DATA_BYTES: usize = 1024 * 1024;

fn check_config_keys<'a>(e: &mut Errors, field: &str, keys: impl Iterator<Item = &'a String>) {
    for k in keys {
        if !is_config_key(k) {
            e.invalid(&format!("{field}[{k}]"), k, MSG_CONFIG_KEY);
        }
    }
}

fn check_config_map(e: &mut Errors, cm: &v1::ConfigMap) {
    check_config_keys(e, "data", cm.data.keys());
    check_config_keys(e, "binaryData", cm.binary_data.keys());
    for k in cm.data.keys() {
        if cm.binary_data.contains_key(k) {
            e.invalid(
                &format!("data[{k}]"),
                k,
                "duplicate of key present in binaryData",
            );
        }
    }
    let size: usize = cm
        .data
        .iter()
        .map(|(k, v)| k.len() + v.len())
        .sum::<usize>()
        + cm.binary_data
            .iter()
            .map(|(k, v)| k.len() + v.len())
            .sum::<usize>();
    if size > MAX_DATA_BYTES {
        e.too_long("data", MAX_DATA_BYTES);
    }
}

/// The Secret types Kubernetes defines, and the keys each requires.
const SECRET_TYPES: &[(&str, &[&str])] = &[
    ("kubernetes.io/dockercfg", &[".dockercfg"]),
    ("kubernetes.io/dockerconfigjson", &[".dockerconfigjson"]),
    ("kubernetes.io/ssh-auth", &["ssh-privatekey"]),
    ("kubernetes.io/tls", &["tls.crt", "tls.key"]),
];

fn check_secret(e: &mut Errors, s: &v1::Secret) {
    check_config_keys(e, "data", s.data.keys());
    check_config_keys(e, "stringData", s.string_data.keys());
    let size: usize = s.data.iter().map(|(k, v)| k.len() + v.len()).sum();
    if size > MAX_DATA_BYTES {
        e.too_long("data", MAX_DATA_BYTES);
    }
    if let Some((_, keys)) = SECRET_TYPES.iter().find(|(t, _)| *t == s.r#type) {
        for k in *keys {
            if !s.data.contains_key(*k) {
                e.required(&format!("data[{k}]"));
            }
        }
    }
    match s.r#type.as_str() {
        "kubernetes.io/basic-auth"
            if !s.data.contains_key("username") && !s.data.contains_key("password") =>
        {
            e.required_because(
                "data[username]",
                "at least one of `username` or `password` is required",
            );
        }
        "kubernetes.io/service-account-token" => {
            let named = s.metadata.as_ref().is_some_and(|m| {
                m.annotations
                    .get("kubernetes.io/service-account.name")
                    .is_some_and(|n| !n.is_empty())
            });
            if !named {
                e.required("metadata.annotations[kubernetes.io/service-account.name]");
            }
        }
        "kubernetes.io/dockerconfigjson" | "kubernetes.io/dockercfg" => {
            let key = if s.r#type.ends_with("json") {
                ".dockerconfigjson"
            } else {
                ".dockercfg"
            };
            if let Some(v) = s.data.get(key) {
                if serde_json::from_slice::<serde_json::Value>(v).is_err() {
                    e.invalid(
                        &format!("data[{key}]"),
                        "<secret contents redacted>",
                        "must be valid JSON",
                    );
                }
            }
        }
        _ => {}
    }
}

fn check_mounts(e: &mut Errors, p: &str, c: &v1::Container, volumes: &HashSet<String>) {
    let mut paths = HashSet::new();
    for (j, m) in c.volume_mounts.iter().enumerate() {
        let mp = format!("{p}.volumeMounts[{j}]");
        if m.name.is_empty() {
            e.required(&format!("{mp}.name"));
        } else if !volumes.contains(&m.name) {
            e.invalid(&format!("{mp}.name"), &m.name, "volume not found");
        }
        if m.mount_path.is_empty() {
            e.required(&format!("{mp}.mountPath"));
        } else if !m.mount_path.starts_with('/') || m.mount_path.split('/').any(|c| c == "..") {
            e.invalid(
                &format!("{mp}.mountPath"),
                &m.mount_path,
                "must be an absolute path without '..'",
            );
        } else if !paths.insert(m.mount_path.trim_end_matches('/').to_string()) {
            e.invalid(&format!("{mp}.mountPath"), &m.mount_path, "must be unique");
        }
        if m.sub_path.starts_with('/') || m.sub_path.split('/').any(|c| c == "..") {
            e.invalid(
                &format!("{mp}.subPath"),
                &m.sub_path,
                "must be a relative path without '..'",
            );
        }
    }
}

const MSG_ENV_NAME: &str =
    "must consist of letters, digits, '_', '-' or '.', and must not start with a digit";

/// The downward API's fields an environment variable may read.
const FIELD_PATHS: &[&str] = &[
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
    "spec.nodeName",
    "status.hostIP",
    "status.podIP",
];

/// A `fieldRef.fieldPath` of the downward API: one of [`FIELD_PATHS`] or
/// `metadata.labels['key']` / `metadata.annotations['key']`; the key of
/// the latter, if it is one.
pub fn parse_field_path(path: &str) -> Option<(&str, Option<&str>)> {
    if FIELD_PATHS.contains(&path) {
        return Some((path, None));
    }
    for map in ["metadata.labels", "metadata.annotations"] {
        if let Some(key) = path
            .strip_prefix(map)
            .and_then(|r| r.strip_prefix("['"))
            .and_then(|r| r.strip_suffix("']"))
        {
            return is_label_key(key).then_some((map, Some(key)));
        }
    }
    None
}

fn check_ref_name(e: &mut Errors, path: &str, name: &str) {
    if name.is_empty() {
        e.required(path);
    } else if !is_dns1123_subdomain(name) {
        e.invalid(path, name, MSG_SUBDOMAIN);
    }
}

fn check_env_source(e: &mut Errors, p: &str, value: &str, from: &v1::EnvVarSource) {
    if !value.is_empty() {
        e.invalid(p, "", "may not be specified when `value` is not empty");
    }
    let count = [
        from.config_map_key_ref.is_some(),
        from.secret_key_ref.is_some(),
        from.field_ref.is_some(),
    ]
    .iter()
    .filter(|x| **x)
    .count();
    match count {
        0 => e.invalid(
            p,
            "",
            "must specify one of: `fieldRef`, `configMapKeyRef` or `secretKeyRef`",
        ),
        1 => {}
        _ => e.invalid(
            p,
            "",
            "may not have more than one field specified at a time",
        ),
    }
    let keyed = [
        (
            "configMapKeyRef",
            from.config_map_key_ref.as_ref().map(|r| (&r.name, &r.key)),
        ),
        (
            "secretKeyRef",
            from.secret_key_ref.as_ref().map(|r| (&r.name, &r.key)),
        ),
    ];
    for (field, r) in keyed {
        let Some((name, key)) = r else { continue };
        check_ref_name(e, &format!("{p}.{field}.name"), name);
        if key.is_empty() {
            e.required(&format!("{p}.{field}.key"));
        } else if !is_config_key(key) {
            e.invalid(&format!("{p}.{field}.key"), key, MSG_CONFIG_KEY);
        }
    }
    if let Some(f) = &from.field_ref {
        let fp = format!("{p}.fieldRef.fieldPath");
        if f.field_path.is_empty() {
            e.required(&fp);
        } else if parse_field_path(&f.field_path).is_none() {
            e.unsupported(&fp, &f.field_path, FIELD_PATHS);
        }
        e.empty_or_one_of(&format!("{p}.fieldRef.apiVersion"), &f.api_version, &["v1"]);
    }
}

fn check_container(
    e: &mut Errors,
    p: &str,
    c: &v1::Container,
    names: &mut HashSet<String>,
    port_names: &mut HashSet<String>,
) {
    let name_path = format!("{p}.name");
    if c.name.is_empty() {
        e.required(&name_path);
    } else if !is_dns1123_label(&c.name) {
        e.invalid(&name_path, &c.name, MSG_LABEL);
    } else if !names.insert(c.name.clone()) {
        e.duplicate(&name_path, &c.name);
    }
    if c.image.trim().is_empty() {
        e.required(&format!("{p}.image"));
    }
    e.empty_or_one_of(
        &format!("{p}.imagePullPolicy"),
        &c.image_pull_policy,
        &["Always", "IfNotPresent", "Never"],
    );
    for (j, port) in c.ports.iter().enumerate() {
        let pp = format!("{p}.ports[{j}]");
        e.port(&format!("{pp}.containerPort"), port.container_port);
        if !(0..=PORT_MAX).contains(&port.host_port) {
            e.invalid(
                &format!("{pp}.hostPort"),
                port.host_port,
                "must be between 0 and 65535, inclusive",
            );
        }
        e.empty_or_one_of(&format!("{pp}.protocol"), &port.protocol, PROTOCOLS);
        if !port.name.is_empty() {
            if !is_iana_svc_name(&port.name) {
                e.invalid(&format!("{pp}.name"), &port.name, MSG_PORT_NAME);
            } else if !port_names.insert(port.name.clone()) {
                e.duplicate(&format!("{pp}.name"), &port.name);
            }
        }
        if !port.host_ip.is_empty() && !is_ip(&port.host_ip) {
            e.invalid(&format!("{pp}.hostIP"), &port.host_ip, MSG_IP);
        }
    }
    for (j, env) in c.env.iter().enumerate() {
        let path = format!("{p}.env[{j}].name");
        if env.name.is_empty() {
            e.required(&path);
        } else if !is_env_var_name(&env.name) {
            e.invalid(&path, &env.name, MSG_ENV_NAME);
        }
        if let Some(from) = &env.value_from {
            check_env_source(e, &format!("{p}.env[{j}].valueFrom"), &env.value, from);
        }
    }
    for (j, from) in c.env_from.iter().enumerate() {
        let fp = format!("{p}.envFrom[{j}]");
        if !from.prefix.is_empty() && !is_env_var_name(&from.prefix) {
            e.invalid(&format!("{fp}.prefix"), &from.prefix, MSG_ENV_NAME);
        }
        match (&from.config_map_ref, &from.secret_ref) {
            (Some(_), Some(_)) => e.invalid(
                &fp,
                "",
                "may not have more than one field specified at a time",
            ),
            (None, None) => e.invalid(
                &fp,
                "",
                "must specify one of: `configMapRef` or `secretRef`",
            ),
            (Some(r), None) => check_ref_name(e, &format!("{fp}.configMapRef.name"), &r.name),
            (None, Some(r)) => check_ref_name(e, &format!("{fp}.secretRef.name"), &r.name),
        }
    }
    if let Some(r) = &c.resources {
        check_resources(e, &format!("{p}.resources"), r);
    }
    for (field, probe, single_success) in [
        ("livenessProbe", &c.liveness_probe, true),
        ("readinessProbe", &c.readiness_probe, false),
        ("startupProbe", &c.startup_probe, true),
    ] {
        if let Some(probe) = probe {
            check_probe(e, &format!("{p}.{field}"), probe, &c.ports, single_success);
        }
    }
}

/// Parses a requests or limits list, reporting bad names and values.
fn resource_list<'a>(
    e: &mut Errors,
    p: &str,
    list: &'a BTreeMap<String, String>,
) -> BTreeMap<&'a str, (i64, &'a str)> {
    let mut parsed = BTreeMap::new();
    for (name, value) in list {
        let path = format!("{p}[{name}]");
        if !CONTAINER_RESOURCES.contains(&name.as_str()) {
            e.unsupported(&path, name, CONTAINER_RESOURCES);
            continue;
        }
        match quantity::parse(name, value) {
            Ok(n) => {
                parsed.insert(name.as_str(), (n, value.as_str()));
            }
            Err(why) => e.invalid(&path, value, &why),
        }
    }
    parsed
}

fn check_resources(e: &mut Errors, p: &str, r: &v1::ResourceRequirements) {
    let limits = resource_list(e, &format!("{p}.limits"), &r.limits);
    let requests = resource_list(e, &format!("{p}.requests"), &r.requests);
    for (name, (request, raw)) in &requests {
        if let Some((limit, raw_limit)) = limits.get(name) {
            if request > limit {
                e.invalid(
                    &format!("{p}.requests[{name}]"),
                    raw,
                    &format!("must be less than or equal to the {name} limit of {raw_limit}"),
                );
            }
        }
    }
}

fn check_probe(
    e: &mut Errors,
    p: &str,
    probe: &v1::Probe,
    ports: &[v1::ContainerPort],
    single_success: bool,
) {
    let handlers = [
        probe.exec.is_some(),
        probe.http_get.is_some(),
        probe.tcp_socket.is_some(),
    ]
    .into_iter()
    .filter(|h| *h)
    .count();
    match handlers {
        0 => e.required_because(
            p,
            "must specify a handler type (exec, httpGet or tcpSocket)",
        ),
        1 => {}
        _ => e.forbidden(p, "may not specify more than 1 handler type"),
    }
    if probe.exec.as_ref().is_some_and(|x| x.command.is_empty()) {
        e.required(&format!("{p}.exec.command"));
    }
    if let Some(h) = &probe.http_get {
        check_probe_port(e, &format!("{p}.httpGet.port"), &h.port, ports);
        e.empty_or_one_of(&format!("{p}.httpGet.scheme"), &h.scheme, PROBE_SCHEMES);
    }
    if let Some(t) = &probe.tcp_socket {
        check_probe_port(e, &format!("{p}.tcpSocket.port"), &t.port, ports);
    }
    for (field, value) in [
        ("initialDelaySeconds", probe.initial_delay_seconds),
        ("timeoutSeconds", probe.timeout_seconds),
        ("periodSeconds", probe.period_seconds),
        ("successThreshold", probe.success_threshold),
        ("failureThreshold", probe.failure_threshold),
    ] {
        e.non_negative(&format!("{p}.{field}"), value);
    }
    if let Some(t) = probe.termination_grace_period_seconds {
        e.non_negative(&format!("{p}.terminationGracePeriodSeconds"), t);
    }
    if single_success && probe.success_threshold > 1 {
        e.invalid(
            &format!("{p}.successThreshold"),
            probe.success_threshold,
            "must be 1",
        );
    }
}

fn check_probe_port(e: &mut Errors, path: &str, port: &str, ports: &[v1::ContainerPort]) {
    if port.is_empty() {
        e.required(path);
    } else if let Some(name) = check_int_or_name(e, path, port) {
        if !ports.iter().any(|cp| cp.name == name) {
            e.invalid(
                path,
                name,
                "must be the name of one of the container's ports",
            );
        }
    }
}

fn check_toleration(e: &mut Errors, p: &str, t: &v1::Toleration) {
    if !t.key.is_empty() && !is_label_key(&t.key) {
        e.invalid(&format!("{p}.key"), &t.key, MSG_LABEL_KEY);
    }
    let op_path = format!("{p}.operator");
    e.empty_or_one_of(&op_path, &t.operator, TOLERATION_OPERATORS);
    match t.operator.as_str() {
        "Exists" if !t.value.is_empty() => e.invalid(
            &format!("{p}.value"),
            &t.value,
            "must be empty when `operator` is 'Exists'",
        ),
        "" | "Equal" => {
            if t.key.is_empty() {
                e.invalid(
                    &op_path,
                    &t.operator,
                    "must be 'Exists' when `key` is empty",
                );
            }
            if !is_label_value(&t.value) {
                e.invalid(&format!("{p}.value"), &t.value, MSG_LABEL_VALUE);
            }
        }
        _ => {}
    }
    let effect_path = format!("{p}.effect");
    e.empty_or_one_of(&effect_path, &t.effect, TAINT_EFFECTS);
    if t.toleration_seconds.is_some() && t.effect != "NoExecute" {
        e.invalid(
            &effect_path,
            &t.effect,
            "must be 'NoExecute' when `tolerationSeconds` is set",
        );
    }
}

// ---- workloads ----

fn selector_is_empty(sel: &v1::LabelSelector) -> bool {
    sel.match_labels.is_empty() && sel.match_expressions.is_empty()
}

fn check_selector(e: &mut Errors, p: &str, sel: Option<&v1::LabelSelector>) {
    let Some(sel) = sel.filter(|s| !selector_is_empty(s)) else {
        e.required(p);
        return;
    };
    check_labels(e, &format!("{p}.matchLabels"), &sel.match_labels);
    for (i, r) in sel.match_expressions.iter().enumerate() {
        let rp = format!("{p}.matchExpressions[{i}]");
        if r.key.is_empty() {
            e.required(&format!("{rp}.key"));
        } else if !is_label_key(&r.key) {
            e.invalid(&format!("{rp}.key"), &r.key, MSG_LABEL_KEY);
        }
        let values_path = format!("{rp}.values");
        match r.operator.as_str() {
            "In" | "NotIn" if r.values.is_empty() => {
                e.required_because(&values_path, "must be specified for 'In' and 'NotIn'");
            }
            "Exists" | "DoesNotExist" if !r.values.is_empty() => e.forbidden(
                &values_path,
                "may not be specified for 'Exists' and 'DoesNotExist'",
            ),
            "" => e.required(&format!("{rp}.operator")),
            op if !SELECTOR_OPERATORS.contains(&op) => {
                e.unsupported(&format!("{rp}.operator"), op, SELECTOR_OPERATORS);
            }
            _ => {}
        }
        for (j, v) in r.values.iter().enumerate() {
            if !is_label_value(v) {
                e.invalid(&format!("{values_path}[{j}]"), v, MSG_LABEL_VALUE);
            }
        }
    }
}

/// What ReplicaSets and Deployments share: replicas, selector, template.
fn check_workload(
    e: &mut Errors,
    replicas: Option<i32>,
    min_ready_seconds: i32,
    selector: Option<&v1::LabelSelector>,
    template: Option<&v1::PodTemplateSpec>,
    policies: &[&str],
) {
    if let Some(r) = replicas {
        e.non_negative("spec.replicas", r);
    }
    e.non_negative("spec.minReadySeconds", min_ready_seconds);
    check_selector(e, "spec.selector", selector);
    let Some(t) = template else {
        e.required("spec.template");
        return;
    };
    let empty = BTreeMap::new();
    let labels = t.metadata.as_ref().map_or(&empty, |m| &m.labels);
    check_labels(e, "spec.template.metadata.labels", labels);
    if let Some(m) = &t.metadata {
        check_annotations(e, "spec.template.metadata.annotations", &m.annotations);
    }
    if let Some(sel) = selector.filter(|s| !selector_is_empty(s)) {
        // An unknown operator (reported above) matches nothing.
        if !LabelSelector::from_proto(sel).is_ok_and(|s| s.matches(labels)) {
            e.invalid(
                "spec.template.metadata.labels",
                labels,
                "`selector` does not match template `labels`",
            );
        }
    }
    check_pod_spec(e, "spec.template.spec", t.spec.as_ref(), policies);
}

/// A Job spec's counts and modes, at `p` (`spec`, or a CronJob's
/// `spec.jobTemplate.spec`).
fn check_job_counts(e: &mut Errors, p: &str, s: &v1::JobSpec) {
    if let Some(n) = s.parallelism {
        e.non_negative(&format!("{p}.parallelism"), n);
    }
    if let Some(c) = s.completions {
        e.non_negative(&format!("{p}.completions"), c);
    }
    if let Some(b) = s.backoff_limit {
        e.non_negative(&format!("{p}.backoffLimit"), b);
    }
    if let Some(t) = s.ttl_seconds_after_finished {
        e.non_negative(&format!("{p}.ttlSecondsAfterFinished"), t);
    }
    if let Some(d) = s.active_deadline_seconds {
        if d <= 0 {
            e.invalid(
                &format!("{p}.activeDeadlineSeconds"),
                d,
                "must be greater than 0",
            );
        }
    }
    e.empty_or_one_of(
        &format!("{p}.completionMode"),
        &s.completion_mode,
        &["NonIndexed", "Indexed"],
    );
    if s.completion_mode == "Indexed" {
        match s.completions {
            None => e.required_because(
                &format!("{p}.completions"),
                "when completion mode is Indexed",
            ),
            Some(n) if n > INDEXED_JOB_MAX => e.invalid(
                &format!("{p}.completions"),
                n,
                &format!("must be less than or equal to {INDEXED_JOB_MAX} when completion mode is Indexed"),
            ),
            Some(_) => {}
        }
        if let Some(n) = s.parallelism.filter(|n| *n > INDEXED_JOB_MAX) {
            e.invalid(
                &format!("{p}.parallelism"),
                n,
                &format!("must be less than or equal to {INDEXED_JOB_MAX} when completion mode is Indexed"),
            );
        }
    }
}

/// The most completions (and parallelism) of an Indexed Job, as
/// Kubernetes'.
const INDEXED_JOB_MAX: i32 = 100_000;

fn check_daemon_set(e: &mut Errors, s: &v1::DaemonSetSpec) {
    check_workload(
        e,
        None,
        s.min_ready_seconds,
        s.selector.as_ref(),
        s.template.as_ref(),
        TEMPLATE_RESTART_POLICIES,
    );
    if let Some(n) = s.revision_history_limit {
        e.non_negative("spec.revisionHistoryLimit", n);
    }
    let Some(u) = &s.update_strategy else { return };
    e.empty_or_one_of(
        "spec.updateStrategy.type",
        &u.r#type,
        &["RollingUpdate", "OnDelete"],
    );
    if u.r#type != "RollingUpdate" {
        return;
    }
    let Some(ru) = &u.rolling_update else { return };
    let p = "spec.updateStrategy.rollingUpdate";
    let unavailable = check_int_or_percent(e, &format!("{p}.maxUnavailable"), &ru.max_unavailable);
    let surge = check_int_or_percent(e, &format!("{p}.maxSurge"), &ru.max_surge);
    // Exactly one of the two is non-zero (Kubernetes' rule: a surge
    // replaces pods with none unavailable).
    let has_surge = surge.is_some_and(|(n, _)| n != 0);
    let has_unavailable = unavailable.is_some_and(|(n, _)| n != 0);
    if has_surge && has_unavailable {
        e.invalid(
            &format!("{p}.maxSurge"),
            &ru.max_surge,
            "may not be set when maxUnavailable is non-zero",
        );
    }
    if !has_surge && unavailable.is_some_and(|(n, _)| n == 0) {
        e.invalid(
            &format!("{p}.maxUnavailable"),
            &ru.max_unavailable,
            "may not be 0 when `maxSurge` is 0",
        );
    }
    if surge.is_some_and(|(n, pct)| pct && n > 100) {
        e.invalid(
            &format!("{p}.maxSurge"),
            &ru.max_surge,
            "must not be greater than 100%",
        );
    }
    if unavailable.is_some_and(|(n, pct)| pct && n > 100) {
        e.invalid(
            &format!("{p}.maxUnavailable"),
            &ru.max_unavailable,
            "must not be greater than 100%",
        );
    }
}

fn check_stateful_set(e: &mut Errors, s: &v1::StatefulSetSpec) {
    check_workload(
        e,
        s.replicas,
        s.min_ready_seconds,
        s.selector.as_ref(),
        s.template.as_ref(),
        TEMPLATE_RESTART_POLICIES,
    );
    if let Some(n) = s.revision_history_limit {
        e.non_negative("spec.revisionHistoryLimit", n);
    }
    if let Some(o) = &s.ordinals {
        e.non_negative("spec.ordinals.start", o.start);
    }
    if !s.service_name.is_empty() && !is_dns1123_label(&s.service_name) {
        e.invalid("spec.serviceName", &s.service_name, MSG_LABEL);
    }
    e.empty_or_one_of(
        "spec.podManagementPolicy",
        &s.pod_management_policy,
        &["OrderedReady", "Parallel"],
    );
    let Some(u) = &s.update_strategy else { return };
    e.empty_or_one_of(
        "spec.updateStrategy.type",
        &u.r#type,
        &["RollingUpdate", "OnDelete"],
    );
    let Some(ru) = &u.rolling_update else { return };
    let p = "spec.updateStrategy.rollingUpdate";
    if u.r#type != "RollingUpdate" {
        e.invalid(
            p,
            "",
            &format!("only allowed for updateStrategy '{}'", "RollingUpdate"),
        );
        return;
    }
    if let Some(n) = ru.partition {
        e.non_negative(&format!("{p}.partition"), n);
    }
    if !ru.max_unavailable.is_empty() {
        let path = format!("{p}.maxUnavailable");
        let unavailable = check_int_or_percent(e, &path, &ru.max_unavailable);
        if unavailable.is_some_and(|(n, _)| n == 0) {
            e.invalid(&path, &ru.max_unavailable, "must be greater than 0");
        }
        if unavailable.is_some_and(|(n, pct)| pct && n > 100) {
            e.invalid(&path, &ru.max_unavailable, "must not be greater than 100%");
        }
    }
}

/// The fields of a StatefulSet's spec an update may change (Kubernetes'
/// list, less persistentVolumeClaimRetentionPolicy which Keelson lacks).
const STATEFUL_SET_MUTABLE: &str = "'replicas', 'ordinals', 'template', 'updateStrategy', \
     'revisionHistoryLimit' and 'minReadySeconds'";

fn check_stateful_set_update(e: &mut Errors, old: &v1::StatefulSet, new: &v1::StatefulSet) {
    let (mut a, mut b) = (
        old.spec.clone().unwrap_or_default(),
        new.spec.clone().unwrap_or_default(),
    );
    for s in [&mut a, &mut b] {
        s.replicas = None;
        s.ordinals = None;
        s.template = None;
        s.update_strategy = None;
        s.revision_history_limit = None;
        s.min_ready_seconds = 0;
    }
    if a != b {
        e.forbidden(
            "spec",
            &format!(
                "updates to statefulset spec for fields other than {STATEFUL_SET_MUTABLE} are forbidden"
            ),
        );
    }
}

/// Kubernetes' `ValidatePolicyRule`: verbs always; resource rules name API
/// groups and resources; non-resource URLs only in ClusterRoles, never
/// with resources.
fn check_rules(e: &mut Errors, rules: &[v1::PolicyRule], namespaced: bool) {
    for (i, r) in rules.iter().enumerate() {
        let p = format!("rules[{i}]");
        if r.verbs.is_empty() {
            e.required_because(
                &format!("{p}.verbs"),
                "verbs must contain at least one value",
            );
        }
        if !r.non_resource_urls.is_empty() {
            if namespaced {
                e.invalid(
                    &format!("{p}.nonResourceURLs"),
                    &r.non_resource_urls,
                    "namespaced rules cannot apply to non-resource URLs",
                );
            }
            if !r.api_groups.is_empty() || !r.resources.is_empty() {
                e.invalid(
                    &format!("{p}.nonResourceURLs"),
                    &r.non_resource_urls,
                    "rules cannot apply to both regular resources and non-resource URLs",
                );
            }
            continue;
        }
        if r.api_groups.is_empty() {
            e.required_because(
                &format!("{p}.apiGroups"),
                "resource rules must supply at least one api group",
            );
        }
        if r.resources.is_empty() {
            e.required_because(
                &format!("{p}.resources"),
                "resource rules must supply at least one resource",
            );
        }
    }
}

/// Kubernetes' binding validation: a role reference of the RBAC group
/// (a Role or, from a ClusterRoleBinding, only a ClusterRole) and
/// subjects of a known kind.
fn check_binding(
    e: &mut Errors,
    role_ref: Option<&v1::RoleRef>,
    subjects: &[v1::Subject],
    namespaced: bool,
) {
    let Some(r) = role_ref else {
        e.required("roleRef");
        return;
    };
    if r.api_group != crate::defaults::RBAC_GROUP {
        e.unsupported(
            "roleRef.apiGroup",
            &r.api_group,
            &[crate::defaults::RBAC_GROUP],
        );
    }
    let kinds: &[&str] = if namespaced {
        &["Role", "ClusterRole"]
    } else {
        &["ClusterRole"]
    };
    if !kinds.contains(&r.kind.as_str()) {
        e.unsupported("roleRef.kind", &r.kind, kinds);
    }
    if r.name.is_empty() {
        e.required("roleRef.name");
    }
    for (i, s) in subjects.iter().enumerate() {
        let p = format!("subjects[{i}]");
        if s.name.is_empty() {
            e.required(&format!("{p}.name"));
        }
        match s.kind.as_str() {
            "ServiceAccount" => {
                if !s.api_group.is_empty() {
                    e.unsupported(&format!("{p}.apiGroup"), &s.api_group, &[""]);
                }
                if !s.name.is_empty() && !is_dns1123_subdomain(&s.name) {
                    e.invalid(&format!("{p}.name"), &s.name, MSG_SUBDOMAIN);
                }
                if s.namespace.is_empty() && !namespaced {
                    e.required(&format!("{p}.namespace"));
                }
            }
            "User" | "Group" => {
                if s.api_group != crate::defaults::RBAC_GROUP {
                    e.unsupported(
                        &format!("{p}.apiGroup"),
                        &s.api_group,
                        &[crate::defaults::RBAC_GROUP],
                    );
                }
            }
            other => e.unsupported(
                &format!("{p}.kind"),
                other,
                &["ServiceAccount", "User", "Group"],
            ),
        }
    }
}

fn check_controller_revision(e: &mut Errors, r: &v1::ControllerRevision) {
    e.non_negative("revision", r.revision);
}

/// The longest CronJob name: its Jobs are named `<name>-<minutes>`, 11
/// more characters, within a label value's 63.
const CRON_JOB_NAME_MAX: usize = 52;

fn check_cron_job(e: &mut Errors, meta: Option<&v1::ObjectMeta>, s: &v1::CronJobSpec) {
    if let Some(m) = meta.filter(|m| m.name.len() > CRON_JOB_NAME_MAX) {
        e.invalid(
            "metadata.name",
            &m.name,
            &format!("must be no more than {CRON_JOB_NAME_MAX} characters"),
        );
    }
    let tz = s.time_zone.as_deref().unwrap_or("");
    if s.schedule.is_empty() {
        e.required("spec.schedule");
    } else if let Err(why) = crate::cron::Schedule::parse(&s.schedule, "") {
        e.invalid("spec.schedule", &s.schedule, &why);
    }
    if s.time_zone.is_some() {
        if let Err(why) = crate::cron::time_zone(tz) {
            e.invalid("spec.timeZone", tz, &why);
        }
    }
    if let Some(d) = s.starting_deadline_seconds {
        e.non_negative("spec.startingDeadlineSeconds", d);
    }
    e.empty_or_one_of(
        "spec.concurrencyPolicy",
        &s.concurrency_policy,
        &["Allow", "Forbid", "Replace"],
    );
    if let Some(n) = s.successful_jobs_history_limit {
        e.non_negative("spec.successfulJobsHistoryLimit", n);
    }
    if let Some(n) = s.failed_jobs_history_limit {
        e.non_negative("spec.failedJobsHistoryLimit", n);
    }
    let Some(js) = s.job_template.as_ref().and_then(|t| t.spec.as_ref()) else {
        e.required("spec.jobTemplate.spec");
        return;
    };
    let p = "spec.jobTemplate.spec";
    check_job_counts(e, p, js);
    if js.selector.is_some() {
        e.invalid(
            &format!("{p}.selector"),
            js.selector.as_ref().map(|x| &x.match_labels),
            "`selector` will be auto-generated",
        );
    }
    if js.manual_selector == Some(true) {
        e.invalid(
            &format!("{p}.manualSelector"),
            true,
            "cannot be set for a CronJob's Jobs",
        );
    }
    let Some(t) = js.template.as_ref() else {
        e.required(&format!("{p}.template"));
        return;
    };
    if let Some(m) = &t.metadata {
        check_labels(e, &format!("{p}.template.metadata.labels"), &m.labels);
        check_annotations(
            e,
            &format!("{p}.template.metadata.annotations"),
            &m.annotations,
        );
    }
    check_pod_spec(
        e,
        &format!("{p}.template.spec"),
        t.spec.as_ref(),
        &["OnFailure", "Never"],
    );
}

fn check_job(e: &mut Errors, meta: Option<&v1::ObjectMeta>, s: &v1::JobSpec) {
    check_job_counts(e, "spec", s);
    check_workload(
        e,
        None,
        0,
        s.selector.as_ref(),
        s.template.as_ref(),
        &["OnFailure", "Never"],
    );
    if s.manual_selector != Some(true) {
        let uid = meta.map_or("", |m| m.uid.as_str());
        let generated = s.selector.as_ref().and_then(|sel| {
            sel.match_labels
                .get(crate::defaults::JOB_CONTROLLER_UID_LABEL)
                .filter(|v| !uid.is_empty() && *v == uid)
        });
        // Checked once the object has its uid (on create, the registry
        // generates the selector first).
        if !uid.is_empty() && generated.is_none() {
            e.invalid(
                "spec.selector",
                s.selector.as_ref().map(|x| &x.match_labels),
                "`selector` not auto-generated",
            );
        }
    }
}

/// An int-or-percent (`maxSurge`): a non-negative integer or `N%`; empty
/// means unset. Returns the number and whether it is a percentage.
fn check_int_or_percent(e: &mut Errors, path: &str, value: &str) -> Option<(i64, bool)> {
    if value.is_empty() {
        return None;
    }
    let (digits, percent) = match value.strip_suffix('%') {
        Some(d) => (d, true),
        None => (value, false),
    };
    let parsed = if digits.bytes().all(|b| b.is_ascii_digit()) {
        digits.parse::<i64>().ok()
    } else {
        None
    };
    if parsed.is_none() {
        e.invalid(
            path,
            value,
            "must be a non-negative integer or percentage (e.g. '1' or '25%')",
        );
    }
    parsed.map(|n| (n, percent))
}

fn check_deployment(e: &mut Errors, s: &v1::DeploymentSpec) {
    check_workload(
        e,
        s.replicas,
        s.min_ready_seconds,
        s.selector.as_ref(),
        s.template.as_ref(),
        TEMPLATE_RESTART_POLICIES,
    );
    if let Some(n) = s.revision_history_limit {
        e.non_negative("spec.revisionHistoryLimit", n);
    }
    if let Some(d) = s.progress_deadline_seconds {
        if d <= s.min_ready_seconds {
            e.invalid(
                "spec.progressDeadlineSeconds",
                d,
                "must be greater than minReadySeconds",
            );
        }
    }
    let Some(st) = &s.strategy else { return };
    e.empty_or_one_of("spec.strategy.type", &st.r#type, STRATEGY_TYPES);
    let Some(ru) = &st.rolling_update else { return };
    if st.r#type == "Recreate" {
        e.forbidden(
            "spec.strategy.rollingUpdate",
            "may not be specified when strategy `type` is 'Recreate'",
        );
        return;
    }
    let base = "spec.strategy.rollingUpdate";
    let surge = check_int_or_percent(e, &format!("{base}.maxSurge"), &ru.max_surge);
    let unavailable_path = format!("{base}.maxUnavailable");
    let unavailable = check_int_or_percent(e, &unavailable_path, &ru.max_unavailable);
    if let Some((n, true)) = unavailable {
        if n > PERCENT_MAX {
            e.invalid(
                &unavailable_path,
                &ru.max_unavailable,
                "must not be greater than 100%",
            );
        }
    }
    if surge.is_some_and(|(n, _)| n == 0) && unavailable.is_some_and(|(n, _)| n == 0) {
        e.invalid(
            &unavailable_path,
            &ru.max_unavailable,
            "may not be 0 when `maxSurge` is 0",
        );
    }
}

// ---- services, nodes, the rest ----

fn check_service(e: &mut Errors, s: &v1::ServiceSpec) {
    if s.ports.is_empty() {
        e.required("spec.ports");
    }
    e.empty_or_one_of("spec.type", &s.r#type, SERVICE_TYPES);
    let cluster_ip_only = s.r#type.is_empty() || s.r#type == "ClusterIP";
    let mut names = HashSet::new();
    let mut ports = HashSet::new();
    for (i, port) in s.ports.iter().enumerate() {
        let p = format!("spec.ports[{i}]");
        if port.name.is_empty() {
            if s.ports.len() > 1 {
                e.required_because(
                    &format!("{p}.name"),
                    "must be set when there are several ports",
                );
            }
        } else if !is_dns1123_label(&port.name) {
            e.invalid(&format!("{p}.name"), &port.name, MSG_LABEL);
        } else if !names.insert(port.name.as_str()) {
            e.duplicate(&format!("{p}.name"), &port.name);
        }
        e.port(&format!("{p}.port"), port.port);
        e.empty_or_one_of(&format!("{p}.protocol"), &port.protocol, PROTOCOLS);
        let protocol = if port.protocol.is_empty() {
            "TCP"
        } else {
            &port.protocol
        };
        if !ports.insert((port.port, protocol)) {
            e.duplicate(&p, format!("{}/{protocol}", port.port));
        }
        if !port.target_port.is_empty() {
            check_int_or_name(e, &format!("{p}.targetPort"), &port.target_port);
        }
        if port.node_port != 0 {
            let path = format!("{p}.nodePort");
            if !(NODE_PORT_MIN..=NODE_PORT_MAX).contains(&port.node_port) {
                e.invalid(
                    &path,
                    port.node_port,
                    "must be between 30000 and 32767, inclusive",
                );
            } else if cluster_ip_only {
                e.forbidden(&path, "may not be used when `type` is 'ClusterIP'");
            }
        }
    }
    check_labels(e, "spec.selector", &s.selector);
    e.empty_or_one_of(
        "spec.sessionAffinity",
        &s.session_affinity,
        SESSION_AFFINITIES,
    );
    if !s.cluster_ip.is_empty() && s.cluster_ip != "None" && !is_ip(&s.cluster_ip) {
        e.invalid(
            "spec.clusterIP",
            &s.cluster_ip,
            "must be empty, 'None' or a valid IP address",
        );
    }
}

fn check_node(e: &mut Errors, n: &v1::Node) {
    let taints = n.spec.as_ref().map_or(&[][..], |s| s.taints.as_slice());
    for (i, t) in taints.iter().enumerate() {
        let p = format!("spec.taints[{i}]");
        if t.key.is_empty() {
            e.required(&format!("{p}.key"));
        } else if !is_label_key(&t.key) {
            e.invalid(&format!("{p}.key"), &t.key, MSG_LABEL_KEY);
        }
        if !is_label_value(&t.value) {
            e.invalid(&format!("{p}.value"), &t.value, MSG_LABEL_VALUE);
        }
        if t.effect.is_empty() {
            e.required(&format!("{p}.effect"));
        } else {
            e.empty_or_one_of(&format!("{p}.effect"), &t.effect, TAINT_EFFECTS);
        }
    }
    let Some(status) = &n.status else { return };
    for (field, list) in [
        ("capacity", &status.capacity),
        ("allocatable", &status.allocatable),
    ] {
        for (name, value) in list {
            let path = format!("status.{field}[{name}]");
            if !is_label_key(name) {
                e.invalid(&path, name, MSG_LABEL_KEY);
            } else if let Err(why) = quantity::parse(name, value) {
                e.invalid(&path, value, &why);
            }
        }
    }
}

fn check_endpoints(e: &mut Errors, ep: &v1::Endpoints) {
    for (i, s) in ep.subsets.iter().enumerate() {
        let p = format!("subsets[{i}]");
        for (field, addresses) in [
            ("addresses", &s.addresses),
            ("notReadyAddresses", &s.not_ready_addresses),
        ] {
            for (j, a) in addresses.iter().enumerate() {
                let path = format!("{p}.{field}[{j}].ip");
                if a.ip.is_empty() {
                    e.required(&path);
                } else if !is_ip(&a.ip) {
                    e.invalid(&path, &a.ip, MSG_IP);
                }
            }
        }
        for (j, port) in s.ports.iter().enumerate() {
            let pp = format!("{p}.ports[{j}]");
            e.port(&format!("{pp}.port"), port.port);
            e.empty_or_one_of(&format!("{pp}.protocol"), &port.protocol, PROTOCOLS);
            if !port.name.is_empty() && !is_dns1123_label(&port.name) {
                e.invalid(&format!("{pp}.name"), &port.name, MSG_LABEL);
            }
        }
    }
}

fn check_event(e: &mut Errors, ev: &v1::Event) {
    let default = v1::ObjectReference::default();
    let r = ev.involved_object.as_ref().unwrap_or(&default);
    if r.kind.is_empty() {
        e.required("involvedObject.kind");
    }
    if r.name.is_empty() {
        e.required("involvedObject.name");
    }
    e.empty_or_one_of("type", &ev.r#type, EVENT_TYPES);
    e.non_negative("count", ev.count);
}

fn check_lease(e: &mut Errors, spec: &v1::LeaseSpec) {
    if let Some(d) = spec.lease_duration_seconds {
        if d <= 0 {
            e.invalid("spec.leaseDurationSeconds", d, "must be greater than 0");
        }
    }
    if let Some(t) = spec.lease_transitions {
        e.non_negative("spec.leaseTransitions", t);
    }
}

/// Every problem with `o`, or Ok. Each message starts with the field path
/// (`spec.template.spec.containers[0].image: Required value`).
pub fn validate(o: &Object) -> Result<(), Vec<String>> {
    let (Some(variant), Some(kind)) = (o.kind.as_ref(), kind_of(o)) else {
        return Err(vec!["kind: Required value".into()]);
    };
    let mut e = Errors::default();
    check_meta(&mut e, kind, meta_of(o));
    match variant {
        Variant::Namespace(_) => {}
        Variant::Node(n) => check_node(&mut e, n),
        Variant::Pod(p) => check_pod_spec(&mut e, "spec", p.spec.as_ref(), RESTART_POLICIES),
        Variant::ReplicaSet(rs) => match &rs.spec {
            Some(s) => check_workload(
                &mut e,
                s.replicas,
                s.min_ready_seconds,
                s.selector.as_ref(),
                s.template.as_ref(),
                TEMPLATE_RESTART_POLICIES,
            ),
            None => e.required("spec"),
        },
        Variant::Deployment(d) => match &d.spec {
            Some(s) => check_deployment(&mut e, s),
            None => e.required("spec"),
        },
        Variant::Service(s) => match &s.spec {
            Some(s) => check_service(&mut e, s),
            None => e.required("spec"),
        },
        Variant::Endpoints(ep) => check_endpoints(&mut e, ep),
        Variant::Event(ev) => check_event(&mut e, ev),
        Variant::Lease(l) => {
            if let Some(s) = &l.spec {
                check_lease(&mut e, s);
            }
        }
        Variant::ConfigMap(cm) => check_config_map(&mut e, cm),
        Variant::Job(j) => match &j.spec {
            Some(s) => check_job(&mut e, j.metadata.as_ref(), s),
            None => e.required("spec"),
        },
        Variant::DaemonSet(ds) => match &ds.spec {
            Some(s) => check_daemon_set(&mut e, s),
            None => e.required("spec"),
        },
        Variant::StatefulSet(sts) => match &sts.spec {
            Some(s) => check_stateful_set(&mut e, s),
            None => e.required("spec"),
        },
        Variant::ControllerRevision(r) => check_controller_revision(&mut e, r),
        Variant::ServiceAccount(_) => {}
        Variant::Role(r) => check_rules(&mut e, &r.rules, true),
        Variant::ClusterRole(r) => check_rules(&mut e, &r.rules, false),
        Variant::RoleBinding(b) => check_binding(&mut e, b.role_ref.as_ref(), &b.subjects, true),
        Variant::ClusterRoleBinding(b) => {
            check_binding(&mut e, b.role_ref.as_ref(), &b.subjects, false)
        }
        Variant::CronJob(cj) => match &cj.spec {
            Some(s) => check_cron_job(&mut e, cj.metadata.as_ref(), s),
            None => e.required("spec"),
        },
        Variant::Secret(sec) => check_secret(&mut e, sec),
    }
    e.into_result()
}

fn check_pod_update(e: &mut Errors, old: &v1::Pod, new: &v1::Pod) {
    let default = v1::PodSpec::default();
    let a = old.spec.as_ref().unwrap_or(&default);
    let b = new.spec.as_ref().unwrap_or(&default);
    if !a.node_name.is_empty() && a.node_name != b.node_name {
        e.invalid(
            "spec.nodeName",
            &b.node_name,
            &format!("may not be changed once set (was {:?})", a.node_name),
        );
    }
    if a.containers.len() != b.containers.len() {
        e.forbidden("spec.containers", "containers may not be added or removed");
        return;
    }
    for (i, (x, y)) in a.containers.iter().zip(&b.containers).enumerate() {
        for (field, changed) in [
            ("name", x.name != y.name),
            ("command", x.command != y.command),
            ("args", x.args != y.args),
        ] {
            if changed {
                e.forbidden(
                    &format!("spec.containers[{i}].{field}"),
                    "field is immutable (of a container only `image` may change)",
                );
            }
        }
    }
}

fn check_selector_unchanged(
    e: &mut Errors,
    old: Option<&v1::LabelSelector>,
    new: Option<&v1::LabelSelector>,
) {
    let default = v1::LabelSelector::default();
    let new = new.unwrap_or(&default);
    if old.unwrap_or(&default) != new {
        e.invalid("spec.selector", new, "field is immutable");
    }
}

const MSG_IMMUTABLE: &str = "field is immutable when `immutable` is set";

/// The problems with replacing `old` by `new` that [`validate`] cannot see:
/// a changed kind, a Pod's node once bound or its containers' names and
/// commands, a ReplicaSet's or Deployment's selector.
pub fn validate_update(old: &Object, new: &Object) -> Result<(), Vec<String>> {
    let mut e = Errors::default();
    match (old.kind.as_ref(), new.kind.as_ref()) {
        (Some(Variant::Pod(a)), Some(Variant::Pod(b))) => check_pod_update(&mut e, a, b),
        (Some(Variant::ReplicaSet(a)), Some(Variant::ReplicaSet(b))) => check_selector_unchanged(
            &mut e,
            a.spec.as_ref().and_then(|s| s.selector.as_ref()),
            b.spec.as_ref().and_then(|s| s.selector.as_ref()),
        ),
        (Some(Variant::DaemonSet(a)), Some(Variant::DaemonSet(b))) => check_selector_unchanged(
            &mut e,
            a.spec.as_ref().and_then(|s| s.selector.as_ref()),
            b.spec.as_ref().and_then(|s| s.selector.as_ref()),
        ),
        (Some(Variant::StatefulSet(a)), Some(Variant::StatefulSet(b))) => {
            check_stateful_set_update(&mut e, a, b);
        }
        (Some(Variant::ControllerRevision(a)), Some(Variant::ControllerRevision(b)))
            if a.data != b.data =>
        {
            e.invalid("data", "", "field is immutable");
        }
        (Some(Variant::RoleBinding(a)), Some(Variant::RoleBinding(b)))
            if a.role_ref != b.role_ref =>
        {
            e.invalid("roleRef", "", "cannot change roleRef");
        }
        (Some(Variant::ClusterRoleBinding(a)), Some(Variant::ClusterRoleBinding(b)))
            if a.role_ref != b.role_ref =>
        {
            e.invalid("roleRef", "", "cannot change roleRef");
        }
        (Some(Variant::Deployment(a)), Some(Variant::Deployment(b))) => check_selector_unchanged(
            &mut e,
            a.spec.as_ref().and_then(|s| s.selector.as_ref()),
            b.spec.as_ref().and_then(|s| s.selector.as_ref()),
        ),
        (Some(Variant::ConfigMap(a)), Some(Variant::ConfigMap(b))) if a.immutable == Some(true) => {
            if a.data != b.data || a.binary_data != b.binary_data {
                e.forbidden("data", MSG_IMMUTABLE);
            }
            if b.immutable != Some(true) {
                e.forbidden("immutable", MSG_IMMUTABLE);
            }
        }
        (Some(Variant::Job(a)), Some(Variant::Job(b))) => {
            let (x, y) = (
                a.spec.clone().unwrap_or_default(),
                b.spec.clone().unwrap_or_default(),
            );
            check_selector_unchanged(&mut e, x.selector.as_ref(), y.selector.as_ref());
            if x.completions != y.completions {
                e.invalid("spec.completions", y.completions, "field is immutable");
            }
            if x.template != y.template {
                e.invalid("spec.template", "", "field is immutable");
            }
            if x.completion_mode != y.completion_mode {
                e.invalid(
                    "spec.completionMode",
                    &y.completion_mode,
                    "field is immutable",
                );
            }
        }
        (Some(Variant::Secret(a)), Some(Variant::Secret(b))) => {
            if a.r#type != b.r#type {
                e.invalid("type", &b.r#type, "field is immutable");
            }
            if a.immutable == Some(true) {
                if a.data != b.data {
                    e.forbidden("data", MSG_IMMUTABLE);
                }
                if b.immutable != Some(true) {
                    e.forbidden("immutable", MSG_IMMUTABLE);
                }
            }
        }
        _ if kind_of(old) != kind_of(new) => e.invalid(
            "kind",
            kind_of(new).map_or("", Kind::name),
            &format!(
                "may not be changed (was {:?})",
                kind_of(old).map_or("", Kind::name)
            ),
        ),
        _ => {}
    }
    e.into_result()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Resource;
    use serde::de::DeserializeOwned;
    use serde_json::{json, Value};

    fn obj<T: Resource + DeserializeOwned>(v: Value) -> Object {
        serde_json::from_value::<T>(v).unwrap().into_object()
    }

    fn pod_json() -> Value {
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web-1", "namespace": "default", "labels": {"app": "web"}},
            "spec": {
                "containers": [{
                    "name": "web", "image": "nginx:1.25",
                    "command": ["nginx"],
                    "ports": [{"name": "http", "containerPort": 80, "protocol": "TCP"}],
                    "env": [{"name": "MODE", "value": "prod"}],
                    "resources": {"requests": {"cpu": "100m", "memory": "64Mi"},
                                  "limits": {"cpu": "1", "memory": "128Mi"}},
                    "livenessProbe": {"httpGet": {"path": "/healthz", "port": "http"},
                                      "periodSeconds": 5},
                    "readinessProbe": {"tcpSocket": {"port": 80}}
                }],
                "restartPolicy": "Always",
                "nodeSelector": {"kubernetes.io/os": "linux"},
                "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "web",
                                 "effect": "NoExecute", "tolerationSeconds": 60}]
            }
        })
    }

    fn deployment_json() -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {
                "replicas": 3,
                "selector": {"matchLabels": {"app": "web"},
                             "matchExpressions": [{"key": "tier", "operator": "In", "values": ["front"]}]},
                "template": {
                    "metadata": {"labels": {"app": "web", "tier": "front"}},
                    "spec": {"containers": [{"name": "web", "image": "nginx"}]}
                },
                "strategy": {"type": "RollingUpdate",
                             "rollingUpdate": {"maxSurge": 1, "maxUnavailable": "25%"}},
                "minReadySeconds": 5,
                "progressDeadlineSeconds": 600
            }
        })
    }

    fn service_json() -> Value {
        json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {
                "selector": {"app": "web"},
                "type": "NodePort",
                "ports": [{"name": "http", "port": 80, "targetPort": "http", "nodePort": 30080},
                          {"name": "https", "port": 443, "targetPort": 8443}]
            }
        })
    }

    fn push(list: &mut Value, item: Value) {
        if let Some(items) = list.as_array_mut() {
            items.push(item);
        }
    }

    fn errors(o: &Object) -> Vec<String> {
        validate(o).err().unwrap_or_default()
    }

    /// A change to a valid object, and text its error message must contain.
    type Case = (&'static str, fn(&mut Value));

    /// Applies each mutation to `base` and expects a message containing
    /// the given text.
    fn expect_failures<T: Resource + DeserializeOwned>(base: fn() -> Value, cases: &[Case]) {
        for (want, mutate) in cases {
            let mut v = base();
            mutate(&mut v);
            let errs = errors(&obj::<T>(v));
            assert!(
                errs.iter().any(|m| m.contains(want)),
                "expected {want:?} in {errs:#?}"
            );
        }
    }

    #[test]
    fn valid_objects_pass() {
        assert_eq!(validate(&obj::<v1::Pod>(pod_json())), Ok(()));
        assert_eq!(validate(&obj::<v1::Deployment>(deployment_json())), Ok(()));
        assert_eq!(validate(&obj::<v1::Service>(service_json())), Ok(()));
        let others = [
            obj::<v1::Namespace>(json!({"metadata": {"name": "team-a"}})),
            obj::<v1::Node>(json!({
                "metadata": {"name": "node-1.example.com"},
                "spec": {"taints": [{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]},
                "status": {"capacity": {"cpu": "4", "memory": "8Gi", "pods": "110"},
                           "allocatable": {"cpu": "3500m", "memory": "7.5Gi"}}
            })),
            obj::<v1::Endpoints>(json!({
                "metadata": {"name": "web", "namespace": "default"},
                "subsets": [{"addresses": [{"ip": "10.0.0.5"}], "ports": [{"port": 80}]}]
            })),
            obj::<v1::Event>(json!({
                "metadata": {"name": "web-1.17a", "namespace": "default"},
                "involvedObject": {"kind": "Pod", "name": "web-1"}, "type": "Warning"
            })),
            obj::<v1::Lease>(json!({
                "metadata": {"name": "kube-scheduler", "namespace": "kube-system"},
                "spec": {"holderIdentity": "a", "leaseDurationSeconds": 15}
            })),
            obj::<v1::Pod>(json!({
                "metadata": {"generateName": "web-"},
                "spec": {"containers": [{"name": "a", "image": "b"}]}
            })),
        ];
        for o in &others {
            assert_eq!(validate(o), Ok(()), "{o:?}");
        }
    }

    #[test]
    fn config_map_and_secret_rules() {
        let cm = || {
            json!({
                "metadata": {"name": "app", "namespace": "default"},
                "data": {"mode": "prod", "app.conf": "x"},
                "binaryData": {"logo.bin": "/w=="}
            })
        };
        assert_eq!(validate(&obj::<v1::ConfigMap>(cm())), Ok(()));
        expect_failures::<v1::ConfigMap>(
            cm,
            &[
                ("data[a b]: Invalid value \"a b\": a valid config key must consist of",
                    |v| v["data"]["a b"] = json!("x")),
                ("data[..x]: Invalid value", |v| v["data"]["..x"] = json!("x")),
                ("data[logo.bin]: Invalid value \"logo.bin\": duplicate of key present in binaryData",
                    |v| v["data"]["logo.bin"] = json!("x")),
                ("data: Too long: must have at most 1048576 bytes",
                    |v| v["data"]["big"] = json!("x".repeat(MAX_DATA_BYTES))),
            ],
        );
        let secret = || {
            json!({
                "metadata": {"name": "tls", "namespace": "default"},
                "type": "kubernetes.io/tls",
                "data": {"tls.crt": "Q0VSVA==", "tls.key": "S0VZ"}
            })
        };
        assert_eq!(validate(&obj::<v1::Secret>(secret())), Ok(()));
        expect_failures::<v1::Secret>(
            secret,
            &[
                ("data[tls.key]: Required value", |v| v["data"] = json!({"tls.crt": "eA=="})),
                ("data[a/b]: Invalid value", |v| v["data"]["a/b"] = json!("eA==")),
                ("data[username]: Required value",
                    |v| { v["type"] = json!("kubernetes.io/basic-auth"); v["data"] = json!({}); }),
                ("data[.dockerconfigjson]: Invalid value \"<secret contents redacted>\": must be valid JSON",
                    |v| { v["type"] = json!("kubernetes.io/dockerconfigjson"); v["data"] = json!({".dockerconfigjson": "eA=="}); }),
                ("metadata.annotations[kubernetes.io/service-account.name]: Required value",
                    |v| v["type"] = json!("kubernetes.io/service-account-token")),
            ],
        );
        // stringData counts once merged (the defaults merge it).
        let mut big = obj::<v1::Secret>(json!({
            "metadata": {"name": "big", "namespace": "default"},
            "stringData": {"k": "x".repeat(MAX_DATA_BYTES)}
        }));
        crate::defaults::apply(&mut big);
        assert!(
            errors(&big).iter().any(|e| e.contains("Too long")),
            "{:?}",
            errors(&big)
        );
        // Bad base64 is refused when decoding, naming the key.
        let e = serde_json::from_value::<v1::Secret>(json!({"data": {"pw": "not base64!"}}))
            .expect_err("bad base64");
        assert!(e.to_string().contains("pw: illegal base64 data"), "{e}");
    }

    #[test]
    fn config_maps_and_secrets_that_are_immutable_stay_so() {
        let cm = |data: &str, immutable: Option<bool>| {
            obj::<v1::ConfigMap>(json!({
                "metadata": {"name": "app"}, "data": {"a": data}, "immutable": immutable
            }))
        };
        assert_eq!(
            validate_update(&cm("1", None), &cm("2", Some(true))),
            Ok(())
        );
        let errs = validate_update(&cm("1", Some(true)), &cm("2", Some(true))).unwrap_err();
        assert_eq!(
            errs,
            ["data: Forbidden: field is immutable when `immutable` is set"]
        );
        let errs = validate_update(&cm("1", Some(true)), &cm("1", Some(false))).unwrap_err();
        assert_eq!(
            errs,
            ["immutable: Forbidden: field is immutable when `immutable` is set"]
        );
        let secret = |t: &str| obj::<v1::Secret>(json!({"metadata": {"name": "s"}, "type": t}));
        let errs = validate_update(&secret("Opaque"), &secret("kubernetes.io/tls")).unwrap_err();
        assert_eq!(
            errs,
            ["type: Invalid value \"kubernetes.io/tls\": field is immutable"]
        );
    }

    #[test]
    fn job_rules_and_generated_selectors() {
        let created = |spec: Value| {
            let mut o = obj::<v1::Job>(json!({
                "metadata": {"name": "pi", "namespace": "default", "uid": "u-1"},
                "spec": spec
            }));
            crate::defaults::apply(&mut o);
            crate::defaults::on_create(&mut o);
            o
        };
        let tmpl = |policy: &str| json!({"spec": {"restartPolicy": policy, "containers": [{"name": "c", "image": "x"}]}});
        let ok = created(json!({"completions": 3, "template": tmpl("Never")}));
        assert_eq!(validate(&ok), Ok(()));
        let j = v1::Job::from_object(ok.clone()).expect("job");
        let spec = j.spec.clone().unwrap_or_default();
        assert_eq!(
            spec.selector.map(|s| s.match_labels),
            Some(
                [(
                    "batch.kubernetes.io/controller-uid".to_string(),
                    "u-1".to_string()
                )]
                .into()
            )
        );
        let labels = spec
            .template
            .and_then(|t| t.metadata)
            .map(|m| m.labels)
            .unwrap_or_default();
        assert_eq!(labels.get("job-name").map(String::as_str), Some("pi"));
        assert_eq!((spec.parallelism, spec.backoff_limit), (Some(1), Some(6)));
        let errs = errors(&created(json!({"template": tmpl("Always")})));
        assert!(
            errs.iter().any(|e| e.contains(
                "spec.template.spec.restartPolicy: Unsupported value \"Always\": supported values: \"OnFailure\", \"Never\""
            )),
            "{errs:?}"
        );
        // Indexed: completions required, and bounded.
        let indexed = created(
            json!({"completions": 3, "completionMode": "Indexed", "template": tmpl("Never")}),
        );
        assert_eq!(validate(&indexed), Ok(()));
        let errs = errors(&created(
            json!({"parallelism": 2, "completionMode": "Indexed", "template": tmpl("Never")}),
        ));
        assert!(
            errs.iter()
                .any(|e| e == "spec.completions: Required value: when completion mode is Indexed"),
            "{errs:?}"
        );
        let errs = errors(&created(
            json!({"completions": 100_001, "completionMode": "Indexed", "template": tmpl("Never")}),
        ));
        assert!(
            errs.iter()
                .any(|e| e.starts_with("spec.completions: Invalid value 100001")),
            "{errs:?}"
        );
        let errs = errors(&created(
            json!({"completions": -1, "activeDeadlineSeconds": 0,
                                          "template": tmpl("OnFailure")}),
        ));
        assert!(
            errs.iter()
                .any(|e| e.starts_with("spec.completions: Invalid value -1")),
            "{errs:?}"
        );
        assert!(
            errs.iter()
                .any(|e| e.starts_with("spec.activeDeadlineSeconds")),
            "{errs:?}"
        );
        // Another Job's uid in the selector: not the generated one.
        let mut other = obj::<v1::Job>(json!({
            "metadata": {"name": "pi", "uid": "u-1"},
            "spec": {"selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": "u-2"}},
                     "template": {"metadata": {"labels": {"batch.kubernetes.io/controller-uid": "u-2"}},
                                  "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "x"}]}}}
        }));
        crate::defaults::apply(&mut other);
        crate::defaults::on_create(&mut other);
        assert!(errors(&other)
            .iter()
            .any(|e| e.contains("`selector` not auto-generated")));
        // Updates: completions and the template are immutable.
        let changed = created(json!({"completions": 4, "template": tmpl("Never")}));
        let errs = validate_update(&ok, &changed).unwrap_err();
        assert_eq!(
            errs,
            ["spec.completions: Invalid value Some(4): field is immutable"]
        );
        let more = created(json!({"completions": 3, "parallelism": 5, "template": tmpl("Never")}));
        assert_eq!(validate_update(&ok, &more), Ok(()));
    }

    #[test]
    fn cron_job_rules() {
        let cron = |name: &str, spec: Value| {
            let mut o = obj::<v1::CronJob>(json!({"metadata": {"name": name}, "spec": spec}));
            crate::defaults::apply(&mut o);
            o
        };
        let tmpl = json!({"spec": {"template": {"spec": {"restartPolicy": "OnFailure",
                                   "containers": [{"name": "c", "image": "x"}]}}}});
        let ok = cron(
            "hello",
            json!({"schedule": "*/5 * * * *", "timeZone": "Europe/Paris", "jobTemplate": tmpl}),
        );
        assert_eq!(validate(&ok), Ok(()));
        let cj = v1::CronJob::from_object(ok).expect("cronjob");
        let s = cj.spec.unwrap_or_default();
        assert_eq!(
            (
                s.concurrency_policy.as_str(),
                s.suspend,
                s.successful_jobs_history_limit,
                s.failed_jobs_history_limit
            ),
            ("Allow", Some(false), Some(3), Some(1))
        );
        let cases = [
            (
                json!({"schedule": "", "jobTemplate": tmpl}),
                "spec.schedule: Required value",
            ),
            (
                json!({"schedule": "* * *", "jobTemplate": tmpl}),
                "spec.schedule: Invalid value \"* * *\": expected exactly 5 fields, found 3",
            ),
            (
                json!({"schedule": "TZ=UTC 0 0 * * *", "jobTemplate": tmpl}),
                "cannot use TZ or CRON_TZ in schedule",
            ),
            (
                json!({"schedule": "@daily", "timeZone": "Nowhere/Land", "jobTemplate": tmpl}),
                "spec.timeZone: Invalid value \"Nowhere/Land\": unknown time zone Nowhere/Land",
            ),
            (
                json!({"schedule": "@daily", "concurrencyPolicy": "Sometimes", "jobTemplate": tmpl}),
                "spec.concurrencyPolicy: Unsupported value \"Sometimes\"",
            ),
            (
                json!({"schedule": "@daily", "successfulJobsHistoryLimit": -1, "jobTemplate": tmpl}),
                "spec.successfulJobsHistoryLimit: Invalid value -1",
            ),
            (
                json!({"schedule": "@daily", "jobTemplate": {"spec": {"backoffLimit": -2,
                        "template": tmpl["spec"]["template"]}}}),
                "spec.jobTemplate.spec.backoffLimit: Invalid value -2",
            ),
            (
                json!({"schedule": "@daily", "jobTemplate": {"spec": {
                        "selector": {"matchLabels": {"a": "b"}},
                        "template": tmpl["spec"]["template"]}}}),
                "spec.jobTemplate.spec.selector: Invalid value",
            ),
            (
                json!({"schedule": "@daily", "jobTemplate": {"spec": {"template": {"spec": {
                        "containers": [{"name": "c", "image": "x"}]}}}}}),
                "spec.jobTemplate.spec.template.spec.restartPolicy: Unsupported value \"Always\"",
            ),
            (
                json!({"schedule": "@daily"}),
                "spec.jobTemplate.spec: Required value",
            ),
        ];
        for (spec, want) in cases {
            let errs = errors(&cron("hello", spec.clone()));
            assert!(
                errs.iter().any(|e| e.starts_with(want) || e.contains(want)),
                "{spec}: {errs:?}"
            );
        }
        let long = "x".repeat(53);
        let errs = errors(&cron(
            &long,
            json!({"schedule": "@daily", "jobTemplate": tmpl}),
        ));
        assert!(
            errs.iter()
                .any(|e| e.contains("must be no more than 52 characters")),
            "{errs:?}"
        );
    }

    #[test]
    fn env_sources_and_config_volumes() {
        expect_failures::<v1::Pod>(
            pod_json,
            &[
                ("spec.containers[0].env[0].valueFrom: Invalid value \"\": may not be specified when `value` is not empty",
                    |v| v["spec"]["containers"][0]["env"][0]["valueFrom"] = json!({"configMapKeyRef": {"name": "a", "key": "b"}})),
                ("spec.containers[0].env[1].valueFrom: Invalid value \"\": may not have more than one field specified at a time",
                    |v| push(&mut v["spec"]["containers"][0]["env"], json!({"name": "X", "valueFrom": {
                        "configMapKeyRef": {"name": "a", "key": "b"}, "secretKeyRef": {"name": "a", "key": "b"}}}))),
                ("spec.containers[0].env[1].valueFrom: Invalid value \"\": must specify one of",
                    |v| push(&mut v["spec"]["containers"][0]["env"], json!({"name": "X", "valueFrom": {}}))),
                ("spec.containers[0].env[1].valueFrom.secretKeyRef.key: Required value",
                    |v| push(&mut v["spec"]["containers"][0]["env"], json!({"name": "X", "valueFrom": {"secretKeyRef": {"name": "a"}}}))),
                ("spec.containers[0].env[1].valueFrom.configMapKeyRef.name: Required value",
                    |v| push(&mut v["spec"]["containers"][0]["env"], json!({"name": "X", "valueFrom": {"configMapKeyRef": {"key": "a"}}}))),
                ("spec.containers[0].env[1].valueFrom.fieldRef.fieldPath: Unsupported value \"spec.secret\"",
                    |v| push(&mut v["spec"]["containers"][0]["env"], json!({"name": "X", "valueFrom": {"fieldRef": {"fieldPath": "spec.secret"}}}))),
                ("spec.containers[0].envFrom[0]: Invalid value \"\": must specify one of: `configMapRef` or `secretRef`",
                    |v| v["spec"]["containers"][0]["envFrom"] = json!([{"prefix": "A_"}])),
                ("spec.containers[0].envFrom[0].prefix: Invalid value \"1A\"",
                    |v| v["spec"]["containers"][0]["envFrom"] = json!([{"prefix": "1A", "configMapRef": {"name": "x"}}])),
                ("spec.volumes[0].configMap.name: Required value",
                    |v| v["spec"]["volumes"] = json!([{"name": "v", "configMap": {}}])),
                ("spec.volumes[0].secret.items[0].path: Invalid value \"../x\"",
                    |v| v["spec"]["volumes"] = json!([{"name": "v", "secret": {"secretName": "s", "items": [{"key": "a", "path": "../x"}]}}])),
                ("spec.volumes[0].secret.defaultMode: Invalid value 512",
                    |v| v["spec"]["volumes"] = json!([{"name": "v", "secret": {"secretName": "s", "defaultMode": 512}}])),
                ("spec.volumes[0].secret: Forbidden: may not specify more than 1 volume type",
                    |v| v["spec"]["volumes"] = json!([{"name": "v", "configMap": {"name": "a"}, "secret": {"secretName": "s"}}])),
            ],
        );
        let mut ok = pod_json();
        ok["spec"]["containers"][0]["env"] = json!([
            {"name": "A", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "a", "optional": true}}},
            {"name": "B", "valueFrom": {"secretKeyRef": {"name": "db", "key": "pw"}}},
            {"name": "C", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
            {"name": "D", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "status.podIP"}}}
        ]);
        ok["spec"]["containers"][0]["envFrom"] =
            json!([{"prefix": "CFG_", "configMapRef": {"name": "cfg"}}]);
        ok["spec"]["volumes"] = json!([
            {"name": "c", "configMap": {"name": "cfg", "items": [{"key": "a", "path": "conf/a.txt", "mode": 0o600}]}},
            {"name": "s", "secret": {"secretName": "db", "defaultMode": 0o400, "optional": true}}
        ]);
        assert_eq!(validate(&obj::<v1::Pod>(ok)), Ok(()));
    }

    #[test]
    fn pod_rules() {
        expect_failures::<v1::Pod>(
            pod_json,
            &[
                ("metadata.name: Invalid value \"Web_1\": must be a lowercase RFC 1123 subdomain",
                    |v| v["metadata"]["name"] = json!("Web_1")),
                ("metadata.name: Required value", |v| v["metadata"]["name"] = json!("")),
                ("metadata.namespace: Invalid value", |v| v["metadata"]["namespace"] = json!("a.b")),
                ("metadata.labels: Invalid value \"-bad\"", |v| v["metadata"]["labels"]["-bad"] = json!("x")),
                ("metadata.labels[app]: Invalid value", |v| v["metadata"]["labels"]["app"] = json!("a b")),
                ("metadata.ownerReferences[0].uid: Required value",
                    |v| v["metadata"]["ownerReferences"] = json!([{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "x"}])),
                ("spec.containers: Required value", |v| v["spec"]["containers"] = json!([])),
                ("spec.containers[0].imagePullPolicy: Unsupported value \"Sometimes\"",
                    |v| v["spec"]["containers"][0]["imagePullPolicy"] = json!("Sometimes")),
                ("spec.volumes[1].name: Duplicate value \"v\"",
                    |v| v["spec"]["volumes"] = json!([{"name": "v", "emptyDir": {}}, {"name": "v", "emptyDir": {}}])),
                ("spec.volumes[0]: Required value: must specify a volume type",
                    |v| v["spec"]["volumes"] = json!([{"name": "v"}])),
                ("spec.volumes[0].hostPath: Forbidden: may not specify more than 1 volume type",
                    |v| v["spec"]["volumes"] = json!([{"name": "v", "emptyDir": {}, "hostPath": {"path": "/x"}}])),
                ("spec.volumes[0].hostPath.path: Invalid value \"x/../y\"",
                    |v| v["spec"]["volumes"] = json!([{"name": "v", "hostPath": {"path": "x/../y"}}])),
                ("spec.volumes[0].hostPath.type: Unsupported value \"Pipe\"",
                    |v| v["spec"]["volumes"] = json!([{"name": "v", "hostPath": {"path": "/x", "type": "Pipe"}}])),
                ("spec.volumes[0].emptyDir.medium: Unsupported value \"Disk\"",
                    |v| v["spec"]["volumes"] = json!([{"name": "v", "emptyDir": {"medium": "Disk"}}])),
                ("spec.containers[0].volumeMounts[0].name: Invalid value \"nope\": volume not found",
                    |v| v["spec"]["containers"][0]["volumeMounts"] = json!([{"name": "nope", "mountPath": "/d"}])),
                ("spec.containers[0].volumeMounts[0].mountPath: Required value",
                    |v| v["spec"]["containers"][0]["volumeMounts"] = json!([{"name": "x"}])),
                ("spec.containers[0].volumeMounts[0].subPath: Invalid value \"../up\"",
                    |v| v["spec"]["containers"][0]["volumeMounts"] = json!([{"name": "x", "mountPath": "/d", "subPath": "../up"}])),
                ("spec.containers[0].name: Required value", |v| v["spec"]["containers"][0]["name"] = json!("")),
                ("spec.containers[0].name: Invalid value \"Web\"", |v| v["spec"]["containers"][0]["name"] = json!("Web")),
                ("spec.containers[1].name: Duplicate value \"web\"",
                    |v| push(&mut v["spec"]["containers"], json!({"name": "web", "image": "x"}))),
                ("spec.containers[0].image: Required value", |v| v["spec"]["containers"][0]["image"] = json!("")),
                ("spec.containers[0].ports[0].containerPort: Invalid value 0",
                    |v| v["spec"]["containers"][0]["ports"][0]["containerPort"] = json!(0)),
                ("spec.containers[0].ports[0].containerPort: Invalid value 70000",
                    |v| v["spec"]["containers"][0]["ports"][0]["containerPort"] = json!(70000)),
                ("spec.containers[0].ports[0].hostPort: Invalid value -1",
                    |v| v["spec"]["containers"][0]["ports"][0]["hostPort"] = json!(-1)),
                ("spec.containers[0].ports[0].protocol: Unsupported value \"HTTP\"",
                    |v| v["spec"]["containers"][0]["ports"][0]["protocol"] = json!("HTTP")),
                ("spec.containers[0].ports[0].name: Invalid value \"a-very-long-port-name\"",
                    |v| v["spec"]["containers"][0]["ports"][0]["name"] = json!("a-very-long-port-name")),
                ("spec.containers[0].ports[0].name: Invalid value \"8080\"",
                    |v| v["spec"]["containers"][0]["ports"][0]["name"] = json!("8080")),
                ("spec.containers[1].ports[0].name: Duplicate value \"http\"",
                    |v| push(&mut v["spec"]["containers"], json!({"name": "side", "image": "x",
                        "ports": [{"name": "http", "containerPort": 81}]}))),
                ("spec.containers[0].env[0].name: Required value",
                    |v| v["spec"]["containers"][0]["env"][0]["name"] = json!("")),
                ("spec.containers[0].env[0].name: Invalid value \"1X\"",
                    |v| v["spec"]["containers"][0]["env"][0]["name"] = json!("1X")),
                ("spec.containers[0].resources.limits[gpu]: Unsupported value",
                    |v| v["spec"]["containers"][0]["resources"]["limits"]["gpu"] = json!("1")),
                ("spec.containers[0].resources.requests[memory]: Invalid value \"lots\"",
                    |v| v["spec"]["containers"][0]["resources"]["requests"]["memory"] = json!("lots")),
                ("spec.containers[0].resources.requests[cpu]: Invalid value \"2\": must be less than or equal to the cpu limit of 1",
                    |v| v["spec"]["containers"][0]["resources"]["requests"]["cpu"] = json!("2")),
                ("spec.containers[0].livenessProbe: Required value",
                    |v| v["spec"]["containers"][0]["livenessProbe"] = json!({"periodSeconds": 5})),
                ("spec.containers[0].livenessProbe: Forbidden: may not specify more than 1 handler type",
                    |v| v["spec"]["containers"][0]["livenessProbe"]["exec"] = json!({"command": ["true"]})),
                ("spec.containers[0].readinessProbe.exec.command: Required value",
                    |v| v["spec"]["containers"][0]["readinessProbe"] = json!({"exec": {}})),
                ("spec.containers[0].livenessProbe.httpGet.port: Invalid value \"metrics\": must be the name of one of the container's ports",
                    |v| v["spec"]["containers"][0]["livenessProbe"]["httpGet"]["port"] = json!("metrics")),
                ("spec.containers[0].readinessProbe.tcpSocket.port: Invalid value 0",
                    |v| v["spec"]["containers"][0]["readinessProbe"]["tcpSocket"]["port"] = json!(0)),
                ("spec.containers[0].readinessProbe.tcpSocket.port: Required value",
                    |v| v["spec"]["containers"][0]["readinessProbe"]["tcpSocket"]["port"] = json!("")),
                ("spec.containers[0].livenessProbe.httpGet.scheme: Unsupported value \"FTP\"",
                    |v| v["spec"]["containers"][0]["livenessProbe"]["httpGet"]["scheme"] = json!("FTP")),
                ("spec.containers[0].livenessProbe.periodSeconds: Invalid value -1",
                    |v| v["spec"]["containers"][0]["livenessProbe"]["periodSeconds"] = json!(-1)),
                ("spec.containers[0].livenessProbe.successThreshold: Invalid value 2",
                    |v| v["spec"]["containers"][0]["livenessProbe"]["successThreshold"] = json!(2)),
                ("spec.restartPolicy: Unsupported value \"Sometimes\"", |v| v["spec"]["restartPolicy"] = json!("Sometimes")),
                ("spec.terminationGracePeriodSeconds: Invalid value -5",
                    |v| v["spec"]["terminationGracePeriodSeconds"] = json!(-5)),
                ("spec.nodeSelector: Invalid value \"bad key\"", |v| v["spec"]["nodeSelector"]["bad key"] = json!("x")),
                ("spec.tolerations[0].operator: Unsupported value \"Like\"",
                    |v| v["spec"]["tolerations"][0]["operator"] = json!("Like")),
                ("spec.tolerations[0].value: Invalid value \"web\": must be empty",
                    |v| v["spec"]["tolerations"][0]["operator"] = json!("Exists")),
                ("spec.tolerations[0].effect: Unsupported value \"Evict\"",
                    |v| v["spec"]["tolerations"][0]["effect"] = json!("Evict")),
                ("spec.tolerations[0].effect: Invalid value \"NoSchedule\": must be 'NoExecute'",
                    |v| v["spec"]["tolerations"][0]["effect"] = json!("NoSchedule")),
                ("spec.tolerations[0].operator: Invalid value \"Equal\": must be 'Exists' when `key` is empty",
                    |v| v["spec"]["tolerations"][0]["key"] = json!("")),
                ("spec: Required value", |v| v["spec"] = json!(null)),
            ],
        );
    }

    #[test]
    fn many_problems_at_once() {
        let mut v = pod_json();
        v["metadata"]["name"] = json!("Web_1");
        v["spec"]["containers"][0]["image"] = json!("");
        v["spec"]["containers"][0]["ports"][0]["containerPort"] = json!(0);
        let errs = errors(&obj::<v1::Pod>(v));
        assert!(errs.len() >= 3, "{errs:#?}");
        for want in [
            "metadata.name",
            "spec.containers[0].image",
            "spec.containers[0].ports[0].containerPort",
        ] {
            assert!(
                errs.iter().any(|m| m.starts_with(want)),
                "{want} in {errs:#?}"
            );
        }
    }

    #[test]
    fn deployment_rules() {
        expect_failures::<v1::Deployment>(
            deployment_json,
            &[
                ("spec: Required value", |v| v["spec"] = json!(null)),
                ("spec.replicas: Invalid value -1", |v| v["spec"]["replicas"] = json!(-1)),
                ("spec.selector: Required value", |v| v["spec"]["selector"] = json!(null)),
                ("spec.selector: Required value", |v| v["spec"]["selector"] = json!({})),
                ("spec.selector.matchExpressions[0].operator: Unsupported value \"Is\"",
                    |v| v["spec"]["selector"]["matchExpressions"][0]["operator"] = json!("Is")),
                ("spec.selector.matchExpressions[0].values: Required value",
                    |v| v["spec"]["selector"]["matchExpressions"][0]["values"] = json!([])),
                ("spec.selector.matchExpressions[0].values: Forbidden",
                    |v| v["spec"]["selector"]["matchExpressions"][0]["operator"] = json!("Exists")),
                ("spec.template.metadata.labels: Invalid value {\"app\": \"api\", \"tier\": \"front\"}: `selector` does not match template `labels`",
                    |v| v["spec"]["template"]["metadata"]["labels"]["app"] = json!("api")),
                ("spec.template.metadata.labels: Invalid value",
                    |v| v["spec"]["template"]["metadata"]["labels"]["tier"] = json!("back")),
                ("spec.template: Required value", |v| v["spec"]["template"] = json!(null)),
                ("spec.template.spec.containers[0].image: Required value",
                    |v| v["spec"]["template"]["spec"]["containers"][0]["image"] = json!("")),
                ("spec.template.spec.restartPolicy: Unsupported value \"Never\": supported values: \"Always\"",
                    |v| v["spec"]["template"]["spec"]["restartPolicy"] = json!("Never")),
                ("spec.strategy.type: Unsupported value \"BlueGreen\"",
                    |v| v["spec"]["strategy"]["type"] = json!("BlueGreen")),
                ("spec.strategy.rollingUpdate: Forbidden",
                    |v| v["spec"]["strategy"]["type"] = json!("Recreate")),
                ("spec.strategy.rollingUpdate.maxSurge: Invalid value \"-1\"",
                    |v| v["spec"]["strategy"]["rollingUpdate"]["maxSurge"] = json!(-1)),
                ("spec.strategy.rollingUpdate.maxSurge: Invalid value \"lots\"",
                    |v| v["spec"]["strategy"]["rollingUpdate"]["maxSurge"] = json!("lots")),
                ("spec.strategy.rollingUpdate.maxUnavailable: Invalid value \"150%\"",
                    |v| v["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] = json!("150%")),
                ("spec.strategy.rollingUpdate.maxUnavailable: Invalid value \"0%\": may not be 0 when `maxSurge` is 0",
                    |v| v["spec"]["strategy"]["rollingUpdate"] = json!({"maxSurge": 0, "maxUnavailable": "0%"})),
                ("spec.minReadySeconds: Invalid value -1", |v| v["spec"]["minReadySeconds"] = json!(-1)),
                ("spec.revisionHistoryLimit: Invalid value -1", |v| v["spec"]["revisionHistoryLimit"] = json!(-1)),
                ("spec.progressDeadlineSeconds: Invalid value 5: must be greater than minReadySeconds",
                    |v| v["spec"]["progressDeadlineSeconds"] = json!(5)),
            ],
        );
    }

    #[test]
    fn daemonset_rolling_updates_take_a_surge_or_unavailability() {
        let ds = |ru: serde_json::Value| {
            let mut v = deployment_json();
            v["kind"] = json!("DaemonSet");
            if let Some(spec) = v["spec"].as_object_mut() {
                spec.remove("replicas");
                spec.remove("strategy");
                spec.remove("progressDeadlineSeconds");
            }
            v["spec"]["updateStrategy"] = json!({"type": "RollingUpdate", "rollingUpdate": ru});
            let mut o = crate::manifest::from_value(v).expect("a DaemonSet");
            crate::defaults::apply(&mut o);
            validate(&o)
        };
        assert_eq!(ds(json!({"maxSurge": 1, "maxUnavailable": 0})), Ok(()));
        assert_eq!(ds(json!({"maxUnavailable": "25%"})), Ok(()));
        let both = ds(json!({"maxSurge": 1, "maxUnavailable": 1}))
            .err()
            .unwrap_or_default();
        assert!(
            both.iter().any(|p| p.contains("maxSurge")
                && p.contains("may not be set when maxUnavailable is non-zero")),
            "{both:?}"
        );
        let neither = ds(json!({"maxSurge": 0, "maxUnavailable": 0}))
            .err()
            .unwrap_or_default();
        assert!(
            neither
                .iter()
                .any(|p| p.contains("may not be 0 when `maxSurge` is 0")),
            "{neither:?}"
        );
        let big = ds(json!({"maxSurge": "150%", "maxUnavailable": 0}))
            .err()
            .unwrap_or_default();
        assert!(
            big.iter()
                .any(|p| p.contains("maxSurge") && p.contains("greater than 100%")),
            "{big:?}"
        );
    }

    #[test]
    fn replicaset_rules() {
        let rs = || {
            let mut v = deployment_json();
            v["kind"] = json!("ReplicaSet");
            if let Some(spec) = v["spec"].as_object_mut() {
                spec.remove("strategy");
                spec.remove("progressDeadlineSeconds");
            }
            v
        };
        assert_eq!(validate(&obj::<v1::ReplicaSet>(rs())), Ok(()));
        expect_failures::<v1::ReplicaSet>(
            rs,
            &[
                ("spec.replicas: Invalid value -2", |v| {
                    v["spec"]["replicas"] = json!(-2)
                }),
                ("spec.selector: Required value", |v| {
                    v["spec"]["selector"] = json!(null)
                }),
                ("spec.template.metadata.labels: Invalid value", |v| {
                    v["spec"]["template"]["metadata"] = json!(null)
                }),
                ("spec.template.spec: Required value", |v| {
                    v["spec"]["template"]["spec"] = json!(null)
                }),
            ],
        );
    }

    #[test]
    fn service_rules() {
        expect_failures::<v1::Service>(
            service_json,
            &[
                ("metadata.name: Invalid value \"web.example\": must be a lowercase RFC 1123 label",
                    |v| v["metadata"]["name"] = json!("web.example")),
                ("spec: Required value", |v| v["spec"] = json!(null)),
                ("spec.ports: Required value", |v| v["spec"]["ports"] = json!([])),
                ("spec.ports[0].port: Invalid value 0", |v| v["spec"]["ports"][0]["port"] = json!(0)),
                ("spec.ports[1].port: Invalid value 65536", |v| v["spec"]["ports"][1]["port"] = json!(65536)),
                ("spec.ports[0].targetPort: Invalid value 70000", |v| v["spec"]["ports"][0]["targetPort"] = json!(70000)),
                ("spec.ports[0].targetPort: Invalid value \"Not A Name\"",
                    |v| v["spec"]["ports"][0]["targetPort"] = json!("Not A Name")),
                ("spec.ports[0].protocol: Unsupported value \"ICMP\"", |v| v["spec"]["ports"][0]["protocol"] = json!("ICMP")),
                ("spec.ports[1].name: Required value", |v| v["spec"]["ports"][1]["name"] = json!("")),
                ("spec.ports[1].name: Duplicate value \"http\"", |v| v["spec"]["ports"][1]["name"] = json!("http")),
                ("spec.ports[1]: Duplicate value \"80/TCP\"", |v| v["spec"]["ports"][1]["port"] = json!(80)),
                ("spec.type: Unsupported value \"External\"", |v| v["spec"]["type"] = json!("External")),
                ("spec.ports[0].nodePort: Invalid value 80", |v| v["spec"]["ports"][0]["nodePort"] = json!(80)),
                ("spec.ports[0].nodePort: Forbidden", |v| v["spec"]["type"] = json!("ClusterIP")),
                ("spec.selector: Invalid value \"a/b/c\"", |v| v["spec"]["selector"]["a/b/c"] = json!("x")),
                ("spec.selector[app]: Invalid value", |v| v["spec"]["selector"]["app"] = json!("-web")),
                ("spec.sessionAffinity: Unsupported value", |v| v["spec"]["sessionAffinity"] = json!("Sticky")),
                ("spec.clusterIP: Invalid value \"10.0.0\"", |v| v["spec"]["clusterIP"] = json!("10.0.0")),
            ],
        );
    }

    #[test]
    fn other_kinds_rules() {
        let node = || json!({"metadata": {"name": "n1"}, "spec": {}, "status": {}});
        expect_failures::<v1::Node>(
            node,
            &[
                ("spec.taints[0].key: Required value", |v| {
                    v["spec"]["taints"] = json!([{"effect": "NoSchedule"}])
                }),
                ("spec.taints[0].key: Invalid value", |v| {
                    v["spec"]["taints"] = json!([{"key": "a b", "effect": "NoSchedule"}])
                }),
                ("spec.taints[0].effect: Required value", |v| {
                    v["spec"]["taints"] = json!([{"key": "a"}])
                }),
                ("spec.taints[0].effect: Unsupported value \"Later\"", |v| {
                    v["spec"]["taints"] = json!([{"key": "a", "effect": "Later"}])
                }),
                ("status.capacity[cpu]: Invalid value \"four\"", |v| {
                    v["status"]["capacity"] = json!({"cpu": "four"})
                }),
                ("status.allocatable[memory]: Invalid value \"-1Gi\"", |v| {
                    v["status"]["allocatable"] = json!({"memory": "-1Gi"})
                }),
                ("metadata.name: Invalid value \"N1\"", |v| {
                    v["metadata"]["name"] = json!("N1")
                }),
            ],
        );
        let endpoints = || json!({"metadata": {"name": "web"}, "subsets": [{"addresses": [{"ip": "10.0.0.1"}], "ports": [{"port": 80}]}]});
        expect_failures::<v1::Endpoints>(
            endpoints,
            &[
                ("subsets[0].addresses[0].ip: Required value", |v| {
                    v["subsets"][0]["addresses"][0]["ip"] = json!("")
                }),
                ("subsets[0].addresses[0].ip: Invalid value \"pod-a\"", |v| {
                    v["subsets"][0]["addresses"][0]["ip"] = json!("pod-a")
                }),
                ("subsets[0].ports[0].port: Invalid value 0", |v| {
                    v["subsets"][0]["ports"][0]["port"] = json!(0)
                }),
                ("subsets[0].ports[0].port: Invalid value 99999", |v| {
                    v["subsets"][0]["ports"][0]["port"] = json!(99999)
                }),
            ],
        );
        let event =
            || json!({"metadata": {"name": "e1"}, "involvedObject": {"kind": "Pod", "name": "p"}});
        expect_failures::<v1::Event>(
            event,
            &[
                ("involvedObject.kind: Required value", |v| {
                    v["involvedObject"]["kind"] = json!("")
                }),
                ("involvedObject.name: Required value", |v| {
                    v["involvedObject"] = json!(null)
                }),
                ("type: Unsupported value \"Fatal\"", |v| {
                    v["type"] = json!("Fatal")
                }),
            ],
        );
        let lease = || json!({"metadata": {"name": "l"}, "spec": {"leaseDurationSeconds": 10}});
        expect_failures::<v1::Lease>(
            lease,
            &[(
                "spec.leaseDurationSeconds: Invalid value 0: must be greater than 0",
                |v| v["spec"]["leaseDurationSeconds"] = json!(0),
            )],
        );
        let namespace = || json!({"metadata": {"name": "team-a"}});
        expect_failures::<v1::Namespace>(
            namespace,
            &[
                ("metadata.name: Invalid value \"team.a\"", |v| {
                    v["metadata"]["name"] = json!("team.a")
                }),
                ("metadata.name: Required value", |v| {
                    v["metadata"] = json!(null)
                }),
            ],
        );
        assert_eq!(
            validate(&Object::default()),
            Err(vec!["kind: Required value".to_string()])
        );
    }

    #[test]
    fn name_helpers() {
        for (s, label, subdomain) in [
            ("web", true, true),
            ("web-1", true, true),
            ("a.b.c", false, true),
            ("Web", false, false),
            ("-web", false, false),
            ("web-", false, false),
            ("a..b", false, false),
            ("", false, false),
            ("a_b", false, false),
        ] {
            assert_eq!(is_dns1123_label(s), label, "{s}");
            assert_eq!(is_dns1123_subdomain(s), subdomain, "{s}");
        }
        assert!(is_dns1123_label(&"a".repeat(63)));
        assert!(!is_dns1123_label(&"a".repeat(64)));
        assert!(is_dns1123_subdomain(&"a".repeat(253)));
        assert!(!is_dns1123_subdomain(&"a".repeat(254)));
        for (key, ok) in [
            ("app", true),
            ("App_1.x", true),
            ("example.com/app", true),
            ("kubernetes.io/os", true),
            ("Example.com/app", false),
            ("/app", false),
            ("a/b/c", false),
            ("example.com/", false),
            ("", false),
            ("_app", false),
        ] {
            assert_eq!(is_label_key(key), ok, "{key}");
        }
        assert!(is_label_key(&"a".repeat(63)));
        assert!(!is_label_key(&"a".repeat(64)));
        assert!(is_label_value("") && is_label_value("v1.2_x") && !is_label_value("a b"));
        assert!(is_iana_svc_name("http") && is_iana_svc_name("h2c") && !is_iana_svc_name("80"));
        assert!(!is_iana_svc_name("a--b") && !is_iana_svc_name("HTTP"));
        assert!(is_env_var_name("_A.b-1") && !is_env_var_name("1A") && !is_env_var_name("A B"));
    }

    #[test]
    fn updates() {
        let pod = |node: &str, image: &str, command: &str| {
            let mut v = pod_json();
            v["spec"]["nodeName"] = json!(node);
            v["spec"]["containers"][0]["image"] = json!(image);
            v["spec"]["containers"][0]["command"] = json!([command]);
            obj::<v1::Pod>(v)
        };
        let ok = |a: &Object, b: &Object| validate_update(a, b).is_ok();
        // Binding, and changing images, are allowed.
        assert!(ok(&pod("", "nginx", "x"), &pod("node-1", "nginx", "x")));
        assert!(ok(
            &pod("node-1", "nginx", "x"),
            &pod("node-1", "nginx:2", "x")
        ));
        let errs = validate_update(&pod("node-1", "nginx", "x"), &pod("node-2", "nginx", "y"))
            .err()
            .unwrap_or_default();
        assert!(errs
            .iter()
            .any(|m| m.starts_with("spec.nodeName: Invalid value \"node-2\"")));
        assert!(errs
            .iter()
            .any(|m| m.starts_with("spec.containers[0].command: Forbidden")));
        assert!(!ok(&pod("node-1", "nginx", "x"), &pod("", "nginx", "x")));

        let deployment = |app: &str| {
            let mut v = deployment_json();
            v["spec"]["selector"]["matchLabels"]["app"] = json!(app);
            v["spec"]["replicas"] = json!(app.len());
            obj::<v1::Deployment>(v)
        };
        assert!(ok(&deployment("web"), &deployment("web")));
        let errs = validate_update(&deployment("web"), &deployment("api"))
            .err()
            .unwrap_or_default();
        assert!(
            errs.iter()
                .any(|m| m.contains("spec.selector: Invalid value")),
            "{errs:?}"
        );
        let rs = obj::<v1::ReplicaSet>(json!({"spec": {"selector": {"matchLabels": {"a": "b"}}}}));
        let rs2 = obj::<v1::ReplicaSet>(json!({"spec": {}}));
        assert!(!ok(&rs, &rs2));
        let errs = validate_update(&rs, &deployment("web"))
            .err()
            .unwrap_or_default();
        assert!(errs
            .iter()
            .any(|m| m.starts_with("kind: Invalid value \"Deployment\"")));
    }
}
