use super::steps::{File, ORIG_SUFFIX};
use super::*;
use crate::plan::fsops::Meta;

fn me(mode: u32) -> Meta {
    Meta::current_user(mode)
}

fn tempdir(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("sftpctl-plan-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn file(path: &std::path::Path, content: &str) -> File {
    File {
        path: path.to_path_buf(),
        content: content.into(),
        meta: Some(me(0o640)),
        topic: Some("t"),
    }
}

struct Fails;
impl Step for Fails {
    fn describe(&self) -> String {
        "fail on purpose".into()
    }
    fn is_satisfied(&self) -> Result<bool> {
        Ok(false)
    }
    fn apply(&self, _: &mut Journal) -> Result<()> {
        anyhow::bail!("boom")
    }
    fn phase(&self) -> Phase {
        Phase::Validate
    }
}

#[test]
fn second_apply_changes_nothing() {
    let dir = tempdir("idem");
    let a = dir.join("a.conf");
    let mk = || {
        let mut plan = Plan::new();
        plan.push(file(&a, "one\n"));
        plan
    };
    let first = mk().apply(&mut Vec::new()).unwrap();
    assert_eq!(first.changed, 1);
    let second = mk().apply(&mut Vec::new()).unwrap();
    assert_eq!((second.changed, second.unchanged), (0, 1));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn dry_run_touches_nothing_and_shows_a_diff() {
    let dir = tempdir("dry");
    let a = dir.join("a.conf");
    std::fs::write(&a, "old\n").unwrap();
    let mut plan = Plan::new();
    plan.push(file(&a, "new\n"));
    let mut out = Vec::new();
    assert_eq!(plan.print_dry_run(&mut out).unwrap(), 1);
    let out = String::from_utf8(out).unwrap();
    assert!(out.contains("-old") && out.contains("+new"), "{out}");
    assert_eq!(std::fs::read_to_string(&a).unwrap(), "old\n");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn failed_validation_restores_every_file_byte_for_byte() {
    let dir = tempdir("revert");
    let a = dir.join("a.conf");
    let b = dir.join("b.conf");
    std::fs::write(&a, "original\n").unwrap();
    let mut plan = Plan::new();
    plan.push(file(&a, "changed\n"));
    plan.push(file(&b, "created\n"));
    plan.push(Fails);
    let err = plan.apply(&mut Vec::new()).unwrap_err();
    assert!(format!("{err:#}").contains("boom"));
    assert_eq!(std::fs::read_to_string(&a).unwrap(), "original\n");
    assert!(!b.exists());
    // the kept original is part of this run too, so it goes as well
    assert!(!dir.join(format!("a.conf{ORIG_SUFFIX}")).exists());
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn the_original_of_a_foreign_file_is_kept_once() {
    let dir = tempdir("orig");
    let a = dir.join("a.conf");
    std::fs::write(&a, "theirs\n").unwrap();
    for content in ["mine 1\n", "mine 2\n"] {
        let mut plan = Plan::new();
        plan.push(file(&a, content));
        plan.apply(&mut Vec::new()).unwrap();
    }
    let orig = dir.join(format!("a.conf{ORIG_SUFFIX}"));
    assert_eq!(std::fs::read_to_string(orig).unwrap(), "theirs\n");
    assert_eq!(std::fs::read_to_string(&a).unwrap(), "mine 2\n");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn undo_says_it_restored_a_whole_file_from_its_kept_original() {
    let dir = tempdir("restore");
    let a = dir.join("a.conf");
    std::fs::write(&a, "theirs\n").unwrap();
    let mut plan = Plan::new();
    plan.push(file(&a, "mine\n"));
    plan.apply(&mut Vec::new()).unwrap();
    let mut undo = Plan::new();
    undo.push(super::removal::RemoveManaged::new(a.clone(), false, None));
    let mut out = Vec::new();
    undo.apply(&mut out).unwrap();
    let out = String::from_utf8(out).unwrap();
    let orig = dir.join(format!("a.conf{ORIG_SUFFIX}"));
    let line = format!("  + restore {} from {}\n", a.display(), orig.display());
    assert!(out.contains(&line), "{out}");
    assert_eq!(std::fs::read_to_string(&a).unwrap(), "theirs\n");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_symlink_is_never_written_through() {
    let dir = tempdir("link");
    let victim = dir.join("victim");
    std::fs::write(&victim, "keep\n").unwrap();
    let a = dir.join("a.conf");
    std::os::unix::fs::symlink(&victim, &a).unwrap();
    let mut plan = Plan::new();
    plan.push(file(&a, "evil\n"));
    assert!(plan.apply(&mut Vec::new()).is_err());
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep\n");
    std::fs::remove_dir_all(dir).unwrap();
}

struct FailsAlone(std::path::PathBuf);
impl Step for FailsAlone {
    fn describe(&self) -> String {
        "isolated step that fails after a change".into()
    }
    fn is_satisfied(&self) -> Result<bool> {
        Ok(false)
    }
    fn apply(&self, journal: &mut Journal) -> Result<()> {
        let step = file(&self.0, "written, then reverted alone\n");
        step.apply(journal)?;
        anyhow::bail!("boom")
    }
    fn isolated(&self) -> bool {
        true
    }
}

#[test]
fn an_isolated_failure_reverts_only_itself_and_the_rest_applies() {
    let dir = tempdir("isolated");
    let (a, b, c) = (dir.join("a"), dir.join("b"), dir.join("c"));
    let mut plan = Plan::new();
    plan.push(file(&a, "a\n"));
    plan.push(FailsAlone(b.clone()));
    plan.push(file(&c, "c\n"));
    let mut out = Vec::new();
    let outcome = plan.apply(&mut out).unwrap();
    assert_eq!(outcome.changed, 2);
    assert_eq!(outcome.failed.len(), 1, "{outcome:?}");
    assert!(outcome.failed[0].contains("boom"));
    assert!(a.exists() && c.exists());
    assert!(!b.exists(), "the failed step's own change was reverted");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn systemctl_show_blocks_become_unit_states() {
    use crate::plan::steps::parse_unit_states;
    let text = "Id=rsyslog.service\nLoadState=loaded\nActiveState=failed\nResult=start-limit-hit\n\nId=sftpctl-watch.service\nLoadState=loaded\nActiveState=active\nResult=success\n";
    let states = parse_unit_states(text);
    assert_eq!(states.len(), 2);
    assert_eq!(states[0].id, "rsyslog.service");
    assert!(states[0].start_limit_hit());
    assert_eq!(states[1].active, "active");
    assert!(!states[1].start_limit_hit());
    // A unit that crashed is failed, but not refused by the start limit.
    let crashed = parse_unit_states(
        "Id=rsyslog.service\nActiveState=failed\nResult=exit-code\nExecMainStatus=1\n",
    );
    assert!(!crashed[0].start_limit_hit());
    assert!(!crashed[0].could_not_spawn(), "rsyslogd itself exited 1");
    // systemd failed to put the process into its cgroup (219/CGROUP): not the daemon's doing.
    let cgroup = parse_unit_states(
        "Id=rsyslog.service\nActiveState=failed\nResult=exit-code\nExecMainStatus=219\n",
    );
    assert_eq!(cgroup[0].exec_main_status, Some(219));
    assert!(cgroup[0].could_not_spawn());
    let spawn = parse_unit_states("Id=rsyslog.service\nActiveState=failed\nResult=resources\n");
    assert!(spawn[0].could_not_spawn());
}
