//! `edgectl secrets`: set, list and delete an app's secrets. A value is
//! read from stdin or a file, never from the command line (where `ps` and
//! shell history would show it), and the API never sends one back.

use std::io::Read;
use std::path::PathBuf;

use clap::Subcommand;
use edge_common::api::{Revision, SecretList, SecretSet, SetSecret};
use edge_common::secrets::{MAX_SECRET_VALUE_BYTES, is_valid_key};
use reqwest::Method;

use crate::client::{Api, Failure};
use crate::show::date;

#[derive(Subcommand)]
pub enum SecretsCommand {
    /// Set a secret. The value is read from stdin (one trailing newline
    /// removed, so `echo value |` works) or, with --from-file, is the
    /// file's exact bytes. It must be UTF-8.
    Set {
        name: String,
        secret: String,
        /// Read the value from this file, byte for byte.
        #[arg(long, value_name = "PATH")]
        from_file: Option<PathBuf>,
    },
    /// The app's secret names and when each was last set (never values).
    List { name: String },
    /// Delete a secret.
    Delete { name: String, secret: String },
}

/// The API's rule, checked before anything is sent: a refused name costs
/// no round trip, and one like `..` never becomes a URL at all.
fn check_name(secret: &str) -> Result<(), Failure> {
    if is_valid_key(secret) {
        return Ok(());
    }
    Err(Failure(format!(
        "`{secret}` is not a secret name: use 1-256 letters, digits, `_`, `-` or `.`, starting with a letter, digit or `_` [secret-name-invalid]"
    )))
}

pub async fn secrets(api: &Api, command: SecretsCommand) -> Result<(), Failure> {
    if let SecretsCommand::Set { secret, .. } | SecretsCommand::Delete { secret, .. } = &command {
        check_name(secret)?;
    }
    match command {
        SecretsCommand::Set {
            name,
            secret,
            from_file,
        } => {
            let value = read_value(from_file)?;
            let set: SecretSet = api
                .json(
                    Method::PUT,
                    &["apps", &name, "secrets", &secret],
                    &SetSecret { value },
                )
                .await?;
            println!(
                "secret {} of {name} set (revision {})",
                set.secret.name, set.revision
            );
        }
        SecretsCommand::List { name } => {
            let list: SecretList = api.get(&["apps", &name, "secrets"]).await?;
            if list.secrets.is_empty() {
                println!("{name}: no secrets");
            }
            for s in list.secrets {
                println!("{}  updated {}", s.name, date(s.updated_unix));
            }
        }
        SecretsCommand::Delete { name, secret } => {
            let done: Revision = api
                .send(
                    Method::DELETE,
                    &["apps", &name, "secrets", &secret],
                    crate::client::Body::<()>::None,
                )
                .await?;
            println!(
                "secret {secret} of {name} deleted (revision {})",
                done.revision
            );
        }
    }
    Ok(())
}

/// The value: the file's bytes, or stdin's without one trailing `\n`
/// (what `echo` adds; anything else is kept). Read up to one byte past the API's limit, so an
/// endless stdin is refused rather than read forever.
fn read_value(from_file: Option<PathBuf>) -> Result<String, Failure> {
    let limit = MAX_SECRET_VALUE_BYTES as u64 + 1;
    let mut bytes = Vec::new();
    let from_stdin = from_file.is_none();
    match &from_file {
        Some(path) => std::fs::File::open(path)
            .and_then(|f| f.take(limit).read_to_end(&mut bytes))
            .map_err(|e| Failure(format!("{}: {e}", path.display())))?,
        None => std::io::stdin()
            .take(limit)
            .read_to_end(&mut bytes)
            .map_err(|e| Failure(format!("reading the value from stdin: {e}")))?,
    };
    if from_stdin && bytes.ends_with(b"\n") {
        bytes.pop();
    }
    if bytes.len() > MAX_SECRET_VALUE_BYTES {
        return Err(Failure(format!(
            "the value is over {MAX_SECRET_VALUE_BYTES} bytes, the most a secret may hold"
        )));
    }
    String::from_utf8(bytes).map_err(|_| Failure("the value is not UTF-8".into()))
}
