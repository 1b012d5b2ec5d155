//! `sftpctl refresh-log-links`: every managed jail's `dev/log` becomes a hard link to
//! rsyslog's current socket again (see [`crate::log_links`] for what is looked at).

use std::io::Write;

use anyhow::Result;

use crate::config::Config;
use crate::error::require_root;
use crate::log_links::survey;
use crate::plan::Plan;

pub fn run(config: &Config, dry_run: bool) -> Result<()> {
    require_root("sftpctl refresh-log-links")?;
    let survey = survey(config)?;
    for why in &survey.skipped {
        eprintln!("sftpctl: warning: skipped {}", crate::display::visible(why));
    }
    let renew = survey.stale.len();
    let mut plan = Plan::new();
    for link in survey.stale {
        plan.push(link);
    }
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if dry_run {
        plan.print_dry_run(&mut out)?;
        writeln!(
            out,
            "log links: {} fresh, {renew} would be renewed, {} skipped",
            survey.fresh,
            survey.skipped.len()
        )?;
        return Ok(());
    }
    plan.apply(&mut std::io::sink())?;
    writeln!(
        out,
        "log links: {} fresh, {renew} renewed, {} skipped",
        survey.fresh,
        survey.skipped.len()
    )?;
    Ok(())
}
