//! `edgectl logs APP`: an app's live log lines from every node (guest
//! stdout/stderr, one access line per request, drop notices), as the
//! control plane streams them (`GET /v1/apps/{app}/logs`, one JSON object
//! per line). Human-readable by default; `--json` prints each object as
//! received. Ctrl-C ends a `--follow` cleanly (the control plane then
//! deletes the tail). A `--follow` that hears nothing for 45 s (keep-alives
//! come every 15 s) or whose stream ends reconnects, asking for the lines
//! since the last one printed.

use std::borrow::Cow;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::Args;
use edge_common::api::{DropReason, LogEvent};
use edge_common::text::terminal_safe as clean;

use crate::client::{Api, Failure};

#[derive(Args)]
pub struct LogsArgs {
    /// The app.
    pub name: String,
    /// Keep streaming new lines until interrupted (Ctrl-C).
    #[arg(long, short)]
    pub follow: bool,
    /// Only access lines with these statuses: classes and codes,
    /// comma-separated (`5xx`, `404`, `4xx,500`), and drop notices.
    #[arg(long, value_name = "STATUS")]
    pub status: Option<String>,
    /// Only lines from this node.
    #[arg(long, value_name = "NAME")]
    pub node: Option<String>,
    /// Start with the lines of this last while (up to 10m; only lines
    /// shipped while someone was tailing the app are kept).
    #[arg(long, value_name = "DURATION")]
    pub since: Option<humantime::Duration>,
    /// Print each object as received, one JSON object per line.
    #[arg(long)]
    pub json: bool,
}

/// A line longer than this from the server is not the API's.
const MAX_LINE_BYTES: usize = 64 << 10;
/// The control plane sends a keep-alive every 15 s: three missed, and the
/// stream is taken for dead (a replica gone without closing it).
const READ_IDLE: Duration = Duration::from_secs(45);
/// `--since` reaches back at most this far (the control plane keeps lines
/// no longer).
const MAX_SINCE: Duration = Duration::from_secs(600);

