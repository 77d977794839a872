//! Per-object retry with back-off, the bookkeeping of client-go's
//! rate-limited workqueue (`ItemExponentialFailureRateLimiter`) and of
//! kube-rs' `error_policy`: an object whose action failed is tried again
//! after a delay that doubles with each failure in a row, from
//! [`RETRY_BASE_MS`] to [`RETRY_MAX_MS`], and is left alone until then; a
//! success forgets it.
//!
//! Pure: keys are strings, `now` is a parameter, nothing sleeps. The loop
//! in [`crate::controller`] asks [`Retries::due`] before reconciling an
//! object, feeds each pass's outcomes back, and sleeps until
//! [`Retries::next_due`] at the latest.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// The first back-off after a failure. A little over one batching pause
/// (`BATCH_MS`, 20 ms): a conflict usually means the cache had not yet
/// shown a write, and the pass right after would decide on the same stale
/// copy; 50 ms lets the watch catch up without a delay anyone would see.
pub const RETRY_BASE_MS: u64 = 50;
/// The longest back-off: the resync period of ReplicaSets and
/// Deployments (1 s), the most often a failing object was tried before
/// back-off existed. Longer would hold a scale-up back after a store
/// failover (its writes fail with Unavailable for up to a second or two,
/// and the delays double meanwhile), which the failover tests time;
/// shorter would try a hot-failing object on nearly every cache change
/// (5 doublings from the base get there).
pub const RETRY_MAX_MS: u64 = 1_000;

/// One object waiting out a back-off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Backoff {
    /// The delay of the last failure; the next one doubles it.
    delay: Duration,
    /// When the object may be tried again.
    due: Instant,
}

/// The objects whose last attempt failed, by key.
#[derive(Debug, Default)]
pub struct Retries {
    waiting: HashMap<String, Backoff>,
}

impl Retries {
    /// Record a failure of `key` at `now`: it waits [`RETRY_BASE_MS`] after
    /// a first failure, twice its last delay after another (at most
    /// [`RETRY_MAX_MS`]). Returns the delay.
    pub fn failed(&mut self, key: &str, now: Instant) -> Duration {
        let base = Duration::from_millis(RETRY_BASE_MS);
        let max = Duration::from_millis(RETRY_MAX_MS);
        let delay = match self.waiting.get(key) {
            Some(b) => b.delay.saturating_mul(2).clamp(base, max),
            None => base,
        };
        let due = now.checked_add(delay).unwrap_or(now);
        self.waiting.insert(key.to_string(), Backoff { delay, due });
        delay
    }

    /// Record a success of `key`: its back-off is forgotten.
    pub fn succeeded(&mut self, key: &str) {
        self.waiting.remove(key);
    }

    /// Whether `key` may be tried at `now` (it is not waiting out a
    /// back-off).
    pub fn due(&self, key: &str, now: Instant) -> bool {
        self.waiting.get(key).is_none_or(|b| b.due <= now)
    }

    /// Whether `key` failed last time it was tried (and has not been
    /// forgotten since).
    pub fn contains(&self, key: &str) -> bool {
        self.waiting.contains_key(key)
    }

    /// The earliest retry due strictly after `after`: retries due by then
    /// were open to the pass made at `after`, so only later ones need a
    /// wake-up.
    pub fn next_due(&self, after: Instant) -> Option<Instant> {
        self.waiting
            .values()
            .map(|b| b.due)
            .filter(|&d| d > after)
            .min()
    }

    /// Forget objects whose retry came due more than [`RETRY_MAX_MS`] before
    /// `now` without failing again: they were tried and are fine, or were
    /// never tried again because they are gone. Keeps the map as small as
    /// the set of objects failing now.
    pub fn prune(&mut self, now: Instant) {
        let max = Duration::from_millis(RETRY_MAX_MS);
        self.waiting
            .retain(|_, b| now.checked_duration_since(b.due).is_none_or(|d| d <= max));
    }

    /// How many objects are remembered as failing.
    pub fn len(&self) -> usize {
        self.waiting.len()
    }

    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// What happens to key "a" at one moment of a script.
    #[derive(Clone, Copy, Debug)]
    enum Step {
        Fail,
        Succeed,
        Prune,
    }

