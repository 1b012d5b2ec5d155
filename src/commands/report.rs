//! `sftpctl report`: per-session summaries of a log file, printed to stdout.

use anyhow::Result;

use crate::cli::ReportArgs;
use crate::config::Config;

pub fn run(_config: &Config, _args: &ReportArgs) -> Result<()> {
    anyhow::bail!("report is not built yet")
}
