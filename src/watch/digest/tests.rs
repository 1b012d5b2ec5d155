//! The store and the daily turn: nothing lost, nothing twice, also across crashes.

use super::*;
use crate::letters::{self, To};

struct Env {
    tmp: PathBuf,
    config: Config,
}

impl Drop for Env {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.tmp);
    }
}

fn env(tag: &str, mode: MailMode) -> Env {
    let tmp = std::env::temp_dir().join(format!("sftpctl-digest-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let mut config = Config::default();
    config.watch.state_dir = tmp.join("state");
    config.mail.spool_dir = tmp.join("spool");
    config.mail.to = vec!["admin@example.org".into()];
    config.mail.mode = mode;
    config.mail.digest_at = "18:00".into();
    config.user_dir = tmp.join("users");
    config
        .mail
        .users
        .insert("alice".into(), "alice@client.example".into());
    Env { tmp, config }
}

fn digest(env: &Env) -> Digest {
    let addresses = Addresses::from_config(&env.config).unwrap();
    let mut d = Digest::from_config(&env.config, addresses).unwrap();
    d.zone = jiff::tz::TimeZone::UTC;
    d
}

fn unix(stamp: &str) -> i64 {
    stamp.parse::<jiff::Timestamp>().unwrap().as_second()
}

fn record(id: &str, user: &str, upload: &str) -> Vec<u8> {
    let mut r = crate::watch::report::example();
    r.id = id.into();
    r.user = user.into();
    r.uploads[0].path = upload.into();
    r.totals.uploads = 1;
    let mut line = serde_json::to_vec(&r).unwrap();
    line.push(b'\n');
    line
}

fn pending(env: &Env) -> Vec<letters::Letter> {
    letters::pending(&env.config).unwrap()
}

fn stored_count(env: &Env) -> usize {
    list(&env.config.watch.state_dir.join("outbox/digest/reports"))
        .unwrap()
        .len()
}

#[test]
fn digest_clients_are_stored_the_others_go_on() {
    let env = env("divert", MailMode::Session);
    std::fs::create_dir_all(&env.config.user_dir).unwrap();
    std::fs::write(
        env.config.user_dir.join("bob.toml"),
        "mail_mode = \"digest\"\n",
    )
    .unwrap();
    let mut d = digest(&env);
    let (a, b, junk) = (
        record("r1", "alice", "a.txt"),
        record("r2", "bob", "b.txt"),
        b"not json\n".to_vec(),
    );
    let todo: Vec<(usize, &[u8])> = vec![(0, &a), (1, &b), (2, &junk)];
    let (done, rest) = d.divert(&todo);
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].0, 1);
    assert!(done[0].1.is_ok());
    assert_eq!(rest.iter().map(|r| r.0).collect::<Vec<_>>(), [0, 2]);
    assert_eq!(stored_count(&env), 1);
    // The first report ever stored set the last digest time: nothing due before the next.
    assert!(d.last.is_some());
}

#[test]
fn a_day_of_reports_becomes_one_letter_per_recipient_once() {
    let env = env("day", MailMode::Digest);
    let mut d = digest(&env);
    d.write_last(unix("2026-12-02T18:00:00Z")).unwrap();
    let lines = [
        record("r1", "alice", "alice-1.txt"),
        record("r2", "bob", "bob-secret.txt"),
        record("r3", "alice", "alice-2.txt"),
    ];
    let todo: Vec<(usize, &[u8])> = lines.iter().enumerate().map(|(i, l)| (i, &l[..])).collect();
    let (done, rest) = d.divert(&todo);
    assert_eq!((done.len(), rest.len()), (3, 0));
    // Before 18:00 nothing goes; at 18:00 one letter to the admins, one to alice (bob has
    // no address of his own).
    assert_eq!(d.tick(unix("2026-12-03T17:59:59Z")).unwrap(), 0);
    assert!(pending(&env).is_empty());
    assert_eq!(d.tick(unix("2026-12-03T18:00:00Z")).unwrap(), 2);
    let letters = pending(&env);
    assert_eq!(letters.len(), 2);
    let admins = letters.iter().find(|l| l.to == To::Admins).unwrap();
    let alice = letters.iter().find(|l| l.to == To::Client).unwrap();
    assert_eq!(alice.user, "alice");
    assert!(
        admins.text.contains("3 sessions of 2 clients"),
        "{}",
        admins.text
    );
    for name in ["alice-1.txt", "alice-2.txt", "bob-secret.txt"] {
        assert!(admins.text.contains(name), "{name}: {}", admins.text);
    }
    assert!(alice.text.contains("alice-2.txt"));
    assert!(
        !alice.text.contains("bob") && !alice.html.as_ref().unwrap().contains("bob"),
        "a client's digest tells nothing of others:\n{}",
        alice.text
    );
    assert!(admins
        .subject
        .starts_with("SFTP digest 2026-12-03: 3 sessions of 2 clients"));
    assert_eq!(stored_count(&env), 0);
    // The same day again: nothing (also not for a watcher started again).
    assert_eq!(d.tick(unix("2026-12-03T18:30:00Z")).unwrap(), 0);
    let mut again = digest(&env);
    assert_eq!(again.tick(unix("2026-12-03T18:30:00Z")).unwrap(), 0);
    // An empty day sends nothing.
    assert_eq!(again.tick(unix("2026-12-04T18:00:01Z")).unwrap(), 0);
    assert_eq!(pending(&env).len(), 2);
}

