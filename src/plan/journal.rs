//! What a run changed, and how to put it back.

use std::path::PathBuf;
use std::process::Command;

use crate::plan::fsops::{self, Meta};

/// One change that can be undone.
#[derive(Debug)]
pub enum Undo {
    /// A file that did not exist before: remove it.
    RemoveFile(PathBuf),
    /// A file that existed: `saved` is a hard link to its original inode, renamed back over
    /// `path` on revert (same inode, bytes, mode, owner and times) and removed on commit.
    RestoreFile { path: PathBuf, saved: PathBuf },
    /// A directory this run created: remove it (only if empty).
    RemoveDir(PathBuf),
    /// A directory this run removed (it was empty): create it again with its old owner and mode.
    RecreateDir { path: PathBuf, meta: Meta },
    /// A file this run renamed from `from` to `to`: rename it back.
    Rename { from: PathBuf, to: PathBuf },
    /// A directory whose owner or mode this run changed.
    RestoreMeta { path: PathBuf, meta: Meta },
    /// A regular file whose owner or mode this run changed.
    RestoreFileMeta { path: PathBuf, meta: Meta },
    /// An account or group this run created, removed with this command.
    RunCommand(Vec<String>),
}

/// The changes of one run, newest last.
#[derive(Debug, Default)]
pub struct Journal {
    undo: Vec<Undo>,
}

impl Journal {
    pub fn record(&mut self, undo: Undo) {
        self.undo.push(undo);
    }

    /// Keeps the changes: nothing will be reverted; the saved originals go.
    pub fn commit(&mut self) {
        for undo in self.undo.drain(..) {
            if let Undo::RestoreFile { saved, .. } = undo {
                let _ = std::fs::remove_file(saved);
            }
        }
    }

    /// Undoes every recorded change, newest first. Returns what could not be undone.
    pub fn revert(mut self) -> Vec<String> {
        let mut problems = Vec::new();
        while let Some(undo) = self.undo.pop() {
            if let Err(e) = undo_one(&undo) {
                problems.push(format!("{e:#}"));
            }
        }
        problems
    }
}

fn undo_one(undo: &Undo) -> anyhow::Result<()> {
    match undo {
        Undo::RemoveFile(path) => fs_err::remove_file(path)?,
        Undo::RestoreFile { path, saved } => {
            fs_err::rename(saved, path)?;
            if let Some(dir) = path.parent() {
                fsops::sync_dir(dir);
            }
        }
        Undo::RemoveDir(path) => fs_err::remove_dir(path)?,
        Undo::RecreateDir { path, meta } => fsops::create_dir(path, *meta)?,
        Undo::Rename { from, to } => fs_err::rename(to, from)?,
        Undo::RestoreMeta { path, meta } => fsops::set_dir_meta(path, *meta)?,
        Undo::RestoreFileMeta { path, meta } => fsops::set_file_meta(path, *meta)?,
        Undo::RunCommand(argv) => {
            crate::plan::steps::forget_ids(); // the undo removes an account or a group
            let status = Command::new(&argv[0]).args(&argv[1..]).status()?;
            anyhow::ensure!(status.success(), "{} exited with {status}", argv.join(" "));
        }
    }
    Ok(())
}
