//! Every managed jail's `dev/log` is a hard link to rsyslog's current socket (rsyslog makes a
//! new socket inode on every start): which links are stale, and a step that renews them.
//!
//! Only `<root>/*/dev` is looked at, without following any symlink: a jail or dev dir that is
//! a symlink or not root-owned is skipped with a warning. Cost is one directory read plus a
//! few `lstat`s per jail.

use std::os::unix::fs::MetadataExt;

use anyhow::{Context, Result};
use walkdir::WalkDir;

use crate::accounts;
use crate::config::Config;
use crate::plan::fsops::{self, Kind};
use crate::plan::steps::HardLink;
use crate::plan::{Journal, Phase, Plan, Soft, Step};

/// The links that need renewing, and what was looked at.
pub struct Survey {
    pub stale: Vec<HardLink>,
    pub fresh: usize,
    pub skipped: Vec<String>,
}

/// Looks at every jail's `dev/log`; fails when rsyslog's socket is missing.
pub fn survey(config: &Config) -> Result<Survey> {
    let socket = config.root_log_socket();
    match fsops::inspect(&socket)?.0 {
        Kind::Socket => {}
        Kind::Missing => anyhow::bail!(
            "rsyslog's socket {} does not exist: start or restart rsyslog with the sftpctl drop-in ({}), then run this again",
            socket.display(),
            config.rsyslog.config.display()
        ),
        other => anyhow::bail!(
            "{} is a {other:?}, not rsyslog's socket: remove it and restart rsyslog",
            socket.display()
        ),
    }
    let socket_dev = std::fs::symlink_metadata(&socket)
        .with_context(|| format!("cannot inspect {}", socket.display()))?
        .dev();
    let jailed = accounts::jailed_names(config);
    let mut survey = Survey {
        stale: Vec::new(),
        fresh: 0,
        skipped: Vec::new(),
    };
    let walk = WalkDir::new(&config.root)
        .min_depth(1)
        .max_depth(1)
        .follow_links(false)
        .sort_by_file_name();
    for entry in walk {
        let entry = entry.with_context(|| format!("cannot read {}", config.root.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        if name == "dev" {
            continue;
        }
        let ft = entry.file_type();
        if ft.is_symlink() {
            survey
                .skipped
                .push(format!("{}: a symlink, not followed", path.display()));
            continue;
        }
        if !ft.is_dir() {
            continue;
        }
        if !jailed.contains(&name) {
            survey.skipped.push(format!(
                "{}: no jailed account {name} in group {}",
                path.display(),
                config.jail_group
            ));
            continue;
        }
        let md = entry
            .metadata()
            .with_context(|| format!("cannot inspect {}", path.display()))?;
        if md.uid() != 0 {
            survey.skipped.push(format!(
                "{}: not owned by root (sshd would refuse this jail too)",
                path.display()
            ));
            continue;
        }
        let dev = path.join("dev");
        match fsops::inspect(&dev)? {
            (Kind::Dir, Some(md)) if md.uid() == 0 => {}
            (Kind::Dir, _) => {
                survey
                    .skipped
                    .push(format!("{}: not owned by root", dev.display()));
                continue;
            }
            (Kind::Symlink, _) => {
                survey
                    .skipped
                    .push(format!("{}: a symlink, not followed", dev.display()));
                continue;
            }
            (Kind::Missing, _) => {
                survey.skipped.push(format!(
                    "{}: missing (run sftpctl add-user {name} to repair the jail)",
                    dev.display()
                ));
                continue;
            }
            (_, _) => {
                survey
                    .skipped
                    .push(format!("{}: not a directory", dev.display()));
                continue;
            }
        }
        if md.dev() != socket_dev {
            anyhow::bail!(
                "{} and {} are on different filesystems, so no hard link can join them: keep the jails and rsyslog's socket on one filesystem",
                dev.join("log").display(),
                socket.display()
            );
        }
        let link = HardLink {
            target: socket.clone(),
            link: dev.join("log"),
        };
        if link.is_satisfied()? {
            survey.fresh += 1;
        } else {
            survey.stale.push(link);
        }
    }
    Ok(survey)
}

/// Refreshes the links as part of another plan, after rsyslog was restarted.
pub struct RefreshLinksStep {
    pub config: Config,
    pub topic: Option<&'static str>,
}

impl Step for RefreshLinksStep {
    fn describe(&self) -> String {
        "refresh every jail's dev/log link".into()
    }
    fn is_satisfied(&self) -> Result<bool> {
        Ok(false)
    }
    fn apply(&self, _journal: &mut Journal) -> Result<()> {
        if fsops::inspect(&self.config.root_log_socket())?.0 == Kind::Missing {
            // rsyslog was not (re)started: nothing to link to yet, and its unit will do it.
            return Ok(());
        }
        let survey = survey(&self.config)?;
        let mut plan = Plan::new();
        for link in survey.stale {
            plan.push(link);
        }
        plan.apply(&mut std::io::sink()).map(|_| ())
    }
    fn phase(&self) -> Phase {
        Phase::Activate
    }
    fn topic(&self) -> Option<&'static str> {
        self.topic
    }
    fn soft_failure(&self, err: &anyhow::Error) -> Option<Soft> {
        Some(Soft::Note(format!(
            "note: the jails' log links were not refreshed ({err:#}); run sftpctl refresh-log-links once rsyslog runs"
        )))
    }
}
