//! The stacks of a repository: every `mlops.yaml` Git tracks (or would track: untracked files
//! that are not ignored count), one stack per spec and environment, and which of them a change
//! affects. Reads only; loads no provider and interpolates nothing, so it runs in any CI job
//! without the stacks' credentials or secrets.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Serialize;
use serde_json::Value;

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
    /// Why the change affects it (with `--changed`): the files, from the repository root.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<String>,
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
    Ok(scan(root)?.into_iter().map(|(s, _)| s).collect())
}

/// The local files and folders a spec reads, from the repository root (shared by its environments).
type Inputs = std::sync::Arc<Vec<String>>;

/// [`discover`], each stack with the local files and folders its spec reads.
fn scan(root: &Path) -> Result<Vec<(StackInfo, Inputs)>, StacksError> {
    let listed = git(root, &["ls-files", "-z", "--cached", "--others", "--exclude-standard"])?;
    let specs: BTreeSet<&str> =
        listed.split('\0').filter(|p| *p == "mlops.yaml" || p.ends_with("/mlops.yaml")).collect();
    let mut out = Vec::new();
    for spec in specs {
        let (project, environments, inputs) = read(root, spec)?;
        let inputs = std::sync::Arc::new(inputs);
        let folder = Path::new(spec).parent().map(|p| p.to_string_lossy().into_owned()).filter(|p| !p.is_empty());
        let folder = folder.unwrap_or_else(|| ".".into());
        for environment in environments {
            let info = StackInfo {
                id: format!("{folder}:{environment}"),
                spec: spec.to_string(),
                project: project.clone(),
                environment,
                reasons: vec![],
            };
            out.push((info, inputs.clone()));
        }
    }
    out.sort_by(|a, b| a.0.id.cmp(&b.0.id));
    Ok(out)
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
                let local = match p.strip_prefix("file://") {
                    Some(rest) => rest,
                    None if p.contains("://") || p.contains("${") => continue,
                    None => p,
                };
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

/// The stacks a change affects: those whose spec, or a file or folder it reads, differs between
/// the merge base of `base` and HEAD and the working tree (committed or not), each with the
/// changed files as its reasons.
pub fn changed(root: &Path, base: &str) -> Result<Vec<StackInfo>, StacksError> {
    let merge_base = git(root, &["merge-base", base, "HEAD"])?;
    let merge_base = merge_base.trim();
    let mut files: BTreeSet<String> = BTreeSet::new();
    files.extend(git(root, &["diff", "--name-only", "-z", merge_base])?.split('\0').map(str::to_string));
    files.extend(git(root, &["ls-files", "-z", "--others", "--exclude-standard"])?.split('\0').map(str::to_string));
    files.remove("");
    let mut out = Vec::new();
    for (mut stack, inputs) in scan(root)? {
        let reads = |f: &str| {
            f == stack.spec
                || inputs.iter().any(|i| f == i || f.strip_prefix(i.as_str()).is_some_and(|rest| rest.starts_with('/')))
        };
        stack.reasons = files.iter().filter(|f| reads(f)).cloned().collect();
        if !stack.reasons.is_empty() {
            out.push(stack);
        }
    }
    Ok(out)
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
