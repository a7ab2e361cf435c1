//! The stateful half of the engine: what an event of a sequence or
//! first-seen rule contributes ([`hit`], detached from the event so that it
//! can wait for the watermark or cross threads), and the alerts of what
//! applying it produced ([`alert`]).

use std::borrow::Cow;

use crate::event::Event;
use crate::fields::extract::Val;
use crate::rules::predicate::{EvalCtx, OperandId};
use crate::rules::stateful::{FirstSeen, SeqPart, Sequence, StatefulRule};
use crate::rules::{AggField, Candidate, CompiledRule, OutputPart, RuleSet};
use crate::sink::{Alert, StatefulInfo, StepInfo};
use crate::stateful::first_seen::{New, Rendered, SeenHit};
use crate::stateful::sequence::{Completed, SeqHit, StepHit};
use crate::stateful::{Hit, Key, Outcome, Read, Stateful};

use super::capture::{Capture, StatefulHit};
use super::windows::{format_number, render_key};

fn text<'a>(
    rules: &RuleSet,
    op: OperandId,
    ev: &Event<'a>,
    cx: &mut EvalCtx<'a>,
) -> Option<String> {
    rules
        .program
        .value(op, ev, cx)
        .map(|v| v.render().into_owned())
}

/// What the event contributes to the candidate stateful rule, if it
/// matches (a sequence tries only the steps the candidate names), captured
/// by a thread that does not apply it (a `--threads` worker); returns
/// whether it matched. A first-seen hit carries its key only, and the
/// applying thread, which holds the state, renders the alert
/// ([`seen_alert`]) when the key may be new, except deep in a line of many
/// events: reading the line again for each of its events would cost its
/// length squared (see [`super::parallel::RENDER_IN_WORKER_FROM`]).
pub fn capture<'a>(
    rules: &RuleSet,
    candidate: Candidate,
    ev: &Event<'a>,
    cx: &mut EvalCtx<'a>,
    captured: &mut Capture,
) -> bool {
    let i = candidate.rule;
    let rule = &rules.rules[i];
    if !rule.enabled {
        return false;
    }
    let hit = match rule.stateful.as_ref() {
        Some(StatefulRule::Sequence(s)) => match sequence_hit(rules, s, candidate, ev, cx) {
            Some(h) => StatefulHit::Sequence(h),
            None => return false,
        },
        Some(StatefulRule::FirstSeen(f)) => {
            if !rules.program.eval(rule.root, ev, cx) {
                return false;
            }
            let key = captured.key(rules, &f.by, ev, cx);
            let rendered = (captured.doc().index >= super::parallel::RENDER_IN_WORKER_FROM)
                .then(|| rendered(rules, i, f, ev, cx));
            StatefulHit::FirstSeen { key, rendered }
        }
        None => return false,
    };
    captured.stateful(i, hit);
    true
}

/// What the event contributes to sequence rule `candidate`, if it matches
/// a step the candidate names (`None` for a first-seen rule).
pub fn sequence<'a>(
    rules: &RuleSet,
    candidate: Candidate,
    ev: &Event<'a>,
    cx: &mut EvalCtx<'a>,
) -> Option<SeqHit> {
    let rule = &rules.rules[candidate.rule];
    match rule.stateful.as_ref()? {
        StatefulRule::Sequence(s) if rule.enabled => sequence_hit(rules, s, candidate, ev, cx),
        _ => None,
    }
}

