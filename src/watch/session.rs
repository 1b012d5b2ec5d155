//! Per-session state: which session a line belongs to, what each request did, and when a
//! session is finished. Sessions are keyed by host + pid; a `session opened` on a key that is
//! still open means the old session's close was lost (pid reuse), so the old one is finished.
//!
//! `sent status X` carries no path: it answers the previous request of the same pid. So every
//! request is held back as `pending` until the next line of that pid shows it did not fail.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::parse::{CutRequest, Event, Line, OpenFlags, Parsed, Refusal, Sender};
use super::report::{Report, Totals};
use super::trust::{Dropped, Trust, Untrusted};

/// Memory bounds (see docs/watch.md, "Bounds").
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Entries kept per list of one session (uploads, deletes, …); totals stay exact.
    pub max_list_entries: usize,
    /// Open sessions kept; beyond that one is reported early (see [`Sessions`] for which).
    pub max_open_sessions: usize,
    /// Bytes one open session may hold (its lists, names, open files); beyond that its lists
    /// keep what they have and only count ("… and N more").
    pub max_session_bytes: usize,
    /// Bytes all open sessions together may hold; beyond that sessions are reported early.
    pub max_sessions_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_list_entries: 100,
            max_open_sessions: 50_000,
            max_session_bytes: 32 << 10,
            max_sessions_bytes: 24 << 20,
        }
    }
}

impl Limits {
    pub fn from_config(watch: &crate::config::Watch) -> Limits {
        Limits {
            max_list_entries: watch.max_list_entries,
            max_open_sessions: watch.max_open_sessions,
            max_session_bytes: watch.max_session_bytes,
            max_sessions_bytes: watch.max_sessions_bytes,
        }
    }
}

/// Longest host name taken (a DNS name has at most 253 bytes; Linux's HOST_NAME_MAX is 64).
/// A line with a longer one is forged: it is counted and dropped.
pub const MAX_HOST_BYTES: usize = 255;

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

/// A list that keeps its first `cap` entries and counts the rest. A sealed list (its session
/// reached `max_session_bytes`) keeps what it has and counts everything after.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Bounded<T> {
    pub items: Vec<T>,
    pub more: u64,
    #[serde(default)]
    pub sealed: bool,
    /// When each kept entry happened (Unix seconds): the close line's time for a transfer,
    /// the request's otherwise. Aligned with `items` by [`Session::stamp`].
    #[serde(default)]
    pub times: Vec<i64>,
    /// The heap bytes of `items` (their [`HeapBytes`]), kept up to date by every change of
    /// the table's own: recounting every entry after every line was a tenth of `report`'s
    /// parse-and-apply thread. Not saved: [`Bounded::recount`] when a session comes back.
    #[serde(skip)]
    heap: usize,
}

// By hand: the byte count is bookkeeping, not content (a saved list has none until recounted).
impl<T: PartialEq> PartialEq for Bounded<T> {
    fn eq(&self, other: &Self) -> bool {
        self.items == other.items
            && self.more == other.more
            && self.sealed == other.sealed
            && self.times == other.times
    }
}

impl<T> Default for Bounded<T> {
    fn default() -> Self {
        Bounded {
            items: Vec::new(),
            more: 0,
            sealed: false,
            times: Vec::new(),
            heap: 0,
        }
    }
}

impl<T: HeapBytes> Bounded<T> {
    fn push(&mut self, item: T, cap: usize) {
        if !self.sealed && self.items.len() < cap {
            self.heap += item.heap_bytes();
            self.items.push(item);
        } else {
            self.more += 1;
        }
    }

    /// Entry `i` changed in place by `change`: its heap bytes counted again.
    fn change(&mut self, i: usize, change: impl FnOnce(&mut T)) {
        let item = &mut self.items[i];
        let before = item.heap_bytes();
        change(item);
        self.heap = self.heap - before + item.heap_bytes();
    }

    fn remove(&mut self, i: usize) -> T {
        let item = self.items.remove(i);
        self.heap -= item.heap_bytes();
        item
    }

    /// Counts the entries' heap bytes again (a list made or changed outside the table).
    fn recount(&mut self) {
        self.heap = self.items.iter().map(T::heap_bytes).sum();
    }
}

impl<T> Bounded<T> {
    /// Gives the entries pushed since the last call the time `at`.
    fn stamp(&mut self, at: i64) {
        if self.times.len() < self.items.len() {
            self.times.resize(self.items.len(), at);
        }
    }

