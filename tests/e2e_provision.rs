//! End-to-end tests of `init`, `add-user` and `refresh-log-links` with the real OpenSSH sshd and
//! sftp client and a real rsyslogd, each in its own [`support::Sandbox`]. Run as root.

mod support;

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::PathBuf;
use std::process::{Command, Output};

use support::{gid_of, show, stderr, stdout, uid_of, Sandbox};

/// The harness itself: private rsyslogd (socket, file, UDP), sshd and SMTP server start, and
/// everything — processes, accounts, the dir — is gone after `Drop`.
#[test]
fn harness_starts_daemons_and_cleans_up() {
    let mut sb = Sandbox::new();
    let dir = sb.dir.clone();
    assert!(dir.starts_with("/srv"));
    assert_eq!(fs::metadata(&dir).unwrap().mode() & 0o7777, 0o755);
    // A hand-written drop-in standing in for sftpctl's.
    fs::write(
        sb.path("etc/rsyslog.d/50-test.conf"),
        format!(
            "input(type=\"imuxsock\" Socket=\"{sock}\" CreatePath=\"on\")\n\
             $ModLoad omuxsock\n\
             $OMUxSockSocket {feed}\n\
             if $programname == 'internal-sftp' then {{\n\
               action(type=\"omfile\" file=\"{log}\")\n\
               :omuxsock:\n\
               stop\n\
             }}\n",
            sock = sb.root_socket().display(),
            log = sb.log_file.display(),
            feed = sb.watch_socket.display(),
        ),
    )
    .unwrap();
    let udp = sb.feed_capture();
    sb.start_rsyslogd();
    let socket = sb.root_socket();
    let logger = |msg: &str| {
        let out = Command::new("logger")
            .arg("-u")
            .arg(&socket)
            .args(["-t", "internal-sftp", msg])
            .output()
            .unwrap();
        assert!(out.status.success(), "logger\n{}", show(&out));
    };
    logger("harness-line-1");
    sb.wait_log_line("harness-line-1");
    udp.wait_for("internal-sftp: harness-line-1");

    let before = sb.root_socket().metadata().unwrap().ino();
    // Like a jail's dev/log: a second link keeps the old inode alive.
    fs::hard_link(sb.root_socket(), sb.path("log/old-socket")).unwrap();
    sb.restart_rsyslogd();
    assert!(!Sandbox::socket_listens(&sb.path("log/old-socket")));
    assert_ne!(before, sb.root_socket().metadata().unwrap().ino());
    logger("harness-line-2");
    sb.wait_log_line("harness-line-2");

    sb.start_sshd();
    let maildir = sb.path("run/maildir");
    let _port = sb.start_smtp(&maildir);

    let user = sb.user("tmp");
    let out = Command::new("useradd")
        .args(["-M", "-s", "/usr/sbin/nologin", &user])
        .output()
        .unwrap();
    assert!(out.status.success(), "useradd\n{}", show(&out));
    let out = Command::new("groupadd").arg(&sb.group).output().unwrap();
    assert!(out.status.success(), "groupadd\n{}", show(&out));
    let snap = sb.snapshot();
    assert!(!snap.entries("/etc/passwd#").is_empty());

    let pidfiles = ["run/rsyslogd.pid", "run/sshd.pid"].map(|p| {
        fs::read_to_string(sb.path(p))
            .unwrap()
            .trim()
            .parse::<i32>()
            .unwrap()
    });
    drop(udp);
    drop(sb);
    if std::env::var_os("SFTPCTL_KEEP_SANDBOX").is_none() {
        assert!(!dir.exists(), "{} still exists", dir.display());
    }
    for pid in pidfiles {
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists()
                || fs::read_to_string(format!("/proc/{pid}/stat"))
                    .map(|s| s.contains(") Z "))
                    .unwrap_or(true),
            "daemon {pid} still running"
        );
    }
    let passwd = fs::read_to_string("/etc/passwd").unwrap();
    assert!(!passwd.contains(&user), "{user} still in /etc/passwd");
    let group = fs::read_to_string("/etc/group").unwrap();
    assert!(
        !group.lines().any(|l| l.starts_with(&format!("{user}:"))),
        "group left behind"
    );
}

// ---------------------------------------------------------------------------------------------
// Helpers shared by the provisioning tests.

