//! The runc runtime: real OCI images run isolated by runc.
//!
//! - **Images** come from the node's [`Store`]: pulled per
//!   `imagePullPolicy` (Always, IfNotPresent, Never) or loaded with
//!   `keelson image load`. The failures are the pod's, with Kubernetes'
//!   reasons: a reference that does not parse is `InvalidImageName`, a
//!   missing image under `Never` is `ErrImageNeverPull`, a failed pull is
//!   `ErrImagePull`.
//! - **Sandbox**: each pod has a pause process (`keelson-builtin pause`)
//!   started in new network, IPC and UTS namespaces (hostname = the pod's),
//!   wired to the node's bridge by [`Network::attach`]. Its record is
//!   `pods/<uid>/sandbox.json`; `hosts`, `hostname` and `resolv.conf` of
//!   the pod are files beside it, bind-mounted into each container.
//! - **Containers**: one runc container per start, id
//!   `<pod uid>-<name>-<attempt>`, joining the pause's network, IPC and UTS
//!   namespaces with mount and PID namespaces of its own. Its bundle is
//!   `pods/<uid>/<name>-<attempt>/` (`config.json` written with oci-spec,
//!   `rootfs` an overlay of the image's unpacked layers under a writable
//!   `upper`). The process is the image's Entrypoint/Cmd combined with the
//!   container's command/args as Kubernetes does, the image's Env under the
//!   container's, the image's WorkingDir and User. Limits are cgroups set by
//!   runc (memory limit, CPU quota from the limit, shares from the
//!   request), under `/keelson/<node>/pod<uid>/`.
//! - **Processes**: `runc run` runs in the foreground in a session of its
//!   own, stdout and stderr to the container's log file
//!   (`pods/<uid>/<name>-<attempt>.log`, the process runtime's layout, so
//!   logs are served alike); its exit status is the container's (128 +
//!   signal when killed). Stop and kill are `runc kill` TERM and KILL.
//! - **Adoption**: the `runc run` processes and pauses outlive the agent;
//!   a new runtime on the same data dir reads the records and lists those
//!   still alive (same pid, same start time) as running. A container that
//!   ended while no agent ran has an unknown exit status.
//! - **Cleanup**: removing a container deletes it in runc, unmounts its
//!   rootfs and removes its bundle; removing a pod also stops the pause
//!   (its namespace, and with it the veth, goes), removes the pod's cgroup
//!   directories (runc leaves parents behind) and the pod's directory.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::{CString, OsString};
use std::fs::{self, OpenOptions};
use std::io;
use std::net::Ipv4Addr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use oci_spec::runtime::{
    LinuxCapabilities, LinuxCpuBuilder, LinuxMemoryBuilder, LinuxNamespace, LinuxNamespaceType,
    LinuxPidsBuilder, LinuxResourcesBuilder, Mount, MountBuilder, PosixRlimit, Spec, User,
};
use serde::{Deserialize, Serialize};

use crate::image::pull::PullOptions;
use crate::image::{Image, ImageRef, Store};
use crate::network::Network;
use crate::process::{liveness, Liveness, DEFAULT_PATH};
use crate::runtime::{Container, ContainerSpec, ExecCommand, Runtime, StartError, State};

const CPU_PERIOD_US: u64 = 100_000;
/// cgroup v1's minimum cpu.shares, and the kernel's minimum quota.
const MIN_SHARES: u64 = 2;
const MIN_QUOTA_US: i64 = 1_000;
/// Processes a container may have (a fork bomb stops here).
const PIDS_LIMIT: i64 = 4096;
const SANDBOX: &str = "sandbox.json";

/// How the runc runtime is set up.
#[derive(Clone, Debug)]
pub struct RuncOptions {
    pub data_dir: PathBuf,
    pub node_name: String,
    /// The node's pod network (None: a runtime that only tears down, no
    /// new sandbox can start).
    pub network: Option<Network>,
    pub pull: PullOptions,
    /// The program and arguments of the pause process.
    pub pause: Vec<String>,
    /// The runc binary.
    pub runc: PathBuf,
}

pub struct RuncRuntime {
    inner: Arc<Inner>,
}

struct Inner {
    o: RuncOptions,
    store: Store,
    /// runc's state directory (`--root`), one per agent data dir.
    state_root: PathBuf,
    cgroup_parent: String,
    handle: tokio::runtime::Handle,
    table: Mutex<Table>,
    /// One lock per pod: its containers may start in parallel lanes, and
    /// only the first may make the sandbox the others join.
    sandbox_locks: Mutex<HashMap<String, Arc<Mutex<()>>>>,
}

#[derive(Default)]
struct Table {
    containers: BTreeMap<String, Entry>,
    sandboxes: HashMap<String, Sandbox>,
}

struct Entry {
    rec: Record,
    child: Option<Child>,
}

struct Sandbox {
    rec: SandboxRecord,
    child: Option<Child>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Record {
    id: String,
    pod_uid: String,
    name: String,
    attempt: u32,
    image: String,
    image_id: String,
    /// The foreground `runc run` process.
    pid: u32,
    proc_start_time: u64,
    #[serde(with = "keelson_model::time::serde_nanos")]
    started_at: SystemTime,
    exit: Option<ExitRecord>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct ExitRecord {
    exit_code: Option<i32>,
    signal: Option<i32>,
    /// `OOMKilled` when the memory cgroup counted an OOM kill.
    #[serde(default)]
    reason: Option<String>,
    #[serde(with = "keelson_model::time::serde_nanos")]
    finished_at: SystemTime,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct SandboxRecord {
    pod_uid: String,
    pid: u32,
    proc_start_time: u64,
    ip: Ipv4Addr,
}

fn io_err(what: &str, e: impl std::fmt::Display) -> StartError {
    StartError::Io(format!("{what}: {e}"))
}

/// Manifest digests of the images the containers recorded under
/// `data_dir` run from (running, or exited and not yet removed): what
/// `keelson image rm` must keep.
pub fn images_in_use(data_dir: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let Ok(pods) = fs::read_dir(data_dir.join("pods")) else {
        return out;
    };
    for pod in pods.flatten() {
        let Ok(files) = fs::read_dir(pod.path()) else {
            continue;
        };
        for f in files.flatten() {
            let p = f.path();
            if p.extension().and_then(|e| e.to_str()) != Some("json") {
                continue;
            }
            let Ok(bytes) = fs::read(&p) else { continue };
            if let Ok(rec) = serde_json::from_slice::<Record>(&bytes) {
                if let Some((_, d)) = rec.image_id.rsplit_once('@') {
                    out.insert(d.to_string());
                }
            }
        }
    }
    out
}

/// Whether this machine can use the runc runtime: root, and a runc binary
/// that answers `--version`. The binary, or why not.
pub fn available() -> Result<PathBuf, String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err("the runc runtime needs root".into());
    }
    let runc = std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join("runc"))
                .find(|p| p.is_file())
        })
        .unwrap_or_else(|| PathBuf::from("runc"));
    match Command::new(&runc)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Ok(s) if s.success() => Ok(runc),
        Ok(s) => Err(format!("runc --version failed ({s})")),
        Err(e) => Err(format!("runc is not installed: {e}")),
    }
}

