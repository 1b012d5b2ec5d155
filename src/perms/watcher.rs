//! The event loop: one inotify instance over the jail root, every jail dir and every directory
//! of every data tree; one thread reads events and repairs modes through [`super::fsx`].

use std::collections::{HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use nix::errno::Errno;
use nix::libc;

use super::fsx::{self, Outcome};
use super::inotify::{self as ino, Inotify};
use super::jails::{self, Ids, Jail, UserCheck};
use crate::config::Config;

const ROOT_MASK: u32 = ino::IN_CREATE | ino::IN_MOVED_TO | ino::IN_ONLYDIR;
const JAIL_MASK: u32 = ino::IN_CREATE | ino::IN_MOVED_TO | ino::IN_ATTRIB | ino::IN_ONLYDIR;
const TREE_MASK: u32 = ino::IN_CREATE
    | ino::IN_MOVED_TO
    | ino::IN_CLOSE_WRITE
    | ino::IN_ATTRIB
    | ino::IN_MOVE_SELF
    | ino::IN_DELETE_SELF
    | ino::IN_EXCL_UNLINK
    | ino::IN_ONLYDIR;

const MAX_WATCHES_FILE: &str = "/proc/sys/fs/inotify/max_user_watches";
/// Data dir descriptors kept open between events (the default RLIMIT_NOFILE is 1024).
const FD_CACHE: usize = 64;
/// Longest directory path (below the data dir) the watcher keeps for a watch: with at most
/// `perms.max_watches_per_jail` watches a jail then costs at most that many KiB of the
/// watcher's memory, whatever depth a client builds. Deeper trees are scanned periodically.
pub const MAX_WATCHED_PATH: usize = 1024;
/// At most one full rescan per this interval: a user who floods the queue on purpose cannot
/// make the watcher rescan every jail back to back.
const RESCAN_INTERVAL: Duration = Duration::from_secs(30);

/// Counters, readable while the watcher runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// The initial scan is done: from now on every change is seen.
    pub ready: bool,
    /// Data trees watched.
    pub jails: u64,
    /// inotify watches held (root + jail dirs + every directory of every data tree).
    pub watches: u64,
    /// inotify events read.
    pub events: u64,
    /// Modes changed.
    pub fixed: u64,
    /// Inodes left alone on purpose (other owner, other group, setuid, ...).
    pub skipped: u64,
    /// Queue overflows, each followed by a full rescan.
    pub overflows: u64,
    /// Directories that could not be watched (watch limit reached).
    pub unwatched: u64,
    /// Jails over `perms.max_watches_per_jail` (or out of watches): scanned periodically.
    pub scanned_jails: u64,
    /// Periodic scans of those jails done.
    pub periodic_scans: u64,
    /// CPU time of the watcher thread, nanoseconds.
    pub cpu_ns: u64,
}

#[derive(Default)]
struct Counters {
    jails: AtomicU64,
    watches: AtomicU64,
    events: AtomicU64,
    fixed: AtomicU64,
    skipped: AtomicU64,
    overflows: AtomicU64,
    unwatched: AtomicU64,
    scanned_jails: AtomicU64,
    periodic_scans: AtomicU64,
    cpu_ns: AtomicU64,
}

#[derive(Default)]
struct Shared {
    counters: Counters,
    ready: Mutex<bool>,
    ready_cv: Condvar,
}

/// The running mechanism. Dropping it (or [`Watcher::stop`]) ends its thread.
pub struct Watcher {
    shared: Arc<Shared>,
    wake: Option<OwnedFd>,
    thread: Option<JoinHandle<()>>,
}

impl Watcher {
    /// Starts watching every data tree under `config.root` on a thread of its own and returns
    /// at once; existing files are repaired by an initial scan on that thread (see
    /// [`Watcher::wait_ready`]). Fails when inotify, `/proc` or the jail root are unusable or
    /// `group` does not exist.
    pub fn start(config: &Config) -> Result<Watcher> {
        Self::start_with(config, UserCheck::Accounts)
    }

