//! `sftpctl report`: per-session summaries of a log file, printed to stdout.

use std::io::{BufRead, BufReader, Read, Write};

use anyhow::{Context, Result};

use crate::cli::ReportArgs;
use crate::config::Config;
use crate::error::usage;
use crate::watch::mail::Templates;
use crate::watch::parse::{parse_feed_line, Parsed};
use crate::watch::report::Report;
use crate::watch::run::untrusted_summary;
use crate::watch::session::{Ending, Limits, Sessions};
use crate::watch::time::now_unix;
use crate::watch::trust::Trust;

pub fn run(config: &Config, args: &ReportArgs) -> Result<()> {
    let input: Box<dyn Read> = if args.file.as_os_str() == "-" {
        Box::new(std::io::stdin())
    } else {
        Box::new(
            fs_err::File::open(&args.file)
                .map_err(|e| usage(format!("cannot open the log {}: {e}", args.file.display())))?,
        )
    };
    let templates = if args.json {
        None
    } else {
        Some(Templates::load(config.watch.template_dir.as_deref())?)
    };
    let stdout = std::io::stdout();
    let mut printer = Printer {
        out: std::io::BufWriter::new(stdout.lock()),
        templates,
        printed: 0,
    };
    printer.start()?;
    let limits = Limits::from_config(&config.watch);
    let mut sessions = Sessions::new(limits, &format!("/{}", config.data_dir));
    sessions.trust = Trust::system(config);
    let wall = now_unix();
    let mut clock = i64::MIN;
    let mut finished = Vec::new();
    let mut reader = BufReader::with_capacity(1 << 20, input);
    let mut line = Vec::new();
    loop {
        line.clear();
        if reader
            .read_until(b'\n', &mut line)
            .context("cannot read the log")?
            == 0
        {
            break;
        }
        let (sender, parsed) = parse_feed_line(&line, wall);
        if let Parsed::Sftp(l) = &parsed {
            clock = clock.max(l.time.unwrap_or(clock));
        }
        sessions.apply_from(sender, parsed, args.trust_unverified, clock, &mut finished);
        for r in finished.drain(..) {
            printer.print(&r)?;
        }
    }
    sessions.expire(clock, config.watch.idle_timeout_secs, &mut finished);
    sessions.finish_all(Ending::EndOfInput, &mut finished);
    for r in finished.drain(..) {
        printer.print(&r)?;
    }
    printer.end()?;
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

struct Printer<W: Write> {
    out: W,
    templates: Option<Templates>,
    printed: u64,
}

impl<W: Write> Printer<W> {
    fn start(&mut self) -> Result<()> {
        if self.templates.is_none() {
            self.out.write_all(b"[").context("cannot write")?;
        }
        Ok(())
    }

    fn print(&mut self, report: &Report) -> Result<()> {
        match &self.templates {
            Some(t) => {
                if self.printed > 0 {
                    writeln!(self.out, "\n{}\n", "=".repeat(72)).context("cannot write")?;
                }
                let text = t.render_text(report)?;
                self.out
                    .write_all(text.trim_end().as_bytes())
                    .and_then(|()| self.out.write_all(b"\n"))
                    .context("cannot write")?;
            }
            None => {
                if self.printed > 0 {
                    self.out.write_all(b",").context("cannot write")?;
                }
                self.out.write_all(b"\n").context("cannot write")?;
                serde_json::to_writer(&mut self.out, report).context("cannot write")?;
            }
        }
        self.printed += 1;
        Ok(())
    }

    fn end(&mut self) -> Result<()> {
        if self.templates.is_none() {
            self.out.write_all(b"\n]\n").context("cannot write")?;
        }
        self.out.flush().context("cannot write")
    }
}
