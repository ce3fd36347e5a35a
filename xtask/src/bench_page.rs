//! `cargo xtask bench ... --write` (and `soak ... --write`): the output becomes a page in
//! docs/benchmarks/, with the plots it drew beside it, so that every figure in the docs names
//! the run it came from (command, machine, date, commit). Figures are never copied by hand.

use std::{
    io::{BufRead as _, BufReader, Write as _},
    path::Path,
    process::{Command, Stdio},
};

use anyhow::Context as _;

use crate::{lab, toolchain};

/// Where the pages and plots go, from the repository's root.
const DIR: &str = "docs/benchmarks";

/// What runs, and the page it writes.
pub struct Run<'a> {
    /// herald-bench, or herald-soak.
    pub bin: &'a str,
    /// The page's name in docs/benchmarks/, without `.md`.
    pub page: &'a str,
    /// Whether `bin` draws plots (`--plots DIR`).
    pub plots: bool,
}

/// Runs `run.bin` with `args`, showing its output as it comes, and writes its page.
pub fn run(run: Run, args: &[&str], kube: bool, release: bool) -> anyhow::Result<()> {
    let root = toolchain::root();
    let dir = root.join(DIR);
    std::fs::create_dir_all(&dir)?;
    let started = std::time::SystemTime::now();
    let mut cmd = lab::prepare(run.bin, kube, release)?;
    cmd.args(args).stdout(Stdio::piped());
    if run.plots {
        cmd.arg("--plots").arg(&dir);
    }
    let mut child = cmd.spawn().with_context(|| format!("starting {cmd:?}"))?;
    let mut output = String::new();
    for line in BufReader::new(child.stdout.take().context("the bench's stdout")?).lines() {
        let line = line?;
        println!("{line}");
        std::io::stdout().flush()?;
        output += &line;
        output.push('\n');
    }
    let status = child.wait()?;
    anyhow::ensure!(status.success(), "{cmd:?} failed: {status}; no page written");
    let plots = plots(&dir, started)?;
    let page = render(&command_line(), &machine(), &now()?, &commit(&root)?, &plots, &output);
    let path = dir.join(format!("{}.md", run.page));
    std::fs::write(&path, page)?;
    eprintln!("bench: wrote {}", path.display());
    Ok(())
}

/// A bench's page: `failover`, or `failover-20-nodes` for `failover --nodes 20`.
pub fn page_name(args: &[&str]) -> String {
    match args.iter().position(|a| *a == "--nodes").and_then(|i| args.get(i + 1)) {
        Some(n) => format!("{}-{n}-nodes", args[0]),
        None => args[0].to_owned(),
    }
}

/// The SVGs in `dir` that this run drew (written since it `started`), by name.
fn plots(dir: &Path, started: std::time::SystemTime) -> anyhow::Result<Vec<String>> {
    let drawn = |e: &std::fs::DirEntry| e.metadata().and_then(|m| m.modified()).is_ok_and(|t| t >= started);
    let mut out: Vec<String> = std::fs::read_dir(dir)?
        .flatten()
        .filter(drawn)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|f| f.ends_with(".svg"))
        .collect();
    out.sort();
    Ok(out)
}

/// The page: where the figures come from, the plots, then the bench's own output.
fn render(command: &str, machine: &str, date: &str, commit: &str, plots: &[String], output: &str) -> String {
    let mut page = format!(
        "# `{command}`\n\n\
         Written by `{command}` on {date}, at commit {commit}, on {machine}. \
         What the bench measures and how: [benchmarks.md](../benchmarks.md). \
         Run the command again to replace this page; do not edit it by hand.\n\n"
    );
    for plot in plots {
        page += &format!("![{plot}]({plot})\n\n");
    }
    page += "```text\n";
    page += output.trim_end();
    page += "\n```\n";
    page
}

/// The command as it was typed (`cargo xtask bench ...`).
fn command_line() -> String {
    let args: Vec<String> = std::env::args().skip(1).collect();
    format!("cargo xtask {}", args.join(" "))
}

/// CPU model, CPUs and memory: what the figures depend on besides the kernel (which the bench
/// prints itself).
fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name").and_then(|r| r.split_once(':')).map(|(_, m)| m.trim()))
        .unwrap_or("an unknown CPU")
        .to_owned();
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let kib: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|r| r.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    format!("{cpus} CPUs ({model}), {:.0} GiB", kib as f64 / (1024.0 * 1024.0))
}

fn now() -> anyhow::Result<String> {
    Ok(toolchain::output(Command::new("date").args(["-u", "+%Y-%m-%d %H:%M UTC"]))?.trim().to_owned())
}

/// The commit, and whether the tree had changes beside it.
fn commit(root: &Path) -> anyhow::Result<String> {
    let git = |args: &[&str]| toolchain::output(Command::new("git").current_dir(root).args(args));
    let head = git(&["rev-parse", "--short", "HEAD"])?.trim().to_owned();
    let dirty = !git(&["status", "--porcelain", "--untracked-files=no"])?.trim().is_empty();
    Ok(if dirty { format!("{head} (with changes not committed)") } else { head })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_are_named_for_the_bench_and_its_size() {
        assert_eq!(page_name(&["failover", "--runs", "20"]), "failover");
        assert_eq!(
            page_name(&["failover", "--runs", "20", "--soak", "120", "--nodes", "20"]),
            "failover-20-nodes"
        );
    }

    #[test]
    fn a_page_names_its_run_and_holds_the_output_and_plots() {
        let page = render(
            "cargo xtask bench xdp --write",
            "2 CPUs (a CPU), 24 GiB",
            "2026-12-07 18:00 UTC",
            "abc1234",
            &["xdp-paths.svg".to_owned()],
            "table\n",
        );
        assert!(page.starts_with("# `cargo xtask bench xdp --write`\n"));
        assert!(page.contains("on 2026-12-07 18:00 UTC, at commit abc1234, on 2 CPUs (a CPU), 24 GiB."));
        assert!(page.contains("![xdp-paths.svg](xdp-paths.svg)"));
        assert!(page.ends_with("```text\ntable\n```\n"));
    }
}
