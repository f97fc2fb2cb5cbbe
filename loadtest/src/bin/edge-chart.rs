//! `edge-chart`: draw the latency percentiles of `edge-load --json` reports
//! as one SVG.
//!
//!   edge-chart --title "hello, h1" a.json b.json c.json -o hello.svg

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use edge_load::Report;

#[derive(Parser)]
struct Args {
    /// Reports written by `edge-load --json`.
    #[arg(required = true)]
    reports: Vec<PathBuf>,
    #[arg(long, default_value = "latency")]
    title: String,
    #[arg(short, long)]
    output: PathBuf,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let reports = args
        .reports
        .iter()
        .map(|path| {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            serde_json::from_str::<Report>(&text)
                .with_context(|| format!("{} is not an edge-load report", path.display()))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    std::fs::write(
        &args.output,
        edge_load::chart::latency_svg(&args.title, &reports),
    )
    .with_context(|| format!("cannot write {}", args.output.display()))?;
    Ok(())
}
