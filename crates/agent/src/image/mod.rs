//! Images: references, the node's content store, pulls over the OCI
//! distribution API and imports of image archives.
//!
//! - [`reference`]: parsing and normalising what a pod's `image` says
//!   (`busybox` is `docker.io/library/busybox:latest`, as Docker and
//!   containerd read it), with oci-spec's `Reference`.
//! - [`store`]: the node-local content store, an OCI image layout
//!   (`oci-layout`, `index.json` naming each image with
//!   `org.opencontainers.image.ref.name`, `blobs/sha256/...`, every blob's
//!   digest verified before it is stored) plus each layer unpacked once
//!   into `layers/<digest>/`, whiteouts turned into overlayfs' own, so
//!   images share layers and a container's rootfs is an overlay of them.
//! - [`pull`]: a pull with oci-client (plain HTTP for registries on
//!   loopback addresses and those the agent lists as insecure, HTTPS
//!   otherwise; an image index resolves to this machine's platform).
//! - [`archive`]: `keelson image load FILE`, from an `oci-archive` (a tar
//!   of an OCI layout) or a `docker save` tarball.
//! - [`unpack`]: one layer's tar (plain or gzip) into a directory.
//! - [`busybox`]: an image made on the node from a static busybox (`keelson
//!   up --demo` under runc needs no registry).

pub mod archive;
pub mod busybox;
pub mod pull;
pub mod reference;
pub mod store;
pub mod unpack;

pub use reference::{normalize, ImageRef};
pub use store::{Image, Store};

/// Media types of the manifests we accept from registries and archives.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// `sha256:<hex>` of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}

/// The hex part of a `sha256:<hex>` digest, checked (64 lower-case hex
/// digits), so it is safe as a file name.
pub fn digest_hex(digest: &str) -> Result<&str, String> {
    let hex = digest
        .strip_prefix("sha256:")
        .ok_or_else(|| format!("digest {digest:?}: only sha256 is supported"))?;
    if hex.len() != 64 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(format!("digest {digest:?} is not 64 hex digits"));
    }
    Ok(hex)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests() {
        assert_eq!(
            sha256_digest(b""),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        let d = sha256_digest(b"x");
        assert_eq!(digest_hex(&d).map(str::len), Ok(64));
        assert!(digest_hex("sha512:00").is_err());
        assert!(digest_hex("sha256:../../etc").is_err());
        assert!(digest_hex(&format!("sha256:{}", "A".repeat(64))).is_err());
    }
}
