//! Image references as Docker and containerd read them: a registry host
//! (default `docker.io`), a repository (`library/` added for one-part
//! names on docker.io), and a tag (default `latest`) or a digest.

use std::net::IpAddr;

use oci_client::Reference;

/// A parsed, normalised reference.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageRef {
    pub reference: Reference,
}

impl ImageRef {
    /// Parse what a pod's `image` (or `keelson image ...`) says; the error
    /// is the message of `InvalidImageName`.
    pub fn parse(image: &str) -> Result<ImageRef, String> {
        if image.trim() != image || image.is_empty() {
            return Err(format!("invalid image name {image:?}"));
        }
        let reference: Reference = image
            .parse()
            .map_err(|e| format!("invalid image name {image:?}: {e}"))?;
        Ok(ImageRef { reference })
    }

    /// The whole normalised reference (`docker.io/library/busybox:latest`,
    /// `127.0.0.1:5000/busybox@sha256:...`): the name the store keeps.
    pub fn name(&self) -> String {
        self.reference.whole()
    }

    /// `registry/repository`, without tag or digest.
    pub fn repository(&self) -> String {
        format!(
            "{}/{}",
            self.reference.registry(),
            self.reference.repository()
        )
    }

    /// The tag, when the reference names one.
    pub fn tag(&self) -> Option<&str> {
        self.reference.tag()
    }

    pub fn digest(&self) -> Option<&str> {
        self.reference.digest()
    }

    /// Kubernetes' default pull policy: Always for `:latest` (or no tag),
    /// IfNotPresent otherwise (and for digests).
    pub fn default_pull_policy(&self) -> &'static str {
        if self.digest().is_none() && self.tag().is_none_or(|t| t == "latest") {
            "Always"
        } else {
            "IfNotPresent"
        }
    }

    /// Whether the registry is reached over plain HTTP: registries on
    /// loopback addresses (as Docker and containerd allow) and those listed
    /// in `insecure` (`host[:port]`).
    pub fn plain_http(&self, insecure: &[String]) -> bool {
        let registry = self.reference.registry();
        if insecure.iter().any(|r| r == registry) {
            return true;
        }
        let host = host_of(registry);
        host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
    }
}

/// The host of `host[:port]` (`[::1]:5000` -> `::1`).
fn host_of(registry: &str) -> &str {
    if let Some(rest) = registry.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    registry.split(':').next().unwrap_or(registry)
}

/// The normalised name of `image` (what the store keeps), or the
/// `InvalidImageName` message.
pub fn normalize(image: &str) -> Result<String, String> {
    ImageRef::parse(image).map(|r| r.name())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_normalised_as_docker_does() {
        assert_eq!(
            normalize("busybox").as_deref(),
            Ok("docker.io/library/busybox:latest")
        );
        assert_eq!(
            normalize("busybox:1.35").as_deref(),
            Ok("docker.io/library/busybox:1.35")
        );
        assert_eq!(
            normalize("127.0.0.1:5000/busybox:1.35").as_deref(),
            Ok("127.0.0.1:5000/busybox:1.35")
        );
        let d = format!("sha256:{}", "a".repeat(64));
        let r = ImageRef::parse(&format!("127.0.0.1:5000/tools/busybox@{d}")).unwrap();
        assert_eq!(r.digest(), Some(d.as_str()));
        assert_eq!(r.repository(), "127.0.0.1:5000/tools/busybox");
        for bad in ["", " busybox", "Busybox", "busybox:", "a@sha256:12", "a b"] {
            assert!(ImageRef::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn pull_policy_defaults_and_plain_http() {
        let p = |s: &str| ImageRef::parse(s).unwrap();
        assert_eq!(p("busybox").default_pull_policy(), "Always");
        assert_eq!(p("busybox:latest").default_pull_policy(), "Always");
        assert_eq!(p("busybox:1.35").default_pull_policy(), "IfNotPresent");
        assert!(p("127.0.0.1:5000/b:1").plain_http(&[]));
        assert!(p("localhost:5000/b:1").plain_http(&[]));
        assert!(p("127.8.9.10:5000/b:1").plain_http(&[]));
        assert!(!p("registry.example:5000/b:1").plain_http(&[]));
        assert!(p("registry.example:5000/b:1").plain_http(&["registry.example:5000".into()]));
        assert!(!p("busybox").plain_http(&[]));
    }
}
