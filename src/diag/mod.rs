//! Diagnostics for rule files: a problem, where it is (`file:line:col`), the
//! source line with a caret under the offending text, what was expected and,
//! for near-miss names, a "did you mean" hint. Loading collects every problem
//! of a file instead of stopping at the first.

pub mod codes;

use std::fmt::{self, Write as _};
use std::sync::Arc;

pub use codes::Code;

/// A loaded rules file: its display name and its text.
#[derive(Debug)]
pub struct SourceFile {
    pub name: String,
    pub text: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// A hint: nothing is wrong, something could be better.
    Info,
    Warning,
    Error,
}

/// One problem found while loading rules.
#[derive(Debug, Clone)]
pub struct Diagnostic {
    pub severity: Severity,
    /// The kind of problem; printed as a stable, greppable name
    /// (`unknown-field`), explained by `saker check --explain`.
    pub code: Code,
    pub message: String,
    pub file: Option<Arc<SourceFile>>,
    /// Byte range in the file's text.
    pub span: Option<(usize, usize)>,
    /// Short text printed after the caret.
    pub label: Option<String>,
    pub help: Option<String>,
}

impl Diagnostic {
    pub fn error(code: Code, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Error,
            code,
            message: message.into(),
            file: None,
            span: None,
            label: None,
            help: None,
        }
    }

    pub fn info(code: Code, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Info,
            ..Diagnostic::error(code, message)
        }
    }

    pub fn warning(code: Code, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Warning,
            ..Diagnostic::error(code, message)
        }
    }

    pub fn at(mut self, file: &Arc<SourceFile>, start: usize, end: usize) -> Self {
        self.file = Some(file.clone());
        self.span = Some((start, end.max(start)));
        self
    }

    pub fn label(mut self, label: impl Into<String>) -> Self {
        self.label = Some(label.into());
        self
    }

    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    pub fn help_opt(mut self, help: Option<String>) -> Self {
        if help.is_some() {
            self.help = help;
        }
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    /// The diagnostic on one line, for logs and status text:
    /// `file:line:col: error[code]: message`.
    pub fn headline(&self) -> String {
        let kind = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Info => "info",
        };
        let at = match (&self.file, self.line_col()) {
            (Some(f), Some((line, col))) => format!("{}:{line}:{col}: ", f.name),
            (Some(f), None) => format!("{}: ", f.name),
            (None, _) => String::new(),
        };
        format!("{at}{kind}[{}]: {}", self.code, self.message)
    }

    /// `(line, column)`, both 1-based, column counted in characters.
    pub fn line_col(&self) -> Option<(usize, usize)> {
        let (file, (start, _)) = (self.file.as_ref()?, self.span?);
        Some(line_col(&file.text, start))
    }
}

/// 1-based line and character column of a byte offset.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = floor_char_boundary(text, offset.min(text.len()));
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, text[line_start..offset].chars().count() + 1)
}

fn floor_char_boundary(text: &str, mut i: usize) -> usize {
    while i > 0 && !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Info => "info",
        };
        writeln!(f, "{kind}[{}]: {}", self.code, self.message)?;
        if let (Some(file), Some((start, end))) = (&self.file, self.span) {
            let (line, col) = line_col(&file.text, start);
            writeln!(f, "  --> {}:{line}:{col}", file.name)?;
            let text = &file.text;
            let start = floor_char_boundary(text, start.min(text.len()));
            let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
            let line_end = text[start..].find('\n').map_or(text.len(), |i| start + i);
            let src = text[line_start..line_end].trim_end_matches('\r');
            let gutter = line.to_string().len();
            let pad = " ".repeat(gutter);
            writeln!(f, "{pad} |")?;
            writeln!(f, "{line} | {}", src.replace('\t', " "))?;
            let end = floor_char_boundary(text, end.min(line_end));
            let width = text[start..end.max(start)].chars().count().max(1);
            let mut caret = format!("{pad} | {}{}", " ".repeat(col - 1), "^".repeat(width));
            if let Some(label) = &self.label {
                let _ = write!(caret, " {label}");
            }
            writeln!(f, "{caret}")?;
        } else if let Some(file) = &self.file {
            writeln!(f, "  --> {}", file.name)?;
        }
        if let Some(help) = &self.help {
            writeln!(f, "  = help: {help}")?;
        }
        Ok(())
    }
}

/// The closest candidate to `name`, if it is close enough to be a typo.
pub fn did_you_mean<'a, I>(name: &str, candidates: I) -> Option<String>
where
    I: IntoIterator<Item = &'a str>,
{
    let limit = (name.chars().count() / 3).clamp(1, 4);
    candidates
        .into_iter()
        .map(|c| (edit_distance(name, c), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| format!("did you mean `{c}`?"))
}

/// Levenshtein distance over characters.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_caret_under_span() {
        let file = Arc::new(SourceFile {
            name: "r.yaml".into(),
            text: "- rule: x\n  condition: ka.usr = a\n".into(),
        });
        let start = file.text.find("ka.usr").unwrap();
        let d = Diagnostic::error(Code::UnknownField, "unknown field `ka.usr`")
            .at(&file, start, start + 6)
            .label("not a field")
            .help_opt(did_you_mean("ka.usr", ["ka.user.name", "ka.uri"]));
        let text = d.to_string();
        assert!(text.contains("--> r.yaml:2:14"), "{text}");
        assert!(text.contains("2 |   condition: ka.usr = a"), "{text}");
        assert!(
            text.contains("  |              ^^^^^^ not a field"),
            "{text}"
        );
        assert!(text.contains("did you mean `ka.uri`?"), "{text}");
        assert_eq!(
            d.headline(),
            "r.yaml:2:14: error[unknown-field]: unknown field `ka.usr`"
        );
    }

    #[test]
    fn distance() {
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(did_you_mean("kevt", ["kevt_started", "kcreate"]), None);
        assert_eq!(
            did_you_mean("kcreat", ["kevt", "kcreate"]).as_deref(),
            Some("did you mean `kcreate`?")
        );
    }
}
