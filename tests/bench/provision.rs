//! `make bench` (provisioning half): what add-user and refresh-log-links cost as jails grow.
//!
//! Needs root. Builds a throwaway exchange under /srv (users and groups with a unique prefix,
//! removed at the end), then measures
//! - add-user: mean wall time of the first and the last 10 of N users (N = SFTPCTL_BENCH_USERS,
//!   default 200): the ratio shows whether the cost grows with the number of jails;
//! - refresh-log-links over all N jails when every link is stale (a new socket inode, as after
//!   an rsyslog restart), and when every link is fresh;
//! - doctor over all N users: wall time, and the part outside the parallel `sshd -T` calls
//!   (from the hidden `--timings` breakdown); the target is <= 2 s for 1,000 users without them.
//!
//! No sshd or rsyslogd is needed: the socket is bound here.

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_sftpctl");

struct Bench {
    dir: PathBuf,
    prefix: String,
    users: Vec<String>,
}

impl Drop for Bench {
    fn drop(&mut self) {
        for u in &self.users {
            let _ = Command::new("userdel").arg(u).output();
        }
        for g in ["g", "j"] {
            let _ = Command::new("groupdel")
                .arg(format!("{}{g}", self.prefix))
                .output();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn sftpctl(config: &Path, args: &[&str]) -> Duration {
    let start = Instant::now();
    let out = Command::new(BIN)
        .arg("--config")
        .arg(config)
        .args(args)
        .output()
        .expect("run sftpctl");
    let took = start.elapsed();
    assert!(
        out.status.success(),
        "sftpctl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    took
}

fn bind_socket(path: &Path) -> UnixDatagram {
    let _ = std::fs::remove_file(path);
    UnixDatagram::bind(path).expect("bind the log socket")
}

fn main() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("bench provision: needs root (it creates accounts); skipped");
        return;
    }
    let n: usize = std::env::var("SFTPCTL_BENCH_USERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200)
        .max(20);
    let prefix = format!("b{}", std::process::id() % 100_000);
    let dir = PathBuf::from(format!("/srv/sftpctl-bench-{prefix}"));
    let mut bench = Bench {
        dir: dir.clone(),
        prefix: prefix.clone(),
        users: vec![],
    };
    std::fs::create_dir_all(dir.join("etc/ssh/sshd_config.d")).unwrap();
    ssh_keygen(&dir.join("etc/ssh/hostkey"));
    std::fs::write(
        dir.join("etc/ssh/sshd_config"),
        format!(
            "Include {d}/etc/ssh/sshd_config.d/*.conf\nHostKey {d}/etc/ssh/hostkey\nUsePAM no\nSubsystem sftp /usr/lib/openssh/sftp-server\n",
            d = dir.display()
        ),
    )
    .unwrap();
    let config = dir.join("sftpctl.toml");
    std::fs::write(
        &config,
        format!(
            r#"root = "{d}/jails"
group = "{p}g"
jail_group = "{p}j"
[sshd]
config = "{d}/etc/ssh/sshd_config"
dropin = "{d}/etc/ssh/sshd_config.d/50-sftpctl.conf"
authorized_keys_dir = "{d}/etc/ssh/keys"
reload = []
[pam]
file = "{d}/etc/pam.d/sshd"
[rsyslog]
config = "{d}/etc/rsyslog.d/50-sftpctl.conf"
main_config = "{d}/etc/rsyslog.conf"
log_file = "{d}/log/sftp.log"
restart = []
[logrotate]
config = "{d}/etc/logrotate.d/sftpctl"
[systemd]
unit_dir = "{d}/systemd"
daemon_reload = []
enable_watch = []
[watch]
state_dir = "{d}/state"
[mail]
spool_dir = "{d}/spool"
"#,
            d = dir.display(),
            p = prefix
        ),
    )
    .unwrap();
    sftpctl(&config, &["init"]);
    let socket = dir.join("jails/dev/log");
    let mut _sock = bind_socket(&socket);

    let mut times = Vec::with_capacity(n);
    for i in 0..n {
        let name = format!("{prefix}u{i}");
        bench.users.push(name.clone());
        times.push(sftpctl(&config, &["add-user", &name]));
    }
    let mean = |d: &[Duration]| d.iter().sum::<Duration>().as_secs_f64() / d.len() as f64;
    let first = mean(&times[..10]);
    let last = mean(&times[n - 10..]);
    println!(
        "add-user: first 10 {:.1} ms, last 10 (with {} jails present) {:.1} ms, ratio {:.2}",
        first * 1e3,
        n - 10,
        last * 1e3,
        last / first
    );

    _sock = bind_socket(&socket); // new inode: every link is stale, as after an rsyslog restart
    let stale = sftpctl(&config, &["refresh-log-links"]);
    let fresh = sftpctl(&config, &["refresh-log-links"]);
    println!(
        "refresh-log-links over {n} jails: all stale {:.1} ms ({:.1} µs a jail), all fresh {:.1} ms",
        stale.as_secs_f64() * 1e3,
        stale.as_secs_f64() * 1e6 / n as f64,
        fresh.as_secs_f64() * 1e3
    );

    let (wall, timings) = doctor(&config, &[]);
    let sshd_t = timings
        .iter()
        .find(|(k, _)| k.starts_with("sshd -T"))
        .map_or(0.0, |(_, v)| *v);
    let checks = timings
        .iter()
        .find(|(k, _)| k == "checks total")
        .map_or(0.0, |(_, v)| *v);
    println!(
        "doctor over {n} users: {:.0} ms wall ({:.2} ms a user); checks {:.0} ms, of which sshd -T (parallel) {:.0} ms; without sshd -T {:.0} ms ({:.2} ms a user)",
        wall * 1e3,
        wall * 1e3 / n as f64,
        checks,
        sshd_t,
        checks - sshd_t,
        (checks - sshd_t) / n as f64
    );
    for (k, v) in &timings {
        println!("  doctor {k}: {v:.1} ms");
    }
    let (one, _) = doctor(&config, &["--user", &format!("{prefix}u0")]);
    println!("doctor --user (one of {n} users): {:.0} ms wall", one * 1e3);
    drop(bench);
}

/// Runs `doctor --timings ARGS` (exit 0 or 1: the bench exchange has no keys, sshd or
/// watcher, so some checks warn or fail); returns the wall time and the `timing:` lines.
fn doctor(config: &Path, args: &[&str]) -> (f64, Vec<(String, f64)>) {
    let start = Instant::now();
    let out = Command::new(BIN)
        .arg("--config")
        .arg(config)
        .args(["doctor", "--timings"])
        .args(args)
        .output()
        .expect("run sftpctl doctor");
    let wall = start.elapsed().as_secs_f64();
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "sftpctl doctor failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let timings = String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter_map(|l| l.strip_prefix("timing: "))
        .filter_map(|l| {
            let l = l.strip_suffix(" ms")?;
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect();
    (wall, timings)
}

fn ssh_keygen(path: &Path) {
    let ok = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(path)
        .status()
        .expect("ssh-keygen")
        .success();
    assert!(ok);
}
