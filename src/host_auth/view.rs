//! The host view: the main sshd config as if sftpctl had never touched it, in a temporary
//! file that `sshd -T -f` reads.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::{effective, sshd_t, AuthSettings, MATCH_FENCE};
use crate::config::Config;
use crate::fenced;
use crate::openssh;

/// The host's sshd configuration without sftpctl's blocks, in a private temporary file
/// (removed on drop) that `sshd -T -f` can read.
pub struct HostView {
    path: PathBuf,
}

impl HostView {
    pub fn write(config: &Config) -> Result<HostView> {
        let main_path = &config.sshd.config;
        let main = fs_err::read_to_string(main_path).with_context(|| {
            format!(
                "cannot read {} to learn what sshd allows today",
                main_path.display()
            )
        })?;
        let text = host_view_text(&main, &config.sshd.dropin);
        let path = std::env::temp_dir().join(format!(
            "sftpctl-host-view-{}-{}.conf",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
        ));
        // create_new: O_EXCL, so a planted file or symlink at that name is never written through.
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        let view = HostView { path };
        file.write_all(text.as_bytes())
            .with_context(|| format!("cannot write {}", view.path.display()))?;
        Ok(view)
    }

    /// The guarded settings sshd gives `name` without sftpctl's blocks.
    pub fn effective(&self, config: &Config, name: &str) -> Result<AuthSettings> {
        let result = effective(&config.sshd.binary, &self.path, name);
        if result.is_err() {
            // The copy's errors name a temporary file; the host's own file says it better.
            if let Err(e) = sshd_t(&config.sshd.binary, &config.sshd.config, name) {
                bail!(
                    "sshd rejects its configuration as it is now, before sftpctl changes anything: {e}"
                );
            }
        }
        result.with_context(|| {
            format!(
                "cannot learn what the host's sshd config (without sftpctl's blocks) allows {name}"
            )
        })
    }
}

impl Drop for HostView {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The main config as if sftpctl had never touched it: the fenced Match block is dropped, and
/// every `Include` pattern that covers the drop-in is replaced by the files it matches today
/// except the drop-in (absolute paths, in glob order, as sshd reads them).
pub fn host_view_text(main: &str, dropin: &Path) -> String {
    let dropin_s = dropin.to_str().unwrap_or("");
    let mut out = String::new();
    for line in fenced::remove(main, MATCH_FENCE).lines() {
        let mut words = line.split_whitespace();
        let is_include = words
            .next()
            .is_some_and(|k| k.eq_ignore_ascii_case("include"));
        if !is_include {
            out.push_str(line);
            out.push('\n');
            continue;
        }
        let mut kept = Vec::new();
        for pattern in words {
            let pattern = pattern.trim_matches('"');
            let abs = if pattern.starts_with('/') {
                pattern.to_string()
            } else {
                format!("/etc/ssh/{pattern}")
            };
            if openssh::glob_match(&abs, dropin_s) {
                kept.extend(expand_glob(&abs).into_iter().filter(|p| p != dropin_s));
            } else {
                kept.push(abs);
            }
        }
        if kept.is_empty() {
            out.push_str(&format!("# sftpctl host view: nothing left of: {line}\n"));
        } else {
            out.push_str(&format!("Include {}\n", kept.join(" ")));
        }
    }
    out
}

/// The existing paths an absolute glob pattern matches, sorted (glob(3) order in the C
/// locale). `*` and `?` do not match a leading dot, as in glob(3).
fn expand_glob(pattern: &str) -> Vec<String> {
    let wild = |c: &str| c.contains(['*', '?', '[']);
    let mut paths = vec![String::new()];
    for comp in pattern.split('/').filter(|c| !c.is_empty()) {
        let mut next = Vec::new();
        for base in &paths {
            if !wild(comp) {
                next.push(format!("{base}/{comp}"));
                continue;
            }
            let dir = if base.is_empty() { "/" } else { base.as_str() };
            let Ok(entries) = std::fs::read_dir(dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let name = entry.file_name();
                let Some(name) = name.to_str() else { continue };
                if name.starts_with('.') && !comp.starts_with('.') {
                    continue;
                }
                if openssh::glob_match(comp, name) {
                    next.push(format!("{base}/{name}"));
                }
            }
        }
        paths = next;
    }
    paths.retain(|p| Path::new(p).exists());
    paths.sort();
    paths
}
