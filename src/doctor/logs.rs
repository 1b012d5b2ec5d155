//! Logging from inside the jails: rsyslog's socket at `<root>/dev/log` must be alive, and every
//! jail's `dev/log` must be the same inode (a restart of rsyslog makes a new socket and leaves
//! every link stale: the jails' lines are then silently lost). The log file's recent lines
//! are checked like the watcher checks them: forged lines are counted.

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
    out.extend(log_senders(ctx));
    out
}

/// How much of the log file's end is read for [`log_senders`].
const SENDERS_TAIL: u64 = 8 << 20;

/// The log file's recent lines carry their senders' credentials, and each was sent by the
/// session's own process: lines that were not (forged through a socket, or written before the
/// trusted feed) are counted, the watcher and `report` skip them.
fn log_senders(ctx: &Ctx) -> Option<Check> {
    use std::io::{Read, Seek, SeekFrom};

    use crate::watch::parse::{parse_feed_line, Sender};
    use crate::watch::session::{Limits, Sessions};
    use crate::watch::trust::Trust;

    let name = "log senders";
    let path = &ctx.config.rsyslog.log_file;
    let Ok((Kind::File, Some(md))) = inspect(path) else {
        return None;
    };
    let read = || -> std::io::Result<Vec<u8>> {
        let mut f = std::fs::File::open(path)?;
        let from = md.len().saturating_sub(SENDERS_TAIL);
        f.seek(SeekFrom::Start(from))?;
        let mut buf = Vec::new();
        f.read_to_end(&mut buf)?;
        if from > 0 {
            // The first line is probably cut: start after it.
            let start = buf
                .iter()
                .position(|&b| b == b'\n')
                .map_or(buf.len(), |i| i + 1);
            buf.drain(..start);
        }
        Ok(buf)
    };
    let text = match read() {
        Ok(t) => t,
        Err(e) => {
            return Some(Check::warn(
                AREA,
                name,
                format!("cannot read {}: {e}", path.display()),
                "run as root",
            ))
        }
    };
    let mut sessions = Sessions::new(Limits::default(), &format!("/{}", ctx.config.data_dir));
    sessions.trust = Trust::system(ctx.config);
    let (mut verified, mut reports) = (0u64, Vec::new());
    let now = crate::watch::time::now_unix();
    for line in text.split(|&b| b == b'\n') {
        let (sender, parsed) = parse_feed_line(line, now);
        if matches!(sender, Sender::Kernel { .. }) {
            verified += 1;
        }
        sessions.apply_from(sender, parsed, false, 0, &mut reports);
        reports.clear();
    }
    let untrusted = sessions.stats.untrusted_lines;
    let sftp = sessions.stats.sftp_lines + sessions.stats.unreadable_lines + untrusted;
    if untrusted == 0 {
        return Some(Check::ok(
            AREA,
            name,
            format!("the last {sftp} internal-sftp line(s) of {} were all sent by the sessions' own processes", path.display()),
        ));
    }
    let last = sessions
        .trust
        .last_dropped
        .as_ref()
        .map(|d| format!(" (the last: {d})"))
        .unwrap_or_default();
    let fix = if verified == 0 {
        "lines without [uid= pid=] were written before the trusted feed (run sftpctl init) or came through a socket rsyslog does not annotate; `sftpctl report --trust-unverified` still reads old logs"
    } else {
        "the uid in each such line ([uid=… pid=…]) is the local account that sent it: find out who that is; the watcher and `sftpctl report` skip these lines"
    };
    Some(Check::warn(
        AREA,
        name,
        format!(
            "{untrusted} of the last {sftp} internal-sftp line(s) of {} were not sent by the session's own process{last}",
            path.display()
        ),
        fix,
    ))
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
