//! The `aggregate: first_seen over D [by F, …]` clause (DESIGN 2.5),
//! parsed with the condition grammar (rule `first_seen`). A threshold or a
//! `for` parses, so that it can be reported as the mistake it is.

use pest::Parser as _;

use super::aggregate::ClauseError;
use super::ast::{FieldRef, Span};
use super::parser::{build_field, ConditionGrammar, Rule};
use crate::window::spec::{format_duration, parse_duration};

/// A checked first-seen clause.
#[derive(Debug, Clone, PartialEq)]
pub struct FirstSeenClause {
    pub window_ns: u64,
    pub window_text: String,
    pub by: Vec<FieldRef>,
}

/// Whether an `aggregate:` text is a first-seen clause.
pub fn is_first_seen(text: &str) -> bool {
    let t = text.trim_start();
    t.strip_prefix("first_seen")
        .is_some_and(|rest| !rest.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_'))
}

/// The span of a pair without its leading blanks.
fn span_of(p: &pest::iterators::Pair<Rule>) -> Span {
    let lead = p.as_str().len() - p.as_str().trim_start().len();
    (p.as_span().start() + lead, p.as_span().end())
}

/// Parses and checks a clause; the window must be a whole number of ticks.
pub fn parse(text: &str, resolution_ns: u64) -> Result<FirstSeenClause, Vec<ClauseError>> {
    let pairs = ConditionGrammar::parse(Rule::first_seen, text).map_err(|e| {
        let e = super::parser::convert_error(e);
        vec![ClauseError {
            span: e.span,
            message: e.message,
            help: Some("the form is `first_seen over DURATION [by field, ...]`".into()),
        }]
    })?;
    let root = pairs.into_iter().next().expect("grammar: first_seen");
    let mut errors = Vec::new();
    let mut window = None;
    let mut by = Vec::new();
    for p in root.into_inner() {
        match p.as_rule() {
            Rule::fs_threshold => errors.push(ClauseError {
                span: span_of(&p),
                message: format!("first_seen takes no threshold (`{}`)", p.as_str().trim()),
                help: Some(
                    "it fires on a key not seen within the window; remove the comparison".into(),
                ),
            }),
            Rule::for_clause => errors.push(ClauseError {
                span: span_of(&p),
                message: "first_seen takes no `for`".into(),
                help: Some("a new key is new at one event; remove the `for`".into()),
            }),
            Rule::duration => window = Some((p.as_str().to_string(), span_of(&p))),
            Rule::by_clause => {
                for f in p.into_inner() {
                    match build_field(f) {
                        Ok(f) => by.push(f),
                        Err(e) => errors.push(ClauseError {
                            span: e.span,
                            message: e.message,
                            help: None,
                        }),
                    }
                }
            }
            _ => {}
        }
    }
    let (window_text, span) = window.expect("grammar: window");
    let window_ns = match parse_duration(&window_text) {
        Some(ns) if ns > 0 => ns,
        _ => {
            errors.push(ClauseError {
                span,
                message: "the window must be longer than zero".into(),
                help: None,
            });
            0
        }
    };
    if resolution_ns > 0 && window_ns % resolution_ns != 0 {
        errors.push(ClauseError {
            span,
            message: format!(
                "the window {window_text} is not a whole number of ticks of the resolution ({})",
                format_duration(resolution_ns)
            ),
            help: Some("change the duration or --resolution".into()),
        });
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(FirstSeenClause {
        window_ns,
        window_text,
        by,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    #[test]
    fn clauses_and_mistakes() {
        let c = parse("first_seen over 7d by ka.user.name, ka.target.namespace", S).unwrap();
        assert_eq!(c.window_ns, 7 * 86_400 * S);
        assert_eq!(c.by.len(), 2);
        assert!(is_first_seen("  first_seen over 1h"));
        assert!(!is_first_seen("first_seens over 1h"));
        let msg = |t: &str| parse(t, S).unwrap_err()[0].message.clone();
        assert!(msg("first_seen > 2 over 1h").contains("no threshold"));
        assert!(msg("first_seen over 1h for 5m").contains("no `for`"));
        assert!(msg("first_seen over 1500ms").contains("whole number of ticks"));
    }
}
