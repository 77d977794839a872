//! `kubectl exec` on the node (`NodeAgent.Exec`): a command run in a
//! running container through the runtime ([`Runtime::exec_command`]:
//! `runc exec` under runc, a host process with the container's environment
//! and directory under the process runtime), its stdin, stdout and stderr
//! relayed over the call. With a terminal the agent makes a pty, the
//! command's stdin, stdout and stderr all being its other end (runc then
//! makes the container's own terminal and copies between the two); resizes
//! set the pty's window size, which the kernel signals to the command.
//!
//! The command ends the call: its exit status is the last output. The call
//! ending first (the client went away) stops the command: SIGTERM (which
//! `runc exec` passes on to the process in the container), SIGKILL after
//! [`STOP_GRACE`].

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::pin::Pin;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use keelson_proto::api::exec_input::Input;
use keelson_proto::api::exec_output::Output;
use keelson_proto::api::{ExecExit, ExecInput, ExecOutput, ExecStart, TerminalSize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tonic::Status;

use crate::runtime::{Container, ExecCommand, Runtime, State};

/// Bytes read from the command at once.
const CHUNK_BYTES: usize = 32 * 1024;
/// How long output is still read after the command exited (a background
/// process it left may hold its stdout open).
const OUTPUT_GRACE: Duration = Duration::from_secs(2);
/// How long a terminal's first size is waited for before its command
/// starts.
const FIRST_SIZE_WAIT: Duration = Duration::from_secs(1);
/// The most inputs held while a terminal's first size is waited for.
const EARLY_INPUTS_MAX: usize = 64;
/// From SIGTERM to SIGKILL when the client went away.
const STOP_GRACE: Duration = Duration::from_secs(2);

pub type ExecStream = Pin<Box<dyn Stream<Item = Result<ExecOutput, Status>> + Send>>;

/// The running container `name` of pod `pod_uid` (its latest start).
pub fn running(containers: Vec<Container>, pod_uid: &str, name: &str) -> Option<Container> {
    containers
        .into_iter()
        .filter(|c| c.pod_uid == pod_uid && c.name == name)
        .filter(|c| matches!(c.state, State::Running { .. }))
        .max_by_key(|c| c.attempt)
}

/// Serve one exec call: `input` starts with `start`.
pub async fn exec<S>(runtime: Arc<dyn Runtime>, mut input: S) -> Result<ExecStream, Status>
where
    S: Stream<Item = Result<ExecInput, Status>> + Unpin + Send + 'static,
{
    let start = match input.next().await {
        Some(Ok(ExecInput {
            input: Some(Input::Start(s)),
        })) => s,
        Some(Err(e)) => return Err(e),
        _ => {
            return Err(Status::invalid_argument(
                "the first exec input must be start",
            ))
        }
    };
    let ExecStart {
        pod_uid,
        container,
        command,
        stdin,
        tty,
        ..
    } = start;
    if pod_uid.is_empty() || container.is_empty() {
        return Err(Status::invalid_argument(
            "pod uid and container are required",
        ));
    }
    if command.is_empty() {
        return Err(Status::invalid_argument("no command to run"));
    }
    let cmd = tokio::task::spawn_blocking(move || {
        let c = running(runtime.list(), &pod_uid, &container).ok_or_else(|| {
            Status::failed_precondition(format!("container {container:?} is not running"))
        })?;
        runtime
            .exec_command(&c, &command, tty)
            .map_err(Status::failed_precondition)
    })
    .await
    .map_err(|e| Status::internal(format!("exec: {e}")))??;
    // A terminal's first size, when the client sends it at once (kubectl
    // does), is set before the command starts: a command that asks its
    // size first sees it.
    // Input that comes before it (stdin typed ahead) is held and relayed
    // once the command runs.
    let mut early = Vec::new();
    let mut size = None;
    if tty {
        let deadline = tokio::time::Instant::now() + FIRST_SIZE_WAIT;
        while early.len() < EARLY_INPUTS_MAX {
            match tokio::time::timeout_at(deadline, input.next()).await {
                Ok(Some(Ok(ExecInput {
                    input: Some(Input::Resize(s)),
                }))) => {
                    size = Some(s);
                    break;
                }
                Ok(Some(other)) => early.push(other),
                Ok(None) | Err(_) => break,
            }
        }
    }
    let session = Session::spawn(&cmd, stdin, tty, size.as_ref())
        .map_err(|e| Status::failed_precondition(format!("cannot run {:?}: {e}", cmd.program)))?;
    let (tx, rx) = mpsc::channel(16);
    let input = futures::stream::iter(early).chain(input);
    tokio::spawn(session.run(input, tx));
    Ok(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx)))
}

