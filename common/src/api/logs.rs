//! Live logs: the objects `GET /v1/apps/{app}/logs` streams (one JSON
//! object per line, `application/x-ndjson`), the batches nodes post to
//! `POST /v1/logs`, and the `status` filter. The node builds them, the
//! control plane keeps and filters them, `edgectl logs` prints them: one
//! type on every side.

use serde::{Deserialize, Serialize};

use crate::names::{AppName, TenantId};

/// Lines in one batch a node posts, at most.
pub const MAX_BATCH_LINES: usize = 2000;
/// A batch's body, at most.
pub const MAX_BATCH_BYTES: usize = 1 << 20;
/// A guest's line (and an access line's path) is cut to this, and marked
/// `cut`.
pub const MAX_LINE_BYTES: usize = 4096;
/// The short fields a node sends are cut to these: nothing a node (or a
/// guest through it) sends grows a stored line past its bound.
pub const MAX_REQUEST_ID_BYTES: usize = 64;
pub const MAX_METHOD_BYTES: usize = 32;
pub const MAX_CACHE_BYTES: usize = 16;
pub const MAX_ERROR_CODE_BYTES: usize = 64;
pub const MAX_NODE_BYTES: usize = 128;

/// One object of the stream, told apart by its `type`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum LogEvent {
    /// A line the guest wrote to stdout or stderr.
    Log(GuestLine),
    /// One request of the app, as it completed.
    Access(AccessLine),
    /// Lines a node did not ship (the tenant's rate, or a full queue).
    Dropped(DroppedLines),
    /// Sent every ~15 s while nothing else is, so that a client that went
    /// away is noticed; carries nothing.
    Keepalive { time_ms: u64 },
}

impl LogEvent {
    /// When it happened (milliseconds since the Unix epoch).
    pub fn time_ms(&self) -> u64 {
        match self {
            LogEvent::Log(l) => l.time_ms,
            LogEvent::Access(a) => a.time_ms,
            LogEvent::Dropped(d) => d.time_ms,
            LogEvent::Keepalive { time_ms } => *time_ms,
        }
    }

    /// The node it came from (none for a keep-alive).
    pub fn node(&self) -> Option<&str> {
        match self {
            LogEvent::Log(l) => Some(&l.node),
            LogEvent::Access(a) => Some(&a.node),
            LogEvent::Dropped(d) => Some(&d.node),
            LogEvent::Keepalive { .. } => None,
        }
    }

    /// Sets the node: the control plane writes the authenticated node's
    /// name over whatever a batch said (cut to [`MAX_NODE_BYTES`]).
    pub fn set_node(&mut self, node: &str) {
        let mut node = node.to_string();
        cut_to(&mut node, MAX_NODE_BYTES);
        match self {
            LogEvent::Log(l) => l.node = node,
            LogEvent::Access(a) => a.node = node,
            LogEvent::Dropped(d) => d.node = node,
            LogEvent::Keepalive { .. } => {}
        }
    }

    /// Moves the time into `[min_ms, max_ms]`: a node's clock is its own,
    /// and the control plane keeps and shows lines by time.
    pub fn clamp_time(&mut self, min_ms: u64, max_ms: u64) {
        let time = match self {
            LogEvent::Log(l) => &mut l.time_ms,
            LogEvent::Access(a) => &mut a.time_ms,
            LogEvent::Dropped(d) => &mut d.time_ms,
            LogEvent::Keepalive { time_ms } => time_ms,
        };
        *time = (*time).clamp(min_ms, max_ms.max(min_ms));
    }

    /// The `kind` a store keeps it under.
    pub fn kind(&self) -> &'static str {
        match self {
            LogEvent::Log(_) => "log",
            LogEvent::Access(_) => "access",
            LogEvent::Dropped(_) => "dropped",
            LogEvent::Keepalive { .. } => "keepalive",
        }
    }

    /// Cuts every string field a node sends to its bound (a guest's line
    /// and a path to [`MAX_LINE_BYTES`], the short ones to theirs), on a
    /// character boundary; whether anything was cut (a guest line then
    /// says `cut`).
    pub fn bound(&mut self) -> bool {
        match self {
            LogEvent::Log(l) => {
                let cut = cut_to(&mut l.line, MAX_LINE_BYTES)
                    | cut_to(&mut l.request_id, MAX_REQUEST_ID_BYTES)
                    | cut_to(&mut l.node, MAX_NODE_BYTES);
                l.cut |= cut;
                cut
            }
            LogEvent::Access(a) => {
                cut_to(&mut a.path, MAX_LINE_BYTES)
                    | cut_to(&mut a.method, MAX_METHOD_BYTES)
                    | cut_to(&mut a.request_id, MAX_REQUEST_ID_BYTES)
                    | cut_to(&mut a.cache, MAX_CACHE_BYTES)
                    | cut_to(&mut a.node, MAX_NODE_BYTES)
                    | match &mut a.error_code {
                        Some(code) => cut_to(code, MAX_ERROR_CODE_BYTES),
                        None => false,
                    }
            }
            LogEvent::Dropped(d) => cut_to(&mut d.node, MAX_NODE_BYTES),
            LogEvent::Keepalive { .. } => false,
        }
    }
}

