//! One log line → one [`Event`] of one SFTP session.
//!
//! Lines come as rsyslog's forward format (`<38>Nov 27 16:04:26 host internal-sftp[5900]: msg`)
//! or its file format (`2026-11-27T16:04:18.430882+00:00 host internal-sftp[5701]: msg`).
//! Names are quoted but `"` inside them is not escaped, so every message is read from its END:
//! the fixed suffix (`" bytes read N written M`, `" mode 0644`, …) is matched first and the
//! name is whatever lies between the fixed prefix and that suffix (a greedy name).

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::escape::for_people;
use super::time;

/// internal-sftp cuts messages at this many bytes; a message this long may have lost its end.
pub const MESSAGE_LIMIT: usize = 500;
/// Messages at least this long are not trusted: the cut may have shortened a number.
const MAYBE_CUT: usize = MESSAGE_LIMIT - 4;

/// Who sent a line, as far as the line can tell. rsyslog's `sftpctl` template puts the
/// kernel's credentials of the sender (imuxsock `Annotate` + `ParseTrusted`) between the host
/// and the tag: `TIME HOST [uid=1001 pid=5701 exe=/usr/sbin/sshd] internal-sftp[5701]: …`.
/// Nothing a sender writes can come before them (the exe path comes last: it is the only
/// field a sender chooses, by where its program lies).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sender {
    /// The uid and pid the kernel gave rsyslog (SCM_CREDENTIALS). `relayed`: the pid is
    /// systemd-journald's: journald forwards /dev/log to rsyslog with the sender's uid, and
    /// with its own pid when the sender has exited by then, so the pid says nothing.
    Kernel { uid: u32, pid: u32, relayed: bool },
    /// No credentials: a line in the old format, from UDP, or through a socket rsyslog does
    /// not annotate (the fields are then empty).
    Unverified,
}

/// A line that belongs to an SFTP session.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    /// Shared with the lines before it from the same host ([`host_name`]).
    pub host: Arc<str>,
    pub pid: u32,
    /// Unix seconds from the line's own timestamp, when it has one that parses.
    pub time: Option<i64>,
    /// Unix microseconds, when the timestamp has a fraction (or the watcher set the time of
    /// receipt): tells a failure of this request from one of an unlogged request after it.
    pub time_us: Option<i64>,
    pub event: Event,
}

/// What [`parse_line`] made of a line.
#[derive(Debug, Clone, PartialEq)]
pub enum Parsed {
    Sftp(Line),
    /// An internal-sftp line whose message is cut, garbled or unknown to this parser.
    Unreadable {
        host: Arc<str>,
        pid: u32,
        time: Option<i64>,
    },
    /// Not an internal-sftp line at all (other programs, comments, blank lines, garbage).
    Foreign,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenFlags {
    pub read: bool,
    pub write: bool,
    pub append: bool,
    pub create: bool,
    pub truncate: bool,
    pub excl: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Event {
    SessionOpened {
        user: String,
        client: String,
    },
    SessionClosed {
        user: String,
        client: String,
    },
    Open {
        path: String,
        flags: OpenFlags,
        mode: u32,
    },
    Close {
        path: String,
        read: u64,
        written: u64,
        forced: bool,
    },
    Opendir {
        path: String,
    },
    Closedir {
        path: String,
    },
    Remove {
        path: String,
    },
    Rmdir {
        path: String,
    },
    Mkdir {
        path: String,
        mode: u32,
    },
    /// `rename` (never replaces an existing name) or `posix-rename` (replaces it).
    Rename {
        old: String,
        new: String,
        #[serde(default)]
        posix: bool,
        /// A name contains `" new "`: the line cannot tell where `old` ends. `old` then holds
        /// both names as logged and `new` is empty.
        #[serde(default)]
        ambiguous: bool,
    },
    Symlink {
        old: String,
        new: String,
        #[serde(default)]
        ambiguous: bool,
    },
    Hardlink {
        old: String,
        new: String,
        #[serde(default)]
        ambiguous: bool,
    },
    SetSize {
        path: String,
        size: u64,
    },
    SetMode {
        path: String,
        mode: u32,
    },
    SetModtime {
        path: String,
    },
    SetOwner {
        path: String,
        uid: u64,
        gid: u64,
    },
    Statvfs {
        path: String,
    },
    /// `stat`/`lstat`/`realpath`/`readlink`, logged only with `internal-sftp -l VERBOSE`: not
    /// news for a report, but a failure after one belongs to it.
    Lookup {
        path: String,
    },
    /// `Refusing …`: internal-sftp's request lists or `-R` (the client's access mode or full
    /// quota, docs/policy.md) refused a request; a `sent status` follows for a request of the
    /// client, none for an extension left out of the hello.
    Refused {
        /// A name from sftp-server.c's handler tables (only those are parsed).
        request: String,
        reason: Refusal,
    },
    /// A failed request; it carries no path: it answers the previous request of that pid.
    SentStatus {
        status: String,
    },
    /// A message long enough that internal-sftp may have cut it (at 500 bytes): only its start
    /// is sure. `path` is the name as far as the line has it, perhaps all of it.
    Cut {
        request: CutRequest,
        path: String,
        /// What the whole line reads as when it still matches its format. Its end may be
        /// wrong: a cut just before an escaped byte leaves a line that looks whole.
        #[serde(default)]
        logged: Option<Box<Event>>,
    },
}

/// Why internal-sftp refused a request (its three `Refusing` messages).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Refusal {
    /// `-R`: `Refusing %s request in read-only mode`.
    ReadOnly,
    /// `-p`: `Refusing non-allowlisted %s request`.
    NotAllowListed,
    /// `-P`: `Refusing denylisted %s request`.
    DenyListed,
}

/// Every request name internal-sftp logs (sftp-server.c `handlers` and `extended_handlers`,
/// the same in OpenSSH 9.2 and 10.0).
pub const REQUEST_NAMES: &[&str] = &[
    "open",
    "close",
    "read",
    "write",
    "lstat",
    "fstat",
    "setstat",
    "fsetstat",
    "opendir",
    "readdir",
    "remove",
    "mkdir",
    "rmdir",
    "realpath",
    "stat",
    "rename",
    "readlink",
    "symlink",
    "posix-rename",
    "statvfs",
    "fstatvfs",
    "hardlink",
    "fsync",
    "lsetstat",
    "limits",
    "expand-path",
    "copy-data",
    "home-directory",
    "users-groups-by-id",
];

fn refusal(m: &[u8]) -> Option<Event> {
    let rest = m.strip_prefix(b"Refusing ")?;
    let (request, reason) = if let Some(r) = rest.strip_prefix(b"non-allowlisted ") {
        (r.strip_suffix(b" request")?, Refusal::NotAllowListed)
    } else if let Some(r) = rest.strip_prefix(b"denylisted ") {
        (r.strip_suffix(b" request")?, Refusal::DenyListed)
    } else {
        (
            rest.strip_suffix(b" request in read-only mode")?,
            Refusal::ReadOnly,
        )
    };
    let request = REQUEST_NAMES
        .iter()
        .find(|n| n.as_bytes() == request)?
        .to_string();
    Some(Event::Refused { request, reason })
}

/// Which request a cut line was, from the fixed start of its message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CutRequest {
    /// `writing`: the flags that survived name WRITE, CREATE, TRUNCATE or APPEND; `None` when
    /// the cut came before any flag.
    Open {
        writing: Option<bool>,
    },
    Close {
        forced: bool,
    },
    Remove,
    Rmdir,
    Mkdir,
    Rename {
        posix: bool,
    },
    Symlink,
    Hardlink,
    Set,
    /// opendir, closedir, statvfs, stat, lstat, realpath, readlink: not news.
    Lookup,
}

