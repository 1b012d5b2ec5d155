//! `sftpctl watch` and `sftpctl report` driven as a user would: the real binary, a private
//! config, the file transport.

mod watch_common;

use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::Signal;
use watch_common::*;

#[test]
fn stdin_replay_writes_one_mail_per_session() {
    let env = Env::new("stdin", "");
    let log = std::fs::read(fixture("openssh-9.2-rsyslog-file.log")).unwrap();
    let (code, err) = env.watch_stdin(&log);
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("5 reports delivered"), "{err}");
    let mails = env.mails();
    assert_eq!(mails.len(), 5);
    let texts: Vec<String> = mails.iter().map(|m| text_part(m)).collect();
    let all = texts.join("\n");
    assert!(all.contains("big.bin  2.9 MiB (3,000,000 bytes)"), "{all}");
    assert!(all.contains("huge.bin  1.7 MiB (1,827,840 bytes)  [INCOMPLETE: interrupted]"));
    assert!(all.contains("Übersicht 2026.pdf  12 bytes"));
    assert!(all.contains("report.pdf  12 bytes"));
    assert!(!all.contains("report.pdf.filepart"));
    for m in &mails {
        assert!(m.contains("To: admin@example.com"));
        assert!(m.contains("Content-Type: text/html"));
    }
    // Everything delivered: the outbox is empty again.
    let left: Vec<_> = std::fs::read_dir(env.state().join("outbox"))
        .unwrap()
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn stdin_replay_of_forward_format_with_quotes_in_names() {
    let env = Env::new("stdin-fwd", "");
    let log = std::fs::read(fixture("openssh-9.2-udp-forward.txt")).unwrap();
    let (code, err) = env.watch_stdin(&log);
    assert_eq!(code, Some(0), "{err}");
    let mails = env.mails();
    assert_eq!(mails.len(), 1);
    let text = text_part(&mails[0]);
    assert!(
        text.contains("quo\"te bytes read 0 written 999.txt  12 bytes"),
        "{text}"
    );
    assert!(!text.contains("999 bytes"));
}

#[test]
fn hostile_input_is_skipped_not_fatal() {
    let env = Env::new("hostile", "");
    let mut input = Vec::new();
    for i in 0..2000u32 {
        input.extend((0..(i % 300)).map(|j| (i.wrapping_mul(31).wrapping_add(j * 7) % 256) as u8));
        input.push(b'\n');
    }
    input.extend_from_slice(
        b"<38>Nov 27 16:04:26 vm internal-sftp[1]: close \"/data/x\" bytes read 0 wri\n",
    );
    input.extend_from_slice(&[0xff; 5000]);
    let (code, err) = env.watch_stdin(&input);
    assert_eq!(code, Some(0), "{err}");
    assert!(env.mails().len() <= 1);
}

#[test]
fn per_user_recipient_gets_a_copy() {
    let env = Env::new("users", "[mail.users]\nalice = \"alice@client.example\"");
    let log = std::fs::read(fixture("openssh-9.2-udp-forward.txt")).unwrap();
    let (code, err) = env.watch_stdin(&log);
    assert_eq!(code, Some(0), "{err}");
    let mail = &env.mails()[0];
    assert!(
        mail.contains("To: admin@example.com, alice@client.example"),
        "{mail}"
    );
}

