//! The `keelson-builtin` binary as the process runtime starts it.

use std::process::Command;
use std::time::{Duration, Instant};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_keelson-builtin"))
}

#[test]
fn without_a_name_it_prints_its_usage_and_exits_2() {
    let out = bin().output().expect("run keelson-builtin");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("usage: keelson-builtin") && err.contains("http-echo"),
        "{err}"
    );
}

#[test]
fn an_unknown_image_exits_2_naming_the_known_ones() {
    let out = bin().arg("nginx").output().expect("run keelson-builtin");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown builtin image \"nginx\""), "{err}");
}

#[test]
fn crash_after_exits_with_its_code_after_its_delay() {
    let t0 = Instant::now();
    let out = bin()
        .args(["crash-after", "0.2", "7"])
        .output()
        .expect("run keelson-builtin");
    assert_eq!(out.status.code(), Some(7));
    assert!(t0.elapsed() >= Duration::from_millis(200));
}
