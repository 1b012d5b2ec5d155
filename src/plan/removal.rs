//! The steps of `init --undo`: files sftpctl wrote go (or their kept original comes back),
//! fenced blocks leave the files sftpctl did not own, empty directories it made go, and the
//! admin's keys move to where sshd reads them without sftpctl's drop-in.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::fenced;
use crate::keys::PublicKey;
use crate::plan::fsops::{self, Kind, Meta};
use crate::plan::journal::{Journal, Undo};
use crate::plan::steps::{run_command, MANAGED_MARKER, ORIG_SUFFIX};
use crate::plan::{Phase, Step};

/// `<path>.sftpctl-orig`: the original sftpctl kept the first time it changed `path`.
pub fn orig_path(path: &Path) -> PathBuf {
    let mut orig = path.as_os_str().to_owned();
    orig.push(ORIG_SUFFIX);
    PathBuf::from(orig)
}

fn exists(path: &Path) -> Result<bool> {
    Ok(fsops::inspect(path)?.0 != Kind::Missing)
}

/// Removes `path` keeping its inode under a hidden name until the run commits.
fn remove_revertibly(path: &Path, journal: &mut Journal) -> Result<()> {
    let saved = fsops::save_original(path)?;
    fs_err::remove_file(path)?;
    journal.record(Undo::RestoreFile {
        path: path.to_path_buf(),
        saved,
    });
    Ok(())
}

/// Puts the kept original back over `path` (a rename: same bytes, owner, mode and times as
/// when sftpctl kept it).
fn restore_orig(path: &Path, orig: &Path, journal: &mut Journal) -> Result<()> {
    if fsops::read_regular(orig)?.is_none() {
        bail!("{} disappeared", orig.display());
    }
    if exists(path)? {
        let saved = fsops::save_original(path)?;
        journal.record(Undo::RestoreFile {
            path: path.to_path_buf(),
            saved,
        });
    }
    fs_err::rename(orig, path)?;
    journal.record(Undo::Rename {
        from: orig.to_path_buf(),
        to: path.to_path_buf(),
    });
    if let Some(dir) = path.parent() {
        fsops::sync_dir(dir);
    }
    Ok(())
}

/// A file sftpctl wrote whole: removed, or replaced by its kept original when sftpctl
/// replaced a file that was there before. With `require_marker`, a file that does not start
/// with `# Managed by sftpctl` is not sftpctl's and is left alone.
pub struct RemoveManaged {
    pub path: PathBuf,
    pub require_marker: bool,
    pub topic: Option<&'static str>,
    /// Set by `apply` when it put the original back, so the line printed after it says so
    /// (the original is gone from its kept name by then).
    pub restored: std::cell::Cell<bool>,
}

impl RemoveManaged {
    pub fn new(path: PathBuf, require_marker: bool, topic: Option<&'static str>) -> Self {
        RemoveManaged {
            path,
            require_marker,
            topic,
            restored: std::cell::Cell::new(false),
        }
    }
    fn ours(&self) -> Result<bool> {
        Ok(match fsops::read_regular(&self.path)? {
            None => false,
            Some((bytes, _)) => {
                !self.require_marker || bytes.starts_with(MANAGED_MARKER.as_bytes())
            }
        })
    }
}

impl Step for RemoveManaged {
    fn describe(&self) -> String {
        let orig = orig_path(&self.path);
        if self.restored.get() || matches!(exists(&orig), Ok(true)) {
            format!("restore {} from {}", self.path.display(), orig.display())
        } else {
            format!("remove {}", self.path.display())
        }
    }
    fn is_satisfied(&self) -> Result<bool> {
        Ok(!self.ours()? && !exists(&orig_path(&self.path))?)
    }
    fn apply(&self, journal: &mut Journal) -> Result<()> {
        let orig = orig_path(&self.path);
        if exists(&orig)? {
            restore_orig(&self.path, &orig, journal)?;
            self.restored.set(true);
            return Ok(());
        }
        remove_revertibly(&self.path, journal)
    }
    fn topic(&self) -> Option<&'static str> {
        self.topic
    }
}

/// What undoing the fenced blocks of one file means.
enum Fenced {
    Nothing,
    /// The file is the kept original plus sftpctl's blocks: put the original back.
    RestoreOrig,
    /// The file changed since init (or no original was kept): remove only the blocks.
    Unfence(String),
}

/// A file sftpctl added fenced blocks to (`sshd_config`, PAM, rsyslog.conf): byte-identical
/// to the kept `.sftpctl-orig` when nothing else changed in it since, else the blocks are
/// removed and the admin's own changes stay (the original is then kept to compare).
pub struct RestoreFenced {
    pub path: PathBuf,
    pub topic: Option<&'static str>,
    /// Set by `apply` to what it did, so the line printed after it says so.
    pub done: std::cell::Cell<Option<bool>>,
}

