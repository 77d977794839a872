//! The pure state of probes: [`Tracker`] (one probe of one container) and
//! [`ContainerProbes`] (a container's three, with Kubernetes' gating). No
//! IO; time is passed in.

use std::time::Instant;

use keelson_proto::v1;

use super::{Outcome, ProbeKind, Settings};

/// The pure state of one probe of one container: when it is due, and its
/// result after thresholds. No IO, time passed in.
#[derive(Clone, Debug)]
pub struct Tracker {
    kind: ProbeKind,
    probe: v1::Probe,
    settings: Settings,
    container_started: Instant,
    last_sent: Option<Instant>,
    in_flight: bool,
    /// The overall result (ready / healthy / started).
    passing: bool,
    /// The failure threshold was reached (and the success threshold not
    /// since), with the failure that reached it.
    failed: Option<String>,
    /// The last outcome (success?) and how many in a row were the same.
    last_success: Option<bool>,
    run: u32,
    last_failure: Option<String>,
}

impl Tracker {
    pub fn new(kind: ProbeKind, probe: &v1::Probe, container_started: Instant) -> Tracker {
        Tracker {
            kind,
            probe: probe.clone(),
            settings: Settings::new(kind, probe),
            container_started,
            last_sent: None,
            in_flight: false,
            passing: kind == ProbeKind::Liveness,
            failed: None,
            last_success: None,
            run: 0,
            last_failure: None,
        }
    }

    pub fn kind(&self) -> ProbeKind {
        self.kind
    }

    pub fn probe(&self) -> &v1::Probe {
        &self.probe
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Whether the probe is done for this container: a startup probe that
    /// passed, or a liveness or startup probe that failed (the container
    /// must be restarted).
    fn on_hold(&self) -> bool {
        match self.kind {
            ProbeKind::Readiness => false,
            ProbeKind::Liveness => self.failed.is_some(),
            ProbeKind::Startup => self.passing || self.failed.is_some(),
        }
    }

    /// When the next probe becomes due: None while one is in flight, when
    /// the probe is on hold, or beyond the clock's range.
    pub fn next_due(&self) -> Option<Instant> {
        if self.in_flight || self.on_hold() {
            return None;
        }
        let first = self
            .container_started
            .checked_add(self.settings.initial_delay)?;
        match self.last_sent {
            None => Some(first),
            Some(last) => Some(first.max(last.checked_add(self.settings.period)?)),
        }
    }

    /// Whether a probe should be sent now (initial delay passed; a period
    /// since the last one; not while one is in flight; not on hold).
    pub fn due(&self, now: Instant) -> bool {
        self.next_due().is_some_and(|at| now >= at)
    }

    /// A probe was sent at `now` (marks in flight).
    pub fn sent(&mut self, now: Instant) {
        self.last_sent = Some(now);
        self.in_flight = true;
    }

    /// Its outcome arrived: apply thresholds; returns true when the overall
    /// result changed. (An outcome without [`Tracker::sent`] counts as sent
    /// at `now`.)
    pub fn record(&mut self, outcome: &Outcome, now: Instant) -> bool {
        self.in_flight = false;
        if self.last_sent.is_none() {
            self.last_sent = Some(now);
        }
        let success = *outcome == Outcome::Success;
        self.last_failure = match outcome {
            Outcome::Success => None,
            Outcome::Failure(message) => Some(message.clone()),
        };
        if self.last_success == Some(success) {
            self.run = self.run.saturating_add(1);
        } else {
            self.last_success = Some(success);
            self.run = 1;
        }
        let threshold = if success {
            self.settings.success_threshold
        } else {
            self.settings.failure_threshold
        };
        if self.run < threshold {
            return false;
        }
        if success {
            self.failed = None;
        } else if self.failed.is_none() {
            self.failed = self.last_failure.clone();
        }
        let changed = self.passing != success;
        self.passing = success;
        changed
    }

    /// The current overall result: for Readiness "ready", for Liveness
    /// "healthy", for Startup "started".
    pub fn passing(&self) -> bool {
        self.passing
    }

    /// The failure threshold was reached (and the success threshold not
    /// since): the failure that reached it.
    pub fn failed(&self) -> Option<&str> {
        self.failed.as_deref()
    }

    /// The last failure message (for events/status), if the last outcome
    /// failed.
    pub fn last_failure(&self) -> Option<&str> {
        self.last_failure.as_deref()
    }
}

/// The probes of one container with Kubernetes' gating: startup first;
/// liveness and readiness only once started.
#[derive(Clone, Debug)]
pub struct ContainerProbes {
    startup: Option<Tracker>,
    liveness: Option<Tracker>,
    readiness: Option<Tracker>,
}

impl ContainerProbes {
    /// The probes of `container`, which started at `started`.
    pub fn new(container: &v1::Container, started: Instant) -> ContainerProbes {
        let tracker = |kind, probe: &Option<v1::Probe>| {
            probe.as_ref().map(|p| Tracker::new(kind, p, started))
        };
        ContainerProbes {
            startup: tracker(ProbeKind::Startup, &container.startup_probe),
            liveness: tracker(ProbeKind::Liveness, &container.liveness_probe),
            readiness: tracker(ProbeKind::Readiness, &container.readiness_probe),
        }
    }

