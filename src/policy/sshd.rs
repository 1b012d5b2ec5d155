//! The per-user `Match` blocks of sshd (access mode, allow-list, quota state).
//! (Being built: issue 11, item 1-2.)

use std::collections::BTreeMap;

use anyhow::Result;

use crate::config::Config;
use crate::plan::Plan;
use crate::registry::UserSettings;

/// Steps that render sshd's files with the per-user blocks of every managed user (`overrides`
/// replace what their user files say: the plan writes those files first), validate them
/// and reload sshd; no changes when the rendered files match the disk.
pub fn steps(
    _plan: &mut Plan,
    _config: &Config,
    _overrides: &BTreeMap<String, UserSettings>,
) -> Result<()> {
    Ok(())
}
