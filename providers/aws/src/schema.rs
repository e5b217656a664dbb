//! What the AWS provider owns in the spec: its block, the `s3://` scheme and the settings only
//! SageMaker has (execution roles, an offline store's location, weighted production variants).

use mlops_provider_core::{Kind, ProviderEntry, Value, location_has_scheme, properties_of, schema_of};
use schemars::JsonSchema;

#[derive(JsonSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct Block {
    /// Region; default: the standard AWS chain (`AWS_REGION`, profile).
    region: Option<String>,
    /// A named profile of the shared config files.
    profile: Option<String>,
    /// An endpoint override for every service (also `AWS_ENDPOINT_URL`), e.g. a local emulator.
    endpoint_url: Option<String>,
}

#[derive(JsonSchema)]
#[allow(dead_code)]
struct ModelSettings {
    /// IAM role the model runs as (AWS).
    execution_role: Option<String>,
}

#[derive(JsonSchema)]
#[allow(dead_code)]
struct FeatureStoreSettings {
    /// Where the offline store writes (AWS): `s3://bucket/prefix`. Needed when `offline` is on.
    offline_uri: Option<String>,
    /// IAM role the feature group writes its offline store as (AWS).
    execution_role: Option<String>,
}

#[derive(JsonSchema)]
#[allow(dead_code)]
struct EndpointSettings {
    /// Production variants sharing the endpoint's traffic by weight (AWS), for canaries and
    /// blue/green: e.g. `[{name: blue, weight: 90}, {name: green, model: models.v2, weight: 10}]`.
    /// Without it the endpoint has one variant, `primary`, serving `model`.
    variants: Option<Vec<Variant>>,
}

#[derive(JsonSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct Variant {
    /// The variant's name, unique within the endpoint.
    #[schemars(regex(pattern = r"^[A-Za-z0-9](-*[A-Za-z0-9]){0,62}$"))]
    name: String,
    /// The model it serves; default: the endpoint's `model`.
    model: Option<String>,
    /// Default: the endpoint's `instance_type`.
    instance_type: Option<String>,
    /// Default: the endpoint's `instance_count`.
    #[schemars(range(min = 1, max = 1000))]
    instance_count: Option<u32>,
    /// Relative share of traffic. Default 1.
    #[schemars(range(min = 0))]
    weight: Option<f64>,
}

fn settings(kind: Kind) -> serde_json::Map<String, Value> {
    match kind {
        Kind::Model => properties_of::<ModelSettings>(),
        Kind::FeatureStore => properties_of::<FeatureStoreSettings>(),
        Kind::Endpoint => properties_of::<EndpointSettings>(),
        Kind::Dataset => serde_json::Map::new(),
    }
}

pub fn entry() -> ProviderEntry {
    ProviderEntry {
        name: "aws",
        about: "AWS: SageMaker and S3. Credentials from the standard AWS chain.",
        factory: crate::factory,
        block: schema_of::<Block>,
        settings,
        claims: |_: Kind, body: &Value| location_has_scheme(body, "s3://"),
        references: &[],
        runs: &[],
    }
}
