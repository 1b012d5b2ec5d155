//! The change engine: every mutating command first builds a [`Plan`], an ordered list of
//! [`Step`]s, then either prints it (`--dry-run`) or applies it.
//!
//! Modelled on nix-installer's actions: plan → describe → execute → revert. A step that
//! already holds is shown as unchanged and skipped, so a second identical run changes nothing.
//! Changes are recorded in a [`Journal`]; when a change or a validator fails, the journal is
//! replayed backwards so every file changed in this run is restored byte for byte.

pub mod account_steps;
pub mod archive;
pub mod fsops;
pub mod journal;
mod parents;
pub mod removal;
pub mod steps;
pub mod tree_removal;

use crate::display::visible;
use std::collections::BTreeSet;
use std::io::Write;

use anyhow::Result;

pub use journal::Journal;
pub use parents::parent_dirs;

/// What a step is for, which decides when it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Changes the system (files, dirs, links, accounts).
    Change,
    /// Checks candidate files after the changes; a failure reverts every change.
    Validate,
    /// Makes a service pick the changes up; runs only when its topic changed.
    Activate,
}

/// One unit of change.
pub trait Step {
    /// One line a person understands, e.g. "create group sftp-only".
    fn describe(&self) -> String;
    /// For file contents: a unified diff against what is on disk now.
    fn diff(&self) -> Result<Option<String>> {
        Ok(None)
    }
    /// True when the system already matches: the step is shown as unchanged and skipped.
    fn is_satisfied(&self) -> Result<bool>;
    /// Makes the change, recording how to undo it.
    fn apply(&self, journal: &mut Journal) -> Result<()>;
    fn phase(&self) -> Phase {
        Phase::Change
    }
    /// Which service this change concerns ("sshd", "rsyslog", "systemd"); activation steps
    /// with the same topic run only if a change with that topic was applied.
    fn topic(&self) -> Option<&'static str> {
        None
    }
    /// An activation step whose failure is reported but does not fail the command.
    fn soft_failure(&self, _err: &anyhow::Error) -> Option<Soft> {
        None
    }
    /// A change that stands on its own (e.g. one jail's repair): when it fails, only what it
    /// changed itself is reverted, the failure is reported in [`Outcome::failed`] and the
    /// other steps still run; once applied it is kept even if a later step fails.
    fn isolated(&self) -> bool {
        false
    }
}

/// A failed activation that does not fail the command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Soft {
    /// The command needs a service manager and none runs: the admin runs it later.
    NoServiceManager(String),
    /// Anything else worth one line.
    Note(String),
}

/// An ordered list of steps.
#[derive(Default)]
pub struct Plan {
    steps: Vec<Box<dyn Step>>,
}

/// What applying a plan did.
#[derive(Debug, Default)]
pub struct Outcome {
    pub changed: usize,
    pub unchanged: usize,
    pub notes: Vec<String>,
    /// Service commands that could not run because no service manager runs.
    pub manual: Vec<String>,
    /// Isolated steps that failed (and were reverted on their own), with the reason.
    pub failed: Vec<String>,
}

impl Plan {
    pub fn new() -> Plan {
        Plan::default()
    }

    pub fn push(&mut self, step: impl Step + 'static) {
        self.steps.push(Box::new(step));
    }

    /// Adds a step that is already boxed (e.g. collected from doctor's findings).
    pub fn push_boxed(&mut self, step: Box<dyn Step>) {
        self.steps.push(step);
    }

    pub fn len(&self) -> usize {
        self.steps.len()
    }

    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// `--dry-run`: prints every step, marked `+` (would change) or `=` (already so), with the
    /// diff of each file that would change. Touches nothing. Returns how many would change.
    pub fn print_dry_run(&self, out: &mut dyn Write) -> Result<usize> {
        let mut pending = 0;
        for step in &self.steps {
            match step.phase() {
                Phase::Change => {
                    if step.is_satisfied()? {
                        writeln!(out, "  = {} (unchanged)", visible(&step.describe()))?;
                    } else {
                        pending += 1;
                        writeln!(out, "  + {}", visible(&step.describe()))?;
                        if let Some(diff) = step.diff()? {
                            for line in diff.lines() {
                                writeln!(out, "      {}", visible(line))?;
                            }
                        }
                    }
                }
                Phase::Validate => {
                    writeln!(out, "  ? {} (after changes)", visible(&step.describe()))?
                }
                Phase::Activate => writeln!(
                    out,
                    "  ! {} (if its files change)",
                    visible(&step.describe())
                )?,
            }
        }
        if pending == 0 {
            writeln!(out, "dry run: nothing to change")?;
        } else {
            writeln!(
                out,
                "dry run: {pending} change(s) would be made; nothing was changed"
            )?;
        }
        Ok(pending)
    }