/// What the event contributes to the candidate stateful rule, handed to
/// the stream's `state`, which applies it or keeps it until the watermark
/// passes; returns whether the event matched. A first-seen event is looked
/// up once: a key seen within the window is applied there and then, and an
/// alert is rendered only for an event that may raise it. `seen` is shown
/// each hit the state keeps, before it takes it.
pub fn push<'a>(
    rules: &RuleSet,
    candidate: Candidate,
    ev: &Event<'a>,
    cx: &mut EvalCtx<'a>,
    state: &mut Stateful,
    mut seen: impl FnMut(&Hit),
) -> bool {
    let i = candidate.rule;
    let rule = &rules.rules[i];
    if !rule.enabled {
        return false;
    }
    match rule.stateful.as_ref() {
        Some(StatefulRule::Sequence(s)) => match sequence_hit(rules, s, candidate, ev, cx) {
            Some(h) => {
                let hit = Hit::Sequence(h);
                seen(&hit);
                state.push(i, ev.time_ns, hit);
                true
            }
            None => false,
        },
        Some(StatefulRule::FirstSeen(f)) => {
            if !rules.program.eval(rule.root, ev, cx) {
                return false;
            }
            // The key is rendered into reused strings and looked up as it
            // is: it is copied only for an event that waits.
            let mut buf = state.take_key_buffer(f.by.len());
            let key = &mut buf[..f.by.len()];
            render_key(rules, &f.by, ev, cx, key);
            if let Read::Waits { render } = state.read_first_seen(i, key, ev.time_ns) {
                let rendered = render.then(|| rendered(rules, i, f, ev, cx));
                let key = Key::from(&*key);
                let hit = Hit::FirstSeen(SeenHit { key, rendered });
                seen(&hit);
                state.wait(i, ev.time_ns, hit);
            }
            state.return_key_buffer(buf);
            true
        }
        None => false,
    }
}

/// What an event of a forwarded first-seen rule contributes, if it
/// matches: its key, and its alert unless `covered` says (given the key)
/// that the key cannot be new.
pub fn forwarded_seen<'a>(
    rules: &RuleSet,
    i: usize,
    ev: &Event<'a>,
    cx: &mut EvalCtx<'a>,
    covered: impl FnOnce(&[String], i64) -> bool,
) -> Option<SeenHit> {
    let rule = &rules.rules[i];
    let Some(StatefulRule::FirstSeen(f)) = rule.stateful.as_ref() else {
        return None;
    };
    if !rule.enabled || !rules.program.eval(rule.root, ev, cx) {
        return None;
    }
    let key = first_seen_key(rules, f, ev, cx);
    let rendered = (!covered(&key, f.window)).then(|| rendered(rules, i, f, ev, cx));
    Some(SeenHit { key, rendered })
}

/// First-seen rule `i`'s alert for this event, should its key be new;
/// `None` if `i` is not a first-seen rule.
pub fn seen_alert<'a>(
    rules: &RuleSet,
    i: usize,
    ev: &Event<'a>,
    cx: &mut EvalCtx<'a>,
) -> Option<Rendered> {
    match rules.rules.get(i)?.stateful.as_ref()? {
        StatefulRule::FirstSeen(f) => Some(rendered(rules, i, f, ev, cx)),
        StatefulRule::Sequence(_) => None,
    }
}

/// A first-seen rule's alert for this event, should its key be new.
fn rendered<'a>(
    rules: &RuleSet,
    i: usize,
    f: &FirstSeen,
    ev: &Event<'a>,
    cx: &mut EvalCtx<'a>,
) -> Rendered {
    Rendered {
        message: render_first_seen(rules, i, f, ev, cx),
        fields: rules.rules[i]
            .output_fields
            .iter()
            .map(|(_, part)| match part {
                OutputPart::Value(id) => rules.program.value(*id, ev, cx).map(|v| owned(&v)),
                OutputPart::Agg(a) => Some(Val::Str(Cow::Owned(agg_text(*a, f)))),
                _ => None,
            })
            .collect(),
    }
}

fn sequence_hit<'a>(
    rules: &RuleSet,
    s: &Sequence,
    candidate: Candidate,
    ev: &Event<'a>,
    cx: &mut EvalCtx<'a>,
) -> Option<SeqHit> {
    let mut steps = Vec::new();
    'steps: for (n, step) in s.steps.iter().enumerate() {
        if !candidate.step(n) || !rules.program.eval(step.matches, ev, cx) {
            continue;
        }
        // A missing key value: the event takes no part in this step.
        let key: Key = match step.by.as_slice() {
            // One field (the usual key) goes straight into the shared key,
            // with no vector in between.
            [(_, op)] => match text(rules, *op, ev, cx) {
                Some(v) => Key::from([v]),
                None => continue 'steps,
            },
            by => {
                let mut key = Vec::with_capacity(by.len());
                for (_, op) in by {
                    let Some(v) = text(rules, *op, ev, cx) else {
                        continue 'steps;
                    };
                    key.push(v);
                }
                Key::from(key)
            }
        };
        // A value that is also the key's is not copied again.
        let values = step
            .values
            .iter()
            .zip(&step.from_key)
            .map(|(op, k)| match k {
                Some(_) => None,
                None => text(rules, *op, ev, cx),
            })
            .collect();
        steps.push(StepHit {
            step: n,
            key,
            values,
        });
    }
    let last = s.steps.len().checked_sub(1)?;
    let completes = steps.last().is_some_and(|h| h.step == last);
    (!steps.is_empty()).then(|| SeqHit {
        audit_id: text(rules, s.audit_id, ev, cx),
        steps,
        plain: if completes {
            s.plain.iter().map(|op| text(rules, *op, ev, cx)).collect()
        } else {
            Vec::new()
        },
    })
}

