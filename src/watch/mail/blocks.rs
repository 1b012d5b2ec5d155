//! The built-in templates' blocks, written in Rust: the subject, the header, the notices, each
//! list with its heading, the totals, as the text part prints them (`text_*`) and as the HTML
//! part does (`html_*`, every value escaped as tera's autoescape escapes it). A tera lookup
//! costs ~540 instructions and a node ~200; a template of ~15 blocks instead of ~175 lookups
//! is most of what took a report's render under 250 k (docs/watch.md, "Rendering cost").
//! The bytes are those the former templates (the block-by-block ones an override may still
//! use) printed; `tests` renders both and compares.

use std::fmt::Write;

use super::view::{self, escape};
use crate::watch::report::{Named, Report, ShownMove};

fn num(o: &mut String, n: impl std::fmt::Display) {
    let _ = write!(o, "{n}");
}

/// Pieces and numbers one after another.
macro_rules! cat {
    ($o:expr; $($part:expr),* $(,)?) => {{
        $(Piece::put(&$part, $o);)*
    }};
}

trait Piece {
    fn put(&self, o: &mut String);
}

impl Piece for &str {
    fn put(&self, o: &mut String) {
        o.push_str(self);
    }
}

impl Piece for u64 {
    fn put(&self, o: &mut String) {
        num(o, self);
    }
}

impl Piece for u32 {
    fn put(&self, o: &mut String) {
        num(o, self);
    }
}

/// A value printed into HTML: escaped.
struct E<'a>(&'a str);

impl Piece for E<'_> {
    fn put(&self, o: &mut String) {
        escape(o, self.0);
    }
}

pub fn subject(r: &Report) -> String {
    let c = &r.counts;
    let mut o = String::with_capacity(96);
    cat!(&mut o; "SFTP ", r.user.as_str(), "@", r.host.as_str(), ":");
    for (n, what) in [
        (c.n_uploads, " uploaded"),
        (c.n_downloads, " downloaded"),
        (c.n_deletes, " deleted"),
        (c.n_renames, " renamed"),
    ] {
        if n > 0 {
            cat!(&mut o; " ", n, what);
        }
    }
    if c.n_replaced > 0 {
        cat!(&mut o; " (", c.n_replaced, " may have replaced a file)");
    }
    if c.n_other > 0 {
        cat!(&mut o; " ", c.n_other, " other changes");
    }
    if c.n_failures > 0 {
        cat!(&mut o; " ", c.n_failures, " failed");
    }
    if c.n_cut > 0 {
        o.push_str(" [NAME CUT]");
    }
    if !r.complete {
        o.push_str(" [INCOMPLETE]");
    }
    o
}

pub fn text_head(r: &Report) -> String {
    let mut o = String::with_capacity(256);
    cat!(&mut o; "SFTP session of ", r.user.as_str(), " from ", r.client.as_str(), " on ",
        r.host.as_str(), " (process ", r.pid, ")\n\nStart:    ", r.start_text.as_str(),
        "\nEnd:      ", r.end_text.as_str(), "\nDuration: ", r.duration_text.as_str());
    o
}

const CUT_TEXT: &str = " below had a file name too long for the log (internal-sftp cuts a line at 500 bytes). A name ending in … is only the start of the real name; what followed it on the line (sizes, flags, a new name) may be missing or wrong.";
const REPLACED_TEXT: &str =
    " rename(s) onto an existing name replaced, or may have replaced, the file that had that name.";
const INCOMPLETE_TEXT: &str =
    " transfer(s) were interrupted (the session ended with the file open).";

fn entries(n: u64) -> &'static str {
    if n == 1 {
        "y"
    } else {
        "ies"
    }
}

