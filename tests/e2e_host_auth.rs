//! sftpctl never narrows what the host's own sshd config allows accounts it does not jail
//! (issue 10, "Admin locked out"): real logins against the sandbox's private sshd after
//! `init`, and the guard that rolls `init` back when its blocks would change an account's
//! authentication. Run as root.

mod support;

use std::fs;
use std::os::unix::fs::{chown, PermissionsExt};
use std::path::Path;
use std::process::{Command, Output};

use support::{run_with_timeout, show, stderr, stdout, uid_of, Sandbox, DEADLINE};

/// `ssh -i KEY USER@127.0.0.1 -p PORT true`: a real login with a shell, no sftp involved.
fn ssh_true(sb: &Sandbox, user: &str, key: &Path) -> Output {
    let mut cmd = Command::new("ssh");
    cmd.args(["-F", "/dev/null", "-p"])
        .arg(sb.ssh_port.to_string())
        .arg("-i")
        .arg(key)
        .args([
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "BatchMode=yes",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "ConnectTimeout=5",
            "-o",
            "LogLevel=ERROR",
        ])
        .arg(format!("{user}@127.0.0.1"))
        .arg("true");
    run_with_timeout(&mut cmd, b"", DEADLINE)
}

#[track_caller]
fn assert_login(sb: &Sandbox, user: &str, key: &Path, context: &str) {
    let out = ssh_true(sb, user, key);
    assert!(
        out.status.success(),
        "{context}: ssh as {user} must work\n{}\n--- sshd log ---\n{}",
        show(&out),
        sb.sshd_log()
    );
}

/// Adds `line` to the sandbox's main sshd_config after its Include (where a host's own
/// settings are).
fn add_to_main_config(sb: &Sandbox, line: &str) {
    let main = sb.path("etc/ssh/sshd_config");
    let text = fs::read_to_string(&main).unwrap();
    fs::write(&main, text.replace("\nPort ", &format!("\n{line}\nPort "))).unwrap();
}

/// A root-owned key file (StrictModes) holding the public key.
fn write_key_file(path: &Path, public: &Path, owner: Option<u32>) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::copy(public, path).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o644)).unwrap();
    if let Some(uid) = owner {
        chown(path, Some(uid), None).unwrap();
    }
}

fn dropin(sb: &Sandbox) -> String {
    fs::read_to_string(sb.path("etc/ssh/sshd_config.d/50-sftpctl.conf")).unwrap()
}

fn says_nothing_changed(out: &Output) -> bool {
    stdout(out).contains("nothing to change")
}

/// Hardened host: the main config says `AuthorizedKeysFile <dir>/etc/ssh/keys/%u` and the
/// admin's key is only there. Before the fix, sftpctl's `Match User <admin>` replaced that
/// with `.ssh/authorized_keys <keys dir>/%u` and the admin was locked out.
#[test]
fn admin_keeps_the_hosts_authorized_keys_file_after_init() {
    let mut sb = Sandbox::new();
    let admin = sb.admin.clone();
    let host_keys = sb.path("etc/ssh/keys");
    add_to_main_config(
        &sb,
        &format!("AuthorizedKeysFile {}/%u", host_keys.display()),
    );
    let (admin_key, admin_pub) = sb.keygen("admin");
    write_key_file(&host_keys.join(&admin), &admin_pub, None);

    let init = ["init", "--admin", admin.as_str()];
    sb.sftpctl_ok(&init);
    sb.start_sshd();
    assert_login(&sb, &admin, &admin_key, "after init on a hardened host");
    let text = dropin(&sb);
    let want = format!(
        "AuthorizedKeysFile {}/%u {}/%u\n",
        host_keys.display(),
        sb.path("etc/ssh/sftpctl/authorized_keys").display()
    );
    assert!(text.contains(&want), "admin block lacks {want:?}\n{text}");

    // A second init renders the same block: nothing changes.
    let snap = sb.snapshot();
    let again = sb.sftpctl_ok(&init);
    assert!(says_nothing_changed(&again), "{}", show(&again));
    snap.assert_same(&sb.snapshot(), "second init");

    // A key added with --admin-key lands in sftpctl's file, which works as well.
    let (second_key, second_pub) = sb.keygen("admin2");
    sb.sftpctl_ok(&[
        "init",
        "--admin",
        &admin,
        "--admin-key",
        second_pub.to_str().unwrap(),
    ]);
    sb.reload_sshd();
    assert_login(&sb, &admin, &second_key, "key in sftpctl's file");
    assert_login(
        &sb,
        &admin,
        &admin_key,
        "key in the host's file, after a re-init",
    );

    let out = sb.sftpctl(&["doctor"]);
    assert!(
        stdout(&out)
            .lines()
            .any(|l| l.contains("sshd host auth:") && !l.starts_with("FAIL")),
        "doctor should say the host's auth settings are kept\n{}",
        show(&out)
    );
}

