//! The kinds of step: groups, accounts, directories, files, hard links, validators and
//! service activations.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::plan::fsops::{self, Kind, Meta};
use crate::plan::journal::{Journal, Undo};
use crate::plan::{Phase, Soft, Step};

/// First line of every file that sftpctl owns whole. A file without it that sftpctl changes
/// is kept beside it as `<name>.sftpctl-orig` the first time.
pub const MANAGED_MARKER: &str = "# Managed by sftpctl";

/// Suffix of the copy of a file sftpctl did not create, kept on its first change.
pub const ORIG_SUFFIX: &str = ".sftpctl-orig";

/// Runs a command; on failure the error quotes its own output on one line.
pub fn run_command(argv: &[String]) -> Result<String> {
    let (program, args) = argv.split_first().context("empty command")?;
    let output = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("cannot run {program}"))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stderr),
        String::from_utf8_lossy(&output.stdout)
    );
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if !output.status.success() {
        bail!("`{}` failed ({}): {}", argv.join(" "), output.status, text);
    }
    Ok(text)
}

/// useradd/groupadd fail at once when another process holds the passwd lock; retry briefly.
fn run_account_command(argv: &[String]) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match run_command(argv) {
            Ok(_) => return Ok(()),
            Err(e) if Instant::now() < deadline && format!("{e}").contains("lock") => {
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => return Err(e),
        }
    }
}

/// uid of a user name; `root` is 0.
pub fn uid_of(user: &str) -> Option<u32> {
    // Most steps are root's: no need to scan the account database for it.
    if user == "root" {
        return Some(0);
    }
    cached_id('u', user, || users::get_user_by_name(user).map(|u| u.uid()))
}

/// Ids found in the account database during this run. Each lookup parses the whole
/// /etc/passwd or /etc/group, so without this a run's cost would grow with the number of
/// accounts. Only found ids are kept (a name may be created later in the same run), and
/// [`forget_ids`] drops them all when an account or group is removed.
static IDS: std::sync::Mutex<Option<std::collections::HashMap<(char, String), u32>>> =
    std::sync::Mutex::new(None);

fn cached_id(kind: char, name: &str, lookup: impl FnOnce() -> Option<u32>) -> Option<u32> {
    let key = (kind, name.to_string());
    if let Some(id) = IDS
        .lock()
        .ok()
        .and_then(|m| m.as_ref().and_then(|m| m.get(&key).copied()))
    {
        return Some(id);
    }
    let id = lookup()?;
    if let Ok(mut m) = IDS.lock() {
        m.get_or_insert_with(Default::default).insert(key, id);
    }
    Some(id)
}

/// Call after removing an account or a group: cached ids may be stale.
pub fn forget_ids() {
    if let Ok(mut m) = IDS.lock() {
        *m = None;
    }
}

/// gid of a group name; `root` is 0.
pub fn gid_of(group: &str) -> Option<u32> {
    if group == "root" {
        return Some(0);
    }
    cached_id('g', group, || {
        users::get_group_by_name(group).map(|g| g.gid())
    })
}

/// A group exists.
pub struct Group {
    pub name: String,
}

impl Step for Group {
    fn describe(&self) -> String {
        format!("create group {}", self.name)
    }
    fn is_satisfied(&self) -> Result<bool> {
        Ok(gid_of(&self.name).is_some())
    }
    fn apply(&self, journal: &mut Journal) -> Result<()> {
        run_account_command(&["groupadd".into(), self.name.clone()])?;
        journal.record(Undo::RunCommand(vec!["groupdel".into(), self.name.clone()]));
        Ok(())
    }
}

/// An account exists, created with useradd and a `*` password field (key-only, not locked).
pub struct User {
    pub name: String,
    pub primary_group: String,
    pub groups: Vec<String>,
    pub home: PathBuf,
    pub shell: PathBuf,
    pub purpose: &'static str,
    /// Whether useradd may give the account a range in /etc/subuid and /etc/subgid (what it
    /// does for every non-system account when those files exist). Jailed accounts never
    /// start user namespaces: they get none.
    pub subordinate_ids: bool,
}

