//! `cargo bench --bench watch`: the watcher's throughput and memory.
//!
//! 1. Generates a 760,000-line log of 20,000 sessions (20 operations each, 200 open at once).
//! 2. Parse-only rate, next to what `grep -c internal-sftp` reads on the same file.
//! 3. Where a report's time goes, stage by stage on one thread, in memory (parse + sessions,
//!    outbox JSON, the three tera templates, the lettre message), the raw cost of creating
//!    20,000 files in the spool dir the way the file transport does (+ one `syncfs`), and the
//!    floor: 20,000 empty files made by two threads, nothing else.
//! 4. Replays it through `sftpctl watch --stdin` with the file transport: lines/s, reports/s.
//! 5. Resident memory of `sftpctl watch --stdin` holding 10,000 open sessions.
//! 6. UDP at 20,000 lines/s for 60 s with a real SMTP server stalled: datagrams dropped by the
//!    socket; then the server answers and every report must arrive (`WATCH_BENCH_STALL_SECS`
//!    shortens the stall). `WATCH_BENCH_ONLY=udp` runs this part alone.
//!
//! `WATCH_BENCH_DIR=/dev/shm` puts state and spool on tmpfs, to separate our cost from the disk's.

use std::io::Write;
use std::net::{TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sftpctl::watch::parse::{parse_line, Parsed};

const BIN: &str = env!("CARGO_BIN_EXE_sftpctl");
const SESSIONS: usize = 20_000;
const CONCURRENT: usize = 200;

/// The 38 messages of one session: open, 8 uploads, 8 downloads, rename, remove, mkdir,
/// chmod, close.
fn session_messages(n: usize) -> Vec<String> {
    let mut m = vec!["session opened for local user alice from [192.0.2.7]".to_string()];
    for i in 0..8 {
        m.push(format!(
            "open \"/data/in/file-{n}-{i}.pdf\" flags WRITE,CREATE,TRUNCATE mode 0644"
        ));
        m.push(format!(
            "close \"/data/in/file-{n}-{i}.pdf\" bytes read 0 written {}",
            1000 + i * 4096
        ));
    }
    for i in 0..8 {
        m.push(format!(
            "open \"/data/out/r\\303\\251sum\\303\\251-{i}.txt\" flags READ mode 0666"
        ));
        m.push(format!(
            "close \"/data/out/r\\303\\251sum\\303\\251-{i}.txt\" bytes read {} written 0",
            500 + i
        ));
    }
    m.push(format!(
        "posix-rename old \"/data/in/file-{n}-0.pdf\" new \"/data/in/done-{n}.pdf\""
    ));
    m.push(format!("remove name \"/data/in/file-{n}-1.pdf\""));
    m.push(format!("mkdir name \"/data/archive-{n}\" mode 0777"));
    m.push(format!("set \"/data/in/file-{n}-2.pdf\" mode 0600"));
    m.push("session closed for local user alice from [192.0.2.7]".to_string());
    m
}

/// Interleaves sessions, `CONCURRENT` open at once; pids repeat as they would.
fn generate(sessions: usize, close: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(sessions * 38 * 110);
    let mut slots: Vec<(usize, Vec<String>, usize)> = Vec::new();
    let mut next = 0;
    let mut t: u64 = 0;
    loop {
        while slots.len() < CONCURRENT && next < sessions {
            let mut msgs = session_messages(next);
            if !close {
                msgs.pop();
            }
            slots.push((next, msgs, 0));
            next += 1;
        }
        if slots.is_empty() {
            break;
        }
        let mut i = 0;
        while i < slots.len() {
            let (n, msgs, pos) = &mut slots[i];
            let secs = t / 1000;
            writeln!(
                out,
                "2026-11-27T{:02}:{:02}:{:02}.{:06}+00:00 vm internal-sftp[{}]: {}",
                (secs / 3600) % 24,
                (secs / 60) % 60,
                secs % 60,
                t % 1_000_000,
                10_000 + (*n % 30_000),
                msgs[*pos]
            )
            .unwrap();
            t += 1;
            *pos += 1;
            if *pos == msgs.len() {
                slots.swap_remove(i);
            } else {
                i += 1;
            }
        }
    }
    out
}

/// Under `WATCH_BENCH_DIR` (e.g. /dev/shm to take the disk out of the numbers) or the temp dir.
fn temp_dir(name: &str) -> PathBuf {
    let base = std::env::var_os("WATCH_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let dir = base.join(format!("sftpctl-bench-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn config(dir: &Path, extra: &str) -> PathBuf {
    let path = dir.join("sftpctl.toml");
    std::fs::write(
        &path,
        format!(
            "[watch]\nstate_dir = \"{d}/state\"\n{extra}\n[mail]\nspool_dir = \"{d}/spool\"\n",
            d = dir.display()
        ),
    )
    .unwrap();
    path
}

fn vm_kib(pid: u32, key: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` runs us too: keep that quick.
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return;
    }
    if std::env::var("WATCH_BENCH_ONLY").is_ok_and(|p| p == "udp") {
        udp_with_stalled_smtp();
        return;
    }
    let dir = temp_dir("main");
    let log = generate(SESSIONS, true);
    let lines = log.iter().filter(|&&b| b == b'\n').count();
    let log_path = dir.join("sftp.log");
    std::fs::write(&log_path, &log).unwrap();
    println!(
        "input: {lines} lines, {SESSIONS} sessions, {CONCURRENT} open at once, {:.1} MB",
        log.len() as f64 / 1e6
    );

    // Parse only.
    let start = Instant::now();
    let mut sftp = 0;
    for line in log.split(|&b| b == b'\n') {
        if let Parsed::Sftp(_) = parse_line(line, 1_796_000_000) {
            sftp += 1;
        }
    }
    let parse = start.elapsed();
    assert_eq!(sftp, lines);
    let start = Instant::now();
    let grep = Command::new("grep")
        .args(["-c", "internal-sftp"])
        .arg(&log_path)
        .output()
        .unwrap();
    let grep_time = start.elapsed();
    println!(
        "parse only:            {:>8.3} s  {:>12.0} lines/s   (grep -c internal-sftp: {:.3} s, {:.0} lines/s, counted {})",
        parse.as_secs_f64(),
        lines as f64 / parse.as_secs_f64(),
        grep_time.as_secs_f64(),
        lines as f64 / grep_time.as_secs_f64(),
        String::from_utf8_lossy(&grep.stdout).trim()
    );

    let built = stages(&log);

    // Full replay: parse, sessions, reports, outbox (synced), delivery to .eml files.
    let cfg = config(&dir, "");
    let start = Instant::now();
    let out = Command::new(BIN)
        .arg("--config")
        .arg(&cfg)
        .args(["watch", "--stdin", "--trust-unverified"])
        .stdin(std::fs::File::open(&log_path).unwrap())
        .output()
        .unwrap();
    let replay = start.elapsed();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mails = std::fs::read_dir(dir.join("spool")).unwrap().count();
    assert_eq!(mails, SESSIONS);
    println!(
        "watch --stdin (file):  {:>8.3} s  {:>12.0} lines/s  {:>8.0} reports/s  ({mails} .eml files; target 0.3 s, Python original about 12 s)",
        replay.as_secs_f64(),
        lines as f64 / replay.as_secs_f64(),
        mails as f64 / replay.as_secs_f64()
    );

    // `report` (no mail, no outbox): the same per-session work without the disk.
    let start = Instant::now();
    let out = Command::new(BIN)
        .arg("--config")
        .arg(&cfg)
        .args(["report", "--json", "--trust-unverified"])
        .arg(&log_path)
        .stdout(Stdio::null())
        .output()
        .unwrap();
    let report = start.elapsed();
    assert!(out.status.success());
    println!(
        "report --json:         {:>8.3} s  {:>12.0} lines/s  {:>8.0} reports/s",
        report.as_secs_f64(),
        lines as f64 / report.as_secs_f64(),
        SESSIONS as f64 / report.as_secs_f64()
    );

    file_floor(&built, &dir);
    drop(built);

    // Memory with 10,000 sessions open at once (each with its 36 operations so far).
    let open_dir = temp_dir("rss");
    let cfg = config(&open_dir, "max_open_sessions = 20000");
    let mut child = Command::new(BIN)
        .arg("--config")
        .arg(&cfg)
        .args(["watch", "--stdin", "--trust-unverified"])
        .stdin(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut open_log = Vec::new();
    {
        // 10,000 at once: every session opened, none closed.
        let mut all: Vec<Vec<String>> = (0..10_000)
            .map(|n| {
                let mut m = session_messages(n);
                m.pop();
                m
            })
            .collect();
        for pos in 0..all[0].len() {
            for (n, msgs) in all.iter_mut().enumerate() {
                writeln!(
                    open_log,
                    "2026-11-27T16:00:00.000000+00:00 vm internal-sftp[{}]: {}",
                    10_000 + n,
                    msgs[pos]
                )
                .unwrap();
            }
        }
    }
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(&open_log).unwrap();
    stdin.flush().unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let rss = vm_kib(pid, "VmRSS:");
    let hwm = vm_kib(pid, "VmHWM:");
    drop(stdin);
    let _ = child.wait();
    println!(
        "10,000 open sessions:  RSS {:.1} MiB (peak {:.1} MiB; target <= 64 MiB)",
        rss as f64 / 1024.0,
        hwm as f64 / 1024.0
    );

    udp_with_stalled_smtp();
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&open_dir);
}

fn per(what: &str, t: Duration, n: usize) {
    println!(
        "  {what:<34} {:>6.3} s  {:>6.1} us/report",
        t.as_secs_f64(),
        t.as_secs_f64() * 1e6 / n as f64
    );
}

/// Each stage of the replay alone, on one thread, in memory: what one report costs.
/// Returns (report id, mail) for [`file_floor`].
fn stages(log: &[u8]) -> Vec<(String, Vec<u8>)> {
    use sftpctl::config::Config;
    use sftpctl::watch::mail::{build_message_to, Addresses, Templates};
    use sftpctl::watch::session::{Limits, Sessions};
    println!("one thread, in memory:");
    let start = Instant::now();
    let mut sessions = Sessions::new(Limits::default(), "/data");
    let mut reports = Vec::new();
    for line in log.split(|&b| b == b'\n') {
        sessions.apply(parse_line(line, 1_796_000_000), 0, &mut reports);
    }
    let n = reports.len();
    per("parse + sessions -> reports", start.elapsed(), n);
    let start = Instant::now();
    let records: Vec<Vec<u8>> = reports
        .iter()
        .map(|r| serde_json::to_vec(r).unwrap())
        .collect();
    per("report -> outbox JSON", start.elapsed(), n);
    let templates = Templates::load(None).unwrap();
    let start = Instant::now();
    let contexts: Vec<tera::Context> = records
        .iter()
        .map(|r| tera::Context::from_value(serde_json::from_slice(r).unwrap()).unwrap())
        .collect();
    per("outbox JSON -> tera context", start.elapsed(), n);
    let start = Instant::now();
    let rendered: Vec<_> = contexts
        .iter()
        .map(|c| templates.render_context(c).unwrap())
        .collect();
    per("3 tera templates", start.elapsed(), n);
    let addresses = Addresses::from_config(&Config::default()).unwrap();
    let start = Instant::now();
    let mails: Vec<Vec<u8>> = rendered
        .into_iter()
        .map(|r| {
            build_message_to(&addresses, "alice", addresses.recipients("alice"), r)
                .unwrap()
                .formatted()
        })
        .collect();
    per("lettre message (MIME, q-p)", start.elapsed(), n);
    reports.into_iter().map(|r| r.id).zip(mails).collect()
}

/// The file transport's file work alone, one thread: temp name, write, rename; then one
/// syncfs. Run after the replay: on ext4 (no journal) creating files right after many were
/// deleted is slow (`recently_deleted` scans the inode table), and this deletes 20,000.
fn file_floor(mails: &[(String, Vec<u8>)], dir: &Path) {
    println!("the file system alone, one thread:");
    let n = mails.len();
    let spool = dir.join("floor");
    std::fs::create_dir_all(&spool).unwrap();
    let start = Instant::now();
    for (id, mail) in mails {
        let tmp = spool.join(format!(".{id}.tmp"));
        std::fs::write(&tmp, mail).unwrap();
        std::fs::rename(&tmp, spool.join(format!("{id}.eml"))).unwrap();
    }
    let created = start.elapsed();
    per("create + write + rename .eml", created, n);
    let start = Instant::now();
    let d = std::fs::File::open(&spool).unwrap();
    nix::unistd::syncfs(std::os::fd::AsRawFd::as_raw_fd(&d)).unwrap();
    per("one syncfs of the spool", start.elapsed(), n);

    // The floor of any file transport on this file system: empty files, no rename, both
    // cores, nothing rendered. Above 0.3 s the replay target cannot be met here at all.
    let bare = dir.join("floor-bare");
    std::fs::create_dir_all(&bare).unwrap();
    let start = Instant::now();
    std::thread::scope(|scope| {
        for half in 0..2 {
            let bare = &bare;
            scope.spawn(move || {
                for (id, _) in mails.iter().skip(half).step_by(2) {
                    std::fs::File::create(bare.join(format!("{id}.eml"))).unwrap();
                }
            });
        }
    });
    per("create empty files, two threads", start.elapsed(), n);
}

/// Drops counted by the kernel for the socket bound to `port` (/proc/net/udp, last column).
fn udp_drops(port: u16) -> u64 {
    let table = std::fs::read_to_string("/proc/net/udp").unwrap_or_default();
    let hex = format!(":{port:04X}");
    table
        .lines()
        .skip(1)
        .filter(|l| {
            l.split_whitespace()
                .nth(1)
                .is_some_and(|a| a.ends_with(&hex))
        })
        .filter_map(|l| l.split_whitespace().last()?.parse::<u64>().ok())
        .sum()
}

/// The scenario: a real SMTP server (aiosmtpd, frozen with SIGSTOP so connections hang
/// without a greeting) while 20,000 lines/s arrive over UDP for `WATCH_BENCH_STALL_SECS`
/// (default 60); then the server answers (SIGCONT) and every report must arrive. Uses the
/// default `mail.smtp.timeout_secs` and retry policy, as an installed watcher would.
fn udp_with_stalled_smtp() {
    let secs: u64 = std::env::var("WATCH_BENCH_STALL_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let dir = temp_dir("udp");
    let smtp_port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let port = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let maildir = dir.join("maildir");
    // Debian's python3 has the package; a python3 earlier on PATH may not.
    let mut smtp = Command::new("/usr/bin/python3")
        .args(["-m", "aiosmtpd", "-n", "-l"])
        .arg(format!("127.0.0.1:{smtp_port}"))
        .args(["-c", "aiosmtpd.handlers.Mailbox"])
        .arg(&maildir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("aiosmtpd (apt install python3-aiosmtpd)");
    let ready = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", smtp_port)).is_err() {
        assert!(
            ready.elapsed() < Duration::from_secs(15),
            "aiosmtpd did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let smtp_pid = nix::unistd::Pid::from_raw(smtp.id() as i32);
    nix::sys::signal::kill(smtp_pid, nix::sys::signal::Signal::SIGSTOP).unwrap();

    let cfg = dir.join("sftpctl.toml");
    std::fs::write(
        &cfg,
        format!(
            "[watch]\nsocket = \"{d}/run/watch.sock\"\nlisten = \"127.0.0.1:{port}\"\nstate_dir = \"{d}/state\"\n[mail]\ntransport = \"smtp\"\nspool_dir = \"{d}/spool\"\n[mail.smtp]\nhost = \"127.0.0.1\"\nport = {smtp_port}\n",
            d = dir.display(),
        ),
    )
    .unwrap();
    let mut child = Command::new(BIN)
        .arg("--config")
        .arg(&cfg)
        .args(["watch", "--foreground"])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    while UdpSocket::bind(("127.0.0.1", port)).is_ok() {
        std::thread::sleep(Duration::from_millis(20));
    }
    let log = generate(SESSIONS, true);
    let lines: Vec<&[u8]> = log
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let rate = 20_000u64;
    let total = (rate * secs) as usize;
    let mut closed = 0;
    let start = Instant::now();
    for (i, line) in lines.iter().cycle().take(total).enumerate() {
        // Forward format, as rsyslog sends it.
        let text = String::from_utf8_lossy(line);
        let msg = text.split_once(" vm ").map(|x| x.1).unwrap_or("");
        closed += usize::from(msg.contains("]: session closed"));
        let datagram = format!("<38>Nov 27 16:04:26 vm {msg}");
        socket
            .send_to(datagram.as_bytes(), ("127.0.0.1", port))
            .unwrap();
        let due = Duration::from_micros(i as u64 * 1_000_000 / rate);
        if let Some(wait) = due.checked_sub(start.elapsed()) {
            std::thread::sleep(wait);
        }
    }
    std::thread::sleep(Duration::from_millis(500));
    let drops = udp_drops(port);
    let delivered = || {
        std::fs::read_dir(maildir.join("new"))
            .map(|d| d.count())
            .unwrap_or(0)
    };
    let before = delivered();
    println!(
        "UDP {rate} lines/s for {secs} s, SMTP stalled: {total} datagrams sent, {drops} dropped; {before} of {closed} reports delivered while stalled"
    );

    nix::sys::signal::kill(smtp_pid, nix::sys::signal::Signal::SIGCONT).unwrap();
    let answered = Instant::now();
    let deadline = Duration::from_secs(120 + secs * 10);
    while delivered() < closed && answered.elapsed() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    let got = delivered();
    println!(
        "  once the server answered: {got} of {closed} reports delivered in {:.1} s ({:.0} mails/s){}",
        answered.elapsed().as_secs_f64(),
        got as f64 / answered.elapsed().as_secs_f64(),
        if got == closed { "" } else { "  MISSING REPORTS" }
    );
    let _ = child.kill();
    let _ = child.wait();
    let _ = smtp.kill();
    let _ = smtp.wait();
    let _ = std::fs::remove_dir_all(&dir);
}
