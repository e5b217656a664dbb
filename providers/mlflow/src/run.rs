//! Training runs: a model's `produced_by: mlflow://runs/RUN_ID[/PATH]` names an MLflow run (and,
//! with a path, the file it logged that the model's artifact must be). Read at plan time through
//! `runs/get`, the file through the server's `get-artifact`, which serves any artifact store the
//! server reads.

use md5::Md5;
use mlops_provider_core::{ProviderError, RunArtifact, TrainingRun, Value};
use reqwest::Method;
use sha2::{Digest, Sha256};

use crate::client::Client;

/// The scheme of a run reference.
pub(crate) const SCHEME: &str = "mlflow://runs/";

pub(crate) async fn training_run(client: &Client, reference: &str) -> Result<TrainingRun, ProviderError> {
    let rest = reference.strip_prefix(SCHEME).unwrap_or_default();
    let (run_id, path) = match rest.split_once('/') {
        Some((id, path)) => (id, Some(path.trim_matches('/')).filter(|p| !p.is_empty())),
        None => (rest, None),
    };
    if run_id.is_empty() || !run_id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        return Err(ProviderError::invalid(format!(
            "`{reference}` does not name a run: write `mlflow://runs/RUN_ID` or `mlflow://runs/RUN_ID/PATH` (a file the run logged)"
        )));
    }
    let got = client
        .call(Method::GET, "runs/get", &[("run_id", run_id)], None)
        .await?
        .ok_or_else(|| ProviderError::invalid(format!("MLflow at {} has no run `{run_id}`", client.base())))?;
    let run = &got["run"];
    let info = &run["info"];
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    if info["lifecycle_stage"] == "deleted" {
        return Err(ProviderError::invalid(format!("MLflow run `{run_id}` is deleted")));
    }
    let mut params: Vec<String> = run["data"]["params"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| format!("{}={}", text(&p["key"]), text(&p["value"])))
        .collect();
    params.sort();
    let params_digest = format!("sha256:{}", hex::encode(Sha256::digest(params.join("\n").as_bytes())));
    let inputs = run["inputs"]["dataset_inputs"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|i| {
            let d = &i["dataset"];
            // MLflow keeps a dataset's source as JSON text (`{"uri": "s3://…"}`).
            let source: Value = serde_json::from_str(d["source"].as_str().unwrap_or("null")).unwrap_or(Value::Null);
            serde_json::json!({
                "name": d["name"],
                "digest": d["digest"],
                "source": source.get("uri").cloned().unwrap_or(source),
            })
        })
        .collect();
    let artifact = match path {
        Some(path) => Some(artifact(client, run_id, path).await?),
        None => None,
    };
    Ok(TrainingRun {
        run_id: run_id.to_string(),
        name: info["run_name"].as_str().map(str::to_string),
        status: text(&info["status"]),
        link: format!("{}/#/experiments/{}/runs/{run_id}", client.base(), text(&info["experiment_id"])),
        params_digest,
        inputs,
        artifact,
    })
}

/// The file `path` the run logged, downloaded and digested.
async fn artifact(client: &Client, run_id: &str, path: &str) -> Result<RunArtifact, ProviderError> {
    let parent = path.rsplit_once('/').map(|(p, _)| p).unwrap_or("");
    let mut query = vec![("run_id", run_id)];
    if !parent.is_empty() {
        query.push(("path", parent));
    }
    let listed = client.call(Method::GET, "artifacts/list", &query, None).await?.unwrap_or_default();
    let entry = listed["files"].as_array().into_iter().flatten().find(|f| f["path"] == path);
    match entry {
        None => {
            return Err(ProviderError::invalid(format!(
                "MLflow run `{run_id}` logged no artifact `{path}` (`mlflow.log_artifact` puts a file at its name)"
            )));
        }
        Some(f) if f["is_dir"] == true => {
            return Err(ProviderError::invalid(format!(
                "`{path}` of run `{run_id}` is a folder: name the file the model's artifact is (`mlflow://runs/{run_id}/{path}/FILE`)"
            )));
        }
        Some(_) => {}
    }
    let bytes = client.download(run_id, path).await?;
    Ok(RunArtifact {
        path: path.to_string(),
        size: Some(bytes.len() as u64),
        sha256: Some(format!("sha256:{}", hex::encode(Sha256::digest(&bytes)))),
        md5: Some(format!("md5:{}", hex::encode(Md5::digest(&bytes)))),
    })
}
