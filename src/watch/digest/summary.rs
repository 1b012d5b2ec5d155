//! The digest's content: the stored reports summed up per client, rendered by the
//! `digest.*` templates (tera; the HTML one auto-escaped), one letter per recipient.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use tera::Tera;

use crate::config::Config;
use crate::display::visible;
use crate::letters::{Letter, To};
use crate::tz::format_local;
use crate::watch::mail::{one_line, Addresses};
use crate::watch::report::human_size;

const SUBJECT: &str = "digest.subject.txt";
const TEXT: &str = "digest.txt";
const HTML: &str = "digest.html";

const BUILT_IN: [(&str, &str); 3] = [
    (
        SUBJECT,
        include_str!("../../../templates/mail/digest.subject.txt"),
    ),
    (TEXT, include_str!("../../../templates/mail/digest.txt")),
    (HTML, include_str!("../../../templates/mail/digest.html")),
];

/// Names listed per client and kind; the rest is counted ("… and N more").
const NAMES_PER_LIST: usize = 20;

/// A stored report as the digest reads it: every field optional, so records of older and
/// newer versions are read alike.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Stored {
    user: String,
    host: String,
    client: String,
    start: Option<i64>,
    end: i64,
    start_text: String,
    end_text: String,
    complete: bool,
    ending_text: String,
    uploads: Vec<StoredTransfer>,
    downloads: Vec<StoredTransfer>,
    deletes: Vec<crate::watch::report::Named>,
    renames: Vec<StoredMove>,
    failures: Vec<StoredFailure>,
    totals: StoredTotals,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct StoredTransfer {
    path: String,
    bytes: u64,
    incomplete: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct StoredMove {
    old: String,
    new: String,
    /// "REPLACED x if it existed", "AMBIGUOUS: …", or empty.
    note: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct StoredFailure {
    action: String,
    path: String,
    status: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct StoredTotals {
    uploads: u64,
    upload_bytes: u64,
    downloads: u64,
    download_bytes: u64,
    deletes: u64,
    renames: u64,
    failures: u64,
    incomplete_transfers: u64,
}

/// Logins of one client over the digest's period (accepted and failed SSH logins), for the
/// digest's "Logins" section. The section shows only when there are rows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct LoginSummary {
    pub user: String,
    pub accepted: u64,
    pub failed: u64,
    /// The source address of the last login in the span.
    pub sources: String,
}

/// Login counts of `users` between `since` (else a day before `until`) and `until`, from
/// the rotations of the log the trusted feed also writes (sshd's login lines, with the same
/// credentials rule as `report --logins`). A log that cannot be read leaves the section out
/// and says so on stderr: the digest itself still goes.
fn logins(config: &Config, users: &[String], since: Option<i64>, until: i64) -> Vec<LoginSummary> {
    let from = since.unwrap_or(until - 86_400);
    let found = match crate::history::logins::read_rotated_since(config, until, from) {
        Ok(found) => found,
        Err(e) => {
            eprintln!("sftpctl watch: the digest has no logins section: {e:#}");
            return Vec::new();
        }
    };
    let summary = crate::logins::summary::summarise(&found.logins, from, until);
    users
        .iter()
        .filter_map(|user| {
            let l = summary.users.get(user)?;
            Some(LoginSummary {
                user: user.clone(),
                accepted: l.accepted,
                failed: l.failed,
                sources: l.last_source.clone().unwrap_or_default(),
            })
        })
        .collect()
}

/// One entry of a list: a name and what is known of it (size, status).
#[derive(Debug, Clone, Serialize, PartialEq)]
struct Item {
    name: String,
    detail: String,
    incomplete: bool,
}

/// One kind of action of one client: the exact count, the bytes when they are known,
/// the first names.
#[derive(Debug, Default, Clone, Serialize, PartialEq)]
struct Kind {
    /// `uploads`, `downloads`, `deletes`, `renames`, `failures`.
    key: &'static str,
    /// `Uploaded`, …: the heading.
    label: &'static str,
    count: u64,
    size: String,
    items: Vec<Item>,
    more: u64,
}

impl Kind {
    fn push(&mut self, item: Item) {
        if self.items.len() < NAMES_PER_LIST {
            self.items.push(item);
        }
    }

    /// `count` is exact, the lists of a report may be cut: the rest is "more".
    fn close(mut self, key: &'static str, label: &'static str, bytes: Option<u64>) -> Kind {
        self.more = self.count.saturating_sub(self.items.len() as u64);
        self.size = bytes.map(human_size).unwrap_or_default();
        self.key = key;
        self.label = label;
        self
    }
}

#[derive(Debug, Clone, Serialize, PartialEq)]
struct SessionLine {
    start_text: String,
    end_text: String,
    client: String,
    incomplete: bool,
    ending_text: String,
}

#[derive(Debug, Default, Clone, Serialize, PartialEq)]
struct Client {
    user: String,
    sessions: u64,
    incomplete_sessions: u64,
    session_list: Vec<SessionLine>,
    sessions_more: u64,
    /// Uploaded, downloaded, deleted, renamed, failed, in this order, the empty ones too.
    kinds: Vec<Kind>,
    #[serde(skip)]
    uploads: Kind,
    #[serde(skip)]
    downloads: Kind,
    #[serde(skip)]
    deletes: Kind,
    #[serde(skip)]
    renames: Kind,
    #[serde(skip)]
    failures: Kind,
    #[serde(skip)]
    upload_bytes: u64,
    #[serde(skip)]
    download_bytes: u64,
}

/// What the templates get (docs/watch.md, "Digest mode").
#[derive(Debug, Serialize)]
struct View {
    /// The client whose own digest this is; empty in the admins' digest.
    for_client: String,
    /// The local date of the digest time, `2026-12-03`.
    date: String,
    since_text: String,
    until_text: String,
    sessions: u64,
    incomplete_sessions: u64,
    uploads: u64,
    upload_size: String,
    downloads: u64,
    download_size: String,
    deletes: u64,
    renames: u64,
    failures: u64,
    clients: Vec<Client>,
    logins: Vec<LoginSummary>,
}

pub struct Templates {
    tera: Tera,
}

impl Templates {
    /// The built-in `digest.*` templates, each replaced by a same-named file in `dir`.
    pub fn load(dir: Option<&Path>) -> Result<Templates> {
        let tera = crate::watch::mail::load_tera(dir, &BUILT_IN, "digest")?;
        let templates = Templates { tera };
        // An override that uses an unknown variable fails at start, not on digest day.
        templates
            .render(&example())
            .map_err(|e| crate::error::usage(format!("{e:#}")))?;
        Ok(templates)
    }

    fn render(&self, context: &View) -> Result<(String, String, String)> {
        let context =
            tera::Context::from_serialize(context).context("cannot serialize a digest")?;
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
}

fn shown(s: &str) -> String {
    visible(s).into_owned()
}

/// Sums the records up per client (sorted by name; sessions by their start). `remote`: on
/// a collector, the hosts that are not this one: their clients are `user@host` (two hosts may
/// each have an alice).
fn clients(mut records: Vec<Stored>, remote: &dyn Fn(&str) -> bool) -> Vec<Client> {
    records.sort_by_key(|r| (r.start.unwrap_or(r.end), r.end));
    let mut by_user: BTreeMap<String, Client> = BTreeMap::new();
    for r in records {
        let key = match remote(&r.host) {
            true => crate::fleet::accounts::remote_client(&r.user, &r.host),
            false => r.user.clone(),
        };
        let c = by_user.entry(key.clone()).or_insert_with(|| Client {
            user: shown(&key),
            ..Client::default()
        });
        c.sessions += 1;
        let incomplete = !r.complete || r.totals.incomplete_transfers > 0;
        c.incomplete_sessions += u64::from(incomplete);
        if c.session_list.len() < NAMES_PER_LIST {
            c.session_list.push(SessionLine {
                start_text: shown(&r.start_text),
                end_text: shown(&r.end_text),
                client: shown(&r.client),
                incomplete,
                ending_text: shown(&r.ending_text),
            });
        }
        let t = &r.totals;
        c.uploads.count += t.uploads;
        c.upload_bytes += t.upload_bytes;
        c.downloads.count += t.downloads;
        c.download_bytes += t.download_bytes;
        c.deletes.count += t.deletes;
        c.renames.count += t.renames;
        c.failures.count += t.failures;
        for (kind, list) in [
            (&mut c.uploads, &r.uploads),
            (&mut c.downloads, &r.downloads),
        ] {
            for x in list {
                kind.push(Item {
                    name: shown(&x.path),
                    detail: human_size(x.bytes),
                    incomplete: x.incomplete,
                });
            }
        }
        for p in &r.deletes {
            c.deletes.push(Item {
                name: shown(p),
                detail: String::new(),
                incomplete: false,
            });
        }
        for m in &r.renames {
            c.renames.push(Item {
                name: format!("{} → {}", shown(&m.old), shown(&m.new)),
                detail: shown(&m.note),
                incomplete: false,
            });
        }
        for f in &r.failures {
            c.failures.push(Item {
                name: format!(
                    "{} {}: {}",
                    shown(&f.action),
                    shown(&f.path),
                    shown(&f.status)
                ),
                detail: String::new(),
                incomplete: false,
            });
        }
    }
    by_user
        .into_values()
        .map(|mut c| {
            c.sessions_more = c.sessions.saturating_sub(c.session_list.len() as u64);
            let take = std::mem::take;
            c.kinds = vec![
                take(&mut c.uploads).close("uploads", "Uploaded", Some(c.upload_bytes)),
                take(&mut c.downloads).close("downloads", "Downloaded", Some(c.download_bytes)),
                take(&mut c.deletes).close("deletes", "Deleted", None),
                take(&mut c.renames).close("renames", "Renamed", None),
                take(&mut c.failures).close("failures", "Failed", None),
            ];
            c
        })
        .collect()
}

fn context(
    for_client: &str,
    clients: Vec<Client>,
    logins: Vec<LoginSummary>,
    since: Option<i64>,
    due: i64,
) -> View {
    let sum = |f: fn(&Client) -> u64| clients.iter().map(f).sum::<u64>();
    let count = |key: &str| {
        clients
            .iter()
            .flat_map(|c| &c.kinds)
            .filter(|k| k.key == key)
            .map(|k| k.count)
            .sum::<u64>()
    };
    let until_text = format_local(due);
    View {
        for_client: shown(for_client),
        date: until_text.split(' ').next().unwrap_or_default().to_string(),
        since_text: since.map(format_local).unwrap_or_default(),
        sessions: sum(|c| c.sessions),
        incomplete_sessions: sum(|c| c.incomplete_sessions),
        uploads: count("uploads"),
        upload_size: human_size(sum(|c| c.upload_bytes)),
        downloads: count("downloads"),
        download_size: human_size(sum(|c| c.download_bytes)),
        deletes: count("deletes"),
        renames: count("renames"),
        failures: count("failures"),
        until_text,
        clients,
        logins,
    }
}

/// The letters of one digest: the admins' (every client), and each client's own when it
/// has an address (its sessions and logins only). None for a period without sessions.
pub fn letters(
    templates: &Templates,
    addresses: &Addresses,
    config: &Config,
    since: Option<i64>,
    due: i64,
    records: Vec<Stored>,
) -> Result<Vec<Letter>> {
    let local = config
        .collect
        .enabled
        .then(crate::fleet::accounts::local_host_names);
    let remote = |host: &str| {
        local
            .as_ref()
            .is_some_and(|names| !host.is_empty() && !names.iter().any(|n| n == host))
    };
    let all = clients(records, &remote);
    if all.is_empty() {
        return Ok(Vec::new());
    }
    let users: Vec<String> = all.iter().map(|c| c.user.clone()).collect();
    let all_logins = logins(config, &users, since, due);
    let mut out = Vec::new();
    let letter = |id: String, user: &str, to: To, ctx: &View| -> Result<Letter> {
        let (subject, text, html) = templates.render(ctx)?;
        Ok(Letter {
            id,
            kind: "digest".into(),
            user: user.to_string(),
            to,
            subject,
            text,
            html: Some(html),
        })
    };
    for c in &all {
        if addresses.client(&c.user).is_none() {
            continue;
        }
        let own: Vec<LoginSummary> = all_logins
            .iter()
            .filter(|l| l.user == c.user)
            .cloned()
            .collect();
        let ctx = context(&c.user, vec![c.clone()], own, since, due);
        out.push(letter(
            format!("digest-{due}-client-{}", c.user),
            &c.user,
            To::Client,
            &ctx,
        )?);
    }
    if !addresses.admins().is_empty() {
        let ctx = context("", all, all_logins, since, due);
        out.insert(
            0,
            letter(format!("digest-{due}-admins"), "", To::Admins, &ctx)?,
        );
    }
    Ok(out)
}

/// A digest with something in every list: renders every branch of a template.
fn example() -> View {
    let transfer = |p: &str| StoredTransfer {
        path: p.into(),
        bytes: 1234,
        incomplete: true,
    };
    let record = Stored {
        user: "alice".into(),
        host: String::new(),
        client: "203.0.113.7".into(),
        start: Some(0),
        end: 60,
        start_text: "2026-01-01 00:00:00 +00:00 (UTC)".into(),
        end_text: "2026-01-01 00:01:00 +00:00 (UTC)".into(),
        complete: false,
        ending_text: "no close line arrived before the idle timeout".into(),
        uploads: vec![transfer("u")],
        downloads: vec![transfer("d")],
        deletes: vec!["r".into()],
        renames: vec![StoredMove {
            old: "a".into(),
            new: "b".into(),
            note: "REPLACED b if it existed".into(),
        }],
        failures: vec![StoredFailure {
            action: "remove".into(),
            path: "/x".into(),
            status: "Permission denied".into(),
        }],
        totals: StoredTotals {
            uploads: 2,
            upload_bytes: 1234,
            downloads: 2,
            download_bytes: 1234,
            deletes: 2,
            renames: 2,
            failures: 2,
            incomplete_transfers: 1,
        },
    };
    let logins = vec![LoginSummary {
        user: "alice".into(),
        accepted: 1,
        failed: 2,
        sources: "203.0.113.7".into(),
    }];
    let mut many = clients(vec![record], &|_| false);
    many[0].sessions_more = 1;
    context("alice", many, logins, Some(0), 86_400)
}

#[cfg(test)]
pub(super) fn stored(json: &str) -> Stored {
    serde_json::from_str(json).unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_collectors_clients_of_two_hosts_stay_apart() {
        let r = |host: &str| {
            stored(&format!(
                r#"{{"user": "alice", "host": "{host}", "end": 60}}"#
            ))
        };
        let remote = |h: &str| h != "collector";
        let all = clients(
            vec![r("sftp-a"), r("sftp-b"), r("sftp-a"), r("collector")],
            &remote,
        );
        let names: Vec<(&str, u64)> = all.iter().map(|c| (c.user.as_str(), c.sessions)).collect();
        assert_eq!(
            names,
            [("alice", 1), ("alice@sftp-a", 2), ("alice@sftp-b", 1)]
        );
        let one = clients(vec![r("sftp-a"), r("sftp-b")], &|_| false);
        assert_eq!(
            one.len(),
            1,
            "a host that is not a collector: by user, as before"
        );
    }

    #[test]
    fn the_example_renders_every_part() {
        let t = Templates::load(None).unwrap();
        let (subject, text, html) = t.render(&example()).unwrap();
        assert!(subject.starts_with("SFTP digest for alice"), "{subject}");
        for part in [&text, &html] {
            for needle in [
                "u",
                "… and 1 more",
                "Permission denied",
                "Logins",
                "203.0.113.7",
            ] {
                let (part, want) = (part.to_lowercase(), needle.to_lowercase());
                assert!(part.contains(&want), "{needle:?} missing:\n{part}");
            }
        }
    }
}
