//! CronJobs as `keelson server` runs their controller (a Job per schedule
//! time), against simulated nodes whose pods end after
//! `sim.keelson.dev/exit-after`: kubectl creates one (a protobuf body),
//! its Jobs run and complete, the replica holding the controller lease is
//! SIGKILLed just before a schedule time and the new leader starts that
//! time's Job exactly once; `kubectl create job --from=cronjob/...`; the
//! CronJob's deletion takes its Jobs.

use crate::common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime};

use crate::controllers::holder;
use common::{admin_client, eventually, serial, simulated_nodes, start_control_plane};
use keelson_sdk::types::{self as v1};
use keelson_sdk::{Api, ListParams, Resource};

/// Seconds since the epoch.
fn epoch_secs(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

fn succeeded(j: &v1::Job) -> bool {
    j.status.as_ref().is_some_and(|s| {
        s.conditions
            .iter()
            .any(|c| c.r#type == "Complete" && c.status == "True")
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cron_jobs_run_once_per_schedule_time_across_a_controller_failover() {
    let _g = serial().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut c = start_control_plane(3, &dir.path().join("cluster"), &[]).await;
    let _agents = simulated_nodes(&c, 2, "n", dir.path());
    let cl = admin_client(&c);
    let admin = c.token("admin", None);
    let kubectl: Vec<common::Kubectl> = (0..c.members.len())
        .map(|i| common::Kubectl::new(dir.path(), &c, i, &admin))
        .collect();
    kubectl[0].ok(&[
        "create",
        "cronjob",
        "tick",
        "--image=builtin/sleep",
        "--schedule=* * * * *",
    ]);
    // Its pods end a second after they start; keep the history.
    kubectl[0].ok(&[
        "patch",
        "cronjob",
        "tick",
        "--type=merge",
        "-p",
        r#"{"spec": {"successfulJobsHistoryLimit": 10, "jobTemplate": {"spec": {"template":
             {"metadata": {"annotations": {"sim.keelson.dev/exit-after": "1s"}}}}}}}"#,
    ]);
    let cronjobs: Api<v1::CronJob> = Api::namespaced(cl.clone(), "default");
    let jobs: Api<v1::Job> = Api::namespaced(cl.clone(), "default");
    let pods: Api<v1::Pod> = Api::namespaced(cl.clone(), "default");
    let status = || async {
        cronjobs
            .get("tick")
            .await
            .ok()
            .and_then(|c| c.status)
            .unwrap_or_default()
    };
    // The first minute boundary runs a Job, which completes.
    eventually(Duration::from_secs(80), "a first run", || async {
        !status().await.last_schedule_time.is_empty()
    })
    .await;
    eventually(
        Duration::from_secs(30),
        "the first run completes",
        || async { !status().await.last_successful_time.is_empty() },
    )
    .await;
    let (row, table) = kubectl[1].first_row(&["get", "cronjob", "tick"]);
    // NAME SCHEDULE(5 words) TIMEZONE SUSPEND ACTIVE LAST-SCHEDULE AGE
    assert_eq!(
        row.get(..9),
        Some(&["tick", "*", "*", "*", "*", "*", "<none>", "False", "0"].map(String::from)[..]),
        "{table}"
    );

    // SIGKILL the controller lease holder 0.4 s before a schedule time at
    // least 5 s away.
    let now = epoch_secs(SystemTime::now());
    let mut boundary = (now / 60 + 1) * 60;
    if boundary - now < 5 {
        boundary += 60;
    }
    let fire = SystemTime::UNIX_EPOCH + Duration::from_secs(boundary) - Duration::from_millis(400);
    tokio::time::sleep(fire.duration_since(SystemTime::now()).unwrap_or_default()).await;
    let victim = holder(&cl, "keelson-controller-manager")
        .await
        .expect("a lease holder");
    let i = c
        .members
        .iter()
        .position(|m| m.name == victim)
        .expect("the holder is a replica");
    c.kill(i);
    let killed = Instant::now();
    let name = format!("tick-{}", boundary / 60);
    eventually(
        Duration::from_secs(40),
        "the new leader starts the schedule time's run",
        || async { jobs.get(&name).await.is_ok() },
    )
    .await;
    eprintln!("run {name} started {:?} after the kill", killed.elapsed());
    assert_ne!(
        holder(&cl, "keelson-controller-manager").await.as_deref(),
        Some(victim.as_str()),
        "the lease moved"
    );
    c.restart(i).expect("restart the killed replica");
    c.wait_healthy(Duration::from_secs(30))
        .await
        .expect("healthy again");
    eventually(Duration::from_secs(30), "that run completes", || async {
        jobs.get(&name).await.is_ok_and(|j| succeeded(&j))
    })
    .await;

    // One Job per schedule time, each named for it and with one pod.
    let all = jobs.list(&ListParams::default()).await.expect("jobs").items;
    let mut by_time: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for j in &all {
        let m = j.meta();
        let at = m
            .annotations
            .get("batch.kubernetes.io/cronjob-scheduled-timestamp")
            .cloned()
            .unwrap_or_default();
        by_time.entry(at).or_default().push(m.name.clone());
        let mine = pods
            .list(
                &ListParams::default().labels(&format!("batch.kubernetes.io/job-name={}", m.name)),
            )
            .await
            .expect("pods")
            .items;
        assert_eq!(mine.len(), 1, "{}: one pod: {mine:?}", m.name);
    }
    assert!(all.len() >= 2, "{by_time:?}");
    for (at, names) in &by_time {
        assert_eq!(names.len(), 1, "schedule time {at} ran {names:?}");
    }

    // kubectl's manual run: a Job from the CronJob's template, owned by it.
    kubectl[2].ok(&["create", "job", "by-hand", "--from=cronjob/tick"]);
    eventually(
        Duration::from_secs(30),
        "the manual run completes",
        || async { jobs.get("by-hand").await.is_ok_and(|j| succeeded(&j)) },
    )
    .await;
    let by_hand = jobs.get("by-hand").await.expect("by-hand");
    assert_eq!(
        keelson_model::controller_of(by_hand.meta()).map(|r| r.kind.as_str()),
        Some("CronJob")
    );

    // Deleting the CronJob deletes its Jobs and their pods.
    kubectl[0].ok(&["delete", "cronjob", "tick"]);
    eventually(
        Duration::from_secs(30),
        "its Jobs and pods are gone",
        || async {
            jobs.list(&ListParams::default())
                .await
                .is_ok_and(|l| l.items.is_empty())
                && pods
                    .list(&ListParams::default())
                    .await
                    .is_ok_and(|l| l.items.is_empty())
        },
    )
    .await;
}
