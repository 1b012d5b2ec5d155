//! `sftpctl doctor`: checks the live system against what sftpctl set up, one finding per
//! line, and builds the repair plan for `--fix`.
//!
//! Each area is its own module and returns [`Check`]s. Checks over many users collapse into
//! one `ok` line when every user passes, and one line per problem otherwise, so the output of
//! a healthy exchange with 1,000 users stays short. Nothing here writes: repairs are plan
//! steps ([`crate::plan`]) that `--fix` applies. Nothing here follows a symlink as root:
//! every path is looked at with `lstat` ([`crate::plan::fsops::inspect`]).

pub mod accounts;
pub mod drift;
pub mod expiry;
pub mod fleet;
pub mod jails;
pub mod keys;
pub mod logs;
pub mod model;
pub mod perms;
pub mod quota;
pub mod services;
pub mod sshd;
pub mod watcher;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::config::{Config, Source};
use crate::plan::steps::gid_of;
use crate::plan::Plan;

pub use model::{Check, Status, Summary};

/// What to look at.
pub struct Options {
    /// Only this user's per-user checks (a jailed user or the admin).
    pub user: Option<String>,
}

/// Everything the checks share: the config, the users in scope and the account database,
/// read once.
pub struct Ctx<'a> {
    pub config: &'a Config,
    pub source: &'a Source,
    /// Jailed users whose per-user checks run, sorted.
    pub users: Vec<String>,
    /// Every jailed user (members of `jail_group`), for checks over the whole root.
    pub all_jailed: std::collections::HashSet<String>,
    /// True when no `--user` narrows the per-user checks.
    pub all_users: bool,
    /// The admin, when configured and in scope.
    pub admin: Option<String>,
    pub is_root: bool,
    /// `/etc/passwd`, read once.
    pub passwd: HashMap<String, accounts::PwEntry>,
    /// gid of `group`.
    pub group_gid: Option<u32>,
    timings: Vec<(&'static str, Duration)>,
}

impl<'a> Ctx<'a> {
    pub fn new(config: &'a Config, source: &'a Source, opts: &Options) -> Ctx<'a> {
        let all_jailed = crate::accounts::jailed_names(config);
        let (users, admin) = match &opts.user {
            Some(name) if config.admin.as_deref() == Some(name) => (vec![], Some(name.clone())),
            Some(name) => (vec![name.clone()], None),
            None => {
                let mut users: Vec<String> = all_jailed.iter().cloned().collect();
                users.sort();
                (users, config.admin.clone())
            }
        };
        Ctx {
            config,
            source,
            users,
            all_jailed,
            all_users: opts.user.is_none(),
            admin,
            is_root: nix::unistd::geteuid().is_root(),
            passwd: accounts::read_passwd(),
            group_gid: gid_of(&config.group),
            timings: Vec::new(),
        }
    }

    /// The account `name`: from the passwd file read once, else from NSS.
    pub fn account(&self, name: &str) -> Option<accounts::PwEntry> {
        self.passwd
            .get(name)
            .cloned()
            .or_else(|| accounts::lookup(name))
    }

    fn timed(&mut self, area: &'static str, f: impl FnOnce(&mut Self) -> Vec<Check>) -> Vec<Check> {
        let start = Instant::now();
        let checks = f(self);
        self.timings.push((area, start.elapsed()));
        checks
    }

    /// Notes the time of a part of an area (shown beside the areas' totals).
    pub fn record_timing(&mut self, part: &'static str, took: Duration) {
        self.timings.push((part, took));
    }

    /// Time spent per area, for the hidden `--timings` flag and the bench.
    pub fn timings(&self) -> &[(&'static str, Duration)] {
        &self.timings
    }
}

