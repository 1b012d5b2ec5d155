//! Where systemd is not PID 1 there is no timer or path unit to run `sftpctl policy run`:
//! the live watcher runs it itself, as a child, after sessions that marked users and every
//! 15 minutes. One at a time; its output goes to the watcher's log.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How often the jobs run without marks (the timer unit's `OnUnitActiveSec`).
pub const PERIOD: Duration = Duration::from_secs(15 * 60);

pub struct Kicker {
    program: PathBuf,
    /// `None`: the built-in defaults (no config file).
    config_path: Option<PathBuf>,
    child: Option<Child>,
    last: Instant,
    pending: bool,
}

/// Whether systemd manages this boot (its units run the policy jobs), as sd_booted(3) tells.
pub fn systemd_booted() -> bool {
    Path::new("/run/systemd/system").is_dir()
}

impl Kicker {
    /// `None` where systemd's units run the jobs, or when this binary cannot be found again.
    pub fn for_watcher(config_path: Option<&Path>) -> Option<Kicker> {
        if systemd_booted() {
            return None;
        }
        let program = std::env::current_exe().ok()?;
        Some(Kicker {
            program,
            config_path: config_path.map(Path::to_path_buf),
            child: None,
            last: Instant::now(),
            pending: false,
        })
    }

    /// Users were marked: run the jobs at the next tick.
    pub fn request(&mut self) {
        self.pending = true;
    }

    /// Called about once a second: reaps the last run, starts one when asked or due.
    pub fn tick(&mut self) {
        if let Some(child) = &mut self.child {
            match child.try_wait() {
                Ok(None) => return,
                Ok(Some(status)) if !status.success() => {
                    eprintln!("sftpctl: warning: sftpctl policy run ended with {status}");
                }
                _ => {}
            }
            self.child = None;
        }
        if !self.pending && self.last.elapsed() < PERIOD {
            return;
        }
        self.pending = false;
        self.last = Instant::now();
        let mut command = Command::new(&self.program);
        if let Some(path) = &self.config_path {
            command.arg("--config").arg(path);
        }
        let spawned = command
            .args(["policy", "run"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn();
        match spawned {
            Ok(child) => self.child = Some(child),
            Err(e) => eprintln!(
                "sftpctl: warning: cannot start {} policy run: {e}",
                self.program.display()
            ),
        }
    }
}

impl Drop for Kicker {
    /// A run in progress is waited for: it may be between writing sshd's config and reloading.
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.wait();
        }
    }
}
