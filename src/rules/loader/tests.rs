//! Tests of the rules-file loader: lists, macros, rules, versions, enable
//! and override.

use super::*;

fn load(texts: &[&str]) -> Definitions {
    let mut defs = Definitions::default();
    for (i, t) in texts.iter().enumerate() {
        defs.load(Arc::new(SourceFile {
            name: format!("f{i}.yaml"),
            text: t.to_string(),
        }));
    }
    defs
}

#[test]
fn lists_inline_and_append() {
    let d = load(&[
        "- list: a\n  items: [x, y]\n- list: b\n  items: [a, z]\n",
        "- list: b\n  items: [w]\n  append: true\n",
    ]);
    assert!(d.diagnostics.is_empty(), "{:?}", d.diagnostics);
    assert_eq!(d.list("b").unwrap().items, ["x", "y", "z", "w"]);
}

#[test]
fn macro_redefinition_keeps_position_and_append_concatenates() {
    let d = load(&["- macro: m\n  condition: ka.verb=get\n- macro: n\n  condition: ka.verb=list\n", "- macro: m\n  condition: ka.verb=create\n- macro: n\n  condition: or ka.verb=watch\n  override:\n    condition: append\n"]);
    assert!(d.diagnostics.is_empty(), "{:?}", d.diagnostics);
    assert_eq!(d.macros[0].condition.text, "ka.verb=create");
    assert_eq!(d.macros[1].condition.text, "ka.verb=list or ka.verb=watch");
}

#[test]
fn rule_errors_and_versions() {
    let d = load(&["- required_engine_version: 99\n- rule: r\n  desc: d\n  condition: ka.verb=get\n  priority: loud\n  output: o\n- rule: s\n  append: true\n  condition: and x\n"]);
    let codes: Vec<_> = d.diagnostics.iter().map(|d| d.code.as_str()).collect();
    assert_eq!(codes, ["engine-version", "priority", "append-missing"]);
    let d = load(&["- required_plugin_versions:\n  - name: k8saudit\n    version: 0.99.0\n    alternatives:\n      - name: k8saudit-eks\n        version: 0.1.0\n  - name: json\n    version: 0.99.0\n"]);
    assert_eq!(d.diagnostics.len(), 1, "{:?}", d.diagnostics);
}

#[test]
fn enable_and_override() {
    let d = load(&["- rule: r\n  desc: d\n  condition: ka.verb=get\n  priority: info\n  output: o\n  source: k8s_audit\n  tags: [b]\n", "- rule: r\n  enabled: false\n- rule: r\n  tags: [a]\n  override:\n    tags: append\n"]);
    assert_eq!(
        d.diagnostics.iter().filter(|d| d.is_error()).count(),
        0,
        "{:?}",
        d.diagnostics
    );
    assert!(!d.rules[0].enabled);
    assert_eq!(d.rules[0].tags.iter().collect::<Vec<_>>(), ["a", "b"]);
}
