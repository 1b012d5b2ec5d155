//! A thin inotify wrapper: watches are added through `/proc/self/fd/N` of a descriptor that was
//! opened safely, so the watch lands on exactly that inode, never on whatever a path names a
//! moment later.

use std::ffi::{CString, OsStr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

use nix::errno::Errno;
use nix::libc;

pub use libc::{
    IN_ATTRIB, IN_CLOSE_WRITE, IN_CREATE, IN_DELETE_SELF, IN_EXCL_UNLINK, IN_IGNORED, IN_ISDIR,
    IN_MOVED_TO, IN_MOVE_SELF, IN_ONLYDIR, IN_Q_OVERFLOW,
};

pub struct Inotify {
    fd: OwnedFd,
}

impl Inotify {
    pub fn new() -> Result<Inotify, Errno> {
        // SAFETY: plain syscall; the result is checked before it is used as a descriptor.
        let fd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        let fd = Errno::result(fd)?;
        // SAFETY: a new descriptor that nothing else owns.
        Ok(Inotify {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    pub fn raw(&self) -> i32 {
        self.fd.as_raw_fd()
    }

    /// Watches the inode `target` refers to. Adding a watch for an inode that is already
    /// watched returns the same watch descriptor (and replaces its mask).
    pub fn add_fd(&self, target: &OwnedFd, mask: u32) -> Result<i32, Errno> {
        let path = CString::new(format!("/proc/self/fd/{}", target.as_raw_fd()))
            .expect("no NUL in a number");
        // SAFETY: valid C string, valid inotify descriptor.
        let wd = unsafe { libc::inotify_add_watch(self.fd.as_raw_fd(), path.as_ptr(), mask) };
        Errno::result(wd)
    }

    pub fn rm(&self, wd: i32) {
        // SAFETY: plain syscall on our own descriptor; an unknown wd only yields EINVAL.
        unsafe {
            libc::inotify_rm_watch(self.fd.as_raw_fd(), wd);
        }
    }

    /// Reads queued events into `buf`; `Ok(0)` when none are queued.
    pub fn read(&self, buf: &mut [u8]) -> Result<usize, Errno> {
        match nix::unistd::read(self.fd.as_raw_fd(), buf) {
            Ok(n) => Ok(n),
            Err(Errno::EAGAIN) => Ok(0),
            Err(e) => Err(e),
        }
    }
}

/// One event as the kernel wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event<'a> {
    pub wd: i32,
    pub mask: u32,
    pub cookie: u32,
    /// The entry's name inside the watched directory; `None` for events on the directory itself.
    pub name: Option<&'a OsStr>,
}

const HEADER: usize = 16; // struct inotify_event without the name

/// Splits a buffer filled by `read(2)` into events. A truncated tail (which the kernel never
/// produces) ends the iteration.
pub fn parse(buf: &[u8]) -> impl Iterator<Item = Event<'_>> {
    let mut at = 0usize;
    std::iter::from_fn(move || {
        if buf.len() < at + HEADER {
            return None;
        }
        let word = |i: usize| {
            let b = &buf[at + 4 * i..at + 4 * i + 4];
            [b[0], b[1], b[2], b[3]]
        };
        let wd = i32::from_ne_bytes(word(0));
        let mask = u32::from_ne_bytes(word(1));
        let cookie = u32::from_ne_bytes(word(2));
        let len = u32::from_ne_bytes(word(3)) as usize;
        let end = at + HEADER + len;
        if end > buf.len() {
            return None;
        }
        let raw = &buf[at + HEADER..end];
        let name_len = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
        let name = (name_len > 0).then(|| OsStr::from_bytes(&raw[..name_len]));
        at = end;
        Some(Event {
            wd,
            mask,
            cookie,
            name,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(wd: i32, mask: u32, cookie: u32, name: &[u8], pad: usize) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&wd.to_ne_bytes());
        v.extend_from_slice(&mask.to_ne_bytes());
        v.extend_from_slice(&cookie.to_ne_bytes());
        let len = if name.is_empty() { 0 } else { name.len() + pad };
        v.extend_from_slice(&(len as u32).to_ne_bytes());
        if len > 0 {
            v.extend_from_slice(name);
            v.extend(std::iter::repeat_n(0u8, pad));
        }
        v
    }

    #[test]
    fn parses_events_with_and_without_names() {
        let mut buf = raw(3, IN_CREATE, 0, b"f.txt", 11);
        buf.extend(raw(4, IN_ATTRIB, 0, b"", 0));
        buf.extend(raw(5, IN_MOVED_TO | IN_ISDIR, 77, b"d\xffir", 4));
        let evs: Vec<Event> = parse(&buf).collect();
        assert_eq!(evs.len(), 3);
        assert_eq!(evs[0].wd, 3);
        assert_eq!(evs[0].name, Some(OsStr::new("f.txt")));
        assert_eq!(evs[1].name, None);
        assert_eq!(evs[1].mask, IN_ATTRIB);
        assert_eq!(evs[2].cookie, 77);
        assert_eq!(evs[2].name.unwrap().as_bytes(), b"d\xffir");
    }

    #[test]
    fn a_truncated_tail_ends_the_iteration() {
        let mut buf = raw(3, IN_CREATE, 0, b"abc", 13);
        buf.extend(&raw(4, IN_CREATE, 0, b"long-name", 7)[..20]);
        assert_eq!(parse(&buf).count(), 1);
        assert_eq!(parse(&buf[..10]).count(), 0);
    }

    #[test]
    fn watches_land_on_the_opened_inode() {
        let d = std::env::temp_dir().join(format!("sftpctl-ino-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("a")).unwrap();
        let fd = super::super::fsx::open_dir_path(&d.join("a")).unwrap();
        let ino = Inotify::new().unwrap();
        let wd = ino.add_fd(&fd, IN_CREATE | IN_ONLYDIR).unwrap();
        // Renamed after the watch was added: the watch follows the inode, not the name.
        std::fs::rename(d.join("a"), d.join("b")).unwrap();
        std::fs::write(d.join("b/x"), "").unwrap();
        let mut buf = vec![0u8; 4096];
        let n = ino.read(&mut buf).unwrap();
        let evs: Vec<Event> = parse(&buf[..n]).collect();
        assert_eq!(evs.len(), 1);
        assert_eq!(evs[0].wd, wd);
        assert_eq!(evs[0].name, Some(OsStr::new("x")));
        assert_eq!(ino.add_fd(&fd, IN_CREATE | IN_ONLYDIR).unwrap(), wd);
        std::fs::remove_dir_all(&d).unwrap();
    }
}
