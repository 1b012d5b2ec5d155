//! The watcher's main loop: lines in, reports into the outbox, a delivery thread out.

use std::borrow::Cow;
use std::io::Read;
use std::net::UdpSocket;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::error::usage;
use nix::errno::Errno;
use nix::sys::socket::{recv, MsgFlags};

use super::daemon;
use super::deliver::{Delivery, Mailer, Outcome, RetryPolicy};
use super::mail::{Addresses, Templates};
use super::outbox::{self, Writer};
use super::parse::{parse_feed_line, Parsed, Sender};
use super::report::Report;
use super::session::{Limits, Sessions};
use super::source::{bind_feed, bind_udp, recv_with_uid, Follower};
use super::state::{self, PidLock, Saved};
use super::time::now_unix;
use super::trust::{Trust, Untrusted};
use crate::config::Config;

/// Where the lines come from.
pub enum Input {
    /// The trusted feed on `watch.socket`, and UDP on `watch.listen` when it is set.
    Live,
    Follow(PathBuf),
    /// A byte stream read to its end (stdin); reports are delivered, then the call returns.
    Stream(Box<dyn Read + Send>),
}

pub struct Options {
    pub foreground: bool,
    /// How long the delivery thread waits between failures at first.
    pub retry_first: Duration,
    /// Take lines without credentials (logs written before the trusted feed) as they are.
    pub trust_unverified: bool,
    /// The live watcher runs the policy jobs where systemd does not.
    pub run_policy: bool,
    /// The config file they are given (`None`: the built-in defaults, no file).
    pub config_path: Option<PathBuf>,
}

/// Where a line came from: what its credentials are worth.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// rsyslog's template: the credentials in the line are the kernel's.
    Rsyslog,
    /// The opt-in UDP listener: anyone who can send to it could write any credentials, so
    /// they are ignored and the line is taken unverified.
    Udp,
}

/// Parsed lines → sessions → outbox.
pub struct Engine {
    pub sessions: Sessions,
    writer: Writer,
    finished: Vec<Report>,
    idle_secs: u64,
    /// Wall clock, refreshed now and then: it supplies the year of the forward format.
    wall: i64,
    /// Latest line time seen (replays) or wall clock (live).
    clock: i64,
    lines_since_expiry: u32,
    /// user → end of the newest finished session, written out on commit for list-users.
    last_sessions: std::collections::BTreeMap<String, String>,
    /// When `last_sessions` was last written (each user's file is written and synced: at
    /// most once a second, not at every group commit).
    last_sessions_written: Option<Instant>,
    config: Config,
    /// Lines without credentials from rsyslog's sources are taken as they are.
    trust_unverified: bool,
    /// Untrusted lines already said in the log, and when.
    untrusted_logged: (u64, Option<Instant>),
    /// Runs `sftpctl policy run` where no systemd unit does (live only).
    policy: Option<crate::policy::kick::Kicker>,
    /// sshd's login lines → each account's last login and failures (list-users).
    logins: crate::logins::track::Tracker,
    login_states: crate::logins::state::Recorder,
    login_states_written: Option<Instant>,
    untrusted_logins_logged: (u64, Option<Instant>),
    /// Queues the clients' "new files" letters of the admin's sessions (`watch` sets it).
    newfiles: Option<super::newfiles::Notifier>,
    /// On a collector: when each forwarding host was last heard from (for doctor).
    hosts_seen: Option<crate::fleet::hosts::HostsSeen>,
    hosts_seen_written: Option<Instant>,
    /// On a collector: the last lines of each forwarding host, to skip repeats.
    recent: crate::fleet::dedupe::Recent,
}

impl Engine {
    pub fn new(config: &Config, writer: Writer) -> Engine {
        let limits = Limits::from_config(&config.watch);
        let wall = now_unix();
        let mut sessions = Sessions::new(limits, &format!("/{}", config.data_dir));
        sessions.trust = Trust::system(config);
        Engine {
            sessions,
            writer,
            finished: Vec::new(),
            idle_secs: config.watch.idle_timeout_secs,
            wall,
            clock: wall,
            lines_since_expiry: 0,
            last_sessions: Default::default(),
            last_sessions_written: None,
            config: config.clone(),
            trust_unverified: false,
            untrusted_logged: (0, None),
            policy: None,
            logins: Default::default(),
            login_states: Default::default(),
            login_states_written: None,
            untrusted_logins_logged: (0, None),
            newfiles: None,
            hosts_seen: config.collect.enabled.then(|| {
                crate::fleet::hosts::HostsSeen::load(config).unwrap_or_else(|e| {
                    eprintln!("sftpctl: warning: {e:#}");
                    Default::default()
                })
            }),
            hosts_seen_written: None,
            recent: Default::default(),
        }
    }

