//! Watch over HTTP (`?watch=true`): the gRPC front end's watch task
//! ([`crate::service::Api::watch_inner`]), its events written as a stream
//! of JSON lines, `{"type":"ADDED","object":{...}}`, as Kubernetes does:
//! objects as JSON or, for `kubectl get -w`, as one-row tables; bookmarks
//! when asked for (`allowWatchBookmarks`, JSON only); the stream ends after
//! `timeoutSeconds`, and with an `ERROR` event carrying a 410 Expired
//! Status when the resourceVersion was compacted (the client relists).

use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use axum::body::Body;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use futures::StreamExt;
use keelson_model::{manifest, Kind, Object};
use keelson_proto::api::{WatchEvent, WatchRequest};
use prost::Message;
use serde_json::{json, Value};
use tokio_stream::wrappers::ReceiverStream;

use super::status::Failure;
use super::table::{self, Include};
use super::Format;

/// A watch with no `timeoutSeconds` ends after this long (clients resume
/// from their last resourceVersion), as kube-apiserver's
/// `--min-request-timeout` (1800 s).
pub const WATCH_TIMEOUT_DEFAULT_SECS: u64 = 1800;
/// The longest `timeoutSeconds` honoured.
pub const WATCH_TIMEOUT_MAX_SECS: u64 = 3600;

/// How to write each event.
#[derive(Clone, Copy, Debug)]
pub struct Encoding {
    pub kind: Kind,
    pub format: Format,
    pub include: Include,
}

/// Recent events' JSON lines, shared by every watch of this replica: when
/// many clients watch the same objects, each event is decoded and encoded
/// once, not once per watcher. Keyed by a hash of the event's type and
/// stored bytes, and checked against the bytes themselves, so a line is
/// only ever reused for the very same event. Tables are not kept (their
/// cells hold ages, which change with time).
struct LineCache {
    lines: HashMap<u64, (String, Vec<u8>, String)>,
    order: VecDeque<u64>,
}

/// Lines kept (the oldest goes first).
const LINE_CACHE_ENTRIES: usize = 4096;

fn line_cache() -> &'static Mutex<LineCache> {
    static CACHE: OnceLock<Mutex<LineCache>> = OnceLock::new();
    CACHE.get_or_init(|| {
        Mutex::new(LineCache {
            lines: HashMap::new(),
            order: VecDeque::new(),
        })
    })
}

fn event_hash(e: &WatchEvent) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    e.r#type.hash(&mut h);
    e.object.hash(&mut h);
    h.finish()
}

fn cached_line(e: &WatchEvent, hash: u64) -> Option<String> {
    let cache = line_cache().lock().ok()?;
    match cache.lines.get(&hash) {
        Some((ty, bytes, line)) if *ty == e.r#type && *bytes == e.object => Some(line.clone()),
        _ => None,
    }
}