impl Step for User {
    fn describe(&self) -> String {
        format!(
            "create {} account {} (group {}{}, home {}, shell {})",
            self.purpose,
            self.name,
            self.primary_group,
            if self.groups.is_empty() {
                String::new()
            } else {
                format!(", also in {}", self.groups.join(","))
            },
            self.home.display(),
            self.shell.display()
        )
    }
    fn is_satisfied(&self) -> Result<bool> {
        Ok(uid_of(&self.name).is_some())
    }
    fn apply(&self, journal: &mut Journal) -> Result<()> {
        let mut argv: Vec<String> = vec![
            "useradd".into(),
            "-M".into(),
            "-g".into(),
            self.primary_group.clone(),
            "-d".into(),
            self.home.display().to_string(),
            "-s".into(),
            self.shell.display().to_string(),
            "-p".into(),
            "*".into(),
        ];
        if !self.groups.is_empty() {
            argv.push("-G".into());
            argv.push(self.groups.join(","));
        }
        if !self.subordinate_ids {
            argv.extend(NO_SUBORDINATE_IDS.iter().map(|a| a.to_string()));
        }
        argv.push(self.name.clone());
        match run_account_command(&argv) {
            Err(e) if !self.subordinate_ids && is_old_shadow_refusal(&e) => {
                // shadow < 4.9 (Ubuntu 22.04) cannot allocate zero ids and fails before it
                // writes anything: create the account as that shadow always did.
                argv.retain(|a| !NO_SUBORDINATE_IDS.contains(&a.as_str()));
                run_account_command(&argv)?;
            }
            other => other?,
        }
        journal.record(Undo::RunCommand(vec!["userdel".into(), self.name.clone()]));
        Ok(())
    }
}

/// useradd's override of login.defs that allocates no subordinate ids: honoured since shadow
/// 4.9 (the -K values are read before the allocation is decided; Debian 12 has 4.13, Debian 13
/// 4.17, RHEL 9 4.9).
const NO_SUBORDINATE_IDS: [&str; 4] = ["-K", "SUB_UID_COUNT=0", "-K", "SUB_GID_COUNT=0"];

/// shadow < 4.9 takes `SUB_UID_COUNT=0` as a request for an empty range, finds none and stops:
/// "useradd: can't create subordinate user IDs" (exit 16 or 18), before any file is written.
fn is_old_shadow_refusal(error: &anyhow::Error) -> bool {
    let text = format!("{error:#}");
    text.contains("can't create subordinate")
}

/// A directory with exact owner and mode. Owners are names, resolved when checked or
/// applied, so a directory can belong to an account the same plan creates.
pub struct Dir {
    pub path: PathBuf,
    pub user: String,
    pub group: String,
    pub mode: u32,
}

impl Dir {
    pub fn root(path: impl Into<PathBuf>, mode: u32) -> Dir {
        Dir {
            path: path.into(),
            user: "root".into(),
            group: "root".into(),
            mode,
        }
    }

    fn wanted(&self) -> Option<Meta> {
        Some(Meta {
            mode: self.mode,
            uid: uid_of(&self.user)?,
            gid: gid_of(&self.group)?,
        })
    }
}

impl Step for Dir {
    fn describe(&self) -> String {
        format!(
            "directory {} {}:{} {:04o}",
            self.path.display(),
            self.user,
            self.group,
            self.mode
        )
    }
    fn is_satisfied(&self) -> Result<bool> {
        match fsops::inspect(&self.path)? {
            (Kind::Missing, _) => Ok(false),
            (Kind::Dir, Some(md)) => Ok(self.wanted() == Some(Meta::of(&md))),
            (kind, _) => bail!(
                "{} exists but is a {kind:?}, not a directory; move it away and run again",
                self.path.display()
            ),
        }
    }
    fn apply(&self, journal: &mut Journal) -> Result<()> {
        let meta = self.wanted().with_context(|| {
            format!("user {} or group {} does not exist", self.user, self.group)
        })?;
        match fsops::inspect(&self.path)? {
            (Kind::Missing, _) => {
                fsops::create_dir(&self.path, meta)?;
                journal.record(Undo::RemoveDir(self.path.clone()));
            }
            (Kind::Dir, Some(md)) => {
                fsops::set_dir_meta(&self.path, meta)?;
                journal.record(Undo::RestoreMeta {
                    path: self.path.clone(),
                    meta: Meta::of(&md),
                });
            }
            _ => bail!("{} is not a directory", self.path.display()),
        }
        Ok(())
    }
}