/// Parses one line (without its newline). `now` (Unix seconds) supplies the year that the
/// forward format leaves out. Never panics, whatever the bytes.
pub fn parse_line(raw: &[u8], now: i64) -> Parsed {
    parse_feed_line(raw, now).1
}

/// [`parse_line`], and who sent the line (see [`Sender`]).
pub fn parse_feed_line(raw: &[u8], now: i64) -> (Sender, Parsed) {
    let mut sender = Sender::Unverified;
    let parsed = parse_into(raw, now, &mut sender);
    (sender, parsed)
}

fn parse_into(raw: &[u8], now: i64, sender: &mut Sender) -> Parsed {
    let line = trim_end(raw);
    let Some(((time, time_us), host, from, tag, message)) = split_header(line, now) else {
        return Parsed::Foreign;
    };
    *sender = from;
    let (pid, message) = match sftp_pid(tag) {
        Some(pid) => (pid, message),
        // Fedora/RHEL log internal-sftp through sshd's monitor, suffixed ` [postauth]`.
        None => match (sshd_pid(tag), message.strip_suffix(b" [postauth]")) {
            (Some(pid), Some(inner)) if looks_like_sftp(inner) => (pid, inner),
            _ => return Parsed::Foreign,
        },
    };
    let host = host_name(host);
    let event = if message.len() >= MAYBE_CUT {
        parse_cut_message(message)
    } else {
        parse_message(message)
    };
    match event {
        Some(event) => Parsed::Sftp(Line {
            host,
            pid,
            time,
            time_us,
            event,
        }),
        None => Parsed::Unreadable { host, pid, time },
    }
}

/// The host name of a line, shared with the line before when it is the same (nearly always):
/// one allocation per host and thread instead of one per line.
fn host_name(raw: &[u8]) -> Arc<str> {
    thread_local! {
        static LAST: std::cell::RefCell<Option<Arc<str>>> = const { std::cell::RefCell::new(None) };
    }
    LAST.with_borrow_mut(|last| match last {
        Some(host) if host.as_bytes() == raw => Arc::clone(host),
        _ => {
            // from_utf8_lossy walks its chunk iterator even for a short ASCII name.
            let host: Arc<str> = match std::str::from_utf8(raw) {
                Ok(host) => host.into(),
                Err(_) => String::from_utf8_lossy(raw).into(),
            };
            *last = Some(Arc::clone(&host));
            host
        }
    })
}

fn trim_end(mut s: &[u8]) -> &[u8] {
    while let [rest @ .., b'\n' | b'\r' | b'\0'] = s {
        s = rest;
    }
    s
}

/// ((seconds, microseconds), host, sender, tag, message) of a syslog line.
pub(crate) type Header<'a> = (
    (Option<i64>, Option<i64>),
    &'a [u8],
    Sender,
    &'a [u8],
    &'a [u8],
);

/// `[<PRI>]TIMESTAMP HOST [[uid=U pid=P] ]TAG: MESSAGE` → (time, host, sender, tag, message).
pub(crate) fn split_header(line: &[u8], now: i64) -> Option<Header<'_>> {
    let mut rest = line;
    if let Some(after) = rest.strip_prefix(b"<") {
        let end = after.iter().take(4).position(|&b| b == b'>')?;
        if end == 0 || !after[..end].iter().all(u8::is_ascii_digit) {
            return None;
        }
        rest = &after[end + 1..];
    }
    let time;
    if rest.len() > 15 && rest[0].is_ascii_alphabetic() && rest[15] == b' ' {
        time = (Some(time::parse_traditional(&rest[..15], now)?), None);
        rest = &rest[16..];
    } else {
        // rsyslog's file format: a stamp of fixed width (`…T16:04:18.430882+00:00 `), taken
        // without a search. One that parses with a `T` holds no space: the search would have
        // found this end.
        let fixed = match rest.get(32) {
            Some(b' ') if rest[10] == b'T' => {
                time::parse_rfc3339_micros(&rest[..32]).map(|t| (t, &rest[33..]))
            }
            _ => None,
        };
        let ((secs, micros), after) = match fixed {
            Some(found) => found,
            None => {
                let (stamp, after) = split_once(rest, b" ")?;
                (time::parse_rfc3339_micros(stamp)?, after)
            }
        };
        time = (
            Some(secs),
            micros.map(|us| secs.saturating_mul(1_000_000) + i64::from(us)),
        );
        rest = after;
    }
    let (host, rest) = split_once(rest, b" ")?;
    let (sender, rest) = split_sender(rest)?;
    let (tag, message) = split_once(rest, b": ")?;
    if host.is_empty() {
        return None;
    }
    Some((time, host, sender, tag, message))
}

/// Where Debian and Ubuntu (with and without the /usr merge) install systemd-journald; only
/// root can put a program there.
const JOURNALD: [&[u8]; 2] = [
    b"/usr/lib/systemd/systemd-journald",
    b"/lib/systemd/systemd-journald",
];

