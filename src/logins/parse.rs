//! sshd's authentication lines → [`LoginEvent`].
//!
//! The messages (auth.c `auth_log`, auth.c `getpwnamallow`, packet.c
//! `sshpkt_fmt_connection_id`, srclimit.c, the same from 9.2 to 10.0):
//! `Accepted|Failed METHOD for [invalid user ]USER from ADDR port N ssh2[: TYPE FP]`,
//! `Invalid user USER from ADDR port N`,
//! `Connection closed by|Connection reset by|Disconnected from (authenticating|invalid) user USER ADDR port N [preauth]`,
//! `Disconnecting (authenticating|invalid) user USER ADDR port N: REASON [preauth]`,
//! `maximum authentication attempts exceeded for [invalid user ]USER from ADDR port N ssh2 [preauth]`,
//! and on OpenSSH >= 9.8 `srclimit_penalise: ipv4: new ADDR/32 active penalty of S seconds for penalty: REASON`
//! and `drop connection #N from [ADDR]:PORT on [ADDR]:PORT penalty: REASON`.
//! An invalid user's name is whatever a remote client sent (spaces, ` from 1.2.3.4 port 1`,
//! escapes): every message is read from its END, where only sshd writes.

use crate::watch::escape::for_people;
use crate::watch::parse::{split_header, Sender};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub addr: String,
    pub port: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginEvent {
    Accepted {
        user: String,
        method: String,
        source: Source,
        /// `ED25519 SHA256:…` for a key (and what sshd adds for a certificate).
        key: Option<String>,
    },
    /// One failed attempt (publickey only at VERBOSE: auth.c logs it at INFO only for
    /// passwords, invalid users, and from the half of MaxAuthTries on).
    Failed {
        user: String,
        invalid: bool,
        method: String,
        source: Source,
        key: Option<String>,
    },
    InvalidUser {
        user: String,
        source: Source,
    },
    /// `maximum authentication attempts exceeded`: the connection ends right after.
    MaxTries {
        user: String,
        invalid: bool,
        source: Source,
    },
    /// The connection ended before any authentication succeeded (`[preauth]`).
    Ended {
        user: String,
        invalid: bool,
        source: Source,
        reason: String,
    },
    /// OpenSSH >= 9.8 penalised or refused a source address (PerSourcePenalties).
    Penalty {
        source: Source,
        reason: String,
    },
}

/// A login line of one sshd process (one connection: the monitor's pid).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginLine {
    pub host: String,
    pub pid: u32,
    pub time: Option<i64>,
    pub event: LoginEvent,
}

