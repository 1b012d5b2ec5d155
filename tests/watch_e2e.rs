//! The watcher end to end with the real programs: `sftpctl init`/`add-user` in a sandbox,
//! private rsyslogd and sshd, the OpenSSH sftp client, and Debian's aiosmtpd as the SMTP
//! server. Runs as root (the sandbox creates users and a jail root under /srv).

mod support;
mod watch_common;

use std::fs;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use support::{wait_until, Sandbox, SFTPCTL};
use watch_common::{maildir_mails as mails, start_smtp, text_of};

/// Kills (and reaps) a child when the test ends, however it ends.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Reaped {
    fn pid(&self) -> Pid {
        Pid::from_raw(self.0.id() as i32)
    }

    /// SIGTERM and wait for a clean exit.
    fn terminate(mut self) {
        kill(self.pid(), Signal::SIGTERM).unwrap();
        let mut status = None;
        wait_until("the watcher to stop", Duration::from_secs(10), || {
            status = self.0.try_wait().unwrap();
            status.is_some()
        });
        assert!(status.unwrap().success(), "watcher exit {status:?}");
    }
}

struct World {
    sb: Sandbox,
    alice: String,
    key: PathBuf,
    maildir: PathBuf,
    smtp_port: u16,
}

/// init, rsyslogd, add-user, sshd; the config mails over SMTP to `smtp_port` (not started).
/// internal-sftp logs at the default level, INFO.
fn world() -> World {
    world_at("INFO")
}

/// [`world`] with internal-sftp at `level`. Tests that assert which request failed use
/// VERBOSE: at INFO, a failure is tied to its request by timing, which a loaded machine
/// can defeat (docs/watch.md).
fn world_at(level: &str) -> World {
    let mut sb = Sandbox::new();
    sb.edit_config(
        "umask = \"0007\"",
        &format!("umask = \"0007\"\nsftp_log_level = \"{level}\""),
    );
    let alice = sb.user("alice");
    let (key, public) = sb.keygen("alice");
    sb.sftpctl_ok(&["init"]);
    sb.start_rsyslogd();
    sb.sftpctl_ok(&["add-user", &alice, "--key", public.to_str().unwrap()]);
    sb.start_sshd();
    let smtp_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    sb.edit_config(
        "[mail]\n",
        "[mail]\ntransport = \"smtp\"\nto = [\"admin@example.com\"]\nretry_max_secs = 2\n",
    );
    let text = fs::read_to_string(&sb.config).unwrap();
    sb.set_config(&format!(
        "{text}\n[mail.smtp]\nhost = \"127.0.0.1\"\nport = {smtp_port}\ntimeout_secs = 5\n"
    ));
    let maildir = sb.path("maildir");
    World {
        sb,
        alice,
        key,
        maildir,
        smtp_port,
    }
}

fn start_watcher(w: &World) -> Reaped {
    let log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(w.sb.path("run/watch.log"))
        .unwrap();
    let child = Command::new(SFTPCTL)
        .arg("--config")
        .arg(&w.sb.config)
        .args(["watch", "--foreground"])
        .env_remove("SFTPCTL_CONFIG")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    wait_until("the watcher to listen", Duration::from_secs(10), || {
        Sandbox::socket_listens(&w.sb.watch_socket)
    });
    Reaped(child)
}

fn local_file(sb: &Sandbox, name: &str, len: usize) {
    let p = sb.client_dir().join(name);
    fs::write(&p, vec![b'x'; len]).unwrap();
}

fn watcher_log(w: &World) -> String {
    fs::read_to_string(w.sb.path("run/watch.log")).unwrap_or_default()
}

