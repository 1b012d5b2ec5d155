//! When digests are due: `mail.digest_at` on every civil day of the mail zone. Days are
//! counted on the calendar (jiff), never as 86,400 s, so a DST change makes one day 23 or
//! 25 hours long and neither skips nor doubles a digest.

use anyhow::Result;
use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::Timestamp;

/// A time of day, `HH:MM` or `HH:MM:SS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct At {
    hour: i8,
    minute: i8,
    second: i8,
}

impl At {
    pub fn parse(text: &str) -> Result<At> {
        let bad = || {
            anyhow::anyhow!(
                "mail.digest_at: {text:?} is not a time of day: use HH:MM (24-hour clock, local time in mail.timezone), e.g. \"18:00\""
            )
        };
        let parts: Vec<&str> = text.split(':').collect();
        if !(2..=3).contains(&parts.len())
            || parts
                .iter()
                .any(|p| p.len() != 2 || !p.bytes().all(|b| b.is_ascii_digit()))
        {
            return Err(bad());
        }
        let num = |i: usize| parts.get(i).map_or(Ok(0), |p| p.parse::<i8>());
        let (hour, minute, second) = (
            num(0).map_err(|_| bad())?,
            num(1).map_err(|_| bad())?,
            num(2).map_err(|_| bad())?,
        );
        if hour > 23 || minute > 59 || second > 59 {
            return Err(bad());
        }
        Ok(At {
            hour,
            minute,
            second,
        })
    }
}

/// The due instant of `date`: `at` on that day. A time the day skips (spring forward) is
/// taken as the same time after the gap (02:30 → 03:30), one it has twice (autumn) as the
/// first: every date has exactly one.
fn due_on(tz: &TimeZone, date: Date, at: At) -> i64 {
    let dt = date.at(at.hour, at.minute, at.second, 0);
    match tz.to_ambiguous_timestamp(dt).compatible() {
        Ok(ts) => ts.as_second(),
        // Only at the ends of jiff's range (year ±9999).
        Err(_) => dt
            .to_zoned(TimeZone::UTC)
            .map_or(0, |z| z.timestamp().as_second()),
    }
}

fn date_of(tz: &TimeZone, unix: i64) -> Date {
    let ts = Timestamp::from_second(unix).unwrap_or(Timestamp::UNIX_EPOCH);
    tz.to_datetime(ts).date()
}

/// The latest due instant at or before `now`.
pub fn latest_due(tz: &TimeZone, at: At, now: i64) -> i64 {
    let date = date_of(tz, now);
    let today = due_on(tz, date, at);
    if today <= now {
        return today;
    }
    date.yesterday().map_or(today, |d| due_on(tz, d, at))
}

