//! `keelson exec POD [-c CONTAINER] [-i] [-t] -- COMMAND [ARG...]`: run a
//! command in a running container through the API server, which relays
//! it to the agent of the pod's node. `-i` passes stdin (its end closes
//! the command's), `-t` makes the command's stdio a terminal (this one in
//! raw mode while it runs, its size followed). Exits with the command's
//! status, as kubectl does.

use std::io::{IsTerminal, Read, Write};
use std::os::fd::AsRawFd;

use clap::Args;
use futures::StreamExt;
use keelson_proto::api::exec_input::Input;
use keelson_proto::api::exec_output::Output;
use keelson_proto::api::resources_client::ResourcesClient;
use keelson_proto::api::{ExecInput, ExecStart, TerminalSize};
use tokio::sync::mpsc;

use super::{ClientArgs, NamespaceArg};

#[derive(Args, Debug)]
pub struct ExecArgs {
    /// The pod (or pod/NAME).
    pub pod: String,
    /// The container (needed when the pod has several).
    #[arg(short = 'c', long)]
    pub container: Option<String>,
    /// Pass stdin to the command.
    #[arg(short = 'i', long)]
    pub stdin: bool,
    /// Make the command's stdio a terminal.
    #[arg(short = 't', long)]
    pub tty: bool,
    /// The command and its arguments (after `--`).
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
    #[command(flatten)]
    pub ns: NamespaceArg,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// This terminal in raw mode until dropped.
struct RawMode {
    fd: i32,
    saved: libc::termios,
}

impl RawMode {
    fn enter(fd: i32) -> Option<RawMode> {
        // SAFETY: termios is plain data; tcgetattr fills it.
        let mut saved: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: fd is open (stdin); the pointer is valid.
        if unsafe { libc::tcgetattr(fd, &mut saved) } != 0 {
            return None;
        }
        let mut raw = saved;
        // SAFETY: cfmakeraw edits the struct it is given.
        unsafe { libc::cfmakeraw(&mut raw) };
        // SAFETY: as above.
        if unsafe { libc::tcsetattr(fd, libc::TCSANOW, &raw) } != 0 {
            return None;
        }
        Some(RawMode { fd, saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        // SAFETY: restores what tcgetattr read.
        unsafe { libc::tcsetattr(self.fd, libc::TCSANOW, &self.saved) };
    }
}

/// The size of the terminal on `fd`.
fn terminal_size(fd: i32) -> Option<TerminalSize> {
    // SAFETY: winsize is plain data; TIOCGWINSZ fills it.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: the pointer is valid for the ioctl.
    if unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws) } != 0 || ws.ws_col == 0 {
        return None;
    }
    Some(TerminalSize {
        width: ws.ws_col.into(),
        height: ws.ws_row.into(),
    })
}

/// Run it; the command's exit status.
pub async fn run(a: ExecArgs) -> anyhow::Result<i32> {
    let name = super::pod_name(&a.pod);
    let mut tty = a.tty;
    if tty && !(a.stdin && std::io::stdin().is_terminal()) {
        eprintln!("Unable to use a TTY - input is not a terminal or the right kind of file");
        tty = false;
    }
    let client = a.client.client()?;
    let target = client.stream_channel();
    let (tx, rx) = mpsc::channel::<ExecInput>(16);
    let send = |i: Input| ExecInput { input: Some(i) };
    tx.send(send(Input::Start(ExecStart {
        namespace: a.ns.namespace.clone(),
        name,
        container: a.container.clone().unwrap_or_default(),
        command: a.command.clone(),
        stdin: a.stdin,
        tty,
        pod_uid: String::new(),
    })))
    .await?;
    let req = client.request(tokio_stream::wrappers::ReceiverStream::new(rx), None);
    let mut outputs = match ResourcesClient::new(target.channel.clone()).exec(req).await {
        Ok(s) => s.into_inner(),
        Err(s) => {
            if s.code() == tonic::Code::Unavailable {
                target.failed();
            }
            return Err(keelson_sdk::Error::from(s).into());
        }
    };
    let stdin_fd = std::io::stdin().as_raw_fd();
    let _raw = if tty { RawMode::enter(stdin_fd) } else { None };
    if tty {
        if let Some(size) = terminal_size(stdin_fd) {
            tx.send(send(Input::Resize(size))).await?;
        }
        // Follow the terminal's size.
        let tx = tx.clone();
        let mut winch =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change())?;
        tokio::spawn(async move {
            while winch.recv().await.is_some() {
                if let Some(size) = terminal_size(stdin_fd) {
                    if tx.send(send(Input::Resize(size))).await.is_err() {
                        return;
                    }
                }
            }
        });
    }
    if a.stdin {
        // Stdin is read on a thread of its own (reads block); its end
        // closes the command's stdin.
        let tx = tx.clone();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 32 * 1024];
            let mut stdin = std::io::stdin().lock();
            loop {
                match stdin.read(&mut buf) {
                    Ok(0) | Err(_) => {
                        let _ = tx.blocking_send(send(Input::CloseStdin(true)));
                        return;
                    }
                    Ok(n) => {
                        if tx
                            .blocking_send(send(Input::Stdin(buf[..n].to_vec())))
                            .is_err()
                        {
                            return;
                        }
                    }
                }
            }
        });
    }
    drop(tx);
    let (mut stdout, mut stderr) = (std::io::stdout(), std::io::stderr());
    while let Some(out) = outputs.next().await {
        let out = out.map_err(keelson_sdk::Error::from)?;
        match out.output {
            Some(Output::Stdout(d)) => {
                let _ = stdout.write_all(&d).and_then(|()| stdout.flush());
            }
            Some(Output::Stderr(d)) => {
                let _ = stderr.write_all(&d).and_then(|()| stderr.flush());
            }
            Some(Output::Exit(e)) => {
                if !e.error.is_empty() {
                    anyhow::bail!("{}", e.error);
                }
                return Ok(e.code);
            }
            None => {}
        }
    }
    anyhow::bail!("the exec ended without the command's exit status")
}
