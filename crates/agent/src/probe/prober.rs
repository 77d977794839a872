//! Running one probe (exec, HTTP GET, TCP connect): the IO half of
//! [`crate::probe`]. Each run is bounded by the probe's `timeoutSeconds`.

use std::process::Stdio;
use std::time::Duration;

use keelson_proto::v1;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{timeout, Outcome, Target};
use crate::process::DEFAULT_PATH;

/// The most output of an exec probe kept for its failure message (the
/// kubelet's limit, 10 KiB).
const MAX_EXEC_OUTPUT: usize = 10 * 1024;
/// The longest HTTP status line accepted.
const MAX_STATUS_LINE: usize = 8 * 1024;
/// How long an exec probe's output is still read after its command exited
/// (a background process it left may hold the pipes open).
const EXEC_OUTPUT_GRACE: Duration = Duration::from_millis(100);

/// Run one probe once, bounded by its `timeoutSeconds`:
///
/// - `exec`: runs `command[0]` with `command[1..]` in `target.working_dir`,
///   with exactly `target.env` (plus the agent's PATH when it has no PATH);
///   succeeds iff it exits 0. At the timeout it is killed and fails. The
///   failure message carries its output (up to 10 KiB).
/// - `httpGet`: an HTTP/1.1 GET of `path` (default "/") on `host` (default
///   `target.pod_ip`) and `port` (a number, or a port name resolved from
///   `target.ports`), with `httpHeaders`; succeeds iff the status is 200 to
///   399. Redirects are not followed. HTTPS is not supported (fails).
/// - `tcpSocket`: succeeds iff a TCP connection to `host` (default
///   `target.pod_ip`) and `port` opens.
///
/// A probe with no handler fails.
pub async fn run(probe: &v1::Probe, target: &Target) -> Outcome {
    let timeout = timeout(probe);
    if let Some(exec) = &probe.exec {
        run_exec(exec, target, timeout).await
    } else if let Some(http) = &probe.http_get {
        run_http(http, target, timeout).await
    } else if let Some(tcp) = &probe.tcp_socket {
        run_tcp(tcp, target, timeout).await
    } else {
        Outcome::Failure("probe has no handler".into())
    }
}

fn secs(d: Duration) -> u64 {
    d.as_secs()
}

async fn run_exec(exec: &v1::ExecAction, target: &Target, timeout: Duration) -> Outcome {
    if exec.command.is_empty() {
        return Outcome::Failure("exec probe has no command".into());
    }
    // Inside the container (`runc exec <id> ...`: the container's own
    // environment), or on the host.
    let full: Vec<&String> = target.exec_prefix.iter().chain(&exec.command).collect();
    let Some((program, args)) = full.split_first() else {
        return Outcome::Failure("exec probe has no command".into());
    };
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .env_clear()
        .envs(&target.env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if !target.env.contains_key("PATH") {
        match std::env::var_os("PATH") {
            Some(path) => cmd.env("PATH", path),
            None => cmd.env("PATH", DEFAULT_PATH),
        };
    }
    if !target.working_dir.as_os_str().is_empty() && target.exec_prefix.is_empty() {
        cmd.current_dir(&target.working_dir);
    }
    let mut child = match cmd.spawn() {
        Ok(child) => child,
        Err(e) => {
            return Outcome::Failure(format!("exec probe: cannot run {:?}: {e}", exec.command));
        }
    };
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let output = tokio::spawn(async move {
        let (mut out, err) = tokio::join!(read_capped(stdout), read_capped(stderr));
        out.extend_from_slice(&err);
        out.truncate(MAX_EXEC_OUTPUT);
        out
    });
    let status = match tokio::time::timeout(timeout, child.wait()).await {
        Ok(Ok(status)) => status,
        Ok(Err(e)) => {
            output.abort();
            let _ = child.start_kill();
            return Outcome::Failure(format!("exec probe: waiting for {:?}: {e}", exec.command));
        }
        Err(_) => {
            output.abort();
            let _ = child.start_kill();
            // Reap it (bounded: tokio reaps a dropped child in the background).
            let _ = tokio::time::timeout(Duration::from_secs(1), child.wait()).await;
            return Outcome::Failure(format!(
                "command {:?} timed out after {}s",
                exec.command,
                secs(timeout)
            ));
        }
    };
    if status.success() {
        output.abort();
        return Outcome::Success;
    }
    let abort = output.abort_handle();
    let output = match tokio::time::timeout(EXEC_OUTPUT_GRACE, output).await {
        Ok(Ok(bytes)) => String::from_utf8_lossy(&bytes).trim().to_string(),
        _ => {
            abort.abort();
            String::new()
        }
    };
    let how = match status.code() {
        Some(code) => format!("exited with code {code}"),
        None => "was killed by a signal".to_string(),
    };
    if output.is_empty() {
        Outcome::Failure(format!("command {:?} {how}", exec.command))
    } else {
        Outcome::Failure(format!("command {:?} {how}: {output}", exec.command))
    }
}

/// Everything `reader` yields until EOF (or an error), keeping the first
/// [`MAX_EXEC_OUTPUT`] bytes and draining the rest.
async fn read_capped<R: AsyncRead + Unpin>(reader: Option<R>) -> Vec<u8> {
    let mut kept = Vec::new();
    let Some(mut reader) = reader else {
        return kept;
    };
    let mut buf = [0u8; 4096];
    loop {
        match reader.read(&mut buf).await {
            Ok(0) | Err(_) => return kept,
            Ok(n) => {
                let room = MAX_EXEC_OUTPUT.saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
            }
        }
    }
}

/// The port a probe names: a number (1..=65535), or the name of one of the
/// container's ports.
fn resolve_port(port: &str, target: &Target) -> Result<u16, String> {
    let port = port.trim();
    if port.is_empty() {
        return Err("probe has no port".into());
    }
    let number = match port.parse::<i64>() {
        Ok(n) => n,
        Err(_) => match target.ports.iter().find(|(name, _)| name == port) {
            Some((_, n)) => i64::from(*n),
            None => return Err(format!("port {port:?} is not a port of the container")),
        },
    };
    match u16::try_from(number) {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("port {port:?} is out of range")),
    }
}

