//! Delivery over real SMTP: Debian's aiosmtpd writing to a maildir, the watcher fed with real
//! UDP datagrams. Shows one mail per session, the outbox holding reports while the server is
//! down or stalled, and exactly-once delivery across a SIGTERM and restart.

mod watch_common;

use std::net::TcpListener;
use std::time::Duration;

use nix::sys::signal::Signal;
use watch_common::*;

fn smtp_env(name: &str, smtp_port: u16) -> Env {
    Env::new(
        name,
        &format!(
            "transport = \"smtp\"\n[mail.smtp]\nhost = \"127.0.0.1\"\nport = {smtp_port}\ntimeout_secs = 2\n"
        ),
    )
}

#[test]
fn one_mail_per_session_naming_each_file_with_its_bytes() {
    let smtp_port = free_tcp_port();
    let env = smtp_env("smtp-one", smtp_port);
    let maildir = env.dir.join("maildir");
    let _smtp = start_smtp(smtp_port, &maildir);
    let _watcher = env.spawn(&["watch", "--foreground"]);
    wait_listening(&env);
    let mut lines = udp_session(
        "vm",
        4242,
        "alice",
        &[
            "open \"/data/report.pdf.filepart\" flags WRITE,CREATE,TRUNCATE mode 0644",
            "close \"/data/report.pdf.filepart\" bytes read 0 written 123456",
            "posix-rename old \"/data/report.pdf.filepart\" new \"/data/report.pdf\"",
            "open \"/data/in/order.csv\" flags READ mode 0666",
            "close \"/data/in/order.csv\" bytes read 789 written 0",
            "posix-rename old \"/data/a.txt\" new \"/data/b.txt\"",
            "remove name \"/data/old.txt\"",
            "remove name \"/data/missing.txt\"",
            "sent status No such file",
        ],
    );
    lines.extend(udp_session(
        "other-host",
        4242,
        "bob",
        &["mkdir name \"/data/x\" mode 0777"],
    ));
    lines.extend(udp_session(
        "vm",
        4243,
        "carol",
        &["opendir \"/data\"", "closedir \"/data\""],
    ));
    env.send(&lines);
    wait_for("two mails", Duration::from_secs(20), || {
        maildir_mails(&maildir).len() >= 2
    });
    std::thread::sleep(Duration::from_millis(1500));
    let mails = maildir_mails(&maildir);
    assert_eq!(
        mails.len(),
        2,
        "one per session with activity, none for a listing"
    );
    let alice = mails
        .iter()
        .find(|m| m.contains("alice"))
        .expect("alice's mail");
    let text = text_of(alice);
    assert!(
        text.contains("report.pdf  120.6 KiB (123,456 bytes)"),
        "{text}"
    );
    assert!(text.contains("in/order.csv  789 bytes"), "{text}");
    assert!(text.contains("a.txt → b.txt"), "{text}");
    assert!(text.contains("DELETED (1)\n  old.txt"), "{text}");
    assert!(text.contains("remove missing.txt: No such file"), "{text}");
    assert!(!text.contains("filepart"));
    assert!(mails.iter().any(|m| m.contains("bob@other-host")));
}

#[test]
fn report_waits_in_the_outbox_until_the_server_starts() {
    let smtp_port = free_tcp_port();
    let env = smtp_env("smtp-down", smtp_port);
    let maildir = env.dir.join("maildir");
    let _watcher = env.spawn(&["watch", "--foreground"]);
    wait_listening(&env);
    env.send(&udp_session(
        "vm",
        100,
        "alice",
        &[
            "open \"/data/late.bin\" flags WRITE,CREATE mode 0644",
            "close \"/data/late.bin\" bytes read 0 written 5",
        ],
    ));
    wait_for("the report in the outbox", Duration::from_secs(10), || {
        pending_reports(&env) == 1
    });
    std::thread::sleep(Duration::from_secs(2));
    assert!(maildir_mails(&maildir).is_empty());
    assert_eq!(pending_reports(&env), 1, "still waiting in the outbox");
    let _smtp = start_smtp(smtp_port, &maildir);
    wait_for(
        "the mail after the server started",
        Duration::from_secs(20),
        || maildir_mails(&maildir).len() == 1,
    );
    assert!(text_of(&maildir_mails(&maildir)[0]).contains("late.bin  5 bytes"));
}

#[test]
fn reading_goes_on_while_the_server_stalls() {
    let smtp_port = free_tcp_port();
    let env = smtp_env("smtp-stall", smtp_port);
    let maildir = env.dir.join("maildir");
    // A server that accepts connections and never says a word.
    let staller = TcpListener::bind(("127.0.0.1", smtp_port)).unwrap();
    let _watcher = env.spawn(&["watch", "--foreground"]);
    wait_listening(&env);
    let sessions = 300;
    for pid in 0..sessions {
        env.send(&udp_session(
            "vm",
            1000 + pid,
            "alice",
            &["remove name \"/data/x\""],
        ));
    }
    wait_for(
        "every report in the outbox",
        Duration::from_secs(20),
        || pending_reports(&env) == sessions as usize,
    );
    assert!(maildir_mails(&maildir).is_empty());
    drop(staller);
    let _smtp = start_smtp(smtp_port, &maildir);
    wait_for("every mail", Duration::from_secs(60), || {
        maildir_mails(&maildir).len() == sessions as usize
    });
}

