//! The ConfigMaps and Secrets this node's pods use: what a container's
//! environment and its ConfigMap and Secret volumes hold, resolved purely
//! from a [`Snapshot`] ([`env`], [`volume_files`]), and the cache that
//! keeps the snapshot ([`run_cache`]).
//!
//! A node may read only the Secrets and ConfigMaps its own pods use, one
//! at a time (the API server's rule, as Kubernetes' node authorizer), so
//! the cache gets each referenced object by name: at once when a pod
//! first names it, then every [`REFRESH`] (the kubelet's "Cache"
//! strategy), so a volume follows its object within that period.
//!
//! Resolution follows the kubelet: `envFrom` first (keys that are not
//! valid variable names skipped), then `env` (later names win); a
//! reference to a missing object or key holds the container back with
//! `CreateContainerConfigError` unless it is `optional`; a volume whose
//! object is missing holds the pod in `ContainerCreating` with the
//! kubelet's `MountVolume.SetUp failed` message.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use keelson_model::{Kind, Resource};
use keelson_proto::v1;
use keelson_sdk::{Api, Client, Error};
use tokio::sync::watch;

use crate::volume_files::ProjectedFile;

/// How often a referenced object is read again.
pub const REFRESH: Duration = Duration::from_secs(2);
/// Reads in flight at once.
const FETCHES_IN_FLIGHT: usize = 8;

/// A ConfigMap or Secret: kind, namespace, name.
pub type Key = (Kind, String, String);

/// The data of a ConfigMap (`data` as text, `binaryData`) or a Secret
/// (`data`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Data {
    pub text: BTreeMap<String, String>,
    pub binary: BTreeMap<String, Vec<u8>>,
}

impl Data {
    fn get(&self, key: &str) -> Option<Vec<u8>> {
        self.text
            .get(key)
            .map(|s| s.as_bytes().to_vec())
            .or_else(|| self.binary.get(key).cloned())
    }

    fn entries(&self) -> impl Iterator<Item = (&String, &[u8])> {
        self.text
            .iter()
            .map(|(k, v)| (k, v.as_bytes()))
            .chain(self.binary.iter().map(|(k, v)| (k, v.as_slice())))
    }
}

/// What the node knows of each referenced object: `Some(None)` when it
/// does not exist; absent when not read yet.
pub type Snapshot = HashMap<Key, Option<Data>>;

/// A resolution: ready, not decidable until the cache has read an object,
/// or refused with the kubelet's (reason, message).
#[derive(Debug, PartialEq, Eq)]
pub enum Resolved<T> {
    Ready(T),
    NotYet,
    Refused(String, String),
}

const CONFIG_ERROR: &str = "CreateContainerConfigError";

fn word(kind: Kind) -> &'static str {
    match kind {
        Kind::Secret => "secret",
        _ => "configmap",
    }
}

/// Look an object up: Ok(None) when it is missing and `optional`.
fn lookup<'a>(
    snap: &'a Snapshot,
    kind: Kind,
    ns: &str,
    name: &str,
    optional: Option<bool>,
) -> Result<Option<&'a Data>, Resolved<()>> {
    match snap.get(&(kind, ns.to_string(), name.to_string())) {
        None => Err(Resolved::NotYet),
        Some(Some(d)) => Ok(Some(d)),
        Some(None) if optional == Some(true) => Ok(None),
        Some(None) => Err(Resolved::Refused(
            CONFIG_ERROR.into(),
            format!("{} {name:?} not found", word(kind)),
        )),
    }
}

/// The values of the downward API a variable may read.
pub struct PodFields<'a> {
    pub pod: &'a v1::Pod,
    pub pod_ip: &'a str,
    pub host_ip: &'a str,
}

impl PodFields<'_> {
    fn get(&self, path: &str) -> String {
        let m = self.pod.meta();
        match keelson_model::validation::parse_field_path(path) {
            Some(("metadata.name", _)) => m.name.clone(),
            Some(("metadata.namespace", _)) => m.namespace.clone(),
            Some(("metadata.uid", _)) => m.uid.clone(),
            Some(("metadata.labels", Some(k))) => m.labels.get(k).cloned().unwrap_or_default(),
            Some(("metadata.annotations", Some(k))) => {
                m.annotations.get(k).cloned().unwrap_or_default()
            }
            Some(("spec.nodeName", _)) => self
                .pod
                .spec
                .as_ref()
                .map(|s| s.node_name.clone())
                .unwrap_or_default(),
            Some(("status.hostIP", _)) => self.host_ip.to_string(),
            Some(("status.podIP", _)) => self.pod_ip.to_string(),
            _ => String::new(),
        }
    }
}

