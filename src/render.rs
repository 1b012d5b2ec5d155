//! Renders the config files sftpctl writes from the tera templates in `templates/`.
//!
//! Templates are compiled into the binary. Every value passed in was validated by
//! [`crate::config::Config::validate`] (no whitespace, quotes, `%` or newlines in paths and
//! names), so no value can add a line or a directive to a rendered file.

use std::path::Path;
use std::sync::LazyLock;

use anyhow::{Context as _, Result};
use tera::{Context, Tera};

use crate::config::Config;

const TEMPLATES: &[(&str, &str)] = &[
    (
        "sshd_dropin.conf",
        include_str!("../templates/sshd_dropin.conf"),
    ),
    (
        "sshd_match.conf",
        include_str!("../templates/sshd_match.conf"),
    ),
    (
        "sshd_penalties.conf",
        include_str!("../templates/sshd_penalties.conf"),
    ),
    (
        "sshd_subsystem.conf",
        include_str!("../templates/sshd_subsystem.conf"),
    ),
    (
        "pam_umask.conf",
        include_str!("../templates/pam_umask.conf"),
    ),
    ("rsyslog.conf", include_str!("../templates/rsyslog.conf")),
    (
        "logrotate.conf",
        include_str!("../templates/logrotate.conf"),
    ),
    (
        "sftpctl-watch.service",
        include_str!("../templates/sftpctl-watch.service"),
    ),
    (
        "rsyslog-refresh.conf",
        include_str!("../templates/rsyslog-refresh.conf"),
    ),
    (
        "sftpctl-policy.service",
        include_str!("../templates/sftpctl-policy.service"),
    ),
    (
        "sftpctl-policy.timer",
        include_str!("../templates/sftpctl-policy.timer"),
    ),
    (
        "sftpctl-policy.path",
        include_str!("../templates/sftpctl-policy.path"),
    ),
];

static TERA: LazyLock<Tera> = LazyLock::new(|| {
    let mut tera = Tera::default();
    tera.autoescape_on(vec![]);
    tera.add_raw_templates(TEMPLATES.iter().copied())
        .expect("built-in templates parse");
    tera
});

/// One client's lines in sshd's config (docs/policy.md), built only from validated values
/// ([`crate::policy::sshd::block`]): a user name, networks and fixed request lists.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct UserBlock {
    pub name: String,
    /// `*,!NET,…`: the addresses this client is refused from; `None` = from anywhere.
    pub deny_outside: Option<String>,
    /// internal-sftp's flags after `-l` and `-u` (`-R`, `-p LIST`, `-P LIST`); `None` = the
    /// jail group's ForceCommand.
    pub sftp_flags: Option<String>,
}

/// The values every template may use.
pub struct Renderer {
    ctx: Context,
    /// Checked when the unit is rendered, so a bad path fails `init` and doctor's drift check.
    watch_sandbox: Result<WatchSandbox, String>,
}

/// What the watcher's unit lets it do, from the config (docs/hardening.md has the why of each).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchSandbox {
    pub capabilities: Vec<&'static str>,
    pub read_write_paths: Vec<String>,
    pub address_families: Vec<&'static str>,
    /// System call groups refused on top of `@system-service`.
    pub syscalls_denied: Vec<&'static str>,
}

impl WatchSandbox {
    /// Refuses a path that would not stay one word of a unit file: systemd splits
    /// ReadWritePaths= on spaces, expands `%`, unquotes and unescapes, and a leading `-`/`+`
    /// changes the meaning. [`Config::validate`] refuses these already; this is the backstop.
    fn unit_path(key: &str, path: &Path) -> Result<String, String> {
        let s = path.to_str().unwrap_or("");
        let plain = s.starts_with('/')
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"/._-+:@,=".contains(&b));
        if !plain {
            return Err(format!(
                "{key} = {:?} cannot be written into the watcher's unit (ReadWritePaths=): use letters, digits and / . _ - + : @ , = only",
                path.display()
            ));
        }
        Ok(s.to_string())
    }

    pub fn of(config: &Config) -> Result<WatchSandbox, String> {
        let mut read_write_paths = vec![
            Self::unit_path("watch.state_dir", &config.watch.state_dir)?,
            Self::unit_path("root", &config.root)?,
        ];
        // Measured on a booted host (docs/hardening.md): FOWNER for fchmod of client files,
        // FSETID to set setgid on a client's directory, DAC_READ_SEARCH to open what root is
        // not let into. Shared write changes modes only: no CHOWN, no DAC_OVERRIDE.
        let mut capabilities = vec!["CAP_FOWNER", "CAP_FSETID", "CAP_DAC_READ_SEARCH"];
        // The spool is writable whatever the transport: the unit does not change with [mail]
        // (a queueing MTA under `sendmail` needs a drop-in, docs/hardening.md).
        read_write_paths.push(Self::unit_path("mail.spool_dir", &config.mail.spool_dir)?);
        // RuntimeDirectory= makes /run/sftpctl writable; a feed socket elsewhere needs its dir.
        if let Some(dir) = config.watch.socket.parent() {
            if dir != Path::new("/run/sftpctl") {
                read_write_paths.push(Self::unit_path("watch.socket", dir)?);
            }
        }
        if config.watch.listen.is_some_and(|a| a.port() < 1024) {
            capabilities.push("CAP_NET_BIND_SERVICE");
        }
        // Not @privileged: it holds chown, which the atomic writer calls on its own state
        // files (measured: "cannot set the owner of …/last-session/…: EPERM").
        let syscalls_denied = vec!["@resources"];
        read_write_paths.sort();
        read_write_paths.dedup();
        Ok(WatchSandbox {
            capabilities,
            read_write_paths,
            address_families: vec!["AF_UNIX", "AF_INET", "AF_INET6"],
            syscalls_denied,
        })
    }
}

