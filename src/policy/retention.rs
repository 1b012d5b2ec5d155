//! Retention (docs/policy.md, "Retention"): files in a client's data tree whose last
//! modification is older than its retention are deleted, once a day, by `sftpctl policy run`
//! or now by `sftpctl retention`. Nothing goes that a warning did not list
//! `policy.retention_warn_days` before; a report lists what went.
//!
//! Safety is in [`walk`]: no-follow, beneath the data dir, bounded descriptors; only regular
//! files and symlinks of the client or the admin.

mod mail;
mod state;
pub mod walk;

use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::Instant;

use anyhow::{Context, Result};

use crate::config::{Config, Source};
use crate::perms::fsx;
use crate::perms::jails::{self, Ids, UserCheck};
use crate::policy::notices;
use crate::policy::values::{Day, Retention};
use mail::{About, Failure, Line, Listed};
use walk::{Done, Key, Rules, What};

const DAY_SECS: i64 = 86_400;

/// The job of `sftpctl policy run`: once a day (state `state_dir/policy/retention/last-run`)
/// every managed client with a retention. With `dry_run` it says what it would delete now
/// and changes nothing, whether due or not.
pub fn run(config: &Config, _source: &Source, dry_run: bool, out: &mut dyn Write) -> Result<()> {
    let today = Day::today();
    if !dry_run && state::last_run(config)?.is_some_and(|d| d >= today.days) {
        return Ok(());
    }
    let names = crate::accounts::managed_names(config);
    let outcome = run_now(config, &names, dry_run, false, out);
    if !dry_run {
        // Also after a failure: the failed clients are named, and tomorrow's run retries.
        state::set_last_run(config, today.days)?;
    }
    outcome
}

/// Retention for `names` now, due or not (`sftpctl retention`): the same rules and notices as
/// the job. `explicit`: the names were asked for, so a client without retention is mentioned.
pub fn run_now(
    config: &Config,
    names: &[String],
    dry_run: bool,
    explicit: bool,
    out: &mut dyn Write,
) -> Result<()> {
    let mut work = Vec::new();
    let mut failed = Vec::new();
    for name in names {
        let settings = match crate::registry::load(config, name) {
            Ok(s) => s,
            Err(e) => {
                writeln!(out, "retention: {name}: {e:#}")?;
                failed.push(name.as_str());
                continue;
            }
        };
        match settings.retention(config) {
            Retention::Off if explicit => writeln!(out, "retention: {name}: off, nothing to do")?,
            Retention::Off => {}
            Retention::Days(days) => work.push((name, days, settings.notify_client(config))),
        }
    }
    if !work.is_empty() {
        sweep_all(config, work, dry_run, &mut failed, out)?;
    }
    anyhow::ensure!(
        failed.is_empty(),
        "retention failed for {} (the others were done): see the lines above",
        failed.join(", ")
    );
    Ok(())
}

fn sweep_all<'a>(
    config: &Config,
    work: Vec<(&'a String, u32, bool)>,
    dry_run: bool,
    failed: &mut Vec<&'a str>,
    out: &mut dyn Write,
) -> Result<()> {
    // The job and `sftpctl retention` may run at once: one at a time reads and writes the
    // announcements. A dry run writes nothing (not even the lock file), and state files are
    // replaced atomically, so it needs no lock.
    let _lock = if dry_run {
        None
    } else {
        Some(state::lock(config)?)
    };
    let ids = Ids::load(config, UserCheck::Accounts)?;
    let root = fsx::open_dir_path(&config.root)
        .with_context(|| format!("cannot open the jail root {}", config.root.display()))?;
    for (name, days, to_client) in work {
        let client = Client {
            config,
            name,
            retention: Retention::Days(days),
            to_client,
            dry_run,
        };
        if let Err(e) = client.sweep(&root, &ids, out) {
            writeln!(out, "retention: {name}: {e:#}")?;
            failed.push(name.as_str());
        }
    }
    Ok(())
}

struct Client<'a> {
    config: &'a Config,
    name: &'a str,
    retention: Retention,
    to_client: bool,
    dry_run: bool,
}

/// What one sweep found.
#[derive(Default)]
struct Found {
    deleted: Listed<Line>,
    deleted_keys: Vec<Key>,
    bytes: u64,
    failures: Listed<Failure>,
    announce: Listed<Line>,
    announce_keys: Vec<Key>,
    /// The earliest day a newly announced file goes.
    first_day: Option<Day>,
    waiting: usize,
}

