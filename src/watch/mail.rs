//! Report → mail: tera templates (subject, text, HTML) and the lettre message.
//!
//! The built-in templates live in `templates/mail/`; a file of the same name in
//! `watch.template_dir` replaces one. Everything in the subject is squeezed onto one line so that
//! no name from the log can add a header.

use std::path::Path;

use anyhow::{Context, Result};
use lettre::message::Mailbox;
use tera::Tera;

use super::report::Report;
use crate::config::Config;
use crate::error::usage;

mod blocks;
pub mod mime;
mod view;

pub use mime::Mail;

const SUBJECT: &str = "subject.txt";
const TEXT: &str = "body.txt";
const HTML: &str = "body.html";

const BUILT_IN: [(&str, &str); 3] = [
    (SUBJECT, include_str!("../../templates/mail/subject.txt")),
    (TEXT, include_str!("../../templates/mail/body.txt")),
    (HTML, include_str!("../../templates/mail/body.html")),
];

/// Longest subject sent; longer ones are cut with `…`.
const MAX_SUBJECT_CHARS: usize = 200;

pub struct Rendered {
    pub subject: String,
    pub text: String,
    pub html: String,
}

pub struct Templates {
    tera: Tera,
    /// The variables the three templates name: only those are built per report.
    needed: view::Needed,
}

impl Templates {
    /// The built-in templates, each replaced by a same-named file in `dir` when there is one.
    pub fn load(dir: Option<&Path>) -> Result<Templates> {
        let sources = template_sources(dir, &BUILT_IN, "mail")?;
        let texts: Vec<&str> = sources.iter().map(|(_, text)| text.as_str()).collect();
        let needed = view::Needed::of(&texts);
        let tera = tera_of(sources, "mail")?;
        let templates = Templates { tera, needed };
        // An override that uses an unknown variable must fail now, not at the first session.
        templates
            .render(&super::report::example())
            .map_err(|e| usage(format!("{e:#}")))?;
        Ok(templates)
    }

    /// What the templates see of `report` (docs/watch.md, "Template variables").
    pub fn context(&self, report: &Report) -> tera::Context {
        view::context(report, self.needed)
    }

    pub fn render(&self, report: &Report) -> Result<Rendered> {
        self.render_context(&self.context(report))
    }

    /// The three templates against a context from [`Templates::context`].
    pub fn render_context(&self, context: &tera::Context) -> Result<Rendered> {
        // Into a buffer of about the size a report's part has (tera's own starts empty and
        // grows by copying, ~10 % of a render).
        let render = |name: &str| {
            let mut out = Vec::with_capacity(if name == HTML { 16 * 1024 } else { 4 * 1024 });
            self.tera
                .render_to(name, context, &mut out)
                .map_err(|e| anyhow::anyhow!("mail template {name}: {}", tera_message(&e)))?;
            String::from_utf8(out).context("a template rendered invalid UTF-8")
        };
        Ok(Rendered {
            subject: one_line(&render(SUBJECT)?),
            text: render(TEXT)?,
            html: render(HTML)?,
        })
    }

    pub fn render_text(&self, report: &Report) -> Result<String> {
        self.tera
            .render(TEXT, &self.context(report))
            .map_err(|e| anyhow::anyhow!("mail template {TEXT}: {}", tera_message(&e)))
    }
}

/// An outbox record (a [`Report`]'s JSON) read back; records of older versions too: lists of
/// plain names, entries without times (shown `?`), no flat counts (they are made again from
/// `totals`, always: the record's own are not trusted to agree).
pub fn read_report(line: &[u8]) -> serde_json::Result<Report> {
    let mut report: Report = serde_json::from_slice(line)?;
    report.counts = super::report::Counts::of(&report.totals);
    let r = &mut report;
    let times = r
        .uploads
        .iter_mut()
        .chain(&mut r.downloads)
        .map(|t| &mut t.time);
    let times = times
        .chain(
            r.renames
                .iter_mut()
                .chain(&mut r.links)
                .map(|m| &mut m.time),
        )
        .chain(r.failures.iter_mut().map(|f| &mut f.time));
    let named = [&mut r.deletes, &mut r.mkdirs, &mut r.rmdirs, &mut r.changes];
    for time in times.chain(named.into_iter().flatten().map(|n| &mut n.time)) {
        if time.is_empty() {
            time.push('?');
        }
    }
    Ok(report)
}

/// Tera with the `built_in` templates (name, text), each replaced by a same-named file in
/// `dir` when there is one; `what` names them in errors ("mail", "digest", …). `.html`
/// templates autoescape every value. A template that does not parse is exit 2.
pub fn load_tera(dir: Option<&Path>, built_in: &[(&str, &str)], what: &str) -> Result<Tera> {
    tera_of(template_sources(dir, built_in, what)?, what)
}

