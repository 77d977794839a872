//! The one loop every controller runs in ([`run_controller`]), and the
//! interface a controller gives it ([`Controller`]).
//!
//! The loop sleeps until one of the caches the controller reads changes,
//! leadership changes, the controller's resync period passes, or an
//! object's retry comes due; pauses [`BATCH_MS`] so a burst of changes is
//! one pass; and, while this instance leads, runs a pass. A pass
//! reconciles every object it finds out of date, skipping those still
//! waiting out a back-off ([`PassCtx::due`]), and reports per object key
//! whether its writes succeeded ([`PassCtx::succeeded`],
//! [`PassCtx::failed`]). After the pass the loop feeds those outcomes to
//! [`Retries`] and logs each failure once, with the object's key and the
//! delay before its retry.
//!
//! What the loop deliberately does not do: decide (the pass calls the pure
//! cores), hide the triggering change from the pass (a pass looks at
//! everything, level-triggered), or keep a controller's own state (that is
//! the controller's struct, kept across passes and leadership changes).

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use keelson_sdk::{Error, Leadership};
use tokio::sync::watch;
use tracing::Instrument;

use crate::retry::Retries;
use crate::Ctx;

/// Pause after a wake-up before a pass, so a burst of changes is one pass.
pub const BATCH_MS: u64 = 20;

/// A controller: what it reads, how often it looks again unprompted, and
/// one pass over the objects it reconciles.
pub trait Controller: Send + 'static {
    /// Names the controller in logs and spans.
    const NAME: &'static str;
    /// A pass at least this often without any change (time-based decisions,
    /// and a safety net).
    const RESYNC: Duration;
    /// The pause after a wake-up before a pass, so a burst of changes is
    /// one pass.
    const BATCH: Duration = Duration::from_millis(BATCH_MS);
    /// The caches whose changes wake the controller (at least one).
    fn changes(ctx: &Ctx) -> Vec<watch::Receiver<u64>>;
    /// Reconcile every object due ([`PassCtx::due`]) against the caches in
    /// `ctx` and carry out the actions, reporting each object's outcome.
    /// Runs only while this instance leads; checks [`Ctx::leading`] again
    /// before writing.
    fn pass(&mut self, ctx: &Ctx, pass: &mut PassCtx<'_>) -> impl Future<Output = ()> + Send;
}

/// What a pass is told, and what it reports back: per object key, whether
/// its writes succeeded.
pub struct PassCtx<'a> {
    retries: &'a Retries,
    now: Instant,
    became_leader: bool,
    /// Per key: `None` succeeded, `Some` the first failure of this pass.
    outcomes: HashMap<String, Option<Error>>,
}

