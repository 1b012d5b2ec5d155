//! `sftpctl remove-user NAME`: locks the account, ends its sessions, removes account, keys,
//! settings and jail. The data is kept in place, archived, or deleted only when asked; a
//! non-empty data dir without one of those choices is refused. Locking, ending sessions and
//! the archive come before the point of no return (`userdel`); from there on a failure
//! reverts nothing, keeps the archive, and says what was done and what remains.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};

use crate::accounts::require_managed;
use crate::cli::RemoveUserArgs;
use crate::commands::finish;
use crate::config::Config;
use crate::error::{require_root, usage};
use crate::jail::Jail;
use crate::plan::account_steps::{
    Archive, KillSessions, RemoveAccount, RemovePath, RemoveTree, SetLocked,
};
use crate::plan::archive;
use crate::plan::fsops::{self, Kind};
use crate::plan::{Journal, Plan, Step};
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
        archive::check_target(archive)?;
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
    let archive = args.archive.as_deref();
    if args.dry_run.dry_run {
        let mut plan = Plan::new();
        removal_steps(&mut plan, config, &args.name, fate, archive);
        drop_policy_blocks(&mut plan, config, &args.name)?;
        return finish("remove-user", plan, true);
    }
    let mut before = Plan::new();
    for step in reversible_steps(config, &args.name, archive) {
        before.push_boxed(step);
    }
    drop_policy_blocks(&mut before, config, &args.name)?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let first = before.apply(&mut out).with_context(|| {
        format!(
            "nothing was removed, but {0} may stay locked (sftpctl unlock {0} lifts it)",
            args.name
        )
    })?;
    let (changed, unchanged) =
        past_no_return(final_steps(config, &args.name, fate), &mut out, archive)?;
    writeln!(
        out,
        "sftpctl remove-user: {} change(s) applied, {} already in place",
        first.changed + changed,
        first.unchanged + unchanged
    )?;
    if let Some(archive) = archive {
        writeln!(
            out,
            "the data of {} is in {}",
            args.name,
            crate::display::path(archive)
        )?;
    }
    if fate == DataFate::Keep {
        writeln!(
            out,
            "the data of {} stays in {}",
            args.name,
            crate::display::path(&jail.data)
        )?;
    }
    Ok(())
}

/// sshd's config without the user's Match blocks; before the point of no return (the
/// account is locked by then), so that a failing `sshd -t` reverts the whole removal.
fn drop_policy_blocks(plan: &mut Plan, config: &Config, name: &str) -> Result<()> {
    let gone =
        std::collections::BTreeMap::from([(name.to_string(), registry::UserSettings::default())]);
    crate::policy::sshd::steps(plan, config, &gone)
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
    for step in reversible_steps(config, name, archive)
        .into_iter()
        .chain(final_steps(config, name, fate))
    {
        plan.push_boxed(step);
    }
}

/// Before the point of no return: the account locked, its sessions ended, the archive
/// written. A failure here removes nothing.
fn reversible_steps(config: &Config, name: &str, archive: Option<&Path>) -> Vec<Box<dyn Step>> {
    let jail = Jail::new(config, name);
    let mut steps: Vec<Box<dyn Step>> = vec![
        Box::new(SetLocked {
            config: config.clone(),
            name: name.to_string(),
            locked: true,
        }),
        Box::new(KillSessions {
            name: name.to_string(),
        }),
    ];
    if let Some(archive) = archive {
        steps.push(Box::new(Archive {
            dir: jail.data.clone(),
            archive: archive.to_path_buf(),
        }));
    }
    steps
}

/// From the point of no return: the account, its keys and settings, its jail.
fn final_steps(config: &Config, name: &str, fate: DataFate) -> Vec<Box<dyn Step>> {
    let jail = Jail::new(config, name);
    let mut steps: Vec<Box<dyn Step>> = vec![
        Box::new(RemoveAccount {
            name: name.to_string(),
        }),
        Box::new(RemovePath {
            path: config.sshd.authorized_keys_dir.join(name),
        }),
        Box::new(RemovePath {
            path: registry::path(config, name),
        }),
        Box::new(RemoveTree { path: jail.dev }),
    ];
    if fate == DataFate::Remove {
        steps.push(Box::new(RemoveTree { path: jail.dir }));
    }
    steps
}

/// Applies steps that cannot be undone: on a failure nothing is reverted (the account is
/// already gone), the archive is kept, and the error lists what was done and what remains.
fn past_no_return(
    steps: Vec<Box<dyn Step>>,
    out: &mut dyn Write,
    archive: Option<&Path>,
) -> Result<(usize, usize)> {
    let (mut changed, mut unchanged) = (0, 0);
    let mut done = Vec::new();
    for (i, step) in steps.iter().enumerate() {
        let result = step.is_satisfied().and_then(|satisfied| {
            if !satisfied {
                step.apply(&mut Journal::default())?;
            }
            Ok(!satisfied)
        });
        match result {
            Ok(true) => {
                changed += 1;
                done.push(step.describe());
                writeln!(out, "  + {}", step.describe())?;
            }
            Ok(false) => unchanged += 1,
            Err(err) => {
                let left: Vec<String> = steps[i..]
                    .iter()
                    .filter(|s| !s.is_satisfied().unwrap_or(false))
                    .map(|s| s.describe())
                    .collect();
                let kept = match archive {
                    Some(a) => format!("; the archive {} is complete and kept", a.display()),
                    None => String::new(),
                };
                let done = if done.is_empty() {
                    "nothing".to_string()
                } else {
                    done.join("; ")
                };
                return Err(err.context(format!(
                    "step \"{}\" failed after the point of no return, so nothing was reverted{kept}. Done: {done}. Still to do (by hand, once the cause is fixed): {}. Error",
                    step.describe(),
                    left.join("; ")
                )));
            }
        }
    }
    Ok((changed, unchanged))
}

fn is_empty_dir(path: &Path) -> Result<bool> {
    Ok(match fsops::inspect(path)?.0 {
        Kind::Missing => true,
        Kind::Dir => fs_err::read_dir(path)?.next().is_none(),
        _ => false,
    })
}
