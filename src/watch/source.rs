//! Where lines come from: the trusted feed (a root-only Unix datagram socket rsyslog's
//! `omuxsock` sends to), opt-in UDP datagrams, a followed log file, or a byte stream.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use nix::sys::socket::{setsockopt, sockopt};

use super::state::FollowPosition;
use crate::error::usage;

/// Creates the watcher's socket: its directory is made (or kept) root-owned 0700, the
/// socket 0600, and every datagram carries its sender's credentials (SO_PASSCRED). A stale
/// socket of an earlier watcher is replaced; one something still listens on is refused.
pub fn bind_feed(path: &Path, receive_buffer: usize) -> Result<UnixDatagram> {
    let dir = path
        .parent()
        .ok_or_else(|| usage(format!("watch.socket {} has no directory", path.display())))?;
    private_dir(dir)?;
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot stat {}", path.display())),
        Ok(md) if md.file_type().is_socket() => {
            if UnixDatagram::unbound()
                .and_then(|s| s.connect(path))
                .is_ok()
            {
                return Err(usage(format!(
                    "{} (watch.socket) is in use by another process; is another watcher running?",
                    path.display()
                )));
            }
            std::fs::remove_file(path)
                .with_context(|| format!("cannot remove the stale socket {}", path.display()))?;
        }
        Ok(_) => {
            return Err(usage(format!(
                "{} (watch.socket) exists and is not a socket: move it away",
                path.display()
            )))
        }
    }
    let socket = UnixDatagram::bind(path).map_err(|e| {
        usage(format!(
            "cannot create the socket {} (watch.socket): {e}",
            path.display()
        ))
    })?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("cannot chmod {}", path.display()))?;
    setsockopt(&socket, sockopt::PassCred, &true)
        .context("cannot ask for the senders' credentials")?;
    if setsockopt(&socket, sockopt::RcvBufForce, &receive_buffer).is_err() {
        setsockopt(&socket, sockopt::RcvBuf, &receive_buffer)
            .context("cannot set the socket's receive buffer")?;
    }
    Ok(socket)
}

/// The socket's directory: made 0700 if missing; an existing one must be a directory of this
/// process's user (root), and is closed to others if it was not.
fn private_dir(dir: &Path) -> Result<()> {
    let me = nix::unistd::geteuid().as_raw();
    match std::fs::symlink_metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => std::fs::DirBuilder::new()
            .mode(0o700)
            .create(dir)
            .map_err(|e| {
                usage(format!(
                    "cannot create {} for watch.socket: {e}",
                    dir.display()
                ))
            }),
        Err(e) => Err(e).with_context(|| format!("cannot stat {}", dir.display())),
        Ok(md) if !md.is_dir() => Err(usage(format!(
            "{} (the directory of watch.socket) is not a directory: move it away",
            dir.display()
        ))),
        Ok(md) if md.uid() != me => Err(usage(format!(
            "{} (the directory of watch.socket) belongs to uid {}, not to the watcher's user {me}: remove it",
            dir.display(),
            md.uid()
        ))),
        Ok(md) if md.mode() & 0o077 != 0 => std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("cannot chmod 0700 {}", dir.display())),
        Ok(_) => Ok(()),
    }
}

/// One datagram from the feed socket and the uid of its sender (`None`: the kernel gave
/// none, which does not happen with SO_PASSCRED).
pub fn recv_with_uid(
    socket: &UnixDatagram,
    buf: &mut [u8],
    flags: nix::sys::socket::MsgFlags,
) -> nix::Result<(usize, Option<u32>)> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, UnixAddr};
    let mut cmsg = nix::cmsg_space!(nix::sys::socket::UnixCredentials);
    let mut iov = [std::io::IoSliceMut::new(buf)];
    let msg = recvmsg::<UnixAddr>(socket.as_raw_fd(), &mut iov, Some(&mut cmsg), flags)?;
    let mut uid = None;
    for c in msg.cmsgs()? {
        if let ControlMessageOwned::ScmCredentials(creds) = c {
            uid = Some(creds.uid());
        }
    }
    Ok((msg.bytes, uid))
}

