//! Opt-in (`SFTPCTL_TEST_BOOTED=1`, which `.ci/run` sets): many hosts, one
//! collector, on three booted Debian hosts (systemd as PID 1 in nspawn) on a private bridge made by the
//! test: two SFTP hosts forward over TLS to the collector (tests/hosts/fleet.sh; every check
//! is a named step printing PASS/FAIL and its time).

use std::path::{Path, PathBuf};
use std::process::Command;

fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The .deb to install: `SFTPCTL_DEB`, else one built from this test's binary.
fn package() -> (PathBuf, Option<PathBuf>) {
    if let Some(deb) = std::env::var_os("SFTPCTL_DEB") {
        return (PathBuf::from(deb), None);
    }
    let dir = std::env::temp_dir().join(format!("sftpctl-fleet-hosts-deb-{}", std::process::id()));
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
    (deb, Some(dir))
}

#[test]
fn two_forwarding_hosts_and_a_collector_booted() {
    if std::env::var("SFTPCTL_TEST_BOOTED").map_or(true, |v| v.is_empty() || v == "0") {
        eprintln!("not run: set SFTPCTL_TEST_BOOTED=1 (root, systemd-container, debootstrap)");
        return;
    }
    let (deb, built_in) = package();
    let out = Command::new("bash")
        .arg(manifest_dir().join("tests/hosts/fleet.sh"))
        .arg(&deb)
        .output();
    if let Some(dir) = built_in {
        let _ = std::fs::remove_dir_all(dir);
    }
    let out = out.expect("run tests/hosts/fleet.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(
        out.status.success() && stdout.contains("PASS: many hosts, one collector"),
        "the booted fleet test failed ({})\n{stdout}\n--- stderr ---\n{stderr}",
        out.status
    );
}
