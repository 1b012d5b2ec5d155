//! Quota per client (docs/policy.md, "Quota"; issue 11 item 5) with the real sshd, OpenSSH
//! sftp, rsyslogd and the watcher: warnings at 80 % and 95 % once each, at 100 % the next
//! session cannot upload while downloads and deletes work and its report says why, uploads
//! again after deletes; usage counted without following a planted symlink, a hard link once;
//! bad quota values refused with nothing changed. Run as root.

mod support;
mod watch_common;

use std::fs;
use std::path::PathBuf;
use std::process::Output;

use serde_json::Value;
use support::{holds_within, show, stdout, Sandbox, DEADLINE};
use watch_common::text_of;

const K: usize = 1024;

struct World {
    sb: Sandbox,
    alice: String,
    key: PathBuf,
}

/// init with an admin, rsyslogd, alice with `quota=100K`, sshd, the watcher (reports and
/// notices go to the file transport's spool).
fn world() -> World {
    world_with(false)
}

/// [`world`]; `watcher_runs`: the watcher runs `policy run` itself after sessions (else only
/// the test does, so what each run finds is known).
fn world_with(watcher_runs: bool) -> World {
    let mut sb = Sandbox::new();
    sb.edit_config(
        "[mail]\n",
        &format!("[policy]\nwatcher_runs = {watcher_runs}\n\n[mail]\n"),
    );
    let admin = sb.admin.clone();
    sb.edit_config(
        "umask = \"0007\"",
        &format!("umask = \"0007\"\nadmin = \"{admin}\""),
    );
    sb.sftpctl_ok(&["init", "--admin", &admin]);
    sb.start_rsyslogd();
    let alice = sb.user("alice");
    let (key, key_pub) = sb.keygen("alice");
    sb.sftpctl_ok(&[
        "add-user",
        &alice,
        "--key",
        key_pub.to_str().unwrap(),
        "quota=100K",
    ]);
    sb.start_sshd();
    sb.start_watcher();
    World { sb, alice, key }
}

impl World {
    fn local(&self, name: &str, bytes: usize) {
        fs::write(self.sb.client_dir().join(name), vec![b'x'; bytes]).unwrap();
    }

    fn sftp(&self, script: &str) -> Output {
        self.sb.sftp(&self.alice, &self.key, script)
    }

    /// `sftpctl policy run` after the client's sessions. The watcher's hook marks a client
    /// after each of its sessions; the mark is made here too, so the run counts now and not
    /// only at the next `policy.rescan_minutes`.
    fn policy_run(&self) -> String {
        let dirty = self.sb.path("state/policy/dirty");
        fs::create_dir_all(&dirty).unwrap();
        fs::write(dirty.join(&self.alice), b"").unwrap();
        stdout(&self.sb.sftpctl_ok(&["policy", "run"]))
    }

    /// The `list-users --json` row of alice.
    fn row(&self) -> Value {
        let out = self.sb.sftpctl_ok(&["list-users", "--json"]);
        let rows: Vec<Value> = serde_json::from_str(&stdout(&out)).unwrap();
        rows.into_iter()
            .find(|r| r["name"] == self.alice.as_str())
            .expect("alice listed")
    }

    /// Names of the spooled notices whose id starts with `quota-LEVEL-`.
    fn notices(&self, level: &str) -> Vec<String> {
        let prefix = format!("notice-quota-{level}-{}-", self.alice);
        let mut names: Vec<String> = fs::read_dir(self.sb.path("spool"))
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(&prefix) && n.ends_with(".eml"))
            .collect();
        names.sort();
        names
    }

    fn mail(&self, file: &str) -> String {
        let raw = fs::read_to_string(self.sb.path("spool").join(file)).unwrap();
        let subject = raw
            .lines()
            .find(|l| l.starts_with("Subject:"))
            .unwrap_or("")
            .to_string();
        format!("{subject}\n{}", text_of(&raw))
    }

    /// Session reports (not notices) in the spool, as text.
    fn reports(&self) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(self.sb.path("spool"))
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".eml") && !n.starts_with("notice-"))
            .collect();
        names.sort();
        names.iter().map(|n| self.mail(n)).collect()
    }
}

