//! The welcome mail end to end (issue 12, item 2): real sshd (its `sshd -T` and its host keys
//! of every type), the real SMTP server (Debian's aiosmtpd) and the file transport. The
//! fingerprints the mail states are checked against `ssh-keygen -lf` of the host keys, against
//! `ssh-keyscan` of the stated port, and against the very line the OpenSSH client prints on its
//! first connection (captured through SSH_ASKPASS); the stated host, port, user and folder
//! must make a working sftp session. Run as root.

mod support;
mod watch_common;

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use support::{
    assert_fails_one_line, run_with_timeout, show, stdout, wait_until, Sandbox, SFTPCTL,
};
use watch_common::{free_tcp_port, maildir_mails};

const PYTHON: &str = "/usr/bin/python3";
const PASSWORD: &str = "Sup3r-Secret-Pw-4711";

/// A mail's recipients, subject and both decoded parts, read by Python's `email` module.
#[derive(Debug)]
struct Parsed {
    to: String,
    subject: String,
    text: String,
    html: String,
    /// The HTML part with entities decoded (what a reader sees in the markup's text).
    html_text: String,
}

fn parse_mail(raw: &str) -> Parsed {
    let script = r#"
import email, html, json, sys
from email import policy
m = email.message_from_bytes(sys.stdin.buffer.read(), policy=policy.default)
parts = {p.get_content_type(): p.get_content() for p in m.walk() if not p.is_multipart()}
print(json.dumps({"to": str(m["To"]), "subject": str(m["Subject"]),
                  "text": parts.get("text/plain", ""), "html": parts.get("text/html", ""),
                  "html_text": html.unescape(parts.get("text/html", ""))}))
"#;
    let out = run_with_timeout(
        Command::new(PYTHON).args(["-c", script]),
        raw.as_bytes(),
        Duration::from_secs(10),
    );
    assert!(out.status.success(), "python email\n{}", show(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let s = |k: &str| v[k].as_str().unwrap().replace("\r\n", "\n");
    Parsed {
        to: s("to"),
        subject: s("subject"),
        text: s("text"),
        html: s("html"),
        html_text: s("html_text"),
    }
}

/// `(TYPE, SHA256:…)` of every key in `file`, as `ssh-keygen -lf` prints them.
fn keygen_fingerprints(file: &Path) -> Vec<(String, String)> {
    let out = run_with_timeout(
        Command::new("ssh-keygen").arg("-lf").arg(file),
        b"",
        Duration::from_secs(10),
    );
    assert!(out.status.success(), "ssh-keygen -lf\n{}", show(&out));
    stdout(&out)
        .lines()
        .map(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            let kind = words.last().unwrap().trim_matches(['(', ')']).to_string();
            (kind, words[1].to_string())
        })
        .collect()
}

/// The lines of the mail that say what ssh prints (`… key fingerprint is SHA256:….`).
fn stated_host_key_lines(text: &str) -> BTreeSet<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| {
            l.split_once(" key fingerprint is SHA256:")
                .is_some_and(|(kind, _)| {
                    !kind.is_empty()
                        && kind
                            .bytes()
                            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'-')
                })
        })
        .map(str::to_string)
        .collect()
}

