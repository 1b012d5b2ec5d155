//! Login lines → one [`Login`] per connection. sshd logs a connection's lines from one
//! process (the monitor), so host + pid is the connection: a failed password is followed by
//! `Connection closed by authenticating user …`, and both are one failed login.

use std::collections::{HashMap, VecDeque};

use super::parse::{LoginEvent, LoginLine, Source};
use super::{Login, Outcome};
use crate::watch::parse::Sender;
use crate::watch::trust::Untrusted;

/// Connections waiting for their end at most (a flood of half-open connections from the
/// network is bounded by sshd's MaxStartups, but a replayed log is not): past it the oldest
/// is finished as it stands.
pub const MAX_PENDING: usize = 4096;
/// sshd's LoginGraceTime is 120 s by default: a connection quiet for longer has ended.
pub const PENDING_SECS: i64 = 600;
/// Connections ended recently, whose further end lines (`Disconnecting …` after `maximum
/// authentication attempts`, `Disconnected from …` after `Received disconnect`) are no new
/// login.
const RECENT_ENDS: usize = 256;

/// Whether a login line may be believed: only sshd running as root speaks for a login
/// (the monitor logs every auth line; its preauth child's lines are relayed through it).
/// The pid in the tag must be the sender's (or the line was relayed by journald).
pub fn admit(sender: Sender, tag_pid: u32, accept_unverified: bool) -> Result<(), Untrusted> {
    match sender {
        Sender::Unverified if accept_unverified => Ok(()),
        Sender::Unverified => Err(Untrusted::NoCredentials),
        Sender::Kernel { uid, .. } if uid != 0 => Err(Untrusted::NotRoot),
        Sender::Kernel { pid, relayed, .. } if pid != tag_pid && !relayed => {
            Err(Untrusted::PidMismatch)
        }
        Sender::Kernel { .. } => Ok(()),
    }
}

#[derive(Debug)]
struct Pending {
    login: Login,
    seen: i64,
}

#[derive(Debug, Default)]
pub struct Tracker {
    pending: HashMap<(String, u32), Pending>,
    order: VecDeque<(String, u32)>,
    recent_ends: VecDeque<(String, u32)>,
    /// Lines dropped by [`admit`], and the last reason.
    pub untrusted: u64,
    pub last_untrusted: Option<Untrusted>,
}

