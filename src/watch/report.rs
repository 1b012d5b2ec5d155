//! The report of one finished session: what a person reads, and what templates render.
//! Paths are shown relative to the jail's data dir (`/data/up.txt` → `up.txt`).

use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use super::session::{Bounded, Ending, Replaced, Session};
use super::time::{format_duration, now_unix};
use crate::tz::format_local;

/// Exact counts over the whole session (lists may be cut, these never are).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    pub uploads: u64,
    pub upload_bytes: u64,
    pub downloads: u64,
    pub download_bytes: u64,
    pub deletes: u64,
    pub renames: u64,
    pub links: u64,
    pub mkdirs: u64,
    pub rmdirs: u64,
    pub changes: u64,
    pub failures: u64,
    pub incomplete_transfers: u64,
    /// Renames that replaced, or may have replaced, a file of the new name (posix-rename).
    #[serde(default)]
    pub replaced: u64,
    /// Entries whose name the log cut at 500 bytes (shown ending in `…`).
    #[serde(default)]
    pub cut_names: u64,
    /// Uploads (downloads) whose byte counts the log cut away: not in `upload_bytes`.
    #[serde(default)]
    pub uploads_size_unknown: u64,
    #[serde(default)]
    pub downloads_size_unknown: u64,
}

impl Totals {
    pub fn any(&self) -> bool {
        self.uploads
            + self.downloads
            + self.deletes
            + self.renames
            + self.links
            + self.mkdirs
            + self.rmdirs
            + self.changes
            + self.failures
            + self.replaced
            + self.cut_names
            > 0
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShownTransfer {
    pub path: String,
    pub bytes: u64,
    /// `2.9 MiB (3,000,000 bytes)` or `12 bytes`.
    pub size: String,
    pub incomplete: bool,
    /// When the transfer ended (its close line), see [`EntryClock`]; empty in records
    /// written before entries had times.
    #[serde(default)]
    pub time: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShownFailure {
    pub action: String,
    pub path: String,
    pub status: String,
    #[serde(default)]
    pub time: String,
}

/// A rename or link as shown: `old → new`, what people must know about it, and when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShownMove {
    pub old: String,
    pub new: String,
    #[serde(default)]
    pub replaced: Replaced,
    #[serde(default)]
    pub ambiguous: bool,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub note: String,
    #[serde(default)]
    pub time: String,
}

/// A name with the time of its request: a delete, a directory made or removed, an
/// attribute change (`PATH: what changed`). It reads as its name (`Deref<Target = str>`).
/// Records and saved reports from before entries had times hold plain strings: both read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Named {
    pub path: String,
    pub time: String,
}

// By hand rather than `#[serde(untagged)]`: that buffers each entry and builds (and drops) a
// "not a string" error before it tries the object, for every entry of every outbox record.
impl<'de> Deserialize<'de> for Named {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Named, D::Error> {
        #[derive(Deserialize)]
        struct Fields {
            path: String,
            #[serde(default)]
            time: String,
        }
        struct Either;
        impl<'de> serde::de::Visitor<'de> for Either {
            type Value = Named;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a name, or an object with a path and a time")
            }
            fn visit_str<E: serde::de::Error>(self, path: &str) -> Result<Named, E> {
                Ok(Named::from(path))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Named, A::Error> {
                let f = Fields::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
                Ok(Named {
                    path: f.path,
                    time: f.time,
                })
            }
        }
        d.deserialize_any(Either)
    }
}

impl From<&str> for Named {
    fn from(path: &str) -> Named {
        Named {
            path: path.to_string(),
            time: String::new(),
        }
    }
}

impl std::ops::Deref for Named {
    type Target = str;
    fn deref(&self) -> &str {
        &self.path
    }
}

impl PartialEq<&str> for Named {
    fn eq(&self, other: &&str) -> bool {
        self.path == *other
    }
}

/// Entry times as people read them. The session's start and end are shown in full
/// (`2026-11-27 17:04:18 +01:00 (CET)`); an entry on the same local day, in a session whose
/// offset did not change, is shown as its time of day (`17:04:18`), any other in full.
/// jiff is asked once per session (twice: start and end), not once per entry.
pub struct EntryClock {
    /// Offset (seconds) and local day of the session's start, when the offset held all
    /// session long.
    same: Option<(i64, i64)>,
    last: Option<(i64, String)>,
}

impl EntryClock {
    /// From the session's start and the [`format_local`] texts of its start and end, which a
    /// report shows anyway (jiff is asked twice a session, not four times).
    pub fn new(start: i64, start_text: &str, end_text: &str) -> EntryClock {
        let same = match (offset_of(start_text), offset_of(end_text)) {
            (Some(a), Some(b)) if a == b => Some((a, (start + a).div_euclid(86_400))),
            _ => None,
        };
        EntryClock { same, last: None }
    }

