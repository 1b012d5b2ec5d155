//! Which lines the watcher believes. Anyone on the host can write an `internal-sftp[PID]` line
//! to the jails' socket or the host's /dev/log; only the kernel's credentials of the sender,
//! which rsyslog puts in front of the tag (see [`super::parse::Sender`]), tell a session's own
//! process from a forger. A line is believed when its sender's uid is an SFTP account (a
//! member of `jail_group`, or the admin), the pid the kernel gave is the pid in the tag, a
//! `session opened/closed for local user X` names that same account, and the session the
//! line belongs to was started by that uid. internal-sftp logs after its privilege drop, so
//! alice's lines carry alice's uid; a jailed account cannot run anything else.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::parse::Event;
use crate::config::Config;

/// The jails' socket in rsyslog: at most `JAIL_RATE_BURST` lines per sending process in
/// `JAIL_RATE_INTERVAL_SECS` (rsyslog's imuxsock limits per pid when it reads credentials).
/// A fast real session sends far less (docs/watch.md, "Trusted feed").
/// Measured: a session putting, getting and removing 3,000 one-byte files over loopback at
/// VERBOSE sent 18,018 lines in 4.4-8.4 s, at most 6,824 in one second and 18,018 in any 5 s:
/// the budget (200,000 in 5 s) is 11 times that.
pub const JAIL_RATE_INTERVAL_SECS: u32 = 5;
pub const JAIL_RATE_BURST: u32 = 200_000;

/// Why a line was not believed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Untrusted {
    /// No credentials in the line (old format, UDP, a socket rsyslog does not annotate).
    NoCredentials,
    /// The pid in the tag is not the sender's.
    PidMismatch,
    /// The sender's uid is no SFTP account.
    NotAnSftpAccount,
    /// `session opened/closed for local user X` sent by another account than X.
    WrongUser,
    /// A line for a session that another uid started.
    OtherUidsSession,
    /// A datagram on the watcher's socket from a process other than root's.
    NotFromRoot,
    /// An sshd login line whose sender is not root: only sshd running as root speaks for a
    /// login (src/logins/track.rs).
    NotRoot,
    /// A collector's line from a host that has not announced its accounts (src/fleet/).
    UnknownHost,
}

impl Untrusted {
    pub fn describe(self) -> &'static str {
        match self {
            Untrusted::NoCredentials => "the line carries no credentials of its sender",
            Untrusted::PidMismatch => "the pid in the tag is not the sender's",
            Untrusted::NotAnSftpAccount => "the sender is no SFTP account",
            Untrusted::WrongUser => "the sender is not the user the line names",
            Untrusted::OtherUidsSession => "another account started that session",
            Untrusted::NotFromRoot => "the datagram did not come from root (rsyslog)",
            Untrusted::NotRoot => "an sshd login line not sent by root",
            Untrusted::UnknownHost => {
                "the line's host has not announced its accounts (run `sftpctl announce` there)"
            }
        }
    }
}

/// The last line dropped, for the watcher's log and `report`'s summary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dropped {
    pub why: Untrusted,
    pub uid: Option<u32>,
    pub pid: Option<u32>,
}

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.why.describe())?;
        if let Some(uid) = self.uid {
            write!(f, " (sender uid {uid}")?;
            if let Some(pid) = self.pid {
                write!(f, ", pid {pid}")?;
            }
            f.write_str(")")?;
        }
        Ok(())
    }
}

/// uid → name of the SFTP account with that uid, if it is one.
pub trait Accounts: Send {
    fn sftp_account(&mut self, uid: u32) -> Option<String>;
}

/// How long an answer of the account database is reused: a flood of lines from one uid costs
/// one lookup a minute, and an account added by `add-user` is seen within a minute (at once
/// when it was never asked about).
const CACHE_FOR: Duration = Duration::from_secs(60);
/// Entries kept at most; the cache is emptied when full (uids are few on a real host).
const CACHE_MAX: usize = 4096;

/// The host's accounts: members of `jail_group` and the admin.
pub struct SystemAccounts {
    config: Config,
    cache: HashMap<u32, (Option<String>, Instant)>,
}

impl SystemAccounts {
    pub fn new(config: &Config) -> SystemAccounts {
        SystemAccounts {
            config: config.clone(),
            cache: HashMap::new(),
        }
    }

