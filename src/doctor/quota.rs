//! Quota state (docs/policy.md, "Quota"): for each client with a quota, whether its count
//! is fresh, and whether sshd's effective settings for it (`sshd -T -C user=NAME`) refuse
//! uploads exactly when the count says the quota is full. `--fix` renders sshd's blocks
//! again from the counts (validated with `sshd -t` before the reload, as every render).

use anyhow::Result;

use crate::doctor::{Check, Ctx};
use crate::plan::{Journal, Plan, Step};
use crate::policy::quota;
use crate::policy::values::Access;
use crate::registry;

const AREA: &str = "quota";

pub fn checks(ctx: &mut Ctx) -> Vec<Check> {
    let config = ctx.config;
    let with_quota: Vec<(String, registry::UserSettings)> = ctx
        .users
        .iter()
        .filter_map(|n| {
            registry::load(config, n)
                .ok()
                .filter(|s| s.quota.is_some())
                .map(|s| (n.clone(), s))
        })
        .collect();
    if with_quota.is_empty() {
        return Vec::new();
    }
    if !ctx.is_root {
        return vec![Check::warn(
            AREA,
            "quota",
            "not checked: the counts and sshd -T need root",
            "run sftpctl doctor as root",
        )];
    }
    let now = crate::watch::time::now_unix();
    let stale_after = i64::from(config.policy.rescan_minutes) * 60 * 2 + 300;
    let mut problems = Vec::new();
    let mut repair_offered = false;
    for (name, settings) in &with_quota {
        let label = format!("quota {name}");
        match quota::state::load(config, name) {
            Ok(None) => problems.push(Check::warn(
                AREA,
                label.clone(),
                "not counted yet",
                "run sftpctl policy run (the policy timer runs it every few minutes)",
            )),
            Err(e) => problems.push(Check::fail(
                AREA,
                label.clone(),
                format!("{e:#}"),
                "remove the file; sftpctl policy run counts again",
            )),
            Ok(Some(s)) if now - s.scanned_at > stale_after => problems.push(Check::warn(
                AREA,
                label.clone(),
                format!(
                    "the count is {} minutes old (policy.rescan_minutes = {})",
                    (now - s.scanned_at) / 60,
                    config.policy.rescan_minutes
                ),
                "check that sftpctl-policy.timer (or the watcher, without systemd) runs sftpctl policy run",
            )),
            Ok(Some(_)) => {}
        }
        let full = quota::is_full_with(config, name, settings);
        let refused = match crate::openssh::sshd_t(
            &config.sshd.binary,
            &config.sshd.config,
            Some(&crate::openssh::match_spec(name)),
        ) {
            Ok(text) => uploads_refused(&forcecommand(&text)),
            Err(e) => {
                problems.push(Check::warn(
                    AREA,
                    label.clone(),
                    e,
                    "see the sshd checks above",
                ));
                continue;
            }
        };
        let may_upload = matches!(settings.access, Access::ReadWrite | Access::UploadOnly);
        let wrong = if full && !refused {
            Some("the quota is full but sshd still lets the client upload")
        } else if !full && refused && may_upload {
            Some("the quota is not full but sshd refuses the client's uploads")
        } else {
            None
        };
        if let Some(what) = wrong {
            let mut check = Check::fail(
                AREA,
                label,
                format!(
                    "{what} ({})",
                    quota::summary(config, name, settings).unwrap_or_default()
                ),
                "render sshd's blocks again from the counts",
            );
            // One render covers every client.
            if !repair_offered {
                check = check.repair(Render {
                    config: config.clone(),
                });
                repair_offered = true;
            }
            problems.push(check);
        }
    }
    crate::doctor::collapse(problems, || {
        Check::ok(
            AREA,
            "quota",
            format!(
                "{} client(s) with a quota: counts fresh, sshd refuses uploads exactly for the full ones",
                with_quota.len()
            ),
        )
    })
}

/// `forcecommand …` of `sshd -T`'s output ("" when none).
fn forcecommand(sshd_t: &str) -> String {
    sshd_t
        .lines()
        .find_map(|l| l.strip_prefix("forcecommand "))
        .unwrap_or("")
        .to_string()
}

/// Whether an `internal-sftp` command line refuses writes: `-R` (read-only), `write` in a
/// `-P` deny list, or a `-p` allow list without it.
pub fn uploads_refused(command: &str) -> bool {
    let words: Vec<&str> = command.split_whitespace().collect();
    let list = |flag: &str| -> Option<Vec<&str>> {
        words.iter().enumerate().find_map(|(i, w)| {
            let rest = w.strip_prefix(flag)?;
            let value = if rest.is_empty() {
                words.get(i + 1).copied()?
            } else {
                rest
            };
            Some(value.split(',').collect())
        })
    };
    words.contains(&"-R")
        || list("-P").is_some_and(|l| l.contains(&"write"))
        || list("-p").is_some_and(|l| !l.contains(&"write"))
}

/// `--fix`: sshd's blocks rendered again (a plan of its own: `sshd -t` validates, a failure
/// reverts it).
struct Render {
    config: crate::config::Config,
}

impl Render {
    fn plan(&self) -> Result<Plan> {
        let mut plan = Plan::new();
        crate::policy::sshd::steps(&mut plan, &self.config, &Default::default())?;
        Ok(plan)
    }
}

impl Step for Render {
    fn describe(&self) -> String {
        "render sshd's per-user blocks again from the quota counts".into()
    }
    fn is_satisfied(&self) -> Result<bool> {
        Ok(self.plan()?.print_dry_run(&mut std::io::sink())? == 0)
    }
    fn apply(&self, _journal: &mut Journal) -> Result<()> {
        crate::policy::sshd::resync(&self.config, &mut std::io::sink())?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_request_lists() {
        assert!(!uploads_refused("internal-sftp -l INFO -u 0007"));
        assert!(uploads_refused("internal-sftp -l INFO -u 0007 -R"));
        assert!(uploads_refused(
            "internal-sftp -l INFO -P write,mkdir,symlink -u 0007"
        ));
        assert!(uploads_refused("internal-sftp -Pmkdir,write"));
        assert!(!uploads_refused("internal-sftp -P remove,rmdir"));
        assert!(uploads_refused("internal-sftp -p open,read,close"));
        assert!(!uploads_refused("internal-sftp -p open,read,write,close"));
        assert_eq!(
            forcecommand("port 22\nforcecommand internal-sftp -R\n"),
            "internal-sftp -R"
        );
    }
}
