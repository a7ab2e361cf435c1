//! Export and import of a stream's whole event-time state: a
//! [`Snapshot`] of a [`Windows`] (every window, the sequence and
//! first-seen state with its waiting hits, and the clock), organised per
//! rule and tagged with each rule's fingerprint
//! ([`RuleSet::fingerprint`]). Restoring into a `Windows` built from
//! another rule set gives back exactly the rules whose fingerprint is
//! unchanged; the others start fresh. A restart and a reload both use it.
//!
//! ```
//! use saker::engine::windows::{WindowOptions, Windows};
//! let rules = saker::rules::load(&saker::rules::default_sources()).rules.unwrap();
//! let windows = Windows::new(&rules, WindowOptions::default());
//! let saved = windows.snapshot(&rules);
//! let json = serde_json::to_vec(&saved).unwrap();
//! let back = serde_json::from_slice(&json).unwrap();
//! let (restored, report) = Windows::restore(&rules, WindowOptions::default(), back).unwrap();
//! assert!(report.fresh.is_empty() && report.dropped.is_empty());
//! assert_eq!(restored.keys(), 0);
//! ```

use serde::{Deserialize, Serialize};

use super::{WindowOptions, Windows};
use crate::rules::RuleSet;
use crate::stateful::snapshot::{StatefulClock, StatefulRuleRecord};
use crate::stateful::Stateful;
use crate::window::snapshot::WindowRecord;
use crate::window::Window;

/// What a snapshot says it is, first in the file.
pub const FORMAT: &str = "saker-state";
/// The layout of [`Snapshot`]; another version is refused, never guessed at.
pub const VERSION: u32 = 1;

/// A stream's event-time state as plain data (serde).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Always [`FORMAT`].
    pub format: String,
    /// Always [`VERSION`] when written by this build.
    pub version: u32,
    /// The tick; state is only trusted at the same resolution.
    pub resolution_ns: i64,
    /// The allowed lateness, in ticks; state is only trusted with the same.
    pub lateness_ticks: i64,
    /// The highest tick seen: the shared event-time clock.
    pub max_tick: Option<i64>,
    pub stateful: StatefulClock,
    /// Every windowed, sequence and first-seen rule, in definition order.
    pub rules: Vec<RuleSnapshot>,
}

/// One rule's saved state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuleSnapshot {
    pub name: String,
    /// [`RuleSet::fingerprint`] of the rule the state belongs to.
    pub fingerprint: String,
    /// A windowed rule's window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<WindowRecord>,
    /// A sequence or first-seen rule's state and waiting hits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stateful: Option<StatefulRuleRecord>,
}

/// What [`Windows::restore`] did with each rule.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RestoreReport {
    /// Rules whose saved state was taken back (unchanged fingerprint).
    pub restored: Vec<String>,
    /// Rules of the new set that start fresh: new, or changed.
    pub fresh: Vec<String>,
    /// Saved rules whose state was let go: gone from the set, or changed.
    pub dropped: Vec<String>,
}

/// Why a snapshot was not trusted at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RestoreError {
    /// Not a saker state file.
    #[error("not a saker state file (format {0:?})")]
    Format(String),
    /// Written by a build with another layout.
    #[error("state format version {found}, this build reads version {VERSION}")]
    Version { found: u32 },
    /// Saved at another `--resolution`: its ticks mean other times.
    #[error("saved with a resolution of {saved} ns, running with {now} ns")]
    Resolution { saved: i64, now: i64 },
    /// Saved with another `--lateness`: evaluations already made differ.
    #[error("saved with a lateness of {saved} ticks, running with {now}")]
    Lateness { saved: i64, now: i64 },
    /// A rule's state is malformed (the file is damaged or forged).
    #[error("the state of rule {rule:?} is malformed: {reason}")]
    Malformed { rule: String, reason: String },
}

