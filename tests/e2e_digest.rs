//! Digest mode end to end (issue 12, item 4): real sshd, rsyslogd and sftp sessions, the
//! watcher mailing over SMTP to Debian's aiosmtpd, times in America/New_York. Three sessions
//! of two digest clients, stored across watcher restarts before the digest time, become one
//! digest to the admin and one to each client (its own sessions only), caught up at start;
//! a session-mode client gets its per-session mail meanwhile. Run as root.

mod support;
mod watch_common;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use support::{assert_fails_one_line, stderr, stdout, wait_until, Sandbox};
use watch_common::{maildir_mails, text_of};

const ZONE: &str = "America/New_York";
const HOSTILE: &str = "<img src=x onerror=alert(1)>.pdf";

/// The decoded HTML part of a mail (quoted-printable undone).
fn html_of(mail: &str) -> String {
    let mail = mail.replace("\r\n", "\n");
    let start = mail.find("Content-Type: text/html").expect("an HTML part");
    let body = &mail[start..];
    let body = &body[body.find("\n\n").unwrap() + 2..];
    let body = &body[..body.find("\n--").unwrap_or(body.len())];
    let joined = body.replace("=\n", "");
    let bytes = joined.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'=', Some(v)) => {
                out.push(v);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// `HH:MM:SS` of `unix` in ZONE, from glibc (an oracle independent of jiff).
fn local_time_of_day(unix: i64) -> String {
    let out = Command::new("date")
        .env("TZ", ZONE)
        .args(["-d", &format!("@{unix}"), "+%H:%M:%S"])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn set_digest_at(sb: &Sandbox, unix: i64) {
    let text = fs::read_to_string(&sb.config).unwrap();
    let start = text.find("digest_at = ").expect("digest_at in the config");
    let end = start + text[start..].find('\n').unwrap();
    let line = format!("digest_at = \"{}\"", local_time_of_day(unix));
    sb.set_config(&format!("{}{line}{}", &text[..start], &text[end..]));
}

fn stored_reports(sb: &Sandbox) -> usize {
    fs::read_dir(sb.path("state/outbox/digest/reports"))
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
                .count()
        })
        .unwrap_or(0)
}

fn header<'a>(mail: &'a str, name: &str) -> &'a str {
    mail.lines()
        .find_map(|l| l.strip_prefix(name))
        .unwrap_or_else(|| panic!("no {name} in\n{mail}"))
        .trim()
}

fn mails_with_subject<'a>(mails: &'a [String], prefix: &str) -> Vec<&'a String> {
    mails
        .iter()
        .filter(|m| header(m, "Subject:").starts_with(prefix))
        .collect()
}

fn put(sb: &Sandbox, user: &str, key: &Path, name: &str, bytes: usize) {
    fs::write(sb.client_dir().join(name), vec![b'x'; bytes]).unwrap();
    sb.sftp_ok(user, key, &format!("put {name}\n"));
}

