//! Per-user settings the account database cannot hold, one root-only TOML file per user in
//! `user_dir` (e.g. `/etc/sftpctl/users/alice.toml`): the report address and the client's
//! policy (docs/policy.md). The one settings model that commands, apply, doctor and the
//! watcher's service read.

use std::path::PathBuf;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::plan::fsops::{self, Meta};
use crate::plan::steps::File;
use crate::policy::values::{Access, Day, Network, Retention, Size};

#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UserSettings {
    /// Gets a copy of this user's session reports.
    pub email: Option<String>,
    /// What the client may do in its jail.
    #[serde(skip_serializing_if = "Access::is_default")]
    pub access: Access,
    /// Addresses the client may log in from; empty = anywhere.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub allow_from: Vec<Network>,
    /// The last day (UTC) the account works.
    pub expires: Option<Day>,
    /// How long files stay in the data tree; `None` = `policy.retention` of the config.
    pub retention: Option<Retention>,
    /// Most bytes the data tree may hold.
    pub quota: Option<Size>,
    /// The client gets policy notices too (retention warnings); `None` = the config's.
    pub notify_client: Option<bool>,
    /// The client gets a mail listing the files another session (the admin's) put in its
    /// tree; `None` = `mail.notify_new_files` of the config.
    pub notify_new_files: Option<bool>,
    /// One mail per session or a daily digest; `None` = `mail.mode` of the config.
    pub mail_mode: Option<crate::config::MailMode>,
}

impl UserSettings {
    /// Retention in effect: the user's, else the config's default.
    pub fn retention(&self, config: &Config) -> Retention {
        self.retention.unwrap_or(config.policy.retention)
    }

    pub fn notify_client(&self, config: &Config) -> bool {
        self.notify_client.unwrap_or(config.policy.notify_client)
    }

    pub fn notify_new_files(&self, config: &Config) -> bool {
        self.notify_new_files
            .unwrap_or(config.mail.notify_new_files)
    }

    pub fn mail_mode(&self, config: &Config) -> crate::config::MailMode {
        self.mail_mode.unwrap_or(config.mail.mode)
    }
}

pub fn path(config: &Config, name: &str) -> PathBuf {
    config.user_dir.join(format!("{name}.toml"))
}

/// Whether `name` has a user file.
pub fn exists(config: &Config, name: &str) -> bool {
    std::fs::symlink_metadata(path(config, name)).is_ok()
}

/// The stored settings of `name` (defaults when there is no file).
pub fn load(config: &Config, name: &str) -> Result<UserSettings> {
    let path = path(config, name);
    match fsops::read_regular(&path)? {
        None => Ok(UserSettings::default()),
        Some((bytes, _)) => toml::from_str(&String::from_utf8_lossy(&bytes))
            .with_context(|| format!("{} is not a valid sftpctl user file", path.display())),
    }
}

/// The report address of `name`: its user file, else `mail.users` in the config.
pub fn email_of(config: &Config, name: &str) -> Option<String> {
    load(config, name)
        .ok()
        .and_then(|s| s.email)
        .or_else(|| config.mail.users.get(name).cloned())
}

/// The steps that make `user_dir` exist (root 0700) with its missing parents.
pub fn dir_steps(plan: &mut crate::plan::Plan, config: &Config) -> Result<()> {
    crate::plan::parent_dirs(plan, &config.user_dir)?;
    plan.push(crate::plan::steps::Dir::root(&config.user_dir, 0o700));
    Ok(())
}

/// A plan step that writes the settings of `name` (root 0600).
pub fn file_step(config: &Config, name: &str, settings: &UserSettings) -> Result<File> {
    let body = toml::to_string(settings).context("cannot serialize user settings")?;
    Ok(File {
        path: path(config, name),
        content: format!("# Managed by sftpctl: settings of user {name}\n{body}"),
        meta: Some(Meta::root(0o600)),
        topic: None,
    })
}

/// Checks an e-mail address the way the mailer will parse it.
pub fn check_email(addr: &str) -> Result<()> {
    crate::names::check_single_line("e-mail address", addr)?;
    addr.parse::<lettre::Address>()
        .map(|_| ())
        .map_err(|e| anyhow::anyhow!("{addr:?} is not an e-mail address: {e}"))
}

/// Where the watcher records the end of each user's last session (one RFC 3339 line).
pub fn last_session_path(config: &Config, name: &str) -> PathBuf {
    config.watch.state_dir.join("last-session").join(name)
}

/// Records the end of `name`'s last session (called by the watcher in batches).
pub fn record_last_session(config: &Config, name: &str, when: &str) -> Result<()> {
    if crate::names::check_user_name("user", name).is_err() || when.contains('\n') {
        return Ok(()); // not a name we could have made: never a path we write
    }
    // Only accounts of this host: a sender of forged lines can make up any number of names,
    // and each would become a file in the state dir.
    if !matches!(nix::unistd::User::from_name(name), Ok(Some(_))) {
        return Ok(());
    }
    let path = last_session_path(config, name);
    let dir = path.parent().context("last-session path has no parent")?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let meta = Meta::current_user(0o644);
    fsops::write_atomic(&path, format!("{when}\n").as_bytes(), meta)
}

/// The last session the watcher saw for `name`, if it recorded one.
pub fn last_session(config: &Config, name: &str) -> Option<String> {
    let text = std::fs::read_to_string(last_session_path(config, name)).ok()?;
    let line = text.lines().next()?.trim();
    (!line.is_empty() && !line.chars().any(|c| c.is_control())).then(|| line.to_string())
}

/// [`last_session`] as Unix seconds: RFC 3339 as written since local times, or the
/// `2026-11-27 16:04:18 UTC` that earlier versions wrote.
pub fn last_session_unix(config: &Config, name: &str) -> Option<i64> {
    let text = last_session(config, name)?;
    let stamp = text.strip_suffix(" UTC").unwrap_or(&text);
    crate::watch::time::parse_rfc3339(stamp.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_sessions_of_both_formats_are_read() {
        let dir = std::env::temp_dir().join(format!("sftpctl-last-{}", std::process::id()));
        let mut config = Config::default();
        config.watch.state_dir = dir.clone();
        let path = last_session_path(&config, "alice");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let want = crate::watch::time::parse_rfc3339(b"2026-11-27T16:04:18Z");
        for text in ["2026-11-27T16:04:18Z\n", "2026-11-27 16:04:18 UTC\n"] {
            std::fs::write(&path, text).unwrap();
            assert_eq!(last_session_unix(&config, "alice"), want, "{text:?}");
        }
        std::fs::write(&path, "yesterday\n").unwrap();
        assert_eq!(last_session_unix(&config, "alice"), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn emails() {
        check_email("alice@client.example").unwrap();
        for bad in ["", "alice", "a b@c.d", "a@b\nBcc: x@y", "<a@b>"] {
            assert!(check_email(bad).is_err(), "accepted {bad:?}");
        }
    }
}
