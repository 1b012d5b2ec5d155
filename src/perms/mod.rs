//! Shared write access (issue 5): every file and directory created in any jail's data tree
//! becomes group-writable (directories also setgid) within a second, whatever mode the SFTP
//! client asked for, because a umask can only remove bits.
//!
//! - [`Watcher`]: inotify on the jail root, every jail dir and every directory of every data
//!   tree; a thread repairs each created, closed, moved-in or chmod'ed entry. Started by
//!   `sftpctl watch` when `perms.enabled` (and by the hidden `sftpctl perms-watch`).
//! - [`scan`]: one pass over all data trees for `doctor` (list) and `doctor --fix` (repair).
//!
//! Both act as root on paths users control, so every path is opened with
//! `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV)`
//! relative to the data dir, checked with `fstat` on that descriptor (regular file or
//! directory, owned by the jail's user or the admin, group `group`, same filesystem) and
//! changed with `fchmod` on that same descriptor: `g+rw` added (files) or `g+rwxs`
//! (directories), and `o-rwx` and (files) setuid/setgid removed, so nothing in a data tree is
//! open to other local accounts (issue 9). Trees deeper than PATH_MAX are walked relative to
//! each parent's descriptor. See `docs/shared-write.md` for the race analysis and measured
//! cost.

pub(crate) mod fsx;
mod inotify;
pub(crate) mod jails;
pub mod migrate;
pub mod mounts;
pub mod policy;
mod scan;
mod usage;
mod watcher;

pub use jails::UserCheck;
pub use scan::{
    scan, scan_jail, scan_with, short, Finding, FindingKind, JailScan, ScanReport, MAX_LISTED,
};
pub use usage::{usage, usage_with, Usage};
pub use watcher::{Stats, Watcher, MAX_WATCHED_PATH};
