//! What the local provider owns in the spec: its block. It adds no resource settings.

use mlops_provider_core::{ProviderEntry, schema_of};
use schemars::JsonSchema;

/// The embedded provider: everything on the local disk, nothing to install.
#[derive(JsonSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct Block {
    /// Folder holding the live state, relative to the spec file. Default `.mlops/local`.
    root: Option<String>,
}

pub fn entry() -> ProviderEntry {
    ProviderEntry {
        name: "local",
        about: "The embedded provider: everything on the local disk, nothing to install.",
        factory: crate::factory,
        block: schema_of::<Block>,
        settings: mlops_provider_core::no_settings,
        claims: mlops_provider_core::claims_nothing,
        references: &[],
        runs: &[],
    }
}
