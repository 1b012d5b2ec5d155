//! The pure part: given what `fstat` said about an opened inode, may we touch it and what mode
//! should it get? No I/O here, so every rule has a unit test.

use std::fmt;

/// Bits added to a regular file: group read and write (write alone is useless for "modify":
/// editors and `sftp put` over an existing file read or truncate it).
pub const FILE_ADD: u32 = 0o060;
/// Bits added to a directory: group read, write, search, and setgid so that new entries keep
/// the shared group.
pub const DIR_ADD: u32 = 0o2070;
/// Bits removed from every file and directory: nothing in a data tree is for other accounts
/// (confidentiality, issue 9).
pub const WORLD: u32 = 0o007;
/// Bits removed from every regular file: a set-id copy of a shell uploaded by a client would
/// give any local account the client's uid or the shared group.
pub const SET_ID: u32 = S_ISUID | S_ISGID;

const S_ISUID: u32 = 0o4000;
const S_ISGID: u32 = 0o2000;

/// The kind of an inode as far as the policy cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    /// Symlink, FIFO, socket, device: never touched.
    Other,
}

impl Kind {
    /// From `st_mode`.
    pub fn of_mode(st_mode: u32) -> Kind {
        match st_mode & 0o170000 {
            0o100000 => Kind::File,
            0o040000 => Kind::Dir,
            _ => Kind::Other,
        }
    }
}

/// What `fstat` says about the opened inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Inode {
    pub kind: Kind,
    /// Permission bits including setuid/setgid/sticky (`st_mode & 0o7777`).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub nlink: u64,
    pub dev: u64,
}

/// Who may own what the watcher touches in one jail's data tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owners {
    /// The jail's user (the owner of its data dir).
    pub user: u32,
    /// The admin account, when the config names one that exists.
    pub admin: Option<u32>,
    /// `group` from the config: shared files belong to it.
    pub group: u32,
    /// Device of the data dir: nothing on another filesystem is touched.
    pub dev: u64,
}

/// Why an inode is left alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Skip {
    /// Not a regular file or a directory.
    NotFileOrDir,
    /// On another filesystem than the data dir.
    OtherDevice,
    /// Owned by neither the jail's user nor the admin (root, another client, a system user).
    ForeignOwner,
    /// Its group is not `group`: adding group bits would share it with the wrong group.
    /// (World and set-id bits are still removed: that only takes access away.)
    ForeignGroup,
    /// A setuid or setgid regular file that sftpctl may not change: another owner than the
    /// jail's user with more than one hard link (another name may live outside every data
    /// tree). A danger: doctor reports it as a failure.
    SetId,
    /// A file of the admin's with more than one hard link: another name of it may live
    /// outside every data tree.
    HardLinkedAdminFile,
}

impl Skip {
    /// A finding that needs the admin's attention at once (doctor: FAIL), not only a note.
    pub fn is_danger(self) -> bool {
        self == Skip::SetId
    }
}

impl fmt::Display for Skip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Skip::NotFileOrDir => "not a regular file or directory",
            Skip::OtherDevice => "on another filesystem",
            Skip::ForeignOwner => "owned by neither the jail's user nor the admin",
            Skip::ForeignGroup => "its group is not the shared group",
            Skip::SetId => {
                "setuid/setgid file with several hard links and another owner than the jail's user"
            }
            Skip::HardLinkedAdminFile => "admin's file with several hard links",
        })
    }
}

/// The verdict for one inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Already has exactly the bits it should.
    Fine,
    /// Needs `chmod` to this mode: the group bits added, world bits and (files) set-id bits
    /// removed.
    Fix(u32),
    Skip(Skip),
}

