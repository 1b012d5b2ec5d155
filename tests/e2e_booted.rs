//! Opt-in (`SFTPCTL_TEST_BOOTED=1`, which `.ci/run` sets): the watcher's hardened unit on a
//! booted Debian 12 with systemd as PID 1 (systemd-nspawn), driven by tests/booted/watcher.sh:
//! `sftpctl init` starts the unit, a real sftp session inside the guest is reported (a spooled
//! .eml) and its upload fixed by shared write, and the journal shows nothing the sandbox
//! denied. The first run debootstraps the guest (~1 min, cached in /var/cache/sftpctl-test);
//! later runs take 10–35 s.

use std::path::Path;
use std::process::Command;

#[test]
fn hardened_watcher_works_on_a_booted_host() {
    if std::env::var_os("SFTPCTL_TEST_BOOTED").is_none() {
        eprintln!(
            "not run: set SFTPCTL_TEST_BOOTED=1 (root, systemd-container and debootstrap, the Debian mirror for the first run)"
        );
        return;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/booted/watcher.sh");
    let out = Command::new("bash")
        .arg(&script)
        .arg(env!("CARGO_BIN_EXE_sftpctl"))
        .output()
        .expect("run tests/booted/watcher.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(
        out.status.success() && stdout.contains("PASS: hardened watcher works"),
        "booted-host test failed ({})\n{stdout}\n{stderr}",
        out.status
    );
}
