//! Per-client access modes and address allow-lists (docs/policy.md, issue 11 items 1-2)
//! against the real sshd, rsyslogd, OpenSSH sftp, curl and the watcher: each mode allows
//! what it says and refuses the rest, a refused request is a failed request in the session
//! report, and a client with an allow-list is refused from any other address, with a key
//! and with a password, while the admin and other clients are not.

mod support;
mod watch_common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Command, Output};

use support::*;

const ALLOWED: &str = "127.0.0.1";
const OUTSIDE: &str = "127.0.0.2";

struct Client {
    name: String,
    key: PathBuf,
    key_pub: PathBuf,
}

/// init with an admin, rsyslogd, sshd (password logins on), and clients with keys.
struct World {
    sb: Sandbox,
    admin: Client,
}

fn world() -> World {
    let mut sb = Sandbox::new();
    let main = sb.path("etc/ssh/sshd_config");
    let text = fs::read_to_string(&main).unwrap();
    fs::write(
        &main,
        text.replace("PasswordAuthentication no", "PasswordAuthentication yes"),
    )
    .unwrap();
    let admin = sb.admin.clone();
    // In the config, as docs/admin-guide.md says: every later render of sshd's files (set,
    // doctor --fix) carries the admin's block only then.
    sb.edit_config("umask = ", &format!("admin = \"{admin}\"\numask = "));
    let (key, key_pub) = sb.keygen("admin");
    sb.sftpctl_ok(&[
        "init",
        "--admin",
        &admin,
        "--admin-key",
        key_pub.to_str().unwrap(),
    ]);
    sb.start_rsyslogd();
    sb.start_sshd();
    sb.start_watcher();
    World {
        sb,
        admin: Client {
            name: admin,
            key,
            key_pub,
        },
    }
}

impl World {
    fn client(&self, suffix: &str, settings: &[&str]) -> Client {
        let name = self.sb.user(suffix);
        let (key, key_pub) = self.sb.keygen(suffix);
        let mut args = vec!["add-user", &name, "--key", key_pub.to_str().unwrap()];
        args.extend_from_slice(settings);
        self.sb.sftpctl_ok(&args);
        Client { name, key, key_pub }
    }

    /// OpenSSH `sftp -b -` with a key from source address `from`.
    fn sftp_from(&self, c: &Client, from: &str, script: &str) -> Output {
        let mut cmd = Command::new("sftp");
        cmd.current_dir(self.sb.client_dir())
            .args(["-b", "-", "-F", "/dev/null", "-P"])
            .arg(self.sb.ssh_port.to_string())
            .arg("-i")
            .arg(&c.key)
            .args([
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "UserKnownHostsFile=/dev/null",
            ])
            .args(["-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes"])
            .args(["-o", "ConnectTimeout=5", "-o", "LogLevel=ERROR"])
            .arg("-o")
            .arg(format!("BindAddress={from}"))
            .arg(format!("{}@127.0.0.1", c.name));
        run_with_timeout(&mut cmd, script.as_bytes(), DEADLINE)
    }

    fn sftp(&self, c: &Client, script: &str) -> Output {
        self.sftp_from(c, ALLOWED, script)
    }

    /// curl's SFTP client (libssh2) with the key, or with `password`, from `from`.
    fn curl(&self, c: &Client, password: Option<&str>, from: &str, args: &[&str]) -> Output {
        let mut cmd = Command::new("curl");
        cmd.args(["-sS", "--fail", "--insecure", "--interface", from]);
        match password {
            Some(p) => {
                cmd.arg("--user").arg(format!("{}:{p}", c.name));
            }
            None => {
                cmd.arg("--key")
                    .arg(&c.key)
                    .arg("--pubkey")
                    .arg(&c.key_pub)
                    .arg("--user")
                    .arg(format!("{}:", c.name));
            }
        }
        cmd.args(args).current_dir(self.sb.client_dir());
        run_with_timeout(&mut cmd, b"", DEADLINE)
    }

    fn url(&self, path: &str) -> String {
        format!("sftp://127.0.0.1:{}/data/{path}", self.sb.ssh_port)
    }