fn first_seen_key<'a>(rules: &RuleSet, f: &FirstSeen, ev: &Event<'a>, cx: &mut EvalCtx<'a>) -> Key {
    let mut parts = vec![String::new(); f.by.len()];
    render_key(rules, &f.by, ev, cx, &mut parts);
    parts.into()
}

fn render_first_seen<'a>(
    rules: &RuleSet,
    i: usize,
    f: &FirstSeen,
    ev: &Event<'a>,
    cx: &mut EvalCtx<'a>,
) -> String {
    let mut out = String::new();
    for part in &rules.rules[i].output {
        match part {
            OutputPart::Text(t) => out.push_str(t),
            OutputPart::Value(id) => match rules.program.value(*id, ev, cx) {
                Some(v) => out.push_str(&v.render()),
                None => out.push_str("<NA>"),
            },
            OutputPart::Agg(a) => out.push_str(&agg_text(*a, f)),
            OutputPart::Key(_) => out.push_str("<NA>"),
        }
    }
    out
}

/// `%agg.*` of a first-seen alert: the key is new, seen once in the window.
fn agg_text(a: AggField, f: &FirstSeen) -> String {
    match a {
        AggField::Value => format_number(1.0),
        AggField::Threshold => "<NA>".into(),
        AggField::Window => f.window_text.clone(),
        AggField::For => "0s".into(),
        AggField::State => "new".into(),
    }
}

fn owned(v: &Val) -> Val<'static> {
    match v {
        Val::Str(s) => Val::Str(s.to_string().into()),
        Val::List(l) => Val::List(l.iter().map(|s| s.to_string().into()).collect()),
        Val::Num(n) => Val::Num(*n),
    }
}

/// The alert for what applying an event of `rule` produced.
pub fn alert<'r>(
    rule: &'r CompiledRule,
    outcome: Outcome,
    resolution_ns: i64,
) -> Option<Alert<'r>> {
    let (time_ns, message, fields, info) = match (rule.stateful.as_ref()?, outcome) {
        (StatefulRule::Sequence(s), Outcome::Completed(c)) => sequence_parts(s, c),
        (StatefulRule::FirstSeen(f), Outcome::New(n)) => {
            first_seen_parts(rule, f, n, resolution_ns)
        }
        _ => return None,
    };
    Some(Alert {
        time_ns,
        rule: &rule.name,
        priority: rule.priority,
        tags: &rule.tags,
        message,
        fields,
        aggregate: None,
        stateful: Some(info),
        desc: &rule.desc,
        labels: &rule.labels,
        annotations: &rule.annotations,
    })
}

type Parts<'r> = (i64, String, Vec<(&'r str, Option<Val<'r>>)>, StatefulInfo);

