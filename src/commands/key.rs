//! `sftpctl key add|remove|list NAME`: the authorized keys of a jailed user or of the admin,
//! in `sshd.authorized_keys_dir/NAME` (the admin's other key files are the host's).

use std::path::PathBuf;

use anyhow::{Context, Result};

use crate::accounts::{require_key_owner, KeyOwner};
use crate::cli::KeyCommand;
use crate::commands::finish;
use crate::config::Config;
use crate::error::{require_root, usage};
use crate::keys::{self, PublicKey};
use crate::plan::fsops::{self, Meta};
use crate::plan::steps::{Dir, File};
use crate::plan::Plan;

pub fn run(config: &Config, command: &KeyCommand) -> Result<()> {
    match command {
        KeyCommand::Add {
            name,
            files,
            dry_run,
        } => {
            require_root("sftpctl key add")?;
            require_key_owner(config, name)?;
            let mut keys = current(config, name)?;
            for file in files {
                for key in keys::read_key_file(file)? {
                    if keys.iter().any(|k| k.same_key(&key)) {
                        return Err(usage(format!(
                            "key {} from {} is already authorized for {name}",
                            key.fingerprint(),
                            file.display()
                        )));
                    }
                    keys.push(key);
                }
            }
            finish("key add", write_plan(config, name, &keys), dry_run.dry_run)
        }
        KeyCommand::Remove { name, key, dry_run } => {
            require_root("sftpctl key remove")?;
            let owner = require_key_owner(config, name)?;
            let mut keys = current(config, name)?;
            let index = match key.parse::<usize>() {
                Ok(n) if (1..=keys.len()).contains(&n) => n - 1,
                Ok(_) => {
                    return Err(usage(format!(
                        "{name} has {} key(s); `sftpctl key list {name}` numbers them",
                        keys.len()
                    )))
                }
                Err(_) => keys
                    .iter()
                    .position(|k| k.fingerprint() == *key)
                    .ok_or_else(|| {
                        usage(format!(
                            "{name} has no key {key}; `sftpctl key list {name}` shows the fingerprints"
                        ))
                    })?,
            };
            keys.remove(index);
            finish(
                "key remove",
                write_plan(config, name, &keys),
                dry_run.dry_run,
            )?;
            if owner == KeyOwner::Admin && keys.is_empty() {
                // Not refused: root runs this and can add a key again; but say what is left.
                eprintln!(
                    "sftpctl: note: the admin {name} has no key in {} any more: it logs in only with a key in the host's own AuthorizedKeysFile (e.g. ~/.ssh/authorized_keys) or a password; `sftpctl key add {name} FILE` adds one",
                    config.sshd.authorized_keys_dir.display()
                );
            }
            Ok(())
        }
        KeyCommand::List { name } => {
            require_key_owner(config, name)?;
            let keys = current(config, name)?;
            if keys.is_empty() {
                println!("{name} has no authorized keys");
            }
            for (i, k) in keys.iter().enumerate() {
                println!(
                    "{:>3}  {}  {}  {}",
                    i + 1,
                    k.fingerprint(),
                    k.kind,
                    k.comment
                );
            }
            Ok(())
        }
    }
}

fn key_file(config: &Config, name: &str) -> PathBuf {
    config.sshd.authorized_keys_dir.join(name)
}

/// The keys authorized for `name` now.
pub fn current(config: &Config, name: &str) -> Result<Vec<PublicKey>> {
    let path = key_file(config, name);
    match fsops::read_regular(&path)? {
        None => Ok(vec![]),
        Some((bytes, _)) => keys::parse_text(&String::from_utf8_lossy(&bytes)).with_context(|| {
            format!(
                "{} holds a line that is not a public key; fix it by hand",
                path.display()
            )
        }),
    }
}

fn write_plan(config: &Config, name: &str, keys: &[PublicKey]) -> Plan {
    let mut plan = Plan::new();
    plan.push(Dir::root(&config.sshd.authorized_keys_dir, 0o755));
    plan.push(key_file_step(config, name, keys));
    plan
}

/// The step that makes `name`'s key file hold exactly `keys` (root 0644).
pub fn key_file_step(config: &Config, name: &str, keys: &[PublicKey]) -> File {
    File {
        path: key_file(config, name),
        content: keys.iter().map(|k| k.line() + "\n").collect(),
        meta: Some(Meta::root(0o644)),
        topic: None,
    }
}
