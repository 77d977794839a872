//! The process runtime: each container is a host process.
//!
//! - **Images**: `builtin/<name>[:tag]` (see [`crate::builtin::NAMES`])
//!   runs `<keelson> builtin <name> <command...> <args...>`. Any other
//!   image runs the container's `command[0]` with `command[1..]` and `args`
//!   on the host, as it is installed there: the image itself is never
//!   pulled, only its name is reported. Such an image without a command
//!   cannot run ([`StartError::ImageNotSupported`]).
//! - **Layout** under the data dir: `pods/<pod uid>/<container>/` is the
//!   container's directory (its working dir, `workingDir` taken relative to
//!   it, `..` refused), `pods/<pod uid>/<container>-<attempt>.log` its log
//!   (stdout and stderr) with the rotated `.log.1` next to it, and
//!   `pods/<pod uid>/<container>-<attempt>.json` the record of that start
//!   (pid, the process' start time in `/proc/<pid>/stat`, and the exit
//!   status once known).
//! - **Processes**: each one leads a process group of its own (a session
//!   too when it joins a cgroup) (stop and kill signal the whole group),
//!   stdin is /dev/null, the
//!   environment is the agent's `PATH` plus exactly the container's env.
//! - **Limits**: with a writable cgroup v2 hierarchy at `/sys/fs/cgroup`,
//!   each container runs in `keelson/<container id>` with `memory.max` and
//!   `cpu.max` from its limits. Without, limits are not enforced (one
//!   warning), which never fails a start.
//! - **Adoption**: a new runtime on the same data dir reads the records; a
//!   process still alive (same pid, same start time) is listed Running
//!   again, so an agent restarted after a crash finds its containers. Once
//!   such a process is gone its exit status is unknown (`exit_code: None`).
//! - **Log rotation** (copytruncate): a background thread checks running
//!   containers' logs every second; one over the maximum size is copied to
//!   `.log.1` and truncated (the process writes with O_APPEND).

use std::collections::BTreeMap;
use std::ffi::{CString, OsStr, OsString};
use std::fs::{self, OpenOptions};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Component, Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::runtime::{Container, ContainerSpec, ExecCommand, Runtime, StartError, State};

/// Logs are rotated past this size unless set otherwise.
pub const DEFAULT_MAX_LOG_BYTES: u64 = 10 * 1024 * 1024;
const CGROUP_ROOT: &str = "/sys/fs/cgroup";
/// Our cgroup under the root; one child per container.
const CGROUP_PARENT: &str = "keelson";
const CPU_PERIOD_US: i64 = 100_000;
/// The kernel's minimum cpu.max quota.
const CPU_MIN_QUOTA_US: i64 = 1_000;
const TICK: Duration = Duration::from_secs(1);
/// PATH when the agent has none.
pub(crate) const DEFAULT_PATH: &str =
    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Runs containers as host processes; see the module docs.
pub struct ProcessRuntime {
    inner: Arc<Inner>,
    /// Dropped with the runtime: wakes the background thread, which ends.
    _stop: mpsc::Sender<()>,
}

struct Inner {
    data_dir: PathBuf,
    builtin_exe: PathBuf,
    max_log_bytes: AtomicU64,
    /// Our parent cgroup, or why limits are not enforced.
    cgroups: Result<PathBuf, String>,
    limits_warned: AtomicBool,
    table: Mutex<Table>,
}

#[derive(Default)]
struct Table {
    containers: BTreeMap<String, Entry>,
    /// Containers being started (their spawn runs without the lock).
    starting: std::collections::HashSet<String>,
    /// Cgroups to remove once their last processes are gone.
    stale_cgroups: Vec<PathBuf>,
}

struct Entry {
    rec: Record,
    /// Our own child; None when adopted from an earlier runtime.
    child: Option<Child>,
    /// Its pod was removed while it was still dying: not listed, dropped
    /// once reaped.
    forgotten: bool,
}

/// What is persisted of one container start.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Record {
    id: String,
    pod_uid: String,
    #[serde(default)]
    pod_namespace: String,
    #[serde(default)]
    pod_name: String,
    name: String,
    attempt: u32,
    image: String,
    pid: u32,
    /// Field 22 of `/proc/<pid>/stat` (clock ticks after boot): tells the
    /// process from a later one with the same pid. 0: unknown.
    proc_start_time: u64,
    #[serde(with = "keelson_model::time::serde_nanos")]
    started_at: SystemTime,
    #[serde(default)]
    cgroup: Option<PathBuf>,
    #[serde(default)]
    exit: Option<ExitRecord>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct ExitRecord {
    exit_code: Option<i32>,
    signal: Option<i32>,
    #[serde(with = "keelson_model::time::serde_nanos")]
    finished_at: SystemTime,
}

/// The small binary of the built-in images, looked for beside keelson's.
pub const SMALL_BUILTIN_EXE: &str = "keelson-builtin";

impl ProcessRuntime {
    /// A runtime keeping its containers under `data_dir` (created if
    /// needed); `builtin_exe` is the keelson binary that runs the builtin
    /// images. Adopts the containers of an earlier runtime on that dir.
    pub fn new(data_dir: PathBuf, builtin_exe: PathBuf) -> io::Result<ProcessRuntime> {
        ProcessRuntime::with_cgroup_root(data_dir, builtin_exe, Path::new(CGROUP_ROOT))
    }

    fn with_cgroup_root(
        data_dir: PathBuf,
        builtin_exe: PathBuf,
        cgroup_root: &Path,
    ) -> io::Result<ProcessRuntime> {
        fs::create_dir_all(data_dir.join("pods"))?;
        let cgroups = setup_cgroups(cgroup_root);
        match &cgroups {
            Ok(dir) => tracing::info!(cgroup = %dir.display(), "container limits are enforced"),
            Err(reason) => tracing::info!("{reason}"),
        }
        let inner = Arc::new(Inner {
            data_dir,
            builtin_exe,
            max_log_bytes: AtomicU64::new(DEFAULT_MAX_LOG_BYTES),
            cgroups,
            limits_warned: AtomicBool::new(false),
            table: Mutex::new(Table::default()),
        });
        inner.adopt()?;
        let (stop, stopped) = mpsc::channel::<()>();
        let weak = Arc::downgrade(&inner);
        std::thread::Builder::new()
            .name("keelson-logs".into())
            .spawn(move || background(weak, stopped))?;
        Ok(ProcessRuntime { inner, _stop: stop })
    }

    /// Rotate a running container's log once it is over `bytes`.
    pub fn with_max_log_bytes(self, bytes: u64) -> ProcessRuntime {
        self.inner.max_log_bytes.store(bytes, Ordering::Relaxed);
        self
    }

