//! `passwd`, `lock`, `unlock`, `set-email`: changes to one managed account.

use std::io::{BufRead, IsTerminal, Write};

use anyhow::{Context, Result};

use crate::accounts::require_managed;
use crate::cli::{NameArgs, PasswdArgs, SetEmailArgs};
use crate::commands::finish;
use crate::config::Config;
use crate::error::{require_root, usage};
use crate::plan::account_steps::{KillSessions, SetLocked, SetPassword};
use crate::plan::{Journal, Plan, Step};
use crate::policy::expiry;
use crate::policy::values::Day;
use crate::registry;

pub fn passwd(config: &Config, args: &PasswdArgs) -> Result<()> {
    require_root("sftpctl passwd")?;
    require_managed(config, &args.name)?;
    let password = read_password(std::io::stdin().is_terminal())?;
    SetPassword {
        name: args.name.clone(),
        password,
    }
    .apply(&mut Journal::default())?;
    println!("sftpctl passwd: password of {} set", args.name);
    Ok(())
}

pub fn lock(config: &Config, args: &NameArgs, locked: bool) -> Result<()> {
    let command = if locked { "lock" } else { "unlock" };
    require_root(&format!("sftpctl {command}"))?;
    require_managed(config, &args.name)?;
    let name = &args.name;
    let settings = registry::load(config, name)?;
    if !locked {
        if let expiry::State::Expired { day } = expiry::state(settings.expires, Day::today()) {
            return Err(usage(format!(
                "{name} expired at the end of {day} (UTC), so unlocking would not let it log in and nothing was changed: extend it with `sftpctl set {name} expires=YYYY-MM-DD` (or expires=never), then run `sftpctl unlock {name}` if it is still locked"
            )));
        }
    }
    let mut plan = Plan::new();
    plan.push(SetLocked {
        config: config.clone(),
        name: name.clone(),
        locked,
    });
    if locked {
        plan.push(KillSessions { name: name.clone() });
    } else {
        // The lock held the expiry field: the client's own expiry comes back.
        expiry::steps(&mut plan, config, name, &settings)?;
    }
    finish(command, plan, args.dry_run.dry_run)?;
    if !locked && !args.dry_run.dry_run {
        // The idle lock counts from here, so the next `policy run` does not lock it again.
        expiry::idle::restart_clock(config, name)?;
    }
    if let Some(note) = penalty_note(config) {
        eprintln!("{note}");
    }
    Ok(())
}

/// On OpenSSH >= 9.8: the refused logins of a locked account penalize its client's address,
/// which sshd then refuses for a while whoever connects from it, also after `unlock`.
fn penalty_note(config: &Config) -> Option<String> {
    let version = crate::openssh::detect_version(&config.sshd.binary).ok()?;
    version.has_penalties().then(|| {
        format!(
            "sftpctl: note: OpenSSH {version} refuses, for a while, every connection from an address whose logins failed (PerSourcePenalties): a locked account's client, and every client behind the same NAT address, may be refused also right after unlock; sshd.penalty_exempt in sftpctl.toml exempts addresses, sftpctl doctor shows the settings"
        )
    })
}

pub fn set_email(config: &Config, args: &SetEmailArgs) -> Result<()> {
    require_root("sftpctl set-email")?;
    require_managed(config, &args.name)?;
    let email = if args.address.is_empty() {
        None
    } else {
        registry::check_email(&args.address).map_err(|e| usage(format!("{e:#}")))?;
        Some(args.address.clone())
    };
    let mut settings = registry::load(config, &args.name)?;
    settings.email = email;
    let mut plan = Plan::new();
    registry::dir_steps(&mut plan, config)?;
    plan.push(registry::file_step(config, &args.name, &settings)?);
    finish("set-email", plan, false)
}

/// Reads a password: on a terminal, prompted twice without echo; otherwise one line of
/// standard input. Never from argv, never echoed, never logged.
pub fn read_password(prompt: bool) -> Result<String> {
    let password = if prompt {
        let first = prompt_hidden("New password: ")?;
        let second = prompt_hidden("Repeat it: ")?;
        if first != second {
            return Err(usage("the two passwords differ; nothing was changed"));
        }
        first
    } else {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("cannot read the password from standard input")?;
        line.trim_end_matches(['\n', '\r']).to_string()
    };
    if password.is_empty() {
        return Err(usage("empty password: give one line on standard input"));
    }
    if password.chars().any(|c| c.is_control()) {
        return Err(usage("the password must not hold control characters"));
    }
    Ok(password)
}

fn prompt_hidden(prompt: &str) -> Result<String> {
    use nix::sys::termios::{tcgetattr, tcsetattr, LocalFlags, SetArg};
    let stdin = std::io::stdin();
    let saved = tcgetattr(&stdin).context("cannot read the terminal settings")?;
    let mut quiet = saved.clone();
    quiet.local_flags.remove(LocalFlags::ECHO);
    eprint!("{prompt}");
    std::io::stderr().flush().ok();
    tcsetattr(&stdin, SetArg::TCSANOW, &quiet).context("cannot turn off echo")?;
    let mut line = String::new();
    let read = stdin.lock().read_line(&mut line);
    let _ = tcsetattr(&stdin, SetArg::TCSANOW, &saved);
    eprintln!();
    read.context("cannot read the password")?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}