/// The `[forward]` values rsyslog's template uses, or null when this host does not forward
/// (values are validated by [`crate::config::Forward`]).
fn forward_context(config: &Config) -> serde_json::Value {
    let f = &config.forward;
    let (Ok((host, port)), Ok(peer)) = (f.target(), f.peer_name()) else {
        return serde_json::Value::Null;
    };
    if !f.enabled() {
        return serde_json::Value::Null;
    }
    serde_json::json!({
        "host": host,
        "port": port,
        "peer": peer,
        "ca": f.ca.display().to_string(),
        "cert": f.cert.display().to_string(),
        "key": f.key.display().to_string(),
        "queue_dir": f.queue_dir.display().to_string(),
        "queue_max_mb": f.queue_max_mb,
        "retry_secs": f.retry_secs,
    })
}

/// The `[collect]` values, or null when this host does not collect.
fn collect_context(config: &Config) -> serde_json::Value {
    let c = &config.collect;
    let Ok((address, port)) = c.bind() else {
        return serde_json::Value::Null;
    };
    if !c.enabled {
        return serde_json::Value::Null;
    }
    let permitted: Vec<String> = c.permitted.iter().map(|p| format!("\"{p}\"")).collect();
    serde_json::json!({
        "address": address,
        "port": port,
        "permitted": permitted.join(","),
        "ca": c.ca.display().to_string(),
        "cert": c.cert.display().to_string(),
        "key": c.key.display().to_string(),
    })
}

impl Renderer {
    /// `config_path` is the config file in use: rendered commands pass it as `--config`.
    pub fn new(config: &Config, config_path: &Path, openssh_version: &str) -> Renderer {
        let mut ctx = Context::new();
        ctx.insert("root", &config.root.display().to_string());
        ctx.insert("jail_group", &config.jail_group);
        ctx.insert("group", &config.group);
        ctx.insert("admin", &config.admin);
        ctx.insert("umask", &config.umask);
        ctx.insert("log_level", &config.sftp_log_level);
        ctx.insert(
            "authorized_keys_dir",
            &config.sshd.authorized_keys_dir.display().to_string(),
        );
        ctx.insert("socket", &config.root_log_socket().display().to_string());
        ctx.insert("log_file", &config.rsyslog.log_file.display().to_string());
        ctx.insert("watch_socket", &config.watch.socket.display().to_string());
        ctx.insert(
            "main_config",
            &config.rsyslog.main_config.display().to_string(),
        );
        ctx.insert(
            "rate_interval",
            &crate::watch::trust::JAIL_RATE_INTERVAL_SECS,
        );
        ctx.insert("rate_burst", &crate::watch::trust::JAIL_RATE_BURST);
        ctx.insert("rotate", &config.logrotate.rotate);
        ctx.insert("rotate_cmd", &shell_join(&config.rsyslog.rotate));
        ctx.insert(
            "sftpctl",
            &format!(
                "{} --config {}",
                config.sftpctl_bin.display(),
                config_path.display()
            ),
        );
        ctx.insert("rsyslog_unit", &config.systemd.rsyslog_unit);
        ctx.insert(
            "dirty_dir",
            &crate::policy::runner::dirty_dir(config)
                .display()
                .to_string(),
        );
        ctx.insert("forward", &forward_context(config));
        ctx.insert("collect", &collect_context(config));
        ctx.insert("users", &Vec::<UserBlock>::new());
        ctx.insert("openssh_version", openssh_version);
        ctx.insert(
            "penalty_exempt",
            &penalty_exempt_value(config, openssh_version),
        );
        Renderer {
            ctx,
            watch_sandbox: WatchSandbox::of(config),
        }
    }

    fn render(&self, name: &str, extra: &[(&str, &str)]) -> Result<String> {
        let mut ctx = self.ctx.clone();
        for (k, v) in extra {
            ctx.insert(*k, v);
        }
        TERA.render(name, &ctx)
            .with_context(|| format!("cannot render template {name}"))
            .map(|s| tidy(&s))
    }

