//! "New files for you" end to end (issue 12, item 1): the admin's real SFTP session through
//! the sandbox's sshd puts files into several client jails; the real watcher, fed by the real
//! rsyslogd, mails each client whose notice is on exactly one letter naming only its files,
//! through Debian's aiosmtpd. Run as root.
//!
//! The admin is not chrooted, so its internal-sftp logs to `/dev/log`, which this machine
//! does not have (and which a test must never take). The sshd of these tests therefore runs
//! in a mount namespace of its own whose `/dev/log` is the sandbox rsyslogd's system socket
//! (`Sandbox::start_sshd_syslog`): the host's `/dev` is not changed.

mod support;
mod watch_common;

use std::fs;
use std::path::PathBuf;
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use support::{assert_fails_one_line, stderr, stdout, wait_until, Sandbox, DEADLINE};
use watch_common::{maildir_mails, text_of};

struct World {
    sb: Sandbox,
    maildir: PathBuf,
    admin: String,
    admin_key: PathBuf,
    /// Name and private key of alice (notice on, address), bob (on, address), carol (address,
    /// notice off: the default), dave (on, no address).
    clients: Vec<(String, PathBuf)>,
    /// aiosmtpd's port (the config may name another one at first).
    smtp_port: u16,
}

fn address(suffix: &str) -> String {
    format!("{suffix}@client.example")
}

/// `smtp_down`: the config names a port nothing listens on, so mail waits in the outbox.
fn world(smtp_down: bool) -> World {
    let mut sb = Sandbox::new();
    let admin = sb.admin.clone();
    sb.edit_config(
        "umask = \"0007\"",
        &format!("umask = \"0007\"\nadmin = \"{admin}\""),
    );
    let (admin_key, admin_pub) = sb.keygen("admin");
    sb.sftpctl_ok(&[
        "init",
        "--admin",
        &admin,
        "--admin-key",
        admin_pub.to_str().unwrap(),
    ]);
    sb.start_rsyslogd();
    let mut clients = Vec::new();
    for (suffix, extra) in [
        (
            "alice",
            vec!["--email", "alice@client.example", "notify_new_files=true"],
        ),
        (
            "bob",
            vec!["--email", "bob@client.example", "notify_new_files=true"],
        ),
        ("carol", vec!["--email", "carol@client.example"]),
        ("dave", vec!["notify_new_files=true"]),
    ] {
        let name = sb.user(suffix);
        let (key, public) = sb.keygen(suffix);
        let mut args = vec!["add-user", name.as_str(), "--key", public.to_str().unwrap()];
        args.extend(extra);
        sb.sftpctl_ok(&args);
        clients.push((name, key));
    }
    let maildir = sb.path("maildir");
    let smtp_port = sb.start_smtp(&maildir);
    let port = if smtp_down {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    } else {
        smtp_port
    };
    sb.edit_config(
        "[mail]\n",
        "[mail]\ntransport = \"smtp\"\nto = [\"admin@example.com\"]\nretry_max_secs = 2\n",
    );
    let text = fs::read_to_string(&sb.config).unwrap();
    sb.set_config(&format!(
        "{text}\n[mail.smtp]\nhost = \"127.0.0.1\"\nport = {port}\ntimeout_secs = 5\n"
    ));
    sb.start_sshd_syslog();
    sb.start_watcher();
    World {
        sb,
        maildir,
        admin,
        admin_key,
        clients,
        smtp_port,
    }
}

fn header<'a>(mail: &'a str, name: &str) -> &'a str {
    mail.lines()
        .take_while(|l| !l.is_empty())
        .find_map(|l| l.strip_prefix(&format!("{name}: ")))
        .unwrap_or("")
}

fn is_notice(mail: &str) -> bool {
    header(mail, "Subject").starts_with("New files for you")
}

fn notices(w: &World) -> Vec<String> {
    maildir_mails(&w.maildir)
        .into_iter()
        .filter(|m| is_notice(m))
        .collect()
}

