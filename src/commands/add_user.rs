//! `sftpctl add-user NAME`: a jailed SFTP account with its jail, data dir, log link and keys.
//!
//! Only this jail is touched, so the cost does not grow with the number of jails.

use anyhow::Result;

use crate::accounts::{self, Account};
use crate::cli::AddUserArgs;
use crate::commands::{finish, init::merged_keys, key, welcome};
use crate::config::Config;
use crate::error::{require_root, usage};
use crate::jail::{Jail, DATA_MODE};
use crate::keys;
use crate::names;
use crate::plan::account_steps::SetPassword;
use crate::plan::fsops::{self, Kind, Meta};
use crate::plan::steps::{gid_of, Dir, File, HardLink, User};
use crate::plan::Plan;
use crate::registry;

pub fn run(config: &Config, args: &AddUserArgs) -> Result<()> {
    require_root("sftpctl add-user")?;
    let name = args.name.as_str();
    names::check_user_name("user name", name).map_err(|e| usage(format!("{e:#}")))?;
    if config.admin.as_deref() == Some(name) {
        return Err(usage(format!(
            "{name} is the admin account; the admin is never jailed"
        )));
    }
    let mut new_keys = Vec::new();
    for path in &args.keys {
        new_keys.extend(keys::read_key_file(path)?);
    }
    if let Some(email) = &args.email {
        registry::check_email(email).map_err(|e| usage(format!("--email: {e:#}")))?;
    }
    let assignments =
        crate::policy::assign::parse_all(&args.settings).map_err(|e| usage(format!("{e:#}")))?;
    // Everything a welcome needs is checked before anything changes.
    let welcome = match args.welcome {
        true => Some((
            welcome::address(config, name, args.email.as_deref())?,
            welcome::Ready::new(config)?,
        )),
        false => None,
    };
    let password = if args.password_stdin {
        Some(crate::commands::account::read_password(false)?)
    } else {
        None
    };
    if accounts::account(config, name) == Account::Foreign {
        return Err(usage(format!(
            "an account named {name} already exists and is not a jailed sftpctl user; choose another name"
        )));
    }
    for group in [&config.group, &config.jail_group] {
        if gid_of(group).is_none() {
            anyhow::bail!("group {group} does not exist: run sftpctl init first");
        }
    }
    if fsops::inspect(&config.root)?.0 != Kind::Dir {
        anyhow::bail!(
            "the jail root {} does not exist: run sftpctl init first",
            config.root.display()
        );
    }

    let mut plan = Plan::new();
    jail_steps(&mut plan, config, name, true);
    // An existing jail from before issue 9: its tree is closed to other accounts too.
    if let Some(step) = crate::perms::migrate::ConfineDataTrees::planned_for(config, name) {
        plan.push(step);
    }
    if !new_keys.is_empty() {
        let path = config.sshd.authorized_keys_dir.join(name);
        plan.push(Dir::root(&config.sshd.authorized_keys_dir, 0o755));
        plan.push(File {
            content: merged_keys(&path, &new_keys)?,
            path,
            meta: Some(Meta::root(0o644)),
            topic: None,
        });
    }
    let before = registry::load(config, name)?;
    let mut after = before.clone();
    if let Some(email) = &args.email {
        after.email = Some(email.clone());
    }
    for a in &assignments {
        a.apply(&mut after);
    }
    let change = crate::policy::steps::Change {
        name: name.to_string(),
        before,
        after,
    };
    crate::policy::steps::push(&mut plan, config, &[change], false)?;
    if let Some(password) = password {
        plan.push(SetPassword {
            name: name.to_string(),
            password,
        });
    }
    finish("add-user", plan, args.dry_run.dry_run)?;
    let Some((address, ready)) = welcome else {
        return Ok(());
    };
    if args.dry_run.dry_run {
        let mut keys = key::current(config, name)?;
        for k in new_keys {
            if !keys.iter().any(|e| e.same_key(&k)) {
                keys.push(k);
            }
        }
        return ready.print_dry_run(
            config,
            name,
            &address,
            &keys,
            "add-user --dry-run --welcome",
        );
    }
    ready.send(config, name, &address, &key::current(config, name)?)
}

/// The steps that make `name` a jailed account with its jail: account, jail dir, data dir,
/// dev dir and (when rsyslog's socket exists) the dev/log link. Only this jail is touched.
pub(crate) fn jail_steps(plan: &mut Plan, config: &Config, name: &str, warn: bool) {
    let jail = Jail::new(config, name);
    plan.push(User {
        name: name.to_string(),
        primary_group: config.group.clone(),
        groups: vec![config.jail_group.clone()],
        home: format!("/{}", config.data_dir).into(),
        shell: config.nologin_shell.clone(),
        purpose: "jailed SFTP",
        subordinate_ids: false,
    });
    plan.push(Dir::root(&jail.dir, 0o755));
    plan.push(Dir {
        path: jail.data.clone(),
        user: name.to_string(),
        group: config.group.clone(),
        mode: DATA_MODE,
    });
    plan.push(Dir::root(&jail.dev, 0o755));
    let socket = config.root_log_socket();
    if matches!(fsops::inspect(&socket), Ok((Kind::Socket, _))) {
        plan.push(HardLink {
            target: socket,
            link: jail.log,
        });
    } else if warn {
        eprintln!(
            "sftpctl: warning: rsyslog's socket {} does not exist yet, so {} is not linked: sessions of {name} are not logged until rsyslog runs with the sftpctl drop-in and `sftpctl refresh-log-links` ran",
            socket.display(),
            jail.log.display()
        );
    }
}
