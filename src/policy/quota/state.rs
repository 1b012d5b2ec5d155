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

/// The record of `name`; `Ok(None)` when there is none yet.
pub fn load(config: &Config, name: &str) -> Result<Option<State>> {
    let path = path(config, name);
    match fsops::read_regular(&path)? {
        None => Ok(None),
        Some((bytes, _)) => serde_json::from_slice(&bytes).map(Some).with_context(|| {
            format!(
                "{} is not a quota record (remove it: the next `sftpctl policy run` rescans)",
                path.display()
            )
        }),
    }
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