/// A sandbox after `init` (optionally with the admin), rsyslogd started, `add-user alice --key`
/// and sshd started: the order an operator follows on a fresh host.
struct World {
    sb: Sandbox,
    alice: String,
    alice_key: PathBuf,
    admin_key: Option<PathBuf>,
}

fn world(with_admin: bool) -> World {
    let mut sb = Sandbox::new();
    let alice = sb.user("alice");
    let (alice_key, alice_pub) = sb.keygen("alice");
    let admin_key = if with_admin {
        let (k, p) = sb.keygen("admin");
        let admin = sb.admin.clone();
        sb.sftpctl_ok(&[
            "init",
            "--admin",
            &admin,
            "--admin-key",
            p.to_str().unwrap(),
        ]);
        Some(k)
    } else {
        sb.sftpctl_ok(&["init"]);
        None
    };
    sb.start_rsyslogd();
    sb.sftpctl_ok(&["add-user", &alice, "--key", alice_pub.to_str().unwrap()]);
    sb.start_sshd();
    World {
        sb,
        alice,
        alice_key,
        admin_key,
    }
}

/// Writes a local file for the sftp client with the given mode; returns its bytes.
fn local_file(sb: &Sandbox, name: &str, bytes: &[u8], mode: u32) -> Vec<u8> {
    let p = sb.client_dir().join(name);
    fs::write(&p, bytes).unwrap();
    fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
    bytes.to_vec()
}

/// Every byte value, then some text: a transfer that mangles anything shows.
fn payload(tag: &str) -> Vec<u8> {
    let mut v: Vec<u8> = (0..=255u8).collect();
    v.extend_from_slice(format!("\r\n{tag}\n").as_bytes());
    v.extend_from_slice(&[b'x'; 70_000]);
    v
}

/// The names `ls -1a DIR` printed (paths as sftp shows them, without the `sftp>` echo lines).
fn listing(out: &Output) -> Vec<String> {
    let mut v: Vec<String> = stdout(out)
        .lines()
        .filter(|l| !l.starts_with("sftp>"))
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect();
    v.sort();
    v
}

/// What add-user promises on disk and in the account database.
#[track_caller]
fn assert_jail_layout(sb: &Sandbox, user: &str) {
    let mode_owner = |p: &std::path::Path| {
        let m = fs::symlink_metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        (m.mode() & 0o7777, m.uid(), m.gid())
    };
    let g = gid_of(&sb.group);
    assert_eq!(mode_owner(&sb.root), (0o755, 0, 0), "root dir");
    assert_eq!(mode_owner(&sb.jail(user)), (0o755, 0, 0), "jail dir");
    assert_eq!(
        mode_owner(&sb.data(user)),
        (0o2770, uid_of(user), g),
        "data dir"
    );
    assert_eq!(
        mode_owner(&sb.jail(user).join("dev")),
        (0o755, 0, 0),
        "dev dir"
    );
    assert_eq!(
        fs::symlink_metadata(sb.jail(user).join("dev/log"))
            .unwrap()
            .ino(),
        sb.root_socket_inode().expect("rsyslog's socket"),
        "dev/log is a hard link to <root>/dev/log"
    );
    let keys = sb.path("etc/ssh/sftpctl/authorized_keys").join(user);
    assert_eq!(mode_owner(&keys), (0o644, 0, 0), "authorized_keys file");
    let pw = nix::unistd::User::from_name(user).unwrap().unwrap();
    assert_eq!(pw.dir, std::path::Path::new("/data"), "home");
    assert_eq!(pw.shell, std::path::Path::new("/usr/sbin/nologin"), "shell");
    assert_eq!(pw.gid.as_raw(), g, "primary group");
    let shadow = fs::read_to_string("/etc/shadow").unwrap();
    let line = shadow
        .lines()
        .find(|l| l.starts_with(&format!("{user}:")))
        .expect("shadow line");
    assert_eq!(line.split(':').nth(1), Some("*"), "password field: {line}");
    let jail_group = nix::unistd::Group::from_name(&sb.jail_group)
        .unwrap()
        .unwrap();
    assert!(jail_group.mem.iter().any(|m| m == user), "in jail_group");
}

