//! Issue 9, "hidden activity": a jailed user must not be able to act without a trace in the
//! session report. Each test performs the attack as the jailed user over real SFTP (OpenSSH's
//! sftp client, or raw SFTP packets over `ssh -s sftp` where the attack needs a client that
//! pipelines), through the real sshd and rsyslogd of a sandbox, then feeds the log rsyslog
//! wrote to `sftpctl watch --stdin` (file transport) and reads the mails it made: subject,
//! text and HTML part, decoded by Python's `email` module.
//!
//! The last test seeds a file named with terminal escapes in a data tree and checks that no
//! raw ESC byte reaches the terminal from `doctor` and the commands that print such paths.

mod support;

use std::fs;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use support::{run_with_timeout, show, wait_until, Sandbox, DEADLINE, SFTPCTL};

/// One decoded report mail.
#[derive(Debug)]
struct Mail {
    subject: String,
    text: String,
    html: String,
    raw: Vec<u8>,
}

/// A sandbox with one jailed user, sshd and rsyslogd running, internal-sftp at `level`
/// (`None`: the config's default).
struct World {
    sb: Sandbox,
    user: String,
    key: PathBuf,
}

fn world(level: Option<&str>) -> World {
    let mut sb = Sandbox::new();
    if let Some(level) = level {
        sb.edit_config(
            "data_dir = \"data\"",
            &format!("data_dir = \"data\"\nsftp_log_level = \"{level}\""),
        );
    }
    let user = sb.user("alice");
    let (key, public) = sb.keygen("alice");
    sb.sftpctl_ok(&["init"]);
    sb.start_rsyslogd();
    sb.sftpctl_ok(&["add-user", &user, "--key", public.to_str().unwrap()]);
    sb.start_sshd();
    World { sb, user, key }
}

impl World {
    fn sftp(&self, script: &str) {
        self.sb.sftp_ok(&self.user, &self.key, script);
    }

    /// Waits until the log holds `n` `session closed` lines.
    fn wait_sessions_closed(&self, n: usize) {
        wait_until("the sessions' close lines", DEADLINE, || {
            self.sb
                .log_lines()
                .iter()
                .filter(|l| l.contains("session closed"))
                .count()
                >= n
        });
    }

    fn log(&self) -> String {
        self.sb.log_lines().join("\n")
    }

    /// Replays the log file through `sftpctl watch --stdin`; returns the mails, oldest first.
    fn mails(&self) -> Vec<Mail> {
        let log = fs::read(&self.sb.log_file).unwrap();
        let mut cmd = Command::new(SFTPCTL);
        cmd.arg("--config")
            .arg(&self.sb.config)
            .args(["watch", "--stdin"])
            .env_remove("SFTPCTL_CONFIG");
        let out = run_with_timeout(&mut cmd, &log, DEADLINE);
        assert!(out.status.success(), "watch --stdin\n{}", show(&out));
        decode_mails(&self.sb.path("spool"))
    }

    fn local(&self, name: &str, bytes: &[u8]) {
        fs::write(self.sb.client_dir().join(name), bytes).unwrap();
    }
}

/// Every .eml in `spool`, sorted by name (the report id starts with the session's start).
fn decode_mails(spool: &Path) -> Vec<Mail> {
    let mut paths: Vec<PathBuf> = fs::read_dir(spool)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "eml"))
        .collect();
    paths.sort();
    paths
        .iter()
        .map(|p| {
            let part = |what: &str| -> String {
                let script = format!(
                    "import email, sys\nfrom email import policy\n\
                     m = email.message_from_binary_file(open(sys.argv[1], 'rb'), policy=policy.default)\n\
                     sys.stdout.write({what})\n"
                );
                let out = run_with_timeout(
                    Command::new("/usr/bin/python3")
                        .arg("-c")
                        .arg(script)
                        .arg(p),
                    b"",
                    DEADLINE,
                );
                assert!(out.status.success(), "decode {}\n{}", p.display(), show(&out));
                String::from_utf8(out.stdout).unwrap()
            };
            Mail {
                subject: part("str(m['subject'])"),
                text: part("m.get_body(('plain',)).get_content()"),
                html: part("m.get_body(('html',)).get_content()"),
                raw: fs::read(p).unwrap(),
            }
        })
        .collect()
}

