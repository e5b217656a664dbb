//! YAML → a tree of nodes that keep their source spans, parsed by serde-saphyr under budgets
//! (alias bombs, deep nesting and huge documents fail with an error, never a hang).

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::{Budget, DuplicateKeyPolicy, Options, Spanned};

/// A byte range in the source.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Span {
    pub offset: usize,
    pub len: usize,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub span: Span,
    pub value: NodeValue,
}

#[derive(Clone, Debug, PartialEq)]
pub enum NodeValue {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    /// Entries in source order; duplicates kept so they can be reported.
    Map(Vec<(Node, Node)>),
}

impl Node {
    /// The child at `key` of a mapping (the last one, if duplicated).
    pub fn get(&self, key: &str) -> Option<&(Node, Node)> {
        match &self.value {
            NodeValue::Map(entries) => entries.iter().rev().find(|(k, _)| match &k.value {
                NodeValue::Str(s) => s == key,
                _ => k.as_key().as_deref() == Some(key),
            }),
            _ => None,
        }
    }

    /// A scalar's text as a mapping key.
    pub fn as_key(&self) -> Option<String> {
        match &self.value {
            NodeValue::Str(s) => Some(s.clone()),
            NodeValue::Int(i) => Some(i.to_string()),
            NodeValue::UInt(i) => Some(i.to_string()),
            NodeValue::Float(f) => Some(f.to_string()),
            NodeValue::Bool(b) => Some(b.to_string()),
            NodeValue::Null => Some("null".into()),
            NodeValue::Seq(_) | NodeValue::Map(_) => None,
        }
    }
}

/// Limits on hostile input. Generous for a real spec (10,000 resources fit easily).
pub const MAX_DEPTH: usize = 32;
pub const MAX_BYTES: usize = 32 * 1024 * 1024;

#[derive(Debug)]
pub struct ParseError {
    pub message: String,
    pub span: Option<Span>,
    pub limit: bool,
}

/// Parses on a thread of its own with a generous stack, so that nesting up to the limit is
/// safe whatever stack the caller has.
pub fn parse(src: &str) -> Result<Node, ParseError> {
    std::thread::scope(|s| {
        std::thread::Builder::new()
            .name("mlops-yaml".into())
            .stack_size(64 * 1024 * 1024)
            .spawn_scoped(s, || parse_here(src))
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(ParseError { message: "the YAML parser failed".into(), span: None, limit: true })
                })
            })
            .unwrap_or_else(|_| parse_here(src))
    })
}

fn parse_here(src: &str) -> Result<Node, ParseError> {
    let mut budget = Budget::default();
    budget.max_depth = MAX_DEPTH;
    budget.flow_nesting_limit = MAX_DEPTH;
    budget.max_events = 8_000_000;
    budget.max_nodes = 4_000_000;
    budget.max_documents = 1;
    budget.max_aliases = 10_000;
    budget.max_recorded_anchor_events = 200_000;
    let mut options = Options::default();
    options.budget = Some(budget);
    options.duplicate_keys = DuplicateKeyPolicy::PassThrough;
    // YAML 1.2 core booleans: `n`, `no`, `on` are names, not booleans (the Norway problem).
    options.strict_booleans = true;
    match serde_saphyr::from_str_with_options::<Spanned<NodeValue>>(src, options) {
        Ok(root) => Ok(spanned(root, src)),
        Err(e) => {
            let text = e.to_string();
            let limit = text.contains("budget") || text.contains("limit") || text.contains("depth");
            let span = e.location().and_then(|l| location_span(&l, src));
            Err(ParseError { message: first_line(&text), span, limit })
        }
    }
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or(s).trim().to_string()
}

pub(crate) fn location_span(loc: &serde_saphyr::Location, src: &str) -> Option<Span> {
    let span = loc.span();
    if let (Some(off), Some(len)) = (span.byte_offset(), span.byte_len()) {
        let off = usize::try_from(off).ok()?.min(src.len());
        let len = usize::try_from(len).ok()?.min(src.len() - off);
        return Some(Span { offset: off, len });
    }
    // Fall back to line/column.
    let (line, col) = (loc.line() as usize, loc.column() as usize);
    if line == 0 {
        return None;
    }
    let line_start: usize = src.split_inclusive('\n').take(line - 1).map(str::len).sum();
    let offset = (line_start + col.saturating_sub(1)).min(src.len());
    Some(Span { offset, len: 0 })
}