/// Binds the UDP socket and asks for a large receive buffer (root may exceed rmem_max).
pub fn bind_udp(addr: SocketAddr, receive_buffer: usize) -> Result<UdpSocket> {
    let socket = UdpSocket::bind(addr).map_err(|e| {
        usage(format!(
            "cannot listen on UDP {addr} (watch.listen): {e}; is another watcher running?"
        ))
    })?;
    if setsockopt(&socket, sockopt::RcvBufForce, &receive_buffer).is_err() {
        // Without CAP_NET_ADMIN the kernel caps this at net.core.rmem_max.
        setsockopt(&socket, sockopt::RcvBuf, &receive_buffer)
            .context("cannot set the UDP receive buffer")?;
    }
    Ok(socket)
}

/// Calls `f` for each complete line in `data`; returns how many bytes were consumed.
pub fn split_lines(data: &[u8], mut f: impl FnMut(&[u8])) -> usize {
    let mut start = 0;
    while let Some(i) = data[start..].iter().position(|&b| b == b'\n') {
        f(&data[start..start + i]);
        start += i + 1;
    }
    start
}

/// After a rename, how long the old file is still read: rsyslog goes on writing to it until
/// logrotate's postrotate tells it to reopen (SIGHUP), and those lines must not be lost.
const RETIRED_GRACE: Duration = Duration::from_secs(30);

/// Tails a log file across logrotate: after a rename the new file is read from its start while
/// the old one is still read to its end for [`RETIRED_GRACE`] after its last line; after a
/// truncation (copytruncate) reading starts over at 0.
pub struct Follower {
    path: PathBuf,
    current: Tail,
    /// The file renamed away, and when it last gave a line.
    retired: Option<(Tail, Instant)>,
    chunk: Vec<u8>,
}

/// One open file being read: where, and the line begun but not yet ended.
struct Tail {
    file: File,
    dev: u64,
    ino: u64,
    offset: u64,
    partial: Vec<u8>,
}

impl Follower {
    /// Starts where the last run stopped if it is the same file, else at its end.
    pub fn open(path: &Path, saved: Option<FollowPosition>) -> Result<Follower> {
        let mut file = File::open(path)
            .map_err(|e| usage(format!("cannot open {} to follow: {e}", path.display())))?;
        let meta = file
            .metadata()
            .with_context(|| format!("cannot stat {}", path.display()))?;
        let offset = match saved {
            Some(p)
                if p.path == path
                    && p.dev == meta.dev()
                    && p.ino == meta.ino()
                    && p.offset <= meta.len() =>
            {
                p.offset
            }
            _ => meta.len(),
        };
        file.seek(SeekFrom::Start(offset))
            .with_context(|| format!("cannot seek in {}", path.display()))?;
        Ok(Follower {
            path: path.to_path_buf(),
            current: Tail {
                file,
                dev: meta.dev(),
                ino: meta.ino(),
                offset,
                partial: Vec::new(),
            },
            retired: None,
            chunk: vec![0; 256 * 1024],
        })
    }

    pub fn position(&self) -> FollowPosition {
        FollowPosition {
            path: self.path.clone(),
            dev: self.current.dev,
            ino: self.current.ino,
            // A partial line is read again next time rather than lost.
            offset: self.current.offset - self.current.partial.len() as u64,
        }
    }

    /// Reads everything available; calls `f` per complete line. Returns whether any came.
    pub fn poll(&mut self, f: &mut impl FnMut(&[u8])) -> Result<bool> {
        let mut got = self.drain_retired(f)?;
        got |= self.current.drain(&mut self.chunk, &self.path, f)?;
        match std::fs::metadata(&self.path) {
            Ok(meta) if meta.dev() != self.current.dev || meta.ino() != self.current.ino => {
                match File::open(&self.path) {
                    Ok(file) => {
                        let new = Tail {
                            file,
                            dev: meta.dev(),
                            ino: meta.ino(),
                            offset: 0,
                            partial: Vec::new(),
                        };
                        let old = std::mem::replace(&mut self.current, new);
                        // A second rotation within the grace: the oldest file is done.
                        if let Some((mut older, _)) = self.retired.take() {
                            older.finish(f);
                        }
                        self.retired = Some((old, Instant::now()));
                        got |= self.current.drain(&mut self.chunk, &self.path, f)?;
                    }
                    Err(e) => eprintln!(
                        "sftpctl watch: cannot open the new {}: {e}",
                        self.path.display()
                    ),
                }
            }
            Ok(meta) if meta.len() < self.current.offset => {
                eprintln!(
                    "sftpctl watch: {} was truncated; reading it from the start",
                    self.path.display()
                );
                self.current
                    .file
                    .seek(SeekFrom::Start(0))
                    .with_context(|| format!("cannot seek in {}", self.path.display()))?;
                self.current.offset = 0;
                self.current.partial.clear();
                got |= self.current.drain(&mut self.chunk, &self.path, f)?;
            }
            // Missing for now (between rename and create): keep the old one.
            _ => {}
        }
        Ok(got)
    }