/// Stock Debian: no AuthorizedKeysFile line, so sshd uses `.ssh/authorized_keys
/// .ssh/authorized_keys2`; a key in authorized_keys2 must still work after init.
#[test]
fn admin_key_in_authorized_keys2_still_works_after_init() {
    let mut sb = Sandbox::new();
    let admin = sb.admin.clone();
    sb.sftpctl_ok(&["init", "--admin", &admin]);
    // The admin's home is the jail root (root-owned 0755): ~/.ssh owned by the admin.
    let (admin_key, admin_pub) = sb.keygen("admin");
    let ssh_dir = sb.root.join(".ssh");
    fs::create_dir(&ssh_dir).unwrap();
    fs::set_permissions(&ssh_dir, fs::Permissions::from_mode(0o700)).unwrap();
    chown(&ssh_dir, Some(uid_of(&admin)), None).unwrap();
    write_key_file(
        &ssh_dir.join("authorized_keys2"),
        &admin_pub,
        Some(uid_of(&admin)),
    );
    sb.start_sshd();
    assert_login(&sb, &admin, &admin_key, "key in ~/.ssh/authorized_keys2");
    let text = dropin(&sb);
    assert!(
        text.contains(&format!(
            "AuthorizedKeysFile .ssh/authorized_keys .ssh/authorized_keys2 {}/%u\n",
            sb.path("etc/ssh/sftpctl/authorized_keys").display()
        )),
        "{text}"
    );
}

/// The host already has a group named like sftpctl's jail group, with a shell account in
/// it: `Match Group <jail_group>` would chroot that account. init must refuse and change
/// nothing, and say which account and setting in one line.
#[test]
fn init_that_would_jail_an_existing_account_is_rolled_back() {
    let mut sb = Sandbox::new();
    let admin = sb.admin.clone();
    let bob = sb.user("bob");
    let run = |argv: &[&str]| {
        let out = Command::new(argv[0]).args(&argv[1..]).output().unwrap();
        assert!(out.status.success(), "{argv:?}\n{}", show(&out));
    };
    run(&["groupadd", &sb.jail_group]);
    run(&[
        "useradd",
        "-M",
        "-s",
        "/bin/bash",
        "-G",
        &sb.jail_group,
        "-p",
        "*",
        &bob,
    ]);
    let (bob_key, bob_pub) = sb.keygen("bob");
    let host_keys = sb.path("etc/ssh/keys");
    add_to_main_config(
        &sb,
        &format!("AuthorizedKeysFile {}/%u", host_keys.display()),
    );
    write_key_file(&host_keys.join(&bob), &bob_pub, None);

    let snap = sb.snapshot();
    // --dry-run names the guard among the validators.
    let dry = sb.sftpctl_ok(&["init", "--dry-run", "--admin", &admin]);
    assert!(
        stdout(&dry).contains(&format!(
            "? check that sshd's authentication settings for {admin}, root, {bob} stay"
        )),
        "{}",
        show(&dry)
    );
    snap.assert_same(&sb.snapshot(), "init --dry-run");
    let out = sb.sftpctl(&["init", "--admin", &admin]);
    eprintln!("{}", show(&out));
    support::assert_fails_one_line(&out, 1);
    let err = stderr(&out);
    let want = format!(
        "init would change sshd's chrootdirectory for {bob} (none -> {}/%u): rolled back, nothing changed",
        sb.root.display()
    );
    assert!(err.contains(&want), "stderr lacks {want:?}\n{err}");
    assert!(
        err.contains(&format!("gpasswd -d {bob} {}", sb.jail_group)),
        "{err}"
    );
    snap.assert_same(&sb.snapshot(), "init refused by the guard");
    assert!(nix::unistd::User::from_name(&admin).unwrap().is_none());

    // bob still logs in with a shell: the host's sshd config is as it was.
    sb.start_sshd();
    assert_login(&sb, &bob, &bob_key, "after the refused init");
}