type Reader = Box<dyn AsyncRead + Unpin + Send>;
type Writer = Box<dyn AsyncWrite + Unpin + Send>;

/// A command started, and its ends.
struct Session {
    child: tokio::process::Child,
    stdin: Option<Writer>,
    /// (is stderr, the stream).
    outputs: Vec<(bool, Reader)>,
    /// The pty's master side, for resizes.
    pty: Option<Arc<OwnedFd>>,
}

/// A new pty: (master, slave).
fn openpty() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let (mut master, mut slave) = (-1, -1);
    // SAFETY: openpty writes two fds we then own; no name, termios or size.
    let r = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: both fds were just opened and are ours alone.
    let fds = unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
    for fd in [&fds.0, &fds.1] {
        // SAFETY: plain fcntl on an fd we own.
        unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) };
    }
    Ok(fds)
}

/// Set a pty's window size (the kernel sends SIGWINCH to its foreground
/// process group).
fn resize(pty: &OwnedFd, size: &TerminalSize) {
    let ws = libc::winsize {
        ws_row: u16::try_from(size.height).unwrap_or(u16::MAX),
        ws_col: u16::try_from(size.width).unwrap_or(u16::MAX),
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one winsize from the pointer.
    unsafe { libc::ioctl(pty.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
}

fn file(fd: OwnedFd) -> tokio::fs::File {
    tokio::fs::File::from_std(std::fs::File::from(fd))
}

impl Session {
    fn spawn(
        cmd: &ExecCommand,
        stdin: bool,
        tty: bool,
        size: Option<&TerminalSize>,
    ) -> std::io::Result<Session> {
        let mut c = tokio::process::Command::new(&cmd.program);
        c.args(&cmd.args)
            .env_clear()
            .envs(cmd.env.iter().map(|(k, v)| (k, v)))
            .kill_on_drop(true);
        if let Some(dir) = &cmd.cwd {
            c.current_dir(dir);
        }
        if tty {
            let (master, slave) = openpty()?;
            if let Some(size) = size {
                resize(&master, size);
            }
            c.stdin(Stdio::from(slave.try_clone()?))
                .stdout(Stdio::from(slave.try_clone()?))
                .stderr(Stdio::from(slave));
            // SAFETY: only async-signal-safe calls between fork and exec.
            unsafe {
                c.pre_exec(|| {
                    // A session of its own with the pty as its terminal, so
                    // a resize signals it and a hang-up reaches it.
                    if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
            let child = c.spawn()?;
            // (`c` holds the slave's copies; they close with it here.)
            drop(c);
            let reader = file(master.try_clone()?);
            let writer = file(master.try_clone()?);
            Ok(Session {
                child,
                stdin: stdin.then(|| Box::new(writer) as Writer),
                outputs: vec![(false, Box::new(reader))],
                pty: Some(Arc::new(master)),
            })
        } else {
            c.stdin(if stdin { Stdio::piped() } else { Stdio::null() })
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            let mut child = c.spawn()?;
            let mut outputs: Vec<(bool, Reader)> = Vec::new();
            if let Some(o) = child.stdout.take() {
                outputs.push((false, Box::new(o)));
            }
            if let Some(e) = child.stderr.take() {
                outputs.push((true, Box::new(e)));
            }
            let stdin = child.stdin.take().map(|w| Box::new(w) as Writer);
            Ok(Session {
                child,
                stdin,
                outputs,
                pty: None,
            })
        }
    }

    /// Relay until the command exits (then its status is the last output)
    /// or the client goes away (then the command is stopped).
    async fn run<S>(mut self, mut input: S, tx: mpsc::Sender<Result<ExecOutput, Status>>)
    where
        S: Stream<Item = Result<ExecInput, Status>> + Unpin + Send + 'static,
    {
        let mut readers = tokio::task::JoinSet::new();
        for (stderr, mut r) in std::mem::take(&mut self.outputs) {
            let tx = tx.clone();
            readers.spawn(async move {
                let mut buf = vec![0u8; CHUNK_BYTES];
                loop {
                    // A pty whose other end closed reads EIO: its end too.
                    let n = match r.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    let data = buf[..n].to_vec();
                    let output = if stderr {
                        Output::Stderr(data)
                    } else {
                        Output::Stdout(data)
                    };
                    let out = ExecOutput {
                        output: Some(output),
                    };
                    if tx.send(Ok(out)).await.is_err() {
                        return;
                    }
                }
            });
        }
        let mut input_open = true;
        let status = loop {
            tokio::select! {
                status = self.child.wait() => break status,
                _ = tx.closed() => {
                    self.stop().await;
                    return;
                }
                msg = input.next(), if input_open => match msg {
                    Some(Ok(ExecInput { input: Some(Input::Stdin(data)) })) => {
                        if let Some(w) = self.stdin.as_mut() {
                            if w.write_all(&data).await.is_err() || w.flush().await.is_err() {
                                self.stdin = None;
                            }
                        }
                    }
                    Some(Ok(ExecInput { input: Some(Input::CloseStdin(true)) })) => {
                        // A pty's input has no end of its own: only a pipe
                        // closes.
                        if self.pty.is_none() {
                            self.stdin = None;
                        }
                    }
                    Some(Ok(ExecInput { input: Some(Input::Resize(size)) })) => {
                        if let Some(pty) = &self.pty {
                            resize(pty, &size);
                        }
                    }
                    Some(Ok(_)) => {}
                    // The client sends no more (its stdin was closed with
                    // it): the command's stdin ends.
                    None => {
                        input_open = false;
                        if self.pty.is_none() {
                            self.stdin = None;
                        }
                    }
                    Some(Err(_)) => {
                        self.stop().await;
                        return;
                    }
                },
            }
        };
        self.stdin = None;
        // The output written before the exit, then the status.
        let drained = tokio::time::timeout(OUTPUT_GRACE, async {
            while readers.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            readers.abort_all();
        }
        let exit = match status {
            Ok(s) => ExecExit {
                code: s.code().unwrap_or_else(|| 128 + s.signal().unwrap_or(0)),
                error: String::new(),
            },
            Err(e) => ExecExit {
                code: 1,
                error: format!("waiting for the command: {e}"),
            },
        };
        let _ = tx
            .send(Ok(ExecOutput {
                output: Some(Output::Exit(exit)),
            }))
            .await;
    }

    /// Stop the command: SIGTERM, SIGKILL after [`STOP_GRACE`].
    async fn stop(&mut self) {
        self.stdin = None;
        if let Some(pid) = self.child.id().and_then(|p| i32::try_from(p).ok()) {
            // SAFETY: our own child, not yet reaped (its pid is still ours).
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        if tokio::time::timeout(STOP_GRACE, self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsString;
    use std::time::SystemTime;

    fn container(attempt: u32, running: bool) -> Container {
        let now = SystemTime::now();
        Container {
            id: format!("c{attempt}"),
            pod_uid: "u".into(),
            name: "app".into(),
            attempt,
            image: String::new(),
            image_id: String::new(),
            state: if running {
                State::Running {
                    pid: 1,
                    started_at: now,
                }
            } else {
                State::Exited {
                    exit_code: Some(0),
                    signal: None,
                    reason: None,
                    started_at: now,
                    finished_at: now,
                }
            },
        }
    }

    #[test]
    fn the_running_start_is_chosen() {
        let got = running(vec![container(0, false), container(1, true)], "u", "app");
        assert_eq!(got.map(|c| c.id), Some("c1".into()));
        assert!(running(vec![container(2, false)], "u", "app").is_none());
        assert!(running(vec![container(1, true)], "other", "app").is_none());
    }

    fn sh(script: &str) -> ExecCommand {
        ExecCommand {
            program: "/bin/sh".into(),
            args: vec![OsString::from("-c"), OsString::from(script)],
            env: vec![("PATH".into(), "/usr/bin:/bin".into())],
            cwd: None,
        }
    }

    fn input(v: Input) -> Result<ExecInput, Status> {
        Ok(ExecInput { input: Some(v) })
    }

    /// Run `cmd` with `inputs` sent and the input left open; (stdout,
    /// stderr, exit).
    async fn run(
        cmd: &ExecCommand,
        stdin: bool,
        tty: bool,
        inputs: Vec<Result<ExecInput, Status>>,
    ) -> (Vec<u8>, Vec<u8>, ExecExit) {
        let session = Session::spawn(cmd, stdin, tty, None).expect("spawn");
        let (in_tx, in_rx) = mpsc::channel(16);
        for i in inputs {
            in_tx.send(i).await.expect("send input");
        }
        let (tx, mut rx) = mpsc::channel(16);
        let task =
            tokio::spawn(session.run(tokio_stream::wrappers::ReceiverStream::new(in_rx), tx));
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let exit = tokio::time::timeout(Duration::from_secs(10), async {
            while let Some(o) = rx.recv().await {
                match o.expect("output").output {
                    Some(Output::Stdout(d)) => out.extend(d),
                    Some(Output::Stderr(d)) => err.extend(d),
                    Some(Output::Exit(e)) => return e,
                    None => {}
                }
            }
            panic!("no exit status");
        })
        .await
        .expect("the command ends");
        drop(in_tx);
        task.await.expect("session task");
        (out, err, exit)
    }

    #[tokio::test]
    async fn pipes_stdin_and_exit_codes() {
        let cmd = sh("cat; echo oops >&2; exit 3");
        let (out, err, exit) = run(
            &cmd,
            true,
            false,
            vec![
                input(Input::Stdin(b"hello\n".to_vec())),
                input(Input::CloseStdin(true)),
            ],
        )
        .await;
        assert_eq!(out, b"hello\n");
        assert_eq!(err, b"oops\n");
        assert_eq!(exit.code, 3);
        let (_, _, exit) = run(&sh("kill -9 $$"), false, false, vec![]).await;
        assert_eq!(exit.code, 137);
    }

    #[tokio::test]
    async fn a_terminal_with_its_size() {
        let cmd = sh("read line; test -t 0 && test -t 1 && stty size; echo got $line");
        let (out, _, exit) = run(
            &cmd,
            true,
            true,
            vec![
                input(Input::Resize(TerminalSize {
                    width: 100,
                    height: 30,
                })),
                input(Input::Stdin(b"x\n".to_vec())),
            ],
        )
        .await;
        let out = String::from_utf8_lossy(&out);
        assert_eq!(exit.code, 0, "{out}");
        assert!(out.contains("30 100"), "{out}");
        assert!(out.contains("got x"), "{out}");
    }

    #[tokio::test]
    async fn a_terminal_starts_with_the_first_size() {
        let size = TerminalSize {
            width: 90,
            height: 20,
        };
        let session = Session::spawn(&sh("stty size"), false, true, Some(&size)).expect("spawn");
        let (_in_tx, in_rx) = mpsc::channel(1);
        let (tx, mut rx) = mpsc::channel(16);
        tokio::spawn(session.run(tokio_stream::wrappers::ReceiverStream::new(in_rx), tx));
        let mut out = Vec::new();
        while let Some(Ok(o)) = rx.recv().await {
            if let Some(Output::Stdout(d)) = o.output {
                out.extend(d);
            }
        }
        assert!(String::from_utf8_lossy(&out).contains("20 90"), "{out:?}");
    }

    #[tokio::test]
    async fn a_client_gone_stops_the_command() {
        let session = Session::spawn(&sh("exec sleep 30"), false, false, None).expect("spawn");
        let pid = session.child.id().expect("pid");
        let (in_tx, in_rx) = mpsc::channel::<Result<ExecInput, Status>>(1);
        let (tx, rx) = mpsc::channel(16);
        let task =
            tokio::spawn(session.run(tokio_stream::wrappers::ReceiverStream::new(in_rx), tx));
        drop(rx);
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("stopped in time")
            .expect("task");
        drop(in_tx);
        assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
    }
}
