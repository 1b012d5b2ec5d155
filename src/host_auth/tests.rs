use super::*;

fn settings(text: &str) -> AuthSettings {
    auth_settings(text)
}

#[test]
fn keeps_only_guarded_keywords_and_joins_repeats() {
    let s = settings(
        "port 22\nauthorizedkeysfile .ssh/authorized_keys .ssh/authorized_keys2\nallowusers a\nallowusers b\nchrootdirectory none\nsubsystem sftp x\n",
    );
    assert_eq!(
        s["authorizedkeysfile"],
        ".ssh/authorized_keys .ssh/authorized_keys2"
    );
    assert_eq!(s["allowusers"], "a b");
    assert_eq!(s["chrootdirectory"], "none");
    assert!(!s.contains_key("port") && !s.contains_key("subsystem"));
}

#[test]
fn admin_block_keeps_the_hosts_files_first_then_ours() {
    let keys = Path::new("/etc/ssh/sftpctl/authorized_keys");
    let hardened = settings("authorizedkeysfile /etc/ssh/keys/%u\n");
    assert_eq!(
        admin_keys_files(&hardened, keys).unwrap(),
        ["/etc/ssh/keys/%u", "/etc/ssh/sftpctl/authorized_keys/%u"]
    );
    let debian = settings("authorizedkeysfile .ssh/authorized_keys .ssh/authorized_keys2\n");
    assert_eq!(
        admin_keys_files(&debian, keys).unwrap(),
        [
            ".ssh/authorized_keys",
            ".ssh/authorized_keys2",
            "/etc/ssh/sftpctl/authorized_keys/%u"
        ]
    );
    // Idempotent: a value that already holds ours (sshd -T of a host view that has it) does
    // not repeat it.
    let again =
        settings("authorizedkeysfile .ssh/authorized_keys /etc/ssh/sftpctl/authorized_keys/%u\n");
    assert_eq!(
        admin_keys_files(&again, keys).unwrap(),
        [
            ".ssh/authorized_keys",
            "/etc/ssh/sftpctl/authorized_keys/%u"
        ]
    );
    let none = settings("authorizedkeysfile none\n");
    assert_eq!(
        admin_keys_files(&none, keys).unwrap(),
        ["/etc/ssh/sftpctl/authorized_keys/%u"]
    );
    let bad = settings("authorizedkeysfile /a#b\n");
    assert!(admin_keys_files(&bad, keys).is_err());
}

#[test]
fn narrowing_is_a_change_widening_keys_is_not() {
    let before = settings(
        "authorizedkeysfile /etc/ssh/keys/%u\nchrootdirectory none\npubkeyauthentication yes\n",
    );
    let wider = settings(
        "authorizedkeysfile /etc/ssh/keys/%u /k/%u\nchrootdirectory none\npubkeyauthentication yes\n",
    );
    assert!(changes(&before, &wider).is_empty());
    let lost = settings(
        "authorizedkeysfile .ssh/authorized_keys /k/%u\nchrootdirectory none\npubkeyauthentication yes\n",
    );
    let c = changes(&before, &lost);
    assert_eq!(c.len(), 1);
    assert_eq!(
        c[0].to_string(),
        "authorizedkeysfile (/etc/ssh/keys/%u -> .ssh/authorized_keys /k/%u)"
    );
    let jailed = settings(
        "authorizedkeysfile /etc/ssh/keys/%u\nchrootdirectory /srv/x/%u\npubkeyauthentication yes\n",
    );
    assert_eq!(
        changes(&before, &jailed)[0].to_string(),
        "chrootdirectory (none -> /srv/x/%u)"
    );
    let off = settings(
        "authorizedkeysfile /etc/ssh/keys/%u\nchrootdirectory none\npubkeyauthentication no\n",
    );
    assert_eq!(changes(&before, &off)[0].key, "pubkeyauthentication");
    let deny = settings("authorizedkeysfile /etc/ssh/keys/%u\nchrootdirectory none\npubkeyauthentication yes\ndenyusers bob\n");
    assert_eq!(
        changes(&before, &deny)[0].to_string(),
        "denyusers ((unset) -> bob)"
    );
    // `none` before: nothing to lose.
    let none = settings("authorizedkeysfile none\n");
    assert!(changes(&none, &settings("authorizedkeysfile /k/%u\n")).is_empty());
}

#[test]
fn host_view_leaves_out_sftpctl_blocks() {
    let dir = std::env::temp_dir().join(format!("sftpctl-hv-{}", std::process::id()));
    let d = dir.join("sshd_config.d");
    std::fs::create_dir_all(&d).unwrap();
    for f in [
        "10-host.conf",
        "50-sftpctl.conf",
        "90-late.conf",
        "notes.txt",
    ] {
        std::fs::write(d.join(f), "").unwrap();
    }
    std::fs::write(d.join(".hidden.conf"), "").unwrap();
    let dropin = d.join("50-sftpctl.conf");
    let main = format!(
        "Include {}/*.conf\nPort 22\nInclude /etc/other.conf\n# BEGIN sftpctl match\nMatch User boss\n    AuthorizedKeysFile /k/%u\n# END sftpctl match\n",
        d.display()
    );
    let view = host_view_text(&main, &dropin);
    assert_eq!(
        view,
        format!(
            "Include {0}/10-host.conf {0}/90-late.conf\nPort 22\nInclude /etc/other.conf\n",
            d.display()
        )
    );
    // Only our drop-in matched: the Include goes, as a comment.
    std::fs::remove_file(d.join("10-host.conf")).unwrap();
    std::fs::remove_file(d.join("90-late.conf")).unwrap();
    let view = host_view_text(&main, &dropin);
    assert!(
        view.starts_with("# sftpctl host view: nothing left of: Include"),
        "{view}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
