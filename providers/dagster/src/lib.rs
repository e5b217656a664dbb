//! The Dagster provider: a model's `produced_by: dagster://ASSET/KEY` names the Dagster asset
//! whose latest materialization made it. It serves no kind of resource: at plan time it reads,
//! through the webserver's GraphQL API, the asset's latest materialization and the run behind
//! it, and gives the engine that run: its status (Dagster's `SUCCESS` is a finished run), its run
//! config's digest (the run's parameters), the input data versions Dagster recorded on the
//! materialization (`dagster/input_data_version/KEY` tags, written when assets have data
//! versions), and, when the materialization logged a `sha256` (or `md5`) metadata entry, the
//! artifact digest the model's artifact must match.

mod run;
mod schema;
pub use schema::entry;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use mlops_provider_core::{
    Kind, Provider, ProviderContext, ProviderError, ResourceType, TrainingRun, Value, ValuePath, error_chain,
};

/// The environment variable naming the webserver when the block does not (Dagster has no
/// standard one).
pub const URL_VARIABLE: &str = "DAGSTER_URL";

pub fn factory(block: &Value, _ctx: &ProviderContext) -> Result<Arc<dyn Provider>, ProviderError> {
    let url = block
        .get("url")
        .and_then(Value::as_str)
        .map(str::to_string)
        .or_else(|| std::env::var(URL_VARIABLE).ok().filter(|s| !s.is_empty()));
    let Some(url) = url else {
        return Err(ProviderError::invalid(format!(
            "the dagster provider needs its webserver: set `url` in its block or {URL_VARIABLE}"
        ))
        .at(ValuePath::key("url")));
    };
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(ProviderError::invalid(format!(
            "`url` must be the http:// or https:// address of a Dagster webserver, not `{url}`"
        ))
        .at(ValuePath::key("url")));
    }
    let http = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(60))
        .build()
        .map_err(|e| ProviderError::invalid(format!("cannot build an HTTP client: {}", error_chain(&e))))?;
    Ok(Arc::new(DagsterProvider { url: url.trim_end_matches('/').to_string(), http }))
}

/// The provider: Dagster's webserver, read for training runs only.
pub struct DagsterProvider {
    url: String,
    http: reqwest::Client,
}

#[async_trait]
impl Provider for DagsterProvider {
    fn name(&self) -> &str {
        "dagster"
    }

    /// No kind: assets stay Dagster's.
    fn resource(&self, _kind: Kind) -> Option<&dyn ResourceType> {
        None
    }

    async fn training_run(&self, reference: &str) -> Result<TrainingRun, ProviderError> {
        run::training_run(self, reference).await
    }
}

impl DagsterProvider {
    /// One GraphQL query: its `data`, or the error the server gave.
    async fn query(&self, query: &str, variables: Value) -> Result<Value, ProviderError> {
        let url = format!("{}/graphql", self.url);
        let body = serde_json::json!({ "query": query, "variables": variables });
        let response = self.http.post(&url).json(&body).send().await.map_err(|e| {
            ProviderError::new(
                mlops_provider_core::ErrorKind::Unavailable,
                format!("Dagster at {}: {}", self.url, error_chain(&e)),
            )
        })?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        let reply: Value = serde_json::from_str(&text).map_err(|_| {
            ProviderError::failed(format!("Dagster at {} answered {status}, not GraphQL: {}", self.url, text.trim()))
        })?;
        if let Some(errors) = reply.get("errors").and_then(Value::as_array).filter(|e| !e.is_empty()) {
            let messages: Vec<&str> = errors.iter().filter_map(|e| e.get("message").and_then(Value::as_str)).collect();
            return Err(ProviderError::failed(format!("Dagster at {}: {}", self.url, messages.join("; "))));
        }
        Ok(reply.get("data").cloned().unwrap_or(Value::Null))
    }
}
