//! Account expiry: shadow's expire field of each jailed user matches its `expires` setting,
//! as written for the `UsePAM` sshd runs with (docs/policy.md). An account locked by
//! `sftpctl lock` holds the lock's day instead, and is left to `unlock`.

use crate::doctor::{collapse, Check, Ctx};
use crate::plan::account_steps::LOCK_EXPIRE;
use crate::policy::expiry;
use crate::registry;

const AREA: &str = "expiry";

pub fn checks(ctx: &mut Ctx) -> Vec<Check> {
    let config = ctx.config;
    let shadow = match crate::accounts::read_shadow(config) {
        Ok(s) => s,
        Err(e) => {
            return vec![Check::warn(
                AREA,
                "shadow expiry",
                format!("{e:#}: account expiry not checked"),
                "run sftpctl doctor as root",
            )]
        }
    };
    let mut problems = Vec::new();
    let mut with_expiry = 0;
    for name in &ctx.users {
        let label = format!("expiry of {name}");
        let Some(entry) = shadow.get(name) else {
            continue; // the accounts area reports a missing shadow line
        };
        if entry.locked() && entry.expire == Some(LOCK_EXPIRE) {
            continue;
        }
        let settings = match registry::load(config, name) {
            Ok(s) => s,
            Err(e) => {
                problems.push(Check::fail(
                    AREA,
                    &label,
                    format!("{e:#}"),
                    format!(
                        "correct or remove {}",
                        registry::path(config, name).display()
                    ),
                ));
                continue;
            }
        };
        with_expiry += usize::from(settings.expires.is_some());
        let step = match expiry::expiry_step(config, name, &settings) {
            Ok(s) => s,
            Err(e) => {
                problems.push(Check::warn(
                    AREA,
                    &label,
                    format!("{e:#}"),
                    "fix sshd's configuration, then run sftpctl doctor again",
                ));
                continue;
            }
        };
        if entry.expire == step.field {
            continue;
        }
        let have = match entry.expire {
            Some(f) => format!("shadow's account expiry field is {f}"),
            None => "shadow has no account expiry".to_string(),
        };
        let want = match (settings.expires, step.field) {
            (Some(day), Some(f)) => format!(
                "its settings say expires={day}, which is field {f} with this sshd's UsePAM"
            ),
            _ => "its settings say it never expires".to_string(),
        };
        let fix = match settings.expires {
            Some(day) => format!(
                "usermod -e {} {name}, or sftpctl set {name} expires={day}",
                step.field.unwrap_or_default()
            ),
            None => format!(
                "usermod -e '' {name}, or sftpctl set {name} expires=YYYY-MM-DD to keep an expiry"
            ),
        };
        problems.push(Check::fail(AREA, &label, format!("{have}, {want}"), fix).repair(step));
    }
    let n = ctx.users.len();
    collapse(problems, || {
        Check::ok(
            AREA,
            "shadow expiry",
            format!(
                "{n} jailed account(s) match their settings ({with_expiry} with an expiry date)"
            ),
        )
    })
}
