//! `KEY=VALUE` settings as `sftpctl set` and `add-user` take them: parsed and validated
//! all before anything changes.

use anyhow::{bail, Result};

use super::values::{Access, Day, Network, Retention, Size};
use crate::config::MailMode;
use crate::registry::UserSettings;

/// The keys `set` takes, in the order `--help` and errors list them.
pub const KEYS: [&str; 9] = [
    "email",
    "access",
    "allow_from",
    "expires",
    "retention",
    "quota",
    "notify_client",
    "notify_new_files",
    "mail_mode",
];

/// One validated `KEY=VALUE`.
#[derive(Debug, Clone, PartialEq)]
pub enum Assignment {
    Email(Option<String>),
    Access(Access),
    AllowFrom(Vec<Network>),
    Expires(Option<Day>),
    /// `None`: back to the config's default.
    Retention(Option<Retention>),
    Quota(Option<Size>),
    NotifyClient(Option<bool>),
    NotifyNewFiles(Option<bool>),
    /// `None`: back to the config's `mail.mode`.
    MailMode(Option<MailMode>),
}

/// Parses `KEY=VALUE` words; one bad word fails the whole list (nothing is changed).
pub fn parse_all(words: &[String]) -> Result<Vec<Assignment>> {
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::with_capacity(words.len());
    for word in words {
        crate::names::check_single_line("setting", word)?;
        let Some((key, value)) = word.split_once('=') else {
            bail!("{word:?} is not KEY=VALUE; keys: {}", KEYS.join(", "));
        };
        if !seen.insert(key.to_string()) {
            bail!("{key} is given twice");
        }
        out.push(parse(key, value)?);
    }
    Ok(out)
}

pub fn parse(key: &str, value: &str) -> Result<Assignment> {
    Ok(match key {
        "email" if value.is_empty() => Assignment::Email(None),
        "email" => {
            crate::registry::check_email(value)?;
            Assignment::Email(Some(value.to_string()))
        }
        "access" => Assignment::Access(value.parse()?),
        "allow_from" => Assignment::AllowFrom(parse_networks(value)?),
        "expires" if value == "never" => Assignment::Expires(None),
        "expires" => Assignment::Expires(Some(value.parse()?)),
        "retention" if value == "default" => Assignment::Retention(None),
        "retention" => Assignment::Retention(Some(value.parse()?)),
        "quota" if value == "none" => Assignment::Quota(None),
        "quota" => Assignment::Quota(Some(value.parse()?)),
        "notify_client" => Assignment::NotifyClient(tri_state(key, value)?),
        "notify_new_files" => Assignment::NotifyNewFiles(tri_state(key, value)?),
        "mail_mode" => Assignment::MailMode(match value {
            "session" => Some(MailMode::Session),
            "digest" => Some(MailMode::Digest),
            "default" => None,
            _ => bail!("mail_mode: {value:?} must be session, digest or default"),
        }),
        _ => bail!("unknown setting {key:?}; keys: {}", KEYS.join(", ")),
    })
}

/// `true`, `false`, or `default` (the config's).
fn tri_state(key: &str, value: &str) -> Result<Option<bool>> {
    Ok(match value {
        "true" => Some(true),
        "false" => Some(false),
        "default" => None,
        _ => bail!("{key}: {value:?} must be true, false or default"),
    })
}

/// `203.0.113.0/24,2001:db8::/32`; "" = from anywhere.
pub fn parse_networks(value: &str) -> Result<Vec<Network>> {
    if value.is_empty() {
        return Ok(Vec::new());
    }
    let mut nets: Vec<Network> = value
        .split(',')
        .map(|s| s.trim().parse())
        .collect::<Result<_>>()?;
    nets.sort();
    nets.dedup();
    Ok(nets)
}

impl Assignment {
    pub fn apply(&self, s: &mut UserSettings) {
        match self.clone() {
            Assignment::Email(v) => s.email = v,
            Assignment::Access(v) => s.access = v,
            Assignment::AllowFrom(v) => s.allow_from = v,
            Assignment::Expires(v) => s.expires = v,
            Assignment::Retention(v) => s.retention = v,
            Assignment::Quota(v) => s.quota = v,
            Assignment::NotifyClient(v) => s.notify_client = v,
            Assignment::NotifyNewFiles(v) => s.notify_new_files = v,
            Assignment::MailMode(v) => s.mail_mode = v,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(w: &[&str]) -> Vec<String> {
        w.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn parses_every_key() {
        let all = parse_all(&words(&[
            "email=a@b.example",
            "access=upload-only",
            "allow_from=203.0.113.0/24, 2001:db8::/32",
            "expires=2027-03-31",
            "retention=90d",
            "quota=5G",
            "notify_client=true",
            "notify_new_files=true",
            "mail_mode=digest",
        ]))
        .unwrap();
        let mut s = UserSettings::default();
        for a in &all {
            a.apply(&mut s);
        }
        assert_eq!(s.access, Access::UploadOnly);
        assert_eq!(s.allow_from.len(), 2);
        assert_eq!(s.expires.unwrap().to_string(), "2027-03-31");
        assert_eq!(s.retention, Some(Retention::Days(90)));
        assert_eq!(s.quota.unwrap().bytes, 5 << 30);
        assert_eq!(s.notify_client, Some(true));
        assert_eq!(s.notify_new_files, Some(true));
        assert_eq!(s.mail_mode, Some(MailMode::Digest));
        let text = toml::to_string(&s).unwrap();
        let back: UserSettings = toml::from_str(&text).unwrap();
        assert_eq!(back, s, "{text}");
    }

    #[test]
    fn clears() {
        let all = parse_all(&words(&[
            "email=",
            "allow_from=",
            "expires=never",
            "retention=default",
            "quota=none",
            "notify_client=default",
            "notify_new_files=default",
            "mail_mode=default",
        ]))
        .unwrap();
        let mut s = UserSettings::default();
        for a in &all {
            a.apply(&mut s);
        }
        assert_eq!(s, UserSettings::default());
    }

    #[test]
    fn refuses_bad_words() {
        for bad in [
            &["access"][..],
            &["colour=red"],
            &["access=rw", "access=read-only"],
            &["allow_from=10.0.0.1/8"],
            &["allow_from=10.0.0.0/8\nMatch all"],
            &["expires=2027-13-01"],
            &["quota=5 G"],
            &["retention=forever"],
            &["notify_client=yes"],
            &["notify_new_files=1"],
            &["mail_mode=daily"],
            &["email=a@b\nBcc: c@d"],
        ] {
            assert!(parse_all(&words(bad)).is_err(), "accepted {bad:?}");
        }
    }
}
