//! The time values of `--since` / `--until`: `2026-03-01`, `2026-03-01T14:30[:05][Z|±HH:MM]`
//! (a space may replace the `T`), or a duration back from now: `30d`, `12h`, `90m`, `45s`,
//! `2w`. Without an offset a value is read as UTC, the zone the logs are written in.

/// Seconds since the epoch for `value`, or a one-line reason it is not a time.
pub fn parse_when(value: &str, now: i64) -> Result<i64, String> {
    let v = value.trim();
    if let Some(secs) = parse_duration(v) {
        return now
            .checked_sub(secs)
            .ok_or_else(|| format!("{value:?} reaches too far back"));
    }
    parse_date_time(v).ok_or_else(|| {
        format!(
            "{value:?} is not a time: give a date (2026-03-01), a date-time \
             (2026-03-01T14:30, UTC unless it ends in Z or ±HH:MM) or a duration back from \
             now (30d, 12h, 90m, 45s, 2w)"
        )
    })
}

fn parse_duration(v: &str) -> Option<i64> {
    let unit = v.chars().last()?;
    let per = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3_600,
        'd' => 86_400,
        'w' => 7 * 86_400,
        _ => return None,
    };
    let digits = &v[..v.len() - 1];
    if digits.is_empty() || digits.len() > 9 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse::<i64>().ok()?.checked_mul(per)
}

fn parse_date_time(v: &str) -> Option<i64> {
    let b = v.as_bytes();
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let year = num(&b[0..4])?;
    let month = num(&b[5..7])?;
    let day = num(&b[8..10])?;
    if !(1970..=9999).contains(&year) || !(1..=12).contains(&month) {
        return None;
    }
    if day < 1 || day > days_in_month(year, month) {
        return None;
    }
    let date = days_from_civil(year, month, day) * 86_400;
    let rest = &b[10..];
    if rest.is_empty() {
        return Some(date);
    }
    if rest[0] != b'T' && rest[0] != b't' && rest[0] != b' ' {
        return None;
    }
    let rest = &rest[1..];
    if rest.len() < 5 || rest[2] != b':' {
        return None;
    }
    let (hour, minute) = (num(&rest[0..2])?, num(&rest[3..5])?);
    let mut rest = &rest[5..];
    let mut second = 0;
    if rest.first() == Some(&b':') {
        second = num(rest.get(1..3)?)?;
        rest = &rest[3..];
    }
    if hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let offset = match rest {
        b"" | b"Z" | b"z" => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let (h, m) = (num(&[*h1, *h2])?, num(&[*m1, *m2])?);
            if h > 23 || m > 59 {
                return None;
            }
            let secs = h * 3_600 + m * 60;
            if *sign == b'+' {
                secs
            } else {
                -secs
            }
        }
        _ => return None,
    };
    Some(date + hour * 3_600 + minute * 60 + second - offset)
}

fn num(digits: &[u8]) -> Option<i64> {
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm). Only
/// parsing needs it; how times are shown belongs to the time-zone library.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `2026-03-01T14:30:05Z`: the machine-readable form for CSV (RFC 3339, UTC).
pub fn rfc3339_utc(unix: i64) -> String {
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3_600,
        secs / 60 % 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_date_times_and_durations() {
        let now = 1_800_000_000;
        assert_eq!(parse_when("1970-01-01", now), Ok(0));
        assert_eq!(parse_when("2026-03-01", now), Ok(1_772_323_200));
        assert_eq!(parse_when("2026-03-01T10:00", now), Ok(1_772_359_200));
        assert_eq!(parse_when("2026-03-01 10:00:30Z", now), Ok(1_772_359_230));
        assert_eq!(parse_when("2026-03-01T12:00+02:00", now), Ok(1_772_359_200));
        assert_eq!(parse_when("2024-02-29", now), Ok(1_709_164_800));
        assert_eq!(parse_when("30d", now), Ok(now - 30 * 86_400));
        assert_eq!(parse_when("12h", now), Ok(now - 12 * 3_600));
        assert_eq!(parse_when("2w", now), Ok(now - 14 * 86_400));
        for bad in [
            "",
            "d",
            "-3d",
            "3x",
            "2026-13-01",
            "2026-02-30",
            "2025-02-29",
            "2026-3-1",
            "2026-03-01T25:00",
            "2026-03-01T10",
            "2026-03-01T10:00+2",
            "yesterday",
            "9999999999d",
            "1969-12-31",
        ] {
            assert!(parse_when(bad, now).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn csv_times_round_trip() {
        for t in [0, 1_772_359_230, 1_709_164_800 + 86_399, 4_102_444_800] {
            assert_eq!(parse_when(&rfc3339_utc(t), 0), Ok(t), "{t}");
        }
        assert_eq!(rfc3339_utc(1_772_359_230), "2026-03-01T10:00:30Z");
    }
}
