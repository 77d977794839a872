//! CronJob schedules: the syntax Kubernetes accepts (robfig/cron's
//! standard parser: five fields `minute hour day-of-month month
//! day-of-week`, names such as `MON` and `JAN`, ranges, lists and steps,
//! the macros `@yearly`/`@annually`, `@monthly`, `@weekly`, `@daily`/
//! `@midnight`, `@hourly`, and `@every <duration>`), read in an IANA time
//! zone. Fields are parsed by `croner` (POSIX day-of-month/day-of-week
//! OR-ing, as Vixie cron and robfig/cron), zones by `chrono-tz`; `@every`
//! is a fixed period from a start.
//!
//! croner also accepts `L`, `W` and `#` (last day, nearest weekday, nth
//! weekday), which Kubernetes' parser refuses; they are accepted here.

use std::str::FromStr;
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::parser::{CronParser, Seconds, Year};
use croner::Cron;

/// A parsed schedule in its time zone.
#[derive(Debug, Clone)]
pub struct Schedule {
    when: When,
    tz: Tz,
}

#[derive(Debug, Clone)]
enum When {
    Cron(Box<Cron>),
    /// `@every <duration>`: every period, counted from a start.
    Every(Duration),
}

/// The time zone named `name` (an IANA name such as `Europe/Paris`;
/// empty means UTC).
pub fn time_zone(name: &str) -> Result<Tz, String> {
    if name.is_empty() {
        return Ok(Tz::UTC);
    }
    // Go's time.LoadLocation reads "Local" as the machine's zone, which
    // Kubernetes refuses; so do we.
    if name == "Local" {
        return Err(format!("unknown time zone {name}"));
    }
    Tz::from_str(name).map_err(|_| format!("unknown time zone {name}"))
}

impl Schedule {
    /// Parse `schedule`, read in the zone `tz` (empty: UTC).
    pub fn parse(schedule: &str, tz: &str) -> Result<Schedule, String> {
        let tz = time_zone(tz)?;
        let s = schedule.trim();
        if s.contains("TZ") {
            return Err("cannot use TZ or CRON_TZ in schedule, use timeZone field instead".into());
        }
        if let Some(rest) = s.strip_prefix("@every ") {
            let d = humantime::parse_duration(rest.trim())
                .map_err(|e| format!("failed to parse duration {}: {e}", rest.trim()))?;
            if d < Duration::from_secs(1) {
                return Err(format!("@every period {} is under a second", rest.trim()));
            }
            // Kubernetes (robfig/cron) rounds the period down to seconds.
            return Ok(Schedule {
                when: When::Every(Duration::from_secs(d.as_secs())),
                tz,
            });
        }
        let s = if s.eq_ignore_ascii_case("@midnight") {
            "@daily"
        } else {
            s
        };
        if s.starts_with('@')
            && ![
                "@yearly",
                "@annually",
                "@monthly",
                "@weekly",
                "@daily",
                "@hourly",
            ]
            .iter()
            .any(|m| s.eq_ignore_ascii_case(m))
        {
            return Err(format!("unrecognized descriptor: {s}"));
        }
        let cron = CronParser::builder()
            .seconds(Seconds::Disallowed)
            .year(Year::Disallowed)
            .build()
            .parse(s)
            .map_err(|e| {
                let why = e.to_string();
                if s.split_whitespace().count() != 5 && !s.starts_with('@') {
                    format!(
                        "expected exactly 5 fields, found {}: [{s}]",
                        s.split_whitespace().count()
                    )
                } else {
                    why
                }
            })?;
        Ok(Schedule {
            when: When::Cron(Box::new(cron)),
            tz,
        })
    }

    fn local(&self, t: SystemTime) -> DateTime<Tz> {
        DateTime::<Utc>::from(t).with_timezone(&self.tz)
    }

