//! The built-in images (`builtin/<name>`), in the spirit of Kubernetes'
//! agnhost: small programs for tests and demos that the process runtime
//! runs as `keelson builtin <name> <args...>`.
//!
//! - `http-echo [--message M] [--listen HOST:PORT]`: an HTTP/1.1 server
//!   (default address `$HOST:$PORT`, else 127.0.0.1:8080). `GET /` answers
//!   `"<message> from <POD_NAME>\n"`; `GET /healthz` answers 200 `ok`, or
//!   500 once `GET /fail` was called, until `GET /recover` (so probes can be
//!   made to fail from outside); anything else is 404. One line per request
//!   on stdout; on SIGTERM it keeps serving for `--drain` (default 2 s:
//!   while its pod leaves the Service's endpoints), then exits with 0.
//! - `sleep [SECONDS]`: sleeps that long (default: forever); SIGTERM ends it
//!   with 0.
//! - `crash-after [SECONDS] [CODE]`: exits with CODE (default 1) after
//!   SECONDS (default 1).
//!
//! Durations are seconds (`1.5`) or humantime (`2m`, `300ms`).
//!
//! The crate's binary, `keelson-builtin <name> [args...]` (`src/main.rs`),
//! runs one of them from a binary of a few MB (tokio only); the process
//! runtime prefers it, found beside the keelson binary, to `keelson
//! builtin`, so pods of built-in images start fast.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::signal::unix::{signal, Signal, SignalKind};

/// The builtin images' names.
pub const NAMES: &[&str] = &["http-echo", "sleep", "crash-after", "pause"];

/// A request's head may not be larger.
const MAX_HEAD: usize = 16 * 1024;
/// Request bodies read (and ignored) up to this size.
const MAX_BODY: usize = 1024 * 1024;
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Run the builtin image `name` with `args`; its exit code.
pub async fn run(name: &str, args: &[String]) -> i32 {
    match name {
        "http-echo" => http_echo(args).await,
        "sleep" => sleep(args).await,
        "crash-after" => crash_after(args).await,
        "pause" => pause(args).await,
        _ => {
            eprintln!(
                "unknown builtin image {name:?}: the builtin images are {}",
                NAMES.join(", ")
            );
            2
        }
    }
}

/// SIGTERM and SIGINT, registered up front so that one arriving early is
/// not fatal.
struct Termination {
    term: Option<Signal>,
    int: Option<Signal>,
}

impl Termination {
    fn register() -> Termination {
        let get = |kind: SignalKind| match signal(kind) {
            Ok(s) => Some(s),
            Err(e) => {
                eprintln!("cannot handle signal {}: {e}", kind.as_raw_value());
                None
            }
        };
        Termination {
            term: get(SignalKind::terminate()),
            int: get(SignalKind::interrupt()),
        }
    }

    async fn wait(&mut self) {
        async fn one(s: &mut Option<Signal>) {
            match s {
                Some(s) => {
                    s.recv().await;
                }
                None => std::future::pending().await,
            }
        }
        tokio::select! {
            _ = one(&mut self.term) => {}
            _ = one(&mut self.int) => {}
        }
    }
}

/// `pause`: does nothing until SIGTERM or SIGINT, then exits 0. The runc
/// runtime runs one per pod to hold the pod's network, IPC and UTS
/// namespaces (Kubernetes' pause container).
async fn pause(args: &[String]) -> i32 {
    if !args.is_empty() {
        eprintln!("pause takes no arguments");
        return 2;
    }
    Termination::register().wait().await;
    0
}

