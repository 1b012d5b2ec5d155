//! The warning and the report (templates/policy/retention_*.txt), as policy notices.
//! Names reach the templates only through [`shown`]: escaped, cut when very long, and at
//! most [`MAX_LISTED`] of them per mail, however large the tree.

use std::sync::LazyLock;

use anyhow::{Context as _, Result};
use serde::Serialize;
use tera::{Context, Tera};

use super::walk::{Candidate, Key};
use crate::policy::notices::Notice;
use crate::policy::values::{Day, Retention};

/// Names listed in one mail; the rest are counted.
pub const MAX_LISTED: usize = 200;

const WARNING: &str = "retention_warning.txt";
const REPORT: &str = "retention_report.txt";

static TERA: LazyLock<Tera> = LazyLock::new(|| {
    let mut tera = Tera::default();
    tera.autoescape_on(vec![]);
    tera.add_raw_templates([
        (
            WARNING,
            include_str!("../../../templates/policy/retention_warning.txt"),
        ),
        (
            REPORT,
            include_str!("../../../templates/policy/retention_report.txt"),
        ),
    ])
    .expect("built-in templates parse");
    tera
});

/// A name from a client's tree for a mail or a terminal line: no control or format
/// character survives, and a path from a tree deeper than PATH_MAX stays one short line.
pub fn shown(rel: &std::path::Path) -> String {
    crate::perms::short(&crate::display::path(rel))
}

/// One listed file.
#[derive(Debug, Clone, Serialize)]
pub struct Line {
    /// Deletion day (warning) or last modification day (report).
    pub day: String,
    pub size: String,
    pub name: String,
}

