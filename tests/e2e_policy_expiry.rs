//! Account expiry and idle lock (issue 11, item 3) against a real sshd, with `UsePAM no` and
//! `UsePAM yes` (the host's own /etc/pam.d/sshd, read, never changed), key and password
//! logins through the OpenSSH sftp client, and `sftpctl policy run` for the notices and the
//! idle lock. Each test has its own sandbox (see tests/support).

mod support;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Command, Output};

use support::*;

const PASSWORD: &str = "Expiry-test-pw-7";

/// init, rsyslogd, sshd with the given `UsePAM` and password logins on, and one user with a
/// key and a password.
struct World {
    sb: Sandbox,
    user: String,
    key: PathBuf,
}

fn world(pam: bool) -> World {
    let mut sb = Sandbox::new();
    sb.sftpctl_ok(&["init"]);
    let main = sb.path("etc/ssh/sshd_config");
    let text = fs::read_to_string(&main).unwrap();
    let text = text.replace("PasswordAuthentication no", "PasswordAuthentication yes");
    let text = if pam {
        text.replace("UsePAM no", "UsePAM yes")
    } else {
        text
    };
    fs::write(&main, text).unwrap();
    sb.start_rsyslogd();
    let user = sb.user("exp");
    let key = add_user(&sb, &user);
    sb.start_sshd();
    World { sb, user, key }
}

/// A jailed user with a key and [`PASSWORD`]; returns the private key.
fn add_user(sb: &Sandbox, user: &str) -> PathBuf {
    let (key, key_pub) = sb.keygen(user);
    sb.sftpctl_ok(&["add-user", user, "--key", key_pub.to_str().unwrap()]);
    let mut cmd = Command::new(SFTPCTL);
    cmd.arg("--config")
        .arg(&sb.config)
        .args(["passwd", user])
        .env_remove("SFTPCTL_CONFIG");
    assert_ok(run_with_timeout(
        &mut cmd,
        format!("{PASSWORD}\n").as_bytes(),
        DEADLINE,
    ));
    key
}

/// An sftp session with the password only (SSH_ASKPASS answers the prompt). Without `-b`:
/// sftp's batch mode forces ssh's BatchMode, which asks no password at all.
fn sftp_password(sb: &Sandbox, user: &str) -> Output {
    let askpass = sb.path("run/askpass");
    if !askpass.exists() {
        fs::write(&askpass, format!("#!/bin/sh\necho '{PASSWORD}'\n")).unwrap();
        fs::set_permissions(&askpass, fs::Permissions::from_mode(0o700)).unwrap();
    }
    let mut cmd = Command::new("sftp");
    cmd.current_dir(sb.client_dir())
        .args(["-F", "/dev/null", "-P"])
        .arg(sb.ssh_port.to_string())
        .args([
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "PubkeyAuthentication=no",
            "-o",
            "PreferredAuthentications=password,keyboard-interactive",
            "-o",
            "NumberOfPasswordPrompts=1",
            "-o",
            "ConnectTimeout=5",
            "-o",
            "LogLevel=ERROR",
        ])
        .arg(format!("{user}@127.0.0.1"))
        .env("SSH_ASKPASS", &askpass)
        .env("SSH_ASKPASS_REQUIRE", "force")
        .env("DISPLAY", ":0");
    run_with_timeout(&mut cmd, b"ls\n", DEADLINE)
}

/// Key and password logins both work.
#[track_caller]
fn logins_work(sb: &Sandbox, user: &str, key: &std::path::Path, why: &str) {
    let out = sb.sftp(user, key, "ls\n");
    assert!(
        out.status.success(),
        "{why}: key login refused\n{}\n--- sshd ---\n{}",
        show(&out),
        sb.sshd_log()
    );
    let out = sftp_password(sb, user);
    assert!(
        out.status.success(),
        "{why}: password login refused\n{}\n--- sshd ---\n{}",
        show(&out),
        sb.sshd_log()
    );
}

