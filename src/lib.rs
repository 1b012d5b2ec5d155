//! sftpctl as a library: the binary in `main.rs` only parses and dispatches.

pub mod cli;
pub mod commands;
pub mod config;
pub mod error;
pub mod names;
pub mod watch;
