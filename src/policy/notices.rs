//! Policy notices (expiry, idle lock, retention, quota): each is written to disk first
//! (`state_dir/policy/notices/pending/ID.json`, root 0600), then delivered through the
//! configured transport and only then removed; a sent notice leaves `sent/ID`, so a notice
//! is queued once however often a job runs. A transport that is down keeps them pending for
//! the next run: nothing is lost.

use std::path::PathBuf;

use anyhow::{Context, Result};
use lettre::message::header::ContentType;
use lettre::Message;
use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::plan::fsops::{self, Meta};
use crate::watch::deliver::Mailer;
use crate::watch::mail::Addresses;
use crate::watch::outbox::ensure_private_dir;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notice {
    /// Unique and stable for what it says (e.g. `expiry-warn-alice-2027-03-31`): the same
    /// notice is queued once. Letters, digits, `-`, `_` and `.` only.
    pub id: String,
    /// The client it is about.
    pub user: String,
    pub subject: String,
    /// Plain text body.
    pub text: String,
    /// Also to the client's own address (when it has one).
    pub to_client: bool,
}

fn dir(config: &Config) -> PathBuf {
    config.watch.state_dir.join("policy").join("notices")
}

fn check_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= 200
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    anyhow::ensure!(ok, "notice id {id:?} is not a plain file name");
    Ok(())
}

/// Queues `notice` unless one with its id was queued or sent before; true when queued now.
pub fn queue(config: &Config, notice: &Notice) -> Result<bool> {
    check_id(&notice.id)?;
    let base = dir(config);
    let pending = base.join("pending").join(format!("{}.json", notice.id));
    let sent = base.join("sent").join(&notice.id);
    if std::fs::symlink_metadata(&pending).is_ok() || std::fs::symlink_metadata(&sent).is_ok() {
        return Ok(false);
    }
    ensure_private_dir(&base.join("pending"))?;
    let body = serde_json::to_vec(notice).context("cannot serialize a notice")?;
    fsops::write_atomic(&pending, &body, Meta::current_user(0o600))?;
    Ok(true)
}

/// Notices waiting for delivery, oldest first.
pub fn pending(config: &Config) -> Result<Vec<Notice>> {
    let path = dir(config).join("pending");
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
        let notice: Notice = serde_json::from_slice(&bytes)
            .with_context(|| format!("{} is not a notice", file.display()))?;
        out.push(notice);
    }
    Ok(out)
}

/// Delivers every pending notice; stops at the first failure (the rest stay pending).
/// Returns how many went out.
pub fn deliver_pending(config: &Config) -> Result<usize> {
    if pending(config)?.is_empty() {
        return Ok(0);
    }
    // Two runs at once (the timer's, the watcher's, an admin's) would send a notice twice:
    // one delivers at a time, and reads what is pending only once it holds the lock.
    let base = dir(config);
    let _lock = super::lock::exclusive(&base.join(".lock"))?;
    let notices = pending(config)?;
    let addresses = Addresses::from_config(config)?;
    let mut mailer = Mailer::from_config(config)?;
    ensure_private_dir(&base.join("sent"))?;
    let mut sent = 0;
    for notice in &notices {
        let message = build(&addresses, notice)?;
        let outcome = mailer
            .send(&format!("notice-{}", notice.id), &message)
            .and_then(|_| mailer.flush());
        if let Err(e) = outcome {
            mailer.end_batch();
            return Err(e.context(format!(
                "notice {} not delivered (it stays queued for the next run)",
                notice.id
            )));
        }
        fsops::write_atomic(
            &base.join("sent").join(&notice.id),
            b"",
            Meta::current_user(0o600),
        )?;
        fs_err::remove_file(base.join("pending").join(format!("{}.json", notice.id)))?;
        sent += 1;
    }
    mailer.end_batch();
    Ok(sent)
}

fn build(addresses: &Addresses, notice: &Notice) -> Result<Message> {
    let recipients = if notice.to_client {
        addresses.recipients(&notice.user)
    } else {
        addresses.admins().to_vec()
    };
    anyhow::ensure!(
        !recipients.is_empty(),
        "no recipient for notice {} (mail.to is empty)",
        notice.id
    );
    let mut builder = Message::builder()
        .from(addresses.from().clone())
        .subject(crate::watch::mail::one_line(&notice.subject));
    for to in recipients {
        builder = builder.to(to);
    }
    builder
        .header(ContentType::TEXT_PLAIN)
        .body(notice.text.clone())
        .context("cannot build the notice mail")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_plain_names() {
        check_id("quota-80-alice-1").unwrap();
        for bad in ["", ".x", "a/b", "a b", "../x", "a\n"] {
            assert!(check_id(bad).is_err(), "{bad:?}");
        }
    }

    /// A config whose state, spool and user files are under a fresh temp dir `tag`.
    fn config_in(tag: &str) -> (std::path::PathBuf, Config) {
        let tmp = std::env::temp_dir().join(format!("sftpctl-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        let mut config = Config::default();
        config.watch.state_dir = tmp.join("state");
        config.mail.spool_dir = tmp.join("spool");
        config.mail.to = vec!["admin@example.org".into()];
        config.user_dir = tmp.join("users");
        (tmp, config)
    }

    #[test]
    fn queues_once_and_delivers_to_the_spool() {
        let (tmp, config) = config_in("notices");
        let n = Notice {
            id: "test-1".into(),
            user: "alice".into(),
            subject: "Quota of alice at 80 %".into(),
            text: "alice uses 4.0 GiB of 5G.\n".into(),
            to_client: false,
        };
        assert!(queue(&config, &n).unwrap());
        assert!(!queue(&config, &n).unwrap(), "queued twice");
        assert_eq!(pending(&config).unwrap(), vec![n.clone()]);
        assert_eq!(deliver_pending(&config).unwrap(), 1);
        assert!(pending(&config).unwrap().is_empty());
        assert!(
            !queue(&config, &n).unwrap(),
            "queued again after it was sent"
        );
        let eml = std::fs::read_to_string(config.mail.spool_dir.join("notice-test-1.eml")).unwrap();
        assert!(eml.contains("Subject: Quota of alice at 80 %"), "{eml}");
        assert!(eml.contains("alice uses 4.0 GiB"), "{eml}");
        let _ = std::fs::remove_dir_all(&tmp);
    }

    #[test]
    fn two_runs_at_once_deliver_each_notice_once() {
        let (tmp, config) = config_in("notices2");
        for i in 0..40 {
            let n = Notice {
                id: format!("race-{i}"),
                user: "alice".into(),
                subject: format!("notice {i}"),
                text: "text\n".into(),
                to_client: false,
            };
            assert!(queue(&config, &n).unwrap());
        }
        let runs: Vec<_> = (0..2)
            .map(|_| {
                let c = config.clone();
                std::thread::spawn(move || deliver_pending(&c))
            })
            .collect();
        let sent: usize = runs.into_iter().map(|r| r.join().unwrap().unwrap()).sum();
        assert_eq!(sent, 40);
        assert!(pending(&config).unwrap().is_empty());
        let _ = std::fs::remove_dir_all(&tmp);
    }
}
