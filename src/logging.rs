//! Where log lines go and what they look like: text for people, or one JSON object a
//! line for a log collector (`log.format`, or `USHER_LOG_FORMAT`, which wins). Both go
//! to standard error, filtered by `USHER_LOG` (default `info`).
//!
//! The format is set once per process: `usher serve` sets it after reading its config,
//! every other command at once. A JSON line carries the fields of the spans it happened
//! in next to its own, so the `request_id` of the request span (`web::request_id`) is a
//! top-level field of every line a request causes.

use std::fmt;
use std::io::IsTerminal;
use std::sync::OnceLock;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

pub use crate::config::LogFormat;

/// The environment variable that picks the format; it wins over `log.format`.
pub const FORMAT_VAR: &str = "USHER_LOG_FORMAT";

/// The format the process logs in, once [`init`] has run.
static ACTIVE: OnceLock<LogFormat> = OnceLock::new();

/// The format `USHER_LOG_FORMAT` asks for: `None` when unset or empty, an error naming
/// the accepted values for anything else but `text` and `json`.
pub fn format_from_env() -> Result<Option<LogFormat>, String> {
    parse_format(std::env::var(FORMAT_VAR).ok().as_deref())
}

fn parse_format(value: Option<&str>) -> Result<Option<LogFormat>, String> {
    match value.map(str::trim) {
        None | Some("") => Ok(None),
        Some(v) if v.eq_ignore_ascii_case("text") => Ok(Some(LogFormat::Text)),
        Some(v) if v.eq_ignore_ascii_case("json") => Ok(Some(LogFormat::Json)),
        Some(v) => Err(format!(
            "{FORMAT_VAR}=`{v}` is not a log format: use `text` or `json`"
        )),
    }
}

/// The format to log in: the environment's, else the config's, else text.
pub fn choose(from_env: Option<LogFormat>, from_config: Option<LogFormat>) -> LogFormat {
    from_env.or(from_config).unwrap_or_default()
}

/// Install the process's log subscriber. Only the first call of a process counts (the
/// format cannot change under a running server); later calls change nothing.
pub fn init(format: LogFormat) {
    if ACTIVE.set(format).is_err() {
        return;
    }
    let filter = tracing_subscriber::EnvFilter::try_from_env("USHER_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let installed = match format {
        LogFormat::Text => tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            // Colours for a terminal; a file or a pipe gets the plain text.
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
        LogFormat::Json => tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .with_ansi(false)
            .fmt_fields(JsonFields)
            .event_format(JsonLines)
            .try_init(),
    };
    // An error means a subscriber was installed first (a test harness): it stays.
    drop(installed);
}

/// The format [`init`] installed, if it ran.
pub fn active() -> Option<LogFormat> {
    ACTIVE.get().copied()
}

/// Report an error that stops the process, in the format the process logs in: a JSON
/// line when that is JSON, else `error: …` on standard error.
pub fn fatal(message: &str) {
    if active() == Some(LogFormat::Json) {
        tracing::error!(error = %message, "usher stopped");
    } else {
        eprintln!("error: {message}");
    }
}

/// Span fields, kept as a JSON object (the text [`FormattedFields`] holds for each span).
struct JsonFields;

impl<'writer> FormatFields<'writer> for JsonFields {
    fn format_fields<R: RecordFields>(
        &self,
        mut writer: Writer<'writer>,
        fields: R,
    ) -> fmt::Result {
        let mut map = Map::new();
        fields.record(&mut Collect::new(&mut map));
        write!(writer, "{}", Value::Object(map))
    }

    fn add_fields(
        &self,
        current: &'writer mut FormattedFields<Self>,
        fields: &tracing::span::Record<'_>,
    ) -> fmt::Result {
        let mut map = object(&current.fields);
        fields.record(&mut Collect::new(&mut map));
        current.fields = Value::Object(map).to_string();
        Ok(())
    }
}

fn object(text: &str) -> Map<String, Value> {
    match serde_json::from_str(text) {
        Ok(Value::Object(map)) => map,
        _ => Map::new(),
    }
}

