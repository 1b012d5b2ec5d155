//! Real-daemon test harness: a [`Sandbox`] per test with its own jail root under `/srv`, its own
//! groups and users, a config that redirects every path sftpctl touches, and private `rsyslogd`,
//! `sshd` and SMTP server processes on loopback. Everything is removed in `Drop`, also when the
//! test panics. Set `SFTPCTL_KEEP_SANDBOX=1` to keep the directory (users and groups are still
//! removed) for a post-mortem.
//!
//! The machine's own /etc/ssh, /etc/pam.d and /etc/rsyslog.d are never touched: every file sftpctl
//! writes lands in the sandbox dir, and the only host files that change are /etc/passwd, /etc/group
//! and friends (accounts named `s<id>...`, removed again) and `/run/sshd` (created if missing, as
//! Debian's own unit does).

#![allow(dead_code)] // every test binary uses a different subset

pub mod attacker;
pub mod snapshot;

pub mod pki;

use std::collections::BTreeSet;
use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

pub use snapshot::Snapshot;

/// The longest any single wait in the harness may take.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// The sftpctl binary under test.
pub const SFTPCTL: &str = env!("CARGO_BIN_EXE_sftpctl");

pub const SSHD: &str = "/usr/sbin/sshd";
const RSYSLOGD: &str = "/usr/sbin/rsyslogd";
/// Debian's interpreter: the `python3` first on PATH may not see Debian's python3-aiosmtpd.
const DEBIAN_PYTHON: &str = "/usr/bin/python3";

/// The uid of an account that must exist.
pub fn uid_of(user: &str) -> u32 {
    nix::unistd::User::from_name(user)
        .unwrap()
        .unwrap_or_else(|| panic!("user {user} does not exist"))
        .uid
        .as_raw()
}

/// The gid of a group that must exist.
pub fn gid_of(group: &str) -> u32 {
    nix::unistd::Group::from_name(group)
        .unwrap()
        .unwrap_or_else(|| panic!("group {group} does not exist"))
        .gid
        .as_raw()
}

/// Polls `cond` every 20 ms until it holds; panics naming `what` after `timeout` (≤ [`DEADLINE`]).
pub fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let timeout = timeout.min(DEADLINE);
    let start = Instant::now();
    loop {
        if cond() {
            return;
        }
        if start.elapsed() > timeout {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Like [`wait_until`] but returns whether `cond` held instead of panicking (for "stays false").
pub fn holds_within(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let timeout = timeout.min(DEADLINE);
    let start = Instant::now();
    loop {
        if cond() {
            return true;
        }
        if start.elapsed() > timeout {
            return false;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Runs `cmd` with `stdin` fed in, collecting its output; kills it and panics after `timeout`.
pub fn run_with_timeout(cmd: &mut Command, stdin: &[u8], timeout: Duration) -> Output {
    let desc = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {desc}: {e}"));
    let mut sin = child.stdin.take().expect("piped stdin");
    let input = stdin.to_vec();
    let writer = thread::spawn(move || {
        let _ = sin.write_all(&input);
    });
    let mut sout = child.stdout.take().expect("piped stdout");
    let mut serr = child.stderr.take().expect("piped stderr");
    let out_reader = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = sout.read_to_end(&mut v);
        v
    });
    let err_reader = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = serr.read_to_end(&mut v);
        v
    });
    let status = match wait_child(&mut child, timeout) {
        Some(s) => s,
        None => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{desc} did not finish within {timeout:?}");
        }
    };
    let _ = writer.join();
    Output {
        status,
        stdout: out_reader.join().unwrap_or_default(),
        stderr: err_reader.join().unwrap_or_default(),
    }
}

fn wait_child(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let start = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) => {}
            Err(_) => return None,
        }
        if start.elapsed() > timeout {
            return None;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// stdout, stderr and exit status in one readable block, for assertion messages.
pub fn show(out: &Output) -> String {
    format!(
        "exit: {:?}\n--- stdout ---\n{}--- stderr ---\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Asserts exit code 0 and returns the output.
#[track_caller]
pub fn assert_ok(out: Output) -> Output {
    assert_eq!(
        out.status.code(),
        Some(0),
        "expected success\n{}",
        show(&out)
    );
    out
}

/// Asserts the exit code and that stderr is exactly one non-empty line.
#[track_caller]
pub fn assert_fails_one_line(out: &Output, code: i32) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "wrong exit code\n{}",
        show(out)
    );
    let err = stderr(out);
    let lines: Vec<&str> = err.lines().collect();
    assert!(
        lines.len() == 1 && !lines[0].trim().is_empty() && err.ends_with('\n'),
        "stderr must be exactly one line\n{}",
        show(out)
    );
}

pub fn free_tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a free loopback TCP port")
        .port()
}

