//! The plan step that brings existing data trees to the policy in bulk: data dirs from 2775 to
//! 2770, uploads from 0664 to 0660, set-id bits cleared (issue 9). `init` plans it; the walk
//! is the watcher's own (see [`super::scan`]).

use anyhow::Result;

use crate::config::Config;
use crate::plan::{Journal, Step};

/// Every data tree through [`super::scan`] with repair. Isolated: a tree that cannot be
/// repaired is reported and does not undo the rest of `init`. Never undone (an undo would
/// open files to other accounts again).
pub struct ConfineDataTrees {
    pub config: Config,
    /// What the scan at planning time found to repair, and in how many trees.
    pub items: u64,
    pub trees: usize,
    /// Only this jail's tree (`add-user` of an existing account); `None` = every tree.
    pub only: Option<String>,
}

impl ConfineDataTrees {
    /// The step when some data tree needs it (`None` before `init` made the group and root).
    pub fn planned(config: &Config) -> Option<ConfineDataTrees> {
        if crate::plan::steps::gid_of(&config.group).is_none() || !config.root.is_dir() {
            return None;
        }
        Self::plan_for(config, None)
    }

    /// The step for one existing jail's tree, when it needs it.
    pub fn planned_for(config: &Config, name: &str) -> Option<ConfineDataTrees> {
        crate::plan::steps::gid_of(&config.group)?;
        Self::plan_for(config, Some(name.to_string()))
    }

    fn plan_for(config: &Config, only: Option<String>) -> Option<ConfineDataTrees> {
        let report = scan_of(config, only.as_deref(), false).ok()?;
        let trees = report.per_jail.iter().filter(|j| j.not_shared > 0).count();
        (report.not_shared > 0).then(|| ConfineDataTrees {
            config: config.clone(),
            items: report.not_shared,
            trees,
            only,
        })
    }
}

fn scan_of(config: &Config, only: Option<&str>, fix: bool) -> Result<super::ScanReport> {
    match only {
        Some(name) => super::scan_jail(config, name, fix),
        None => super::scan(config, fix),
    }
}

impl Step for ConfineDataTrees {
    fn describe(&self) -> String {
        format!(
            "migrate {} data tree(s): {} files and directories to the shared group's modes, closed to other accounts (data dirs 2770, files g+rw o-rwx, no setuid/setgid)",
            self.trees, self.items
        )
    }
    fn is_satisfied(&self) -> Result<bool> {
        let report = scan_of(&self.config, self.only.as_deref(), false)?;
        Ok(report.not_shared == 0 && report.errors.is_empty())
    }
    fn apply(&self, _journal: &mut Journal) -> Result<()> {
        let report = scan_of(&self.config, self.only.as_deref(), true)?;
        if !report.errors.is_empty() {
            let first: Vec<&str> = report.errors.iter().take(3).map(String::as_str).collect();
            anyhow::bail!(
                "{} items repaired, {} could not be ({}); run sftpctl doctor for the details",
                report.fixed,
                report.errors.len(),
                first.join("; ")
            );
        }
        Ok(())
    }
    fn isolated(&self) -> bool {
        true
    }
}
