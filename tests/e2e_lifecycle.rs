//! The user lifecycle after day one, against real sshd, rsyslogd and the OpenSSH sftp client:
//! list-users, remove-user, key add/remove/list, passwd, lock/unlock, set-email, and the
//! declarative `apply` (issue 4). Each test has its own sandbox (see tests/support).

mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use support::*;

/// init, rsyslogd, sshd, and one user `alice` with a key.
struct World {
    sb: Sandbox,
    alice: String,
    key: PathBuf,
    key_pub: PathBuf,
}

fn world() -> World {
    let mut sb = Sandbox::new();
    sb.sftpctl_ok(&["init"]);
    sb.start_rsyslogd();
    let alice = sb.user("alice");
    let (key, key_pub) = sb.keygen("alice");
    sb.sftpctl_ok(&["add-user", &alice, "--key", key_pub.to_str().unwrap()]);
    sb.start_sshd();
    World {
        sb,
        alice,
        key,
        key_pub,
    }
}

fn sftpctl_stdin(sb: &Sandbox, args: &[&str], input: &str) -> Output {
    let mut cmd = Command::new(SFTPCTL);
    cmd.arg("--config").arg(&sb.config).args(args);
    run_with_timeout(&mut cmd, input.as_bytes(), DEADLINE)
}

fn shadow_field(user: &str) -> String {
    fs::read_to_string("/etc/shadow")
        .unwrap()
        .lines()
        .find(|l| l.starts_with(&format!("{user}:")))
        .map(|l| l.split(':').nth(1).unwrap().to_string())
        .unwrap_or_else(|| panic!("{user} not in /etc/shadow"))
}

fn fingerprint(pub_key: &Path) -> String {
    let out = Command::new("ssh-keygen")
        .arg("-lf")
        .arg(pub_key)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_string()
}

#[test]
fn key_add_and_remove_decide_real_logins() {
    let w = world();
    let sb = &w.sb;
    let (key2, key2_pub) = sb.keygen("second");
    assert!(
        !sb.sftp(&w.alice, &key2, "ls\n").status.success(),
        "unknown key let in"
    );

    sb.sftpctl_ok(&["key", "add", &w.alice, key2_pub.to_str().unwrap()]);
    sb.sftp_ok(&w.alice, &key2, "ls\n");
    // a duplicate is refused and changes nothing
    let snap = sb.snapshot();
    let out = sb.sftpctl(&["key", "add", &w.alice, key2_pub.to_str().unwrap()]);
    assert_fails_one_line(&out, 2);
    assert!(
        stderr(&out).contains("already authorized"),
        "{}",
        show(&out)
    );
    snap.assert_same(&sb.snapshot(), "duplicate key add");

    let list = stdout(&sb.sftpctl_ok(&["key", "list", &w.alice]));
    assert!(list.contains(&fingerprint(&w.key_pub)), "{list}");
    assert!(list.contains(&fingerprint(&key2_pub)), "{list}");

    sb.sftpctl_ok(&["key", "remove", &w.alice, &fingerprint(&w.key_pub)]);
    assert!(
        !sb.sftp(&w.alice, &w.key, "ls\n").status.success(),
        "removed key still works"
    );
    sb.sftp_ok(&w.alice, &key2, "ls\n");

    let out = sb.sftpctl(&["key", "remove", &w.alice, "SHA256:nope"]);
    assert_fails_one_line(&out, 2);
}

#[test]
fn lock_ends_logins_and_unlock_restores_them() {
    let w = world();
    let sb = &w.sb;
    sb.sftpctl_ok(&["lock", &w.alice]);
    assert!(shadow_field(&w.alice).starts_with('!'));
    assert!(
        !sb.sftp(&w.alice, &w.key, "ls\n").status.success(),
        "locked user logged in"
    );
    let list = sb.sftpctl_ok(&["list-users", "--json"]);
    let rows: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(rows[0]["locked"], true, "{rows}");

    let again = sb.sftpctl_ok(&["lock", &w.alice]);
    assert!(
        stdout(&again).contains("nothing to change"),
        "{}",
        show(&again)
    );
    sb.sftpctl_ok(&["unlock", &w.alice]);
    assert_eq!(shadow_field(&w.alice), "*");
    sb.sftp_ok(&w.alice, &w.key, "ls\n");
}

