//! The settings in effect, by config key: what `--print-config` prints
//! (a config file that means the same settings from any directory: paths
//! are absolute), and what a reload can compare to name the settings that
//! changed.

use std::borrow::Cow;
use std::fmt;
use std::path::Path;

use clap::{ArgMatches, Command};

use super::values::{is_path, kind, Kind};
use super::{keys, Key};

/// A key's value in effect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Switch(bool),
    /// `None`: not set, and no default.
    One(Option<String>),
    List(Vec<String>),
}

/// Every config key's value in effect, in the order of `run --help`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Effective(pub Vec<(String, Value)>);

impl Effective {
    /// The values in `run`'s matches (the config file merged with the
    /// command line, and the defaults).
    pub fn of(root: &Command, run: &ArgMatches) -> Effective {
        Effective(
            keys(root)
                .into_iter()
                .map(|key| {
                    let value = value(&key, run);
                    (key.long, value)
                })
                .collect(),
        )
    }
}

fn value(key: &Key, run: &ArgMatches) -> Value {
    let id = key.arg.get_id().as_str();
    if kind(&key.arg) == Kind::Switch {
        let on = run.try_get_one::<bool>(id).ok().flatten();
        return Value::Switch(on.copied().unwrap_or(false));
    }
    let raw: Vec<String> = run
        .try_get_raw(id)
        .ok()
        .flatten()
        .map(|values| {
            values
                .map(|v| {
                    let v = v.to_string_lossy();
                    match is_path(&key.arg, &v) {
                        true => absolute(&v),
                        false => v.into_owned(),
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    match kind(&key.arg) {
        Kind::List => Value::List(raw),
        _ => Value::One(raw.into_iter().last()),
    }
}

fn absolute(path: &str) -> String {
    std::path::absolute(Path::new(path))
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_else(|_| path.to_string())
}

impl fmt::Display for Effective {
    /// YAML in the config file's keys.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "# saker run: the settings in effect (config file, flags and defaults)"
        )?;
        for (key, value) in &self.0 {
            match value {
                Value::Switch(on) => writeln!(f, "{key}: {on}")?,
                Value::One(None) => writeln!(f, "{key}: null")?,
                Value::One(Some(v)) => writeln!(f, "{key}: {}", scalar(v))?,
                Value::List(items) if items.is_empty() => writeln!(f, "{key}: []")?,
                Value::List(items) => {
                    writeln!(f, "{key}:")?;
                    for item in items {
                        writeln!(f, "  - {}", scalar(item))?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// `s` as a YAML scalar: plain when that reads back as the same string,
/// else double-quoted (a JSON string is a valid YAML double-quoted one).
fn scalar(s: &str) -> Cow<'_, str> {
    let starts_plain = s
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '.' | '_'));
    let plain = starts_plain
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._:=@+,-".contains(c))
        && !s.ends_with(':')
        && !matches!(
            s,
            "null" | "Null" | "NULL" | "true" | "True" | "TRUE" | "false" | "False" | "FALSE"
        );
    match plain {
        true => Cow::Borrowed(s),
        false => Cow::Owned(serde_json::Value::from(s).to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use saker::rules::yaml;

    #[test]
    fn scalars_read_back_as_themselves() {
        for s in [
            "-",
            "",
            "1s",
            "http://127.0.0.1:9093/",
            "null",
            "a: b",
            "x:",
            "#x",
            "verb=ka.verb,user=ka.user.name",
            "quote\"and\\back",
            "tab\there",
            "*alias",
        ] {
            let text = format!("k: {}\n", scalar(s));
            let docs = yaml::parse(&text).unwrap_or_else(|e| panic!("{text}: {}", e.message));
            let node = docs[0].get("k").unwrap();
            assert!(!node.is_null(), "{text}");
            assert_eq!(node.as_str(), Some(s), "{text}");
        }
        assert_eq!(scalar("1s"), "1s");
        assert_eq!(scalar("-"), "\"-\"");
    }
}
