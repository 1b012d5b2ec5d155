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

use std::collections::BTreeMap;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::config::Config;
use crate::fenced;
use crate::openssh;
use crate::plan::journal::Journal;
use crate::plan::{Phase, Step};

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

/// `sshd -T -C user=NAME,host=localhost,addr=127.0.0.1 -f CONFIG`: its standard output, or
/// why it failed. OpenSSH 9.2 accepts `user=` alone; host and addr are given as well because
/// older sshd required all three and a `Match Address`/`Host` block then sees loopback.
pub fn sshd_t(binary: &Path, config: &Path, name: &str) -> Result<String, String> {
    let spec = format!("user={name},host=localhost,addr=127.0.0.1");
    let out = Command::new(binary)
        .arg("-T")
        .arg("-C")
        .arg(&spec)
        .arg("-f")
        .arg(config)
        .output()
        .map_err(|e| format!("cannot run {}: {e}", binary.display()))?;
    if !out.status.success() {
        let text = String::from_utf8_lossy(&out.stderr);
        return Err(format!(
            "`{} -T -C {spec} -f {}` failed ({}): {}",
            binary.display(),
            config.display(),
            out.status,
            text.split_whitespace().collect::<Vec<_>>().join(" ")
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
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

/// The host's sshd configuration without sftpctl's blocks, in a private temporary file
/// (removed on drop) that `sshd -T -f` can read.
pub struct HostView {
    path: PathBuf,
}

impl HostView {
    pub fn write(config: &Config) -> Result<HostView> {
        let main_path = &config.sshd.config;
        let main = fs_err::read_to_string(main_path).with_context(|| {
            format!(
                "cannot read {} to learn what sshd allows today",
                main_path.display()
            )
        })?;
        let text = host_view_text(&main, &config.sshd.dropin);
        let path = std::env::temp_dir().join(format!(
            "sftpctl-host-view-{}-{}.conf",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
        ));
        // create_new: O_EXCL, so a planted file or symlink at that name is never written through.
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        let view = HostView { path };
        file.write_all(text.as_bytes())
            .with_context(|| format!("cannot write {}", view.path.display()))?;
        Ok(view)
    }

    /// The guarded settings sshd gives `name` without sftpctl's blocks.
    pub fn effective(&self, config: &Config, name: &str) -> Result<AuthSettings> {
        let result = effective(&config.sshd.binary, &self.path, name);
        if result.is_err() {
            // The copy's errors name a temporary file; the host's own file says it better.
            if let Err(e) = sshd_t(&config.sshd.binary, &config.sshd.config, name) {
                bail!(
                    "sshd rejects its configuration as it is now, before sftpctl changes anything: {e}"
                );
            }
        }
        result.with_context(|| {
            format!(
                "cannot learn what the host's sshd config (without sftpctl's blocks) allows {name}"
            )
        })
    }
}

impl Drop for HostView {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The main config as if sftpctl had never touched it: the fenced Match block is dropped, and
/// every `Include` pattern that covers the drop-in is replaced by the files it matches today
/// except the drop-in (absolute paths, in glob order, as sshd reads them).
pub fn host_view_text(main: &str, dropin: &Path) -> String {
    let dropin_s = dropin.to_str().unwrap_or("");
    let mut out = String::new();
    for line in fenced::remove(main, MATCH_FENCE).lines() {
        let mut words = line.split_whitespace();
        let is_include = words
            .next()
            .is_some_and(|k| k.eq_ignore_ascii_case("include"));
        if !is_include {
            out.push_str(line);
            out.push('\n');
            continue;
        }
        let mut kept = Vec::new();
        for pattern in words {
            let pattern = pattern.trim_matches('"');
            let abs = if pattern.starts_with('/') {
                pattern.to_string()
            } else {
                format!("/etc/ssh/{pattern}")
            };
            if openssh::glob_match(&abs, dropin_s) {
                kept.extend(expand_glob(&abs).into_iter().filter(|p| p != dropin_s));
            } else {
                kept.push(abs);
            }
        }
        if kept.is_empty() {
            out.push_str(&format!("# sftpctl host view: nothing left of: {line}\n"));
        } else {
            out.push_str(&format!("Include {}\n", kept.join(" ")));
        }
    }
    out
}

/// The existing paths an absolute glob pattern matches, sorted (glob(3) order in the C
/// locale). `*` and `?` do not match a leading dot, as in glob(3).
fn expand_glob(pattern: &str) -> Vec<String> {
    let wild = |c: &str| c.contains(['*', '?', '[']);
    let mut paths = vec![String::new()];
    for comp in pattern.split('/').filter(|c| !c.is_empty()) {
        let mut next = Vec::new();
        for base in &paths {
            if !wild(comp) {
                next.push(format!("{base}/{comp}"));
                continue;
            }
            let dir = if base.is_empty() { "/" } else { base.as_str() };
            let Ok(entries) = std::fs::read_dir(dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let name = entry.file_name();
                let Some(name) = name.to_str() else { continue };
                if name.starts_with('.') && !comp.starts_with('.') {
                    continue;
                }
                if openssh::glob_match(comp, name) {
                    next.push(format!("{base}/{name}"));
                }
            }
        }
        paths = next;
    }
    paths.retain(|p| Path::new(p).exists());
    paths.sort();
    paths
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

/// Why an account is probed; it decides what the error tells the admin to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// sftpctl's admin (it may not exist yet: `sshd -T` matches `Match User` by name).
    Admin,
    /// root: on every host, never jailed, a Match block of sftpctl's must not reach it.
    Root,
    /// An existing account in `jail_group` that sftpctl did not create.
    InJailGroup,
}

/// At most this many accounts of the jail group are probed (each costs two `sshd -T`).
const MAX_FOREIGN_PROBES: usize = 16;

/// The accounts whose authentication must not change: the admin, root, and every existing
/// account in `jail_group` that is not one of sftpctl's jailed users (on the first `init`
/// of a host that already had a group of that name, those would be jailed).
pub fn probe_accounts(config: &Config) -> Vec<(String, Probe)> {
    let mut out = Vec::new();
    if let Some(admin) = &config.admin {
        out.push((admin.clone(), Probe::Admin));
    }
    if users::get_user_by_name("root").is_some() {
        out.push(("root".to_string(), Probe::Root));
    }
    let mut foreign: Vec<String> = crate::accounts::jailed_names(config)
        .into_iter()
        .chain(primary_members(config))
        .filter(|n| {
            crate::accounts::account(config, n) == crate::accounts::Account::Foreign
                && config.admin.as_deref() != Some(n)
                && n != "root"
        })
        .collect();
    foreign.sort();
    foreign.dedup();
    out.extend(
        foreign
            .into_iter()
            .take(MAX_FOREIGN_PROBES)
            .map(|n| (n, Probe::InJailGroup)),
    );
    out
}

/// Accounts whose primary group is `jail_group` (they are not listed as its members).
fn primary_members(config: &Config) -> Vec<String> {
    let Some(gid) = crate::plan::steps::gid_of(&config.jail_group) else {
        return vec![];
    };
    let gid = gid.to_string();
    std::fs::read_to_string("/etc/passwd")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() > 3 && f[3] == gid).then(|| f[0].to_string())
        })
        .collect()
}

/// What to do about a change, in words, for the account's kind.
pub fn advice(config: &Config, name: &str, probe: &Probe) -> String {
    match probe {
        Probe::Admin => format!(
            "a Match block earlier in sshd's config than sftpctl's admin block, or sftpctl's jail block, reaches {name}: see docs/security.md (\"What sftpctl never changes\")"
        ),
        Probe::Root => format!(
            "one of sftpctl's Match blocks reaches root: is root in group {}?",
            config.jail_group
        ),
        Probe::InJailGroup => format!(
            "{name} is in group {}, which sftpctl jails: take it out (gpasswd -d {name} {}) or set another jail_group",
            config.jail_group, config.jail_group
        ),
    }
}

/// Validation step: after the new files are written and `sshd -t` passed, before sshd is
/// reloaded, the guarded settings of every probed account must be what the host gives it.
pub struct AuthGuard {
    command: String,
    config: Config,
    /// Each probed account, why, and its settings in the host view (taken when the plan was
    /// built, before anything changed).
    before: Vec<(String, Probe, AuthSettings)>,
}

impl AuthGuard {
    /// Takes the host view of every probed account now.
    pub fn capture(config: &Config, command: &str) -> Result<AuthGuard> {
        let view = HostView::write(config)?;
        let mut before = Vec::new();
        for (name, probe) in probe_accounts(config) {
            let settings = view.effective(config, &name)?;
            before.push((name, probe, settings));
        }
        Ok(AuthGuard {
            command: command.to_string(),
            config: config.clone(),
            before,
        })
    }

    fn names(&self) -> String {
        self.before
            .iter()
            .map(|(n, _, _)| n.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl Step for AuthGuard {
    fn describe(&self) -> String {
        format!(
            "check that sshd's authentication settings for {} stay what the host gives them (sshd -T -C user=NAME)",
            self.names()
        )
    }
    fn is_satisfied(&self) -> Result<bool> {
        Ok(false)
    }
    fn apply(&self, _journal: &mut Journal) -> Result<()> {
        for (name, probe, before) in &self.before {
            let after = effective(&self.config.sshd.binary, &self.config.sshd.config, name)?;
            if let Some(change) = changes(before, &after).into_iter().next() {
                bail!(
                    "{} would change sshd's {} for {name} ({} -> {}): rolled back, nothing changed; {}",
                    self.command,
                    change.key,
                    change.before,
                    change.after,
                    advice(&self.config, name, probe)
                );
            }
        }
        Ok(())
    }
    fn phase(&self) -> Phase {
        Phase::Validate
    }
}

#[cfg(test)]
mod tests;