    fn look_up(&self, uid: u32) -> Option<String> {
        let user = users::get_user_by_uid(uid)?;
        let name = user.name().to_str()?.to_string();
        let admin = self.config.admin.as_deref() == Some(name.as_str());
        (admin || crate::accounts::is_jailed(&self.config, &name)).then_some(name)
    }
}

impl Accounts for SystemAccounts {
    fn sftp_account(&mut self, uid: u32) -> Option<String> {
        if let Some((name, at)) = self.cache.get(&uid) {
            if at.elapsed() < CACHE_FOR {
                return name.clone();
            }
        }
        let name = self.look_up(uid);
        if self.cache.len() >= CACHE_MAX {
            self.cache.clear();
        }
        self.cache.insert(uid, (name.clone(), Instant::now()));
        name
    }
}

/// No account is an SFTP account: every line with credentials is dropped.
pub struct NoAccounts;

impl Accounts for NoAccounts {
    fn sftp_account(&mut self, _uid: u32) -> Option<String> {
        None
    }
}

/// A fixed table (tests, benches).
pub struct FixedAccounts(pub HashMap<u32, String>);

impl Accounts for FixedAccounts {
    fn sftp_account(&mut self, uid: u32) -> Option<String> {
        self.0.get(&uid).cloned()
    }
}

/// What [`super::session::Sessions::apply_from`] checks lines against.
pub struct Trust {
    pub accounts: Box<dyn Accounts>,
    /// On a collector: the forwarding hosts' announced accounts; lines of hosts other than
    /// this one are checked against them (`None`: every line is this host's).
    pub hosts: Option<crate::fleet::accounts::HostAccounts>,
    /// The last line dropped.
    pub last_dropped: Option<Dropped>,
}

impl Default for Trust {
    fn default() -> Self {
        Trust {
            accounts: Box::new(NoAccounts),
            hosts: None,
            last_dropped: None,
        }
    }
}

impl std::fmt::Debug for Trust {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trust")
            .field("last_dropped", &self.last_dropped)
            .finish_non_exhaustive()
    }
}

impl Trust {
    /// Whether a line with credentials may be applied: its sender `uid`/`kernel_pid`
    /// (`relayed`: the pid is journald's, see [`super::parse::Sender`]), the pid in its tag, its event (none
    /// for an unreadable line) and the uid that started the session it belongs to, if any.
    /// `Ok`: the name of the sender's SFTP account.
    pub fn admit(
        &mut self,
        host: &str,
        (uid, kernel_pid, relayed): (u32, u32, bool),
        tag_pid: u32,
        event: Option<&Event>,
        session_uid: Option<u32>,
    ) -> Result<String, Untrusted> {
        // A relayed line's pid is journald's: the tag's pid (written by a process of this
        // uid) stands, and the uid checks below still hold.
        if kernel_pid != tag_pid && !relayed {
            return Err(Untrusted::PidMismatch);
        }
        let name = match &self.hosts {
            Some(hosts) if !hosts.is_local(host) => match hosts.account(host, uid) {
                Some(found) => found.map(str::to_string),
                None => return Err(Untrusted::UnknownHost),
            },
            _ => self.accounts.sftp_account(uid),
        }
        .ok_or(Untrusted::NotAnSftpAccount)?;
        match event {
            Some(Event::SessionOpened { user, .. } | Event::SessionClosed { user, .. })
                if *user != name =>
            {
                Err(Untrusted::WrongUser)
            }
            // A new session on a pid another uid used before: the pid came back.
            Some(Event::SessionOpened { .. }) => Ok(name),
            _ if session_uid.is_some_and(|u| u != uid) => Err(Untrusted::OtherUidsSession),
            _ => Ok(name),
        }
    }

