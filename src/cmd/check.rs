//! `saker check`: loads rule files and prints every diagnostic.

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use saker::rules::{self, RuleSource};

pub fn check(paths: &[PathBuf]) -> ExitCode {
    let srcs = match super::rule_sources(paths) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let loaded = rules::load(&srcs);
    let mut out = io::stdout().lock();
    super::print_diagnostics(&loaded, &mut out);
    let errors = loaded.diagnostics.iter().filter(|d| d.is_error()).count();
    let warnings = loaded.diagnostics.iter().filter(|d| !d.is_error()).count();
    let names: Vec<String> = srcs
        .iter()
        .map(|s| match s {
            RuleSource::File(p) => p.display().to_string(),
            RuleSource::Embedded(n, _) => format!("{n} (embedded)"),
        })
        .collect();
    match &loaded.rules {
        Some(set) if errors == 0 => {
            let _ = writeln!(
                out,
                "ok: {} rule(s) loaded from {} ({warnings} warning(s))",
                set.rules.len(),
                names.join(", ")
            );
            ExitCode::SUCCESS
        }
        _ => {
            let _ = writeln!(
                out,
                "failed: {errors} error(s), {warnings} warning(s) in {}",
                names.join(", ")
            );
            ExitCode::from(1)
        }
    }
}

/// `saker check --explain CODE`: what a diagnostic code means, with an
/// example and a fix; `list` prints every code.
pub fn explain(code: &str) -> ExitCode {
    use saker::diag::Code;
    let mut out = io::stdout().lock();
    if code == "list" {
        for c in Code::ALL {
            let first = c.explain().lines().next().unwrap_or_default();
            let _ = writeln!(out, "{:<24} {first}", c.as_str());
        }
        return ExitCode::SUCCESS;
    }
    let code = code.trim_matches(|c| c == '[' || c == ']');
    match code.parse::<Code>() {
        Ok(c) => {
            let _ = writeln!(out, "{}\n\n{}", c.as_str(), c.explain());
            ExitCode::SUCCESS
        }
        Err(()) => {
            let hint = saker::diag::did_you_mean(code, Code::ALL.iter().map(|c| c.as_str()))
                .map(|h| format!("; {h}"))
                .unwrap_or_default();
            eprintln!("saker: no diagnostic code `{code}`{hint} (`saker check --explain list` lists them)");
            ExitCode::from(2)
        }
    }
}
