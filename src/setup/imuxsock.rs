//! rsyslog's main config: the system socket's line asks for the senders' credentials.

use anyhow::Result;

use crate::config::Config;
use crate::fenced::{self, Placement};
use crate::plan::fsops;
use crate::plan::steps::File;

/// The fenced block of rsyslog's main config: the line that loads imuxsock (where the system
/// socket's options must be set: a drop-in cannot change them, rsyslog refuses a second
/// `module(load="imuxsock")` and, after one, the legacy `$SystemLog…` directives) is kept as a
/// comment and replaced by the same line asking for the senders' credentials.
pub(super) fn rsyslog_main_file(config: &Config) -> Result<Option<File>> {
    let Some((bytes, _)) = fsops::read_regular(&config.rsyslog.main_config)? else {
        return Ok(None);
    };
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let Some(body) = imuxsock_block(&text) else {
        return Ok(None);
    };
    let new = fenced::upsert(
        &text,
        IMUXSOCK_FENCE,
        &body,
        Placement::Replace {
            line: loads_imuxsock,
            before: |_| false,
        },
    );
    Ok(Some(File {
        path: config.rsyslog.main_config.clone(),
        content: new,
        meta: None,
        topic: Some("rsyslog"),
    }))
}

const IMUXSOCK_FENCE: &str = "imuxsock";
/// Added to the system socket's line.
const TRUSTED_PARAMS: [&str; 2] = ["SysSock.Annotate", "SysSock.ParseTrusted"];
/// Removed from it: on systemd hosts journald relays /dev/log and gives its own pid for a
/// sender that has exited, which `UsePIDFromSystem` would write into the tag; the watcher
/// reads the kernel's pid from the credentials instead.
const DROPPED_PARAMS: [&str; 1] = ["SysSock.UsePIDFromSystem"];

/// A one-line `module(load="imuxsock" …)` with the system socket on, or `$ModLoad imuxsock`.
fn loads_imuxsock(line: &str) -> bool {
    let l = line.trim().to_ascii_lowercase();
    let module = l.starts_with("module(")
        && l.replace(' ', "").contains("load=\"imuxsock\"")
        && l.contains(')')
        && !l.replace(' ', "").contains("syssock.use=\"off\"");
    let legacy = l.split_whitespace().collect::<Vec<_>>() == ["$modload", "imuxsock"];
    module || legacy
}

/// The block's body, from the original line (found in the file, or kept as `# was:` in an
/// existing block).
fn imuxsock_block(text: &str) -> Option<String> {
    let original = match fenced::recorded(text, IMUXSOCK_FENCE) {
        Some(was) => was,
        None => text.lines().find(|l| loads_imuxsock(l))?.to_string(),
    };
    if !loads_imuxsock(&original) {
        return None;
    }
    let why = "# sftpctl: the system socket gives every line its sender's kernel credentials:\n\
               # the watcher reports the admin's SFTP sessions only from lines that carry them.";
    let trimmed = original.trim();
    if trimmed.starts_with('$') {
        return Some(format!(
            "{why}\n{trimmed}\n$SystemLogSocketAnnotate on\n$SystemLogParseTrusted on\n"
        ));
    }
    // `module(PARAMS) # comment` → `module(PARAMS without ours + ours)`.
    let close = trimmed.find(')')?;
    let params = &trimmed["module(".len()..close];
    let kept: Vec<&str> = split_params(params)
        .into_iter()
        .filter(|p| {
            let name = p.split('=').next().unwrap_or("").trim();
            !TRUSTED_PARAMS
                .iter()
                .chain(&DROPPED_PARAMS)
                .any(|t| t.eq_ignore_ascii_case(name))
        })
        .collect();
    let ours: Vec<String> = TRUSTED_PARAMS
        .iter()
        .map(|p| format!("{p}=\"on\""))
        .collect();
    Some(format!(
        "{why}\nmodule({} {})\n",
        kept.join(" "),
        ours.join(" ")
    ))
}

/// `a="x y" b="z"` → [`a="x y"`, `b="z"`] (values are quoted, spaces separate).
fn split_params(params: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut start, mut quoted) = (None, false);
    for (i, c) in params.char_indices() {
        match c {
            '"' => quoted = !quoted,
            c if c.is_whitespace() && !quoted => {
                if let Some(s) = start.take() {
                    out.push(&params[s..i]);
                }
                continue;
            }
            _ => {}
        }
        start.get_or_insert(i);
    }
    if let Some(s) = start {
        out.push(&params[s..]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_imuxsock_line_gets_the_credential_options() {
        let debian = "#### MODULES ####\n\nmodule(load=\"imuxsock\") # provides support for local system logging\nmodule(load=\"imklog\")\n";
        let body = imuxsock_block(debian).unwrap();
        assert!(
            body.contains(
                "\nmodule(load=\"imuxsock\" SysSock.Annotate=\"on\" SysSock.ParseTrusted=\"on\")\n"
            ),
            "{body}"
        );
        let once = fenced::upsert(
            debian,
            IMUXSOCK_FENCE,
            &body,
            Placement::Replace {
                line: loads_imuxsock,
                before: |_| false,
            },
        );
        assert!(
            once.contains("# was: module(load=\"imuxsock\") # provides"),
            "{once}"
        );
        assert_eq!(once.matches("load=\"imuxsock\"").count(), 2, "{once}");
        // a second run changes nothing
        let body2 = imuxsock_block(&once).unwrap();
        assert_eq!(body2, body);
        let twice = fenced::upsert(
            &once,
            IMUXSOCK_FENCE,
            &body2,
            Placement::Replace {
                line: loads_imuxsock,
                before: |_| false,
            },
        );
        assert_eq!(twice, once);
        // other parameters stay, ours replace the admin's
        let b = imuxsock_block(
            "module(load=\"imuxsock\" SysSock.Name=\"/x y/log\" SysSock.Annotate=\"off\" SysSock.UsePIDFromSystem=\"on\")\n",
        )
        .unwrap();
        assert!(
            b.contains(
                "module(load=\"imuxsock\" SysSock.Name=\"/x y/log\" SysSock.Annotate=\"on\""
            ),
            "{b}"
        );
        assert!(!b.contains("\"off\""), "{b}");
        assert!(!b.contains("UsePIDFromSystem"), "{b}");
        // no system socket (RHEL: the journal), or legacy syntax
        assert_eq!(
            imuxsock_block("module(load=\"imuxsock\" SysSock.Use=\"off\")\n"),
            None
        );
        assert!(imuxsock_block("$ModLoad imuxsock\n")
            .unwrap()
            .contains("$SystemLogParseTrusted on"));
    }
}
