//! Per-client policy (docs/policy.md): access mode, address allow-list, expiry, retention and
//! quota, declared per user in its settings record ([`crate::registry::UserSettings`]) and
//! carried out with OpenSSH's and the system's own mechanisms:
//!
//! - `sshd`: the per-user `Match` blocks (internal-sftp request lists, `DenyUsers` from
//!   other addresses), placed before the jail group's block so that they win;
//! - `expiry`: shadow's account expiry, idle lock;
//! - `retention`: daily deletion of old files, no-follow and beneath the jail;
//! - `quota`: usage per client, warnings, and no uploads at 100 %;
//! - `runner`: `sftpctl policy run`, the periodic job of the policy service;
//! - `notices`: the mails these send, queued on disk until delivered.

pub mod assign;
pub mod expiry;
pub mod kick;
pub mod notices;
pub mod quota;
pub mod retention;
pub mod runner;
pub mod sshd;
pub mod steps;
pub mod values;