#[test]
fn passwd_reads_stdin_and_stores_a_hash() {
    let w = world();
    let sb = &w.sb;
    let out = sftpctl_stdin(sb, &["passwd", &w.alice], "correct horse battery\n");
    assert!(out.status.success(), "{}", show(&out));
    let field = shadow_field(&w.alice);
    assert!(
        field.starts_with("$y$") || field.starts_with("$6$"),
        "{field}"
    );
    assert!(
        !show(&out).contains("correct horse"),
        "password echoed: {}",
        show(&out)
    );
    // keys keep working
    sb.sftp_ok(&w.alice, &w.key, "ls\n");

    let snap = sb.snapshot();
    let out = sftpctl_stdin(sb, &["passwd", &w.alice], "\n");
    assert_fails_one_line(&out, 2);
    snap.assert_same(&sb.snapshot(), "empty password");
}

#[test]
fn set_email_and_list_users() {
    let w = world();
    let sb = &w.sb;
    fs::write(sb.data(&w.alice).join("f.bin"), vec![7u8; 2048]).unwrap();
    sb.sftpctl_ok(&["set-email", &w.alice, "alice@client.example"]);
    let out = sb.sftpctl_ok(&["list-users", "--json"]);
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 1, "{rows}");
    let row = &rows[0];
    assert_eq!(row["name"], w.alice.as_str());
    assert_eq!(row["email"], "alice@client.example");
    assert_eq!(row["keys"], 1);
    assert_eq!(row["data_bytes"], 2048);
    assert_eq!(row["locked"], false);
    let text = stdout(&sb.sftpctl_ok(&["list-users"]));
    assert!(
        text.contains(&w.alice) && text.contains("2.0 KiB"),
        "{text}"
    );

    let snap = sb.snapshot();
    for bad in ["not an address", "a@b\nBcc: x@y"] {
        let out = sb.sftpctl(&["set-email", &w.alice, bad]);
        assert_fails_one_line(&out, 2);
    }
    let out = sb.sftpctl(&["set-email", "daemon", "x@y.example"]);
    assert_fails_one_line(&out, 2);
    snap.assert_same(&sb.snapshot(), "bad set-email");
}

#[test]
fn remove_user_keeps_archives_or_removes_data_only_when_asked() {
    let w = world();
    let sb = &w.sb;
    let bob = sb.user("bob");
    let (_, bob_pub) = sb.keygen("bob");
    sb.sftpctl_ok(&["add-user", &bob, "--key", bob_pub.to_str().unwrap()]);
    fs::write(sb.client_dir().join("doc.txt"), b"tax papers\n").unwrap();
    sb.sftp_ok(&w.alice, &w.key, "put doc.txt /data/doc.txt\n");

    // data present and no choice made: refused, nothing changed
    let snap = sb.snapshot();
    let out = sb.sftpctl(&["remove-user", &w.alice]);
    assert_fails_one_line(&out, 2);
    assert!(stderr(&out).contains("--archive"), "{}", show(&out));
    snap.assert_same(&sb.snapshot(), "remove-user without a data choice");

    // dry run changes nothing
    let archive = sb.path("alice.tar.gz");
    let a = archive.to_str().unwrap();
    let out = sb.sftpctl_ok(&["remove-user", &w.alice, "--archive", a, "--dry-run"]);
    assert!(stdout(&out).contains("remove account"), "{}", show(&out));
    snap.assert_same(&sb.snapshot(), "remove-user --dry-run");

    sb.sftpctl_ok(&["remove-user", &w.alice, "--archive", a]);
    let md = fs::metadata(&archive).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&md.permissions()) & 0o777,
        0o600
    );
    let listing = Command::new("tar")
        .arg("-tzf")
        .arg(&archive)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&listing.stdout).contains("data/doc.txt"));
    assert!(
        nix::unistd::User::from_name(&w.alice).unwrap().is_none(),
        "account left"
    );
    assert!(!sb.jail(&w.alice).exists(), "jail left");
    assert!(!sb
        .path("etc/ssh/sftpctl/authorized_keys")
        .join(&w.alice)
        .exists());
    assert!(!sb.sftp(&w.alice, &w.key, "ls\n").status.success());

    // --keep-data leaves the data dir where it was
    fs::write(sb.data(&bob).join("keep.txt"), b"keep me").unwrap();
    sb.sftpctl_ok(&["remove-user", &bob, "--keep-data"]);
    assert_eq!(
        fs::read(sb.data(&bob).join("keep.txt")).unwrap(),
        b"keep me"
    );
    assert!(nix::unistd::User::from_name(&bob).unwrap().is_none());

    let list = stdout(&sb.sftpctl_ok(&["list-users"]));
    assert!(!list.contains(&w.alice) && !list.contains(&bob), "{list}");

    // not managed: refused
    let out = sb.sftpctl(&["remove-user", "daemon", "--remove-data"]);
    assert_fails_one_line(&out, 2);
    assert!(nix::unistd::User::from_name("daemon").unwrap().is_some());
}