    pub fn tracker(&self, kind: ProbeKind) -> Option<&Tracker> {
        match kind {
            ProbeKind::Startup => self.startup.as_ref(),
            ProbeKind::Liveness => self.liveness.as_ref(),
            ProbeKind::Readiness => self.readiness.as_ref(),
        }
    }

    fn tracker_mut(&mut self, kind: ProbeKind) -> Option<&mut Tracker> {
        match kind {
            ProbeKind::Startup => self.startup.as_mut(),
            ProbeKind::Liveness => self.liveness.as_mut(),
            ProbeKind::Readiness => self.readiness.as_mut(),
        }
    }

    /// The trackers that may run now: the startup probe until it passed,
    /// then liveness and readiness.
    fn active(&self) -> Vec<&Tracker> {
        match &self.startup {
            Some(startup) if !startup.passing() => vec![startup],
            _ => [&self.liveness, &self.readiness]
                .into_iter()
                .flatten()
                .collect(),
        }
    }

    /// Which probes to send now (kinds), given gating and `due`, in the
    /// order startup, liveness, readiness.
    pub fn due(&self, now: Instant) -> Vec<ProbeKind> {
        self.active()
            .into_iter()
            .filter(|t| t.due(now))
            .map(Tracker::kind)
            .collect()
    }

    /// When the next probe becomes due under the gating (None: nothing to
    /// wait for until an outcome arrives, or no probes).
    pub fn next_due(&self) -> Option<Instant> {
        self.active()
            .into_iter()
            .filter_map(Tracker::next_due)
            .min()
    }

    /// A `kind` probe was sent at `now` (no-op when the container has none).
    pub fn sent(&mut self, kind: ProbeKind, now: Instant) {
        if let Some(t) = self.tracker_mut(kind) {
            t.sent(now);
        }
    }

    /// A `kind` probe's outcome arrived; true when that probe's overall
    /// result changed (false when the container has no such probe).
    pub fn record(&mut self, kind: ProbeKind, outcome: &Outcome, now: Instant) -> bool {
        self.tracker_mut(kind)
            .is_some_and(|t| t.record(outcome, now))
    }

    /// Started: no startup probe, or it passed.
    pub fn started(&self) -> bool {
        self.startup.as_ref().is_none_or(Tracker::passing)
    }

    /// Ready: started, and readiness passing (no readiness probe: ready once
    /// started).
    pub fn ready(&self) -> bool {
        self.started() && self.readiness.as_ref().is_none_or(Tracker::passing)
    }

    /// Liveness failed past its threshold (the container must be
    /// restarted), with the failure message.
    pub fn liveness_failed(&self) -> Option<String> {
        self.liveness
            .as_ref()
            .and_then(Tracker::failed)
            .map(str::to_string)
    }

    /// Startup failed past its threshold (the container must be
    /// restarted), with the failure message.
    pub fn startup_failed(&self) -> Option<String> {
        self.startup
            .as_ref()
            .and_then(Tracker::failed)
            .map(str::to_string)
    }

