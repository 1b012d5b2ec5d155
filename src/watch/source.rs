//! Where lines come from: UDP datagrams from rsyslog, a followed log file, or a byte stream.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::net::{SocketAddr, UdpSocket};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

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

/// Tails a log file across logrotate: after a rename the old file is read to its end and the
/// new one from its start; after a truncation reading starts over at 0.
pub struct Follower {
    path: PathBuf,
    file: File,
    dev: u64,
    ino: u64,
    offset: u64,
    partial: Vec<u8>,
    chunk: Vec<u8>,
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
            file,
            dev: meta.dev(),
            ino: meta.ino(),
            offset,
            partial: Vec::new(),
            chunk: vec![0; 256 * 1024],
        })
    }

    pub fn position(&self) -> FollowPosition {
        FollowPosition {
            path: self.path.clone(),
            dev: self.dev,
            ino: self.ino,
            // A partial line is read again next time rather than lost.
            offset: self.offset - self.partial.len() as u64,
        }
    }

    /// Reads everything available; calls `f` per complete line. Returns whether any came.
    pub fn poll(&mut self, f: &mut impl FnMut(&[u8])) -> Result<bool> {
        let mut got = self.drain(f)?;
        match std::fs::metadata(&self.path) {
            Ok(meta) if meta.dev() != self.dev || meta.ino() != self.ino => {
                // Rotated: the old file is read to its end (above); its last line is complete.
                got |= self.drain(f)?;
                if !self.partial.is_empty() {
                    f(&std::mem::take(&mut self.partial));
                }
                match File::open(&self.path) {
                    Ok(file) => {
                        self.file = file;
                        self.dev = meta.dev();
                        self.ino = meta.ino();
                        self.offset = 0;
                        got |= self.drain(f)?;
                    }
                    Err(e) => eprintln!(
                        "sftpctl watch: cannot open the new {}: {e}",
                        self.path.display()
                    ),
                }
            }
            Ok(meta) if meta.len() < self.offset => {
                eprintln!(
                    "sftpctl watch: {} was truncated; reading it from the start",
                    self.path.display()
                );
                self.file
                    .seek(SeekFrom::Start(0))
                    .with_context(|| format!("cannot seek in {}", self.path.display()))?;
                self.offset = 0;
                self.partial.clear();
                got |= self.drain(f)?;
            }
            // Missing for now (between rename and create): keep the old one.
            _ => {}
        }
        Ok(got)
    }

    fn drain(&mut self, f: &mut impl FnMut(&[u8])) -> Result<bool> {
        let mut got = false;
        loop {
            let n = match self.file.read(&mut self.chunk) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => return Ok(got),
                Err(e) => {
                    return Err(e).with_context(|| format!("cannot read {}", self.path.display()))
                }
            };
            if n == 0 {
                return Ok(got);
            }
            got = true;
            self.offset += n as u64;
            if self.partial.is_empty() {
                let used = split_lines(&self.chunk[..n], &mut *f);
                self.partial.extend_from_slice(&self.chunk[used..n]);
            } else {
                self.partial.extend_from_slice(&self.chunk[..n]);
                let data = std::mem::take(&mut self.partial);
                let used = split_lines(&data, &mut *f);
                self.partial.extend_from_slice(&data[used..]);
            }
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
