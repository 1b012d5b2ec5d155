//! Account state: each jailed user's shell, home, primary group and password field, and the
//! admin's. The password and group files are read once, whatever the number of users.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::doctor::{collapse, Check, Ctx};
use crate::plan::steps::{AccountField, Usermod};

const AREA: &str = "accounts";
const PASSWD_FILE: &str = "/etc/passwd";

/// The fields of a passwd line doctor looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PwEntry {
    pub uid: u32,
    pub gid: u32,
    pub home: String,
    pub shell: String,
}

/// Parses passwd text into name → entry; malformed lines are skipped.
pub fn parse_passwd(text: &str) -> HashMap<String, PwEntry> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            if f.len() < 7 || f[0].is_empty() {
                return None;
            }
            Some((
                f[0].to_string(),
                PwEntry {
                    uid: f[2].parse().ok()?,
                    gid: f[3].parse().ok()?,
                    home: f[5].to_string(),
                    shell: f[6].to_string(),
                },
            ))
        })
        .collect()
}

/// `/etc/passwd`, read once (empty when unreadable: [`lookup`] then asks NSS).
pub fn read_passwd() -> HashMap<String, PwEntry> {
    std::fs::read_to_string(PASSWD_FILE)
        .map(|t| parse_passwd(&t))
        .unwrap_or_default()
}

/// One account through NSS (for accounts not in /etc/passwd).
pub fn lookup(name: &str) -> Option<PwEntry> {
    use users::os::unix::UserExt;
    let u = users::get_user_by_name(name)?;
    Some(PwEntry {
        uid: u.uid(),
        gid: u.primary_group_id(),
        home: u.home_dir().display().to_string(),
        shell: u.shell().display().to_string(),
    })
}

/// The fields of a shadow line doctor looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShadowEntry {
    pub password: String,
    /// Account expiry, days since 1970-01-01.
    pub expire: Option<i64>,
}

/// Parses shadow text into name → entry.
pub fn parse_shadow(text: &str) -> HashMap<String, ShadowEntry> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            if f.len() < 2 || f[0].is_empty() {
                return None;
            }
            Some((
                f[0].to_string(),
                ShadowEntry {
                    password: f[1].to_string(),
                    expire: f.get(7).and_then(|e| e.parse().ok()),
                },
            ))
        })
        .collect()
}

/// What the password field means for a login with a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordState {
    /// `*`: no password, not locked: a key-only account as sftpctl makes it.
    KeyOnly,
    /// A password hash.
    Password,
    /// Locked (`!…`) and expired: locked on purpose (`sftpctl lock`).
    LockedOnPurpose,
    /// `!`, `!!` or `!*` without expiry: useradd's default, or `passwd -l` on a key-only
    /// account. With `UsePAM no` sshd refuses the key login ("account is locked").
    LockedKeyOnly,
    /// `!<hash>` without expiry: `passwd -l` / `usermod -L` on an account with a password.
    LockedPassword,
    /// Empty: a login without any password, if sshd allowed it.
    Empty,
}

/// Classifies a shadow entry; `today` in days since 1970-01-01.
pub fn password_state(entry: &ShadowEntry, today: i64) -> PasswordState {
    let p = entry.password.as_str();
    if p.is_empty() {
        return PasswordState::Empty;
    }
    let Some(rest) = p.strip_prefix('!') else {
        return if p.starts_with('*') {
            PasswordState::KeyOnly
        } else {
            PasswordState::Password
        };
    };
    if entry.expire.is_some_and(|d| d <= today) {
        return PasswordState::LockedOnPurpose;
    }
    let rest = rest.trim_start_matches('!');
    if rest.is_empty() || rest.starts_with('*') {
        PasswordState::LockedKeyOnly
    } else {
        PasswordState::LockedPassword
    }
}

fn today() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| (d.as_secs() / 86_400) as i64)
        .unwrap_or(0)
}

pub fn checks(ctx: &mut Ctx) -> Vec<Check> {
    let mut out = Vec::new();
    let shadow_file = &ctx.config.shadow_file;
    let shadow = match std::fs::read_to_string(shadow_file) {
        Ok(text) => Some(parse_shadow(&text)),
        Err(e) => {
            out.push(Check::warn(
                AREA,
                "shadow",
                format!(
                    "cannot read {} ({e}): password fields not checked",
                    shadow_file.display()
                ),
                "run sftpctl doctor as root",
            ));
            None
        }
    };
    let today = today();
    let mut problems = Vec::new();
    let mut locked = Vec::new();
    for name in &ctx.users {
        problems.extend(jailed(ctx, name, shadow.as_ref(), today, &mut locked));
    }
    let n = ctx.users.len();
    out.extend(collapse(problems, || {
        let mut msg = format!(
            "{n} jailed account(s): primary group {}, shell {}, home /{}, password field usable with a key",
            ctx.config.group,
            ctx.config.nologin_shell.display(),
            ctx.config.data_dir
        );
        if !locked.is_empty() {
            msg.push_str(&format!(
                "; locked on purpose: {}",
                locked.join(", ")
            ));
        }
        Check::ok(AREA, "jailed accounts", msg)
    }));
    if let Some(admin) = ctx.admin.clone() {
        out.extend(admin_checks(ctx, &admin, shadow.as_ref(), today));
    }
    out
}

