//! `sftpctl generate-assets --out DIR` (hidden): the man pages and shell completions the
//! Debian package ships, generated from the clap definitions so they can never drift from
//! `--help`. `make deb-package` runs it on the binary it packages; no build.rs needs clap.

use std::path::Path;

use anyhow::{Context, Result};
use clap::CommandFactory;
use clap_complete::Shell;

use crate::cli::Cli;

/// Man pages in `DIR/man/` (`sftpctl.8`, `sftpctl-init.8`, `sftpctl-key-add.8`, …; section 8:
/// an administration tool) and completions in `DIR/completions/` under the names Debian's
/// bash-completion, zsh and fish look for.
pub fn run(out: &Path) -> Result<()> {
    let man_dir = out.join("man");
    let completion_dir = out.join("completions");
    for dir in [&man_dir, &completion_dir] {
        fs_err::create_dir_all(dir)?;
    }
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    write_man_pages(&cmd, &man_dir)?;
    for (shell, name) in [
        (Shell::Bash, "sftpctl"),
        (Shell::Zsh, "_sftpctl"),
        (Shell::Fish, "sftpctl.fish"),
    ] {
        let mut bytes = Vec::new();
        clap_complete::generate(shell, &mut cmd.clone(), "sftpctl", &mut bytes);
        fs_err::write(completion_dir.join(name), bytes)?;
    }
    Ok(())
}

/// One page per visible command, recursively; hidden commands get none.
fn write_man_pages(cmd: &clap::Command, dir: &Path) -> Result<()> {
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        write_man_pages(sub, dir)?;
    }
    let man = clap_mangen::Man::new(cmd.clone())
        .section("8")
        .manual("System Administration")
        .source(format!("sftpctl {}", env!("CARGO_PKG_VERSION")));
    let path = dir.join(man.get_filename());
    let mut bytes = Vec::new();
    man.render(&mut bytes)
        .with_context(|| format!("cannot render {}", path.display()))?;
    fs_err::write(&path, bytes)?;
    Ok(())
}