    /// The admin's reports name the jails they touched, and clients get their letters.
    pub fn notify_new_files_with(&mut self, notifier: super::newfiles::Notifier) {
        self.newfiles = Some(notifier);
    }

    /// The policy jobs are run from here (no systemd): after sessions, and periodically.
    pub fn run_policy_with(&mut self, kicker: crate::policy::kick::Kicker) {
        self.policy = Some(kicker);
    }

    /// One line from rsyslog (feed socket, log file). `live`: time is the wall clock; else
    /// the line's own timestamp.
    pub fn line(&mut self, bytes: &[u8], live: bool) -> Result<()> {
        self.line_from(bytes, live, Origin::Rsyslog)
    }

    /// A datagram from a process that is not root arrived on the feed socket: dropped.
    pub fn datagram_not_from_root(&mut self, uid: Option<u32>) {
        let s = &mut self.sessions;
        s.stats.lines += 1;
        s.stats.untrusted_lines += 1;
        s.trust.last_dropped = Some(super::trust::Dropped {
            why: Untrusted::NotFromRoot,
            uid,
            pid: None,
        });
    }

    /// Says in the log (at most every 10 s) how many untrusted lines were dropped.
    fn log_untrusted(&mut self, force: bool) {
        let count = self.sessions.stats.untrusted_lines;
        let (said, at) = self.untrusted_logged;
        if count == said || (!force && at.is_some_and(|t| t.elapsed() < Duration::from_secs(10))) {
            return;
        }
        let last = self
            .sessions
            .trust
            .last_dropped
            .as_ref()
            .map(|d| format!("; the last: {d}"))
            .unwrap_or_default();
        eprintln!(
            "sftpctl watch: dropped {} internal-sftp line(s) not sent by the session's own process ({count} since start){last}",
            count - said
        );
        self.untrusted_logged = (count, Some(Instant::now()));
    }

    /// The same for sshd login lines not sent by root (src/logins/track.rs).
    fn log_untrusted_logins(&mut self, force: bool) {
        let count = self.logins.untrusted;
        let (said, at) = self.untrusted_logins_logged;
        if count == said || (!force && at.is_some_and(|t| t.elapsed() < Duration::from_secs(10))) {
            return;
        }
        let last = self
            .logins
            .last_untrusted
            .map(|w| format!("; the last: {}", w.describe()))
            .unwrap_or_default();
        eprintln!(
            "sftpctl watch: dropped {} sshd login line(s) not sent by root's sshd ({count} since start){last}",
            count - said
        );
        self.untrusted_logins_logged = (count, Some(Instant::now()));
    }

    fn line_from(&mut self, bytes: &[u8], live: bool, origin: Origin) -> Result<()> {
        let (sender, mut parsed) = parse_feed_line(bytes, self.wall);
        let (sender, accept_unverified) = match origin {
            Origin::Rsyslog => (sender, self.trust_unverified),
            Origin::Udp => (Sender::Unverified, true),
        };
        if live {
            self.clock = self.wall;
            // The forward format has whole seconds only; the time of receipt still tells a
            // request's own failure from a later one (see session::OWN_STATUS_WINDOW_US).
            if let Parsed::Sftp(line) = &mut parsed {
                line.time_us = line.time_us.or_else(now_micros);
            }
        } else {
            let time = match &parsed {
                Parsed::Sftp(l) => l.time,
                Parsed::Unreadable { time, .. } => *time,
                Parsed::Foreign => None,
            };
            if let Some(t) = time {
                self.clock = self.clock.max(t);
            }
            self.lines_since_expiry += 1;
            if self.lines_since_expiry >= 4096 {
                self.lines_since_expiry = 0;
                self.sessions
                    .expire(self.clock, self.idle_secs, &mut self.finished);
            }
        }
        if origin == Origin::Rsyslog && self.sessions.trust.hosts.is_some() {
            if self.fleet_repeat(bytes, &parsed) {
                return Ok(());
            }
            self.fleet_line(bytes, &parsed);
        }
        if matches!(parsed, Parsed::Foreign) {
            self.login_line(bytes, origin);
        }
        self.sessions.apply_from(
            sender,
            parsed,
            accept_unverified,
            self.clock,
            &mut self.finished,
        );
        self.queue_finished()
    }

