//! The container runtime interface the agent drives, and the types it
//! speaks. [`crate::process::ProcessRuntime`] runs containers as host
//! processes, [`crate::runc::RuncRuntime`] real images under runc; tests
//! use a fake.
//!
//! Every call is quick and never blocks on the container: `start` spawns,
//! `stop` sends SIGTERM (the agent sends `kill` after the grace period),
//! `list` reports what is running and what has exited since.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::SystemTime;

/// What to run: one container of one pod, as the agent resolved it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerSpec {
    pub pod_uid: String,
    pub pod_namespace: String,
    pub pod_name: String,
    /// The container's name in the pod.
    pub name: String,
    /// Restart count of this container so far (0 for the first start).
    pub attempt: u32,
    pub image: String,
    pub command: Vec<String>,
    pub args: Vec<String>,
    /// The container's env plus what the agent adds: PORT (its first
    /// declared port), PORT_<NAME> per named port (upper case, '-' -> '_'),
    /// POD_IP, HOST (= POD_IP), POD_NAME, POD_NAMESPACE, NODE_NAME.
    pub env: BTreeMap<String, String>,
    /// Relative to the container's own directory (created by the runtime
    /// under the agent's data dir); empty: that directory.
    pub working_dir: String,
    /// Limits from `resources.limits` (None: unlimited).
    pub memory_limit_bytes: Option<i64>,
    pub cpu_limit_millis: Option<i64>,
    /// `resources.requests.cpu` (the runc runtime's cpu shares).
    pub cpu_request_millis: Option<i64>,
    /// The pod's address (the runc runtime wires the pod's namespace with
    /// it; the process runtime passes it in the env only).
    pub pod_ip: String,
    /// The pod's hostname (`spec.hostname`, else its name).
    pub hostname: String,
    /// The pod's `spec.subdomain` (with a hostname: its DNS name under
    /// that headless Service, in the runc runtime's `/etc/hosts`).
    pub subdomain: String,
    /// Always, IfNotPresent or Never (empty: Kubernetes' default for the
    /// image's tag).
    pub image_pull_policy: String,
    /// The pod volumes it mounts (the runc runtime; the process runtime
    /// mounts nothing).
    pub mounts: Vec<MountSpec>,
    /// The pod's `dnsPolicy` (the runc runtime's `resolv.conf`).
    pub dns_policy: String,
}

/// A volume mounted into a container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MountSpec {
    /// The pod volume's name.
    pub volume: String,
    pub source: VolumeSource,
    /// Where in the container.
    pub container_path: String,
    pub read_only: bool,
    /// A path inside the volume to mount instead of its root.
    pub sub_path: String,
}

/// Where a volume's files are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VolumeSource {
    /// A directory of the pod's (a tmpfs of `size_limit` bytes when
    /// `memory`), gone with the pod.
    EmptyDir {
        memory: bool,
        size_limit: Option<i64>,
    },
    /// A path of the node, checked per `kind` (hostPath `type`).
    HostPath { path: String, kind: String },
    /// A ConfigMap or Secret volume: the pod's directory for it, whose
    /// files [`Runtime::write_volume`] writes (before the start, and again
    /// when the object changes); mounted read-only.
    Config,
}

/// How a container stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum State {
    Running {
        pid: u32,
        started_at: SystemTime,
    },
    Exited {
        /// None when the exit status could not be observed (the process
        /// was adopted after an agent restart and is gone).
        exit_code: Option<i32>,
        /// The signal that ended it, if any.
        signal: Option<i32>,
        /// Why, when the runtime knows better than the exit code
        /// (`OOMKilled`).
        reason: Option<String>,
        started_at: SystemTime,
        finished_at: SystemTime,
    },
}

/// A container the runtime knows (running, or exited and not yet removed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Container {
    /// Unique per start (e.g. `<pod uid>-<name>-<attempt>`).
    pub id: String,
    pub pod_uid: String,
    pub name: String,
    pub attempt: u32,
    pub image: String,
    /// The image it runs from, `<repository>@<manifest digest>` (empty
    /// when the runtime runs no image, as the process runtime).
    pub image_id: String,
    pub state: State,
}

/// Why a start failed. All but `Io` are the pod's fault (it waits with
/// the reason); `Io` is the machine's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StartError {
    /// The image reference does not parse (`InvalidImageName`).
    InvalidImageName(String),
    /// The image could not be pulled (`ErrImagePull`, then
    /// `ImagePullBackOff` while the next try waits).
    ImagePull(String),
    /// The image is absent and its policy is Never (`ErrImageNeverPull`).
    ImageNeverPull(String),
    /// The runtime cannot run this image (reason "ErrImagePull"-like:
    /// "InvalidImageName" / "ImageNotSupported").
    ImageNotSupported(String),
    /// Nothing to run (no command for a non-builtin image, bad args).
    InvalidSpec(String),
    Io(String),
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::ImageNotSupported(m)
            | StartError::InvalidSpec(m)
            | StartError::Io(m)
            | StartError::InvalidImageName(m)
            | StartError::ImagePull(m)
            | StartError::ImageNeverPull(m) => f.write_str(m),
        }
    }
}

/// A container runtime.
pub trait Runtime: Send + Sync {
    /// Start a container; its id.
    fn start(&self, spec: &ContainerSpec) -> Result<Container, StartError>;
    /// Ask it to stop (SIGTERM). Idempotent; no-op when exited.
    fn stop(&self, id: &str);
    /// Stop it now (SIGKILL). Idempotent.
    fn kill(&self, id: &str);
    /// Every container known: running, or exited and not removed.
    fn list(&self) -> Vec<Container>;
    /// Forget an exited container (its record; its log files stay until the
    /// pod is removed).
    fn remove(&self, id: &str);
    /// Remove everything of a pod that is gone (containers must have
    /// exited; their directories and logs are deleted).
    fn remove_pod(&self, pod_uid: &str);
    /// The log file of a container (current), and the rotated one before it.
    fn log_paths(&self, pod_uid: &str, name: &str, attempt: u32) -> (PathBuf, PathBuf);
    /// Make the pod's directory for ConfigMap or Secret volume `volume`
    /// hold exactly `files` (see [`crate::volume_files`]); a container
    /// mounting it sees the change in place.
    fn write_volume(
        &self,
        pod_uid: &str,
        volume: &str,
        files: &[crate::volume_files::ProjectedFile],
    ) -> Result<(), String>;
    /// Whether cgroup limits are enforced on this host (else a reason).
    fn limits_supported(&self) -> Result<(), String>;
    /// A program and arguments that run a command inside container `id`
    /// (exec probes); None: commands run on the host.
    fn exec_prefix(&self, _id: &str) -> Option<Vec<String>> {
        None
    }
    /// How to run `command` in running container `c` for `kubectl exec`
    /// (with `tty`, the command's stdio will be a terminal); Err: why not.
    fn exec_command(
        &self,
        _c: &Container,
        _command: &[String],
        _tty: bool,
    ) -> Result<ExecCommand, String> {
        Err("this node's runtime cannot run commands in containers".into())
    }
}

/// A command the agent runs for `kubectl exec` (see
/// [`Runtime::exec_command`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecCommand {
    pub program: std::ffi::OsString,
    pub args: Vec<std::ffi::OsString>,
    /// The whole environment of the command.
    pub env: Vec<(std::ffi::OsString, std::ffi::OsString)>,
    /// Its working directory (None: the agent's).
    pub cwd: Option<PathBuf>,
}
