//! Compiled conditions: a flat table of nodes indexed by id, built once at
//! load time and evaluated per event. Macros compile to one node that every
//! rule using them shares. Values are only extracted when a check needs them.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

use regex::Regex;

use crate::event::Event;
use crate::fields::extract::{extract, Val};
use crate::fields::{Arg, FieldDef};
use crate::rules::ast::{Op, TransformKind};
use crate::rules::ipnet::IpNet;

pub type NodeId = u32;
pub type OperandId = u32;

#[derive(Debug)]
pub enum Node {
    And(Vec<NodeId>),
    Or(Vec<NodeId>),
    Not(NodeId),
    Check(Check),
}

#[derive(Debug)]
pub struct Check {
    pub lhs: OperandId,
    pub test: Test,
}

/// What a check does with the left-hand value(s).
#[derive(Debug)]
pub enum Test {
    Exists,
    /// String comparison against a constant: `=`, `!=`, `<`, ..., `contains`,
    /// `startswith`, `endswith`, `icontains` (constant already lower-cased).
    Str(Op, String),
    /// Numeric constant: compared as a number with numbers (`len()`), and,
    /// as Falco does, as text (`strcmp`) with string fields; the text form
    /// is made once, here.
    Num(Op, f64, String),
    Glob(Glob),
    Regex(Regex),
    /// `in`: a scalar must be in the set; every element of a list must be.
    In(ValueSet),
    /// `intersects`: some element (or the scalar) is in the set.
    Intersects(ValueSet),
    /// `pmatch`: the value is one of the paths or below one of them.
    PMatch(Vec<String>),
    /// `innet`: the address is inside one of the networks; every element of
    /// a list must be (as with `in`).
    InNet(Vec<IpNet>),
    /// Compare with another operand's value (`val(field)`, a transformer).
    Operand(Op, OperandId),
}

/// A set of constant strings; small sets are scanned, large ones hashed
/// (with foldhash: the set is the rules' and fixed, so SipHash's defence
/// against keys chosen to collide buys nothing, and it costs every event).
#[derive(Debug)]
pub enum ValueSet {
    Small(Vec<String>),
    Hashed(HashSet<String, foldhash::fast::RandomState>),
}

impl ValueSet {
    pub fn new(values: Vec<String>) -> Self {
        if values.len() <= 8 {
            ValueSet::Small(values)
        } else {
            ValueSet::Hashed(values.into_iter().collect())
        }
    }

    pub(crate) fn values(&self) -> Box<dyn Iterator<Item = &String> + '_> {
        match self {
            ValueSet::Small(items) => Box::new(items.iter()),
            ValueSet::Hashed(set) => Box::new(set.iter()),
        }
    }

    fn contains(&self, v: &str) -> bool {
        match self {
            ValueSet::Small(items) => items.iter().any(|i| i == v),
            ValueSet::Hashed(set) => set.contains(v),
        }
    }
}