    /// An sshd login line (the others are left alone). UDP's lines are never believed for
    /// a login: anyone can send them, and list-users shows what they would say. On a
    /// collector only its own: a forwarding host's logins are its accounts', not this
    /// host's (`report --logins` and the digest read them from the log).
    fn login_line(&mut self, bytes: &[u8], origin: Origin) {
        let Some((sender, line)) = crate::logins::parse::parse_login_line(bytes, self.wall) else {
            return;
        };
        if let Some(tables) = &self.sessions.trust.hosts {
            if !tables.is_local(&line.host) {
                return;
            }
        }
        let accept = origin == Origin::Rsyslog && self.trust_unverified;
        let mut done = Vec::new();
        self.logins
            .line(sender, line, accept, self.clock, &mut done);
        self.note_logins(done);
    }

    fn note_logins(&mut self, done: Vec<crate::logins::Login>) {
        for l in &done {
            self.login_states.note(&self.config, l);
        }
    }

    /// On a collector: a forwarding host's line that came before (rsyslog resends what it
    /// could not confirm; see [`crate::fleet::dedupe`]).
    fn fleet_repeat(&mut self, bytes: &[u8], parsed: &Parsed) -> bool {
        let Some(tables) = &self.sessions.trust.hosts else {
            return false;
        };
        let host = match parsed {
            Parsed::Sftp(l) => &*l.host,
            Parsed::Unreadable { host, .. } => &**host,
            Parsed::Foreign => return false,
        };
        !tables.is_local(host) && self.recent.repeat(host, bytes)
    }

    /// On a collector: a forwarding host's accounts line replaces its table (saved at once:
    /// it decides which of its lines are believed), and every line of a host with a table
    /// counts as heard from it. Only lines from rsyslog: a UDP line's credentials are text
    /// anyone can write.
    fn fleet_line(&mut self, bytes: &[u8], parsed: &Parsed) {
        let Some(tables) = self.sessions.trust.hosts.as_mut() else {
            return;
        };
        let (host, time) = match parsed {
            Parsed::Sftp(l) => (Cow::Borrowed(&*l.host), l.time),
            Parsed::Unreadable { host, time, .. } => (Cow::Borrowed(&**host), *time),
            Parsed::Foreign => {
                let Some((_, host, part)) = crate::fleet::accounts::parse_line(bytes, self.wall)
                else {
                    return;
                };
                if tables.is_local(&host) {
                    return;
                }
                if tables.take(&host, part) {
                    let n = tables.hosts.get(&host).map_or(0, |t| t.accounts.len());
                    eprintln!(
                        "sftpctl watch: host {}: {n} SFTP account(s) announced",
                        crate::display::visible(&host)
                    );
                    if let Err(e) = tables.save(&self.config) {
                        eprintln!("sftpctl: warning: {e:#}");
                    }
                }
                (Cow::Owned(host), Some(self.clock))
            }
        };
        if !tables.hosts.contains_key(&*host) {
            return;
        }
        let first = self
            .hosts_seen
            .as_mut()
            .is_some_and(|seen| seen.note(&host, time.unwrap_or(self.clock)));
        if first {
            self.write_hosts_seen(true);
        }
    }

    /// Writes when each forwarding host was last heard from: at most every 5 s unless
    /// `force`.
    fn write_hosts_seen(&mut self, force: bool) {
        let Some(seen) = &mut self.hosts_seen else {
            return;
        };
        if !force
            && self
                .hosts_seen_written
                .is_some_and(|t| t.elapsed() < Duration::from_secs(5))
        {
            return;
        }
        self.hosts_seen_written = Some(Instant::now());
        if let Err(e) = seen.save(&self.config) {
            eprintln!("sftpctl: warning: {e:#}");
        }
    }