impl Line {
    pub fn new(c: &Candidate, day: Day) -> Line {
        Line {
            day: day.to_string(),
            size: format!("{:>9}", compact(c.size)),
            name: shown(&c.rel),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Failure {
    pub name: String,
    pub why: String,
}

/// A bounded list: the first [`MAX_LISTED`] items and how many there were.
#[derive(Debug, Clone)]
pub struct Listed<T> {
    pub items: Vec<T>,
    pub count: usize,
}

impl<T> Default for Listed<T> {
    fn default() -> Self {
        Listed {
            items: Vec::new(),
            count: 0,
        }
    }
}

impl<T> Listed<T> {
    pub fn push(&mut self, item: impl FnOnce() -> T) {
        self.count += 1;
        if self.items.len() < MAX_LISTED {
            self.items.push(item());
        }
    }

    pub fn more(&self) -> usize {
        self.count - self.items.len()
    }
}

/// A size in one short column: `512 B`, `1.2 KiB`, `3.0 GiB`.
fn compact(bytes: u64) -> String {
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// FNV-1a over the keys: ids stay stable for what a notice says and differ for another list.
fn digest<'a>(keys: impl Iterator<Item = &'a Key>) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (ino, sec, nsec) in keys {
        for b in ino
            .to_le_bytes()
            .into_iter()
            .chain(sec.to_le_bytes())
            .chain(nsec.to_le_bytes())
        {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{:08x}", h >> 32)
}

fn render(template: &str, ctx: &Context) -> Result<(String, String)> {
    let text = TERA
        .render(template, ctx)
        .with_context(|| format!("cannot render {template}"))?;
    let (subject, body) = text.split_once('\n').unwrap_or((&text, ""));
    Ok((subject.to_string(), body.to_string()))
}

/// What a warning or a report is about.
pub struct About<'a> {
    pub user: &'a str,
    pub retention: Retention,
    pub today: Day,
    pub to_client: bool,
}

/// The warning for files announced now (`keys` identify them, `files` lists them sorted).
pub fn warning(
    about: &About<'_>,
    warn_days: u32,
    first_day: Day,
    keys: &[Key],
    files: &Listed<Line>,
) -> Result<Notice> {
    let mut ctx = Context::new();
    ctx.insert("user", about.user);
    ctx.insert("retention", &about.retention.to_string());
    ctx.insert("count", &files.count);
    ctx.insert("first_day", &first_day.to_string());
    ctx.insert("files", &files.items);
    ctx.insert("more", &files.more());
    ctx.insert("warn_days", &warn_days);
    let (subject, text) = render(WARNING, &ctx)?;
    Ok(Notice {
        id: format!(
            "retention-warn-{}-{}-{}",
            about.user,
            about.today,
            digest(keys.iter())
        ),
        user: about.user.to_string(),
        subject,
        text,
        to_client: about.to_client,
    })
}

/// The report of what one run deleted.
pub fn report(
    about: &About<'_>,
    cutoff: Day,
    keys: &[Key],
    files: &Listed<Line>,
    bytes: u64,
    failures: &Listed<Failure>,
) -> Result<Notice> {
    let mut ctx = Context::new();
    ctx.insert("user", about.user);
    ctx.insert("retention", &about.retention.to_string());
    ctx.insert("day", &about.today.to_string());
    ctx.insert("cutoff", &cutoff.to_string());
    ctx.insert("count", &files.count);
    ctx.insert("bytes", &crate::watch::report::human_size(bytes));
    ctx.insert("files", &files.items);
    ctx.insert("more", &files.more());
    ctx.insert("failed", &failures.count);
    ctx.insert("failures", &failures.items);
    ctx.insert("failed_more", &failures.more());
    let (subject, text) = render(REPORT, &ctx)?;
    Ok(Notice {
        id: format!(
            "retention-done-{}-{}-{}",
            about.user,
            about.today,
            digest(keys.iter())
        ),
        user: about.user.to_string(),
        subject,
        text,
        to_client: about.to_client,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn candidate(name: &str, n: i64) -> Candidate {
        Candidate {
            rel: PathBuf::from(name),
            what: super::super::walk::What::File,
            key: (n as u64, n, 0),
            mtime: n,
            size: 1234,
        }
    }

    #[test]
    fn hostile_names_cannot_shape_the_mail_and_long_lists_are_cut() {
        let about = About {
            user: "alice",
            retention: Retention::Days(30),
            today: Day { days: 20_000 },
            to_client: true,
        };
        let mut files = Listed::default();
        let mut keys = Vec::new();
        let evil = candidate("a\nSubject: x\x1b[2J\u{202e}txt.exe", 1);
        files.push(|| Line::new(&evil, Day { days: 20_007 }));
        keys.push(evil.key);
        for i in 0..1000 {
            let c = candidate(&format!("f{i}"), i + 2);
            files.push(|| Line::new(&c, Day { days: 20_007 }));
            keys.push(c.key);
        }
        let n = warning(&about, 7, Day { days: 20_007 }, &keys, &files).unwrap();
        assert_eq!(
            n.subject,
            "Retention: 1001 file(s) of alice will be deleted from 2024-10-11"
        );
        assert!(!n.text.contains('\x1b') && !n.text.contains('\u{202e}'));
        assert!(
            n.text.contains("a\\nSubject: x\\u{1b}[2J<U+202E>txt.exe"),
            "{}",
            n.text
        );
        assert!(!n.text.lines().any(|l| l.starts_with("Subject:")));
        assert_eq!(
            n.text.lines().filter(|l| l.contains("2024-10-11")).count(),
            MAX_LISTED
        );
        assert!(n.text.contains("... and 801 more"), "{}", n.text);
        assert!(
            n.id.starts_with("retention-warn-alice-2024-10-04-"),
            "{}",
            n.id
        );
        let again = warning(&about, 7, Day { days: 20_007 }, &keys, &files).unwrap();
        assert_eq!(again.id, n.id, "stable id");
        let other = warning(&about, 7, Day { days: 20_007 }, &keys[1..], &files).unwrap();
        assert_ne!(other.id, n.id);
        let r = report(
            &about,
            Day { days: 19_970 },
            &keys,
            &files,
            5 << 20,
            &Listed::default(),
        )
        .unwrap();
        assert_eq!(r.subject, "Retention: 1001 file(s) of alice deleted");
        assert!(
            r.text.contains("5.0 MiB") || r.text.contains("5 MiB"),
            "{}",
            r.text
        );
        assert!(!r.text.contains("could not be deleted"));
    }
}
