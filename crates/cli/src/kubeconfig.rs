//! kubeconfig files for kubectl and every Kubernetes client: `keelson
//! server` writes one into its data dir, `keelson up` one into its data
//! dir and merged into `~/.kube/config`. The merge replaces only
//! Keelson's own entries (cluster `keelson`, user `keelson-admin`, context
//! `keelson`), keeps every other cluster, user, context and setting, and
//! makes `keelson` the current context.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde_yaml::{Mapping, Value};

/// The names of Keelson's entries.
pub const CLUSTER: &str = "keelson";
pub const USER: &str = "keelson-admin";
pub const CONTEXT: &str = "keelson";

/// What a kubeconfig says about one Keelson cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// `http://127.0.0.1:6443` or `https://...`.
    pub server: String,
    pub token: String,
    /// The CA file for an `https` server.
    pub ca: Option<String>,
}

fn map(pairs: Vec<(&str, Value)>) -> Value {
    let mut m = Mapping::new();
    for (k, v) in pairs {
        m.insert(Value::from(k), v);
    }
    Value::Mapping(m)
}

fn cluster(e: &Entry) -> Value {
    let mut c = vec![("server", Value::from(e.server.as_str()))];
    if let Some(ca) = &e.ca {
        c.push(("certificate-authority", Value::from(ca.as_str())));
    }
    map(vec![("name", CLUSTER.into()), ("cluster", map(c))])
}

fn user(e: &Entry) -> Value {
    map(vec![
        ("name", USER.into()),
        ("user", map(vec![("token", e.token.as_str().into())])),
    ])
}

fn context() -> Value {
    map(vec![
        ("name", CONTEXT.into()),
        (
            "context",
            map(vec![("cluster", CLUSTER.into()), ("user", USER.into())]),
        ),
    ])
}

/// A kubeconfig holding only Keelson's entries.
pub fn document(e: &Entry) -> String {
    merge("", e).unwrap_or_default()
}

/// `existing` (a kubeconfig's text, "" for none) with Keelson's entries
/// put in (replacing older ones of the same names) and `keelson` the
/// current context.
pub fn merge(existing: &str, e: &Entry) -> Result<String, String> {
    let mut doc: Value = if existing.trim().is_empty() {
        Value::Mapping(Mapping::new())
    } else {
        serde_yaml::from_str(existing).map_err(|e| format!("not a kubeconfig: {e}"))?
    };
    let root = doc
        .as_mapping_mut()
        .ok_or_else(|| "not a kubeconfig: the document is not a mapping".to_string())?;
    root.entry("apiVersion".into()).or_insert("v1".into());
    root.entry("kind".into()).or_insert("Config".into());
    root.entry("preferences".into())
        .or_insert(Value::Mapping(Mapping::new()));
    for (list, name, entry) in [
        ("clusters", CLUSTER, cluster(e)),
        ("users", USER, user(e)),
        ("contexts", CONTEXT, context()),
    ] {
        let seq = root
            .entry(list.into())
            .or_insert(Value::Sequence(Vec::new()));
        if seq.is_null() {
            *seq = Value::Sequence(Vec::new());
        }
        let seq = seq
            .as_sequence_mut()
            .ok_or_else(|| format!("not a kubeconfig: {list} is not a list"))?;
        match seq
            .iter_mut()
            .find(|x| x.get("name").and_then(Value::as_str) == Some(name))
        {
            Some(old) => *old = entry,
            None => seq.push(entry),
        }
    }
    root.insert("current-context".into(), CONTEXT.into());
    serde_yaml::to_string(&doc).map_err(|e| format!("encode kubeconfig: {e}"))
}

