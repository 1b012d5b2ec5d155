//! `sftpctl watch`: see `crate::watch`.

use anyhow::Result;

use crate::cli::WatchArgs;
use crate::config::{Config, Source};

pub fn run(_config: &Config, _source: &Source, _args: &WatchArgs) -> Result<()> {
    anyhow::bail!("watch is not built yet")
}
