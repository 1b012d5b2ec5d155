//! Mount options of the filesystem holding the jails: without `nosuid` a set-id file that
//! a client uploaded takes effect for every local account until it is repaired; without
//! `nodev` a device node there would too (clients cannot make one, root or a restore can).

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// One line of `/proc/self/mountinfo`, the parts that matter here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// `major:minor` of the filesystem.
    pub dev: (u64, u64),
    pub mount_point: PathBuf,
    /// Per-mount options (`rw,nosuid,nodev,relatime`).
    pub options: Vec<String>,
}

impl Mount {
    pub fn has(&self, option: &str) -> bool {
        self.options.iter().any(|o| o == option)
    }

    /// `nosuid` and `nodev` that are missing.
    pub fn missing_safety_options(&self) -> Vec<&'static str> {
        ["nosuid", "nodev"]
            .into_iter()
            .filter(|o| !self.has(o))
            .collect()
    }
}

/// Mount points are written with `\040`-style octal escapes for space, tab, newline, `\`.
fn unescape(field: &str) -> PathBuf {
    use std::os::unix::ffi::OsStringExt;
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    PathBuf::from(std::ffi::OsString::from_vec(out))
}

/// Parses `/proc/self/mountinfo` text; malformed lines are skipped.
pub fn parse(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split(' ').collect();
            let (major, minor) = f.get(2)?.split_once(':')?;
            Some(Mount {
                dev: (major.parse().ok()?, minor.parse().ok()?),
                mount_point: unescape(f.get(4)?),
                options: f.get(5)?.split(',').map(str::to_string).collect(),
            })
        })
        .collect()
}

/// The mount that holds `path` (resolved, as the kernel sees it): the last-mounted entry with
/// the longest mount point that is a prefix of it and the same device.
pub fn containing(mounts: &[Mount], path: &Path, dev: (u64, u64)) -> Option<Mount> {
    let mut best: Option<&Mount> = None;
    for m in mounts {
        if !path.starts_with(&m.mount_point) {
            continue;
        }
        let better = match best {
            None => true,
            // Later lines are mounted later: on an equal mount point they hide earlier ones.
            Some(b) => m.mount_point.as_os_str().len() >= b.mount_point.as_os_str().len(),
        };
        if better {
            best = Some(m);
        }
    }
    best.filter(|m| m.dev == dev).cloned()
}

/// The mount holding `path` on this host.
pub fn mount_of(path: &Path) -> Result<Option<Mount>> {
    let real = std::fs::canonicalize(path)
        .with_context(|| format!("cannot resolve {}", path.display()))?;
    let md = std::fs::metadata(&real).with_context(|| format!("cannot stat {}", real.display()))?;
    let dev = (
        nix::sys::stat::major(md.dev()),
        nix::sys::stat::minor(md.dev()),
    );
    let text = std::fs::read_to_string("/proc/self/mountinfo")
        .context("cannot read /proc/self/mountinfo")?;
    Ok(containing(&parse(&text), &real, dev))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
30 22 0:25 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc rw
41 22 254:16 / /srv/sftp\\040root rw,nosuid,nodev,relatime shared:20 - ext4 /dev/vdb rw
42 22 254:32 / /srv/other rw,nosuid shared:21 - ext4 /dev/vdc rw
";

    #[test]
    fn finds_the_mount_of_a_path_and_its_missing_options() {
        let mounts = parse(SAMPLE);
        assert_eq!(mounts.len(), 4);
        let root = containing(&mounts, Path::new("/srv/sftpctl/jails"), (254, 0)).unwrap();
        assert_eq!(root.mount_point, Path::new("/"));
        assert_eq!(root.missing_safety_options(), vec!["nosuid", "nodev"]);
        let jails = containing(&mounts, Path::new("/srv/sftp root/alice"), (254, 16)).unwrap();
        assert_eq!(jails.mount_point, Path::new("/srv/sftp root"));
        assert!(jails.missing_safety_options().is_empty());
        let other = containing(&mounts, Path::new("/srv/other/x"), (254, 32)).unwrap();
        assert_eq!(other.missing_safety_options(), vec!["nodev"]);
        // A device that does not match (a bind mount over it, a stale table): no answer.
        assert!(containing(&mounts, Path::new("/srv/other/x"), (1, 1)).is_none());
    }

    #[test]
    fn this_hosts_root_is_found() {
        assert!(mount_of(Path::new("/")).unwrap().is_some());
    }
}
