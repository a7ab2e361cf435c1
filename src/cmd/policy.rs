//! `saker policy lint|check|simulate`: prints what the library's policy
//! tooling finds, as text or JSON.

use std::io::{self, Write};
use std::process::ExitCode;

use saker::rules;
use saker::source::Input;

use crate::cli::policy::{PolicyCommand, PolicyFormat};

/// Loads a policy, printing its parse problems; `Err` is the exit code.
fn load_policy(
    path: &std::path::Path,
    format: PolicyFormat,
) -> Result<(saker::policy::Policy, Vec<saker::diag::Diagnostic>), ExitCode> {
    match saker::policy::load(path) {
        Err(e) => {
            eprintln!("saker: {e}");
            Err(ExitCode::from(2))
        }
        Ok((Some(p), diags)) if !diags.iter().any(|d| d.is_error()) => Ok((p, diags)),
        Ok((_, diags)) => {
            print_findings(&path.display().to_string(), &diags, format);
            Err(ExitCode::from(1))
        }
    }
}

fn print_findings(file: &str, diags: &[saker::diag::Diagnostic], format: PolicyFormat) {
    use saker::diag::Severity;
    let count = |s: Severity| diags.iter().filter(|d| d.severity == s).count();
    let (errors, warnings, infos) = (
        count(Severity::Error),
        count(Severity::Warning),
        count(Severity::Info),
    );
    match format {
        PolicyFormat::Json => {
            let findings: Vec<serde_json::Value> = diags
                .iter()
                .map(|d| {
                    let (line, column) = d.line_col().unwrap_or((0, 0));
                    serde_json::json!({
                        "file": file,
                        "line": line,
                        "column": column,
                        "severity": match d.severity { Severity::Error => "error", Severity::Warning => "warning", Severity::Info => "info" },
                        "check": d.code.as_str(),
                        "message": d.message,
                        "help": d.help,
                    })
                })
                .collect();
            let doc = serde_json::json!({"file": file, "errors": errors, "warnings": warnings, "infos": infos, "findings": findings});
            super::emit(&format!("{doc}\n"));
        }
        PolicyFormat::Text => {
            let mut out = String::new();
            for d in diags {
                out.push_str(&d.to_string());
            }
            out.push_str(&format!(
                "{file}: {errors} error(s), {warnings} warning(s), {infos} note(s)\n"
            ));
            super::emit(&out);
        }
    }
}

pub fn policy(cmd: PolicyCommand) -> ExitCode {
    match cmd {
        PolicyCommand::Lint { policy, format } => {
            let (p, mut diags) = match load_policy(&policy, format) {
                Ok(x) => x,
                Err(code) => return code,
            };
            diags.extend(saker::policy::lint::lint(&p));
            print_findings(&p.file.name, &diags, format);
            if diags.iter().any(|d| d.is_error()) {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            }
        }
        PolicyCommand::Check {
            policy,
            rules,
            format,
        } => {
            let (p, _) = match load_policy(&policy, format) {
                Ok(x) => x,
                Err(code) => return code,
            };
            let set = match super::load_rules(&rules, &rules::LoadOptions::default()) {
                Ok(s) => s,
                Err(code) => return code,
            };
            let reports = saker::policy::check::check(&p, &set);
            let never = reports
                .iter()
                .filter(|r| r.verdict == saker::policy::check::Verdict::Never)
                .count();
            match format {
                PolicyFormat::Json => {
                    for r in &reports {
                        let short: Vec<serde_json::Value> = r
                            .short
                            .iter()
                            .map(|(rule, (level, example, n))| {
                                serde_json::json!({
                                    "policy_line": rule.map(|i| p.line_of(p.rules[i].pos)),
                                    "level": level.as_str(),
                                    "probes": n,
                                    "example": example,
                                })
                            })
                            .collect();
                        let v = serde_json::json!({
                            "rule": r.rule,
                            "verdict": r.verdict.as_str(),
                            "needs": r.needs.condition.0.as_str(),
                            "needs_field": r.needs.condition.1,
                            "output_needs": r.needs.output.0.as_str(),
                            "verbs": r.needs.verbs,
                            "resources": r.needs.resources,
                            "subresources": r.needs.subresources,
                            "probes": r.probes,
                            "logged_by_lines": r.deciding.iter().map(|&i| p.line_of(p.rules[i].pos)).collect::<Vec<_>>(),
                            "short": short,
                        });
                        super::emit(&format!("{v}\n"));
                    }
                }
                PolicyFormat::Text => {
                    let mut out = String::new();
                    for r in &reports {
                        out.push_str(&saker::policy::check::render(&p, r));
                    }
                    let count = |v| reports.iter().filter(|r| r.verdict == v).count();
                    use saker::policy::check::Verdict;
                    out.push_str(&format!(
                        "{}: {} rules: {} ok, {} with incomplete output, {} mostly logged (some of all traffic dropped), {} partly logged, {} never logged\n",
                        p.file.name,
                        reports.len(),
                        count(Verdict::Ok),
                        count(Verdict::OutputIncomplete),
                        count(Verdict::Mostly),
                        count(Verdict::Partly),
                        never
                    ));
                    super::emit(&out);
                }
            }
            if never > 0 {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            }
        }
        PolicyCommand::Simulate {
            policy,
            input,
            events,
            format,
            log,
        } => {
            let (p, _) = match load_policy(&policy, format) {
                Ok(x) => x,
                Err(code) => return code,
            };
            let input = Input::parse(&input);
            let reader = match input.open() {
                Ok((r, _)) => r,
                Err(e) => {
                    eprintln!("saker: cannot open input {}: {e}", input.describe());
                    return ExitCode::from(2);
                }
            };
            let out = io::stdout();
            let result = saker::policy::simulate::simulate(&p, reader, 1 << 20, |v| {
                if events {
                    if let Ok(line) = serde_json::to_string(&v) {
                        let _ = writeln!(out.lock(), "{line}");
                    }
                }
            });
            let sim = match result {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("saker: {e}");
                    return ExitCode::from(2);
                }
            };
            use saker::policy::retention;
            let kept = retention::estimate(&sim, &log.settings());
            let text = || saker::policy::simulate::render(&p, &sim) + &retention::render(&kept);
            match format {
                PolicyFormat::Text if events => eprint!("{}", text()),
                PolicyFormat::Text => super::emit(&text()),
                PolicyFormat::Json => {
                    let tally = |t: &saker::policy::simulate::Tally| {
                        serde_json::json!({
                            "events": t.events, "kept": t.kept,
                            "recorded_bytes": t.recorded_bytes, "kept_bytes": t.kept_bytes,
                            "by_level": {"None": t.by_level[0], "Metadata": t.by_level[1], "Request": t.by_level[2], "RequestResponse": t.by_level[3]},
                        })
                    };
                    let rules: Vec<serde_json::Value> = sim
                        .by_rule
                        .iter()
                        .map(|(r, t)| {
                            let mut v = tally(t);
                            v["policy_line"] =
                                serde_json::json!(r.map(|i| p.line_of(p.rules[i].pos)));
                            v["level"] = serde_json::json!(r.map(|i| p.rules[i].level.as_str()));
                            v
                        })
                        .collect();
                    super::emit(&format!(
                        "{}\n",
                        serde_json::json!({"total": tally(&sim.total), "by_rule": rules, "skipped_lines": sim.skipped, "underestimated": sim.underestimated, "retention": kept})
                    ));
                }
            }
            ExitCode::SUCCESS
        }
    }
}
