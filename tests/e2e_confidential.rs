//! End-to-end tests of confidentiality by default (issue 9, items 1 and 2) with the real sshd,
//! sftp client and rsyslogd, and a real unprivileged local shell account (the "other local
//! account" of the threat model). Each test performs the attack and asserts that it fails; the
//! migration tests first show that it works on a tree from before. Run as root.

mod support;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Output;

use support::{gid_of, show, stdout, uid_of, Sandbox};

struct World {
    sb: Sandbox,
    alice: String,
    alice_key: PathBuf,
    admin_key: PathBuf,
}

/// init with an admin (named in the config), rsyslogd, add-user alice with a key, sshd.
fn world() -> World {
    let mut sb = Sandbox::new();
    let admin = sb.admin.clone();
    sb.edit_config(
        "umask = \"0007\"",
        &format!("umask = \"0007\"\nadmin = \"{admin}\""),
    );
    let (admin_key, admin_pub) = sb.keygen("admin");
    sb.sftpctl_ok(&["init", "--admin-key", admin_pub.to_str().unwrap()]);
    sb.start_rsyslogd();
    let alice = sb.user("alice");
    let (alice_key, alice_pub) = sb.keygen("alice");
    sb.sftpctl_ok(&["add-user", &alice, "--key", alice_pub.to_str().unwrap()]);
    sb.start_sshd();
    World {
        sb,
        alice,
        alice_key,
        admin_key,
    }
}

fn mode(p: &Path) -> u32 {
    fs::symlink_metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .mode()
        & 0o7777
}

fn local_file(sb: &Sandbox, name: &str, bytes: &[u8], mode: u32) {
    let p = sb.client_dir().join(name);
    fs::write(&p, bytes).unwrap();
    fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
}

/// What the local account gets from `cat FILE` and `ls DIR`: (cat worked, ls worked).
fn snoop(out_cat: &Output, out_ls: &Output) -> (bool, bool) {
    (out_cat.status.success(), out_ls.status.success())
}

/// The jail chain sshd needs is intact and the data dir is closed: jail dir root 0755, data
/// dir 2770 owned by the user and the shared group.
#[track_caller]
fn jail_modes_are_right(w: &World) {
    let jail = w.sb.jail(&w.alice);
    let md = fs::metadata(&jail).unwrap();
    assert_eq!((md.uid(), mode(&jail)), (0, 0o755), "jail dir");
    let data = w.sb.data(&w.alice);
    let md = fs::metadata(&data).unwrap();
    assert_eq!(
        (md.uid(), md.gid(), mode(&data)),
        (uid_of(&w.alice), gid_of(&w.sb.group), 0o2770),
        "data dir"
    );
}

/// Real logins still work for the client and the admin: upload, list, download.
#[track_caller]
fn client_and_admin_still_transfer(w: &World, tag: &str) {
    let sb = &w.sb;
    local_file(
        sb,
        &format!("{tag}.txt"),
        format!("{tag}\n").as_bytes(),
        0o644,
    );
    sb.sftp_ok(
        &w.alice,
        &w.alice_key,
        &format!("put {tag}.txt\nls -l\nget {tag}.txt {tag}-back.txt\n"),
    );
    assert_eq!(
        fs::read(sb.client_dir().join(format!("{tag}-back.txt"))).unwrap(),
        format!("{tag}\n").as_bytes()
    );
    let remote = sb.data(&w.alice).join(format!("{tag}.txt"));
    sb.sftp_ok(
        &sb.admin,
        &w.admin_key,
        &format!(
            "ls -l {}\nget {} {tag}-admin.txt\nput {tag}.txt {}\n",
            sb.data(&w.alice).display(),
            remote.display(),
            sb.data(&w.alice)
                .join(format!("{tag}-by-admin.txt"))
                .display()
        ),
    );
    assert_eq!(
        fs::read(sb.client_dir().join(format!("{tag}-admin.txt"))).unwrap(),
        format!("{tag}\n").as_bytes(),
        "the admin reads the client's upload"
    );
    assert_eq!(
        fs::metadata(sb.data(&w.alice).join(format!("{tag}-by-admin.txt")))
            .unwrap()
            .uid(),
        uid_of(&sb.admin)
    );
}

