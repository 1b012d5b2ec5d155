//! Steps that change existing accounts and remove things: passwords, locks, sessions,
//! accounts, keys files and jails. Removals cannot be undone, so commands put them last,
//! after every check and after the archive (if asked) was written.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

use crate::accounts;
use crate::config::Config;
use crate::plan::fsops::{self, Kind};
use crate::plan::journal::Undo;
use crate::plan::steps::{run_command, uid_of};
use crate::plan::{archive, tree_removal};
use crate::plan::{Journal, Step};

/// Runs a command with `input` on its stdin (how secrets reach chpasswd: never in argv).
pub fn run_with_stdin(argv: &[&str], input: &[u8]) -> Result<()> {
    let (program, args) = argv.split_first().context("empty command")?;
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run {program}"))?;
    child
        .stdin
        .take()
        .context("no stdin")?
        .write_all(input)
        .with_context(|| format!("cannot write to {program}"))?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        // stderr of chpasswd names the user, never the secret.
        bail!(
            "{program} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// A password given in clear, hashed by the system (`chpasswd`, the method of login.defs).
pub struct SetPassword {
    pub name: String,
    pub password: String,
}

impl Step for SetPassword {
    fn describe(&self) -> String {
        format!("set the password of {}", self.name)
    }
    fn is_satisfied(&self) -> Result<bool> {
        Ok(false)
    }
    fn apply(&self, _journal: &mut Journal) -> Result<()> {
        let line = format!("{}:{}\n", self.name, self.password);
        run_with_stdin(&["chpasswd"], line.as_bytes())
    }
}

/// A password hash as stored (`$y$…`, `$6$…`), or `*` for key-only.
pub struct SetPasswordHash {
    pub config: Config,
    pub name: String,
    pub hash: String,
}

impl Step for SetPasswordHash {
    fn describe(&self) -> String {
        format!("set the password hash of {}", self.name)
    }
    fn is_satisfied(&self) -> Result<bool> {
        Ok(accounts::shadow_of(&self.config, &self.name)?
            .is_some_and(|s| s.password.trim_start_matches('!') == self.hash))
    }
    fn apply(&self, _journal: &mut Journal) -> Result<()> {
        let locked = accounts::shadow_of(&self.config, &self.name)?.is_some_and(|s| s.locked());
        let hash = if locked {
            format!("!{}", self.hash)
        } else {
            self.hash.clone()
        };
        run_with_stdin(
            &["chpasswd", "-e"],
            format!("{}:{hash}\n", self.name).as_bytes(),
        )
    }
}

/// The expiry day `sftpctl lock` writes (1970-01-02): in the past for sshd and PAM alike, and
/// never a day a client's `expires` maps to, so a lock can be told from an expiry.
pub const LOCK_EXPIRE: u64 = 1;

/// Locked: `!` before the password field (no password login) and the account expired on
/// [`LOCK_EXPIRE`] (sshd and PAM refuse keys too). Unlocked: both undone; a client's own
/// expiry is then put back by the [`SetExpiry`] step that follows in the same plan.
pub struct SetLocked {
    pub config: Config,
    pub name: String,
    pub locked: bool,
}

impl Step for SetLocked {
    fn describe(&self) -> String {
        let verb = if self.locked { "lock" } else { "unlock" };
        format!("{verb} account {}", self.name)
    }
    fn is_satisfied(&self) -> Result<bool> {
        let Some(s) = accounts::shadow_of(&self.config, &self.name)? else {
            return Ok(false);
        };
        let lock_expiry = s.expire == Some(LOCK_EXPIRE);
        Ok(if self.locked {
            s.locked() && lock_expiry
        } else {
            !s.locked() && !lock_expiry
        })
    }
    fn apply(&self, _journal: &mut Journal) -> Result<()> {
        let s = accounts::shadow_of(&self.config, &self.name)?.unwrap_or_default();
        let mut argv = vec!["usermod".to_string()];
        if self.locked {
            if !s.locked() {
                argv.push("-L".into());
            }
            argv.extend(["-e".into(), LOCK_EXPIRE.to_string()]);
        } else {
            if s.password.trim_start_matches('!').is_empty() {
                // `!` alone (useradd's default): `usermod -U` would leave it locked
                // ("would result in a passwordless account"); key-only is `*`.
                argv.extend(["-p".into(), "*".into()]);
            } else if s.locked() {
                argv.push("-U".into());
            }
            if s.expire == Some(LOCK_EXPIRE) {
                argv.extend(["-e".into(), String::new()]);
            }
        }
        if argv.len() == 1 {
            return Ok(());
        }
        argv.push(self.name.clone());
        run_command(&argv).map(|_| ())
    }
}

/// Shadow's account expiry field of `name` holds `field` (days since 1970-01-01; `None`:
/// no expiry). An account locked by [`SetLocked`] keeps its lock's day: `unlock` puts the
/// client's expiry back. Revert restores the field as it was.
pub struct SetExpiry {
    pub config: Config,
    pub name: String,
    pub field: Option<u64>,
    /// What the field means, for the plan's line (e.g. "works through 2027-03-31 (UTC)").
    pub meaning: String,
}

impl SetExpiry {
    fn locked(s: &accounts::Shadow) -> bool {
        s.locked() && s.expire == Some(LOCK_EXPIRE)
    }
}

impl Step for SetExpiry {
    fn describe(&self) -> String {
        match self.field {
            Some(day) => format!(
                "set the account expiry of {}: {} (shadow expire field {day})",
                self.name, self.meaning
            ),
            None => format!("clear the account expiry of {}", self.name),
        }
    }
    fn is_satisfied(&self) -> Result<bool> {
        Ok(accounts::shadow_of(&self.config, &self.name)?
            .is_some_and(|s| Self::locked(&s) || s.expire == self.field))
    }
    fn apply(&self, journal: &mut Journal) -> Result<()> {
        let old = accounts::shadow_of(&self.config, &self.name)?
            .with_context(|| format!("{} has no line in the shadow file", self.name))?
            .expire;
        let text = |f: Option<u64>| f.map(|d| d.to_string()).unwrap_or_default();
        run_command(&[
            "usermod".into(),
            "-e".into(),
            text(self.field),
            self.name.clone(),
        ])?;
        journal.record(Undo::RunCommand(vec![
            "usermod".into(),
            "-e".into(),
            text(old),
            self.name.clone(),
        ]));
        Ok(())
    }
}

/// No process of the user runs (its SFTP sessions end).
pub struct KillSessions {
    pub name: String,
}

/// Live (not zombie) processes of `name`'s sessions, from /proc: those whose real or
/// effective uid is `uid`, and sshd's root-owned per-connection monitor titled for `name`
/// (`sshd: NAME [priv]`; `sshd-session: NAME [priv]` on OpenSSH >= 9.8), which otherwise
/// lives on between authentication and the start of the user's own process.
fn processes_of(name: &str, uid: u32) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return vec![];
    };
    dir.filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
                return false;
            };
            let field = |key: &str| {
                status
                    .lines()
                    .find_map(|l| l.strip_prefix(key))
                    .unwrap_or("")
                    .split_whitespace()
                    .map(str::to_string)
                    .collect::<Vec<_>>()
            };
            if field("State:").first().is_some_and(|s| s == "Z") {
                return false;
            }
            let uids = field("Uid:");
            if uids.iter().take(2).any(|u| *u == uid.to_string()) {
                return true;
            }
            // Only sshd's own root processes: anyone may name a process "sshd: alice [priv]".
            let root = uids.first().is_some_and(|u| u == "0");
            let sshd = field("Name:")
                .first()
                .is_some_and(|n| SSHD_PROCESS_NAMES.contains(&n.as_str()));
            root && sshd
                && std::fs::read(format!("/proc/{pid}/cmdline"))
                    .is_ok_and(|c| session_title_user(&c) == Some(name.as_bytes()))
        })
        .collect()
}

