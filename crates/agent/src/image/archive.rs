//! `keelson image load FILE`: an `oci-archive` (a tar of an OCI image
//! layout, as `skopeo copy ... oci-archive:` and `buildah push` write) or
//! a `docker save` tarball (`manifest.json` naming each image's config and
//! layer files), into the store.
//!
//! The archive is unpacked under the store's `tmp/` (paths that would
//! leave it are refused), every blob is checked against its digest (an
//! OCI layout's) or hashed (a Docker archive's files, whose image gets an
//! OCI manifest of our making), and each image is named by the archive
//! (`io.containerd.image.name`, or a full reference in
//! `org.opencontainers.image.ref.name`; `RepoTags` in a Docker archive) or
//! by `name` when given.

use std::fs;
use std::path::{Path, PathBuf};

use super::store::{file_digest, Store};
use super::{digest_hex, Image, ImageRef, OCI_CONFIG, OCI_INDEX, OCI_LAYER, OCI_LAYER_GZIP};

const REF_NAME: &str = "org.opencontainers.image.ref.name";
const CONTAINERD_NAME: &str = "io.containerd.image.name";

/// Load every image of the archive at `file`; `name` names the image of an
/// archive holding one (and is required when the archive names none).
pub fn load(store: &Store, file: &Path, name: Option<&str>) -> Result<Vec<Image>, String> {
    let dir = store.temp_path("load");
    fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    let r = (|| {
        let f = fs::File::open(file).map_err(|e| format!("open {}: {e}", file.display()))?;
        let mut archive = tar::Archive::new(std::io::BufReader::new(f));
        archive
            .unpack(&dir)
            .map_err(|e| format!("{} is not a readable tar archive: {e}", file.display()))?;
        if dir.join("index.json").is_file() {
            load_oci(store, &dir, name)
        } else if dir.join("manifest.json").is_file() {
            load_docker(store, &dir, name)
        } else {
            Err(format!(
                "{} is neither an OCI archive (index.json) nor a docker save tarball (manifest.json)",
                file.display()
            ))
        }
    })();
    let _ = fs::remove_dir_all(&dir);
    r
}

fn normalized(name: &str) -> Result<String, String> {
    ImageRef::parse(name).map(|r| r.name())
}

fn read_json(path: &Path) -> Result<serde_json::Value, String> {
    let bytes = fs::read(path).map_err(|e| format!("read {}: {e}", path.display()))?;
    serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", path.display()))
}

/// Blob `digest` of the unpacked layout in `dir` into the store, checked.
fn import_blob(store: &Store, dir: &Path, digest: &str) -> Result<(), String> {
    if store.has_blob(digest) {
        return Ok(());
    }
    let src = dir.join("blobs/sha256").join(digest_hex(digest)?);
    store.put_blob_file(digest, &src)
}

fn load_oci(store: &Store, dir: &Path, name: Option<&str>) -> Result<Vec<Image>, String> {
    let index = read_json(&dir.join("index.json"))?;
    let manifests = index
        .get("manifests")
        .and_then(|m| m.as_array())
        .cloned()
        .unwrap_or_default();
    if manifests.is_empty() {
        return Err("the archive's index.json names no image".into());
    }
    if name.is_some() && manifests.len() > 1 {
        return Err("--name: the archive holds more than one image".into());
    }
    let mut out = Vec::new();
    for m in manifests {
        let digest = m
            .get("digest")
            .and_then(|d| d.as_str())
            .ok_or("a manifest without a digest in index.json")?
            .to_string();
        let annotation = |k: &str| {
            m.get("annotations")
                .and_then(|a| a.get(k))
                .and_then(|v| v.as_str())
                .map(str::to_string)
        };
        let image_name = match name {
            Some(n) => normalized(n)?,
            None => match annotation(CONTAINERD_NAME).or_else(|| annotation(REF_NAME)) {
                // A tag alone ("1.35") does not name a repository.
                Some(r) if r.contains('/') || r.contains(':') || r.contains('@') => normalized(&r)?,
                Some(tag) => {
                    return Err(format!(
                        "the archive names its image only by the tag {tag:?}: give --name REPOSITORY[:TAG]"
                    ))
                }
                None => return Err("the archive does not name its image: give --name".into()),
            },
        };
        import_blob(store, dir, &digest)?;
        let mut bytes = fs::read(store.blob_path(&digest)?).map_err(|e| e.to_string())?;
        let media = m.get("mediaType").and_then(|v| v.as_str()).unwrap_or("");
        if media == OCI_INDEX
            || serde_json::from_slice::<serde_json::Value>(&bytes)
                .is_ok_and(|v| v.get("manifests").is_some())
        {
            // A nested index: this platform's manifest.
            let v: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
            let first = v
                .get("manifests")
                .and_then(|a| a.as_array())
                .and_then(|a| {
                    a.iter().find(|e| {
                        e.get("platform")
                            .and_then(|p| p.get("os"))
                            .is_none_or(|o| o == "linux")
                    })
                })
                .and_then(|e| e.get("digest")?.as_str().map(str::to_string))
                .ok_or("an index with no linux manifest")?;
            import_blob(store, dir, &first)?;
            bytes = fs::read(store.blob_path(&first)?).map_err(|e| e.to_string())?;
        }
        let (config, layers) = super::store::parse_manifest(&bytes)?;
        import_blob(store, dir, &config)?;
        for l in &layers {
            import_blob(store, dir, l)?;
        }
        out.push(store.add_image(&image_name, &bytes)?);
    }
    Ok(out)
}