    /// The directory a container runs in (its working dir is relative to
    /// it).
    pub fn container_dir(&self, pod_uid: &str, name: &str) -> PathBuf {
        self.inner.pod_dir(pod_uid).join(name)
    }
}

/// Rotate logs and reap exits every [`TICK`] until the runtime is dropped.
fn background(inner: Weak<Inner>, stopped: mpsc::Receiver<()>) {
    loop {
        match stopped.recv_timeout(TICK) {
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            _ => return,
        }
        let Some(inner) = inner.upgrade() else {
            return;
        };
        inner.tick();
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn pod_dir(&self, pod_uid: &str) -> PathBuf {
        self.data_dir.join("pods").join(pod_uid)
    }

    /// A ConfigMap or Secret volume's directory (`.volumes` cannot be a
    /// container's name).
    fn config_volume(&self, pod_uid: &str, volume: &str) -> PathBuf {
        self.pod_dir(pod_uid).join(".volumes").join(volume)
    }

    /// A host process has no mount namespace of its own: each ConfigMap
    /// or Secret volume it mounts appears at its mount path taken
    /// relative to the container's directory (`/etc/app` ->
    /// `<container dir>/etc/app`), a link to the volume's files, so a
    /// process reading relative paths from its working directory finds
    /// them. Other volumes are not mounted by this runtime.
    fn link_config_volumes(&self, spec: &ContainerSpec, cdir: &Path) -> Result<(), StartError> {
        for m in &spec.mounts {
            if m.source != crate::runtime::VolumeSource::Config {
                continue;
            }
            let link = working_dir(cdir, &m.container_path)?;
            let target = self.config_volume(&spec.pod_uid, &m.volume);
            if !target.is_dir() {
                return Err(StartError::InvalidSpec(format!(
                    "volume {:?}: its files are not written yet",
                    m.volume
                )));
            }
            let target = if m.sub_path.is_empty() {
                target
            } else {
                working_dir(&target, &m.sub_path)?
            };
            if let Some(parent) = link.parent() {
                fs::create_dir_all(parent)
                    .map_err(|e| StartError::Io(format!("create {}: {e}", parent.display())))?;
            }
            let _ = fs::remove_file(&link);
            std::os::unix::fs::symlink(&target, &link).map_err(|e| {
                StartError::Io(format!(
                    "link {} to {}: {e}",
                    link.display(),
                    target.display()
                ))
            })?;
        }
        Ok(())
    }

    fn record_path(&self, pod_uid: &str, name: &str, attempt: u32) -> PathBuf {
        self.pod_dir(pod_uid).join(format!("{name}-{attempt}.json"))
    }

    fn log_paths(&self, pod_uid: &str, name: &str, attempt: u32) -> (PathBuf, PathBuf) {
        let current = self.pod_dir(pod_uid).join(format!("{name}-{attempt}.log"));
        let mut rotated = current.clone().into_os_string();
        rotated.push(".1");
        (current, PathBuf::from(rotated))
    }

    fn persist(&self, rec: &Record) -> io::Result<()> {
        let path = self.record_path(&rec.pod_uid, &rec.name, rec.attempt);
        let tmp = path.with_extension("json.tmp");
        let data = serde_json::to_vec_pretty(rec).map_err(io::Error::other)?;
        fs::write(&tmp, data)?;
        fs::rename(&tmp, &path)
    }

    fn persist_or_warn(&self, rec: &Record) {
        if let Err(e) = self.persist(rec) {
            tracing::warn!(container = %rec.id, error = %e, "cannot save the container's record");
        }
    }

    /// Load the records of an earlier runtime: alive processes are adopted,
    /// the others are exited.
    fn adopt(&self) -> io::Result<()> {
        let mut table = self.lock();
        for pod in fs::read_dir(self.data_dir.join("pods"))? {
            let pod = pod?.path();
            if !pod.is_dir() {
                continue;
            }
            let files = match fs::read_dir(&pod) {
                Ok(f) => f,
                Err(e) => {
                    tracing::warn!(dir = %pod.display(), error = %e, "cannot read a pod's directory");
                    continue;
                }
            };
            for file in files.flatten() {
                let path = file.path();
                if path.extension().is_none_or(|e| e != "json") {
                    continue;
                }
                let rec = fs::read(&path)
                    .map_err(|e| e.to_string())
                    .and_then(|b| serde_json::from_slice::<Record>(&b).map_err(|e| e.to_string()));
                let mut rec = match rec {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::warn!(file = %path.display(), error = %e, "skipping a container record");
                        continue;
                    }
                };
                if rec.exit.is_none() {
                    match liveness(rec.pid, rec.proc_start_time) {
                        Liveness::Alive => {
                            tracing::info!(container = %rec.id, pid = rec.pid, "adopted a running container");
                        }
                        other => {
                            let (exit_code, signal) = if other == Liveness::Zombie {
                                reap(rec.pid).map_or((None, None), |s| (s.code(), s.signal()))
                            } else {
                                (None, None)
                            };
                            rec.exit = Some(ExitRecord {
                                exit_code,
                                signal,
                                finished_at: SystemTime::now(),
                            });
                            self.persist_or_warn(&rec);
                        }
                    }
                }
                table.containers.insert(
                    rec.id.clone(),
                    Entry {
                        rec,
                        child: None,
                        forgotten: false,
                    },
                );
            }
        }
        Ok(())
    }

    /// Record the exits of containers that ended since the last look.
    fn refresh(&self, table: &mut Table) {
        let mut gone = Vec::new();
        for (id, e) in table.containers.iter_mut() {
            if e.rec.exit.is_some() {
                continue;
            }
            let status = match e.child.as_mut() {
                Some(child) => match child.try_wait() {
                    Ok(None) => continue,
                    Ok(Some(s)) => Some(s),
                    Err(err) => {
                        tracing::warn!(container = %id, error = %err, "cannot wait for the container");
                        None
                    }
                },
                None => match liveness(e.rec.pid, e.rec.proc_start_time) {
                    Liveness::Alive => continue,
                    // Ours when adopted by a runtime of the same process.
                    Liveness::Zombie => reap(e.rec.pid),
                    Liveness::Gone => None,
                },
            };
            e.child = None;
            e.rec.exit = Some(ExitRecord {
                exit_code: status.and_then(|s| s.code()),
                signal: status.and_then(|s| s.signal()),
                finished_at: SystemTime::now(),
            });
            if e.forgotten {
                gone.push(id.clone());
            } else {
                self.persist_or_warn(&e.rec);
            }
        }
        for id in gone {
            if let Some(e) = table.containers.remove(&id) {
                if let Some(cg) = e.rec.cgroup {
                    remove_cgroup(cg, &mut table.stale_cgroups);
                }
            }
        }
    }

    /// The background thread's round: exits, stale cgroups, log rotation.
    fn tick(&self) {
        let logs: Vec<PathBuf> = {
            let mut table = self.lock();
            self.refresh(&mut table);
            table.stale_cgroups.retain(|cg| match fs::remove_dir(cg) {
                Ok(()) => false,
                Err(e) => e.kind() != io::ErrorKind::NotFound,
            });
            table
                .containers
                .values()
                .filter(|e| e.rec.exit.is_none() && !e.forgotten)
                .map(|e| self.log_paths(&e.rec.pod_uid, &e.rec.name, e.rec.attempt).0)
                .collect()
        };
        let max = self.max_log_bytes.load(Ordering::Relaxed);
        for log in logs {
            if let Err(e) = rotate(&log, max) {
                if e.kind() != io::ErrorKind::NotFound {
                    tracing::warn!(log = %log.display(), error = %e, "cannot rotate a log");
                }
            }
        }
    }

    fn warn_limits(&self, reason: &str) {
        if !self.limits_warned.swap(true, Ordering::Relaxed) {
            tracing::warn!("container limits are not enforced: {reason}");
        }
    }

    /// The container's cgroup with its limits, when cgroups can be used.
    fn make_cgroup(&self, id: &str, spec: &ContainerSpec) -> Option<PathBuf> {
        let parent = match &self.cgroups {
            Ok(p) => p,
            Err(reason) => {
                if spec.memory_limit_bytes.is_some() || spec.cpu_limit_millis.is_some() {
                    self.warn_limits(reason);
                }
                return None;
            }
        };
        let dir = parent.join(id);
        if let Err(e) = fs::create_dir(&dir) {
            if e.kind() != io::ErrorKind::AlreadyExists {
                self.warn_limits(&format!("cannot create the cgroup {}: {e}", dir.display()));
                return None;
            }
        }
        let mut limits = Vec::new();
        if let Some(bytes) = spec.memory_limit_bytes.filter(|b| *b > 0) {
            limits.push(("memory.max", bytes.to_string()));
        }
        if let Some(millis) = spec.cpu_limit_millis.filter(|m| *m > 0) {
            let quota = millis
                .saturating_mul(CPU_PERIOD_US / 1000)
                .max(CPU_MIN_QUOTA_US);
            limits.push(("cpu.max", format!("{quota} {CPU_PERIOD_US}")));
        }
        for (file, value) in limits {
            if let Err(e) = fs::write(dir.join(file), &value) {
                self.warn_limits(&format!(
                    "cannot write {value:?} to {file} of {}: {e}",
                    dir.display()
                ));
            }
        }
        Some(dir)
    }

    fn start(&self, spec: &ContainerSpec) -> Result<Container, StartError> {
        for (what, v) in [("pod uid", &spec.pod_uid), ("container name", &spec.name)] {
            if v.is_empty() || v == "." || v == ".." || v.contains(['/', '\0']) {
                return Err(StartError::InvalidSpec(format!("invalid {what} {v:?}")));
            }
        }
        let (program, args, builtin) = self.resolve(spec)?;
        let id = format!("{}-{}-{}", spec.pod_uid, spec.name, spec.attempt);
        {
            let mut table = self.lock();
            self.refresh(&mut table);
            if table.starting.contains(&id)
                || table
                    .containers
                    .get(&id)
                    .is_some_and(|e| e.rec.exit.is_none())
            {
                return Err(StartError::Io(format!("container {id} is already running")));
            }
            // Reserved: the spawn runs without the lock, so starts can run
            // in parallel (a spawn of the keelson binary takes milliseconds).
            table.starting.insert(id.clone());
        }
        let r = self.start_reserved(spec, &id, program, args, builtin);
        self.lock().starting.remove(&id);
        r
    }

    /// The rest of `start`, with `id` reserved.
    fn start_reserved(
        &self,
        spec: &ContainerSpec,
        id: &str,
        program: OsString,
        args: Vec<OsString>,
        builtin: bool,
    ) -> Result<Container, StartError> {
        let id = id.to_string();
        let io_err = |what: &str, p: &Path, e: io::Error| {
            StartError::Io(format!("cannot {what} {}: {e}", p.display()))
        };
        let cdir = self.pod_dir(&spec.pod_uid).join(&spec.name);
        let cwd = working_dir(&cdir, &spec.working_dir)?;
        fs::create_dir_all(&cwd).map_err(|e| io_err("create", &cwd, e))?;
        self.link_config_volumes(spec, &cdir)?;
        let (log_path, _) = self.log_paths(&spec.pod_uid, &spec.name, spec.attempt);
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| io_err("open", &log_path, e))?;
        let log2 = log.try_clone().map_err(|e| io_err("open", &log_path, e))?;

        let cgroup = self.make_cgroup(&id, spec);
        let procs = cgroup
            .as_ref()
            .and_then(|d| CString::new(d.join("cgroup.procs").as_os_str().as_bytes()).ok());
        let mut cmd = Command::new(&program);
        cmd.args(&args)
            .env_clear()
            .env(
                "PATH",
                std::env::var_os("PATH").unwrap_or_else(|| DEFAULT_PATH.into()),
            )
            .envs(&spec.env)
            .current_dir(&cwd)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log2));
        match &procs {
            // SAFETY: between fork and exec only async-signal-safe calls
            // (setsid, open, write, close), on memory prepared before the fork.
            Some(procs) => unsafe {
                let procs = procs.clone();
                cmd.pre_exec(move || {
                    if libc::setsid() < 0 {
                        return Err(io::Error::last_os_error());
                    }
                    // Join the cgroup before exec; best effort (the parent
                    // writes the pid again after the spawn).
                    let fd = libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                    if fd >= 0 {
                        libc::write(fd, b"0".as_ptr().cast(), 1);
                        libc::close(fd);
                    }
                    Ok(())
                });
            },
            // No cgroup to join: a process group of its own is all it needs
            // (stop and kill signal the group), and without a pre_exec hook
            // the standard library spawns with posix_spawn (vfork), which
            // is much cheaper than a fork of the agent: starting 50 pods at
            // once took 0.8-1 s with fork.
            None => {
                cmd.process_group(0);
            }
        }
        let started_at = SystemTime::now();
        let child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                if let Some(cg) = cgroup {
                    remove_cgroup(cg, &mut self.lock().stale_cgroups);
                }
                let prog = program.to_string_lossy();
                return Err(match e.kind() {
                    io::ErrorKind::NotFound
                    | io::ErrorKind::PermissionDenied
                    | io::ErrorKind::InvalidInput
                        if !builtin =>
                    {
                        StartError::InvalidSpec(format!("cannot run {prog:?}: {e}"))
                    }
                    _ => StartError::Io(format!("cannot run {prog:?}: {e}")),
                });
            }
        };
        let pid = child.id();
        if let Some(cg) = &cgroup {
            if let Err(e) = fs::write(cg.join("cgroup.procs"), pid.to_string()) {
                // ESRCH: it has already exited.
                if e.raw_os_error() != Some(libc::ESRCH) {
                    self.warn_limits(&format!("cannot move pid {pid} into {}: {e}", cg.display()));
                }
            }
        }
        let rec = Record {
            id: id.clone(),
            pod_uid: spec.pod_uid.clone(),
            pod_namespace: spec.pod_namespace.clone(),
            pod_name: spec.pod_name.clone(),
            name: spec.name.clone(),
            attempt: spec.attempt,
            image: spec.image.clone(),
            pid,
            proc_start_time: proc_stat(pid).map_or(0, |(_, t)| t),
            started_at,
            cgroup,
            exit: None,
        };
        let saved = self.persist(&rec);
        let forgotten = saved.is_err();
        if forgotten {
            // A process without a record could be orphaned by an agent
            // restart: better not run it.
            signal_group(pid, libc::SIGKILL);
        }
        let container = to_container(&rec);
        self.lock().containers.insert(
            id,
            Entry {
                rec,
                child: Some(child),
                forgotten,
            },
        );
        match saved {
            Ok(()) => Ok(container),
            Err(e) => Err(StartError::Io(format!(
                "cannot save the record of container {}: {e}",
                container.id
            ))),
        }
    }

    /// The program and its arguments; whether it is a builtin image.
    fn resolve(&self, spec: &ContainerSpec) -> Result<(OsString, Vec<OsString>, bool), StartError> {
        if let Some(rest) = spec.image.strip_prefix("builtin/") {
            let name = rest.split(['@', ':']).next().unwrap_or_default();
            if !crate::builtin::NAMES.contains(&name) {
                return Err(StartError::ImageNotSupported(format!(
                    "unknown builtin image \"{}\": the builtin images are builtin/{}",
                    spec.image,
                    crate::builtin::NAMES.join(", builtin/")
                )));
            }
            let rest = spec.command.iter().chain(&spec.args).map(OsString::from);
            // The small `keelson-builtin` next to the keelson binary when
            // it is there (built with it), else `keelson builtin`.
            let small = self.builtin_exe.with_file_name(SMALL_BUILTIN_EXE);
            if small.is_file() {
                let args = std::iter::once(OsString::from(name)).chain(rest).collect();
                return Ok((small.into_os_string(), args, true));
            }
            let args = ["builtin", name]
                .into_iter()
                .map(OsString::from)
                .chain(rest)
                .collect();
            return Ok((self.builtin_exe.clone().into_os_string(), args, true));
        }
        let Some((program, rest)) = spec.command.split_first() else {
            return Err(StartError::ImageNotSupported(format!(
                "image \"{}\" cannot run here: the process runtime runs builtin/* images, or a container with a command",
                spec.image
            )));
        };
        if program.is_empty() {
            return Err(StartError::InvalidSpec("the command is empty".into()));
        }
        let args = rest.iter().chain(&spec.args).map(OsString::from).collect();
        Ok((program.into(), args, false))
    }

    fn signal(&self, id: &str, sig: i32) {
        let table = self.lock();
        let Some(e) = table.containers.get(id) else {
            return;
        };
        if e.rec.exit.is_some() {
            return;
        }
        // Our own child's pid is ours until reaped (under this lock); an
        // adopted one is checked to be the same process still.
        if e.child.is_some() || liveness(e.rec.pid, e.rec.proc_start_time) != Liveness::Gone {
            signal_group(e.rec.pid, sig);
        }
    }

    fn remove(&self, id: &str) {
        let mut table = self.lock();
        self.refresh(&mut table);
        if table
            .containers
            .get(id)
            .is_none_or(|e| e.rec.exit.is_none())
        {
            return;
        }
        if let Some(e) = table.containers.remove(id) {
            let path = self.record_path(&e.rec.pod_uid, &e.rec.name, e.rec.attempt);
            if let Err(err) = fs::remove_file(&path) {
                if err.kind() != io::ErrorKind::NotFound {
                    tracing::warn!(file = %path.display(), error = %err, "cannot remove a container record");
                }
            }
            if let Some(cg) = e.rec.cgroup {
                remove_cgroup(cg, &mut table.stale_cgroups);
            }
        }
    }

    fn remove_pod(&self, pod_uid: &str) {
        let mut table = self.lock();
        self.refresh(&mut table);
        let ids: Vec<String> = table
            .containers
            .iter()
            .filter(|(_, e)| e.rec.pod_uid == pod_uid)
            .map(|(id, _)| id.clone())
            .collect();
        let mut killed = false;
        for id in &ids {
            if let Some(e) = table.containers.get(id).filter(|e| e.rec.exit.is_none()) {
                if e.child.is_some() || liveness(e.rec.pid, e.rec.proc_start_time) != Liveness::Gone
                {
                    tracing::warn!(container = %id, "killing a container of a removed pod");
                    signal_group(e.rec.pid, libc::SIGKILL);
                    killed = true;
                }
            }
        }
        if killed {
            self.refresh(&mut table);
        }
        for id in &ids {
            let exited = match table.containers.get_mut(id) {
                Some(e) if e.rec.exit.is_none() => {
                    // Still dying: dropped once reaped.
                    e.forgotten = true;
                    false
                }
                Some(_) => true,
                None => false,
            };
            if exited {
                if let Some(cg) = table.containers.remove(id).and_then(|e| e.rec.cgroup) {
                    remove_cgroup(cg, &mut table.stale_cgroups);
                }
            }
        }
        let dir = self.pod_dir(pod_uid);
        if let Err(e) = fs::remove_dir_all(&dir) {
            if e.kind() != io::ErrorKind::NotFound {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot remove a pod's directory");
            }
        }
    }
}

