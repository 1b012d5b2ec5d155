//! Quota: usage per client, warnings, no uploads at 100 %. (Being built: issue 11, item 5.)

/// Whether `name` reached its quota: its next sessions get no uploads (sshd's per-user block
/// reads this when it is rendered).
pub fn is_full(_config: &crate::config::Config, _name: &str) -> bool {
    false
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
