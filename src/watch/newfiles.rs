//! "New files for you": when a session that is not the client's own (the admin's) puts files
//! into client jails, each client whose notice is on gets one letter listing only its own
//! files. Decided when the session's report is made, before the report enters the outbox, so
//! the letter is on disk before the report can be acknowledged; its id
//! (`newfiles-REPORTID-NAME`) keeps a repeat from becoming a second letter.
//!
//! The admin is not jailed: its lines carry host paths, `<root>/NAME/<data_dir>/…`. A path is
//! given to a client only when it names that client's data tree plainly: absolute, without
//! `..`, under the configured root as written, and, when the session ends, reachable from the
//! data dir without a symlink (`openat2` with `RESOLVE_NO_SYMLINKS`) as a regular file. A path
//! that only looks like a jail (`alice/data/../../bob/data/x`, a symlink a client made in
//! its tree) goes into no letter.

use std::collections::BTreeMap;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use anyhow::{Context, Result};
use nix::errno::Errno;
use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
use serde::Serialize;
use tera::Tera;

use super::mail::one_line;
use super::report::{human_size, Report};
use crate::config::Config;
use crate::error::usage;
use crate::letters::{self, Letter, To};

const SUBJECT: &str = "newfiles.subject.txt";
const TEXT: &str = "newfiles.txt";
const HTML: &str = "newfiles.html";

const BUILT_IN: [(&str, &str); 3] = [
    (
        SUBJECT,
        include_str!("../../templates/mail/newfiles.subject.txt"),
    ),
    (TEXT, include_str!("../../templates/mail/newfiles.txt")),
    (HTML, include_str!("../../templates/mail/newfiles.html")),
];

/// One file of a client's letter, as the client sees it (relative to its data dir).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NewFile {
    pub path: String,
    /// `12 bytes`, `2.9 MiB (3,000,000 bytes)`; empty for a rename (no bytes moved).
    pub size: String,
    /// `renamed from a.tmp`, `moved in`, `replaced an existing file`…; empty if nothing.
    pub note: String,
    pub incomplete: bool,
}

/// What a host path names.
#[derive(Debug, PartialEq, Eq)]
enum Place {
    /// Inside client `name`'s data dir: `rel` as the client sees it (`.` is the dir itself).
    Data { name: String, rel: String },
    /// In client `name`'s jail but not in its data dir.
    Jail { name: String },
    /// Not in any jail, or not plainly (relative, `..`).
    Elsewhere,
}

/// Where `path` (an absolute host path as logged) lies, lexically.
fn place(config: &Config, path: &str) -> Place {
    if !path.starts_with('/') {
        return Place::Elsewhere; // relative to the admin's home: not ours to guess
    }
    let parts: Vec<&str> = path
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    if parts.contains(&"..") {
        return Place::Elsewhere;
    }
    let root = config.root.to_string_lossy();
    let root_parts: Vec<&str> = root.split('/').filter(|p| !p.is_empty()).collect();
    let Some(rest) = parts.strip_prefix(root_parts.as_slice()) else {
        return Place::Elsewhere;
    };
    let Some((name, rest)) = rest.split_first() else {
        return Place::Elsewhere;
    };
    if crate::names::check_user_name("user", name).is_err() {
        return Place::Elsewhere;
    }
    let name = name.to_string();
    match rest.split_first() {
        Some((dir, rel)) if *dir == config.data_dir => Place::Data {
            name,
            rel: if rel.is_empty() {
                ".".into()
            } else {
                rel.join("/")
            },
        },
        _ => Place::Jail { name },
    }
}

fn jail_of(config: &Config, path: &str) -> Option<String> {
    match place(config, path) {
        Place::Data { name, .. } | Place::Jail { name } => Some(name),
        Place::Elsewhere => None,
    }
}

