//! The watcher: source (udp | follow file | stdin) → parse → sessions → report → outbox → deliver.

pub mod daemon;
pub mod deliver;
pub mod digest;
pub mod escape;
pub mod mail;
pub mod newfiles;
pub mod notify;
pub mod outbox;
pub mod parse;
pub mod report;
pub mod run;
pub mod session;
pub mod smtp;
pub mod source;
pub mod state;
pub mod time;
pub mod trust;
