//! The files sftpctl renders, whole or as fenced blocks: what `init` writes and `doctor`
//! compares with the disk.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::config::{Config, Source, DEFAULT_PATH};
use crate::fenced::{self, Placement};
use crate::host_auth;
use crate::openssh;
use crate::plan::fsops::{self, Meta};
use crate::plan::steps::File;
use crate::policy;
use crate::registry::UserSettings;
use crate::render::Renderer;
use crate::setup::imuxsock::rsyslog_main_file;

/// The files sftpctl renders, whole or as fenced blocks, in the order init writes them.
/// `init` writes them; `doctor` compares them with the disk (drift).
pub struct ManagedFiles {
    /// The drop-in (when the main config includes it), then the main sshd_config when its
    /// fenced blocks differ from what is there.
    pub sshd: Vec<File>,
    /// The PAM file with its pam_umask block; `None` when the PAM file does not exist.
    pub pam: Option<File>,
    pub rsyslog: File,
    /// rsyslog's main config with the block that annotates the system socket (the admin's
    /// sessions log there); `None` when it has no line loading imuxsock with that socket.
    pub rsyslog_main: Option<File>,
    pub logrotate: File,
    pub watch_unit: File,
    pub rsyslog_unit_dropin: File,
    /// `sftpctl-policy.service` and its timer and path units.
    pub policy_units: Vec<File>,
}

impl ManagedFiles {
    pub fn into_vec(self) -> Vec<File> {
        let mut all = self.sshd;
        all.extend(self.pam);
        all.push(self.rsyslog);
        all.extend(self.rsyslog_main);
        all.extend([self.logrotate, self.watch_unit, self.rsyslog_unit_dropin]);
        all.extend(self.policy_units);
        all
    }
}

/// What `init` would write now, for the installed OpenSSH (detected with `sshd -V`).
pub fn managed_files(config: &Config, source: &Source) -> Result<ManagedFiles> {
    let version = openssh::detect_version(&config.sshd.binary)?;
    let render = renderer(config, source, version)?;
    render_files(config, &render, version)
}

/// The renderer, with the admin block's key files computed from the host's own config and
/// the per-client blocks of the users' files as they are on disk.
pub fn renderer(config: &Config, source: &Source, version: openssh::Version) -> Result<Renderer> {
    renderer_with(config, &source.path, version, &BTreeMap::new())
}

/// [`renderer`], with `overrides` in place of those users' files (a plan that has not
/// written them yet).
fn renderer_with(
    config: &Config,
    config_path: &Path,
    version: openssh::Version,
    overrides: &BTreeMap<String, UserSettings>,
) -> Result<Renderer> {
    let render = Renderer::new(config, config_path, &version.to_string())
        .with_user_blocks(&policy::sshd::blocks(config, overrides)?);
    Ok(match &config.admin {
        Some(admin) => render.with_admin_keys_files(&host_auth::admin_block_keys(config, admin)?),
        None => render,
    })
}

/// Only sshd's files (drop-in, main config's fenced blocks), as `init` would write them with
/// `overrides` in place of those users' files.
pub fn sshd_managed_files(
    config: &Config,
    overrides: &BTreeMap<String, UserSettings>,
) -> Result<Vec<File>> {
    let version = openssh::detect_version(&config.sshd.binary)?;
    // sshd's templates do not name the config file (only the units and logrotate's do).
    let render = renderer_with(config, Path::new(DEFAULT_PATH), version, overrides)?;
    sshd_files(config, &render, version)
}