    pub fn subsystem(&self) -> Result<String> {
        self.render("sshd_subsystem.conf", &[])
    }

    /// The global `PerSourcePenaltyExemptList` line(s) (with their comment), empty when
    /// `sshd.penalty_exempt` is empty or this OpenSSH has no penalties. Global keywords must
    /// come before any Match block.
    pub fn penalties(&self) -> Result<String> {
        self.render("sshd_penalties.conf", &[])
    }

    /// The admin block's `AuthorizedKeysFile` entries, computed from the host's own config
    /// ([`crate::host_auth::admin_block_keys`]): the block replaces the host's value for the
    /// admin, so it must carry it.
    pub fn with_admin_keys_files(mut self, files: &[String]) -> Renderer {
        self.ctx.insert("admin_keys_files", &files.join(" "));
        self
    }

    /// The per-client blocks, placed before the jail group's block.
    pub fn with_user_blocks(mut self, blocks: &[UserBlock]) -> Renderer {
        self.ctx.insert("users", blocks);
        self
    }

    pub fn match_block(&self) -> Result<String> {
        if self.ctx.get("admin").is_some_and(|a| !a.is_null())
            && self.ctx.get("admin_keys_files").is_none()
        {
            anyhow::bail!(
                "internal error: the admin block needs the host's AuthorizedKeysFile (with_admin_keys_files)"
            );
        }
        self.render("sshd_match.conf", &[])
    }

    /// The sshd drop-in; it carries the Subsystem line only where OpenSSH allows it.
    pub fn sshd_dropin(&self, subsystem_in_dropin: bool) -> Result<String> {
        let mut ctx = self.ctx.clone();
        ctx.insert("subsystem_in_dropin", &subsystem_in_dropin);
        ctx.insert("subsystem", self.subsystem()?.trim_end());
        ctx.insert("penalties", self.penalties()?.trim_end());
        ctx.insert("match_block", self.match_block()?.trim_end());
        TERA.render("sshd_dropin.conf", &ctx)
            .context("cannot render template sshd_dropin.conf")
            .map(|s| tidy(&s))
    }

    pub fn pam_umask(&self) -> Result<String> {
        self.render("pam_umask.conf", &[])
    }

    pub fn rsyslog(&self) -> Result<String> {
        self.render("rsyslog.conf", &[])
    }

    pub fn logrotate(&self) -> Result<String> {
        self.render("logrotate.conf", &[])
    }

    pub fn watch_unit(&self) -> Result<String> {
        let sandbox = self
            .watch_sandbox
            .as_ref()
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let paths = sandbox.read_write_paths.join(" ");
        self.render(
            "sftpctl-watch.service",
            &[
                ("capabilities", &sandbox.capabilities.join(" ")),
                ("read_write_paths", &paths),
                ("address_families", &sandbox.address_families.join(" ")),
                ("syscalls_denied", &sandbox.syscalls_denied.join(" ")),
            ],
        )
    }

    pub fn rsyslog_unit_dropin(&self) -> Result<String> {
        self.render("rsyslog-refresh.conf", &[])
    }

    /// The policy service and the two units that start it (`sftpctl policy run`).
    pub fn policy_units(&self) -> Result<[(&'static str, String); 3]> {
        Ok([
            (
                "sftpctl-policy.service",
                self.render("sftpctl-policy.service", &[])?,
            ),
            (
                "sftpctl-policy.timer",
                self.render("sftpctl-policy.timer", &[])?,
            ),
            (
                "sftpctl-policy.path",
                self.render("sftpctl-policy.path", &[])?,
            ),
        ])
    }
}

/// `a,b,c` for `PerSourcePenaltyExemptList`, or empty: nothing to write, or an OpenSSH before
/// 9.8 (no penalties there, and its `sshd -t` refuses the keyword).
fn penalty_exempt_value(config: &Config, openssh_version: &str) -> String {
    let penalties = crate::openssh::Version::parse_short(openssh_version)
        .is_some_and(crate::openssh::Version::has_penalties);
    if penalties {
        config.sshd.penalty_exempt.join(",")
    } else {
        String::new()
    }
}

/// Drops the blank lines that template tags leave behind: no run of more than one blank
/// line, none at the start, exactly one newline at the end.
fn tidy(text: &str) -> String {
    let mut out = String::new();
    let mut blank = true;
    for line in text.lines() {
        let is_blank = line.trim().is_empty();
        if is_blank && blank {
            continue;
        }
        out.push_str(line.trim_end());
        out.push('\n');
        blank = is_blank;
    }
    while out.ends_with("\n\n") {
        out.pop();
    }
    out
}

/// Joins argv for a shell line, quoting what needs it.
pub fn shell_join(argv: &[String]) -> String {
    argv.iter()
        .map(|a| {
            if a.chars()
                .all(|c| c.is_ascii_alphanumeric() || "/._-=:,+@".contains(c))
            {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests;