    /// Writes the changed login states: at most once a second unless `force`.
    fn write_login_states(&mut self, force: bool) {
        if !self.login_states.is_dirty()
            || (!force
                && self
                    .login_states_written
                    .is_some_and(|t| t.elapsed() < Duration::from_secs(1)))
        {
            return;
        }
        self.login_states_written = Some(Instant::now());
        if let Err(e) = self.login_states.flush(&self.config) {
            eprintln!("sftpctl: warning: {e:#}");
        }
    }

    /// End of a stream: connections still waiting for their end are finished as they are.
    pub fn finish_logins(&mut self) {
        let mut done = Vec::new();
        self.logins.finish_all(&mut done);
        self.note_logins(done);
    }

    fn queue_finished(&mut self) -> Result<()> {
        for mut report in self.finished.drain(..) {
            // A forwarding host's session on a collector: its quota and its jails are that
            // host's, not this one's.
            let local =
                (self.sessions.trust.hosts.as_ref()).is_none_or(|h| h.is_local(&report.host));
            if local {
                report.notes.extend(crate::policy::quota::report_note(
                    &self.config,
                    &report.user,
                ));
            }
            // Before the report is appended: its letters are on disk before it can be
            // acknowledged (a crash in between repeats the report, and the same letter ids).
            if let (Some(notifier), true) = (&self.newfiles, local) {
                if let Err(e) = notifier.process(&self.config, &mut report) {
                    eprintln!(
                        "sftpctl watch: warning: new-files letters of report {}: {e:#} (the admin's report still lists every file)",
                        report.id
                    );
                }
            }
            self.writer.append(&report)?;
            self.last_sessions
                .insert(report.user.clone(), crate::tz::rfc3339_utc(report.end));
        }
        Ok(())
    }

    /// Once a second or so while live: refresh the clock, report idle sessions.
    pub fn tick(&mut self) -> Result<()> {
        self.log_untrusted(false);
        self.log_untrusted_logins(false);
        self.wall = now_unix();
        self.clock = self.wall;
        self.sessions
            .expire(self.clock, self.idle_secs, &mut self.finished);
        let mut done = Vec::new();
        self.logins.expire(self.clock, &mut done);
        self.note_logins(done);
        self.write_login_states(false);
        self.write_hosts_seen(false);
        // Last sessions (and the policy marks) held back by commit's once-a-second rule are
        // written here when no more lines come: else they waited for the next line.
        if !self.last_sessions.is_empty()
            && !self.writer.has_uncommitted()
            && self
                .last_sessions_written
                .is_none_or(|t| t.elapsed() >= Duration::from_secs(1))
        {
            self.write_last_sessions();
        }
        if let Some(kicker) = &mut self.policy {
            kicker.tick();
        }
        self.queue_finished()
    }

    /// Makes the reports so far durable and hands them to delivery; the users' last sessions
    /// are written too if the last time was a second ago or more.
    pub fn commit(&mut self) -> Result<()> {
        self.writer.commit()?;
        if self
            .last_sessions_written
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(1))
        {
            self.write_last_sessions();
        }
        self.write_login_states(false);
        Ok(())
    }

    /// [`Engine::commit`], and the users' last sessions whatever the time (end, stop).
    pub fn commit_all(&mut self) -> Result<()> {
        self.writer.commit()?;
        self.write_last_sessions();
        self.write_login_states(true);
        self.write_hosts_seen(true);
        Ok(())
    }

    /// Reports appended since the last commit.
    pub fn uncommitted(&self) -> usize {
        self.writer.uncommitted()
    }

    fn write_last_sessions(&mut self) {
        if self.last_sessions.is_empty() {
            return;
        }
        self.last_sessions_written = Some(Instant::now());
        let mut marked = false;
        for (user, when) in std::mem::take(&mut self.last_sessions) {
            if let Err(e) = crate::registry::record_last_session(&self.config, &user, &when) {
                eprintln!("sftpctl: warning: cannot record the last session of {user}: {e:#}");
            }
            match crate::policy::runner::mark_after_session(&self.config, &user) {
                Ok(m) => marked |= m,
                Err(e) => {
                    eprintln!("sftpctl: warning: cannot mark {user} for the policy jobs: {e:#}")
                }
            }
        }
        if marked {
            if let Some(kicker) = &mut self.policy {
                kicker.request();
            }
        }
    }
}

