//! `saker run --config FILE`: a YAML mapping whose keys are the long names of
//! `run`'s flags (and of the global `--log-*` flags). The keys come from
//! clap's own definition of the command ([`keys`]), so a new flag is a config
//! key without a second list. Each value is checked with the flag's own value
//! parser, where it stands in the file (`file:line:col`, a caret, did you
//! mean), and becomes the flag's `--key=value` tokens; [`super::parse`] hands
//! those to clap after the command line's, so the merged settings go through
//! the one validation path flags take.
//!
//! Relative paths in the file (rules, input, CA and token files) resolve
//! against the file's directory, so a config file and the rules beside it
//! work from any working directory (a mounted ConfigMap, say).

mod effective;
mod values;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::{Arg, ArgAction, Command};

use saker::diag::{did_you_mean, Code, Diagnostic, SourceFile};
use saker::rules::yaml::{self, Node};

pub use effective::Effective;

/// Flags that are not config keys: they say what to do with the file.
const COMMAND_LINE_ONLY: &[&str] = &["config", "print-config"];

/// One config key: a flag by its long name.
#[derive(Debug, Clone)]
pub struct Key {
    pub long: String,
    pub arg: Arg,
}

/// The config keys: `run`'s flags and the global ones, in the order of
/// `run --help` (the global ones last).
pub fn keys(root: &Command) -> Vec<Key> {
    let run = root
        .find_subcommand("run")
        .expect("the command line has a run subcommand");
    let globals = root.get_arguments().filter(|a| a.is_global_set());
    run.get_arguments()
        .chain(globals)
        .filter(|a| !matches!(a.get_action(), ArgAction::Help | ArgAction::Version))
        .filter_map(|a| {
            let long = a.get_long()?;
            (!COMMAND_LINE_ONLY.contains(&long)).then(|| Key {
                long: long.to_string(),
                arg: a.clone(),
            })
        })
        .collect()
}

/// What one key of a config file sets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    /// The flag's clap id (`kafka_option`).
    pub id: String,
    /// Its tokens on a command line, `--key=value` each (`--follow` for a
    /// flag that is on); empty for `null`, `false` or `[]`.
    pub tokens: Vec<OsString>,
}

/// A config file read and checked.
#[derive(Debug)]
pub struct ConfigFile {
    pub path: PathBuf,
    pub settings: Vec<Setting>,
}

/// Why a config file cannot be used (exit code 2).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Every problem found in the file.
    #[error("{} error(s) in config file {}", diagnostics.len(), path.display())]
    Invalid {
        path: PathBuf,
        diagnostics: Vec<Diagnostic>,
    },
}

/// Reads and checks a config file on its own (what a reload re-reads).
pub fn read(path: &Path, root: &Command) -> Result<ConfigFile, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let base = path.parent().unwrap_or(Path::new(""));
    let settings = parse(&path.display().to_string(), text, base, root).map_err(|diagnostics| {
        ConfigError::Invalid {
            path: path.to_path_buf(),
            diagnostics,
        }
    })?;
    Ok(ConfigFile {
        path: path.to_path_buf(),
        settings,
    })
}

/// Checks the text of a config file named `name`, whose relative paths
/// resolve against `base`; every problem is reported.
pub fn parse(
    name: &str,
    text: String,
    base: &Path,
    root: &Command,
) -> Result<Vec<Setting>, Vec<Diagnostic>> {
    let file = Arc::new(SourceFile {
        name: name.to_string(),
        text,
    });
    let docs = yaml::parse(&file.text).map_err(|e| {
        vec![
            Diagnostic::error(Code::Yaml, format!("invalid YAML: {}", e.message)).at(
                &file,
                e.pos,
                e.pos + 1,
            ),
        ]
    })?;
    let mut reader = values::Reader::new(&file, base);
    match docs.as_slice() {
        [] => {}
        [doc] => read_mapping(doc, &keys(root), &mut reader),
        [_, second, ..] => reader.error(
            second,
            Code::BadValue,
            "a config file holds one YAML document",
            "a second document",
        ),
    }
    reader.finish()
}

fn read_mapping(doc: &Node, keys: &[Key], reader: &mut values::Reader) {
    let Some(entries) = doc.as_map() else {
        let what = doc.type_name();
        reader.error(
            doc,
            Code::BadValue,
            format!("a config file is a mapping of `saker run` flags to values, not {what}"),
            "expected `flag-name: value` lines",
        );
        return;
    };
    let mut seen: Vec<&str> = Vec::new();
    for (k, v) in entries {
        let Some(name) = k.as_str() else {
            reader.error(
                k,
                Code::UnknownKey,
                "a key must be a flag name",
                "not a name",
            );
            continue;
        };
        let Some(key) = keys.iter().find(|key| key.long == name) else {
            unknown_key(k, name, keys, reader);
            continue;
        };
        if seen.contains(&name) {
            reader.error(
                k,
                Code::UnknownKey,
                format!("`{name}` is given twice"),
                "again here",
            );
            continue;
        }
        seen.push(name);
        if let Some(tokens) = reader.tokens(key, v) {
            reader.settings.push(Setting {
                id: key.arg.get_id().to_string(),
                tokens,
            });
        }
    }
}

fn unknown_key(k: &Node, name: &str, keys: &[Key], reader: &mut values::Reader) {
    let (message, help) = if COMMAND_LINE_ONLY.contains(&name) {
        (
            format!("`{name}` can only be given on the command line"),
            Some(format!("give `--{name}` on the command line")),
        )
    } else {
        let bare = name.trim_start_matches('-');
        let short = keys.iter().find(|key| {
            let mut chars = bare.chars();
            key.arg.get_short().is_some_and(|c| chars.next() == Some(c)) && chars.next().is_none()
        });
        let help = match short {
            Some(key) => Some(format!(
                "did you mean `{}`? (keys are long flag names)",
                key.long
            )),
            None => did_you_mean(bare, keys.iter().map(|key| key.long.as_str())),
        };
        (
            format!("unknown key `{name}`: not a `saker run` flag"),
            help,
        )
    };
    let d = reader.diagnostic(k, Code::UnknownKey, message, "unknown key");
    reader.push(d.help(
        help.unwrap_or_else(|| {
            "keys are the long flags of `saker run --help`, without `--`".into()
        }),
    ));
}

#[cfg(test)]
mod tests;
