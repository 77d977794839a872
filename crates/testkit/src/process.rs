//! Processes of ours: the one way a `keelson` (or etcd) process is started
//! ([`Spawn`]: arguments, a log file taking stdout and stderr, an optional
//! client identity, an optional process group of its own), signals, and
//! guards that stop what a test started even when it fails ([`Procs`],
//! [`PodReaper`]).

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::Context;

/// A process to start: `bin` with arguments, stdin closed, stdout and
/// stderr appended to a log file (or discarded).
pub struct Spawn {
    cmd: Command,
    what: String,
    log: Option<PathBuf>,
    own_group: bool,
    /// `--server ... --token ...`, appended last (after any flag that
    /// takes the next argument as its value).
    client: Vec<String>,
}

impl Spawn {
    /// `bin args...`; `what` names it in errors ("start agent n1").
    pub fn new<I, S>(bin: &Path, args: I) -> Spawn
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = Command::new(bin);
        cmd.args(args);
        Spawn {
            what: bin
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            cmd,
            log: None,
            own_group: false,
            client: Vec::new(),
        }
    }

    /// More arguments.
    pub fn args<I, S>(mut self, args: I) -> Spawn
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.cmd.args(args);
        self
    }

    /// What errors call it.
    pub fn named(mut self, what: impl Into<String>) -> Spawn {
        self.what = what.into();
        self
    }

    /// A client of the API servers at `endpoints` with `token`, and never
    /// the user's own client config (`KEELSON_CONFIG` points nowhere).
    pub fn client(mut self, endpoints: &[String], token: &str) -> Spawn {
        self.client = vec![
            "--server".into(),
            endpoints.join(","),
            "--token".into(),
            token.into(),
        ];
        self.env("KEELSON_CONFIG", "/nonexistent")
    }

    pub fn env(mut self, key: &str, value: impl AsRef<OsStr>) -> Spawn {
        self.cmd.env(key, value);
        self
    }

    /// Append stdout and stderr to `path` (created with its directory).
    pub fn log(mut self, path: &Path) -> Spawn {
        self.log = Some(path.to_path_buf());
        self
    }

    /// A process group of its own, so a terminal's Ctrl-C reaches only the
    /// parent (which stops its children in order).
    pub fn own_process_group(mut self) -> Spawn {
        self.own_group = true;
        self
    }

    /// Run it to the end, capturing stdout and stderr (a log set with
    /// [`Spawn::log`] is not used).
    pub fn output(mut self) -> anyhow::Result<std::process::Output> {
        self.cmd.args(&self.client);
        self.cmd
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("run {}", self.what))
    }

    pub fn spawn(mut self) -> anyhow::Result<Child> {
        use std::os::unix::process::CommandExt;
        self.cmd.args(&self.client).stdin(Stdio::null());
        match &self.log {
            Some(path) => {
                if let Some(d) = path.parent() {
                    std::fs::create_dir_all(d)
                        .with_context(|| format!("create {}", d.display()))?;
                }
                let log = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .with_context(|| format!("open {}", path.display()))?;
                let err = log
                    .try_clone()
                    .with_context(|| format!("open {}", path.display()))?;
                self.cmd.stdout(log).stderr(err);
            }
            None => {
                self.cmd.stdout(Stdio::null()).stderr(Stdio::null());
            }
        }
        if self.own_group {
            self.cmd.process_group(0);
        }
        self.cmd
            .spawn()
            .with_context(|| format!("start {}", self.what))
    }
}

pub fn signal(pid: u32, sig: i32) {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return;
    };
    // SAFETY: kill(2) with a pid we spawned and own; no memory is involved.
    unsafe {
        libc::kill(pid, sig);
    }
}

/// Send `sig` to the process group `pgid` (a process started with setsid).
pub fn signal_group(pgid: u32, sig: i32) {
    let Ok(pgid) = libc::pid_t::try_from(pgid) else {
        return;
    };
    // SAFETY: kill(2) on a process group; no memory is involved.
    unsafe {
        libc::kill(-pgid, sig);
    }
}

