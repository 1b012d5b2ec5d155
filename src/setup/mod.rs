//! What `sftpctl init` manages: the files it renders and the validators and activations that
//! follow a change of them. `init` writes them; `doctor` compares them with the disk and
//! `doctor --fix` writes them again.

mod activation;
mod files;
mod imuxsock;

pub use activation::validate_and_activate;
pub use files::{
    managed_files, render_files, renderer, rsyslog_dropin_dir, sshd_managed_files, ManagedFiles,
};
