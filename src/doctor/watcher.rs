//! The watcher: the sftpctl watcher, and nothing else, is bound to `watch.socket` (and to
//! `watch.listen` when UDP is opted in; read from /proc/net/unix, /proc/net/udp{,6} and the
//! processes' descriptors, nothing is sent), `[mail]` passes the checks the watcher makes at start (nothing is connected to), and
//! its outbox in `<watch.state_dir>/outbox` is not backing up.
//!
//! Outbox layout (read with [`crate::watch::outbox`]): segments `NNNNNNNNNNNNNNNN.seg` with one JSON report
//! a line, and beside each an optional `NNNNNNNNNNNNNNNN.ack` listing the delivered record
//! numbers (0-based line numbers), one a line.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::time::{Duration, SystemTime};

use crate::doctor::{Check, Ctx};
use crate::plan::fsops::{inspect, Kind};
use crate::watch::outbox;

const AREA: &str = "watcher";

/// Reports waiting longer than this mean delivery is stuck.
const STUCK_AFTER: Duration = Duration::from_secs(15 * 60);
/// This many undelivered reports mean delivery cannot keep up.
const BACKLOG: u64 = 1000;

pub fn checks(ctx: &mut Ctx) -> Vec<Check> {
    let mut out = vec![binary(ctx)];
    out.extend(listening(ctx));
    out.extend([transport(ctx), outbox(ctx)]);
    out
}

/// The binary the watcher unit and rsyslog's ExecStartPost run (a failure there is ignored
/// by rsyslog's unit, so nothing else would tell).
fn binary(ctx: &Ctx) -> Check {
    let name = "sftpctl_bin";
    match ctx.config.sftpctl_bin_problem() {
        None => Check::ok(
            AREA,
            name,
            format!("{} is executable", ctx.config.sftpctl_bin.display()),
        ),
        Some(problem) => Check::fail(
            AREA,
            name,
            problem,
            "then run sftpctl init so the units name it",
        ),
    }
}

fn transport(ctx: &Ctx) -> Check {
    let name = "mail transport";
    match crate::watch::deliver::describe_transport(ctx.config) {
        Ok(what) => Check::ok(AREA, name, format!("reports go as {what}")),
        Err(e) => Check::fail(
            AREA,
            name,
            format!("{e:#}"),
            "correct [mail] in the config (docs/watch.md); until then the watcher refuses to start",
        ),
    }
}

/// The feed: `watch.socket`'s directory and socket are root's and closed to others, and the
/// process bound to it (found through /proc/net/unix and the processes' descriptors) is the
/// watcher of `watch.state_dir/watch.pid`. The same for the opt-in UDP listener. Nothing is
/// sent to either.
fn listening(ctx: &Ctx) -> Vec<Check> {
    let watcher = watcher_pid(ctx);
    let mut out = vec![feed_socket(ctx, watcher)];
    if let Some(listen) = ctx.config.watch.listen {
        out.push(udp_listener(listen, watcher));
    }
    out
}

const NAME: &str = "watcher listening";
const START: &str =
    "start the watcher: systemctl enable --now sftpctl-watch.service (or sftpctl watch --foreground)";

/// The pid in the watcher's pid file when that process runs `sftpctl … watch`.
fn watcher_pid(ctx: &Ctx) -> Option<u32> {
    let text = std::fs::read_to_string(ctx.config.watch.state_dir.join("watch.pid")).ok()?;
    let pid: u32 = text.trim().parse().ok()?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
    let is_sftpctl = args
        .first()
        .is_some_and(|a| a.rsplit(|&b| b == b'/').next() == Some(b"sftpctl"));
    (is_sftpctl && args.iter().any(|a| *a == b"watch")).then_some(pid)
}

