//! `sftpctl perms-watch` (hidden): runs only the shared-write permission watcher in the
//! foreground until SIGTERM or SIGINT. Tests and benchmarks use it; in production
//! `sftpctl watch` starts the same [`perms::Watcher`].

use std::io::Write;
use std::time::Duration;

use anyhow::{Context, Result};
use nix::sys::signal::{SigSet, Signal};

use crate::config::Config;
use crate::error::require_root;
use crate::perms;

pub fn run(config: &Config) -> Result<()> {
    require_root("sftpctl perms-watch")?;
    let mut out = std::io::stdout();
    if !config.perms.enabled {
        writeln!(
            out,
            "sftpctl perms-watch: perms.enabled = false, nothing to do"
        )?;
        return Ok(());
    }
    // Blocked before the watcher's thread exists, so only sigwait below sees them.
    let mut signals = SigSet::empty();
    signals.add(Signal::SIGTERM);
    signals.add(Signal::SIGINT);
    signals
        .thread_block()
        .context("cannot block SIGTERM/SIGINT")?;
    let watcher = perms::Watcher::start(config)?;
    while !watcher.wait_ready(Duration::from_secs(60)) {
        eprintln!("sftpctl: perms: still scanning the data trees ...");
    }
    let s = watcher.stats();
    writeln!(
        out,
        "sftpctl perms-watch: ready: {} data tree(s), {} watch(es), {} fixed at start, {:.1} ms CPU",
        s.jails,
        s.watches,
        s.fixed,
        s.cpu_ns as f64 / 1e6
    )?;
    out.flush()?;
    let sig = signals.wait().context("cannot wait for a signal")?;
    let s = watcher.stop();
    writeln!(
        out,
        "sftpctl perms-watch: {sig:?}: stopped after {} event(s), {} fixed, {} left alone, {} overflow(s), {} unwatched, {:.1} ms CPU",
        s.events,
        s.fixed,
        s.skipped,
        s.overflows,
        s.unwatched,
        s.cpu_ns as f64 / 1e6
    )?;
    Ok(())
}
