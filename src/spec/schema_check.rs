//! The spec against its JSON Schema: each error at its line, in words a user reads (the
//! expected type, the allowed fields, the closest name).

use super::*;

pub(super) fn schema_check(
    json: &Value,
    root: &Node,
    source: &SourceFile,
    registry: &Registry,
    diags: &mut Vec<SpecDiagnostic>,
) {
    let (schema, validator) = registry.schema();
    for err in validator.iter_errors(json) {
        schema_error(&err, &[], schema, root, source, diags);
    }
}

/// One schema error as a diagnostic. `prefix`: where in the spec the validated value sits (for
/// errors found inside one branch of an `anyOf`), `schema`: the schema that was validated.
fn schema_error(
    err: &jsonschema::ValidationError<'_>,
    prefix: &[String],
    schema: &Value,
    root: &Node,
    source: &SourceFile,
    diags: &mut Vec<SpecDiagnostic>,
) {
    use jsonschema::error::ValidationErrorKind as K;
    {
        let mut path = prefix.to_vec();
        path.extend(pointer_segments(err.instance_path().as_str()));
        let (key, value) = lookup(root, &path).unwrap_or((None, root));
        let at = |n: &Node| source.widen(n.span);
        let field = if path.is_empty() { "the spec".to_string() } else { format!("`{}`", path.join(".")) };
        let d = match err.kind() {
            // An optional value (`anyOf: [X, null]`) that is not null: say what is wrong inside X.
            K::AnyOf { .. } if !err.instance().is_null() => {
                if let Some(branch) = only_non_null_branch(schema, err.evaluation_path().as_str()) {
                    let mut sub = branch.clone();
                    if let (Some(obj), Some(defs)) = (sub.as_object_mut(), schema.get("$defs")) {
                        obj.insert("$defs".into(), defs.clone());
                    }
                    if let Ok(v) = jsonschema::validator_for(&sub) {
                        let before = diags.len();
                        for inner in v.iter_errors(err.instance()) {
                            schema_error(&inner, &path, &sub, root, source, diags);
                        }
                        if diags.len() > before {
                            return;
                        }
                    }
                }
                SpecDiagnostic::new("spec::invalid_value", format!("{field}: {err}")).label(at(value), "here")
            }
            K::AdditionalProperties { unexpected } => {
                let allowed = allowed_properties(schema, err.evaluation_path().as_str());
                for name in unexpected {
                    let key_span = value.get(name).map(|(k, _)| k.span).unwrap_or(value.span);
                    let suggestion = closest(name, &allowed);
                    let mut d =
                        SpecDiagnostic::new("spec::unknown_field", format!("unknown field `{name}` in {field}"))
                            .label(source.widen(key_span), "unknown field");
                    d = match suggestion {
                        Some(s) => d.help(format!("did you mean `{s}`?")),
                        None if !allowed.is_empty() => d.help(format!("expected one of: {}", allowed.join(", "))),
                        None => d,
                    };
                    diags.push(d);
                }
                return;
            }
            K::Required { property } => {
                let name = property.as_str().unwrap_or_default();
                let span = key.map(|k| k.span).unwrap_or(value.span);
                SpecDiagnostic::new("spec::missing_field", format!("{field} is missing the required field `{name}`"))
                    .label(source.widen(span), format!("`{name}` is required here"))
                    .help(format!("add `{name}:`"))
            }
            K::Type { kind } => SpecDiagnostic::new("spec::type_mismatch", format!("{field} has the wrong type"))
                .label(at(value), format!("expected {}, found {}", type_name(kind), describe(err.instance())))
                .help("see schemas/mlops.schema.json for the expected shape"),
            K::Enum { options } => {
                SpecDiagnostic::new("spec::invalid_value", format!("{field} is not an accepted value"))
                    .label(at(value), "not accepted")
                    .help(format!(
                        "expected one of: {}",
                        options
                            .as_array()
                            .map(|a| a.iter().map(|o| o.to_string()).collect::<Vec<_>>().join(", "))
                            .unwrap_or_default()
                    ))
            }
            K::PropertyNames { error } => {
                let bad = error.instance().as_str().unwrap_or_default().to_string();
                let span = value.get(&bad).map(|(k, _)| k.span).unwrap_or(value.span);
                SpecDiagnostic::new("spec::invalid_name", format!("`{bad}` is not a valid name in {field}"))
                    .label(source.widen(span), "invalid name")
                    .help("names start with a letter or digit and use letters, digits, `-`, `_` and `.` (at most 128)")
            }
            K::Minimum { limit } | K::Maximum { limit } if path == ["version"] => {
                let _ = limit;
                SpecDiagnostic::new(
                    "spec::unsupported_version",
                    format!("spec version {} is not supported", err.instance()),
                )
                .label(at(value), "unsupported")
                .help("this mlops understands `version: 1`")
            }
            K::Minimum { limit } | K::Maximum { limit } => {
                let small = matches!(err.kind(), K::Minimum { .. });
                let mut segs = pointer_segments(err.evaluation_path().as_str());
                segs.pop();
                let node = schema_node(schema, &segs);
                let bound = |k: &str| node.and_then(|n| n.get(k)).map(|v| v.to_string());
                let d = SpecDiagnostic::new(
                    "spec::invalid_value",
                    format!("{field} is {}: {}", if small { "too small" } else { "too large" }, err.instance()),
                )
                .label(at(value), format!("must be at {} {limit}", if small { "least" } else { "most" }));
                match (bound("minimum"), bound("maximum")) {
                    (Some(lo), Some(hi)) => d.help(format!("accepted range: {lo} to {hi}")),
                    _ => d,
                }
            }
            K::MinProperties { limit } => SpecDiagnostic::new("spec::invalid_value", format!("{field} is empty"))
                .label(at(value), format!("needs at least {limit} entry")),
            K::Pattern { pattern } => {
                SpecDiagnostic::new("spec::invalid_value", format!("{field} has an invalid form"))
                    .label(at(value), format!("must match {pattern}"))
                    .help(if path == ["project"] {
                        "project names are lowercase letters, digits, `-` and `_`, at most 63".to_string()
                    } else {
                        format!("must match {pattern}")
                    })
            }
            _ => SpecDiagnostic::new("spec::invalid_value", format!("{field}: {err}")).label(at(value), "here"),
        };
        diags.push(d);
    }
}

