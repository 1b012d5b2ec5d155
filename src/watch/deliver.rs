//! Delivery: a thread that reads the outbox, renders each report, hands it to the transport
//! (lettre's SMTP or sendmail, or .eml files in `mail.spool_dir`) and acknowledges it.
//! Reading log lines never waits for it. Failures are retried with exponential backoff; the
//! report stays in the outbox meanwhile, across restarts too.

use std::collections::{HashMap, HashSet};
use std::fs::OpenOptions;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{Message, SendmailTransport, SmtpTransport, Transport as _};

use super::mail::{build_message, Addresses, Templates};
use super::outbox::{self, Committed, Shared};
use super::report::Report;
use crate::config::{Config, SmtpTls, Transport};
use crate::error::usage;

/// Reports delivered between two syncs of the spool and of the acknowledgements.
const BATCH: usize = 256;

/// Where mail goes.
pub enum Mailer {
    /// One `<report id>.eml` per report in the spool dir; rewriting one is harmless, so a
    /// report delivered again after a crash does not become a second file.
    File {
        spool: PathBuf,
        unsynced: bool,
    },
    Sendmail(SendmailTransport),
    Smtp(Box<SmtpTransport>),
}

impl Mailer {
    /// The transport chosen in the config; checks what can be checked before the first report.
    pub fn from_config(config: &Config) -> Result<Mailer> {
        match config.mail.transport {
            Transport::File => {
                let spool = config.mail.spool_dir.clone();
                outbox::ensure_private_dir(&spool)?;
                Ok(Mailer::File {
                    spool,
                    unsynced: false,
                })
            }
            Transport::Sendmail => Ok(Mailer::Sendmail(SendmailTransport::new_with_command(
                config.mail.sendmail.as_os_str(),
            ))),
            Transport::Smtp => {
                let smtp = &config.mail.smtp;
                let host = smtp.host.clone();
                let tls = match smtp.tls {
                    SmtpTls::None => Tls::None,
                    SmtpTls::Starttls => Tls::Required(
                        TlsParameters::new(host.clone()).context("cannot set up TLS")?,
                    ),
                    SmtpTls::Tls => {
                        Tls::Wrapper(TlsParameters::new(host.clone()).context("cannot set up TLS")?)
                    }
                };
                let mut builder = SmtpTransport::builder_dangerous(host)
                    .port(smtp.port)
                    .tls(tls)
                    .timeout(Some(Duration::from_secs(smtp.timeout_secs)));
                if !smtp.username.is_empty() {
                    let password = read_password_file(&smtp.password_file)?;
                    builder =
                        builder.credentials(Credentials::new(smtp.username.clone(), password));
                }
                Ok(Mailer::Smtp(Box::new(builder.build())))
            }
        }
    }

    fn send(&mut self, id: &str, message: &Message) -> Result<()> {
        match self {
            Mailer::File { spool, unsynced } => {
                write_eml(spool, id, &message.formatted())?;
                *unsynced = true;
                Ok(())
            }
            Mailer::Sendmail(t) => t
                .send(message)
                .map_err(|e| anyhow::anyhow!("sendmail: {e}")),
            Mailer::Smtp(t) => t
                .send(message)
                .map(|_| ())
                .map_err(|e| anyhow::anyhow!("SMTP: {}", smtp_error(&e))),
        }
    }

    /// Makes what `send` wrote durable before it is acknowledged.
    fn flush(&mut self) -> Result<()> {
        if let Mailer::File { spool, unsynced } = self {
            if *unsynced {
                let dir = std::fs::File::open(&*spool)
                    .with_context(|| format!("cannot open {}", spool.display()))?;
                nix::unistd::syncfs(dir.as_raw_fd())
                    .with_context(|| format!("cannot sync {}", spool.display()))?;
                *unsynced = false;
            }
        }
        Ok(())
    }
}

/// lettre's error text plus its source, on one line (never includes credentials).
fn smtp_error(e: &lettre::transport::smtp::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text.replace('\n', " ")
}

/// A report from the outbox; `None` (logged) for a record this program cannot read, which
/// would otherwise block every later one forever.
fn read_record(line: &[u8]) -> Option<Report> {
    match serde_json::from_slice(line) {
        Ok(r) => Some(r),
        Err(e) => {
            eprintln!("sftpctl watch: skipping an unreadable outbox record: {e}");
            None
        }
    }
}

fn write_eml(spool: &Path, id: &str, bytes: &[u8]) -> Result<()> {
    let tmp = spool.join(format!(".{id}.tmp"));
    let mut file = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("cannot create {}", tmp.display()))?;
    file.write_all(bytes)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    drop(file);
    let target = spool.join(format!("{id}.eml"));
    fs_err::rename(&tmp, &target).context("cannot move the mail into the spool")?;
    Ok(())
}