/// The jails whose trees this session's entries name, sorted.
pub fn touched_jails(config: &Config, report: &Report) -> Vec<String> {
    let mut paths: Vec<&str> = Vec::new();
    paths.extend(report.uploads.iter().map(|t| t.path.as_str()));
    paths.extend(report.downloads.iter().map(|t| t.path.as_str()));
    for list in [&report.deletes, &report.mkdirs, &report.rmdirs] {
        paths.extend(list.iter().map(|n| n.path.as_str()));
    }
    for m in &report.renames {
        paths.push(&m.old);
        paths.push(&m.new);
    }
    paths.extend(report.links.iter().map(|m| m.new.as_str()));
    // `PATH: what changed`; the change text never holds ": ".
    paths.extend(
        report
            .changes
            .iter()
            .filter_map(|c| c.rsplit_once(": ").map(|(p, _)| p)),
    );
    let mut names: Vec<String> = paths.iter().filter_map(|p| jail_of(config, p)).collect();
    names.sort();
    names.dedup();
    names
}

/// Every client's new files in this session, lexically (before the check on disk).
fn candidates(config: &Config, report: &Report) -> BTreeMap<String, Vec<NewFile>> {
    let mut out: BTreeMap<String, Vec<NewFile>> = BTreeMap::new();
    for t in &report.uploads {
        if let Place::Data { name, rel } = place(config, &t.path) {
            let size = if t.size.starts_with("size unknown") {
                "size unknown".to_string()
            } else {
                human_size(t.bytes)
            };
            out.entry(name).or_default().push(NewFile {
                path: rel,
                size,
                note: String::new(),
                incomplete: t.incomplete,
            });
        }
    }
    for m in report.renames.iter().filter(|m| !m.ambiguous) {
        let Place::Data { name, rel } = place(config, &m.new) else {
            continue;
        };
        // The old name is told only when it was in the same client's tree.
        let mut note = match place(config, &m.old) {
            Place::Data {
                name: from,
                rel: old,
            } if from == name => format!("renamed from {old}"),
            _ => "moved in".to_string(),
        };
        match m.replaced {
            super::session::Replaced::No => {}
            super::session::Replaced::Maybe => {
                note.push_str("; replaced the file of that name if there was one")
            }
            super::session::Replaced::Yes => note.push_str("; replaced the file of that name"),
        }
        out.entry(name).or_default().push(NewFile {
            path: rel,
            size: String::new(),
            note,
            incomplete: false,
        });
    }
    out
}

/// Whether `rel` is a regular file reached from `name`'s data dir without any symlink (the
/// data dir itself is opened without following one either; `<root>` is root's).
fn plainly_there(config: &Config, name: &str, rel: &str) -> bool {
    let resolve = ResolveFlag::RESOLVE_BENEATH
        | ResolveFlag::RESOLVE_NO_SYMLINKS
        | ResolveFlag::RESOLVE_NO_MAGICLINKS;
    let open = |dir: i32, path: &Path, flags: OFlag| -> Result<OwnedFd, Errno> {
        let how = OpenHow::new()
            .flags(flags | OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC)
            .resolve(resolve);
        loop {
            match openat2(dir, path, how) {
                // SAFETY: a new descriptor that nothing else owns.
                Ok(fd) => return Ok(unsafe { OwnedFd::from_raw_fd(fd) }),
                Err(Errno::EAGAIN | Errno::EINTR) => continue,
                Err(e) => return Err(e),
            }
        }
    };
    let Ok(root) = nix::fcntl::open(
        &config.root,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    ) else {
        return false;
    };
    // SAFETY: a new descriptor that nothing else owns.
    let root = unsafe { OwnedFd::from_raw_fd(root) };
    let data = Path::new(name).join(&config.data_dir);
    let Ok(data) = open(root.as_raw_fd(), &data, OFlag::O_DIRECTORY) else {
        return false;
    };
    let Ok(file) = open(data.as_raw_fd(), Path::new(rel), OFlag::empty()) else {
        return false;
    };
    use nix::sys::stat::SFlag;
    nix::sys::stat::fstat(file.as_raw_fd())
        .is_ok_and(|st| SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFREG)
}

/// Each client's files of this session that are plainly in its tree now.
pub fn new_files(config: &Config, report: &Report) -> BTreeMap<String, Vec<NewFile>> {
    let mut out = candidates(config, report);
    for (name, files) in out.iter_mut() {
        files.retain(|f| plainly_there(config, name, &f.path));
    }
    out.retain(|_, files| !files.is_empty());
    out
}

