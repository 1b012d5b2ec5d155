//! The trusted feed under attack, end to end: real rsyslogd (the sandbox's host socket and
//! the jails' socket), sshd, the OpenSSH sftp client, the watcher, and a plain local shell
//! account (`sb.local_account`) that forges, hijacks and squats. Runs as root.

mod support;
mod watch_common;

use std::fs;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use support::attacker::LocalAccount;
use support::{holds_within, show, stderr, stdout, uid_of, wait_until, Sandbox, DEADLINE, SFTPCTL};
use watch_common::text_of;

/// Kills (and reaps) a child when the test ends, however it ends.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct World {
    sb: Sandbox,
    alice: String,
    alice_key: PathBuf,
    bob: String,
    ev: LocalAccount,
}

/// init (with an admin), rsyslogd, add-user alice and bob, sshd, a local account `ev`.
/// internal-sftp logs at VERBOSE; reports go to the file transport's spool.
fn world() -> World {
    let mut sb = Sandbox::new();
    let admin = sb.admin.clone();
    sb.edit_config(
        "umask = \"0007\"",
        &format!("umask = \"0007\"\nsftp_log_level = \"VERBOSE\"\nadmin = \"{admin}\""),
    );
    sb.sftpctl_ok(&["init", "--admin", &admin]);
    sb.start_rsyslogd();
    let alice = sb.user("alice");
    let bob = sb.user("bob");
    let (alice_key, alice_pub) = sb.keygen("alice");
    let (_, bob_pub) = sb.keygen("bob");
    sb.sftpctl_ok(&["add-user", &alice, "--key", alice_pub.to_str().unwrap()]);
    sb.sftpctl_ok(&["add-user", &bob, "--key", bob_pub.to_str().unwrap()]);
    sb.start_sshd();
    let ev = sb.local_account("ev");
    World {
        sb,
        alice,
        alice_key,
        bob,
        ev,
    }
}

fn start_watcher(sb: &Sandbox) -> Reaped {
    let log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(sb.path("run/watch.log"))
        .unwrap();
    let child = Command::new(SFTPCTL)
        .arg("--config")
        .arg(&sb.config)
        .args(["watch", "--foreground"])
        .env_remove("SFTPCTL_CONFIG")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    wait_until("the watcher to listen", DEADLINE, || {
        Sandbox::socket_listens(&sb.watch_socket)
    });
    Reaped(child)
}

fn stop_watcher(w: Reaped) {
    let mut w = w;
    kill(Pid::from_raw(w.0.id() as i32), Signal::SIGTERM).unwrap();
    wait_until("the watcher to stop", DEADLINE, || {
        w.0.try_wait().unwrap().is_some()
    });
}

fn watcher_log(sb: &Sandbox) -> String {
    fs::read_to_string(sb.path("run/watch.log")).unwrap_or_default()
}

/// The mails in the file transport's spool, decoded to their text part.
fn mails(sb: &Sandbox) -> Vec<String> {
    let mut paths: Vec<PathBuf> = fs::read_dir(sb.path("spool"))
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    paths.retain(|p| p.extension().is_some_and(|e| e == "eml"));
    paths.sort();
    paths
        .iter()
        .map(|p| {
            let raw = fs::read_to_string(p).unwrap();
            let subject = raw
                .lines()
                .find(|l| l.starts_with("Subject:"))
                .unwrap_or("")
                .to_string();
            format!("{subject}\n{}", text_of(&raw))
        })
        .collect()
}

fn wait_mails(sb: &Sandbox, n: usize) -> Vec<String> {
    let ok = holds_within(DEADLINE, || mails(sb).len() >= n);
    assert!(
        ok,
        "{n} mail(s) expected, got {}\n--- watcher ---\n{}\n--- log ---\n{}",
        mails(sb).len(),
        watcher_log(sb),
        sb.log_lines().join("\n")
    );
    mails(sb)
}

