//! The data trees against the policy of `crate::perms` (issues 5 and 9): everything shared
//! with `group`, nothing open to other accounts, no setuid/setgid file; plus the mount
//! options of the filesystem holding the jails and the jails the watcher cannot afford to
//! watch. `--fix` repairs each data tree on its own (`crate::perms::scan_jail` with repair:
//! openat2 beneath the data dir, no symlinks, fchmod through the opened handle), so one tree
//! that cannot be repaired does not stop the others.

use anyhow::Result;

use crate::config::Config;
use crate::doctor::{Check, Ctx};
use crate::perms::policy::{Skip, SET_ID};
use crate::perms::{short, Finding, FindingKind, ScanReport};
use crate::plan::{Journal, Step};

const AREA: &str = "perms";

/// How many paths a finding names before "…".
const SHOWN: usize = 5;

pub fn checks(ctx: &mut Ctx) -> Vec<Check> {
    let mut checks = Vec::new();
    checks.extend(session_umask(ctx.config));
    checks.extend(mount_options(ctx.config));
    if !ctx.all_users {
        return checks;
    }
    if !ctx.is_root {
        checks.push(Check::warn(
            AREA,
            "shared write access",
            "not checked: reading every data tree needs root",
            "run sftpctl doctor as root",
        ));
        return checks;
    }
    let report = match crate::perms::scan(ctx.config, false) {
        Ok(r) => r,
        Err(e) => {
            checks.push(Check::warn(
                AREA,
                "shared write access",
                format!("could not scan the data trees: {e:#}"),
                "see the message; sftpctl init creates what the scan needs",
            ));
            return checks;
        }
    };
    checks.extend(set_id_files(ctx.config, &report));
    checks.push(shared(ctx.config, &report));
    checks.extend(watch_budget(ctx.config, &report));
    for refused in &report.refused_jails {
        checks.push(Check::warn(
            AREA,
            "shared write access",
            format!("data tree skipped: {refused}"),
            "repair the jail first (see the jails checks above)",
        ));
    }
    for error in report.errors.iter().take(SHOWN) {
        checks.push(Check::warn(
            AREA,
            "shared write access",
            format!("could not check {}", short(error)),
            "see the reason; sftpctl doctor --fix repairs the rest of that tree and every other tree",
        ));
    }
    checks
}

/// A config from before issue 9 still says `umask = "0002"`: new uploads are readable by
/// others until the watcher repairs them (the 2770 data dir keeps other accounts out anyway).
fn session_umask(config: &Config) -> Option<Check> {
    let bits = config.umask_bits();
    (bits & 0o007 != 0o007).then(|| {
        Check::warn(
            AREA,
            "session umask",
            format!(
                "umask = \"{}\" leaves files made in SFTP sessions open to other accounts until the permission watcher repairs them",
                config.umask
            ),
            "set umask = \"0007\" in the config, then run sftpctl init",
        )
    })
}

/// `nosuid`/`nodev` on the filesystem that holds the jails.
fn mount_options(config: &Config) -> Option<Check> {
    let mount = match crate::perms::mounts::mount_of(&config.root) {
        Ok(Some(m)) => m,
        Ok(None) => return None, // no jail root yet (the jails checks say so), or no /proc
        Err(_) => return None,
    };
    let missing = mount.missing_safety_options();
    if missing.is_empty() {
        return Some(Check::ok(
            AREA,
            "jail filesystem",
            format!(
                "{} is on {}, mounted nosuid,nodev",
                config.root.display(),
                mount.mount_point.display()
            ),
        ));
    }
    let list = missing.join(",");
    Some(Check::warn(
        AREA,
        "jail filesystem",
        format!(
            "{} is on {}, mounted without {list}: a setuid/setgid file a client uploads works for every local account until it is repaired",
            config.root.display(),
            mount.mount_point.display()
        ),
        format!(
            "put the jails on a filesystem of their own with {list} in its /etc/fstab options (e.g. `defaults,nosuid,nodev`), or `mount -o remount,{list} {}` if it already is one (the remount also hits everything else on it); then run sftpctl doctor again",
            mount.mount_point.display()
        ),
    ))
}

fn is_set_id(f: &Finding) -> bool {
    match f.what {
        FindingKind::NotShared { want, .. } => f.mode & SET_ID != 0 && want & SET_ID == 0,
        FindingKind::Skipped(why) => why == Skip::SetId,
    }
}

fn set_id_files(config: &Config, report: &ScanReport) -> Option<Check> {
    if report.set_id == 0 {
        return None;
    }
    let found: Vec<&Finding> = report.findings.iter().filter(|f| is_set_id(f)).collect();
    let stuck = found
        .iter()
        .any(|f| f.what == FindingKind::Skipped(Skip::SetId));
    let mut check = Check::fail(
        AREA,
        "set-id files",
        format!(
            "{} setuid/setgid file(s) in the data trees: any local account that reaches one runs it as its owner or with its group (e.g. group {}, which reads and writes every client's files): {}",
            report.set_id,
            config.group,
            listing(&found, report.set_id)
        ),
        if stuck {
            "sftpctl doctor --fix clears the bits it may; the files with other owners and several hard links: chmod ug-s them by hand after checking what they are"
        } else {
            "sftpctl doctor --fix clears the bits (chmod ug-s); is the watcher (sftpctl-watch.service) running?"
        },
    );
    for step in repairs(config, report, |j| j.set_id > 0) {
        check = check.repair(step);
    }
    Some(check)
}

