//! The SFTP accounts of each forwarding host, as their root announced them.
//!
//! A forwarded line carries the uid the forwarding host's kernel gave its sender; only that
//! host knows whose uid it is. So sftpctl on the forwarding host sends, as root, lines
//! `sftpctl-accounts[PID]: v1 SEQ PART/PARTS NAME:UID …` (through its syslog socket, so
//! rsyslog annotates them like any other, and forwards them in order with the sessions'
//! lines) whenever its accounts change and at every rsyslog start. The collector takes such a
//! line only from uid 0 and replaces that host's table once every part of one SEQ has come.
//! A host without a table has no sessions the collector believes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::watch::parse::{split_header, Sender};

/// The program name of the accounts lines.
pub const TAG: &str = "sftpctl-accounts";
/// Entries per line: a line stays well under rsyslog's default 8 KiB message size.
pub const PER_LINE: usize = 64;

/// One line of an announcement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    pub seq: u64,
    pub part: u32,
    pub parts: u32,
    pub entries: Vec<(String, u32)>,
}

impl Part {
    /// The message text (after the tag).
    pub fn message(&self) -> String {
        let mut m = format!("v1 {} {}/{}", self.seq, self.part, self.parts);
        for (name, uid) in &self.entries {
            m.push_str(&format!(" {name}:{uid}"));
        }
        m
    }

    pub fn parse_message(m: &[u8]) -> Option<Part> {
        let m = std::str::from_utf8(m).ok()?;
        let mut words = m.split(' ');
        if words.next()? != "v1" {
            return None;
        }
        let seq = words.next()?.parse().ok()?;
        let (part, parts) = words.next()?.split_once('/')?;
        let (part, parts): (u32, u32) = (part.parse().ok()?, parts.parse().ok()?);
        if part == 0 || part > parts || parts > 10_000 {
            return None;
        }
        let mut entries = Vec::new();
        for w in words {
            let (name, uid) = w.split_once(':')?;
            crate::names::check_user_name("account", name).ok()?;
            entries.push((name.to_string(), uid.parse().ok()?));
        }
        (entries.len() <= PER_LINE).then_some(Part {
            seq,
            part,
            parts,
            entries,
        })
    }
}

/// A log line → (sender, host, part) when it is an accounts line.
pub fn parse_line(raw: &[u8], now: i64) -> Option<(Sender, String, Part)> {
    let mut line = raw;
    while let [rest @ .., b'\n' | b'\r' | b'\0'] = line {
        line = rest;
    }
    let (_, host, sender, tag, message) = split_header(line, now)?;
    let rest = tag.strip_prefix(TAG.as_bytes())?;
    let pid = rest.strip_prefix(b"[")?.strip_suffix(b"]")?;
    let pid: u32 = std::str::from_utf8(pid).ok()?.parse().ok()?;
    // Root's line: uid 0 as the kernel gave it. The pid is not checked: root may write any
    // line anyway, and journald relays a sender that has exited with its own pid (seen on
    // Debian 13: `[uid=0 pid=17 exe=]` for `sftpctl-accounts[163]`).
    let _ = pid;
    if !matches!(sender, Sender::Kernel { uid: 0, .. }) {
        return None;
    }
    let host = String::from_utf8_lossy(host).into_owned();
    Some((sender, host, Part::parse_message(message)?))
}

/// An announcement being received: its seq, its number of parts, the parts so far.
type Pending = (u64, u32, BTreeMap<u32, Vec<(String, u32)>>);

/// One host's table and the announcement being received.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct HostTable {
    pub seq: u64,
    pub accounts: BTreeMap<u32, String>,
    #[serde(skip)]
    pending: Option<Pending>,
}

/// Every forwarding host's table (`state_dir/fleet/accounts.json`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct HostAccounts {
    pub hosts: BTreeMap<String, HostTable>,
    /// The collector's own names as its rsyslog writes them: these hosts' lines are checked
    /// against this host's account database.
    #[serde(skip)]
    pub local_names: Vec<String>,
    #[serde(skip)]
    dirty: bool,
}

impl HostAccounts {
    pub fn path(config: &Config) -> PathBuf {
        config.watch.state_dir.join("fleet/accounts.json")
    }

