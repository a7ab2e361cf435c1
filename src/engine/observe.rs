//! What an [`Observer`] set on the engine ([`super::Engine::observe`]) is
//! told: the events behind each rule's matches and the measured value of
//! each windowed rule's keys at every tick they are evaluated at. A replay
//! report (`saker report`) shows these; `saker run` sets none, and then the
//! engine only tests, per matching event and per key evaluated, that there
//! is none.
//!
//! Only an engine that applies events itself observes them: the workers of
//! `--threads` do not.

use crate::event::Event;
use crate::window::Key;

/// A windowed rule's key at a tick it was evaluated at. Between two such
/// ticks the value does not change.
#[derive(Debug, Clone, PartialEq)]
pub struct Measured {
    pub rule: usize,
    /// The start of the tick, nanoseconds since the epoch.
    pub time_ns: i64,
    pub key: Key,
    /// What the rule compares with its threshold.
    pub value: f64,
    /// Matching events of the key in the window at that tick.
    pub events: u64,
    /// Whether the key's alert is firing after this tick.
    pub firing: bool,
    /// Whether this is the key's first evaluated tick (since its state was
    /// last created).
    pub first: bool,
}

pub trait Observer: Send {
    /// An event that matched rule `rule` (by its index in the rule set): a
    /// per-event rule's, just before its alert is emitted; a windowed
    /// rule's, counted under `key`; a sequence step's; a first-seen rule's
    /// whose `key` may be new (the others cannot alert).
    fn event(&mut self, rule: usize, key: Option<&[String]>, ev: &Event<'_>);

    /// A windowed rule's key evaluated: in tick order, each tick just
    /// before the alerts of that tick are emitted.
    fn measured(&mut self, m: Measured);
}
