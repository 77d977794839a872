//! The audit log (`--audit-log-path`): one JSON line per API request that
//! changes something (every request with `--audit-log-reads`), over the
//! Kubernetes HTTP API and the gRPC API alike, in the shape of Kubernetes'
//! `audit.k8s.io/v1` `Event` at level `Metadata` (who, what, on which
//! object, the answer's code; never a body). The request's latency rides
//! in the annotation `keelson.dev/latency-ms`.
//!
//! Lines are handed to a writer thread through a bounded queue, so a slow
//! disk never holds a request; when the queue is full a line is dropped
//! and counted (the count is logged). The writer appends, flushes each
//! line, and rotates by size: past `--audit-log-max-bytes` the file becomes
//! `<path>.1` (older ones shift to `.2` ... up to `--audit-log-keep`).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, SystemTime};

use serde_json::{json, Value};

/// Lines queued for the writer before new ones are dropped.
const QUEUE_LINES_MAX: usize = 65_536;

#[derive(Clone, Debug)]
pub struct AuditConfig {
    pub path: PathBuf,
    /// Rotate once the file would grow past this.
    pub max_bytes: u64,
    /// Rotated files kept (`<path>.1` is the newest).
    pub keep: usize,
    /// Log reads (get, list, watch, discovery) too.
    pub reads: bool,
}

pub struct AuditLog {
    tx: mpsc::SyncSender<String>,
    reads: bool,
    dropped: AtomicU64,
}

/// One request, as the log records it.
pub struct Entry<'a> {
    /// The Kubernetes verb: create, update, patch, delete,
    /// deletecollection, get, list, watch.
    pub verb: &'a str,
    pub request_uri: &'a str,
    /// "" when the request was not authenticated.
    pub user: &'a str,
    pub groups: Vec<String>,
    /// The object, when the request names a resource.
    pub object: Option<ObjectRef<'a>>,
    pub code: u16,
    pub received: SystemTime,
    pub latency: Duration,
    pub user_agent: &'a str,
    /// "kubernetes" (the HTTP API) or "grpc".
    pub via: &'static str,
}

pub struct ObjectRef<'a> {
    pub resource: &'a str,
    pub namespace: &'a str,
    pub name: &'a str,
    pub api_version: &'a str,
    pub subresource: &'a str,
}

/// Whether a verb changes something.
pub fn mutating(verb: &str) -> bool {
    !matches!(verb, "get" | "list" | "watch")
}

impl AuditLog {
    /// Open (or create) the log and start its writer thread.
    pub fn open(config: AuditConfig) -> Result<AuditLog, String> {
        if config.max_bytes == 0 {
            return Err("--audit-log-max-bytes must be positive".into());
        }
        if let Some(dir) = config.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
        }
        let file = open_append(&config.path)?;
        let (tx, rx) = mpsc::sync_channel(QUEUE_LINES_MAX);
        let reads = config.reads;
        std::thread::Builder::new()
            .name("audit-log".into())
            .spawn(move || write_lines(rx, file, &config))
            .map_err(|e| format!("start the audit writer: {e}"))?;
        Ok(AuditLog {
            tx,
            reads,
            dropped: AtomicU64::new(0),
        })
    }

    /// Whether a request with this verb is logged.
    pub fn wants(&self, verb: &str) -> bool {
        self.reads || mutating(verb)
    }

    pub fn record(&self, e: Entry<'_>) {
        if !self.wants(e.verb) {
            return;
        }
        let line = event(&e).to_string();
        if self.tx.try_send(line).is_err() {
            let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if n.is_power_of_two() {
                tracing::warn!(dropped = n, "audit log queue full; lines dropped");
            }
        }
    }
}

fn rfc3339_micros(t: SystemTime) -> String {
    humantime::format_rfc3339_micros(t).to_string()
}

/// The `audit.k8s.io/v1` Event of one request.
pub fn event(e: &Entry<'_>) -> Value {
    let mut ev = json!({
        "kind": "Event",
        "apiVersion": "audit.k8s.io/v1",
        "level": "Metadata",
        "auditID": uuid::Uuid::new_v4().to_string(),
        "stage": "ResponseComplete",
        "requestURI": e.request_uri,
        "verb": e.verb,
        "user": {
            "username": if e.user.is_empty() { "system:anonymous" } else { e.user },
            "groups": e.groups,
        },
        "userAgent": e.user_agent,
        "responseStatus": {"metadata": {}, "code": e.code},
        "requestReceivedTimestamp": rfc3339_micros(e.received),
        "stageTimestamp": rfc3339_micros(e.received + e.latency),
        "annotations": {
            "keelson.dev/api": e.via,
            "keelson.dev/latency-ms": format!("{:.3}", e.latency.as_secs_f64() * 1000.0),
        },
    });
    if let Some(o) = &e.object {
        let mut r = json!({"resource": o.resource, "apiVersion": o.api_version});
        for (k, v) in [
            ("namespace", o.namespace),
            ("name", o.name),
            ("subresource", o.subresource),
        ] {
            if !v.is_empty() {
                r[k] = json!(v);
            }
        }
        ev["objectRef"] = r;
    }
    ev
}

