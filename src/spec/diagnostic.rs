//! Spec diagnostics: a stable code, a message, a help, and labels pointing into the YAML.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use miette::{Diagnostic, LabeledSpan, NamedSource, Severity, SourceCode};
use serde::Serialize;

use super::yaml::Span;

/// The source a diagnostic points into.
#[derive(Debug, Clone)]
pub struct SourceFile {
    pub name: String,
    pub text: Arc<String>,
}

impl SourceFile {
    pub fn new(name: impl Into<String>, text: impl Into<String>) -> Self {
        SourceFile { name: name.into(), text: Arc::new(text.into()) }
    }

    /// 1-based line and column (in characters) of a byte offset.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let before = &self.text[..floor_char_boundary(&self.text, offset)];
        let line = before.matches('\n').count() + 1;
        let col = before.rsplit('\n').next().map(|l| l.chars().count()).unwrap_or(0) + 1;
        (line, col)
    }
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

#[derive(Debug, Clone)]
pub struct Label {
    pub span: Span,
    pub text: String,
}

#[derive(Debug, Clone)]
pub struct SpecDiagnostic {
    /// `spec::…` for the engine's own checks; a provider's checks keep the provider's codes.
    pub code: Cow<'static, str>,
    pub message: String,
    pub help: Option<String>,
    pub labels: Vec<Label>,
    pub source: Option<SourceFile>,
    /// A warning: said, but the spec is valid.
    pub warning: bool,
}

impl SpecDiagnostic {
    pub fn new(code: impl Into<Cow<'static, str>>, message: impl Into<String>) -> Self {
        SpecDiagnostic {
            code: code.into(),
            message: message.into(),
            help: None,
            labels: Vec::new(),
            source: None,
            warning: false,
        }
    }
    pub fn warning(mut self) -> Self {
        self.warning = true;
        self
    }
    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }
    pub fn label(mut self, span: Span, text: impl Into<String>) -> Self {
        self.labels.push(Label { span, text: text.into() });
        self
    }
    pub fn with_source(mut self, source: &SourceFile) -> Self {
        self.source = Some(source.clone());
        self
    }

    /// Where the diagnostic points: file, 1-based line and column of its first label.
    pub fn location(&self) -> Option<(String, usize, usize)> {
        let src = self.source.as_ref()?;
        let span = self.labels.first()?.span;
        let (l, c) = src.line_col(span.offset);
        Some((src.name.clone(), l, c))
    }

    pub fn to_json(&self) -> DiagnosticJson {
        let loc = self.location();
        DiagnosticJson {
            code: self.code.clone(),
            severity: if self.warning { "warning" } else { "error" },
            message: self.message.clone(),
            help: self.help.clone(),
            file: loc.as_ref().map(|l| l.0.clone()).or_else(|| self.source.as_ref().map(|s| s.name.clone())),
            line: loc.as_ref().map(|l| l.1),
            column: loc.as_ref().map(|l| l.2),
            labels: self
                .labels
                .iter()
                .map(|l| {
                    let (line, column) = self.source.as_ref().map(|s| s.line_col(l.span.offset)).unwrap_or((0, 0));
                    LabelJson { message: l.text.clone(), offset: l.span.offset, length: l.span.len, line, column }
                })
                .collect(),
        }
    }
}

/// The `--json` form of a diagnostic; documented in the README.
#[derive(Debug, Serialize)]
pub struct DiagnosticJson {
    pub code: Cow<'static, str>,
    pub severity: &'static str,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub help: Option<String>,
    pub file: Option<String>,
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub labels: Vec<LabelJson>,
}

#[derive(Debug, Serialize)]
pub struct LabelJson {
    pub message: String,
    pub offset: usize,
    pub length: usize,
    pub line: usize,
    pub column: usize,
}

impl fmt::Display for SpecDiagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for SpecDiagnostic {}

impl Diagnostic for SpecDiagnostic {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        Some(Box::new(&self.code))
    }
    fn severity(&self) -> Option<Severity> {
        Some(if self.warning { Severity::Warning } else { Severity::Error })
    }
    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.help.as_ref().map(|h| Box::new(h) as Box<dyn fmt::Display>)
    }
    fn source_code(&self) -> Option<&dyn SourceCode> {
        self.source.as_ref().map(|s| &*s.text as &dyn SourceCode)
    }
    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        if self.labels.is_empty() || self.source.is_none() {
            return None;
        }
        let len = self.source.as_ref().map(|s| s.text.len()).unwrap_or(0);
        Some(Box::new(self.labels.iter().enumerate().map(move |(i, l)| {
            let off = l.span.offset.min(len);
            let span = (off, l.span.len.min(len - off));
            if i == 0 {
                LabeledSpan::new_primary_with_span(Some(l.text.clone()), span)
            } else {
                LabeledSpan::new_with_span(Some(l.text.clone()), span)
            }
        })))
    }
}

/// A diagnostic with its file name, for miette's report header.
pub struct Named<'a>(pub &'a SpecDiagnostic, pub Option<NamedSource<Arc<String>>>);

impl<'a> Named<'a> {
    pub fn new(d: &'a SpecDiagnostic) -> Self {
        let src = d.source.as_ref().map(|s| NamedSource::new(s.name.clone(), s.text.clone()).with_language("yaml"));
        Named(d, src)
    }
}

impl fmt::Debug for Named<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.0, f)
    }
}
impl fmt::Display for Named<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self.0, f)
    }
}
impl std::error::Error for Named<'_> {}
impl Diagnostic for Named<'_> {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.0.code()
    }
    fn severity(&self) -> Option<Severity> {
        self.0.severity()
    }
    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.0.help()
    }
    fn source_code(&self) -> Option<&dyn SourceCode> {
        self.1.as_ref().map(|s| s as &dyn SourceCode)
    }
    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        self.0.labels()
    }
}

impl SourceFile {
    /// Points a label at the rest of the line when a span is empty (e.g. a mapping's start).
    pub fn widen(&self, span: Span) -> Span {
        if span.len > 0 {
            return span;
        }
        let rest = &self.text[floor_char_boundary(&self.text, span.offset.min(self.text.len()))..];
        let len = rest.find('\n').unwrap_or(rest.len());
        Span { offset: span.offset, len: len.max(if rest.is_empty() { 0 } else { 1 }) }
    }
}
