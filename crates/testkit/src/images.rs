//! Container images without a public registry, for the runc runtime's
//! tests and benchmarks: a busybox image built with umoci from the
//! machine's static busybox, Debian's docker-registry started on a free
//! loopback port, and skopeo to push or archive. Every tool is required:
//! a missing one is an error, never a skip.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::Context;

fn run(cmd: &mut Command) -> anyhow::Result<String> {
    let out = cmd
        .output()
        .with_context(|| format!("{cmd:?} (this project's machines have it)"))?;
    anyhow::ensure!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A busybox image in the OCI layout `dir/oci`, tag `busybox`: every
/// applet a symlink to the static busybox in `/bin`, `PATH=/bin`, Cmd
/// `/bin/sh`, users root and www (33). Returns the layout's path.
pub fn build_busybox(dir: &Path) -> anyhow::Result<PathBuf> {
    let layout = dir.join("oci");
    let image = format!("{}:busybox", layout.display());
    run(Command::new("umoci")
        .args(["init", "--layout"])
        .arg(&layout))?;
    run(Command::new("umoci").args(["new", "--image", &image]))?;
    let bundle = dir.join("bundle");
    run(Command::new("umoci")
        .args(["unpack", "--image", &image])
        .arg(&bundle))?;
    let rootfs = bundle.join("rootfs");
    let bin = rootfs.join("bin");
    std::fs::create_dir_all(&bin)?;
    std::fs::create_dir_all(rootfs.join("etc"))?;
    std::fs::copy("/bin/busybox", bin.join("busybox"))
        .context("busybox-static provides /bin/busybox on this project's machines")?;
    let applets = run(Command::new("/bin/busybox").arg("--list"))?;
    for a in applets.lines().filter(|a| *a != "busybox") {
        let _ = std::os::unix::fs::symlink("busybox", bin.join(a));
    }
    std::fs::write(
        rootfs.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nwww:x:33:33:www:/var/www:/bin/false\n",
    )?;
    std::fs::write(rootfs.join("etc/group"), "root:x:0:\nwww:x:33:\n")?;
    run(Command::new("umoci")
        .args(["repack", "--image", &image])
        .arg(&bundle))?;
    run(Command::new("umoci").args([
        "config",
        "--image",
        &image,
        "--config.cmd=/bin/sh",
        "--config.env=PATH=/bin",
    ]))?;
    let _ = std::fs::remove_dir_all(&bundle);
    Ok(layout)
}

/// Push the layout's `busybox` image as `reference` (plain HTTP).
pub fn push(layout: &Path, reference: &str) -> anyhow::Result<()> {
    run(Command::new("skopeo")
        .args(["copy", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:busybox", layout.display()))
        .arg(format!("docker://{reference}")))?;
    Ok(())
}

/// Write the layout's `busybox` image as an oci-archive at `file`, named
/// `name` inside.
pub fn oci_archive(layout: &Path, file: &Path, name: &str) -> anyhow::Result<()> {
    run(Command::new("skopeo")
        .arg("copy")
        .arg(format!("oci:{}:busybox", layout.display()))
        .arg(format!("oci-archive:{}:{name}", file.display())))?;
    Ok(())
}

/// Debian's docker-registry on a free loopback port, killed when dropped.
pub struct Registry {
    child: Child,
    /// `127.0.0.1:<port>`.
    pub addr: String,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Registry {
    /// Start one storing under `dir/registry`, and wait until it listens.
    pub fn start(dir: &Path) -> anyhow::Result<Registry> {
        let port = crate::free_port()?;
        let addr = format!("127.0.0.1:{port}");
        let config = dir.join("registry.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {addr}\n",
                dir.join("registry").display()
            ),
        )?;
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("registry.log"))?)
            .spawn()
            .context("docker-registry is installed on this project's machines")?;
        let r = Registry { child, addr };
        for _ in 0..100 {
            if std::net::TcpStream::connect(&r.addr).is_ok() {
                return Ok(r);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        anyhow::bail!("the registry did not listen on {}", r.addr)
    }
}