/// Seconds (`1.5`) or a humantime duration (`2m`).
fn parse_duration(s: &str) -> Result<Duration, String> {
    if let Ok(secs) = s.parse::<f64>() {
        return Duration::try_from_secs_f64(secs)
            .map_err(|_| format!("invalid duration {s:?}: seconds must be 0 or more"));
    }
    humantime::parse_duration(s).map_err(|e| format!("invalid duration {s:?}: {e}"))
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct EchoOptions {
    message: String,
    listen: String,
    /// How long it keeps serving after SIGTERM (while the endpoints drop
    /// the terminating pod, so no connection meets a closed port).
    drain: Duration,
}

/// http-echo's default `--drain`.
const DEFAULT_DRAIN: Duration = Duration::from_secs(2);

fn parse_http_echo(
    args: &[String],
    env: impl Fn(&str) -> Option<String>,
) -> Result<EchoOptions, String> {
    let mut message = None;
    let mut listen = None;
    let mut drain = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let (flag, inline) = match a.split_once('=') {
            Some((f, v)) if f.starts_with('-') => (f, Some(v.to_string())),
            _ => (a.as_str(), None),
        };
        let slot = match flag {
            "--message" | "-message" => &mut message,
            "--listen" | "-listen" => &mut listen,
            "--drain" | "-drain" => &mut drain,
            _ => return Err(format!("unexpected argument {a:?}")),
        };
        let value = match inline {
            Some(v) => v,
            None => it
                .next()
                .cloned()
                .ok_or_else(|| format!("{flag} needs a value"))?,
        };
        *slot = Some(value);
    }
    let listen = match listen {
        Some(l) => l,
        None => {
            let host = env("HOST")
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| "127.0.0.1".into());
            let port = env("PORT")
                .filter(|p| !p.is_empty())
                .unwrap_or_else(|| "8080".into());
            if host.contains(':') && !host.starts_with('[') {
                format!("[{host}]:{port}")
            } else {
                format!("{host}:{port}")
            }
        }
    };
    let drain = match drain {
        Some(d) => parse_duration(&d)?,
        None => DEFAULT_DRAIN,
    };
    Ok(EchoOptions {
        message: message.unwrap_or_else(|| "hello".into()),
        listen,
        drain,
    })
}

async fn http_echo(args: &[String]) -> i32 {
    let opts = match parse_http_echo(args, |k| std::env::var(k).ok()) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("http-echo: {e}");
            eprintln!("usage: http-echo [--message M] [--listen HOST:PORT] [--drain SECONDS]");
            return 2;
        }
    };
    let mut term = Termination::register();
    let listener = match TcpListener::bind(&opts.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("http-echo: cannot listen on {}: {e}", opts.listen);
            return 1;
        }
    };
    let addr = listener
        .local_addr()
        .map_or_else(|_| opts.listen.clone(), |a| a.to_string());
    println!("http-echo: listening on {addr}");
    let pod = std::env::var("POD_NAME")
        .ok()
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "unknown".into());
    // Boxed so that dropping it closes the listening socket.
    let mut server = Box::pin(serve(listener, Echo::new(&opts.message, &pod)));
    tokio::select! {
        _ = &mut server => return 1,
        _ = term.wait() => {}
    }
    // Terminating: the pod leaves its Service's endpoints about now; keep
    // answering meanwhile, then close the port (a second signal: at once).
    println!("http-echo: terminating; serving {:?} more", opts.drain);
    tokio::select! {
        _ = &mut server => return 1,
        _ = term.wait() => {}
        _ = tokio::time::sleep(opts.drain) => {}
    }
    drop(server);
    // Requests already accepted get a moment to finish.
    tokio::time::sleep(Duration::from_millis(100)).await;
    println!("http-echo: terminated");
    0
}

/// The http-echo server's state.
#[derive(Clone)]
struct Echo {
    message: Arc<str>,
    pod: Arc<str>,
    failing: Arc<AtomicBool>,
}

