//! `edgectl kv`: a tenant's key-value stores, their links to apps, and
//! their entries. Values are bytes: `put` reads stdin (or a file) byte for
//! byte, `get` writes them to stdout (or a file) unchanged. Keys travel as
//! a percent-encoded query value, so any key (`/`, `..`, spaces) names
//! exactly itself.

use std::io::{Read, Write};
use std::path::PathBuf;

use clap::Subcommand;
use edge_common::kv::{KvKeyList, KvLinkList, KvStore, KvStoreList, NewKvStore};
use reqwest::Method;

use crate::client::{Api, Body, Failure};

#[derive(Subcommand)]
pub enum KvCommand {
    /// Create a store.
    Create { name: String },
    /// The tenant's stores: keys, bytes and the apps linking each.
    Stores,
    /// Drop a store and all its data (refused while an app links it).
    Drop { name: String },
    /// Let an app open a store.
    Link { app: String, store: String },
    /// Stop an app opening a store.
    Unlink { app: String, store: String },
    /// Write a key's value to stdout (or --output FILE), byte for byte.
    Get {
        store: String,
        key: String,
        #[arg(long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Set a key to stdin's bytes (or --from-file PATH's), unchanged.
    Put {
        store: String,
        key: String,
        #[arg(long, value_name = "PATH")]
        from_file: Option<PathBuf>,
    },
    /// Delete a key.
    Delete { store: String, key: String },
    /// The store's keys (with --prefix, those starting with it), one a
    /// line, in byte order; follows the pages to the end.
    List {
        store: String,
        #[arg(long, default_value = "")]
        prefix: String,
    },
}

pub async fn kv(api: &Api, command: KvCommand) -> Result<(), Failure> {
    match command {
        KvCommand::Create { name } => {
            let store: KvStore = api
                .json(Method::POST, &["kv"], &NewKvStore { name })
                .await?;
            println!("created key-value store {}", store.name);
        }
        KvCommand::Stores => {
            let list: KvStoreList = api.get(&["kv"]).await?;
            for s in list.stores {
                let apps: Vec<&str> = s.apps.iter().map(|a| a.as_str()).collect();
                println!(
                    "{}\t{} keys\t{} bytes\tapps: {}",
                    s.name,
                    s.keys,
                    s.bytes,
                    if apps.is_empty() {
                        "-".to_string()
                    } else {
                        apps.join(",")
                    }
                );
            }
        }
        KvCommand::Drop { name } => {
            api.raw(Method::DELETE, &["kv", &name], &[], None).await?;
            println!("dropped key-value store {name}");
        }
        KvCommand::Link { app, store } => {
            let _: KvLinkList = api
                .send(Method::PUT, &["apps", &app, "kv", &store], Body::<()>::None)
                .await?;
            println!("{app} may open key-value store {store}");
        }
        KvCommand::Unlink { app, store } => {
            let _: KvLinkList = api
                .send(
                    Method::DELETE,
                    &["apps", &app, "kv", &store],
                    Body::<()>::None,
                )
                .await?;
            println!("{app} no longer opens key-value store {store}");
        }
        KvCommand::Get { store, key, output } => {
            let value = api
                .raw(
                    Method::GET,
                    &["kv", &store, "entry"],
                    &[("key", &key)],
                    None,
                )
                .await?;
            match output {
                Some(path) => std::fs::write(&path, &value)
                    .map_err(|e| Failure(format!("{}: {e}", path.display())))?,
                None => {
                    let mut out = std::io::stdout().lock();
                    out.write_all(&value)?;
                    out.flush()?;
                }
            }
        }
        KvCommand::Put {
            store,
            key,
            from_file,
        } => {
            let value = match from_file {
                Some(path) => {
                    std::fs::read(&path).map_err(|e| Failure(format!("{}: {e}", path.display())))?
                }
                None => {
                    let mut value = Vec::new();
                    std::io::stdin().lock().read_to_end(&mut value)?;
                    value
                }
            };
            let n = value.len();
            api.raw(
                Method::PUT,
                &["kv", &store, "entry"],
                &[("key", &key)],
                Some(value),
            )
            .await?;
            eprintln!("{store}: set {key} ({n} bytes)");
        }
        KvCommand::Delete { store, key } => {
            api.raw(
                Method::DELETE,
                &["kv", &store, "entry"],
                &[("key", &key)],
                None,
            )
            .await?;
            eprintln!("{store}: deleted {key}");
        }
        KvCommand::List { store, prefix } => {
            let mut cursor: Option<String> = None;
            let mut out = std::io::stdout().lock();
            loop {
                let mut query = vec![("prefix", prefix.as_str())];
                if let Some(c) = &cursor {
                    query.push(("cursor", c.as_str()));
                }
                let bytes = api
                    .raw(Method::GET, &["kv", &store, "keys"], &query, None)
                    .await?;
                let page: KvKeyList = serde_json::from_slice(&bytes)
                    .map_err(|e| Failure(format!("the API's key list is not understood: {e}")))?;
                for key in &page.keys {
                    writeln!(out, "{key}")?;
                }
                match page.cursor {
                    Some(next) => cursor = Some(next),
                    None => break,
                }
            }
        }
    }
    Ok(())
}
