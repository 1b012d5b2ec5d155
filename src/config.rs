//! `sftpctl.toml` → [`Config`]: defaults, loading and validation of every value.
//!
//! Every path sftpctl reads or writes, every group name and every service command comes from
//! here, so that a test (or an unusual host) can redirect all of them with `--config`.
//! Values end up inside sshd, rsyslog and systemd files, so each one is validated before any
//! template sees it: a newline or a stray `%` must be an error, never a new config line.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::error::usage;
use crate::names;

mod fleet;
pub use fleet::{Collect, Forward};

/// Where the config lives unless `--config` or `SFTPCTL_CONFIG` says otherwise.
pub const DEFAULT_PATH: &str = "/etc/sftpctl/sftpctl.toml";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Parent of all jails; must be a root-owned chain (sshd's ChrootDirectory rule).
    pub root: PathBuf,
    /// The writable directory inside each jail (the user's home, seen from inside).
    pub data_dir: String,
    /// Group that owns shared files: every jailed user and the admin.
    pub group: String,
    /// Members are chrooted and get SFTP only.
    pub jail_group: String,
    /// Admin account that reads and writes every jail (optional).
    pub admin: Option<String>,
    /// Umask of SFTP sessions, four octal digits.
    pub umask: String,
    /// internal-sftp's log level: `VERBOSE` (default: every request is logged, so each
    /// failure is tied to its own request) or `INFO` (transfers, changes and failures only;
    /// a failure is then tied to its request by timing, which a pipelining client can steer).
    pub sftp_log_level: String,
    /// Path of this binary as the rendered systemd units and logrotate file call it.
    pub sftpctl_bin: PathBuf,
    /// Shell of jailed users.
    pub nologin_shell: PathBuf,
    /// Shell of the admin account.
    pub admin_shell: PathBuf,
    /// One small root-only file per managed user with what the account database cannot
    /// hold (the per-user report address).
    pub user_dir: PathBuf,
    /// The shadow file read to tell locked accounts and password state.
    pub shadow_file: PathBuf,
    pub sshd: Sshd,
    pub pam: Pam,
    pub rsyslog: Rsyslog,
    pub logrotate: Logrotate,
    pub systemd: Systemd,
    pub watch: Watch,
    pub mail: Mail,
    pub perms: Perms,
    pub policy: Policy,
    pub welcome: Welcome,
    pub forward: Forward,
    pub collect: Collect,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Sshd {
    /// The main sshd_config (sftpctl edits only a fenced block in it).
    pub config: PathBuf,
    /// The drop-in sftpctl owns.
    pub dropin: PathBuf,
    /// Root-owned directory with one authorized_keys file per user.
    pub authorized_keys_dir: PathBuf,
    /// The sshd binary used for `-t` validation and version detection.
    pub binary: PathBuf,
    /// Command that makes sshd re-read its config; `[]` = do not reload.
    pub reload: Vec<String>,
    /// Addresses and networks (`203.0.113.7`, `198.51.100.0/24`, `2001:db8::/32`) that
    /// OpenSSH >= 9.8 never penalizes for failed logins (`PerSourcePenaltyExemptList`): a
    /// NAT address many clients share, a monitoring host. Ignored on older OpenSSH, which
    /// has no penalties.
    pub penalty_exempt: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Pam {
    /// PAM service file of sshd; sftpctl adds a fenced pam_umask block.
    pub file: PathBuf,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Rsyslog {
    /// The rsyslog drop-in sftpctl owns.
    pub config: PathBuf,
    /// rsyslog's main config, validated with `rsyslogd -N1 -f` (it includes the drop-in).
    pub main_config: PathBuf,
    /// Where internal-sftp lines are written.
    pub log_file: PathBuf,
    /// The rsyslogd binary used for validation.
    pub binary: PathBuf,
    /// Command that restarts rsyslog (a restart is needed for a new listen socket).
    pub restart: Vec<String>,
    /// Command logrotate runs after rotation: it must make rsyslog reopen files WITHOUT
    /// re-creating its sockets (SIGHUP does that; a restart would orphan the jails' links).
    pub rotate: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Logrotate {
    pub config: PathBuf,
    /// How many rotated logs to keep.
    pub rotate: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Systemd {
    pub unit_dir: PathBuf,
    /// rsyslog's unit, which gets a drop-in running `refresh-log-links` after every start.
    pub rsyslog_unit: String,
    /// Run after unit files changed; `[]` = do not.
    pub daemon_reload: Vec<String>,
    /// Enables and starts the watcher unit and the policy timer and path units; `[]` = do not.
    pub enable_watch: Vec<String>,
    /// Stops and disables it (`init --undo`); `[]` = do not.
    pub disable_watch: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Watch {
    /// The trusted feed: a Unix datagram socket the watcher creates (its directory root
    /// 0700, the socket 0600) and rsyslog's `omuxsock` sends every internal-sftp line to,
    /// with the sender's kernel credentials in the line.
    pub socket: PathBuf,
    /// An extra UDP listener (opt-in, e.g. for a remote host's rsyslog); empty = none. Its
    /// lines carry no credentials anyone can check: whoever can send to it can forge reports.
    #[serde(with = "optional_addr")]
    pub listen: Option<SocketAddr>,
    /// Outbox, saved sessions, pid file.
    pub state_dir: PathBuf,
    /// Seconds without a line after which an open session is reported as incomplete.
    pub idle_timeout_secs: u64,
    /// Directory whose templates override the built-in mail templates (optional).
    pub template_dir: Option<PathBuf>,
    /// Entries kept per list of one report (uploads, deletes, …); the rest is summed up as
    /// "… and N more", totals stay exact.
    pub max_list_entries: usize,
    /// Open sessions followed at once; beyond that the least recently active one is reported
    /// early, marked incomplete.
    pub max_open_sessions: usize,
    /// Bytes one open session may hold (lists, names); beyond that its lists only count.
    pub max_session_bytes: usize,
    /// Bytes all open sessions together may hold; beyond that sessions are reported early.
    pub max_sessions_bytes: usize,
    /// Reports of one user written to the outbox per `report_window_secs`; the user's further
    /// sessions in that window are summed up in one summary report.
    pub max_reports_per_user: u32,
    /// Reports of all users per window; beyond that every user's further sessions are summed.
    pub max_reports_per_window: u32,
    /// Length of the report window, in seconds of wall-clock time.
    pub report_window_secs: u64,
    /// Receive buffer asked for the UDP socket, so bursts are not dropped.
    pub receive_buffer_bytes: usize,
}

/// What the welcome mail (`add-user --welcome`, `sftpctl welcome`) tells clients to connect to.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Welcome {
    /// Host name or address clients connect to; empty = this host's FQDN (`hostname --fqdn`).
    pub host: String,
    /// Port clients connect to; 0 = sshd's first `Port` as `sshd -T` reports it.
    pub port: u16,
}

/// Shared write access (issue 5): files and directories created in any data tree are made
/// group-writable by the watcher, whatever mode the SFTP client asked for.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Perms {
    /// Run the permission watcher inside `sftpctl watch`.
    pub enabled: bool,
    /// Opt-in: when the watcher runs out of inotify watches it may raise the host-wide
    /// `fs.inotify.max_user_watches` up to this value (logged loudly each time); 0, the
    /// default, = never touch that sysctl.
    pub max_user_watches: u32,
    /// inotify watches one jail may cost (one per directory of its data tree). A jail with
    /// more directories is not watched but scanned every `scan_interval_secs`.
    pub max_watches_per_jail: u32,
    /// How often a jail over `max_watches_per_jail` is scanned and repaired, in seconds.
    pub scan_interval_secs: u64,
}

/// Per-client policy (docs/policy.md): defaults for every client and when the policy
/// service acts. Each client's own settings are in its user file (`sftpctl set`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Policy {
    /// Files older than this (last modification) are deleted once a day: "90d", "12w" or
    /// "off" (the default). A client's own `retention` overrides it.
    pub retention: crate::policy::values::Retention,
    /// Days before a file is deleted that the warning mail lists it.
    pub retention_warn_days: u32,
    /// Clients get their retention warnings too (a client's own `notify_client` overrides).
    pub notify_client: bool,
    /// Days before an account expires that the admin is told.
    pub expiry_warn_days: u32,
    /// Lock a client that had no session for this many days (0, the default: never).
    pub idle_lock_days: u32,
    /// Usage of a quota, in percent, at which the admin is told (each once until usage
    /// drops below it again).
    pub quota_warn_percent: Vec<u8>,
    /// Minutes between two full rescans of the usage of clients with a quota.
    pub rescan_minutes: u32,
    /// Where systemd is not PID 1: the live watcher runs `sftpctl policy run` itself, after
    /// sessions and every 15 minutes. `false`: run it yourself (cron).
    pub watcher_runs: bool,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            retention: crate::policy::values::Retention::Off,
            retention_warn_days: 7,
            notify_client: false,
            expiry_warn_days: 7,
            idle_lock_days: 0,
            quota_warn_percent: vec![80, 95],
            rescan_minutes: 60,
            watcher_runs: true,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Mail {
    /// `file` (no MTA needed), `sendmail` or `smtp`.
    pub transport: Transport,
    pub spool_dir: PathBuf,
    pub from: String,
    pub to: Vec<String>,
    /// sendmail binary for `transport = "sendmail"`.
    pub sendmail: PathBuf,
    /// Per-user recipients copied on that user's reports.
    pub users: std::collections::BTreeMap<String, String>,
    /// Longest wait between two delivery attempts after failures (the wait doubles from 1 s).
    pub retry_max_secs: u64,
    /// Zone of every time people read (mail, `report`, `list-users`), e.g. "Europe/Berlin";
    /// empty = the host's (`TZ`, else /etc/localtime).
    pub timezone: String,
    /// Clients get a mail listing the files another session put in their tree (a client's
    /// own `notify_new_files` overrides).
    pub notify_new_files: bool,
    /// `session`: one mail per session; `digest`: one a day per recipient (a client's own
    /// `mail_mode` overrides it).
    pub mode: MailMode,
    /// When the daily digest goes out, `HH:MM` (or `HH:MM:SS`) in `timezone`.
    pub digest_at: String,
    pub smtp: Smtp,
}

/// How a client's sessions are mailed (docs/watch.md, "Digest mode").
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum MailMode {
    #[default]
    Session,
    Digest,
}

impl MailMode {
    pub fn as_str(self) -> &'static str {
        match self {
            MailMode::Session => "session",
            MailMode::Digest => "digest",
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    File,
    Sendmail,
    Smtp,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Smtp {
    pub host: String,
    pub port: u16,
    pub tls: SmtpTls,
    /// Empty = no login.
    pub username: String,
    /// Root-only file holding the password; never the password itself.
    pub password_file: PathBuf,
    /// PEM file of a CA to trust besides the built-in public roots (a private mail server's
    /// own CA); empty = public roots only.
    pub ca_file: PathBuf,
    /// Seconds one SMTP conversation may stall before the attempt counts as failed.
    pub timeout_secs: u64,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    None,
    Starttls,
    Tls,
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

impl Default for Config {
    fn default() -> Self {
        Config {
            root: "/sftp-root".into(),
            data_dir: "data".into(),
            group: "sftp".into(),
            jail_group: "sftp-only".into(),
            admin: None,
            umask: "0007".into(),
            sftp_log_level: "VERBOSE".into(),
            sftpctl_bin: default_sftpctl_bin(std::env::current_exe().ok().as_deref()),
            nologin_shell: "/usr/sbin/nologin".into(),
            admin_shell: "/bin/bash".into(),
            user_dir: "/etc/sftpctl/users".into(),
            shadow_file: "/etc/shadow".into(),
            sshd: Sshd::default(),
            pam: Pam::default(),
            rsyslog: Rsyslog::default(),
            logrotate: Logrotate::default(),
            systemd: Systemd::default(),
            watch: Watch::default(),
            mail: Mail::default(),
            perms: Perms::default(),
            policy: Policy::default(),
            welcome: Welcome::default(),
            forward: Forward::default(),
            collect: Collect::default(),
        }
    }
}

impl Default for Sshd {
    fn default() -> Self {
        Sshd {
            config: "/etc/ssh/sshd_config".into(),
            dropin: "/etc/ssh/sshd_config.d/50-sftpctl.conf".into(),
            authorized_keys_dir: "/etc/ssh/sftpctl/authorized_keys".into(),
            binary: "/usr/sbin/sshd".into(),
            reload: strings(&["systemctl", "reload", "ssh"]),
            penalty_exempt: vec![],
        }
    }
}

impl Default for Pam {
    fn default() -> Self {
        Pam {
            file: "/etc/pam.d/sshd".into(),
        }
    }
}

impl Default for Rsyslog {
    fn default() -> Self {
        Rsyslog {
            config: "/etc/rsyslog.d/50-sftpctl.conf".into(),
            main_config: "/etc/rsyslog.conf".into(),
            log_file: "/var/log/sftp.log".into(),
            binary: "/usr/sbin/rsyslogd".into(),
            restart: strings(&["systemctl", "restart", "rsyslog"]),
            rotate: strings(&["/usr/lib/rsyslog/rsyslog-rotate"]),
        }
    }
}

impl Default for Logrotate {
    fn default() -> Self {
        Logrotate {
            config: "/etc/logrotate.d/sftpctl".into(),
            rotate: 12,
        }
    }
}

impl Default for Systemd {
    fn default() -> Self {
        Systemd {
            unit_dir: "/etc/systemd/system".into(),
            rsyslog_unit: "rsyslog.service".into(),
            daemon_reload: strings(&["systemctl", "daemon-reload"]),
            enable_watch: strings(&[
                "systemctl",
                "enable",
                "--now",
                "sftpctl-watch.service",
                "sftpctl-policy.timer",
                "sftpctl-policy.path",
            ]),
            disable_watch: strings(&[
                "systemctl",
                "disable",
                "--now",
                "sftpctl-watch.service",
                "sftpctl-policy.timer",
                "sftpctl-policy.path",
            ]),
        }
    }
}

impl Default for Watch {
    fn default() -> Self {
        Watch {
            socket: "/run/sftpctl/watch.sock".into(),
            listen: None,
            state_dir: "/var/lib/sftpctl".into(),
            idle_timeout_secs: 3600,
            template_dir: None,
            max_list_entries: 100,
            max_open_sessions: 50_000,
            max_session_bytes: 32 << 10,
            max_sessions_bytes: 24 << 20,
            max_reports_per_user: 1_000,
            max_reports_per_window: 50_000,
            report_window_secs: 3_600,
            receive_buffer_bytes: 8 << 20,
        }
    }
}

impl Default for Perms {
    fn default() -> Self {
        Perms {
            enabled: true,
            max_user_watches: 0,
            max_watches_per_jail: 10_000,
            scan_interval_secs: 60,
        }
    }
}

impl Default for Mail {
    fn default() -> Self {
        Mail {
            transport: Transport::File,
            spool_dir: "/var/spool/sftpctl/mail".into(),
            from: "SFTP Daemon <sftp-daemon@localhost>".into(),
            to: vec!["root@localhost".into()],
            sendmail: "/usr/sbin/sendmail".into(),
            users: Default::default(),
            retry_max_secs: 300,
            timezone: String::new(),
            notify_new_files: false,
            mode: MailMode::Session,
            digest_at: "18:00".into(),
            smtp: Smtp::default(),
        }
    }
}

impl Default for Smtp {
    fn default() -> Self {
        Smtp {
            host: "localhost".into(),
            port: 25,
            tls: SmtpTls::None,
            username: String::new(),
            password_file: PathBuf::new(),
            ca_file: PathBuf::new(),
            timeout_secs: 30,
        }
    }
}

/// Where `make install` puts the binary.
pub const MAKE_INSTALL_BIN: &str = "/usr/local/sbin/sftpctl";
/// Where the Debian package puts it.
pub const PACKAGE_BIN: &str = "/usr/sbin/sftpctl";

/// `sftpctl_bin` when the config does not set it: the running binary when it is one of the
/// two installed places (the .deb's or `make install`'s), else `make install`'s. A binary
/// run from elsewhere (a build tree) must never end up in the systemd units.
pub fn default_sftpctl_bin(running: Option<&Path>) -> PathBuf {
    match running {
        Some(p) if p == Path::new(PACKAGE_BIN) || p == Path::new(MAKE_INSTALL_BIN) => {
            p.to_path_buf()
        }
        _ => PathBuf::from(MAKE_INSTALL_BIN),
    }
}

/// Which config file is in effect and whether it exists.
#[derive(Debug, Clone)]
pub struct Source {
    pub path: PathBuf,
    pub exists: bool,
}

impl Config {
    /// Loads the config named by `--config`/`SFTPCTL_CONFIG`, or the default file; the default
    /// file may be absent (built-in defaults), a named one may not.
    pub fn load(explicit: Option<&Path>) -> Result<(Config, Source)> {
        let (path, must_exist) = match explicit {
            Some(p) => (p.to_path_buf(), true),
            None => (PathBuf::from(DEFAULT_PATH), false),
        };
        if !path.is_absolute() {
            return Err(usage(format!(
                "config path {} is relative: give an absolute path",
                path.display()
            )));
        }
        let text = match fs_err::read_to_string(&path) {
            Ok(t) => Some(t),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !must_exist => None,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(usage(format!(
                    "config file {} does not exist: create it or drop --config to use the defaults",
                    path.display()
                )))
            }
            Err(e) => return Err(e).context("cannot read the config file"),
        };
        let exists = text.is_some();
        let config = match text {
            Some(t) => {
                Config::parse(&t).map_err(|e| usage(format!("{}: {e:#}", path.display())))?
            }
            None => Config::default(),
        };
        Ok((config, Source { path, exists }))
    }

    /// Parses and validates TOML text.
    pub fn parse(text: &str) -> Result<Config> {
        let config: Config = toml::from_str(text)
            .map_err(|e| anyhow::anyhow!("{}", e.to_string().replace('\n', " ").trim()))?;
        config.validate()?;
        Ok(config)
    }

    /// Checks every value that can reach a rendered file or a command line.
    pub fn validate(&self) -> Result<()> {
        check_abs_path("root", &self.root)?;
        if self.root == Path::new("/") {
            anyhow::bail!("root must not be / itself: use a directory such as /sftp-root");
        }
        names::check_path_component("data_dir", &self.data_dir)?;
        if self.data_dir == "dev" {
            anyhow::bail!("data_dir must not be \"dev\": that name holds each jail's log socket");
        }
        names::check_group_name("group", &self.group)?;
        names::check_group_name("jail_group", &self.jail_group)?;
        if self.group == self.jail_group {
            anyhow::bail!(
                "group and jail_group must differ: the admin is in group but must not be jailed"
            );
        }
        if let Some(admin) = &self.admin {
            names::check_user_name("admin", admin)?;
        }
        check_umask(&self.umask)?;
        let p = &self.policy;
        if p.quota_warn_percent.iter().any(|&v| v == 0 || v >= 100) {
            anyhow::bail!("policy.quota_warn_percent: each value must be from 1 to 99 (at 100 % uploads stop anyway)");
        }
        if p.rescan_minutes == 0 {
            anyhow::bail!("policy.rescan_minutes must be at least 1");
        }
        if p.retention_warn_days > 3650 || p.expiry_warn_days > 3650 || p.idle_lock_days > 36500 {
            anyhow::bail!("policy: a number of days is out of range (at most 3650 for warnings)");
        }
        if !["INFO", "VERBOSE"].contains(&self.sftp_log_level.as_str()) {
            anyhow::bail!(
                "sftp_log_level: {:?} must be \"INFO\" or \"VERBOSE\"",
                self.sftp_log_level
            );
        }
        check_abs_path("sftpctl_bin", &self.sftpctl_bin)?;
        check_abs_path("nologin_shell", &self.nologin_shell)?;
        check_abs_path("admin_shell", &self.admin_shell)?;
        check_abs_path("user_dir", &self.user_dir)?;
        check_abs_path("shadow_file", &self.shadow_file)?;

        check_abs_path("sshd.config", &self.sshd.config)?;
        check_abs_path("sshd.dropin", &self.sshd.dropin)?;
        check_abs_path("sshd.authorized_keys_dir", &self.sshd.authorized_keys_dir)?;
        check_abs_path("sshd.binary", &self.sshd.binary)?;
        check_command("sshd.reload", &self.sshd.reload)?;
        for entry in &self.sshd.penalty_exempt {
            check_address_or_network("sshd.penalty_exempt", entry)?;
        }
        check_abs_path("pam.file", &self.pam.file)?;
        check_abs_path("rsyslog.config", &self.rsyslog.config)?;
        check_abs_path("rsyslog.main_config", &self.rsyslog.main_config)?;
        check_abs_path("rsyslog.log_file", &self.rsyslog.log_file)?;
        check_abs_path("rsyslog.binary", &self.rsyslog.binary)?;
        check_command("rsyslog.restart", &self.rsyslog.restart)?;
        check_command("rsyslog.rotate", &self.rsyslog.rotate)?;
        check_abs_path("logrotate.config", &self.logrotate.config)?;
        if !(1..=1000).contains(&self.logrotate.rotate) {
            anyhow::bail!("logrotate.rotate must be between 1 and 1000");
        }
        check_abs_path("systemd.unit_dir", &self.systemd.unit_dir)?;
        names::check_unit_name("systemd.rsyslog_unit", &self.systemd.rsyslog_unit)?;
        check_command("systemd.daemon_reload", &self.systemd.daemon_reload)?;
        check_command("systemd.enable_watch", &self.systemd.enable_watch)?;
        check_command("systemd.disable_watch", &self.systemd.disable_watch)?;
        check_abs_path("watch.state_dir", &self.watch.state_dir)?;
        check_abs_path("watch.socket", &self.watch.socket)?;
        if self.watch.socket.as_os_str().len() > 100
            || self.watch.socket.parent() == Some(Path::new("/"))
        {
            anyhow::bail!(
                "watch.socket: {} must be at most 100 bytes long and inside a directory of its own, e.g. /run/sftpctl/watch.sock",
                self.watch.socket.display()
            );
        }
        if self.watch.listen.is_some_and(|a| a.port() == 0) {
            anyhow::bail!("watch.listen needs a port other than 0, e.g. 127.0.0.1:5514 (or \"\" for no UDP listener)");
        }
        if let Some(dir) = &self.watch.template_dir {
            check_abs_path("watch.template_dir", dir)?;
        }
        if self.watch.idle_timeout_secs == 0 {
            anyhow::bail!("watch.idle_timeout_secs must be at least 1, e.g. 3600");
        }
        if !(1..=100_000).contains(&self.watch.max_list_entries) {
            anyhow::bail!("watch.max_list_entries must be between 1 and 100000");
        }
        if !(1..=10_000_000).contains(&self.watch.max_open_sessions) {
            anyhow::bail!("watch.max_open_sessions must be between 1 and 10000000");
        }
        if !(4_096..=16 << 20).contains(&self.watch.max_session_bytes) {
            anyhow::bail!("watch.max_session_bytes must be between 4096 and 16777216");
        }
        if !(1 << 20..=1 << 40).contains(&self.watch.max_sessions_bytes)
            || self.watch.max_sessions_bytes < self.watch.max_session_bytes
        {
            anyhow::bail!(
                "watch.max_sessions_bytes must be between 1048576 and 1099511627776 and at least watch.max_session_bytes"
            );
        }
        if self.watch.max_reports_per_user == 0 || self.watch.max_reports_per_window == 0 {
            anyhow::bail!(
                "watch.max_reports_per_user and watch.max_reports_per_window must be at least 1"
            );
        }
        if !(60..=7 * 86_400).contains(&self.watch.report_window_secs) {
            anyhow::bail!("watch.report_window_secs must be between 60 and 604800");
        }
        if !(65_536..=1 << 30).contains(&self.watch.receive_buffer_bytes) {
            anyhow::bail!("watch.receive_buffer_bytes must be between 65536 and 1073741824");
        }
        if !(1..=3600).contains(&self.mail.smtp.timeout_secs) {
            anyhow::bail!("mail.smtp.timeout_secs must be between 1 and 3600");
        }
        if !(1..=86_400).contains(&self.mail.retry_max_secs) {
            anyhow::bail!("mail.retry_max_secs must be between 1 and 86400");
        }
        crate::tz::validate(&self.mail.timezone)?;
        crate::watch::digest::period::At::parse(&self.mail.digest_at)?;
        check_abs_path("mail.spool_dir", &self.mail.spool_dir)?;
        check_abs_path("mail.sendmail", &self.mail.sendmail)?;
        names::check_single_line("mail.from", &self.mail.from)?;
        for to in &self.mail.to {
            names::check_single_line("mail.to", to)?;
        }
        for (user, addr) in &self.mail.users {
            names::check_user_name("mail.users", user)?;
            names::check_single_line("mail.users", addr)?;
        }
        names::check_single_line("mail.smtp.host", &self.mail.smtp.host)?;
        names::check_single_line("mail.smtp.username", &self.mail.smtp.username)?;
        if !self.mail.smtp.ca_file.as_os_str().is_empty() {
            check_abs_path("mail.smtp.ca_file", &self.mail.smtp.ca_file)?;
        }
        if !self.mail.smtp.password_file.as_os_str().is_empty() {
            check_abs_path("mail.smtp.password_file", &self.mail.smtp.password_file)?;
        }
        if !self.welcome.host.is_empty() {
            check_host_name("welcome.host", &self.welcome.host)?;
        }
        self.forward.validate()?;
        self.collect.validate()?;
        let watches = self.perms.max_user_watches;
        if watches != 0 && !(8192..=i32::MAX as u32).contains(&watches) {
            anyhow::bail!(
                "perms.max_user_watches: {watches} must be 0 (never raise the kernel limit) or between 8192 and {}",
                i32::MAX
            );
        }
        let per_jail = self.perms.max_watches_per_jail;
        if !(1..=i32::MAX as u32).contains(&per_jail) {
            anyhow::bail!(
                "perms.max_watches_per_jail: {per_jail} must be between 1 and {}",
                i32::MAX
            );
        }
        let every = self.perms.scan_interval_secs;
        if !(1..=86_400).contains(&every) {
            anyhow::bail!("perms.scan_interval_secs: {every} must be between 1 and 86400 (a day)");
        }
        Ok(())
    }

    /// Why `sftpctl_bin` cannot be what the watcher unit and rsyslog's unit drop-in run, or
    /// `None` when it is an executable file (a symlink to one is fine: systemd follows it).
    pub fn sftpctl_bin_problem(&self) -> Option<String> {
        use std::os::unix::fs::PermissionsExt;
        let bin = &self.sftpctl_bin;
        let why = match std::fs::metadata(bin) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => "does not exist".to_string(),
            Err(e) => format!("cannot be inspected ({e})"),
            Ok(md) if !md.is_file() => "is not a regular file".to_string(),
            Ok(md) if md.permissions().mode() & 0o111 == 0 => "is not executable".to_string(),
            Ok(_) => return None,
        };
        Some(format!(
            "sftpctl_bin {} {why}: the watcher unit and rsyslog's unit run it; install sftpctl there (make install, or the .deb puts it in {PACKAGE_BIN}) or set sftpctl_bin in the config",
            bin.display()
        ))
    }

    /// The umask as a number.
    pub fn umask_bits(&self) -> u32 {
        u32::from_str_radix(&self.umask, 8).expect("validated umask")
    }

    /// The dev dir that holds rsyslog's listen socket, `<root>/dev`.
    pub fn root_dev_dir(&self) -> PathBuf {
        self.root.join("dev")
    }

    /// rsyslog's listen socket that every jail's `dev/log` is a hard link to.
    pub fn root_log_socket(&self) -> PathBuf {
        self.root_dev_dir().join("log")
    }
}

/// An absolute, normalized path that is safe to write into sshd, rsyslog and systemd files:
/// no whitespace, quotes, `%`, `\`, `#`, control characters, `..` or `.` components.
pub fn check_abs_path(key: &str, path: &Path) -> Result<()> {
    let Some(s) = path.to_str() else {
        anyhow::bail!("{key}: path is not valid UTF-8");
    };
    if !path.is_absolute() {
        anyhow::bail!("{key}: {s:?} is a relative path; give an absolute path such as /srv/sftp");
    }
    if let Some(c) = s
        .chars()
        .find(|c| c.is_whitespace() || c.is_control() || "\"'%\\#$`;*?[]{}<>|&!".contains(*c))
    {
        anyhow::bail!("{key}: {s:?} contains {c:?}, which is not allowed in a path sftpctl writes into config files");
    }
    if s.len() > 1 && s.ends_with('/') {
        anyhow::bail!("{key}: {s:?} ends with /; drop the trailing slash");
    }
    if s.contains("//") || s.split('/').any(|c| c == "." || c == "..") {
        anyhow::bail!("{key}: {s:?} is not a normalized path (no //, . or .. components)");
    }
    Ok(())
}

/// An IPv4/IPv6 address, or a network `ADDR/LEN` with no host bits set: what sshd's
/// address lists take, nothing that could add a second entry (`,`) or another line.
pub fn check_address_or_network(key: &str, entry: &str) -> Result<()> {
    use std::net::IpAddr;
    let (addr, len) = match entry.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (entry, None),
    };
    let Ok(ip) = addr.parse::<IpAddr>() else {
        anyhow::bail!(
            "{key}: {entry:?} is not an IP address or network; write one per string, e.g. \"203.0.113.7\" or \"198.51.100.0/24\""
        );
    };
    let Some(len) = len else {
        return Ok(());
    };
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let bits = match len.parse::<u32>() {
        Ok(n) if n <= max && !len.starts_with('+') && (len == "0" || !len.starts_with('0')) => n,
        _ => anyhow::bail!("{key}: {entry:?} needs a prefix length from 0 to {max} after the /"),
    };
    let host_bits_set = match ip {
        IpAddr::V4(v4) => bits < 32 && u32::from(v4) & (u32::MAX >> bits) != 0,
        IpAddr::V6(v6) => bits < 128 && u128::from(v6) & (u128::MAX >> bits) != 0,
    };
    if host_bits_set {
        anyhow::bail!(
            "{key}: {entry:?} has host bits set after the /{bits} (sshd refuses it): give the network address"
        );
    }
    Ok(())
}

/// A DNS name (letters, digits, `-` and `.`) or an IP address: it goes into a mail's subject
/// and into the commands a client is told to run.
pub fn check_host_name(key: &str, host: &str) -> Result<()> {
    if host.parse::<std::net::IpAddr>().is_ok() {
        return Ok(());
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    if host.len() > 253 || !host.split('.').all(label_ok) {
        anyhow::bail!(
            "{key}: {:?} is not a host name or IP address (letters, digits, - and . only), e.g. \"sftp.example.com\"",
            host
        );
    }
    Ok(())
}

fn check_umask(umask: &str) -> Result<()> {
    let ok = umask.len() == 4
        && umask.starts_with('0')
        && umask.chars().all(|c| ('0'..='7').contains(&c));
    if !ok {
        anyhow::bail!("umask: {umask:?} must be four octal digits starting with 0, e.g. \"0007\"");
    }
    Ok(())
}

fn check_command(key: &str, argv: &[String]) -> Result<()> {
    for arg in argv {
        if arg.is_empty() || arg.chars().any(|c| c.is_control()) {
            anyhow::bail!("{key}: {arg:?} is empty or holds a control character");
        }
    }
    Ok(())
}

/// `watch.listen`: an address, or `""` for none (TOML has no null).
mod optional_addr {
    use std::net::SocketAddr;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(addr: &Option<SocketAddr>, s: S) -> Result<S::Ok, S::Error> {
        match addr {
            Some(a) => s.serialize_str(&a.to_string()),
            None => s.serialize_str(""),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
        let text = String::deserialize(d)?;
        if text.is_empty() {
            return Ok(None);
        }
        text.parse().map(Some).map_err(|e| {
            serde::de::Error::custom(format!(
                "{text:?} is not an address with a port like 127.0.0.1:5514 ({e}); \"\" = no UDP listener"
            ))
        })
    }
}

/// The config file sftpctl writes on `init` when none exists: every key, commented
/// (`templates/sftpctl.toml`). Values are TOML-encoded here, so the template only places them.
pub fn render_commented(config: &Config) -> Result<String> {
    let value = toml::Value::try_from(config).context("cannot serialize the config")?;
    let mut ctx = tera::Context::new();
    ctx.insert("c", &encode_leaves(&value));
    let mut tera = tera::Tera::default();
    tera.autoescape_on(vec![]);
    tera.add_raw_template("sftpctl.toml", include_str!("../templates/sftpctl.toml"))
        .context("built-in config template")?;
    tera.render("sftpctl.toml", &ctx)
        .context("cannot render the config template")
}

/// Tables stay tables; every other value becomes its TOML text (`"a"`, `["x", "y"]`, `12`).
fn encode_leaves(value: &toml::Value) -> serde_json::Value {
    match value {
        toml::Value::Table(t) => serde_json::Value::Object(
            t.iter()
                .map(|(k, v)| (k.clone(), encode_leaves(v)))
                .collect(),
        ),
        other => serde_json::Value::String(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sftpctl_bin_defaults_to_the_installed_binary() {
        let d = |p: Option<&str>| default_sftpctl_bin(p.map(Path::new));
        assert_eq!(d(Some("/usr/sbin/sftpctl")), Path::new("/usr/sbin/sftpctl"));
        assert_eq!(
            d(Some("/usr/local/sbin/sftpctl")),
            Path::new("/usr/local/sbin/sftpctl")
        );
        assert_eq!(
            d(Some("/home/dev/sftpctl/target/debug/sftpctl")),
            Path::new("/usr/local/sbin/sftpctl")
        );
        assert_eq!(d(None), Path::new("/usr/local/sbin/sftpctl"));
    }

    #[test]
    fn penalty_exempt_takes_addresses_and_networks_only() {
        let good = Config::parse(
            "[sshd]\npenalty_exempt = [\"127.0.0.1\", \"203.0.113.0/24\", \"0.0.0.0/0\", \"2001:db8::/32\", \"::1\", \"10.1.2.3/32\"]",
        )
        .unwrap();
        assert_eq!(good.sshd.penalty_exempt.len(), 6);
        for bad in [
            "",
            "example.org",
            "10.0.0.1,10.0.0.2",
            "10.0.0.1 10.0.0.2",
            "10.0.0.1\nPermitRootLogin yes",
            "10.0.0.0/33",
            "2001:db8::/129",
            "10.0.0.0/",
            "10.0.0.0/+8",
            "10.0.0.0/08",
            "10.0.0.0/-1",
            "10.0.0.1/24",
            "2001:db8::1/32",
            "fe80::1%eth0",
            "10.0.0.*",
            "!10.0.0.1",
            " 10.0.0.1",
        ] {
            let text = format!("[sshd]\npenalty_exempt = [{}]", toml::Value::from(bad));
            let err = Config::parse(&text).expect_err(bad).to_string();
            assert!(err.contains("sshd.penalty_exempt"), "{bad:?}: {err}");
            assert!(!err.contains('\n'), "{bad:?}: {err}");
        }
    }

    #[test]
    fn defaults_are_valid() {
        Config::default().validate().unwrap();
    }

    #[test]
    fn parses_the_documented_shape() {
        let c = Config::parse(
            r#"
root = "/srv/x"
admin = "boss"
[sshd]
reload = []
[mail.smtp]
tls = "starttls"
port = 587
"#,
        )
        .unwrap();
        assert_eq!(c.root, Path::new("/srv/x"));
        assert_eq!(c.admin.as_deref(), Some("boss"));
        assert!(c.sshd.reload.is_empty());
        assert_eq!(c.mail.smtp.tls, SmtpTls::Starttls);
        assert_eq!(c.group, "sftp");
    }

    #[test]
    fn rejects_injection_and_bad_values() {
        for bad in [
            "root = \"relative\"",
            "root = \"/srv/x\\nMatch all\"",
            "root = \"/srv/a b\"",
            "root = \"/srv/%u\"",
            "root = \"/srv/../etc\"",
            "root = \"/\"",
            "umask = \"002\"",
            "umask = \"0008\"",
            "sftp_log_level = \"DEBUG3\"",
            "sftp_log_level = \"INFO -u 0777\"",
            "group = \"sftp\\nx\"",
            "jail_group = \"sftp\"",
            "data_dir = \"a/b\"",
            "data_dir = \"dev\"",
            "admin = \"Root Admin\"",
            "unknown_key = 1",
            "[watch]\nlisten = \"127.0.0.1:0\"",
            "[mail]\nfrom = \"a\\nBcc: x\"",
            "[watch]\nmax_list_entries = 0",
            "[watch]\nmax_session_bytes = 100",
            "[watch]\nmax_sessions_bytes = 1000",
            "[watch]\nmax_reports_per_user = 0",
            "[watch]\nreport_window_secs = 1",
            "[watch]\nidle_timeout_secs = 0",
            "[mail]\nretry_max_secs = 0",
            "[welcome]\nhost = \"sftp.example.com\\r\\nBcc: x@y\"",
            "[welcome]\nhost = \"a b\"",
            "[welcome]\nhost = \"-x.example\"",
            "[welcome]\nport = 70000",
            "[welcome]\nuser = \"x\"",
            "[mail]\ndigest_at = \"25:00\"",
            "[mail]\ndigest_at = \"6pm\"",
            "[mail]\nmode = \"daily\"",
        ] {
            assert!(Config::parse(bad).is_err(), "accepted {bad}");
        }
    }

    #[test]
    fn perms_section_defaults_and_validation() {
        let c = Config::default();
        assert!(c.perms.enabled);
        assert_eq!(
            c.perms.max_user_watches, 0,
            "never raise the host-wide limit by default"
        );
        assert_eq!(c.perms.max_watches_per_jail, 10_000);
        assert_eq!(c.perms.scan_interval_secs, 60);
        assert_eq!(c.umask, "0007");
        let c = Config::parse(
            "[perms]\nenabled = false\nmax_user_watches = 1048576\nmax_watches_per_jail = 5\nscan_interval_secs = 2\n",
        )
        .unwrap();
        assert!(!c.perms.enabled);
        assert_eq!(c.perms.max_user_watches, 1_048_576);
        assert_eq!(c.perms.max_watches_per_jail, 5);
        for bad in [
            "[perms]\nmax_user_watches = 100",
            "[perms]\nmax_user_watches = 4294967295",
            "[perms]\nenabled = \"yes\"",
            "[perms]\nmode = \"0664\"",
            "[perms]\nmax_watches_per_jail = 0",
            "[perms]\nscan_interval_secs = 0",
            "[perms]\nscan_interval_secs = 100000",
        ] {
            assert!(Config::parse(bad).is_err(), "accepted {bad}");
        }
    }

    #[test]
    fn commented_config_round_trips_and_names_every_key() {
        let mut c = Config::parse(
            "admin = \"boss\"\n[watch]\ntemplate_dir = \"/etc/x\"\n[mail.users]\nalice = \"a@b.example\"\n",
        )
        .unwrap();
        c.logrotate.rotate = 3;
        for config in [Config::default(), c] {
            let text = render_commented(&config).unwrap();
            assert_eq!(Config::parse(&text).unwrap(), config, "{text}");
            // every key of the struct is written (not left to its default)
            let value = toml::Value::try_from(&config).unwrap();
            let mut missing = vec![];
            keys(&value, "", &mut missing, &text);
            assert!(missing.is_empty(), "not in the template: {missing:?}");
        }
    }

    fn keys(v: &toml::Value, at: &str, missing: &mut Vec<String>, text: &str) {
        if let toml::Value::Table(t) = v {
            for (k, v) in t {
                if matches!(v, toml::Value::Table(_)) {
                    keys(v, &format!("{at}{k}."), missing, text);
                } else if !text.lines().any(|l| l.starts_with(&format!("{k} = "))) {
                    missing.push(format!("{at}{k}"));
                }
            }
        }
    }
}