    /// The time of entry `i` (`fallback` for one saved before entries had times).
    pub fn time_of(&self, i: usize, fallback: i64) -> i64 {
        self.times.get(i).copied().unwrap_or(fallback)
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
    /// Not one session: the sum of a user's sessions beyond `watch.max_reports_per_user` in
    /// one window (see `outbox::Limiter`).
    Summarized,
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
    /// Time of the pending request's line: what its entry is stamped with.
    #[serde(default)]
    pending_time: i64,
    /// `-R` refused the pending open (its line comes after the open's own).
    #[serde(default)]
    pending_refusal: Option<Refusal>,
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
            pending_time: time,
            pending_refusal: None,
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
        self.pending_refusal = None;
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
            // A refusal no status answered: an extension left out of the hello.
            | Event::Refused { .. }
            | Event::SentStatus { .. } => {}
        }
        self.stamp();
    }

    /// Stamps the entries the last request added with that request's time.
    fn stamp(&mut self) {
        let at = self.pending_time;
        self.uploads.stamp(at);
        self.downloads.stamp(at);
        self.deletes.stamp(at);
        self.renames.stamp(at);
        self.links.stamp(at);
        self.mkdirs.stamp(at);
        self.rmdirs.stamp(at);
        self.changes.stamp(at);
        self.failures.stamp(at);
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
        let entry = |path, bytes| Transfer {
            path,
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
        }
        if download {
            t.downloads += 1;
            t.download_bytes = t.download_bytes.saturating_add(read);
        }
        if upload || download {
            self.know(&path, true);
        }
        // The name moves into the (usually one) list entry instead of being copied.
        match (upload, download) {
            (true, true) => {
                self.uploads.push(entry(path.clone(), written), cap);
                self.downloads.push(entry(path, read), cap);
            }
            (true, false) => self.uploads.push(entry(path, written), cap),
            (false, true) => self.downloads.push(entry(path, read), cap),
            (false, false) => {}
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
            if let Some(i) = self.uploads.items.iter().rposition(|u| u.path == old) {
                self.uploads.change(i, |up| {
                    up.path = new;
                    up.replaced = replaced;
                });
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
                self.renames.remove(i);
                if i < self.renames.times.len() {
                    self.renames.times.remove(i);
                }
                self.totals.renames = self.totals.renames.saturating_sub(1);
            } else {
                self.renames.change(i, |m| {
                    m.new = new;
                    m.replaced = replaced;
                });
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
        let refusal = self.pending_refusal.take();
        let Some(event) = self.pending.take() else {
            return;
        };
        let status = match refusal {
            Some(r) => format!("{status} ({})", refusal_text(r)),
            None => status,
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
            Event::Refused { request, reason } => {
                let failure = self.refused(&request, reason, status);
                self.totals.failures += 1;
                self.failures.push(failure, cap);
                return;
            }
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

impl Session {
    /// A request internal-sftp refused before running it: the line names no file, so a
    /// request on a handle gets the file opened last, the others none.
    fn refused(&mut self, request: &str, reason: Refusal, status: String) -> Failure {
        let (action, on_handle) = match request {
            "read" => ("read (download)", true),
            "write" => ("write (upload)", true),
            "fsetstat" | "fstat" | "fsync" | "fstatvfs" | "close" => (request, true),
            "opendir" | "readdir" => ("list directory", false),
            "setstat" | "lsetstat" => ("set attributes", false),
            "posix-rename" => ("rename", false),
            "copy-data" => ("copy", false),
            _ => (request, false),
        };
        let open = on_handle
            .then(|| self.open_files.last().map(|(p, _)| p.clone()))
            .flatten();
        if matches!(request, "read" | "write") {
            // Nothing went through that handle: its close is no download or upload.
            if let Some((_, flags)) = self.open_files.last_mut() {
                *flags = OpenFlags::default();
            }
        }
        Failure {
            action: action.to_string(),
            path: open.unwrap_or_else(|| "(name not logged)".into()),
            target: None,
            status: format!("{status} ({})", refusal_text(reason)),
        }
    }
}

/// Why, in the words of the report (docs/policy.md): the deny-list is only ever the no-write
/// list of a full quota; an allow-list is an access mode, with writes gone at a full quota.
fn refusal_text(r: Refusal) -> &'static str {
    match r {
        Refusal::ReadOnly => "refused: this client is read-only",
        Refusal::NotAllowListed => {
            "refused: not allowed for this client (its access mode, or its quota is full)"
        }
        Refusal::DenyListed => "refused: this client's quota is full",
    }
}

/// SipHash of a name under a key drawn once per process. With a key a client knows (std's
/// `DefaultHasher::new()` is SipHash with a zero key) two colliding names are a 2^32 search
/// away: deleting one would make a `posix-rename` onto the other (say the admin's
/// contract.pdf) report "nothing replaced". After a restart the saved hashes no longer match
/// and a rename onto a name seen before reads "may have replaced": the key only forgets.
fn name_hash(path: &str) -> u64 {
    use std::hash::{BuildHasher, RandomState};
    static KEY: std::sync::OnceLock<RandomState> = std::sync::OnceLock::new();
    KEY.get_or_init(RandomState::new).hash_one(path)
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
    /// Lines dropped because their host name is longer than [`MAX_HOST_BYTES`].
    #[serde(default)]
    pub oversized_lines: u64,
    /// Sessions reported early because a bound was reached.
    #[serde(default)]
    pub evicted_sessions: u64,
    /// Times a session reached `max_session_bytes` and its lists were sealed.
    #[serde(default)]
    pub sealed_sessions: u64,
}

/// Every open session, by host then pid, with what each holds in memory and an eviction
/// index, so that a full table costs O(log n) a line, not a scan.
///
/// Which session goes first when a bound is reached (`max_open_sessions`,
/// `max_sessions_bytes`):
/// 1. a session whose `session opened` line was never seen (a flood of made-up pids costs
///    nothing else), the least recently active first;
/// 2. else the least recently active session of the user whose open sessions hold the most
///    bytes: a user who floods pushes out their own sessions before anyone else's.
#[derive(Debug, Default)]
pub struct Sessions {
    /// Looked up on every line. foldhash, randomly seeded per map like std's SipHash but a
    /// tenth of its cost: hosts and pids are the log's and the kernel's, not a jailed client's
    /// to choose, and a sender who forges lines (UDP, `--trust-unverified`) still does not
    /// know the seed to aim collisions with. Names a client picks keep SipHash ([`name_hash`]).
    by_host: SeededMap<String, SeededMap<u32, u64>>,
    slots: IdMap<u64, Slot>,
    open: usize,
    next_id: u64,
    next_seq: u64,
    owners: Owners,
    /// Bytes held by all open sessions (as [`Session::heap_bytes`] counts them).
    bytes: usize,
    /// The session the current line went to: its bytes and rank are settled after the line.
    touched: Option<u64>,
    limits: Limits,
    pub stats: LineStats,
    /// Prefix shown relative in reports (`/data`).
    data_prefix: String,
    /// Who may send a session's lines ([`Sessions::apply_from`]).
    pub trust: Trust,
    /// Finished sessions not made reports yet ([`Sessions::defer_reports`]).
    deferred: Option<Vec<Finished>>,
}

/// Hashes the table's own numbers (slot and owner ids, handed out in sequence, never chosen
/// by a sender) with one multiplication instead of SipHash. Keys a sender picks (host names,
/// pids) keep the default, randomly keyed hasher.
#[derive(Debug, Default, Clone, Copy)]
struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0 ^ n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

type IdMap<K, V> = HashMap<K, V, std::hash::BuildHasherDefault<IdHasher>>;
type SeededMap<K, V> = foldhash::HashMap<K, V>;

#[derive(Debug)]
struct Slot {
    /// Boxed: a table grown for 50,000 sessions keeps its buckets, which then cost a few
    /// words each instead of a whole session; and saving moves boxes, not sessions.
    session: Box<Session>,
    /// Index into [`Owners`]; [`HEADLESS`] until the opening line named the user.
    owner: u32,
    /// Activity order: larger is more recent.
    seq: u64,
    bytes: usize,
}

/// The owner of sessions whose opening line was never seen.
const HEADLESS: u32 = 0;

/// Open sessions grouped by user, each group in activity order, and the users ranked by the
/// bytes their sessions hold.
#[derive(Debug, Default)]
struct Owners {
    /// Account names from sshd's `session opened` lines (see [`Sessions::by_host`]).
    ids: SeededMap<String, u32>,
    groups: IdMap<u32, Group>,
    /// The users (not [`HEADLESS`]) by the bytes their groups hold: made the first time a
    /// bound is reached, kept up to date from then on. Until then nothing reads it, and keeping
    /// it cost two B-tree updates on nearly every line (`report` over a year never needs it).
    ranking: Option<std::collections::BTreeSet<(usize, u32)>>,
    next: u32,
}

#[derive(Debug, Default)]
struct Group {
    name: String,
    bytes: usize,
    /// (seq, slot id), least recent first.
    by_activity: std::collections::BTreeSet<(u64, u64)>,
}

impl Owners {
    fn id_for(&mut self, user: &str) -> u32 {
        if let Some(&id) = self.ids.get(user) {
            return id;
        }
        self.next += 1;
        let id = self.next;
        self.ids.insert(user.to_string(), id);
        self.groups.insert(
            id,
            Group {
                name: user.to_string(),
                ..Group::default()
            },
        );
        if let Some(ranking) = &mut self.ranking {
            ranking.insert((0, id));
        }
        id
    }

    fn group(&mut self, owner: u32) -> &mut Group {
        self.groups.entry(owner).or_default()
    }

    fn add(&mut self, owner: u32, seq: u64, id: u64, bytes: usize) {
        let g = self.group(owner);
        g.by_activity.insert((seq, id));
        let old = g.bytes;
        g.bytes += bytes;
        let new = g.bytes;
        self.rerank(owner, old, new);
    }

    fn take(&mut self, owner: u32, seq: u64, id: u64, bytes: usize) {
        let g = self.group(owner);
        let was = g.by_activity.remove(&(seq, id));
        debug_assert!(was, "slot {id} not in group {owner}");
        let old = g.bytes;
        g.bytes = g.bytes.saturating_sub(bytes);
        let (new, empty) = (g.bytes, g.by_activity.is_empty());
        if owner != HEADLESS && empty {
            let name = std::mem::take(&mut g.name);
            self.groups.remove(&owner);
            self.ids.remove(&name);
            if let Some(ranking) = &mut self.ranking {
                ranking.remove(&(old, owner));
            }
        } else {
            self.rerank(owner, old, new);
        }
    }

    /// A slot of `owner` moved from (seq, bytes) `was` to `now`.
    fn touch(&mut self, owner: u32, was: (u64, usize), now: (u64, usize), id: u64) {
        let g = self.group(owner);
        if was.0 != now.0 {
            g.by_activity.remove(&(was.0, id));
            g.by_activity.insert((now.0, id));
        }
        let old = g.bytes;
        g.bytes = g.bytes - was.1 + now.1;
        let new = g.bytes;
        self.rerank(owner, old, new);
    }

    fn rerank(&mut self, owner: u32, old: usize, new: usize) {
        if owner != HEADLESS && old != new {
            if let Some(ranking) = &mut self.ranking {
                ranking.remove(&(old, owner));
                ranking.insert((new, owner));
            }
        }
    }

    /// The slot to report first when a bound is reached.
    fn victim(&mut self) -> Option<u64> {
        let groups = &self.groups;
        let first = |owner: u32| {
            groups
                .get(&owner)
                .and_then(|g| g.by_activity.first())
                .map(|&(_, id)| id)
        };
        first(HEADLESS).or_else(|| {
            let &(_, owner) = self
                .ranking
                .get_or_insert_with(|| Self::rank(groups))
                .last()?;
            first(owner)
        })
    }

    fn rank(groups: &IdMap<u32, Group>) -> std::collections::BTreeSet<(usize, u32)> {
        groups
            .iter()
            .filter(|(&owner, _)| owner != HEADLESS)
            .map(|(&owner, g)| (g.bytes, owner))
            .collect()
    }
}

/// Bytes charged per heap allocation beyond its capacity (allocator header and rounding).
const ALLOC_OVERHEAD: usize = 16;
/// What an open session costs besides its own heap data: the [`Session`] itself, its slot,
/// and its entries in the host/pid maps and the eviction index.
const SLOT_OVERHEAD: usize =
    std::mem::size_of::<Slot>() + std::mem::size_of::<Session>() + ALLOC_OVERHEAD + 160;

fn heap_of(s: &String) -> usize {
    match s.capacity() {
        0 => 0,
        capacity => capacity + ALLOC_OVERHEAD,
    }
}

/// Heap bytes owned by a value (what a list entry costs besides its slot in the list).
pub trait HeapBytes {
    fn heap_bytes(&self) -> usize;
}

impl HeapBytes for String {
    fn heap_bytes(&self) -> usize {
        heap_of(self)
    }
}

impl HeapBytes for Transfer {
    fn heap_bytes(&self) -> usize {
        heap_of(&self.path)
    }
}

impl HeapBytes for Move {
    fn heap_bytes(&self) -> usize {
        heap_of(&self.old) + heap_of(&self.new)
    }
}

impl HeapBytes for Change {
    fn heap_bytes(&self) -> usize {
        heap_of(&self.path) + heap_of(&self.what)
    }
}

impl HeapBytes for Failure {
    fn heap_bytes(&self) -> usize {
        heap_of(&self.action)
            + heap_of(&self.path)
            + self.target.as_ref().map_or(0, heap_of)
            + heap_of(&self.status)
    }
}

impl HeapBytes for Event {
    fn heap_bytes(&self) -> usize {
        match self {
            Event::SessionOpened { user, client } | Event::SessionClosed { user, client } => {
                heap_of(user) + heap_of(client)
            }
            Event::Rename { old, new, .. }
            | Event::Symlink { old, new, .. }
            | Event::Hardlink { old, new, .. } => heap_of(old) + heap_of(new),
            Event::Open { path, .. }
            | Event::Close { path, .. }
            | Event::Opendir { path }
            | Event::Closedir { path }
            | Event::Remove { path }
            | Event::Rmdir { path }
            | Event::Mkdir { path, .. }
            | Event::SetSize { path, .. }
            | Event::SetMode { path, .. }
            | Event::SetModtime { path }
            | Event::SetOwner { path, .. }
            | Event::Statvfs { path }
            | Event::Lookup { path } => heap_of(path),
            Event::SentStatus { status } => heap_of(status),
            Event::Refused { request, .. } => heap_of(request),
            Event::Cut { path, logged, .. } => {
                heap_of(path)
                    + logged.as_ref().map_or(0, |e| {
                        std::mem::size_of::<Event>() + ALLOC_OVERHEAD + e.heap_bytes()
                    })
            }
        }
    }
}

/// A list as memory accounting and shedding see it.
trait Sheddable {
    fn bytes(&self) -> usize;
    /// Moves the last kept entry to the count; the bytes it freed.
    fn shed_last(&mut self) -> usize;
    fn seal(&mut self);
    fn recount(&mut self);
}

impl<T: HeapBytes> Sheddable for Bounded<T> {
    fn bytes(&self) -> usize {
        let slots = if self.items.capacity() == 0 {
            0
        } else {
            self.items.capacity() * std::mem::size_of::<T>() + ALLOC_OVERHEAD
        };
        let times = self.times.capacity() * std::mem::size_of::<i64>();
        debug_assert_eq!(
            self.heap,
            self.items.iter().map(T::heap_bytes).sum::<usize>(),
            "a list changed behind its count"
        );
        slots + times + self.heap
    }

    fn shed_last(&mut self) -> usize {
        let Some(item) = self.items.pop() else {
            return 0;
        };
        self.more += 1;
        self.times.truncate(self.items.len());
        self.heap -= item.heap_bytes();
        let freed = item.heap_bytes() + std::mem::size_of::<T>() + std::mem::size_of::<i64>();
        if self.items.len() <= self.items.capacity() / 2 {
            self.items.shrink_to_fit();
            self.times.shrink_to_fit();
        }
        freed
    }

    fn seal(&mut self) {
        self.sealed = true;
    }

    fn recount(&mut self) {
        Bounded::recount(self);
    }
}

impl Session {
    /// What this session holds in memory, counted from the capacities of its strings and
    /// lists (plus [`ALLOC_OVERHEAD`] per allocation and [`SLOT_OVERHEAD`]).
    pub fn heap_bytes(&self) -> usize {
        let strings = heap_of(&self.host)
            + self.user.as_ref().map_or(0, heap_of)
            + self.client.as_ref().map_or(0, heap_of);
        let open_files = self.open_files.capacity() * std::mem::size_of::<(String, OpenFlags)>()
            + self
                .open_files
                .iter()
                .map(|(p, _)| heap_of(p))
                .sum::<usize>();
        let cut_open_files = self.cut_open_files.capacity()
            * std::mem::size_of::<(String, Option<bool>)>()
            + self
                .cut_open_files
                .iter()
                .map(|(p, _)| heap_of(p))
                .sum::<usize>();
        let known = self.known.capacity() * std::mem::size_of::<(u64, bool)>();
        let pending = self.pending.as_ref().map_or(0, Event::heap_bytes);
        SLOT_OVERHEAD
            + strings
            + open_files
            + cut_open_files
            + known
            + pending
            // Field by field, not through lists(): no virtual call a list on every line.
            + self.uploads.bytes()
            + self.downloads.bytes()
            + self.deletes.bytes()
            + self.renames.bytes()
            + self.links.bytes()
            + self.mkdirs.bytes()
            + self.rmdirs.bytes()
            + self.changes.bytes()
            + self.failures.bytes()
    }

    fn lists_mut(&mut self) -> [&mut dyn Sheddable; 9] {
        [
            &mut self.uploads,
            &mut self.downloads,
            &mut self.deletes,
            &mut self.renames,
            &mut self.links,
            &mut self.mkdirs,
            &mut self.rmdirs,
            &mut self.changes,
            &mut self.failures,
        ]
    }

    /// Brings the session to at most `budget` bytes: every list is sealed (it keeps what it
    /// has, totals stay exact) and the last entries of the largest lists are moved to their
    /// "… and N more" count until it fits. Returns the bytes it holds now.
    fn shed_to(&mut self, budget: usize) -> usize {
        let mut bytes = self.heap_bytes();
        for list in self.lists_mut() {
            list.seal();
        }
        while bytes > budget {
            let mut lists = self.lists_mut();
            let Some(largest) = lists
                .iter_mut()
                .filter(|l| l.bytes() > 0)
                .max_by_key(|l| l.bytes())
            else {
                break;
            };
            if largest.shed_last() == 0 {
                break;
            }
            bytes = self.heap_bytes();
        }
        // Remembered open files are bounded in number (32); drop the oldest if still over.
        while bytes > budget && !self.open_files.is_empty() {
            self.open_files.remove(0);
            bytes = self.heap_bytes();
        }
        while bytes > budget && !self.cut_open_files.is_empty() {
            self.cut_open_files.remove(0);
            bytes = self.heap_bytes();
        }
        bytes
    }
}

impl Session {
    /// An empty session to fill in by hand: the base of a summary report.
    pub fn blank(host: &str, pid: u32, time: i64) -> Session {
        Session::new(host, pid, time, time)
    }
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

    /// Bytes held by all open sessions.
    pub fn held_bytes(&self) -> usize {
        self.bytes
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
        let account =
            match self
                .trust
                .admit(&host, (uid, kernel_pid, relayed), pid, event, session_uid)
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
            Parsed::Unreadable { host, .. } | Parsed::Sftp(Line { host, .. })
                if host.len() > MAX_HOST_BYTES =>
            {
                self.stats.oversized_lines += 1;
            }
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
        self.settle(out);
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
                        s.stamp();
                    }
                    s.pending_us = None;
                    s.end = time;
                    s.last_seen = clock;
                }
            }
            Event::Refused {
                ref request,
                reason: reason @ Refusal::ReadOnly,
            } if request == "open" => {
                // Logged by the open handler after the open's own line: it is that open's.
                if let Some(s) = self.get_mut(&line.host, line.pid) {
                    if matches!(s.pending, Some(Event::Open { .. })) {
                        s.pending_refusal = Some(reason);
                    }
                    s.end = time;
                    s.last_seen = clock;
                }
            }
            event => {
                let s = self.session(&line.host, line.pid, time, clock, out);
                s.verbose |= matches!(event, Event::Lookup { .. } | Event::Refused { .. });
                s.commit_pending(cap);
                s.pending = Some(event);
                s.pending_us = line.time_us;
                s.pending_time = time;
            }
        }
    }

    fn id_of(&self, host: &str, pid: u32) -> Option<u64> {
        self.by_host.get(host)?.get(&pid).copied()
    }

    fn get_mut(&mut self, host: &str, pid: u32) -> Option<&mut Session> {
        let id = self.id_of(host, pid)?;
        self.touched = Some(id);
        self.slots.get_mut(&id).map(|slot| &mut *slot.session)
    }

    fn remove(&mut self, host: &str, pid: u32) -> Option<Session> {
        self.remove_boxed(host, pid).map(|s| *s)
    }

    fn remove_boxed(&mut self, host: &str, pid: u32) -> Option<Box<Session>> {
        let sessions = self.by_host.get_mut(host)?;
        let id = sessions.remove(&pid)?;
        if sessions.is_empty() {
            self.by_host.remove(host);
        }
        let slot = self.slots.remove(&id)?;
        self.owners.take(slot.owner, slot.seq, id, slot.bytes);
        self.bytes = self.bytes.saturating_sub(slot.bytes);
        if self.touched == Some(id) {
            self.touched = None;
        }
        self.open -= 1;
        Some(slot.session)
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
        let id = match self.id_of(host, pid) {
            Some(id) => id,
            None => {
                if self.open >= self.limits.max_open_sessions {
                    self.evict_one(out);
                }
                self.insert(Box::new(Session::new(host, pid, time, clock)))
            }
        };
        self.touched = Some(id);
        let s = &mut self.slots.get_mut(&id).expect("indexed slot").session;
        s.end = time;
        s.last_seen = clock;
        s
    }

    /// Adds a session to the table and the indexes (no bound is checked here).
    fn insert(&mut self, mut session: Box<Session>) -> u64 {
        // A restored session's lists come without their byte counts.
        for list in session.lists_mut() {
            list.recount();
        }
        self.next_id += 1;
        self.next_seq += 1;
        let (id, seq) = (self.next_id, self.next_seq);
        let owner = match (&session.start, &session.user) {
            (Some(_), Some(user)) => self.owners.id_for(user),
            _ => HEADLESS,
        };
        let bytes = session.heap_bytes();
        let previous = self
            .by_host
            .entry(session.host.clone())
            .or_default()
            .insert(session.pid, id);
        debug_assert!(previous.is_none());
        self.owners.add(owner, seq, id, bytes);
        self.bytes += bytes;
        self.open += 1;
        self.slots.insert(
            id,
            Slot {
                session,
                owner,
                seq,
                bytes,
            },
        );
        id
    }

    /// After a line: the session it went to moves to the most recent place of its owner's
    /// group (and to its user's group once the opening line named one), its bytes are counted
    /// again and held to `max_session_bytes`, and sessions are reported early while all of them
    /// hold more than `max_sessions_bytes`.
    fn settle(&mut self, out: &mut Vec<Report>) {
        if let Some(id) = self.touched.take() {
            self.resettle(id);
        }
        while self.bytes > self.limits.max_sessions_bytes && self.evict_one(out) {}
    }

    fn resettle(&mut self, id: u64) {
        let Some(slot) = self.slots.get_mut(&id) else {
            return;
        };
        let (old_owner, old_seq, old_bytes) = (slot.owner, slot.seq, slot.bytes);
        let mut bytes = slot.session.heap_bytes();
        if bytes > self.limits.max_session_bytes {
            if !slot.session.uploads.sealed {
                self.stats.sealed_sessions += 1;
            }
            bytes = slot.session.shed_to(self.limits.max_session_bytes);
        }
        let owner = match (old_owner, &slot.session.start, &slot.session.user) {
            (HEADLESS, Some(_), Some(user)) => self.owners.id_for(user),
            (owner, ..) => owner,
        };
        // Already its group's most recent (the usual case: a user has one session open):
        // the activity order stays as it is, without two B-tree updates a line.
        let latest = owner == old_owner
            && self
                .owners
                .groups
                .get(&owner)
                .and_then(|g| g.by_activity.last())
                == Some(&(old_seq, id));
        let seq = if latest {
            old_seq
        } else {
            self.next_seq += 1;
            self.next_seq
        };
        slot.owner = owner;
        slot.seq = seq;
        slot.bytes = bytes;
        if owner == old_owner {
            self.owners
                .touch(owner, (old_seq, old_bytes), (seq, bytes), id);
        } else {
            // Added before taken: a group left empty for a moment would be forgotten.
            self.owners.add(owner, seq, id, bytes);
            self.owners.take(old_owner, old_seq, id, old_bytes);
        }
        self.bytes = self.bytes - old_bytes + bytes;
    }

    /// Reports one session early (see [`Sessions`] for which); false when none is open.
    fn evict_one(&mut self, out: &mut Vec<Report>) -> bool {
        let Some(id) = self.owners.victim() else {
            return false;
        };
        let Some((host, pid)) = self
            .slots
            .get(&id)
            .map(|slot| (slot.session.host.clone(), slot.session.pid))
        else {
            return false;
        };
        match self.remove(&host, pid) {
            Some(s) => {
                self.stats.evicted_sessions += 1;
                self.finish(s, Ending::Evicted, out);
                true
            }
            None => false,
        }
    }

    fn finish(&mut self, mut s: Session, ending: Ending, out: &mut Vec<Report>) {
        s.commit_pending(self.limits.max_list_entries);
        if s.has_activity() {
            match &mut self.deferred {
                Some(sessions) => sessions.push((s, ending)),
                None => out.push(Report::from_session(&s, ending, &self.data_prefix)),
            }
        }
    }

    /// From now on finished sessions are kept as they are, for [`Sessions::take_finished`],
    /// instead of becoming reports in `out`: `report` builds the reports on another thread.
    pub fn defer_reports(&mut self) {
        self.deferred.get_or_insert_with(Vec::new);
    }

    /// The sessions finished since the last call (in the order they finished), when
    /// [`Sessions::defer_reports`] was called; make each a report with [`Report::from_session`]
    /// and [`Sessions::data_prefix`].
    pub fn take_finished(&mut self) -> Vec<Finished> {
        self.deferred
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// Prefix shown relative in reports (`/data`).
    pub fn data_prefix(&self) -> &str {
        &self.data_prefix
    }

    /// Finishes every session without a line since `now - idle_secs`.
    pub fn expire(&mut self, now: i64, idle_secs: u64, out: &mut Vec<Report>) {
        let limit = now.saturating_sub(i64::try_from(idle_secs).unwrap_or(i64::MAX));
        let stale: Vec<(String, u32)> = self
            .slots
            .values()
            .map(|slot| &slot.session)
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
        let mut all = self.take_all();
        all.sort_by_key(|s| (s.first_seen, s.pid));
        for s in all {
            self.finish(*s, ending, out);
        }
    }

    /// Removes and returns every open session (to save them on shutdown).
    pub fn take_all(&mut self) -> Vec<Box<Session>> {
        self.open = 0;
        self.bytes = 0;
        self.touched = None;
        self.by_host.clear();
        self.owners = Owners::default();
        self.slots.drain().map(|(_, slot)| slot.session).collect()
    }

    /// Puts back sessions saved by [`Sessions::take_all`]; their idle clock restarts at `clock`.
    /// The bounds apply again from the next line.
    pub fn restore(&mut self, mut sessions: Vec<Box<Session>>, clock: i64) {
        // Taken from the end, and the list shrunk as it empties: the saved sessions and the
        // table never both hold all of them.
        while let Some(mut s) = sessions.pop() {
            if sessions.len() < sessions.capacity() / 2 {
                sessions.shrink_to_fit();
            }
            s.last_seen = clock;
            if s.host.len() > MAX_HOST_BYTES {
                continue;
            }
            drop(self.remove_boxed(&s.host, s.pid));
            self.insert(s);
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

    /// Real sessions of an upload-only client (`-p` allow-list) and a read-only one (`-R`),
    /// OpenSSH 9.2 with sftp and curl (tests/e2e_policy_access.rs made them).
    #[test]
    fn refused_requests_are_failures_with_their_reason() {
        let (reports, sessions) = run(&fixture("openssh-9.2-refusals.log"));
        assert_eq!(sessions.open_count(), 0);
        assert_eq!(reports.len(), 5);
        let why = |r: &Report| -> Vec<(String, String, String)> {
            r.failures
                .iter()
                .map(|f| (f.action.clone(), f.path.clone(), f.status.clone()))
                .collect()
        };
        let allow = "Permission denied (refused: not allowed for this client (its access mode, or its quota is full))";
        // The hello's refused extensions (no status follows them) are nothing at all.
        for r in &reports {
            assert_eq!(r.unreadable_lines, 0, "{r:?}");
        }
        let r = &reports[0];
        assert_eq!(r.totals.uploads, 2);
        assert_eq!(r.totals.mkdirs, 1);
        assert!(why(r).is_empty(), "{:?}", why(r));
        let r = &reports[1];
        assert_eq!(
            why(r),
            [(
                "list directory".into(),
                "(name not logged)".into(),
                allow.into()
            )]
        );
        let r = &reports[2];
        assert_eq!(r.totals.downloads, 0, "a refused read is no download");
        assert_eq!(
            why(r),
            [("read (download)".into(), "others.pdf".into(), allow.into())]
        );
        let ro = "Permission denied (refused: this client is read-only)";
        assert_eq!(
            why(&reports[3]),
            [("open for writing".into(), "up.txt".into(), ro.into())]
        );
        assert_eq!(reports[3].totals.uploads, 0);
        assert_eq!(
            why(&reports[4]),
            [("remove".into(), "(name not logged)".into(), ro.into())]
        );
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
            .map(|r| {
                let deletes: Vec<String> = r.deletes.iter().map(|d| d.path.clone()).collect();
                (r.host.as_str(), deletes, r.complete)
            })
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

    /// Two names that collide under std's zero-key SipHash (found offline with a
    /// distinguished-points search, about 2^32 hashes: minutes on a laptop). A client deletes
    /// one so the session knows it as free, then posix-renames onto the other, a file it did
    /// not make: with the known key the report said nothing was replaced.
    #[test]
    fn a_name_colliding_under_a_known_hash_key_does_not_hide_a_replace() {
        use std::hash::{Hash, Hasher};
        const FREED: &str = "/data/fdf8299cab0c5b42";
        const TARGET: &str = "/data/b73f70904b9bd21a";
        let zero_key = |s: &str| {
            let mut h = std::hash::DefaultHasher::new();
            s.hash(&mut h);
            h.finish()
        };
        assert_eq!(
            zero_key(FREED),
            zero_key(TARGET),
            "std's DefaultHasher changed: find a new pair, or this test shows nothing"
        );
        let text = lines(
            "h",
            1,
            &[
                OPEN,
                "remove name \"/data/fdf8299cab0c5b42\"",
                "posix-rename old \"/data/x\" new \"/data/b73f70904b9bd21a\"",
                CLOSE,
            ],
        );
        let (reports, _) = run(&text);
        let got = moves(&reports[0]);
        assert_eq!(
            got,
            [(
                "x".into(),
                "b73f70904b9bd21a".into(),
                "REPLACED b73f70904b9bd21a if it existed".into()
            )]
        );
        assert_eq!(reports[0].totals.replaced, 1);
        assert_ne!(name_hash(FREED), name_hash(TARGET));
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
            ..Limits::default()
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
            ..Limits::default()
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

    fn opened(host: &str, pid: u32, user: &str) -> String {
        format!(
            "2026-11-27T16:04:18+00:00 {host} internal-sftp[{pid}]: session opened for local user {user} from [127.0.0.1]"
        )
    }

    fn msg(host: &str, pid: u32, m: &str) -> String {
        format!("2026-11-27T16:04:18+00:00 {host} internal-sftp[{pid}]: {m}")
    }

    fn feed(sessions: &mut Sessions, line: &str, out: &mut Vec<Report>) {
        sessions.apply(parse_line(line.as_bytes(), NOW), NOW, out);
    }

    /// Sum of what every open session holds, counted from scratch.
    fn recount(sessions: &Sessions) -> usize {
        sessions
            .slots
            .values()
            .map(|s| s.session.heap_bytes())
            .sum()
    }

    #[test]
    fn a_host_name_longer_than_a_dns_name_is_dropped() {
        let mut sessions = Sessions::new(Limits::default(), "/data");
        let mut out = Vec::new();
        let host = "h".repeat(MAX_HOST_BYTES + 1);
        feed(&mut sessions, &opened(&host, 1, "alice"), &mut out);
        feed(
            &mut sessions,
            &msg(&host, 1, "remove name \"/data/x\""),
            &mut out,
        );
        feed(&mut sessions, &msg(&host, 1, "garbled"), &mut out);
        assert_eq!(sessions.open_count(), 0);
        assert_eq!(sessions.stats.oversized_lines, 3);
        let host = "h".repeat(MAX_HOST_BYTES);
        feed(&mut sessions, &opened(&host, 1, "alice"), &mut out);
        assert_eq!(sessions.open_count(), 1);
    }

    /// 500-byte names in every list: the session stays within its budget, keeps the first
    /// entries, and its totals stay exact.
    #[test]
    fn a_session_holds_at_most_max_session_bytes() {
        let limits = Limits {
            max_session_bytes: 16 << 10,
            ..Limits::default()
        };
        let mut sessions = Sessions::new(limits, "/data");
        let mut out = Vec::new();
        feed(&mut sessions, &opened("h", 1, "mallory"), &mut out);
        let long = |i: usize| {
            format!(
                "/data/{i:04}-{}",
                "\\303\\251".repeat(20) + &"n".repeat(250)
            )
        };
        for i in 0..1000 {
            let m = match i % 4 {
                0 => format!("remove name \"{}\"", long(i)),
                1 => format!("mkdir name \"{}\" mode 0777", long(i)),
                2 => format!("posix-rename old \"{}\" new \"/data/{i}\"", long(i)),
                _ => format!("set \"{}\" mode 0600", long(i)),
            };
            feed(&mut sessions, &msg("h", 1, &m), &mut out);
            assert!(
                sessions.held_bytes() <= 16 << 10,
                "{}",
                sessions.held_bytes()
            );
            assert_eq!(sessions.held_bytes(), recount(&sessions));
        }
        assert_eq!(sessions.stats.sealed_sessions, 1);
        feed(
            &mut sessions,
            &msg(
                "h",
                1,
                "session closed for local user mallory from [127.0.0.1]",
            ),
            &mut out,
        );
        let r = &out[0];
        assert_eq!(r.totals.deletes, 250);
        assert_eq!(r.totals.mkdirs, 250);
        assert_eq!(r.totals.renames, 250);
        assert_eq!(r.totals.changes, 250);
        assert!(!r.deletes.is_empty() && r.deletes[0].starts_with("0000-"));
        assert_eq!(r.deletes.len() as u64 + r.deletes_more, 250);
        assert_eq!(r.mkdirs.len() as u64 + r.mkdirs_more, 250);
        assert_eq!(sessions.held_bytes(), 0);
    }

    /// Many sessions with long lists: all of them together stay within max_sessions_bytes.
    #[test]
    fn all_sessions_hold_at_most_max_sessions_bytes() {
        let limits = Limits {
            max_session_bytes: 32 << 10,
            max_sessions_bytes: 1 << 20,
            ..Limits::default()
        };
        let mut sessions = Sessions::new(limits, "/data");
        let mut out = Vec::new();
        let name = "x".repeat(400);
        for pid in 1..=200 {
            feed(&mut sessions, &opened("h", pid, "mallory"), &mut out);
            for i in 0..40 {
                let m = format!("remove name \"/data/{name}{i}\"");
                feed(&mut sessions, &msg("h", pid, &m), &mut out);
                assert!(sessions.held_bytes() <= 1 << 20);
            }
        }
        assert_eq!(sessions.held_bytes(), recount(&sessions));
        assert!(
            sessions.stats.evicted_sessions > 100,
            "{:?}",
            sessions.stats
        );
        // Every evicted session was reported, with its exact count.
        assert_eq!(out.len() as u64, sessions.stats.evicted_sessions);
        assert!(out
            .iter()
            .all(|r| r.totals.deletes == 40 && r.ending == Ending::Evicted));
    }

    #[test]
    fn eviction_takes_sessions_without_an_opening_line_first() {
        let limits = Limits {
            max_open_sessions: 3,
            ..Limits::default()
        };
        let mut sessions = Sessions::new(limits, "/data");
        let mut out = Vec::new();
        feed(&mut sessions, &opened("h", 1, "alice"), &mut out);
        feed(
            &mut sessions,
            &msg("h", 1, "remove name \"/data/a\""),
            &mut out,
        );
        for pid in 100..110 {
            feed(
                &mut sessions,
                &msg("h", pid, "remove name \"/data/forged\""),
                &mut out,
            );
        }
        // Headless sessions pushed out each other, least recent first; alice stayed.
        assert_eq!(sessions.open_count(), 3);
        assert!(sessions.id_of("h", 1).is_some());
        let pids: Vec<u32> = out.iter().map(|r| r.pid).collect();
        assert_eq!(pids, (100..108).collect::<Vec<_>>());
        assert!(out.iter().all(|r| r.ending == Ending::Evicted));
    }

    /// A user who opens session after session (as a jailed user with a valid uid can) pushes
    /// out their own sessions, never another user's, and the other user's report is whole.
    #[test]
    fn a_flooding_user_evicts_their_own_sessions() {
        let limits = Limits {
            max_open_sessions: 50,
            ..Limits::default()
        };
        let mut sessions = Sessions::new(limits, "/data");
        let mut out = Vec::new();
        feed(&mut sessions, &opened("h", 1, "alice"), &mut out);
        for pid in 1000..6000 {
            feed(&mut sessions, &opened("h", pid, "mallory"), &mut out);
            let m = format!("remove name \"/data/{}\"", "m".repeat(300));
            feed(&mut sessions, &msg("h", pid, &m), &mut out);
            if pid % 500 == 0 {
                let m = format!("remove name \"/data/a{pid}\"");
                feed(&mut sessions, &msg("h", 1, &m), &mut out);
            }
        }
        let users: Vec<_> = out
            .iter()
            .map(|r| (r.user.as_str(), r.pid))
            .filter(|u| u.0 != "mallory")
            .collect();
        assert!(users.is_empty(), "{users:?}");
        assert_eq!(sessions.stats.evicted_sessions, 5000 - 49);
        feed(
            &mut sessions,
            &msg(
                "h",
                1,
                "session closed for local user alice from [127.0.0.1]",
            ),
            &mut out,
        );
        let alice = out.last().unwrap();
        assert_eq!(alice.user, "alice");
        assert!(alice.complete);
        assert_eq!(alice.totals.deletes, 10);
    }

    /// Among users, the one holding the most bytes loses first, its least recent session.
    #[test]
    fn eviction_takes_the_largest_users_least_recent_session() {
        let limits = Limits {
            max_open_sessions: 4,
            ..Limits::default()
        };
        let mut sessions = Sessions::new(limits, "/data");
        let mut out = Vec::new();
        feed(&mut sessions, &opened("h", 1, "alice"), &mut out);
        feed(&mut sessions, &opened("h", 2, "bob"), &mut out);
        feed(&mut sessions, &opened("h", 3, "bob"), &mut out);
        feed(&mut sessions, &opened("h", 4, "alice"), &mut out);
        feed(
            &mut sessions,
            &msg("h", 2, "remove name \"/data/b2\""),
            &mut out,
        );
        feed(
            &mut sessions,
            &msg("h", 3, "remove name \"/data/b3\""),
            &mut out,
        );
        let big = format!("remove name \"/data/{}\"", "a".repeat(400));
        feed(&mut sessions, &msg("h", 4, &big), &mut out);
        feed(
            &mut sessions,
            &msg("h", 1, "remove name \"/data/a1\""),
            &mut out,
        );
        // alice holds more (a 400-byte name): her least recent session (pid 4) goes.
        feed(&mut sessions, &opened("h", 5, "carol"), &mut out);
        assert_eq!(out.iter().map(|r| r.pid).collect::<Vec<_>>(), [4]);
        // Now bob holds the most: his least recent session (pid 2) goes.
        feed(&mut sessions, &opened("h", 6, "carol"), &mut out);
        assert_eq!(out.iter().map(|r| r.pid).collect::<Vec<_>>(), [4, 2]);
    }

    #[test]
    fn restore_rebuilds_the_accounting() {
        let (_, mut sessions) = run(&lines("h", 1, &[OPEN, "remove name \"/data/x\""]));
        let held = sessions.held_bytes();
        let saved = serde_json::to_string(&sessions.take_all()).unwrap();
        assert_eq!(sessions.held_bytes(), 0);
        let mut again = Sessions::new(Limits::default(), "/data");
        again.restore(serde_json::from_str(&saved).unwrap(), NOW);
        assert_eq!(again.open_count(), 1);
        assert_eq!(again.held_bytes(), recount(&again));
        assert!(again.held_bytes() <= held + 64);
        // Restored with its user: a headless flood evicts it last.
        assert_eq!(again.slots.values().next().unwrap().owner, 1);
    }

    /// Every index agrees with the table after any mix of lines (opening, closing, pid reuse,
    /// lines without an opening, long names, evictions by count and by bytes).
    #[test]
    fn the_indexes_stay_consistent_under_random_lines() {
        let limits = Limits {
            max_open_sessions: 40,
            max_session_bytes: 4096,
            max_sessions_bytes: 1 << 20,
            ..Limits::default()
        };
        let mut sessions = Sessions::new(limits, "/data");
        let mut out = Vec::new();
        let mut seed: u64 = 7;
        let mut next = |n: u64| {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            (seed >> 33) % n
        };
        for round in 0..20_000 {
            let pid = next(80) as u32;
            let host = ["a", "b"][next(2) as usize];
            let user = ["alice", "bob", "mallory"][next(3) as usize];
            let m = match next(6) {
                0 => format!("session opened for local user {user} from [127.0.0.1]"),
                1 => format!("session closed for local user {user} from [127.0.0.1]"),
                2 => format!("remove name \"/data/{}\"", "x".repeat(next(400) as usize)),
                3 => "sent status No such file".to_string(),
                4 => format!("open \"/data/{}\" flags WRITE,CREATE mode 0644", next(9)),
                _ => format!("close \"/data/{}\" bytes read 0 written 5", next(9)),
            };
            feed(&mut sessions, &msg(host, pid, &m), &mut out);
            if round % 97 == 0 {
                assert_eq!(sessions.held_bytes(), recount(&sessions));
                assert_eq!(sessions.open_count(), sessions.slots.len());
                let grouped: usize = sessions
                    .owners
                    .groups
                    .values()
                    .map(|g| g.by_activity.len())
                    .sum();
                assert_eq!(grouped, sessions.slots.len());
                let owners = &sessions.owners;
                // Before the first eviction the ranking is not kept: it must then be what
                // it would be made from.
                let ranking = owners
                    .ranking
                    .clone()
                    .unwrap_or_else(|| Owners::rank(&owners.groups));
                assert_eq!(ranking, Owners::rank(&owners.groups));
                let ranked: usize = ranking.iter().map(|&(b, _)| b).sum();
                let headless = owners.groups.get(&HEADLESS).map_or(0, |g| g.bytes);
                assert_eq!(ranked + headless, sessions.held_bytes());
                assert_eq!(owners.ids.len(), ranking.len());
                assert!(sessions.open_count() <= 40);
                for slot in sessions.slots.values() {
                    assert!(slot.bytes <= 4096, "{}", slot.bytes);
                }
            }
        }
        assert!(sessions.stats.evicted_sessions > 0);
    }
}
