//! The admin's expiry notices: one `expiry_warn_days` before the end, one after it. Their
//! ids carry the day, so each is sent once, and again only for a new day.

use std::io::Write;

use anyhow::Result;

use super::State;
use crate::config::Config;
use crate::policy::notices::{self, Notice};
use crate::policy::values::Day;
use crate::registry::UserSettings;

/// The notice due for `name` on `today`, if any.
pub fn due(config: &Config, name: &str, settings: &UserSettings, today: Day) -> Option<Notice> {
    match super::state(settings.expires, today) {
        State::Never => None,
        State::Expires { day, days_left } => {
            (days_left <= i64::from(config.policy.expiry_warn_days)).then(|| Notice {
                id: format!("expiry-warn-{name}-{day}"),
                user: name.to_string(),
                subject: format!("SFTP account {name} expires on {day}"),
                text: format!(
                    "The SFTP account {name} works through {day} (UTC) and stops at the end of that day, {}: {} day(s) left, today included.\n\nTo keep it: sftpctl set {name} expires=YYYY-MM-DD (or expires=never).\n",
                    crate::tz::format_local(day.end_unix()),
                    days_left + 1
                ),
                to_client: false,
            })
        }
        State::Expired { day } => Some(Notice {
            id: format!("expired-{name}-{day}"),
            user: name.to_string(),
            subject: format!("SFTP account {name} expired"),
            text: format!(
                "The SFTP account {name} expired at the end of {day} (UTC), {}: its logins are refused.\n\nTo extend it: sftpctl set {name} expires=YYYY-MM-DD (or expires=never).\n",
                crate::tz::format_local(day.end_unix())
            ),
            to_client: false,
        }),
    }
}

pub fn queue_for(
    config: &Config,
    name: &str,
    settings: &UserSettings,
    today: Day,
    dry_run: bool,
    out: &mut dyn Write,
) -> Result<()> {
    let Some(notice) = due(config, name, settings, today) else {
        return Ok(());
    };
    if dry_run {
        writeln!(out, "would queue notice {} (unless sent before)", notice.id)?;
    } else if notices::queue(config, &notice)? {
        writeln!(out, "queued notice {}", notice.id)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warn_window_and_expiry() {
        let config = Config::default(); // expiry_warn_days = 7
        let settings = UserSettings {
            expires: Some("2027-03-31".parse().unwrap()),
            ..Default::default()
        };
        let on = |d: &str| due(&config, "alice", &settings, d.parse().unwrap()).map(|n| n.id);
        assert_eq!(on("2027-03-23"), None);
        assert_eq!(
            on("2027-03-24").as_deref(),
            Some("expiry-warn-alice-2027-03-31")
        );
        assert_eq!(
            on("2027-03-31").as_deref(),
            Some("expiry-warn-alice-2027-03-31")
        );
        assert_eq!(
            on("2027-04-01").as_deref(),
            Some("expired-alice-2027-03-31")
        );
        assert_eq!(
            due(&config, "alice", &UserSettings::default(), Day::today()),
            None
        );
    }
}