fn remember_line(e: &WatchEvent, hash: u64, line: &str) {
    let Ok(mut cache) = line_cache().lock() else {
        return;
    };
    if cache
        .lines
        .insert(hash, (e.r#type.clone(), e.object.clone(), line.to_string()))
        .is_none()
    {
        cache.order.push_back(hash);
    }
    while cache.order.len() > LINE_CACHE_ENTRIES {
        if let Some(old) = cache.order.pop_front() {
            cache.lines.remove(&old);
        }
    }
}

/// One event as a line of JSON (None: not for this client, e.g. a
/// bookmark in a table watch).
pub fn event_line(
    e: &WatchEvent,
    enc: Encoding,
    now: SystemTime,
) -> Result<Option<String>, Failure> {
    let shared = enc.format == Format::Json && e.r#type != "BOOKMARK";
    let hash = if shared { event_hash(e) } else { 0 };
    if shared {
        if let Some(line) = cached_line(e, hash) {
            return Ok(Some(line));
        }
    }
    let object: Value = if e.r#type == "BOOKMARK" {
        if enc.format == Format::Table {
            return Ok(None);
        }
        json!({
            "kind": enc.kind.name(),
            "apiVersion": enc.kind.api_version(),
            "metadata": {"resourceVersion": e.resource_version},
        })
    } else {
        let o = Object::decode(e.object.as_slice()).map_err(|err| {
            Failure::new(500, "InternalError", format!("decode a watch event: {err}"))
        })?;
        match enc.format {
            Format::Json => manifest::to_value(&o),
            Format::Table => table::table(
                enc.kind,
                std::slice::from_ref(&o),
                json!({"resourceVersion": e.resource_version}),
                enc.include,
                now,
            ),
        }
    };
    let line = format!("{}\n", json!({"type": e.r#type, "object": object}));
    if shared {
        remember_line(e, hash, &line);
    }
    Ok(Some(line))
}

/// An ERROR event ending a watch.
pub fn error_line(f: &Failure) -> String {
    format!("{}\n", json!({"type": "ERROR", "object": f.body()}))
}

/// The Failure a watch task's error becomes (OUT_OF_RANGE: expired).
fn failure_of(status: &tonic::Status) -> Failure {
    match status.code() {
        tonic::Code::OutOfRange => Failure::new(410, "Expired", status.message()),
        tonic::Code::Unavailable => Failure::new(503, "ServiceUnavailable", status.message()),
        _ => Failure::new(500, "InternalError", status.message()),
    }
}

/// The watch's request: "0" (any) starts like "" (the current objects
/// first, then changes), as Kubernetes' "start at any".
pub fn request(
    kind: Kind,
    namespace: &str,
    name: Option<&str>,
    label_selector: &str,
    field_selector: &str,
    resource_version: &str,
    bookmarks: bool,
) -> WatchRequest {
    let mut fields = field_selector.to_string();
    if let Some(n) = name {
        if !fields.is_empty() {
            fields.push(',');
        }
        fields.push_str(&format!("metadata.name={n}"));
    }
    WatchRequest {
        resource: kind.plural().into(),
        namespace: namespace.into(),
        label_selector: label_selector.into(),
        field_selector: fields,
        resource_version: if resource_version == "0" {
            String::new()
        } else {
            resource_version.into()
        },
        allow_bookmarks: bookmarks,
        send_initial_events: false,
    }
}

/// The annotation of the BOOKMARK that ends a watch's initial events.
pub const INITIAL_EVENTS_END: &str = "k8s.io/initial-events-end";

/// The BOOKMARK line that ends the initial events (`sendInitialEvents`).
pub fn initial_events_end(kind: &str, api_version: &str, rv: &str) -> String {
    let object = json!({
        "kind": kind,
        "apiVersion": api_version,
        "metadata": {"resourceVersion": rv, "annotations": {INITIAL_EVENTS_END: "true"}},
    });
    format!("{}\n", json!({"type": "BOOKMARK", "object": object}))
}

/// `sendInitialEvents=true`: only with `resourceVersionMatch=NotOlderThan`
/// and bookmarks allowed, as Kubernetes requires.
pub fn send_initial_events(query: &HashMap<String, String>) -> Result<bool, Failure> {
    let get = |k: &str| query.get(k).map_or("", String::as_str);
    match get("sendInitialEvents") {
        "" | "false" => Ok(false),
        "true" => {
            if get("resourceVersionMatch") != "NotOlderThan" {
                return Err(Failure::bad_request(
                    "sendInitialEvents needs resourceVersionMatch=NotOlderThan",
                ));
            }
            if get("allowWatchBookmarks") != "true" {
                return Err(Failure::bad_request(
                    "sendInitialEvents needs allowWatchBookmarks=true",
                ));
            }
            Ok(true)
        }
        other => Err(Failure::bad_request(format!(
            "sendInitialEvents {other:?} is not true or false"
        ))),
    }
}

/// The streaming response over a started watch.
pub fn response(
    rx: tokio::sync::mpsc::Receiver<Result<WatchEvent, tonic::Status>>,
    enc: Encoding,
    timeout: Duration,
    initial_events: bool,
) -> Response {
    let deadline = tokio::time::Instant::now() + timeout;
    // With initial events, the first BOOKMARK is the one that ends them
    // (periodic bookmarks come only after it).
    let mut initial_pending = initial_events;
    let events = ReceiverStream::new(rx)
        .take_until(tokio::time::sleep_until(deadline))
        .scan(false, move |ended, item| {
            if *ended {
                return futures::future::ready(None);
            }
            let line = match item {
                Ok(e) if initial_pending && e.r#type == "BOOKMARK" => {
                    initial_pending = false;
                    Some(initial_events_end(
                        enc.kind.name(),
                        enc.kind.api_version(),
                        &e.resource_version,
                    ))
                }
                Ok(e) => match event_line(&e, enc, SystemTime::now()) {
                    Ok(l) => l,
                    Err(f) => {
                        *ended = true;
                        Some(error_line(&f))
                    }
                },
                Err(status) => {
                    *ended = true;
                    Some(error_line(&failure_of(&status)))
                }
            };
            futures::future::ready(Some(line))
        })
        .filter_map(futures::future::ready)
        .map(|l| Ok::<_, std::convert::Infallible>(axum::body::Bytes::from(l)));
    let mut r = Response::new(Body::from_stream(events));
    *r.status_mut() = StatusCode::OK;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// `timeoutSeconds`, bounded.
pub fn timeout_of(s: &str) -> Result<Duration, Failure> {
    if s.is_empty() {
        return Ok(Duration::from_secs(WATCH_TIMEOUT_DEFAULT_SECS));
    }
    let secs: u64 = s
        .parse()
        .map_err(|_| Failure::bad_request(format!("timeoutSeconds {s:?} is not a number")))?;
    Ok(Duration::from_secs(secs.min(WATCH_TIMEOUT_MAX_SECS)))
}

#[cfg(test)]
mod tests {
    #[test]
    fn initial_events_need_not_older_than_and_bookmarks() {
        let q = |pairs: &[(&str, &str)]| -> HashMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert_eq!(send_initial_events(&q(&[])).ok(), Some(false));
        let ok = q(&[
            ("sendInitialEvents", "true"),
            ("resourceVersionMatch", "NotOlderThan"),
            ("allowWatchBookmarks", "true"),
        ]);
        assert_eq!(send_initial_events(&ok).ok(), Some(true));
        for bad in [
            q(&[
                ("sendInitialEvents", "true"),
                ("allowWatchBookmarks", "true"),
            ]),
            q(&[
                ("sendInitialEvents", "true"),
                ("resourceVersionMatch", "NotOlderThan"),
            ]),
            q(&[("sendInitialEvents", "yes")]),
        ] {
            assert_eq!(send_initial_events(&bad).err().map(|f| f.code), Some(400));
        }
        let line: Value =
            serde_json::from_str(initial_events_end("Pod", "v1", "42").trim()).expect("json");
        assert_eq!(line["type"], "BOOKMARK");
        assert_eq!(line["object"]["metadata"]["resourceVersion"], "42");
        assert_eq!(
            line["object"]["metadata"]["annotations"][INITIAL_EVENTS_END],
            "true"
        );
    }

    use super::*;
    use keelson_model::Resource;
    use keelson_proto::v1;

    fn event(ty: &str) -> WatchEvent {
        let pod = v1::Pod {
            metadata: Some(v1::ObjectMeta {
                name: "web".into(),
                namespace: "default".into(),
                resource_version: "7".into(),
                ..Default::default()
            }),
            ..Default::default()
        }
        .into_object();
        WatchEvent {
            r#type: ty.into(),
            object: if ty == "BOOKMARK" {
                Vec::new()
            } else {
                pod.encode_to_vec()
            },
            resource_version: "7".into(),
        }
    }

    fn enc(format: Format) -> Encoding {
        Encoding {
            kind: Kind::Pod,
            format,
            include: Include::Metadata,
        }
    }

    fn parsed(line: Option<String>) -> Value {
        serde_json::from_str(line.as_deref().unwrap_or("null")).unwrap_or(Value::Null)
    }

    #[test]
    fn events_are_json_lines_of_objects_or_tables() {
        let now = SystemTime::now();
        let l = event_line(&event("ADDED"), enc(Format::Json), now).expect("line");
        assert!(l
            .as_deref()
            .is_some_and(|l| l.ends_with('\n') && !l.trim_end().contains('\n')));
        let v = parsed(l);
        assert_eq!(v["type"], "ADDED");
        assert_eq!(v["object"]["kind"], "Pod");
        assert_eq!(v["object"]["metadata"]["resourceVersion"], "7");
        let t = parsed(event_line(&event("MODIFIED"), enc(Format::Table), now).expect("line"));
        assert_eq!(t["object"]["kind"], "Table");
        assert_eq!(t["object"]["rows"][0]["cells"][0], "web");
        let b = parsed(event_line(&event("BOOKMARK"), enc(Format::Json), now).expect("line"));
        assert_eq!(b["object"]["metadata"]["resourceVersion"], "7");
        assert_eq!(b["object"]["kind"], "Pod");
        assert_eq!(
            event_line(&event("BOOKMARK"), enc(Format::Table), now).ok(),
            Some(None)
        );
        // The same event again: the same line (from the shared cache);
        // another event with the same type is encoded afresh.
        let again = event_line(&event("ADDED"), enc(Format::Json), now).expect("line");
        assert_eq!(parsed(again), v);
        let mut other = event("ADDED");
        other.object = v1::Pod {
            metadata: Some(v1::ObjectMeta {
                name: "db".into(),
                ..Default::default()
            }),
            ..Default::default()
        }
        .into_object()
        .encode_to_vec();
        let o = parsed(event_line(&other, enc(Format::Json), now).expect("line"));
        assert_eq!(o["object"]["metadata"]["name"], "db");
        let mut bad = event("ADDED");
        bad.object = vec![0xff, 0xff, 0xff];
        assert_eq!(
            event_line(&bad, enc(Format::Json), now)
                .err()
                .map(|f| f.code),
            Some(500)
        );
    }

    #[test]
    fn an_expired_watch_ends_with_a_410_error_event() {
        let f = failure_of(&tonic::Status::out_of_range(
            "history before 9 was compacted",
        ));
        let v: Value = serde_json::from_str(&error_line(&f)).expect("json");
        assert_eq!(v["type"], "ERROR");
        assert_eq!(v["object"]["code"], 410);
        assert_eq!(v["object"]["reason"], "Expired");
    }

    #[test]
    fn requests_and_timeouts() {
        let r = request(
            Kind::Pod,
            "default",
            Some("web"),
            "app=x",
            "spec.nodeName=n1",
            "0",
            true,
        );
        assert_eq!(r.field_selector, "spec.nodeName=n1,metadata.name=web");
        assert_eq!(r.resource_version, "", "0 starts like the latest");
        assert_eq!(
            request(Kind::Pod, "", None, "", "", "42", false).resource_version,
            "42"
        );
        assert_eq!(
            timeout_of("").ok(),
            Some(Duration::from_secs(WATCH_TIMEOUT_DEFAULT_SECS))
        );
        assert_eq!(timeout_of("5").ok(), Some(Duration::from_secs(5)));
        assert_eq!(
            timeout_of("99999").ok(),
            Some(Duration::from_secs(WATCH_TIMEOUT_MAX_SECS))
        );
        assert!(timeout_of("-1").is_err());
    }
}