impl Client<'_> {
    fn sweep(&self, root: &OwnedFd, ids: &Ids, out: &mut dyn Write) -> Result<()> {
        let (config, name) = (self.config, self.name);
        let data = match jails::open_jail(root.as_raw_fd(), name.as_ref(), config, ids) {
            Ok(Some((_, data, st))) => (data, st),
            Ok(None) => {
                writeln!(out, "retention: {name}: no data dir, nothing to do")?;
                return Ok(());
            }
            Err(why) => anyhow::bail!(
                "its jail is refused ({why}); nothing was deleted: `sftpctl doctor --user {name}` tells what to repair"
            ),
        };
        let (data_fd, data_st) = data;
        let admin = ids.admin;
        let Some(keep_days) = self.retention.days() else {
            return Ok(());
        };
        let warn_days = config.policy.retention_warn_days;
        let now = crate::watch::time::now_unix();
        let today = Day {
            days: now.div_euclid(DAY_SECS),
        };
        let delete_before = now - i64::from(keep_days) * DAY_SECS;
        let rules = Rules {
            user: data_st.st_uid,
            admin,
            dev: data_st.st_dev,
            report_before: (delete_before + i64::from(warn_days) * DAY_SECS).min(now),
            delete_before,
        };
        let announced = state::load_announced(config, name)?;
        let mut next = state::Announced::new();
        let mut found = Found::default();
        let data_path = config.root.join(name).join(&config.data_dir);
        let started = Instant::now();
        let mut lines: Result<()> = Ok(());
        let verb = if self.dry_run {
            "would delete"
        } else {
            "deleted"
        };
        let stats = walk::walk(
            &data_fd,
            &rules,
            self.dry_run,
            &mut |c| {
                warn_days == 0
                    || announced
                        .get(&c.key)
                        .is_some_and(|&day| day + i64::from(warn_days) <= today.days)
            },
            &mut |c, done| match done {
                Done::Deleted | Done::WouldDelete => {
                    let what = if c.what == What::Symlink {
                        "symlink "
                    } else {
                        ""
                    };
                    if lines.is_ok() {
                        lines = writeln!(
                            out,
                            "retention: {name}: {verb} {what}{} (modified {})",
                            mail::shown(&data_path.join(&c.rel)),
                            day_of(c.mtime)
                        )
                        .map_err(Into::into);
                    }
                    found.bytes += c.size;
                    found.deleted_keys.push(c.key);
                    found.deleted.push(|| Line::new(&c, day_of(c.mtime)));
                }
                Done::Failed(e) => {
                    if lines.is_ok() {
                        lines = writeln!(
                            out,
                            "retention: {name}: cannot delete {}: {}",
                            mail::shown(&data_path.join(&c.rel)),
                            e.desc()
                        )
                        .map_err(Into::into);
                    }
                    next.insert(c.key, announced.get(&c.key).copied().unwrap_or(today.days));
                    found.failures.push(|| Failure {
                        name: mail::shown(&c.rel),
                        why: e.desc().to_string(),
                    });
                }
                Done::Kept => {
                    let first = announced.get(&c.key).copied();
                    let day = first.unwrap_or(today.days);
                    next.insert(c.key, day);
                    if first.is_none() {
                        let goes = Day {
                            days: (day_of(c.mtime + i64::from(keep_days) * DAY_SECS).days)
                                .max(day + i64::from(warn_days)),
                        };
                        found.announce_keys.push(c.key);
                        found.first_day = Some(found.first_day.map_or(goes, |d| d.min(goes)));
                        found.announce.push(|| Line::new(&c, goes));
                    } else {
                        found.waiting += 1;
                    }
                }
            },
        );
        lines?;
        let elapsed = started.elapsed();
        for e in &stats.errors {
            writeln!(out, "retention: {name}: cannot look at {e}")?;
        }
        if let Some(why) = &stats.stopped {
            writeln!(out, "retention: {name}: stopped early: {why}")?;
        }
        writeln!(
            out,
            "retention: {name} ({}): {} {} file(s) ({}), {} newly announced, {} announced before and waiting, {} failed; {} entries in {} dirs looked at in {:.2} s",
            self.retention,
            verb,
            found.deleted.count,
            crate::watch::report::human_size(found.bytes),
            found.announce.count,
            found.waiting,
            found.failures.count,
            stats.entries,
            stats.dirs,
            elapsed.as_secs_f64()
        )?;
        if self.dry_run {
            return Ok(());
        }
        // State first: a notice that is queued but whose files are not recorded would be
        // followed by a second warning for the same files.
        if stats.stopped.is_none() {
            state::save_announced(config, name, &next)?;
        } else {
            // The rest of the tree was not seen: keep what was announced there.
            let mut merged = announced.clone();
            merged.extend(next);
            for k in &found.deleted_keys {
                merged.remove(k);
            }
            state::save_announced(config, name, &merged)?;
        }
        self.notify(today, delete_before, warn_days, found)?;
        anyhow::ensure!(
            stats.error_count == 0,
            "{} entr{} could not be looked at (listed above)",
            stats.error_count,
            if stats.error_count == 1 { "y" } else { "ies" }
        );
        Ok(())
    }

    fn notify(&self, today: Day, delete_before: i64, warn_days: u32, found: Found) -> Result<()> {
        let about = About {
            user: self.name,
            retention: self.retention,
            today,
            to_client: self.to_client,
        };
        if found.announce.count > 0 {
            let mut files = found.announce;
            files
                .items
                .sort_by(|a, b| (&a.day, &a.name).cmp(&(&b.day, &b.name)));
            let first = found.first_day.unwrap_or(today);
            let notice = mail::warning(&about, warn_days, first, &found.announce_keys, &files)?;
            notices::queue(self.config, &notice)?;
        }
        if found.deleted.count > 0 || found.failures.count > 0 {
            let mut files = found.deleted;
            files.items.sort_by(|a, b| a.name.cmp(&b.name));
            let mut keys = found.deleted_keys;
            keys.sort();
            let notice = mail::report(
                &about,
                day_of(delete_before),
                &keys,
                &files,
                found.bytes,
                &found.failures,
            )?;
            notices::queue(self.config, &notice)?;
        }
        Ok(())
    }
}

fn day_of(unix: i64) -> Day {
    Day {
        days: unix.div_euclid(DAY_SECS),
    }
}
