//! Logins end to end (issue 12, items 8 and 9): the sandbox's real sshd logging through
//! syslog (as on a host: `Sandbox::start_sshd_syslog`), rsyslogd with the rules `init`
//! wrote, the watcher on the trusted feed, OpenSSH's ssh/sftp and curl's SFTP (passwords).
//! A refused key, a wrong password, an invalid user and a hostile invalid name from
//! 127.0.0.2, then a real login from 127.0.0.1: `report --logins` lists each with its
//! source, `list-users` shows the last login and the failures since, reset by the success.
//! Forged login lines (another account through the host's socket, the client through its
//! jail's socket) change nothing. Run as root.

mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::Value;
use support::{run_with_timeout, show, stderr, stdout, wait_until, Sandbox, DEADLINE, SFTPCTL};

const INSIDE: &str = "127.0.0.1";
const OUTSIDE: &str = "127.0.0.2";

struct World {
    sb: Sandbox,
    admin_key: PathBuf,
    alice: String,
    key: PathBuf,
    key_pub: PathBuf,
}

fn world() -> World {
    let mut sb = Sandbox::new();
    // Debian's defaults: LogLevel INFO (the sandbox's VERBOSE would hide what sftpctl's
    // Match blocks add), password logins on for the password case.
    let main = sb.path("etc/ssh/sshd_config");
    let text = fs::read_to_string(&main).unwrap();
    fs::write(
        &main,
        text.replace("LogLevel VERBOSE", "LogLevel INFO")
            .replace("PasswordAuthentication no", "PasswordAuthentication yes"),
    )
    .unwrap();
    let admin = sb.admin.clone();
    sb.edit_config("umask = ", &format!("admin = \"{admin}\"\numask = "));
    let (admin_key, admin_pub) = sb.keygen("admin");
    sb.sftpctl_ok(&[
        "init",
        "--admin",
        &admin,
        "--admin-key",
        admin_pub.to_str().unwrap(),
    ]);
    sb.start_rsyslogd();
    let alice = sb.user("alice");
    let (key, key_pub) = sb.keygen("alice");
    sb.sftpctl_ok(&["add-user", &alice, "--key", key_pub.to_str().unwrap()]);
    sb.start_sshd_syslog();
    sb.start_watcher();
    World {
        sb,
        admin_key,
        alice,
        key,
        key_pub,
    }
}

impl World {
    /// OpenSSH `sftp -b -` as `user` with `key` from source address `from`.
    fn sftp(&self, user: &str, key: &Path, from: &str, script: &str) -> Output {
        self.sftp_keys(user, &[key], from, script)
    }

    /// The same, offering each of `keys` in turn.
    fn sftp_keys(&self, user: &str, keys: &[&Path], from: &str, script: &str) -> Output {
        let mut cmd = Command::new("sftp");
        cmd.current_dir(self.sb.client_dir())
            .args(["-b", "-", "-F", "/dev/null", "-P"])
            .arg(self.sb.ssh_port.to_string());
        for key in keys {
            cmd.arg("-i").arg(key);
        }
        cmd.args([
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
        ])
        .args(["-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes"])
        .args(["-o", "ConnectTimeout=5", "-o", "LogLevel=ERROR"])
        .arg("-o")
        .arg(format!("BindAddress={from}"))
        .arg(format!("{user}@127.0.0.1"));
        run_with_timeout(&mut cmd, script.as_bytes(), DEADLINE)
    }

    /// curl's SFTP (libssh2) with a password.
    fn curl_password(&self, user: &str, password: &str, from: &str) -> Output {
        let mut cmd = Command::new("curl");
        cmd.args(["-sS", "--fail", "--insecure", "--interface", from])
            .arg("--user")
            .arg(format!("{user}:{password}"))
            .arg(format!("sftp://127.0.0.1:{}/data/", self.sb.ssh_port))
            .current_dir(self.sb.client_dir());
        run_with_timeout(&mut cmd, b"", DEADLINE)
    }

