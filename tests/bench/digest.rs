//! `cargo bench --bench digest`: what digest mode adds to the delivery of a report,
//! counted by callgrind (instruction counts are stable on a busy machine; times are not).
//!
//! `sftpctl watch --stdin` replays the capture 40 times (200 reports) with the file
//! transport, once with every client mailed per session (the default) and once with every
//! client in digest mode; callgrind counts the instructions inside `Digest::divert` (reading
//! a record's id and user, the client's mode, and in digest mode the synced write into the
//! store).

use std::path::Path;
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_sftpctl");
const COPIES: usize = 40;

fn collected(dir: &Path, mode: &str, toggle: &str) -> Option<u64> {
    let _ = std::fs::remove_dir_all(dir.join("state"));
    let _ = std::fs::remove_dir_all(dir.join("spool"));
    let config = dir.join(format!("sftpctl-{mode}.toml"));
    std::fs::write(
        &config,
        format!(
            "[watch]\nstate_dir = \"{d}/state\"\nsocket = \"{d}/run/w.sock\"\n[mail]\nspool_dir = \"{d}/spool\"\nto = [\"admin@example.org\"]\nmode = \"{mode}\"\n",
            d = dir.display()
        ),
    )
    .unwrap();
    let out = Command::new("valgrind")
        .arg("--tool=callgrind")
        .arg(format!(
            "--callgrind-out-file={}",
            dir.join("callgrind.out").display()
        ))
        .arg(format!("--toggle-collect={toggle}"))
        .arg(BIN)
        .arg("--config")
        .arg(&config)
        .args(["watch", "--stdin", "--trust-unverified"])
        .stdin(Stdio::from(
            std::fs::File::open(dir.join("sftp.log")).unwrap(),
        ))
        .output()
        .ok()?;
    let err = String::from_utf8_lossy(&out.stderr);
    let line = err.lines().find(|l| l.contains("Collected :"))?;
    line.rsplit(' ').next()?.trim().parse().ok()
}

fn main() {
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return;
    }
    if Command::new("valgrind").arg("--version").output().is_err() {
        println!("digest: valgrind is not installed (apt install valgrind); skipped");
        return;
    }
    let dir = std::env::temp_dir().join(format!("sftpctl-bench-digest-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let capture = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/openssh-9.2-rsyslog-file.log"
    ))
    .unwrap();
    std::fs::write(dir.join("sftp.log"), capture.repeat(COPIES)).unwrap();
    let reports = (5 * COPIES) as u64;
    println!("digest: {reports} reports through `watch --stdin`, callgrind instructions per report (this build's profile)");
    for (what, mode, toggle) in [
        ("divert, session mode", "session", "*Digest*divert*"),
        ("divert, digest mode (stored)", "digest", "*Digest*divert*"),
    ] {
        match collected(&dir, mode, toggle) {
            Some(n) => println!("  {what:<30} {:>10}", n / reports),
            None => println!("  {what:<30} (callgrind gave no count)"),
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