fn port_accepts(port: u16) -> bool {
    TcpStream::connect_timeout(
        &SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(200),
    )
    .is_ok()
}

/// A short id unique among concurrently running sandboxes: a digit then five of [a-z0-9], so
/// that `s<id>` can never be the prefix of a real account name such as `systemd-network`.
fn short_id(attempt: u32) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let mut x = (nanos as u64)
        ^ ((std::process::id() as u64) << 32)
        ^ ((COUNTER.fetch_add(1, Ordering::Relaxed) as u64) << 20)
        ^ (attempt as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    // splitmix64 finalizer
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^= x >> 31;
    const ALNUM: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut id = String::new();
    id.push((b'0' + (x % 10) as u8) as char);
    x /= 10;
    for _ in 0..5 {
        id.push(ALNUM[(x % 36) as usize] as char);
        x /= 36;
    }
    id
}

/// A running daemon started by the sandbox; its stdout+stderr go to `log`.
struct Daemon {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

impl Daemon {
    fn spawn(name: &'static str, cmd: &mut Command, log: PathBuf) -> Daemon {
        let file = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap_or_else(|e| panic!("cannot open {}: {e}", log.display()));
        let child = cmd
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("dup log fd"))
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Daemon { name, child, log }
    }

    fn pid(&self) -> Pid {
        Pid::from_raw(self.child.id() as i32)
    }

    fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// SIGTERM, wait (bounded), then SIGKILL.
    fn stop(&mut self) {
        if self.exited().is_some() {
            return;
        }
        let _ = kill(self.pid(), Signal::SIGTERM);
        if wait_child(&mut self.child, DEADLINE).is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// Datagrams rsyslog sends to `watch.socket`, collected on a thread until dropped (a stand-in
/// for the watcher).
pub struct FeedCapture {
    path: PathBuf,
    lines: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl FeedCapture {
    /// Every datagram so far, lossily decoded.
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().expect("capture lock").clone()
    }

    /// Waits until some datagram contains `needle`; returns it.
    #[track_caller]
    pub fn wait_for(&self, needle: &str) -> String {
        let mut found = None;
        let ok = holds_within(DEADLINE, || {
            found = self.lines().into_iter().find(|l| l.contains(needle));
            found.is_some()
        });
        assert!(
            ok,
            "no datagram on watch.socket containing {needle:?} within {DEADLINE:?}; got:\n{}",
            self.lines().join("\n")
        );
        found.expect("found")
    }
}

impl Drop for FeedCapture {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = fs::remove_file(&self.path);
    }
}

/// One test's private world. See the module docs.
pub struct Sandbox {
    /// Short unique id; every account and group name starts with `s<id>`.
    pub id: String,
    /// `/srv/sftpctl-t-<id>`.
    pub dir: PathBuf,
    /// The config's `root` (`<dir>/jails`, created by `init`).
    pub root: PathBuf,
    /// `<dir>/etc/sftpctl.toml`.
    pub config: PathBuf,
    /// `group` in the config.
    pub group: String,
    /// `jail_group` in the config.
    pub jail_group: String,
    /// A free admin name `s<id>adm` (the config names no admin: pass it to `init --admin`).
    pub admin: String,
    /// The private sshd's port.
    pub ssh_port: u16,
    /// `watch.socket`: the trusted feed (`<dir>/run/watch/watch.sock`).
    pub watch_socket: PathBuf,
    /// A free loopback UDP port, held until a test takes it for `watch.listen` (the opt-in
    /// UDP listener, not in the default config).
    pub watch_addr: SocketAddr,
    /// `rsyslog.log_file`.
    pub log_file: PathBuf,
    udp_reserved: Option<UdpSocket>,
    rsyslogd: Option<Daemon>,
    sshd: Option<Daemon>,
    smtp: Option<Daemon>,
    watcher: Option<Daemon>,
}

impl Sandbox {
    /// Creates the sandbox; panics with a clear message unless running as root.
    pub fn new() -> Sandbox {
        assert!(
            nix::unistd::geteuid().is_root(),
            "the end-to-end tests create users, groups, a jail root under /srv and private \
             sshd/rsyslogd processes: run them as root (e.g. `sudo -E cargo nextest run`)"
        );
        fs::create_dir_all("/srv").expect("create /srv");
        let (id, dir) = (0..100)
            .find_map(|attempt| {
                let id = short_id(attempt);
                let dir = PathBuf::from(format!("/srv/sftpctl-t-{id}"));
                match fs::DirBuilder::new().mode(0o755).create(&dir) {
                    Ok(()) => Some((id, dir)),
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => None,
                    Err(e) => panic!("cannot create {}: {e}", dir.display()),
                }
            })
            .expect("a free sandbox dir name");
        // Everything below is owned by root and not group/world-writable: sshd's chroot rule.
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).expect("chmod sandbox");

