//! Timestamps as the API writes them: RFC 3339 in UTC, to the second, as
//! Kubernetes' `metav1.Time` (`2024-05-01T12:00:00Z`), a serde adapter for
//! nanosecond timestamps in local records, and ages as kubectl shows them
//! ([`human_duration`], [`age`]: apimachinery's `duration.HumanDuration`
//! and printers.go's `translateTimestampSince`).
//!
//! Every timestamp field of the API (`creationTimestamp`,
//! `lastTransitionTime`, a taint's `timeAdded`, ...) is a string made by
//! [`format_rfc3339`] and read back with [`parse_rfc3339`].
//!
//! RFC 3339 as written here covers 1970 to 9999: a time outside is written
//! as the nearest end of that range (humantime, underneath, would panic).
//!
//! Nothing here reads the clock: callers pass `SystemTime::now()` at the
//! edge, pure cores their `now` parameter.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The last instant that can be written: 9999-12-31T23:59:59.999999999Z.
fn latest() -> SystemTime {
    // 253_402_300_800 s is 10000-01-01T00:00:00Z.
    UNIX_EPOCH + Duration::new(253_402_300_799, 999_999_999)
}

/// `t` moved into the range RFC 3339 can write.
fn clamp(t: SystemTime) -> SystemTime {
    t.clamp(UNIX_EPOCH, latest())
}

/// `t` as RFC 3339 in UTC, whole seconds (`2024-05-01T12:00:00Z`).
pub fn format_rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(clamp(t)).to_string()
}

/// The instant an RFC 3339 timestamp names; `None` if `s` is not one
/// (empty, malformed, before 1970). Lenient as Kubernetes clients are: the
/// `T` may be a space, the `Z` may be missing, fractional seconds are kept,
/// a numeric offset (`+02:00`) is applied.
pub fn parse_rfc3339(s: &str) -> Option<SystemTime> {
    if let Ok(t) = humantime::parse_rfc3339_weak(s) {
        return Some(t);
    }
    // humantime knows only `Z`: handle a numeric offset by hand.
    let (base, offset) = s.split_at(s.len().checked_sub(6)?);
    let sign = match offset.as_bytes().first()? {
        b'+' => 1i64,
        b'-' => -1,
        _ => return None,
    };
    let (h, m) = offset.get(1..)?.split_once(':')?;
    let secs =
        i64::try_from(h.parse::<u64>().ok()? * 3600 + m.parse::<u64>().ok()? * 60).ok()? * sign;
    let t = humantime::parse_rfc3339_weak(base).ok()?;
    // Local time = UTC + offset, so UTC = local - offset.
    if secs >= 0 {
        t.checked_sub(Duration::from_secs(secs.unsigned_abs()))
    } else {
        t.checked_add(Duration::from_secs(secs.unsigned_abs()))
    }
}

/// kubectl's `HumanDuration`: `59s`, `2m`, `2m30s`, `12m`, `3h`, `3h20m`,
/// `20h`, `4d`, `4d5h`, `30d`, `2y`...
pub fn human_duration(d: Duration) -> String {
    let secs = d.as_secs();
    if secs < 60 * 2 {
        return format!("{secs}s");
    }
    let minutes = secs / 60;
    if minutes < 10 {
        let s = secs % 60;
        return if s == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{s}s")
        };
    }
    if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = minutes / 60;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 {
            format!("{}d", hours / 24)
        } else {
            format!("{}d{h}h", hours / 24)
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let days = (hours / 24) % 365;
        return if days == 0 {
            format!("{}y", hours / 24 / 365)
        } else {
            format!("{}y{days}d", hours / 24 / 365)
        };
    }
    format!("{}y", hours / 24 / 365)
}

/// The age at `now` of something created at `ts`, as kubectl's AGE column
/// shows it: `<unknown>` without a (readable) timestamp, `<invalid>` when
/// it is more than a second in the future.
pub fn age(ts: &str, now: SystemTime) -> String {
    let Some(t) = parse_rfc3339(ts.trim()) else {
        return "<unknown>".into();
    };
    match now.duration_since(t) {
        Ok(d) => human_duration(d),
        Err(e) if e.duration() > Duration::from_secs(1) => "<invalid>".into(),
        Err(_) => "0s".into(),
    }
}

