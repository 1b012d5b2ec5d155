//! Which accounts sftpctl manages: members of `jail_group` whose primary group is `group`.

use std::collections::HashSet;

use crate::config::Config;
use crate::plan::steps::gid_of;
use users::os::unix::GroupExt;

/// The state of an account name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Account {
    Missing,
    /// A jailed SFTP account made by sftpctl.
    Managed,
    /// Some other account.
    Foreign,
}

/// Names listed as members of `jail_group` (one read of the group database).
pub fn jailed_names(config: &Config) -> HashSet<String> {
    users::get_group_by_name(&config.jail_group)
        .map(|g| {
            g.members()
                .iter()
                .map(|m| m.to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

pub fn account(config: &Config, name: &str) -> Account {
    let Some(user) = users::get_user_by_name(name) else {
        return Account::Missing;
    };
    let primary_ok = gid_of(&config.group) == Some(user.primary_group_id());
    if primary_ok && jailed_names(config).contains(name) {
        Account::Managed
    } else {
        Account::Foreign
    }
}

/// True when `name` exists and belongs to `jail_group` in any way.
pub fn is_jailed(config: &Config, name: &str) -> bool {
    let Some(user) = users::get_user_by_name(name) else {
        return false;
    };
    let Some(jail_gid) = gid_of(&config.jail_group) else {
        return false;
    };
    user.primary_group_id() == jail_gid || jailed_names(config).contains(name)
}

/// One line of the shadow file, the fields sftpctl looks at.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Shadow {
    /// The password field: `*` key-only, `!…` locked, else a hash.
    pub password: String,
    /// Account expiry in days since 1970; `Some(1)` (or any past day) = expired.
    pub expire: Option<u64>,
}

impl Shadow {
    pub fn locked(&self) -> bool {
        self.password.starts_with('!')
    }

    pub fn has_password(&self) -> bool {
        let p = self.password.trim_start_matches('!');
        !p.is_empty() && p != "*"
    }
}

/// Parses shadow text into name → fields.
pub fn parse_shadow(text: &str) -> std::collections::HashMap<String, Shadow> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            if f.len() < 8 {
                return None;
            }
            Some((
                f[0].to_string(),
                Shadow {
                    password: f[1].to_string(),
                    expire: f[7].parse().ok(),
                },
            ))
        })
        .collect()
}

/// Reads the shadow file once (root only).
pub fn read_shadow(config: &Config) -> anyhow::Result<std::collections::HashMap<String, Shadow>> {
    use anyhow::Context;
    let text = std::fs::read_to_string(&config.shadow_file)
        .with_context(|| format!("cannot read {} (run as root)", config.shadow_file.display()))?;
    Ok(parse_shadow(&text))
}

/// The shadow fields of one account.
pub fn shadow_of(config: &Config, name: &str) -> anyhow::Result<Option<Shadow>> {
    Ok(read_shadow(config)?.remove(name))
}

/// Every managed account name, sorted.
pub fn managed_names(config: &Config) -> Vec<String> {
    let Some(gid) = gid_of(&config.group) else {
        return vec![];
    };
    let mut names: Vec<String> = jailed_names(config)
        .into_iter()
        .filter(|n| users::get_user_by_name(n).is_some_and(|u| u.primary_group_id() == gid))
        .collect();
    names.sort();
    names
}

/// Refuses names that are not managed jailed accounts (exit code 2).
pub fn require_managed(config: &Config, name: &str) -> anyhow::Result<()> {
    crate::names::check_user_name("user name", name)
        .map_err(|e| crate::error::usage(format!("{e:#}")))?;
    match account(config, name) {
        Account::Managed => Ok(()),
        Account::Missing => Err(missing(config, name)),
        Account::Foreign if config.admin.as_deref() == Some(name) => {
            Err(crate::error::usage(format!(
                "{name} is sftpctl's admin, not a jailed user: `sftpctl key add|remove|list {name}` manage its keys; this command is for jailed users (`sftpctl list-users` shows them)"
            )))
        }
        Account::Foreign => Err(foreign(name)),
    }
}

/// Whose keys `sftpctl key` manages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyOwner {
    Jailed,
    /// The configured admin (an existing account that is not jailed).
    Admin,
}

/// Refuses names whose keys sftpctl does not manage (exit code 2): only jailed users and the
/// configured admin have a key file in `sshd.authorized_keys_dir`.
pub fn require_key_owner(config: &Config, name: &str) -> anyhow::Result<KeyOwner> {
    crate::names::check_user_name("user name", name)
        .map_err(|e| crate::error::usage(format!("{e:#}")))?;
    let is_admin = config.admin.as_deref() == Some(name);
    match account(config, name) {
        Account::Managed => Ok(KeyOwner::Jailed),
        Account::Foreign if is_admin && !is_jailed(config, name) => Ok(KeyOwner::Admin),
        Account::Missing => Err(missing(config, name)),
        Account::Foreign => Err(foreign(name)),
    }
}

fn missing(config: &Config, name: &str) -> anyhow::Error {
    if config.admin.as_deref() == Some(name) {
        return crate::error::usage(format!(
            "the admin {name} has no account yet: `sftpctl init` creates it"
        ));
    }
    crate::error::usage(format!(
        "there is no account {name}: `sftpctl add-user {name}` creates one; `sftpctl list-users` shows the managed ones"
    ))
}

fn foreign(name: &str) -> anyhow::Error {
    crate::error::usage(format!(
        "{name} is not an account sftpctl manages (neither a jailed user nor the admin), and sftpctl leaves other accounts alone: `sftpctl add-user` creates jailed users, `sftpctl init --admin {name}` makes {name} the admin"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shadow_lines() {
        let s = parse_shadow(
            "alice:*:20000:0:99999:7:::\nbob:!$y$j9T$abc:20000:0:99999:7::1:\nbad line\n",
        );
        assert!(!s["alice"].locked() && !s["alice"].has_password());
        assert!(s["bob"].locked() && s["bob"].has_password());
        assert_eq!(s["bob"].expire, Some(1));
        assert_eq!(s.len(), 2);
    }
}
