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