/// A file named in a Docker archive's manifest.json, inside `dir`.
fn archive_file(dir: &Path, rel: &str) -> Result<PathBuf, String> {
    let p = Path::new(rel);
    if p.is_absolute()
        || p.components()
            .any(|c| matches!(c, std::path::Component::ParentDir))
    {
        return Err(format!(
            "manifest.json names a file outside the archive: {rel:?}"
        ));
    }
    Ok(dir.join(p))
}

fn load_docker(store: &Store, dir: &Path, name: Option<&str>) -> Result<Vec<Image>, String> {
    let manifest = read_json(&dir.join("manifest.json"))?;
    let entries = manifest.as_array().cloned().unwrap_or_default();
    if entries.is_empty() {
        return Err("the archive's manifest.json names no image".into());
    }
    if name.is_some() && entries.len() > 1 {
        return Err("--name: the archive holds more than one image".into());
    }
    let mut out = Vec::new();
    for e in entries {
        let config_file = e
            .get("Config")
            .and_then(|c| c.as_str())
            .ok_or("an image without Config in manifest.json")?;
        let names: Vec<String> = match name {
            Some(n) => vec![normalized(n)?],
            None => e
                .get("RepoTags")
                .and_then(|t| t.as_array())
                .map(|a| {
                    a.iter()
                        .filter_map(|t| t.as_str())
                        .map(normalized)
                        .collect::<Result<Vec<_>, _>>()
                })
                .transpose()?
                .unwrap_or_default(),
        };
        if names.is_empty() {
            return Err("the archive does not name its image (no RepoTags): give --name".into());
        }
        let config_path = archive_file(dir, config_file)?;
        let config_digest = file_digest(&config_path).map_err(|e| format!("{config_file}: {e}"))?;
        let config_size = fs::metadata(&config_path).map_err(|e| e.to_string())?.len();
        let config_tmp = store.temp_path("config");
        fs::copy(&config_path, &config_tmp).map_err(|e| e.to_string())?;
        store.put_blob_file(&config_digest, &config_tmp)?;
        let mut layers = Vec::new();
        for l in e
            .get("Layers")
            .and_then(|l| l.as_array())
            .into_iter()
            .flatten()
        {
            let rel = l.as_str().ok_or("a layer that is not a file name")?;
            let path = archive_file(dir, rel)?;
            let digest = file_digest(&path).map_err(|e| format!("{rel}: {e}"))?;
            let size = fs::metadata(&path).map_err(|e| e.to_string())?.len();
            let mut magic = [0u8; 2];
            let gz = fs::File::open(&path)
                .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut magic))
                .is_ok()
                && magic == [0x1f, 0x8b];
            if !store.has_blob(&digest) {
                let tmp = store.temp_path("layer-blob");
                fs::rename(&path, &tmp)
                    .or_else(|_| fs::copy(&path, &tmp).map(|_| ()))
                    .map_err(|e| e.to_string())?;
                store.put_blob_file(&digest, &tmp)?;
            }
            layers.push(serde_json::json!({
                "mediaType": if gz { OCI_LAYER_GZIP } else { OCI_LAYER },
                "digest": digest,
                "size": size,
            }));
        }
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": super::OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": config_size},
            "layers": layers,
        }))
        .map_err(|e| e.to_string())?;
        for n in &names {
            out.push(store.add_image(n, &manifest)?);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::super::sha256_digest;
    use super::super::store::tests::tiny_image;
    use super::*;

    fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (p, data) in files {
            let mut h = tar::Header::new_gnu();
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(0);
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            b.append_data(&mut h, p, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    fn blob_path(d: &str) -> String {
        format!("blobs/sha256/{}", digest_hex(d).unwrap())
    }

    #[test]
    fn oci_archives_load_named_by_annotation_or_by_flag() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("store")).unwrap();
        let (m, c, l) = tiny_image("oci", &["/hello"]);
        let index = |ann: &str| {
            serde_json::to_vec(&serde_json::json!({"schemaVersion": 2, "manifests": [{
                "mediaType": super::super::OCI_MANIFEST, "digest": sha256_digest(&m), "size": m.len(),
                "annotations": {REF_NAME: ann}}]}))
            .unwrap()
        };
        let (md, cd, ld) = (
            blob_path(&sha256_digest(&m)),
            blob_path(&sha256_digest(&c)),
            blob_path(&sha256_digest(&l)),
        );
        let write = |ann: &str| {
            let idx = index(ann);
            let t = tar_of(&[
                ("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#),
                ("index.json", &idx),
                (&md, &m),
                (&cd, &c),
                (&ld, &l),
            ]);
            let f = dir.path().join("img.tar");
            fs::write(&f, t).unwrap();
            f
        };
        let f = write("keelson.test/hello:1");
        let imgs = load(&store, &f, None).unwrap();
        assert_eq!(imgs[0].name, "keelson.test/hello:1");
        let layer = store.unpacked_layer(&imgs[0].layers[0]).unwrap();
        assert_eq!(fs::read_to_string(layer.join("hello")).unwrap(), "oci");
        // A tag alone needs --name.
        let f = write("1.0");
        let e = load(&store, &f, None).unwrap_err();
        assert!(e.contains("--name"), "{e}");
        let imgs = load(&store, &f, Some("hello:2")).unwrap();
        assert_eq!(imgs[0].name, "docker.io/library/hello:2");
        // Nothing is left in tmp.
        assert_eq!(fs::read_dir(store.root().join("tmp")).unwrap().count(), 0);
    }

    #[test]
    fn docker_archives_load_and_corrupt_ones_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("store")).unwrap();
        let (_, c, l) = tiny_image("docker", &["/hello"]);
        let manifest = serde_json::to_vec(&serde_json::json!([{
            "Config": "cfg.json", "RepoTags": ["hello:3"], "Layers": ["abc/layer.tar"]}]))
        .unwrap();
        let t = tar_of(&[
            ("manifest.json", &manifest),
            ("cfg.json", &c),
            ("abc/layer.tar", &l),
        ]);
        let f = dir.path().join("d.tar");
        fs::write(&f, t).unwrap();
        let imgs = load(&store, &f, None).unwrap();
        assert_eq!(imgs[0].name, "docker.io/library/hello:3");
        assert_eq!(imgs[0].layers, [sha256_digest(&l)]);
        assert!(store
            .resolve("docker.io/library/hello:3")
            .unwrap()
            .is_some());
        // A file outside the archive, and a file that is not a tar.
        let bad = serde_json::to_vec(&serde_json::json!([{
            "Config": "../cfg.json", "RepoTags": ["x:1"], "Layers": []}]))
        .unwrap();
        fs::write(&f, tar_of(&[("manifest.json", &bad)])).unwrap();
        assert!(load(&store, &f, None).unwrap_err().contains("outside"));
        fs::write(&f, b"not a tar at all").unwrap();
        assert!(load(&store, &f, None).is_err());
        // An OCI layout whose blob does not match its digest.
        let (m, c2, l2) = tiny_image("x", &["/x"]);
        let idx = serde_json::to_vec(&serde_json::json!({"schemaVersion": 2, "manifests": [{
            "digest": sha256_digest(&m), "size": m.len(), "annotations": {REF_NAME: "a.test/x:1"}}]}))
        .unwrap();
        let t = tar_of(&[
            ("index.json", &idx),
            (&blob_path(&sha256_digest(&m)), &m),
            (&blob_path(&sha256_digest(&c2)), &c2),
            (&blob_path(&sha256_digest(&l2)), b"tampered"),
        ]);
        fs::write(&f, t).unwrap();
        let e = load(&store, &f, None).unwrap_err();
        assert!(e.contains("hashes to"), "{e}");
    }
}
