//! What the report templates see: the report's own fields (its `report --json` shape) plus
//! every list entry already formatted, once, in Rust: `upload_lines` … as the text part prints
//! them, `upload_rows` … as the HTML part's `<tr>` rows, every value in them HTML-escaped
//! here. A tera lookup of `t.path` inside a loop costs a pointer parse and two string
//! allocations; a row is one lookup of the loop variable (docs/watch.md, "Rendering cost").
//!
//! Only the variables some template names are put in the context: the built-in templates
//! print the pre-rendered blocks (`mail::blocks`), so neither the rows nor the structured
//! lists are built for them; an override that names `uploads` or `upload_rows` gets them.

use super::blocks;
use crate::watch::report::{Named, Report, ShownFailure, ShownMove, ShownTransfer};

macro_rules! keys {
    ($($name:ident),* $(,)?) => {
        /// Every top-level template variable.
        #[allow(non_camel_case_types)]
        #[derive(Clone, Copy)]
        enum K { $($name),* }
        const KEYS: &[(&str, K)] = &[$((stringify!($name), K::$name)),*];
    };
}

keys!(
    id,
    host,
    pid,
    user,
    client,
    start,
    end,
    start_text,
    end_text,
    duration_text,
    complete,
    ending,
    ending_text,
    uploads,
    uploads_more,
    downloads,
    downloads_more,
    deletes,
    deletes_more,
    renames,
    renames_more,
    links,
    links_more,
    mkdirs,
    mkdirs_more,
    rmdirs,
    rmdirs_more,
    changes,
    changes_more,
    failures,
    failures_more,
    totals,
    upload_size,
    download_size,
    unreadable_lines,
    notes,
    touched_jails,
    n_uploads,
    n_downloads,
    n_deletes,
    n_renames,
    n_links,
    n_mkdirs,
    n_rmdirs,
    n_changes,
    n_failures,
    n_incomplete,
    n_replaced,
    n_cut,
    n_other,
    upload_lines,
    upload_rows,
    download_lines,
    download_rows,
    delete_lines,
    delete_rows,
    rename_lines,
    rename_rows,
    link_lines,
    link_rows,
    mkdir_lines,
    mkdir_rows,
    rmdir_lines,
    rmdir_rows,
    change_lines,
    change_rows,
    failure_lines,
    failure_rows,
    warnings,
    subject_line,
    text_head,
    text_warnings,
    text_uploads,
    text_downloads,
    text_deletes,
    text_renames,
    text_mkdirs,
    text_rmdirs,
    text_changes,
    text_links,
    text_failures,
    text_unreadable,
    text_totals,
    html_head,
    html_counts,
    html_warnings,
    html_uploads,
    html_downloads,
    html_deletes,
    html_renames,
    html_dirs,
    html_changes,
    html_links,
    html_failures,
    html_unreadable,
    html_totals,
);

/// The template variables some template names (a bit per [`KEYS`] entry).
#[derive(Clone, Copy)]
pub struct Needed(u128);

impl Needed {
    /// Every word of the templates' sources that is a variable's name: a variable cannot be
    /// used without its name appearing (includes and macros only reach these same sources).
    /// `__tera_context` (tera's dump of the whole context) needs all of them.
    pub fn of(sources: &[&str]) -> Needed {
        let mut bits = 0u128;
        for source in sources {
            for word in source.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                if word == "__tera_context" {
                    return Needed(u128::MAX);
                }
                if let Some((_, k)) = KEYS.iter().find(|(name, _)| *name == word) {
                    bits |= 1 << *k as u32;
                }
            }
        }
        Needed(bits)
    }

    fn has(self, k: K) -> bool {
        self.0 & (1 << k as u32) != 0
    }
}

