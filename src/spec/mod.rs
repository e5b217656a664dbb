//! Load and validate `mlops.yaml`: YAML with spans → `${env:...}` → JSON Schema → types → semantics.
//! Every problem found is reported, each pointing at its line.

pub mod diagnostic;
pub mod model;
pub mod yaml;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use mlops_provider_core::{Address, Kind, ResourceConfig, Value};
use serde_json::Map;
use sha2::{Digest, Sha256};

pub use diagnostic::{SourceFile, SpecDiagnostic};
pub use model::Spec;
use yaml::{Node, NodeValue, Span};

use crate::registry::Registry;

/// A resource as declared, with what the engine needs to plan it.
#[derive(Clone, Debug)]
pub struct Resource {
    pub config: ResourceConfig,
    /// The span of the resource's name, for diagnostics.
    pub name_span: Span,
}

/// A spec that passed validation.
#[derive(Clone, Debug)]
pub struct LoadedSpec {
    pub path: PathBuf,
    pub source: SourceFile,
    /// sha256 of the file's bytes: a saved plan is stale when it changes.
    pub digest: String,
    pub spec: Spec,
    /// The spec as JSON after interpolation, without the resource sections (each resource's body
    /// is its `config.body`): providers, project, policies, environments.
    pub json: Value,
    /// In spec order: datasets, models, feature stores, endpoints, each sorted by name.
    pub resources: Vec<Resource>,
    index: BTreeMap<Address, usize>,
    /// The `${secret:…}` values behind the markers the spec now holds.
    pub secrets: crate::secrets::Secrets,
    /// Not errors, but worth saying (e.g. a secret-looking `${env:…}`).
    pub warnings: Vec<SpecDiagnostic>,
}

impl LoadedSpec {
    /// The spec's YAML tree with spans, parsed again from its text: only a diagnostic made
    /// after loading needs it (a policy violation at its line), so it is not kept in memory.
    pub fn root(&self) -> Option<Node> {
        yaml::parse(&self.source.text).ok()
    }

    /// The directory of the spec file (`.` for a bare file name).
    pub fn base_dir(&self) -> &Path {
        match self.path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        }
    }
    pub fn resource(&self, address: &Address) -> Option<&Resource> {
        self.index.get(address).map(|i| &self.resources[*i])
    }

    /// The spec without some resources (a rollback plans those that did not exist yet as gone).
    pub fn without(&self, drop: &std::collections::BTreeSet<Address>) -> LoadedSpec {
        let resources: Vec<Resource> =
            self.resources.iter().filter(|r| !drop.contains(&r.config.address)).cloned().collect();
        let index = resources.iter().enumerate().map(|(i, r)| (r.config.address.clone(), i)).collect();
        LoadedSpec { resources, index, ..self.clone() }
    }
}

/// Loads a spec file; `display` is the name diagnostics show for it.
pub fn load_file(
    path: &Path,
    display: &str,
    env: &dyn Fn(&str) -> Option<String>,
    registry: &Registry,
) -> Result<LoadedSpec, Vec<SpecDiagnostic>> {
    let bytes = std::fs::read(path).map_err(|e| {
        let d = SpecDiagnostic::new("spec::unreadable", format!("cannot read {display}: {e}"));
        let d = if e.kind() == std::io::ErrorKind::NotFound {
            d.help("run `mlops init` to create a starter mlops.yaml, or pass `-f FILE`")
        } else {
            d
        };
        vec![d]
    })?;
    load_bytes(path, display, &bytes, env, registry)
}

