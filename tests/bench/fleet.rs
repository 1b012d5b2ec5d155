//! `cargo bench --bench fleet`: one collector (its real rsyslogd with the TLS listener
//! `sftpctl init` writes, and the real watcher mailing into its spool) fed by simulated
//! forwarding hosts: one TLS connection each with a client certificate, sending what a
//! forwarding host's rsyslog sends (octet-counted `sftpctl-forward` messages, every line
//! twice, the accounts line first). Run as root; needs rsyslog-gnutls and gnutls-bin.
//!
//! 1. Throughput with no loss: every host sends `SESSIONS` whole sessions as fast as it can;
//!    the time until the collector's outbox has mailed every report, all complete, and the
//!    log file holds every line sent (both copies).
//! 2. Memory: every host opens `OPEN` sessions and leaves them open (100 hosts × 100 = 10,000
//!    open sessions at the collector): the watcher's resident memory.
//! 3. Latency: the open sessions are closed, `CLOSE_RATE` closes a second over all hosts;
//!    for each, the time from sending its close line to its mail in the spool (written after
//!    the outbox: an upper bound of close → outbox), p50/p99/max.
//!
//! `FLEET_BENCH_HOSTS` (default 100), `FLEET_BENCH_SESSIONS` (20 per host),
//! `FLEET_BENCH_OPEN` (100 per host), `FLEET_BENCH_CLOSE_RATE` (500 a second).

#[path = "../support/mod.rs"]
mod support;

use std::io::Write;
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use support::pki::Ca;
use support::{free_tcp_port, Sandbox};

fn env_or(key: &str, default: usize) -> usize {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One simulated forwarding host: its name, its client's uid and account, its TLS stream.
struct SimHost {
    name: String,
    user: String,
    uid: u32,
    stream: rustls::StreamOwned<rustls::ClientConnection, TcpStream>,
    clock_us: i64,
}

impl SimHost {
    fn connect(n: usize, port: u16, tls: &Arc<rustls::ClientConfig>) -> SimHost {
        // rsyslog opens its TCP listener a moment after its sockets.
        let start = Instant::now();
        let tcp = loop {
            match TcpStream::connect(("127.0.0.1", port)) {
                Ok(t) => break t,
                Err(e) if start.elapsed() > Duration::from_secs(10) => {
                    panic!("connect to the collector: {e}")
                }
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        };
        tcp.set_nodelay(true).unwrap();
        let name = ServerName::try_from("collector.test").unwrap();
        let conn = rustls::ClientConnection::new(tls.clone(), name).unwrap();
        let now_us = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_micros() as i64;
        SimHost {
            name: format!("sim-{n}"),
            user: format!("simuser{n}"),
            uid: 30_000 + n as u32,
            stream: rustls::StreamOwned::new(conn, tcp),
            clock_us: now_us,
        }
    }

    /// A forwarded line, twice, as a forwarding host's rsyslog sends it.
    fn line(&mut self, out: &mut Vec<u8>, uid: u32, pid: u32, tag: &str, msg: &str) {
        self.clock_us += 1;
        let time = jiff::Timestamp::from_microsecond(self.clock_us)
            .unwrap()
            .strftime("%Y-%m-%dT%H:%M:%S%.6f+00:00")
            .to_string();
        let inner = format!(
            "{time} {host} [uid={uid} pid={pid} exe=/usr/lib/openssh/sftp-server] {tag}[{pid}]: {msg}",
            host = self.name
        );
        let frame = format!("<13>{time} {} sftpctl-forward: {inner}", self.name);
        for _ in 0..2 {
            out.extend_from_slice(format!("{} {frame}", frame.len()).as_bytes());
        }
    }

    fn announce(&mut self) {
        let mut out = Vec::new();
        let msg = format!("v1 1 1/1 {}:{}", self.user, self.uid);
        self.line(&mut out, 0, 1, "sftpctl-accounts", &msg);
        self.send(&out);
    }

    fn open(&mut self, out: &mut Vec<u8>, pid: u32, file: &str) {
        let (uid, user) = (self.uid, self.user.clone());
        let m = [
            format!("session opened for local user {user} from [192.0.2.7]"),
            format!("open \"/data/{file}\" flags WRITE,CREATE,TRUNCATE mode 0644"),
            format!("close \"/data/{file}\" bytes read 0 written 4096"),
        ];
        for msg in m {
            self.line(out, uid, pid, "internal-sftp", &msg);
        }
    }

    fn close(&mut self, out: &mut Vec<u8>, pid: u32) {
        let (uid, user) = (self.uid, self.user.clone());
        let msg = format!("session closed for local user {user} from [192.0.2.7]");
        self.line(out, uid, pid, "internal-sftp", &msg);
    }

    fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("send to the collector");
        self.stream.flush().unwrap();
    }
}

fn tls_config(ca: &Ca, cert: &str, key: &str) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca.pem()).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .unwrap()
        .map(|c| c.unwrap())
        .collect();
    // certtool writes SEC1 ("EC PRIVATE KEY"); ring takes PKCS#8.
    let pkcs8 = format!("{key}.p8");
    let status = std::process::Command::new("openssl")
        .args(["pkey", "-in", key, "-out", &pkcs8])
        .status()
        .expect("run openssl");
    assert!(status.success(), "openssl pkey");
    let key = PrivateKeyDer::from_pem_file(&pkcs8).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .unwrap();
    Arc::new(config)
}

