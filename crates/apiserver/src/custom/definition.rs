//! CustomResourceDefinitions (`apiextensions.k8s.io/v1`), pure: a CRD's
//! JSON checked as kube-apiserver checks it (names, scope, versions, one
//! storage version, a structural schema per version), its defaults
//! (`singular`, `listKind`, `conversion`), the status the server gives it
//! (`NamesAccepted` and `Established`, or a names conflict with another
//! CRD of the group), and the parsed [`Definition`] the custom resource
//! handlers serve from.

use serde_json::{json, Value};

use keelson_model::validation::{is_dns1123_label, is_dns1123_subdomain};

use super::schema;

pub const GROUP: &str = "apiextensions.k8s.io";
pub const VERSION: &str = "v1";
pub const KIND: &str = "CustomResourceDefinition";
pub const PLURAL: &str = "customresourcedefinitions";
pub const SINGULAR: &str = "customresourcedefinition";
pub const SHORT_NAMES: &[&str] = &["crd", "crds"];

/// A kind's names (`spec.names`, or `status.acceptedNames`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Names {
    pub plural: String,
    pub singular: String,
    pub kind: String,
    pub list_kind: String,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
}

/// One `additionalPrinterColumns` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    /// integer, number, string, boolean or date.
    pub type_: String,
    pub format: String,
    pub description: String,
    pub priority: i64,
    pub json_path: String,
}

/// `subresources.scale`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scale {
    pub spec_replicas_path: String,
    pub status_replicas_path: String,
    pub label_selector_path: String,
}

/// One entry of `spec.versions`.
#[derive(Clone, Debug, PartialEq)]
pub struct Version {
    pub name: String,
    pub served: bool,
    pub storage: bool,
    /// `schema.openAPIV3Schema`.
    pub schema: Value,
    /// `subresources.status` is set.
    pub status: bool,
    pub scale: Option<Scale>,
    pub columns: Vec<Column>,
    pub deprecation_warning: Option<String>,
}

/// A CRD as the handlers serve it.
#[derive(Clone, Debug, PartialEq)]
pub struct Definition {
    /// `metadata.name`: `<plural>.<group>`.
    pub name: String,
    pub group: String,
    pub names: Names,
    pub namespaced: bool,
    pub versions: Vec<Version>,
    /// Its names were accepted and its kind is served.
    pub established: bool,
    /// It is being deleted.
    pub terminating: bool,
}

impl Definition {
    /// The version served under `name`, if any.
    pub fn served(&self, name: &str) -> Option<&Version> {
        self.versions.iter().find(|v| v.served && v.name == name)
    }

    /// The version objects are stored in.
    pub fn storage(&self) -> Option<&Version> {
        self.versions.iter().find(|v| v.storage)
    }

    /// The served versions, in their order in the CRD (the first is the
    /// preferred one).
    pub fn served_versions(&self) -> impl Iterator<Item = &Version> {
        self.versions.iter().filter(|v| v.served)
    }
}

fn str_at<'a>(v: &'a Value, path: &str) -> &'a str {
    v.pointer(path).and_then(Value::as_str).unwrap_or("")
}

