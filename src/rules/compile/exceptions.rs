//! Falco's rule exceptions compiled into one node per exception, true when
//! the exception applies (the rule then takes `not (...)` of it): fields
//! and comparison operators, value tuples, and named lists as values.

use super::*;

impl Compiler<'_> {
    /// An exception as one node that is true when the exception applies.
    pub(super) fn exception(
        &mut self,
        rule: &RuleDef,
        exc: &ExceptionDef,
    ) -> Result<Option<NodeId>, Errors> {
        let owner = format!("rule `{}`, exception `{}`", rule.name, exc.name);
        let err = |loc: &Loc, code, msg: String, len: usize| {
            loc.diag(Diagnostic::error(code, format!("{msg} (in {owner})")), len)
        };
        if exc.fields.is_empty() {
            return Err(vec![err(
                &exc.loc,
                Code::Exception,
                "an exception needs `fields`".into(),
                1,
            )]);
        }
        let default_comp = if exc.scalar { "in" } else { "=" };
        let comps: Vec<(String, Option<&Loc>)> = if exc.comps.is_empty() {
            exc.fields
                .iter()
                .map(|_| (default_comp.to_string(), None))
                .collect()
        } else {
            exc.comps
                .iter()
                .map(|(c, l)| (c.clone(), Some(l)))
                .collect()
        };
        if comps.len() != exc.fields.len() {
            return Err(vec![err(
                &exc.loc,
                Code::Exception,
                "fields and comps lists must have equal length".into(),
                1,
            )]);
        }
        let mut errors = Vec::new();
        let mut ops = Vec::new();
        let mut lhs = Vec::new();
        for ((field, floc), (comp, cloc)) in exc.fields.iter().zip(&comps) {
            let Some(op) = Op::parse(comp) else {
                errors.push(err(
                    cloc.unwrap_or(&exc.loc),
                    Code::Exception,
                    format!("`{comp}` is not a supported comparison operator"),
                    comp.len(),
                ));
                continue;
            };
            // `jevt.value[/x]`: the name is looked up, the argument checked.
            let (name, arg) = match field.split_once('[') {
                Some((n, a)) => (n, Some(a.trim_end_matches(']'))),
                None => (field.as_str(), None),
            };
            match fields::lookup(name) {
                Some(def) => match def.check_arg(arg) {
                    Ok(a) => lhs.push((
                        self.program.push_operand(OperandProg::Field(def, a)),
                        def.list,
                    )),
                    Err(e) => errors.push(err(
                        floc,
                        Code::FieldArgument,
                        format!("field `{field}` {e}"),
                        field.len(),
                    )),
                },
                None => {
                    let hint = did_you_mean(field, fields::catalog().iter().map(|d| d.name));
                    errors.push(
                        err(
                            floc,
                            Code::UnknownField,
                            format!("`{field}` is not a supported filter field"),
                            field.len(),
                        )
                        .help_opt(hint),
                    );
                }
            }
            ops.push(op);
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let mut alternatives = Vec::new();
        for (value, file) in &exc.values {
            let vloc = Loc {
                file: file.clone(),
                pos: value.pos,
            };
            let tuple: Vec<&YamlNode> = if exc.scalar {
                vec![value]
            } else {
                match value.as_seq() {
                    Some(items) => items.iter().collect(),
                    None => {
                        errors.push(err(
                            &vloc,
                            Code::Exception,
                            "each value of a multi-field exception must be a sequence".into(),
                            1,
                        ));
                        continue;
                    }
                }
            };
            if tuple.len() != exc.fields.len() && !exc.scalar {
                errors.push(err(
                    &vloc,
                    Code::Exception,
                    "fields and values lists must have equal length".into(),
                    1,
                ));
                continue;
            }
            if exc.scalar {
                continue;
            }
            let mut checks = Vec::new();
            for ((&(lhs_id, list), op), v) in lhs.iter().zip(&ops).zip(tuple) {
                match self.exception_check(lhs_id, list, *op, v) {
                    Ok(id) => checks.push(id),
                    Err(msg) => errors.push(err(
                        &Loc {
                            file: file.clone(),
                            pos: v.pos,
                        },
                        Code::Exception,
                        msg,
                        1,
                    )),
                }
            }
            alternatives.push(self.program.push_node(Node::And(checks)));
        }
        if exc.scalar && !exc.values.is_empty() {
            // Scalar form: `field comp (v1, v2, ...)`.
            let items: Vec<String> = exc
                .values
                .iter()
                .flat_map(|(v, _)| self.node_values(v))
                .collect();
            let (lhs_id, list) = lhs[0];
            match self.list_or_value(lhs_id, list, ops[0], items) {
                Ok(id) => alternatives.push(id),
                Err(msg) => errors.push(err(&exc.loc, Code::Exception, msg, 1)),
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(match alternatives.len() {
            0 => None,
            1 => Some(alternatives[0]),
            _ => Some(self.program.push_node(Node::Or(alternatives))),
        })
    }

    /// The strings a YAML value stands for, with list names expanded.
    fn node_values(&self, v: &YamlNode) -> Vec<String> {
        match (v.as_str(), v.as_seq()) {
            (Some(s), _) => match self.defs.list(s) {
                Some(l) if !s.contains(' ') => l.items.clone(),
                _ => vec![s.to_string()],
            },
            (_, Some(items)) => items.iter().flat_map(|i| self.node_values(i)).collect(),
            _ => Vec::new(),
        }
    }

    fn exception_check(
        &mut self,
        lhs: OperandId,
        list: bool,
        op: Op,
        v: &YamlNode,
    ) -> Result<NodeId, String> {
        let values = self.node_values(v);
        if v.as_seq().is_some() && !op.takes_list() {
            return Err(format!(
                "operator `{}` takes a single value, not a list",
                op.as_str()
            ));
        }
        self.list_or_value(lhs, list, op, values)
    }

    fn list_or_value(
        &mut self,
        lhs: OperandId,
        list: bool,
        op: Op,
        values: Vec<String>,
    ) -> Result<NodeId, String> {
        if list && !matches!(op, Op::Exists | Op::In | Op::Intersects | Op::InNet) {
            return Err(
                "list fields only support the operators `exists`, `in`, `intersects` and `innet`"
                    .into(),
            );
        }
        let test = match op {
            Op::In => Test::In(ValueSet::new(values)),
            Op::Intersects => Test::Intersects(ValueSet::new(values)),
            Op::PMatch => Test::PMatch(values),
            Op::InNet => Test::InNet(
                values
                    .iter()
                    .map(|v| {
                        IpNet::parse(v).ok_or(format!("`{v}` is not an IP address or network"))
                    })
                    .collect::<Result<_, _>>()?,
            ),
            Op::Exists => Test::Exists,
            _ => value_test(op, values.first().map_or("", String::as_str))?,
        };
        Ok(self.program.push_node(Node::Check(Check { lhs, test })))
    }
}