    /// A file in the client's data dir, owned by it, as if uploaded earlier.
    fn seed(&self, c: &Client, name: &str, text: &str) -> PathBuf {
        let p = self.sb.data(&c.name).join(name);
        fs::write(&p, text).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o640)).unwrap();
        let (uid, gid) = (uid_of(&c.name), gid_of(&self.sb.group));
        std::os::unix::fs::chown(&p, Some(uid), Some(gid)).unwrap();
        p
    }

    fn local(&self, name: &str, text: &str) {
        fs::write(self.sb.client_dir().join(name), text).unwrap();
    }
}

fn ok(out: &Output, what: &str) {
    assert!(out.status.success(), "{what} failed\n{}", show(out));
}

fn refused(out: &Output, what: &str) {
    assert!(!out.status.success(), "{what} was allowed\n{}", show(out));
}

/// The text parts of the mailed session reports of `user`, waiting for `n` of them.
fn reports_of(w: &World, user: &str, n: usize) -> Vec<String> {
    let read = || -> Vec<String> {
        let mut paths: Vec<PathBuf> = fs::read_dir(w.sb.path("spool"))
            .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        paths.retain(|p| p.extension().is_some_and(|e| e == "eml"));
        paths.sort();
        paths
            .iter()
            .map(|p| watch_common::text_of(&fs::read_to_string(p).unwrap()))
            .filter(|t| t.contains(user))
            .collect()
    };
    let ok = holds_within(DEADLINE, || read().len() >= n);
    assert!(
        ok,
        "{n} report(s) of {user} expected, got {:?}\n--- log ---\n{}",
        read(),
        w.sb.log_lines().join("\n")
    );
    read()
}

/// sftp ran and a command of the script was refused (sftp -b stops there, but an `ls`
/// refused is only a message).
fn denied(out: &Output, what: &str) {
    assert!(
        !out.status.success() || stderr(out).contains("Permission denied"),
        "{what} was allowed\n{}",
        show(out)
    );
}

fn log_has(w: &World, needle: &str) {
    w.sb.wait_log_line(needle);
}

#[test]
fn read_only_lists_and_downloads_and_refuses_every_write() {
    let mut w = world();
    let c = w.client("ro", &["access=read-only"]);
    w.sb.reload_sshd();
    w.seed(&c, "report.pdf", "the report\n");
    w.local("up.txt", "upload\n");

    let out = w.sftp(&c, "ls -l\nget report.pdf got.pdf\n");
    ok(&out, "read-only ls + get");
    assert!(stdout(&out).contains("report.pdf"), "{}", show(&out));
    assert_eq!(
        fs::read_to_string(w.sb.client_dir().join("got.pdf")).unwrap(),
        "the report\n"
    );
    for (script, what) in [
        ("put up.txt\n", "put"),
        ("rm report.pdf\n", "rm"),
        ("mkdir d\n", "mkdir"),
        ("rename report.pdf other.pdf\n", "rename"),
    ] {
        denied(&w.sftp(&c, script), what);
    }
    ok(
        &w.curl(&c, None, ALLOWED, &["-o", "curl.pdf", &w.url("report.pdf")]),
        "curl get",
    );
    refused(
        &w.curl(&c, None, ALLOWED, &["-T", "up.txt", &w.url("up-curl.txt")]),
        "curl put",
    );
    refused(
        &w.curl(
            &c,
            None,
            ALLOWED,
            &["-Q", "rm /data/report.pdf", &w.url("")],
        ),
        "curl rm",
    );

    let data = w.sb.data(&c.name);
    assert!(data.join("report.pdf").exists() && !data.join("up.txt").exists());
    assert!(!data.join("d").exists() && !data.join("up-curl.txt").exists());
    log_has(&w, "Refusing open request in read-only mode");
    log_has(&w, "Refusing remove request in read-only mode");
    // the session with the refused put: its report names the refused upload and why
    let reports = reports_of(&w, &c.name, 3);
    let all = reports.join("\n");
    assert!(
        all.contains(
            "open for writing up.txt: Permission denied (refused: this client is read-only)"
        ),
        "{all}"
    );
    assert!(
        all.contains(
            "remove (name not logged): Permission denied (refused: this client is read-only)"
        ),
        "{all}"
    );
    assert!(!all.to_lowercase().contains("unreadable"), "{all}");
}