fn mails(spool: &Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(spool)
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "eml"))
                .collect()
        })
        .unwrap_or_default()
}

fn count_lines(path: &Path) -> usize {
    std::fs::read(path)
        .map(|b| b.iter().filter(|&&c| c == b'\n').count())
        .unwrap_or(0)
}

fn vm_kib(pid: u32, key: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !done() {
        if start.elapsed() > timeout {
            panic!("fleet bench: {what} did not happen within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    start.elapsed()
}

fn main() {
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return;
    }
    let hosts = env_or("FLEET_BENCH_HOSTS", 100);
    let sessions = env_or("FLEET_BENCH_SESSIONS", 20);
    let open = env_or("FLEET_BENCH_OPEN", 100);
    let close_rate = env_or("FLEET_BENCH_CLOSE_RATE", 500).max(1);

    let mut sb = Sandbox::new();
    let ca = Ca::new(&sb.path("pki"), "fleet bench CA");
    let (cert, key) = ca.issue("collector.test");
    let (sim_cert, sim_key) = ca.issue("sim.test");
    let port = free_tcp_port();
    sb.edit_config(
        "[watch]\n",
        &format!(
            "[collect]\nenabled = true\nlisten = \"127.0.0.1:{port}\"\nca = \"{}\"\ncert = \"{cert}\"\nkey = \"{key}\"\npermitted = [\"sim.test\"]\n\n[watch]\n",
            ca.pem()
        ),
    );
    sb.sftpctl_ok(&["init"]);
    sb.start_rsyslogd();
    sb.start_watcher();
    let watcher = sb.watcher_pid().expect("the watcher's pid");
    let spool = sb.path("spool");
    let tls = tls_config(&ca, &sim_cert, &sim_key);
    let mut sims: Vec<SimHost> = (0..hosts)
        .map(|n| SimHost::connect(n, port, &tls))
        .collect();
    for s in &mut sims {
        s.announce();
    }
    let tables = sb.path("state/fleet/accounts.json");
    wait_for("every host's accounts", Duration::from_secs(60), || {
        std::fs::read_to_string(&tables).is_ok_and(|t| t.matches("simuser").count() >= hosts)
    });
    let rss_idle = vm_kib(watcher, "VmRSS:");

    // 1. Throughput: whole sessions from every host at once.
    let mut batches: Vec<Vec<u8>> = Vec::new();
    for s in &mut sims {
        let mut out = Vec::new();
        for k in 0..sessions {
            let pid = 100_000 + k as u32;
            s.open(&mut out, pid, &format!("t-{}-{k}.pdf", s.name));
            s.close(&mut out, pid);
        }
        batches.push(out);
    }
    let lines_sent = hosts * sessions * 4;
    let log_before = count_lines(&sb.log_file);
    let start = Instant::now();
    std::thread::scope(|scope| {
        for (s, out) in sims.iter_mut().zip(&batches) {
            scope.spawn(move || s.send(out));
        }
    });
    let sent_in = start.elapsed();
    let want = hosts * sessions;
    // Until every report is mailed, or nothing more came for 20 s (then the loss is shown).
    let (mut last, mut last_change) = (0, Instant::now());
    while mails(&spool).len() < want && last_change.elapsed() < Duration::from_secs(20) {
        let now = mails(&spool).len();
        if now != last {
            (last, last_change) = (now, Instant::now());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let took = start.elapsed();
    if mails(&spool).len() < want {
        let log = std::fs::read_to_string(sb.path("run/watch.log")).unwrap_or_default();
        println!(
            "fleet: the watcher said:\n{}",
            log.lines().rev().take(8).collect::<Vec<_>>().join("\n")
        );
    }
    let logged = count_lines(&sb.log_file) - log_before;
    let incomplete = mails(&spool)
        .iter()
        .filter(|p| std::fs::read_to_string(p).is_ok_and(|t| t.contains("INCOMPLETE")))
        .count();
    println!(
        "fleet: {hosts} hosts over TLS, {want} sessions, {lines_sent} lines (each sent twice: {} frames) in {:.2} s to the last mail (sent in {:.2} s): {:.0} lines/s, {:.0} sessions/s",
        lines_sent * 2,
        took.as_secs_f64(),
        sent_in.as_secs_f64(),
        lines_sent as f64 / took.as_secs_f64(),
        want as f64 / took.as_secs_f64()
    );
    println!(
        "fleet: loss: {} of {want} reports missing, {incomplete} incomplete; the collector's log holds {logged} of {} frames",
        want - mails(&spool).len().min(want),
        lines_sent * 2
    );

    // 2. Memory with hosts × open sessions.
    let mails_before = mails(&spool).len();
    let log_before = count_lines(&sb.log_file);
    std::thread::scope(|scope| {
        for s in sims.iter_mut() {
            scope.spawn(move || {
                let mut out = Vec::new();
                for k in 0..open {
                    let pid = 200_000 + k as u32;
                    s.open(&mut out, pid, &format!("m-{}-{k}.pdf", s.name));
                }
                s.send(&out);
            });
        }
    });
    let frames = hosts * open * 3 * 2;
    wait_for(
        "every open session's lines in the log",
        Duration::from_secs(600),
        || count_lines(&sb.log_file) - log_before >= frames,
    );
    // The watcher reads from its socket right behind rsyslog's file: a moment to catch up.
    std::thread::sleep(Duration::from_secs(2));
    let rss_open = vm_kib(watcher, "VmRSS:");
    println!(
        "fleet: memory: watcher resident {} KiB with {} open sessions of {hosts} hosts ({} KiB before them; peak so far {} KiB)",
        rss_open,
        hosts * open,
        rss_idle,
        vm_kib(watcher, "VmHWM:")
    );

    // 3. Latency: close them at close_rate a second over all hosts.
    let per_host_gap = Duration::from_secs_f64(hosts as f64 / close_rate as f64);
    let sent_at: Vec<Vec<SystemTime>> = std::thread::scope(|scope| {
        let handles: Vec<_> = sims
            .iter_mut()
            .enumerate()
            .map(|(i, s)| {
                scope.spawn(move || {
                    // Spread the hosts over one gap so that closes come evenly.
                    std::thread::sleep(per_host_gap.mul_f64(i as f64 / hosts as f64));
                    let mut times = Vec::new();
                    for k in 0..open {
                        let mut out = Vec::new();
                        s.close(&mut out, 200_000 + k as u32);
                        times.push(SystemTime::now());
                        s.send(&out);
                        std::thread::sleep(per_host_gap);
                    }
                    times
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let want = mails_before + hosts * open;
    wait_for(
        "every closed session's mail",
        Duration::from_secs(600),
        || mails(&spool).len() >= want,
    );
    let mut latencies = Vec::new();
    for path in mails(&spool) {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let Some(at) = text.find("m-sim-") else {
            continue;
        };
        let id = &text[at + 2..];
        let id: String = id.chars().take_while(|c| *c != '.').collect();
        let mut parts = id.split('-').skip(1);
        let (Some(h), Some(k)) = (parts.next(), parts.next()) else {
            continue;
        };
        let (Ok(h), Ok(k)) = (h.parse::<usize>(), k.parse::<usize>()) else {
            continue;
        };
        let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
        let sent = sent_at[h][k];
        latencies.push(mtime.duration_since(sent).unwrap_or_default());
    }
    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    println!(
        "fleet: close line sent -> mail in the spool, {} sessions closed at {close_rate}/s: p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        latencies.len(),
        pct(0.50).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
        latencies.last().unwrap().as_secs_f64() * 1e3
    );
}