#[test]
fn a_digest_of_three_sessions_of_two_clients_survives_watcher_restarts() {
    let mut sb = Sandbox::new();
    let (alice, bob, carol) = (sb.user("alice"), sb.user("bob"), sb.user("carol"));
    let (akey, apub) = sb.keygen("alice");
    let (bkey, bpub) = sb.keygen("bob");
    let (ckey, cpub) = sb.keygen("carol");
    sb.sftpctl_ok(&["init"]);
    sb.start_rsyslogd();
    // alice: the config's mode (digest); bob: his own setting at add-user; carol: `set`
    // back to one mail per session.
    let (amail, bmail) = ("alice@client.example", "bob@client.example");
    sb.sftpctl_ok(&[
        "add-user",
        &alice,
        "--key",
        apub.to_str().unwrap(),
        "--email",
        amail,
    ]);
    sb.sftpctl_ok(&[
        "add-user",
        &bob,
        "--key",
        bpub.to_str().unwrap(),
        "--email",
        bmail,
        "mail_mode=digest",
    ]);
    sb.sftpctl_ok(&["add-user", &carol, "--key", cpub.to_str().unwrap()]);
    sb.sftpctl_ok(&["set", &carol, "mail_mode=session"]);
    // Logging through syslog like a host's sshd: its login lines reach the log the digest
    // reads (docs/history.md, "Logins").
    sb.start_sshd_syslog();
    // A refused key for alice: her digest's Logins section counts it.
    let refused = sb
        .sftp_command(&alice, &bkey)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(!refused.status.success(), "alice logged in with bob's key");
    let maildir = sb.path("maildir");
    let port = sb.start_smtp(&maildir);
    sb.edit_config(
        "[mail]\n",
        &format!(
            "[mail]\ntransport = \"smtp\"\nto = [\"admin@example.com\"]\nretry_max_secs = 2\n\
             timezone = \"{ZONE}\"\nmode = \"digest\"\ndigest_at = \"00:00\"\n"
        ),
    );
    let text = fs::read_to_string(&sb.config).unwrap();
    sb.set_config(&format!(
        "{text}\n[mail.smtp]\nhost = \"127.0.0.1\"\nport = {port}\ntimeout_secs = 5\n"
    ));
    // A digest time that just passed: the next one is a day away while the sessions run.
    set_digest_at(&sb, now() - 3600);

    // list-users tells who gets what.
    let listed = stdout(&sb.sftpctl_ok(&["list-users"]));
    for (user, shown) in [(&alice, true), (&bob, true), (&carol, false)] {
        let row = listed
            .lines()
            .find(|l| l.starts_with(user.as_str()))
            .unwrap();
        assert_eq!(row.contains("daily digest"), shown, "{row}");
    }
    assert!(listed
        .lines()
        .find(|l| l.starts_with(carol.as_str()))
        .unwrap()
        .contains("mail per session"));
    let json: serde_json::Value =
        serde_json::from_slice(&sb.sftpctl_ok(&["list-users", "--json"]).stdout).unwrap();
    let modes: Vec<&str> = json
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["mail_mode"].as_str().unwrap())
        .collect();
    assert_eq!(
        modes.iter().filter(|m| **m == "digest").count(),
        2,
        "{json}"
    );

    // Session 1 (alice), a restart, sessions 2 (bob) and 3 (alice), carol in between.
    sb.start_watcher();
    put(&sb, &alice, &akey, "alice-morning.csv", 1500);
    wait_until(
        "alice's first report stored",
        Duration::from_secs(20),
        || stored_reports(&sb) == 1,
    );
    sb.stop_watcher();
    sb.start_watcher();
    // bob's session also uploads a name that is HTML.
    fs::write(sb.client_dir().join("bob-contract.pdf"), vec![b'x'; 3000]).unwrap();
    fs::write(sb.client_dir().join(HOSTILE), b"x").unwrap();
    sb.sftp_ok(
        &bob,
        &bkey,
        &format!("put bob-contract.pdf\nput \"{HOSTILE}\"\n"),
    );
    put(&sb, &carol, &ckey, "carol-now.txt", 10);
    put(&sb, &alice, &akey, "alice-evening.csv", 700);
    wait_until("three reports stored", Duration::from_secs(20), || {
        stored_reports(&sb) == 3
    });
    // The store is root's alone: another local account can neither list nor read it.
    let store = sb.path("state/outbox/digest/reports");
    let meta = fs::metadata(&store).unwrap();
    assert_eq!((meta.uid(), meta.mode() & 0o777), (0, 0o700));
    for entry in fs::read_dir(&store).unwrap().flatten() {
        let meta = entry.metadata().unwrap();
        assert_eq!((meta.uid(), meta.mode() & 0o777), (0, 0o600));
        let out = Command::new("setpriv")
            .args([
                "--reuid=nobody",
                "--regid=nogroup",
                "--clear-groups",
                "--",
                "cat",
            ])
            .arg(entry.path())
            .output()
            .unwrap();
        assert!(!out.status.success(), "nobody read a stored report");
    }
    wait_until("carol's session mail", Duration::from_secs(20), || {
        !maildir_mails(&maildir).is_empty()
    });
    sb.stop_watcher();
    let mails = maildir_mails(&maildir);
    assert_eq!(
        mails.len(),
        1,
        "only carol's session mail before the digest"
    );
    assert!(text_of(&mails[0]).contains("carol-now.txt"));
    assert!(header(&mails[0], "Subject:").starts_with("SFTP "));
    assert!(mails_with_subject(&mails, "SFTP digest").is_empty());

    // The digest time passes while the watcher is down: caught up when it starts.
    let due = now() + 2;
    set_digest_at(&sb, due);
    while now() <= due {
        std::thread::sleep(Duration::from_millis(200));
    }
    sb.start_watcher();
    wait_until("three digests", Duration::from_secs(30), || {
        mails_with_subject(&maildir_mails(&maildir), "SFTP digest").len() == 3
    });
    assert_eq!(stored_reports(&sb), 0, "the store is cleared once queued");
    let mails = maildir_mails(&maildir);
    let digests = mails_with_subject(&mails, "SFTP digest");
    let to = |addr: &str| -> &String {
        digests
            .iter()
            .find(|m| header(m, "To:") == addr)
            .unwrap_or_else(|| panic!("no digest to {addr}"))
    };
    let admin = text_of(to("admin@example.com"));
    assert!(
        admin.contains("3 sessions of 2 clients"),
        "the admin's digest covers every digest client\n{admin}"
    );
    for name in ["alice-morning.csv", "alice-evening.csv", "bob-contract.pdf"] {
        assert!(admin.contains(name), "{name} in\n{admin}");
    }
    assert!(admin.contains("1.5 KiB (1,500 bytes)") || admin.contains("1,500 bytes"));
    assert!(
        !admin.contains("carol-now.txt"),
        "carol is a session client"
    );
    assert!(admin.contains(" -05:00 (EST)") || admin.contains(" -04:00 (EDT)"));
    assert!(admin.contains("LOGINS"), "{admin}");
    let alice_logins = admin
        .lines()
        .find(|l| l.trim_start().starts_with(&format!("{alice}: ")))
        .unwrap_or_else(|| panic!("no login line of alice\n{admin}"));
    assert!(
        alice_logins.contains(" accepted, 1 failed (last from 127.0.0.1)"),
        "{alice_logins}"
    );
    let alice_own = text_of(to(amail));
    assert!(alice_own.contains("1 failed"), "{alice_own}");
    assert!(alice_own.contains("alice-morning.csv") && alice_own.contains("alice-evening.csv"));
    assert!(alice_own.contains("2 sessions"), "{alice_own}");
    let bob_own = text_of(to(bmail));
    assert!(bob_own.contains("bob-contract.pdf"));
    for (own, other) in [(&alice_own, &bob), (&bob_own, &alice)] {
        assert!(
            !own.contains(other.as_str()) && !own.contains("carol"),
            "a client's digest names nobody else\n{own}"
        );
    }
    assert!(
        !to(amail).contains(&bob) && !to(bmail).contains(&alice),
        "nor does its HTML"
    );
    assert!(to(amail).contains("text/html"));
    let html = html_of(to("admin@example.com"));
    assert!(
        html.contains("&lt;img src=x onerror=alert(1)&gt;.pdf") && !html.contains("<img"),
        "a file name cannot add markup\n{html}"
    );

    // Restarted again: nothing twice.
    sb.stop_watcher();
    sb.start_watcher();
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(maildir_mails(&maildir).len(), 4, "no digest sent twice");

    // The next digest fires while the watcher runs, not before its time.
    put(&sb, &alice, &akey, "alice-late.bin", 100);
    wait_until("the late report stored", Duration::from_secs(20), || {
        stored_reports(&sb) == 1
    });
    sb.stop_watcher();
    let due = now() + 6;
    set_digest_at(&sb, due);
    sb.start_watcher();
    wait_until("the live digests", Duration::from_secs(40), || {
        maildir_mails(&maildir).len() == 6
    });
    let mails = maildir_mails(&maildir);
    let late: Vec<&String> = mails
        .iter()
        .filter(|m| text_of(m).contains("alice-late.bin"))
        .collect();
    assert_eq!(late.len(), 2, "to the admin and to alice");
    for entry in fs::read_dir(maildir.join("new")).unwrap().flatten() {
        let text = fs::read_to_string(entry.path()).unwrap();
        if text_of(&text).contains("alice-late.bin") {
            let written = entry
                .metadata()
                .unwrap()
                .modified()
                .unwrap()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_secs() as i64;
            assert!(written >= due, "sent at {written}, due at {due}");
        }
    }
    assert!(text_of(late[0]).contains("1 session"));
}

