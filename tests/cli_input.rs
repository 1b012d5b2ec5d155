//! Bad input and bad callers: every case exits non-zero (2 for input errors) with exactly one
//! line on stderr and changes nothing. Runs as root (the non-root case drops to `nobody`).

mod support;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use support::{assert_fails_one_line, show, stderr, Sandbox, SFTPCTL};

/// A sandbox after a successful `init` (so add-user fails only for the reason under test).
fn initialized() -> Sandbox {
    let sb = Sandbox::new();
    sb.sftpctl_ok(&["init"]);
    sb
}

/// Runs `args`, asserts exit `code`, one stderr line, and an unchanged snapshot (which also
/// covers the account lines of the system users named in the cases).
#[track_caller]
fn rejects(sb: &Sandbox, args: &[&str], code: i32) -> String {
    let before = sb.snapshot_with(&["root", "daemon", "nobody"]);
    let out = sb.sftpctl(args);
    assert_fails_one_line(&out, code);
    before.assert_same(
        &sb.snapshot_with(&["root", "daemon", "nobody"]),
        &format!("sftpctl {args:?}"),
    );
    let err = stderr(&out);
    eprintln!("sftpctl {args:?} -> {}", err.trim_end());
    err
}

#[test]
fn add_user_rejects_bad_names() {
    let sb = initialized();
    let (_, key) = sb.keygen("k");
    let key = key.to_str().unwrap();
    let long = "a".repeat(33);
    for name in [
        "Alice",
        "a b",
        "a\nb",
        "root",
        long.as_str(),
        "../x",
        "x/y",
        "",
        "1abc",
        "al:ice",
    ] {
        let err = rejects(&sb, &["add-user", name, "--key", key], 2);
        assert!(err.starts_with("sftpctl: error: "), "{err}");
    }
    // 32 characters is the longest valid name: the same prefix + 'a's must be accepted by
    // --dry-run (shows the limit is 32, not less), and change nothing.
    let ok32 = format!("{}{}", sb.user(""), "a".repeat(32 - sb.user("").len()));
    assert_eq!(ok32.len(), 32);
    let before = sb.snapshot();
    let out = sb.sftpctl(&["add-user", "--dry-run", &ok32, "--key", key]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    before.assert_same(&sb.snapshot(), "add-user --dry-run of a 32-char name");
}

#[test]
fn add_user_rejects_existing_system_users_and_the_admin() {
    let sb = Sandbox::new();
    let admin = sb.admin.clone();
    sb.sftpctl_ok(&["init", "--admin", &admin]);
    let (_, key) = sb.keygen("k");
    let key = key.to_str().unwrap();
    // A host account sftpctl did not make (not on any reserved list either).
    let other = sb.user("other");
    let out = std::process::Command::new("useradd")
        .args(["-M", "-s", "/usr/sbin/nologin", &other])
        .output()
        .unwrap();
    assert!(out.status.success(), "useradd\n{}", show(&out));
    for name in ["daemon", "nobody", admin.as_str(), other.as_str()] {
        rejects(&sb, &["add-user", name, "--key", key], 2);
    }
}

#[test]
fn add_user_rejects_missing_and_bad_key_files() {
    let sb = initialized();
    let alice = sb.user("alice");
    let missing = sb.path("keys/does-not-exist.pub");
    let err = rejects(
        &sb,
        &["add-user", &alice, "--key", missing.to_str().unwrap()],
        2,
    );
    assert!(
        err.contains("does-not-exist.pub"),
        "name the missing file: {err}"
    );

    let garbage = sb.path("keys/garbage.pub");
    fs::write(&garbage, "this is not a key\n").unwrap();
    rejects(
        &sb,
        &["add-user", &alice, "--key", garbage.to_str().unwrap()],
        2,
    );

    // The right key type with a body that is not base64 of an ed25519 key.
    let broken = sb.path("keys/broken.pub");
    fs::write(
        &broken,
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5!!!notbase64 x@y\n",
    )
    .unwrap();
    rejects(
        &sb,
        &["add-user", &alice, "--key", broken.to_str().unwrap()],
        2,
    );

    // The private half given by mistake.
    let (private, _) = sb.keygen("private");
    rejects(
        &sb,
        &["add-user", &alice, "--key", private.to_str().unwrap()],
        2,
    );
    assert!(!sb.jail(&alice).exists());
}

#[test]
fn init_rejects_missing_admin_key_file() {
    let sb = Sandbox::new();
    let admin = sb.admin.clone();
    let missing = sb.path("keys/none.pub");
    rejects(
        &sb,
        &[
            "init",
            "--admin",
            &admin,
            "--admin-key",
            missing.to_str().unwrap(),
        ],
        2,
    );
}

#[test]
fn init_rejects_relative_root() {
    let sb = Sandbox::new();
    sb.edit_config(
        &format!("root = \"{}\"", sb.root.display()),
        "root = \"jails\"",
    );
    let err = rejects(&sb, &["init"], 2);
    assert!(err.contains("root"), "{err}");
}

#[test]
fn init_rejects_root_chain_that_sshd_would_refuse() {
    let sb = Sandbox::new();
    // world-writable, group-writable and not-root-owned components under the sandbox dir
    let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap().uid;
    for (dir, mode, owner) in [
        ("ww", 0o777, None),
        ("sticky", 0o1777, None),
        ("gw", 0o775, None),
        ("owned", 0o755, Some(nobody)),
    ] {
        let p = sb.path(dir);
        fs::create_dir(&p).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
        if let Some(uid) = owner {
            nix::unistd::chown(&p, Some(uid), None).unwrap();
        }
        let root = p.join("jails");
        sb.set_config(&sb.config_text_default().replace(
            &format!("root = \"{}\"", sb.root.display()),
            &format!("root = \"{}\"", root.display()),
        ));
        let err = rejects(&sb, &["init"], 2);
        assert!(
            err.contains(dir),
            "error should name the bad component: {err}"
        );
        assert!(!root.exists());
    }
    // A jail root under /tmp (1777) can never work.
    let tmp_root = format!("/tmp/sftpctl-t-{}-root", sb.id);
    sb.set_config(&sb.config_text_default().replace(
        &format!("root = \"{}\"", sb.root.display()),
        &format!("root = \"{tmp_root}\""),
    ));
    rejects(&sb, &["init"], 2);
    assert!(!Path::new(&tmp_root).exists(), "{tmp_root} was created");
}

#[test]
fn config_with_newline_injection_is_rejected() {
    let sb = Sandbox::new();
    let group = sb.group.clone();
    let akd = sb
        .path("etc/ssh/sftpctl/authorized_keys")
        .display()
        .to_string();
    for (from, to) in [
        (
            format!("group = \"{group}\""),
            format!("group = \"{group}\\nMatch all\""),
        ),
        (
            format!("root = \"{}\"", sb.root.display()),
            format!("root = \"{}\\nForceCommand /bin/sh\"", sb.root.display()),
        ),
        (
            "umask = \"0007\"".to_string(),
            "umask = \"0007\\n\"".to_string(),
        ),
        (
            format!("authorized_keys_dir = \"{akd}\""),
            format!("authorized_keys_dir = \"{akd}\\nPermitRootLogin yes\""),
        ),
        (
            format!("jail_group = \"{}\"", sb.jail_group),
            format!(
                "jail_group = \"{}\\n  ForceCommand /bin/sh\"",
                sb.jail_group
            ),
        ),
    ] {
        let text = sb.config_text_default();
        assert!(text.contains(&from), "{from:?}");
        sb.set_config(&text.replacen(&from, &to, 1));
        let err = rejects(&sb, &["init"], 2);
        assert!(
            !err.contains("parse error"),
            "not the case under test: {err}"
        );
    }
}

#[test]
fn missing_config_file_is_an_input_error() {
    let sb = Sandbox::new();
    let missing = sb.path("etc/none.toml");
    for args in [
        &["init"][..],
        &["add-user", "x"][..],
        &["refresh-log-links"][..],
    ] {
        let before = sb.snapshot();
        let out = support::run_with_timeout(
            std::process::Command::new(SFTPCTL)
                .arg("--config")
                .arg(&missing)
                .args(args)
                .env_remove("SFTPCTL_CONFIG"),
            b"",
            support::DEADLINE,
        );
        assert_fails_one_line(&out, 2);
        assert!(stderr(&out).contains("none.toml"), "{}", show(&out));
        before.assert_same(&sb.snapshot(), &format!("{args:?} with a missing config"));
        assert!(!missing.exists());
    }
}

#[test]
fn non_root_caller_gets_must_run_as_root_and_changes_nothing() {
    let sb = initialized();
    // Premise: nobody can run the binary at all (every parent dir is searchable).
    let out = sb.sftpctl_as_nobody(&["--version"]);
    assert!(
        out.status.success(),
        "nobody cannot run {SFTPCTL}: check the modes of its parent dirs\n{}",
        show(&out)
    );
    let mut p = Path::new(SFTPCTL);
    while let Some(parent) = p.parent() {
        let mode = fs::metadata(parent).unwrap().mode();
        assert!(
            mode & 0o001 != 0,
            "{} is not searchable by others",
            parent.display()
        );
        p = parent;
    }

    let (_, key) = sb.keygen("k");
    let alice = sb.user("alice");
    for args in [
        &["init"][..],
        &["add-user", alice.as_str(), "--key", key.to_str().unwrap()][..],
        &["refresh-log-links"][..],
    ] {
        let before = sb.snapshot();
        let out = sb.sftpctl_as_nobody(args);
        assert_fails_one_line(&out, 2);
        assert!(
            stderr(&out).contains("must run as root"),
            "{args:?}\n{}",
            show(&out)
        );
        before.assert_same(&sb.snapshot(), &format!("{args:?} as nobody"));
    }
    assert!(nix::unistd::User::from_name(&alice).unwrap().is_none());
}
