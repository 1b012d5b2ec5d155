//! End-to-end tests of shared write access (issue 5) with the real OpenSSH sshd and sftp
//! client, curl's SFTP client and the `sftpctl perms-watch` process, each in its own
//! [`support::Sandbox`]. Run as root.
//!
//! The only timed assertion is the issue's functional bound: group-writable within 1 second.

mod support;

use std::fs;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use support::{
    gid_of, holds_within, run_with_timeout, show, uid_of, wait_until, Sandbox, DEADLINE, SFTPCTL,
};

const ONE_SECOND: Duration = Duration::from_secs(1);

// ---------------------------------------------------------------------------------------------
// Helpers

/// `sftpctl perms-watch` as a child process; SIGTERM (then SIGKILL) when dropped.
struct PermsWatch {
    child: Child,
    stdout: Arc<Mutex<String>>,
    log: PathBuf,
}

impl PermsWatch {
    /// Starts it and waits until it says it is ready (initial scan done).
    fn start(sb: &Sandbox) -> PermsWatch {
        let log = sb.path("run/perms-watch.log");
        let mut child = Command::new(SFTPCTL)
            .arg("--config")
            .arg(&sb.config)
            .arg("perms-watch")
            .env_remove("SFTPCTL_CONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(fs::File::create(&log).expect("perms-watch log"))
            .spawn()
            .expect("start sftpctl perms-watch");
        let stdout = Arc::new(Mutex::new(String::new()));
        let out = child.stdout.take().expect("piped stdout");
        let s2 = stdout.clone();
        thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let mut s = s2.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        let mut pw = PermsWatch { child, stdout, log };
        let mut exited = None;
        let ok = holds_within(DEADLINE, || {
            exited = pw.child.try_wait().ok().flatten();
            exited.is_some() || pw.stdout().contains("ready")
        });
        assert!(
            ok && exited.is_none(),
            "perms-watch did not get ready (exit {exited:?})\n{}",
            pw.output()
        );
        pw
    }

    fn stdout(&self) -> String {
        self.stdout.lock().unwrap().clone()
    }

    /// stdout and stderr, for assertion messages.
    fn output(&self) -> String {
        format!(
            "--- perms-watch stdout ---\n{}--- perms-watch stderr ---\n{}",
            self.stdout(),
            fs::read_to_string(&self.log).unwrap_or_default()
        )
    }

    fn pid(&self) -> Pid {
        Pid::from_raw(self.child.id() as i32)
    }

    /// SIGTERM and wait; returns its stdout (with the final counters).
    fn stop(&mut self) -> String {
        let _ = kill(self.pid(), Signal::SIGTERM);
        let status = wait_exit(&mut self.child);
        assert!(
            status.is_some_and(|s| s.success()),
            "perms-watch did not exit 0 on SIGTERM: {status:?}\n{}",
            self.output()
        );
        // The reader thread may still be copying the last line.
        wait_until("perms-watch's last line", DEADLINE, || {
            self.stdout().contains("stopped")
        });
        self.stdout()
    }
}

fn wait_exit(child: &mut Child) -> Option<std::process::ExitStatus> {
    let mut status = None;
    holds_within(DEADLINE, || {
        status = child.try_wait().ok().flatten();
        status.is_some()
    });
    status
}

impl Drop for PermsWatch {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = kill(self.pid(), Signal::SIGTERM);
            if wait_exit(&mut self.child).is_none() {
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
        }
    }
}

/// A sandbox after `init --admin` (the admin also named in the config: the watcher knows the
/// admin from there), rsyslogd, `add-user alice`, sshd. Field order = drop order: the watcher
/// goes before the sandbox.
struct World {
    watch: Option<PermsWatch>,
    sb: Sandbox,
    alice: String,
    alice_key: PathBuf,
    alice_pub: PathBuf,
    admin: String,
    admin_key: PathBuf,
}