impl RuncRuntime {
    /// A runtime over `o.data_dir` (created as needed), adopting what an
    /// earlier runtime there left running. Call inside a tokio runtime:
    /// pulls run on it.
    pub fn new(mut o: RuncOptions) -> io::Result<RuncRuntime> {
        fs::create_dir_all(o.data_dir.join("pods"))?;
        // Absolute: runc reads the rootfs path relative to the bundle.
        o.data_dir = fs::canonicalize(&o.data_dir)?;
        let store = Store::open(&o.data_dir.join("images"))?;
        let canonical = o.data_dir.clone();
        let hash = crate::network::short_hash(&canonical.to_string_lossy());
        let state_root = PathBuf::from("/run/keelson-runc").join(&hash);
        fs::create_dir_all(&state_root)?;
        let handle = tokio::runtime::Handle::try_current().map_err(io::Error::other)?;
        let inner = Arc::new(Inner {
            cgroup_parent: format!("/keelson/{hash}"),
            o,
            store,
            state_root,
            handle,
            table: Mutex::new(Table::default()),
            sandbox_locks: Mutex::new(HashMap::new()),
        });
        inner.adopt();
        Ok(RuncRuntime { inner })
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// One round of image garbage collection (see
    /// [`Store::collect_garbage`]); the images that no container record
    /// of this node names are the unused ones. The names removed.
    pub fn collect_images(&self, high: u8, low: u8) -> Result<Vec<String>, String> {
        let in_use = images_in_use(&self.inner.o.data_dir);
        self.inner.store.collect_garbage(&in_use, high, low)
    }

    /// Remove every pod (their containers must have been stopped; those
    /// still running after 5 s are left to die with their cgroups gone),
    /// the node's cgroup directory and runc's state directory: the agent
    /// leaves nothing behind.
    pub fn teardown(&self) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while std::time::Instant::now() < deadline
            && self
                .list()
                .iter()
                .any(|c| matches!(c.state, State::Running { .. }))
        {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let pods: BTreeSet<String> = {
            let t = self.inner.lock();
            let mut pods: BTreeSet<String> = t.sandboxes.keys().cloned().collect();
            pods.extend(t.containers.values().map(|e| e.rec.pod_uid.clone()));
            pods
        };
        for uid in pods {
            self.inner.remove_pod(&uid);
        }
        // Processes of pods no record names (a pause whose agent was killed
        // before it recorded it) go with the node.
        kill_cgroup_members(&self.inner.cgroup_parent);
        remove_cgroup_dirs(&self.inner.cgroup_parent);
        // `/keelson` itself when no other agent's node is left in it.
        if let Ok(hierarchies) = fs::read_dir("/sys/fs/cgroup") {
            for h in hierarchies.flatten() {
                let _ = fs::remove_dir(h.path().join("keelson"));
            }
        }
        let _ = fs::remove_dir(&self.inner.state_root);
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn pod_dir(&self, uid: &str) -> PathBuf {
        self.o.data_dir.join("pods").join(uid)
    }

    fn bundle(&self, uid: &str, name: &str, attempt: u32) -> PathBuf {
        self.pod_dir(uid).join(format!("{name}-{attempt}"))
    }

    fn record_path(&self, uid: &str, name: &str, attempt: u32) -> PathBuf {
        self.pod_dir(uid).join(format!("{name}-{attempt}.json"))
    }

    fn runc(&self) -> Command {
        let mut c = Command::new(&self.o.runc);
        c.arg("--root").arg(&self.state_root);
        c.stdin(Stdio::null());
        c
    }

    fn persist(&self, rec: &Record) {
        let path = self.record_path(&rec.pod_uid, &rec.name, rec.attempt);
        if let Err(e) = write_json(&path, rec) {
            tracing::warn!(container = %rec.id, error = %e, "cannot record the container");
        }
    }

    /// Read the records of an earlier runtime on this data dir.
    fn adopt(&self) {
        let Ok(pods) = fs::read_dir(self.o.data_dir.join("pods")) else {
            return;
        };
        let mut t = self.lock();
        for pod in pods.flatten() {
            let Ok(files) = fs::read_dir(pod.path()) else {
                continue;
            };
            for f in files.flatten() {
                let path = f.path();
                if path.extension().and_then(|e| e.to_str()) != Some("json") {
                    continue;
                }
                let Ok(bytes) = fs::read(&path) else { continue };
                if path.file_name().and_then(|n| n.to_str()) == Some(SANDBOX) {
                    if let Ok(rec) = serde_json::from_slice::<SandboxRecord>(&bytes) {
                        t.sandboxes
                            .insert(rec.pod_uid.clone(), Sandbox { rec, child: None });
                    }
                } else if let Ok(mut rec) = serde_json::from_slice::<Record>(&bytes) {
                    if rec.exit.is_none()
                        && liveness(rec.pid, rec.proc_start_time) == Liveness::Gone
                    {
                        rec.exit = Some(ExitRecord {
                            exit_code: None,
                            signal: None,
                            reason: None,
                            finished_at: SystemTime::now(),
                        });
                        self.persist(&rec);
                    }
                    t.containers
                        .insert(rec.id.clone(), Entry { rec, child: None });
                }
            }
        }
        tracing::info!(
            containers = t.containers.len(),
            sandboxes = t.sandboxes.len(),
            "runc runtime: adopted what an earlier agent left"
        );
    }

    /// The image to run for `spec`, pulled as its policy says.
    fn image(&self, spec: &ContainerSpec) -> Result<Image, StartError> {
        let r = ImageRef::parse(&spec.image).map_err(StartError::InvalidImageName)?;
        let name = r.name();
        let policy = if spec.image_pull_policy.is_empty() {
            r.default_pull_policy()
        } else {
            spec.image_pull_policy.as_str()
        };
        let present = self
            .store
            .resolve(&name)
            .map_err(|e| io_err("read the image store", e))?;
        match (policy, present) {
            ("Never", Some(img)) | ("IfNotPresent", Some(img)) => {
                self.store.touch(&img.manifest_digest);
                Ok(img)
            }
            ("Never", None) => Err(StartError::ImageNeverPull(format!(
                "container image {:?} is not present with pull policy of Never",
                spec.image
            ))),
            _ => {
                let began = std::time::Instant::now();
                let img = self
                    .handle
                    .block_on(crate::image::pull::pull(&self.store, &r, &self.o.pull))
                    .map_err(StartError::ImagePull)?;
                tracing::info!(image = %name, took_ms = began.elapsed().as_millis() as u64, "pulled");
                Ok(img)
            }
        }
    }

    /// The pod's sandbox (started when it has none, or its pause died).
    fn sandbox(&self, spec: &ContainerSpec) -> Result<(u32, Ipv4Addr), StartError> {
        let uid = &spec.pod_uid;
        let lock = self
            .sandbox_locks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(uid.clone())
            .or_default()
            .clone();
        let _one_at_a_time = lock.lock().unwrap_or_else(|e| e.into_inner());
        {
            let mut t = self.lock();
            if let Some(s) = t.sandboxes.get_mut(uid) {
                if let Some(c) = s.child.as_mut() {
                    let _ = c.try_wait();
                }
                if liveness(s.rec.pid, s.rec.proc_start_time) == Liveness::Alive {
                    return Ok((s.rec.pid, s.rec.ip));
                }
                t.sandboxes.remove(uid);
            }
        }
        let network = self
            .o
            .network
            .as_ref()
            .ok_or_else(|| io_err("start a sandbox", "the runtime has no pod network"))?;
        let ip: Ipv4Addr = spec
            .pod_ip
            .parse()
            .map_err(|_| StartError::InvalidSpec(format!("no pod address ({:?})", spec.pod_ip)))?;
        if !network.pod_cidr.contains(ip) {
            return Err(StartError::InvalidSpec(format!(
                "pod address {ip} is outside the node's pod CIDR {}",
                network.pod_cidr
            )));
        }
        let dir = self.pod_dir(uid);
        fs::create_dir_all(&dir).map_err(|e| io_err("create the pod directory", e))?;
        let hostname = if spec.hostname.is_empty() {
            spec.pod_name.clone()
        } else {
            spec.hostname.clone()
        };
        // With a subdomain, the pod's own line leads with its DNS name, as
        // the kubelet's hosts file does.
        let names = if spec.subdomain.is_empty() {
            hostname.clone()
        } else {
            format!(
                "{hostname}.{}.{}.svc.{}\t{hostname}",
                spec.subdomain,
                spec.pod_namespace,
                crate::dns::CLUSTER_DOMAIN
            )
        };
        fs::write(dir.join("hostname"), format!("{hostname}\n"))
            .and_then(|_| {
                fs::write(
                    dir.join("hosts"),
                    format!(
                        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n{ip}\t{names}\n"
                    ),
                )
            })
            .and_then(|_| {
                // ClusterFirst (the default): the node's cluster DNS on the
                // bridge gateway; Default: the node's own; None: nothing.
                let text = match spec.dns_policy.as_str() {
                    "Default" => fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
                    "None" => String::new(),
                    _ => match network.pod_cidr.gateway() {
                        Some(gw) => crate::dns::resolv_conf(gw, &spec.pod_namespace),
                        None => String::new(),
                    },
                };
                fs::write(dir.join("resolv.conf"), text)
            })
            .map_err(|e| io_err("write the pod's hosts files", e))?;
        let (program, args) = self
            .o
            .pause
            .split_first()
            .ok_or_else(|| io_err("start the pause", "no pause program"))?;
        let host = CString::new(hostname.as_bytes())
            .map_err(|_| StartError::InvalidSpec("a hostname with a NUL byte".into()))?;
        // The pause joins a cgroup of the pod's before it runs, so a pause
        // whose agent died before recording it is still found (and killed)
        // when the pod or the node is removed.
        let procs = tracking_hierarchy().map(|h| {
            h.join(self.cgroup_parent.trim_start_matches('/'))
                .join(format!("pod{uid}"))
                .join("pause")
        });
        let procs_file = match &procs {
            Some(dir) => {
                fs::create_dir_all(dir).map_err(|e| io_err("create the pause's cgroup", e))?;
                Some(
                    OpenOptions::new()
                        .write(true)
                        .open(dir.join("cgroup.procs"))
                        .map_err(|e| io_err("open the pause's cgroup", e))?,
                )
            }
            None => None,
        };
        let procs_fd = procs_file
            .as_ref()
            .map(std::os::unix::io::AsRawFd::as_raw_fd);
        let mut cmd = Command::new(program);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: between fork and exec only async-signal-safe calls
        // (write, unshare, sethostname, setsid) on memory and descriptors
        // prepared before the fork.
        unsafe {
            cmd.pre_exec(move || {
                if let Some(fd) = procs_fd {
                    // "0": the writing process itself.
                    if libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                        return Err(io::Error::last_os_error());
                    }
                }
                if libc::unshare(libc::CLONE_NEWNET | libc::CLONE_NEWIPC | libc::CLONE_NEWUTS) != 0
                {
                    return Err(io::Error::last_os_error());
                }
                if libc::sethostname(host.as_ptr(), host.as_bytes().len()) != 0 {
                    return Err(io::Error::last_os_error());
                }
                libc::setsid();
                Ok(())
            });
        }
        let child = cmd.spawn().map_err(|e| io_err("start the pause", e))?;
        drop(procs_file);
        let pid = child.id();
        let rec = SandboxRecord {
            pod_uid: uid.clone(),
            pid,
            proc_start_time: proc_start_time(pid),
            ip,
        };
        if let Err(e) = network.attach(uid, pid, ip) {
            kill_child(child);
            Network::detach(uid);
            return Err(io_err("wire the pod's network", e));
        }
        if let Err(e) = write_json(&dir.join(SANDBOX), &rec) {
            kill_child(child);
            Network::detach(uid);
            return Err(io_err("record the sandbox", e));
        }
        self.lock().sandboxes.insert(
            uid.clone(),
            Sandbox {
                rec,
                child: Some(child),
            },
        );
        Ok((pid, ip))
    }

    fn start(&self, spec: &ContainerSpec) -> Result<Container, StartError> {
        let image = self.image(spec)?;
        let mut layers = Vec::new();
        for l in &image.layers {
            layers.push(
                self.store
                    .unpacked_layer(l)
                    .map_err(|e| io_err("unpack the image", e))?,
            );
        }
        let (pause, _ip) = self.sandbox(spec)?;
        let id = format!("{}-{}-{}", spec.pod_uid, spec.name, spec.attempt);
        let bundle = self.bundle(&spec.pod_uid, &spec.name, spec.attempt);
        // A leftover of an earlier try of this very attempt.
        self.destroy(&id, &bundle);
        let rootfs = bundle.join("rootfs");
        for d in ["upper", "work", "rootfs"] {
            fs::create_dir_all(bundle.join(d)).map_err(|e| io_err("create the bundle", e))?;
        }
        if let Err(e) = mount_overlay(&layers, &bundle) {
            let _ = fs::remove_dir_all(&bundle);
            return Err(io_err("mount the container's rootfs", e));
        }
        let r = self.create(spec, &image, &id, &bundle, &rootfs, pause);
        if r.is_err() {
            self.destroy(&id, &bundle);
        }
        r
    }

    fn create(
        &self,
        spec: &ContainerSpec,
        image: &Image,
        id: &str,
        bundle: &Path,
        rootfs: &Path,
        pause: u32,
    ) -> Result<Container, StartError> {
        let config = oci_config(self, spec, image, rootfs, pause)?;
        config
            .save(bundle.join("config.json"))
            .map_err(|e| io_err("write config.json", e))?;
        let log = self
            .pod_dir(&spec.pod_uid)
            .join(format!("{}-{}.log", spec.name, spec.attempt));
        let out = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .map_err(|e| io_err("open the log", e))?;
        let err = out.try_clone().map_err(|e| io_err("open the log", e))?;
        let mut cmd = self.runc();
        cmd.args(["run", "--keep", "--bundle"])
            .arg(bundle)
            .arg(id)
            .stdout(out)
            .stderr(err);
        // SAFETY: setsid is async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                libc::setsid();
                Ok(())
            });
        }
        let started_at = SystemTime::now();
        let child = cmd.spawn().map_err(|e| io_err("run runc", e))?;
        let pid = child.id();
        let rec = Record {
            id: id.to_string(),
            pod_uid: spec.pod_uid.clone(),
            name: spec.name.clone(),
            attempt: spec.attempt,
            image: spec.image.clone(),
            image_id: image.image_id(),
            pid,
            proc_start_time: proc_start_time(pid),
            started_at,
            exit: None,
        };
        self.persist(&rec);
        let c = container_of(&rec);
        self.lock().containers.insert(
            id.to_string(),
            Entry {
                rec,
                child: Some(child),
            },
        );
        Ok(c)
    }

    /// Delete container `id` in runc and unmount and remove its bundle.
    fn destroy(&self, id: &str, bundle: &Path) {
        let _ = self
            .runc()
            .args(["delete", "--force", id])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let rootfs = bundle.join("rootfs");
        if let Ok(c) = CString::new(rootfs.as_os_str().as_bytes()) {
            // SAFETY: a valid path; an unmounted path fails harmlessly.
            unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
        }
        if bundle.exists() {
            if let Err(e) = fs::remove_dir_all(bundle) {
                tracing::warn!(container = %id, error = %e, "cannot remove the bundle");
            }
        }
    }

    fn signal(&self, id: &str, sig: &str) {
        let running = self
            .lock()
            .containers
            .get(id)
            .is_some_and(|e| e.rec.exit.is_none());
        if !running {
            return;
        }
        let _ = self
            .runc()
            .args(["kill", id, sig])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }

    fn list(&self) -> Vec<Container> {
        let mut t = self.lock();
        let mut out = Vec::new();
        let mut exited = Vec::new();
        for e in t.containers.values_mut() {
            if e.rec.exit.is_none() {
                let status = match e.child.as_mut() {
                    Some(c) => match c.try_wait() {
                        Ok(Some(s)) => Some(Some(s)),
                        Ok(None) => None,
                        Err(_) => Some(None),
                    },
                    None => (liveness(e.rec.pid, e.rec.proc_start_time) == Liveness::Gone)
                        .then_some(None),
                };
                if let Some(status) = status {
                    let (exit_code, signal) = match status {
                        // runc exits with the container's status, 128 + n
                        // for a container killed by signal n.
                        Some(s) => match (s.code(), s.signal()) {
                            (Some(c), _) if c > 128 => (Some(c), Some(c - 128)),
                            (Some(c), _) => (Some(c), None),
                            (None, Some(sig)) => (Some(128 + sig), Some(sig)),
                            (None, None) => (None, None),
                        },
                        None => (None, None),
                    };
                    // Killed: by the kernel's OOM killer? (runc keeps the
                    // cgroup until the container is deleted: --keep.)
                    let reason = (signal == Some(libc::SIGKILL)
                        && oom_killed(&format!(
                            "{}/pod{}/{}",
                            self.cgroup_parent, e.rec.pod_uid, e.rec.id
                        )))
                    .then(|| "OOMKilled".to_string());
                    e.rec.exit = Some(ExitRecord {
                        exit_code,
                        signal,
                        reason,
                        finished_at: SystemTime::now(),
                    });
                    e.child = None;
                    exited.push(e.rec.clone());
                }
            }
            out.push(container_of(&e.rec));
        }
        drop(t);
        for rec in exited {
            self.persist(&rec);
        }
        out
    }

    fn remove(&self, id: &str) {
        let rec = {
            let t = self.lock();
            match t.containers.get(id) {
                Some(e) if e.rec.exit.is_some() => e.rec.clone(),
                _ => return,
            }
        };
        self.destroy(id, &self.bundle(&rec.pod_uid, &rec.name, rec.attempt));
        let _ = fs::remove_file(self.record_path(&rec.pod_uid, &rec.name, rec.attempt));
        self.lock().containers.remove(id);
    }

    fn remove_pod(&self, uid: &str) {
        self.sandbox_locks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(uid);
        let (ids, sandbox) = {
            let mut t = self.lock();
            let ids: Vec<(String, Record)> = t
                .containers
                .iter()
                .filter(|(_, e)| e.rec.pod_uid == uid)
                .map(|(id, e)| (id.clone(), e.rec.clone()))
                .collect();
            for (id, _) in &ids {
                if let Some(mut e) = t.containers.remove(id) {
                    if let Some(mut c) = e.child.take() {
                        // Exited (the contract); reap it.
                        let _ = c.try_wait();
                    }
                }
            }
            (ids, t.sandboxes.remove(uid))
        };
        for (id, rec) in &ids {
            self.destroy(id, &self.bundle(uid, &rec.name, rec.attempt));
        }
        if let Some(s) = sandbox {
            match s.child {
                Some(c) => kill_child(c),
                None => {
                    if liveness(s.rec.pid, s.rec.proc_start_time) == Liveness::Alive {
                        // SAFETY: a pid we checked is still our pause.
                        unsafe { libc::kill(s.rec.pid as i32, libc::SIGKILL) };
                    }
                }
            }
        }
        Network::detach(uid);
        // Whatever still runs in the pod's cgroups (a pause no record
        // names) is killed before they go.
        kill_cgroup_members(&format!("{}/pod{uid}", self.cgroup_parent));
        remove_cgroup_dirs(&format!("{}/pod{uid}", self.cgroup_parent));
        let dir = self.pod_dir(uid);
        // Memory-backed emptyDirs are tmpfs mounts: unmount them first.
        for v in fs::read_dir(dir.join("volumes"))
            .into_iter()
            .flatten()
            .flatten()
        {
            if let Ok(c) = CString::new(v.path().as_os_str().as_bytes()) {
                // SAFETY: a valid path; a directory that is no mount
                // point fails harmlessly.
                unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
            }
        }
        if dir.exists() {
            if let Err(e) = fs::remove_dir_all(&dir) {
                tracing::warn!(pod = %uid, error = %e, "cannot remove the pod's directory");
            }
        }
    }
}

