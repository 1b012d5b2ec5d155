//! `sftpctl report --logins`: every SSH login of the logs (sshd's auth lines, which
//! sftpctl's rsyslog rule puts beside the internal-sftp lines), one per connection, filtered
//! and printed as text, JSON or CSV.

use std::io::{BufRead, Write};
use std::path::PathBuf;

use anyhow::{Context, Result};
use serde::Serialize;

use super::csv::push_field;
use super::logs::{open_log, reader, rotated_logs, OpenLog};
use crate::config::Config;
use crate::fleet::accounts::HostAccounts;
use crate::logins::parse::parse_login_line;
use crate::logins::track::Tracker;
use crate::logins::{Login, Outcome};
use crate::watch::trust::Untrusted;

/// What [`read`] found.
#[derive(Debug, Default)]
pub struct Found {
    /// In the order the connections ended (the logs' order).
    pub logins: Vec<Login>,
    /// sshd lines not believed (not sent by root's sshd, or without credentials).
    pub untrusted: u64,
    pub last_untrusted: Option<Untrusted>,
    /// On a collector: logins of forwarding hosts that never announced their accounts.
    pub unannounced: u64,
}

/// The logins of opened logs, read in the order given as one stream (a connection across a
/// rotation is one login). `trust_unverified`: lines without credentials count too.
/// `fleet`, on a collector (its log holds each forwarded line twice): repeats are skipped,
/// a forwarding host's logins count only once its root announced its accounts, and their
/// names read `user@host` (as the collector's reports and digests name its clients).
pub fn read(
    inputs: Vec<(PathBuf, OpenLog)>,
    now: i64,
    trust_unverified: bool,
    fleet: Option<&HostAccounts>,
) -> Result<Found> {
    let mut tracker = Tracker::default();
    let mut found = Found::default();
    let mut line = Vec::new();
    let mut clock = i64::MIN;
    let mut recent = fleet.map(|_| crate::fleet::dedupe::Recent::default());
    for (path, log) in inputs {
        let mut reader = reader(log, &path)?;
        loop {
            line.clear();
            if reader
                .read_until(b'\n', &mut line)
                .with_context(|| format!("cannot read the log {}", path.display()))?
                == 0
            {
                break;
            }
            // Most lines are internal-sftp's: a cheap look for sshd's tag first.
            if !line.windows(5).any(|w| w == b" sshd") {
                continue;
            }
            if recent.as_mut().is_some_and(|r| r.repeat("", &line)) {
                continue;
            }
            if let Some((sender, l)) = parse_login_line(&line, now) {
                clock = clock.max(l.time.unwrap_or(clock));
                tracker.line(sender, l, trust_unverified, clock, &mut found.logins);
            }
        }
    }
    tracker.finish_all(&mut found.logins);
    found.untrusted = tracker.untrusted;
    found.last_untrusted = tracker.last_untrusted;
    if let Some(tables) = fleet {
        found.logins.retain_mut(|l| {
            if tables.is_local(&l.host) {
                return true;
            }
            if !tables.announced(&l.host) {
                found.unannounced += 1;
                return false;
            }
            if !l.user.is_empty() {
                l.user = crate::fleet::accounts::remote_client(&l.user, &l.host);
            }
            true
        });
    }
    Ok(found)
}

/// Every rotation of `rsyslog.log_file`, oldest first (what `report --logins` reads without
/// FILE; a digest can call this with its span and [`crate::logins::summary::summarise`]).
pub fn read_rotated(config: &Config, now: i64, trust_unverified: bool) -> Result<Found> {
    let mut inputs = Vec::new();
    for f in rotated_logs(&config.rsyslog.log_file)? {
        let log = open_log(&f)?;
        inputs.push((f, log));
    }
    let fleet = HostAccounts::on_collector(config);
    read(inputs, now, trust_unverified, fleet.as_ref())
}