fn says_nothing_changed(out: &Output) -> bool {
    let text = format!("{}{}", stdout(out), stderr(out)).to_lowercase();
    [
        "nothing to change",
        "nothing changed",
        "no changes",
        "no change",
    ]
    .iter()
    .any(|p| text.contains(p))
}

// ---------------------------------------------------------------------------------------------
// 1. A jailed user works inside data and nowhere else.

#[test]
fn jailed_user_uploads_lists_downloads_renames_deletes_only_in_data() {
    let w = world(false);
    let (sb, alice, key) = (&w.sb, w.alice.as_str(), w.alice_key.as_path());
    let data = sb.data(alice);
    assert_jail_layout(sb, alice);
    let bytes = local_file(sb, "up.bin", &payload("e2e-1"), 0o644);

    // The session starts in the data dir (the home, /data seen from inside).
    let out = sb.sftp_ok(alice, key, "pwd\nput up.bin\nls -1\n");
    assert!(
        stdout(&out).contains("Remote working directory: /data"),
        "{}",
        show(&out)
    );
    assert!(
        stdout(&out).lines().any(|l| l.trim() == "up.bin"),
        "{}",
        show(&out)
    );
    let meta = fs::metadata(data.join("up.bin")).expect("uploaded file on the host");
    assert_eq!(fs::read(data.join("up.bin")).unwrap(), bytes);
    assert_eq!(meta.uid(), uid_of(alice), "owner of the upload");
    assert_eq!(
        meta.gid(),
        gid_of(&sb.group),
        "group of the upload (setgid data dir)"
    );

    sb.sftp_ok(alice, key, "get /data/up.bin down.bin\n");
    assert_eq!(fs::read(sb.client_dir().join("down.bin")).unwrap(), bytes);

    sb.sftp_ok(alice, key, "rename up.bin renamed.bin\n");
    assert!(!data.join("up.bin").exists());
    assert_eq!(fs::read(data.join("renamed.bin")).unwrap(), bytes);

    sb.sftp_ok(alice, key, "rm renamed.bin\n");
    assert!(!data.join("renamed.bin").exists());
    assert_eq!(
        fs::read_dir(&data).unwrap().count(),
        0,
        "data dir not empty"
    );

    // What the jail's root shows: the data dir and the dev dir holding the log socket link.
    let out = sb.sftp_ok(alice, key, "ls -1a /\n");
    assert_eq!(
        listing(&out),
        ["/.", "/..", "/data", "/dev"],
        "ls -1a / in the jail\n{}",
        show(&out)
    );
    let out = sb.sftp_ok(alice, key, "ls -1a /dev\n");
    assert_eq!(
        listing(&out),
        ["/dev/.", "/dev/..", "/dev/log"],
        "{}",
        show(&out)
    );

    // Nothing can be written outside data: not into /, not into /dev, no mkdir there.
    for script in [
        "put up.bin /up.bin\n",
        "put up.bin /dev/up.bin\n",
        "mkdir /newdir\n",
        "rename /data /stolen\n",
        "rm /dev/log\n",
        "chmod 777 /\n",
    ] {
        let out = sb.sftp(alice, key, script);
        assert!(
            !out.status.success(),
            "{script:?} succeeded outside data\n{}",
            show(&out)
        );
    }
    let jail = sb.jail(alice);
    let mut names: Vec<String> = fs::read_dir(&jail)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["data", "dev"], "jail contents changed");
    assert_eq!(fs::metadata(&jail).unwrap().mode() & 0o7777, 0o755);
    assert!(
        fs::symlink_metadata(jail.join("dev/log"))
            .unwrap()
            .file_type()
            .is_socket(),
        "dev/log is no longer the socket"
    );
}

// ---------------------------------------------------------------------------------------------
// 2. The admin (not jailed) and a jailed user share files both ways.