/// Where kubectl reads its config: the first file of `$KUBECONFIG`, else
/// `~/.kube/config`.
pub fn default_path() -> PathBuf {
    if let Some(first) = std::env::var_os("KUBECONFIG")
        .and_then(|v| std::env::split_paths(&v).find(|p| !p.as_os_str().is_empty()))
    {
        return first;
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
    home.join(".kube").join("config")
}

/// Merge Keelson's entries into the kubeconfig at `path` (created when
/// absent).
pub fn merge_into(path: &Path, e: &Entry) -> anyhow::Result<()> {
    let existing = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(err) => return Err(err).with_context(|| format!("read {}", path.display())),
    };
    let merged = merge(&existing, e)
        .map_err(anyhow::Error::msg)
        .with_context(|| format!("merge into {}", path.display()))?;
    crate::files::write_file(path, &merged, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> Entry {
        Entry {
            server: "http://127.0.10.1:6443".into(),
            token: "t0k3n".into(),
            ca: None,
        }
    }

    fn names(doc: &Value, list: &str) -> Vec<String> {
        doc.get(list)
            .and_then(Value::as_sequence)
            .into_iter()
            .flatten()
            .filter_map(|x| x.get("name").and_then(Value::as_str).map(String::from))
            .collect()
    }

    #[test]
    fn a_new_kubeconfig_holds_keelsons_entries() {
        let doc: Value = serde_yaml::from_str(&document(&entry())).expect("yaml");
        assert_eq!(doc["current-context"], "keelson");
        assert_eq!(
            doc["clusters"][0]["cluster"]["server"],
            "http://127.0.10.1:6443"
        );
        assert_eq!(doc["users"][0]["user"]["token"], "t0k3n");
        assert_eq!(doc["contexts"][0]["context"]["user"], "keelson-admin");
        assert_eq!(doc["kind"], "Config");
    }

    #[test]
    fn a_merge_keeps_other_entries_and_replaces_its_own() {
        let existing = r#"
apiVersion: v1
kind: Config
clusters:
- name: prod
  cluster: {server: "https://prod:6443"}
- name: keelson
  cluster: {server: "http://old:6443"}
users:
- name: ops
  user: {token: secret}
contexts:
- name: prod
  context: {cluster: prod, user: ops}
current-context: prod
preferences: {colors: true}
"#;
        let mut e = entry();
        e.ca = Some("/ca.pem".into());
        let doc: Value = serde_yaml::from_str(&merge(existing, &e).expect("merge")).expect("yaml");
        assert_eq!(names(&doc, "clusters"), ["prod", "keelson"]);
        assert_eq!(names(&doc, "users"), ["ops", "keelson-admin"]);
        assert_eq!(names(&doc, "contexts"), ["prod", "keelson"]);
        assert_eq!(doc["clusters"][0]["cluster"]["server"], "https://prod:6443");
        assert_eq!(
            doc["clusters"][1]["cluster"]["server"],
            "http://127.0.10.1:6443"
        );
        assert_eq!(
            doc["clusters"][1]["cluster"]["certificate-authority"],
            "/ca.pem"
        );
        assert_eq!(doc["users"][0]["user"]["token"], "secret");
        assert_eq!(doc["current-context"], "keelson");
        assert_eq!(doc["preferences"]["colors"], true);
        // Merging again changes nothing.
        let again = merge(&serde_yaml::to_string(&doc).expect("yaml"), &e).expect("merge");
        assert_eq!(serde_yaml::from_str::<Value>(&again).expect("yaml"), doc);
    }

    #[test]
    fn what_is_not_a_kubeconfig_is_refused_not_overwritten() {
        assert!(merge("- a list", &entry()).is_err());
        assert!(merge("clusters: 3", &entry()).is_err());
        assert!(merge("{{{", &entry()).is_err());
        // Empty lists written as null are fine.
        assert!(merge("clusters:\nusers:\n", &entry()).is_ok());
    }

    #[test]
    fn merge_into_creates_the_file_and_its_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(".kube").join("config");
        merge_into(&path, &entry()).expect("merge");
        let text = std::fs::read_to_string(&path).expect("read");
        assert!(text.contains("current-context: keelson"));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).expect("stat").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
