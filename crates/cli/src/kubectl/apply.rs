//! The pure half of `keelson apply` and `create -f`: reading manifests
//! from files, directories and stdin, and deciding what an update should
//! send and whether it would change anything.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use keelson_model::{defaults, kind_of, manifest, meta_of, meta_of_mut, Kind, Object};
use keelson_proto::api::object::Kind as Variant;

/// One parsed object and the file it came from.
#[derive(Clone, Debug)]
pub struct Item {
    pub source: String,
    pub object: Object,
    pub kind: Kind,
}

impl Item {
    pub fn name(&self) -> &str {
        meta_of(&self.object).map_or("", |m| m.name.as_str())
    }

    /// The object's namespace, else `default_ns` (empty for cluster-scoped
    /// kinds).
    pub fn namespace(&self, default_ns: &str) -> String {
        if !self.kind.namespaced() {
            return String::new();
        }
        match meta_of(&self.object).map(|m| m.namespace.as_str()) {
            Some(ns) if !ns.is_empty() => ns.to_string(),
            _ => default_ns.to_string(),
        }
    }
}

fn is_manifest(p: &Path) -> bool {
    matches!(
        p.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml" | "json")
    )
}

/// The texts behind each `-f`: `-` is stdin (read by `stdin`), a directory
/// is its *.yaml, *.yml and *.json files in name order.
pub fn read_sources(
    args: &[String],
    stdin: &mut dyn FnMut() -> std::io::Result<String>,
) -> anyhow::Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for a in args {
        if a == "-" {
            out.push(("<stdin>".to_string(), stdin().context("read stdin")?));
            continue;
        }
        let path = PathBuf::from(a);
        let meta = std::fs::metadata(&path).with_context(|| a.clone())?;
        if meta.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(&path)
                .with_context(|| format!("read directory {a}"))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file() && is_manifest(p))
                .collect();
            files.sort();
            for f in files {
                let text =
                    std::fs::read_to_string(&f).with_context(|| format!("read {}", f.display()))?;
                out.push((f.display().to_string(), text));
            }
        } else {
            let text = std::fs::read_to_string(&path).with_context(|| format!("read {a}"))?;
            out.push((a.clone(), text));
        }
    }
    Ok(out)
}

/// Parse every source; the first problem (named with its file) fails
/// the whole lot, so nothing is applied from a half-valid set.
pub fn parse_sources(sources: &[(String, String)], need_name: bool) -> anyhow::Result<Vec<Item>> {
    let mut items = Vec::new();
    for (source, text) in sources {
        let objs = manifest::parse(text).map_err(|e| anyhow::anyhow!("{source}: {e}"))?;
        for object in objs {
            let Some(kind) = kind_of(&object) else {
                bail!("{source}: an object without a kind");
            };
            let meta = meta_of(&object);
            let has_name = meta.is_some_and(|m| !m.name.is_empty());
            let has_generate = meta.is_some_and(|m| !m.generate_name.is_empty());
            if !has_name && (need_name || !has_generate) {
                bail!("{source}: a {kind} without metadata.name");
            }
            items.push(Item {
                source: source.clone(),
                object,
                kind,
            });
        }
    }
    if items.is_empty() {
        bail!("no objects passed to apply");
    }
    Ok(items)
}

/// The manifest object as it should be created in `namespace`.
pub fn for_create(item: &Item, namespace: &str) -> Object {
    let mut o = item.object.clone();
    if let Some(m) = meta_of_mut(&mut o) {
        m.namespace = namespace.to_string();
        m.resource_version.clear();
        m.uid.clear();
    }
    o
}