/// The first due instant after `t`.
pub fn next_due(tz: &TimeZone, at: At, t: i64) -> i64 {
    let date = date_of(tz, t);
    let today = due_on(tz, date, at);
    if today > t {
        return today;
    }
    date.tomorrow().map_or(i64::MAX, |d| due_on(tz, d, at))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unix(stamp: &str) -> i64 {
        stamp.parse::<Timestamp>().unwrap().as_second()
    }

    fn zone(name: &str) -> TimeZone {
        jiff::tz::db().get(name).unwrap()
    }

    fn at(text: &str) -> At {
        At::parse(text).unwrap()
    }

    #[test]
    fn parses_times_of_day_and_refuses_the_rest() {
        assert_eq!(
            at("18:00"),
            At {
                hour: 18,
                minute: 0,
                second: 0
            }
        );
        assert_eq!(at("07:05:09").second, 9);
        at("00:00");
        at("23:59:59");
        for bad in [
            "",
            "18",
            "6:00",
            "18:0",
            "24:00",
            "18:60",
            "18:00:60",
            "18h00",
            "-1:00",
            "18:00\n",
            " 18:00",
            "18:00:00:00",
            "+8:00",
        ] {
            let e = At::parse(bad).unwrap_err().to_string();
            assert!(
                e.starts_with("mail.digest_at: ") && !e.contains('\n'),
                "{bad:?}: {e}"
            );
        }
    }

    #[test]
    fn latest_and_next_in_utc() {
        let tz = TimeZone::UTC;
        let a = at("18:00");
        let noon = unix("2026-12-03T12:00:00Z");
        assert_eq!(latest_due(&tz, a, noon), unix("2026-12-02T18:00:00Z"));
        assert_eq!(next_due(&tz, a, noon), unix("2026-12-03T18:00:00Z"));
        let six = unix("2026-12-03T18:00:00Z");
        assert_eq!(latest_due(&tz, a, six), six, "due at its own second");
        assert_eq!(next_due(&tz, a, six), unix("2026-12-04T18:00:00Z"));
        // Year end.
        let late = unix("2026-12-31T19:00:00Z");
        assert_eq!(next_due(&tz, a, late), unix("2027-01-01T18:00:00Z"));
    }

    #[test]
    fn local_time_of_the_mail_zone() {
        let tz = zone("America/New_York");
        // 18:00 EST = 23:00 UTC; at 20:00 UTC today's is still ahead.
        let t = unix("2026-12-03T20:00:00Z");
        assert_eq!(next_due(&tz, at("18:00"), t), unix("2026-12-03T23:00:00Z"));
        assert_eq!(
            latest_due(&tz, at("18:00"), t),
            unix("2026-12-02T23:00:00Z")
        );
    }

    /// Walks the dues from one to the next across a span; each civil day has exactly one.
    fn dues(tz: &TimeZone, a: At, from: &str, days: usize) -> Vec<i64> {
        let mut out = vec![next_due(tz, a, unix(from))];
        while out.len() < days {
            out.push(next_due(tz, a, *out.last().unwrap()));
        }
        out
    }

    fn dates(tz: &TimeZone, dues: &[i64]) -> Vec<String> {
        dues.iter().map(|&d| date_of(tz, d).to_string()).collect()
    }

    #[test]
    fn dst_in_berlin_neither_skips_nor_doubles_a_day() {
        let tz = zone("Europe/Berlin");
        // Spring: 2026-03-29 has 23 hours; autumn: 2026-10-25 has 25.
        for (from, short_or_long) in [
            ("2026-03-27T12:00:00Z", 23 * 3600),
            ("2026-10-23T12:00:00Z", 25 * 3600),
        ] {
            let d = dues(&tz, at("18:00"), from, 4);
            let got = dates(&tz, &d);
            let want: Vec<String> = {
                let first: Date = got[0].parse().unwrap();
                (0..4)
                    .map(|i| {
                        first
                            .checked_add(jiff::Span::new().days(i))
                            .unwrap()
                            .to_string()
                    })
                    .collect()
            };
            assert_eq!(got, want, "one digest per civil day");
            let gaps: Vec<i64> = d.windows(2).map(|w| w[1] - w[0]).collect();
            assert!(gaps.contains(&short_or_long), "{gaps:?}");
            for due in &d {
                let shown = tz.to_datetime(Timestamp::from_second(*due).unwrap());
                assert_eq!(
                    (shown.hour(), shown.minute()),
                    (18, 0),
                    "always 18:00 local"
                );
            }
            // latest_due agrees with next_due everywhere in between.
            for w in d.windows(2) {
                for t in [w[0], w[0] + 1, w[1] - 1] {
                    assert_eq!(latest_due(&tz, at("18:00"), t), w[0]);
                    assert_eq!(next_due(&tz, at("18:00"), t), w[1]);
                }
            }
        }
    }

    #[test]
    fn a_digest_time_inside_the_dst_change_still_comes_once() {
        let tz = zone("Europe/Berlin");
        // 02:30 does not exist on 2026-03-29: that day's digest is at 03:30 CEST.
        let d = dues(&tz, at("02:30"), "2026-03-28T00:00:00Z", 3);
        assert_eq!(
            d,
            [
                unix("2026-03-28T01:30:00Z"),
                unix("2026-03-29T01:30:00Z"),
                unix("2026-03-30T00:30:00Z")
            ]
        );
        // 02:30 happens twice on 2026-10-25: the first one, once.
        let d = dues(&tz, at("02:30"), "2026-10-24T00:00:00Z", 3);
        assert_eq!(
            d,
            [
                unix("2026-10-24T00:30:00Z"),
                unix("2026-10-25T00:30:00Z"),
                unix("2026-10-26T01:30:00Z")
            ]
        );
        assert_eq!(
            latest_due(&tz, at("02:30"), unix("2026-10-25T01:45:00Z")),
            unix("2026-10-25T00:30:00Z"),
            "the second 02:30 is no new day"
        );
    }
}
