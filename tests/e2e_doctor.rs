//! End-to-end tests of `sftpctl doctor` with the real sshd, sftp client and rsyslogd, each in
//! its own [`support::Sandbox`]. Run as root.
//!
//! Every seeded fault is one that operators meet (FACTS.md): a group-writable jail, a stale log
//! link after an rsyslog restart, a drifted sshd drop-in and a data
//! dir with the wrong owner. For each: doctor names it with FAIL (exit 1), `--fix --dry-run`
//! changes nothing, `--fix` repairs it, doctor then passes, and a real login with a logged
//! transfer works again.

mod support;

use std::fs;
use std::os::unix::fs::{chown, MetadataExt, PermissionsExt};
use std::path::PathBuf;
use std::process::{Command, Output};

use support::{show, stdout, Sandbox};

struct World {
    sb: Sandbox,
    alice: String,
    alice_key: PathBuf,
}

/// init with an admin (named in the config), rsyslogd, add-user alice with a key, sshd.
fn world() -> World {
    let mut sb = Sandbox::new();
    let admin = sb.admin.clone();
    sb.edit_config(
        "umask = \"0007\"",
        &format!("umask = \"0007\"\nadmin = \"{admin}\""),
    );
    let (_, admin_pub) = sb.keygen("admin");
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
    }
}

fn doctor(sb: &Sandbox, args: &[&str]) -> Output {
    let mut all = vec!["doctor"];
    all.extend_from_slice(args);
    sb.sftpctl(&all)
}

fn fails(out: &Output) -> Vec<String> {
    stdout(out)
        .lines()
        .filter(|l| l.starts_with("FAIL"))
        .map(str::to_string)
        .collect()
}

#[track_caller]
fn assert_healthy(sb: &Sandbox, context: &str) {
    let out = doctor(sb, &[]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{context}: doctor must pass\n{}",
        show(&out)
    );
    assert!(fails(&out).is_empty(), "{context}\n{}", show(&out));
}

/// A real upload by alice, found in the log file rsyslog writes from inside the jail.
#[track_caller]
fn transfer_is_logged(w: &World, tag: &str) {
    let name = format!("{tag}.txt");
    let local = w.sb.client_dir().join(&name);
    fs::write(&local, format!("payload {tag}\n")).unwrap();
    // 0664 locally: no permission watcher runs in these tests, and a 0644 upload would be
    // (rightly) reported by the shared-write check.
    fs::set_permissions(&local, std::os::unix::fs::PermissionsExt::from_mode(0o664)).unwrap();
    w.sb.sftp_ok(&w.alice, &w.alice_key, &format!("put {name}\nls -l\n"));
    assert_eq!(
        fs::read_to_string(w.sb.data(&w.alice).join(&name)).unwrap(),
        format!("payload {tag}\n")
    );
    w.sb.wait_log_line(&format!("close \"/data/{name}\" bytes read 0 written"));
}

/// The common course of a seeded fault: found, dry run changes nothing, repaired, passes,
/// and `after_fix` (e.g. an sshd reload) before the real transfer.
fn found_and_repaired(w: &mut World, needle: &str, after_fix: impl FnOnce(&mut World)) {
    let sb = &w.sb;
    let out = doctor(sb, &[]);
    println!("doctor with the fault:\n{}", show(&out)); // for CI logs
    assert_eq!(
        out.status.code(),
        Some(1),
        "doctor must fail\n{}",
        show(&out)
    );
    let failing = fails(&out);
    assert!(
        failing.iter().any(|l| l.contains(needle)),
        "no FAIL line names {needle:?}\n{}",
        show(&out)
    );
    assert!(
        failing.iter().any(|l| l.contains("--fix repairs this")),
        "the fault is not marked repairable\n{}",
        show(&out)
    );

    let before = sb.snapshot();
    let dry = doctor(sb, &["--fix", "--dry-run"]);
    assert_eq!(dry.status.code(), Some(1), "{}", show(&dry));
    assert!(
        stdout(&dry).contains("the repair plan") && stdout(&dry).contains("  + "),
        "the dry run shows no plan\n{}",
        show(&dry)
    );
    before.assert_same(&sb.snapshot(), "doctor --fix --dry-run");

    println!("doctor --fix --dry-run:\n{}", show(&dry)); // for CI logs
    let fixed = doctor(sb, &["--fix"]);
    println!("doctor --fix:\n{}", show(&fixed)); // for CI logs
    assert_eq!(
        fixed.status.code(),
        Some(0),
        "doctor --fix must repair it\n{}",
        show(&fixed)
    );
    assert!(stdout(&fixed).contains("repaired"), "{}", show(&fixed));
    assert_healthy(sb, "after --fix");
    after_fix(w);
    transfer_is_logged(w, "after-fix");
}

