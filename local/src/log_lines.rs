//! The JSON line of one log event, in the shape of `tracing-subscriber`'s JSON format
//! (`timestamp`, `level`, `fields`, `target`, the current `span` with its `name`), written
//! straight into the line. That format sends each field through serde and parses the span's
//! fields back from their text on every line: with three lines per delivery (one webhook) it
//! was 8 % of the server's CPU (docs/BENCHMARKS.md, "Fourth pass").

use std::fmt::{self, Write};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_log::NormalizeEvent;
use tracing_subscriber::fmt::format::JsonFields;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// Formats events as JSON lines. Span fields are kept by the subscriber's field formatter,
/// [`JsonFields`]: its text (a JSON object) is copied into the line as it is.
pub struct JsonLines;

impl<S> FormatEvent<S, JsonFields> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, JsonFields>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        // Records bridged from the `log` crate carry their own target and level.
        let normalized = event.normalized_metadata();
        let meta = normalized.as_ref().unwrap_or_else(|| event.metadata());
        writer.write_str("{\"timestamp\":\"")?;
        SystemTime.format_time(&mut writer)?;
        write!(writer, "\",\"level\":\"{}\",\"fields\":{{", meta.level())?;
        let mut fields = FieldWriter {
            out: &mut writer,
            first: true,
            result: Ok(()),
        };
        event.record(&mut fields);
        fields.result?;
        writer.write_str("},\"target\":")?;
        write_json_str(&mut writer, meta.target())?;
        let span = event
            .parent()
            .and_then(|id| ctx.span(id))
            .or_else(|| ctx.lookup_current());
        if let Some(span) = span {
            writer.write_str(",\"span\":{")?;
            let extensions = span.extensions();
            let stored = extensions
                .get::<FormattedFields<JsonFields>>()
                .map(|f| f.fields.trim())
                .unwrap_or_default();
            // `{"k":v,...}` from JsonFields: its entries, then the span's name.
            let entries = stored
                .strip_prefix('{')
                .and_then(|s| s.strip_suffix('}'))
                .unwrap_or_default();
            if !entries.is_empty() {
                writer.write_str(entries)?;
                writer.write_char(',')?;
            }
            writer.write_str("\"name\":")?;
            write_json_str(&mut writer, span.name())?;
            writer.write_char('}')?;
        }
        writer.write_str("}\n")
    }
}

/// Writes an event's fields as the entries of a JSON object.
struct FieldWriter<'a, 'w> {
    out: &'a mut Writer<'w>,
    first: bool,
    result: fmt::Result,
}