pub fn load_bytes(
    path: &Path,
    display: &str,
    bytes: &[u8],
    env: &dyn Fn(&str) -> Option<String>,
    registry: &Registry,
) -> Result<LoadedSpec, Vec<SpecDiagnostic>> {
    let digest = format!("sha256:{}", hex::encode(Sha256::digest(bytes)));
    if bytes.len() > yaml::MAX_BYTES {
        return Err(vec![
            SpecDiagnostic::new(
                "spec::too_large",
                format!("{display} is {} bytes; the limit is {} bytes", bytes.len(), yaml::MAX_BYTES),
            )
            .help("split the stack into several projects"),
        ]);
    }
    let text = match std::str::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => {
            let src = SourceFile::new(display, String::from_utf8_lossy(bytes).into_owned());
            let at = e.valid_up_to();
            return Err(vec![
                SpecDiagnostic::new(
                    "spec::not_utf8",
                    format!("{display} is not UTF-8 text (invalid byte at offset {at})"),
                )
                .label(Span { offset: at, len: 1 }, "not UTF-8")
                .help("a spec is a YAML text file saved as UTF-8")
                .with_source(&src),
            ]);
        }
    };
    let source = SourceFile::new(display, text);
    let fail = |d: SpecDiagnostic| vec![d.with_source(&source)];
    if text.trim().is_empty() || text.lines().all(|l| l.trim().is_empty() || l.trim_start().starts_with('#')) {
        return Err(fail(
            SpecDiagnostic::new("spec::empty", format!("{display} is empty"))
                .help("a spec needs at least `version: 1` and `project: NAME`; `mlops init` writes a starter"),
        ));
    }
    let root = yaml::parse(text).map_err(|e| {
        let code = if e.limit { "spec::limit_exceeded" } else { "spec::syntax" };
        let mut d = SpecDiagnostic::new(code, format!("{display}: {}", e.message));
        if let Some(span) = e.span {
            d = d.label(source.widen(span), if e.limit { "limit reached here" } else { "here" });
        }
        d = d.help(if e.limit {
            "the file is nested too deeply or expands too many aliases; a spec never needs that"
        } else {
            "fix the YAML syntax at the marked place"
        });
        fail(d)
    })?;
    if !matches!(root.value, NodeValue::Map(_)) {
        return Err(fail(
            SpecDiagnostic::new("spec::not_a_mapping", "the spec must be a mapping of `version`, `project`, ...")
                .label(source.widen(root.span), "this is not a mapping")
                .help("start from `mlops init`"),
        ));
    }

    let mut diags = Vec::new();
    let base = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")).to_path_buf();
    let mut interp = Interpolation {
        env,
        secrets: crate::secrets::Secrets::new(if text.contains("${secret:") {
            crate::secrets::key(&base, env)
        } else {
            Vec::new()
        }),
        base_dir: base,
        warnings: Vec::new(),
    };
    let json = to_json(&root, &mut Vec::new(), &mut interp, &mut diags);
    if !diags.is_empty() {
        return Err(diags.into_iter().map(|d| d.with_source(&source)).collect());
    }

    schema_check(&json, &root, &source, registry, &mut diags);
    if !diags.is_empty() {
        return Err(diags.into_iter().map(|d| d.with_source(&source)).collect());
    }
    let json = match apply_environment(&json, &root, &registry.environment) {
        Ok(Some(merged)) => {
            // The merged values are checked again; their spans point at the base declarations.
            schema_check(&merged, &root, &source, registry, &mut diags);
            if !diags.is_empty() {
                return Err(diags.into_iter().map(|d| d.with_source(&source)).collect());
            }
            merged
        }
        Ok(None) => json,
        Err(d) => return Err(fail(*d)),
    };
    let spec: Spec = match serde_path_to_error::deserialize(&json) {
        Ok(s) => s,
        Err(e) => {
            let ptr: Vec<String> = e.path().iter().map(|s| s.to_string()).collect();
            let span = lookup(&root, &ptr).map(|(_, v)| v.span).unwrap_or_default();
            let inner = e.inner().to_string();
            // JSON Schema counts 1.0 as an integer; the typed spec does not: say so plainly.
            let d = if inner.starts_with("invalid type: floating point") {
                SpecDiagnostic::new("spec::type_mismatch", format!("`{}` must be a whole number", ptr.join(".")))
                    .label(source.widen(span), "a number with a fraction part")
                    .help("write it without a decimal point, e.g. `1`")
            } else {
                SpecDiagnostic::new("spec::invalid_value", inner).label(source.widen(span), "here")
            };
            return Err(fail(d));
        }
    };

    let base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let resources = semantic_check(&spec, &json, &root, &base_dir, registry, &mut diags);
    // The typed resources were checked; their bodies live on in each resource's `config`.
    let mut spec = spec;
    spec.datasets.clear();
    spec.models.clear();
    spec.feature_stores.clear();
    spec.endpoints.clear();
    drop(root);
    if !diags.is_empty() {
        return Err(diags.into_iter().map(|d| d.with_source(&source)).collect());
    }
    let index = resources.iter().enumerate().map(|(i, r)| (r.config.address.clone(), i)).collect();
    let warnings = interp.warnings.into_iter().map(|d| d.with_source(&source)).collect();
    // Each resource's body lives in its `config`: not held twice (a large spec's biggest part).
    let mut json = json;
    if let Some(top) = json.as_object_mut() {
        for kind in Kind::ALL {
            top.remove(kind.section());
        }
    }
    Ok(LoadedSpec {
        path: path.to_path_buf(),
        source,
        digest,
        spec,
        json,
        resources,
        index,
        secrets: interp.secrets,
        warnings,
    })
}

