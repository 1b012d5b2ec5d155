//! `sftpctl announce` (and every command that changes accounts, on a forwarding host): this
//! host's SFTP accounts as root's `sftpctl-accounts` lines through the host's syslog socket,
//! for the collector (see [`super::accounts`]).

use std::os::unix::net::UnixDatagram;

use anyhow::{Context, Result};

use super::accounts::{Part, PER_LINE, TAG};
use crate::config::Config;

/// The accounts the watcher believes lines of: the admin and every member of `jail_group`
/// (as [`crate::watch::trust::SystemAccounts`] decides), with their uids, sorted by name.
pub fn sftp_accounts(config: &Config) -> Vec<(String, u32)> {
    let mut names: Vec<String> = crate::accounts::jailed_names(config).into_iter().collect();
    names.extend(config.admin.clone());
    names.sort();
    names.dedup();
    names
        .into_iter()
        .filter_map(|name| {
            let user = users::get_user_by_name(&name)?;
            let admin = config.admin.as_deref() == Some(name.as_str());
            (admin || crate::accounts::is_jailed(config, &name)).then(|| (name, user.uid()))
        })
        .collect()
}

/// The lines of one announcement of `accounts` (at least one, also for none).
pub fn parts(seq: u64, accounts: &[(String, u32)]) -> Vec<Part> {
    let chunks: Vec<&[(String, u32)]> = if accounts.is_empty() {
        vec![&[]]
    } else {
        accounts.chunks(PER_LINE).collect()
    };
    let parts = chunks.len() as u32;
    chunks
        .into_iter()
        .enumerate()
        .map(|(i, entries)| Part {
            seq,
            part: i as u32 + 1,
            parts,
            entries: entries.to_vec(),
        })
        .collect()
}

/// Sends this host's accounts when it forwards (else does nothing). Root only: the
/// collector takes these lines from uid 0 alone.
pub fn send(config: &Config) -> Result<()> {
    if !config.forward.enabled() {
        return Ok(());
    }
    let seq = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or_default();
    let socket = &config.forward.log_socket;
    let sock = UnixDatagram::unbound().context("cannot make a Unix datagram socket")?;
    sock.connect(socket).with_context(|| {
        format!(
            "cannot send to the syslog socket {} (forward.log_socket): is rsyslog (or journald) running?",
            socket.display()
        )
    })?;
    let pid = std::process::id();
    for part in parts(seq, &sftp_accounts(config)) {
        // auth.info: the host's own rules may keep it in auth.log too.
        let datagram = format!("<38>{TAG}[{pid}]: {}", part.message());
        sock.send(datagram.as_bytes())
            .with_context(|| format!("cannot send to {}", socket.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_tables_are_split_and_an_empty_one_is_one_line() {
        let many: Vec<(String, u32)> = (0..130).map(|i| (format!("u{i}"), 2000 + i)).collect();
        let p = parts(9, &many);
        assert_eq!(p.len(), 3);
        assert!(p.iter().all(|p| p.parts == 3 && p.seq == 9));
        assert_eq!(p.iter().map(|p| p.entries.len()).sum::<usize>(), 130);
        assert!(p.iter().all(|p| p.message().len() < 2048));
        let none = parts(9, &[]);
        assert_eq!(none.len(), 1);
        assert_eq!(none[0].message(), "v1 9 1/1");
    }
}