    /// The saved tables (none yet: empty), with this host's names.
    pub fn load(config: &Config) -> Result<HostAccounts> {
        let path = Self::path(config);
        let mut tables: HostAccounts = match fs_err::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .with_context(|| format!("{} is not a table of accounts: remove it, and run `sftpctl announce` on every forwarding host", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => HostAccounts::default(),
            Err(e) => return Err(e.into()),
        };
        tables.local_names = local_host_names();
        tables.dirty = false;
        Ok(tables)
    }

    /// No tables yet, with this host's names.
    pub fn empty() -> HostAccounts {
        HostAccounts {
            local_names: local_host_names(),
            ..Default::default()
        }
    }

    pub fn save(&mut self, config: &Config) -> Result<()> {
        if !self.dirty {
            return Ok(());
        }
        let path = Self::path(config);
        let json = serde_json::to_vec_pretty(&*self).context("encode the accounts tables")?;
        write_private(&path, &json)?;
        self.dirty = false;
        Ok(())
    }

    pub fn is_local(&self, host: &str) -> bool {
        self.local_names.iter().any(|n| n == host)
    }

    /// On a collector, the tables its commands read (a damaged file is said on stderr and
    /// the tables start empty: the hosts' next announcements fill them); `None` elsewhere.
    pub fn on_collector(config: &Config) -> Option<HostAccounts> {
        config.collect.enabled.then(|| {
            HostAccounts::load(config).unwrap_or_else(|e| {
                eprintln!("sftpctl: warning: {e:#}");
                HostAccounts::empty()
            })
        })
    }

    /// A forwarding host whose root announced its accounts at least once.
    pub fn announced(&self, host: &str) -> bool {
        self.hosts.get(host).is_some_and(|t| t.seq > 0)
    }

    /// `Some(account)` / `Some(None)` for a host with a table; `None` for one without.
    pub fn account(&self, host: &str, uid: u32) -> Option<Option<&str>> {
        self.hosts
            .get(host)
            .map(|t| t.accounts.get(&uid).map(String::as_str))
    }

    /// Takes one part; true when it completed an announcement that replaced the table.
    pub fn take(&mut self, host: &str, part: Part) -> bool {
        let table = self.hosts.entry(host.to_string()).or_default();
        if part.seq <= table.seq {
            return false;
        }
        let pending = match &mut table.pending {
            Some(p) if p.0 == part.seq && p.1 == part.parts => p,
            _ => table
                .pending
                .insert((part.seq, part.parts, BTreeMap::new())),
        };
        pending.2.insert(part.part, part.entries);
        if pending.2.len() as u32 != pending.1 {
            return false;
        }
        let (seq, _, parts) = table.pending.take().expect("pending");
        table.seq = seq;
        table.accounts = parts
            .into_values()
            .flatten()
            .map(|(name, uid)| (uid, name))
            .collect();
        self.dirty = true;
        true
    }
}

/// How a collector names a client of another host in reports, digests and `report
/// --logins`: two hosts may each have an alice.
pub fn remote_client(user: &str, host: &str) -> String {
    format!("{user}@{host}")
}

/// The names this host's rsyslog may write as `%hostname%`: the kernel's host name and its
/// first label (rsyslog drops the domain unless `PreserveFQDN` is on).
pub fn local_host_names() -> Vec<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let mut names = vec![name.clone()];
    if let Some((short, _)) = name.split_once('.') {
        names.push(short.to_string());
    }
    names.retain(|n| !n.is_empty());
    names
}

/// Writes `bytes` to `path` atomically, root 0600, in a root 0700 directory.
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    let dir = path.parent().context("a state file has a directory")?;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create {}", dir.display()))?;
    crate::plan::fsops::write_atomic(path, bytes, crate::plan::fsops::Meta::root(0o600))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(seq: u64, part: u32, parts: u32, entries: &[(&str, u32)]) -> Part {
        Part {
            seq,
            part,
            parts,
            entries: entries.iter().map(|(n, u)| (n.to_string(), *u)).collect(),
        }
    }

    #[test]
    fn messages_round_trip_and_bad_ones_are_refused() {
        let p = part(7, 1, 2, &[("alice", 1001), ("sftpadmin", 1000)]);
        assert_eq!(p.message(), "v1 7 1/2 alice:1001 sftpadmin:1000");
        assert_eq!(Part::parse_message(p.message().as_bytes()), Some(p));
        for bad in [
            "v2 7 1/1 a:1",
            "v1 7 0/1 a:1",
            "v1 7 2/1 a:1",
            "v1 x 1/1 a:1",
            "v1 7 1/1 A;B:1",
            "v1 7 1/1 a:-1",
            "v1 7 1/1 a",
        ] {
            assert_eq!(Part::parse_message(bad.as_bytes()), None, "{bad}");
        }
    }

    #[test]
    fn only_roots_lines_are_accounts_lines() {
        let line = |uid: u32, kpid: u32| {
            format!("2026-12-03T10:00:00.000000+00:00 sftp-a [uid={uid} pid={kpid} exe=/usr/sbin/sftpctl] sftpctl-accounts[42]: v1 5 1/1 alice:1001")
        };
        let (_, host, p) = parse_line(line(0, 42).as_bytes(), 0).unwrap();
        assert_eq!((host.as_str(), p.seq), ("sftp-a", 5));
        assert!(parse_line(line(1001, 42).as_bytes(), 0).is_none());
        assert!(parse_line(line(1001, 1001).as_bytes(), 0).is_none());
        // Relayed by journald after the sender exited: journald's pid.
        assert!(parse_line(line(0, 17).as_bytes(), 0).is_some());
        let unverified =
            "2026-12-03T10:00:00.000000+00:00 sftp-a sftpctl-accounts[42]: v1 5 1/1 alice:1001";
        assert!(parse_line(unverified.as_bytes(), 0).is_none());
    }

    #[test]
    fn a_table_is_replaced_only_by_a_complete_newer_announcement() {
        let mut t = HostAccounts::default();
        assert!(!t.take("a", part(2, 1, 2, &[("alice", 1001)])));
        assert_eq!(
            t.account("a", 1001),
            Some(None),
            "not before every part came"
        );
        assert!(t.take("a", part(2, 2, 2, &[("bob", 1002)])));
        assert_eq!(t.account("a", 1001), Some(Some("alice")));
        assert_eq!(t.account("a", 1002), Some(Some("bob")));
        assert!(
            !t.take("a", part(1, 1, 1, &[("eve", 1001)])),
            "an older one"
        );
        assert_eq!(t.account("a", 1001), Some(Some("alice")));
        assert!(t.take("a", part(3, 1, 1, &[("carol", 1003)])));
        assert_eq!(t.account("a", 1001), Some(None), "alice was removed");
        assert_eq!(t.account("b", 1001), None, "no table for b");
    }
}