/// The context of one report: the variables in `needed`.
pub fn context(r: &Report, needed: Needed) -> tera::Context {
    // Straight into the context's map: through a `serde_json::Map` and `from_value` every
    // key was inserted into two B-trees.
    let mut map = tera::Context::new();
    macro_rules! put {
        ($($k:ident => $v:expr),* $(,)?) => {
            $(if needed.has(K::$k) {
                map.insert(stringify!($k), &$v);
            })*
        };
    }
    let c = &r.counts;
    // One test for the block of notices that most reports have none of.
    let warnings = !r.touched_jails.is_empty()
        || !r.ending_text.is_empty()
        || !r.notes.is_empty()
        || c.n_incomplete + c.n_cut + c.n_replaced > 0;
    put!(
        host => r.host.as_str(),
        pid => r.pid,
        user => r.user.as_str(),
        client => r.client.as_str(),
        end => r.end,
        start_text => r.start_text.as_str(),
        end_text => r.end_text.as_str(),
        duration_text => r.duration_text.as_str(),
        complete => r.complete,
        ending_text => r.ending_text.as_str(),
        uploads_more => r.uploads_more,
        downloads_more => r.downloads_more,
        deletes_more => r.deletes_more,
        renames_more => r.renames_more,
        links_more => r.links_more,
        mkdirs_more => r.mkdirs_more,
        rmdirs_more => r.rmdirs_more,
        changes_more => r.changes_more,
        failures_more => r.failures_more,
        upload_size => r.upload_size.as_str(),
        download_size => r.download_size.as_str(),
        unreadable_lines => r.unreadable_lines,
        notes => r.notes,
        touched_jails => r.touched_jails,
        n_uploads => c.n_uploads,
        n_downloads => c.n_downloads,
        n_deletes => c.n_deletes,
        n_renames => c.n_renames,
        n_links => c.n_links,
        n_mkdirs => c.n_mkdirs,
        n_rmdirs => c.n_rmdirs,
        n_changes => c.n_changes,
        n_failures => c.n_failures,
        n_incomplete => c.n_incomplete,
        n_replaced => c.n_replaced,
        n_cut => c.n_cut,
        n_other => c.n_other,
        upload_lines => rows(&r.uploads, transfer_line),
        upload_rows => rows(&r.uploads, transfer_row),
        download_lines => rows(&r.downloads, transfer_line),
        download_rows => rows(&r.downloads, transfer_row),
        delete_lines => rows(&r.deletes, named_line),
        delete_rows => rows(&r.deletes, |o, n| named_row(o, n, None)),
        rename_lines => rows(&r.renames, |o, m| move_line(o, &m.old, &m.new, m)),
        rename_rows => rows(&r.renames, |o, m| move_row(o, &m.old, &m.new, m)),
        link_lines => rows(&r.links, |o, m| move_line(o, &m.new, &m.old, m)),
        link_rows => rows(&r.links, |o, m| move_row(o, &m.new, &m.old, m)),
        mkdir_lines => rows(&r.mkdirs, named_line),
        mkdir_rows => rows(&r.mkdirs, |o, n| named_row(o, n, Some("made"))),
        rmdir_lines => rows(&r.rmdirs, named_line),
        rmdir_rows => rows(&r.rmdirs, |o, n| named_row(o, n, Some("removed"))),
        change_lines => rows(&r.changes, named_line),
        change_rows => rows(&r.changes, |o, n| named_row(o, n, None)),
        failure_lines => rows(&r.failures, failure_line),
        failure_rows => rows(&r.failures, failure_row),
        warnings => warnings,
        subject_line => blocks::subject(r),
        text_head => blocks::text_head(r),
        text_warnings => blocks::text_warnings(r, warnings),
        text_unreadable => blocks::text_unreadable(r),
        text_totals => blocks::text_totals(r),
        html_head => blocks::html_head(r),
        html_counts => blocks::html_counts(r),
        html_warnings => blocks::html_warnings(r, warnings),
        html_unreadable => blocks::html_unreadable(r),
        html_totals => blocks::html_totals(r),
    );
    // The lists come as one batch (the built-in templates print all of them).
    const TEXT_LISTS: [K; 9] = [
        K::text_uploads,
        K::text_downloads,
        K::text_deletes,
        K::text_renames,
        K::text_mkdirs,
        K::text_rmdirs,
        K::text_changes,
        K::text_links,
        K::text_failures,
    ];
    if TEXT_LISTS.iter().any(|&k| needed.has(k)) {
        for (k, text) in TEXT_LISTS.into_iter().zip(blocks::text_lists(r)) {
            if needed.has(k) {
                map.insert(KEYS[k as usize].0, &text);
            }
        }
    }
    const HTML_LISTS: [K; 8] = [
        K::html_uploads,
        K::html_downloads,
        K::html_deletes,
        K::html_renames,
        K::html_dirs,
        K::html_changes,
        K::html_links,
        K::html_failures,
    ];
    if HTML_LISTS.iter().any(|&k| needed.has(k)) {
        for (k, html) in HTML_LISTS.into_iter().zip(blocks::html_lists(r)) {
            if needed.has(k) {
                map.insert(KEYS[k as usize].0, &html);
            }
        }
    }
    // The rest as `report --json` has them (nested objects: serde).
    macro_rules! json {
        ($($k:ident),* $(,)?) => {
            $(if needed.has(K::$k) {
                map.insert(stringify!($k), &r.$k);
            })*
        };
    }
    json!(id, start, ending, uploads, downloads, deletes, renames, links, mkdirs, rmdirs, changes);
    json!(failures, totals);
    map
}