pub fn text_warnings(r: &Report, warnings: bool) -> String {
    let c = &r.counts;
    let mut o = String::new();
    if !warnings {
        return o;
    }
    if !r.touched_jails.is_empty() {
        cat!(&mut o; "\nJails:    ", r.touched_jails.join(", ").as_str(),
            " (client jails this session touched)");
    }
    if !r.ending_text.is_empty() {
        cat!(&mut o; "\nINCOMPLETE: ", r.ending_text.as_str(), ".");
    }
    if c.n_incomplete > 0 {
        cat!(&mut o; "\nINCOMPLETE: ", c.n_incomplete, INCOMPLETE_TEXT);
    }
    for n in &r.notes {
        cat!(&mut o; "\nNOTE: ", n.as_str(), ".");
    }
    if c.n_cut > 0 {
        cat!(&mut o; "\nNAMES CUT: ", c.n_cut, " entr", entries(c.n_cut), CUT_TEXT);
    }
    if c.n_replaced > 0 {
        cat!(&mut o; "\nREPLACED: ", c.n_replaced, REPLACED_TEXT);
    }
    o
}

/// A list of the text part: `heading` (already written into `o` after the blank line by
/// `head`), its lines, `… and N more`. Nothing when `n` is 0.
fn text_list<T>(
    n: u64,
    head: impl FnOnce(&mut String),
    items: &[T],
    line: impl Fn(&mut String, &T),
    more: u64,
) -> String {
    let mut o = String::new();
    if n == 0 {
        return o;
    }
    o.reserve(64 + items.len() * 96);
    o.push_str("\n\n");
    head(&mut o);
    for item in items {
        o.push_str("\n  ");
        line(&mut o, item);
    }
    if more > 0 {
        cat!(&mut o; "\n  … and ", more, " more");
    }
    o
}

/// Every list of the text part, in the template's order: (variable, text).
pub fn text_lists(r: &Report) -> [String; 9] {
    let c = &r.counts;
    let counted = |title: &'static str, n: u64| move |o: &mut String| cat!(o; title, " (", n, ")");
    [
        text_list(
            c.n_uploads,
            |o| cat!(o; "UPLOADED: ", c.n_uploads, ", ", r.upload_size.as_str()),
            &r.uploads,
            view::transfer_line,
            r.uploads_more,
        ),
        text_list(
            c.n_downloads,
            |o| cat!(o; "DOWNLOADED: ", c.n_downloads, ", ", r.download_size.as_str()),
            &r.downloads,
            view::transfer_line,
            r.downloads_more,
        ),
        text_list(
            c.n_deletes,
            counted("DELETED", c.n_deletes),
            &r.deletes,
            view::named_line,
            r.deletes_more,
        ),
        text_list(
            c.n_renames,
            counted("RENAMED", c.n_renames),
            &r.renames,
            |o, m| view::move_line(o, &m.old, &m.new, m),
            r.renames_more,
        ),
        text_list(
            c.n_mkdirs,
            counted("DIRECTORIES MADE", c.n_mkdirs),
            &r.mkdirs,
            view::named_line,
            r.mkdirs_more,
        ),
        text_list(
            c.n_rmdirs,
            counted("DIRECTORIES REMOVED", c.n_rmdirs),
            &r.rmdirs,
            view::named_line,
            r.rmdirs_more,
        ),
        text_list(
            c.n_changes,
            counted("PERMISSIONS AND ATTRIBUTES CHANGED", c.n_changes),
            &r.changes,
            view::named_line,
            r.changes_more,
        ),
        text_list(
            c.n_links,
            counted("LINKS MADE", c.n_links),
            &r.links,
            |o, m| view::move_line(o, &m.new, &m.old, m),
            r.links_more,
        ),
        text_list(
            c.n_failures,
            counted("FAILED REQUESTS", c.n_failures),
            &r.failures,
            view::failure_line,
            r.failures_more,
        ),
    ]
}

const UNREADABLE: &str = " log line(s) of this session could not be read (cut at 500 bytes or garbled) and are not listed.";

pub fn text_unreadable(r: &Report) -> String {
    let mut o = String::new();
    if r.unreadable_lines > 0 {
        cat!(&mut o; "\n\n", r.unreadable_lines, UNREADABLE);
    }
    o
}