#[test]
fn admin_overwrites_users_file_and_user_modifies_admins_file() {
    let w = world(true);
    let (sb, alice, akey) = (&w.sb, w.alice.as_str(), w.alice_key.as_path());
    let admin = sb.admin.clone();
    let admin_key = w.admin_key.clone().unwrap();
    let data = sb.data(alice);
    let remote = data.join("shared.txt");
    let pw = nix::unistd::User::from_name(&admin).unwrap().unwrap();
    assert_eq!(pw.dir, sb.root, "admin's home is the jail root");
    assert_eq!(pw.gid.as_raw(), gid_of(&sb.group), "admin's primary group");
    let jail_group = nix::unistd::Group::from_name(&sb.jail_group)
        .unwrap()
        .unwrap();
    assert!(
        !jail_group.mem.contains(&admin),
        "the admin must not be jailed"
    );
    let remote_s = remote.to_str().unwrap();

    // Mode 0666 locally: the session umask 0007 (ForceCommand internal-sftp -u 0007) makes 0660.
    // (With OpenSSH sftp's usual 0644 files the admin could not overwrite: that is issue 5.)
    let alice_bytes = local_file(sb, "alice.txt", b"from alice\n", 0o666);
    sb.sftp_ok(alice, akey, "put alice.txt shared.txt\n");
    let meta = fs::metadata(&remote).unwrap();
    assert_eq!(meta.mode() & 0o7777, 0o660, "alice's upload mode");
    assert_eq!(meta.gid(), gid_of(&sb.group));

    // The admin is not chrooted: it starts in its home, the jail root, and sees host paths.
    let out = sb.sftp_ok(
        &admin,
        &admin_key,
        &format!("pwd\nget {remote_s} admin-got.txt\n"),
    );
    assert!(
        stdout(&out).contains(&format!("Remote working directory: {}", sb.root.display())),
        "admin's home\n{}",
        show(&out)
    );
    assert_eq!(
        fs::read(sb.client_dir().join("admin-got.txt")).unwrap(),
        alice_bytes
    );

    let admin_bytes = local_file(sb, "admin.txt", b"overwritten by the admin\n", 0o666);
    sb.sftp_ok(&admin, &admin_key, &format!("put admin.txt {remote_s}\n"));
    assert_eq!(fs::read(&remote).unwrap(), admin_bytes, "admin's overwrite");

    // The admin's new file: the global Subsystem (internal-sftp -u 0007) makes it 0660, and the
    // setgid data dir gives it the shared group, so alice can change it.
    let new_remote = data.join("from-admin.txt");
    sb.sftp_ok(
        &admin,
        &admin_key,
        &format!("put admin.txt {}\n", new_remote.display()),
    );
    let meta = fs::metadata(&new_remote).unwrap();
    assert_eq!(meta.uid(), uid_of(&admin));
    assert_eq!(meta.gid(), gid_of(&sb.group), "group of the admin's file");
    assert_eq!(
        meta.mode() & 0o7777,
        0o660,
        "admin's upload mode (global Subsystem with -u 0007?)\n{}",
        fs::read_to_string(sb.path("etc/ssh/sshd_config")).unwrap()
    );

    let edit = local_file(sb, "edit.txt", b"alice edited the admin's file\n", 0o666);
    sb.sftp_ok(alice, akey, "put edit.txt from-admin.txt\n");
    assert_eq!(fs::read(&new_remote).unwrap(), edit, "alice's edit");
    assert_eq!(fs::metadata(&new_remote).unwrap().uid(), uid_of(&admin));

    // And alice cannot reach the admin's home (the jail root) or another path on the host.
    let out = sb.sftp(alice, akey, &format!("ls {}\n", sb.root.display()));
    assert!(!out.status.success(), "alice saw the host\n{}", show(&out));
}

// ---------------------------------------------------------------------------------------------
// 3. Transfer lines reach the log file and the watcher's UDP port.

fn transfer_probe(w: &World, name: &str) -> String {
    local_file(&w.sb, name, b"0123456789", 0o644);
    w.sb.sftp_ok(&w.alice, &w.alice_key, &format!("put {name}\n"));
    format!("close \"/data/{name}\" bytes read 0 written 10")
}

