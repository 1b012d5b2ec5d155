//! internal-sftp's flags per access mode and quota state. Request names are those of
//! sftp-server.c's handler tables (the same in OpenSSH 9.2 and 10.0). Allow-lists where a
//! mode is narrower than read-only: a request type a later OpenSSH adds is refused there.

use crate::policy::values::Access;

/// A drop box: create and write files and directories, see its own uploads' attributes.
/// No read, opendir/readdir, remove, rmdir, rename, posix-rename, copy-data, hardlink, symlink.
pub const UPLOAD: &[&str] = &[
    "open", "close", "write", "lstat", "stat", "fstat", "realpath", "mkdir", "setstat", "fsetstat",
];

/// [`UPLOAD`] at a full quota: nothing that adds bytes, nothing that changes a file.
pub const UPLOAD_FULL: &[&str] = &["open", "close", "lstat", "stat", "fstat", "realpath"];

/// Fetch a file by its name; no listing (with `-R`: open refuses write flags).
pub const DOWNLOAD: &[&str] = &[
    "open", "close", "read", "lstat", "stat", "fstat", "realpath",
];

/// What a read-write client loses at a full quota: everything that adds bytes or a file
/// (setstat can grow a file by its size attribute), while download, remove, rmdir and rename
/// still work so that it can make room.
pub const NO_WRITE: &[&str] = &[
    "write",
    "mkdir",
    "symlink",
    "hardlink",
    "copy-data",
    "setstat",
    "fsetstat",
    "lsetstat",
];

/// internal-sftp's flags after `-l` and `-u` for this mode, or `None`: the jail group's
/// ForceCommand.
pub fn sftp_flags(access: Access, quota_full: bool) -> Option<String> {
    match (access, quota_full) {
        (Access::ReadWrite, false) => None,
        (Access::ReadWrite, true) => Some(format!("-P {}", NO_WRITE.join(","))),
        (Access::ReadOnly, _) => Some("-R".into()),
        (Access::DownloadOnly, _) => Some(format!("-R -p {}", DOWNLOAD.join(","))),
        (Access::UploadOnly, false) => Some(format!("-p {}", UPLOAD.join(","))),
        (Access::UploadOnly, true) => Some(format!("-p {}", UPLOAD_FULL.join(","))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every name internal-sftp knows: the list the watcher parses refusals with.
    const KNOWN: &[&str] = crate::watch::parse::REQUEST_NAMES;

    #[test]
    fn every_listed_request_exists() {
        for name in UPLOAD
            .iter()
            .chain(UPLOAD_FULL)
            .chain(DOWNLOAD)
            .chain(NO_WRITE)
        {
            assert!(KNOWN.contains(name), "{name} is no internal-sftp request");
        }
    }

    #[test]
    fn modes_refuse_what_they_say() {
        for refused in [
            "read",
            "opendir",
            "readdir",
            "remove",
            "rmdir",
            "rename",
            "posix-rename",
            "copy-data",
            "hardlink",
            "symlink",
        ] {
            assert!(!UPLOAD.contains(&refused), "upload-only allows {refused}");
        }
        for refused in ["opendir", "readdir", "write", "remove"] {
            assert!(
                !DOWNLOAD.contains(&refused),
                "download-only allows {refused}"
            );
        }
        assert!(!UPLOAD_FULL.contains(&"write") && !UPLOAD_FULL.contains(&"mkdir"));
        for kept in [
            "read",
            "remove",
            "rmdir",
            "rename",
            "posix-rename",
            "opendir",
        ] {
            assert!(!NO_WRITE.contains(&kept), "a full quota refuses {kept}");
        }
    }

    #[test]
    fn flags() {
        assert_eq!(sftp_flags(Access::ReadWrite, false), None);
        assert_eq!(sftp_flags(Access::ReadOnly, true).as_deref(), Some("-R"));
        assert!(sftp_flags(Access::DownloadOnly, false)
            .unwrap()
            .starts_with("-R -p open,"));
        assert!(sftp_flags(Access::ReadWrite, true)
            .unwrap()
            .starts_with("-P write,"));
    }
}
