//! sshd: the configuration validates (`sshd -t`), and the effective settings per user
//! (`sshd -T -C user=NAME,...`) chroot and force internal-sftp for every jailed user and not
//! for the admin. The per-user calls run in parallel threads.

use crate::openssh;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use crate::doctor::{collapse, Check, Ctx};
use crate::host_auth;
use crate::plan::steps::run_command;

const AREA: &str = "sshd";

/// At most this many `sshd -T` run at once.
const MAX_PARALLEL: usize = 8;

pub fn checks(ctx: &mut Ctx) -> Vec<Check> {
    let config = ctx.config;
    let argv = vec![
        config.sshd.binary.display().to_string(),
        "-t".into(),
        "-f".into(),
        config.sshd.config.display().to_string(),
    ];
    let mut out = Vec::new();
    match run_command(&argv) {
        Ok(_) => out.push(Check::ok(
            AREA,
            "sshd -t",
            format!("{} is valid", config.sshd.config.display()),
        )),
        Err(e) if !ctx.is_root => {
            out.push(Check::warn(
                AREA,
                "sshd -t",
                format!("{e:#}"),
                "run sftpctl doctor as root (sshd reads its host keys)",
            ));
            return out;
        }
        Err(e) => {
            out.push(Check::fail(
                AREA,
                "sshd -t",
                format!("{e:#}"),
                "correct the file sshd names; if it is sftpctl's drop-in, doctor --fix (drift) or sftpctl init rewrites it",
            ));
            return out;
        }
    }

    out.extend(penalties(ctx));

    let mut names: Vec<(String, bool)> = ctx.users.iter().map(|u| (u.clone(), true)).collect();
    if let Some(admin) = &ctx.admin {
        if ctx.account(admin).is_some() {
            names.push((admin.clone(), false));
        }
    }
    // sshd -T resolves the user's groups: an account that does not exist cannot be asked
    // (the accounts check reports it).
    names.retain(|(n, _)| ctx.account(n).is_some());
    let start = std::time::Instant::now();
    let results = effective_all(ctx, &names);
    ctx.record_timing("sshd -T (parallel)", start.elapsed());
    let want = Want::new(ctx);
    let mut problems = Vec::new();
    for ((name, jailed), result) in names.iter().zip(results) {
        let label = format!("sshd -T {name}");
        match result {
            Err(e) => problems.push(Check::fail(
                AREA,
                label,
                e,
                "run the same sshd -T by hand to see why",
            )),
            Ok(settings) => {
                let errors = if *jailed {
                    want.jailed(name, &settings)
                } else {
                    want.admin(&settings)
                };
                if !errors.is_empty() {
                    let fix = if *jailed {
                        format!(
                            "restore sftpctl's Match Group {} block (doctor --fix repairs a drifted drop-in); a Match block or setting earlier in sshd's config wins over it",
                            config.jail_group
                        )
                    } else {
                        format!(
                            "take {name} out of {} and of any Match block that chroots it",
                            config.jail_group
                        )
                    };
                    problems.push(Check::fail(AREA, label, errors.join("; "), fix));
                }
            }
        }
    }
    let jailed = names.iter().filter(|(_, j)| *j).count();
    let admin = names.iter().find(|(_, j)| !*j).map(|(n, _)| n.clone());
    out.extend(collapse(problems, || {
        let mut msg = format!(
            "{jailed} jailed user(s) get ChrootDirectory {}, ForceCommand {}, AuthorizedKeysFile {}",
            want.chroot, want.force, want.keys
        );
        if let Some(a) = admin {
            msg.push_str(&format!("; admin {a} is neither chrooted nor forced"));
        }
        Check::ok(AREA, "sshd -T", msg)
    }));
    out.extend(host_auth_kept(ctx));
    out.extend(policies(ctx));
    out
}

