//! The node's content store: an OCI image layout plus unpacked layers.
//!
//! ```text
//! <root>/oci-layout              {"imageLayoutVersion":"1.0.0"}
//! <root>/index.json              one manifest descriptor per image name
//!                                (annotation org.opencontainers.image.ref.name)
//! <root>/blobs/sha256/<hex>      manifests, configs, layers (digest verified)
//! <root>/layers/<hex>/           layer <hex> unpacked (overlayfs lower dir)
//! <root>/tmp/                    downloads and unpacks under way
//! <root>/lock                    flock: index changes, removals
//! ```
//!
//! Writes are safe against a crash and against another process (the agent
//! and `keelson image load` on the same node): a blob or an unpacked layer
//! is written under `tmp/` and renamed into place, and `index.json` is
//! rewritten (temp file + rename) under the lock.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use oci_spec::image::{Descriptor, ImageConfiguration, ImageIndex, ImageManifest, MediaType};

use super::{digest_hex, sha256_digest, ImageRef, OCI_MANIFEST};

const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// One image the store holds, by one of its names.
#[derive(Clone, Debug)]
pub struct Image {
    /// The normalised reference it is known by.
    pub name: String,
    /// `sha256:...` of its manifest (the `imageID` Kubernetes reports, as
    /// `<repository>@<digest>`).
    pub manifest_digest: String,
    pub config_digest: String,
    pub config: ImageConfiguration,
    /// Layer digests, bottom first.
    pub layers: Vec<String>,
    /// Bytes of its blobs (manifest, config, layers as stored).
    pub size: u64,
}

impl Image {
    /// What a container status shows as `imageID`.
    pub fn image_id(&self) -> String {
        match ImageRef::parse(&self.name) {
            Ok(r) => format!("{}@{}", r.repository(), self.manifest_digest),
            Err(_) => self.manifest_digest.clone(),
        }
    }
}

/// A line of `keelson image ls`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listed {
    pub name: String,
    pub manifest_digest: String,
    pub size: u64,
}

/// The store; cheap to open, shareable between threads.
#[derive(Debug)]
pub struct Store {
    root: PathBuf,
    seq: AtomicU64,
}