/// A file with exact content. `meta: None` keeps the mode and owner of an existing file
/// (root 0644 for a new one): used for files sftpctl only adds a fenced block to.
pub struct File {
    pub path: PathBuf,
    pub content: String,
    pub meta: Option<Meta>,
    pub topic: Option<&'static str>,
}

impl File {
    fn target_meta(&self, existing: Option<Meta>) -> Meta {
        self.meta.or(existing).unwrap_or(Meta::root(0o644))
    }
}

impl Step for File {
    fn describe(&self) -> String {
        match self.meta {
            Some(m) => format!("file {} ({:04o})", self.path.display(), m.mode),
            None => format!("file {}", self.path.display()),
        }
    }
    fn diff(&self) -> Result<Option<String>> {
        let old = fsops::read_regular(&self.path)?
            .map(|(bytes, _)| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_default();
        if old == self.content {
            return Ok(None);
        }
        let name = self.path.display().to_string();
        let diff = similar::TextDiff::from_lines(&old, &self.content)
            .unified_diff()
            .context_radius(2)
            .header(&name, &name)
            .to_string();
        Ok(Some(diff))
    }
    fn is_satisfied(&self) -> Result<bool> {
        Ok(match fsops::read_regular(&self.path)? {
            None => false,
            Some((bytes, meta)) => {
                bytes == self.content.as_bytes() && self.target_meta(Some(meta)) == meta
            }
        })
    }
    fn apply(&self, journal: &mut Journal) -> Result<()> {
        let existing = fsops::read_regular(&self.path)?;
        match &existing {
            None => {
                fsops::write_atomic(&self.path, self.content.as_bytes(), self.target_meta(None))?;
                journal.record(Undo::RemoveFile(self.path.clone()));
            }
            Some((bytes, meta)) => {
                keep_original(&self.path, bytes, *meta, journal)?;
                let saved = fsops::save_original(&self.path)?;
                journal.record(Undo::RestoreFile {
                    path: self.path.clone(),
                    saved,
                });
                fsops::write_atomic(
                    &self.path,
                    self.content.as_bytes(),
                    self.target_meta(Some(*meta)),
                )?;
            }
        }
        Ok(())
    }
    fn topic(&self) -> Option<&'static str> {
        self.topic
    }
}

/// The first time sftpctl changes a file it did not create, it keeps the original beside it.
fn keep_original(path: &Path, bytes: &[u8], meta: Meta, journal: &mut Journal) -> Result<()> {
    if bytes.starts_with(MANAGED_MARKER.as_bytes()) {
        return Ok(());
    }
    let mut orig = path.as_os_str().to_owned();
    orig.push(ORIG_SUFFIX);
    let orig = PathBuf::from(orig);
    if fsops::inspect(&orig)?.0 != Kind::Missing {
        return Ok(());
    }
    fsops::write_atomic(&orig, bytes, meta)?;
    journal.record(Undo::RemoveFile(orig));
    Ok(())
}

/// `link` is a hard link to `target` (same inode), replaced atomically when stale.
pub struct HardLink {
    pub target: PathBuf,
    pub link: PathBuf,
}

impl Step for HardLink {
    fn describe(&self) -> String {
        format!(
            "hard link {} -> {}",
            self.link.display(),
            self.target.display()
        )
    }
    fn is_satisfied(&self) -> Result<bool> {
        let want = fsops::inode(&self.target)?;
        Ok(want.is_some() && fsops::inode(&self.link)? == want)
    }
    fn apply(&self, journal: &mut Journal) -> Result<()> {
        let existed = fsops::inspect(&self.link)?.0 != Kind::Missing;
        fsops::replace_hard_link(&self.target, &self.link)?;
        if !existed {
            journal.record(Undo::RemoveFile(self.link.clone()));
        }
        Ok(())
    }
}

/// An existing regular file gets exact owner and mode; its bytes are left alone.
pub struct FileMeta {
    pub path: PathBuf,
    pub meta: Meta,
}

