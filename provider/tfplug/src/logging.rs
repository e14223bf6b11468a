//! `tracing` to stderr as hclog JSON lines, the format go-plugin parses, so provider logs appear
//! in Terraform's own log under `TF_LOG` / `TF_LOG_PROVIDER`.
use std::fmt::Write as _;
use std::io::Write as _;

use serde_json::{Map, Value as Json};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::Layer;
pub use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::filter::{FilterExt as _, filter_fn};
use tracing_subscriber::layer::{Context, SubscriberExt as _};

/// Whose events a provider logs: its own crates' at every level, and the libraries' below it
/// (gRPC, HTTP/2, TLS) only at warn and error unless a user opts in. At `TF_LOG=trace` those
/// libraries log every HTTP/2 frame, megabytes per plan that drown the provider's own lines.
#[derive(Debug, Clone, Copy)]
pub struct Scope {
    own_crates: &'static [&'static str],
    libraries: bool,
}

impl Scope {
    /// Logs the events of `own_crates` (crate names as in `tracing` targets, e.g. `batchai`).
    pub fn new(own_crates: &'static [&'static str]) -> Self {
        Self {
            own_crates,
            libraries: false,
        }
    }

    /// Also logs library events at every level, for debugging the transport itself.
    #[must_use]
    pub fn with_libraries(mut self, libraries: bool) -> Self {
        self.libraries = libraries;
        self
    }

    /// Whether an event of `target` at `level` is logged (the level filter applies on top).
    pub fn keeps(&self, target: &str, level: Level) -> bool {
        let crate_name = target.split("::").next().unwrap_or_default();
        self.libraries || level <= Level::WARN || self.own_crates.contains(&crate_name)
    }
}

/// Installs the hclog JSON subscriber at the level Terraform asked for.
///
/// Terraform filters the lines again on its side; reading the same variables here only saves the
/// work of formatting lines nobody will see.
pub fn init_hclog(scope: Scope) {
    let level = level_from_env(
        std::env::var("TF_LOG_PROVIDER")
            .or_else(|_| std::env::var("TF_LOG"))
            .ok()
            .as_deref(),
    );
    init_hclog_at(level, scope);
}

/// Installs the hclog JSON subscriber at a fixed level (debug mode, tools).
pub fn init_hclog_at(level: LevelFilter, scope: Scope) {
    let scoped = filter_fn(move |metadata| scope.keeps(metadata.target(), *metadata.level()));
    let subscriber = tracing_subscriber::registry().with(HclogLayer.with_filter(level.and(scoped)));
    let _ = tracing::subscriber::set_global_default(subscriber);
}

fn level_from_env(value: Option<&str>) -> LevelFilter {
    match value.map(str::to_ascii_lowercase).as_deref() {
        None | Some("" | "off") => LevelFilter::WARN,
        Some("trace" | "json") => LevelFilter::TRACE,
        Some("debug") => LevelFilter::DEBUG,
        Some("info") => LevelFilter::INFO,
        Some("warn") => LevelFilter::WARN,
        Some("error") => LevelFilter::ERROR,
        Some(_) => LevelFilter::INFO,
    }
}

/// Formats each event as one JSON object with `@level`, `@message`, `@timestamp` and the
/// event's fields as key/values.
#[derive(Debug)]
struct HclogLayer;

impl<S: Subscriber> Layer<S> for HclogLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let line = format_event(event);
        let mut stderr = std::io::stderr().lock();
        let _ = stderr.write_all(line.as_bytes());
    }
}

fn format_event(event: &Event<'_>) -> String {
    let mut visitor = JsonVisitor::default();
    event.record(&mut visitor);
    let mut object = Map::new();
    let level = match *event.metadata().level() {
        Level::TRACE => "trace",
        Level::DEBUG => "debug",
        Level::INFO => "info",
        Level::WARN => "warn",
        Level::ERROR => "error",
    };
    object.insert("@level".into(), Json::String(level.into()));
    object.insert("@message".into(), Json::String(visitor.message));
    object.insert("@timestamp".into(), Json::String(timestamp()));
    object.insert(
        "@module".into(),
        Json::String(format!("provider.{}", event.metadata().target())),
    );
    for (k, v) in visitor.fields {
        object.insert(k, v);
    }
    let mut line = Json::Object(object).to_string();
    line.push('\n');
    line
}

/// hclog's layout `2006-01-02T15:04:05.000000Z07:00`, in UTC.
fn timestamp() -> String {
    let now = time::OffsetDateTime::now_utc();
    let mut s = String::with_capacity(27);
    let _ = write!(
        s,
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second(),
        now.microsecond()
    );
    s
}

#[derive(Default)]
struct JsonVisitor {
    message: String,
    fields: Vec<(String, Json)>,
}

impl Visit for JsonVisitor {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.message = format!("{value:?}");
        } else {
            self.fields
                .push((field.name().to_owned(), Json::String(format!("{value:?}"))));
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message = value.to_owned();
        } else {
            self.fields
                .push((field.name().to_owned(), Json::String(value.to_owned())));
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.fields
            .push((field.name().to_owned(), Json::from(value)));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.fields
            .push((field.name().to_owned(), Json::from(value)));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.fields
            .push((field.name().to_owned(), Json::from(value)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_follow_terraform_variables() {
        let cases = [
            (None, LevelFilter::WARN),
            (Some("TRACE"), LevelFilter::TRACE),
            (Some("debug"), LevelFilter::DEBUG),
            (Some("JSON"), LevelFilter::TRACE),
            (Some("bogus"), LevelFilter::INFO),
        ];
        for (input, want) in cases {
            assert_eq!(level_from_env(input), want, "{input:?}");
        }
    }

    #[test]
    fn library_internals_need_an_opt_in() {
        let scope = Scope::new(&["tfplug", "batchai", "agent"]);
        let opted_in = scope.with_libraries(true);
        // (target, level, kept by default)
        let cases = [
            ("tfplug::serve", Level::TRACE, true),
            ("batchai", Level::DEBUG, true),
            ("agent::node", Level::INFO, true),
            ("h2::codec::framed_read", Level::TRACE, false),
            ("h2::proto::connection", Level::DEBUG, false),
            ("hyper::proto::h2::server", Level::TRACE, false),
            ("tonic::transport::server", Level::INFO, false),
            ("rustls::server::hs", Level::DEBUG, false),
            // A crate whose name merely starts like one of ours is a library.
            ("tfplugx", Level::TRACE, false),
            ("batchai_extra::x", Level::DEBUG, false),
            // Library warnings and errors are rare and say something went wrong.
            ("h2::proto::connection", Level::WARN, true),
            ("rustls::conn", Level::ERROR, true),
        ];
        for (target, level, kept) in cases {
            assert_eq!(scope.keeps(target, level), kept, "{target} at {level}");
            assert!(
                opted_in.keeps(target, level),
                "opted in: {target} at {level}"
            );
        }
    }

    #[test]
    fn timestamp_has_hclog_layout() {
        let ts = timestamp();
        assert_eq!(ts.len(), 27, "{ts}");
        assert!(ts.ends_with('Z'));
    }
}