#[test]
fn healthy_exchange_passes_and_json_parses() {
    let mut w = world();
    w.sb.start_watcher();
    let sb = &w.sb;
    transfer_is_logged(&w, "healthy");
    let out = doctor(sb, &[]);
    println!("{}", show(&out)); // for CI logs
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let text = stdout(&out);
    for line in text.lines().filter(|l| !l.starts_with("      ")) {
        assert!(
            line.starts_with("ok   ") || line.starts_with("warn ") || line.starts_with("doctor: "),
            "unexpected line {line:?}\n{text}"
        );
    }
    for area in [
        "chroot chain",
        "jail layout",
        "rsyslog socket",
        "log links",
        "jailed accounts",
        "key files",
        "sshd -t",
        "sshd -T",
        "rsyslogd -N1",
        "logrotate -d",
        "watcher listening",
        "mail transport",
        "watcher outbox",
        "managed files",
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(&format!("ok   {area}"))),
            "no ok line for {area}\n{text}"
        );
    }
    assert!(text.contains(&format!("admin {}", sb.admin)), "{text}");
    assert!(
        text.lines().last().unwrap().starts_with("doctor: "),
        "{text}"
    );

    let json = doctor(sb, &["--json"]);
    assert_eq!(json.status.code(), Some(0), "{}", show(&json));
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).expect("valid JSON");
    let checks = v["checks"].as_array().expect("checks array");
    assert!(checks.len() >= 13);
    for c in checks {
        assert!(c["name"].is_string() && c["message"].is_string());
        assert!(["ok", "warn", "fail"].contains(&c["status"].as_str().unwrap()));
    }
    assert_eq!(v["summary"]["fail"], 0);

    // --fix on a healthy system changes nothing (the watcher, which writes its outbox as it
    // mails, is stopped first).
    w.sb.stop_watcher();
    let sb = &w.sb;
    let before = sb.snapshot();
    let fixed = doctor(sb, &["--fix"]);
    assert_eq!(fixed.status.code(), Some(0), "{}", show(&fixed));
    assert!(
        stdout(&fixed).contains("nothing doctor can repair"),
        "{}",
        show(&fixed)
    );
    before.assert_same(&sb.snapshot(), "doctor --fix on a healthy system");

    // A mail setting the watcher would refuse at start is a failure here, found without
    // starting it.
    let healthy_config = fs::read_to_string(&sb.config).unwrap();
    let missing = sb.dir.join("no-such-sendmail");
    sb.edit_config(
        "[mail]\n",
        &format!(
            "[mail]\ntransport = \"sendmail\"\nsendmail = \"{}\"\n",
            missing.display()
        ),
    );
    let out = doctor(sb, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let failed = fails(&out);
    assert_eq!(failed.len(), 1, "{}", show(&out));
    assert!(
        failed[0].starts_with("FAIL mail transport: mail.sendmail:"),
        "{}",
        show(&out)
    );
    sb.set_config(&healthy_config);

    // Not root: read-only checks still run and say what they cannot see; --fix is refused.
    let nobody = sb.sftpctl_as_nobody(&["doctor"]);
    assert!(
        matches!(nobody.status.code(), Some(0 | 1)),
        "{}",
        show(&nobody)
    );
    assert!(
        stdout(&nobody).contains("not running as root"),
        "{}",
        show(&nobody)
    );
    let nobody_fix = sb.sftpctl_as_nobody(&["doctor", "--fix"]);
    support::assert_fails_one_line(&nobody_fix, 2);
    assert!(support::stderr(&nobody_fix).contains("must run as root"));
    // Bad usage.
    support::assert_fails_one_line(&doctor(sb, &["--user", "nosuchuser"]), 2);
    assert_eq!(doctor(sb, &["--dry-run"]).status.code(), Some(2));
}

#[test]
fn group_writable_jail_is_found_and_repaired() {
    let mut w = world();
    let jail = w.sb.jail(&w.alice);
    fs::set_permissions(&jail, fs::Permissions::from_mode(0o775)).unwrap();
    assert!(
        !w.sb.sftp(&w.alice, &w.alice_key, "ls\n").status.success(),
        "sshd must refuse a group-writable jail"
    );
    let needle = format!("jail {}:", w.alice);
    found_and_repaired(&mut w, &needle, |_| {});
    assert_eq!(fs::metadata(&jail).unwrap().mode() & 0o7777, 0o755);
}

