//! `sftpctl retention [--dry-run] [NAME…]`: retention now, by the job's own code path.

use anyhow::Result;
use std::io::Write;

use crate::cli::RetentionArgs;
use crate::config::Config;
use crate::error::require_root;

pub fn run(config: &Config, args: &RetentionArgs) -> Result<()> {
    require_root("sftpctl retention")?;
    let mut names = args.names.clone();
    for name in &names {
        crate::accounts::require_managed(config, name)?;
    }
    let explicit = !names.is_empty();
    if names.is_empty() {
        names = crate::accounts::managed_names(config);
    }
    names.sort();
    names.dedup();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let outcome =
        crate::policy::retention::run_now(config, &names, args.dry_run, explicit, &mut out);
    if !args.dry_run {
        // What this run queued goes out now, like at the end of `sftpctl policy run`.
        let sent = crate::policy::notices::deliver_pending(config)?;
        if sent > 0 {
            writeln!(out, "sftpctl retention: {sent} notice(s) delivered")?;
        }
    }
    outcome
}
