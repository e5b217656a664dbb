//! What the Dagster provider owns in the spec: its block. It claims no resource and settings of
//! none: it is asked for `dagster://` runs.

use mlops_provider_core::{Kind, ProviderEntry, Value, schema_of};
use schemars::JsonSchema;

#[derive(JsonSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct Block {
    /// The Dagster webserver, e.g. `http://dagster.internal:3000` (its GraphQL API is at
    /// `/graphql`). Default: `DAGSTER_URL`.
    url: Option<String>,
}

fn settings(_kind: Kind) -> serde_json::Map<String, Value> {
    serde_json::Map::new()
}

pub fn entry() -> ProviderEntry {
    ProviderEntry {
        name: "dagster",
        about: "Dagster: the run behind an asset's latest materialization, as a model's training run.",
        factory: crate::factory,
        block: schema_of::<Block>,
        settings,
        claims: mlops_provider_core::claims_nothing,
        references: &[],
        runs: &[crate::run::SCHEME],
    }
}