/// The client's letter: what the templates see.
#[derive(Debug, Serialize)]
struct LetterContext<'a> {
    user: &'a str,
    host: &'a str,
    /// When the session that brought them ended, local time.
    end_text: &'a str,
    files: &'a [NewFile],
    /// The session had more entries than its report lists: some of this client's may be
    /// among them (nothing says whose they are).
    maybe_more: bool,
}

pub struct Notifier {
    tera: Tera,
}

impl Notifier {
    /// The built-in templates, each replaced by a same-named file in `dir` when there is one;
    /// an override that does not render fails now (exit 2), not at the first letter.
    pub fn load(dir: Option<&Path>) -> Result<Notifier> {
        let tera = super::mail::load_tera(dir, &BUILT_IN, "mail")?;
        let notifier = Notifier { tera };
        let example = [
            NewFile {
                path: "report.pdf".into(),
                size: human_size(3_000_000),
                note: String::new(),
                incomplete: false,
            },
            NewFile {
                path: "in/b.txt".into(),
                size: String::new(),
                note: "moved in; replaced the file of that name".into(),
                incomplete: true,
            },
        ];
        notifier
            .render(
                "alice",
                "host",
                "2026-11-27 17:04:18 +01:00 (CET)",
                &example,
                true,
            )
            .map_err(|e| usage(format!("{e:#}")))?;
        Ok(notifier)
    }

    /// Subject, text and HTML of one client's letter.
    fn render(
        &self,
        user: &str,
        host: &str,
        end_text: &str,
        files: &[NewFile],
        maybe_more: bool,
    ) -> Result<(String, String, String)> {
        let context = tera::Context::from_serialize(LetterContext {
            user,
            host,
            end_text,
            files,
            maybe_more,
        })
        .context("cannot serialize a new-files letter")?;
        let render = |name: &str| {
            self.tera.render(name, &context).map_err(|e| {
                anyhow::anyhow!(
                    "mail template {name}: {}",
                    crate::watch::mail::tera_message(&e)
                )
            })
        };
        Ok((one_line(&render(SUBJECT)?), render(TEXT)?, render(HTML)?))
    }

    /// Names the touched jails in `report` and queues one letter per client whose notice is
    /// on and who has an address. Sessions of jailed clients are their own: nothing to do.
    pub fn process(&self, config: &Config, report: &mut Report) -> Result<()> {
        if config.admin.as_deref() != Some(report.user.as_str()) {
            return Ok(());
        }
        report.touched_jails = touched_jails(config, report);
        if report.touched_jails.is_empty() {
            return Ok(());
        }
        let maybe_more = report.uploads_more > 0 || report.renames_more > 0;
        let mut failed = Vec::new();
        for (name, files) in new_files(config, report) {
            // One client's unreadable settings must not cost the others their letters.
            if let Err(e) = self.queue_for(config, report, &name, &files, maybe_more) {
                failed.push(format!("{name}: {e:#}"));
            }
        }
        anyhow::ensure!(failed.is_empty(), "{}", failed.join("; "));
        Ok(())
    }

    fn queue_for(
        &self,
        config: &Config,
        report: &Report,
        name: &str,
        files: &[NewFile],
        maybe_more: bool,
    ) -> Result<()> {
        if crate::accounts::account(config, name) != crate::accounts::Account::Managed {
            return Ok(());
        }
        let settings =
            crate::registry::load(config, name).with_context(|| format!("settings of {name}"))?;
        if !settings.notify_new_files(config) || crate::registry::email_of(config, name).is_none() {
            return Ok(());
        }
        let (subject, text, html) =
            self.render(name, &report.host, &report.end_text, files, maybe_more)?;
        let letter = Letter {
            id: format!("newfiles-{}-{name}", report.id),
            kind: "newfiles".into(),
            user: name.to_string(),
            to: To::Client,
            subject,
            text,
            html: Some(html),
        };
        letters::queue(config, &letter)
            .with_context(|| format!("cannot queue the new-files letter for {name}"))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        Config {
            root: "/srv/j".into(),
            ..Config::default()
        }
    }

