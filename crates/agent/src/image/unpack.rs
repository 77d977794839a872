//! One layer (a tar, plain or gzip: told by its first bytes, not its media
//! type) unpacked into a directory that overlayfs can use as a lower dir:
//! OCI whiteouts become overlayfs' own (`.wh.<name>` a 0:0 character
//! device named `<name>`, `.wh..wh..opq` the `trusted.overlay.opaque`
//! attribute on its directory). Paths that would leave the directory are
//! refused by the tar crate (`unpack_in`), ownership and modes are kept.

use std::ffi::CString;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

const WHITEOUT: &str = ".wh.";
const OPAQUE: &str = ".wh..wh..opq";
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// Unpack the layer in `blob` into `dst` (which must exist and be empty).
pub fn unpack_layer(blob: &Path, dst: &Path) -> io::Result<()> {
    let mut file = BufReader::new(File::open(blob)?);
    let mut magic = [0u8; 4];
    let n = read_up_to(&mut file, &mut magic)?;
    let head = io::Cursor::new(magic[..n].to_vec());
    let reader = head.chain(file);
    if n >= 2 && magic[..2] == GZIP_MAGIC {
        unpack_tar(flate2::read::GzDecoder::new(reader), dst)
    } else if n == 4 && magic == ZSTD_MAGIC {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "zstd-compressed layers are not supported",
        ))
    } else {
        unpack_tar(reader, dst)
    }
}

fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

fn unpack_tar(r: impl Read, dst: &Path) -> io::Result<()> {
    let mut archive = tar::Archive::new(r);
    archive.set_preserve_permissions(true);
    archive.set_preserve_ownerships(true);
    archive.set_preserve_mtime(true);
    archive.set_overwrite(true);
    archive.set_unpack_xattrs(true);
    for entry in archive.entries()? {
        let mut entry = entry?;
        let path = entry.path()?.into_owned();
        let Some(rel) = safe_relative(&path) else {
            continue;
        };
        let name = rel
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if name == OPAQUE {
            let dir = dst.join(rel.parent().unwrap_or(Path::new("")));
            std::fs::create_dir_all(&dir)?;
            set_xattr(&dir, "trusted.overlay.opaque", b"y")?;
            continue;
        }
        if let Some(hidden) = name.strip_prefix(WHITEOUT) {
            let dir = dst.join(rel.parent().unwrap_or(Path::new("")));
            std::fs::create_dir_all(&dir)?;
            whiteout(&dir.join(hidden))?;
            continue;
        }
        entry.unpack_in(dst)?;
    }
    Ok(())
}

/// `path` as a relative path with no `..` (None for one that has, or is
/// empty).
fn safe_relative(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::CurDir | Component::RootDir => {}
            Component::ParentDir | Component::Prefix(_) => return None,
        }
    }
    (!out.as_os_str().is_empty()).then_some(out)
}

fn cstring(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a path with a NUL byte"))
}

/// overlayfs' whiteout: a character device 0:0.
fn whiteout(path: &Path) -> io::Result<()> {
    let _ = std::fs::remove_file(path);
    let c = cstring(path)?;
    // SAFETY: `c` is a valid NUL-terminated path; mknod reads it only.
    let rc = unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR, libc::makedev(0, 0)) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn set_xattr(path: &Path, name: &str, value: &[u8]) -> io::Result<()> {
    let c = cstring(path)?;
    let n = CString::new(name)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "an xattr name with NUL"))?;
    // SAFETY: valid NUL-terminated strings and a buffer of `value.len()`
    // bytes, all read only.
    let rc = unsafe {
        libc::lsetxattr(
            c.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};

    fn layer(entries: &[(&str, Option<&[u8]>)], gzip: bool) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(0);
            match data {
                Some(d) => {
                    h.set_entry_type(tar::EntryType::Regular);
                    h.set_size(d.len() as u64);
                    h.set_mode(0o755);
                    b.append_data(&mut h, path, *d).unwrap();
                }
                None => {
                    h.set_entry_type(tar::EntryType::Directory);
                    h.set_size(0);
                    h.set_mode(0o755);
                    b.append_data(&mut h, path, &[][..]).unwrap();
                }
            }
        }
        let raw = b.into_inner().unwrap();
        if !gzip {
            return raw;
        }
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &raw).unwrap();
        gz.finish().unwrap()
    }

    #[test]
    fn plain_and_gzip_layers_unpack_with_whiteouts() {
        let dir = tempfile::tempdir().unwrap();
        for gzip in [false, true] {
            let blob = dir.path().join(format!("blob-{gzip}"));
            std::fs::write(
                &blob,
                layer(
                    &[
                        ("bin/", None),
                        ("bin/sh", Some(b"#!")),
                        ("etc/.wh.old", Some(b"")),
                        ("var/.wh..wh..opq", Some(b"")),
                    ],
                    gzip,
                ),
            )
            .unwrap();
            let dst = dir.path().join(format!("out-{gzip}"));
            std::fs::create_dir(&dst).unwrap();
            unpack_layer(&blob, &dst).unwrap();
            assert_eq!(std::fs::read(dst.join("bin/sh")).unwrap(), b"#!");
            let mode = std::fs::metadata(dst.join("bin/sh"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o755);
            let wh = std::fs::symlink_metadata(dst.join("etc/old")).unwrap();
            assert!(wh.file_type().is_char_device());
            assert!(!dst.join("etc/.wh.old").exists());
            assert!(dst.join("var").is_dir());
        }
    }

    #[test]
    fn escaping_paths_and_zstd_are_refused() {
        assert_eq!(safe_relative(Path::new("../x")), None);
        assert_eq!(safe_relative(Path::new("a/../../x")), None);
        assert_eq!(
            safe_relative(Path::new("./a/b")),
            Some(PathBuf::from("a/b"))
        );
        let dir = tempfile::tempdir().unwrap();
        let blob = dir.path().join("z");
        std::fs::write(&blob, [0x28, 0xb5, 0x2f, 0xfd, 0, 0]).unwrap();
        let e = unpack_layer(&blob, dir.path()).unwrap_err();
        assert!(e.to_string().contains("zstd"), "{e}");
    }
}