impl RestoreFenced {
    pub fn new(path: PathBuf, topic: &'static str) -> RestoreFenced {
        RestoreFenced {
            path,
            topic: Some(topic),
            done: std::cell::Cell::new(None),
        }
    }
}

impl RestoreFenced {
    fn decide(&self) -> Result<Fenced> {
        let Some((bytes, _)) = fsops::read_regular(&self.path)? else {
            return Ok(Fenced::Nothing);
        };
        let text = String::from_utf8_lossy(&bytes);
        let unfenced = fenced::remove_all(&text);
        let orig = orig_path(&self.path);
        if let Some((orig_bytes, _)) = fsops::read_regular(&orig)? {
            // The blocks are written line by line: compare the original the same way.
            let normalized = fenced::remove_all(&String::from_utf8_lossy(&orig_bytes));
            if normalized == unfenced {
                return Ok(Fenced::RestoreOrig);
            }
        }
        Ok(if fenced::has_any(&text) {
            Fenced::Unfence(unfenced)
        } else {
            Fenced::Nothing
        })
    }
}

impl Step for RestoreFenced {
    fn describe(&self) -> String {
        let orig = orig_path(&self.path);
        let decided = match self.done.get() {
            Some(true) => Ok(Fenced::RestoreOrig),
            _ => self.decide(),
        };
        match decided {
            Ok(Fenced::RestoreOrig) => {
                format!("restore {} from {}", self.path.display(), orig.display())
            }
            Ok(Fenced::Unfence(_)) if matches!(exists(&orig), Ok(true)) => format!(
                "remove sftpctl's blocks from {} (it changed since init: {} is kept for you to compare and remove)",
                self.path.display(),
                orig.display()
            ),
            _ => format!("remove sftpctl's blocks from {}", self.path.display()),
        }
    }
    fn diff(&self) -> Result<Option<String>> {
        let Some((bytes, _)) = fsops::read_regular(&self.path)? else {
            return Ok(None);
        };
        let new = match self.decide()? {
            Fenced::Nothing => return Ok(None),
            Fenced::RestoreOrig => fsops::read_regular(&orig_path(&self.path))?
                .map(|(b, _)| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default(),
            Fenced::Unfence(text) => text,
        };
        let old = String::from_utf8_lossy(&bytes);
        let name = self.path.display().to_string();
        Ok(Some(
            similar::TextDiff::from_lines(old.as_ref(), &new)
                .unified_diff()
                .context_radius(2)
                .header(&name, &name)
                .to_string(),
        ))
    }
    fn is_satisfied(&self) -> Result<bool> {
        Ok(matches!(self.decide()?, Fenced::Nothing))
    }
    fn apply(&self, journal: &mut Journal) -> Result<()> {
        match self.decide()? {
            Fenced::Nothing => Ok(()),
            Fenced::RestoreOrig => {
                restore_orig(&self.path, &orig_path(&self.path), journal)?;
                self.done.set(Some(true));
                Ok(())
            }
            Fenced::Unfence(text) => {
                self.done.set(Some(false));
                let (_, meta) = fsops::read_regular(&self.path)?
                    .with_context(|| format!("{} disappeared", self.path.display()))?;
                let saved = fsops::save_original(&self.path)?;
                journal.record(Undo::RestoreFile {
                    path: self.path.clone(),
                    saved,
                });
                fsops::write_atomic(&self.path, text.as_bytes(), meta)
            }
        }
    }
    fn topic(&self) -> Option<&'static str> {
        self.topic
    }
}

/// A directory sftpctl made goes when it is empty (a non-empty one is kept). It runs after
/// the run's changes are committed: until then the originals of the files removed from it
/// are kept inside it (hidden hard links), so it is not empty before.
pub struct RemoveEmptyDir {
    pub path: PathBuf,
}

impl RemoveEmptyDir {
    fn empty_dir(&self) -> Result<Option<Meta>> {
        match fsops::inspect(&self.path)? {
            (Kind::Dir, Some(md)) => {
                let mut entries = fs_err::read_dir(&self.path)?;
                Ok(entries.next().is_none().then(|| Meta::of(&md)))
            }
            _ => Ok(None),
        }
    }
}

