//! `[forward]` and `[collect]`: an SFTP host's rsyslog sends its trusted lines to a collector
//! over TLS with mutual certificate authentication, and the collector's watcher reports for
//! every host (docs/fleet.md). Every value here ends up in rsyslog's config: each is checked
//! for the characters rsyslog would read as syntax.

use std::path::{Path, PathBuf};

use anyhow::Result;
use serde::{Deserialize, Serialize};

use super::{check_abs_path, check_host_name};

/// An SFTP host forwarding to a collector (off while `to` is empty).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Forward {
    /// `HOST:PORT` of the collector's TLS listener; empty = no forwarding.
    pub to: String,
    /// The name the collector's certificate must carry (rsyslog's permitted peer); empty = the
    /// host part of `to`.
    pub collector_name: String,
    /// The CA that signed the collector's (and this host's) certificate, PEM.
    pub ca: PathBuf,
    /// This host's certificate (PEM), shown to the collector.
    pub cert: PathBuf,
    /// This host's private key (PEM): root's, not readable by group or others.
    pub key: PathBuf,
    /// Where rsyslog keeps the queue while the collector is unreachable (root's, 0700).
    pub queue_dir: PathBuf,
    /// Disk the queue may take, in MiB; beyond it rsyslog blocks the forwarding action (lines
    /// still go to the local log file).
    pub queue_max_mb: u32,
    /// Seconds between rsyslog's attempts to reach the collector again.
    pub retry_secs: u32,
    /// The host's syslog socket (journald's or rsyslog's /dev/log), where sftpctl sends the
    /// account lines the collector checks senders against.
    pub log_socket: PathBuf,
}

impl Default for Forward {
    fn default() -> Self {
        Forward {
            to: String::new(),
            collector_name: String::new(),
            ca: "/etc/sftpctl/tls/ca.pem".into(),
            cert: "/etc/sftpctl/tls/host.pem".into(),
            key: "/etc/sftpctl/tls/host.key".into(),
            queue_dir: "/var/spool/sftpctl/forward".into(),
            queue_max_mb: 1024,
            retry_secs: 30,
            log_socket: "/dev/log".into(),
        }
    }
}

impl Forward {
    pub fn enabled(&self) -> bool {
        !self.to.is_empty()
    }

    /// `to` split into host and port (validated).
    pub fn target(&self) -> Result<(&str, u16)> {
        split_host_port("forward.to", &self.to)
    }

    /// The collector's certificate name rsyslog accepts.
    pub fn peer_name(&self) -> Result<&str> {
        if self.collector_name.is_empty() {
            Ok(self.target()?.0)
        } else {
            Ok(&self.collector_name)
        }
    }

    pub(super) fn validate(&self) -> Result<()> {
        if !self.enabled() {
            return Ok(());
        }
        self.target()?;
        if !self.collector_name.is_empty() {
            check_peer_name("forward.collector_name", &self.collector_name)?;
        }
        for (key, path) in [
            ("forward.ca", &self.ca),
            ("forward.cert", &self.cert),
            ("forward.key", &self.key),
            ("forward.queue_dir", &self.queue_dir),
            ("forward.log_socket", &self.log_socket),
        ] {
            check_rsyslog_path(key, path)?;
        }
        if !(16..=1 << 20).contains(&self.queue_max_mb) {
            anyhow::bail!("forward.queue_max_mb must be between 16 and 1048576");
        }
        if !(1..=3600).contains(&self.retry_secs) {
            anyhow::bail!("forward.retry_secs must be between 1 and 3600");
        }
        Ok(())
    }
}

/// A collector: rsyslog listens for forwarding hosts and feeds their lines to this host's
/// watcher.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Collect {
    /// Whether this host collects (`init --collect` sets it for that run).
    pub enabled: bool,
    /// `ADDRESS:PORT` the TLS listener binds to.
    pub listen: String,
    /// The CA whose certificates are accepted (PEM): only hosts it signed can connect.
    pub ca: PathBuf,
    /// The collector's certificate (PEM), shown to forwarding hosts.
    pub cert: PathBuf,
    /// The collector's private key (PEM): root's, not readable by group or others.
    pub key: PathBuf,
    /// Certificate names allowed to send (`sftp1.example.com`, or `*.sftp.example.com`):
    /// a certificate of the CA with another name is refused.
    pub permitted: Vec<String>,
    /// `doctor` flags a host that sent nothing for this many seconds.
    pub quiet_after_secs: u64,
}