fn strings_at(v: &Value, path: &str) -> Vec<String> {
    v.pointer(path)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

fn names_at(v: &Value, path: &str) -> Names {
    let at = |k: &str| str_at(v, &format!("{path}/{k}")).to_string();
    Names {
        plural: at("plural"),
        singular: at("singular"),
        kind: at("kind"),
        list_kind: at("listKind"),
        short_names: strings_at(v, &format!("{path}/shortNames")),
        categories: strings_at(v, &format!("{path}/categories")),
    }
}

/// Fill in what Kubernetes defaults in a CRD's spec: `names.singular`
/// (the kind, lowercased), `names.listKind` (`<kind>List`), `conversion`
/// (`None`), and each version's `served`/`storage` left out as false.
pub fn default(crd: &mut Value) {
    let Some(spec) = crd.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    if let Some(names) = spec.get_mut("names").and_then(Value::as_object_mut) {
        let kind = names
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        if !kind.is_empty() {
            if names
                .get("singular")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
            {
                names.insert("singular".into(), json!(kind.to_lowercase()));
            }
            if names
                .get("listKind")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
            {
                names.insert("listKind".into(), json!(format!("{kind}List")));
            }
        }
    }
    if !spec.contains_key("conversion") {
        spec.insert("conversion".into(), json!({"strategy": "None"}));
    }
}

/// Check a (defaulted) CRD: the problems, each `field: message`, as
/// Kubernetes words them.
pub fn validate(crd: &Value) -> Vec<String> {
    let mut p = Vec::new();
    let group = str_at(crd, "/spec/group");
    let names = names_at(crd, "/spec/names");
    let name = str_at(crd, "/metadata/name");
    if group.is_empty() {
        p.push("spec.group: Required value".to_string());
    } else if !is_dns1123_subdomain(group) || !group.contains('.') {
        p.push(format!(
            "spec.group: Invalid value: {group:?}: should be a domain with at least one dot"
        ));
    } else if group.ends_with(".k8s.io") || group.ends_with(".kubernetes.io") {
        p.push(format!(
            "spec.group: Invalid value: {group:?}: the groups of Kubernetes' own APIs (*.k8s.io, *.kubernetes.io) are not for custom resources"
        ));
    }
    if name != format!("{}.{group}", names.plural) {
        p.push(format!(
            "metadata.name: Invalid value: {name:?}: must be spec.names.plural+\".\"+spec.group"
        ));
    }
    let label = |field: &str, v: &str, p: &mut Vec<String>| {
        if v.is_empty() {
            p.push(format!("spec.names.{field}: Required value"));
        } else if !is_dns1123_label(v) {
            p.push(format!(
                "spec.names.{field}: Invalid value: {v:?}: a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character"
            ));
        }
    };
    label("plural", &names.plural, &mut p);
    label("singular", &names.singular, &mut p);
    for s in &names.short_names {
        label("shortNames", s, &mut p);
    }
    for (field, v) in [("kind", &names.kind), ("listKind", &names.list_kind)] {
        if v.is_empty() {
            p.push(format!("spec.names.{field}: Required value"));
        } else if !v.chars().all(|c| c.is_ascii_alphanumeric())
            || !v.starts_with(|c: char| c.is_ascii_uppercase())
        {
            p.push(format!(
                "spec.names.{field}: Invalid value: {v:?}: must be a CamelCase name starting with an upper case letter"
            ));
        }
    }
    if names.kind == names.list_kind && !names.kind.is_empty() {
        p.push(format!(
            "spec.names.listKind: Invalid value: {:?}: kind and listKind may not be the same",
            names.list_kind
        ));
    }
    match str_at(crd, "/spec/scope") {
        "Namespaced" | "Cluster" => {}
        "" => p.push("spec.scope: Required value".to_string()),
        s => p.push(format!(
            "spec.scope: Unsupported value: {s:?}: supported values: \"Cluster\", \"Namespaced\""
        )),
    }
    match str_at(crd, "/spec/conversion/strategy") {
        "None" => {}
        s => p.push(format!(
            "spec.conversion.strategy: Unsupported value: {s:?}: supported values: \"None\" (conversion webhooks are not served)"
        )),
    }
    let versions = crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if versions.is_empty() {
        p.push("spec.versions: Invalid value: null: must have exactly one version marked as storage version".to_string());
    }
    let mut seen = std::collections::BTreeSet::new();
    let mut storage = 0;
    for (i, v) in versions.iter().enumerate() {
        let at = format!("spec.versions[{i}]");
        let vname = v.get("name").and_then(Value::as_str).unwrap_or("");
        if vname.is_empty() {
            p.push(format!("{at}.name: Required value"));
        } else if !is_dns1123_label(vname) {
            p.push(format!(
                "{at}.name: Invalid value: {vname:?}: a DNS-1035 label must consist of lower case alphanumeric characters or '-'"
            ));
        } else if !seen.insert(vname.to_string()) {
            p.push(format!("{at}.name: Duplicate value: {vname:?}"));
        }
        if v.get("storage").and_then(Value::as_bool) == Some(true) {
            storage += 1;
        }
        match v.pointer("/schema/openAPIV3Schema") {
            None => p.push(format!(
                "{at}.schema.openAPIV3Schema: Required value: schemas are required"
            )),
            Some(s) => p.extend(schema::structural_problems(
                s,
                &format!("{at}.schema.openAPIV3Schema"),
            )),
        }
        if let Some(s) = v.pointer("/subresources/scale") {
            for (f, under) in [
                ("specReplicasPath", ".spec."),
                ("statusReplicasPath", ".status."),
                ("labelSelectorPath", ".status."),
            ] {
                let path = s.get(f).and_then(Value::as_str).unwrap_or("");
                if path.is_empty() && f == "labelSelectorPath" {
                    continue;
                }
                let simple = |under: &str| {
                    path.strip_prefix(under).is_some_and(|rest| {
                        !rest.is_empty() && rest.split('.').all(|x| !x.is_empty())
                    })
                };
                let ok = simple(under) || (f == "labelSelectorPath" && simple(".spec."));
                if !ok {
                    p.push(format!(
                        "{at}.subresources.scale.{f}: Invalid value: {path:?}: should be a json path under {}",
                        under.trim_end_matches('.')
                    ));
                }
            }
        }
        let columns = v
            .get("additionalPrinterColumns")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for (j, c) in columns.iter().enumerate() {
            let cat = format!("{at}.additionalPrinterColumns[{j}]");
            if c.get("name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .is_empty()
            {
                p.push(format!("{cat}.name: Required value"));
            }
            match c.get("type").and_then(Value::as_str).unwrap_or("") {
                "integer" | "number" | "string" | "boolean" | "date" => {}
                t => p.push(format!(
                    "{cat}.type: Unsupported value: {t:?}: supported values: \"boolean\", \"date\", \"integer\", \"number\", \"string\""
                )),
            }
            let path = c.get("jsonPath").and_then(Value::as_str).unwrap_or("");
            if path.is_empty() {
                p.push(format!("{cat}.jsonPath: Required value"));
            } else if super::columns::JsonPath::parse(path).is_err() {
                p.push(format!(
                    "{cat}.jsonPath: Invalid value: {path:?}: must be a simple json path"
                ));
            }
        }
    }
    if !versions.is_empty() && storage != 1 {
        p.push(format!(
            "spec.versions: Invalid value: {storage}: must have exactly one version marked as storage version"
        ));
    }
    p
}

/// The problems of changing `old` into `new` (both valid): the group and
/// scope stay.
pub fn validate_update(old: &Value, new: &Value) -> Vec<String> {
    let mut p = Vec::new();
    for (field, path) in [("spec.group", "/spec/group"), ("spec.scope", "/spec/scope")] {
        if str_at(old, path) != str_at(new, path) {
            p.push(format!(
                "{field}: Invalid value: {:?}: field is immutable",
                str_at(new, path)
            ));
        }
    }
    p
}

/// Whether `names` clashes with `other`'s (another CRD of the same
/// group): the message of the `NamesAccepted=False` condition if so.
fn clash(names: &Names, other: &Names) -> Option<String> {
    if names.plural == other.plural {
        return Some(format!("{:?} is already in use", names.plural));
    }
    if names.kind == other.kind {
        return Some(format!("{:?} is already in use", names.kind));
    }
    if names.list_kind == other.list_kind {
        return Some(format!("{:?} is already in use", names.list_kind));
    }
    let theirs: Vec<&String> = std::iter::once(&other.plural)
        .chain(std::iter::once(&other.singular))
        .chain(other.short_names.iter())
        .collect();
    for s in std::iter::once(&names.singular).chain(names.short_names.iter()) {
        if theirs.contains(&s) {
            return Some(format!("{s:?} is already in use"));
        }
    }
    None
}

/// The status the server keeps on a CRD: its names accepted (and its kind
/// established) unless another established CRD of its group holds one
/// of them. `now` stamps conditions that change; `previous` is the stored
/// status (its transition times are kept while a condition holds).
pub fn status(crd: &Value, others: &[Definition], previous: Option<&Value>, now: &str) -> Value {
    let names = names_at(crd, "/spec/names");
    let group = str_at(crd, "/spec/group");
    let name = str_at(crd, "/metadata/name");
    let conflict = others
        .iter()
        .filter(|o| o.group == group && o.name != name && o.established)
        .find_map(|o| clash(&names, &o.names));
    let was = |t: &str, s: &str| -> Option<String> {
        previous?
            .get("conditions")?
            .as_array()?
            .iter()
            .find(|c| c["type"] == t && c["status"] == s)
            .and_then(|c| c["lastTransitionTime"].as_str())
            .map(str::to_string)
    };
    let cond = |t: &str, s: &str, reason: &str, message: &str| {
        json!({
            "type": t,
            "status": s,
            "reason": reason,
            "message": message,
            "lastTransitionTime": was(t, s).unwrap_or_else(|| now.to_string()),
        })
    };
    let stored: Vec<String> = {
        let mut v = previous
            .map(|p| strings_at(p, "/storedVersions"))
            .unwrap_or_default();
        for ver in crd
            .pointer("/spec/versions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if ver.get("storage").and_then(Value::as_bool) == Some(true) {
                if let Some(n) = ver.get("name").and_then(Value::as_str) {
                    if !v.iter().any(|x| x == n) {
                        v.push(n.to_string());
                    }
                }
            }
        }
        v
    };
    let spec_names = crd
        .pointer("/spec/names")
        .cloned()
        .unwrap_or_else(|| json!({}));
    match conflict {
        None => json!({
            "conditions": [
                cond("NamesAccepted", "True", "NoConflicts", "no conflicts found"),
                cond("Established", "True", "InitialNamesAccepted", "the initial names have been accepted"),
            ],
            "acceptedNames": spec_names,
            "storedVersions": stored,
        }),
        Some(m) => json!({
            "conditions": [
                cond("NamesAccepted", "False", "MultipleNamesNotAllowed", &m),
                cond("Established", "False", "NotAccepted", "not all names are accepted"),
            ],
            "acceptedNames": {"plural": "", "kind": ""},
            "storedVersions": stored,
        }),
    }
}

/// The fields a CRD has, as a structural schema: what pruning and
/// `fieldValidation` judge a CRD's body by (the versions' schemas,
/// `conversion` and `status` are kept as they are).
pub fn known_fields() -> Value {
    let strings = json!({"type": "array", "items": {"type": "string"}});
    let scalar = json!({"type": "string"});
    let keep = json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true});
    let object = |fields: &[&str]| {
        let props: serde_json::Map<String, Value> = fields
            .iter()
            .map(|f| (f.to_string(), scalar.clone()))
            .collect();
        json!({"type": "object", "properties": props})
    };
    let mut names = object(&["plural", "singular", "kind", "listKind"]);
    names["properties"]["shortNames"] = strings.clone();
    names["properties"]["categories"] = strings;
    let version = json!({"type": "object", "properties": {
        "name": scalar, "served": scalar, "storage": scalar, "deprecated": scalar,
        "deprecationWarning": scalar,
        "schema": {"type": "object", "properties": {"openAPIV3Schema": keep}},
        "subresources": {"type": "object", "properties": {
            "status": keep,
            "scale": object(&["specReplicasPath", "statusReplicasPath", "labelSelectorPath"]),
        }},
        "additionalPrinterColumns": {"type": "array", "items":
            object(&["name", "type", "format", "description", "priority", "jsonPath"])},
        "selectableFields": {"type": "array", "items": object(&["jsonPath"])},
    }});
    json!({"type": "object", "properties": {
        "spec": {"type": "object", "properties": {
            "group": scalar, "scope": scalar, "preserveUnknownFields": scalar,
            "names": names,
            "conversion": keep,
            "versions": {"type": "array", "items": version},
        }},
        "status": keep,
    }})
}

