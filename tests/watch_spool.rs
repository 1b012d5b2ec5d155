//! A spool that is not a directory (a file in its place, or gone) does not stop the watcher:
//! it starts, keeps each report in the outbox, and delivers it once the spool can be made.
//! A watcher that refused to start would lose every line rsyslog sends while systemd keeps
//! restarting it. Real sshd, rsyslogd and sftp (see tests/support).

mod support;

use std::fs;
use std::time::Duration;

use support::*;

fn spooled(sb: &Sandbox) -> Vec<String> {
    fs::read_dir(sb.path("spool"))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".eml"))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_spool_in_the_way_keeps_reports_in_the_outbox_until_it_is_a_directory() {
    let mut sb = Sandbox::new();
    sb.edit_config("[mail]\n", "[mail]\nretry_max_secs = 1\n");
    sb.sftpctl_ok(&["init"]);
    sb.start_rsyslogd();
    let alice = sb.user("alice");
    let (key, public) = sb.keygen("alice");
    sb.sftpctl_ok(&["add-user", &alice, "--key", public.to_str().unwrap()]);
    sb.start_sshd();
    let spool = sb.path("spool");
    let _ = fs::remove_dir_all(&spool);
    fs::write(&spool, b"in the way\n").unwrap();

    sb.start_watcher();
    fs::write(sb.client_dir().join("kept.txt"), b"kept").unwrap();
    sb.sftp_ok(&alice, &key, "put kept.txt\n");
    std::thread::sleep(Duration::from_secs(3));
    assert!(spool.is_file(), "the watcher replaced the file in the way");
    let log = fs::read_to_string(sb.path("run/watch.log")).unwrap_or_default();
    assert!(
        log.contains("reports wait in the outbox"),
        "no warning in the watcher's log:\n{log}"
    );

    fs::remove_file(&spool).unwrap();
    wait_until("the report once the spool can be made", DEADLINE, || {
        spooled(&sb).len() == 1
    });
    let name = &spooled(&sb)[0];
    let mail = fs::read_to_string(spool.join(name)).unwrap();
    assert!(mail.contains("kept.txt"), "{mail}");
}
