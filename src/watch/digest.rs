//! Digest mode (`mail.mode = "digest"`, or a client's `mail_mode`): the reports of such a
//! client are not mailed one by one. The delivery thread moves each into a durable store,
//! `<state_dir>/outbox/digest/reports/ID.json` (written and synced before the report is
//! acknowledged in the outbox), and at `mail.digest_at` every day the store becomes one
//! letter to the admins (every digest client) and one to each digest client that has an
//! address of its own (only its sessions).
//!
//! Crash safety, in this order: the reports due are moved into `period-DUE/` (renames); the
//! letters, built from that directory alone, are queued (ids `digest-DUE-…`, which the
//! letters outbox takes once); `last` records DUE; the directory goes. A `period-*`
//! directory found at start is finished the same way: its letters are queued at most once
//! and reports stored meanwhile wait in `reports/` for the next day.

pub mod period;
mod summary;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::config::{Config, MailMode};
use crate::plan::fsops::{self, Meta};
use crate::watch::mail::Addresses;
use crate::watch::outbox::{ensure_private_dir, sync_dir};

pub use summary::{LoginSummary, Templates};

/// One delivery outcome per record index, as `Delivery::deliver_many` gives them.
pub type Outcomes = Vec<(usize, Result<()>)>;

pub struct Digest {
    /// `<state_dir>/outbox/digest`.
    dir: PathBuf,
    letters: PathBuf,
    config: Config,
    addresses: Addresses,
    templates: Templates,
    at: period::At,
    zone: jiff::tz::TimeZone,
    /// The due instant of the last digest made (Unix seconds); `None` until a report is
    /// stored for the first time.
    last: Option<i64>,
    /// Leftover `period-*` directories are looked for once, at the first tick.
    recovered: bool,
}

/// The two fields of an outbox record the diversion needs.
#[derive(Debug, Default, PartialEq)]
struct Head {
    id: String,
    user: String,
}

/// Reads `id` and `user` and stops there: they come first in a record (`Report`'s field
/// order), and skipping the rest of it cost ~90,000 instructions a report (debug build,
/// callgrind), nearly all of the diversion's cost. Any record still parses: the fields are
/// looked for in whatever order they come, and a record without them is `None`.
fn head(line: &[u8]) -> Option<Head> {
    use serde::de::{Error, IgnoredAny, MapAccess, Visitor};
    struct Fields<'a>(&'a mut Head, &'a mut u8);
    impl<'de> Visitor<'de> for Fields<'_> {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an outbox record")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            while let Some(key) = map.next_key::<String>()? {
                match key.as_str() {
                    "id" => (self.0.id, *self.1) = (map.next_value()?, *self.1 | 1),
                    "user" => (self.0.user, *self.1) = (map.next_value()?, *self.1 | 2),
                    _ => {
                        map.next_value::<IgnoredAny>()?;
                        continue;
                    }
                }
                if *self.1 == 3 {
                    // serde_json checks for the closing brace after the visitor returns Ok:
                    // an error is the way to stop early (the count tells it from others).
                    return Err(A::Error::custom("found"));
                }
            }
            Err(A::Error::custom("no id or user"))
        }
    }
    let (mut out, mut found) = (Head::default(), 0);
    let mut de = serde_json::Deserializer::from_slice(line);
    let _ = serde::Deserializer::deserialize_map(&mut de, Fields(&mut out, &mut found));
    (found == 3).then_some(out)
}

impl Digest {
    /// Checks the templates (an override that does not render fails now, exit 2).
    pub fn from_config(config: &Config, addresses: Addresses) -> Result<Digest> {
        let dir = config.watch.state_dir.join("outbox").join("digest");
        let at = period::At::parse(&config.mail.digest_at)
            .map_err(|e| crate::error::usage(e.to_string()))?;
        let mut digest = Digest {
            letters: crate::letters::dir(config),
            templates: Templates::load(config.watch.template_dir.as_deref())?,
            zone: crate::tz::local().time_zone().clone(),
            last: None,
            recovered: false,
            config: config.clone(),
            addresses,
            at,
            dir,
        };
        // A watcher that refused to start would lose the lines rsyslog sends meanwhile: a
        // broken `last` (or stored reports without one) means "the digest time just past".
        digest.last = match digest.read_last() {
            Ok(Some(last)) => Some(last),
            Ok(None) if list(&digest.reports_dir())?.is_empty() => None,
            Ok(None) => Some(period::latest_due(&digest.zone, at, now())),
            Err(e) => {
                eprintln!(
                    "sftpctl watch: warning: {e:#}; the next digest covers everything stored"
                );
                Some(period::latest_due(&digest.zone, at, now()))
            }
        };
        Ok(digest)
    }

    fn reports_dir(&self) -> PathBuf {
        self.dir.join("reports")
    }

    fn period_dir(&self, due: i64) -> PathBuf {
        self.dir.join(format!("period-{due}"))
    }

    fn read_last(&self) -> Result<Option<i64>> {
        let path = self.dir.join("last");
        match fsops::read_regular(&path)? {
            None => Ok(None),
            Some((bytes, _)) => {
                let text = String::from_utf8_lossy(&bytes);
                text.trim().parse::<i64>().map(Some).with_context(|| {
                    format!("{} does not hold a time (Unix seconds)", path.display())
                })
            }
        }
    }

    fn write_last(&mut self, due: i64) -> Result<()> {
        ensure_private_dir(&self.dir)?;
        fsops::write_atomic(
            &self.dir.join("last"),
            format!("{due}\n").as_bytes(),
            Meta::current_user(0o600),
        )?;
        self.last = Some(due);
        Ok(())
    }