fn now_micros() -> Option<i64> {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()
        .and_then(|d| i64::try_from(d.as_micros()).ok())
}

/// Runs `sftpctl watch` until a stop signal (live sources) or the end of the stream.
pub fn watch(config: &Config, input: Input, options: Options) -> Result<()> {
    // Bad input changes nothing: a file to follow must be readable before any state dir,
    // spool dir or pid file is made.
    if let Input::Follow(path) = &input {
        std::fs::File::open(path)
            .map_err(|e| usage(format!("cannot open {} to follow: {e}", path.display())))?;
    }
    let templates = Templates::load(config.watch.template_dir.as_deref())?;
    let notifier = super::newfiles::Notifier::load(config.watch.template_dir.as_deref())?;
    let addresses = Addresses::from_config(config)?;
    let digest = super::digest::Digest::from_config(config, addresses.clone())?;
    let mailer = Mailer::from_config(config)?;
    let state_dir = &config.watch.state_dir;
    outbox::ensure_private_dir(state_dir)?;
    let mut lock = PidLock::acquire(state_dir)?;
    let live = !matches!(input, Input::Stream(_));

    // Everything that can fail because of the admin's setup fails here, before detaching.
    let mut saved = if live {
        state::take(state_dir)?
    } else {
        Saved::default()
    };
    enum Ready {
        Live(UnixDatagram, Option<UdpSocket>),
        Follow(Follower),
        Stream(Box<dyn Read + Send>),
    }
    let ready = match input {
        Input::Live => {
            // UDP first: a taken port fails before the feed socket replaced a stale one.
            let udp = match config.watch.listen {
                Some(addr) => Some(bind_udp(addr, config.watch.receive_buffer_bytes)?),
                None => None,
            };
            let feed = bind_feed(&config.watch.socket, config.watch.receive_buffer_bytes)?;
            Ready::Live(feed, udp)
        }
        Input::Follow(path) => Ready::Follow(Follower::open(&path, saved.follow.take())?),
        Input::Stream(r) => Ready::Stream(r),
    };
    if live && !options.foreground {
        daemon::detach(&state_dir.join("watch.log"))?;
    }
    lock.write_pid()?;
    if live {
        daemon::install_stop_handlers()?;
    }
    // Shared write access (issue 5) runs beside the live watcher, after detaching: threads
    // do not survive a fork. Dropped (stopped) when this function returns.
    let _perms = if live && config.perms.enabled {
        // Its thread inherits a mask without SIGTERM/SIGINT, so they reach this thread.
        let stop = nix::sys::signal::SigSet::from_iter([
            nix::sys::signal::Signal::SIGTERM,
            nix::sys::signal::Signal::SIGINT,
        ]);
        stop.thread_block().context("cannot block stop signals")?;
        let started = crate::perms::Watcher::start(config);
        stop.thread_unblock()
            .context("cannot unblock stop signals")?;
        // Mail reports are the watcher's first job: it goes on without shared write access,
        // says so here (the journal or watch.log) and `sftpctl doctor` reports it.
        match started {
            Ok(watcher) => Some(watcher),
            Err(e) => {
                eprintln!(
                    "sftpctl watch: warning: shared write access is not running: {e:#} (files uploaded now keep the mode the client asked for; `sftpctl doctor --fix` repairs them later)"
                );
                None
            }
        }
    } else {
        None
    };

    let outbox_dir = state_dir.join("outbox");
    let mut writer = Writer::open(&outbox_dir)?;
    writer.limit_reports(outbox::ReportLimits::from_config(&config.watch));
    let shared = writer.shared();
    let mut engine = Engine::new(config, writer);
    engine.trust_unverified = options.trust_unverified;
    engine.notify_new_files_with(notifier);
    if live && options.run_policy {
        if let Some(kicker) =
            crate::policy::kick::Kicker::for_watcher(options.config_path.as_deref())
        {
            engine.run_policy_with(kicker);
        }
    }
    engine.sessions.restore(saved.sessions, now_unix());
    let policy = RetryPolicy {
        first: options.retry_first,
        max: Duration::from_secs(config.mail.retry_max_secs),
        attempts_after_close: if live { None } else { Some(3) },
    };
    let delivery = Delivery::new(
        &outbox_dir,
        shared.clone(),
        mailer,
        templates,
        addresses,
        policy,
    )
    .with_digest(digest);
    let deliverer = std::thread::Builder::new()
        .name("delivery".into())
        .spawn(move || delivery.run())
        .context("cannot start the delivery thread")?;

    match ready {
        Ready::Stream(reader) => {
            let result = read_stream(&mut engine, reader);
            finish_stream(engine, deliverer, &outbox_dir, result)
        }
        Ready::Live(feed, udp) => {
            let udp_text = match config.watch.listen {
                Some(addr) => format!(" and on udp {addr} (unverified lines: anyone who can send there can forge reports)"),
                None => String::new(),
            };
            eprintln!(
                "sftpctl watch: listening on {}{udp_text} (pid {})",
                config.watch.socket.display(),
                std::process::id()
            );
            super::notify::ready();
            let result = read_live(&mut engine, &feed, udp.as_ref());
            drop(feed);
            let _ = std::fs::remove_file(&config.watch.socket);
            stop_live(engine, shared, deliverer, state_dir, None, result)
        }
        Ready::Follow(mut follower) => {
            let result = read_follow(&mut engine, &mut follower);
            let position = follower.position();
            stop_live(engine, shared, deliverer, state_dir, Some(position), result)
        }
    }
}

