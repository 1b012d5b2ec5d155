//! What `build.rs` found out about the build.

/// `0.1.0 (git 1a2b3c4d5e6f)`: the crate version and the commit it was built from
/// (`-dirty` when the tree had uncommitted changes, `unknown` without git).
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (git ",
    env!("SFTPCTL_BUILD_COMMIT"),
    ")"
);
