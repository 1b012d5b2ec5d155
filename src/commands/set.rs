//! `sftpctl set NAME KEY=VALUE…`: change a client's settings (docs/policy.md).

use anyhow::Result;

use crate::accounts::require_managed;
use crate::cli::SetArgs;
use crate::commands::finish;
use crate::config::Config;
use crate::error::{require_root, usage};
use crate::plan::Plan;
use crate::policy::{assign, steps};
use crate::registry;

pub fn run(config: &Config, args: &SetArgs) -> Result<()> {
    require_root("sftpctl set")?;
    require_managed(config, &args.name)?;
    let assignments = assign::parse_all(&args.settings).map_err(|e| usage(format!("{e:#}")))?;
    let before = registry::load(config, &args.name)?;
    let mut after = before.clone();
    for a in &assignments {
        a.apply(&mut after);
    }
    let mut plan = Plan::new();
    let change = steps::Change {
        name: args.name.clone(),
        before,
        after,
    };
    steps::push(&mut plan, config, &[change], false)?;
    finish("set", plan, args.dry_run.dry_run)
}
