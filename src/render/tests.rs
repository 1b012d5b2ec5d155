//! Every template rendered from a fixed config, compared with the files in
//! `src/render/snapshots/`. After an intended template change, regenerate them with
//! `UPDATE_SNAPSHOTS=1 cargo test --lib render` and review the diff.

use super::*;
use crate::config::Config;

fn sample() -> Renderer {
    let config = Config::parse(
        r#"
root = "/srv/exchange"
admin = "boss"
sftpctl_bin = "/usr/local/sbin/sftpctl"
[watch]
listen = "127.0.0.1:5514"
"#,
    )
    .unwrap();
    Renderer::new(&config, Path::new("/etc/sftpctl/sftpctl.toml"), "9.2").with_admin_keys_files(&[
        "/etc/ssh/keys/%u".into(),
        "/etc/ssh/sftpctl/authorized_keys/%u".into(),
    ])
}

fn check(name: &str, actual: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("src/render/snapshots")
        .join(name);
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run with UPDATE_SNAPSHOTS=1)", path.display()));
    assert_eq!(actual, expected, "{name} differs from its snapshot");
}

#[test]
fn sshd_dropin_for_old_openssh() {
    check(
        "sshd_dropin_9.2.conf",
        &sample().sshd_dropin(false).unwrap(),
    );
}

#[test]
fn sshd_dropin_for_new_openssh_carries_the_subsystem() {
    let text = sample().sshd_dropin(true).unwrap();
    check("sshd_dropin_9.5.conf", &text);
    let sub = text.find("Subsystem sftp").unwrap();
    assert!(
        sub < text.find("Match").unwrap(),
        "Subsystem must precede Match"
    );
}

#[test]
fn sshd_dropin_for_openssh_with_penalties_exempts_before_any_match() {
    let config = Config::parse(
        r#"
root = "/srv/exchange"
admin = "boss"
[sshd]
penalty_exempt = ["203.0.113.0/24", "127.0.0.1", "2001:db8::/32"]
"#,
    )
    .unwrap();
    let admin_keys = [
        ".ssh/authorized_keys".to_string(),
        "/etc/ssh/sftpctl/authorized_keys/%u".into(),
    ];
    let r = Renderer::new(&config, Path::new("/etc/sftpctl/sftpctl.toml"), "10.0")
        .with_admin_keys_files(&admin_keys);
    let text = r.sshd_dropin(true).unwrap();
    check("sshd_dropin_10.0.conf", &text);
    let line = "PerSourcePenaltyExemptList 203.0.113.0/24,127.0.0.1,2001:db8::/32\n";
    let at = text.find(line).expect("the exempt list");
    assert!(
        at < text.find("\nMatch ").unwrap(),
        "global keyword after a Match:\n{text}"
    );

    // Before 9.8 the keyword does not exist (sshd -t refuses it): never written.
    for old in ["9.2", "9.7"] {
        let r = Renderer::new(&config, Path::new("/etc/sftpctl/sftpctl.toml"), old)
            .with_admin_keys_files(&admin_keys);
        assert!(
            !r.sshd_dropin(true).unwrap().contains("PerSourcePenalty"),
            "{old}"
        );
        assert_eq!(r.penalties().unwrap().trim(), "", "{old}");
    }
    // Nothing to exempt: nothing written, whatever the version.
    let plain = Renderer::new(
        &Config::default(),
        Path::new("/etc/sftpctl/sftpctl.toml"),
        "10.0",
    );
    assert!(!plain
        .sshd_dropin(true)
        .unwrap()
        .contains("PerSourcePenalty"));
}

#[test]
fn the_other_templates() {
    let r = sample();
    check("sshd_subsystem.conf", &r.subsystem().unwrap());
    check("pam_umask.conf", &r.pam_umask().unwrap());
    check("rsyslog.conf", &r.rsyslog().unwrap());
    check("logrotate.conf", &r.logrotate().unwrap());
    check("sftpctl-watch.service", &r.watch_unit().unwrap());
    check("rsyslog-refresh.conf", &r.rsyslog_unit_dropin().unwrap());
    for (name, content) in r.policy_units().unwrap() {
        check(name, &content);
    }
}

#[test]
fn the_admin_block_needs_the_hosts_key_files() {
    let config = Config::parse("admin = \"boss\"").unwrap();
    let r = Renderer::new(&config, Path::new("/etc/sftpctl/sftpctl.toml"), "9.2");
    assert!(r.match_block().is_err());
    let block = r
        .with_admin_keys_files(&[".ssh/authorized_keys2".into(), "/k/%u".into()])
        .match_block()
        .unwrap();
    assert!(
        block.contains("Match User boss\n    AuthorizedKeysFile .ssh/authorized_keys2 /k/%u\n"),
        "{block}"
    );
}