fn rows<T>(items: &[T], format: impl Fn(&mut String, &T)) -> Vec<String> {
    items
        .iter()
        .map(|item| {
            let mut out = String::with_capacity(160);
            format(&mut out, item);
            out
        })
        .collect()
}

/// An entry's time; `?` in records written before entries had times.
fn time(t: &str) -> &str {
    if t.is_empty() {
        "?"
    } else {
        t
    }
}

pub(super) fn transfer_line(o: &mut String, t: &ShownTransfer) {
    for part in [&t.path, "  ", &t.size] {
        o.push_str(part);
    }
    if t.incomplete {
        o.push_str("  [INCOMPLETE: interrupted]");
    }
    o.push_str("  at ");
    o.push_str(time(&t.time));
}

pub(super) fn named_line(o: &mut String, n: &Named) {
    o.push_str(&n.path);
}

/// `old → new` of a rename; a link is shown `new → old`, the caller orders them.
pub(super) fn move_line(o: &mut String, first: &str, second: &str, m: &ShownMove) {
    for part in [first, " → ", second] {
        o.push_str(part);
    }
    if !m.note.is_empty() {
        for part in ["  [", &m.note, "]"] {
            o.push_str(part);
        }
    }
    o.push_str("  at ");
    o.push_str(time(&m.time));
}

pub(super) fn failure_line(o: &mut String, f: &ShownFailure) {
    for part in [
        &f.action,
        " ",
        &f.path,
        ": ",
        &f.status,
        "  at ",
        time(&f.time),
    ] {
        o.push_str(part);
    }
}

const NAME_CELL: &str = "<td style=\"word-break:break-all\"><code>";

pub(super) fn transfer_row(o: &mut String, t: &ShownTransfer) {
    o.push_str("<tr>");
    o.push_str(NAME_CELL);
    escape(o, &t.path);
    o.push_str("</code>");
    if t.incomplete {
        o.push_str(" <b style=\"color:#cf222e\">incomplete: interrupted</b>");
    }
    o.push_str("</td><td>");
    escape(o, &t.size);
    o.push_str("</td><td nowrap>");
    escape(o, time(&t.time));
    o.push_str("</td></tr>");
}

/// A delete or change (`what` none), a directory made or removed.
pub(super) fn named_row(o: &mut String, n: &Named, what: Option<&str>) {
    o.push_str("<tr>");
    o.push_str(NAME_CELL);
    escape(o, &n.path);
    o.push_str("</code></td>");
    if let Some(what) = what {
        for part in ["<td>", what, "</td>"] {
            o.push_str(part);
        }
    }
    o.push_str("<td nowrap>");
    escape(o, time(&n.time));
    o.push_str("</td></tr>");
}

