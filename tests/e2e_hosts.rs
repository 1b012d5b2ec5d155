//! Opt-in (`SFTPCTL_TEST_BOOTED=1`, which `.ci/run` sets): the acceptance test on booted
//! Debian 12 and Debian 13 hosts, systemd as PID 1 in systemd-nspawn, with the real ssh,
//! rsyslog, logrotate and sftpctl-watch units (tests/hosts/acceptance.sh; every check is a
//! named step printing PASS/FAIL and its time). One test per release, so nextest runs both
//! at once. The first run debootstraps each release (~85–110 s, cached in
//! /var/cache/sftpctl-test); later runs take about 25 s each.
//!
//! The package: `SFTPCTL_DEB=/path/sftpctl_*.deb` installs that one; else, when the Makefile
//! has a `deb-package` target, it builds one from this test's binary; else the binary is
//! copied into the guest.

use std::path::{Path, PathBuf};
use std::process::Command;

fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The .deb to install in the guests, if any (see the module comment).
fn package(suite: &str) -> Option<PathBuf> {
    if let Some(deb) = std::env::var_os("SFTPCTL_DEB") {
        return Some(PathBuf::from(deb));
    }
    let makefile = std::fs::read_to_string(manifest_dir().join("Makefile")).ok()?;
    if !makefile.lines().any(|l| l.starts_with("deb-package:")) {
        return None;
    }
    let dir =
        std::env::temp_dir().join(format!("sftpctl-hosts-deb-{suite}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("make the package dir");
    let status = Command::new("make")
        .arg("-C")
        .arg(manifest_dir())
        .arg("deb-package")
        .arg(format!("BIN={}", env!("CARGO_BIN_EXE_sftpctl")))
        .arg(format!("DEB_DIR={}", dir.display()))
        .status()
        .expect("run make deb-package");
    assert!(status.success(), "make deb-package failed ({status})");
    let deb = std::fs::read_dir(&dir)
        .expect("read the package dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .expect("make deb-package made no .deb");
    Some(deb)
}

fn acceptance(suite: &str) {
    if std::env::var("SFTPCTL_TEST_BOOTED").map_or(true, |v| v.is_empty() || v == "0") {
        eprintln!(
            "not run: set SFTPCTL_TEST_BOOTED=1 (root, systemd-container and debootstrap, the Debian mirror for the first run)"
        );
        return;
    }
    let script = manifest_dir().join("tests/hosts/acceptance.sh");
    let mut cmd = Command::new("bash");
    cmd.arg(&script)
        .arg(suite)
        .arg(env!("CARGO_BIN_EXE_sftpctl"));
    if let Some(deb) = package(suite) {
        cmd.env("SFTPCTL_DEB", deb);
    }
    let out = cmd.output().expect("run tests/hosts/acceptance.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Everything, also on success: the step lines and timings belong in the CI log.
    println!("{stdout}");
    let pass = format!("PASS: booted-host acceptance on Debian {suite}");
    assert!(
        out.status.success() && stdout.contains(&pass),
        "booted-host acceptance on Debian {suite} failed ({})\n{stdout}\n--- stderr (console and guest journal at each failure) ---\n{stderr}",
        out.status
    );
}

#[test]
fn debian12_bookworm_booted_host() {
    acceptance("bookworm");
}

#[test]
fn debian13_trixie_booted_host() {
    acceptance("trixie");
}
