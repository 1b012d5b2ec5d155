//! Logins per user over a time span: what a digest says about them.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{Login, Outcome};

/// One user's logins in the span.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct UserLogins {
    pub accepted: u64,
    pub failed: u64,
    /// The source address of the user's last login in the span, whatever its outcome.
    pub last_source: Option<String>,
    pub last_time: Option<i64>,
    /// The last accepted login's time and source.
    pub last_accepted: Option<(i64, String)>,
}

/// [`summarise`]'s answer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct LoginSummary {
    /// Accounts, by name: accepted and failed logins.
    pub users: BTreeMap<String, UserLogins>,
    /// Every attempt with a name that is no account, together: those names are a remote
    /// client's text and are never a key of their own (a flood of made-up names stays one
    /// entry). `failed` counts them, `last_source` is the last one's.
    pub invalid: UserLogins,
    /// Penalties and refused connections of OpenSSH >= 9.8's PerSourcePenalties.
    pub penalties: u64,
}

/// Sums up `logins` whose time is in `[from, to)`, in any order: per account the accepted
/// and failed logins and the source of the last one; invalid users and penalties as totals.
/// Pure: no I/O, no clock; `logins` come from [`crate::history::logins::read`] or the
/// watcher.
pub fn summarise<'a>(
    logins: impl IntoIterator<Item = &'a Login>,
    from: i64,
    to: i64,
) -> LoginSummary {
    let mut s = LoginSummary::default();
    for l in logins {
        if l.time < from || l.time >= to {
            continue;
        }
        let entry = match l.outcome {
            Outcome::Penalty => {
                s.penalties += 1;
                continue;
            }
            Outcome::Invalid => &mut s.invalid,
            Outcome::Accepted | Outcome::Failed => s.users.entry(l.user.clone()).or_default(),
        };
        match l.outcome {
            Outcome::Accepted => {
                entry.accepted += 1;
                if entry
                    .last_accepted
                    .as_ref()
                    .is_none_or(|(t, _)| *t <= l.time)
                {
                    entry.last_accepted = Some((l.time, l.source.clone()));
                }
            }
            _ => entry.failed += 1,
        }
        if entry.last_time.is_none_or(|t| t <= l.time) {
            entry.last_time = Some(l.time);
            entry.last_source = Some(l.source.clone());
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn login(time: i64, user: &str, outcome: Outcome, source: &str) -> Login {
        Login {
            time,
            host: "h".into(),
            pid: 1,
            user: user.into(),
            outcome,
            method: String::new(),
            source: source.into(),
            port: None,
            key: None,
            failed_attempts: 0,
            note: String::new(),
        }
    }

    #[test]
    fn counts_per_user_within_the_span() {
        let logins = [
            login(5, "alice", Outcome::Failed, "192.0.2.1"),
            login(20, "alice", Outcome::Accepted, "192.0.2.2"),
            login(15, "alice", Outcome::Failed, "192.0.2.3"),
            login(12, "bob", Outcome::Accepted, "192.0.2.4"),
            login(13, "x y", Outcome::Invalid, "198.51.100.1"),
            login(14, "z", Outcome::Invalid, "198.51.100.2"),
            login(16, "", Outcome::Penalty, "198.51.100.2/32"),
            login(30, "bob", Outcome::Failed, "192.0.2.5"),
        ];
        let s = summarise(&logins, 10, 30);
        let alice = &s.users["alice"];
        assert_eq!((alice.accepted, alice.failed), (1, 1));
        assert_eq!(alice.last_source.as_deref(), Some("192.0.2.2"));
        assert_eq!(alice.last_accepted, Some((20, "192.0.2.2".into())));
        assert_eq!((s.users["bob"].accepted, s.users["bob"].failed), (1, 0));
        assert_eq!(s.users.len(), 2);
        assert_eq!(s.invalid.failed, 2);
        assert_eq!(s.invalid.last_source.as_deref(), Some("198.51.100.2"));
        assert_eq!(s.penalties, 1);
    }
}