    pub fn text(&mut self, at: i64) -> String {
        if let Some((offset, day)) = self.same {
            if (at + offset).div_euclid(86_400) == day {
                return time_of_day((at + offset).rem_euclid(86_400));
            }
        }
        if let Some((last, text)) = &self.last {
            if *last == at {
                return text.clone();
            }
        }
        let text = format_local(at);
        self.last = Some((at, text.clone()));
        text
    }
}

/// A list's entry times, then `fallback` for entries of records from before entries had times.
fn entry_times(times: &[i64], fallback: i64) -> impl Iterator<Item = i64> + '_ {
    times.iter().copied().chain(std::iter::repeat(fallback))
}

/// `17:04:18` of the seconds since midnight, without `format!` (it runs for every entry).
fn time_of_day(secs: i64) -> String {
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    let two = |n: i64| [b'0' + (n / 10 % 10) as u8, b'0' + (n % 10) as u8];
    let [h1, h0] = two(h);
    let [m1, m0] = two(m);
    let [s1, s0] = two(s);
    let digits = [h1, h0, b':', m1, m0, b':', s1, s0];
    std::str::from_utf8(&digits).unwrap_or_default().to_string()
}

/// This process's id, asked of the kernel once: glibc does not cache it, and `report` makes a
/// quarter of a million reports a year of logs (one getpid system call each).
fn process_id() -> u32 {
    static PID: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *PID.get_or_init(std::process::id)
}

/// The UTC offset in seconds of a [`format_local`] text (`… 17:04:18 +01:00 …`).
fn offset_of(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    let sign = match b.get(20)? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let num = |r: std::ops::Range<usize>| text.get(r)?.parse::<i64>().ok();
    Some(sign * (num(21..23)? * 3600 + num(24..26)? * 60))
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Unique, file-name safe; names the outbox entry and the spooled .eml.
    pub id: String,
    pub host: String,
    pub pid: u32,
    pub user: String,
    pub client: String,
    pub start: Option<i64>,
    pub end: i64,
    pub start_text: String,
    pub end_text: String,
    pub duration_text: String,
    /// The session ended with `session closed` and no transfer was interrupted.
    pub complete: bool,
    pub ending: Ending,
    /// Empty for a normally closed session, else why it is incomplete.
    pub ending_text: String,
    pub uploads: Vec<ShownTransfer>,
    pub uploads_more: u64,
    pub downloads: Vec<ShownTransfer>,
    pub downloads_more: u64,
    pub deletes: Vec<Named>,
    pub deletes_more: u64,
    pub renames: Vec<ShownMove>,
    pub renames_more: u64,
    pub links: Vec<ShownMove>,
    pub links_more: u64,
    pub mkdirs: Vec<Named>,
    pub mkdirs_more: u64,
    pub rmdirs: Vec<Named>,
    pub rmdirs_more: u64,
    pub changes: Vec<Named>,
    pub changes_more: u64,
    pub failures: Vec<ShownFailure>,
    pub failures_more: u64,
    pub totals: Totals,
    pub upload_size: String,
    pub download_size: String,
    /// Lines of this session that could not be read (cut at 500 bytes or garbled).
    pub unreadable_lines: u64,
    /// What the client's policy did to this session (e.g. why uploads were refused).
    #[serde(default)]
    pub notes: Vec<String>,
    /// The client jails an admin's session named (docs/watch.md, "New files for you").
    #[serde(default)]
    pub touched_jails: Vec<String>,
    /// `totals` again, flat, for the templates: a dotted `totals.uploads` costs tera two
    /// string allocations per lookup (docs/watch.md, "Rendering cost").
    #[serde(flatten)]
    pub counts: Counts,
}

