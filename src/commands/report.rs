//! `sftpctl report`: per-session summaries of the logs, filtered, printed to stdout.

use std::io::Write;
use std::path::PathBuf;
use std::sync::mpsc::{channel, sync_channel, Receiver, Sender, SyncSender};

use anyhow::{Context, Result};

use crate::cli::ReportArgs;
use crate::config::Config;
use crate::error::usage;
use crate::history::csv;
use crate::history::filter::{Action, Filter, PathGlob};
use crate::history::logins::{self as login_history, LoginFilter};
use crate::history::logs::{open_log, rotated_logs, OpenLog};
use crate::history::stream::parse_logs;
use crate::history::when::parse_when;
use crate::watch::mail::Templates;
use crate::watch::parse::Parsed;
use crate::watch::report::Report;
use crate::watch::run::untrusted_summary;
use crate::watch::session::{Ending, Finished, Limits, Sessions};
use crate::watch::time::now_unix;
use crate::watch::trust::Trust;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Text,
    Json,
    Csv,
}

pub fn run(config: &Config, args: &ReportArgs) -> Result<()> {
    let wall = now_unix();
    let format = format_of(args)?;
    let filter = filter_of(args, wall)?;
    let files: Vec<PathBuf> = if args.files.is_empty() {
        rotated_logs(&config.rsyslog.log_file)?
    } else {
        args.files.clone()
    };
    if files.iter().filter(|f| f.as_os_str() == "-").count() > 1 {
        return Err(usage("standard input (-) can be read only once"));
    }
    // Every file is opened before anything is printed: a refused one changes nothing.
    let mut inputs = Vec::with_capacity(files.len());
    for f in files {
        let log = open_log(&f)?;
        inputs.push((f, log));
    }
    if args.logins {
        return logins(config, args, format, &filter, inputs, wall);
    }
    let templates = match format {
        Format::Text => Some(Templates::load(config.watch.template_dir.as_deref())?),
        _ => None,
    };
    let limits = Limits::from_config(&config.watch);
    let mut sessions = Sessions::new(limits, &format!("/{}", config.data_dir));
    sessions.trust = Trust::system(config);
    // Finished sessions become reports on the printing thread, not the one reading lines.
    sessions.defer_reports();
    let prefix = sessions.data_prefix().to_string();
    let idle = config.watch.idle_timeout_secs;
    std::thread::scope(|scope| -> Result<()> {
        // Reports are filtered, formatted and written on a thread of their own, in order; the
        // sessions they were made of come back to be freed where they were allocated.
        let (to_printer, printing) = sync_channel::<Printed>(4);
        let (to_free, spent) = channel::<Vec<Finished>>();
        let (filter, prefix) = (&filter, prefix.as_str());
        let printer =
            scope.spawn(move || print_all(format, templates, filter, prefix, printing, to_free));
        let applied = apply_all(
            inputs,
            wall,
            args.trust_unverified,
            idle,
            &mut sessions,
            &to_printer,
            &spent,
        );
        drop(to_printer);
        // A printer that stopped (output closed) has the error that matters.
        let printed = printer.join().expect("the printing thread panicked");
        printed.and(applied)
    })?;
    let stats = sessions.stats;
    if stats.unreadable_lines > 0 {
        eprintln!(
            "sftpctl report: {} internal-sftp lines could not be read (cut or garbled)",
            stats.unreadable_lines
        );
    }
    if stats.untrusted_lines > 0 {
        eprintln!("{}", untrusted_summary("sftpctl report", &sessions));
    }
    Ok(())
}

