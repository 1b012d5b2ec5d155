//! Delivery: a thread that reads the outbox, renders each report, hands it to the transport
//! (lettre's SMTP or sendmail, or .eml files in `mail.spool_dir`) and acknowledges it.
//! Reading log lines never waits for it. Failures are retried with exponential backoff; the
//! report stays in the outbox meanwhile, across restarts too.

use std::collections::{HashMap, HashSet};
use std::fs::OpenOptions;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{Message, SendmailTransport, Transport as _};

use super::mail::{build_message_to, read_report, Addresses, Mail, RecipientCache, Templates};
use super::outbox::{self, Committed, Shared};
use super::smtp::SmtpClient;
use crate::config::{Config, SmtpTls, Transport};
use crate::error::usage;

/// Reports sent between two acknowledgements (SMTP, sendmail): a crash repeats at most these.
const BATCH: usize = 256;

/// Reports written between two syncs of the spool and of the acknowledgements (file
/// transport: a repeat overwrites the same file, so a larger batch costs nothing but saves
/// `syncfs` + `fdatasync` pairs; 1024 = one outbox segment).
const FILE_BATCH: usize = 1024;

/// Batches up to this many mails are made durable file by file (fdatasync each, then the
/// spool dir); larger ones (a replay, a flood) with one `syncfs`. `syncfs` writes back every
/// dirty page of the whole filesystem, other programs' too: behind a large upload or a package
/// install it took seconds, and a watcher told to stop meanwhile cannot exit before it returns
/// (the thread is in uninterruptible sleep) — rsyslog's restart waited for it (issue 10).
/// One fdatasync costs about what the mail's own bytes cost.
const SYNC_EACH_MAX: usize = 16;

/// What a file transport wrote that is not durable yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unsynced {
    Nothing,
    /// The mails are synced, their names (the spool dir) are not.
    Dir,
    /// Mails written without a sync of their own: the whole filesystem is synced.
    Filesystem,
}

/// Where mail goes.
pub enum Mailer {
    /// One `<report id>.eml` per report in the spool dir; rewriting one is harmless, so a
    /// report delivered again after a crash does not become a second file.
    File {
        spool: PathBuf,
        unsynced: Unsynced,
    },
    Sendmail(SendmailTransport),
    Smtp(Box<SmtpClient>),
}

impl Mailer {
    /// The transport chosen in the config; checks what can be checked before the first report.
    pub fn from_config(config: &Config) -> Result<Mailer> {
        match config.mail.transport {
            Transport::File => {
                let spool = config.mail.spool_dir.clone();
                // Not fatal: a watcher that refused to start would lose every line rsyslog
                // sends meanwhile. Reports wait in the outbox; each batch tries again.
                if let Err(e) = outbox::ensure_private_dir(&spool) {
                    eprintln!(
                        "sftpctl: warning: {e:#}: reports wait in the outbox until mail.spool_dir is a directory sftpctl can write"
                    );
                }
                Ok(Mailer::File {
                    spool,
                    unsynced: Unsynced::Nothing,
                })
            }
            Transport::Sendmail => Ok(Mailer::Sendmail(SendmailTransport::new_with_command(
                sendmail_program(config)?.as_os_str(),
            ))),
            Transport::Smtp => Ok(Mailer::Smtp(Box::new(smtp_client(config)?))),
        }
    }

    pub fn send(&mut self, id: &str, message: &Message) -> Result<()> {
        self.send_mail(id, &Mail::from(message))
    }

    /// [`Mailer::send`] for a mail already in bytes (reports: `mail::mime`).
    pub fn send_mail(&mut self, id: &str, mail: &Mail) -> Result<()> {
        match self {
            Mailer::File { spool, unsynced } => {
                outbox::ensure_private_dir(spool)?;
                write_eml(spool, id, &mail.bytes, true)?;
                if *unsynced == Unsynced::Nothing {
                    *unsynced = Unsynced::Dir;
                }
                Ok(())
            }
            Mailer::Sendmail(t) => t
                .send_raw(&mail.envelope, &mail.bytes)
                .map_err(|e| anyhow::anyhow!("sendmail: {e}")),
            Mailer::Smtp(t) => t.send_raw(&mail.envelope, &mail.bytes),
        }
    }