/// The rotations of `rsyslog.log_file` written to at or after `since` (an older one holds
/// only older lines), oldest first: what a day's digest reads, not a year of logs.
pub fn read_rotated_since(config: &Config, now: i64, since: i64) -> Result<Found> {
    let mut inputs = Vec::new();
    for f in rotated_logs(&config.rsyslog.log_file)? {
        let written = std::fs::metadata(&f)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(i64::MAX, |d| d.as_secs() as i64);
        if written < since {
            continue;
        }
        let log = open_log(&f)?;
        inputs.push((f, log));
    }
    let fleet = HostAccounts::on_collector(config);
    read(inputs, now, false, fleet.as_ref())
}

/// `--user`, `--since`, `--until` for logins: by the login's name and time.
#[derive(Debug, Default)]
pub struct LoginFilter {
    pub users: Vec<String>,
    pub since: Option<i64>,
    pub until: Option<i64>,
}

impl LoginFilter {
    pub fn keeps(&self, l: &Login) -> bool {
        (self.users.is_empty() || self.users.contains(&l.user))
            && self.since.is_none_or(|s| l.time >= s)
            && self.until.is_none_or(|u| l.time < u)
    }
}

/// A login as JSON: the record and its local time.
#[derive(Serialize)]
struct Shown<'a> {
    #[serde(flatten)]
    login: &'a Login,
    time_text: String,
}

pub const CSV_HEADER: &str = "time,user,outcome,method,source,port,key,failed_attempts,note";

pub fn write_csv(out: &mut impl Write, logins: &[&Login]) -> Result<()> {
    write!(out, "{CSV_HEADER}\r\n").context("cannot write")?;
    for l in logins {
        let fields = [
            crate::tz::rfc3339_utc(l.time),
            l.user.clone(),
            l.outcome.as_str().to_string(),
            l.method.clone(),
            l.source.clone(),
            l.port.map(|p| p.to_string()).unwrap_or_default(),
            l.key.clone().unwrap_or_default(),
            l.failed_attempts.to_string(),
            l.note.clone(),
        ];
        let mut line = String::new();
        for (i, f) in fields.iter().enumerate() {
            if i > 0 {
                line.push(',');
            }
            push_field(&mut line, f);
        }
        line.push_str("\r\n");
        out.write_all(line.as_bytes()).context("cannot write")?;
    }
    Ok(())
}

pub fn write_json(out: &mut impl Write, logins: &[&Login]) -> Result<()> {
    let shown: Vec<Shown> = logins
        .iter()
        .map(|l| Shown {
            login: l,
            time_text: crate::tz::format_local(l.time),
        })
        .collect();
    serde_json::to_writer_pretty(&mut *out, &shown).context("cannot write")?;
    out.write_all(b"\n").context("cannot write")
}