    /// This host's accounts, and on a collector the forwarding hosts' saved tables (a
    /// damaged file is said on stderr and the tables start empty: the hosts' next
    /// announcements fill them).
    pub fn system(config: &Config) -> Trust {
        let hosts = crate::fleet::accounts::HostAccounts::on_collector(config);
        Trust {
            accounts: Box::new(SystemAccounts::new(config)),
            hosts,
            last_dropped: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::watch::parse::{parse_feed_line, Sender};
    use crate::watch::report::Report;
    use crate::watch::session::{Limits, Sessions};

    const NOW: i64 = 1_796_000_000;
    const ALICE: u32 = 1001;
    const BOB: u32 = 1002;
    const EVE: u32 = 1003;

    fn sessions() -> Sessions {
        let mut s = Sessions::new(Limits::default(), "/data");
        s.trust.accounts = Box::new(FixedAccounts(
            [(ALICE, "alice".to_string()), (BOB, "bob".to_string())].into(),
        ));
        s
    }

    /// A line as rsyslog's `sftpctl` template writes it.
    fn line(uid: &str, kpid: &str, pid: u32, msg: &str) -> String {
        format!("2026-11-27T16:04:18.430882+00:00 vm [uid={uid} pid={kpid} exe=/usr/sbin/sshd] internal-sftp[{pid}]: {msg}")
    }

    fn feed(s: &mut Sessions, lines: &[String], unverified: bool) -> Vec<Report> {
        let mut out = Vec::new();
        for l in lines {
            let (sender, parsed) = parse_feed_line(l.as_bytes(), NOW);
            s.apply_from(sender, parsed, unverified, NOW, &mut out);
        }
        s.finish_all(crate::watch::session::Ending::EndOfInput, &mut out);
        out
    }

    fn session_of(user: &str, uid: u32, pid: u32, file: &str) -> Vec<String> {
        let (u, p) = (uid.to_string(), pid.to_string());
        vec![
            line(
                &u,
                &p,
                pid,
                &format!("session opened for local user {user} from [10.0.0.1]"),
            ),
            line(
                &u,
                &p,
                pid,
                &format!("open \"/data/{file}\" flags WRITE,CREATE,TRUNCATE mode 0644"),
            ),
            line(
                &u,
                &p,
                pid,
                &format!("close \"/data/{file}\" bytes read 0 written 5"),
            ),
            line(
                &u,
                &p,
                pid,
                &format!("session closed for local user {user} from [10.0.0.1]"),
            ),
        ]
    }

    #[test]
    fn reads_the_credentials_block() {
        let (sender, _) = parse_feed_line(line("1001", "77", 77, "x").as_bytes(), NOW);
        assert_eq!(
            sender,
            Sender::Kernel {
                uid: 1001,
                pid: 77,
                relayed: false
            }
        );
        // journald's own pid (it relayed a line of a sender that had exited)
        let relayed = line("1001", "17", 77, "x")
            .replace("/usr/sbin/sshd", "/usr/lib/systemd/systemd-journald");
        let (sender, _) = parse_feed_line(relayed.as_bytes(), NOW);
        assert_eq!(
            sender,
            Sender::Kernel {
                uid: 1001,
                pid: 17,
                relayed: true
            }
        );
        // a program of the sender's own named like journald is not journald
        let fake = line("1001", "17", 77, "x").replace("/usr/sbin/sshd", "/tmp/systemd-journald");
        assert!(matches!(
            parse_feed_line(fake.as_bytes(), NOW).0,
            Sender::Kernel { relayed: false, .. }
        ));
        // an unannotated socket: empty fields
        let (sender, parsed) = parse_feed_line(line("", "", 77, "statvfs \"/\"").as_bytes(), NOW);
        assert_eq!(sender, Sender::Unverified);
        assert!(matches!(parsed, crate::watch::parse::Parsed::Sftp(_)));
        // old format
        let old = "2026-11-27T16:04:18+00:00 vm internal-sftp[77]: statvfs \"/\"";
        assert_eq!(parse_feed_line(old.as_bytes(), NOW).0, Sender::Unverified);
        // a block the sender wrote after the real one is part of the tag: not internal-sftp
        let forged = "2026-11-27T16:04:18+00:00 vm [uid= pid=] [uid=1001 pid=77] internal-sftp[77]: statvfs \"/\"";
        let (sender, parsed) = parse_feed_line(forged.as_bytes(), NOW);
        assert_eq!(sender, Sender::Unverified);
        assert_eq!(parsed, crate::watch::parse::Parsed::Foreign);
    }

    #[test]
    fn a_session_of_its_own_process_is_reported() {
        let mut s = sessions();
        let out = feed(&mut s, &session_of("alice", ALICE, 500, "a.txt"), false);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].user, "alice");
        assert_eq!(s.stats.untrusted_lines, 0);
    }