/// `wd` taken relative to the container's directory (a leading `/`
/// included); `..` is refused.
fn working_dir(dir: &Path, wd: &str) -> Result<PathBuf, StartError> {
    let mut p = dir.to_path_buf();
    for c in Path::new(wd).components() {
        match c {
            Component::Normal(s) => p.push(s),
            Component::CurDir | Component::RootDir => {}
            Component::ParentDir | Component::Prefix(_) => {
                return Err(StartError::InvalidSpec(format!(
                    "workingDir {wd:?} must stay inside the container's directory"
                )))
            }
        }
    }
    Ok(p)
}

fn to_container(rec: &Record) -> Container {
    let state = match &rec.exit {
        None => State::Running {
            pid: rec.pid,
            started_at: rec.started_at,
        },
        Some(x) => State::Exited {
            exit_code: x.exit_code,
            signal: x.signal,
            reason: None,
            started_at: rec.started_at,
            finished_at: x.finished_at,
        },
    };
    Container {
        id: rec.id.clone(),
        pod_uid: rec.pod_uid.clone(),
        name: rec.name.clone(),
        attempt: rec.attempt,
        image: rec.image.clone(),
        image_id: String::new(),
        state,
    }
}

/// Copy the log to `.log.1` and truncate it, once it is over `max` bytes.
fn rotate(log: &Path, max: u64) -> io::Result<bool> {
    if fs::metadata(log)?.len() <= max {
        return Ok(false);
    }
    let mut rotated = log.as_os_str().to_owned();
    rotated.push(".1");
    fs::copy(log, &rotated)?;
    OpenOptions::new().write(true).open(log)?.set_len(0)?;
    Ok(true)
}

