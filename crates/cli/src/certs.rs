//! `keelson certs`: a local certificate authority and one certificate for
//! the replicas, enough for TLS on the API port and mutual TLS between
//! replicas on one machine or a small network.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

#[derive(Args, Debug)]
pub struct CertsArgs {
    /// Where to write ca.pem, ca-key.pem, server.pem and server-key.pem.
    #[arg(long, default_value = "certs")]
    pub dir: PathBuf,
    /// Names and addresses the certificate is valid for (comma-separated).
    #[arg(long, default_value = "127.0.0.1,localhost")]
    pub hosts: String,
}

/// The files written.
pub struct Written {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Create the CA (or reuse the one in `dir`) and a server certificate for
/// `hosts`, usable as both server and client certificate (peers use it for
/// mutual TLS).
pub fn generate(dir: &Path, hosts: &[String]) -> anyhow::Result<Written> {
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    let ca_path = dir.join("ca.pem");
    let ca_key_path = dir.join("ca-key.pem");
    let (ca_params, ca_key) = if ca_path.exists() && ca_key_path.exists() {
        let key_pem = std::fs::read_to_string(&ca_key_path)
            .with_context(|| format!("read {}", ca_key_path.display()))?;
        let key = KeyPair::from_pem(&key_pem).context("parse the CA key")?;
        (ca_params(), key)
    } else {
        let key = KeyPair::generate().context("generate the CA key")?;
        let params = ca_params();
        let cert = params.self_signed(&key).context("self-sign the CA")?;
        write(&ca_path, &cert.pem(), 0o644)?;
        write(&ca_key_path, &key.serialize_pem(), 0o600)?;
        (params, key)
    };
    let issuer = Issuer::new(ca_params, ca_key);
    let mut params = CertificateParams::default();
    params
        .distinguished_name
        .push(DnType::CommonName, "keelson replica");
    for h in hosts {
        let san = match h.parse::<std::net::IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName(
                h.clone()
                    .try_into()
                    .with_context(|| format!("{h:?} is not a host name or address"))?,
            ),
        };
        params.subject_alt_names.push(san);
    }
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    let key = KeyPair::generate().context("generate the server key")?;
    let cert = params
        .signed_by(&key, &issuer)
        .context("sign the server certificate")?;
    let cert_path = dir.join("server.pem");
    let key_path = dir.join("server-key.pem");
    write(&cert_path, &cert.pem(), 0o644)?;
    write(&key_path, &key.serialize_pem(), 0o600)?;
    Ok(Written {
        ca: ca_path,
        cert: cert_path,
        key: key_path,
    })
}

fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    params
        .distinguished_name
        .push(DnType::CommonName, "keelson local CA");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params
}

fn write(path: &Path, text: &str, mode: u32) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("create {}", path.display()))?;
    f.write_all(text.as_bytes())
        .with_context(|| format!("write {}", path.display()))
}

pub fn run(args: CertsArgs) -> anyhow::Result<()> {
    let hosts: Vec<String> = args
        .hosts
        .split(',')
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .collect();
    let w = generate(&args.dir, &hosts)?;
    println!("CA:          {}", w.ca.display());
    println!("certificate: {}", w.cert.display());
    println!("key:         {}", w.key.display());
    println!(
        "serve with: keelson server --tls-cert {} --tls-key {} --tls-ca {} (peer URLs https://)",
        w.cert.display(),
        w.key.display(),
        w.ca.display()
    );
    println!(
        "clients: add `ca: {}` to the client config and use https:// endpoints",
        w.ca.display()
    );
    Ok(())
}
