//! The watcher: source (udp | follow file | stdin) → parse → sessions → report → outbox → deliver.

pub mod escape;
pub mod parse;
pub mod report;
pub mod session;
pub mod time;