    /// The first schedule time strictly after `t` (None when there is
    /// none, as `0 0 30 2 *`).
    pub fn next_after(&self, t: SystemTime) -> Option<SystemTime> {
        match &self.when {
            When::Cron(c) => c
                .find_next_occurrence(&self.local(t), false)
                .ok()
                .map(SystemTime::from),
            // robfig/cron: the next whole second after t plus the period.
            When::Every(d) => {
                let secs = t.duration_since(SystemTime::UNIX_EPOCH).ok()?.as_secs();
                SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(secs) + *d)
            }
        }
    }

    /// The latest schedule time after `earliest` and at or before `now`,
    /// and whether more than `limit` schedule times fell in that span
    /// (Kubernetes warns of too many missed start times past 100).
    pub fn most_recent(
        &self,
        earliest: SystemTime,
        now: SystemTime,
        limit: usize,
    ) -> (Option<SystemTime>, bool) {
        let Some(first) = self.next_after(earliest).filter(|t| *t <= now) else {
            return (None, false);
        };
        let mut count = 1usize;
        let mut last = first;
        while let Some(t) = self.next_after(last).filter(|t| *t <= now) {
            count += 1;
            last = t;
            if count > limit {
                // Too many to walk: jump to the latest one.
                let latest = match &self.when {
                    When::Cron(c) => c
                        .find_previous_occurrence(&self.local(now), true)
                        .ok()
                        .map(SystemTime::from)
                        .filter(|t| *t > earliest),
                    When::Every(d) => {
                        let span = now.duration_since(first).unwrap_or_default();
                        let steps = span.as_secs() / d.as_secs().max(1);
                        u32::try_from(steps)
                            .ok()
                            .and_then(|n| first.checked_add(*d * n))
                    }
                };
                return (latest.or(Some(last)), true);
            }
        }
        (Some(last), false)
    }

    /// `t` as RFC 3339 in the schedule's zone (the Job annotation
    /// `batch.kubernetes.io/cronjob-scheduled-timestamp`).
    pub fn format_local(&self, t: SystemTime) -> String {
        self.local(t)
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> SystemTime {
        SystemTime::from(DateTime::parse_from_rfc3339(s).expect("time"))
    }

    fn next(schedule: &str, tz: &str, after: &str) -> String {
        let s = Schedule::parse(schedule, tz).expect("schedule");
        let t = s.next_after(utc(after)).expect("next");
        DateTime::<Utc>::from(t).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    }

    #[test]
    fn schedules_as_kubernetes_reads_them() {
        let cases = [
            (
                "* * * * *",
                "",
                "2026-01-01T10:00:30Z",
                "2026-01-01T10:01:00Z",
            ),
            (
                "* * * * *",
                "",
                "2026-01-01T10:01:00Z",
                "2026-01-01T10:02:00Z",
            ),
            (
                "*/15 * * * *",
                "",
                "2026-01-01T10:01:00Z",
                "2026-01-01T10:15:00Z",
            ),
            (
                "0 9 * * MON-FRI",
                "",
                "2026-01-02T10:00:00Z",
                "2026-01-05T09:00:00Z",
            ),
            (
                "@hourly",
                "",
                "2026-01-01T10:20:00Z",
                "2026-01-01T11:00:00Z",
            ),
            (
                "@midnight",
                "",
                "2026-01-01T10:20:00Z",
                "2026-01-02T00:00:00Z",
            ),
            (
                "0 0 1 JAN *",
                "",
                "2026-03-01T00:00:00Z",
                "2027-01-01T00:00:00Z",
            ),
            // Day of month OR day of week, as Vixie cron.
            (
                "0 0 13 * FRI",
                "",
                "2026-02-01T00:00:00Z",
                "2026-02-06T00:00:00Z",
            ),
            // 09:00 in Tokyo is 00:00 UTC.
            (
                "0 9 * * *",
                "Asia/Tokyo",
                "2026-01-01T01:00:00Z",
                "2026-01-02T00:00:00Z",
            ),
            // New York in summer is UTC-4, in winter UTC-5.
            (
                "30 2 * * *",
                "America/New_York",
                "2026-07-01T00:00:00Z",
                "2026-07-01T06:30:00Z",
            ),
            (
                "30 2 * * *",
                "America/New_York",
                "2026-12-01T00:00:00Z",
                "2026-12-01T07:30:00Z",
            ),
            (
                "@every 90s",
                "",
                "2026-01-01T10:00:00Z",
                "2026-01-01T10:01:30Z",
            ),
        ];
        for (schedule, tz, after, want) in cases {
            assert_eq!(
                next(schedule, tz, after),
                want,
                "{schedule} in {tz:?} after {after}"
            );
        }
    }

    #[test]
    fn bad_schedules_and_zones_are_refused() {
        for (schedule, tz) in [
            ("", ""),
            ("* * * *", ""),
            ("* * * * * *", ""),
            ("61 * * * *", ""),
            ("* 24 * * *", ""),
            ("@fortnightly", ""),
            ("@every soon", ""),
            ("CRON_TZ=UTC * * * * *", ""),
            ("TZ=UTC * * * * *", ""),
            ("* * * * *", "Mars/Olympus"),
            ("* * * * *", "Local"),
        ] {
            assert!(
                Schedule::parse(schedule, tz).is_err(),
                "{schedule:?} in {tz:?} accepted"
            );
        }
    }

    #[test]
    fn the_most_recent_missed_time_and_too_many_missed() {
        let s = Schedule::parse("*/10 * * * *", "").expect("schedule");
        let t0 = utc("2026-01-01T10:05:00Z");
        assert_eq!(
            s.most_recent(t0, utc("2026-01-01T10:09:59Z"), 100),
            (None, false)
        );
        assert_eq!(
            s.most_recent(t0, utc("2026-01-01T10:10:00Z"), 100),
            (Some(utc("2026-01-01T10:10:00Z")), false)
        );
        assert_eq!(
            s.most_recent(t0, utc("2026-01-01T10:45:00Z"), 100),
            (Some(utc("2026-01-01T10:40:00Z")), false)
        );
        // A week of ten-minute slots: more than 100 missed, the latest one.
        assert_eq!(
            s.most_recent(t0, utc("2026-01-08T10:45:00Z"), 100),
            (Some(utc("2026-01-08T10:40:00Z")), true)
        );
        let e = Schedule::parse("@every 1h", "").expect("every");
        assert_eq!(
            e.most_recent(t0, utc("2026-01-20T10:45:00Z"), 100),
            (Some(utc("2026-01-20T10:05:00Z")), true)
        );
        assert_eq!(
            s.format_local(utc("2026-01-01T10:10:00Z")),
            "2026-01-01T10:10:00Z"
        );
        let tokyo = Schedule::parse("0 9 * * *", "Asia/Tokyo").expect("tokyo");
        assert_eq!(
            tokyo.format_local(utc("2026-01-02T00:00:00Z")),
            "2026-01-02T09:00:00+09:00"
        );
    }
}
