//! `sftpctl apply USERS.toml`: make the managed users match a declarative list.
//!
//! ```toml
//! [[user]]
//! name = "alice"
//! keys = ["ssh-ed25519 AAAA… alice@laptop"]   # exactly these keys (absent: keys untouched)
//! email = "alice@client.example"             # absent: untouched; "" clears it
//! password_hash = "$y$j9T$…"                  # as in /etc/shadow, or "*" (absent: untouched)
//! locked = false                              # absent: untouched
//! access = "upload-only"                      # policy keys (docs/policy.md): absent = as is
//! allow_from = ["203.0.113.0/24"]
//! expires = 2027-03-31
//! retention = "90d"
//! quota = "5G"
//! notify_client = true
//! notify_new_files = true
//! mail_mode = "digest"                       # session | digest | default
//! ```
//!
//! The whole file is validated before anything changes. Fields that are absent are left as
//! they are, so a file can manage only what it names. `--prune` removes managed users the
//! file does not list, keeping their data dirs in place.

use std::collections::HashSet;
use std::io::{IsTerminal, Write};
use std::path::Path;

use anyhow::{Context, Result};
use serde::Deserialize;

use crate::accounts::{self, Account};
use crate::cli::ApplyArgs;
use crate::commands::add_user::jail_steps;
use crate::commands::key::key_file_step;
use crate::commands::remove_user::{removal_steps, DataFate};
use crate::config::Config;
use crate::error::{require_root, usage};
use crate::keys::{self, PublicKey};
use crate::names;
use crate::plan::account_steps::{SetLocked, SetPasswordHash};
use crate::plan::steps::Dir;
use crate::plan::Plan;
use crate::policy::assign::{self, Assignment};
use crate::policy::steps::{self as policy_steps, Change};
use crate::policy::values::{Access, Network};
use crate::registry;

/// Exit code of `--dry-run --exit-code` when changes would be made.
pub const EXIT_WOULD_CHANGE: i32 = 3;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UsersFile {
    #[serde(default)]
    user: Vec<Entry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    name: String,
    keys: Option<Vec<String>>,
    email: Option<String>,
    password_hash: Option<String>,
    locked: Option<bool>,
    access: Option<Access>,
    allow_from: Option<Vec<Network>>,
    /// A date (TOML's `2027-03-31` or a string), or "never".
    #[serde(default, deserialize_with = "crate::policy::values::text_or_date")]
    expires: Option<String>,
    /// A duration, "off" or "default".
    retention: Option<String>,
    /// A size, or "none".
    quota: Option<String>,
    notify_client: Option<bool>,
    notify_new_files: Option<bool>,
    /// `session`, `digest` or `default`.
    mail_mode: Option<String>,
}

/// One validated entry.
struct Wanted {
    name: String,
    keys: Option<Vec<PublicKey>>,
    password_hash: Option<String>,
    locked: Option<bool>,
    /// The policy keys (and email) the file gives, as `set` would take them.
    settings: Vec<Assignment>,
}

pub fn run(config: &Config, args: &ApplyArgs) -> Result<()> {
    require_root("sftpctl apply")?;
    let wanted = load(config, &args.file)?;
    for group in [&config.group, &config.jail_group] {
        if crate::plan::steps::gid_of(group).is_none() {
            anyhow::bail!("group {group} does not exist: run sftpctl init first");
        }
    }
    let mut plan = Plan::new();
    let mut changes = Vec::with_capacity(wanted.len());
    for w in &wanted {
        user_steps(&mut plan, config, w)?;
        let before =
            registry::load(config, &w.name).with_context(|| format!("settings of {}", w.name))?;
        let mut after = before.clone();
        for a in &w.settings {
            a.apply(&mut after);
        }
        changes.push(Change {
            name: w.name.clone(),
            before,
            after,
        });
    }
    policy_steps::push(&mut plan, config, &changes, true)?;
    if args.prune {
        let listed: HashSet<&str> = wanted.iter().map(|w| w.name.as_str()).collect();
        for name in accounts::managed_names(config) {
            if !listed.contains(name.as_str()) {
                removal_steps(&mut plan, config, &name, DataFate::Keep, None);
            }
        }
    }

    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if args.dry_run.dry_run {
        writeln!(out, "sftpctl apply --dry-run: the plan")?;
        let pending = plan.print_dry_run(&mut out)?;
        out.flush()?;
        if args.exit_code && pending > 0 {
            std::process::exit(EXIT_WOULD_CHANGE);
        }
        return Ok(());
    }
    let outcome = if std::io::stdout().is_terminal() {
        apply_with_bar(plan)?
    } else {
        plan.apply(&mut out)?
    };
    for note in &outcome.notes {
        writeln!(out, "{note}")?;
    }
    if outcome.changed == 0 {
        writeln!(
            out,
            "sftpctl apply: nothing to change, {} user(s) already match",
            wanted.len()
        )?;
    } else {
        writeln!(
            out,
            "sftpctl apply: {} change(s) applied, {} already in place",
            outcome.changed, outcome.unchanged
        )?;
    }
    Ok(())
}

