//! The check model: one finding with a status, what was seen, the fix in words and,
//! when the fix is safe to make, the plan steps that make it.

use crate::display::visible;
use std::fmt;

use serde::Serialize;

use crate::plan::Step;

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Warn,
    Fail,
}

impl Status {
    /// The four-character column the text output starts with.
    pub fn label(self) -> &'static str {
        match self {
            Status::Ok => "ok  ",
            Status::Warn => "warn",
            Status::Fail => "FAIL",
        }
    }
}

/// One finding.
#[derive(Serialize)]
pub struct Check {
    /// The area: `jails`, `logs`, `sshd`, `accounts`, `keys`, `rsyslog`, `logrotate`,
    /// `watcher`, `drift`.
    pub area: &'static str,
    /// What was checked, e.g. `jail alice` or `sshd -t`.
    pub name: String,
    pub status: Status,
    /// What was seen.
    pub message: String,
    /// What to do, in words (none for `ok`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
    /// For drifted files: the unified diff from the disk to what sftpctl would write.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diff: Option<String>,
    /// `--fix` can repair it.
    pub repairable: bool,
    /// The steps `--fix` runs, in order.
    #[serde(skip)]
    pub repair: Vec<Box<dyn Step>>,
}

impl Check {
    pub fn ok(area: &'static str, name: impl Into<String>, message: impl Into<String>) -> Check {
        Check {
            area,
            name: name.into(),
            status: Status::Ok,
            message: message.into(),
            fix: None,
            diff: None,
            repairable: false,
            repair: Vec::new(),
        }
    }

    pub fn warn(
        area: &'static str,
        name: impl Into<String>,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) -> Check {
        Check {
            status: Status::Warn,
            fix: Some(fix.into()),
            ..Check::ok(area, name, message)
        }
    }

    pub fn fail(
        area: &'static str,
        name: impl Into<String>,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) -> Check {
        Check {
            status: Status::Fail,
            fix: Some(fix.into()),
            ..Check::ok(area, name, message)
        }
    }

    /// Adds a step that `--fix` runs to repair this finding.
    pub fn repair(mut self, step: impl Step + 'static) -> Check {
        self.repair.push(Box::new(step));
        self.repairable = true;
        self
    }

    pub fn with_diff(mut self, diff: Option<String>) -> Check {
        self.diff = diff;
        self
    }
}

impl fmt::Display for Check {
    /// `FAIL jail alice: <message>; fix: <fix> [--fix repairs this]`, one line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Messages name paths from users' trees: never let one reach a terminal raw.
        write!(
            f,
            "{} {}: {}",
            self.status.label(),
            visible(&self.name),
            visible(&self.message)
        )?;
        if let Some(fix) = &self.fix {
            write!(f, "; fix: {}", visible(fix))?;
        }
        if self.repairable {
            write!(f, " [--fix repairs this]")?;
        }
        Ok(())
    }
}

/// Counts by status.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub ok: usize,
    pub warn: usize,
    pub fail: usize,
    pub repairable: usize,
}

impl Summary {
    pub fn of(checks: &[Check]) -> Summary {
        let mut s = Summary::default();
        for c in checks {
            match c.status {
                Status::Ok => s.ok += 1,
                Status::Warn => s.warn += 1,
                Status::Fail => s.fail += 1,
            }
            if c.repairable && c.status != Status::Ok {
                s.repairable += 1;
            }
        }
        s
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "doctor: {} ok, {} warn, {} FAIL",
            self.ok, self.warn, self.fail
        )?;
        if self.repairable > 0 {
            write!(
                f,
                "; {} can be repaired with `sftpctl doctor --fix` (try --fix --dry-run first)",
                self.repairable
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_with_fix() {
        let c = Check::fail("jails", "jail alice", "mode 0775", "chmod 755 it");
        assert_eq!(
            c.to_string(),
            "FAIL jail alice: mode 0775; fix: chmod 755 it"
        );
        let ok = Check::ok("sshd", "sshd -t", "valid");
        assert_eq!(ok.to_string(), "ok   sshd -t: valid");
        let s = Summary::of(&[c, ok]);
        assert_eq!((s.ok, s.fail, s.repairable), (1, 1, 0));
    }
}
