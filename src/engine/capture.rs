//! What a `--threads` worker keeps of a job's events for the ordering
//! thread: per event its tick, time and place in the batch, and the
//! alerts, windowed matches and stateful hits it raised. Everything is kept
//! in flat vectors that travel with the job and come back to be reused, and
//! the keys and `distinct()` values are written into one text buffer. So a
//! worker allocates nothing for an event's windowed and first-seen matches,
//! and the ordering thread frees nothing of theirs: a block freed by
//! another thread than the one that allocated it is handed back to its
//! owner through the allocator's cross-thread lists, which cost several
//! times a local free. Per-event alerts, sequence hits and the first-seen
//! alerts a worker renders itself are still owned values, allocated by the
//! worker and freed by the ordering thread.

use std::ops::Range;
use std::slice;
use std::vec;

use crate::event::{Event, Skip};
use crate::rules::predicate::{EvalCtx, OperandId};
use crate::rules::RuleSet;
use crate::stateful::first_seen::Rendered;
use crate::stateful::sequence::SeqHit;

use super::parallel::{DocAt, OwnedAlert};

/// One event a worker evaluated: how many of the job's alerts, windowed
/// matches and stateful hits, in order, are its.
#[derive(Debug, Clone, Copy, Default)]
pub struct Captured {
    pub tick: i64,
    pub time_ns: i64,
    pub doc: DocAt,
    alerts: u32,
    windowed: u32,
    stateful: u32,
}

/// A matching event of a windowed rule.
#[derive(Debug)]
struct Windowed {
    rule: usize,
    /// Its key's values: a range of [`Capture::parts`].
    key: Range<usize>,
    /// Its `distinct()` value: a range of [`Capture::text`].
    value: Option<Range<usize>>,
}

/// A sequence or first-seen rule's hit, as a worker captures it.
#[derive(Debug)]
pub enum StatefulHit {
    Sequence(SeqHit),
    FirstSeen {
        /// The key's values: a range of [`Capture::parts`].
        key: Range<usize>,
        /// The alert, rendered by the worker deep in a line of many events
        /// ([`super::parallel::RENDER_IN_WORKER_FROM`]).
        rendered: Option<Rendered>,
    },
}

/// What a worker captured of one job.
#[derive(Debug, Default)]
pub struct Capture {
    events: Vec<Captured>,
    alerts: Vec<OwnedAlert>,
    windowed: Vec<Windowed>,
    stateful: Vec<(usize, StatefulHit)>,
    /// The keys' values and `distinct()` values, one after the other.
    text: String,
    /// Where each key value is in `text`.
    parts: Vec<Range<usize>>,
    /// Lines skipped, to be logged: the line's number in the job, why.
    skips: Vec<(u64, Skip)>,
}

impl Capture {
    /// Events captured so far.
    pub fn len(&self) -> usize {
        self.events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// Empties it for the next job, keeping its memory.
    pub fn clear(&mut self) {
        self.events.clear();
        self.alerts.clear();
        self.windowed.clear();
        self.stateful.clear();
        self.text.clear();
        self.parts.clear();
        self.skips.clear();
    }

    /// The next event: what follows is its, until the next call.
    pub fn event(&mut self, tick: i64, time_ns: i64, doc: DocAt) {
        self.events.push(Captured {
            tick,
            time_ns,
            doc,
            ..Captured::default()
        });
    }

    /// Where the current event is in its batch.
    pub fn doc(&self) -> DocAt {
        self.events.last().map(|e| e.doc).unwrap_or_default()
    }

    fn current(&mut self) -> &mut Captured {
        if self.events.is_empty() {
            // Nothing is captured outside an event: this keeps the counts
            // consistent should a caller forget.
            self.events.push(Captured::default());
        }
        let last = self.events.len() - 1;
        &mut self.events[last]
    }

    pub fn alert(&mut self, alert: OwnedAlert) {
        self.alerts.push(alert);
        self.current().alerts += 1;
    }

    /// Renders the values of `by` (`<NA>` for a missing one) as a key.
    pub fn key<'a>(
        &mut self,
        rules: &RuleSet,
        by: &[(String, OperandId)],
        ev: &Event<'a>,
        cx: &mut EvalCtx<'a>,
    ) -> Range<usize> {
        let first = self.parts.len();
        for (_, op) in by {
            let start = self.text.len();
            match rules.program.value(*op, ev, cx) {
                Some(v) => self.text.push_str(&v.render()),
                None => self.text.push_str("<NA>"),
            }
            self.parts.push(start..self.text.len());
        }
        first..self.parts.len()
    }

