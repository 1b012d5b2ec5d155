//! The usage record of one client: `state_dir/policy/quota/NAME.json`, written atomically
//! by `sftpctl policy run` and read by sshd's rendering, list-users, doctor and the watcher.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::plan::fsops::{self, Meta};

/// What the last scan of one data tree found, and which warnings went out for it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct State {
    /// The quota the scan was compared with, in bytes.
    pub quota: u64,
    pub bytes: u64,
    /// Entries in the tree (files, directories, links).
    pub files: u64,
    /// Unix time of the scan.
    pub scanned_at: i64,
    /// `bytes >= quota` at the scan: uploads are refused.
    pub full: bool,
    /// Warning levels (percent; 100 = full) usage is at or above, each with the time it got
    /// there: a notice's id carries that time, so a level left and reached again is told again.
    pub warned: BTreeMap<u8, i64>,
    /// Whether sshd's blocks were last rendered by `policy run` with uploads refused (`None`:
    /// never): a render that failed is tried again by the next run.
    pub enforced: Option<bool>,
    /// The account the record was made for: a name removed and added again is another
    /// account, whose tree was never counted (`None`: a record from before this field).
    pub uid: Option<u32>,
}

impl State {
    /// Usage in percent of the quota, rounded down.
    pub fn percent(&self) -> u64 {
        percent(self.bytes, self.quota)
    }
}

pub fn percent(bytes: u64, quota: u64) -> u64 {
    if quota == 0 {
        return 0;
    }
    u64::try_from(u128::from(bytes) * 100 / u128::from(quota)).unwrap_or(u64::MAX)
}

pub fn dir(config: &Config) -> PathBuf {
    config.watch.state_dir.join("policy").join("quota")
}

pub fn path(config: &Config, name: &str) -> PathBuf {
    dir(config).join(format!("{name}.json"))
}

/// The uid of `name` now, if it is an account.
pub fn uid_of(name: &str) -> Option<u32> {
    nix::unistd::User::from_name(name)
        .ok()
        .flatten()
        .map(|u| u.uid.as_raw())
}

/// The record of `name`; `Ok(None)` when there is none yet, or when it was made for another
/// account of that name (removed, then added again before a run forgot the record).
pub fn load(config: &Config, name: &str) -> Result<Option<State>> {
    let path = path(config, name);
    let state: State = match fsops::read_regular(&path)? {
        None => return Ok(None),
        Some((bytes, _)) => serde_json::from_slice(&bytes).with_context(|| {
            format!(
                "{} is not a quota record (remove it: the next `sftpctl policy run` rescans)",
                path.display()
            )
        })?,
    };
    if state.uid.is_some() && state.uid != uid_of(name) {
        return Ok(None);
    }
    Ok(Some(state))
}

pub fn save(config: &Config, name: &str, state: &State) -> Result<()> {
    let dir = dir(config);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut body = serde_json::to_vec_pretty(state).context("cannot serialize a quota record")?;
    body.push(b'\n');
    fsops::write_atomic(&path(config, name), &body, Meta::current_user(0o600))
}

pub fn remove(config: &Config, name: &str) -> Result<()> {
    let path = path(config, name);
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("cannot remove {}", path.display()))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_of_another_account_of_the_same_name_is_not_read() {
        let tmp = std::env::temp_dir().join(format!("sftpctl-quota-uid-{}", std::process::id()));
        let mut config = Config::default();
        config.watch.state_dir = tmp.clone();
        let full = State {
            quota: 100,
            bytes: 200,
            full: true,
            uid: Some(0),
            ..State::default()
        };
        save(&config, "root", &full).unwrap();
        assert_eq!(load(&config, "root").unwrap(), Some(full.clone()));
        // "root" removed and added again as another uid: the old count does not apply.
        save(
            &config,
            "root",
            &State {
                uid: Some(4_000_000),
                ..full
            },
        )
        .unwrap();
        assert_eq!(load(&config, "root").unwrap(), None);
        let _ = std::fs::remove_dir_all(&tmp);
    }
}