/// The process names (`comm`) of sshd's per-connection processes: OpenSSH >= 9.8 runs each
/// connection as a separate binary, `sshd-session`.
pub const SSHD_PROCESS_NAMES: [&str; 2] = ["sshd", "sshd-session"];

/// The user a session process's title names: `sshd: alice [priv]`, `sshd: alice@notty`,
/// `sshd-session: alice [priv]`, `sshd-session: alice@pts/0` (setproctitle pads with NULs or
/// spaces). `unknown` and pre-authentication titles (`[net]`, `[preauth]`) name nobody.
pub fn session_title_user(cmdline: &[u8]) -> Option<&[u8]> {
    let end = cmdline
        .iter()
        .rposition(|b| *b != 0 && *b != b' ')
        .map_or(0, |i| i + 1);
    let title = &cmdline[..end];
    let rest = title
        .strip_prefix(b"sshd-session: ")
        .or_else(|| title.strip_prefix(b"sshd: "))?;
    let at = rest.iter().position(|b| *b == b' ' || *b == b'@')?;
    let (user, tail) = rest.split_at(at);
    let session = tail == b" [priv]" || (tail.len() > 1 && tail[0] == b'@');
    (session && !user.is_empty()).then_some(user)
}

impl Step for KillSessions {
    fn describe(&self) -> String {
        format!("end the running sessions of {}", self.name)
    }
    fn is_satisfied(&self) -> Result<bool> {
        Ok(uid_of(&self.name).is_none_or(|uid| processes_of(&self.name, uid).is_empty()))
    }
    fn apply(&self, _journal: &mut Journal) -> Result<()> {
        let uid = uid_of(&self.name).context("no such account")?;
        for _ in 0..100 {
            let pids = processes_of(&self.name, uid);
            if pids.is_empty() {
                return Ok(());
            }
            for pid in pids {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        bail!(
            "processes of {} are still running after SIGKILL (ps -u {} shows them)",
            self.name,
            self.name
        )
    }
}

/// The account is gone (userdel, without -r: the home is the jail's data dir).
pub struct RemoveAccount {
    pub name: String,
}

impl Step for RemoveAccount {
    fn describe(&self) -> String {
        format!("remove account {}", self.name)
    }
    fn is_satisfied(&self) -> Result<bool> {
        Ok(uid_of(&self.name).is_none())
    }
    fn apply(&self, _journal: &mut Journal) -> Result<()> {
        let removed = run_command(&["userdel".into(), self.name.clone()]).map(|_| ());
        crate::plan::steps::forget_ids();
        removed
    }
}

/// A file, link or socket is gone (never a directory; a symlink itself, not its target).
pub struct RemovePath {
    pub path: PathBuf,
}

impl Step for RemovePath {
    fn describe(&self) -> String {
        format!("remove {}", self.path.display())
    }
    fn is_satisfied(&self) -> Result<bool> {
        Ok(fsops::inspect(&self.path)?.0 == Kind::Missing)
    }
    fn apply(&self, _journal: &mut Journal) -> Result<()> {
        if fsops::inspect(&self.path)?.0 == Kind::Dir {
            bail!("{} is a directory", self.path.display());
        }
        fs_err::remove_file(&self.path)?;
        Ok(())
    }
}

/// A directory tree is gone: removed iteratively with a bounded number of descriptors
/// (any depth), symlinks removed and never followed, other file systems never entered
/// ([`tree_removal`]). When it stops, the error says where and what is left.
pub struct RemoveTree {
    pub path: PathBuf,
}

impl Step for RemoveTree {
    fn describe(&self) -> String {
        format!(
            "remove directory {} and everything in it",
            self.path.display()
        )
    }
    fn is_satisfied(&self) -> Result<bool> {
        Ok(fsops::inspect(&self.path)?.0 == Kind::Missing)
    }
    fn apply(&self, _journal: &mut Journal) -> Result<()> {
        match fsops::inspect(&self.path)?.0 {
            Kind::Dir => {
                tree_removal::remove_tree(&self.path)?;
            }
            Kind::Missing => {}
            _ => fs_err::remove_file(&self.path)?,
        }
        Ok(())
    }
}

/// `dir` archived into a new `archive` (.tar.gz, root 0600) through the descriptor sftpctl
/// created ([`archive::write`]). Nothing is recorded for revert: once written, an archive is
/// never deleted by sftpctl (a later failure must leave the data somewhere).
pub struct Archive {
    pub dir: PathBuf,
    pub archive: PathBuf,
}

impl Step for Archive {
    fn describe(&self) -> String {
        format!(
            "archive {} into {}",
            self.dir.display(),
            self.archive.display()
        )
    }
    fn is_satisfied(&self) -> Result<bool> {
        Ok(false)
    }
    fn apply(&self, _journal: &mut Journal) -> Result<()> {
        archive::write(&self.dir, &self.archive)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_titles_of_old_and_new_openssh() {
        let user =
            |t: &[u8]| session_title_user(t).map(|u| String::from_utf8_lossy(u).into_owned());
        for title in [
            &b"sshd: alice [priv]"[..],
            b"sshd: alice@notty",
            b"sshd: alice@pts/0\0\0\0",
            b"sshd-session: alice [priv]",
            b"sshd-session: alice@notty   ",
            b"sshd-session: alice@notty\0",
        ] {
            assert_eq!(
                user(title).as_deref(),
                Some("alice"),
                "{:?}",
                String::from_utf8_lossy(title)
            );
        }
        for title in [
            &b"sshd: alice [net]"[..],
            b"sshd: alice [preauth]",
            b"sshd: /usr/sbin/sshd -D [listener] 0 of 10-100 startups",
            b"sshd-session: unknown [priv]x",
            b"sshd: [accepted]",
            b"sshd-auth: alice [net]",
            b"bash",
            b"",
            b"xsshd: alice [priv]",
        ] {
            assert_ne!(
                user(title).as_deref(),
                Some("alice"),
                "{:?}",
                String::from_utf8_lossy(title)
            );
        }
    }
}
