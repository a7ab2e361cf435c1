//! The `aggregate:` clause of windowed rules: parsed with the same pest
//! grammar as conditions (`grammar/condition.pest`, rule `aggregate`) and
//! checked into a [`window::Spec`] plus the fields it groups by.

use pest::Parser as _;

use super::ast::{FieldRef, Span};
use super::parser::{build_field, ConditionGrammar, Rule, SyntaxError};
use crate::window::spec::{parse_duration, Cmp, Measure, Threshold};

/// The clause as written, with spans into its text.
#[derive(Debug, Clone, PartialEq)]
pub struct Clause {
    pub measure: MeasureAst,
    pub measure_span: Span,
    pub cmp: Cmp,
    pub cmp_span: Span,
    pub threshold: Threshold,
    pub threshold_text: String,
    pub threshold_span: Span,
    /// The rate unit as written and its length in nanoseconds.
    pub unit: Option<(String, u64, Span)>,
    pub window_ns: u64,
    pub window_text: String,
    pub window_span: Span,
    pub by: Vec<FieldRef>,
    pub hold: Option<(u64, String, Span)>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum MeasureAst {
    Count,
    Rate,
    Distinct(FieldRef),
}

/// A problem in a clause, positioned in its text.
#[derive(Debug, Clone, PartialEq)]
pub struct ClauseError {
    pub span: Span,
    pub message: String,
    pub help: Option<String>,
}

impl From<SyntaxError> for ClauseError {
    fn from(e: SyntaxError) -> Self {
        ClauseError {
            span: e.span,
            message: e.message,
            help: Some("the form is `count|rate|distinct(field) >|>=|<|<= N[/unit] over DURATION [by field, ...] [for DURATION]`".into()),
        }
    }
}

fn span_of(p: &pest::iterators::Pair<Rule>) -> Span {
    (p.as_span().start(), p.as_span().end())
}

/// Parses and checks a clause. `resolution_ns` is the engine's tick: the
/// window and `for` must be whole multiples of it.
pub fn parse(text: &str, resolution_ns: u64) -> Result<Clause, Vec<ClauseError>> {
    let pairs = ConditionGrammar::parse(Rule::aggregate, text)
        .map_err(|e| vec![ClauseError::from(super::parser::convert_error(e))])?;
    let root = pairs.into_iter().next().expect("grammar: aggregate");
    let mut errors = Vec::new();
    let mut measure = None;
    let mut cmp = None;
    let mut threshold = None;
    let mut window = None;
    let mut by = Vec::new();
    let mut hold = None;
    for p in root.into_inner() {
        match p.as_rule() {
            Rule::measure => {
                let span = span_of(&p);
                let inner = p.into_inner().next().expect("grammar: measure");
                let m = match inner.as_rule() {
                    Rule::count_kw => MeasureAst::Count,
                    Rule::rate_kw => MeasureAst::Rate,
                    _ => {
                        let field = inner.into_inner().next().expect("grammar: distinct field");
                        MeasureAst::Distinct(build_field(field).map_err(|e| vec![e.into()])?)
                    }
                };
                measure = Some((m, span));
            }
            Rule::agg_cmp => {
                let c = match p.as_str() {
                    ">" => Cmp::Gt,
                    ">=" => Cmp::Ge,
                    "<" => Cmp::Lt,
                    _ => Cmp::Le,
                };
                cmp = Some((c, span_of(&p)));
            }
            Rule::threshold => threshold = Some(p),
            Rule::duration => window = Some((p.as_str().to_string(), span_of(&p))),
            Rule::by_clause => {
                by = p
                    .into_inner()
                    .map(build_field)
                    .collect::<Result<_, _>>()
                    .map_err(|e| vec![e.into()])?
            }
            Rule::for_clause => {
                let d = p.into_inner().next().expect("grammar: for duration");
                hold = Some((d.as_str().to_string(), span_of(&d)));
            }
            _ => {}
        }
    }
    let (measure, measure_span) = measure.expect("grammar: measure");
    let (cmp, cmp_span) = cmp.expect("grammar: comparison");
    let threshold = threshold.expect("grammar: threshold");
    let threshold_span = span_of(&threshold);
    let threshold_text = threshold.as_str().to_string();
    let mut parts = threshold.into_inner();
    let number = parts.next().expect("grammar: number");
    let value = Threshold::parse(number.as_str()).unwrap_or(Threshold { num: 0, den: 1 });
    let unit = parts.next().map(|u| (u.as_str().to_string(), span_of(&u)));
    let unit = match (&measure, unit) {
        (MeasureAst::Rate, None) => {
            errors.push(ClauseError {
                span: threshold_span,
                message: "a rate needs a unit".into(),
                help: Some(format!("write `{}/min` (or /s, /h)", number.as_str())),
            });
            None
        }
        (MeasureAst::Rate, Some((u, span))) => match u.as_str() {
            "s" => Some((u, 1_000_000_000, span)),
            "min" => Some((u, 60_000_000_000, span)),
            "h" => Some((u, 3_600_000_000_000, span)),
            _ => {
                errors.push(ClauseError {
                    span,
                    message: format!("unknown rate unit `{u}`"),
                    help: Some("use s, min or h".into()),
                });
                None
            }
        },
        (_, Some((u, span))) => {
            errors.push(ClauseError {
                span: (threshold_span.0, span.1),
                message: format!("a count has no unit (`/{u}`); only `rate` takes one"),
                help: Some(format!("write `{}`, or use `rate`", number.as_str())),
            });
            None
        }
        (_, None) => None,
    };
    if cmp.is_absence() && !by.is_empty() {
        errors.push(ClauseError {
            span: cmp_span,
            message: format!("`{}` is only allowed without `by`", cmp.as_str()),
            help: Some("a key that stops sending events is forgotten, so absence is only watched for the whole stream".into()),
        });
    }
    let (window_text, window_span) = window.expect("grammar: window");
    let window_ns = check_duration(
        &window_text,
        window_span,
        resolution_ns,
        "window",
        &mut errors,
    );
    let hold = hold.map(|(t, span)| {
        (
            check_duration(&t, span, resolution_ns, "`for` duration", &mut errors),
            t,
            span,
        )
    });
    if window_ns == 0 && errors.is_empty() {
        errors.push(ClauseError {
            span: window_span,
            message: "the window must be longer than zero".into(),
            help: None,
        });
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(Clause {
        measure,
        measure_span,
        cmp,
        cmp_span,
        threshold: value,
        threshold_text,
        threshold_span,
        unit,
        window_ns,
        window_text,
        window_span,
        by,
        hold,
    })
}

fn check_duration(
    text: &str,
    span: Span,
    resolution_ns: u64,
    what: &str,
    errors: &mut Vec<ClauseError>,
) -> u64 {
    let Some(ns) = parse_duration(text) else {
        errors.push(ClauseError {
            span,
            message: format!("`{text}` is not a duration"),
            help: Some("write e.g. 30s, 5m, 1h30m".into()),
        });
        return 0;
    };
    if resolution_ns > 0 && ns % resolution_ns != 0 {
        errors.push(ClauseError {
            span,
            message: format!(
                "the {what} {text} is not a whole number of ticks of the resolution ({})",
                crate::window::spec::format_duration(resolution_ns)
            ),
            help: Some("change the duration or --resolution".into()),
        });
    }
    ns
}

/// The window measure for a checked clause.
pub fn measure_of(c: &Clause) -> Measure {
    match (&c.measure, &c.unit) {
        (MeasureAst::Rate, Some((_, unit_ns, _))) => Measure::Rate { unit_ns: *unit_ns },
        (MeasureAst::Distinct(_), _) => Measure::Distinct,
        _ => Measure::Count,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    #[test]
    fn the_design_examples_parse() {
        let c = parse("rate > 1/min over 1m by ka.user.name for 5m", S).unwrap();
        assert_eq!(c.measure, MeasureAst::Rate);
        assert_eq!(c.unit.as_ref().map(|u| u.1), Some(60 * S));
        assert_eq!(c.window_ns, 60 * S);
        assert_eq!(c.by[0].name, "ka.user.name");
        assert_eq!(c.hold.as_ref().map(|h| h.0), Some(300 * S));
        let c = parse(
            "distinct(ka.target.name) >= 15 over 30m by ka.user.name, ka.target.namespace",
            S,
        )
        .unwrap();
        assert!(matches!(c.measure, MeasureAst::Distinct(ref f) if f.name == "ka.target.name"));
        assert_eq!(c.by.len(), 2);
        let c = parse("count < 1 over 10m", S).unwrap();
        assert_eq!(c.cmp, Cmp::Lt);
        assert!(parse("count >= 2.5 over 1h30m", S).is_ok());
    }

    #[test]
    fn mistakes_are_explained() {
        let msg = |t: &str| {
            parse(t, S)
                .unwrap_err()
                .into_iter()
                .map(|e| e.message)
                .collect::<Vec<_>>()
                .join("; ")
        };
        assert!(msg("rate > 1 over 1m").contains("a rate needs a unit"));
        assert!(msg("count > 1/min over 1m").contains("a count has no unit"));
        assert!(msg("rate > 1/m over 1m").contains("unknown rate unit `m`"));
        assert!(msg("count < 1 over 1m by ka.user.name").contains("only allowed without `by`"));
        assert!(msg("count > 1 over 1500ms").contains("not a whole number of ticks"));
        assert!(msg("count > 1 over 0s").contains("longer than zero"));
        assert!(msg("count > 1 every 1m").contains("syntax error"));
        let e = &parse("count > 1 ovr 1m", S).unwrap_err()[0];
        assert_eq!(e.span.0, 10, "{e:?}");
    }
}
