//! `edgectl`: the tenant's command line for the control plane API.
//!
//! Every API error is printed as one line (`edgectl: <message> [<code>]`)
//! with a non-zero exit. Requests and answers are the API's own types
//! (`edge_common::api`), shared with the server.

mod cli;
mod client;
mod commands;
mod compression;
mod kv;
mod logs;
mod new;
mod outbound;
mod secrets;
mod show;
mod wait;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::Cli;
use crate::client::Failure;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Offline: no API address or token needed.
    if let cli::Command::New(args) = &cli.command {
        return match new::run(args) {
            Ok((root, next)) => {
                println!("created {}\nnext: {next}", root.display());
                ExitCode::SUCCESS
            }
            Err(err) => {
                eprintln!("edgectl: {err}");
                ExitCode::FAILURE
            }
        };
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("edgectl: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(commands::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure(message)) => {
            eprintln!("edgectl: {message}");
            ExitCode::FAILURE
        }
    }
}
