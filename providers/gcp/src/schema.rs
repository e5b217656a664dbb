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
}

pub fn entry() -> ProviderEntry {
    ProviderEntry {
        name: "gcp",
        about: "GCP: GCS datasets and generation-pinned model artifacts. Credentials from Application Default Credentials.",
        factory: crate::factory,
        block: schema_of::<Block>,
        settings: mlops_provider_core::no_settings,
        claims: |_: Kind, body: &Value| location_has_scheme(body, "gs://"),
        references: &[],
    }
}
