//! Quota (docs/policy.md, "Quota"): each client's usage, counted without following links
//! (`perms::usage`), kept in `state_dir/policy/quota/NAME.json`; the admin is told when
//! usage reaches each of `policy.quota_warn_percent` and the quota; at the quota sshd's
//! per-user block is rendered without uploads (the client's next session), and with them
//! again once usage is back under it.

mod assess;
pub mod state;

use std::collections::BTreeSet;
use std::io::Write;

use anyhow::{Context, Result};

pub use assess::FULL;
pub use state::State;

use super::notices::{self, Notice};
use crate::config::{Config, Source};
use crate::display::human;
use crate::policy::values::Size;
use crate::registry::{self, UserSettings};

/// Whether `name` reached its quota: its next sessions get no uploads (sshd's per-user block
/// reads this when it is rendered).
pub fn is_full(config: &Config, name: &str) -> bool {
    registry::load(config, name).is_ok_and(|s| is_full_with(config, name, &s))
}

/// [`is_full`] for the settings `settings` (a plan that is about to write them renders with
/// these): the last count against the quota they set, so raising a quota lets uploads in
/// at once and removing it too.
pub fn is_full_with(config: &Config, name: &str, settings: &UserSettings) -> bool {
    let Some(quota) = settings.quota else {
        return false;
    };
    matches!(state::load(config, name), Ok(Some(s)) if s.bytes >= quota.bytes)
}

/// The line a session report of `name` carries while its quota is full:
/// `uploads refused: quota 5G reached (5.1 GiB used)`. Full as sshd's block sees it: the last
/// count against the quota of the user file (a quota raised since the count lets uploads in).
pub fn report_note(config: &Config, name: &str) -> Option<String> {
    if crate::names::check_user_name("user", name).is_err() {
        return None; // a name from a log line never becomes a path unchecked
    }
    let s = state::load(config, name).ok()??;
    let quota = match registry::load(config, name) {
        Ok(settings) => settings.quota?.bytes,
        Err(_) => s.quota,
    };
    (s.bytes >= quota).then(|| {
        format!(
            "uploads refused: quota {} reached ({} used)",
            Size { bytes: quota },
            human(s.bytes)
        )
    })
}

/// `1.2 GiB / 5G (24 %)`, and `, full` when uploads are refused; `None` without a quota.
/// Without a count yet: `not counted yet / 5G`.
pub fn summary(config: &Config, name: &str, settings: &UserSettings) -> Option<String> {
    let quota = settings.quota?;
    Some(match state::load(config, name) {
        Ok(Some(s)) => format!(
            "{} / {quota} ({} %){}",
            human(s.bytes),
            state::percent(s.bytes, quota.bytes),
            if s.bytes >= quota.bytes { ", full" } else { "" }
        ),
        Ok(None) => format!("not counted yet / {quota}"),
        Err(_) => format!("unreadable count / {quota}"),
    })
}

fn now() -> i64 {
    crate::watch::time::now_unix()
}

/// This job of `sftpctl policy run`: rescans the clients marked dirty by the watcher (after
/// their sessions), those whose count is older than `policy.rescan_minutes` or was made for
/// another quota; tells the admin about each level crossed; re-renders sshd when a client's
/// full state changed. With `dry_run` it counts and says what it would do, changing nothing.
pub fn run(config: &Config, _source: &Source, dry_run: bool, out: &mut dyn Write) -> Result<()> {
    let _serialized = if dry_run { None } else { Some(lock(config)?) };
    let dirty: BTreeSet<String> = if dry_run {
        super::runner::peek_dirty(config)?.into_iter().collect()
    } else {
        super::runner::take_dirty(config)?.into_iter().collect()
    };
    let now = now();
    let mut failed = Vec::new();
    let mut render = false;
    for name in crate::accounts::managed_names(config) {
        match one(config, &name, dirty.contains(&name), now, dry_run, out) {
            Ok(needs_render) => render |= needs_render,
            Err(e) => {
                writeln!(out, "quota: {name}: {e:#}")?;
                failed.push(name.clone());
                if !dry_run && dirty.contains(&name) {
                    super::runner::mark_dirty(config, &name)?; // counted by the next run
                }
            }
        }
    }
    if !dry_run {
        forget_unmanaged(config)?;
    }
    if render && !dry_run {
        rerender(config, out)?;
    }
    anyhow::ensure!(
        failed.is_empty(),
        "the usage of {} could not be counted",
        failed.join(", ")
    );
    Ok(())
}