    /// Makes what `send` wrote durable before it is acknowledged.
    pub fn flush(&mut self) -> Result<()> {
        if let Mailer::File { spool, unsynced } = self {
            match *unsynced {
                Unsynced::Nothing => {}
                Unsynced::Dir => outbox::sync_dir(spool)?,
                Unsynced::Filesystem => {
                    let dir = std::fs::File::open(&*spool)
                        .with_context(|| format!("cannot open {}", spool.display()))?;
                    nix::unistd::syncfs(dir.as_raw_fd())
                        .with_context(|| format!("cannot sync {}", spool.display()))?;
                }
            }
            *unsynced = Unsynced::Nothing;
        }
        Ok(())
    }

    /// A batch is done: an SMTP connection kept open for it is closed.
    pub fn end_batch(&mut self) {
        if let Mailer::Smtp(t) = self {
            t.close();
        }
    }
}

/// The sendmail program, refused unless it is an executable file.
fn sendmail_program(config: &Config) -> Result<&Path> {
    let program = config.mail.sendmail.as_path();
    let runnable = std::fs::metadata(program)
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
    if !runnable {
        return Err(usage(format!(
            "mail.sendmail: {} is not an executable program: install an MTA \
             (e.g. apt install msmtp-mta) or set mail.transport = \"file\"",
            program.display()
        )));
    }
    Ok(program)
}

/// The SMTP client as configured: TLS parameters and password read and checked; no
/// connection is made yet.
fn smtp_client(config: &Config) -> Result<SmtpClient> {
    let smtp = &config.mail.smtp;
    let tls = match smtp.tls {
        SmtpTls::None => Tls::None,
        SmtpTls::Starttls => Tls::Required(tls_parameters(smtp)?),
        SmtpTls::Tls => Tls::Wrapper(tls_parameters(smtp)?),
    };
    let credentials = if smtp.username.is_empty() {
        None
    } else {
        let password = read_password_file(&smtp.password_file)?;
        Some(Credentials::new(smtp.username.clone(), password))
    };
    Ok(SmtpClient::new(
        smtp.host.clone(),
        smtp.port,
        tls,
        Duration::from_secs(smtp.timeout_secs),
        credentials,
    ))
}

/// What the watcher checks of `[mail]` before its first report, without making anything or
/// connecting anywhere; a sentence saying where reports go. For `doctor`.
pub fn describe_transport(config: &Config) -> Result<String> {
    Addresses::from_config(config)?;
    let mail = &config.mail;
    Ok(match mail.transport {
        Transport::File => format!(".eml files in {}", mail.spool_dir.display()),
        Transport::Sendmail => format!("handed to {}", sendmail_program(config)?.display()),
        Transport::Smtp => {
            smtp_client(config)?;
            let tls = match mail.smtp.tls {
                SmtpTls::None => "without TLS",
                SmtpTls::Starttls => "with STARTTLS",
                SmtpTls::Tls => "over TLS",
            };
            let login = if mail.smtp.username.is_empty() {
                String::new()
            } else {
                format!(", login {}", mail.smtp.username)
            };
            format!("SMTP to {}:{} {tls}{login}", mail.smtp.host, mail.smtp.port)
        }
    })
}

/// Certificate checks for `mail.smtp.host`: the public roots, plus `mail.smtp.ca_file`.
fn tls_parameters(smtp: &crate::config::Smtp) -> Result<TlsParameters> {
    let mut builder = TlsParameters::builder(smtp.host.clone());
    if !smtp.ca_file.as_os_str().is_empty() {
        let pem =
            fs_err::read(&smtp.ca_file).map_err(|e| usage(format!("mail.smtp.ca_file: {e}")))?;
        // lettre takes a PEM text without any certificate in it as an empty list.
        let marker = b"-----BEGIN CERTIFICATE-----";
        if !pem.windows(marker.len()).any(|w| w == marker) {
            return Err(usage(format!(
                "mail.smtp.ca_file: {} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
                smtp.ca_file.display()
            )));
        }
        let ca = Certificate::from_pem(&pem).map_err(|e| {
            usage(format!(
                "mail.smtp.ca_file: {} is not a PEM certificate ({e})",
                smtp.ca_file.display()
            ))
        })?;
        builder = builder.add_root_certificate(ca);
    }
    builder.build().context("cannot set up TLS")
}

fn unreadable(e: impl std::fmt::Display) {
    eprintln!("sftpctl watch: skipping an unreadable outbox record: {e}");
}