/// Item 6: `rename a contract.pdf` (OpenSSH's client sends posix-rename, which replaces the
/// target) then `rename contract.pdf a`. contract.pdf is destroyed; before, the pair folded
/// to nothing and no mail was sent at all.
#[test]
fn a_rename_pair_that_destroys_a_file_is_reported_as_a_replacement() {
    let w = world(None);
    w.local("contract.pdf", b"the signed contract");
    w.local("a", b"junk");
    w.sftp("put contract.pdf\nput a\n");
    w.sftp("rename a contract.pdf\nrename contract.pdf a\n");
    w.wait_sessions_closed(2);
    let data = w.sb.data(&w.user);
    assert!(
        !data.join("contract.pdf").exists(),
        "the attack itself must work: contract.pdf is gone"
    );
    let log = w.log();
    assert!(
        log.contains("posix-rename old \"/data/a\" new \"/data/contract.pdf\""),
        "{log}"
    );
    let mails = w.mails();
    assert_eq!(
        mails.len(),
        2,
        "one mail per session, also for the renames\n{log}"
    );
    // The renaming session's mail: both sessions may start in the same second, and then the
    // names sort by pid as text ("10033" before "9977").
    let m = mails
        .iter()
        .find(|m| m.text.contains('→'))
        .unwrap_or_else(|| panic!("no mail of the renaming session\n{log}"));
    println!("{}\n{}", m.subject, m.text);
    assert!(
        m.text
            .contains("a → contract.pdf  [REPLACED contract.pdf if it existed]")
            || m.text
                .contains("a → contract.pdf  [REPLACED the existing contract.pdf]"),
        "{}\n{log}",
        m.text
    );
    assert!(m.text.contains("contract.pdf → a"), "{}", m.text);
    assert!(m.text.contains("RENAMED (2)"), "{}", m.text);
    assert!(m.html.contains("REPLACED"), "{}", m.html);
    assert!(
        m.subject.contains("may have replaced a file"),
        "{}",
        m.subject
    );
}

/// Item 7: a name of 124 non-ASCII bytes (each logged as 4 characters) and a path of about
/// 480 ASCII bytes make the lines longer than internal-sftp logs: both uploads are still
/// listed and counted, and the report says plainly that names were cut.
#[test]
fn uploads_whose_names_the_log_cut_are_still_reported() {
    let w = world(None);
    let umlauts = "Ü".repeat(62); // 124 bytes, logged as 496 characters
    let dir = "d".repeat(220);
    let long = "L".repeat(250);
    w.local("one.bin", &[b'1'; 70_000]);
    w.local("two.bin", &[b'2'; 5_000]);
    w.sftp(&format!(
        "put one.bin {umlauts}\nmkdir {dir}\nput two.bin {dir}/{long}\n"
    ));
    w.wait_sessions_closed(1);
    let log = w.log();
    let longest =
        w.sb.log_lines()
            .iter()
            .map(|l| l.split_once("]: ").map_or(0, |(_, m)| m.len()))
            .max()
            .unwrap();
    println!("longest message: {longest} bytes\n{log}");
    assert!(
        longest >= 496,
        "the names must make lines the log cuts\n{log}"
    );
    assert!(
        data_has(&w.sb.data(&w.user).join(&dir), &long),
        "the upload itself happened"
    );
    let mails = w.mails();
    assert_eq!(mails.len(), 1, "{log}");
    let m = &mails[0];
    println!("{}\n{}", m.subject, m.text);
    assert!(m.text.contains("UPLOADED: 2"), "{}\n{log}", m.text);
    assert!(m.text.contains("NAMES CUT:"), "{}", m.text);
    assert!(m.html.contains("Names cut:"), "{}", m.html);
    assert!(m.subject.contains("[NAME CUT]"), "{}", m.subject);
    // The start of each name is there, marked as cut.
    assert!(m.text.contains(&"Ü".repeat(20)), "{}", m.text);
    assert!(m.text.contains(&format!("{dir}/LLLL")), "{}", m.text);
    assert!(m.text.contains("…"), "{}", m.text);
    assert!(
        m.text.contains("plus 2 files of unknown size"),
        "{}",
        m.text
    );
    assert!(
        !m.text.contains('\u{fffd}'),
        "a cut character is dropped\n{}",
        m.text
    );
    assert_eq!(m.text.matches("UPLOADED").count(), 1);
}

