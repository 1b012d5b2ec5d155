//! The missing ancestors of a path sftpctl creates.

use std::path::Path;

use anyhow::Result;

use crate::plan::steps::Dir;
use crate::plan::Plan;

/// Adds root-owned 0755 directory steps for the missing ancestors of `path`.
pub fn parent_dirs(plan: &mut Plan, path: &Path) -> Result<()> {
    let mut missing = Vec::new();
    for dir in path.ancestors().skip(1) {
        if dir.as_os_str().is_empty() || std::fs::symlink_metadata(dir).is_ok() {
            break;
        }
        missing.push(dir.to_path_buf());
    }
    for dir in missing.into_iter().rev() {
        plan.push(Dir::root(dir, 0o755));
    }
    Ok(())
}
