//! `make bench` (shared-write half): what the permission watcher costs.
//!
//! Needs root. Builds a throwaway jail root under /srv with N jails (N = SFTPCTL_BENCH_JAILS,
//! default 10,000), each `<root>/jNNNNN/data` owned by its own uid with two subdirectories, and
//! a temporary group. No accounts are made (useradd costs ~24 ms each): the watcher runs with
//! `UserCheck::DataDirOwner`, which takes the data dir's owner as the jail's user instead of
//! looking the account up — the only difference from production, where one `getpwnam` per jail
//! is added at start-up. Then it measures
//! - start-up: time until the initial scan is done, watches held, RSS and kernel memory
//!   (inotify slab) it costs;
//! - latency from `close()` of a file written as the jail's user (fsuid/fsgid of the writer
//!   thread) to the watcher's `fchmod`, seen through an inotify watch of the bench's own:
//!   median / p99 / max over F files (F = SFTPCTL_BENCH_FILES, default 1,000), one at a time;
//! - CPU time of the watcher thread per 1,000 files, one at a time and in a burst;
//! - `perms::scan` (what `doctor` runs) over all jails;
//! - real uploads: F files put with OpenSSH sftp in one session into a jail of a sandbox
//!   (private sshd, real account), with `sftpctl perms-watch` as a child process: the
//!   watcher thread's CPU time per 1,000 uploads as it reports it on exit.

use std::ffi::CString;
use std::fs;
use std::io::Write;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::libc;
use sftpctl::config::Config;
use sftpctl::perms::{self, UserCheck, Watcher};

#[path = "../support/mod.rs"]
mod support;

const FIRST_UID: u32 = 61_000;

struct Bench {
    dir: PathBuf,
    group: String,
}

impl Drop for Bench {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
        let _ = Command::new("groupdel").arg(&self.group).output();
    }
}

fn rss_kib() -> u64 {
    fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Bytes held by the inotify mark slab (each watch is one `inotify_inode_mark`).
fn inotify_slab_bytes() -> Option<u64> {
    let text = fs::read_to_string("/proc/slabinfo").ok()?;
    let line = text
        .lines()
        .find(|l| l.starts_with("inotify_inode_mark "))?;
    let f: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(3)
        .filter_map(|v| v.parse().ok())
        .collect();
    Some(f.first()? * f.get(2)?)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1000.0)
}

/// Makes N jails; returns the time it took.
fn make_jails(root: &Path, n: usize, gid: u32) -> Duration {
    let start = Instant::now();
    for i in 0..n {
        let jail = root.join(format!("j{i:05}"));
        fs::create_dir(&jail).unwrap();
        fs::set_permissions(&jail, fs::Permissions::from_mode(0o755)).unwrap();
        let data = jail.join("data");
        for d in [data.clone(), data.join("in"), data.join("out")] {
            fs::create_dir(&d).unwrap();
            std::os::unix::fs::chown(&d, Some(FIRST_UID + i as u32), Some(gid)).unwrap();
            fs::set_permissions(&d, fs::Permissions::from_mode(0o2770)).unwrap();
        }
    }
    start.elapsed()
}

/// A bench-side inotify watch for IN_ATTRIB on `dir`: tells when the watcher's fchmod landed.
struct AttribProbe {
    fd: i32,
    buf: Vec<u8>,
}

impl AttribProbe {
    fn new(dir: &Path) -> AttribProbe {
        // SAFETY: plain syscalls, results checked.
        let fd = unsafe { libc::inotify_init1(libc::IN_CLOEXEC) };
        assert!(fd >= 0);
        let c = CString::new(dir.as_os_str().as_encoded_bytes()).unwrap();
        let wd = unsafe { libc::inotify_add_watch(fd, c.as_ptr(), libc::IN_ATTRIB) };
        assert!(wd >= 0);
        AttribProbe {
            fd,
            buf: vec![0; 64 * 1024],
        }
    }

