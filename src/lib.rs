//! Saker: a streaming detection engine for Kubernetes API audit events.
//!
//! The crate is laid out as its pipeline: [`source`] (stdin, files and Kafka
//! behind one trait, pulled by [`source::driver`]) → [`event`] (a lazy view of one audit event) → [`rules`] (Falco-format
//! rules compiled into a predicate program, with [`fields`] as extractors) →
//! [`engine`] (wiring and counters) → [`sink`] (stdout). Rule-file problems
//! are reported as [`diag::Diagnostic`]s with `file:line:col`. Beside the
//! pipeline, [`policy`] is audit policy tooling and [`rbac`] answers who
//! RBAC objects let make a request.
//!
//! ```
//! use saker::{engine::{Engine, RuleMatching}, rules, sink::stdout::{Format, StdoutSink}};
//! use saker::source::lines::Line;
//!
//! let loaded = rules::load(&rules::default_sources());
//! let set = loaded.rules.expect("the embedded rules load");
//! let mut sink = StdoutSink::new(Vec::new(), Format::Json);
//! let mut engine = Engine::new(&set, RuleMatching::First);
//! let line = br#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"1","stage":"ResponseStarted","requestURI":"/api/v1/namespaces/default/pods/web/exec?command=sh","verb":"create","user":{"username":"alice"},"objectRef":{"resource":"pods","namespace":"default","name":"web","subresource":"exec"},"responseStatus":{"code":101},"stageTimestamp":"2024-10-29T12:22:15.861424Z"}"#;
//! engine.process_line(Line::Text(line), &mut sink).unwrap();
//! let out = String::from_utf8(sink.into_inner()).unwrap();
//! assert!(out.contains("\"rule\":\"Exec Into Pod\""));
//! ```

#![forbid(unsafe_code)]

pub mod diag;
pub mod engine;
pub mod event;
pub mod fields;
pub mod policy;
pub mod rbac;
pub mod reload;
pub mod report;
pub mod rules;
pub mod ruletest;
pub mod runtime;
pub mod sink;
pub mod source;
pub mod state;
pub mod stateful;
pub mod window;