/// The counts templates use, as top-level variables (`n_other`: directories made and
/// removed, attribute changes and links).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Counts {
    pub n_uploads: u64,
    pub n_downloads: u64,
    pub n_deletes: u64,
    pub n_renames: u64,
    pub n_links: u64,
    pub n_mkdirs: u64,
    pub n_rmdirs: u64,
    pub n_changes: u64,
    pub n_failures: u64,
    pub n_incomplete: u64,
    pub n_replaced: u64,
    pub n_cut: u64,
    pub n_other: u64,
}

impl Counts {
    pub fn of(t: &Totals) -> Counts {
        Counts {
            n_uploads: t.uploads,
            n_downloads: t.downloads,
            n_deletes: t.deletes,
            n_renames: t.renames,
            n_links: t.links,
            n_mkdirs: t.mkdirs,
            n_rmdirs: t.rmdirs,
            n_changes: t.changes,
            n_failures: t.failures,
            n_incomplete: t.incomplete_transfers,
            n_replaced: t.replaced,
            n_cut: t.cut_names,
            n_other: t.mkdirs + t.rmdirs + t.changes + t.links,
        }
    }
}

static SEQUENCE: AtomicU64 = AtomicU64::new(0);

impl Report {
    /// The report of `s`, which stays as it was: every name is copied. `report` hands the
    /// session back to the thread that built it, to be freed there: glibc's malloc locks an
    /// arena when another thread frees into it, and with every name freed on the printing
    /// thread the two threads spent a third of the time waiting for that lock.
    pub fn from_session(s: &Session, ending: Ending, data_prefix: &str) -> Report {
        let fallback = s.end;
        let first = s.start.unwrap_or(s.first_seen);
        let (first_text, end_text) = (format_local(first), format_local(s.end));
        let mut clock = EntryClock::new(first, &first_text, &end_text);
        let clock = &mut clock;
        let mut transfers = |b: &Bounded<super::session::Transfer>| -> (Vec<ShownTransfer>, u64) {
            let items = b
                .items
                .iter()
                .zip(entry_times(&b.times, fallback))
                .map(|(t, at)| {
                    let path = relative(&t.path, data_prefix);
                    ShownTransfer {
                        size: transfer_size(t, &path),
                        path,
                        bytes: t.bytes,
                        incomplete: t.incomplete,
                        time: clock.text(at),
                    }
                })
                .collect();
            (items, b.more)
        };
        let (uploads, uploads_more) = transfers(&s.uploads);
        let (downloads, downloads_more) = transfers(&s.downloads);
        let mut names = |b: &Bounded<String>| -> (Vec<Named>, u64) {
            let items = b
                .items
                .iter()
                .zip(entry_times(&b.times, fallback))
                .map(|(p, at)| Named {
                    path: relative(p, data_prefix),
                    time: clock.text(at),
                })
                .collect();
            (items, b.more)
        };
        let (deletes, deletes_more) = names(&s.deletes);
        let (mkdirs, mkdirs_more) = names(&s.mkdirs);
        let (rmdirs, rmdirs_more) = names(&s.rmdirs);
        let mut moves = |b: &Bounded<super::session::Move>| -> (Vec<ShownMove>, u64) {
            let items = b
                .items
                .iter()
                .zip(entry_times(&b.times, fallback))
                .map(|(m, at)| {
                    let old = relative(&m.old, data_prefix);
                    let new = relative(&m.new, data_prefix);
                    let note = move_note(&new, m.replaced, m.ambiguous);
                    ShownMove {
                        new: if m.ambiguous { "?".into() } else { new },
                        old,
                        note,
                        replaced: m.replaced,
                        ambiguous: m.ambiguous,
                        time: clock.text(at),
                    }
                })
                .collect();
            (items, b.more)
        };
        let (renames, renames_more) = moves(&s.renames);
        let (links, links_more) = moves(&s.links);
        let changes = s
            .changes
            .items
            .iter()
            .zip(entry_times(&s.changes.times, fallback))
            .map(|(c, at)| Named {
                path: format!("{}: {}", relative_str(&c.path, data_prefix), c.what),
                time: clock.text(at),
            })
            .collect();
        let failures = s
            .failures
            .items
            .iter()
            .zip(entry_times(&s.failures.times, fallback))
            .map(|(f, at)| ShownFailure {
                action: f.action.clone(),
                path: match &f.target {
                    Some(t) => format!(
                        "{} → {}",
                        relative_str(&f.path, data_prefix),
                        relative_str(t, data_prefix)
                    ),
                    None => relative(&f.path, data_prefix),
                },
                status: f.status.clone(),
                time: clock.text(at),
            })
            .collect();
        let start = s.start;
        let start_text = match start {
            Some(_) => first_text,
            None => format!("before {first_text} (opening line not seen)"),
        };
        let duration_text = format_duration(s.end - first);
        let ending_text = match ending {
            Ending::Closed => "",
            Ending::IdleTimeout => {
                "no close line arrived before the idle timeout; the session may have been cut off"
            }
            Ending::PidReused => "its process id started a new session before a close line arrived",
            Ending::Evicted => "too many sessions were open at once; reported early",
            Ending::EndOfInput => "still open at the end of the log",
            Ending::Summarized => "several sessions summed up",
        }
        .to_string();
        let seq = SEQUENCE.fetch_add(1, Ordering::Relaxed);
        let id = format!(
            "{}-{}-{}-{:x}{:x}",
            start.unwrap_or(s.first_seen),
            safe_for_file_name(&s.host),
            s.pid,
            process_id(),
            (now_unix() as u64)
                .wrapping_mul(1_000_003)
                .wrapping_add(seq)
        );
        Report {
            id,
            // The host comes from the line's header as it was sent: shown like a name.
            host: crate::display::visible(&s.host).into_owned(),
            pid: s.pid,
            user: s.user.clone().unwrap_or_else(|| "(unknown user)".into()),
            client: s
                .client
                .clone()
                .unwrap_or_else(|| "(unknown address)".into()),
            start,
            end: s.end,
            start_text,
            end_text,
            duration_text,
            complete: ending == Ending::Closed
                && s.totals.incomplete_transfers == 0
                && s.start.is_some(),
            ending,
            ending_text,
            uploads,
            uploads_more,
            downloads,
            downloads_more,
            deletes,
            deletes_more,
            renames,
            renames_more,
            links,
            links_more,
            mkdirs,
            mkdirs_more,
            rmdirs,
            rmdirs_more,
            changes,
            changes_more: s.changes.more,
            failures,
            failures_more: s.failures.more,
            upload_size: total_size(s.totals.upload_bytes, s.totals.uploads_size_unknown),
            download_size: total_size(s.totals.download_bytes, s.totals.downloads_size_unknown),
            counts: Counts::of(&s.totals),
            totals: s.totals,
            unreadable_lines: s.unreadable_lines,
            notes: Vec::new(),
            touched_jails: Vec::new(),
        }
    }
}

