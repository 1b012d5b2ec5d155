//! One module per subcommand. Each builds a Plan (provisioning) or runs a loop (watch).

mod account;
mod add_user;
mod apply;
mod doctor;
mod generate_assets;
pub(crate) mod init;
mod init_undo;
mod key;
mod list_users;
mod perms_watch;
mod policy;
mod refresh_log_links;
mod remove_user;
mod report;
mod retention;
mod set;
mod watch;
mod welcome;

use std::io::Write;

use anyhow::Result;

use crate::cli::{Cli, Command};
use crate::config::Config;
use crate::plan::Plan;

/// Loads the config and runs the chosen subcommand.
pub fn run(cli: Cli) -> Result<()> {
    // Needs no config: it only describes the command line.
    if let Command::GenerateAssets(args) = &cli.command {
        return generate_assets::run(&args.out);
    }
    let (config, source) = Config::load(cli.config.as_deref())?;
    // The watcher must keep mailing when a zone vanishes from the tz database (tzdata
    // renames, Debian 13's tzdata-legacy split): UTC and a warning. Every other command
    // refuses an unknown `mail.timezone` so that a typo shows at once.
    // The host's zone (mail.timezone = "") is looked up on the first time formatted
    // (`tz::local`): most commands print none, and the lookup lists the tz database.
    if !config.mail.timezone.is_empty() {
        let zone = match &cli.command {
            Command::Watch(_) => crate::tz::Zone::for_config(&config.mail.timezone),
            _ => crate::tz::Zone::strict(&config.mail.timezone)
                .map_err(|e| crate::error::usage(format!("{}: {e:#}", source.path.display())))?,
        };
        crate::tz::install(zone);
    }
    // On a forwarding host the collector must learn of every account change before the
    // account's first session (the announcement travels in the same queue, ahead of it).
    let announce = match &cli.command {
        Command::AddUser(_) | Command::RemoveUser(_) => true,
        Command::Apply(args) => !args.dry_run.dry_run,
        Command::RefreshLogLinks(args) => !args.dry_run,
        _ => false,
    };
    let result = dispatch(cli.command, &config, &source);
    if announce && result.is_ok() && config.forward.enabled() {
        if let Err(e) = crate::fleet::announce::send(&config) {
            eprintln!(
                "sftpctl: warning: the collector was not told of this host's accounts: {e:#} (run `sftpctl announce` once rsyslog runs)"
            );
        }
    }
    result
}

fn dispatch(command: Command, config: &Config, source: &crate::config::Source) -> Result<()> {
    match command {
        Command::Announce => announce(config),
        Command::Init(args) if args.undo => init_undo::run(config, source, args.dry_run.dry_run),
        Command::Init(args) => init::run(config, source, &args),
        Command::AddUser(args) => add_user::run(config, &args),
        Command::RefreshLogLinks(args) => refresh_log_links::run(config, args.dry_run),
        Command::Doctor(args) => doctor::run(config, source, &args),
        Command::ListUsers(args) => list_users::run(config, &args),
        Command::RemoveUser(args) => remove_user::run(config, &args),
        Command::Key(command) => key::run(config, &command),
        Command::Passwd(args) => account::passwd(config, &args),
        Command::Lock(args) => account::lock(config, &args, true),
        Command::Unlock(args) => account::lock(config, &args, false),
        Command::SetEmail(args) => account::set_email(config, &args),
        Command::Set(args) => set::run(config, &args),
        Command::Welcome(args) => welcome::run(config, &args),
        Command::Policy(command) => policy::run(config, source, &command),
        Command::Retention(args) => retention::run(config, &args),
        Command::Apply(args) => apply::run(config, &args),
        Command::Watch(args) => watch::run(config, source, &args),
        Command::Report(args) => report::run(config, &args),
        Command::PermsWatch => perms_watch::run(config),
        Command::GenerateAssets(_) => unreachable!("handled before the config is loaded"),
    }
}

/// `sftpctl announce`.
fn announce(config: &Config) -> Result<()> {
    crate::error::require_root("sftpctl announce")?;
    if !config.forward.enabled() {
        return Err(crate::error::usage(
            "this host does not forward (forward.to is empty): there is no collector to tell",
        ));
    }
    crate::fleet::announce::send(config)?;
    println!(
        "sftpctl announce: {} SFTP account(s) sent to the collector through {}",
        crate::fleet::announce::sftp_accounts(config).len(),
        config.forward.log_socket.display()
    );
    Ok(())
}

/// Prints a plan (`--dry-run`) or applies it, then says what happened.
pub(crate) fn finish(command: &str, plan: Plan, dry_run: bool) -> Result<()> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if dry_run {
        writeln!(out, "sftpctl {command} --dry-run: the plan")?;
        plan.print_dry_run(&mut out)?;
        return Ok(());
    }
    let outcome = plan.apply(&mut out)?;
    for note in &outcome.notes {
        writeln!(out, "{note}")?;
    }
    if !outcome.manual.is_empty() {
        writeln!(
            out,
            "note: no service manager is running (systemd is not PID 1), so these did not run; the files are in place and valid, run them once it does: {}",
            outcome.manual.join("; ")
        )?;
    }
    if !outcome.failed.is_empty() {
        anyhow::bail!(
            "sftpctl {command}: {} step(s) failed and were reverted on their own (the others were applied): {}",
            outcome.failed.len(),
            outcome.failed.join("; ")
        );
    }
    if outcome.changed == 0 {
        writeln!(
            out,
            "sftpctl {command}: nothing to change, the system already matches ({} steps checked)",
            outcome.unchanged
        )?;
    } else {
        writeln!(
            out,
            "sftpctl {command}: {} change(s) applied, {} already in place",
            outcome.changed, outcome.unchanged
        )?;
    }
    Ok(())
}
