//! Logging for the platform's binaries (`edge-node`, `edge-cp`): one event
//! per line on stderr, filtered by `EDGE_LOG` (`info` by default), as text
//! (colours only on a terminal) or as JSON objects for a log shipper
//! (`--log-format json`). Stdout stays for what scripts read (addresses,
//! tokens).
//!
//! A JSON line has `timestamp` (RFC 3339, UTC), `level`, `target` and
//! `message`, then every field of the event and of the spans it is in,
//! at the top level: `{"timestamp":"…","level":"INFO","target":"edge_cp",
//! "message":"control plane state opened","revision":4}`. The event's own
//! field wins over a span's of the same name; the four fixed names win
//! over both.

use std::fmt;
use std::str::FromStr;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// `--log-format`: how each log line is written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines (the default).
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

impl LogFormat {
    pub const NAMES: [&'static str; 2] = ["text", "json"];
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown log format `{0}`: use text or json")]
pub struct UnknownLogFormat(String);

impl FromStr for LogFormat {
    type Err = UnknownLogFormat;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "text" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            other => Err(UnknownLogFormat(other.to_string())),
        }
    }
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Text => "text",
            Self::Json => "json",
        })
    }
}

fn env_filter() -> tracing_subscriber::EnvFilter {
    tracing_subscriber::EnvFilter::try_from_env("EDGE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"))
}

/// Installs the process's logger. Call once, first thing after parsing
/// the command line.
pub fn init(format: LogFormat) {
    install(format, std::io::stderr);
}

/// Keeps a background writer going; dropping it flushes what is queued.
pub type LogGuard = tracing_appender::non_blocking::WorkerGuard;

/// Like [`init`], but the events of `target` go through a background
/// writer that drops lines (lossy) when stderr falls behind
/// (`tracing_appender::non_blocking`), rather than make the caller wait:
/// for the node's access log, one line per request, which a slow stderr
/// must never slow. Everything else is written as [`init`] writes it.
/// Keep the guard until exit.
pub fn init_with_lossy_target(format: LogFormat, target: &'static str) -> LogGuard {
    use tracing_subscriber::fmt::writer::MakeWriterExt;
    let (lossy, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(true)
        .finish(std::io::stderr());
    let writer = std::io::stderr
        .with_filter(move |m: &tracing::Metadata<'_>| m.target() != target)
        .or_else(lossy);
    install(format, writer);
    guard
}

fn install<W>(format: LogFormat, writer: W)
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    let builder = tracing_subscriber::fmt()
        .with_env_filter(env_filter())
        .with_writer(writer);
    match format {
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        LogFormat::Json => builder
            .with_ansi(false)
            .fmt_fields(JsonFields::new())
            .event_format(JsonLines)
            .init(),
    }
}

/// Text logging: [`init`] with [`LogFormat::Text`].
pub fn init_stderr() {
    init(LogFormat::Text);
}

/// The JSON line format. Written here rather than taken from
/// `tracing_subscriber`'s own `json()`, which nests span fields under
/// `span`/`spans` and event fields under `fields` unless flattened, and
/// cannot flatten spans: a log shipper wants every field at the top level.
pub struct JsonLines;

const FIXED: [&str; 4] = ["timestamp", "level", "target", "message"];

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut fields = Map::new();
        // Outermost span first, so an inner span's field wins.
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                let extensions = span.extensions();
                let Some(formatted) = extensions.get::<FormattedFields<N>>() else {
                    continue;
                };
                if let Ok(Value::Object(span_fields)) =
                    serde_json::from_str::<Value>(&formatted.fields)
                {
                    fields.extend(span_fields);
                }
            }
        }
        let mut visitor = FieldVisitor(Map::new());
        event.record(&mut visitor);
        let mut event_fields = visitor.0;
        let message = event_fields
            .remove("message")
            .unwrap_or_else(|| Value::String(String::new()));
        fields.extend(event_fields);

        let mut timestamp = String::new();
        SystemTime.format_time(&mut Writer::new(&mut timestamp))?;
        let metadata = event.metadata();
        let head = [
            ("timestamp", Value::String(timestamp)),
            ("level", Value::String(metadata.level().to_string())),
            ("target", Value::String(metadata.target().to_string())),
            ("message", message),
        ];
        let mut line = String::from("{");
        let rest = fields
            .into_iter()
            .filter(|(name, _)| !FIXED.contains(&name.as_str()));
        for (i, (name, value)) in head
            .into_iter()
            .map(|(name, value)| (name.to_string(), value))
            .chain(rest)
            .enumerate()
        {
            if i > 0 {
                line.push(',');
            }
            line.push_str(&Value::String(name).to_string());
            line.push(':');
            line.push_str(&value.to_string());
        }
        line.push('}');
        writeln!(writer, "{line}")
    }
}

/// An event's fields as JSON values: numbers and booleans stay typed,
/// everything else is its `Display` (strings, errors) or `Debug` form.
struct FieldVisitor(Map<String, Value>);

impl Visit for FieldVisitor {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().into(), Value::String(format!("{value:?}")));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0
            .insert(field.name().into(), Value::String(value.into()));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), Value::from(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().into(), Value::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), Value::from(value));
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.0
            .insert(field.name().into(), Value::String(value.to_string()));
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use super::*;

    /// Collects what the subscriber writes.
    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .map_err(|_| std::io::Error::other("poisoned"))?
                .extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn json_lines_carry_fixed_names_and_flat_span_and_event_fields() {
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .fmt_fields(JsonFields::new())
            .event_format(JsonLines)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let outer = tracing::info_span!("request", tenant = "acme", app = "outer");
            let _outer = outer.enter();
            let inner = tracing::info_span!("stage", app = "inner", attempt = 2u64);
            let _inner = inner.enter();
            tracing::warn!(
                status = 503u64,
                ok = false,
                target = "x",
                "upstream \"down\""
            );
        });
        let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 1, "{text}");
        let line: Value = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(line["level"], "WARN");
        assert_eq!(line["message"], "upstream \"down\"");
        assert_eq!(
            line["target"],
            module_path!(),
            "a field cannot replace the target"
        );
        assert_eq!(line["tenant"], "acme");
        assert_eq!(line["app"], "inner", "the inner span wins");
        assert_eq!(line["attempt"], 2);
        assert_eq!(line["status"], 503);
        assert_eq!(line["ok"], false);
        let timestamp = line["timestamp"].as_str().unwrap();
        assert!(
            timestamp.len() >= 20 && timestamp.ends_with('Z') && timestamp.contains('T'),
            "{timestamp}"
        );
        assert!(lines[0].starts_with("{\"timestamp\":"), "{}", lines[0]);
    }

    #[test]
    fn log_formats_parse_by_name_and_refuse_others() {
        for name in LogFormat::NAMES {
            assert_eq!(name.parse::<LogFormat>().unwrap().to_string(), name);
        }
        let err = "yaml".parse::<LogFormat>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown log format `yaml`: use text or json"
        );
    }
}