fn type_name(kind: &jsonschema::error::TypeKind) -> String {
    match kind {
        jsonschema::error::TypeKind::Single(t) => format!("{t}"),
        jsonschema::error::TypeKind::Multiple(ts) => {
            let names: Vec<String> = ts.iter().map(|t| format!("{t}")).collect();
            names.join(" or ")
        }
    }
}

fn describe(v: &Value) -> &'static str {
    match v {
        Value::Null => "nothing (null)",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

/// The one branch of the `anyOf` at `eval_path` that is not `{"type": "null"}` (an `Option`).
fn only_non_null_branch<'a>(schema: &'a Value, eval_path: &str) -> Option<&'a Value> {
    let mut segs = pointer_segments(eval_path);
    if segs.pop().as_deref() != Some("anyOf") {
        return None;
    }
    let node = schema_node(schema, &segs)?;
    let branches: Vec<&Value> = node
        .get("anyOf")?
        .as_array()?
        .iter()
        .filter(|b| b.get("type").and_then(Value::as_str) != Some("null"))
        .collect();
    let [one] = branches.as_slice() else { return None };
    match one.get("$ref").and_then(Value::as_str) {
        Some(r) => r.strip_prefix('#').and_then(|p| schema.pointer(p)),
        None => Some(one),
    }
}

/// The schema node an evaluation path leads to, following `$ref`s.
fn schema_node<'a>(schema: &'a Value, segs: &[String]) -> Option<&'a Value> {
    let mut cur = schema;
    for seg in segs {
        if seg == "$ref" {
            let r = cur.get("$ref").and_then(Value::as_str)?;
            cur = r.strip_prefix('#').and_then(|p| schema.pointer(p))?;
            continue;
        }
        cur = cur.get(seg)?;
    }
    Some(cur)
}

/// The property names of the schema object whose `additionalProperties` rejected a key.
fn allowed_properties(schema: &Value, eval_path: &str) -> Vec<String> {
    let mut segs = pointer_segments(eval_path);
    segs.pop(); // "additionalProperties"
    let mut cur = schema;
    for seg in &segs {
        if seg == "$ref" {
            let Some(r) = cur.get("$ref").and_then(Value::as_str) else { return vec![] };
            let Some(target) = r.strip_prefix('#').and_then(|p| schema.pointer(p)) else { return vec![] };
            cur = target;
            continue;
        }
        let Some(next) = cur.get(seg) else { return vec![] };
        cur = next;
    }
    if let Some(r) = cur.get("$ref").and_then(Value::as_str) {
        if let Some(t) = r.strip_prefix('#').and_then(|p| schema.pointer(p)) {
            cur = t;
        }
    }
    cur.get("properties").and_then(Value::as_object).map(|m| m.keys().cloned().collect()).unwrap_or_default()
}

/// The closest candidate by edit distance, if close enough to be a typo.
pub fn closest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a String>) -> Option<String> {
    candidates
        .into_iter()
        .map(|c| (strsim::levenshtein(name, c), c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c.clone())
}
