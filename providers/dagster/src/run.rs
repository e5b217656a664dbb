//! `dagster://ASSET/KEY`: the run behind the asset's latest materialization, read through two
//! GraphQL queries (the asset's materializations, then the run).

use mlops_provider_core::{ProviderError, RunArtifact, TrainingRun, Value};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::DagsterProvider;

/// The scheme of a run reference.
pub(crate) const SCHEME: &str = "dagster://";

const LATEST: &str = "query Latest($key: AssetKeyInput!) {
  assetOrError(assetKey: $key) {
    __typename
    ... on Asset {
      assetMaterializations(limit: 1) {
        runId
        tags { key value }
        metadataEntries {
          label
          ... on TextMetadataEntry { text }
          ... on PathMetadataEntry { path }
          ... on UrlMetadataEntry { url }
        }
      }
    }
    ... on AssetNotFoundError { message }
  }
}";

const RUN: &str = "query Run($id: ID!) {
  runOrError(runId: $id) {
    __typename
    ... on Run { runId status jobName runConfigYaml }
    ... on RunNotFoundError { message }
    ... on PythonError { message }
  }
}";

/// The tag prefix Dagster writes on a materialization for each input's data version.
const INPUT_VERSION: &str = "dagster/input_data_version/";

pub(crate) async fn training_run(dagster: &DagsterProvider, reference: &str) -> Result<TrainingRun, ProviderError> {
    let key = reference.strip_prefix(SCHEME).unwrap_or_default().trim_matches('/');
    let path: Vec<&str> = key.split('/').collect();
    if key.is_empty() || path.iter().any(|p| p.is_empty()) {
        return Err(ProviderError::invalid(format!(
            "`{reference}` does not name an asset: write `dagster://KEY` or `dagster://PREFIX/KEY` (its asset key, `/` between parts)"
        )));
    }
    let found = dagster.query(LATEST, json!({ "key": { "path": path } })).await?;
    let asset = &found["assetOrError"];
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    let latest = asset["assetMaterializations"].as_array().and_then(|m| m.first()).ok_or_else(|| {
        let why = asset["message"].as_str().map(|m| format!(": {m}")).unwrap_or_default();
        ProviderError::invalid(format!(
            "Dagster at {} has no materialization of asset `{key}`{why}; materialize it, then plan again",
            dagster.url
        ))
    })?;
    let run_id = text(&latest["runId"]);
    let got = dagster.query(RUN, json!({ "id": run_id })).await?;
    let run = &got["runOrError"];
    if run["__typename"] != "Run" {
        return Err(ProviderError::invalid(format!(
            "Dagster at {} cannot give run `{run_id}` of asset `{key}`: {}",
            dagster.url,
            text(&run["message"])
        )));
    }
    // A finished run, in the words the engine checks (Dagster says SUCCESS).
    let status = match run["status"].as_str().unwrap_or_default() {
        "SUCCESS" => "FINISHED".to_string(),
        other => other.to_string(),
    };
    let config = text(&run["runConfigYaml"]);
    let params_digest = format!("sha256:{}", hex::encode(Sha256::digest(config.as_bytes())));
    let tags = latest["tags"].as_array().cloned().unwrap_or_default();
    let inputs = tags
        .iter()
        .filter_map(|t| {
            let input = t["key"].as_str()?.strip_prefix(INPUT_VERSION)?;
            Some(json!({ "name": input, "digest": t["value"], "source": format!("{SCHEME}{input}") }))
        })
        .collect();
    let entry = |label: &str| {
        latest["metadataEntries"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|e| e["label"] == label)
            .and_then(|e| ["text", "path", "url"].iter().find_map(|k| e[*k].as_str().map(str::to_string)))
    };
    let digest = |alg: &str| entry(alg).map(|d| if d.contains(':') { d } else { format!("{alg}:{d}") });
    let (sha256, md5) = (digest("sha256"), digest("md5"));
    let artifact = (sha256.is_some() || md5.is_some()).then(|| RunArtifact {
        path: entry("path").or_else(|| entry("uri")).unwrap_or_else(|| key.to_string()),
        size: None,
        sha256,
        md5,
    });
    Ok(TrainingRun {
        run_id: text(&run["runId"]),
        name: run["jobName"].as_str().map(str::to_string),
        status,
        link: format!("{}/runs/{run_id}", dagster.url),
        params_digest,
        inputs,
        artifact,
    })
}