    #[doc(hidden)]
    pub fn start_with(config: &Config, check: UserCheck) -> Result<Watcher> {
        let ids = Ids::load(config, check)?;
        let root = fsx::open_dir_path(&config.root)
            .with_context(|| format!("cannot open the jail root {}", config.root.display()))?;
        let inotify = Inotify::new().context("cannot create an inotify instance")?;
        let root_wd = inotify.add_fd(&root, ROOT_MASK).with_context(|| {
            format!(
                "cannot watch {} through /proc/self/fd (is /proc mounted?)",
                config.root.display()
            )
        })?;
        // SAFETY: plain syscall; checked before use.
        let wake =
            Errno::result(unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) })
                .context("cannot create an eventfd")?;
        // SAFETY: a new descriptor that nothing else owns.
        let wake = unsafe { OwnedFd::from_raw_fd(wake) };
        let wake_thread = wake.try_clone().context("cannot duplicate the eventfd")?;
        let shared = Arc::new(Shared::default());
        let mut state = State {
            config: config.clone(),
            ids,
            inotify,
            root,
            watches: HashMap::new(),
            jails: HashMap::new(),
            data_fds: HashMap::new(),
            shared: shared.clone(),
            limit_warned: false,
            jail_watches: HashMap::new(),
            periodic: HashMap::new(),
            last_rescan: None,
            rescan_due: None,
        };
        state.watches.insert(root_wd, Watched::Root);
        let thread = std::thread::Builder::new()
            .name("sftpctl-perms".into())
            .spawn(move || state.run(wake_thread))
            .context("cannot start the permission watcher thread")?;
        Ok(Watcher {
            shared,
            wake: Some(wake),
            thread: Some(thread),
        })
    }

    /// Waits until the initial scan is done (every existing directory watched, every existing
    /// file repaired); false on timeout.
    pub fn wait_ready(&self, timeout: Duration) -> bool {
        let guard = self.shared.ready.lock().unwrap_or_else(|e| e.into_inner());
        let (guard, _) = self
            .shared
            .ready_cv
            .wait_timeout_while(guard, timeout, |ready| !*ready)
            .unwrap_or_else(|e| e.into_inner());
        *guard
    }

    pub fn stats(&self) -> Stats {
        let c = &self.shared.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Stats {
            ready: *self.shared.ready.lock().unwrap_or_else(|e| e.into_inner()),
            jails: get(&c.jails),
            watches: get(&c.watches),
            events: get(&c.events),
            fixed: get(&c.fixed),
            skipped: get(&c.skipped),
            overflows: get(&c.overflows),
            unwatched: get(&c.unwatched),
            scanned_jails: get(&c.scanned_jails),
            periodic_scans: get(&c.periodic_scans),
            cpu_ns: get(&c.cpu_ns),
        }
    }

    /// Ends the thread (after the batch of events it is working on) and returns the final
    /// counters.
    pub fn stop(mut self) -> Stats {
        self.shutdown();
        self.stats()
    }

    fn shutdown(&mut self) {
        if let Some(wake) = self.wake.take() {
            let one = 1u64.to_ne_bytes();
            let _ = nix::unistd::write(&wake, &one);
            if let Some(t) = self.thread.take() {
                let _ = t.join();
            }
        }
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// What a watch descriptor stands for.
#[derive(Debug, Clone)]
enum Watched {
    Root,
    /// `<root>/NAME`: waits for its data dir to appear or change owner.
    JailDir(String),
    /// A directory of a data tree, `rel` below the data dir ("" = the data dir).
    Tree {
        jail: String,
        rel: PathBuf,
        dev: u64,
        ino: u64,
    },
}

struct State {
    config: Config,
    ids: Ids,
    inotify: Inotify,
    root: OwnedFd,
    watches: HashMap<i32, Watched>,
    jails: HashMap<String, Jail>,
    data_fds: HashMap<String, OwnedFd>,
    shared: Arc<Shared>,
    limit_warned: bool,
    /// Tree watches held per jail (bounded by `perms.max_watches_per_jail`).
    jail_watches: HashMap<String, u64>,
    /// Jails not watched but scanned, with the time of their next scan.
    periodic: HashMap<String, Instant>,
    /// When the last full rescan ended.
    last_rescan: Option<Instant>,
    /// A full rescan is owed (after an overflow) and runs at this time.
    rescan_due: Option<Instant>,
}

fn log(msg: impl std::fmt::Display) {
    eprintln!(
        "sftpctl: perms: {}",
        crate::display::visible(&msg.to_string())
    );
}

fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid pointer to a timespec.
    let r = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if r != 0 {
        return 0;
    }
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

impl State {
    fn run(mut self, wake: OwnedFd) {
        self.initial_scan(true);
        {
            let mut ready = self.shared.ready.lock().unwrap_or_else(|e| e.into_inner());
            *ready = true;
            self.shared.ready_cv.notify_all();
        }
        self.publish();
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let mut fds = [
                libc::pollfd {
                    fd: self.inotify.raw(),
                    events: libc::POLLIN,
                    revents: 0,
                },
                libc::pollfd {
                    fd: wake.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                },
            ];
            // SAFETY: a valid array of two pollfds.
            let next = self.periodic.values().copied().chain(self.rescan_due).min();
            let timeout = match next {
                None => -1,
                Some(due) => due
                    .saturating_duration_since(Instant::now())
                    .as_millis()
                    .min(i32::MAX as u128) as i32,
            };
            let r = unsafe { libc::poll(fds.as_mut_ptr(), 2, timeout) };
            if r < 0 {
                if Errno::last() == Errno::EINTR {
                    continue;
                }
                log(format!("poll failed: {}; the watcher stops", Errno::last()));
                return;
            }
            if fds[1].revents != 0 {
                return;
            }
            loop {
                match self.inotify.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => self.batch(&buf[..n]),
                    Err(Errno::EINTR) => continue,
                    Err(e) => {
                        log(format!("reading inotify failed: {e}; the watcher stops"));
                        return;
                    }
                }
            }
            if self.rescan_due.is_some_and(|due| due <= Instant::now()) {
                self.full_rescan();
            }
            self.periodic_scans();
            self.publish();
        }
    }

    fn publish(&self) {
        let c = &self.shared.counters;
        c.jails.store(self.jails.len() as u64, Ordering::Relaxed);
        c.watches
            .store(self.watches.len() as u64, Ordering::Relaxed);
        c.scanned_jails
            .store(self.periodic.len() as u64, Ordering::Relaxed);
        c.cpu_ns.store(thread_cpu_ns(), Ordering::Relaxed);
    }

    /// Watches every jail dir, registers every jail, walks every data tree. At start-up
    /// (`verbose`) refused jails are reported.
    fn initial_scan(&mut self, verbose: bool) {
        let names = match jails::list_root(&self.root) {
            Ok(n) => n,
            Err(e) => {
                log(format!("{e:#}"));
                return;
            }
        };
        for name in names {
            self.jail_appeared(&name, verbose);
        }
    }

    /// Events were lost: a full rescan now, or — when the last one ended less than
    /// [`RESCAN_INTERVAL`] ago — once that interval is over (events keep being handled).
    fn overflowed(&mut self) {
        self.shared
            .counters
            .overflows
            .fetch_add(1, Ordering::Relaxed);
        if self.rescan_due.is_some() {
            return;
        }
        let due = self
            .last_rescan
            .map_or_else(Instant::now, |t| t + RESCAN_INTERVAL);
        log(format!(
            "the inotify queue overflowed: rescanning every data tree{}",
            if due > Instant::now() {
                " shortly (one rescan per 30 s at most)"
            } else {
                ""
            }
        ));
        self.rescan_due = Some(due);
    }

    /// Everything again from scratch, after events were lost: new maps, stale watches removed.
    fn full_rescan(&mut self) {
        self.rescan_due = None;
        self.ids.refresh(&self.config);
        let old = std::mem::take(&mut self.watches);
        self.jails.clear();
        self.data_fds.clear();
        self.jail_watches.clear();
        self.periodic.clear();
        let root_wd = old
            .iter()
            .find(|(_, w)| matches!(w, Watched::Root))
            .map(|(wd, _)| *wd);
        if let Some(wd) = root_wd {
            self.watches.insert(wd, Watched::Root);
        }
        self.initial_scan(false);
        for wd in old.keys() {
            if !self.watches.contains_key(wd) {
                self.inotify.rm(*wd);
            }
        }
        self.last_rescan = Some(Instant::now());
    }

    /// `<root>/NAME` exists (at start, or it was just created): watch it, then try its data dir.
    fn jail_appeared(&mut self, name: &OsStr, verbose: bool) {
        let Some(name_str) = name.to_str() else {
            return;
        };
        if name_str == "dev" || name_str.starts_with('.') {
            return;
        }
        let Ok(fd) = fsx::open_dir_beneath_mount_ok(self.root.as_raw_fd(), Path::new(name)) else {
            return; // a symlink or a plain file: not a jail, never followed
        };
        match fsx::stat_fd(&fd) {
            Ok(st) if st.st_uid == 0 => {}
            _ => return,
        }
        if let Some(wd) = self.add_watch(&fd, JAIL_MASK) {
            self.watches
                .insert(wd, Watched::JailDir(name_str.to_string()));
        }
        self.register(name_str, verbose);
    }

    /// Registers (or re-registers) the jail `name` and walks its data tree.
    fn register(&mut self, name: &str, verbose: bool) {
        if let Some(j) = self.jails.get(name) {
            if jails::reopen_data(self.root.as_raw_fd(), j, &self.config).is_some() {
                return; // same data dir, same owner: its own watches cover it
            }
            self.jails.remove(name);
            self.data_fds.remove(name);
        }
        let mut result = jails::open_jail(
            self.root.as_raw_fd(),
            OsStr::new(name),
            &self.config,
            &self.ids,
        );
        if result.is_err() && !verbose {
            // A new account may not be in our copy of the group database yet.
            self.ids.refresh(&self.config);
            result = jails::open_jail(
                self.root.as_raw_fd(),
                OsStr::new(name),
                &self.config,
                &self.ids,
            );
        }
        match result {
            Ok(Some((jail, data_fd, _))) => {
                self.jails.insert(name.to_string(), jail);
                self.cache_fd(name, data_fd);
                if self.periodic.contains_key(name) {
                    self.scan_jail(name);
                } else {
                    self.walk(name, Path::new(""));
                }
            }
            Ok(None) => {}
            Err(why) => {
                if verbose {
                    log(format!(
                        "not watching {}: {why}",
                        self.config.root.join(name).display()
                    ));
                }
            }
        }
    }

    fn cache_fd(&mut self, name: &str, fd: OwnedFd) {
        if self.data_fds.len() >= FD_CACHE {
            self.data_fds.clear();
        }
        self.data_fds.insert(name.to_string(), fd);
    }

    /// The data dir of a registered jail, opened (from the cache or again).
    fn data_fd(&mut self, name: &str) -> Option<i32> {
        if !self.data_fds.contains_key(name) {
            let jail = self.jails.get(name)?;
            let fd = jails::reopen_data(self.root.as_raw_fd(), jail, &self.config)?;
            self.cache_fd(name, fd);
        }
        self.data_fds.get(name).map(|fd| fd.as_raw_fd())
    }

    /// Walks `rel` of jail `name`: watches every directory, repairs everything. A jail that
    /// would need more than `perms.max_watches_per_jail` watches (or a directory path longer
    /// than [`MAX_WATCHED_PATH`], or the host is out of watches) is not watched any more but
    /// scanned every `perms.scan_interval_secs`.
    fn walk(&mut self, name: &str, rel: &Path) {
        if self.periodic.contains_key(name) {
            return self.fix_subtree(name, rel);
        }
        let Some(data) = self.data_fd(name) else {
            return;
        };
        let owners = self.jails[name].owners;
        let held = self.jail_watches.get(name).copied().unwrap_or(0);
        let budget = u64::from(self.config.perms.max_watches_per_jail).saturating_sub(held);
        let mut dirs: Vec<(i32, PathBuf, u64, u64)> = Vec::new();
        let mut over: Option<&'static str> = None;
        let mut fixed = 0u64;
        let mut skipped = 0u64;
        let inotify = &self.inotify;
        let mut limit = LimitState {
            warned: &mut self.limit_warned,
            cap: self.config.perms.max_user_watches,
            unwatched: 0,
        };
        fsx::walk(
            data,
            rel,
            &owners,
            true,
            &mut |fd, st, rel| {
                if over.is_some() {
                    return;
                }
                if dirs.len() as u64 >= budget {
                    over = Some("more directories than perms.max_watches_per_jail allows");
                } else if rel.as_os_str().len() > MAX_WATCHED_PATH {
                    over = Some("a directory path longer than the 1024 bytes the watcher keeps");
                } else {
                    match add_watch(inotify, fd, TREE_MASK, &mut limit) {
                        Some(wd) => dirs.push((wd, rel.to_path_buf(), st.st_dev, st.st_ino)),
                        None if limit.unwatched > 0 => over = Some("out of inotify watches"),
                        None => {}
                    }
                }
            },
            &mut |_, outcome| count(outcome, &mut fixed, &mut skipped),
        );
        let unwatched = limit.unwatched;
        for (wd, rel, dev, ino) in dirs {
            let new = self
                .watches
                .insert(
                    wd,
                    Watched::Tree {
                        jail: name.to_string(),
                        rel,
                        dev,
                        ino,
                    },
                )
                .is_none();
            if new {
                *self.jail_watches.entry(name.to_string()).or_insert(0) += 1;
            }
        }
        let c = &self.shared.counters;
        c.fixed.fetch_add(fixed, Ordering::Relaxed);
        c.skipped.fetch_add(skipped, Ordering::Relaxed);
        c.unwatched.fetch_add(unwatched, Ordering::Relaxed);
        if let Some(why) = over {
            self.scan_instead_of_watching(name, why);
        }
    }

    /// Stops watching jail `name`'s tree below its data dir; from now on it is scanned
    /// periodically (the walk that found it over budget has just repaired all of it). The data
    /// dir keeps its one watch: a `chmod 755 /data` and the entries at the top are still
    /// repaired at once.
    fn scan_instead_of_watching(&mut self, name: &str, why: &str) {
        let gone: Vec<i32> = self
            .watches
            .iter()
            .filter(|(_, w)| {
                matches!(w, Watched::Tree { jail, rel, .. }
                    if jail == name && !rel.as_os_str().is_empty())
            })
            .map(|(wd, _)| *wd)
            .collect();
        for wd in &gone {
            self.inotify.rm(*wd);
            self.forget_watch(*wd);
        }
        let every = Duration::from_secs(self.config.perms.scan_interval_secs);
        self.periodic
            .insert(name.to_string(), Instant::now() + every);
        log(format!(
            "jail {name}: {why} (perms.max_watches_per_jail = {}): only its data dir stays watched, the tree below is scanned and repaired every {} s (perms.scan_interval_secs); sftpctl doctor reports it",
            self.config.perms.max_watches_per_jail,
            every.as_secs()
        ));
    }

    /// Repairs everything below `rel` of a periodically scanned jail, adding no watch.
    fn fix_subtree(&mut self, name: &str, rel: &Path) {
        let Some(data) = self.data_fd(name) else {
            return;
        };
        let owners = self.jails[name].owners;
        let (mut fixed, mut skipped) = (0, 0);
        fsx::walk(
            data,
            rel,
            &owners,
            true,
            &mut |_, _, _| {},
            &mut |_, outcome| count(outcome, &mut fixed, &mut skipped),
        );
        let c = &self.shared.counters;
        c.fixed.fetch_add(fixed, Ordering::Relaxed);
        c.skipped.fetch_add(skipped, Ordering::Relaxed);
    }

    fn scan_jail(&mut self, name: &str) {
        self.fix_subtree(name, Path::new(""));
        self.shared
            .counters
            .periodic_scans
            .fetch_add(1, Ordering::Relaxed);
    }

    /// The periodic scans that are due.
    fn periodic_scans(&mut self) {
        let now = Instant::now();
        let due: Vec<String> = self
            .periodic
            .iter()
            .filter(|(_, t)| **t <= now)
            .map(|(n, _)| n.clone())
            .collect();
        let every = Duration::from_secs(self.config.perms.scan_interval_secs);
        for name in due {
            if self.jails.contains_key(&name) {
                self.scan_jail(&name);
            }
            self.periodic.insert(name, Instant::now() + every);
        }
    }

    fn add_watch(&mut self, fd: &OwnedFd, mask: u32) -> Option<i32> {
        let mut limit = LimitState {
            warned: &mut self.limit_warned,
            cap: self.config.perms.max_user_watches,
            unwatched: 0,
        };
        let wd = add_watch(&self.inotify, fd, mask, &mut limit);
        let unwatched = limit.unwatched;
        self.shared
            .counters
            .unwatched
            .fetch_add(unwatched, Ordering::Relaxed);
        wd
    }

    /// Repairs one entry of a data tree.
    fn fix_one(&mut self, name: &str, rel: &Path) {
        let Some(data) = self.data_fd(name) else {
            return;
        };
        let owners = self.jails[name].owners;
        let (outcome, _) = fsx::visit(data, rel, &owners, true);
        let (mut fixed, mut skipped) = (0, 0);
        count(&outcome, &mut fixed, &mut skipped);
        let c = &self.shared.counters;
        c.fixed.fetch_add(fixed, Ordering::Relaxed);
        c.skipped.fetch_add(skipped, Ordering::Relaxed);
    }

    /// A watched data-tree directory moved: keep its watch when it is still where we think
    /// (a move inside the watched trees was already re-walked at its new place), else drop
    /// it and everything we had below it.
    fn moved_self(&mut self, wd: i32) {
        let Some(Watched::Tree {
            jail,
            rel,
            dev,
            ino,
        }) = self.watches.get(&wd).cloned()
        else {
            return;
        };
        if let Some(data) = self.data_fd(&jail) {
            if let Ok(fd) = fsx::open_beneath(data, &rel, true) {
                if let Ok(st) = fsx::stat_fd(&fd) {
                    if st.st_dev == dev && st.st_ino == ino {
                        return;
                    }
                }
            }
        }
        let gone: Vec<i32> = self
            .watches
            .iter()
            .filter(|(_, w)| match w {
                Watched::Tree {
                    jail: j, rel: r, ..
                } => *j == jail && r.starts_with(&rel),
                _ => false,
            })
            .map(|(wd, _)| *wd)
            .collect();
        for wd in gone {
            self.inotify.rm(wd);
            self.forget_watch(wd);
        }
    }

    /// Drops a tree watch from the maps (and from its jail's count).
    fn forget_watch(&mut self, wd: i32) -> Option<Watched> {
        let w = self.watches.remove(&wd)?;
        if let Watched::Tree { jail, .. } = &w {
            if let Some(n) = self.jail_watches.get_mut(jail) {
                *n = n.saturating_sub(1);
            }
        }
        Some(w)
    }

    fn ignored(&mut self, wd: i32) {
        match self.forget_watch(wd) {
            Some(Watched::Tree { jail, rel, .. }) if rel.as_os_str().is_empty() => {
                // The data dir itself is gone (the jail was removed).
                self.jails.remove(&jail);
                self.data_fds.remove(&jail);
                self.jail_watches.remove(&jail);
            }
            Some(Watched::Root) => log(format!(
                "the jail root {} was removed or unmounted: restart the watcher once it is back",
                self.config.root.display()
            )),
            _ => {}
        }
    }

    /// One `read(2)` worth of events. Repairs are idempotent and read the inode's current
    /// state, so a repeated (wd, name) within one batch is handled once.
    fn batch(&mut self, buf: &[u8]) {
        let mut done: HashSet<(i32, Option<OsString>)> = HashSet::new();
        let mut n = 0u64;
        for ev in ino::parse(buf) {
            n += 1;
            if ev.mask & ino::IN_Q_OVERFLOW != 0 {
                self.overflowed();
                continue;
            }
            if ev.mask & ino::IN_IGNORED != 0 {
                self.ignored(ev.wd);
                continue;
            }
            let Some(w) = self.watches.get(&ev.wd).cloned() else {
                continue;
            };
            match w {
                Watched::Root => {
                    if let Some(name) = ev.name {
                        self.jail_appeared(name, false);
                    }
                }
                Watched::JailDir(jail) => {
                    if ev.name == Some(OsStr::new(&self.config.data_dir)) {
                        self.register(&jail, false);
                    }
                }
                Watched::Tree { jail, rel, .. } => {
                    if !self.jails.contains_key(&jail) {
                        continue;
                    }
                    if ev.mask & ino::IN_MOVE_SELF != 0 {
                        self.moved_self(ev.wd);
                        continue;
                    }
                    if ev.mask & ino::IN_DELETE_SELF != 0 {
                        continue; // IN_IGNORED follows
                    }
                    let path = match ev.name {
                        Some(name) => fsx::join(&rel, name),
                        None => rel.clone(),
                    };
                    let new_dir = ev.name.is_some()
                        && ev.mask & ino::IN_ISDIR != 0
                        && ev.mask & (ino::IN_CREATE | ino::IN_MOVED_TO) != 0;
                    if new_dir {
                        // A new or moved-in directory: watch it and everything below it,
                        // repair all of it. (Re-adding a watch for a directory moved inside
                        // the trees updates its path.)
                        self.walk(&jail, &path);
                        done.insert((ev.wd, ev.name.map(OsStr::to_os_string)));
                    } else if done.insert((ev.wd, ev.name.map(OsStr::to_os_string))) {
                        self.fix_one(&jail, &path);
                    }
                }
            }
        }
        self.shared.counters.events.fetch_add(n, Ordering::Relaxed);
    }
}

