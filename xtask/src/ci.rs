//! `cargo xtask ci`: every check the project has, in order, stopping at the first failure.

use std::path::Path;

use anyhow::Result;

use crate::{cargo, cargo_with_env, codegen, tidy};

/// Runs the whole check.
pub(crate) fn run(root: &Path) -> Result<()> {
    cargo(root, &["fmt", "--all", "--check"])?;
    tidy::run(root)?;
    codegen::run(root, true)?;
    cargo(
        root,
        &["clippy", "--workspace", "--all-targets", "--all-features", "--", "-D", "warnings"],
    )?;
    cargo(root, &["test", "--workspace", "--all-features"])?;
    cargo_with_env(
        root,
        &["doc", "--workspace", "--no-deps", "--all-features"],
        &[("RUSTDOCFLAGS", "-D warnings")],
    )?;
    cargo(
        root,
        &[
            "package",
            "--workspace",
            "--no-verify",
            "--allow-dirty",
            "--exclude",
            "xtask",
            "--exclude",
            "hookstream-tests",
        ],
    )?;
    eprintln!("ci: all checks passed");
    Ok(())
}