/// A report with something in every list: renders every branch of a template.
pub fn example() -> Report {
    use super::parse::parse_line;
    use super::session::{Ending, Limits, Sessions};
    let log = "\
2026-01-01T00:00:00Z h sftp[1]: x
2026-01-01T00:00:00Z h internal-sftp[1]: open \"/data/u\" flags WRITE,CREATE mode 0644
2026-01-01T00:00:01Z h internal-sftp[1]: forced close \"/data/u\" bytes read 0 written 5
2026-01-01T00:00:01Z h internal-sftp[1]: close \"/data/d\" bytes read 5 written 0
2026-01-01T00:00:01Z h internal-sftp[1]: remove name \"/data/r\"
2026-01-01T00:00:01Z h internal-sftp[1]: rename old \"/data/a\" new \"/data/b\"
2026-01-01T00:00:01Z h internal-sftp[1]: posix-rename old \"/data/p\" new \"/data/q\"
2026-01-01T00:00:01Z h internal-sftp[1]: posix-rename old \"/data/x\" new \"/data/y\" new \"/data/z\"
2026-01-01T00:00:01Z h internal-sftp[1]: symlink old \"a\" new \"/data/l\"
2026-01-01T00:00:01Z h internal-sftp[1]: mkdir name \"/data/m\" mode 0777
2026-01-01T00:00:01Z h internal-sftp[1]: rmdir name \"/data/m\"
2026-01-01T00:00:01Z h internal-sftp[1]: set \"/data/b\" mode 0600
2026-01-01T00:00:01Z h internal-sftp[1]: remove name \"/x\"
2026-01-01T00:00:01Z h internal-sftp[1]: sent status Permission denied
2026-01-01T00:00:01Z h internal-sftp[1]: garbled
";
    let cut = format!(
        "2026-01-01T00:00:01Z h internal-sftp[1]: remove name \"/data/{}\"\n",
        "n".repeat(500)
    );
    let log = &format!("{log}{cut}");
    let limits = Limits {
        max_list_entries: 0,
        ..Limits::default()
    };
    let mut sessions = Sessions::new(limits, "/data");
    let mut out = Vec::new();
    for line in log.lines() {
        sessions.apply(parse_line(line.as_bytes(), 0), 0, &mut out);
    }
    sessions.finish_all(Ending::IdleTimeout, &mut out);
    let mut r = out.remove(0);
    let mut full = Sessions::new(Limits::default(), "/data");
    let mut again = Vec::new();
    for line in log.lines() {
        full.apply(parse_line(line.as_bytes(), 0), 0, &mut again);
    }
    full.finish_all(Ending::IdleTimeout, &mut again);
    let shown = again.remove(0);
    r.uploads = shown.uploads;
    r.downloads = shown.downloads;
    r.deletes = shown.deletes;
    r.renames = shown.renames;
    r.links = shown.links;
    r.mkdirs = shown.mkdirs;
    r.rmdirs = shown.rmdirs;
    r.changes = shown.changes;
    r.failures = shown.failures;
    r.notes = vec!["uploads refused: quota 5G reached (5.1 GiB used)".into()];
    r.touched_jails = vec!["alice".into(), "bob".into()];
    r
}

