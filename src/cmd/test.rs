//! `saker test`: runs rule test files and sums their results.

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

pub fn test(paths: &[PathBuf]) -> ExitCode {
    let reports = if paths.is_empty() {
        vec![saker::ruletest::run_default()]
    } else {
        paths.iter().map(|p| saker::ruletest::run_path(p)).collect()
    };
    let (mut passed, mut failed, mut setup_failed) = (0, 0, false);
    let mut out = io::stdout().lock();
    for r in reports {
        match r {
            Ok(report) => {
                let _ = write!(out, "{}", report.text);
                passed += report.passed;
                failed += report.failed;
            }
            Err(e) => {
                eprintln!("saker test: {}", e.to_string().trim_end());
                setup_failed = true;
            }
        }
    }
    let _ = writeln!(out, "rule tests: {passed} passed, {failed} failed");
    if setup_failed {
        ExitCode::from(2)
    } else if failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