fn field(text: &str, label: &str) -> String {
    text.lines()
        .find_map(|l| l.trim().strip_prefix(label))
        .unwrap_or_else(|| panic!("no {label} in\n{text}"))
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

/// Adds an RSA and an ECDSA host key to the sandbox's sshd (it has an ED25519 one).
fn more_host_keys(sb: &Sandbox) -> Vec<PathBuf> {
    let mut keys = vec![sb.path("etc/ssh/ssh_host_ed25519_key")];
    let mut lines = String::new();
    for (kind, bits) in [("rsa", "2048"), ("ecdsa", "256")] {
        let key = sb.path(&format!("etc/ssh/ssh_host_{kind}_key"));
        let out = run_with_timeout(
            Command::new("ssh-keygen")
                .args(["-q", "-t", kind, "-b", bits, "-N", "", "-f"])
                .arg(&key),
            b"",
            Duration::from_secs(30),
        );
        assert!(out.status.success(), "ssh-keygen {kind}\n{}", show(&out));
        lines.push_str(&format!("HostKey {}\n", key.display()));
        keys.push(key);
    }
    let config = sb.path("etc/ssh/sshd_config");
    let text = fs::read_to_string(&config).unwrap();
    let anchor = format!("PidFile {}/run/sshd.pid\n", sb.dir.display());
    assert!(text.contains(&anchor));
    fs::write(
        &config,
        text.replacen(&anchor, &format!("{lines}{anchor}"), 1),
    )
    .unwrap();
    keys
}

/// The line the OpenSSH client prints about the host key `algorithm` on the first connection,
/// captured by an SSH_ASKPASS program that answers "no".
fn ssh_first_connect_line(sb: &Sandbox, host: &str, port: &str, algorithm: &str) -> String {
    let capture = sb.path(&format!("run/askpass-{algorithm}.txt"));
    let askpass = sb.path("run/askpass.sh");
    fs::write(
        &askpass,
        "#!/bin/sh\nprintf '%s\\n' \"$1\" >> \"$ASKPASS_OUT\"\necho no\n",
    )
    .unwrap();
    fs::set_permissions(&askpass, fs::Permissions::from_mode(0o755)).unwrap();
    let known = sb.path("run/known_hosts-empty");
    fs::write(&known, "").unwrap();
    let out = run_with_timeout(
        Command::new("ssh")
            .args(["-F", "/dev/null", "-p", port])
            .args(["-o", &format!("HostKeyAlgorithms={algorithm}")])
            .args(["-o", "StrictHostKeyChecking=ask"])
            .arg("-o")
            .arg(format!("UserKnownHostsFile={}", known.display()))
            .args([
                "-o",
                "GlobalKnownHostsFile=/dev/null",
                "-o",
                "ConnectTimeout=5",
            ])
            .arg(format!("nobody@{host}"))
            .arg("true")
            .env("SSH_ASKPASS", &askpass)
            .env("SSH_ASKPASS_REQUIRE", "force")
            .env("DISPLAY", ":0")
            .env("ASKPASS_OUT", &capture),
        b"",
        Duration::from_secs(15),
    );
    let prompt = fs::read_to_string(&capture)
        .unwrap_or_else(|_| panic!("ssh asked nothing for {algorithm}\n{}", show(&out)));
    prompt
        .lines()
        .find(|l| l.contains("key fingerprint is"))
        .unwrap_or_else(|| panic!("no fingerprint line in ssh's prompt:\n{prompt}"))
        .to_string()
}

/// Sandbox with sshd serving ED25519, RSA and ECDSA host keys, the SMTP server and the
/// transport pointed at it; `welcome` is the extra `[welcome]` text.
fn smtp_sandbox(welcome: &str) -> (Sandbox, PathBuf, Vec<PathBuf>) {
    let mut sb = Sandbox::new();
    let host_keys = more_host_keys(&sb);
    sb.sftpctl_ok(&["init"]);
    sb.start_rsyslogd();
    let maildir = sb.path("maildir");
    let port = sb.start_smtp(&maildir);
    sb.edit_config(
        "[mail]\n",
        "[mail]\ntransport = \"smtp\"\nto = [\"admin@example.com\"]\nretry_max_secs = 2\n",
    );
    let text = fs::read_to_string(&sb.config).unwrap();
    sb.set_config(&format!(
        "{text}\n[mail.smtp]\nhost = \"127.0.0.1\"\nport = {port}\ntimeout_secs = 5\n\n[welcome]\n{welcome}"
    ));
    (sb, maildir, host_keys)
}

#[test]
fn the_welcome_states_what_ssh_shows_and_its_details_connect() {
    let (mut sb, maildir, host_keys) = smtp_sandbox("host = \"127.0.0.1\"\n");
    let alice = sb.user("alice");
    let address = format!("{alice}@client.example");
    let (key, public) = sb.keygen("alice");
    // A password is set too: it must never be in the mail.
    let out = run_with_timeout(
        Command::new(SFTPCTL)
            .arg("--config")
            .arg(&sb.config)
            .args(["add-user", &alice, "--key"])
            .arg(&public)
            .args(["--email", &address, "--welcome", "--password-stdin"]),
        format!("{PASSWORD}\n").as_bytes(),
        Duration::from_secs(20),
    );
    assert!(out.status.success(), "add-user --welcome\n{}", show(&out));
    assert!(stdout(&out).contains("welcome mail to"), "{}", show(&out));
    sb.start_sshd();

    // Delivered at once, to the client alone.
    let mails = maildir_mails(&maildir);
    assert_eq!(mails.len(), 1, "one mail: the welcome");
    assert!(!mails[0].contains(PASSWORD), "the password is in the mail");
    let mail = parse_mail(&mails[0]);
    assert_eq!(mail.to, address);
    assert!(mail.subject.contains(&alice), "{}", mail.subject);
    for part in [&mail.text, &mail.html_text] {
        assert!(!part.contains(PASSWORD));
        assert!(!part.to_lowercase().contains("password:"), "{part}");
    }

    // Every host key, as ssh-keygen -lf prints its fingerprint and type, and nothing else.
    let mut expected = BTreeSet::new();
    for k in &host_keys {
        let (kind, fp) = keygen_fingerprints(&k.with_extension("pub")).remove(0);
        expected.insert(format!("{kind} key fingerprint is {fp}."));
    }
    assert_eq!(expected.len(), 3);
    assert_eq!(stated_host_key_lines(&mail.text), expected, "{}", mail.text);
    for line in &expected {
        assert!(mail.html_text.contains(line.as_str()), "HTML lacks {line}");
    }
    // The client's key.
    let (kind, fp) = keygen_fingerprints(&public).remove(0);
    assert!(mail.text.contains(&format!("{kind} {fp}")), "{}", mail.text);

    // Host and port from the config and from sshd -T; the folder is the data dir.
    let (host, port, user, folder) = (
        field(&mail.text, "Host:"),
        field(&mail.text, "Port:"),
        field(&mail.text, "User name:"),
        field(&mail.text, "Folder:"),
    );
    assert_eq!(
        (host.as_str(), port.as_str(), user.as_str()),
        (
            "127.0.0.1",
            sb.ssh_port.to_string().as_str(),
            alice.as_str()
        )
    );
    assert_eq!(folder, "/data");

    // The OpenSSH client's own words on the first connection, per host key type.
    for algorithm in ["ssh-ed25519", "rsa-sha2-512", "ecdsa-sha2-nistp256"] {
        let line = ssh_first_connect_line(&sb, &host, &port, algorithm);
        assert!(
            expected.contains(&line),
            "ssh said {line:?}; the mail states {expected:?}"
        );
    }
    // ssh-keyscan of the stated port gives the stated fingerprints.
    let out = run_with_timeout(
        Command::new("ssh-keyscan").args(["-p", &port, "-T", "5", &host]),
        b"",
        Duration::from_secs(15),
    );
    let scanned = sb.path("run/scanned");
    fs::write(&scanned, &out.stdout).unwrap();
    let from_scan: BTreeSet<String> = keygen_fingerprints(&scanned)
        .into_iter()
        .map(|(kind, fp)| format!("{kind} key fingerprint is {fp}."))
        .collect();
    assert_eq!(from_scan, expected);

    // sftp with exactly the stated host, port, user and folder works.
    fs::write(sb.client_dir().join("hello.txt"), b"hi").unwrap();
    let out = run_with_timeout(
        Command::new("sftp")
            .current_dir(sb.client_dir())
            .args(["-b", "-", "-F", "/dev/null", "-P", &port, "-i"])
            .arg(&key)
            .args([
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "UserKnownHostsFile=/dev/null",
            ])
            .args(["-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes"])
            .arg(format!("{user}@{host}")),
        format!("cd {folder}\nput hello.txt\n").as_bytes(),
        Duration::from_secs(15),
    );
    assert!(
        out.status.success(),
        "sftp with the stated details\n{}",
        show(&out)
    );
    assert_eq!(fs::read(sb.data(&alice).join("hello.txt")).unwrap(), b"hi");

    // Resend, after another key (with a hostile comment) was installed: listed, escaped.
    let hostile = sb.path("keys/hostile");
    let out = run_with_timeout(
        Command::new("ssh-keygen")
            .args([
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-C",
                "<img src=x onerror=alert(1)>",
                "-f",
            ])
            .arg(&hostile),
        b"",
        Duration::from_secs(10),
    );
    assert!(out.status.success());
    let hostile_pub = hostile.with_extension("pub");
    sb.sftpctl_ok(&["key", "add", &alice, hostile_pub.to_str().unwrap()]);
    let out = sb.sftpctl_ok(&["welcome", &alice]);
    assert!(stdout(&out).contains("sent"), "{}", show(&out));
    let mails = maildir_mails(&maildir);
    assert_eq!(mails.len(), 2, "the resend is a second mail");
    let again = mails
        .iter()
        .map(|m| parse_mail(m))
        .find(|m| m.text.contains("<img"))
        .expect("the resent mail lists the new key");
    let (_, fp2) = keygen_fingerprints(&hostile_pub).remove(0);
    assert!(again.text.contains(&fp2) && again.text.contains(&fp));
    assert!(again.html_text.contains(&fp2));
    assert!(!again.html.contains("<img"), "{}", again.html);
    assert!(again.html.contains("&lt;img"), "{}", again.html);
    assert_eq!(stated_host_key_lines(&again.text), expected);
}

#[test]
fn defaults_are_the_fqdn_and_sshds_port_and_the_config_overrides_them() {
    let sb = Sandbox::new();
    sb.sftpctl_ok(&["init"]);
    let bob = sb.user("bob");
    let (_, public) = sb.keygen("bob");
    let address = format!("{bob}@client.example");
    sb.sftpctl_ok(&[
        "add-user",
        &bob,
        "--key",
        public.to_str().unwrap(),
        "--email",
        &address,
        "--welcome",
    ]);
    let spooled = || -> Vec<Parsed> {
        let mut files: Vec<PathBuf> = fs::read_dir(sb.path("spool"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| {
                p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with("welcome-")
            })
            .collect();
        files.sort();
        files
            .iter()
            .map(|p| parse_mail(&fs::read_to_string(p).unwrap()))
            .collect()
    };
    let mails = spooled();
    assert_eq!(mails.len(), 1);
    let fqdn = Command::new("hostname").arg("--fqdn").output().unwrap();
    let fqdn = String::from_utf8(fqdn.stdout).unwrap().trim().to_string();
    assert_eq!(field(&mails[0].text, "Host:"), fqdn);
    assert_eq!(field(&mails[0].text, "Port:"), sb.ssh_port.to_string());
    assert_eq!(mails[0].to, address);
    let (kind, fp) = keygen_fingerprints(&sb.path("etc/ssh/ssh_host_ed25519_key.pub")).remove(0);
    assert_eq!(
        stated_host_key_lines(&mails[0].text),
        BTreeSet::from([format!("{kind} key fingerprint is {fp}.")])
    );

    let text = fs::read_to_string(&sb.config).unwrap();
    sb.set_config(&format!(
        "{text}\n[welcome]\nhost = \"sftp.example.com\"\nport = 2222\n"
    ));
    sb.sftpctl_ok(&["welcome", &bob]);
    let mails = spooled();
    assert_eq!(mails.len(), 2);
    let resent = mails
        .iter()
        .find(|m| m.text.contains("sftp.example.com"))
        .expect("the resend");
    assert_eq!(field(&resent.text, "Host:"), "sftp.example.com");
    assert_eq!(field(&resent.text, "Port:"), "2222");
    assert!(resent.text.contains(&format!(
        "sftp -P 2222 -i YOUR_PRIVATE_KEY {bob}@sftp.example.com"
    )));
}

#[test]
fn refusals_are_one_line_and_change_nothing() {
    let sb = Sandbox::new();
    sb.sftpctl_ok(&["init"]);
    let carol = sb.user("carol");
    sb.sftpctl_ok(&["add-user", &carol]);
    let dave = sb.user("dave");
    let good = fs::read_to_string(&sb.config).unwrap();

    let refused = |args: &[&str], why: &str| {
        let snap = sb.snapshot();
        let out = sb.sftpctl(args);
        assert_fails_one_line(&out, 2);
        assert!(
            support::stderr(&out).contains(why),
            "{args:?}: expected {why:?}\n{}",
            show(&out)
        );
        snap.assert_same(&sb.snapshot(), "refused");
    };
    // No address anywhere.
    refused(&["add-user", &dave, "--welcome"], "has no mail address");
    refused(&["welcome", &carol], "has no mail address");
    refused(&["welcome", &sb.user("nobody")], "");
    // Header injection through the address.
    refused(
        &[
            "add-user",
            &dave,
            "--email",
            "d@x.example\r\nBcc: evil@x.example",
            "--welcome",
        ],
        "--email",
    );
    sb.sftpctl_ok(&["set", &carol, &format!("email={carol}@client.example")]);
    let user_file = sb.path(&format!("etc/sftpctl/users/{carol}.toml"));
    let stored = fs::read_to_string(&user_file).unwrap();
    let address_line = format!("email = \"{carol}@client.example\"");
    assert!(stored.contains(&address_line), "{stored}");
    fs::write(
        &user_file,
        stored.replace(
            &address_line,
            "email = \"c@x.example\\r\\nBcc: evil@x.example\"",
        ),
    )
    .unwrap();
    refused(&["welcome", &carol], "mail address");
    fs::write(&user_file, &stored).unwrap();

    // Header injection through the configured host name.
    sb.set_config(&format!(
        "{good}\n[welcome]\nhost = \"sftp.example.com\\r\\nBcc: evil@x.example\"\n"
    ));
    refused(&["welcome", &carol], "welcome.host");
    sb.set_config(&good);

    // A template override that asks for what it cannot have.
    let templates = sb.path("templates");
    fs::create_dir_all(&templates).unwrap();
    fs::write(templates.join("welcome.txt"), "{{ password }}\n").unwrap();
    sb.edit_config(
        "[watch]\n",
        &format!("[watch]\ntemplate_dir = \"{}\"\n", templates.display()),
    );
    refused(
        &["add-user", &dave, "--email", "d@x.example", "--welcome"],
        "welcome mail template",
    );
    refused(&["welcome", &carol], "welcome mail template");
    sb.set_config(&good);

    // --dry-run says what would be mailed to whom, sends and changes nothing.
    let snap = sb.snapshot();
    let out = sb.sftpctl_ok(&[
        "add-user",
        &dave,
        "--email",
        "dave@client.example",
        "--welcome",
        "--dry-run",
    ]);
    let text = stdout(&out);
    assert!(text.contains("would mail dave@client.example"), "{text}");
    assert!(text.contains("key fingerprint is SHA256:"), "{text}");
    let out = sb.sftpctl_ok(&["welcome", &carol, "--dry-run"]);
    assert!(stdout(&out).contains(&format!("would mail {carol}@client.example")));
    snap.assert_same(&sb.snapshot(), "refused");

    // add-user --welcome without --email takes the stored address.
    sb.sftpctl_ok(&["add-user", &carol, "--welcome"]);
    let spooled: Vec<String> = fs::read_dir(sb.path("spool"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&format!("welcome-welcome-{carol}-")))
        .collect();
    assert_eq!(spooled.len(), 1, "{spooled:?}");
    let mail = parse_mail(&fs::read_to_string(sb.path("spool").join(&spooled[0])).unwrap());
    assert_eq!(mail.to, format!("{carol}@client.example"));
}

#[test]
fn a_transport_that_is_down_keeps_it_queued_and_the_watcher_delivers_it() {
    let mut sb = Sandbox::new();
    sb.sftpctl_ok(&["init"]);
    sb.start_rsyslogd();
    let smtp_port = free_tcp_port();
    sb.edit_config(
        "[mail]\n",
        "[mail]\ntransport = \"smtp\"\nto = [\"admin@example.com\"]\nretry_max_secs = 1\n",
    );
    let text = fs::read_to_string(&sb.config).unwrap();
    sb.set_config(&format!(
        "{text}\n[mail.smtp]\nhost = \"127.0.0.1\"\nport = {smtp_port}\ntimeout_secs = 2\n"
    ));
    let erin = sb.user("erin");
    let (_, public) = sb.keygen("erin");
    let out = sb.sftpctl(&[
        "add-user",
        &erin,
        "--key",
        public.to_str().unwrap(),
        "--email",
        "erin@client.example",
        "--welcome",
    ]);
    assert_fails_one_line(&out, 1);
    assert!(
        support::stderr(&out).contains("stays queued")
            && support::stderr(&out).contains("the watcher (sftpctl watch) retries it"),
        "{}",
        show(&out)
    );
    assert!(sb.data(&erin).is_dir(), "the account is made all the same");
    let pending = sb.path("state/outbox/letters/pending");
    let queued = || fs::read_dir(&pending).map_or(0, |d| d.count());
    assert_eq!(queued(), 1);
    // Asked again while it waits: no second letter.
    let out = sb.sftpctl(&["welcome", &erin]);
    assert_fails_one_line(&out, 1);
    assert!(
        stdout(&out).contains("instead of a second one"),
        "{}",
        show(&out)
    );
    assert_eq!(queued(), 1);

    let maildir = sb.path("maildir");
    let _smtp = watch_common::start_smtp(smtp_port, &maildir);
    sb.start_watcher();
    wait_until(
        "the watcher to deliver the welcome",
        Duration::from_secs(20),
        || maildir_mails(&maildir).len() == 1 && queued() == 0,
    );
    let mail = parse_mail(&maildir_mails(&maildir)[0]);
    assert_eq!(mail.to, "erin@client.example");
    assert!(mail.text.contains(&format!("User name: {erin}")));
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(maildir_mails(&maildir).len(), 1, "sent once");
}