        let udp = UdpSocket::bind("127.0.0.1:0").expect("bind a free loopback UDP port");
        let watch_addr = udp.local_addr().expect("udp addr");
        let mut sb = Sandbox {
            root: dir.join("jails"),
            config: dir.join("etc/sftpctl.toml"),
            group: format!("s{id}g"),
            jail_group: format!("s{id}j"),
            admin: format!("s{id}adm"),
            ssh_port: free_tcp_port(),
            watch_addr,
            watch_socket: dir.join("run/watch/watch.sock"),
            log_file: dir.join("log/sftp.log"),
            udp_reserved: Some(udp),
            rsyslogd: None,
            sshd: None,
            smtp: None,
            watcher: None,
            id,
            dir,
        };
        sb.populate();
        sb
    }

    /// `s<id><suffix>`: a user name no other sandbox or real account uses.
    pub fn user(&self, suffix: &str) -> String {
        format!("s{}{suffix}", self.id)
    }

    /// A path inside the sandbox dir.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }

    /// `<root>/<user>` (the jail).
    pub fn jail(&self, user: &str) -> PathBuf {
        self.root.join(user)
    }

    /// `<root>/<user>/data`.
    pub fn data(&self, user: &str) -> PathBuf {
        self.root.join(user).join("data")
    }

    /// `<dir>/run/client`: the sftp client's working directory (local files for put/get).
    pub fn client_dir(&self) -> PathBuf {
        self.dir.join("run/client")
    }

    fn mkdir(&self, rel: &str) -> PathBuf {
        let p = self.dir.join(rel);
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(&p)
            .unwrap_or_else(|e| panic!("mkdir {}: {e}", p.display()));
        p
    }

