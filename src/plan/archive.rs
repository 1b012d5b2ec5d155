//! Writing a jail's data into a new archive file as root without letting anyone else choose
//! what root writes: the file is created once, exclusively, in a directory only root can
//! write, and tar writes to that descriptor (its stdout), never to the path.

use std::fs::File;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};
use nix::fcntl::{open, openat, OFlag};
use nix::sys::stat::{fstat, fstatat, Mode};
use nix::unistd::{unlinkat, UnlinkatFlags};

use crate::error::usage;

/// Refuses an archive path that someone other than root could redirect: relative, through a
/// symlink or `..`, in a directory (or under one) that is not root's alone, or a name that
/// already exists (a symlink included). Errors are usage errors (exit 2).
pub fn check_target(path: &Path) -> Result<()> {
    let shown = path.display();
    if !path.is_absolute() {
        return Err(usage(format!(
            "--archive {shown} is relative: give an absolute path"
        )));
    }
    let (Some(parent), Some(_)) = (path.parent(), path.file_name()) else {
        return Err(usage(format!("--archive {shown} names no file")));
    };
    let real = std::fs::canonicalize(parent).map_err(|e| {
        usage(format!(
            "the directory of {shown} cannot be used ({e}): give an existing directory"
        ))
    })?;
    if real != parent {
        return Err(usage(format!(
            "the directory of {shown} goes through a symlink or `..` (it is {}): give the real path",
            real.display()
        )));
    }
    for dir in parent.ancestors() {
        let md = std::fs::symlink_metadata(dir)
            .with_context(|| format!("cannot inspect {}", dir.display()))?;
        if !md.is_dir() || md.uid() != 0 || md.mode() & 0o022 != 0 {
            return Err(usage(format!(
                "{} is writable by others than root (owner uid {}, mode {:04o}): someone could swap the archive for a link; put it in a directory only root can write, e.g. /root or /var/backups",
                dir.display(),
                md.uid(),
                md.mode() & 0o7777
            )));
        }
    }
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(anyhow::Error::new(e).context(format!("cannot inspect {shown}"))),
        Ok(md) if md.file_type().is_symlink() => Err(usage(format!(
            "{shown} is a symlink; sftpctl writes an archive only to a new file"
        ))),
        Ok(_) => Err(usage(format!(
            "{shown} already exists; sftpctl does not overwrite an archive"
        ))),
    }
}

/// The archive file, created and still open, with what is needed to remove exactly it.
struct Created {
    dir: OwnedFd,
    name: PathBuf,
    file: File,
    id: (u64, u64),
}

fn create(path: &Path) -> Result<Created> {
    check_target(path)?;
    let parent = path.parent().expect("checked");
    let name = PathBuf::from(path.file_name().expect("checked"));
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let raw = open(parent, flags, Mode::empty())
        .with_context(|| format!("cannot open {}", parent.display()))?;
    // SAFETY: just returned by open(2), owned by nobody else.
    let dir = unsafe { OwnedFd::from_raw_fd(raw) };
    let st = fstat(raw).with_context(|| format!("cannot inspect {}", parent.display()))?;
    if st.st_uid != 0 || st.st_mode & 0o022 != 0 {
        bail!("{} changed: it is no longer root's alone", parent.display());
    }
    // Created exclusively (a name that appeared, a symlink included, fails) and 0600, so the
    // data is never readable by others.
    let raw = openat(
        Some(raw),
        &name,
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o600),
    )
    .with_context(|| format!("cannot create {}", path.display()))?;
    // SAFETY: as above.
    let file = unsafe { File::from_raw_fd(raw) };
    let md = file.metadata().context("cannot inspect the new archive")?;
    Ok(Created {
        dir,
        name,
        file,
        id: (md.dev(), md.ino()),
    })
}

impl Created {
    /// Removes the archive after a failed tar, only if the name still is the file created.
    fn discard(&self) {
        use std::os::fd::AsRawFd;
        let raw = self.dir.as_raw_fd();
        let same = fstatat(
            Some(raw),
            &self.name,
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .is_ok_and(|st| (st.st_dev, st.st_ino) == self.id);
        if same {
            let _ = unlinkat(Some(raw), &self.name, UnlinkatFlags::NoRemoveDir);
        }
    }
}

/// The tar command for `dir`: gzip, sparse files stored sparse, symlinks and hard links
/// stored as links (never followed: GNU tar's default without -h/--hard-dereference), the
/// archive written to standard output.
pub fn tar_command(dir: &Path) -> Result<Command> {
    let parent = dir.parent().context("data dir has no parent")?;
    let name = dir.file_name().context("data dir has no name")?;
    let mut cmd = Command::new("tar");
    cmd.args(["--create", "--gzip", "--sparse", "--file=-", "--directory"])
        .arg(parent)
        .arg("--")
        .arg(name);
    Ok(cmd)
}

/// Archives `dir` into the new file `archive`; on failure the partial file is removed.
pub fn write(dir: &Path, archive: &Path) -> Result<()> {
    let created = create(archive)?;
    let out = created
        .file
        .try_clone()
        .context("cannot hand the archive to tar")?;
    let result = tar_command(dir)?
        .stdin(Stdio::null())
        .stdout(Stdio::from(out))
        .status()
        .context("cannot run tar")
        .and_then(|status| {
            if !status.success() {
                bail!("tar failed ({status}) archiving {}", dir.display());
            }
            created
                .file
                .sync_all()
                .with_context(|| format!("cannot flush {}", archive.display()))
        });
    if result.is_err() {
        created.discard();
    }
    result
}