impl Step for FileMeta {
    fn describe(&self) -> String {
        format!(
            "owner {}:{} and mode {:04o} of {}",
            self.meta.uid,
            self.meta.gid,
            self.meta.mode,
            self.path.display()
        )
    }
    fn is_satisfied(&self) -> Result<bool> {
        match fsops::inspect(&self.path)? {
            (Kind::File, Some(md)) => Ok(Meta::of(&md) == self.meta),
            (kind, _) => bail!(
                "{} is a {kind:?}, not a regular file; sftpctl does not repair it",
                self.path.display()
            ),
        }
    }
    fn apply(&self, journal: &mut Journal) -> Result<()> {
        let (_, md) = fsops::inspect(&self.path)?;
        let old = md.map(|m| Meta::of(&m));
        fsops::set_file_meta(&self.path, self.meta)?;
        if let Some(meta) = old {
            journal.record(Undo::RestoreFileMeta {
                path: self.path.clone(),
                meta,
            });
        }
        Ok(())
    }
}

/// The field of an existing account that [`Usermod`] sets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccountField {
    /// The password field in the shadow file (`usermod -p`), e.g. `*` for key-only.
    Password(String),
    /// The login shell (`usermod -s`).
    Shell(PathBuf),
    /// The home directory (`usermod -d`).
    Home(PathBuf),
    /// The primary group (`usermod -g`).
    PrimaryGroup(String),
}

impl AccountField {
    fn flag_and_value(&self) -> (&'static str, String) {
        match self {
            AccountField::Password(p) => ("-p", p.clone()),
            AccountField::Shell(s) => ("-s", s.display().to_string()),
            AccountField::Home(h) => ("-d", h.display().to_string()),
            AccountField::PrimaryGroup(g) => ("-g", g.clone()),
        }
    }

    /// The account's current value of this field, as usermod takes it.
    fn current(&self, name: &str) -> Result<Option<String>> {
        use users::os::unix::UserExt;
        if let AccountField::Password(_) = self {
            return shadow_password(Path::new(SHADOW_FILE), name);
        }
        let Some(user) = users::get_user_by_name(name) else {
            return Ok(None);
        };
        Ok(Some(match self {
            AccountField::Shell(_) => user.shell().display().to_string(),
            AccountField::Home(_) => user.home_dir().display().to_string(),
            AccountField::PrimaryGroup(_) => users::get_group_by_gid(user.primary_group_id())
                .map(|g| g.name().to_string_lossy().into_owned())
                .unwrap_or_else(|| user.primary_group_id().to_string()),
            AccountField::Password(_) => unreachable!(),
        }))
    }
}

/// The shadow file usermod writes.
pub const SHADOW_FILE: &str = "/etc/shadow";

/// The password field of `name` in a shadow file, `None` when it has no line.
pub fn shadow_password(shadow: &Path, name: &str) -> Result<Option<String>> {
    let text = fs_err::read_to_string(shadow)?;
    Ok(text.lines().find_map(|l| {
        let mut f = l.split(':');
        (f.next() == Some(name)).then(|| f.next().unwrap_or("").to_string())
    }))
}

/// One field of an existing account, set with usermod; undone by setting it back.
pub struct Usermod {
    pub name: String,
    pub field: AccountField,
}

impl Step for Usermod {
    fn describe(&self) -> String {
        let (flag, value) = self.field.flag_and_value();
        format!("usermod {flag} '{value}' {}", self.name)
    }
    fn is_satisfied(&self) -> Result<bool> {
        let (_, want) = self.field.flag_and_value();
        Ok(self.field.current(&self.name)? == Some(want))
    }
    fn apply(&self, journal: &mut Journal) -> Result<()> {
        let old = self
            .field
            .current(&self.name)?
            .with_context(|| format!("account {} does not exist", self.name))?;
        let (flag, value) = self.field.flag_and_value();
        run_account_command(&["usermod".into(), flag.into(), value, self.name.clone()])?;
        journal.record(Undo::RunCommand(vec![
            "usermod".into(),
            flag.into(),
            old,
            self.name.clone(),
        ]));
        Ok(())
    }
}

/// Runs a validator over the candidate files; its failure reverts the run.
pub struct Validate {
    pub what: String,
    pub argv: Vec<String>,
}

