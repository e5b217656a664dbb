//! YAML nodes → JSON, with `${env:VAR}` and `${secret:…}` interpolated (and refused where a
//! secret may not go).

use super::*;

/// YAML nodes → JSON, interpolating `${env:VAR}` and reporting duplicate or complex keys.
/// What interpolation reads and collects: the environment, the secrets it resolves, and
/// warnings (not errors) about what it saw.
pub struct Interpolation<'a> {
    pub env: &'a dyn Fn(&str) -> Option<String>,
    pub base_dir: PathBuf,
    /// The environment this run plans: another stack's values are read from its lineage in it.
    pub environment: String,
    /// The other stacks' values used (`${stack:…}`), with the lineage commit each came from.
    pub upstreams: Vec<crate::stacks::Upstream>,
    /// Upstream stacks planned in this run (`plan --stacks`): their planned values are used.
    pub planned: &'a crate::stacks::PlannedUpstreams,
    pub secrets: crate::secrets::Secrets,
    pub warnings: Vec<SpecDiagnostic>,
}

pub(super) fn to_json(
    node: &Node,
    path: &mut Vec<String>,
    env: &mut Interpolation<'_>,
    diags: &mut Vec<SpecDiagnostic>,
) -> Value {
    match &node.value {
        NodeValue::Null => Value::Null,
        NodeValue::Bool(b) => Value::Bool(*b),
        NodeValue::Int(i) => Value::from(*i),
        NodeValue::UInt(u) => Value::from(*u),
        NodeValue::Float(f) => serde_json::Number::from_f64(*f).map(Value::Number).unwrap_or(Value::Null),
        NodeValue::Str(s) => {
            if let Some(why) = s.contains("${secret:").then(|| secret_refused_at(path)).flatten() {
                diags.push(
                    SpecDiagnostic::new("spec::secret_not_allowed", format!("`${{secret:…}}` cannot be used in `{}`", path.join(".")))
                        .label(node.span, why)
                        .help("a secret reaches a backend only as a value it stores (an environment variable, a password): give paths, names and addresses in clear, or through `${env:NAME}`"),
                );
                return Value::String(s.clone());
            }
            Value::String(interpolate(s, node.span, env, diags))
        }
        NodeValue::Seq(items) => Value::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, n)| {
                    path.push(i.to_string());
                    let v = to_json(n, path, env, diags);
                    path.pop();
                    v
                })
                .collect(),
        ),
        NodeValue::Map(entries) => {
            let mut out = Map::new();
            let mut seen: BTreeMap<String, Span> = BTreeMap::new();
            for (k, v) in entries {
                let Some(key) = k.as_key() else {
                    diags.push(
                        SpecDiagnostic::new("spec::invalid_key", "mapping keys must be plain scalars")
                            .label(k.span, "complex key")
                            .help("use a string key"),
                    );
                    continue;
                };
                if let Some(first) = seen.get(&key) {
                    let in_section = path.len() == 1 && Kind::from_section(&path[0]).is_some();
                    let d = if in_section {
                        SpecDiagnostic::new("spec::duplicate_name", format!("`{}.{key}` is declared twice", path[0]))
                            .help("names are unique within a kind: rename or remove one of them")
                    } else {
                        SpecDiagnostic::new("spec::duplicate_key", format!("`{key}` appears twice in the same mapping"))
                            .help("YAML keys must be unique: remove one of them")
                    };
                    diags.push(d.label(k.span, "declared again here").label(*first, "first declared here"));
                    continue;
                }
                seen.insert(key.clone(), k.span);
                path.push(key.clone());
                let v = to_json(v, path, env, diags);
                path.pop();
                out.insert(key, v);
            }
            Value::Object(out)
        }
    }
}

/// Where a `${secret:…}` cannot work, and why: a provider block configures mlops itself (its
/// values are used as written, and recorded), and paths, addresses and references name things
/// (a secret there would name a folder after its marker).
fn secret_refused_at(path: &[String]) -> Option<&'static str> {
    match path {
        [first, ..] if first == "providers" => Some("provider settings are used as written and recorded in plans"),
        [section, _, field, ..] if Kind::from_section(section).is_some() => {
            ["source", "artifact", "uri", "provider", "model", "trained_on", "produced_by", "image", "name"]
                .contains(&field.as_str())
                .then_some("a path, address or reference names something; a secret's marker would be used as its name")
        }
        _ => None,
    }
}

