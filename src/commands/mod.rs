//! One module per subcommand. Each builds a Plan (provisioning) or runs a loop (watch).

mod report;
mod watch;

use anyhow::Result;

use crate::cli::{Cli, Command};
use crate::config::Config;

/// Loads the config and runs the chosen subcommand.
pub fn run(cli: Cli) -> Result<()> {
    let (config, source) = Config::load(cli.config.as_deref())?;
    match cli.command {
        Command::Init(_args) => todo_command("init"),
        Command::AddUser(_args) => todo_command("add-user"),
        Command::RefreshLogLinks(_args) => todo_command("refresh-log-links"),
        Command::Watch(args) => watch::run(&config, &source, &args),
        Command::Report(args) => report::run(&config, &args),
    }
}

fn todo_command(name: &str) -> Result<()> {
    anyhow::bail!("{name} is not built yet")
}