impl Step for Validate {
    fn describe(&self) -> String {
        format!("validate {} ({})", self.what, self.argv.join(" "))
    }
    fn is_satisfied(&self) -> Result<bool> {
        Ok(false)
    }
    fn apply(&self, _journal: &mut Journal) -> Result<()> {
        run_command(&self.argv)
            .map(|_| ())
            .with_context(|| format!("{} rejected the new configuration", self.what))
    }
    fn phase(&self) -> Phase {
        Phase::Validate
    }
}

/// Runs a configured service command (reload, restart) after its topic's files changed.
pub struct Activate {
    pub what: String,
    /// The config key the command comes from, named when it is empty.
    pub key: &'static str,
    pub argv: Vec<String>,
    pub topic: Option<&'static str>,
}

impl Step for Activate {
    fn describe(&self) -> String {
        format!("{} ({})", self.what, self.argv.join(" "))
    }
    fn is_satisfied(&self) -> Result<bool> {
        Ok(false)
    }
    fn apply(&self, _journal: &mut Journal) -> Result<()> {
        if self.argv.is_empty() {
            bail!("{} is empty", self.key);
        }
        match run_command(&self.argv) {
            // systemd's words for result 'resources': it could not spawn the process at all
            // (systemd 257 under quick restarts: "Failed to spawn executor"); once more works.
            Err(e) if format!("{e}").contains("unavailable resources") => {
                std::thread::sleep(Duration::from_secs(1));
                run_command(&self.argv)
                    .map(|_| ())
                    .with_context(|| format!("also after one retry; first: {e}"))
            }
            other => other.map(|_| ()),
        }
    }
    fn phase(&self) -> Phase {
        Phase::Activate
    }
    fn topic(&self) -> Option<&'static str> {
        self.topic
    }
    fn soft_failure(&self, _err: &anyhow::Error) -> Option<Soft> {
        if self.argv.is_empty() {
            return Some(Soft::Note(format!(
                "note: {} is [], so sftpctl did not {}: do it yourself",
                self.key, self.what
            )));
        }
        if service_manager_running() {
            return None;
        }
        Some(Soft::NoServiceManager(self.argv.join(" ")))
    }
}

/// True when systemd runs as PID 1 (what `sd_booted()` checks).
pub fn service_manager_running() -> bool {
    Path::new("/run/systemd/system").is_dir()
}

/// The state systemd shows for a unit (`systemctl show -p Id -p LoadState -p ActiveState -p
/// Result`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UnitState {
    pub id: String,
    pub load: String,
    pub active: String,
    pub result: String,
    /// Units whose activation starts this one (for rsyslog: `syslog.socket`).
    pub triggered_by: Vec<String>,
    /// The exit status of the last start's main process (`ExecMainStatus`).
    pub exec_main_status: Option<i32>,
}

impl UnitState {
    /// Refused by systemd's start limit (StartLimitBurst starts within StartLimitIntervalSec):
    /// it stays failed until `systemctl reset-failed`, whatever starts it.
    pub fn start_limit_hit(&self) -> bool {
        // A socket whose service was refused says `service-start-limit-hit`.
        self.active == "failed"
            && matches!(
                self.result.as_str(),
                "start-limit-hit" | "service-start-limit-hit"
            )
    }

    /// systemd could not start the process at all, through nothing the unit or its config
    /// did: result `resources` ("Failed to spawn executor"), or exit status 219/CGROUP
    /// ("Failed to attach to cgroup …: No such file or directory" when a quick restart races
    /// the old cgroup's removal). Both seen with systemd in nspawn on these machines.
    pub fn could_not_spawn(&self) -> bool {
        self.active == "failed"
            && (self.result == "resources"
                || (self.result == "exit-code" && self.exec_main_status == Some(EXIT_CGROUP)))
    }
}

/// systemd's exit status for a process it could not move into the unit's cgroup.
const EXIT_CGROUP: i32 = 219;

