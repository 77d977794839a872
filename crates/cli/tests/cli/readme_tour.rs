//! README.md's five-minute tour, run as written: `keelson up` (the run
//! command's cluster, default addresses) in a scratch directory, then every
//! line between the tour markers in one `bash -e` script, with the
//! `keelson` binary on PATH. A command that fails fails the test, so the
//! README cannot drift from the code.

use crate::common;

use std::time::Duration;

use common::{keelson_bin, Up};

const START: &str = "<!-- tour:start";
const END: &str = "<!-- tour:end -->";

/// The tour's shell lines, comments and blanks dropped.
fn tour_lines(readme: &str) -> Vec<String> {
    let start = readme.find(START).expect("tour start marker");
    let end = readme[start..].find(END).expect("tour end marker") + start;
    let mut in_block = false;
    let mut lines = Vec::new();
    for line in readme[start..end].lines() {
        if line.starts_with("```") {
            in_block = !in_block;
            continue;
        }
        if in_block && !line.trim().is_empty() && !line.trim_start().starts_with('#') {
            lines.push(line.to_string());
        }
    }
    lines
}

#[test]
fn markers_enclose_commands() {
    let readme = "x\n<!-- tour:start -->\n```sh\nkeelson get nodes   # hi\n\n# only a comment\ncurl -s a:1\n```\n<!-- tour:end -->\n```sh\nnot this\n```";
    assert_eq!(
        tour_lines(readme),
        ["keelson get nodes   # hi", "curl -s a:1"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_tour_runs_as_written() {
    let root = format!("{}/../..", env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(format!("{root}/README.md")).expect("README.md");
    let lines = tour_lines(&readme);
    assert!(lines.len() >= 10, "the tour has commands: {lines:?}");

    // A scratch directory standing in for the repository root: examples/
    // there, `keelson up`'s ./.keelson there, $HOME there.
    let dir = tempfile::tempdir().expect("tempdir");
    let home = dir.path().join("home");
    std::fs::create_dir_all(&home).expect("home");
    std::os::unix::fs::symlink(format!("{root}/examples"), dir.path().join("examples"))
        .expect("link examples");
    let data = dir.path().join(".keelson");
    let mut up =
        Up::start(&keelson_bin(), &data, &[], dir.path(), &home).expect("start keelson up");
    up.wait_for_line("The cluster is up.", Duration::from_secs(90))
        .await;

    let bin_dir = keelson_bin()
        .parent()
        .expect("the binary's directory")
        .to_path_buf();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let script = format!("set -euo pipefail\nset -x\n{}\n", lines.join("\n"));
    let run = tokio::task::spawn_blocking({
        let (dir, home) = (dir.path().to_path_buf(), home.clone());
        move || {
            std::process::Command::new("timeout")
                .args(["300", "bash", "-c", &script])
                .current_dir(&dir)
                .env("PATH", path)
                .env("HOME", home)
                .env_remove("KEELSON_CONFIG")
                .env_remove("KUBECONFIG")
                .env_remove("KEELSON_SERVER")
                .env_remove("KEELSON_TOKEN")
                .output()
        }
    });
    let out = run.await.expect("join").expect("run the tour");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    if !out.status.success() {
        let pods = std::process::Command::new(keelson_bin())
            .args(["get", "pods", "-o", "yaml", "--config"])
            .arg(home.join(".keelson").join("config"))
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).to_string())
            .unwrap_or_default();
        eprintln!("--- pods\n{pods}");
        for name in ["n1", "n2"] {
            let log = std::fs::read_to_string(data.join("logs").join(format!("{name}.log")))
                .unwrap_or_default();
            eprintln!("--- {name}.log\n{log}");
        }
    }
    assert!(
        out.status.success(),
        "the tour failed ({}):\n--- stdout\n{stdout}\n--- stderr (commands as run)\n{stderr}\n--- up\n{}",
        out.status,
        up.output()
    );
    // What the tour says the reader will see.
    for want in [
        "hello from keelson from web-",
        "hello again from web-",
        "0/2 nodes are available",
        "successfully rolled out",
    ] {
        assert!(
            stdout.contains(want),
            "{want:?} in the tour's output:\n{stdout}"
        );
    }
    assert!(
        up.output().contains("m1 exited (SIGKILL)"),
        "{}",
        up.output()
    );
    drop(up);
}
