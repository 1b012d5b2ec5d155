//! Authorized keys outside the jails: sshd (StrictModes) ignores a key file when it, or any
//! directory above it, is writable by someone other than root or the user.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::doctor::{collapse, meta_text, Check, Ctx};
use crate::plan::fsops::{inspect, Kind, Meta};
use crate::plan::steps::{Dir, FileMeta};

const AREA: &str = "keys";

pub fn checks(ctx: &mut Ctx) -> Vec<Check> {
    let dir = ctx.config.sshd.authorized_keys_dir.clone();
    let mut out = chain(&dir);
    if out.iter().any(|c| c.message.contains("is missing")) {
        return out;
    }
    let mut problems = Vec::new();
    let mut names: Vec<String> = ctx.users.clone();
    names.extend(ctx.admin.clone());
    let mut keys = 0;
    for name in &names {
        let uid = ctx.account(name).map(|a| a.uid);
        problems.extend(key_file(&dir.join(name), name, uid, &mut keys));
    }
    out.extend(collapse(problems, || {
        Check::ok(
            AREA,
            "key files",
            format!(
                "{} account(s), {keys} key(s): every key file root-owned, readable, not group/world-writable",
                names.len()
            ),
        )
    }));
    out
}

/// Every directory from / down to the keys dir: root-owned, not group/world-writable.
fn chain(dir: &Path) -> Vec<Check> {
    let mut out = Vec::new();
    let mut parts: Vec<&Path> = dir.ancestors().collect();
    parts.reverse();
    for part in parts {
        let own = part == dir;
        let md = match inspect(part) {
            Ok((Kind::Dir, Some(md))) => md,
            Ok((Kind::Symlink, _)) => match std::fs::metadata(part) {
                // sshd resolves the path first (realpath): the target is what counts.
                Ok(md) if md.is_dir() => md,
                _ => {
                    out.push(Check::fail(
                        AREA,
                        "keys dir",
                        format!("{} is a dangling symlink", part.display()),
                        "fix sshd.authorized_keys_dir",
                    ));
                    return out;
                }
            },
            Ok((Kind::Missing, _)) => {
                let mut c = Check::fail(
                    AREA,
                    "keys dir",
                    format!(
                        "{} is missing: no jailed user can log in with a key",
                        part.display()
                    ),
                    "run sftpctl init",
                );
                if own {
                    c = c.repair(Dir::root(part, 0o755));
                }
                out.push(c);
                return out;
            }
            Ok((kind, _)) => {
                out.push(Check::fail(
                    AREA,
                    "keys dir",
                    format!("{} is a {kind:?}, not a directory", part.display()),
                    "fix sshd.authorized_keys_dir",
                ));
                return out;
            }
            Err(e) => {
                out.push(Check::warn(
                    AREA,
                    "keys dir",
                    format!("{e:#}"),
                    "run as root",
                ));
                return out;
            }
        };
        if !crate::jail::root_owned_not_writable(md.uid(), md.mode()) {
            let mut c = Check::fail(
                AREA,
                "keys dir",
                format!(
                    "{} has {}: with StrictModes sshd ignores every key file below it",
                    part.display(),
                    meta_text(&md)
                ),
                format!("chown root {0} && chmod go-w {0}", part.display()),
            );
            if own {
                c = c.repair(Dir::root(part, 0o755));
            }
            out.push(c);
        }
    }
    if out.is_empty() {
        out.push(Check::ok(
            AREA,
            "keys dir",
            format!(
                "{} and every directory above it are root-owned and not group/world-writable",
                dir.display()
            ),
        ));
    }
    out
}

/// One user's key file. Problems only.
fn key_file(path: &Path, name: &str, uid: Option<u32>, keys: &mut usize) -> Option<Check> {
    let label = format!("keys {name}");
    let repair = FileMeta {
        path: path.to_path_buf(),
        meta: Meta::root(0o644),
    };
    let fix = format!("chown root:root {0} && chmod 0644 {0}", path.display());
    let md = match inspect(path) {
        Ok((Kind::File, Some(md))) => md,
        Ok((Kind::Missing, _)) => {
            return Some(Check::warn(
                AREA,
                label,
                format!(
                    "{} does not exist: {name} cannot log in with a key",
                    path.display()
                ),
                format!("sftpctl add-user {name} --key FILE adds one"),
            ))
        }
        Ok((kind, _)) => {
            return Some(Check::fail(
                AREA,
                label,
                format!(
                    "{} is a {kind:?}, not a regular file; sftpctl does not follow it",
                    path.display()
                ),
                "replace it by a regular file holding the keys",
            ))
        }
        Err(e) => return Some(Check::warn(AREA, label, format!("{e:#}"), "run as root")),
    };
    let mode = md.mode() & 0o7777;
    let owner_ok = md.uid() == 0 || Some(md.uid()) == uid;
    if !owner_ok || mode & 0o022 != 0 {
        return Some(
            Check::fail(
                AREA,
                label,
                format!(
                    "{} has {}: with StrictModes sshd ignores it, so {name} cannot log in with a key",
                    path.display(),
                    meta_text(&md)
                ),
                fix,
            )
            .repair(repair),
        );
    }
    if md.uid() == 0 && mode & 0o004 == 0 {
        return Some(
            Check::fail(
                AREA,
                label,
                format!(
                    "{} has {}: sshd reads it as {name}, who cannot",
                    path.display(),
                    meta_text(&md)
                ),
                fix,
            )
            .repair(repair),
        );
    }
    let text = match std::fs::read(path) {
        Ok(b) => String::from_utf8_lossy(&b).into_owned(),
        Err(e) => {
            return Some(Check::warn(
                AREA,
                label,
                format!("cannot read {}: {e}", path.display()),
                "run as root",
            ))
        }
    };
    match crate::keys::parse_text(&text) {
        Ok(k) if k.is_empty() => Some(Check::warn(
            AREA,
            label,
            format!(
                "{} holds no key: {name} cannot log in with a key",
                path.display()
            ),
            format!("sftpctl add-user {name} --key FILE adds one"),
        )),
        Ok(k) => {
            *keys += k.len();
            if md.uid() != 0 || mode != 0o644 {
                Some(
                    Check::warn(
                        AREA,
                        label,
                        format!(
                            "{} has {}; sftpctl keeps key files root:root 0644",
                            path.display(),
                            meta_text(&md)
                        ),
                        fix,
                    )
                    .repair(repair),
                )
            } else {
                None
            }
        }
        Err(e) => Some(Check::warn(
            AREA,
            label,
            format!("{}: {e:#}; sshd skips such lines", path.display()),
            "fix or remove the line by hand",
        )),
    }
}
