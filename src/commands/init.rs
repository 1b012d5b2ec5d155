//! `sftpctl init`: groups, the jail root, and every sshd/PAM/rsyslog/logrotate/systemd file,
//! validated before any service is reloaded.

use std::path::Path;

use anyhow::{Context, Result};

use crate::accounts;
use crate::cli::InitArgs;
use crate::commands::{finish, parent_dirs, RefreshLinksStep};
use crate::config::{self, Config, Source};
use crate::error::{require_root, usage};
use crate::fenced::{self, Placement};
use crate::host_auth::{self, AuthGuard};
use crate::jail;
use crate::keys;
use crate::names;
use crate::openssh;
use crate::plan::fsops::{self, Meta};
use crate::plan::steps::{Activate, Dir, File, Group, User, Validate};
use crate::plan::Plan;
use crate::render::Renderer;
use users::os::unix::GroupExt;

pub fn run(config: &Config, source: &Source, args: &InitArgs) -> Result<()> {
    require_root("sftpctl init")?;
    let mut config = config.clone();
    let mut admin_note = None;
    if let Some(admin) = &args.admin {
        names::check_user_name("--admin", admin).map_err(|e| usage(format!("{e:#}")))?;
        if source.exists && config.admin.as_deref() != Some(admin) {
            admin_note = Some(format!(
                "sftpctl: note: {} does not say admin = \"{admin}\": add it there, or the next init without --admin drops the admin's sshd block",
                source.path.display()
            ));
        }
        config.admin = Some(admin.clone());
    }
    if !args.admin_keys.is_empty() && config.admin.is_none() {
        return Err(usage(
            "--admin-key needs an admin: give --admin NAME or set admin in the config",
        ));
    }
    config::check_abs_path("--config", &source.path).map_err(|e| usage(format!("{e:#}")))?;
    if let Some(problem) = config.sftpctl_bin_problem() {
        return Err(usage(problem));
    }
    let mut admin_keys = Vec::new();
    for path in &args.admin_keys {
        admin_keys.extend(keys::read_key_file(path)?);
    }

    let plan = build(&config, source, &admin_keys)?;
    finish("init", plan, args.dry_run.dry_run)?;
    if let Some(note) = admin_note {
        eprintln!("{note}");
    }
    Ok(())
}

fn build(config: &Config, source: &Source, admin_keys: &[keys::PublicKey]) -> Result<Plan> {
    let missing_ancestors = jail::check_root_chain(&config.root)?;
    if let Some(admin) = &config.admin {
        check_admin(config, admin)?;
    }
    let version = openssh::detect_version(&config.sshd.binary)?;
    if !config.sshd.penalty_exempt.is_empty() && !version.has_penalties() {
        // Not an error: one sftpctl.toml may serve hosts on both sides of 9.8, and an
        // OpenSSH without penalties already treats every address as the list asks.
        eprintln!(
            "sftpctl: note: sshd.penalty_exempt is not written: OpenSSH {version} has no PerSourcePenalties (they came with 9.8, which also takes PerSourcePenaltyExemptList); run init again after upgrading"
        );
    }
    let render = renderer(config, source, version)?;
    let mut plan = Plan::new();

    plan.push(Group {
        name: config.group.clone(),
    });
    plan.push(Group {
        name: config.jail_group.clone(),
    });
    for dir in missing_ancestors {
        plan.push(Dir::root(dir, 0o755));
    }
    plan.push(Dir::root(&config.root, 0o755));
    plan.push(Dir::root(config.root_dev_dir(), 0o755));
    // Trees from before issue 9 (data dirs 2775, uploads 0664): closed to other accounts.
    if let Some(step) = crate::perms::migrate::ConfineDataTrees::planned(config) {
        plan.push(step);
    }

    if let Some(admin) = &config.admin {
        plan.push(User {
            name: admin.clone(),
            primary_group: config.group.clone(),
            groups: vec![],
            home: config.root.clone(),
            shell: config.admin_shell.clone(),
            purpose: "admin",
            subordinate_ids: true,
        });
    }
    parent_dirs(&mut plan, &config.sshd.authorized_keys_dir)?;
    plan.push(Dir::root(&config.sshd.authorized_keys_dir, 0o755));
    if let (Some(admin), false) = (&config.admin, admin_keys.is_empty()) {
        let path = config.sshd.authorized_keys_dir.join(admin);
        plan.push(File {
            content: merged_keys(&path, admin_keys)?,
            path,
            meta: Some(Meta::root(0o644)),
            topic: None,
        });
    }

    let files = managed(config, &render, version)?;
    for file in files.sshd {
        if file.path == config.sshd.dropin {
            parent_dirs(&mut plan, &config.sshd.dropin)?;
        }
        plan.push(file);
    }
    match files.pam {
        Some(file) => plan.push(file),
        None => eprintln!(
            "sftpctl: note: {} does not exist, so no pam_umask line is added (internal-sftp -u {} sets the umask anyway)",
            config.pam.file.display(),
            config.umask
        ),
    }
    parent_dirs(&mut plan, &config.rsyslog.config)?;
    plan.push(files.rsyslog);
    match files.rsyslog_main {
        Some(file) => plan.push(file),
        None => eprintln!(
            "sftpctl: note: {} loads no imuxsock with the system socket on one line, so the admin's SFTP sessions (logged through /dev/log) carry no credentials and the watcher does not report them (docs/watch.md, \"Trusted feed\")",
            config.rsyslog.main_config.display()
        ),
    }
    parent_dirs(&mut plan, &config.logrotate.config)?;
    plan.push(files.logrotate);

    parent_dirs(&mut plan, &config.systemd.unit_dir)?;
    plan.push(Dir::root(&config.systemd.unit_dir, 0o755));
    plan.push(files.watch_unit);
    plan.push(Dir::root(rsyslog_dropin_dir(config), 0o755));
    plan.push(files.rsyslog_unit_dropin);

    for dir in [&config.watch.state_dir, &config.mail.spool_dir] {
        parent_dirs(&mut plan, dir)?;
        plan.push(Dir::root(dir, 0o700));
    }
    if !source.exists {
        parent_dirs(&mut plan, &source.path)?;
        plan.push(File {
            path: source.path.clone(),
            content: config::render_commented(config)?,
            meta: Some(Meta::root(0o644)),
            topic: None,
        });
    }

    validate_and_activate(&mut plan, config, "init")?;
    Ok(plan)
}