#[test]
fn a_session_becomes_exactly_one_mail_naming_each_file_with_its_bytes() {
    let w = world_at("VERBOSE");
    let _smtp = start_smtp(w.smtp_port, &w.maildir);
    let _watcher = start_watcher(&w);
    local_file(&w.sb, "up.bin", 70_000);
    local_file(&w.sb, "note.txt", 12);
    w.sb.sftp_ok(
        &w.alice,
        &w.key,
        "put up.bin\nget up.bin down.bin\nrename up.bin renamed.bin\nput note.txt\nrm note.txt\n-rm no-such-file\n",
    );
    wait_until("the mail", Duration::from_secs(10), || {
        !mails(&w.maildir).is_empty()
    });
    std::thread::sleep(Duration::from_secs(2));
    let all = mails(&w.maildir);
    assert_eq!(
        all.len(),
        1,
        "exactly one mail per session\n{}",
        watcher_log(&w)
    );
    let text = text_of(&all[0]);
    assert!(
        text.contains(&format!("SFTP session of {} from 127.0.0.1", w.alice)),
        "{text}"
    );
    assert!(text.contains("UPLOADED: 2"), "{text}");
    assert!(text.contains("up.bin  68.4 KiB (70,000 bytes)"), "{text}");
    assert!(text.contains("note.txt  12 bytes"), "{text}");
    assert!(
        text.contains("DOWNLOADED: 1, 68.4 KiB (70,000 bytes)"),
        "{text}"
    );
    assert!(text.contains("up.bin → renamed.bin"), "{text}");
    assert!(text.contains("DELETED (1)\n  note.txt"), "{text}");
    assert!(text.contains("no-such-file: No such file"), "{text}");
    assert!(all[0].contains("To: admin@example.com"));
}

#[test]
fn with_the_smtp_server_stopped_the_report_waits_and_arrives_after_it_starts() {
    let w = world();
    let _watcher = start_watcher(&w);
    local_file(&w.sb, "late.bin", 4321);
    w.sb.sftp_ok(&w.alice, &w.key, "put late.bin\n");
    let outbox = w.sb.path("state/outbox");
    let waiting = || -> usize {
        fs::read_dir(&outbox)
            .map(|d| {
                d.flatten()
                    .filter(|e| e.path().extension().is_some_and(|x| x == "seg"))
                    .map(|e| {
                        fs::read_to_string(e.path())
                            .unwrap_or_default()
                            .lines()
                            .count()
                    })
                    .sum()
            })
            .unwrap_or(0)
    };
    wait_until("the report in the outbox", Duration::from_secs(10), || {
        waiting() == 1
    });
    std::thread::sleep(Duration::from_secs(2));
    assert!(mails(&w.maildir).is_empty());
    let _smtp = start_smtp(w.smtp_port, &w.maildir);
    wait_until("the mail", Duration::from_secs(10), || {
        mails(&w.maildir).len() == 1
    });
    assert!(text_of(&mails(&w.maildir)[0]).contains("late.bin  4.2 KiB (4,321 bytes)"));
}

#[test]
fn sigterm_and_restart_mid_session_still_mails_once() {
    let w = world();
    let _smtp = start_smtp(w.smtp_port, &w.maildir);
    let watcher = start_watcher(&w);
    local_file(&w.sb, "first.bin", 100);
    local_file(&w.sb, "second.bin", 200);
    // A session kept open by its stdin: commands go in while the watcher restarts.
    let mut sftp = w.sb.sftp_command(&w.alice, &w.key);
    sftp.stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut client = Reaped(sftp.spawn().unwrap());
    let mut stdin = client.0.stdin.take().unwrap();
    stdin.write_all(b"put first.bin\n").unwrap();
    stdin.flush().unwrap();
    w.sb.wait_log_line("close \"/data/first.bin\" bytes read 0 written 100");
    std::thread::sleep(Duration::from_millis(300));
    watcher.terminate();
    assert!(
        watcher_log(&w).contains("1 open sessions saved"),
        "{}",
        watcher_log(&w)
    );

    let _watcher = start_watcher(&w);
    stdin.write_all(b"put second.bin\n").unwrap();
    drop(stdin);
    wait_until("the sftp client to finish", Duration::from_secs(10), || {
        client.0.try_wait().unwrap().is_some()
    });
    wait_until("the mail", Duration::from_secs(10), || {
        !mails(&w.maildir).is_empty()
    });
    std::thread::sleep(Duration::from_secs(2));
    let all = mails(&w.maildir);
    assert_eq!(all.len(), 1, "once\n{}", watcher_log(&w));
    let text = text_of(&all[0]);
    assert!(
        text.contains("first.bin  100 bytes") && text.contains("second.bin  200 bytes"),
        "{text}"
    );
}

