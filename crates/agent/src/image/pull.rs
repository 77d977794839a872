//! Pulls over the OCI distribution API with oci-client: the manifest (an
//! image index resolves to this machine's platform), then the config and
//! each layer the store lacks, every blob's digest checked before it is
//! stored (by oci-client while it streams, and by the store).

use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;
use oci_client::Client;

use super::{store::Store, Image, ImageRef};
use super::{DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_INDEX, OCI_MANIFEST};

/// How the agent reaches registries.
#[derive(Clone, Debug, Default)]
pub struct PullOptions {
    /// Registries (`host[:port]`) reached over plain HTTP besides those on
    /// loopback addresses.
    pub insecure_registries: Vec<String>,
    /// Basic credentials (from `imagePullSecrets`), if any.
    pub auth: Option<(String, String)>,
}

/// Pull `image` into `store`; the stored image. The error is the message
/// of `ErrImagePull`.
pub async fn pull(store: &Store, image: &ImageRef, o: &PullOptions) -> Result<Image, String> {
    // rustls needs a process-wide provider; a second install is refused,
    // which is fine.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let reference = &image.reference;
    let protocol = if image.plain_http(&o.insecure_registries) {
        ClientProtocol::Http
    } else {
        ClientProtocol::Https
    };
    let client = Client::new(ClientConfig {
        protocol,
        connect_timeout: Some(std::time::Duration::from_secs(10)),
        read_timeout: Some(std::time::Duration::from_secs(60)),
        ..Default::default()
    });
    let auth = match &o.auth {
        Some((u, p)) => RegistryAuth::Basic(u.clone(), p.clone()),
        None => RegistryAuth::Anonymous,
    };
    let name = image.name();
    let accept = [
        OCI_MANIFEST,
        DOCKER_MANIFEST,
        OCI_INDEX,
        DOCKER_MANIFEST_LIST,
    ];
    let (mut bytes, mut digest) = client
        .pull_manifest_raw(reference, &auth, &accept)
        .await
        .map_err(|e| format!("pull {name}: {e}"))?;
    // An index: this platform's manifest.
    if is_index(&bytes) {
        let chosen = platform_manifest(&bytes).map_err(|e| format!("pull {name}: {e}"))?;
        let by_digest = reference.clone_with_digest(chosen);
        (bytes, digest) = client
            .pull_manifest_raw(&by_digest, &auth, &accept)
            .await
            .map_err(|e| format!("pull {name}: {e}"))?;
    }
    let actual = super::sha256_digest(&bytes);
    if !digest.is_empty() && digest != actual {
        return Err(format!(
            "pull {name}: the manifest hashes to {actual}, the registry said {digest}"
        ));
    }
    let (config, layers) = super::store::parse_manifest(&bytes)?;
    for (digest, media) in std::iter::once((config.clone(), super::OCI_CONFIG))
        .chain(layers.iter().map(|l| (l.clone(), super::OCI_LAYER)))
    {
        if store.has_blob(&digest) {
            continue;
        }
        let tmp = store.temp_path("pull");
        let file = tokio::fs::File::create(&tmp)
            .await
            .map_err(|e| format!("pull {name}: create {}: {e}", tmp.display()))?;
        let desc = oci_client::manifest::OciDescriptor {
            media_type: media.to_string(),
            digest: digest.clone(),
            ..Default::default()
        };
        let r = client.pull_blob(reference, &desc, file).await;
        if let Err(e) = r {
            let _ = std::fs::remove_file(&tmp);
            return Err(format!("pull {name}: blob {digest}: {e}"));
        }
        store
            .put_blob_file(&digest, &tmp)
            .map_err(|e| format!("pull {name}: {e}"))?;
    }
    store.add_image(&name, &bytes)
}

/// An image index (by its media type, or, without one, by its shape).
fn is_index(bytes: &[u8]) -> bool {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(bytes) else {
        return false;
    };
    match v.get("mediaType").and_then(|m| m.as_str()) {
        Some(media) => media == OCI_INDEX || media == DOCKER_MANIFEST_LIST,
        None => v.get("manifests").is_some() && v.get("layers").is_none(),
    }
}

/// The digest of this machine's platform's manifest in an index.
fn platform_manifest(bytes: &[u8]) -> Result<String, String> {
    let v: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| format!("a bad index: {e}"))?;
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    let manifests = v
        .get("manifests")
        .and_then(|m| m.as_array())
        .ok_or("an index without manifests")?;
    manifests
        .iter()
        .find(|m| {
            let p = m.get("platform");
            p.and_then(|p| p.get("os")).and_then(|o| o.as_str()) == Some("linux")
                && p.and_then(|p| p.get("architecture"))
                    .and_then(|a| a.as_str())
                    == Some(arch)
        })
        .and_then(|m| m.get("digest")?.as_str().map(str::to_string))
        .ok_or_else(|| format!("no manifest for linux/{arch} in the image index"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indexes_resolve_to_this_platform() {
        let arch = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            other => other,
        };
        let idx = serde_json::json!({
            "schemaVersion": 2, "mediaType": OCI_INDEX,
            "manifests": [
                {"digest": "sha256:aa", "platform": {"os": "linux", "architecture": "s390x"}},
                {"digest": "sha256:bb", "platform": {"os": "linux", "architecture": arch}}
            ]
        });
        let bytes = serde_json::to_vec(&idx).unwrap();
        assert!(is_index(&bytes));
        assert_eq!(platform_manifest(&bytes).as_deref(), Ok("sha256:bb"));
        let other = serde_json::json!({"manifests": [{"digest": "sha256:aa",
            "platform": {"os": "windows", "architecture": arch}}]});
        assert!(platform_manifest(&serde_json::to_vec(&other).unwrap()).is_err());
        assert!(!is_index(br#"{"schemaVersion":2,"layers":[]}"#));
    }
}
