//! From settings to plan steps: the user files, then what each key changes outside them.
//! `set`, `add-user` and `apply` all come through here, so a key means the same everywhere.

use std::collections::BTreeMap;

use anyhow::Result;

use crate::config::Config;
use crate::plan::Plan;
use crate::registry::{self, UserSettings};

/// One user's settings before and after the command.
pub struct Change {
    pub name: String,
    pub before: UserSettings,
    pub after: UserSettings,
}

impl Change {
    fn sshd_differs(&self) -> bool {
        self.before.access != self.after.access
            || self.before.allow_from != self.after.allow_from
            || self.before.quota != self.after.quota
    }
}

/// Steps that make the system match `changes`. `repair`: also the steps for keys that did
/// not change in the files (apply: the live system is made to match the file even when the
/// user files already did). Steps check before they change, so what matches stays unchanged.
pub fn push(plan: &mut Plan, config: &Config, changes: &[Change], repair: bool) -> Result<()> {
    let mut dir_pushed = false;
    for c in changes {
        if c.before != c.after || (repair && registry::exists(config, &c.name)) {
            if !dir_pushed {
                registry::dir_steps(plan, config)?;
                dir_pushed = true;
            }
            plan.push(registry::file_step(config, &c.name, &c.after)?);
        }
    }
    for c in changes {
        if repair || c.before.expires != c.after.expires {
            super::expiry::steps(plan, config, &c.name, &c.after)?;
        }
    }
    if repair || changes.iter().any(Change::sshd_differs) {
        let overrides: BTreeMap<String, UserSettings> = changes
            .iter()
            .map(|c| (c.name.clone(), c.after.clone()))
            .collect();
        super::sshd::steps(plan, config, &overrides)?;
    }
    Ok(())
}
