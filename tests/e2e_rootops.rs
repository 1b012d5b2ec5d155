//! Root's operations on accounts and client-controlled trees (issue 9 items 11 and 14), against
//! real sshd, rsyslogd, the OpenSSH sftp client and a real unprivileged local account:
//! locks made by other tools survive `doctor --fix`; `remove-user --archive` writes only
//! through the descriptor it opened, refuses a directory others can write, removes trees
//! deeper than the descriptor limit, and keeps the archive when a late step fails.

mod support;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
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

fn tar_listing(archive: &Path) -> String {
    let out = run(&["tar", "-tvzf", archive.to_str().unwrap()]);
    assert!(out.status.success(), "tar -t\n{}", show(&out));
    stdout(&out)
}

fn exists_no_follow(p: &Path) -> bool {
    fs::symlink_metadata(p).is_ok()
}

/// A directory only root can write, for archives.
fn root_dir(sb: &Sandbox, rel: &str) -> PathBuf {
    let dir = sb.path(rel);
    fs::create_dir(&dir).unwrap();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).unwrap();
    dir
}

#[test]
fn archive_in_a_directory_others_can_write_is_refused() {
    let w = world();
    let sb = &w.sb;
    fs::write(sb.client_dir().join("doc.txt"), b"tax papers\n").unwrap();
    sb.sftp_ok(&w.alice, &w.key, "put doc.txt /data/doc.txt\n");
    let ev = sb.local_account("ev");
    let victim = sb.path("victim");
    fs::write(&victim, b"precious\n").unwrap();

    // A directory the local account owns: it could swap the archive for a link at any time.
    let evs = sb.path("evs");
    fs::create_dir(&evs).unwrap();
    std::os::unix::fs::chown(&evs, Some(ev.uid), None).unwrap();
    // A root directory writable by everyone (sticky or not) and a group-writable one.
    let shared = sb.path("shared");
    fs::create_dir(&shared).unwrap();
    fs::set_permissions(&shared, fs::Permissions::from_mode(0o1777)).unwrap();
    // A directory reached through a symlink the local account controls.
    let safe = root_dir(sb, "safe");
    std::os::unix::fs::symlink(&safe, evs.join("to-safe")).unwrap();

    let cases = [
        (evs.join("a.tar.gz"), "writable by others than root"),
        (shared.join("a.tar.gz"), "writable by others than root"),
        (evs.join("to-safe/a.tar.gz"), "symlink"),
        (PathBuf::from("relative.tar.gz"), "relative"),
    ];
    // The attack: the local account plants links where the archives will be...
    for (archive, _) in &cases {
        let planted = ev.sh(&format!(
            "ln -s {} {} 2>/dev/null; true",
            victim.display(),
            archive.display()
        ));
        assert!(planted.status.success());
    }
    // ...and (as root, so the directory check passes) one at a final name in a safe dir.
    std::os::unix::fs::symlink(&victim, safe.join("b.tar.gz")).unwrap();
    let snap = sb.snapshot();
    for (archive, needle) in &cases {
        let out = sb.sftpctl(&[
            "remove-user",
            &w.alice,
            "--archive",
            archive.to_str().unwrap(),
        ]);
        assert_fails_one_line(&out, 2);
        assert!(stderr(&out).contains(needle), "{archive:?}\n{}", show(&out));
    }
    let out = sb.sftpctl(&[
        "remove-user",
        &w.alice,
        "--archive",
        safe.join("b.tar.gz").to_str().unwrap(),
    ]);
    assert_fails_one_line(&out, 2);
    assert!(stderr(&out).contains("is a symlink"), "{}", show(&out));

    assert_eq!(fs::read(&victim).unwrap(), b"precious\n");
    assert!(uid_of_opt(&w.alice).is_some(), "the account was touched");
    snap.assert_same(&sb.snapshot(), "refused archives");
    sb.sftp_ok(&w.alice, &w.key, "ls\n");
}

fn uid_of_opt(user: &str) -> Option<u32> {
    nix::unistd::User::from_name(user)
        .unwrap()
        .map(|u| u.uid.as_raw())
}

