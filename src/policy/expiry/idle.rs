//! Idle lock (`policy.idle_lock_days`): a client without a session for that many days is
//! locked as `sftpctl lock` does, and the admin is told.
//!
//! The idle clock of a client counts from the later of its last session (as the watcher
//! recorded it) and its clock file `state_dir/policy/idle/NAME` (one line, Unix seconds).
//! The clock file is (re)started: by the first run that sees a client without any session
//! (sftpctl cannot know sessions its watcher did not see, so a client is never locked for
//! days before that), by `sftpctl unlock`, and by every run while the client is locked,
//! expired or in a session (the clock does not run while the client cannot log in, so extending an expired
//! account does not lock it at once).

use std::io::Write;
use std::path::PathBuf;

use anyhow::Result;

use crate::accounts::Shadow;
use crate::config::Config;
use crate::plan::account_steps::{KillSessions, SetLocked};
use crate::plan::fsops::{self, Meta};
use crate::plan::Plan;
use crate::policy::notices::{self, Notice};
use crate::policy::values::Day;
use crate::registry::{self, UserSettings};
use crate::tz::format_local;
use crate::watch::time::now_unix;

pub fn clock_path(config: &Config, name: &str) -> PathBuf {
    config
        .watch
        .state_dir
        .join("policy")
        .join("idle")
        .join(name)
}

/// Restarts the idle clock of `name` now.
pub fn restart_clock(config: &Config, name: &str) -> Result<()> {
    crate::names::check_user_name("user", name)?;
    let path = clock_path(config, name);
    if let Some(dir) = path.parent() {
        fs_err::create_dir_all(dir)?;
    }
    fsops::write_atomic(
        &path,
        format!("{}\n", now_unix()).as_bytes(),
        Meta::current_user(0o644),
    )
}

fn clock(config: &Config, name: &str) -> Option<i64> {
    let text = std::fs::read_to_string(clock_path(config, name)).ok()?;
    text.trim().parse().ok()
}

/// When the idle clock of `name` started: its last session or its clock file, the later.
pub fn clock_start(config: &Config, name: &str) -> Option<i64> {
    let session = registry::last_session_unix(config, name);
    session.max(clock(config, name))
}

/// One client's idle check. `shadow`: its shadow line (None: no line, nothing to lock).
pub fn check(
    config: &Config,
    name: &str,
    settings: &UserSettings,
    shadow: Option<&Shadow>,
    dry_run: bool,
    out: &mut dyn Write,
) -> Result<()> {
    let days = config.policy.idle_lock_days;
    let Some(shadow) = shadow else {
        return Ok(());
    };
    let expired = matches!(
        super::state(settings.expires, Day::today()),
        super::State::Expired { .. }
    );
    let start = clock_start(config, name);
    // A session still running (the watcher records a session when it ends) is not idle.
    let in_session = !crate::plan::Step::is_satisfied(&KillSessions {
        name: name.to_string(),
    })?;
    if shadow.locked() || expired || in_session || start.is_none() {
        if !dry_run {
            restart_clock(config, name)?;
        }
        return Ok(());
    }
    let since = start.unwrap_or_default();
    let idle = now_unix() - since;
    if idle < i64::from(days) * 86_400 {
        return Ok(());
    }
    let idle_days = idle / 86_400;
    if dry_run {
        writeln!(
            out,
            "would lock {name}: no session for {idle_days} day(s) (policy.idle_lock_days = {days})"
        )?;
        return Ok(());
    }
    let mut plan = Plan::new();
    plan.push(SetLocked {
        config: config.clone(),
        name: name.to_string(),
        locked: true,
    });
    plan.push(KillSessions {
        name: name.to_string(),
    });
    writeln!(
        out,
        "locking {name}: no session for {idle_days} day(s) (policy.idle_lock_days = {days})"
    )?;
    plan.apply(out)?;
    let today = Day::today();
    let last = registry::last_session_unix(config, name)
        .map(|t| format!("its last session ended {}", format_local(t)))
        .unwrap_or_else(|| {
            format!(
                "it had no session since sftpctl began to watch it ({})",
                format_local(since)
            )
        });
    let notice = Notice {
        id: format!("idle-lock-{name}-{today}"),
        user: name.to_string(),
        subject: format!("SFTP account {name} locked: idle for {idle_days} days"),
        text: format!(
            "The SFTP account {name} was locked because {last}, {idle_days} day(s) ago (policy.idle_lock_days = {days}).\n\nTo let it in again: sftpctl unlock {name}\n"
        ),
        to_client: false,
    };
    if notices::queue(config, &notice)? {
        writeln!(out, "queued notice {}", notice.id)?;
    }
    Ok(())
}
