//! Turns condition text into an [`Expr`] with the pest grammar in
//! `grammar/condition.pest`, and output templates into tokens.

use pest::error::{ErrorVariant, InputLocation};
use pest::iterators::Pair;
use pest::Parser as _;
use pest_derive::Parser;

use super::ast::*;

#[derive(Parser)]
#[grammar = "../grammar/condition.pest"]
pub(crate) struct ConditionGrammar;

/// A syntax error in a condition, positioned in the condition's text.
#[derive(Debug, Clone, PartialEq)]
pub struct SyntaxError {
    pub span: Span,
    pub message: String,
    pub expected: String,
}

/// Nesting deeper than this is refused (Falco's rule compiler allows 1000).
const MAX_DEPTH: usize = 1000;

pub fn parse_condition(text: &str) -> Result<Expr, SyntaxError> {
    if text.trim().is_empty() {
        return Err(SyntaxError {
            span: (0, text.len()),
            message: "the condition is empty".into(),
            expected: "a condition".into(),
        });
    }
    check_depth(text)?;
    let mut pairs = ConditionGrammar::parse(Rule::condition, text).map_err(convert_error)?;
    let condition = pairs.next().expect("grammar: condition");
    let or_expr = condition
        .into_inner()
        .find(|p| p.as_rule() == Rule::or_expr)
        .expect("grammar: or_expr");
    build_or(or_expr)
}

