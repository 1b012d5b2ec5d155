//! What retention remembers between runs, in `state_dir/policy/retention/` (root 0700):
//! `last-run` (the day the job last ran) and `announced/NAME`, one line per file version
//! that a warning listed: `DAY INO MTIME_SEC MTIME_NSEC`. A version is listed once; the file
//! keeps only what is still in the warning window, so it never outgrows the tree.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, Result};

use super::walk::Key;
use crate::config::Config;
use crate::plan::fsops::{self, Meta};

fn dir(config: &Config) -> PathBuf {
    config.watch.state_dir.join("policy").join("retention")
}

fn announced_path(config: &Config, name: &str) -> PathBuf {
    dir(config).join("announced").join(name)
}

/// Day (days since 1970) each listed file version was first announced.
pub type Announced = BTreeMap<Key, i64>;

pub fn load_announced(config: &Config, name: &str) -> Result<Announced> {
    let path = announced_path(config, name);
    let Some((bytes, _)) = fsops::read_regular(&path)? else {
        return Ok(Announced::new());
    };
    // A line that does not parse is dropped: at worst that file is announced again.
    Ok(String::from_utf8_lossy(&bytes)
        .lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split(' ').collect();
            match f[..] {
                [day, ino, sec, nsec] => Some((
                    (ino.parse().ok()?, sec.parse().ok()?, nsec.parse().ok()?),
                    day.parse().ok()?,
                )),
                _ => None,
            }
        })
        .collect())
}

pub fn save_announced(config: &Config, name: &str, announced: &Announced) -> Result<()> {
    let path = announced_path(config, name);
    if announced.is_empty() {
        return match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(e).with_context(|| format!("cannot remove {}", path.display()))
            }
            _ => Ok(()),
        };
    }
    crate::watch::outbox::ensure_private_dir(&dir(config).join("announced"))?;
    let mut text = String::with_capacity(announced.len() * 40);
    for ((ino, sec, nsec), day) in announced {
        text.push_str(&format!("{day} {ino} {sec} {nsec}\n"));
    }
    fsops::write_atomic(&path, text.as_bytes(), Meta::current_user(0o600))
}

/// The day the job last ran, if it ever did.
pub fn last_run(config: &Config) -> Result<Option<i64>> {
    let path = dir(config).join("last-run");
    Ok(fsops::read_regular(&path)?
        .and_then(|(bytes, _)| String::from_utf8_lossy(&bytes).trim().parse().ok()))
}

pub fn set_last_run(config: &Config, day: i64) -> Result<()> {
    crate::watch::outbox::ensure_private_dir(&dir(config))?;
    fsops::write_atomic(
        &dir(config).join("last-run"),
        format!("{day}\n").as_bytes(),
        Meta::current_user(0o600),
    )
}

/// An exclusive lock on `state_dir/policy/retention/lock`, held until dropped (the kernel
/// drops it when the process dies).
pub fn lock(config: &Config) -> Result<nix::fcntl::Flock<std::fs::File>> {
    crate::watch::outbox::ensure_private_dir(&dir(config))?;
    crate::lockfile::exclusive(&dir(config).join("lock"))
}
