//! `sftpctl remove-user NAME`: locks the account, ends its sessions, removes account, keys,
//! settings and jail. The data is kept in place, archived, or deleted only when asked; a
//! non-empty data dir without one of those choices is refused.

use std::path::Path;

use anyhow::Result;

use crate::accounts::require_managed;
use crate::cli::RemoveUserArgs;
use crate::commands::finish;
use crate::config::Config;
use crate::error::{require_root, usage};
use crate::jail::Jail;
use crate::plan::account_steps::{
    Archive, KillSessions, RemoveAccount, RemovePath, RemoveTree, SetLocked,
};
use crate::plan::fsops::{self, Kind};
use crate::plan::Plan;
use crate::registry;

/// What happens to the data dir.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataFate {
    Keep,
    Remove,
}

pub fn run(config: &Config, args: &RemoveUserArgs) -> Result<()> {
    require_root("sftpctl remove-user")?;
    require_managed(config, &args.name)?;
    let jail = Jail::new(config, &args.name);
    if let Some(archive) = &args.archive {
        check_archive_path(archive)?;
    }
    let fate = if args.keep_data {
        DataFate::Keep
    } else if args.remove_data || args.archive.is_some() || is_empty_dir(&jail.data)? {
        DataFate::Remove
    } else {
        return Err(usage(format!(
            "{} holds data: say what to do with it: --keep-data, --archive FILE.tar.gz or --remove-data",
            jail.data.display()
        )));
    };
    let mut plan = Plan::new();
    removal_steps(&mut plan, config, &args.name, fate, args.archive.as_deref());
    finish("remove-user", plan, args.dry_run.dry_run)?;
    if fate == DataFate::Keep && !args.dry_run.dry_run {
        println!(
            "the data of {} stays in {}",
            args.name,
            crate::display::path(&jail.data)
        );
    }
    Ok(())
}

/// The steps that remove a managed user, in a safe order: no new logins, no running
/// sessions, the archive written, then the account, its files and its jail.
pub fn removal_steps(
    plan: &mut Plan,
    config: &Config,
    name: &str,
    fate: DataFate,
    archive: Option<&Path>,
) {
    let jail = Jail::new(config, name);
    plan.push(SetLocked {
        config: config.clone(),
        name: name.to_string(),
        locked: true,
    });
    plan.push(KillSessions {
        name: name.to_string(),
    });
    if let Some(archive) = archive {
        plan.push(Archive {
            dir: jail.data.clone(),
            archive: archive.to_path_buf(),
        });
    }
    plan.push(RemoveAccount {
        name: name.to_string(),
    });
    plan.push(RemovePath {
        path: config.sshd.authorized_keys_dir.join(name),
    });
    plan.push(RemovePath {
        path: registry::path(config, name),
    });
    plan.push(RemoveTree { path: jail.dev });
    match fate {
        DataFate::Remove => plan.push(RemoveTree { path: jail.dir }),
        DataFate::Keep => {}
    }
}

fn is_empty_dir(path: &Path) -> Result<bool> {
    Ok(match fsops::inspect(path)?.0 {
        Kind::Missing => true,
        Kind::Dir => fs_err::read_dir(path)?.next().is_none(),
        _ => false,
    })
}

fn check_archive_path(path: &Path) -> Result<()> {
    if !path.is_absolute() {
        return Err(usage(format!(
            "--archive {} is relative: give an absolute path",
            path.display()
        )));
    }
    if fsops::inspect(path)?.0 != Kind::Missing {
        return Err(usage(format!(
            "{} already exists; sftpctl does not overwrite an archive",
            path.display()
        )));
    }
    let parent = path.parent().unwrap_or(Path::new("/"));
    if fsops::inspect(parent)?.0 != Kind::Dir {
        return Err(usage(format!(
            "the directory of {} does not exist",
            path.display()
        )));
    }
    Ok(())
}
