//! Per-client policy through every door (issue 11, item 6): `apply USERS.toml` with every key,
//! twice (the second run changes nothing), `set` and `add-user KEY=VALUE`, `list-users`, and
//! bad values refused before anything changes. Real sshd and rsyslogd (see tests/support).

mod support;

use std::fs;

use support::*;

fn tomorrow_plus(days: i64) -> String {
    let out = std::process::Command::new("date")
        .args(["-u", "-d", &format!("+{days} days"), "+%Y-%m-%d"])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn rows(sb: &Sandbox) -> serde_json::Value {
    serde_json::from_slice(&sb.sftpctl_ok(&["list-users", "--json"]).stdout).unwrap()
}

fn row<'a>(rows: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    rows.as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == name)
        .unwrap_or_else(|| panic!("{name} not listed: {rows}"))
}

#[test]
fn apply_with_every_key_twice_then_nothing_changes() {
    let mut sb = Sandbox::new();
    sb.sftpctl_ok(&["init"]);
    sb.start_rsyslogd();
    sb.start_sshd();
    let alice = sb.user("alice");
    let bob = sb.user("bob");
    let (alice_key, alice_pub) = sb.keygen("alice");
    let (_, bob_pub) = sb.keygen("bob");
    let line = |p: &std::path::Path| fs::read_to_string(p).unwrap().trim().to_string();
    let expires = tomorrow_plus(30);
    let users = sb.path("users.toml");
    fs::write(
        &users,
        format!(
            r#"[[user]]
name = "{alice}"
keys = ["{alice_line}"]
email = "alice@client.example"
password_hash = "*"
locked = false
access = "read-only"
allow_from = ["127.0.0.1", "2001:db8::/32"]
expires = {expires}
retention = "90d"
quota = "5G"
notify_client = true

[[user]]
name = "{bob}"
keys = ["{bob_line}"]
access = "upload-only"
expires = "never"
retention = "off"
quota = "none"
notify_client = false
"#,
            alice_line = line(&alice_pub),
            bob_line = line(&bob_pub),
        ),
    )
    .unwrap();
    let u = users.to_str().unwrap();

    let snap = sb.snapshot();
    let out = sb.sftpctl(&["apply", u, "--dry-run", "--exit-code"]);
    assert_eq!(out.status.code(), Some(3), "{}", show(&out));
    snap.assert_same(&sb.snapshot(), "apply --dry-run");

    sb.sftpctl_ok(&["apply", u]);
    let all = rows(&sb);
    let a = row(&all, &alice);
    assert_eq!(a["access"], "read-only", "{a}");
    assert_eq!(
        a["allow_from"],
        serde_json::json!(["127.0.0.1", "2001:db8::/32"]),
        "{a}"
    );
    assert_eq!(a["expires"], expires.as_str(), "{a}");
    assert_eq!(a["retention"], "90d", "{a}");
    assert_eq!(a["quota_bytes"], 5u64 << 30, "{a}");
    assert_eq!(a["email"], "alice@client.example", "{a}");
    let b = row(&all, &bob);
    assert_eq!(b["access"], "upload-only", "{b}");
    assert_eq!(b["expires"], serde_json::Value::Null, "{b}");
    assert_eq!(b["quota_bytes"], serde_json::Value::Null, "{b}");
    // The user file holds exactly the settings, root-only.
    let file = sb.path("etc/sftpctl/users").join(format!("{alice}.toml"));
    let file = if file.exists() {
        file
    } else {
        // the sandbox's user_dir
        let cfg = fs::read_to_string(&sb.config).unwrap();
        let dir = cfg
            .lines()
            .find_map(|l| l.strip_prefix("user_dir = "))
            .unwrap()
            .trim_matches('"')
            .to_string();
        std::path::Path::new(&dir).join(format!("{alice}.toml"))
    };
    let text = fs::read_to_string(&file).unwrap();
    for want in [
        "access = \"read-only\"",
        "quota = \"5G\"",
        "retention = \"90d\"",
        "notify_client = true",
    ] {
        assert!(
            text.contains(want),
            "{want} not in {}:\n{text}",
            file.display()
        );
    }
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // alice is read-only, from 127.0.0.1: she logs in and lists.
    sb.sftp_ok(&alice, &alice_key, "ls\n");

    // Second run: nothing changes, and the dry run says so with exit 0.
    let snap = sb.snapshot();
    let out = sb.sftpctl_ok(&["apply", u]);
    assert!(stdout(&out).contains("nothing to change"), "{}", show(&out));
    let out = sb.sftpctl(&["apply", u, "--dry-run", "--exit-code"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    snap.assert_same(&sb.snapshot(), "second apply");

    // One key changed → the dry run sees it.
    let text = fs::read_to_string(&users)
        .unwrap()
        .replace("quota = \"5G\"", "quota = \"6G\"");
    fs::write(&users, text).unwrap();
    let out = sb.sftpctl(&["apply", u, "--dry-run", "--exit-code"]);
    assert_eq!(out.status.code(), Some(3), "{}", show(&out));
}

#[test]
fn set_and_add_user_take_the_same_keys_and_refuse_bad_values() {
    let mut sb = Sandbox::new();
    sb.sftpctl_ok(&["init"]);
    sb.start_rsyslogd();
    let carol = sb.user("carol");
    let (_, carol_pub) = sb.keygen("carol");
    sb.sftpctl_ok(&[
        "add-user",
        &carol,
        "--key",
        carol_pub.to_str().unwrap(),
        "retention=30d",
        "notify_client=true",
    ]);
    let all = rows(&sb);
    assert_eq!(row(&all, &carol)["retention"], "30d");

    sb.sftpctl_ok(&["set", &carol, "retention=2w", "email=carol@client.example"]);
    let all = rows(&sb);
    assert_eq!(row(&all, &carol)["retention"], "14d");
    assert_eq!(row(&all, &carol)["email"], "carol@client.example");
    let out = sb.sftpctl_ok(&["set", &carol, "retention=2w"]);
    assert!(stdout(&out).contains("nothing to change"), "{}", show(&out));

    for bad in [
        &["allow_from=10.0.0.1/8"][..],
        &["allow_from=10.0.0.0/8\nMatch all"],
        &["access=admin"],
        &["expires=2027-02-30"],
        &["expires=tomorrow"],
        &["quota=5 G"],
        &["quota=0"],
        &["retention=forever"],
        &["retention=0d"],
        &["notify_client=yes"],
        &["colour=blue"],
        &["retention"],
        &["retention=1d", "retention=2d"],
        &["retention=1d", "quota=lots"],
    ] {
        let snap = sb.snapshot();
        let mut args = vec!["set", carol.as_str()];
        args.extend_from_slice(bad);
        let out = sb.sftpctl(&args);
        assert_fails_one_line(&out, 2);
        snap.assert_same(&sb.snapshot(), &format!("set {bad:?}"));
    }
    // A bad value on add-user: no account.
    let dan = sb.user("dan");
    let snap = sb.snapshot();
    let out = sb.sftpctl(&["add-user", &dan, "quota=-1"]);
    assert_fails_one_line(&out, 2);
    snap.assert_same(&sb.snapshot(), "add-user with a bad setting");
    assert!(nix::unistd::User::from_name(&dan).unwrap().is_none());
    // Not a managed user.
    let out = sb.sftpctl(&["set", "root", "quota=1G"]);
    assert_fails_one_line(&out, 2);
}

#[test]
fn apply_refuses_bad_policy_values_before_changing_anything() {
    let sb = Sandbox::new();
    sb.sftpctl_ok(&["init"]);
    let erin = sb.user("erin");
    let users = sb.path("users.toml");
    for bad in [
        "access = \"full\"",
        "allow_from = [\"203.0.113.5/24\"]",
        "allow_from = \"203.0.113.0/24\"",
        "expires = 2027-02-30",
        "expires = 2027-03-31T10:00:00",
        "retention = \"90\"",
        "quota = \"5 G\"",
        "quota = 5",
        "notify_client = \"yes\"",
    ] {
        fs::write(&users, format!("[[user]]\nname = \"{erin}\"\n{bad}\n")).unwrap();
        let snap = sb.snapshot();
        let out = sb.sftpctl(&["apply", users.to_str().unwrap()]);
        assert_fails_one_line(&out, 2);
        snap.assert_same(&sb.snapshot(), &format!("apply of {bad:?}"));
    }
    assert!(nix::unistd::User::from_name(&erin).unwrap().is_none());
}