    #[test]
    fn forged_lines_are_dropped_and_counted() {
        // Eve (no SFTP account) forges alice's session.
        let mut s = sessions();
        let out = feed(&mut s, &session_of("alice", EVE, 600, "x.txt"), false);
        assert!(out.is_empty());
        assert_eq!(s.stats.untrusted_lines, 4);
        assert_eq!(
            s.trust.last_dropped.as_ref().unwrap().why,
            Untrusted::NotAnSftpAccount
        );
        // Bob's own process claims to be alice.
        let mut s = sessions();
        let out = feed(&mut s, &session_of("alice", BOB, 601, "x.txt"), false);
        assert!(out.iter().all(|r| r.user == "bob"), "{out:?}");
        assert!(s.stats.untrusted_lines >= 2);
        // The pid in the tag is not the sender's.
        let mut s = sessions();
        let lines: Vec<String> = session_of("alice", ALICE, 602, "x.txt")
            .iter()
            .map(|l| l.replace("pid=602 exe", "pid=603 exe"))
            .collect();
        assert!(feed(&mut s, &lines, false).is_empty());
        assert_eq!(
            s.trust.last_dropped.as_ref().unwrap().why,
            Untrusted::PidMismatch
        );
        // No credentials: dropped unless asked for.
        let old: Vec<String> = session_of("alice", ALICE, 604, "x.txt")
            .iter()
            .map(|l| l.replace("[uid=1001 pid=604 exe=/usr/sbin/sshd] ", ""))
            .collect();
        let mut s = sessions();
        assert!(feed(&mut s, &old, false).is_empty());
        assert_eq!(s.stats.untrusted_lines, 4);
        let mut s = sessions();
        assert_eq!(feed(&mut s, &old, true).len(), 1);
    }

    #[test]
    fn another_uid_cannot_add_to_or_relabel_a_live_session() {
        let mut s = sessions();
        let mut lines = session_of("alice", ALICE, 700, "mine.txt");
        let close = lines.pop().unwrap();
        // Bob's process sends lines with alice's pid (its kernel pid is its own: dropped for
        // the pid) and, were the pid the same, its uid still is not alice's.
        lines.push(line(
            "1002",
            "700",
            700,
            "session closed for local user bob from [1.1.1.1]",
        ));
        lines.push(line("1002", "700", 700, "remove name \"/data/mine.txt\""));
        lines.push(line("1002", "9999", 700, "remove name \"/data/mine.txt\""));
        lines.push(close);
        let out = feed(&mut s, &lines, false);
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(out[0].user, "alice");
        assert!(out[0].deletes.is_empty());
        assert_eq!(s.stats.untrusted_lines, 3);
    }

    /// journald relays the admin's /dev/log lines with the sender's uid, and with its own pid
    /// once the sender has exited: those lines join the session the tag names, and the uid
    /// checks still hold.
    #[test]
    fn lines_relayed_by_journald_keep_the_tags_pid_and_the_uid_checks() {
        let journald = |l: &String| {
            l.replace(
                "pid=900 exe=/usr/sbin/sshd",
                "pid=17 exe=/usr/lib/systemd/systemd-journald",
            )
        };
        let mut lines = session_of("bob", BOB, 900, "b.txt");
        lines[1] = journald(&lines[1]);
        lines[2] = journald(&lines[2]);
        // eve's line, relayed too, with bob's pid in its tag
        lines.insert(
            3,
            journald(&line("1003", "900", 900, "remove name \"/data/b.txt\"")),
        );
        let mut s = sessions();
        let out = feed(&mut s, &lines, false);
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!((out[0].user.as_str(), out[0].uploads.len()), ("bob", 1));
        assert!(out[0].deletes.is_empty());
        assert_eq!(s.stats.untrusted_lines, 1);
    }

    #[test]
    fn a_session_seen_from_its_middle_gets_its_user_from_the_uid() {
        let mut s = sessions();
        let lines = session_of("bob", BOB, 800, "b.txt")[1..3].to_vec();
        let out = feed(&mut s, &lines, false);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].user, "bob");
    }
}