#[test]
fn a_missed_digest_is_caught_up_once_at_start() {
    let env = env("catchup", MailMode::Digest);
    let mut d = digest(&env);
    d.write_last(unix("2026-12-01T18:00:00Z")).unwrap();
    let line = record("r1", "bob", "b.txt");
    d.divert(&[(0, &line[..])]);
    drop(d);
    // Down for two digest times: one digest, for the latest.
    let mut d = digest(&env);
    assert_eq!(d.tick(unix("2026-12-03T20:00:00Z")).unwrap(), 1);
    let l = pending(&env);
    assert_eq!(
        l[0].id,
        format!("digest-{}-admins", unix("2026-12-03T18:00:00Z"))
    );
    assert!(
        l[0].text
            .contains("since the previous digest (2026-12-01 18:00:00"),
        "{}",
        l[0].text
    );
    assert_eq!(d.last, Some(unix("2026-12-03T18:00:00Z")));
}

/// A crash after the letters were queued but before the store was cleared: the restarted
/// watcher finishes the period without a second letter, and a report stored meanwhile waits
/// for the next day.
#[test]
fn a_crash_in_the_middle_neither_loses_nor_doubles() {
    let env = env("crash", MailMode::Digest);
    let mut d = digest(&env);
    d.write_last(unix("2026-12-02T18:00:00Z")).unwrap();
    let first = record("r1", "alice", "first.txt");
    d.divert(&[(0, &first[..])]);
    let due = unix("2026-12-03T18:00:00Z");
    d.begin(due).unwrap();
    // The letters are queued, then the process dies (no `last`, the period dir stays).
    let records = vec![summary::stored(std::str::from_utf8(&first).unwrap())];
    for l in summary::letters(&d.templates, &d.addresses, &d.config, d.last, due, records).unwrap()
    {
        letters::queue_in(&d.letters, &l).unwrap();
    }
    drop(d);
    let mut d = digest(&env);
    let late = record("r2", "alice", "late.txt");
    d.divert(&[(0, &late[..])]);
    assert_eq!(d.tick(due + 60).unwrap(), 0, "no second letter");
    let letters = pending(&env);
    assert_eq!(letters.len(), 2, "admins and alice, once each");
    assert!(letters.iter().all(|l| !l.text.contains("late.txt")));
    assert_eq!(stored_count(&env), 1, "the late report waits");
    assert!(!env
        .config
        .watch
        .state_dir
        .join(format!("outbox/digest/period-{due}"))
        .exists());
    // The next day it goes.
    assert_eq!(d.tick(unix("2026-12-04T18:00:00Z")).unwrap(), 2);
    assert!(pending(&env).iter().any(|l| l.text.contains("late.txt")));
}

