//! A global tracing subscriber that keeps every event and span field as
//! text, so that tests can assert what was (and was not) logged: used by
//! `tests/observe.rs` and `tests/introspection.rs`.
// Each test binary uses a part of it.
#![allow(dead_code, unreachable_pub)]

use std::fmt::Write as _;
use std::sync::{Mutex, OnceLock};

/// Every event (`LEVEL target field=value ...`) and span (`span name
/// field=value ...`) recorded since the last [`clear`], one per line.
pub static LOG: Mutex<String> = Mutex::new(String::new());

struct Capture;

struct Fields(String);

impl tracing::field::Visit for Fields {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        let _ = write!(self.0, "{}={:?} ", field.name(), value);
    }
}

fn push(line: String) {
    LOG.lock().unwrap().push_str(&(line + "\n"));
}

impl tracing::Subscriber for Capture {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, span: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        let mut fields = Fields(format!("span {} ", span.metadata().name()));
        span.record(&mut fields);
        push(fields.0);
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, values: &tracing::span::Record<'_>) {
        let mut fields = Fields(String::new());
        values.record(&mut fields);
        push(fields.0);
    }
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        let meta = event.metadata();
        let mut fields = Fields(format!("{} {} ", meta.level(), meta.target()));
        event.record(&mut fields);
        push(fields.0);
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

/// Installs the capturing subscriber as the global default, once per test
/// binary.
pub fn install() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let _ = tracing::subscriber::set_global_default(Capture);
    });
}

/// What was logged since the last [`clear`].
pub fn log() -> String {
    LOG.lock().unwrap().clone()
}

/// Forgets what was logged.
pub fn clear() {
    LOG.lock().unwrap().clear();
}