    fn logins_json(&self, extra: &[&str]) -> (Vec<Value>, String) {
        let mut args = vec!["report", "--logins", "--format", "json"];
        args.extend_from_slice(extra);
        let out = self.sb.sftpctl_ok(&args);
        (
            serde_json::from_str(&stdout(&out)).unwrap_or_else(|e| panic!("{e}\n{}", show(&out))),
            stderr(&out),
        )
    }

    fn alice_row(&self) -> Value {
        let out = self.sb.sftpctl_ok(&["list-users", "--json"]);
        let rows: Vec<Value> = serde_json::from_str(&stdout(&out)).unwrap();
        rows.into_iter()
            .find(|r| r["name"] == self.alice.as_str())
            .unwrap_or_else(|| panic!("no row for {}\n{}", self.alice, show(&out)))
    }

    /// Waits until the log holds `n` login lines of sshd that mention `needle`.
    fn wait_logged(&self, needle: &str) {
        let log = self.sb.path("log/sftp.log");
        wait_until(&format!("{needle:?} in the log"), DEADLINE, || {
            fs::read_to_string(&log).is_ok_and(|t| t.contains(needle))
        });
    }
}

fn fingerprint(public: &Path) -> String {
    let out = Command::new("ssh-keygen")
        .arg("-lf")
        .arg(public)
        .output()
        .unwrap();
    // `256 SHA256:… comment (ED25519)`
    let text = String::from_utf8(out.stdout).unwrap();
    let words: Vec<&str> = text.split_whitespace().collect();
    let kind = words.last().unwrap().trim_matches(['(', ')']);
    format!("{kind} {}", words[1])
}

fn of<'a>(logins: &'a [Value], outcome: &str, user: &str) -> Vec<&'a Value> {
    logins
        .iter()
        .filter(|l| l["outcome"] == outcome && l["user"] == user)
        .collect()
}

