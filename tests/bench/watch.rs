//! `cargo bench --bench watch`: the watcher's throughput and memory.
//!
//! 1. Generates a 760,000-line log of 20,000 sessions (20 operations each, 200 open at once).
//! 2. Parse-only rate, next to what `grep -c internal-sftp` reads on the same file.
//! 3. Where a report's time goes, stage by stage on one thread, in memory (parse + sessions,
//!    outbox JSON, the three tera templates, the lettre message), the raw cost of creating
//!    20,000 files in the spool dir the way the file transport does (+ one `syncfs`), and the
//!    floor: 20,000 empty files made by two threads, nothing else.
//! 4. Replays it through `sftpctl watch --stdin` with the file transport: lines/s, reports/s.
//! 5. Resident memory of `sftpctl watch --stdin` holding 10,000 open sessions (with
//!    `max_sessions_bytes` raised so that none is reported early).
//! 6. UDP at 20,000 lines/s for 60 s with a real SMTP server stalled: datagrams dropped by the
//!    socket; then the server answers and every report must arrive (`WATCH_BENCH_STALL_SECS`
//!    shortens the stall). `WATCH_BENCH_ONLY=udp` runs this part alone.
//!
//! 7. Flood (`WATCH_BENCH_ONLY=flood` runs this part alone): the cost of a line at a full
//!    session table (a new session, which evicts one, against a line of an open session, same
//!    run); then one sender's flood at full speed through `watch --stdin` (forged sessions by
//!    the tens of thousands, sessions with long lists, lines of made-up pids, 100 KB host
//!    names) with a real session of alice interleaved: alice's report must be whole, and the
//!    watcher's peak RSS is shown against the 64 MiB target.
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
    // 100 users: a replay of 20,000 sessions of one user would be summed up past
    // watch.max_reports_per_user (1,000 an hour).
    let user = format!("user{}", n % 100);
    let mut m = vec![format!(
        "session opened for local user {user} from [192.0.2.7]"
    )];
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
    m.push(format!(
        "session closed for local user {user} from [192.0.2.7]"
    ));
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
    if std::env::var("WATCH_BENCH_ONLY").is_ok_and(|p| p == "flood") {
        flood();
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
    let cfg = config(
        &open_dir,
        "max_open_sessions = 20000\nmax_sessions_bytes = 134217728",
    );
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
    flood();
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&open_dir);
}

fn file_line(out: &mut Vec<u8>, host: &str, pid: u32, msg: &str) {
    writeln!(
        out,
        "2026-11-27T16:00:00.000000+00:00 {host} internal-sftp[{pid}]: {msg}"
    )
    .unwrap();
}

/// Per-line cost at a full table of `max_open_sessions` (default 50,000): lines of open
/// sessions against lines that each open a new session (and so evict one). Before the
/// eviction index, the second kind scanned the whole table.
fn full_table_cost() {
    use sftpctl::watch::session::{Limits, Sessions};
    let limits = Limits::default();
    let full = limits.max_open_sessions as u32;
    let mut fill = Vec::new();
    for pid in 0..full {
        file_line(
            &mut fill,
            "vm",
            pid,
            "session opened for local user alice from [192.0.2.7]",
        );
    }
    let n = 20_000u32;
    let mut existing = Vec::new();
    let mut new = Vec::new();
    for i in 0..n {
        file_line(&mut existing, "vm", i % full, "opendir \"/data\"");
        file_line(
            &mut new,
            "vm",
            full + i,
            "session opened for local user mallory from [192.0.2.9]",
        );
    }
    let run = |input: &[u8]| {
        let mut sessions = Sessions::new(limits, "/data");
        let mut out = Vec::new();
        for line in fill.split(|&b| b == b'\n') {
            sessions.apply(parse_line(line, 1_796_000_000), 0, &mut out);
        }
        let held = sessions.open_count();
        let start = Instant::now();
        for line in input.split(|&b| b == b'\n') {
            sessions.apply(parse_line(line, 1_796_000_000), 0, &mut out);
        }
        (start.elapsed().as_secs_f64() * 1e6 / f64::from(n), held)
    };
    let (open, held) = run(&existing);
    let (evicting, _) = run(&new);
    println!(
        "full table ({held} open after {full} opened, default limits): {open:.2} us a line of an open session, {evicting:.2} us a line that opens a new one (evicts one): ratio {:.1}",
        evicting / open
    );
}