#[test]
fn stale_log_link_after_rsyslog_restart_is_found_and_repaired() {
    let mut w = world();
    transfer_is_logged(&w, "before-restart");
    w.sb.restart_rsyslogd();
    let needle = format!("log link {}", w.alice);
    found_and_repaired(&mut w, &needle, |_| {});
}

#[test]
fn a_lock_made_by_another_tool_is_reported_and_kept() {
    let w = world();
    // `!` alone: what useradd leaves, or an admin's `usermod -p '!'`. A lock, whoever made
    // it (issue 9 item 14): doctor names it, --fix leaves it (tests/e2e_rootops.rs has usermod -L).
    let ok = Command::new("usermod")
        .args(["-p", "!", &w.alice])
        .status()
        .unwrap()
        .success();
    assert!(ok);
    assert!(
        !w.sb.sftp(&w.alice, &w.alice_key, "ls\n").status.success(),
        "sshd must refuse a locked account"
    );
    let out = doctor(&w.sb, &["--fix"]);
    assert!(
        stdout(&out).contains(&format!("account {}", w.alice))
            && stdout(&out).contains("not by sftpctl lock"),
        "{}",
        show(&out)
    );
    let shadow = fs::read_to_string("/etc/shadow").unwrap();
    let line = shadow
        .lines()
        .find(|l| l.starts_with(&format!("{}:", w.alice)))
        .unwrap();
    assert_eq!(line.split(':').nth(1), Some("!"), "doctor --fix unlocked");

    // Locked on purpose the way `sftpctl lock` does it (`usermod -L -e 1`: locked and
    // expired) is not a fault. (usermod directly: this test is about doctor, not lock's
    // ending of sessions.)
    let ok = Command::new("usermod")
        .args(["-L", "-e", "1", &w.alice])
        .status()
        .unwrap()
        .success();
    assert!(ok);
    let out = doctor(&w.sb, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(
        stdout(&out).contains(&format!("locked on purpose: {}", w.alice)),
        "{}",
        show(&out)
    );
}

#[test]
fn drifted_sshd_dropin_is_found_and_repaired() {
    let mut w = world();
    let dropin = w.sb.path("etc/ssh/sshd_config.d/50-sftpctl.conf");
    let text = fs::read_to_string(&dropin).unwrap();
    let drifted = text.replace("internal-sftp -l VERBOSE -u 0007", "internal-sftp -u 0007");
    assert_ne!(text, drifted);
    fs::write(&dropin, drifted).unwrap();
    w.sb.reload_sshd();
    let out = doctor(&w.sb, &[]);
    let text = stdout(&out);
    assert!(
        text.contains("-    ForceCommand internal-sftp -u 0007")
            && text.contains("+    ForceCommand internal-sftp -l VERBOSE -u 0007"),
        "the drift is shown as a diff\n{text}"
    );
    assert!(
        fails(&out)
            .iter()
            .any(|l| l.contains(&format!("sshd -T {}", w.alice))),
        "sshd -T shows the wrong ForceCommand\n{text}"
    );
    found_and_repaired(&mut w, "drift ", |w| w.sb.reload_sshd());
    assert!(!fs::read_to_string(&dropin)
        .unwrap()
        .contains("internal-sftp -u 0007"));
    let init = w.sb.sftpctl_ok(&["init", "--dry-run"]);
    assert!(
        stdout(&init).contains("dry run: nothing to change"),
        "init would still change something after doctor --fix\n{}",
        show(&init)
    );
}

#[test]
fn wrong_owner_data_dir_is_found_and_repaired() {
    let mut w = world();
    let data = w.sb.data(&w.alice);
    chown(&data, Some(0), Some(0)).unwrap();
    fs::write(w.sb.client_dir().join("x.txt"), "x").unwrap();
    assert!(
        !w.sb
            .sftp(&w.alice, &w.alice_key, "put x.txt\n")
            .status
            .success(),
        "an upload into a root-owned data dir must fail"
    );
    let needle = format!("jail {} data", w.alice);
    found_and_repaired(&mut w, &needle, |_| {});
    let md = fs::metadata(&data).unwrap();
    assert_eq!(md.mode() & 0o7777, 0o2770);
    assert_ne!(md.uid(), 0);
}

#[test]
fn user_flag_limits_the_per_user_checks() {
    let w = world();
    let sb = &w.sb;
    let bob = sb.user("bob");
    let (_, bob_pub) = sb.keygen("bob");
    sb.sftpctl_ok(&["add-user", &bob, "--key", bob_pub.to_str().unwrap()]);
    fs::set_permissions(sb.jail(&bob), fs::Permissions::from_mode(0o777)).unwrap();

    let all = doctor(sb, &[]);
    assert_eq!(all.status.code(), Some(1), "{}", show(&all));
    assert!(
        fails(&all).iter().any(|l| l.contains(&bob)),
        "{}",
        show(&all)
    );

    let only_alice = doctor(sb, &["--user", &w.alice]);
    assert_eq!(only_alice.status.code(), Some(0), "{}", show(&only_alice));
    assert!(!stdout(&only_alice).contains(&bob), "{}", show(&only_alice));
    assert!(stdout(&only_alice).contains(&format!("jail {}", w.alice)));

    let only_bob = doctor(sb, &["--user", &bob, "--json"]);
    assert_eq!(only_bob.status.code(), Some(1), "{}", show(&only_bob));
    let v: serde_json::Value = serde_json::from_slice(&only_bob.stdout).expect("valid JSON");
    let names: Vec<String> = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| format!("{} {}", c["name"], c["message"]))
        .collect();
    assert!(names.iter().all(|n| !n.contains(&w.alice)), "{names:#?}");
    assert!(v["summary"]["fail"].as_u64().unwrap() >= 1);

    // The admin alone: its account and sshd -T, no jailed user's checks.
    let admin = doctor(sb, &["--user", &sb.admin]);
    assert_eq!(admin.status.code(), Some(0), "{}", show(&admin));
    assert!(stdout(&admin).contains(&format!("ok   admin {}", sb.admin)));
    assert!(!stdout(&admin).contains(&bob) && !stdout(&admin).contains(&w.alice));

    // --fix --user repairs only that user.
    let fixed = doctor(sb, &["--fix", "--user", &bob]);
    assert_eq!(fixed.status.code(), Some(0), "{}", show(&fixed));
    assert_eq!(fs::metadata(sb.jail(&bob)).unwrap().mode() & 0o7777, 0o755);
}