/// The rules, in order. Group bits are added only to the jail's user's and the admin's inodes
/// of group `group`; world bits are removed from every inode of those two owners, set-id bits
/// from every regular file that only lives in this tree (or is the user's own).
pub fn decide(inode: &Inode, owners: &Owners) -> Decision {
    let (add, remove) = match inode.kind {
        Kind::File => (FILE_ADD, WORLD | SET_ID),
        Kind::Dir => (DIR_ADD, WORLD),
        Kind::Other => return Decision::Skip(Skip::NotFileOrDir),
    };
    if inode.dev != owners.dev {
        return Decision::Skip(Skip::OtherDevice);
    }
    let by_user = inode.uid == owners.user;
    let by_admin = owners.admin == Some(inode.uid);
    let set_id = inode.kind == Kind::File && inode.mode & SET_ID != 0;
    // One name only, or the user's own: changing it cannot reach a file elsewhere that the
    // user could not chmod themselves.
    let only_here = by_user || inode.nlink == 1;
    if !by_user && !by_admin {
        if set_id {
            if only_here {
                return fix_to(inode.mode, inode.mode & !SET_ID);
            }
            return Decision::Skip(Skip::SetId);
        }
        return Decision::Skip(Skip::ForeignOwner);
    }
    if inode.kind == Kind::File && !only_here {
        // The admin's file with more links: another name may be a private file elsewhere.
        return Decision::Skip(if set_id {
            Skip::SetId
        } else {
            Skip::HardLinkedAdminFile
        });
    }
    if inode.gid != owners.group {
        let want = inode.mode & !remove;
        if want == inode.mode {
            return Decision::Skip(Skip::ForeignGroup);
        }
        return Decision::Fix(want);
    }
    fix_to(inode.mode, (inode.mode | add) & !remove)
}

