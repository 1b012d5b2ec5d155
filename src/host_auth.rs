//! What the host's own sshd configuration lets the accounts sftpctl does not jail do, and the
//! guard that keeps sftpctl from ever narrowing it.
//!
//! sshd takes the first value it finds for a keyword, and sftpctl's blocks come first (the
//! drop-in is included at the top of the main config) or are the last Match blocks (the fenced
//! block at the end): either way a setting in them replaces the host's for the accounts they
//! match. So the admin block is computed, not fixed: it keeps the host's own
//! `AuthorizedKeysFile` for the admin and adds sftpctl's keys file. The host's value comes
//! from the *host view*: a copy of the main config without sftpctl's blocks, asked with
//! `sshd -T -C user=…`. It does not depend on what sftpctl wrote before, so a second `init`
//! renders the same block, and an old block that narrowed the admin's keys is repaired.
//!
//! [`AuthGuard`] compares, for the admin and for existing accounts sftpctl does not jail, the
//! host view with the candidate configuration after the files are written and before sshd is
//! reloaded; any change to an authentication setting reverts the run.

mod guard;
mod view;

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Result};

use crate::config::Config;

pub use guard::{advice, probe_accounts, AuthGuard, Probe};
pub use view::{host_view_text, HostView};

/// The fenced block id of the Match blocks in the main config (when the drop-in is not
/// included).
pub const MATCH_FENCE: &str = "match";

/// The `sshd -T` keywords that decide who may log in, how, and into what session. sftpctl
/// changes none of them for an account it does not jail, except that the admin's
/// `authorizedkeysfile` may gain sftpctl's file.
pub const GUARDED: &[&str] = &[
    // The jail's own settings first: when sftpctl's jail block reaches an account, these
    // name the cause better than the key files it also replaces.
    "chrootdirectory",
    "forcecommand",
    "authorizedkeysfile",
    "authorizedkeyscommand",
    "authorizedkeyscommanduser",
    "authorizedprincipalsfile",
    "authorizedprincipalscommand",
    "authorizedprincipalscommanduser",
    "trustedusercakeys",
    "revokedkeys",
    "pubkeyauthentication",
    "pubkeyacceptedalgorithms",
    "pubkeyauthoptions",
    "passwordauthentication",
    "kbdinteractiveauthentication",
    "hostbasedauthentication",
    "gssapiauthentication",
    "kerberosauthentication",
    "permitemptypasswords",
    "authenticationmethods",
    "permitrootlogin",
    "allowusers",
    "allowgroups",
    "denyusers",
    "denygroups",
    "maxauthtries",
    "usepam",
    "permittty",
];

/// The guarded settings of one account: keyword → value (repeated lines joined by a space,
/// as `sshd -T` prints one `allowusers` line per name). A keyword sshd does not print is absent.
pub type AuthSettings = BTreeMap<String, String>;

/// `sshd -T -C <match spec of NAME> -f CONFIG`: its standard output, or why it failed.
pub fn sshd_t(binary: &Path, config: &Path, name: &str) -> Result<String, String> {
    crate::openssh::sshd_t(binary, config, Some(&crate::openssh::match_spec(name)))
}

/// The guarded keywords of `sshd -T` output.
pub fn auth_settings(text: &str) -> AuthSettings {
    let mut map = AuthSettings::new();
    for line in text.lines() {
        let line = line.trim();
        let (key, value) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        let key = key.to_ascii_lowercase();
        if !GUARDED.contains(&key.as_str()) {
            continue;
        }
        map.entry(key)
            .and_modify(|v: &mut String| {
                v.push(' ');
                v.push_str(value.trim());
            })
            .or_insert_with(|| value.trim().to_string());
    }
    map
}

/// The guarded settings of `name` under `config`.
pub fn effective(binary: &Path, config: &Path, name: &str) -> Result<AuthSettings> {
    sshd_t(binary, config, name)
        .map(|t| auth_settings(&t))
        .map_err(anyhow::Error::msg)
}

/// The admin block's `AuthorizedKeysFile`: the host's entries for the admin first, then
/// sftpctl's file, without repeats. `none` (no files) contributes nothing.
pub fn admin_keys_files(host: &AuthSettings, keys_dir: &Path) -> Result<Vec<String>> {
    let mut files: Vec<String> = Vec::new();
    for token in keys_tokens(host.get("authorizedkeysfile").map(String::as_str)) {
        // The token goes into a config line sftpctl writes: nothing that could end or comment it.
        if token
            .bytes()
            .any(|b| !b.is_ascii_graphic() || b"\"'#\\".contains(&b))
        {
            bail!(
                "the host's AuthorizedKeysFile entry {token:?} cannot be copied into sftpctl's admin block: give it a plain path in sshd_config"
            );
        }
        if !files.contains(&token) {
            files.push(token);
        }
    }
    let ours = format!("{}/%u", keys_dir.display());
    if !files.contains(&ours) {
        files.push(ours);
    }
    Ok(files)
}

fn keys_tokens(value: Option<&str>) -> Vec<String> {
    match value {
        None | Some("none") => vec![],
        Some(v) => v.split_whitespace().map(str::to_string).collect(),
    }
}

/// The admin's `AuthorizedKeysFile` for sftpctl's admin block, from the host view.
pub fn admin_block_keys(config: &Config, admin: &str) -> Result<Vec<String>> {
    let view = HostView::write(config)?;
    admin_keys_files(
        &view.effective(config, admin)?,
        &config.sshd.authorized_keys_dir,
    )
}

/// One guarded setting that differs between the host view and sftpctl's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub key: String,
    pub before: String,
    pub after: String,
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({} -> {})", self.key, self.before, self.after)
    }
}

/// What sftpctl's configuration changes in the guarded settings of a non-jailed account. An
/// `authorizedkeysfile` that keeps every entry the host had (and adds some) is no change.
pub fn changes(before: &AuthSettings, after: &AuthSettings) -> Vec<Change> {
    let unset = "(unset)".to_string();
    let mut out = Vec::new();
    for key in GUARDED {
        let (b, a) = (before.get(*key), after.get(*key));
        let differs = if *key == "authorizedkeysfile" {
            let after_files = keys_tokens(a.map(String::as_str));
            keys_tokens(b.map(String::as_str))
                .iter()
                .any(|t| !after_files.contains(t))
        } else {
            b != a
        };
        if differs {
            out.push(Change {
                key: key.to_string(),
                before: b.unwrap_or(&unset).clone(),
                after: a.unwrap_or(&unset).clone(),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests;
