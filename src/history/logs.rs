//! Which logs `report` reads and how: `sftp.log` as logrotate leaves it (`sftp.log.3.gz`,
//! `sftp.log.2.gz`, `sftp.log.1`, `sftp.log`: oldest first, so a session open across a
//! rotation is one session), opened the way root must open a file in a directory others may
//! influence: never through a symlink, only regular files, gzip detected by its magic bytes.

use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read};
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::stat::{fstat, Mode, SFlag};

use crate::error::usage;

const BUFFER: usize = 1 << 20;

/// The rotations of `log_file` that exist, oldest first, then `log_file` itself if it exists.
/// Names other than `NAME.N` and `NAME.N.gz` (N ≥ 1) are not logrotate's and are left out.
pub fn rotated_logs(log_file: &Path) -> Result<Vec<PathBuf>> {
    let dir = log_file.parent().unwrap_or(Path::new("/"));
    let base = log_file
        .file_name()
        .and_then(OsStr::to_str)
        .with_context(|| format!("rsyslog.log_file {} has no file name", log_file.display()))?;
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(usage(format!(
                "no log directory {}: give the log FILE to read, or set rsyslog.log_file",
                dir.display()
            )))
        }
        Err(e) => {
            return Err(e)
                .with_context(|| format!("cannot list {} for the rotated logs", dir.display()))
        }
    };
    let mut rotated: Vec<(u64, PathBuf)> = Vec::new();
    let mut current = None;
    for entry in entries {
        let entry = entry.with_context(|| format!("cannot list {}", dir.display()))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name == base {
            current = Some(entry.path());
        } else if let Some(n) = rotation_number(name, base) {
            rotated.push((n, entry.path()));
        }
    }
    // Higher numbers are older; a `.N` and a `.N.gz` of the same N cannot both be logrotate's,
    // and sorting by name after the number keeps the order stable if they are.
    rotated.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    let mut logs: Vec<PathBuf> = rotated.into_iter().map(|(_, p)| p).collect();
    logs.extend(current);
    if logs.is_empty() {
        return Err(usage(format!(
            "no log at {} and no rotation of it: give the log FILE to read, or set \
             rsyslog.log_file",
            log_file.display()
        )));
    }
    Ok(logs)
}

fn rotation_number(name: &str, base: &str) -> Option<u64> {
    let rest = name.strip_prefix(base)?.strip_prefix('.')?;
    let digits = rest.strip_suffix(".gz").unwrap_or(rest);
    if digits.is_empty() || digits.len() > 6 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().filter(|n| *n >= 1)
}

/// A log checked and opened, not yet buffered: every FILE is opened (and refused) before the
/// first line is read, without holding a buffer per file.
pub struct OpenLog(Box<dyn Read + Send>);

/// A log to read: a regular file reached without following a symlink in its last component,
/// or `-` for standard input.
pub fn open_log(path: &Path) -> Result<OpenLog> {
    Ok(OpenLog(if path.as_os_str() == "-" {
        Box::new(std::io::stdin())
    } else {
        Box::new(std::fs::File::from(open_regular(path)?))
    }))
}

/// The lines of an opened log; gzip (`.gz` rotations) is decompressed whatever the name.
pub fn reader(log: OpenLog, path: &Path) -> Result<Box<dyn BufRead + Send>> {
    let mut reader = BufReader::with_capacity(BUFFER, log.0);
    let head = reader
        .fill_buf()
        .with_context(|| format!("cannot read the log {}", path.display()))?;
    if head.starts_with(&[0x1f, 0x8b]) {
        // MultiGzDecoder: `cat a.gz b.gz` is one valid stream, and gzip says so too.
        let gz = flate2::bufread::MultiGzDecoder::new(reader);
        Ok(Box::new(BufReader::with_capacity(BUFFER, gz)))
    } else {
        Ok(Box::new(reader))
    }
}

fn open_regular(path: &Path) -> Result<OwnedFd> {
    let shown = path.display();
    // O_NONBLOCK: opening a FIFO someone put there must not hang; it is refused below.
    let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC;
    let fd = match nix::fcntl::open(path, flags, Mode::empty()) {
        Ok(fd) => fd,
        Err(Errno::ELOOP) => {
            return Err(usage(format!(
                "refusing the log {shown}: it is a symlink (sftpctl never follows links as \
                 root); give the file it points to, if you trust it"
            )))
        }
        Err(e) => return Err(usage(format!("cannot open the log {shown}: {}", e.desc()))),
    };
    // SAFETY: a new descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let st = fstat(std::os::fd::AsRawFd::as_raw_fd(&fd))
        .with_context(|| format!("cannot stat the log {shown}"))?;
    if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != SFlag::S_IFREG {
        return Err(usage(format!(
            "refusing the log {shown}: not a regular file (use - to read a pipe)"
        )));
    }
    // Back to blocking reads; the flag only mattered for the open.
    nix::fcntl::fcntl(
        std::os::fd::AsRawFd::as_raw_fd(&fd),
        nix::fcntl::FcntlArg::F_SETFL(OFlag::empty()),
    )
    .with_context(|| format!("cannot read the log {shown}"))?;
    Ok(fd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotations_are_oldest_first_and_foreign_names_left_out() {
        let dir = std::env::temp_dir().join(format!("sftpctl-rot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for n in [
            "sftp.log",
            "sftp.log.1",
            "sftp.log.2.gz",
            "sftp.log.10.gz",
            "sftp.log.3.gz",
            "sftp.log.0",
            "sftp.log.old",
            "sftp.log.2.gz.tmp",
            "sftp.logx.1",
            "other.log.1",
        ] {
            std::fs::write(dir.join(n), "").unwrap();
        }
        let got = rotated_logs(&dir.join("sftp.log")).unwrap();
        let names: Vec<_> = got
            .iter()
            .map(|p| p.file_name().unwrap().to_str().unwrap().to_string())
            .collect();
        assert_eq!(
            names,
            [
                "sftp.log.10.gz",
                "sftp.log.3.gz",
                "sftp.log.2.gz",
                "sftp.log.1",
                "sftp.log"
            ]
        );
        let err = rotated_logs(&dir.join("none.log")).unwrap_err();
        assert_eq!(crate::error::exit_code(&err), 2);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
