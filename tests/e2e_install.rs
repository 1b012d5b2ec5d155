//! Installing and uninstalling. `sftpctl_bin` must be an executable (init refuses, doctor
//! fails otherwise), and `sftpctl init --undo` against the sandbox's real files, private sshd and rsyslogd: refused
//! while a jailed account exists (naming remove-user, nothing changed), `--dry-run` changes
//! nothing, then every file of the sandbox's etc and systemd trees is byte-identical (bytes,
//! mode, owner) to before init, the admin still logs in with the key sftpctl held for it, and a
//! second undo changes nothing.

mod support;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use support::*;

/// path → (kind, mode, uid, gid, bytes) of every entry under `dirs` (inodes and times left
/// out: a restored original is the same file, not the same inode).
fn tree(sb: &Sandbox, dirs: &[&str]) -> BTreeMap<String, String> {
    let mut map = BTreeMap::new();
    for d in dirs {
        for e in walkdir::WalkDir::new(sb.path(d)).sort_by_file_name() {
            let e = e.unwrap();
            let md = e.path().symlink_metadata().unwrap();
            let content = if md.is_file() {
                String::from_utf8_lossy(&fs::read(e.path()).unwrap()).into_owned()
            } else if md.is_dir() {
                "dir".into()
            } else {
                "other".into()
            };
            map.insert(
                e.path().display().to_string(),
                format!(
                    "mode={:o} uid={} gid={}\n{content}",
                    md.mode(),
                    md.uid(),
                    md.gid()
                ),
            );
        }
    }
    map
}

#[track_caller]
fn assert_tree_eq(before: &BTreeMap<String, String>, after: &BTreeMap<String, String>) {
    let mut diffs = Vec::new();
    for (k, v) in before {
        match after.get(k) {
            None => diffs.push(format!("removed {k}")),
            Some(w) if w != v => {
                diffs.push(format!("changed {k}:\n--- before\n{v}\n--- after\n{w}"))
            }
            _ => {}
        }
    }
    for k in after.keys().filter(|k| !before.contains_key(*k)) {
        diffs.push(format!("added {k}"));
    }
    assert!(diffs.is_empty(), "trees differ:\n{}", diffs.join("\n"));
}

