//! The walk of one data tree, as root: every entry is looked at with `fstatat(…,
//! AT_SYMLINK_NOFOLLOW)` relative to its parent's descriptor, every directory is opened one
//! name at a time beneath its parent (`openat2` with `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
//! RESOLVE_NO_XDEV`), and a name is removed with `unlinkat` relative to that same parent.
//! No path is ever resolved from the top again, so whatever a client renames or swaps during
//! the walk, the walk stays in the tree it started in.

use std::ffi::OsString;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::AtFlags;
use nix::sys::stat::{fstatat, FileStat};
use nix::unistd::{unlinkat, UnlinkatFlags};

use crate::perms::fsx;

/// What identifies one version of a file across runs: the inode and its modification time.
/// A rename keeps it (the clock keeps running); a modification or a new file gets a new key.
pub type Key = (u64, i64, i64);

/// Which entries the walk reports.
#[derive(Debug, Clone, Copy)]
pub struct Rules {
    /// The client's uid; with `admin`, the only owners whose entries may go.
    pub user: u32,
    pub admin: Option<u32>,
    /// The data dir's filesystem: nothing on another is looked at.
    pub dev: u64,
    /// Entries last modified before this (Unix seconds) are reported.
    pub report_before: i64,
    /// Of those, entries last modified before this may be deleted (when `may_delete` agrees).
    pub delete_before: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum What {
    File,
    Symlink,
}

/// An entry old enough to be reported.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// Relative to the data dir (may be longer than PATH_MAX: for people only).
    pub rel: PathBuf,
    pub what: What,
    pub key: Key,
    pub mtime: i64,
    pub size: u64,
}

/// What the walk did with a candidate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Done {
    Deleted,
    /// Dry run: would have been deleted.
    WouldDelete,
    /// Old, but not (yet) to be deleted: not past `delete_before`, or `may_delete` said no.
    Kept,
    /// `unlinkat` failed.
    Failed(Errno),
}

/// What the walk saw besides the candidates.
#[derive(Debug, Default)]
pub struct Stats {
    pub dirs: u64,
    pub entries: u64,
    /// Entries that could not be looked at, one line each (capped at [`MAX_ERRORS`]).
    pub errors: Vec<String>,
    pub error_count: u64,
    /// The walk stopped early (the tree changed under it).
    pub stopped: Option<String>,
}

pub const MAX_ERRORS: usize = 20;

impl Stats {
    fn error(&mut self, rel: &Path, e: Errno) {
        self.error_count += 1;
        if self.errors.len() < MAX_ERRORS {
            self.errors.push(format!(
                "{}: {}",
                crate::perms::short(&crate::display::path(rel)),
                e.desc()
            ));
        }
    }
}

/// Directory descriptors kept open: the innermost levels. Above them the walk climbs back
/// through `..`, checked against the inode it left (as `perms::fsx::walk` does).
const WALK_FDS: usize = 16;

struct Frame {
    fd: Option<OwnedFd>,
    id: (u64, u64),
    entries: std::vec::IntoIter<(OsString, fsx::EntryKind)>,
}

fn list(fd: OwnedFd, st: &FileStat) -> Result<Frame, Errno> {
    let entries = fsx::list_dir(&fd)?;
    Ok(Frame {
        fd: Some(fd),
        id: (st.st_dev, st.st_ino),
        entries: entries.into_iter(),
    })
}