/// `logger` run by `who` to `socket`, tagged `internal-sftp[pid]`.
fn forge(who: &LocalAccount, socket: &std::path::Path, pid: u32, msgs: &[String]) {
    let out = who.sh(&logger_script(socket, pid, msgs));
    assert!(
        out.status.success(),
        "logger as {}\n{}",
        who.name,
        show(&out)
    );
}

/// One `logger` process (like one internal-sftp process) sends every message, one a line.
fn logger_script(socket: &std::path::Path, pid: u32, msgs: &[String]) -> String {
    let mut text = String::new();
    for m in msgs {
        text.push_str(&m.replace('\'', "'\\''"));
        text.push('\n');
    }
    format!(
        "printf '%s' '{text}' | logger -u '{}' -t 'internal-sftp[{pid}]'",
        socket.display()
    )
}

fn forged_session(user: &str, file: &str) -> Vec<String> {
    vec![
        format!("session opened for local user {user} from [203.0.113.7]"),
        format!("open \"/data/{file}\" flags WRITE,CREATE,TRUNCATE mode 0644"),
        format!("close \"/data/{file}\" bytes read 0 written 4242"),
        format!("session closed for local user {user} from [203.0.113.7]"),
    ]
}

fn put(w: &World, name: &str) {
    fs::write(w.sb.client_dir().join(name), b"real upload\n").unwrap();
    w.sb.sftp_ok(&w.alice, &w.alice_key, &format!("put {name}\n"));
}

// ---------------------------------------------------------------------------------------------

/// A local account writes alice's and bob's "sessions" to the host socket (as `logger -t
/// 'internal-sftp[PID]'` would to /dev/log) and straight into the jails' socket. None is
/// mailed, `report` does not believe them, and the log file shows who really sent them.
#[test]
fn forged_sessions_are_not_mailed_and_not_reported() {
    let w = world();
    let watcher = start_watcher(&w.sb);
    let root_socket = w.sb.root_socket();
    let host_socket = w.sb.host_socket();
    forge(
        &w.ev,
        &host_socket,
        4242,
        &forged_session(&w.alice, "forged-host.pdf"),
    );
    forge(
        &w.ev,
        &root_socket,
        4243,
        &forged_session(&w.bob, "forged-jail.pdf"),
    );
    // A session "of the client" that would be mailed to it through the trusted sender.
    forge(
        &w.ev,
        &root_socket,
        4244,
        &forged_session(&w.alice, "phishing.exe"),
    );
    // Alice's real session afterwards: the pipeline works and has seen the forgeries.
    put(&w, "real.txt");
    let all = wait_mails(&w.sb, 1);
    // Anything the forgeries would have made is made by now: lines are handled in order.
    std::thread::sleep(Duration::from_millis(500));
    let all = if mails(&w.sb).len() > all.len() {
        mails(&w.sb)
    } else {
        all
    };
    assert_eq!(all.len(), 1, "only alice's real session: {all:#?}");
    assert!(all[0].contains("real.txt"), "{}", all[0]);
    for m in &all {
        assert!(!m.contains("forged") && !m.contains("phishing"), "{m}");
    }
    stop_watcher(watcher);
    let log = watcher_log(&w.sb);
    assert!(
        log.contains("not sent by the session's own process"),
        "the watcher says it dropped lines\n{log}"
    );

    // The log file keeps the forgeries, each with the forger's uid: `report` skips them.
    let ev_uid = format!("[uid={} pid=", w.ev.uid);
    let forged: Vec<String> =
        w.sb.log_lines()
            .into_iter()
            .filter(|l| l.contains("forged") || l.contains("phishing"))
            .collect();
    assert_eq!(forged.len(), 6, "{forged:#?}");
    assert!(forged.iter().all(|l| l.contains(&ev_uid)), "{forged:#?}");
    // The kernel's pid is the sender's, not the one it claimed; on the jails' socket rsyslog
    // writes it into the tag too (on the host socket the watcher compares the two).
    assert!(
        forged.iter().all(|l| !l.contains(" pid=424")),
        "{forged:#?}"
    );
    assert!(
        forged
            .iter()
            .filter(|l| !l.contains("forged-host"))
            .all(|l| !l.contains("internal-sftp[424")),
        "{forged:#?}"
    );
    let log_file = w.sb.log_file.to_str().unwrap().to_string();
    let out = w.sb.sftpctl_ok(&["report", "--json", &log_file]);
    let text = stdout(&out);
    assert!(text.contains("real.txt"), "{text}");
    assert!(
        !text.contains("forged") && !text.contains("phishing"),
        "{text}"
    );
    assert!(
        stderr(&out).contains("were not sent by the session's own process"),
        "{}",
        show(&out)
    );
    // Even read as old, unverified lines, the forgeries' credentials still give them away.
    let out =
        w.sb.sftpctl_ok(&["report", "--json", "--trust-unverified", &log_file]);
    assert!(!stdout(&out).contains("forged"), "{}", show(&out));
}