    #[test]
    fn places_are_lexical_and_plain_only() {
        let c = config();
        let data = |name: &str, rel: &str| Place::Data {
            name: name.into(),
            rel: rel.into(),
        };
        assert_eq!(place(&c, "/srv/j/alice/data/a.pdf"), data("alice", "a.pdf"));
        assert_eq!(
            place(&c, "//srv/./j/alice/data//in/b"),
            data("alice", "in/b")
        );
        assert_eq!(place(&c, "/srv/j/alice/data"), data("alice", "."));
        assert_eq!(
            place(&c, "/srv/j/alice/dev/log"),
            Place::Jail {
                name: "alice".into()
            }
        );
        for elsewhere in [
            "/srv/j/alice/data/../../bob/data/x",
            "/srv/j/bob/data/../../alice/data/x",
            "/srv/j/alice/data/a/..",
            "alice/data/x",
            "data/x",
            "/srv/jx/alice/data/x",
            "/srv/j",
            "/srv/j/Bad Name/data/x",
            "/tmp/x",
        ] {
            assert_eq!(place(&c, elsewhere), Place::Elsewhere, "{elsewhere}");
        }
    }

    fn report(lines: &[&str]) -> Report {
        use crate::watch::parse::parse_line;
        use crate::watch::session::{Limits, Sessions};
        let mut sessions = Sessions::new(Limits::default(), "/data");
        let mut out = Vec::new();
        let h = "2026-11-27T16:04:18+00:00 h internal-sftp[7]:";
        let mut all = vec![format!("{h} session opened for local user adm from [::1]")];
        all.extend(lines.iter().map(|l| format!("{h} {l}")));
        all.push(format!("{h} session closed for local user adm from [::1]"));
        for l in &all {
            sessions.apply(parse_line(l.as_bytes(), 0), 0, &mut out);
        }
        out.remove(0)
    }

    #[test]
    fn each_client_gets_only_its_own_files() {
        let c = config();
        let r = report(&[
            r#"open "/srv/j/alice/data/a.pdf" flags WRITE,CREATE,TRUNCATE mode 0644"#,
            r#"close "/srv/j/alice/data/a.pdf" bytes read 0 written 12"#,
            r#"open "/srv/j/bob/data/b.pdf" flags WRITE,CREATE,TRUNCATE mode 0644"#,
            r#"close "/srv/j/bob/data/b.pdf" bytes read 0 written 3000000"#,
            r#"open "/srv/j/alice/data/../../bob/data/x" flags WRITE,CREATE,TRUNCATE mode 0644"#,
            r#"close "/srv/j/alice/data/../../bob/data/x" bytes read 0 written 5"#,
            r#"posix-rename old "/srv/j/bob/data/secret" new "/srv/j/alice/data/in""#,
            r#"posix-rename old "/srv/j/alice/data/t" new "/srv/j/alice/data/u""#,
            r#"remove name "/srv/j/carol/data/old""#,
            r#"open "/srv/j/dave/data/d" flags READ mode 0666"#,
            r#"close "/srv/j/dave/data/d" bytes read 4 written 0"#,
        ]);
        assert_eq!(touched_jails(&c, &r), ["alice", "bob", "carol", "dave"]);
        let all = candidates(&c, &r);
        assert_eq!(all.keys().collect::<Vec<_>>(), ["alice", "bob"]);
        let alice: Vec<(&str, &str, &str)> = all["alice"]
            .iter()
            .map(|f| (f.path.as_str(), f.size.as_str(), f.note.as_str()))
            .collect();
        assert_eq!(
            alice,
            [
                ("a.pdf", "12 bytes", ""),
                (
                    "in",
                    "",
                    "moved in; replaced the file of that name if there was one"
                ),
                (
                    "u",
                    "",
                    "renamed from t; replaced the file of that name if there was one"
                ),
            ]
        );
        assert_eq!(all["bob"][0].path, "b.pdf");
        assert_eq!(all["bob"].len(), 1, "the .. path is nobody's");
        let text = format!("{:?}", all["alice"]);
        assert!(!text.contains("secret") && !text.contains("bob"), "{text}");
    }

