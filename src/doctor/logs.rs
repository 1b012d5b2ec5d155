//! Logging from inside the jails: rsyslog's socket at `<root>/dev/log` must be alive, and every
//! jail's `dev/log` must be the same inode (a restart of rsyslog makes a new socket and leaves
//! every link stale: the jails' lines are then silently lost).

use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixDatagram;
use std::path::Path;

use crate::doctor::{collapse, Check, Ctx};
use crate::jail::Jail;
use crate::plan::fsops::{inspect, Kind};
use crate::plan::steps::HardLink;

const AREA: &str = "logs";

pub fn checks(ctx: &mut Ctx) -> Vec<Check> {
    let socket = ctx.config.root_log_socket();
    let (check, inode) = socket_check(ctx, &socket);
    let mut out = vec![check];
    let Some(inode) = inode else {
        return out;
    };
    let mut problems = Vec::new();
    for name in &ctx.users {
        problems.extend(link(ctx, name, &socket, inode));
    }
    let n = ctx.users.len();
    out.extend(collapse(problems, || {
        Check::ok(
            AREA,
            "log links",
            format!("{n} jail(s): dev/log is rsyslog's current socket"),
        )
    }));
    out.push(log_file(ctx));
    out
}

/// rsyslog's socket exists and someone is bound to it. Returns its (dev, inode) when usable.
fn socket_check(ctx: &Ctx, socket: &Path) -> (Check, Option<(u64, u64)>) {
    let restart = "start rsyslog (or restart it: rsyslog.restart in the config) with the sftpctl drop-in; its unit then runs sftpctl refresh-log-links";
    match inspect(socket) {
        Ok((Kind::Socket, Some(md))) => {
            if UnixDatagram::unbound()
                .and_then(|s| s.connect(socket))
                .is_ok()
            {
                (
                    Check::ok(
                        AREA,
                        "rsyslog socket",
                        format!("{} accepts datagrams", socket.display()),
                    ),
                    Some((md.dev(), md.ino())),
                )
            } else {
                (
                    Check::fail(
                        AREA,
                        "rsyslog socket",
                        format!(
                            "{} exists but nobody listens on it: rsyslog is not running with {}, so no session is logged",
                            socket.display(),
                            ctx.config.rsyslog.config.display()
                        ),
                        restart,
                    ),
                    None,
                )
            }
        }
        Ok((Kind::Missing, _)) => (
            Check::fail(
                AREA,
                "rsyslog socket",
                format!(
                    "{} does not exist: rsyslog does not run with {}, so no session is logged",
                    socket.display(),
                    ctx.config.rsyslog.config.display()
                ),
                restart,
            ),
            None,
        ),
        Ok((kind, _)) => (
            Check::fail(
                AREA,
                "rsyslog socket",
                format!("{} is a {kind:?}, not a socket", socket.display()),
                format!("remove {}, then {restart}", socket.display()),
            ),
            None,
        ),
        Err(e) => (
            Check::warn(AREA, "rsyslog socket", format!("{e:#}"), "run as root"),
            None,
        ),
    }
}

/// One jail's `dev/log`. Problems only; skipped when the dev dir is not sftpctl's to touch
/// (the jail check reports that).
fn link(ctx: &Ctx, name: &str, socket: &Path, inode: (u64, u64)) -> Option<Check> {
    let jail = Jail::new(ctx.config, name);
    match inspect(&jail.dev) {
        Ok((Kind::Dir, _)) | Ok((Kind::Missing, _)) => {}
        _ => return None,
    }
    let label = format!("log link {name}");
    let fix = "sftpctl refresh-log-links (or doctor --fix) links it again".to_string();
    let repair = HardLink {
        target: socket.to_path_buf(),
        link: jail.log.clone(),
    };
    match inspect(&jail.log) {
        Ok((Kind::Missing, _)) => Some(
            Check::fail(
                AREA,
                label,
                format!("{} is missing: {name}'s sessions are not logged", jail.log.display()),
                fix,
            )
            .repair(repair),
        ),
        Ok((_, Some(md))) if (md.dev(), md.ino()) == inode => None,
        Ok((Kind::Socket, Some(md))) if md.dev() != inode.0 => Some(Check::fail(
            AREA,
            label,
            format!(
                "{} is on another filesystem than {}: no hard link can join them",
                jail.log.display(),
                socket.display()
            ),
            "keep the jails and rsyslog's socket on one filesystem",
        )),
        Ok((Kind::Socket, _)) => Some(
            Check::fail(
                AREA,
                label,
                format!(
                    "{} is stale (an old rsyslog socket: rsyslog restarted since it was linked), so {name}'s sessions are silently not logged",
                    jail.log.display()
                ),
                fix,
            )
            .repair(repair),
        ),
        Ok((Kind::Dir, _)) => Some(Check::fail(
            AREA,
            label,
            format!("{} is a directory, not rsyslog's socket", jail.log.display()),
            "remove it, then run sftpctl refresh-log-links",
        )),
        Ok((kind, _)) => Some(
            Check::fail(
                AREA,
                label,
                format!("{} is a {kind:?}, not rsyslog's socket", jail.log.display()),
                fix,
            )
            .repair(repair),
        ),
        Err(e) => Some(Check::warn(AREA, label, format!("{e:#}"), "run as root")),
    }
}

fn log_file(ctx: &Ctx) -> Check {
    let path = &ctx.config.rsyslog.log_file;
    match inspect(path) {
        Ok((Kind::File, _)) => Check::ok(AREA, "log file", format!("{} exists", path.display())),
        Ok((Kind::Missing, _)) => Check::warn(
            AREA,
            "log file",
            format!("{} does not exist yet: no session was logged since the last rotation, or rsyslog cannot write it", path.display()),
            "log in once and transfer a file, then look again; see rsyslog's own log if it stays missing",
        ),
        Ok((kind, _)) => Check::fail(
            AREA,
            "log file",
            format!("{} is a {kind:?}, not a regular file", path.display()),
            "move it away and restart rsyslog",
        ),
        Err(e) => Check::warn(AREA, "log file", format!("{e:#}"), "run as root"),
    }
}