fn feed_socket(ctx: &Ctx, watcher: Option<u32>) -> Check {
    let socket = &ctx.config.watch.socket;
    let Some(dir) = socket.parent() else {
        return Check::fail(
            AREA,
            NAME,
            "watch.socket has no directory",
            "set watch.socket",
        );
    };
    let private = |what: &str, path: &Path, md: &std::fs::Metadata| -> Option<Check> {
        use std::os::unix::fs::MetadataExt;
        (md.uid() != 0 || md.mode() & 0o077 != 0).then(|| {
            Check::fail(
                AREA,
                NAME,
                format!(
                    "{what} {} is owned by uid {} with mode {:04o}: other local accounts could reach or replace the watcher's feed",
                    path.display(),
                    md.uid(),
                    md.mode() & 0o7777
                ),
                format!("stop the watcher, remove {} and start the watcher again (it makes both root-only)", dir.display()),
            )
        })
    };
    match inspect(dir) {
        Ok((Kind::Dir, Some(md))) => {
            if let Some(fail) = private("the socket's directory", dir, &md) {
                return fail;
            }
        }
        Ok((Kind::Missing, _)) => {
            return Check::warn(
                AREA,
                NAME,
                format!(
                    "{} does not exist: the watcher is not running, the jails' lines reach only {}",
                    dir.display(),
                    ctx.config.rsyslog.log_file.display()
                ),
                START,
            )
        }
        Ok((kind, _)) => {
            return Check::fail(
                AREA,
                NAME,
                format!(
                    "{} (the directory of watch.socket) is a {kind:?}",
                    dir.display()
                ),
                format!("remove {} and start the watcher again", dir.display()),
            )
        }
        Err(e) => return Check::warn(AREA, NAME, format!("{e:#}"), "run as root"),
    }
    match inspect(socket) {
        Ok((Kind::Socket, Some(md))) => {
            if let Some(fail) = private("the socket", socket, &md) {
                return fail;
            }
        }
        Ok((Kind::Missing, _)) => {
            return Check::warn(
                AREA,
                NAME,
                format!(
                    "{} does not exist: the watcher is not running, the jails' lines reach only {}",
                    socket.display(),
                    ctx.config.rsyslog.log_file.display()
                ),
                START,
            )
        }
        Ok((kind, _)) => {
            return Check::fail(
                AREA,
                NAME,
                format!(
                    "{} (watch.socket) is a {kind:?}, not a socket",
                    socket.display()
                ),
                format!("remove {} and start the watcher again", socket.display()),
            )
        }
        Err(e) => return Check::warn(AREA, NAME, format!("{e:#}"), "run as root"),
    }
    let inodes = std::fs::read_to_string("/proc/net/unix")
        .map(|t| unix_socket_inodes(&t, socket))
        .unwrap_or_default();
    let holders = holders_of(&inodes);
    verdict(format!("{}", socket.display()), &holders, watcher)
}

/// OK when the watcher holds the socket and nothing else does.
fn verdict(what: String, holders: &[u32], watcher: Option<u32>) -> Check {
    let others: Vec<String> = holders
        .iter()
        .filter(|p| Some(**p) != watcher)
        .map(|p| describe_process(*p))
        .collect();
    if !others.is_empty() {
        return Check::fail(
            AREA,
            NAME,
            format!(
                "{what} is held by {}, not by the sftpctl watcher: it receives the clients' log lines",
                others.join(", ")
            ),
            "stop that process (and find out how it got there), then start the watcher: systemctl restart sftpctl-watch.service",
        );
    }
    match watcher {
        Some(pid) if holders.contains(&pid) => Check::ok(
            AREA,
            NAME,
            format!("the sftpctl watcher (pid {pid}) is bound to {what}"),
        ),
        _ => Check::warn(
            AREA,
            NAME,
            format!("nothing is bound to {what}: the watcher is not running and no session report is mailed"),
            START,
        ),
    }
}

fn describe_process(pid: u32) -> String {
    use std::os::unix::fs::MetadataExt;
    let uid = std::fs::metadata(format!("/proc/{pid}"))
        .map(|m| m.uid().to_string())
        .unwrap_or_else(|_| "?".into());
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    format!(
        "pid {pid} ({}, uid {uid})",
        crate::watch::escape::for_people(comm.trim_end().as_bytes())
    )
}

fn udp_listener(listen: SocketAddr, watcher: Option<u32>) -> Check {
    let mut inodes = Vec::new();
    for file in ["/proc/net/udp", "/proc/net/udp6"] {
        if let Ok(text) = std::fs::read_to_string(file) {
            inodes.extend(
                parse_proc_net_udp_inodes(&text)
                    .into_iter()
                    .filter(|(a, _)| covers(*a, listen))
                    .map(|(_, inode)| inode),
            );
        }
    }
    let mut check = verdict(
        format!("UDP {listen} (watch.listen)"),
        &holders_of(&inodes),
        watcher,
    );
    if check.status == crate::doctor::model::Status::Ok {
        check
            .message
            .push_str(": its lines are not verified, anyone who can send there can forge reports");
    }
    check
}

/// Socket inodes bound to `path` in /proc/net/unix text
/// (`Num RefCount Protocol Flags Type St Inode Path`).
pub fn unix_socket_inodes(text: &str, path: &Path) -> Vec<u64> {
    let want = path.as_os_str().as_encoded_bytes();
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let inode = fields.nth(6)?.parse().ok()?;
            let p = fields.next()?;
            (p.as_bytes() == want).then_some(inode)
        })
        .collect()
}

