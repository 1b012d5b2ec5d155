//! Which sessions `report` prints, and with `--path` / `--action` which of their entries.
//! Totals always stay the whole session's: a filter narrows what is listed, never what
//! happened.

use globset::{GlobBuilder, GlobMatcher};

use crate::watch::report::Report;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Upload,
    Download,
    /// Removed files and directories.
    Delete,
    Rename,
    Failed,
}

impl Action {
    pub fn parse(value: &str) -> Result<Action, String> {
        Ok(match value {
            "upload" => Action::Upload,
            "download" => Action::Download,
            "delete" => Action::Delete,
            "rename" => Action::Rename,
            "failed" => Action::Failed,
            _ => {
                return Err(format!(
                    "--action {value:?} is not an action: use upload, download, delete, \
                     rename or failed"
                ))
            }
        })
    }
}

/// A `--path` glob: `*` and `?` stay within one path component, `**` crosses them. A glob
/// without `/` is matched against the file name alone (`*.pdf` finds `2026/contract.pdf`);
/// one with `/` against the path as the report shows it (relative to the data dir).
#[derive(Debug, Clone)]
pub struct PathGlob {
    matcher: GlobMatcher,
    name_only: bool,
}

impl PathGlob {
    pub fn parse(glob: &str) -> Result<PathGlob, String> {
        if glob.is_empty() {
            return Err("--path needs a glob, e.g. '*.pdf' or 'in/**'".into());
        }
        let matcher = GlobBuilder::new(glob)
            .literal_separator(true)
            .backslash_escape(true)
            .build()
            .map_err(|e| format!("--path {glob:?} is not a glob: {}", e.kind()))?
            .compile_matcher();
        Ok(PathGlob {
            matcher,
            name_only: !glob.contains('/'),
        })
    }

    pub fn matches(&self, path: &str) -> bool {
        let subject = if self.name_only {
            path.rsplit('/').next().unwrap_or(path)
        } else {
            path
        };
        self.matcher.is_match(subject)
    }
}

#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub users: Vec<String>,
    /// Sessions that ended at or after this time.
    pub since: Option<i64>,
    /// Sessions that started before this time.
    pub until: Option<i64>,
    pub path: Option<PathGlob>,
    pub actions: Vec<Action>,
}

impl Filter {
    /// The report as it is to be printed, or None when the session does not pass.
    pub fn apply(&self, mut r: Report) -> Option<Report> {
        if !self.users.is_empty() && !self.users.contains(&r.user) {
            return None;
        }
        let start = r.start.unwrap_or(r.end);
        if self.since.is_some_and(|since| r.end < since)
            || self.until.is_some_and(|until| start >= until)
        {
            return None;
        }
        if !self.actions.is_empty() {
            let t = &r.totals;
            let has = |a: Action| match a {
                Action::Upload => t.uploads > 0,
                Action::Download => t.downloads > 0,
                Action::Delete => t.deletes + t.rmdirs > 0,
                Action::Rename => t.renames > 0,
                Action::Failed => t.failures > 0,
            };
            if !self.actions.iter().any(|a| has(*a)) {
                return None;
            }
            self.keep_only_selected(&mut r);
        }
        if let Some(glob) = &self.path {
            if !keep_matching(&mut r, glob) {
                return None;
            }
        }
        Some(r)
    }

    fn keep_only_selected(&self, r: &mut Report) {
        let on = |a: Action| self.actions.contains(&a);
        if !on(Action::Upload) {
            r.uploads.clear();
            r.uploads_more = 0;
        }
        if !on(Action::Download) {
            r.downloads.clear();
            r.downloads_more = 0;
        }
        if !on(Action::Delete) {
            r.deletes.clear();
            r.deletes_more = 0;
            r.rmdirs.clear();
            r.rmdirs_more = 0;
        }
        if !on(Action::Rename) {
            r.renames.clear();
            r.renames_more = 0;
        }
        if !on(Action::Failed) {
            r.failures.clear();
            r.failures_more = 0;
        }
        // Not selectable by --action: listed only when nothing narrows the kinds.
        r.links.clear();
        r.links_more = 0;
        r.mkdirs.clear();
        r.mkdirs_more = 0;
        r.changes.clear();
        r.changes_more = 0;
    }
}

