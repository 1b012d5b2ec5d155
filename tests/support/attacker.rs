//! A plain local shell account for attack tests: the "other local account" of the threat model.
//! Its name has the sandbox's prefix, so the sandbox's `Drop` removes it (and kills its
//! processes) like every other account it made, also when the test panics.

use std::path::Path;
use std::process::{Command, Output};

use super::{run_with_timeout, show, Sandbox, DEADLINE};

/// An unprivileged account with a shell, no sftpctl group and no home directory.
pub struct LocalAccount {
    pub name: String,
    pub uid: u32,
}

impl Sandbox {
    /// Creates `s<id><suffix>` with `useradd` (own group, /bin/sh, no home): a local user
    /// who is neither jailed nor in the shared group.
    pub fn local_account(&self, suffix: &str) -> LocalAccount {
        let name = self.user(suffix);
        let out = run_with_timeout(
            Command::new("useradd")
                .args(["-M", "-U", "-s", "/bin/sh", "-d", "/nonexistent"])
                .arg(&name),
            b"",
            DEADLINE,
        );
        assert!(out.status.success(), "useradd {name}\n{}", show(&out));
        let uid = super::uid_of(&name);
        LocalAccount { name, uid }
    }
}

impl LocalAccount {
    /// A command that runs `program` as this account (real and effective ids, its own group
    /// only, no supplementary groups), with a clean environment.
    pub fn command(&self, program: impl AsRef<Path>) -> Command {
        let mut cmd = Command::new("setpriv");
        cmd.arg(format!("--reuid={}", self.name))
            .arg(format!("--regid={}", self.name))
            .arg("--init-groups")
            .arg("--")
            .arg(program.as_ref())
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .current_dir("/");
        cmd
    }

    /// Runs `sh -c script` as this account and returns what happened (never panics).
    pub fn sh(&self, script: &str) -> Output {
        run_with_timeout(self.command("/bin/sh").arg("-c").arg(script), b"", DEADLINE)
    }
}
