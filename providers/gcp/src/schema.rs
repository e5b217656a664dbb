//! What the GCP provider owns in the spec: its block and the `gs://` scheme.

use mlops_provider_core::{Kind, ProviderEntry, Value, location_has_scheme, schema_of};
use schemars::JsonSchema;

#[derive(JsonSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct Block {
    /// The project buckets are created in. Default: `GOOGLE_CLOUD_PROJECT`.
    project: Option<String>,
    /// The storage endpoint, for an emulator (also `STORAGE_EMULATOR_HOST`). Default: Google's.
    endpoint: Option<String>,
    /// The Vertex AI region. Default `us-central1`.
    region: Option<String>,
    /// The Vertex AI endpoint, for a test service (also `VERTEX_ENDPOINT`). Default:
    /// `https://REGION-aiplatform.googleapis.com`.
    vertex_endpoint: Option<String>,
}

#[derive(JsonSchema)]
#[allow(dead_code)]
struct ModelSettings {
    /// Also register the model in the Vertex AI Model Registry: uploaded from the artifact's
    /// folder with `image` as its serving container; new bytes or another image are a new version.
    vertex: Option<VertexModel>,
}

#[derive(JsonSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct VertexModel {
    /// Default: the model's name in the spec.
    display_name: Option<String>,
    /// Version aliases the current version carries, e.g. `[champion]` (`default` always follows
    /// the newest version).
    aliases: Option<Vec<String>>,
}

#[derive(JsonSchema)]
#[allow(dead_code)]
struct FeatureStoreSettings {
    /// The BigQuery table a Vertex AI feature store serves (gcp).
    bigquery: Option<BigQueryTable>,
}

#[derive(JsonSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct BigQueryTable {
    /// `bq://PROJECT.DATASET.TABLE`: its columns are the features (by name), the record
    /// identifier and the event time.
    table: String,
}

fn settings(kind: Kind) -> serde_json::Map<String, Value> {
    match kind {
        Kind::Model => mlops_provider_core::properties_of::<ModelSettings>(),
        Kind::FeatureStore => mlops_provider_core::properties_of::<FeatureStoreSettings>(),
        _ => serde_json::Map::new(),
    }
}

pub fn entry() -> ProviderEntry {
    ProviderEntry {
        name: "gcp",
        about: "GCP: GCS datasets, generation-pinned model artifacts and the Vertex AI Model Registry. Credentials from Application Default Credentials.",
        factory: crate::factory,
        block: schema_of::<Block>,
        settings,
        claims: |_: Kind, body: &Value| location_has_scheme(body, "gs://"),
        references: &[],
        runs: &[],
    }
}