/// The host to connect to (without IPv6 brackets), and its `host:port`
/// form (with them).
fn resolve_host(host: &str, target: &Target, port: u16) -> Result<(String, String), String> {
    let host = match host.trim() {
        "" => target.pod_ip.trim(),
        h => h,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err("probe has no host and the pod has no IP".into());
    }
    let authority = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    Ok((host.to_string(), authority))
}

/// Whether `name` is an HTTP header name (an RFC 9110 token).
fn is_token(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

async fn run_http(http: &v1::HttpGetAction, target: &Target, timeout: Duration) -> Outcome {
    match http.scheme.trim().to_ascii_uppercase().as_str() {
        "" | "HTTP" => {}
        "HTTPS" => return Outcome::Failure("https probes are not supported".into()),
        other => return Outcome::Failure(format!("unsupported probe scheme {other:?}")),
    }
    let port = match resolve_port(&http.port, target) {
        Ok(p) => p,
        Err(e) => return Outcome::Failure(e),
    };
    let (host, authority) = match resolve_host(&http.host, target, port) {
        Ok(h) => h,
        Err(e) => return Outcome::Failure(e),
    };
    let path = match http.path.as_str() {
        "" => "/".to_string(),
        p if p.starts_with('/') => p.to_string(),
        p => format!("/{p}"),
    };
    if path.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Outcome::Failure(format!("invalid probe path {:?}", http.path));
    }
    let url = format!("http://{authority}{path}");

    // The request: our Host, User-Agent and Accept unless the probe sets
    // its own; always Connection: close.
    let has = |name: &str| {
        http.http_headers
            .iter()
            .any(|h| h.name.eq_ignore_ascii_case(name))
    };
    let mut request = format!("GET {path} HTTP/1.1\r\n");
    if !has("host") {
        request.push_str(&format!("Host: {authority}\r\n"));
    }
    if !has("user-agent") {
        request.push_str(&format!(
            "User-Agent: keelson-probe/{}\r\n",
            env!("CARGO_PKG_VERSION")
        ));
    }
    if !has("accept") {
        request.push_str("Accept: */*\r\n");
    }
    for h in &http.http_headers {
        if !is_token(&h.name) {
            return Outcome::Failure(format!("invalid probe header name {:?}", h.name));
        }
        if h.value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
            return Outcome::Failure(format!("invalid value of probe header {:?}", h.name));
        }
        if h.name.eq_ignore_ascii_case("connection") {
            continue;
        }
        request.push_str(&format!("{}: {}\r\n", h.name, h.value));
    }
    request.push_str("Connection: close\r\n\r\n");

    let exchange = async {
        let mut stream = TcpStream::connect((host.as_str(), port))
            .await
            .map_err(|e| format!("connect: {e}"))?;
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| format!("sending the request: {e}"))?;
        let line = read_status_line(&mut stream).await?;
        parse_status(&line).ok_or_else(|| format!("malformed status line {line:?}"))
    };
    match tokio::time::timeout(timeout, exchange).await {
        Err(_) => Outcome::Failure(format!(
            "HTTP probe of {url} timed out after {}s",
            secs(timeout)
        )),
        Ok(Err(e)) => Outcome::Failure(format!("HTTP probe of {url} failed: {e}")),
        Ok(Ok(code)) if (200..=399).contains(&code) => Outcome::Success,
        Ok(Ok(code)) => Outcome::Failure(format!("HTTP probe failed with statuscode: {code}")),
    }
}

