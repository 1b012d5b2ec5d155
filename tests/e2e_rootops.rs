//! Root's operations on accounts and client-controlled trees (issue 9 items 11 and 14), against
//! real sshd, rsyslogd, the OpenSSH sftp client and a real unprivileged local account:
//! locks made by other tools survive `doctor --fix`; `remove-user --archive` writes only
//! through the descriptor it opened, refuses a directory others can write, removes trees
//! deeper than the descriptor limit, and keeps the archive when a late step fails.

mod support;

use std::fs;
use std::path::PathBuf;
use std::process::{Command, Output};

use support::*;

/// init, rsyslogd, sshd, and one user `alice` with a key.
struct World {
    sb: Sandbox,
    alice: String,
    key: PathBuf,
}

fn world() -> World {
    let mut sb = Sandbox::new();
    sb.sftpctl_ok(&["init"]);
    sb.start_rsyslogd();
    let alice = sb.user("alice");
    let (key, key_pub) = sb.keygen("alice");
    sb.sftpctl_ok(&["add-user", &alice, "--key", key_pub.to_str().unwrap()]);
    sb.start_sshd();
    World { sb, alice, key }
}

fn shadow_field(user: &str) -> String {
    fs::read_to_string("/etc/shadow")
        .unwrap()
        .lines()
        .find(|l| l.starts_with(&format!("{user}:")))
        .map(|l| l.split(':').nth(1).unwrap().to_string())
        .unwrap_or_else(|| panic!("{user} not in /etc/shadow"))
}

fn run(argv: &[&str]) -> Output {
    run_with_timeout(Command::new(argv[0]).args(&argv[1..]), b"", DEADLINE)
}

/// `doctor --fix` must leave a `!` lock in place and the client locked out.
#[track_caller]
fn doctor_fix_keeps_the_lock(w: &World, context: &str) {
    let before = shadow_field(&w.alice);
    assert!(before.starts_with('!'), "{context}: not locked: {before}");
    let out = w.sb.sftpctl(&["doctor", "--fix"]);
    let text = stdout(&out);
    assert!(
        text.lines().any(|l| l.starts_with("warn")
            && l.contains(&format!("account {}", w.alice))
            && l.contains("not by sftpctl lock")),
        "{context}: the lock is not reported\n{}",
        show(&out)
    );
    assert!(
        !text.contains("usermod -p"),
        "{context}: doctor proposes an unlock\n{}",
        show(&out)
    );
    let after = shadow_field(&w.alice);
    assert_eq!(after, before, "{context}: doctor --fix changed the lock");
    let login = w.sb.sftp(&w.alice, &w.key, "ls\n");
    assert!(
        !login.status.success(),
        "{context}: a locked client logged in after doctor --fix\n{}",
        show(&login)
    );
}

#[test]
fn doctor_fix_never_unlocks_a_usermod_lock() {
    let w = world();
    let sb = &w.sb;
    sb.sftp_ok(&w.alice, &w.key, "ls\n");

    // Key-only account locked by another tool: `*` → `!*`.
    assert_ok(run(&["usermod", "-L", &w.alice]));
    assert_eq!(shadow_field(&w.alice), "!*");
    doctor_fix_keeps_the_lock(&w, "usermod -L on a key-only account");

    // A password account locked by another tool: `!$y$…`.
    assert_ok(run(&["usermod", "-U", &w.alice]));
    let mut cmd = Command::new(SFTPCTL);
    cmd.arg("--config")
        .arg(&sb.config)
        .args(["passwd", &w.alice]);
    assert_ok(run_with_timeout(&mut cmd, b"Correct horse 9\n", DEADLINE));
    assert_ok(run(&["usermod", "-L", &w.alice]));
    assert!(shadow_field(&w.alice).starts_with("!$"));
    doctor_fix_keeps_the_lock(&w, "usermod -L on a password account");

    // `!` alone (useradd's default): also a lock; `sftpctl unlock` is what lifts it.
    assert_ok(run(&["usermod", "-p", "!", &w.alice]));
    doctor_fix_keeps_the_lock(&w, "'!' alone");
    sb.sftpctl_ok(&["unlock", &w.alice]);
    assert_eq!(shadow_field(&w.alice), "*");
    sb.sftp_ok(&w.alice, &w.key, "ls\n");
}
