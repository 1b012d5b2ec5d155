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
    version = crate::build_info::VERSION,
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
    /// List every managed user: jail, data size, keys, locked or not, e-mail, last session.
    ListUsers(ListUsersArgs),
    /// Remove a jailed user: ends its sessions, removes account, keys and jail.
    RemoveUser(RemoveUserArgs),
    /// Add, remove or list the authorized keys of a jailed user or of the admin.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Set a user's password (read from stdin or a prompt, never from the command line).
    Passwd(PasswdArgs),
    /// Lock a user out (password and keys) and end its sessions.
    Lock(NameArgs),
    /// Unlock a user locked with `sftpctl lock` or by the idle lock (its `expires` date comes
    /// back; an expired account is refused: extend it with `sftpctl set NAME expires=…`).
    Unlock(NameArgs),
    /// Set the address that gets a copy of this user's session reports ("" to clear).
    SetEmail(SetEmailArgs),
    /// Mail a client how to connect (host, port, user name, the server's host key
    /// fingerprints, its installed keys, its folder), again; never a password.
    Welcome(WelcomeArgs),
    /// Change a client's settings: `sftpctl set alice access=read-only quota=5G`
    /// (docs/policy.md has every key).
    Set(SetArgs),
    /// Run the policy service's job once: quota usage and warnings, expiry and idle-lock
    /// notices, retention, pending notices (the systemd timer runs it).
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Delete now the files that retention says are due (the daily job does the same);
    /// `--dry-run` lists them and changes nothing.
    Retention(RetentionArgs),
    /// Make the managed users match a declarative USERS.toml (create, change, and --prune).
    Apply(ApplyArgs),
    /// On a forwarding host: send this host's SFTP accounts (uid → name) to the collector,
    /// which checks forwarded lines against them (init, add-user, remove-user, apply and
    /// refresh-log-links do it themselves; docs/fleet.md).
    Announce,
    /// Check the live system (jails, log links, sshd, accounts, keys, rsyslog, logrotate, the
    /// watcher, drift of managed files, shared write access); one line per check. Exit 0 when
    /// nothing failed, 1 otherwise.
    Doctor(DoctorArgs),
    /// Follow internal-sftp log lines and mail one report per SFTP session.
    Watch(WatchArgs),
    /// Print per-session summaries of the SFTP logs: every rotation of rsyslog.log_file (or
    /// the FILEs given) as one history, filtered by user, time, path and action.
    Report(ReportArgs),
    /// Run only the shared-write permission watcher in the foreground until SIGTERM/SIGINT
    /// (for tests; `watch` runs it when perms.enabled).
    #[command(hide = true)]
    PermsWatch,
    /// Write the man pages and shell completions (for `make deb-package`).
    #[command(hide = true)]
    GenerateAssets(GenerateAssetsArgs),
}

#[derive(Debug, Args)]
pub struct GenerateAssetsArgs {
    /// Directory to write `man/` and `completions/` into (created if missing).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
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

    /// Forward this host's trusted SFTP lines to a collector (`forward.to`; docs/fleet.md):
    /// rsyslog over TCP with TLS and mutual certificates, queued on disk while it is away.
    #[arg(long, value_name = "HOST:PORT")]
    pub forward_to: Option<String>,

    /// Make this host a collector (`collect.enabled`): rsyslog takes forwarding hosts' lines
    /// on `collect.listen` (TLS, certificates of `collect.ca` with a `collect.permitted` name)
    /// and feeds them to this host's watcher.
    #[arg(long)]
    pub collect: bool,

    /// Take back what init set up: restore every file sftpctl changed from its kept original,
    /// remove the files it created, stop the watcher, validate and reload sshd and rsyslog.
    /// Refused while jailed accounts exist. Keeps the admin account (its keys are added to its
    /// ~/.ssh/authorized_keys), the groups, the jail root with its data, logs and reports.
    #[arg(long, conflicts_with_all = ["admin", "admin_keys", "forward_to", "collect"])]
    pub undo: bool,

