//! What `saker run` reloads ([`saker::reload`]): its command line read
//! again, so the config file is re-read and every setting re-checked as at
//! start; the rules loaded and checked with the same diagnostics; and the
//! settings that changed compared with the running ones. Of those, the
//! rules and `rule-matching` apply; any other needs a restart, and is named.

use std::ffi::OsString;
use std::path::PathBuf;

use saker::diag::Diagnostic;
use saker::reload::{Failure, Load, Loaded};
use saker::rules;

use crate::cli::config::{ConfigError, Effective};
use crate::cli::run::RunSettings;
use crate::cli::{CliError, Command};

/// The config keys a reload applies; a change to any other needs a restart.
pub const RELOADABLE: &[&str] = &["rules", "rule-matching"];

/// What a reload loads, for a run started with `running`.
pub fn loader(running: &RunSettings) -> Load {
    let argv: Vec<OsString> = std::env::args_os().collect();
    let effective = running.effective.clone();
    Box::new(move || load(&argv, &effective))
}

/// The files a reload watches: the config files and the rules paths.
pub fn watched(settings: &RunSettings) -> Vec<PathBuf> {
    let mut paths = settings.config_files.clone();
    paths.extend(settings.rules.iter().cloned());
    paths
}

fn load(argv: &[OsString], running: &Effective) -> Result<Loaded, Failure> {
    let cli = crate::cli::parse(argv).map_err(cli_failure)?;
    let Command::Run(args) = cli.command else {
        return Err(Failure::message(
            "the command line is no longer `saker run`",
        ));
    };
    let settings = args
        .settings()
        .map_err(|e| Failure::message(e.to_string()))?;
    let sources = match settings.rules.is_empty() {
        true => rules::default_sources(),
        false => rules::expand_paths(&settings.rules)
            .map_err(|e| Failure::message(format!("cannot read rules: {e}")))?,
    };
    let loaded = rules::load_with(&sources, &settings.load);
    let Some(set) = loaded.rules else {
        return Err(diagnostics_failure(&loaded.diagnostics));
    };
    Ok(Loaded {
        rules: set,
        matching: settings.matching,
        restart: needs_restart(running, &settings.effective),
        watch: watched(&settings),
        warnings: loaded
            .diagnostics
            .iter()
            .map(Diagnostic::headline)
            .collect(),
    })
}

/// The keys whose value differs between `running` and `new`, except those
/// a reload applies.
pub fn needs_restart(running: &Effective, new: &Effective) -> Vec<String> {
    new.0
        .iter()
        .filter(|(key, _)| !RELOADABLE.contains(&key.as_str()))
        .filter(|(key, value)| {
            running.0.iter().find(|(k, _)| k == key).map(|(_, v)| v) != Some(value)
        })
        .map(|(key, _)| key.clone())
        .collect()
}

/// Every error of a failed load: the first one's headline with a count,
/// and all of them rendered as `saker check` prints them.
fn diagnostics_failure(diagnostics: &[Diagnostic]) -> Failure {
    let errors: Vec<&Diagnostic> = diagnostics.iter().filter(|d| d.is_error()).collect();
    let mut summary = errors
        .first()
        .map_or_else(|| "the rules did not load".to_string(), |d| d.headline());
    if errors.len() > 1 {
        summary.push_str(&format!(" (and {} more errors)", errors.len() - 1));
    }
    Failure {
        summary,
        rendered: diagnostics.iter().map(ToString::to_string).collect(),
    }
}

fn cli_failure(e: CliError) -> Failure {
    match e {
        CliError::Config(ConfigError::Invalid { diagnostics, .. }) => {
            diagnostics_failure(&diagnostics)
        }
        CliError::Clap(e) | CliError::Merged { error: e, .. } => {
            let text = e.render().to_string();
            let first = text
                .lines()
                .next()
                .unwrap_or("the command line")
                .to_string();
            Failure {
                summary: first,
                rendered: text,
            }
        }
        other => Failure::message(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_keys_a_reload_cannot_apply_need_a_restart() {
        let argv = |extra: &[&str]| {
            let mut v: Vec<OsString> = ["saker", "run"].iter().map(OsString::from).collect();
            v.extend(extra.iter().map(OsString::from));
            v
        };
        let effective = |extra: &[&str]| {
            let cli = crate::cli::parse(&argv(extra)).unwrap();
            let Command::Run(args) = cli.command else {
                panic!("run")
            };
            args.settings().unwrap().effective
        };
        let running = effective(&["--rules", "a.yaml"]);
        let new = effective(&[
            "--rules",
            "b.yaml",
            "--rule-matching",
            "all",
            "--lateness",
            "9s",
        ]);
        assert_eq!(needs_restart(&running, &new), ["lateness"]);
        assert!(needs_restart(&running, &running).is_empty());
    }
}