/// The credentials block `[uid=U pid=P exe=PATH] ` in front of the tag, when there is one. Empty or
/// garbled fields (a socket rsyslog does not annotate) are [`Sender::Unverified`]; a block
/// that is not closed makes the line unreadable as a whole (`None`).
fn split_sender(rest: &[u8]) -> Option<(Sender, &[u8])> {
    let Some(after) = rest.strip_prefix(b"[uid=") else {
        return Some((Sender::Unverified, rest));
    };
    let (fields, rest) = split_once(after, b"] ")?;
    let (uid, fields) = split_once(fields, b" pid=")?;
    let (pid, exe) = split_once(fields, b" exe=").unwrap_or((fields, b""));
    let id = |s: &[u8]| number(s).and_then(|n| u32::try_from(n).ok());
    let sender = match (id(uid), id(pid)) {
        (Some(uid), Some(pid)) => Sender::Kernel {
            uid,
            pid,
            relayed: JOURNALD.contains(&exe),
        },
        _ => Sender::Unverified,
    };
    Some((sender, rest))
}

fn bracketed_pid(tag: &[u8], program: &[u8]) -> Option<u32> {
    let inner = tag
        .strip_prefix(program)?
        .strip_prefix(b"[")?
        .strip_suffix(b"]")?;
    number(inner).and_then(|n| u32::try_from(n).ok())
}

fn sftp_pid(tag: &[u8]) -> Option<u32> {
    bracketed_pid(tag, b"internal-sftp")
}

/// sshd's tag; OpenSSH >= 9.8 logs a connection's lines from `sshd-session`.
fn sshd_pid(tag: &[u8]) -> Option<u32> {
    bracketed_pid(tag, b"sshd").or_else(|| bracketed_pid(tag, b"sshd-session"))
}

fn looks_like_sftp(message: &[u8]) -> bool {
    parse_message(message).is_some()
}

fn split_once<'a>(s: &'a [u8], needle: &[u8]) -> Option<(&'a [u8], &'a [u8])> {
    let at = find(s, needle)?;
    Some((&s[..at], &s[at + needle.len()..]))
}

fn rsplit_once<'a>(s: &'a [u8], needle: &[u8]) -> Option<(&'a [u8], &'a [u8])> {
    let at = rfind(s, needle)?;
    Some((&s[..at], &s[at + needle.len()..]))
}

// memchr's vectorised search for the needle's first byte: every line is split at a few
// separators, and a byte-by-byte window compare was a tenth of the parse. (memmem's finders
// cost more to set up than these short lines take to scan.)
fn find(s: &[u8], needle: &[u8]) -> Option<usize> {
    let (&first, tail) = needle.split_first()?;
    memchr::memchr_iter(first, s).find(|&at| s[at + 1..].starts_with(tail))
}

fn rfind(s: &[u8], needle: &[u8]) -> Option<usize> {
    let (&first, tail) = needle.split_first()?;
    memchr::memrchr_iter(first, s).find(|&at| s[at + 1..].starts_with(tail))
}