/// One JSON object per event: `timestamp`, `level`, `target`, then the fields of its
/// spans (outermost first), then its own fields, `message` among them.
struct JsonLines;

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
        let meta = event.metadata();
        let mut fields = Map::new();
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                let extensions = span.extensions();
                if let Some(span_fields) = extensions.get::<FormattedFields<N>>() {
                    fields.extend(object(&span_fields.fields));
                }
            }
        }
        let mut collect = Collect::new(&mut fields);
        event.record(&mut collect);
        // A record of the `log` crate (the database driver) names its real origin.
        let target = collect
            .log_target
            .unwrap_or_else(|| meta.target().to_string());
        let mut now = String::new();
        SystemTime.format_time(&mut Writer::new(&mut now))?;
        // Written pair by pair, the fixed keys first for people reading the raw lines
        // (a map would sort them). A field named like a fixed key becomes `field.<name>`.
        let mut out = String::from("{");
        let mut put = |key: &str, value: &Value| {
            if out.len() > 1 {
                out.push(',');
            }
            out.push_str(&Value::from(key).to_string());
            out.push(':');
            out.push_str(&value.to_string());
        };
        put("timestamp", &Value::String(now));
        put("level", &Value::String(meta.level().to_string()));
        put("target", &Value::String(target));
        if let Some(message) = fields.remove("message") {
            put("message", &message);
        }
        for (key, value) in &fields {
            if matches!(key.as_str(), "timestamp" | "level" | "target") {
                put(&format!("field.{key}"), value);
            } else {
                put(key, value);
            }
        }
        out.push('}');
        writeln!(writer, "{out}")
    }
}

/// Fields into a JSON object: numbers and booleans as such, everything else as text.
struct Collect<'a> {
    map: &'a mut Map<String, Value>,
    /// The `log.target` of a record that came through the `log` crate.
    log_target: Option<String>,
}

impl<'a> Collect<'a> {
    fn new(map: &'a mut Map<String, Value>) -> Self {
        Collect {
            map,
            log_target: None,
        }
    }

    fn put(&mut self, field: &Field, value: Value) {
        // The `log` crate's bookkeeping (`log.target`, `log.file`, …): only its target
        // is kept, as the line's `target`.
        if let Some(key) = field.name().strip_prefix("log.") {
            if key == "target" {
                self.log_target = value.as_str().map(str::to_string);
            }
            return;
        }
        self.map.insert(field.name().to_string(), value);
    }
}

impl Visit for Collect<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.put(field, Value::String(format!("{value:?}")));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, Value::String(value.to_string()));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, Value::from(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, Value::from(value));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, Value::from(value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, Value::Bool(value));
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.put(field, Value::String(value.to_string()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    #[test]
    fn the_variable_wins_over_the_config_and_text_is_the_default() {
        assert_eq!(choose(None, None), LogFormat::Text);
        assert_eq!(choose(None, Some(LogFormat::Json)), LogFormat::Json);
        assert_eq!(
            choose(Some(LogFormat::Text), Some(LogFormat::Json)),
            LogFormat::Text
        );
        assert_eq!(
            choose(Some(LogFormat::Json), Some(LogFormat::Text)),
            LogFormat::Json
        );
        assert_eq!(parse_format(Some("JSON")), Ok(Some(LogFormat::Json)));
        assert_eq!(parse_format(Some("")), Ok(None));
        assert!(parse_format(Some("jsno"))
            .unwrap_err()
            .contains("`text` or `json`"));
    }

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_json_line_carries_its_spans_fields_at_the_top_level() {
        let out = Captured::default();
        let writer = out.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .fmt_fields(JsonFields)
            .event_format(JsonLines)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("request", request_id = "r-1");
            let _in = span.enter();
            let inner = tracing::info_span!("step", step = 2_u64);
            inner.record("step", 3_u64);
            let _in2 = inner.enter();
            tracing::warn!(
                detail = "a \"quoted\"\nline",
                ok = true,
                "it \u{1b}happened"
            );
        });
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(
            text.starts_with(r#"{"timestamp":"#)
                && text.contains(r#""target":"usher::logging::tests","message":"#),
            "{text}"
        );
        let line: Value = serde_json::from_str(text.trim_end()).unwrap();
        assert_eq!(line["request_id"], "r-1");
        assert_eq!(line["step"], 3);
        assert_eq!(line["level"], "WARN");
        assert_eq!(line["message"], "it \u{1b}happened");
        assert_eq!(line["detail"], "a \"quoted\"\nline");
        assert_eq!(line["ok"], true);
        assert!(line["timestamp"].as_str().unwrap().ends_with('Z'));
    }
}