/// The processes holding a descriptor of one of these socket inodes.
fn holders_of(inodes: &[u64]) -> Vec<u32> {
    if inodes.is_empty() {
        return Vec::new();
    }
    let wanted: Vec<String> = inodes.iter().map(|i| format!("socket:[{i}]")).collect();
    let mut out = Vec::new();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return out;
    };
    for entry in procs.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        let holds = fds.flatten().any(|fd| {
            std::fs::read_link(fd.path())
                .is_ok_and(|t| wanted.iter().any(|w| t.as_os_str() == w.as_str()))
        });
        if holds {
            out.push(pid);
        }
    }
    out
}

/// True when a socket bound to `bound` receives datagrams sent to `want`.
fn covers(bound: SocketAddr, want: SocketAddr) -> bool {
    if bound.port() != want.port() {
        return false;
    }
    let unmapped = |ip: IpAddr| match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    let (b, w) = (unmapped(bound.ip()), unmapped(want.ip()));
    b == w || b.is_unspecified()
}

/// The local addresses in /proc/net/udp or /proc/net/udp6 text.
///
/// A line is `sl local_address rem_address st ...` with the address as hex: IPv4 one 32-bit
/// word, IPv6 four, each in host byte order; the port is big-endian hex.
pub fn parse_proc_net_udp(text: &str) -> Vec<SocketAddr> {
    text.lines().skip(1).filter_map(udp_local_address).collect()
}

fn udp_local_address(line: &str) -> Option<SocketAddr> {
    let local = line.split_whitespace().nth(1)?;
    let (addr, port) = local.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let ip = match addr.len() {
        8 => {
            let w = u32::from_str_radix(addr, 16).ok()?;
            IpAddr::V4(Ipv4Addr::from(w.to_ne_bytes()))
        }
        32 => {
            let mut bytes = [0u8; 16];
            for i in 0..4 {
                let w = u32::from_str_radix(&addr[i * 8..i * 8 + 8], 16).ok()?;
                bytes[i * 4..i * 4 + 4].copy_from_slice(&w.to_ne_bytes());
            }
            IpAddr::V6(Ipv6Addr::from(bytes))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// (local address, socket inode) of each line of /proc/net/udp{,6} (inode: 10th field).
pub fn parse_proc_net_udp_inodes(text: &str) -> Vec<(SocketAddr, u64)> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let addr = udp_local_address(line)?;
            let inode = line.split_whitespace().nth(9)?.parse().ok()?;
            Some((addr, inode))
        })
        .collect()
}

/// Pending (undelivered) reports in an outbox dir and when the oldest segment holding one
/// was last written (a lower bound of that report's wait).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Backlog {
    pub pending: u64,
    /// Letters (notices, welcome mails, digests) in `letters/pending/`.
    pub letters: u64,
    pub oldest: Option<SystemTime>,
}

pub fn backlog(dir: &Path) -> anyhow::Result<Backlog> {
    let mut out = Backlog::default();
    for n in outbox::list_segments(dir)? {
        let path = outbox::segment_path(dir, n);
        // lstat: a symlink planted in the outbox is not followed.
        let Ok((Kind::File, Some(md))) = inspect(&path) else {
            continue;
        };
        let records = std::fs::read(&path)?
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .count() as u64;
        let acks = outbox::read_acks(dir, n)?;
        let pending = records.saturating_sub(acks.len() as u64);
        if pending > 0 {
            out.pending += pending;
            if out.oldest.is_none() {
                out.oldest = md.modified().ok();
            }
        }
    }
    if let Ok(entries) = std::fs::read_dir(dir.join("letters").join("pending")) {
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') || !name.ends_with(".json") {
                continue;
            }
            out.letters += 1;
            let written = entry.metadata().ok().and_then(|m| m.modified().ok());
            if let Some(t) = written {
                out.oldest = Some(out.oldest.map_or(t, |o| o.min(t)));
            }
        }
    }
    Ok(out)
}

