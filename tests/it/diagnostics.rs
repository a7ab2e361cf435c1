//! Golden diagnostics: `saker check` on broken rule files must print every
//! problem with file:line:col, the source line, a caret and a hint, exactly as
//! recorded in `tests/golden/diagnostics/*.expected`.

use super::*;

/// `saker check NAME.yaml` in the diagnostics goldens exits with `code` and
/// prints exactly `NAME.expected`.
pub fn check_golden(name: &str, code: i32) {
    let dir = golden("diagnostics");
    let out = saker()
        .current_dir(&dir)
        .args(["check", &format!("{name}.yaml")])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(code),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_golden(
        &dir.join(format!("{name}.expected")),
        &String::from_utf8(out.stdout).unwrap(),
    );
}

#[test]
fn several_errors_in_one_file_are_all_reported() {
    check_golden("several_errors", 1);
}

#[test]
fn macro_cycle() {
    check_golden("macro_cycle", 1);
}

#[test]
fn field_arguments() {
    check_golden("field_arguments", 1);
}

#[test]
fn yaml_syntax_error() {
    check_golden("yaml_error", 1);
}

#[test]
fn structure_errors_and_warnings() {
    check_golden("structure_errors", 1);
}

#[test]
fn skip_if_unknown_filter_and_foreign_sources_are_warnings() {
    check_golden("skip_unknown", 0);
}

#[test]
fn run_prints_the_same_diagnostics_on_stderr() {
    let dir = golden("diagnostics");
    let out = saker()
        .current_dir(&dir)
        .args([
            "run",
            "--rules",
            "several_errors.yaml",
            "--input",
            "/dev/null",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--> several_errors.yaml:9:25"), "{err}");
    assert!(err.contains("rules failed to load (6 error(s))"), "{err}");
}

#[test]
fn rules_that_can_never_fire_or_always_pass_are_warned_about() {
    check_golden("lint", 0);
}

#[test]
fn the_default_rules_pass_their_own_lints() {
    let out = saker().arg("check").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!stdout.contains("warning["), "{stdout}");
    assert!(stdout.contains("(0 warning(s))"), "{stdout}");
}

#[test]
fn innet_rejects_what_is_not_a_network() {
    check_golden("innet", 1);
}