/// One line a login: local time, outcome, user, method, source, key, note; then the counts.
pub fn write_text(out: &mut impl Write, logins: &[&Login]) -> Result<()> {
    let mut counts = [0u64; 4];
    for l in logins {
        counts[l.outcome as usize] += 1;
        let mut row = format!(
            "{}  {:<8}  {:<20}  {:<9}  from {}",
            crate::tz::format_local(l.time),
            l.outcome.as_str(),
            if l.user.is_empty() { "-" } else { &l.user },
            if l.method.is_empty() { "-" } else { &l.method },
            l.source
        );
        if let Some(p) = l.port {
            row.push_str(&format!(" port {p}"));
        }
        if let Some(k) = &l.key {
            row.push_str(&format!("  key {k}"));
        }
        if l.failed_attempts > 0 && l.outcome == Outcome::Accepted {
            row.push_str(&format!("  after {} failed", l.failed_attempts));
        }
        if !l.note.is_empty() && l.outcome != Outcome::Accepted {
            row.push_str(&format!("  ({})", l.note));
        }
        // Names are escaped already; this also shows invisible format characters.
        writeln!(out, "{}", crate::display::visible(&row)).context("cannot write")?;
    }
    let [accepted, failed, invalid, penalties] = counts;
    writeln!(
        out,
        "{} login(s): {accepted} accepted, {failed} failed, {invalid} invalid user, {penalties} penalties",
        logins.len()
    )
    .context("cannot write")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn login(user: &str, outcome: Outcome) -> Login {
        Login {
            time: 1_796_000_000,
            host: "h".into(),
            pid: 1,
            user: user.into(),
            outcome,
            method: "password".into(),
            source: "192.0.2.1".into(),
            port: Some(22),
            key: None,
            failed_attempts: 0,
            note: "connection closed".into(),
        }
    }

    /// A collector's log: each forwarded line twice, a host that announced its accounts, one
    /// that never did, and the collector's own sshd.
    #[test]
    fn a_collectors_logins_are_counted_once_and_only_of_announced_hosts() {
        use crate::fleet::accounts::{HostAccounts, HostTable};
        let line = |host: &str, pid: u32, t: u32, msg: &str| {
            format!("2026-11-27T16:04:{t:02}.000001+00:00 {host} [uid=0 pid={pid} exe=/usr/sbin/sshd] sshd[{pid}]: {msg}\n")
        };
        let mut log = String::new();
        for _ in [1, 2] {
            log += &line(
                "sftp-a",
                10,
                1,
                "Failed password for alice from 192.0.2.1 port 1 ssh2",
            );
        }
        for _ in [1, 2] {
            log += &line(
                "sftp-a",
                10,
                2,
                "Accepted password for alice from 192.0.2.1 port 1 ssh2",
            );
        }
        log += &line(
            "rogue",
            11,
            3,
            "Accepted password for alice from 192.0.2.9 port 1 ssh2",
        );
        log += &line(
            "collector",
            12,
            4,
            "Accepted password for admin from 192.0.2.5 port 1 ssh2",
        );
        let mut tables = HostAccounts::empty();
        tables.local_names = vec!["collector".into()];
        let mut a = HostTable::default();
        a.seq = 1;
        a.accounts.insert(1001, "alice".into());
        tables.hosts.insert("sftp-a".into(), a);
        let path = std::env::temp_dir().join(format!("sftpctl-logins-{}.log", std::process::id()));
        std::fs::write(&path, &log).unwrap();
        let input = || vec![(path.clone(), open_log(&path).unwrap())];
        let found = read(input(), 1_796_000_000, false, Some(&tables)).unwrap();
        let got: Vec<(&str, &str, Outcome, u32)> = found
            .logins
            .iter()
            .map(|l| {
                (
                    l.host.as_str(),
                    l.user.as_str(),
                    l.outcome,
                    l.failed_attempts,
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("sftp-a", "alice@sftp-a", Outcome::Accepted, 1),
                ("collector", "admin", Outcome::Accepted, 0)
            ]
        );
        assert_eq!(found.unannounced, 1);
        // Without the tables (not a collector) every line counts as it stands.
        let plain = read(input(), 1_796_000_000, false, None).unwrap();
        let _ = std::fs::remove_file(&path);
        assert_eq!(plain.logins.len(), 4, "{:?}", plain.logins);
    }

    #[test]
    fn csv_guards_formulas_in_names() {
        let l = login("=HYPERLINK(\"http://x\",\"y\")", Outcome::Invalid);
        let mut out = Vec::new();
        write_csv(&mut out, &[&l]).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains(",\"'=HYPERLINK(\"\"http://x\"\",\"\"y\"\")\",invalid,"),
            "{text}"
        );
    }

    #[test]
    fn the_filter_takes_user_and_time() {
        let l = login("alice", Outcome::Accepted);
        let f = |users: &[&str], since, until| LoginFilter {
            users: users.iter().map(|u| u.to_string()).collect(),
            since,
            until,
        };
        assert!(f(&[], None, None).keeps(&l));
        assert!(f(&["alice"], Some(l.time), Some(l.time + 1)).keeps(&l));
        assert!(!f(&["bob"], None, None).keeps(&l));
        assert!(!f(&[], Some(l.time + 1), None).keeps(&l));
        assert!(!f(&[], None, Some(l.time)).keeps(&l));
    }
}
