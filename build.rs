//! Names the git commit in `sftpctl --version`: `git rev-parse --short=12 HEAD`, plus
//! `-dirty` when `git status --porcelain` lists changes. Without git (a source tarball) the
//! commit comes from `SFTPCTL_GIT_COMMIT`, else "unknown". Only std: no build dependency.

use std::path::{Path, PathBuf};
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    Some(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn main() {
    println!("cargo:rerun-if-env-changed=SFTPCTL_GIT_COMMIT");
    let commit = match git(&["rev-parse", "--short=12", "HEAD"]) {
        Some(hash) if !hash.is_empty() => {
            watch_git_files();
            let dirty = git(&["status", "--porcelain", "--untracked-files=no"])
                .is_some_and(|s| !s.is_empty());
            if dirty {
                format!("{hash}-dirty")
            } else {
                hash
            }
        }
        _ => std::env::var("SFTPCTL_GIT_COMMIT")
            .ok()
            .filter(|c| {
                !c.is_empty() && c.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '-')
            })
            .unwrap_or_else(|| "unknown".into()),
    };
    println!("cargo:rustc-env=SFTPCTL_BUILD_COMMIT={commit}");
}

/// Re-run only when HEAD moves (checkout, commit) or the index changes (staging, commit),
/// not on every build. Works in a linked worktree, whose HEAD lives in its own git dir and
/// whose branch refs live in the common one.
fn watch_git_files() {
    let abs = |p: String| -> PathBuf {
        let p = PathBuf::from(p);
        if p.is_absolute() {
            p
        } else {
            Path::new(&std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default()).join(p)
        }
    };
    let Some(git_dir) = git(&["rev-parse", "--git-dir"]).map(abs) else {
        return;
    };
    let common = git(&["rev-parse", "--git-common-dir"])
        .map(abs)
        .unwrap_or_else(|| git_dir.clone());
    let mut watched = vec![git_dir.join("HEAD"), git_dir.join("index")];
    if let Some(reference) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watched.push(common.join(&reference));
        watched.push(common.join("packed-refs"));
    }
    for path in watched.into_iter().filter(|p| p.exists()) {
        println!("cargo:rerun-if-changed={}", path.display());
    }
}