/// Set up `<root>/keelson` for the containers' cgroups, or say why not.
fn setup_cgroups(root: &Path) -> Result<PathBuf, String> {
    let not_enforced = "memory and cpu limits are not enforced";
    let controllers = fs::read_to_string(root.join("cgroup.controllers")).map_err(|_| {
        format!(
            "cgroup v2 is not mounted at {}: {not_enforced}",
            root.display()
        )
    })?;
    for c in ["memory", "cpu"] {
        if !controllers.split_whitespace().any(|x| x == c) {
            return Err(format!(
                "the {c} controller is not available in cgroup v2 at {}: {not_enforced}",
                root.display()
            ));
        }
    }
    let not_writable = |e: io::Error| {
        format!(
            "cgroup v2 is not writable at {} ({e}): {not_enforced}",
            root.display()
        )
    };
    enable_controllers(root).map_err(not_writable)?;
    let parent = root.join(CGROUP_PARENT);
    if let Err(e) = fs::create_dir(&parent) {
        if e.kind() != io::ErrorKind::AlreadyExists {
            return Err(not_writable(e));
        }
    }
    enable_controllers(&parent).map_err(not_writable)?;
    Ok(parent)
}

/// Make the memory and cpu controllers available to `dir`'s children.
fn enable_controllers(dir: &Path) -> io::Result<()> {
    let file = dir.join("cgroup.subtree_control");
    let current = match fs::read_to_string(&file) {
        Ok(s) => s,
        Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e),
    };
    let missing: Vec<String> = ["memory", "cpu"]
        .into_iter()
        .filter(|c| !current.split_whitespace().any(|x| x == *c))
        .map(|c| format!("+{c}"))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    fs::write(&file, missing.join(" "))
}

