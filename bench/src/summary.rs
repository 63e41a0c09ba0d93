//! The headline figures each comparison reports, and the table `docfleet-bench all` ends with.

/// What a headline figure is held against.
#[derive(Debug, Clone, Copy)]
pub enum Goal {
    AtLeast(f64),
    AtMost(f64),
}

impl Goal {
    fn met(self, value: f64) -> bool {
        match self {
            Goal::AtLeast(g) => value >= g,
            Goal::AtMost(g) => value <= g,
        }
    }

    fn text(self, unit: &str) -> String {
        match self {
            Goal::AtLeast(g) => format!("≥ {g}{unit}"),
            Goal::AtMost(g) => format!("≤ {g}{unit}"),
        }
    }
}

/// One comparison's headline: a ratio (or a time) with what it was measured on.
#[derive(Debug, Clone)]
pub struct Headline {
    pub comparison: String,
    pub detail: String,
    pub value: f64,
    /// `×` for ratios, ` s` for times, ` %` for shares.
    pub unit: &'static str,
    pub goal: Option<Goal>,
}

impl Headline {
    pub fn ratio(comparison: impl Into<String>, detail: impl Into<String>, value: f64, goal: Goal) -> Self {
        Self { comparison: comparison.into(), detail: detail.into(), value, unit: "×", goal: Some(goal) }
    }

    pub fn seconds(comparison: impl Into<String>, detail: impl Into<String>, value: f64, goal: Option<Goal>) -> Self {
        Self { comparison: comparison.into(), detail: detail.into(), value, unit: " s", goal }
    }
}

/// The machine, as BENCHMARKS.md entries state it.
pub fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map(str::trim)
        .unwrap_or("unknown CPU");
    let mem_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| m.lines().find(|l| l.starts_with("MemTotal:")).map(str::to_owned))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|kib| kib.parse::<f64>().ok()))
        .map(|kib| kib / (1 << 20) as f64)
        .unwrap_or(0.0);
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    format!(
        "machine: {cores} cores ({cpu}), {mem_gib:.0} GiB, load average {}",
        load.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
    )
}

/// A markdown table of every headline (sections in order), with goal and whether it was met;
/// comparisons that could not run are listed with the reason.
pub fn print(sections: &[Vec<anyhow::Result<Headline>>]) {
    println!("| comparison | measured | value | goal | met |");
    println!("|---|---|---|---|---|");
    for row in sections.iter().flatten() {
        match row {
            Ok(h) => {
                let (goal, met) = match h.goal {
                    Some(g) => (g.text(h.unit), if g.met(h.value) { "yes" } else { "**no**" }),
                    None => ("—".to_owned(), "—"),
                };
                println!("| {} | {} | {:.2}{} | {goal} | {met} |", h.comparison, h.detail, h.value, h.unit);
            }
            Err(e) => {
                let reason = e.chain().skip(1).map(|c| c.to_string()).collect::<Vec<_>>().join(": ");
                let reason = reason.replace('|', "/").replace('\n', " ");
                println!("| {e} | skipped: {reason} | | | |");
            }
        }
    }
}