/// Keeps the listed entries whose path matches; false when none does. Entries past a
/// session's list bound were never named, so they cannot match (their `_more` counts go).
fn keep_matching(r: &mut Report, glob: &PathGlob) -> bool {
    let m = |p: &str| glob.matches(p);
    r.uploads.retain(|t| m(&t.path));
    r.downloads.retain(|t| m(&t.path));
    r.deletes.retain(|p| m(p));
    r.rmdirs.retain(|p| m(p));
    r.mkdirs.retain(|p| m(p));
    r.renames.retain(|mv| m(&mv.old) || m(&mv.new));
    r.links.retain(|mv| m(&mv.old) || m(&mv.new));
    r.changes.retain(|c| m(change_path(c)));
    r.failures
        .retain(|f| failure_paths(&f.path).into_iter().any(m));
    for more in [
        &mut r.uploads_more,
        &mut r.downloads_more,
        &mut r.deletes_more,
        &mut r.rmdirs_more,
        &mut r.mkdirs_more,
        &mut r.renames_more,
        &mut r.links_more,
        &mut r.changes_more,
        &mut r.failures_more,
    ] {
        *more = 0;
    }
    !(r.uploads.is_empty()
        && r.downloads.is_empty()
        && r.deletes.is_empty()
        && r.rmdirs.is_empty()
        && r.mkdirs.is_empty()
        && r.renames.is_empty()
        && r.links.is_empty()
        && r.changes.is_empty()
        && r.failures.is_empty())
}

/// A change is listed as `PATH: what changed`.
pub fn change_path(change: &str) -> &str {
    change.rsplit_once(": ").map_or(change, |(p, _)| p)
}

/// A failed rename is listed as `OLD → NEW`.
pub fn failure_paths(path: &str) -> Vec<&str> {
    match path.split_once(" → ") {
        Some((old, new)) => vec![old, new],
        None => vec![path],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::watch::report::example;

    #[test]
    fn globs_match_names_or_paths() {
        let pdf = PathGlob::parse("*.pdf").unwrap();
        assert!(pdf.matches("2026/contract.pdf"));
        assert!(pdf.matches("contract.pdf"));
        assert!(!pdf.matches("contract.pdf.txt"));
        let top = PathGlob::parse("in/*.pdf").unwrap();
        assert!(top.matches("in/a.pdf"));
        assert!(!top.matches("in/sub/a.pdf"));
        assert!(PathGlob::parse("in/**").unwrap().matches("in/sub/a.pdf"));
        assert!(PathGlob::parse("[").is_err());
        assert!(PathGlob::parse("").is_err());
        assert!(Action::parse("uploads").is_err());
    }

    #[test]
    fn action_and_path_narrow_the_lists_not_the_totals() {
        let r = example();
        let totals = r.totals;
        let f = Filter {
            actions: vec![Action::Delete],
            ..Filter::default()
        };
        let d = f.apply(r.clone()).unwrap();
        assert!(d.uploads.is_empty() && d.renames.is_empty() && d.failures.is_empty());
        assert!(!d.deletes.is_empty());
        assert_eq!(d.totals, totals);

        let f = Filter {
            path: Some(PathGlob::parse("u").unwrap()),
            ..Filter::default()
        };
        let u = f.apply(r.clone()).unwrap();
        assert_eq!(u.uploads.len(), 1);
        assert!(u.deletes.is_empty() && u.downloads.is_empty());

        let none = Filter {
            path: Some(PathGlob::parse("*.nothing").unwrap()),
            ..Filter::default()
        };
        assert!(none.apply(r.clone()).is_none());
        let other = Filter {
            users: vec!["somebody-else".into()],
            ..Filter::default()
        };
        assert!(other.apply(r.clone()).is_none());
        let later = Filter {
            since: Some(r.end + 1),
            ..Filter::default()
        };
        assert!(later.apply(r.clone()).is_none());
        let earlier = Filter {
            until: Some(r.start.unwrap_or(r.end)),
            ..Filter::default()
        };
        assert!(earlier.apply(r).is_none());
    }
}