    /// Reads what was added to the renamed file; lets it go once quiet for the grace.
    fn drain_retired(&mut self, f: &mut impl FnMut(&[u8])) -> Result<bool> {
        let Some((old, last)) = &mut self.retired else {
            return Ok(false);
        };
        let got = old.drain(&mut self.chunk, &self.path, f)?;
        if got {
            *last = Instant::now();
        } else if last.elapsed() >= RETIRED_GRACE {
            if let Some((mut old, _)) = self.retired.take() {
                old.finish(f);
            }
        }
        Ok(got)
    }
}

impl Tail {
    fn drain(&mut self, chunk: &mut [u8], path: &Path, f: &mut impl FnMut(&[u8])) -> Result<bool> {
        let mut got = false;
        loop {
            let n = match self.file.read(chunk) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => return Ok(got),
                Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
            };
            if n == 0 {
                return Ok(got);
            }
            got = true;
            self.offset += n as u64;
            if self.partial.is_empty() {
                let used = split_lines(&chunk[..n], &mut *f);
                self.partial.extend_from_slice(&chunk[used..n]);
            } else {
                self.partial.extend_from_slice(&chunk[..n]);
                let data = std::mem::take(&mut self.partial);
                let used = split_lines(&data, &mut *f);
                self.partial.extend_from_slice(&data[used..]);
            }
        }
    }

    /// No more will come: a last line without its newline is complete.
    fn finish(&mut self, f: &mut impl FnMut(&[u8])) {
        if !self.partial.is_empty() {
            f(&std::mem::take(&mut self.partial));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn collect(follower: &mut Follower) -> Vec<String> {
        let mut lines = Vec::new();
        follower
            .poll(&mut |l: &[u8]| lines.push(String::from_utf8_lossy(l).into_owned()))
            .unwrap();
        lines
    }

    #[test]
    fn follows_across_rename_and_truncate() {
        let dir = std::env::temp_dir().join(format!("sftpctl-follow-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("sftp.log");
        std::fs::write(&path, "old line\n").unwrap();
        let mut f = Follower::open(&path, None).unwrap();
        assert!(collect(&mut f).is_empty(), "starts at the end");
        let mut w = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        write!(w, "one\ntw").unwrap();
        assert_eq!(collect(&mut f), ["one"]);
        writeln!(w, "o").unwrap();
        assert_eq!(collect(&mut f), ["two"]);
        // logrotate: rename, then a new file
        writeln!(w, "three").unwrap();
        std::fs::rename(&path, dir.join("sftp.log.1")).unwrap();
        std::fs::write(&path, "four\n").unwrap();
        assert_eq!(collect(&mut f), ["three", "four"]);
        // rsyslog writes to the renamed file until postrotate's SIGHUP: not lost
        writeln!(w, "three and a half").unwrap();
        assert_eq!(collect(&mut f), ["three and a half"]);
        write!(w, "unfinished").unwrap();
        assert_eq!(collect(&mut f), Vec::<String>::new());
        drop(w);
        // a second rotation: the first renamed file is done, its last line complete
        std::fs::rename(&path, dir.join("sftp.log.2")).unwrap();
        std::fs::write(&path, "four b\n").unwrap();
        assert_eq!(collect(&mut f), ["unfinished", "four b"]);
        // copytruncate
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(0)
            .unwrap();
        assert!(collect(&mut f).is_empty());
        std::fs::write(&path, "five\n").unwrap();
        assert_eq!(collect(&mut f), ["five"]);
        // resume from a saved position
        let pos = f.position();
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"six\n")
            .unwrap();
        let mut again = Follower::open(&path, Some(pos)).unwrap();
        assert_eq!(collect(&mut again), ["six"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
