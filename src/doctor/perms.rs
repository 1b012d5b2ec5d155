//! Files and directories in the data trees that the shared group cannot write (issue 5):
//! uploaded before the permission watcher ran, or while it was down. `--fix` repairs them
//! with the watcher's own safe walk (`crate::perms::scan`, never following a symlink).

use anyhow::Result;

use crate::config::Config;
use crate::doctor::{Check, Ctx};
use crate::plan::{Journal, Step};

/// How many paths a finding names before "…".
const SHOWN: usize = 5;

pub fn checks(ctx: &mut Ctx) -> Vec<Check> {
    if !ctx.all_users {
        return Vec::new();
    }
    if !ctx.is_root {
        return vec![Check::warn(
            "perms",
            "shared write access",
            "not checked: reading every data tree needs root",
            "run sftpctl doctor as root",
        )];
    }
    let report = match crate::perms::scan(ctx.config, false) {
        Ok(r) => r,
        Err(e) => {
            return vec![Check::warn(
                "perms",
                "shared write access",
                format!("could not scan the data trees: {e:#}"),
                "see the message; sftpctl init creates what the scan needs",
            )]
        }
    };
    let mut checks = Vec::new();
    if report.not_shared == 0 {
        checks.push(Check::ok(
            "perms",
            "shared write access",
            format!(
                "{} files and directories in {} data trees are group-writable",
                report.checked, report.jails
            ),
        ));
    } else {
        let mut shown: Vec<String> = report
            .findings
            .iter()
            .filter(|f| matches!(f.what, crate::perms::FindingKind::NotShared { .. }))
            .take(SHOWN)
            .map(|f| format!("{} ({:04o})", f.path.display(), f.mode))
            .collect();
        if report.not_shared as usize > shown.len() {
            shown.push("…".into());
        }
        checks.push(
            Check::warn(
                "perms",
                "shared write access",
                format!(
                    "{} files or directories in the data trees are not writable for group {}: {}",
                    report.not_shared,
                    ctx.config.group,
                    shown.join(", ")
                ),
                "the admin cannot overwrite them; sftpctl doctor --fix adds g+rw (and setgid on directories); is the watcher (sftpctl-watch.service) running?",
            )
            .repair(ShareDataTrees {
                config: ctx.config.clone(),
                count: report.not_shared,
            }),
        );
    }
    for refused in &report.refused_jails {
        checks.push(Check::warn(
            "perms",
            "shared write access",
            format!("data tree skipped: {refused}"),
            "repair the jail first (see the jails checks above)",
        ));
    }
    checks
}

/// `--fix`: the same safe walk with repair on.
struct ShareDataTrees {
    config: Config,
    count: u64,
}

impl Step for ShareDataTrees {
    fn describe(&self) -> String {
        format!(
            "make {} files and directories in the data trees group-writable",
            self.count
        )
    }
    fn is_satisfied(&self) -> Result<bool> {
        Ok(false)
    }
    fn apply(&self, _journal: &mut Journal) -> Result<()> {
        let report = crate::perms::scan(&self.config, true)?;
        anyhow::ensure!(
            report.is_clean(),
            "some paths could not be repaired: {}",
            report.errors.join("; ")
        );
        Ok(())
    }
}
