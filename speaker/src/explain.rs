//! A chain of links from what Herald was told to the answer on the wire, each holding or
//! broken: what `kubectl herald explain` and `herald-speaker explain` print. The first broken
//! link is the cause.

/// A claim on an address by another host this recent is a cause (as the HeraldAddressConflict
/// alert has it); older ones are history.
pub const CLAIM_RECENT: std::time::Duration = std::time::Duration::from_secs(300);

/// One link of the chain: what it is, whether it holds, and what was found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    pub what: &'static str,
    pub holds: bool,
    pub lines: Vec<String>,
}

impl Link {
    pub fn holds(what: &'static str, lines: Vec<String>) -> Self {
        Self { what, holds: true, lines }
    }

    pub fn broken(what: &'static str, lines: Vec<String>) -> Self {
        Self { what, holds: false, lines }
    }
}

/// The chain as text: one block per link, `ok` or `NO`, then the first broken link as the cause.
pub fn render(links: &[Link]) -> String {
    let mut out = String::new();
    for link in links {
        let mark = if link.holds { "ok " } else { "NO " };
        for (i, line) in link.lines.iter().enumerate() {
            let head = if i == 0 { format!("{mark} {:<15}", link.what) } else { format!("    {:<15}", "") };
            out += &format!("{head} {line}\n");
        }
    }
    if let Some(broken) = links.iter().find(|l| !l.holds) {
        let mut parts = broken.lines.iter().map(|l| l.trim_start_matches("-  ").trim_end_matches(':'));
        let first = parts.next().unwrap_or_default();
        let rest: Vec<&str> = parts.collect();
        let rest = if rest.is_empty() { String::new() } else { format!(": {}", rest.join("; ")) };
        out += &format!("\ncause: {first}{rest}\n");
    }
    out
}
