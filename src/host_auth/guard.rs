//! The accounts whose authentication sftpctl must not change, and the plan step that
//! reverts a run that would.

use anyhow::{bail, Result};

use super::{changes, effective, AuthSettings, HostView};
use crate::config::Config;
use crate::plan::journal::Journal;
use crate::plan::{Phase, Step};

/// Why an account is probed; it decides what the error tells the admin to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// sftpctl's admin (it may not exist yet: `sshd -T` matches `Match User` by name).
    Admin,
    /// root: on every host, never jailed, a Match block of sftpctl's must not reach it.
    Root,
    /// An existing account in `jail_group` that sftpctl did not create.
    InJailGroup,
}

/// At most this many accounts of the jail group are probed (each costs two `sshd -T`).
const MAX_FOREIGN_PROBES: usize = 16;

/// The accounts whose authentication must not change: the admin, root, and every existing
/// account in `jail_group` that is not one of sftpctl's jailed users (on the first `init`
/// of a host that already had a group of that name, those would be jailed).
pub fn probe_accounts(config: &Config) -> Vec<(String, Probe)> {
    let mut out = Vec::new();
    if let Some(admin) = &config.admin {
        out.push((admin.clone(), Probe::Admin));
    }
    if users::get_user_by_name("root").is_some() {
        out.push(("root".to_string(), Probe::Root));
    }
    let mut foreign: Vec<String> = crate::accounts::jailed_names(config)
        .into_iter()
        .chain(primary_members(config))
        .filter(|n| {
            crate::accounts::account(config, n) == crate::accounts::Account::Foreign
                && config.admin.as_deref() != Some(n)
                && n != "root"
        })
        .collect();
    foreign.sort();
    foreign.dedup();
    out.extend(
        foreign
            .into_iter()
            .take(MAX_FOREIGN_PROBES)
            .map(|n| (n, Probe::InJailGroup)),
    );
    out
}

/// Accounts whose primary group is `jail_group` (they are not listed as its members).
fn primary_members(config: &Config) -> Vec<String> {
    let Some(gid) = crate::plan::steps::gid_of(&config.jail_group) else {
        return vec![];
    };
    let gid = gid.to_string();
    std::fs::read_to_string("/etc/passwd")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() > 3 && f[3] == gid).then(|| f[0].to_string())
        })
        .collect()
}

/// What to do about a change, in words, for the account's kind.
pub fn advice(config: &Config, name: &str, probe: &Probe) -> String {
    match probe {
        Probe::Admin => format!(
            "a Match block earlier in sshd's config than sftpctl's admin block, or sftpctl's jail block, reaches {name}: see docs/security.md (\"What sftpctl never changes\")"
        ),
        Probe::Root => format!(
            "one of sftpctl's Match blocks reaches root: is root in group {}?",
            config.jail_group
        ),
        Probe::InJailGroup => format!(
            "{name} is in group {}, which sftpctl jails: take it out (gpasswd -d {name} {}) or set another jail_group",
            config.jail_group, config.jail_group
        ),
    }
}

/// Validation step: after the new files are written and `sshd -t` passed, before sshd is
/// reloaded, the guarded settings of every probed account must be what the host gives it.
pub struct AuthGuard {
    command: String,
    config: Config,
    /// Each probed account, why, and its settings in the host view (taken when the plan was
    /// built, before anything changed).
    before: Vec<(String, Probe, AuthSettings)>,
}

impl AuthGuard {
    /// Takes the host view of every probed account now.
    pub fn capture(config: &Config, command: &str) -> Result<AuthGuard> {
        let view = HostView::write(config)?;
        let mut before = Vec::new();
        for (name, probe) in probe_accounts(config) {
            let settings = view.effective(config, &name)?;
            before.push((name, probe, settings));
        }
        Ok(AuthGuard {
            command: command.to_string(),
            config: config.clone(),
            before,
        })
    }

    fn names(&self) -> String {
        self.before
            .iter()
            .map(|(n, _, _)| n.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl Step for AuthGuard {
    fn describe(&self) -> String {
        format!(
            "check that sshd's authentication settings for {} stay what the host gives them (sshd -T -C user=NAME)",
            self.names()
        )
    }
    fn is_satisfied(&self) -> Result<bool> {
        Ok(false)
    }
    fn apply(&self, _journal: &mut Journal) -> Result<()> {
        for (name, probe, before) in &self.before {
            let after = effective(&self.config.sshd.binary, &self.config.sshd.config, name)?;
            if let Some(change) = changes(before, &after).into_iter().next() {
                // doctor --fix keeps the repairs that stand alone (jails, accounts).
                let undone = if self.command == "init" {
                    "rolled back, nothing changed"
                } else {
                    "the managed files were rolled back"
                };
                bail!(
                    "{} would change sshd's {} for {name} ({} -> {}): {undone}; {}",
                    self.command,
                    change.key,
                    change.before,
                    change.after,
                    advice(&self.config, name, probe)
                );
            }
        }
        Ok(())
    }
    fn phase(&self) -> Phase {
        Phase::Validate
    }
}