/// A value producer: a field, a transformer, or a literal.
#[derive(Debug)]
pub enum OperandProg {
    Field(&'static FieldDef, Arg),
    Transform(TransformKind, Vec<OperandId>),
    Literal(String),
}

/// All compiled conditions and operands of a rule set.
#[derive(Debug, Default)]
pub struct Program {
    pub nodes: Vec<Node>,
    pub operands: Vec<OperandProg>,
    /// Field operands by (field, argument), so each distinct field is one
    /// operand and is extracted at most once per event.
    interned: HashMap<(&'static str, Arg), OperandId>,
    /// Memo slot of each node shared by several users (macros), indexed by
    /// node id; `NO_SLOT` for the others.
    memo_slot: Vec<u32>,
    memo_slots: usize,
    /// Nodes built by [`Program::push_shared`], by their canonical text.
    shared: HashMap<String, NodeId>,
}

const NO_SLOT: u32 = u32::MAX;

/// Per-event evaluation state: each operand's value and each shared node's
/// result, computed at most once per event.
///
/// The tables indexed by operand and node are stamped with the event's
/// number rather than cleared: an entry from an earlier event is "not yet
/// computed". Starting an event costs nothing however many operands the
/// rules have, and ending it drops only the values it computed.
pub struct EvalCtx<'a> {
    /// This event's stamp; never 0, which no entry holds once used.
    stamp: u32,
    /// Per operand: the stamp of the event that computed it, and where its
    /// value is in `values`.
    at: Vec<(u32, u32)>,
    /// The values computed for this event, in the order computed.
    values: Vec<Option<Val<'a>>>,
    /// Per memo slot: the stamp of the event that evaluated it, and its
    /// result.
    memo: Vec<(u32, bool)>,
}

/// The tables of the last [`EvalCtx`] dropped on this thread, so that the
/// next event's does not allocate them again.
struct Spare {
    stamp: u32,
    at: Vec<(u32, u32)>,
    values: Vec<Option<Val<'static>>>,
    memo: Vec<(u32, bool)>,
}

thread_local! {
    static SPARE: std::cell::RefCell<Option<Spare>> = const { std::cell::RefCell::new(None) };
}

/// `v` emptied, as a vector of another lifetime: the values borrowed from
/// one event are gone, the allocation is kept (collecting an empty
/// vector's own iterator into a vector of a type of the same size reuses
/// its memory, and costs nothing).
fn emptied<'b, 'c>(mut v: Vec<Option<Val<'b>>>) -> Vec<Option<Val<'c>>> {
    v.clear();
    v.into_iter().map(|_| None).collect()
}

impl<'a> EvalCtx<'a> {
    pub fn new(program: &Program) -> Self {
        let Spare {
            stamp,
            mut at,
            values,
            mut memo,
        } = SPARE.with(|s| s.borrow_mut().take()).unwrap_or(Spare {
            stamp: 0,
            at: Vec::new(),
            values: Vec::new(),
            memo: Vec::new(),
        });
        let stamp = match stamp.checked_add(1) {
            Some(s) => s,
            None => {
                // Once in four billion events: every stamp is old again.
                at.iter_mut().for_each(|e| e.0 = 0);
                memo.iter_mut().for_each(|e| e.0 = 0);
                1
            }
        };
        // Entries added or left over from another rule set are stamped 0,
        // or with an earlier event's stamp: none is this event's.
        at.resize(program.operands.len(), (0, 0));
        memo.resize(program.memo_slots, (0, false));
        EvalCtx {
            stamp,
            at,
            values: emptied(values),
            memo,
        }
    }
}

impl Drop for EvalCtx<'_> {
    fn drop(&mut self) {
        let spare = Spare {
            stamp: self.stamp,
            at: std::mem::take(&mut self.at),
            values: emptied(std::mem::take(&mut self.values)),
            memo: std::mem::take(&mut self.memo),
        };
        SPARE.with(|s| *s.borrow_mut() = Some(spare));
    }
}

impl Program {
    pub fn push_node(&mut self, node: Node) -> NodeId {
        self.nodes.push(node);
        (self.nodes.len() - 1) as NodeId
    }

    /// A node of a condition, built once however many conditions contain
    /// it: the same sub-condition written in several rules (a sequence's
    /// step repeated in other rules, a test repeated) is one node. A shared
    /// `and`, `or` or `not` is remembered within an event, so it is
    /// evaluated once per event whichever rules reach it.
    pub fn push_shared(&mut self, node: Node) -> NodeId {
        let key = match &node {
            Node::And(ids) => format!("and{ids:?}"),
            Node::Or(ids) => format!("or{ids:?}"),
            Node::Not(id) => format!("not{id}"),
            Node::Check(c) => super::fingerprint::check_text(self, c),
        };
        if let Some(&id) = self.shared.get(&key) {
            if !matches!(node, Node::Check(_)) {
                self.memoize(id);
            }
            return id;
        }
        let id = self.push_node(node);
        self.shared.insert(key, id);
        id
    }

    pub fn push_operand(&mut self, op: OperandProg) -> OperandId {
        if let OperandProg::Field(def, arg) = &op {
            if let Some(&id) = self.interned.get(&(def.name, arg.clone())) {
                return id;
            }
            let id = self.operands.len() as OperandId;
            self.interned.insert((def.name, arg.clone()), id);
            self.operands.push(op);
            return id;
        }
        self.operands.push(op);
        (self.operands.len() - 1) as OperandId
    }

