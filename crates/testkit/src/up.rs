//! A `keelson up` process under test: its output lines collected, its pid
//! files read, and everything it started stopped when it is dropped.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::process::{signal, PodReaper};

/// A `keelson up` process: started in a directory with arguments, its
/// output lines collected. Dropping it stops the cluster (SIGTERM to `up`,
/// then `keelson down` for anything left, then the pods of agents that
/// were killed).
pub struct Up {
    bin: PathBuf,
    pub child: Option<Child>,
    pub data_dir: PathBuf,
    pub lines: Arc<Mutex<Vec<String>>>,
}

/// How long `up` gets to stop on a signal.
const STOP_TIMEOUT: Duration = Duration::from_secs(60);

impl Up {
    /// `<bin> up --data-dir <data_dir> <args>` in `cwd` with HOME=`home`.
    pub fn start(
        bin: &Path,
        data_dir: &Path,
        args: &[&str],
        cwd: &Path,
        home: &Path,
    ) -> anyhow::Result<Up> {
        let mut child = std::process::Command::new(bin)
            .arg("up")
            .arg("--data-dir")
            .arg(data_dir)
            .args(args)
            .current_dir(cwd)
            .env("HOME", home)
            .env_remove("KEELSON_CONFIG")
            .env_remove("KUBECONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| anyhow::anyhow!("start keelson up: {e}"))?;
        let lines = Arc::new(Mutex::new(Vec::new()));
        if let Some(out) = child.stdout.take() {
            let lines = lines.clone();
            std::thread::spawn(move || {
                for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                    eprintln!("up| {line}");
                    if let Ok(mut l) = lines.lock() {
                        l.push(line);
                    }
                }
            });
        }
        Ok(Up {
            bin: bin.to_path_buf(),
            child: Some(child),
            data_dir: data_dir.to_path_buf(),
            lines,
        })
    }

    pub fn output(&self) -> String {
        self.lines.lock().map(|l| l.join("\n")).unwrap_or_default()
    }

    /// The last lines of each process' log (`<data dir>/logs/*.log`), for
    /// a failure's report.
    pub fn logs_tail(&self) -> String {
        const LINES: usize = 15;
        let mut out = String::new();
        let Ok(dir) = std::fs::read_dir(self.data_dir.join("logs")) else {
            return out;
        };
        let mut paths: Vec<PathBuf> = dir.filter_map(|e| e.ok().map(|e| e.path())).collect();
        paths.sort();
        for p in paths {
            let text = std::fs::read_to_string(&p).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            out.push_str(&format!("---- last lines of {} ----\n", p.display()));
            for l in &lines[lines.len().saturating_sub(LINES)..] {
                out.push_str(l);
                out.push('\n');
            }
        }
        out
    }

    /// Wait until `up` printed `what`; panics if it exits first.
    pub async fn wait_for_line(&mut self, what: &str, timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if self.output().contains(what) {
                return;
            }
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(status)) = c.try_wait() {
                    panic!(
                        "keelson up exited ({status}) before {what:?}:\n{}\n{}",
                        self.output(),
                        self.logs_tail()
                    );
                }
            }
            if tokio::time::Instant::now() > deadline {
                panic!(
                    "keelson up: no {what:?} within {timeout:?}:\n{}",
                    self.output()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The pid `up` recorded for one of its processes (m1, n2...).
    pub fn pid(&self, name: &str) -> u32 {
        std::fs::read_to_string(self.data_dir.join("run").join(format!("{name}.pid")))
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or_else(|| panic!("no pid file for {name}"))
    }

    /// Send `sig` to `up` and wait for it to exit (SIGKILL after a minute).
    pub fn stop(&mut self, sig: i32) -> ExitStatus {
        let mut c = self.child.take().expect("up runs");
        signal(c.id(), sig);
        let deadline = std::time::Instant::now() + STOP_TIMEOUT;
        loop {
            if let Ok(Some(s)) = c.try_wait() {
                return s;
            }
            if std::time::Instant::now() > deadline {
                let _ = c.kill();
                panic!("keelson up did not stop within {STOP_TIMEOUT:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        if self.child.is_some() {
            self.stop(libc::SIGTERM);
        }
        let _ = std::process::Command::new(&self.bin)
            .arg("down")
            .arg("--data-dir")
            .arg(&self.data_dir)
            .stdout(Stdio::null())
            .status();
        // Pods of agents that were SIGKILLed (nothing stopped them).
        drop(PodReaper(self.data_dir.clone()));
    }
}
