//! Typed values read from rule items' YAML nodes (names, texts, booleans,
//! priorities, tags, maps, exceptions, version requirements), each failure
//! a diagnostic at the node.

use std::collections::BTreeSet;
use std::sync::Arc;

use super::super::yaml::Node;
use super::super::Priority;
use super::{ExceptionDef, Loc, Text, JSON_PLUGIN_VERSION, K8SAUDIT_VERSION};
use crate::diag::{Code, Diagnostic, SourceFile};

pub(super) fn missing(
    file: &Arc<SourceFile>,
    item: &Node,
    what: &str,
    name: &str,
    key: &str,
) -> Box<Diagnostic> {
    let d = Diagnostic::error(
        Code::MissingKey,
        format!("{what} `{name}` is missing `{key}`"),
    );
    Box::new(Loc::of(file, item).diag(d, 1))
}

pub(super) fn scalar_name(
    file: &Arc<SourceFile>,
    node: &Node,
    what: &str,
) -> Result<String, Box<Diagnostic>> {
    match node.as_str() {
        Some(s) if !s.trim().is_empty() => Ok(s.to_string()),
        _ => {
            let d = Diagnostic::error(
                Code::YamlStructure,
                format!("the {what} name must be a non-empty string"),
            );
            Err(Box::new(Loc::of(file, node).diag(d, 1)))
        }
    }
}

pub(super) fn text_of(
    file: &Arc<SourceFile>,
    node: &Node,
    key: &str,
) -> Result<Text, Box<Diagnostic>> {
    Text::from_node(file, node).ok_or_else(|| {
        let d = Diagnostic::error(
            Code::YamlStructure,
            format!("`{key}` must be a string, found {}", node.type_name()),
        );
        Box::new(Loc::of(file, node).diag(d, 1))
    })
}

pub(super) fn bool_of(
    file: &Arc<SourceFile>,
    node: Option<&Node>,
    default: bool,
) -> Result<bool, Box<Diagnostic>> {
    match node {
        None => Ok(default),
        Some(n) => n.as_bool().ok_or_else(|| {
            let d = Diagnostic::error(Code::YamlStructure, "expected `true` or `false`");
            Box::new(Loc::of(file, n).diag(d, 1))
        }),
    }
}

pub(super) fn priority_of(
    file: &Arc<SourceFile>,
    node: &Node,
) -> Result<Priority, Box<Diagnostic>> {
    let text = node.as_str().unwrap_or_default();
    Priority::parse(text).ok_or_else(|| {
        let d = Diagnostic::error(Code::Priority, format!("invalid priority `{text}`"))
            .help("use one of EMERGENCY, ALERT, CRITICAL, ERROR, WARNING, NOTICE, INFO (or INFORMATIONAL), DEBUG");
        Box::new(Loc::of(file, node).diag(d, text.len().max(1)))
    })
}

/// A mapping of strings to strings (`labels:`, `annotations:`).
pub(super) fn string_map(
    file: &Arc<SourceFile>,
    node: Option<&Node>,
    key: &str,
) -> Result<Vec<(String, String)>, Box<Diagnostic>> {
    let Some(node) = node else {
        return Ok(Vec::new());
    };
    if node.is_null() {
        return Ok(Vec::new());
    }
    let entries = node.as_map().ok_or_else(|| {
        let d = Diagnostic::error(
            Code::YamlStructure,
            format!("`{key}` must be a mapping of names to strings"),
        );
        Box::new(Loc::of(file, node).diag(d, 1))
    })?;
    entries
        .iter()
        .map(|(k, v)| match (k.as_str(), v.as_str()) {
            (Some(k), Some(v)) => Ok((k.to_string(), v.to_string())),
            _ => {
                let d = Diagnostic::error(
                    Code::YamlStructure,
                    format!("`{key}` values must be strings"),
                );
                Err(Box::new(Loc::of(file, v).diag(d, 1)))
            }
        })
        .collect()
}