/// The validators (run over the candidate files before any reload) and the service
/// activations that follow a change of the managed files; each activation runs only when a
/// file of its topic changed. The authentication guard takes the host's view of the probed
/// accounts now, before any step runs, and compares after `sshd -t` passed.
pub fn validate_and_activate(plan: &mut Plan, config: &Config, command: &str) -> Result<()> {
    plan.push(Validate {
        what: "sshd".into(),
        argv: argv(&[
            &config.sshd.binary,
            Path::new("-t"),
            Path::new("-f"),
            &config.sshd.config,
        ]),
    });
    plan.push(AuthGuard::capture(config, command)?);
    if config.rsyslog.main_config.exists() {
        plan.push(Validate {
            what: "rsyslog".into(),
            argv: argv(&[
                &config.rsyslog.binary,
                Path::new("-N1"),
                Path::new("-f"),
                &config.rsyslog.main_config,
            ]),
        });
    }
    plan.push(Activate {
        what: "reload sshd".into(),
        key: "sshd.reload",
        argv: config.sshd.reload.clone(),
        topic: Some("sshd"),
    });
    plan.push(Activate {
        what: "reload systemd units".into(),
        key: "systemd.daemon_reload",
        argv: config.systemd.daemon_reload.clone(),
        topic: Some("systemd"),
    });
    plan.push(Activate {
        what: "restart rsyslog".into(),
        key: "rsyslog.restart",
        argv: config.rsyslog.restart.clone(),
        topic: Some("rsyslog"),
    });
    plan.push(RefreshLinksStep {
        config: config.clone(),
        topic: Some("rsyslog"),
    });
    plan.push(Activate {
        what: "enable and start the watcher".into(),
        key: "systemd.enable_watch",
        argv: config.systemd.enable_watch.clone(),
        topic: Some("systemd"),
    });
    Ok(())
}

/// An existing admin account must be in `group` and must not be jailed.
fn check_admin(config: &Config, admin: &str) -> Result<()> {
    if accounts::is_jailed(config, admin) {
        return Err(usage(format!(
            "admin {admin} is in {}: the admin must not be jailed; choose another name",
            config.jail_group
        )));
    }
    let Some(user) = users::get_user_by_name(admin) else {
        return Ok(());
    };
    if user.uid() == 0 {
        return Err(usage("the admin cannot be root"));
    }
    let in_group = crate::plan::steps::gid_of(&config.group).is_some_and(|gid| {
        user.primary_group_id() == gid
            || users::get_group_by_gid(gid)
                .is_some_and(|g| g.members().iter().any(|m| m.to_str() == Some(admin)))
    });
    if !in_group {
        return Err(usage(format!(
            "admin account {admin} already exists but is not in group {}: run usermod -aG {} {admin}, or choose a new name",
            config.group, config.group
        )));
    }
    Ok(())
}