/// What people must know about a rename or link beyond its two names.
fn move_note(new: &str, replaced: Replaced, ambiguous: bool) -> String {
    if ambiguous {
        return "AMBIGUOUS: a name contains \" new \", so the log line cannot tell where the \
                old name ends; both names are shown together as logged"
            .into();
    }
    match replaced {
        Replaced::No => String::new(),
        Replaced::Yes => format!("REPLACED the existing {new}"),
        Replaced::Maybe => format!("REPLACED {new} if it existed"),
    }
}

/// `12 bytes`, or `12 bytes plus 2 files of unknown size` when the log cut their counts.
fn total_size(bytes: u64, unknown: u64) -> String {
    let mut out = String::with_capacity(48);
    push_human_size(&mut out, bytes);
    match unknown {
        0 => {}
        1 => out.push_str(" plus 1 file of unknown size"),
        n => {
            out.push_str(" plus ");
            push_u64(&mut out, n);
            out.push_str(" files of unknown size");
        }
    }
    out
}

/// `12 bytes`; for a line the log cut, what is known of the size and direction.
fn transfer_size(t: &super::session::Transfer, shown_path: &str) -> String {
    let mut size = String::with_capacity(40);
    if t.size_unknown {
        size.push_str("size unknown: the log cut the line before the byte counts");
    } else {
        push_human_size(&mut size, t.bytes);
        if t.cut {
            size.push_str(" as logged (the line may have been cut)");
        }
    }
    if t.direction_unknown {
        size.push_str("; upload or download: the open flags were cut too");
    }
    if t.replaced != Replaced::No {
        let note = move_note(shown_path, t.replaced, false);
        size.push_str("; ");
        size.push_str(&note);
        size.push_str(" (uploaded under a temporary name)");
    }
    size
}