    /// The field operand for `name` without argument, if any rule uses it.
    pub fn field_operand(&self, name: &'static str) -> Option<OperandId> {
        self.interned.get(&(name, Arg::None)).copied()
    }

    /// A set `S` such that whenever node `id` is true, operand `op` has a
    /// scalar value in `S`; `None` when the condition does not pin it down.
    /// Used to index rules by the values they require.
    pub fn required_values(&self, id: NodeId, op: OperandId) -> Option<HashSet<String>> {
        match &self.nodes[id as usize] {
            Node::Check(c) if c.lhs == op => match &c.test {
                Test::Str(Op::Eq, v) => Some(HashSet::from([v.clone()])),
                Test::In(set) | Test::Intersects(set) => Some(set.values().cloned().collect()),
                _ => None,
            },
            Node::Check(_) | Node::Not(_) => None,
            Node::And(items) => items
                .iter()
                .filter_map(|&i| self.required_values(i, op))
                .reduce(|a, b| a.intersection(&b).cloned().collect()),
            Node::Or(items) => {
                let mut all = HashSet::new();
                for &i in items {
                    all.extend(self.required_values(i, op)?);
                }
                Some(all)
            }
        }
    }

    /// The terms of node `id`'s top-level `and`s (nested `and`s
    /// flattened), or `id` itself.
    pub fn conjuncts(&self, id: NodeId, out: &mut Vec<NodeId>) {
        match &self.nodes[id as usize] {
            Node::And(items) => items.iter().for_each(|&i| self.conjuncts(i, out)),
            _ => out.push(id),
        }
    }

    /// Whether node `id` reads some operand and only operands of `ops`.
    pub fn reads_only(&self, id: NodeId, ops: &[OperandId]) -> bool {
        match &self.nodes[id as usize] {
            Node::Check(c) => {
                ops.contains(&c.lhs)
                    && match &c.test {
                        Test::Operand(_, rhs) => ops.contains(rhs),
                        _ => true,
                    }
            }
            Node::Not(i) => self.reads_only(*i, ops),
            Node::And(items) | Node::Or(items) => {
                !items.is_empty() && items.iter().all(|&i| self.reads_only(i, ops))
            }
        }
    }

    /// Marks a node whose result is worth remembering within one event
    /// (a macro used by several rules).
    pub fn memoize(&mut self, id: NodeId) {
        if self.memo_slot.len() <= id as usize {
            self.memo_slot.resize(id as usize + 1, NO_SLOT);
        }
        if self.memo_slot[id as usize] == NO_SLOT {
            self.memo_slot[id as usize] = self.memo_slots as u32;
            self.memo_slots += 1;
        }
    }

    pub fn eval<'a>(&self, id: NodeId, ev: &Event<'a>, cx: &mut EvalCtx<'a>) -> bool {
        let slot = self
            .memo_slot
            .get(id as usize)
            .copied()
            .filter(|&s| s != NO_SLOT)
            .map(|s| s as usize);
        if let Some(s) = slot {
            let (stamp, r) = cx.memo[s];
            if stamp == cx.stamp {
                return r;
            }
        }
        let r = match &self.nodes[id as usize] {
            Node::And(items) => items.iter().all(|&i| self.eval(i, ev, cx)),
            Node::Or(items) => items.iter().any(|&i| self.eval(i, ev, cx)),
            Node::Not(i) => !self.eval(*i, ev, cx),
            Node::Check(c) => self.check(c, ev, cx),
        };
        if let Some(s) = slot {
            cx.memo[s] = (cx.stamp, r);
        }
        r
    }