/// SIGKILL a child and reap it.
pub fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// Helper processes (agents, schedulers...), SIGKILLed when dropped.
#[derive(Default)]
pub struct Procs(pub Vec<Child>);

impl Drop for Procs {
    fn drop(&mut self) {
        for c in &mut self.0 {
            kill(c);
        }
    }
}

/// Kills, when dropped, every process an agent's runtime recorded under
/// `dir` (pods run on after their agent dies, by design; a test must not
/// leave them behind, even when it fails).
pub struct PodReaper(pub PathBuf);

impl Drop for PodReaper {
    fn drop(&mut self) {
        let mut pids = Vec::new();
        recorded_pids(&self.0, &mut pids);
        for pid in pids {
            // The container's process group, then the process itself.
            signal_group(pid, libc::SIGKILL);
            signal(pid, libc::SIGKILL);
        }
    }
}

/// The pids the process runtime recorded (`*.json` with `pid` and
/// `proc_start_time`) under `dir` that still name the process recorded,
/// not a later one with its pid.
fn recorded_pids(dir: &Path, out: &mut Vec<u32>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            recorded_pids(&p, out);
        } else if p.extension().is_some_and(|x| x == "json") {
            let rec = std::fs::read_to_string(&p)
                .ok()
                .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok());
            let field = |k: &str| rec.as_ref().and_then(|v| v.get(k)?.as_u64());
            let pid = field("pid").and_then(|p| u32::try_from(p).ok());
            let same = |pid: u32| {
                let start = proc_start_time(pid);
                start.is_some() && start == field("proc_start_time")
            };
            if let Some(pid) = pid.filter(|p| *p > 1 && same(*p)) {
                out.push(pid);
            }
        }
    }
}

/// Field 22 of /proc/<pid>/stat: when the process started, in clock ticks.
fn proc_start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rfind(')')
        .and_then(|i| stat[i + 1..].split_whitespace().nth(19))
        .and_then(|t| t.parse::<u64>().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spawned_process_logs_both_streams_and_is_reaped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("sub").join("sh.log");
        let mut child = Spawn::new(Path::new("/bin/sh"), ["-c", "echo out; echo err >&2"])
            .log(&log)
            .spawn()
            .expect("spawn");
        assert!(child.wait().expect("wait").success());
        let text = std::fs::read_to_string(&log).expect("log");
        assert!(text.contains("out") && text.contains("err"), "{text}");
    }

    #[test]
    fn a_missing_binary_is_an_error_naming_it() {
        let e = Spawn::new(Path::new("/nonexistent/keelson"), ["server"])
            .named("replica m1")
            .spawn()
            .expect_err("no such binary");
        assert!(format!("{e:#}").contains("start replica m1"), "{e:#}");
    }

    #[test]
    fn procs_kill_their_children_when_dropped() {
        let child = Spawn::new(Path::new("/bin/sleep"), ["30"])
            .spawn()
            .expect("spawn");
        let pid = child.id();
        drop(Procs(vec![child]));
        assert!(proc_start_time(pid).is_none(), "pid {pid} still runs");
    }

    #[test]
    fn the_reaper_kills_only_the_process_recorded() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut child = Spawn::new(Path::new("/bin/sleep"), ["30"])
            .spawn()
            .expect("spawn");
        let pid = child.id();
        let start = proc_start_time(pid).expect("start time");
        let rec = |start: u64| format!("{{\"pid\":{pid},\"proc_start_time\":{start}}}");
        // A record of another process that had this pid: left alone.
        std::fs::write(dir.path().join("old.json"), rec(start + 1)).expect("write");
        drop(PodReaper(dir.path().to_path_buf()));
        assert!(child.try_wait().expect("try_wait").is_none());
        std::fs::create_dir_all(dir.path().join("pod")).expect("mkdir");
        std::fs::write(dir.path().join("pod").join("c.json"), rec(start)).expect("write");
        drop(PodReaper(dir.path().to_path_buf()));
        let status = child.wait().expect("wait");
        assert!(!status.success());
    }
}