    #[test]
    fn templates_escape_hostile_names() {
        let n = Notifier::load(None).unwrap();
        let files = [NewFile {
            path: "<b>x</b>&\\u{1b}[2J".into(),
            size: "1 byte".into(),
            note: String::new(),
            incomplete: false,
        }];
        let (subject, text, html) = n
            .render("alice\r\nBcc: e@x", "h", "t", &files, false)
            .unwrap();
        assert!(
            !subject.contains('\n') && !subject.contains('\r'),
            "{subject}"
        );
        assert!(text.contains("<b>x</b>&\\u{1b}[2J"), "{text}");
        assert!(html.contains("&lt;b&gt;x&lt;&#x2F;b&gt;&amp;"), "{html}");
        assert!(!html.contains("<b>x"), "{html}");
    }

    #[test]
    fn jailed_sessions_are_their_own() {
        let mut c = config();
        c.admin = Some("adm".into());
        let n = Notifier::load(None).unwrap();
        let mut r = report(&[r#"remove name "/srv/j/alice/data/x""#]);
        r.user = "alice".into();
        n.process(&c, &mut r).unwrap();
        assert!(r.touched_jails.is_empty());
        r.user = "adm".into();
        n.process(&c, &mut r).unwrap();
        assert_eq!(r.touched_jails, ["alice"]);
    }

    #[test]
    fn only_regular_files_reached_without_a_symlink_count() {
        let tmp = std::env::temp_dir().join(format!("sftpctl-newfiles-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        let data = tmp.join("alice/data");
        std::fs::create_dir_all(data.join("sub")).unwrap();
        std::fs::create_dir_all(tmp.join("bob/data")).unwrap();
        std::fs::write(data.join("f"), b"x").unwrap();
        std::fs::write(data.join("sub/g"), b"x").unwrap();
        std::fs::write(tmp.join("bob/data/secret"), b"x").unwrap();
        std::os::unix::fs::symlink(tmp.join("bob/data"), data.join("dirlink")).unwrap();
        std::os::unix::fs::symlink(tmp.join("bob/data/secret"), data.join("filelink")).unwrap();
        let c = Config {
            root: tmp.clone(),
            ..Config::default()
        };
        assert!(plainly_there(&c, "alice", "f"));
        assert!(plainly_there(&c, "alice", "sub/g"));
        for not in [
            "dirlink/secret",
            "filelink",
            "sub",
            "missing",
            "../bob/data/secret",
        ] {
            assert!(!plainly_there(&c, "alice", not), "{not}");
        }
        // A data dir that is a symlink is no data dir.
        std::fs::create_dir_all(tmp.join("carol")).unwrap();
        std::os::unix::fs::symlink(tmp.join("bob/data"), tmp.join("carol/data")).unwrap();
        assert!(!plainly_there(&c, "carol", "secret"));
        std::fs::remove_dir_all(&tmp).unwrap();
    }

    #[test]
    fn the_admins_report_names_the_jails() {
        let t = crate::watch::mail::Templates::load(None).unwrap();
        let out = t.render(&crate::watch::report::example()).unwrap();
        assert!(
            out.text
                .contains("\nJails:    alice, bob (client jails this session touched)\n"),
            "{}",
            out.text
        );
        assert!(out.html.contains("Client jails touched:</b> alice, bob"));
        let mut r = crate::watch::report::example();
        r.touched_jails.clear();
        let out = t.render(&r).unwrap();
        assert!(!out.text.contains("Jails:") && !out.html.contains("jails touched"));
    }

    #[test]
    fn overrides_replace_built_ins_and_bad_ones_fail_early() {
        let dir = std::env::temp_dir().join(format!("sftpctl-nf-tpl-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(SUBJECT), "Files for {{ user }}").unwrap();
        let n = Notifier::load(Some(&dir)).unwrap();
        let (subject, _, _) = n.render("alice", "h", "t", &[], false).unwrap();
        assert_eq!(subject, "Files for alice");
        for bad in ["{{ no_such_variable }}", "{% if %}"] {
            std::fs::write(dir.join(TEXT), bad).unwrap();
            assert!(Notifier::load(Some(&dir)).is_err(), "{bad}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