#[test]
fn upload_only_is_a_drop_box() {
    let mut w = world();
    let c = w.client("up", &["access=upload-only"]);
    w.sb.reload_sshd();
    let other = w.seed(&c, "others.pdf", "someone else's\n");
    w.local("up.txt", "upload\n");

    ok(
        &w.sftp(&c, "put up.txt\nmkdir inbox\nput up.txt inbox/up2.txt\n"),
        "put + mkdir",
    );
    ok(
        &w.curl(&c, None, ALLOWED, &["-T", "up.txt", &w.url("up-curl.txt")]),
        "curl put",
    );
    let data = w.sb.data(&c.name);
    for f in ["up.txt", "inbox/up2.txt", "up-curl.txt"] {
        assert_eq!(fs::read_to_string(data.join(f)).unwrap(), "upload\n", "{f}");
    }
    for (script, what) in [
        ("ls\n", "ls"),
        ("get others.pdf\n", "get"),
        ("rm others.pdf\n", "rm"),
        ("rmdir inbox\n", "rmdir"),
        ("rename others.pdf mine.pdf\n", "rename"),
        ("ln -s others.pdf link\n", "symlink"),
        ("ln others.pdf hard\n", "hardlink"),
    ] {
        denied(&w.sftp(&c, script), what);
    }
    // sftp makes the local file before it reads: it stays empty
    let got = fs::read_to_string(w.sb.client_dir().join("others.pdf")).unwrap_or_default();
    assert_eq!(got, "", "downloaded");
    refused(
        &w.curl(&c, None, ALLOWED, &["-o", "c.pdf", &w.url("others.pdf")]),
        "curl get",
    );
    refused(&w.curl(&c, None, ALLOWED, &[&w.url("")]), "curl ls");
    refused(
        &w.curl(
            &c,
            None,
            ALLOWED,
            &["-Q", "rm /data/others.pdf", &w.url("")],
        ),
        "curl rm",
    );
    assert_eq!(fs::read_to_string(&other).unwrap(), "someone else's\n");
    assert!(data.join("inbox").is_dir() && !data.join("mine.pdf").exists());
    assert!(!data.join("link").exists() && !data.join("hard").exists());
    log_has(&w, "Refusing non-allowlisted read request");
    log_has(&w, "Refusing non-allowlisted opendir request");

    let all = reports_of(&w, &c.name, 9).join("\n");
    let why = "Permission denied (refused: not allowed for this client (its access mode, or its quota is full))";
    for failed in [
        format!("list directory (name not logged): {why}"),
        format!("read (download) others.pdf: {why}"),
        format!("remove (name not logged): {why}"),
    ] {
        assert!(all.contains(&failed), "no {failed:?} in\n{all}");
    }
    // the uploads are reported as uploads, the hello's refused extensions not at all
    assert!(all.contains("up-curl.txt"), "{all}");
    assert!(!all.contains("statvfs") && !all.contains("limits"), "{all}");
    assert!(
        !all.contains("DOWNLOADED"),
        "a refused read is no download:\n{all}"
    );
}

#[test]
fn download_only_fetches_by_name_and_nothing_else() {
    let mut w = world();
    let c = w.client("down", &["access=download-only"]);
    w.sb.reload_sshd();
    w.seed(&c, "report.pdf", "the report\n");
    w.local("up.txt", "upload\n");

    ok(&w.sftp(&c, "get report.pdf got.pdf\n"), "get");
    ok(
        &w.curl(&c, None, ALLOWED, &["-o", "curl.pdf", &w.url("report.pdf")]),
        "curl get",
    );
    assert_eq!(
        fs::read_to_string(w.sb.client_dir().join("curl.pdf")).unwrap(),
        "the report\n"
    );
    for (script, what) in [
        ("ls\n", "ls"),
        ("put up.txt\n", "put"),
        ("rm report.pdf\n", "rm"),
        ("mkdir d\n", "mkdir"),
    ] {
        denied(&w.sftp(&c, script), what);
    }
    refused(&w.curl(&c, None, ALLOWED, &[&w.url("")]), "curl ls");
    refused(
        &w.curl(&c, None, ALLOWED, &["-T", "up.txt", &w.url("up.txt")]),
        "curl put",
    );
    let data = w.sb.data(&c.name);
    assert!(data.join("report.pdf").exists() && !data.join("up.txt").exists());
    log_has(&w, "Refusing non-allowlisted opendir request");
    let all = reports_of(&w, &c.name, 4).join("\n");
    assert!(
        all.contains("list directory (name not logged): Permission denied"),
        "{all}"
    );
}

