//! `saker fields`: the field catalog, as a table or JSON lines.

use std::io::{self, Write};
use std::process::ExitCode;

pub fn fields(json: bool) -> ExitCode {
    let mut out = io::stdout().lock();
    for f in saker::fields::catalog() {
        let kind = if f.list { "list" } else { "string" };
        let res = if json {
            writeln!(
                out,
                "{}",
                serde_json::json!({"name": f.name, "type": kind, "arg": format!("{:?}", f.arg).to_lowercase(), "desc": f.desc})
            )
        } else {
            writeln!(out, "{:<52} {:<7} {}", f.to_string(), kind, f.desc)
        };
        if res.is_err() {
            break;
        }
    }
    ExitCode::SUCCESS
}
