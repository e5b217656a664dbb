//! The stacks of a repository: every `mlops.yaml` Git tracks (or would track: untracked files
//! that are not ignored count), one stack per spec and environment, and which of them a change
//! affects. Reads only; loads no provider and interpolates nothing, so it runs in any CI job
//! without the stacks' credentials or secrets.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Serialize;
use serde_json::Value;

pub mod workspace;
pub use workspace::Workspace;

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum StacksError {
    #[error("{message}")]
    #[diagnostic(code(stacks::git))]
    Git {
        message: String,
        #[help]
        help: String,
    },
    #[error("{path}: {message}")]
    #[diagnostic(code(stacks::spec), help("fix the spec (`mlops -f {path} validate` shows where)"))]
    Spec { path: String, message: String },
    #[error(transparent)]
    #[diagnostic(transparent)]
    Workspace(Box<workspace::WorkspaceError>),
}

/// One stack: a spec in one environment.
#[derive(Clone, Debug, Serialize)]
pub struct StackInfo {
    /// Stable: the spec's folder (from the repository root, `.` at the root) and the environment.
    pub id: String,
    /// The spec file, from the repository root.
    pub spec: String,
    pub project: String,
    pub environment: String,
    /// The stacks whose recorded values it uses (`${stack:…}`), by id: applied before it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub needs: Vec<String>,
    /// Its wave: 0 for a stack that needs none, else one more than the latest it needs.
    pub wave: usize,
    /// Why the change affects it (with `--changed`): the files, from the repository root; the
    /// values it uses that moved since it was applied; an upstream this change affects.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<String>,
    /// Listed only because an upstream this change affects may record new values: `apply
    /// --stacks` compares the values again when its turn comes, and skips it when none moved.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub only_upstream: bool,
    /// The other stacks' values its spec uses, as written (`FOLDER:KIND.NAME.FIELD`).
    #[serde(skip)]
    pub references: Vec<String>,
}

