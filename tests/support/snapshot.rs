//! A comparable picture of everything sftpctl could change, to assert "changed nothing".

use std::collections::BTreeMap;
use std::fs;
use std::hash::{Hash, Hasher};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

/// Host files sftpctl must never touch when its config redirects every path.
const HOST_FILES: &[&str] = &[
    "/etc/ssh/sshd_config",
    "/etc/pam.d/sshd",
    "/etc/rsyslog.conf",
    "/etc/sftpctl/sftpctl.toml",
];
/// Host dirs whose entry names must not change.
const HOST_DIRS: &[&str] = &[
    "/etc/ssh/sshd_config.d",
    "/etc/rsyslog.d",
    "/etc/logrotate.d",
    "/etc/sftpctl",
];
/// Account databases: only lines mentioning the sandbox's prefix are compared.
const ACCOUNT_FILES: &[&str] = &[
    "/etc/passwd",
    "/etc/group",
    "/etc/shadow",
    "/etc/gshadow",
    "/etc/subuid",
    "/etc/subgid",
];

/// key → description (type, mode, owner, inode, mtime, content hash; small text inline).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot(pub BTreeMap<String, String>);

fn hash(bytes: &[u8]) -> u64 {
    // SipHash with fixed keys: deterministic within a test binary, enough to see a change.
    let mut h = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut h);
    h.finish()
}

fn describe(path: &Path, meta: &fs::Metadata) -> String {
    let ft = meta.file_type();
    let common = format!(
        "mode={:o} uid={} gid={} ino={}",
        meta.mode(),
        meta.uid(),
        meta.gid(),
        meta.ino()
    );
    if ft.is_dir() {
        // A dir's mtime is left out: it only says an entry came or went, and the entries
        // themselves are compared.
        format!("dir {common}")
    } else if ft.is_symlink() {
        let target = fs::read_link(path)
            .map(|t| t.display().to_string())
            .unwrap_or_default();
        format!("symlink {common} -> {target}")
    } else if ft.is_file() {
        let bytes = fs::read(path).unwrap_or_default();
        let inline = match std::str::from_utf8(&bytes) {
            Ok(t) if t.len() <= 4096 => format!("\n{t}"),
            _ => String::new(),
        };
        format!(
            "file {common} nlink={} mtime={}.{:09} size={} hash={:016x}{inline}",
            meta.nlink(),
            meta.mtime(),
            meta.mtime_nsec(),
            meta.len(),
            hash(&bytes)
        )
    } else if ft.is_socket() {
        format!("socket {common} nlink={}", meta.nlink())
    } else {
        format!("other {common}")
    }
}

impl Snapshot {
    /// Walks `dir` (not following symlinks, skipping `dir/run` and the files in `dir/log`) and
    /// reads the host's account lines that contain `prefix`.
    pub fn take(dir: &Path, prefix: &str, names: &[&str]) -> Snapshot {
        let mut map = BTreeMap::new();
        let run = dir.join("run");
        // rsyslogd creates and appends to the sandbox's sftp log whenever a session's lines
        // arrive, which can be after the command under test started: daemon output, like run/.
        let log = dir.join("log");
        for entry in walkdir::WalkDir::new(dir)
            .follow_links(false)
            .sort_by_file_name()
            .into_iter()
            .filter_entry(|e| e.path() != run)
        {
            let entry = entry.unwrap_or_else(|e| panic!("snapshot walk: {e}"));
            let meta = entry
                .path()
                .symlink_metadata()
                .unwrap_or_else(|e| panic!("stat {}: {e}", entry.path().display()));
            if meta.is_file() && entry.path().starts_with(&log) {
                continue;
            }
            map.insert(
                entry.path().display().to_string(),
                describe(entry.path(), &meta),
            );
        }
        for file in ACCOUNT_FILES {
            let text = fs::read_to_string(file).unwrap_or_default();
            let mentions = |l: &str| {
                l.contains(prefix)
                    || names.iter().any(|n| {
                        let mut fields = l.split(':');
                        fields.next() == Some(n)
                            || l.split(':')
                                .nth(3)
                                .is_some_and(|members| members.split(',').any(|m| m == *n))
                    })
            };
            for (n, line) in text.lines().filter(|l| mentions(l)).enumerate() {
                let name = line.split(':').next().unwrap_or("");
                map.insert(format!("{file}#{name}#{n}"), line.to_string());
            }
        }
        for file in HOST_FILES {
            let v = match fs::read(file) {
                Ok(b) => format!("hash={:016x}", hash(&b)),
                Err(e) => format!("unreadable: {:?}", e.kind()),
            };
            map.insert(file.to_string(), v);
        }
        for d in HOST_DIRS {
            let mut names: Vec<String> = fs::read_dir(d)
                .map(|rd| {
                    rd.flatten()
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .collect()
                })
                .unwrap_or_default();
            names.sort();
            map.insert(format!("{d}/"), names.join(" "));
        }
        let mails: Vec<String> = fs::read_dir("/var/mail")
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.contains(prefix))
                    .collect()
            })
            .unwrap_or_default();
        map.insert("/var/mail/".into(), mails.join(" "));
        Snapshot(map)
    }

    /// Human-readable differences, one entry per changed key.
    pub fn diff(&self, after: &Snapshot) -> Vec<String> {
        let mut out = Vec::new();
        for (k, v) in &self.0 {
            match after.0.get(k) {
                None => out.push(format!("removed {k}: {v}")),
                Some(w) if w != v => {
                    out.push(format!("changed {k}:\n  before: {v}\n  after:  {w}"))
                }
                Some(_) => {}
            }
        }
        for (k, w) in &after.0 {
            if !self.0.contains_key(k) {
                out.push(format!("added {k}: {w}"));
            }
        }
        out
    }

    /// Panics with the differences unless `after` equals `self`.
    #[track_caller]
    pub fn assert_same(&self, after: &Snapshot, context: &str) {
        let d = self.diff(after);
        assert!(d.is_empty(), "{context}: changed\n{}", d.join("\n"));
    }

    /// The same picture without file mtimes: for "restored byte for byte" (a rollback that
    /// writes the original content back changes the mtime but nothing else).
    pub fn without_mtimes(&self) -> Snapshot {
        Snapshot(
            self.0
                .iter()
                .map(|(k, v)| {
                    let v = match v.find(" mtime=") {
                        Some(i) => {
                            let end = v[i + 1..].find(' ').map_or(v.len(), |j| i + 1 + j);
                            format!("{}{}", &v[..i], &v[end..])
                        }
                        None => v.clone(),
                    };
                    (k.clone(), v)
                })
                .collect(),
        )
    }

    /// The described entries whose key contains `needle` (for targeted assertions).
    pub fn entries(&self, needle: &str) -> Vec<(&String, &String)> {
        self.0.iter().filter(|(k, _)| k.contains(needle)).collect()
    }
}