/// Kill and reap a child of ours.
fn kill_child(mut c: Child) {
    let _ = c.kill();
    let _ = c.wait();
}

fn proc_start_time(pid: u32) -> u64 {
    crate::process::proc_stat(pid).map_or(0, |(_, t)| t)
}

fn write_json<T: Serialize>(path: &Path, v: &T) -> io::Result<()> {
    let tmp = path.with_extension("json.tmp");
    fs::write(
        &tmp,
        serde_json::to_vec_pretty(v).map_err(io::Error::other)?,
    )?;
    fs::rename(&tmp, path)
}

fn container_of(rec: &Record) -> Container {
    Container {
        id: rec.id.clone(),
        pod_uid: rec.pod_uid.clone(),
        name: rec.name.clone(),
        attempt: rec.attempt,
        image: rec.image.clone(),
        image_id: rec.image_id.clone(),
        state: match &rec.exit {
            None => State::Running {
                pid: rec.pid,
                started_at: rec.started_at,
            },
            Some(x) => State::Exited {
                exit_code: x.exit_code,
                signal: x.signal,
                reason: x.reason.clone(),
                started_at: rec.started_at,
                finished_at: x.finished_at,
            },
        },
    }
}

/// Mount `bundle/rootfs` as an overlay of `layers` (bottom first) under
/// `bundle/upper`.
fn mount_overlay(layers: &[PathBuf], bundle: &Path) -> io::Result<()> {
    let empty = bundle.join("empty");
    let mut lower: Vec<String> = layers
        .iter()
        .rev()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    if lower.is_empty() {
        fs::create_dir_all(&empty)?;
        lower.push(empty.to_string_lossy().into_owned());
    }
    if lower.iter().any(|l| l.contains([',', ':'])) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "a layer path with ',' or ':'",
        ));
    }
    let data = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.join(":"),
        bundle.join("upper").display(),
        bundle.join("work").display()
    );
    mount_fs("overlay", &bundle.join("rootfs"), &data)
}