/// Runs every check, in the order the output shows them.
pub fn run(ctx: &mut Ctx) -> Vec<Check> {
    let mut checks = Vec::new();
    if !ctx.is_root {
        checks.push(Check::warn(
            "doctor",
            "privileges",
            "not running as root: the shadow file, sshd -T and the watcher's state cannot be read",
            "run sftpctl doctor as root for the full picture",
        ));
    }
    checks.extend(ctx.timed("jails", jails::checks));
    checks.extend(ctx.timed("logs", logs::checks));
    checks.extend(ctx.timed("accounts", accounts::checks));
    checks.extend(ctx.timed("expiry", expiry::checks));
    checks.extend(ctx.timed("keys", keys::checks));
    checks.extend(ctx.timed("sshd", sshd::checks));
    checks.extend(ctx.timed("rsyslog", services::rsyslog));
    checks.extend(ctx.timed("units", services::units));
    checks.extend(ctx.timed("logrotate", services::logrotate));
    checks.extend(ctx.timed("watcher", watcher::checks));
    checks.extend(ctx.timed("fleet", fleet::checks));
    checks.extend(ctx.timed("drift", drift::checks));
    checks.extend(ctx.timed("perms", perms::checks));
    checks.extend(ctx.timed("quota", quota::checks));
    checks
}

/// The repair plan of every finding that is not `ok`, in check order; validators and
/// service activations follow when a managed file is rewritten.
///
/// Every repair except a managed file's is isolated (see [`crate::plan::Step::isolated`]):
/// one jail, account or data tree that cannot be repaired is reported with its reason and
/// the others are still repaired. The managed files stay one transaction with their
/// validators (`sshd -t`, `rsyslogd -N1`), so a rejected config is reverted as a whole.
pub fn repair_plan(checks: &mut [Check], config: &Config) -> anyhow::Result<Plan> {
    let mut plan = Plan::new();
    let mut files_changed = false;
    for check in checks.iter_mut().filter(|c| c.status != Status::Ok) {
        let drift = check.area == "drift";
        files_changed |= drift && !check.repair.is_empty();
        for step in check.repair.drain(..) {
            if drift {
                plan.push_boxed(step);
            } else {
                plan.push(Isolated(step));
            }
        }
    }
    if files_changed {
        crate::setup::validate_and_activate(&mut plan, config, "doctor --fix")?;
    }
    Ok(plan)
}

/// A repair that stands alone: its failure reverts only itself.
struct Isolated(Box<dyn crate::plan::Step>);

impl crate::plan::Step for Isolated {
    fn describe(&self) -> String {
        self.0.describe()
    }
    fn diff(&self) -> anyhow::Result<Option<String>> {
        self.0.diff()
    }
    fn is_satisfied(&self) -> anyhow::Result<bool> {
        self.0.is_satisfied()
    }
    fn apply(&self, journal: &mut crate::plan::Journal) -> anyhow::Result<()> {
        self.0.apply(journal)
    }
    fn phase(&self) -> crate::plan::Phase {
        self.0.phase()
    }
    fn topic(&self) -> Option<&'static str> {
        self.0.topic()
    }
    fn soft_failure(&self, err: &anyhow::Error) -> Option<crate::plan::Soft> {
        self.0.soft_failure(err)
    }
    fn isolated(&self) -> bool {
        self.0.phase() == crate::plan::Phase::Change
    }
}

/// One `ok` line for a check over many users when none of them has a problem, else the
/// problems.
pub(crate) fn collapse(problems: Vec<Check>, ok: impl FnOnce() -> Check) -> Vec<Check> {
    if problems.is_empty() {
        vec![ok()]
    } else {
        problems
    }
}

/// `uid 1001 (alice)`.
pub(crate) fn who(uid: u32) -> String {
    match users::get_user_by_uid(uid) {
        Some(u) => format!("{}", u.name().to_string_lossy()),
        None => format!("uid {uid}"),
    }
}

/// `sftp`, or `gid 1005` when the group has no name.
pub(crate) fn group_name(gid: u32) -> String {
    match users::get_group_by_gid(gid) {
        Some(g) => g.name().to_string_lossy().into_owned(),
        None => format!("gid {gid}"),
    }
}

/// `owner alice:sftp mode 2775`.
pub(crate) fn meta_text(md: &std::fs::Metadata) -> String {
    use std::os::unix::fs::MetadataExt;
    format!(
        "owner {}:{} mode {:04o}",
        who(md.uid()),
        group_name(md.gid()),
        md.mode() & 0o7777
    )
}