fn sequence_parts(s: &Sequence, c: Completed) -> Parts<'_> {
    fn value<'v>(s: &Sequence, p: &'v SeqPart, c: &'v Completed) -> Option<&'v str> {
        match p {
            SeqPart::Text(t) => Some(t),
            SeqPart::Plain(i) => c.plain.get(*i)?.as_deref(),
            // A value the hit left out is the key's (a state saved before
            // values were left out has it).
            SeqPart::Step(step, i) => match c.steps.get(*step)?.values.get(*i)? {
                Some(v) => Some(v),
                None => {
                    let k = (*s.steps.get(*step)?.from_key.get(*i)?)?;
                    c.key.get(k).map(String::as_str)
                }
            },
        }
    }
    let value = |p| value(s, p, &c);
    let message: String = s
        .output
        .iter()
        .map(|p| value(p).unwrap_or("<NA>"))
        .collect();
    let fields = s
        .output_fields
        .iter()
        .map(|(name, p)| {
            (
                name.as_str(),
                value(p).map(|v| Val::Str(Cow::Owned(v.to_string()))),
            )
        })
        .collect();
    let info = StatefulInfo::Sequence {
        within: s.within_text.clone(),
        key: c.key.to_vec(),
        steps: s
            .steps
            .iter()
            .zip(&c.steps)
            .map(|(step, rec)| StepInfo {
                name: step.name.clone(),
                time_ns: rec.time_ns,
                audit_id: rec.audit_id.clone(),
            })
            .collect(),
    };
    (c.time_ns, message, fields, info)
}

fn first_seen_parts<'r>(rule: &'r CompiledRule, f: &FirstSeen, n: New, res: i64) -> Parts<'r> {
    let fields = rule
        .output_fields
        .iter()
        .map(|(name, _)| name.as_str())
        .zip(n.rendered.fields)
        .collect();
    let info = StatefulInfo::FirstSeen {
        key: f
            .by
            .iter()
            .map(|(b, _)| b.clone())
            .zip(n.key.iter().cloned())
            .collect(),
        window: f.window_text.clone(),
        previous_ns: n.previous.map(|t| t * res),
    };
    (n.time_ns, n.rendered.message, fields, info)
}

#[cfg(test)]
mod tests {
    use crate::engine::{Engine, RuleMatching};
    use crate::rules::RuleSource;
    use crate::sink::stdout::{Format, StdoutSink};
    use crate::source::lines::Line;

    fn ev(sec: u32, verb: &str, user: &str) -> String {
        format!(
            r#"{{"auditID":"{user}{sec}","stage":"ResponseComplete","verb":"{verb}","user":{{"username":"{user}"}},"objectRef":{{"resource":"seq","namespace":"default","name":"x"}},"stageTimestamp":"2024-10-29T12:00:{sec:02}Z"}}"#
        )
    }

    #[test]
    fn metrics_count_partials_keys_and_late_events_per_rule() {
        let rules = include_str!("../../tests/golden/sequences/rules.yaml");
        let set = crate::rules::load(&[RuleSource::Embedded("rules.yaml", rules)])
            .rules
            .expect("golden rules");
        let (mut engine, registry) =
            Engine::new(&set, RuleMatching::First).with_metrics(Vec::new(), 10);
        let mut sink = StdoutSink::new(Vec::new(), Format::Json);
        // alice's create starts a partial; bob's, 30s later, moves the
        // watermark past alice's delete, which arrives late.
        for line in [
            ev(0, "create", "alice"),
            ev(30, "create", "bob"),
            ev(10, "delete", "alice"),
        ] {
            engine
                .process_line(Line::Text(line.as_bytes()), &mut sink)
                .unwrap();
        }
        // Another stream's state: its counts add up, they do not replace.
        let mut other = engine.new_windows();
        engine.swap_windows(&mut other);
        engine
            .process_line(Line::Text(ev(0, "create", "carol").as_bytes()), &mut sink)
            .unwrap();
        engine
            .process_line(Line::Text(ev(30, "create", "dave").as_bytes()), &mut sink)
            .unwrap();
        engine
            .process_line(Line::Text(ev(5, "delete", "carol").as_bytes()), &mut sink)
            .unwrap();
        engine.finish(&mut sink).unwrap();
        assert!(sink.into_inner().is_empty(), "both deletes are late");
        let text = registry.lock().unwrap().render();
        for line in [
            "saker_stateful_late_events_total{rule=\"AB\"} 2",
            "saker_stateful_evictions_total{rule=\"AB\"} 0",
            "saker_sequence_partials{rule=\"AB\"} 1",
            "saker_stateful_keys{rule=\"AB\"} 1",
            "saker_stateful_keys{rule=\"First\"} 0",
        ] {
            assert!(text.contains(line), "{line} not in\n{text}");
        }
        assert!(!text.contains("rule=\"Cross Key\"} 1"), "{text}");
    }
}
