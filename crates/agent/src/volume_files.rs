//! The files of a ConfigMap or Secret volume, written as the kubelet's
//! AtomicWriter writes them, so a container reading the volume while it
//! changes sees either the old set of files or the new one, never a mix:
//!
//! ```text
//! <volume>/..2026_12_07_06_59_01.123456789/   the files of one version
//! <volume>/..data -> ..2026_12_07_06_59_01.123456789
//! <volume>/app.conf -> ..data/app.conf          one link per top-level name
//! ```
//!
//! An update writes a new version directory, swaps `..data` with one
//! `rename` (atomic), fixes the top-level links, then removes the old
//! version. The volume's directory itself is what the runtime binds into
//! the container, so the container sees the change in place (a `subPath`
//! mount of one file does not, as in Kubernetes).

use std::collections::BTreeSet;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};

/// One file of a volume: its path inside the volume (relative, checked
/// by validation), contents and mode bits.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ProjectedFile {
    pub path: String,
    pub data: Vec<u8>,
    pub mode: u32,
}

const DATA_LINK: &str = "..data";
const DATA_TMP_LINK: &str = "..data_tmp";

/// The files as they stand in `dir` (through `..data`), sorted by path;
/// empty when the volume was never written.
pub fn read(dir: &Path) -> Vec<ProjectedFile> {
    let root = dir.join(DATA_LINK);
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let Ok(entries) = fs::read_dir(root.join(&rel)) else {
            continue;
        };
        for e in entries.flatten() {
            let rel = rel.join(e.file_name());
            let Ok(meta) = e.metadata() else { continue };
            if meta.is_dir() {
                stack.push(rel);
            } else if let Ok(data) = fs::read(e.path()) {
                out.push(ProjectedFile {
                    path: rel.to_string_lossy().into_owned(),
                    data,
                    mode: meta.permissions().mode() & 0o777,
                });
            }
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out
}

/// Make `dir` hold exactly `files` (nothing when it already does).
/// Returns whether anything changed.
pub fn write(dir: &Path, files: &[ProjectedFile]) -> std::io::Result<bool> {
    let mut want: Vec<ProjectedFile> = files.to_vec();
    want.sort_by(|a, b| a.path.cmp(&b.path));
    if dir.join(DATA_LINK).exists() && read(dir) == want {
        return Ok(false);
    }
    for f in &want {
        if f.path.is_empty()
            || f.path.starts_with('/')
            || f.path.split('/').any(|c| c == ".." || c.is_empty())
            || f.path.starts_with("..")
        {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("file path {:?} leaves the volume", f.path),
            ));
        }
    }
    fs::create_dir_all(dir)?;
    let _ = fs::set_permissions(dir, fs::Permissions::from_mode(0o755));
    let old_version = fs::read_link(dir.join(DATA_LINK)).ok();
    let stamp = version_name();
    let version = dir.join(&stamp);
    fs::create_dir(&version)?;
    for f in &want {
        let path = version.join(&f.path);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)?;
        }
        let mut file = fs::File::create(&path)?;
        file.write_all(&f.data)?;
        file.sync_all()?;
        fs::set_permissions(&path, fs::Permissions::from_mode(f.mode & 0o777))?;
    }
    // Swap ..data in one rename.
    let tmp = dir.join(DATA_TMP_LINK);
    let _ = fs::remove_file(&tmp);
    symlink(&stamp, &tmp)?;
    fs::rename(&tmp, dir.join(DATA_LINK))?;
    // A link per top-level name; links of names gone are removed.
    let top: BTreeSet<String> = want
        .iter()
        .filter_map(|f| f.path.split('/').next().map(str::to_string))
        .collect();
    for name in &top {
        let link = dir.join(name);
        if fs::symlink_metadata(&link).is_err() {
            symlink(Path::new(DATA_LINK).join(name), &link)?;
        }
    }
    for e in fs::read_dir(dir)?.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.starts_with("..") && !top.contains(&name) {
            let _ = fs::remove_file(e.path());
        }
    }
    if let Some(old) = old_version {
        if old != Path::new(&stamp) {
            let _ = fs::remove_dir_all(dir.join(old));
        }
    }
    Ok(true)
}

/// `..2026_12_07_06_59_01.123456789`: a version directory's name, unique
/// per write (the clock's nanoseconds, and a count within the process).
fn version_name() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNT: AtomicU64 = AtomicU64::new(0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    format!(
        "..{}.{:09}_{}",
        now.as_secs(),
        now.subsec_nanos(),
        COUNT.fetch_add(1, Ordering::Relaxed)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, data: &str, mode: u32) -> ProjectedFile {
        ProjectedFile {
            path: path.into(),
            data: data.as_bytes().to_vec(),
            mode,
        }
    }

    #[test]
    fn versions_swap_whole_and_links_follow() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("vol");
        let v1 = vec![file("app.conf", "a=1\n", 0o644), file("conf/x", "x", 0o600)];
        assert!(write(&dir, &v1).expect("write"));
        assert_eq!(
            fs::read_to_string(dir.join("app.conf")).expect("read"),
            "a=1\n"
        );
        assert_eq!(fs::read_to_string(dir.join("conf/x")).expect("read"), "x");
        let mode = fs::metadata(dir.join("conf/x"))
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(read(&dir), {
            let mut v = v1.clone();
            v.sort_by(|a, b| a.path.cmp(&b.path));
            v
        });
        // The same files again: nothing written.
        assert!(!write(&dir, &v1).expect("write"));
        // A new version: changed, added and removed names.
        let v2 = vec![file("app.conf", "a=2\n", 0o644), file("new", "n", 0o644)];
        assert!(write(&dir, &v2).expect("write"));
        assert_eq!(
            fs::read_to_string(dir.join("app.conf")).expect("read"),
            "a=2\n"
        );
        assert!(
            fs::symlink_metadata(dir.join("conf")).is_err(),
            "gone names unlinked"
        );
        assert_eq!(fs::read_to_string(dir.join("new")).expect("read"), "n");
        let versions: Vec<String> = fs::read_dir(&dir)
            .expect("dir")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("..") && n != DATA_LINK)
            .collect();
        assert_eq!(
            versions.len(),
            1,
            "the old version is removed: {versions:?}"
        );
        // Paths leaving the volume are refused.
        assert!(write(&dir, &[file("../x", "", 0o644)]).is_err());
        assert!(write(&dir, &[file("/etc/x", "", 0o644)]).is_err());
    }
}
