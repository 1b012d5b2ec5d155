//! rsyslog and logrotate validate their configs with sftpctl's files in place.

use std::process::Command;

use crate::doctor::{Check, Ctx};
use crate::plan::fsops::{inspect, Kind};

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