#[test]
fn failed_and_accepted_logins_are_reported_and_listed() {
    let w = world();
    let sb = &w.sb;
    let mut cmd = Command::new(SFTPCTL);
    cmd.arg("--config")
        .arg(&sb.config)
        .args(["passwd", &w.alice]);
    let set = run_with_timeout(&mut cmd, b"Right-pass-1\n", DEADLINE);
    assert!(set.status.success(), "passwd\n{}", show(&set));

    // 1. a key that is not installed
    let (stranger, stranger_pub) = sb.keygen("stranger");
    let out = w.sftp(&w.alice, &stranger, OUTSIDE, "ls\n");
    assert!(
        !out.status.success(),
        "a key not installed got in\n{}",
        show(&out)
    );
    // 2. a wrong password
    let out = w.curl_password(&w.alice, "wrong-pass", OUTSIDE);
    assert!(
        !out.status.success(),
        "a wrong password got in\n{}",
        show(&out)
    );
    // 3. a name that is no account, and one a remote client made up to look like alice's
    let nobody = sb.user("nosuch");
    let out = w.sftp(&nobody, &stranger, OUTSIDE, "ls\n");
    assert!(!out.status.success(), "{}", show(&out));
    let hostile = format!("{} from 203.0.113.66 port 22 ssh2", w.alice);
    let out = w.curl_password(&hostile, "x", OUTSIDE);
    assert!(!out.status.success(), "{}", show(&out));
    w.wait_logged(&format!("Failed password for invalid user {hostile}"));
    // 4. more keys than MaxAuthTries (6)
    let many: Vec<PathBuf> = (0..7).map(|i| sb.keygen(&format!("many{i}")).0).collect();
    let refs: Vec<&Path> = many.iter().map(PathBuf::as_path).collect();
    let out = w.sftp_keys(&w.alice, &refs, OUTSIDE, "ls\n");
    assert!(!out.status.success(), "{}", show(&out));

    // Before the success: three failed logins of alice, no last login.
    wait_until("list-users counts alice's failed logins", DEADLINE, || {
        w.alice_row()["failed_logins"] == 3
    });
    assert_eq!(w.alice_row()["last_login"], Value::Null);

    // 5. a real login, and the admin's
    let out = w.sftp(&w.alice, &w.key, INSIDE, "ls\n");
    assert!(out.status.success(), "alice's login\n{}", show(&out));
    let out = w.sftp(&sb.admin, &w.admin_key, INSIDE, "ls\n");
    assert!(out.status.success(), "the admin's login\n{}", show(&out));
    wait_until("list-users shows alice's last login", DEADLINE, || {
        w.alice_row()["last_login_from"] == INSIDE
    });
    let row = w.alice_row();
    assert_eq!(row["failed_logins"], 0, "{row}");
    assert!(row["last_login"].as_str().unwrap().ends_with('Z'), "{row}");
    let text = stdout(&sb.sftpctl_ok(&["list-users"]));
    assert!(text.contains(&format!("from {INSIDE}")), "{text}");

    let (logins, err) = w.logins_json(&[]);
    let failed = of(&logins, "failed", &w.alice);
    assert_eq!(failed.len(), 3, "{logins:#?}");
    let tries = failed
        .iter()
        .find(|l| l["note"] == "too many authentication failures")
        .unwrap_or_else(|| panic!("no MaxAuthTries login\n{logins:#?}"));
    assert_eq!(tries["failed_attempts"], 6, "{tries}");
    // The refused key: sftpctl's Match block logs it at VERBOSE, with its fingerprint.
    let key_fail = failed
        .iter()
        .find(|l| l["method"] == "publickey" && l["failed_attempts"] == 1)
        .unwrap_or_else(|| panic!("no failed publickey\n{logins:#?}"));
    assert_eq!(key_fail["key"], fingerprint(&stranger_pub).as_str());
    assert_eq!(key_fail["source"], OUTSIDE);
    let pw_fail = failed.iter().find(|l| l["method"] == "password").unwrap();
    assert_eq!(pw_fail["source"], OUTSIDE);
    let invalid = of(&logins, "invalid", &nobody);
    assert_eq!(invalid.len(), 1, "{logins:#?}");
    assert_eq!(invalid[0]["source"], OUTSIDE);
    let hostile_rows = of(&logins, "invalid", &hostile);
    assert_eq!(hostile_rows.len(), 1, "{logins:#?}");
    assert_eq!(
        hostile_rows[0]["source"], OUTSIDE,
        "the name cannot move the source"
    );
    let accepted = of(&logins, "accepted", &w.alice);
    assert_eq!(accepted.len(), 1, "{logins:#?}");
    assert_eq!(accepted[0]["source"], INSIDE);
    assert_eq!(accepted[0]["method"], "publickey");
    assert_eq!(accepted[0]["key"], fingerprint(&w.key_pub).as_str());
    assert!(accepted[0]["time_text"].as_str().unwrap().len() > 19);
    let admin = of(&logins, "accepted", &sb.admin);
    assert_eq!(admin.len(), 1, "the admin's login\n{logins:#?}");
    assert_eq!(admin[0]["source"], INSIDE);
    assert!(err.is_empty(), "{err}");

    // Filters and the other formats.
    let (only, _) = w.logins_json(&["--user", &w.alice, "--since", "1h"]);
    assert_eq!(only.len(), 4, "{only:#?}");
    let (none, _) = w.logins_json(&["--until", "2000-01-01"]);
    assert!(none.is_empty());
    let csv = stdout(&sb.sftpctl_ok(&["report", "--logins", "--format", "csv"]));
    assert!(csv.starts_with("time,user,outcome,method,source,port,key,failed_attempts,note\r\n"));
    assert_eq!(
        csv.matches(",accepted,publickey,127.0.0.1,").count(),
        2,
        "{csv}"
    );
    let text = stdout(&sb.sftpctl_ok(&["report", "--logins"]));
    assert!(
        text.contains("7 login(s): 2 accepted, 3 failed, 2 invalid user, 0 penalties"),
        "{text}"
    );
    // A gzip-compressed rotation reads the same.
    let gz = sb.path("run/sftp.log.2.gz");
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "gzip -c {} > {}",
            sb.path("log/sftp.log").display(),
            gz.display()
        ))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", show(&out));
    let (again, _) = w.logins_json(&[gz.to_str().unwrap()]);
    assert_eq!(again, logins);
    let out = sb.sftpctl(&["report", "--logins", "--action", "upload"]);
    support::assert_fails_one_line(&out, 2);
}