fn outbox(ctx: &Ctx) -> Check {
    let dir = ctx.config.watch.state_dir.join("outbox");
    let name = "watcher outbox";
    match inspect(&dir) {
        Ok((Kind::Missing, _)) => {
            return Check::ok(
                AREA,
                name,
                format!(
                    "{} does not exist yet: nothing waits for delivery",
                    dir.display()
                ),
            )
        }
        Ok((Kind::Dir, _)) => {}
        Ok((kind, _)) => {
            return Check::fail(
                AREA,
                name,
                format!("{} is a {kind:?}, not a directory", dir.display()),
                "move it away; the watcher recreates it",
            )
        }
        Err(e) => return Check::warn(AREA, name, format!("{e:#}"), "run as root"),
    }
    let b = match backlog(&dir) {
        Ok(b) => b,
        Err(e) => {
            return Check::warn(
                AREA,
                name,
                format!("cannot read {}: {e:#}", dir.display()),
                "run as root",
            )
        }
    };
    let age = b
        .oldest
        .and_then(|t| SystemTime::now().duration_since(t).ok())
        .unwrap_or_default();
    if b.pending == 0 && b.letters == 0 {
        return Check::ok(AREA, name, "empty: every report and letter was delivered");
    }
    let msg = format!(
        "{} report(s) and {} letter(s) wait for delivery, the oldest for at least {}s",
        b.pending,
        b.letters,
        age.as_secs()
    );
    if age > STUCK_AFTER || b.pending + b.letters >= BACKLOG {
        Check::warn(
            AREA,
            name,
            format!("{msg}: delivery is stuck or too slow"),
            format!(
                "see the watcher's log ({}) for the transport's error; check [mail] in the config",
                ctx.config.watch.state_dir.join("watch.log").display()
            ),
        )
    } else {
        Check::ok(AREA, name, msg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_letters_count_in_the_backlog() {
        let dir = std::env::temp_dir().join(format!("sftpctl-backlog-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("letters/pending")).unwrap();
        std::fs::write(dir.join("letters/pending/a.json"), b"{}").unwrap();
        std::fs::write(dir.join("letters/pending/.a.json.tmp"), b"{}").unwrap();
        let b = backlog(&dir).unwrap();
        assert_eq!((b.pending, b.letters), (0, 1));
        assert!(b.oldest.is_some());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn parses_proc_net_udp() {
        let v4 = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n\
                  \x20 113: 0100007F:159A 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 12345 2 0000000000000000 0\n\
                  \x20 114: 00000000:0044 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 12346 2 0000000000000000 0\n";
        let a = parse_proc_net_udp(v4);
        assert_eq!(
            a,
            vec![
                "127.0.0.1:5530".parse().unwrap(),
                "0.0.0.0:68".parse().unwrap()
            ]
        );
        let v6 = "  sl  local_address                         remote_address                        st\n\
                  \x20 0: 00000000000000000000000001000000:0203 00000000000000000000000000000000:0000 07\n\
                  \x20 1: 0000000000000000FFFF00000100007F:159A 00000000000000000000000000000000:0000 07\n";
        let a = parse_proc_net_udp(v6);
        assert_eq!(a[0], "[::1]:515".parse().unwrap());
        assert!(covers(a[1], "127.0.0.1:5530".parse().unwrap()));
        assert!(covers(
            "0.0.0.0:5530".parse().unwrap(),
            "127.0.0.1:5530".parse().unwrap()
        ));
        assert!(!covers(
            "127.0.0.2:5530".parse().unwrap(),
            "127.0.0.1:5530".parse().unwrap()
        ));
        assert!(!covers(a[0], "127.0.0.1:515".parse().unwrap()));
    }

    #[test]
    fn finds_the_inodes_bound_to_a_path_or_port() {
        let unix = "Num       RefCount Protocol Flags    Type St Inode Path\n\
                    0000000000000000: 00000002 00000000 00000000 0002 01 4242 /run/sftpctl/watch.sock\n\
                    0000000000000000: 00000002 00000000 00000000 0002 01 4243 /run/sftpctl/watch.sock.old\n\
                    0000000000000000: 00000003 00000000 00000000 0001 03 4244\n";
        assert_eq!(
            unix_socket_inodes(unix, Path::new("/run/sftpctl/watch.sock")),
            vec![4242]
        );
        let udp = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n\
                   \x20 113: 0100007F:159A 00000000:0000 07 00000000:00000000 00:00000000 00000000  1003        0 12345 2 0000000000000000 0\n";
        assert_eq!(
            parse_proc_net_udp_inodes(udp),
            vec![("127.0.0.1:5530".parse().unwrap(), 12345)]
        );
    }

    #[test]
    fn counts_the_outbox_backlog() {
        let dir =
            std::env::temp_dir().join(format!("sftpctl-doctor-outbox-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        assert_eq!(backlog(&dir).unwrap(), Backlog::default());
        std::fs::write(dir.join("0000000000000001.seg"), "{}\n{}\n{}\n").unwrap();
        std::fs::write(dir.join("0000000000000001.ack"), "0\n2\n").unwrap();
        std::fs::write(dir.join("0000000000000002.seg"), "{}\n").unwrap();
        std::fs::write(dir.join("junk"), "x\n").unwrap();
        let b = backlog(&dir).unwrap();
        assert_eq!(b.pending, 2);
        assert!(b.oldest.is_some());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
