//! Removing a directory tree that a client controlled, as root: iteratively, holding a bounded
//! number of descriptors whatever the depth (a recursion holding one per level fails with
//! EMFILE on a ~1,020-deep tree), never following a symlink, never entering another file
//! system, and saying exactly where it stopped when it cannot finish.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::dir::{Dir, Type};
use nix::errno::Errno;
use nix::fcntl::{open, openat, AtFlags, OFlag};
use nix::sys::stat::{fstat, fstatat, Mode};
use nix::unistd::{unlinkat, UnlinkatFlags};

/// Levels whose directory stays open; deeper ancestors are closed and opened again (by name,
/// checked by inode) when the walk climbs back to them.
const OPEN_LEVELS: usize = 32;

/// Why a removal stopped, and where: everything not yet removed is still in place.
#[derive(Debug)]
pub struct Stopped {
    pub top: PathBuf,
    /// The entry the walk could not remove or enter, relative to `top`.
    pub at: PathBuf,
    pub depth: usize,
    pub why: String,
    /// Entries (files, links, directories) removed before it stopped.
    pub removed: u64,
}

impl fmt::Display for Stopped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "removing {} stopped at {} ({} level(s) down): {}; {} entr{} removed, {} and what is under it remain",
            self.top.display(),
            shown(&self.at),
            self.depth,
            self.why,
            self.removed,
            if self.removed == 1 { "y was" } else { "ies were" },
            self.top.display()
        )
    }
}

impl std::error::Error for Stopped {}

/// A client-made path for a message: escaped (no terminal escapes), and cut in the middle when
/// very long (a deep tree's path can be far longer than PATH_MAX).
fn shown(path: &Path) -> String {
    let text = format!("{:?}", path.as_os_str());
    let chars: Vec<char> = text.chars().collect();
    if chars.len() <= 240 {
        return text;
    }
    let head: String = chars[..100].iter().collect();
    let tail: String = chars[chars.len() - 100..].iter().collect();
    format!("{head}…{tail}")
}

/// One directory on the way down: its name in the parent, its identity, maybe an open handle.
struct Level {
    name: OsString,
    id: (u64, u64),
    fd: Option<OwnedFd>,
}

fn dir_flags() -> OFlag {
    OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC
}

fn id_of(fd: &OwnedFd) -> Result<(u64, u64), Errno> {
    let st = fstat(fd.as_raw_fd())?;
    Ok((st.st_dev, st.st_ino))
}

