//! Load and validate `mlops.yaml`: YAML with spans → `${env:...}` → JSON Schema → types → semantics.
//! Every problem found is reported, each pointing at its line.

pub mod diagnostic;
mod interpolate;
pub mod model;
mod schema_check;
mod semantic;
pub mod yaml;

pub use interpolate::Interpolation;
use interpolate::to_json;
pub use schema_check::closest;
use schema_check::schema_check;
use semantic::semantic_check;

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
    /// Other stacks' recorded values the spec uses (`${stack:…}`), each with its lineage commit.
    pub upstreams: Vec<crate::stacks::Upstream>,
    /// Not errors, but worth saying (e.g. a secret-looking `${env:…}`).
    pub warnings: Vec<SpecDiagnostic>,
    /// The providers validation built from their blocks, for the stack to use: built once a run.
    pub providers: Providers,
}

/// Providers built from the spec's blocks for one environment, by name.
#[derive(Clone, Default)]
pub struct Providers {
    pub environment: String,
    pub built: BTreeMap<String, std::sync::Arc<dyn mlops_provider_core::Provider>>,
}

impl std::fmt::Debug for Providers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Providers").field("environment", &self.environment).field("built", &self.built.keys()).finish()
    }
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
    planned: &crate::stacks::PlannedUpstreams,
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
    load_bytes(path, display, &bytes, env, registry, planned)
}

pub fn load_bytes(
    path: &Path,
    display: &str,
    bytes: &[u8],
    env: &dyn Fn(&str) -> Option<String>,
    registry: &Registry,
    planned: &crate::stacks::PlannedUpstreams,
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
        environment: registry.environment.clone(),
        upstreams: Vec::new(),
        planned,
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
    let (resources, providers) = semantic_check(&spec, &json, &root, &base_dir, registry, &mut diags);
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
        upstreams: interp.upstreams,
        warnings,
        providers,
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