    /// The value(s) of an operand for an event; `None` = not available.
    pub fn value<'a>(
        &self,
        id: OperandId,
        ev: &Event<'a>,
        cx: &mut EvalCtx<'a>,
    ) -> Option<Val<'a>> {
        self.cached(id, ev, cx).cloned()
    }

    /// The value(s) of an operand, borrowed from the event's cache (filled
    /// on first use): a check reads them without copying a list.
    fn cached<'a, 'c>(
        &self,
        id: OperandId,
        ev: &Event<'a>,
        cx: &'c mut EvalCtx<'a>,
    ) -> Option<&'c Val<'a>> {
        let (stamp, mut at) = cx.at[id as usize];
        if stamp != cx.stamp {
            // A transformer computes its arguments first: they take their
            // places before this value does.
            let v = self.compute(id, ev, cx);
            at = cx.values.len() as u32;
            cx.values.push(v);
            cx.at[id as usize] = (cx.stamp, at);
        }
        cx.values[at as usize].as_ref()
    }

    fn compute<'a>(&self, id: OperandId, ev: &Event<'a>, cx: &mut EvalCtx<'a>) -> Option<Val<'a>> {
        match &self.operands[id as usize] {
            OperandProg::Field(def, arg) => extract(ev, def, arg),
            OperandProg::Literal(s) => Some(Val::Str(Cow::Owned(s.clone()))),
            OperandProg::Transform(kind, args) => {
                let mut vals = Vec::with_capacity(args.len());
                let mut missing = false;
                for &a in args {
                    match self.value(a, ev, cx) {
                        Some(v) => vals.push(v),
                        None => missing = true,
                    }
                }
                if missing {
                    None
                } else {
                    transform(*kind, vals)
                }
            }
        }
    }

    fn check<'a>(&self, c: &Check, ev: &Event<'a>, cx: &mut EvalCtx<'a>) -> bool {
        // A missing value makes every comparison false, `!=` included.
        if let Test::Operand(op, rhs) = &c.test {
            // A list compared with another operand is false, as with
            // constants other than `in`, `intersects` and `innet`.
            let Some(lhs) = self
                .value(c.lhs, ev, cx)
                .filter(|v| !matches!(v, Val::List(_)))
            else {
                return false;
            };
            return match self.cached(*rhs, ev, cx) {
                None => false,
                Some(rhs) => compare_values(*op, &lhs, rhs),
            };
        }
        let Some(lhs) = self.cached(c.lhs, ev, cx) else {
            return false;
        };
        match (&c.test, lhs) {
            (Test::Exists, _) => true,
            (Test::In(set), Val::List(items)) => items.iter().all(|i| set.contains(i)),
            (Test::In(set) | Test::Intersects(set), Val::Str(s)) => set.contains(s),
            (Test::In(set) | Test::Intersects(set), Val::Num(n)) => set.contains(&n.to_string()),
            (Test::Intersects(set), Val::List(items)) => items.iter().any(|i| set.contains(i)),
            (Test::InNet(nets), Val::List(items)) => {
                items.iter().all(|i| nets.iter().any(|n| n.contains(i)))
            }
            (Test::InNet(nets), Val::Str(s)) => nets.iter().any(|n| n.contains(s)),
            (Test::InNet(_), Val::Num(_)) => false,
            (_, Val::List(_)) => false,
            (Test::Num(op, rhs, _), Val::Num(n)) => compare_num(*op, *n as f64, *rhs),
            (Test::Num(op, _, text), Val::Str(s)) => compare_str(*op, s, text),
            (Test::Str(op, rhs), Val::Num(n)) => compare_str(*op, &n.to_string(), rhs),
            (Test::Str(op, rhs), Val::Str(s)) => compare_str(*op, s, rhs),
            (Test::Glob(g), v) => g.matches(&v.render()),
            (Test::Regex(re), v) => re.is_match(&v.render()),
            (Test::PMatch(paths), v) => {
                let v = v.render();
                paths.iter().any(|p| path_prefix(p, &v))
            }
            // Compared above.
            (Test::Operand(..), _) => false,
        }
    }
}

fn compare_values(op: Op, lhs: &Val, rhs: &Val) -> bool {
    match (lhs, rhs) {
        (Val::Num(a), Val::Num(b)) => compare_num(op, *a as f64, *b as f64),
        (Val::List(a), _) if op == Op::In => {
            let set: Vec<Cow<str>> = list_of(rhs);
            a.iter().all(|x| set.iter().any(|y| y == x))
        }
        (_, _) if op == Op::In || op == Op::Intersects => {
            let set = list_of(rhs);
            list_of(lhs).iter().any(|x| set.iter().any(|y| y == x))
        }
        _ => compare_str(op, &lhs.render(), &rhs.render()),
    }
}

