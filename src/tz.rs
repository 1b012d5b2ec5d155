//! Times as people read them: `2026-11-27 17:04:18 +01:00 (CET)` in the host's zone (or
//! `mail.timezone`), from the system's tz database through jiff. Machine output uses
//! [`rfc3339_utc`]. Parsing rsyslog's stamps stays in `watch::time` (hot path, no zone needed).

use std::sync::OnceLock;

use anyhow::Result;
use jiff::tz::TimeZone;
use jiff::Timestamp;

/// The zone every human-facing time is shown in.
#[derive(Debug, Clone)]
pub struct Zone {
    tz: TimeZone,
}

impl Zone {
    pub fn utc() -> Zone {
        Zone { tz: TimeZone::UTC }
    }

    /// A zone of the system tz database (`/usr/share/zoneinfo`, or `TZDIR`).
    pub fn named(name: &str) -> Result<Zone> {
        check_name(name)?;
        let tz = jiff::tz::db().get(name).map_err(|_| {
            anyhow::anyhow!(
                "mail.timezone: unknown time zone {name:?}: use a name from /usr/share/zoneinfo such as \"Europe/Berlin\", or \"\" for the host's zone"
            )
        })?;
        Ok(Zone { tz })
    }

    /// The zone of `mail.timezone`, or the host's (`TZ` as the C library reads it, else
    /// `/etc/localtime`) when it is empty. Zone data that cannot be read means UTC and a
    /// warning on stderr: a watcher must keep reporting, whatever happened to /usr/share.
    pub fn for_config(name: &str) -> Zone {
        if !name.is_empty() {
            return Zone::named(name).unwrap_or_else(|e| {
                eprintln!("sftpctl: warning: {e:#}; times are shown in UTC");
                Zone::utc()
            });
        }
        match TimeZone::try_system() {
            Ok(tz) => Zone { tz },
            Err(e) => {
                eprintln!(
                    "sftpctl: warning: cannot read the host's time zone ({e}); times are shown in UTC: check /etc/localtime or set mail.timezone"
                );
                Zone::utc()
            }
        }
    }

    /// For the admin's commands: a `mail.timezone` the tz database does not have is an error
    /// (a typo must not go unnoticed). Only a missing database, or the host's zone being
    /// unreadable, falls back to UTC with a warning.
    pub fn strict(name: &str) -> Result<Zone> {
        if name.is_empty() || jiff::tz::db().is_definitively_empty() {
            return Ok(Zone::for_config(name));
        }
        Zone::named(name)
    }

    /// The jiff zone itself (calendar arithmetic: the digest's days).
    pub fn time_zone(&self) -> &TimeZone {
        &self.tz
    }

    /// `2026-11-27 17:04:18 +01:00 (CET)`; the abbreviation is left out where the zone has
    /// none but the offset itself (`+0530`-style names, e.g. `-03` for America/Sao_Paulo).
    pub fn format(&self, unix: i64) -> String {
        let Ok(ts) = Timestamp::from_second(unix) else {
            return format!("@{unix} (out of range)");
        };
        let info = self.tz.to_offset_info(ts);
        let offset = info.offset();
        let dt = offset.to_datetime(ts);
        let secs = offset.seconds();
        let (sign, abs) = if secs < 0 { ('-', -secs) } else { ('+', secs) };
        let abbr = info.abbreviation();
        let numeric = abbr.starts_with(['+', '-']);
        let mut out = format!(
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02} {sign}{:02}:{:02}",
            dt.year(),
            dt.month(),
            dt.day(),
            dt.hour(),
            dt.minute(),
            dt.second(),
            abs / 3600,
            abs / 60 % 60,
        );
        if !abbr.is_empty() && !numeric {
            out.push_str(" (");
            out.push_str(abbr);
            out.push(')');
        }
        out
    }
}

/// Letters, digits and `/_+-` only, no `..`: a zone name is never a path of its own.
fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('/')
        && !name
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..")
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/_+-".contains(c));
    if ok {
        Ok(())
    } else {
        anyhow::bail!(
            "mail.timezone: {name:?} is no time zone name: use one like \"Europe/Berlin\" or \"UTC\", or \"\" for the host's zone"
        )
    }
}

/// Checks the form of `mail.timezone` (part of the config's validation; whether the zone
/// exists is [`Zone::strict`]'s question, asked right after loading).
pub fn validate(name: &str) -> Result<()> {
    if name.is_empty() {
        Ok(())
    } else {
        check_name(name)
    }
}

static ZONE: OnceLock<Zone> = OnceLock::new();

/// Sets the zone of this process (once, after the config is loaded; later calls are ignored).
pub fn install(zone: Zone) {
    let _ = ZONE.set(zone);
}

/// The installed zone, or the host's when none was installed (tests, tools).
pub fn local() -> &'static Zone {
    ZONE.get_or_init(|| Zone::for_config(""))
}

/// [`Zone::format`] in this process's zone.
pub fn format_local(unix: i64) -> String {
    local().format(unix)
}

/// `2026-11-27T16:04:18Z`: for JSON and state files.
pub fn rfc3339_utc(unix: i64) -> String {
    match Timestamp::from_second(unix) {
        Ok(ts) => ts.to_string(),
        Err(_) => format!("@{unix}"),
    }
}