    /// The container's `kind` probe, if it has one.
    pub fn probe(&self, kind: ProbeKind) -> Option<&v1::Probe> {
        self.tracker(kind).map(Tracker::probe)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn t0() -> Instant {
        Instant::now()
    }

    fn s(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    fn fail() -> Outcome {
        Outcome::Failure("boom".into())
    }

    /// A probe (tcpSocket on 80) with these timings.
    fn probe(delay: i32, period: i32, success: i32, failure: i32) -> v1::Probe {
        v1::Probe {
            tcp_socket: Some(v1::TcpSocketAction {
                port: "80".into(),
                host: String::new(),
            }),
            initial_delay_seconds: delay,
            period_seconds: period,
            success_threshold: success,
            failure_threshold: failure,
            ..Default::default()
        }
    }

    fn container(
        startup: Option<v1::Probe>,
        liveness: Option<v1::Probe>,
        readiness: Option<v1::Probe>,
    ) -> v1::Container {
        v1::Container {
            name: "c".into(),
            startup_probe: startup,
            liveness_probe: liveness,
            readiness_probe: readiness,
            ..Default::default()
        }
    }

    /// Send and record one outcome at `at`; whether the result changed.
    fn step(t: &mut Tracker, outcome: &Outcome, at: Instant) -> bool {
        assert!(t.due(at), "{:?} not due at {:?}", t.kind(), at);
        t.sent(at);
        t.record(outcome, at)
    }

    #[test]
    fn settings_defaults_and_clamping() {
        let defaults = Settings {
            initial_delay: s(0),
            period: s(10),
            timeout: s(1),
            success_threshold: 1,
            failure_threshold: 3,
        };
        let minimums = Settings {
            initial_delay: s(0),
            period: s(1),
            timeout: s(1),
            success_threshold: 1,
            failure_threshold: 1,
        };
        let negative = v1::Probe {
            initial_delay_seconds: -5,
            timeout_seconds: -1,
            period_seconds: i32::MIN,
            success_threshold: -3,
            failure_threshold: -7,
            ..Default::default()
        };
        let explicit = v1::Probe {
            initial_delay_seconds: 7,
            timeout_seconds: 4,
            period_seconds: 2,
            success_threshold: 5,
            failure_threshold: 6,
            ..Default::default()
        };
        let cases: Vec<(&str, ProbeKind, v1::Probe, Settings)> = vec![
            (
                "zero: defaults",
                ProbeKind::Readiness,
                v1::Probe::default(),
                defaults,
            ),
            (
                "zero liveness",
                ProbeKind::Liveness,
                v1::Probe::default(),
                defaults,
            ),
            (
                "negative: minimums",
                ProbeKind::Readiness,
                negative.clone(),
                minimums,
            ),
            ("negative startup", ProbeKind::Startup, negative, minimums),
            (
                "explicit readiness",
                ProbeKind::Readiness,
                explicit.clone(),
                Settings {
                    initial_delay: s(7),
                    period: s(2),
                    timeout: s(4),
                    success_threshold: 5,
                    failure_threshold: 6,
                },
            ),
            (
                "liveness forces successThreshold 1",
                ProbeKind::Liveness,
                explicit.clone(),
                Settings {
                    initial_delay: s(7),
                    period: s(2),
                    timeout: s(4),
                    success_threshold: 1,
                    failure_threshold: 6,
                },
            ),
            (
                "startup forces successThreshold 1",
                ProbeKind::Startup,
                explicit,
                Settings {
                    initial_delay: s(7),
                    period: s(2),
                    timeout: s(4),
                    success_threshold: 1,
                    failure_threshold: 6,
                },
            ),
        ];
        for (name, kind, p, want) in cases {
            assert_eq!(Settings::new(kind, &p), want, "{name}");
        }
    }

    #[test]
    fn initial_states() {
        let start = t0();
        let p = probe(0, 0, 0, 0);
        for (kind, passing) in [
            (ProbeKind::Readiness, false),
            (ProbeKind::Liveness, true),
            (ProbeKind::Startup, false),
        ] {
            let t = Tracker::new(kind, &p, start);
            assert_eq!(t.passing(), passing, "{kind}");
            assert_eq!(t.last_failure(), None, "{kind}");
            assert_eq!(t.failed(), None, "{kind}");
            assert!(t.due(start), "{kind}: due at once without initial delay");
        }
    }

    #[test]
    fn initial_delay_and_period() {
        let start = t0();
        let mut t = Tracker::new(ProbeKind::Readiness, &probe(5, 3, 0, 0), start);
        // (seconds after start, due?)
        for (at, due) in [(0, false), (4, false), (5, true), (6, true)] {
            assert_eq!(t.due(start + s(at)), due, "before the first, at {at}s");
        }
        assert_eq!(t.next_due(), Some(start + s(5)));
        t.sent(start + s(6));
        assert!(!t.due(start + s(100)), "not while in flight");
        assert_eq!(t.next_due(), None);
        t.record(&Outcome::Success, start + s(6));
        // A period after the last one *sent* (at 6 s).
        for (at, due) in [(6, false), (8, false), (9, true), (20, true)] {
            assert_eq!(t.due(start + s(at)), due, "after the first, at {at}s");
        }
        assert_eq!(t.next_due(), Some(start + s(9)));
    }

    #[test]
    fn default_period_is_ten_seconds() {
        let start = t0();
        let mut t = Tracker::new(ProbeKind::Liveness, &probe(0, 0, 0, 0), start);
        step(&mut t, &Outcome::Success, start);
        assert!(!t.due(start + s(9)));
        assert!(t.due(start + s(10)));
    }

    #[test]
    fn huge_initial_delay_does_not_panic() {
        let start = t0();
        let t = Tracker::new(
            ProbeKind::Readiness,
            &probe(i32::MAX, i32::MAX, 0, 0),
            start,
        );
        assert!(!t.due(start + s(1_000_000)));
        let mut t = Tracker::new(ProbeKind::Readiness, &probe(0, i32::MAX, 0, 0), start);
        step(&mut t, &Outcome::Success, start);
        assert!(!t.due(start + s(1_000_000)));
    }

    #[test]
    fn thresholds() {
        let ok = Outcome::Success;
        let no = fail();
        // (name, kind, successThreshold, failureThreshold, outcomes,
        //  expected passing after each, expected "changed" after each)
        type Case<'a> = (
            &'a str,
            ProbeKind,
            i32,
            i32,
            Vec<&'a Outcome>,
            Vec<bool>,
            Vec<bool>,
        );
        let cases: Vec<Case> = vec![
            (
                "readiness: ready after one success by default",
                ProbeKind::Readiness,
                0,
                0,
                vec![&ok, &ok],
                vec![true, true],
                vec![true, false],
            ),
            (
                "readiness: not ready after 3 failures by default",
                ProbeKind::Readiness,
                0,
                0,
                vec![&ok, &no, &no, &no, &no],
                vec![true, true, true, false, false],
                vec![true, false, false, true, false],
            ),
            (
                "readiness: successThreshold 3 needs 3 in a row",
                ProbeKind::Readiness,
                3,
                1,
                vec![&ok, &ok, &no, &ok, &ok, &ok],
                vec![false, false, false, false, false, true],
                vec![false, false, false, false, false, true],
            ),
            (
                "readiness: failureThreshold 2, a success in between resets",
                ProbeKind::Readiness,
                1,
                2,
                vec![&ok, &no, &ok, &no, &no],
                vec![true, true, true, true, false],
                vec![true, false, false, false, true],
            ),
            (
                "liveness: healthy until 3 failures in a row",
                ProbeKind::Liveness,
                0,
                0,
                vec![&no, &no, &ok, &no, &no, &no],
                vec![true, true, true, true, true, false],
                vec![false, false, false, false, false, true],
            ),
            (
                "liveness: failureThreshold 1",
                ProbeKind::Liveness,
                0,
                1,
                vec![&ok, &no],
                vec![true, false],
                vec![false, true],
            ),
            (
                "liveness ignores successThreshold",
                ProbeKind::Liveness,
                5,
                1,
                vec![&no],
                vec![false],
                vec![true],
            ),
            (
                "startup: started after one success",
                ProbeKind::Startup,
                0,
                0,
                vec![&no, &no, &ok],
                vec![false, false, true],
                vec![false, false, true],
            ),
            (
                "startup ignores successThreshold",
                ProbeKind::Startup,
                4,
                0,
                vec![&ok],
                vec![true],
                vec![true],
            ),
        ];
        for (name, kind, success, failure, outcomes, passing, changed) in cases {
            let start = t0();
            let mut t = Tracker::new(kind, &probe(0, 1, success, failure), start);
            for (i, outcome) in outcomes.iter().enumerate() {
                let at = start + s(i as u64);
                let c = step(&mut t, outcome, at);
                assert_eq!(t.passing(), passing[i], "{name}: passing after #{i}");
                assert_eq!(c, changed[i], "{name}: changed after #{i}");
                let want_failure = (**outcome != Outcome::Success).then_some("boom");
                assert_eq!(t.last_failure(), want_failure, "{name}: last failure #{i}");
            }
        }
    }

    #[test]
    fn readiness_flapping() {
        let start = t0();
        let mut t = Tracker::new(ProbeKind::Readiness, &probe(0, 1, 1, 1), start);
        for i in 0..10u64 {
            let outcome = if i % 2 == 0 { Outcome::Success } else { fail() };
            assert!(
                step(&mut t, &outcome, start + s(i)),
                "changes every time: #{i}"
            );
            assert_eq!(t.passing(), i % 2 == 0, "#{i}");
            assert_eq!(t.failed().is_some(), i % 2 == 1, "#{i}");
        }
        // Readiness never goes on hold.
        assert!(t.due(start + s(10)));
    }

    #[test]
    fn liveness_and_startup_failures_hold() {
        let start = t0();
        let mut t = Tracker::new(ProbeKind::Liveness, &probe(0, 1, 0, 2), start);
        step(&mut t, &Outcome::Failure("first".into()), start);
        assert_eq!(t.failed(), None);
        step(&mut t, &Outcome::Failure("second".into()), start + s(1));
        assert_eq!(t.failed(), Some("second"));
        assert!(!t.due(start + s(100)), "on hold after a liveness failure");

        let mut t = Tracker::new(ProbeKind::Startup, &probe(0, 1, 0, 1), start);
        step(&mut t, &fail(), start);
        assert_eq!(t.failed(), Some("boom"));
        assert!(!t.passing());
        assert!(!t.due(start + s(100)), "on hold after a startup failure");

        let mut t = Tracker::new(ProbeKind::Startup, &probe(0, 1, 0, 0), start);
        step(&mut t, &Outcome::Success, start);
        assert!(
            !t.due(start + s(100)),
            "a startup probe that passed is done"
        );
    }

    #[test]
    fn record_without_sent_counts_as_sent() {
        let start = t0();
        let mut t = Tracker::new(ProbeKind::Readiness, &probe(0, 5, 0, 0), start);
        assert!(t.record(&Outcome::Success, start + s(2)));
        assert!(!t.due(start + s(6)));
        assert!(t.due(start + s(7)));
    }

    #[test]
    fn no_probes_ready_once_started() {
        let start = t0();
        let p = ContainerProbes::new(&container(None, None, None), start);
        assert!(p.started());
        assert!(p.ready());
        assert!(p.due(start).is_empty());
        assert_eq!(p.next_due(), None);
        assert_eq!(p.liveness_failed(), None);
        assert_eq!(p.startup_failed(), None);
        for kind in [
            ProbeKind::Startup,
            ProbeKind::Liveness,
            ProbeKind::Readiness,
        ] {
            assert_eq!(p.probe(kind), None);
        }
    }

    #[test]
    fn container_probes_table() {
        let rp = probe(0, 1, 0, 0);
        let lp = probe(0, 1, 0, 0);
        let sp = probe(0, 1, 0, 0);
        // (name, container, started, ready, due at start)
        let cases = vec![
            (
                "readiness only",
                container(None, None, Some(rp.clone())),
                true,
                false,
                vec![ProbeKind::Readiness],
            ),
            (
                "liveness only: ready at once",
                container(None, Some(lp.clone()), None),
                true,
                true,
                vec![ProbeKind::Liveness],
            ),
            (
                "liveness and readiness",
                container(None, Some(lp.clone()), Some(rp.clone())),
                true,
                false,
                vec![ProbeKind::Liveness, ProbeKind::Readiness],
            ),
            (
                "startup gates the others",
                container(Some(sp.clone()), Some(lp.clone()), Some(rp.clone())),
                false,
                false,
                vec![ProbeKind::Startup],
            ),
            (
                "startup only",
                container(Some(sp), None, None),
                false,
                false,
                vec![ProbeKind::Startup],
            ),
        ];
        for (name, c, started, ready, due) in cases {
            let start = t0();
            let p = ContainerProbes::new(&c, start);
            assert_eq!(p.started(), started, "{name}");
            assert_eq!(p.ready(), ready, "{name}");
            assert_eq!(p.due(start), due, "{name}");
            assert_eq!(
                p.probe(ProbeKind::Startup),
                c.startup_probe.as_ref(),
                "{name}"
            );
            assert_eq!(
                p.probe(ProbeKind::Liveness),
                c.liveness_probe.as_ref(),
                "{name}"
            );
            assert_eq!(
                p.probe(ProbeKind::Readiness),
                c.readiness_probe.as_ref(),
                "{name}"
            );
        }
    }

    #[test]
    fn gating_by_startup() {
        let start = t0();
        let c = container(
            Some(probe(0, 2, 0, 5)),
            Some(probe(0, 1, 0, 0)),
            Some(probe(3, 1, 0, 0)),
        );
        let mut p = ContainerProbes::new(&c, start);
        // Startup fails twice (under its threshold): still only startup.
        for i in 0..2u64 {
            let at = start + s(2 * i);
            assert_eq!(p.due(at), vec![ProbeKind::Startup], "#{i}");
            p.sent(ProbeKind::Startup, at);
            assert!(p.due(at).is_empty(), "in flight");
            assert!(!p.record(ProbeKind::Startup, &fail(), at));
            assert!(!p.started());
            assert!(!p.ready());
        }
        assert_eq!(p.next_due(), Some(start + s(4)));
        // It passes at 4 s: started, liveness due; readiness too (its
        // initial delay of 3 s counts from the container's start).
        let at = start + s(4);
        p.sent(ProbeKind::Startup, at);
        assert!(p.record(ProbeKind::Startup, &Outcome::Success, at));
        assert!(p.started());
        assert!(!p.ready(), "readiness has not passed yet");
        assert_eq!(p.due(at), vec![ProbeKind::Liveness, ProbeKind::Readiness]);
        p.sent(ProbeKind::Readiness, at);
        assert!(p.record(ProbeKind::Readiness, &Outcome::Success, at));
        assert!(p.ready());
        // Startup is never sent again.
        assert!(!p.due(start + s(100)).contains(&ProbeKind::Startup));
    }

    #[test]
    fn readiness_initial_delay_after_startup() {
        let start = t0();
        let c = container(Some(probe(0, 1, 0, 0)), None, Some(probe(10, 1, 0, 0)));
        let mut p = ContainerProbes::new(&c, start);
        p.sent(ProbeKind::Startup, start);
        p.record(ProbeKind::Startup, &Outcome::Success, start);
        assert!(p.due(start + s(9)).is_empty());
        assert_eq!(p.next_due(), Some(start + s(10)));
        assert_eq!(p.due(start + s(10)), vec![ProbeKind::Readiness]);
    }

    #[test]
    fn startup_failure() {
        let start = t0();
        let c = container(Some(probe(0, 1, 0, 2)), Some(probe(0, 1, 0, 0)), None);
        let mut p = ContainerProbes::new(&c, start);
        for i in 0..2u64 {
            let at = start + s(i);
            p.sent(ProbeKind::Startup, at);
            p.record(
                ProbeKind::Startup,
                &Outcome::Failure(format!("no #{i}")),
                at,
            );
        }
        assert_eq!(p.startup_failed().as_deref(), Some("no #1"));
        assert_eq!(p.liveness_failed(), None);
        assert!(!p.started());
        assert!(p.due(start + s(100)).is_empty(), "nothing runs any more");
    }

    #[test]
    fn liveness_failure() {
        let start = t0();
        let c = container(None, Some(probe(0, 1, 0, 3)), Some(probe(0, 1, 0, 0)));
        let mut p = ContainerProbes::new(&c, start);
        for i in 0..3u64 {
            let at = start + s(i);
            assert_eq!(p.liveness_failed(), None, "#{i}");
            p.sent(ProbeKind::Liveness, at);
            let changed = p.record(ProbeKind::Liveness, &Outcome::Failure("dead".into()), at);
            assert_eq!(changed, i == 2, "#{i}");
        }
        assert_eq!(p.liveness_failed().as_deref(), Some("dead"));
        // Liveness is on hold; readiness keeps going.
        assert_eq!(p.due(start + s(10)), vec![ProbeKind::Readiness]);
        // An absent probe is a no-op.
        let mut none = ContainerProbes::new(&container(None, None, None), start);
        none.sent(ProbeKind::Liveness, start);
        assert!(!none.record(ProbeKind::Liveness, &fail(), start));
        assert_eq!(none.liveness_failed(), None);
    }

    #[test]
    fn malformed_probes_do_not_panic() {
        let start = t0();
        let weird = v1::Probe {
            initial_delay_seconds: i32::MIN,
            timeout_seconds: i32::MIN,
            period_seconds: -1,
            success_threshold: i32::MIN,
            failure_threshold: 0,
            ..Default::default()
        };
        let c = container(Some(weird.clone()), Some(weird.clone()), Some(weird));
        let mut p = ContainerProbes::new(&c, start);
        assert_eq!(p.due(start), vec![ProbeKind::Startup]);
        p.sent(ProbeKind::Startup, start);
        p.record(ProbeKind::Startup, &Outcome::Success, start);
        assert_eq!(
            p.due(start),
            vec![ProbeKind::Liveness, ProbeKind::Readiness]
        );
        p.sent(ProbeKind::Readiness, start);
        p.record(ProbeKind::Readiness, &Outcome::Success, start);
        assert!(p.ready());
        assert!(
            p.due(start + s(1)).contains(&ProbeKind::Readiness),
            "period 1 s"
        );
    }
}