impl FieldWriter<'_, '_> {
    fn entry(&mut self, field: &Field, value: impl FnOnce(&mut Writer<'_>) -> fmt::Result) {
        if self.result.is_err() {
            return;
        }
        self.result = (|| {
            if !self.first {
                self.out.write_char(',')?;
            }
            self.first = false;
            write_json_str(self.out, field.name())?;
            self.out.write_char(':')?;
            value(self.out)
        })();
    }
}

impl Visit for FieldWriter<'_, '_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.entry(field, |out| write_json_str(out, value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.entry(field, |out| write!(out, "{value}"));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.entry(field, |out| write!(out, "{value}"));
    }
    // Past what a JSON reader keeps exactly in a number: a string, as tracing-subscriber does.
    fn record_i128(&mut self, field: &Field, value: i128) {
        self.entry(field, |out| write!(out, "\"{value}\""));
    }
    fn record_u128(&mut self, field: &Field, value: u128) {
        self.entry(field, |out| write!(out, "\"{value}\""));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.entry(field, |out| write!(out, "{value}"));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        // serde_json's spelling (`1.0`, `1e20`), as the library writes it; JSON has no NaN or
        // infinity, so those are null, as there.
        self.entry(field, |out| match serde_json::Number::from_f64(value) {
            Some(number) => write!(out, "{number}"),
            None => out.write_str("null"),
        });
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.entry(field, |out| write_json_display(out, value));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.entry(field, |out| {
            out.write_char('"')?;
            // A value whose Debug fails keeps what it wrote: the line stays JSON.
            let _ = write!(Escaped(out), "{value:?}");
            out.write_char('"')
        });
    }
}

fn write_json_display(out: &mut Writer<'_>, value: &dyn fmt::Display) -> fmt::Result {
    out.write_char('"')?;
    // A value whose Display fails keeps what it wrote: the line stays JSON.
    let _ = write!(Escaped(out), "{value}");
    out.write_char('"')
}

fn write_json_str(out: &mut Writer<'_>, value: &str) -> fmt::Result {
    out.write_char('"')?;
    Escaped(out).write_str(value)?;
    out.write_char('"')
}

/// Escapes what it is given for the inside of a JSON string.
struct Escaped<'a, 'w>(&'a mut Writer<'w>);

impl Write for Escaped<'_, '_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut plain = 0;
        for (i, byte) in s.bytes().enumerate() {
            let escape = match byte {
                b'"' => "\\\"",
                b'\\' => "\\\\",
                b'\n' => "\\n",
                b'\r' => "\\r",
                b'\t' => "\\t",
                0x08 => "\\b",
                0x0c => "\\f",
                0..=0x1f => "",
                _ => continue,
            };
            self.0.write_str(&s[plain..i])?;
            if escape.is_empty() {
                write!(self.0, "\\u{byte:04x}")?;
            } else {
                self.0.write_str(escape)?;
            }
            plain = i + 1;
        }
        self.0.write_str(&s[plain..])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;
    use std::sync::{Arc, Mutex};
    use tracing_subscriber::fmt::MakeWriter;
    use tracing_subscriber::fmt::format::JsonFields;

    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Lines {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Lines {
        type Writer = Lines;
        fn make_writer(&'a self) -> Self::Writer {
            self.clone()
        }
    }

    /// The events a server logs, with values that need escaping, in and out of a span.
    fn log_some_events() {
        let error = std::io::Error::other("connection \"reset\"\n by peer");
        tracing::info!(target: "hookline::attempt", delivery_id = "dlv_1", status_code = 200u16,
            duration_ms = 12u64, error = Option::<&str>::None, status = "delivered", "attempt");
        let span = tracing::info_span!("request", request_id = %"req-\"1\"\t");
        let _entered = span.enter();
        tracing::warn!(%error, ratio = 0.5, nan = f64::NAN, negative = -3i64, flag = true,
            whole = 1.0, negative_zero = -0.0, large = 1e20, small = 1e-7, huge = f64::MAX,
            infinite = f64::INFINITY, "sweep failed: {}", "tab\tand \u{1} \u{8} \u{c} control");
        tracing::info!(target: "hookline::publish", event_id = ?"evt_1", "published");
        let empty = tracing::info_span!("quiet");
        let _quiet = empty.enter();
        tracing::error!(
            big = u128::MAX,
            small = i128::MIN,
            "in a span without fields"
        );
    }

    fn lines_of(output: &Lines) -> Vec<Value> {
        let text = String::from_utf8(output.0.lock().unwrap().clone()).unwrap();
        text.lines()
            .map(|line| {
                let mut value: Value =
                    serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
                value.as_object_mut().unwrap().remove("timestamp");
                value
            })
            .collect()
    }

    #[test]
    fn lines_are_what_the_json_format_of_tracing_subscriber_writes() {
        let ours = Lines::default();
        let subscriber = tracing_subscriber::fmt()
            .fmt_fields(JsonFields::new())
            .event_format(JsonLines)
            .with_writer(ours.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, log_some_events);

        let theirs = Lines::default();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .with_span_list(false)
            .with_writer(theirs.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, log_some_events);

        // The same text, but for the timestamps (and so key order and spellings too).
        let text = |lines: &Lines| {
            let text = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
            text.lines()
                .map(|line| line.split_once("\",\"level\"").unwrap().1.to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(text(&ours), text(&theirs));
        let (ours, theirs) = (lines_of(&ours), lines_of(&theirs));
        assert_eq!(ours.len(), 4);
        assert_eq!(ours, theirs);
        assert_eq!(ours[1]["span"]["request_id"], "req-\"1\"\t");
        assert_eq!(ours[1]["fields"]["error"], "connection \"reset\"\n by peer");
    }

    #[test]
    fn each_line_has_a_timestamp_of_its_own() {
        let output = Lines::default();
        let subscriber = tracing_subscriber::fmt()
            .fmt_fields(JsonFields::new())
            .event_format(JsonLines)
            .with_writer(output.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, || tracing::info!("one"));
        let text = String::from_utf8(output.0.lock().unwrap().clone()).unwrap();
        let line: Value = serde_json::from_str(text.trim_end()).unwrap();
        let stamp = line["timestamp"].as_str().unwrap();
        let parsed = chrono::DateTime::parse_from_rfc3339(stamp).unwrap();
        let age = chrono::Utc::now().signed_duration_since(parsed);
        assert!(age.num_seconds().abs() < 60, "{stamp}");
        assert!(text.ends_with("}\n") && text.matches('\n').count() == 1);
    }
}