fn sftpctl_stdin(sb: &Sandbox, args: &[&str], input: &str) -> Output {
    let mut cmd = Command::new(SFTPCTL);
    cmd.arg("--config").arg(&sb.config).args(args);
    run_with_timeout(&mut cmd, input.as_bytes(), DEADLINE)
}

#[test]
fn allow_list_refuses_other_addresses_for_keys_and_passwords() {
    let mut w = world();
    let c = w.client("net", &["allow_from=127.0.0.1/32,192.0.2.0/24"]);
    let other = w.client("free", &[]);
    let out = sftpctl_stdin(&w.sb, &["passwd", &c.name], "S3cret-pass\n");
    ok(&out, "passwd");
    w.sb.reload_sshd();
    let dropin = fs::read_to_string(w.sb.path("etc/ssh/sshd_config.d/50-sftpctl.conf")).unwrap();
    assert!(
        dropin.contains(&format!(
            "Match User {0} Address *,!127.0.0.1,!192.0.2.0/24\n    DenyUsers {0}\n",
            c.name
        )),
        "{dropin}"
    );

    ok(
        &w.sftp_from(&c, ALLOWED, "ls\n"),
        "key login from the allowed address",
    );
    refused(&w.sftp_from(&c, OUTSIDE, "ls\n"), "key login from outside");
    ok(
        &w.curl(&c, Some("S3cret-pass"), ALLOWED, &[&w.url("")]),
        "password from inside",
    );
    refused(
        &w.curl(&c, Some("S3cret-pass"), OUTSIDE, &[&w.url("")]),
        "password login from outside",
    );
    refused(
        &w.curl(&c, None, OUTSIDE, &[&w.url("")]),
        "curl key login from outside",
    );
    let log = w.sb.sshd_log();
    assert!(
        log.contains(&format!(
            "User {} from 127.0.0.2 not allowed because listed in DenyUsers",
            c.name
        )),
        "{log}"
    );
    // the admin and another client, from the same outside address
    ok(
        &w.sftp_from(&other, OUTSIDE, "ls\n"),
        "another client from outside",
    );
    let out = w.sftp_from(&w.admin, OUTSIDE, "ls\n");
    assert!(
        out.status.success(),
        "the admin from outside\n{}\n{}",
        show(&out),
        w.sb.sshd_log()
    );

    // doctor asks sshd itself, from inside and outside; a drop-in without the block fails
    // it, and --fix writes the block again
    let out = w.sb.sftpctl(&["doctor"]);
    let text = stdout(&out);
    assert!(
        text.lines()
            .any(|l| l.starts_with(&format!("ok   policy {}", c.name))
                && l.contains("refused from 198.51.100.1")),
        "{}",
        show(&out)
    );
    let dropin_path = w.sb.path("etc/ssh/sshd_config.d/50-sftpctl.conf");
    fs::write(
        &dropin_path,
        dropin.replace(&format!("    DenyUsers {}\n", c.name), ""),
    )
    .unwrap();
    let out = w.sb.sftpctl(&["doctor"]);
    assert!(!out.status.success(), "{}", show(&out));
    assert!(
        stdout(&out)
            .lines()
            .any(|l| l.starts_with(&format!("FAIL policy {}", c.name))),
        "{}",
        show(&out)
    );
    w.sb.sftpctl_ok(&["doctor", "--fix"]);
    assert_eq!(fs::read_to_string(&dropin_path).unwrap(), dropin);
    w.sb.reload_sshd();
    refused(
        &w.sftp_from(&c, OUTSIDE, "ls\n"),
        "key login from outside after --fix",
    );

    // lifting the list lets it in again, from anywhere
    w.sb.sftpctl_ok(&["set", &c.name, "allow_from="]);
    w.sb.reload_sshd();
    ok(
        &w.sftp_from(&c, OUTSIDE, "ls\n"),
        "key login after the list is lifted",
    );
    let dropin = fs::read_to_string(w.sb.path("etc/ssh/sshd_config.d/50-sftpctl.conf")).unwrap();
    assert!(
        !dropin.contains(&format!("Match User {}", c.name)),
        "{dropin}"
    );
}