    /// Blocks until an IN_ATTRIB event arrives (or 5 s pass: returns false).
    fn wait(&mut self) -> bool {
        let mut pfd = libc::pollfd {
            fd: self.fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: valid pollfd and buffer.
        let r = unsafe { libc::poll(&mut pfd, 1, 5000) };
        if r <= 0 {
            return false;
        }
        let n = unsafe { libc::read(self.fd, self.buf.as_mut_ptr().cast(), self.buf.len()) };
        n > 0
    }
}

/// Makes the calling thread create files as `uid:gid` (Linux fsuid/fsgid are per thread).
fn become_writer(uid: u32, gid: u32) {
    // SAFETY: raw syscalls that only change this thread's filesystem ids.
    unsafe {
        libc::syscall(libc::SYS_setfsgid, gid);
        libc::syscall(libc::SYS_setfsuid, uid);
    }
}

fn write_file(path: &Path) {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(path)
        .unwrap();
    f.write_all(&[b'x'; 4096]).unwrap();
}

fn main() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("bench perms: needs root; skipped");
        return;
    }
    let jails: usize = std::env::var("SFTPCTL_BENCH_JAILS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000)
        .max(1);
    let files: usize = std::env::var("SFTPCTL_BENCH_FILES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000)
        .max(10);
    let id = std::process::id();
    let bench = Bench {
        dir: PathBuf::from(format!("/srv/sftpctl-bench-perms-{id}")),
        group: format!("bp{}", id % 100_000),
    };
    let out = Command::new("groupadd").arg(&bench.group).output().unwrap();
    assert!(out.status.success(), "groupadd: {out:?}");
    let gid = nix::unistd::Group::from_name(&bench.group)
        .unwrap()
        .unwrap()
        .gid
        .as_raw();
    let root = bench.dir.join("jails");
    fs::create_dir_all(&root).unwrap();
    fs::set_permissions(&bench.dir, fs::Permissions::from_mode(0o755)).unwrap();
    fs::set_permissions(&root, fs::Permissions::from_mode(0o755)).unwrap();

    let mut config = Config {
        root: root.clone(),
        group: bench.group.clone(),
        ..Default::default()
    };
    config.perms.max_user_watches = 0; // never touch the host's sysctl from a bench

    println!("bench perms: kernel {}", {
        let u = nix::sys::utsname::uname().unwrap();
        u.release().to_string_lossy().into_owned()
    });
    println!(
        "  fs.inotify.max_user_watches = {}, max_queued_events = {}, fs.protected_hardlinks = {}",
        fs::read_to_string("/proc/sys/fs/inotify/max_user_watches")
            .unwrap_or_default()
            .trim(),
        fs::read_to_string("/proc/sys/fs/inotify/max_queued_events")
            .unwrap_or_default()
            .trim(),
        fs::read_to_string("/proc/sys/fs/protected_hardlinks")
            .unwrap_or_default()
            .trim(),
    );
    let took = make_jails(&root, jails, gid);
    println!(
        "  setup: {jails} jails x (data, data/in, data/out) made in {:.1} s",
        took.as_secs_f64()
    );

    // --- start-up
    let rss0 = rss_kib();
    let slab0 = inotify_slab_bytes();
    let start = Instant::now();
    let watcher = Watcher::start_with(&config, UserCheck::DataDirOwner).unwrap();
    let returned = start.elapsed();
    assert!(watcher.wait_ready(Duration::from_secs(600)), "not ready");
    let ready = start.elapsed();
    let s = watcher.stats();
    let rss1 = rss_kib();
    let slab1 = inotify_slab_bytes();
    println!(
        "start-up with {} jails: start() returned in {}, ready (every dir watched) after {:.2} s; {} watches, {} unwatched; watcher CPU {:.2} s",
        s.jails,
        ms(returned),
        ready.as_secs_f64(),
        s.watches,
        s.unwatched,
        s.cpu_ns as f64 / 1e9
    );
    println!(
        "  memory: RSS +{:.1} MiB (process), inotify mark slab {}",
        (rss1.saturating_sub(rss0)) as f64 / 1024.0,
        match (slab0, slab1) {
            (Some(a), Some(b)) => format!(
                "+{:.1} MiB ({} B per watch)",
                b.saturating_sub(a) as f64 / 1048576.0,
                b.saturating_sub(a) / s.watches.max(1)
            ),
            _ => "n/a (no /proc/slabinfo)".into(),
        }
    );

    // --- latency, one file at a time, as the jail's user
    let pick = jails / 2;
    let dir = root.join(format!("j{pick:05}/data/in"));
    let (uid, dir2) = (FIRST_UID + pick as u32, dir.clone());
    let cpu0 = watcher.stats().cpu_ns;
    let lat = std::thread::spawn(move || {
        become_writer(uid, gid);
        let mut probe = AttribProbe::new(&dir2);
        let mut lat = Vec::with_capacity(files);
        for i in 0..files {
            let p = dir2.join(format!("f{i}"));
            let opened = Instant::now();
            write_file(&p); // closed here
            let closed = Instant::now();
            loop {
                assert!(probe.wait(), "no chmod within 5 s for {}", p.display());
                if fs::metadata(&p).unwrap().mode() & 0o020 != 0 {
                    break;
                }
            }
            lat.push((closed.elapsed(), opened.elapsed()));
            // Let the watcher go idle again: each file is a separate upload.
            std::thread::sleep(Duration::from_micros(200));
        }
        lat
    })
    .join()
    .unwrap();
    let cpu1 = watcher.stats().cpu_ns;
    for (what, pick_one) in [
        (
            "close()",
            (|l: &(Duration, Duration)| l.0) as fn(&(Duration, Duration)) -> Duration,
        ),
        ("open(O_CREAT)", |l| l.1),
    ] {
        let mut sorted: Vec<Duration> = lat.iter().map(pick_one).collect();
        sorted.sort();
        println!(
            "latency {what} -> group-writable, {files} files of 4 KiB one at a time (jail {pick} of {jails}): median {}, p99 {}, max {}",
            ms(percentile(&sorted, 0.5)),
            ms(percentile(&sorted, 0.99)),
            ms(*sorted.last().unwrap())
        );
    }
    println!(
        "  watcher CPU: {:.1} ms per 1,000 files (3 events each: create, close-write, its own attrib)",
        (cpu1 - cpu0) as f64 / 1e6 * 1000.0 / files as f64
    );

    // --- burst
    let dir = root.join(format!("j{pick:05}/data/out"));
    let cpu0 = watcher.stats().cpu_ns;
    let fixed0 = watcher.stats().fixed;
    let start = Instant::now();
    let d2 = dir.clone();
    std::thread::spawn(move || {
        become_writer(uid, gid);
        for i in 0..files {
            write_file(&d2.join(format!("b{i}")));
        }
    })
    .join()
    .unwrap();
    let written = start.elapsed();
    while watcher.stats().fixed < fixed0 + files as u64 {
        assert!(start.elapsed() < Duration::from_secs(60), "burst not fixed");
        std::thread::sleep(Duration::from_millis(1));
    }
    let done = start.elapsed();
    let s = watcher.stats();
    println!(
        "burst of {files} files: written in {}, all group-writable {} after the first; watcher CPU {:.1} ms per 1,000 files; {} overflow(s)",
        ms(written),
        ms(done),
        (s.cpu_ns - cpu0) as f64 / 1e6 * 1000.0 / files as f64,
        s.overflows
    );
    let stopped = Instant::now();
    let s = watcher.stop();
    println!(
        "stop: {} (events {}, fixed {}, left alone {})",
        ms(stopped.elapsed()),
        s.events,
        s.fixed,
        s.skipped
    );

    // --- doctor's scan
    let start = Instant::now();
    let report = perms::scan_with(&config, false, UserCheck::DataDirOwner).unwrap();
    println!(
        "scan (doctor) over {} jails, {} items: {:.2} s, {} not group-writable",
        report.jails,
        report.checked,
        start.elapsed().as_secs_f64(),
        report.not_shared
    );
    deep_tree(&root, gid);
    drop(bench);

    sftp_uploads(files);
}

/// One more jail holding a single chain of 20,000 directories (about 40 KB of path, ten times
/// PATH_MAX): `perms::scan` with repair walks it relative to each parent's descriptor. Prints
/// the time, the descriptors the process held at most, and the watcher's start-up over it
/// (the jail is over its watch budget: scanned, not watched).
fn deep_tree(root: &Path, gid: u32) {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    const DEPTH: usize = 20_000;
    let uid = FIRST_UID - 1;
    let data = root.join("deep/data");
    fs::create_dir_all(&data).unwrap();
    std::os::unix::fs::chown(&data, Some(uid), Some(gid)).unwrap();
    fs::set_permissions(&data, fs::Permissions::from_mode(0o2770)).unwrap();
    let open = |at: i32| -> OwnedFd {
        let fd = nix::fcntl::openat(
            Some(at),
            "d",
            nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_DIRECTORY,
            nix::sys::stat::Mode::empty(),
        )
        .unwrap();
        // SAFETY: a new descriptor that nothing else owns.
        unsafe { OwnedFd::from_raw_fd(fd) }
    };
    let mut fd = OwnedFd::from(fs::File::open(&data).unwrap());
    let start = Instant::now();
    for _ in 0..DEPTH {
        let mode = nix::sys::stat::Mode::from_bits_truncate(0o755);
        nix::sys::stat::mkdirat(Some(fd.as_raw_fd()), "d", mode).unwrap();
        let next = open(fd.as_raw_fd());
        nix::unistd::fchown(next.as_raw_fd(), Some(uid.into()), Some(gid.into())).unwrap();
        fd = next;
    }
    drop(fd);
    let built = start.elapsed();
    let mut config = Config {
        root: root.to_path_buf(),
        group: nix::unistd::Group::from_gid(gid.into())
            .unwrap()
            .unwrap()
            .name,
        ..Default::default()
    };
    config.perms.max_user_watches = 0;
    let fds = || fs::read_dir("/proc/self/fd").unwrap().count();
    let fds_before = fds();
    let peak = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(fds_before));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (p2, s2) = (peak.clone(), stop.clone());
    let sampler = std::thread::spawn(move || {
        while !s2.load(std::sync::atomic::Ordering::Relaxed) {
            let n = fs::read_dir("/proc/self/fd").unwrap().count();
            p2.fetch_max(n, std::sync::atomic::Ordering::Relaxed);
            std::thread::sleep(Duration::from_micros(200));
        }
    });
    let start = Instant::now();
    let report = perms::scan_with(&config, true, UserCheck::DataDirOwner).unwrap();
    let took = start.elapsed();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    sampler.join().unwrap();
    let deep = report.per_jail.iter().find(|j| j.name == "deep").unwrap();
    println!(
        "deep tree: {DEPTH} nested directories (built in {}): scan with repair {:.2} s over all jails, {} fixed in it, {} errors, deepest path {} bytes; descriptors held: {} before, {} at most during the walk",
        ms(built),
        took.as_secs_f64(),
        deep.fixed,
        deep.errors,
        deep.deepest,
        fds_before,
        peak.load(std::sync::atomic::Ordering::Relaxed)
    );
    let start = Instant::now();
    let watcher = Watcher::start_with(&config, UserCheck::DataDirOwner).unwrap();
    assert!(watcher.wait_ready(Duration::from_secs(600)));
    let s = watcher.stop();
    println!(
        "watcher start-up with the deep jail: {} ({} watches, {} jail(s) scanned instead of watched)",
        ms(start.elapsed()),
        s.watches,
        s.scanned_jails
    );
    // remove_dir_all of the bench dir copes with the depth (it walks by descriptor too).
}