/// doctor compares the same: a drop-in that narrows the admin's key files (what sftpctl
/// before this fix wrote) is a FAIL naming authorizedkeysfile, and init repairs it.
#[test]
fn doctor_finds_an_admin_block_that_narrows_the_hosts_key_files() {
    let mut sb = Sandbox::new();
    let admin = sb.admin.clone();
    sb.edit_config(
        "umask = \"0007\"",
        &format!("umask = \"0007\"\nadmin = \"{admin}\""),
    );
    let host_keys = sb.path("etc/ssh/keys");
    add_to_main_config(
        &sb,
        &format!("AuthorizedKeysFile {}/%u", host_keys.display()),
    );
    let (admin_key, admin_pub) = sb.keygen("admin");
    write_key_file(&host_keys.join(&admin), &admin_pub, None);
    sb.sftpctl_ok(&["init"]);

    // The block an older sftpctl wrote.
    let path = sb.path("etc/ssh/sshd_config.d/50-sftpctl.conf");
    let keys_dir = sb.path("etc/ssh/sftpctl/authorized_keys");
    let ours = format!(
        "    AuthorizedKeysFile {}/%u {}/%u\n",
        host_keys.display(),
        keys_dir.display()
    );
    let old = format!(
        "    AuthorizedKeysFile .ssh/authorized_keys {}/%u\n",
        keys_dir.display()
    );
    let text = dropin(&sb);
    assert!(text.contains(&ours), "{text}");
    fs::write(&path, text.replace(&ours, &old)).unwrap();
    sb.start_sshd();
    let locked = ssh_true(&sb, &admin, &admin_key);
    assert!(
        !locked.status.success(),
        "premise: the old block locks the admin out\n{}",
        show(&locked)
    );

    let out = sb.sftpctl(&["doctor"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let line = stdout(&out)
        .lines()
        .find(|l| l.starts_with("FAIL") && l.contains(&format!("sshd host auth {admin}")))
        .map(str::to_string)
        .unwrap_or_else(|| panic!("no FAIL for the admin's auth\n{}", show(&out)));
    assert!(
        line.contains(&format!(
            "authorizedkeysfile ({}/%u -> .ssh/authorized_keys",
            host_keys.display()
        )),
        "{line}"
    );
    assert!(
        stdout(&out).contains("sftpctl init re-renders the admin block"),
        "{}",
        show(&out)
    );

    sb.sftpctl_ok(&["init"]);
    sb.reload_sshd();
    assert_login(&sb, &admin, &admin_key, "after init repaired the block");
    let out = sb.sftpctl(&["doctor"]);
    assert!(
        !stdout(&out)
            .lines()
            .any(|l| l.starts_with("FAIL") && l.contains("sshd host auth")),
        "{}",
        show(&out)
    );
}

/// A shell account put into the jail group after init is jailed by sshd: doctor names it,
/// and `doctor --fix` will not rewrite sshd's files while it would stay jailed.
#[test]
fn doctor_finds_a_foreign_account_in_the_jail_group() {
    let sb = Sandbox::new();
    let bob = sb.user("bob");
    sb.sftpctl_ok(&["init"]);
    let out = Command::new("useradd")
        .args([
            "-M",
            "-s",
            "/bin/bash",
            "-G",
            &sb.jail_group,
            "-p",
            "*",
            &bob,
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", show(&out));
    let out = sb.sftpctl(&["doctor"]);
    let text = stdout(&out);
    let line = text
        .lines()
        .find(|l| l.starts_with("FAIL") && l.contains(&format!("sshd host auth {bob}")))
        .unwrap_or_else(|| panic!("no FAIL for {bob}\n{}", show(&out)));
    assert!(line.contains("chrootdirectory (none -> "), "{line}");
    assert!(
        text.contains(&format!("gpasswd -d {bob} {}", sb.jail_group)),
        "{text}"
    );

    // doctor --fix repairs a drifted drop-in only through the same guard: refused, the
    // drifted bytes stay.
    let path = sb.path("etc/ssh/sshd_config.d/50-sftpctl.conf");
    let drifted = format!("{}# local edit\n", dropin(&sb));
    fs::write(&path, &drifted).unwrap();
    let out = sb.sftpctl(&["doctor", "--fix"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "doctor --fix would change sshd's chrootdirectory for {bob} (none -> "
        )) && err.contains("the managed files were rolled back"),
        "{}",
        show(&out)
    );
    assert_eq!(fs::read_to_string(&path).unwrap(), drifted);
}

/// The host's own `Match User <admin>` after the Include sets the admin's key file: sftpctl's
/// admin block (first, in the drop-in) must carry that file, not hide it.
#[test]
fn hosts_own_match_block_for_the_admin_is_kept() {
    let mut sb = Sandbox::new();
    let admin = sb.admin.clone();
    let admin_keys = sb.path("etc/ssh/admin-keys");
    let main = sb.path("etc/ssh/sshd_config");
    let mut text = fs::read_to_string(&main).unwrap();
    text.push_str(&format!(
        "Match User {admin}\n    AuthorizedKeysFile {}/%u\n",
        admin_keys.display()
    ));
    fs::write(&main, text).unwrap();
    let (admin_key, admin_pub) = sb.keygen("admin");
    write_key_file(&admin_keys.join(&admin), &admin_pub, None);
    sb.sftpctl_ok(&["init", "--admin", &admin]);
    sb.start_sshd();
    assert_login(&sb, &admin, &admin_key, "host's Match User block");
}

/// A main config without the Include: sftpctl's blocks are a fenced block at its end. The
/// host view leaves that block out, so a second init changes nothing and the admin keeps the
/// host's key file.
#[test]
fn without_the_include_the_fenced_block_keeps_the_hosts_key_file() {
    let mut sb = Sandbox::new();
    let admin = sb.admin.clone();
    let main = sb.path("etc/ssh/sshd_config");
    let text: String = fs::read_to_string(&main)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("Include"))
        .map(|l| format!("{l}\n"))
        .collect();
    fs::write(&main, text).unwrap();
    let host_keys = sb.path("etc/ssh/keys");
    add_to_main_config(
        &sb,
        &format!("AuthorizedKeysFile {}/%u", host_keys.display()),
    );
    let (admin_key, admin_pub) = sb.keygen("admin");
    write_key_file(&host_keys.join(&admin), &admin_pub, None);
    let init = ["init", "--admin", admin.as_str()];
    sb.sftpctl_ok(&init);
    assert!(fs::read_to_string(&main)
        .unwrap()
        .contains("# BEGIN sftpctl match"));
    let snap = sb.snapshot();
    let again = sb.sftpctl_ok(&init);
    assert!(says_nothing_changed(&again), "{}", show(&again));
    snap.assert_same(&sb.snapshot(), "second init");
    sb.start_sshd();
    assert_login(&sb, &admin, &admin_key, "fenced block at the end");
}
