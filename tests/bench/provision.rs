//! `make bench` (provisioning half): what provisioning costs as jails grow. Needs root.
//!
//! Builds a throwaway exchange under /srv (accounts and groups with a unique prefix, removed
//! at the end) and measures:
//! - `apply` of N users (N = SFTPCTL_BENCH_USERS, default 1000) against N bare `useradd`s;
//! - add-user with no jail present against add-user with N jails present (mean of 5 each);
//! - refresh-log-links over J jails (J = SFTPCTL_BENCH_JAILS, default 10000) when every link
//!   is stale (a new socket inode, as after an rsyslog restart), and when every link is fresh.
//!   Creating J real accounts would take minutes, so this part runs in a private mount
//!   namespace where a copy of /etc/group lists J members of the jail group; the host's
//!   /etc/group is never touched.
//! - doctor over the N+10 users: wall time, and the part outside the parallel `sshd -T` calls
//!   (from the hidden `--timings` breakdown); the target is <= 2 s for 1,000 users without them.
//!
//! No sshd or rsyslogd is needed: the log socket is bound here.

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_sftpctl");

struct Bench {
    dir: PathBuf,
    prefix: String,
    config: PathBuf,
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

impl Bench {
    fn sftpctl(&self, args: &[&str]) -> Duration {
        let start = Instant::now();
        let out = Command::new(BIN)
            .arg("--config")
            .arg(&self.config)
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

    fn add_users(&mut self, tag: &str, count: usize) -> f64 {
        let mut total = Duration::ZERO;
        for i in 0..count {
            let name = format!("{}{tag}{i}", self.prefix);
            self.users.push(name.clone());
            total += self.sftpctl(&["add-user", &name]);
        }
        total.as_secs_f64() / count as f64
    }
}

fn env_usize(key: &str, default: usize) -> usize {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
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
    let n = env_usize("SFTPCTL_BENCH_USERS", 1000).max(10);
    let jails = env_usize("SFTPCTL_BENCH_JAILS", 10_000).max(10);
    let prefix = format!("b{}", std::process::id() % 100_000);
    let dir = PathBuf::from(format!("/srv/sftpctl-bench-{prefix}"));
    let mut bench = Bench {
        config: dir.join("sftpctl.toml"),
        dir: dir.clone(),
        prefix: prefix.clone(),
        users: vec![],
    };
    setup(&bench);
    bench.sftpctl(&["init"]);
    let socket = dir.join("jails/dev/log");
    let mut _sock = bind_socket(&socket);

    let first = bench.add_users("first", 5);

    let useradd = time_useradd(&mut bench, 20);
    let users_file = dir.join("users.toml");
    let mut text = String::new();
    for i in 0..n {
        let name = format!("{prefix}a{i}");
        text.push_str(&format!("[[user]]\nname = \"{name}\"\n"));
        bench.users.push(name);
    }
    std::fs::write(&users_file, text).unwrap();
    let apply = bench.sftpctl(&["apply", users_file.to_str().unwrap()]);
    let again = bench.sftpctl(&["apply", users_file.to_str().unwrap()]);
    println!(
        "apply of {n} users: {:.2} s ({:.1} ms a user); bare useradd {:.1} ms a user; ratio {:.2}; second apply (no change) {:.2} s",
        apply.as_secs_f64(),
        apply.as_secs_f64() * 1e3 / n as f64,
        useradd * 1e3,
        apply.as_secs_f64() / n as f64 / useradd,
        again.as_secs_f64()
    );

    let last = bench.add_users("last", 5);
    // useradd itself rewrites /etc/passwd, /etc/shadow and /etc/group, which grow with every
    // account: measure it again with the same database to tell its growth from ours.
    let useradd_last = time_useradd_tagged(&mut bench, "ub", 20);
    println!(
        "add-user: {:.1} ms with 0 jails, {:.1} ms with {} jails present, ratio {:.2}; bare useradd {:.1} ms then {:.1} ms; sftpctl's own part {:.1} ms then {:.1} ms",
        first * 1e3,
        last * 1e3,
        n + 5,
        last / first,
        useradd * 1e3,
        useradd_last * 1e3,
        (first - useradd) * 1e3,
        (last - useradd_last) * 1e3
    );

    doctor_at_scale(&bench, n + 10);

    refresh_at_scale(&bench, jails, &socket);
    drop(_sock);
}

/// Mean wall time of a bare `useradd` with the flags sftpctl uses, jail group included (the
/// floor for apply and add-user).
fn time_useradd(bench: &mut Bench, count: usize) -> f64 {
    time_useradd_tagged(bench, "ua", count)
}

fn time_useradd_tagged(bench: &mut Bench, tag: &str, count: usize) -> f64 {
    let start = Instant::now();
    for i in 0..count {
        let name = format!("{}{tag}{i}", bench.prefix);
        bench.users.push(name.clone());
        let ok = Command::new("useradd")
            .args(["-M", "-g", &format!("{}g", bench.prefix), "-d", "/data"])
            .args(["-G", &format!("{}j", bench.prefix)])
            .args(["-s", "/usr/sbin/nologin", "-p", "*", &name])
            .status()
            .unwrap()
            .success();
        assert!(ok, "useradd {name}");
    }
    start.elapsed().as_secs_f64() / count as f64
}

/// refresh-log-links over `count` jail dirs, in a mount namespace whose /etc/group lists
/// them all as members of the jail group.
fn refresh_at_scale(bench: &Bench, count: usize, socket: &Path) {
    let root = bench.dir.join("jails");
    let mut members = Vec::with_capacity(count);
    for i in 0..count {
        let name = format!("{}j{i}", bench.prefix);
        std::fs::create_dir_all(root.join(&name).join("dev")).unwrap();
        members.push(name);
    }
    let jail_group = format!("{}j:", bench.prefix);
    let group: String = std::fs::read_to_string("/etc/group")
        .unwrap()
        .lines()
        .map(|l| {
            if l.starts_with(&jail_group) {
                format!("{l},{}\n", members.join(","))
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    let fake = bench.dir.join("group");
    std::fs::write(&fake, group).unwrap();
    let run = |label: &str| {
        let script = format!(
            "mount --bind {fake} /etc/group && {bin} --config {cfg} refresh-log-links >/dev/null",
            fake = fake.display(),
            bin = BIN,
            cfg = bench.config.display()
        );
        let start = Instant::now();
        let ok = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c", &script])
            .status()
            .expect("unshare")
            .success();
        let took = start.elapsed();
        assert!(ok, "refresh-log-links ({label}) failed");
        println!(
            "refresh-log-links over {count} jails, {label}: {:.0} ms ({:.1} µs a jail)",
            took.as_secs_f64() * 1e3,
            took.as_secs_f64() * 1e6 / count as f64
        );
    };
    run("all links missing");
    let _sock = bind_socket(socket); // a new inode: every link is stale
    run("all stale");
    run("all fresh");
}

fn setup(bench: &Bench) {
    let d = bench.dir.display();
    std::fs::create_dir_all(bench.dir.join("etc/ssh/sshd_config.d")).unwrap();
    let hostkey = bench.dir.join("etc/ssh/hostkey");
    let ok = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&hostkey)
        .status()
        .expect("ssh-keygen")
        .success();
    assert!(ok);
    std::fs::write(
        bench.dir.join("etc/ssh/sshd_config"),
        format!(
            "Include {d}/etc/ssh/sshd_config.d/*.conf\nHostKey {d}/etc/ssh/hostkey\nUsePAM no\nSubsystem sftp /usr/lib/openssh/sftp-server\n"
        ),
    )
    .unwrap();
    std::fs::write(
        &bench.config,
        format!(
            r#"root = "{d}/jails"
group = "{p}g"
jail_group = "{p}j"
user_dir = "{d}/etc/sftpctl/users"
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
            p = bench.prefix
        ),
    )
    .unwrap();
}

/// doctor over every user present: total, and without the parallel `sshd -T` part.
fn doctor_at_scale(bench: &Bench, users: usize) {
    let (wall, timings) = doctor(&bench.config, &[]);
    let get = |key: &str| {
        timings
            .iter()
            .find(|(k, _)| k.starts_with(key))
            .map_or(0.0, |(_, v)| *v)
    };
    let (sshd_t, checks) = (get("sshd -T"), get("checks total"));
    println!(
        "doctor over {users} users: {:.0} ms wall ({:.2} ms a user); checks {:.0} ms, of which sshd -T (parallel) {:.0} ms; without sshd -T {:.0} ms ({:.3} ms a user)",
        wall * 1e3,
        wall * 1e3 / users as f64,
        checks,
        sshd_t,
        checks - sshd_t,
        (checks - sshd_t) / users as f64
    );
    for (k, v) in &timings {
        println!("  doctor {k}: {v:.1} ms");
    }
    let one = format!("{}a0", bench.prefix);
    let (wall, _) = doctor(&bench.config, &["--user", &one]);
    println!(
        "doctor --user (one of {users} users): {:.0} ms wall",
        wall * 1e3
    );
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