fn password_check(
    name: &str,
    label: &str,
    entry: Option<&ShadowEntry>,
    today: i64,
    locked: &mut Vec<String>,
) -> Option<Check> {
    let entry = entry?;
    match password_state(entry, today) {
        PasswordState::KeyOnly | PasswordState::Password => None,
        PasswordState::LockedOnPurpose => {
            locked.push(name.to_string());
            None
        }
        // A `!` lock not made by `sftpctl lock` (usermod -L, passwd -l, useradd's default, a
        // script of the admin's) is still a lock: reported, never undone by doctor.
        PasswordState::LockedKeyOnly | PasswordState::LockedPassword => Some(Check::warn(
            AREA,
            label,
            format!(
                "locked, not by sftpctl lock (by whom unknown: usermod -L, passwd -l or useradd's default): the password field starts with '!' ({}) and the account is not expired; sshd refuses its key logins",
                lock_shape(&entry.password)
            ),
            format!(
                "doctor never unlocks an account: if the lock is unwanted, sftpctl unlock {name}; to keep it, sftpctl lock {name} marks it as on purpose"
            ),
        )),
        PasswordState::Empty => Some(Check::warn(
            AREA,
            label,
            "the password field is empty",
            format!("usermod -p '*' {name} for a key-only account, or set a password"),
        )),
    }
}

/// The shape of a locked password field, never the hash itself: `!`, `!*` or `!<hash>`.
fn lock_shape(password: &str) -> &'static str {
    let rest = password.trim_start_matches('!');
    if rest.is_empty() {
        "'!' alone"
    } else if rest.starts_with('*') {
        "'!*'"
    } else {
        "'!' before a password hash"
    }
}

fn jailed(
    ctx: &Ctx,
    name: &str,
    shadow: Option<&HashMap<String, ShadowEntry>>,
    today: i64,
    locked: &mut Vec<String>,
) -> Vec<Check> {
    let label = format!("account {name}");
    let Some(pw) = ctx.account(name) else {
        return vec![Check::fail(
            AREA,
            label,
            format!(
                "{name} is listed in group {} but no such account exists",
                ctx.config.jail_group
            ),
            format!(
                "gpasswd -d {name} {}, or sftpctl add-user {name}",
                ctx.config.jail_group
            ),
        )];
    };
    let mut out = Vec::new();
    if Some(pw.gid) != ctx.group_gid {
        out.push(
            Check::warn(
                AREA,
                &label,
                format!(
                    "primary group is {}, not {}: sftpctl does not count it as managed, and its files do not default to the admin's group",
                    crate::doctor::group_name(pw.gid),
                    ctx.config.group
                ),
                format!("usermod -g {} {name}", ctx.config.group),
            )
            .repair(Usermod {
                name: name.into(),
                field: AccountField::PrimaryGroup(ctx.config.group.clone()),
            }),
        );
    }
    if Path::new(&pw.shell) != ctx.config.nologin_shell {
        out.push(
            Check::warn(
                AREA,
                &label,
                format!(
                    "shell is {}, sftpctl gives jailed users {} (ForceCommand keeps them in SFTP either way)",
                    pw.shell,
                    ctx.config.nologin_shell.display()
                ),
                format!("usermod -s {} {name}", ctx.config.nologin_shell.display()),
            )
            .repair(Usermod {
                name: name.into(),
                field: AccountField::Shell(ctx.config.nologin_shell.clone()),
            }),
        );
    }
    let home = PathBuf::from(format!("/{}", ctx.config.data_dir));
    if Path::new(&pw.home) != home {
        out.push(
            Check::warn(
                AREA,
                &label,
                format!(
                    "home is {}, not {} (the data dir seen from inside the jail): sessions start in / instead",
                    pw.home,
                    home.display()
                ),
                format!("usermod -d {} {name}", home.display()),
            )
            .repair(Usermod {
                name: name.into(),
                field: AccountField::Home(home),
            }),
        );
    }
    if let Some(shadow) = shadow {
        match shadow.get(name) {
            None => out.push(Check::warn(
                AREA,
                &label,
                format!("no line in {}", ctx.config.shadow_file.display()),
                "pwck -r lists what is inconsistent",
            )),
            Some(entry) => out.extend(password_check(name, &label, Some(entry), today, locked)),
        }
    }
    out
}