#[test]
fn set_email_copies_the_user_and_list_users_shows_the_last_session() {
    let w = world();
    let _smtp = start_smtp(w.smtp_port, &w.maildir);
    w.sb.sftpctl_ok(&["set-email", &w.alice, "alice@client.example"]);
    let _watcher = start_watcher(&w);
    local_file(&w.sb, "copy.bin", 100);
    w.sb.sftp_ok(&w.alice, &w.key, "put copy.bin\n");
    wait_until("the mail", Duration::from_secs(10), || {
        !mails(&w.maildir).is_empty()
    });
    let mail = &mails(&w.maildir)[0];
    let headers = &mail[..mail.find("\n\n").or(mail.find("\r\n\r\n")).unwrap()];
    assert!(headers.contains("admin@example.com"), "{headers}");
    assert!(headers.contains("alice@client.example"), "{headers}");

    wait_until(
        "list-users to show the session",
        Duration::from_secs(10),
        || {
            let out = w.sb.sftpctl_ok(&["list-users", "--json"]);
            let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            rows[0]["last_session"].is_string()
        },
    );
}

/// With `sftp_log_level = "VERBOSE"` the lookups are logged too, so every failure is tied to
/// its own request without timing: checked on the log file with `sftpctl report --json`.
#[test]
fn verbose_log_ties_every_failure_to_its_own_request() {
    let mut sb = Sandbox::new();
    sb.edit_config(
        "umask = \"0007\"",
        "umask = \"0007\"\nsftp_log_level = \"VERBOSE\"",
    );
    let alice = sb.user("alice");
    let (key, public) = sb.keygen("alice");
    sb.sftpctl_ok(&["init"]);
    let dropin = fs::read_to_string(sb.path("etc/ssh/sshd_config.d/50-sftpctl.conf")).unwrap();
    assert!(
        dropin.contains("ForceCommand internal-sftp -l VERBOSE -u 0007"),
        "{dropin}"
    );
    sb.start_rsyslogd();
    sb.sftpctl_ok(&["add-user", &alice, "--key", public.to_str().unwrap()]);
    sb.start_sshd();
    local_file(&sb, "gone.txt", 10);
    local_file(&sb, "kept.txt", 20);
    sb.sftp_ok(
        &alice,
        &key,
        "put gone.txt\nput kept.txt\nrm gone.txt\n-rm no-such-file\n-rename missing.txt other.txt\nrename kept.txt final.txt\nls\n-get nothing-here.txt\n",
    );
    sb.wait_log_line("session closed");
    let log = sb.log_lines().join("\n");
    println!("{log}"); // for CI logs: the real VERBOSE lines
    let out = sb.sftpctl_ok(&["report", "--json", sb.log_file.to_str().unwrap()]);
    let text = support::stdout(&out);
    let sessions: serde_json::Value = serde_json::from_str(&text).unwrap();
    let s = &sessions.as_array().unwrap()[0];
    let deletes: Vec<&str> = s["deletes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["path"].as_str().unwrap())
        .collect();
    assert_eq!(deletes, ["gone.txt"], "{text}\n{log}");
    let failed = serde_json::to_string(&s["failures"]).unwrap();
    assert!(failed.contains("no-such-file"), "{text}\n{log}");
    assert!(failed.contains("missing.txt"), "{text}\n{log}");
    assert!(!failed.contains("gone.txt"), "{text}\n{log}");
    // a failed lookup (the client's lstat before `get`) is not a failed transfer
    assert_eq!(s["totals"]["failures"], 2, "{text}\n{log}");
    assert_eq!(s["unreadable_lines"], 0, "{text}\n{log}");
}
