//! Helpers shared by the watcher's integration tests: a private config and state dir, children
//! that are killed when the test ends however it ends, free ports, waiting for files.
#![allow(dead_code)]

use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_sftpctl");

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// A unique temp dir with a config pointing state and spool into it; removed on drop.
pub struct Env {
    pub dir: PathBuf,
    pub config: PathBuf,
    pub port: u16,
}

impl Env {
    pub fn new(name: &str, extra: &str) -> Env {
        let dir = std::env::temp_dir().join(format!(
            "sftpctl-{name}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let port = free_udp_port();
        let config = dir.join("sftpctl.toml");
        let mut env = Env { dir, config, port };
        env.write_config(extra);
        env
    }

    /// `extra` is TOML placed inside `[mail]` (e.g. `transport = "smtp"`), then any tables.
    pub fn write_config(&mut self, extra: &str) {
        let text = format!(
            "[watch]\nsocket = \"{d}/run/watch.sock\"\nlisten = \"127.0.0.1:{port}\"\nstate_dir = \"{d}/state\"\nidle_timeout_secs = 3600\n\n[mail]\nspool_dir = \"{d}/spool\"\nto = [\"admin@example.com\"]\nretry_max_secs = 2\n{extra}\n",
            port = self.port,
            d = self.dir.display()
        );
        std::fs::write(&self.config, text).unwrap();
    }

    pub fn spool(&self) -> PathBuf {
        self.dir.join("spool")
    }

    pub fn state(&self) -> PathBuf {
        self.dir.join("state")
    }

    pub fn command(&self) -> Command {
        let mut c = Command::new(BIN);
        c.arg("--config").arg(&self.config);
        c
    }

    /// `sftpctl watch --stdin --trust-unverified` fed `input` (the captures and the lines made
    /// here carry no credentials): (exit code, stderr). A watcher that refuses to start does
    /// not read its input; that is not an error here.
    pub fn watch_stdin(&self, input: &[u8]) -> (Option<i32>, String) {
        use std::io::Write;
        let mut child = self
            .command()
            .args(["watch", "--stdin", "--trust-unverified"])
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let _ = child.stdin.take().unwrap().write_all(input);
        let out = child.wait_with_output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    pub fn spawn(&self, args: &[&str]) -> Guard {
        let child = self
            .command()
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        Guard(Some(child))
    }

    /// The .eml files in the spool, as text, sorted by name.
    pub fn mails(&self) -> Vec<String> {
        read_dir_texts(&self.spool(), "eml")
    }

    pub fn send(&self, lines: &[String]) {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        for l in lines {
            socket
                .send_to(l.as_bytes(), ("127.0.0.1", self.port))
                .unwrap();
        }
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn read_dir_texts(dir: &Path, ext: &str) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    paths.sort();
    paths
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect()
}

/// A child process killed (and reaped) when dropped.
pub struct Guard(pub Option<Child>);

impl Guard {
    pub fn pid(&self) -> i32 {
        self.0.as_ref().unwrap().id() as i32
    }

    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), signal).unwrap();
    }

    /// Waits for the exit; returns (status code, stderr).
    pub fn wait(mut self, timeout: Duration) -> (Option<i32>, String) {
        let mut child = self.0.take().unwrap();
        let until = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    use std::io::Read;
                    let _ = e.read_to_string(&mut err);
                }
                return (status.code(), err);
            }
            if Instant::now() > until {
                let _ = child.kill();
                let _ = child.wait();
                panic!("child did not exit within {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Kills a pid (a detached daemon) when dropped.
pub struct PidGuard(pub i32);

impl Drop for PidGuard {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.0),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

pub fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn wait_for(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) {
    let until = Instant::now() + timeout;
    while !ok() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Wait until the watcher is listening: its pid file exists and the socket is bound.
pub fn wait_listening(env: &Env) {
    wait_for("the watcher to listen", Duration::from_secs(10), || {
        UdpSocket::bind(("127.0.0.1", env.port)).is_err()
    });
}

/// Forward-format lines of one session (what a remote rsyslog sends to the opt-in UDP
/// listener, which takes them unverified).
pub fn udp_session(host: &str, pid: u32, user: &str, msgs: &[&str]) -> Vec<String> {
    let mut all = vec![format!(
        "session opened for local user {user} from [127.0.0.1]"
    )];
    all.extend(msgs.iter().map(|m| m.to_string()));
    all.push(format!(
        "session closed for local user {user} from [127.0.0.1]"
    ));
    all.iter()
        .map(|m| format!("<38>Nov 27 16:04:26 {host} internal-sftp[{pid}]: {m}"))
        .collect()
}

/// The decoded text part of a mail (quoted-printable undone, soft breaks joined).
pub fn text_part(mail: &str) -> String {
    let start = mail.find("Content-Type: text/plain").expect("a text part");
    let body = &mail[start..];
    let body = &body[body.find("\r\n\r\n").unwrap() + 4..];
    let end = body.find("\r\n--").unwrap_or(body.len());
    decode_qp(&body[..end])
}

fn decode_qp(s: &str) -> String {
    let s = s.replace("=\r\n", "");
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'=' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
            if let Ok(v) = u8::from_str_radix(hex, 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).replace("\r\n", "\n")
}

const PYTHON: &str = "/usr/bin/python3";

/// aiosmtpd on 127.0.0.1:port, writing each message to `maildir/new`.
pub fn start_smtp(port: u16, maildir: &Path) -> Guard {
    let child = Command::new(PYTHON)
        .args(["-m", "aiosmtpd", "-n", "-l"])
        .arg(format!("127.0.0.1:{port}"))
        .args(["-c", "aiosmtpd.handlers.Mailbox"])
        .arg(maildir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("aiosmtpd (apt install python3-aiosmtpd)");
    let guard = Guard(Some(child));
    wait_for("the SMTP server", Duration::from_secs(15), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    guard
}

/// Reports in the outbox not yet acknowledged as delivered (0 when there is no outbox).
pub fn pending_reports(env: &Env) -> usize {
    let Ok(entries) = std::fs::read_dir(env.state().join("outbox")) else {
        return 0;
    };
    let mut n = 0;
    for e in entries.flatten() {
        if e.path().extension().is_some_and(|x| x == "seg") {
            let records = std::fs::read_to_string(e.path()).unwrap().lines().count();
            let acked = std::fs::read_to_string(e.path().with_extension("ack"))
                .map_or(0, |t| t.lines().count());
            n += records - acked;
        }
    }
    n
}

pub fn maildir_mails(maildir: &Path) -> Vec<String> {
    let mut all = Vec::new();
    for sub in ["new", "cur"] {
        let Ok(entries) = std::fs::read_dir(maildir.join(sub)) else {
            continue;
        };
        let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        paths.sort();
        all.extend(paths.iter().map(|p| std::fs::read_to_string(p).unwrap()));
    }
    all
}

/// The plain-text part of a mail as any transport stored it (LF or CRLF).
pub fn text_of(mail: &str) -> String {
    let crlf = mail.replace("\r\n", "\n").replace('\n', "\r\n");
    text_part(&crlf)
}