/// Walks the tree of the opened data dir `data`, depth first without recursion. Each regular
/// file and symlink owned by the client or the admin, on the data dir's filesystem and last
/// modified before `report_before` is a candidate; one also modified before `delete_before`
/// for which `may_delete` says yes is unlinked (with `dry_run`: only reported). Symlinks are
/// never followed: a symlink is one name, judged by its own owner and time. Directories,
/// FIFOs, sockets and devices are never removed.
pub fn walk(
    data: &OwnedFd,
    rules: &Rules,
    dry_run: bool,
    may_delete: &mut dyn FnMut(&Candidate) -> bool,
    on: &mut dyn FnMut(Candidate, Done),
) -> Stats {
    let mut stats = Stats::default();
    let mut rel = PathBuf::new();
    let start = fsx::open_beneath(data.as_raw_fd(), Path::new(""), true)
        .and_then(|fd| fsx::stat_fd(&fd).map(|st| (fd, st)));
    let mut stack = match start.and_then(|(fd, st)| {
        if st.st_dev != rules.dev {
            return Err(Errno::EXDEV);
        }
        list(fd, &st)
    }) {
        Ok(frame) => vec![frame],
        Err(e) => {
            stats.error(&rel, e);
            return stats;
        }
    };
    stats.dirs = 1;
    while let Some(top) = stack.last_mut() {
        let Some((name, _)) = top.entries.next() else {
            let done = stack.pop().expect("non-empty");
            if !climb(&mut stack, done) {
                stats.stopped = Some(format!(
                    "{} was moved during the walk; the rest of the tree waits for the next run",
                    crate::perms::short(&crate::display::path(&rel))
                ));
                return stats;
            }
            rel.pop();
            continue;
        };
        let parent = top
            .fd
            .as_ref()
            .expect("the innermost frames hold descriptors");
        let parent_fd = parent.as_raw_fd();
        stats.entries += 1;
        let st = match fstatat(
            Some(parent_fd),
            name.as_os_str(),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        ) {
            Ok(st) => st,
            Err(Errno::ENOENT) => continue, // gone since the listing
            Err(e) => {
                stats.error(&rel.join(&name), e);
                continue;
            }
        };
        let what = match st.st_mode & nix::libc::S_IFMT {
            nix::libc::S_IFDIR => {
                if st.st_dev != rules.dev {
                    continue; // a mount point: another filesystem is never entered
                }
                // One name beneath the parent, no symlink, no mount crossing: if the client
                // swapped the directory for a symlink since the fstatat, this fails (ELOOP).
                let opened = fsx::open_beneath(parent_fd, Path::new(&name), true)
                    .and_then(|fd| fsx::stat_fd(&fd).map(|st| (fd, st)));
                match opened.and_then(|(fd, st)| list(fd, &st)) {
                    Ok(frame) => {
                        stats.dirs += 1;
                        rel.push(&name);
                        stack.push(frame);
                        if stack.len() > WALK_FDS {
                            let i = stack.len() - WALK_FDS - 1;
                            stack[i].fd = None;
                        }
                    }
                    Err(Errno::ENOENT | Errno::ELOOP | Errno::ENOTDIR) => {}
                    Err(e) => stats.error(&rel.join(&name), e),
                }
                continue;
            }
            nix::libc::S_IFREG => What::File,
            nix::libc::S_IFLNK => What::Symlink,
            _ => continue,
        };
        let owner_ok = st.st_uid == rules.user || Some(st.st_uid) == rules.admin;
        if !owner_ok || st.st_dev != rules.dev || st.st_mtime >= rules.report_before {
            continue;
        }
        let candidate = Candidate {
            rel: rel.join(&name),
            what,
            key: (st.st_ino, st.st_mtime, st.st_mtime_nsec),
            mtime: st.st_mtime,
            size: u64::try_from(st.st_size).unwrap_or(0),
        };
        let due = st.st_mtime < rules.delete_before && may_delete(&candidate);
        let done = if !due {
            Done::Kept
        } else if dry_run {
            Done::WouldDelete
        } else {
            // Never a directory (no AT_REMOVEDIR); a name swapped in since the fstatat is one
            // the client could have removed itself: it needs write access to this directory.
            match unlinkat(
                Some(parent_fd),
                name.as_os_str(),
                UnlinkatFlags::NoRemoveDir,
            ) {
                Ok(()) => Done::Deleted,
                Err(Errno::ENOENT) => continue,
                Err(e) => Done::Failed(e),
            }
        };
        on(candidate, done);
    }
    stats
}