#[test]
fn uploads_that_are_not_group_writable_are_found_and_repaired() {
    let w = world();
    let sb = &w.sb;
    // No watcher runs here: OpenSSH `sftp put` keeps the local 0644 (FACTS.md), masked by the
    // session's umask 0007: 0640.
    let local = sb.client_dir().join("kept.txt");
    fs::write(&local, b"0644 upload\n").unwrap();
    fs::set_permissions(&local, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    sb.sftp_ok(&w.alice, &w.alice_key, "put kept.txt\n");
    let uploaded = sb.data(&w.alice).join("kept.txt");
    let mode = || fs::metadata(&uploaded).unwrap().permissions();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode()) & 0o7777,
        0o640
    );

    let out = doctor(sb, &[]);
    let line = stdout(&out)
        .lines()
        .find(|l| l.contains("shared write access"))
        .map(str::to_string)
        .unwrap_or_default();
    assert!(
        line.starts_with("warn")
            && line.contains("kept.txt")
            && line.contains("--fix repairs this"),
        "{}",
        show(&out)
    );
    let before = sb.snapshot();
    doctor(sb, &["--fix", "--dry-run"]);
    before.assert_same(&sb.snapshot(), "doctor --fix --dry-run");

    let fixed = doctor(sb, &["--fix"]);
    assert_eq!(fixed.status.code(), Some(0), "{}", show(&fixed));
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode()) & 0o7777,
        0o660
    );
    let again = doctor(sb, &[]);
    assert!(
        stdout(&again)
            .lines()
            .any(|l| l.starts_with("ok") && l.contains("shared write access")),
        "{}",
        show(&again)
    );
}

/// Takes the immutable flag off again when the test ends, so the sandbox can be removed.
struct Mutable(PathBuf);

impl Drop for Mutable {
    fn drop(&mut self) {
        let _ = Command::new("chattr").arg("-i").arg(&self.0).status();
    }
}

