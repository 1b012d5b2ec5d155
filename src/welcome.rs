//! The welcome mail (docs/admin-guide.md, "Welcome mail"): how a client connects — host and
//! port, user name, the server's host key fingerprints as `ssh` prints them on the first
//! connect, the client's installed keys, its folder, and short instructions for OpenSSH sftp,
//! WinSCP and FileZilla. No template is ever given a password. Rendered from
//! `templates/mail/welcome.*` (each replaceable by a same-named file in `watch.template_dir`)
//! and sent as a letter ([`crate::letters`]) to the client's own address.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};
use serde::Serialize;
use tera::Tera;

use crate::config::Config;
use crate::error::usage;
use crate::keys::{self, PublicKey};
use crate::letters::{Letter, To};
use crate::plan::fsops;

const SUBJECT: &str = "welcome.subject.txt";
const TEXT: &str = "welcome.txt";
const HTML: &str = "welcome.html";

const BUILT_IN: [(&str, &str); 3] = [
    (
        SUBJECT,
        include_str!("../templates/mail/welcome.subject.txt"),
    ),
    (TEXT, include_str!("../templates/mail/welcome.txt")),
    (HTML, include_str!("../templates/mail/welcome.html")),
];

/// One key the client's program will be shown: a host key of sshd, or a key installed for
/// the client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Key {
    /// As ssh and ssh-keygen name the type: `ED25519`, `RSA`, `ECDSA`, `ED25519-SK`, …
    pub kind: String,
    /// `SHA256:…`, as `ssh-keygen -l` prints it.
    pub fingerprint: String,
    /// `ED25519 key fingerprint is SHA256:….`: the line ssh prints when it first meets the
    /// host, character for character.
    pub line: String,
    /// The key's comment (client keys only; it came from the client: never trusted as HTML).
    pub comment: String,
}

impl Key {
    fn of(key: &PublicKey, comment: bool) -> Key {
        let kind = ssh_kind(&key.kind).to_string();
        let fingerprint = key.fingerprint();
        Key {
            line: format!("{kind} key fingerprint is {fingerprint}."),
            kind,
            fingerprint,
            comment: if comment {
                key.comment.clone()
            } else {
                String::new()
            },
        }
    }
}

/// What sshd serves, as the welcome mail states it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Server {
    pub host: String,
    pub port: u16,
    pub host_keys: Vec<Key>,
}

/// The name ssh gives a key type in "… key fingerprint is …" (sshkey_type() in OpenSSH).
pub fn ssh_kind(kind: &str) -> &'static str {
    match kind {
        "ssh-ed25519" => "ED25519",
        "ssh-rsa" => "RSA",
        "ecdsa-sha2-nistp256" | "ecdsa-sha2-nistp384" | "ecdsa-sha2-nistp521" => "ECDSA",
        "sk-ssh-ed25519@openssh.com" => "ED25519-SK",
        "sk-ecdsa-sha2-nistp256@openssh.com" => "ECDSA-SK",
        "ssh-dss" => "DSA",
        _ => "UNKNOWN",
    }
}

/// Host, port and host keys: `welcome.host`/`welcome.port` when set, else this host's FQDN
/// and sshd's first `Port`; the host keys are sshd's `HostKey` files (their `.pub` halves),
/// all as `sshd -T` reports them for the main config.
pub fn server(config: &Config) -> Result<Server> {
    let text = crate::openssh::sshd_t(&config.sshd.binary, &config.sshd.config, None)
        .map_err(|e| anyhow::anyhow!("cannot learn sshd's port and host keys: {e}"))?;
    let (port, paths) = parse_sshd_t(&text);
    let port = match config.welcome.port {
        0 => port.context(
            "`sshd -T` names no port: set welcome.port in the config to the port clients use",
        )?,
        p => p,
    };
    anyhow::ensure!(
        !paths.is_empty(),
        "`sshd -T -f {}` names no HostKey: sshd serves no key clients could check",
        config.sshd.config.display()
    );
    let host_keys = paths
        .iter()
        .map(|p| host_key(p))
        .collect::<Result<Vec<_>>>()?;
    let host = if config.welcome.host.is_empty() {
        fqdn()?
    } else {
        config.welcome.host.clone()
    };
    Ok(Server {
        host,
        port,
        host_keys,
    })
}