/// Group commit of a stream: the outbox is synced when no more input is queued (a pipe that
/// paused), else after this many reports or this long. A replay of a file is read far faster
/// than it is delivered, so it syncs a few dozen times in all, and delivery starts after the
/// first thousand reports instead of after the whole input.
const STREAM_GROUP_REPORTS: usize = 1024;
const STREAM_GROUP_TIME: Duration = Duration::from_millis(50);

/// Reads the stream on a thread of its own in chunks of 256 KiB (so that "nothing more queued"
/// can be seen without blocking), and parses each line in place, without a copy. At most
/// about ten chunks exist at once (2.5 MiB).
fn read_stream(engine: &mut Engine, mut reader: Box<dyn Read + Send>) -> Result<()> {
    use std::sync::mpsc::{sync_channel, TryRecvError};
    const CHUNK: usize = 256 << 10;
    let (chunks, received) = sync_channel::<std::io::Result<Vec<u8>>>(4);
    // Used buffers go back to the reader: no fresh buffer (and its page faults) per read.
    let (give_back, returned) = sync_channel::<Vec<u8>>(4);
    std::thread::Builder::new()
        .name("input".into())
        .spawn(move || loop {
            let mut chunk = returned.try_recv().unwrap_or_default();
            chunk.resize(CHUNK, 0);
            let n = match reader.read(&mut chunk) {
                Ok(0) => return,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    let _ = chunks.send(Err(e));
                    return;
                }
            };
            chunk.truncate(n);
            if chunks.send(Ok(chunk)).is_err() {
                return;
            }
        })
        .context("cannot start the input thread")?;

    // The start of a line whose end is in a later chunk.
    let mut partial: Vec<u8> = Vec::new();
    let mut last_commit = Instant::now();
    loop {
        let chunk = match received.try_recv() {
            Ok(chunk) => chunk,
            Err(TryRecvError::Empty) => {
                // Nothing more queued: make the reports so far durable, then wait.
                if engine.uncommitted() > 0 {
                    engine.commit()?;
                    last_commit = Instant::now();
                }
                match received.recv() {
                    Ok(chunk) => chunk,
                    Err(_) => break,
                }
            }
            Err(TryRecvError::Disconnected) => break,
        };
        let chunk = chunk.context("cannot read the input")?;
        let mut rest = &chunk[..];
        if !partial.is_empty() {
            match rest.iter().position(|&b| b == b'\n') {
                Some(end) => {
                    partial.extend_from_slice(&rest[..end]);
                    engine.line(&partial, false)?;
                    partial.clear();
                    rest = &rest[end + 1..];
                }
                None => {
                    partial.extend_from_slice(rest);
                    rest = &[];
                }
            }
        }
        match rest.iter().rposition(|&b| b == b'\n') {
            Some(last) => {
                for line in rest[..last].split(|&b| b == b'\n') {
                    engine.line(line, false)?;
                }
                partial.extend_from_slice(&rest[last + 1..]);
            }
            None => partial.extend_from_slice(rest),
        }
        let _ = give_back.try_send(chunk);
        if engine.uncommitted() >= STREAM_GROUP_REPORTS
            || (engine.uncommitted() > 0 && last_commit.elapsed() >= STREAM_GROUP_TIME)
        {
            engine.commit()?;
            last_commit = Instant::now();
        }
    }
    if !partial.is_empty() {
        engine.line(&partial, false)?;
    }
    engine.finish_logins();
    engine.commit_all()
}

