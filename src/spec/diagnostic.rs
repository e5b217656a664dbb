//! Spec diagnostics: a stable code, a message, a help, and labels pointing into the YAML.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use miette::{Diagnostic, LabeledSpan, Severity, SourceCode};
use serde::Serialize;

use super::yaml::Span;

/// The source a diagnostic points into.
#[derive(Debug, Clone)]
pub struct SourceFile {
    pub name: String,
    pub text: Arc<String>,
    /// The byte offset each line starts at, made on first use and shared by every diagnostic
    /// into this file: finding a line is a binary search, not a scan from the start.
    lines: Arc<std::sync::OnceLock<Vec<usize>>>,
}

impl SourceFile {
    pub fn new(name: impl Into<String>, text: impl Into<String>) -> Self {
        SourceFile { name: name.into(), text: Arc::new(text.into()), lines: Default::default() }
    }

    fn line_starts(&self) -> &[usize] {
        self.lines.get_or_init(|| std::iter::once(0).chain(self.text.match_indices('\n').map(|(i, _)| i + 1)).collect())
    }

    /// The 0-based line holding byte `offset`.
    fn line_of(&self, offset: usize) -> usize {
        self.line_starts().partition_point(|&start| start <= offset).saturating_sub(1)
    }

    /// 1-based line and column (in characters) of a byte offset.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = floor_char_boundary(&self.text, offset.min(self.text.len()));
        let line = self.line_of(offset);
        let col = self.text[self.line_starts()[line]..offset].chars().count() + 1;
        (line + 1, col)
    }
}

/// The file as miette reads it for a report: each span's lines are found through the line index
/// and only a window around them is handed to miette's own reader, which otherwise counts lines
/// from the start of the file for every span (quadratic over thousands of diagnostics).
pub struct Windowed {
    file: SourceFile,
}

impl SourceCode for Windowed {
    fn read_span<'a>(
        &'a self,
        span: &miette::SourceSpan,
        before: usize,
        after: usize,
    ) -> Result<Box<dyn miette::SpanContents<'a> + 'a>, miette::MietteError> {
        let text = self.file.text.as_bytes();
        let starts = self.file.line_starts();
        let (first, last) = (self.file.line_of(span.offset()), self.file.line_of(span.offset() + span.len()));
        // One line more than the context: miette's reader treats a span at its input's very
        // start differently, so the window starts there only when the file does.
        let from_line = first.saturating_sub(before + 1);
        let from = starts[from_line];
        let to = starts.get(last + after + 2).copied().unwrap_or(text.len());
        let window: &'a [u8] = &text[from..to];
        let Ok(inner) = window.read_span(&(span.offset() - from, span.len()).into(), before, after) else {
            return text.read_span(span, before, after);
        };
        let contents = miette::MietteSpanContents::new_named(
            self.file.name.clone(),
            inner.data(),
            (from + inner.span().offset(), inner.span().len()).into(),
            from_line + inner.line(),
            inner.column(),
            from_line + inner.line_count(),
        )
        .with_language("yaml");
        Ok(Box::new(contents))
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
pub struct Named<'a>(pub &'a SpecDiagnostic, pub Option<Windowed>);

impl<'a> Named<'a> {
    pub fn new(d: &'a SpecDiagnostic) -> Self {
        Named(d, d.source.clone().map(|file| Windowed { file }))
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

#[cfg(test)]
mod windowed_tests {
    use super::*;

    /// Every span, with any context, reads as miette's own reader reads the whole file.
    #[test]
    fn a_window_reads_every_span_as_the_whole_file_does() {
        let text = "version: 1\nproject: x\n\ndatasets:\n  a:\n    source: ./a\n  b: { source: ./b }\nmodels:\n  m:\n    artifact: m.bin\n";
        let file = SourceFile::new("mlops.yaml", text);
        let windowed = Windowed { file: file.clone() };
        for offset in 0..text.len() {
            for len in [0, 1, 5, 30] {
                let len = len.min(text.len() - offset);
                for (before, after) in [(0, 0), (1, 1), (2, 3)] {
                    let span: miette::SourceSpan = (offset, len).into();
                    let want = text.as_bytes().read_span(&span, before, after).unwrap();
                    let got = windowed.read_span(&span, before, after).unwrap();
                    let at = format!("offset {offset}, len {len}, context {before}/{after}");
                    assert_eq!(got.data(), want.data(), "{at}");
                    assert_eq!(got.span(), want.span(), "{at}");
                    assert_eq!((got.line(), got.column()), (want.line(), want.column()), "{at}");
                    assert_eq!(got.line_count(), want.line_count(), "{at}");
                }
            }
        }
        assert_eq!(file.line_col(0), (1, 1));
        assert_eq!(file.line_col(text.find("source: ./a").unwrap()), (6, 5));
    }
}
