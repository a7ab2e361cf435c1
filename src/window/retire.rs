//! A window let go while the stream goes on: its rule was removed or
//! changed by a reload. It is finished as at the end of an input (every
//! tick its events imply is evaluated), and what is still firing resolves,
//! so no output keeps an alert firing that nothing will ever resolve.

use super::state::AlertState;
use super::{Transition, Window, WindowStats};

impl Window {
    /// Finishes the window: the transitions of every tick left (absence
    /// rules only up to `last_tick`, the stream's last event), then a
    /// resolve for each key still firing, at the tick after the last one
    /// evaluated. Returns them with the window's counters.
    pub fn retire(mut self, last_tick: Option<i64>) -> (Vec<Transition>, WindowStats) {
        let Some(last) = last_tick else {
            // The stream saw no event: nothing is held.
            return (std::mem::take(&mut self.evicted), self.stats);
        };
        let mut out = self.advance(i64::MAX, Some(last));
        let end = self.frontier.min(last);
        let mut firing: Vec<Transition> = self
            .keys
            .iter()
            .filter_map(|(key, state)| match state.alert {
                AlertState::Firing { since } => {
                    let tick = end.max(state.evaluated_to).saturating_add(1);
                    let n = state.measure(self.spec.measure, tick, self.spec.window);
                    Some(Transition {
                        tick,
                        key: key.clone(),
                        firing: false,
                        value: self.spec.value(n),
                        since,
                    })
                }
                _ => None,
            })
            .collect();
        firing.sort_by(|a, b| (a.tick, &a.key).cmp(&(b.tick, &b.key)));
        out.extend(firing);
        (out, self.stats)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::window::tests::{key, ticks};
    use crate::window::{Cmp, Limits, Spec};

    /// A keyed count, without `for:`.
    fn spec(cmp: Cmp, threshold: &str, window: i64) -> Spec {
        crate::window::tests::spec(cmp, threshold, window, 0, true)
    }

    #[test]
    fn a_retired_window_evaluates_what_its_events_imply_then_resolves() {
        let mut w = Window::new(spec(Cmp::Gt, "2", 10), Limits::default());
        for t in [100, 101, 102] {
            w.add(t, key("a"), None);
        }
        // Nothing evaluated yet (the watermark lags): retiring evaluates
        // the firing at 102 and its end at 110, as the end of a file would.
        let (out, stats) = w.retire(Some(102));
        assert_eq!(ticks(&out), [(102, true), (110, false)]);
        assert_eq!(stats.late_events, 0);
    }

    #[test]
    fn a_firing_absence_alert_resolves_when_retired() {
        let mut w = Window::new(spec(Cmp::Lt, "1", 10), Limits::default());
        w.add(100, key("a"), None);
        // The key's count drops below 1 at 110: firing there, and it would
        // stay firing until the key sees an event.
        assert_eq!(ticks(&w.advance(120, None)), [(110, true)]);
        let (out, _) = w.retire(Some(120));
        assert_eq!(ticks(&out), [(121, false)], "{out:?}");
        assert_eq!(out[0].since, 110);
    }

    #[test]
    fn an_empty_window_retires_quietly() {
        let w = Window::new(spec(Cmp::Gt, "2", 10), Limits::default());
        assert!(w.retire(None).0.is_empty());
    }
}
