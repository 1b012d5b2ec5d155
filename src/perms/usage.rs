//! How much one client's data tree holds (quota, docs/policy.md): bytes of regular files and
//! the number of entries, counted with the same no-follow walk as shared write access.
//!
//! The walk ([`fsx::walk`], read-only) opens every directory beneath the data dir without
//! following a symlink or crossing a mount; each directory's entries are `fstatat`ed relative
//! to its descriptor with `AT_SYMLINK_NOFOLLOW`, one name at a time. A symlink is one entry of
//! no bytes whatever it points at; an inode with several names in the tree counts once.

use std::collections::HashSet;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

use anyhow::{bail, Context, Result};
use nix::errno::Errno;
use nix::fcntl::AtFlags;
use nix::sys::stat::fstatat;

use super::fsx;
use super::jails::{self, Ids, UserCheck};
use super::policy::Kind;
use crate::config::Config;

/// What one data tree holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Sum of `st_size` of the regular files (each inode once).
    pub bytes: u64,
    /// Entries below the data dir: files, directories, symlinks and others (each inode once).
    pub files: u64,
    /// Entries that could not be looked at (vanished during the walk is not counted).
    pub errors: u64,
}

/// The usage of `<root>/NAME/<data_dir>`. Fails when it is not a jail sftpctl manages (the
/// same rules as [`super::scan`]: root-owned jail, data dir owned by the jailed account).
pub fn usage(config: &Config, name: &str) -> Result<Usage> {
    usage_with(config, name, UserCheck::Accounts)
}

#[doc(hidden)]
pub fn usage_with(config: &Config, name: &str, check: UserCheck) -> Result<Usage> {
    let ids = Ids::load(config, check)?;
    let root = fsx::open_dir_path(&config.root)
        .with_context(|| format!("cannot open the jail root {}", config.root.display()))?;
    let (jail, data, _) = match jails::open_jail(root.as_raw_fd(), name.as_ref(), config, &ids) {
        Ok(Some(j)) => j,
        Ok(None) => bail!(
            "{} is not a jail with a data dir",
            config.root.join(name).display()
        ),
        Err(why) => bail!("jail {} refused: {why}", config.root.join(name).display()),
    };
    Ok(count(&data, &jail.owners))
}

fn count(data: &OwnedFd, owners: &super::policy::Owners) -> Usage {
    let mut usage = Usage::default();
    let mut seen: HashSet<(u64, u64)> = HashSet::new();
    let dev = owners.dev;
    fsx::walk(
        data.as_raw_fd(),
        Path::new(""),
        owners,
        false,
        &mut |dir, _, _| count_dir(dir, dev, &mut seen, &mut usage),
        &mut |_, _| {},
    );
    usage
}

/// Adds the entries of one directory (not their subdirectories' contents: the walk brings
/// those as directories of their own).
fn count_dir(dir: &OwnedFd, dev: u64, seen: &mut HashSet<(u64, u64)>, usage: &mut Usage) {
    let entries = match fsx::list_dir(dir) {
        Ok(e) => e,
        Err(_) => {
            usage.errors += 1;
            return;
        }
    };
    for (name, _) in entries {
        let st = match fstatat(
            Some(dir.as_raw_fd()),
            name.as_os_str(),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        ) {
            Ok(st) => st,
            Err(Errno::ENOENT) => continue,
            Err(_) => {
                usage.errors += 1;
                continue;
            }
        };
        // A mount point: what is mounted there is not this tree's (the walk does not enter it).
        if st.st_dev != dev {
            continue;
        }
        if st.st_nlink > 1
            && Kind::of_mode(st.st_mode) != Kind::Dir
            && !seen.insert((st.st_dev, st.st_ino))
        {
            continue;
        }
        usage.files += 1;
        if Kind::of_mode(st.st_mode) == Kind::File {
            usage.bytes += u64::try_from(st.st_size).unwrap_or(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn counts_without_following_links_and_each_inode_once() {
        let base = std::env::temp_dir().join(format!("sftpctl-usage-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let data = base.join("data");
        let outside = base.join("outside");
        std::fs::create_dir_all(data.join("a/b")).unwrap();
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(data.join("f"), vec![0u8; 1000]).unwrap();
        std::fs::write(data.join("a/b/g"), vec![0u8; 24]).unwrap();
        std::fs::write(outside.join("big"), vec![0u8; 100_000]).unwrap();
        std::os::unix::fs::symlink(outside.join("big"), data.join("link")).unwrap();
        std::os::unix::fs::symlink(&outside, data.join("dirlink")).unwrap();
        std::fs::hard_link(data.join("f"), data.join("a/f-again")).unwrap();
        let md = std::fs::metadata(&data).unwrap();
        let owners = super::super::policy::Owners {
            user: md.uid(),
            admin: None,
            group: md.gid(),
            dev: md.dev(),
        };
        let fd = fsx::open_dir_path(&data).unwrap();
        let u = count(&fd, &owners);
        // f (+ its second name once), a/b/g; a, a/b; link, dirlink.
        assert_eq!(
            u,
            Usage {
                bytes: 1024,
                files: 6,
                errors: 0
            }
        );
        std::fs::remove_dir_all(&base).unwrap();
    }
}

#[cfg(test)]
mod bench {
    use super::*;
    use std::os::unix::fs::MetadataExt;
    use std::path::PathBuf;

    /// `cargo nextest run --lib --run-ignored only usage::bench`: the cost of one count.
    #[test]
    #[ignore]
    fn count_100k_files() {
        let base = PathBuf::from(format!("/srv/sftpctl-usage-bench-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        for d in 0..100 {
            let dir = base.join(format!("d{d}"));
            std::fs::create_dir_all(&dir).unwrap();
            for f in 0..1000 {
                std::fs::write(dir.join(format!("f{f}")), b"0123456789").unwrap();
            }
        }
        let md = std::fs::metadata(&base).unwrap();
        let owners = super::super::policy::Owners {
            user: md.uid(),
            admin: None,
            group: md.gid(),
            dev: md.dev(),
        };
        let fd = fsx::open_dir_path(&base).unwrap();
        for _ in 0..3 {
            let t = std::time::Instant::now();
            let u = count(&fd, &owners);
            eprintln!("100,100 entries: {:?} ({u:?})", t.elapsed());
            assert_eq!(u.files, 100_100);
        }
        std::fs::remove_dir_all(&base).unwrap();
    }
}