fn data_has(dir: &Path, name: &str) -> bool {
    dir.join(name).exists()
}

/// Raw SFTP (version 3) over `ssh -s sftp`: lets a test put several requests in one write,
/// as a pipelining client does.
struct RawSftp {
    child: std::process::Child,
    next_id: u32,
}

const SSH_FXP_INIT: u8 = 1;
const SSH_FXP_OPEN: u8 = 3;
const SSH_FXP_CLOSE: u8 = 4;
const SSH_FXP_WRITE: u8 = 6;
const SSH_FXP_LSTAT: u8 = 7;
const SSH_FXP_REMOVE: u8 = 13;
const SSH_FXP_STATUS: u8 = 101;
const SSH_FXP_HANDLE: u8 = 102;
const SSH_FXF_WRITE: u32 = 0x02;
const SSH_FXF_CREAT: u32 = 0x08;
const SSH_FXF_TRUNC: u32 = 0x10;
const SSH_FX_NO_SUCH_FILE: u32 = 2;

fn put_string(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(&(s.len() as u32).to_be_bytes());
    out.extend_from_slice(s);
}

fn packet(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut p = ((body.len() + 1) as u32).to_be_bytes().to_vec();
    p.push(kind);
    p.extend_from_slice(body);
    p
}

impl RawSftp {
    fn connect(w: &World) -> RawSftp {
        let child = Command::new("ssh")
            .args(["-F", "/dev/null", "-p"])
            .arg(w.sb.ssh_port.to_string())
            .arg("-i")
            .arg(&w.key)
            .args([
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "UserKnownHostsFile=/dev/null",
                "-o",
                "BatchMode=yes",
                "-o",
                "IdentitiesOnly=yes",
                "-o",
                "LogLevel=ERROR",
                "-s",
            ])
            .arg(format!("{}@127.0.0.1", w.user))
            .arg("sftp")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut s = RawSftp { child, next_id: 1 };
        s.send(&packet(SSH_FXP_INIT, &3u32.to_be_bytes()));
        let (kind, _) = s.read();
        assert_eq!(kind, 2, "SSH_FXP_VERSION");
        s
    }

    fn id(&mut self) -> u32 {
        self.next_id += 1;
        self.next_id
    }

    fn send(&mut self, bytes: &[u8]) {
        let stdin = self.child.stdin.as_mut().unwrap();
        stdin.write_all(bytes).unwrap();
        stdin.flush().unwrap();
    }

    fn read(&mut self) -> (u8, Vec<u8>) {
        let out = self.child.stdout.as_mut().unwrap();
        let mut len = [0u8; 4];
        out.read_exact(&mut len).unwrap();
        let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
        out.read_exact(&mut body).unwrap();
        (body[0], body[1..].to_vec())
    }

    /// A STATUS reply's (id, code).
    fn status(&mut self) -> (u32, u32) {
        let (kind, body) = self.read();
        assert_eq!(kind, SSH_FXP_STATUS);
        let id = u32::from_be_bytes(body[0..4].try_into().unwrap());
        let code = u32::from_be_bytes(body[4..8].try_into().unwrap());
        (id, code)
    }