fn world(start_sshd: bool) -> World {
    let mut sb = Sandbox::new();
    let admin = sb.admin.clone();
    sb.edit_config(
        "umask = \"0007\"",
        &format!("umask = \"0007\"\nadmin = \"{admin}\""),
    );
    let alice = sb.user("alice");
    let (alice_key, alice_pub) = sb.keygen("alice");
    let (admin_key, admin_pub) = sb.keygen("admin");
    sb.sftpctl_ok(&[
        "init",
        "--admin",
        &admin,
        "--admin-key",
        admin_pub.to_str().unwrap(),
    ]);
    sb.start_rsyslogd();
    sb.sftpctl_ok(&["add-user", &alice, "--key", alice_pub.to_str().unwrap()]);
    if start_sshd {
        sb.start_sshd();
    }
    World {
        watch: None,
        sb,
        alice,
        alice_key,
        alice_pub,
        admin,
        admin_key,
    }
}

impl World {
    fn start_watch(&mut self) -> &mut PermsWatch {
        self.watch = Some(PermsWatch::start(&self.sb));
        self.watch.as_mut().unwrap()
    }

    fn watch_output(&self) -> String {
        self.watch.as_ref().map(|w| w.output()).unwrap_or_default()
    }
}

fn local_file(sb: &Sandbox, name: &str, bytes: &[u8], mode: u32) {
    let p = sb.client_dir().join(name);
    fs::write(&p, bytes).unwrap();
    fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
}

fn mode(p: &Path) -> u32 {
    fs::symlink_metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .mode()
        & 0o7777
}

/// Mode and ctime (a chmod to the same mode still changes ctime).
fn mode_ctime(p: &Path) -> (u32, i64, i64) {
    let m = fs::symlink_metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    (m.mode() & 0o7777, m.ctime(), m.ctime_nsec())
}

fn shared(p: &Path) -> bool {
    fs::symlink_metadata(p).is_ok_and(|m| {
        let mode = m.mode();
        let dir = m.is_dir();
        mode & 0o060 == 0o060 && (!dir || mode & 0o2010 == 0o2010) && mode & 0o007 == 0
    })
}

/// The issue's bound: group-writable within one second.
#[track_caller]
fn shared_within_1s(w: &World, p: &Path) {
    let ok = holds_within(ONE_SECOND, || shared(p));
    assert!(
        ok,
        "{} is not group-writable 1 s later (mode {:04o})\n{}",
        p.display(),
        fs::symlink_metadata(p)
            .map(|m| m.mode() & 0o7777)
            .unwrap_or(0),
        w.watch_output()
    );
}

/// `sh -c script` on the host as `user` with primary group `group` and no other groups, umask
/// 022 (so new files are 0644, as a 0644 upload would be).
fn as_user(user: &str, group: &str, dir: &Path, script: &str) -> Output {
    let mut cmd = Command::new("setpriv");
    cmd.args(["--reuid", user, "--regid", group, "--clear-groups", "--"])
        .args(["sh", "-c", &format!("umask 022 && {script}")])
        .current_dir(dir);
    run_with_timeout(&mut cmd, b"", Duration::from_secs(60))
}

/// Waits until the watcher has handled every event so far: a new file created after them is
/// repaired only after all earlier events (one queue, read in order).
#[track_caller]
fn drain(w: &World, dir: &Path, tag: &str) {
    let p = dir.join(format!(".drain-{tag}"));
    let out = as_user(
        &w.alice,
        &w.sb.group,
        dir,
        &format!("echo > {}", p.display()),
    );
    assert!(out.status.success(), "{}", show(&out));
    let ok = holds_within(DEADLINE, || shared(&p));
    assert!(ok, "drain file not repaired\n{}", w.watch_output());
    fs::remove_file(&p).unwrap();
}

fn curl_sftp(w: &World, args: &[&str]) -> Output {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--fail", "--insecure", "--key"])
        .arg(&w.alice_key)
        .arg("--pubkey")
        .arg(&w.alice_pub)
        .arg("--user")
        .arg(format!("{}:", w.alice))
        .args(args)
        .current_dir(w.sb.client_dir());
    run_with_timeout(&mut cmd, b"", DEADLINE)
}

// ---------------------------------------------------------------------------------------------
// The issue's scenario