pub fn text_totals(r: &Report) -> String {
    let c = &r.counts;
    let mut o = String::with_capacity(128);
    cat!(&mut o; "Totals: ", c.n_uploads, " uploaded (", r.upload_size.as_str(), "); ",
        c.n_downloads, " downloaded (", r.download_size.as_str(), "); ", c.n_deletes,
        " deleted; ", c.n_renames, " renamed; ", c.n_failures, " failed.");
    o
}

pub fn html_head(r: &Report) -> String {
    let mut o = String::with_capacity(400);
    cat!(&mut o;
        "<tr><td style=\"padding:16px 20px 0 20px;font-size:18px;line-height:24px\"><b>SFTP session of ",
        E(&r.user), "</b></td></tr>\n<tr><td style=\"padding:2px 20px 12px 20px;color:#57606a\">from ",
        E(&r.client), " on ", E(&r.host), ", process ", r.pid, "<br>", E(&r.start_text), " to ",
        E(&r.end_text), " (", E(&r.duration_text), ")</td></tr>");
    o
}

const GREY: &str = "bgcolor=\"#f6f8fa\" style=\"color:#8c959f\"";

pub fn html_counts(r: &Report) -> String {
    let c = &r.counts;
    let mut o = String::with_capacity(1024);
    o.push_str("<tr><td style=\"padding:0 20px 12px 20px\"><table role=\"presentation\" cellpadding=\"5\" cellspacing=\"4\" border=\"0\" style=\"margin-left:-4px\"><tr>");
    for (n, colour, what) in [
        (
            c.n_uploads,
            "bgcolor=\"#dafbe1\" style=\"color:#116329\"",
            " uploaded",
        ),
        (
            c.n_downloads,
            "bgcolor=\"#ddf4ff\" style=\"color:#0550ae\"",
            " downloaded",
        ),
        (
            c.n_deletes,
            "bgcolor=\"#fff1e5\" style=\"color:#953800\"",
            " deleted",
        ),
        (
            c.n_failures,
            "bgcolor=\"#ffebe9\" style=\"color:#cf222e\"",
            " failed",
        ),
    ] {
        let colour = if n > 0 { colour } else { GREY };
        cat!(&mut o; "\n<td ", colour, "><b>", n, what, "</b></td>");
    }
    if c.n_incomplete > 0 {
        cat!(&mut o; "\n<td bgcolor=\"#cf222e\" style=\"color:#ffffff\"><b>", c.n_incomplete,
            " incomplete</b></td>");
    }
    if !r.ending_text.is_empty() {
        o.push_str("\n<td bgcolor=\"#cf222e\" style=\"color:#ffffff\"><b>session cut off</b></td>");
    }
    o.push_str("\n</tr></table>");
    if c.n_renames > 0 || c.n_other > 0 {
        o.push_str("\n<div style=\"color:#57606a\">");
        if c.n_renames > 0 {
            cat!(&mut o; c.n_renames, " renamed");
            if c.n_other > 0 {
                o.push_str(", ");
            }
        }
        if c.n_other > 0 {
            cat!(&mut o; c.n_other, " other changes (directories, attributes, links)");
        }
        o.push_str("</div>");
    }
    o.push_str("</td></tr>");
    o
}

const WARN: &str = "\n<tr><td style=\"padding:0 20px 8px 20px\"><div style=\"padding:8px 12px;background-color:#ffebe9;border-left:4px solid #cf222e;color:#82071e\"><b>";
const END_WARN: &str = "</div></td></tr>";