/// A `SystemTime` field as RFC 3339 with nanoseconds
/// (`2024-05-01T12:00:00.123456789Z`), for `#[serde(with =
/// "keelson_model::time::serde_nanos")]`. Reading is strict (a `T` and a
/// `Z` or `+00:00`), as for strings this module wrote.
pub mod serde_nanos {
    use std::time::SystemTime;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&humantime::format_rfc3339_nanos(super::clamp(*t)))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SystemTime, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_rfc3339(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_known_instant_formats_to_seconds_in_utc() {
        let t = UNIX_EPOCH + Duration::new(1_714_564_800, 987_654_321);
        assert_eq!(format_rfc3339(t), "2024-05-01T12:00:00Z");
        assert_eq!(format_rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
    }

    #[test]
    fn formatted_times_parse_back_to_the_second() {
        let t = UNIX_EPOCH + Duration::from_secs(1_714_564_800);
        assert_eq!(parse_rfc3339(&format_rfc3339(t)), Some(t));
        let with_nanos = t + Duration::from_nanos(5);
        assert_eq!(parse_rfc3339(&format_rfc3339(with_nanos)), Some(t));
        let now = format_rfc3339(SystemTime::now());
        assert_eq!(parse_rfc3339(&now).map(format_rfc3339), Some(now));
    }

    #[test]
    fn parsing_is_lenient_as_before() {
        let t = UNIX_EPOCH + Duration::from_secs(1_714_564_800);
        for s in [
            "2024-05-01T12:00:00Z",
            "2024-05-01T12:00:00+00:00",
            "2024-05-01 12:00:00",
            "2024-05-01T12:00:00",
        ] {
            assert_eq!(parse_rfc3339(s), Some(t), "{s}");
        }
        assert_eq!(
            parse_rfc3339("2024-05-01T12:00:00.5Z"),
            Some(t + Duration::from_millis(500))
        );
        assert_eq!(parse_rfc3339("2024-05-01T14:30:00+02:30"), Some(t));
        assert_eq!(parse_rfc3339("2024-05-01T11:00:00-01:00"), Some(t));
    }

    #[test]
    fn an_unreadable_string_is_none() {
        for s in [
            "",
            "yesterday",
            "2024-05-01",
            "2024-13-01T12:00:00Z",
            "2024-05-01T25:00:00Z",
            "1969-12-31T23:59:59Z",
            "2024-05-01T12:00:00.x",
            "2024-05-01T12:00:00é",
        ] {
            assert_eq!(parse_rfc3339(s), None, "{s:?}");
        }
    }

    #[test]
    fn times_outside_the_writable_range_are_clamped_not_a_panic() {
        let before = UNIX_EPOCH - Duration::from_secs(1);
        assert_eq!(format_rfc3339(before), "1970-01-01T00:00:00Z");
        let after = UNIX_EPOCH + Duration::from_secs(300_000_000_000);
        assert_eq!(format_rfc3339(after), "9999-12-31T23:59:59Z");
    }

    #[test]
    fn durations_read_as_kubectl_prints_them() {
        let s = Duration::from_secs;
        assert_eq!(human_duration(s(0)), "0s");
        assert_eq!(human_duration(s(45)), "45s");
        assert_eq!(human_duration(s(59)), "59s");
        assert_eq!(human_duration(s(119)), "119s");
        assert_eq!(human_duration(s(120)), "2m");
        assert_eq!(human_duration(s(150)), "2m30s");
        assert_eq!(human_duration(s(12 * 60)), "12m");
        assert_eq!(human_duration(s(3 * 3600)), "3h");
        assert_eq!(human_duration(s(3 * 3600 + 20 * 60)), "3h20m");
        assert_eq!(human_duration(s(20 * 3600)), "20h");
        assert_eq!(human_duration(s(4 * 86400)), "4d");
        assert_eq!(human_duration(s(5 * 86400)), "5d");
        assert_eq!(human_duration(s(4 * 86400 + 5 * 3600)), "4d5h");
        assert_eq!(human_duration(s(30 * 86400)), "30d");
        assert_eq!(human_duration(s(3 * 365 * 86400)), "3y");
    }

    #[test]
    fn ages_from_timestamps() {
        let now = UNIX_EPOCH + Duration::from_secs(1_714_557_600); // 2024-05-01T10:00:00Z
        assert_eq!(age("2024-05-01T10:00:00Z", now), "0s");
        assert_eq!(age("2024-05-01T09:59:01Z", now), "59s");
        assert_eq!(age("2024-05-01T09:58:00Z", now), "2m");
        assert_eq!(age("2024-05-01T07:00:00Z", now), "3h");
        assert_eq!(age("2024-04-27T10:00:00Z", now), "4d");
        assert_eq!(age("2024-05-01T09:59:59.5Z", now), "0s");
        assert_eq!(age("2024-05-01T12:00:00+02:00", now), "0s");
        assert_eq!(age("2024-05-01T07:00:00-01:00", now), "120m");
        assert_eq!(age(" 2024-05-01T09:58:00Z ", now), "2m");
        assert_eq!(age("", now), "<unknown>");
        assert_eq!(age("yesterday", now), "<unknown>");
        assert_eq!(age("2024-05-01T10:00:00.5Z", now), "0s");
        assert_eq!(age("2024-05-01T11:00:00Z", now), "<invalid>");
    }

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Record {
        #[serde(with = "serde_nanos")]
        at: SystemTime,
    }

    #[test]
    fn serde_nanos_round_trips_to_the_nanosecond() {
        let r = Record {
            at: UNIX_EPOCH + Duration::new(1_714_564_800, 123_456_789),
        };
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(json, r#"{"at":"2024-05-01T12:00:00.123456789Z"}"#);
        assert_eq!(serde_json::from_str::<Record>(&json).unwrap(), r);
        assert!(serde_json::from_str::<Record>(r#"{"at":"2024-05-01 12:00:00"}"#).is_err());
        assert!(serde_json::from_str::<Record>(r#"{"at":"soon"}"#).is_err());
    }
}