/// While alice's session is open, a local account sends lines with alice's pid: a close, a
/// delete, and a new session of bob's. Alice's report stays hers and unchanged; bob gets none.
#[test]
fn a_live_session_cannot_be_hijacked_or_relabelled() {
    let w = world();
    let _watcher = start_watcher(&w.sb);
    fs::write(w.sb.client_dir().join("first.txt"), b"first\n").unwrap();
    fs::write(w.sb.client_dir().join("second.txt"), b"second\n").unwrap();
    let mut sftp =
        w.sb.sftp_command(&w.alice, &w.alice_key)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
    let mut stdin = sftp.stdin.take().unwrap();
    writeln!(stdin, "put first.txt").unwrap();
    stdin.flush().unwrap();
    let line = w.sb.wait_log_line("close \"/data/first.txt\"");
    let pid: u32 = line
        .split("internal-sftp[")
        .nth(1)
        .and_then(|r| r.split(']').next())
        .and_then(|p| p.parse().ok())
        .expect("pid in the tag");
    assert!(
        line.contains(&format!("[uid={} pid={pid} exe=", uid_of(&w.alice))),
        "{line}"
    );
    let msgs = vec![
        format!("session closed for local user {} from [127.0.0.1]", w.alice),
        format!("session opened for local user {} from [127.0.0.1]", w.bob),
        "remove name \"/data/first.txt\"".to_string(),
        format!("session closed for local user {} from [127.0.0.1]", w.bob),
    ];
    forge(&w.ev, &w.sb.root_socket(), pid, &msgs);
    forge(&w.ev, &w.sb.host_socket(), pid, &msgs);
    writeln!(stdin, "put second.txt").unwrap();
    drop(stdin);
    let _ = sftp.wait();
    let all = wait_mails(&w.sb, 1);
    std::thread::sleep(Duration::from_millis(500));
    let all = if mails(&w.sb).len() > all.len() {
        mails(&w.sb)
    } else {
        all
    };
    assert_eq!(all.len(), 1, "{all:#?}");
    let m = &all[0];
    assert!(m.contains(&w.alice) && !m.contains(&w.bob), "{m}");
    assert!(m.contains("first.txt") && m.contains("second.txt"), "{m}");
    assert!(m.contains(" 0 deleted"), "{m}");
}

