//! `sftpctl policy run`: the periodic job of the policy service (the systemd timer
//! `sftpctl-policy.timer`, or the watcher itself where systemd does not run). Each job
//! keeps its own state in `watch.state_dir/policy/` and acts only when it is due, so the
//! job may run as often as wanted.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};

use crate::config::{Config, Source};

/// Every job, in this order: usage first (a quota reached stops uploads soonest), then
/// expiry and idle lock, retention, and last the notices all of them queued.
pub fn run(config: &Config, source: &Source, dry_run: bool) -> Result<()> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let started = std::time::SystemTime::now();
    let mut failed = Vec::new();
    type Job = fn(&Config, &Source, bool, &mut dyn Write) -> Result<()>;
    let jobs: [(&str, Job); 3] = [
        ("quota", super::quota::run),
        ("expiry", super::expiry::run),
        ("retention", super::retention::run),
    ];
    for (name, job) in jobs {
        // One failing job does not keep the others from running.
        if let Err(e) = job(config, source, dry_run, &mut out) {
            writeln!(out, "sftpctl policy run: {name}: {e:#}")?;
            failed.push(name);
        }
    }
    if !dry_run {
        // The path unit starts this run again while marks remain: marks from before the run
        // that a failed job left would make that a loop (and systemd's start limit would
        // then stop the path unit). Marks made during the run stay and start the next one.
        if let Err(e) = drop_marks_before(config, started) {
            writeln!(out, "sftpctl policy run: marks: {e:#}")?;
        }
        match super::notices::deliver_pending(config) {
            Ok(0) => {}
            Ok(n) => writeln!(out, "sftpctl policy run: {n} notice(s) delivered")?,
            Err(e) => {
                writeln!(out, "sftpctl policy run: notices: {e:#}")?;
                failed.push("notices");
            }
        }
    }
    if !failed.is_empty() {
        anyhow::bail!(
            "sftpctl policy run: {} failed (the others ran)",
            failed.join(", ")
        );
    }
    Ok(())
}

/// Where the watcher marks users whose data changed in a session (one empty file each).
pub fn dirty_dir(config: &Config) -> PathBuf {
    config.watch.state_dir.join("policy").join("dirty")
}

/// Marks `user` for the next run (its usage is rescanned).
pub fn mark_dirty(config: &Config, user: &str) -> Result<()> {
    if crate::names::check_user_name("user", user).is_err() {
        return Ok(()); // never a path we write
    }
    let dir = dirty_dir(config);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let path = dir.join(user);
    std::fs::write(&path, b"").with_context(|| format!("cannot write {}", path.display()))
}

/// After a session of `user`: marks the users whose usage it may have changed — `user`
/// itself when it has a quota; every client with a quota after the admin's sessions (the
/// admin writes into their trees). True when any was marked.
pub fn mark_after_session(config: &Config, user: &str) -> Result<bool> {
    let users: Vec<String> = if config.admin.as_deref() == Some(user) {
        crate::accounts::managed_names(config)
    } else {
        vec![user.to_string()]
    };
    let mut marked = false;
    for name in users {
        if crate::names::check_user_name("user", &name).is_err() {
            continue;
        }
        let has_quota = crate::registry::load(config, &name)
            .map(|s| s.quota.is_some())
            .unwrap_or(false);
        if has_quota {
            mark_dirty(config, &name)?;
            marked = true;
        }
    }
    Ok(marked)
}

/// The entries of the marks dir (none when it does not exist).
fn mark_entries(config: &Config) -> Result<Vec<std::fs::DirEntry>> {
    let dir = dirty_dir(config);
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", dir.display())),
    };
    entries
        .map(|e| e.with_context(|| format!("cannot read {}", dir.display())))
        .collect()
}

/// Users marked now, marks left in place (for a dry run).
pub fn peek_dirty(config: &Config) -> Result<Vec<String>> {
    let mut users: Vec<String> = mark_entries(config)?
        .iter()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| crate::names::check_user_name("user", n).is_ok())
        .collect();
    users.sort();
    Ok(users)
}

/// Removes the marks made before `when`.
fn drop_marks_before(config: &Config, when: std::time::SystemTime) -> Result<()> {
    for entry in mark_entries(config)? {
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .is_ok_and(|t| t <= when);
        if old {
            fs_err::remove_file(entry.path())?;
        }
    }
    Ok(())
}

/// Users marked since the last run; the marks are removed (a user marked again meanwhile
/// is seen by the next run).
pub fn take_dirty(config: &Config) -> Result<Vec<String>> {
    let mut users = Vec::new();
    for entry in mark_entries(config)? {
        let name = entry.file_name().to_string_lossy().into_owned();
        if crate::names::check_user_name("user", &name).is_ok() {
            fs_err::remove_file(entry.path())?;
            users.push(name);
        }
    }
    users.sort();
    Ok(users)
}