/// Parentheses nest the grammar's recursion; refuse input that would nest
/// deeper than Falco allows instead of exhausting the stack.
fn check_depth(text: &str) -> Result<(), SyntaxError> {
    let mut depth = 0usize;
    for (i, c) in text.char_indices() {
        match c {
            '(' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(SyntaxError {
                        span: (i, i + 1),
                        message: format!("the condition nests deeper than {MAX_DEPTH} levels"),
                        expected: "fewer parentheses".into(),
                    });
                }
            }
            ')' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

fn span_of(pair: &Pair<Rule>) -> Span {
    let s = pair.as_span();
    (s.start(), s.end())
}

fn build_or(pair: Pair<Rule>) -> Result<Expr, SyntaxError> {
    let mut items: Vec<Expr> = pair.into_inner().map(build_and).collect::<Result<_, _>>()?;
    Ok(if items.len() == 1 {
        items.pop().expect("one item")
    } else {
        Expr::Or(items)
    })
}

fn build_and(pair: Pair<Rule>) -> Result<Expr, SyntaxError> {
    let mut items: Vec<Expr> = pair.into_inner().map(build_not).collect::<Result<_, _>>()?;
    Ok(if items.len() == 1 {
        items.pop().expect("one item")
    } else {
        Expr::And(items)
    })
}

fn build_not(pair: Pair<Rule>) -> Result<Expr, SyntaxError> {
    let mut negations = 0;
    let mut atom = None;
    for p in pair.into_inner() {
        match p.as_rule() {
            Rule::negation => negations += 1,
            _ => atom = Some(build_atom(p)?),
        }
    }
    let mut expr = atom.expect("grammar: atom");
    for _ in 0..negations {
        expr = Expr::Not(Box::new(expr));
    }
    Ok(expr)
}

fn build_atom(pair: Pair<Rule>) -> Result<Expr, SyntaxError> {
    match pair.as_rule() {
        Rule::group => build_or(pair.into_inner().next().expect("grammar: group")),
        Rule::macro_ref => Ok(Expr::Macro(pair.as_str().to_string(), span_of(&pair))),
        Rule::comparison => build_comparison(pair),
        r => unreachable!("grammar: unexpected atom {r:?}"),
    }
}

fn build_comparison(pair: Pair<Rule>) -> Result<Expr, SyntaxError> {
    let mut inner = pair.into_inner();
    let lhs = build_operand(inner.next().expect("grammar: operand"))?;
    let op_pair = inner.next().expect("grammar: operator");
    let op = Op::parse(op_pair.as_str()).expect("grammar: known operator");
    let op_span = span_of(&op_pair);
    let rhs = match inner.next() {
        None => Rhs::None,
        Some(p) => match p.as_rule() {
            Rule::rhs_field => {
                let p = p.into_inner().next().expect("grammar: rhs field");
                match p.as_rule() {
                    Rule::val_ref => Rhs::Operand(build_operand(
                        p.into_inner().next().expect("grammar: val field"),
                    )?),
                    _ => Rhs::Operand(build_operand(p)?),
                }
            }
            Rule::list_value => build_list(p)?,
            _ => Rhs::Value(build_value(p)?),
        },
    };
    Ok(Expr::Compare(Box::new(Compare {
        lhs,
        op,
        op_span,
        rhs,
    })))
}

fn build_list(pair: Pair<Rule>) -> Result<Rhs, SyntaxError> {
    let span = span_of(&pair);
    let mut items = Vec::new();
    for p in pair.into_inner() {
        if p.as_rule() == Rule::list_name {
            return Ok(Rhs::ListName(p.as_str().to_string(), span_of(&p)));
        }
        items.push(build_value(p)?);
    }
    Ok(Rhs::List(items, span))
}

fn build_value(pair: Pair<Rule>) -> Result<Value, SyntaxError> {
    let span = span_of(&pair);
    match pair.as_rule() {
        Rule::quoted => Ok(Value {
            text: unquote(&pair)?,
            quoted: true,
            span,
        }),
        _ => Ok(Value {
            text: pair.as_str().to_string(),
            quoted: false,
            span,
        }),
    }
}

/// A `field` or `field[arg]` pair; quoted arguments are unescaped.
pub(crate) fn build_field(pair: Pair<Rule>) -> Result<FieldRef, SyntaxError> {
    let span = span_of(&pair);
    let mut inner = pair.into_inner();
    let name = inner
        .next()
        .expect("grammar: field name")
        .as_str()
        .to_string();
    let arg = match inner.next() {
        None => None,
        Some(p) if p.as_rule() == Rule::quoted => Some(unquote(&p)?),
        Some(p) => Some(p.as_str().to_string()),
    };
    Ok(FieldRef { name, arg, span })
}

fn build_operand(pair: Pair<Rule>) -> Result<Operand, SyntaxError> {
    let span = span_of(&pair);
    match pair.as_rule() {
        Rule::field => Ok(Operand::Field(build_field(pair)?)),
        Rule::transformer => {
            let mut inner = pair.into_inner();
            let name = inner.next().expect("grammar: transformer name");
            let kind = TransformKind::parse(name.as_str()).expect("grammar: known transformer");
            let args = inner.map(build_operand).collect::<Result<_, _>>()?;
            Ok(Operand::Transform(Transform { kind, args, span }))
        }
        Rule::quoted => Ok(Operand::Literal(unquote(&pair)?, span)),
        _ => Ok(Operand::Literal(pair.as_str().to_string(), span)),
    }
}

/// Removes the quotes and applies Falco's escapes: `\b \f \n \r \t \\ \/
/// \xHH`, the matching quote, and the legacy `\ ` (kept as written).
fn unquote(pair: &Pair<Rule>) -> Result<String, SyntaxError> {
    let raw = pair.as_str();
    let quote = raw.chars().next().unwrap_or('"');
    let body = &raw[1..raw.len() - 1];
    let base = pair.as_span().start() + 1;
    let mut out = String::with_capacity(body.len());
    let mut chars = body.char_indices();
    while let Some((i, c)) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        let bad = |len: usize| SyntaxError {
            span: (base + i, base + i + len),
            message: "unsupported string escape sequence".into(),
            expected: "one of \\b \\f \\n \\r \\t \\\\ \\/ \\xHH or an escaped quote".into(),
        };
        match chars.next() {
            Some((_, 'b')) => out.push('\u{8}'),
            Some((_, 'f')) => out.push('\u{c}'),
            Some((_, 'n')) => out.push('\n'),
            Some((_, 'r')) => out.push('\r'),
            Some((_, 't')) => out.push('\t'),
            Some((_, '\\')) => out.push('\\'),
            Some((_, '/')) => out.push('/'),
            Some((_, ' ')) => out.push_str("\\ "),
            Some((_, q)) if q == quote => out.push(q),
            Some((_, 'x')) => {
                let hex: String = chars.by_ref().take(2).map(|(_, c)| c).collect();
                let byte = u8::from_str_radix(&hex, 16).map_err(|_| bad(2 + hex.len()))?;
                out.push(char::from(byte));
            }
            _ => return Err(bad(2)),
        }
    }
    Ok(out)
}

