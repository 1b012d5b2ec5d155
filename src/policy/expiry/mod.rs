//! Account expiry (shadow) and idle lock (docs/policy.md, "Expiry and idle lock").
//!
//! `expires = D` means the account works through day D (UTC) and stops at its end. Shadow's
//! expire field is read differently by the two consumers sshd may use:
//! - sshd without PAM (auth-shadow.c `auth_shadow_acctexpired`): expired when
//!   `today - sp_expire < 0` is false, i.e. refused once `today > sp_expire`;
//! - PAM's pam_unix (passverify.c `check_shadow_expiry`): refused once `today >= sp_expire`
//!   (shadow's own `isexpired` agrees).
//!
//! So the field is D without PAM and D + 1 with PAM, chosen from the `UsePAM` sshd runs with.

pub mod idle;
mod notices;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;

use anyhow::{Context, Result};

use crate::config::Config;
use crate::plan::account_steps::{KillSessions, SetExpiry};
use crate::plan::{Plan, Step};
use crate::policy::values::Day;
use crate::registry::UserSettings;

/// Whether the sshd of `config` authenticates through PAM (`UsePAM`, global only: sshd
/// does not take it inside Match). Asked once per config file and process.
pub fn sshd_uses_pam(config: &Config) -> Result<bool> {
    static SEEN: Mutex<Option<HashMap<PathBuf, bool>>> = Mutex::new(None);
    let key = config.sshd.config.clone();
    if let Some(v) = SEEN
        .lock()
        .ok()
        .and_then(|m| m.as_ref()?.get(&key).copied())
    {
        return Ok(v);
    }
    let text = crate::openssh::sshd_t(&config.sshd.binary, &config.sshd.config, None)
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot tell whether sshd uses PAM, which decides the day written to shadow's account expiry: {e}; fix sshd's configuration (sshd -t) and run the command again"
            )
        })?;
    let pam = parse_use_pam(&text).context("sshd -T printed no usepam line")?;
    if let Ok(mut m) = SEEN.lock() {
        m.get_or_insert_with(HashMap::new).insert(key, pam);
    }
    Ok(pam)
}

fn parse_use_pam(sshd_t: &str) -> Option<bool> {
    sshd_t.lines().find_map(|l| {
        let mut w = l.split_whitespace();
        (w.next() == Some("usepam")).then(|| w.next() == Some("yes"))
    })
}

/// Shadow's expire field for "works through `day`": the day itself for sshd without PAM,
/// the next day for PAM.
pub fn shadow_field(day: Day, pam: bool) -> u64 {
    let field = if pam { day.days + 1 } else { day.days };
    // A day before 1970-01-02 would be the lock's marker or "expired since always".
    field.max(crate::plan::account_steps::LOCK_EXPIRE as i64 + 1) as u64
}

/// The field `settings` want in shadow (asks sshd about PAM only when there is a date).
pub fn wanted_field(config: &Config, settings: &UserSettings) -> Result<Option<u64>> {
    match settings.expires {
        None => Ok(None),
        Some(day) => Ok(Some(shadow_field(day, sshd_uses_pam(config)?))),
    }
}

/// The step that makes shadow's expiry of `name` match `settings.expires`.
pub fn expiry_step(config: &Config, name: &str, settings: &UserSettings) -> Result<SetExpiry> {
    Ok(SetExpiry {
        config: config.clone(),
        name: name.to_string(),
        field: wanted_field(config, settings)?,
        meaning: match settings.expires {
            Some(day) => format!("works through {day} (UTC)"),
            None => "never expires".into(),
        },
    })
}

/// Steps that make shadow's expiry of `name` match `settings.expires`.
pub fn steps(plan: &mut Plan, config: &Config, name: &str, settings: &UserSettings) -> Result<()> {
    plan.push(expiry_step(config, name, settings)?);
    Ok(())
}

/// The expiry state of a client on `today`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Never,
    /// Works through its day: `days_left` more days after today (0: today is the last).
    Expires {
        day: Day,
        days_left: i64,
    },
    Expired {
        day: Day,
    },
}

pub fn state(expires: Option<Day>, today: Day) -> State {
    match expires {
        None => State::Never,
        Some(day) if today > day => State::Expired { day },
        Some(day) => State::Expires {
            day,
            days_left: day.days - today.days,
        },
    }
}

/// This job of `sftpctl policy run`: the expiry notices, then the idle lock. With `dry_run`
/// it says what it would do and changes nothing.
pub fn run(
    config: &crate::config::Config,
    _source: &crate::config::Source,
    dry_run: bool,
    out: &mut dyn std::io::Write,
) -> anyhow::Result<()> {
    let today = Day::today();
    let mut failed = Vec::new();
    let shadow = if config.policy.idle_lock_days > 0 {
        Some(crate::accounts::read_shadow(config)?)
    } else {
        None
    };
    for name in crate::accounts::managed_names(config) {
        let settings = match crate::registry::load(config, &name) {
            Ok(s) => s,
            Err(e) => {
                writeln!(out, "sftpctl policy run: expiry: {name}: {e:#}")?;
                failed.push(name);
                continue;
            }
        };
        let mut one = || -> Result<()> {
            notices::queue_for(config, &name, &settings, today, dry_run, out)?;
            if let State::Expired { day } = state(settings.expires, today) {
                end_sessions(&name, day, dry_run, out)?;
            }
            if let Some(shadow) = &shadow {
                idle::check(config, &name, &settings, shadow.get(&name), dry_run, out)?;
            }
            Ok(())
        };
        if let Err(e) = one() {
            writeln!(out, "sftpctl policy run: expiry: {name}: {e:#}")?;
            failed.push(name);
        }
    }
    anyhow::ensure!(
        failed.is_empty(),
        "{} client(s) not handled: {}",
        failed.len(),
        failed.join(", ")
    );
    Ok(())
}

/// sshd and PAM check the expiry at login only: a session opened before the end of the
/// day would go on. Ended here, on the first run after it.
fn end_sessions(name: &str, day: Day, dry_run: bool, out: &mut dyn std::io::Write) -> Result<()> {
    let step = KillSessions {
        name: name.to_string(),
    };
    if step.is_satisfied()? {
        return Ok(());
    }
    if dry_run {
        writeln!(out, "would end the sessions of {name} (expired {day})")?;
        return Ok(());
    }
    writeln!(
        out,
        "ending the sessions of {name}: it expired at the end of {day}"
    )?;
    step.apply(&mut crate::plan::Journal::default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(s: &str) -> Day {
        s.parse().unwrap()
    }

    #[test]
    fn field_per_pam_mode() {
        let d = day("2027-03-31");
        assert_eq!(shadow_field(d, false), d.days as u64);
        assert_eq!(shadow_field(d, true), d.days as u64 + 1);
        assert_eq!(shadow_field(day("1970-01-01"), false), 2);
    }

    #[test]
    fn use_pam_line() {
        assert_eq!(parse_use_pam("port 22\nusepam yes\n"), Some(true));
        assert_eq!(parse_use_pam("usepam no\n"), Some(false));
        assert_eq!(parse_use_pam("usepamx yes\n"), None);
    }

    #[test]
    fn states() {
        let d = day("2027-03-31");
        assert_eq!(state(None, d), State::Never);
        assert_eq!(
            state(Some(d), d),
            State::Expires {
                day: d,
                days_left: 0
            }
        );
        assert_eq!(
            state(Some(d), day("2027-03-24")),
            State::Expires {
                day: d,
                days_left: 7
            }
        );
        assert_eq!(state(Some(d), day("2027-04-01")), State::Expired { day: d });
    }
}
