//! The certificate files rsyslog's TLS driver reads: checked before `init` writes a config
//! that names them, so a typo is one clear error, not a forwarder that silently never connects.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use anyhow::{Context, Result};

use crate::config::Config;
use crate::error::usage;

/// Every file `[forward]` and `[collect]` name, when they are on: regular files; the keys
/// root's and closed to group and others.
pub fn check_files(config: &Config) -> Result<()> {
    let mut files = Vec::new();
    if config.forward.enabled() {
        let f = &config.forward;
        files.extend([
            ("forward.ca", &f.ca, false),
            ("forward.cert", &f.cert, false),
        ]);
        files.push(("forward.key", &f.key, true));
    }
    if config.collect.enabled {
        let c = &config.collect;
        files.extend([
            ("collect.ca", &c.ca, false),
            ("collect.cert", &c.cert, false),
        ]);
        files.push(("collect.key", &c.key, true));
    }
    for (key, path, secret) in files {
        check_one(key, path, secret)?;
    }
    Ok(())
}

fn check_one(key: &str, path: &Path, secret: bool) -> Result<()> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(usage(format!(
                "{key}: {} does not exist: make the certificates first (docs/fleet.md, \"Certificates\")",
                path.display()
            )))
        }
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    if !meta.is_file() {
        return Err(usage(format!(
            "{key}: {} is not a regular file",
            path.display()
        )));
    }
    if secret && (meta.uid() != 0 || meta.mode() & 0o077 != 0) {
        return Err(usage(format!(
            "{key}: {} must be root's and closed to others (chown root: and chmod 600 it)",
            path.display()
        )));
    }
    let text = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    if !text.windows(11).any(|w| w == b"-----BEGIN ") {
        return Err(usage(format!(
            "{key}: {} is not a PEM file (no -----BEGIN line)",
            path.display()
        )));
    }
    Ok(())
}
