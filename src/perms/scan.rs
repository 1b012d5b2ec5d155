//! `perms::scan`: one pass over every data tree, for `doctor` and `doctor --fix`.

use crate::display::{self, visible};
use std::fmt;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::fsx::{self, Outcome};
use super::jails::{self, Ids, UserCheck};
use super::policy::{Skip, SET_ID, WORLD};
use crate::config::Config;

/// At most this many findings are listed; the counters are always complete.
pub const MAX_LISTED: usize = 1000;

/// One inode that is not group-writable, or that was left alone on purpose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// Full path on the host (for people; the scan itself never resolves it again).
    pub path: PathBuf,
    /// Mode found (`& 0o7777`).
    pub mode: u32,
    pub what: FindingKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FindingKind {
    /// Lacks group bits; `fixed` tells whether this scan changed it to `want`.
    NotShared { want: u32, fixed: bool },
    /// Left alone (see [`Skip`]).
    Skipped(Skip),
}

/// What `scan` saw.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScanReport {
    /// Data trees scanned.
    pub jails: usize,
    /// Jails refused (e.g. a data dir not owned by its account), with the reason.
    pub refused_jails: Vec<String>,
    /// Files and directories looked at.
    pub checked: u64,
    /// Not as the policy wants it (not group-writable, a dir without setgid, open to other
    /// accounts, a set-id file), whether fixed or not.
    pub not_shared: u64,
    /// Of those, open to other accounts (any world bit).
    pub world: u64,
    /// Setuid/setgid regular files found (fixed or not, including the ones left alone).
    pub set_id: u64,
    /// Directories walked (what the watcher would need as inotify watches).
    pub dirs: u64,
    /// One line per data tree, in name order.
    pub per_jail: Vec<JailScan>,
    /// How many of those were fixed (only with `fix`).
    pub fixed: u64,
    /// Left alone on purpose (other owner, other group, setuid, hard-linked admin file, ...).
    pub skipped: u64,
    /// Could not be opened or changed (vanished, too deep, I/O errors).
    pub errors: Vec<String>,
    /// The first [`MAX_LISTED`] findings, in walk order.
    pub findings: Vec<Finding>,
    /// More findings existed than are listed.
    pub truncated: bool,
}

/// What `scan` saw in one data tree.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JailScan {
    pub name: String,
    pub not_shared: u64,
    pub fixed: u64,
    pub set_id: u64,
    pub dirs: u64,
    /// Length in bytes of the longest directory path below the data dir.
    pub deepest: usize,
    pub errors: u64,
}

impl ScanReport {
    /// Nothing needs attention: every file and directory is shared (or was just fixed).
    pub fn is_clean(&self) -> bool {
        self.not_shared == self.fixed && self.errors.is_empty()
    }

    fn add(&mut self, finding: Finding) {
        if self.findings.len() < MAX_LISTED {
            self.findings.push(finding);
        } else {
            self.truncated = true;
        }
    }
}

impl fmt::Display for ScanReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "shared write access: {} data tree(s), {} item(s) checked, {} to repair ({} open to others, {} set-id), {} fixed, {} left alone",
            self.jails, self.checked, self.not_shared, self.world, self.set_id, self.fixed, self.skipped
        )?;
        for r in &self.refused_jails {
            writeln!(f, "  refused jail {}", visible(r))?;
        }
        for x in &self.findings {
            match x.what {
                FindingKind::NotShared { want, fixed } => writeln!(
                    f,
                    "  {} {:04o} -> {:04o}{}",
                    display::path(&x.path),
                    x.mode,
                    want,
                    if fixed { " (fixed)" } else { "" }
                )?,
                FindingKind::Skipped(why) => writeln!(
                    f,
                    "  {} {:04o} left alone: {}",
                    display::path(&x.path),
                    x.mode,
                    visible(&why.to_string())
                )?,
            }
        }
        if self.truncated {
            writeln!(f, "  ... (only the first {MAX_LISTED} are listed)")?;
        }
        for e in &self.errors {
            writeln!(f, "  error: {}", visible(&e.to_string()))?;
        }
        Ok(())
    }
}

/// Lists (and with `fix`, repairs) every file and directory in every data tree that is not
/// group-writable, or a directory without setgid, under the same rules as the watcher: no
/// symlink is followed, nothing outside a data tree or owned by anyone but the jail's user or
/// the admin is touched, modes change only through an opened descriptor.
pub fn scan(config: &Config, fix: bool) -> Result<ScanReport> {
    scan_with(config, fix, UserCheck::Accounts)
}

/// [`scan`] of one data tree, `<root>/NAME/<data_dir>` (a name that is no jail scans nothing).
pub fn scan_jail(config: &Config, name: &str, fix: bool) -> Result<ScanReport> {
    scan_names(
        config,
        fix,
        UserCheck::Accounts,
        Some(vec![std::ffi::OsString::from(name)]),
    )
}