#[test]
fn no_admin_no_admin_block() {
    let config = Config::default();
    let r = Renderer::new(&config, Path::new("/etc/sftpctl/sftpctl.toml"), "9.2");
    assert!(!r.match_block().unwrap().contains("Match User"));
}

#[test]
fn rsyslog_sends_to_the_watch_socket_never_udp() {
    let config =
        Config::parse("[watch]\nsocket = \"/run/x/w.sock\"\nlisten = \"[::1]:5514\"").unwrap();
    let r = Renderer::new(&config, Path::new("/etc/sftpctl/sftpctl.toml"), "9.2");
    let text = r.rsyslog().unwrap();
    assert!(text.contains("$OMUxSockSocket /run/x/w.sock\n"), "{text}");
    assert!(!text.contains("omfwd"), "{text}");
}

#[test]
fn shell_join_quotes_what_needs_it() {
    let argv = [
        "/bin/kill".to_string(),
        "-s".into(),
        "HUP x".into(),
        "it's".into(),
    ];
    assert_eq!(shell_join(&argv), r"/bin/kill -s 'HUP x' 'it'\''s'");
}

#[test]
fn watch_unit_sandbox_follows_the_config() {
    let unit = sample().watch_unit().unwrap();
    assert!(
        unit.contains("ReadWritePaths=/srv/exchange /var/lib/sftpctl /var/spool/sftpctl/mail\n")
    );
    assert!(unit.contains("ProtectSystem=strict\n"));
    assert!(!unit.contains("CAP_NET_BIND_SERVICE") && !unit.contains("CAP_DAC_OVERRIDE"));

    let config =
        Config::parse("[watch]\nlisten = \"127.0.0.1:514\"\n[mail]\ntransport = \"sendmail\"")
            .unwrap();
    let r = Renderer::new(&config, Path::new("/etc/sftpctl/sftpctl.toml"), "9.2");
    let unit = r.watch_unit().unwrap();
    assert!(unit.contains("CAP_NET_BIND_SERVICE"));
    // [mail] does not change the unit: doctor's drift stays about files, not mail settings.
    let file = Config::parse("[watch]\nlisten = \"127.0.0.1:514\"").unwrap();
    let same = Renderer::new(&file, Path::new("/etc/sftpctl/sftpctl.toml"), "9.2");
    assert_eq!(unit, same.watch_unit().unwrap());

    // A path that would add a second ReadWritePaths entry (or a line) is refused even if it
    // got past the config's own validation.
    for bad in [
        "/srv/a b",
        "/srv/a\nExecStartPre=/bin/sh",
        "/srv/%h",
        "-/srv/x",
        "/srv/\"x\"",
    ] {
        let config = Config {
            root: bad.into(),
            ..Config::default()
        };
        let r = Renderer::new(&config, Path::new("/etc/sftpctl/sftpctl.toml"), "9.2");
        let err = r.watch_unit().unwrap_err().to_string();
        assert!(err.contains("ReadWritePaths"), "{bad:?}: {err}");
    }
}

#[test]
fn client_blocks_come_before_the_jail_groups_block() {
    let config = Config::parse("root = \"/srv/exchange\"\n").unwrap();
    let settings = |access: &str, nets: &[&str]| crate::registry::UserSettings {
        access: access.parse().unwrap(),
        allow_from: nets.iter().map(|n| n.parse().unwrap()).collect(),
        ..Default::default()
    };
    let blocks: Vec<UserBlock> = [
        (
            "alice",
            settings("read-only", &["203.0.113.0/24", "2001:db8::/32"]),
        ),
        ("bob", settings("upload-only", &[])),
        ("carol", settings("download-only", &[])),
        ("dave", settings("rw", &["192.0.2.7"])),
        ("erin", settings("rw", &[])),
    ]
    .iter()
    .filter_map(|(n, s)| crate::policy::sshd::block(&config, n, s))
    .collect();
    assert_eq!(blocks.len(), 4, "erin has the default policy: no block");
    let text = Renderer::new(&config, Path::new("/etc/sftpctl/sftpctl.toml"), "9.2")
        .with_user_blocks(&blocks)
        .sshd_dropin(false)
        .unwrap();
    check("sshd_dropin_clients.conf", &text);
    let group = text.find("Match Group").unwrap();
    for needle in [
        "Match User alice Address *,!203.0.113.0/24,!2001:db8::/32\n    DenyUsers alice\n",
        "ForceCommand internal-sftp -l VERBOSE -u 0007 -R\n",
        "Match User dave Address *,!192.0.2.7\n",
    ] {
        let at = text.find(needle).unwrap_or_else(|| panic!("no {needle:?}"));
        assert!(at < group, "{needle:?} after the group block");
    }
    assert!(!text.contains("erin"));
}
