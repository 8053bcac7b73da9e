//! Times shown to people: Unix seconds as a UTC calendar date and time.

/// `YYYY-MM-DD HH:MM` (UTC, proleptic Gregorian) for Unix seconds.
pub fn format_minute(unix: i64) -> String {
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}", secs / 3600, secs % 3600 / 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(format_minute(0), "1970-01-01 00:00");
        assert_eq!(format_minute(1_795_000_000), "2026-11-18 11:06");
        assert_eq!(format_minute(951_782_400), "2000-02-29 00:00");
        assert_eq!(format_minute(-86_400), "1969-12-31 00:00");
    }
}