/// Key and password logins are both refused, and sshd says it is for the account's state
/// (not, say, a bad password): without PAM "account is locked" (sshd's check of shadow's
/// expiry and `!`), with PAM "by PAM account configuration" (pam_unix's account check).
#[track_caller]
fn logins_refused(sb: &Sandbox, user: &str, key: &std::path::Path, why: &str) {
    let marker = |log: &str| {
        log.lines()
            .filter(|l| {
                l.contains(user)
                    && (l.contains("not allowed because account is locked")
                        || l.contains("by PAM account configuration"))
            })
            .count()
    };
    let before = marker(&sb.sshd_log());
    let out = sb.sftp(user, key, "ls\n");
    assert!(
        !out.status.success(),
        "{why}: key login let in\n--- sshd ---\n{}",
        sb.sshd_log()
    );
    let out = sftp_password(sb, user);
    assert!(
        !out.status.success(),
        "{why}: password login let in\n--- sshd ---\n{}",
        sb.sshd_log()
    );
    let log = sb.sshd_log();
    assert!(
        marker(&log) > before,
        "{why}: refused, but sshd does not say it was for the account's state\n{log}"
    );
}

/// A live (not zombie) process of `user`'s, or sshd's monitor titled for it.
fn session_running(user: &str) -> bool {
    let uid = uid_of(user).to_string();
    fs::read_dir("/proc").unwrap().flatten().any(|e| {
        let status = fs::read_to_string(e.path().join("status")).unwrap_or_default();
        let field = |k: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(k))
                .unwrap_or("")
                .split_whitespace()
                .map(str::to_string)
                .collect::<Vec<_>>()
        };
        if field("State:").first().is_some_and(|s| s == "Z") {
            return false;
        }
        let cmdline = fs::read(e.path().join("cmdline")).unwrap_or_default();
        field("Uid:").first() == Some(&uid)
            || String::from_utf8_lossy(&cmdline).starts_with(&format!("sshd: {user}"))
    })
}

fn today() -> i64 {
    (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        / 86_400) as i64
}

/// `YYYY-MM-DD` of `days` since 1970-01-01 (UTC).
fn date(days: i64) -> String {
    let out = Command::new("date")
        .args(["-u", "-d"])
        .arg(format!("@{}", days * 86_400))
        .arg("+%F")
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Field 8 of the user's shadow line (account expiry), `None` when empty.
fn shadow_expire(user: &str) -> Option<i64> {
    let text = fs::read_to_string("/etc/shadow").unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with(&format!("{user}:")))
        .unwrap_or_else(|| panic!("{user} not in /etc/shadow"));
    line.split(':').nth(7).and_then(|f| f.parse().ok())
}

fn user_row(sb: &Sandbox, user: &str) -> serde_json::Value {
    let out = sb.sftpctl_ok(&["list-users", "--json"]);
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    rows.as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == user)
        .unwrap_or_else(|| panic!("{user} not listed: {rows}"))
        .clone()
}

