//! The time values of `--since` / `--until`: `2026-03-01`, `2026-03-01T14:30[:05][Z|±HH:MM]`
//! (a space may replace the `T`), or a duration back from now: `30d`, `12h`, `90m`, `45s`,
//! `2w`. Without an offset a value is read as UTC, the zone the logs are written in. The
//! calendar is jiff's (`crate::tz::unix_of`).

use crate::tz::unix_of;

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
    let date = (num(&b[0..4])?, num(&b[5..7])?, num(&b[8..10])?);
    if date.0 < 1970 {
        return None;
    }
    let rest = &b[10..];
    if rest.is_empty() {
        return unix_of(date, (0, 0, 0), 0);
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
    unix_of(date, (hour, minute, second), offset)
}

fn num(digits: &[u8]) -> Option<i64> {
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tz::rfc3339_utc;

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