#[test]
fn undo_restores_every_file_and_keeps_the_admin_login() {
    let mut sb = Sandbox::new();
    let admin = sb.admin.clone();
    sb.edit_config(
        "umask = \"0007\"\n",
        &format!("umask = \"0007\"\nadmin = \"{admin}\"\n"),
    );
    let trees = ["etc", "systemd"];
    let before = tree(&sb, &trees);

    let (admin_key, admin_pub) = sb.keygen("admin");
    sb.sftpctl_ok(&["init", "--admin-key", admin_pub.to_str().unwrap()]);
    sb.start_rsyslogd();
    let alice = sb.user("alice");
    let (_, alice_pub) = sb.keygen("alice");
    sb.sftpctl_ok(&["add-user", &alice, "--key", alice_pub.to_str().unwrap()]);
    sb.start_sshd();
    sb.sftp_ok(&admin, &admin_key, "ls\n");
    assert!(
        fs::read_to_string(sb.path("etc/ssh/sshd_config"))
            .unwrap()
            .contains("# BEGIN sftpctl"),
        "OpenSSH before 9.5 gets a fenced Subsystem block in the main config"
    );

    // Refused while alice exists: one line naming remove-user, nothing changed.
    let snap = sb.snapshot();
    for args in [&["init", "--undo"][..], &["init", "--undo", "--dry-run"]] {
        let out = sb.sftpctl(args);
        assert_fails_one_line(&out, 2);
        let err = stderr(&out);
        assert!(
            err.contains(&alice) && err.contains("sftpctl remove-user NAME --keep-data"),
            "{err}"
        );
    }
    snap.assert_same(&sb.snapshot(), "refused init --undo");

    sb.sftpctl_ok(&["remove-user", &alice, "--keep-data"]);

    // --dry-run shows the plan and changes nothing.
    let snap = sb.snapshot();
    let out = sb.sftpctl_ok(&["init", "--undo", "--dry-run"]);
    let plan = stdout(&out);
    assert!(
        plan.contains("restore ") && plan.contains("sshd_config"),
        "{plan}"
    );
    assert!(
        plan.contains("would be made; nothing was changed"),
        "{plan}"
    );
    snap.assert_same(&sb.snapshot(), "init --undo --dry-run");

    let out = sb.sftpctl_ok(&["init", "--undo"]);
    let said = stdout(&out);
    assert!(
        said.contains(&format!("kept: admin account {admin}")),
        "{said}"
    );
    assert!(said.contains("userdel"), "{said}");
    assert_tree_eq(&before, &tree(&sb, &trees));
    for orig in ["etc/ssh/sshd_config", "etc/pam.d/sshd", "etc/rsyslog.conf"] {
        assert!(!Path::new(&format!("{}.sftpctl-orig", sb.path(orig).display())).exists());
    }

    // The admin's key now lives where sshd reads it without sftpctl's drop-in.
    let ak = sb.root.join(".ssh/authorized_keys");
    let md = fs::symlink_metadata(&ak).unwrap();
    assert_eq!((md.mode() & 0o7777, md.uid()), (0o600, uid_of(&admin)));
    let ssh_dir = fs::symlink_metadata(sb.root.join(".ssh")).unwrap();
    assert_eq!(
        (ssh_dir.mode() & 0o7777, ssh_dir.uid()),
        (0o700, uid_of(&admin))
    );
    sb.reload_sshd();
    sb.sftp_ok(&admin, &admin_key, "ls\n");
    // kept: the account, the groups and alice's data
    assert!(sb.data(&alice).is_dir());
    let (users, groups) = sb.accounts();
    assert!(
        users.contains(&admin) && groups.contains(&sb.group) && groups.contains(&sb.jail_group)
    );

    // A second undo changes nothing and says so.
    let snap = sb.snapshot();
    let out = sb.sftpctl_ok(&["init", "--undo"]);
    assert!(stdout(&out).contains("nothing to change"), "{}", show(&out));
    snap.assert_same(&sb.snapshot(), "second init --undo");
}

#[test]
fn undo_of_a_host_never_set_up_changes_nothing() {
    let sb = Sandbox::new();
    let snap = sb.snapshot();
    let out = sb.sftpctl_ok(&["init", "--undo"]);
    assert!(stdout(&out).contains("nothing to change"), "{}", show(&out));
    snap.assert_same(&sb.snapshot(), "init --undo before init");
}