#[test]
fn sigterm_mid_session_then_restart_delivers_once() {
    let smtp_port = free_tcp_port();
    let env = smtp_env("smtp-restart", smtp_port);
    let maildir = env.dir.join("maildir");
    let _smtp = start_smtp(smtp_port, &maildir);
    let lines = udp_session(
        "vm",
        555,
        "alice",
        &[
            "open \"/data/part1\" flags WRITE,CREATE mode 0644",
            "close \"/data/part1\" bytes read 0 written 10",
            "open \"/data/part2\" flags WRITE,CREATE mode 0644",
            "close \"/data/part2\" bytes read 0 written 20",
        ],
    );
    let watcher = env.spawn(&["watch", "--foreground"]);
    wait_listening(&env);
    env.send(&lines[..3]);
    std::thread::sleep(Duration::from_millis(300));
    watcher.signal(Signal::SIGTERM);
    let (code, err) = watcher.wait(Duration::from_secs(15));
    assert_eq!(code, Some(0), "{err}");

    let _watcher = env.spawn(&["watch", "--foreground"]);
    wait_listening(&env);
    env.send(&lines[3..]);
    wait_for("the mail", Duration::from_secs(20), || {
        !maildir_mails(&maildir).is_empty()
    });
    std::thread::sleep(Duration::from_secs(2));
    let mails = maildir_mails(&maildir);
    assert_eq!(mails.len(), 1, "exactly once");
    let text = text_of(&mails[0]);
    assert!(
        text.contains("part1  10 bytes") && text.contains("part2  20 bytes"),
        "{text}"
    );
}

#[test]
fn refuses_a_password_file_others_can_read() {
    let env = Env::new("smtp-pw", "");
    let pw = env.dir.join("smtp-password");
    std::fs::write(&pw, "s3cret-do-not-log\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o640)).unwrap();
    let mut env = env;
    env.write_config(&format!(
        "transport = \"smtp\"\n[mail.smtp]\nusername = \"mailer\"\npassword_file = \"{}\"\n",
        pw.display()
    ));
    let (code, err) = env.watch_stdin(b"");
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("mode 0640") && err.contains("chmod 600"),
        "{err}"
    );
    assert!(!err.contains("s3cret"));
    std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (code, err) = env.watch_stdin(b"");
    assert_eq!(code, Some(0), "{err}");
    assert!(!err.contains("s3cret"));
}

/// `transport = "sendmail"` with a real sendmail-compatible program: msmtp, handing the mail to
/// aiosmtpd. While the server is down msmtp fails and the reports wait in the outbox.
#[test]
fn sendmail_transport_hands_each_report_to_a_real_sendmail() {
    let smtp_port = free_tcp_port();
    let mut env = Env::new("sendmail", "");
    let wrapper = env.dir.join("sendmail");
    std::fs::write(
        &wrapper,
        format!("#!/bin/sh\nexec /usr/bin/msmtp --host=127.0.0.1 --port={smtp_port} \"$@\"\n"),
    )
    .unwrap();
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    env.write_config(&format!(
        "transport = \"sendmail\"\nsendmail = \"{}\"\n",
        wrapper.display()
    ));
    let log = std::fs::read(fixture("openssh-9.2-rsyslog-file.log")).unwrap();
    let (code, err) = env.watch_stdin(&log);
    assert_eq!(code, Some(1), "no server yet: {err}");
    assert!(err.contains("sendmail"), "{err}");
    assert_eq!(pending_reports(&env), 5);

    let maildir = env.dir.join("maildir");
    let _smtp = start_smtp(smtp_port, &maildir);
    let (code, err) = env.watch_stdin(b"");
    assert_eq!(code, Some(0), "{err}");
    let mails = maildir_mails(&maildir);
    assert_eq!(mails.len(), 5, "{err}");
    assert!(mails.iter().all(|m| m.contains("To: admin@example.com")));
    let all: String = mails.iter().map(|m| text_of(m)).collect();
    assert!(all.contains("big.bin  2.9 MiB (3,000,000 bytes)"), "{all}");
}

#[test]
fn a_sendmail_that_is_not_there_stops_the_watcher_at_start() {
    let mut env = Env::new("sendmail-missing", "");
    let missing = env.dir.join("no-such-sendmail");
    env.write_config(&format!(
        "transport = \"sendmail\"\nsendmail = \"{}\"\n",
        missing.display()
    ));
    let (code, err) = env.watch_stdin(b"");
    assert_eq!(code, Some(2), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("mail.sendmail"), "{err}");
    assert!(!env.state().exists(), "nothing made before the refusal");
}
