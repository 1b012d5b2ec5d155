//! rsyslog and logrotate validate their configs with sftpctl's files in place; under systemd,
//! rsyslog's and the watcher's units are not stuck in systemd's start limit.

use std::process::Command;

use crate::doctor::{Check, Ctx};
use crate::plan::fsops::{inspect, Kind};
use crate::plan::steps::{service_manager_running, unit_states, ClearStartLimit, UnitState};

/// The watcher's unit, as `init` writes it.
pub const WATCH_UNIT: &str = "sftpctl-watch.service";

/// What to run when a unit is stuck in systemd's start limit.
/// `sockets`: rsyslog's socket units, cleared too (a failed one blocks rsyslog's start).
pub fn start_limit_fix(rsyslog_unit: &str, sockets: &[String]) -> String {
    let mut units = format!("{rsyslog_unit} {WATCH_UNIT}");
    for s in sockets {
        units.push(' ');
        units.push_str(s);
    }
    format!("systemctl reset-failed {units} && systemctl start {rsyslog_unit}")
}

/// rsyslog's and the watcher's units under systemd. systemd refuses a unit more than
/// StartLimitBurst starts within StartLimitIntervalSec (5 in 10 s by default) and leaves it
/// `failed (start-limit-hit)` until `systemctl reset-failed`: six `systemctl restart rsyslog`
/// in a row are enough, and the watcher (PartOf=rsyslog) goes down with it, rsyslog's socket
/// in the jail root and the jails' links with them.
///
/// `--fix` clears the limit and starts rsyslog once when that is safe: every failed unit of
/// the two was refused by the start limit (none crashed or exited with an error: starting a
/// failing daemon again would only make a loop) and rsyslog's config validates
/// (`rsyslogd -N1`). Otherwise the fix is said in words only.
pub fn units(ctx: &mut Ctx) -> Vec<Check> {
    if !service_manager_running() {
        return Vec::new();
    }
    let rsyslog_unit = ctx.config.systemd.rsyslog_unit.clone();
    let name = "systemd units";
    let states = match unit_states(&[&rsyslog_unit, WATCH_UNIT]).and_then(|mut states| {
        // rsyslog's socket unit (Debian: syslog.socket) fails with it and blocks its start.
        let sockets: Vec<String> = states
            .first()
            .map(|u| u.triggered_by.clone())
            .unwrap_or_default();
        if !sockets.is_empty() {
            let names: Vec<&str> = sockets.iter().map(String::as_str).collect();
            states.extend(unit_states(&names)?);
        }
        Ok(states)
    }) {
        Ok(s) => s,
        Err(e) => {
            return vec![Check::warn(
                "rsyslog",
                name,
                format!("{e:#}"),
                "run sftpctl doctor as root on the host itself",
            )]
        }
    };
    let sockets: Vec<String> = states.iter().skip(2).map(|u| u.id.clone()).collect();
    let fix = start_limit_fix(&rsyslog_unit, &sockets);
    let failed: Vec<&UnitState> = states.iter().filter(|u| u.active == "failed").collect();
    if failed.is_empty() {
        let text: Vec<String> = states
            .iter()
            .map(|u| format!("{} {}", u.id, u.active))
            .collect();
        return vec![Check::ok("rsyslog", name, text.join(", "))];
    }
    let limited: Vec<&str> = failed
        .iter()
        .filter(|u| u.start_limit_hit())
        .map(|u| u.id.as_str())
        .collect();
    let crashed: Vec<String> = failed
        .iter()
        .filter(|u| !u.start_limit_hit())
        .map(|u| match u.exec_main_status {
            Some(status) if u.result == "exit-code" => {
                format!("{} (result: {}, status {status})", u.id, u.result)
            }
            _ => format!("{} (result: {})", u.id, u.result),
        })
        .collect();
    // systemd could not start the process at all (UnitState::could_not_spawn), nothing the
    // unit or its config did: starting again is the repair, as for the start limit.
    let spawn_failed_only = failed
        .iter()
        .all(|u| u.start_limit_hit() || u.could_not_spawn());
    if !crashed.is_empty() && !spawn_failed_only {
        return vec![Check::fail(
            "rsyslog",
            name,
            format!(
                "{} failed: no session is logged or reported while it is down",
                crashed.join(", ")
            ),
            format!(
                "journalctl -u {rsyslog_unit} -u {WATCH_UNIT} -n 50 shows why; correct that, then {fix}"
            ),
        )];
    }
    let check = if !crashed.is_empty() {
        Check::fail(
            "rsyslog",
            name,
            format!(
                "{} failed: systemd could not start the process (result 'resources', \"Failed to spawn executor\" in the journal, or status 219/CGROUP, \"Failed to attach to cgroup\"), so no session is logged or reported while it is down",
                crashed.join(", ")
            ),
            format!("journalctl -u {rsyslog_unit} -n 20 shows it; then {fix}"),
        )
    } else {
        Check::fail(
        "rsyslog",
        name,
        format!(
            "{} failed (start-limit-hit): systemd refuses to start {} again after more than 5 starts in 10 s (StartLimitBurst, StartLimitIntervalSec; `systemctl restart rsyslog` six times in a row is enough, and {WATCH_UNIT} follows rsyslog); rsyslog's socket and the jails' links stay gone until the limit is cleared",
            limited.join(" and "),
            if limited.len() == 1 { "it" } else { "them" }
        ),
        fix,
        )
    };
    let validates = matches!(
        output(
            Command::new(&ctx.config.rsyslog.binary)
                .arg("-N1")
                .arg("-f")
                .arg(&ctx.config.rsyslog.main_config)
        ),
        Ok((true, _))
    );
    if !validates {
        return vec![check];
    }
    let mut units = vec![rsyslog_unit.clone(), WATCH_UNIT.to_string()];
    units.extend(sockets);
    vec![check.repair(ClearStartLimit {
        units,
        start: rsyslog_unit,
    })]
}

