//! Letters (notices, new-files notices, welcome mails, digests) share the outbox and the
//! transports of the reports: over real SMTP (aiosmtpd) a letter another process queued waits
//! while the server is down, goes out once it is up, and is not sent again after a restart.

mod watch_common;

use std::time::Duration;

use nix::sys::signal::Signal;
use watch_common::*;

fn smtp_env(name: &str, smtp_port: u16) -> Env {
    Env::new(
        name,
        &format!(
            "transport = \"smtp\"\n[mail.smtp]\nhost = \"127.0.0.1\"\nport = {smtp_port}\ntimeout_secs = 2\n"
        ),
    )
}

/// What `letters::queue` writes (another process's queueing, e.g. `sftpctl policy run`).
fn queue_letter(env: &Env, id: &str) {
    let dir = env.state().join("outbox/letters/pending");
    std::fs::create_dir_all(&dir).unwrap();
    let letter = serde_json::json!({
        "id": id,
        "kind": "notice",
        "user": "alice",
        "to": "admins",
        "subject": "Quota of alice at 80 %",
        "text": "alice uses 4.0 GiB of 5G.\n",
    });
    std::fs::write(dir.join(format!("{id}.json")), letter.to_string()).unwrap();
}

fn pending_letters(env: &Env) -> usize {
    std::fs::read_dir(env.state().join("outbox/letters/pending")).map_or(0, |d| d.flatten().count())
}

#[test]
fn a_letter_waits_for_the_server_and_is_sent_once() {
    let smtp_port = free_tcp_port();
    let env = smtp_env("letters-smtp", smtp_port);
    let maildir = env.dir.join("maildir");
    queue_letter(&env, "quota-80-alice-1");
    let watcher = env.spawn(&["watch", "--foreground"]);
    wait_listening(&env);
    std::thread::sleep(Duration::from_secs(3));
    assert!(maildir_mails(&maildir).is_empty());
    assert_eq!(pending_letters(&env), 1, "still waiting in the outbox");

    let _smtp = start_smtp(smtp_port, &maildir);
    wait_for(
        "the letter once the server is up",
        Duration::from_secs(20),
        || maildir_mails(&maildir).len() == 1,
    );
    let mail = &maildir_mails(&maildir)[0];
    assert!(mail.contains("Subject: Quota of alice at 80 %"), "{mail}");
    assert!(mail.contains("alice uses 4.0 GiB of 5G."), "{mail}");
    assert_eq!(pending_letters(&env), 0);
    assert!(env
        .state()
        .join("outbox/letters/sent/quota-80-alice-1")
        .exists());

    // Stopped and started again, and a second deliverer (`policy run` delivers letters at
    // its end): nothing is sent a second time.
    watcher.signal(Signal::SIGTERM);
    let (code, err) = watcher.wait(Duration::from_secs(15));
    assert_eq!(code, Some(0), "{err}");
    let _again = env.spawn(&["watch", "--foreground"]);
    wait_listening(&env);
    let out = env
        .command()
        .args(["policy", "run"])
        .output()
        .expect("sftpctl policy run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(maildir_mails(&maildir).len(), 1, "sent twice");
}