    /// The client's mode: its own `mail_mode`, else `mail.mode`.
    fn mode_of(&self, user: &str) -> MailMode {
        if crate::names::check_user_name("user", user).is_err() {
            return self.config.mail.mode;
        }
        crate::registry::load(&self.config, user)
            .map(|s| s.mail_mode(&self.config))
            .unwrap_or(self.config.mail.mode)
    }

    /// Takes the records of digest-mode clients out of `todo` into the store; returns their
    /// outcomes and the records still to send. A store that fails ends the list there: what
    /// comes after it is tried again with it, in order.
    pub fn divert<'a>(&mut self, todo: &[(usize, &'a [u8])]) -> (Outcomes, Vec<(usize, &'a [u8])>) {
        let mut modes: HashMap<String, MailMode> = HashMap::new();
        let mut done = Vec::new();
        let mut rest = Vec::with_capacity(todo.len());
        for &(i, line) in todo {
            // Unreadable records go on to the normal path, which logs and skips them.
            let Some(head) = head(line) else {
                rest.push((i, line));
                continue;
            };
            let mode = match modes.get(&head.user) {
                Some(m) => *m,
                None => {
                    let m = self.mode_of(&head.user);
                    modes.insert(head.user.clone(), m);
                    m
                }
            };
            if mode != MailMode::Digest || !plain_name(&head.id) {
                rest.push((i, line));
                continue;
            }
            match self.store(&head.id, line) {
                Ok(()) => done.push((i, Ok(()))),
                Err(e) => {
                    done.push((i, Err(e.context("cannot keep a report for the digest"))));
                    break;
                }
            }
        }
        (done, rest)
    }

    /// Writes one record into the store, durably.
    fn store(&mut self, id: &str, line: &[u8]) -> Result<()> {
        if self.last.is_none() {
            // The first report ever stored waits for the next digest time, not the last one.
            let due = period::latest_due(&self.zone, self.at, now());
            self.write_last(due)?;
        }
        let dir = self.reports_dir();
        ensure_private_dir(&dir)?;
        let body = line.strip_suffix(b"\n").unwrap_or(line);
        fsops::write_atomic(
            &dir.join(format!("{id}.json")),
            body,
            Meta::current_user(0o600),
        )
    }

    /// Makes the digest when it is due (also one missed while the watcher was down), and
    /// finishes one a crash left half done. Returns how many letters were queued.
    pub fn tick(&mut self, now: i64) -> Result<usize> {
        let mut queued = 0;
        if !self.recovered {
            for due in self.leftover_periods()? {
                queued += self.finish(due)?;
            }
            self.recovered = true;
        }
        let Some(last) = self.last else {
            return Ok(queued);
        };
        if now < period::next_due(&self.zone, self.at, last) {
            return Ok(queued);
        }
        let due = period::latest_due(&self.zone, self.at, now);
        self.begin(due)?;
        Ok(queued + self.finish(due)?)
    }

    fn leftover_periods(&self) -> Result<Vec<i64>> {
        let mut out: Vec<i64> = list(&self.dir)?
            .iter()
            .filter_map(|n| n.strip_prefix("period-")?.parse().ok())
            .collect();
        out.sort();
        Ok(out)
    }

    /// Moves every stored report into the period's directory.
    fn begin(&self, due: i64) -> Result<()> {
        let reports = self.reports_dir();
        let names: Vec<String> = list(&reports)?
            .into_iter()
            .filter(|n| n.ends_with(".json"))
            .collect();
        let target = self.period_dir(due);
        ensure_private_dir(&target)?;
        sync_dir(&self.dir)?;
        for name in &names {
            fs_err::rename(reports.join(name), target.join(name))?;
        }
        if !names.is_empty() {
            sync_dir(&target)?;
            sync_dir(&reports)?;
        }
        Ok(())
    }

    /// Queues the letters of the period in `period-DUE/`, records DUE, removes the directory.
    fn finish(&mut self, due: i64) -> Result<usize> {
        let dir = self.period_dir(due);
        let mut records = Vec::new();
        for name in list(&dir)? {
            if !name.ends_with(".json") {
                continue;
            }
            let path = dir.join(&name);
            // Never through a link, even in this root-only directory.
            let parsed = fsops::read_regular(&path).and_then(|found| {
                let (bytes, _) = found.context("vanished")?;
                serde_json::from_slice::<summary::Stored>(&bytes).context("not a stored report")
            });
            match parsed {
                Ok(r) => records.push(r),
                Err(e) => eprintln!(
                    "sftpctl watch: {}: {e:#}; left out of the digest",
                    path.display()
                ),
            }
        }
        let since = self.last.filter(|&l| l < due);
        let letters = summary::letters(
            &self.templates,
            &self.addresses,
            &self.config,
            since,
            due,
            records,
        )?;
        let mut queued = 0;
        for letter in &letters {
            queued += usize::from(crate::letters::queue_in(&self.letters, letter)?);
        }
        if self.last.is_none_or(|l| l < due) {
            self.write_last(due)?;
        }
        if std::fs::symlink_metadata(&dir).is_ok() {
            fs_err::remove_dir_all(&dir)?;
            sync_dir(&self.dir)?;
        }
        Ok(queued)
    }
}

fn now() -> i64 {
    crate::watch::time::now_unix()
}

/// Letters, digits, `-`, `_`, `.`; not hidden: a report id as the outbox makes them.
fn plain_name(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 200
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

/// The visible entries of `dir` (none when it does not exist).
fn list(dir: &Path) -> Result<Vec<String>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", dir.display())),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("cannot read {}", dir.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with('.') {
            out.push(name);
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests;