/// The boundary in one PAM mode: expired yesterday → refused; expires today → works (its
/// last day); never → works; a lock keeps its own day and unlock puts the expiry back.
fn boundary(pam: bool) {
    let w = world(pam);
    let (sb, user, key) = (&w.sb, w.user.as_str(), w.key.as_path());
    logins_work(sb, user, key, "a fresh account");
    let t = today();
    // What sshd reads: the day itself without PAM, the day after with PAM.
    let field = |d: i64| if pam { d + 1 } else { d };

    sb.sftpctl_ok(&["set", user, &format!("expires={}", date(t - 1))]);
    assert_eq!(shadow_expire(user), Some(field(t - 1)));
    logins_refused(sb, user, key, "expired yesterday");
    let row = user_row(sb, user);
    assert_eq!(row["expired"], true, "{row}");
    assert_eq!(row["locked"], false, "an expiry is not a lock: {row}");
    assert_eq!(row["expires_in_days"], -1, "{row}");
    let text = stdout(&sb.sftpctl_ok(&["list-users"]));
    assert!(text.contains(&format!("EXPIRED {}", date(t - 1))), "{text}");

    // unlock does not pretend: one line, exit 2, nothing changed.
    let snap = sb.snapshot();
    let out = sb.sftpctl(&["unlock", user]);
    assert_fails_one_line(&out, 2);
    assert!(
        stderr(&out).contains(&format!("sftpctl set {user} expires=")),
        "{}",
        show(&out)
    );
    snap.assert_same(&sb.snapshot(), "unlock of an expired account");

    sb.sftpctl_ok(&["set", user, &format!("expires={}", date(t))]);
    assert_eq!(shadow_expire(user), Some(field(t)));
    logins_work(sb, user, key, "expires today (its last day)");
    let row = user_row(sb, user);
    assert_eq!(row["expired"], false, "{row}");
    assert_eq!(row["expires_in_days"], 0, "{row}");
    if pam {
        // Why the day after: the day itself in shadow makes PAM refuse the last day.
        let naive = Command::new("usermod")
            .args(["-e", &t.to_string(), user])
            .output()
            .unwrap();
        assert!(naive.status.success(), "{}", show(&naive));
        logins_refused(sb, user, key, "PAM with the day itself in shadow");
        sb.sftpctl(&["doctor", "--fix"]);
        assert_eq!(shadow_expire(user), Some(field(t)), "doctor --fix");
        logins_work(sb, user, key, "after doctor --fix");
    }
    let again = sb.sftpctl_ok(&["set", user, &format!("expires={}", date(t))]);
    assert!(
        stdout(&again).contains("nothing to change"),
        "{}",
        show(&again)
    );

    // A lock holds its own day; unlock restores the client's expiry, not "never".
    sb.sftpctl_ok(&["lock", user]);
    assert_eq!(shadow_expire(user), Some(1));
    logins_refused(sb, user, key, "locked");
    let row = user_row(sb, user);
    assert_eq!(row["locked"], true, "{row}");
    assert_eq!(row["expired"], false, "{row}");
    sb.sftpctl_ok(&["unlock", user]);
    assert_eq!(shadow_expire(user), Some(field(t)));
    logins_work(sb, user, key, "unlocked, expires today");

    // A session opened on its last day is ended by the first policy run after the end.
    let started = sb.sshd_log().matches("Starting session").count();
    let mut open = sb
        .sftp_command(user, key)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_until("the open session to start", DEADLINE, || {
        sb.sshd_log().matches("Starting session").count() > started
    });
    sb.sftpctl_ok(&["set", user, &format!("expires={}", date(t - 1))]);
    assert!(
        open.try_wait().unwrap().is_none(),
        "the session ended before the run"
    );
    let run = sb.sftpctl_ok(&["policy", "run"]);
    assert!(
        stdout(&run).contains(&format!("ending the sessions of {user}")),
        "{}",
        show(&run)
    );
    // The client notices when it next talks to the server.
    use std::io::Write as _;
    let _ = open.stdin.as_mut().unwrap().write_all(b"ls\n");
    wait_until("the expired client's session to end", DEADLINE, || {
        open.try_wait().unwrap().is_some()
    });
    assert!(
        !open.wait().unwrap().success(),
        "the session went on after the run"
    );
    logins_refused(sb, user, key, "expired again");
    sb.sftpctl_ok(&["set", user, "expires=never"]);
    assert_eq!(shadow_expire(user), None);
    logins_work(sb, user, key, "expires=never");
    let row = user_row(sb, user);
    assert_eq!(row["expires"], serde_json::Value::Null, "{row}");
    assert_eq!(row["expired"], false, "{row}");
}

#[test]
fn expiry_boundary_without_pam() {
    boundary(false);
}

#[test]
fn expiry_boundary_with_pam() {
    boundary(true);
}

/// The admin's notices: a warning inside `expiry_warn_days` and one on expiry, each once
/// however often the job runs.
#[test]
fn warn_and_expired_notices_once_each() {
    let sb = Sandbox::new();
    sb.sftpctl_ok(&["init"]);
    let soon = sb.user("soon");
    let gone = sb.user("gone");
    let later = sb.user("later");
    for u in [&soon, &gone, &later] {
        let (_, key_pub) = sb.keygen(u);
        sb.sftpctl_ok(&["add-user", u, "--key", key_pub.to_str().unwrap()]);
    }
    let t = today();
    sb.sftpctl_ok(&["set", &soon, &format!("expires={}", date(t + 3))]);
    sb.sftpctl_ok(&["set", &gone, &format!("expires={}", date(t - 1))]);
    sb.sftpctl_ok(&["set", &later, &format!("expires={}", date(t + 30))]);

    let first = sb.sftpctl_ok(&["policy", "run"]);
    assert!(
        stdout(&first).contains("2 notice(s) delivered"),
        "{}",
        show(&first)
    );
    let second = sb.sftpctl_ok(&["policy", "run"]);
    assert!(
        !stdout(&second).contains("delivered"),
        "notices sent again\n{}",
        show(&second)
    );
    let spool = sb.path("spool");
    let mut mails: Vec<String> = fs::read_dir(&spool)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    mails.sort();
    let warn = format!("notice-expiry-warn-{soon}-{}.eml", date(t + 3));
    let expired = format!("notice-expired-{gone}-{}.eml", date(t - 1));
    let mut want = vec![warn.clone(), expired.clone()];
    want.sort();
    assert_eq!(mails, want);
    let warn_text = fs::read_to_string(spool.join(&warn)).unwrap();
    assert!(
        warn_text.contains(&format!(
            "Subject: SFTP account {soon} expires on {}",
            date(t + 3)
        )),
        "{warn_text}"
    );
    assert!(warn_text.contains("4 day(s) left"), "{warn_text}");
    let expired_text = fs::read_to_string(spool.join(&expired)).unwrap();
    assert!(
        expired_text.contains(&format!("sftpctl set {gone} expires=")),
        "{expired_text}"
    );
}

