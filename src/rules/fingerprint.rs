//! A rule's fingerprint: a digest of everything that determines the state
//! a windowed, sequence or first-seen rule keeps (its name, its condition
//! with macros and lists expanded, its clause, its `by` fields, and the
//! fields a sequence's steps capture for the output). Saved state is given
//! back to a rule only if its fingerprint is unchanged (restart, reload).
//!
//! The description is built from the compiled program, never from node or
//! operand ids, so it is the same in every process that loads the same
//! definition; sets are sorted, so their hashing order does not matter.

use std::fmt::Write;

use ring::digest::{digest, SHA256};

use super::predicate::{Check, Node, OperandId, OperandProg, Program, Test, ValueSet};
use super::stateful::StatefulRule;
use super::{CompiledRule, RuleSet};

impl RuleSet {
    /// The fingerprint of rule `i` (64 hex digits of SHA-256).
    pub fn fingerprint(&self, i: usize) -> String {
        let text = describe_rule(&self.program, &self.rules[i]);
        digest(&SHA256, text.as_bytes()).as_ref().iter().fold(
            String::with_capacity(64),
            |mut s, b| {
                let _ = write!(s, "{b:02x}");
                s
            },
        )
    }
}

/// The canonical text the fingerprint digests.
pub fn describe_rule(p: &Program, r: &CompiledRule) -> String {
    let mut out = String::new();
    let _ = write!(out, "rule {:?} enabled {}\ncondition ", r.name, r.enabled);
    node(p, r.root, &mut out);
    if let Some(a) = &r.aggregate {
        let _ = write!(out, "\naggregate {:?} by", a.spec);
        for (_, op) in &a.by {
            out.push(' ');
            operand(p, *op, &mut out);
        }
        if let Some(d) = a.distinct {
            out.push_str(" distinct ");
            operand(p, d, &mut out);
        }
    }
    match &r.stateful {
        Some(StatefulRule::Sequence(s)) => {
            let _ = write!(
                out,
                "\nsequence within {} resolution {} auditid ",
                s.within_ns, s.resolution_ns
            );
            operand(p, s.audit_id, &mut out);
            for step in &s.steps {
                let _ = write!(out, "\nstep {:?} ", step.name);
                node(p, step.node, &mut out);
                out.push_str(" by");
                operands(p, step.by.iter().map(|(_, op)| *op), &mut out);
                out.push_str(" captures");
                operands(p, step.values.iter().copied(), &mut out);
            }
            out.push_str("\nplain");
            operands(p, s.plain.iter().copied(), &mut out);
        }
        Some(StatefulRule::FirstSeen(f)) => {
            let _ = write!(
                out,
                "\nfirst_seen window {} resolution {} by",
                f.window, f.resolution_ns
            );
            operands(p, f.by.iter().map(|(_, op)| *op), &mut out);
        }
        None => {}
    }
    out
}

fn operands(p: &Program, ops: impl Iterator<Item = OperandId>, out: &mut String) {
    for op in ops {
        out.push(' ');
        operand(p, op, out);
    }
}

fn node(p: &Program, id: u32, out: &mut String) {
    let Some(n) = p.nodes.get(id as usize) else {
        out.push('?');
        return;
    };
    match n {
        Node::And(items) | Node::Or(items) => {
            out.push_str(if matches!(n, Node::And(_)) {
                "and("
            } else {
                "or("
            });
            for (k, i) in items.iter().enumerate() {
                if k > 0 {
                    out.push(',');
                }
                node(p, *i, out);
            }
            out.push(')');
        }
        Node::Not(i) => {
            out.push_str("not(");
            node(p, *i, out);
            out.push(')');
        }
        Node::Check(c) => {
            out.push_str("check(");
            operand(p, c.lhs, out);
            out.push(' ');
            test(p, &c.test, out);
            out.push(')');
        }
    }
}

/// The canonical text of a check (its operand and test), which names it
/// for [`Program::push_shared`].
pub fn check_text(p: &Program, c: &Check) -> String {
    let mut out = String::from("check(");
    operand(p, c.lhs, &mut out);
    out.push(' ');
    test(p, &c.test, &mut out);
    out.push(')');
    out
}