/// Seconds since the epoch of a calendar date and time of day at a fixed offset from UTC (in
/// seconds east), or None when there is no such moment (2027-02-30, 25:00, an offset beyond
/// ±25 h). For what people type (`--since`, `expires=`): jiff checks the calendar.
pub fn unix_of(date: (i64, i64, i64), time: (i64, i64, i64), offset_secs: i64) -> Option<i64> {
    let (year, month, day) = date;
    let (hour, minute, second) = time;
    let date = jiff::civil::Date::new(
        i16::try_from(year).ok()?,
        i8::try_from(month).ok()?,
        i8::try_from(day).ok()?,
    )
    .ok()?;
    let time = jiff::civil::Time::new(
        i8::try_from(hour).ok()?,
        i8::try_from(minute).ok()?,
        i8::try_from(second).ok()?,
        0,
    )
    .ok()?;
    let offset = jiff::tz::Offset::from_seconds(i32::try_from(offset_secs).ok()?).ok()?;
    let ts = offset.to_timestamp(date.to_datetime(time)).ok()?;
    Some(ts.as_second())
}

/// The UTC calendar date (year, month, day) of the day `days` after 1970-01-01.
pub fn utc_date(days: i64) -> Option<(i64, i64, i64)> {
    let ts = Timestamp::from_second(days.checked_mul(86_400)?).ok()?;
    let date = ts.to_zoned(jiff::tz::TimeZone::UTC).date();
    Some((
        i64::from(date.year()),
        i64::from(date.month()),
        i64::from(date.day()),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(stamp: &str) -> i64 {
        crate::watch::time::parse_rfc3339(stamp.as_bytes()).unwrap()
    }

    fn zone(name: &str) -> Zone {
        Zone::named(name).unwrap()
    }

    #[test]
    fn berlin_spring_forward() {
        let z = zone("Europe/Berlin");
        // 2026-03-29: 02:00 CET becomes 03:00 CEST.
        assert_eq!(
            z.format(at("2026-03-29T00:59:59Z")),
            "2026-03-29 01:59:59 +01:00 (CET)"
        );
        assert_eq!(
            z.format(at("2026-03-29T01:00:00Z")),
            "2026-03-29 03:00:00 +02:00 (CEST)"
        );
    }

    #[test]
    fn berlin_fall_back_shows_the_hour_twice_with_its_offset() {
        let z = zone("Europe/Berlin");
        // 2026-10-25: 03:00 CEST becomes 02:00 CET; 02:30 happens twice.
        assert_eq!(
            z.format(at("2026-10-25T00:30:00Z")),
            "2026-10-25 02:30:00 +02:00 (CEST)"
        );
        assert_eq!(
            z.format(at("2026-10-25T01:30:00Z")),
            "2026-10-25 02:30:00 +01:00 (CET)"
        );
    }

    #[test]
    fn half_hour_offset_and_utc() {
        assert_eq!(
            zone("Asia/Kolkata").format(at("2026-11-27T16:04:18Z")),
            "2026-11-27 21:34:18 +05:30 (IST)"
        );
        assert_eq!(
            Zone::utc().format(at("2026-11-27T16:04:18Z")),
            "2026-11-27 16:04:18 +00:00 (UTC)"
        );
        assert_eq!(
            zone("UTC").format(at("2026-11-27T16:04:18Z")),
            "2026-11-27 16:04:18 +00:00 (UTC)"
        );
        assert_eq!(
            zone("America/New_York").format(at("2026-11-27T16:04:18Z")),
            "2026-11-27 11:04:18 -05:00 (EST)"
        );
    }

    #[test]
    fn numeric_abbreviations_are_not_repeated() {
        assert_eq!(
            zone("America/Sao_Paulo").format(at("2026-11-27T16:04:18Z")),
            "2026-11-27 13:04:18 -03:00"
        );
    }

    #[test]
    fn bad_names_are_refused_in_one_line() {
        for bad in [
            "../../etc/passwd",
            "/etc/localtime",
            "Europe//Berlin",
            "a b",
            "",
        ] {
            let e = Zone::named(bad).unwrap_err().to_string();
            assert!(e.starts_with("mail.timezone: ") && !e.contains('\n'), "{e}");
        }
        for bad in ["../../etc/passwd", "Europe/Berlin\nx"] {
            assert!(validate(bad).is_err(), "{bad:?}");
        }
        let e = Zone::strict("Mars/Olympus").unwrap_err().to_string();
        assert!(e.starts_with("mail.timezone: unknown time zone"), "{e}");
        validate("").unwrap();
        validate("Mars/Olympus").unwrap(); // the form is fine: existence is checked by strict
        Zone::strict("Europe/Berlin").unwrap();
    }

    #[test]
    fn the_watcher_falls_back_to_utc_for_a_zone_it_cannot_find() {
        let z = Zone::for_config("Mars/Olympus");
        assert_eq!(
            z.format(at("2026-11-27T16:04:18Z")),
            "2026-11-27 16:04:18 +00:00 (UTC)"
        );
    }

    #[test]
    fn machine_times() {
        assert_eq!(
            rfc3339_utc(at("2026-11-27T17:04:18+01:00")),
            "2026-11-27T16:04:18Z"
        );
    }

    #[test]
    fn calendar_days_and_moments() {
        assert_eq!(unix_of((1970, 1, 1), (0, 0, 0), 0), Some(0));
        assert_eq!(
            unix_of((2026, 3, 1), (12, 0, 0), 7_200),
            Some(1_772_359_200)
        );
        assert_eq!(unix_of((2027, 2, 29), (0, 0, 0), 0), None);
        assert_eq!(unix_of((2024, 2, 29), (0, 0, 0), 0), Some(1_709_164_800));
        assert_eq!(unix_of((2026, 1, 1), (24, 0, 0), 0), None);
        assert_eq!(utc_date(0), Some((1970, 1, 1)));
        assert_eq!(utc_date(1_709_164_800 / 86_400), Some((2024, 2, 29)));
    }
}