/// One piece of an output template.
#[derive(Debug, Clone, PartialEq)]
pub enum OutputPiece {
    Text(String),
    /// `%field`, `%field[arg]` or `%transformer(field)`; the span covers the
    /// token without the `%`.
    Token(Operand),
}

/// Splits an output template into text and field tokens. Errors carry the
/// byte offset of the offending `%`.
pub fn parse_output(template: &str) -> Result<Vec<OutputPiece>, SyntaxError> {
    let mut pieces = Vec::new();
    let mut text = String::new();
    let mut rest = template;
    let mut offset = 0;
    while let Some(i) = rest.find('%') {
        text.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let at = offset + i;
        if after.is_empty() {
            return Err(SyntaxError {
                span: (at, at + 1),
                message: "an output cannot end with a %".into(),
                expected: "a field name after %".into(),
            });
        }
        // Falco's `%<N>field` width form is accepted and the width ignored.
        let digits = after.bytes().take_while(u8::is_ascii_digit).count();
        let token_text = &after[digits..];
        match ConditionGrammar::parse(Rule::output_token, token_text) {
            Ok(mut pairs) => {
                let pair = pairs
                    .next()
                    .and_then(|p| p.into_inner().next())
                    .expect("grammar: output token");
                let len = pair.as_span().end();
                let mut operand = build_operand(pair)?;
                shift_operand(&mut operand, at + 1 + digits);
                if !text.is_empty() {
                    pieces.push(OutputPiece::Text(std::mem::take(&mut text)));
                }
                pieces.push(OutputPiece::Token(operand));
                rest = &token_text[len..];
                offset = at + 1 + digits + len;
            }
            Err(_) => {
                // A `%` not followed by a field is literal text, as in Falco's
                // formatter for things like "100%".
                text.push('%');
                rest = after;
                offset = at + 1;
            }
        }
    }
    text.push_str(rest);
    if !text.is_empty() {
        pieces.push(OutputPiece::Text(text));
    }
    Ok(pieces)
}

fn shift_operand(op: &mut Operand, by: usize) {
    match op {
        Operand::Field(f) => f.span = (f.span.0 + by, f.span.1 + by),
        Operand::Literal(_, s) => *s = (s.0 + by, s.1 + by),
        Operand::Transform(t) => {
            t.span = (t.span.0 + by, t.span.1 + by);
            t.args.iter_mut().for_each(|a| shift_operand(a, by));
        }
    }
}

pub(crate) fn convert_error(err: pest::error::Error<Rule>) -> SyntaxError {
    let (start, end) = match err.location {
        InputLocation::Pos(p) => (p, p + 1),
        InputLocation::Span((s, e)) => (s, e),
    };
    let expected = match &err.variant {
        ErrorVariant::ParsingError { positives, .. } => {
            let mut names: Vec<&str> = positives.iter().filter_map(|r| describe(*r)).collect();
            names.sort();
            names.dedup();
            match names.len() {
                0 => "valid condition syntax".to_string(),
                1 => names[0].to_string(),
                _ => {
                    let last = names.pop().unwrap_or_default();
                    format!("{} or {last}", names.join(", "))
                }
            }
        }
        ErrorVariant::CustomError { message } => message.clone(),
    };
    SyntaxError {
        span: (start, end),
        message: format!("syntax error: expected {expected}"),
        expected,
    }
}