    /// With --dry-run: exit 3 when changes would be made (for Ansible's changed_when).
    #[arg(long, requires = "dry_run", conflicts_with = "undo")]
    pub exit_code: bool,

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

    /// Also set a password, read as one line from standard input.
    #[arg(long)]
    pub password_stdin: bool,

    /// Address that gets a copy of this user's session reports.
    #[arg(long, value_name = "ADDR")]
    pub email: Option<String>,

    /// Settings of the client, as `sftpctl set` takes them: `access=upload-only quota=5G`.
    #[arg(value_name = "KEY=VALUE")]
    pub settings: Vec<String>,

    /// Then mail the client how to connect (as `sftpctl welcome NAME`); needs --email or an
    /// address stored before. With --dry-run: say what would be mailed to whom, send nothing.
    #[arg(long)]
    pub welcome: bool,

    #[command(flatten)]
    pub dry_run: DryRun,
}

#[derive(Debug, Args)]
pub struct WelcomeArgs {
    /// The jailed user; its mail address is the one stored (`--email`, `sftpctl set NAME
    /// email=ADDR`) or `mail.users`.
    pub name: String,

    /// Print the mail and its recipient, send nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct NameArgs {
    /// The managed user.
    pub name: String,

    #[command(flatten)]
    pub dry_run: DryRun,
}

#[derive(Debug, Args)]
pub struct ListUsersArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RemoveUserArgs {
    /// The managed user to remove.
    pub name: String,

    /// Leave the data dir in place (`<root>/NAME/<data_dir>`), remove everything else.
    #[arg(long, conflicts_with_all = ["archive", "remove_data"])]
    pub keep_data: bool,

    /// Write the data dir to this new .tar.gz (root-only, 0600) before removing it.
    #[arg(long, value_name = "FILE.tar.gz", conflicts_with = "remove_data")]
    pub archive: Option<PathBuf>,

    /// Delete the data. Without one of these three flags a non-empty data dir is refused.
    #[arg(long)]
    pub remove_data: bool,

    #[command(flatten)]
    pub dry_run: DryRun,
}

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Authorize more public keys (duplicates are refused).
    Add {
        /// A jailed user or the admin.
        name: String,
        /// OpenSSH public key file(s).
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
        #[command(flatten)]
        dry_run: DryRun,
    },
    /// Remove a key, named by its SHA256 fingerprint (as `key list` shows) or its number.
    Remove {
        /// A jailed user or the admin.
        name: String,
        /// `SHA256:…` fingerprint or the 1-based number from `key list`.
        key: String,
        #[command(flatten)]
        dry_run: DryRun,
    },
    /// List the keys with their fingerprints.
    List {
        /// A jailed user or the admin.
        name: String,
    },
}

#[derive(Debug, Args)]
pub struct PasswdArgs {
    /// The managed user.
    pub name: String,
}

#[derive(Debug, Args)]
pub struct SetEmailArgs {
    /// The managed user.
    pub name: String,
    /// The address, e.g. alice@client.example; "" removes it.
    pub address: String,
}

#[derive(Debug, Args)]
pub struct SetArgs {
    /// The managed user.
    pub name: String,
    /// KEY=VALUE: email=ADDR|"", access=rw|read-only|upload-only|download-only,
    /// allow_from=NET[,NET…]|"", expires=YYYY-MM-DD|never, retention=90d|off|default,
    /// quota=5G|none, notify_client=true|false|default,
    /// notify_new_files=true|false|default.
    /// quota=5G|none, notify_client=true|false|default, mail_mode=session|digest|default.
    #[arg(required = true, value_name = "KEY=VALUE")]
    pub settings: Vec<String>,

    #[command(flatten)]
    pub dry_run: DryRun,
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Do every policy job that is due now, then exit.
    Run(DryRun),
}

#[derive(Debug, Args)]
pub struct RetentionArgs {
    /// Managed users to act on [default: every managed user with a retention].
    #[arg(value_name = "NAME")]
    pub names: Vec<String>,