impl Step for RemoveEmptyDir {
    fn describe(&self) -> String {
        format!("remove directory {} if it is empty", self.path.display())
    }
    fn is_satisfied(&self) -> Result<bool> {
        Ok(self.empty_dir()?.is_none())
    }
    fn apply(&self, journal: &mut Journal) -> Result<()> {
        let Some(meta) = self.empty_dir()? else {
            return Ok(());
        };
        fs_err::remove_dir(&self.path)?;
        journal.record(Undo::RecreateDir {
            path: self.path.clone(),
            meta,
        });
        Ok(())
    }
    fn phase(&self) -> Phase {
        Phase::Activate
    }
}

/// Stops and disables the watcher unit while its file is still there (`systemctl disable`
/// needs it to find the links); reverted by enabling it again.
pub struct StopUnit {
    pub unit_file: PathBuf,
    pub argv: Vec<String>,
    pub undo_argv: Vec<String>,
}

impl Step for StopUnit {
    fn describe(&self) -> String {
        format!("stop and disable the watcher ({})", self.argv.join(" "))
    }
    fn is_satisfied(&self) -> Result<bool> {
        Ok(!exists(&self.unit_file)?)
    }
    fn apply(&self, journal: &mut Journal) -> Result<()> {
        run_command(&self.argv)?;
        if !self.undo_argv.is_empty() {
            journal.record(Undo::RunCommand(self.undo_argv.clone()));
        }
        Ok(())
    }
    fn topic(&self) -> Option<&'static str> {
        Some("systemd")
    }
}

/// The admin's keys from sftpctl's authorized_keys dir, added to `~/.ssh/authorized_keys`
/// (the admin's 0600, in its 0700 `.ssh`), which sshd reads without sftpctl's drop-in.
/// Only planned when the home is root-owned and closed to others (the jail root, as init
/// makes it), so `.ssh` cannot be swapped for a link; inside it nothing is followed.
pub struct AdminKeys {
    pub user: String,
    pub uid: u32,
    pub gid: u32,
    pub home: PathBuf,
    pub keys: Vec<PublicKey>,
}

impl AdminKeys {
    fn ssh_dir(&self) -> PathBuf {
        self.home.join(".ssh")
    }
    fn file(&self) -> PathBuf {
        self.ssh_dir().join("authorized_keys")
    }
    fn missing(&self) -> Result<(Vec<u8>, Vec<&PublicKey>)> {
        let existing = fsops::read_regular(&self.file())?
            .map(|(b, _)| b)
            .unwrap_or_default();
        let text = String::from_utf8_lossy(&existing).into_owned();
        let missing = self.keys.iter().filter(|k| !has_key(&text, k)).collect();
        Ok((existing, missing))
    }
}

/// True when some line of an authorized_keys text holds this key (options before it allowed).
pub fn has_key(text: &str, key: &PublicKey) -> bool {
    text.lines().any(|line| {
        let words: Vec<&str> = line.split_whitespace().collect();
        words
            .windows(2)
            .any(|w| w[0] == key.kind && w[1] == key.blob)
    })
}

impl Step for AdminKeys {
    fn describe(&self) -> String {
        format!(
            "add {} key(s) of admin {} to {} ({}, 0600) so sshd still reads them",
            self.keys.len(),
            self.user,
            self.file().display(),
            self.user
        )
    }
    fn is_satisfied(&self) -> Result<bool> {
        Ok(self.missing()?.1.is_empty())
    }
    fn apply(&self, journal: &mut Journal) -> Result<()> {
        let meta_dir = Meta {
            mode: 0o700,
            uid: self.uid,
            gid: self.gid,
        };
        match fsops::inspect(&self.ssh_dir())? {
            (Kind::Missing, _) => {
                fsops::create_dir(&self.ssh_dir(), meta_dir)?;
                journal.record(Undo::RemoveDir(self.ssh_dir()));
            }
            (Kind::Dir, _) => {}
            (kind, _) => bail!(
                "{} is a {kind:?}, not a directory: move it away and run again",
                self.ssh_dir().display()
            ),
        }
        let (mut bytes, missing) = self.missing()?;
        if !bytes.is_empty() && !bytes.ends_with(b"\n") {
            bytes.push(b'\n');
        }
        for key in missing {
            bytes.extend_from_slice(key.line().as_bytes());
            bytes.push(b'\n');
        }
        let file = self.file();
        let existed = exists(&file)?;
        if existed {
            let saved = fsops::save_original(&file)?;
            journal.record(Undo::RestoreFile {
                path: file.clone(),
                saved,
            });
        }
        fsops::write_atomic(
            &file,
            &bytes,
            Meta {
                mode: 0o600,
                uid: self.uid,
                gid: self.gid,
            },
        )?;
        if !existed {
            journal.record(Undo::RemoveFile(file));
        }
        Ok(())
    }
}
