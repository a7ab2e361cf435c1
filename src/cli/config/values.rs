//! One key's value in a config file turned into its flag's tokens: its shape
//! checked against the flag's kind (on/off, one value, repeatable), each
//! value against the flag's possible values and its own clap value parser,
//! and relative paths resolved against the file's directory.

use std::ffi::OsString;
use std::path::Path;
use std::sync::Arc;

use clap::{Arg, ArgAction, Command, ValueHint};

use saker::diag::{did_you_mean, Code, Diagnostic, SourceFile};
use saker::rules::yaml::{Node, Style};

use super::{Key, Setting};

/// `--input` values that are not paths.
const INPUT_WORDS: &[&str] = &["-", "kafka", "http"];

/// How a flag takes values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// On or off (`--follow`): `true` or `false`.
    Switch,
    /// One value.
    One,
    /// Repeatable: a list.
    List,
}

pub fn kind(arg: &Arg) -> Kind {
    match arg.get_action() {
        ArgAction::SetTrue => Kind::Switch,
        ArgAction::Append => Kind::List,
        _ => Kind::One,
    }
}

/// Whether the flag's value is a path (and `value` is not one of
/// `--input`'s words).
pub fn is_path(arg: &Arg, value: &str) -> bool {
    let hint = matches!(
        arg.get_value_hint(),
        ValueHint::AnyPath | ValueHint::FilePath | ValueHint::DirPath
    );
    hint && !(arg.get_id() == "input" && INPUT_WORDS.contains(&value))
}

/// The file being read, what it set and what is wrong with it.
pub struct Reader<'a> {
    file: &'a Arc<SourceFile>,
    base: &'a Path,
    diagnostics: Vec<Diagnostic>,
    pub settings: Vec<Setting>,
}

impl<'a> Reader<'a> {
    pub fn new(file: &'a Arc<SourceFile>, base: &'a Path) -> Self {
        Reader {
            file,
            base,
            diagnostics: Vec::new(),
            settings: Vec::new(),
        }
    }

    pub fn finish(self) -> Result<Vec<Setting>, Vec<Diagnostic>> {
        if self.diagnostics.is_empty() {
            Ok(self.settings)
        } else {
            Err(self.diagnostics)
        }
    }

    pub fn diagnostic(
        &self,
        node: &Node,
        code: Code,
        message: impl Into<String>,
        label: &str,
    ) -> Diagnostic {
        let len = match node.as_scalar() {
            Some(s) if s.style == Style::Quoted => s.value.len() + 2,
            Some(s) if s.style == Style::Plain => s.value.len().max(1),
            _ => 1,
        };
        Diagnostic::error(code, message)
            .at(self.file, node.pos, node.pos + len)
            .label(label)
    }

    pub fn push(&mut self, d: Diagnostic) {
        self.diagnostics.push(d);
    }

    pub fn error(&mut self, node: &Node, code: Code, message: impl Into<String>, label: &str) {
        let d = self.diagnostic(node, code, message, label);
        self.push(d);
    }

    /// The tokens `key: node` stands for, or `None` after reporting why
    /// it cannot be used.
    pub fn tokens(&mut self, key: &Key, node: &Node) -> Option<Vec<OsString>> {
        if node.is_null() {
            return Some(Vec::new());
        }
        let long = &key.long;
        let what = value_name(&key.arg);
        match kind(&key.arg) {
            Kind::Switch => match node.as_bool() {
                Some(on) => Some(on.then(|| format!("--{long}").into()).into_iter().collect()),
                None => {
                    self.error(
                        node,
                        Code::BadValue,
                        format!("`{long}` is on or off: write `{long}: true` or `false`"),
                        "expected true or false",
                    );
                    None
                }
            },
            Kind::One => match node.as_str() {
                Some(v) => self.value(key, node, v).map(|t| vec![t]),
                None => {
                    let shape = node.type_name();
                    self.error(
                        node,
                        Code::BadValue,
                        format!("`{long}` takes one {what}, not {shape}"),
                        &format!("expected one {what}"),
                    );
                    None
                }
            },
            Kind::List => self.list(key, node),
        }
    }