/// What `init` writes with `render`, for OpenSSH `version`.
pub fn render_files(
    config: &Config,
    render: &Renderer,
    version: openssh::Version,
) -> Result<ManagedFiles> {
    Ok(ManagedFiles {
        sshd: sshd_files(config, render, version)?,
        pam: pam_file(config, render)?,
        rsyslog: File {
            path: config.rsyslog.config.clone(),
            content: render.rsyslog()?,
            meta: Some(Meta::root(0o644)),
            topic: Some("rsyslog"),
        },
        rsyslog_main: rsyslog_main_file(config)?,
        logrotate: File {
            path: config.logrotate.config.clone(),
            content: render.logrotate()?,
            meta: Some(Meta::root(0o644)),
            topic: None,
        },
        watch_unit: File {
            path: config.systemd.unit_dir.join("sftpctl-watch.service"),
            content: render.watch_unit()?,
            meta: Some(Meta::root(0o644)),
            topic: Some("systemd"),
        },
        rsyslog_unit_dropin: File {
            path: rsyslog_dropin_dir(config).join("50-sftpctl.conf"),
            content: render.rsyslog_unit_dropin()?,
            meta: Some(Meta::root(0o644)),
            topic: Some("systemd"),
        },
        policy_units: render
            .policy_units()?
            .into_iter()
            .map(|(name, content)| File {
                path: config.systemd.unit_dir.join(name),
                content,
                meta: Some(Meta::root(0o644)),
                topic: Some("systemd"),
            })
            .collect(),
    })
}

/// The drop-in directory of rsyslog's systemd unit.
pub fn rsyslog_dropin_dir(config: &Config) -> PathBuf {
    config
        .systemd
        .unit_dir
        .join(format!("{}.d", config.systemd.rsyslog_unit))
}

/// The main sshd_config (fenced blocks) and the drop-in, in the way this OpenSSH accepts.
fn sshd_files(config: &Config, render: &Renderer, version: openssh::Version) -> Result<Vec<File>> {
    let main_path = &config.sshd.config;
    let (main_bytes, _) = fsops::read_regular(main_path)?.with_context(|| {
        format!(
            "{} does not exist: install openssh-server or set sshd.config",
            main_path.display()
        )
    })?;
    let main = String::from_utf8(main_bytes)
        .with_context(|| format!("{} is not UTF-8 text", main_path.display()))?;
    let included = openssh::includes(&main, &config.sshd.dropin);
    let subsystem_in_dropin = included && version.subsystem_may_repeat();

    let mut files = Vec::new();
    let mut new_main = main.clone();
    if !subsystem_in_dropin {
        new_main = fenced::upsert(
            &new_main,
            "subsystem",
            &render.subsystem()?,
            Placement::Replace {
                line: openssh::is_sftp_subsystem,
                before: openssh::is_match,
            },
        );
    }
    let penalties = render.penalties()?;
    if !included && !penalties.trim().is_empty() {
        // A global keyword: before the first Match, where the first value of it wins.
        new_main = fenced::upsert(
            &new_main,
            "penalties",
            &penalties,
            Placement::Replace {
                line: openssh::is_penalty_exempt_list,
                before: openssh::is_match,
            },
        );
    }
    if included {
        files.push(File {
            path: config.sshd.dropin.clone(),
            content: render.sshd_dropin(subsystem_in_dropin)?,
            meta: Some(Meta::root(0o644)),
            topic: Some("sshd"),
        });
    } else {
        new_main = fenced::upsert(
            &new_main,
            host_auth::MATCH_FENCE,
            &render.match_block()?,
            Placement::End,
        );
    }
    if new_main != main {
        files.push(File {
            path: main_path.clone(),
            content: new_main,
            meta: None,
            topic: Some("sshd"),
        });
    }
    Ok(files)
}

/// The pam_umask block, when the PAM file exists (sftpctl never creates a PAM service).
fn pam_file(config: &Config, render: &Renderer) -> Result<Option<File>> {
    let Some((bytes, _)) = fsops::read_regular(&config.pam.file)? else {
        return Ok(None);
    };
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let new = fenced::upsert(&text, "umask", &render.pam_umask()?, Placement::End);
    Ok(Some(File {
        path: config.pam.file.clone(),
        content: new,
        meta: None,
        topic: Some("sshd"),
    }))
}
