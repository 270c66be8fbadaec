//! `cargo xtask tidy`: repository rules no compiler checks. Every `.rs` file opens with a `//!`
//! doc; every workspace member has a heading in the codemap of `docs/ARCHITECTURE.md`.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// Checks the rules, listing every violation.
pub(crate) fn run(root: &Path) -> Result<()> {
    let mut problems = Vec::new();
    for dir in ["crates", "xtask", "tests"] {
        for file in rust_files(&root.join(dir))? {
            let text = fs::read_to_string(&file).with_context(|| file.display().to_string())?;
            if !text.trim_start().starts_with("//!") {
                let rel = file.strip_prefix(root).unwrap_or(&file);
                problems.push(format!("{}: does not open with a `//!` doc", rel.display()));
            }
        }
    }
    let architecture = fs::read_to_string(root.join("docs/ARCHITECTURE.md"))
        .context("reading docs/ARCHITECTURE.md")?;
    for member in workspace_members(root)? {
        let heading = format!("### `{member}`");
        if !architecture.lines().any(|l| l.trim() == heading) {
            problems.push(format!("docs/ARCHITECTURE.md: codemap lacks the heading {heading}"));
        }
    }
    if !problems.is_empty() {
        bail!("tidy found {} problem(s):\n{}", problems.len(), problems.join("\n"));
    }
    Ok(())
}

fn rust_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    if !dir.exists() {
        return Ok(out);
    }
    for entry in fs::read_dir(dir).with_context(|| dir.display().to_string())? {
        let path = entry?.path();
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n == "target") {
                continue;
            }
            out.extend(rust_files(&path)?);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    Ok(out)
}

/// The `members` of the root `Cargo.toml`.
fn workspace_members(root: &Path) -> Result<Vec<String>> {
    let manifest = fs::read_to_string(root.join("Cargo.toml"))?;
    let start = manifest.find("members = [").context("no members in Cargo.toml")?;
    let rest = &manifest[start..];
    let end = rest.find(']').context("unterminated members")?;
    Ok(rest[..end].split('"').skip(1).step_by(2).map(str::to_owned).collect())
}