#[test]
fn apply_creates_changes_prunes_then_changes_nothing() {
    let w = world();
    let sb = &w.sb;
    let carol = sb.user("carol");
    let dave = sb.user("dave");
    let (carol_key, carol_pub) = sb.keygen("carol");
    let (_, dave_pub) = sb.keygen("dave");
    let line = |p: &Path| fs::read_to_string(p).unwrap().trim().to_string();
    // alice keeps her key and gets an e-mail; carol is new; dave exists and is pruned.
    sb.sftpctl_ok(&["add-user", &dave, "--key", dave_pub.to_str().unwrap()]);
    let users = sb.path("users.toml");
    fs::write(
        &users,
        format!(
            r#"[[user]]
name = "{alice}"
keys = ["{alice_key}"]
email = "alice@client.example"

[[user]]
name = "{carol}"
keys = ["{carol_key}"]
locked = false
password_hash = "*"
"#,
            alice = w.alice,
            alice_key = line(&w.key_pub),
            carol = carol,
            carol_key = line(&carol_pub),
        ),
    )
    .unwrap();
    let u = users.to_str().unwrap();

    let snap = sb.snapshot();
    let out = sb.sftpctl(&["apply", u, "--prune", "--dry-run", "--exit-code"]);
    assert_eq!(out.status.code(), Some(3), "{}", show(&out));
    snap.assert_same(&sb.snapshot(), "apply --dry-run");

    sb.sftpctl_ok(&["apply", u, "--prune"]);
    sb.sftp_ok(&carol, &carol_key, "ls\n");
    sb.sftp_ok(&w.alice, &w.key, "ls\n");
    assert!(
        nix::unistd::User::from_name(&dave).unwrap().is_none(),
        "dave not pruned"
    );
    let rows: serde_json::Value =
        serde_json::from_slice(&sb.sftpctl_ok(&["list-users", "--json"]).stdout).unwrap();
    let names: Vec<&str> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 2, "{rows}");
    assert!(names.contains(&w.alice.as_str()) && names.contains(&carol.as_str()));

    let snap = sb.snapshot();
    let out = sb.sftpctl_ok(&["apply", u, "--prune"]);
    assert!(stdout(&out).contains("nothing to change"), "{}", show(&out));
    let out = sb.sftpctl(&["apply", u, "--prune", "--dry-run", "--exit-code"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    snap.assert_same(&sb.snapshot(), "second apply");
}

#[test]
fn apply_refuses_a_bad_file_before_changing_anything() {
    let w = world();
    let sb = &w.sb;
    let users = sb.path("users.toml");
    let ok_user = sb.user("erin");
    for bad in [
        format!("[[user]]\nname = \"{ok_user}\"\n[[user]]\nname = \"Bad Name\"\n"),
        format!("[[user]]\nname = \"{ok_user}\"\n[[user]]\nname = \"{ok_user}\"\n"),
        format!("[[user]]\nname = \"{ok_user}\"\nkeys = [\"ssh-ed25519 garbage\"]\n"),
        format!("[[user]]\nname = \"{ok_user}\"\npassword_hash = \"plaintext\"\n"),
        format!("[[user]]\nname = \"{ok_user}\"\nemail = \"a@b\\nBcc: c@d\"\n"),
        "[[user]]\nname = \"daemon\"\n".to_string(),
        format!("[[user]]\nname = \"{ok_user}\"\nshell = \"/bin/sh\"\n"),
    ] {
        fs::write(&users, &bad).unwrap();
        let snap = sb.snapshot();
        let out = sb.sftpctl(&["apply", users.to_str().unwrap()]);
        assert_fails_one_line(&out, 2);
        snap.assert_same(&sb.snapshot(), &format!("apply of {bad:?}"));
    }
    assert!(nix::unistd::User::from_name(&ok_user).unwrap().is_none());
}

#[test]
fn add_user_takes_an_email_and_a_password_on_stdin() {
    let w = world();
    let sb = &w.sb;
    let bob = sb.user("bob");
    let (bob_key, bob_pub) = sb.keygen("bob");
    let out = sftpctl_stdin(
        sb,
        &[
            "add-user",
            &bob,
            "--key",
            bob_pub.to_str().unwrap(),
            "--email",
            "bob@client.example",
            "--password-stdin",
        ],
        "s3cret pass\n",
    );
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        !show(&out).contains("s3cret"),
        "password echoed: {}",
        show(&out)
    );
    let field = shadow_field(&bob);
    assert!(
        field.starts_with("$y$") || field.starts_with("$6$"),
        "{field}"
    );
    sb.sftp_ok(&bob, &bob_key, "ls\n");
    let rows: serde_json::Value =
        serde_json::from_slice(&sb.sftpctl_ok(&["list-users", "--json"]).stdout).unwrap();
    let row = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == bob.as_str())
        .unwrap();
    assert_eq!(row["email"], "bob@client.example");

    let carol = sb.user("carol");
    let snap = sb.snapshot();
    let out = sb.sftpctl(&["add-user", &carol, "--email", "not-an-address"]);
    assert_fails_one_line(&out, 2);
    snap.assert_same(&sb.snapshot(), "add-user with a bad --email");
}

