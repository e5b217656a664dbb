//! What the MLflow provider owns in the spec: its block and a model's registry settings. It
//! claims no resource: a model is on MLflow when it says `provider: mlflow`.

use std::collections::BTreeMap;

use mlops_provider_core::{Kind, ProviderEntry, Value, properties_of, schema_of};
use schemars::JsonSchema;

#[derive(JsonSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct Block {
    /// The tracking server, e.g. `http://mlflow.internal:5000`. Default: `MLFLOW_TRACKING_URI`.
    /// Auth as MLflow's clients: `MLFLOW_TRACKING_TOKEN` (bearer), else
    /// `MLFLOW_TRACKING_USERNAME` and `MLFLOW_TRACKING_PASSWORD` (basic).
    tracking_uri: Option<String>,
}

#[derive(JsonSchema)]
#[allow(dead_code)]
struct ModelSettings {
    /// The registered model's name in MLflow. Default: the resource's name.
    registered_model: Option<String>,
    /// Aliases pointing at the version the spec describes, e.g. `[champion]` (MLflow).
    aliases: Option<Vec<String>>,
    /// The registered model's description (MLflow).
    description: Option<String>,
    /// Tags of the model version mlops registers (MLflow); `labels` tag the registered model.
    version_tags: Option<BTreeMap<String, String>>,
}

fn settings(kind: Kind) -> serde_json::Map<String, Value> {
    match kind {
        Kind::Model => properties_of::<ModelSettings>(),
        _ => serde_json::Map::new(),
    }
}

pub fn entry() -> ProviderEntry {
    ProviderEntry {
        name: "mlflow",
        about: "MLflow Model Registry: registered models, versions and aliases, over MLflow's REST API.",
        factory: crate::factory,
        block: schema_of::<Block>,
        settings,
        claims: mlops_provider_core::claims_nothing,
        references: &["models:/"],
        runs: &[crate::run::SCHEME],
    }
}
