//! Plain-text tables as kubectl prints them (columns as wide as their widest
//! cell, three spaces apart, the last column unpadded), and kubectl's
//! human-readable ages.

use std::time::{Duration, SystemTime};

/// Spaces between columns (kubectl's tabwriter padding).
const COLUMN_GAP: usize = 3;

/// The width of each column: its widest cell (header included).
pub fn widths(header: &[String], rows: &[Vec<String>]) -> Vec<usize> {
    let n = rows
        .iter()
        .map(Vec::len)
        .chain(std::iter::once(header.len()))
        .max()
        .unwrap_or(0);
    let mut w = vec![0; n];
    for row in std::iter::once(header).chain(rows.iter().map(Vec::as_slice)) {
        for (i, cell) in row.iter().enumerate() {
            w[i] = w[i].max(cell.chars().count());
        }
    }
    w
}

/// One line: cells padded to `widths` (a wider cell pushes the rest right),
/// no trailing spaces, no newline.
pub fn render_row(row: &[String], widths: &[usize]) -> String {
    let mut line = String::new();
    for (i, cell) in row.iter().enumerate() {
        if i + 1 == row.len() {
            line.push_str(cell);
            break;
        }
        let w = widths.get(i).copied().unwrap_or(0);
        line.push_str(cell);
        let pad = w.saturating_sub(cell.chars().count()) + COLUMN_GAP;
        line.extend(std::iter::repeat_n(' ', pad));
    }
    line.trim_end().to_string()
}

/// The header and rows, one line each (every line ends in a newline).
pub fn render(header: &[String], rows: &[Vec<String>]) -> String {
    let w = widths(header, rows);
    let mut out = String::new();
    for row in std::iter::once(header).chain(rows.iter().map(Vec::as_slice)) {
        out.push_str(&render_row(row, &w));
        out.push('\n');
    }
    out
}

/// Header cells from static names.
pub fn header(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| (*s).to_string()).collect()
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

/// An RFC 3339 timestamp (`2024-05-01T10:00:00Z`, fractions and `+02:00`
/// offsets allowed).
pub fn parse_time(ts: &str) -> Option<SystemTime> {
    keelson_model::time::parse_rfc3339(ts.trim())
}

/// The age of something created at `ts`, as kubectl's AGE column shows it:
/// `<unknown>` without a (readable) timestamp, `<invalid>` when it is more
/// than a second in the future.
pub fn age(ts: &str, now: SystemTime) -> String {
    let Some(t) = parse_time(ts) else {
        return "<unknown>".into();
    };
    match now.duration_since(t) {
        Ok(d) => human_duration(d),
        Err(e) if e.duration() > Duration::from_secs(1) => "<invalid>".into(),
        Err(_) => "0s".into(),
    }
}

/// Bytes for people: `812 B`, `20 KiB`, `1.5 MiB`.
pub fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{b} B")
    } else if v < 10.0 {
        format!("{v:.1} {}", UNITS[unit])
    } else {
        format!("{v:.0} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(cells: &[&str]) -> Vec<String> {
        cells.iter().map(|s| (*s).to_string()).collect()
    }

    #[test]
    fn columns_align_three_spaces_apart() {
        let out = render(
            &header(&["NAME", "READY", "STATUS"]),
            &[
                row(&["web-1", "1/1", "Running"]),
                row(&["a-much-longer-name", "0/1", "CrashLoopBackOff"]),
            ],
        );
        let want = "\
NAME                 READY   STATUS
web-1                1/1     Running
a-much-longer-name   0/1     CrashLoopBackOff
";
        assert_eq!(out, want);
        // Every column starts at the same offset on every line.
        let lines: Vec<&str> = out.lines().collect();
        let col = |l: &str, word: &str| l.find(word).expect("cell");
        assert_eq!(col(lines[0], "READY"), col(lines[1], "1/1"));
        assert_eq!(col(lines[0], "STATUS"), col(lines[2], "CrashLoopBackOff"));
    }

    #[test]
    fn empty_last_cells_leave_no_trailing_spaces() {
        let out = render(&header(&["A", "B"]), &[row(&["x", ""])]);
        assert_eq!(out, "A   B\nx\n");
        assert_eq!(
            render_row(&row(&["wider-than-width", "b"]), &[3, 1]),
            "wider-than-width   b"
        );
    }

    #[test]
    fn ages_like_kubectl() {
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
    fn age_from_timestamps() {
        let now = humantime::parse_rfc3339("2024-05-01T10:00:00Z").expect("time");
        assert_eq!(age("2024-05-01T10:00:00Z", now), "0s");
        assert_eq!(age("2024-05-01T09:59:01Z", now), "59s");
        assert_eq!(age("2024-05-01T09:58:00Z", now), "2m");
        assert_eq!(age("2024-05-01T07:00:00Z", now), "3h");
        assert_eq!(age("2024-04-27T10:00:00Z", now), "4d");
        assert_eq!(age("2024-05-01T09:59:59.5Z", now), "0s");
        assert_eq!(age("2024-05-01T12:00:00+02:00", now), "0s");
        assert_eq!(age("2024-05-01T07:00:00-01:00", now), "120m");
        assert_eq!(age("", now), "<unknown>");
        assert_eq!(age("yesterday", now), "<unknown>");
        assert_eq!(age("2024-05-01T10:00:00.5Z", now), "0s");
        assert_eq!(age("2024-05-01T11:00:00Z", now), "<invalid>");
    }

    #[test]
    fn bytes_for_people() {
        assert_eq!(human_bytes(812), "812 B");
        assert_eq!(human_bytes(20 * 1024), "20 KiB");
        assert_eq!(human_bytes(1536 * 1024), "1.5 MiB");
    }
}