/// A decimal number that fits u64 (no sign, no spaces).
fn number(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 20 || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    s.iter().try_fold(0u64, |acc, d| {
        acc.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

/// An octal mode as sftp-server prints it (`0644`, `0100644`).
fn octal(s: &[u8]) -> Option<u32> {
    if s.is_empty() || s.len() > 11 || !s.iter().all(|b| (b'0'..=b'7').contains(b)) {
        return None;
    }
    s.iter().try_fold(0u32, |acc, d| {
        acc.checked_mul(8)?.checked_add(u32::from(d - b'0'))
    })
}

/// The digits at the very end of `s` and what precedes them.
fn trailing_number(s: &[u8]) -> Option<(&[u8], u64)> {
    let n = s.iter().rev().take_while(|b| b.is_ascii_digit()).count();
    let (head, digits) = s.split_at(s.len() - n);
    Some((head, number(digits)?))
}

fn name(raw: &[u8]) -> String {
    common_name(raw).unwrap_or_else(|| for_people(raw))
}

/// [`for_people`] of the names nearly every line carries, in one pass: printable ASCII, `\\`,
/// and Latin-1 letters as internal-sftp logs them (`\303\251`, é), which decode to text that
/// needs nothing shown differently. `None` for anything else (the full decoding then).
fn common_name(raw: &[u8]) -> Option<String> {
    let mut out = Vec::with_capacity(raw.len());
    let mut rest = raw;
    loop {
        let run = memchr::memchr(b'\\', rest).unwrap_or(rest.len());
        // Without an early exit, so that it is done 32 bytes at a time.
        let printable = rest[..run]
            .iter()
            .fold(true, |all, &b| all & (b.wrapping_sub(0x20) < 0x5f));
        if !printable {
            return None;
        }
        out.extend_from_slice(&rest[..run]);
        rest = &rest[run..];
        match rest {
            [] => break,
            [b'\\', b'\\', tail @ ..] => {
                out.push(b'\\');
                rest = tail;
            }
            [b'\\', b'3', b'0', b'3', b'\\', b'2', d1 @ b'0'..=b'7', d2 @ b'0'..=b'7', tail @ ..] =>
            {
                out.extend_from_slice(&[0xC3, 0x80 + (d1 - b'0') * 8 + (d2 - b'0')]);
                rest = tail;
            }
            _ => return None,
        }
    }
    debug_assert!(std::str::from_utf8(&out).is_ok());
    // SAFETY: `out` holds printable ASCII, and pairs 0xC3 0x80..=0xBF (U+00C0..=U+00FF, as
    // built above): valid UTF-8. Checking it again was a twentieth of the parse.
    Some(unsafe { String::from_utf8_unchecked(out) })
}

/// `"NAME"` up to the end of the message.
fn quoted_to_end(rest: &[u8]) -> Option<String> {
    Some(name(rest.strip_suffix(b"\"")?))
}

/// `OLD" new "NEW"` (the rest after `old "`) → (old, new, ambiguous). A name may contain
/// `" new "`: when the first and the last such separator differ, the line fits more than one
/// split, and (both names as logged, "", true) is returned instead of a guess.
fn old_new(rest: &[u8]) -> Option<(String, String, bool)> {
    const SEPARATOR: &[u8] = b"\" new \"";
    let inner = rest.strip_suffix(b"\"")?;
    let first = find(inner, SEPARATOR)?;
    let last = rfind(inner, SEPARATOR)?;
    if first != last {
        return Some((name(inner), String::new(), true));
    }
    let (old, new) = (&inner[..first], &inner[first + SEPARATOR.len()..]);
    Some((name(old), name(new), false))
}

fn user_from(rest: &[u8]) -> Option<(String, String)> {
    let (user, client) = rsplit_once(rest.strip_suffix(b"]")?, b" from [")?;
    if user.is_empty() {
        return None;
    }
    Some((name(user), name(client)))
}

fn flags(s: &[u8]) -> Option<OpenFlags> {
    let mut f = OpenFlags::default();
    if s.is_empty() {
        return Some(f);
    }
    for word in s.split(|&b| b == b',') {
        match word {
            b"READ" => f.read = true,
            b"WRITE" => f.write = true,
            b"APPEND" => f.append = true,
            b"CREATE" => f.create = true,
            b"TRUNCATE" => f.truncate = true,
            b"EXCL" => f.excl = true,
            _ => return None,
        }
    }
    Some(f)
}

/// The message after `internal-sftp[PID]: `; `None` when it is none of the known formats.
pub fn parse_message(m: &[u8]) -> Option<Event> {
    if let Some(rest) = m.strip_prefix(b"close \"") {
        return close(rest, false);
    }
    if let Some(rest) = m.strip_prefix(b"forced close \"") {
        return close(rest, true);
    }
    if let Some(rest) = m.strip_prefix(b"open \"") {
        let (head, mode) = rsplit_once(rest, b" mode ")?;
        let (path, flag_text) = rsplit_once(head, b"\" flags ")?;
        return Some(Event::Open {
            path: name(path),
            flags: flags(flag_text)?,
            mode: octal(mode)?,
        });
    }
    if let Some(rest) = m.strip_prefix(b"session opened for local user ") {
        let (user, client) = user_from(rest)?;
        return Some(Event::SessionOpened { user, client });
    }
    if let Some(rest) = m.strip_prefix(b"session closed for local user ") {
        let (user, client) = user_from(rest)?;
        return Some(Event::SessionClosed { user, client });
    }
    if m.starts_with(b"Refusing ") {
        return refusal(m);
    }
    if let Some(rest) = m.strip_prefix(b"sent status ") {
        if rest.is_empty() {
            return None;
        }
        return Some(Event::SentStatus { status: name(rest) });
    }
    if let Some(rest) = m.strip_prefix(b"opendir \"") {
        return Some(Event::Opendir {
            path: quoted_to_end(rest)?,
        });
    }
    if let Some(rest) = m.strip_prefix(b"closedir \"") {
        return Some(Event::Closedir {
            path: quoted_to_end(rest)?,
        });
    }
    if let Some(rest) = m.strip_prefix(b"remove name \"") {
        return Some(Event::Remove {
            path: quoted_to_end(rest)?,
        });
    }
    if let Some(rest) = m.strip_prefix(b"rmdir name \"") {
        return Some(Event::Rmdir {
            path: quoted_to_end(rest)?,
        });
    }
    if let Some(rest) = m.strip_prefix(b"mkdir name \"") {
        let (path, mode) = rsplit_once(rest, b"\" mode ")?;
        return Some(Event::Mkdir {
            path: name(path),
            mode: octal(mode)?,
        });
    }
    for (prefix, posix) in [
        (&b"rename old \""[..], false),
        (b"posix-rename old \"", true),
    ] {
        if let Some(rest) = m.strip_prefix(prefix) {
            let (old, new, ambiguous) = old_new(rest)?;
            return Some(Event::Rename {
                old,
                new,
                posix,
                ambiguous,
            });
        }
    }
    if let Some(rest) = m.strip_prefix(b"symlink old \"") {
        let (old, new, ambiguous) = old_new(rest)?;
        return Some(Event::Symlink {
            old,
            new,
            ambiguous,
        });
    }
    if let Some(rest) = m.strip_prefix(b"hardlink old \"") {
        let (old, new, ambiguous) = old_new(rest)?;
        return Some(Event::Hardlink {
            old,
            new,
            ambiguous,
        });
    }
    if let Some(rest) = m.strip_prefix(b"statvfs \"") {
        return Some(Event::Statvfs {
            path: quoted_to_end(rest)?,
        });
    }
    if let Some(rest) = m.strip_prefix(b"set \"") {
        return set(rest);
    }
    for prefix in [
        &b"stat name \""[..],
        b"lstat name \"",
        b"realpath \"",
        b"readlink \"",
    ] {
        if let Some(rest) = m.strip_prefix(prefix) {
            return Some(Event::Lookup {
                path: quoted_to_end(rest)?,
            });
        }
    }
    // Other lines of `-l VERBOSE` (seen on OpenSSH 9.2): the protocol hello and the
    // users-groups-by-id extension. Not news; a failure after them would be theirs.
    if m.starts_with(b"received client version ") || m.starts_with(b"users-groups-by-id: ") {
        return Some(Event::Lookup {
            path: String::new(),
        });
    }
    None
}

/// A message that may have been cut at [`MESSAGE_LIMIT`]: what its fixed start says, the name
/// as far as it goes, and the whole reading when the line still matches its format. `None`
/// for messages whose start is none of the requests that name a file (session lines and
/// status lines are short: a long one is garbage).
pub fn parse_cut_message(m: &[u8]) -> Option<Event> {
    const STARTS: [(&[u8], CutRequest); 16] = [
        (b"open \"", CutRequest::Open { writing: None }),
        (b"close \"", CutRequest::Close { forced: false }),
        (b"forced close \"", CutRequest::Close { forced: true }),
        (b"remove name \"", CutRequest::Remove),
        (b"rmdir name \"", CutRequest::Rmdir),
        (b"mkdir name \"", CutRequest::Mkdir),
        (b"rename old \"", CutRequest::Rename { posix: false }),
        (b"posix-rename old \"", CutRequest::Rename { posix: true }),
        (b"symlink old \"", CutRequest::Symlink),
        (b"hardlink old \"", CutRequest::Hardlink),
        (b"set \"", CutRequest::Set),
        (b"opendir \"", CutRequest::Lookup),
        (b"closedir \"", CutRequest::Lookup),
        (b"statvfs \"", CutRequest::Lookup),
        (b"stat name \"", CutRequest::Lookup),
        (b"lstat name \"", CutRequest::Lookup),
    ];
    let (mut request, rest) = STARTS
        .iter()
        .find_map(|(start, req)| m.strip_prefix(*start).map(|rest| (*req, rest)))
        .or_else(|| {
            [&b"realpath \""[..], b"readlink \""]
                .iter()
                .find_map(|start| m.strip_prefix(*start))
                .map(|rest| (CutRequest::Lookup, rest))
        })?;
    let logged = parse_message(m);
    let path = match &logged {
        Some(
            Event::Open { path, .. }
            | Event::Close { path, .. }
            | Event::Remove { path }
            | Event::Rmdir { path }
            | Event::Mkdir { path, .. }
            | Event::SetSize { path, .. }
            | Event::SetMode { path, .. }
            | Event::SetModtime { path }
            | Event::SetOwner { path, .. }
            | Event::Opendir { path }
            | Event::Closedir { path }
            | Event::Statvfs { path }
            | Event::Lookup { path },
        ) => path.clone(),
        Some(
            Event::Rename { old, .. } | Event::Symlink { old, .. } | Event::Hardlink { old, .. },
        ) => old.clone(),
        _ => name(cut_name(rest)),
    };
    if let CutRequest::Open { writing } = &mut request {
        *writing = match &logged {
            Some(Event::Open { flags, .. }) => {
                Some(flags.write || flags.append || flags.create || flags.truncate)
            }
            _ => surviving_open_flags(rest),
        };
    }
    Some(Event::Cut {
        request,
        path,
        logged: logged.map(Box::new),
    })
}

/// The name part of a cut message: up to the last `"` when the fixed text after the name may
/// follow it (`" flags`, `" bytes read`, `" new "`…), else all of it. A trailing partial octal
/// escape (`\30`) is dropped.
fn cut_name(rest: &[u8]) -> &[u8] {
    let mut end = rest.len();
    for marker in [
        &b"\" flags"[..],
        b"\" bytes read",
        b"\" new \"",
        b"\" mode ",
        b"\" size ",
        b"\" owner ",
        b"\" modtime ",
    ] {
        if let Some(at) = rfind(rest, marker) {
            end = end.min(at);
        }
    }
    let mut name = &rest[..end];
    // The cut may split an escape (`\30`: seen with OpenSSH 9.2) ...
    if let Some(at) = name.iter().rposition(|&b| b == b'\\') {
        let tail = &name[at + 1..];
        if tail.len() < 3 && tail.iter().all(|b| (b'0'..=b'7').contains(b)) {
            name = &name[..at];
        }
    }
    // ... or a character: `\303` without the `\234` that makes it `Ü`.
    let mut escaped = Vec::new();
    let mut at = name.len();
    while escaped.len() < 3 && at >= 4 && name[at - 4] == b'\\' {
        match octal(&name[at - 3..at]) {
            Some(v) if v <= 0xff => escaped.push(v as u8),
            _ => break,
        }
        at -= 4;
    }
    // `escaped` holds the last bytes, newest first: drop a lead byte whose continuation
    // bytes were cut away, and those that came after it.
    for (i, &b) in escaped.iter().enumerate() {
        let needed = match b {
            0xc0..=0xdf => 1,
            0xe0..=0xef => 2,
            0xf0..=0xf7 => 3,
            _ => continue,
        };
        if i < needed {
            name = &name[..name.len() - 4 * (i + 1)];
        }
        break;
    }
    name
}

/// Whether the flags left in a cut `open` line say writing: `Some(true)` when a whole flag word
/// WRITE/CREATE/TRUNCATE/APPEND survived, `Some(false)` when READ and nothing else survived
/// before the mode, `None` when too little is left to tell.
fn surviving_open_flags(rest: &[u8]) -> Option<bool> {
    let (_, after) = rsplit_once(rest, b"\" flags ")?;
    let complete = find(after, b" mode ").map(|at| &after[..at]);
    let words = complete.unwrap_or(after);
    let mut seen_read = false;
    let all: Vec<&[u8]> = words.split(|&b| b == b',').collect();
    for (i, word) in all.iter().enumerate() {
        // Without the mode after them, the last word may be a cut one (`CREA`).
        let whole = complete.is_some() || i + 1 < all.len();
        match *word {
            b"WRITE" | b"CREATE" | b"TRUNCATE" | b"APPEND" if whole => return Some(true),
            b"READ" if whole => seen_read = true,
            _ => {}
        }
    }
    (complete.is_some() && seen_read).then_some(false)
}

/// `NAME" bytes read R written W` (after `close "`).
fn close(rest: &[u8], forced: bool) -> Option<Event> {
    let (head, written) = trailing_number(rest)?;
    let head = head.strip_suffix(b" written ")?;
    let (head, read) = trailing_number(head)?;
    let path = head.strip_suffix(b"\" bytes read ")?;
    Some(Event::Close {
        path: name(path),
        read,
        written,
        forced,
    })
}

/// `NAME" size N` | `" mode 0NNN` | `" modtime YYYYmmdd-HH:MM:SS` | `" owner U group G`.
fn set(rest: &[u8]) -> Option<Event> {
    if let Some((head, gid)) = trailing_number(rest) {
        if let Some(head) = head.strip_suffix(b" group ") {
            let (head, uid) = trailing_number(head)?;
            let path = head.strip_suffix(b"\" owner ")?;
            return Some(Event::SetOwner {
                path: name(path),
                uid,
                gid,
            });
        }
    }
    let (head, value) = rsplit_once(rest, b" ")?;
    let (path, key) = rsplit_once(head, b"\" ")?;
    let path = name(path);
    match key {
        b"size" => Some(Event::SetSize {
            path,
            size: number(value)?,
        }),
        b"mode" => Some(Event::SetMode {
            path,
            mode: octal(value)?,
        }),
        b"modtime" if is_modtime(value) => Some(Event::SetModtime { path }),
        _ => None,
    }
}

fn is_modtime(v: &[u8]) -> bool {
    v.len() == 17 && v[8] == b'-' && v[..8].iter().all(u8::is_ascii_digit)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_796_000_000; // 2026-11-30

    fn event(line: &str) -> Event {
        match parse_line(line.as_bytes(), NOW) {
            Parsed::Sftp(l) => l.event,
            other => panic!("{line}: {other:?}"),
        }
    }

    fn msg(m: &str) -> Option<Event> {
        parse_message(m.as_bytes())
    }

    #[test]
    fn refusals_of_known_requests_only() {
        let r = |request: &str, reason| {
            Some(Event::Refused {
                request: request.into(),
                reason,
            })
        };
        assert_eq!(
            msg("Refusing non-allowlisted opendir request"),
            r("opendir", Refusal::NotAllowListed)
        );
        assert_eq!(
            msg("Refusing denylisted write request"),
            r("write", Refusal::DenyListed)
        );
        assert_eq!(
            msg("Refusing open request in read-only mode"),
            r("open", Refusal::ReadOnly)
        );
        assert_eq!(
            msg("Refusing posix-rename request in read-only mode"),
            r("posix-rename", Refusal::ReadOnly)
        );
        for bad in [
            "Refusing non-allowlisted evil\nline request",
            "Refusing non-allowlisted  request",
            "Refusing denylisted write request now",
            "Refusing open request",
            "Refusing nothing",
        ] {
            assert_eq!(msg(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn reads_both_header_formats() {
        let Parsed::Sftp(a) = parse_line(
            b"<38>Nov 27 16:04:26 vm internal-sftp[5900]: session opened for local user alice from [127.0.0.1]",
            NOW,
        ) else {
            panic!()
        };
        assert_eq!((&*a.host, a.pid), ("vm", 5900));
        assert_eq!(
            crate::tz::rfc3339_utc(a.time.unwrap()),
            "2026-11-27T16:04:26Z"
        );
        let Parsed::Sftp(b) = parse_line(
            b"2026-11-27T16:04:18.430882+00:00 vm internal-sftp[5701]: session opened for local user alice from [127.0.0.1]\n",
            NOW,
        ) else {
            panic!()
        };
        assert_eq!((&*b.host, b.pid), ("vm", 5701));
        assert_eq!(
            b.event,
            Event::SessionOpened {
                user: "alice".into(),
                client: "127.0.0.1".into()
            }
        );
    }

    #[test]
    fn every_message_format_of_facts_md() {
        let cases: Vec<(&str, Event)> = vec![
            (
                "session closed for local user bob from [::1]",
                Event::SessionClosed {
                    user: "bob".into(),
                    client: "::1".into(),
                },
            ),
            (
                "open \"/data/a\" flags WRITE,CREATE,TRUNCATE mode 0644",
                Event::Open {
                    path: "/data/a".into(),
                    flags: OpenFlags {
                        write: true,
                        create: true,
                        truncate: true,
                        ..Default::default()
                    },
                    mode: 0o644,
                },
            ),
            (
                "open \"/data/a\" flags  mode 0666",
                Event::Open {
                    path: "/data/a".into(),
                    flags: OpenFlags::default(),
                    mode: 0o666,
                },
            ),
            (
                "open \"/data/a\" flags READ,WRITE,APPEND,EXCL mode 0600",
                Event::Open {
                    path: "/data/a".into(),
                    flags: OpenFlags {
                        read: true,
                        write: true,
                        append: true,
                        excl: true,
                        ..Default::default()
                    },
                    mode: 0o600,
                },
            ),
            (
                "close \"/data/a\" bytes read 0 written 12",
                Event::Close {
                    path: "/data/a".into(),
                    read: 0,
                    written: 12,
                    forced: false,
                },
            ),
            (
                "forced close \"/data/a\" bytes read 0 written 1827840",
                Event::Close {
                    path: "/data/a".into(),
                    read: 0,
                    written: 1_827_840,
                    forced: true,
                },
            ),
            (
                "opendir \"/data\"",
                Event::Opendir {
                    path: "/data".into(),
                },
            ),
            (
                "closedir \"/data\"",
                Event::Closedir {
                    path: "/data".into(),
                },
            ),
            (
                "remove name \"/data/x\"",
                Event::Remove {
                    path: "/data/x".into(),
                },
            ),
            (
                "rmdir name \"/data/d\"",
                Event::Rmdir {
                    path: "/data/d".into(),
                },
            ),
            (
                "mkdir name \"/data/d\" mode 0777",
                Event::Mkdir {
                    path: "/data/d".into(),
                    mode: 0o777,
                },
            ),
            (
                "rename old \"/data/a\" new \"/data/b\"",
                Event::Rename {
                    old: "/data/a".into(),
                    new: "/data/b".into(),
                    posix: false,
                    ambiguous: false,
                },
            ),
            (
                "posix-rename old \"/data/a\" new \"/data/b\"",
                Event::Rename {
                    old: "/data/a".into(),
                    new: "/data/b".into(),
                    posix: true,
                    ambiguous: false,
                },
            ),
            (
                "symlink old \"a\" new \"/data/s\"",
                Event::Symlink {
                    old: "a".into(),
                    new: "/data/s".into(),
                    ambiguous: false,
                },
            ),
            (
                "hardlink old \"/data/a\" new \"/data/h\"",
                Event::Hardlink {
                    old: "/data/a".into(),
                    new: "/data/h".into(),
                    ambiguous: false,
                },
            ),
            (
                "set \"/data/a\" size 100",
                Event::SetSize {
                    path: "/data/a".into(),
                    size: 100,
                },
            ),
            (
                "set \"/data/a\" mode 0600",
                Event::SetMode {
                    path: "/data/a".into(),
                    mode: 0o600,
                },
            ),
            (
                "set \"/data/a\" modtime 20261127-16:04:00",
                Event::SetModtime {
                    path: "/data/a".into(),
                },
            ),
            (
                "set \"/data/a\" owner 0 group 1001",
                Event::SetOwner {
                    path: "/data/a".into(),
                    uid: 0,
                    gid: 1001,
                },
            ),
            (
                "statvfs \"/data\"",
                Event::Statvfs {
                    path: "/data".into(),
                },
            ),
            (
                "sent status Permission denied",
                Event::SentStatus {
                    status: "Permission denied".into(),
                },
            ),
            (
                "sent status No such file",
                Event::SentStatus {
                    status: "No such file".into(),
                },
            ),
            (
                "sent status Failure",
                Event::SentStatus {
                    status: "Failure".into(),
                },
            ),
        ];
        for (m, want) in cases {
            assert_eq!(msg(m), Some(want), "{m}");
        }
    }

    #[test]
    fn verbose_only_lines_are_known() {
        for m in [
            "realpath \".\"",
            "lstat name \"/data/x\"",
            "received client version 3",
            "users-groups-by-id: 4 users, 0 groups",
        ] {
            assert!(matches!(msg(m), Some(Event::Lookup { .. })), "{m}");
        }
    }

    #[test]
    fn quote_in_name_reads_counts_from_the_end() {
        let e = event(
            r#"<38>Nov 27 16:04:26 vm internal-sftp[5900]: close "/data/quo"te bytes read 0 written 999.txt" bytes read 0 written 12"#,
        );
        assert_eq!(
            e,
            Event::Close {
                path: r#"/data/quo"te bytes read 0 written 999.txt"#.into(),
                read: 0,
                written: 12,
                forced: false
            }
        );
        let e = event(
            r#"<38>Nov 27 16:04:26 vm internal-sftp[5900]: open "/data/quo"te bytes read 0 written 999.txt" flags WRITE,CREATE,TRUNCATE mode 0644"#,
        );
        assert!(
            matches!(e, Event::Open { ref path, .. } if path == r#"/data/quo"te bytes read 0 written 999.txt"#)
        );
        assert_eq!(
            msg(r#"remove name "/data/a" b""#),
            Some(Event::Remove {
                path: r#"/data/a" b"#.into()
            })
        );
        assert_eq!(
            msg(r#"set "/data/x" mode 0644" mode 0600"#),
            Some(Event::SetMode {
                path: r#"/data/x" mode 0644"#.into(),
                mode: 0o600
            })
        );
    }

    #[test]
    fn octal_names_are_decoded() {
        let e = event(
            r#"2026-11-27T16:19:21.430050+00:00 vm internal-sftp[32591]: close "/data/\303\234bersicht 2026.pdf" bytes read 0 written 12"#,
        );
        assert!(
            matches!(e, Event::Close { ref path, written: 12, .. } if path == "/data/Übersicht 2026.pdf")
        );
        assert_eq!(
            msg(r#"remove name "/data/tab\there\nnl\\bs""#),
            Some(Event::Remove {
                path: r"/data/tab\there\nnl\bs".into()
            })
        );
    }

    fn cut(line: &str) -> Event {
        let line = &line[..line.find(": ").unwrap() + 2 + MESSAGE_LIMIT - 1];
        event(line)
    }

    #[test]
    fn cut_messages_keep_what_their_start_says_and_no_number() {
        let long = "a".repeat(470);
        let full = format!("<38>Nov 27 16:04:26 vm internal-sftp[7]: close \"/data/{long}\" bytes read 0 written 1234567");
        match cut(&full) {
            Event::Cut {
                request: CutRequest::Close { forced: false },
                path,
                logged: None,
            } => assert_eq!(path, format!("/data/{long}")),
            other => panic!("{other:?}"),
        }
        // Cut inside the digits: the line still reads as a close, but the whole reading is
        // only kept as "as logged", never trusted as the real count.
        let e = event(&full[..full.len() - 3]);
        assert!(
            matches!(&e, Event::Cut { logged: Some(l), .. } if matches!(**l, Event::Close { written: 1234, .. })),
            "{e:?}"
        );
        let line = format!(
            "<38>Nov 27 16:04:26 vm internal-sftp[7]: remove name \"/data/{}",
            "b".repeat(600)
        );
        assert!(matches!(
            cut(&line),
            Event::Cut { request: CutRequest::Remove, ref path, .. } if path.len() == MESSAGE_LIMIT - 1 - 13
        ));
        // Open flags that survive tell an upload from a download.
        let open = |name: &str, flags: &str| {
            format!("<38>Nov 27 16:04:26 vm internal-sftp[7]: open \"/data/{name}\" flags {flags} mode 0644")
        };
        let writing = |e: Event| match e {
            Event::Cut {
                request: CutRequest::Open { writing },
                ..
            } => writing,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            writing(cut(&open(&"c".repeat(470), "WRITE,CREATE,TRUNCATE"))),
            Some(true)
        );
        assert_eq!(
            writing(cut(&open(&"c".repeat(480), "WRITE,CREATE,TRUNCATE"))),
            None
        );
        assert_eq!(
            writing(cut(&open(&"c".repeat(486), "WRITE,CREATE,TRUNCATE"))),
            None
        );
        assert_eq!(writing(event(&open(&"c".repeat(470), "READ"))), Some(false));
        // A cut in the middle of an escaped character leaves no U+FFFD behind.
        let line = format!(
            "<38>Nov 27 16:04:26 vm internal-sftp[7]: remove name \"/data/{}",
            r"\303\234".repeat(70)
        );
        match cut(&line) {
            Event::Cut { path, .. } => {
                assert!(path.ends_with('Ü') && !path.contains('\u{fffd}'), "{path}")
            }
            other => panic!("{other:?}"),
        }
        // A message of another kind that is this long is garbage.
        let line = format!(
            "<38>Nov 27 16:04:26 vm internal-sftp[7]: sent status {}",
            "x".repeat(600)
        );
        assert!(matches!(
            parse_line(line.as_bytes(), NOW),
            Parsed::Unreadable { .. }
        ));
    }

    #[test]
    fn a_name_holding_the_separator_makes_a_rename_ambiguous() {
        assert_eq!(
            msg(r#"posix-rename old "/data/a" new "/data/b" new "/data/c""#),
            Some(Event::Rename {
                old: r#"/data/a" new "/data/b" new "/data/c"#.into(),
                new: String::new(),
                posix: true,
                ambiguous: true,
            })
        );
        // One separator: unambiguous, whatever other quotes the names hold.
        assert_eq!(
            msg(r#"rename old "/data/q"x" new "/data/y"z""#),
            Some(Event::Rename {
                old: r#"/data/q"x"#.into(),
                new: r#"/data/y"z"#.into(),
                posix: false,
                ambiguous: false,
            })
        );
    }

    #[test]
    fn malformed_messages_are_unreadable() {
        for m in [
            "close \"/data/a\" bytes read x written 1",
            "close \"/data/a\" bytes read 1 written",
            "close \"/data/a\" bytes read 1 written 99999999999999999999999",
            "open \"/data/a\" flags BOGUS mode 0644",
            "open \"/data/a\" flags READ mode 0999",
            "mkdir name \"/x\"",
            "rename old \"/a\" to \"/b\"",
            "set \"/a\" colour blue",
            "session opened for local user  from [x]",
            "sent status ",
            "something new",
        ] {
            assert_eq!(msg(m), None, "{m}");
        }
        assert!(matches!(
            parse_line(
                b"2026-11-27T16:04:18+00:00 vm internal-sftp[1]: close \"x",
                NOW
            ),
            Parsed::Unreadable { pid: 1, .. }
        ));
    }

    #[test]
    fn other_lines_are_foreign() {
        for l in [
            "",
            "# comment",
            "<38>Nov 27 16:04:26 vm sshd[5900]: Accepted publickey for alice",
            "2026-11-27T16:04:18+00:00 vm internal-sftp[x]: remove name \"/a\"",
            "2026-11-27T16:04:18+00:00 vm internal-sftp[99999999999]: remove name \"/a\"",
            "2026-11-27T16:04:18+00:00 vm internal-sftp: remove name \"/a\"",
            "garbage internal-sftp[1]: remove name \"/a\"",
            "<999999>Nov 27 16:04:26 vm internal-sftp[1]: remove name \"/a\"",
        ] {
            assert_eq!(parse_line(l.as_bytes(), NOW), Parsed::Foreign, "{l}");
        }
    }

    #[test]
    fn rhel_postauth_lines() {
        let e = event("2026-11-27T16:04:18+00:00 vm sshd[42]: remove name \"/data/x\" [postauth]");
        assert_eq!(
            e,
            Event::Remove {
                path: "/data/x".into()
            }
        );
        assert_eq!(
            parse_line(
                b"2026-11-27T16:04:18+00:00 vm sshd[42]: Received disconnect [postauth]",
                NOW
            ),
            Parsed::Foreign
        );
        // Fedora >= 41 (OpenSSH >= 9.8): the same monitor lines come from sshd-session.
        let e = event(
            "2026-11-27T16:04:18+00:00 vm sshd-session[42]: remove name \"/data/x\" [postauth]",
        );
        assert_eq!(
            e,
            Event::Remove {
                path: "/data/x".into()
            }
        );
    }

    fn capture_lines(name: &str) -> Vec<String> {
        let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn every_capture_line_parses() {
        for file in [
            "openssh-9.2-rsyslog-file.log",
            "openssh-9.2-udp-forward.txt",
        ] {
            let lines = capture_lines(file);
            assert!(!lines.is_empty());
            for l in lines {
                assert!(
                    matches!(parse_line(l.as_bytes(), NOW), Parsed::Sftp(_)),
                    "{file}: {l}"
                );
            }
        }
    }

    #[test]
    fn the_shared_host_name_is_always_the_lines_own() {
        let host = |line: &str| match parse_line(line.as_bytes(), NOW) {
            Parsed::Sftp(l) => l.host.to_string(),
            Parsed::Unreadable { host, .. } => host.to_string(),
            Parsed::Foreign => String::new(),
        };
        let line =
            |h: &str| format!("2026-11-27T16:04:18Z {h} internal-sftp[1]: remove name \"/data/x\"");
        for h in ["a", "a", "ab", "a", "b", "b", "ba", "a"] {
            assert_eq!(host(&line(h)), h);
        }
        assert_eq!(
            host("2026-11-27T16:04:18Z a internal-sftp[1]: garbled"),
            "a"
        );
        let lossy = parse_line(b"2026-11-27T16:04:18Z b\xff internal-sftp[1]: garbled", NOW);
        assert!(matches!(lossy, Parsed::Unreadable { host, .. } if &*host == "b\u{fffd}"));
    }

    #[test]
    fn stamps_of_the_fixed_width_and_of_others_read_alike() {
        let at = |stamp: &str| match parse_line(
            format!("{stamp} vm internal-sftp[5701]: remove name \"/data/x\"").as_bytes(),
            NOW,
        ) {
            Parsed::Sftp(l) => Some((l.host.to_string(), l.time, l.time_us)),
            _ => None,
        };
        // 2026-11-27T16:04:18Z
        let want = Some((
            "vm".to_string(),
            Some(1_795_795_458),
            Some(1_795_795_458_430_882),
        ));
        assert_eq!(at("2026-11-27T16:04:18.430882+00:00"), want);
        assert_eq!(at("2026-11-27T17:04:18.430882+01:00"), want);
        assert_eq!(at("2026-11-27T16:04:18.430882000000"), want);
        assert_eq!(at("2026-11-27T16:04:18.430882Z"), want);
        // 32 bytes with a space inside: the stamp ends there, as it always did.
        assert_eq!(at("2026-11-27T16:04:18.4 30882+00:00"), None);
        assert_eq!(
            at("2026-11-27 16:04:18.430882+00:00").map(|(h, ..)| h),
            None,
            "a space after the date ends the stamp"
        );
    }

    #[test]
    fn common_names_decode_as_the_full_decoding_does() {
        for raw in [
            &b""[..],
            b"/data/in/a b.pdf",
            br"/data/out/r\303\251sum\303\251-1.txt",
            br"a\\b",
            br"\303\277\303\200",
        ] {
            assert_eq!(
                common_name(raw).as_deref(),
                Some(&*for_people(raw)),
                "{raw:?}"
            );
        }
        // Everything else takes the full decoding.
        for raw in [
            &br"\303"[..],
            // `\\` then a stray `\251`: an invalid byte, U+FFFD in the full decoding.
            br"\\303\251",
            br"\303\300",
            br"\342\200\256",
            br"a\nb",
            br"\001",
            b"tab\there",
            b"\xc3\xa9",
        ] {
            assert_eq!(common_name(raw), None, "{raw:?}");
        }
    }

    proptest::proptest! {
        #[test]
        fn common_names_are_what_for_people_makes(
            parts in proptest::collection::vec(proptest::sample::select(vec![
                "a", " ", "\"", "~", "\\\\", "\\303\\251", "\\303\\200", "\\303\\277",
                "\\303", "\\2", "\\342\\200\\256", "\\n", "\\t", "\\0", "\\377", "\\",
                "\u{e9}", "\t", "3", "\\303\\3",
            ]), 0..12),
        ) {
            let raw = parts.concat();
            if let Some(fast) = common_name(raw.as_bytes()) {
                proptest::prop_assert_eq!(fast, for_people(raw.as_bytes()));
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..700)) {
            let _ = parse_line(&bytes, NOW);
            let _ = parse_message(&bytes);
        }

        #[test]
        fn arbitrary_messages_after_a_valid_header_never_panic(
            tail in proptest::collection::vec(proptest::num::u8::ANY, 0..600),
            prefix in proptest::sample::select(vec!["close \"", "forced close \"", "open \"", "set \"", "rename old \"", "session opened for local user ", "sent status ", "mkdir name \""]),
        ) {
            let mut line = b"<38>Nov 27 16:04:26 vm internal-sftp[5900]: ".to_vec();
            line.extend_from_slice(prefix.as_bytes());
            line.extend_from_slice(&tail);
            let _ = parse_line(&line, NOW);
        }
    }
}