pub(super) fn move_row(o: &mut String, first: &str, second: &str, m: &ShownMove) {
    o.push_str("<tr>");
    o.push_str(NAME_CELL);
    escape(o, first);
    o.push_str("</code></td>");
    o.push_str(NAME_CELL);
    escape(o, second);
    o.push_str("</code>");
    if !m.note.is_empty() {
        o.push_str("<br><b style=\"color:#cf222e\">");
        escape(o, &m.note);
        o.push_str("</b>");
    }
    o.push_str("</td><td nowrap>");
    escape(o, time(&m.time));
    o.push_str("</td></tr>");
}

pub(super) fn failure_row(o: &mut String, f: &ShownFailure) {
    o.push_str("<tr><td>");
    escape(o, &f.action);
    o.push_str("</td>");
    o.push_str(NAME_CELL);
    escape(o, &f.path);
    o.push_str("</code></td><td style=\"color:#cf222e\">");
    escape(o, &f.status);
    o.push_str("</td><td nowrap>");
    escape(o, time(&f.time));
    o.push_str("</td></tr>");
}

/// `s` appended to `o` escaped as tera's autoescape escapes (`tera::escape_html`: `& < > " '
/// /`), so a row reads exactly as the template printing the value did; runs without any of
/// them are copied whole.
pub fn escape(o: &mut String, s: &str) {
    let mut start = 0;
    for (i, b) in s.bytes().enumerate() {
        let entity = match b {
            b'&' => "&amp;",
            b'<' => "&lt;",
            b'>' => "&gt;",
            b'"' => "&quot;",
            b'\'' => "&#x27;",
            b'/' => "&#x2F;",
            _ => continue,
        };
        o.push_str(&s[start..i]);
        o.push_str(entity);
        start = i + 1;
    }
    o.push_str(&s[start..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_is_teras() {
        for s in [
            "",
            "plain.pdf",
            "<img src=x onerror=alert(1)>.pdf",
            "a&b\"c'd/e",
            "{{ user }} {% if %} {# x #}",
            "résumé → ü/<>",
        ] {
            let mut ours = String::new();
            escape(&mut ours, s);
            assert_eq!(ours, tera::escape_html(s), "{s}");
        }
    }

    /// A hostile name is text in every row of the HTML view, and it stays text when a
    /// template prints the row (tera never reads a value as a template).
    #[test]
    fn hostile_names_are_escaped_in_the_rows() {
        let mut r = crate::watch::report::example();
        let evil = "<img src=x onerror=alert(1)>{{ user }}{% if %}.pdf";
        r.uploads[0].path = evil.into();
        r.deletes[0].path = evil.into();
        r.renames[0].old = evil.into();
        r.renames[0].note = evil.into();
        r.failures[0].status = evil.into();
        let all = Needed(u128::MAX);
        let context = context(&r, all);
        let want = "&lt;img src=x onerror=alert(1)&gt;{{ user }}{% if %}.pdf";
        for key in ["upload_rows", "delete_rows", "rename_rows", "failure_rows"] {
            let row = context.get(key).unwrap()[0].as_str().unwrap();
            assert!(row.contains(want), "{key}: {row}");
            assert!(!row.contains("<img"), "{key}: {row}");
        }
        let mut tera = tera::Tera::default();
        tera.autoescape_on(vec![".html"]);
        tera.add_raw_template(
            "t.html",
            "{% for r in upload_rows %}{{ r | safe }}{% endfor %}",
        )
        .unwrap();
        let html = tera.render("t.html", &context).unwrap();
        assert!(html.contains(want) && !html.contains("<img"), "{html}");
        assert!(!html.contains(">alice<"), "{html}");
    }

    #[test]
    fn only_the_named_variables_are_built() {
        let needed = Needed::of(&["{{ user }} {% for l in upload_lines %}{{ l }}{% endfor %}"]);
        let context = context(&crate::watch::report::example(), needed);
        let json = context.into_json();
        let mut keys: Vec<&str> = json
            .as_object()
            .unwrap()
            .keys()
            .map(|k| k.as_str())
            .collect();
        keys.sort();
        assert_eq!(keys, ["upload_lines", "user"]);
        let every = Needed::of(&["{{ __tera_context }}"]);
        let json = super::context(&crate::watch::report::example(), every).into_json();
        assert_eq!(json.as_object().unwrap().len(), KEYS.len());
    }
}