/// After leaving `done`, makes sure the frame now on top has a descriptor: opened again
/// through `done`'s `..` when it was given up, and only if it is still the same inode.
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
    match fsx::reopen_parent(&child, top.id) {
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
    use nix::fcntl::OFlag;
    use nix::sys::stat::Mode;
    use std::os::unix::fs::MetadataExt;

    fn tmp(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("sftpctl-ret-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn set_mtime(fd: Option<i32>, name: &Path, unix: i64) {
        let t = nix::sys::time::TimeSpec::new(unix, 0);
        nix::sys::stat::utimensat(
            fd,
            name,
            &t,
            &t,
            nix::sys::stat::UtimensatFlags::NoFollowSymlink,
        )
        .unwrap();
    }

    fn rules_for(dir: &Path, now: i64) -> Rules {
        let md = std::fs::metadata(dir).unwrap();
        Rules {
            user: md.uid(),
            admin: None,
            dev: md.dev(),
            report_before: now - 20 * 86_400,
            delete_before: now - 30 * 86_400,
        }
    }

    fn run(data: &Path, rules: &Rules, dry_run: bool) -> (Vec<(PathBuf, Done)>, Stats) {
        let fd = fsx::open_dir_path(data).unwrap();
        let mut seen = Vec::new();
        let stats = walk(&fd, rules, dry_run, &mut |_| true, &mut |c, d| {
            seen.push((c.rel, d))
        });
        seen.sort_by(|a, b| a.0.cmp(&b.0));
        (seen, stats)
    }

    #[test]
    fn old_files_and_links_go_new_ones_stay_nothing_is_followed() {
        let base = tmp("basic");
        let data = base.join("data");
        let outside = base.join("outside");
        std::fs::create_dir_all(data.join("sub")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        let now = crate::watch::time::now_unix();
        let old = now - 40 * 86_400;
        for (p, t) in [
            (data.join("old"), old),
            (data.join("sub/old"), old),
            (data.join("warned"), now - 25 * 86_400),
            (data.join("new"), now),
            (outside.join("target"), old),
        ] {
            std::fs::write(&p, "x").unwrap();
            set_mtime(None, &p, t);
        }
        std::os::unix::fs::symlink(&outside, data.join("dirlink")).unwrap();
        std::os::unix::fs::symlink(outside.join("target"), data.join("newlink")).unwrap();
        std::os::unix::fs::symlink(outside.join("target"), data.join("oldlink")).unwrap();
        set_mtime(None, &data.join("oldlink"), old);
        set_mtime(None, &data.join("sub"), old); // directories are never removed
        let rules = rules_for(&data, now);
        let (dry, _) = run(&data, &rules, true);
        assert!(data.join("old").exists(), "dry run deleted");
        let (seen, stats) = run(&data, &rules, false);
        assert_eq!(dry.len(), seen.len());
        assert_eq!(
            seen,
            vec![
                (PathBuf::from("old"), Done::Deleted),
                (PathBuf::from("oldlink"), Done::Deleted),
                (PathBuf::from("sub/old"), Done::Deleted),
                (PathBuf::from("warned"), Done::Kept),
            ]
        );
        assert_eq!(stats.dirs, 2);
        assert!(data.join("new").exists() && data.join("newlink").exists());
        assert!(data.join("dirlink").exists() && data.join("sub").is_dir());
        assert!(
            outside.join("target").exists(),
            "a link's target was touched"
        );
        // Another owner: left alone.
        let mut other = rules;
        other.user = other.user.wrapping_add(1);
        set_mtime(None, &data.join("new"), old);
        assert!(run(&data, &other, false).0.is_empty());
        assert!(data.join("new").exists());
        std::fs::remove_dir_all(&base).unwrap();
    }

    fn open_fds() -> usize {
        std::fs::read_dir("/proc/self/fd").unwrap().count()
    }

    #[test]
    fn trees_deeper_than_path_max_are_swept_with_few_descriptors() {
        let base = tmp("deep");
        let data = base.join("data");
        std::fs::create_dir(&data).unwrap();
        let depth = 2600; // "d/" x 2600 = 5200 bytes > PATH_MAX
        let now = crate::watch::time::now_unix();
        let mut fd = fsx::open_dir_path(&data).unwrap();
        for _ in 0..depth {
            nix::sys::stat::mkdirat(Some(fd.as_raw_fd()), "d", Mode::from_bits_truncate(0o755))
                .unwrap();
            let f = nix::fcntl::openat(
                Some(fd.as_raw_fd()),
                "f",
                OFlag::O_CREAT | OFlag::O_WRONLY | OFlag::O_CLOEXEC,
                Mode::from_bits_truncate(0o644),
            )
            .unwrap();
            nix::unistd::close(f).unwrap();
            set_mtime(Some(fd.as_raw_fd()), Path::new("f"), now - 40 * 86_400);
            fd = fsx::open_beneath(fd.as_raw_fd(), Path::new("d"), true).unwrap();
        }
        drop(fd);
        let rules = rules_for(&data, now);
        let top = fsx::open_dir_path(&data).unwrap();
        let before = open_fds();
        let mut most = 0;
        let mut deleted = 0;
        let mut longest = 0;
        let stats = walk(&top, &rules, false, &mut |_| true, &mut |c, d| {
            most = most.max(open_fds());
            assert_eq!(d, Done::Deleted);
            deleted += 1;
            longest = longest.max(c.rel.as_os_str().len());
        });
        assert!(
            stats.errors.is_empty() && stats.stopped.is_none(),
            "{stats:?}"
        );
        assert_eq!(deleted, depth);
        assert!(longest > 4096);
        assert!(most <= before + WALK_FDS + 4, "{most} descriptors open");
        drop(top);
        std::process::Command::new("rm")
            .arg("-rf")
            .arg(&base)
            .status()
            .unwrap();
    }

    /// The client's swaps, done deterministically in the middle of the walk (from
    /// `may_delete`, while the walk holds its descriptors): every directory of the tree is
    /// moved away and replaced by a symlink to a directory outside full of old files of the
    /// same owner. The walk finishes in the directories it holds and never goes outside.
    #[test]
    fn directories_swapped_for_symlinks_mid_walk_never_lead_outside() {
        let base = tmp("swap");
        let data = base.join("data");
        let outside = base.join("outside");
        std::fs::create_dir_all(&outside).unwrap();
        let now = crate::watch::time::now_unix();
        let old = now - 40 * 86_400;
        for i in 0..50 {
            let p = outside.join(format!("o{i}"));
            std::fs::write(&p, "x").unwrap();
            set_mtime(None, &p, old);
        }
        for d in ["a", "b", "c", "a/x", "b/y"] {
            std::fs::create_dir_all(data.join(d)).unwrap();
            for i in 0..5 {
                let p = data.join(d).join(format!("f{i}"));
                std::fs::write(&p, "x").unwrap();
                set_mtime(None, &p, old);
            }
        }
        let rules = rules_for(&data, now);
        let fd = fsx::open_dir_path(&data).unwrap();
        let mut swapped = false;
        let mut deleted = 0;
        let stats = walk(
            &fd,
            &rules,
            false,
            &mut |_| {
                if !swapped {
                    swapped = true;
                    for d in ["a/x", "b/y", "a", "b", "c"] {
                        let moved = data.join(format!("{}.moved", d.replace('/', "-")));
                        std::fs::rename(data.join(d), moved).unwrap();
                        std::os::unix::fs::symlink(&outside, data.join(d)).unwrap();
                    }
                }
                true
            },
            &mut |_, d| {
                assert_eq!(d, Done::Deleted);
                deleted += 1;
            },
        );
        assert!(swapped && deleted > 0, "{stats:?}");
        let left = std::fs::read_dir(&outside).unwrap().count();
        assert_eq!(left, 50, "files outside were deleted");
        std::fs::remove_dir_all(&base).unwrap();
    }

    /// An ancestor whose descriptor the walk gave up is moved elsewhere in the tree while the
    /// walk is below it: climbing back finds another inode through `..` and stops there.
    #[test]
    fn a_moved_ancestor_stops_the_walk_instead_of_climbing_elsewhere() {
        let base = tmp("climb");
        let data = base.join("data");
        let mut deep = data.clone();
        for i in 0..40 {
            deep.push(format!("l{i}"));
        }
        std::fs::create_dir_all(&deep).unwrap();
        let now = crate::watch::time::now_unix();
        std::fs::write(deep.join("f"), "x").unwrap();
        set_mtime(None, &deep.join("f"), now - 40 * 86_400);
        let rules = rules_for(&data, now);
        let fd = fsx::open_dir_path(&data).unwrap();
        let mut moved = false;
        let stats = walk(
            &fd,
            &rules,
            true,
            &mut |_| {
                let l5: PathBuf = (0..=5).map(|i| format!("l{i}")).collect();
                std::fs::rename(data.join(&l5), data.join("moved")).unwrap();
                moved = true;
                true
            },
            &mut |_, _| {},
        );
        assert!(moved);
        let why = stats.stopped.expect("the walk went on");
        assert!(why.contains("was moved during the walk"), "{why}");
        std::fs::remove_dir_all(&base).unwrap();
    }
}
