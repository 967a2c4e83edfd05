//! Turning figures into what a person reads: sizes, modes, user names, dates,
//! tables.

use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

/// `16 B`, `4.0 KiB`, `1.5 MiB`, ...
pub(crate) fn size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// `rw-------` for 0o600.
pub(crate) fn mode(bits: u32) -> String {
    let mut text = String::with_capacity(9);
    for shift in [6, 3, 0] {
        let part = (bits >> shift) & 7;
        text.push(if part & 4 != 0 { 'r' } else { '-' });
        text.push(if part & 2 != 0 { 'w' } else { '-' });
        text.push(if part & 1 != 0 { 'x' } else { '-' });
    }
    text
}

/// Names from a `name:x:id:...` database (`/etc/passwd`, `/etc/group`).
fn names(path: &str) -> HashMap<u32, String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split(':');
            let name = fields.next()?;
            let id = fields.nth(1)?.parse().ok()?;
            Some((id, name.to_owned()))
        })
        .collect()
}

/// The user's name, if `/etc/passwd` has it.
pub(crate) fn user(uid: u32) -> Option<String> {
    static USERS: OnceLock<HashMap<u32, String>> = OnceLock::new();
    USERS.get_or_init(|| names("/etc/passwd")).get(&uid).cloned()
}

/// The group's name, if `/etc/group` has it.
pub(crate) fn group(gid: u32) -> Option<String> {
    static GROUPS: OnceLock<HashMap<u32, String>> = OnceLock::new();
    GROUPS.get_or_init(|| names("/etc/group")).get(&gid).cloned()
}

/// Seconds (with a fraction) since the epoch.
pub(crate) fn epoch_seconds(time: SystemTime) -> f64 {
    time.duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

/// `2026-03-01 12:34:56 UTC`.
pub(crate) fn date(time: SystemTime) -> String {
    let secs = time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Howard Hinnant's days-to-civil algorithm.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// `C` or `F`.
pub(crate) fn order(order: shmbridge::array::Order) -> &'static str {
    match order {
        shmbridge::array::Order::C => "C",
        shmbridge::array::Order::F => "F",
    }
}

/// Pids as `12,345` (`-` for none).
pub(crate) fn pids(pids: &[u32]) -> String {
    if pids.is_empty() {
        return "-".into();
    }
    pids.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
}

/// A table: each column as wide as its widest cell; numbers right-aligned.
pub(crate) fn table(headers: &[&str], rows: &[Vec<String>], right: &[bool]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut text = String::new();
        for (i, cell) in cells.iter().enumerate() {
            let pad = widths[i].saturating_sub(cell.chars().count());
            let last = i + 1 == cells.len();
            if right.get(i).copied().unwrap_or(false) {
                text.push_str(&" ".repeat(pad));
                text.push_str(cell);
            } else {
                text.push_str(cell);
                if !last {
                    text.push_str(&" ".repeat(pad));
                }
            }
            if !last {
                text.push_str("  ");
            }
        }
        text.push('\n');
        text
    };
    let mut out = line(headers.to_vec());
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn figures_read_well() {
        assert_eq!(size(16), "16 B");
        assert_eq!(size(4096), "4.0 KiB");
        assert_eq!(size(3 * 1024 * 1024 / 2), "1.5 MiB");
        assert_eq!(mode(0o600), "rw-------");
        assert_eq!(mode(0o754), "rwxr-xr--");
        assert_eq!(date(UNIX_EPOCH), "1970-01-01 00:00:00 UTC");
        assert_eq!(date(UNIX_EPOCH + Duration::from_secs(951_782_400)), "2000-02-29 00:00:00 UTC");
        assert_eq!(
            date(UNIX_EPOCH + Duration::from_secs(1_700_000_000)),
            "2023-11-14 22:13:20 UTC"
        );
        assert_eq!(pids(&[]), "-");
        assert_eq!(pids(&[1, 22]), "1,22");
    }

    #[test]
    fn tables_align() {
        let rows = vec![vec!["a".into(), "1".into()], vec!["bbb".into(), "22".into()]];
        assert_eq!(table(&["N", "V"], &rows, &[false, true]), "N     V\na     1\nbbb  22\n");
    }
}

/// `text` (a segment's name) safe to print on a terminal: control characters,
/// the invisible and direction-changing ones (zero-width spaces and joiners, line
/// and paragraph separators, bidirectional overrides) and the backslash escaped as
/// Rust writes them (`\n`, `\u{1b}`, `\u{200b}`, `\\`), as `ls -b` does. Anyone may
/// name a file in `/dev/shm`: unescaped, a name could forge table rows, send escape
/// sequences to the reader's terminal, or look like another name. (`--json` output
/// escapes by itself.)
pub(crate) fn printable(text: &str) -> std::borrow::Cow<'_, str> {
    escaped(text, true)
}

/// As [`printable`], for a message whose names are already quoted with Rust's
/// escapes (an error's text): the backslashes stay as they are.
pub(crate) fn printable_message(text: &str) -> std::borrow::Cow<'_, str> {
    escaped(text, false)
}

fn escaped(text: &str, backslash: bool) -> std::borrow::Cow<'_, str> {
    let unsafe_char = |c: char| {
        (backslash && c == '\\')
            || c.is_control()
            || matches!(c,
                '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}' | '\u{2060}'..='\u{2069}'
                | '\u{feff}' | '\u{061c}' | '\u{00ad}')
    };
    if !text.chars().any(unsafe_char) {
        return text.into();
    }
    text.chars()
        .map(|c| if unsafe_char(c) { c.escape_default().to_string() } else { c.to_string() })
        .collect::<String>()
        .into()
}

#[cfg(test)]
mod printable_tests {
    use super::{printable, printable_message};

    #[test]
    fn names_cannot_forge_rows_or_reach_the_terminal() {
        assert_eq!(printable("/frames"), "/frames");
        assert_eq!(printable("/évian_✓"), "/évian_✓");
        assert_eq!(printable("/evil\n_payroll"), "/evil\\n_payroll");
        assert_eq!(printable("/esc\u{1b}]0;owned\u{7}"), "/esc\\u{1b}]0;owned\\u{7}");
        assert_eq!(printable("/a\\nb"), "/a\\\\nb");
        assert_eq!(printable("/rtl\u{202e}gpj.exe"), "/rtl\\u{202e}gpj.exe");
        assert_eq!(printable("/z\u{200b}w"), "/z\\u{200b}w");
        assert_eq!(printable("/a\u{2028}b"), "/a\\u{2028}b");
        // An error's text already quotes names with escapes: not escaped twice.
        assert_eq!(printable_message("no segment \"/q\\u{1b}\""), "no segment \"/q\\u{1b}\"");
        assert_eq!(printable_message("raw \u{1b}"), "raw \\u{1b}");
    }
}
