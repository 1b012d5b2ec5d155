//! File-system primitives that run as root: atomic writes, no symlink following.
//!
//! Owner and mode are always set through an opened handle (`fchown`/`fchmod` on a descriptor
//! opened with `O_NOFOLLOW`), so a symlink swapped in by someone else is never followed.

use std::fs::{File, OpenOptions, Permissions};
use std::io::Write;
use std::os::unix::fs::{fchown, DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use nix::libc;

/// Mode bits and owner of a file or directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

impl Meta {
    pub fn root(mode: u32) -> Meta {
        Meta {
            mode,
            uid: 0,
            gid: 0,
        }
    }

    /// Owned by the user and group this process runs as.
    pub fn current_user(mode: u32) -> Meta {
        Meta {
            mode,
            uid: nix::unistd::geteuid().as_raw(),
            gid: nix::unistd::getegid().as_raw(),
        }
    }

    pub fn of(md: &std::fs::Metadata) -> Meta {
        Meta {
            mode: md.mode() & 0o7777,
            uid: md.uid(),
            gid: md.gid(),
        }
    }
}

/// What is at a path, without following a final symlink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Missing,
    File,
    Dir,
    Symlink,
    Socket,
    Other,
}

/// `lstat`: the kind and metadata at `path`.
pub fn inspect(path: &Path) -> Result<(Kind, Option<std::fs::Metadata>)> {
    match std::fs::symlink_metadata(path) {
        Ok(md) => {
            let ft = md.file_type();
            let kind = if ft.is_symlink() {
                Kind::Symlink
            } else if ft.is_dir() {
                Kind::Dir
            } else if ft.is_file() {
                Kind::File
            } else if std::os::unix::fs::FileTypeExt::is_socket(&ft) {
                Kind::Socket
            } else {
                Kind::Other
            };
            Ok((kind, Some(md)))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok((Kind::Missing, None)),
        Err(e) => Err(e).with_context(|| format!("cannot inspect {}", path.display())),
    }
}

/// The bytes and metadata of a regular file, `None` if it does not exist. A symlink or any
/// other kind of file is an error: sftpctl never writes through links.
pub fn read_regular(path: &Path) -> Result<Option<(Vec<u8>, Meta)>> {
    match inspect(path)? {
        (Kind::Missing, _) => Ok(None),
        (Kind::File, Some(md)) => {
            let bytes = fs_err::read(path)?;
            Ok(Some((bytes, Meta::of(&md))))
        }
        (Kind::Symlink, _) => bail!(
            "{} is a symlink; sftpctl does not write through symlinks: replace it by a regular file",
            path.display()
        ),
        _ => bail!("{} exists but is not a regular file", path.display()),
    }
}

/// `.NAME.sftpctl-<tag>-<pid>` beside `path` (cleared if a crashed run left it), and the
/// directory both are in. Hidden names never match the `*.conf` globs of include dirs.
fn hidden_sibling<'a>(path: &'a Path, tag: &str) -> Result<(&'a Path, PathBuf)> {
    let dir = path
        .parent()
        .with_context(|| format!("{} has no parent directory", path.display()))?;
    let name = path
        .file_name()
        .with_context(|| format!("{} has no file name", path.display()))?;
    let sibling = dir.join(format!(
        ".{}.sftpctl-{tag}-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let _ = std::fs::remove_file(&sibling);
    Ok((dir, sibling))
}

/// Replaces `path` atomically: a temporary file in the same directory, created exclusively
/// and never through a link, gets owner, mode and bytes, is synced, then renamed over.
pub fn write_atomic(path: &Path, bytes: &[u8], meta: Meta) -> Result<()> {
    let (dir, tmp) = hidden_sibling(path, "tmp")?;
    let write = || -> Result<()> {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp)
            .with_context(|| format!("cannot create {}", tmp.display()))?;
        fchown(&file, Some(meta.uid), Some(meta.gid))
            .with_context(|| format!("cannot set the owner of {}", tmp.display()))?;
        file.set_permissions(Permissions::from_mode(meta.mode))
            .with_context(|| format!("cannot set the mode of {}", tmp.display()))?;
        file.write_all(bytes)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        file.sync_all()
            .with_context(|| format!("cannot sync {}", tmp.display()))?;
        fs_err::rename(&tmp, path)?;
        Ok(())
    };
    if let Err(e) = write() {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    sync_dir(dir);
    Ok(())
}

/// Keeps the current inode of `path` reachable under a hidden name in the same directory,
/// so that a revert can rename it back exactly as it was.
pub fn save_original(path: &Path) -> Result<PathBuf> {
    let (_, saved) = hidden_sibling(path, "undo")?;
    std::fs::hard_link(path, &saved).with_context(|| {
        format!(
            "cannot keep the original of {} for a revert",
            path.display()
        )
    })?;
    Ok(saved)
}

/// Best effort: makes a rename durable.
pub fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Opens a directory without following a symlink at its last component.
fn open_dir_nofollow(path: &Path) -> Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW)
        .open(path)
        .with_context(|| {
            format!(
                "cannot open directory {} (is it a symlink?)",
                path.display()
            )
        })
}