/// Waits for `name` to be created in `dir`, then at once moves it aside and puts a symlink to
/// `target` in its place: the swap the old `tar -f PATH` followed. Returns whether it swapped.
fn swap_on_create(
    dir: PathBuf,
    name: &'static str,
    target: PathBuf,
) -> std::thread::JoinHandle<bool> {
    use nix::libc;
    use std::ffi::CString;
    let fd = unsafe { libc::inotify_init1(libc::IN_CLOEXEC) };
    assert!(fd >= 0);
    let c = CString::new(dir.to_str().unwrap()).unwrap();
    let wd = unsafe { libc::inotify_add_watch(fd, c.as_ptr(), libc::IN_CREATE) };
    assert!(wd >= 0);
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        let deadline = std::time::Instant::now() + DEADLINE;
        while std::time::Instant::now() < deadline {
            let mut pfd = libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            };
            if unsafe { libc::poll(&mut pfd, 1, 200) } <= 0 {
                continue;
            }
            let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
            if n <= 0 {
                continue;
            }
            if !String::from_utf8_lossy(&buf[..n as usize]).contains(name) {
                continue;
            }
            let path = dir.join(name);
            let moved = fs::rename(&path, dir.join(format!("{name}.moved"))).is_ok();
            let linked = std::os::unix::fs::symlink(&target, &path).is_ok();
            unsafe { libc::close(fd) };
            return moved && linked;
        }
        unsafe { libc::close(fd) };
        false
    })
}

