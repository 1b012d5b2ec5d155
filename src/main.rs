//! sftpctl: parse the command line, run the command, map errors to exit codes. Nothing else.

use clap::Parser;

use sftpctl::cli::Cli;

fn main() {
    let cli = Cli::parse();
    if let Err(err) = sftpctl::commands::run(cli) {
        eprintln!("sftpctl: error: {}", one_line(&err));
        std::process::exit(sftpctl::error::exit_code(&err));
    }
}

/// The whole context chain on one line, as the interface contract promises.
fn one_line(err: &anyhow::Error) -> String {
    format!("{err:#}").replace('\n', " ")
}
