//! The report's headline for a terminal: alerts by rule and by identity,
//! as two aligned tables.

use std::fmt::Write;

use super::ReportData;

/// Rows of `(count, name)` under a heading, counts right-aligned.
fn rows(out: &mut String, heading: &str, rows: &[(u64, &str)]) {
    let width = rows
        .iter()
        .map(|(n, _)| n.to_string().len())
        .max()
        .unwrap_or(1)
        .max("alerts".len());
    let _ = writeln!(out, "{:>width$}  {heading}", "alerts");
    for (n, name) in rows {
        let _ = writeln!(out, "{n:>width$}  {name}");
    }
}

/// Alerts by rule (most first), then by identity (as listed on the page).
pub fn render(data: &ReportData) -> String {
    let mut by_rule: Vec<(u64, &str)> = data
        .alerts_by_rule
        .iter()
        .map(|(r, n)| (*n, r.as_str()))
        .collect();
    by_rule.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(b.1)));
    let mut out = String::new();
    rows(&mut out, "rule", &by_rule);
    out.push('\n');
    let by_id: Vec<(u64, &str)> = data
        .identities
        .iter()
        .map(|i| (i.alerts, i.name.as_str()))
        .collect();
    rows(&mut out, "identity", &by_id);
    out
}