/// Lines of /etc/subuid or /etc/subgid that give `user` a range.
fn subordinate_lines(file: &str, user: &str) -> Vec<String> {
    fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.split(':').next() == Some(user))
        .map(str::to_string)
        .collect()
}

#[test]
fn add_user_allocates_no_subordinate_ids_and_remove_user_drops_old_ones() {
    let w = world();
    let sb = &w.sb;
    assert!(
        Path::new("/etc/subuid").exists(),
        "this test needs /etc/subuid (useradd allocates only when it exists)"
    );
    for file in ["/etc/subuid", "/etc/subgid"] {
        let lines = subordinate_lines(file, &w.alice);
        assert!(lines.is_empty(), "{file} gives {}: {lines:?}", w.alice);
    }

    // An account from before this fix still holds ranges: remove-user (userdel) drops them.
    let start = 700_000_000 + (std::process::id() % 100_000) * 16;
    let range = format!("{start}-{}", start + 15);
    let out = Command::new("usermod")
        .args(["--add-subuids", &range, "--add-subgids", &range, &w.alice])
        .output()
        .unwrap();
    assert!(out.status.success(), "usermod\n{}", show(&out));
    assert_eq!(subordinate_lines("/etc/subuid", &w.alice).len(), 1);
    sb.sftpctl_ok(&["remove-user", &w.alice, "--remove-data"]);
    for file in ["/etc/subuid", "/etc/subgid"] {
        let lines = subordinate_lines(file, &w.alice);
        assert!(
            lines.is_empty(),
            "{file} still gives {}: {lines:?}",
            w.alice
        );
    }
}

/// Pids of sshd's processes whose title names `user` (`sshd: USER [priv]`, `sshd: USER@notty`,
/// or the same with `sshd-session:` on OpenSSH >= 9.8).
fn session_processes(user: &str) -> Vec<String> {
    let mut out = Vec::new();
    for entry in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(cmdline) = fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let title = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        let title = title.trim_end();
        let named = [format!("sshd: {user} "), format!("sshd: {user}@")]
            .iter()
            .chain(&[
                format!("sshd-session: {user} "),
                format!("sshd-session: {user}@"),
            ])
            .any(|p| title.starts_with(p.as_str()));
        if named {
            out.push(format!("{} {title}", entry.file_name().to_string_lossy()));
        }
    }
    out
}

