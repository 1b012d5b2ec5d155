//! `sftpctl report` over the whole history, end to end: real sshd, rsyslogd and OpenSSH sftp
//! sessions, real `logrotate -f` with the config `init` rendered for the sandbox (compress,
//! delaycompress, rsyslog's SIGHUP), then every filter and the CSV output read back with
//! Python's csv module. Runs as root.

mod support;

use std::fs;
use std::io::Write;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use support::{assert_fails_one_line, run_with_timeout, show, stdout, Sandbox, DEADLINE};

/// Kills (and reaps) a child when the test ends, however it ends.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct World {
    sb: Sandbox,
    alice: String,
    alice_key: PathBuf,
    bob: String,
    bob_key: PathBuf,
}

fn world() -> World {
    let mut sb = Sandbox::new();
    sb.sftpctl_ok(&["init"]);
    sb.start_rsyslogd();
    let alice = sb.user("alice");
    let bob = sb.user("bob");
    let (alice_key, alice_pub) = sb.keygen("alice");
    let (bob_key, bob_pub) = sb.keygen("bob");
    sb.sftpctl_ok(&["add-user", &alice, "--key", alice_pub.to_str().unwrap()]);
    sb.sftpctl_ok(&["add-user", &bob, "--key", bob_pub.to_str().unwrap()]);
    sb.start_sshd();
    World {
        sb,
        alice,
        alice_key,
        bob,
        bob_key,
    }
}

fn client_file(sb: &Sandbox, name: &str, text: &str) {
    fs::write(sb.client_dir().join(name), text).unwrap();
}

/// `logrotate -f` with the file `init` rendered (its postrotate HUPs the sandbox's rsyslogd
/// and refreshes the links with the sandbox's config).
fn logrotate(sb: &Sandbox) {
    let out = run_with_timeout(
        Command::new("logrotate")
            .arg("-f")
            .arg("-s")
            .arg(sb.path("run/logrotate.state"))
            .arg(sb.path("etc/logrotate.d/sftpctl")),
        b"",
        DEADLINE,
    );
    assert!(out.status.success(), "logrotate\n{}", show(&out));
}

fn now_utc() -> String {
    let out = Command::new("date")
        .args(["-u", "+%Y-%m-%dT%H:%M:%SZ"])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn report_json(sb: &Sandbox, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["report", "--json"];
    all.extend_from_slice(args);
    let out = sb.sftpctl_ok(&all);
    let v: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("report {args:?}: {e}\n{}", show(&out)));
    v.as_array().unwrap().clone()
}

fn paths(r: &Value, list: &str) -> Vec<String> {
    r[list]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| match e {
            Value::String(s) => s.clone(),
            e if e.get("path").is_some() => e["path"].as_str().unwrap().to_string(),
            e => format!(
                "{} -> {}",
                e["old"].as_str().unwrap(),
                e["new"].as_str().unwrap()
            ),
        })
        .collect()
}

fn users(reports: &[Value]) -> Vec<String> {
    reports
        .iter()
        .map(|r| r["user"].as_str().unwrap().to_string())
        .collect()
}

fn wait_file(path: &Path) {
    support::wait_until(&format!("{}", path.display()), DEADLINE, || path.exists());
}

