//! Secrets encrypted at rest, as Kubernetes' `aesgcm` provider stores
//! them: with a key (`--encryption-key-file`), every Secret is written to
//! the store as `k8s:enc:aesgcm:v1:<key name>:` + a random 96-bit nonce +
//! the AES-256-GCM ciphertext of its protobuf encoding (tag included), so
//! reading the raw key through the etcd port shows no Secret data. Values
//! without the prefix (written before a key was configured) are read as
//! they are and encrypted on their next write.
//!
//! The key file holds 32 random bytes in base64 (`head -c 32 /dev/urandom
//! | base64`); its name is the first 16 hex digits of the key's SHA-256, so
//! a value written under another key is reported as such instead of as a
//! failed decryption.

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use std::borrow::Cow;

const PREFIX: &[u8] = b"k8s:enc:aesgcm:v1:";
const NONCE_LEN: usize = 12;

/// The encryption of Secret values (None: stored as they are).
#[derive(Clone)]
pub struct SecretBox {
    cipher: Aes256Gcm,
    /// `k8s:enc:aesgcm:v1:<name>:`
    prefix: Vec<u8>,
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretBox")
            .field("prefix", &String::from_utf8_lossy(&self.prefix))
            .finish_non_exhaustive()
    }
}

impl SecretBox {
    /// From the key file's contents: 32 bytes, base64 (surrounding
    /// whitespace ignored).
    pub fn from_key_file(contents: &[u8]) -> Result<SecretBox, String> {
        let text = std::str::from_utf8(contents)
            .map_err(|_| "the encryption key file is not text (want 32 bytes in base64)")?;
        let key = base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .map_err(|e| format!("the encryption key is not base64: {e}"))?;
        if key.len() != 32 {
            return Err(format!(
                "the encryption key has {} bytes; AES-256-GCM needs 32 (head -c 32 /dev/urandom | base64)",
                key.len()
            ));
        }
        let cipher = Aes256Gcm::new_from_slice(&key).map_err(|e| format!("encryption key: {e}"))?;
        use sha2::Digest;
        let digest = sha2::Sha256::digest(&key);
        let name: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
        let mut prefix = PREFIX.to_vec();
        prefix.extend_from_slice(name.as_bytes());
        prefix.push(b':');
        Ok(SecretBox { cipher, prefix })
    }

    /// The stored form of `plain`.
    pub fn seal(&self, plain: &[u8]) -> Result<Vec<u8>, String> {
        use rand::Rng;
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill(&mut nonce);
        let sealed = self
            .cipher
            .encrypt(Nonce::from_slice(&nonce), plain)
            .map_err(|e| format!("encrypt: {e}"))?;
        let mut out = Vec::with_capacity(self.prefix.len() + NONCE_LEN + sealed.len());
        out.extend_from_slice(&self.prefix);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(out)
    }
}

/// The plain form of a stored value: decrypted when it carries the
/// prefix (which needs `key`, and the same key), as it is otherwise.
pub fn open<'a>(key: Option<&SecretBox>, stored: &'a [u8]) -> Result<Cow<'a, [u8]>, String> {
    let Some(rest) = stored.strip_prefix(PREFIX) else {
        return Ok(Cow::Borrowed(stored));
    };
    let name_end = rest
        .iter()
        .position(|b| *b == b':')
        .ok_or("an encrypted value without its key's name")?;
    let name = String::from_utf8_lossy(&rest[..name_end]);
    let Some(key) = key else {
        return Err(format!(
            "the value is encrypted (key {name}) and this server has no --encryption-key-file"
        ));
    };
    if !stored.starts_with(&key.prefix) {
        return Err(format!(
            "the value is encrypted with key {name}, not this server's ({})",
            String::from_utf8_lossy(&key.prefix[PREFIX.len()..key.prefix.len() - 1])
        ));
    }
    let body = &stored[key.prefix.len()..];
    if body.len() < NONCE_LEN {
        return Err("an encrypted value too short for its nonce".into());
    }
    let (nonce, sealed) = body.split_at(NONCE_LEN);
    key.cipher
        .decrypt(Nonce::from_slice(nonce), sealed)
        .map(Cow::Owned)
        .map_err(|_| format!("the value does not decrypt with key {name} (corrupt or altered)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> SecretBox {
        let k = base64::engine::general_purpose::STANDARD.encode([byte; 32]);
        SecretBox::from_key_file(format!("{k}\n").as_bytes()).expect("key")
    }

    #[test]
    fn sealed_values_open_with_their_key_only() {
        let a = key(1);
        let plain = b"password: hunter2".as_slice();
        let sealed = a.seal(plain).expect("seal");
        assert!(sealed.starts_with(PREFIX));
        assert!(!sealed.windows(plain.len()).any(|w| w == plain));
        // A fresh nonce each time.
        assert_ne!(a.seal(plain).expect("seal"), sealed);
        assert_eq!(open(Some(&a), &sealed).expect("open").as_ref(), plain);
        let e = open(Some(&key(2)), &sealed).expect_err("other key");
        assert!(e.contains("not this server's"), "{e}");
        let e = open(None, &sealed).expect_err("no key");
        assert!(e.contains("no --encryption-key-file"), "{e}");
        // Tampering is caught by the tag.
        let mut bad = sealed.clone();
        if let Some(last) = bad.last_mut() {
            *last ^= 1;
        }
        assert!(open(Some(&a), &bad).is_err());
        // Values from before the key: as they are.
        assert_eq!(open(Some(&a), plain).expect("plain").as_ref(), plain);
        assert_eq!(open(None, plain).expect("plain").as_ref(), plain);
    }

    #[test]
    fn bad_key_files_are_refused() {
        assert!(SecretBox::from_key_file(b"not base64!").is_err());
        let short = base64::engine::general_purpose::STANDARD.encode([0u8; 16]);
        let e = SecretBox::from_key_file(short.as_bytes()).expect_err("short");
        assert!(e.contains("needs 32"), "{e}");
    }
}