/// Idle lock at 1 day: a client whose last session is older is locked, its sessions end and
/// the admin is told; unlock lets it in, and the next run does not lock it again. A client
/// without any recorded session is not locked: its clock starts at the first run.
#[test]
fn idle_lock_locks_notifies_and_unlock_restarts_the_clock() {
    let w = world(false);
    let (sb, user, key) = (&w.sb, w.user.as_str(), w.key.as_path());
    let fresh = sb.user("fresh");
    let fresh_key = add_user(sb, &fresh);
    let text = fs::read_to_string(&sb.config).unwrap();
    sb.set_config(&format!(
        "{text}\n[policy]\nidle_lock_days = 1\nwatcher_runs = false\n"
    ));
    let dir = sb.path("state/last-session");
    fs::create_dir_all(&dir).unwrap();
    let old = Command::new("date")
        .args(["-u", "-d", "2 days ago", "+%Y-%m-%dT%H:%M:%S+00:00"])
        .output()
        .unwrap();
    fs::write(dir.join(user), &old.stdout).unwrap();

    // dry run: says so, changes nothing
    let snap = sb.snapshot();
    let dry = sb.sftpctl_ok(&["policy", "run", "--dry-run"]);
    assert!(
        stdout(&dry).contains(&format!("would lock {user}")),
        "{}",
        show(&dry)
    );
    snap.assert_same(&sb.snapshot(), "policy run --dry-run");
    logins_work(sb, user, key, "before the idle lock");
    // A session still running is not idle: let sshd's processes of those logins go.
    wait_until("the test logins' processes to end", DEADLINE, || {
        !session_running(user)
    });

    let run = sb.sftpctl_ok(&["policy", "run"]);
    assert!(
        stdout(&run).contains(&format!("locking {user}")),
        "{}",
        show(&run)
    );
    assert_eq!(shadow_expire(user), Some(1));
    logins_refused(sb, user, key, "idle-locked");
    assert_eq!(user_row(sb, user)["locked"], true);
    let notice = sb
        .path("spool")
        .join(format!("notice-idle-lock-{user}-{}.eml", date(today())));
    let mail = fs::read_to_string(&notice)
        .unwrap_or_else(|e| panic!("{}: {e}\n{}", notice.display(), show(&run)));
    assert!(mail.contains(&format!("sftpctl unlock {user}")), "{mail}");
    // the client that never had a session is left alone
    assert_eq!(user_row(sb, &fresh)["locked"], false);
    logins_work(sb, &fresh, &fresh_key, "no session yet: clock just started");

    sb.sftpctl_ok(&["unlock", user]);
    assert_eq!(shadow_expire(user), None);
    // Right after unlock, before any session: only the restarted clock keeps it unlocked
    // (its last session is still two days old).
    assert!(!session_running(user));
    let rerun = sb.sftpctl_ok(&["policy", "run"]);
    assert!(
        !stdout(&rerun).contains("locking"),
        "locked again right after unlock\n{}",
        show(&rerun)
    );
    assert_eq!(user_row(sb, user)["locked"], false);
    logins_work(sb, user, key, "unlocked, after the next run");
}

/// Bad dates: one line, exit 2, nothing changed (set and add-user).
#[test]
fn bad_dates_change_nothing() {
    let sb = Sandbox::new();
    sb.sftpctl_ok(&["init"]);
    let user = sb.user("bad");
    let (_, key_pub) = sb.keygen(&user);
    sb.sftpctl_ok(&["add-user", &user, "--key", key_pub.to_str().unwrap()]);
    sb.sftpctl_ok(&["set", &user, "expires=2030-01-31"]);
    let snap = sb.snapshot();
    for bad in [
        "expires=2027-02-30",
        "expires=tomorrow",
        "expires=2027-3-31",
        "expires=",
    ] {
        let out = sb.sftpctl(&["set", &user, bad]);
        assert_fails_one_line(&out, 2);
        assert!(stderr(&out).contains("YYYY-MM-DD"), "{bad}: {}", show(&out));
    }
    let other = sb.user("other");
    let out = sb.sftpctl(&["add-user", &other, "expires=2027-02-30"]);
    assert_fails_one_line(&out, 2);
    snap.assert_same(&sb.snapshot(), "bad expiry dates");
}

