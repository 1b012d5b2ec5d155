//! `perms::scan`: one pass over every data tree, for `doctor` and `doctor --fix`.

use crate::display::{self, visible};
use std::fmt;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::fsx::{self, Outcome};
use super::jails::{self, Ids, UserCheck};
use super::policy::Skip;
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
    /// Not group-writable (or a dir without setgid), whether fixed or not.
    pub not_shared: u64,
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
            "shared write access: {} data tree(s), {} item(s) checked, {} not group-writable, {} fixed, {} left alone",
            self.jails, self.checked, self.not_shared, self.fixed, self.skipped
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

#[doc(hidden)]
pub fn scan_with(config: &Config, fix: bool, check: UserCheck) -> Result<ScanReport> {
    let ids = Ids::load(config, check)?;
    let root = fsx::open_dir_path(&config.root)
        .with_context(|| format!("cannot open the jail root {}", config.root.display()))?;
    let mut report = ScanReport::default();
    let mut names = jails::list_root(&root)?;
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
        fsx::walk(
            data_fd.as_raw_fd(),
            Path::new(""),
            &jail.owners,
            fix,
            &mut |_, _, _| {},
            &mut |rel, outcome| record(&mut report, &data_path, rel, outcome),
        );
    }
    Ok(report)
}

fn record(report: &mut ScanReport, data: &Path, rel: &Path, outcome: &Outcome) {
    let path = || fsx::join(data, rel.as_os_str());
    match *outcome {
        Outcome::Fine => report.checked += 1,
        Outcome::Fixed { from, to } | Outcome::NeedsFix { from, to } => {
            let fixed = matches!(outcome, Outcome::Fixed { .. });
            report.checked += 1;
            report.not_shared += 1;
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
                .push(format!("{}: {}", path().display(), e.desc()))
        }
    }
}