impl Store {
    /// Open (creating as needed) the store at `root`.
    pub fn open(root: &Path) -> io::Result<Store> {
        for d in ["blobs/sha256", "layers", "tmp"] {
            fs::create_dir_all(root.join(d))?;
        }
        let layout = root.join("oci-layout");
        if !layout.exists() {
            write_atomic(&layout, br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        }
        let store = Store {
            root: root.to_path_buf(),
            seq: AtomicU64::new(0),
        };
        if !root.join("index.json").exists() {
            let _lock = store.lock()?;
            if !root.join("index.json").exists() {
                store
                    .write_index(&BTreeMap::new())
                    .map_err(io::Error::other)?;
            }
        }
        Ok(store)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// A fresh path under `tmp/` (unique within the machine's processes).
    pub fn temp_path(&self, what: &str) -> PathBuf {
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        self.root
            .join("tmp")
            .join(format!("{what}-{}-{n}", std::process::id()))
    }

    fn lock(&self) -> io::Result<Lock> {
        let f = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.root.join("lock"))?;
        // SAFETY: flock on a descriptor we own; released when it closes.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Lock(f))
    }

    pub fn blob_path(&self, digest: &str) -> Result<PathBuf, String> {
        Ok(self.root.join("blobs/sha256").join(digest_hex(digest)?))
    }

    pub fn has_blob(&self, digest: &str) -> bool {
        self.blob_path(digest).is_ok_and(|p| p.exists())
    }

    /// Store `bytes` as blob `digest`, refusing them when they do not hash
    /// to it.
    pub fn put_blob(&self, digest: &str, bytes: &[u8]) -> Result<(), String> {
        let actual = sha256_digest(bytes);
        if actual != digest {
            return Err(format!("blob {digest} hashes to {actual}"));
        }
        let path = self.blob_path(digest)?;
        if path.exists() {
            return Ok(());
        }
        let tmp = self.temp_path("blob");
        fs::write(&tmp, bytes).map_err(|e| format!("write {}: {e}", tmp.display()))?;
        fs::rename(&tmp, &path).map_err(|e| format!("store blob {digest}: {e}"))
    }

    /// Move the file `tmp` (under this store's `tmp/`) in as blob `digest`
    /// after checking its hash (it is removed either way).
    pub fn put_blob_file(&self, digest: &str, tmp: &Path) -> Result<(), String> {
        let check = || -> Result<(), String> {
            let actual = file_digest(tmp).map_err(|e| format!("read {}: {e}", tmp.display()))?;
            if actual != digest {
                return Err(format!("blob {digest} hashes to {actual}"));
            }
            let path = self.blob_path(digest)?;
            fs::rename(tmp, &path).map_err(|e| format!("store blob {digest}: {e}"))
        };
        let r = check();
        let _ = fs::remove_file(tmp);
        r
    }

    fn read_blob(&self, digest: &str) -> Result<Vec<u8>, String> {
        let p = self.blob_path(digest)?;
        fs::read(&p).map_err(|e| format!("read blob {digest}: {e}"))
    }

    /// Name `name` the image whose manifest is `manifest` (its raw bytes,
    /// stored as a blob too). Every blob it needs must be in the store;
    /// its layers are unpacked now.
    pub fn add_image(&self, name: &str, manifest: &[u8]) -> Result<Image, String> {
        let digest = sha256_digest(manifest);
        let parsed = parse_manifest(manifest)?;
        for d in std::iter::once(&parsed.0).chain(&parsed.1) {
            if !self.has_blob(d) {
                return Err(format!("blob {d} of image {name} is missing"));
            }
        }
        self.put_blob(&digest, manifest)?;
        for layer in &parsed.1 {
            self.unpacked_layer(layer)?;
        }
        {
            let _lock = self
                .lock()
                .map_err(|e| format!("lock the image store: {e}"))?;
            let mut index = self.read_index()?;
            index.insert(name.to_string(), (digest.clone(), manifest.len() as u64));
            self.write_index(&index)?;
        }
        self.image(name, &digest)
    }

    /// The image named `name` (a normalised reference), if stored. A
    /// reference by digest also finds an image stored under another name
    /// with that manifest digest.
    pub fn resolve(&self, name: &str) -> Result<Option<Image>, String> {
        let index = self.read_index()?;
        if let Some((digest, _)) = index.get(name) {
            return self.image(name, digest).map(Some);
        }
        let by_digest = ImageRef::parse(name)
            .ok()
            .and_then(|r| r.digest().map(str::to_string));
        if let Some(d) = by_digest {
            if index.values().any(|(m, _)| *m == d) {
                return self.image(name, &d).map(Some);
            }
        }
        Ok(None)
    }

    fn image(&self, name: &str, manifest_digest: &str) -> Result<Image, String> {
        let manifest = self.read_blob(manifest_digest)?;
        let (config_digest, layers) = parse_manifest(&manifest)?;
        let config_bytes = self.read_blob(&config_digest)?;
        let config = ImageConfiguration::from_reader(&config_bytes[..])
            .map_err(|e| format!("image {name}: config {config_digest}: {e}"))?;
        let mut size = (manifest.len() + config_bytes.len()) as u64;
        for l in &layers {
            size += self
                .blob_path(l)
                .ok()
                .and_then(|p| fs::metadata(p).ok())
                .map_or(0, |m| m.len());
        }
        Ok(Image {
            name: name.to_string(),
            manifest_digest: manifest_digest.to_string(),
            config_digest,
            config,
            layers,
            size,
        })
    }

    /// The directory layer `digest` is unpacked in, unpacking it first if
    /// needed.
    pub fn unpacked_layer(&self, digest: &str) -> Result<PathBuf, String> {
        let hex = digest_hex(digest)?;
        let dst = self.root.join("layers").join(hex);
        if dst.is_dir() {
            return Ok(dst);
        }
        let tmp = self.temp_path("layer");
        fs::create_dir_all(&tmp).map_err(|e| format!("create {}: {e}", tmp.display()))?;
        let r = super::unpack::unpack_layer(&self.blob_path(digest)?, &tmp)
            .map_err(|e| format!("unpack layer {digest}: {e}"));
        if let Err(e) = r {
            let _ = fs::remove_dir_all(&tmp);
            return Err(e);
        }
        match fs::rename(&tmp, &dst) {
            Ok(()) => Ok(dst),
            // Another unpack of the same layer won the race.
            Err(_) if dst.is_dir() => {
                let _ = fs::remove_dir_all(&tmp);
                Ok(dst)
            }
            Err(e) => {
                let _ = fs::remove_dir_all(&tmp);
                Err(format!("store layer {digest}: {e}"))
            }
        }
    }

    /// Every name and its image, by name.
    pub fn list(&self) -> Result<Vec<Listed>, String> {
        let index = self.read_index()?;
        Ok(index
            .into_iter()
            .map(|(name, (digest, _))| {
                let size = self.image(&name, &digest).map_or(0, |i| i.size);
                Listed {
                    name,
                    manifest_digest: digest,
                    size,
                }
            })
            .collect())
    }

    /// Remove the name `name` (a normalised reference, or a manifest
    /// digest: every name of that image), then every blob and unpacked
    /// layer no remaining image uses, except those of `in_use` (manifest
    /// digests of images containers run from). The names removed.
    pub fn remove(&self, name: &str, in_use: &BTreeSet<String>) -> Result<Vec<String>, String> {
        let _lock = self
            .lock()
            .map_err(|e| format!("lock the image store: {e}"))?;
        let mut index = self.read_index()?;
        let names: Vec<String> = index
            .iter()
            .filter(|(n, (d, _))| *n == name || d == name)
            .map(|(n, _)| n.clone())
            .collect();
        if names.is_empty() {
            return Err(format!("image {name} is not on this node"));
        }
        for n in &names {
            if let Some((d, _)) = index.get(n) {
                if in_use.contains(d) {
                    return Err(format!("image {n} is in use by a container"));
                }
            }
        }
        for n in &names {
            index.remove(n);
        }
        self.write_index(&index)?;
        self.collect(&index, in_use)?;
        Ok(names)
    }

    /// Remove blobs and layers that no image of `index` (nor `in_use`)
    /// refers to. Call with the lock held.
    fn collect(
        &self,
        index: &BTreeMap<String, (String, u64)>,
        in_use: &BTreeSet<String>,
    ) -> Result<(), String> {
        let mut keep: BTreeSet<String> = BTreeSet::new();
        let manifests: BTreeSet<&String> = index.values().map(|(d, _)| d).chain(in_use).collect();
        for m in manifests {
            keep.insert(m.clone());
            if let Ok(bytes) = self.read_blob(m) {
                if let Ok((config, layers)) = parse_manifest(&bytes) {
                    keep.insert(config);
                    keep.extend(layers);
                }
            }
        }
        let keep_hex: BTreeSet<String> = keep
            .iter()
            .filter_map(|d| digest_hex(d).ok().map(str::to_string))
            .collect();
        for dir in ["blobs/sha256", "layers"] {
            let Ok(entries) = fs::read_dir(self.root.join(dir)) else {
                continue;
            };
            for e in entries.flatten() {
                let n = e.file_name().to_string_lossy().into_owned();
                if keep_hex.contains(&n) {
                    continue;
                }
                let p = e.path();
                let r = if p.is_dir() {
                    fs::remove_dir_all(&p)
                } else {
                    fs::remove_file(&p)
                };
                if let Err(e) = r {
                    return Err(format!("remove {}: {e}", p.display()));
                }
            }
        }
        Ok(())
    }

    /// Mark the image with manifest `digest` used now (its manifest
    /// blob's mtime is its last use, which garbage collection orders by).
    pub fn touch(&self, digest: &str) {
        if let Ok(path) = self.blob_path(digest) {
            if let Ok(f) = File::options().append(true).open(path) {
                let _ = f.set_modified(std::time::SystemTime::now());
            }
        }
    }

    /// The filesystem the store is on: (capacity, used) bytes, as
    /// `df` counts them (used = capacity - available to us).
    pub fn disk_usage(&self) -> io::Result<(u64, u64)> {
        let path = std::ffi::CString::new(self.root.as_os_str().as_encoded_bytes())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        // SAFETY: statvfs is plain data that the call fills.
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        // SAFETY: a NUL-terminated path and a valid pointer.
        if unsafe { libc::statvfs(path.as_ptr(), &mut st) } != 0 {
            return Err(io::Error::last_os_error());
        }
        let block = st.f_frsize;
        let capacity = st.f_blocks.saturating_mul(block);
        let available = st.f_bavail.saturating_mul(block);
        Ok((capacity, capacity.saturating_sub(available)))
    }

    /// The kubelet's image garbage collection: when the store's
    /// filesystem is at least `high` percent used, remove images no
    /// container uses (`in_use`: manifest digests), least recently used
    /// first, until it would be at `low` percent. The names removed.
    pub fn collect_garbage(
        &self,
        in_use: &BTreeSet<String>,
        high: u8,
        low: u8,
    ) -> Result<Vec<String>, String> {
        let (capacity, used) = self
            .disk_usage()
            .map_err(|e| format!("disk usage of {}: {e}", self.root.display()))?;
        if u128::from(used) * 100 < u128::from(capacity) * u128::from(high) {
            return Ok(Vec::new());
        }
        let target = u64::try_from(u128::from(capacity) * u128::from(low) / 100).unwrap_or(0);
        let to_free = used.saturating_sub(target);
        let mut by_digest: BTreeMap<String, GcCandidate> = BTreeMap::new();
        for l in self.list()? {
            let last_used = self
                .blob_path(&l.manifest_digest)
                .ok()
                .and_then(|p| fs::metadata(p).ok())
                .and_then(|m| m.modified().ok())
                .unwrap_or(std::time::UNIX_EPOCH);
            by_digest
                .entry(l.manifest_digest.clone())
                .or_insert(GcCandidate {
                    digest: l.manifest_digest,
                    size: l.size,
                    last_used,
                });
        }
        let mut removed = Vec::new();
        for digest in gc_victims(by_digest.into_values().collect(), in_use, to_free) {
            match self.remove(&digest, in_use) {
                Ok(names) => removed.extend(names),
                // In use by now, or gone: the next round sees.
                Err(e) => tracing::debug!(image = %digest, error = %e, "image gc"),
            }
        }
        Ok(removed)
    }

    /// Name -> (manifest digest, manifest size).
    fn read_index(&self) -> Result<BTreeMap<String, (String, u64)>, String> {
        let path = self.root.join("index.json");
        let index =
            ImageIndex::from_file(&path).map_err(|e| format!("read {}: {e}", path.display()))?;
        let mut out = BTreeMap::new();
        for m in index.manifests() {
            let Some(name) = m.annotations().as_ref().and_then(|a| a.get(REF_NAME)) else {
                continue;
            };
            out.insert(name.clone(), (m.digest().to_string(), m.size()));
        }
        Ok(out)
    }

    fn write_index(&self, index: &BTreeMap<String, (String, u64)>) -> Result<(), String> {
        let mut manifests = Vec::new();
        for (name, (digest, size)) in index {
            let d: oci_spec::image::Digest = digest
                .parse()
                .map_err(|e| format!("digest {digest}: {e}"))?;
            let mut desc = Descriptor::new(MediaType::ImageManifest, *size, d);
            desc.set_annotations(Some(
                [(REF_NAME.to_string(), name.clone())].into_iter().collect(),
            ));
            manifests.push(desc);
        }
        let mut idx = ImageIndex::default();
        idx.set_manifests(manifests);
        let text = idx
            .to_string_pretty()
            .map_err(|e| format!("encode index.json: {e}"))?;
        write_atomic(&self.root.join("index.json"), text.as_bytes())
            .map_err(|e| format!("write index.json: {e}"))
    }
}

struct Lock(#[allow(dead_code)] File);

/// (config digest, layer digests) of an image manifest (OCI or Docker
/// schema 2); an index is not an image manifest.
pub fn parse_manifest(bytes: &[u8]) -> Result<(String, Vec<String>), String> {
    let v: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| format!("a manifest that is not JSON: {e}"))?;
    let media = v
        .get("mediaType")
        .and_then(|m| m.as_str())
        .unwrap_or(OCI_MANIFEST);
    if media != OCI_MANIFEST && media != super::DOCKER_MANIFEST {
        return Err(format!("not an image manifest (mediaType {media})"));
    }
    let m = ImageManifest::from_reader(bytes).map_err(|e| format!("a bad manifest: {e}"))?;
    let config = m.config().digest().to_string();
    digest_hex(&config)?;
    let mut layers = Vec::new();
    for l in m.layers() {
        let d = l.digest().to_string();
        digest_hex(&d)?;
        layers.push(d);
    }
    Ok((config, layers))
}

/// `sha256:<hex>` of a file's bytes.
pub fn file_digest(path: &Path) -> io::Result<String> {
    use sha2::Digest as _;
    let mut f = File::open(path)?;
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = io::Read::read(&mut f, &mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(format!("sha256:{}", hex::encode(h.finalize())))
}

fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path)
}