/// A jailed user uploads a 0644 file with OpenSSH sftp and makes a directory with a client that
/// asks 0755 (curl); within a second both are group-writable; the admin overwrites the file
/// and creates a file in the directory; the admin uploads a 0644 file and the user overwrites
/// it. Also: `chmod` over sftp (IN_ATTRIB) and `put -p` are undone.
#[test]
fn uploads_and_mkdirs_become_group_writable_and_both_sides_can_write() {
    let mut w = world(true);
    w.start_watch();
    let sb = &w.sb;
    let (alice, akey) = (w.alice.as_str(), w.alice_key.as_path());
    let (admin, admin_key) = (w.admin.as_str(), w.admin_key.as_path());
    let data = sb.data(alice);
    let g = gid_of(&sb.group);

    // 1. OpenSSH sftp put of a 0644 file.
    local_file(sb, "up.txt", b"from alice\n", 0o644);
    sb.sftp_ok(alice, akey, "put up.txt up.txt\n");
    let up = data.join("up.txt");
    shared_within_1s(&w, &up);
    assert_eq!(
        mode(&up),
        0o660,
        "g+rw added; the umask 0007 left nothing for others"
    );

    // 2. A directory made by a client that asks 0755: curl's SFTP mkdir (libssh2) sends the
    //    mode 0755 (curl's new_directory_perms), landing 2755 in the setgid data dir.
    let out = curl_sftp(
        &w,
        &[
            "--quote",
            "mkdir /data/by-curl",
            &format!("sftp://127.0.0.1:{}/data/", sb.ssh_port),
        ],
    );
    assert!(
        out.status.success(),
        "curl mkdir\n{}\n{}",
        show(&out),
        sb.sshd_log()
    );
    let by_curl = data.join("by-curl");
    shared_within_1s(&w, &by_curl);
    assert_eq!(mode(&by_curl), 0o2770);
    // And curl's upload (it asks 0644).
    local_file(sb, "curl-up.txt", b"curl\n", 0o600);
    let out = curl_sftp(
        &w,
        &[
            "--upload-file",
            "curl-up.txt",
            &format!("sftp://127.0.0.1:{}/data/by-curl/curl-up.txt", sb.ssh_port),
        ],
    );
    assert!(out.status.success(), "curl upload\n{}", show(&out));
    shared_within_1s(&w, &by_curl.join("curl-up.txt"));

    // 3. OpenSSH mkdir (asks 0777) then chmod 755 over sftp: the chmod is undone too.
    sb.sftp_ok(alice, akey, "mkdir sub\nchmod 755 sub\nchmod 600 up.txt\n");
    let sub = data.join("sub");
    shared_within_1s(&w, &sub);
    assert_eq!(mode(&sub), 0o2770);
    shared_within_1s(&w, &up);
    assert_eq!(mode(&up), 0o660, "chmod 600 + g+rw");

    // 4. put -p keeps the local mode (a setstat after the upload): undone as well.
    local_file(sb, "keep.sh", b"#!/bin/sh\n", 0o700);
    sb.sftp_ok(alice, akey, "put -p keep.sh sub/keep.sh\n");
    let keep = sub.join("keep.sh");
    shared_within_1s(&w, &keep);
    assert_eq!(
        mode(&keep),
        0o760,
        "the owner's x kept, g+rw added, nothing for others"
    );

    // 5. The admin overwrites alice's file and creates a file in alice's curl-made directory.
    local_file(sb, "admin1.txt", b"overwritten by the admin\n", 0o644);
    sb.sftp_ok(
        admin,
        admin_key,
        &format!(
            "put admin1.txt {}\nput admin1.txt {}\n",
            up.display(),
            by_curl.join("from-admin.txt").display()
        ),
    );
    assert_eq!(fs::read(&up).unwrap(), b"overwritten by the admin\n");
    assert_eq!(fs::metadata(&up).unwrap().uid(), uid_of(alice));
    let from_admin = by_curl.join("from-admin.txt");
    assert_eq!(fs::metadata(&from_admin).unwrap().uid(), uid_of(admin));
    shared_within_1s(&w, &from_admin);

    // 6. The admin uploads a 0644 file into the jail; alice then overwrites it.
    local_file(sb, "admin2.txt", b"the admin's file\n", 0o644);
    let admin_file = data.join("admin-file.txt");
    sb.sftp_ok(
        admin,
        admin_key,
        &format!("put admin2.txt {}\n", admin_file.display()),
    );
    shared_within_1s(&w, &admin_file);
    assert_eq!(mode(&admin_file), 0o660);
    local_file(sb, "alice-edit.txt", b"alice edited it\n", 0o644);
    sb.sftp_ok(alice, akey, "put alice-edit.txt admin-file.txt\n");
    assert_eq!(fs::read(&admin_file).unwrap(), b"alice edited it\n");
    let md = fs::metadata(&admin_file).unwrap();
    assert_eq!((md.uid(), md.gid()), (uid_of(admin), g));

    // Nothing in the tree is open to other accounts.
    for e in walkdir::WalkDir::new(&data) {
        let e = e.unwrap();
        let m = e.metadata().unwrap().mode();
        assert_eq!(m & 0o007, 0, "{} is open to others", e.path().display());
    }
    let out = w.watch.as_mut().unwrap().stop();
    assert!(out.contains("stopped"), "{out}");
}