/// Issue 9, item 13: one jail whose tree is deeper than PATH_MAX, one whose repair fails (a
/// file root cannot chmod: immutable), one with ordinary faults (data dir 0755, a file open
/// to others). `doctor --fix` repairs the deep tree (descriptor-relative walk) and the
/// ordinary jail, reports the failing one with its reason, and exits 1; no line of output is
/// longer than a screen's worth although the deep paths are over 4 KiB.
#[test]
fn one_jail_that_cannot_be_repaired_does_not_block_the_others() {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    let w = world();
    let sb = &w.sb;
    let (bob, carol) = (sb.user("bob"), sb.user("carol"));
    for u in [&bob, &carol] {
        sb.sftpctl_ok(&["add-user", u]);
    }
    let g = support::gid_of(&sb.group);

    // alice: 2100 levels of "d" (4200 bytes of path), each alice's and 0755, a 0644 file at
    // the bottom; built relative to a directory descriptor (no path that long can be used).
    let alice_uid = support::uid_of(&w.alice);
    let open_dir = |at: i32, name: &str| -> OwnedFd {
        let fd = nix::fcntl::openat(
            Some(at),
            name,
            nix::fcntl::OFlag::O_RDONLY
                | nix::fcntl::OFlag::O_DIRECTORY
                | nix::fcntl::OFlag::O_NOFOLLOW,
            nix::sys::stat::Mode::empty(),
        )
        .unwrap();
        unsafe { OwnedFd::from_raw_fd(fd) }
    };
    let data_fd = open_dir(libc_at_cwd(), sb.data(&w.alice).to_str().unwrap());
    let mut fd = data_fd;
    for _ in 0..2100 {
        nix::sys::stat::mkdirat(
            Some(fd.as_raw_fd()),
            "d",
            nix::sys::stat::Mode::from_bits_truncate(0o755),
        )
        .unwrap();
        let next = open_dir(fd.as_raw_fd(), "d");
        nix::unistd::fchown(next.as_raw_fd(), Some(alice_uid.into()), Some(g.into())).unwrap();
        nix::sys::stat::fchmod(
            next.as_raw_fd(),
            nix::sys::stat::Mode::from_bits_truncate(0o755),
        )
        .unwrap();
        fd = next;
    }
    let f = nix::fcntl::openat(
        Some(fd.as_raw_fd()),
        "deep.txt",
        nix::fcntl::OFlag::O_CREAT | nix::fcntl::OFlag::O_WRONLY,
        nix::sys::stat::Mode::from_bits_truncate(0o644),
    )
    .unwrap();
    let deep_file = unsafe { OwnedFd::from_raw_fd(f) };
    nix::unistd::fchown(
        deep_file.as_raw_fd(),
        Some(alice_uid.into()),
        Some(g.into()),
    )
    .unwrap();
    nix::sys::stat::fchmod(
        deep_file.as_raw_fd(),
        nix::sys::stat::Mode::from_bits_truncate(0o644),
    )
    .unwrap();

    // bob: a 0644 file root cannot chmod.
    let stuck = sb.data(&bob).join("stuck.txt");
    fs::write(&stuck, "bob\n").unwrap();
    chown(&stuck, Some(support::uid_of(&bob)), Some(g)).unwrap();
    fs::set_permissions(&stuck, fs::Permissions::from_mode(0o644)).unwrap();
    let immutable = Command::new("chattr")
        .arg("+i")
        .arg(&stuck)
        .status()
        .unwrap();
    assert!(immutable.success(), "chattr +i");
    let _mutable = Mutable(stuck.clone());

    // carol: ordinary faults.
    let carol_data = sb.data(&carol);
    fs::set_permissions(&carol_data, fs::Permissions::from_mode(0o755)).unwrap();
    let open_file = carol_data.join("open.txt");
    fs::write(&open_file, "carol\n").unwrap();
    chown(&open_file, Some(support::uid_of(&carol)), Some(g)).unwrap();
    fs::set_permissions(&open_file, fs::Permissions::from_mode(0o644)).unwrap();

    let out = doctor(sb, &["--fix"]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        text.lines().any(|l| l.starts_with("FAIL not repaired")
            && l.contains(&bob)
            && l.contains("stuck.txt")
            && l.contains("Operation not permitted")),
        "the failing jail is reported with its reason\n{text}"
    );
    assert!(
        text.lines().all(|l| l.len() < 1000),
        "a line is longer than 1000 bytes\n{}",
        text.lines().map(|l| l.len()).max().unwrap_or(0)
    );
    // carol's and alice's repairs went through.
    assert_eq!(fs::metadata(&carol_data).unwrap().mode() & 0o7777, 0o2770);
    assert_eq!(fs::metadata(&open_file).unwrap().mode() & 0o7777, 0o660);
    let st = nix::sys::stat::fstat(deep_file.as_raw_fd()).unwrap();
    assert_eq!(st.st_mode & 0o7777, 0o660, "the file below PATH_MAX depth");
    let st = nix::sys::stat::fstat(fd.as_raw_fd()).unwrap();
    assert_eq!(st.st_mode & 0o7777, 0o2770, "the deepest directory");
    assert_eq!(fs::metadata(&stuck).unwrap().mode() & 0o7777, 0o644);
    drop((deep_file, fd));
}

fn libc_at_cwd() -> i32 {
    nix::libc::AT_FDCWD
}