/// `/data/a/b` → `a/b`, `/data` → `.`; names outside the data dir stay absolute.
fn relative(path: &str, prefix: &str) -> String {
    relative_str(path, prefix).to_string()
}

fn relative_str<'a>(path: &'a str, prefix: &str) -> &'a str {
    if prefix.is_empty() || prefix == "/" {
        return path;
    }
    if path == prefix
        || path.len() == prefix.len() + 1 && path.starts_with(prefix) && path.ends_with('/')
    {
        return ".";
    }
    match path.strip_prefix(prefix).and_then(|r| r.strip_prefix('/')) {
        Some(rest) if !rest.is_empty() => rest,
        _ => path,
    }
}

fn safe_for_file_name(s: &str) -> String {
    let cleaned: String = s
        .chars()
        .take(64)
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if cleaned.is_empty() {
        "_".into()
    } else {
        cleaned
    }
}

/// `12 bytes`, `1.5 KiB (1,536 bytes)`.
pub fn human_size(bytes: u64) -> String {
    let mut out = String::with_capacity(40);
    push_human_size(&mut out, bytes);
    out
}

/// [`human_size`] appended to `out`, in integers: it runs for every transfer of every report
/// (`format!` of an `f64` cost 17 % of `report`). The value is the one the `f64` gives,
/// `bytes as f64 / 1024^k` (exact in binary), rounded to one decimal as `{:.1}` rounds it:
/// to nearest, ties to even. The unit test holds it to the `f64` formatting.
fn push_human_size(out: &mut String, bytes: u64) {
    if bytes < 1024 {
        if bytes == 1 {
            out.push_str("1 byte");
        } else {
            push_u64(out, bytes);
            out.push_str(" bytes");
        }
        return;
    }
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    // What `bytes as f64` holds (bytes above 2^53 are rounded): an integer, exact in u128.
    let exact = bytes as f64 as u128;
    let mut unit = 0;
    while unit + 1 < UNITS.len() && exact >= 1u128 << (10 * (unit + 2)) {
        unit += 1;
    }
    let shift = 10 * (unit + 1);
    let tenths = exact * 10;
    // Below 10 * 2^54: u64 arithmetic from here (u128 division is a library call).
    let mut q = (tenths >> shift) as u64;
    let (r, half) = (tenths & ((1u128 << shift) - 1), 1u128 << (shift - 1));
    if r > half || (r == half && q % 2 == 1) {
        q += 1;
    }
    push_u64(out, q / 10);
    out.push('.');
    out.push(char::from(b'0' + (q % 10) as u8));
    out.push(' ');
    out.push_str(UNITS[unit]);
    out.push_str(" (");
    let mut digits = [0u8; 20];
    let text = decimal(bytes, &mut digits);
    for (i, &d) in text.iter().enumerate() {
        if i > 0 && (text.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(char::from(d));
    }
    out.push_str(" bytes)");
}

fn push_u64(out: &mut String, n: u64) {
    let mut digits = [0u8; 20];
    for &d in decimal(n, &mut digits) {
        out.push(char::from(d));
    }
}

/// The decimal digits of `n`, in `buf`.
fn decimal(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[at..];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_for_people() {
        assert_eq!(human_size(0), "0 bytes");
        assert_eq!(human_size(1), "1 byte");
        assert_eq!(human_size(12), "12 bytes");
        assert_eq!(human_size(3_000_000), "2.9 MiB (3,000,000 bytes)");
        assert_eq!(human_size(u64::MAX).split(' ').nth(1), Some("EiB"));
    }

    /// The formatting `human_size` had before it was done in integers: the oracle.
    fn human_size_f64(bytes: u64) -> String {
        if bytes < 1024 {
            return if bytes == 1 {
                "1 byte".into()
            } else {
                format!("{bytes} bytes")
            };
        }
        const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
        let mut value = bytes as f64 / 1024.0;
        let mut unit = 0;
        while value >= 1024.0 && unit + 1 < UNITS.len() {
            value /= 1024.0;
            unit += 1;
        }
        let digits = bytes.to_string();
        let mut grouped = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                grouped.push(',');
            }
            grouped.push(c);
        }
        format!("{value:.1} {} ({grouped} bytes)", UNITS[unit])
    }

    #[test]
    fn sizes_in_integers_are_the_f64_formatting() {
        let mut values: Vec<u64> = (0..70_000).collect();
        for k in 1..7u32 {
            let unit = 1u64 << (10 * k).min(63);
            for d in 0..2_000u64 {
                // Around every tenth and every tie (x.x5) of the unit, and the unit's edges.
                let base = (unit / 20).wrapping_mul(d);
                values.extend([base.wrapping_sub(1), base, base.wrapping_add(1)]);
                values.extend([unit.wrapping_mul(1023).wrapping_add(d), unit - 1 + d]);
            }
        }
        values.extend([
            u64::MAX,
            u64::MAX - 1,
            1 << 53,
            (1 << 53) + 1,
            (1 << 60) + 12_345,
        ]);
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        for _ in 0..200_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            values.push(state >> (state % 60));
        }
        for v in values {
            assert_eq!(human_size(v), human_size_f64(v), "{v}");
        }
        assert_eq!(human_size(1280), human_size_f64(1280), "a tie");
    }

    #[test]
    fn total_and_transfer_sizes_read_as_before() {
        assert_eq!(total_size(12, 0), "12 bytes");
        assert_eq!(total_size(0, 1), "0 bytes plus 1 file of unknown size");
        assert_eq!(
            total_size(2048, 3),
            "2.0 KiB (2,048 bytes) plus 3 files of unknown size"
        );
        let t = |bytes, cut, size_unknown, direction_unknown, replaced| {
            super::super::session::Transfer {
                path: "a".into(),
                bytes,
                incomplete: false,
                cut,
                size_unknown,
                direction_unknown,
                replaced,
            }
        };
        assert_eq!(
            transfer_size(&t(5, false, false, false, Replaced::No), "a"),
            "5 bytes"
        );
        assert_eq!(
            transfer_size(&t(5, true, false, false, Replaced::No), "a"),
            "5 bytes as logged (the line may have been cut)"
        );
        assert_eq!(
            transfer_size(&t(0, true, true, true, Replaced::Maybe), "a"),
            "size unknown: the log cut the line before the byte counts; upload or download: \
             the open flags were cut too; REPLACED a if it existed (uploaded under a temporary name)"
        );
        assert_eq!(
            transfer_size(&t(1, false, false, false, Replaced::Yes), "a"),
            "1 byte; REPLACED the existing a (uploaded under a temporary name)"
        );
    }

    #[test]
    fn paths_relative_to_the_data_dir() {
        assert_eq!(relative("/data/a/b", "/data"), "a/b");
        assert_eq!(relative("/data", "/data"), ".");
        assert_eq!(relative("/data/", "/data"), ".");
        assert_eq!(relative("/database", "/data"), "/database");
        assert_eq!(relative("/forbidden", "/data"), "/forbidden");
        assert_eq!(relative("big.bin", "/data"), "big.bin");
    }

    #[test]
    fn a_hostile_host_name_is_shown_escaped() {
        use crate::watch::parse::parse_line;
        use crate::watch::session::{Limits, Sessions};
        let mut sessions = Sessions::new(Limits::default(), "/data");
        let mut out = Vec::new();
        for m in [
            "session opened for local user a from [::1]",
            "remove name \"/data/x\"",
            "session closed for local user a from [::1]",
        ] {
            let line = format!("2026-11-27T16:04:18+00:00 h\u{202e}\x1b[2J internal-sftp[1]: {m}");
            sessions.apply(parse_line(line.as_bytes(), 0), 0, &mut out);
        }
        assert_eq!(out[0].host, "h<U+202E>\\u{1b}[2J");
    }

    #[test]
    fn file_name_safe_ids() {
        assert_eq!(safe_for_file_name("a/../b c"), "a_.._b_c");
        assert_eq!(safe_for_file_name(""), "_");
    }
}
