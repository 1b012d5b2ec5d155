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
    if let Some(admin) = &args.admin {
        names::check_user_name("--admin", admin).map_err(|e| usage(format!("{e:#}")))?;
        config.admin = Some(admin.clone());
    }
    if !args.admin_keys.is_empty() && config.admin.is_none() {
        return Err(usage(
            "--admin-key needs an admin: give --admin NAME or set admin in the config",
        ));
    }
    config::check_abs_path("--config", &source.path).map_err(|e| usage(format!("{e:#}")))?;
    let mut admin_keys = Vec::new();
    for path in &args.admin_keys {
        admin_keys.extend(keys::read_key_file(path)?);
    }

    let plan = build(&config, source, &admin_keys)?;
    finish("init", plan, args.dry_run.dry_run)
}

fn build(config: &Config, source: &Source, admin_keys: &[keys::PublicKey]) -> Result<Plan> {
    let missing_ancestors = jail::check_root_chain(&config.root)?;
    if let Some(admin) = &config.admin {
        check_admin(config, admin)?;
    }
    let version = openssh::detect_version(&config.sshd.binary)?;
    let render = Renderer::new(config, &source.path, &version.to_string());
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

    if let Some(admin) = &config.admin {
        plan.push(User {
            name: admin.clone(),
            primary_group: config.group.clone(),
            groups: vec![],
            home: config.root.clone(),
            shell: config.admin_shell.clone(),
            purpose: "admin",
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

    sshd_files(&mut plan, config, &render, version)?;
    pam_file(&mut plan, config, &render)?;

    parent_dirs(&mut plan, &config.rsyslog.config)?;
    plan.push(File {
        path: config.rsyslog.config.clone(),
        content: render.rsyslog()?,
        meta: Some(Meta::root(0o644)),
        topic: Some("rsyslog"),
    });
    parent_dirs(&mut plan, &config.logrotate.config)?;
    plan.push(File {
        path: config.logrotate.config.clone(),
        content: render.logrotate()?,
        meta: Some(Meta::root(0o644)),
        topic: None,
    });

    parent_dirs(&mut plan, &config.systemd.unit_dir)?;
    plan.push(Dir::root(&config.systemd.unit_dir, 0o755));
    plan.push(File {
        path: config.systemd.unit_dir.join("sftpctl-watch.service"),
        content: render.watch_unit()?,
        meta: Some(Meta::root(0o644)),
        topic: Some("systemd"),
    });
    let rsyslog_dropin_dir = config
        .systemd
        .unit_dir
        .join(format!("{}.d", config.systemd.rsyslog_unit));
    plan.push(Dir::root(&rsyslog_dropin_dir, 0o755));
    plan.push(File {
        path: rsyslog_dropin_dir.join("50-sftpctl.conf"),
        content: render.rsyslog_unit_dropin()?,
        meta: Some(Meta::root(0o644)),
        topic: Some("systemd"),
    });

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

    plan.push(Validate {
        what: "sshd".into(),
        argv: argv(&[
            &config.sshd.binary,
            Path::new("-t"),
            Path::new("-f"),
            &config.sshd.config,
        ]),
    });
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
    Ok(plan)
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

/// The main sshd_config (fenced blocks) and the drop-in, in the way this OpenSSH accepts.
fn sshd_files(
    plan: &mut Plan,
    config: &Config,
    render: &Renderer,
    version: openssh::Version,
) -> Result<()> {
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
    if included {
        parent_dirs(plan, &config.sshd.dropin)?;
        plan.push(File {
            path: config.sshd.dropin.clone(),
            content: render.sshd_dropin(subsystem_in_dropin)?,
            meta: Some(Meta::root(0o644)),
            topic: Some("sshd"),
        });
    } else {
        new_main = fenced::upsert(&new_main, "match", &render.match_block()?, Placement::End);
    }
    if new_main != main {
        plan.push(File {
            path: main_path.clone(),
            content: new_main,
            meta: None,
            topic: Some("sshd"),
        });
    }
    Ok(())
}

/// The pam_umask block, when the PAM file exists (sftpctl never creates a PAM service).
fn pam_file(plan: &mut Plan, config: &Config, render: &Renderer) -> Result<()> {
    let Some((bytes, _)) = fsops::read_regular(&config.pam.file)? else {
        eprintln!(
            "sftpctl: note: {} does not exist, so no pam_umask line is added (internal-sftp -u {} sets the umask anyway)",
            config.pam.file.display(),
            config.umask
        );
        return Ok(());
    };
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let new = fenced::upsert(&text, "umask", &render.pam_umask()?, Placement::End);
    plan.push(File {
        path: config.pam.file.clone(),
        content: new,
        meta: None,
        topic: Some("sshd"),
    });
    Ok(())
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