/// `report --logins`: the logins of the same logs, with the filters that apply to them.
fn logins(
    config: &Config,
    args: &ReportArgs,
    format: Format,
    filter: &Filter,
    inputs: Vec<(PathBuf, OpenLog)>,
    wall: i64,
) -> Result<()> {
    let fleet = crate::fleet::accounts::HostAccounts::on_collector(config);
    let found = login_history::read(inputs, wall, args.trust_unverified, fleet.as_ref())?;
    let keep = LoginFilter {
        users: filter.users.clone(),
        since: filter.since,
        until: filter.until,
    };
    let shown: Vec<_> = found.logins.iter().filter(|l| keep.keeps(l)).collect();
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    match format {
        Format::Text => login_history::write_text(&mut out, &shown)?,
        Format::Json => login_history::write_json(&mut out, &shown)?,
        Format::Csv => login_history::write_csv(&mut out, &shown)?,
    }
    out.flush().context("cannot write")?;
    if found.untrusted > 0 {
        let why = found
            .last_untrusted
            .map(|w| format!(" (the last: {})", w.describe()))
            .unwrap_or_default();
        eprintln!(
            "sftpctl report: {} sshd line(s) were not sent by root's sshd and were skipped{why}",
            found.untrusted
        );
    }
    if found.unannounced > 0 {
        eprintln!(
            "sftpctl report: {} login(s) of hosts that never announced their accounts were skipped (run `sftpctl announce` there)",
            found.unannounced
        );
    }
    Ok(())
}

/// What the session table hands the printing thread.
enum Printed {
    Sessions(Vec<Finished>),
    /// Every log was read to its end: close the output (JSON's `]`).
    Done,
}

/// Finished sessions handed over at a time.
const SESSIONS_AT_ONCE: usize = 64;

/// One Sessions table across all files: a session that a rotation split continues in the
/// next file. Lines come parsed, in order, from `stream`. Sessions the printer is done with
/// come back on `spent` and are dropped here, on the thread whose malloc arena holds them.
fn apply_all(
    inputs: Vec<(PathBuf, OpenLog)>,
    wall: i64,
    trust_unverified: bool,
    idle: u64,
    sessions: &mut Sessions,
    printer: &SyncSender<Printed>,
    spent: &Receiver<Vec<Finished>>,
) -> Result<()> {
    let stopped = || anyhow::anyhow!("the output stopped");
    let mut clock = i64::MIN;
    // Stays empty: finished sessions are deferred (taken below).
    let mut reports = Vec::new();
    let mut finished = Vec::new();
    // A collector's log holds each forwarded line twice (docs/fleet.md).
    let skip_repeats = sessions.trust.hosts.is_some();
    parse_logs(inputs, wall, skip_repeats, |batch| {
        for (sender, parsed) in batch.drain(..) {
            if let Parsed::Sftp(l) = &parsed {
                clock = clock.max(l.time.unwrap_or(clock));
            }
            sessions.apply_from(sender, parsed, trust_unverified, clock, &mut reports);
        }
        finished.append(&mut sessions.take_finished());
        if finished.len() >= SESSIONS_AT_ONCE {
            let ready = std::mem::take(&mut finished);
            printer
                .send(Printed::Sessions(ready))
                .map_err(|_| stopped())?;
            spent.try_iter().for_each(drop);
        }
        Ok(())
    })?;
    sessions.expire(clock, idle, &mut reports);
    sessions.finish_all(Ending::EndOfInput, &mut reports);
    debug_assert!(reports.is_empty());
    finished.append(&mut sessions.take_finished());
    printer
        .send(Printed::Sessions(finished))
        .map_err(|_| stopped())?;
    printer.send(Printed::Done).map_err(|_| stopped())
}

/// The printing thread: every report through the filter to one buffered stdout; each batch of
/// sessions goes back on `spent` once its reports are made (or is freed here when the other
/// side has stopped).
fn print_all(
    format: Format,
    templates: Option<Templates>,
    filter: &Filter,
    data_prefix: &str,
    reports: Receiver<Printed>,
    spent: Sender<Vec<Finished>>,
) -> Result<()> {
    let stdout = std::io::stdout();
    let mut printer = Printer {
        out: std::io::BufWriter::with_capacity(1 << 20, stdout.lock()),
        format,
        templates,
        printed: 0,
    };
    printer.start()?;
    for message in reports {
        match message {
            Printed::Sessions(batch) => {
                for (session, ending) in &batch {
                    let report = Report::from_session(session, *ending, data_prefix);
                    printer.print(filter, report)?;
                }
                let _ = spent.send(batch);
            }
            Printed::Done => return printer.end(),
        }
    }
    // The reading side stopped with an error, which is what is reported; the output is left
    // as far as it got.
    printer.out.flush().context("cannot write")
}

