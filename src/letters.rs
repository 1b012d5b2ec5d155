//! Letters: the outbox's one-off messages — policy notices, "new files for you", welcome
//! mails, digests — beside the session reports' segments (`watch::outbox`), in
//! `<state_dir>/outbox/letters/`. Same promise as the reports: a letter is on disk (written
//! atomically, root 0600) before any delivery attempt, and leaves only after the transport
//! took it; a transport that is down keeps it for the next attempt, across restarts.
//!
//! `pending/ID.json` is a letter waiting; `sent/ID` (empty) remembers that ID went out, so
//! a letter is queued once however often the job that makes it runs. Whoever queues may
//! deliver at once ([`deliver_pending`]: `sftpctl welcome`, `policy run`); the watcher's
//! delivery thread delivers what is left after each pass over the reports. Deliveries take
//! turns on a lock, so two processes never send one letter twice.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use lettre::message::header::ContentType;
use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::Message;
use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::plan::fsops::{self, Meta};
use crate::watch::deliver::Mailer;
use crate::watch::mail::{one_line, Addresses};
use crate::watch::outbox::ensure_private_dir;

/// Who gets a letter; resolved when it is sent, so an address changed meanwhile applies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum To {
    /// `mail.to`.
    Admins,
    /// `mail.to` and the client's own address (when it has one).
    AdminsAndClient,
    /// The client's own address only; a client without one gets nothing (the letter is
    /// dropped as sent, and says so on stderr).
    Client,
    /// One address, e.g. a digest's recipient.
    Address(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Letter {
    /// Unique and stable for what it says (`expiry-warn-alice-2027-03-31`): the same letter is
    /// queued once. Letters, digits, `-`, `_` and `.` only.
    pub id: String,
    /// `notice`, `newfiles`, `welcome`, `digest`: names the spooled file (`KIND-ID.eml`).
    pub kind: String,
    /// The client it is about (whose address `To::Client` means).
    pub user: String,
    pub to: To,
    pub subject: String,
    /// Plain text body: the full record.
    pub text: String,
    /// HTML alternative, when there is one.
    #[serde(default)]
    pub html: Option<String>,
}

pub fn dir(config: &Config) -> PathBuf {
    config.watch.state_dir.join("outbox").join("letters")
}

fn check_name(what: &str, id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= 200
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    anyhow::ensure!(ok, "{what} {id:?} is not a plain file name");
    Ok(())
}

/// Queues `letter` unless one with its id was queued or sent before; true when queued now.
pub fn queue(config: &Config, letter: &Letter) -> Result<bool> {
    queue_in(&dir(config), letter)
}

/// [`queue`] into the letters dir `base`.
pub fn queue_in(base: &Path, letter: &Letter) -> Result<bool> {
    check_name("letter id", &letter.id)?;
    check_name("letter kind", &letter.kind)?;
    let pending = base.join("pending").join(format!("{}.json", letter.id));
    if std::fs::symlink_metadata(&pending).is_ok() || was_sent(base, &letter.id) {
        return Ok(false);
    }
    ensure_private_dir(&base.join("pending"))?;
    let body = serde_json::to_vec(letter).context("cannot serialize a letter")?;
    fsops::write_atomic(&pending, &body, Meta::current_user(0o600))?;
    Ok(true)
}

/// Whether a letter with this id went out.
pub fn was_sent(base: &Path, id: &str) -> bool {
    std::fs::symlink_metadata(base.join("sent").join(id)).is_ok()
}

/// Letters waiting for delivery, oldest first.
pub fn pending(config: &Config) -> Result<Vec<Letter>> {
    pending_in(&dir(config))
}

fn pending_in(base: &Path) -> Result<Vec<Letter>> {
    let path = base.join("pending");
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(&path) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("cannot read {}", path.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".json") && !name.starts_with('.') {
            let mtime = entry.metadata().and_then(|m| m.modified()).ok();
            files.push((mtime, entry.path()));
        }
    }
    files.sort();
    for (_, file) in files {
        let bytes = fs_err::read(&file)?;
        match serde_json::from_slice::<Letter>(&bytes) {
            Ok(letter) => out.push(letter),
            // Never blocks the others: set aside, said once.
            Err(e) => {
                eprintln!(
                    "sftpctl: {} is not a letter ({e}); moved aside as .bad",
                    file.display()
                );
                let _ = std::fs::rename(&file, file.with_extension("bad"));
            }
        }
    }
    Ok(out)
}

/// Delivers every pending letter through the configured transport; stops at the first
/// failure (the rest stay pending). Returns how many went out.
pub fn deliver_pending(config: &Config) -> Result<usize> {
    let base = dir(config);
    if pending_in(&base)?.is_empty() {
        return Ok(0);
    }
    let addresses = Addresses::from_config(config)?;
    let mut mailer = Mailer::from_config(config)?;
    let sent = deliver_with(&base, &addresses, &mut mailer);
    mailer.end_batch();
    sent
}

