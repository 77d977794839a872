//! The disaster-recovery runbook (`docs/disaster-recovery.md`) end to end:
//! a 3-replica control plane backing itself up every second, two agents
//! running a Deployment's pods, a snapshot taken, then every replica
//! SIGKILLed and two data dirs deleted (the quorum lost for good); a new
//! 3-replica cluster restored from the snapshot on the same addresses.

use crate::common;

use std::time::Duration;

use common::fixtures;
use common::{
    admin_client, eventually, run_cli, serial, start_agent, start_control_plane, Kubectl,
    PodReaper, Procs,
};
use futures::StreamExt;
use keelson_model::pod::is_ready;
use keelson_sdk::types::{self as v1};
use keelson_sdk::{Api, ListParams, Resource};

const NODES: [(&str, &str); 2] = [("n1", "127.0.0.31"), ("n2", "127.0.0.32")];

fn os(s: &str) -> &std::ffi::OsStr {
    std::ffi::OsStr::new(s)
}

/// (name, uid, resourceVersion, container startedAt) of each web pod.
async fn web_pods(pods: &Api<v1::Pod>) -> Vec<(String, String, String, String)> {
    let list = pods
        .list(&ListParams::default().labels("app=web"))
        .await
        .expect("list pods");
    let mut out: Vec<_> = list
        .items
        .iter()
        .map(|p| {
            let m = p.meta();
            let started = p
                .status
                .as_ref()
                .and_then(|s| s.container_statuses.first())
                .and_then(|c| c.state.as_ref())
                .and_then(|s| s.running.as_ref())
                .map(|r| r.started_at.clone())
                .unwrap_or_default();
            (
                m.name.clone(),
                m.uid.clone(),
                m.resource_version.clone(),
                started,
            )
        })
        .collect();
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_restored_from_a_snapshot_after_losing_its_quorum() {
    let _g = serial().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let backups = dir.path().join("backups");
    let backup_dir = backups.to_str().expect("utf-8 path").to_string();
    let mut c = start_control_plane(
        3,
        &dir.path().join("cluster"),
        &[
            "--backup-dir",
            &backup_dir,
            "--backup-interval",
            "1s",
            "--backup-keep",
            "2",
        ],
    )
    .await;
    let _reaper = PodReaper(dir.path().to_path_buf());
    let agents = Procs(
        NODES
            .iter()
            .map(|(n, a)| start_agent(&c, n, a, dir.path(), &[]))
            .collect(),
    );
    let cl = admin_client(&c);
    let pods: Api<v1::Pod> = Api::namespaced(cl.clone(), "default");
    let deployments: Api<v1::Deployment> = Api::namespaced(cl.clone(), "default");
    let config_maps: Api<v1::ConfigMap> = Api::namespaced(cl.clone(), "default");
    let deployment = fixtures::deployment("web", 2)
        .image("builtin/http-echo")
        .port("http", 8080)
        .build();
    deployments.create(&deployment).await.expect("create web");
    let settings = v1::ConfigMap {
        metadata: fixtures::meta("settings", &[]),
        data: [("mode".to_string(), "blue".to_string())].into(),
        ..Default::default()
    };
    config_maps
        .create(&settings)
        .await
        .expect("create settings");
    eventually(Duration::from_secs(30), "web's two pods Ready", || async {
        deployments
            .get("web")
            .await
            .is_ok_and(|d| d.status.is_some_and(|s| s.ready_replicas == 2))
    })
    .await;
    let before_pods = web_pods(&pods).await;
    let before_web = deployments.get("web").await.expect("web");
    let before_settings = config_maps.get("settings").await.expect("settings");
    for (_, uid, _, started) in &before_pods {
        assert!(!uid.is_empty() && !started.is_empty(), "{before_pods:?}");
    }

    // The periodic backups: a file per replica once the revision moves,
    // the newest two kept.
    let count = |prefix: &str| {
        std::fs::read_dir(&backups).map_or(0, |d| {
            d.filter_map(|e| e.ok())
                .filter(|e| {
                    let n = e.file_name().to_string_lossy().into_owned();
                    n.starts_with(prefix) && n.ends_with(".snap")
                })
                .count()
        })
    };
    for k in 0..4 {
        let tick = v1::ConfigMap {
            metadata: fixtures::meta(&format!("tick-{k}"), &[]),
            ..Default::default()
        };
        config_maps.create(&tick).await.expect("create tick");
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }
    eventually(
        Duration::from_secs(20),
        "two backups per replica",
        || async {
            ["keelson-m1-", "keelson-m2-", "keelson-m3-"]
                .iter()
                .all(|p| count(p) == 2)
        },
    )
    .await;
    let files: Vec<std::path::PathBuf> = std::fs::read_dir(&backups)
        .expect("backups")
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "snap"))
        .collect();
    for m in ["m1", "m2", "m3"] {
        let n = files
            .iter()
            .filter(|p| {
                p.file_name()
                    .is_some_and(|f| f.to_string_lossy().starts_with(&format!("keelson-{m}-")))
            })
            .count();
        assert!(n <= 2, "{m} keeps at most 2 backups: {files:?}");
    }
    // Each file checked from a copy: retention may remove one meanwhile.
    let mut checked = 0;
    for f in &files {
        let copy = dir.path().join("checked.snap");
        if std::fs::copy(f, &copy).is_err() {
            continue;
        }
        let (ok, out) = common::keelson_plain(&[os("snapshot"), os("status"), copy.as_os_str()]);
        assert!(ok && out.contains("REVISION"), "{}: {out}", f.display());
        checked += 1;
    }
    assert!(checked >= 3, "{files:?}");

    // The snapshot the cluster will be restored from.
    let snap = dir.path().join("cluster.snap");
    let (ok, out) = run_cli(&c, &["snapshot", "save", snap.to_str().expect("utf-8")]);
    assert!(ok, "{out}");
    let (ok, status) = common::keelson_plain(&[
        os("snapshot"),
        os("status"),
        snap.as_os_str(),
        os("-w"),
        os("json"),
    ]);
    assert!(ok, "{status}");
    let status: serde_json::Value = serde_json::from_str(status.trim()).expect("json");
    let snap_rev = status["revision"].as_i64().expect("revision");
    assert!(
        before_web
            .meta()
            .resource_version
            .parse::<i64>()
            .expect("rv")
            <= snap_rev,
        "the snapshot holds web"
    );

    // Written after the snapshot: lost with the old cluster.
    let lost = v1::ConfigMap {
        metadata: fixtures::meta("written-after", &[]),
        ..Default::default()
    };
    let lost = config_maps.create(&lost).await.expect("create");
    let after_rv = lost.meta().resource_version.clone();

    // Lose the quorum for good.
    for i in 0..3 {
        c.kill(i);
    }
    std::fs::remove_dir_all(&c.members[1].data_dir).expect("rm m2");
    std::fs::remove_dir_all(&c.members[2].data_dir).expect("rm m3");
    // The runbook: each member of the new cluster is seeded from the
    // snapshot into an empty data dir (the survivor's old one moved aside).
    let survivor = dir.path().join("m1-old");
    std::fs::rename(&c.members[0].data_dir, &survivor).expect("move m1 aside");
    let initial_cluster = c.initial_cluster().to_string();
    for m in &c.members {
        let (ok, out) = common::keelson_plain(&[
            os("snapshot"),
            os("restore"),
            snap.as_os_str(),
            os("--data-dir"),
            m.data_dir.as_os_str(),
            os("--name"),
            os(&m.name),
            os("--initial-cluster"),
            os(&initial_cluster),
        ]);
        assert!(ok, "restore {}: {out}", m.name);
    }
    for i in 0..3 {
        c.restart(i).expect("start restored replica");
    }
    c.wait_healthy(Duration::from_secs(60))
        .await
        .expect("restored cluster healthy");

    // Every object is back at its resourceVersion; the later one is not.
    let web = deployments.get("web").await.expect("web restored");
    assert_eq!(web.meta().uid, before_web.meta().uid);
    assert_eq!(
        web.meta().resource_version,
        before_web.meta().resource_version
    );
    let settings = config_maps.get("settings").await.expect("settings");
    assert_eq!(settings, before_settings);
    assert!(
        config_maps.get("written-after").await.is_err(),
        "written after the snapshot"
    );

    // A watch from a revision seen after the snapshot is told to relist
    // (410 Gone), over the Kubernetes API and the gRPC API alike.
    let kubectl = Kubectl::new(dir.path(), &c, 0, &c.token("admin", None));
    let (_, out, err) = kubectl.run(&[
        "get",
        "--raw",
        &format!("/api/v1/namespaces/default/configmaps?watch=1&resourceVersion={after_rv}&timeoutSeconds=5"),
    ]);
    assert!(
        out.contains("\"code\":410") && out.contains("Expired"),
        "{out}{err}"
    );
    let first = match config_maps.watch(&ListParams::default(), &after_rv).await {
        Err(e) => Some(Err(e)),
        Ok(stream) => {
            let mut stream = Box::pin(stream);
            tokio::time::timeout(Duration::from_secs(10), stream.next())
                .await
                .expect("the watch answers")
        }
    };
    assert!(
        matches!(first, Some(Err(keelson_sdk::Error::Expired(_)))),
        "a gRPC watch from {after_rv} must expire: {:?}",
        first.map(|r| r.map(|_| "an event"))
    );
    let (ok, out, err) = kubectl.run(&["get", "configmap", "settings", "-o", "name"]);
    assert!(ok && out.trim() == "configmap/settings", "{out}{err}");

    // The agents reconnect: nodes Ready, the same pods still running (not
    // restarted, not replaced), answering.
    let node_api: Api<v1::Node> = Api::all(cl.clone());
    eventually(Duration::from_secs(30), "nodes Ready again", || async {
        let mut ready = 0;
        for (n, _) in NODES {
            if node_api.get(n).await.is_ok_and(|n| {
                n.status.is_some_and(|s| {
                    s.conditions
                        .iter()
                        .any(|c| c.r#type == "Ready" && c.status == "True")
                })
            }) {
                ready += 1;
            }
        }
        ready == NODES.len()
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after_pods = web_pods(&pods).await;
    let ids = |v: &[(String, String, String, String)]| {
        v.iter()
            .map(|(n, u, _, s)| (n.clone(), u.clone(), s.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        ids(&after_pods),
        ids(&before_pods),
        "the same pods, started once"
    );
    for p in pods
        .list(&ListParams::default().labels("app=web"))
        .await
        .expect("list")
        .items
    {
        assert!(is_ready(&p), "{} ready", p.meta().name);
        assert_eq!(fixtures::restarts(&p), 0);
        let ip = p
            .status
            .as_ref()
            .map(|s| s.pod_ip.clone())
            .unwrap_or_default();
        assert!(
            common::http_get(&format!("{ip}:8080"), "/").is_some(),
            "{ip} answers"
        );
    }
    // The control plane works: a scale is carried out.
    let (ok, out) = run_cli(&c, &["scale", "deployment", "web", "--replicas", "3"]);
    assert!(ok, "{out}");
    eventually(Duration::from_secs(30), "web scaled to 3", || async {
        deployments
            .get("web")
            .await
            .is_ok_and(|d| d.status.is_some_and(|s| s.ready_replicas == 3))
    })
    .await;
    drop(agents);
    let _ = std::fs::remove_dir_all(&survivor);
}
