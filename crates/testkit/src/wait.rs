//! Waiting in tests: polling a condition with a bound, and one cluster
//! test at a time.

use std::time::Duration;

/// Cluster tests run one at a time: each starts several processes, and the
/// machine has two cores.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Hold this for the length of a test that starts a cluster.
pub async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    SERIAL.lock().await
}

/// How often [`eventually`] polls.
const POLL_MS: u64 = 100;

/// Poll `f` until it returns true; panics naming `what` after `timeout`.
pub async fn eventually<F, Fut>(timeout: Duration, what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if f().await {
            return;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(POLL_MS)).await;
    }
}