/// The HTML part, quoted-printable decoded.
fn html_of(mail: &str) -> String {
    let mail = mail.replace("\r\n", "\n");
    let start = mail.find("Content-Type: text/html").expect("an HTML part");
    let body = &mail[start..];
    let headers = &body[..body.find("\n\n").unwrap()];
    let body = &body[body.find("\n\n").unwrap() + 2..];
    let body = &body[..body.find("\n--").unwrap_or(body.len())];
    if headers.contains("base64") {
        use base64::Engine as _;
        let b64: String = body.split_whitespace().collect();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .expect("base64 HTML part");
        return String::from_utf8(bytes).unwrap();
    }
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

fn local_file(w: &World, name: &str, bytes: usize) {
    fs::write(w.sb.client_dir().join(name), vec![b'x'; bytes]).unwrap();
}

#[test]
fn the_admins_session_gives_each_client_one_notice_with_only_its_files() {
    let w = world(false);
    let sb = &w.sb;
    let (alice, alice_key) = &w.clients[0];
    let (bob, _) = &w.clients[1];
    let (carol, _) = &w.clients[2];
    let (dave, _) = &w.clients[3];

    // Alice's own session: an upload (no notice for her own files) and a symlink that points,
    // on the host, into bob's tree (inside her jail it points nowhere).
    local_file(&w, "own.txt", 5);
    sb.sftp_ok(
        alice,
        alice_key,
        &format!("put own.txt\nsymlink {} link\n", sb.data(bob).display()),
    );
    wait_until("alice's own report", Duration::from_secs(10), || {
        maildir_mails(&w.maildir)
            .iter()
            .any(|m| text_of(m).contains("own.txt"))
    });

    // The admin's one session into four jails, plus two paths that only look like alice's.
    for (name, bytes) in [
        ("a1.txt", 12),
        ("a2.pdf", 3_000_000),
        ("b1.txt", 7),
        ("c1.txt", 3),
        ("d1.txt", 4),
        ("leak.txt", 9),
        ("via-link.txt", 11),
    ] {
        local_file(&w, name, bytes);
    }
    let (a, b, c, d) = (sb.data(alice), sb.data(bob), sb.data(carol), sb.data(dave));
    fs::write(b.join("bobs-secret-name.txt"), b"bob's").unwrap();
    let script = format!(
        "put a1.txt {a}/a1.txt\n\
         put a2.pdf \"{a}/Report 2026.pdf\"\n\
         put b1.txt {b}/b1.txt\n\
         put c1.txt {c}/c1.txt\n\
         put d1.txt {d}/d1.txt\n\
         put leak.txt {a}/../../{bob}/data/leak.txt\n\
         put via-link.txt {a}/link/via-link.txt\n\
         rename {b}/bobs-secret-name.txt {a}/moved-in.txt\n\
         put a1.txt \"{a}/<b>evil&co.txt\"\n",
        a = a.display(),
        b = b.display(),
        c = c.display(),
        d = d.display(),
    );
    sb.sftp_ok(&w.admin, &w.admin_key, &script);
    // Both attacks reached bob's tree on disk.
    assert!(b.join("leak.txt").is_file() && b.join("via-link.txt").is_file());

    wait_until("two notices and the admin's report", DEADLINE, || {
        notices(&w).len() >= 2
            && maildir_mails(&w.maildir)
                .iter()
                .any(|m| text_of(m).contains(&format!("SFTP session of {}", w.admin)))
    });
    // Nothing more comes: the letters went out in the same pass as the report.
    std::thread::sleep(Duration::from_secs(2));
    let all = notices(&w);
    assert_eq!(all.len(), 2, "one notice each for alice and bob:\n{all:#?}");

    let for_whom = |addr: &str| -> String {
        let found: Vec<&String> = all
            .iter()
            .filter(|m| header(m, "X-RcptTo") == addr)
            .collect();
        assert_eq!(found.len(), 1, "one notice to {addr}: {all:#?}");
        found[0].clone()
    };
    let to_alice = for_whom(&address("alice"));
    let text = text_of(&to_alice);
    assert!(text.contains("  a1.txt  12 bytes"), "{text}");
    assert!(
        text.contains("  Report 2026.pdf  2.9 MiB (3,000,000 bytes)"),
        "{text}"
    );
    assert!(
        text.contains(
            "  moved-in.txt  (moved in; replaced the file of that name if there was one)"
        ),
        "{text}"
    );
    assert!(text.contains("  <b>evil&co.txt  12 bytes"), "{text}");
    let html = html_of(&to_alice);
    assert!(
        html.contains("&lt;b&gt;evil&amp;co.txt") && !html.contains("<b>evil"),
        "the HTML part escapes the name:\n{html}"
    );
    assert!(!to_alice.contains("secret"), "{to_alice}");
    let to_bob = for_whom(&address("bob"));
    let bob_text = text_of(&to_bob);
    assert!(bob_text.contains("  b1.txt  7 bytes"), "{bob_text}");
    let root = sb.root.display().to_string();
    for (mail, own) in [(&to_alice, alice), (&to_bob, bob)] {
        for foreign in [
            "leak.txt",
            "via-link",
            "c1.txt",
            "d1.txt",
            "own.txt",
            carol.as_str(),
            dave.as_str(),
            root.as_str(),
        ] {
            assert!(
                !mail.contains(foreign),
                "{own}'s notice names {foreign}:\n{mail}"
            );
        }
        let other = if own == alice { bob } else { alice };
        assert!(
            !mail.contains(other.as_str()),
            "{own}'s notice names {other}"
        );
    }
    assert!(!to_alice.contains("b1.txt") && !to_bob.contains("a1.txt"));

    // The admin's report names the four jails it touched.
    let reports: Vec<String> = maildir_mails(&w.maildir)
        .into_iter()
        .filter(|m| text_of(m).contains(&format!("SFTP session of {}", w.admin)))
        .collect();
    assert_eq!(reports.len(), 1);
    let report = text_of(&reports[0]);
    assert!(
        report.contains(&format!(
            "Jails:    {alice}, {bob}, {carol}, {dave} (client"
        )),
        "{report}"
    );
    assert!(
        html_of(&reports[0]).contains("Client jails touched:"),
        "HTML part"
    );
    assert_eq!(header(&reports[0], "X-RcptTo"), "admin@example.com");

    // Only alice's and bob's letters were ever queued.
    let sent = sb.path("state/outbox/letters/sent");
    let mut ids: Vec<String> = fs::read_dir(&sent)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    ids.sort();
    assert_eq!(ids.len(), 2, "{ids:?}");
    assert!(ids[0].starts_with("newfiles-") && ids[0].ends_with(&format!("-{alice}")));
    assert!(ids[1].ends_with(&format!("-{bob}")), "{ids:?}");
}

/// The key goes through `add-user`, `set`, `apply` and `list-users` like the other settings;
/// bad values change nothing.
#[test]
fn notify_new_files_is_a_setting_like_the_others() {
    let sb = Sandbox::new();
    sb.sftpctl_ok(&["init"]);
    let alice = sb.user("alice");
    sb.sftpctl_ok(&["add-user", &alice, "notify_new_files=true"]);
    let shown = |sb: &Sandbox| -> bool {
        let out = sb.sftpctl_ok(&["list-users", "--json"]);
        let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        rows[0]["notify_new_files"].as_bool().unwrap()
    };
    assert!(shown(&sb));
    assert!(stdout(&sb.sftpctl_ok(&["list-users"])).contains("new-files mail"));
    let snap = sb.snapshot();
    for bad in ["notify_new_files=yes", "notify_new_files="] {
        let out = sb.sftpctl(&["set", &alice, bad]);
        assert_fails_one_line(&out, 2);
        assert!(
            stderr(&out).contains("notify_new_files"),
            "{}",
            stderr(&out)
        );
    }
    assert_eq!(sb.snapshot(), snap);
    sb.sftpctl_ok(&["set", &alice, "notify_new_files=default"]);
    assert!(!shown(&sb), "the config's default is off");
    sb.edit_config("[mail]\n", "[mail]\nnotify_new_files = true\n");
    assert!(shown(&sb), "mail.notify_new_files = true");
    let users = sb.path("run/users.toml");
    fs::write(
        &users,
        format!("[[user]]\nname = \"{alice}\"\nnotify_new_files = false\n"),
    )
    .unwrap();
    sb.sftpctl_ok(&["apply", users.to_str().unwrap()]);
    assert!(!shown(&sb));
}

/// The letter is on disk before the report can be acknowledged: a watcher killed (SIGKILL)
/// while the mail server is unreachable loses neither, and the next watcher sends each once.
#[test]
fn a_crash_before_delivery_loses_no_notice_and_sends_none_twice() {
    let mut w = world(true);
    let (alice, _) = w.clients[0].clone();
    local_file(&w, "late.txt", 21);
    let a = w.sb.data(&alice);
    w.sb.sftp_ok(
        &w.admin,
        &w.admin_key,
        &format!("put late.txt {}/late.txt\n", a.display()),
    );
    let pending = w.sb.path("state/outbox/letters/pending");
    let outbox = w.sb.path("state/outbox");
    let listed = |dir: &PathBuf, ext: &str| -> bool {
        fs::read_dir(dir).is_ok_and(|d| {
            d.flatten().any(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                !name.starts_with('.')
                    && name.ends_with(ext)
                    && e.metadata().is_ok_and(|m| m.len() > 0)
            })
        })
    };
    wait_until("the letter and the report in the outbox", DEADLINE, || {
        listed(&pending, ".json") && listed(&outbox, ".seg")
    });
    let pid: i32 = fs::read_to_string(w.sb.path("state/watch.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    kill(Pid::from_raw(pid), Signal::SIGKILL).unwrap();
    w.sb.stop_watcher();
    assert!(
        maildir_mails(&w.maildir).is_empty(),
        "nothing could be sent"
    );

    let text = fs::read_to_string(&w.sb.config).unwrap();
    let dead = text
        .lines()
        .find_map(|l| l.strip_prefix("port = "))
        .unwrap()
        .to_string();
    w.sb.edit_config(
        &format!("port = {dead}"),
        &format!("port = {}", w.smtp_port),
    );
    w.sb.start_watcher();
    wait_until("the report and the notice", DEADLINE, || {
        maildir_mails(&w.maildir).len() >= 2
    });
    std::thread::sleep(Duration::from_secs(2));
    let all = maildir_mails(&w.maildir);
    assert_eq!(all.len(), 2, "{all:#?}");
    let notice: Vec<&String> = all.iter().filter(|m| is_notice(m)).collect();
    assert_eq!(notice.len(), 1, "{all:#?}");
    assert_eq!(header(notice[0], "X-RcptTo"), address("alice"));
    assert!(text_of(notice[0]).contains("  late.txt  21 bytes"));
}
