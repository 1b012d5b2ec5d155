//! When the collector last heard from each forwarding host (`state_dir/fleet/hosts.json`,
//! written by the watcher at most every few seconds), for `doctor`: a host that went quiet
//! may have lost its link, its certificate or its rsyslog.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::config::Config;

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Seen {
    /// Unix seconds of the last line's own time.
    pub last_line: i64,
    /// Lines taken from it since the watcher started.
    pub lines: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct HostsSeen {
    pub hosts: BTreeMap<String, Seen>,
    #[serde(skip)]
    dirty: bool,
}

impl HostsSeen {
    pub fn path(config: &Config) -> PathBuf {
        config.watch.state_dir.join("fleet/hosts.json")
    }

    pub fn load(config: &Config) -> Result<HostsSeen> {
        let path = Self::path(config);
        match fs_err::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).with_context(|| {
                format!(
                    "{} is damaged: remove it (the watcher writes it again)",
                    path.display()
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(HostsSeen::default()),
            Err(e) => Err(e.into()),
        }
    }

    /// A line of `host` with time `at` (the caller bounds which hosts are noted); true when
    /// the host is new here or its count was 0 (worth writing at once).
    pub fn note(&mut self, host: &str, at: i64) -> bool {
        let seen = match self.hosts.get_mut(host) {
            Some(s) => s,
            None => self.hosts.entry(host.to_string()).or_default(),
        };
        let first = seen.lines == 0;
        seen.last_line = seen.last_line.max(at);
        seen.lines += 1;
        self.dirty = true;
        first
    }

    pub fn save(&mut self, config: &Config) -> Result<()> {
        if !self.dirty {
            return Ok(());
        }
        let json = serde_json::to_vec_pretty(&*self).context("encode the hosts' last lines")?;
        super::accounts::write_private(&Self::path(config), &json)?;
        self.dirty = false;
        Ok(())
    }
}