/// Deep-merges `environments.<env>` over the spec. `Ok(None)`: nothing to merge.
fn apply_environment(json: &Value, root: &Node, env: &str) -> Result<Option<Value>, Box<SpecDiagnostic>> {
    let envs = json.get("environments").and_then(Value::as_object);
    let Some(overrides) = envs.and_then(|e| e.get(env)) else {
        if env == "default" {
            return Ok(None);
        }
        let known: Vec<String> = envs.map(|e| e.keys().cloned().collect()).unwrap_or_default();
        let span = lookup(root, &["environments".into()]).and_then(|(k, _)| k.map(|k| k.span)).unwrap_or_default();
        return Err(Box::new(
            SpecDiagnostic::new("spec::unknown_environment", format!("environment `{env}` is not declared"))
                .label(span, "declared environments")
                .help(if known.is_empty() {
                    "declare it under `environments:`".to_string()
                } else {
                    format!("declared: {}", known.join(", "))
                }),
        ));
    };
    let mut merged = json.clone();
    if let Some(map) = overrides.as_object() {
        for (section, value) in map {
            if let (Some(kind), Some(names)) = (Kind::from_section(section), value.as_object()) {
                for name in names.keys() {
                    if json.pointer(&format!("/{section}/{}", name.replace('~', "~0").replace('/', "~1"))).is_none() {
                        let path = ["environments".to_string(), env.to_string(), section.clone(), name.clone()];
                        let span = lookup(root, &path).and_then(|(k, _)| k.map(|k| k.span)).unwrap_or_default();
                        return Err(Box::new(
                            SpecDiagnostic::new(
                                "spec::unknown_override",
                                format!(
                                    "environment `{env}` overrides `{}`, which is not declared",
                                    Address::new(kind, name.clone())
                                ),
                            )
                            .label(span, "not declared at the top level")
                            .help("environments override resources declared at the top level; declare it there first"),
                        ));
                    }
                }
            }
            let target =
                merged.as_object_mut().expect("the spec is a mapping").entry(section.clone()).or_insert(Value::Null);
            deep_merge(target, value);
        }
    }
    Ok(Some(merged))
}

fn deep_merge(base: &mut Value, over: &Value) {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                deep_merge(b.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
        (b, o) => *b = o.clone(),
    }
}

/// The node at a JSON-pointer-like path: `(key node, value node)`.
pub fn lookup<'a>(root: &'a Node, path: &[String]) -> Option<(Option<&'a Node>, &'a Node)> {
    let mut cur = root;
    let mut key = None;
    for seg in path {
        match &cur.value {
            NodeValue::Map(_) => {
                let (k, v) = cur.get(seg)?;
                key = Some(k);
                cur = v;
            }
            NodeValue::Seq(items) => {
                cur = items.get(seg.parse::<usize>().ok()?)?;
                key = None;
            }
            _ => return None,
        }
    }
    Some((key, cur))
}

fn pointer_segments(ptr: &str) -> Vec<String> {
    ptr.split('/').skip(1).map(|s| s.replace("~1", "/").replace("~0", "~")).collect()
}

