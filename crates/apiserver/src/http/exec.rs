//! `pods/<name>/exec` over WebSocket, as kubectl 1.29+ and client-go's
//! WebSocket executor speak it: subprotocol `v5.channel.k8s.io` (or
//! `v4.channel.k8s.io`), each binary message one channel byte then data:
//! 0 stdin (client), 1 stdout, 2 stderr, 3 the outcome as a `Status`
//! (server, last), 4 a terminal resize `{"Width":w,"Height":h}` (client),
//! and with v5, 255 "close stream n" (the client's stdin ended).
//!
//! The checks (who may, the pod, a running container) come before the
//! upgrade, so a refusal is an HTTP status kubectl prints. SPDY, kubectl's
//! fallback when the upgrade is refused, is not served: its request gets
//! the same checks and then a 400 that says so.

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use futures::{SinkExt, StreamExt};
use keelson_proto::api::exec_input::Input;
use keelson_proto::api::exec_output::Output;
use keelson_proto::api::{ExecExit, ExecInput, ExecOutput, ExecStart, TerminalSize};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::status::Failure;

pub const V5: &str = "v5.channel.k8s.io";
pub const V4: &str = "v4.channel.k8s.io";

const STDIN: u8 = 0;
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const ERROR: u8 = 3;
const RESIZE: u8 = 4;
/// v5: `[255, n]` closes stream n.
const CLOSE: u8 = 255;

/// What the query asks: the command (`command=` repeated), the
/// container, and which streams.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExecQuery {
    pub command: Vec<String>,
    pub container: String,
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

fn boolean(name: &str, v: &str) -> Result<bool, Failure> {
    match v {
        "true" | "1" | "True" => Ok(true),
        "false" | "0" | "False" | "" => Ok(false),
        _ => Err(Failure::bad_request(format!(
            "{name}: {v:?} is not a boolean"
        ))),
    }
}

/// Parse an exec query string (`command` may repeat).
pub fn parse_query(query: &str) -> Result<ExecQuery, Failure> {
    let mut q = ExecQuery::default();
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        match k.as_ref() {
            "command" => q.command.push(v.into_owned()),
            "container" => q.container = v.into_owned(),
            "stdin" => q.stdin = boolean("stdin", &v)?,
            "stdout" => q.stdout = boolean("stdout", &v)?,
            "stderr" => q.stderr = boolean("stderr", &v)?,
            "tty" => q.tty = boolean("tty", &v)?,
            _ => {}
        }
    }
    if q.command.is_empty() {
        return Err(Failure::bad_request("you must specify at least 1 command"));
    }
    if !(q.stdin || q.stdout || q.stderr) {
        return Err(Failure::bad_request(
            "you must specify at least 1 of stdin, stdout, stderr",
        ));
    }
    if q.tty && q.stderr {
        // Kubernetes: with a terminal stderr is stdout.
        q.stderr = false;
    }
    Ok(q)
}

/// The subprotocol to speak from the client's offer (v5 preferred).
pub fn choose_protocol(offered: &str) -> Option<&'static str> {
    let offered: Vec<&str> = offered.split(',').map(str::trim).collect();
    [V5, V4].into_iter().find(|p| offered.contains(p))
}

/// The `Status` sent on the error channel when the command ended.
pub fn outcome(exit: &ExecExit) -> Value {
    if !exit.error.is_empty() {
        return json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {},
            "status": "Failure",
            "message": exit.error,
            "reason": "InternalError",
            "code": 500,
        });
    }
    if exit.code == 0 {
        return json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {},
            "status": "Success",
        });
    }
    json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Failure",
        "message": format!("command terminated with non-zero exit code: exit status {}", exit.code),
        "reason": "NonZeroExitCode",
        "details": { "causes": [ { "reason": "ExitCode", "message": exit.code.to_string() } ] },
    })
}

/// A client message as an input for the agent (None: nothing to relay).
pub fn input_of(data: &[u8], v5: bool) -> Option<Input> {
    let (&channel, rest) = data.split_first()?;
    match channel {
        STDIN => Some(Input::Stdin(rest.to_vec())),
        RESIZE => {
            let v: Value = serde_json::from_slice(rest).ok()?;
            let dim = |k: &str| {
                v.get(k)
                    .and_then(Value::as_u64)
                    .and_then(|n| u32::try_from(n).ok())
            };
            Some(Input::Resize(TerminalSize {
                width: dim("Width")?,
                height: dim("Height")?,
            }))
        }
        CLOSE if v5 && rest.first() == Some(&STDIN) => Some(Input::CloseStdin(true)),
        _ => None,
    }
}

fn frame(channel: u8, data: &[u8]) -> Message {
    let mut v = Vec::with_capacity(data.len() + 1);
    v.push(channel);
    v.extend_from_slice(data);
    Message::Binary(v.into())
}

/// Upgrade and relay between the WebSocket and the agent's exec.
pub fn upgrade(
    ws: WebSocketUpgrade,
    protocol: &'static str,
    q: ExecQuery,
    to_agent: mpsc::Sender<ExecInput>,
    from_agent: tonic::Streaming<ExecOutput>,
) -> Response {
    ws.protocols([protocol])
        .on_upgrade(move |socket| relay(socket, protocol == V5, q, to_agent, from_agent))
}