/// A jail added while the watcher runs is watched from its creation on.
#[test]
fn a_jail_added_while_watching_is_covered() {
    let mut w = world(true);
    w.start_watch();
    let bob = w.sb.user("bob");
    let (bob_key, bob_pub) = w.sb.keygen("bob");
    w.sb.sftpctl_ok(&["add-user", &bob, "--key", bob_pub.to_str().unwrap()]);
    local_file(&w.sb, "b.txt", b"bob\n", 0o644);
    w.sb.sftp_ok(&bob, &bob_key, "put b.txt b.txt\nmkdir d\nchmod 700 d\n");
    shared_within_1s(&w, &w.sb.data(&bob).join("b.txt"));
    shared_within_1s(&w, &w.sb.data(&bob).join("d"));
    assert_eq!(mode(&w.sb.data(&bob).join("d")), 0o2770);
}

// ---------------------------------------------------------------------------------------------
// Attacks: the watcher acts as root on paths the user controls.

/// Files outside the jail that the attacks aim at: one root-owned, and — the strongest case,
/// where only "never follow a symlink, never leave the data tree" protects it — one owned by
/// the attacking user with the shared group, plus a directory of theirs with such a file.
struct Targets {
    root_file: PathBuf,
    user_file: PathBuf,
    user_dir: PathBuf,
    user_dir_file: PathBuf,
}

fn targets(w: &World, tag: &str) -> Targets {
    let dir = w.sb.path(&format!("outside-{tag}"));
    fs::create_dir_all(&dir).unwrap();
    let (uid, gid) = (uid_of(&w.alice), gid_of(&w.sb.group));
    let t = Targets {
        root_file: dir.join("root-owned.txt"),
        user_file: dir.join("alice-owned.txt"),
        user_dir: dir.join("alice-dir"),
        user_dir_file: dir.join("alice-dir/inner"),
    };
    fs::write(&t.root_file, "root\n").unwrap();
    fs::set_permissions(&t.root_file, fs::Permissions::from_mode(0o644)).unwrap();
    fs::create_dir(&t.user_dir).unwrap();
    fs::set_permissions(&t.user_dir, fs::Permissions::from_mode(0o755)).unwrap();
    for f in [&t.user_file, &t.user_dir_file] {
        fs::write(f, "alice\n").unwrap();
        fs::set_permissions(f, fs::Permissions::from_mode(0o644)).unwrap();
    }
    for p in [&t.user_file, &t.user_dir, &t.user_dir_file] {
        std::os::unix::fs::lchown(p, Some(uid), Some(gid)).unwrap();
    }
    t
}

impl Targets {
    fn all(&self) -> [&Path; 4] {
        [
            &self.root_file,
            &self.user_file,
            &self.user_dir,
            &self.user_dir_file,
        ]
    }

    /// Mode and ctime of each; for the directory only its mode (entries made in it through
    /// a link change its ctime legitimately).
    fn state(&self) -> Vec<(u32, i64, i64)> {
        self.all()
            .iter()
            .map(|p| {
                let s = mode_ctime(p);
                if p.is_dir() {
                    (s.0, 0, 0)
                } else {
                    s
                }
            })
            .collect()
    }
}