/// The CPU figure in a perms-watch status line ("..., 12.3 ms CPU").
fn cpu_ms(line: &str) -> f64 {
    line.trim_end()
        .strip_suffix(" ms CPU")
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN)
}

fn sftp_uploads(files: usize) {
    if !Path::new("/usr/sbin/sshd").exists() || !Path::new("/usr/sbin/rsyslogd").exists() {
        println!("sftp uploads: skipped (needs openssh-server and rsyslog)");
        return;
    }
    let mut sb = support::Sandbox::new();
    let alice = sb.user("alice");
    let (key, public) = sb.keygen("alice");
    sb.sftpctl_ok(&["init"]);
    sb.start_rsyslogd();
    sb.sftpctl_ok(&["add-user", &alice, "--key", public.to_str().unwrap()]);
    sb.start_sshd();
    let mut script = String::new();
    for i in 0..files {
        let p = sb.client_dir().join(format!("u{i}"));
        fs::write(&p, [b'u'; 1024]).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
        script.push_str(&format!("put u{i}\n"));
    }
    let mut child = Command::new(support::SFTPCTL)
        .arg("--config")
        .arg(&sb.config)
        .arg("perms-watch")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let ready = lines.next().unwrap().unwrap();
    assert!(ready.contains("ready"), "{ready}");
    let start = Instant::now();
    sb.sftp_ok(&alice, &key, &script);
    let uploaded = start.elapsed();
    let data = sb.data(&alice);
    support::wait_until("every upload group-writable", support::DEADLINE, || {
        (0..files)
            .all(|i| fs::metadata(data.join(format!("u{i}"))).is_ok_and(|m| m.mode() & 0o020 != 0))
    });
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let stopped = lines.next().unwrap().unwrap();
    let _ = child.wait();
    println!(
        "sftp uploads: {files} x 1 KiB put with OpenSSH sftp in one session in {:.2} s; watcher CPU {:.1} ms per 1,000 uploads\n  ({})",
        uploaded.as_secs_f64(),
        (cpu_ms(&stopped) - cpu_ms(&ready)) * 1000.0 / files as f64,
        stopped.trim()
    );
}
