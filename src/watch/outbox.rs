//! The durable outbox in `<state_dir>/outbox`: every report is written here, and synced, before
//! any delivery attempt; it leaves only after the transport accepted it.
//!
//! Layout: append-only segments `NNNNNNNNNNNNNNNN.seg` holding one JSON report per line, and
//! beside each an `NNNNNNNNNNNNNNNN.ack` listing (one number a line) the records delivered.
//! Appending to one file and syncing it once per batch ("group commit") costs one fdatasync per
//! batch instead of one per report, which is what lets a replay of 20,000 sessions finish in
//! well under a second. A segment whose records are all acknowledged is deleted.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use anyhow::{Context, Result};

use super::report::Report;
use super::session::{Ending, Session};
use super::time::now_unix;
use crate::tz::format_local;

/// Records per segment before a new one is started (bounds what a fully delivered outbox
/// keeps on disk, and what the delivery thread holds in memory).
const SEGMENT_RECORDS: usize = 1024;
/// Bytes per segment before a new one is started: the delivery thread reads the unread part
/// of a segment at once, and a flood of large reports must not make that large.
const SEGMENT_BYTES: u64 = 2 << 20;
/// Appended bytes held before they are committed on their own.
const MAX_UNCOMMITTED_BYTES: usize = 2 << 20;

/// What the writer has made durable; the delivery thread reads nothing beyond it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Committed {
    pub segment: u64,
    pub len: u64,
    /// The writer is gone: once everything is delivered the delivery thread may stop.
    pub closed: bool,
    /// Shut down now: stop after the message in hand, even with records left.
    pub stop: bool,
}

#[derive(Debug, Default)]
pub struct Shared {
    state: Mutex<Committed>,
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Committed> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn snapshot(&self) -> Committed {
        *self.lock()
    }

    fn update(&self, f: impl FnOnce(&mut Committed)) {
        f(&mut self.lock());
        self.changed.notify_all();
    }

    /// Asks the delivery thread to stop after the message in hand.
    pub fn stop(&self) {
        self.update(|c| c.stop = true);
    }

    /// Waits until the committed state differs from `seen`, or `timeout` passes.
    pub fn wait_change(&self, seen: Committed, timeout: Duration) -> Committed {
        let guard = self.lock();
        let (guard, _) = self
            .changed
            .wait_timeout_while(guard, timeout, |c| *c == seen)
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *guard
    }
}

pub fn segment_path(dir: &Path, segment: u64) -> PathBuf {
    dir.join(format!("{segment:016}.seg"))
}

pub fn ack_path(dir: &Path, segment: u64) -> PathBuf {
    dir.join(format!("{segment:016}.ack"))
}

