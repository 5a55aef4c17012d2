//! Durations as operators type them (`90s`, `15m`, `1h`, `7d`, or plain
//! seconds), and UTC timestamps for what the CLI prints.

/// Parses a duration into whole seconds.
///
/// Accepts a non-negative integer optionally followed by one unit:
/// `s` (seconds), `m` (minutes), `h` (hours) or `d` (days). Whether the
/// value is long enough for its purpose is decided by the caller.
pub fn parse_duration(text: &str) -> Result<u64, String> {
    let bad = || format!("invalid duration `{}`: use e.g. 90s, 15m, 1h, 7d or plain seconds", printable(text));
    let (digits, unit) = match text.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => text.split_at(i),
        None => (text, ""),
    };
    if digits.is_empty() {
        return Err(bad());
    }
    let multiplier: u64 = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(bad()),
    };
    let n: u64 = digits.parse().map_err(|_| bad())?;
    n.checked_mul(multiplier).ok_or_else(|| format!("duration `{}` is too large", printable(text)))
}

/// Formats unix seconds as an RFC 3339 UTC timestamp, e.g. `2026-11-05T14:03:00Z`.
pub fn format_unix(secs: u64) -> String {
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// The UTC year and month of unix seconds.
pub fn year_month(secs: u64) -> (i64, u32) {
    let (y, m, _) = civil_from_days((secs / 86_400) as i64);
    (y, m)
}

/// Days since 1970-01-01 to a proleptic Gregorian (year, month, day).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    // Howard Hinnant's algorithm.
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// User input echoed in messages, without control characters, cut to a sane length.
pub fn printable(s: &str) -> String {
    let mut out: String = s.chars().take(64).map(|c| if c.is_control() { '?' } else { c }).collect();
    if s.chars().count() > 64 {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_durations() {
        assert_eq!(parse_duration("90s"), Ok(90));
        assert_eq!(parse_duration("15m"), Ok(900));
        assert_eq!(parse_duration("1h"), Ok(3600));
        assert_eq!(parse_duration("7d"), Ok(604_800));
        assert_eq!(parse_duration("30d"), Ok(2_592_000));
        assert_eq!(parse_duration("3600"), Ok(3600));
        assert_eq!(parse_duration("0"), Ok(0));
        assert_eq!(parse_duration("007m"), Ok(420));
    }

    #[test]
    fn bad_durations() {
        for bad in ["", "h", "-5", "+5", "1.5h", "1 h", " 1h", "1h ", "1H", "1w", "1hm", "1h30m", "ten", "5sec", "١٢"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should be refused");
        }
        // Overflow is an error, not a wrap.
        assert!(parse_duration("99999999999999999999").is_err());
        assert!(parse_duration("999999999999999999d").unwrap_err().contains("too large"));
    }

    #[test]
    fn timestamps() {
        assert_eq!(format_unix(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_unix(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(format_unix(1_800_000_000), "2027-01-15T08:00:00Z");
        assert_eq!(year_month(1_800_000_000), (2027, 1));
    }

    #[test]
    fn printable_strips_controls() {
        assert_eq!(printable("a\x1b[2Jb"), "a?[2Jb");
        assert!(printable(&"x".repeat(100)).ends_with('…'));
    }
}
