//! Account expiry (shadow) and idle lock. (Being built: issue 11, item 3.)

use anyhow::Result;

use crate::config::Config;
use crate::plan::Plan;
use crate::registry::UserSettings;

/// Steps that make shadow's expiry of `name` match `settings.expires`.
pub fn steps(
    _plan: &mut Plan,
    _config: &Config,
    _name: &str,
    _settings: &UserSettings,
) -> Result<()> {
    Ok(())
}

/// This job of `sftpctl policy run`: acts only when it is due (state in
/// `state_dir/policy/`); with `dry_run` it says what it would do and changes nothing.
pub fn run(
    _config: &crate::config::Config,
    _source: &crate::config::Source,
    _dry_run: bool,
    _out: &mut dyn std::io::Write,
) -> anyhow::Result<()> {
    Ok(())
}