impl<'a> PassCtx<'a> {
    pub fn new(retries: &'a Retries, now: Instant, became_leader: bool) -> PassCtx<'a> {
        PassCtx {
            retries,
            now,
            became_leader,
            outcomes: HashMap::new(),
        }
    }

    /// Whether this is the first pass since this instance became leader.
    pub fn became_leader(&self) -> bool {
        self.became_leader
    }

    /// Whether the object `key` may be reconciled in this pass: it is not
    /// waiting out the back-off of an earlier failure.
    pub fn due(&self, key: &str) -> bool {
        self.retries.due(key, self.now)
    }

    /// The object `key` was reconciled and every write for it succeeded (or
    /// none was needed). A failure reported in the same pass wins.
    pub fn succeeded(&mut self, key: &str) {
        // Only a key that failed before has anything to forget.
        if self.retries.contains(key) && !self.outcomes.contains_key(key) {
            self.outcomes.insert(key.to_string(), None);
        }
    }

    /// A write for the object `key` failed: it is retried after a back-off.
    /// The first failure of a pass is the one logged.
    pub fn failed(&mut self, key: &str, error: Error) {
        let slot = self.outcomes.entry(key.to_string()).or_insert(None);
        if slot.is_none() {
            *slot = Some(error);
        }
    }

    /// [`PassCtx::succeeded`] or [`PassCtx::failed`], by `result`.
    pub fn report(&mut self, key: &str, result: keelson_sdk::Result<()>) {
        match result {
            Ok(()) => self.succeeded(key),
            Err(e) => self.failed(key, e),
        }
    }

    /// The outcomes, for [`settle`].
    fn into_outcomes(self) -> HashMap<String, Option<Error>> {
        self.outcomes
    }
}

/// An object's key where one controller writes several kinds:
/// `Kind/namespace/name`, or `Kind/name` when cluster-scoped.
pub fn kind_key(kind: &str, namespace: &str, name: &str) -> String {
    if namespace.is_empty() {
        format!("{kind}/{name}")
    } else {
        format!("{kind}/{namespace}/{name}")
    }
}

/// A failure to log: the object's key, the error, and the delay before
/// its retry.
type Failure = (String, Error, Duration);

/// Feed a pass's outcomes to `retries` at `now`; the failures, sorted by
/// key.
fn settle(
    retries: &mut Retries,
    outcomes: HashMap<String, Option<Error>>,
    now: Instant,
) -> Vec<Failure> {
    let mut failures = Vec::new();
    for (key, outcome) in outcomes {
        match outcome {
            None => retries.succeeded(&key),
            Some(e) => {
                let delay = retries.failed(&key, now);
                failures.push((key, e, delay));
            }
        }
    }
    retries.prune(now);
    failures.sort_by(|a, b| a.0.cmp(&b.0));
    failures
}

/// Run `controller` until the task is aborted.
pub async fn run_controller<C: Controller>(ctx: Arc<Ctx>, mut controller: C) {
    let mut changes = C::changes(&ctx);
    assert!(
        !changes.is_empty(),
        "controller {} reads no caches",
        C::NAME
    );
    let mut leadership = ctx.leadership.clone();
    let mut retries = Retries::default();
    let mut was_leading = false;
    // When work was last looked for: retries due by then were open to that
    // pass (or moot, when not leading), so only later ones need a wake-up.
    let mut looked = Instant::now();
    loop {
        let retry_at = retries.next_due(looked);
        let leading = wait_for_work(
            &ctx,
            &mut changes,
            &mut leadership,
            (C::RESYNC, C::BATCH),
            retry_at,
        )
        .await;
        let now = Instant::now();
        looked = now;
        if !leading {
            was_leading = false;
            continue;
        }
        let span = tracing::info_span!("reconcile", controller = C::NAME);
        let mut pass = PassCtx::new(&retries, now, !was_leading);
        controller
            .pass(&ctx, &mut pass)
            .instrument(span.clone())
            .await;
        was_leading = true;
        let outcomes = pass.into_outcomes();
        let _entered = span.enter();
        for (key, error, delay) in settle(&mut retries, outcomes, Instant::now()) {
            let retry_in_ms = delay.as_millis() as u64;
            // A stale cache or a failover is routine; anything else needs a
            // human.
            if matches!(error, Error::Conflict(_) | Error::Unavailable(_)) {
                tracing::debug!(object = %key, %error, retry_in_ms, "reconcile failed");
            } else {
                tracing::warn!(object = %key, %error, retry_in_ms, "reconcile failed");
            }
        }
    }
}

/// Wait until one of `changes` moves, leadership changes, `resync` passes
/// or `retry_at` comes; then the batching pause. Returns whether this
/// instance leads (act only then).
async fn wait_for_work(
    ctx: &Ctx,
    changes: &mut [watch::Receiver<u64>],
    leadership: &mut watch::Receiver<Leadership>,
    (resync, batch): (Duration, Duration),
    retry_at: Option<Instant>,
) -> bool {
    let mut deadline = tokio::time::Instant::now() + resync;
    if let Some(at) = retry_at {
        deadline = deadline.min(tokio::time::Instant::from_std(at));
    }
    {
        let any_change =
            futures::future::select_all(changes.iter_mut().map(|c| Box::pin(c.changed())));
        tokio::select! {
            (r, _, _) = any_change => {
                if r.is_err() {
                    tokio::time::sleep_until(deadline).await;
                }
            }
            _ = leadership.changed() => {}
            _ = tokio::time::sleep_until(deadline) => {}
        }
    }
    tokio::time::sleep(batch).await;
    for c in changes.iter_mut() {
        c.borrow_and_update();
    }
    ctx.leading()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conflict() -> Error {
        Error::Conflict("stale".into())
    }

    #[test]
    fn kind_keys_leave_out_an_empty_namespace() {
        let cases = [
            (("Pod", "default", "web-1"), "Pod/default/web-1"),
            (("Node", "", "n1"), "Node/n1"),
        ];
        for ((kind, ns, name), want) in cases {
            assert_eq!(kind_key(kind, ns, name), want);
        }
    }

    #[test]
    fn a_failure_in_a_pass_wins_over_a_success() {
        let start = Instant::now();
        let mut retries = Retries::default();
        retries.failed("known", start);
        retries.failed("known, fails again", start);
        let later = start + Duration::from_secs(1);
        let mut p = PassCtx::new(&retries, later, false);
        struct Case {
            key: &'static str,
            /// In order: Ok, or a conflict with this text.
            reports: &'static [Result<(), &'static str>],
            /// None: nothing recorded; Some(""): succeeded; Some(e): failed
            /// with the conflict `e`.
            want: Option<&'static str>,
        }
        let case = |key, reports, want| Case { key, reports, want };
        let cases = [
            case("ok then failed", &[Ok(()), Err("e1")], Some("e1")),
            case("failed then ok", &[Err("e1"), Ok(())], Some("e1")),
            case("failed twice", &[Err("e1"), Err("e2")], Some("e1")),
            // A success of a key that never failed leaves nothing to do.
            case("new ok", &[Ok(())], None),
            case("known", &[Ok(())], Some("")),
            case(
                "known, fails again",
                &[Ok(()), Err("e1"), Ok(())],
                Some("e1"),
            ),
        ];
        for c in &cases {
            for r in c.reports {
                p.report(c.key, r.map_err(|e| Error::Conflict(e.into())));
            }
        }
        let outcomes = p.into_outcomes();
        for c in &cases {
            let got = outcomes
                .get(c.key)
                .map(|o| o.as_ref().map_or(String::new(), |e| e.to_string()));
            assert_eq!(got.as_deref(), c.want, "outcome of {}", c.key);
        }
        assert_eq!(outcomes.len(), 5);
    }

    #[test]
    fn settle_backs_off_failures_and_forgets_successes() {
        let start = Instant::now();
        let mut retries = Retries::default();
        retries.failed("recovers", start);
        retries.failed("fails again", start);
        let now = start + Duration::from_secs(1);
        let p = PassCtx::new(&retries, now, false);
        assert!(p.due("recovers") && p.due("fails again") && p.due("new"));
        let mut p = p;
        p.succeeded("recovers");
        p.failed("fails again", conflict());
        p.failed("new", conflict());
        let outcomes = p.into_outcomes();
        let failures = settle(&mut retries, outcomes, now);
        let got: Vec<(&str, u128)> = failures
            .iter()
            .map(|(k, _, d)| (k.as_str(), d.as_millis()))
            .collect();
        assert_eq!(got, [("fails again", 100), ("new", 50)]);
        assert!(!retries.contains("recovers"));
        let p = PassCtx::new(&retries, now + Duration::from_millis(60), true);
        assert!(p.became_leader());
        assert!(p.due("new"), "back-off of 50 ms is over");
        assert!(!p.due("fails again"), "back-off of 100 ms is not");
    }
}