fn finish_stream(
    mut engine: Engine,
    deliverer: JoinHandle<Outcome>,
    outbox_dir: &Path,
    result: Result<()>,
) -> Result<()> {
    let closed = engine.writer.close();
    let outcome = deliverer
        .join()
        .map_err(|_| anyhow::anyhow!("the delivery thread panicked"))?;
    result?;
    closed?;
    let stats = engine.sessions.stats;
    let open = engine.sessions.open_count();
    if stats.untrusted_lines > 0 {
        eprintln!("{}", untrusted_summary("sftpctl watch", &engine.sessions));
    }
    eprintln!(
        "sftpctl watch: {} lines read ({} unreadable, {} untrusted), {} reports delivered{}",
        stats.lines,
        stats.unreadable_lines,
        stats.untrusted_lines,
        outcome.delivered,
        if open > 0 {
            format!(", {open} sessions still open at the end of input (not reported)")
        } else {
            String::new()
        }
    );
    let pending = outbox::count_pending(outbox_dir)?;
    if pending > 0 {
        anyhow::bail!(
            "{pending} reports could not be delivered and wait in {}; the next `sftpctl watch` delivers them",
            outbox_dir.display()
        );
    }
    Ok(())
}

/// Reads the feed socket (and the UDP socket, when configured) until a stop signal.
fn read_live(engine: &mut Engine, feed: &UnixDatagram, udp: Option<&UdpSocket>) -> Result<()> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use std::os::fd::AsFd;
    let mut buf = vec![0u8; 65_536];
    let mut last_tick = Instant::now();
    loop {
        if daemon::stop_requested() {
            engine.log_untrusted(true);
            engine.log_untrusted_logins(true);
            return Ok(());
        }
        let mut got = false;
        // Everything queued on both sockets, then one commit.
        loop {
            let mut any = false;
            match recv_with_uid(feed, &mut buf, MsgFlags::MSG_DONTWAIT) {
                Ok((n, uid)) => {
                    any = true;
                    // Only rsyslog (root) can open the socket; anything else is not believed.
                    if uid == Some(0) {
                        engine_datagram(engine, &buf[..n], Origin::Rsyslog)?;
                    } else {
                        engine.datagram_not_from_root(uid);
                    }
                }
                Err(Errno::EAGAIN | Errno::EINTR) => {}
                Err(e) => return Err(e).context("cannot receive from the watcher's socket"),
            }
            if let Some(udp) = udp {
                match recv(udp.as_raw_fd(), &mut buf, MsgFlags::MSG_DONTWAIT) {
                    Ok(n) => {
                        any = true;
                        engine_datagram(engine, &buf[..n], Origin::Udp)?;
                    }
                    Err(Errno::EAGAIN | Errno::EINTR) => {}
                    Err(e) => return Err(e).context("cannot receive from the UDP socket"),
                }
            }
            if !any || daemon::stop_requested() {
                break;
            }
            got = true;
        }
        if got {
            engine.commit()?;
        }
        if last_tick.elapsed() >= Duration::from_secs(1) {
            last_tick = Instant::now();
            engine.tick()?;
        }
        if !got {
            let mut fds = vec![PollFd::new(feed.as_fd(), PollFlags::POLLIN)];
            if let Some(udp) = udp {
                fds.push(PollFd::new(udp.as_fd(), PollFlags::POLLIN));
            }
            match poll(&mut fds, PollTimeout::from(200u16)) {
                Ok(_) | Err(Errno::EINTR) => {}
                Err(e) => return Err(e).context("cannot wait for the sockets"),
            }
        }
    }
}