impl Echo {
    fn new(message: &str, pod: &str) -> Echo {
        Echo {
            message: message.into(),
            pod: pod.into(),
            failing: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Status and body for a request.
    fn respond(&self, method: &str, path: &str) -> (u16, String) {
        let path = path.split_once('?').map_or(path, |(p, _)| p);
        let known = matches!(path, "/" | "/healthz" | "/fail" | "/recover");
        if !known {
            return (404, "not found\n".into());
        }
        if method != "GET" && method != "HEAD" {
            return (405, "method not allowed\n".into());
        }
        match path {
            "/" => (200, format!("{} from {}\n", self.message, self.pod)),
            "/healthz" if self.failing.load(Ordering::Relaxed) => (500, "failing".into()),
            "/healthz" => (200, "ok".into()),
            "/fail" => {
                self.failing.store(true, Ordering::Relaxed);
                (200, "failing".into())
            }
            _ => {
                self.failing.store(false, Ordering::Relaxed);
                (200, "ok".into())
            }
        }
    }
}

/// Accept connections forever (one request each).
async fn serve(listener: TcpListener, echo: Echo) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let echo = echo.clone();
                tokio::spawn(async move {
                    let peer = peer.to_string();
                    if let Err(e) = handle(stream, &peer, &echo).await {
                        println!("{peer} error: {e}");
                    }
                });
            }
            Err(e) => {
                // Out of descriptors and the like: wait a little.
                eprintln!("http-echo: accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// A parsed request head.
#[derive(Debug, PartialEq, Eq)]
struct Request {
    method: String,
    path: String,
    version: String,
    headers: Vec<(String, String)>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn parse_request(head: &str) -> Result<Request, String> {
    let mut lines = head.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let first = lines.next().unwrap_or_default();
    let mut parts = first.split(' ').filter(|p| !p.is_empty());
    let (Some(method), Some(path), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(format!("bad request line {first:?}"));
    };
    if !version.starts_with("HTTP/1.") {
        return Err(format!("unsupported version {version:?}"));
    }
    if !path.starts_with('/') {
        return Err(format!("bad path {path:?}"));
    }
    let mut headers = Vec::new();
    for line in lines.take_while(|l| !l.is_empty()) {
        let (k, v) = line
            .split_once(':')
            .ok_or_else(|| format!("bad header line {line:?}"))?;
        if k.is_empty() || k.contains([' ', '\t']) {
            return Err(format!("bad header name {k:?}"));
        }
        headers.push((k.to_string(), v.trim().to_string()));
    }
    Ok(Request {
        method: method.to_string(),
        path: path.to_string(),
        version: version.to_string(),
        headers,
    })
}

/// Read up to the end of the head; what was read past it, too.
async fn read_head(stream: &mut TcpStream) -> std::io::Result<Option<(String, Vec<u8>)>> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            if buf.is_empty() {
                return Ok(None);
            }
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "connection closed inside the request head",
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = buf.split_off(end + 4);
            return Ok(Some((String::from_utf8_lossy(&buf).into_owned(), rest)));
        }
        if buf.len() > MAX_HEAD {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "request head too large",
            ));
        }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        500 => "Internal Server Error",
        _ => "",
    }
}

/// One request, one response, then the connection is closed.
async fn handle(mut stream: TcpStream, peer: &str, echo: &Echo) -> std::io::Result<()> {
    let Ok(head) = tokio::time::timeout(READ_TIMEOUT, read_head(&mut stream)).await else {
        return Ok(());
    };
    let Some((head, body_start)) = head? else {
        return Ok(());
    };
    let (status, body, method, line) = match parse_request(&head) {
        Ok(req) => {
            // Read a small body so that closing does not reset the
            // connection under the response.
            let len = req
                .header("content-length")
                .and_then(|l| l.parse::<usize>().ok())
                .unwrap_or(0)
                .min(MAX_BODY);
            if len > body_start.len() {
                let mut rest = vec![0u8; len - body_start.len()];
                let _ = tokio::time::timeout(READ_TIMEOUT, stream.read_exact(&mut rest)).await;
            }
            let (status, body) = echo.respond(&req.method, &req.path);
            let line = format!("{} {} {}", req.method, req.path, req.version);
            (status, body, req.method, line)
        }
        Err(e) => (400, format!("{e}\n"), String::new(), "-".into()),
    };
    let mut response = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        reason(status),
        body.len()
    );
    if method != "HEAD" {
        response.push_str(&body);
    }
    println!("{peer} \"{line}\" {status} {}", body.len());
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

fn parse_sleep(args: &[String]) -> Result<Option<Duration>, String> {
    match args {
        [] => Ok(None),
        [d] => parse_duration(d).map(Some),
        _ => Err(format!("unexpected arguments {:?}", &args[1..])),
    }
}

async fn sleep(args: &[String]) -> i32 {
    let d = match parse_sleep(args) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("sleep: {e}");
            eprintln!("usage: sleep [SECONDS]");
            return 2;
        }
    };
    let mut term = Termination::register();
    match d {
        Some(d) => println!("sleep: sleeping {}", humantime::format_duration(d)),
        None => println!("sleep: sleeping until terminated"),
    }
    tokio::select! {
        _ = async {
            match d {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending().await,
            }
        } => {
            println!("sleep: done");
            0
        }
        _ = term.wait() => {
            println!("sleep: terminated");
            0
        }
    }
}

