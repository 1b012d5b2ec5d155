//! Detaching (double fork, new session, no controlling terminal) and stop signals.

use std::fs::OpenOptions;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result};
use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
use nix::unistd::{dup2, fork, setsid, ForkResult};

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_stop_signal(_: nix::libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

/// SIGTERM and SIGINT set a flag the loops check; blocking reads are interrupted (no
/// SA_RESTART) so the flag is seen at once.
pub fn install_stop_handlers() -> Result<()> {
    let action = SigAction::new(
        SigHandler::Handler(on_stop_signal),
        SaFlags::empty(),
        SigSet::empty(),
    );
    for signal in [Signal::SIGTERM, Signal::SIGINT] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe { sigaction(signal, &action) }.context("cannot install a signal handler")?;
    }
    Ok(())
}

pub fn stop_requested() -> bool {
    STOP.load(Ordering::SeqCst)
}

/// Detaches from the terminal; returns in the daemon only. Must run before any thread starts.
/// stdin/stdout go to /dev/null, stderr is appended to `log`.
pub fn detach(log: &Path) -> Result<()> {
    let log_file = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(log)
        .with_context(|| format!("cannot open the watcher log {}", log.display()))?;
    let null = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
        .context("cannot open /dev/null")?;
    // SAFETY: no other thread runs yet (documented precondition), so fork is sound.
    match unsafe { fork() }.context("cannot fork")? {
        ForkResult::Parent { child } => {
            let _ = nix::sys::wait::waitpid(child, None);
            std::process::exit(0);
        }
        ForkResult::Child => {}
    }
    setsid().context("cannot start a new session")?;
    // SAFETY: as above; the second fork makes sure the daemon never gets a terminal again.
    match unsafe { fork() }.context("cannot fork")? {
        ForkResult::Parent { .. } => unsafe { nix::libc::_exit(0) },
        ForkResult::Child => {}
    }
    std::env::set_current_dir("/").context("cannot chdir to /")?;
    dup2(null.as_raw_fd(), 0).context("cannot redirect stdin")?;
    dup2(null.as_raw_fd(), 1).context("cannot redirect stdout")?;
    dup2(log_file.as_raw_fd(), 2).context("cannot redirect stderr")?;
    Ok(())
}
