//! What the installed OpenSSH accepts, detected rather than guessed.

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};

/// The `-C` spec sftpctl evaluates an account with. OpenSSH 9.2 accepts `user=` alone; host
/// and addr are given as well because older sshd required all three and a `Match
/// Address`/`Host` block then sees loopback.
pub fn match_spec(user: &str) -> String {
    format!("user={user},host=localhost,addr=127.0.0.1")
}

/// `sshd -T [-C SPEC] -f CONFIG`: its standard output, or why it failed (one line); without a
/// spec, the global settings.
pub fn sshd_t(binary: &Path, config: &Path, spec: Option<&str>) -> Result<String, String> {
    let mut cmd = Command::new(binary);
    cmd.arg("-T");
    if let Some(spec) = spec {
        cmd.arg("-C").arg(spec);
    }
    let out = cmd
        .arg("-f")
        .arg(config)
        .output()
        .map_err(|e| format!("cannot run {}: {e}", binary.display()))?;
    if !out.status.success() {
        let text = String::from_utf8_lossy(&out.stderr);
        let spec = spec.map(|s| format!(" -C {s}")).unwrap_or_default();
        return Err(format!(
            "`{} -T{spec} -f {}` failed ({}): {}",
            binary.display(),
            config.display(),
            out.status,
            text.split_whitespace().collect::<Vec<_>>().join(" ")
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// An OpenSSH version, e.g. 9.2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version {
    pub major: u32,
    pub minor: u32,
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

impl Version {
    /// OpenSSH >= 9.5 takes the first `Subsystem` definition and allows it in Match; older
    /// versions treat a second definition as fatal.
    pub fn subsystem_may_repeat(self) -> bool {
        self >= Version { major: 9, minor: 5 }
    }

    /// OpenSSH >= 9.8 penalizes addresses that fail logins (`PerSourcePenalties`, on by
    /// default) and takes `PerSourcePenaltyExemptList`; 9.2's `sshd -t` refuses the keyword.
    pub fn has_penalties(self) -> bool {
        self >= Version { major: 9, minor: 8 }
    }

    /// `9.2`, `10.0` (as [`Version`]'s Display writes it).
    pub fn parse_short(text: &str) -> Option<Version> {
        parse_version(&format!("OpenSSH_{text}")).ok()
    }
}

/// Runs `sshd -V` (it prints e.g. `OpenSSH_9.2p1 Debian-2, OpenSSL 3.0` on stderr).
pub fn detect_version(sshd: &Path) -> Result<Version> {
    let out = Command::new(sshd)
        .arg("-V")
        .output()
        .with_context(|| format!("cannot run {} -V to learn the OpenSSH version (is openssh-server installed? set sshd.binary)", sshd.display()))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    parse_version(&text).with_context(|| {
        format!(
            "{} -V did not print an OpenSSH version: {}",
            sshd.display(),
            text.trim()
        )
    })
}

/// Finds `OpenSSH_<major>.<minor>` in version output.
pub fn parse_version(text: &str) -> Result<Version> {
    let Some(at) = text.find("OpenSSH_") else {
        bail!("no OpenSSH_ marker");
    };
    let rest = &text[at + "OpenSSH_".len()..];
    let mut parts = rest.split(|c: char| !c.is_ascii_digit());
    let major = parts
        .next()
        .unwrap_or("")
        .parse()
        .context("bad major version")?;
    let minor = parts
        .next()
        .unwrap_or("")
        .parse()
        .context("bad minor version")?;
    Ok(Version { major, minor })
}

/// True for a `Subsystem sftp …` line (keywords are case-insensitive in sshd_config).
pub fn is_sftp_subsystem(line: &str) -> bool {
    let mut words = line.split_whitespace();
    words
        .next()
        .is_some_and(|k| k.eq_ignore_ascii_case("subsystem"))
        && words.next() == Some("sftp")
}

/// True for a `PerSourcePenaltyExemptList …` line.
pub fn is_penalty_exempt_list(line: &str) -> bool {
    line.split_whitespace()
        .next()
        .is_some_and(|k| k.eq_ignore_ascii_case("persourcepenaltyexemptlist"))
}

/// True for a `Match …` line.
pub fn is_match(line: &str) -> bool {
    line.split_whitespace()
        .next()
        .is_some_and(|k| k.eq_ignore_ascii_case("match"))
}

/// True when the main config has an `Include` whose pattern covers `dropin`. Relative
/// patterns are relative to /etc/ssh, as sshd reads them.
pub fn includes(main_config: &str, dropin: &Path) -> bool {
    let Some(dropin) = dropin.to_str() else {
        return false;
    };
    let mut in_match = false;
    for line in main_config.lines() {
        // An Include inside a Match block applies only to that block: it does not count.
        in_match |= is_match(line);
        let mut words = line.split_whitespace();
        if in_match
            || !words
                .next()
                .is_some_and(|k| k.eq_ignore_ascii_case("include"))
        {
            continue;
        }
        for pattern in words {
            let pattern = if pattern.starts_with('/') {
                pattern.to_string()
            } else {
                format!("/etc/ssh/{pattern}")
            };
            if glob_match(&pattern, dropin) {
                return true;
            }
        }
    }
    false
}

/// Shell-style glob with `*` and `?` (no `/` crossing), enough for sshd's Include.
pub fn glob_match(pattern: &str, path: &str) -> bool {
    fn go(p: &[u8], s: &[u8]) -> bool {
        match (p.first(), s.first()) {
            (None, None) => true,
            (Some(b'*'), _) => go(&p[1..], s) || (!s.is_empty() && s[0] != b'/' && go(p, &s[1..])),
            (Some(b'?'), Some(c)) if *c != b'/' => go(&p[1..], &s[1..]),
            (Some(a), Some(b)) if a == b => go(&p[1..], &s[1..]),
            _ => false,
        }
    }
    go(pattern.as_bytes(), path.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        let v = parse_version("OpenSSH_9.2p1 Debian-2+deb12u3, OpenSSL 3.0.11").unwrap();
        assert_eq!(v, Version { major: 9, minor: 2 });
        assert!(!v.subsystem_may_repeat());
        assert!(parse_version("OpenSSH_9.5, LibreSSL")
            .unwrap()
            .subsystem_may_repeat());
        assert!(parse_version("OpenSSH_10.0p2")
            .unwrap()
            .subsystem_may_repeat());
        assert!(parse_version("garbage").is_err());
        assert!(!v.has_penalties());
        assert!(!Version::parse_short("9.7").unwrap().has_penalties());
        assert!(Version::parse_short("9.8").unwrap().has_penalties());
        assert!(Version::parse_short("10.0").unwrap().has_penalties());
    }

    #[test]
    fn include_detection() {
        let debian = "# comment\nInclude /etc/ssh/sshd_config.d/*.conf\nPort 22\n";
        let d = Path::new("/etc/ssh/sshd_config.d/50-sftpctl.conf");
        assert!(includes(debian, d));
        assert!(includes("include sshd_config.d/*.conf\n", d));
        assert!(!includes("Port 22\n", d));
        assert!(!includes("#Include /etc/ssh/sshd_config.d/*.conf\n", d));
        assert!(!includes("Include /etc/ssh/other.d/*.conf\n", d));
        assert!(!includes(
            "Match User x\n  Include /etc/ssh/sshd_config.d/*.conf\n",
            d
        ));
        assert!(!includes(
            debian,
            Path::new("/etc/ssh/sshd_config.d/sub/x.conf")
        ));
    }

    #[test]
    fn subsystem_lines() {
        assert!(is_sftp_subsystem(
            "Subsystem\tsftp\t/usr/lib/openssh/sftp-server"
        ));
        assert!(is_sftp_subsystem("  subsystem sftp internal-sftp"));
        assert!(!is_sftp_subsystem("#Subsystem sftp x"));
        assert!(!is_sftp_subsystem("Subsystem sftpx y"));
    }
}