pub fn html_warnings(r: &Report, warnings: bool) -> String {
    let c = &r.counts;
    let mut o = String::new();
    if !warnings {
        return o;
    }
    if !r.touched_jails.is_empty() {
        cat!(&mut o; "\n<tr><td style=\"padding:0 20px 8px 20px;color:#57606a\"><b>Client jails touched:</b> ",
            E(&r.touched_jails.join(", ")), "</td></tr>");
    }
    if !r.ending_text.is_empty() {
        cat!(&mut o; WARN, "Incomplete:</b> ", E(&r.ending_text), ".", END_WARN);
    }
    for n in &r.notes {
        cat!(&mut o; WARN, "Note:</b> ", E(n), ".", END_WARN);
    }
    if c.n_incomplete > 0 {
        cat!(&mut o; WARN, "Incomplete:</b> ", c.n_incomplete, INCOMPLETE_TEXT, END_WARN);
    }
    if c.n_cut > 0 {
        cat!(&mut o; WARN, "Names cut:</b> ", c.n_cut, " entr", entries(c.n_cut), CUT_TEXT,
            END_WARN);
    }
    if c.n_replaced > 0 {
        cat!(&mut o; WARN, "Replaced:</b> ", c.n_replaced, REPLACED_TEXT, END_WARN);
    }
    o
}

/// The rows of one kind in an HTML table, then `… and N more{suffix}` across `cols`.
fn html_rows<T>(
    o: &mut String,
    items: &[T],
    row: impl Fn(&mut String, &T),
    more: u64,
    cols: &str,
    suffix: &str,
) {
    for item in items {
        o.push('\n');
        row(o, item);
    }
    if more > 0 {
        cat!(o; "\n<tr><td colspan=\"", cols, "\" style=\"color:#57606a\">… and ", more, " more",
            suffix, "</td></tr>");
    }
}

/// A list section of the HTML part: heading (`colour` a CSS suffix), header cells, rows.
fn html_list(
    shown: bool,
    colour: &str,
    heading: impl FnOnce(&mut String),
    ths: &[&str],
    rows: impl FnOnce(&mut String),
) -> String {
    let mut o = String::new();
    if !shown {
        return o;
    }
    o.reserve(1024);
    cat!(&mut o; "\n<tr><td style=\"padding:12px 20px 2px 20px;font-size:15px", colour, "\"><b>");
    heading(&mut o);
    o.push_str("</b></td></tr>\n<tr><td style=\"padding:0 20px 8px 20px\"><table width=\"100%\" cellpadding=\"4\" cellspacing=\"0\" border=\"0\" style=\"font-size:13px\">\n<tr bgcolor=\"#f6f8fa\">");
    for th in ths {
        cat!(&mut o; "<th align=\"left\">", *th, "</th>");
    }
    o.push_str("</tr>");
    rows(&mut o);
    o.push_str("\n</table></td></tr>");
    o
}