/// YAML nodes → JSON, interpolating `${env:VAR}` and reporting duplicate or complex keys.
/// What interpolation reads and collects: the environment, the secrets it resolves, and
/// warnings (not errors) about what it saw.
pub struct Interpolation<'a> {
    pub env: &'a dyn Fn(&str) -> Option<String>,
    pub base_dir: PathBuf,
    pub secrets: crate::secrets::Secrets,
    pub warnings: Vec<SpecDiagnostic>,
}

fn to_json(node: &Node, path: &mut Vec<String>, env: &mut Interpolation<'_>, diags: &mut Vec<SpecDiagnostic>) -> Value {
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
            ["source", "artifact", "uri", "provider", "model", "trained_on", "image", "name"]
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
        let Some(var) = expr.strip_prefix("env:") else {
            diags.push(
                SpecDiagnostic::new(
                    "spec::bad_interpolation",
                    format!("`${{{expr}}}` is not an interpolation mlops knows"),
                )
                .label(span, "here")
                .help("use `${env:NAME}`, `${env:NAME:-default}`, `${secret:NAME}` or `${secret:file:PATH}`; `$${` writes a literal `${`"),
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

fn schema_check(json: &Value, root: &Node, source: &SourceFile, registry: &Registry, diags: &mut Vec<SpecDiagnostic>) {
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

/// Rules the schema cannot express: references, cycles, providers, provider-specific names.
fn semantic_check(
    spec: &Spec,
    json: &Value,
    root: &Node,
    base_dir: &Path,
    registry: &Registry,
    diags: &mut Vec<SpecDiagnostic>,
) -> Vec<Resource> {
    let configured: BTreeSet<String> =
        json.get("providers").and_then(Value::as_object).map(|m| m.keys().cloned().collect()).unwrap_or_default();
    let declared: BTreeSet<Address> = Kind::ALL
        .into_iter()
        .flat_map(|k| {
            json.get(k.section())
                .and_then(Value::as_object)
                .into_iter()
                .flat_map(move |m| m.keys().map(move |n| Address::new(k, n.clone())))
        })
        .collect();
    let declared_strings: Vec<String> = declared.iter().map(|a| a.to_string()).collect();

    // Each resource's YAML node, found once (sections can hold thousands of entries).
    let mut nodes: BTreeMap<Address, (Span, &Node)> = BTreeMap::new();
    for kind in Kind::ALL {
        if let Some((_, NodeValue::Map(entries))) = root.get(kind.section()).map(|(k, v)| (k, &v.value)) {
            for (k, v) in entries {
                if let Some(name) = k.as_key() {
                    nodes.entry(Address::new(kind, name)).or_insert((k.span, v));
                }
            }
        }
    }
    let empty = Node { span: Span::default(), value: NodeValue::Null };

    // Resources, with their references.
    let mut resources = Vec::new();
    let mut edges: BTreeMap<Address, Vec<(Address, Span)>> = BTreeMap::new();
    for kind in Kind::ALL {
        let Some(section) = json.get(kind.section()).and_then(Value::as_object) else { continue };
        for (name, body) in section {
            let address = Address::new(kind, name.clone());
            let (name_span, node) = nodes.get(&address).copied().unwrap_or((Span::default(), &empty));
            let mut deps = Vec::new();
            let mut refs: Vec<(Vec<String>, String, Option<Kind>)> = Vec::new();
            let field_ref = |field: &str| body.get(field).and_then(Value::as_str).map(str::to_string);
            match kind {
                Kind::Model => {
                    for (i, r) in body.get("trained_on").and_then(Value::as_array).into_iter().flatten().enumerate() {
                        if let Some(r) = r.as_str() {
                            refs.push((vec!["trained_on".into(), i.to_string()], r.into(), Some(Kind::Dataset)));
                        }
                    }
                }
                Kind::Endpoint => {
                    if let Some(m) = field_ref("model") {
                        refs.push((vec!["model".into()], m, Some(Kind::Model)));
                    }
                    for (i, v) in body.get("variants").and_then(Value::as_array).into_iter().flatten().enumerate() {
                        if let Some(m) = v.get("model").and_then(Value::as_str) {
                            refs.push((
                                vec!["variants".into(), i.to_string(), "model".into()],
                                m.into(),
                                Some(Kind::Model),
                            ));
                        }
                    }
                }
                _ => {}
            }
            for (i, r) in body.get("depends_on").and_then(Value::as_array).into_iter().flatten().enumerate() {
                if let Some(r) = r.as_str() {
                    refs.push((vec!["depends_on".into(), i.to_string()], r.into(), None));
                }
            }
            for (rel, text, want) in refs {
                let span = lookup(node, &rel).map(|(_, v)| v.span).unwrap_or(name_span);
                match text.parse::<Address>() {
                    Err(e) => diags.push(
                        SpecDiagnostic::new("spec::invalid_reference", e.to_string())
                            .label(span, "not a reference")
                            .help("references are written `kind.name`, e.g. `datasets.churn-train`"),
                    ),
                    Ok(target) if want.is_some_and(|w| w != target.kind) => diags.push(
                        SpecDiagnostic::new(
                            "spec::invalid_reference",
                            format!("`{text}` is a {} reference; {} expects {}", target.kind, rel[0], want.unwrap()),
                        )
                        .label(span, format!("expected {}.NAME", want.unwrap()))
                        .help(format!("point it at one of the declared {}", want.unwrap())),
                    ),
                    Ok(target) if !declared.contains(&target) => {
                        let mut d = SpecDiagnostic::new(
                            "spec::unknown_reference",
                            format!("`{text}` is not declared in this spec"),
                        )
                        .label(span, "unknown reference");
                        d = match closest(&text, &declared_strings) {
                            Some(s) => d.help(format!("did you mean `{s}`?")),
                            None => d.help(format!("declare `{}` under `{}:`", target.name, target.kind)),
                        };
                        diags.push(d);
                    }
                    Ok(target) if target == address => diags.push(
                        SpecDiagnostic::new("spec::cycle", format!("`{address}` depends on itself"))
                            .label(span, "self reference")
                            .help("remove the reference"),
                    ),
                    Ok(target) => {
                        if !deps.contains(&target) {
                            deps.push(target.clone());
                        }
                        edges.entry(address.clone()).or_default().push((target, span));
                    }
                }
            }
            resources.push((address, body.clone(), deps, name_span, node));
        }
    }

    // Cycles: report each once, with every edge on it labelled.
    for cycle in find_cycles(&declared, &edges) {
        let names: Vec<String> = cycle.iter().map(|(a, _)| a.to_string()).collect();
        let mut d =
            SpecDiagnostic::new("spec::cycle", format!("dependency cycle: {} → {}", names.join(" → "), names[0]))
                .help("break the cycle by removing one of these references");
        for (a, span) in &cycle {
            d = d.label(*span, format!("{a} depends on the next"));
        }
        diags.push(d);
    }

    // Providers.
    let provider_of = |addr: &Address, body: &Value, models: &BTreeMap<String, String>| -> Result<String, String> {
        if let Some(p) = body.get("provider").and_then(Value::as_str) {
            return Ok(p.to_string());
        }
        if let Some(p) = registry.claimant(addr.kind, body) {
            return Ok(p.into());
        }
        if addr.kind == Kind::Endpoint {
            if let Some(m) = body.get("model").and_then(Value::as_str).and_then(|m| m.parse::<Address>().ok()) {
                if let Some(p) = models.get(&m.name) {
                    return Ok(p.clone());
                }
            }
        }
        if configured.is_empty() || configured.contains("local") {
            return Ok("local".into());
        }
        if configured.len() == 1 {
            return Ok(configured.iter().next().cloned().unwrap_or_default());
        }
        Err(format!(
            "several providers are configured ({}) and `{addr}` names none",
            configured.iter().cloned().collect::<Vec<_>>().join(", ")
        ))
    };
    let mut model_providers = BTreeMap::new();
    let mut out = Vec::new();
    let mut instances = BTreeMap::new();
    for (address, body, deps, name_span, node) in resources {
        let provider = match provider_of(&address, &body, &model_providers) {
            Ok(p) => p,
            Err(msg) => {
                diags.push(
                    SpecDiagnostic::new("spec::ambiguous_provider", msg)
                        .label(name_span, "which provider?")
                        .help("add `provider: NAME` to the resource"),
                );
                continue;
            }
        };
        if address.kind == Kind::Model {
            model_providers.insert(address.name.clone(), provider.clone());
        }
        let provider_span = lookup(node, &["provider".into()]).map(|(_, v)| v.span).unwrap_or(name_span);
        let explicit = !configured.is_empty() || provider != "local";
        if explicit && !configured.contains(&provider) {
            diags.push(
                SpecDiagnostic::new(
                    "spec::provider_not_configured",
                    format!("`{address}` uses provider `{provider}`, which is not configured"),
                )
                .label(provider_span, format!("`{provider}` is not under `providers:`"))
                .help(format!("add a `{provider}:` block under `providers:`")),
            );
            continue;
        }
        let config = ResourceConfig {
            address: address.clone(),
            provider: provider.clone(),
            body: body.clone(),
            dependencies: deps,
            base_dir: base_dir.to_path_buf(),
        };
        if !instances.contains_key(&provider) {
            let block = json.pointer(&format!("/providers/{provider}")).cloned().unwrap_or(Value::Null);
            instances.insert(provider.clone(), registry.instantiate(&provider, &block, base_dir, &spec.project));
        }
        match &instances[&provider] {
            Err(e) => {
                // A block the provider refuses is marked at its value; a missing provider at the
                // resource that asks for it.
                let at = e.path.as_ref().map(|p| {
                    let mut at = vec!["providers".to_string(), provider.clone()];
                    at.extend(p.0.iter().cloned());
                    at
                });
                let d = match at.as_deref().and_then(|at| lookup(root, at)) {
                    Some((_, v)) => {
                        SpecDiagnostic::new("spec::invalid_value", format!("provider `{provider}`: {}", e.message))
                            .label(v.span, "here")
                    }
                    None => SpecDiagnostic::new("spec::provider_unavailable", format!("`{address}`: {}", e.message))
                        .label(provider_span, format!("provider `{provider}`"))
                        .help(format!("available in this build: {}", registry.names().join(", "))),
                };
                if !diags.iter().any(|x| x.message == d.message) {
                    diags.push(d);
                }
            }
            Ok(instance) if instance.resource(address.kind).is_none() => diags.push(
                SpecDiagnostic::new(
                    "spec::kind_not_served",
                    format!("the {provider} provider does not serve {}; `{address}` cannot be on it", address.kind),
                )
                .label(provider_span, format!("provider `{provider}`"))
                .help(format!("put it on a provider that serves {}", address.kind)),
            ),
            Ok(instance) => {
                // A setting another provider owns would be ignored by this one: refused at its line.
                let mut foreign = BTreeSet::new();
                for key in body.as_object().into_iter().flat_map(|m| m.keys()) {
                    let owners = registry.setting_owners(address.kind, key);
                    if !owners.is_empty() && !owners.contains(&provider.as_str()) {
                        let span =
                            lookup(node, std::slice::from_ref(key)).map(|(k, _)| k.map_or(name_span, |k| k.span));
                        diags.push(
                            SpecDiagnostic::new(
                                "spec::unsupported_value",
                                format!(
                                    "`{key}` is a setting of the {} provider; `{address}` is on `{provider}`, which would ignore it",
                                    owners.join(" and ")
                                ),
                            )
                            .label(span.unwrap_or(name_span), "not a setting of this provider")
                            .help(format!("remove it, or put this resource on `{}`", owners[0])),
                        );
                        foreign.insert(key.clone());
                    }
                }
                // An artifact another provider resolves at plan time (`models:/…`): that provider
                // must be configured; the serving provider checks the resolved URI then, not now.
                let reference = config.str("artifact").and_then(|a| {
                    registry.entries().find(|e| e.references.iter().any(|s| a.starts_with(s))).map(|e| e.name)
                });
                if let Some(resolver) = reference.filter(|r| !configured.contains(*r)) {
                    let span = lookup(node, &["artifact".into()]).map(|(_, v)| v.span).unwrap_or(name_span);
                    diags.push(
                        SpecDiagnostic::new(
                            "spec::provider_not_configured",
                            format!(
                                "`{address}`'s artifact is resolved by the {resolver} provider, which is not configured"
                            ),
                        )
                        .label(span, format!("resolved by `{resolver}`"))
                        .help(format!("add a `{resolver}:` block under `providers:`")),
                    );
                }
                if reference.is_some() {
                    foreign.insert("artifact".to_string());
                }
                let kind_checks = instance.resource(address.kind).map(|t| t.check(&config)).unwrap_or_default();
                for cd in instance
                    .check(&config)
                    .into_iter()
                    .chain(kind_checks)
                    .filter(|cd| !cd.path.0.first().is_some_and(|k| foreign.contains(k)))
                {
                    let span = if cd.path.0.is_empty() {
                        name_span
                    } else {
                        lookup(node, &cd.path.0).map(|(_, v)| v.span).unwrap_or(name_span)
                    };
                    // The provider's own code, kept (`spec::…` for the shared ones, `NAME::…` for its own).
                    let mut d = SpecDiagnostic::new(cd.code, cd.message).label(span, "here");
                    if let Some(h) = cd.help {
                        d = d.help(h);
                    }
                    diags.push(d);
                }
            }
        }
        if address.kind == Kind::FeatureStore {
            let features = body.get("features").and_then(Value::as_object);
            for key in ["record_identifier", "event_time"] {
                if let Some(f) = body.get(key).and_then(Value::as_str) {
                    if !features.is_some_and(|m| m.contains_key(f)) {
                        let span = lookup(node, &[key.into()]).map(|(_, v)| v.span).unwrap_or(name_span);
                        diags.push(
                            SpecDiagnostic::new(
                                "spec::feature_not_declared",
                                format!("`{key}` names `{f}`, which is not among the features"),
                            )
                            .label(span, "not a declared feature")
                            .help(format!("add `{f}` under `features:`")),
                        );
                    }
                }
            }
        }
        out.push(Resource { config, name_span });
    }
    out
}

/// Elementary cycles, found by DFS; each reported once (rotated to start at its smallest node).
fn find_cycles(
    nodes: &BTreeSet<Address>,
    edges: &BTreeMap<Address, Vec<(Address, Span)>>,
) -> Vec<Vec<(Address, Span)>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Active,
        Done,
    }
    let mut mark: BTreeMap<&Address, Mark> = nodes.iter().map(|n| (n, Mark::New)).collect();
    let mut found: Vec<Vec<(Address, Span)>> = Vec::new();
    let mut seen = BTreeSet::new();
    for start in nodes {
        if mark[start] != Mark::New {
            continue;
        }
        // Iterative DFS: (node, next edge index), and the edge spans along the stack.
        let mut stack: Vec<(&Address, usize)> = vec![(start, 0)];
        let mut via: Vec<Span> = Vec::new();
        mark.insert(start, Mark::Active);
        while let Some((node, i)) = stack.last().cloned() {
            let out = edges.get(node).map(Vec::as_slice).unwrap_or(&[]);
            if i >= out.len() {
                mark.insert(node, Mark::Done);
                stack.pop();
                via.pop();
                continue;
            }
            stack.last_mut().unwrap().1 += 1;
            let (next, span) = &out[i];
            match mark.get(next).copied() {
                Some(Mark::New) => {
                    mark.insert(next, Mark::Active);
                    stack.push((next, 0));
                    via.push(*span);
                }
                Some(Mark::Active) => {
                    let pos = stack.iter().position(|(n, _)| *n == next).unwrap_or(0);
                    let mut cycle: Vec<(Address, Span)> = Vec::new();
                    for (j, (n, _)) in stack[pos..].iter().enumerate() {
                        let span = if pos + j + 1 < stack.len() { via[pos + j] } else { *span };
                        cycle.push(((*n).clone(), span));
                    }
                    let key: BTreeSet<Address> = cycle.iter().map(|(a, _)| a.clone()).collect();
                    if seen.insert(key) {
                        let min =
                            cycle.iter().enumerate().min_by_key(|(_, (a, _))| a.clone()).map(|(i, _)| i).unwrap_or(0);
                        cycle.rotate_left(min);
                        found.push(cycle);
                    }
                }
                _ => {}
            }
        }
    }
    found
}
