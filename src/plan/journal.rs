//! What a run changed, and how to put it back.

use std::path::PathBuf;
use std::process::Command;

use crate::plan::fsops::{self, Meta};

/// One change that can be undone.
#[derive(Debug)]
pub enum Undo {
    /// A file that did not exist before: remove it.
    RemoveFile(PathBuf),
    /// A file that existed: write back its bytes, mode and owner.
    RestoreFile {
        path: PathBuf,
        bytes: Vec<u8>,
        meta: Meta,
    },
    /// A directory this run created: remove it (only if empty).
    RemoveDir(PathBuf),
    /// A directory whose owner or mode this run changed.
    RestoreMeta { path: PathBuf, meta: Meta },
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

    /// Keeps the changes: nothing will be reverted.
    pub fn commit(&mut self) {
        self.undo.clear();
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
        Undo::RestoreFile { path, bytes, meta } => fsops::write_atomic(path, bytes, *meta)?,
        Undo::RemoveDir(path) => fs_err::remove_dir(path)?,
        Undo::RestoreMeta { path, meta } => fsops::set_dir_meta(path, *meta)?,
        Undo::RunCommand(argv) => {
            let status = Command::new(&argv[0]).args(&argv[1..]).status()?;
            anyhow::ensure!(status.success(), "{} exited with {status}", argv.join(" "));
        }
    }
    Ok(())
}