fn describe(rule: Rule) -> Option<&'static str> {
    Some(match rule {
        Rule::or_expr | Rule::and_expr | Rule::not_expr | Rule::group | Rule::comparison => {
            "a condition"
        }
        Rule::negation => "'not'",
        Rule::macro_ref | Rule::ident => "a macro name",
        Rule::field | Rule::field_name => "a field (like ka.verb)",
        Rule::transformer | Rule::transformer_name => "a transformer",
        Rule::unary_op | Rule::num_op | Rule::str_op | Rule::list_op => {
            "an operator (=, !=, in, exists, contains, startswith, ...)"
        }
        Rule::num_value => "a number",
        Rule::bare | Rule::quoted | Rule::dq_inner | Rule::sq_inner => "a value",
        Rule::list_value | Rule::list_name => "a list such as (a, b)",
        Rule::rhs_field | Rule::val_ref => "val(field)",
        Rule::bare_arg => "a field argument",
        Rule::EOI => "'and', 'or' or the end of the condition",
        Rule::measure | Rule::count_kw | Rule::rate_kw | Rule::distinct_of => {
            "count, rate or distinct(field)"
        }
        Rule::agg_cmp => "a comparison (>, >=, <, <=)",
        Rule::threshold | Rule::agg_number => "a threshold number",
        Rule::duration => "a duration (30s, 5m, 1h30m)",
        Rule::by_clause => "by",
        Rule::kw_over => "`over`",
        Rule::for_clause => "for",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str) -> Expr {
        parse_condition(text).unwrap_or_else(|e| panic!("{text:?}: {e:?}"))
    }

    #[test]
    fn falco_shapes_parse() {
        ok("ka.verb=create");
        ok("(jevt.rawtime=0)");
        ok("kevt and pod and kcreate and not allowed_k8s_containers");
        ok("jevt.value[/stage] in (k8s_audit_stages)");
        ok("ka.uri=/healthz or ka.uri startswith /healthz?");
        ok("ka.req.role.rules.resources intersects (\"*\")");
        ok("not ka.user.name startswith \"system:\"");
        ok("not(ka.verb=get)and(ka.verb=list)");
        ok("evt.dir = < and proc.aname[2] in (a, b)");
        ok("fd.name glob '/etc/*' and len(ka.user.groups) > 2");
        ok("ka.user.name = val(ka.impuser.name)");
        ok("tolower(ka.verb) = get and ka.verb in ()");
        ok("ka.verb in my_list");
        ok("ka.response.code >= 400");
    }

    #[test]
    fn structure() {
        let e = ok("a and not b or c");
        match e {
            Expr::Or(items) => {
                assert_eq!(items.len(), 2);
                assert!(matches!(&items[0], Expr::And(v) if matches!(v[1], Expr::Not(_))));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn values_and_escapes() {
        let e = ok(r#"ka.uri = "a\"b\x41\\" and ka.verb in (x, 'y z')"#);
        let Expr::And(items) = e else { panic!() };
        let Expr::Compare(c) = &items[0] else {
            panic!()
        };
        assert_eq!(
            c.rhs,
            Rhs::Value(Value {
                text: "a\"bA\\".into(),
                quoted: true,
                span: (9, 21)
            })
        );
        let Expr::Compare(c) = &items[1] else {
            panic!()
        };
        let Rhs::List(values, _) = &c.rhs else {
            panic!()
        };
        assert_eq!(values[1].text, "y z");
    }

    #[test]
    fn errors_point_at_the_problem() {
        let e = parse_condition("ka.verb = get and").unwrap_err();
        assert_eq!(e.span.0, 17);
        let e = parse_condition("ka.verb").unwrap_err();
        assert!(e.expected.contains("operator"), "{e:?}");
        let e = parse_condition("ka.verb = get andka.verb=x").unwrap_err();
        assert!(e.span.0 >= 14, "{e:?}");
        assert!(parse_condition("").is_err());
        assert!(parse_condition(r#"ka.uri = "\q""#).is_err());
        assert!(parse_condition(&"(".repeat(100_000)).is_err());
    }

    #[test]
    fn output_tokens() {
        let p =
            parse_output("user=%ka.user.name uri=%ka.uri.param[command] 100% %jevt.value[/a b]")
                .unwrap();
        assert!(
            matches!(&p[1], OutputPiece::Token(Operand::Field(f)) if f.name == "ka.user.name" && f.span == (6, 18))
        );
        assert!(
            matches!(&p[3], OutputPiece::Token(Operand::Field(f)) if f.arg.as_deref() == Some("command"))
        );
        assert!(parse_output("ends with %").is_err());
    }
}