/// Segment numbers present in the outbox, oldest first.
pub fn list_segments(dir: &Path) -> Result<Vec<u64>> {
    let mut out = Vec::new();
    for entry in fs_err::read_dir(dir).context("cannot list the outbox")? {
        let entry = entry.context("cannot list the outbox")?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(n) = name
            .strip_suffix(".seg")
            .and_then(|n| n.parse::<u64>().ok())
        {
            out.push(n);
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// Record numbers of `segment` that were delivered.
pub fn read_acks(dir: &Path, segment: u64) -> Result<HashSet<u64>> {
    match fs_err::read_to_string(ack_path(dir, segment)) {
        Ok(text) => Ok(text.lines().filter_map(|l| l.parse().ok()).collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(HashSet::new()),
        Err(e) => Err(e).context("cannot read the outbox acknowledgements"),
    }
}

/// Durably notes that `records` of `segment` were accepted by the transport.
pub fn write_acks(dir: &Path, segment: u64, records: &[u64]) -> Result<()> {
    if records.is_empty() {
        return Ok(());
    }
    let mut text = String::with_capacity(records.len() * 6);
    for r in records {
        text.push_str(&r.to_string());
        text.push('\n');
    }
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(ack_path(dir, segment))
        .context("cannot open the outbox acknowledgements")?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_data())
        .context("cannot write the outbox acknowledgements")
}

/// Deletes a fully delivered segment.
pub fn remove_segment(dir: &Path, segment: u64) -> Result<()> {
    fs_err::remove_file(segment_path(dir, segment))?;
    match fs_err::remove_file(ack_path(dir, segment)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
        _ => Ok(()),
    }
}

/// Creates `dir` (mode 0700) if needed.
pub fn ensure_private_dir(dir: &Path) -> Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create {}", dir.display()))
}

/// Makes the creation or removal of entries in `dir` durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("cannot sync directory {}", dir.display()))
}

/// Appends reports to the newest segment; [`Writer::commit`] makes them durable and visible.
pub struct Writer {
    dir: PathBuf,
    segment: u64,
    file: File,
    len: u64,
    records: usize,
    /// Records appended since the last commit.
    uncommitted: usize,
    buf: Vec<u8>,
    shared: Arc<Shared>,
    limiter: Option<Limiter>,
}

impl Writer {
    /// Starts a new segment after every existing one (those are older runs' records).
    pub fn open(dir: &Path) -> Result<Writer> {
        ensure_private_dir(dir)?;
        let segment = list_segments(dir)?.last().map_or(1, |n| n + 1);
        let file = new_segment(dir, segment)?;
        let shared = Arc::new(Shared::default());
        shared.update(|c| {
            c.segment = segment;
            c.len = 0;
        });
        Ok(Writer {
            dir: dir.to_path_buf(),
            segment,
            file,
            len: 0,
            records: 0,
            uncommitted: 0,
            buf: Vec::with_capacity(64 * 1024),
            shared,
            limiter: None,
        })
    }

    /// From now on at most `limits` reports per window are written one by one; the rest are
    /// summed up per user (see [`Limiter`]).
    pub fn limit_reports(&mut self, limits: ReportLimits) {
        self.limiter = Some(Limiter::new(limits));
    }

    pub fn shared(&self) -> Arc<Shared> {
        Arc::clone(&self.shared)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Queues a report; it is neither durable nor delivered before [`Writer::commit`] (which
    /// happens on its own once [`MAX_UNCOMMITTED_BYTES`] are queued). Past the report limits
    /// the report is summed into its user's summary instead.
    pub fn append(&mut self, report: &Report) -> Result<()> {
        if let Some(limiter) = &mut self.limiter {
            let due = limiter.roll(now_unix());
            let admitted = limiter.admit(report);
            for summary in due {
                self.write_record(&summary)?;
            }
            if !admitted {
                return Ok(());
            }
        }
        self.write_record(report)?;
        if self.buf.len() >= MAX_UNCOMMITTED_BYTES {
            self.commit()?;
        }
        Ok(())
    }

    fn write_record(&mut self, report: &Report) -> Result<()> {
        serde_json::to_writer(&mut self.buf, report).context("cannot serialize a report")?;
        self.buf.push(b'\n');
        self.records += 1;
        self.uncommitted += 1;
        Ok(())
    }

    /// Summaries whose window has ended.
    fn queue_due_summaries(&mut self) -> Result<()> {
        let due = match &mut self.limiter {
            Some(limiter) => limiter.roll(now_unix()),
            None => return Ok(()),
        };
        for summary in due {
            self.write_record(&summary)?;
        }
        Ok(())
    }

    pub fn has_uncommitted(&self) -> bool {
        !self.buf.is_empty()
    }

    /// Reports appended since the last commit.
    pub fn uncommitted(&self) -> usize {
        self.uncommitted
    }

    /// Writes and syncs what was appended, then lets the delivery thread see it.
    pub fn commit(&mut self) -> Result<()> {
        self.queue_due_summaries()?;
        if self.buf.is_empty() {
            return Ok(());
        }
        self.file
            .write_all(&self.buf)
            .and_then(|()| self.file.sync_data())
            .context("cannot write to the outbox")?;
        self.len += self.buf.len() as u64;
        self.buf.clear();
        self.uncommitted = 0;
        if self.records >= SEGMENT_RECORDS || self.len >= SEGMENT_BYTES {
            self.segment += 1;
            self.file = new_segment(&self.dir, self.segment)?;
            self.len = 0;
            self.records = 0;
        }
        // A finished segment is read to its end by the delivery thread on its own.
        let (segment, len) = (self.segment, self.len);
        self.shared.update(|c| {
            c.segment = segment;
            c.len = len;
        });
        Ok(())
    }

    /// Commits the rest (with every pending summary) and tells the delivery thread no more
    /// will come.
    pub fn close(&mut self) -> Result<()> {
        self.queue_all_summaries()?;
        self.commit()?;
        self.shared.update(|c| c.closed = true);
        Ok(())
    }
}

impl Writer {
    fn queue_all_summaries(&mut self) -> Result<()> {
        let all = self
            .limiter
            .as_mut()
            .map(Limiter::take_all)
            .unwrap_or_default();
        for summary in all {
            self.write_record(&summary)?;
        }
        Ok(())
    }
}

impl Drop for Writer {
    /// A live watcher stops without [`Writer::close`]: its pending summaries still go into the
    /// outbox, for the next start to deliver.
    fn drop(&mut self) {
        let pending = self
            .limiter
            .as_ref()
            .is_some_and(|l| !l.summaries.is_empty());
        if pending {
            let written = self.queue_all_summaries().and_then(|()| self.commit());
            if let Err(e) = written {
                eprintln!("sftpctl watch: warning: cannot keep the summary reports: {e:#}");
            }
        }
    }
}

/// How many reports the outbox takes one by one (`watch.max_reports_per_user`,
/// `watch.max_reports_per_window`, `watch.report_window_secs`).
#[derive(Debug, Clone, Copy)]
pub struct ReportLimits {
    pub per_user: u32,
    pub per_window: u32,
    pub window_secs: u64,
}

impl ReportLimits {
    pub fn from_config(watch: &crate::config::Watch) -> ReportLimits {
        ReportLimits {
            per_user: watch.max_reports_per_user,
            per_window: watch.max_reports_per_window,
            window_secs: watch.report_window_secs,
        }
    }
}

/// Users with a summary of their own in one window; the sessions of any further user go
/// into one shared summary.
const MAX_SUMMARIES: usize = 1000;
const OTHER_USERS: &str = "(other users)";

/// Keeps a flood from filling the disk with reports. Time is cut into fixed windows of the
/// wall clock at which reports are written (never the lines' own times: a sender who forges
/// them could otherwise start a new window at will). In each window the first
/// `per_user` reports of a user, and the first `per_window` of all, are written as they come;
/// every further session of that user is added to one summary report (session count, exact
/// totals, first start, last end; no lists), written when the window ends. So the outbox
/// takes at most `per_window + users` reports a window, each at most `max_session_bytes`
/// large, and no session goes untold.
#[derive(Debug)]
pub struct Limiter {
    limits: ReportLimits,
    /// Start of the current window.
    window: Option<i64>,
    written: u32,
    per_user: std::collections::HashMap<String, u32>,
    summaries: std::collections::BTreeMap<String, Summary>,
}

#[derive(Debug)]
struct Summary {
    host: String,
    several_hosts: bool,
    sessions: u64,
    incomplete: u64,
    start: i64,
    end: i64,
    totals: super::report::Totals,
    unreadable_lines: u64,
    /// The window-wide limit (not only the user's) was reached.
    all_users: bool,
}

impl Limiter {
    pub fn new(limits: ReportLimits) -> Limiter {
        Limiter {
            limits,
            window: None,
            written: 0,
            per_user: Default::default(),
            summaries: Default::default(),
        }
    }

    fn window_of(&self, time: i64) -> i64 {
        let secs = i64::try_from(self.limits.window_secs.max(1)).unwrap_or(i64::MAX);
        time.div_euclid(secs) * secs
    }

    /// Moves to the window of `now` if it is a later one; the summaries of the old window.
    pub fn roll(&mut self, now: i64) -> Vec<Report> {
        let window = self.window_of(now);
        match self.window {
            Some(current) if window <= current => Vec::new(),
            _ => {
                let due = self.take_all();
                self.window = Some(window);
                self.written = 0;
                self.per_user.clear();
                due
            }
        }
    }

    /// Whether `report` is written as it is; if not, it was added to its user's summary.
    pub fn admit(&mut self, report: &Report) -> bool {
        let user_count = self.per_user.get(&report.user).copied().unwrap_or(0);
        let all_users = self.written >= self.limits.per_window;
        if !all_users && user_count < self.limits.per_user {
            self.written += 1;
            *self.per_user.entry(report.user.clone()).or_default() += 1;
            return true;
        }
        let key =
            if self.summaries.len() < MAX_SUMMARIES || self.summaries.contains_key(&report.user) {
                report.user.clone()
            } else {
                OTHER_USERS.to_string()
            };
        let start = report.start.unwrap_or(report.end);
        let s = self.summaries.entry(key).or_insert_with(|| Summary {
            host: report.host.clone(),
            several_hosts: false,
            sessions: 0,
            incomplete: 0,
            start,
            end: report.end,
            totals: Default::default(),
            unreadable_lines: 0,
            all_users: false,
        });
        s.several_hosts |= s.host != report.host;
        s.sessions += 1;
        s.incomplete += u64::from(!report.complete);
        s.start = s.start.min(start);
        s.end = s.end.max(report.end);
        s.unreadable_lines = s.unreadable_lines.saturating_add(report.unreadable_lines);
        s.all_users |= all_users;
        add_totals(&mut s.totals, &report.totals);
        false
    }

    /// Every pending summary as a report (end of input, stop).
    pub fn take_all(&mut self) -> Vec<Report> {
        let limits = self.limits;
        std::mem::take(&mut self.summaries)
            .into_iter()
            .map(|(user, s)| summary_report(&user, s, limits))
            .collect()
    }
}

fn add_totals(sum: &mut super::report::Totals, t: &super::report::Totals) {
    let add = |a: &mut u64, b: u64| *a = a.saturating_add(b);
    add(&mut sum.uploads, t.uploads);
    add(&mut sum.upload_bytes, t.upload_bytes);
    add(&mut sum.downloads, t.downloads);
    add(&mut sum.download_bytes, t.download_bytes);
    add(&mut sum.deletes, t.deletes);
    add(&mut sum.renames, t.renames);
    add(&mut sum.links, t.links);
    add(&mut sum.mkdirs, t.mkdirs);
    add(&mut sum.rmdirs, t.rmdirs);
    add(&mut sum.changes, t.changes);
    add(&mut sum.failures, t.failures);
    add(&mut sum.incomplete_transfers, t.incomplete_transfers);
}

fn summary_report(user: &str, s: Summary, limits: ReportLimits) -> Report {
    let host = if s.several_hosts {
        format!("{} and other hosts", s.host)
    } else {
        s.host.clone()
    };
    let mut base = Session::blank(&host, 0, s.start);
    base.start = Some(s.start);
    base.end = s.end;
    base.user = Some(user.to_string());
    base.client = Some(format!("{} sessions", s.sessions));
    let t = s.totals;
    base.uploads.more = t.uploads;
    base.downloads.more = t.downloads;
    base.deletes.more = t.deletes;
    base.renames.more = t.renames;
    base.links.more = t.links;
    base.mkdirs.more = t.mkdirs;
    base.rmdirs.more = t.rmdirs;
    base.changes.more = t.changes;
    base.failures.more = t.failures;
    base.totals = t;
    base.unreadable_lines = s.unreadable_lines;
    let mut report = Report::from_session(&base, Ending::Summarized, "");
    let why = if s.all_users {
        format!(
            "{} reports of all users were already written in this window of {} seconds (watch.max_reports_per_window)",
            limits.per_window, limits.window_secs
        )
    } else {
        format!(
            "{} reports of {user} were already written in this window of {} seconds (watch.max_reports_per_user)",
            limits.per_user, limits.window_secs
        )
    };
    report.ending_text = format!(
        "{} sessions ({} of them incomplete), started from {} and ended by {}, are summed up in this one report because {why}; their lists are not shown, the totals are exact",
        s.sessions,
        s.incomplete,
        format_local(s.start),
        format_local(s.end)
    );
    report
}

fn new_segment(dir: &Path, segment: u64) -> Result<File> {
    let file = OpenOptions::new()
        .create_new(true)
        .append(true)
        .mode(0o600)
        .open(segment_path(dir, segment))
        .with_context(|| format!("cannot create an outbox segment in {}", dir.display()))?;
    sync_dir(dir)?;
    Ok(file)
}

/// Reports in the outbox not yet delivered (for messages to the admin).
pub fn count_pending(dir: &Path) -> Result<u64> {
    let mut n = 0;
    for segment in list_segments(dir)? {
        let acks = read_acks(dir, segment)?;
        let text = fs_err::read(segment_path(dir, segment))?;
        let lines = text.split(|&b| b == b'\n').count().saturating_sub(1) as u64;
        n += lines.saturating_sub(acks.len() as u64);
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 3600;
    /// A fixed hour in the past (windows never run ahead of the wall clock).
    const T0: i64 = 1_700_000_000 / HOUR * HOUR;

    fn report(user: &str, end: i64, deletes: u64) -> Report {
        let mut r = super::super::report::example();
        r.user = user.to_string();
        r.end = end;
        r.totals = Default::default();
        r.totals.deletes = deletes;
        r
    }

    fn limits(per_user: u32, per_window: u32) -> ReportLimits {
        ReportLimits {
            per_user,
            per_window,
            window_secs: HOUR as u64,
        }
    }

    #[test]
    fn a_user_past_the_limit_is_summed_up_when_the_window_ends() {
        let mut l = Limiter::new(limits(2, 100));
        let mut written = Vec::new();
        for i in 0..5 {
            assert!(l.roll(T0 + i).is_empty());
            if l.admit(&report("mallory", T0 + i, 3)) {
                written.push(i);
            }
        }
        assert!(
            l.admit(&report("alice", T0 + 10, 1)),
            "another user is not held back"
        );
        assert_eq!(written, [0, 1]);
        let due = l.roll(T0 + HOUR);
        assert_eq!(due.len(), 1);
        let s = &due[0];
        assert_eq!(s.user, "mallory");
        assert_eq!(s.ending, Ending::Summarized);
        assert_eq!(s.client, "3 sessions");
        assert_eq!(s.totals.deletes, 9);
        assert_eq!(s.deletes_more, 9);
        assert!(!s.complete);
        assert!(
            s.ending_text.contains("watch.max_reports_per_user"),
            "{}",
            s.ending_text
        );
        // The new window starts with a fresh count.
        assert!(l.admit(&report("mallory", T0 + HOUR, 1)));
    }

    #[test]
    fn all_users_together_are_bounded_and_users_beyond_the_summaries_share_one() {
        let mut l = Limiter::new(limits(1_000, 10));
        let mut written = 0;
        for i in 0..(10 + MAX_SUMMARIES + 5) {
            l.roll(T0);
            written += usize::from(l.admit(&report(&format!("u{i}"), T0, 1)));
        }
        assert_eq!(written, 10);
        let due = l.take_all();
        assert_eq!(due.len(), MAX_SUMMARIES + 1);
        let other = due.iter().find(|r| r.user == OTHER_USERS).unwrap();
        assert_eq!(other.totals.deletes, 5);
        assert!(other.ending_text.contains("watch.max_reports_per_window"));
        let counted: u64 = due.iter().map(|r| r.totals.deletes).sum();
        assert_eq!(counted as usize, MAX_SUMMARIES + 5);
    }

    /// The window follows the clock it is given, never the reports' own (forgeable) times:
    /// reports that claim to end in other hours do not start new windows.
    #[test]
    fn forged_session_times_do_not_start_new_windows() {
        let mut l = Limiter::new(limits(1, 100));
        l.roll(T0);
        let mut written = 0;
        for hour in 0..50 {
            assert!(l.roll(T0 + 10).is_empty());
            written += usize::from(l.admit(&report("m", T0 - hour * HOUR, 1)));
            written += usize::from(l.admit(&report("m", T0 + hour * HOUR, 1)));
        }
        assert_eq!(written, 1);
        let due = l.roll(T0 + HOUR);
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].client, "99 sessions");
    }

    #[test]
    fn the_writer_writes_the_limit_and_one_summary() {
        let dir = std::env::temp_dir().join(format!("sftpctl-limit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut w = Writer::open(&dir).unwrap();
        w.limit_reports(limits(3, 100));
        for i in 0..50 {
            w.append(&report("mallory", T0 + i, 1)).unwrap();
        }
        w.close().unwrap();
        drop(w);
        assert_eq!(count_pending(&dir).unwrap(), 4);
        // Dropped without close (a live stop): the summary is still written.
        let mut w = Writer::open(&dir).unwrap();
        w.limit_reports(limits(3, 100));
        for i in 0..50 {
            w.append(&report("mallory", T0 + i, 1)).unwrap();
        }
        w.commit().unwrap();
        drop(w);
        assert_eq!(count_pending(&dir).unwrap(), 8);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
