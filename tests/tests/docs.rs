//! The docs hold together: the README stays a first read (under 200 lines), every relative link
//! in the README and docs/ leads to a file that exists and a heading it has, and every page in
//! docs/benchmarks/ names the run it came from and shows only plots that exist.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// The Markdown files a reader follows links through.
fn documents() -> Vec<PathBuf> {
    let root = root();
    let mut files: Vec<PathBuf> =
        ["README.md", "ARCHITECTURE.md", "SECURITY.md"].iter().map(|f| root.join(f)).collect();
    for dir in ["docs", "docs/benchmarks"] {
        let mut found: Vec<PathBuf> = std::fs::read_dir(root.join(dir))
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "md"))
            .collect();
        found.sort();
        files.extend(found);
    }
    files
}

/// GitHub's anchor for a heading.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == '-' || *c == '_' || *c == ' ')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The anchors of a Markdown file's headings (not those in code blocks).
fn anchors(text: &str) -> Vec<String> {
    let mut code = false;
    let mut out = Vec::new();
    for line in text.lines() {
        if line.starts_with("```") {
            code = !code;
        } else if !code && line.starts_with('#') {
            out.push(slug(line.trim_start_matches('#')));
        }
    }
    out
}

/// Relative link targets `](target)` in `text`.
fn links(text: &str) -> Vec<&str> {
    text.split("](")
        .skip(1)
        .filter_map(|rest| rest.split(')').next())
        .filter(|t| !t.contains(' ') && !t.starts_with("http") && !t.starts_with("mailto:"))
        .collect()
}

#[test]
fn the_readme_is_a_first_read() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let lines = readme.lines().count();
    assert!(lines < 200, "README.md has {lines} lines: reference belongs in docs/");
    // The first screen leads to install, the demo and the rest.
    let first: String = readme.lines().take(10).collect::<Vec<_>>().join("\n");
    for anchor in ["#install-on-kubernetes", "#standalone-as-keepalived-is-installed", "#where-the-rest-is"] {
        assert!(first.contains(anchor), "the README's first lines do not link {anchor}");
    }
}

#[test]
fn every_link_leads_somewhere() {
    let mut broken = Vec::new();
    for doc in documents() {
        let text = std::fs::read_to_string(&doc).unwrap();
        for link in links(&text) {
            let (path, anchor) = link.split_once('#').unwrap_or((link, ""));
            let target = if path.is_empty() { doc.clone() } else { doc.parent().unwrap().join(path) };
            if !target.exists() {
                broken.push(format!("{}: {link} (no such file)", doc.display()));
            } else if !anchor.is_empty()
                && target.extension().is_some_and(|e| e == "md")
                && !anchors(&std::fs::read_to_string(&target).unwrap()).iter().any(|a| a == anchor)
            {
                broken.push(format!("{}: {link} (no such heading)", doc.display()));
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn every_bench_page_names_its_run() {
    let dir = root().join("docs/benchmarks");
    let mut pages = 0;
    for entry in std::fs::read_dir(&dir).unwrap().flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "md") {
            continue;
        }
        pages += 1;
        let text = std::fs::read_to_string(&path).unwrap();
        let first = text.lines().next().unwrap_or_default();
        assert!(first.starts_with("# `cargo xtask "), "{}: no command in its title", path.display());
        assert!(
            text.contains("Written by `cargo xtask ")
                && text.contains(" at commit ")
                && text.contains(" UTC, "),
            "{}: does not name its command, date and commit",
            path.display()
        );
        assert!(text.contains("```text\n"), "{}: no output", path.display());
    }
    assert!(pages > 0, "no pages in {}", dir.display());
}

#[test]
fn anchors_are_githubs() {
    assert_eq!(
        slug(" Two commands (a fresh Debian/Ubuntu machine, as root)"),
        "two-commands-a-fresh-debianubuntu-machine-as-root"
    );
    assert_eq!(slug(" kubectl herald: one command from a range"), "kubectl-herald-one-command-from-a-range");
}
