//! Uploaded files the admin's group cannot write (issue 5).
//!
//! TODO(issue 5, perms::scan): this is where doctor reports files and directories inside the
//! data dirs that are not group-writable (OpenSSH's `sftp put` uploads 0644 even with
//! `-u 0002`, see FACTS.md), once `crate::perms::scan` exists. The intended shape:
//!
//! ```ignore
//! for name in &ctx.users {
//!     let jail = crate::jail::Jail::new(ctx.config, name);
//!     let found = crate::perms::scan(&jail.data)?;       // never follows symlinks
//!     // one warn per user with a count and the first few paths; repair: the steps
//!     // perms offers (chmod g+w through a no-follow handle), pushed with `.repair(...)`.
//! }
//! ```
//!
//! Until then the area returns nothing, so the output and the exit code do not change.

use crate::doctor::{Check, Ctx};

pub fn checks(_ctx: &mut Ctx) -> Vec<Check> {
    Vec::new()
}