/// Item 1: on a host set up now, a local shell account can neither read a client's upload nor
/// list the client's data dir, while the client and the admin keep working.
#[test]
fn a_local_account_cannot_read_uploads_or_list_the_data_dir() {
    let w = world();
    let sb = &w.sb;
    let ev = sb.local_account("ev");
    // A 0644 local file: OpenSSH sftp asks 0644, the umask 0007 makes it 0640.
    local_file(sb, "tax.pdf", b"tax papers\n", 0o644);
    sb.sftp_ok(
        &w.alice,
        &w.alice_key,
        "put tax.pdf\nmkdir contracts\nput tax.pdf contracts/c.pdf\n",
    );
    let data = sb.data(&w.alice);
    let upload = data.join("tax.pdf");
    assert_eq!(
        mode(&upload) & 0o007,
        0,
        "upload mode {:04o}",
        mode(&upload)
    );
    assert_eq!(mode(&data.join("contracts")) & 0o007, 0);
    jail_modes_are_right(&w);

    for (file, dir) in [
        (upload.clone(), data.clone()),
        (data.join("contracts/c.pdf"), data.join("contracts")),
    ] {
        let cat = ev.sh(&format!("cat '{}'", file.display()));
        let ls = ev.sh(&format!("ls '{}'", dir.display()));
        assert_eq!(
            snoop(&cat, &ls),
            (false, false),
            "the local account read or listed a client's files\ncat: {}\nls: {}",
            show(&cat),
            show(&ls)
        );
        assert!(!stdout(&cat).contains("tax papers"));
    }
    client_and_admin_still_transfer(&w, "after");
}

/// Seeds a tree the way sftpctl made it before issue 9: data dir 2775, uploads 0664, a
/// subdirectory 2775.
fn seed_old_tree(w: &World) -> (PathBuf, PathBuf) {
    let data = w.sb.data(&w.alice);
    fs::set_permissions(&data, fs::Permissions::from_mode(0o2775)).unwrap();
    let sub = data.join("old-dir");
    fs::create_dir_all(&sub).unwrap();
    let file = sub.join("old.pdf");
    fs::write(&file, "old contract\n").unwrap();
    let top = data.join("top.pdf");
    fs::write(&top, "old tax papers\n").unwrap();
    let (u, g) = (uid_of(&w.alice), gid_of(&w.sb.group));
    for (p, m) in [(&sub, 0o2775), (&file, 0o664), (&top, 0o664)] {
        std::os::unix::fs::chown(p, Some(u), Some(g)).unwrap();
        fs::set_permissions(p, fs::Permissions::from_mode(m)).unwrap();
    }
    (file, top)
}

/// Item 1, migration: on an old tree the attack works (the local account reads the files);
/// `init --dry-run` shows the migration and changes nothing; `init` closes the tree. The same
/// again with `doctor --fix --dry-run` and `doctor --fix`, and with `add-user` of the existing
/// account.
#[test]
fn init_and_doctor_fix_migrate_old_trees() {
    let w = world();
    let sb = &w.sb;
    let ev = sb.local_account("ev");
    let read_all = |file: &Path, top: &Path| {
        let out = ev.sh(&format!(
            "cat '{}' '{}' && ls '{}'",
            file.display(),
            top.display(),
            sb.data(&w.alice).display()
        ));
        (out.status.success(), out)
    };

    for how in ["init", "doctor --fix", "add-user"] {
        let (file, top) = seed_old_tree(&w);
        let (ok, out) = read_all(&file, &top);
        assert!(
            ok,
            "baseline: the old tree must be readable\n{}",
            show(&out)
        );
        assert!(stdout(&out).contains("old contract"));

        let mut args: Vec<&str> = how.split(' ').collect();
        if how == "add-user" {
            args.push(&w.alice); // an existing account: add-user brings its jail up to date
        }
        let mut dry = args.clone();
        dry.push("--dry-run");
        // /etc/subuid and /etc/subgid lines are left out: tests running at the same time add
        // and remove accounts, which renumbers this sandbox's lines there.
        let snapshot = || {
            support::Snapshot(
                sb.snapshot()
                    .0
                    .into_iter()
                    .filter(|(k, _)| !k.starts_with("/etc/subuid") && !k.starts_with("/etc/subgid"))
                    .collect(),
            )
        };
        let before = snapshot();
        let plan = sb.sftpctl(&dry);
        before.assert_same(&snapshot(), &format!("{how} --dry-run"));
        let text = stdout(&plan);
        let wanted = if how == "doctor --fix" {
            "repair 4 files and directories in the data tree of"
        } else {
            "migrate 1 data tree(s)"
        };
        assert!(text.contains(wanted), "{how} --dry-run\n{}", show(&plan));
        let (ok, _) = read_all(&file, &top);
        assert!(ok, "the dry run changed something");

        let out = sb.sftpctl(&args);
        assert!(out.status.success(), "{how}\n{}", show(&out));
        let (ok, out) = read_all(&file, &top);
        assert!(
            !ok,
            "after {how} the local account still reads\n{}",
            show(&out)
        );
        assert!(!stdout(&out).contains("old"));
        // Even with the data dir opened by hand, nothing inside is readable for others.
        for p in [&file, &top] {
            assert_eq!(mode(p), 0o660, "{} after {how}", p.display());
        }
        assert_eq!(mode(file.parent().unwrap()), 0o2770);
        jail_modes_are_right(&w);
        // A second run changes nothing.
        let again = sb.sftpctl(&dry);
        assert!(
            !stdout(&again).contains(wanted),
            "{how} would migrate again\n{}",
            show(&again)
        );
    }
    client_and_admin_still_transfer(&w, "migrated");
}