fn parse_crash_after(args: &[String]) -> Result<(Duration, i32), String> {
    if args.len() > 2 {
        return Err(format!("unexpected arguments {:?}", &args[2..]));
    }
    let after = match args.first() {
        Some(d) => parse_duration(d)?,
        None => Duration::from_secs(1),
    };
    let code = match args.get(1) {
        Some(c) => c
            .parse::<i32>()
            .ok()
            .filter(|c| (0..=255).contains(c))
            .ok_or_else(|| format!("invalid exit code {c:?}: 0 to 255"))?,
        None => 1,
    };
    Ok((after, code))
}

async fn crash_after(args: &[String]) -> i32 {
    let (after, code) = match parse_crash_after(args) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("crash-after: {e}");
            eprintln!("usage: crash-after [SECONDS] [CODE]");
            return 2;
        }
    };
    let mut term = Termination::register();
    println!(
        "crash-after: exiting with code {code} in {}",
        humantime::format_duration(after)
    );
    tokio::select! {
        _ = tokio::time::sleep(after) => {
            println!("crash-after: exiting with code {code}");
            code
        }
        _ = term.wait() => {
            println!("crash-after: terminated");
            0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn http_echo_args() {
        let none = |_: &str| None;
        assert_eq!(
            parse_http_echo(&[], none),
            Ok(EchoOptions {
                message: "hello".into(),
                listen: "127.0.0.1:8080".into(),
                drain: DEFAULT_DRAIN,
            })
        );
        let env = |k: &str| match k {
            "HOST" => Some("10.0.0.7".to_string()),
            "PORT" => Some("9000".to_string()),
            _ => None,
        };
        assert_eq!(parse_http_echo(&[], env).unwrap().listen, "10.0.0.7:9000");
        let port_only = |k: &str| (k == "PORT").then(|| "81".to_string());
        assert_eq!(
            parse_http_echo(&[], port_only).unwrap().listen,
            "127.0.0.1:81"
        );
        let v6 = |k: &str| (k == "HOST").then(|| "::1".to_string());
        assert_eq!(parse_http_echo(&[], v6).unwrap().listen, "[::1]:8080");
        assert_eq!(
            parse_http_echo(
                &s(&[
                    "--message",
                    "hi there",
                    "--listen=0.0.0.0:1",
                    "--drain",
                    "0"
                ]),
                env
            ),
            Ok(EchoOptions {
                message: "hi there".into(),
                listen: "0.0.0.0:1".into(),
                drain: Duration::ZERO,
            })
        );
        assert_eq!(
            parse_http_echo(&s(&["--message=a=b"]), none)
                .unwrap()
                .message,
            "a=b"
        );
        assert!(parse_http_echo(&s(&["--message"]), none).is_err());
        assert!(parse_http_echo(&s(&["--drain", "soon"]), none).is_err());
        assert!(parse_http_echo(&s(&["--port", "1"]), none).is_err());
        assert!(parse_http_echo(&s(&["extra"]), none).is_err());
    }

    #[test]
    fn sleep_and_crash_after_args() {
        assert_eq!(parse_sleep(&[]), Ok(None));
        assert_eq!(parse_sleep(&s(&["2"])), Ok(Some(Duration::from_secs(2))));
        assert_eq!(
            parse_sleep(&s(&["0.25"])),
            Ok(Some(Duration::from_millis(250)))
        );
        assert_eq!(parse_sleep(&s(&["2m"])), Ok(Some(Duration::from_secs(120))));
        assert!(parse_sleep(&s(&["-1"])).is_err());
        assert!(parse_sleep(&s(&["soon"])).is_err());
        assert!(parse_sleep(&s(&["1", "2"])).is_err());
        assert_eq!(parse_crash_after(&[]), Ok((Duration::from_secs(1), 1)));
        assert_eq!(
            parse_crash_after(&s(&["0.5", "42"])),
            Ok((Duration::from_millis(500), 42))
        );
        assert_eq!(
            parse_crash_after(&s(&["3"])),
            Ok((Duration::from_secs(3), 1))
        );
        assert!(parse_crash_after(&s(&["1", "256"])).is_err());
        assert!(parse_crash_after(&s(&["1", "x"])).is_err());
        assert!(parse_crash_after(&s(&["1", "2", "3"])).is_err());
    }

    #[tokio::test]
    async fn run_unknown_and_bad_args() {
        assert_eq!(run("nope", &[]).await, 2);
        assert_eq!(run("sleep", &s(&["x"])).await, 2);
        assert_eq!(run("crash-after", &s(&["0", "7", "x"])).await, 2);
    }

    #[test]
    fn request_parsing() {
        let r = parse_request("GET /healthz?x=1 HTTP/1.1\r\nHost: a:1\r\nUser-Agent:  t \r\n\r\n")
            .unwrap();
        assert_eq!(r.method, "GET");
        assert_eq!(r.path, "/healthz?x=1");
        assert_eq!(r.version, "HTTP/1.1");
        assert_eq!(r.header("host"), Some("a:1"));
        assert_eq!(r.header("USER-AGENT"), Some("t"));
        assert!(parse_request("GET /\r\n\r\n").is_err());
        assert!(parse_request("GET / HTTP/2\r\n\r\n").is_err());
        assert!(parse_request("GET x HTTP/1.1\r\n\r\n").is_err());
        assert!(parse_request("GET / HTTP/1.1\r\nno colon\r\n\r\n").is_err());
    }

    #[test]
    fn handler() {
        let e = Echo::new("hi", "web-1");
        assert_eq!(e.respond("GET", "/"), (200, "hi from web-1\n".into()));
        assert_eq!(e.respond("GET", "/healthz"), (200, "ok".into()));
        assert_eq!(e.respond("GET", "/fail"), (200, "failing".into()));
        assert_eq!(e.respond("GET", "/healthz"), (500, "failing".into()));
        assert_eq!(e.respond("GET", "/healthz?probe=1").0, 500);
        assert_eq!(e.respond("GET", "/recover").0, 200);
        assert_eq!(e.respond("GET", "/healthz"), (200, "ok".into()));
        assert_eq!(e.respond("GET", "/nope").0, 404);
        assert_eq!(e.respond("POST", "/").0, 405);
    }

    async fn get(addr: std::net::SocketAddr, raw: &str) -> String {
        let mut c = TcpStream::connect(addr).await.unwrap();
        c.write_all(raw.as_bytes()).await.unwrap();
        let mut out = String::new();
        c.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn server() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(serve(listener, Echo::new("hello", "unknown")));
        let r = get(addr, "GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
        assert!(r.contains("Content-Length: 19\r\n"), "{r}");
        assert!(r.contains("Connection: close\r\n"), "{r}");
        assert!(r.ends_with("\r\n\r\nhello from unknown\n"), "{r}");
        let r = get(addr, "GET /healthz HTTP/1.1\r\n\r\n").await;
        assert!(
            r.starts_with("HTTP/1.1 200 OK\r\n") && r.ends_with("\r\n\r\nok"),
            "{r}"
        );
        get(addr, "GET /fail HTTP/1.1\r\n\r\n").await;
        let r = get(addr, "GET /healthz HTTP/1.0\r\n\r\n").await;
        assert!(
            r.starts_with("HTTP/1.1 500 Internal Server Error\r\n"),
            "{r}"
        );
        get(addr, "GET /recover HTTP/1.1\r\n\r\n").await;
        let r = get(addr, "GET /healthz HTTP/1.1\r\n\r\n").await;
        assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
        let r = get(addr, "HEAD / HTTP/1.1\r\n\r\n").await;
        assert!(
            r.ends_with("Content-Length: 19\r\nConnection: close\r\n\r\n"),
            "{r}"
        );
        let r = get(addr, "GET /x HTTP/1.1\r\n\r\n").await;
        assert!(r.starts_with("HTTP/1.1 404 Not Found\r\n"), "{r}");
        let r = get(addr, "POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc").await;
        assert!(r.starts_with("HTTP/1.1 405 "), "{r}");
        let r = get(addr, "garbage\r\n\r\n").await;
        assert!(r.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{r}");
        // A client that sends nothing and closes is no error.
        drop(TcpStream::connect(addr).await.unwrap());
        assert_eq!(
            get(addr, "GET / HTTP/1.1\r\n\r\n").await.lines().next(),
            Some("HTTP/1.1 200 OK")
        );
        task.abort();
    }
}