/// On the host, as the user, in a tight loop: create a file then at once replace it by a
/// symlink to a file outside the jail; create a directory with a file then swap the directory
/// for a symlink to an outside directory holding a file of the same name. Every outside
/// inode's mode and ctime stay exactly as they were (not even a same-mode chmod), while the
/// real files the user made are repaired.
#[test]
fn racing_symlink_swaps_never_reach_outside_files() {
    let mut w = world(false);
    let t = targets(&w, "race");
    let before = t.state();
    w.start_watch();
    let data = w.sb.data(&w.alice);
    let script = format!(
        r#"i=0
while [ $i -lt 400 ]; do
  echo x > f$i; ln -sfn {uf} f$i
  echo x > g$i; ln -sfn {rf} g$i
  echo x > h$i; rm -f h$i; ln -s {uf} h$i
  mkdir d$i; echo y > d$i/inner; mv d$i d$i.real; ln -s {ud} d$i
  i=$((i+1))
done"#,
        uf = t.user_file.display(),
        rf = t.root_file.display(),
        ud = t.user_dir.display(),
    );
    let out = as_user(&w.alice, &w.sb.group, &data, &script);
    assert!(out.status.success(), "attack loop\n{}", show(&out));
    drain(&w, &data, "race");
    assert_eq!(
        t.state(),
        before,
        "an outside inode was changed\n{}",
        w.watch_output()
    );
    // The watcher was working all along: the real directories and files are repaired.
    for i in [0, 199, 399] {
        assert!(shared(&data.join(format!("d{i}.real"))), "d{i}.real");
        assert!(
            shared(&data.join(format!("d{i}.real/inner"))),
            "d{i}.real/inner"
        );
        assert!(fs::symlink_metadata(data.join(format!("f{i}")))
            .unwrap()
            .file_type()
            .is_symlink());
    }
    // A late look (the queue is drained, but be generous): still untouched.
    assert!(!holds_within(Duration::from_millis(300), || t.state() != before));
}

/// The same attack over SFTP (no shell needed): `put` then `rm` + `symlink` to an absolute
/// host path, many times in one session.
#[test]
fn sftp_upload_then_symlink_swap_never_reaches_outside_files() {
    let mut w = world(true);
    let t = targets(&w, "sftp");
    let before = t.state();
    w.start_watch();
    local_file(&w.sb, "x.txt", b"x\n", 0o644);
    let mut script = String::new();
    for i in 0..60 {
        let target = if i % 2 == 0 {
            &t.user_file
        } else {
            &t.root_file
        };
        script.push_str(&format!(
            "put x.txt s{i}\nrm s{i}\nsymlink {} s{i}\n",
            target.display()
        ));
    }
    script.push_str("put x.txt last.txt\n");
    w.sb.sftp_ok(&w.alice, &w.alice_key, &script);
    let data = w.sb.data(&w.alice);
    shared_within_1s(&w, &data.join("last.txt"));
    drain(&w, &data, "sftp");
    assert_eq!(
        t.state(),
        before,
        "an outside inode was changed\n{}",
        w.watch_output()
    );
}

