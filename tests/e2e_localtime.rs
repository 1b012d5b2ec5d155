//! Local time end to end (issue 12, item 3): a real session through the sandbox's sshd,
//! rsyslogd and sftp client, the watcher mailing over SMTP to Debian's aiosmtpd, with
//! `mail.timezone = "America/New_York"`. The expected texts come from glibc's `date` reading
//! the same system tz database: an oracle independent of jiff. Run as root.

mod support;
mod watch_common;

use std::fs;
use std::process::Command;
use std::time::Duration;

use support::{assert_fails_one_line, stderr, stdout, wait_until, Sandbox};
use watch_common::{maildir_mails, text_of};

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// glibc's rendering of `unix` in `zone`, in sftpctl's format.
fn glibc(zone: &str, unix: i64) -> String {
    let out = Command::new("date")
        .env("TZ", zone)
        .args(["-d", &format!("@{unix}"), "+%Y-%m-%d %H:%M:%S %:z (%Z)"])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// The value after `label` on its line, e.g. `Start:` → `2026-12-03 08:04:18 -05:00 (EST)`.
fn field(text: &str, label: &str) -> String {
    text.lines()
        .find_map(|l| l.strip_prefix(label))
        .unwrap_or_else(|| panic!("no {label} in\n{text}"))
        .trim()
        .to_string()
}

#[track_caller]
fn assert_shown_in(zone: &str, shown: &str, from: i64, to: i64, what: &str) {
    assert!(
        (from..=to).any(|t| glibc(zone, t) == shown),
        "{what}: {shown:?} is no time of {zone} between {} and {}",
        glibc(zone, from),
        glibc(zone, to)
    );
}

#[test]
fn report_mail_report_and_list_users_use_the_configured_zone() {
    let mut sb = Sandbox::new();
    let alice = sb.user("alice");
    let (key, public) = sb.keygen("alice");
    sb.sftpctl_ok(&["init"]);
    sb.start_rsyslogd();
    sb.sftpctl_ok(&["add-user", &alice, "--key", public.to_str().unwrap()]);
    sb.start_sshd();
    let maildir = sb.path("maildir");
    let port = sb.start_smtp(&maildir);
    sb.edit_config(
        "[mail]\n",
        "[mail]\ntransport = \"smtp\"\nto = [\"admin@example.com\"]\nretry_max_secs = 2\ntimezone = \"America/New_York\"\n",
    );
    let text = fs::read_to_string(&sb.config).unwrap();
    sb.set_config(&format!(
        "{text}\n[mail.smtp]\nhost = \"127.0.0.1\"\nport = {port}\ntimeout_secs = 5\n"
    ));
    sb.start_watcher();

    fs::write(sb.client_dir().join("tz.bin"), vec![7u8; 300]).unwrap();
    let before = now();
    sb.sftp_ok(&alice, &key, "put tz.bin\n");
    let after = now() + 1;
    wait_until("the report mail", Duration::from_secs(20), || {
        !maildir_mails(&maildir).is_empty()
    });
    let mail = &maildir_mails(&maildir)[0];
    let body = text_of(mail);
    let (start, end) = (field(&body, "Start:"), field(&body, "End:"));
    assert_shown_in("America/New_York", &start, before, after, "mail Start");
    assert_shown_in("America/New_York", &end, before, after, "mail End");
    assert!(
        start.contains(" -05:00 (EST)") || start.contains(" -04:00 (EDT)"),
        "{start}"
    );
    assert!(
        !body.contains(" UTC"),
        "no UTC time left in the mail\n{body}"
    );
    assert!(mail.contains(&end), "the HTML part shows the same time");

    // `report` on the log file: text in the zone, JSON keeps Unix seconds.
    let log = sb.path("log/sftp.log");
    let out = sb.sftpctl_ok(&["report", log.to_str().unwrap()]);
    assert_eq!(field(&stdout(&out), "Start:"), start);
    let out = sb.sftpctl_ok(&["report", "--json", log.to_str().unwrap()]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let t = json[0]["start"].as_i64().unwrap();
    assert_eq!(glibc("America/New_York", t), start);

    // list-users: the last session in the zone; JSON in RFC 3339 UTC.
    let mut row = String::new();
    wait_until(
        "list-users to show the session",
        Duration::from_secs(10),
        || {
            let out = sb.sftpctl_ok(&["list-users"]);
            row = stdout(&out)
                .lines()
                .find(|l| l.starts_with(&alice))
                .unwrap_or_default()
                .to_string();
            row.contains(&end)
        },
    );
    let out = sb.sftpctl_ok(&["list-users", "--json"]);
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let last = rows[0]["last_session"].as_str().unwrap().to_string();
    let utc = Command::new("date")
        .args(["-u", "-d", &last, "+%s"])
        .output()
        .unwrap();
    let t: i64 = String::from_utf8(utc.stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        last.ends_with('Z') && glibc("America/New_York", t) == end,
        "{last}"
    );
}

#[test]
fn a_bad_timezone_is_refused_in_one_line_and_changes_nothing() {
    let sb = Sandbox::new();
    let good = fs::read_to_string(&sb.config).unwrap();
    for bad in [
        "Mars/Olympus",
        "../../../etc/passwd",
        "/etc/localtime",
        "Europe/Berlin\nx",
    ] {
        let name = serde_json::to_string(bad).unwrap();
        sb.set_config(&good.replacen("[mail]\n", &format!("[mail]\ntimezone = {name}\n"), 1));
        let snap = sb.snapshot();
        let out = sb.sftpctl(&["init"]);
        assert_fails_one_line(&out, 2);
        assert!(stderr(&out).contains("mail.timezone"), "{}", stderr(&out));
        assert_eq!(sb.snapshot(), snap, "init with {bad:?} changed something");
    }
    sb.set_config(&good.replacen("[mail]\n", "[mail]\ntimezone = \"Asia/Kolkata\"\n", 1));
    sb.sftpctl_ok(&["list-users"]);
}

/// The host's zone (no `mail.timezone`): `TZ` as the C library reads it; zone data that
/// cannot be read gives UTC and a warning, never a failure.
#[test]
fn the_hosts_zone_follows_tz_and_unreadable_zone_data_falls_back_to_utc() {
    let sb = Sandbox::new();
    let log = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/openssh-9.2-rsyslog-file.log"
    );
    let run = |tz: &str| {
        Command::new(support::SFTPCTL)
            .arg("--config")
            .arg(&sb.config)
            .args(["report", "--trust-unverified", log])
            .env_remove("SFTPCTL_CONFIG")
            .env("TZ", tz)
            .output()
            .unwrap()
    };
    let out = run("Asia/Kolkata");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        field(&stdout(&out), "Start:"),
        "2026-11-27 21:34:18 +05:30 (IST)"
    );
    let out = run(":Europe/Berlin");
    assert_eq!(
        field(&stdout(&out), "Start:"),
        "2026-11-27 17:04:18 +01:00 (CET)"
    );
    let out = run("/nonexistent/zone");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        field(&stdout(&out), "Start:"),
        "2026-11-27 16:04:18 +00:00 (UTC)"
    );
    assert!(
        stderr(&out).contains("warning: cannot read the host's time zone"),
        "{}",
        stderr(&out)
    );
}

/// A zone the tz database no longer has (tzdata renames; Debian 13 moved old names to
/// tzdata-legacy) must not stop the watcher: it mails in UTC and warns. The admin's commands
/// refuse the same config (the test above), so the typo case still shows at once.
#[test]
fn the_watcher_keeps_mailing_in_utc_when_its_zone_is_missing() {
    let env = watch_common::Env::new("tz-missing", "timezone = \"Mars/Olympus\"");
    let log = fs::read(watch_common::fixture("openssh-9.2-rsyslog-file.log")).unwrap();
    let (code, err) = env.watch_stdin(&log);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        err.contains("warning: mail.timezone: unknown time zone \"Mars/Olympus\"")
            && err.contains("times are shown in UTC"),
        "{err}"
    );
    let mails = env.mails();
    assert_eq!(mails.len(), 5, "{err}");
    let text = watch_common::text_part(&mails[0]);
    assert!(field(&text, "Start:").ends_with(" +00:00 (UTC)"), "{text}");
}
