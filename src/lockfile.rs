//! Jobs and deliveries may run twice at once (the timer's run, the watcher's, an admin's command):
//! each job that reads and writes its state takes its own lock file, held until dropped
//! (the kernel drops it when the process dies).

use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use anyhow::{Context, Result};

/// An exclusive flock on `path` (created 0600, never through a symlink); waits for it.
pub fn exclusive(path: &Path) -> Result<nix::fcntl::Flock<std::fs::File>> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| anyhow::anyhow!("cannot lock {}: {e}", path.display()))
}