pub async fn logs(api: &Api, args: LogsArgs) -> Result<(), Failure> {
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let mut since = args.since.map(Duration::from);
    // The newest time printed: a `--follow` that reconnects asks for the
    // lines since it (a line at that very time may show twice).
    let mut last_ms: Option<u64> = None;
    loop {
        let query = query(&args, since);
        let path = ["apps", args.name.as_str(), "logs"];
        let mut response = tokio::select! {
            _ = &mut ctrl_c => return Ok(()),
            response = api.stream(&path, &query) => response?,
        };
        let mut pending: Vec<u8> = Vec::new();
        let ended = loop {
            let chunk = tokio::select! {
                _ = &mut ctrl_c => return Ok(()),
                chunk = tokio::time::timeout(READ_IDLE, response.chunk()) => chunk,
            };
            let chunk = match chunk {
                Ok(Ok(Some(chunk))) => chunk,
                Ok(Ok(None)) => break Ended::Closed,
                Ok(Err(e)) => break Ended::Broken(e.to_string()),
                Err(_) => break Ended::Idle,
            };
            pending.extend_from_slice(&chunk);
            while let Some(end) = pending.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = pending.drain(..=end).collect();
                if let Some(ms) = print_line(&line[..end], args.json)? {
                    last_ms = Some(last_ms.map_or(ms, |last| last.max(ms)));
                }
            }
            if pending.len() > MAX_LINE_BYTES {
                return Err(Failure("the log stream sent an over-long line".into()));
            }
        };
        if !args.follow {
            return match ended {
                Ended::Closed => {
                    if !pending.is_empty() {
                        print_line(&pending, args.json)?;
                    }
                    Ok(())
                }
                Ended::Broken(e) => Err(Failure(format!("the log stream broke: {e}"))),
                Ended::Idle => Err(Failure(format!(
                    "the control plane sent nothing for {} s",
                    READ_IDLE.as_secs()
                ))),
            };
        }
        let why = match ended {
            Ended::Closed => "the control plane ended the stream".to_string(),
            Ended::Broken(e) => format!("the log stream broke ({e})"),
            Ended::Idle => format!(
                "nothing from the control plane for {} s",
                READ_IDLE.as_secs()
            ),
        };
        eprintln!("edgectl: {why}; reconnecting");
        since = Some(since_last(last_ms));
        // A pause, so a control plane that ends every stream at once is
        // not asked again in a tight loop.
        tokio::select! {
            _ = &mut ctrl_c => return Ok(()),
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

enum Ended {
    Closed,
    Broken(String),
    Idle,
}

fn query(args: &LogsArgs, since: Option<Duration>) -> Vec<(&'static str, String)> {
    let mut query: Vec<(&str, String)> = Vec::new();
    if args.follow {
        query.push(("follow", "true".into()));
    }
    if let Some(status) = &args.status {
        query.push(("status", status.clone()));
    }
    if let Some(node) = &args.node {
        query.push(("node", node.clone()));
    }
    if let Some(since) = since {
        query.push(("since", format!("{}s", since.as_secs().max(1))));
    }
    query
}

/// How far back a reconnect asks: to the last line printed (whole
/// seconds, rounded up), or a few seconds if none was.
fn since_last(last_ms: Option<u64>) -> Duration {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let back = match last_ms {
        Some(last) => Duration::from_millis(now_ms.saturating_sub(last) + 999),
        None => Duration::from_secs(5),
    };
    back.min(MAX_SINCE)
}

/// Prints one object of the stream; its time if it was a line.
fn print_line(line: &[u8], json: bool) -> Result<Option<u64>, Failure> {
    if line.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let event: LogEvent = serde_json::from_slice(line)
        .map_err(|e| Failure(format!("the log stream sent an object not understood: {e}")))?;
    if matches!(event, LogEvent::Keepalive { .. }) {
        return Ok(None);
    }
    if json {
        // serde_json escapes what is below U+0020 (ESC, CR included) but
        // not U+007F to U+009F; a terminal may act on C1 codes, so they
        // are escaped too.
        println!("{}", escape_c1(&String::from_utf8_lossy(line)));
    } else if let Some(text) = human(&event) {
        println!("{text}");
    }
    Ok(Some(event.time_ms()))
}

fn escape_c1(text: &str) -> Cow<'_, str> {
    if !text.chars().any(|c| ('\u{7f}'..='\u{9f}').contains(&c)) {
        return Cow::Borrowed(text);
    }
    Cow::Owned(
        text.chars()
            .map(|c| {
                if ('\u{7f}'..='\u{9f}').contains(&c) {
                    format!("\\u{:04x}", c as u32)
                } else {
                    c.to_string()
                }
            })
            .collect(),
    )
}

/// A time as RFC 3339, or the raw number if it is past what that can
/// say (year 9999): never a panic on what a server sent.
fn time(ms: u64) -> String {
    // 10000-01-01T00:00:00Z: humantime's formatter fails from there on.
    const LAST_MS: u64 = 253_402_300_800_000;
    match UNIX_EPOCH.checked_add(Duration::from_millis(ms)) {
        Some(at) if ms < LAST_MS => humantime::format_rfc3339_millis(at).to_string(),
        _ => format!("@{ms}ms"),
    }
}

/// `time node request-id stream line`; access lines like a combined log.
/// Every string from the stream goes through [`clean`].
fn human(event: &LogEvent) -> Option<String> {
    Some(match event {
        LogEvent::Log(l) => format!(
            "{} {} {} {} {}{}",
            time(l.time_ms),
            clean(&l.node),
            clean(&l.request_id),
            l.stream.as_str(),
            clean(&l.line),
            if l.cut { " [cut]" } else { "" }
        ),
        LogEvent::Access(a) => format!(
            "{} {} {} \"{} {}\" {} {} {}ms cache={}{}",
            time(a.time_ms),
            clean(&a.node),
            clean(&a.request_id),
            clean(&a.method),
            clean(&a.path),
            a.status,
            a.bytes,
            a.duration_ms,
            clean(&a.cache),
            a.error_code
                .as_deref()
                .map(|c| format!(" error={}", clean(c)))
                .unwrap_or_default()
        ),
        LogEvent::Dropped(d) => {
            let why = match d.reason {
                None => "the app logs faster than its tenant's rate on the node",
                Some(DropReason::FleetRate) => {
                    "the app's tenant logs faster than its rate on the control plane"
                }
                Some(DropReason::Lagging) => "this follower fell behind and they were pruned",
                Some(DropReason::Truncated) => {
                    "over the answer's size bound; use a shorter --since or --follow"
                }
            };
            let verb = if d.reason == Some(DropReason::Truncated) {
                "lines not shown"
            } else {
                "lines dropped"
            };
            format!(
                "{} {} {verb} on {} ({why})",
                time(d.time_ms),
                d.count,
                clean(&d.node),
            )
        }
        LogEvent::Keepalive { .. } => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use edge_common::api::{AccessLine, GuestLine, GuestStream};

    #[test]
    fn control_and_bidi_characters_are_escaped() {
        assert_eq!(clean("plain text\tok"), "plain text\tok");
        assert_eq!(
            clean("a\u{1b}[2Jb\rc\u{7}d\u{9b}e"),
            "a\\u{1b}[2Jb\\u{d}c\\u{7}d\\u{9b}e"
        );
        assert_eq!(
            clean("x\u{202e}y\u{2066}z\u{2069}"),
            "x\\u{202e}y\\u{2066}z\\u{2069}"
        );
        assert_eq!(escape_c1("a\u{9b}b\u{7f}"), "a\\u009bb\\u007f");
    }

    #[test]
    fn every_string_field_of_the_human_form_is_escaped() {
        let evil = "\u{1b}]0;owned\u{7}\r";
        let line = LogEvent::Log(GuestLine {
            time_ms: 0,
            node: evil.into(),
            app: "a".parse().unwrap(),
            request_id: evil.into(),
            stream: GuestStream::Stdout,
            line: evil.into(),
            cut: false,
        });
        let access = LogEvent::Access(AccessLine {
            time_ms: 0,
            node: evil.into(),
            app: "a".parse().unwrap(),
            request_id: evil.into(),
            method: evil.into(),
            path: evil.into(),
            status: 200,
            duration_ms: 1,
            cache: evil.into(),
            bytes: 0,
            error_code: Some(evil.into()),
        });
        for event in [line, access] {
            let text = human(&event).unwrap();
            assert!(
                !text.chars().any(|c| c.is_control()),
                "{text:?} has a control character"
            );
        }
    }

    #[test]
    fn no_time_makes_it_panic() {
        for ms in [0, 1, 253_402_300_799_999, 253_402_300_800_000, u64::MAX] {
            assert!(!time(ms).is_empty());
        }
        assert_eq!(time(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(time(u64::MAX), format!("@{}ms", u64::MAX));
    }
}