/// What one local account can send at full speed (in pieces, so that a real session can be
/// spread over it), and how many lines that is.
fn flood_pieces(host_len: usize) -> (Vec<Vec<u8>>, usize) {
    let mut flood: Vec<Vec<u8>> = Vec::new();
    let mut chunk = Vec::new();
    let mut lines = 0;
    let cut = |chunk: &mut Vec<u8>, flood: &mut Vec<Vec<u8>>| {
        flood.push(std::mem::take(chunk));
    };
    // 1. Forged sessions by the tens of thousands (past max_open_sessions).
    for pid in 100_000..160_000u32 {
        file_line(
            &mut chunk,
            "vm",
            pid,
            "session opened for local user mallory from [192.0.2.9]",
        );
        file_line(&mut chunk, "vm", pid, "remove name \"/data/x\"");
        lines += 2;
        if pid % 5_000 == 0 {
            cut(&mut chunk, &mut flood);
        }
    }
    // 2. Lines of made-up pids, no opening line.
    for pid in 200_000..260_000u32 {
        file_line(&mut chunk, "vm", pid, "remove name \"/data/h\"");
        lines += 1;
        if pid % 5_000 == 0 {
            cut(&mut chunk, &mut flood);
        }
    }
    // 3. Sessions with long lists: 150 names of 440 bytes each (past max_session_bytes, and
    //    1,500 of them past max_sessions_bytes).
    let name = "n".repeat(440);
    for pid in 300_000..301_500u32 {
        file_line(
            &mut chunk,
            "vm",
            pid,
            "session opened for local user mallory from [192.0.2.9]",
        );
        for i in 0..150 {
            let msg = if i % 2 == 0 {
                format!("remove name \"/data/{name}{i}\"")
            } else {
                format!("mkdir name \"/data/{name}{i}\" mode 0777")
            };
            file_line(&mut chunk, "vm", pid, &msg);
        }
        lines += 151;
        if pid % 50 == 0 {
            cut(&mut chunk, &mut flood);
        }
    }
    // 4. Host names of 100 KB (60 KB over UDP, which carries at most 64 KiB).
    let host = "h".repeat(host_len);
    for pid in 400_000..400_500u32 {
        file_line(&mut chunk, &host, pid, "remove name \"/data/x\"");
        lines += 1;
        if pid % 50 == 0 {
            cut(&mut chunk, &mut flood);
        }
    }
    cut(&mut chunk, &mut flood);
    (flood, lines)
}

/// alice's session: `uploads` uploads between opening and closing.
fn real_session(uploads: usize) -> Vec<String> {
    let mut real = vec!["session opened for local user alice from [198.51.100.4]".to_string()];
    for i in 0..uploads {
        real.push(format!(
            "open \"/data/contract-{i}.pdf\" flags WRITE,CREATE,TRUNCATE mode 0644"
        ));
        real.push(format!(
            "close \"/data/contract-{i}.pdf\" bytes read 0 written {}",
            1000 + i
        ));
    }
    real.push("session closed for local user alice from [198.51.100.4]".to_string());
    real
}

/// The flood with alice's session spread over it, as one log.
fn flood_input(real_uploads: usize) -> (Vec<u8>, usize) {
    let (flood, mut lines) = flood_pieces(100_000);
    let real = real_session(real_uploads);
    let mut out = Vec::new();
    let per = flood.len().div_ceil(real.len());
    let mut real = real.into_iter();
    for (i, c) in flood.iter().enumerate() {
        if i % per == 0 {
            if let Some(m) = real.next() {
                file_line(&mut out, "vm", 4242, &m);
                lines += 1;
            }
        }
        out.extend_from_slice(c);
    }
    for m in real {
        file_line(&mut out, "vm", 4242, &m);
        lines += 1;
    }
    (out, lines)
}

/// alice's report among the mails in `spool`: (whole, uploads listed, mails in all).
fn alice_report(spool: &Path, uploads: usize) -> (bool, usize, usize) {
    let mut mails = 0;
    let mut alice = Vec::new();
    for entry in std::fs::read_dir(spool).into_iter().flatten() {
        let Ok(text) = std::fs::read_to_string(entry.unwrap().path()) else {
            continue;
        };
        mails += 1;
        if text.contains("SFTP session of alice") {
            alice.push(text);
        }
    }
    let whole = alice.len() == 1
        && alice[0].contains(&format!("UPLOADED: {uploads},"))
        && !alice[0].contains("INCOMPLETE");
    let shown = (0..uploads)
        .filter(|i| {
            alice
                .iter()
                .any(|a| a.contains(&format!("contract-{i}.pdf ")))
        })
        .count();
    (whole, shown, mails)
}

