//! SMTP with TLS and a login, against a real server: Debian's aiosmtpd (driven by
//! `tests/fixtures/smtp_tls_server.py`) with a certificate from a private CA made by openssl.
//! Shows STARTTLS and implicit TLS with `mail.smtp.ca_file`, a certificate from an unknown CA
//! refused, and a wrong password refused without appearing anywhere.

mod watch_common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use watch_common::*;

const PASSWORD: &str = "c0rrect-h0rse";

/// A CA and a server certificate for 127.0.0.1 signed by it, in `dir`; returns the CA's path.
fn make_certs(dir: &Path) -> PathBuf {
    let openssl = |args: &str| {
        let out = Command::new("openssl")
            .args(args.split(' '))
            .current_dir(dir)
            .output()
            .expect("openssl (apt install openssl)");
        assert!(
            out.status.success(),
            "openssl {args}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let key = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
    openssl(&format!(
        "req -x509 {key} -keyout ca.key -out ca.pem -days 2 -subj /CN=sftpctl-test-CA"
    ));
    openssl(&format!(
        "req {key} -keyout server.key -out server.csr -subj /CN=localhost"
    ));
    std::fs::write(
        dir.join("san.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .unwrap();
    openssl(
        "x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem \
         -days 2 -extfile san.ext",
    );
    dir.join("ca.pem")
}

fn write_secret(path: &Path, text: &str) {
    std::fs::write(path, format!("{text}\n")).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

struct TlsServer {
    _guard: Guard,
    maildir: PathBuf,
    log: PathBuf,
}

/// `mode`: "starttls" or "tls". The server accepts user alice with [`PASSWORD`] only.
fn start_server(dir: &Path, port: u16, mode: &str) -> TlsServer {
    start_server_limited(dir, port, mode, 0)
}

/// [`start_server`] that refuses more than `max` mails on one connection (0: no limit).
fn start_server_limited(dir: &Path, port: u16, mode: &str, max: u32) -> TlsServer {
    let maildir = dir.join(format!("maildir-{mode}"));
    let log = dir.join(format!("server-{mode}.log"));
    let server_password = dir.join("server-password");
    write_secret(&server_password, PASSWORD);
    let child = Command::new("/usr/bin/python3")
        .arg(fixture("smtp_tls_server.py"))
        .arg(port.to_string())
        .arg(&maildir)
        .arg(dir.join("server.pem"))
        .arg(dir.join("server.key"))
        .arg(mode)
        .arg("alice")
        .arg(&server_password)
        .arg(&log)
        .arg(max.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3 with aiosmtpd (apt install python3-aiosmtpd)");
    let guard = Guard(Some(child));
    wait_for("the TLS SMTP server", Duration::from_secs(15), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    TlsServer {
        _guard: guard,
        maildir,
        log,
    }
}

/// The watcher's `[mail]` settings for the server on `port`.
fn smtp_settings(port: u16, mode: &str, password_file: &Path, ca: Option<&Path>) -> String {
    let ca_line = ca.map_or(String::new(), |p| {
        format!("ca_file = \"{}\"\n", p.display())
    });
    format!(
        "transport = \"smtp\"\n[mail.smtp]\nhost = \"127.0.0.1\"\nport = {port}\ntls = \"{mode}\"\nusername = \"alice\"\npassword_file = \"{}\"\ntimeout_secs = 5\n{ca_line}",
        password_file.display()
    )
}

/// `watch --stdin` over the capture: (exit code, stderr).
fn replay(env: &Env) -> (Option<i32>, String) {
    env.watch_stdin(&std::fs::read(fixture("openssh-9.2-rsyslog-file.log")).unwrap())
}

#[test]
fn starttls_and_implicit_tls_with_login_deliver_every_report() {
    for mode in ["starttls", "tls"] {
        let port = free_tcp_port();
        let mut env = Env::new(&format!("tls-ok-{mode}"), "");
        let ca = make_certs(&env.dir);
        let server = start_server(&env.dir, port, mode);
        let password = env.dir.join("smtp-password");
        write_secret(&password, PASSWORD);
        env.write_config(&smtp_settings(port, mode, &password, Some(&ca)));
        let (code, err) = replay(&env);
        assert_eq!(code, Some(0), "{mode}: {err}");
        assert!(err.contains("5 reports delivered"), "{mode}: {err}");
        let mails = maildir_mails(&server.maildir);
        assert_eq!(mails.len(), 5, "{mode}: {err}");
        let all: String = mails.iter().map(|m| text_of(m)).collect();
        assert!(all.contains("big.bin  2.9 MiB (3,000,000 bytes)"), "{all}");
        // Every message came over TLS, after the login.
        let seen = std::fs::read_to_string(&server.log).unwrap();
        assert_eq!(seen.lines().count(), 5, "{seen}");
        assert!(
            seen.lines().all(|l| l == "tls=True login=alice"),
            "{mode}: {seen}"
        );
        assert_eq!(pending_reports(&env), 0);
    }
}

#[test]
fn a_certificate_from_an_unknown_ca_is_refused_until_ca_file_trusts_it() {
    let port = free_tcp_port();
    let mut env = Env::new("tls-unknown-ca", "");
    let ca = make_certs(&env.dir);
    let server = start_server(&env.dir, port, "starttls");
    let password = env.dir.join("smtp-password");
    write_secret(&password, PASSWORD);

    env.write_config(&smtp_settings(port, "starttls", &password, None));
    let (code, err) = replay(&env);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("UnknownIssuer"), "{err}");
    assert!(
        err.contains("5 reports could not be delivered and wait"),
        "{err}"
    );
    assert!(maildir_mails(&server.maildir).is_empty());
    assert_eq!(pending_reports(&env), 5, "the reports wait in the outbox");

    // Same state dir, now trusting the CA: the waiting reports go out, once each.
    env.write_config(&smtp_settings(port, "starttls", &password, Some(&ca)));
    let (code, err) = env.watch_stdin(b"");
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(maildir_mails(&server.maildir).len(), 5, "{err}");
    assert_eq!(pending_reports(&env), 0);
}

#[test]
fn a_wrong_password_is_refused_and_never_printed() {
    let port = free_tcp_port();
    let mut env = Env::new("tls-wrong-pw", "");
    let ca = make_certs(&env.dir);
    let server = start_server(&env.dir, port, "tls");
    let wrong = "wr0ng-battery-staple";
    let password = env.dir.join("smtp-password");
    write_secret(&password, wrong);
    env.write_config(&smtp_settings(port, "tls", &password, Some(&ca)));
    let (code, err) = replay(&env);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("535"), "the server's refusal is shown: {err}");
    assert!(!err.contains(wrong), "{err}");
    assert!(!err.contains(PASSWORD), "{err}");
    assert!(maildir_mails(&server.maildir).is_empty());
    assert_eq!(pending_reports(&env), 5);
}

#[test]
fn a_ca_file_that_is_not_a_certificate_stops_the_watcher_at_start() {
    let mut env = Env::new("tls-bad-ca", "");
    let not_pem = env.dir.join("not-a-cert.pem");
    std::fs::write(&not_pem, "hello\n").unwrap();
    let password = env.dir.join("smtp-password");
    write_secret(&password, PASSWORD);
    env.write_config(&smtp_settings(25, "starttls", &password, Some(&not_pem)));
    let (code, err) = replay(&env);
    assert_eq!(code, Some(2), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("mail.smtp.ca_file"), "{err}");
    assert!(!env.state().exists(), "nothing made before the refusal");
}

/// The watcher keeps one connection for a batch; a server that takes only two mails a
/// connection answers the third MAIL with 421 and hangs up. That mail goes out at once on a
/// new connection: no failed attempt, no backoff, every report once.
#[test]
fn a_server_that_limits_mails_per_connection_gets_a_new_connection() {
    let port = free_tcp_port();
    let mut env = Env::new("tls-limit", "");
    let ca = make_certs(&env.dir);
    let server = start_server_limited(&env.dir, port, "starttls", 2);
    let password = env.dir.join("smtp-password");
    write_secret(&password, PASSWORD);
    env.write_config(&smtp_settings(port, "starttls", &password, Some(&ca)));
    let (code, err) = replay(&env);
    assert_eq!(code, Some(0), "{err}");
    assert!(!err.contains("delivery failed"), "{err}");
    assert!(err.contains("5 reports delivered"), "{err}");
    assert_eq!(maildir_mails(&server.maildir).len(), 5, "{err}");
    assert_eq!(pending_reports(&env), 0);
}
