//! Which data trees exist and who owns them.
//!
//! A jail `<root>/NAME` counts when `NAME` is a real directory owned by root (sshd's rule), its
//! `<data_dir>` is a real directory, `NAME` is a jailed account (member of `jail_group`) and the
//! data dir's owner is that account's uid (not root). The jail's user is that uid; the admin is
//! `admin` from the config when that account exists.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::Path;

use anyhow::{Context, Result};
use nix::sys::stat::FileStat;

use super::fsx;
use super::policy::{Kind, Owners};
use crate::accounts;
use crate::config::Config;
use crate::plan::steps::gid_of;

/// How the jail's user is established.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UserCheck {
    /// The jail's name must be a member of `jail_group` whose uid owns the data dir.
    #[default]
    Accounts,
    /// The data dir's (non-root) owner is the jail's user: for benchmarks with thousands of
    /// jails and no accounts. Never used by sftpctl itself.
    DataDirOwner,
}

/// The ids that do not depend on the jail.
#[derive(Debug, Clone)]
pub struct Ids {
    pub group: u32,
    pub admin: Option<u32>,
    pub check: UserCheck,
    jailed: HashSet<String>,
}

impl Ids {
    pub fn load(config: &Config, check: UserCheck) -> Result<Ids> {
        let group = gid_of(&config.group).with_context(|| {
            format!(
                "group {} does not exist: run sftpctl init first",
                config.group
            )
        })?;
        let admin = config
            .admin
            .as_deref()
            .and_then(users::get_user_by_name)
            .map(|u| u.uid());
        let jailed = match check {
            UserCheck::Accounts => accounts::jailed_names(config),
            UserCheck::DataDirOwner => HashSet::new(),
        };
        Ok(Ids {
            group,
            admin,
            check,
            jailed,
        })
    }

    /// Re-reads the jailed accounts (a new jail appeared).
    pub fn refresh(&mut self, config: &Config) {
        if self.check == UserCheck::Accounts {
            self.jailed = accounts::jailed_names(config);
            if let Some(admin) = config.admin.as_deref() {
                self.admin = users::get_user_by_name(admin).map(|u| u.uid());
            }
        }
    }

    fn user_uid(&self, name: &str, data_owner: u32) -> Result<u32, String> {
        if data_owner == 0 {
            return Err("its data dir is owned by root".into());
        }
        match self.check {
            UserCheck::DataDirOwner => Ok(data_owner),
            UserCheck::Accounts => {
                if !self.jailed.contains(name) {
                    return Err(format!("{name} is not a jailed account"));
                }
                let uid = users::get_user_by_name(name)
                    .map(|u| u.uid())
                    .ok_or_else(|| format!("account {name} does not exist"))?;
                if uid != data_owner {
                    return Err(format!(
                        "its data dir is owned by uid {data_owner}, not by {name} (uid {uid})"
                    ));
                }
                Ok(uid)
            }
        }
    }
}

/// One registered data tree.
#[derive(Debug, Clone)]
pub struct Jail {
    pub name: String,
    pub owners: Owners,
    pub data_ino: u64,
}

/// Opens `<root>/NAME/<data_dir>` without following symlinks and checks the jail rules.
/// `Ok(None)`: not a jail at all (a file, `dev`); `Err`: looks like a jail but is refused.
pub fn open_jail(
    root: RawFd,
    name: &OsStr,
    config: &Config,
    ids: &Ids,
) -> Result<Option<(Jail, OwnedFd, FileStat)>, String> {
    let Some(name_str) = name.to_str() else {
        return Ok(None);
    };
    if name_str == "dev" || name_str.starts_with('.') {
        return Ok(None);
    }
    let jail_fd = match fsx::open_dir_beneath_mount_ok(root, Path::new(name)) {
        Ok(fd) => fd,
        // A symlink, a plain file, or gone: not a jail.
        Err(_) => return Ok(None),
    };
    let jst = fsx::stat_fd(&jail_fd).map_err(|e| format!("fstat: {e}"))?;
    if jst.st_uid != 0 {
        return Err("the jail dir is not owned by root".into());
    }
    let data_fd =
        match fsx::open_dir_beneath_mount_ok(jail_fd.as_raw_fd(), Path::new(&config.data_dir)) {
            Ok(fd) => fd,
            Err(nix::errno::Errno::ENOENT) => return Ok(None),
            Err(e) => return Err(format!("cannot open its {}: {e}", config.data_dir)),
        };
    let st = fsx::stat_fd(&data_fd).map_err(|e| format!("fstat: {e}"))?;
    if Kind::of_mode(st.st_mode) != Kind::Dir {
        return Err(format!("{} is not a directory", config.data_dir));
    }
    let user = ids.user_uid(name_str, st.st_uid)?;
    let jail = Jail {
        name: name_str.to_string(),
        owners: Owners {
            user,
            admin: ids.admin,
            group: ids.group,
            dev: st.st_dev,
        },
        data_ino: st.st_ino,
    };
    Ok(Some((jail, data_fd, st)))
}

/// Re-opens a registered jail's data dir, checking it is still the same directory.
pub fn reopen_data(root: RawFd, jail: &Jail, config: &Config) -> Option<OwnedFd> {
    let rel = Path::new(&jail.name).join(&config.data_dir);
    let fd = fsx::open_dir_beneath_mount_ok(root, &rel).ok()?;
    let st = fsx::stat_fd(&fd).ok()?;
    (st.st_ino == jail.data_ino && st.st_dev == jail.owners.dev && st.st_uid == jail.owners.user)
        .then_some(fd)
}

/// The names directly under the jail root.
pub fn list_root(root: &OwnedFd) -> Result<Vec<std::ffi::OsString>> {
    Ok(fsx::list_dir(root)
        .context("cannot list the jail root")?
        .into_iter()
        .filter(|(_, k)| *k != fsx::EntryKind::Symlink)
        .map(|(n, _)| n)
        .collect())
}
