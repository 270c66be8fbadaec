//! `cargo xtask bench [name...]`: runs the benchmark binaries of the `tests` crate
//! (`tests/benches/<name>.rs`, `harness = false`), prints what each prints (a markdown section
//! opening with `## `), and merges them into `docs/benchmarks.md` by heading, with the machine and date.

use std::fs;
use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};

/// Every benchmark, in the order of `docs/benchmarks.md`.
const BENCHES: &[&str] = &["bus", "delivery", "server", "store"];

/// Runs the named benchmarks (all when none is named).
pub(crate) fn run(root: &Path, names: &[String]) -> Result<()> {
    let selected: Vec<&str> = if names.is_empty() {
        BENCHES.to_vec()
    } else {
        for n in names {
            if !BENCHES.contains(&n.as_str()) {
                bail!("unknown benchmark {n:?}; known: {}", BENCHES.join(", "));
            }
        }
        names.iter().map(String::as_str).collect()
    };
    let path = root.join("docs/benchmarks.md");
    let previous = fs::read_to_string(&path).unwrap_or_default();
    let mut sections = split_sections(&previous);
    for name in selected {
        eprintln!("$ cargo bench -p hookstream-tests --bench {name}");
        let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args(["bench", "-q", "-p", "hookstream-tests", "--bench", name])
            .current_dir(root)
            .output()
            .with_context(|| format!("running bench {name}"))?;
        if !out.status.success() {
            eprintln!("{}", String::from_utf8_lossy(&out.stderr));
            bail!("bench {name} failed ({})", out.status);
        }
        let text = String::from_utf8(out.stdout).context("bench output is not UTF-8")?;
        println!("{text}");
        for (title, body) in split_sections(&text) {
            match sections.iter_mut().find(|(t, _)| *t == title) {
                Some(slot) => slot.1 = body,
                None => sections.push((title, body)),
            }
        }
    }
    let header = format!(
        "# Benchmarks\n\nWritten by `cargo xtask bench` (a run of some benchmarks replaces their \
         sections and keeps the others). Machine: {}. Last run: {}.\n\
         Every figure is beside a baseline measured in the same run; read the ratios, the \
         absolute numbers move with the machine's load.\n",
        machine(),
        command_line("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
    );
    let body: String = sections.iter().map(|(t, b)| format!("\n{t}\n\n{}\n", b.trim())).collect();
    fs::write(&path, header + &body)?;
    eprintln!("wrote docs/benchmarks.md");
    Ok(())
}

/// The `## ` sections of a markdown text, each as (heading line, body), in order.
fn split_sections(text: &str) -> Vec<(String, String)> {
    let mut sections: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        if line.starts_with("## ") {
            sections.push((line.to_owned(), String::new()));
        } else if let Some((_, body)) = sections.last_mut() {
            body.push_str(line);
            body.push('\n');
        }
    }
    sections
}

fn machine() -> String {
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let model = fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    format!("{cpus} cores ({model}), {}", command_line("uname", &["-sr"]))
}

fn command_line(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}