/// Per client with a policy (docs/policy.md): sshd itself, asked for an address inside the
/// allow-list and one outside every allowed network, forces the rendered ForceCommand and
/// refuses (DenyUsers) exactly outside.
fn policies(ctx: &Ctx) -> Vec<Check> {
    let config = ctx.config;
    let overrides = std::collections::BTreeMap::new();
    let expects = match crate::policy::sshd::expectations(config, &overrides) {
        Ok(e) => e,
        Err(e) => {
            return vec![Check::fail(
                AREA,
                "policy",
                format!("{e:#}"),
                "correct or remove the user file named (sftpctl set NAME KEY=VALUE rewrites it)",
            )]
        }
    };
    let mut by_user: Vec<(String, Vec<crate::policy::sshd::check::Expect>)> = Vec::new();
    for e in expects.into_iter().filter(|e| ctx.users.contains(&e.user)) {
        match by_user.last_mut() {
            Some((u, list)) if *u == e.user => list.push(e),
            _ => by_user.push((e.user.clone(), vec![e])),
        }
    }
    let mut out = Vec::new();
    for (user, list) in by_user {
        let label = format!("policy {user}");
        let errors: Vec<String> = list
            .iter()
            .filter_map(|e| crate::policy::sshd::check::verify(config, e).err())
            .collect();
        if errors.is_empty() {
            let seen: Vec<String> = list
                .iter()
                .map(|e| {
                    if e.denied {
                        format!("refused from {}", e.addr)
                    } else {
                        format!("from {} forced to {}", e.addr, e.force_command)
                    }
                })
                .collect();
            out.push(Check::ok(
                AREA,
                label,
                format!("{user} is {}", seen.join("; ")),
            ));
        } else {
            out.push(Check::fail(
                AREA,
                label,
                errors.join("; "),
                "doctor --fix writes sftpctl's blocks again (drift); a Match block of the host's earlier in sshd's config wins over them",
            ));
        }
    }
    out
}

/// OpenSSH >= 9.8 refuses, for a while, every connection from an address whose logins failed
/// (a locked account's client, every client behind one NAT address): the effective
/// settings, as information, and whether `sshd.penalty_exempt` is in effect.
fn penalties(ctx: &Ctx) -> Option<Check> {
    let config = ctx.config;
    let version = crate::openssh::detect_version(&config.sshd.binary).ok()?;
    let configured = &config.sshd.penalty_exempt;
    if !version.has_penalties() {
        return (!configured.is_empty()).then(|| {
            Check::ok(
                AREA,
                "penalties",
                format!("OpenSSH {version} has no PerSourcePenalties (9.8 brought them): sshd.penalty_exempt is not written and nothing needs it"),
            )
        });
    }
    let settings = match sshd_t(&config.sshd.binary, &config.sshd.config, None) {
        Ok(s) => s,
        Err(e) => {
            return Some(Check::warn(
                AREA,
                "penalties",
                e,
                "run the same sshd -T by hand to see why",
            ))
        }
    };
    Some(judge_penalties(&version.to_string(), configured, &settings))
}

fn judge_penalties(version: &str, configured: &[String], s: &HashMap<String, String>) -> Check {
    let get = |k: &str| s.get(k).map(String::as_str).unwrap_or("none");
    let exempt = get("persourcepenaltyexemptlist");
    let message = format!(
        "OpenSSH {version}: persourcepenalties {}; persourcepenaltyexemptlist {exempt} (an address whose logins fail is refused for a while, also right after sftpctl unlock)",
        get("persourcepenalties")
    );
    let effective: Vec<&str> = exempt.split(',').collect();
    let missing: Vec<&str> = configured
        .iter()
        .map(String::as_str)
        .filter(|c| !effective.contains(c))
        .collect();
    if missing.is_empty() {
        return Check::ok(AREA, "penalties", message);
    }
    Check::warn(
        AREA,
        "penalties",
        format!("{message}; sshd.penalty_exempt {} not in effect", missing.join(",")),
        "sftpctl init writes sshd.penalty_exempt into the drop-in; a PerSourcePenaltyExemptList earlier in sshd's config (an earlier drop-in) wins over it",
    )
}

/// The accounts sftpctl does not jail (the admin, root, other members of `jail_group`) get
/// from sshd exactly the authentication settings the host's own config gives them; the
/// admin's key files may only have gained sftpctl's.
fn host_auth_kept(ctx: &Ctx) -> Vec<Check> {
    let config = ctx.config;
    let label = "sshd host auth";
    let view = match host_auth::HostView::write(config) {
        Ok(v) => v,
        Err(e) => {
            return vec![Check::warn(
                AREA,
                label,
                format!("{e:#}"),
                "run sftpctl doctor as root",
            )]
        }
    };
    let probes = host_auth::probe_accounts(config);
    let mut problems = Vec::new();
    for (name, probe) in &probes {
        let compared = view.effective(config, name).and_then(|before| {
            let after = host_auth::effective(&config.sshd.binary, &config.sshd.config, name)?;
            Ok(host_auth::changes(&before, &after))
        });
        match compared {
            Err(e) => problems.push(Check::fail(
                AREA,
                format!("{label} {name}"),
                format!("{e:#}"),
                "run the same sshd -T by hand to see why",
            )),
            Ok(changes) if !changes.is_empty() => {
                let list: Vec<String> = changes.iter().map(ToString::to_string).collect();
                let fix = match probe {
                    host_auth::Probe::Admin => format!(
                        "sftpctl init re-renders the admin block with the host's own entries; if it refuses, {}",
                        host_auth::advice(config, name, probe)
                    ),
                    _ => host_auth::advice(config, name, probe),
                };
                problems.push(Check::fail(
                    AREA,
                    format!("{label} {name}"),
                    format!(
                        "sshd's config with sftpctl's blocks changes what the host gives {name}: {}",
                        list.join("; ")
                    ),
                    fix,
                ));
            }
            Ok(_) => {}
        }
    }
    let names: Vec<&str> = probes.iter().map(|(n, _)| n.as_str()).collect();
    collapse(problems, || {
        Check::ok(
            AREA,
            label,
            format!(
                "{} keep(s) the authentication settings the host's own config gives them",
                names.join(", ")
            ),
        )
    })
}