    fn open_for_writing(&mut self, path: &str) -> Vec<u8> {
        let mut body = self.id().to_be_bytes().to_vec();
        put_string(&mut body, path.as_bytes());
        body.extend_from_slice(&(SSH_FXF_WRITE | SSH_FXF_CREAT | SSH_FXF_TRUNC).to_be_bytes());
        body.extend_from_slice(&0u32.to_be_bytes()); // no attributes
        self.send(&packet(SSH_FXP_OPEN, &body));
        let (kind, reply) = self.read();
        assert_eq!(kind, SSH_FXP_HANDLE, "open {path}");
        let len = u32::from_be_bytes(reply[4..8].try_into().unwrap()) as usize;
        reply[8..8 + len].to_vec()
    }

    fn write(&mut self, handle: &[u8], data: &[u8]) {
        let mut body = self.id().to_be_bytes().to_vec();
        put_string(&mut body, handle);
        body.extend_from_slice(&0u64.to_be_bytes());
        put_string(&mut body, data);
        self.send(&packet(SSH_FXP_WRITE, &body));
        assert_eq!(self.status().1, 0, "write");
    }

    fn close_packet(&mut self, handle: &[u8]) -> Vec<u8> {
        let mut body = self.id().to_be_bytes().to_vec();
        put_string(&mut body, handle);
        packet(SSH_FXP_CLOSE, &body)
    }

    fn path_packet(&mut self, kind: u8, path: &str) -> Vec<u8> {
        let mut body = self.id().to_be_bytes().to_vec();
        put_string(&mut body, path.as_bytes());
        packet(kind, &body)
    }

    fn upload(&mut self, path: &str, data: &[u8]) {
        let h = self.open_for_writing(path);
        self.write(&h, data);
        let close = self.close_packet(&h);
        self.send(&close);
        assert_eq!(self.status().1, 0);
    }

    fn finish(mut self) {
        drop(self.child.stdin.take());
        let mut status = None;
        wait_until("ssh to exit", DEADLINE, || {
            status = self.child.try_wait().unwrap();
            status.is_some()
        });
    }
}

/// Uploads victim.txt, then sends CLOSE of an upload and an LSTAT of a missing name in one
/// write, then REMOVE of victim.txt and such an LSTAT in one write, over raw SFTP. Returns the
/// one report mail and the log.
fn pipelined_attack(w: &World) -> (Mail, String) {
    let mut c = RawSftp::connect(w);
    c.upload("/data/victim.txt", b"to be removed");
    let h = c.open_for_writing("/data/pipelined.bin");
    c.write(&h, &[b'p'; 5000]);
    let mut both = c.close_packet(&h);
    both.extend(c.path_packet(SSH_FXP_LSTAT, "/data/no-such-name"));
    c.send(&both);
    let replies = [c.status().1, c.status().1];
    assert_eq!(replies, [0, SSH_FX_NO_SUCH_FILE]);
    let mut both = c.path_packet(SSH_FXP_REMOVE, "/data/victim.txt");
    both.extend(c.path_packet(SSH_FXP_LSTAT, "/data/no-such-name-either"));
    c.send(&both);
    let replies = [c.status().1, c.status().1];
    assert_eq!(replies, [0, SSH_FX_NO_SUCH_FILE]);
    c.finish();
    w.wait_sessions_closed(1);
    let log = w.log();
    println!("{log}");
    assert!(!w.sb.data(&w.user).join("victim.txt").exists());
    let mut mails = w.mails();
    assert_eq!(mails.len(), 1, "{log}");
    let m = mails.remove(0);
    println!("{}\n{}", m.subject, m.text);
    (m, log)
}