/// The files sftpctl renders, whole or as fenced blocks, in the order init writes them.
/// `init` writes them; `doctor` compares them with the disk (drift).
pub struct ManagedFiles {
    /// The drop-in (when the main config includes it), then the main sshd_config when its
    /// fenced blocks differ from what is there.
    pub sshd: Vec<File>,
    /// The PAM file with its pam_umask block; `None` when the PAM file does not exist.
    pub pam: Option<File>,
    pub rsyslog: File,
    /// rsyslog's main config with the block that annotates the system socket (the admin's
    /// sessions log there); `None` when it has no line loading imuxsock with that socket.
    pub rsyslog_main: Option<File>,
    pub logrotate: File,
    pub watch_unit: File,
    pub rsyslog_unit_dropin: File,
}

impl ManagedFiles {
    pub fn into_vec(self) -> Vec<File> {
        let mut all = self.sshd;
        all.extend(self.pam);
        all.push(self.rsyslog);
        all.extend(self.rsyslog_main);
        all.extend([self.logrotate, self.watch_unit, self.rsyslog_unit_dropin]);
        all
    }
}

/// What `init` would write now, for the installed OpenSSH (detected with `sshd -V`).
pub fn managed_files(config: &Config, source: &Source) -> Result<ManagedFiles> {
    let version = openssh::detect_version(&config.sshd.binary)?;
    let render = renderer(config, source, version)?;
    managed(config, &render, version)
}

/// The renderer, with the admin block's key files computed from the host's own config.
fn renderer(config: &Config, source: &Source, version: openssh::Version) -> Result<Renderer> {
    let render = Renderer::new(config, &source.path, &version.to_string());
    Ok(match &config.admin {
        Some(admin) => render.with_admin_keys_files(&host_auth::admin_block_keys(config, admin)?),
        None => render,
    })
}

fn managed(config: &Config, render: &Renderer, version: openssh::Version) -> Result<ManagedFiles> {
    Ok(ManagedFiles {
        sshd: sshd_files(config, render, version)?,
        pam: pam_file(config, render)?,
        rsyslog: File {
            path: config.rsyslog.config.clone(),
            content: render.rsyslog()?,
            meta: Some(Meta::root(0o644)),
            topic: Some("rsyslog"),
        },
        rsyslog_main: rsyslog_main_file(config)?,
        logrotate: File {
            path: config.logrotate.config.clone(),
            content: render.logrotate()?,
            meta: Some(Meta::root(0o644)),
            topic: None,
        },
        watch_unit: File {
            path: config.systemd.unit_dir.join("sftpctl-watch.service"),
            content: render.watch_unit()?,
            meta: Some(Meta::root(0o644)),
            topic: Some("systemd"),
        },
        rsyslog_unit_dropin: File {
            path: rsyslog_dropin_dir(config).join("50-sftpctl.conf"),
            content: render.rsyslog_unit_dropin()?,
            meta: Some(Meta::root(0o644)),
            topic: Some("systemd"),
        },
    })
}

pub(crate) fn rsyslog_dropin_dir(config: &Config) -> std::path::PathBuf {
    config
        .systemd
        .unit_dir
        .join(format!("{}.d", config.systemd.rsyslog_unit))
}