fn fix_to(mode: u32, want: u32) -> Decision {
    if want == mode {
        Decision::Fine
    } else {
        Decision::Fix(want)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const USER: u32 = 1001;
    const ADMIN: u32 = 1000;
    const GROUP: u32 = 500;
    const DEV: u64 = 42;

    fn owners() -> Owners {
        Owners {
            user: USER,
            admin: Some(ADMIN),
            group: GROUP,
            dev: DEV,
        }
    }

    fn file(mode: u32) -> Inode {
        Inode {
            kind: Kind::File,
            mode,
            uid: USER,
            gid: GROUP,
            nlink: 1,
            dev: DEV,
        }
    }

    fn dir(mode: u32) -> Inode {
        Inode {
            kind: Kind::Dir,
            ..file(mode)
        }
    }

    #[test]
    fn kinds_from_st_mode() {
        assert_eq!(Kind::of_mode(0o100644), Kind::File);
        assert_eq!(Kind::of_mode(0o042775), Kind::Dir);
        assert_eq!(Kind::of_mode(0o120777), Kind::Other); // symlink
        assert_eq!(Kind::of_mode(0o010644), Kind::Other); // fifo
        assert_eq!(Kind::of_mode(0o140777), Kind::Other); // socket
        assert_eq!(Kind::of_mode(0o020666), Kind::Other); // char device
    }

    #[test]
    fn files_gain_group_read_write_and_lose_world_and_set_id_bits() {
        assert_eq!(decide(&file(0o644), &owners()), Decision::Fix(0o660));
        assert_eq!(decide(&file(0o600), &owners()), Decision::Fix(0o660));
        assert_eq!(decide(&file(0o755), &owners()), Decision::Fix(0o770));
        assert_eq!(decide(&file(0o000), &owners()), Decision::Fix(0o060));
        assert_eq!(decide(&file(0o1644), &owners()), Decision::Fix(0o1660));
        assert_eq!(decide(&file(0o666), &owners()), Decision::Fix(0o660));
        assert_eq!(decide(&file(0o2755), &owners()), Decision::Fix(0o770));
        assert_eq!(decide(&file(0o4755), &owners()), Decision::Fix(0o770));
        assert_eq!(decide(&file(0o6777), &owners()), Decision::Fix(0o770));
        assert_eq!(decide(&file(0o660), &owners()), Decision::Fine);
        assert_eq!(decide(&file(0o760), &owners()), Decision::Fine);
    }

    #[test]
    fn directories_gain_group_rwx_and_setgid_and_lose_world_bits() {
        assert_eq!(decide(&dir(0o755), &owners()), Decision::Fix(0o2770));
        assert_eq!(decide(&dir(0o2755), &owners()), Decision::Fix(0o2770));
        assert_eq!(decide(&dir(0o2775), &owners()), Decision::Fix(0o2770));
        assert_eq!(decide(&dir(0o700), &owners()), Decision::Fix(0o2770));
        assert_eq!(decide(&dir(0o1777), &owners()), Decision::Fix(0o3770));
        assert_eq!(decide(&dir(0o2770), &owners()), Decision::Fine);
    }

    #[test]
    fn the_result_is_never_open_to_others_and_owner_bits_stay() {
        for mode in 0..=0o7777u32 {
            for inode in [file(mode), dir(mode)] {
                let want = match decide(&inode, &owners()) {
                    Decision::Fix(want) => want,
                    Decision::Fine => mode,
                    Decision::Skip(s) => panic!("{mode:o} skipped: {s}"),
                };
                assert_eq!(want & WORLD, 0, "world bits left on {mode:o}");
                assert_eq!(want & 0o700, mode & 0o700, "owner bits of {mode:o}");
                assert_eq!(want & 0o1000, mode & 0o1000, "sticky bit of {mode:o}");
                if inode.kind == Kind::File {
                    assert_eq!(want & SET_ID, 0, "set-id bits left on {mode:o}");
                    assert_eq!(want & 0o070, (mode | FILE_ADD) & 0o070);
                } else {
                    assert_eq!(want & 0o6070, (mode & 0o4000) | DIR_ADD);
                }
            }
        }
    }

    #[test]
    fn admin_files_are_fixed_other_owners_are_not() {
        let admin_file = Inode {
            uid: ADMIN,
            ..file(0o644)
        };
        assert_eq!(decide(&admin_file, &owners()), Decision::Fix(0o660));
        for uid in [0, 1002, 65534] {
            let other = Inode { uid, ..file(0o644) };
            assert_eq!(
                decide(&other, &owners()),
                Decision::Skip(Skip::ForeignOwner)
            );
            let other = Inode { uid, ..dir(0o755) };
            assert_eq!(
                decide(&other, &owners()),
                Decision::Skip(Skip::ForeignOwner)
            );
        }
        let no_admin = Owners {
            admin: None,
            ..owners()
        };
        assert_eq!(
            decide(&admin_file, &no_admin),
            Decision::Skip(Skip::ForeignOwner)
        );
    }

    #[test]
    fn set_id_bits_of_other_owners_go_when_the_file_lives_only_here() {
        for uid in [0, 1002, ADMIN] {
            let single = Inode {
                uid,
                ..file(0o6755)
            };
            let want = if uid == ADMIN { 0o770 } else { 0o755 };
            assert_eq!(decide(&single, &owners()), Decision::Fix(want), "uid {uid}");
            let linked = Inode { nlink: 2, ..single };
            assert_eq!(decide(&linked, &owners()), Decision::Skip(Skip::SetId));
            assert!(Skip::SetId.is_danger());
        }
        let admin_single = Inode {
            uid: ADMIN,
            ..file(0o2755)
        };
        assert_eq!(decide(&admin_single, &owners()), Decision::Fix(0o770));
    }

    #[test]
    fn root_is_never_the_user_by_accident() {
        // A data dir owned by root is refused when the jail is registered; even if it were
        // not, a user uid of 0 only ever matches root's own files, never another owner's.
        let o = Owners {
            user: 0,
            ..owners()
        };
        let other = Inode {
            uid: 1002,
            ..file(0o644)
        };
        assert_eq!(decide(&other, &o), Decision::Skip(Skip::ForeignOwner));
    }

    #[test]
    fn wrong_group_loses_only_bits_device_and_kind_are_skipped() {
        let g = Inode {
            gid: 0,
            ..file(0o644)
        };
        assert_eq!(decide(&g, &owners()), Decision::Fix(0o640));
        let g = Inode {
            gid: 0,
            ..file(0o2750)
        };
        assert_eq!(decide(&g, &owners()), Decision::Fix(0o750));
        let g = Inode {
            gid: 0,
            ..file(0o640)
        };
        assert_eq!(decide(&g, &owners()), Decision::Skip(Skip::ForeignGroup));
        let d = Inode {
            dev: 7,
            ..file(0o644)
        };
        assert_eq!(decide(&d, &owners()), Decision::Skip(Skip::OtherDevice));
        let o = Inode {
            kind: Kind::Other,
            ..file(0o644)
        };
        assert_eq!(decide(&o, &owners()), Decision::Skip(Skip::NotFileOrDir));
    }

    #[test]
    fn hard_links_only_for_the_users_own_files() {
        let linked = Inode {
            nlink: 2,
            ..file(0o644)
        };
        assert_eq!(decide(&linked, &owners()), Decision::Fix(0o660));
        let admin_linked = Inode {
            uid: ADMIN,
            ..linked
        };
        assert_eq!(
            decide(&admin_linked, &owners()),
            Decision::Skip(Skip::HardLinkedAdminFile)
        );
        // Directories always have nlink >= 2.
        let admin_dir = Inode {
            uid: ADMIN,
            nlink: 5,
            ..dir(0o755)
        };
        assert_eq!(decide(&admin_dir, &owners()), Decision::Fix(0o2770));
    }
}
