//! `sftpctl init --undo`: takes back what `init` set up, through the plan engine like init
//! itself (so `--dry-run` shows it and a failed validation reverts it). Refused while jailed
//! accounts exist. Keeps the admin account, the groups, the jail root with its data, the log,
//! the watcher's state and mail spool and the config, and says how to remove them.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use users::os::unix::UserExt;

use crate::accounts;
use crate::commands::finish;
use crate::config::{Config, Source};
use crate::error::{require_root, usage};
use crate::jail;
use crate::keys;
use crate::plan::fsops::{self, Kind};
use crate::plan::removal::{
    has_key, AdminKeys, RemoveEmptyDir, RemoveManaged, RestoreFenced, StopUnit,
};
use crate::plan::steps::{service_manager_running, Activate, Validate};
use crate::plan::Plan;
use crate::setup::rsyslog_dropin_dir;

pub fn run(config: &Config, source: &Source, dry_run: bool) -> Result<()> {
    require_root("sftpctl init --undo")?;
    refuse_while_jailed(config)?;
    let plan = build(config)?;
    finish("init --undo", plan, dry_run)?;
    println!("{}", kept(config, source));
    Ok(())
}

fn refuse_while_jailed(config: &Config) -> Result<()> {
    let mut jailed: Vec<String> = accounts::jailed_names(config)
        .into_iter()
        .filter(|n| users::get_user_by_name(n).is_some())
        .collect();
    jailed.sort();
    if jailed.is_empty() {
        return Ok(());
    }
    Err(usage(format!(
        "{} jailed account(s) still exist ({}): remove each with `sftpctl remove-user NAME --keep-data` (keeps its data dir; or --archive FILE.tar.gz / --remove-data), then run `sftpctl init --undo` again",
        jailed.len(),
        jailed.join(", ")
    )))
}

fn build(config: &Config) -> Result<Plan> {
    let mut plan = Plan::new();
    let watch_unit = config.systemd.unit_dir.join("sftpctl-watch.service");
    let rsyslog_dropin_dir = rsyslog_dropin_dir(config);

    // The admin's keys first: its login must not depend on the files removed below.
    let key_files = admin_key_files(config, &mut plan)?;

    if fsops::inspect(&watch_unit)?.0 != Kind::Missing {
        if config.systemd.disable_watch.is_empty() {
            eprintln!("sftpctl: note: systemd.disable_watch is [], so sftpctl does not stop the watcher: stop and disable sftpctl-watch.service yourself");
        } else if !service_manager_running() {
            eprintln!(
                "sftpctl: note: no service manager is running (systemd is not PID 1), so the watcher is not stopped; if one runs later: {}",
                config.systemd.disable_watch.join(" ")
            );
        } else {
            plan.push(StopUnit {
                unit_file: watch_unit.clone(),
                argv: config.systemd.disable_watch.clone(),
                undo_argv: config.systemd.enable_watch.clone(),
            });
        }
    }

    for (path, topic) in [
        (config.sshd.dropin.clone(), Some("sshd")),
        (config.rsyslog.config.clone(), Some("rsyslog")),
        (config.logrotate.config.clone(), None),
        (watch_unit, Some("systemd")),
        (
            config.systemd.unit_dir.join("sftpctl-policy.service"),
            Some("systemd"),
        ),
        (
            config.systemd.unit_dir.join("sftpctl-policy.timer"),
            Some("systemd"),
        ),
        (
            config.systemd.unit_dir.join("sftpctl-policy.path"),
            Some("systemd"),
        ),
        (rsyslog_dropin_dir.join("50-sftpctl.conf"), Some("systemd")),
    ] {
        plan.push(RemoveManaged::new(path, true, topic));
    }
    for (path, topic) in [
        (&config.sshd.config, "sshd"),
        (&config.pam.file, "sshd"),
        (&config.rsyslog.main_config, "rsyslog"),
    ] {
        plan.push(RestoreFenced::new(path.clone(), topic));
    }
    for path in key_files {
        plan.push(RemoveManaged::new(path, false, None));
    }
    for dir in [&config.sshd.authorized_keys_dir, &config.user_dir] {
        plan.push(RemoveEmptyDir { path: dir.clone() });
        // `/etc/ssh/sftpctl`, `/etc/sftpctl`: made for sftpctl alone.
        if let Some(parent) = dir
            .parent()
            .filter(|p| p.file_name() == Some("sftpctl".as_ref()))
        {
            plan.push(RemoveEmptyDir {
                path: parent.to_path_buf(),
            });
        }
    }
    plan.push(RemoveEmptyDir {
        path: rsyslog_dropin_dir,
    });

    plan.push(Validate {
        what: "sshd".into(),
        argv: vec![
            config.sshd.binary.display().to_string(),
            "-t".into(),
            "-f".into(),
            config.sshd.config.display().to_string(),
        ],
    });
    if config.rsyslog.main_config.exists() {
        plan.push(Validate {
            what: "rsyslog".into(),
            argv: vec![
                config.rsyslog.binary.display().to_string(),
                "-N1".into(),
                "-f".into(),
                config.rsyslog.main_config.display().to_string(),
            ],
        });
    }
    for (what, key, argv, topic) in [
        ("reload sshd", "sshd.reload", &config.sshd.reload, "sshd"),
        (
            "reload systemd units",
            "systemd.daemon_reload",
            &config.systemd.daemon_reload,
            "systemd",
        ),
        (
            "restart rsyslog",
            "rsyslog.restart",
            &config.rsyslog.restart,
            "rsyslog",
        ),
    ] {
        plan.push(Activate {
            what: what.into(),
            key,
            argv: argv.clone(),
            topic: Some(topic),
        });
    }
    Ok(plan)
}

