//! `cargo xtask bench [name...]`: runs the benchmark binaries of the `tests` crate
//! (`tests/benches/<name>.rs`, `harness = false`), prints what each prints (a markdown section
//! opening with `## `), and writes them all to `docs/benchmarks.md` with the machine and date.

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
    let mut sections = Vec::new();
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
        sections.push(text);
    }
    let header = format!(
        "# Benchmarks\n\nWritten by `cargo xtask bench`. Machine: {}. Date: {}.\n\
         Every figure is beside a baseline measured in the same run; read the ratios, the \
         absolute numbers move with the machine's load.\n\n",
        machine(),
        command_line("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
    );
    fs::write(root.join("docs/benchmarks.md"), header + &sections.join("\n"))?;
    eprintln!("wrote docs/benchmarks.md");
    Ok(())
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