/// The watcher's socket: a local account can neither send to it nor take its place, also
/// while the watcher is down; no UDP port is bound unless configured.
#[test]
fn a_local_account_cannot_reach_or_squat_the_feed() {
    let w = world();
    let watcher = start_watcher(&w.sb);
    let sock = w.sb.watch_socket.display().to_string();
    let send = format!(
        "import socket,sys\ns=socket.socket(socket.AF_UNIX,socket.SOCK_DGRAM)\ntry:\n  s.sendto(b'x','{sock}')\nexcept PermissionError:\n  sys.exit(13)\n"
    );
    let bind = format!(
        "import socket,sys,os\ns=socket.socket(socket.AF_UNIX,socket.SOCK_DGRAM)\ntry:\n  os.makedirs(os.path.dirname('{sock}'), exist_ok=True)\n  s.bind('{sock}')\nexcept PermissionError:\n  sys.exit(13)\n"
    );
    let py = |script: &str| {
        w.ev.command("/usr/bin/python3")
            .arg("-c")
            .arg(script)
            .output()
            .unwrap()
    };
    let out = py(&send);
    assert_eq!(
        out.status.code(),
        Some(13),
        "send: EACCES expected\n{}",
        show(&out)
    );
    let out = py(&bind);
    assert_eq!(
        out.status.code(),
        Some(13),
        "bind: EACCES expected\n{}",
        show(&out)
    );
    // The watcher holds no UDP socket: nothing a local account could squat on.
    let pid = fs::read_to_string(w.sb.path("state/watch.pid")).unwrap();
    let udp = fs::read_to_string("/proc/net/udp").unwrap()
        + &fs::read_to_string("/proc/net/udp6").unwrap();
    let inodes: Vec<String> = udp
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().nth(9).map(|i| format!("socket:[{i}]")))
        .collect();
    for fd in fs::read_dir(format!("/proc/{}/fd", pid.trim())).unwrap() {
        let target = fs::read_link(fd.unwrap().path()).unwrap_or_default();
        assert!(
            !inodes.iter().any(|i| target.as_os_str() == i.as_str()),
            "the watcher holds a UDP socket"
        );
    }
    stop_watcher(watcher);
    // Down: the directory is still root's 0700, so the path cannot be taken over.
    let out = py(&bind);
    assert_eq!(
        out.status.code(),
        Some(13),
        "bind while down\n{}",
        show(&out)
    );
    let md = fs::metadata(w.sb.watch_socket.parent().unwrap()).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!((md.uid(), md.mode() & 0o777), (0, 0o700));
}

fn doctor_line(sb: &Sandbox, name: &str) -> String {
    let out = sb.sftpctl(&["doctor"]);
    let text = stdout(&out);
    text.lines()
        .find(|l| l.contains(name))
        .unwrap_or_else(|| panic!("no {name:?} line\n{}", show(&out)))
        .to_string()
}

/// doctor FAILs when another process holds the feed: a root process on watch.socket, a
/// socket directory others can enter, and (UDP opted in) a local account squatting the port
/// while the watcher is down; with the watcher bound, it is OK.
#[test]
fn doctor_fails_when_something_else_holds_the_feed() {
    let mut w = world();
    let watcher = start_watcher(&w.sb);
    let line = doctor_line(&w.sb, "watcher listening");
    assert!(line.starts_with("ok"), "{line}");
    stop_watcher(watcher);
    assert!(doctor_line(&w.sb, "watcher listening").starts_with("warn"));

    // An impostor bound to watch.socket (root could; nobody else can get there).
    let capture = w.sb.feed_capture();
    let line = doctor_line(&w.sb, "watcher listening");
    assert!(
        line.starts_with("FAIL") && line.contains("not by the sftpctl watcher"),
        "{line}"
    );
    drop(capture);

    // A directory others may enter.
    let dir = w.sb.watch_socket.parent().unwrap().to_path_buf();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
    let line = doctor_line(&w.sb, "watcher listening");
    assert!(line.starts_with("FAIL") && line.contains("0755"), "{line}");
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).unwrap();

    // UDP opted in; the local account binds the port while the watcher is down.
    let addr = w.sb.take_udp_port();
    w.sb.edit_config("[watch]\n", &format!("[watch]\nlisten = \"{addr}\"\n"));
    let mut squatter = w
        .ev
        .command("/usr/bin/python3")
        .arg("-c")
        .arg(format!(
            "import socket,time\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.bind(('{}',{}))\nprint('bound',flush=True)\ntime.sleep(30)\n",
            addr.ip(),
            addr.port()
        ))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 5];
    std::io::Read::read_exact(squatter.stdout.as_mut().unwrap(), &mut first).unwrap();
    let squatter = Reaped(squatter);
    let out = w.sb.sftpctl(&["doctor"]);
    let text = stdout(&out);
    let line = text
        .lines()
        .find(|l| l.contains("watcher listening") && l.contains("UDP"))
        .unwrap_or_else(|| panic!("{}", show(&out)))
        .to_string();
    assert!(
        line.starts_with("FAIL") && line.contains(&format!("uid {}", w.ev.uid)),
        "{line}"
    );
    assert_ne!(out.status.code(), Some(0), "{}", show(&out));
    // The watcher refuses to start rather than share the port.
    let out = w.sb.sftpctl(&["watch", "--foreground"]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(
        stderr(&out).contains("cannot listen on UDP"),
        "{}",
        show(&out)
    );
    drop(squatter);
}