/// [`deliver_pending`] with the caller's transport (the watcher's delivery thread).
pub fn deliver_with(base: &Path, addresses: &Addresses, mailer: &mut Mailer) -> Result<usize> {
    if pending_in(base)?.is_empty() {
        return Ok(0);
    }
    // Reads what is pending again once it holds the lock: another process may have sent it.
    ensure_private_dir(base)?;
    let _lock = crate::lockfile::exclusive(&base.join(".lock"))?;
    let letters = pending_in(base)?;
    ensure_private_dir(&base.join("sent"))?;
    let mut sent = 0;
    for letter in &letters {
        match build(addresses, letter)? {
            Some(message) => {
                mailer
                    .send(&format!("{}-{}", letter.kind, letter.id), &message)
                    .and_then(|_| mailer.flush())
                    .with_context(|| {
                        format!(
                            "{} {} not delivered (it stays queued and is tried again)",
                            letter.kind, letter.id
                        )
                    })?;
            }
            None => eprintln!(
                "sftpctl: {} {} has no recipient ({} has no mail address); dropped",
                letter.kind, letter.id, letter.user
            ),
        }
        fsops::write_atomic(
            &base.join("sent").join(&letter.id),
            b"",
            Meta::current_user(0o600),
        )?;
        fs_err::remove_file(base.join("pending").join(format!("{}.json", letter.id)))?;
        sent += 1;
    }
    Ok(sent)
}

fn recipients(addresses: &Addresses, letter: &Letter) -> Result<Vec<Mailbox>> {
    Ok(match &letter.to {
        To::Admins => addresses.admins().to_vec(),
        To::AdminsAndClient => addresses.recipients(&letter.user),
        To::Client => addresses.client(&letter.user).into_iter().collect(),
        To::Address(text) => vec![text.parse::<Mailbox>().with_context(|| {
            format!(
                "{} {}: {text:?} is not a mail address",
                letter.kind, letter.id
            )
        })?],
    })
}

/// The message, or None when nobody is to get it.
fn build(addresses: &Addresses, letter: &Letter) -> Result<Option<Message>> {
    let to = recipients(addresses, letter)?;
    if to.is_empty() {
        anyhow::ensure!(
            letter.to == To::Client,
            "no recipient for {} {} (mail.to is empty)",
            letter.kind,
            letter.id
        );
        return Ok(None);
    }
    let mut builder = Message::builder()
        .from(addresses.from().clone())
        .subject(one_line(&letter.subject));
    for mailbox in to {
        builder = builder.to(mailbox);
    }
    let message = match &letter.html {
        None => builder
            .header(ContentType::TEXT_PLAIN)
            .body(letter.text.clone()),
        Some(html) => builder.multipart(
            MultiPart::alternative()
                .singlepart(
                    SinglePart::builder()
                        .header(ContentType::TEXT_PLAIN)
                        .body(letter.text.clone()),
                )
                .singlepart(
                    SinglePart::builder()
                        .header(ContentType::TEXT_HTML)
                        .body(html.clone()),
                ),
        ),
    };
    message
        .with_context(|| format!("cannot build the mail of {} {}", letter.kind, letter.id))
        .map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_plain_names() {
        check_name("id", "quota-80-alice-1").unwrap();
        for bad in ["", ".x", "a/b", "a b", "../x", "a\n"] {
            assert!(check_name("id", bad).is_err(), "{bad:?}");
        }
    }

    fn config_in(tag: &str) -> (PathBuf, Config) {
        let tmp = std::env::temp_dir().join(format!("sftpctl-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        let mut config = Config::default();
        config.watch.state_dir = tmp.join("state");
        config.mail.spool_dir = tmp.join("spool");
        config.mail.to = vec!["admin@example.org".into()];
        config.user_dir = tmp.join("users");
        (tmp, config)
    }

    fn letter(id: &str, to: To) -> Letter {
        Letter {
            id: id.into(),
            kind: "newfiles".into(),
            user: "alice".into(),
            to,
            subject: "New files for you".into(),
            text: "report.pdf (12 KiB)\n".into(),
            html: Some("<p>report.pdf</p>".into()),
        }
    }

    #[test]
    fn queued_once_sent_once_with_both_parts() {
        let (tmp, config) = config_in("letters");
        let l = letter("nf-1", To::Admins);
        assert!(queue(&config, &l).unwrap());
        assert!(!queue(&config, &l).unwrap(), "queued twice");
        assert_eq!(deliver_pending(&config).unwrap(), 1);
        assert!(
            !queue(&config, &l).unwrap(),
            "queued again after it was sent"
        );
        let eml = std::fs::read_to_string(config.mail.spool_dir.join("newfiles-nf-1.eml")).unwrap();
        assert!(eml.contains("multipart/alternative"), "{eml}");
        assert!(eml.contains("To: admin@example.org"), "{eml}");
        let _ = std::fs::remove_dir_all(&tmp);
    }

    #[test]
    fn a_client_without_an_address_gets_nothing_and_blocks_nothing() {
        let (tmp, config) = config_in("letters-noaddr");
        queue(&config, &letter("nf-a", To::Client)).unwrap();
        queue(&config, &letter("nf-b", To::Admins)).unwrap();
        assert_eq!(deliver_pending(&config).unwrap(), 2);
        assert!(!config.mail.spool_dir.join("newfiles-nf-a.eml").exists());
        assert!(config.mail.spool_dir.join("newfiles-nf-b.eml").exists());
        let _ = std::fs::remove_dir_all(&tmp);
    }

    #[test]
    fn a_broken_file_is_set_aside() {
        let (tmp, config) = config_in("letters-bad");
        let base = dir(&config);
        ensure_private_dir(&base.join("pending")).unwrap();
        std::fs::write(base.join("pending/x.json"), b"{not json").unwrap();
        queue(&config, &letter("nf-ok", To::Admins)).unwrap();
        assert_eq!(deliver_pending(&config).unwrap(), 1);
        assert!(base.join("pending/x.bad").exists());
        let _ = std::fs::remove_dir_all(&tmp);
    }
}