#[test]
fn warnings_then_no_uploads_at_the_quota_then_uploads_again_after_deletes() {
    let mut w = world();
    let data = w.sb.data(&w.alice);

    // 85 %: one 80 % notice, and only one after a second run.
    w.local("a.bin", 85 * K);
    w.sftp_ok("put a.bin\n");
    // A dry run counts and says so, and records and sends nothing.
    let dry = stdout(&w.sb.sftpctl_ok(&["policy", "run", "--dry-run"]));
    assert!(dry.contains("85 %") && dry.contains("dry run"), "{dry}");
    assert!(!w
        .sb
        .path(&format!("state/policy/quota/{}.json", w.alice))
        .exists());
    assert!(w.notices("80").is_empty());
    assert_eq!(w.row()["quota_usage"], "not counted yet / 100K");
    let out = w.policy_run();
    assert!(out.contains("85 %"), "{out}");
    assert_eq!(w.notices("80").len(), 1, "{out}");
    assert!(w.notices("95").is_empty());
    let mail = w.mail(&w.notices("80")[0]);
    assert!(
        mail.contains(&format!("Quota of {} at 80 % (85.0 KiB of 100K)", w.alice)),
        "{mail}"
    );
    w.policy_run();
    assert_eq!(w.notices("80").len(), 1, "a second run told again");
    let row = w.row();
    assert_eq!(row["quota_used_bytes"], 85 * K);
    assert_eq!(row["quota_percent"], 85);
    assert_eq!(row["quota_full"], false);
    assert_eq!(row["quota_usage"], "85.0 KiB / 100K (85 %)");
    let table = stdout(&w.sb.sftpctl_ok(&["list-users"]));
    assert!(table.contains("quota 85.0 KiB / 100K (85 %)"), "{table}");

    // A symlink to a big file outside, planted over SFTP, and a hard link of a.bin: neither
    // adds to the usage.
    let outside = w.sb.path("outside-big.bin");
    fs::write(&outside, vec![0u8; 10 << 20]).unwrap();
    w.sftp_ok(&format!(
        "ln -s {} big-link\nln a.bin a-again.bin\n",
        outside.display()
    ));
    assert!(fs::symlink_metadata(data.join("big-link"))
        .unwrap()
        .file_type()
        .is_symlink());
    // 96 %: one 95 % notice.
    w.local("b.bin", 11 * K);
    w.sftp_ok("put b.bin\n");
    let out = w.policy_run();
    assert!(out.contains("96 %"), "{out}");
    assert_eq!(w.row()["quota_used_bytes"], 96 * K, "{out}");
    assert_eq!(w.notices("95").len(), 1);
    assert_eq!(w.notices("80").len(), 1);
    assert!(w.notices("full").is_empty());

    // Over 100 %: full, one notice, sshd's block re-rendered; the next session cannot upload
    // or make a directory.
    w.local("c.bin", 5 * K);
    w.sftp_ok("put c.bin\n");
    let out = w.policy_run();
    assert!(out.contains("full: uploads refused"), "{out}");
    assert_eq!(w.notices("full").len(), 1, "{out}");
    assert_eq!(w.row()["quota_full"], true);
    w.sb.reload_sshd();
    w.local("d.bin", K);
    let put = w.sftp("put d.bin\n");
    assert!(
        !put.status.success(),
        "upload at a full quota\n{}",
        show(&put)
    );
    let mkdir = w.sftp("mkdir more\n");
    assert!(
        !mkdir.status.success(),
        "mkdir at a full quota\n{}",
        show(&mkdir)
    );
    assert!(!data.join("more").exists());
    // The refused upload leaves at most an empty file (internal-sftp's open is one request
    // for reading and writing; its write requests are what is refused).
    let d = fs::metadata(data.join("d.bin"))
        .map(|m| m.len())
        .unwrap_or(0);
    assert_eq!(d, 0, "bytes of a refused upload arrived");
    // What docs/policy.md warns about: internal-sftp opens a file for writing with TRUNCATE
    // in one request, and only the writes after it are refused, so an upload over an
    // existing file at a full quota leaves it empty (the client's own file; it frees room).
    let over = w.sftp("put b.bin b.bin\n");
    assert!(!over.status.success(), "{}", show(&over));
    assert_eq!(fs::metadata(data.join("b.bin")).unwrap().len(), 0);
    w.local("b.bin", 11 * K);
    w.sftp_ok("rm b.bin\n");
    // The session report says why.
    let mut seen = Vec::new();
    let said = holds_within(DEADLINE, || {
        seen = w.reports();
        seen.iter()
            .any(|r| r.contains("NOTE: uploads refused: quota 100K reached (101.0 KiB used)."))
    });
    assert!(said, "no report says why:\n{}", seen.join("\n-----\n"));
    // Downloads and deletes work.
    w.sftp_ok("get a.bin a-back.bin\nrm c.bin\nrm d.bin\n");
    assert_eq!(
        fs::read(w.sb.client_dir().join("a-back.bin"))
            .unwrap()
            .len(),
        85 * K
    );

    // Below the quota again: uploads work in the next session.
    let out = w.policy_run();
    assert!(out.contains("85 %") && !out.contains("full"), "{out}");
    assert_eq!(w.row()["quota_full"], false);
    assert_eq!(w.notices("below").len(), 1, "{out}");
    w.sb.reload_sshd();
    w.sftp_ok("put d.bin\nmkdir more\n");
    assert_eq!(fs::metadata(data.join("d.bin")).unwrap().len(), K as u64);
    // Doctor agrees with the live sshd.
    let doctor = w.sb.sftpctl(&["doctor"]);
    let text = stdout(&doctor);
    assert!(
        text.lines().any(|l| l.starts_with("ok   quota:")),
        "{}",
        show(&doctor)
    );
}

