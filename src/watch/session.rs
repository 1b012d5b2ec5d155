//! Per-session state: which session a line belongs to, what each request did, and when a
//! session is finished. Sessions are keyed by host + pid; a `session opened` on a key that is
//! still open means the old session's close was lost (pid reuse), so the old one is finished.
//!
//! `sent status X` carries no path: it answers the previous request of the same pid. So every
//! request is held back as `pending` until the next line of that pid shows it did not fail.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::parse::{CutRequest, Event, Line, OpenFlags, Parsed, Sender};
use super::report::{Report, Totals};
use super::trust::{Dropped, Trust, Untrusted};

/// Memory bounds.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Entries kept per list of one session (uploads, deletes, …); totals stay exact.
    pub max_list_entries: usize,
    /// Open sessions kept; beyond that the least recently active one is reported incomplete.
    pub max_open_sessions: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_list_entries: 100,
            max_open_sessions: 50_000,
        }
    }
}

/// sftp-server logs a request, runs it, and logs `sent status` at once if it failed: 11-28 µs
/// apart in the captures. A status that comes later answers a request the client sent after a
/// round trip (146 µs and more on loopback) that is not logged at INFO, e.g. the `lstat` the
/// OpenSSH client sends before `rm`. Used only when the times have microseconds.
pub const OWN_STATUS_WINDOW_US: i64 = 100;

/// Open file handles remembered per session, to tell an empty upload from an empty download.
const MAX_OPEN_FILES: usize = 32;

/// Names whose existence a session has seen (written, read, looked up, removed), to tell
/// whether a `posix-rename` replaced a file; the oldest is forgotten past this. A forgotten
/// name is unknown, reported as "may have replaced": the safe side. Kept as 64-bit hashes
/// (16 bytes a name, ~1 KiB a session at most) so that long names cost no memory.
const MAX_KNOWN_NAMES: usize = 64;

/// Shown after a name the log cut at 500 bytes.
pub const CUT_MARK: &str = "…";

/// A list that keeps its first `cap` entries and counts the rest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bounded<T> {
    pub items: Vec<T>,
    pub more: u64,
}

impl<T> Default for Bounded<T> {
    fn default() -> Self {
        Bounded {
            items: Vec::new(),
            more: 0,
        }
    }
}

