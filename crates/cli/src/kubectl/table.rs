//! Plain-text tables as kubectl prints them: columns as wide as their widest
//! cell, three spaces apart, the last column unpadded. The cells of `get`'s
//! tables, ages included, come from [`keelson_model::printers`] and
//! [`keelson_model::time`].

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
    fn bytes_for_people() {
        assert_eq!(human_bytes(812), "812 B");
        assert_eq!(human_bytes(20 * 1024), "20 KiB");
        assert_eq!(human_bytes(1536 * 1024), "1.5 MiB");
    }
}
