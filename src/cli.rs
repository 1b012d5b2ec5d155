//! Command-line definitions. Every flag is documented where it is defined; `--help` shows it.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Set up and run a chrooted-SFTP file exchange on stock OpenSSH and rsyslog.
///
/// Each client gets a private jailed directory, one admin account reads and writes all of
/// them, and the watcher mails one report per SFTP session.
#[derive(Debug, Parser)]
#[command(
    name = "sftpctl",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    /// Config file to use [default: /etc/sftpctl/sftpctl.toml; built-in defaults when that
    /// file is absent].
    #[arg(long, global = true, env = "SFTPCTL_CONFIG", value_name = "PATH")]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create groups, the jail root and every sshd/PAM/rsyslog/logrotate/systemd file,
    /// validate them, then reload the services.
    Init(InitArgs),
    /// Create a jailed SFTP account with its jail, data dir, log link and keys.
    AddUser(AddUserArgs),
    /// Re-link every jail's dev/log to rsyslog's current socket (run after rsyslog starts).
    RefreshLogLinks(DryRun),
    /// Check the live system (jails, log links, sshd, accounts, keys, rsyslog, logrotate, the
    /// watcher, drift of managed files); one line per check. Exit 0 when nothing failed, 1
    /// otherwise.
    Doctor(DoctorArgs),
    /// Follow internal-sftp log lines and mail one report per SFTP session.
    Watch(WatchArgs),
    /// Print per-session summaries of a log file (e.g. /var/log/sftp.log).
    Report(ReportArgs),
}

#[derive(Debug, Args)]
pub struct DryRun {
    /// Print the plan and the diff of every file, change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Admin account to create (home = the jail root, in `group`, never jailed);
    /// overrides `admin` from the config.
    #[arg(long, value_name = "NAME")]
    pub admin: Option<String>,

    /// OpenSSH public key file for the admin (repeatable).
    #[arg(long = "admin-key", value_name = "FILE")]
    pub admin_keys: Vec<PathBuf>,

    #[command(flatten)]
    pub dry_run: DryRun,
}

#[derive(Debug, Args)]
pub struct AddUserArgs {
    /// The new user's login name: 1-32 of a-z, 0-9, _ and -, starting with a letter or _.
    pub name: String,

    /// OpenSSH public key file to authorize (repeatable).
    #[arg(long = "key", value_name = "FILE")]
    pub keys: Vec<PathBuf>,

    #[command(flatten)]
    pub dry_run: DryRun,
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Print one JSON object (checks, summary, and with --fix the plan) instead of lines.
    #[arg(long)]
    pub json: bool,

    /// Repair what is safe to repair (modes, owners, stale log links, missing dirs, the `!`
    /// password field of key-only accounts, drifted managed files) through the plan engine,
    /// then check again. Needs root.
    #[arg(long)]
    pub fix: bool,

    /// Limit the per-user checks to this jailed user (or the admin); the system-wide checks
    /// still run.
    #[arg(long, value_name = "NAME")]
    pub user: Option<String>,

    /// With --fix: print the repair plan and the diff of every file, change nothing.
    #[arg(long, requires = "fix")]
    pub dry_run: bool,

    /// Print the time each area of checks took to stderr (for `make bench`).
    #[arg(long, hide = true)]
    pub timings: bool,
}

#[derive(Debug, Args)]
pub struct WatchArgs {
    /// Stay in the foreground (what the systemd unit runs); without it the watcher detaches
    /// and writes a pid file in `watch.state_dir`.
    #[arg(long)]
    pub foreground: bool,

    /// Tail this log file instead of listening on UDP (survives logrotate).
    #[arg(long, value_name = "FILE", conflicts_with = "stdin")]
    pub follow: Option<PathBuf>,

    /// Read lines from standard input; at end of input deliver every due report and exit.
    #[arg(long)]
    pub stdin: bool,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Log file to read, or - for standard input.
    #[arg(value_name = "FILE", default_value = "-")]
    pub file: PathBuf,

    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}