fn git(root: &Path, args: &[&str]) -> Result<String, StacksError> {
    let out = Command::new("git").arg("-C").arg(root).args(args).output().map_err(|e| StacksError::Git {
        message: format!("cannot run git: {e}"),
        help: "mlops stacks reads the repository with the git command: install it".into(),
    })?;
    if !out.status.success() {
        return Err(StacksError::Git {
            message: format!("git {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()),
            help: "run it inside a Git repository; `--base` names a commit, branch or tag it has".into(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The repository's root, from any folder in it.
pub fn root(from: &Path) -> Result<PathBuf, StacksError> {
    Ok(PathBuf::from(git(from, &["rev-parse", "--show-toplevel"])?.trim()))
}

/// Every stack under `root`, sorted by id: each `mlops.yaml` Git tracks or would track, in its
/// default environment and each of its `environments:`.
pub fn discover(root: &Path) -> Result<Vec<StackInfo>, StacksError> {
    Ok(scan(root, &Workspace::read(root)?)?.into_iter().map(|(s, _)| s).collect())
}

impl StackInfo {
    /// The spec's folder, as its id names it (`.` at the root).
    pub fn folder(&self) -> &str {
        self.id.strip_suffix(&self.environment).and_then(|f| f.strip_suffix(':')).unwrap_or(".")
    }
}

/// The local files and folders a spec reads, from the repository root (shared by its environments).
type Inputs = std::sync::Arc<Vec<String>>;

/// [`discover`], each stack with the local files and folders its spec reads; the specs the
/// workspace file excludes left out.
fn scan(root: &Path, workspace: &Workspace) -> Result<Vec<(StackInfo, Inputs)>, StacksError> {
    let listed = git(root, &["ls-files", "-z", "--cached", "--others", "--exclude-standard"])?;
    let specs: BTreeSet<&str> = listed
        .split('\0')
        .filter(|p| *p == "mlops.yaml" || p.ends_with("/mlops.yaml"))
        .filter(|p| !workspace.excludes(p))
        .collect();
    let mut out = Vec::new();
    let mut edges: Vec<(String, String, String)> = Vec::new();
    for spec in specs {
        let (project, environments, inputs) = read(root, spec)?;
        let inputs = std::sync::Arc::new(inputs);
        let text = std::fs::read_to_string(root.join(spec)).unwrap_or_default();
        let folder = Path::new(spec).parent().map(|p| p.to_string_lossy().into_owned()).filter(|p| !p.is_empty());
        let folder = folder.unwrap_or_else(|| ".".into());
        let used = references(&text);
        for environment in environments {
            let id = format!("{folder}:{environment}");
            for (reference, line) in &used {
                let upstream = reference.split_once(':').map_or(reference.as_str(), |(f, _)| f);
                let needed = format!("{}:{environment}", upstream.trim_matches('/'));
                edges.push((id.clone(), needed, format!("{spec}:{line}")));
            }
            let mut references: Vec<String> = used.iter().map(|(r, _)| r.clone()).collect();
            references.sort();
            references.dedup();
            let info = StackInfo {
                id,
                spec: spec.to_string(),
                project: project.clone(),
                environment,
                needs: vec![],
                wave: 0,
                reasons: vec![],
                only_upstream: false,
                references,
            };
            out.push((info, inputs.clone()));
        }
    }
    order(&mut out, &edges)?;
    Ok(out)
}

/// The other stacks' values a spec's text uses (`${stack:FOLDER:KIND.NAME.FIELD}`, as
/// `FOLDER:KIND.NAME.FIELD`), with their lines.
fn references(text: &str) -> Vec<(String, usize)> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let mut rest = line;
        while let Some(i) = rest.find("${stack:") {
            rest = &rest[i + "${stack:".len()..];
            if let Some((reference, _)) = rest.split_once('}')
                && reference.contains(':')
            {
                out.push((reference.to_string(), n + 1));
            }
        }
    }
    out
}

/// The values `stack` uses that its upstreams' lineage now holds other than what its last apply
/// recorded it used (`source.upstreams` of the plan at its lineage tip), as reasons. A stack never
/// applied, or a value that cannot be read (its upstream never applied), moves nothing here: its
/// plan says what is missing.
pub fn moved_values(root: &Path, stack: &StackInfo) -> Vec<String> {
    if stack.references.is_empty() {
        return vec![];
    }
    let applied_with = (|| {
        let lineage = crate::lineage::Lineage::open(root, &stack.project, &stack.environment).ok()?;
        let tip = lineage.tip().ok()??;
        Some(lineage.plan_at(tip).ok()??.source.upstreams)
    })();
    let Some(applied_with) = applied_with else { return vec![] };
    let mut out = Vec::new();
    for reference in &stack.references {
        let Ok(now) = value(root, reference, &stack.environment, &PlannedUpstreams::default()) else { continue };
        match applied_with.iter().find(|u| &u.reference == reference) {
            Some(then) if then.value == now.value => {}
            Some(then) => out.push(format!("uses {reference} = {}, applied with {}", now.value, then.value)),
            None => out.push(format!("uses {reference} = {}, not used when last applied", now.value)),
        }
    }
    out
}

/// Fills each stack's `needs` and `wave` from `edges` (stack id → needed id, where it is written)
/// and sorts by wave, then id; a stack needing one that does not exist, or a cycle, is an error
/// naming where the reference is written.
fn order(stacks: &mut [(StackInfo, Inputs)], edges: &[(String, String, String)]) -> Result<(), StacksError> {
    let ids: BTreeSet<String> = stacks.iter().map(|(s, _)| s.id.clone()).collect();
    for (from, to, at) in edges {
        if !ids.contains(to) {
            return Err(StacksError::Spec {
                path: at.clone(),
                message: format!("{from} uses values of {to}, which is not a stack of this repository"),
            });
        }
    }
    for (s, _) in stacks.iter_mut() {
        let mut needs: Vec<String> = edges.iter().filter(|(f, _, _)| *f == s.id).map(|(_, t, _)| t.clone()).collect();
        needs.sort();
        needs.dedup();
        s.needs = needs;
    }
    let needs: std::collections::BTreeMap<String, Vec<String>> =
        stacks.iter().map(|(s, _)| (s.id.clone(), s.needs.clone())).collect();
    let mut wave: std::collections::BTreeMap<String, usize> = std::collections::BTreeMap::new();
    // Longest path from a root, one pass per wave; more passes than stacks means a cycle.
    for _ in 0..=stacks.len() {
        let mut moved = false;
        for (id, deps) in &needs {
            let w = deps.iter().map(|d| wave.get(d).map_or(0, |w| w + 1)).max().unwrap_or(0);
            if wave.get(id) != Some(&w) {
                wave.insert(id.clone(), w);
                moved = true;
            }
        }
        if !moved {
            for (s, _) in stacks.iter_mut() {
                s.wave = wave[&s.id];
            }
            stacks.sort_by(|a, b| (a.0.wave, &a.0.id).cmp(&(b.0.wave, &b.0.id)));
            return Ok(());
        }
    }
    let (from, to, at) = edges
        .iter()
        .find(|(f, _, _)| wave.get(f).is_some_and(|w| *w >= stacks.len()))
        .or(edges.first())
        .expect("a cycle has an edge");
    Err(StacksError::Spec { path: at.clone(), message: format!("{from} and {to} use each other's values: a cycle") })
}

/// A spec's project, environments (`default` first) and the local files and folders it reads
/// (dataset sources, model artifacts), from the repository root.
fn read(root: &Path, spec: &str) -> Result<(String, Vec<String>, Vec<String>), StacksError> {
    let err = |message: String| StacksError::Spec { path: spec.to_string(), message };
    let text = std::fs::read_to_string(root.join(spec)).map_err(|e| err(format!("cannot read it: {e}")))?;
    let doc: Value = serde_saphyr::from_str(&text).map_err(|e| err(format!("not YAML: {e}")))?;
    let project = doc.get("project").and_then(Value::as_str).ok_or_else(|| err("it names no `project`".into()))?;
    let mut environments = vec!["default".to_string()];
    if let Some(envs) = doc.get("environments").and_then(Value::as_object) {
        environments.extend(envs.keys().filter(|e| *e != "default").cloned());
    }
    let folder = Path::new(spec).parent().unwrap_or(Path::new(""));
    let mut inputs = Vec::new();
    for kind in ["datasets", "models", "feature_stores", "endpoints"] {
        for body in doc.get(kind).and_then(Value::as_object).into_iter().flat_map(|m| m.values()) {
            for key in ["source", "artifact"] {
                let Some(p) = body.get(key).and_then(Value::as_str) else { continue };
                let Some(local) = mlops_provider_core::local_input(p).filter(|l| !l.contains("${")) else { continue };
                inputs.push(normalize(&folder.join(local)));
            }
        }
    }
    Ok((project.to_string(), environments, inputs))
}

/// `a/./b/../c` as `a/c`, with `/` separators.
fn normalize(path: &Path) -> String {
    let mut parts: Vec<String> = Vec::new();
    for c in path.components() {
        match c {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                parts.pop();
            }
            other => parts.push(other.as_os_str().to_string_lossy().into_owned()),
        }
    }
    parts.join("/")
}

/// The stacks a change affects: those whose spec, or a file or folder it reads or watches (the
/// workspace file's `watch`), differs between the merge base of `base` (else the workspace's
/// `defaults.base`, else `main`) and HEAD and the working tree (committed or not), each with the
/// changed files as its reasons; those using a value its upstream's lineage now holds other than
/// the one they were applied with; and, marked `only_upstream`, those using values of a stack this
/// change affects (whether those values move is known once it is applied).
pub fn changed(root: &Path, base: Option<&str>) -> Result<Vec<StackInfo>, StacksError> {
    let workspace = Workspace::read(root)?;
    let base = base.or(workspace.defaults.base.as_deref()).unwrap_or("main");
    let merge_base = git(root, &["merge-base", base, "HEAD"])?;
    let merge_base = merge_base.trim();
    let mut files: BTreeSet<String> = BTreeSet::new();
    files.extend(git(root, &["diff", "--name-only", "-z", merge_base])?.split('\0').map(str::to_string));
    files.extend(git(root, &["ls-files", "-z", "--others", "--exclude-standard"])?.split('\0').map(str::to_string));
    files.remove("");
    let mut out: Vec<StackInfo> = Vec::new();
    // In wave order: a stack's upstreams are decided before it.
    for (mut stack, inputs) in scan(root, &workspace)? {
        let folder = stack.folder();
        let reads = |f: &str| {
            f == stack.spec
                || inputs.iter().any(|i| f == i || f.strip_prefix(i.as_str()).is_some_and(|rest| rest.starts_with('/')))
                || workspace.watches(folder, f)
        };
        stack.reasons = files.iter().filter(|f| reads(f)).cloned().collect();
        stack.reasons.extend(moved_values(root, &stack));
        if stack.reasons.is_empty() {
            let affected: Vec<&String> = stack.needs.iter().filter(|n| out.iter().any(|s| &s.id == *n)).collect();
            for needed in affected {
                stack.only_upstream = true;
                stack.reasons.push(format!(
                    "uses values of {needed}, which this change affects (compared again once it is applied)"
                ));
            }
        }
        if !stack.reasons.is_empty() {
            out.push(stack);
        }
    }
    Ok(out)
}

/// A value of another stack's lineage a spec uses (`${stack:FOLDER:KIND.NAME.FIELD}`), and the
/// lineage commit it was read from.
#[derive(Clone, Debug, PartialEq, Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct Upstream {
    /// As written: `FOLDER:KIND.NAME.FIELD`.
    pub reference: String,
    /// The stack's id (`FOLDER:ENVIRONMENT`).
    pub stack: String,
    pub lineage_commit: String,
    pub value: String,
    /// Set when the value is the upstream's *planned* one (`plan --stacks`, the upstream changing
    /// it in the same run), not what its lineage records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub planned: Option<PlannedValue>,
}

/// A value taken from an upstream's plan.
#[derive(Clone, Debug, PartialEq, Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct PlannedValue {
    /// The upstream plan's digest (`sha256:…`): what this plan assumed the upstream applies.
    pub plan: String,
    /// False when the upstream's plan cannot tell it (an output its apply assigns, such as a
    /// registry version): the value is then a placeholder, and a saved plan using it is stale
    /// once the upstream is applied.
    pub known: bool,
}

/// The plans of upstream stacks made in this run (`plan --stacks`), by stack id: a dependent is
/// planned against their values where they change one it uses.
#[derive(Clone, Debug, Default)]
pub struct PlannedUpstreams(std::collections::BTreeMap<String, (std::sync::Arc<crate::plan::Plan>, String)>);

impl PlannedUpstreams {
    /// Adds `plan`, the plan of stack `id`.
    pub fn insert(&mut self, id: &str, plan: std::sync::Arc<crate::plan::Plan>) {
        let digest = plan.digest();
        self.0.insert(id.to_string(), (plan, digest));
    }

    /// The value `kind.name.field` of stack `id` will have once its planned changes apply, when
    /// they change that resource; `None` when they leave it alone (its lineage has the value).
    fn value(&self, id: &str, kind: &str, name: &str, field: &str) -> Option<Result<(String, PlannedValue), String>> {
        let (plan, digest) = self.0.get(id)?;
        let change = plan.changes.iter().find(|c| {
            c.address.kind.section() == kind && c.address.name == name && c.action != crate::plan::Action::NoOp
        })?;
        let Some(desired) = &change.desired else {
            return Some(Err(format!("{id} plans to delete `{kind}.{name}`: there will be no `{field}` to read")));
        };
        // An output of the record (assigned by the apply) is unknown until then; an attribute
        // the plan sets is what will be recorded.
        let output = change.prior.as_ref().or(change.live.as_ref()).is_some_and(|r| r.outputs.contains_key(field));
        let known = desired.get(field).filter(|_| !output).and_then(single_value);
        let planned = PlannedValue { plan: digest.clone(), known: known.is_some() };
        Some(Ok((known.unwrap_or_else(|| format!("(known after {id} applies)")), planned)))
    }
}

/// Reads `reference` (`FOLDER:KIND.NAME.FIELD`) from the lineage tip of the stack in FOLDER (from
/// the repository `from` is in), in `environment`: the record's output FIELD, else its attribute;
/// or, when that stack's plan in `planned` changes the resource, the value it plans.
pub fn value(from: &Path, reference: &str, environment: &str, planned: &PlannedUpstreams) -> Result<Upstream, String> {
    let (folder, path) = reference.split_once(':').ok_or_else(|| {
        format!("`${{stack:{reference}}}` names no folder: write `${{stack:FOLDER:KIND.NAME.FIELD}}`")
    })?;
    let mut parts = path.splitn(3, '.');
    let (Some(kind), Some(name), Some(field)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(format!("`{path}` is not KIND.NAME.FIELD (e.g. models.churn.version)"));
    };
    let root = root(from).map_err(|e| e.to_string())?;
    let folder = folder.trim_matches('/');
    let spec =
        if folder.is_empty() || folder == "." { "mlops.yaml".to_string() } else { format!("{folder}/mlops.yaml") };
    if !root.join(&spec).is_file() {
        return Err(format!("there is no stack in `{folder}`: {spec} does not exist in this repository"));
    }
    let (project, _, _) = read(&root, &spec).map_err(|e| e.to_string())?;
    let stack = format!("{folder}:{environment}");
    let lineage = crate::lineage::Lineage::open(&root, &project, environment).map_err(|e| e.to_string())?;
    let tip = lineage.tip().map_err(|e| e.to_string())?;
    if let Some(found) = planned.value(&stack, kind, name, field) {
        let (value, planned) = found?;
        let lineage_commit = tip.map(|t| t.to_string()).unwrap_or_default();
        return Ok(Upstream { reference: reference.to_string(), stack, lineage_commit, value, planned: Some(planned) });
    }
    let tip = tip.ok_or_else(|| {
        format!("{stack} (project {project}) has not been applied in environment `{environment}`: nothing is recorded to read")
    })?;
    let records = lineage.resources_at(tip).map_err(|e| e.to_string())?;
    let record = records
        .iter()
        .find(|(a, _)| a.kind.section() == kind && a.name == name)
        .map(|(_, r)| r)
        .ok_or_else(|| format!("{stack} has no `{kind}.{name}` recorded at {}", &tip.to_string()[..12]))?;
    let found = record.outputs.get(field).or_else(|| record.attributes.get(field)).ok_or_else(|| {
        format!(
            "{stack}'s `{kind}.{name}` records no `{field}` (outputs: {})",
            record.outputs.keys().cloned().collect::<Vec<_>>().join(", ")
        )
    })?;
    let value = single_value(found)
        .ok_or_else(|| format!("{stack}'s `{kind}.{name}.{field}` is not a single value: name one of its parts"))?;
    Ok(Upstream { reference: reference.to_string(), stack, lineage_commit: tip.to_string(), value, planned: None })
}

/// A value a spec can use in place of `${stack:…}`: a string as it is, a number or a boolean as
/// JSON writes it; nothing for a list, a map or null.
fn single_value(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(_) | Value::Bool(_) => Some(v.to_string()),
        _ => None,
    }
}

/// The URL of a Git remote (the repository a cluster job clones).
pub fn remote_url(root: &Path, remote: &str) -> Result<String, StacksError> {
    git(root, &["remote", "get-url", remote]).map(|u| u.trim().to_string()).map_err(|_| StacksError::Git {
        message: format!("this repository has no remote `{remote}`"),
        help: "pass --repository URL (the repository the jobs clone), or --remote NAME".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_normalized() {
        assert_eq!(normalize(Path::new("serving/./../training/data")), "training/data");
        assert_eq!(normalize(Path::new("./data/train")), "data/train");
    }
}