    fn write(&self, rel: &str, text: &str, mode: u32) -> PathBuf {
        let p = self.dir.join(rel);
        fs::write(&p, text).unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).expect("chmod");
        p
    }

    fn populate(&mut self) {
        for d in [
            "etc/ssh/sshd_config.d",
            "etc/pam.d",
            "etc/rsyslog.d",
            "etc/logrotate.d",
            "systemd",
            "state",
            "spool",
            "log",
            "keys",
            "run/rsyslog",
            "run/client",
        ] {
            self.mkdir(d);
        }
        // The sftp client runs as root with the sandbox's keys; it must own them 0600.
        fs::set_permissions(self.path("keys"), fs::Permissions::from_mode(0o700)).expect("chmod");
        // sshd refuses to start (and `sshd -t` to validate) without its privsep dir.
        let _ = fs::DirBuilder::new().mode(0o755).create("/run/sshd");

        let hostkey = self.path("etc/ssh/ssh_host_ed25519_key");
        let out = run_with_timeout(
            Command::new("ssh-keygen")
                .args([
                    "-q",
                    "-t",
                    "ed25519",
                    "-N",
                    "",
                    "-C",
                    "sftpctl-test-host",
                    "-f",
                ])
                .arg(&hostkey),
            b"",
            DEADLINE,
        );
        assert!(out.status.success(), "ssh-keygen host key\n{}", show(&out));

        let d = self.dir.display().to_string();
        self.write(
            "etc/ssh/sshd_config",
            &format!(
                "# Private sshd for an sftpctl test sandbox, shaped like Debian's.\n\
                 Include {d}/etc/ssh/sshd_config.d/*.conf\n\
                 \n\
                 Port {port}\n\
                 ListenAddress 127.0.0.1\n\
                 HostKey {d}/etc/ssh/ssh_host_ed25519_key\n\
                 PidFile {d}/run/sshd.pid\n\
                 UsePAM no\n\
                 PasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\n\
                 LogLevel VERBOSE\n\
                 \n\
                 # override default of no subsystems\n\
                 Subsystem sftp /usr/lib/openssh/sftp-server\n",
                port = self.ssh_port
            ),
            0o644,
        );
        self.write(
            "etc/pam.d/sshd",
            "# PAM configuration for the Secure Shell service (test copy)\n\
             @include common-auth\n\
             account    required     pam_nologin.so\n\
             @include common-account\n\
             session    required     pam_loginuid.so\n\
             @include common-session\n\
             @include common-password\n",
            0o644,
        );
        self.write(
            "etc/rsyslog.conf",
            &format!(
                "# Private rsyslogd for an sftpctl test sandbox.\n\
                 module(load=\"imuxsock\" SysSock.Name=\"{d}/run/hostlog\") # the host's /dev/log, shaped like Debian's\n\
                 global(workDirectory=\"{d}/run/rsyslog\")\n\
                 include(file=\"{d}/etc/rsyslog.d/*.conf\" mode=\"optional\")\n\
                 *.* {d}/run/rsyslog-other.log\n"
            ),
            0o644,
        );
        let config = self.config_text_default();
        self.write("etc/sftpctl.toml", &config, 0o644);
    }

    /// The config the sandbox starts with: every path, group and service command redirected.
    pub fn config_text_default(&self) -> String {
        let d = self.dir.display().to_string();
        format!(
            r#"# sftpctl config of test sandbox {id}
root = "{d}/jails"
data_dir = "data"
group = "{group}"
jail_group = "{jail_group}"
umask = "0007"
sftpctl_bin = "{bin}"
user_dir = "{d}/etc/sftpctl/users"

[sshd]
config = "{d}/etc/ssh/sshd_config"
dropin = "{d}/etc/ssh/sshd_config.d/50-sftpctl.conf"
authorized_keys_dir = "{d}/etc/ssh/sftpctl/authorized_keys"
binary = "{sshd}"
reload = []

[pam]
file = "{d}/etc/pam.d/sshd"

[rsyslog]
config = "{d}/etc/rsyslog.d/50-sftpctl.conf"
main_config = "{d}/etc/rsyslog.conf"
log_file = "{d}/log/sftp.log"
binary = "{rsyslogd}"
restart = []
rotate = ["/usr/bin/pkill", "-HUP", "-F", "{d}/run/rsyslogd.pid"]

[logrotate]
config = "{d}/etc/logrotate.d/sftpctl"

[systemd]
unit_dir = "{d}/systemd"
daemon_reload = []
enable_watch = []
disable_watch = []

[watch]
socket = "{d}/run/watch/watch.sock"
state_dir = "{d}/state"

[mail]
spool_dir = "{d}/spool"
"#,
            id = self.id,
            group = self.group,
            jail_group = self.jail_group,
            bin = SFTPCTL,
            sshd = SSHD,
            rsyslogd = RSYSLOGD,
        )
    }

    /// Replaces the config file's text (for tests of bad configs).
    pub fn set_config(&self, text: &str) {
        fs::write(&self.config, text).expect("write config");
    }

    /// Rewrites the config replacing `from` (must occur) with `to`.
    pub fn edit_config(&self, from: &str, to: &str) {
        let text = fs::read_to_string(&self.config).expect("read config");
        assert!(text.contains(from), "config has no {from:?}:\n{text}");
        self.set_config(&text.replacen(from, to, 1));
    }

    /// `sftpctl --config <sandbox config> ARGS` as root.
    pub fn sftpctl(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(SFTPCTL);
        cmd.arg("--config").arg(&self.config).args(args);
        cmd.env_remove("SFTPCTL_CONFIG");
        run_with_timeout(&mut cmd, b"", DEADLINE)
    }

    /// Like [`Sandbox::sftpctl`] but asserts exit 0.
    #[track_caller]
    pub fn sftpctl_ok(&self, args: &[&str]) -> Output {
        let out = self.sftpctl(args);
        assert_eq!(
            out.status.code(),
            Some(0),
            "sftpctl {args:?} failed\n{}",
            show(&out)
        );
        out
    }

    /// The same command run as `nobody:nogroup` with no supplementary groups (via setpriv).
    pub fn sftpctl_as_nobody(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new("setpriv");
        cmd.args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"])
            .arg(SFTPCTL)
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .env_remove("SFTPCTL_CONFIG");
        run_with_timeout(&mut cmd, b"", DEADLINE)
    }

    /// Generates an ed25519 key pair `<dir>/keys/<name>` (+ `.pub`); returns both paths.
    pub fn keygen(&self, name: &str) -> (PathBuf, PathBuf) {
        let private = self.path("keys").join(name);
        let out = run_with_timeout(
            Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-C"])
                .arg(format!("{name}@sftpctl-test"))
                .arg("-f")
                .arg(&private),
            b"",
            DEADLINE,
        );
        assert!(out.status.success(), "ssh-keygen {name}\n{}", show(&out));
        let public = private.with_extension("pub");
        (private, public)
    }

    /// `<dir>/run/hostlog`: the private rsyslogd's system socket, the sandbox's /dev/log.
    pub fn host_socket(&self) -> PathBuf {
        self.path("run/hostlog")
    }

    /// `<root>/dev/log`: rsyslog's listen socket for the jails.
    pub fn root_socket(&self) -> PathBuf {
        self.root.join("dev/log")
    }

    fn socket_inode(&self) -> Option<u64> {
        fs::symlink_metadata(self.root_socket())
            .ok()
            .filter(|m| m.file_type().is_socket())
            .map(|m| m.ino())
    }

    /// Whether a datagram socket is bound at `path` (a stale socket file refuses connections).
    pub fn socket_listens(path: &Path) -> bool {
        std::os::unix::net::UnixDatagram::unbound()
            .and_then(|s| s.connect(path))
            .is_ok()
    }

    /// Starts `rsyslogd -n -f <dir>/etc/rsyslog.conf -i <pidfile>` and waits until
    /// `<root>/dev/log` accepts datagrams.
    pub fn start_rsyslogd(&mut self) {
        assert!(self.rsyslogd.is_none(), "rsyslogd already running");
        let mut cmd = Command::new(RSYSLOGD);
        cmd.arg("-n")
            .arg("-f")
            .arg(self.path("etc/rsyslog.conf"))
            .arg("-i")
            .arg(self.path("run/rsyslogd.pid"));
        let mut d = Daemon::spawn("rsyslogd", &mut cmd, self.path("run/rsyslogd.log"));
        let socket = self.root_socket();
        let mut exited = None;
        let ok = holds_within(DEADLINE, || {
            exited = d.exited();
            exited.is_some() || Self::socket_listens(&socket)
        });
        let log = d.log_text();
        self.rsyslogd = Some(d);
        assert!(
            ok && exited.is_none(),
            "rsyslogd did not listen on {} (exit {exited:?})\n{log}",
            socket.display()
        );
    }

    /// Stops rsyslogd (SIGTERM, waits for its exit), removes nothing, starts it again and waits
    /// until the socket listens. rsyslogd makes a new socket: while jails hold hard links to the
    /// old one it gets a new inode, and those links are stale (FACTS.md). (Without any other
    /// link the filesystem may hand the freed inode number out again.)
    pub fn restart_rsyslogd(&mut self) {
        let mut d = self.rsyslogd.take().expect("rsyslogd is not running");
        d.stop();
        let socket = self.root_socket();
        assert!(
            !Self::socket_listens(&socket),
            "{} still listens after rsyslogd exited",
            socket.display()
        );
        self.start_rsyslogd();
    }

    /// Stops rsyslogd (SIGTERM, waits for its exit: it writes out its queues first).
    pub fn stop_rsyslogd(&mut self) {
        if let Some(mut d) = self.rsyslogd.take() {
            d.stop();
        }
    }

    /// The inode of `<root>/dev/log`, if it is a socket.
    pub fn root_socket_inode(&self) -> Option<u64> {
        self.socket_inode()
    }

    /// The private rsyslogd's own output (for assertion messages).
    pub fn rsyslogd_log(&self) -> String {
        self.rsyslogd
            .as_ref()
            .map(|d| d.log_text())
            .unwrap_or_default()
    }

    /// Starts `sshd -D -e -f <dir>/etc/ssh/sshd_config` and waits until its port accepts.
    pub fn start_sshd(&mut self) {
        assert!(self.sshd.is_none(), "sshd already running");
        let _ = fs::DirBuilder::new().mode(0o755).create("/run/sshd");
        let mut cmd = Command::new(SSHD);
        cmd.arg("-D")
            .arg("-e")
            .arg("-f")
            .arg(self.path("etc/ssh/sshd_config"));
        let mut d = Daemon::spawn("sshd", &mut cmd, self.path("run/sshd.log"));
        let port = self.ssh_port;
        let mut exited = None;
        let ok = holds_within(DEADLINE, || {
            exited = d.exited();
            exited.is_some() || port_accepts(port)
        });
        let log = d.log_text();
        self.sshd = Some(d);
        assert!(
            ok && exited.is_none(),
            "sshd did not accept on 127.0.0.1:{port} (exit {exited:?})\n{log}"
        );
    }

    /// Starts the private sshd logging through syslog to the sandbox's host socket, as a
    /// real host's sshd does to /dev/log (not `-e`: then it logs only to stderr). It runs in
    /// a mount namespace of its own where `/dev` is an overlay whose `log` is the sandbox's
    /// `run/hostlog`: the host's /dev stays as it is. `sshd_log` is then empty.
    pub fn start_sshd_syslog(&mut self) {
        assert!(self.sshd.is_none(), "sshd already running");
        let _ = fs::DirBuilder::new().mode(0o755).create("/run/sshd");
        let ns = self.mkdir("run/devns");
        let script = format!(
            "set -e; mount -t tmpfs sftpctl-test {ns}; mkdir {ns}/upper {ns}/work; \
             mount -t overlay overlay -o lowerdir=/dev,upperdir={ns}/upper,workdir={ns}/work /dev; \
             touch /dev/log; mount --bind {log} /dev/log; exec {SSHD} -D -f {config}",
            ns = ns.display(),
            log = self.host_socket().display(),
            config = self.path("etc/ssh/sshd_config").display(),
        );
        let mut cmd = Command::new("unshare");
        cmd.args(["-m", "--propagation", "private", "sh", "-c", &script]);
        let mut d = Daemon::spawn("sshd", &mut cmd, self.path("run/sshd.log"));
        let port = self.ssh_port;
        let mut exited = None;
        let ok = holds_within(DEADLINE, || {
            exited = d.exited();
            exited.is_some() || port_accepts(port)
        });
        let log = d.log_text();
        self.sshd = Some(d);
        assert!(
            ok && exited.is_none(),
            "sshd did not accept on 127.0.0.1:{port} (exit {exited:?})\n{log}"
        );
    }

    /// SIGHUP to the private sshd: it re-executes itself and re-reads its config.
    pub fn reload_sshd(&mut self) {
        let d = self.sshd.as_ref().expect("sshd is not running");
        kill(d.pid(), Signal::SIGHUP).expect("SIGHUP sshd");
        let port = self.ssh_port;
        thread::sleep(Duration::from_millis(100));
        wait_until("sshd to accept again after SIGHUP", DEADLINE, || {
            port_accepts(port)
        });
    }

    /// The private sshd's stderr (`-e`): auth decisions, chroot errors.
    pub fn sshd_log(&self) -> String {
        self.sshd.as_ref().map(|d| d.log_text()).unwrap_or_default()
    }

    /// The OpenSSH `sftp -b -` command as `user` with `key` against the private sshd, run from
    /// [`Sandbox::client_dir`]; commands come on its stdin.
    pub fn sftp_command(&self, user: &str, key: &Path) -> Command {
        let mut cmd = Command::new("sftp");
        cmd.current_dir(self.client_dir())
            .args(["-b", "-", "-F", "/dev/null", "-P"])
            .arg(self.ssh_port.to_string())
            .arg("-i")
            .arg(key)
            .args([
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "UserKnownHostsFile=/dev/null",
                "-o",
                "BatchMode=yes",
                "-o",
                "IdentitiesOnly=yes",
                "-o",
                "ConnectTimeout=5",
                "-o",
                "LogLevel=ERROR",
            ])
            .arg(format!("{user}@127.0.0.1"));
        cmd
    }

    /// [`Sandbox::sftp_command`] running `script`, with a timeout.
    pub fn sftp(&self, user: &str, key: &Path, script: &str) -> Output {
        run_with_timeout(
            &mut self.sftp_command(user, key),
            script.as_bytes(),
            DEADLINE,
        )
    }

    /// [`Sandbox::sftp`] asserting success; shows sshd's log on failure.
    #[track_caller]
    pub fn sftp_ok(&self, user: &str, key: &Path, script: &str) -> Output {
        let out = self.sftp(user, key, script);
        assert!(
            out.status.success(),
            "sftp as {user} failed\nscript:\n{script}\n{}\n--- sshd log ---\n{}",
            show(&out),
            self.sshd_log()
        );
        out
    }

    /// Binds `watch.socket` (directory root 0700, socket 0600, as the watcher makes them) and
    /// collects what rsyslog sends there. Only one capture (or watcher) at a time.
    pub fn feed_capture(&mut self) -> FeedCapture {
        let path = self.watch_socket.clone();
        let dir = path.parent().expect("socket dir");
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .expect("socket dir");
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).expect("chmod socket dir");
        let _ = fs::remove_file(&path);
        let sock = std::os::unix::net::UnixDatagram::bind(&path).expect("bind watch.socket");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).expect("chmod socket");
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .expect("socket timeout");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (l2, s2) = (lines.clone(), stop.clone());
        let thread = thread::spawn(move || {
            let mut buf = vec![0u8; 65536];
            while !s2.load(Ordering::Relaxed) {
                if let Ok(n) = sock.recv(&mut buf) {
                    let text = String::from_utf8_lossy(&buf[..n]).trim_end().to_string();
                    l2.lock().expect("capture lock").push(text);
                }
            }
        });
        FeedCapture {
            path,
            lines,
            stop,
            thread: Some(thread),
        }
    }

    /// Starts `sftpctl watch --foreground` (output in `<dir>/run/watch.log`) and waits until
    /// it is bound to `watch.socket`; stopped when the sandbox ends.
    pub fn start_watcher(&mut self) {
        assert!(self.watcher.is_none(), "the watcher already runs");
        let mut cmd = Command::new(SFTPCTL);
        cmd.arg("--config")
            .arg(&self.config)
            .args(["watch", "--foreground"])
            .env_remove("SFTPCTL_CONFIG");
        let mut d = Daemon::spawn("watcher", &mut cmd, self.path("run/watch.log"));
        let mut exited = None;
        let ok = holds_within(DEADLINE, || {
            exited = d.exited();
            exited.is_some() || Self::socket_listens(&self.watch_socket)
        });
        let log = d.log_text();
        self.watcher = Some(d);
        assert!(
            ok && exited.is_none(),
            "the watcher did not start (exit {exited:?})\n{log}"
        );
    }

    /// The pid of the watcher started by [`Sandbox::start_watcher`].
    pub fn watcher_pid(&self) -> Option<u32> {
        self.watcher.as_ref().map(|d| d.child.id())
    }

    /// Stops the watcher started by [`Sandbox::start_watcher`] (SIGTERM, waits).
    pub fn stop_watcher(&mut self) {
        if let Some(mut d) = self.watcher.take() {
            d.stop();
        }
    }

    /// Frees the reserved UDP port (for a test that opts in to `watch.listen`) and returns it.
    pub fn take_udp_port(&mut self) -> SocketAddr {
        drop(self.udp_reserved.take());
        self.watch_addr
    }

    /// Starts Debian's aiosmtpd with a Mailbox handler writing into `maildir`; returns its port.
    pub fn start_smtp(&mut self, maildir: &Path) -> u16 {
        assert!(self.smtp.is_none(), "SMTP server already running");
        let port = free_tcp_port();
        let mut cmd = Command::new(DEBIAN_PYTHON);
        cmd.args(["-m", "aiosmtpd", "-n", "-l"])
            .arg(format!("127.0.0.1:{port}"))
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(maildir);
        let mut d = Daemon::spawn("aiosmtpd", &mut cmd, self.path("run/smtp.log"));
        let mut exited = None;
        let ok = holds_within(DEADLINE, || {
            exited = d.exited();
            exited.is_some() || port_accepts(port)
        });
        let log = d.log_text();
        self.smtp = Some(d);
        assert!(
            ok && exited.is_none(),
            "aiosmtpd did not accept on 127.0.0.1:{port} (exit {exited:?})\n{log}"
        );
        port
    }

    /// Waits until the log file has a line containing `needle`; returns the line.
    #[track_caller]
    pub fn wait_log_line(&self, needle: &str) -> String {
        let mut found = None;
        let ok = holds_within(DEADLINE, || {
            found = self.log_lines().into_iter().find(|l| l.contains(needle));
            found.is_some()
        });
        assert!(
            ok,
            "no line containing {needle:?} in {} within {DEADLINE:?}; it holds:\n{}\n--- rsyslogd ---\n{}",
            self.log_file.display(),
            self.log_lines().join("\n"),
            self.rsyslogd_log()
        );
        found.expect("found")
    }

    /// The log file's lines (empty when it does not exist yet).
    pub fn log_lines(&self) -> Vec<String> {
        fs::read_to_string(&self.log_file)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// The names in /etc/passwd and /etc/group that belong to this sandbox (`s<id>...`).
    pub fn accounts(&self) -> (BTreeSet<String>, BTreeSet<String>) {
        let prefix = format!("s{}", self.id);
        let names = |file: &str| -> BTreeSet<String> {
            fs::read_to_string(file)
                .unwrap_or_default()
                .lines()
                .filter_map(|l| l.split(':').next())
                .filter(|n| n.starts_with(&prefix))
                .map(str::to_string)
                .collect()
        };
        (names("/etc/passwd"), names("/etc/group"))
    }

    /// Hashes and metadata of every file under the sandbox dir (except the harness's own
    /// `run/`: pid files, daemon logs, client files) plus the host account lines that mention
    /// this sandbox's names and the host files sftpctl must never touch.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot::take(&self.dir, &format!("s{}", self.id), &[])
    }

    /// [`Sandbox::snapshot`] that also records the account lines of `names` (e.g. `daemon`):
    /// their passwd/shadow lines and every group line that has them as a member.
    pub fn snapshot_with(&self, names: &[&str]) -> Snapshot {
        Snapshot::take(&self.dir, &format!("s{}", self.id), names)
    }

    fn kill_user_processes(&self, users: &BTreeSet<String>) {
        let uids: BTreeSet<u32> = users
            .iter()
            .filter_map(|u| nix::unistd::User::from_name(u).ok().flatten())
            .map(|u| u.uid.as_raw())
            .collect();
        if uids.is_empty() {
            return;
        }
        let Ok(entries) = fs::read_dir("/proc") else {
            return;
        };
        for e in entries.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
                continue;
            };
            if let Ok(m) = fs::metadata(e.path()) {
                if uids.contains(&m.uid()) {
                    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                }
            }
        }
    }
}