/// A valid environment variable name (as validation's rule).
fn env_name_ok(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with(|c: char| c.is_ascii_digit())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// The variables container `c` gets from its spec: `envFrom`, then `env`
/// (`value` or `valueFrom`), in order, later names winning.
pub fn env(
    c: &v1::Container,
    fields: &PodFields<'_>,
    snap: &Snapshot,
) -> Resolved<Vec<(String, String)>> {
    let ns = fields.pod.meta().namespace.as_str();
    let mut out: Vec<(String, String)> = Vec::new();
    for from in &c.env_from {
        let (kind, name, optional) = match (&from.config_map_ref, &from.secret_ref) {
            (Some(r), _) => (Kind::ConfigMap, &r.name, r.optional),
            (None, Some(r)) => (Kind::Secret, &r.name, r.optional),
            (None, None) => continue,
        };
        let data = match lookup(snap, kind, ns, name, optional) {
            Ok(Some(d)) => d,
            Ok(None) => continue,
            Err(Resolved::Refused(r, m)) => return Resolved::Refused(r, m),
            Err(_) => return Resolved::NotYet,
        };
        for (k, v) in data.entries() {
            let var = format!("{}{k}", from.prefix);
            if env_name_ok(&var) {
                out.push((var, String::from_utf8_lossy(v).into_owned()));
            }
        }
    }
    for e in &c.env {
        let Some(from) = &e.value_from else {
            out.push((e.name.clone(), e.value.clone()));
            continue;
        };
        let keyed = match (&from.config_map_key_ref, &from.secret_key_ref) {
            (Some(r), _) => Some((Kind::ConfigMap, &r.name, &r.key, r.optional)),
            (None, Some(r)) => Some((Kind::Secret, &r.name, &r.key, r.optional)),
            (None, None) => None,
        };
        if let Some((kind, name, key, optional)) = keyed {
            let data = match lookup(snap, kind, ns, name, optional) {
                Ok(Some(d)) => d,
                Ok(None) => continue,
                Err(Resolved::Refused(r, m)) => return Resolved::Refused(r, m),
                Err(_) => return Resolved::NotYet,
            };
            match data.get(key) {
                Some(v) => out.push((e.name.clone(), String::from_utf8_lossy(&v).into_owned())),
                None if optional == Some(true) => {}
                None => {
                    let what = if kind == Kind::Secret {
                        "Secret"
                    } else {
                        "ConfigMap"
                    };
                    return Resolved::Refused(
                        CONFIG_ERROR.into(),
                        format!("couldn't find key {key} in {what} {ns}/{name}"),
                    );
                }
            }
        } else if let Some(f) = &from.field_ref {
            out.push((e.name.clone(), fields.get(&f.field_path)));
        }
    }
    Resolved::Ready(out)
}

/// Kubernetes' default mode of ConfigMap and Secret volume files.
const DEFAULT_MODE: i32 = 0o644;

/// The files of pod volume `v` when it is a ConfigMap or Secret volume
/// (None for other volumes).
pub fn volume_files(
    pod: &v1::Pod,
    v: &v1::Volume,
    snap: &Snapshot,
) -> Option<Resolved<Vec<ProjectedFile>>> {
    let (kind, name, items, default_mode, optional) = match (&v.config_map, &v.secret) {
        (Some(c), _) => (
            Kind::ConfigMap,
            &c.name,
            &c.items,
            c.default_mode,
            c.optional,
        ),
        (None, Some(s)) => (
            Kind::Secret,
            &s.secret_name,
            &s.items,
            s.default_mode,
            s.optional,
        ),
        (None, None) => return None,
    };
    let ns = pod.meta().namespace.as_str();
    let mode = |m: Option<i32>| (m.or(default_mode).unwrap_or(DEFAULT_MODE) & 0o777) as u32;
    let refused = |why: String| {
        Resolved::Refused(
            "ContainerCreating".into(),
            format!("MountVolume.SetUp failed for volume {:?} : {why}", v.name),
        )
    };
    let data = match lookup(snap, kind, ns, name, optional) {
        Ok(Some(d)) => d.clone(),
        Ok(None) => Data::default(),
        Err(Resolved::Refused(_, m)) => return Some(refused(m)),
        Err(_) => return Some(Resolved::NotYet),
    };
    let files = if items.is_empty() {
        data.entries()
            .map(|(k, v)| ProjectedFile {
                path: k.clone(),
                data: v.to_vec(),
                mode: mode(None),
            })
            .collect()
    } else {
        let mut files = Vec::new();
        for item in items {
            match data.get(&item.key) {
                Some(d) => files.push(ProjectedFile {
                    path: item.path.clone(),
                    data: d,
                    mode: mode(item.mode),
                }),
                None if optional == Some(true) => {}
                None => {
                    return Some(refused(format!(
                        "{} references non-existent {} key: {}",
                        word(kind),
                        word(kind).replace("configmap", "config"),
                        item.key
                    )))
                }
            }
        }
        files
    };
    Some(Resolved::Ready(files))
}

/// The objects the pods use, as cache keys.
pub fn wanted(pods: &[v1::Pod]) -> BTreeSet<Key> {
    pods.iter()
        .flat_map(|p| {
            let ns = p.meta().namespace.clone();
            keelson_model::pod::config_refs(p)
                .into_iter()
                .map(move |r| (r.kind, ns.clone(), r.name))
        })
        .collect()
}

async fn fetch(client: &Client, key: &Key) -> Result<Option<Data>, Error> {
    let (kind, ns, name) = key;
    let got = match kind {
        Kind::Secret => Api::<v1::Secret>::namespaced(client.clone(), ns)
            .get(name)
            .await
            .map(|s| Data {
                text: BTreeMap::new(),
                binary: s.data,
            }),
        _ => Api::<v1::ConfigMap>::namespaced(client.clone(), ns)
            .get(name)
            .await
            .map(|c| Data {
                text: c.data,
                binary: c.binary_data,
            }),
    };
    match got {
        Ok(d) => Ok(Some(d)),
        Err(Error::NotFound(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Keep `snapshot` holding every object `wanted` names: new names read at
/// once, all of them again every [`REFRESH`]; a new snapshot is sent only
/// when something changed. A read that fails (the API unreachable, or a
/// replica that does not know the pod yet and refuses) keeps what was
/// known.
pub async fn run_cache(
    client: Client,
    mut wanted: watch::Receiver<BTreeSet<Key>>,
    snapshot: watch::Sender<Arc<Snapshot>>,
) {
    use futures::StreamExt;
    let mut tick = tokio::time::interval(REFRESH);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let keys: BTreeSet<Key> = wanted.borrow_and_update().clone();
        let current = snapshot.borrow().clone();
        let results: Vec<(Key, Result<Option<Data>, Error>)> =
            futures::stream::iter(keys.iter().cloned())
                .map(|k| {
                    let client = client.clone();
                    async move {
                        let r = fetch(&client, &k).await;
                        (k, r)
                    }
                })
                .buffer_unordered(FETCHES_IN_FLIGHT)
                .collect()
                .await;
        let mut next: Snapshot = HashMap::new();
        for (k, r) in results {
            match r {
                Ok(d) => {
                    next.insert(k, d);
                }
                Err(e) => {
                    tracing::debug!(object = ?k, error = %e, "read a ConfigMap or Secret");
                    if let Some(known) = current.get(&k) {
                        next.insert(k, known.clone());
                    }
                }
            }
        }
        if next != *current {
            snapshot.send_replace(Arc::new(next));
        }
        tokio::select! {
            _ = tick.tick() => {}
            changed = wanted.changed() => {
                if changed.is_err() {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(spec: serde_json::Value) -> v1::Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "default", "uid": "u1", "labels": {"app": "web"}},
            "spec": spec
        }))
        .expect("pod")
    }

    fn snap() -> Snapshot {
        let mut s = Snapshot::new();
        s.insert(
            (Kind::ConfigMap, "default".into(), "cfg".into()),
            Some(Data {
                text: [("mode", "prod"), ("level", "3"), ("bad key", "x")]
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                binary: [("logo.bin".to_string(), vec![0xff])].into(),
            }),
        );
        s.insert(
            (Kind::Secret, "default".into(), "db".into()),
            Some(Data {
                text: BTreeMap::new(),
                binary: [("password".to_string(), b"hunter2".to_vec())].into(),
            }),
        );
        s.insert((Kind::Secret, "default".into(), "gone".into()), None);
        s
    }

    fn env_of(c: serde_json::Value) -> Resolved<Vec<(String, String)>> {
        let p = pod(json!({"nodeName": "n1", "containers": [c]}));
        let c = p.spec.as_ref().expect("spec").containers[0].clone();
        env(
            &c,
            &PodFields {
                pod: &p,
                pod_ip: "10.244.1.5",
                host_ip: "127.0.0.11",
            },
            &snap(),
        )
    }

    fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn env_from_objects_fields_and_values_in_order() {
        let got = env_of(json!({
            "name": "a", "image": "x",
            "envFrom": [{"prefix": "CFG_", "configMapRef": {"name": "cfg"}}],
            "env": [
                {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}},
                {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
                {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
                {"name": "MAYBE", "valueFrom": {"secretKeyRef": {"name": "gone", "key": "k", "optional": true}}},
                {"name": "PLAIN", "value": "v"}
            ]
        }));
        assert_eq!(
            got,
            Resolved::Ready(pairs(&[
                // Binary data is text-decoded; "bad key" is skipped.
                ("CFG_level", "3"),
                ("CFG_mode", "prod"),
                ("CFG_logo.bin", "\u{fffd}"),
                ("PASSWORD", "hunter2"),
                ("APP", "web"),
                ("IP", "10.244.1.5"),
                ("NODE", "n1"),
                ("PLAIN", "v"),
            ]))
        );
    }

    #[test]
    fn missing_objects_and_keys_hold_the_container_back() {
        let refused = |m: &str| Resolved::Refused(CONFIG_ERROR.into(), m.into());
        assert_eq!(
            env_of(json!({"name": "a", "image": "x", "env": [
                {"name": "P", "valueFrom": {"secretKeyRef": {"name": "gone", "key": "k"}}}]})),
            refused("secret \"gone\" not found")
        );
        assert_eq!(
            env_of(json!({"name": "a", "image": "x", "env": [
                {"name": "P", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "nope"}}}]})),
            refused("couldn't find key nope in ConfigMap default/cfg")
        );
        assert_eq!(
            env_of(
                json!({"name": "a", "image": "x", "envFrom": [{"secretRef": {"name": "unread"}}]})
            ),
            Resolved::NotYet,
            "an object not read yet decides nothing"
        );
    }

    #[test]
    fn volumes_project_keys_as_files() {
        let p = pod(
            json!({"containers": [{"name": "a", "image": "x"}], "volumes": [
                {"name": "all", "configMap": {"name": "cfg"}},
                {"name": "some", "secret": {"secretName": "db", "defaultMode": 0o400,
                    "items": [{"key": "password", "path": "db/pw"}, {"key": "password", "path": "pw2", "mode": 0o600}]}},
                {"name": "missing", "secret": {"secretName": "gone"}},
                {"name": "fine", "secret": {"secretName": "gone", "optional": true}},
                {"name": "badkey", "configMap": {"name": "cfg", "items": [{"key": "nope", "path": "x"}]}},
                {"name": "scratch", "emptyDir": {}}
            ]}),
        );
        let vols = p.spec.as_ref().expect("spec").volumes.clone();
        let s = snap();
        let files = |i: usize| volume_files(&p, &vols[i], &s);
        match files(0) {
            Some(Resolved::Ready(f)) => {
                let names: Vec<(&str, u32)> = f.iter().map(|f| (f.path.as_str(), f.mode)).collect();
                assert_eq!(
                    names,
                    [
                        ("bad key", 0o644),
                        ("level", 0o644),
                        ("mode", 0o644),
                        ("logo.bin", 0o644)
                    ]
                );
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            files(1),
            Some(Resolved::Ready(vec![
                ProjectedFile {
                    path: "db/pw".into(),
                    data: b"hunter2".to_vec(),
                    mode: 0o400
                },
                ProjectedFile {
                    path: "pw2".into(),
                    data: b"hunter2".to_vec(),
                    mode: 0o600
                },
            ]))
        );
        assert_eq!(
            files(2),
            Some(Resolved::Refused(
                "ContainerCreating".into(),
                "MountVolume.SetUp failed for volume \"missing\" : secret \"gone\" not found"
                    .into()
            ))
        );
        assert_eq!(files(3), Some(Resolved::Ready(vec![])));
        assert_eq!(
            files(4),
            Some(Resolved::Refused(
                "ContainerCreating".into(),
                "MountVolume.SetUp failed for volume \"badkey\" : configmap references non-existent config key: nope".into()
            ))
        );
        assert_eq!(files(5), None);
        assert_eq!(
            wanted(&[p]),
            [
                (Kind::ConfigMap, "default".to_string(), "cfg".to_string()),
                (Kind::Secret, "default".to_string(), "db".to_string()),
                (Kind::Secret, "default".to_string(), "gone".to_string()),
            ]
            .into()
        );
    }
}