fn dropin(w: &World) -> String {
    fs::read_to_string(w.sb.path("etc/ssh/sshd_config.d/50-sftpctl.conf")).unwrap()
}

/// apply twice (the second changes nothing), bad values (one line, exit 2, nothing changed),
/// a block sshd would not take as rendered (rolled back), and remove-user dropping the blocks.
#[test]
fn blocks_follow_the_settings_and_nothing_else_changes() {
    let w = world();
    let (a, b) = (w.sb.user("a"), w.sb.user("b"));
    let (_, a_pub) = w.sb.keygen("a");
    let key = fs::read_to_string(&a_pub).unwrap();
    let users = w.sb.path("run/users.toml");
    fs::write(
        &users,
        format!(
            "[[user]]\nname = \"{a}\"\nkeys = [\"{k}\"]\naccess = \"upload-only\"\nallow_from = [\"203.0.113.0/24\", \"2001:db8::/32\"]\n\n[[user]]\nname = \"{b}\"\nkeys = [\"{k}\"]\naccess = \"read-only\"\n",
            k = key.trim()
        ),
    )
    .unwrap();
    let users = users.to_str().unwrap();
    w.sb.sftpctl_ok(&["apply", users]);
    let text = dropin(&w);
    assert!(
        text.contains(&format!(
            "Match User {a} Address *,!203.0.113.0/24,!2001:db8::/32\n    DenyUsers {a}\n"
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "Match User {b}\n    ForceCommand internal-sftp -l VERBOSE -u 0007 -R\n"
        )),
        "{text}"
    );
    let snap = w.sb.snapshot_with(&[&a, &b]);
    let again = w.sb.sftpctl_ok(&["apply", users]);
    assert!(
        stdout(&again).contains("nothing to change"),
        "{}",
        show(&again)
    );
    snap.assert_same(&w.sb.snapshot_with(&[&a, &b]), "second apply");
    let again = w.sb.sftpctl_ok(&["set", &b, "access=read-only"]);
    assert!(
        stdout(&again).contains("nothing to change"),
        "{}",
        show(&again)
    );

    for bad in [
        &["set", &b, "allow_from=10.0.0.1/8"][..],
        &["set", &b, "access=foo"],
        &["set", &b, "allow_from=10.0.0.0/8\nMatch all"],
        &["set", &b, "access=read-only\n    ForceCommand /bin/sh"],
    ] {
        let out = w.sb.sftpctl(bad);
        assert_fails_one_line(&out, 2);
        snap.assert_same(&w.sb.snapshot_with(&[&a, &b]), &format!("{bad:?}"));
    }

    // A block of the host's own, earlier than sftpctl's, wins for b: sshd -T then says
    // something else than the rendered block, and the change is rolled back whole.
    fs::write(
        w.sb.path("etc/ssh/sshd_config.d/10-host.conf"),
        format!("Match User {b}\n    ForceCommand internal-sftp\n"),
    )
    .unwrap();
    let snap = w.sb.snapshot_with(&[&a, &b]);
    let out = w.sb.sftpctl(&["set", &b, "access=download-only"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(stderr(&out).contains("forcecommand"), "{}", show(&out));
    snap.assert_same(&w.sb.snapshot_with(&[&a, &b]), "rejected block");
    fs::remove_file(w.sb.path("etc/ssh/sshd_config.d/10-host.conf")).unwrap();

    w.sb.sftpctl_ok(&["remove-user", &a]);
    let text = dropin(&w);
    assert!(!text.contains(&format!("User {a} ")), "{text}");
    assert!(text.contains(&format!("Match User {b}\n")), "{text}");
    w.sb.sftpctl_ok(&["set", &b, "access=rw"]);
    assert!(!dropin(&w).contains("Per-client policy"), "{}", dropin(&w));

    // A config that does not name the admin would render sshd's files without its block:
    // refused, nothing changed, rather than the admin locked out.
    w.sb.edit_config(&format!("admin = \"{}\"\n", w.admin.name), "");
    let snap = w.sb.snapshot_with(&[&b]);
    let out = w.sb.sftpctl(&["set", &b, "access=read-only"]);
    assert_fails_one_line(&out, 2);
    assert!(stderr(&out).contains("admin"), "{}", show(&out));
    snap.assert_same(&w.sb.snapshot_with(&[&b]), "admin block kept");
}

/// The no-write lists a full quota gives (src/policy/sshd/lists.rs), put in front of the
/// group's block by hand (the quota job renders them through `policy::sshd::resync`): a rw
/// client can still download, delete and rename to make room, but not upload or mkdir; an
/// upload-only client cannot write either. The report says the quota is why.
#[test]
fn full_quota_lists_refuse_writes_and_keep_downloads_and_deletes() {
    use sftpctl::policy::sshd::lists::sftp_flags;
    use sftpctl::policy::values::Access;
    let mut w = world();
    let rw = w.client("full", &[]);
    let up = w.client("fullup", &["access=upload-only"]);
    let path = w.sb.path("etc/ssh/sshd_config.d/50-sftpctl.conf");
    let text = fs::read_to_string(&path).unwrap();
    let force = |c: &Client, access| {
        format!(
            "Match User {}\n    ForceCommand internal-sftp -l VERBOSE -u 0007 {}\n",
            c.name,
            sftp_flags(access, true).unwrap()
        )
    };
    let blocks = force(&rw, Access::ReadWrite) + &force(&up, Access::UploadOnly);
    // The upload-only client's own (not full) block is in the file already: replace it.
    let start = text.find(&format!("Match User {}\n", up.name)).unwrap();
    let end = text[start..].find("Match Group").unwrap() + start;
    fs::write(&path, format!("{}{blocks}{}", &text[..start], &text[end..])).unwrap();
    w.sb.reload_sshd();

    w.seed(&rw, "old.bin", "old data\n");
    w.seed(&rw, "keep.bin", "kept\n");
    w.local("new.bin", "new data\n");
    denied(&w.sftp(&rw, "put new.bin\n"), "put at a full quota");
    denied(&w.sftp(&rw, "mkdir d\n"), "mkdir at a full quota");
    refused(
        &w.curl(
            &rw,
            None,
            ALLOWED,
            &["-T", "new.bin", &w.url("new-curl.bin")],
        ),
        "curl put",
    );
    ok(
        &w.sftp(
            &rw,
            "get keep.bin\nrename keep.bin kept.bin\nrm old.bin\nls\n",
        ),
        "get, rename, rm",
    );
    let data = w.sb.data(&rw.name);
    assert!(!data.join("old.bin").exists() && data.join("kept.bin").exists());
    assert!(!data.join("d").exists());
    // open cannot be refused without refusing downloads: the upload leaves an empty file
    for f in ["new.bin", "new-curl.bin"] {
        let len = fs::metadata(data.join(f)).map(|m| m.len()).unwrap_or(0);
        assert_eq!(len, 0, "{f} got data");
    }
    denied(
        &w.sftp(&up, "put new.bin\n"),
        "upload-only put at a full quota",
    );
    let len = fs::metadata(w.sb.data(&up.name).join("new.bin"))
        .map(|m| m.len())
        .unwrap_or(0);
    assert_eq!(len, 0);

    log_has(&w, "Refusing denylisted write request");
    let all = reports_of(&w, &rw.name, 4).join("\n");
    assert!(
        all.contains(
            "write (upload) new.bin: Permission denied (refused: this client's quota is full)"
        ),
        "{all}"
    );
    assert!(all.contains("old.bin"), "the delete is reported:\n{all}");
}