/// A symlinked directory in the data tree is never followed — not by the start-up scan, not by
/// events for files created through it, not by `perms::scan(fix)` (what `doctor --fix` runs);
/// files of other owners (root, another account) in the tree are left alone.
#[test]
fn symlinked_dirs_and_foreign_files_are_left_alone() {
    let mut w = world(false);
    let t = targets(&w, "links");
    let data = w.sb.data(&w.alice);
    let (uid, gid) = (uid_of(&w.alice), gid_of(&w.sb.group));
    // Before the watcher starts: links made by the user, plus foreign files in the tree.
    std::os::unix::fs::symlink(&t.user_dir, data.join("dirlink")).unwrap();
    std::os::unix::fs::symlink(&t.user_file, data.join("filelink")).unwrap();
    std::os::unix::fs::symlink(&t.root_file, data.join("rootlink")).unwrap();
    for l in ["dirlink", "filelink", "rootlink"] {
        std::os::unix::fs::lchown(data.join(l), Some(uid), Some(gid)).unwrap();
    }
    let nobody = uid_of("nobody");
    let foreign = [
        (data.join("root-file"), 0, gid),
        (data.join("nobody-file"), nobody, gid),
        (data.join("alice-other-group"), uid, 0),
    ];
    for (p, u, g) in &foreign {
        fs::write(p, "x\n").unwrap();
        fs::set_permissions(p, fs::Permissions::from_mode(0o644)).unwrap();
        std::os::unix::fs::lchown(p, Some(*u), Some(*g)).unwrap();
    }
    let before = t.state();
    w.start_watch();
    // Through the link, as the user: the file lands outside; nothing watches it.
    // And new links made while watching (their IN_CREATE names the link itself).
    let out = as_user(
        &w.alice,
        &w.sb.group,
        &data,
        &format!(
            "echo new > dirlink/created-through-link && mkdir dirlink/subdir-through-link && \
             ln -s {ud} dirlink2 && ln -s {uf} filelink2 && ln -s {rf} rootlink2 && \
             mkdir real && ln -s {ud} real/dirlink3",
            ud = t.user_dir.display(),
            uf = t.user_file.display(),
            rf = t.root_file.display(),
        ),
    );
    assert!(out.status.success(), "{}", show(&out));
    // Foreign files made while watching (root creates, then hands over: IN_ATTRIB fires).
    let late = data.join("nobody-late");
    fs::write(&late, "x\n").unwrap();
    fs::set_permissions(&late, fs::Permissions::from_mode(0o644)).unwrap();
    std::os::unix::fs::lchown(&late, Some(nobody), Some(gid)).unwrap();
    drain(&w, &data, "links");

    let config = sftpctl::config::Config::load(Some(&w.sb.config)).unwrap().0;
    let report = sftpctl::perms::scan(&config, true).unwrap();
    assert_eq!(report.jails, 1, "{report}");
    assert_eq!(
        report.fixed, 0,
        "the watcher had fixed everything already\n{report}"
    );
    assert_eq!(report.skipped, 4, "{report}");
    assert!(report.errors.is_empty(), "{report}");

    assert_eq!(
        t.state(),
        before,
        "an outside inode was changed\n{}",
        w.watch_output()
    );
    assert_eq!(mode(&t.user_dir.join("created-through-link")), 0o644);
    assert_eq!(mode(&t.user_dir.join("subdir-through-link")), 0o755);
    for (p, u, _) in &foreign {
        // alice's own file of another group is not shared, but closed to others all the same.
        let want = if *u == uid { 0o640 } else { 0o644 };
        assert_eq!(mode(p), want, "{}", p.display());
    }
    assert_eq!(mode(&late), 0o644);
}

// ---------------------------------------------------------------------------------------------
// doctor's half, overflow, switch

/// Files from a time the watcher was down: `scan(false)` lists them and changes nothing,
/// `scan(true)` repairs them; the watcher's start-up scan would too.
#[test]
fn scan_lists_then_fixes_what_was_missed() {
    let w = world(false);
    let data = w.sb.data(&w.alice);
    let script = "mkdir -p a/b && echo 1 > a/f && echo 2 > a/b/g && chmod 700 a/b && echo 3 > ok && chmod 664 ok";
    let out = as_user(&w.alice, &w.sb.group, &data, script);
    assert!(out.status.success(), "{}", show(&out));
    let config = sftpctl::config::Config::load(Some(&w.sb.config)).unwrap().0;

    let report = sftpctl::perms::scan(&config, false).unwrap();
    // a, a/f, a/b, a/b/g lack group bits; ok (0664) is open to others.
    assert_eq!((report.not_shared, report.fixed), (5, 0), "{report}");
    assert!(!report.is_clean());
    let listed: Vec<String> = report
        .findings
        .iter()
        .map(|f| f.path.strip_prefix(&data).unwrap().display().to_string())
        .collect();
    for p in ["a", "a/f", "a/b", "a/b/g", "ok"] {
        assert!(listed.contains(&p.to_string()), "{p} not listed\n{report}");
    }
    assert_eq!(
        mode(&data.join("a/f")),
        0o644,
        "scan without fix changed a mode"
    );

    let report = sftpctl::perms::scan(&config, true).unwrap();
    assert_eq!((report.not_shared, report.fixed), (5, 5), "{report}");
    assert!(report.is_clean());
    assert_eq!(mode(&data.join("a")), 0o2770);
    assert_eq!(mode(&data.join("a/b")), 0o2770);
    assert_eq!(mode(&data.join("a/f")), 0o660);
    assert_eq!(mode(&data.join("ok")), 0o660);
    let report = sftpctl::perms::scan(&config, false).unwrap();
    assert!(report.is_clean() && report.not_shared == 0, "{report}");
}