    /// Applies the plan: changes, then validators (only if something changed), then the
    /// activations whose topic changed. A failing change or validator reverts this run.
    pub fn apply(self, out: &mut dyn Write) -> Result<Outcome> {
        self.apply_with_progress(out, &|_| {})
    }

    /// [`Plan::apply`], calling `progress` with the number of change steps handled so far.
    pub fn apply_with_progress(
        self,
        out: &mut dyn Write,
        progress: &dyn Fn(usize),
    ) -> Result<Outcome> {
        let mut journal = Journal::default();
        let mut outcome = Outcome::default();
        let mut topics = BTreeSet::new();

        for (done, step) in self
            .steps
            .iter()
            .filter(|s| s.phase() == Phase::Change)
            .enumerate()
        {
            progress(done);
            if step.isolated() {
                apply_isolated(step.as_ref(), &mut outcome, &mut topics, out)?;
                continue;
            }
            let result = step.is_satisfied().and_then(|done| {
                if done {
                    outcome.unchanged += 1;
                    return Ok(false);
                }
                step.apply(&mut journal)?;
                Ok(true)
            });
            match result {
                Ok(true) => {
                    outcome.changed += 1;
                    if let Some(t) = step.topic() {
                        topics.insert(t);
                    }
                    writeln!(out, "  + {}", visible(&step.describe()))?;
                }
                Ok(false) => {}
                Err(err) => {
                    let err = err.context(format!("step \"{}\" failed", step.describe()));
                    return Err(revert(journal, err, out));
                }
            }
        }

        if outcome.changed > 0 {
            for step in self.steps.iter().filter(|s| s.phase() == Phase::Validate) {
                if let Err(err) = step.apply(&mut Journal::default()) {
                    return Err(revert(journal, err, out));
                }
                writeln!(out, "  ✓ {}", visible(&step.describe()))?;
            }
        }
        journal.commit();

        for step in self.steps.iter().filter(|s| s.phase() == Phase::Activate) {
            let wanted = match step.topic() {
                Some(t) => topics.contains(t),
                None => outcome.changed > 0,
            };
            if !wanted {
                continue;
            }
            match step.apply(&mut Journal::default()) {
                Ok(()) => writeln!(out, "  ↻ {}", visible(&step.describe()))?,
                Err(err) => match step.soft_failure(&err) {
                    Some(Soft::Note(note)) => outcome.notes.push(note),
                    Some(Soft::NoServiceManager(cmd)) => outcome.manual.push(cmd),
                    None => {
                        return Err(err.context(format!(
                            "the files are in place and valid, but {} failed",
                            step.describe()
                        )))
                    }
                },
            }
        }
        Ok(outcome)
    }
}

/// One isolated step with a journal of its own: kept when it works, reverted alone when not.
fn apply_isolated(
    step: &dyn Step,
    outcome: &mut Outcome,
    topics: &mut BTreeSet<&'static str>,
    out: &mut dyn Write,
) -> Result<()> {
    let mut own = Journal::default();
    let result = step.is_satisfied().and_then(|done| {
        if done {
            return Ok(false);
        }
        step.apply(&mut own).map(|()| true)
    });
    match result {
        Ok(false) => outcome.unchanged += 1,
        Ok(true) => {
            own.commit();
            outcome.changed += 1;
            if let Some(t) = step.topic() {
                topics.insert(t);
            }
            writeln!(out, "  + {}", step.describe())?;
        }
        Err(err) => {
            let problems = own.revert();
            let mut line = format!("{}: {err:#}", step.describe());
            if !problems.is_empty() {
                line.push_str(&format!(
                    " (and reverting failed for: {})",
                    problems.join("; ")
                ));
            }
            writeln!(out, "  ✗ {line} (the other steps go on)")?;
            outcome.failed.push(line);
        }
    }
    Ok(())
}

fn revert(journal: Journal, err: anyhow::Error, out: &mut dyn Write) -> anyhow::Error {
    let problems = journal.revert();
    let _ = writeln!(out, "  reverted every change made in this run");
    if problems.is_empty() {
        err
    } else {
        err.context(format!("and reverting failed for: {}", problems.join("; ")))
    }
}

#[cfg(test)]
mod tests;
