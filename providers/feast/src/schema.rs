//! What the Feast provider owns in the spec: its block and a feature store's Feast settings. It
//! claims no resource: a feature store is on Feast when it says `provider: feast`.

use mlops_provider_core::{Kind, ProviderEntry, Value, properties_of, schema_of};
use schemars::JsonSchema;

#[derive(JsonSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct Block {
    /// The registry server (`feast serve_registry`, or the Feast Operator's registry service):
    /// `host:port`, or `http://` / `https://host:port`. Default: `FEAST_REGISTRY`.
    registry: Option<String>,
    /// The Feast project the objects belong to. Default: the mlops project's name.
    project: Option<String>,
    /// A CA certificate (PEM, relative to the spec file) for an `https://` registry whose
    /// certificate the system's roots do not sign.
    ca_cert: Option<String>,
    /// How the registry server authenticates clients, as Feast's `auth.type`: `no_auth` (default),
    /// `kubernetes` (the pod's service-account token, else `LOCAL_K8S_TOKEN`) or `oidc` (a token in
    /// `FEAST_OIDC_TOKEN`), sent as a bearer token.
    auth: Option<Auth>,
}

#[derive(JsonSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)]
enum Auth {
    #[serde(rename = "no_auth")]
    None,
    Kubernetes,
    Oidc,
}

#[derive(JsonSchema)]
#[allow(dead_code)]
struct FeatureStoreSettings {
    /// Where the features are read from (Feast): a file source, `{ path: data/churn.parquet }`.
    source: Option<Source>,
    /// How long a feature value stays valid for online reads (Feast), e.g. `24h`, `90m`.
    #[schemars(regex(pattern = r"^[0-9]+[smh]?$"))]
    ttl: Option<String>,
    /// The Feast entity's name (Feast). Default: the feature store's name.
    entity: Option<String>,
    /// Feature services serving every feature of the view, by name (Feast).
    feature_services: Option<Vec<String>>,
}

#[derive(JsonSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct Source {
    /// A Parquet file or folder (`s3://`, `gs://` or a path the feature server can read).
    path: String,
}

fn settings(kind: Kind) -> serde_json::Map<String, Value> {
    match kind {
        Kind::FeatureStore => properties_of::<FeatureStoreSettings>(),
        _ => serde_json::Map::new(),
    }
}

pub fn entry() -> ProviderEntry {
    ProviderEntry {
        name: "feast",
        about: "Feast: entities, data sources and feature views through a Feast registry server (gRPC).",
        factory: crate::factory,
        block: schema_of::<Block>,
        settings,
        claims: mlops_provider_core::claims_nothing,
        references: &[],
        runs: &[],
    }
}
