//! A flood of forged sessions while alice's real session runs: through `watch --stdin` (one
//! sender forges sessions by the thousand, sessions with long lists, lines of made-up pids and
//! huge host names), and end to end (a plain local account floods the watcher's UDP port
//! while alice uploads with the OpenSSH sftp client through a real sshd and rsyslogd).
//! Alice's report must arrive whole, and the flood must not turn into one mail per forged
//! session.

mod support;
mod watch_common;

use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

use support::{wait_until, Sandbox};
use watch_common::*;

const UPLOADS: usize = 30;
const PER_USER: usize = 50;

fn line(out: &mut Vec<u8>, host: &str, pid: u32, msg: &str) {
    writeln!(
        out,
        "2026-11-27T16:00:00.000000+00:00 {host} internal-sftp[{pid}]: {msg}"
    )
    .unwrap();
}

/// The flood in pieces, so alice's lines can be spread over it.
fn flood() -> Vec<Vec<u8>> {
    let mut pieces = Vec::new();
    let mut piece = Vec::new();
    // Forged sessions, five times the table.
    for pid in 10_000..15_000u32 {
        line(
            &mut piece,
            "vm",
            pid,
            "session opened for local user mallory from [192.0.2.9]",
        );
        line(&mut piece, "vm", pid, "remove name \"/data/forged\"");
        if pid % 100 == 0 {
            pieces.push(std::mem::take(&mut piece));
        }
    }
    // Lines of pids that never opened a session.
    for pid in 20_000..25_000u32 {
        line(&mut piece, "vm", pid, "remove name \"/data/headless\"");
        if pid % 100 == 0 {
            pieces.push(std::mem::take(&mut piece));
        }
    }
    // Sessions with long lists, past max_session_bytes each and max_sessions_bytes together.
    let name = "n".repeat(400);
    for pid in 30_000..30_400u32 {
        line(
            &mut piece,
            "vm",
            pid,
            "session opened for local user mallory from [192.0.2.9]",
        );
        for i in 0..40 {
            line(
                &mut piece,
                "vm",
                pid,
                &format!("remove name \"/data/{name}{i}\""),
            );
        }
        if pid % 10 == 0 {
            pieces.push(std::mem::take(&mut piece));
        }
    }
    // Sessions of made-up users, each a name the watcher could write a file for.
    for pid in 35_000..37_000u32 {
        line(
            &mut piece,
            "vm",
            pid,
            &format!("session opened for local user forged{pid} from [192.0.2.9]"),
        );
        line(&mut piece, "vm", pid, "remove name \"/data/x\"");
        line(
            &mut piece,
            "vm",
            pid,
            &format!("session closed for local user forged{pid} from [192.0.2.9]"),
        );
        if pid % 100 == 0 {
            pieces.push(std::mem::take(&mut piece));
        }
    }
    // Host names of 20 KB.
    let host = "h".repeat(20_000);
    for pid in 40_000..40_050u32 {
        line(&mut piece, &host, pid, "remove name \"/data/x\"");
    }
    pieces.push(piece);
    pieces
}

#[test]
fn a_flood_of_forged_sessions_does_not_evict_or_lose_a_real_sessions_report() {
    let env = Env::new("flood", "");
    std::fs::write(
        &env.config,
        format!(
            "[watch]\nstate_dir = \"{d}/state\"\nmax_open_sessions = 100\nmax_session_bytes = 8192\nmax_sessions_bytes = 2097152\nmax_reports_per_user = {PER_USER}\n\n[mail]\nspool_dir = \"{d}/spool\"\nto = [\"admin@example.com\"]\n",
            d = env.dir.display()
        ),
    )
    .unwrap();

    let mut real = vec!["session opened for local user alice from [198.51.100.4]".to_string()];
    for i in 0..UPLOADS {
        real.push(format!(
            "open \"/data/contract-{i}.pdf\" flags WRITE,CREATE,TRUNCATE mode 0644"
        ));
        real.push(format!(
            "close \"/data/contract-{i}.pdf\" bytes read 0 written {}",
            100 + i
        ));
    }
    real.push("session closed for local user alice from [198.51.100.4]".to_string());
    let pieces = flood();
    assert!(pieces.len() >= real.len());
    let mut input = Vec::new();
    let every = pieces.len() / real.len();
    let mut real = real.iter();
    for (i, piece) in pieces.iter().enumerate() {
        if i % every == 0 {
            if let Some(m) = real.next() {
                line(&mut input, "vm", 4242, m);
            }
        }
        input.extend_from_slice(piece);
    }
    for m in real {
        line(&mut input, "vm", 4242, m);
    }

    let (code, err) = env.watch_stdin(&input);
    assert_eq!(code, Some(0), "{err}");
    let texts: Vec<String> = env.mails().iter().map(|m| text_part(m)).collect();

    let alice: Vec<&String> = texts
        .iter()
        .filter(|t| t.contains("SFTP session of alice"))
        .collect();
    assert_eq!(
        alice.len(),
        1,
        "alice's session was split or lost: {alice:?}"
    );
    let alice = alice[0];
    assert!(!alice.contains("INCOMPLETE"), "{alice}");
    assert!(alice.contains(&format!("UPLOADED: {UPLOADS},")), "{alice}");
    for i in 0..UPLOADS {
        assert!(
            alice.contains(&format!("contract-{i}.pdf  {} bytes", 100 + i)),
            "upload {i} missing: {alice}"
        );
    }

    // The flood became at most PER_USER mails per made-up user and one summary each.
    let mallory = texts
        .iter()
        .filter(|t| t.contains("SFTP session of mallory"))
        .count();
    let summaries: Vec<&String> = texts.iter().filter(|t| t.contains("summed up")).collect();
    // One window (of wall-clock time), two if the run crosses the hour.
    assert!(
        (PER_USER + 1..=2 * (PER_USER + 1)).contains(&mallory),
        "{mallory} mails of mallory\n{err}"
    );
    assert!(
        summaries
            .iter()
            .any(|t| t.contains("of mallory") && t.contains("watch.max_reports_per_user")),
        "{summaries:?}"
    );
    let forged = texts.iter().filter(|t| t.contains("of forged")).count();
    assert_eq!(
        forged, 2000,
        "the made-up users' sessions are each reported"
    );
    assert!(
        texts.len() <= 4 * (PER_USER + 1) + 1 + forged,
        "{} mails",
        texts.len()
    );
    // No file per made-up user name in the state dir (list-users' last sessions are kept for
    // accounts of this host only).
    let kept: Vec<_> = std::fs::read_dir(env.state().join("last-session"))
        .map(|d| d.map(|e| e.unwrap().file_name()).collect())
        .unwrap_or_default();
    assert!(
        kept.iter()
            .all(|n| nix::unistd::User::from_name(n.to_str().unwrap())
                .unwrap()
                .is_some()),
        "{kept:?}"
    );
}

