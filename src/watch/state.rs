//! What survives a restart besides the outbox: the open sessions (saved on SIGTERM/SIGINT,
//! restored on the next start), the position in a followed file, and the pid file lock that
//! keeps a second watcher off the same state dir.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use super::outbox::sync_dir;
use super::session::Session;
use crate::error::usage;

const SESSIONS_FILE: &str = "sessions.json";
const PID_FILE: &str = "watch.pid";

/// Where `--follow` stopped reading.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FollowPosition {
    pub path: PathBuf,
    pub dev: u64,
    pub ino: u64,
    pub offset: u64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Saved {
    /// Boxed: restoring moves each into the table without a copy.
    pub sessions: Vec<Box<Session>>,
    pub follow: Option<FollowPosition>,
}

/// Writes `saved` atomically (temp file created new without following links, fsync, rename,
/// fsync of the dir), readable by the watcher's user only. The JSON is written as it is made:
/// up to `watch.max_sessions_bytes` of sessions must not be doubled by a copy in memory.
pub fn save(state_dir: &Path, saved: &Saved) -> Result<()> {
    let path = state_dir.join(SESSIONS_FILE);
    let tmp = state_dir.join(format!(".{SESSIONS_FILE}.{}.tmp", std::process::id()));
    let write = || -> Result<()> {
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(&tmp)
            .with_context(|| format!("cannot create {}", tmp.display()))?;
        let mut out = std::io::BufWriter::with_capacity(256 << 10, file);
        serde_json::to_writer(&mut out, saved).context("cannot save the open sessions")?;
        let file = out
            .into_inner()
            .map_err(|e| e.into_error())
            .context("cannot save the open sessions")?;
        file.sync_all()
            .with_context(|| format!("cannot sync {}", tmp.display()))?;
        fs_err::rename(&tmp, &path)?;
        Ok(())
    };
    if let Err(e) = write() {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    sync_dir(state_dir)
}

/// Loads what the last run saved and removes it, so that it is restored once only.
pub fn take(state_dir: &Path) -> Result<Saved> {
    let path = state_dir.join(SESSIONS_FILE);
    let file = match fs_err::File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Saved::default()),
        Err(e) => return Err(e).context("cannot read the saved sessions"),
    };
    // Parsed as it is read: the file is as large as the sessions it holds.
    let parsed = serde_json::from_reader(std::io::BufReader::with_capacity(256 << 10, file));
    let saved = match parsed {
        Ok(s) => s,
        Err(e) => {
            // Keep the file for a person to look at; do not refuse to start over it.
            let aside = state_dir.join(format!("{SESSIONS_FILE}.unreadable"));
            eprintln!(
                "sftpctl watch: saved sessions in {} are unreadable ({e}); moved to {}",
                path.display(),
                aside.display()
            );
            fs_err::rename(&path, &aside)?;
            return Ok(Saved::default());
        }
    };
    fs_err::remove_file(&path)?;
    sync_dir(state_dir)?;
    Ok(saved)
}

/// The pid file, locked for as long as the watcher runs.
pub struct PidLock {
    file: Flock<File>,
}

impl PidLock {
    /// Refuses when another watcher holds the lock on this state dir.
    pub fn acquire(state_dir: &Path) -> Result<PidLock> {
        let path = state_dir.join(PID_FILE);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .mode(0o644)
            .open(&path)
            .with_context(|| format!("cannot open the pid file {}", path.display()))?;
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(file) => Ok(PidLock { file }),
            Err((mut file, _)) => {
                let mut pid = String::new();
                let _ = file.read_to_string(&mut pid);
                Err(usage(format!(
                    "another watcher (pid {}) is running with state dir {}: stop it first, or give this one another watch.state_dir",
                    pid.trim(),
                    state_dir.display()
                )))
            }
        }
    }

    /// Writes this process's pid (again after daemonizing).
    pub fn write_pid(&mut self) -> Result<()> {
        let pid = std::process::id();
        self.file.set_len(0).context("cannot write the pid file")?;
        self.file.rewind().context("cannot write the pid file")?;
        writeln!(*self.file, "{pid}")
            .and_then(|()| self.file.sync_all())
            .context("cannot write the pid file")
    }
}
