//! The config file against the real command definition.

use std::path::Path;

use clap::CommandFactory;

use super::*;
use crate::cli::Cli;

fn settings(text: &str) -> Result<Vec<Setting>, Vec<Diagnostic>> {
    parse(
        "saker.yaml",
        text.to_string(),
        Path::new("conf"),
        &Cli::command(),
    )
}

fn tokens(text: &str) -> Vec<String> {
    settings(text)
        .unwrap_or_else(|d| panic!("{}", d.iter().map(|d| d.to_string()).collect::<String>()))
        .into_iter()
        .flat_map(|s| s.tokens)
        .map(|t| t.to_string_lossy().into_owned())
        .collect()
}

fn errors(text: &str) -> Vec<String> {
    settings(text)
        .expect_err("the file should be refused")
        .iter()
        .map(|d| d.to_string())
        .collect()
}

#[test]
fn every_run_flag_is_a_key() {
    let root = Cli::command();
    let keys = keys(&root);
    let run = root.find_subcommand("run").unwrap();
    for arg in run.get_arguments() {
        let long = arg.get_long().unwrap_or_else(|| {
            panic!(
                "`{}` has no long name, so it is no config key",
                arg.get_id()
            )
        });
        assert_eq!(
            keys.iter().any(|k| k.long == long),
            !COMMAND_LINE_ONLY.contains(&long),
            "{long}"
        );
    }
    for global in ["log-format", "log-level"] {
        assert!(keys.iter().any(|k| k.long == global), "{global}");
    }
}

#[test]
fn values_become_flags() {
    let text = "input: kafka\nfollow: false\nno-summary: true\nthreads: 2\n\
                kafka-topic: [a, b]\nkafka-option: {security.protocol: SSL}\nlateness: null\n";
    assert_eq!(
        tokens(text),
        [
            "--input=kafka",
            "--no-summary",
            "--threads=2",
            "--kafka-topic=a",
            "--kafka-topic=b",
            "--kafka-option=security.protocol=SSL"
        ]
    );
    assert_eq!(
        tokens("kafka-option: [a=b, 'c=d=e']\n"),
        ["--kafka-option=a=b", "--kafka-option=c=d=e"]
    );
    assert!(tokens("").is_empty());
}

#[test]
fn relative_paths_resolve_against_the_file() {
    let text = "rules: [r.yaml, /etc/r.yaml]\nalertmanager-ca-file: ca.pem\n\
                input: audit.log\nalertmanager: [am:9093]\n";
    assert_eq!(
        tokens(text),
        [
            "--rules=conf/r.yaml",
            "--rules=/etc/r.yaml",
            "--alertmanager-ca-file=conf/ca.pem",
            "--input=conf/audit.log",
            "--alertmanager=am:9093",
        ]
    );
    assert_eq!(tokens("input: '-'\n"), ["--input=-"]);
    assert_eq!(tokens("input: http\n"), ["--input=http"]);
}

#[test]
fn unknown_keys_suggest_the_nearest_flag() {
    let e = errors("max_keys: 5\nX: [a=b]\nconfig: other.yaml\n");
    assert_eq!(e.len(), 3, "{e:?}");
    assert!(e[0].contains("--> saker.yaml:1:1"), "{}", e[0]);
    assert!(e[0].contains("did you mean `max-keys`?"), "{}", e[0]);
    assert!(e[1].contains("did you mean `kafka-option`?"), "{}", e[1]);
    assert!(
        e[2].contains("only be given on the command line"),
        "{}",
        e[2]
    );
}

#[test]
fn wrong_types_are_placed() {
    let e = errors("threads: many\nrules: 3\nfollow: yes please\noutput: jsn\nresolution: [1s]\n");
    assert_eq!(e.len(), 5, "{e:?}");
    assert!(
        e[0].contains("invalid value `many` for `threads`"),
        "{}",
        e[0]
    );
    assert!(e[0].contains("--> saker.yaml:1:10"), "{}", e[0]);
    assert!(e[1].contains("`rules` is repeatable"), "{}", e[1]);
    assert!(e[1].contains("write `rules: [3]`"), "{}", e[1]);
    assert!(e[2].contains("expected true or false"), "{}", e[2]);
    assert!(e[3].contains("did you mean `json`?"), "{}", e[3]);
    assert!(
        e[4].contains("takes one DURATION, not a sequence"),
        "{}",
        e[4]
    );
    let e = errors("resolution: soon\n");
    assert!(e[0].contains("is not a duration"), "{}", e[0]);
}

#[test]
fn shape_errors() {
    assert!(errors("- input: x\n")[0].contains("not a sequence"));
    assert!(errors("threads: 1\nthreads: 2\n")[0].contains("given twice"));
    assert!(errors("a: 1\n---\nb: 2\n")[0].contains("one YAML document"));
    assert!(errors("input: [unclosed\n")[0].contains("error[yaml]"));
    assert!(errors("rules: [[a]]\n")[0].contains("an item of `rules`"));
}
