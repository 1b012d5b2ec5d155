//! Many SFTP hosts, one collector (docs/fleet.md). The transport is rsyslog's own (TCP, TLS
//! with mutual certificates, a disk-assisted queue: `templates/rsyslog.conf`); what sftpctl
//! adds is what the collector needs to believe a forwarded line as it believes a local one:
//! the forwarding host's SFTP accounts (uid → name), sent by root as a log line of its own
//! ([`announce`]) and kept per host on the collector ([`accounts`]), and each host's last
//! line for `doctor` ([`hosts`]).

pub mod accounts;
pub mod announce;
pub mod dedupe;
pub mod hosts;
pub mod tls;