/// The programs that speak for a login: sshd, and `sshd-session` (OpenSSH >= 9.8 runs each
/// connection in it; 10.0's `sshd-auth` logs through it).
fn login_pid(tag: &[u8]) -> Option<u32> {
    let (program, rest) = split_at_byte(tag, b'[')?;
    if !matches!(program, b"sshd" | b"sshd-session" | b"sshd-auth") {
        return None;
    }
    let digits = rest.strip_suffix(b"]")?;
    if digits.is_empty() || digits.len() > 10 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// One log line (the formats of [`crate::watch::parse`]) → who sent it and its login event,
/// or `None` when it is no login line of sshd.
pub fn parse_login_line(raw: &[u8], now: i64) -> Option<(Sender, LoginLine)> {
    let mut line = raw;
    while let [rest @ .., b'\n' | b'\r' | b'\0'] = line {
        line = rest;
    }
    let ((time, _), host, sender, tag, message) = split_header(line, now)?;
    let pid = login_pid(tag)?;
    let event = parse_message(message)?;
    Some((
        sender,
        LoginLine {
            host: String::from_utf8_lossy(host).into_owned(),
            pid,
            time,
            event,
        },
    ))
}

pub fn parse_message(m: &[u8]) -> Option<LoginEvent> {
    // sshd logs `maximum authentication attempts exceeded` with error(): `error: ` first.
    let m = m.strip_prefix(b"error: ").unwrap_or(m);
    if let Some(rest) = m.strip_prefix(b"Accepted ") {
        let (method, user, invalid, source, key) = method_for(rest)?;
        if invalid {
            return None;
        }
        return Some(LoginEvent::Accepted {
            user,
            method,
            source,
            key,
        });
    }
    if let Some(rest) = m.strip_prefix(b"Failed ") {
        let (method, user, invalid, source, key) = method_for(rest)?;
        return Some(LoginEvent::Failed {
            user,
            invalid,
            method,
            source,
            key,
        });
    }
    if let Some(rest) = m.strip_prefix(b"Invalid user ") {
        let (user, source) = from_port(rest)?;
        return Some(LoginEvent::InvalidUser {
            user: for_people(user),
            source,
        });
    }
    if let Some(rest) = m.strip_prefix(b"maximum authentication attempts exceeded for ") {
        let rest = rest.strip_suffix(b" ssh2 [preauth]")?;
        let (who, source) = from_port(rest)?;
        let (user, invalid) = who_of(who);
        return Some(LoginEvent::MaxTries {
            user,
            invalid,
            source,
        });
    }
    if let Some(rest) = m.strip_prefix(b"srclimit_penalise: ") {
        return penalise(rest);
    }
    if let Some(rest) = m.strip_prefix(b"drop connection #") {
        return dropped(rest);
    }
    ended(m)
}

/// `METHOD for [invalid user ]USER from ADDR port N ssh2[: KEY]`.
type MethodFor = (String, String, bool, Source, Option<String>);

fn method_for(rest: &[u8]) -> Option<MethodFor> {
    let (method, rest) = split_once(rest, b" for ")?;
    if method.is_empty() || method.contains(&b' ') {
        return None;
    }
    // A key's tail is `: TYPE FINGERPRINT` (two words); a certificate's carries its ID and
    // CA too. An account's name has no spaces, an invalid user's may have any: with a plain
    // tail the line is read from its end, else up to the first ` from ` (then the user is
    // an account, and sshd wrote the rest).
    let (body, key) = match rsplit_once(rest, b" ssh2: ") {
        Some((body, tail)) if is_key_tail(tail) => (body, Some(tail)),
        _ => match rest.strip_suffix(b" ssh2") {
            Some(body) => (body, None),
            None => {
                let (who, after) = split_once(rest, b" from ")?;
                let (addr_port, tail) = split_once(after, b" ssh2: ")?;
                let (addr, port) = split_once(addr_port, b" port ")?;
                let (user, invalid) = who_of(who);
                return Some((
                    for_people(method),
                    user,
                    invalid,
                    source(addr, port)?,
                    Some(for_people(tail)),
                ));
            }
        },
    };
    let (who, source) = from_port(body)?;
    let (user, invalid) = who_of(who);
    Some((
        for_people(method),
        user,
        invalid,
        source,
        key.map(for_people),
    ))
}

fn is_key_tail(tail: &[u8]) -> bool {
    match split_once(tail, b" ") {
        Some((kind, fp)) => {
            !kind.is_empty()
                && !fp.contains(&b' ')
                && (fp.starts_with(b"SHA256:") || fp.starts_with(b"MD5:"))
        }
        None => false,
    }
}

/// `WHO from ADDR port N` → (WHO, source), from the end.
fn from_port(rest: &[u8]) -> Option<(&[u8], Source)> {
    let (left, port) = rsplit_once(rest, b" port ")?;
    let (who, addr) = rsplit_once(left, b" from ")?;
    Some((who, source(addr, port)?))
}

fn source(addr: &[u8], port: &[u8]) -> Option<Source> {
    if addr.is_empty() || addr.len() > 64 || addr.contains(&b' ') {
        return None;
    }
    let port = std::str::from_utf8(port).ok()?.parse().ok();
    Some(Source {
        addr: for_people(addr),
        port,
    })
}

/// `invalid user NAME` or `NAME`.
fn who_of(who: &[u8]) -> (String, bool) {
    match who.strip_prefix(b"invalid user ") {
        Some(name) => (for_people(name), true),
        None => (for_people(who), false),
    }
}

/// `Connection closed by …`, `Connection reset by …`, `Disconnected from …`,
/// `Disconnecting …`: `(authenticating|invalid) user USER ADDR port N[: REASON] [preauth]`.
fn ended(m: &[u8]) -> Option<LoginEvent> {
    let m = m.strip_suffix(b" [preauth]")?;
    let (how, rest) = [
        ("connection closed", &b"Connection closed by "[..]),
        ("connection reset", b"Connection reset by "),
        ("disconnected", b"Disconnected from "),
        ("disconnected by sshd", b"Disconnecting "),
    ]
    .into_iter()
    .find_map(|(how, p)| m.strip_prefix(p).map(|r| (how, r)))?;
    let (invalid, rest) = if let Some(r) = rest.strip_prefix(b"authenticating user ") {
        (false, r)
    } else {
        (true, rest.strip_prefix(b"invalid user ")?)
    };
    let (left, after) = rsplit_once(rest, b" port ")?;
    let (port, reason) = match split_once(after, b": ") {
        Some((port, reason)) => (port, for_people(reason)),
        None => (after, how.to_string()),
    };
    let (user, addr) = rsplit_once(left, b" ")?;
    Some(LoginEvent::Ended {
        user: for_people(user),
        invalid,
        source: source(addr, port)?,
        reason,
    })
}

/// `ipv4: new 127.0.0.1/32 active penalty of 30 seconds for penalty: failed authentication`
/// (also `activating`), from sshd's listener.
fn penalise(rest: &[u8]) -> Option<LoginEvent> {
    let (_, rest) = split_once(rest, b": ")?;
    let (addr, rest) = if let Some(r) = rest.strip_prefix(b"new ") {
        let (addr, r) = split_once(r, b" ")?;
        (addr, r)
    } else {
        // `ADDR: activating ipv4 penalty of …` (srclimit.c's own order)
        let (addr, r) = split_once(rest, b": activating ")?;
        (addr, r)
    };
    let (_, reason) = split_once(rest, b" for penalty: ")?;
    let (secs, _) = split_once(split_once(rest, b"penalty of ")?.1, b" seconds")?;
    Some(LoginEvent::Penalty {
        source: Source {
            addr: for_people(addr),
            port: None,
        },
        reason: format!("{} ({} s)", for_people(reason), for_people(secs)),
    })
}

/// `3 from [127.0.0.1]:40000 on [127.0.0.1]:22 penalty: failed authentication`.
fn dropped(rest: &[u8]) -> Option<LoginEvent> {
    let (_, rest) = split_once(rest, b" from [")?;
    let (addr, rest) = split_once(rest, b"]:")?;
    let (port, rest) = split_once(rest, b" on ")?;
    let (_, reason) = split_once(rest, b" penalty: ")?;
    Some(LoginEvent::Penalty {
        source: source(addr, port)?,
        reason: format!("connection refused: {}", for_people(reason)),
    })
}

fn split_at_byte(s: &[u8], b: u8) -> Option<(&[u8], &[u8])> {
    let at = s.iter().position(|&c| c == b)?;
    Some((&s[..at], &s[at + 1..]))
}

fn split_once<'a>(s: &'a [u8], needle: &[u8]) -> Option<(&'a [u8], &'a [u8])> {
    let at = s.windows(needle.len()).position(|w| w == needle)?;
    Some((&s[..at], &s[at + needle.len()..]))
}