/// Counts `name` when due and records it; true when sshd's blocks must be rendered again.
fn one(
    config: &Config,
    name: &str,
    dirty: bool,
    now: i64,
    dry_run: bool,
    out: &mut dyn Write,
) -> Result<bool> {
    let settings = registry::load(config, name)?;
    let prev = state::load(config, name)?;
    let Some(quota) = settings.quota else {
        // No quota (any more): the record goes, and a block that still refuses uploads is
        // rendered again.
        let Some(prev) = prev else { return Ok(false) };
        if dry_run {
            writeln!(out, "quota: {name}: no quota; would remove its count")?;
            return Ok(false);
        }
        state::remove(config, name)?;
        return Ok(prev.enforced == Some(true));
    };
    let due = match &prev {
        None => true,
        Some(p) => {
            dirty
                || p.quota != quota.bytes
                || now - p.scanned_at >= i64::from(config.policy.rescan_minutes) * 60
                || now < p.scanned_at
        }
    };
    let prev = prev.unwrap_or_default();
    if !due {
        return Ok(prev.enforced != Some(prev.full));
    }
    let usage = crate::perms::usage(config, name)?;
    let next = assess::next(
        &prev,
        usage,
        quota.bytes,
        &config.policy.quota_warn_percent,
        now,
    );
    let line = format!(
        "quota: {name}: {} / {quota} ({} %), {} entries{}{}",
        human(next.bytes),
        next.percent(),
        next.files,
        if next.full {
            ", full: uploads refused"
        } else {
            ""
        },
        if usage.errors > 0 {
            format!(", {} entries could not be read", usage.errors)
        } else {
            String::new()
        }
    );
    if dry_run {
        writeln!(out, "{line} (dry run: nothing recorded, nothing sent)")?;
        return Ok(false);
    }
    writeln!(out, "{line}")?;
    let next = state::State {
        uid: state::uid_of(name),
        ..next
    };
    state::save(config, name, &next)?;
    // Recorded first, then queued: a notice that failed to queue is queued by the next run
    // (same level, same time, same id), and one queued already is not queued again.
    for (level, since) in assess::levels_to_tell(&next) {
        notices::queue(config, &level_notice(name, &next, quota, level, since))?;
    }
    if prev.full && !next.full {
        let since = prev.warned.get(&FULL).copied().unwrap_or(prev.scanned_at);
        notices::queue(config, &below_notice(name, &next, quota, since))?;
    }
    Ok(next.enforced != Some(next.full))
}

/// Renders sshd's blocks with every client's full state and records what was enforced.
fn rerender(config: &Config, out: &mut dyn Write) -> Result<()> {
    super::sshd::resync(config, out).context(
        "sshd's blocks could not be rendered with the quota state (the next run tries again)",
    )?;
    for name in crate::accounts::managed_names(config) {
        if let Some(mut s) = state::load(config, &name)? {
            let full = is_full(config, &name);
            if s.enforced != Some(full) {
                s.enforced = Some(full);
                state::save(config, &name, &s)?;
            }
        }
    }
    Ok(())
}

/// Removes the records of accounts that are gone: an account made again with the same name
/// starts without the old count (which would refuse its uploads from the start).
fn forget_unmanaged(config: &Config) -> Result<()> {
    let managed: BTreeSet<String> = crate::accounts::managed_names(config).into_iter().collect();
    if managed.is_empty() {
        return Ok(()); // an account database that cannot be read is no reason to forget
    }
    let Ok(entries) = std::fs::read_dir(state::dir(config)) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        let file = entry.file_name().to_string_lossy().into_owned();
        if let Some(name) = file.strip_suffix(".json") {
            if crate::names::check_user_name("user", name).is_ok() && !managed.contains(name) {
                state::remove(config, name)?;
            }
        }
    }
    Ok(())
}

/// The timer and the watcher may both start `policy run`: their counts and renders take
/// turns, so one run's record is never written over by an older count of the other.
fn lock(config: &Config) -> Result<nix::fcntl::Flock<std::fs::File>> {
    let dir = state::dir(config);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    crate::lockfile::exclusive(&dir.join(".lock"))
}

fn level_notice(name: &str, s: &State, quota: Size, level: u8, since: i64) -> Notice {
    let used = human(s.bytes);
    let (id, subject, what) = if level == FULL {
        (
            format!("quota-full-{name}-{since}"),
            format!("Quota of {name} reached ({quota}): uploads refused"),
            "It reached its quota: from its next session on, uploads and new directories are refused (downloads, deletes and renames still work) until its usage is below the quota again.".to_string(),
        )
    } else {
        (
            format!("quota-{level}-{name}-{since}"),
            format!("Quota of {name} at {level} % ({used} of {quota})"),
            format!("At 100 % its uploads will be refused until its usage is below the quota again (now {} %).", s.percent()),
        )
    };
    Notice {
        id,
        user: name.to_string(),
        subject,
        text: format!(
            "Client {name} uses {used} of its quota of {quota} ({} %, {} files and directories), counted at {}.\n\n{what}\n\nRaise the quota with `sftpctl set {name} quota=SIZE`, or ask the client to delete files; `sftpctl list-users` shows the usage.\n",
            s.percent(),
            s.files,
            crate::tz::format_local(s.scanned_at),
        ),
        to_client: false,
    }
}

fn below_notice(name: &str, s: &State, quota: Size, since: i64) -> Notice {
    Notice {
        id: format!("quota-below-{name}-{since}"),
        user: name.to_string(),
        subject: format!("Quota of {name}: below {quota} again, uploads allowed"),
        text: format!(
            "Client {name} uses {} of its quota of {quota} ({} %), counted at {}: its next session may upload again.\n",
            human(s.bytes),
            s.percent(),
            crate::tz::format_local(s.scanned_at),
        ),
        to_client: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notices_have_plain_ids_and_say_the_numbers() {
        let s = State {
            quota: 100 << 10,
            bytes: 87_000,
            files: 3,
            scanned_at: 1_764_763_456,
            ..State::default()
        };
        let q = Size { bytes: 100 << 10 };
        let n = level_notice("alice", &s, q, 80, 1_764_763_400);
        assert_eq!(n.id, "quota-80-alice-1764763400");
        assert_eq!(n.subject, "Quota of alice at 80 % (85.0 KiB of 100K)");
        assert!(
            n.text.contains("85.0 KiB of its quota of 100K (84 %"),
            "{}",
            n.text
        );
        let f = level_notice("alice", &s, q, FULL, 7);
        assert_eq!(f.id, "quota-full-alice-7");
        assert!(f.subject.contains("uploads refused"));
        assert_eq!(below_notice("alice", &s, q, 7).id, "quota-below-alice-7");
    }
}
