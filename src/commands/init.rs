//! `sftpctl init`: groups, the jail root, and every sshd/PAM/rsyslog/logrotate/systemd file,
//! validated before any service is reloaded.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};

use crate::accounts;
use crate::cli::InitArgs;
use crate::commands::apply::EXIT_WOULD_CHANGE;
use crate::commands::finish;
use crate::config::{self, Config, Source};
use crate::error::{require_root, usage};
use crate::jail;
use crate::keys;
use crate::names;
use crate::openssh;
use crate::plan::fsops::{self, Meta};
use crate::plan::steps::{Dir, File, Group, User};
use crate::plan::{parent_dirs, Plan};
use crate::setup::{self, rsyslog_dropin_dir};
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
    let mut notes: Vec<String> = admin_note.into_iter().collect();
    if let Some(to) = &args.forward_to {
        if source.exists && config.forward.to != *to {
            notes.push(not_in_config(source, &format!("[forward] to = \"{to}\"")));
        }
        config.forward.to = to.clone();
    }
    if args.collect {
        if source.exists && !config.collect.enabled {
            notes.push(not_in_config(source, "[collect] enabled = true"));
        }
        config.collect.enabled = true;
    }
    config.validate().map_err(|e| usage(format!("{e:#}")))?;
    crate::fleet::tls::check_files(&config)?;
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
    if args.exit_code {
        // clap holds --exit-code to --dry-run: this only prints.
        let pending = print_plan(&plan)?;
        for note in &notes {
            eprintln!("{note}");
        }
        if pending > 0 {
            std::process::exit(EXIT_WOULD_CHANGE);
        }
        return Ok(());
    }
    finish("init", plan, args.dry_run.dry_run)?;
    for note in notes {
        eprintln!("{note}");
    }
    if !args.dry_run.dry_run && config.forward.enabled() {
        if let Err(e) = crate::fleet::announce::send(&config) {
            eprintln!(
                "sftpctl: warning: the collector was not told of this host's accounts: {e:#} (run `sftpctl announce` once rsyslog runs)"
            );
        }
    }
    Ok(())
}

/// The note for a value given on the command line that the config file does not hold.
fn not_in_config(source: &Source, line: &str) -> String {
    format!(
        "sftpctl: note: {} does not say {line}: add it there, or the next init without the option takes it back",
        source.path.display()
    )
}

/// `--dry-run --exit-code`: the plan as `finish` prints it, and how many changes it holds.
fn print_plan(plan: &Plan) -> Result<usize> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    writeln!(out, "sftpctl init --dry-run: the plan").context("write the plan to stdout")?;
    let pending = plan.print_dry_run(&mut out)?;
    out.flush().context("write the plan to stdout")?;
    Ok(pending)
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
    let render = setup::renderer(config, source, version)?;
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

    let files = setup::render_files(config, &render, version)?;
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
    if config.forward.enabled() {
        // rsyslog's queue while the collector is away: root's alone (it holds the lines).
        parent_dirs(&mut plan, &config.forward.queue_dir)?;
        plan.push(Dir::root(&config.forward.queue_dir, 0o700));
    }
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
    for unit in files.policy_units {
        plan.push(unit);
    }
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

    setup::validate_and_activate(&mut plan, config, "init")?;
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
