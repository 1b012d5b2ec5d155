//! Where lines come from: UDP datagrams from rsyslog, a followed log file, or a byte stream.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::net::{SocketAddr, UdpSocket};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use nix::sys::socket::{setsockopt, sockopt};

use super::state::FollowPosition;
use crate::error::usage;

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
