//! sftpctl as a library: the binary in `main.rs` only parses and dispatches.

pub mod accounts;
pub mod build_info;
pub mod cli;
pub mod commands;
pub mod config;
pub mod display;
pub mod doctor;
pub mod error;
pub mod fenced;
pub mod history;
pub mod host_auth;
pub mod jail;
pub mod keys;
pub mod log_links;
pub mod logins;
pub mod names;
pub mod openssh;
pub mod perms;
pub mod plan;
pub mod policy;
pub mod registry;
pub mod render;
pub mod setup;
pub mod tz;
pub mod watch;