fn open_append(path: &Path) -> Result<std::fs::File, String> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| format!("open audit log {}: {e}", path.display()))
}

fn rotated(path: &Path, i: usize) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{i}"));
    PathBuf::from(s)
}

/// `<path>` becomes `<path>.1`, `.1` becomes `.2`, ... the oldest beyond
/// `keep` is removed.
fn rotate(path: &Path, keep: usize) -> std::io::Result<()> {
    if keep == 0 {
        return std::fs::remove_file(path);
    }
    let _ = std::fs::remove_file(rotated(path, keep));
    for i in (1..keep).rev() {
        let from = rotated(path, i);
        if from.exists() {
            std::fs::rename(&from, rotated(path, i + 1))?;
        }
    }
    std::fs::rename(path, rotated(path, 1))
}

fn write_lines(rx: mpsc::Receiver<String>, mut file: std::fs::File, config: &AuditConfig) {
    let mut size = file.metadata().map(|m| m.len()).unwrap_or(0);
    for line in rx {
        let len = line.len() as u64 + 1;
        if size > 0 && size + len > config.max_bytes {
            match rotate(&config.path, config.keep)
                .and_then(|()| open_append(&config.path).map_err(std::io::Error::other))
            {
                Ok(f) => {
                    file = f;
                    size = 0;
                }
                Err(e) => tracing::warn!(error = %e, "rotate the audit log"),
            }
        }
        let mut line = line;
        line.push('\n');
        // One write per line: appends from several writers never interleave.
        let written = file.write_all(line.as_bytes()).and_then(|()| file.flush());
        match written {
            Ok(()) => size += len,
            Err(e) => tracing::warn!(error = %e, "write the audit log"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry<'a>(verb: &'a str, name: &'a str) -> Entry<'a> {
        Entry {
            verb,
            request_uri: "/api/v1/namespaces/default/pods",
            user: "alice",
            groups: vec!["keelson:admin".into()],
            object: Some(ObjectRef {
                resource: "pods",
                namespace: "default",
                name,
                api_version: "v1",
                subresource: "",
            }),
            code: 201,
            received: SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
            latency: Duration::from_micros(2500),
            user_agent: "kubectl/v1.32",
            via: "kubernetes",
        }
    }

    #[test]
    fn events_have_kubernetes_shape() {
        let ev = event(&entry("create", "web"));
        assert_eq!(ev["apiVersion"], "audit.k8s.io/v1");
        assert_eq!(ev["verb"], "create");
        assert_eq!(ev["user"]["username"], "alice");
        assert_eq!(ev["objectRef"]["name"], "web");
        assert!(ev["objectRef"].get("subresource").is_none());
        assert_eq!(ev["responseStatus"]["code"], 201);
        assert_eq!(
            ev["requestReceivedTimestamp"],
            "2023-11-14T22:13:20.000000Z"
        );
        assert_eq!(ev["stageTimestamp"], "2023-11-14T22:13:20.002500Z");
        assert_eq!(ev["annotations"]["keelson.dev/latency-ms"], "2.500");
        let anon = Entry {
            user: "",
            object: None,
            ..entry("get", "")
        };
        let ev = event(&anon);
        assert_eq!(ev["user"]["username"], "system:anonymous");
        assert!(ev.get("objectRef").is_none());
    }

    #[test]
    fn only_writes_unless_reads_asked_and_rotation_by_size() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("audit.log");
        let log = AuditLog::open(AuditConfig {
            path: path.clone(),
            max_bytes: 2000,
            keep: 2,
            reads: false,
        })
        .expect("open");
        assert!(log.wants("patch") && log.wants("deletecollection"));
        assert!(!log.wants("get") && !log.wants("watch"));
        for i in 0..40 {
            log.record(entry("get", "ignored"));
            log.record(entry("delete", &format!("p{i}")));
        }
        drop(log);
        // The writer drains its queue once the sender is gone.
        let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
        let mut all = String::new();
        for _ in 0..50 {
            all = [rotated(&path, 2), rotated(&path, 1), path.clone()]
                .iter()
                .map(|p| read(p))
                .collect();
            if all.contains("\"p39\"") {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(!all.contains("ignored"), "reads are not logged");
        assert!(all.contains("\"p39\""));
        assert!(!rotated(&path, 3).exists(), "only two rotated files kept");
        for p in [path.clone(), rotated(&path, 1), rotated(&path, 2)] {
            let text = read(&p);
            assert!(
                text.len() <= 2000,
                "{} is {} bytes",
                p.display(),
                text.len()
            );
            for line in text.lines() {
                let v: Value = serde_json::from_str(line).expect("a JSON line");
                assert_eq!(v["verb"], "delete");
            }
        }
        // Some early lines went with the rotation.
        assert!(!all.contains("\"p0\""));
    }
}