/// Item 2 without the watcher: alice uploads a copy of bash, `chmod 2755` over SFTP and opens
/// her data dir (`chmod 755`). The attack works (baseline), doctor FAILs on the set-id file,
/// and after `doctor --fix` the local account gets no shared group — even when the data dir
/// is opened again, the copy is no longer setgid.
#[test]
fn setgid_shell_uploaded_over_sftp_is_reported_and_defused_by_doctor_fix() {
    let w = world();
    let sb = &w.sb;
    let ev = sb.local_account("ev");
    fs::copy("/bin/bash", sb.client_dir().join("bash")).unwrap();
    sb.sftp_ok(
        &w.alice,
        &w.alice_key,
        "put bash\nchmod 2755 bash\nchmod 755 /data\n",
    );
    let data = sb.data(&w.alice);
    let bash = data.join("bash");
    assert_eq!(mode(&bash), 0o2755, "the client set the bit over SFTP");
    let shared_gid = gid_of(&sb.group).to_string();
    let run = || ev.sh(&format!("'{}' -p -c 'id -g'", bash.display()));
    let out = run();
    assert_eq!(
        stdout(&out).trim(),
        shared_gid,
        "baseline: the attack works on a host without repair\n{}",
        show(&out)
    );

    let report = sb.sftpctl(&["doctor"]);
    let fail = stdout(&report)
        .lines()
        .find(|l| l.starts_with("FAIL") && l.contains("set-id files"))
        .map(str::to_string);
    assert!(
        fail.as_deref()
            .is_some_and(|l| l.contains("bash") && l.contains("--fix repairs this")),
        "doctor must FAIL on the setgid file\n{}",
        show(&report)
    );
    assert_eq!(report.status.code(), Some(1));

    let fixed = sb.sftpctl(&["doctor", "--fix"]);
    assert!(fixed.status.success(), "{}", show(&fixed));
    let out = run();
    assert!(
        !out.status.success() || stdout(&out).trim() != shared_gid,
        "after doctor --fix the local account still gets the shared group\n{}",
        show(&out)
    );
    assert_eq!(mode(&bash) & 0o6000, 0, "set-id bits cleared");
    assert_eq!(mode(&data), 0o2770, "data dir closed again");
    // Defence in depth: with the data dir opened by hand (and the copy made executable for
    // others by hand) it is a plain program, running with the local account's own group.
    fs::set_permissions(&data, fs::Permissions::from_mode(0o2755)).unwrap();
    fs::set_permissions(&bash, fs::Permissions::from_mode(mode(&bash) | 0o005)).unwrap();
    let out = run();
    fs::set_permissions(&data, fs::Permissions::from_mode(0o2770)).unwrap();
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(
        stdout(&out).trim(),
        gid_of(&ev.name).to_string(),
        "{}",
        show(&out)
    );
}

/// Unmounts the tmpfs under the jails when the test ends (before the sandbox goes).
struct Unmount(PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// Item 2, mounts: the sandbox's root lies on `/`, mounted without nosuid/nodev: doctor warns
/// and says how to fix it; with the jails on a nosuid,nodev filesystem it says ok.
#[test]
fn doctor_warns_when_the_jails_filesystem_allows_set_id_and_devices() {
    let w = world();
    let out = w.sb.sftpctl(&["doctor"]);
    let line = stdout(&out)
        .lines()
        .find(|l| l.contains("jail filesystem"))
        .map(str::to_string)
        .unwrap_or_default();
    assert!(
        line.starts_with("warn")
            && line.contains("nosuid")
            && line.contains("nodev")
            && line.contains("mount -o remount,nosuid,nodev")
            && line.contains("fstab"),
        "{}",
        show(&out)
    );

    let sb = Sandbox::new();
    fs::create_dir_all(&sb.root).unwrap();
    let mounted = std::process::Command::new("mount")
        .args([
            "-t",
            "tmpfs",
            "-o",
            "nosuid,nodev,mode=755,size=8m",
            "tmpfs",
        ])
        .arg(&sb.root)
        .status()
        .unwrap();
    assert!(mounted.success(), "mount tmpfs");
    let _unmount = Unmount(sb.root.clone());
    sb.sftpctl_ok(&["init"]);
    let out = sb.sftpctl(&["doctor"]);
    assert!(
        stdout(&out).lines().any(|l| l.starts_with("ok")
            && l.contains("jail filesystem")
            && l.contains("nosuid,nodev")),
        "{}",
        show(&out)
    );
}
