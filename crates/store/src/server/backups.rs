//! Periodic backups (`--backup-dir`, `--backup-interval`, `--backup-keep`):
//! every replica writes a backup of its own state to the directory at each
//! interval, and keeps the newest `keep` of its own files there. Each
//! replica backing itself up means a backup survives the loss of any of
//! them; a replica whose revision has not moved since its last backup
//! writes none.
//!
//! Files are `keelson-<replica>-<unix seconds>-<revision>.snap`, written to
//! a temporary name, fsynced and renamed, so a file under its final name is
//! always whole. The pure part (which files to delete) is [`victims`].

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::Replica;

/// Where and how often a replica backs itself up.
#[derive(Clone, Debug)]
pub struct BackupConfig {
    pub dir: PathBuf,
    pub interval: Duration,
    /// Newest files of this replica kept; older ones are deleted.
    pub keep: usize,
}

pub async fn run(
    replica: Arc<Replica>,
    config: BackupConfig,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(config.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick completes at once; the first backup comes one
    // interval after start.
    tick.tick().await;
    let mut last_revision = None;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        let revision = replica.sm.read().revision();
        if last_revision == Some(revision) {
            continue;
        }
        match backup_once(&replica, &config).await {
            Ok(path) => {
                last_revision = Some(revision);
                tracing::info!(path = %path.display(), revision, "wrote a backup");
            }
            Err(e) => tracing::warn!(error = %e, dir = %config.dir.display(), "periodic backup"),
        }
    }
}

async fn backup_once(replica: &Replica, config: &BackupConfig) -> Result<PathBuf, String> {
    let (revision, bytes) = replica.backup().await.map_err(|e| e.to_string())?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let prefix = file_prefix(&replica.name);
    let path = config.dir.join(format!("{prefix}{now}-{revision}.snap"));
    let dir = config.dir.clone();
    let keep = config.keep;
    tokio::task::spawn_blocking(move || -> Result<PathBuf, String> {
        write_durably(&dir, &path, &bytes)?;
        let names: Vec<String> = std::fs::read_dir(&dir)
            .map_err(|e| format!("list {}: {e}", dir.display()))?
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        for name in victims(&prefix, &names, keep) {
            if let Err(e) = std::fs::remove_file(dir.join(&name)) {
                tracing::warn!(file = %name, error = %e, "remove an old backup");
            }
        }
        Ok(path)
    })
    .await
    .map_err(|e| e.to_string())?
}

/// The start of this replica's file names; characters other than
/// letters, digits, `.`, `_` and `-` in its name become `_`, so a name
/// never reaches outside the directory.
fn file_prefix(replica: &str) -> String {
    let safe: String = replica
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("keelson-{safe}-")
}

/// Write `bytes` to `path` through a temporary file, fsyncing the file and
/// the directory.
pub fn write_durably(dir: &Path, path: &Path, bytes: &[u8]) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    // A backup holds every object, Secrets included: owner-only, as etcd's.
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| format!("create {}: {e}", dir.display()))?;
    let tmp = path.with_extension("part");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| format!("create {}: {e}", tmp.display()))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| format!("write {}: {e}", tmp.display()))?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(|e| format!("rename to {}: {e}", path.display()))?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| format!("fsync {}: {e}", dir.display()))
}

/// The files of this replica's backups to delete so that the newest `keep`
/// remain: names `<prefix><unix>-<revision>.snap`, ordered by time then
/// revision. Other files (other replicas', temporary ones, anything else)
/// are never chosen.
fn victims(prefix: &str, names: &[String], keep: usize) -> Vec<String> {
    let mut ours: Vec<((u64, i64), &String)> = names
        .iter()
        .filter_map(|name| {
            let rest = name.strip_prefix(prefix)?.strip_suffix(".snap")?;
            let (unix, rev) = rest.split_once('-')?;
            Some(((unix.parse().ok()?, rev.parse().ok()?), name))
        })
        .collect();
    ours.sort();
    let excess = ours.len().saturating_sub(keep);
    ours.into_iter()
        .take(excess)
        .map(|(_, n)| n.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn victims_are_this_replicas_oldest_beyond_keep() {
        let names: Vec<String> = [
            "keelson-r1-100-5.snap",
            "keelson-r1-90-4.snap",
            "keelson-r1-110-9.snap",
            "keelson-r1-110-9.part",
            "keelson-r10-1-1.snap",
            "keelson-r2-1-1.snap",
            "keelson-r1-x-1.snap",
            "notes.txt",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let p = file_prefix("r1");
        assert_eq!(
            victims(&p, &names, 2),
            vec!["keelson-r1-90-4.snap".to_string()]
        );
        assert_eq!(victims(&p, &names, 3), Vec::<String>::new());
        assert_eq!(victims(&p, &names, 0).len(), 3);
        assert_eq!(file_prefix("../x/y"), "keelson-.._x_y-");
    }
}
