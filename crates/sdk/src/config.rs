//! The client config: which API endpoints to reach and with which token.
//! A YAML file, by default `~/.keelson/config` (or `$KEELSON_CONFIG`):
//!
//! ```yaml
//! endpoints:
//! - http://127.0.0.1:6443
//! - http://127.0.0.2:6443
//! token: 3kq...
//! ca: /path/to/ca.pem   # for https:// endpoints
//! ```

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// API server URLs (`http://host:port`), any replica of the cluster.
    pub endpoints: Vec<String>,
    /// Bearer token.
    #[serde(default)]
    pub token: String,
    /// PEM file of the CA that signed the API servers' certificates
    /// (https:// endpoints). Empty: the system's roots are not used; an
    /// https endpoint then needs this.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub ca: String,
}

impl Config {
    pub fn new(endpoints: Vec<String>, token: impl Into<String>) -> Config {
        Config {
            endpoints,
            token: token.into(),
            ca: String::new(),
        }
    }

    /// `$KEELSON_CONFIG`, else `~/.keelson/config`.
    pub fn default_path() -> PathBuf {
        if let Some(p) = std::env::var_os("KEELSON_CONFIG") {
            return PathBuf::from(p);
        }
        let home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_default();
        home.join(".keelson").join("config")
    }

    pub fn load(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::Config(format!("read {}: {e}", path.display())))?;
        let c: Config = serde_yaml::from_str(&text)
            .map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
        if c.endpoints.is_empty() {
            return Err(Error::Config(format!("{}: no endpoints", path.display())));
        }
        Ok(c)
    }

    /// Write the config (creating its directory), readable by its owner only.
    pub fn save(&self, path: &Path) -> Result<()> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| Error::Config(format!("create {}: {e}", dir.display())))?;
        }
        let text = serde_yaml::to_string(self).map_err(|e| Error::Config(e.to_string()))?;
        let tmp = path.with_extension("tmp");
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| Error::Config(format!("create {}: {e}", tmp.display())))?;
        f.write_all(text.as_bytes())
            .and_then(|()| f.sync_all())
            .and_then(|()| std::fs::rename(&tmp, path))
            .map_err(|e| Error::Config(format!("write {}: {e}", path.display())))
    }
}