/// Nothing but root's sshd speaks for a login: another local account writing sshd lines to
/// the host's socket, and the client writing them to its jail's socket, change neither the
/// report nor list-users.
#[test]
fn forged_login_lines_change_nothing() {
    let w = world();
    let sb = &w.sb;
    let out = w.sftp(&w.alice, &w.key, INSIDE, "ls\n");
    assert!(out.status.success(), "{}", show(&out));
    wait_until("alice's login recorded", DEADLINE, || {
        w.alice_row()["last_login_from"] == INSIDE
    });
    let before = w.alice_row();

    let forged = [
        format!(
            "Accepted publickey for {} from 203.0.113.66 port 1 ssh2: ED25519 SHA256:forged",
            w.alice
        ),
        format!(
            "Failed password for {} from 203.0.113.66 port 2 ssh2",
            w.alice
        ),
        format!(
            "Connection closed by authenticating user {} 203.0.113.66 port 3 [preauth]",
            w.alice
        ),
    ];
    let logger = |who: &str, socket: &Path| {
        for msg in &forged {
            let mut cmd = Command::new("setpriv");
            cmd.arg(format!("--reuid={who}"))
                .arg("--regid=nogroup")
                .args([
                    "--clear-groups",
                    "--",
                    "logger",
                    "--socket-errors=on",
                    "-d",
                    "-u",
                ])
                .arg(socket)
                .args(["-p", "auth.info", "-t", "sshd[4242]", msg]);
            let out = run_with_timeout(&mut cmd, b"", DEADLINE);
            assert!(out.status.success(), "logger as {who}\n{}", show(&out));
        }
    };
    // another local account, through the host's /dev/log
    logger("nobody", &sb.host_socket());
    // the client itself, through its jail's dev/log and the host's
    logger(&w.alice, &sb.jail(&w.alice).join("dev/log"));
    logger(&w.alice, &sb.host_socket());
    // the host socket's lines reach the log (rsyslog takes any sender) and are skipped there
    w.wait_logged("203.0.113.66 port 3");
    std::thread::sleep(Duration::from_millis(1500));
    let log = fs::read_to_string(sb.path("log/sftp.log")).unwrap();
    assert_eq!(log.matches("203.0.113.66 port 1").count(), 2, "{log}");

    let (logins, err) = w.logins_json(&[]);
    assert!(
        logins.iter().all(|l| l["source"] != "203.0.113.66"),
        "{logins:#?}"
    );
    assert!(
        err.contains("6 sshd line(s) were not sent by root's sshd"),
        "{err}"
    );
    assert_eq!(w.alice_row(), before, "list-users changed by forged lines");
    // The watcher says so in its log.
    wait_until(
        "the watcher's log names the dropped lines",
        DEADLINE,
        || {
            fs::read_to_string(sb.path("run/watch.log"))
                .is_ok_and(|t| t.contains("sshd login line(s) not sent by root's sshd"))
        },
    );
    // The watcher never made a state file for anything but alice.
    let names: Vec<String> = fs::read_dir(sb.path("state/logins"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec![w.alice.clone()]);
}
