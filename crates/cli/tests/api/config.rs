//! ConfigMaps and Secrets over both APIs, judged by kubectl and the SDK:
//! `create configmap|secret`, tables, `-o jsonpath`, `describe`, `apply`
//! with `stringData`, patches; Kubernetes' validation (keys, 1 MiB,
//! `immutable`, Secret types); a viewer refused Secrets; a node reading
//! only the Secrets and ConfigMaps its own pods use; watches; and Secrets
//! encrypted at rest, read raw through the etcd port with etcdctl.

use crate::common;

use std::time::Duration;

use base64::Engine;
use common::{eventually, fixtures, serial, start_cluster, Kubectl};
use futures::StreamExt;
use keelson_sdk::types::{self as v1};
use keelson_sdk::{Api, Error, ListParams, WatchEvent};

/// `etcdctl get <key> --print-value-only` against member 0's client port:
/// the raw bytes the store holds.
fn etcd_raw(c: &common::ProcCluster, key: &str) -> Vec<u8> {
    let out = std::process::Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!(
            "--endpoints=http://127.0.0.1:{}",
            c.members[0].client_port
        ))
        .args(["--command-timeout=10s", "get", key, "--print-value-only"])
        .output()
        .expect("etcdctl is installed (Debian package etcd-client; .ci/run installs it)");
    assert!(
        out.status.success(),
        "etcdctl get {key}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_maps_and_secrets_over_kubectl_and_the_sdk() {
    let _g = serial().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let key_file = dir.path().join("encryption.key");
    let key = base64::engine::general_purpose::STANDARD.encode(rand_key());
    std::fs::write(&key_file, format!("{key}\n")).expect("key file");
    let key_arg = key_file.to_string_lossy().into_owned();
    let c = start_cluster(3, dir.path(), &["--encryption-key-file", &key_arg]).await;
    let admin_client = common::admin_client(&c);
    let namespaces: Api<v1::Namespace> = Api::all(admin_client.clone());
    eventually(Duration::from_secs(20), "namespace default exists", || {
        let ns = namespaces.clone();
        async move { ns.get("default").await.is_ok() }
    })
    .await;
    let k = Kubectl::new(dir.path(), &c, 0, &c.token("admin", None));

    // ConfigMaps: created by kubectl, shown as kubectl shows them.
    k.ok(&[
        "create",
        "configmap",
        "app",
        "--from-literal=mode=prod",
        "--from-literal=level=3",
    ]);
    let table = k.ok(&["get", "cm"]);
    let rows: Vec<Vec<&str>> = table
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows[0], ["NAME", "DATA", "AGE"], "{table}");
    assert_eq!(&rows[1][..2], ["app", "2"], "{table}");
    assert_eq!(
        k.ok(&["get", "configmap", "app", "-o", "jsonpath={.data.mode}"]),
        "prod"
    );
    let files = dir.path().join("files");
    std::fs::create_dir_all(&files).expect("files dir");
    std::fs::write(files.join("app.conf"), "listen 8080\n").expect("file");
    std::fs::write(files.join("logo.bin"), [0xff, 0x00, 0xfe]).expect("file");
    k.ok(&[
        "create",
        "configmap",
        "files",
        &format!("--from-file={}", files.display()),
    ]);
    let cms: Api<v1::ConfigMap> = Api::namespaced(admin_client.clone(), "default");
    let got = cms.get("files").await.expect("configmap files");
    assert_eq!(
        got.data.get("app.conf").map(String::as_str),
        Some("listen 8080\n")
    );
    assert_eq!(
        got.binary_data.get("logo.bin").map(Vec::as_slice),
        Some(&[0xff, 0x00, 0xfe][..]),
        "non-UTF-8 files go to binaryData"
    );

    // Secrets: data in base64, stringData merged and never returned.
    k.ok(&[
        "create",
        "secret",
        "generic",
        "db",
        "--from-literal=password=hunter2",
    ]);
    let table = k.ok(&["get", "secrets"]);
    assert!(
        table
            .lines()
            .any(|l| l.split_whitespace().take(3).eq(["db", "Opaque", "1"])),
        "{table}"
    );
    assert_eq!(
        k.ok(&["get", "secret", "db", "-o", "jsonpath={.data.password}"]),
        base64::engine::general_purpose::STANDARD.encode("hunter2")
    );
    let described = k.ok(&["describe", "secret", "db"]);
    assert!(described.contains("password:  7 bytes"), "{described}");
    let (code, out, err) = k.run_input(
        &["apply", "-f", "-"],
        br#"
apiVersion: v1
kind: Secret
metadata:
  name: tls
type: kubernetes.io/tls
stringData:
  tls.crt: CERT
  tls.key: KEY
"#,
    );
    assert_eq!(code, 0, "{out}{err}");
    let secrets: Api<v1::Secret> = Api::namespaced(admin_client.clone(), "default");
    let tls = secrets.get("tls").await.expect("secret tls");
    assert_eq!(tls.r#type, "kubernetes.io/tls");
    assert_eq!(
        tls.data.get("tls.key").map(Vec::as_slice),
        Some(&b"KEY"[..])
    );
    assert!(tls.string_data.is_empty(), "stringData is never returned");
    // A second apply of the same manifest changes nothing.
    let (code, out, err) = k.run_input(
        &["apply", "-f", "-"],
        br#"
apiVersion: v1
kind: Secret
metadata:
  name: tls
type: kubernetes.io/tls
stringData:
  tls.crt: CERT
  tls.key: KEY
"#,
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("secret/tls"), "{out}");

    // Encrypted at rest: the raw key through the etcd port shows neither
    // the value nor the names' data; ConfigMaps are stored as they are.
    let raw = etcd_raw(&c, "/registry/secrets/default/db");
    assert!(raw.starts_with(b"k8s:enc:aesgcm:v1:"), "{raw:?}");
    assert!(!contains(&raw, b"hunter2"));
    assert!(!contains(&raw, b"password"));
    let raw = etcd_raw(&c, "/registry/configmaps/default/app");
    assert!(contains(&raw, b"prod"), "ConfigMaps are not encrypted");

    // Kubernetes' rules, as kubectl prints them.
    let (code, _, err) = k.run_input(
        &["apply", "-f", "-"],
        b"{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"bad\"},\"data\":{\"a b\":\"x\"}}",
    );
    assert_ne!(code, 0);
    assert!(err.contains("a valid config key must consist of"), "{err}");
    std::fs::write(files.join("big"), vec![b'x'; 1024 * 1024 + 1]).expect("big file");
    let (ok, _, err) = k.run(&[
        "create",
        "configmap",
        "big",
        &format!("--from-file={}", files.join("big").display()),
    ]);
    assert!(!ok);
    assert!(
        err.contains("Too long: must have at most 1048576 bytes"),
        "{err}"
    );
    let (code, _, err) = k.run_input(
        &["apply", "-f", "-"],
        b"{\"apiVersion\":\"v1\",\"kind\":\"Secret\",\"metadata\":{\"name\":\"half\"},\"type\":\"kubernetes.io/tls\",\"stringData\":{\"tls.crt\":\"x\"}}",
    );
    assert_ne!(code, 0);
    assert!(err.contains("data[tls.key]: Required value"), "{err}");
    let (ok, _, err) = k.run(&["patch", "secret", "tls", "-p", r#"{"type":"Opaque"}"#]);
    assert!(!ok);
    assert!(err.contains("field is immutable"), "{err}");
    k.ok(&["create", "configmap", "frozen", "--from-literal=a=1"]);
    k.ok(&[
        "patch",
        "configmap",
        "frozen",
        "-p",
        r#"{"immutable":true}"#,
    ]);
    let (ok, _, err) = k.run(&[
        "patch",
        "configmap",
        "frozen",
        "-p",
        r#"{"data":{"a":"2"}}"#,
    ]);
    assert!(!ok);
    assert!(
        err.contains("field is immutable when `immutable` is set"),
        "{err}"
    );

    // A watch sees Secrets decrypted, with their new data.
    let mut watch = secrets
        .watch(
            &ListParams::default(),
            &tls.metadata
                .as_ref()
                .map(|m| m.resource_version.clone())
                .unwrap_or_default(),
        )
        .await
        .expect("watch secrets")
        .boxed();
    k.ok(&[
        "patch",
        "secret",
        "db",
        "-p",
        r#"{"stringData":{"password":"swordfish"}}"#,
    ]);
    let ev = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match watch.next().await {
                Some(Ok(WatchEvent::Modified(s)))
                    if s.metadata.as_ref().is_some_and(|m| m.name == "db") =>
                {
                    break s
                }
                Some(Ok(_)) => continue,
                other => panic!("watch ended: {other:?}"),
            }
        }
    })
    .await
    .expect("a MODIFIED event for db");
    assert_eq!(
        ev.data.get("password").map(Vec::as_slice),
        Some(&b"swordfish"[..])
    );

    // A viewer reads ConfigMaps but no Secret (Kubernetes' view role).
    let viewer = Kubectl::new(dir.path(), &c, 1, &c.token("viewer", None));
    assert!(viewer.ok(&["get", "cm"]).contains("app"));
    let (ok, _, err) = viewer.run(&["get", "secrets"]);
    assert!(!ok);
    assert!(err.contains("cannot list resource \"secrets\""), "{err}");
    let (ok, _, err) = viewer.run(&["get", "secret", "db", "-o", "yaml"]);
    assert!(!ok, "a viewer must not read Secret data");
    assert!(err.contains("Forbidden"), "{err}");

    // A node reads only what its own pods use, one object at a time.
    let n1 = Api::<v1::Secret>::namespaced(
        c.client_as(&c.token("node", Some("n1")))
            .expect("n1 client"),
        "default",
    );
    let e = n1.get("db").await.expect_err("no pod of n1 uses db");
    assert!(matches!(e, Error::Forbidden(_)), "{e:?}");
    let mut pod = fixtures::pod("uses-db").no_namespace().node("n1").build();
    if let Some(c) = pod.spec.as_mut().and_then(|s| s.containers.first_mut()) {
        c.env.push(v1::EnvVar {
            name: "PASSWORD".into(),
            value_from: Some(v1::EnvVarSource {
                secret_key_ref: Some(v1::SecretKeySelector {
                    name: "db".into(),
                    key: "password".into(),
                    optional: None,
                }),
                ..Default::default()
            }),
            ..Default::default()
        });
    }
    Api::<v1::Pod>::namespaced(admin_client.clone(), "default")
        .create(&pod)
        .await
        .expect("pod uses-db");
    let got = n1.get("db").await.expect("n1's pod uses db");
    assert_eq!(
        got.data.get("password").map(Vec::as_slice),
        Some(&b"swordfish"[..])
    );
    let e = n1.get("tls").await.expect_err("no pod of n1 uses tls");
    assert!(matches!(e, Error::Forbidden(_)), "{e:?}");
    let e = n1
        .list(&ListParams::default())
        .await
        .expect_err("a node lists no Secrets");
    assert!(matches!(e, Error::Forbidden(_)), "{e:?}");
    let n2 = Api::<v1::Secret>::namespaced(
        c.client_as(&c.token("node", Some("n2")))
            .expect("n2 client"),
        "default",
    );
    let e = n2.get("db").await.expect_err("the pod is n1's, not n2's");
    assert!(matches!(e, Error::Forbidden(_)), "{e:?}");
}

/// 32 random bytes for an AES-256 key.
fn rand_key() -> [u8; 32] {
    use rand::Rng;
    let mut k = [0u8; 32];
    rand::rng().fill(&mut k);
    k
}