/// What sftpctl's Match block sets.
struct Want {
    chroot: String,
    force: String,
    /// ForceCommand of the clients whose access mode or quota gives them their own.
    force_of: HashMap<String, String>,
    keys: String,
    root: String,
    keys_dir: String,
}

impl Want {
    fn new(ctx: &Ctx) -> Want {
        let root = ctx.config.root.display().to_string();
        let keys_dir = ctx.config.sshd.authorized_keys_dir.display().to_string();
        let force = format!(
            "internal-sftp -l {} -u {}",
            ctx.config.sftp_log_level, ctx.config.umask
        );
        // A user file that cannot be read is the policy check's finding.
        let force_of = crate::policy::sshd::blocks(ctx.config, &Default::default())
            .unwrap_or_default()
            .into_iter()
            .filter_map(|b| Some((b.name, format!("{force} {}", b.sftp_flags?))))
            .collect();
        Want {
            chroot: format!("{root}/%u"),
            force,
            force_of,
            keys: format!("{keys_dir}/%u"),
            root,
            keys_dir,
        }
    }

    fn jailed(&self, name: &str, s: &HashMap<String, String>) -> Vec<String> {
        let mut errors = Vec::new();
        let get = |k: &str| s.get(k).map(String::as_str).unwrap_or("none");
        let chroot = get("chrootdirectory");
        if chroot != self.chroot && chroot != format!("{}/{name}", self.root) {
            errors.push(format!(
                "chrootdirectory is {chroot:?}, want {:?}",
                self.chroot
            ));
        }
        let force = get("forcecommand");
        let want = self.force_of.get(name).unwrap_or(&self.force);
        if force != want {
            errors.push(format!("forcecommand is {force:?}, want {want:?}"));
        }
        let keys = get("authorizedkeysfile");
        let own = format!("{}/{name}", self.keys_dir);
        if !keys.split_whitespace().any(|k| k == self.keys || k == own) {
            errors.push(format!(
                "authorizedkeysfile is {keys:?}, want {:?}",
                self.keys
            ));
        }
        errors
    }

    fn admin(&self, s: &HashMap<String, String>) -> Vec<String> {
        let mut errors = Vec::new();
        for key in ["chrootdirectory", "forcecommand"] {
            let v = s.get(key).map(String::as_str).unwrap_or("none");
            if v != "none" {
                errors.push(format!("{key} is {v:?} for the admin, want none"));
            }
        }
        errors
    }
}

/// The effective settings of one user, or why `sshd -T` failed.
type Effective = Result<HashMap<String, String>, String>;

/// `sshd -T` for every name, in parallel (bounded); results in the order of `names`.
fn effective_all(ctx: &Ctx, names: &[(String, bool)]) -> Vec<Effective> {
    let threads = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(1, MAX_PARALLEL)
        .min(names.len().max(1));
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Effective>>> =
        Mutex::new((0..names.len()).map(|_| None).collect());
    let binary = &ctx.config.sshd.binary;
    let config = &ctx.config.sshd.config;
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some((name, _)) = names.get(i) else {
                    break;
                };
                let r = effective(binary, config, name);
                results.lock().unwrap_or_else(|p| p.into_inner())[i] = Some(r);
            });
        }
    });
    results
        .into_inner()
        .unwrap_or_else(|p| p.into_inner())
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err("not run".into())))
        .collect()
}

/// `sshd -T -C <match spec of NAME> -f CONFIG`, parsed.
fn effective(binary: &std::path::Path, config: &std::path::Path, name: &str) -> Effective {
    sshd_t(binary, config, Some(&openssh::match_spec(name)))
}