#[test]
fn transfer_lines_arrive_in_log_file_and_on_the_feed_socket() {
    let mut w = world(false);
    let udp = w.sb.feed_capture();
    let close = transfer_probe(&w, "probe-3.txt");
    let alice = w.alice.clone();

    let opened = format!("session opened for local user {alice} from [127.0.0.1]");
    for needle in [
        opened.as_str(),
        "open \"/data/probe-3.txt\" flags WRITE,CREATE,TRUNCATE mode 0644",
        close.as_str(),
        "session closed for local user",
    ] {
        let line = w.sb.wait_log_line(needle);
        assert!(line.contains(" internal-sftp["), "tag: {line}");
        // The kernel's credentials of the sender: alice's own internal-sftp.
        let creds = format!(" [uid={} pid=", uid_of(&alice));
        assert!(line.contains(&creds), "credentials: {line}");
        let dgram = udp.wait_for(needle);
        assert_eq!(dgram, line, "the watcher gets the log file's line");
    }
    // Only internal-sftp lines go to the log file.
    for line in w.sb.log_lines() {
        assert!(
            line.contains(" internal-sftp["),
            "foreign line in the log: {line}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// 4. A restarted rsyslogd orphans the jails' links; refresh-log-links heals them.

/// Sends `msg` tagged internal-sftp to rsyslog's current socket; when it shows up, every line
/// sent before it to the same socket has been processed too.
fn control_line(sb: &Sandbox, msg: &str) {
    let out = Command::new("logger")
        .arg("-u")
        .arg(sb.root_socket())
        .args(["-t", "internal-sftp", msg])
        .output()
        .unwrap();
    assert!(out.status.success(), "logger\n{}", show(&out));
    sb.wait_log_line(msg);
}

#[test]
fn after_rsyslog_restart_lines_are_lost_until_refresh_log_links() {
    let mut w = world(false);
    let udp = w.sb.feed_capture();
    let jail_log = w.sb.jail(&w.alice).join("dev/log");

    let before = transfer_probe(&w, "before-restart.txt");
    w.sb.wait_log_line(&before);
    udp.wait_for(&before);
    assert_eq!(
        fs::metadata(&jail_log).unwrap().ino(),
        w.sb.root_socket_inode().unwrap()
    );

    w.sb.restart_rsyslogd();
    assert_ne!(
        fs::symlink_metadata(&jail_log).unwrap().ino(),
        w.sb.root_socket_inode().unwrap(),
        "the jail's link should be stale after a restart"
    );
    let lost = transfer_probe(&w, "during-stale-link.txt");
    control_line(&w.sb, "control-after-stale-session");
    udp.wait_for("control-after-stale-session");
    assert!(
        !w.sb.log_lines().iter().any(|l| l.contains(&lost)),
        "a line came through the stale link"
    );
    assert!(
        !udp.lines().iter().any(|l| l.contains(&lost)),
        "a datagram came through the stale link"
    );

    let out = w.sb.sftpctl_ok(&["refresh-log-links"]);
    assert!(
        stdout(&out).contains("1 renewed"),
        "refresh-log-links should report one renewed link\n{}",
        show(&out)
    );
    assert_eq!(
        fs::symlink_metadata(&jail_log).unwrap().ino(),
        w.sb.root_socket_inode().unwrap(),
        "refresh-log-links did not re-link the jail"
    );
    let after = transfer_probe(&w, "after-refresh.txt");
    w.sb.wait_log_line(&after);
    udp.wait_for(&after);

    // A second refresh finds every link fresh and changes nothing.
    let snap = w.sb.snapshot();
    w.sb.sftpctl_ok(&["refresh-log-links"]);
    snap.assert_same(&w.sb.snapshot(), "second refresh-log-links");
}

/// The order of a fresh host where rsyslogd is not running yet: add-user cannot link dev/log
/// (no socket), refresh-log-links makes the link once rsyslogd runs, and lines then arrive.
#[test]
fn add_user_before_rsyslogd_then_refresh_log_links() {
    let mut sb = Sandbox::new();
    let alice = sb.user("alice");
    let (alice_key, alice_pub) = sb.keygen("alice");
    sb.sftpctl_ok(&["init"]);
    let out = sb.sftpctl_ok(&["add-user", &alice, "--key", alice_pub.to_str().unwrap()]);
    assert!(
        fs::symlink_metadata(sb.jail(&alice).join("dev/log")).is_err(),
        "a dev/log without rsyslog's socket?\n{}",
        show(&out)
    );
    sb.start_rsyslogd();
    let out = sb.sftpctl_ok(&["refresh-log-links"]);
    assert!(stdout(&out).contains("1 renewed"), "{}", show(&out));
    assert_jail_layout(&sb, &alice);
    sb.start_sshd();
    let w = World {
        sb,
        alice,
        alice_key,
        admin_key: None,
    };
    let close = transfer_probe(&w, "late-socket.txt");
    w.sb.wait_log_line(&close);
}

// ---------------------------------------------------------------------------------------------
// 5. Re-runs change nothing; --dry-run changes nothing and shows diffs.

#[test]
fn second_init_and_add_user_change_nothing() {
    let mut sb = Sandbox::new();
    let admin = sb.admin.clone();
    let alice = sb.user("alice");
    let (_, admin_pub) = sb.keygen("admin");
    let (_, alice_pub) = sb.keygen("alice");
    let init = [
        "init",
        "--admin",
        admin.as_str(),
        "--admin-key",
        admin_pub.to_str().unwrap(),
    ];
    let add = [
        "add-user",
        alice.as_str(),
        "--key",
        alice_pub.to_str().unwrap(),
    ];
    sb.sftpctl_ok(&init);
    sb.start_rsyslogd();
    sb.sftpctl_ok(&add);

    let snap = sb.snapshot();
    assert!(!snap.entries(&format!("/etc/passwd#{alice}")).is_empty());
    for args in [&init[..], &add[..]] {
        let out = sb.sftpctl_ok(args);
        assert!(
            says_nothing_changed(&out),
            "{args:?} again should say nothing changed\n{}",
            show(&out)
        );
        snap.assert_same(&sb.snapshot(), &format!("second {args:?}"));
    }
    let out = sb.sftpctl_ok(&["refresh-log-links"]);
    assert!(
        stdout(&out).contains("0 renewed"),
        "the link add-user made is fresh\n{}",
        show(&out)
    );
    snap.assert_same(&sb.snapshot(), "refresh-log-links after add-user");
}

#[test]
fn init_dry_run_changes_nothing_and_shows_diffs() {
    let sb = Sandbox::new();
    let admin = sb.admin.clone();
    let (_, admin_pub) = sb.keygen("admin");
    let snap = sb.snapshot();
    let out = sb.sftpctl_ok(&[
        "init",
        "--dry-run",
        "--admin",
        &admin,
        "--admin-key",
        admin_pub.to_str().unwrap(),
    ]);
    eprintln!("{}", show(&out));
    snap.assert_same(&sb.snapshot(), "init --dry-run");
    assert!(!sb.root.exists());
    assert!(nix::unistd::Group::from_name(&sb.group).unwrap().is_none());
    assert!(nix::unistd::User::from_name(&admin).unwrap().is_none());
    let text = stdout(&out);
    for needle in [
        // the main file's Subsystem line replaced (OpenSSH 9.2 here)
        "-Subsystem sftp /usr/lib/openssh/sftp-server",
        "+Subsystem sftp internal-sftp -l VERBOSE -u 0007",
        "+# BEGIN sftpctl",
        // the drop-in
        &format!("+Match Group {}", sb.jail_group),
        &format!("+    ChrootDirectory {}/%u", sb.root.display()),
        // the rsyslog drop-in
        &format!("Socket=\"{}\"", sb.root_socket().display()),
    ] {
        assert!(
            text.contains(needle),
            "dry-run output lacks {needle:?}\n{}",
            show(&out)
        );
    }
}

#[test]
fn add_user_dry_run_changes_nothing_and_shows_diffs() {
    let mut sb = Sandbox::new();
    sb.sftpctl_ok(&["init"]);
    sb.start_rsyslogd();
    let alice = sb.user("alice");
    let (_, alice_pub) = sb.keygen("alice");
    let key_text = fs::read_to_string(&alice_pub).unwrap();
    let snap = sb.snapshot();
    let out = sb.sftpctl_ok(&[
        "add-user",
        "--dry-run",
        &alice,
        "--key",
        alice_pub.to_str().unwrap(),
    ]);
    snap.assert_same(&sb.snapshot(), "add-user --dry-run");
    assert!(nix::unistd::User::from_name(&alice).unwrap().is_none());
    assert!(!sb.jail(&alice).exists());
    let text = stdout(&out);
    assert!(
        text.contains(&alice),
        "plan does not name the user\n{}",
        show(&out)
    );
    let key_line = format!("+{}", key_text.trim_end());
    assert!(
        text.contains(&key_line),
        "dry-run output lacks the authorized_keys diff {key_line:?}\n{}",
        show(&out)
    );
}

// ---------------------------------------------------------------------------------------------
// 6. A validator failure restores every file.

#[test]
fn sshd_validation_failure_leaves_every_file_as_before() {
    let sb = Sandbox::new();
    let main = sb.path("etc/ssh/sshd_config");
    let mut text = fs::read_to_string(&main).unwrap();
    text.push_str("NoSuchOptionForSftpctlTest yes\n");
    fs::write(&main, text).unwrap();
    let snap = sb.snapshot();
    let out = sb.sftpctl(&["init"]);
    eprintln!("{}", show(&out));
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        stderr(&out).contains("Bad configuration option: NoSuchOptionForSftpctlTest"),
        "stderr does not quote sshd\n{}",
        show(&out)
    );
    // Exactly as before: the same inode comes back, with its bytes, mode, owner and times.
    snap.assert_same(&sb.snapshot(), "init with a failing sshd -t");
}

/// The host's config is valid; only the candidate (sftpctl's Subsystem line added while a
/// local drop-in already defines one) fails `sshd -t` on OpenSSH <= 9.4.
#[test]
fn candidate_rejected_by_sshd_leaves_every_file_as_before() {
    let sb = Sandbox::new();
    let main = sb.path("etc/ssh/sshd_config");
    let text = fs::read_to_string(&main).unwrap();
    let without: String = text
        .lines()
        .filter(|l| !l.starts_with("Subsystem"))
        .map(|l| format!("{l}\n"))
        .collect();
    fs::write(&main, without).unwrap();
    fs::write(
        sb.path("etc/ssh/sshd_config.d/10-local.conf"),
        "Subsystem sftp /usr/lib/openssh/sftp-server\n",
    )
    .unwrap();
    let check = Command::new("/usr/sbin/sshd")
        .arg("-t")
        .arg("-f")
        .arg(&main)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "premise: valid before\n{}",
        show(&check)
    );

    let snap = sb.snapshot();
    let out = sb.sftpctl(&["init"]);
    eprintln!("{}", show(&out));
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        stderr(&out).contains("Subsystem 'sftp' already defined"),
        "stderr does not quote sshd\n{}",
        show(&out)
    );
    snap.assert_same(&sb.snapshot(), "init whose candidate fails sshd -t");
}

