//! The per-user `Match` blocks of sshd (docs/policy.md): access mode and quota state as
//! internal-sftp's request lists, the address allow-list as `DenyUsers` from every other
//! address. Rendered into the same files `init` writes (so `doctor`'s drift check agrees),
//! before the jail group's block: sshd takes the first value of each keyword.

pub mod check;
pub mod lists;

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Context, Result};

use crate::accounts;
use crate::config::Config;
use crate::plan::fsops;
use crate::plan::{Plan, Step};
use crate::registry::{self, UserSettings};
use crate::render::UserBlock;

/// The block of one client, `None` when its policy is sshd's default (rw, from anywhere,
/// quota not full). Every value comes from a validated type: the name was checked, the
/// networks are [`crate::policy::values::Network`]s, the flags fixed strings.
pub fn block(config: &Config, name: &str, settings: &UserSettings) -> Option<UserBlock> {
    let full = crate::policy::quota::is_full_with(config, name, settings);
    let sftp_flags = lists::sftp_flags(settings.access, full);
    let deny_outside = (!settings.allow_from.is_empty()).then(|| {
        let mut list = vec!["*".to_string()];
        list.extend(settings.allow_from.iter().map(|n| format!("!{n}")));
        list.join(",")
    });
    (sftp_flags.is_some() || deny_outside.is_some()).then(|| UserBlock {
        name: name.to_string(),
        deny_outside,
        sftp_flags,
    })
}

/// The settings of every managed user (and of every user in `overrides`, which replace what
/// the files say), sorted by name.
fn settings(
    config: &Config,
    overrides: &BTreeMap<String, UserSettings>,
) -> Result<Vec<(String, UserSettings)>> {
    let mut names: BTreeSet<String> = accounts::managed_names(config).into_iter().collect();
    names.extend(overrides.keys().cloned());
    let mut out = Vec::new();
    for name in names {
        // An account made by hand with a name sftpctl would refuse cannot have been given a
        // policy through sftpctl, and its name is never written into sshd's config.
        if crate::names::check_user_name("user", &name).is_err() {
            continue;
        }
        let s = match overrides.get(&name) {
            Some(s) => s.clone(),
            None => registry::load(config, &name)?,
        };
        out.push((name, s));
    }
    Ok(out)
}

/// The blocks of every managed user whose policy is not the default.
pub fn blocks(
    config: &Config,
    overrides: &BTreeMap<String, UserSettings>,
) -> Result<Vec<UserBlock>> {
    Ok(settings(config, overrides)?
        .iter()
        .filter_map(|(name, s)| block(config, name, s))
        .collect())
}

/// What sshd must say for every client with a block (doctor, and the check before reload).
pub fn expectations(
    config: &Config,
    overrides: &BTreeMap<String, UserSettings>,
) -> Result<Vec<check::Expect>> {
    let mut out = Vec::new();
    for (name, s) in settings(config, overrides)? {
        if let Some(b) = block(config, &name, &s) {
            out.extend(check::expectations(config, &b, &s.allow_from));
        }
    }
    Ok(out)
}

/// Steps that render sshd's files with the per-user blocks of every managed user
/// (`overrides` replace what their user files say: the plan writes those files first), check
/// them with `sshd -t` and `sshd -T -C` for each user in `overrides` and reload sshd; a
/// failure restores the files. No steps when the rendered files match the disk.
pub fn steps(
    plan: &mut Plan,
    config: &Config,
    overrides: &BTreeMap<String, UserSettings>,
) -> Result<()> {
    let files = crate::setup::sshd_managed_files(config, overrides)?;
    let mut pending = false;
    for f in &files {
        pending |= !f.is_satisfied()?;
    }
    if !pending {
        return Ok(());
    }
    require_initialised(config)?;
    for f in &files {
        keeps_admin_block(f)?;
    }
    for f in files {
        plan.push(f);
    }
    crate::setup::validate_and_activate(plan, config, "the policy change")?;
    let expects: Vec<check::Expect> = expectations(config, overrides)?
        .into_iter()
        .filter(|e| overrides.contains_key(&e.user))
        .collect();
    if !expects.is_empty() {
        plan.push(check::PolicyCheck {
            config: config.clone(),
            expects,
        });
    }
    Ok(())
}

/// The admin's block is rendered only when the config names the admin (`init --admin` alone
/// does not write it there): a policy change must not drop it and lock the admin out.
fn keeps_admin_block(file: &crate::plan::steps::File) -> Result<()> {
    const MARK: &str = "# The admin is not jailed.";
    let old = read_text(&file.path)?;
    if old.contains(MARK) && !file.content.contains(MARK) {
        return Err(crate::error::usage(format!(
            "{} has the admin's block, but the config names no admin, so rewriting it would drop that block: add admin = \"NAME\" to the config (sftpctl init --admin NAME said so), then run this again",
            file.path.display()
        )));
    }
    Ok(())
}

/// Blocks go into files `init` made; before it there is no jail group block to precede.
fn require_initialised(config: &Config) -> Result<()> {
    let main = read_text(&config.sshd.config)
        .with_context(|| format!("cannot read {}", config.sshd.config.display()))?;
    let included = crate::openssh::includes(&main, &config.sshd.dropin);
    let done = if included {
        fsops::read_regular(&config.sshd.dropin)?.is_some()
    } else {
        main.contains(&format!(
            "# BEGIN sftpctl {}",
            crate::host_auth::MATCH_FENCE
        ))
    };
    if !done {
        return Err(crate::error::usage(format!(
            "sshd's config has no sftpctl block yet ({} is not set up): run `sftpctl init` first",
            config.sshd.config.display()
        )));
    }
    Ok(())
}

/// A regular file's text, empty when it does not exist (never through a link).
fn read_text(path: &std::path::Path) -> Result<String> {
    Ok(fsops::read_regular(path)?
        .map(|(bytes, _)| String::from_utf8_lossy(&bytes).into_owned())
        .unwrap_or_default())
}

/// Re-renders every block from the user files and the quota state, and applies it (the
/// quota job calls this when a client fills up or makes room). Returns whether anything
/// changed; reloading sshd affects new sessions only.
pub fn resync(config: &Config, out: &mut dyn std::io::Write) -> Result<bool> {
    let mut plan = Plan::new();
    steps(&mut plan, config, &BTreeMap::new())?;
    if plan.is_empty() {
        return Ok(false);
    }
    let outcome = plan.apply(out)?;
    for note in outcome.notes.iter().chain(&outcome.manual) {
        writeln!(out, "sftpctl: {note}")?;
    }
    Ok(outcome.changed > 0)
}