/// The main sshd_config (fenced blocks) and the drop-in, in the way this OpenSSH accepts.
fn sshd_files(config: &Config, render: &Renderer, version: openssh::Version) -> Result<Vec<File>> {
    let main_path = &config.sshd.config;
    let (main_bytes, _) = fsops::read_regular(main_path)?.with_context(|| {
        format!(
            "{} does not exist: install openssh-server or set sshd.config",
            main_path.display()
        )
    })?;
    let main = String::from_utf8(main_bytes)
        .with_context(|| format!("{} is not UTF-8 text", main_path.display()))?;
    let included = openssh::includes(&main, &config.sshd.dropin);
    let subsystem_in_dropin = included && version.subsystem_may_repeat();

    let mut files = Vec::new();
    let mut new_main = main.clone();
    if !subsystem_in_dropin {
        new_main = fenced::upsert(
            &new_main,
            "subsystem",
            &render.subsystem()?,
            Placement::Replace {
                line: openssh::is_sftp_subsystem,
                before: openssh::is_match,
            },
        );
    }
    let penalties = render.penalties()?;
    if !included && !penalties.trim().is_empty() {
        // A global keyword: before the first Match, where the first value of it wins.
        new_main = fenced::upsert(
            &new_main,
            "penalties",
            &penalties,
            Placement::Replace {
                line: openssh::is_penalty_exempt_list,
                before: openssh::is_match,
            },
        );
    }
    if included {
        files.push(File {
            path: config.sshd.dropin.clone(),
            content: render.sshd_dropin(subsystem_in_dropin)?,
            meta: Some(Meta::root(0o644)),
            topic: Some("sshd"),
        });
    } else {
        new_main = fenced::upsert(
            &new_main,
            host_auth::MATCH_FENCE,
            &render.match_block()?,
            Placement::End,
        );
    }
    if new_main != main {
        files.push(File {
            path: main_path.clone(),
            content: new_main,
            meta: None,
            topic: Some("sshd"),
        });
    }
    Ok(files)
}

/// The pam_umask block, when the PAM file exists (sftpctl never creates a PAM service).
fn pam_file(config: &Config, render: &Renderer) -> Result<Option<File>> {
    let Some((bytes, _)) = fsops::read_regular(&config.pam.file)? else {
        return Ok(None);
    };
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let new = fenced::upsert(&text, "umask", &render.pam_umask()?, Placement::End);
    Ok(Some(File {
        path: config.pam.file.clone(),
        content: new,
        meta: None,
        topic: Some("sshd"),
    }))
}

/// The fenced block of rsyslog's main config: the line that loads imuxsock (where the system
/// socket's options must be set: a drop-in cannot change them, rsyslog refuses a second
/// `module(load="imuxsock")` and, after one, the legacy `$SystemLog…` directives) is kept as a
/// comment and replaced by the same line asking for the senders' credentials.
fn rsyslog_main_file(config: &Config) -> Result<Option<File>> {
    let Some((bytes, _)) = fsops::read_regular(&config.rsyslog.main_config)? else {
        return Ok(None);
    };
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let Some(body) = imuxsock_block(&text) else {
        return Ok(None);
    };
    let new = fenced::upsert(
        &text,
        IMUXSOCK_FENCE,
        &body,
        Placement::Replace {
            line: loads_imuxsock,
            before: |_| false,
        },
    );
    Ok(Some(File {
        path: config.rsyslog.main_config.clone(),
        content: new,
        meta: None,
        topic: Some("rsyslog"),
    }))
}

const IMUXSOCK_FENCE: &str = "imuxsock";
/// Added to the system socket's line.
const TRUSTED_PARAMS: [&str; 2] = ["SysSock.Annotate", "SysSock.ParseTrusted"];
/// Removed from it: on systemd hosts journald relays /dev/log and gives its own pid for a
/// sender that has exited, which `UsePIDFromSystem` would write into the tag; the watcher
/// reads the kernel's pid from the credentials instead.
const DROPPED_PARAMS: [&str; 1] = ["SysSock.UsePIDFromSystem"];

/// A one-line `module(load="imuxsock" …)` with the system socket on, or `$ModLoad imuxsock`.
fn loads_imuxsock(line: &str) -> bool {
    let l = line.trim().to_ascii_lowercase();
    let module = l.starts_with("module(")
        && l.replace(' ', "").contains("load=\"imuxsock\"")
        && l.contains(')')
        && !l.replace(' ', "").contains("syssock.use=\"off\"");
    let legacy = l.split_whitespace().collect::<Vec<_>>() == ["$modload", "imuxsock"];
    module || legacy
}

