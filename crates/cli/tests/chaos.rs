//! The short seeded chaos scenario CI runs: `keelson chaos` for 90 s with
//! every fault kind it has (SIGKILL of the leader or of a random replica,
//! SIGSTOP pauses, partitions through the fault layer, client traffic cut
//! off or reset, agent restarts), KV clients and watchers, Deployments
//! scaled and rolled on simulated nodes; the command exits non-zero on any
//! violation, and its report must show faults, judged operations and the
//! control plane's verdicts. And a check of the checker: the same harness
//! with serializable (possibly stale) reads under partitions must report
//! the history not linearizable.

/// One chaos cluster at a time (the machine has two cores).
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn a_short_seeded_chaos_run_finds_no_violation() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_keelson"))
        .args(["chaos", "--duration", "90s", "--seed", "20261123"])
        .env("RUST_LOG", "warn")
        .output()
        .expect("run keelson chaos");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "keelson chaos failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    println!("{stdout}");
    assert!(stdout.contains("violations: 0"), "{stdout}");
    let faults: usize = stdout
        .lines()
        .find_map(|l| l.strip_prefix("faults injected: "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0);
    assert!(faults >= 5, "faults were injected: {faults}\n{stdout}");
    for verdict in [
        "[ok] linearizable per key",
        "[ok] no acknowledged write lost",
        "[ok] watch streams ordered",
        "[ok] revisions never go backwards",
        "[ok] every control-plane watch saw the whole run",
        "[ok] no pod bound twice",
        "[ok] no ReplicaSet beyond its surge",
        "[ok] no acknowledged Deployment change lost",
        "[ok] every Deployment back at its desired state",
    ] {
        assert!(stdout.contains(verdict), "{verdict} in\n{stdout}");
    }
    // The control plane had work to do under the faults.
    let changes: usize = stdout
        .lines()
        .find_map(|l| l.strip_prefix("control plane: "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(changes >= 20, "spec changes: {changes}\n{stdout}");
    assert!(!stdout.contains("search budget ran out"), "{stdout}");
}

#[test]
fn stale_reads_are_caught() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_keelson"))
        .args([
            "chaos",
            "--duration",
            "20s",
            "--seed",
            "7",
            "--fault-every",
            "2s",
            "--faults",
            "partition-random",
            "--deployments",
            "0",
            "--serializable-reads",
        ])
        .env("RUST_LOG", "warn")
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("run keelson chaos");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "stale reads went unnoticed:\n{stdout}"
    );
    assert!(
        stdout.contains("[VIOLATED] linearizable per key"),
        "{stdout}\n{stderr}"
    );
    assert!(
        stderr.contains("reproduce with: keelson chaos --seed 7"),
        "{stderr}"
    );
}