/// More events than the kernel queues (fs.inotify.max_queued_events) while the watcher is
/// stopped: the overflow triggers a full rescan and nothing is missed.
#[test]
fn queue_overflow_is_followed_by_a_full_rescan() {
    let mut w = world(false);
    let data = w.sb.data(&w.alice);
    let queued: usize = fs::read_to_string("/proc/sys/fs/inotify/max_queued_events")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let pid = w.start_watch().pid();
    let many = data.join("many");
    let out = as_user(&w.alice, &w.sb.group, &data, "mkdir many");
    assert!(out.status.success(), "{}", show(&out));
    shared_within_1s(&w, &many); // now watched
    kill(pid, Signal::SIGSTOP).unwrap();
    // Each file makes at least two events (create, close-write).
    let n = queued / 2 + 1000;
    let out = as_user(
        &w.alice,
        &w.sb.group,
        &many,
        &format!("seq 1 {n} | xargs touch"),
    );
    kill(pid, Signal::SIGCONT).unwrap();
    assert!(out.status.success(), "{}", show(&out));
    wait_until("every file repaired after the overflow", DEADLINE, || {
        shared(&many)
            && (1..=n)
                .step_by(97)
                .all(|i| shared(&many.join(i.to_string())))
    });
    drain(&w, &data, "overflow");
    let config = sftpctl::config::Config::load(Some(&w.sb.config)).unwrap().0;
    let report = sftpctl::perms::scan(&config, false).unwrap();
    assert!(report.is_clean() && report.not_shared == 0, "{report}");
    let out = w.watch.as_mut().unwrap().stop();
    assert!(
        !out.contains(" 0 overflow(s)"),
        "no overflow happened?\n{out}"
    );
}

/// `perms.enabled = false`: the hidden command says so and exits 0.
#[test]
fn disabled_in_config() {
    let sb = Sandbox::new();
    let text = fs::read_to_string(&sb.config).unwrap();
    sb.set_config(&format!("{text}\n[perms]\nenabled = false\n"));
    let out = sb.sftpctl_ok(&["perms-watch"]);
    assert!(
        support::stdout(&out).contains("perms.enabled = false"),
        "{}",
        show(&out)
    );
}

/// The unit `init` installs runs `sftpctl watch --foreground`; that process (not only the
/// hidden perms-watch) keeps uploads group-writable.
#[test]
fn the_installed_watch_service_runs_it() {
    let mut w = world(true);
    let unit = fs::read_to_string(w.sb.path("systemd/sftpctl-watch.service")).unwrap();
    let exec = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("ExecStart in the unit");
    assert!(exec.ends_with(" watch --foreground"), "{exec}");

    let log = w.sb.path("run/watch.log");
    let mut child = Command::new(SFTPCTL)
        .arg("--config")
        .arg(&w.sb.config)
        .args(["watch", "--foreground"])
        .env_remove("SFTPCTL_CONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    wait_until("the watcher to listen", DEADLINE, || {
        Sandbox::socket_listens(&w.sb.watch_socket)
    });
    local_file(&w.sb, "svc.txt", b"service\n", 0o644);
    w.sb.sftp_ok(&w.alice, &w.alice_key, "put svc.txt svc.txt\n");
    let target = w.sb.data(&w.alice).join("svc.txt");
    let ok = holds_within(Duration::from_secs(1), || shared(&target));
    let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
    let status = wait_exit(&mut child);
    assert!(
        ok,
        "mode {:o}\n{}",
        mode(&target),
        fs::read_to_string(&log).unwrap_or_default()
    );
    assert!(status.is_some_and(|s| s.success()), "watch exit {status:?}");
    w.watch = None;
}

// ---------------------------------------------------------------------------------------------
// Issue 9: set-id uploads and the per-jail watch budget