/// Item 8: a pipelining client puts CLOSE (or REMOVE) and an LSTAT of a missing name in one
/// packet. At INFO the lstat is not logged and its `sent status` comes microseconds after the
/// close: it was filed under the upload ("0 uploaded"). At VERBOSE, the default, every request
/// is logged and the report is exact.
#[test]
fn a_pipelined_lookup_failure_is_not_filed_under_the_upload_at_verbose() {
    let w = world(None);
    let dropin = fs::read_to_string(w.sb.path("etc/ssh/sshd_config.d/50-sftpctl.conf")).unwrap();
    assert!(
        dropin.contains("internal-sftp -l VERBOSE"),
        "VERBOSE is the default\n{dropin}"
    );
    let (m, log) = pipelined_attack(&w);
    assert!(log.contains("lstat name \"/data/no-such-name\""), "{log}");
    assert!(
        m.text.contains("pipelined.bin  4.9 KiB (5,000 bytes)"),
        "{}\n{log}",
        m.text
    );
    assert!(m.text.contains("UPLOADED: 2"), "{}\n{log}", m.text);
    assert!(
        m.text.contains("DELETED (1)\n  victim.txt"),
        "{}\n{log}",
        m.text
    );
    assert!(!m.text.contains("FAILED"), "{}\n{log}", m.text);
    assert!(m.subject.contains("2 uploaded 1 deleted"), "{}", m.subject);
}

/// The same attack at INFO: the upload still counts (a close line's bytes were transferred
/// whatever status follows). The remove cannot be told from a failed one there; it is
/// still in the report by name (docs/watch.md, "Log level").
#[test]
fn at_info_a_pipelined_lookup_failure_still_leaves_the_upload_and_the_remove_in_the_report() {
    let w = world(Some("INFO"));
    let (m, log) = pipelined_attack(&w);
    assert!(
        !log.contains("lstat name"),
        "INFO does not log lookups\n{log}"
    );
    assert!(
        m.text.contains("pipelined.bin  4.9 KiB (5,000 bytes)"),
        "{}\n{log}",
        m.text
    );
    assert!(m.text.contains("UPLOADED: 2"), "{}\n{log}", m.text);
    // Which of the two depends on timing at INFO; either way the remove is named.
    assert!(
        m.text.contains("DELETED (1)\n  victim.txt")
            || m.text.contains("remove victim.txt: No such file"),
        "{}\n{log}",
        m.text
    );
    assert!(!m.text.contains("close "), "{}\n{log}", m.text);
}