impl Default for Collect {
    fn default() -> Self {
        Collect {
            enabled: false,
            listen: "0.0.0.0:6514".into(),
            ca: "/etc/sftpctl/tls/ca.pem".into(),
            cert: "/etc/sftpctl/tls/host.pem".into(),
            key: "/etc/sftpctl/tls/host.key".into(),
            permitted: Vec::new(),
            quiet_after_secs: 2 * 3600,
        }
    }
}

impl Collect {
    /// `listen` split into address and port (validated).
    pub fn bind(&self) -> Result<(&str, u16)> {
        let (addr, port) = split_host_port("collect.listen", &self.listen)?;
        if addr.parse::<std::net::IpAddr>().is_err() {
            anyhow::bail!(
                "collect.listen: {:?} must be an IP address and a port, e.g. \"0.0.0.0:6514\" or \"[::]:6514\"",
                self.listen
            );
        }
        Ok((addr, port))
    }

    pub(super) fn validate(&self) -> Result<()> {
        if !self.enabled {
            return Ok(());
        }
        self.bind()?;
        if self.permitted.is_empty() {
            anyhow::bail!(
                "collect.permitted is empty: list the certificate names of the hosts that may forward, e.g. permitted = [\"*.sftp.example.com\"]"
            );
        }
        for name in &self.permitted {
            check_peer_name("collect.permitted", name)?;
        }
        for (key, path) in [
            ("collect.ca", &self.ca),
            ("collect.cert", &self.cert),
            ("collect.key", &self.key),
        ] {
            check_rsyslog_path(key, path)?;
        }
        if !(60..=30 * 86_400).contains(&self.quiet_after_secs) {
            anyhow::bail!("collect.quiet_after_secs must be between 60 and 2592000 (30 days)");
        }
        Ok(())
    }
}

/// `HOST:PORT` or `[V6]:PORT`.
fn split_host_port<'a>(key: &str, value: &'a str) -> Result<(&'a str, u16)> {
    let bad = || {
        anyhow::anyhow!("{key}: {value:?} must be HOST:PORT, e.g. \"collector.example.com:6514\"")
    };
    let (host, port) = value.rsplit_once(':').ok_or_else(bad)?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let port: u16 = port.parse().map_err(|_| bad())?;
    if port == 0 || host.is_empty() {
        return Err(bad());
    }
    check_host_name(key, host)?;
    Ok((host, port))
}

/// A certificate name as rsyslog's permitted peers take it: a host name, or `*.` and one.
fn check_peer_name(key: &str, name: &str) -> Result<()> {
    check_host_name(key, name.strip_prefix("*.").unwrap_or(name))
}

/// An absolute path rsyslog reads inside a quoted parameter: no quote, backslash or control.
fn check_rsyslog_path(key: &str, path: &Path) -> Result<()> {
    check_abs_path(key, path)?;
    let text = path.to_string_lossy();
    if text.contains(['"', '\\', '\'', '`', '$']) {
        anyhow::bail!(
            "{key}: {:?} must not contain quotes, backslashes, ` or $",
            text
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forward_targets_and_names_are_checked() {
        let mut f = Forward {
            to: "collector.example:6514".into(),
            ..Forward::default()
        };
        f.validate().unwrap();
        assert_eq!(f.target().unwrap(), ("collector.example", 6514));
        assert_eq!(f.peer_name().unwrap(), "collector.example");
        f.to = "[::1]:6514".into();
        assert_eq!(f.target().unwrap(), ("::1", 6514));
        for bad in [
            "collector",
            "collector:0",
            "collector:70000",
            ":6514",
            "a\"b:6514",
            "x\ny:1",
        ] {
            f.to = bad.into();
            assert!(f.validate().is_err(), "{bad}");
        }
        f.to = "c.example:6514".into();
        f.collector_name = "evil\" action(type=\"omfile\"".into();
        assert!(f.validate().is_err());
        f.collector_name = "*.example".into();
        f.validate().unwrap();
        f.ca = "/etc/ca\".pem".into();
        assert!(f.validate().is_err());
    }

    #[test]
    fn a_collector_needs_permitted_names_and_an_ip_to_bind() {
        let mut c = Collect {
            enabled: true,
            ..Collect::default()
        };
        assert!(c.validate().unwrap_err().to_string().contains("permitted"));
        c.permitted = vec!["*.sftp.example".into(), "sftp-a".into()];
        c.validate().unwrap();
        c.listen = "collector.example:6514".into();
        assert!(c.validate().is_err());
        c.listen = "[::]:6514".into();
        c.validate().unwrap();
        c.permitted.push("a b".into());
        assert!(c.validate().is_err());
    }
}
