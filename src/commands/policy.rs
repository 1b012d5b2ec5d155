//! `sftpctl policy run`: the policy service's periodic job.

use anyhow::Result;

use crate::cli::PolicyCommand;
use crate::config::{Config, Source};
use crate::error::require_root;

pub fn run(config: &Config, source: &Source, command: &PolicyCommand) -> Result<()> {
    match command {
        PolicyCommand::Run(dry_run) => {
            require_root("sftpctl policy run")?;
            crate::policy::runner::run(config, source, dry_run.dry_run)
        }
    }
}