/// Item 9: a right-to-left override makes `invoice-\u{202e}fdp.exe` look like
/// `invoice-exe.pdf`; a name holding `" new "` made a rename report a wrong target.
#[test]
fn bidi_names_are_spelled_out_and_an_ambiguous_rename_is_not_guessed() {
    let w = world(None);
    let rlo = "invoice-\u{202e}fdp.exe";
    w.local("x.bin", b"MZ");
    w.local("y.bin", b"y");
    w.sftp(&format!(
        "put x.bin {rlo}\nput y.bin y\nrename y 'y\" new \"target'\n"
    ));
    w.wait_sessions_closed(1);
    let log = w.log();
    assert!(
        log.contains(r#"posix-rename old "/data/y" new "/data/y" new "target""#),
        "{log}"
    );
    let mails = w.mails();
    assert_eq!(mails.len(), 1, "{log}");
    let m = &mails[0];
    println!("{}\n{}", m.subject, m.text);
    for (part, text) in [
        ("subject", &m.subject),
        ("text", &m.text),
        ("html", &m.html),
    ] {
        assert!(
            !text.contains('\u{202e}'),
            "raw U+202E in the {part}: {text}"
        );
    }
    assert!(!String::from_utf8_lossy(&m.raw).contains('\u{202e}'));
    assert!(m.text.contains("invoice-<U+202E>fdp.exe"), "{}", m.text);
    assert!(
        m.html.contains("invoice-&lt;U+202E&gt;fdp.exe"),
        "{}",
        m.html
    );
    assert!(m.text.contains("AMBIGUOUS"), "{}", m.text);
    assert!(!m.text.contains("→ target"), "no guessed split\n{}", m.text);
}

/// Item 10: a file in a data tree named with terminal escapes (clear screen, set the window
/// title, bell) is listed by doctor; no raw ESC or BEL byte may reach stdout or stderr.
#[test]
fn doctor_never_prints_a_terminal_escape_from_a_data_tree() {
    let mut sb = Sandbox::new();
    let user = sb.user("alice");
    let (_, public) = sb.keygen("alice");
    sb.sftpctl_ok(&["init"]);
    sb.start_rsyslogd();
    sb.sftpctl_ok(&["add-user", &user, "--key", public.to_str().unwrap()]);
    let hostile = b"\x1b[2J\x1b]0;owned\x07evil\x9b31m";
    let data = sb.data(&user);
    let file = data.join(std::ffi::OsStr::from_bytes(hostile));
    fs::write(&file, b"x").unwrap();
    let dir = data.join(std::ffi::OsStr::from_bytes(b"dir\x1b[31m"));
    fs::create_dir(&dir).unwrap();
    let uid = support::uid_of(&user);
    for p in [&file, &dir] {
        std::os::unix::fs::chown(p, Some(uid), None).unwrap();
    }
    // Not group-writable: the shared-write check lists them by name.
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).unwrap();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
    let mut saw_escaped = false;
    for args in [
        &["doctor"][..],
        &["doctor", "--fix", "--dry-run"],
        &["doctor", "--fix"],
        &["list-users"],
        &["remove-user", &user, "--dry-run"],
    ] {
        let out = sb.sftpctl(args);
        for (stream, bytes) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
            assert!(
                !bytes.iter().any(|&b| b == 0x1b || b == 0x07),
                "raw ESC/BEL in the {stream} of {args:?}\n{}",
                show(&out)
            );
            assert!(
                !String::from_utf8_lossy(bytes).contains('\u{9b}'),
                "raw CSI in the {stream} of {args:?}"
            );
        }
        saw_escaped |= String::from_utf8_lossy(&out.stdout).contains("\\u{1b}[2J");
    }
    assert!(
        saw_escaped,
        "doctor must still name the file, escaped (else this test shows nothing)"
    );
}

/// The cost of VERBOSE: lines and bytes of typical sessions at INFO and at VERBOSE, with the
/// real client. Printed for docs/watch.md; asserts only what makes VERBOSE worth it (the
/// lookups are there) and that both levels report the same transfers.
#[test]
fn log_volume_of_a_typical_session_info_and_verbose() {
    let mixed = "ls\nput report.pdf\nput notes.txt\nput scan.jpg\nmkdir archive\nrename notes.txt archive/notes.txt\nget report.pdf back.pdf\nrm scan.jpg\nls archive\n";
    let many = "mkdir in\nput f* in/\nls -l in\nget in/f* out/\n";
    let mut results = Vec::new();
    for (profile, script, uploads) in [
        ("mixed session", mixed, "UPLOADED: 3"),
        ("20 files up and down", many, "UPLOADED: 20"),
    ] {
        for level in ["INFO", "VERBOSE"] {
            let w = world(Some(level));
            w.local("report.pdf", &[b'r'; 300_000]);
            w.local("notes.txt", &[b'n'; 2_000]);
            w.local("scan.jpg", &[b's'; 1_500_000]);
            fs::create_dir(w.sb.client_dir().join("out")).unwrap();
            for i in 0..20 {
                w.local(&format!("f{i:02}.txt"), &[b'f'; 10_000]);
            }
            w.sftp(script);
            w.wait_sessions_closed(1);
            let lines = w.sb.log_lines();
            let bytes: usize = lines.iter().map(|l| l.len() + 1).sum();
            if level == "VERBOSE" {
                assert!(
                    lines.iter().any(|l| l.contains("stat name \"")),
                    "{lines:?}"
                );
            }
            let mails = w.mails();
            assert_eq!(mails.len(), 1);
            assert!(mails[0].text.contains(uploads), "{}", mails[0].text);
            results.push((profile, level, lines.len(), bytes));
        }
    }
    for (profile, level, lines, bytes) in &results {
        println!("log volume, {profile}, {level}: {lines} lines, {bytes} bytes");
    }
}