/// The attack of issue 9, item 2, with the watcher running: alice uploads a copy of bash over
/// SFTP, `chmod 2755 bash` and `chmod 755 /data`. Within a second the copy has no set-id bit
/// and the data dir is closed again; a local account running `bash -p -c 'id -g'` does not get
/// the shared group, even when the test then opens the data dir and the file by hand with the
/// watcher stopped.
#[test]
fn setgid_shell_uploaded_over_sftp_is_defused_by_the_watcher() {
    let mut w = world(true);
    let ev = w.sb.local_account("ev");
    let pid = w.start_watch().pid();
    fs::copy("/bin/bash", w.sb.client_dir().join("bash")).unwrap();
    w.sb.sftp_ok(
        &w.alice,
        &w.alice_key,
        "put bash\nchmod 2755 bash\nchmod 755 /data\n",
    );
    let data = w.sb.data(&w.alice);
    let bash = data.join("bash");
    let ok = holds_within(ONE_SECOND, || {
        mode(&bash) & 0o6000 == 0 && mode(&data) == 0o2770
    });
    assert!(
        ok,
        "bash {:04o}, data dir {:04o} 1 s later\n{}",
        mode(&bash),
        mode(&data),
        w.watch_output()
    );
    let shared_gid = gid_of(&w.sb.group).to_string();
    let run = || ev.sh(&format!("'{}' -p -c 'id -g'", bash.display()));
    let out = run();
    assert!(
        !out.status.success() || support::stdout(&out).trim() != shared_gid,
        "{}",
        show(&out)
    );
    // With the watcher stopped and the way opened by hand: a plain program now.
    kill(pid, Signal::SIGSTOP).unwrap();
    // kill() returns before the process has stopped: wait until the kernel says it has.
    wait_until("the watcher to stop", DEADLINE, || {
        fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
            s.rsplit(')')
                .next()
                .is_some_and(|t| t.trim_start().starts_with('T'))
        })
    });
    fs::set_permissions(&data, fs::Permissions::from_mode(0o2755)).unwrap();
    fs::set_permissions(&bash, fs::Permissions::from_mode(mode(&bash) | 0o005)).unwrap();
    let out = run();
    fs::set_permissions(&data, fs::Permissions::from_mode(0o2770)).unwrap();
    kill(pid, Signal::SIGCONT).unwrap();
    assert_eq!(
        support::stdout(&out).trim(),
        gid_of(&ev.name).to_string(),
        "{}",
        show(&out)
    );
}

/// Issue 9, item 12: a jail with more directories than `perms.max_watches_per_jail` is not
/// watched but scanned every `perms.scan_interval_secs`: its uploads are still repaired, the
/// watcher's log and doctor say so, and the host-wide fs.inotify.max_user_watches is left as
/// it was.
#[test]
fn a_jail_over_its_watch_budget_is_scanned_periodically() {
    let mut w = world(false);
    let text = fs::read_to_string(&w.sb.config).unwrap();
    w.sb.set_config(&format!(
        "{text}\n[perms]\nmax_watches_per_jail = 5\nscan_interval_secs = 1\n"
    ));
    let host_limit = || fs::read_to_string("/proc/sys/fs/inotify/max_user_watches").unwrap();
    let limit_before = host_limit();
    let data = w.sb.data(&w.alice);
    let out = as_user(&w.alice, &w.sb.group, &data, "mkdir -p a/b/c/d e f g h");
    assert!(out.status.success(), "{}", show(&out));
    w.start_watch();
    let log = w.watch_output();
    assert!(
        log.contains(&format!("jail {}", w.alice))
            && log.contains("scanned and repaired every 1 s"),
        "the watcher's log must say it falls back\n{log}"
    );
    // A new upload deep in the tree (no watch there): repaired by the periodic scan.
    let out = as_user(
        &w.alice,
        &w.sb.group,
        &data,
        "echo x > a/b/c/d/late.txt && mkdir a/b/c/d/new",
    );
    assert!(out.status.success(), "{}", show(&out));
    let late = data.join("a/b/c/d/late.txt");
    wait_until("the periodic scan repairs the upload", DEADLINE, || {
        shared(&late) && shared(&data.join("a/b/c/d/new"))
    });
    let out = w.sb.sftpctl(&["doctor"]);
    assert!(
        support::stdout(&out).lines().any(|l| l.starts_with("warn")
            && l.contains(&format!("watches {}", w.alice))
            && l.contains("perms.max_watches_per_jail = 5")),
        "{}",
        show(&out)
    );
    assert_eq!(host_limit(), limit_before, "max_user_watches changed");
    let stats = w.watch.as_mut().unwrap().stop();
    assert!(stats.contains("stopped"), "{stats}");
}