/// Every list section of the HTML part, in the template's order (directories made and
/// removed share one).
pub fn html_lists(r: &Report) -> [String; 8] {
    let c = &r.counts;
    let file_size_time = ["File", "Size", "Time"];
    [
        html_list(
            c.n_uploads > 0,
            ";color:#116329",
            |o| cat!(o; "Uploaded: ", c.n_uploads, ", ", E(&r.upload_size)),
            &file_size_time,
            |o| html_rows(o, &r.uploads, view::transfer_row, r.uploads_more, "3", ""),
        ),
        html_list(
            c.n_downloads > 0,
            ";color:#0550ae",
            |o| cat!(o; "Downloaded: ", c.n_downloads, ", ", E(&r.download_size)),
            &file_size_time,
            |o| {
                html_rows(
                    o,
                    &r.downloads,
                    view::transfer_row,
                    r.downloads_more,
                    "3",
                    "",
                )
            },
        ),
        html_list(
            c.n_deletes > 0,
            ";color:#953800",
            |o| cat!(o; "Deleted: ", c.n_deletes),
            &["File", "Time"],
            |o| {
                let row = |o: &mut String, n: &Named| view::named_row(o, n, None);
                html_rows(o, &r.deletes, row, r.deletes_more, "2", "")
            },
        ),
        html_list(
            c.n_renames > 0,
            "",
            |o| cat!(o; "Renamed: ", c.n_renames),
            &["From", "To", "Time"],
            |o| {
                let row = |o: &mut String, m: &ShownMove| view::move_row(o, &m.old, &m.new, m);
                html_rows(o, &r.renames, row, r.renames_more, "3", "")
            },
        ),
        html_list(
            c.n_mkdirs > 0 || c.n_rmdirs > 0,
            "",
            |o| cat!(o; "Directories: ", c.n_mkdirs, " made, ", c.n_rmdirs, " removed"),
            &["Directory", "What", "Time"],
            |o| {
                let made = |o: &mut String, n: &Named| view::named_row(o, n, Some("made"));
                html_rows(o, &r.mkdirs, made, r.mkdirs_more, "3", " made");
                let removed = |o: &mut String, n: &Named| view::named_row(o, n, Some("removed"));
                html_rows(o, &r.rmdirs, removed, r.rmdirs_more, "3", " removed");
            },
        ),
        html_list(
            c.n_changes > 0,
            "",
            |o| cat!(o; "Permissions and attributes changed: ", c.n_changes),
            &["File: change", "Time"],
            |o| {
                let row = |o: &mut String, n: &Named| view::named_row(o, n, None);
                html_rows(o, &r.changes, row, r.changes_more, "2", "")
            },
        ),
        html_list(
            c.n_links > 0,
            "",
            |o| cat!(o; "Links made: ", c.n_links),
            &["Link", "Points to", "Time"],
            |o| {
                let row = |o: &mut String, m: &ShownMove| view::move_row(o, &m.new, &m.old, m);
                html_rows(o, &r.links, row, r.links_more, "3", "")
            },
        ),
        html_list(
            c.n_failures > 0,
            ";color:#cf222e",
            |o| cat!(o; "Failed requests: ", c.n_failures),
            &["Request", "File", "Error", "Time"],
            |o| html_rows(o, &r.failures, view::failure_row, r.failures_more, "4", ""),
        ),
    ]
}

pub fn html_unreadable(r: &Report) -> String {
    let mut o = String::new();
    if r.unreadable_lines > 0 {
        cat!(&mut o; "\n<tr><td style=\"padding:4px 20px 8px 20px\"><div style=\"padding:8px 12px;background-color:#fff8c5;border-left:4px solid #bf8700;color:#633c01\">",
            r.unreadable_lines, UNREADABLE, "</div></td></tr>");
    }
    o
}