/// The SMTP password: the file's first line. The file must be readable by its owner only.
pub fn read_password_file(path: &Path) -> Result<String> {
    if path.as_os_str().is_empty() {
        return Err(usage(
            "mail.smtp.username is set but mail.smtp.password_file is not: put the password in a file only root can read (mode 0600) and name it there",
        ));
    }
    let mut file = std::fs::File::open(path).map_err(|e| {
        usage(format!(
            "cannot open mail.smtp.password_file {}: {e}",
            path.display()
        ))
    })?;
    let meta = file
        .metadata()
        .with_context(|| format!("cannot stat {}", path.display()))?;
    if meta.mode() & 0o077 != 0 {
        return Err(usage(format!(
            "mail.smtp.password_file {} has mode {:04o}: it must be readable by its owner only (chmod 600 {})",
            path.display(),
            meta.mode() & 0o7777,
            path.display()
        )));
    }
    let euid = nix::unistd::geteuid().as_raw();
    if meta.uid() != euid && meta.uid() != 0 {
        return Err(usage(format!(
            "mail.smtp.password_file {} must be owned by root or by the user running the watcher",
            path.display()
        )));
    }
    let mut text = String::new();
    file.read_to_string(&mut text)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let password = text.lines().next().unwrap_or("").to_string();
    if password.is_empty() {
        return Err(usage(format!(
            "mail.smtp.password_file {} is empty",
            path.display()
        )));
    }
    Ok(password)
}

/// How long to wait after failures, and when to give up (replays only).
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub first: Duration,
    pub max: Duration,
    /// Once the writer is closed, stop after this many failed attempts in a row
    /// (`watch --stdin`); `None` = retry forever (the daemon).
    pub attempts_after_close: Option<u32>,
}

#[derive(Debug, Default, Clone, Copy)]
pub struct Outcome {
    pub delivered: u64,
    pub failed_attempts: u64,
}

/// Where the delivery thread is in one segment.
struct Cursor {
    offset: u64,
    next_record: u64,
    acks: HashSet<u64>,
}

pub struct Delivery {
    dir: PathBuf,
    shared: Arc<Shared>,
    mailer: Mailer,
    templates: Templates,
    addresses: Addresses,
    policy: RetryPolicy,
    cursors: HashMap<u64, Cursor>,
    pub outcome: Outcome,
}

impl Delivery {
    pub fn new(
        dir: &Path,
        shared: Arc<Shared>,
        mailer: Mailer,
        templates: Templates,
        addresses: Addresses,
        policy: RetryPolicy,
    ) -> Delivery {
        Delivery {
            dir: dir.to_path_buf(),
            shared,
            mailer,
            templates,
            addresses,
            policy,
            cursors: HashMap::new(),
            outcome: Outcome::default(),
        }
    }

    /// Delivers until the writer is closed and everything is out (or given up), or stop.
    pub fn run(mut self) -> Outcome {
        let mut backoff = self.policy.first;
        let mut failures_in_a_row: u32 = 0;
        loop {
            let seen = self.shared.snapshot();
            if seen.stop {
                return self.outcome;
            }
            match self.pass(seen) {
                Ok(true) => {
                    backoff = self.policy.first;
                    failures_in_a_row = 0;
                    if seen.closed {
                        return self.outcome;
                    }
                    self.shared.wait_change(seen, Duration::from_secs(1));
                }
                Ok(false) => {
                    // stopped in the middle of a pass
                }
                Err(e) => {
                    self.outcome.failed_attempts += 1;
                    failures_in_a_row += 1;
                    if seen.closed {
                        if let Some(limit) = self.policy.attempts_after_close {
                            if failures_in_a_row >= limit {
                                eprintln!(
                                    "sftpctl watch: delivery failed, giving up for now: {e:#}"
                                );
                                return self.outcome;
                            }
                        }
                    }
                    eprintln!(
                        "sftpctl watch: delivery failed, retrying in {}s: {e:#}",
                        backoff.as_secs_f32()
                    );
                    self.sleep(backoff);
                    backoff = (backoff * 2).min(self.policy.max);
                }
            }
        }
    }

    /// Sleeps, waking early only to stop.
    fn sleep(&self, total: Duration) {
        let until = Instant::now() + total;
        while Instant::now() < until {
            let seen = self.shared.snapshot();
            if seen.stop {
                return;
            }
            let left = until.saturating_duration_since(Instant::now());
            self.shared
                .wait_change(seen, left.min(Duration::from_millis(200)));
        }
    }

    /// Delivers everything committed so far. `Ok(true)`: all of it went out.
    fn pass(&mut self, seen: Committed) -> Result<bool> {
        for segment in outbox::list_segments(&self.dir)? {
            if segment > seen.segment {
                break;
            }
            let path = outbox::segment_path(&self.dir, segment);
            let limit = if segment == seen.segment {
                seen.len
            } else {
                fs_err::metadata(&path)?.len()
            };
            if !self.cursors.contains_key(&segment) {
                let acks = outbox::read_acks(&self.dir, segment)?;
                self.cursors.insert(
                    segment,
                    Cursor {
                        offset: 0,
                        next_record: 0,
                        acks,
                    },
                );
            }
            if !self.deliver_segment(segment, &path, limit)? {
                return Ok(false);
            }
            // The writer's own segment may grow until the writer is closed.
            if segment < seen.segment || seen.closed {
                outbox::remove_segment(&self.dir, segment)?;
                self.cursors.remove(&segment);
            }
        }
        Ok(true)
    }

