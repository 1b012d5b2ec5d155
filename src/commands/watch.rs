//! `sftpctl watch`: see `crate::watch`.

use std::time::Duration;

use anyhow::Result;

use crate::cli::WatchArgs;
use crate::config::{Config, Source};
use crate::watch::run::{watch, Input, Options};

pub fn run(config: &Config, source: &Source, args: &WatchArgs) -> Result<()> {
    let input = if args.stdin {
        Input::Stream(Box::new(std::io::stdin()))
    } else if let Some(path) = &args.follow {
        Input::Follow(path.clone())
    } else {
        Input::Live
    };
    let options = Options {
        foreground: args.foreground || args.stdin,
        retry_first: Duration::from_secs(1),
        trust_unverified: args.trust_unverified,
        run_policy: config.policy.watcher_runs,
        config_path: source.exists.then(|| source.path.clone()),
    };
    watch(config, input, options)
}