fn count(outcome: &Outcome, fixed: &mut u64, skipped: &mut u64) {
    match outcome {
        Outcome::Fixed { .. } => *fixed += 1,
        Outcome::Skipped(..) => *skipped += 1,
        _ => {}
    }
}

struct LimitState<'a> {
    warned: &'a mut bool,
    cap: u32,
    unwatched: u64,
}

/// `inotify_add_watch`; when the per-user watch limit is reached, raises
/// `fs.inotify.max_user_watches` (doubling, up to `perms.max_user_watches`) and retries.
fn add_watch(inotify: &Inotify, fd: &OwnedFd, mask: u32, limit: &mut LimitState) -> Option<i32> {
    match inotify.add_fd(fd, mask) {
        Ok(wd) => return Some(wd),
        Err(Errno::ENOSPC) => {}
        // Gone, or not a directory any more (IN_ONLYDIR): nothing to watch.
        Err(_) => return None,
    }
    if let Some((from, to)) = raise_watch_limit(limit.cap) {
        log(format!(
            "WARNING: raised the HOST-WIDE kernel setting fs.inotify.max_user_watches from {from} to {to} (it limits every program running as root), because perms.max_user_watches = {} opts in; set it to 0 to never do this",
            limit.cap
        ));
        if let Ok(wd) = inotify.add_fd(fd, mask) {
            return Some(wd);
        }
    }
    limit.unwatched += 1;
    if !*limit.warned {
        *limit.warned = true;
        log(format!(
            "out of inotify watches (fs.inotify.max_user_watches = {}): the jail that needed one is scanned periodically instead; to watch more, raise that sysctl yourself (about 1 KiB of kernel memory each) and restart the watcher",
            read_watch_limit().map(|n| n.to_string()).unwrap_or_else(|| "?".into())
        ));
    }
    None
}