/// The states of `units`, in that order, from one `systemctl show`.
pub fn unit_states(units: &[&str]) -> Result<Vec<UnitState>> {
    let mut argv: Vec<String> = ["systemctl", "show", "-p", "Id", "-p", "LoadState"]
        .iter()
        .chain(&[
            "-p",
            "ActiveState",
            "-p",
            "Result",
            "-p",
            "TriggeredBy",
            "-p",
            "ExecMainStatus",
        ])
        .map(|s| s.to_string())
        .collect();
    argv.extend(units.iter().map(|u| u.to_string()));
    let out = Command::new(&argv[0])
        .args(&argv[1..])
        .output()
        .context("cannot run systemctl show")?;
    if !out.status.success() {
        bail!(
            "`{}` failed: {}",
            argv.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(parse_unit_states(&String::from_utf8_lossy(&out.stdout)))
}

/// `systemctl show` prints one block of `Key=value` lines per unit, blocks separated by an
/// empty line.
pub fn parse_unit_states(text: &str) -> Vec<UnitState> {
    text.split("\n\n")
        .filter(|b| !b.trim().is_empty())
        .map(|block| {
            let mut u = UnitState::default();
            for line in block.lines() {
                let Some((k, v)) = line.split_once('=') else {
                    continue;
                };
                let v = v.trim().to_string();
                match k {
                    "Id" => u.id = v,
                    "LoadState" => u.load = v,
                    "ActiveState" => u.active = v,
                    "Result" => u.result = v,
                    "ExecMainStatus" => u.exec_main_status = v.parse().ok(),
                    "TriggeredBy" => {
                        u.triggered_by = v.split_whitespace().map(str::to_string).collect()
                    }
                    _ => {}
                }
            }
            u
        })
        .collect()
}

/// Clears systemd's start limit of `units` and starts `start` once: one `systemctl
/// reset-failed` and one `systemctl start`, never a loop (doctor --fix runs it only when every
/// failed unit was refused by the start limit and rsyslog's config validates).
pub struct ClearStartLimit {
    pub units: Vec<String>,
    pub start: String,
}

impl ClearStartLimit {
    fn reset_argv(&self) -> Vec<String> {
        let mut argv = vec!["systemctl".to_string(), "reset-failed".to_string()];
        argv.extend(self.units.iter().cloned());
        argv
    }
    fn start_argv(&self) -> Vec<String> {
        vec!["systemctl".into(), "start".into(), self.start.clone()]
    }
}

impl Step for ClearStartLimit {
    fn describe(&self) -> String {
        format!(
            "{} && {}",
            self.reset_argv().join(" "),
            self.start_argv().join(" ")
        )
    }
    fn is_satisfied(&self) -> Result<bool> {
        let units: Vec<&str> = self.units.iter().map(String::as_str).collect();
        Ok(!unit_states(&units)?.iter().any(UnitState::start_limit_hit))
    }
    fn apply(&self, _journal: &mut Journal) -> Result<()> {
        run_command(&self.reset_argv())?;
        run_command(&self.start_argv())?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_old_shadow_refusal_triggers_the_retry() {
        let old = anyhow::anyhow!(
            "`useradd -K SUB_UID_COUNT=0 x` failed (exit status: 16): useradd: can't create subordinate user IDs"
        );
        assert!(is_old_shadow_refusal(&old));
        let other = anyhow::anyhow!(
            "`useradd x` failed (exit status: 9): useradd: user 'x' already exists"
        );
        assert!(!is_old_shadow_refusal(&other));
    }

    /// A command that fails once as systemctl does for result 'resources', then works; and
    /// one that fails otherwise, which is not run again.
    #[test]
    fn an_activation_refused_for_resources_is_tried_once_more() {
        let dir = std::env::temp_dir().join(format!("sftpctl-activate-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let once = |text: &str| {
            let seen = dir.join(format!("seen-{}", text.len()));
            vec![
                "/bin/sh".to_string(),
                "-c".into(),
                format!(
                    "echo run >> {seen}.log; [ -e {seen} ] && exit 0; touch {seen}; echo '{text}' >&2; exit 1",
                    seen = seen.display()
                ),
            ]
        };
        let step = |argv| Activate {
            what: "restart rsyslog".into(),
            key: "rsyslog.restart",
            argv,
            topic: None,
        };
        let flaky = once("Job for rsyslog.service failed because of unavailable resources or another system error.");
        step(flaky).apply(&mut Journal::default()).unwrap();
        let broken = once("Unit rsyslog.service not found.");
        assert!(step(broken).apply(&mut Journal::default()).is_err());
        let runs = |n: usize| {
            std::fs::read_to_string(dir.join(format!("seen-{n}.log")))
                .unwrap()
                .lines()
                .count()
        };
        assert_eq!(runs(88), 2, "tried once more");
        assert_eq!(runs(31), 1, "not tried again");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
