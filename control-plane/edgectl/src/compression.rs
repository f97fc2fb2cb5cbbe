//! `edgectl compression get|set APP`: an app's compression at the edge,
//! its own switch and threshold over the nodes' `[compression]` defaults.

use clap::Subcommand;
use edge_common::api::{AppCompression, CompressionSet};
use reqwest::Method;

use crate::client::{Api, Failure};

#[derive(Subcommand)]
pub enum CompressionCommand {
    /// Show the app's settings (`default`: the nodes' own).
    Get { name: String },
    /// Change the app's settings; what no flag names is kept.
    Set {
        name: String,
        /// Compress the app's answers for clients that accept it.
        #[arg(long, conflicts_with_all = ["off", "default"])]
        on: bool,
        /// Never compress the app's answers.
        #[arg(long, conflicts_with = "default")]
        off: bool,
        /// Answers shorter than this are sent as they are.
        #[arg(long, value_name = "N")]
        min_bytes: Option<u64>,
        /// Back to the nodes' defaults (switch and threshold), unless
        /// `--min-bytes` is given too.
        #[arg(long)]
        default: bool,
    },
}

pub async fn compression(api: &Api, command: CompressionCommand) -> Result<(), Failure> {
    let set: CompressionSet = match command {
        CompressionCommand::Get { name } => api.get(&["apps", &name, "compression"]).await?,
        CompressionCommand::Set {
            name,
            on,
            off,
            min_bytes,
            default,
        } => {
            let path: [&str; 3] = ["apps", &name, "compression"];
            let mut compression = if default {
                AppCompression::default()
            } else {
                let current: CompressionSet = api.get(&path).await?;
                current.compression
            };
            if on || off {
                compression.enabled = Some(on);
            }
            if min_bytes.is_some() {
                compression.min_bytes = min_bytes;
            }
            api.json(Method::PUT, &path, &compression).await?
        }
    };
    println!("{} (revision {})", summary(&set.compression), set.revision);
    Ok(())
}

/// The settings in a few words.
pub fn summary(compression: &AppCompression) -> String {
    let enabled = match compression.enabled {
        Some(true) => "on",
        Some(false) => "off",
        None => "default",
    };
    let min_bytes = compression
        .min_bytes
        .map_or_else(|| "default".to_string(), |n| n.to_string());
    format!("compression {enabled}, min_bytes {min_bytes}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summaries() {
        assert_eq!(
            summary(&AppCompression::default()),
            "compression default, min_bytes default"
        );
        assert_eq!(
            summary(&AppCompression {
                enabled: Some(false),
                min_bytes: Some(10)
            }),
            "compression off, min_bytes 10"
        );
    }
}