/// The first line of the response, without its line ending.
async fn read_status_line(stream: &mut TcpStream) -> Result<String, String> {
    let mut line = Vec::with_capacity(128);
    let mut buf = [0u8; 1024];
    loop {
        if let Some(end) = line.iter().position(|&b| b == b'\n') {
            line.truncate(end);
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            return Ok(String::from_utf8_lossy(&line).into_owned());
        }
        if line.len() > MAX_STATUS_LINE {
            return Err("status line too long".into());
        }
        let n = stream
            .read(&mut buf)
            .await
            .map_err(|e| format!("reading the response: {e}"))?;
        if n == 0 {
            return Err("connection closed before a response".into());
        }
        line.extend_from_slice(&buf[..n]);
    }
}

/// The status code of an HTTP/1.x status line ("HTTP/1.1 200 OK").
fn parse_status(line: &str) -> Option<u16> {
    let mut parts = line.splitn(3, ' ');
    if !parts.next()?.starts_with("HTTP/") {
        return None;
    }
    let code = parts.next()?;
    if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    code.parse().ok()
}

async fn run_tcp(tcp: &v1::TcpSocketAction, target: &Target, timeout: Duration) -> Outcome {
    let port = match resolve_port(&tcp.port, target) {
        Ok(p) => p,
        Err(e) => return Outcome::Failure(e),
    };
    let (host, authority) = match resolve_host(&tcp.host, target, port) {
        Ok(h) => h,
        Err(e) => return Outcome::Failure(e),
    };
    match tokio::time::timeout(timeout, TcpStream::connect((host.as_str(), port))).await {
        Ok(Ok(_)) => Outcome::Success,
        Ok(Err(e)) => Outcome::Failure(format!("dial tcp {authority}: {e}")),
        Err(_) => Outcome::Failure(format!(
            "dial tcp {authority}: timed out after {}s",
            secs(timeout)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;
    use tokio::net::TcpListener;

    fn s(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    /// A server on 127.0.0.1:0 answering every request with `status`; the
    /// requests it read go to the returned channel.
    async fn http_server(status: u16) -> (u16, tokio::sync::mpsc::UnboundedReceiver<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            loop {
                let Ok((mut conn, _)) = listener.accept().await else {
                    return;
                };
                let tx = tx.clone();
                tokio::spawn(async move {
                    let mut req = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                        match conn.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => req.extend_from_slice(&buf[..n]),
                        }
                    }
                    let _ = tx.send(String::from_utf8_lossy(&req).into_owned());
                    let body = "hello";
                    let resp = format!(
                        "HTTP/1.1 {status} Whatever\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = conn.write_all(resp.as_bytes()).await;
                });
            }
        });
        (port, rx)
    }

    fn local() -> Target {
        Target {
            pod_ip: "127.0.0.1".into(),
            ..Default::default()
        }
    }

    fn http_probe(port: &str, path: &str) -> v1::Probe {
        v1::Probe {
            http_get: Some(v1::HttpGetAction {
                port: port.into(),
                path: path.into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn tcp_probe(port: &str) -> v1::Probe {
        v1::Probe {
            tcp_socket: Some(v1::TcpSocketAction {
                port: port.into(),
                host: String::new(),
            }),
            ..Default::default()
        }
    }

    fn exec_probe(script: &str, timeout: i32) -> v1::Probe {
        v1::Probe {
            exec: Some(v1::ExecAction {
                command: vec!["sh".into(), "-c".into(), script.into()],
            }),
            timeout_seconds: timeout,
            ..Default::default()
        }
    }

    /// A port nothing listens on.
    async fn closed_port() -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap().port()
    }

    fn is_failure(o: &Outcome) -> bool {
        matches!(o, Outcome::Failure(_))
    }

    #[tokio::test]
    async fn http_success_and_request_shape() {
        let (port, mut rx) = http_server(200).await;
        let mut p = http_probe(&port.to_string(), "healthz?x=1");
        if let Some(h) = p.http_get.as_mut() {
            h.http_headers = vec![v1::HttpHeader {
                name: "X-Custom".into(),
                value: "yes".into(),
            }];
        }
        assert_eq!(run(&p, &local()).await, Outcome::Success);
        let req = rx.recv().await.unwrap();
        assert!(req.starts_with("GET /healthz?x=1 HTTP/1.1\r\n"), "{req}");
        assert!(
            req.contains(&format!("\r\nHost: 127.0.0.1:{port}\r\n")),
            "{req}"
        );
        assert!(req.contains("\r\nConnection: close\r\n"), "{req}");
        assert!(req.contains("\r\nX-Custom: yes\r\n"), "{req}");
    }

    #[tokio::test]
    async fn http_default_path_and_host_override() {
        let (port, mut rx) = http_server(302).await;
        let mut p = http_probe(&port.to_string(), "");
        if let Some(h) = p.http_get.as_mut() {
            h.host = "127.0.0.1".into();
            h.http_headers = vec![v1::HttpHeader {
                name: "host".into(),
                value: "example.test".into(),
            }];
        }
        let target = Target {
            pod_ip: "192.0.2.1".into(), // unused: the probe names its host
            ..Default::default()
        };
        assert_eq!(run(&p, &target).await, Outcome::Success, "3xx passes");
        let req = rx.recv().await.unwrap();
        assert!(req.starts_with("GET / HTTP/1.1\r\n"), "{req}");
        assert!(req.contains("\r\nhost: example.test\r\n"), "{req}");
        assert!(!req.contains("Host: 127.0.0.1"), "{req}");
    }

    #[tokio::test]
    async fn http_failures() {
        let (port, _rx) = http_server(500).await;
        assert_eq!(
            run(&http_probe(&port.to_string(), "/"), &local()).await,
            Outcome::Failure("HTTP probe failed with statuscode: 500".into())
        );
        let closed = closed_port().await;
        assert!(is_failure(
            &run(&http_probe(&closed.to_string(), "/"), &local()).await
        ));

        let mut https = http_probe(&port.to_string(), "/");
        if let Some(h) = https.http_get.as_mut() {
            h.scheme = "HTTPS".into();
        }
        assert_eq!(
            run(&https, &local()).await,
            Outcome::Failure("https probes are not supported".into())
        );
        for bad_port in ["", "0", "70000", "-1", "web"] {
            let o = run(&http_probe(bad_port, "/"), &local()).await;
            assert!(is_failure(&o), "port {bad_port:?}: {o:?}");
        }
        let o = run(&http_probe(&port.to_string(), "/a b"), &local()).await;
        assert!(is_failure(&o), "path with a space: {o:?}");
        let mut injected = http_probe(&port.to_string(), "/");
        if let Some(h) = injected.http_get.as_mut() {
            h.http_headers = vec![v1::HttpHeader {
                name: "X".into(),
                value: "a\r\nEvil: 1".into(),
            }];
        }
        assert!(is_failure(&run(&injected, &local()).await));
        let o = run(&http_probe(&port.to_string(), "/"), &Target::default()).await;
        assert!(is_failure(&o), "no host: {o:?}");
    }

    #[tokio::test]
    async fn http_named_port() {
        let (port, _rx) = http_server(204).await;
        let target = Target {
            pod_ip: "127.0.0.1".into(),
            ports: vec![("metrics".into(), 1), ("http".into(), i32::from(port))],
            ..Default::default()
        };
        assert_eq!(
            run(&http_probe("http", "/"), &target).await,
            Outcome::Success
        );
        let o = run(&http_probe("nope", "/"), &target).await;
        assert!(is_failure(&o), "{o:?}");
    }

    #[tokio::test]
    async fn http_timeout() {
        // Accepts and never answers.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((conn, _)) = listener.accept().await {
                held.push(conn);
            }
        });
        let started = Instant::now();
        let mut p = http_probe(&port.to_string(), "/");
        p.timeout_seconds = 1;
        let o = run(&p, &local()).await;
        let took = started.elapsed();
        assert!(is_failure(&o), "{o:?}");
        assert!(
            took >= Duration::from_millis(900) && took < s(3),
            "{took:?}"
        );
        server.abort();
    }

    #[tokio::test]
    async fn tcp_probes() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        assert_eq!(
            run(&tcp_probe(&port.to_string()), &local()).await,
            Outcome::Success
        );
        let named = Target {
            pod_ip: "127.0.0.1".into(),
            ports: vec![("db".into(), i32::from(port))],
            ..Default::default()
        };
        assert_eq!(run(&tcp_probe("db"), &named).await, Outcome::Success);
        assert!(is_failure(&run(&tcp_probe("other"), &named).await));
        drop(listener);
        let closed = closed_port().await;
        let o = run(&tcp_probe(&closed.to_string()), &local()).await;
        assert!(is_failure(&o), "{o:?}");
    }

    #[tokio::test]
    async fn no_handler() {
        assert_eq!(
            run(&v1::Probe::default(), &local()).await,
            Outcome::Failure("probe has no handler".into())
        );
    }

    #[tokio::test]
    async fn exec_exit_codes() {
        assert_eq!(
            run(&exec_probe("exit 0", 0), &local()).await,
            Outcome::Success
        );
        match run(&exec_probe("echo not ok; exit 3", 0), &local()).await {
            Outcome::Failure(m) => {
                assert!(m.contains("exited with code 3"), "{m}");
                assert!(m.contains("not ok"), "output in the message: {m}");
            }
            o => panic!("{o:?}"),
        }
        let empty = v1::Probe {
            exec: Some(v1::ExecAction::default()),
            ..Default::default()
        };
        assert!(is_failure(&run(&empty, &local()).await));
        let missing = v1::Probe {
            exec: Some(v1::ExecAction {
                command: vec!["/nonexistent/keelson-probe-test".into()],
            }),
            ..Default::default()
        };
        assert!(is_failure(&run(&missing, &local()).await));
    }

    #[tokio::test]
    async fn exec_env_and_working_dir() {
        let dir = std::env::temp_dir().canonicalize().unwrap();
        let target = Target {
            working_dir: dir.clone(),
            env: [("GREETING".to_string(), "hi there".to_string())].into(),
            ..Default::default()
        };
        let script = format!(
            "test \"$GREETING\" = 'hi there' && test \"$(pwd -P)\" = '{}' && test -n \"$PATH\"",
            dir.display()
        );
        assert_eq!(
            run(&exec_probe(&script, 0), &target).await,
            Outcome::Success
        );
        // Nothing of the agent's environment but PATH.
        if std::env::var_os("HOME").is_some() {
            let o = run(&exec_probe("test -z \"$HOME\"", 0), &target).await;
            assert_eq!(o, Outcome::Success);
        }
        // The container's PATH wins.
        let own_path = Target {
            env: [("PATH".to_string(), "/keelson/bin:/usr/bin:/bin".to_string())].into(),
            ..Default::default()
        };
        let o = run(
            &exec_probe("test \"$PATH\" = /keelson/bin:/usr/bin:/bin", 0),
            &own_path,
        )
        .await;
        assert_eq!(o, Outcome::Success);
        let missing_dir = Target {
            working_dir: "/nonexistent/keelson-probe-dir".into(),
            ..Default::default()
        };
        assert!(is_failure(
            &run(&exec_probe("exit 0", 0), &missing_dir).await
        ));
    }

    #[tokio::test]
    async fn exec_timeout_kills() {
        let started = Instant::now();
        let o = run(&exec_probe("sleep 5", 1), &local()).await;
        let took = started.elapsed();
        match o {
            Outcome::Failure(m) => assert!(m.contains("timed out"), "{m}"),
            o => panic!("{o:?}"),
        }
        assert!(
            took >= Duration::from_millis(900) && took < s(3),
            "{took:?}"
        );
    }

    #[tokio::test]
    async fn exec_background_child_does_not_block() {
        // A background process holding the output pipes does not hold up
        // the result past the grace period.
        let started = Instant::now();
        let o = run(&exec_probe("sleep 3 & exit 4", 2), &local()).await;
        assert!(is_failure(&o), "{o:?}");
        assert!(started.elapsed() < s(2), "{:?}", started.elapsed());
        let started = Instant::now();
        let o = run(&exec_probe("sleep 3 & exit 0", 2), &local()).await;
        assert_eq!(o, Outcome::Success);
        assert!(started.elapsed() < s(2), "{:?}", started.elapsed());
    }
}
