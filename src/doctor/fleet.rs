//! The fleet (docs/fleet.md): on a collector, each forwarding host's last line (a host that
//! went quiet is a warning); on a forwarding host, the certificate files and what waits in
//! rsyslog's queue for the collector.

use super::{Check, Ctx};
use crate::fleet::accounts::HostAccounts;
use crate::fleet::hosts::HostsSeen;

const AREA: &str = "fleet";

pub fn checks(ctx: &mut Ctx) -> Vec<Check> {
    let config = ctx.config;
    let mut checks = Vec::new();
    if !config.forward.enabled() && !config.collect.enabled {
        return checks;
    }
    match crate::fleet::tls::check_files(config) {
        Ok(()) => checks.push(Check::ok(AREA, "certificates", "every file in place")),
        Err(e) => checks.push(Check::fail(
            AREA,
            "certificates",
            format!("{e:#}"),
            "see docs/fleet.md, \"Certificates\"",
        )),
    }
    if config.forward.enabled() {
        checks.push(queue(ctx));
    }
    if config.collect.enabled {
        checks.extend(hosts(ctx));
    }
    checks
}

/// What rsyslog's disk-assisted queue holds (its files exist only while lines wait).
fn queue(ctx: &Ctx) -> Check {
    let f = &ctx.config.forward;
    let name = format!("forward to {}", f.to);
    let Ok(entries) = std::fs::read_dir(&f.queue_dir) else {
        return Check::warn(
            AREA,
            name,
            format!("cannot read {}", f.queue_dir.display()),
            "run sftpctl init (it makes the queue directory) and run doctor as root",
        );
    };
    let bytes: u64 = entries
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("sftpctl-forward")
        })
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum();
    if bytes == 0 {
        Check::ok(AREA, name, "nothing waits on disk for the collector")
    } else {
        Check::warn(
            AREA,
            name,
            format!(
                "{bytes} bytes of lines wait in {} (the collector was unreachable; rsyslog retries every {} s)",
                f.queue_dir.display(),
                f.retry_secs
            ),
            "check the collector's rsyslog and the network path; nothing is lost while the queue has room",
        )
    }
}

fn hosts(ctx: &Ctx) -> Vec<Check> {
    let config = ctx.config;
    let (tables, seen) = match (HostAccounts::load(config), HostsSeen::load(config)) {
        (Ok(t), Ok(s)) => (t, s),
        (Err(e), _) | (_, Err(e)) => {
            return vec![Check::fail(
                AREA,
                "forwarding hosts",
                format!("{e:#}"),
                "run doctor as root",
            )]
        }
    };
    if tables.hosts.is_empty() {
        return vec![Check::warn(
            AREA,
            "forwarding hosts",
            "no forwarding host has announced its accounts yet",
            "run `sftpctl init` (or `sftpctl announce`) on each SFTP host with forward.to set to this collector",
        )];
    }
    let now = crate::watch::time::now_unix();
    let quiet = config.collect.quiet_after_secs as i64;
    tables
        .hosts
        .iter()
        .map(|(host, table)| {
            let shown = crate::display::visible(host);
            let name = format!("host {shown}");
            let accounts = table.accounts.len();
            match seen.hosts.get(host) {
                Some(s) if now - s.last_line <= quiet => Check::ok(
                    AREA,
                    name,
                    format!(
                        "last line {} ({} s ago), {accounts} SFTP account(s)",
                        crate::tz::rfc3339_utc(s.last_line),
                        now - s.last_line
                    ),
                ),
                Some(s) => Check::warn(
                    AREA,
                    name,
                    format!(
                        "quiet: the last line came {} ({} s ago; collect.quiet_after_secs is {quiet})",
                        crate::tz::rfc3339_utc(s.last_line),
                        now - s.last_line
                    ),
                    format!("on {shown}: check rsyslog, its forward queue (doctor there) and its certificate"),
                ),
                None => Check::warn(
                    AREA,
                    name,
                    "announced its accounts but no line was counted since",
                    "start the watcher on this collector (it counts each host's lines)",
                ),
            }
        })
        .collect()
}