/// One datagram: one line, as rsyslog sends them; a sender that batches lines is tolerated.
fn engine_datagram(engine: &mut Engine, datagram: &[u8], origin: Origin) -> Result<()> {
    for line in datagram.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        engine.line_from(line, true, origin)?;
    }
    Ok(())
}

fn read_follow(engine: &mut Engine, follower: &mut Follower) -> Result<()> {
    let mut last_tick = Instant::now();
    loop {
        if daemon::stop_requested() {
            return Ok(());
        }
        let mut failed = None;
        let got = follower.poll(&mut |line: &[u8]| {
            if failed.is_none() {
                if let Err(e) = engine.line(line, true) {
                    failed = Some(e);
                }
            }
        })?;
        if let Some(e) = failed {
            return Err(e);
        }
        engine.commit()?;
        if last_tick.elapsed() >= Duration::from_secs(1) {
            last_tick = Instant::now();
            engine.tick()?;
        }
        if !got {
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// One line for the end of a replay: how many lines were dropped as untrusted, and why.
pub fn untrusted_summary(who: &str, sessions: &Sessions) -> String {
    let last = sessions
        .trust
        .last_dropped
        .as_ref()
        .map(|d| format!(" (the last: {d})"))
        .unwrap_or_default();
    let hint = if matches!(
        sessions.trust.last_dropped.as_ref().map(|d| d.why),
        Some(Untrusted::NoCredentials)
    ) {
        "; lines written before the trusted feed (no [uid= pid=] fields) are read with --trust-unverified"
    } else {
        ""
    };
    format!(
        "{who}: {} internal-sftp line(s) were not sent by the session's own process and were skipped{last}{hint}",
        sessions.stats.untrusted_lines
    )
}

/// Saves open sessions and stops delivery (what is left stays in the outbox).
fn stop_live(
    mut engine: Engine,
    shared: std::sync::Arc<outbox::Shared>,
    deliverer: JoinHandle<Outcome>,
    state_dir: &Path,
    follow: Option<state::FollowPosition>,
    result: Result<()>,
) -> Result<()> {
    let committed = engine.commit_all();
    let sessions = engine.sessions.take_all();
    let count = sessions.len();
    let saved = state::save(state_dir, &Saved { sessions, follow });
    shared.stop();
    // Give a send in progress time to finish so it is acknowledged, not repeated.
    let until = Instant::now() + Duration::from_secs(10);
    while !deliverer.is_finished() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(20));
    }
    if deliverer.is_finished() {
        let _ = deliverer.join();
    }
    eprintln!("sftpctl watch: stopped; {count} open sessions saved");
    result?;
    committed?;
    saved
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hands out its data a few bytes per read, like a slow pipe.
    struct Trickle(Vec<u8>, usize);

    impl Read for Trickle {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = self.1.min(buf.len()).min(self.0.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0.drain(..n);
            Ok(n)
        }
    }

    /// Lines read, reports in the outbox.
    fn replay(input: Box<dyn Read + Send>, name: &str) -> (u64, u64) {
        let dir =
            std::env::temp_dir().join(format!("sftpctl-stream-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut config = Config::default();
        config.watch.state_dir = dir.clone();
        let writer = Writer::open(&dir.join("outbox")).unwrap();
        let mut engine = Engine::new(&config, writer);
        // The capture predates the trusted feed: its lines carry no credentials.
        engine.trust_unverified = true;
        read_stream(&mut engine, input).unwrap();
        let lines = engine.sessions.stats.lines;
        let pending = outbox::count_pending(&dir.join("outbox")).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        (lines, pending)
    }

    #[test]
    fn stream_lines_cut_across_reads_are_read_whole() {
        let log = include_str!("../../tests/fixtures/openssh-9.2-rsyslog-file.log");
        let mut input = log.as_bytes().to_vec();
        // A last line without its newline still counts.
        input.truncate(input.len() - 1);
        let whole = replay(Box::new(std::io::Cursor::new(input.clone())), "whole");
        assert_eq!(whole.0 as usize, log.lines().count());
        assert!(whole.1 >= 2, "{whole:?}");
        for step in [1, 7, 100] {
            let cut = replay(
                Box::new(Trickle(input.clone(), step)),
                &format!("cut{step}"),
            );
            assert_eq!(cut, whole, "{step} bytes per read");
        }
    }
}
