//! Policy notices (expiry, idle lock, retention, quota): letters of kind `notice` in the
//! outbox (`crate::letters`: on disk before any delivery attempt, removed only once the
//! transport took them, queued once per id). `sftpctl policy run` delivers them at its end;
//! the watcher's delivery thread delivers whatever is left.

use std::path::PathBuf;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::letters::{self, Letter, To};

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

impl Notice {
    fn letter(&self) -> Letter {
        Letter {
            id: self.id.clone(),
            kind: "notice".into(),
            user: self.user.clone(),
            to: if self.to_client {
                To::AdminsAndClient
            } else {
                To::Admins
            },
            subject: self.subject.clone(),
            text: self.text.clone(),
            html: None,
        }
    }
}

/// Where notices waited before they were letters (issue 11).
fn legacy_dir(config: &Config) -> PathBuf {
    config.watch.state_dir.join("policy").join("notices")
}

/// Queues `notice` unless one with its id was queued or sent before; true when queued now.
pub fn queue(config: &Config, notice: &Notice) -> Result<bool> {
    migrate(config)?;
    letters::queue(config, &notice.letter())
}

/// Notices waiting for delivery, oldest first.
pub fn pending(config: &Config) -> Result<Vec<Notice>> {
    migrate(config)?;
    Ok(letters::pending(config)?
        .into_iter()
        .filter(|l| l.kind == "notice")
        .map(|l| Notice {
            to_client: l.to == To::AdminsAndClient,
            id: l.id,
            user: l.user,
            subject: l.subject,
            text: l.text,
        })
        .collect())
}

/// Delivers every pending letter (notices and any other); stops at the first failure (the
/// rest stay pending). Returns how many went out.
pub fn deliver_pending(config: &Config) -> Result<usize> {
    migrate(config)?;
    letters::deliver_pending(config)
}

/// Moves notices of the issue-11 queue (`state_dir/policy/notices`) into the outbox's
/// letters: pending ones are queued, sent ones keep their id from being queued again.
fn migrate(config: &Config) -> Result<()> {
    let old = legacy_dir(config);
    if std::fs::symlink_metadata(&old).is_err() {
        return Ok(());
    }
    let _lock = crate::lockfile::exclusive(
        &config
            .watch
            .state_dir
            .join("policy")
            .join(".notices-move.lock"),
    )?;
    if std::fs::symlink_metadata(&old).is_err() {
        return Ok(());
    }
    let base = letters::dir(config);
    let sent_dir = old.join("sent");
    if let Ok(entries) = std::fs::read_dir(&sent_dir) {
        crate::watch::outbox::ensure_private_dir(&base.join("sent"))?;
        for entry in entries {
            let entry = entry.with_context(|| format!("cannot read {}", sent_dir.display()))?;
            let target = base.join("sent").join(entry.file_name());
            fs_err::rename(entry.path(), target)?;
        }
    }
    let pending_dir = old.join("pending");
    if let Ok(entries) = std::fs::read_dir(&pending_dir) {
        for entry in entries {
            let entry = entry.with_context(|| format!("cannot read {}", pending_dir.display()))?;
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "json") {
                let bytes = fs_err::read(&path)?;
                if let Ok(notice) = serde_json::from_slice::<Notice>(&bytes) {
                    letters::queue(config, &notice.letter())?;
                }
            }
            fs_err::remove_file(&path)?;
        }
    }
    fs_err::remove_dir_all(&old)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn notices_of_the_old_queue_are_moved_into_the_outbox() {
        let (tmp, config) = config_in("notices-move");
        let old = legacy_dir(&config);
        std::fs::create_dir_all(old.join("pending")).unwrap();
        std::fs::create_dir_all(old.join("sent")).unwrap();
        let n = Notice {
            id: "old-1".into(),
            user: "alice".into(),
            subject: "old".into(),
            text: "old\n".into(),
            to_client: true,
        };
        std::fs::write(
            old.join("pending/old-1.json"),
            serde_json::to_vec(&n).unwrap(),
        )
        .unwrap();
        std::fs::write(old.join("sent/old-0"), b"").unwrap();
        assert_eq!(pending(&config).unwrap(), vec![n]);
        assert!(!old.exists());
        let was_sent = Notice {
            id: "old-0".into(),
            user: "alice".into(),
            subject: "x".into(),
            text: "x".into(),
            to_client: false,
        };
        assert!(!queue(&config, &was_sent).unwrap(), "sent before the move");
        assert_eq!(deliver_pending(&config).unwrap(), 1);
        let _ = std::fs::remove_dir_all(&tmp);
    }
}