    /// A repeatable flag's values: a list, or for `KEY=VALUE` flags also a
    /// mapping.
    fn list(&mut self, key: &Key, node: &Node) -> Option<Vec<OsString>> {
        let long = &key.long;
        let what = value_name(&key.arg);
        let pairs = what == "KEY=VALUE";
        let mut tokens = Vec::new();
        let mut ok = true;
        if let Some(items) = node.as_seq() {
            for item in items {
                match item.as_str() {
                    Some(v) if !item.is_null() => match self.value(key, item, v) {
                        Some(t) => tokens.push(t),
                        None => ok = false,
                    },
                    _ => {
                        self.error(
                            item,
                            Code::BadValue,
                            format!(
                                "an item of `{long}` must be one {what}, not {}",
                                item.type_name()
                            ),
                            &format!("expected a {what}"),
                        );
                        ok = false;
                    }
                }
            }
        } else if let (true, Some(entries)) = (pairs, node.as_map()) {
            for (k, v) in entries {
                match (k.as_str(), v.as_str()) {
                    (Some(name), Some(value)) => {
                        match self.value(key, k, &format!("{name}={value}")) {
                            Some(t) => tokens.push(t),
                            None => ok = false,
                        }
                    }
                    _ => {
                        let bad = if k.as_str().is_some() { v } else { k };
                        self.error(
                            bad,
                            Code::BadValue,
                            format!("`{long}` maps names to single values"),
                            "expected a single value",
                        );
                        ok = false;
                    }
                }
            }
        } else {
            let shape = node.type_name();
            let example = match node.as_str() {
                Some(v) if !pairs => format!("write `{long}: [{v}]`"),
                _ if pairs => format!("write `{long}: {{name: value}}` or `{long}: [name=value]`"),
                _ => format!("write `{long}: [{what}, ...]`"),
            };
            let d = self.diagnostic(
                node,
                Code::BadValue,
                format!("`{long}` is repeatable: it takes a list of {what}, not {shape}"),
                "expected a list",
            );
            self.push(d.help(example));
            return None;
        }
        ok.then_some(tokens)
    }

    /// One value checked by the flag's own parser, as its `--key=value`
    /// token (a relative path resolved against the file's directory).
    fn value(&mut self, key: &Key, node: &Node, value: &str) -> Option<OsString> {
        let arg = &key.arg;
        let long = &key.long;
        let possible = arg.get_possible_values();
        if !possible.is_empty() && !possible.iter().any(|p| p.matches(value, false)) {
            let names: Vec<&str> = possible.iter().map(|p| p.get_name()).collect();
            let d = self.diagnostic(
                node,
                Code::BadValue,
                format!("invalid value `{value}` for `{long}`"),
                &format!("expected one of {}", names.join(", ")),
            );
            self.push(d.help_opt(did_you_mean(value, names.iter().copied())));
            return None;
        }
        if let Err(why) = check(arg, value) {
            let what = value_name(arg);
            self.error(
                node,
                Code::BadValue,
                format!("invalid value `{value}` for `{long}`: {why}"),
                &format!("expected {what}"),
            );
            return None;
        }
        let mut token = OsString::from(format!("--{long}="));
        if is_path(arg, value) && Path::new(value).is_relative() {
            token.push(self.base.join(value));
        } else {
            token.push(value);
        }
        Some(token)
    }
}

/// Runs the flag's value parser on `value`, alone.
fn check(arg: &Arg, value: &str) -> Result<(), String> {
    let probe = Arg::new("value")
        .long("value")
        .action(ArgAction::Set)
        .value_parser(arg.get_value_parser().clone());
    Command::new("config")
        .no_binary_name(true)
        .arg(probe)
        .try_get_matches_from([format!("--value={value}")])
        .map(|_| ())
        .map_err(|e| match std::error::Error::source(&e) {
            Some(inner) => inner.to_string(),
            None => e.kind().to_string(),
        })
}

/// The flag's value name (`N`, `DURATION`), its possible values, or its
/// name in capitals.
fn value_name(arg: &Arg) -> String {
    let possible = arg.get_possible_values();
    if !possible.is_empty() {
        let names: Vec<&str> = possible.iter().map(|p| p.get_name()).collect();
        return format!("of {}", names.join(", "));
    }
    match arg.get_value_names() {
        Some([name, ..]) => name.to_string(),
        _ => arg.get_id().as_str().to_uppercase(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_parser_error_is_its_own_message() {
        let threads = Arg::new("threads").value_parser(clap::value_parser!(usize));
        assert_eq!(
            check(&threads, "many").unwrap_err(),
            "invalid digit found in string"
        );
        assert!(check(&threads, "4").is_ok());
    }

    #[test]
    fn input_words_are_not_paths() {
        let input = Arg::new("input").value_hint(ValueHint::FilePath);
        assert!(is_path(&input, "audit.log"));
        assert!(!is_path(&input, "kafka"));
        assert!(!is_path(&input, "-"));
        let url = Arg::new("alertmanager");
        assert!(!is_path(&url, "x"));
    }
}