#[test]
fn report_prints_text_and_json() {
    let env = Env::new("report", "");
    let out = env
        .command()
        .args(["report", "--trust-unverified"])
        .arg(fixture("openssh-9.2-rsyslog-file.log"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.matches("SFTP session of alice").count(), 5);
    assert!(text.contains("remove nonexistent.txt: No such file"));
    assert!(!env.spool().exists(), "report never mails");

    let mut child = env
        .command()
        .args(["report", "--json", "--trust-unverified", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(&std::fs::read(fixture("openssh-9.2-udp-forward.txt")).unwrap())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let reports: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(reports.as_array().unwrap().len(), 1);
    assert_eq!(
        reports[0]["uploads"][1]["path"],
        "quo\"te bytes read 0 written 999.txt"
    );
    assert_eq!(reports[0]["totals"]["upload_bytes"], 24);
}

/// Lines without the sender's credentials (a log from before the trusted feed, or a line
/// anyone could have written) are counted and skipped unless `--trust-unverified` is given.
#[test]
fn lines_without_credentials_are_skipped_unless_told() {
    let env = Env::new("report-unverified", "");
    let out = env
        .command()
        .args(["report", "--json"])
        .arg(fixture("openssh-9.2-rsyslog-file.log"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let reports: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(reports.as_array().unwrap().len(), 0, "{reports}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("were not sent by the session's own process"),
        "{err}"
    );
    assert!(err.contains("--trust-unverified"), "{err}");

    let log = std::fs::read(fixture("openssh-9.2-rsyslog-file.log")).unwrap();
    let mut child = env
        .command()
        .args(["watch", "--stdin"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&log).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(env.mails().is_empty(), "nothing mailed");
    assert!(String::from_utf8_lossy(&out.stderr).contains(" untrusted)"));
}

#[test]
fn report_shows_sessions_still_open_at_the_end() {
    let env = Env::new("report-open", "");
    let path = env.dir.join("cut.log");
    std::fs::write(
        &path,
        "2026-11-27T16:04:18+00:00 vm internal-sftp[9]: session opened for local user bob from [10.0.0.1]\n\
         2026-11-27T16:04:19+00:00 vm internal-sftp[9]: remove name \"/data/gone\"\n",
    )
    .unwrap();
    let out = env
        .command()
        .args(["report", "--trust-unverified"])
        .arg(&path)
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("INCOMPLETE: still open at the end of the log"),
        "{text}"
    );
    assert!(text.contains("gone"));
}

#[test]
fn bad_usage_and_input_exit_2_with_one_line() {
    let env = Env::new("usage", "");
    let out = env
        .command()
        .args(["report", "/no/such/log"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "{err}");

    let bad = Env::new("usage-tpl", "");
    let tpl = bad.dir.join("tpl");
    std::fs::create_dir_all(&tpl).unwrap();
    std::fs::write(tpl.join("subject.txt"), "{{ nope }}").unwrap();
    let text = std::fs::read_to_string(&bad.config).unwrap().replace(
        "[watch]\n",
        &format!("[watch]\ntemplate_dir = \"{}\"\n", tpl.display()),
    );
    std::fs::write(&bad.config, text).unwrap();
    let out = bad
        .command()
        .args(["watch", "--stdin"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let empty = Env::new("usage-to", "");
    let text = std::fs::read_to_string(&empty.config)
        .unwrap()
        .replace("to = [\"admin@example.com\"]", "to = []");
    std::fs::write(&empty.config, text).unwrap();
    let out = empty
        .command()
        .args(["watch", "--stdin"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nobody would get the reports"));
}

#[test]
fn udp_foreground_reports_sessions_and_refuses_a_second_watcher() {
    let env = Env::new("udp", "");
    let watcher = env.spawn(&["watch", "--foreground"]);
    wait_listening(&env);
    let second = env
        .command()
        .args(["watch", "--foreground"])
        .output()
        .unwrap();
    assert_eq!(second.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&second.stderr).contains("another watcher"));

    env.send(&udp_session(
        "vm",
        5900,
        "alice",
        &[
            "open \"/data/a.txt\" flags WRITE,CREATE,TRUNCATE mode 0644",
            "close \"/data/a.txt\" bytes read 0 written 42",
        ],
    ));
    wait_for("the mail", Duration::from_secs(10), || {
        env.mails().len() == 1
    });
    assert!(text_part(&env.mails()[0]).contains("a.txt  42 bytes"));
    watcher.signal(Signal::SIGTERM);
    let (code, err) = watcher.wait(Duration::from_secs(15));
    assert_eq!(code, Some(0), "{err}");
}

#[test]
fn sigterm_saves_open_sessions_and_restart_finishes_them() {
    let env = Env::new("restart", "");
    let lines = udp_session(
        "vm",
        77,
        "alice",
        &[
            "remove name \"/data/before\"",
            "remove name \"/data/after\"",
        ],
    );
    let watcher = env.spawn(&["watch", "--foreground"]);
    wait_listening(&env);
    env.send(&lines[..2]);
    std::thread::sleep(Duration::from_millis(300));
    watcher.signal(Signal::SIGTERM);
    let (code, err) = watcher.wait(Duration::from_secs(15));
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("1 open sessions saved"), "{err}");
    assert!(env.mails().is_empty());

    let watcher = env.spawn(&["watch", "--foreground"]);
    wait_listening(&env);
    env.send(&lines[2..]);
    wait_for("the mail", Duration::from_secs(10), || {
        env.mails().len() == 1
    });
    let text = text_part(&env.mails()[0]);
    assert!(text.contains("DELETED (2)\n  before\n  after"), "{text}");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(env.mails().len(), 1);
    drop(watcher);
}

#[test]
fn detaches_with_a_pid_file_and_stops_on_sigterm() {
    let env = Env::new("daemon", "");
    let out = env.command().arg("watch").output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pid_file = env.state().join("watch.pid");
    let mut pid = 0;
    wait_for("the pid file", Duration::from_secs(10), || {
        pid = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(0);
        pid > 0
    });
    let _guard = PidGuard(pid);
    wait_listening(&env);
    let again = env.command().arg("watch").output().unwrap();
    assert_eq!(again.status.code(), Some(2));
    let pid_t = nix::unistd::Pid::from_raw(pid);
    // The daemon leads no terminal session of ours: it is a session of its own, not its leader.
    let sid = nix::unistd::getsid(Some(pid_t)).unwrap();
    assert_ne!(sid, nix::unistd::getsid(None).unwrap());
    assert_ne!(sid, pid_t);
    nix::sys::signal::kill(pid_t, Signal::SIGTERM).unwrap();
    wait_for("the daemon to stop", Duration::from_secs(15), || {
        nix::sys::signal::kill(pid_t, None).is_err()
    });
}

#[test]
fn follow_survives_rotation() {
    let env = Env::new("follow", "");
    let log = env.dir.join("sftp.log");
    std::fs::write(&log, "").unwrap();
    let watcher = env.spawn(&[
        "watch",
        "--foreground",
        "--trust-unverified",
        "--follow",
        log.to_str().unwrap(),
    ]);
    let file_lines = |pid: u32, name: &str| -> String {
        [
            "session opened for local user alice from [127.0.0.1]".to_string(),
            format!("remove name \"/data/{name}\""),
            "session closed for local user alice from [127.0.0.1]".to_string(),
        ]
        .iter()
        .map(|m| format!("2026-11-27T16:04:18.430882+00:00 vm internal-sftp[{pid}]: {m}\n"))
        .collect()
    };
    std::thread::sleep(Duration::from_millis(500));
    let mut w = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
    w.write_all(file_lines(1, "first").as_bytes()).unwrap();
    wait_for("the first mail", Duration::from_secs(10), || {
        env.mails().len() == 1
    });
    std::fs::rename(&log, env.dir.join("sftp.log.1")).unwrap();
    std::fs::write(&log, file_lines(2, "second")).unwrap();
    wait_for("the second mail", Duration::from_secs(10), || {
        env.mails().len() == 2
    });
    // rsyslog goes on writing to the renamed file until logrotate's postrotate SIGHUP.
    w.write_all(file_lines(3, "late").as_bytes()).unwrap();
    wait_for(
        "the mail of the renamed file's late lines",
        Duration::from_secs(10),
        || env.mails().len() == 3,
    );
    // copytruncate: the same file cut to 0, then written again.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&log)
        .unwrap()
        .set_len(0)
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    std::fs::write(&log, file_lines(4, "after-truncate")).unwrap();
    wait_for(
        "the mail after copytruncate",
        Duration::from_secs(10),
        || env.mails().len() == 4,
    );
    let all = env.mails().join("\n");
    for name in ["first", "second", "late", "after-truncate"] {
        assert!(all.contains(name), "{name}: {all}");
    }
    drop(watcher);
}

#[test]
fn a_missing_file_to_follow_is_refused_before_anything_is_made() {
    let env = Env::new("follow-missing", "");
    let out = env
        .command()
        .args(["watch", "--foreground", "--follow"])
        .arg(env.dir.join("no-such.log"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(!env.state().exists(), "state dir made on bad input");
    assert!(!env.spool().exists(), "spool dir made on bad input");
}

/// The feed socket's directory must be the watcher's (root's) own, and a socket another
/// process listens on is not taken over: both refused at start, exit 2, one line. A stale
/// socket file is replaced, and an open directory is closed to others.
#[test]
fn the_feed_socket_is_root_only_and_never_shared() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let env = Env::new("feed-socket", "");
    let dir = env.dir.join("run");
    std::fs::create_dir_all(&dir).unwrap();
    std::os::unix::fs::chown(&dir, Some(65534), Some(65534)).unwrap();
    let out = env
        .command()
        .args(["watch", "--foreground"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("belongs to uid 65534"), "{err}");

    std::os::unix::fs::chown(&dir, Some(0), Some(0)).unwrap();
    let holder = std::os::unix::net::UnixDatagram::bind(dir.join("watch.sock")).unwrap();
    let out = env
        .command()
        .args(["watch", "--foreground"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("in use by another process"));
    drop(holder); // leaves a stale socket file behind

    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let watcher = env.spawn(&["watch", "--foreground"]);
    wait_for("the feed socket", Duration::from_secs(10), || {
        std::os::unix::net::UnixDatagram::unbound()
            .and_then(|s| s.connect(dir.join("watch.sock")))
            .is_ok()
    });
    assert_eq!(std::fs::metadata(&dir).unwrap().mode() & 0o777, 0o700);
    let sock = std::fs::metadata(dir.join("watch.sock")).unwrap();
    assert_eq!((sock.uid(), sock.mode() & 0o777), (0, 0o600));
    watcher.signal(Signal::SIGTERM);
    let (code, err) = watcher.wait(Duration::from_secs(15));
    assert_eq!(code, Some(0), "{err}");
    assert!(
        !dir.join("watch.sock").exists(),
        "the socket is removed at stop"
    );
}
