//! What sshd itself says a client gets (`sshd -T -C user=NAME,addr=…`), compared with what
//! its block says: run before reload by every change of the blocks, and by `doctor`.

use std::net::IpAddr;

use anyhow::Result;

use crate::config::Config;
use crate::openssh;
use crate::plan::{Journal, Phase, Step};
use crate::policy::values::Network;
use crate::render::UserBlock;

/// One account seen from one address, and what sshd must say for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expect {
    pub user: String,
    pub addr: IpAddr,
    /// `forcecommand` as `sshd -T` prints it.
    pub force_command: String,
    /// `denyusers` names the user.
    pub denied: bool,
}

/// Addresses tried, in order, for "an address outside every allowed network".
const OUTSIDE: &[&str] = &[
    "192.0.2.1",
    "198.51.100.1",
    "203.0.113.1",
    "127.0.0.2",
    "10.255.255.1",
    "2001:db8::1",
    "fe80::1",
];

/// The addresses sshd is asked about for a client allowed from `allow`: one inside (the
/// first network's own address) and one outside every network; loopback when it may log
/// in from anywhere.
pub fn probe_addresses(allow: &[Network]) -> (Option<IpAddr>, Option<IpAddr>) {
    let Some(first) = allow.first() else {
        return (Some(IpAddr::from([127, 0, 0, 1])), None);
    };
    let outside = OUTSIDE
        .iter()
        .filter_map(|a| a.parse::<IpAddr>().ok())
        .find(|a| !allow.iter().any(|n| n.contains(*a)));
    (Some(first.addr), outside)
}

/// What sshd must say for the client of `block` (allowed from `allow`).
pub fn expectations(config: &Config, block: &UserBlock, allow: &[Network]) -> Vec<Expect> {
    let force_command = format!(
        "internal-sftp -l {} -u {}{}",
        config.sftp_log_level,
        config.umask,
        block
            .sftp_flags
            .as_deref()
            .map(|f| format!(" {f}"))
            .unwrap_or_default()
    );
    let (inside, outside) = probe_addresses(allow);
    let mut out = Vec::new();
    for (addr, denied) in [(inside, false), (outside, true)] {
        if let Some(addr) = addr {
            out.push(Expect {
                user: block.name.clone(),
                addr,
                force_command: force_command.clone(),
                denied,
            });
        }
    }
    out
}

/// Asks sshd; `Err` says in one line what differs.
pub fn verify(config: &Config, expect: &Expect) -> Result<(), String> {
    let spec = format!("user={},host=localhost,addr={}", expect.user, expect.addr);
    let text = openssh::sshd_t(&config.sshd.binary, &config.sshd.config, Some(&spec))?;
    let value = |key: &str| -> Vec<String> {
        text.lines()
            .filter_map(|l| l.split_once(' '))
            .filter(|(k, _)| *k == key)
            .map(|(_, v)| v.trim().to_string())
            .collect()
    };
    let force = value("forcecommand");
    if force.first().map(String::as_str) != Some(expect.force_command.as_str()) {
        return Err(format!(
            "sshd -T -C {spec} says forcecommand {:?}, not {:?}",
            force.first().map(String::as_str).unwrap_or("none"),
            expect.force_command
        ));
    }
    let denied = value("denyusers").contains(&expect.user);
    if denied != expect.denied {
        return Err(format!(
            "sshd -T -C {spec} {} {} from {}, the allow-list says it {}",
            if denied { "refuses" } else { "lets in" },
            expect.user,
            expect.addr,
            if expect.denied {
                "must be refused"
            } else {
                "may log in"
            }
        ));
    }
    Ok(())
}

/// A validator: sshd says of every changed client what its block says.
pub struct PolicyCheck {
    pub config: Config,
    pub expects: Vec<Expect>,
}

impl Step for PolicyCheck {
    fn describe(&self) -> String {
        let mut users: Vec<&str> = self.expects.iter().map(|e| e.user.as_str()).collect();
        users.dedup();
        format!(
            "check sshd's view of {} (sshd -T -C user=…,addr=…)",
            users.join(", ")
        )
    }
    fn is_satisfied(&self) -> Result<bool> {
        Ok(false)
    }
    fn apply(&self, _journal: &mut Journal) -> Result<()> {
        for e in &self.expects {
            verify(&self.config, e).map_err(|m| {
                anyhow::anyhow!("{m}: the blocks were not taken as rendered (a Match block of the host's own before sftpctl's?), so nothing was changed")
            })?;
        }
        Ok(())
    }
    fn phase(&self) -> Phase {
        Phase::Validate
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outside_is_outside() {
        let nets: Vec<Network> = ["192.0.2.0/24", "127.0.0.0/8"]
            .iter()
            .map(|n| n.parse().unwrap())
            .collect();
        let (inside, outside) = probe_addresses(&nets);
        assert_eq!(inside, Some("192.0.2.0".parse().unwrap()));
        assert_eq!(outside, Some("198.51.100.1".parse().unwrap()));
        let all: Vec<Network> = ["0.0.0.0/0", "::/0"]
            .iter()
            .map(|n| n.parse().unwrap())
            .collect();
        assert_eq!(probe_addresses(&all).1, None);
    }
}