fn rsplit_once<'a>(s: &'a [u8], needle: &[u8]) -> Option<(&'a [u8], &'a [u8])> {
    let at = s.windows(needle.len()).rposition(|w| w == needle)?;
    Some((&s[..at], &s[at + needle.len()..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src(addr: &str, port: u16) -> Source {
        Source {
            addr: addr.into(),
            port: Some(port),
        }
    }

    /// What OpenSSH 9.2 logged here (docs/history.md, "Logins").
    #[test]
    fn real_lines_of_openssh_9_2() {
        let fp = "ED25519 SHA256:qxVQGUcLopNYOep8GwEgtp1qYeby4jjSPp5EIRHIhoQ";
        assert_eq!(
            parse_message(
                format!("Accepted publickey for lgxu from 127.0.0.1 port 32784 ssh2: {fp}")
                    .as_bytes()
            ),
            Some(LoginEvent::Accepted {
                user: "lgxu".into(),
                method: "publickey".into(),
                source: src("127.0.0.1", 32784),
                key: Some(fp.into()),
            })
        );
        assert_eq!(
            parse_message(b"Accepted password for lgxu from 127.0.0.1 port 36868 ssh2"),
            Some(LoginEvent::Accepted {
                user: "lgxu".into(),
                method: "password".into(),
                source: src("127.0.0.1", 36868),
                key: None,
            })
        );
        assert_eq!(
            parse_message(
                b"Failed password for invalid user no such from 127.0.0.1 port 36860 ssh2"
            ),
            Some(LoginEvent::Failed {
                user: "no such".into(),
                invalid: true,
                method: "password".into(),
                source: src("127.0.0.1", 36860),
                key: None,
            })
        );
        assert!(matches!(
            parse_message(
                format!("Failed publickey for lgxu from 127.0.0.1 port 60980 ssh2: {fp}")
                    .as_bytes()
            ),
            Some(LoginEvent::Failed {
                invalid: false,
                key: Some(_),
                ..
            })
        ));
        assert_eq!(
            parse_message(b"Invalid user nosuchuser from 127.0.0.1 port 32774"),
            Some(LoginEvent::InvalidUser {
                user: "nosuchuser".into(),
                source: src("127.0.0.1", 32774)
            })
        );
        assert_eq!(
            parse_message(
                b"Connection closed by authenticating user lgxu 127.0.0.1 port 36850 [preauth]"
            ),
            Some(LoginEvent::Ended {
                user: "lgxu".into(),
                invalid: false,
                source: src("127.0.0.1", 36850),
                reason: "connection closed".into()
            })
        );
        assert!(matches!(
            parse_message(b"Connection closed by invalid user no such 127.0.0.1 port 36860 [preauth]"),
            Some(LoginEvent::Ended { invalid: true, ref user, .. }) if user == "no such"
        ));
        assert_eq!(
            parse_message(b"Disconnecting authenticating user lgxu 127.0.0.1 port 36880: Too many authentication failures [preauth]"),
            Some(LoginEvent::Ended {
                user: "lgxu".into(),
                invalid: false,
                source: src("127.0.0.1", 36880),
                reason: "Too many authentication failures".into()
            })
        );
        assert!(matches!(
            parse_message(b"error: maximum authentication attempts exceeded for lgxu from 127.0.0.1 port 36880 ssh2 [preauth]"),
            Some(LoginEvent::MaxTries { invalid: false, .. })
        ));
        // the end of an accepted session, and sshd's other lines, are no login events
        for m in [
            &b"Disconnected from user lgxu 127.0.0.1 port 36864"[..],
            b"Received disconnect from 127.0.0.1 port 36864:11: disconnected by user",
            b"Server listening on 127.0.0.1 port 2299.",
            b"Postponed publickey for lgxu from 127.0.0.1 port 32784 ssh2 [preauth]",
            b"Accepted key ED25519 SHA256:qxVQ found at /srv/ak/lgxu:1",
            b"Accepted password for invalid user x from 1.2.3.4 port 1 ssh2",
        ] {
            assert_eq!(parse_message(m), None, "{}", String::from_utf8_lossy(m));
        }
    }

    #[test]
    fn penalties_of_openssh_9_8() {
        assert_eq!(
            parse_message(b"srclimit_penalise: ipv4: new 192.0.2.7/32 active penalty of 30 seconds for penalty: failed authentication"),
            Some(LoginEvent::Penalty {
                source: Source { addr: "192.0.2.7/32".into(), port: None },
                reason: "failed authentication (30 s)".into()
            })
        );
        assert_eq!(
            parse_message(b"drop connection #0 from [192.0.2.7]:40312 on [192.0.2.1]:22 penalty: failed authentication"),
            Some(LoginEvent::Penalty {
                source: src("192.0.2.7", 40312),
                reason: "connection refused: failed authentication".into()
            })
        );
    }

    /// A remote client chooses an invalid user's name: it can say anything, but the source
    /// address and port at the end are sshd's.
    #[test]
    fn a_hostile_invalid_name_cannot_move_the_source_or_become_valid() {
        let m = b"Failed password for invalid user alice from 6.6.6.6 port 22 ssh2 from 127.0.0.1 port 5555 ssh2";
        assert_eq!(
            parse_message(m),
            Some(LoginEvent::Failed {
                user: "alice from 6.6.6.6 port 22 ssh2".into(),
                invalid: true,
                method: "password".into(),
                source: src("127.0.0.1", 5555),
                key: None,
            })
        );
        let m = b"Connection closed by invalid user x authenticating user alice 6.6.6.6 port 1 127.0.0.1 port 5555 [preauth]";
        assert!(matches!(parse_message(m),
            Some(LoginEvent::Ended { invalid: true, ref user, ref source, .. })
            if user == "x authenticating user alice 6.6.6.6 port 1" && source.addr == "127.0.0.1"));
        let m = b"Invalid user \\033[31mroot\\n from 127.0.0.1 port 5555";
        assert!(matches!(parse_message(m),
            Some(LoginEvent::InvalidUser { ref user, .. }) if !user.contains('\n') && !user.contains('\u{1b}')));
    }

    #[test]
    fn only_sshds_tags_are_login_lines() {
        let l = |tag: &str| {
            format!("2026-11-27T16:04:18.430882+00:00 vm [uid=0 pid=77 exe=/usr/sbin/sshd] {tag}: Invalid user x from 127.0.0.1 port 1")
        };
        for ok in ["sshd[77]", "sshd-session[77]"] {
            let (sender, line) = parse_login_line(l(ok).as_bytes(), 0).unwrap();
            assert_eq!(line.pid, 77);
            assert_eq!(
                sender,
                Sender::Kernel {
                    uid: 0,
                    pid: 77,
                    relayed: false
                }
            );
        }
        for bad in [
            "internal-sftp[77]",
            "sshd",
            "sshdx[77]",
            "sshd[7a]",
            "sshd[]",
        ] {
            assert_eq!(parse_login_line(l(bad).as_bytes(), 0), None, "{bad}");
        }
    }
}