#[doc(hidden)]
pub fn scan_with(config: &Config, fix: bool, check: UserCheck) -> Result<ScanReport> {
    scan_names(config, fix, check, None)
}

fn scan_names(
    config: &Config,
    fix: bool,
    check: UserCheck,
    only: Option<Vec<std::ffi::OsString>>,
) -> Result<ScanReport> {
    let ids = Ids::load(config, check)?;
    let root = fsx::open_dir_path(&config.root)
        .with_context(|| format!("cannot open the jail root {}", config.root.display()))?;
    let mut report = ScanReport::default();
    let mut names = match only {
        Some(names) => names,
        None => jails::list_root(&root)?,
    };
    names.sort();
    for name in names {
        let (jail, data_fd, _) = match jails::open_jail(root.as_raw_fd(), &name, config, &ids) {
            Ok(Some(j)) => j,
            Ok(None) => continue,
            Err(why) => {
                report
                    .refused_jails
                    .push(format!("{}: {why}", config.root.join(&name).display()));
                continue;
            }
        };
        report.jails += 1;
        let data_path = config.root.join(&jail.name).join(&config.data_dir);
        let before = report.clone_counts();
        let mut dirs = 0u64;
        let mut deepest = 0usize;
        fsx::walk(
            data_fd.as_raw_fd(),
            Path::new(""),
            &jail.owners,
            fix,
            &mut |_, _, rel| {
                dirs += 1;
                deepest = deepest.max(rel.as_os_str().len());
            },
            &mut |rel, outcome| record(&mut report, &data_path, rel, outcome),
        );
        report.dirs += dirs;
        let after = report.clone_counts();
        report.per_jail.push(JailScan {
            name: jail.name.clone(),
            not_shared: after.0 - before.0,
            fixed: after.1 - before.1,
            set_id: after.2 - before.2,
            errors: after.3 - before.3,
            dirs,
            deepest,
        });
    }
    Ok(report)
}

impl ScanReport {
    fn clone_counts(&self) -> (u64, u64, u64, u64) {
        (
            self.not_shared,
            self.fixed,
            self.set_id,
            self.errors.len() as u64,
        )
    }
}

fn record(report: &mut ScanReport, data: &Path, rel: &Path, outcome: &Outcome) {
    let path = || fsx::join(data, rel.as_os_str());
    match *outcome {
        Outcome::Fine => report.checked += 1,
        Outcome::Fixed { from, to } | Outcome::NeedsFix { from, to } => {
            let fixed = matches!(outcome, Outcome::Fixed { .. });
            report.checked += 1;
            report.not_shared += 1;
            report.world += u64::from(from & WORLD != 0);
            // Set-id bits removed: a regular file (a directory keeps its setgid).
            report.set_id += u64::from(from & SET_ID != 0 && to & SET_ID == 0);
            report.fixed += u64::from(fixed);
            report.add(Finding {
                path: path(),
                mode: from,
                what: FindingKind::NotShared { want: to, fixed },
            });
        }
        Outcome::Skipped(why, mode) => {
            report.checked += 1;
            if why == Skip::NotFileOrDir {
                return; // FIFOs and sockets need no group write; not worth a line.
            }
            report.skipped += 1;
            report.set_id += u64::from(why == Skip::SetId);
            report.add(Finding {
                path: path(),
                mode,
                what: FindingKind::Skipped(why),
            });
        }
        // A symlink (ELOOP), or gone since it was listed: nothing to report.
        Outcome::Unreachable(nix::errno::Errno::ELOOP | nix::errno::Errno::ENOENT) => {}
        Outcome::Unreachable(e) => {
            report
                .errors
                .push(short(&format!("{}: {}", path().display(), e.desc())))
        }
    }
}

/// A path (or a message holding one) for one line of output: a path from a tree deeper than
/// PATH_MAX would fill a screen. Keeps the start and the end, and says how long it was.
pub fn short(text: &str) -> String {
    const KEEP: usize = 80;
    if text.len() <= 2 * KEEP + 20 {
        return text.to_string();
    }
    let mut head = KEEP;
    while !text.is_char_boundary(head) {
        head -= 1;
    }
    let mut tail = text.len() - KEEP;
    while !text.is_char_boundary(tail) {
        tail += 1;
    }
    format!("{}…{} ({} bytes)", &text[..head], &text[tail..], text.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_paths_are_shortened_short_ones_kept() {
        assert_eq!(short("/srv/a/b"), "/srv/a/b");
        let deep = format!("/srv/j/data/{}f", "d/".repeat(3000));
        let s = short(&deep);
        assert!(s.len() < 220, "{s}");
        assert!(s.starts_with("/srv/j/data/d/d/"));
        assert!(s.ends_with("d/f (6013 bytes)"), "{s}");
    }
}
