//! `sftpctl doctor [--json] [--fix [--dry-run]] [--user NAME]`: the checks live in
//! [`crate::doctor`]; this prints them, and with `--fix` applies the repair plan and checks
//! again.

use crate::display::{visible, visible_lines};
use std::io::Write;

use anyhow::Result;
use serde_json::json;

use crate::cli::DoctorArgs;
use crate::config::{Config, Source};
use crate::doctor::{self, Check, Ctx, Options, Status, Summary};
use crate::error::{require_root, usage};

pub fn run(config: &Config, source: &Source, args: &DoctorArgs) -> Result<()> {
    if args.fix {
        require_root("sftpctl doctor --fix")?;
    }
    if let Some(name) = &args.user {
        crate::names::check_user_name("--user", name).map_err(|e| usage(format!("{e:#}")))?;
        let jailed = crate::accounts::jailed_names(config).contains(name);
        if !jailed && config.admin.as_deref() != Some(name) {
            return Err(usage(format!(
                "--user {name}: not a member of {} nor the admin; doctor checks only sftpctl's users",
                config.jail_group
            )));
        }
    }
    let opts = Options {
        user: args.user.clone(),
    };
    let mut ctx = Ctx::new(config, source, &opts);
    let mut checks = doctor::run(&mut ctx);
    if args.timings {
        print_timings(&ctx, "checks");
    }
    let stdout = std::io::stdout();
    let mut out = stdout.lock();

    if !args.fix {
        if args.json {
            write_json(
                &mut out,
                json!({ "checks": checks, "summary": Summary::of(&checks) }),
            )?;
        } else {
            print_checks(&mut out, &checks)?;
        }
        return verdict(&checks);
    }

    let before = Summary::of(&checks);
    let before_json = serde_json::to_value(&checks)?;
    if !args.json {
        print_checks(&mut out, &checks)?;
    }
    let plan = doctor::repair_plan(&mut checks, config)?;
    if args.dry_run {
        let mut text = Vec::new();
        if plan.is_empty() {
            writeln!(text, "dry run: nothing doctor can repair")?;
        } else {
            plan.print_dry_run(&mut text)?;
        }
        if args.json {
            write_json(
                &mut out,
                json!({
                    "checks": before_json,
                    "summary": before,
                    "dry_run": true,
                    "plan": String::from_utf8_lossy(&text).lines().collect::<Vec<_>>(),
                }),
            )?;
        } else {
            writeln!(out, "sftpctl doctor --fix --dry-run: the repair plan")?;
            out.write_all(&text)?;
        }
        return verdict(&checks);
    }

    let mut applied = Vec::new();
    let mut notes = Vec::new();
    let mut not_repaired = Vec::new();
    if !plan.is_empty() {
        let outcome = plan.apply(&mut applied)?;
        notes.extend(outcome.notes);
        for failed in &outcome.failed {
            notes.push(format!(
                "FAIL not repaired (the other repairs were applied): {failed}"
            ));
        }
        not_repaired = outcome.failed;
        if !outcome.manual.is_empty() {
            notes.push(format!(
                "note: no service manager is running, so these did not run; run them once it does: {}",
                outcome.manual.join("; ")
            ));
        }
    }
    let mut ctx = Ctx::new(config, source, &opts);
    let after = doctor::run(&mut ctx);
    if args.json {
        write_json(
            &mut out,
            json!({
                "before": { "checks": before_json, "summary": before },
                "repaired": String::from_utf8_lossy(&applied).lines().map(str::trim).collect::<Vec<_>>(),
                "notes": notes,
                "checks": after,
                "summary": Summary::of(&after),
            }),
        )?;
    } else {
        if applied.is_empty() {
            writeln!(out, "sftpctl doctor --fix: nothing doctor can repair")?;
        } else {
            writeln!(out, "sftpctl doctor --fix: repaired")?;
            out.write_all(visible_lines(&String::from_utf8_lossy(&applied)).as_bytes())?;
        }
        for note in &notes {
            writeln!(out, "{}", visible(note))?;
        }
        writeln!(out, "sftpctl doctor: checking again")?;
        print_checks(&mut out, &after)?;
    }
    verdict(&after)?;
    if !not_repaired.is_empty() {
        anyhow::bail!(
            "doctor --fix: {} repair(s) failed, the others were applied; see the FAIL lines above",
            not_repaired.len()
        );
    }
    Ok(())
}

fn print_checks(out: &mut dyn Write, checks: &[Check]) -> Result<()> {
    for c in checks {
        writeln!(out, "{c}")?;
        if let Some(diff) = &c.diff {
            for line in diff.lines() {
                writeln!(out, "      {}", visible(line))?;
            }
        }
    }
    writeln!(out, "{}", Summary::of(checks))?;
    Ok(())
}

fn write_json(out: &mut dyn Write, value: serde_json::Value) -> Result<()> {
    serde_json::to_writer_pretty(&mut *out, &value)?;
    writeln!(out)?;
    Ok(())
}

/// Exit 0 when nothing failed, else an error (exit 1) naming how many checks failed.
fn verdict(checks: &[Check]) -> Result<()> {
    let failed: Vec<&str> = checks
        .iter()
        .filter(|c| c.status == Status::Fail)
        .map(|c| c.name.as_str())
        .collect();
    if failed.is_empty() {
        return Ok(());
    }
    let mut names = failed
        .iter()
        .take(5)
        .copied()
        .collect::<Vec<_>>()
        .join(", ");
    if failed.len() > 5 {
        names.push_str(", ...");
    }
    anyhow::bail!(
        "doctor: {} check(s) failed ({names}); see the lines above, or run sftpctl doctor --fix --dry-run",
        failed.len()
    )
}

fn print_timings(ctx: &Ctx, what: &str) {
    let mut total = std::time::Duration::ZERO;
    for (area, took) in ctx.timings() {
        if !area.contains(' ') {
            total += *took;
        }
        eprintln!("timing: {area} {:.1} ms", took.as_secs_f64() * 1e3);
    }
    eprintln!("timing: {what} total {:.1} ms", total.as_secs_f64() * 1e3);
}