/// Kills (and reaps) a child when the test ends, however it ends.
struct Reaped(std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The attack as a local account performs it today: datagrams to the watcher's UDP port, a
/// new forged session of "mallory" each, plus lines of made-up pids, paced so that the socket
/// itself does not overflow (that part is the feed's job). Before the eviction order, every
/// pause of alice's session longer than the flood needed to open `max_open_sessions` new ones
/// pushed her session out and split her report.
#[test]
fn a_local_account_flooding_forged_sessions_does_not_split_a_real_sftp_sessions_report() {
    let mut sb = Sandbox::new();
    let alice = sb.user("alice");
    let (key, public) = sb.keygen("alice");
    sb.sftpctl_ok(&["init"]);
    sb.start_rsyslogd();
    sb.sftpctl_ok(&["add-user", &alice, "--key", public.to_str().unwrap()]);
    sb.start_sshd();
    // The UDP listener is an opt-in without credentials (docs/watch.md, "Trusted feed"): any
    // local account can send to it, which is the attack here. alice's real lines come through
    // rsyslog and the trusted feed socket.
    let addr = sb.take_udp_port();
    sb.edit_config(
        "[watch]\n",
        &format!(
            "[watch]\nlisten = \"{addr}\"\nmax_open_sessions = 200\nmax_reports_per_user = {PER_USER}\n"
        ),
    );
    sb.start_watcher();
    let port = addr.port();
    wait_until(
        "the watcher to listen on UDP",
        Duration::from_secs(10),
        || std::net::UdpSocket::bind(("127.0.0.1", port)).is_err(),
    );

    let ev = sb.local_account("ev");
    let flood = format!(
        r#"
import socket, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
pid = 100000
while True:
    for _ in range(200):
        pid += 1
        for m in ("session opened for local user mallory from [192.0.2.9]", 'remove name "/data/forged"'):
            s.sendto(("<38>Nov 27 16:04:26 vm internal-sftp[%d]: %s" % (pid, m)).encode(), ("127.0.0.1", {port}))
        s.sendto(("<38>Nov 27 16:04:26 vm internal-sftp[%d]: remove name \"/data/x\"" % (pid + 500000)).encode(), ("127.0.0.1", {port}))
    time.sleep(0.02)
"#
    );
    let _flooder = Reaped(
        ev.command("/usr/bin/python3")
            .args(["-c", &flood])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    // The flood is under way: the watcher reports forged sessions it pushes out.
    wait_until(
        "the flood to reach the watcher",
        Duration::from_secs(20),
        || env_mails(&sb).len() >= 5,
    );

    let files = 4;
    let mut script = String::new();
    for i in 0..files {
        std::fs::write(
            sb.client_dir().join(format!("contract-{i}.pdf")),
            vec![b'x'; 1000 + i],
        )
        .unwrap();
        // Pauses between requests, as a person at the prompt makes (the client's `!` runs a
        // local command).
        script += &format!("put contract-{i}.pdf\n!sleep 0.3\n");
    }
    sb.sftp_ok(&alice, &key, &script);

    let alice_mails = || -> Vec<String> {
        env_mails(&sb)
            .into_iter()
            .filter(|t| t.contains(&format!("SFTP session of {alice}")))
            .collect()
    };
    wait_until("alice's report", Duration::from_secs(20), || {
        !alice_mails().is_empty()
    });
    std::thread::sleep(Duration::from_secs(1));
    let got = alice_mails();
    assert_eq!(got.len(), 1, "alice's session was split: {got:#?}");
    let text = &got[0];
    assert!(!text.contains("INCOMPLETE"), "{text}");
    assert!(text.contains(&format!("UPLOADED: {files},")), "{text}");
    for i in 0..files {
        assert!(
            text.contains(&format!("contract-{i}.pdf  {} bytes", 1000 + i)),
            "{text}"
        );
    }
    let mallory: Vec<String> = env_mails(&sb)
        .into_iter()
        .filter(|t| t.contains("SFTP session of mallory"))
        .collect();
    // At most PER_USER a window (two windows if the test crosses the hour); the summary is
    // written when the window ends or the watcher stops.
    assert!(
        mallory.len() <= 2 * PER_USER,
        "{} mails of the forged user: {:#?}",
        mallory.len(),
        mallory
            .iter()
            .map(|t| t.lines().take(4).collect::<Vec<_>>().join(" | "))
            .collect::<Vec<_>>()
    );
}

fn env_mails(sb: &Sandbox) -> Vec<String> {
    read_dir_texts(&sb.path("spool"), "eml")
        .iter()
        .map(|m| text_part(m))
        .collect()
}
