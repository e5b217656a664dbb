//! The team's own policies, in Rego (evaluated by regorus, Microsoft's pure-Rust interpreter), with
//! conftest's conventions: `deny`, `violation` and `warn` rules in package `main` (or the packages
//! the spec names), each a set of messages (a string, or an object with `msg`); `input` is the plan
//! JSON (schemas/plan.schema.json) and `data.mlops.state` the lineage state it was planned against
//! (the record of each resource, by address).

use std::path::{Path, PathBuf};

use serde_json::Value;

/// What one rule said.
#[derive(Clone, Debug, PartialEq)]
pub struct Finding {
    /// `PACKAGE.RULE`, e.g. `main.deny`.
    pub rule: String,
    pub message: String,
    /// A `warn` rule: reported, never blocking.
    pub warn: bool,
}

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum RegoError {
    #[error("cannot read the policy {path}: {message}")]
    #[diagnostic(code(policy::rego_file), help("`policies.rego` names .rego files or folders, relative to the spec"))]
    Read { path: String, message: String },
    #[error("the policy {path} is not valid Rego: {message}")]
    #[diagnostic(
        code(policy::rego_syntax),
        help("policies are Rego v1 (`import rego.v1`, `deny contains msg if {{ … }}`)")
    )]
    Parse { path: String, message: String },
    #[error("evaluating {rule} failed: {message}")]
    #[diagnostic(code(policy::rego_eval), help("the rule reads `input` (the plan JSON) and `data.mlops.state`"))]
    Eval { rule: String, message: String },
}

/// The `.rego` files under `paths` (files as named; folders recursively, sorted, without conftest's
/// `_test.rego` unit tests), relative to `base`.
pub fn files(base: &Path, paths: &[String]) -> Result<Vec<PathBuf>, RegoError> {
    let mut out = Vec::new();
    for p in paths {
        let path = base.join(p);
        let meta = std::fs::metadata(&path)
            .map_err(|e| RegoError::Read { path: path.display().to_string(), message: e.to_string() })?;
        if meta.is_dir() {
            collect(&path, &mut out)?;
        } else {
            out.push(path);
        }
    }
    Ok(out)
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), RegoError> {
    let read = std::fs::read_dir(dir)
        .map_err(|e| RegoError::Read { path: dir.display().to_string(), message: e.to_string() })?;
    let mut entries: Vec<PathBuf> = read.flatten().map(|e| e.path()).collect();
    entries.sort();
    for path in entries {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if path.is_dir() {
            collect(&path, out)?;
        } else if name.ends_with(".rego") && !name.ends_with("_test.rego") {
            out.push(path);
        }
    }
    Ok(())
}

/// Evaluates the policies in `files` over `input` (the plan JSON) with `state` as
/// `data.mlops.state`: every message of the `deny`, `violation` and `warn` rules of `packages`.
pub fn evaluate(files: &[PathBuf], packages: &[String], input: &str, state: Value) -> Result<Vec<Finding>, RegoError> {
    let mut engine = regorus::Engine::new();
    for f in files {
        let path = f.display().to_string();
        let text =
            std::fs::read_to_string(f).map_err(|e| RegoError::Read { path: path.clone(), message: e.to_string() })?;
        engine.add_policy(path.clone(), text).map_err(|e| RegoError::Parse { path, message: e.to_string() })?;
    }
    let eval = |message: String| RegoError::Eval { rule: "input".into(), message };
    engine.set_input(regorus::Value::from_json_str(input).map_err(|e| eval(e.to_string()))?);
    let data = serde_json::json!({ "mlops": { "state": state } }).to_string();
    engine
        .add_data(regorus::Value::from_json_str(&data).map_err(|e| eval(e.to_string()))?)
        .map_err(|e| eval(e.to_string()))?;
    let mut out = Vec::new();
    for package in packages {
        for rule in ["deny", "violation", "warn"] {
            let name = format!("{package}.{rule}");
            let results = engine
                .eval_query(format!("data.{package}.{rule}"), false)
                .map_err(|e| RegoError::Eval { rule: name.clone(), message: e.to_string() })?;
            for r in results.result {
                for e in r.expressions {
                    let json = e
                        .value
                        .to_json_str()
                        .map_err(|e| RegoError::Eval { rule: name.clone(), message: e.to_string() })?;
                    let value: Value = serde_json::from_str(&json).unwrap_or(Value::Null);
                    for message in messages(&value) {
                        out.push(Finding { rule: name.clone(), message, warn: rule == "warn" });
                    }
                }
            }
        }
    }
    Ok(out)
}

/// The value of `query` in the one policy `text` over `input`: each element of the set (an array
/// in JSON) it evaluates to. For the libraries bundled with mlops.
pub fn evaluate_library(name: &str, text: &str, query: &str, input: &str) -> Result<Vec<Value>, RegoError> {
    let mut engine = regorus::Engine::new();
    engine
        .add_policy(name.to_string(), text.to_string())
        .map_err(|e| RegoError::Parse { path: name.to_string(), message: e.to_string() })?;
    let eval = |message: String| RegoError::Eval { rule: query.to_string(), message };
    engine.set_input(regorus::Value::from_json_str(input).map_err(|e| eval(e.to_string()))?);
    let results = engine.eval_query(query.to_string(), false).map_err(|e| eval(e.to_string()))?;
    let mut out = Vec::new();
    for r in results.result {
        for e in r.expressions {
            let json = e.value.to_json_str().map_err(|e| eval(e.to_string()))?;
            match serde_json::from_str(&json).unwrap_or(Value::Null) {
                Value::Array(items) => out.extend(items),
                Value::Null => {}
                other => out.push(other),
            }
        }
    }
    Ok(out)
}

/// A rule's messages: a set (an array in JSON) of strings or of objects with `msg`, or one of them.
fn messages(v: &Value) -> Vec<String> {
    match v {
        Value::Array(items) => items.iter().flat_map(messages).collect(),
        Value::String(s) => vec![s.clone()],
        Value::Object(o) => match o.get("msg") {
            Some(Value::String(s)) => vec![s.clone()],
            _ => vec![v.to_string()],
        },
        Value::Bool(true) => vec!["denied".into()],
        _ => vec![],
    }
}