fn spanned(s: Spanned<NodeValue>, src: &str) -> Node {
    let span = location_span(&s.referenced, src).unwrap_or_default();
    Node { span, value: s.value }
}

/// serde-saphyr hands out spans only through `Spanned`.
struct AnySpanned(Spanned<NodeValue>);

impl<'de> Deserialize<'de> for AnySpanned {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Spanned::<NodeValue>::deserialize(d).map(AnySpanned)
    }
}

impl<'de> Deserialize<'de> for NodeValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

fn child(s: Spanned<NodeValue>) -> Node {
    // Byte offsets are present for string input; fall back to nothing rather than guess.
    let sp = s.referenced.span();
    let span = match (sp.byte_offset(), sp.byte_len()) {
        (Some(o), Some(l)) => Span { offset: o as usize, len: l as usize },
        _ => Span::default(),
    };
    Node { span, value: s.value }
}

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = NodeValue;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_unit<E: de::Error>(self) -> Result<NodeValue, E> {
        Ok(NodeValue::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<NodeValue, E> {
        Ok(NodeValue::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<NodeValue, D::Error> {
        NodeValue::deserialize(d)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<NodeValue, E> {
        Ok(NodeValue::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<NodeValue, E> {
        Ok(NodeValue::Int(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<NodeValue, E> {
        Ok(match i64::try_from(v) {
            Ok(i) => NodeValue::Int(i),
            Err(_) => NodeValue::UInt(v),
        })
    }
    fn visit_i128<E: de::Error>(self, v: i128) -> Result<NodeValue, E> {
        i64::try_from(v).map(NodeValue::Int).map_err(|_| E::custom("integer out of range"))
    }
    fn visit_u128<E: de::Error>(self, v: u128) -> Result<NodeValue, E> {
        u64::try_from(v).map(|v| self.visit_u64::<E>(v)).map_err(|_| E::custom("integer out of range"))?
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<NodeValue, E> {
        Ok(NodeValue::Float(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<NodeValue, E> {
        Ok(NodeValue::Str(v.to_string()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<NodeValue, E> {
        Ok(NodeValue::Str(v))
    }
    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<NodeValue, E> {
        Ok(NodeValue::Str(String::from_utf8_lossy(v).into_owned()))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<NodeValue, A::Error> {
        let mut out = Vec::new();
        while let Some(AnySpanned(el)) = seq.next_element::<AnySpanned>()? {
            out.push(child(el));
        }
        Ok(NodeValue::Seq(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<NodeValue, A::Error> {
        let mut out = Vec::new();
        while let Some(AnySpanned(k)) = map.next_key::<AnySpanned>()? {
            let AnySpanned(v) = map.next_value::<AnySpanned>()?;
            out.push((child(k), child(v)));
        }
        Ok(NodeValue::Map(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_point_at_values() {
        let src = "a: 1\nb:\n  c: hello\n";
        let n = parse(src).unwrap();
        let (k, v) = n.get("b").unwrap();
        assert_eq!(&src[k.span.offset..k.span.offset + k.span.len], "b");
        let (_, c) = v.get("c").unwrap();
        assert_eq!(&src[c.span.offset..c.span.offset + c.span.len], "hello");
    }

    #[test]
    fn duplicates_are_kept() {
        let n = parse("a: 1\na: 2\n").unwrap();
        let NodeValue::Map(entries) = n.value else { panic!() };
        assert_eq!(entries.len(), 2);
    }

    #[test]
    fn alias_bomb_is_refused() {
        let mut src = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..12 {
            let p = i - 1;
            src.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
            ));
        }
        let e = parse(&src).unwrap_err();
        assert!(!e.message.is_empty());
    }

    #[test]
    fn deep_nesting_is_refused() {
        let src = "[".repeat(10_000) + &"]".repeat(10_000);
        assert!(parse(&src).is_err());
        let mut block = String::new();
        for i in 0..500 {
            block.push_str(&" ".repeat(i));
            block.push_str("a:\n");
        }
        assert!(parse(&block).is_err());
    }
}