pub fn html_totals(r: &Report) -> String {
    let c = &r.counts;
    let mut o = String::with_capacity(320);
    cat!(&mut o; "<tr><td style=\"padding:12px 20px 16px 20px;color:#57606a;font-size:12px\">Totals: ",
        c.n_uploads, " uploaded (", E(&r.upload_size), "), ", c.n_downloads, " downloaded (",
        E(&r.download_size), "), ", c.n_deletes, " deleted, ", c.n_renames, " renamed, ",
        c.n_failures,
        " failed. Times are when each request was logged; for a transfer, when its file was closed.</td></tr>");
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The subject as a template of its parts (what `subject.txt` was before `subject_line`).
    const SUBJECT_FULL: &str = "SFTP {{ user }}@{{ host }}:
{%- if n_uploads %} {{ n_uploads }} uploaded{% endif %}
{%- if n_downloads %} {{ n_downloads }} downloaded{% endif %}
{%- if n_deletes %} {{ n_deletes }} deleted{% endif %}
{%- if n_renames %} {{ n_renames }} renamed{% endif %}
{%- if n_replaced %} ({{ n_replaced }} may have replaced a file){% endif %}
{%- if n_other %} {{ n_other }} other changes{% endif %}
{%- if n_failures %} {{ n_failures }} failed{% endif %}
{%- if n_cut %} [NAME CUT]{% endif %}
{%- if not complete %} [INCOMPLETE]{% endif %}
";

    fn templates() -> tera::Tera {
        let mut tera = tera::Tera::default();
        tera.autoescape_on(vec![".html"]);
        tera.add_raw_templates([
            ("full.subject.txt", SUBJECT_FULL),
            (
                "full.txt",
                include_str!("../../../templates/mail/body.full.txt"),
            ),
            (
                "full.html",
                include_str!("../../../templates/mail/body.full.html"),
            ),
            (
                "subject.txt",
                include_str!("../../../templates/mail/subject.txt"),
            ),
            ("body.txt", include_str!("../../../templates/mail/body.txt")),
            (
                "body.html",
                include_str!("../../../templates/mail/body.html"),
            ),
        ])
        .unwrap();
        tera
    }

    /// Reports that reach every branch of the blocks: the example (every list, every notice),
    /// an empty one, one of each kind with `… more`, hostile names and values everywhere.
    fn reports() -> Vec<Report> {
        let example = crate::watch::report::example();
        let mut reports = vec![example.clone()];
        let mut empty = example.clone();
        empty.uploads.clear();
        empty.downloads.clear();
        empty.deletes.clear();
        empty.renames.clear();
        empty.links.clear();
        empty.mkdirs.clear();
        empty.rmdirs.clear();
        empty.changes.clear();
        empty.failures.clear();
        empty.notes.clear();
        empty.touched_jails.clear();
        empty.ending_text.clear();
        empty.unreadable_lines = 0;
        empty.complete = true;
        empty.counts = Default::default();
        reports.push(empty.clone());
        let mut one = example.clone();
        let c = &mut one.counts;
        (
            c.n_cut,
            c.n_replaced,
            c.n_other,
            c.n_renames,
            c.n_incomplete,
        ) = (1, 1, 3, 0, 0);
        (c.n_mkdirs, c.n_rmdirs) = (0, 2);
        one.notes.push("second note".into());
        one.touched_jails.truncate(1);
        one.ending_text.clear();
        one.unreadable_lines = 1;
        for more in [
            &mut one.uploads_more,
            &mut one.downloads_more,
            &mut one.deletes_more,
            &mut one.renames_more,
            &mut one.links_more,
            &mut one.mkdirs_more,
            &mut one.rmdirs_more,
            &mut one.changes_more,
            &mut one.failures_more,
        ] {
            *more = 7;
        }
        reports.push(one);
        let evil = "<img src=x onerror=alert(1)>{{ user }}{% if %}&\"'/.pdf";
        let mut hostile = example;
        hostile.user = evil.into();
        hostile.client = evil.into();
        hostile.host = evil.into();
        hostile.start_text = evil.into();
        hostile.end_text = evil.into();
        hostile.duration_text = evil.into();
        hostile.ending_text = evil.into();
        hostile.upload_size = evil.into();
        hostile.download_size = evil.into();
        hostile.uploads[0].path = evil.into();
        hostile.deletes[0].path = evil.into();
        hostile.renames[0].old = evil.into();
        hostile.renames[0].note = evil.into();
        hostile.failures[0].status = evil.into();
        hostile.notes[0] = evil.into();
        hostile.touched_jails[0] = evil.into();
        reports.push(hostile);
        let mut quiet = empty;
        quiet.counts.n_failures = 2;
        quiet.counts.n_other = 1;
        quiet.touched_jails = vec!["carol".into()];
        reports.push(quiet);
        reports
    }

    /// The block templates print exactly what the block-by-block ones print, hostile names
    /// escaped the same way.
    #[test]
    fn blocks_print_what_the_full_templates_print() {
        let tera = templates();
        for (i, r) in reports().iter().enumerate() {
            let context = view::context(r, view::Needed::of(&["{{ __tera_context }}"]));
            for (full, short) in [
                ("full.subject.txt", "subject.txt"),
                ("full.txt", "body.txt"),
                ("full.html", "body.html"),
            ] {
                let want = tera.render(full, &context).unwrap();
                let got = tera.render(short, &context).unwrap();
                assert_eq!(got, want, "report {i}, {short}");
            }
            let html = tera.render("body.html", &context).unwrap();
            assert!(!html.contains("<img"), "report {i}");
        }
    }
}