impl<T> Bounded<T> {
    fn push(&mut self, item: T, cap: usize) {
        if self.items.len() < cap {
            self.items.push(item);
        } else {
            self.more += 1;
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Transfer {
    pub path: String,
    pub bytes: u64,
    /// The session ended with the file still open (`forced close`).
    pub incomplete: bool,
    /// The log cut the line: `path` is the start of the name, `bytes` as logged (maybe cut).
    #[serde(default)]
    pub cut: bool,
    /// The byte counts were cut away: `bytes` is 0 and means nothing.
    #[serde(default)]
    pub size_unknown: bool,
    /// Neither the open flags nor the counts survived the cut: upload or download.
    #[serde(default)]
    pub direction_unknown: bool,
    /// Uploaded under a temporary name, then `posix-rename`d onto `path`, which may have
    /// held another file.
    #[serde(default)]
    pub replaced: Replaced,
}

/// Whether a rename replaced a file that had the new name.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Replaced {
    /// `rename` (sftp-server refuses an existing target), or the name was known to be free.
    #[default]
    No,
    /// `posix-rename` onto a name whose existence the session did not see.
    Maybe,
    /// `posix-rename` onto a name the session saw existing.
    Yes,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Move {
    pub old: String,
    pub new: String,
    #[serde(default)]
    pub replaced: Replaced,
    /// The line fits more than one split into old and new (a name contains `" new "`):
    /// `old` holds both names as logged.
    #[serde(default)]
    pub ambiguous: bool,
    /// For people, filled in the report: replaced, ambiguous, cut.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub note: String,
}

impl Move {
    fn plain(old: String, new: String) -> Move {
        Move {
            old,
            new,
            replaced: Replaced::No,
            ambiguous: false,
            note: String::new(),
        }
    }

    /// A move that must stay in the report as it is: never folded into another.
    fn is_news_by_itself(&self) -> bool {
        self.replaced != Replaced::No || self.ambiguous || self.old.ends_with(CUT_MARK)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Failure {
    /// What was tried, e.g. `remove`, `mkdir`, `open for writing`.
    pub action: String,
    pub path: String,
    /// The second name of a rename or link.
    pub target: Option<String>,
    pub status: String,
}

/// An attribute change: `mode 0600`, `owner 0 group 1001`, `size 0`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    pub path: String,
    pub what: String,
}

/// Why a session's report was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Ending {
    /// `session closed` arrived.
    Closed,
    /// No line for `watch.idle_timeout_secs`: the close line was lost or sshd died.
    IdleTimeout,
    /// The same host and pid opened a new session before this one's close arrived.
    PidReused,
    /// Too many sessions were open at once; this was the least recently active.
    Evicted,
    /// The log ended (report command) with the session still open.
    EndOfInput,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Session {
    pub host: String,
    pub pid: u32,
    pub user: Option<String>,
    pub client: Option<String>,
    /// Time of `session opened`; `None` when the watcher saw the session only from its middle.
    pub start: Option<i64>,
    pub first_seen: i64,
    pub end: i64,
    /// Clock of the driver (wall clock live, log time on replay) at the last line.
    pub last_seen: i64,
    open_files: Vec<(String, OpenFlags)>,
    pending: Option<Event>,
    /// Microsecond time of the pending request's line, when known.
    #[serde(default)]
    pending_us: Option<i64>,
    /// A line only `-l VERBOSE` logs was seen: every request is logged, so a status always
    /// answers the request before it, however late it comes.
    #[serde(default)]
    verbose: bool,
    /// Hash of a name → whether the session saw it exist (bounded by [`MAX_KNOWN_NAMES`]).
    #[serde(default)]
    known: Vec<(u64, bool)>,
    /// Files opened by lines the log cut: the start of the name, and whether they were
    /// opened for writing when the flags survived.
    #[serde(default)]
    cut_open_files: Vec<(String, Option<bool>)>,
    pub uploads: Bounded<Transfer>,
    pub downloads: Bounded<Transfer>,
    pub deletes: Bounded<String>,
    pub renames: Bounded<Move>,
    pub links: Bounded<Move>,
    pub mkdirs: Bounded<String>,
    pub rmdirs: Bounded<String>,
    pub changes: Bounded<Change>,
    pub failures: Bounded<Failure>,
    pub totals: Totals,
    pub unreadable_lines: u64,
    /// The uid the kernel gave for the session's lines (the first one believed).
    #[serde(default)]
    pub uid: Option<u32>,
}

impl Session {
    fn new(host: &str, pid: u32, time: i64, clock: i64) -> Session {
        Session {
            host: host.to_string(),
            pid,
            user: None,
            client: None,
            start: None,
            first_seen: time,
            end: time,
            last_seen: clock,
            open_files: Vec::new(),
            pending: None,
            pending_us: None,
            verbose: false,
            known: Vec::new(),
            cut_open_files: Vec::new(),
            uploads: Bounded::default(),
            downloads: Bounded::default(),
            deletes: Bounded::default(),
            renames: Bounded::default(),
            links: Bounded::default(),
            mkdirs: Bounded::default(),
            rmdirs: Bounded::default(),
            changes: Bounded::default(),
            failures: Bounded::default(),
            totals: Totals::default(),
            unreadable_lines: 0,
            uid: None,
        }
    }

    /// Whether the session did anything worth a report.
    pub fn has_activity(&self) -> bool {
        self.totals.any() || self.unreadable_lines > 0
    }

    /// Applies the held-back request: no failure answered it.
    fn commit_pending(&mut self, cap: usize) {
        let Some(event) = self.pending.take() else {
            return;
        };
        let t = &mut self.totals;
        match event {
            Event::Open { path, flags, .. } => {
                if self.open_files.len() >= MAX_OPEN_FILES {
                    self.open_files.remove(0);
                }
                self.know(&path, true);
                self.open_files.push((path, flags));
            }
            Event::Close {
                path,
                read,
                written,
                forced,
            } => {
                let flags = self
                    .open_files
                    .iter()
                    .rposition(|(p, _)| *p == path)
                    .map(|i| self.open_files.remove(i).1);
                let mut writing = flags.map(|f| f.write || f.append || f.create || f.truncate);
                let mut reading = flags.is_some_and(|f| f.read);
                if flags.is_none() {
                    // The open line, longer than the close, may be the one the log cut.
                    let cut_open = self
                        .cut_open_files
                        .iter()
                        .rposition(|(p, _)| path.starts_with(p.as_str()));
                    if let Some(i) = cut_open {
                        writing = self.cut_open_files.remove(i).1;
                        reading = writing == Some(false);
                    }
                }
                self.transfer(
                    path,
                    Some((read, written)),
                    writing,
                    reading,
                    forced,
                    false,
                    cap,
                );
            }
            Event::Remove { path } => {
                t.deletes += 1;
                self.know(&path, false);
                self.deletes.push(path, cap);
            }
            Event::Rmdir { path } => {
                t.rmdirs += 1;
                self.know(&path, false);
                self.rmdirs.push(path, cap);
            }
            Event::Mkdir { path, .. } => {
                t.mkdirs += 1;
                self.know(&path, true);
                self.mkdirs.push(path, cap);
            }
            Event::Rename {
                old,
                new,
                posix,
                ambiguous,
            } => self.rename(old, new, posix, ambiguous, cap),
            Event::Symlink {
                old,
                new,
                ambiguous,
            }
            | Event::Hardlink {
                old,
                new,
                ambiguous,
            } => {
                t.links += 1;
                self.know(&new, true);
                let mut m = Move::plain(old, new);
                m.ambiguous = ambiguous;
                self.links.push(m, cap);
            }
            Event::Cut {
                request,
                path,
                logged,
            } => self.commit_cut(request, path, logged.map(|b| *b), cap),
            Event::Lookup { path } => {
                if !path.is_empty() {
                    self.know(&path, true);
                }
            }
            Event::SetMode { path, mode } => {
                t.changes += 1;
                let what = format!("mode {mode:04o}");
                self.changes.push(Change { path, what }, cap);
            }
            Event::SetOwner { path, uid, gid } => {
                t.changes += 1;
                let what = format!("owner {uid} group {gid}");
                self.changes.push(Change { path, what }, cap);
            }
            Event::SetSize { path, size } => {
                t.changes += 1;
                let what = format!("size {size}");
                self.changes.push(Change { path, what }, cap);
            }
            // Clients set the modification time after every upload: not news to anyone.
            Event::SetModtime { .. }
            | Event::Opendir { .. }
            | Event::Closedir { .. }
            | Event::Statvfs { .. }
            | Event::SessionOpened { .. }
            | Event::SessionClosed { .. }
            | Event::SentStatus { .. } => {}
        }
    }

    /// A transfer closed: an upload, a download, or (a file only opened) nothing. `counts`
    /// (read, written) are `None` when the log cut them away; `writing` is `None` when the open
    /// flags are not known.
    #[allow(clippy::too_many_arguments)]
    fn transfer(
        &mut self,
        path: String,
        counts: Option<(u64, u64)>,
        writing: Option<bool>,
        reading: bool,
        forced: bool,
        cut: bool,
        cap: usize,
    ) {
        let t = &mut self.totals;
        let (read, written) = counts.unwrap_or((0, 0));
        let wrote = writing == Some(true);
        let (upload, download, direction_unknown) = match counts {
            Some(_) => (
                written > 0 || (wrote && read == 0),
                read > 0 || (reading && !wrote && written == 0),
                false,
            ),
            None => match writing {
                Some(true) => (true, false, false),
                Some(false) => (false, true, false),
                // Nothing says which: listed with the uploads, marked as either.
                None => (true, false, true),
            },
        };
        if forced && (upload || download) {
            t.incomplete_transfers += 1;
        }
        if cut {
            t.cut_names += 1;
        }
        let entry = |bytes| Transfer {
            path: path.clone(),
            bytes,
            incomplete: forced,
            cut,
            size_unknown: counts.is_none(),
            direction_unknown,
            replaced: Replaced::No,
        };
        if counts.is_none() {
            if upload {
                t.uploads_size_unknown += 1;
            } else if download {
                t.downloads_size_unknown += 1;
            }
        }
        if upload {
            t.uploads += 1;
            t.upload_bytes = t.upload_bytes.saturating_add(written);
            self.uploads.push(entry(written), cap);
        }
        if download {
            t.downloads += 1;
            t.download_bytes = t.download_bytes.saturating_add(read);
            self.downloads.push(entry(read), cap);
        }
        if upload || download {
            self.know(&path, true);
        }
    }

    /// Remembers whether `path` exists as far as this session saw.
    fn know(&mut self, path: &str, exists: bool) {
        let h = name_hash(path);
        self.known.retain(|(k, _)| *k != h);
        if self.known.len() >= MAX_KNOWN_NAMES {
            self.known.remove(0);
        }
        self.known.push((h, exists));
    }

    /// What a `posix-rename` onto `new` did to a file of that name, as far as the session saw.
    fn replaced_by_posix_rename(&self, new: &str) -> Replaced {
        let h = name_hash(new);
        match self.known.iter().find(|(k, _)| *k == h) {
            Some((_, true)) => Replaced::Yes,
            Some((_, false)) => Replaced::No,
            None => Replaced::Maybe,
        }
    }

    /// An upload under a temporary name renamed later in the session (`x.filepart` → `x`) is
    /// shown as an upload of its final name; a chain of renames `a → b → c` is shown as `a → c`.
    /// A `posix-rename` onto a name that may have existed replaced that file: it is reported
    /// as such and never folded away, so `a → contract.pdf`, `contract.pdf → a` shows both.
    fn rename(&mut self, old: String, new: String, posix: bool, ambiguous: bool, cap: usize) {
        if ambiguous {
            self.totals.renames += 1;
            if posix {
                self.totals.replaced += 1;
            }
            let mut m = Move::plain(old, new);
            m.ambiguous = true;
            m.replaced = if posix { Replaced::Maybe } else { Replaced::No };
            self.known.clear();
            self.renames.push(m, cap);
            return;
        }
        let replaced = if posix {
            self.replaced_by_posix_rename(&new)
        } else {
            Replaced::No
        };
        self.know(&old, false);
        self.know(&new, true);
        if replaced != Replaced::No {
            self.totals.replaced += 1;
        }
        if is_temporary_upload_name(&old) {
            if let Some(up) = self.uploads.items.iter_mut().rev().find(|u| u.path == old) {
                up.path = new;
                up.replaced = replaced;
                return;
            }
        }
        let foldable = self
            .renames
            .items
            .iter()
            .rposition(|m| m.new == old && !m.is_news_by_itself());
        if let Some(i) = foldable {
            if self.renames.items[i].old == new && replaced == Replaced::No {
                self.renames.items.remove(i);
                self.totals.renames = self.totals.renames.saturating_sub(1);
            } else {
                self.renames.items[i].new = new;
                self.renames.items[i].replaced = replaced;
            }
            return;
        }
        self.totals.renames += 1;
        let mut m = Move::plain(old, new);
        m.replaced = replaced;
        self.renames.push(m, cap);
    }

    /// A request whose line the log may have cut: what its start says is reported, the name
    /// marked with [`CUT_MARK`], and the session counts it in `totals.cut_names`.
    fn commit_cut(&mut self, request: CutRequest, path: String, logged: Option<Event>, cap: usize) {
        let shown = format!("{path}{CUT_MARK}");
        let t = &mut self.totals;
        match request {
            CutRequest::Open { writing } => {
                if self.cut_open_files.len() >= MAX_OPEN_FILES {
                    self.cut_open_files.remove(0);
                }
                self.cut_open_files.push((path, writing));
            }
            CutRequest::Close { forced } => {
                // The open line is cut a little later than the close (`open "` is shorter
                // than `close "`), or not at all: match on the common start.
                let same = |p: &str| p.starts_with(&path) || path.starts_with(p);
                let writing =
                    if let Some(i) = self.cut_open_files.iter().rposition(|(p, _)| same(p)) {
                        self.cut_open_files.remove(i).1
                    } else if let Some(i) = self.open_files.iter().rposition(|(p, _)| same(p)) {
                        let f = self.open_files.remove(i).1;
                        Some(f.write || f.append || f.create || f.truncate)
                    } else {
                        None
                    };
                let counts = match logged {
                    Some(Event::Close { read, written, .. }) => Some((read, written)),
                    _ => None,
                };
                self.transfer(
                    shown,
                    counts,
                    writing,
                    writing == Some(false),
                    forced,
                    true,
                    cap,
                );
            }
            CutRequest::Remove => {
                t.deletes += 1;
                t.cut_names += 1;
                self.deletes.push(shown, cap);
            }
            CutRequest::Rmdir => {
                t.rmdirs += 1;
                t.cut_names += 1;
                self.rmdirs.push(shown, cap);
            }
            CutRequest::Mkdir => {
                t.mkdirs += 1;
                t.cut_names += 1;
                self.mkdirs.push(shown, cap);
            }
            CutRequest::Rename { posix } => {
                t.renames += 1;
                t.cut_names += 1;
                let (old, new) = match logged {
                    Some(Event::Rename { old, new, .. }) if !new.is_empty() => {
                        (format!("{old}{CUT_MARK}"), format!("{new}{CUT_MARK}"))
                    }
                    _ => (shown, CUT_MARK.to_string()),
                };
                let mut m = Move::plain(old, new);
                if posix {
                    t.replaced += 1;
                    m.replaced = Replaced::Maybe;
                }
                // Which names exist is no longer known.
                self.known.clear();
                self.renames.push(m, cap);
            }
            CutRequest::Symlink | CutRequest::Hardlink => {
                t.links += 1;
                t.cut_names += 1;
                let m = match logged {
                    Some(Event::Symlink { old, new, .. } | Event::Hardlink { old, new, .. }) => {
                        Move::plain(format!("{old}{CUT_MARK}"), format!("{new}{CUT_MARK}"))
                    }
                    _ => Move::plain(shown, CUT_MARK.to_string()),
                };
                self.links.push(m, cap);
            }
            CutRequest::Set => {
                t.changes += 1;
                t.cut_names += 1;
                let what = match logged {
                    Some(Event::SetMode { mode, .. }) => format!("mode {mode:04o} (as logged)"),
                    Some(Event::SetOwner { uid, gid, .. }) => {
                        format!("owner {uid} group {gid} (as logged)")
                    }
                    Some(Event::SetSize { size, .. }) => format!("size {size} (as logged)"),
                    // A modification time is not news, but what was set is not known here.
                    _ => "attributes (cut from the log)".to_string(),
                };
                if !matches!(logged, Some(Event::SetModtime { .. })) {
                    self.changes.push(Change { path: shown, what }, cap);
                } else {
                    t.changes -= 1;
                    t.cut_names -= 1;
                }
            }
            CutRequest::Lookup => {}
        }
    }

    /// The held-back request failed with `status`.
    fn fail_pending(&mut self, status: String, cap: usize) {
        let Some(event) = self.pending.take() else {
            return;
        };
        if let Event::Close { path, .. } = &event {
            // The bytes in a close line were read or written whatever close(2) says after:
            // the transfer happened. At INFO the status may even be an unlogged lookup's
            // that a pipelining client sent in the same packet; at VERBOSE it is the close's.
            let path = path.clone();
            self.pending = Some(event);
            self.commit_pending(cap);
            if !self.verbose {
                return;
            }
            self.totals.failures += 1;
            let failure = Failure {
                action: "close".into(),
                path,
                target: None,
                status,
            };
            self.failures.push(failure, cap);
            return;
        }
        let mut target = None;
        let (action, path) = match event {
            Event::Open { path, flags, .. } => {
                let action = if flags.write || flags.append || flags.create || flags.truncate {
                    "open for writing"
                } else {
                    "open for reading"
                };
                (action.to_string(), path)
            }
            Event::Close { .. } => unreachable!("handled above"),
            Event::Remove { path } => ("remove".into(), path),
            Event::Rmdir { path } => ("rmdir".into(), path),
            Event::Mkdir { path, .. } => ("mkdir".into(), path),
            Event::Rename {
                old,
                new,
                ambiguous,
                ..
            } => {
                if !ambiguous {
                    target = Some(new);
                }
                ("rename".into(), old)
            }
            Event::Symlink { old, new, .. } => {
                target = Some(old);
                ("symlink".into(), new)
            }
            Event::Hardlink { old, new, .. } => {
                target = Some(old);
                ("hardlink".into(), new)
            }
            Event::SetMode { path, mode } => (format!("set mode {mode:04o}"), path),
            Event::SetOwner { path, uid, gid } => (format!("set owner {uid} group {gid}"), path),
            Event::SetSize { path, size } => (format!("set size {size}"), path),
            Event::SetModtime { path } => ("set modification time".into(), path),
            Event::Opendir { path } => ("list directory".into(), path),
            Event::Closedir { path } => ("closedir".into(), path),
            Event::Statvfs { path } => ("statvfs".into(), path),
            // A client probing for a name that is not there is not news, but tells that the
            // name is free.
            Event::Lookup { path } => {
                if !path.is_empty() && status == "No such file" {
                    self.know(&path, false);
                }
                return;
            }
            Event::Cut { request, path, .. } => {
                let action = match request {
                    CutRequest::Open {
                        writing: Some(true),
                    } => "open for writing",
                    CutRequest::Open {
                        writing: Some(false),
                    } => "open for reading",
                    CutRequest::Open { writing: None } => "open",
                    CutRequest::Close { .. } => "close",
                    CutRequest::Remove => "remove",
                    CutRequest::Rmdir => "rmdir",
                    CutRequest::Mkdir => "mkdir",
                    CutRequest::Rename { .. } => "rename",
                    CutRequest::Symlink => "symlink",
                    CutRequest::Hardlink => "hardlink",
                    CutRequest::Set => "set attributes",
                    CutRequest::Lookup => return,
                };
                self.totals.cut_names += 1;
                (action.to_string(), format!("{path}{CUT_MARK}"))
            }
            Event::SessionOpened { .. }
            | Event::SessionClosed { .. }
            | Event::SentStatus { .. } => return,
        };
        self.totals.failures += 1;
        self.failures.push(
            Failure {
                action,
                path,
                target,
                status,
            },
            cap,
        );
    }
}

/// SipHash of a name. Making a name look "seen free" through a collision with another name
/// would take a 64-bit second preimage; a hash that changes between versions only forgets.
fn name_hash(path: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::hash::DefaultHasher::new();
    path.hash(&mut h);
    h.finish()
}

/// Names clients upload to before renaming into place (WinSCP `.filepart`, others `.part`).
fn is_temporary_upload_name(path: &str) -> bool {
    [".filepart", ".part", ".partial"]
        .iter()
        .any(|suffix| path.len() > suffix.len() && path.ends_with(suffix))
}

/// Counters over everything the watcher read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineStats {
    pub lines: u64,
    pub sftp_lines: u64,
    pub unreadable_lines: u64,
    pub foreign_lines: u64,
    /// internal-sftp lines not sent by the session's own process: dropped (see `trust`).
    #[serde(default)]
    pub untrusted_lines: u64,
}

/// Every open session, by host then pid.
#[derive(Debug, Default)]
pub struct Sessions {
    by_host: HashMap<String, HashMap<u32, Session>>,
    open: usize,
    limits: Limits,
    pub stats: LineStats,
    /// Prefix shown relative in reports (`/data`).
    data_prefix: String,
    /// Who may send a session's lines ([`Sessions::apply_from`]).
    pub trust: Trust,
}

/// A finished session, ready to become a report.
pub type Finished = (Session, Ending);

impl Sessions {
    pub fn new(limits: Limits, data_prefix: &str) -> Sessions {
        Sessions {
            limits,
            data_prefix: data_prefix.to_string(),
            ..Default::default()
        }
    }

    pub fn open_count(&self) -> usize {
        self.open
    }

    /// Takes one line if its sender may send it (see `trust`); else counts and drops it.
    /// `accept_unverified`: a line without credentials is taken as it is (an old log read
    /// with `--trust-unverified`, the opt-in UDP listener); lines with credentials are
    /// always checked.
    pub fn apply_from(
        &mut self,
        sender: Sender,
        parsed: Parsed,
        accept_unverified: bool,
        clock: i64,
        out: &mut Vec<Report>,
    ) {
        let (uid, kernel_pid, relayed) = match sender {
            Sender::Kernel { uid, pid, relayed } => (uid, pid, relayed),
            Sender::Unverified => {
                if accept_unverified || matches!(parsed, Parsed::Foreign) {
                    return self.apply(parsed, clock, out);
                }
                return self.drop_untrusted(Untrusted::NoCredentials, None, None);
            }
        };
        let (host, pid, event) = match &parsed {
            Parsed::Foreign => return self.apply(parsed, clock, out),
            Parsed::Unreadable { host, pid, .. } => (host.clone(), *pid, None),
            Parsed::Sftp(l) => (l.host.clone(), l.pid, Some(&l.event)),
        };
        let session_uid = self.get_mut(&host, pid).and_then(|s| s.uid);
        let account = match self
            .trust
            .admit((uid, kernel_pid, relayed), pid, event, session_uid)
        {
            Ok(account) => account,
            Err(why) => return self.drop_untrusted(why, Some(uid), Some(kernel_pid)),
        };
        self.apply(parsed, clock, out);
        if let Some(s) = self.get_mut(&host, pid) {
            s.uid.get_or_insert(uid);
            // Seen from its middle: the uid says whose session it is.
            if s.user.is_none() {
                s.user = Some(account);
            }
        }
    }

    fn drop_untrusted(&mut self, why: Untrusted, uid: Option<u32>, pid: Option<u32>) {
        self.stats.lines += 1;
        self.stats.untrusted_lines += 1;
        self.trust.last_dropped = Some(Dropped { why, uid, pid });
    }

    /// Takes one parsed line as it is, from a sender already believed. `clock` is the
    /// driver's notion of now (for idle timeouts); reports of sessions that ended are pushed
    /// to `out`.
    pub fn apply(&mut self, parsed: Parsed, clock: i64, out: &mut Vec<Report>) {
        self.stats.lines += 1;
        let cap = self.limits.max_list_entries;
        match parsed {
            Parsed::Foreign => self.stats.foreign_lines += 1,
            Parsed::Unreadable { host, pid, time } => {
                self.stats.unreadable_lines += 1;
                let s = self.session(&host, pid, time.unwrap_or(clock), clock, out);
                s.commit_pending(cap);
                s.unreadable_lines += 1;
            }
            Parsed::Sftp(line) => {
                self.stats.sftp_lines += 1;
                self.apply_line(line, clock, out);
            }
        }
    }

    fn apply_line(&mut self, line: Line, clock: i64, out: &mut Vec<Report>) {
        let cap = self.limits.max_list_entries;
        let time = line.time.unwrap_or(clock);
        match line.event {
            Event::SessionOpened { user, client } => {
                if let Some(old) = self.remove(&line.host, line.pid) {
                    self.finish(old, Ending::PidReused, out);
                }
                let s = self.session(&line.host, line.pid, time, clock, out);
                s.start = Some(time);
                s.user = Some(user);
                s.client = Some(client);
            }
            Event::SessionClosed { user, client } => {
                let Some(mut s) = self.remove(&line.host, line.pid) else {
                    return;
                };
                s.commit_pending(cap);
                s.end = time;
                s.user.get_or_insert(user);
                s.client.get_or_insert(client);
                self.finish(s, Ending::Closed, out);
            }
            Event::SentStatus { status } => {
                if let Some(s) = self.get_mut(&line.host, line.pid) {
                    let gap = s.pending_us.zip(line.time_us).map(|(p, t)| t - p);
                    if !s.verbose && gap.is_some_and(|g| g > OWN_STATUS_WINDOW_US) {
                        // Too late to be this request's own answer: a request that is not
                        // logged at INFO (stat, lstat, realpath) failed after it succeeded.
                        s.commit_pending(cap);
                    } else {
                        s.fail_pending(status, cap);
                    }
                    s.pending_us = None;
                    s.end = time;
                    s.last_seen = clock;
                }
            }
            event => {
                let s = self.session(&line.host, line.pid, time, clock, out);
                s.verbose |= matches!(event, Event::Lookup { .. });
                s.commit_pending(cap);
                s.pending = Some(event);
                s.pending_us = line.time_us;
            }
        }
    }

    fn get_mut(&mut self, host: &str, pid: u32) -> Option<&mut Session> {
        self.by_host.get_mut(host)?.get_mut(&pid)
    }

    fn remove(&mut self, host: &str, pid: u32) -> Option<Session> {
        let sessions = self.by_host.get_mut(host)?;
        let s = sessions.remove(&pid)?;
        if sessions.is_empty() {
            self.by_host.remove(host);
        }
        self.open -= 1;
        Some(s)
    }

    /// The open session of host + pid, created when there is none (the watcher may have
    /// started in the middle of it).
    fn session(
        &mut self,
        host: &str,
        pid: u32,
        time: i64,
        clock: i64,
        out: &mut Vec<Report>,
    ) -> &mut Session {
        let exists = self.by_host.get(host).is_some_and(|m| m.contains_key(&pid));
        if !exists {
            if self.open >= self.limits.max_open_sessions {
                self.evict_least_recent(out);
            }
            self.open += 1;
        }
        let s = self
            .by_host
            .entry(host.to_string())
            .or_default()
            .entry(pid)
            .or_insert_with(|| Session::new(host, pid, time, clock));
        s.end = time;
        s.last_seen = clock;
        s
    }

    fn evict_least_recent(&mut self, out: &mut Vec<Report>) {
        let oldest = self
            .by_host
            .values()
            .flat_map(|m| m.values())
            .min_by_key(|s| s.last_seen)
            .map(|s| (s.host.clone(), s.pid));
        if let Some((host, pid)) = oldest {
            if let Some(s) = self.remove(&host, pid) {
                self.finish(s, Ending::Evicted, out);
            }
        }
    }

    fn finish(&self, mut s: Session, ending: Ending, out: &mut Vec<Report>) {
        s.commit_pending(self.limits.max_list_entries);
        if s.has_activity() {
            out.push(Report::from_session(s, ending, &self.data_prefix));
        }
    }

    /// Finishes every session without a line since `now - idle_secs`.
    pub fn expire(&mut self, now: i64, idle_secs: u64, out: &mut Vec<Report>) {
        let limit = now.saturating_sub(i64::try_from(idle_secs).unwrap_or(i64::MAX));
        let stale: Vec<(String, u32)> = self
            .by_host
            .values()
            .flat_map(|m| m.values())
            .filter(|s| s.last_seen < limit)
            .map(|s| (s.host.clone(), s.pid))
            .collect();
        for (host, pid) in stale {
            if let Some(s) = self.remove(&host, pid) {
                self.finish(s, Ending::IdleTimeout, out);
            }
        }
    }

    /// Finishes every open session (end of a log replayed by `report`).
    pub fn finish_all(&mut self, ending: Ending, out: &mut Vec<Report>) {
        let mut all: Vec<Session> = self.take_all();
        all.sort_by_key(|s| (s.first_seen, s.pid));
        for s in all {
            self.finish(s, ending, out);
        }
    }

    /// Removes and returns every open session (to save them on shutdown).
    pub fn take_all(&mut self) -> Vec<Session> {
        self.open = 0;
        self.by_host
            .drain()
            .flat_map(|(_, m)| m.into_values())
            .collect()
    }

    /// Puts back sessions saved by [`Sessions::take_all`]; their idle clock restarts at `clock`.
    pub fn restore(&mut self, sessions: Vec<Session>, clock: i64) {
        for mut s in sessions {
            s.last_seen = clock;
            let slot = self.by_host.entry(s.host.clone()).or_default();
            if slot.insert(s.pid, s).is_none() {
                self.open += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::watch::parse::{parse_line, MESSAGE_LIMIT};

    const NOW: i64 = 1_796_000_000;

    fn run_with(lines: &[String], limits: Limits) -> (Vec<Report>, Sessions) {
        let mut sessions = Sessions::new(limits, "/data");
        let mut out = Vec::new();
        for l in lines {
            sessions.apply(parse_line(l.as_bytes(), NOW), NOW, &mut out);
        }
        (out, sessions)
    }

    fn run(text: &str) -> (Vec<Report>, Sessions) {
        let lines: Vec<String> = text.lines().map(|l| l.trim().to_string()).collect();
        run_with(&lines, Limits::default())
    }

    /// Lines of one host/pid with the file-format header.
    fn lines(host: &str, pid: u32, msgs: &[&str]) -> String {
        msgs.iter()
            .map(|m| format!("2026-11-27T16:04:18+00:00 {host} internal-sftp[{pid}]: {m}\n"))
            .collect()
    }

    const OPEN: &str = "session opened for local user alice from [127.0.0.1]";
    const CLOSE: &str = "session closed for local user alice from [127.0.0.1]";

    fn fixture(name: &str) -> String {
        std::fs::read_to_string(format!(
            "{}/tests/fixtures/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    }

    #[test]
    fn capture_sessions_become_the_right_reports() {
        let (reports, sessions) = run(&fixture("openssh-9.2-rsyslog-file.log"));
        assert_eq!(sessions.open_count(), 0);
        assert_eq!(sessions.stats.unreadable_lines, 0);
        assert_eq!(reports.len(), 5);
        let r = &reports[0];
        assert_eq!(r.pid, 5701);
        let ups: Vec<_> = r
            .uploads
            .iter()
            .map(|t| (t.path.as_str(), t.bytes))
            .collect();
        assert_eq!(ups, [("up.txt", 12), ("up2.txt", 12)]);
        assert_eq!(r.downloads[0].path, "up.txt");
        assert_eq!(r.renames[0].old, "up.txt");
        assert_eq!(r.renames[0].new, "moved.txt");
        assert_eq!(r.deletes, ["moved.txt"]);
        assert_eq!(r.mkdirs, ["sub"]);
        assert_eq!(r.rmdirs, ["sub"]);
        assert_eq!(r.changes, ["up2.txt: mode 0600"]);
        assert!(r.complete);

        let r = &reports[1];
        assert_eq!(r.totals.uploads, 2);
        assert_eq!(r.totals.upload_bytes, 3_000_012);
        assert_eq!(r.totals.download_bytes, 3_000_000);
        assert_eq!(r.totals.deletes, 2);
        assert_eq!(r.failures.len(), 1);
        assert_eq!(r.failures[0].action, "mkdir");
        assert_eq!(r.failures[0].path, "/forbidden");
        assert_eq!(r.failures[0].status, "Permission denied");
        assert_eq!(r.totals.mkdirs, 0);

        let r = &reports[2];
        assert_eq!(r.uploads[0].path, "huge.bin");
        assert!(r.uploads[0].incomplete);
        assert_eq!(r.totals.incomplete_transfers, 1);

        let r = &reports[3];
        assert_eq!(r.uploads[0].path, "Übersicht 2026.pdf");
        assert!(r.deletes.is_empty(), "a failed remove is not a delete");
        // The status 233 µs after the rename answers an unlogged lstat: the rename worked,
        // which the failed remove of the old name right after confirms.
        assert_eq!(r.renames[0].old, "Übersicht 2026.pdf");
        assert_eq!(r.renames[0].new, "sub dir");
        let failed: Vec<_> = r.failures.iter().map(|f| f.action.as_str()).collect();
        assert_eq!(
            failed,
            [
                "open for writing",
                "set owner 0 group 1001",
                "remove",
                "remove"
            ]
        );
        assert_eq!(r.changes, ["big.bin: mode 0640"]);

        let r = &reports[4];
        assert_eq!(r.uploads.len(), 1);
        assert_eq!(r.uploads[0].path, "report.pdf");
        assert!(r.renames.is_empty());
    }

    #[test]
    fn quote_in_name_capture() {
        let (reports, _) = run(&fixture("openssh-9.2-udp-forward.txt"));
        assert_eq!(reports.len(), 1);
        let ups: Vec<_> = reports[0]
            .uploads
            .iter()
            .map(|t| (t.path.as_str(), t.bytes))
            .collect();
        assert_eq!(
            ups,
            [
                ("Übersicht 2026.pdf", 12),
                (r#"quo"te bytes read 0 written 999.txt"#, 12)
            ]
        );
    }

    #[test]
    fn pid_reuse_and_two_hosts_never_mix() {
        let mut text = lines("a", 7, &[OPEN, "remove name \"/data/a1\""]);
        text += &lines("b", 7, &[OPEN, "remove name \"/data/b1\""]);
        // Host a's close was lost; the pid comes back for a new session.
        text += &lines("a", 7, &[OPEN, "remove name \"/data/a2\"", CLOSE]);
        text += &lines("b", 7, &[CLOSE]);
        let (reports, sessions) = run(&text);
        let got: Vec<_> = reports
            .iter()
            .map(|r| (r.host.as_str(), r.deletes.clone(), r.complete))
            .collect();
        assert_eq!(
            got,
            [
                ("a", vec!["a1".to_string()], false),
                ("a", vec!["a2".to_string()], true),
                ("b", vec!["b1".to_string()], true),
            ]
        );
        assert_eq!(reports[0].ending, Ending::PidReused);
        assert_eq!(sessions.open_count(), 0);
    }

    #[test]
    fn failed_requests_are_not_actions() {
        let text = lines(
            "h",
            1,
            &[
                OPEN,
                "sent status No such file",
                "remove name \"/data/x\"",
                "sent status No such file",
                "rmdir name \"/data/d\"",
                "sent status Failure",
                "posix-rename old \"/data/a\" new \"/data/b\"",
                "sent status Permission denied",
                "open \"/data/r\" flags READ mode 0666",
                "sent status No such file",
                "close \"/data/r\" bytes read 0 written 0",
                "remove name \"/data/ok\"",
                CLOSE,
            ],
        );
        let (reports, _) = run(&text);
        let r = &reports[0];
        assert_eq!(r.deletes, ["ok"]);
        assert!(r.rmdirs.is_empty() && r.renames.is_empty() && r.downloads.is_empty());
        assert_eq!(r.totals.failures, 4);
        assert_eq!(r.failures[2].path, "a → b");
    }

    /// What the OpenSSH client does for `rm a` then `rm missing`: lstat(missing) fails (not
    /// logged at INFO) after the remove of `a` succeeded.
    #[test]
    fn late_status_belongs_to_an_unlogged_request() {
        let at = |us: u32, pid: u32, m: &str| {
            format!("2026-11-27T16:04:18.{us:06}+00:00 h internal-sftp[{pid}]: {m}\n")
        };
        let text = [
            at(100, 1, OPEN),
            at(200, 1, "remove name \"/data/a\""),
            at(450, 1, "sent status No such file"),
            at(600, 1, "remove name \"/data/missing\""),
            at(612, 1, "sent status No such file"),
            at(900, 1, CLOSE),
        ]
        .concat();
        let (reports, _) = run(&text);
        assert_eq!(reports[0].deletes, ["a"]);
        assert_eq!(reports[0].failures.len(), 1);
        assert_eq!(reports[0].failures[0].path, "missing");
    }

    #[test]
    fn without_microseconds_the_status_goes_to_the_previous_request() {
        let text = lines(
            "h",
            1,
            &[
                OPEN,
                "remove name \"/data/a\"",
                "sent status No such file",
                CLOSE,
            ],
        );
        let (reports, _) = run(&text);
        assert!(reports[0].deletes.is_empty());
        assert_eq!(reports[0].failures[0].path, "a");
    }

    #[test]
    fn verbose_lookups_take_their_own_failures() {
        let text = lines(
            "h",
            1,
            &[
                OPEN,
                "remove name \"/data/a\"",
                "lstat name \"/data/missing\"",
                "sent status No such file",
                CLOSE,
            ],
        );
        let (reports, _) = run(&text);
        assert_eq!(reports[0].deletes, ["a"]);
        assert!(reports[0].failures.is_empty());
    }

    /// Under load a request's own status can come well after it (1.5 ms seen in CI). At
    /// VERBOSE nothing goes unlogged, so it is still that request's: a failed remove is never
    /// a delete.
    #[test]
    fn at_verbose_a_late_status_is_still_its_requests() {
        let at = |us: u32, m: &str| {
            format!("2026-11-27T16:04:18.{us:06}+00:00 h internal-sftp[1]: {m}\n")
        };
        let text = [
            at(100, OPEN),
            at(110, "received client version 3"),
            at(200, "lstat name \"/data/missing\""),
            at(210, "sent status No such file"),
            at(300, "remove name \"/data/missing\""),
            at(1800, "sent status No such file"),
            at(1900, "posix-rename old \"/data/x\" new \"/data/y\""),
            at(3400, "sent status Permission denied"),
            at(3500, CLOSE),
        ]
        .concat();
        let (reports, _) = run(&text);
        assert!(reports[0].deletes.is_empty(), "{:?}", reports[0].deletes);
        assert!(reports[0].renames.is_empty());
        let failed: Vec<&str> = reports[0]
            .failures
            .iter()
            .map(|f| f.path.as_str())
            .collect();
        assert_eq!(failed, ["missing", "x → y"]);
    }

    fn moves(r: &Report) -> Vec<(String, String, String)> {
        r.renames
            .iter()
            .map(|m| (m.old.clone(), m.new.clone(), m.note.clone()))
            .collect()
    }

    /// `rename a contract.pdf` (posix-rename replaces it) then `rename contract.pdf a`: the
    /// pair must not fold to nothing: contract.pdf is gone.
    #[test]
    fn a_posix_rename_pair_that_replaced_a_file_is_reported() {
        let text = lines(
            "h",
            1,
            &[
                OPEN,
                "posix-rename old \"/data/a\" new \"/data/contract.pdf\"",
                "posix-rename old \"/data/contract.pdf\" new \"/data/a\"",
                CLOSE,
            ],
        );
        let (reports, _) = run(&text);
        assert_eq!(
            reports.len(),
            1,
            "a session that replaced a file sends a report"
        );
        let r = &reports[0];
        let got = moves(r);
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(
            got[0],
            (
                "a".into(),
                "contract.pdf".into(),
                "REPLACED contract.pdf if it existed".into()
            )
        );
        // `a` was renamed away: known free, so the way back replaced nothing.
        assert_eq!(got[1], ("contract.pdf".into(), "a".into(), String::new()));
        assert_eq!(r.totals.renames, 2);
        assert_eq!(r.totals.replaced, 1);
    }

    #[test]
    fn a_posix_rename_onto_a_name_the_session_saw_replaced_it() {
        let text = lines(
            "h",
            1,
            &[
                OPEN,
                "lstat name \"/data/contract.pdf\"",
                "open \"/data/evil\" flags WRITE,CREATE,TRUNCATE mode 0644",
                "close \"/data/evil\" bytes read 0 written 3",
                "posix-rename old \"/data/evil\" new \"/data/contract.pdf\"",
                "lstat name \"/data/free\"",
                "sent status No such file",
                "posix-rename old \"/data/x\" new \"/data/free\"",
                "rename old \"/data/p\" new \"/data/q\"",
                "rename old \"/data/q\" new \"/data/p\"",
                CLOSE,
            ],
        );
        let (reports, _) = run(&text);
        let got = moves(&reports[0]);
        assert_eq!(
            got,
            [
                (
                    "evil".into(),
                    "contract.pdf".into(),
                    "REPLACED the existing contract.pdf".into()
                ),
                ("x".into(), "free".into(), String::new()),
            ],
            "plain rename never replaces; p → q → p folds away"
        );
    }

    /// A name holding `" new "` makes the line fit two splits: both names are shown as
    /// logged and called ambiguous, never a wrong target.
    #[test]
    fn a_temporary_upload_renamed_onto_a_name_says_it_may_have_replaced_it() {
        let text = lines(
            "h",
            1,
            &[
                OPEN,
                "open \"/data/c.pdf.part\" flags WRITE,CREATE,TRUNCATE mode 0644",
                "close \"/data/c.pdf.part\" bytes read 0 written 3",
                "posix-rename old \"/data/c.pdf.part\" new \"/data/c.pdf\"",
                CLOSE,
            ],
        );
        let (reports, _) = run(&text);
        let r = &reports[0];
        assert_eq!(r.uploads[0].path, "c.pdf");
        assert_eq!(
            r.uploads[0].size,
            "3 bytes; REPLACED c.pdf if it existed (uploaded under a temporary name)"
        );
        assert_eq!(r.totals.replaced, 1);
    }

    /// A pipelining client puts CLOSE and an LSTAT of a missing name in one packet: at INFO
    /// the lstat is not logged and its status comes microseconds after the close. The bytes
    /// of a close line were transferred whatever follows: the upload counts.
    #[test]
    fn a_status_right_after_a_close_never_undoes_the_transfer() {
        let at = |us: u32, m: &str| {
            format!("2026-11-27T16:04:18.{us:06}+00:00 h internal-sftp[1]: {m}\n")
        };
        let text = [
            at(100, OPEN),
            at(
                200,
                "open \"/data/up\" flags WRITE,CREATE,TRUNCATE mode 0644",
            ),
            at(300, "close \"/data/up\" bytes read 0 written 5000"),
            at(320, "sent status No such file"),
            at(900, CLOSE),
        ]
        .concat();
        let (reports, _) = run(&text);
        assert_eq!(reports[0].totals.uploads, 1);
        assert_eq!(reports[0].totals.upload_bytes, 5000);
        assert!(
            reports[0].failures.is_empty(),
            "at INFO it may be a lookup's"
        );
    }

    #[test]
    fn an_ambiguous_rename_is_reported_as_such() {
        let text = lines(
            "h",
            1,
            &[
                OPEN,
                "posix-rename old \"/data/a\" new \"/data/b\" new \"/data/c\"",
                CLOSE,
            ],
        );
        let (reports, _) = run(&text);
        let m = &reports[0].renames[0];
        assert_eq!(m.old, "a\" new \"/data/b\" new \"/data/c");
        assert_eq!(m.new, "?");
        assert!(m.note.starts_with("AMBIGUOUS"), "{}", m.note);
    }

    #[test]
    fn bidi_controls_in_names_are_spelled_out() {
        let text = lines(
            "h",
            1,
            &[
                OPEN,
                r#"remove name "/data/invoice-\342\200\256fdp.exe""#,
                CLOSE,
            ],
        );
        let (reports, _) = run(&text);
        assert_eq!(reports[0].deletes, ["invoice-<U+202E>fdp.exe"]);
    }

    /// A name long enough that the log cuts its lines: the upload is still listed and
    /// counted, marked cut, with what is known.
    #[test]
    fn an_upload_whose_lines_were_cut_is_still_reported() {
        let long = "x".repeat(480);
        let open = format!("open \"/data/{long}\" flags WRITE,CREATE,TRUNCATE mode 0644");
        let close = format!("close \"/data/{long}\" bytes read 0 written 1234567");
        let cut = |m: &str| m[..m.len().min(MESSAGE_LIMIT - 1)].to_string();
        let (open, close) = (cut(&open), cut(&close));
        let text = lines("h", 1, &[OPEN, &open, &close, CLOSE]);
        let (reports, _) = run(&text);
        assert_eq!(reports.len(), 1);
        let r = &reports[0];
        assert_eq!(r.totals.uploads, 1, "{r:?}");
        assert_eq!(r.totals.cut_names, 1);
        assert!(r.uploads[0].path.starts_with("xxxx") && r.uploads[0].path.ends_with('…'));
        assert!(
            r.uploads[0].size.contains("size unknown"),
            "{}",
            r.uploads[0].size
        );

        // Non-ASCII: each byte is 4 characters; counts cut after `read`.
        let name = r"\303\234".repeat(57) + "ab";
        let open = format!("open \"/data/{name}\" flags WRITE,CREATE,TRUNCATE mode 0644");
        let close = format!("close \"/data/{name}\" bytes read 0 written 99");
        assert!(close.len() >= MESSAGE_LIMIT - 4 && close.len() < MESSAGE_LIMIT);
        let text = lines("h", 2, &[OPEN, &cut(&open), &close, CLOSE]);
        let (reports, _) = run(&text);
        let r = &reports[0];
        assert_eq!(r.totals.uploads, 1);
        assert_eq!(r.totals.upload_bytes, 99, "counts that survive are counted");
        assert!(r.uploads[0].path.starts_with("ÜÜÜ"));
        assert!(
            r.uploads[0].size.contains("as logged"),
            "{}",
            r.uploads[0].size
        );
    }

    /// The open line is longer than its close: it can be the only one cut.
    #[test]
    fn an_empty_upload_whose_open_line_alone_was_cut_counts() {
        let name = "e".repeat(455);
        let open = format!("open \"/data/{name}\" flags WRITE,CREATE,TRUNCATE mode 0644");
        let close = format!("close \"/data/{name}\" bytes read 0 written 0");
        assert!(open.len() >= MESSAGE_LIMIT - 4 && close.len() < MESSAGE_LIMIT - 4);
        let text = lines("h", 1, &[OPEN, &open[..MESSAGE_LIMIT], &close, CLOSE]);
        let (reports, _) = run(&text);
        assert_eq!(reports[0].totals.uploads, 1);
        assert_eq!(reports[0].uploads[0].path, name);
    }

    #[test]
    fn cut_removes_and_renames_are_listed() {
        let long = "y".repeat(600);
        let rm = format!("remove name \"/data/{long}\"");
        let mv = format!("posix-rename old \"/data/{long}\" new \"/data/z\"");
        let cut = |m: &str| m[..MESSAGE_LIMIT - 1].to_string();
        let text = lines("h", 1, &[OPEN, &cut(&rm), &cut(&mv), CLOSE]);
        let (reports, _) = run(&text);
        let r = &reports[0];
        assert_eq!(r.totals.deletes, 1);
        assert!(r.deletes[0].ends_with('…'));
        assert_eq!(r.totals.renames, 1);
        assert_eq!(r.totals.replaced, 1);
        assert_eq!(r.renames[0].new, "…");
        assert_eq!(r.totals.cut_names, 2);
    }

    #[test]
    fn rename_chains() {
        let text = lines(
            "h",
            1,
            &[
                OPEN,
                "open \"/data/x.filepart\" flags WRITE,CREATE,TRUNCATE mode 0644",
                "close \"/data/x.filepart\" bytes read 0 written 5",
                "rename old \"/data/x.filepart\" new \"/data/x\"",
                "rename old \"/data/x\" new \"/data/final/x\"",
                "rename old \"/data/a\" new \"/data/b\"",
                "rename old \"/data/b\" new \"/data/c\"",
                "rename old \"/data/p\" new \"/data/q\"",
                "rename old \"/data/q\" new \"/data/p\"",
                CLOSE,
            ],
        );
        let (reports, _) = run(&text);
        let r = &reports[0];
        assert_eq!(r.uploads[0].path, "x");
        assert_eq!(r.uploads[0].bytes, 5);
        let moves: Vec<_> = r
            .renames
            .iter()
            .map(|m| (m.old.as_str(), m.new.as_str()))
            .collect();
        assert_eq!(moves, [("x", "final/x"), ("a", "c")]);
        assert_eq!(r.totals.renames, 2);
    }

    #[test]
    fn forced_close_marks_incomplete() {
        let text = lines(
            "h",
            1,
            &[
                OPEN,
                "open \"/data/in\" flags READ mode 0666",
                "forced close \"/data/in\" bytes read 100 written 0",
                CLOSE,
            ],
        );
        let (reports, _) = run(&text);
        assert!(reports[0].downloads[0].incomplete);
        assert_eq!(reports[0].totals.incomplete_transfers, 1);
    }

    #[test]
    fn empty_upload_counts_directory_listing_does_not() {
        let text = lines(
            "h",
            1,
            &[
                OPEN,
                "opendir \"/data\"",
                "closedir \"/data\"",
                "open \"/data/empty\" flags WRITE,CREATE,TRUNCATE mode 0644",
                "close \"/data/empty\" bytes read 0 written 0",
                CLOSE,
            ],
        );
        let (reports, _) = run(&text);
        assert_eq!(reports[0].uploads[0].bytes, 0);
        let (reports, _) = run(&lines("h", 2, &[OPEN, "opendir \"/data\"", CLOSE]));
        assert!(reports.is_empty(), "listing only: no mail");
    }

    #[test]
    fn idle_timeout_reports_incomplete() {
        let mut sessions = Sessions::new(Limits::default(), "/data");
        let mut out = Vec::new();
        for l in lines("h", 1, &[OPEN, "remove name \"/data/x\""]).lines() {
            sessions.apply(parse_line(l.as_bytes(), NOW), 1000, &mut out);
        }
        sessions.expire(1500, 600, &mut out);
        assert!(out.is_empty());
        sessions.expire(1601, 600, &mut out);
        assert_eq!(out.len(), 1);
        assert!(!out[0].complete);
        assert_eq!(out[0].ending, Ending::IdleTimeout);
        assert_eq!(sessions.open_count(), 0);
    }

    #[test]
    fn bounded_lists_keep_exact_totals() {
        let limits = Limits {
            max_list_entries: 3,
            max_open_sessions: 2,
        };
        let mut msgs = vec![OPEN.to_string()];
        for i in 0..10 {
            msgs.push(format!("open \"/data/f{i}\" flags WRITE,CREATE mode 0644"));
            msgs.push(format!(
                "close \"/data/f{i}\" bytes read 0 written {}",
                i + 1
            ));
        }
        msgs.push(CLOSE.into());
        let refs: Vec<&str> = msgs.iter().map(String::as_str).collect();
        let text: Vec<String> = lines("h", 1, &refs).lines().map(String::from).collect();
        let (reports, _) = run_with(&text, limits);
        let r = &reports[0];
        assert_eq!(r.uploads.len(), 3);
        assert_eq!(r.uploads_more, 7);
        assert_eq!(r.totals.uploads, 10);
        assert_eq!(r.totals.upload_bytes, 55);
    }

    #[test]
    fn too_many_open_sessions_evicts_the_least_recent() {
        let limits = Limits {
            max_list_entries: 3,
            max_open_sessions: 2,
        };
        let mut text = Vec::new();
        for pid in 1..=3 {
            text.extend(
                lines("h", pid, &[OPEN, "remove name \"/data/x\""])
                    .lines()
                    .map(String::from),
            );
        }
        let (reports, sessions) = run_with(&text, limits);
        assert_eq!(sessions.open_count(), 2);
        assert_eq!(reports.len(), 1);
        assert_eq!(reports[0].ending, Ending::Evicted);
    }

    #[test]
    fn unreadable_lines_are_counted_in_the_session() {
        let mut text = lines("h", 1, &[OPEN, "close \"/data/a\" bytes read 0 wri"]);
        text += &lines("h", 1, &["sent status Failure", CLOSE]);
        let (reports, sessions) = run(&text);
        assert_eq!(sessions.stats.unreadable_lines, 1);
        let r = &reports[0];
        assert_eq!(r.unreadable_lines, 1);
        assert!(r.uploads.is_empty() && r.failures.is_empty());
    }

    #[test]
    fn save_and_restore_keeps_the_session() {
        let (reports, mut sessions) = run(&lines(
            "h",
            1,
            &[OPEN, "remove name \"/data/x\"", "remove name \"/data/y\""],
        ));
        assert!(reports.is_empty());
        let saved = serde_json::to_string(&sessions.take_all()).unwrap();
        let mut again = Sessions::new(Limits::default(), "/data");
        again.restore(serde_json::from_str(&saved).unwrap(), NOW);
        let mut out = Vec::new();
        for l in lines("h", 1, &[CLOSE]).lines() {
            again.apply(parse_line(l.as_bytes(), NOW), NOW, &mut out);
        }
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].deletes, ["x", "y"]);
        assert!(out[0].complete);
    }
}