fn test(p: &Program, t: &Test, out: &mut String) {
    let _ = match t {
        Test::Exists => write!(out, "exists"),
        Test::Str(op, s) => write!(out, "{op:?} {s:?}"),
        Test::Num(op, n, s) => write!(out, "{op:?} {n:?} {s:?}"),
        Test::Glob(g) => write!(out, "glob {g:?}"),
        Test::Regex(r) => write!(out, "regex {:?}", r.as_str()),
        Test::In(set) => write!(out, "in {:?}", sorted(set)),
        Test::Intersects(set) => write!(out, "intersects {:?}", sorted(set)),
        Test::PMatch(paths) => {
            let mut v = paths.clone();
            v.sort();
            write!(out, "pmatch {v:?}")
        }
        Test::InNet(nets) => write!(out, "innet {nets:?}"),
        Test::Operand(op, other) => {
            let _ = write!(out, "{op:?} ");
            operand(p, *other, out);
            Ok(())
        }
    };
}

fn sorted(set: &ValueSet) -> Vec<&String> {
    let mut v: Vec<&String> = set.values().collect();
    v.sort();
    v
}

fn operand(p: &Program, id: OperandId, out: &mut String) {
    let _ = match p.operands.get(id as usize) {
        None => write!(out, "?"),
        Some(OperandProg::Field(def, arg)) => write!(out, "{}{arg:?}", def.name),
        Some(OperandProg::Literal(s)) => write!(out, "lit {s:?}"),
        Some(OperandProg::Transform(kind, args)) => {
            let _ = write!(out, "{kind:?}(");
            for (k, a) in args.iter().enumerate() {
                if k > 0 {
                    out.push(',');
                }
                operand(p, *a, out);
            }
            write!(out, ")")
        }
    };
}

#[cfg(test)]
mod tests {
    use crate::rules::{load, RuleSource};

    fn set(text: &str) -> crate::rules::RuleSet {
        let src = RuleSource::Embedded("t.yaml", Box::leak(text.to_string().into_boxed_str()));
        load(&[src]).rules.expect("rules load")
    }

    const RULES: &str = r#"
- list: verbs
  items: [get, list]
- macro: reads
  condition: ka.verb in (verbs)
- rule: Reads
  desc: d
  condition: reads and ka.target.resource = secrets
  aggregate: count > 5 over 1m by ka.user.name
  output: "%ka.user.name"
  priority: WARNING
  source: k8s_audit
- rule: Other
  desc: d
  condition: ka.verb = delete
  aggregate: count > 5 over 1m by ka.user.name
  output: "%ka.user.name"
  priority: WARNING
  source: k8s_audit
"#;

    fn print(r: &crate::rules::RuleSet, name: &str) -> String {
        let i = r.rules.iter().position(|x| x.name == name).unwrap();
        r.fingerprint(i)
    }

    #[test]
    fn same_definition_same_fingerprint_whatever_else_changes() {
        let a = set(RULES);
        // Another rule first (ids shift), a new output text and priority,
        // the list written in another order: Reads keeps its fingerprint.
        let b = set(&format!(
            "- rule: First\n  desc: d\n  condition: ka.verb = patch and ka.user.name = x\n  output: x\n  priority: INFO\n  source: k8s_audit\n{}",
            RULES
                .replace("[get, list]", "[list, get]")
                .replace("output: \"%ka.user.name\"\n  priority: WARNING\n  source: k8s_audit\n- rule: Other", "output: \"new %ka.user.name\"\n  priority: ERROR\n  source: k8s_audit\n- rule: Other")
        ));
        assert_eq!(print(&a, "Reads"), print(&b, "Reads"));
        assert_eq!(print(&a, "Other"), print(&b, "Other"));
        assert_ne!(print(&a, "Reads"), print(&a, "Other"));
    }

    #[test]
    fn a_changed_macro_list_threshold_or_key_changes_it() {
        let a = set(RULES);
        for changed in [
            RULES.replace("[get, list]", "[get, list, watch]"),
            RULES.replace(
                "condition: ka.verb in (verbs)",
                "condition: ka.verb in (verbs) and ka.user.name != x",
            ),
            RULES.replacen("count > 5", "count > 6", 1),
            RULES.replacen("by ka.user.name", "by ka.user.name, ka.target.namespace", 1),
            RULES.replacen("over 1m", "over 2m", 1),
        ] {
            let b = set(&changed);
            assert_ne!(print(&a, "Reads"), print(&b, "Reads"), "{changed}");
            assert_eq!(print(&a, "Other"), print(&b, "Other"), "{changed}");
        }
    }
}