pub(super) fn tags_of(
    file: &Arc<SourceFile>,
    node: Option<&Node>,
) -> Result<BTreeSet<String>, Box<Diagnostic>> {
    let Some(node) = node else {
        return Ok(BTreeSet::new());
    };
    if node.is_null() {
        return Ok(BTreeSet::new());
    }
    let seq = node.as_seq().ok_or_else(|| {
        let d = Diagnostic::error(Code::YamlStructure, "`tags` must be a sequence of strings");
        Box::new(Loc::of(file, node).diag(d, 1))
    })?;
    Ok(seq
        .iter()
        .filter_map(|t| t.as_str().map(str::to_string))
        .collect())
}

pub(super) fn exceptions_of(
    file: &Arc<SourceFile>,
    node: Option<&Node>,
) -> Result<Vec<ExceptionDef>, Box<Diagnostic>> {
    let Some(node) = node else {
        return Ok(Vec::new());
    };
    let err = |n: &Node, msg: &str| {
        Box::new(Loc::of(file, n).diag(Diagnostic::error(Code::Exception, msg.to_string()), 1))
    };
    let seq = node
        .as_seq()
        .ok_or_else(|| err(node, "`exceptions` must be a sequence"))?;
    let mut out = Vec::new();
    for e in seq {
        let name = e
            .get("name")
            .and_then(Node::as_str)
            .ok_or_else(|| err(e, "an exception needs a `name`"))?;
        let (scalar, fields) = match e.get("fields") {
            None => (false, Vec::new()),
            Some(f) => match (f.as_str(), f.as_seq()) {
                (Some(s), _) => (true, vec![(s.to_string(), Loc::of(file, f))]),
                (_, Some(seq)) => (
                    false,
                    seq.iter()
                        .map(|x| (x.as_str().unwrap_or_default().to_string(), Loc::of(file, x)))
                        .collect(),
                ),
                _ => {
                    return Err(err(
                        f,
                        "`fields` must be a field name or a sequence of field names",
                    ))
                }
            },
        };
        let comps = match e.get("comps") {
            None => Vec::new(),
            Some(c) => match (c.as_str(), c.as_seq()) {
                (Some(s), _) => vec![(s.to_string(), Loc::of(file, c))],
                (_, Some(seq)) => seq
                    .iter()
                    .map(|x| (x.as_str().unwrap_or_default().to_string(), Loc::of(file, x)))
                    .collect(),
                _ => {
                    return Err(err(
                        c,
                        "`comps` must be an operator or a sequence of operators",
                    ))
                }
            },
        };
        let values = match e.get("values") {
            None => Vec::new(),
            Some(v) if v.is_null() => Vec::new(),
            Some(v) => v
                .as_seq()
                .ok_or_else(|| err(v, "`values` must be a sequence"))?
                .iter()
                .map(|x| (x.clone(), file.clone()))
                .collect(),
        };
        out.push(ExceptionDef {
            name: name.to_string(),
            scalar,
            fields,
            comps,
            values,
            loc: Loc::of(file, e),
        });
    }
    Ok(out)
}

/// Whether Saker provides plugin `name` at `version`: `Some(true)` yes,
/// `Some(false)` a plugin Saker implements but at a lower version, `None` a
/// plugin Saker does not implement.
pub(super) fn plugin_satisfied(name: &str, version: (u64, u64, u64)) -> Option<bool> {
    match name {
        "k8saudit" => Some(version <= K8SAUDIT_VERSION),
        "json" => Some(version <= JSON_PLUGIN_VERSION),
        // Managed-cluster variants (k8saudit-eks, -gke, -aks, ...) expose the
        // same ka.* fields; their versions are their own.
        n if n.starts_with("k8saudit-") => Some(true),
        _ => None,
    }
}

pub(super) fn parse_semver(s: &str) -> Option<(u64, u64, u64)> {
    let mut parts = s.trim().trim_start_matches('v').splitn(3, '.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next().unwrap_or("0").parse().ok()?;
    let patch_text = parts.next().unwrap_or("0");
    let patch_digits: String = patch_text
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    Some((major, minor, patch_digits.parse().ok()?))
}

pub(super) fn fmt_ver(v: (u64, u64, u64)) -> String {
    format!("{}.{}.{}", v.0, v.1, v.2)
}