fn list_of<'v>(v: &'v Val) -> Vec<Cow<'v, str>> {
    match v {
        Val::List(items) => items.iter().map(|s| Cow::Borrowed(s.as_ref())).collect(),
        other => vec![other.render()],
    }
}

pub fn compare_num(op: Op, a: f64, b: f64) -> bool {
    match op {
        Op::Eq => a == b,
        Op::Ne => a != b,
        Op::Lt => a < b,
        Op::Le => a <= b,
        Op::Gt => a > b,
        Op::Ge => a >= b,
        _ => false,
    }
}

/// Falco's string operators (`strcmp` ordering for `<` and friends).
pub fn compare_str(op: Op, a: &str, b: &str) -> bool {
    match op {
        Op::Eq => a == b,
        Op::Ne => a != b,
        Op::Lt => a < b,
        Op::Le => a <= b,
        Op::Gt => a > b,
        Op::Ge => a >= b,
        Op::Contains => a.contains(b),
        // The constant side is lower-cased at compile time.
        Op::IContains => contains_ignore_ascii_case(a, b),
        Op::StartsWith => a.starts_with(b),
        Op::EndsWith => a.ends_with(b),
        _ => false,
    }
}

fn contains_ignore_ascii_case(hay: &str, needle_lower: &str) -> bool {
    let (h, n) = (hay.as_bytes(), needle_lower.as_bytes());
    if n.is_empty() {
        return true;
    }
    h.windows(n.len())
        .any(|w| w.iter().zip(n).all(|(a, b)| a.to_ascii_lowercase() == *b))
}

/// `pmatch`: `prefix` equals `value` or is a parent directory of it.
fn path_prefix(prefix: &str, value: &str) -> bool {
    let prefix = prefix.trim_end_matches('/');
    match value.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/') || prefix.is_empty(),
        None => false,
    }
}

fn transform<'a>(kind: TransformKind, mut vals: Vec<Val<'a>>) -> Option<Val<'a>> {
    let map = |v: Val<'a>, f: &dyn Fn(&str) -> Option<String>| -> Option<Val<'a>> {
        match v {
            Val::Str(s) => f(&s).map(|s| Val::Str(Cow::Owned(s))),
            Val::Num(n) => f(&n.to_string()).map(|s| Val::Str(Cow::Owned(s))),
            Val::List(items) => {
                let out: Option<Vec<_>> = items.iter().map(|s| f(s).map(Cow::Owned)).collect();
                out.map(Val::List)
            }
        }
    };
    match kind {
        TransformKind::ToLower => map(vals.pop()?, &|s| Some(s.to_ascii_lowercase())),
        TransformKind::ToUpper => map(vals.pop()?, &|s| Some(s.to_ascii_uppercase())),
        TransformKind::B64 => map(vals.pop()?, &b64_decode),
        TransformKind::Basename => map(vals.pop()?, &|s| {
            Some(s.rsplit('/').next().unwrap_or(s).to_string())
        }),
        TransformKind::Len => Some(Val::Num(match vals.pop()? {
            Val::List(items) => items.len() as u64,
            Val::Str(s) => s.len() as u64,
            Val::Num(n) => n.to_string().len() as u64,
        })),
        TransformKind::Join => {
            let list = vals.pop()?;
            let sep = vals.pop()?.render().into_owned();
            Some(Val::Str(Cow::Owned(list_of(&list).join(&sep))))
        }
        TransformKind::Concat => {
            let mut out = String::new();
            for v in &vals {
                out.push_str(&v.render());
            }
            Some(Val::Str(Cow::Owned(out)))
        }
    }
}

/// Standard base64 decoding, padding optional; `None` if not base64 or
/// not UTF-8 text.
fn b64_decode(s: &str) -> Option<String> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0);
    for c in s.bytes().take_while(|&c| c != b'=') {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    String::from_utf8(out).ok()
}

/// Shell-style glob: `*`, `?`, `[abc]`, `[a-z]`, `[!x]`; optionally ASCII
/// case-insensitive.
#[derive(Debug)]
pub struct Glob {
    pattern: Vec<char>,
    ignore_case: bool,
}