fn parse_column(c: &Value) -> Column {
    let s = |k: &str| c.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    Column {
        name: s("name"),
        type_: s("type"),
        format: s("format"),
        description: s("description"),
        priority: c.get("priority").and_then(Value::as_i64).unwrap_or(0),
        json_path: s("jsonPath"),
    }
}

/// The definition a stored CRD describes (stored CRDs were validated).
pub fn parse(crd: &Value) -> Definition {
    let versions = crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|v| Version {
            name: str_at(v, "/name").to_string(),
            served: v.get("served").and_then(Value::as_bool).unwrap_or(false),
            storage: v.get("storage").and_then(Value::as_bool).unwrap_or(false),
            schema: v
                .pointer("/schema/openAPIV3Schema")
                .cloned()
                .unwrap_or_else(|| json!({"type": "object"})),
            status: v.pointer("/subresources/status").is_some(),
            scale: v.pointer("/subresources/scale").map(|s| Scale {
                spec_replicas_path: str_at(s, "/specReplicasPath").to_string(),
                status_replicas_path: str_at(s, "/statusReplicasPath").to_string(),
                label_selector_path: str_at(s, "/labelSelectorPath").to_string(),
            }),
            columns: v
                .get("additionalPrinterColumns")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(parse_column)
                .collect(),
            deprecation_warning: match v.get("deprecated").and_then(Value::as_bool) {
                Some(true) => Some(
                    v.get("deprecationWarning")
                        .and_then(Value::as_str)
                        .map(str::to_string)
                        .unwrap_or_else(|| {
                            format!(
                                "{}/{} {} is deprecated",
                                str_at(crd, "/spec/group"),
                                str_at(v, "/name"),
                                str_at(crd, "/spec/names/kind")
                            )
                        }),
                ),
                _ => None,
            },
        })
        .collect();
    let established = crd
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == "Established" && c["status"] == "True")
        });
    Definition {
        name: str_at(crd, "/metadata/name").to_string(),
        group: str_at(crd, "/spec/group").to_string(),
        names: names_at(crd, "/spec/names"),
        namespaced: str_at(crd, "/spec/scope") != "Cluster",
        versions,
        established,
        terminating: crd.pointer("/metadata/deletionTimestamp").is_some(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crontab() -> Value {
        let mut crd = json!({
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": "crontabs.stable.example.com"},
            "spec": {
                "group": "stable.example.com",
                "scope": "Namespaced",
                "names": {"plural": "crontabs", "kind": "CronTab", "shortNames": ["ct"]},
                "versions": [{
                    "name": "v1", "served": true, "storage": true,
                    "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                        "spec": {"type": "object", "properties": {
                            "cronSpec": {"type": "string"},
                            "replicas": {"type": "integer"}}}}}},
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [
                        {"name": "Spec", "type": "string", "jsonPath": ".spec.cronSpec"}
                    ]
                }]
            }
        });
        default(&mut crd);
        crd
    }

    #[test]
    fn defaults_and_a_valid_definition() {
        let crd = crontab();
        assert_eq!(crd["spec"]["names"]["singular"], "crontab");
        assert_eq!(crd["spec"]["names"]["listKind"], "CronTabList");
        assert_eq!(crd["spec"]["conversion"]["strategy"], "None");
        assert_eq!(validate(&crd), Vec::<String>::new());
        let d = parse(&crd);
        assert_eq!(d.names.plural, "crontabs");
        assert!(d.namespaced);
        assert!(!d.established, "no status yet");
        let v = d.served("v1").expect("v1 served");
        assert!(v.status && v.storage);
        assert_eq!(v.columns[0].json_path, ".spec.cronSpec");
        assert!(d.served("v2").is_none());
    }

    #[test]
    fn invalid_definitions_name_their_fields() {
        let cases: Vec<(&str, Value, &str)> = vec![
            (
                "/metadata/name",
                json!("crontab.stable.example.com"),
                "metadata.name: Invalid value",
            ),
            (
                "/spec/group",
                json!("example"),
                "spec.group: Invalid value: \"example\": should be a domain with at least one dot",
            ),
            ("/spec/group", json!("batch.k8s.io"), "Kubernetes' own APIs"),
            (
                "/spec/scope",
                json!("Everywhere"),
                "spec.scope: Unsupported value",
            ),
            (
                "/spec/names/kind",
                json!("cron tab"),
                "spec.names.kind: Invalid value",
            ),
            (
                "/spec/versions/0/storage",
                json!(false),
                "must have exactly one version marked as storage version",
            ),
            (
                "/spec/versions/0/schema",
                json!({}),
                "openAPIV3Schema: Required value",
            ),
            (
                "/spec/versions/0/schema/openAPIV3Schema/type",
                json!("string"),
                "type: Invalid value: \"string\": must be object at the root",
            ),
            (
                "/spec/versions/0/additionalPrinterColumns/0/type",
                json!("color"),
                "additionalPrinterColumns[0].type: Unsupported value",
            ),
            (
                "/spec/conversion/strategy",
                json!("Webhook"),
                "spec.conversion.strategy: Unsupported value",
            ),
            (
                "/spec/versions/0/subresources",
                json!({"scale": {"specReplicasPath": ".status.replicas", "statusReplicasPath": ".status.replicas"}}),
                "specReplicasPath: Invalid value: \".status.replicas\": should be a json path under .spec",
            ),
        ];
        for (path, value, want) in cases {
            let mut crd = crontab();
            if let Some(slot) = crd.pointer_mut(path) {
                *slot = value;
            }
            let problems = validate(&crd);
            assert!(
                problems.iter().any(|p| p.contains(want)),
                "{path}: {problems:?}"
            );
        }
        let mut crd = crontab();
        crd["spec"]["group"] = json!("other.example.com");
        assert_eq!(
            validate_update(&crontab(), &crd),
            vec!["spec.group: Invalid value: \"other.example.com\": field is immutable"]
        );
    }

    #[test]
    fn unknown_fields_of_a_crd_are_named() {
        let mut crd = crontab();
        crd["spec"]["versions"][0]["additionalPrinterColums"] = json!([]);
        crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["x-kubernetes-validations"] =
            json!([{"rule": "true"}]);
        let dropped = schema::prune(&mut crd, &known_fields());
        assert_eq!(dropped, vec!["spec.versions[0].additionalPrinterColums"]);
        assert!(crd
            .pointer("/spec/versions/0/schema/openAPIV3Schema/x-kubernetes-validations")
            .is_some());
        assert_eq!(validate(&crd), Vec::<String>::new(), "the rest is intact");
    }

    #[test]
    fn a_names_clash_is_not_established() {
        let crd = crontab();
        let s = status(&crd, &[], None, "2026-01-01T00:00:00Z");
        assert_eq!(s["conditions"][1]["type"], "Established");
        assert_eq!(s["conditions"][1]["status"], "True");
        assert_eq!(s["acceptedNames"]["kind"], "CronTab");
        assert_eq!(s["storedVersions"], json!(["v1"]));
        let mut established = crd.clone();
        established["status"] = s.clone();
        assert!(parse(&established).established);
        // The same kind under another plural, in the same group.
        let mut other = crontab();
        other["metadata"]["name"] = json!("crontabz.stable.example.com");
        other["spec"]["names"]["plural"] = json!("crontabz");
        let s2 = status(&other, &[parse(&established)], None, "t");
        assert_eq!(s2["conditions"][0]["status"], "False");
        assert_eq!(
            s2["conditions"][0]["message"],
            "\"CronTab\" is already in use"
        );
        // A later status keeps the transition time of a condition that held.
        let again = status(&crd, &[], Some(&s), "2027-01-01T00:00:00Z");
        assert_eq!(
            again["conditions"][0]["lastTransitionTime"],
            "2026-01-01T00:00:00Z"
        );
    }
}
