//! `sftpctl add-user NAME`: a jailed SFTP account with its jail, data dir, log link and keys.
//!
//! Only this jail is touched, so the cost does not grow with the number of jails.

use anyhow::Result;

use crate::accounts::{self, Account};
use crate::cli::AddUserArgs;
use crate::commands::{finish, init::merged_keys};
use crate::config::Config;
use crate::error::{require_root, usage};
use crate::jail::{Jail, DATA_MODE};
use crate::keys;
use crate::names;
use crate::plan::fsops::{self, Kind, Meta};
use crate::plan::steps::{gid_of, Dir, File, HardLink, User};
use crate::plan::Plan;

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

    let jail = Jail::new(config, name);
    let mut plan = Plan::new();
    plan.push(User {
        name: name.to_string(),
        primary_group: config.group.clone(),
        groups: vec![config.jail_group.clone()],
        home: format!("/{}", config.data_dir).into(),
        shell: config.nologin_shell.clone(),
        purpose: "jailed SFTP",
    });
    plan.push(Dir::root(&jail.dir, 0o755));
    plan.push(Dir {
        path: jail.data.clone(),
        user: name.to_string(),
        group: config.group.clone(),
        mode: DATA_MODE,
    });
    plan.push(Dir::root(&jail.dev, 0o755));
    if fsops::inspect(&config.root_log_socket())?.0 == Kind::Socket {
        plan.push(HardLink {
            target: config.root_log_socket(),
            link: jail.log.clone(),
        });
    } else {
        eprintln!(
            "sftpctl: warning: rsyslog's socket {} does not exist yet, so {} is not linked: sessions of {name} are not logged until rsyslog runs with the sftpctl drop-in and `sftpctl refresh-log-links` ran",
            config.root_log_socket().display(),
            jail.log.display()
        );
    }
    if !new_keys.is_empty() {
        plan.push(Dir::root(&config.sshd.authorized_keys_dir, 0o755));
        let path = config.sshd.authorized_keys_dir.join(name);
        plan.push(File {
            content: merged_keys(&path, &new_keys)?,
            path,
            meta: Some(Meta::root(0o644)),
            topic: None,
        });
    }
    finish("add-user", plan, args.dry_run.dry_run)
}