/// Remove a container's cgroup, killing what is left in it; retried by the
/// background thread while processes remain.
fn remove_cgroup(dir: PathBuf, stale: &mut Vec<PathBuf>) {
    let kill = dir.join("cgroup.kill");
    if kill.exists() {
        let _ = fs::write(&kill, "1");
    }
    match fs::remove_dir(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(_) => stale.push(dir),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Liveness {
    Alive,
    /// Exited, not yet reaped by its parent.
    Zombie,
    /// No such process, or another one with its pid.
    Gone,
}

/// Field 3 (state) and 22 (start time) of `/proc/<pid>/stat`.
pub(crate) fn proc_stat(pid: u32) -> Option<(char, u64)> {
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold anything.
    let rest = &s[s.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    // Fields 4 to 21, then 22.
    let start = fields.nth(18)?.parse().ok()?;
    Some((state, start))
}

pub(crate) fn liveness(pid: u32, start_time: u64) -> Liveness {
    if pid <= 1 || start_time == 0 {
        return Liveness::Gone;
    }
    match proc_stat(pid) {
        Some((_, t)) if t != start_time => Liveness::Gone,
        Some(('Z' | 'X', _)) => Liveness::Zombie,
        Some(_) => Liveness::Alive,
        None => Liveness::Gone,
    }
}

/// Reap `pid` if it is an exited child of this process.
fn reap(pid: u32) -> Option<ExitStatus> {
    let pid = i32::try_from(pid).ok().filter(|p| *p > 1)?;
    let mut status = 0;
    // SAFETY: plain syscall on a local.
    let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
    (r == pid).then(|| ExitStatus::from_raw(status))
}

/// Signal the process group `pid` leads (or the process alone if it left
/// its group).
fn signal_group(pid: u32, sig: i32) {
    let Some(pid) = i32::try_from(pid).ok().filter(|p| *p > 1) else {
        return;
    };
    // SAFETY: plain syscalls; pid > 1, so never "every process".
    unsafe {
        if libc::kill(-pid, sig) != 0 {
            libc::kill(pid, sig);
        }
    }
}

impl Runtime for ProcessRuntime {
    fn start(&self, spec: &ContainerSpec) -> Result<Container, StartError> {
        self.inner.start(spec)
    }

    fn write_volume(
        &self,
        pod_uid: &str,
        volume: &str,
        files: &[crate::volume_files::ProjectedFile],
    ) -> Result<(), String> {
        crate::volume_files::write(&self.inner.config_volume(pod_uid, volume), files)
            .map(drop)
            .map_err(|e| format!("write volume {volume:?}: {e}"))
    }

    fn stop(&self, id: &str) {
        self.inner.signal(id, libc::SIGTERM);
    }

    fn kill(&self, id: &str) {
        self.inner.signal(id, libc::SIGKILL);
    }

    fn list(&self) -> Vec<Container> {
        let mut table = self.inner.lock();
        self.inner.refresh(&mut table);
        table
            .containers
            .values()
            .filter(|e| !e.forgotten)
            .map(|e| to_container(&e.rec))
            .collect()
    }

    fn remove(&self, id: &str) {
        self.inner.remove(id);
    }

    fn remove_pod(&self, pod_uid: &str) {
        self.inner.remove_pod(pod_uid);
    }

    fn log_paths(&self, pod_uid: &str, name: &str, attempt: u32) -> (PathBuf, PathBuf) {
        self.inner.log_paths(pod_uid, name, attempt)
    }

    fn limits_supported(&self) -> Result<(), String> {
        self.inner
            .cgroups
            .as_ref()
            .map(|_| ())
            .map_err(Clone::clone)
    }

    fn exec_command(
        &self,
        c: &Container,
        command: &[String],
        _tty: bool,
    ) -> Result<ExecCommand, String> {
        // A host process like the container: its environment and working
        // directory, read from the container's main process.
        let State::Running { pid, .. } = c.state else {
            return Err(format!("container {} is not running", c.name));
        };
        let gone = |e: io::Error| format!("container {} is not running: {e}", c.name);
        let environ = fs::read(format!("/proc/{pid}/environ")).map_err(gone)?;
        let cwd = fs::read_link(format!("/proc/{pid}/cwd")).map_err(gone)?;
        let (program, args) = command
            .split_first()
            .ok_or_else(|| "no command to run".to_string())?;
        Ok(ExecCommand {
            program: program.into(),
            args: args.iter().map(OsString::from).collect(),
            env: parse_environ(&environ),
            cwd: Some(cwd),
        })
    }
}

/// `/proc/<pid>/environ`: NUL-separated `NAME=value` entries.
fn parse_environ(data: &[u8]) -> Vec<(OsString, OsString)> {
    data.split(|b| *b == 0)
        .filter_map(|e| {
            let eq = e.iter().position(|b| *b == b'=')?;
            (eq > 0).then(|| {
                (
                    OsStr::from_bytes(&e[..eq]).to_os_string(),
                    OsStr::from_bytes(&e[eq + 1..]).to_os_string(),
                )
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    const WAIT: Duration = Duration::from_secs(10);

    #[test]
    fn environ_entries() {
        let got = parse_environ(b"A=1\0B=x=y\0\0=bad\0NOEQ\0C=\0");
        let want: Vec<(OsString, OsString)> = [("A", "1"), ("B", "x=y"), ("C", "")]
            .iter()
            .map(|(k, v)| (OsString::from(k), OsString::from(v)))
            .collect();
        assert_eq!(got, want);
    }

    /// A runtime whose containers are all killed (and reaped) at the end of
    /// the test, whatever happens in it.
    struct Rt(ProcessRuntime);

    impl std::ops::Deref for Rt {
        type Target = ProcessRuntime;
        fn deref(&self) -> &ProcessRuntime {
            &self.0
        }
    }

    impl Drop for Rt {
        fn drop(&mut self) {
            for c in self.0.list() {
                self.0.kill(&c.id);
            }
            let deadline = Instant::now() + WAIT;
            while Instant::now() < deadline
                && self
                    .0
                    .list()
                    .iter()
                    .any(|c| matches!(c.state, State::Running { .. }))
            {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }

    /// Kills a process left behind by a dropped runtime, if still the same.
    struct PidGuard(u32, u64);

    impl Drop for PidGuard {
        fn drop(&mut self) {
            if liveness(self.0, self.1) == Liveness::Alive {
                signal_group(self.0, libc::SIGKILL);
                let deadline = Instant::now() + WAIT;
                while Instant::now() < deadline && reap(self.0).is_none() {
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        }
    }

    fn runtime(dir: &Path) -> Rt {
        Rt(ProcessRuntime::with_cgroup_root(
            dir.to_path_buf(),
            PathBuf::from("/bin/echo"),
            &dir.join("no-cgroup"),
        )
        .unwrap())
    }

    fn sh(uid: &str, name: &str, script: &str) -> ContainerSpec {
        ContainerSpec {
            pod_uid: uid.into(),
            pod_namespace: "default".into(),
            pod_name: "p".into(),
            name: name.into(),
            attempt: 0,
            image: "busybox".into(),
            command: vec!["/bin/sh".into(), "-c".into()],
            args: vec![script.into()],
            env: BTreeMap::new(),
            working_dir: String::new(),
            memory_limit_bytes: None,
            cpu_limit_millis: None,
            cpu_request_millis: None,
            pod_ip: String::new(),
            hostname: String::new(),
            image_pull_policy: String::new(),
            mounts: Vec::new(),
            dns_policy: String::new(),
            subdomain: String::new(),
        }
    }

    fn state(rt: &ProcessRuntime, id: &str) -> Option<State> {
        rt.list().into_iter().find(|c| c.id == id).map(|c| c.state)
    }

    fn wait_exited(rt: &ProcessRuntime, id: &str) -> State {
        let deadline = Instant::now() + WAIT;
        loop {
            let s = state(rt, id);
            if let Some(s @ State::Exited { .. }) = s {
                return s;
            }
            assert!(Instant::now() < deadline, "{id} did not exit: {s:?}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn exit_of(s: &State) -> (Option<i32>, Option<i32>) {
        match s {
            State::Exited {
                exit_code, signal, ..
            } => (*exit_code, *signal),
            State::Running { .. } => panic!("running"),
        }
    }

    fn log(rt: &ProcessRuntime, uid: &str, name: &str, attempt: u32) -> String {
        fs::read_to_string(rt.log_paths(uid, name, attempt).0).unwrap_or_default()
    }

    /// Wait until the log holds `what`.
    fn wait_log(rt: &ProcessRuntime, uid: &str, name: &str, what: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let l = log(rt, uid, name, 0);
            if l.contains(what) {
                return l;
            }
            assert!(Instant::now() < deadline, "log has no {what:?}: {l:?}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn start_list_and_exit_code() {
        let dir = tempfile::tempdir().unwrap();
        let rt = runtime(dir.path());
        let c = rt
            .start(&sh("u1", "main", "echo hello; echo oops >&2"))
            .unwrap();
        assert_eq!(c.id, "u1-main-0");
        assert_eq!(
            (c.pod_uid.as_str(), c.name.as_str(), c.attempt),
            ("u1", "main", 0)
        );
        assert_eq!(c.image, "busybox");
        let State::Running { pid, .. } = c.state else {
            panic!("{:?}", c.state)
        };
        assert!(pid > 1);
        let s = wait_exited(&rt, &c.id);
        assert_eq!(exit_of(&s), (Some(0), None));
        let State::Exited {
            started_at,
            finished_at,
            ..
        } = s
        else {
            unreachable!()
        };
        assert!(finished_at >= started_at);
        assert_eq!(log(&rt, "u1", "main", 0), "hello\noops\n");
        // The record holds the exit.
        let rec: Record =
            serde_json::from_slice(&fs::read(dir.path().join("pods/u1/main-0.json")).unwrap())
                .unwrap();
        assert_eq!(rec.pid, pid);
        assert!(rec.proc_start_time > 0);
        assert_eq!(rec.exit.unwrap().exit_code, Some(0));
        assert_eq!(
            rt.log_paths("u1", "main", 0),
            (
                dir.path().join("pods/u1/main-0.log"),
                dir.path().join("pods/u1/main-0.log.1")
            )
        );
        // Stop, kill: no-ops once exited.
        rt.stop(&c.id);
        rt.kill(&c.id);
        assert_eq!(state(&rt, &c.id), Some(s));
        // remove forgets it; the log stays.
        rt.remove(&c.id);
        assert_eq!(state(&rt, &c.id), None);
        assert!(!dir.path().join("pods/u1/main-0.json").exists());
        assert!(dir.path().join("pods/u1/main-0.log").exists());
    }

    #[test]
    fn non_zero_exit_and_signal() {
        let dir = tempfile::tempdir().unwrap();
        let rt = runtime(dir.path());
        let a = rt.start(&sh("u2", "a", "exit 3")).unwrap();
        let b = rt.start(&sh("u2", "b", "kill -USR1 $$; sleep 5")).unwrap();
        assert_eq!(exit_of(&wait_exited(&rt, &a.id)), (Some(3), None));
        assert_eq!(
            exit_of(&wait_exited(&rt, &b.id)),
            (None, Some(libc::SIGUSR1))
        );
    }

    #[test]
    fn stop_terminates_and_kill_kills() {
        let dir = tempfile::tempdir().unwrap();
        let rt = runtime(dir.path());
        let a = rt.start(&sh("u3", "a", "sleep 30")).unwrap();
        // Ignores SIGTERM (and so does its sleep).
        let b = rt
            .start(&sh("u3", "b", "trap '' TERM; echo ready; sleep 30"))
            .unwrap();
        wait_log(&rt, "u3", "b", "ready");
        rt.stop(&a.id);
        rt.stop(&a.id);
        rt.stop(&b.id);
        // The group got it: sh's sleep too, so sh ends at once.
        let (code, sig) = exit_of(&wait_exited(&rt, &a.id));
        assert!(
            sig == Some(libc::SIGTERM) || code == Some(128 + libc::SIGTERM),
            "{code:?} {sig:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
        assert!(matches!(state(&rt, &b.id), Some(State::Running { .. })));
        rt.kill(&b.id);
        rt.kill(&b.id);
        assert_eq!(
            exit_of(&wait_exited(&rt, &b.id)),
            (None, Some(libc::SIGKILL))
        );
    }

    #[test]
    fn env_and_working_dir() {
        let dir = tempfile::tempdir().unwrap();
        let rt = runtime(dir.path());
        let mut spec = sh("u4", "c", "echo FOO=$FOO; pwd; env > env.txt");
        spec.env.insert("FOO".into(), "bar baz".into());
        spec.working_dir = "/work/sub".into();
        let c = rt.start(&spec).unwrap();
        assert_eq!(exit_of(&wait_exited(&rt, &c.id)), (Some(0), None));
        let cwd = rt.container_dir("u4", "c").join("work/sub");
        assert_eq!(cwd, dir.path().join("pods/u4/c/work/sub"));
        assert_eq!(
            log(&rt, "u4", "c", 0),
            format!("FOO=bar baz\n{}\n", cwd.canonicalize().unwrap().display())
        );
        let env = fs::read_to_string(cwd.join("env.txt")).unwrap();
        let names: Vec<&str> = env
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, _)| k)
            .collect();
        assert!(names.contains(&"PATH") && names.contains(&"FOO"), "{env}");
        // Nothing else of the agent's (the shell adds PWD and the like).
        for n in names {
            assert!(
                ["PATH", "FOO", "PWD", "SHLVL", "_", "OLDPWD"].contains(&n),
                "unexpected {n} in {env}"
            );
        }
        let mut bad = sh("u4", "d", "true");
        bad.working_dir = "../escape".into();
        assert!(matches!(rt.start(&bad), Err(StartError::InvalidSpec(_))));
    }

    #[test]
    fn log_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let rt = Rt(ProcessRuntime::with_cgroup_root(
            dir.path().to_path_buf(),
            "/bin/echo".into(),
            &dir.path().join("no-cgroup"),
        )
        .unwrap()
        .with_max_log_bytes(100));
        let line = "x".repeat(49);
        let c = rt
            .start(&sh(
                "u5",
                "c",
                &format!("for i in 1 2 3 4; do echo {line}; done; sleep 30"),
            ))
            .unwrap();
        let (current, rotated) = rt.log_paths("u5", "c", 0);
        let deadline = Instant::now() + WAIT;
        while fs::read_to_string(&rotated).unwrap_or_default().len() != 200 {
            assert!(Instant::now() < deadline, "not rotated");
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(fs::metadata(&current).unwrap().len(), 0);
        rt.kill(&c.id);
        wait_exited(&rt, &c.id);
    }

    #[test]
    fn images() {
        let dir = tempfile::tempdir().unwrap();
        let rt = runtime(dir.path());
        let mut nginx = sh("u6", "web", "");
        nginx.image = "nginx:1.27".into();
        nginx.command.clear();
        nginx.args.clear();
        assert_eq!(
            rt.start(&nginx),
            Err(StartError::ImageNotSupported(
                "image \"nginx:1.27\" cannot run here: the process runtime runs builtin/* images, or a container with a command".into()
            ))
        );
        let mut unknown = nginx.clone();
        unknown.image = "builtin/nope:1".into();
        assert!(matches!(
            rt.start(&unknown),
            Err(StartError::ImageNotSupported(m)) if m.contains("http-echo")
        ));
        let mut missing = sh("u6", "m", "");
        missing.command = vec!["/nonexistent/program".into()];
        missing.args.clear();
        assert!(matches!(
            rt.start(&missing),
            Err(StartError::InvalidSpec(m)) if m.contains("No such file")
        ));
        assert!(rt.list().is_empty());
        // A builtin runs `<builtin exe> builtin <name> <command> <args>`
        // (the exe is /bin/echo here).
        let mut b = nginx.clone();
        b.image = "builtin/sleep:latest".into();
        b.command = vec!["5".into()];
        b.args = vec!["--x".into()];
        let c = rt.start(&b).unwrap();
        assert_eq!(exit_of(&wait_exited(&rt, &c.id)), (Some(0), None));
        assert_eq!(log(&rt, "u6", "web", 0), "builtin sleep 5 --x\n");

        // With a keelson-builtin beside the exe, that small binary runs it.
        use std::os::unix::fs::PermissionsExt;
        let bin = dir.path().join("bin");
        fs::create_dir_all(&bin).unwrap();
        let small = bin.join(SMALL_BUILTIN_EXE);
        fs::write(&small, "#!/bin/sh\necho small \"$@\"\n").unwrap();
        fs::set_permissions(&small, fs::Permissions::from_mode(0o755)).unwrap();
        let rt2 = ProcessRuntime::with_cgroup_root(
            dir.path().join("rt2"),
            bin.join("keelson"),
            &dir.path().join("no-cgroup"),
        )
        .unwrap();
        let mut b2 = b.clone();
        b2.pod_uid = "u8".into();
        let c = rt2.start(&b2).unwrap();
        assert_eq!(exit_of(&wait_exited(&rt2, &c.id)), (Some(0), None));
        assert_eq!(log(&rt2, "u8", "web", 0), "small sleep 5 --x\n");
    }

    #[test]
    fn adoption_after_restart() {
        let dir = tempfile::tempdir().unwrap();
        let first = ProcessRuntime::with_cgroup_root(
            dir.path().to_path_buf(),
            "/bin/echo".into(),
            &dir.path().join("no-cgroup"),
        )
        .unwrap();
        let c = first.start(&sh("u7", "c", "sleep 30")).unwrap();
        let a = first.start(&sh("u7", "a", "exit 4")).unwrap();
        wait_exited(&first, &a.id);
        let State::Running { pid, started_at } = c.state else {
            panic!("{:?}", c.state)
        };
        let _guard = PidGuard(pid, proc_stat(pid).unwrap().1);
        // Gone without stopping anything (as when the agent crashes).
        drop(first);
        let rt = runtime(dir.path());
        assert_eq!(state(&rt, &c.id), Some(State::Running { pid, started_at }));
        assert_eq!(exit_of(&state(&rt, &a.id).unwrap()), (Some(4), None));
        rt.kill(&c.id);
        let (code, _) = exit_of(&wait_exited(&rt, &c.id));
        assert_eq!(code, None);
        // A third runtime sees it exited.
        let again = runtime(dir.path());
        assert_eq!(exit_of(&state(&again, &c.id).unwrap()).0, None);
        drop(again);
        rt.remove_pod("u7");
        assert!(rt.list().is_empty());
        assert!(!dir.path().join("pods/u7").exists());
    }

    #[test]
    fn adopted_process_gone_is_exited() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("pods/u8")).unwrap();
        // A record of a process that is not there any more (pid 1's start
        // time never matches ours).
        let rec = Record {
            id: "u8-c-0".into(),
            pod_uid: "u8".into(),
            pod_namespace: "default".into(),
            pod_name: "p".into(),
            name: "c".into(),
            attempt: 0,
            image: "busybox".into(),
            pid: std::process::id(),
            proc_start_time: 1,
            started_at: SystemTime::UNIX_EPOCH + Duration::from_nanos(1_700_000_000_123_456_789),
            cgroup: None,
            exit: None,
        };
        fs::write(
            dir.path().join("pods/u8/c-0.json"),
            serde_json::to_vec(&rec).unwrap(),
        )
        .unwrap();
        fs::write(dir.path().join("pods/u8/junk.json"), "{").unwrap();
        let rt = runtime(dir.path());
        let list = rt.list();
        assert_eq!(list.len(), 1);
        let State::Exited {
            exit_code,
            signal,
            started_at,
            ..
        } = list[0].state
        else {
            panic!("{:?}", list[0].state)
        };
        assert_eq!((exit_code, signal), (None, None));
        assert_eq!(started_at, rec.started_at);
        // Stop on it signals nothing (it is not that process).
        rt.stop("u8-c-0");
    }

    #[test]
    fn remove_pod_kills_and_deletes() {
        let dir = tempfile::tempdir().unwrap();
        let rt = runtime(dir.path());
        let a = rt.start(&sh("u9", "a", "sleep 30")).unwrap();
        let b = rt.start(&sh("u9", "b", "true")).unwrap();
        let other = rt.start(&sh("u10", "a", "true")).unwrap();
        wait_exited(&rt, &b.id);
        wait_exited(&rt, &other.id);
        let State::Running { pid, .. } = a.state else {
            panic!("{:?}", a.state)
        };
        let start = proc_stat(pid).unwrap().1;
        rt.remove_pod("u9");
        assert!(!dir.path().join("pods/u9").exists());
        assert!(dir.path().join("pods/u10").exists());
        let ids: Vec<String> = rt.list().into_iter().map(|c| c.id).collect();
        assert_eq!(ids, vec![other.id.clone()]);
        // The killed process is reaped (by list or in the background) and
        // then forgotten.
        let deadline = Instant::now() + WAIT;
        while liveness(pid, start) != Liveness::Gone {
            assert!(Instant::now() < deadline, "not reaped");
            rt.list();
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(rt.inner.lock().containers.len(), 1);
    }

    #[test]
    fn cgroup_limits() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("cgroup");
        fs::create_dir_all(&root).unwrap();
        let unsupported = runtime(dir.path());
        assert!(unsupported
            .limits_supported()
            .unwrap_err()
            .contains("not enforced"));
        drop(unsupported);
        fs::write(root.join("cgroup.controllers"), "cpuset cpu io pids\n").unwrap();
        let err = setup_cgroups(&root).unwrap_err();
        assert!(err.contains("memory controller"), "{err}");
        // A fake cgroup v2 tree of plain files.
        fs::write(
            root.join("cgroup.controllers"),
            "cpuset cpu io memory pids\n",
        )
        .unwrap();
        fs::write(root.join("cgroup.subtree_control"), "cpu\n").unwrap();
        let rt = Rt(ProcessRuntime::with_cgroup_root(
            dir.path().join("data"),
            "/bin/echo".into(),
            &root,
        )
        .unwrap());
        assert_eq!(rt.limits_supported(), Ok(()));
        assert_eq!(
            fs::read_to_string(root.join("cgroup.subtree_control")).unwrap(),
            "+memory"
        );
        assert_eq!(
            fs::read_to_string(root.join("keelson/cgroup.subtree_control")).unwrap(),
            "+memory +cpu"
        );
        let mut spec = sh("u11", "c", "true");
        spec.memory_limit_bytes = Some(64 << 20);
        spec.cpu_limit_millis = Some(250);
        let c = rt.start(&spec).unwrap();
        let State::Running { pid, .. } = c.state else {
            panic!()
        };
        wait_exited(&rt, &c.id);
        let cg = root.join("keelson/u11-c-0");
        assert_eq!(
            fs::read_to_string(cg.join("memory.max")).unwrap(),
            "67108864"
        );
        assert_eq!(
            fs::read_to_string(cg.join("cpu.max")).unwrap(),
            "25000 100000"
        );
        assert_eq!(
            fs::read_to_string(cg.join("cgroup.procs")).unwrap(),
            pid.to_string()
        );
    }

    #[test]
    fn proc_stat_of_self() {
        let (state, start) = proc_stat(std::process::id()).unwrap();
        assert!(state == 'R' || state == 'S', "{state}");
        assert!(start > 0);
        assert_eq!(liveness(std::process::id(), start), Liveness::Alive);
        assert_eq!(liveness(std::process::id(), start + 1), Liveness::Gone);
        assert_eq!(liveness(1, start), Liveness::Gone);
    }
}