    /// A match of windowed rule `rule`, with its key ([`Capture::key`]) and
    /// its `distinct()` value.
    pub fn windowed(&mut self, rule: usize, key: Range<usize>, value: Option<&str>) {
        let value = value.map(|v| {
            let start = self.text.len();
            self.text.push_str(v);
            start..self.text.len()
        });
        self.windowed.push(Windowed { rule, key, value });
        self.current().windowed += 1;
    }

    pub fn stateful(&mut self, rule: usize, hit: StatefulHit) {
        self.stateful.push((rule, hit));
        self.current().stateful += 1;
    }

    /// A line skipped, to be logged by the ordering thread: its number in
    /// the job.
    pub fn skip(&mut self, line: u64, reason: Skip) {
        self.skips.push((line, reason));
    }

    /// The lines skipped, to be logged, in order.
    pub fn skips(&self) -> &[(u64, Skip)] {
        &self.skips
    }

    /// Reads the capture back, event by event, in order; the alerts and
    /// hits are moved out.
    pub fn read(&mut self) -> Reader<'_> {
        Reader {
            events: self.events.iter(),
            alerts: self.alerts.drain(..),
            windowed: self.windowed.iter(),
            stateful: self.stateful.drain(..),
            text: &self.text,
            parts: &self.parts,
            left: Captured::default(),
        }
    }
}

/// A capture read back ([`Capture::read`]): [`Reader::next_event`] moves to
/// the next event, and [`Reader::alerts`], [`Reader::windowed`] and
/// [`Reader::next_stateful`] give that event's own; what it does not take is
/// passed over by the next call.
pub struct Reader<'c> {
    events: slice::Iter<'c, Captured>,
    alerts: vec::Drain<'c, OwnedAlert>,
    windowed: slice::Iter<'c, Windowed>,
    stateful: vec::Drain<'c, (usize, StatefulHit)>,
    text: &'c str,
    parts: &'c [Range<usize>],
    /// What the current event captured and was not taken yet.
    left: Captured,
}

impl<'c> Reader<'c> {
    /// The next event, after passing over what the current one left.
    pub fn next_event(&mut self) -> Option<Captured> {
        let left = std::mem::take(&mut self.left);
        self.alerts
            .by_ref()
            .take(left.alerts as usize)
            .for_each(drop);
        self.windowed
            .by_ref()
            .take(left.windowed as usize)
            .for_each(drop);
        self.stateful
            .by_ref()
            .take(left.stateful as usize)
            .for_each(drop);
        let c = *self.events.next()?;
        self.left = c;
        Some(c)
    }

    /// Passes over `n` events and all they captured.
    pub fn skip(&mut self, n: usize) {
        for _ in 0..n {
            if self.next_event().is_none() {
                return;
            }
        }
    }

    /// The current event's per-event alerts.
    pub fn alerts(&mut self) -> std::iter::Take<&mut vec::Drain<'c, OwnedAlert>> {
        let n = std::mem::take(&mut self.left.alerts) as usize;
        self.alerts.by_ref().take(n)
    }

    /// The current event's windowed matches: rule, key values,
    /// `distinct()` value.
    pub fn windowed(&mut self) -> impl Iterator<Item = (usize, Key<'c>, Option<&'c str>)> + '_ {
        let n = std::mem::take(&mut self.left.windowed) as usize;
        let (text, parts) = (self.text, self.parts);
        self.windowed.by_ref().take(n).map(move |w| {
            let value = w.value.clone().map(|r| &text[r]);
            (w.rule, Key::new(text, &parts[w.key.clone()]), value)
        })
    }

    /// The current event's next sequence or first-seen hit.
    pub fn next_stateful(&mut self) -> Option<(usize, StatefulHit)> {
        if self.left.stateful == 0 {
            return None;
        }
        self.left.stateful -= 1;
        self.stateful.next()
    }

    /// A first-seen hit's key.
    pub fn key(&self, key: Range<usize>) -> Key<'c> {
        Key::new(self.text, &self.parts[key])
    }
}