fn shared(config: &Config, report: &ScanReport) -> Check {
    let plain = report.not_shared.saturating_sub(
        report
            .findings
            .iter()
            .filter(|f| is_set_id(f) && matches!(f.what, FindingKind::NotShared { .. }))
            .count() as u64,
    );
    if plain == 0 {
        return Check::ok(
            AREA,
            "shared write access",
            format!(
                "{} files and directories in {} data trees are writable for group {} and closed to other accounts",
                report.checked, report.jails, config.group
            ),
        );
    }
    let found: Vec<&Finding> = report
        .findings
        .iter()
        .filter(|f| matches!(f.what, FindingKind::NotShared { .. }) && !is_set_id(f))
        .collect();
    let mut check = Check::warn(
        AREA,
        "shared write access",
        format!(
            "{plain} files or directories in the data trees are not writable for group {} or are open to other accounts ({} of them): {}",
            config.group,
            report.world,
            listing(&found, plain)
        ),
        "sftpctl doctor --fix adds g+rw (and setgid on directories) and removes o-rwx; is the watcher (sftpctl-watch.service) running?",
    );
    for step in repairs(config, report, |j| j.not_shared > j.set_id) {
        check = check.repair(step);
    }
    check
}

/// Jails with more directories than the watcher may watch: it scans them periodically.
fn watch_budget(config: &Config, report: &ScanReport) -> Vec<Check> {
    let cap = u64::from(config.perms.max_watches_per_jail);
    let deep = crate::perms::MAX_WATCHED_PATH;
    report
        .per_jail
        .iter()
        .filter(|j| j.dirs > cap || j.deepest > deep)
        .map(|j| {
            let why = if j.dirs > cap {
                format!(
                    "has {} directories, more than perms.max_watches_per_jail = {cap}",
                    j.dirs
                )
            } else {
                format!(
                    "has a directory path of {} bytes, longer than the {deep} the watcher keeps",
                    j.deepest
                )
            };
            Check::warn(
                AREA,
                format!("watches {}", j.name),
                format!(
                    "the data tree of {} {why}: the watcher does not watch it but scans and repairs it every {} s (perms.scan_interval_secs), so a new upload may wait that long for its mode",
                    j.name, config.perms.scan_interval_secs
                ),
                format!(
                    "ask {} to keep fewer or shallower directories, or raise perms.max_watches_per_jail (each watch costs about 1 KiB of kernel memory, counted against root's fs.inotify.max_user_watches)",
                    j.name
                ),
            )
        })
        .collect()
}

/// One isolated repair per data tree that `wanted` picks (and that has not been queued by an
/// earlier check: a tree's repair fixes everything in it at once).
fn repairs(
    config: &Config,
    report: &ScanReport,
    wanted: impl Fn(&crate::perms::JailScan) -> bool,
) -> Vec<RepairDataTree> {
    report
        .per_jail
        .iter()
        .filter(|j| j.not_shared > j.fixed && wanted(j))
        .map(|j| RepairDataTree {
            config: config.clone(),
            name: j.name.clone(),
            count: j.not_shared - j.fixed,
        })
        .collect()
}

fn listing(found: &[&Finding], total: u64) -> String {
    let mut shown: Vec<String> = found
        .iter()
        .take(SHOWN)
        .map(|f| format!("{} ({:04o})", short(&f.path.display().to_string()), f.mode))
        .collect();
    if total as usize > shown.len() {
        shown.push("…".into());
    }
    shown.join(", ")
}

/// `--fix`: the safe walk with repair on, for one data tree. Isolated: when it fails, the
/// other trees' repairs (and every other repair of this run) still apply. Mode repairs are
/// never undone (an undo would open files to other accounts again).
struct RepairDataTree {
    config: Config,
    name: String,
    count: u64,
}

impl Step for RepairDataTree {
    fn describe(&self) -> String {
        format!(
            "repair {} files and directories in the data tree of {} (g+rw, setgid on directories, o-rwx, no setuid/setgid)",
            self.count, self.name
        )
    }
    fn is_satisfied(&self) -> Result<bool> {
        let report = crate::perms::scan_jail(&self.config, &self.name, false)?;
        Ok(report.not_shared == 0 && report.errors.is_empty())
    }
    fn apply(&self, _journal: &mut Journal) -> Result<()> {
        let report = crate::perms::scan_jail(&self.config, &self.name, true)?;
        if !report.errors.is_empty() {
            let first: Vec<String> = report.errors.iter().take(3).map(|e| short(e)).collect();
            anyhow::bail!(
                "{} items repaired, {} could not be: {}",
                report.fixed,
                report.errors.len(),
                first.join("; ")
            );
        }
        Ok(())
    }
    fn isolated(&self) -> bool {
        true
    }
}
