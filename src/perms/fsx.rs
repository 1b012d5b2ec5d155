//! The only code that touches data trees: every path is opened relative to a directory
//! descriptor with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS |
//! RESOLVE_NO_XDEV)` and `O_NOFOLLOW`, checked with `fstat` on that descriptor and changed with
//! `fchmod` on that same descriptor. No path is ever resolved twice.

use std::ffi::{OsStr, OsString};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{fchmod, fstat, FileStat, Mode};

use super::policy::{decide, Decision, Inode, Kind, Owners, Skip};

/// Flags for every open inside a data tree.
fn resolve_flags() -> ResolveFlag {
    ResolveFlag::RESOLVE_BENEATH
        | ResolveFlag::RESOLVE_NO_SYMLINKS
        | ResolveFlag::RESOLVE_NO_MAGICLINKS
        | ResolveFlag::RESOLVE_NO_XDEV
}

fn open_flags(dir_only: bool) -> OFlag {
    // O_RDONLY: fchmod needs a real descriptor (not O_PATH). O_NONBLOCK: a FIFO or a file with
    // a lease must not block us. O_NOCTTY: never acquire a terminal.
    let mut f = OFlag::O_RDONLY
        | OFlag::O_NOFOLLOW
        | OFlag::O_NONBLOCK
        | OFlag::O_NOCTTY
        | OFlag::O_CLOEXEC;
    if dir_only {
        f |= OFlag::O_DIRECTORY;
    }
    f
}

/// Paths longer than this are opened a piece at a time (the kernel refuses a path of
/// PATH_MAX = 4096 bytes or more with ENAMETOOLONG; a client can build deeper trees).
const PIECE: usize = 2048;

/// `openat2` beneath `dir`, never following a symlink, never crossing a mount. `rel` must be
/// relative; an empty path opens `dir` itself again. A path longer than [`PIECE`] bytes is
/// resolved in pieces, each beneath the directory the previous one opened (no piece holds
/// `..`: the names come from directory listings and inotify), so any depth works and at most
/// two descriptors are open at a time.
pub fn open_beneath(dir: RawFd, rel: &Path, dir_only: bool) -> Result<OwnedFd, Errno> {
    if rel.as_os_str().len() <= PIECE {
        return openat2_retry(dir, rel, open_flags(dir_only), resolve_flags());
    }
    let mut pieces: Vec<PathBuf> = vec![PathBuf::new()];
    for c in rel.components() {
        let std::path::Component::Normal(name) = c else {
            return Err(Errno::EXDEV); // "..", "/" or "." in a long path: refused
        };
        let last = pieces.last_mut().expect("never empty");
        if !last.as_os_str().is_empty() && last.as_os_str().len() + name.len() >= PIECE {
            pieces.push(PathBuf::new());
        }
        pieces.last_mut().expect("never empty").push(name);
    }
    let (final_piece, dirs) = pieces.split_last().expect("never empty");
    let mut held: Option<OwnedFd> = None;
    for piece in dirs {
        let at = held.as_ref().map_or(dir, |fd| fd.as_raw_fd());
        held = Some(openat2_retry(at, piece, open_flags(true), resolve_flags())?);
    }
    let at = held.as_ref().map_or(dir, |fd| fd.as_raw_fd());
    openat2_retry(at, final_piece, open_flags(dir_only), resolve_flags())
}

/// Like [`open_beneath`] for a directory, but a mount point is allowed: for `<root>/NAME` and
/// its data dir (an admin may mount a filesystem per jail). Inside a data tree
/// [`open_beneath`] is used.
pub fn open_dir_beneath_mount_ok(dir: RawFd, rel: &Path) -> Result<OwnedFd, Errno> {
    openat2_retry(
        dir,
        rel,
        open_flags(true),
        resolve_flags() - ResolveFlag::RESOLVE_NO_XDEV,
    )
}