impl Glob {
    pub fn new(pattern: &str, ignore_case: bool) -> Self {
        let pattern = if ignore_case {
            pattern.to_lowercase()
        } else {
            pattern.to_string()
        };
        Glob {
            pattern: pattern.chars().collect(),
            ignore_case,
        }
    }

    pub fn matches(&self, text: &str) -> bool {
        let text: Vec<char> = if self.ignore_case {
            text.to_lowercase().chars().collect()
        } else {
            text.chars().collect()
        };
        glob_match(&self.pattern, &text)
    }
}

fn glob_match(p: &[char], t: &[char]) -> bool {
    // Iterative matcher with one backtrack point for the last `*`.
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() {
            match p[pi] {
                '*' => {
                    star = Some((pi, ti));
                    pi += 1;
                    continue;
                }
                '?' => {
                    pi += 1;
                    ti += 1;
                    continue;
                }
                '[' => {
                    if let Some((hit, next)) = class_match(p, pi, t[ti]) {
                        if hit {
                            pi = next;
                            ti += 1;
                            continue;
                        }
                    } else if t[ti] == '[' {
                        pi += 1;
                        ti += 1;
                        continue;
                    }
                }
                '\\' if pi + 1 < p.len() && p[pi + 1] == t[ti] => {
                    pi += 2;
                    ti += 1;
                    continue;
                }
                c if c == t[ti] => {
                    pi += 1;
                    ti += 1;
                    continue;
                }
                _ => {}
            }
        }
        match star {
            Some((sp, st)) => {
                pi = sp + 1;
                ti = st + 1;
                star = Some((sp, st + 1));
            }
            None => return false,
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// Matches `c` against the class starting at `p[start] == '['`; returns
/// (matched, index after the class), or `None` if the class is unclosed.
fn class_match(p: &[char], start: usize, c: char) -> Option<(bool, usize)> {
    let mut i = start + 1;
    let negate = matches!(p.get(i), Some('!') | Some('^'));
    if negate {
        i += 1;
    }
    let mut hit = false;
    let mut first = true;
    while i < p.len() && (p[i] != ']' || first) {
        first = false;
        if i + 2 < p.len() && p[i + 1] == '-' && p[i + 2] != ']' {
            hit |= p[i] <= c && c <= p[i + 2];
            i += 3;
        } else {
            hit |= p[i] == c;
            i += 1;
        }
    }
    (i < p.len()).then_some((hit != negate, i + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A rule set of one rule per condition.
    fn set_of(conditions: &[&str]) -> crate::rules::RuleSet {
        let text: String = conditions
            .iter()
            .enumerate()
            .map(|(i, c)| {
                format!("- rule: R{i}\n  desc: d\n  condition: {c}\n  output: o\n  priority: INFO\n  source: k8s_audit\n")
            })
            .collect();
        let text: &'static str = Box::leak(text.into_boxed_str());
        crate::rules::load(&[crate::rules::RuleSource::Embedded("t.yaml", text)])
            .rules
            .expect("rules load")
    }

    #[test]
    fn a_list_field_compared_with_another_field_is_false() {
        let set = set_of(&[
            "ka.user.groups intersects val(ka.target.namespace)",
            "ka.user.name = val(ka.target.namespace)",
        ]);
        let line = br#"{"auditID":"x","stage":"ResponseComplete","verb":"get","user":{"username":"dev","groups":["dev","ops"]},"objectRef":{"resource":"pods","namespace":"dev"},"stageTimestamp":"2024-10-29T12:00:00Z"}"#;
        let mut got = Vec::new();
        crate::event::decode_document(
            line,
            |ev| {
                let mut cx = set.context();
                got = (0..2)
                    .map(|i| set.program.eval(set.rules[i].root, &ev, &mut cx))
                    .collect();
            },
            |_| {},
        );
        assert_eq!(got, [false, true]);
    }

    /// Each event's values and shared results are its own: the tables are
    /// reused from event to event, and once their stamp wraps around.
    #[test]
    fn no_value_or_result_outlives_its_event() {
        let set = set_of(&[
            "ka.user.name = dev and (ka.verb = get or ka.verb = list)",
            "ka.verb = get or ka.verb = list",
            "ka.user.name = val(ka.target.namespace)",
            "ka.verb = get and ka.uri startswith /a",
        ]);
        // (user, verb, uri, the four rules' results)
        type Case = (&'static str, &'static str, &'static str, [bool; 4]);
        let a: Case = ("dev", "get", "/a", [true, true, true, true]);
        let b: Case = ("ops", "list", "/a", [false, true, false, false]);
        let c: Case = ("dev", "watch", "/a", [false, false, true, false]);
        let d: Case = ("dev", "get", "/b", [true, true, true, false]);
        let mut stamps = Vec::new();
        let mut run = |cases: &[Case]| {
            for &(user, verb, uri, want) in cases {
                let line = format!(
                    r#"{{"auditID":"x","stage":"ResponseComplete","verb":"{verb}","requestURI":"{uri}","user":{{"username":"{user}"}},"objectRef":{{"resource":"pods","namespace":"dev"}},"stageTimestamp":"2024-10-29T12:00:00Z"}}"#
                );
                let mut got = Vec::new();
                crate::event::decode_document(
                    line.as_bytes(),
                    |ev| {
                        let mut cx = set.context();
                        stamps.push(cx.stamp);
                        got = (0..4)
                            .map(|i| set.program.eval(set.rules[i].root, &ev, &mut cx))
                            .collect();
                    },
                    |_| {},
                );
                assert_eq!(got, want, "{user} {verb} {uri}");
            }
        };
        SPARE.with(|s| *s.borrow_mut() = None);
        run(&[a, b, c, b]);
        // The next event's stamp is the last one there is; after it the
        // stamps start again at 1, where `a` read the last URI of the first
        // run, which `d` must not see (`b` and `c` read none).
        SPARE.with(|s| {
            if let Some(spare) = s.borrow_mut().as_mut() {
                spare.stamp = u32::MAX - 1;
            }
        });
        run(&[b, d, c, a]);
        assert_eq!(stamps, [1, 2, 3, 4, u32::MAX, 1, 2, 3]);
    }

    #[test]
    fn a_sub_condition_written_in_two_rules_is_one_node() {
        let set = set_of(&[
            "ka.verb = get and ka.target.resource in (pods, secrets) and ka.user.name = a and (ka.uri contains x or ka.uri contains y)",
            "ka.verb = get and ka.target.resource in (secrets, pods) and ka.user.name = b and (ka.uri contains x or ka.uri contains y)",
        ]);
        let p = &set.program;
        let items = |i: usize| match &p.nodes[set.rules[i].root as usize] {
            Node::And(items) => items.clone(),
            other => panic!("{other:?}"),
        };
        let (a, b) = (items(0), items(1));
        // The verb and resource tests (sets in any order) are shared; the
        // user tests differ.
        assert_eq!(a[..2], b[..2]);
        assert_ne!(a[2], b[2]);
        assert_ne!(set.rules[0].root, set.rules[1].root);
        // The `or` both contain is one node too, remembered within an event.
        assert_eq!(a[3], b[3]);
        assert!(matches!(p.nodes[a[3] as usize], Node::Or(_)));
        assert_ne!(
            p.memo_slot.get(a[3] as usize).copied().unwrap_or(NO_SLOT),
            NO_SLOT
        );
    }

    #[test]
    fn globs() {
        let g = |p: &str, t: &str| Glob::new(p, false).matches(t);
        assert!(g("/etc/*", "/etc/passwd"));
        assert!(g("*.yaml", "a.b.yaml"));
        assert!(!g("*.yaml", "a.yml"));
        assert!(g("a?c", "abc"));
        assert!(g("[a-c]x[!y]", "bxz"));
        assert!(!g("[a-c]x[!y]", "bxy"));
        assert!(g("*", ""));
        assert!(Glob::new("SYSTEM:*", true).matches("system:node"));
    }

    #[test]
    fn strings() {
        assert!(compare_str(Op::Ge, "403", "400"));
        assert!(compare_str(Op::IContains, "Hello World", "o w"));
        assert!(path_prefix("/etc", "/etc/passwd"));
        assert!(path_prefix("/etc/", "/etc"));
        assert!(!path_prefix("/etc", "/etcd"));
        assert_eq!(b64_decode("aGVsbG8=").as_deref(), Some("hello"));
        assert_eq!(b64_decode("a*"), None);
    }
}