async fn relay(
    socket: WebSocket,
    v5: bool,
    q: ExecQuery,
    to_agent: mpsc::Sender<ExecInput>,
    mut from_agent: tonic::Streaming<ExecOutput>,
) {
    let (mut sink, mut stream) = socket.split();
    // The client's messages, relayed until it closes (a client gone ends
    // this task; the agent's call is dropped below with the relay).
    let mut inbound = tokio::spawn(async move {
        while let Some(Ok(msg)) = stream.next().await {
            match msg {
                Message::Binary(data) => {
                    if let Some(input) = input_of(&data, v5) {
                        let msg = ExecInput { input: Some(input) };
                        if to_agent.send(msg).await.is_err() {
                            break;
                        }
                    }
                }
                Message::Close(_) => break,
                _ => {}
            }
        }
    });
    let mut exit = None;
    loop {
        tokio::select! {
            out = from_agent.next() => match out {
                Some(Ok(ExecOutput { output: Some(o) })) => {
                    let msg = match o {
                        Output::Stdout(d) if q.stdout => frame(STDOUT, &d),
                        Output::Stderr(d) if q.stderr => frame(STDERR, &d),
                        Output::Exit(e) => {
                            exit = Some(e);
                            break;
                        }
                        _ => continue,
                    };
                    if sink.send(msg).await.is_err() {
                        break;
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(s)) => {
                    exit = Some(ExecExit { code: 1, error: format!("exec: {}", s.message()) });
                    break;
                }
                None => {
                    exit = Some(ExecExit { code: 1, error: "exec: the agent ended the call without an exit status".into() });
                    break;
                }
            },
            // The client went away: dropping the agent's call stops the
            // command.
            _ = &mut inbound => break,
        }
    }
    if let Some(exit) = exit {
        let status = outcome(&exit).to_string();
        let _ = sink.send(frame(ERROR, status.as_bytes())).await;
    }
    // A normal closure (1000): client-go takes only that as the end of
    // the streams.
    let _ = sink
        .send(Message::Close(Some(axum::extract::ws::CloseFrame {
            code: axum::extract::ws::close_code::NORMAL,
            reason: "".into(),
        })))
        .await;
    inbound.abort();
}

/// The start of an exec from the path and query.
pub fn start_of(namespace: &str, name: &str, q: &ExecQuery) -> ExecStart {
    ExecStart {
        namespace: namespace.to_string(),
        name: name.to_string(),
        container: q.container.clone(),
        command: q.command.clone(),
        stdin: q.stdin,
        tty: q.tty,
        pod_uid: String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries() {
        let q = parse_query(
            "command=sh&command=-c&command=echo%20a+b%3B&container=app&stdin=true&stdout=true&stderr=true&tty=false",
        )
        .expect("parse");
        assert_eq!(q.command, vec!["sh", "-c", "echo a b;"]);
        assert_eq!(q.container, "app");
        assert!(q.stdin && q.stdout && q.stderr && !q.tty);
        let q = parse_query("command=ls&stdout=true&stderr=true&tty=true").expect("tty");
        assert!(!q.stderr, "a terminal has no stderr of its own");
        assert!(parse_query("stdout=true").is_err());
        assert!(parse_query("command=ls").is_err());
        assert!(parse_query("command=ls&stdout=maybe").is_err());
    }

    #[test]
    fn protocols() {
        assert_eq!(
            choose_protocol("v4.channel.k8s.io, v5.channel.k8s.io"),
            Some(V5)
        );
        assert_eq!(choose_protocol("v4.channel.k8s.io"), Some(V4));
        assert_eq!(
            choose_protocol("channel.k8s.io,base64.channel.k8s.io"),
            None
        );
        assert_eq!(choose_protocol(""), None);
    }

    #[test]
    fn client_messages() {
        assert_eq!(
            input_of(&[0, b'x'], true),
            Some(Input::Stdin(b"x".to_vec()))
        );
        assert_eq!(
            input_of(b"\x04{\"Width\":80,\"Height\":24}", false),
            Some(Input::Resize(TerminalSize {
                width: 80,
                height: 24
            }))
        );
        assert_eq!(input_of(b"\x04{\"Width\":-1}", true), None);
        assert_eq!(input_of(&[255, 0], true), Some(Input::CloseStdin(true)));
        assert_eq!(input_of(&[255, 0], false), None);
        assert_eq!(input_of(&[], true), None);
        assert_eq!(input_of(&[1, 2], true), None);
    }

    #[test]
    fn outcomes() {
        let ok = outcome(&ExecExit {
            code: 0,
            error: String::new(),
        });
        assert_eq!(ok["status"], "Success");
        let failed = outcome(&ExecExit {
            code: 3,
            error: String::new(),
        });
        assert_eq!(failed["reason"], "NonZeroExitCode");
        assert_eq!(failed["details"]["causes"][0]["message"], "3");
        let broken = outcome(&ExecExit {
            code: 1,
            error: "no".into(),
        });
        assert_eq!(broken["reason"], "InternalError");
    }
}