/// `sshd -T [-C SPEC] -f CONFIG`, parsed; without a spec, the global settings.
fn sshd_t(binary: &std::path::Path, config: &std::path::Path, spec: Option<&str>) -> Effective {
    openssh::sshd_t(binary, config, spec).map(|text| parse_effective(&text))
}

/// `sshd -T` output: one `keyword value...` a line, keywords in lower case. The first line
/// of a keyword wins (keywords such as `subsystem` may repeat).
pub fn parse_effective(text: &str) -> HashMap<String, String> {
    let mut map = HashMap::new();
    for line in text.lines() {
        let line = line.trim();
        let (key, value) = match line.split_once(char::is_whitespace) {
            Some((k, v)) => (k, v.trim()),
            None => (line, ""),
        };
        if key.is_empty() {
            continue;
        }
        map.entry(key.to_ascii_lowercase())
            .or_insert_with(|| value.to_string());
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;

    const OUT: &str = "port 22\naddressfamily any\nchrootdirectory /srv/x/%u\nforcecommand internal-sftp -l INFO -u 0002\nauthorizedkeysfile /etc/k/%u\nsubsystem sftp internal-sftp\nsubsystem other /bin/x\n";

    #[test]
    fn parses_sshd_t_output() {
        let m = parse_effective(OUT);
        assert_eq!(m["chrootdirectory"], "/srv/x/%u");
        assert_eq!(m["forcecommand"], "internal-sftp -l INFO -u 0002");
        assert_eq!(m["subsystem"], "sftp internal-sftp");
        assert_eq!(m["port"], "22");
    }

    fn want() -> Want {
        Want {
            chroot: "/srv/x/%u".into(),
            force: "internal-sftp -l INFO -u 0002".into(),
            force_of: HashMap::from([(
                "ro".to_string(),
                "internal-sftp -l INFO -u 0002 -R".to_string(),
            )]),
            keys: "/etc/k/%u".into(),
            root: "/srv/x".into(),
            keys_dir: "/etc/k".into(),
        }
    }

    #[test]
    fn penalty_settings_are_shown_and_a_missing_exemption_warned() {
        let s = parse_effective("persourcepenalties crash:90 authfail:5 noauth:1 grace-exceeded:10 refuseconnection:10 max:600 min:15 max-sources4:65536 max-sources6:65536 overflow:permissive overflow6:permissive\npersourcepenaltyexemptlist 203.0.113.0/24,127.0.0.1\n");
        let ok = judge_penalties("10.0", &["127.0.0.1".into()], &s);
        assert_eq!(ok.status, crate::doctor::model::Status::Ok);
        assert!(ok.message.contains("authfail:5 "), "{}", ok.message);
        assert!(
            ok.message.contains("203.0.113.0/24,127.0.0.1"),
            "{}",
            ok.message
        );
        let warn = judge_penalties("10.0", &["198.51.100.7".into()], &s);
        assert_eq!(warn.status, crate::doctor::model::Status::Warn);
        assert!(
            warn.message.contains("198.51.100.7 not in effect"),
            "{}",
            warn.message
        );
        let none = judge_penalties(
            "10.0",
            &[],
            &parse_effective("persourcepenalties crash:90s\n"),
        );
        assert!(
            none.message.contains("persourcepenaltyexemptlist none"),
            "{}",
            none.message
        );
    }

    #[test]
    fn judges_jailed_and_admin_settings() {
        let w = want();
        assert!(w.jailed("alice", &parse_effective(OUT)).is_empty());
        let admin = parse_effective("chrootdirectory none\nforcecommand none\nauthorizedkeysfile .ssh/authorized_keys /etc/k/%u\n");
        assert!(w.admin(&admin).is_empty());
        let errs = w.jailed("alice", &admin);
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert_eq!(w.admin(&parse_effective(OUT)).len(), 2);
        let expanded = parse_effective("chrootdirectory /srv/x/alice\nforcecommand internal-sftp -l INFO -u 0002\nauthorizedkeysfile /etc/k/alice\n");
        assert!(w.jailed("alice", &expanded).is_empty());
        // a client with an access mode has its own ForceCommand, and only that one
        let errs = w.jailed("ro", &parse_effective(OUT));
        assert_eq!(errs.len(), 1, "{errs:?}");
        let ro = parse_effective("chrootdirectory /srv/x/ro\nforcecommand internal-sftp -l INFO -u 0002 -R\nauthorizedkeysfile /etc/k/ro\n");
        assert!(w.jailed("ro", &ro).is_empty());
    }
}