/// Every file in the authorized_keys dir (only the admin's are left once no jailed account
/// exists). For one of an existing account, a step that adds its keys to the account's
/// `~/.ssh/authorized_keys` (which sftpctl's admin block already listed first) comes first.
fn admin_key_files(config: &Config, plan: &mut Plan) -> Result<Vec<PathBuf>> {
    let dir = &config.sshd.authorized_keys_dir;
    if fsops::inspect(dir)?.0 != Kind::Dir {
        return Ok(vec![]);
    }
    let mut files = Vec::new();
    for entry in fs_err::read_dir(dir)? {
        let path = entry?.path();
        let Some(name) = path
            .file_name()
            .and_then(|n| n.to_str())
            .map(str::to_string)
        else {
            continue;
        };
        if name.starts_with('.') {
            continue;
        }
        if let (Some(user), Some((bytes, _))) =
            (users::get_user_by_name(&name), fsops::read_regular(&path)?)
        {
            let keys = keys::parse_text(&String::from_utf8_lossy(&bytes)).with_context(|| {
                format!(
                    "{} holds a line that is not a public key; fix it by hand",
                    path.display()
                )
            })?;
            if !keys.is_empty() {
                plan.push(admin_keys_step(&name, &user, &path, keys)?);
            }
        }
        files.push(path);
    }
    files.sort();
    Ok(files)
}

fn admin_keys_step(
    name: &str,
    user: &users::User,
    from: &Path,
    keys: Vec<keys::PublicKey>,
) -> Result<AdminKeys> {
    let home = user.home_dir().to_path_buf();
    let step = AdminKeys {
        user: name.to_string(),
        uid: user.uid(),
        gid: user.primary_group_id(),
        home: home.clone(),
        keys,
    };
    let target = home.join(".ssh/authorized_keys");
    let present = fsops::read_regular(&target)
        .ok()
        .flatten()
        .map(|(b, _)| String::from_utf8_lossy(&b).into_owned())
        .is_some_and(|text| step.keys.iter().all(|k| has_key(&text, k)));
    let safe = match fsops::inspect(&home)? {
        (Kind::Dir, Some(md)) => {
            use std::os::unix::fs::MetadataExt;
            jail::root_owned_not_writable(md.uid(), md.mode())
        }
        _ => false,
    };
    if !present && !safe {
        return Err(usage(format!(
            "the home {home} of {name} is not a root-owned directory closed to others, so sftpctl does not write its ~/.ssh as root: add the keys yourself as {name} (sudo -u {name} sh -c 'mkdir -p -m 700 ~/.ssh && cat >> ~/.ssh/authorized_keys' < {from}), then run `sftpctl init --undo` again",
            home = home.display(),
            from = from.display()
        )));
    }
    Ok(step)
}

/// The line that says what undo leaves in place and how to remove it.
fn kept(config: &Config, source: &Source) -> String {
    let mut what = Vec::new();
    let mut commands = Vec::new();
    if let Some(admin) = config
        .admin
        .as_ref()
        .filter(|a| users::get_user_by_name(a).is_some())
    {
        what.push(format!("admin account {admin}"));
        commands.push(format!("userdel {admin}"));
    }
    for group in [&config.jail_group, &config.group] {
        if users::get_group_by_name(group).is_some() {
            what.push(format!("group {group}"));
            commands.push(format!("groupdel {group}"));
        }
    }
    let paths: Vec<&Path> = [
        config.root.as_path(),
        &config.rsyslog.log_file,
        &config.watch.state_dir,
        &config.mail.spool_dir,
        &source.path,
    ]
    .into_iter()
    .filter(|p| p.exists())
    .collect();
    for p in &paths {
        what.push(p.display().to_string());
    }
    if !paths.is_empty() {
        commands.push(format!(
            "rm -r {}",
            paths
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(" ")
        ));
    }
    if what.is_empty() {
        return "sftpctl init --undo: nothing of sftpctl's data is left".into();
    }
    format!(
        "kept: {} (the jail root holds the data; the log, reports and config may be records you need). To remove them too: {}",
        what.join(", "),
        commands.join("; ")
    )
}