#[test]
fn bad_digest_settings_are_refused_in_one_line_and_change_nothing() {
    let sb = Sandbox::new();
    let alice = sb.user("alice");
    let (_, public) = sb.keygen("alice");
    sb.sftpctl_ok(&["init"]);
    sb.sftpctl_ok(&["add-user", &alice, "--key", public.to_str().unwrap()]);
    let snap = sb.snapshot();
    for bad in ["mail_mode=weekly", "mail_mode=", "mail_mode=digest\nx"] {
        let out = sb.sftpctl(&["set", &alice, bad]);
        assert_fails_one_line(&out, 2);
        assert!(stderr(&out).contains("mail_mode"), "{}", stderr(&out));
    }
    assert_eq!(sb.snapshot(), snap, "a refused set changed something");
    // apply: the same key, the same values.
    let users = sb.path("run/users.toml");
    let mode_of = |sb: &Sandbox| -> String {
        let json: serde_json::Value =
            serde_json::from_slice(&sb.sftpctl_ok(&["list-users", "--json"]).stdout).unwrap();
        json[0]["mail_mode"].as_str().unwrap().to_string()
    };
    for (value, want) in [("digest", "digest"), ("default", "session")] {
        fs::write(
            &users,
            format!("[[user]]\nname = \"{alice}\"\nmail_mode = \"{value}\"\n"),
        )
        .unwrap();
        sb.sftpctl_ok(&["apply", users.to_str().unwrap()]);
        assert_eq!(mode_of(&sb), want);
    }
    fs::write(
        &users,
        format!("[[user]]\nname = \"{alice}\"\nmail_mode = \"weekly\"\n"),
    )
    .unwrap();
    let snap = sb.snapshot();
    let out = sb.sftpctl(&["apply", users.to_str().unwrap()]);
    assert_fails_one_line(&out, 2);
    assert!(stderr(&out).contains("mail_mode"), "{}", stderr(&out));
    assert_eq!(sb.snapshot(), snap, "a refused apply changed something");
    let good = fs::read_to_string(&sb.config).unwrap();
    for bad in [
        "digest_at = \"25:00\"",
        "digest_at = \"6pm\"",
        "digest_at = \"18:00\\nx\"",
        "mode = \"weekly\"",
    ] {
        sb.set_config(&good.replacen("[mail]\n", &format!("[mail]\n{bad}\n"), 1));
        let snap = sb.snapshot();
        for args in [&["watch", "--foreground"][..], &["list-users"]] {
            let out = sb.sftpctl(args);
            assert_fails_one_line(&out, 2);
            let err = stderr(&out);
            assert!(
                err.contains("digest_at") || err.contains("mode"),
                "{bad}: {err}"
            );
        }
        assert_eq!(sb.snapshot(), snap, "{bad} changed something");
    }
}