/// The block's body, from the original line (found in the file, or kept as `# was:` in an
/// existing block).
fn imuxsock_block(text: &str) -> Option<String> {
    let original = match fenced::recorded(text, IMUXSOCK_FENCE) {
        Some(was) => was,
        None => text.lines().find(|l| loads_imuxsock(l))?.to_string(),
    };
    if !loads_imuxsock(&original) {
        return None;
    }
    let why = "# sftpctl: the system socket gives every line its sender's kernel credentials:\n\
               # the watcher reports the admin's SFTP sessions only from lines that carry them.";
    let trimmed = original.trim();
    if trimmed.starts_with('$') {
        return Some(format!(
            "{why}\n{trimmed}\n$SystemLogSocketAnnotate on\n$SystemLogParseTrusted on\n"
        ));
    }
    // `module(PARAMS) # comment` → `module(PARAMS without ours + ours)`.
    let close = trimmed.find(')')?;
    let params = &trimmed["module(".len()..close];
    let kept: Vec<&str> = split_params(params)
        .into_iter()
        .filter(|p| {
            let name = p.split('=').next().unwrap_or("").trim();
            !TRUSTED_PARAMS
                .iter()
                .chain(&DROPPED_PARAMS)
                .any(|t| t.eq_ignore_ascii_case(name))
        })
        .collect();
    let ours: Vec<String> = TRUSTED_PARAMS
        .iter()
        .map(|p| format!("{p}=\"on\""))
        .collect();
    Some(format!(
        "{why}\nmodule({} {})\n",
        kept.join(" "),
        ours.join(" ")
    ))
}

/// `a="x y" b="z"` → [`a="x y"`, `b="z"`] (values are quoted, spaces separate).
fn split_params(params: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut start, mut quoted) = (None, false);
    for (i, c) in params.char_indices() {
        match c {
            '"' => quoted = !quoted,
            c if c.is_whitespace() && !quoted => {
                if let Some(s) = start.take() {
                    out.push(&params[s..i]);
                }
                continue;
            }
            _ => {}
        }
        start.get_or_insert(i);
    }
    if let Some(s) = start {
        out.push(&params[s..]);
    }
    out
}

/// The keys already in `path` plus `new`.
pub fn merged_keys(path: &Path, new: &[keys::PublicKey]) -> Result<String> {
    let existing = match fsops::read_regular(path)? {
        Some((bytes, _)) => {
            keys::parse_text(&String::from_utf8_lossy(&bytes)).with_context(|| {
                format!(
                    "{} holds a line that is not a public key; fix it by hand",
                    path.display()
                )
            })?
        }
        None => vec![],
    };
    Ok(keys::merge(&existing, new))
}

fn argv(parts: &[&Path]) -> Vec<String> {
    parts.iter().map(|p| p.display().to_string()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_imuxsock_line_gets_the_credential_options() {
        let debian = "#### MODULES ####\n\nmodule(load=\"imuxsock\") # provides support for local system logging\nmodule(load=\"imklog\")\n";
        let body = imuxsock_block(debian).unwrap();
        assert!(
            body.contains(
                "\nmodule(load=\"imuxsock\" SysSock.Annotate=\"on\" SysSock.ParseTrusted=\"on\")\n"
            ),
            "{body}"
        );
        let once = fenced::upsert(
            debian,
            IMUXSOCK_FENCE,
            &body,
            Placement::Replace {
                line: loads_imuxsock,
                before: |_| false,
            },
        );
        assert!(
            once.contains("# was: module(load=\"imuxsock\") # provides"),
            "{once}"
        );
        assert_eq!(once.matches("load=\"imuxsock\"").count(), 2, "{once}");
        // a second run changes nothing
        let body2 = imuxsock_block(&once).unwrap();
        assert_eq!(body2, body);
        let twice = fenced::upsert(
            &once,
            IMUXSOCK_FENCE,
            &body2,
            Placement::Replace {
                line: loads_imuxsock,
                before: |_| false,
            },
        );
        assert_eq!(twice, once);
        // other parameters stay, ours replace the admin's
        let b = imuxsock_block(
            "module(load=\"imuxsock\" SysSock.Name=\"/x y/log\" SysSock.Annotate=\"off\" SysSock.UsePIDFromSystem=\"on\")\n",
        )
        .unwrap();
        assert!(
            b.contains(
                "module(load=\"imuxsock\" SysSock.Name=\"/x y/log\" SysSock.Annotate=\"on\""
            ),
            "{b}"
        );
        assert!(!b.contains("\"off\""), "{b}");
        assert!(!b.contains("UsePIDFromSystem"), "{b}");
        // no system socket (RHEL: the journal), or legacy syntax
        assert_eq!(
            imuxsock_block("module(load=\"imuxsock\" SysSock.Use=\"off\")\n"),
            None
        );
        assert!(imuxsock_block("$ModLoad imuxsock\n")
            .unwrap()
            .contains("$SystemLogParseTrusted on"));
    }
}
