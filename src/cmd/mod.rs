//! The commands, one module each: they take validated settings from
//! `cli/`, wire the library together and turn outcomes into exit codes
//! (0 ok, 1 rule or test failure, 2 usage or configuration error).

mod check;
mod decode;
mod fields;
mod policy;
mod produce;
mod progress;
mod rbac;
mod reload;
mod report;
mod run;
mod state;
mod test;

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use saker::rules::{self, Loaded, RuleSource};

pub use check::{check, explain};
pub use decode::decode;
pub use fields::fields;
pub use policy::policy;
pub use produce::produce;
pub use rbac::who_can;
pub use report::report;
pub use run::run;
pub use test::test;

/// The rule files to load: the embedded ones when none are given.
fn rule_sources(paths: &[PathBuf]) -> Result<Vec<RuleSource>, ExitCode> {
    if paths.is_empty() {
        return Ok(rules::default_sources());
    }
    rules::expand_paths(paths).map_err(|e| {
        eprintln!("saker: cannot read rules: {e}");
        ExitCode::from(2)
    })
}

fn print_diagnostics(loaded: &Loaded, out: &mut dyn Write) {
    for note in &loaded.notes {
        let _ = writeln!(out, "note: {note}");
    }
    for d in &loaded.diagnostics {
        let _ = write!(out, "{d}");
    }
}

/// Loads rules, printing their diagnostics on stderr.
fn load_rules(paths: &[PathBuf], options: &rules::LoadOptions) -> Result<rules::RuleSet, ExitCode> {
    let loaded = rules::load_with(&rule_sources(paths)?, options);
    print_diagnostics(&loaded, &mut io::stderr());
    match loaded.rules {
        Some(set) => Ok(set),
        None => {
            let n = loaded.diagnostics.iter().filter(|d| d.is_error()).count();
            eprintln!("saker: rules failed to load ({n} error(s))");
            Err(ExitCode::from(1))
        }
    }
}

/// Writes to stdout, ignoring a closed pipe (`| head`).
pub fn emit(text: &str) {
    let _ = io::stdout().lock().write_all(text.as_bytes());
}
