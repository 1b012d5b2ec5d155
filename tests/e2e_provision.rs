//! End-to-end tests of `init`, `add-user` and `refresh-log-links` with the real OpenSSH sshd and
//! sftp client and a real rsyslogd, each in its own [`support::Sandbox`]. Run as root.

mod support;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::process::Command;

use support::{show, Sandbox};

/// The harness itself: private rsyslogd (socket, file, UDP), sshd and SMTP server start, and
/// everything — processes, accounts, the dir — is gone after `Drop`.
#[test]
fn harness_starts_daemons_and_cleans_up() {
    let mut sb = Sandbox::new();
    let dir = sb.dir.clone();
    assert!(dir.starts_with("/srv"));
    assert_eq!(fs::metadata(&dir).unwrap().mode() & 0o7777, 0o755);
    // A hand-written drop-in standing in for sftpctl's.
    fs::write(
        sb.path("etc/rsyslog.d/50-test.conf"),
        format!(
            "input(type=\"imuxsock\" Socket=\"{sock}\" CreatePath=\"on\")\n\
             if $programname == 'internal-sftp' then {{\n\
               action(type=\"omfile\" file=\"{log}\")\n\
               action(type=\"omfwd\" target=\"127.0.0.1\" port=\"{port}\" protocol=\"udp\")\n\
               stop\n\
             }}\n",
            sock = sb.root_socket().display(),
            log = sb.log_file.display(),
            port = sb.watch_addr.port(),
        ),
    )
    .unwrap();
    let udp = sb.udp_capture();
    sb.start_rsyslogd();
    let socket = sb.root_socket();
    let logger = |msg: &str| {
        let out = Command::new("logger")
            .arg("-u")
            .arg(&socket)
            .args(["-t", "internal-sftp", msg])
            .output()
            .unwrap();
        assert!(out.status.success(), "logger\n{}", show(&out));
    };
    logger("harness-line-1");
    sb.wait_log_line("harness-line-1");
    udp.wait_for("internal-sftp: harness-line-1");

    let before = sb.root_socket().metadata().unwrap().ino();
    // Like a jail's dev/log: a second link keeps the old inode alive.
    fs::hard_link(sb.root_socket(), sb.path("log/old-socket")).unwrap();
    sb.restart_rsyslogd();
    assert!(!Sandbox::socket_listens(&sb.path("log/old-socket")));
    assert_ne!(before, sb.root_socket().metadata().unwrap().ino());
    logger("harness-line-2");
    sb.wait_log_line("harness-line-2");

    sb.start_sshd();
    let maildir = sb.path("run/maildir");
    let _port = sb.start_smtp(&maildir);

    let user = sb.user("tmp");
    let out = Command::new("useradd")
        .args(["-M", "-s", "/usr/sbin/nologin", &user])
        .output()
        .unwrap();
    assert!(out.status.success(), "useradd\n{}", show(&out));
    let out = Command::new("groupadd").arg(&sb.group).output().unwrap();
    assert!(out.status.success(), "groupadd\n{}", show(&out));
    let snap = sb.snapshot();
    assert!(!snap.entries("/etc/passwd#").is_empty());

    let pidfiles = ["run/rsyslogd.pid", "run/sshd.pid"].map(|p| {
        fs::read_to_string(sb.path(p))
            .unwrap()
            .trim()
            .parse::<i32>()
            .unwrap()
    });
    drop(udp);
    drop(sb);
    if std::env::var_os("SFTPCTL_KEEP_SANDBOX").is_none() {
        assert!(!dir.exists(), "{} still exists", dir.display());
    }
    for pid in pidfiles {
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists()
                || fs::read_to_string(format!("/proc/{pid}/stat"))
                    .map(|s| s.contains(") Z "))
                    .unwrap_or(true),
            "daemon {pid} still running"
        );
    }
    let passwd = fs::read_to_string("/etc/passwd").unwrap();
    assert!(!passwd.contains(&user), "{user} still in /etc/passwd");
    let group = fs::read_to_string("/etc/group").unwrap();
    assert!(
        !group.lines().any(|l| l.starts_with(&format!("{user}:"))),
        "group left behind"
    );
}