// ---------------------------------------------------------------------------------------------
// refresh-log-links never follows a symlink and never links into a dir a user owns.

#[test]
fn refresh_log_links_skips_symlinked_and_foreign_owned_jails() {
    let mut sb = Sandbox::new();
    sb.sftpctl_ok(&["init"]);
    sb.start_rsyslogd();
    let (_, key) = sb.keygen("k");
    let users: Vec<String> = ["alice", "bob", "carol", "dave"]
        .iter()
        .map(|n| sb.user(n))
        .collect();
    for u in &users {
        sb.sftpctl_ok(&["add-user", u, "--key", key.to_str().unwrap()]);
    }
    let (alice, bob, carol, dave) = (&users[0], &users[1], &users[2], &users[3]);
    // bob's dev dir becomes a symlink to a dir outside the jails.
    let outside_b = sb.path("outside-b");
    fs::create_dir(&outside_b).unwrap();
    fs::remove_file(sb.jail(bob).join("dev/log")).unwrap();
    fs::remove_dir(sb.jail(bob).join("dev")).unwrap();
    std::os::unix::fs::symlink(&outside_b, sb.jail(bob).join("dev")).unwrap();
    // carol's whole jail becomes a symlink to a dir with its own dev.
    let outside_c = sb.path("outside-c");
    fs::create_dir_all(outside_c.join("dev")).unwrap();
    fs::remove_dir_all(sb.jail(carol)).unwrap();
    std::os::unix::fs::symlink(&outside_c, sb.jail(carol)).unwrap();
    // dave's dev dir is owned by dave.
    let dave_dev = sb.jail(dave).join("dev");
    nix::unistd::chown(
        &dave_dev,
        Some(nix::unistd::Uid::from_raw(uid_of(dave))),
        None,
    )
    .unwrap();

    sb.restart_rsyslogd();
    let out = sb.sftpctl(&["refresh-log-links"]);
    assert!(
        out.status.code() == Some(0) || out.status.code() == Some(1),
        "{}",
        show(&out)
    );
    let new = sb.root_socket_inode().unwrap();
    assert_eq!(
        fs::symlink_metadata(sb.jail(alice).join("dev/log"))
            .unwrap()
            .ino(),
        new,
        "the healthy jail is renewed\n{}",
        show(&out)
    );
    assert!(
        !outside_b.join("log").exists(),
        "followed bob's dev symlink"
    );
    assert!(
        !outside_c.join("dev/log").exists(),
        "followed carol's jail symlink"
    );
    assert_ne!(
        fs::symlink_metadata(dave_dev.join("log")).unwrap().ino(),
        new,
        "linked into a dev dir owned by the user"
    );
    let err = stderr(&out);
    for u in [bob, carol, dave] {
        assert!(
            err.contains(u.as_str()),
            "no warning naming {u}\n{}",
            show(&out)
        );
    }
    assert!(stdout(&out).contains("3 skipped"), "{}", show(&out));
}