fn admin_checks(
    ctx: &Ctx,
    admin: &str,
    shadow: Option<&HashMap<String, ShadowEntry>>,
    today: i64,
) -> Vec<Check> {
    let label = format!("admin {admin}");
    let Some(pw) = ctx.account(admin) else {
        return vec![Check::fail(
            AREA,
            label,
            format!("the admin account {admin} named in the config does not exist"),
            "run sftpctl init",
        )];
    };
    let mut out = Vec::new();
    if ctx.all_jailed.contains(admin) {
        out.push(Check::fail(
            AREA,
            &label,
            format!(
                "{admin} is in {}: the admin is chrooted like a client and cannot see other jails",
                ctx.config.jail_group
            ),
            format!("gpasswd -d {admin} {}", ctx.config.jail_group),
        ));
    }
    let in_group = Some(pw.gid) == ctx.group_gid
        || users::get_group_by_name(&ctx.config.group).is_some_and(|g| {
            use users::os::unix::GroupExt;
            g.members().iter().any(|m| m.to_str() == Some(admin))
        });
    if !in_group {
        out.push(Check::fail(
            AREA,
            &label,
            format!(
                "{admin} is not in group {}: it cannot write in the jails' data dirs",
                ctx.config.group
            ),
            format!("usermod -aG {} {admin}", ctx.config.group),
        ));
    }
    if Path::new(&pw.shell) != ctx.config.admin_shell {
        out.push(
            Check::warn(
                AREA,
                &label,
                format!(
                    "shell is {}, the config says admin_shell = {}",
                    pw.shell,
                    ctx.config.admin_shell.display()
                ),
                format!("usermod -s {} {admin}", ctx.config.admin_shell.display()),
            )
            .repair(Usermod {
                name: admin.into(),
                field: AccountField::Shell(ctx.config.admin_shell.clone()),
            }),
        );
    }
    if let Some(entry) = shadow.and_then(|s| s.get(admin)) {
        out.extend(password_check(
            admin,
            &label,
            Some(entry),
            today,
            &mut Vec::new(),
        ));
    }
    if out.is_empty() {
        out.push(Check::ok(
            AREA,
            label,
            format!(
                "in group {}, not jailed, shell {}",
                ctx.config.group, pw.shell
            ),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(p: &str, expire: Option<i64>) -> ShadowEntry {
        ShadowEntry {
            password: p.into(),
            expire,
        }
    }

    #[test]
    fn shadow_lines() {
        let s = parse_shadow(
            "alice:*:20000:0:99999:7:::\nbob:!$y$j9T$abc:20000:0:99999:7::1:\ncarol:!:20000::::::\nbad\n",
        );
        assert_eq!(s.len(), 3);
        assert_eq!(s["alice"], entry("*", None));
        assert_eq!(s["bob"], entry("!$y$j9T$abc", Some(1)));
        assert_eq!(s["carol"], entry("!", None));
    }

    #[test]
    fn password_states() {
        let today = 20_000;
        use PasswordState::*;
        assert_eq!(password_state(&entry("*", None), today), KeyOnly);
        assert_eq!(password_state(&entry("$y$j9T$abc", None), today), Password);
        assert_eq!(password_state(&entry("!", None), today), LockedKeyOnly);
        assert_eq!(password_state(&entry("!!", None), today), LockedKeyOnly);
        assert_eq!(password_state(&entry("!*", None), today), LockedKeyOnly);
        assert_eq!(
            password_state(&entry("!$6$x$y", None), today),
            LockedPassword
        );
        assert_eq!(
            password_state(&entry("!*", Some(1)), today),
            LockedOnPurpose
        );
        assert_eq!(
            password_state(&entry("!*", Some(30_000)), today),
            LockedKeyOnly
        );
        assert_eq!(password_state(&entry("", None), today), Empty);
    }

    #[test]
    fn passwd_lines() {
        let p = parse_passwd("alice:x:1001:1002::/data:/usr/sbin/nologin\nbad:x:y\n");
        assert_eq!(
            p["alice"],
            PwEntry {
                uid: 1001,
                gid: 1002,
                home: "/data".into(),
                shell: "/usr/sbin/nologin".into()
            }
        );
        assert_eq!(p.len(), 1);
    }
}