/// doctor: a hand-edited shadow expiry is a FAIL naming the fix, `--fix` repairs it; a lock
/// is not drift.
#[test]
fn doctor_finds_and_repairs_shadow_expiry() {
    let sb = Sandbox::new();
    sb.sftpctl_ok(&["init"]);
    let user = sb.user("doc");
    let (_, key_pub) = sb.keygen(&user);
    sb.sftpctl_ok(&["add-user", &user, "--key", key_pub.to_str().unwrap()]);
    let t = today();
    sb.sftpctl_ok(&["set", &user, &format!("expires={}", date(t + 10))]);
    let want = shadow_expire(&user);
    assert_eq!(want, Some(t + 10), "UsePAM no: the day itself");
    let clean = sb.sftpctl(&["doctor"]);
    assert!(
        !stdout(&clean).contains(&format!("expiry of {user}")),
        "{}",
        show(&clean)
    );

    // The admin (or a script) moves the expiry by hand, far into the future.
    let hand = Command::new("usermod")
        .args(["-e", "2099-12-31", &user])
        .output()
        .unwrap();
    assert!(hand.status.success(), "{}", show(&hand));
    let out = sb.sftpctl(&["doctor"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let line = stdout(&out)
        .lines()
        .find(|l| l.contains(&format!("expiry of {user}")))
        .unwrap_or_else(|| panic!("no expiry finding\n{}", show(&out)))
        .to_string();
    assert!(line.starts_with("FAIL"), "{line}");
    assert!(
        line.contains(&format!("expires={}", date(t + 10))),
        "{line}"
    );
    assert!(line.contains("[--fix repairs this]"), "{line}");

    let fixed = sb.sftpctl(&["doctor", "--fix"]);
    assert_eq!(shadow_expire(&user), want, "{}", show(&fixed));
    let after = sb.sftpctl(&["doctor"]);
    assert!(
        !stdout(&after).contains(&format!("expiry of {user}")),
        "{}",
        show(&after)
    );

    // Cleared by hand while the settings keep a date: also a FAIL, also repaired.
    let hand = Command::new("usermod")
        .args(["-e", "", &user])
        .output()
        .unwrap();
    assert!(hand.status.success(), "{}", show(&hand));
    assert!(stdout(&sb.sftpctl(&["doctor"])).contains(&format!("FAIL expiry of {user}")));
    sb.sftpctl(&["doctor", "--fix"]);
    assert_eq!(shadow_expire(&user), want);

    // A lock holds its own day: not a finding.
    sb.sftpctl_ok(&["lock", &user]);
    let locked = sb.sftpctl(&["doctor"]);
    assert!(
        !stdout(&locked).contains(&format!("expiry of {user}")),
        "{}",
        show(&locked)
    );
}

/// `apply` with `expires` and `locked = false` twice: the second run changes nothing (the
/// unlock and the expiry do not undo each other).
#[test]
fn apply_expiry_twice_changes_nothing() {
    let sb = Sandbox::new();
    sb.sftpctl_ok(&["init"]);
    let user = sb.user("app");
    let (_, key_pub) = sb.keygen(&user);
    let key = fs::read_to_string(&key_pub).unwrap();
    let t = today();
    let file = sb.path("run/users.toml");
    fs::write(
        &file,
        format!(
            "[[user]]\nname = \"{user}\"\nkeys = [\"{}\"]\nlocked = false\nexpires = {}\n",
            key.trim(),
            date(t + 20)
        ),
    )
    .unwrap();
    sb.sftpctl_ok(&["apply", file.to_str().unwrap()]);
    assert_eq!(shadow_expire(&user), Some(t + 20));
    let again = sb.sftpctl_ok(&["apply", file.to_str().unwrap()]);
    assert!(
        stdout(&again).contains("nothing to change"),
        "{}",
        show(&again)
    );
    sb.sftpctl_ok(&["lock", &user]);
    sb.sftpctl_ok(&["apply", file.to_str().unwrap()]);
    assert_eq!(shadow_expire(&user), Some(t + 20), "apply unlocked it");
    let again = sb.sftpctl_ok(&["apply", file.to_str().unwrap()]);
    assert!(
        stdout(&again).contains("nothing to change"),
        "{}",
        show(&again)
    );
}