/// `rsyslogd -N1 -f <main config>` (the main config includes sftpctl's drop-in).
pub fn rsyslog(ctx: &mut Ctx) -> Vec<Check> {
    let c = &ctx.config.rsyslog;
    if !matches!(inspect(&c.main_config), Ok((Kind::File, _))) {
        return vec![Check::warn(
            "rsyslog",
            "rsyslogd -N1",
            format!(
                "{} does not exist or is not a file: not validated",
                c.main_config.display()
            ),
            "set rsyslog.main_config to rsyslog's main config",
        )];
    }
    let name = "rsyslogd -N1";
    match output(Command::new(&c.binary).arg("-N1").arg("-f").arg(&c.main_config)) {
        Err(e) => vec![Check::fail("rsyslog", name, e, "install rsyslog or set rsyslog.binary")],
        Ok((true, _)) => vec![Check::ok(
            "rsyslog",
            name,
            format!("{} (with {}) is valid", c.main_config.display(), c.config.display()),
        )],
        Ok((false, text)) => vec![Check::fail(
            "rsyslog",
            name,
            format!("{} is rejected: {}", c.main_config.display(), errors(&text)),
            "correct what rsyslogd names; sftpctl's own drop-in is rewritten by doctor --fix (drift) or sftpctl init",
        )],
    }
}

/// `logrotate -d <config>`: a dry run that parses the file and prints what it would do.
pub fn logrotate(ctx: &mut Ctx) -> Vec<Check> {
    let path = &ctx.config.logrotate.config;
    let name = "logrotate -d";
    if !matches!(inspect(path), Ok((Kind::File, _))) {
        return vec![Check::fail(
            "logrotate",
            name,
            format!(
                "{} does not exist: {} grows without bound",
                path.display(),
                ctx.config.rsyslog.log_file.display()
            ),
            "doctor --fix (drift) or sftpctl init writes it",
        )];
    }
    match output(Command::new("logrotate").arg("-d").arg(path)) {
        Err(e) => vec![Check::warn("logrotate", name, e, "install logrotate")],
        Ok((ok, text)) => {
            let errs = errors(&text);
            if ok && errs.is_empty() {
                vec![Check::ok(
                    "logrotate",
                    name,
                    format!("{} is valid", path.display()),
                )]
            } else {
                vec![Check::fail(
                    "logrotate",
                    name,
                    format!(
                        "{} is rejected: {}",
                        path.display(),
                        if errs.is_empty() {
                            text.trim().to_string()
                        } else {
                            errs
                        }
                    ),
                    "correct the file, or let doctor --fix (drift) rewrite it",
                )]
            }
        }
    }
}

/// (success, stdout+stderr) of a command.
fn output(cmd: &mut Command) -> Result<(bool, String), String> {
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run {:?}: {e}", cmd.get_program()))?;
    Ok((
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        ),
    ))
}

/// The lines that report errors, joined on one line.
fn errors(text: &str) -> String {
    text.lines()
        .filter(|l| l.to_ascii_lowercase().contains("error"))
        .map(str::trim)
        .collect::<Vec<_>>()
        .join(" | ")
}