fn openat2_retry(
    dir: RawFd,
    rel: &Path,
    flags: OFlag,
    resolve: ResolveFlag,
) -> Result<OwnedFd, Errno> {
    let rel: &Path = if rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rel
    };
    let how = OpenHow::new().flags(flags).resolve(resolve);
    loop {
        match openat2(dir, rel, how) {
            // SAFETY: openat2 returned a new descriptor that nothing else owns.
            Ok(fd) => return Ok(unsafe { OwnedFd::from_raw_fd(fd) }),
            // The kernel asks for a retry when a rename raced with a ".." lookup.
            Err(Errno::EAGAIN) | Err(Errno::EINTR) => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Opens a trusted directory (the jail root): an absolute path chosen by root, not by users.
pub fn open_dir_path(path: &Path) -> Result<OwnedFd, Errno> {
    let fd = nix::fcntl::open(
        path,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    // SAFETY: a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

pub fn inode_of(st: &FileStat) -> Inode {
    Inode {
        kind: Kind::of_mode(st.st_mode),
        mode: st.st_mode & 0o7777,
        uid: st.st_uid,
        gid: st.st_gid,
        nlink: st.st_nlink,
        dev: st.st_dev,
    }
}

pub fn stat_fd(fd: &OwnedFd) -> Result<FileStat, Errno> {
    fstat(fd.as_raw_fd())
}

/// What happened to one inode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Already as the policy wants it.
    Fine,
    /// Changed from → to (or, without `fix`, would be).
    Fixed {
        from: u32,
        to: u32,
    },
    NeedsFix {
        from: u32,
        to: u32,
    },
    /// Left alone, with the mode found.
    Skipped(Skip, u32),
    /// Gone, replaced by a symlink, or otherwise not openable beneath the data dir: nothing to
    /// do (a symlink is never followed: ELOOP).
    Unreachable(Errno),
}

/// Checks an opened inode against the policy and, with `fix`, sets the mode the policy wants
/// (group bits added, world and set-id bits removed) through the descriptor.
pub fn check_fd(fd: &OwnedFd, st: &FileStat, owners: &Owners, fix: bool) -> Result<Outcome, Errno> {
    let inode = inode_of(st);
    Ok(match decide(&inode, owners) {
        Decision::Fine => Outcome::Fine,
        Decision::Skip(s) => Outcome::Skipped(s, inode.mode),
        Decision::Fix(to) if !fix => Outcome::NeedsFix {
            from: inode.mode,
            to,
        },
        Decision::Fix(to) => {
            fchmod(fd.as_raw_fd(), Mode::from_bits_retain(to))?;
            Outcome::Fixed {
                from: inode.mode,
                to,
            }
        }
    })
}

/// Opens `rel` beneath `data`, checks and (with `fix`) repairs it. Returns the outcome and,
/// when it is a directory, its descriptor and stat (for the caller to descend or watch).
pub fn visit(
    data: RawFd,
    rel: &Path,
    owners: &Owners,
    fix: bool,
) -> (Outcome, Option<(OwnedFd, FileStat)>) {
    let fd = match open_beneath(data, rel, false) {
        Ok(fd) => fd,
        Err(e) => return (Outcome::Unreachable(e), None),
    };
    let st = match stat_fd(&fd) {
        Ok(st) => st,
        Err(e) => return (Outcome::Unreachable(e), None),
    };
    let outcome = check_fd(&fd, &st, owners, fix).unwrap_or_else(Outcome::Unreachable);
    let dir = (Kind::of_mode(st.st_mode) == Kind::Dir).then_some((fd, st));
    (outcome, dir)
}

/// The kind of a directory entry as `getdents` reported it (may be unknown on some
/// filesystems; then the entry is opened and `fstat`ed like any other).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    Dir,
    Symlink,
    Maybe,
}

/// The names in an opened directory (without `.` and `..`). Reads through a duplicate of the
/// descriptor, so `dir` stays usable.
pub fn list_dir(dir: &OwnedFd) -> Result<Vec<(OsString, EntryKind)>, Errno> {
    let dup = dir.try_clone().map_err(|e| {
        e.raw_os_error()
            .map(Errno::from_raw)
            .unwrap_or(Errno::EBADF)
    })?;
    let mut d = nix::dir::Dir::from_fd(std::os::fd::IntoRawFd::into_raw_fd(dup))?;
    let mut out = Vec::new();
    for entry in d.iter() {
        let entry = entry?;
        let name = entry.file_name().to_bytes();
        if name == b"." || name == b".." {
            continue;
        }
        let kind = match entry.file_type() {
            Some(nix::dir::Type::Directory) => EntryKind::Dir,
            Some(nix::dir::Type::Symlink) => EntryKind::Symlink,
            _ => EntryKind::Maybe,
        };
        out.push((OsStr::from_bytes(name).to_os_string(), kind));
    }
    Ok(out)
}

/// `rel/name` without a leading `./`.
pub fn join(rel: &Path, name: &OsStr) -> PathBuf {
    if rel.as_os_str().is_empty() {
        PathBuf::from(name)
    } else {
        rel.join(name)
    }
}

/// Descriptors of the innermost directories a walk keeps open; above them it goes back up
/// through `..` (checked against the inode it left). Keeps a walk of any depth within the
/// default RLIMIT_NOFILE of 1024, beside the watcher's other descriptors.
const WALK_FDS: usize = 16;

/// One directory on the walk's way down.
struct Frame {
    fd: Option<OwnedFd>,
    id: (u64, u64),
    entries: std::vec::IntoIter<(OsString, EntryKind)>,
}

/// Walks the tree below `start` (relative to the data dir `data`), depth first without
/// recursion: every directory and regular file is checked (and fixed with `fix`); symlinks are
/// never opened. Each entry is opened relative to its parent's descriptor (one name, beneath
/// it, no symlinks), so the depth of a tree has no limit, and at most [`WALK_FDS`] directory
/// descriptors are held. `on_dir` sees every directory's descriptor before its entries are
/// read (the watcher adds its inotify watch there, so nothing created during the walk is
/// missed); `on_outcome` sees every outcome.
pub fn walk(
    data: RawFd,
    start: &Path,
    owners: &Owners,
    fix: bool,
    on_dir: &mut dyn FnMut(&OwnedFd, &FileStat, &Path),
    on_outcome: &mut dyn FnMut(&Path, &Outcome),
) {
    let mut rel = start.to_path_buf();
    let (outcome, dir) = visit(data, &rel, owners, fix);
    on_outcome(&rel, &outcome);
    let Some((fd, st)) = dir else { return };
    let mut stack: Vec<Frame> = Vec::new();
    if let Some(frame) = enter(fd, &st, &rel, owners, on_dir, on_outcome) {
        stack.push(frame);
    }
    while let Some(top) = stack.last_mut() {
        let Some((name, kind)) = top.entries.next() else {
            let done = stack.pop().expect("non-empty");
            if !climb(&mut stack, done) {
                // The directory we came back to is not where it was: what is left of it and
                // above it is not walked (a rename during the walk; its events, or the next
                // scan, cover it).
                on_outcome(&rel, &Outcome::Unreachable(Errno::ESTALE));
                return;
            }
            rel.pop();
            continue;
        };
        if kind == EntryKind::Symlink {
            continue;
        }
        let parent = top
            .fd
            .as_ref()
            .expect("the innermost frames hold descriptors");
        rel.push(&name);
        let (outcome, dir) = visit(parent.as_raw_fd(), Path::new(&name), owners, fix);
        on_outcome(&rel, &outcome);
        match dir.and_then(|(fd, st)| enter(fd, &st, &rel, owners, on_dir, on_outcome)) {
            Some(frame) => {
                stack.push(frame);
                if stack.len() > WALK_FDS {
                    let i = stack.len() - WALK_FDS - 1;
                    stack[i].fd = None;
                }
            }
            None => {
                rel.pop();
            }
        }
    }
}

/// A directory reached by the walk: on the data dir's filesystem, shown to `on_dir`, listed.
fn enter(
    fd: OwnedFd,
    st: &FileStat,
    rel: &Path,
    owners: &Owners,
    on_dir: &mut dyn FnMut(&OwnedFd, &FileStat, &Path),
    on_outcome: &mut dyn FnMut(&Path, &Outcome),
) -> Option<Frame> {
    if st.st_dev != owners.dev {
        return None;
    }
    on_dir(&fd, st, rel);
    match list_dir(&fd) {
        Ok(entries) => Some(Frame {
            fd: Some(fd),
            id: (st.st_dev, st.st_ino),
            entries: entries.into_iter(),
        }),
        Err(e) => {
            on_outcome(rel, &Outcome::Unreachable(e));
            None
        }
    }
}

/// `child`'s parent, opened through its `..` (no-follow), if it is still the inode `id`: a
/// walk that gave up an ancestor's descriptor climbs back without leaving the tree when the
/// client moved a directory meanwhile.
pub(crate) fn reopen_parent(child: &OwnedFd, id: (u64, u64)) -> Option<OwnedFd> {
    let up = nix::fcntl::openat(
        Some(child.as_raw_fd()),
        "..",
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .ok()?;
    // SAFETY: a new descriptor that nothing else owns.
    let up = unsafe { OwnedFd::from_raw_fd(up) };
    match stat_fd(&up) {
        Ok(st) if (st.st_dev, st.st_ino) == id => Some(up),
        _ => None,
    }
}

/// After leaving `done`, makes sure the frame now on top has a descriptor: re-opened through
/// `done`'s `..` when it was given up, and only if it is still the same inode.
fn climb(stack: &mut [Frame], done: Frame) -> bool {
    let Some(top) = stack.last_mut() else {
        return true;
    };
    if top.fd.is_some() {
        return true;
    }
    let Some(child) = done.fd else {
        return false;
    };
    match reopen_parent(&child, top.id) {
        Some(up) => {
            top.fd = Some(up);
            true
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    fn owners_for(dir: &Path) -> Owners {
        let md = std::fs::metadata(dir).unwrap();
        Owners {
            user: md.uid(),
            admin: None,
            group: md.gid(),
            dev: md.dev(),
        }
    }

    fn mode(p: &Path) -> u32 {
        std::fs::symlink_metadata(p).unwrap().mode() & 0o7777
    }

    fn tmp(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("sftpctl-fsx-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn join_handles_the_root() {
        assert_eq!(join(Path::new(""), OsStr::new("a")), PathBuf::from("a"));
        assert_eq!(
            join(Path::new("a/b"), OsStr::new("c")),
            PathBuf::from("a/b/c")
        );
    }

    #[test]
    fn symlinks_and_escapes_are_refused() {
        let base = tmp("refuse");
        let data = base.join("data");
        let outside = base.join("outside");
        std::fs::create_dir(&data).unwrap();
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("f"), "x").unwrap();
        std::os::unix::fs::symlink(outside.join("f"), data.join("abs")).unwrap();
        std::os::unix::fs::symlink("../outside/f", data.join("rel")).unwrap();
        std::os::unix::fs::symlink(&outside, data.join("dirlink")).unwrap();
        let fd = open_dir_path(&data).unwrap();
        for p in [
            "abs",
            "rel",
            "dirlink/f",
            "dirlink",
            "../outside/f",
            "/etc/passwd",
        ] {
            let r = open_beneath(fd.as_raw_fd(), Path::new(p), false);
            assert!(r.is_err(), "{p} opened");
        }
        assert!(open_beneath(fd.as_raw_fd(), Path::new(""), true).is_ok());
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn walk_fixes_files_and_dirs_but_not_behind_symlinks() {
        let base = tmp("walk");
        let data = base.join("data");
        let outside = base.join("outside");
        std::fs::create_dir_all(data.join("a/b")).unwrap();
        std::fs::create_dir(&outside).unwrap();
        for p in [data.join("f"), data.join("a/b/g"), outside.join("h")] {
            std::fs::write(&p, "x").unwrap();
            std::fs::set_permissions(&p, PermissionsExt::from_mode(0o644)).unwrap();
        }
        for d in [data.join("a"), data.join("a/b")] {
            std::fs::set_permissions(&d, PermissionsExt::from_mode(0o755)).unwrap();
        }
        std::os::unix::fs::symlink(&outside, data.join("link")).unwrap();
        std::os::unix::fs::symlink(outside.join("h"), data.join("flink")).unwrap();
        let owners = owners_for(&data);
        let fd = open_dir_path(&data).unwrap();
        let mut dirs = Vec::new();
        let mut outcomes = Vec::new();
        walk(
            fd.as_raw_fd(),
            Path::new(""),
            &owners,
            true,
            &mut |_, _, rel| dirs.push(rel.to_path_buf()),
            &mut |rel, o| outcomes.push((rel.to_path_buf(), o.clone())),
        );
        dirs.sort();
        assert_eq!(
            dirs,
            vec![PathBuf::new(), PathBuf::from("a"), PathBuf::from("a/b")]
        );
        assert_eq!(mode(&data.join("f")), 0o660);
        assert_eq!(mode(&data.join("a/b/g")), 0o660);
        assert_eq!(mode(&data.join("a")), 0o2770);
        assert_eq!(mode(&data.join("a/b")), 0o2770);
        assert_eq!(mode(&outside.join("h")), 0o644);
        assert_eq!(mode(&outside), mode(&base) & 0o7777);
        std::fs::remove_dir_all(&base).unwrap();
    }

    /// `depth` directories named `name` below `base`, made with mkdirat relative to the
    /// previous one (a path that long cannot be made in one call). Returns the innermost fd.
    fn deep_tree(base: &Path, name: &str, depth: usize) -> OwnedFd {
        let mut fd = open_dir_path(base).unwrap();
        for _ in 0..depth {
            nix::sys::stat::mkdirat(Some(fd.as_raw_fd()), name, Mode::from_bits_truncate(0o755))
                .unwrap();
            fd = open_beneath(fd.as_raw_fd(), Path::new(name), true).unwrap();
        }
        fd
    }

    fn open_fds() -> usize {
        std::fs::read_dir("/proc/self/fd").unwrap().count()
    }

    #[test]
    fn walks_and_opens_trees_deeper_than_path_max_with_few_descriptors() {
        let base = tmp("deep");
        let depth = 2600; // "d/" x 2600 = 5200 bytes > PATH_MAX
        let inner = deep_tree(&base, "d", depth);
        nix::sys::stat::fchmod(inner.as_raw_fd(), Mode::from_bits_truncate(0o755)).unwrap();
        let f = nix::fcntl::openat(
            Some(inner.as_raw_fd()),
            "f",
            OFlag::O_CREAT | OFlag::O_WRONLY | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o644),
        )
        .unwrap();
        nix::unistd::close(f).unwrap();
        drop(inner);
        let owners = owners_for(&base);
        let fd = open_dir_path(&base).unwrap();
        let before = open_fds();
        let mut most = 0;
        let mut dirs = 0;
        let mut deepest = PathBuf::new();
        let mut errors = Vec::new();
        walk(
            fd.as_raw_fd(),
            Path::new(""),
            &owners,
            true,
            &mut |_, _, _| {
                dirs += 1;
                most = most.max(open_fds());
            },
            &mut |rel, o| match o {
                Outcome::Unreachable(e) => errors.push(format!("{}: {e}", rel.display())),
                _ => {
                    if rel.as_os_str().len() > deepest.as_os_str().len() {
                        deepest = rel.to_path_buf();
                    }
                }
            },
        );
        assert!(errors.is_empty(), "{:?}", &errors[..errors.len().min(3)]);
        assert_eq!(dirs, depth + 1);
        assert!(most <= before + WALK_FDS + 4, "{most} descriptors open");
        assert!(deepest.as_os_str().len() > 4096);
        assert!(deepest.ends_with("f"));
        // The long path opens too (in pieces), and the repair went through.
        let f = open_beneath(fd.as_raw_fd(), &deepest, false).unwrap();
        assert_eq!(stat_fd(&f).unwrap().st_mode & 0o7777, 0o660);
        // A symlink deep down is refused like a shallow one.
        let parent = open_beneath(fd.as_raw_fd(), deepest.parent().unwrap(), true).unwrap();
        nix::unistd::symlinkat("/etc", Some(parent.as_raw_fd()), "l").unwrap();
        let through = deepest.parent().unwrap().join("l/passwd");
        assert!(open_beneath(fd.as_raw_fd(), &through, false).is_err());
        drop((f, parent, fd));
        std::process::Command::new("rm")
            .arg("-rf")
            .arg(&base)
            .status()
            .unwrap();
    }
}