/// The `built_in` templates (name, text), each replaced by a same-named file in `dir`.
fn template_sources<'a>(
    dir: Option<&Path>,
    built_in: &[(&'a str, &str)],
    what: &str,
) -> Result<Vec<(&'a str, String)>> {
    let mut sources = Vec::new();
    for &(name, text) in built_in {
        let text = match dir.map(|d| d.join(name)) {
            Some(path) if path.exists() => fs_err::read_to_string(&path)
                .with_context(|| format!("cannot read a {what} template override"))?,
            _ => text.to_string(),
        };
        sources.push((name, text));
    }
    Ok(sources)
}

fn tera_of(sources: Vec<(&str, String)>, what: &str) -> Result<Tera> {
    let mut tera = Tera::default();
    tera.autoescape_on(vec![".html"]);
    tera.add_raw_templates(sources).map_err(|e| {
        usage(format!(
            "{what} template does not parse: {}",
            tera_message(&e)
        ))
    })?;
    Ok(tera)
}

/// A tera error with its causes, on one line.
pub fn tera_message(err: &tera::Error) -> String {
    let mut parts = vec![err.to_string()];
    let mut source = std::error::Error::source(err);
    while let Some(s) = source {
        parts.push(s.to_string());
        source = s.source();
    }
    parts.join(": ").replace('\n', " ")
}

/// Control characters (a newline would start a header) become spaces; runs of space collapse.
pub fn one_line(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for word in s.split(|c: char| c.is_whitespace() || c.is_control()) {
        if word.is_empty() {
            continue;
        }
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    if out.chars().count() > MAX_SUBJECT_CHARS {
        out = out.chars().take(MAX_SUBJECT_CHARS - 1).collect();
        out.push('…');
    }
    out
}

/// Sender and recipients, parsed once from the config.
#[derive(Clone)]
pub struct Addresses {
    from: Mailbox,
    to: Vec<Mailbox>,
    users: std::collections::BTreeMap<String, Mailbox>,
    /// For the addresses `sftpctl set-email` stores, read when a report is sent.
    config: Config,
}

impl Addresses {
    pub fn from_config(config: &Config) -> Result<Addresses> {
        let parse = |key: &str, text: &str| -> Result<Mailbox> {
            text.parse::<Mailbox>()
                .map_err(|e| usage(format!("{key}: {text:?} is not a mail address ({e})")))
        };
        let from = parse("mail.from", &config.mail.from)?;
        let to = config
            .mail
            .to
            .iter()
            .map(|t| parse("mail.to", t))
            .collect::<Result<Vec<_>>>()?;
        let mut users = std::collections::BTreeMap::new();
        for (user, addr) in &config.mail.users {
            users.insert(user.clone(), parse(&format!("mail.users.{user}"), addr)?);
        }
        if to.is_empty() && users.is_empty() {
            return Err(usage(
                "mail.to is empty and no mail.users are set: nobody would get the reports",
            ));
        }
        Ok(Addresses {
            from,
            to,
            users,
            config: config.clone(),
        })
    }

    pub fn from(&self) -> &Mailbox {
        &self.from
    }

    /// `mail.to`: the admin's recipients.
    pub fn admins(&self) -> &[Mailbox] {
        &self.to
    }

    /// `mail.to` plus the user's own address: the one `sftpctl set-email` stored, else the
    /// one in `mail.users`.
    pub fn recipients(&self, user: &str) -> Vec<Mailbox> {
        let mut all = self.to.clone();
        if let Some(own) = self.client(user) {
            if !all.contains(&own) {
                all.push(own);
            }
        }
        all
    }

    /// The client's own address alone: the one `sftpctl set-email` stored, else the one in
    /// `mail.users`.
    pub fn client(&self, user: &str) -> Option<Mailbox> {
        crate::names::check_user_name("user", user)
            .ok()
            .and_then(|_| crate::registry::load(&self.config, user).ok())
            .and_then(|s| s.email)
            .and_then(|a| a.parse::<Mailbox>().ok())
            .or_else(|| self.users.get(user).cloned())
    }

    /// [`Addresses::recipients`] through `cache`: the user's file is read once per cache,
    /// i.e. once per delivery batch (a few hundred reports, well under a second), not once
    /// per report. An address changed with `set-email` applies from the next batch.
    pub fn recipients_cached(&self, cache: &mut RecipientCache, user: &str) -> Vec<Mailbox> {
        if let Some(found) = cache.0.get(user) {
            return found.clone();
        }
        let all = self.recipients(user);
        cache.0.insert(user.to_string(), all.clone());
        all
    }
}

/// Recipients per user for one delivery batch (see [`Addresses::recipients_cached`]).
#[derive(Default)]
pub struct RecipientCache(std::collections::HashMap<String, Vec<Mailbox>>);

/// The whole mail: text and HTML alternatives, UTF-8.
pub fn build_message(addresses: &Addresses, report: &Report, rendered: Rendered) -> Result<Mail> {
    build_message_to(
        addresses,
        &report.user,
        addresses.recipients(&report.user),
        rendered,
    )
}

/// [`build_message`] for `user`'s report to `recipients` (from [`Addresses::recipients`]).
pub fn build_message_to(
    addresses: &Addresses,
    user: &str,
    recipients: Vec<Mailbox>,
    rendered: Rendered,
) -> Result<Mail> {
    if recipients.is_empty() {
        anyhow::bail!("no recipient for user {user} (mail.to is empty)");
    }
    mime::assemble(
        &addresses.from,
        recipients,
        rendered.subject,
        &rendered.text,
        &rendered.html,
    )
    .context("cannot build the report mail")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::watch::parse::parse_line;
    use crate::watch::session::{Limits, Sessions};

    fn reports(text: &str) -> Vec<Report> {
        let mut sessions = Sessions::new(Limits::default(), "/data");
        let mut out = Vec::new();
        for l in text.lines() {
            sessions.apply(parse_line(l.as_bytes(), 1_796_000_000), 0, &mut out);
        }
        out
    }

    fn capture() -> Vec<Report> {
        reports(include_str!(
            "../../tests/fixtures/openssh-9.2-rsyslog-file.log"
        ))
    }

    #[test]
    fn text_body_names_every_file_with_its_bytes() {
        let t = Templates::load(None).unwrap();
        let r = &capture()[1];
        let out = t.render(r).unwrap();
        assert!(
            out.text.contains("big.bin  2.9 MiB (3,000,000 bytes)"),
            "{}",
            out.text
        );
        assert!(out
            .text
            .contains("FAILED REQUESTS (1)\n  mkdir /forbidden: Permission denied"));
        assert!(out.text.contains("DELETED (2)\n  big.renamed\n  big.sym"));
        assert_eq!(
            out.subject,
            "SFTP alice@vm: 2 uploaded 1 downloaded 2 deleted 1 renamed (1 may have replaced a file) 3 other changes 1 failed"
        );
        let r = &capture()[2];
        let out = t.render(r).unwrap();
        assert!(out
            .text
            .contains("huge.bin  1.7 MiB (1,827,840 bytes)  [INCOMPLETE: interrupted]"));
        assert!(out.subject.ends_with("[INCOMPLETE]"));
    }

    #[test]
    fn html_escapes_names() {
        let t = Templates::load(None).unwrap();
        let r = reports(
            "2026-11-27T16:04:18+00:00 h internal-sftp[1]: session opened for local user bob from [::1]\n\
             2026-11-27T16:04:18+00:00 h internal-sftp[1]: remove name \"/data/<b>x</b>&\"\n\
             2026-11-27T16:04:18+00:00 h internal-sftp[1]: session closed for local user bob from [::1]\n",
        );
        let out = t.render(&r[0]).unwrap();
        assert!(
            out.html.contains("&lt;b&gt;x&lt;&#x2F;b&gt;&amp;"),
            "{}",
            out.html
        );
        assert!(out.text.contains("<b>x</b>&"));
    }

    /// Hidden activity made plain in all three parts: a replacing rename, a cut name, a
    /// right-to-left override.
    #[test]
    fn replaced_cut_and_bidi_names_are_plain_in_every_part() {
        let t = Templates::load(None).unwrap();
        let h = "2026-11-27T16:04:18+00:00 h internal-sftp[1]:";
        let long = "L".repeat(600);
        let text = format!(
            "{h} session opened for local user bob from [::1]\n\
             {h} posix-rename old \"/data/a\" new \"/data/contract.pdf\"\n\
             {h} posix-rename old \"/data/contract.pdf\" new \"/data/a\"\n\
             {h} remove name \"/data/invoice-\\342\\200\\256fdp.exe\"\n\
             {h} remove name \"/data/{long}\n\
             {h} session closed for local user bob from [::1]\n"
        );
        let r = reports(&text);
        let out = t.render(&r[0]).unwrap();
        assert!(
            out.text
                .contains("a → contract.pdf  [REPLACED contract.pdf if it existed]"),
            "{}",
            out.text
        );
        assert!(out.text.contains("NAMES CUT: 1 entry"), "{}", out.text);
        assert!(out.text.contains("invoice-<U+202E>fdp.exe"), "{}", out.text);
        assert!(out.html.contains("REPLACED contract.pdf if it existed"));
        assert!(out.html.contains("Names cut:"), "{}", out.html);
        assert!(
            out.html.contains("invoice-&lt;U+202E&gt;fdp.exe"),
            "{}",
            out.html
        );
        assert!(
            out.subject.contains("may have replaced a file"),
            "{}",
            out.subject
        );
        assert!(out.subject.contains("[NAME CUT]"), "{}", out.subject);
        for part in [&out.subject, &out.text, &out.html] {
            assert!(!part.contains('\u{202e}'));
        }
    }

    /// Records queued in the outbox by an older version have none of the new fields: they
    /// still render.
    #[test]
    fn old_records_without_the_new_fields_render() {
        let t = Templates::load(None).unwrap();
        let mut value = serde_json::to_value(&capture()[1]).unwrap();
        let totals = value["totals"].as_object_mut().unwrap();
        totals.remove("replaced");
        totals.remove("cut_names");
        for m in value["renames"].as_array_mut().unwrap() {
            let m = m.as_object_mut().unwrap();
            for k in ["replaced", "ambiguous", "note"] {
                m.remove(k);
            }
        }
        let report = read_report(&serde_json::to_vec(&value).unwrap()).unwrap();
        let out = t.render(&report).unwrap();
        assert!(out.text.contains("RENAMED (1)"), "{}", out.text);
    }

    #[test]
    fn a_name_cannot_inject_a_header() {
        assert_eq!(one_line("a\r\nBcc: evil@x\n"), "a Bcc: evil@x");
        let long = "x".repeat(500);
        assert_eq!(one_line(&long).chars().count(), MAX_SUBJECT_CHARS);
        let t = Templates::load(None).unwrap();
        let mut r = capture().remove(0);
        r.user = "alice\r\nBcc: evil@example.com".into();
        let rendered = t.render(&r).unwrap();
        let addresses = Addresses::from_config(&Config::default()).unwrap();
        let msg = build_message(&addresses, &r, rendered).unwrap();
        let text = String::from_utf8(msg.bytes).unwrap();
        let headers = text.split("\r\n\r\n").next().unwrap();
        assert!(!headers.lines().any(|l| l.starts_with("Bcc:")), "{headers}");
    }

    #[test]
    fn per_user_recipient_is_added() {
        let mut config = Config::default();
        config
            .mail
            .users
            .insert("alice".into(), "alice@client.example".into());
        let a = Addresses::from_config(&config).unwrap();
        assert_eq!(a.recipients("alice").len(), 2);
        assert_eq!(a.recipients("bob").len(), 1);
        config.mail.to = vec!["not an address".into()];
        assert!(Addresses::from_config(&config).is_err());
    }

    #[test]
    fn overrides_replace_built_ins_and_bad_ones_fail_early() {
        let dir = std::env::temp_dir().join(format!("sftpctl-tpl-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(SUBJECT), "Custom {{ user }}").unwrap();
        let t = Templates::load(Some(&dir)).unwrap();
        assert_eq!(t.render(&capture()[0]).unwrap().subject, "Custom alice");
        std::fs::write(dir.join(SUBJECT), "{{ no_such_variable }}").unwrap();
        assert!(Templates::load(Some(&dir)).is_err());
        std::fs::write(dir.join(SUBJECT), "{% if %}").unwrap();
        assert!(Templates::load(Some(&dir)).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// An override written against the report's own fields (before the rows existed) still
    /// gets them: the context holds what the templates name.
    #[test]
    fn overrides_get_the_structured_lists() {
        let dir = std::env::temp_dir().join(format!("sftpctl-tpl-lists-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join(TEXT),
            "{% for t in uploads %}{{ t.path }}={{ t.bytes }};{% endfor %}{{ totals.uploads }} \
             {{ deletes[0].path }} {{ id }} {{ ending }}",
        )
        .unwrap();
        std::fs::write(
            dir.join(HTML),
            "{% for m in renames %}<i>{{ m.new }}</i>{% endfor %}",
        )
        .unwrap();
        let t = Templates::load(Some(&dir)).unwrap();
        let mut r = capture().remove(1);
        r.renames[0].new = "<b>".into();
        let out = t.render(&r).unwrap();
        assert_eq!(
            out.text,
            format!("up.txt=12;big.bin=3000000;2 big.renamed {} closed", r.id)
        );
        assert_eq!(out.html, "<i>&lt;b&gt;</i>");
        std::fs::write(dir.join(TEXT), "{{ __tera_context }}").unwrap();
        let t = Templates::load(Some(&dir)).unwrap();
        let out = t.render(&r).unwrap();
        for key in [
            "\"uploads\"",
            "\"upload_lines\"",
            "\"totals\"",
            "\"n_other\"",
        ] {
            assert!(out.text.contains(key), "{key} missing: {}", out.text);
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
