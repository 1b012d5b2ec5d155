//! Drift: the files sftpctl manages still say what `sftpctl init` would write now (the same
//! rendering, [`crate::setup::managed_files`]); a difference is shown as a diff and
//! `--fix` writes the file again (followed by the validators and reloads init runs).

use crate::doctor::{collapse, Check, Ctx};
use crate::plan::fsops::{self, Kind};
use crate::plan::Step;
use crate::setup::managed_files;

const AREA: &str = "drift";

pub fn checks(ctx: &mut Ctx) -> Vec<Check> {
    let files = match managed_files(ctx.config, ctx.source) {
        Ok(f) => f.into_vec(),
        Err(e) if !ctx.is_root => {
            return vec![Check::warn(
                AREA,
                "managed files",
                format!("cannot render what sftpctl init writes: {e:#}"),
                "run sftpctl doctor as root (sshd -T reads its host keys)",
            )]
        }
        Err(e) => {
            return vec![Check::fail(
                AREA,
                "managed files",
                format!("cannot render what sftpctl init writes: {e:#}"),
                "fix what is named, then run sftpctl init",
            )]
        }
    };
    let n = files.len();
    let mut problems = Vec::new();
    for file in files {
        let label = format!("drift {}", file.path.display());
        let fix = "doctor --fix (or sftpctl init) writes it again; make local changes in the config instead";
        let (kind, md) = match fsops::inspect(&file.path) {
            Ok(x) => x,
            Err(e) => {
                problems.push(Check::warn(AREA, label, format!("{e:#}"), "run as root"));
                continue;
            }
        };
        match kind {
            Kind::Missing => {
                problems.push(
                    Check::fail(
                        AREA,
                        label,
                        format!("{} is missing", file.path.display()),
                        fix,
                    )
                    .repair(file),
                );
                continue;
            }
            Kind::File => {}
            other => {
                problems.push(Check::fail(
                    AREA,
                    label,
                    format!(
                        "{} is a {other:?}, not a regular file; sftpctl does not write through it",
                        file.path.display()
                    ),
                    format!(
                        "replace {} by a regular file, then run sftpctl init",
                        file.path.display()
                    ),
                ));
                continue;
            }
        }
        match file.is_satisfied() {
            Ok(true) => {}
            Ok(false) => {
                let diff = file.diff().ok().flatten();
                let what = if diff.is_some() {
                    "differs from what sftpctl writes (diff below)".to_string()
                } else {
                    let md = md.expect("inspected file");
                    format!(
                        "has {}, sftpctl writes it {}",
                        crate::doctor::meta_text(&md),
                        file.meta
                            .map(|m| format!("root:root mode {:04o}", m.mode))
                            .unwrap_or_default()
                    )
                };
                problems.push(
                    Check::fail(AREA, label, format!("{} {what}", file.path.display()), fix)
                        .with_diff(diff)
                        .repair(file),
                );
            }
            Err(e) => problems.push(Check::warn(AREA, label, format!("{e:#}"), "run as root")),
        }
    }
    collapse(problems, || {
        Check::ok(
            AREA,
            "managed files",
            format!("{n} file(s) say exactly what sftpctl init writes"),
        )
    })
}