impl Windows {
    /// The whole state, per rule, tagged with each rule's fingerprint.
    /// `rules` must be the set this `Windows` was built from.
    pub fn snapshot(&self, rules: &RuleSet) -> Snapshot {
        let (clock, mut stateful) = self.stateful.snapshot();
        let rules_out = rules
            .rules
            .iter()
            .enumerate()
            .filter_map(|(i, r)| {
                let window = self
                    .windows
                    .get(i)
                    .and_then(|w| w.as_ref().map(Window::snapshot));
                let stateful = stateful.get_mut(i).and_then(Option::take);
                (window.is_some() || stateful.is_some()).then(|| RuleSnapshot {
                    name: r.name.clone(),
                    fingerprint: rules.fingerprint(i),
                    window,
                    stateful,
                })
            })
            .collect();
        Snapshot {
            format: FORMAT.to_string(),
            version: VERSION,
            resolution_ns: self.resolution_ns,
            lateness_ticks: self.lateness,
            max_tick: self.max_tick,
            stateful: clock,
            rules: rules_out,
        }
    }

    /// A `Windows` for `rules` holding the state of `snapshot` for every
    /// rule whose fingerprint matches a saved one; the other rules start
    /// fresh. Refused as a whole if the snapshot is of another format,
    /// version, resolution or lateness, or if a rule's state is malformed.
    pub fn restore(
        rules: &RuleSet,
        options: WindowOptions,
        snapshot: Snapshot,
    ) -> Result<(Windows, RestoreReport), RestoreError> {
        let mut w = Windows::new(rules, options);
        if snapshot.format != FORMAT {
            return Err(RestoreError::Format(snapshot.format));
        }
        if snapshot.version != VERSION {
            return Err(RestoreError::Version {
                found: snapshot.version,
            });
        }
        if snapshot.resolution_ns != w.resolution_ns {
            return Err(RestoreError::Resolution {
                saved: snapshot.resolution_ns,
                now: w.resolution_ns,
            });
        }
        if snapshot.lateness_ticks != w.lateness {
            return Err(RestoreError::Lateness {
                saved: snapshot.lateness_ticks,
                now: w.lateness,
            });
        }
        let mut report = RestoreReport::default();
        let mut saved: std::collections::HashMap<String, RuleSnapshot> = snapshot
            .rules
            .into_iter()
            .map(|r| (r.name.clone(), r))
            .collect();
        let mut stateful: Vec<Option<StatefulRuleRecord>> = vec![None; rules.rules.len()];
        for (i, rule) in rules.rules.iter().enumerate() {
            if rule.aggregate.is_none() && rule.stateful.is_none() {
                continue;
            }
            let fingerprint = rules.fingerprint(i);
            let Some(s) = saved.remove(&rule.name) else {
                report.fresh.push(rule.name.clone());
                continue;
            };
            if s.fingerprint != fingerprint {
                report.fresh.push(rule.name.clone());
                report.dropped.push(rule.name.clone());
                continue;
            }
            let malformed = |reason: String| RestoreError::Malformed {
                rule: rule.name.clone(),
                reason,
            };
            match (&rule.aggregate, s.window) {
                (Some(a), Some(record)) => {
                    let window = Window::restore(a.spec.clone(), options.limits, record)
                        .map_err(|e| malformed(e.to_string()))?;
                    w.windows[i] = Some(window);
                }
                (None, None) => {}
                _ => return Err(malformed("a window where none belongs, or none".into())),
            }
            match (&rule.stateful, s.stateful) {
                (Some(_), Some(record)) => stateful[i] = Some(record),
                (None, None) => {}
                _ => {
                    return Err(malformed(
                        "sequence or first-seen state missing or extra".into(),
                    ))
                }
            }
            report.restored.push(rule.name.clone());
        }
        let mut gone: Vec<String> = saved.into_keys().collect();
        gone.sort();
        report.dropped.extend(gone);
        w.stateful = Stateful::restore(
            rules,
            options.limits.max_keys,
            w.resolution_ns,
            snapshot.stateful,
            stateful,
        )
        .map_err(|(i, e)| RestoreError::Malformed {
            rule: rules.rules[i].name.clone(),
            reason: e.to_string(),
        })?;
        w.max_tick = snapshot.max_tick;
        Ok((w, report))
    }
}
