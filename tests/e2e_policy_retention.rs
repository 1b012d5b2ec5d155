//! End-to-end tests of retention (issue 11, item 4) with the real sshd, sftp client and
//! rsyslogd: the client plants its files (and symlinks) over SFTP, root backdates their
//! modification time with `touch -m -d`, then `sftpctl policy run` / `sftpctl retention` run
//! as they do on a host. Each attack (links to outside files, a directory swapped for a
//! symlink during the walk, hostile names in mails) is performed and shown to fail. Run as
//! root.

mod support;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use support::{assert_fails_one_line, run_with_timeout, show, stdout, uid_of, Sandbox};

const DAY: i64 = 86_400;

struct World {
    sb: Sandbox,
    alice: String,
    alice_key: PathBuf,
    bob: String,
    admin_key: PathBuf,
}

/// init with an admin, `[policy] retention_warn_days = WARN`, rsyslogd, sshd, client alice
/// (`retention=30d` plus `settings`) with a key, and a second client bob.
fn world(warn_days: u32, settings: &[&str]) -> World {
    let mut sb = Sandbox::new();
    let admin = sb.admin.clone();
    sb.edit_config(
        "umask = \"0007\"",
        &format!("umask = \"0007\"\nadmin = \"{admin}\""),
    );
    let text = fs::read_to_string(&sb.config).unwrap();
    sb.set_config(&format!(
        "{text}\n[policy]\nretention_warn_days = {warn_days}\nwatcher_runs = false\n"
    ));
    let (admin_key, admin_pub) = sb.keygen("admin");
    sb.sftpctl_ok(&["init", "--admin-key", admin_pub.to_str().unwrap()]);
    sb.start_rsyslogd();
    let alice = sb.user("alice");
    let (alice_key, alice_pub) = sb.keygen("alice");
    let mut args = vec![
        "add-user",
        &alice,
        "--key",
        alice_pub.to_str().unwrap(),
        "retention=30d",
    ];
    args.extend_from_slice(settings);
    sb.sftpctl_ok(&args);
    let bob = sb.user("bob");
    sb.sftpctl_ok(&["add-user", &bob]);
    sb.start_sshd();
    World {
        sb,
        alice,
        alice_key,
        bob,
        admin_key,
    }
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Sets the last modification (only) of `path`, not following a symlink, as root.
fn backdate(path: &Path, days: i64) {
    set_mtime(path, now() - days * DAY);
}

fn set_mtime(path: &Path, unix: i64) {
    let out = run_with_timeout(
        Command::new("touch")
            .args(["-h", "-m", "-d"])
            .arg(format!("@{unix}"))
            .arg(path),
        b"",
        support::DEADLINE,
    );
    assert!(
        out.status.success(),
        "touch {}\n{}",
        path.display(),
        show(&out)
    );
}

fn mtime(path: &Path) -> i64 {
    fs::symlink_metadata(path).unwrap().mtime()
}

fn exists(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok()
}

fn local(sb: &Sandbox, name: &str, text: &str) {
    fs::write(sb.client_dir().join(name), text).unwrap();
}

/// A root-made file owned by `user` (what the client could have uploaded).
fn plant(path: &Path, text: &str, user: &str, days_old: i64) {
    fs::write(path, text).unwrap();
    std::os::unix::fs::chown(path, Some(uid_of(user)), None).unwrap();
    backdate(path, days_old);
}

/// [`plant`] for many files: no `touch` process each.
fn plant_fast(path: &Path, uid: u32, days_old: i64) {
    let f = fs::File::create(path).unwrap();
    std::os::unix::fs::fchown(&f, Some(uid), None).unwrap();
    f.set_modified(filetime(now() - days_old * DAY)).unwrap();
}

struct Mail {
    name: String,
    subject: String,
    to: String,
    text: String,
    raw: Vec<u8>,
}

/// Every notice in the spool (`notice-*.eml`), decoded by Python's email module.
fn notices(sb: &Sandbox) -> Vec<Mail> {
    let mut paths: Vec<PathBuf> = fs::read_dir(sb.path("spool"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    paths.retain(|p| {
        p.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("notice-retention") && n.ends_with(".eml"))
    });
    paths.sort();
    paths
        .iter()
        .map(|p| {
            let part = |what: &str| -> String {
                let script = format!(
                    "import email, sys\nfrom email import policy\n\
                     m = email.message_from_binary_file(open(sys.argv[1], 'rb'), policy=policy.default)\n\
                     sys.stdout.write({what})\n"
                );
                let out = run_with_timeout(
                    Command::new("/usr/bin/python3")
                        .arg("-c")
                        .arg(script)
                        .arg(p),
                    b"",
                    support::DEADLINE,
                );
                assert!(out.status.success(), "decode {}\n{}", p.display(), show(&out));
                String::from_utf8(out.stdout).unwrap()
            };
            Mail {
                name: p.file_name().unwrap().to_string_lossy().into_owned(),
                subject: part("str(m['subject'])"),
                to: part("str(m['to'])"),
                text: part("m.get_body(('plain',)).get_content()"),
                raw: fs::read(p).unwrap(),
            }
        })
        .collect()
}

#[test]
fn old_files_go_new_and_foreign_ones_stay_and_a_download_does_not_keep_a_file() {
    let w = world(0, &[]);
    let sb = &w.sb;
    let data = sb.data(&w.alice);
    for n in ["old.txt", "new.txt", "old2.txt", "read.txt", "admin.txt"] {
        local(sb, n, &format!("{n}\n"));
    }
    sb.sftp_ok(
        &w.alice,
        &w.alice_key,
        "put old.txt\nput new.txt\nput read.txt\nmkdir sub\nput old2.txt sub/old2.txt\n",
    );
    sb.sftp_ok(
        &sb.admin,
        &w.admin_key,
        &format!("put admin.txt {}\n", data.join("admin.txt").display()),
    );
    for p in ["old.txt", "sub/old2.txt", "read.txt", "admin.txt", "sub"] {
        backdate(&data.join(p), 40);
    }
    plant(&data.join("root.txt"), "root\n", "root", 40);
    plant(&data.join("bob.txt"), "bob\n", &w.bob, 40);
    // A download long after the last modification: the access time is now, the clock is not
    // reset.
    sb.sftp_ok(&w.alice, &w.alice_key, "get read.txt read-back.txt\n");
    let md = fs::metadata(data.join("read.txt")).unwrap();
    assert!(
        md.atime() > now() - 3600,
        "the download did not touch atime"
    );
    assert!(md.mtime() < now() - 39 * DAY);

    let before = sb.snapshot();
    let dry = sb.sftpctl_ok(&["retention", "--dry-run", &w.alice]);
    before.assert_same(&sb.snapshot(), "retention --dry-run");
    let job_dry = sb.sftpctl_ok(&["policy", "run", "--dry-run"]);
    before.assert_same(&sb.snapshot(), "policy run --dry-run");
    assert!(
        stdout(&job_dry).contains("would delete 4 file(s)"),
        "{}",
        show(&job_dry)
    );
    let dry_text = stdout(&dry);
    for gone in ["old.txt", "sub/old2.txt", "read.txt", "admin.txt"] {
        assert!(
            dry_text.contains(&format!("would delete {}", data.join(gone).display())),
            "{gone} not listed\n{dry_text}"
        );
    }
    for kept in ["new.txt", "root.txt", "bob.txt"] {
        assert!(!dry_text.contains(kept), "{kept} listed\n{dry_text}");
    }

    let out = sb.sftpctl_ok(&["policy", "run"]);
    let text = stdout(&out);
    for gone in ["old.txt", "sub/old2.txt", "read.txt", "admin.txt"] {
        assert!(!exists(&data.join(gone)), "{gone} kept\n{text}");
    }
    for kept in ["new.txt", "root.txt", "bob.txt", "sub"] {
        assert!(exists(&data.join(kept)), "{kept} deleted\n{text}");
    }
    let mails = notices(sb);
    assert_eq!(
        mails.len(),
        1,
        "{:?}",
        mails.iter().map(|m| &m.name).collect::<Vec<_>>()
    );
    let report = &mails[0];
    assert_eq!(
        report.subject,
        format!("Retention: 4 file(s) of {} deleted", w.alice)
    );
    for gone in ["old.txt", "sub/old2.txt", "read.txt", "admin.txt"] {
        assert!(report.text.contains(gone), "{gone}\n{}", report.text);
    }
    assert!(
        !report.to.contains("client"),
        "no client copy: {}",
        report.to
    );

    // Once a day: the job does nothing more today, and a second run now finds nothing.
    let again = sb.sftpctl_ok(&["policy", "run"]);
    assert!(!stdout(&again).contains("retention"), "{}", show(&again));
    let now_again = sb.sftpctl_ok(&["retention", &w.alice]);
    assert!(
        stdout(&now_again).contains("deleted 0 file(s)"),
        "{}",
        show(&now_again)
    );
    assert_eq!(notices(sb).len(), 1);
}

#[test]
fn symlinks_and_hard_links_to_outside_files_are_never_followed() {
    let w = world(0, &[]);
    let sb = &w.sb;
    let data = sb.data(&w.alice);
    // Outside the jail, owned by the client itself (the worst case), long unmodified.
    let outside = sb.path("outside");
    fs::create_dir_all(outside.join("dir")).unwrap();
    plant(&outside.join("secret.txt"), "secret\n", &w.alice, 400);
    plant(&outside.join("dir/inner.txt"), "inner\n", &w.alice, 400);
    plant(&outside.join("bobs.txt"), "bobs\n", &w.bob, 400);
    plant(&outside.join("alices.txt"), "alices\n", &w.alice, 400);
    backdate(&outside.join("dir"), 400);
    sb.sftp_ok(
        &w.alice,
        &w.alice_key,
        &format!(
            "ln -s {secret} link-file\nln -s {dir} link-dir\nln -s /etc/passwd link-etc\nln -s {secret} link-old\n",
            secret = outside.join("secret.txt").display(),
            dir = outside.join("dir").display(),
        ),
    );
    assert_eq!(
        fs::read_link(data.join("link-dir")).unwrap(),
        outside.join("dir"),
        "sftp made the link as asked"
    );
    assert_eq!(
        fs::symlink_metadata(data.join("link-file")).unwrap().uid(),
        uid_of(&w.alice)
    );
    backdate(&data.join("link-old"), 40);
    // Hard links (root plants them: a client cannot reach outside its chroot).
    fs::hard_link(outside.join("bobs.txt"), data.join("hard-bob.txt")).unwrap();
    fs::hard_link(outside.join("alices.txt"), data.join("hard-alice.txt")).unwrap();

    let out = sb.sftpctl_ok(&["retention", &w.alice]);
    let text = stdout(&out);
    for (p, content) in [
        ("secret.txt", "secret\n"),
        ("dir/inner.txt", "inner\n"),
        ("bobs.txt", "bobs\n"),
        ("alices.txt", "alices\n"),
    ] {
        assert_eq!(
            fs::read_to_string(outside.join(p)).unwrap(),
            content,
            "{p} outside\n{text}"
        );
    }
    assert!(fs::read_to_string("/etc/passwd").unwrap().contains("root:"));
    for kept in ["link-file", "link-dir", "link-etc", "hard-bob.txt"] {
        assert!(exists(&data.join(kept)), "{kept} deleted\n{text}");
    }
    // The client's own old link and its name of the hard-linked file go; nothing else.
    assert!(!exists(&data.join("link-old")), "{text}");
    assert!(text.contains("deleted symlink"), "{text}");
    assert!(!exists(&data.join("hard-alice.txt")), "{text}");
    assert_eq!(fs::metadata(outside.join("alices.txt")).unwrap().nlink(), 1);
    assert_eq!(fs::metadata(outside.join("bobs.txt")).unwrap().nlink(), 2);
}

#[test]
fn a_directory_swapped_for_a_symlink_during_the_walk_never_leads_outside() {
    let w = world(0, &[]);
    let sb = &w.sb;
    let data = sb.data(&w.alice);
    let bait = sb.path("bait");
    fs::create_dir_all(bait.join("d")).unwrap();
    for i in 0..200 {
        plant_fast(&bait.join(format!("f{i}")), uid_of(&w.alice), 400);
        plant_fast(&bait.join(format!("d/f{i}")), uid_of(&w.alice), 400);
    }
    fs::create_dir(data.join("d")).unwrap();
    std::os::unix::fs::chown(data.join("d"), Some(uid_of(&w.alice)), None).unwrap();
    std::os::unix::fs::symlink(&bait, data.join("lnk")).unwrap();
    std::os::unix::fs::symlink(&bait, data.join("d/lnk")).unwrap();
    let mut deleted = 0;
    for round in 0..4 {
        // Many old files under d (in subdirectories, so the walk goes up and down).
        for i in 0..1500 {
            let dir = data.join(format!("d/s{}", i % 30));
            fs::create_dir_all(&dir).unwrap();
            plant_fast(&dir.join(format!("r{round}-{i}")), uid_of(&w.alice), 40);
        }
        // The client's loop: d and the link to outside trade places, as fast as it can.
        let stop = Arc::new(AtomicBool::new(false));
        let swaps = {
            let (stop, data) = (stop.clone(), data.clone());
            std::thread::spawn(move || {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let _ = fs::rename(data.join("d"), data.join("away"));
                    let _ = fs::rename(data.join("lnk"), data.join("d"));
                    let _ = fs::rename(data.join("d"), data.join("lnk"));
                    let _ = fs::rename(data.join("away"), data.join("d"));
                    n += 1;
                }
                n
            })
        };
        let out = sb.sftpctl(&["retention", &w.alice]);
        stop.store(true, Ordering::Relaxed);
        let n = swaps.join().unwrap();
        assert!(n > 10, "the swap loop barely ran ({n})");
        let text = stdout(&out);
        deleted += text.matches(" deleted /").count();
        for line in text.lines().filter(|l| l.contains(" deleted /")) {
            assert!(
                line.contains(&data.display().to_string()),
                "deleted outside the data dir: {line}"
            );
        }
        let left = walkdir::WalkDir::new(&bait)
            .into_iter()
            .flatten()
            .filter(|e| e.file_type().is_file())
            .count();
        assert_eq!(
            left,
            400,
            "round {round}: bait files deleted\n{}",
            show(&out)
        );
    }
    assert!(deleted > 0, "the walk deleted nothing in the tree");
}

#[test]
fn the_warning_lists_files_days_before_and_the_report_lists_what_went() {
    let w = world(7, &["notify_client=true", "email=alice@client.example"]);
    let sb = &w.sb;
    let data = sb.data(&w.alice);
    for n in ["a.txt", "b.txt", "c.txt"] {
        local(sb, n, n);
    }
    sb.sftp_ok(&w.alice, &w.alice_key, "put a.txt\nput b.txt\nput c.txt\n");
    let evil = "evil\x1b[2J\nSubject: you won\u{202e}txt.exe";
    plant(&data.join(evil), "evil", &w.alice, 25);
    backdate(&data.join("a.txt"), 25); // in the warning window (30 - 7 = 23 days)
    backdate(&data.join("b.txt"), 40); // already past 30 days, never announced
    backdate(&data.join("c.txt"), 10); // not yet in the window
    let escaped = "evil\\u{1b}[2J\\nSubject: you won<U+202E>txt.exe";

    let out = sb.sftpctl_ok(&["policy", "run"]);
    for n in ["a.txt", "b.txt", "c.txt"] {
        assert!(
            exists(&data.join(n)),
            "{n} deleted without a warning\n{}",
            show(&out)
        );
    }
    assert!(exists(&data.join(evil)));
    let mails = notices(sb);
    assert_eq!(mails.len(), 1, "{}", show(&out));
    let warning = &mails[0];
    let day = |days_from_now: i64| {
        let d = (now() + days_from_now * DAY).div_euclid(DAY);
        let out = Command::new("date")
            .args(["-u", "-d"])
            .arg(format!("@{}", d * DAY))
            .arg("+%F")
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    assert_eq!(
        warning.subject,
        format!(
            "Retention: 3 file(s) of {} will be deleted from {}",
            w.alice,
            day(7)
        )
    );
    let line_of = |name: &str| {
        warning
            .text
            .lines()
            .find(|l| l.ends_with(name))
            .unwrap_or_else(|| panic!("{name} not listed\n{}", warning.text))
            .to_string()
    };
    // Nothing goes without a warning 7 days before: files that entered the window before
    // this first run (a.txt) or are past their time already (b.txt) get the full 7 days.
    for n in ["a.txt", "b.txt", escaped] {
        assert!(line_of(n).contains(&day(7)), "{n}\n{}", warning.text);
    }
    assert!(!warning.text.contains("c.txt"), "{}", warning.text);
    assert!(!warning.raw.contains(&0x1b), "a raw escape in the mail");
    assert!(!warning.text.lines().any(|l| l.starts_with("Subject:")));
    assert!(
        warning.to.contains("alice@client.example"),
        "{}",
        warning.to
    );
    assert!(warning.to.contains("root@localhost"), "{}", warning.to);

    // Each file is announced once: another run lists nothing new and deletes nothing.
    let out = sb.sftpctl_ok(&["retention", &w.alice]);
    assert_eq!(notices(sb).len(), 1, "{}", show(&out));
    assert!(exists(&data.join("b.txt")));

    // A week goes by: every file is 7 days older, and so is the day it was announced.
    // (The state names each file version by inode and modification time: both shift.)
    for n in ["a.txt", "b.txt", "c.txt", evil] {
        let p = data.join(n);
        set_mtime(&p, mtime(&p) - 7 * DAY);
    }
    let state = sb.path("state/policy/retention/announced").join(&w.alice);
    let shifted: String = fs::read_to_string(&state)
        .unwrap()
        .lines()
        .map(|l| {
            let f: Vec<i64> = l.split(' ').map(|x| x.parse().unwrap()).collect();
            format!("{} {} {} {}\n", f[0] - 7, f[1], f[2] - 7 * DAY, f[3])
        })
        .collect();
    fs::write(&state, shifted).unwrap();

    let out = sb.sftpctl_ok(&["retention", &w.alice]);
    for n in ["a.txt", "b.txt", evil] {
        assert!(!exists(&data.join(n)), "{n:?} kept\n{}", show(&out));
    }
    assert!(exists(&data.join("c.txt")), "c.txt deleted\n{}", show(&out));
    assert!(
        !stdout(&out).contains('\x1b'),
        "a raw escape on the terminal"
    );
    let mails = notices(sb);
    assert_eq!(mails.len(), 2, "{}", show(&out));
    let report = mails
        .iter()
        .find(|m| m.name.contains("retention-done"))
        .expect("a report");
    assert_eq!(
        report.subject,
        format!("Retention: 3 file(s) of {} deleted", w.alice)
    );
    for n in ["a.txt", "b.txt", escaped] {
        assert!(report.text.contains(n), "{n}\n{}", report.text);
    }
    assert!(!report.text.contains("c.txt"));
    assert!(!report.raw.contains(&0x1b));
    assert!(report.to.contains("alice@client.example"), "{}", report.to);
}

#[test]
fn bad_names_are_refused_in_one_line_and_change_nothing() {
    let w = world(0, &[]);
    let sb = &w.sb;
    plant(&sb.data(&w.alice).join("old"), "x", &w.alice, 40);
    let before = sb.snapshot();
    for args in [
        vec!["retention", "nosuchuser"],
        vec!["retention", "Bad/Name"],
        vec!["retention", "--dry-run", &w.alice, "root"],
        vec!["retention", &w.alice, &sb.admin],
    ] {
        let out = sb.sftpctl(&args);
        assert_fails_one_line(&out, 2);
    }
    let out = sb.sftpctl_as_nobody(&["retention", "--dry-run"]);
    assert_fails_one_line(&out, 2);
    before.assert_same(&sb.snapshot(), "refused retention");
}

/// Also the measurement in docs/policy.md: printed, never asserted.
#[test]
fn a_tree_of_100k_files_is_walked_quickly_and_its_mail_stays_short() {
    let w = world(0, &[]);
    let sb = &w.sb;
    let data = sb.data(&w.alice);
    let uid = uid_of(&w.alice);
    let old = filetime(now() - 40 * DAY);
    let t0 = Instant::now();
    for d in 0..100 {
        let dir = data.join(format!("d{d:03}"));
        fs::create_dir(&dir).unwrap();
        std::os::unix::fs::chown(&dir, Some(uid), None).unwrap();
        for i in 0..1000 {
            let p = dir.join(format!("file-{i:04}.dat"));
            let f = fs::File::create(&p).unwrap();
            std::os::unix::fs::fchown(&f, Some(uid), None).unwrap();
            if i % 2 == 0 {
                f.set_modified(old).unwrap();
            }
        }
    }
    fs::set_permissions(&data, fs::Permissions::from_mode(0o2770)).unwrap();
    eprintln!("built 100,000 files in {:.1} s", t0.elapsed().as_secs_f64());

    let time = |cmd: &mut Command| {
        let t = Instant::now();
        let out = run_with_timeout(cmd, b"", Duration::from_secs(120));
        (t.elapsed().as_secs_f64(), out)
    };
    let mut find = Command::new("sh");
    find.arg("-c")
        .arg(format!("find {} -type f | wc -l", data.display()));
    let (t_find, out) = time(&mut find);
    assert_eq!(stdout(&out).trim(), "100000");
    let mut dry = Command::new(support::SFTPCTL);
    dry.arg("--config")
        .arg(&sb.config)
        .args(["retention", "--dry-run", &w.alice]);
    let (t_dry, out) = time(&mut dry);
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(stdout(&out).matches("would delete /").count(), 50_000);
    let (t_find2, _) = time(&mut find);
    let mut real = Command::new(support::SFTPCTL);
    real.arg("--config")
        .arg(&sb.config)
        .args(["retention", &w.alice]);
    let (t_real, out) = time(&mut real);
    assert!(out.status.success(), "{}", show(&out));
    let t_find = t_find.min(t_find2);
    eprintln!(
        "MEASURED 100,000 files in 100 dirs, half of them due: `find -type f | wc -l` {t_find:.2} s, \
         `sftpctl retention --dry-run` {t_dry:.2} s ({:.1}x), deleting 50,000: {t_real:.2} s ({:.1}x)",
        t_dry / t_find,
        t_real / t_find
    );
    // The walk alone: 50,000 files left, none due, nothing printed.
    let (t_walk, out) = time(&mut dry);
    assert!(!stdout(&out).contains("would delete /"), "{}", show(&out));
    let (t_find3, _) = time(&mut find);
    eprintln!(
        "MEASURED 50,000 files none due: `find -type f | wc -l` {t_find3:.2} s, `sftpctl retention --dry-run` {t_walk:.2} s ({:.1}x)",
        t_walk / t_find3
    );
    let left = walkdir::WalkDir::new(&data)
        .into_iter()
        .flatten()
        .filter(|e| e.file_type().is_file())
        .count();
    assert_eq!(left, 50_000);
    let mails = notices(sb);
    assert_eq!(mails.len(), 1);
    let lines = mails[0].text.lines().count();
    eprintln!("MEASURED report mail of 50,000 deletions: {lines} lines");
    assert!(lines < 230, "{lines} lines in the report");
    assert!(
        mails[0].text.contains("... and 49800 more"),
        "{}",
        mails[0].text
    );
}

fn filetime(unix: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(unix as u64)
}