#[test]
fn lock_ends_a_running_session_and_its_sshd_monitor() {
    use std::process::Stdio;
    let w = world();
    let sb = &w.sb;
    // A session that stays open: sftp reads its batch from a pipe we keep open.
    let mut client = sb
        .sftp_command(&w.alice, &w.key)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_until("the session's processes", DEADLINE, || {
        let procs = session_processes(&w.alice);
        procs.iter().any(|p| p.contains("[priv]")) && procs.iter().any(|p| p.contains('@'))
    });
    sb.sftpctl_ok(&["lock", &w.alice]);
    let left = session_processes(&w.alice);
    assert!(left.is_empty(), "left running after lock: {left:?}");
    // The client finds its connection gone at its next request.
    {
        use std::io::Write;
        let mut stdin = client.stdin.take().unwrap();
        let _ = stdin.write_all(b"ls\n");
    }
    let mut status = None;
    wait_until("the sftp client to end", DEADLINE, || {
        status = client.try_wait().unwrap();
        status.is_some()
    });
    assert!(!status.unwrap().success(), "the session went on after lock");
}

#[test]
fn key_add_list_remove_work_for_the_admin_and_refusals_name_the_command() {
    let mut sb = Sandbox::new();
    let admin = sb.admin.clone();
    sb.edit_config(
        "umask = \"0007\"\n",
        &format!("umask = \"0007\"\nadmin = \"{admin}\"\n"),
    );
    // Before init the admin has no account: the refusal names init.
    let (key, key_pub) = sb.keygen("admin");
    let out = sb.sftpctl(&["key", "add", &admin, key_pub.to_str().unwrap()]);
    assert_fails_one_line(&out, 2);
    assert!(stderr(&out).contains("sftpctl init"), "{}", show(&out));

    sb.sftpctl_ok(&["init"]);
    sb.start_rsyslogd();
    sb.start_sshd();
    assert!(
        !sb.sftp(&admin, &key, "ls\n").status.success(),
        "the admin logged in without a key"
    );
    sb.sftpctl_ok(&["key", "add", &admin, key_pub.to_str().unwrap()]);
    sb.sftp_ok(&admin, &key, "ls\n");
    let list = stdout(&sb.sftpctl_ok(&["key", "list", &admin]));
    assert!(list.contains(&fingerprint(&key_pub)), "{list}");

    let out = sb.sftpctl_ok(&["key", "remove", &admin, "1"]);
    assert!(
        stderr(&out).contains("has no key in"),
        "no note about the admin's last key\n{}",
        show(&out)
    );
    assert!(
        !sb.sftp(&admin, &key, "ls\n").status.success(),
        "a removed key still lets the admin in"
    );

    // Other accounts: refused, the refusal names the commands that do the job.
    let other = sb.local_account("other");
    let snap = sb.snapshot();
    let out = sb.sftpctl(&["key", "add", &other.name, key_pub.to_str().unwrap()]);
    assert_fails_one_line(&out, 2);
    let err = stderr(&out);
    assert!(
        err.contains("not an account sftpctl manages")
            && err.contains("sftpctl add-user")
            && err.contains(&format!("sftpctl init --admin {}", other.name)),
        "{}",
        show(&out)
    );
    let ghost = sb.user("ghost");
    let out = sb.sftpctl(&["key", "list", &ghost]);
    assert_fails_one_line(&out, 2);
    assert!(
        stderr(&out).contains(&format!("sftpctl add-user {ghost}")),
        "{}",
        show(&out)
    );
    // The admin is no jailed user: lock names the key commands instead of failing vaguely.
    let out = sb.sftpctl(&["lock", &admin]);
    assert_fails_one_line(&out, 2);
    assert!(stderr(&out).contains("sftpctl key"), "{}", show(&out));
    snap.assert_same(&sb.snapshot(), "refused key commands");
}