/// Highest VmHWM of `pid` until it exits (or `until` says stop).
fn watch_peak(pid: u32, mut until: impl FnMut() -> bool) -> u64 {
    let mut peak = 0;
    while std::fs::metadata(format!("/proc/{pid}")).is_ok() && !until() {
        peak = peak.max(vm_kib(pid, "VmHWM:"));
        if std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .is_ok_and(|s| s.split_whitespace().nth(2) == Some("Z"))
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    peak.max(vm_kib(pid, "VmHWM:"))
}

fn flood() {
    full_table_cost();
    let dir = temp_dir("flood");
    let uploads = 40;
    let (input, lines) = flood_input(uploads);
    let input_path = dir.join("flood.log");
    std::fs::write(&input_path, &input).unwrap();
    drop(input);
    let cfg = config(&dir, "");
    let start = Instant::now();
    let child = Command::new(BIN)
        .arg("--config")
        .arg(&cfg)
        .args(["watch", "--stdin", "--trust-unverified"])
        .stdin(std::fs::File::open(&input_path).unwrap())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let peak = watch_peak(pid, || false);
    let out = child.wait_with_output().unwrap();
    let took = start.elapsed();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (whole, shown, mails) = alice_report(&dir.join("spool"), uploads);
    println!(
        "flood via watch --stdin: {lines} lines ({:.0} MB) in {:.2} s; peak RSS {:.1} MiB (target <= 64 MiB); {mails} mails in the spool; alice's report {} ({shown} of {uploads} uploads listed, {} of her lines lost)",
        std::fs::metadata(&input_path).unwrap().len() as f64 / 1e6,
        took.as_secs_f64(),
        peak as f64 / 1024.0,
        if whole { "whole" } else { "BROKEN" },
        uploads - shown,
    );
    println!("  {}", String::from_utf8_lossy(&out.stderr).trim());
    let _ = std::fs::remove_dir_all(&dir);
    flood_udp(uploads);
}

/// The same flood over UDP, as fast as one sender can send, alice's datagrams among it.
fn flood_udp(uploads: usize) {
    let dir = temp_dir("flood-udp");
    let port = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cfg = config(
        &dir,
        &format!(
            "socket = \"{}/run/watch.sock\"\nlisten = \"127.0.0.1:{port}\"",
            dir.display()
        ),
    );
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
    let (flood, mut lines) = flood_pieces(60_000);
    let real = real_session(uploads);
    let forward = |line: &[u8]| -> Vec<u8> {
        // `2026-…+00:00 HOST TAG: MSG` → `<38>Nov 27 16:04:26 HOST TAG: MSG`
        let at = line.iter().position(|&b| b == b' ').unwrap_or(0);
        [b"<38>Nov 27 16:04:26".as_slice(), &line[at..]].concat()
    };
    let flooder = UdpSocket::bind("127.0.0.1:0").unwrap();
    let alice = UdpSocket::bind("127.0.0.1:0").unwrap();
    let pid = child.id();
    let peak = std::sync::atomic::AtomicU64::new(0);
    let done = std::sync::atomic::AtomicBool::new(false);
    let per = flood.len().div_ceil(real.len());
    let start = Instant::now();
    std::thread::scope(|scope| {
        scope.spawn(|| {
            let p = watch_peak(pid, || done.load(std::sync::atomic::Ordering::Relaxed));
            peak.store(p, std::sync::atomic::Ordering::Relaxed);
        });
        let mut real = real.iter();
        for (i, piece) in flood.iter().enumerate() {
            if i % per == 0 {
                if let Some(m) = real.next() {
                    let mut l = Vec::new();
                    file_line(&mut l, "vm", 4242, m);
                    let d = forward(l.trim_ascii_end());
                    alice.send_to(&d, ("127.0.0.1", port)).unwrap();
                    lines += 1;
                }
            }
            for line in piece.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                let _ = flooder.send_to(&forward(line), ("127.0.0.1", port));
            }
        }
        for m in real {
            let mut l = Vec::new();
            file_line(&mut l, "vm", 4242, m);
            alice
                .send_to(&forward(l.trim_ascii_end()), ("127.0.0.1", port))
                .unwrap();
            lines += 1;
        }
        let sent = start.elapsed();
        // alice's report, or 30 s.
        let until = Instant::now() + Duration::from_secs(30);
        while !alice_report(&dir.join("spool"), uploads).0 && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(100));
        }
        std::thread::sleep(Duration::from_millis(500));
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        let drops = udp_drops(port);
        let (whole, shown, mails) = alice_report(&dir.join("spool"), uploads);
        println!(
            "flood via UDP, one sender at full speed: {lines} datagrams in {:.2} s ({:.0}/s), {drops} dropped by the socket; alice's report {} ({shown} of {uploads} uploads listed); {mails} mails",
            sent.as_secs_f64(),
            lines as f64 / sent.as_secs_f64(),
            if whole { "whole" } else { "BROKEN" },
        );
    });
    println!(
        "  watcher peak RSS {:.1} MiB (target <= 64 MiB)",
        peak.load(std::sync::atomic::Ordering::Relaxed) as f64 / 1024.0
    );
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
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
        .map(|r| templates.context(&sftpctl::watch::mail::read_report(r).unwrap()))
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
                .bytes
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
            "[watch]\nsocket = \"{d}/run/watch.sock\"\nlisten = \"127.0.0.1:{port}\"\nstate_dir = \"{d}/state\"\n# Every report one by one, however long the stall runs.\nmax_reports_per_window = 10000000\n[mail]\ntransport = \"smtp\"\nspool_dir = \"{d}/spool\"\n[mail.smtp]\nhost = \"127.0.0.1\"\nport = {smtp_port}\n",
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