fn open_at(dir: &OwnedFd, name: &OsStr) -> Result<OwnedFd, Errno> {
    let raw = openat(Some(dir.as_raw_fd()), name, dir_flags(), Mode::empty())?;
    // SAFETY: `openat` just returned this descriptor and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// What one listing of a directory found.
enum Listing {
    /// A subdirectory to descend into (its name and identity).
    Subdir(OsString, (u64, u64)),
    /// Nothing but removable entries, now removed: list again to be sure it is empty.
    Cleared,
    /// Empty.
    Empty,
}

struct Walk {
    top: PathBuf,
    dev: u64,
    stack: Vec<Level>,
    removed: u64,
}

impl Walk {
    fn rel(&self, name: Option<&OsStr>) -> PathBuf {
        let mut p: PathBuf = self.stack[1..].iter().map(|l| l.name.as_os_str()).collect();
        if let Some(n) = name {
            p.push(n);
        }
        p
    }

    fn stop(&self, name: Option<&OsStr>, why: impl Into<String>) -> Stopped {
        Stopped {
            top: self.top.clone(),
            at: self.rel(name),
            depth: self.stack.len() - 1 + usize::from(name.is_some()),
            why: why.into(),
            removed: self.removed,
        }
    }

    /// The handle of the deepest level, opening evicted levels again from the nearest open
    /// ancestor: each by name, without following symlinks, and checked to be the same inode.
    fn current(&mut self) -> Result<&OwnedFd, Stopped> {
        let last = self.stack.len() - 1;
        if self.stack[last].fd.is_none() {
            let open_from = (0..last)
                .rev()
                .find(|&i| self.stack[i].fd.is_some())
                .unwrap_or(0);
            for i in open_from + 1..=last {
                let parent = self.stack[i - 1].fd.as_ref().expect("opened above");
                let fd = open_at(parent, &self.stack[i].name)
                    .map_err(|e| self.stop(None, format!("cannot open it again: {e}")))?;
                if id_of(&fd).ok() != Some(self.stack[i].id) {
                    return Err(self.stop(None, "it was replaced while being removed"));
                }
                self.stack[i].fd = Some(fd);
                self.evict(i);
            }
        }
        Ok(self.stack[last].fd.as_ref().expect("opened above"))
    }

    /// Level `i` was just opened: the one OPEN_LEVELS above it is closed (never the top), so
    /// at most OPEN_LEVELS levels besides the top are open.
    fn evict(&mut self, i: usize) {
        if i > OPEN_LEVELS {
            self.stack[i - OPEN_LEVELS].fd = None;
        }
    }

    /// Lists the deepest directory once: removes every entry that is not a directory, stops
    /// at the first subdirectory.
    fn list(&mut self) -> Result<Listing, Stopped> {
        let fd = self.current()?;
        let raw = fd.as_raw_fd();
        let mut dir = Dir::openat(Some(raw), ".", dir_flags(), Mode::empty())
            .map_err(|e| self.stop(None, format!("cannot list it: {e}")))?;
        let mut cleared = false;
        for entry in dir.iter() {
            let entry = entry.map_err(|e| self.stop(None, format!("cannot list it: {e}")))?;
            let name = OsStr::from_bytes(entry.file_name().to_bytes()).to_os_string();
            if name == "." || name == ".." {
                continue;
            }
            let is_dir = match entry.file_type() {
                Some(Type::Directory) => true,
                Some(_) => false,
                None => match fstatat(Some(raw), name.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW) {
                    Ok(st) => st.st_mode & nix::libc::S_IFMT == nix::libc::S_IFDIR,
                    Err(Errno::ENOENT) => continue,
                    Err(e) => return Err(self.stop(Some(&name), e.to_string())),
                },
            };
            if is_dir {
                let st = fstatat(Some(raw), name.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW)
                    .map_err(|e| self.stop(Some(&name), e.to_string()))?;
                return Ok(Listing::Subdir(name, (st.st_dev, st.st_ino)));
            }
            match unlinkat(Some(raw), name.as_os_str(), UnlinkatFlags::NoRemoveDir) {
                Ok(()) => {
                    self.removed += 1;
                    cleared = true;
                }
                Err(Errno::ENOENT) => {}
                Err(e) => return Err(self.stop(Some(&name), format!("cannot remove it: {e}"))),
            }
        }
        Ok(if cleared {
            Listing::Cleared
        } else {
            Listing::Empty
        })
    }

    fn descend(&mut self, name: OsString, id: (u64, u64)) -> Result<(), Stopped> {
        if id.0 != self.dev {
            return Err(self.stop(
                Some(&name),
                "another file system is mounted there: nothing on it was touched",
            ));
        }
        let parent = self.current()?;
        let fd = match open_at(parent, &name) {
            Ok(fd) => fd,
            // Replaced by a non-directory since the listing: the next listing removes it.
            Err(Errno::ENOTDIR | Errno::ELOOP | Errno::ENOENT) => return Ok(()),
            Err(e) => return Err(self.stop(Some(&name), format!("cannot open it: {e}"))),
        };
        if id_of(&fd).ok() != Some(id) {
            return Ok(()); // changed since the listing: list the parent again
        }
        self.stack.push(Level {
            name,
            id,
            fd: Some(fd),
        });
        self.evict(self.stack.len() - 1);
        Ok(())
    }

    /// Removes the deepest directory (now empty) from its parent and climbs back.
    fn ascend(&mut self) -> Result<(), Stopped> {
        let level = self.stack.pop().expect("not the top");
        drop(level.fd);
        let parent = self.current()?.as_raw_fd();
        if let Err(e) = unlinkat(
            Some(parent),
            level.name.as_os_str(),
            UnlinkatFlags::RemoveDir,
        ) {
            let name = level.name.clone();
            return Err(self.stop(Some(&name), format!("cannot remove the directory: {e}")));
        }
        self.removed += 1;
        Ok(())
    }
}

/// Removes the directory `path` and everything under it; `path` itself must not be a
/// symlink. Returns how many entries were removed.
pub fn remove_tree(path: &Path) -> Result<u64, Stopped> {
    let stopped = |why: String| Stopped {
        top: path.to_path_buf(),
        at: PathBuf::new(),
        depth: 0,
        why,
        removed: 0,
    };
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(stopped("not a directory that can be removed".into()));
    };
    let parent_fd = open(parent, dir_flags(), Mode::empty())
        .map(|raw| unsafe { OwnedFd::from_raw_fd(raw) })
        .map_err(|e| stopped(format!("cannot open {}: {e}", parent.display())))?;
    let top = open_at(&parent_fd, name).map_err(|e| stopped(format!("cannot open it: {e}")))?;
    let id = id_of(&top).map_err(|e| stopped(e.to_string()))?;
    let mut walk = Walk {
        top: path.to_path_buf(),
        dev: id.0,
        stack: vec![Level {
            name: name.to_os_string(),
            id,
            fd: Some(top),
        }],
        removed: 0,
    };
    loop {
        match walk.list()? {
            Listing::Subdir(name, id) => walk.descend(name, id)?,
            Listing::Cleared => {}
            Listing::Empty if walk.stack.len() > 1 => walk.ascend()?,
            Listing::Empty => break,
        }
    }
    drop(walk.stack);
    unlinkat(
        Some(parent_fd.as_fd().as_raw_fd()),
        name,
        UnlinkatFlags::RemoveDir,
    )
    .map_err(|e| Stopped {
        top: path.to_path_buf(),
        at: PathBuf::new(),
        depth: 0,
        why: format!("cannot remove the emptied directory itself: {e}"),
        removed: walk.removed,
    })?;
    Ok(walk.removed + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("sftpctl-tree-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn open_fds() -> usize {
        std::fs::read_dir("/proc/self/fd").unwrap().count()
    }

    #[test]
    fn removes_a_deep_tree_with_few_descriptors() {
        let top = scratch("deep");
        let tree = top.join("t");
        std::fs::create_dir(&tree).unwrap();
        // Built by descriptors so the path never has to fit in PATH_MAX.
        let mut fd = open(&tree, dir_flags(), Mode::empty()).unwrap();
        for i in 0..1_500 {
            nix::sys::stat::mkdirat(Some(fd), "dd", Mode::from_bits_truncate(0o755)).unwrap();
            let f = openat(
                Some(fd),
                "f",
                OFlag::O_CREAT | OFlag::O_WRONLY,
                Mode::S_IRUSR,
            );
            nix::unistd::close(f.unwrap()).unwrap();
            if i % 100 == 0 {
                nix::unistd::symlinkat("/etc/passwd", Some(fd), "l").unwrap();
            }
            let next = openat(Some(fd), "dd", dir_flags(), Mode::empty()).unwrap();
            nix::unistd::close(fd).unwrap();
            fd = next;
        }
        nix::unistd::close(fd).unwrap();
        // Far fewer descriptors than levels (nextest runs each test in its own process).
        let limit = nix::libc::rlimit {
            rlim_cur: 64,
            rlim_max: 20_000,
        };
        let mut saved = limit;
        unsafe {
            nix::libc::getrlimit(nix::libc::RLIMIT_NOFILE, &mut saved);
            nix::libc::setrlimit(nix::libc::RLIMIT_NOFILE, &limit);
        }
        let before = open_fds();
        let removed = remove_tree(&tree);
        unsafe { nix::libc::setrlimit(nix::libc::RLIMIT_NOFILE, &saved) };
        let removed = removed.unwrap();
        assert_eq!(removed, 1_500 * 2 + 15 + 1);
        assert!(!tree.exists());
        assert!(open_fds() <= before, "descriptors leaked");
        assert!(Path::new("/etc/passwd").exists());
        std::fs::remove_dir_all(&top).unwrap();
    }

    #[test]
    fn a_symlink_is_removed_not_followed() {
        let top = scratch("link");
        let outside = top.join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("keep"), b"x").unwrap();
        let tree = top.join("t");
        std::fs::create_dir(&tree).unwrap();
        std::os::unix::fs::symlink(&outside, tree.join("to-outside")).unwrap();
        remove_tree(&tree).unwrap();
        assert!(outside.join("keep").exists());
        assert!(remove_tree(&top.join("missing")).is_err());
        std::os::unix::fs::symlink(&outside, top.join("link")).unwrap();
        assert!(remove_tree(&top.join("link")).is_err(), "a symlinked top");
        assert!(outside.join("keep").exists());
        std::fs::remove_dir_all(&top).unwrap();
    }

    #[test]
    fn long_paths_are_cut_in_messages() {
        let p: PathBuf = std::iter::repeat_n("abc\u{1b}[2J", 100).collect();
        let s = shown(&p);
        assert!(s.chars().count() < 260, "{s}");
        assert!(!s.contains('\u{1b}'), "{s}");
    }
}