/// The admin's sessions log through the host socket: init's block in the main rsyslog config
/// annotates it, so the admin's own lines are believed and a local account's are not.
#[test]
fn the_host_socket_carries_credentials_for_the_admins_sessions() {
    let w = world();
    let main = fs::read_to_string(w.sb.path("etc/rsyslog.conf")).unwrap();
    assert!(main.contains("# BEGIN sftpctl imuxsock"), "{main}");
    assert!(main.contains("SysSock.ParseTrusted=\"on\""), "{main}");
    let _watcher = start_watcher(&w.sb);
    forge(
        &w.ev,
        &w.sb.host_socket(),
        1,
        &forged_session(&w.sb.admin, "by-ev.txt"),
    );
    // The admin's own process (a logger of the admin's, standing in for its internal-sftp,
    // with its own pid in the tag: --id).
    let script = logger_script(
        &w.sb.host_socket(),
        1,
        &forged_session(&w.sb.admin, "by-admin.txt"),
    )
    .replace("-t 'internal-sftp[1]'", "-t internal-sftp --id");
    let out = support::run_with_timeout(
        Command::new("setpriv")
            .arg(format!("--reuid={}", w.sb.admin))
            .arg(format!("--regid={}", w.sb.group))
            .args(["--init-groups", "--", "/bin/sh", "-c", &script])
            .env_clear()
            .env("PATH", "/usr/bin:/bin"),
        b"",
        DEADLINE,
    );
    assert!(out.status.success(), "logger as the admin\n{}", show(&out));
    let all = wait_mails(&w.sb, 1);
    std::thread::sleep(Duration::from_millis(500));
    let all = if mails(&w.sb).len() > all.len() {
        mails(&w.sb)
    } else {
        all
    };
    assert_eq!(all.len(), 1, "{all:#?}");
    assert!(
        all[0].contains("by-admin.txt") && !all[0].contains("by-ev"),
        "{}",
        all[0]
    );
}

/// rsyslog's rate limit on the jails' socket counts per sending process and every severity:
/// with the rendered input's budget lowered to 50 lines, a local account's flood of `emerg`
/// lines from one process is cut at the budget while a real session's lines all pass.
#[test]
fn a_flood_from_one_process_is_cut_by_the_rate_limit_a_real_session_is_not() {
    let mut sb = Sandbox::new();
    sb.edit_config(
        "umask = \"0007\"",
        "umask = \"0007\"\nsftp_log_level = \"VERBOSE\"",
    );
    sb.sftpctl_ok(&["init"]);
    let dropin = sb.path("etc/rsyslog.d/50-sftpctl.conf");
    let text = fs::read_to_string(&dropin).unwrap();
    assert!(text.contains("RateLimit.Burst=\"200000\""), "{text}");
    assert!(text.contains("RateLimit.Severity=\"0\""), "{text}");
    fs::write(
        &dropin,
        text.replace("RateLimit.Burst=\"200000\"", "RateLimit.Burst=\"50\""),
    )
    .unwrap();
    sb.start_rsyslogd();
    let alice = sb.user("alice");
    let (key, public) = sb.keygen("alice");
    sb.sftpctl_ok(&["add-user", &alice, "--key", public.to_str().unwrap()]);
    sb.start_sshd();
    let ev = sb.local_account("ev");
    let script = format!(
        "seq 1 500 | sed 's/^/flood /' | logger -p auth.emerg -u '{}' -t 'internal-sftp[7]'",
        sb.root_socket().display()
    );
    let out = ev.sh(&script);
    assert!(out.status.success(), "{}", show(&out));
    // A real session with a few files (well under 50 lines) right after.
    for i in 0..3 {
        fs::write(sb.client_dir().join(format!("r{i}.txt")), b"r").unwrap();
    }
    sb.sftp_ok(&alice, &key, "put r0.txt\nput r1.txt\nput r2.txt\n");
    sb.wait_log_line("session closed for local user");
    let lines = sb.log_lines();
    let flood = lines.iter().filter(|l| l.contains(": flood ")).count();
    assert!(flood <= 50, "{flood} flood lines passed a budget of 50");
    assert!(
        flood >= 1,
        "the flood never reached rsyslog:\n{}",
        sb.rsyslogd_log()
    );
    for f in ["r0.txt", "r1.txt", "r2.txt"] {
        assert!(
            lines
                .iter()
                .any(|l| l.contains(&format!("close \"/data/{f}\""))),
            "{f} of the real session is missing"
        );
    }
}

