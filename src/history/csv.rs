//! `report --format csv`: one row per listed action, RFC 4180 (CRLF line ends, a field with
//! `"`, `,`, CR or LF quoted, `"` doubled). A text field that starts with `=`, `+`, `-`, `@`,
//! a tab or a CR gets one `'` in front, so a spreadsheet shows a hostile file name as text
//! instead of running it as a formula (OWASP's advice). A field that starts with `'` gets one
//! too, so the way back is always the same: strip one leading `'`.

use std::io::Write;

use anyhow::{Context, Result};

use super::filter::failure_paths;
use crate::tz::rfc3339_utc;
use crate::watch::report::Report;

pub const HEADER: &str = "session,user,client,time,action,path,size,status";

pub fn write_header(out: &mut impl Write) -> Result<()> {
    write!(out, "{HEADER}\r\n").context("cannot write")
}

/// The rows of one session. `time` is the session's start (its first line when the opening
/// was not seen): the log's lines carry times, the report's entries do not yet.
pub fn write_rows(out: &mut impl Write, r: &Report) -> Result<()> {
    let time = rfc3339_utc(r.start.unwrap_or(r.end));
    let session = session_id(&r.id);
    let mut row = |action: &str, path: &str, size: Option<u64>, status: &str| -> Result<()> {
        let size = size.map(|s| s.to_string()).unwrap_or_default();
        let fields = [
            session, &r.user, &r.client, &time, action, path, &size, status,
        ];
        let mut line = String::new();
        for (i, f) in fields.iter().enumerate() {
            if i > 0 {
                line.push(',');
            }
            push_field(&mut line, f);
        }
        line.push_str("\r\n");
        out.write_all(line.as_bytes()).context("cannot write")
    };
    for t in &r.uploads {
        row(
            "upload",
            &t.path,
            Some(t.bytes),
            transfer_status(t.incomplete),
        )?;
    }
    for t in &r.downloads {
        row(
            "download",
            &t.path,
            Some(t.bytes),
            transfer_status(t.incomplete),
        )?;
    }
    for p in &r.deletes {
        row("delete", p, None, "ok")?;
    }
    for p in &r.rmdirs {
        row("rmdir", p, None, "ok")?;
    }
    for m in &r.renames {
        let status = if m.note.is_empty() { "ok" } else { &m.note };
        row("rename", &format!("{} -> {}", m.old, m.new), None, status)?;
    }
    for m in &r.links {
        row("link", &format!("{} -> {}", m.old, m.new), None, "ok")?;
    }
    for p in &r.mkdirs {
        row("mkdir", p, None, "ok")?;
    }
    for c in &r.changes {
        row("change", c, None, "ok")?;
    }
    for f in &r.failures {
        let path = failure_paths(&f.path).join(" -> ");
        row(
            "failed",
            &path,
            None,
            &format!("{}: {}", f.action, f.status),
        )?;
    }
    Ok(())
}

/// The report id without its last part (which makes each run's ids unique for the outbox):
/// `START-HOST-PID`, the same session in every run.
fn session_id(id: &str) -> &str {
    id.rsplit_once('-').map_or(id, |(stable, _)| stable)
}

fn transfer_status(incomplete: bool) -> &'static str {
    if incomplete {
        "incomplete"
    } else {
        "complete"
    }
}

pub(crate) fn push_field(line: &mut String, value: &str) {
    let guard = matches!(
        value.as_bytes().first(),
        Some(b'=' | b'+' | b'-' | b'@' | b'\t' | b'\r' | b'\'')
    );
    let quote = guard || value.contains(['"', ',', '\n', '\r']);
    if quote {
        line.push('"');
    }
    if guard {
        line.push('\'');
    }
    for c in value.chars() {
        if c == '"' {
            line.push('"');
        }
        line.push(c);
    }
    if quote {
        line.push('"');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(v: &str) -> String {
        let mut s = String::new();
        push_field(&mut s, v);
        s
    }

    #[test]
    fn quoting_and_formula_guard() {
        assert_eq!(field("plain.txt"), "plain.txt");
        assert_eq!(field("a,b"), "\"a,b\"");
        assert_eq!(field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(field("two\nlines"), "\"two\nlines\"");
        assert_eq!(field("=cmd|' /C calc'!A0"), "\"'=cmd|' /C calc'!A0\"");
        assert_eq!(field("+1"), "\"'+1\"");
        assert_eq!(field("-x"), "\"'-x\"");
        assert_eq!(field("@SUM(A1)"), "\"'@SUM(A1)\"");
        assert_eq!(field("x=1"), "x=1");
        assert_eq!(
            field("'=x"),
            "\"''=x\"",
            "a leading ' is doubled: one way back"
        );
    }

    #[test]
    fn every_kind_of_entry_is_a_row() {
        let r = crate::watch::report::example();
        let mut out = Vec::new();
        write_rows(&mut out, &r).unwrap();
        let text = String::from_utf8(out).unwrap();
        for action in [
            "upload", "download", "delete", "rmdir", "rename", "link", "mkdir",
        ] {
            assert!(text.contains(&format!(",{action},")), "{action}: {text}");
        }
        assert!(text.contains(",failed,"), "{text}");
        assert!(text.split_terminator('\n').all(|l| l.ends_with('\r')));
    }
}
