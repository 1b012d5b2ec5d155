//! Fleet runs through Ansible (issue 13, docs/fleet.md).
//!
//! `init --dry-run --exit-code` on a sandbox: the signal the role's check mode and its
//! changed/unchanged reporting rest on.
//!
//! Opt-in (`SFTPCTL_TEST_BOOTED=1`, which `.ci/run` sets): contrib/ansible/site.yml run by the
//! real ansible-playbook (`SFTPCTL_TEST_ANSIBLE=/path/to/ansible-playbook`, a venv that
//! `.ci/run` makes) over ssh against two booted guests on a private bridge
//! (tests/hosts/ansible.sh). With SFTPCTL_TEST_BOOTED=1 and no ansible the test fails: CI
//! cannot skip it by accident.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use support::{show, Sandbox};

#[test]
fn init_exit_code_says_whether_init_would_change_anything() {
    let sb = Sandbox::new();
    let snap = sb.snapshot();
    let out = sb.sftpctl(&["init", "--dry-run", "--exit-code"]);
    assert_eq!(out.status.code(), Some(3), "{}", show(&out));
    snap.assert_same(&sb.snapshot(), "init --dry-run --exit-code");

    // Without --exit-code a dry run with changes still exits 0 (scripts rely on it).
    let out = sb.sftpctl(&["init", "--dry-run"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));

    sb.sftpctl_ok(&["init"]);
    let snap = sb.snapshot();
    let out = sb.sftpctl(&["init", "--dry-run", "--exit-code"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("dry run: nothing to change"),
        "{}",
        show(&out)
    );
    snap.assert_same(&sb.snapshot(), "init --dry-run --exit-code after init");

    // Usage errors (clap's, exit 2), nothing changed: --exit-code alone would apply the plan
    // while the caller expects a dry run; --undo has a plan of its own.
    for args in [
        &["init", "--exit-code"][..],
        &["init", "--undo", "--dry-run", "--exit-code"][..],
    ] {
        let out = sb.sftpctl(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}\n{}", show(&out));
        snap.assert_same(&sb.snapshot(), &format!("{args:?}"));
    }
}

fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The .deb the role installs: `SFTPCTL_DEB`, else one built from this test's binary (then
/// also the directory to remove).
fn package() -> (PathBuf, Option<PathBuf>) {
    if let Some(deb) = std::env::var_os("SFTPCTL_DEB") {
        return (PathBuf::from(deb), None);
    }
    let dir = std::env::temp_dir().join(format!("sftpctl-fleet-deb-{}", std::process::id()));
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
fn ansible_role_on_two_booted_hosts() {
    let booted = std::env::var("SFTPCTL_TEST_BOOTED").is_ok_and(|v| !v.is_empty() && v != "0");
    let ansible = std::env::var_os("SFTPCTL_TEST_ANSIBLE").filter(|v| !v.is_empty());
    let Some(ansible) = ansible else {
        assert!(
            !booted,
            "SFTPCTL_TEST_BOOTED=1 but SFTPCTL_TEST_ANSIBLE is not set: point it at ansible-playbook in a venv with ansible-core (.ci/run makes /opt/sftpctl-ci/ansible)"
        );
        eprintln!(
            "not run: set SFTPCTL_TEST_BOOTED=1 and SFTPCTL_TEST_ANSIBLE=/path/to/ansible-playbook"
        );
        return;
    };
    if !booted {
        eprintln!("not run: set SFTPCTL_TEST_BOOTED=1 (root, systemd-container, debootstrap)");
        return;
    }
    let (deb, built_in) = package();
    let out = Command::new("bash")
        .arg(manifest_dir().join("tests/hosts/ansible.sh"))
        .arg(&ansible)
        .arg(&deb)
        .output();
    if let Some(dir) = built_in {
        let _ = std::fs::remove_dir_all(dir);
    }
    let out = out.expect("run tests/hosts/ansible.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Everything, also on success: the recaps and timings belong in the CI log.
    println!("{stdout}");
    assert!(
        out.status.success() && stdout.contains("PASS: fleet runs with Ansible"),
        "the Ansible fleet test failed ({})\n{stdout}\n--- stderr ---\n{stderr}",
        out.status
    );
}
