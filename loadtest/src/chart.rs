//! An SVG chart comparing runs: grouped bars of the latency percentiles
//! (p50, p90, p99, p99.9) per run, on a log scale (a ceiling server and a
//! stalled one differ by orders of magnitude), with req/s in each run's
//! legend entry. Self-contained SVG, no scripts, opens in any browser.

use std::fmt::Write;

use crate::Report;

const WIDTH: f64 = 860.0;
const HEIGHT: f64 = 420.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 50.0;
const BOTTOM: f64 = 120.0;
const COLORS: [&str; 8] = [
    "#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#9c755f",
];

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Reads one percentile of a report.
type Percentile = fn(&Report) -> f64;

/// Renders `reports` (at most 8) as an SVG document titled `title`.
pub fn latency_svg(title: &str, reports: &[Report]) -> String {
    let reports = &reports[..reports.len().min(COLORS.len())];
    let percentiles: [(&str, Percentile); 4] = [
        ("p50", |r| r.latency_ms.p50),
        ("p90", |r| r.latency_ms.p90),
        ("p99", |r| r.latency_ms.p99),
        ("p99.9", |r| r.latency_ms.p999),
    ];
    let values = reports
        .iter()
        .flat_map(|r| percentiles.iter().map(move |(_, f)| f(r)))
        .filter(|v| v.is_finite() && *v > 0.0);
    let (mut lo, mut hi) = (f64::MAX, f64::MIN);
    for v in values {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if lo > hi {
        (lo, hi) = (0.01, 1.0);
    }
    // Whole decades around the data.
    let (lo_exp, hi_exp) = (
        lo.log10().floor(),
        hi.log10().ceil().max(lo.log10().floor() + 1.0),
    );
    let plot_h = HEIGHT - TOP - BOTTOM;
    let plot_w = WIDTH - LEFT - RIGHT;
    let y = |v: f64| {
        let v = v.max(10f64.powf(lo_exp));
        TOP + plot_h * (1.0 - (v.log10() - lo_exp) / (hi_exp - lo_exp))
    };
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" font-family="sans-serif" font-size="12">"#
    );
    let _ = write!(
        svg,
        r#"<rect width="100%" height="100%" fill="white"/><text x="{}" y="24" font-size="15" text-anchor="middle">{}</text>"#,
        WIDTH / 2.0,
        escape(title)
    );
    // Decade grid lines.
    let mut exp = lo_exp;
    while exp <= hi_exp {
        let v = 10f64.powf(exp);
        let yy = y(v);
        let _ = write!(
            svg,
            r##"<line x1="{LEFT}" x2="{}" y1="{yy:.1}" y2="{yy:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{} ms</text>"##,
            WIDTH - RIGHT,
            LEFT - 6.0,
            yy + 4.0,
            format_ms(v)
        );
        exp += 1.0;
    }
    let group_w = plot_w / percentiles.len() as f64;
    let bar_w = (group_w * 0.8) / reports.len().max(1) as f64;
    for (g, (name, value)) in percentiles.iter().enumerate() {
        let gx = LEFT + group_w * g as f64 + group_w * 0.1;
        for (i, report) in reports.iter().enumerate() {
            let v = value(report);
            let top = y(v);
            let x = gx + bar_w * i as f64;
            let _ = write!(
                svg,
                r#"<rect x="{x:.1}" y="{top:.1}" width="{:.1}" height="{:.1}" fill="{}"><title>{}: {name} {v:.3} ms</title></rect>"#,
                (bar_w - 2.0).max(1.0),
                (TOP + plot_h - top).max(0.0),
                COLORS[i],
                escape(&report.label)
            );
        }
        let _ = write!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{name}</text>"#,
            gx + group_w * 0.4,
            TOP + plot_h + 16.0
        );
    }
    // Legend with throughput.
    for (i, report) in reports.iter().enumerate() {
        let ly = TOP + plot_h + 36.0 + 16.0 * i as f64;
        let _ = write!(
            svg,
            r#"<rect x="{LEFT}" y="{:.1}" width="10" height="10" fill="{}"/><text x="{}" y="{:.1}">{} — {:.0} req/s, {} failures</text>"#,
            ly - 9.0,
            COLORS[i],
            LEFT + 16.0,
            ly,
            escape(&report.label),
            report.requests_per_sec,
            report.failures()
        );
    }
    svg.push_str("</svg>\n");
    svg
}

fn format_ms(v: f64) -> String {
    if v >= 1.0 {
        format!("{v:.0}")
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Latency, Mode, Protocol};

    fn report(label: &str, p50: f64) -> Report {
        Report {
            label: label.into(),
            protocol: Protocol::Http1,
            mode: Mode::Closed,
            connections: 32,
            duration_secs: 10.0,
            requests: 1000,
            requests_per_sec: 100.0,
            latency_ms: Latency {
                p50,
                p90: p50 * 2.0,
                p99: p50 * 4.0,
                p999: p50 * 8.0,
                max: p50 * 9.0,
                mean: p50,
            },
            statuses: Default::default(),
            errors: Default::default(),
        }
    }

    #[test]
    fn the_chart_names_every_run_and_percentile() {
        let svg = latency_svg(
            "hello <h1>",
            &[report("edge-node", 0.5), report("wasmtime & co", 3.0)],
        );
        assert!(svg.starts_with("<svg"));
        assert!(svg.trim_end().ends_with("</svg>"));
        for needle in [
            "edge-node",
            "wasmtime &amp; co",
            "hello &lt;h1&gt;",
            "p99.9",
            "100 req/s",
        ] {
            assert!(svg.contains(needle), "{needle} missing");
        }
        // Four percentiles × two runs.
        assert_eq!(svg.matches("<title>").count(), 8);
    }
}