/// Not a check: measures how many lines a fast real session sends per second (the basis of
/// rsyslog's rate limit on the jails' socket, `trust::JAIL_RATE_BURST`). Run with
/// `cargo nextest run --run-ignored only -E 'test(lines_per_second)' --no-capture` (N=files).
#[test]
#[ignore]
fn lines_per_second_of_a_fast_real_session() {
    let mut sb = Sandbox::new();
    sb.edit_config(
        "umask = \"0007\"",
        "umask = \"0007\"\nsftp_log_level = \"VERBOSE\"",
    );
    sb.sftpctl_ok(&["init"]);
    // no rate limit while measuring
    let conf = sb.path("etc/rsyslog.d/50-sftpctl.conf");
    let t = fs::read_to_string(&conf)
        .unwrap()
        .replace("RateLimit.Interval=\"5\"", "RateLimit.Interval=\"0\"");
    fs::write(&conf, t).unwrap();
    sb.start_rsyslogd();
    let alice = sb.user("alice");
    let (key, public) = sb.keygen("alice");
    sb.sftpctl_ok(&["add-user", &alice, "--key", public.to_str().unwrap()]);
    sb.start_sshd();
    let n: usize = std::env::var("N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000);
    let src = sb.client_dir().join("many");
    fs::create_dir_all(&src).unwrap();
    for i in 0..n {
        fs::write(src.join(format!("f{i:05}")), b"x").unwrap();
    }
    let t0 = std::time::Instant::now();
    sb.sftp_ok(
        &alice,
        &key,
        "mkdir up\nput -r many up\nget -r up back\nrm up/many/*\n",
    );
    let el = t0.elapsed();
    std::thread::sleep(std::time::Duration::from_secs(2));
    let lines = sb.log_lines();
    let mut times: Vec<f64> = Vec::new();
    for l in &lines {
        let ts = &l[..26];
        let secs: f64 = ts[17..26].parse().unwrap();
        let min: f64 = ts[14..16].parse().unwrap();
        let hr: f64 = ts[11..13].parse().unwrap();
        times.push(hr * 3600.0 + min * 60.0 + secs);
    }
    let span = times.last().unwrap() - times[0];
    let mut best1 = 0;
    let mut best5 = 0;
    let mut j = 0;
    let mut k = 0;
    for i in 0..times.len() {
        while times[i] - times[j] > 1.0 {
            j += 1;
        }
        while times[i] - times[k] > 5.0 {
            k += 1;
        }
        best1 = best1.max(i - j + 1);
        best5 = best5.max(i - k + 1);
    }
    eprintln!("MEASURE files={n} lines={} session={:.2}s span={:.2}s avg={:.0}/s max_in_1s={} max_in_5s={}", lines.len(), el.as_secs_f64(), span, lines.len() as f64 / span, best1, best5);
}
