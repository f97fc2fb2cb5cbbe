//! Wake-ups across replicas. Every transaction that bumps the revision
//! also calls `pg_notify(CHANNEL, <new revision>)`, which PostgreSQL
//! delivers at commit to every session listening on the channel. Each
//! replica keeps one such session ([`follow_revisions`]) and hands what it
//! hears to its sync hub, so a node long-polling replica A wakes for a
//! deploy made through replica B as soon as for one made through A: no
//! polling of the database.

use std::time::Duration;

use futures::StreamExt;
use tokio_postgres::{AsyncMessage, NoTls};

/// The channel revision bumps are announced on.
pub const CHANNEL: &str = "edge_revision";

/// Reconnection backoff of the listening session.
const MIN_RETRY: Duration = Duration::from_millis(200);
const MAX_RETRY: Duration = Duration::from_secs(5);

/// Listens for revisions committed by any replica and calls `on_revision`
/// with each, for as long as the future is polled (drop it to stop). On
/// (re)connecting it also reads the current revision, since announcements
/// made while no session listened are gone.
pub async fn follow_revisions(
    config: tokio_postgres::Config,
    on_revision: impl Fn(u64) + Send + Sync + 'static,
) {
    follow(
        config,
        CHANNEL,
        "SELECT value FROM revision WHERE id = 1",
        on_revision,
    )
    .await;
}

/// As [`follow_revisions`], for the key-value seqs committed by any
/// replica (announced on `kv::KV_CHANNEL`), which wake the change-stream
/// long polls.
pub async fn follow_kv_seqs(
    config: tokio_postgres::Config,
    on_seq: impl Fn(u64) + Send + Sync + 'static,
) {
    follow(
        config,
        super::kv::KV_CHANNEL,
        "SELECT value FROM kv_seq WHERE id = 1",
        on_seq,
    )
    .await;
}

/// Listens on `channel` for numbers, reading `current` on each
/// (re)connection.
async fn follow(
    config: tokio_postgres::Config,
    channel: &'static str,
    current: &'static str,
    on_revision: impl Fn(u64) + Send + Sync + 'static,
) {
    let on_revision = std::sync::Arc::new(on_revision);
    let mut retry = MIN_RETRY;
    loop {
        match listen_once(&config, channel, current, on_revision.clone()).await {
            // The session ended after working: start the backoff over.
            Ok(()) => retry = MIN_RETRY,
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?retry, "replica wake-ups: listening session failed");
                retry = (retry * 2).min(MAX_RETRY);
            }
        }
        tokio::time::sleep(retry).await;
    }
}

/// One listening session, until its connection fails.
async fn listen_once(
    config: &tokio_postgres::Config,
    channel: &'static str,
    current_query: &'static str,
    on_revision: std::sync::Arc<impl Fn(u64) + Send + Sync + 'static>,
) -> Result<(), tokio_postgres::Error> {
    let (client, mut connection) = config.connect(NoTls).await?;
    // The connection's messages (notifications among them) only arrive
    // while it is polled: drive it in a task of its own, so the client can
    // send LISTEN meanwhile.
    let heard = on_revision.clone();
    let mut driver = tokio::spawn(async move {
        let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = messages.next().await {
            match message? {
                AsyncMessage::Notification(n) if n.channel() == channel => {
                    match n.payload().parse::<u64>() {
                        Ok(revision) => heard(revision),
                        Err(_) => tracing::warn!(
                            payload = n.payload(),
                            "replica wake-ups: unreadable revision"
                        ),
                    }
                }
                _ => {}
            }
        }
        Ok::<(), tokio_postgres::Error>(())
    });
    let listening = async {
        client.batch_execute(&format!("LISTEN {channel}")).await?;
        let row = client.query_one(current_query, &[]).await?;
        let current: i64 = row.try_get(0)?;
        on_revision(u64::try_from(current).unwrap_or(0));
        Ok::<(), tokio_postgres::Error>(())
    };
    let ended = tokio::select! {
        result = listening => match result {
            Ok(()) => (&mut driver).await,
            Err(e) => {
                driver.abort();
                return Err(e);
            }
        },
        ended = &mut driver => ended,
    };
    // `client` lives until here: dropping it would close the session.
    drop(client);
    match ended {
        Ok(result) => result,
        // The driver task panicked or was cancelled: treat as a lost session.
        Err(_) => Ok(()),
    }
}
