//! The validators and service activations that follow a change of the managed files, shared
//! by `init` and `doctor --fix`.

use std::path::Path;

use anyhow::Result;

use crate::config::Config;
use crate::host_auth::AuthGuard;
use crate::log_links::RefreshLinksStep;
use crate::plan::steps::{Activate, Validate};
use crate::plan::Plan;

/// The validators (run over the candidate files before any reload) and the service
/// activations that follow a change of the managed files; each activation runs only when a
/// file of its topic changed. The authentication guard takes the host's view of the probed
/// accounts now, before any step runs, and compares after `sshd -t` passed.
pub fn validate_and_activate(plan: &mut Plan, config: &Config, command: &str) -> Result<()> {
    plan.push(Validate {
        what: "sshd".into(),
        argv: argv(&[
            &config.sshd.binary,
            Path::new("-t"),
            Path::new("-f"),
            &config.sshd.config,
        ]),
    });
    plan.push(AuthGuard::capture(config, command)?);
    if config.rsyslog.main_config.exists() {
        plan.push(Validate {
            what: "rsyslog".into(),
            argv: argv(&[
                &config.rsyslog.binary,
                Path::new("-N1"),
                Path::new("-f"),
                &config.rsyslog.main_config,
            ]),
        });
    }
    plan.push(Activate {
        what: "reload sshd".into(),
        key: "sshd.reload",
        argv: config.sshd.reload.clone(),
        topic: Some("sshd"),
    });
    plan.push(Activate {
        what: "reload systemd units".into(),
        key: "systemd.daemon_reload",
        argv: config.systemd.daemon_reload.clone(),
        topic: Some("systemd"),
    });
    plan.push(Activate {
        what: "restart rsyslog".into(),
        key: "rsyslog.restart",
        argv: config.rsyslog.restart.clone(),
        topic: Some("rsyslog"),
    });
    plan.push(RefreshLinksStep {
        config: config.clone(),
        topic: Some("rsyslog"),
    });
    plan.push(Activate {
        what: "enable and start the watcher".into(),
        key: "systemd.enable_watch",
        argv: config.systemd.enable_watch.clone(),
        topic: Some("systemd"),
    });
    Ok(())
}

fn argv(parts: &[&Path]) -> Vec<String> {
    parts.iter().map(|p| p.display().to_string()).collect()
}