/// The port sshd listens on and every `hostkey` path, in its order. The port is the first
/// `port` that a `listenaddress` line uses (a `ListenAddress host:port` overrides `Port`),
/// else the first listen address's port, else the first `port`.
fn parse_sshd_t(text: &str) -> (Option<u16>, Vec<PathBuf>) {
    let mut ports = Vec::new();
    let mut listening = Vec::new();
    let mut keys = Vec::new();
    for line in text.lines() {
        match line.split_once(' ') {
            Some(("port", p)) => ports.extend(p.trim().parse::<u16>().ok()),
            Some(("listenaddress", a)) => listening.extend(
                a.trim()
                    .rsplit_once(':')
                    .and_then(|(_, p)| p.parse::<u16>().ok()),
            ),
            Some(("hostkey", path)) => keys.push(PathBuf::from(path.trim())),
            _ => {}
        }
    }
    let port = ports
        .iter()
        .find(|p| listening.contains(p))
        .or(listening.first())
        .or(ports.first())
        .copied();
    (port, keys)
}

/// The key in `<path>.pub` (the private half is never read).
fn host_key(path: &Path) -> Result<Key> {
    let mut public = path.as_os_str().to_owned();
    public.push(".pub");
    let public = PathBuf::from(public);
    let Some((bytes, _)) = fsops::read_regular(&public)? else {
        anyhow::bail!(
            "sshd's host key {} has no public half {}: make it with `ssh-keygen -y -f {} > {}`",
            path.display(),
            public.display(),
            path.display(),
            public.display()
        );
    };
    let found = keys::parse_text(&String::from_utf8_lossy(&bytes))
        .with_context(|| format!("{} is not an OpenSSH public key", public.display()))?;
    let key = found
        .first()
        .with_context(|| format!("{} holds no public key", public.display()))?;
    Ok(Key::of(key, false))
}

/// This host's fully qualified name, as `hostname --fqdn` resolves it (the kernel's host
/// name when that fails or gives no usable name).
pub fn fqdn() -> Result<String> {
    let resolved = Command::new("hostname")
        .arg("--fqdn")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    if let Some(name) = resolved.filter(|n| crate::config::check_host_name("", n).is_ok()) {
        return Ok(name);
    }
    let kernel = fs_err::read_to_string("/proc/sys/kernel/hostname")?;
    let name = kernel.trim().to_string();
    crate::config::check_host_name("this host's name", &name)
        .context("set welcome.host in the config to the name clients connect to")?;
    Ok(name)
}

/// Everything a welcome template sees. There is no password in it, by design.
#[derive(Debug, Serialize)]
struct View<'a> {
    user: &'a str,
    host: &'a str,
    port: u16,
    /// The data dir as the client sees it inside its jail, e.g. `/data`.
    folder: String,
    host_keys: &'a [Key],
    keys: Vec<Key>,
}

/// The welcome mail's three parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mail {
    pub subject: String,
    pub text: String,
    pub html: String,
}

pub struct Templates {
    tera: Tera,
}

impl Templates {
    /// The built-in templates, each replaced by a same-named file in `dir` when there is one;
    /// an override that does not parse or uses an unknown variable is refused now (exit 2).
    pub fn load(dir: Option<&Path>) -> Result<Templates> {
        let tera = crate::watch::mail::load_tera(dir, &BUILT_IN, "welcome mail")?;
        let templates = Templates { tera };
        templates
            .render(&Config::default(), "alice", &example_server(), &[])
            .map_err(|e| usage(format!("{e:#}")))?;
        Ok(templates)
    }

    /// The mail for `user` with `keys` installed.
    pub fn render(
        &self,
        config: &Config,
        user: &str,
        server: &Server,
        keys: &[PublicKey],
    ) -> Result<Mail> {
        let view = View {
            user,
            host: &server.host,
            port: server.port,
            folder: format!("/{}", config.data_dir),
            host_keys: &server.host_keys,
            keys: keys.iter().map(|k| Key::of(k, true)).collect(),
        };
        let context = tera::Context::from_serialize(&view).context("cannot serialize a welcome")?;
        let render = |name: &str| {
            self.tera.render(name, &context).map_err(|e| {
                anyhow::anyhow!(
                    "welcome mail template {name}: {}",
                    crate::watch::mail::tera_message(&e)
                )
            })
        };
        Ok(Mail {
            subject: crate::watch::mail::one_line(&render(SUBJECT)?),
            text: render(TEXT)?,
            html: render(HTML)?,
        })
    }
}