/// alice's session A, then bob's session B open across two rotations (its start ends up in
/// `sftp.log.2.gz`, its end in `sftp.log.1`), then alice's session C: `report` with no FILE
/// reads all three logs oldest first and reports B once, whole; every filter narrows.
#[test]
fn a_session_across_a_gzip_rotation_is_one_session_and_every_filter_narrows() {
    let w = world();
    let sb = &w.sb;
    client_file(sb, "contract.pdf", "the contract\n");
    client_file(sb, "notes.txt", "notes\n");
    client_file(sb, "b1.txt", "first of bob\n");
    client_file(sb, "b2.csv", "second,of,bob\n");

    sb.sftp_ok(&w.alice, &w.alice_key, "put contract.pdf\nput notes.txt\n");
    sb.wait_log_line(&format!("session closed for local user {}", w.alice));
    std::thread::sleep(Duration::from_millis(1100));
    let between = now_utc();
    std::thread::sleep(Duration::from_millis(1100));

    let mut bob = sb.sftp_command(&w.bob, &w.bob_key);
    let mut bob = Reaped(
        bob.stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut bob_in = bob.0.stdin.take().unwrap();
    bob_in.write_all(b"put b1.txt\n").unwrap();
    sb.wait_log_line("close \"/data/b1.txt\"");

    logrotate(sb);
    let one = sb.log_file.with_extension("log.1");
    wait_file(&one);
    bob_in.write_all(b"put b2.csv\nrm b1.txt\n").unwrap();
    sb.wait_log_line("remove name \"/data/b1.txt\"");
    drop(bob_in);
    support::wait_until("bob's sftp to end", DEADLINE, || {
        bob.0.try_wait().unwrap().is_some()
    });
    assert!(bob.0.wait().unwrap().success(), "bob's sftp failed");
    sb.wait_log_line(&format!("session closed for local user {}", w.bob));

    logrotate(sb);
    let gz = sb.log_file.with_extension("log.2.gz");
    wait_file(&gz);
    assert_eq!(&fs::read(&gz).unwrap()[..2], &[0x1f, 0x8b], "a gzip file");
    let opened_in_gz = format!("session opened for local user {}", w.bob);
    assert!(
        !fs::read_to_string(&one).unwrap().contains(&opened_in_gz),
        "bob's session must start in the .gz rotation"
    );

    sb.sftp_ok(
        &w.alice,
        &w.alice_key,
        "get contract.pdf got.pdf\nrename notes.txt notes-old.txt\n-rm no-such-file\n",
    );
    sb.wait_log_line(&format!("session closed for local user {}", w.alice));
    assert!(sb.log_file.exists() && one.exists() && gz.exists());

    // No FILE: the three logs as one history.
    let all = report_json(sb, &[]);
    assert_eq!(
        users(&all),
        [w.alice.as_str(), w.bob.as_str(), w.alice.as_str()],
        "{all:#?}"
    );
    let b = &all[1];
    assert_eq!(paths(b, "uploads"), ["b1.txt", "b2.csv"], "{b:#}");
    assert_eq!(paths(b, "deletes"), ["b1.txt"]);
    assert_eq!(b["complete"], true, "{b:#}");
    assert!(
        b["start"].is_i64(),
        "the opening line (in the .gz) was read"
    );
    // The same logs given as FILEs, oldest first, are the same history.
    let files = [
        gz.to_str().unwrap(),
        one.to_str().unwrap(),
        sb.log_file.to_str().unwrap(),
    ];
    assert_eq!(users(&report_json(sb, &files)), users(&all));
    // The .gz alone: alice's first session and bob's, cut by the rotation.
    let gz_only = report_json(sb, &[gz.to_str().unwrap()]);
    assert_eq!(users(&gz_only), [w.alice.as_str(), w.bob.as_str()]);
    assert_eq!(paths(&gz_only[0], "uploads"), ["contract.pdf", "notes.txt"]);
    assert_eq!(gz_only[1]["complete"], false);

    // --user (repeatable)
    assert_eq!(
        users(&report_json(sb, &["--user", &w.bob])),
        [w.bob.as_str()]
    );
    assert_eq!(
        users(&report_json(sb, &["--user", &w.alice])),
        [w.alice.as_str(), w.alice.as_str()]
    );
    assert_eq!(
        report_json(sb, &["--user", &w.alice, "--user", &w.bob]).len(),
        3
    );

    // --action: only sessions with such an action, and only those entries.
    let downloads = report_json(sb, &["--action", "download"]);
    assert_eq!(users(&downloads), [w.alice.as_str()]);
    assert_eq!(paths(&downloads[0], "downloads"), ["contract.pdf"]);
    assert!(paths(&downloads[0], "renames").is_empty());
    assert!(paths(&downloads[0], "failures").is_empty());
    assert_eq!(downloads[0]["totals"]["renames"], 1, "totals stay whole");
    let failed = report_json(sb, &["--action", "failed"]);
    assert_eq!(users(&failed), [w.alice.as_str()]);
    assert_eq!(paths(&failed[0], "failures"), ["no-such-file"]);
    let deletes = report_json(sb, &["--action", "delete"]);
    assert_eq!(users(&deletes), [w.bob.as_str()]);
    assert!(paths(&deletes[0], "uploads").is_empty());
    let renames = report_json(sb, &["--action", "rename", "--action", "upload"]);
    assert_eq!(
        users(&renames),
        [w.alice.as_str(), w.bob.as_str(), w.alice.as_str()]
    );
    assert_eq!(
        paths(&renames[2], "renames"),
        ["notes.txt -> notes-old.txt"]
    );
    assert!(paths(&renames[2], "downloads").is_empty());

    // --path: sessions with a matching entry, only those entries.
    let pdf = report_json(sb, &["--path", "*.pdf"]);
    assert_eq!(users(&pdf), [w.alice.as_str(), w.alice.as_str()]);
    assert_eq!(paths(&pdf[0], "uploads"), ["contract.pdf"]);
    assert_eq!(paths(&pdf[1], "downloads"), ["contract.pdf"]);
    assert!(paths(&pdf[1], "renames").is_empty());
    let csvs = report_json(sb, &["--path", "b?.csv"]);
    assert_eq!(users(&csvs), [w.bob.as_str()]);
    assert_eq!(paths(&csvs[0], "uploads"), ["b2.csv"]);
    assert!(paths(&csvs[0], "deletes").is_empty());

    // --since / --until: a date window, a date-time, durations.
    assert_eq!(
        users(&report_json(sb, &["--until", &between])),
        [w.alice.as_str()]
    );
    assert_eq!(
        users(&report_json(sb, &["--since", &between])),
        [w.bob.as_str(), w.alice.as_str()]
    );
    assert_eq!(report_json(sb, &["--since", "1h"]).len(), 3);
    assert_eq!(report_json(sb, &["--until", "1h"]).len(), 0);
    assert_eq!(
        report_json(sb, &["--since", "2020-01-01", "--until", "2020-02-01"]).len(),
        0
    );
    assert_eq!(
        users(&report_json(
            sb,
            &["--since", &between, "--user", &w.alice, "--action", "download"]
        )),
        [w.alice.as_str()]
    );

    // Text and CSV see the same narrowing.
    let text = stdout(&sb.sftpctl_ok(&["report", "--user", &w.bob]));
    assert_eq!(text.matches("SFTP session of").count(), 1, "{text}");
    let csv = stdout(&sb.sftpctl_ok(&["report", "--format", "csv", "--user", &w.bob]));
    let rows = parse_csv(sb, &csv);
    let actions: Vec<&str> = rows.iter().map(|r| r["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["upload", "upload", "delete"], "{csv}");

    // Bad filter values: one line, exit 2, nothing on stdout.
    for bad in [
        &["--since", "yesterday"][..],
        &["--until", "2026-02-30"],
        &["--action", "uploads"],
        &["--format", "xml"],
        &["--path", "["],
        &["--user", "Not A User"],
        &["--since", "1h", "--until", "2h"],
        &["--json", "--format", "csv"],
    ] {
        let mut args = vec!["report"];
        args.extend_from_slice(bad);
        let out = sb.sftpctl(&args);
        assert_fails_one_line(&out, 2);
        assert!(out.stdout.is_empty(), "{bad:?}: {}", show(&out));
    }
}

/// Python's csv module reading what `report --format csv` printed, as a list of dicts.
fn parse_csv(sb: &Sandbox, csv: &str) -> Vec<Value> {
    let out = run_with_timeout(
        Command::new("/usr/bin/python3").args([
            "-c",
            "import csv, json, sys\n\
             rows = list(csv.DictReader(sys.stdin.buffer.read().decode('utf-8').splitlines(True)))\n\
             print(json.dumps(rows))",
        ]),
        csv.as_bytes(),
        DEADLINE,
    );
    assert!(out.status.success(), "python csv\n{}", show(&out));
    let _ = sb;
    serde_json::from_slice::<Value>(&out.stdout)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

/// Hostile upload names (quotes, commas, a formula, leading `-`, `+`, `@`) survive a CSV
/// round trip through Python's csv module, and every one a spreadsheet would run as a formula
/// is shown as text (one `'` in front).
#[test]
fn csv_parses_back_with_hostile_names_intact_and_formulas_neutralized() {
    let w = world();
    let sb = &w.sb;
    let hostile = [
        "=HYPERLINK(\"http:evil.example\",\"a,b\").txt",
        "+1+cmd.txt",
        "-2+3.txt",
        "@SUM(A1).txt",
        "plain, \"quoted\".txt",
        "'=already quoted.txt",
    ];
    client_file(sb, "src.txt", "x\n");
    let mut script = String::new();
    for name in hostile {
        let quoted = if name.contains('\'') {
            format!("\"{name}\"")
        } else {
            format!("'{name}'")
        };
        script.push_str(&format!("put src.txt {quoted}\n"));
    }
    sb.sftp_ok(&w.alice, &w.alice_key, &script);
    sb.wait_log_line(&format!("session closed for local user {}", w.alice));

    let json = report_json(sb, &[]);
    assert_eq!(json.len(), 1);
    assert_eq!(paths(&json[0], "uploads"), hostile);

    let out = sb.sftpctl_ok(&["report", "--format", "csv"]);
    let csv = stdout(&out);
    assert!(csv.starts_with("session,user,client,time,action,path,size,status\r\n"));
    let rows = parse_csv(sb, &csv);
    assert_eq!(rows.len(), hostile.len(), "{csv}");
    for (row, name) in rows.iter().zip(hostile) {
        let path = row["path"].as_str().unwrap();
        if name.starts_with(['=', '+', '-', '@', '\'']) {
            assert_eq!(path, format!("'{name}"), "neutralized, intact after the '");
        } else {
            assert_eq!(path, name);
        }
        assert_eq!(row["user"], w.alice.as_str());
        assert_eq!(row["action"], "upload");
        assert_eq!(row["size"], "2");
        assert_eq!(row["status"], "complete");
        let id = json[0]["id"].as_str().unwrap();
        assert_eq!(
            row["session"].as_str().unwrap(),
            id.rsplit_once('-').unwrap().0,
            "the same session id in every run"
        );
        assert!(row["time"].as_str().unwrap().ends_with('Z'));
    }
    // No cell a spreadsheet would evaluate: none starts with a formula character.
    for row in &rows {
        for (_, v) in row.as_object().unwrap() {
            let v = v.as_str().unwrap();
            assert!(!v.starts_with(['=', '+', '-', '@']), "{v:?} in {csv}");
        }
    }
}

/// A symlinked log (as a rotation or as FILE) and a FIFO are refused as root with one line,
/// before anything is printed; the file the link points to is never read.
#[test]
fn a_symlinked_or_special_log_is_refused() {
    let w = world();
    let sb = &w.sb;
    sb.sftp_ok(&w.alice, &w.alice_key, "mkdir d\n");
    sb.wait_log_line(&format!("session closed for local user {}", w.alice));
    let secret = sb.path("run/secret.log");
    let line = fs::read_to_string(&sb.log_file).unwrap();
    fs::write(
        &secret,
        line.replace("mkdir name \"/data/d\"", "mkdir name \"/data/SECRET\""),
    )
    .unwrap();

    let rotation = sb.log_file.with_extension("log.1");
    symlink(&secret, &rotation).unwrap();
    let out = sb.sftpctl(&["report", "--json"]);
    assert_fails_one_line(&out, 2);
    assert!(out.stdout.is_empty(), "{}", show(&out));
    let err = support::stderr(&out);
    assert!(
        err.contains("symlink") && err.contains("sftp.log.1"),
        "{err}"
    );
    let out = sb.sftpctl(&["report", "--json", rotation.to_str().unwrap()]);
    assert_fails_one_line(&out, 2);
    assert!(!stdout(&out).contains("SECRET"));
    fs::remove_file(&rotation).unwrap();

    let fifo = sb.path("log/sftp.log.2");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let out = sb.sftpctl(&["report", "--json"]);
    assert_fails_one_line(&out, 2);
    assert!(
        support::stderr(&out).contains("not a regular file"),
        "{}",
        show(&out)
    );
    fs::remove_file(&fifo).unwrap();

    // The real log alone still reads.
    let ok = report_json(sb, &[]);
    assert_eq!(paths(&ok[0], "mkdirs"), ["d"]);
}