/// Sets owner and mode of a directory through a no-follow handle.
pub fn set_dir_meta(path: &Path, meta: Meta) -> Result<()> {
    let dir = open_dir_nofollow(path)?;
    fchown(&dir, Some(meta.uid), Some(meta.gid))
        .with_context(|| format!("cannot set the owner of {}", path.display()))?;
    // chmod after chown: chown clears the setgid bit.
    dir.set_permissions(Permissions::from_mode(meta.mode))
        .with_context(|| format!("cannot set the mode of {}", path.display()))?;
    Ok(())
}

/// Sets owner and mode of a regular file through a no-follow handle.
pub fn set_file_meta(path: &Path, meta: Meta) -> Result<()> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .with_context(|| format!("cannot open {} (is it a symlink?)", path.display()))?;
    if !file.metadata()?.is_file() {
        bail!("{} is not a regular file", path.display());
    }
    fchown(&file, Some(meta.uid), Some(meta.gid))
        .with_context(|| format!("cannot set the owner of {}", path.display()))?;
    file.set_permissions(Permissions::from_mode(meta.mode))
        .with_context(|| format!("cannot set the mode of {}", path.display()))?;
    Ok(())
}

/// Creates one directory (its parent must exist) with exactly `meta`.
pub fn create_dir(path: &Path, meta: Meta) -> Result<()> {
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(path)
        .with_context(|| format!("cannot create directory {}", path.display()))?;
    set_dir_meta(path, meta)
}

/// `dev` and inode of `path` without following a symlink.
pub fn inode(path: &Path) -> Result<Option<(u64, u64)>> {
    Ok(inspect(path)?.1.map(|md| (md.dev(), md.ino())))
}

/// Makes `link` a hard link to `target`, atomically replacing whatever `link` was:
/// link under a temporary name in the same directory, then rename over.
pub fn replace_hard_link(target: &Path, link: &Path) -> Result<()> {
    let (_, tmp) = hidden_sibling(link, "tmp")?;
    // linkat without AT_SYMLINK_FOLLOW: a symlink at `target` would be linked, not followed.
    if let Err(e) = std::fs::hard_link(target, &tmp) {
        if e.raw_os_error() == Some(libc::EXDEV) {
            bail!(
                "cannot hard-link {} to {}: they are on different filesystems; the jail root and \
                 rsyslog's socket dir must be on one filesystem",
                link.display(),
                target.display()
            );
        }
        return Err(e).with_context(|| {
            format!("cannot hard-link {} to {}", tmp.display(), target.display())
        });
    }
    if let Err(e) = std::fs::rename(&tmp, link) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e)
            .with_context(|| format!("cannot rename {} over {}", tmp.display(), link.display()));
    }
    Ok(())
}