/// mount(2) a filesystem of type `fstype` (its source named alike) on
/// `target` with options `data`.
fn mount_fs(fstype: &str, target: &Path, data: &str) -> io::Result<()> {
    let c = |s: &[u8]| {
        CString::new(s).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in a path"))
    };
    let (src, target, data) = (
        c(fstype.as_bytes())?,
        c(target.as_os_str().as_bytes())?,
        c(data.as_bytes())?,
    );
    // SAFETY: valid NUL-terminated strings that outlive the call.
    let rc = unsafe {
        libc::mount(
            src.as_ptr(),
            target.as_ptr(),
            src.as_ptr(),
            0,
            data.as_ptr().cast(),
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Whether the memory cgroup `rel` counted an OOM kill (cgroup v1's
/// `memory.oom_control`, v2's `memory.events`).
fn oom_killed(rel: &str) -> bool {
    let rel = rel.trim_start_matches('/');
    let counted = |path: PathBuf| {
        fs::read_to_string(path).is_ok_and(|text| {
            text.lines().any(|l| {
                l.strip_prefix("oom_kill ")
                    .and_then(|n| n.trim().parse::<u64>().ok())
                    .is_some_and(|n| n > 0)
            })
        })
    };
    counted(
        Path::new("/sys/fs/cgroup/memory")
            .join(rel)
            .join("memory.oom_control"),
    ) || counted(Path::new("/sys/fs/cgroup").join(rel).join("memory.events"))
}

/// The cgroup hierarchy the pause processes are tracked in: v1's `pids`
/// controller, or the v2 unified hierarchy at the root (None: neither, the
/// records alone track them).
fn tracking_hierarchy() -> Option<PathBuf> {
    let v1 = Path::new("/sys/fs/cgroup/pids");
    if v1.join("cgroup.procs").exists() {
        return Some(v1.to_path_buf());
    }
    let v2 = Path::new("/sys/fs/cgroup");
    v2.join("cgroup.controllers")
        .exists()
        .then(|| v2.to_path_buf())
}

/// SIGKILL every process in the cgroup tree `rel` of the tracking
/// hierarchy, and wait (up to a second) for them to leave it.
fn kill_cgroup_members(rel: &str) {
    let Some(h) = tracking_hierarchy() else {
        return;
    };
    let root = h.join(rel.trim_start_matches('/'));
    fn members(dir: &Path, out: &mut Vec<i32>) {
        if let Ok(text) = fs::read_to_string(dir.join("cgroup.procs")) {
            out.extend(text.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
        }
        for c in fs::read_dir(dir).into_iter().flatten().flatten() {
            if c.file_type().is_ok_and(|t| t.is_dir()) {
                members(&c.path(), out);
            }
        }
    }
    for _ in 0..20 {
        let mut pids = Vec::new();
        members(&root, &mut pids);
        pids.retain(|p| *p > 1);
        if pids.is_empty() {
            return;
        }
        for p in pids {
            // SAFETY: kill has no memory effects; the pids are members of
            // our own cgroups.
            unsafe { libc::kill(p, libc::SIGKILL) };
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Remove `rel` (a cgroup path) from every cgroup hierarchy, deepest
/// first (runc removes a container's own directory, not its parents).
fn remove_cgroup_dirs(rel: &str) {
    let Ok(hierarchies) = fs::read_dir("/sys/fs/cgroup") else {
        return;
    };
    let rel = rel.trim_start_matches('/');
    for h in hierarchies.flatten() {
        let dir = h.path().join(rel);
        if !dir.is_dir() {
            continue;
        }
        remove_cgroup_tree(&dir);
    }
    // cgroup v2 mounted at the root itself.
    let unified = Path::new("/sys/fs/cgroup").join(rel);
    if unified.is_dir() {
        remove_cgroup_tree(&unified);
    }
}

fn remove_cgroup_tree(dir: &Path) {
    if let Ok(children) = fs::read_dir(dir) {
        for c in children.flatten() {
            if c.file_type().is_ok_and(|t| t.is_dir()) {
                remove_cgroup_tree(&c.path());
            }
        }
    }
    let _ = fs::remove_dir(dir);
}

/// The process to run: Kubernetes' rules. A container's `command`
/// replaces the image's Entrypoint (and its Cmd); its `args` replace Cmd.
pub fn process_args(
    entrypoint: &[String],
    cmd: &[String],
    command: &[String],
    args: &[String],
) -> Vec<String> {
    if !command.is_empty() {
        return command.iter().chain(args).cloned().collect();
    }
    let tail = if args.is_empty() { cmd } else { args };
    entrypoint.iter().chain(tail).cloned().collect()
}

/// The image's `Env` (`K=V`) under the container's own variables.
pub fn process_env(image: &[String], container: &BTreeMap<String, String>) -> Vec<String> {
    let mut env: Vec<(String, String)> = Vec::new();
    for kv in image {
        let (k, v) = kv.split_once('=').unwrap_or((kv.as_str(), ""));
        env.retain(|(x, _)| x != k);
        env.push((k.to_string(), v.to_string()));
    }
    for (k, v) in container {
        env.retain(|(x, _)| x != k);
        env.push((k.clone(), v.clone()));
    }
    env.into_iter().map(|(k, v)| format!("{k}={v}")).collect()
}

/// uid and gid of an image's `User` (`uid`, `name`, `uid:gid`,
/// `name:group`; names from the rootfs' /etc/passwd and /etc/group).
pub fn resolve_user(user: &str, rootfs: &Path) -> Result<(u32, u32), String> {
    if user.is_empty() {
        return Ok((0, 0));
    }
    let (u, g) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    let passwd = fs::read_to_string(rootfs.join("etc/passwd")).unwrap_or_default();
    let entry = |name: &str| -> Option<(u32, u32)> {
        passwd.lines().find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() >= 4 && f[0] == name)
                .then(|| Some((f[2].parse().ok()?, f[3].parse().ok()?)))?
        })
    };
    let (uid, default_gid) = match u.parse::<u32>() {
        Ok(uid) => (
            uid,
            passwd
                .lines()
                .find_map(|l| {
                    let f: Vec<&str> = l.split(':').collect();
                    (f.len() >= 4 && f[2].parse::<u32>().ok() == Some(uid))
                        .then(|| f[3].parse().ok())?
                })
                .unwrap_or(0),
        ),
        Err(_) => {
            entry(u).ok_or_else(|| format!("user {u:?} is not in the image's /etc/passwd"))?
        }
    };
    let gid = match g {
        None => default_gid,
        Some(g) => match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => {
                let group = fs::read_to_string(rootfs.join("etc/group")).unwrap_or_default();
                group
                    .lines()
                    .find_map(|l| {
                        let f: Vec<&str> = l.split(':').collect();
                        (f.len() >= 3 && f[0] == g).then(|| f[2].parse().ok())?
                    })
                    .ok_or_else(|| format!("group {g:?} is not in the image's /etc/group"))?
            }
        },
    };
    Ok((uid, gid))
}

/// The capabilities a container gets (containerd's default set, which
/// Kubernetes uses).
const CAPABILITIES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// The host path to bind for mount `m` of a pod whose directory is
/// `pod_dir` (an emptyDir made on first use, a tmpfs for medium Memory; a
/// hostPath checked or created per its type), then its `subPath`.
fn volume_source(pod_dir: &Path, m: &crate::runtime::MountSpec) -> Result<PathBuf, StartError> {
    use crate::runtime::VolumeSource;
    use std::os::unix::fs::FileTypeExt;
    let bad = |msg: String| StartError::InvalidSpec(format!("volume {:?}: {msg}", m.volume));
    let base = match &m.source {
        VolumeSource::EmptyDir { memory, size_limit } => {
            let dir = pod_dir.join("volumes").join(&m.volume);
            if !dir.is_dir() {
                fs::create_dir_all(&dir).map_err(|e| io_err("create an emptyDir", e))?;
                if *memory {
                    let size = size_limit.map(|b| format!(",size={b}")).unwrap_or_default();
                    mount_fs("tmpfs", &dir, &format!("mode=0777{size}"))
                        .map_err(|e| io_err("mount a memory emptyDir", e))?;
                } else {
                    let _ = fs::set_permissions(
                        &dir,
                        std::os::unix::fs::PermissionsExt::from_mode(0o777),
                    );
                }
            }
            dir
        }
        VolumeSource::Config => {
            let dir = pod_dir.join("volumes").join(&m.volume);
            if !dir.is_dir() {
                return Err(bad("its files are not written yet".into()));
            }
            dir
        }
        VolumeSource::HostPath { path, kind } => {
            let p = PathBuf::from(path);
            let meta = fs::metadata(&p);
            match kind.as_str() {
                "" => {}
                "DirectoryOrCreate" => {
                    fs::create_dir_all(&p).map_err(|e| bad(format!("create {path}: {e}")))?
                }
                "FileOrCreate" => {
                    if meta.is_err() {
                        if let Some(parent) = p.parent() {
                            fs::create_dir_all(parent)
                                .map_err(|e| bad(format!("create {}: {e}", parent.display())))?;
                        }
                        OpenOptions::new()
                            .create(true)
                            .append(true)
                            .open(&p)
                            .map_err(|e| bad(format!("create {path}: {e}")))?;
                    }
                }
                want => {
                    let t = meta
                        .map_err(|e| bad(format!("hostPath {path}: {e}")))?
                        .file_type();
                    let ok = match want {
                        "Directory" => t.is_dir(),
                        "File" => t.is_file(),
                        "Socket" => t.is_socket(),
                        "CharDevice" => t.is_char_device(),
                        "BlockDevice" => t.is_block_device(),
                        _ => false,
                    };
                    if !ok {
                        return Err(bad(format!("hostPath {path} is not a {want}")));
                    }
                }
            }
            p
        }
    };
    if m.sub_path.is_empty() {
        return Ok(base);
    }
    if m.sub_path.split('/').any(|c| c == "..") || m.sub_path.starts_with('/') {
        return Err(bad(format!("subPath {:?} leaves the volume", m.sub_path)));
    }
    let sub = base.join(&m.sub_path);
    if !sub.exists() {
        fs::create_dir_all(&sub).map_err(|e| bad(format!("create subPath: {e}")))?;
    }
    Ok(sub)
}

/// This process' RLIMIT_NOFILE (soft, hard); 1024 each when unreadable.
fn nofile_limits() -> (u64, u64) {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) } != 0 {
        return (1024, 1024);
    }
    (r.rlim_cur, r.rlim_max)
}

fn bind(dst: &str, src: &Path, ro: bool) -> Result<Mount, StartError> {
    let mut options = vec!["rbind".to_string(), "rprivate".to_string()];
    if ro {
        options.push("ro".into());
    }
    MountBuilder::default()
        .destination(dst)
        .typ("bind")
        .source(src)
        .options(options)
        .build()
        .map_err(|e| io_err("a mount", e))
}

fn oci_config(
    rt: &Inner,
    spec: &ContainerSpec,
    image: &Image,
    rootfs: &Path,
    pause: u32,
) -> Result<Spec, StartError> {
    let cfg = image.config.config().clone().unwrap_or_default();
    let args = process_args(
        cfg.entrypoint().as_deref().unwrap_or(&[]),
        cfg.cmd().as_deref().unwrap_or(&[]),
        &spec.command,
        &spec.args,
    );
    if args.is_empty() {
        return Err(StartError::InvalidSpec(
            "no command specified: the image has no Entrypoint or Cmd and the container no command"
                .into(),
        ));
    }
    let env = process_env(cfg.env().as_deref().unwrap_or(&[]), &spec.env);
    let cwd = if spec.working_dir.starts_with('/') {
        spec.working_dir.clone()
    } else if !spec.working_dir.is_empty() {
        format!("/{}", spec.working_dir)
    } else {
        cfg.working_dir()
            .clone()
            .filter(|w| !w.is_empty())
            .unwrap_or_else(|| "/".into())
    };
    let (uid, gid) = resolve_user(cfg.user().as_deref().unwrap_or(""), rootfs)
        .map_err(StartError::InvalidSpec)?;
    let mut s = Spec::default();
    s.set_hostname(None);
    let mut root = oci_spec::runtime::Root::default();
    root.set_path(rootfs.to_path_buf());
    root.set_readonly(Some(false));
    s.set_root(Some(root));
    let mut p = s.process().clone().unwrap_or_default();
    p.set_args(Some(args));
    p.set_env(Some(env));
    p.set_cwd(PathBuf::from(cwd));
    let mut user = User::default();
    user.set_uid(uid);
    user.set_gid(gid);
    p.set_user(user);
    p.set_terminal(Some(false));
    p.set_no_new_privileges(Some(false));
    let caps: LinuxCapabilities = serde_json::from_value(serde_json::json!({
        "bounding": CAPABILITIES, "effective": CAPABILITIES, "permitted": CAPABILITIES,
    }))
    .map_err(|e| io_err("capabilities", e))?;
    p.set_capabilities(Some(caps));
    // The agent's own open-file limits (raising them needs
    // CAP_SYS_RESOURCE, which the agent may lack).
    let (soft, hard) = nofile_limits();
    let rlimit: PosixRlimit = serde_json::from_value(serde_json::json!({
        "type": "RLIMIT_NOFILE", "hard": hard, "soft": soft,
    }))
    .map_err(|e| io_err("rlimits", e))?;
    p.set_rlimits(Some(vec![rlimit]));
    s.set_process(Some(p));
    let pod_dir = rt.pod_dir(&spec.pod_uid);
    let mut mounts = s.mounts().clone().unwrap_or_default();
    mounts.push(bind("/etc/hosts", &pod_dir.join("hosts"), false)?);
    mounts.push(bind("/etc/hostname", &pod_dir.join("hostname"), false)?);
    mounts.push(bind(
        "/etc/resolv.conf",
        &pod_dir.join("resolv.conf"),
        false,
    )?);
    for m in &spec.mounts {
        let source = volume_source(&pod_dir, m)?;
        // ConfigMap and Secret volumes are read-only, as the kubelet's.
        let ro = m.read_only || m.source == crate::runtime::VolumeSource::Config;
        mounts.push(bind(&m.container_path, &source, ro)?);
    }
    s.set_mounts(Some(mounts));
    let ns = |typ: LinuxNamespaceType, path: Option<String>| {
        let mut n = LinuxNamespace::default();
        n.set_typ(typ);
        n.set_path(path.map(PathBuf::from));
        n
    };
    let mut linux = s.linux().clone().unwrap_or_default();
    linux.set_namespaces(Some(vec![
        ns(LinuxNamespaceType::Pid, None),
        ns(LinuxNamespaceType::Mount, None),
        ns(
            LinuxNamespaceType::Network,
            Some(format!("/proc/{pause}/ns/net")),
        ),
        ns(
            LinuxNamespaceType::Ipc,
            Some(format!("/proc/{pause}/ns/ipc")),
        ),
        ns(
            LinuxNamespaceType::Uts,
            Some(format!("/proc/{pause}/ns/uts")),
        ),
    ]));
    let id = format!("{}-{}-{}", spec.pod_uid, spec.name, spec.attempt);
    linux.set_cgroups_path(Some(PathBuf::from(format!(
        "{}/pod{}/{id}",
        rt.cgroup_parent, spec.pod_uid
    ))));
    let mut res = LinuxResourcesBuilder::default();
    if let Some(m) = spec.memory_limit_bytes {
        res = res.memory(
            LinuxMemoryBuilder::default()
                .limit(m)
                .build()
                .map_err(|e| io_err("memory limit", e))?,
        );
    }
    let mut cpu = LinuxCpuBuilder::default();
    let shares = spec
        .cpu_request_millis
        .map(|m| (u64::try_from(m).unwrap_or(0) * 1024 / 1000).max(MIN_SHARES))
        .unwrap_or(MIN_SHARES);
    cpu = cpu.shares(shares);
    if let Some(l) = spec.cpu_limit_millis {
        let quota = (l * CPU_PERIOD_US as i64 / 1000).max(MIN_QUOTA_US);
        cpu = cpu.quota(quota).period(CPU_PERIOD_US);
    }
    res = res.cpu(cpu.build().map_err(|e| io_err("cpu limits", e))?);
    res = res.pids(
        LinuxPidsBuilder::default()
            .limit(PIDS_LIMIT)
            .build()
            .map_err(|e| io_err("pids limit", e))?,
    );
    linux.set_resources(Some(res.build().map_err(|e| io_err("resources", e))?));
    s.set_linux(Some(linux));
    Ok(s)
}

impl Runtime for RuncRuntime {
    fn start(&self, spec: &ContainerSpec) -> Result<Container, StartError> {
        self.inner.start(spec)
    }

    fn write_volume(
        &self,
        pod_uid: &str,
        volume: &str,
        files: &[crate::volume_files::ProjectedFile],
    ) -> Result<(), String> {
        let dir = self.inner.pod_dir(pod_uid).join("volumes").join(volume);
        crate::volume_files::write(&dir, files)
            .map(drop)
            .map_err(|e| format!("write volume {volume:?}: {e}"))
    }

    fn stop(&self, id: &str) {
        self.inner.signal(id, "TERM");
    }

    fn kill(&self, id: &str) {
        self.inner.signal(id, "KILL");
    }

    fn list(&self) -> Vec<Container> {
        self.inner.list()
    }

    fn remove(&self, id: &str) {
        self.inner.remove(id);
    }

    fn remove_pod(&self, pod_uid: &str) {
        self.inner.remove_pod(pod_uid);
    }

    fn log_paths(&self, pod_uid: &str, name: &str, attempt: u32) -> (PathBuf, PathBuf) {
        let current = self
            .inner
            .pod_dir(pod_uid)
            .join(format!("{name}-{attempt}.log"));
        let mut rotated = current.clone().into_os_string();
        rotated.push(".1");
        (current, PathBuf::from(rotated))
    }

    fn limits_supported(&self) -> Result<(), String> {
        Ok(())
    }

    fn exec_prefix(&self, id: &str) -> Option<Vec<String>> {
        Some(vec![
            self.inner.o.runc.to_string_lossy().into_owned(),
            "--root".into(),
            self.inner.state_root.to_string_lossy().into_owned(),
            "exec".into(),
            id.to_string(),
        ])
    }

    fn exec_command(
        &self,
        c: &Container,
        command: &[String],
        tty: bool,
    ) -> Result<ExecCommand, String> {
        // `runc exec` runs it with the container's own environment, user
        // and working directory; with -t it makes the container a terminal
        // and copies it to and from its own (ours: a pty of the agent's).
        let mut args: Vec<OsString> = vec![
            "--root".into(),
            self.inner.state_root.clone().into_os_string(),
            "exec".into(),
        ];
        if tty {
            args.push("-t".into());
        }
        args.push(c.id.clone().into());
        args.extend(command.iter().map(OsString::from));
        Ok(ExecCommand {
            program: self.inner.o.runc.clone().into_os_string(),
            args,
            env: vec![(
                "PATH".into(),
                std::env::var_os("PATH").unwrap_or_else(|| DEFAULT_PATH.into()),
            )],
            cwd: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn command_and_args_combine_as_kubernetes_says() {
        let (ep, cmd) = (s(&["/ep"]), s(&["c1", "c2"]));
        assert_eq!(process_args(&ep, &cmd, &[], &[]), s(&["/ep", "c1", "c2"]));
        assert_eq!(process_args(&ep, &cmd, &[], &s(&["a"])), s(&["/ep", "a"]));
        assert_eq!(process_args(&ep, &cmd, &s(&["/x"]), &[]), s(&["/x"]));
        assert_eq!(
            process_args(&ep, &cmd, &s(&["/x"]), &s(&["a"])),
            s(&["/x", "a"])
        );
        assert_eq!(process_args(&[], &cmd, &[], &[]), cmd);
        assert!(process_args(&[], &[], &[], &[]).is_empty());
    }

    #[test]
    fn the_containers_env_overrides_the_images() {
        let c: BTreeMap<String, String> = [("B".to_string(), "2".to_string())].into();
        assert_eq!(
            process_env(&s(&["PATH=/bin", "B=1", "C"]), &c),
            s(&["PATH=/bin", "C=", "B=2"])
        );
    }

    #[test]
    fn users_resolve_from_the_images_files() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("etc")).unwrap();
        fs::write(
            dir.path().join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\nwww:x:33:34::/var/www:/bin/false\n",
        )
        .unwrap();
        fs::write(dir.path().join("etc/group"), "root:x:0:\nstaff:x:50:\n").unwrap();
        let r = |u: &str| resolve_user(u, dir.path());
        assert_eq!(r(""), Ok((0, 0)));
        assert_eq!(r("www"), Ok((33, 34)));
        assert_eq!(r("33"), Ok((33, 34)));
        assert_eq!(r("1000"), Ok((1000, 0)));
        assert_eq!(r("www:staff"), Ok((33, 50)));
        assert_eq!(r("5:6"), Ok((5, 6)));
        assert!(r("nobody").is_err());
        assert!(r("www:nogroup").is_err());
    }
}
