//! The chart of a comparison: one SVG file (no script, no external resource) with a panel per
//! figure — start → first answer, one request at a time (p50), throughput, memory under load —
//! and a bar per peer, pactown's first and in its own colour. Times span orders of magnitude
//! (a Python process starts in seconds, a component in milliseconds), so their panels are on a
//! log scale; throughput and memory are linear. Every bar carries its value.

use std::fmt::Write as _;

/// What a chart shows.
#[derive(Debug, Clone)]
pub struct Chart {
    /// The title.
    pub title: String,
    /// Lines below it (the machine, the method).
    pub subtitle: Vec<String>,
    /// A bar group per peer.
    pub rows: Vec<Row>,
    /// The small print at the bottom.
    pub footer: String,
}

/// One peer's figures (`None`: not measured).
#[derive(Debug, Clone, Default)]
pub struct Row {
    /// The peer.
    pub peer: String,
    /// Why it did not run.
    pub why: Option<String>,
    /// Start → first answer, ms.
    pub start_ms: Option<f64>,
    /// One request at a time, p50, µs.
    pub p50_us: Option<f64>,
    /// Throughput, req/s.
    pub throughput_rps: Option<f64>,
    /// PSS under load, MiB.
    pub memory_mib: Option<f64>,
}

const WIDTH: f64 = 920.0;
const LABEL: f64 = 170.0;
const BAR: f64 = 20.0;
const GAP: f64 = 8.0;

/// One panel: a title, a unit, a value per peer, and whether lower is better.
struct Panel {
    title: &'static str,
    unit: &'static str,
    log: bool,
    lower_is_better: bool,
    value: fn(&Row) -> Option<f64>,
}

const PANELS: [Panel; 4] = [
    Panel {
        title: "process start → first answer",
        unit: "ms",
        log: true,
        lower_is_better: true,
        value: |r| r.start_ms,
    },
    Panel {
        title: "one request at a time, p50 (fresh instance unless reused)",
        unit: "µs",
        log: true,
        lower_is_better: true,
        value: |r| r.p50_us,
    },
    Panel {
        title: "throughput under load",
        unit: "req/s",
        log: false,
        lower_is_better: false,
        value: |r| r.throughput_rps,
    },
    Panel {
        title: "memory under load (PSS)",
        unit: "MiB",
        log: false,
        lower_is_better: true,
        value: |r| r.memory_mib,
    },
];

/// The chart as SVG.
pub fn svg(chart: &Chart) -> String {
    let peers = &chart.rows;
    let panel_height = 34.0 + peers.len() as f64 * (BAR + GAP) + 10.0;
    let top = 50.0 + chart.subtitle.len() as f64 * 20.0;
    let height = top + PANELS.len() as f64 * panel_height + 30.0;
    let mut s = String::new();
    let _ = write!(
        s,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="system-ui, -apple-system, 'Segoe UI', sans-serif" font-size="13">
<rect width="100%" height="100%" fill="#ffffff"/>
<text x="20" y="32" font-size="20" font-weight="600">{}</text>
"##,
        esc(&chart.title)
    );
    for (i, line) in chart.subtitle.iter().enumerate() {
        let _ = writeln!(
            s,
            r##"<text x="20" y="{}" fill="#555">{}</text>"##,
            56.0 + i as f64 * 20.0,
            esc(line)
        );
    }
    for (i, panel) in PANELS.iter().enumerate() {
        draw_panel(&mut s, panel, peers, top + i as f64 * panel_height);
    }
    let _ = write!(
        s,
        r##"<text x="20" y="{}" fill="#777" font-size="11">{}</text>
</svg>
"##,
        height - 12.0,
        esc(&chart.footer)
    );
    s
}

fn draw_panel(s: &mut String, panel: &Panel, peers: &[Row], top: f64) {
    let better = if panel.lower_is_better {
        "lower is better"
    } else {
        "higher is better"
    };
    let _ = writeln!(
        s,
        r##"<text x="20" y="{}" font-weight="600">{} <tspan fill="#777" font-weight="400">({}, {}{})</tspan></text>"##,
        top + 18.0,
        esc(panel.title),
        panel.unit,
        better,
        if panel.log { ", log scale" } else { "" }
    );
    let values: Vec<Option<f64>> = peers.iter().map(|p| (panel.value)(p)).collect();
    let max = values.iter().flatten().copied().fold(0.0_f64, f64::max);
    let min = values
        .iter()
        .flatten()
        .copied()
        .filter(|v| *v > 0.0)
        .fold(f64::INFINITY, f64::min);
    let span = WIDTH - LABEL - 150.0;
    let length = |v: f64| -> f64 {
        if max <= 0.0 {
            return 0.0;
        }
        if panel.log && min.is_finite() && max > min {
            // One decade below the smallest, so the smallest still shows a bar.
            let lo = (min / 10.0).log10();
            ((v.max(min / 10.0)).log10() - lo) / (max.log10() - lo) * span
        } else {
            v / max * span
        }
    };
    for (j, (peer, value)) in peers.iter().zip(&values).enumerate() {
        let y = top + 30.0 + j as f64 * (BAR + GAP);
        let _ = writeln!(
            s,
            r##"<text x="{}" y="{}" text-anchor="end">{}</text>"##,
            LABEL - 10.0,
            y + BAR * 0.72,
            esc(&peer.peer)
        );
        match value {
            Some(v) => {
                let w = length(*v).max(1.0);
                let colour = if peer.peer == "pactown" {
                    "#2f6fde"
                } else if peer.peer.starts_with("pactown") {
                    "#7aa5ef"
                } else {
                    "#b7bcc5"
                };
                let _ = writeln!(
                    s,
                    r##"<rect x="{LABEL}" y="{y}" width="{w:.1}" height="{BAR}" rx="3" fill="{colour}"/><text x="{:.1}" y="{}">{}</text>"##,
                    LABEL + w + 6.0,
                    y + BAR * 0.72,
                    esc(&format!("{} {}", number(*v), panel.unit))
                );
            }
            None => {
                let why = peer.why.as_deref().unwrap_or("not run");
                let short: String = why.chars().take(90).collect();
                let _ = writeln!(
                    s,
                    r##"<text x="{LABEL}" y="{}" fill="#999" font-style="italic">not run: {}</text>"##,
                    y + BAR * 0.72,
                    esc(&short)
                );
            }
        }
    }
}

/// A number with sensible precision.
fn number(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// XML text escaping.
fn esc(t: &str) -> String {
    t.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped_and_numbers_are_rounded() {
        assert_eq!(esc("a<b & \"c\""), "a&lt;b &amp; &quot;c&quot;");
        assert_eq!(number(1234.4), "1234");
        assert_eq!(number(12.345), "12.3");
        assert_eq!(number(0.5), "0.50");
    }
}
