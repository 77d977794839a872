//! Images made on the node itself, without a registry: [`busybox_image`],
//! a one-layer image of a static busybox and its applet links (what
//! `keelson up --demo` runs under runc).

use std::path::Path;
use std::process::Command;

use super::store::{Image, Store};
use super::{sha256_digest, OCI_CONFIG, OCI_LAYER, OCI_MANIFEST};

/// The OCI name of this machine's architecture.
fn oci_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        other => other,
    }
}

/// Is the program at `path` statically linked (it runs in an image that
/// has no libc)? Told by the ELF program headers: no `PT_INTERP`.
pub fn is_static(path: &Path) -> Result<bool, String> {
    let data = std::fs::read(path).map_err(|e| format!("read {}: {e}", path.display()))?;
    let not_elf = || {
        format!(
            "{} is not a 64-bit little-endian ELF program",
            path.display()
        )
    };
    if data.len() < 64 || &data[..4] != b"\x7fELF" || data[4] != 2 || data[5] != 1 {
        return Err(not_elf());
    }
    let u16_at = |o: usize| data.get(o..o + 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
    let u64_at = |o: usize| {
        data.get(o..o + 8)
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map(u64::from_le_bytes)
    };
    let phoff = u64_at(0x20)
        .and_then(|v| usize::try_from(v).ok())
        .ok_or_else(not_elf)?;
    let phentsize = usize::from(u16_at(0x36).ok_or_else(not_elf)?);
    let phnum = usize::from(u16_at(0x38).ok_or_else(not_elf)?);
    const PT_INTERP: u32 = 3;
    for i in 0..phnum {
        let at = phoff + i * phentsize;
        let kind = data
            .get(at..at + 4)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map(u32::from_le_bytes)
            .ok_or_else(not_elf)?;
        if kind == PT_INTERP {
            return Ok(false);
        }
    }
    Ok(true)
}

fn entry(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_mode(mode);
    h.set_size(size);
    h
}

/// The layer: `/bin/busybox` and a link per applet, `/etc/passwd` and
/// `/etc/group`, `/tmp`, an empty `/www`.
fn busybox_layer(busybox: &[u8], applets: &[String]) -> std::io::Result<Vec<u8>> {
    let mut b = tar::Builder::new(Vec::new());
    for (dir, mode) in [
        ("bin/", 0o755),
        ("etc/", 0o755),
        ("tmp/", 0o1777),
        ("www/", 0o755),
    ] {
        b.append_data(&mut entry(tar::EntryType::Directory, mode, 0), dir, &[][..])?;
    }
    let mut h = entry(tar::EntryType::Regular, 0o755, busybox.len() as u64);
    b.append_data(&mut h, "bin/busybox", busybox)?;
    for a in applets.iter().filter(|a| a.as_str() != "busybox") {
        let mut h = entry(tar::EntryType::Symlink, 0o777, 0);
        b.append_link(&mut h, format!("bin/{a}"), "busybox")?;
    }
    for (name, text) in [
        (
            "etc/passwd",
            "root:x:0:0:root:/root:/bin/sh\nwww:x:33:33:www:/www:/bin/false\n",
        ),
        ("etc/group", "root:x:0:\nwww:x:33:\n"),
    ] {
        let mut h = entry(tar::EntryType::Regular, 0o644, text.len() as u64);
        b.append_data(&mut h, name, text.as_bytes())?;
    }
    b.into_inner()
}

/// Make the busybox image from the static busybox at `busybox` and add
/// it to `store` as `name` (a normalised reference).
pub fn busybox_image(store: &Store, name: &str, busybox: &Path) -> Result<Image, String> {
    if !is_static(busybox)? {
        return Err(format!(
            "{} is linked dynamically; an image needs a static busybox (Debian: busybox-static)",
            busybox.display()
        ));
    }
    let program = std::fs::read(busybox).map_err(|e| format!("read {}: {e}", busybox.display()))?;
    let out = Command::new(busybox)
        .arg("--list")
        .output()
        .map_err(|e| format!("run {} --list: {e}", busybox.display()))?;
    let applets: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::trim)
        .filter(|a| !a.is_empty() && !a.contains('/'))
        .map(str::to_string)
        .collect();
    if applets.is_empty() {
        return Err(format!("{} --list named no applets", busybox.display()));
    }
    let layer = busybox_layer(&program, &applets).map_err(|e| format!("make the layer: {e}"))?;
    let layer_digest = sha256_digest(&layer);
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": oci_arch(),
        "os": "linux",
        "config": {"Cmd": ["sh"], "Env": ["PATH=/bin"], "WorkingDir": "/"},
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
    }))
    .map_err(|e| format!("encode the config: {e}"))?;
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": sha256_digest(&config), "size": config.len()},
        "layers": [{"mediaType": OCI_LAYER, "digest": layer_digest, "size": layer.len()}],
    }))
    .map_err(|e| format!("encode the manifest: {e}"))?;
    store.put_blob(&sha256_digest(&config), &config)?;
    store.put_blob(&layer_digest, &layer)?;
    store.add_image(name, &manifest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_and_dynamic_programs() {
        // This test's own binary is linked dynamically (glibc).
        let me = std::env::current_exe().expect("exe");
        assert_eq!(is_static(&me), Ok(false));
        let dir = tempfile::tempdir().expect("tempdir");
        let text = dir.path().join("text");
        std::fs::write(&text, "not a program").expect("write");
        assert!(is_static(&text).is_err());
    }

    #[test]
    fn the_busybox_image_holds_busybox_and_its_links() {
        let busybox = Path::new("/bin/busybox");
        if !busybox.exists() || is_static(busybox) != Ok(true) {
            // The image needs busybox-static, which scripts/setup.sh
            // installs on this project's machines: fail, don't skip.
            panic!("busybox-static is not installed (scripts/setup.sh installs it)");
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("store");
        let img = busybox_image(&store, "keelson.local/busybox:demo", busybox).expect("build");
        assert_eq!(img.layers.len(), 1);
        assert_eq!(
            img.config.config().as_ref().and_then(|c| c.cmd().clone()),
            Some(vec!["sh".to_string()])
        );
        let root = store.unpacked_layer(&img.layers[0]).expect("unpacked");
        assert!(root.join("bin/busybox").is_file());
        assert_eq!(
            std::fs::read_link(root.join("bin/sh")).expect("sh link"),
            Path::new("busybox")
        );
        assert!(root.join("www").is_dir());
        // The same bytes make the same image.
        let again = busybox_image(&store, "keelson.local/busybox:demo", busybox).expect("again");
        assert_eq!(again.manifest_digest, img.manifest_digest);
    }
}