fn read_watch_limit() -> Option<u64> {
    std::fs::read_to_string(MAX_WATCHES_FILE)
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The next limit: double (at least +64 Ki), never above `cap`; `None` = do not raise.
pub(crate) fn next_watch_limit(current: u64, cap: u32) -> Option<u64> {
    let cap = u64::from(cap);
    if cap == 0 || current >= cap {
        return None;
    }
    Some(current.saturating_mul(2).max(current + 65_536).min(cap))
}

fn raise_watch_limit(cap: u32) -> Option<(u64, u64)> {
    let current = read_watch_limit()?;
    let next = next_watch_limit(current, cap)?;
    std::fs::write(MAX_WATCHES_FILE, format!("{next}\n")).ok()?;
    Some((current, next))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watch_limit_doubles_up_to_the_cap() {
        assert_eq!(next_watch_limit(8192, 1_048_576), Some(73_728));
        assert_eq!(next_watch_limit(192_536, 1_048_576), Some(385_072));
        assert_eq!(next_watch_limit(800_000, 1_048_576), Some(1_048_576));
        assert_eq!(next_watch_limit(1_048_576, 1_048_576), None);
        assert_eq!(next_watch_limit(2_000_000, 1_048_576), None);
        assert_eq!(next_watch_limit(8192, 0), None);
    }

    #[test]
    fn masks_never_ask_for_reads_or_opens() {
        for m in [ROOT_MASK, JAIL_MASK, TREE_MASK] {
            assert_eq!(
                m & (libc::IN_OPEN | libc::IN_ACCESS | libc::IN_CLOSE_NOWRITE),
                0
            );
            assert_ne!(m & ino::IN_ONLYDIR, 0);
        }
    }
}
