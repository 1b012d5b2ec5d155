//! The watcher: source (udp | follow file | stdin) → parse → sessions → report → outbox → deliver.