    /// Each case replays a script on key "a" and checks the delay every
    /// failure got.
    #[test]
    fn delays_double_from_base_to_max_and_reset_on_success() {
        struct Case {
            name: &'static str,
            /// (time in ms, step) in order.
            steps: &'static [(u64, Step)],
            /// The delay each `Fail` returns, in order.
            delays_ms: &'static [u64],
        }
        use Step::*;
        let cases = [
            Case {
                name: "first failure waits the base",
                steps: &[(0, Fail)],
                delays_ms: &[50],
            },
            Case {
                name: "failures in a row double",
                steps: &[(0, Fail), (50, Fail), (150, Fail), (350, Fail)],
                delays_ms: &[50, 100, 200, 400],
            },
            Case {
                name: "doubling stops at the max",
                steps: &[
                    (0, Fail),
                    (0, Fail),
                    (0, Fail),
                    (0, Fail),
                    (0, Fail),
                    (0, Fail),
                    (0, Fail),
                    (0, Fail),
                    (0, Fail),
                ],
                delays_ms: &[50, 100, 200, 400, 800, 1_000, 1_000, 1_000, 1_000],
            },
            Case {
                name: "a success starts over at the base",
                steps: &[(0, Fail), (50, Fail), (150, Succeed), (200, Fail)],
                delays_ms: &[50, 100, 50],
            },
            Case {
                name: "a prune within the max keeps the doubling",
                steps: &[(0, Fail), (50, Fail), (150 + 1_000, Prune), (1_200, Fail)],
                delays_ms: &[50, 100, 200],
            },
            Case {
                name: "a prune past the max forgets the key",
                steps: &[(0, Fail), (50, Fail), (150 + 1_001, Prune), (1_200, Fail)],
                delays_ms: &[50, 100, 50],
            },
        ];
        let start = Instant::now();
        for c in cases {
            let mut r = Retries::default();
            let mut delays = Vec::new();
            for &(at, step) in c.steps {
                let now = start + ms(at);
                match step {
                    Fail => delays.push(r.failed("a", now).as_millis() as u64),
                    Succeed => r.succeeded("a"),
                    Prune => r.prune(now),
                }
            }
            assert_eq!(delays, c.delays_ms, "{}", c.name);
        }
    }

    #[test]
    fn due_only_after_the_back_off() {
        let start = Instant::now();
        let mut r = Retries::default();
        r.failed("a", start); // due at 50
        r.failed("b", start);
        r.failed("b", start + ms(50)); // due at 150
                                       // (key, at ms, due?)
        let cases = [
            ("a", 0, false),
            ("a", 49, false),
            ("a", 50, true),
            ("a", 1_000, true),
            ("b", 50, false),
            ("b", 149, false),
            ("b", 150, true),
            ("never failed", 0, true),
        ];
        for (key, at, want) in cases {
            assert_eq!(r.due(key, start + ms(at)), want, "{key} at {at} ms");
        }
        r.succeeded("b");
        assert!(r.due("b", start), "a success clears the back-off");
        assert!(!r.contains("b"));
        assert!(r.contains("a"));
    }

    #[test]
    fn next_due_is_the_earliest_retry_after_the_last_pass() {
        let start = Instant::now();
        let mut r = Retries::default();
        assert_eq!(r.next_due(start), None, "nothing failed");
        r.failed("a", start); // due at 50
        r.failed("b", start + ms(10)); // due at 60
        r.failed("c", start + ms(10));
        r.failed("c", start + ms(10)); // due at 110
                                       // (last pass at ms, next wake-up at ms)
        let cases = [
            (0, Some(50)),
            (49, Some(50)),
            (50, Some(60)),
            (60, Some(110)),
            (110, None),
            (5_000, None),
        ];
        for (after, want) in cases {
            assert_eq!(
                r.next_due(start + ms(after)),
                want.map(|w| start + ms(w)),
                "after {after} ms"
            );
        }
    }

    #[test]
    fn prune_forgets_only_keys_long_past_due() {
        let start = Instant::now();
        let mut r = Retries::default();
        r.failed("old", start); // due at 50
        r.failed("new", start + ms(900)); // due at 950
        r.prune(start + ms(50 + RETRY_MAX_MS));
        assert!(r.contains("old") && r.contains("new"));
        r.prune(start + ms(51 + RETRY_MAX_MS));
        assert!(!r.contains("old"), "due more than the max ago");
        assert!(r.contains("new"));
        assert_eq!(r.len(), 1);
        r.succeeded("new");
        assert!(r.is_empty());
    }
}