impl Tracker {
    /// A line from `sender`; finished logins are pushed to `out`. `clock` is the line's
    /// time when it has none of its own.
    pub fn line(
        &mut self,
        sender: Sender,
        line: LoginLine,
        accept_unverified: bool,
        clock: i64,
        out: &mut Vec<Login>,
    ) {
        if let Err(why) = admit(sender, line.pid, accept_unverified) {
            self.untrusted += 1;
            self.last_untrusted = Some(why);
            return;
        }
        let time = line.time.unwrap_or(clock);
        let key = (line.host.clone(), line.pid);
        match line.event {
            LoginEvent::Penalty { source, reason } => out.push(Login {
                note: reason,
                ..Login::new(time, &line.host, line.pid, "", Outcome::Penalty, source)
            }),
            LoginEvent::Accepted {
                user,
                method,
                source,
                key: fp,
            } => {
                let mut login = self.take(&key).unwrap_or_else(|| {
                    Login::new(
                        time,
                        &line.host,
                        line.pid,
                        &user,
                        Outcome::Accepted,
                        source.clone(),
                    )
                });
                login.time = time;
                login.outcome = Outcome::Accepted;
                login.user = user;
                login.method = method;
                login.source = source.addr;
                login.port = source.port;
                login.key = fp;
                self.ended(key);
                out.push(login);
            }
            LoginEvent::Failed {
                user,
                invalid,
                method,
                source,
                key: fp,
            } => {
                let p = self.entry(&key, time, &user, invalid, &source, &line.host, out);
                p.login.failed_attempts += 1;
                if !p.login.method.split(',').any(|m| m == method) {
                    if !p.login.method.is_empty() {
                        p.login.method.push(',');
                    }
                    p.login.method.push_str(&method);
                }
                if fp.is_some() {
                    p.login.key = fp;
                }
            }
            LoginEvent::InvalidUser { user, source } => {
                self.entry(&key, time, &user, true, &source, &line.host, out);
            }
            LoginEvent::MaxTries {
                user,
                invalid,
                source,
            } => {
                let p = self.entry(&key, time, &user, invalid, &source, &line.host, out);
                p.login.note = "too many authentication failures".into();
            }
            LoginEvent::Ended {
                user,
                invalid,
                source,
                reason,
            } => {
                if self.recent_ends.contains(&key) {
                    return;
                }
                self.entry(&key, time, &user, invalid, &source, &line.host, out);
                if let Some(mut login) = self.take(&key) {
                    login.time = time;
                    if login.note.is_empty() {
                        login.note = reason;
                    }
                    self.ended(key);
                    out.push(login);
                }
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn entry(
        &mut self,
        key: &(String, u32),
        time: i64,
        user: &str,
        invalid: bool,
        source: &Source,
        host: &str,
        out: &mut Vec<Login>,
    ) -> &mut Pending {
        let outcome = if invalid {
            Outcome::Invalid
        } else {
            Outcome::Failed
        };
        // A pid that came back for another user: the old connection ended unseen.
        if self
            .pending
            .get(key)
            .is_some_and(|p| p.login.user != user || p.login.source != source.addr)
        {
            out.extend(self.take(key));
        }
        if !self.pending.contains_key(key) {
            if self.pending.len() >= MAX_PENDING {
                while let Some(old) = self.order.pop_front() {
                    if let Some(p) = self.pending.remove(&old) {
                        out.push(p.login);
                        break;
                    }
                }
            }
            self.recent_ends.retain(|k| k != key);
            self.order.push_back(key.clone());
            self.pending.insert(
                key.clone(),
                Pending {
                    login: Login::new(time, host, key.1, user, outcome, source.clone()),
                    seen: time,
                },
            );
        }
        let p = self.pending.get_mut(key).expect("inserted above");
        p.seen = p.seen.max(time);
        p.login.time = p.login.time.max(time);
        p
    }

    fn take(&mut self, key: &(String, u32)) -> Option<Login> {
        let p = self.pending.remove(key)?;
        if let Some(i) = self.order.iter().position(|k| k == key) {
            self.order.remove(i);
        }
        Some(p.login)
    }

    fn ended(&mut self, key: (String, u32)) {
        if self.recent_ends.len() >= RECENT_ENDS {
            self.recent_ends.pop_front();
        }
        self.recent_ends.push_back(key);
    }

    /// Finishes connections quiet for [`PENDING_SECS`] at `now`.
    pub fn expire(&mut self, now: i64, out: &mut Vec<Login>) {
        while let Some(key) = self.order.front() {
            match self.pending.get(key) {
                Some(p) if now - p.seen < PENDING_SECS => break,
                _ => {
                    let key = self.order.pop_front().expect("front exists");
                    out.extend(self.pending.remove(&key).map(|p| p.login));
                }
            }
        }
    }

    /// Finishes every connection (end of input).
    pub fn finish_all(&mut self, out: &mut Vec<Login>) {
        while let Some(key) = self.order.pop_front() {
            out.extend(self.pending.remove(&key).map(|p| p.login));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logins::parse::parse_login_line;

    fn feed(lines: &[String], unverified: bool) -> (Vec<Login>, Tracker) {
        let mut t = Tracker::default();
        let mut out = Vec::new();
        for l in lines {
            if let Some((sender, line)) = parse_login_line(l.as_bytes(), 0) {
                t.line(sender, line, unverified, 0, &mut out);
            }
        }
        t.finish_all(&mut out);
        (out, t)
    }

    fn line(uid: u32, kpid: u32, pid: u32, msg: &str) -> String {
        format!("2026-11-27T16:04:18.430882+00:00 vm [uid={uid} pid={kpid} exe=/usr/sbin/sshd] sshd[{pid}]: {msg}")
    }

    #[test]
    fn one_login_per_connection() {
        let (out, _) = feed(
            &[
                line(0, 10, 10, "Failed password for alice from 192.0.2.1 port 1 ssh2"),
                line(0, 10, 10, "Connection closed by authenticating user alice 192.0.2.1 port 1 [preauth]"),
                line(0, 11, 11, "Connection closed by authenticating user alice 192.0.2.2 port 2 [preauth]"),
                line(0, 12, 12, "Invalid user bob from 192.0.2.3 port 3"),
                line(0, 12, 12, "Connection closed by invalid user bob 192.0.2.3 port 3 [preauth]"),
                line(0, 13, 13, "Failed publickey for alice from 192.0.2.4 port 4 ssh2: ED25519 SHA256:x"),
                line(0, 13, 13, "Failed password for alice from 192.0.2.4 port 4 ssh2"),
                line(0, 13, 13, "Accepted password for alice from 192.0.2.4 port 4 ssh2"),
                line(0, 14, 14, "maximum authentication attempts exceeded for alice from 192.0.2.5 port 5 ssh2 [preauth]"),
                line(0, 14, 14, "Disconnecting authenticating user alice 192.0.2.5 port 5: Too many authentication failures [preauth]"),
            ],
            false,
        );
        let got: Vec<(Outcome, &str, &str, &str, u32)> = out
            .iter()
            .map(|l| {
                (
                    l.outcome,
                    l.user.as_str(),
                    l.source.as_str(),
                    l.method.as_str(),
                    l.failed_attempts,
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (Outcome::Failed, "alice", "192.0.2.1", "password", 1),
                (Outcome::Failed, "alice", "192.0.2.2", "", 0),
                (Outcome::Invalid, "bob", "192.0.2.3", "", 0),
                (Outcome::Accepted, "alice", "192.0.2.4", "password", 2),
                (Outcome::Failed, "alice", "192.0.2.5", "", 0),
            ]
        );
        assert_eq!(out[4].note, "too many authentication failures");
    }

    /// Only root's sshd speaks for a login: a jailed client's or another account's process
    /// (its own uid), a wrong pid, or a line without credentials is dropped.
    #[test]
    fn forged_logins_are_dropped() {
        let accepted = "Accepted publickey for alice from 192.0.2.9 port 9 ssh2: ED25519 SHA256:x";
        let (out, t) = feed(
            &[
                line(1001, 20, 20, accepted),
                line(0, 21, 22, accepted),
                line(65534, 23, 23, accepted),
            ],
            false,
        );
        assert!(out.is_empty(), "{out:?}");
        assert_eq!(t.untrusted, 3);
        let bare = format!("2026-11-27T16:04:18+00:00 vm sshd[30]: {accepted}");
        let (out, t) = feed(std::slice::from_ref(&bare), false);
        assert!(out.is_empty());
        assert_eq!(t.last_untrusted, Some(Untrusted::NoCredentials));
        let (out, _) = feed(&[bare], true);
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn pending_connections_are_bounded() {
        let lines: Vec<String> = (0..MAX_PENDING as u32 + 10)
            .map(|i| {
                line(
                    0,
                    100 + i,
                    100 + i,
                    &format!("Invalid user u{i} from 192.0.2.1 port 1"),
                )
            })
            .collect();
        let mut t = Tracker::default();
        let mut out = Vec::new();
        for l in &lines {
            let (s, l) = parse_login_line(l.as_bytes(), 0).unwrap();
            t.line(s, l, false, 0, &mut out);
        }
        assert_eq!(out.len(), 10);
        assert!(t.pending.len() <= MAX_PENDING);
    }
}