fn format_of(args: &ReportArgs) -> Result<Format> {
    let format = match args.format.as_deref() {
        None if args.json => return Ok(Format::Json),
        None | Some("text") => Format::Text,
        Some("json") => Format::Json,
        Some("csv") => Format::Csv,
        Some(other) => {
            return Err(usage(format!(
                "--format {other:?} is not a format: use text, json or csv"
            )))
        }
    };
    if args.json && format != Format::Json {
        return Err(usage("--json means --format json: give one of them"));
    }
    Ok(format)
}

fn filter_of(args: &ReportArgs, now: i64) -> Result<Filter> {
    if args.logins && (args.path.is_some() || !args.actions.is_empty()) {
        return Err(usage(
            "--path and --action select sessions' entries: leave them out with --logins",
        ));
    }
    for u in &args.users {
        crate::names::check_user_name("--user", u).map_err(|e| usage(format!("{e:#}")))?;
    }
    let when = |flag: &str, v: &Option<String>| -> Result<Option<i64>> {
        v.as_deref()
            .map(|v| parse_when(v, now).map_err(|e| usage(format!("--{flag} {e}"))))
            .transpose()
    };
    let since = when("since", &args.since)?;
    let until = when("until", &args.until)?;
    if let (Some(s), Some(u)) = (since, until) {
        if s >= u {
            return Err(usage(
                "--since is not before --until: nothing could match; swap them",
            ));
        }
    }
    let path = args
        .path
        .as_deref()
        .map(PathGlob::parse)
        .transpose()
        .map_err(usage)?;
    let actions = args
        .actions
        .iter()
        .map(|a| Action::parse(a))
        .collect::<Result<Vec<_>, _>>()
        .map_err(usage)?;
    Ok(Filter {
        users: args.users.clone(),
        since,
        until,
        path,
        actions,
    })
}

struct Printer<W: Write> {
    out: W,
    format: Format,
    templates: Option<Templates>,
    printed: u64,
}

impl<W: Write> Printer<W> {
    fn start(&mut self) -> Result<()> {
        match self.format {
            Format::Json => self.out.write_all(b"[").context("cannot write"),
            Format::Csv => csv::write_header(&mut self.out),
            Format::Text => Ok(()),
        }
    }

    fn print(&mut self, filter: &Filter, report: Report) -> Result<()> {
        let Some(report) = filter.apply(report) else {
            return Ok(());
        };
        match (&self.templates, self.format) {
            (Some(t), _) => {
                if self.printed > 0 {
                    writeln!(self.out, "\n{}\n", "=".repeat(72)).context("cannot write")?;
                }
                let text = t.render_text(&report)?;
                self.out
                    .write_all(text.trim_end().as_bytes())
                    .and_then(|()| self.out.write_all(b"\n"))
                    .context("cannot write")?;
            }
            (None, Format::Csv) => csv::write_rows(&mut self.out, &report)?,
            (None, _) => {
                if self.printed > 0 {
                    self.out.write_all(b",").context("cannot write")?;
                }
                self.out.write_all(b"\n").context("cannot write")?;
                serde_json::to_writer(&mut self.out, &report).context("cannot write")?;
            }
        }
        self.printed += 1;
        Ok(())
    }

    fn end(&mut self) -> Result<()> {
        if self.format == Format::Json {
            self.out.write_all(b"\n]\n").context("cannot write")?;
        }
        self.out.flush().context("cannot write")
    }
}
