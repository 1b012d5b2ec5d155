//! Each account's last login and its failed logins since, kept by the watcher in
//! `watch.state_dir/logins/NAME` (JSON, replaced atomically and synced) and read by
//! `list-users`. Only accounts that are SFTP accounts of this host (members of
//! `jail_group`, or the admin) get a file: an invalid user's name is a remote client's
//! text, and a made-up name must never become a path or an entry.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::{Login, Outcome};
use crate::config::Config;
use crate::plan::fsops::{self, Meta};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seen {
    /// Unix seconds.
    pub time: i64,
    pub source: String,
    #[serde(default)]
    pub method: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginState {
    pub last_login: Option<Seen>,
    /// Failed logins after `last_login` (all of them when there was none).
    pub failed_since: u64,
    pub last_failure: Option<Seen>,
}

impl LoginState {
    /// Takes one login in; false when it changes nothing (an older line replayed).
    pub fn apply(&mut self, l: &Login) -> bool {
        let seen = Seen {
            time: l.time,
            source: l.source.clone(),
            method: l.method.clone(),
        };
        let after_last = self.last_login.as_ref().is_none_or(|s| s.time <= l.time);
        match l.outcome {
            Outcome::Accepted if after_last => {
                self.last_login = Some(seen);
                self.failed_since = 0;
                true
            }
            Outcome::Failed if after_last => {
                self.failed_since = self.failed_since.saturating_add(1);
                if self.last_failure.as_ref().is_none_or(|s| s.time <= l.time) {
                    self.last_failure = Some(seen);
                }
                true
            }
            _ => false,
        }
    }
}

pub fn path(config: &Config, name: &str) -> PathBuf {
    config.watch.state_dir.join("logins").join(name)
}

/// `name`'s state as the watcher last wrote it; `None` without one (or unreadable).
pub fn load(config: &Config, name: &str) -> Option<LoginState> {
    if crate::names::check_user_name("user", name).is_err() {
        return None;
    }
    let text = std::fs::read_to_string(path(config, name)).ok()?;
    serde_json::from_str(&text).ok()
}

/// Whether `name` may have a state file: an SFTP account of this host.
fn is_sftp_account(config: &Config, name: &str) -> bool {
    crate::names::check_user_name("user", name).is_ok()
        && (config.admin.as_deref() == Some(name) || crate::accounts::is_jailed(config, name))
}

/// The watcher's copy of the states it changed, written by [`Recorder::flush`].
#[derive(Debug, Default)]
pub struct Recorder {
    states: HashMap<String, LoginState>,
    dirty: BTreeSet<String>,
}

/// States kept in memory at most (one per account that logged in; emptied of written ones
/// when full).
const MAX_CACHED: usize = 10_000;

impl Recorder {
    pub fn note(&mut self, config: &Config, login: &Login) {
        if !matches!(login.outcome, Outcome::Accepted | Outcome::Failed) {
            return;
        }
        if !self.states.contains_key(&login.user) {
            if !is_sftp_account(config, &login.user) {
                return;
            }
            if self.states.len() >= MAX_CACHED {
                let dirty = &self.dirty;
                self.states.retain(|k, _| dirty.contains(k));
            }
            let state = load(config, &login.user).unwrap_or_default();
            self.states.insert(login.user.clone(), state);
        }
        let state = self.states.get_mut(&login.user).expect("inserted above");
        if state.apply(login) {
            self.dirty.insert(login.user.clone());
        }
    }

    pub fn is_dirty(&self) -> bool {
        !self.dirty.is_empty()
    }

    /// Writes every changed state (atomically, synced).
    pub fn flush(&mut self, config: &Config) -> Result<()> {
        let dir = config.watch.state_dir.join("logins");
        if !self.dirty.is_empty() {
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let wrote = !self.dirty.is_empty();
        for name in std::mem::take(&mut self.dirty) {
            let Some(state) = self.states.get(&name) else {
                continue;
            };
            let json = serde_json::to_vec(state).context("cannot serialize a login state")?;
            fsops::write_atomic(&path(config, &name), &json, Meta::current_user(0o644))
                .with_context(|| format!("cannot record {name}'s last login"))?;
        }
        if wrote {
            // The renames are durable only once the directory is synced.
            std::fs::File::open(&dir)
                .and_then(|d| d.sync_all())
                .with_context(|| format!("cannot sync {}", dir.display()))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn login(time: i64, outcome: Outcome, source: &str) -> Login {
        Login {
            time,
            host: "h".into(),
            pid: 1,
            user: "alice".into(),
            outcome,
            method: "publickey".into(),
            source: source.into(),
            port: None,
            key: None,
            failed_attempts: 0,
            note: String::new(),
        }
    }

    #[test]
    fn a_success_resets_the_failures_and_old_lines_change_nothing() {
        let mut s = LoginState::default();
        assert!(s.apply(&login(10, Outcome::Failed, "192.0.2.1")));
        assert!(s.apply(&login(11, Outcome::Failed, "192.0.2.2")));
        assert_eq!(s.failed_since, 2);
        assert!(s.apply(&login(12, Outcome::Accepted, "192.0.2.3")));
        assert_eq!(s.failed_since, 0);
        assert_eq!(s.last_login.as_ref().unwrap().source, "192.0.2.3");
        // a replay of older lines
        assert!(!s.apply(&login(5, Outcome::Accepted, "192.0.2.9")));
        assert!(!s.apply(&login(6, Outcome::Failed, "192.0.2.9")));
        assert_eq!(s.last_login.as_ref().unwrap().time, 12);
        assert!(!s.apply(&login(13, Outcome::Invalid, "192.0.2.9")));
        assert!(s.apply(&login(14, Outcome::Failed, "192.0.2.4")));
        assert_eq!((s.failed_since, s.last_failure.unwrap().time), (1, 14));
    }

    #[test]
    fn names_that_are_no_account_get_no_file() {
        let dir = std::env::temp_dir().join(format!("sftpctl-logins-{}", std::process::id()));
        let mut config = Config::default();
        config.watch.state_dir = dir.clone();
        let mut r = Recorder::default();
        for name in ["nosuchuser-sftpctl-test", "../../etc/x", "a b"] {
            let mut l = login(1, Outcome::Failed, "192.0.2.1");
            l.user = name.into();
            r.note(&config, &l);
        }
        assert!(!r.is_dirty());
        r.flush(&config).unwrap();
        assert!(!dir.join("logins").exists());
    }
}