/// `${env:NAME}`, `${env:NAME:-default}`, `${secret:NAME}` and `${secret:file:PATH}`; `$${`
/// escapes a literal `${`.
fn interpolate(s: &str, span: Span, interp: &mut Interpolation<'_>, diags: &mut Vec<SpecDiagnostic>) -> String {
    if !s.contains("${") {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("${") {
        if rest[..i].ends_with('$') {
            out.push_str(&rest[..i - 1]);
            out.push_str("${");
            rest = &rest[i + 2..];
            continue;
        }
        out.push_str(&rest[..i]);
        let Some(end) = rest[i..].find('}') else {
            diags.push(
                SpecDiagnostic::new("spec::bad_interpolation", "unterminated `${`")
                    .label(span, "here")
                    .help("write `${env:NAME}`, or `$${` for a literal `${`"),
            );
            return s.to_string();
        };
        let expr = &rest[i + 2..i + end];
        rest = &rest[i + end + 1..];
        if let Some(secret) = expr.strip_prefix("secret:") {
            if let Some(marker) = resolve_secret(secret, span, interp, diags) {
                out.push_str(&marker);
            }
            continue;
        }
        if let Some(reference) = expr.strip_prefix("stack:") {
            match crate::stacks::value(&interp.base_dir, reference, &interp.environment, interp.planned) {
                Ok(up) => {
                    out.push_str(&up.value);
                    if !interp.upstreams.iter().any(|u| u.reference == up.reference) {
                        interp.upstreams.push(up);
                    }
                }
                Err(message) => diags.push(
                    SpecDiagnostic::new("spec::stack_reference", message)
                        .label(span, "here")
                        .help("write `${stack:FOLDER:KIND.NAME.FIELD}`: FOLDER is the other stack's folder from the repository root, FIELD one of its lineage record's outputs or attributes (e.g. `${stack:training:models.churn.version}`); it must have been applied in this environment"),
                ),
            }
            continue;
        }
        let Some(var) = expr.strip_prefix("env:") else {
            diags.push(
                SpecDiagnostic::new(
                    "spec::bad_interpolation",
                    format!("`${{{expr}}}` is not an interpolation mlops knows"),
                )
                .label(span, "here")
                .help("use `${env:NAME}`, `${env:NAME:-default}`, `${secret:NAME}`, `${secret:file:PATH}` or `${stack:FOLDER:KIND.NAME.FIELD}`; `$${` writes a literal `${`"),
            );
            continue;
        };
        let (name, default) = match var.split_once(":-") {
            Some((n, d)) => (n, Some(d)),
            None => (var, None),
        };
        let valid = !name.is_empty()
            && !name.starts_with(|c: char| c.is_ascii_digit())
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            diags.push(
                SpecDiagnostic::new("spec::bad_interpolation", format!("`{name}` is not an environment variable name"))
                    .label(span, "here")
                    .help("names are letters, digits and `_`, not starting with a digit"),
            );
            continue;
        }
        if crate::secrets::looks_secret(name) {
            interp.warnings.push(
                SpecDiagnostic::new(
                    "spec::secret_in_env",
                    format!("`${{env:{name}}}` looks like a secret: its value would appear in plans and lineage"),
                )
                .warning()
                .label(span, "here")
                .help(format!(
                    "write `${{secret:{name}}}`: the value then reaches the backend only, and plans show a digest"
                )),
            );
        }
        match ((interp.env)(name), default) {
            (Some(v), _) => out.push_str(&v),
            (None, Some(d)) => out.push_str(d),
            (None, None) => diags.push(
                SpecDiagnostic::new("spec::undefined_env_var", format!("environment variable `{name}` is not set"))
                    .label(span, format!("needs ${name}"))
                    .help(format!("set {name}, or give a default: `${{env:{name}:-value}}`")),
            ),
        }
    }
    out.push_str(rest);
    out
}

/// `NAME` (an environment variable) or `file:PATH` (relative to the spec): the marker for it.
fn resolve_secret(
    what: &str,
    span: Span,
    interp: &mut Interpolation<'_>,
    diags: &mut Vec<SpecDiagnostic>,
) -> Option<String> {
    let value = if let Some(path) = what.strip_prefix("file:") {
        match std::fs::read_to_string(interp.base_dir.join(path)) {
            Ok(v) => v.strip_suffix('\n').map(str::to_string).unwrap_or(v),
            Err(e) => {
                diags.push(
                    SpecDiagnostic::new("spec::undefined_secret", format!("cannot read the secret file `{path}`: {e}"))
                        .label(span, "here")
                        .help("the path is relative to the spec file; keep the file out of Git"),
                );
                return None;
            }
        }
    } else {
        let valid = !what.is_empty()
            && !what.starts_with(|c: char| c.is_ascii_digit())
            && what.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            diags.push(
                SpecDiagnostic::new("spec::bad_interpolation", format!("`{what}` is not an environment variable name"))
                    .label(span, "here")
                    .help("write `${secret:NAME}` (an environment variable) or `${secret:file:PATH}`"),
            );
            return None;
        }
        match (interp.env)(what) {
            Some(v) => v,
            None => {
                diags.push(
                    SpecDiagnostic::new("spec::undefined_secret", format!("the secret `{what}` is not set"))
                        .label(span, format!("needs ${what}"))
                        .help(format!("set the environment variable {what} (secrets have no default)")),
                );
                return None;
            }
        }
    };
    Some(interp.secrets.marker(what, value))
}
