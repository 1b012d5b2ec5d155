//! SSH logins of jailed users and the admin, from sshd's own auth lines: `parse` reads them,
//! `track` makes one [`Login`] per connection (and decides which lines to believe), `summary`
//! sums them up per user for a time span (the digest's section), `state` keeps each
//! account's last login and failures since for `list-users`.

pub mod parse;
pub mod state;
pub mod summary;
pub mod track;

use serde::{Deserialize, Serialize};

use parse::Source;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Accepted,
    /// An account's login that did not succeed.
    Failed,
    /// A name that is no account of the host.
    Invalid,
    /// OpenSSH >= 9.8 penalised or refused a source address (no user).
    Penalty,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Accepted => "accepted",
            Outcome::Failed => "failed",
            Outcome::Invalid => "invalid",
            Outcome::Penalty => "penalty",
        }
    }
}

/// One connection's login, as sshd logged it. Names are shown as [`crate::watch::escape::for_people`]
/// makes them (control characters escaped): an invalid user's name is a remote client's text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Login {
    /// When it was decided (accepted, or the connection's end), Unix seconds.
    pub time: i64,
    pub host: String,
    pub pid: u32,
    pub user: String,
    pub outcome: Outcome,
    /// The accepted method, or the failed methods sshd logged (`publickey,password`); empty
    /// when none was logged (a refused key at LogLevel INFO).
    pub method: String,
    pub source: String,
    pub port: Option<u16>,
    /// The key's type and fingerprint when sshd logged it (`ED25519 SHA256:…`).
    pub key: Option<String>,
    /// `Failed …` lines of this connection.
    pub failed_attempts: u32,
    /// How it ended (`connection closed`, `Too many authentication failures`, a penalty).
    pub note: String,
}

impl Login {
    fn new(time: i64, host: &str, pid: u32, user: &str, outcome: Outcome, source: Source) -> Login {
        Login {
            time,
            host: host.to_string(),
            pid,
            user: user.to_string(),
            outcome,
            method: String::new(),
            source: source.addr,
            port: source.port,
            key: None,
            failed_attempts: 0,
            note: String::new(),
        }
    }
}