/// An image garbage collection may remove.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GcCandidate {
    pub digest: String,
    pub size: u64,
    pub last_used: std::time::SystemTime,
}

/// Which images to remove to free `to_free` bytes: unused ones, least
/// recently used first (their sizes as the bytes they free, as the
/// kubelet counts; shared layers may free less).
pub fn gc_victims(
    mut candidates: Vec<GcCandidate>,
    in_use: &BTreeSet<String>,
    to_free: u64,
) -> Vec<String> {
    candidates.retain(|c| !in_use.contains(&c.digest));
    candidates.sort_by(|a, b| a.last_used.cmp(&b.last_used).then(a.digest.cmp(&b.digest)));
    let mut freed = 0u64;
    let mut out = Vec::new();
    for c in candidates {
        if freed >= to_free {
            break;
        }
        freed = freed.saturating_add(c.size);
        out.push(c.digest);
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A one-layer image (a file `hello` saying `text`) in OCI form:
    /// (manifest bytes, config bytes, layer bytes).
    pub(crate) fn tiny_image(text: &str, cmd: &[&str]) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_size(text.len() as u64);
        h.set_mode(0o644);
        b.append_data(&mut h, "hello", text.as_bytes()).unwrap();
        let layer = b.into_inner().unwrap();
        let layer_digest = sha256_digest(&layer);
        let config = serde_json::to_vec(&serde_json::json!({
            "architecture": "amd64", "os": "linux",
            "config": {"Cmd": cmd, "Env": ["PATH=/bin"]},
            "rootfs": {"type": "layers", "diff_ids": [layer_digest]}
        }))
        .unwrap();
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": super::super::OCI_CONFIG, "digest": sha256_digest(&config), "size": config.len()},
            "layers": [{"mediaType": super::super::OCI_LAYER, "digest": layer_digest, "size": layer.len()}]
        }))
        .unwrap();
        (manifest, config, layer)
    }

    #[test]
    fn images_are_stored_named_resolved_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let (m, c, l) = tiny_image("one", &["/bin/sh"]);
        // A blob that does not hash to its digest is refused.
        assert!(store.put_blob(&sha256_digest(b"x"), b"y").is_err());
        // Blobs first; a manifest whose blobs are missing is refused.
        assert!(store.add_image("a.test/x:1", &m).is_err());
        store.put_blob(&sha256_digest(&c), &c).unwrap();
        store.put_blob(&sha256_digest(&l), &l).unwrap();
        let img = store.add_image("a.test/x:1", &m).unwrap();
        assert_eq!(img.manifest_digest, sha256_digest(&m));
        assert_eq!(img.image_id(), format!("a.test/x@{}", sha256_digest(&m)));
        let layer = store.unpacked_layer(&img.layers[0]).unwrap();
        assert_eq!(fs::read_to_string(layer.join("hello")).unwrap(), "one");
        // A second name shares the blobs.
        store.add_image("a.test/y:2", &m).unwrap();
        let names: Vec<String> = store.list().unwrap().into_iter().map(|l| l.name).collect();
        assert_eq!(names, ["a.test/x:1", "a.test/y:2"]);
        // By digest, under any repository.
        let by_digest = format!("a.test/z@{}", img.manifest_digest);
        assert!(store.resolve(&by_digest).unwrap().is_some());
        assert!(store.resolve("a.test/x:2").unwrap().is_none());
        // The image in use cannot go; removing one name keeps the blobs.
        let in_use: BTreeSet<String> = [img.manifest_digest.clone()].into_iter().collect();
        assert!(store.remove("a.test/x:1", &in_use).is_err());
        assert_eq!(
            store.remove("a.test/x:1", &BTreeSet::new()).unwrap(),
            ["a.test/x:1"]
        );
        assert!(store.has_blob(&img.layers[0]));
        // The last name: blobs and the unpacked layer go.
        store.remove("a.test/y:2", &BTreeSet::new()).unwrap();
        assert!(!store.has_blob(&img.layers[0]));
        assert!(!layer.exists());
        assert!(store.remove("a.test/y:2", &BTreeSet::new()).is_err());
        // The layout is an OCI layout other tools read.
        let idx = ImageIndex::from_file(dir.path().join("index.json")).unwrap();
        assert!(idx.manifests().is_empty());
    }

    #[test]
    fn gc_picks_unused_images_least_recently_used_first() {
        let t = |s: u64| std::time::UNIX_EPOCH + std::time::Duration::from_secs(s);
        let c = |d: &str, size: u64, at: u64| GcCandidate {
            digest: d.into(),
            size,
            last_used: t(at),
        };
        let cands = vec![
            c("new", 10, 30),
            c("old", 10, 10),
            c("used", 50, 0),
            c("mid", 10, 20),
        ];
        let in_use: BTreeSet<String> = ["used".to_string()].into_iter().collect();
        assert_eq!(gc_victims(cands.clone(), &in_use, 0), Vec::<String>::new());
        assert_eq!(gc_victims(cands.clone(), &in_use, 1), ["old"]);
        assert_eq!(gc_victims(cands.clone(), &in_use, 15), ["old", "mid"]);
        assert_eq!(gc_victims(cands, &in_use, 1000), ["old", "mid", "new"]);
    }

    #[test]
    fn gc_removes_unused_images_past_the_threshold() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut digests = Vec::new();
        for (name, text) in [
            ("a.test/used:1", "u"),
            ("a.test/old:1", "o"),
            ("a.test/new:1", "n"),
        ] {
            let (m, c, l) = tiny_image(text, &["/bin/sh"]);
            store.put_blob(&sha256_digest(&c), &c).unwrap();
            store.put_blob(&sha256_digest(&l), &l).unwrap();
            digests.push(store.add_image(name, &m).unwrap().manifest_digest);
        }
        let in_use: BTreeSet<String> = [digests[0].clone()].into_iter().collect();
        // Below the high threshold (no disk is 100% used... nor more):
        // nothing goes.
        assert!(store.collect_garbage(&in_use, 101, 0).unwrap().is_empty());
        assert_eq!(store.list().unwrap().len(), 3);
        // Past it (0%), down to 0%: every unused image, never the used one.
        let mut removed = store.collect_garbage(&in_use, 0, 0).unwrap();
        removed.sort();
        assert_eq!(removed, ["a.test/new:1", "a.test/old:1"]);
        let left: Vec<String> = store.list().unwrap().into_iter().map(|l| l.name).collect();
        assert_eq!(left, ["a.test/used:1"]);
        // Touching sets the last use.
        store.touch(&digests[0]);
        let used_at = fs::metadata(store.blob_path(&digests[0]).unwrap())
            .unwrap()
            .modified()
            .unwrap();
        assert!(used_at.elapsed().unwrap() < std::time::Duration::from_secs(5));
    }
}