fn apply_with_bar(plan: Plan) -> Result<crate::plan::Outcome> {
    let bar = indicatif::ProgressBar::new(plan.len() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} steps {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let outcome =
        plan.apply_with_progress(&mut std::io::sink(), &|done| bar.set_position(done as u64));
    bar.finish_and_clear();
    outcome
}

fn load(config: &Config, path: &Path) -> Result<Vec<Wanted>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| usage(format!("cannot read {}: {e}", path.display())))?;
    let file: UsersFile = toml::from_str(&text).map_err(|e| {
        usage(format!(
            "{}: {}",
            path.display(),
            e.to_string().replace('\n', " ").trim()
        ))
    })?;
    let mut seen = HashSet::new();
    let mut wanted = Vec::with_capacity(file.user.len());
    for (i, e) in file.user.into_iter().enumerate() {
        let at = format!("{} user #{} ({:?})", path.display(), i + 1, e.name);
        let bad = |msg: String| usage(format!("{at}: {msg}"));
        names::check_user_name("name", &e.name).map_err(|err| bad(format!("{err:#}")))?;
        if !seen.insert(e.name.clone()) {
            return Err(bad("listed twice".into()));
        }
        if config.admin.as_deref() == Some(e.name.as_str()) {
            return Err(bad("is the admin account, which is never jailed".into()));
        }
        if accounts::account(config, &e.name) == Account::Foreign {
            return Err(bad(
                "an account with this name exists and is not a jailed sftpctl user".into(),
            ));
        }
        let keys = match e.keys {
            Some(lines) => Some(
                lines
                    .iter()
                    .map(|l| keys::parse_line(l))
                    .collect::<Result<Vec<_>>>()
                    .map_err(|err| bad(format!("keys: {err:#}")))?,
            ),
            None => None,
        };
        let mut settings = Vec::new();
        let mut setting = |key: &str, value: Option<String>| -> Result<()> {
            if let Some(v) = value {
                settings.push(assign::parse(key, &v).map_err(|err| bad(format!("{err:#}")))?);
            }
            Ok(())
        };
        setting("email", e.email)?;
        setting("expires", e.expires)?;
        setting("retention", e.retention)?;
        setting("quota", e.quota)?;
        setting("mail_mode", e.mail_mode)?;
        if let Some(access) = e.access {
            settings.push(Assignment::Access(access));
        }
        if let Some(mut nets) = e.allow_from {
            nets.sort();
            nets.dedup();
            settings.push(Assignment::AllowFrom(nets));
        }
        if let Some(notify) = e.notify_client {
            settings.push(Assignment::NotifyClient(Some(notify)));
        }
        if let Some(notify) = e.notify_new_files {
            settings.push(Assignment::NotifyNewFiles(Some(notify)));
        }
        if let Some(hash) = &e.password_hash {
            check_hash(hash).map_err(|err| bad(format!("{err:#}")))?;
        }
        wanted.push(Wanted {
            name: e.name,
            keys,
            password_hash: e.password_hash,
            locked: e.locked,
            settings,
        });
    }
    Ok(wanted)
}

/// A crypt(3) hash (`$id$…`) or `*`; never a clear-text password.
fn check_hash(hash: &str) -> Result<()> {
    let ok = hash == "*"
        || (hash.starts_with('$')
            && hash.len() > 3
            && hash
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "$./=".contains(c)));
    anyhow::ensure!(
        ok,
        "password_hash must be a crypt hash such as $y$… (from mkpasswd or /etc/shadow) or \"*\""
    );
    Ok(())
}

fn user_steps(plan: &mut Plan, config: &Config, w: &Wanted) -> Result<()> {
    jail_steps(plan, config, &w.name, false);
    if let Some(keys) = &w.keys {
        plan.push(Dir::root(&config.sshd.authorized_keys_dir, 0o755));
        plan.push(key_file_step(config, &w.name, keys));
    }
    if let Some(hash) = &w.password_hash {
        plan.push(SetPasswordHash {
            config: config.clone(),
            name: w.name.clone(),
            hash: hash.clone(),
        });
    }
    if let Some(locked) = w.locked {
        plan.push(SetLocked {
            config: config.clone(),
            name: w.name.clone(),
            locked,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes() {
        check_hash("*").unwrap();
        check_hash("$y$j9T$F5Jx5fExrKuPp53xLKQ..1$X3DX6M94c7o7lC3W0WUWwyHzzyW6W6mhF2yoeY4QRkA")
            .unwrap();
        check_hash("$6$salt$abc/def.").unwrap();
        for bad in ["", "secret", "$", "$6$a:b", "$6$a\nb", "!*"] {
            assert!(check_hash(bad).is_err(), "accepted {bad:?}");
        }
    }
}
