//! The MLflow provider: a model on `provider: mlflow` is a registered model in an MLflow Model
//! Registry, the version mlops registered from its `artifact`, and the aliases the spec points at
//! that version. New bytes register a new version; earlier versions stay (they are the history
//! MLflow keeps); a rollback re-points the aliases at the recorded version.
//!
//! Ownership: mlops tags the registered models it creates and the versions it registers with
//! `mlops.project`; it deletes only a registered model carrying its tag, and adopts one without
//! the tag only under `--force-conflicts` or `mlops import`.

mod client;
mod model;
mod run;
mod schema;
pub use schema::entry;

use std::sync::Arc;

use async_trait::async_trait;
use mlops_provider_core::{
    Kind, Provider, ProviderContext, ProviderError, Resolved, ResourceType, TrainingRun, Value, ValuePath,
};
use reqwest::Method;

use crate::client::Client;
use crate::model::tag_map;

/// The tag that marks what mlops created, with the project's name.
const OWNER: &str = "mlops.project";
/// The tag holding the content digest of the artifact a version was registered from.
const DIGEST: &str = "mlops.digest";
/// The tag holding the model's `framework` (what a serving runtime loads it with).
const FRAMEWORK: &str = "mlops.framework";

pub fn factory(block: &Value, ctx: &ProviderContext) -> Result<Arc<dyn Provider>, ProviderError> {
    let uri = block
        .get("tracking_uri")
        .and_then(Value::as_str)
        .map(str::to_string)
        .or_else(|| std::env::var("MLFLOW_TRACKING_URI").ok().filter(|s| !s.is_empty()));
    let Some(uri) = uri else {
        return Err(ProviderError::invalid(
            "the mlflow provider needs a tracking server: set `tracking_uri` in its block or MLFLOW_TRACKING_URI",
        )
        .at(ValuePath::key("tracking_uri")));
    };
    if !(uri.starts_with("http://") || uri.starts_with("https://")) {
        return Err(ProviderError::invalid(format!(
            "`tracking_uri` must be an http:// or https:// address of an MLflow tracking server, not `{uri}`"
        ))
        .at(ValuePath::key("tracking_uri")));
    }
    let tracking = Arc::new(Tracking { client: Client::new(&uri)?, project: ctx.project.clone() });
    Ok(Arc::new(MlflowProvider { models: model::Models(tracking) }))
}

/// The provider: it serves one kind, models (a model registry), resolves `models:/` for the
/// providers that serve them, and reads the training runs models name in `produced_by`.
pub struct MlflowProvider {
    models: model::Models,
}

/// The tracking server mlops talks to, and the project whose tag marks what mlops created.
pub(crate) struct Tracking {
    client: Client,
    project: String,
}

#[async_trait]
impl Provider for MlflowProvider {
    fn name(&self) -> &str {
        "mlflow"
    }

    fn resource(&self, kind: Kind) -> Option<&dyn ResourceType> {
        match kind {
            Kind::Model => Some(&self.models),
            _ => None,
        }
    }

    fn version_attributes(&self) -> &'static [&'static str] {
        &["artifact_digest", "artifact"]
    }

    async fn resolve(&self, reference: &str) -> Result<Resolved, ProviderError> {
        let rest = reference.strip_prefix("models:/").unwrap_or_default();
        let (name, version) = if let Some((name, alias)) = rest.split_once('@') {
            let q = [("name", name), ("alias", alias)];
            let found = self.models.0.client.call(Method::GET, "registered-models/alias", &q, None).await?.ok_or_else(
                || {
                    ProviderError::invalid(format!(
                        "MLflow has no alias `{alias}` on registered model `{name}` ({reference})"
                    ))
                },
            )?;
            let version = found["model_version"]["version"].as_str().unwrap_or_default().to_string();
            (name, version)
        } else if let Some((name, version)) = rest.rsplit_once('/').filter(|(_, v)| v.parse::<u64>().is_ok()) {
            (name, version.to_string())
        } else {
            return Err(ProviderError::invalid(format!(
                "`{reference}` is not a model reference mlops can pin: write `models:/NAME@ALIAS` or `models:/NAME/VERSION`"
            )));
        };
        let q = [("name", name), ("version", version.as_str())];
        let v = self.models.0.client.call(Method::GET, "model-versions/get", &q, None).await?.ok_or_else(|| {
            ProviderError::invalid(format!(
                "MLflow has no version {version} of registered model `{name}` ({reference})"
            ))
        })?;
        let mv = &v["model_version"];
        // Where the bytes are: the download URI (a run-relative source becomes its store's URI).
        let uri = match self.models.0.client.call(Method::GET, "model-versions/get-download-uri", &q, None).await? {
            Some(d) => d["artifact_uri"].as_str().map(str::to_string),
            None => None,
        }
        .or_else(|| mv["source"].as_str().map(str::to_string))
        .unwrap_or_default();
        Ok(Resolved { uri, version, digest: tag_map(mv.get("tags")).get(DIGEST).cloned() })
    }

    async fn training_run(&self, reference: &str) -> Result<TrainingRun, ProviderError> {
        run::training_run(&self.models.0.client, reference).await
    }
}
