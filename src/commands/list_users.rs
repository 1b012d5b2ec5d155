//! `sftpctl list-users`: every managed user with jail, data size, keys, lock state, e-mail
//! the last session and the last login the watcher saw, and failed logins since.

use std::os::unix::fs::MetadataExt;

use anyhow::Result;
use serde::Serialize;
use walkdir::WalkDir;

use crate::accounts;
use crate::cli::ListUsersArgs;
use crate::commands::key;
use crate::config::Config;
use crate::display::human;
use crate::jail::Jail;
use crate::logins::state as login_state;
use crate::policy::expiry;
use crate::policy::quota;
use crate::policy::values::Day;
use crate::registry;
use crate::tz;

#[derive(Debug, Serialize)]
struct Row {
    name: String,
    jail: String,
    data_bytes: u64,
    keys: usize,
    /// Locked (`sftpctl lock`, the idle lock, `usermod -L`): `!` before the password field;
    /// `None` when the shadow file cannot be read. An expiry is not a lock: see `expired`.
    locked: Option<bool>,
    email: Option<String>,
    /// When the last session ended, RFC 3339 in UTC (`2026-11-27T16:04:18Z`).
    last_session: Option<String>,
    #[serde(skip)]
    last_session_unix: Option<i64>,
    /// The last accepted SSH login the watcher saw: RFC 3339 in UTC, and its source address.
    last_login: Option<String>,
    last_login_from: Option<String>,
    #[serde(skip)]
    last_login_unix: Option<i64>,
    /// Failed logins of this account since its last accepted one (all seen, without one).
    failed_logins: u64,
    access: String,
    allow_from: Vec<String>,
    expires: Option<String>,
    /// The `expires` day has passed (UTC): logins are refused.
    expired: bool,
    /// Days after today the account still works (0: today is its last day; negative: days
    /// since it expired); `None`: it never expires.
    expires_in_days: Option<i64>,
    /// In effect: the user's own or the config's default.
    retention: String,
    quota_bytes: Option<u64>,
    /// The last count of `policy run` (docs/policy.md, "Quota"); absent without a quota.
    #[serde(skip_serializing_if = "Option::is_none")]
    quota_used_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    quota_files: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    quota_percent: Option<u64>,
    /// Uploads are refused from the next session on.
    #[serde(skip_serializing_if = "Option::is_none")]
    quota_full: Option<bool>,
    /// RFC 3339 in UTC, like `last_session`.
    #[serde(skip_serializing_if = "Option::is_none")]
    quota_counted: Option<String>,
    /// In effect: the client gets a mail when another session puts files in its tree.
    notify_new_files: bool,
    /// `1.2 GiB / 5G (24 %)`, `, full` when full.
    #[serde(skip_serializing_if = "Option::is_none")]
    quota_usage: Option<String>,
    /// In effect: `session` (a mail per session) or `digest` (the daily digest).
    mail_mode: &'static str,
    #[serde(skip)]
    mail_mode_default: bool,
}

