//! Rules for the names and single-line values that reach accounts and rendered files.

use anyhow::{bail, Result};
use regex::Regex;
use std::sync::LazyLock;

static NAME: LazyLock<Regex> =
    LazyLock::new(|| Regex::new("^[a-z_][a-z0-9_-]{0,31}$").expect("valid regex"));

/// Accounts sftpctl never manages, whatever the config says.
const RESERVED: &[&str] = &[
    "root", "daemon", "bin", "sys", "sync", "nobody", "sshd", "dev",
];

/// A user name sftpctl may create: `^[a-z_][a-z0-9_-]{0,31}$`, not a reserved system name.
pub fn check_user_name(what: &str, name: &str) -> Result<()> {
    if !NAME.is_match(name) {
        bail!(
            "{what}: {name:?} is not a valid user name: use 1 to 32 of a-z, 0-9, _ and -, starting with a letter or _"
        );
    }
    if RESERVED.contains(&name) {
        bail!("{what}: {name:?} is a reserved system name");
    }
    Ok(())
}

/// A group name, same character rules as a user name.
pub fn check_group_name(what: &str, name: &str) -> Result<()> {
    if !NAME.is_match(name) {
        bail!(
            "{what}: {name:?} is not a valid group name: use 1 to 32 of a-z, 0-9, _ and -, starting with a letter or _"
        );
    }
    if name == "root" {
        bail!("{what}: the root group cannot be used");
    }
    Ok(())
}

/// One path component: no `/`, not `.`/`..`, same characters as a name plus `.`.
pub fn check_path_component(what: &str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c));
    if !ok {
        bail!("{what}: {name:?} must be one directory name of a-z, 0-9, '.', '_' and '-'");
    }
    Ok(())
}

/// A systemd unit name such as `rsyslog.service`.
pub fn check_unit_name(what: &str, name: &str) -> Result<()> {
    let ok = name.ends_with(".service")
        && name.len() < 256
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-@".contains(c));
    if !ok {
        bail!("{what}: {name:?} is not a systemd service name such as rsyslog.service");
    }
    Ok(())
}

/// A free-text value that must stay on one line (mail headers, host names).
pub fn check_single_line(what: &str, value: &str) -> Result<()> {
    if value.chars().any(|c| c.is_control()) {
        bail!("{what}: {value:?} must be one line without control characters");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_names() {
        for ok in ["alice", "_svc", "a", "bob-2", "x_y", &"a".repeat(32)] {
            check_user_name("n", ok).unwrap();
        }
        for bad in [
            "",
            "Alice",
            "1abc",
            "-x",
            "a b",
            "a\nb",
            "a%u",
            "a/b",
            "a.b",
            "root",
            "sshd",
            &"a".repeat(33),
            "ünï",
            "a;rm",
        ] {
            assert!(check_user_name("n", bad).is_err(), "accepted {bad:?}");
        }
    }

    #[test]
    fn single_line() {
        check_single_line("v", "SFTP <a@b>").unwrap();
        assert!(check_single_line("v", "a\r\nBcc: x").is_err());
    }
}