fn cut_to(s: &mut String, max: usize) -> bool {
    if s.len() <= max {
        return false;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.truncate(end);
    true
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GuestStream {
    Stdout,
    Stderr,
}

impl GuestStream {
    pub fn as_str(self) -> &'static str {
        match self {
            GuestStream::Stdout => "stdout",
            GuestStream::Stderr => "stderr",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestLine {
    pub time_ms: u64,
    #[serde(default)]
    pub node: String,
    pub app: AppName,
    /// The request's id, as in its `x-edge-request-id` header.
    pub request_id: String,
    pub stream: GuestStream,
    pub line: String,
    /// The line was longer than the node's or the control plane's limit
    /// and was cut.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cut: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessLine {
    pub time_ms: u64,
    #[serde(default)]
    pub node: String,
    pub app: AppName,
    pub request_id: String,
    pub method: String,
    /// The path and query.
    pub path: String,
    pub status: u16,
    /// From the request's arrival to its response's last byte.
    pub duration_ms: u64,
    /// How the cache answered: `hit`, `miss`, `stale`, `revalidated`,
    /// `bypass`, or `none` (no cache on the node).
    pub cache: String,
    /// Response body bytes sent.
    pub bytes: u64,
    /// The stable `x-edge-error` code of a refusal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DroppedLines {
    #[serde(default)]
    pub node: String,
    pub app: AppName,
    pub count: u64,
    pub time_ms: u64,
    /// Why, when the control plane dropped them (none: the node did, over
    /// the tenant's rate or its queue's bound).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<DropReason>,
}

/// Why the control plane did not pass lines on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DropReason {
    /// Over the tenant's rate on the control plane (all its nodes).
    FleetRate,
    /// The follower fell behind and the tenant's bound pruned them first.
    Lagging,
    /// An answer without `follow` stops at its byte bound: these are kept
    /// but not sent.
    Truncated,
}

/// The `node` of a notice the control plane makes itself.
pub const CONTROL_PLANE_NODE: &str = "control-plane";

/// One line of a batch: whose it is, and the line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShippedLine {
    pub tenant: TenantId,
    pub event: LogEvent,
}

/// `POST /v1/logs` (node tokens only): lines of tailed apps. The node is
/// the token's subject, never a field of the body.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogBatch {
    pub lines: Vec<ShippedLine>,
}

/// The answer to a batch: what was kept, and what was not (lines of apps
/// nobody tails, or over a bound).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchAccepted {
    pub accepted: u64,
    pub dropped: u64,
}

/// `status=5xx,404`: which access lines to show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusFilter(Vec<StatusMatch>);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StatusMatch {
    Class(u16),
    Exact(u16),
}

/// Terms of one `status` filter, at most.
const MAX_STATUS_TERMS: usize = 16;

impl StatusFilter {
    /// `1xx` to `5xx` and exact codes 100 to 599, separated by commas.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut terms = Vec::new();
        for term in text.split(',') {
            let term = term.trim().to_ascii_lowercase();
            let parsed = match term.as_bytes() {
                [c @ b'1'..=b'5', b'x', b'x'] => StatusMatch::Class(u16::from(c - b'0')),
                [b'1'..=b'5', b'0'..=b'9', b'0'..=b'9'] => {
                    StatusMatch::Exact(term.parse().map_err(|_| bad_status(&term))?)
                }
                _ => return Err(bad_status(&term)),
            };
            terms.push(parsed);
        }
        if terms.len() > MAX_STATUS_TERMS {
            return Err(format!(
                "status: at most {MAX_STATUS_TERMS} terms, separated by commas"
            ));
        }
        Ok(Self(terms))
    }

    pub fn matches(&self, status: u16) -> bool {
        self.0.iter().any(|m| match *m {
            StatusMatch::Class(class) => status / 100 == class,
            StatusMatch::Exact(code) => status == code,
        })
    }
}

fn bad_status(term: &str) -> String {
    let shown: String = term.chars().take(16).collect();
    format!("status: `{shown}` is neither a class (1xx to 5xx) nor a code (100 to 599)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_tagged_by_type() {
        let event = LogEvent::Dropped(DroppedLines {
            node: "n1".into(),
            app: AppName::try_from("hello".to_string()).unwrap(),
            count: 3,
            time_ms: 5,
            reason: None,
        });
        assert_eq!(
            serde_json::to_string(&event).unwrap(),
            r#"{"type":"dropped","node":"n1","app":"hello","count":3,"time_ms":5}"#
        );
        let keepalive: LogEvent =
            serde_json::from_str(r#"{"type":"keepalive","time_ms":1}"#).unwrap();
        assert_eq!(keepalive, LogEvent::Keepalive { time_ms: 1 });
    }

    #[test]
    fn status_filters() {
        let f = StatusFilter::parse("5xx,404").unwrap();
        assert!(f.matches(503) && f.matches(404) && !f.matches(200) && !f.matches(400));
        for bad in ["", "6xx", "5x", "600", "099", "abc", "5xx,"] {
            assert!(StatusFilter::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn long_lines_are_cut_on_a_character_boundary() {
        let mut event = LogEvent::Log(GuestLine {
            time_ms: 0,
            node: String::new(),
            app: AppName::try_from("a".to_string()).unwrap(),
            request_id: "1".into(),
            stream: GuestStream::Stdout,
            line: "é".repeat(MAX_LINE_BYTES),
            cut: false,
        });
        assert!(event.bound());
        let LogEvent::Log(line) = event else {
            unreachable!()
        };
        assert!(line.cut && line.line.len() <= MAX_LINE_BYTES);
    }
}