impl Default for Sandbox {
    fn default() -> Self {
        Sandbox::new()
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        for d in [
            self.watcher.as_mut(),
            self.sshd.as_mut(),
            self.rsyslogd.as_mut(),
            self.smtp.as_mut(),
        ]
        .into_iter()
        .flatten()
        {
            d.stop();
            let _ = d.name;
        }
        let (users, groups) = self.accounts();
        self.kill_user_processes(&users);
        for u in &users {
            // No -r: a jailed user's home is "/data" on the host. The sandbox dir goes below.
            let out = Command::new("userdel").arg("-f").arg(u).output();
            if let Ok(o) = out {
                if !o.status.success() {
                    eprintln!("sandbox cleanup: userdel {u}: {}", stderr(&o).trim());
                }
            }
            let spool = Path::new("/var/mail").join(u);
            let _ = fs::remove_file(spool);
        }
        // userdel may have removed a user's own group already.
        let (_, groups_left) = self.accounts();
        for g in groups.intersection(&groups_left) {
            let out = Command::new("groupdel").arg(g).output();
            if let Ok(o) = out {
                if !o.status.success() {
                    eprintln!("sandbox cleanup: groupdel {g}: {}", stderr(&o).trim());
                }
            }
        }
        if std::env::var_os("SFTPCTL_KEEP_SANDBOX").is_some() {
            eprintln!("sandbox kept: {}", self.dir.display());
        } else if let Err(e) = fs::remove_dir_all(&self.dir) {
            eprintln!("sandbox cleanup: rm -rf {}: {e}", self.dir.display());
        }
    }
}