#[test]
fn a_racing_swap_cannot_redirect_the_archive() {
    let w = world();
    let sb = &w.sb;
    fs::write(sb.client_dir().join("doc.txt"), b"tax papers\n").unwrap();
    sb.sftp_ok(&w.alice, &w.key, "put doc.txt /data/doc.txt\n");
    let victim = sb.path("victim");
    fs::write(&victim, b"precious\n").unwrap();
    let dir = root_dir(sb, "archives");
    // Whoever could write the directory (here: the test, as root, since sftpctl refuses any
    // other directory) swaps the new archive for a link to the victim the moment it appears.
    let swapper = swap_on_create(dir.clone(), "alice.tar.gz", victim.clone());
    let archive = dir.join("alice.tar.gz");
    sb.sftpctl_ok(&[
        "remove-user",
        &w.alice,
        "--archive",
        archive.to_str().unwrap(),
    ]);
    assert!(
        swapper.join().unwrap(),
        "the swap did not happen: the test proves nothing"
    );
    assert_eq!(
        fs::read(&victim).unwrap(),
        b"precious\n",
        "root's tar wrote through the swapped path"
    );
    assert!(fs::symlink_metadata(&archive)
        .unwrap()
        .file_type()
        .is_symlink());
    // The file sftpctl created (and still held open) got the archive.
    let moved = dir.join("alice.tar.gz.moved");
    assert!(tar_listing(&moved).contains("data/doc.txt"));
    assert_eq!(
        fs::metadata(&moved).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(uid_of_opt(&w.alice).is_none());
}

/// chattr +i on a file, undone on drop (the sandbox must be able to clean up).
struct Immutable(PathBuf);

impl Drop for Immutable {
    fn drop(&mut self) {
        let _ = run(&["chattr", "-i", self.0.to_str().unwrap()]);
    }
}

#[test]
fn a_deep_tree_with_links_is_archived_as_links_and_removed() {
    let w = world();
    let sb = &w.sb;
    fs::write(sb.client_dir().join("doc.txt"), b"tax papers\n").unwrap();
    // Made by the client over SFTP: a symlink to /etc/shadow, a hard link to its own file,
    // an attempted hard link to the jail's log socket (refused: protected_hardlinks), and a
    // tree 1,100 levels deep (deeper than a 1,024 descriptor limit).
    let script = "put doc.txt /data/doc.txt\nsymlink /etc/shadow /data/shadow\nln /data/doc.txt /data/doc-hard\n-ln /dev/log /data/log-hard\nmkdir /data/d\n";
    sb.sftp_ok(&w.alice, &w.key, script);
    // The deep part as alice herself (1,100 SFTP round trips would take too long here).
    let deep: PathBuf = std::iter::repeat_n("a", 1_100).collect();
    let made = run_with_timeout(
        Command::new("setpriv")
            .arg(format!("--reuid={}", w.alice))
            .arg(format!("--regid={}", sb.group))
            .arg("--clear-groups")
            .arg("--")
            .arg("sh")
            .arg("-c")
            .arg(format!(
                "mkdir -p {0} && cd {0} && echo x > deep.txt && ln -s /etc/shadow deep-shadow",
                deep.display()
            ))
            .current_dir(sb.data(&w.alice).join("d")),
        b"",
        DEADLINE,
    );
    assert!(made.status.success(), "{}", show(&made));
    assert!(!exists_no_follow(&sb.data(&w.alice).join("log-hard")));
    assert_eq!(
        fs::read_to_string("/proc/sys/fs/protected_hardlinks")
            .unwrap()
            .trim(),
        "1",
        "this host does not protect hard links: the test's premise fails"
    );

    let dir = root_dir(sb, "archives");
    let archive = dir.join("alice.tar.gz");
    let mut cmd = Command::new("prlimit");
    cmd.args(["--nofile=1024:1024", SFTPCTL, "--config"])
        .arg(&sb.config)
        .args(["remove-user", &w.alice, "--archive"])
        .arg(&archive);
    let out = assert_ok(run_with_timeout(&mut cmd, b"", DEADLINE));
    assert!(
        !exists_no_follow(&sb.jail(&w.alice)),
        "jail left\n{}",
        show(&out)
    );
    assert!(uid_of_opt(&w.alice).is_none());

    let listing = tar_listing(&archive);
    let shadow = fs::read_to_string("/etc/shadow").unwrap();
    assert!(
        listing.contains("data/shadow -> /etc/shadow"),
        "symlink not stored as a link\n{}",
        &listing[..listing.len().min(2000)]
    );
    assert!(
        listing.contains("data/doc-hard link to data/doc.txt")
            || listing.contains("data/doc.txt link to data/doc-hard"),
        "hard link not stored as a link"
    );
    assert!(listing.contains("/deep.txt"), "the deep file is missing");
    assert!(listing.contains("deep-shadow -> /etc/shadow"));
    // Nothing of /etc/shadow's content is in the archive.
    let raw = Command::new("tar")
        .arg("-xzOf")
        .arg(&archive)
        .output()
        .unwrap();
    let first_hash = shadow
        .lines()
        .find_map(|l| l.split(':').nth(1).filter(|p| p.len() > 20));
    if let Some(hash) = first_hash {
        assert!(
            !String::from_utf8_lossy(&raw.stdout).contains(hash),
            "root read /etc/shadow into the archive"
        );
    }
}

#[test]
fn a_failure_after_the_point_of_no_return_keeps_the_archive_and_says_what_remains() {
    let w = world();
    let sb = &w.sb;
    fs::write(sb.client_dir().join("doc.txt"), b"tax papers\n").unwrap();
    sb.sftp_ok(
        &w.alice,
        &w.key,
        "mkdir /data/sub\nput doc.txt /data/sub/stuck.txt\nput doc.txt /data/other.txt\n",
    );
    let stuck = sb.data(&w.alice).join("sub/stuck.txt");
    assert_ok(run(&["chattr", "+i", stuck.to_str().unwrap()]));
    let _undo = Immutable(stuck.clone());

    let dir = root_dir(sb, "archives");
    let archive = dir.join("alice.tar.gz");
    let out = sb.sftpctl(&[
        "remove-user",
        &w.alice,
        "--archive",
        archive.to_str().unwrap(),
    ]);
    assert_fails_one_line(&out, 1);
    let err = stderr(&out);
    println!("{err}");
    for needle in [
        "point of no return",
        "nothing was reverted",
        &format!("the archive {} is complete and kept", archive.display()),
        &format!("remove account {}", w.alice), // done
        "sub/stuck.txt",                        // where it stopped
        &format!(
            "{} and what is under it remain",
            sb.jail(&w.alice).display()
        ),
        "Still to do",
    ] {
        assert!(err.contains(needle), "missing {needle:?}\n{}", show(&out));
    }
    assert!(tar_listing(&archive).contains("data/sub/stuck.txt"));
    assert!(uid_of_opt(&w.alice).is_none());
    assert!(stuck.exists());
}
