//! The jail layout and its invariants.
//!
//! ```text
//! <root>/                 root:root 0755   (every component above it root-owned, not g/o-writable)
//! <root>/dev/log          rsyslog's listen socket
//! <root>/NAME/            root:root 0755   ChrootDirectory: sshd requires root ownership
//! <root>/NAME/<data_dir>  NAME:<group> 2770  the only writable place; setgid keeps the group;
//!                                          no access for other accounts (issue 9)
//! <root>/NAME/dev/        root:root 0755
//! <root>/NAME/dev/log     hard link to <root>/dev/log (same filesystem)
//! ```

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::config::Config;
use crate::error::usage;

/// Mode of the data dir: group-writable, setgid so new files keep the shared group, closed to
/// every other account. sshd never checks it (the chroot is the jail dir above it).
pub const DATA_MODE: u32 = 0o2770;

/// The paths of one user's jail.
#[derive(Debug, Clone)]
pub struct Jail {
    pub dir: PathBuf,
    pub data: PathBuf,
    pub dev: PathBuf,
    pub log: PathBuf,
}

impl Jail {
    pub fn new(config: &Config, name: &str) -> Jail {
        let dir = config.root.join(name);
        Jail {
            data: dir.join(&config.data_dir),
            dev: dir.join("dev"),
            log: dir.join("dev").join("log"),
            dir,
        }
    }
}

/// sshd's rule for a ChrootDirectory component and for the directories above an
/// AuthorizedKeysFile (StrictModes): owned by root, not writable by group or others.
pub fn root_owned_not_writable(uid: u32, mode: u32) -> bool {
    uid == 0 && mode & 0o022 == 0
}

/// sshd's rule for every component of a ChrootDirectory: owned by root, not writable by
/// group or others. Checks every existing ancestor of `root` (symlinks followed, as sshd
/// does); the components that do not exist yet will be created root-owned 0755.
/// Returns the missing ancestors, outermost first.
pub fn check_root_chain(root: &Path) -> Result<Vec<PathBuf>> {
    let mut missing = Vec::new();
    for dir in root.ancestors().skip(1) {
        match std::fs::metadata(dir) {
            Ok(md) => {
                if !md.is_dir() {
                    return Err(usage(format!(
                        "{} is not a directory, so {} cannot hold jails",
                        dir.display(),
                        root.display()
                    )));
                }
                if !root_owned_not_writable(md.uid(), md.mode()) {
                    return Err(usage(format!(
                        "{} is owned by uid {} with mode {:04o}: sshd refuses a chroot below a directory that is not root-owned or is group/world-writable; choose another root or run chown root {} && chmod go-w {}",
                        dir.display(),
                        md.uid(),
                        md.mode() & 0o7777,
                        dir.display(),
                        dir.display()
                    )));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => missing.push(dir.to_path_buf()),
            Err(e) => return Err(e).with_context(|| format!("cannot inspect {}", dir.display())),
        }
    }
    missing.reverse();
    Ok(missing)
}