impl World {
    #[track_caller]
    fn sftp_ok(&self, script: &str) -> Output {
        self.sb.sftp_ok(&self.alice, &self.key, script)
    }
}

#[test]
fn bad_quota_values_are_refused_and_nothing_changes() {
    let mut w = world();
    w.sb.stop_watcher();
    let before = w.sb.snapshot();
    for bad in ["quota=5 G", "quota=0", "quota=5g", "quota=-1K"] {
        let out = w.sb.sftpctl(&["set", &w.alice, bad]);
        support::assert_fails_one_line(&out, 2);
        assert!(
            support::stderr(&out).contains("quota"),
            "{bad}: {}",
            show(&out)
        );
    }
    assert_eq!(w.sb.snapshot(), before, "a refused value changed something");
    assert_eq!(w.row()["quota_bytes"], 100 * K);
}

#[test]
fn doctor_fails_when_sshd_still_allows_uploads_of_a_full_client_and_fix_repairs() {
    let w = world();
    w.local("a.bin", 101 * K);
    w.sftp_ok("put a.bin\n");
    let dropin = w.sb.path("etc/ssh/sshd_config.d/50-sftpctl.conf");
    let rendered_before = fs::read_to_string(&dropin).unwrap();
    w.policy_run();
    let rendered_full = fs::read_to_string(&dropin).unwrap();
    assert_ne!(
        rendered_before, rendered_full,
        "no block rendered at the quota"
    );
    // The attack: someone puts the old file back (or a render was lost).
    fs::write(&dropin, &rendered_before).unwrap();
    let doctor = w.sb.sftpctl(&["doctor"]);
    let text = stdout(&doctor);
    assert!(
        text.lines().any(|l| l.starts_with("FAIL quota ")
            && l.contains("the quota is full but sshd still lets the client upload")),
        "{}",
        show(&doctor)
    );
    let fix = w.sb.sftpctl_ok(&["doctor", "--fix"]);
    assert!(
        stdout(&fix).contains("render sshd") || stdout(&fix).contains("50-sftpctl.conf"),
        "{}",
        show(&fix)
    );
    assert_eq!(fs::read_to_string(&dropin).unwrap(), rendered_full);
    let text = stdout(&w.sb.sftpctl(&["doctor"]));
    assert!(text.lines().any(|l| l.starts_with("ok   quota:")), "{text}");

    // Raising the quota lets uploads in at once: `set` renders with the new quota against
    // the last count, without waiting for the next run.
    w.sb.sftpctl_ok(&["set", &w.alice, "quota=1M"]);
    let raised = fs::read_to_string(&dropin).unwrap();
    assert!(!raised.contains("-P write"), "{raised}");
    assert_eq!(w.row()["quota_full"], false);
    let out = w.policy_run();
    assert!(out.contains("(9 %)"), "{out}");
    assert_eq!(w.notices("below").len(), 1, "{out}");
    assert_eq!(fs::read_to_string(&dropin).unwrap(), raised);
    // The reverse: the no-write block of a client that is not full.
    fs::write(&dropin, &rendered_full).unwrap();
    let text = stdout(&w.sb.sftpctl(&["doctor"]));
    assert!(
        text.lines().any(|l| l.starts_with("FAIL quota ")
            && l.contains("the quota is not full but sshd refuses the client's uploads")),
        "{text}"
    );
    w.sb.sftpctl(&["doctor", "--fix"]);
    assert_eq!(fs::read_to_string(&dropin).unwrap(), raised);
}

/// Nobody runs `policy run` here: the watcher marks alice after her session and, systemd not
/// being PID 1, runs the jobs itself — the 80 % notice arrives, and at 100 % sshd's block
/// refuses her next upload (the sandbox's sshd has `sshd.reload = []`: reloaded by hand).
#[test]
fn the_watcher_runs_the_policy_jobs_after_a_session() {
    let mut w = world_with(true);
    w.local("a.bin", 85 * K);
    let out = w.sftp("put a.bin\n");
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        holds_within(DEADLINE, || w.notices("80").len() == 1),
        "no 80 % notice without an explicit policy run; watcher log:\n{}",
        fs::read_to_string(w.sb.path("state/watch.log")).unwrap_or_default()
    );
    w.local("b.bin", 20 * K);
    let out = w.sftp("put b.bin\n");
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        holds_within(DEADLINE, || w.notices("full").len() == 1),
        "not full without an explicit policy run: {}",
        w.row()
    );
    assert_eq!(w.row()["quota_full"], true);
    assert!(
        holds_within(DEADLINE, || !w
            .sb
            .path("state/policy/dirty")
            .join(&w.alice)
            .exists()),
        "the mark was not taken"
    );
    w.sb.reload_sshd();
    w.local("c.bin", K);
    let put = w.sftp("put c.bin\n");
    assert!(
        !put.status.success(),
        "upload at a full quota\n{}",
        show(&put)
    );
}
