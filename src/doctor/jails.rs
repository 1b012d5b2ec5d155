//! The chroot chain and the jail layout: the rules sshd enforces before a chrooted login
//! ("bad ownership or modes for chroot directory component"), and the data and dev dirs
//! sftpctl creates (see [`crate::jail`]).

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::doctor::{collapse, meta_text, Check, Ctx};
use crate::jail::{Jail, DATA_MODE};
use crate::plan::fsops::{inspect, Kind};
use crate::plan::steps::Dir;

const AREA: &str = "jails";

pub fn checks(ctx: &mut Ctx) -> Vec<Check> {
    let mut out = root_chain(ctx);
    if out
        .iter()
        .any(|c| c.name == "jail root" && c.message.contains("missing"))
    {
        return out;
    }
    let mut problems = Vec::new();
    for name in &ctx.users {
        problems.extend(layout(ctx, name));
    }
    if ctx.all_users {
        problems.extend(orphans(ctx));
    }
    let n = ctx.users.len();
    out.extend(collapse(problems, || {
        let what = if ctx.all_users {
            format!("{n} jail(s)")
        } else if ctx.users.is_empty() {
            "no jailed user in scope".to_string()
        } else {
            format!("jail {}", ctx.users.join(","))
        };
        Check::ok(
            AREA,
            "jail layout",
            format!("{what}: jail and dev dirs root-owned 0755, data dirs owned by the user, group {}, mode {:04o}", ctx.config.group, DATA_MODE),
        )
    }));
    out
}

/// sshd's rule for every component of the ChrootDirectory above the jails: root-owned, not
/// group- or world-writable. Ancestors are reported (a host-wide change is the admin's
/// call); the jail root and its dev dir are repaired.
fn root_chain(ctx: &Ctx) -> Vec<Check> {
    let root = &ctx.config.root;
    let mut out = Vec::new();
    let mut ancestors: Vec<&Path> = root.ancestors().skip(1).collect();
    ancestors.reverse();
    for dir in ancestors {
        let (kind, md) = match inspect(dir) {
            Ok(x) => x,
            Err(e) => {
                out.push(Check::warn(
                    AREA,
                    "chroot chain",
                    format!("{e:#}"),
                    "run as root",
                ));
                continue;
            }
        };
        let md = match (kind, md) {
            (Kind::Dir, Some(md)) => md,
            (Kind::Symlink, _) => {
                // sshd follows it: what counts is the target. Reading metadata only.
                match std::fs::metadata(dir) {
                    Ok(md) if md.is_dir() => {
                        out.push(Check::warn(
                            AREA,
                            "chroot chain",
                            format!(
                                "{} is a symlink; sshd checks the directory it points to",
                                dir.display()
                            ),
                            "prefer a real path for root in the config",
                        ));
                        md
                    }
                    _ => {
                        out.push(Check::fail(
                            AREA,
                            "chroot chain",
                            format!("{} is a symlink to no directory", dir.display()),
                            "fix the path of root in the config",
                        ));
                        continue;
                    }
                }
            }
            (Kind::Missing, _) => {
                out.push(Check::fail(
                    AREA,
                    "chroot chain",
                    format!("{} is missing", dir.display()),
                    "run sftpctl init",
                ));
                return out;
            }
            _ => {
                out.push(Check::fail(
                    AREA,
                    "chroot chain",
                    format!("{} is not a directory", dir.display()),
                    "choose another root in the config",
                ));
                return out;
            }
        };
        if !crate::jail::root_owned_not_writable(md.uid(), md.mode()) {
            out.push(Check::fail(
                AREA,
                "chroot chain",
                format!(
                    "{} has {}: sshd refuses every chrooted login below it (\"bad ownership or modes for chroot directory component\")",
                    dir.display(),
                    meta_text(&md)
                ),
                format!("chown root {0} && chmod go-w {0}", dir.display()),
            ));
        }
    }
    out.extend(root_dir(root, "jail root", "run sftpctl init"));
    out.extend(root_dir(
        &ctx.config.root_dev_dir(),
        "jail root dev",
        "run sftpctl init",
    ));
    if !out.iter().any(|c| c.status != crate::doctor::Status::Ok) {
        out.push(Check::ok(
            AREA,
            "chroot chain",
            format!(
                "every component of {} is root-owned and not group/world-writable",
                root.display()
            ),
        ));
    }
    out
}

/// A root-owned 0755 directory sftpctl made; a problem comes with its repair.
fn root_dir(path: &Path, name: &str, missing_fix: &str) -> Option<Check> {
    match inspect(path) {
        Err(e) => Some(Check::warn(AREA, name, format!("{e:#}"), "run as root")),
        Ok((Kind::Missing, _)) => Some(
            Check::fail(
                AREA,
                name,
                format!("{} is missing", path.display()),
                missing_fix,
            )
            .repair(Dir::root(path, 0o755)),
        ),
        Ok((Kind::Dir, Some(md))) => {
            let mode = md.mode() & 0o7777;
            if !crate::jail::root_owned_not_writable(md.uid(), mode) {
                Some(
                    Check::fail(
                        AREA,
                        name,
                        format!(
                            "{} has {}: sshd refuses a chroot in or below a directory that is not root-owned or is group/world-writable",
                            path.display(),
                            meta_text(&md)
                        ),
                        format!("chown root:root {0} && chmod 0755 {0}", path.display()),
                    )
                    .repair(Dir::root(path, 0o755)),
                )
            } else if mode != 0o755 || md.gid() != 0 {
                Some(
                    Check::warn(
                        AREA,
                        name,
                        format!(
                            "{} has {}, sftpctl made it root:root 0755",
                            path.display(),
                            meta_text(&md)
                        ),
                        format!("chown root:root {0} && chmod 0755 {0}", path.display()),
                    )
                    .repair(Dir::root(path, 0o755)),
                )
            } else {
                None
            }
        }
        Ok((kind, _)) => Some(Check::fail(
            AREA,
            name,
            format!("{} is a {kind:?}, not a directory", path.display()),
            format!("move {} away, then run sftpctl init", path.display()),
        )),
    }
}

