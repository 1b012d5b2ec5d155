//! rsyslog's two timestamp formats → Unix seconds, and durations as text. Parsing stays
//! hand-written: it runs for every log line, needs no zone (the stamps carry their offset, or
//! are UTC), and is exact for the proleptic Gregorian dates rsyslog writes. Every time shown to
//! people is formatted in `crate::tz`, through the system's tz database.

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// (year, month, day) of a day count since 1970-01-01.
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// `1h 02m 03s`, `4m 05s`, `6s`.
pub fn format_duration(secs: i64) -> String {
    let secs = secs.max(0);
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    if h > 0 {
        format!("{h}h {m:02}m {s:02}s")
    } else if m > 0 {
        format!("{m}m {s:02}s")
    } else {
        format!("{s}s")
    }
}

pub fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn digits(s: &[u8]) -> Option<u32> {
    if s.is_empty() || !s.iter().all(u8::is_ascii_digit) || s.len() > 9 {
        return None;
    }
    Some(s.iter().fold(0u32, |acc, d| acc * 10 + u32::from(d - b'0')))
}

fn hms(s: &[u8]) -> Option<i64> {
    if s.len() != 8 || s[2] != b':' || s[5] != b':' {
        return None;
    }
    let (h, m, sec) = (digits(&s[0..2])?, digits(&s[3..5])?, digits(&s[6..8])?);
    if h > 23 || m > 59 || sec > 60 {
        return None;
    }
    Some(i64::from(h * 3600 + m * 60 + sec))
}

/// rsyslog's file format: `2026-11-27T16:04:18.430882+00:00` (fraction and offset optional).
pub fn parse_rfc3339(s: &[u8]) -> Option<i64> {
    parse_rfc3339_micros(s).map(|(secs, _)| secs)
}

/// Like [`parse_rfc3339`], plus the microseconds of the second when the stamp has a fraction.
pub fn parse_rfc3339_micros(s: &[u8]) -> Option<(i64, Option<u32>)> {
    if let Ok(fixed) = <&[u8; 32]>::try_from(s) {
        if let Some(found) = parse_rsyslog_stamp(fixed) {
            return Some(found);
        }
    }
    if s.len() < 19 || s[4] != b'-' || s[7] != b'-' || !matches!(s[10], b'T' | b' ') {
        return None;
    }
    let mut t = date_days(s[..10].try_into().ok()?)? * 86_400 + hms(&s[11..19])?;
    let mut rest = &s[19..];
    let mut micros = None;
    if let Some(frac) = rest.strip_prefix(b".") {
        let n = frac.iter().take_while(|b| b.is_ascii_digit()).count();
        if n > 0 {
            let mut us: u32 = 0;
            for i in 0..6 {
                us = us * 10
                    + frac
                        .get(i)
                        .filter(|_| i < n)
                        .map_or(0, |d| u32::from(d - b'0'));
            }
            micros = Some(us);
        }
        rest = &frac[n..];
    }
    match rest {
        [] | [b'Z'] => {}
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let off = i64::from(digits(&[*h1, *h2])? * 3600 + digits(&[*m1, *m2])? * 60);
            t += if *sign == b'+' { -off } else { off };
        }
        _ => return None,
    }
    Some((t, micros))
}

/// rsyslog's own stamp, every field at its place (`2026-11-27T16:04:18.430882+00:00`), as
/// every line of its file format has it: one pass over fixed positions instead of the general
/// parse (a sixth of a line's parsing was here). `None` for anything else, which the general
/// parse then reads (or refuses) as before.
fn parse_rsyslog_stamp(s: &[u8; 32]) -> Option<(i64, Option<u32>)> {
    const DIGITS: [usize; 24] = [
        0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18, 20, 21, 22, 23, 24, 25, 27, 28, 30, 31,
    ];
    let layout = s[4] == b'-'
        && s[7] == b'-'
        && s[10] == b'T'
        && s[13] == b':'
        && s[16] == b':'
        && s[19] == b'.'
        && matches!(s[26], b'+' | b'-')
        && s[29] == b':';
    if !layout
        || !DIGITS
            .iter()
            .fold(true, |all, &i| all & s[i].is_ascii_digit())
    {
        return None;
    }
    let two = |i: usize| u32::from(s[i] - b'0') * 10 + u32::from(s[i + 1] - b'0');
    let (h, m, sec) = (two(11), two(14), two(17));
    if h > 23 || m > 59 || sec > 60 {
        return None;
    }
    let days = date_days(s[..10].try_into().ok()?)?;
    let micros = two(20) * 10_000 + two(22) * 100 + two(24);
    let offset = i64::from(two(27) * 3600 + two(30) * 60);
    let local = days * 86_400 + i64::from(h * 3600 + m * 60 + sec);
    let t = if s[26] == b'+' {
        local - offset
    } else {
        local + offset
    };
    Some((t, Some(micros)))
}

/// Days since 1970-01-01 of `YYYY-MM-DD`. The lines of a log come in date order, so the last
/// date read is remembered (per thread): most lines cost one 10-byte compare here.
fn date_days(date: &[u8; 10]) -> Option<i64> {
    thread_local! {
        static LAST: std::cell::Cell<([u8; 10], i64)> =
            const { std::cell::Cell::new(([0; 10], 0)) };
    }
    let (last, days) = LAST.get();
    if last == *date {
        return Some(days);
    }
    let (y, mo, d) = (
        digits(&date[0..4])?,
        digits(&date[5..7])?,
        digits(&date[8..10])?,
    );
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) {
        return None;
    }
    let days = days_from_civil(i64::from(y), mo, d);
    LAST.set((*date, days));
    Some(days)
}