#[test]
fn init_refuses_and_doctor_fails_when_sftpctl_bin_is_not_executable() {
    let sb = Sandbox::new();
    let good = format!("sftpctl_bin = \"{SFTPCTL}\"");
    let plain = sb.path("etc/not-a-program");
    fs::write(&plain, "#!/bin/sh\n").unwrap();
    for bad in [sb.path("etc/missing"), plain.clone(), sb.path("etc")] {
        sb.edit_config(&good, &format!("sftpctl_bin = \"{}\"", bad.display()));
        let snap = sb.snapshot();
        let out = sb.sftpctl(&["init"]);
        assert_fails_one_line(&out, 2);
        assert!(stderr(&out).contains("sftpctl_bin"), "{}", show(&out));
        snap.assert_same(&sb.snapshot(), "init with a bad sftpctl_bin");
        sb.edit_config(&format!("sftpctl_bin = \"{}\"", bad.display()), &good);
    }

    sb.sftpctl_ok(&["init"]);
    sb.edit_config(&good, &format!("sftpctl_bin = \"{}\"", plain.display()));
    let out = sb.sftpctl(&["doctor"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let text = stdout(&out);
    assert!(
        text.lines()
            .any(|l| l.starts_with("FAIL sftpctl_bin:") && l.contains("is not executable")),
        "{text}"
    );
    sb.edit_config(&format!("sftpctl_bin = \"{}\"", plain.display()), &good);
    let text = stdout(&sb.sftpctl(&["doctor"]));
    assert!(
        text.lines().any(|l| l.starts_with("ok   sftpctl_bin:")),
        "{text}"
    );
}

#[test]
fn undo_rejected_by_the_validator_is_reverted_entirely() {
    let mut sb = Sandbox::new();
    let admin = sb.admin.clone();
    sb.edit_config(
        "umask = \"0007\"\n",
        &format!("umask = \"0007\"\nadmin = \"{admin}\"\n"),
    );
    let (_, admin_pub) = sb.keygen("admin");
    sb.sftpctl_ok(&["init", "--admin-key", admin_pub.to_str().unwrap()]);
    sb.start_rsyslogd();
    // A validator that rejects everything: every change of the run must be put back.
    sb.edit_config("binary = \"/usr/sbin/sshd\"", "binary = \"/bin/false\"");
    let snap = sb.snapshot();
    let out = sb.sftpctl(&["init", "--undo"]);
    // (stderr also carries the note that systemd.disable_watch is [] in the sandbox)
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let last = stderr(&out).lines().last().unwrap_or("").to_string();
    assert!(
        last.starts_with("sftpctl: error: sshd rejected"),
        "{}",
        show(&out)
    );
    snap.assert_same(&sb.snapshot(), "init --undo reverted by sshd -t");
    assert!(!sb.root.join(".ssh").exists());
}

#[test]
fn undo_does_not_write_into_a_home_the_admin_controls() {
    let sb = Sandbox::new();
    let admin = sb.admin.clone();
    let (_, admin_pub) = sb.keygen("admin");
    sb.sftpctl_ok(&[
        "init",
        "--admin",
        &admin,
        "--admin-key",
        admin_pub.to_str().unwrap(),
    ]);
    let home = sb.path("home-admin");
    fs::create_dir(&home).unwrap();
    std::os::unix::fs::chown(&home, Some(uid_of(&admin)), None).unwrap();
    let out = std::process::Command::new("usermod")
        .arg("-d")
        .arg(&home)
        .arg(&admin)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", show(&out));
    let snap = sb.snapshot();
    let out = sb.sftpctl(&["init", "--undo"]);
    assert_fails_one_line(&out, 2);
    assert!(
        stderr(&out).contains(&format!("sudo -u {admin}")),
        "{}",
        show(&out)
    );
    snap.assert_same(&sb.snapshot(), "refused init --undo");
}

#[test]
fn undo_keeps_the_admins_later_edits_of_a_fenced_file() {
    let sb = Sandbox::new();
    let pam = sb.path("etc/pam.d/sshd");
    let original = fs::read_to_string(&pam).unwrap();
    sb.sftpctl_ok(&["init"]);
    let mut text = fs::read_to_string(&pam).unwrap();
    assert!(text.contains("# BEGIN sftpctl"), "{text}");
    text.push_str("session optional pam_motd.so # added by the admin after init\n");
    fs::write(&pam, &text).unwrap();

    let out = sb.sftpctl_ok(&["init", "--undo"]);
    assert!(
        stdout(&out).contains("remove sftpctl's blocks from"),
        "{}",
        show(&out)
    );
    assert_eq!(
        fs::read_to_string(&pam).unwrap(),
        format!("{original}session optional pam_motd.so # added by the admin after init\n")
    );
    let orig = sb.path("etc/pam.d/sshd.sftpctl-orig");
    assert_eq!(
        fs::read_to_string(&orig).unwrap(),
        original,
        "kept to compare"
    );
    // the other fenced files had no edits: back from their originals
    assert!(!sb.path("etc/ssh/sshd_config.sftpctl-orig").exists());
    let out = sb.sftpctl_ok(&["init", "--undo"]);
    assert!(stdout(&out).contains("nothing to change"), "{}", show(&out));
}
