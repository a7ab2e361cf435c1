//! Where alerts go. Each sink takes [`Alert`]s from the engine in order.

pub mod stdout;

use std::io;

use crate::fields::extract::Val;
use crate::rules::Priority;

/// One alert, as the engine hands it to sinks.
#[derive(Debug)]
pub struct Alert<'a> {
    /// Event time, nanoseconds since the epoch.
    pub time_ns: i64,
    pub rule: &'a str,
    pub priority: Priority,
    pub tags: &'a [String],
    /// The rule's output, rendered (without Falco's time/priority prefix).
    pub message: String,
    pub fields: Vec<(&'a str, Option<Val<'a>>)>,
}

pub trait AlertSink {
    fn emit(&mut self, alert: &Alert) -> io::Result<()>;
    /// Called when the engine is about to wait for input, and at the end.
    fn flush(&mut self) -> io::Result<()>;
}