/// A crash while the reports were being moved: what was moved goes today, the rest tomorrow.
#[test]
fn a_crash_while_moving_keeps_every_report() {
    let env = env("crash-move", MailMode::Digest);
    let mut d = digest(&env);
    d.write_last(unix("2026-12-02T18:00:00Z")).unwrap();
    for (i, name) in ["m1", "m2"].iter().enumerate() {
        let line = record(name, "bob", &format!("{name}.txt"));
        d.divert(&[(i, &line[..])]);
    }
    let due = unix("2026-12-03T18:00:00Z");
    let target = d.period_dir(due);
    ensure_private_dir(&target).unwrap();
    std::fs::rename(d.reports_dir().join("m1.json"), target.join("m1.json")).unwrap();
    drop(d);
    let mut d = digest(&env);
    assert_eq!(d.tick(due + 5).unwrap(), 1);
    let text = &pending(&env)[0].text;
    assert!(
        text.contains("m1.txt") && !text.contains("m2.txt"),
        "{text}"
    );
    assert_eq!(d.tick(unix("2026-12-04T18:00:00Z")).unwrap(), 1);
    assert!(pending(&env).iter().any(|l| l.text.contains("m2.txt")));
}

#[test]
fn names_are_escaped_in_every_part() {
    let env = env("escape", MailMode::Digest);
    let mut d = digest(&env);
    d.write_last(unix("2026-12-02T18:00:00Z")).unwrap();
    let line = record(
        "r1",
        "alice",
        "<b>x</b>&\u{202e}fdp.exe\nBcc: evil@example.com",
    );
    d.divert(&[(0, &line[..])]);
    d.tick(unix("2026-12-03T18:00:00Z")).unwrap();
    for l in pending(&env) {
        let html = l.html.unwrap();
        assert!(
            html.contains("&lt;b&gt;x&lt;&#x2F;b&gt;&amp;<U+202E>fdp.exe\\nBcc: evil@example.com")
                || html.contains(
                    "&lt;b&gt;x&lt;&#x2F;b&gt;&amp;&lt;U+202E&gt;fdp.exe\\nBcc: evil@example.com"
                ),
            "{html}"
        );
        assert!(
            l.text.contains("<b>x</b>&<U+202E>fdp.exe\\nBcc"),
            "{}",
            l.text
        );
        for part in [&l.subject, &l.text, &html] {
            assert!(!part.contains('\u{202e}'));
        }
        assert!(!l.subject.contains('\n'));
    }
}

#[test]
fn a_client_in_session_mode_under_a_digest_default() {
    let env = env("override", MailMode::Digest);
    std::fs::create_dir_all(&env.config.user_dir).unwrap();
    std::fs::write(
        env.config.user_dir.join("carol.toml"),
        "mail_mode = \"session\"\n",
    )
    .unwrap();
    let d = digest(&env);
    assert_eq!(d.mode_of("carol"), MailMode::Session);
    assert_eq!(d.mode_of("alice"), MailMode::Digest);
    assert_eq!(d.mode_of("../etc"), MailMode::Digest);
}

#[test]
fn the_head_of_a_record_in_any_order() {
    let r = record("r1", "alice", "x");
    assert_eq!(
        head(&r),
        Some(Head {
            id: "r1".into(),
            user: "alice".into()
        })
    );
    assert_eq!(
        head(br#"{"a":[1,{"user":"no"}],"user":"bob","x":"y","id":"i"}"#),
        Some(Head {
            id: "i".into(),
            user: "bob".into()
        })
    );
    for bad in [
        &b"not json"[..],
        b"{\"id\":\"x\"}",
        b"{\"id\":1,\"user\":\"u\"}",
        b"[]",
        b"{\"id\":\"a\",\"id\":\"b\"}",
    ] {
        assert_eq!(head(bad), None, "{}", String::from_utf8_lossy(bad));
    }
}

#[test]
fn a_broken_last_file_does_not_stop_the_watcher() {
    let env = env("broken-last", MailMode::Digest);
    let mut d = digest(&env);
    let line = record("r1", "bob", "b.txt");
    d.divert(&[(0, &line[..])]);
    std::fs::write(
        env.config.watch.state_dir.join("outbox/digest/last"),
        "garbage",
    )
    .unwrap();
    let d = digest(&env);
    assert!(
        d.last.is_some(),
        "the stored report still has a digest to wait for"
    );
    std::fs::remove_file(env.config.watch.state_dir.join("outbox/digest/last")).unwrap();
    assert!(digest(&env).last.is_some());
}
