//! Structured logging: one JSON object per line on stdout, which the node
//! logs with the app, tenant and request id, and `edgectl logs APP` shows
//! live.
//!
//! ```
//! use edge_sdk::log;
//!
//! log::info("order placed").field("order", 42).field("paid", true).emit();
//! // {"level":"info","msg":"order placed","order":42,"paid":true}
//! assert_eq!(
//!     log::warn("slow origin").field("ms", 812.5).to_line(),
//!     r#"{"level":"warn","msg":"slow origin","ms":812.5}"#
//! );
//! ```

use std::fmt::Write as _;
use std::io::Write as _;

/// A value of a log field.
pub trait LogValue {
    /// Appends the value as JSON.
    fn write_json(&self, out: &mut String);
}

fn write_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

impl LogValue for str {
    fn write_json(&self, out: &mut String) {
        write_string(out, self);
    }
}

impl LogValue for String {
    fn write_json(&self, out: &mut String) {
        write_string(out, self);
    }
}

impl LogValue for bool {
    fn write_json(&self, out: &mut String) {
        out.push_str(if *self { "true" } else { "false" });
    }
}

macro_rules! number {
    ($($t:ty),*) => {$(
        impl LogValue for $t {
            fn write_json(&self, out: &mut String) {
                let _ = write!(out, "{self}");
            }
        }
    )*};
}
number!(i8, i16, i32, i64, isize, u8, u16, u32, u64, usize);

macro_rules! float {
    ($($t:ty),*) => {$(
        impl LogValue for $t {
            fn write_json(&self, out: &mut String) {
                // JSON has no NaN or infinity: those are logged as strings.
                if self.is_finite() {
                    let _ = write!(out, "{self}");
                } else {
                    write_string(out, &self.to_string());
                }
            }
        }
    )*};
}
float!(f32, f64);

impl<T: LogValue + ?Sized> LogValue for &T {
    fn write_json(&self, out: &mut String) {
        (**self).write_json(out);
    }
}

/// One log line being built; [`Line::emit`] writes it.
#[must_use = "a log line is written by .emit()"]
pub struct Line {
    json: String,
}

impl Line {
    fn new(level: &str, msg: &str) -> Self {
        let mut json = String::from("{\"level\":");
        write_string(&mut json, level);
        json.push_str(",\"msg\":");
        write_string(&mut json, msg);
        Line { json }
    }

    /// Adds `name: value` (a later field of the same name does not
    /// replace an earlier one; both are written).
    pub fn field(mut self, name: &str, value: impl LogValue) -> Self {
        self.json.push(',');
        write_string(&mut self.json, name);
        self.json.push(':');
        value.write_json(&mut self.json);
        self
    }

    /// The line as it will be written, without its newline.
    pub fn to_line(&self) -> String {
        format!("{}}}", self.json)
    }

    /// Writes the line to stdout.
    pub fn emit(self) {
        let mut line = self.to_line();
        line.push('\n');
        // One write per line, so lines from one request never interleave.
        let _ = std::io::stdout().lock().write_all(line.as_bytes());
    }
}

pub fn debug(msg: &str) -> Line {
    Line::new("debug", msg)
}
pub fn info(msg: &str) -> Line {
    Line::new("info", msg)
}
pub fn warn(msg: &str) -> Line {
    Line::new("warn", msg)
}
pub fn error(msg: &str) -> Line {
    Line::new("error", msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_json() {
        let line = error("quote \" back\\slash\nnewline\u{1}")
            .field("n", -3i64)
            .field("f", f64::NAN)
            .field("s", "x")
            .to_line();
        assert_eq!(
            line,
            r#"{"level":"error","msg":"quote \" back\\slash\nnewline\u0001","n":-3,"f":"NaN","s":"x"}"#
        );
    }
}