/// What an update from `manifest` should send given the stored `current`:
/// the manifest with the server's defaults, the current resourceVersion
/// (a compare-and-swap), and what others set that a manifest rarely says:
/// owner references, finalizers, annotations it does not mention, a
/// service's allocated cluster IP and a pod's node.
pub fn for_update(manifest: &Object, current: &Object, namespace: &str) -> Object {
    let mut o = manifest.clone();
    defaults::apply(&mut o);
    if let (Some(m), Some(cur)) = (meta_of_mut(&mut o), meta_of(current)) {
        m.namespace = namespace.to_string();
        m.resource_version = cur.resource_version.clone();
        m.uid.clear();
        if m.owner_references.is_empty() {
            m.owner_references = cur.owner_references.clone();
        }
        if m.finalizers.is_empty() {
            m.finalizers = cur.finalizers.clone();
        }
        for (k, v) in &cur.annotations {
            m.annotations.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
    match (o.kind.as_mut(), current.kind.as_ref()) {
        (Some(Variant::Service(new)), Some(Variant::Service(cur))) => {
            if let (Some(n), Some(c)) = (new.spec.as_mut(), cur.spec.as_ref()) {
                if n.cluster_ip.is_empty() {
                    n.cluster_ip = c.cluster_ip.clone();
                }
            }
        }
        (Some(Variant::Pod(new)), Some(Variant::Pod(cur))) => {
            if let (Some(n), Some(c)) = (new.spec.as_mut(), cur.spec.as_ref()) {
                if n.node_name.is_empty() {
                    n.node_name = c.node_name.clone();
                }
            }
        }
        _ => {}
    }
    o
}

/// The part of an object apply owns, for comparison (see
/// [`manifest::desired_state`]).
pub fn comparable(o: &Object) -> serde_json::Value {
    manifest::desired_state(o)
}

/// Whether sending `desired` (from [`for_update`]) would change nothing
/// apply owns in `current`.
pub fn unchanged(desired: &Object, current: &Object) -> bool {
    comparable(desired) == comparable(current)
}

#[cfg(test)]
mod tests {
    use super::*;
    use keelson_model::Resource;
    use keelson_proto::v1;

    const WEB: &str = "\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web}
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: builtin/http-echo
        ports:
        - containerPort: 8080
";

    /// What the server stores for WEB: defaults, server metadata, status.
    fn stored() -> Object {
        let mut o = manifest::parse(WEB).expect("parse").remove(0);
        defaults::apply(&mut o);
        if let Some(m) = meta_of_mut(&mut o) {
            m.namespace = "default".into();
            m.uid = "1234".into();
            m.resource_version = "42".into();
            m.generation = 3;
            m.creation_timestamp = "2024-05-01T10:00:00Z".into();
            m.annotations
                .insert("deployment.kubernetes.io/revision".into(), "1".into());
        }
        if let Some(Variant::Deployment(d)) = o.kind.as_mut() {
            d.status = Some(v1::DeploymentStatus {
                replicas: 2,
                ready_replicas: 2,
                ..Default::default()
            });
        }
        o
    }

    fn item(text: &str) -> Item {
        parse_sources(&[("web.yaml".into(), text.into())], true)
            .expect("parse")
            .remove(0)
    }

    #[test]
    fn same_manifest_is_unchanged() {
        let it = item(WEB);
        let cur = stored();
        let desired = for_update(&it.object, &cur, &it.namespace("default"));
        assert_eq!(
            meta_of(&desired).map(|m| m.resource_version.as_str()),
            Some("42")
        );
        assert!(unchanged(&desired, &cur), "{:#?}", comparable(&desired));
    }

    #[test]
    fn changed_replicas_or_labels_are_changes() {
        let cur = stored();
        let more = item(&WEB.replace("replicas: 2", "replicas: 5"));
        assert!(!unchanged(&for_update(&more.object, &cur, "default"), &cur));
        let relabeled = item(&WEB.replace(
            "labels: {app: web}\nspec",
            "labels: {app: web, tier: x}\nspec",
        ));
        assert!(!unchanged(
            &for_update(&relabeled.object, &cur, "default"),
            &cur
        ));
        let elsewhere = item(WEB);
        assert!(!unchanged(
            &for_update(&elsewhere.object, &cur, "prod"),
            &cur
        ));
    }

    #[test]
    fn service_keeps_its_cluster_ip() {
        let text = "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n  selector: {app: web}\n  ports:\n  - port: 80\n    targetPort: 8080\n";
        let it = item(text);
        let mut cur = it.object.clone();
        defaults::apply(&mut cur);
        if let Some(Variant::Service(s)) = cur.kind.as_mut() {
            if let Some(spec) = s.spec.as_mut() {
                spec.cluster_ip = "10.96.0.12".into();
            }
            s.metadata.get_or_insert_with(Default::default).namespace = "default".into();
        }
        let desired = for_update(&it.object, &cur, "default");
        assert!(unchanged(&desired, &cur));
        let svc = v1::Service::from_object(desired).expect("service");
        assert_eq!(svc.spec.map(|s| s.cluster_ip), Some("10.96.0.12".into()));
    }

    #[test]
    fn sources_files_dirs_and_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        std::fs::write(
            d.join("b.yaml"),
            WEB.replacen("name: web\n", "name: b\n", 1),
        )
        .expect("write");
        std::fs::write(d.join("a.yml"), WEB.replacen("name: web\n", "name: a\n", 1))
            .expect("write");
        std::fs::write(d.join("notes.txt"), "not yaml: [").expect("write");
        let dir_arg = d.display().to_string();
        let mut stdin = || Ok(WEB.replacen("name: web\n", "name: c\n", 1));
        let srcs = read_sources(&[dir_arg, "-".into()], &mut stdin).expect("read");
        let items = parse_sources(&srcs, true).expect("parse");
        let names: Vec<&str> = items.iter().map(Item::name).collect();
        assert_eq!(names, ["a", "b", "c"]);
        assert_eq!(items[2].source, "<stdin>");

        std::fs::write(
            d.join("bad.yaml"),
            "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {nope: 1}\n",
        )
        .expect("write");
        let srcs = read_sources(&[d.display().to_string()], &mut stdin).expect("read");
        let err = parse_sources(&srcs, true)
            .expect_err("bad file")
            .to_string();
        assert!(err.contains("bad.yaml"), "{err}");
        assert!(err.contains("nope"), "{err}");

        let err = parse_sources(
            &[("x.yaml".into(), "apiVersion: v1\nkind: Namespace\n".into())],
            true,
        )
        .expect_err("no name")
        .to_string();
        assert!(err.contains("metadata.name"), "{err}");
        assert!(parse_sources(&[("e.yaml".into(), "".into())], true).is_err());
    }

    #[test]
    fn namespace_from_object_or_flag() {
        let it = item(WEB);
        assert_eq!(it.namespace("dev"), "dev");
        let it = item(&WEB.replacen("name: web\n", "name: web\n  namespace: prod\n", 1));
        assert_eq!(it.namespace("dev"), "prod");
        let ns = item("apiVersion: v1\nkind: Namespace\nmetadata: {name: prod}\n");
        assert_eq!(ns.namespace("dev"), "");
    }
}