/// Renders one outbox record into its message; `Ok(None)` for a record skipped as unreadable
/// (logged), which would otherwise block every later one forever. The record is read straight
/// into a [`Report`](super::report::Report) (serde into the struct, no JSON tree), whose template view is built from
/// it (`mail::Templates::context`).
fn prepare(
    templates: &Templates,
    addresses: &Addresses,
    cache: &mut RecipientCache,
    line: &[u8],
) -> Result<Option<(String, Mail)>> {
    let report = match read_report(line) {
        Ok(r) => r,
        Err(e) => {
            unreadable(e);
            return Ok(None);
        }
    };
    // A real report that does not render is an error, and is retried.
    let rendered = templates.render(&report)?;
    let recipients = addresses.recipients_cached(cache, &report.user);
    let mail = build_message_to(addresses, &report.user, recipients, rendered)?;
    Ok(Some((report.id, mail)))
}

/// `<spool>/<id>.eml`, written under a temporary name and renamed: a reader of the spool
/// never sees half a mail, and a repeat replaces the file. `sync`: its bytes are made durable
/// before the rename (the caller syncs the directory).
fn write_eml(spool: &Path, id: &str, bytes: &[u8], sync: bool) -> Result<()> {
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
    if sync {
        file.sync_data()
            .with_context(|| format!("cannot sync {}", tmp.display()))?;
    }
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
    /// Digest mode: where digest clients' reports go instead of the transport.
    digest: Option<super::digest::Digest>,
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
            digest: None,
        }
    }

    /// Reports of digest-mode clients are stored for the daily digest, which this thread
    /// makes when it is due (docs/watch.md, "Digest mode").
    pub fn with_digest(mut self, digest: super::digest::Digest) -> Delivery {
        self.digest = Some(digest);
        self
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
        if let Some(digest) = &mut self.digest {
            digest.tick(super::time::now_unix())?;
        }
        // The outbox's letters (notices, new files, welcome, digests), after the reports.
        let letters = self.dir.join("letters");
        match crate::letters::deliver_with(&letters, &self.addresses, &mut self.mailer) {
            Ok(0) => {}
            Ok(_) => self.mailer.end_batch(),
            Err(e) => {
                self.mailer.end_batch();
                return Err(e);
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
            let batch = if matches!(self.mailer, Mailer::File { .. }) {
                FILE_BATCH
            } else {
                BATCH
            };
            for chunk in lines.chunks(batch) {
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
                let (stored, todo) = match &mut self.digest {
                    Some(digest) => digest.divert(&todo),
                    None => (Vec::new(), todo),
                };
                for (i, outcome) in stored.into_iter().chain(self.deliver_many(&todo)) {
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
    /// threads (rendering is most of the work), taking records from one shared counter so
    /// neither waits for the other; the others send one by one.
    fn deliver_many(&mut self, todo: &[(usize, &[u8])]) -> Vec<(usize, Result<()>)> {
        let Mailer::File { spool, unsynced } = &mut self.mailer else {
            let mut cache = RecipientCache::default();
            let mut out = Vec::with_capacity(todo.len());
            for (i, line) in todo {
                let outcome = self.deliver_line(&mut cache, line);
                let failed = outcome.is_err();
                out.push((*i, outcome));
                if failed {
                    break;
                }
            }
            self.mailer.end_batch();
            return out;
        };
        if todo.is_empty() {
            return Vec::new();
        }
        // Made again if it went (or was never made): one mkdir per batch.
        if let Err(e) = outbox::ensure_private_dir(spool) {
            return vec![(todo[0].0, Err(e))];
        }
        let sync_each = todo.len() <= SYNC_EACH_MAX;
        *unsynced = match (*unsynced, sync_each) {
            (Unsynced::Filesystem, _) | (_, false) => Unsynced::Filesystem,
            _ => Unsynced::Dir,
        };
        let (spool, templates, addresses) = (&*spool, &self.templates, &self.addresses);
        let next = AtomicUsize::new(0);
        // One worker at a time creates files in the spool: both would contend for the
        // directory's lock anyway, and in the kernel a waiter spins on it. On ext4 without a
        // journal, creating a file shortly after many were deleted is slow (the inode
        // allocator skips recently deleted inodes, reading the inode table for each), and a
        // second creating thread then spent its core spinning. A worker that finds the spool
        // busy renders on and writes its finished mails when the spool is free.
        let spool_lock = std::sync::Mutex::new(());
        let work = || {
            let mut cache = RecipientCache::default();
            let mut out = Vec::with_capacity(todo.len());
            let mut ready: Vec<(usize, String, Vec<u8>)> = Vec::new();
            let write_ready = |ready: &mut Vec<(usize, String, Vec<u8>)>,
                               out: &mut Vec<(usize, Result<()>)>| {
                for (i, id, bytes) in ready.drain(..) {
                    let outcome = write_eml(spool, &id, &bytes, sync_each)
                        .with_context(|| format!("report {id}"));
                    out.push((i, outcome));
                }
            };
            while let Some((i, line)) = todo.get(next.fetch_add(1, Ordering::Relaxed)) {
                match prepare(templates, addresses, &mut cache, line) {
                    Ok(Some((id, mail))) => ready.push((*i, id, mail.bytes)),
                    Ok(None) => out.push((*i, Ok(()))),
                    Err(e) => out.push((*i, Err(e))),
                }
                let guard = if ready.len() >= 16 {
                    Some(spool_lock.lock().unwrap_or_else(|p| p.into_inner()))
                } else {
                    spool_lock.try_lock().ok()
                };
                if guard.is_some() {
                    write_ready(&mut ready, &mut out);
                }
            }
            if !ready.is_empty() {
                let _guard = spool_lock.lock().unwrap_or_else(|p| p.into_inner());
                write_ready(&mut ready, &mut out);
            }
            out
        };
        if todo.len() == 1 {
            return work();
        }
        std::thread::scope(|scope| {
            let other = scope.spawn(work);
            let mut out = work();
            match other.join() {
                Ok(rest) => out.extend(rest),
                Err(_) => {
                    // What the other worker took is unknown: all that is not done here failed.
                    let done: HashSet<usize> = out.iter().map(|(i, _)| *i).collect();
                    out.extend(
                        todo.iter()
                            .filter(|(i, _)| !done.contains(i))
                            .map(|(i, _)| (*i, Err(anyhow::anyhow!("a delivery worker panicked")))),
                    );
                }
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

    fn deliver_line(&mut self, cache: &mut RecipientCache, line: &[u8]) -> Result<()> {
        let Some((id, mail)) = prepare(&self.templates, &self.addresses, cache, line)? else {
            return Ok(());
        };
        self.mailer
            .send_mail(&id, &mail)
            .with_context(|| format!("report {id}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::watch::outbox::Writer;

    #[test]
    fn unreadable_records_are_skipped_and_the_rest_delivered_once() {
        let dir = std::env::temp_dir().join(format!("sftpctl-deliver-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (outbox_dir, spool) = (dir.join("outbox"), dir.join("spool"));
        outbox::ensure_private_dir(&outbox_dir).unwrap();
        let mut a = super::super::report::example();
        a.id = "a".into();
        let mut b = a.clone();
        b.id = "b".into();
        let mut segment = serde_json::to_vec(&a).unwrap();
        segment.extend_from_slice(b"\nnot json\n{\"id\":\"x\",\"user\":\"u\"}\n{\"id\":\"y\"}\n");
        segment.extend_from_slice(&serde_json::to_vec(&b).unwrap());
        segment.extend_from_slice(b"\n{\"torn");
        std::fs::write(outbox::segment_path(&outbox_dir, 1), segment).unwrap();
        // A writer after the old segment, closed: deliver everything, then stop.
        let mut writer = Writer::open(&outbox_dir).unwrap();
        writer.close().unwrap();
        outbox::ensure_private_dir(&spool).unwrap();
        // A letter queued by another process goes out through the same thread.
        let letter = crate::letters::Letter {
            id: "n1".into(),
            kind: "notice".into(),
            user: "a".into(),
            to: crate::letters::To::Admins,
            subject: "s".into(),
            text: "t".into(),
            html: None,
        };
        assert!(crate::letters::queue_in(&outbox_dir.join("letters"), &letter).unwrap());
        let delivery = Delivery::new(
            &outbox_dir,
            writer.shared(),
            Mailer::File {
                spool: spool.clone(),
                unsynced: Unsynced::Nothing,
            },
            Templates::load(None).unwrap(),
            Addresses::from_config(&crate::config::Config::default()).unwrap(),
            RetryPolicy {
                first: Duration::from_millis(1),
                max: Duration::from_millis(1),
                attempts_after_close: Some(1),
            },
        );
        delivery.run();
        let mut names: Vec<String> = std::fs::read_dir(&spool)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["a.eml", "b.eml", "notice-n1.eml"]);
        let mail = std::fs::read_to_string(spool.join("a.eml")).unwrap();
        assert!(mail.contains("Content-Type: text/html"), "{mail}");
        assert_eq!(outbox::count_pending(&outbox_dir).unwrap(), 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
