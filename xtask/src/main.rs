//! hookstream's project automation, run as `cargo xtask <task>`:
//!
//! - `ci`: the one check (fmt, clippy, tests, docs, tidy, codegen, package);
//! - `codegen [--check]`: writes (or checks) the event types generated from the catalogue;
//! - `bench [name...]`: runs the benchmarks and writes `docs/benchmarks.md`.
//!
//! It shells out to cargo; it owns no product logic.

mod bench;
mod ci;
mod codegen;
mod tidy;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = project_root();
    match args.first().map(String::as_str) {
        Some("ci") => ci::run(&root),
        Some("codegen") => codegen::run(&root, args.iter().any(|a| a == "--check")),
        Some("bench") => bench::run(&root, &args[1..]),
        Some("tidy") => tidy::run(&root),
        _ => bail!("usage: cargo xtask <ci | codegen [--check] | bench [name...] | tidy>"),
    }
}

/// The workspace root (the parent of this crate's directory).
fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Runs `cargo <args>` in `root`, failing when it fails.
fn cargo(root: &Path, args: &[&str]) -> Result<()> {
    cargo_with_env(root, args, &[])
}

/// Runs `cargo <args>` in `root` with extra environment variables, failing when it fails.
fn cargo_with_env(root: &Path, args: &[&str], env: &[(&str, &str)]) -> Result<()> {
    eprintln!("$ cargo {}", args.join(" "));
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(args)
        .envs(env.iter().copied())
        .current_dir(root)
        .status()
        .with_context(|| format!("running cargo {}", args.join(" ")))?;
    if !status.success() {
        bail!("cargo {} failed ({status})", args.join(" "));
    }
    Ok(())
}
