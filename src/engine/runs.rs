//! Training runs in lineage: a model's `produced_by` names the run that made it
//! (`mlflow://runs/RUN_ID[/PATH]`), read at plan time by the provider whose entry's `runs` lists
//! the reference's scheme and recorded as the model's [`PRODUCED_BY`] attribute: the run, its status,
//! its parameters' digest and the datasets it logged. When the reference names a file the run
//! logged, the model's artifact must be that file: a different digest is an error at the line.

use mlops_provider_core::{Attributes, ProviderError, Value};

use super::Stack;

/// The attribute recording the run that produced a model.
pub const PRODUCED_BY: &str = "produced_by";

/// The run `body`'s `produced_by` names, checked against the model's `artifact_digest`. A
/// recorded resolution of the same reference is used again (a run does not change once finished);
/// a rollback restores the recorded one whatever the spec names now.
pub async fn resolve(
    stack: &Stack,
    body: &Value,
    pinned: Option<&Attributes>,
    restore: bool,
    artifact_digest: Option<&Value>,
) -> Result<Option<Value>, ProviderError> {
    let Some(reference) = body.get(PRODUCED_BY).and_then(Value::as_str) else { return Ok(None) };
    let recorded = pinned.and_then(|p| p.get(PRODUCED_BY));
    if let Some(r) = recorded.filter(|_| restore) {
        return Ok(Some(r.clone()));
    }
    let value = match recorded.filter(|r| r.get("reference").and_then(Value::as_str) == Some(reference)) {
        Some(r) => r.clone(),
        None => {
            let entry = stack
                .registry
                .entries()
                .find(|e| e.runs.iter().any(|s| reference.starts_with(s)))
                .ok_or_else(|| unknown_scheme(stack, reference))?;
            if !stack.configures(entry.name) {
                return Err(ProviderError::invalid(format!(
                    "reading the run `{reference}` needs the {0} provider: add `{0}: {{}}` under `providers:` \
                     (its server's address defaults to its standard environment variable)",
                    entry.name
                )));
            }
            let tracker = stack.provider(entry.name).map_err(super::unavailable)?;
            let run = tracker.training_run(reference).await?;
            if run.status != "FINISHED" {
                return Err(ProviderError::invalid(format!(
                    "run `{}` is {}: a model is produced by a finished run (its artifacts and parameters no longer change)",
                    run.run_id, run.status
                )));
            }
            let mut v = serde_json::to_value(&run).expect("a run serializes");
            v["reference"] = Value::String(reference.to_string());
            v
        }
    };
    if let Some(logged) = value.get("artifact").filter(|a| !a.is_null()) {
        check_artifact(reference, logged, artifact_digest)?;
    }
    Ok(Some(value))
}

/// The model's artifact must be the file the run logged, compared in the digest its provider
/// records (`sha256:` or `md5:`).
fn check_artifact(reference: &str, logged: &Value, artifact_digest: Option<&Value>) -> Result<(), ProviderError> {
    let ours = artifact_digest.and_then(Value::as_str).unwrap_or_default();
    let theirs = match ours.split_once(':').map(|(alg, _)| alg) {
        Some("sha256") => logged.get("sha256"),
        Some("md5") => logged.get("md5"),
        _ => {
            return Err(ProviderError::invalid(format!(
                "cannot compare the model's artifact with the file `{reference}` names: its provider records no \
                 sha256 or md5 of it (`{ours}`); name the run without a path (`mlflow://runs/RUN_ID`) to record it \
                 unchecked"
            )));
        }
    }
    .and_then(Value::as_str);
    let Some(theirs) = theirs else {
        let alg = ours.split_once(':').map(|(a, _)| a).unwrap_or_default();
        return Err(ProviderError::invalid(format!(
            "the run `{reference}` logged no {alg} of its artifact, the digest the model's provider records ({ours}): \
             log it with the run, or name the run without its artifact to record it unchecked"
        )));
    };
    if theirs != ours {
        return Err(ProviderError::invalid(format!(
            "the model's artifact ({ours}) is not the file the run logged at `{reference}` ({theirs}): deploy what \
             the run produced, or name the run that produced this artifact"
        )));
    }
    Ok(())
}

fn unknown_scheme(stack: &Stack, reference: &str) -> ProviderError {
    let schemes: Vec<&str> = stack.registry.entries().flat_map(|e| e.runs.iter().copied()).collect();
    let takes = if schemes.is_empty() { "nothing in this build".to_string() } else { schemes.join(", ") };
    ProviderError::invalid(format!(
        "no provider of this build reads the training run `{reference}`; `produced_by` takes {takes}"
    ))
}