const MONTHS: [&[u8; 3]; 12] = [
    b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec",
];

/// The traditional format `Nov 27 16:04:26` (day may be space-padded). It has neither year nor
/// zone: the year is the one of `now` (or the one before, when that would be in the future),
/// the zone is taken as UTC.
pub fn parse_traditional(s: &[u8], now: i64) -> Option<i64> {
    if s.len() != 15 || s[3] != b' ' || s[6] != b' ' {
        return None;
    }
    let month = MONTHS.iter().position(|m| m[..] == s[0..3])? as u32 + 1;
    let day_text = if s[4] == b' ' { &s[5..6] } else { &s[4..6] };
    let day = digits(day_text)?;
    if !(1..=31).contains(&day) {
        return None;
    }
    let clock = hms(&s[7..15])?;
    let (year, _, _) = civil_from_days(now.div_euclid(86_400));
    let t = days_from_civil(year, month, day) * 86_400 + clock;
    if t > now + 86_400 {
        Some(days_from_civil(year - 1, month, day) * 86_400 + clock)
    } else {
        Some(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_dates() {
        for days in [-1000, 0, 19_000, 20_784, 100_000] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }

    #[test]
    fn parses_rsyslog_file_timestamps() {
        let t = parse_rfc3339(b"2026-11-27T16:04:18.430882+00:00").unwrap();
        assert_eq!(crate::tz::rfc3339_utc(t), "2026-11-27T16:04:18Z");
        assert_eq!(parse_rfc3339(b"2026-11-27T17:04:18+01:00"), Some(t));
        assert_eq!(parse_rfc3339(b"2026-11-27T16:04:18Z"), Some(t));
        assert_eq!(parse_rfc3339(b"2026-13-27T16:04:18Z"), None);
        assert_eq!(parse_rfc3339(b"2026-11-27T16:04:18+0"), None);
        let (_, us) = parse_rfc3339_micros(b"2026-11-27T16:04:18.430882+00:00").unwrap();
        assert_eq!(us, Some(430_882));
        let (_, us) = parse_rfc3339_micros(b"2026-11-27T16:04:18.43Z").unwrap();
        assert_eq!(us, Some(430_000));
    }

    #[test]
    fn the_fixed_stamp_reads_as_the_general_parse_does() {
        // A seventh digit of fraction (dropped): not 32 bytes, so the general parse reads it.
        let general = |s: &[u8]| {
            let mut longer = s.to_vec();
            longer.insert(26, b'7');
            parse_rfc3339_micros(&longer)
        };
        for stamp in [
            &b"2026-11-27T16:04:18.430882+00:00"[..],
            b"2026-11-27T16:04:18.000009-05:30",
            b"1999-12-31T23:59:60.999999+14:00",
            b"2026-02-30T00:00:00.000000+00:00",
        ] {
            let fixed = parse_rsyslog_stamp(stamp.try_into().unwrap());
            assert!(fixed.is_some(), "{}", String::from_utf8_lossy(stamp));
            assert_eq!(fixed, general(stamp), "{}", String::from_utf8_lossy(stamp));
        }
        for bad in [
            &b"2026-11-27T24:04:18.430882+00:00"[..],
            b"2026-11-27T16:04:18.43088x+00:00",
            b"2026-11-27 16:04:18.430882+00:00",
            b"2026-11-27T16:04:18.430882 00:00",
            b"2026-13-27T16:04:18.430882+00:00",
            b"2026-11-27T16:04:18,430882+00:00",
        ] {
            assert_eq!(parse_rsyslog_stamp(bad.try_into().unwrap()), None);
        }
        // What the fast path refuses still gets the general parse's answer.
        assert_eq!(
            parse_rfc3339_micros(b"2026-11-27 16:04:18.430882+00:00"),
            parse_rfc3339_micros(b"2026-11-27T16:04:18.430882+00:00")
        );
    }

    #[test]
    fn the_remembered_date_never_answers_for_another() {
        let a = parse_rfc3339(b"2026-11-27T16:04:18Z").unwrap();
        assert_eq!(parse_rfc3339(b"2026-11-27T16:04:19Z"), Some(a + 1));
        assert_eq!(parse_rfc3339(b"2026-11-28T16:04:18Z"), Some(a + 86_400));
        assert_eq!(parse_rfc3339(b"2026-11-2xT16:04:18Z"), None);
        assert_eq!(parse_rfc3339(b"2026-11-27T16:04:18Z"), Some(a));
        assert_eq!(
            parse_rfc3339(b"2026-02-30T00:00:00Z"),
            parse_rfc3339(b"2026-03-02T00:00:00Z")
        );
    }

    #[test]
    fn parses_traditional_timestamps() {
        let now = parse_rfc3339(b"2026-11-28T00:00:00Z").unwrap();
        let t = parse_traditional(b"Nov 27 16:04:26", now).unwrap();
        assert_eq!(crate::tz::rfc3339_utc(t), "2026-11-27T16:04:26Z");
        let t = parse_traditional(b"Dec  7 01:02:03", now).unwrap();
        assert_eq!(crate::tz::rfc3339_utc(t), "2025-12-07T01:02:03Z");
        assert_eq!(parse_traditional(b"Foo 27 16:04:26", now), None);
    }

    #[test]
    fn formats_durations() {
        assert_eq!(format_duration(6), "6s");
        assert_eq!(format_duration(245), "4m 05s");
        assert_eq!(format_duration(3723), "1h 02m 03s");
    }
}