/// A captured key's values.
#[derive(Clone, Copy)]
pub struct Key<'c> {
    text: &'c str,
    parts: &'c [Range<usize>],
}

impl<'c> Key<'c> {
    fn new(text: &'c str, parts: &'c [Range<usize>]) -> Self {
        Key { text, parts }
    }

    /// Writes the values into the first strings of `out` (grown if it has
    /// fewer, never shrunk, so that the strings' allocations are reused);
    /// returns how many.
    pub fn write_into(&self, out: &mut Vec<String>) -> usize {
        let n = self.parts.len();
        if out.len() < n {
            out.resize_with(n, String::new);
        }
        for (slot, r) in out.iter_mut().zip(self.parts) {
            slot.clear();
            slot.push_str(&self.text[r.clone()]);
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(rule: usize) -> OwnedAlert {
        OwnedAlert {
            rule,
            time_ns: 0,
            message: format!("alert {rule}"),
            fields: Vec::new(),
        }
    }

    /// Captures three events (the second with nothing), then reads them
    /// back taking only some of what each captured: each event gets its
    /// own, whatever the previous one left.
    #[test]
    fn each_event_reads_back_its_own() {
        let mut c = Capture::default();
        c.event(1, 10, DocAt::default());
        c.alert(alert(0));
        c.parts.push(0..1);
        c.text.push('a');
        c.windowed(5, 0..1, Some("v1"));
        c.event(2, 20, DocAt::default());
        c.event(3, 30, DocAt::default());
        c.alert(alert(1));
        c.alert(alert(2));
        let start = c.text.len();
        c.text.push_str("bc");
        c.parts.push(start..start + 1);
        c.parts.push(start + 1..start + 2);
        c.windowed(6, 1..3, None);
        assert_eq!(c.len(), 3);

        let mut r = c.read();
        // The first event's alert is not taken: passed over.
        assert_eq!(r.next_event().map(|e| e.tick), Some(1));
        let w: Vec<_> = r
            .windowed()
            .map(|(rule, key, value)| {
                let mut parts = Vec::new();
                let n = key.write_into(&mut parts);
                assert_eq!(n, parts.len());
                (rule, parts, value)
            })
            .collect();
        assert_eq!(w, vec![(5, vec!["a".to_string()], Some("v1"))]);
        assert_eq!(r.next_event().map(|e| e.tick), Some(2));
        assert_eq!(r.alerts().count(), 0);
        assert_eq!(r.windowed().count(), 0);
        assert_eq!(r.next_event().map(|e| e.tick), Some(3));
        let rules: Vec<_> = r.alerts().map(|a| a.rule).collect();
        assert_eq!(rules, vec![1, 2]);
        // Taken once: a second call has nothing.
        assert_eq!(r.alerts().count(), 0);
        let w: Vec<_> = r
            .windowed()
            .map(|(rule, key, _)| {
                // Longer than the key: its first strings are written, the
                // rest kept.
                let mut parts = vec!["stale".to_string(); 5];
                let n = key.write_into(&mut parts);
                assert_eq!(parts.len(), 5);
                parts.truncate(n);
                (rule, parts)
            })
            .collect();
        assert_eq!(w, vec![(6, vec!["b".to_string(), "c".to_string()])]);
        assert!(r.next_event().is_none());
    }

    #[test]
    fn skipped_events_take_what_they_captured_along() {
        let mut c = Capture::default();
        c.event(1, 10, DocAt::default());
        c.alert(alert(0));
        c.event(2, 20, DocAt::default());
        c.alert(alert(1));
        let mut r = c.read();
        r.skip(1);
        assert_eq!(r.next_event().map(|e| e.tick), Some(2));
        let rules: Vec<_> = r.alerts().map(|a| a.rule).collect();
        assert_eq!(rules, vec![1]);
        drop(r);
        c.clear();
        assert!(c.is_empty());
        assert!(c.text.is_empty() && c.parts.is_empty() && c.alerts.is_empty());
    }
}