pub fn run(config: &Config, args: &ListUsersArgs) -> Result<()> {
    let shadow = accounts::read_shadow(config).ok();
    let today = Day::today();
    let rows: Vec<Row> = accounts::managed_names(config)
        .into_iter()
        .map(|name| {
            let jail = Jail::new(config, &name);
            let settings = registry::load(config, &name).unwrap_or_default();
            let count = settings
                .quota
                .and_then(|_| quota::state::load(config, &name).ok().flatten());
            let expiry = expiry::state(settings.expires, today);
            let last = registry::last_session_unix(config, &name);
            let logins = login_state::load(config, &name).unwrap_or_default();
            let last_login = logins.last_login;
            Row {
                expired: matches!(expiry, expiry::State::Expired { .. }),
                expires_in_days: settings.expires.map(|d| d.days - today.days),
                quota_used_bytes: count.as_ref().map(|c| c.bytes),
                quota_files: count.as_ref().map(|c| c.files),
                quota_percent: settings
                    .quota
                    .zip(count.as_ref())
                    .map(|(q, c)| quota::state::percent(c.bytes, q.bytes)),
                quota_full: settings
                    .quota
                    .map(|_| quota::is_full_with(config, &name, &settings)),
                quota_counted: count.as_ref().map(|c| tz::rfc3339_utc(c.scanned_at)),
                quota_usage: quota::summary(config, &name, &settings),
                access: settings.access.to_string(),
                allow_from: settings.allow_from.iter().map(|n| n.to_string()).collect(),
                expires: settings.expires.map(|d| d.to_string()),
                retention: settings.retention(config).to_string(),
                notify_new_files: settings.notify_new_files(config),
                mail_mode: settings.mail_mode(config).as_str(),
                mail_mode_default: settings.mail_mode(config) == config.mail.mode,
                quota_bytes: settings.quota.map(|q| q.bytes),
                data_bytes: data_size(&jail),
                keys: key::current(config, &name).map(|k| k.len()).unwrap_or(0),
                locked: shadow
                    .as_ref()
                    .map(|s| s.get(&name).is_some_and(|e| e.locked())),
                email: registry::email_of(config, &name),
                last_session: last.map(tz::rfc3339_utc),
                last_session_unix: last,
                last_login: last_login.as_ref().map(|l| tz::rfc3339_utc(l.time)),
                last_login_from: last_login.as_ref().map(|l| l.source.clone()),
                last_login_unix: last_login.as_ref().map(|l| l.time),
                failed_logins: logins.failed_since,
                jail: jail.dir.display().to_string(),
                name,
            }
        })
        .collect();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    if rows.is_empty() {
        println!("no managed users (add one with `sftpctl add-user NAME`)");
        return Ok(());
    }
    println!(
        "{:<20} {:>10} {:>4} {:<7} {:<28} {:<32} {:<50} {:>6} {:<40} JAIL",
        "NAME", "DATA", "KEYS", "LOCKED", "EMAIL", "LAST SESSION", "LAST LOGIN", "FAILED", "POLICY"
    );
    for r in &rows {
        let row = format!(
            "{:<20} {:>10} {:>4} {:<7} {:<28} {:<32} {:<50} {:>6} {:<40} {}",
            r.name,
            human(r.data_bytes),
            r.keys,
            match r.locked {
                Some(true) => "yes",
                Some(false) => "no",
                None => "?",
            },
            r.email.as_deref().unwrap_or("-"),
            r.last_session_unix
                .map(tz::format_local)
                .unwrap_or_else(|| "-".into()),
            match (r.last_login_unix, &r.last_login_from) {
                (Some(t), Some(from)) => format!("{} from {from}", tz::format_local(t)),
                _ => "-".into(),
            },
            r.failed_logins,
            policy_summary(r),
            r.jail
        );
        println!("{}", crate::display::visible(&row));
    }
    if shadow.is_none() {
        eprintln!(
            "sftpctl: note: lock state unknown: reading {} needs root",
            config.shadow_file.display()
        );
    }
    Ok(())
}

/// `read-only, from 203.0.113.0/24, expires 2027-03-31, keep 90d, quota 5G`; `-` = defaults.
fn policy_summary(r: &Row) -> String {
    let mut parts = Vec::new();
    if r.access != "rw" {
        parts.push(r.access.clone());
    }
    if !r.allow_from.is_empty() {
        parts.push(format!("from {}", r.allow_from.join(",")));
    }
    if let Some(day) = &r.expires {
        parts.push(match r.expires_in_days {
            Some(n) if n < 0 => format!("EXPIRED {day}"),
            Some(0) => format!("expires {day} (last day)"),
            Some(n) => format!("expires {day} (in {n} d)"),
            None => format!("expires {day}"),
        });
    }
    if r.retention != "off" {
        parts.push(format!("keep {}", r.retention));
    }
    if let Some(usage) = &r.quota_usage {
        parts.push(format!("quota {usage}"));
    }
    if r.notify_new_files {
        parts.push("new-files mail".into());
    }
    // Shown when it is not the config's mode, and always for a digest.
    if r.mail_mode == "digest" {
        parts.push("daily digest".into());
    } else if !r.mail_mode_default {
        parts.push("mail per session".into());
    }
    if parts.is_empty() {
        "-".into()
    } else {
        parts.join(", ")
    }
}

/// Bytes of regular files in the data tree; symlinks are not followed.
fn data_size(jail: &Jail) -> u64 {
    WalkDir::new(&jail.data)
        .follow_links(false)
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_file())
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.size())
        .sum()
}

#[cfg(test)]
mod tests {
    #[test]
    fn human_sizes() {
        assert_eq!(super::human(0), "0 B");
        assert_eq!(super::human(1536), "1.5 KiB");
        assert_eq!(super::human(3_000_000), "2.9 MiB");
    }
}