    fn deliver_segment(&mut self, segment: u64, path: &Path, limit: u64) -> Result<bool> {
        let Some(cursor) = self.cursors.get(&segment) else {
            return Ok(true);
        };
        if cursor.offset >= limit {
            return Ok(true);
        }
        let mut file =
            std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        file.seek(SeekFrom::Start(cursor.offset))
            .context("cannot read the outbox")?;
        let mut data = Vec::new();
        file.take(limit - cursor.offset)
            .read_to_end(&mut data)
            .context("cannot read the outbox")?;
        // A torn last line (crash in the middle of a write) is never complete: skip it.
        let complete = data.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        let lines: Vec<&[u8]> = data[..complete].split_inclusive(|&b| b == b'\n').collect();
        let mut acked = Vec::new();
        let result = (|| -> Result<bool> {
            for chunk in lines.chunks(BATCH) {
                if self.shared.snapshot().stop {
                    return Ok(false);
                }
                let first = self.cursors.get(&segment).map_or(0, |c| c.next_record);
                let todo: Vec<(usize, &[u8])> = chunk
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| {
                        let record = first + *i as u64;
                        !self
                            .cursors
                            .get(&segment)
                            .is_some_and(|c| c.acks.contains(&record))
                    })
                    .map(|(i, l)| (i, *l))
                    .collect();
                let mut outcomes: Vec<Option<Result<()>>> =
                    (0..chunk.len()).map(|_| None).collect();
                for (i, outcome) in self.deliver_many(&todo) {
                    outcomes[i] = Some(outcome);
                }
                // In order: everything up to the first failure counts; the rest is tried again.
                for (i, line) in chunk.iter().enumerate() {
                    if let Some(outcome) = outcomes[i].take() {
                        outcome?;
                        acked.push(first + i as u64);
                    }
                    let cursor = self.cursors.get_mut(&segment).expect("cursor exists");
                    cursor.next_record += 1;
                    cursor.offset += line.len() as u64;
                }
                self.acknowledge(segment, &mut acked)?;
            }
            Ok(true)
        })();
        // Whatever went out before a failure is acknowledged, so it is not sent again.
        let ack_result = self.acknowledge(segment, &mut acked);
        let all = result?;
        ack_result?;
        Ok(all)
    }

    /// Delivers `todo` (index, record line); the file transport renders and writes on two
    /// threads (rendering is most of the work), the others send one by one.
    fn deliver_many(&mut self, todo: &[(usize, &[u8])]) -> Vec<(usize, Result<()>)> {
        let Mailer::File { spool, unsynced } = &mut self.mailer else {
            let mut out = Vec::with_capacity(todo.len());
            for (i, line) in todo {
                let outcome = self.deliver_line(line);
                let failed = outcome.is_err();
                out.push((*i, outcome));
                if failed {
                    break;
                }
            }
            return out;
        };
        if todo.is_empty() {
            return Vec::new();
        }
        *unsynced = true;
        let (spool, templates, addresses) = (&*spool, &self.templates, &self.addresses);
        let write_one = |line: &[u8]| -> Result<()> {
            let Some(report) = read_record(line) else {
                return Ok(());
            };
            let rendered = templates.render(&report)?;
            let message = build_message(addresses, &report, rendered)?;
            write_eml(spool, &report.id, &message.formatted())
                .with_context(|| format!("report {}", report.id))
        };
        let half = todo.len().div_ceil(2);
        let (a, b) = todo.split_at(half);
        std::thread::scope(|scope| {
            let other = scope.spawn(|| {
                b.iter()
                    .map(|(i, l)| (*i, write_one(l)))
                    .collect::<Vec<_>>()
            });
            let mut out: Vec<_> = a.iter().map(|(i, l)| (*i, write_one(l))).collect();
            match other.join() {
                Ok(rest) => out.extend(rest),
                Err(_) => out.extend(
                    b.iter()
                        .map(|(i, _)| (*i, Err(anyhow::anyhow!("a delivery worker panicked")))),
                ),
            }
            out
        })
    }

    fn acknowledge(&mut self, segment: u64, acked: &mut Vec<u64>) -> Result<()> {
        if acked.is_empty() {
            return Ok(());
        }
        self.mailer.flush()?;
        outbox::write_acks(&self.dir, segment, acked)?;
        self.outcome.delivered += acked.len() as u64;
        acked.clear();
        Ok(())
    }

    fn deliver_line(&mut self, line: &[u8]) -> Result<()> {
        let Some(report) = read_record(line) else {
            return Ok(());
        };
        let rendered = self.templates.render(&report)?;
        let message = build_message(&self.addresses, &report, rendered)?;
        self.mailer
            .send(&report.id, &message)
            .with_context(|| format!("report {}", report.id))
    }
}
