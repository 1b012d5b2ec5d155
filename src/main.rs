//! sftpctl: parse the command line, run the command, map errors to exit codes. Nothing else.

use clap::Parser;

use sftpctl::cli::Cli;

fn main() {
    let cli = Cli::parse();
    if let Err(err) = sftpctl::commands::run(cli) {
        if is_broken_pipe(&err) {
            // The reader went away (`sftpctl ... | head`): not an error of ours.
            std::process::exit(0);
        }
        eprintln!("sftpctl: error: {}", one_line(&err));
        std::process::exit(sftpctl::error::exit_code(&err));
    }
}

/// The whole context chain on one line, as the interface contract promises; a path from a
/// user's tree in it cannot reach the terminal raw.
fn one_line(err: &anyhow::Error) -> String {
    sftpctl::display::visible(&format!("{err:#}").replace('\n', " ")).into_owned()
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