    /// List what would be deleted now, change nothing (no deletion, no notice, no state).
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// The declarative user list (see docs/apply.md).
    #[arg(value_name = "USERS.toml")]
    pub file: PathBuf,

    /// Also remove managed users that the file does not list (their data dirs are kept).
    #[arg(long)]
    pub prune: bool,

    /// With --dry-run: exit 3 when changes would be made (for Ansible's changed_when).
    #[arg(long, requires = "dry_run")]
    pub exit_code: bool,

    #[command(flatten)]
    pub dry_run: DryRun,
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Print one JSON object (checks, summary, and with --fix the plan) instead of lines.
    #[arg(long)]
    pub json: bool,

    /// Repair what is safe to repair (modes, owners, stale log links, missing dirs, the `!`
    /// password field of key-only accounts, drifted managed files, data files the group cannot
    /// write) through the plan engine, then check again. Needs root.
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

    /// Tail this log file instead of listening on watch.socket (survives logrotate).
    #[arg(long, value_name = "FILE", conflicts_with = "stdin")]
    pub follow: Option<PathBuf>,

    /// Read lines from standard input; at end of input deliver every due report and exit.
    #[arg(long)]
    pub stdin: bool,

    /// Also take lines that carry no credentials of their sender (`[uid= pid=]`), e.g. a
    /// log written before the trusted feed. Anyone on the host could have written those.
    #[arg(long)]
    pub trust_unverified: bool,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Logs to read in this order, `-` for standard input; gzip (`.gz` rotations) is
    /// decompressed. Without FILE: every log of `rsyslog.log_file` as logrotate leaves it,
    /// oldest first (`sftp.log.3.gz` … `sftp.log.1`, `sftp.log`), read as one stream, so a
    /// session open across a rotation is one session. A symlink or a non-regular file is
    /// refused.
    #[arg(value_name = "FILE")]
    pub files: Vec<PathBuf>,

    /// Output: text (what the mails say), json (an array of reports) or csv (one row per
    /// listed action: session, user, client, time, action, path, size, status).
    #[arg(long, value_name = "FORMAT")]
    pub format: Option<String>,

    /// Print JSON instead of text (the same as `--format json`).
    #[arg(long)]
    pub json: bool,

    /// Only sessions of this user (repeatable).
    #[arg(long = "user", value_name = "NAME")]
    pub users: Vec<String>,

    /// Only sessions that ended at or after this time: a date (2026-03-01), a date-time
    /// (2026-03-01T14:30, UTC unless it ends in Z or ±HH:MM) or a duration back from now
    /// (30d, 12h, 90m, 45s, 2w).
    #[arg(long, value_name = "WHEN", allow_hyphen_values = true)]
    pub since: Option<String>,

    /// Only sessions that started before this time (the same forms as --since).
    #[arg(long, value_name = "WHEN", allow_hyphen_values = true)]
    pub until: Option<String>,

    /// Only sessions with at least one listed entry whose path matches GLOB, and of them only
    /// the matching entries (`*` stays within a directory, `**` crosses; a glob without `/`
    /// matches the file name alone). Totals stay the whole session's.
    #[arg(long, value_name = "GLOB", allow_hyphen_values = true)]
    pub path: Option<String>,

    /// Only sessions with at least one such action, and of them only entries of the chosen
    /// kinds: upload, download, delete (files and directories), rename, failed (repeatable).
    #[arg(long = "action", value_name = "ACTION")]
    pub actions: Vec<String>,

    /// Also read lines that carry no credentials of their sender (`[uid= pid=]`), e.g. a
    /// log written before the trusted feed. Anyone on the host could have written those.
    #[arg(long)]
    pub trust_unverified: bool,

    /// List SSH logins instead of sessions: one per connection (accepted, failed, invalid
    /// user, penalty), with time, user, method, source address and key fingerprint when
    /// sshd logged one. Takes --user, --since, --until and --format (not --path, --action).
    #[arg(long)]
    pub logins: bool,
}