/// The jail of one user: jail dir, data dir, dev dir. Problems only.
pub fn layout(ctx: &Ctx, name: &str) -> Vec<Check> {
    let jail = Jail::new(ctx.config, name);
    let label = format!("jail {name}");
    let mut out = Vec::new();
    let redo = format!("sftpctl add-user {name} recreates the jail");
    match inspect(&jail.dir) {
        Ok((Kind::Missing, _)) => {
            out.push(
                Check::fail(
                    AREA,
                    &label,
                    format!("{} is missing: {name} cannot log in", jail.dir.display()),
                    &redo,
                )
                .repair(Dir::root(&jail.dir, 0o755)),
            );
        }
        Ok((Kind::Dir, _)) => out.extend(root_dir(&jail.dir, &label, &redo)),
        Ok((Kind::Symlink, _)) => {
            out.push(Check::fail(
                AREA,
                &label,
                format!(
                    "{} is a symlink; sftpctl never follows it as root",
                    jail.dir.display()
                ),
                format!("remove the symlink, then run sftpctl add-user {name}"),
            ));
            return out;
        }
        Ok((kind, _)) => {
            out.push(Check::fail(
                AREA,
                &label,
                format!("{} is a {kind:?}, not a directory", jail.dir.display()),
                format!("move it away, then run sftpctl add-user {name}"),
            ));
            return out;
        }
        Err(e) => {
            out.push(Check::warn(AREA, &label, format!("{e:#}"), "run as root"));
            return out;
        }
    }
    out.extend(data_dir(ctx, name, &jail));
    out.extend(root_dir(&jail.dev, &format!("jail {name} dev"), &redo));
    out
}

fn data_dir(ctx: &Ctx, name: &str, jail: &Jail) -> Option<Check> {
    let label = format!("jail {name} data");
    let want = Dir {
        path: jail.data.clone(),
        user: name.to_string(),
        group: ctx.config.group.clone(),
        mode: DATA_MODE,
    };
    let uid = ctx.account(name).map(|a| a.uid);
    let fix = format!(
        "chown {name}:{0} {1} && chmod {2:04o} {1}",
        ctx.config.group,
        jail.data.display(),
        DATA_MODE
    );
    match inspect(&jail.data) {
        Err(e) => Some(Check::warn(AREA, label, format!("{e:#}"), "run as root")),
        Ok((Kind::Missing, _)) => Some(
            Check::fail(
                AREA,
                label,
                format!(
                    "{} is missing: {name} has nowhere to write",
                    jail.data.display()
                ),
                fix,
            )
            .repair(want),
        ),
        Ok((Kind::Dir, Some(md))) => {
            let ok = Some(md.uid()) == uid
                && Some(md.gid()) == ctx.group_gid
                && md.mode() & 0o7777 == DATA_MODE;
            if ok {
                return None;
            }
            let mut check = Check::fail(
                AREA,
                label,
                format!(
                    "{} has {}, want owner {name}:{} mode {:04o} ({name} must write, the admin's group too, setgid keeps the group, and no other local account may enter{})",
                    jail.data.display(),
                    meta_text(&md),
                    ctx.config.group,
                    DATA_MODE,
                    if md.mode() & 0o007 != 0 {
                        format!(": with mode {:04o} every local account reads {name}'s files", md.mode() & 0o7777)
                    } else {
                        String::new()
                    }
                ),
                fix,
            );
            if uid.is_some() && ctx.group_gid.is_some() {
                check = check.repair(want);
            }
            Some(check)
        }
        Ok((kind, _)) => Some(Check::fail(
            AREA,
            label,
            format!(
                "{} is a {kind:?}, not a directory; sftpctl never follows it as root",
                jail.data.display()
            ),
            format!("move it away, then run sftpctl add-user {name}"),
        )),
    }
}

/// Directories in the root that belong to no jailed account.
fn orphans(ctx: &Ctx) -> Vec<Check> {
    let Ok(entries) = std::fs::read_dir(&ctx.config.root) else {
        return vec![];
    };
    let mut names: Vec<String> = entries
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != "dev" && !n.starts_with('.') && !ctx.all_jailed.contains(n))
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|n| {
            Check::warn(
                AREA,
                format!("jail {n}"),
                format!(
                    "{} belongs to no member of {}: a removed user's leftover, or a user taken out of the group",
                    ctx.config.root.join(&n).display(),
                    ctx.config.jail_group
                ),
                "archive and remove it, or add the account back to the group",
            )
        })
        .collect()
}