/// `sshd.penalty_exempt` on this machine's OpenSSH 9.2 (no PerSourcePenalties): a bad entry is
/// refused before anything changes; a good one is not written (9.2's `sshd -t` refuses the
/// keyword, shown here) and init says so; doctor says why nothing needs it.
#[test]
fn penalty_exempt_is_validated_and_skipped_before_openssh_9_8() {
    let sb = Sandbox::new();
    let snap = sb.snapshot();
    sb.edit_config(
        "reload = []\n",
        "reload = []\npenalty_exempt = [\"10.0.0.1/8\"]\n",
    );
    let out = sb.sftpctl(&["init"]);
    support::assert_fails_one_line(&out, 2);
    assert!(
        stderr(&out).contains("sshd.penalty_exempt") && stderr(&out).contains("host bits"),
        "{}",
        show(&out)
    );
    sb.edit_config("\"10.0.0.1/8\"", "\"127.0.0.1,10.0.0.1\"");
    let out = sb.sftpctl(&["init"]);
    support::assert_fails_one_line(&out, 2);
    let config_key = |k: &str| !k.ends_with("sftpctl.toml");
    let unchanged = |a: &support::Snapshot| {
        support::Snapshot(
            a.0.clone()
                .into_iter()
                .filter(|(k, _)| config_key(k))
                .collect(),
        )
    };
    unchanged(&snap).assert_same(&unchanged(&sb.snapshot()), "init with a bad penalty_exempt");

    sb.edit_config(
        "\"127.0.0.1,10.0.0.1\"",
        "\"127.0.0.1\", \"203.0.113.0/24\", \"2001:db8::/32\"",
    );
    let out = sb.sftpctl_ok(&["init"]);
    assert!(
        stderr(&out)
            .contains("sshd.penalty_exempt is not written: OpenSSH 9.2 has no PerSourcePenalties"),
        "{}",
        show(&out)
    );
    let dropin = sb.path("etc/ssh/sshd_config.d/50-sftpctl.conf");
    let main = sb.path("etc/ssh/sshd_config");
    for file in [&dropin, &main] {
        let text = fs::read_to_string(file).unwrap();
        assert!(
            !text.contains("PerSourcePenalty"),
            "{}:\n{text}",
            file.display()
        );
    }
    let doctor = sb.sftpctl(&["doctor"]);
    assert!(
        stdout(&doctor).contains("OpenSSH 9.2 has no PerSourcePenalties"),
        "{}",
        show(&doctor)
    );

    // Why it is skipped: 9.2's sshd -t refuses the keyword.
    let mut text = fs::read_to_string(&dropin).unwrap();
    text = format!("PerSourcePenaltyExemptList 127.0.0.1\n{text}");
    fs::write(&dropin, text).unwrap();
    let check = Command::new(support::SSHD)
        .arg("-t")
        .arg("-f")
        .arg(&main)
        .output()
        .unwrap();
    assert!(
        !check.status.success(),
        "9.2 took the keyword\n{}",
        show(&check)
    );
    assert!(
        String::from_utf8_lossy(&check.stderr).contains("PerSourcePenaltyExemptList"),
        "{}",
        show(&check)
    );
}