fn example_server() -> Server {
    let key = keys::parse_line(
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIERM+TvEz/PNGRxCuPvWn1SrOXeoQ7XilUerRX+NekUr",
    )
    .expect("example key");
    Server {
        host: "sftp.example.com".into(),
        port: 22,
        host_keys: vec![Key::of(&key, false)],
    }
}

/// The letter for `user`. Every welcome is its own letter (a resend is asked for, not a job
/// that re-runs): its id carries the time it was made.
pub fn letter(user: &str, mail: Mail) -> Letter {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    Letter {
        id: format!("welcome-{user}-{}-{:09}", now.as_secs(), now.subsec_nanos()),
        kind: "welcome".into(),
        user: user.to_string(),
        to: To::Client,
        subject: mail.subject,
        text: mail.text,
        html: Some(mail.html),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ED: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIERM+TvEz/PNGRxCuPvWn1SrOXeoQ7XilUerRX+NekUr";

    #[test]
    fn sshd_t_port_and_host_keys_in_order() {
        let text = "port 2222\nport 22\naddressfamily any\nlistenaddress [::]:2222\nlistenaddress 0.0.0.0:22\nhostkey /k/rsa\nhostkey /k/ed25519\n";
        let (port, keys) = parse_sshd_t(text);
        assert_eq!(port, Some(2222));
        assert_eq!(keys, [PathBuf::from("/k/rsa"), PathBuf::from("/k/ed25519")]);
        // `ListenAddress 127.0.0.1:2200` alone: sshd still reports `port 22`.
        let text = "port 22\nlistenaddress 127.0.0.1:2200\nhostkey /k/a\n";
        assert_eq!(parse_sshd_t(text).0, Some(2200));
        assert_eq!(parse_sshd_t("port 22\n").0, Some(22));
        assert_eq!(parse_sshd_t("").0, None);
    }

    #[test]
    fn kinds_as_ssh_names_them() {
        assert_eq!(ssh_kind("ssh-ed25519"), "ED25519");
        assert_eq!(ssh_kind("ecdsa-sha2-nistp384"), "ECDSA");
        assert_eq!(ssh_kind("ssh-rsa"), "RSA");
        assert_eq!(ssh_kind("sk-ssh-ed25519@openssh.com"), "ED25519-SK");
    }

    #[test]
    fn the_line_ssh_prints() {
        let key = keys::parse_line(ED).unwrap();
        assert_eq!(
            Key::of(&key, false).line,
            "ED25519 key fingerprint is SHA256:aSmXtDKcQ/RYex0bwn4Oldw+N/TnKvJ9ZLv/8uwHiu0."
        );
    }

    #[test]
    fn html_escapes_key_comments_and_text_keeps_them() {
        let t = Templates::load(None).unwrap();
        let key = keys::parse_line(&format!("{ED} <img src=x onerror=alert(1)>")).unwrap();
        let mail = t
            .render(&Config::default(), "alice", &example_server(), &[key])
            .unwrap();
        assert!(!mail.html.contains("<img"), "{}", mail.html);
        assert!(mail.html.contains("&lt;img"), "{}", mail.html);
        assert!(mail.text.contains("<img src=x onerror=alert(1)>"));
        assert!(mail
            .text
            .contains("sftp -P 22 -i YOUR_PRIVATE_KEY alice@sftp.example.com"));
        assert!(!mail.subject.contains('\n'));
    }

    #[test]
    fn overrides_replace_built_ins_and_bad_ones_fail_early() {
        let dir = std::env::temp_dir().join(format!("sftpctl-welcome-tpl-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(SUBJECT), "Hi {{ user }} on {{ host }}:{{ port }}").unwrap();
        let t = Templates::load(Some(&dir)).unwrap();
        let mail = t
            .render(&Config::default(), "bob", &example_server(), &[])
            .unwrap();
        assert_eq!(mail.subject, "Hi bob on sftp.example.com:22");
        std::fs::write(dir.join(SUBJECT), "{{ password }}").unwrap();
        assert!(Templates::load(Some(&dir)).is_err());
        std::fs::write(dir.join(TEXT), "{% if %}").unwrap();
        assert!(Templates::load(Some(&dir)).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
