//! The typed spec: what `mlops.yaml` may say. `schemas/mlops.schema.json` is generated from these types.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A reference to another resource, written `kind.name` (e.g. `models.churn-xgb`).
pub type Reference = String;

/// An mlops stack: the ML assets one team runs, and where.
#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "mlops.yaml")]
pub struct Spec {
    /// Spec format version. Only `1` exists.
    #[schemars(range(min = 1, max = 1))]
    pub version: u32,
    /// The stack's name: part of the lineage ref `refs/mlops/lineage/<project>/<environment>`.
    #[schemars(regex(pattern = r"^[a-z0-9][a-z0-9_-]{0,62}$"))]
    pub project: String,
    /// Where resources live, one block per provider (each provider owns its block's schema). A
    /// resource names its provider with `provider:`; when only one is configured, it is the default.
    #[serde(default)]
    pub providers: BTreeMap<String, serde_json::Value>,
    /// Datasets: folders of files, versioned by content.
    #[serde(default)]
    #[schemars(extend("propertyNames" = {"pattern": r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"}))]
    pub datasets: BTreeMap<String, Dataset>,
    /// Models: an artifact (and serving image) registered with a version.
    #[serde(default)]
    #[schemars(extend("propertyNames" = {"pattern": r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"}))]
    pub models: BTreeMap<String, Model>,
    /// Feature stores: a schema of features keyed by a record identifier and an event time.
    #[serde(default)]
    #[schemars(extend("propertyNames" = {"pattern": r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"}))]
    pub feature_stores: BTreeMap<String, FeatureStore>,
    /// Endpoints: a model served with replicas and a traffic split.
    #[serde(default)]
    #[schemars(extend("propertyNames" = {"pattern": r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"}))]
    pub endpoints: BTreeMap<String, Endpoint>,
    /// Gates `mlops check` evaluates on a plan (exit 3 when one blocks it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policies: Option<PolicyRules>,
    /// Container images (a model's or an endpoint's `image`) on the providers that run them:
    /// pinned by digest at plan time unless `pin: tag`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub images: Option<Images>,
    /// Per environment (`--env NAME`), values deep-merged over the ones above: provider blocks,
    /// resource fields (e.g. `endpoints: { churn-api: { instance_count: 4 } }`), policies.
    /// Each environment has its own lineage: `refs/mlops/lineage/<project>/<environment>`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("propertyNames" = {"pattern": r"^[a-z0-9][a-z0-9_-]{0,62}$"}))]
    pub environments: BTreeMap<String, EnvironmentOverrides>,
}

/// How container images are recorded and deployed.
#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Images {
    /// `digest` (the default): each tag is resolved through its registry at plan time, deployed
    /// as `name@sha256:…` and recorded with its digest, so a tag moved later is a change the plan
    /// shows (`image-moved`) and a rollback restores the digest. `tag`: images are recorded and
    /// deployed as written (placeholders, or a registry mlops cannot reach).
    #[serde(default)]
    pub pin: ImagePin,
}

/// See [`Images::pin`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ImagePin {
    #[default]
    Digest,
    Tag,
}

/// What an environment overrides. Resources must be declared at the top level first.
#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EnvironmentOverrides {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub providers: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datasets: Option<BTreeMap<String, serde_json::Map<String, serde_json::Value>>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub models: Option<BTreeMap<String, serde_json::Map<String, serde_json::Value>>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feature_stores: Option<BTreeMap<String, serde_json::Map<String, serde_json::Value>>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoints: Option<BTreeMap<String, serde_json::Map<String, serde_json::Value>>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policies: Option<serde_json::Map<String, serde_json::Value>>,
}

/// Policy gates. Every rule is off unless set.
#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyRules {
    /// Endpoints may only use these instance types.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_instance_types: Option<Vec<String>>,
    /// Bounds on an endpoint's replicas (`instance_count`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<ReplicaBounds>,
    /// An endpoint may serve only a model whose registry approval is `Approved`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub require_approved_models: Option<bool>,
    /// Every dataset must be versioned by content (a `source` whose manifest is recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub require_versioned_datasets: Option<bool>,
    /// Every model must carry a `signature:` (verified at plan time against its key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub require_signed_models: Option<bool>,
    /// Labels every resource must carry, e.g. `[owner]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub required_labels: Option<Vec<String>>,
    /// No change may destroy stored data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forbid_data_destroying: Option<bool>,
    /// Environments whose endpoints must declare a `rollout:` (how a new model takes the
    /// traffic, and what rolls it back), e.g. `[prod]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub require_rollout_for: Option<Vec<String>>,
    /// Rego policy files or folders (conftest's conventions: `deny`, `violation` and `warn` rules
    /// in package `main`, or in `rego_packages`), evaluated over the plan JSON; relative to the
    /// spec. A `policy/` folder beside the spec is read when this is not given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rego: Option<Vec<String>>,
    /// The Rego packages whose `deny`, `violation` and `warn` rules count (default `[main]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rego_packages: Option<Vec<String>>,
    /// Rules for one environment, overriding the ones above (the environment is `default` until
    /// environments exist).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub environments: BTreeMap<String, PolicyRules>,
}

impl PolicyRules {
    /// These rules with `environment`'s overrides applied.
    pub fn for_environment(&self, environment: &str) -> PolicyRules {
        let mut out = self.clone();
        out.environments.clear();
        if let Some(e) = self.environments.get(environment) {
            macro_rules! over {
                ($($f:ident),*) => { $( if e.$f.is_some() { out.$f = e.$f.clone(); } )* };
            }
            over!(
                allowed_instance_types,
                replicas,
                require_approved_models,
                require_versioned_datasets,
                require_signed_models,
                required_labels,
                forbid_data_destroying,
                require_rollout_for,
                rego,
                rego_packages
            );
        }
        out
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplicaBounds {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<u32>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
pub struct Dataset {
    /// The provider block that manages it; default: from `uri`'s scheme, else the only provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// Where the dataset lives, as a URI of its provider's scheme (a bucket and prefix). Not used
    /// by `local`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
    /// A local folder (relative to the spec file) whose files are synced up; or
    /// `dvc://PATH.dvc`, a DVC pointer whose output mlops checks in the DVC remote and records
    /// (md5, size, file count), writing nothing (on a provider that reads the remote's storage).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Delete remote objects that are not in `source`. Default false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prune: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Resources that must be applied before this one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<Reference>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
pub struct Model {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// The serving image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// The trained artifact: a local path (relative to the spec file) or a URI of a provider's
    /// scheme (a bucket object or prefix).
    pub artifact: String,
    /// Framework name, e.g. `xgboost`, `sklearn`, `pytorch`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub framework: Option<String>,
    /// Datasets the model was trained on: edges of the graph and of the lineage.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trained_on: Vec<Reference>,
    /// The training run that produced the model: `mlflow://runs/RUN_ID`, or
    /// `mlflow://runs/RUN_ID/PATH` naming the file the run logged, which the artifact must be.
    /// Read at plan time and recorded in lineage (the run, its parameters' digest, its logged
    /// input datasets); an edge run → model of the graph.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub produced_by: Option<String>,
    /// Model registry entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry: Option<ModelRegistration>,
    /// Environment variables for the serving container.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub environment: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<Reference>,
    /// An OpenSSF model-signing signature of the artifact (local, or on a bucket: its bytes read
    /// at the pinned versions), verified at plan time against a public key: a mismatch, a missing
    /// bundle or a wrong key is an error and nothing applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<ModelSignature>,
}

/// Where a model's signature bundle and its signer's public key are (paths from the spec's folder).
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ModelSignature {
    /// The signer's ECDSA P-256 public key, PEM (SubjectPublicKeyInfo).
    pub key: String,
    /// The bundle `model_signing sign key` wrote (a path beside the spec); default: the artifact's
    /// path and `.sig`. Required for a bucket artifact.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bundle: Option<String>,
    /// A certificate identity (keyless signing): refused, it needs Fulcio and Rekor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ModelRegistration {
    /// The model group (package group) the versions are registered in.
    pub group: String,
    #[serde(default)]
    pub approval: Approval,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum Approval {
    #[default]
    PendingManualApproval,
    Approved,
    Rejected,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
pub struct FeatureStore {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// The feature that identifies a record. Changing it replaces the store, destroying its data.
    pub record_identifier: String,
    /// The feature holding each record's event time. Changing it replaces the store.
    pub event_time: String,
    /// Feature name → type.
    #[schemars(extend("minProperties" = 1))]
    pub features: BTreeMap<String, FeatureType>,
    /// Keep an online store (low-latency reads). Default true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub online: Option<bool>,
    /// Keep an offline store (history). Default true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offline: Option<bool>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<Reference>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum FeatureType {
    String,
    Integral,
    Fractional,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
pub struct Endpoint {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// The model served, e.g. `models.churn-xgb`.
    pub model: Reference,
    /// Instance type: the provider's machine type name (e.g. `ml.m5.large`); free-form on `local`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_type: Option<String>,
    /// Replicas. Default 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub instance_count: Option<u32>,
    /// Upper bound of replicas when autoscaling. Default: `instance_count`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub max_replicas: Option<u32>,
    /// How long apply waits for the endpoint to be ready: `90s`, `10m`, `1h`.
    /// Default: the provider's (10m for containers, 60m for managed endpoints).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]+[smh]?$"))]
    pub wait_timeout: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traffic: Option<Traffic>,
    /// Replicas set by the provider's autoscaler between `min` and `max`, tracking one metric.
    /// mlops then leaves the replica count to the autoscaler (never drift, never reset by apply).
    /// A setting the provider cannot honour is refused at validate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<Autoscaling>,
    /// How a new model version takes the traffic, and what rolls it back. A setting the provider
    /// cannot honour is refused at validate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<Rollout>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<Reference>,
}

#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Rollout {
    pub strategy: RolloutStrategy,
    /// `canary`: the first step's share, then the rest; `linear`: each step's share.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<RolloutStep>,
    /// How long the new version serves all the traffic before the old one is removed: `10m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]+[smh]?$"))]
    pub bake: Option<String>,
    /// What aborts the rollout while it runs, as the provider names them (e.g. alarm names; a
    /// provider without alarms refuses them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alarms: Vec<String>,
    /// `auto` (default): an alarm or a failed step rolls the endpoint back by itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback: Option<RollbackMode>,
}

#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum RolloutStrategy {
    AllAtOnce,
    Canary,
    Linear,
}

#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RolloutStep {
    /// Percent of the traffic.
    #[schemars(range(min = 1, max = 100))]
    pub percent: u32,
    /// The wait after each step: `5m`.
    #[schemars(regex(pattern = r"^[0-9]+[smh]?$"))]
    pub interval: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RollbackMode {
    Auto,
    Manual,
}

#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Autoscaling {
    /// Fewest replicas.
    #[schemars(range(min = 1, max = 1000))]
    pub min: u32,
    /// Most replicas.
    #[schemars(range(min = 1, max = 1000))]
    pub max: u32,
    pub target: ScalingTarget,
    /// How long after a scale-in before the next one: `300s`, `5m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]+[smh]?$"))]
    pub scale_in_cooldown: Option<String>,
    /// How long after a scale-out before the next one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]+[smh]?$"))]
    pub scale_out_cooldown: Option<String>,
}

/// The metric the autoscaler holds at `value` per replica.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScalingTarget {
    pub metric: ScalingMetric,
    /// Per replica: requests a minute (`invocations_per_instance`), percent of the requested CPU
    /// (`cpu`), requests in flight (`concurrency`).
    #[schemars(range(min = 0.001))]
    pub value: f64,
}

#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ScalingMetric {
    InvocationsPerInstance,
    Cpu,
    Concurrency,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Traffic {
    /// Share of requests (0-100) the new model version gets while the previous one keeps the rest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100))]
    pub canary_percent: Option<u32>,
}

/// The JSON Schema of the spec with the builtin providers, as committed in
/// `schemas/mlops.schema.json`.
pub fn json_schema() -> serde_json::Value {
    crate::registry::Registry::builtin().schema().0.clone()
}

/// The portable schema (the typed model above) completed by `registry`'s providers: each one's
/// block under `providers`, and the settings each adds to a kind's resources. A resource accepts
/// the portable fields and every compiled-in provider's settings; whether its own provider
/// honours a setting is that provider's `check`.
pub fn assemble_schema(registry: &crate::registry::Registry) -> serde_json::Value {
    use serde_json::{Value, json};
    let mut schema = serde_json::to_value(schemars::schema_for!(Spec)).expect("schema serializes");
    let mut blocks = serde_json::Map::new();
    for e in registry.entries() {
        let mut block = (e.block)();
        if let Some(o) = block.as_object_mut() {
            o.insert("description".into(), Value::String(e.about.into()));
        }
        blocks.insert(e.name.into(), block);
    }
    for name in registry.missing() {
        blocks.insert(
            name.into(),
            json!({"type": "object", "description": format!("Not part of this build (cargo feature `{name}`).")}),
        );
    }
    schema["properties"]["providers"] = json!({
        "description": schema["properties"]["providers"]["description"].clone(),
        "type": "object",
        "properties": blocks,
        "additionalProperties": false,
    });
    for kind in mlops_provider_core::Kind::ALL {
        let def = match kind {
            mlops_provider_core::Kind::Dataset => "Dataset",
            mlops_provider_core::Kind::Model => "Model",
            mlops_provider_core::Kind::FeatureStore => "FeatureStore",
            mlops_provider_core::Kind::Endpoint => "Endpoint",
        };
        let Some(target) = schema.pointer_mut(&format!("/$defs/{def}")).and_then(Value::as_object_mut) else {
            continue;
        };
        let mut props = target.remove("properties").and_then(|p| p.as_object().cloned()).unwrap_or_default();
        for e in registry.entries() {
            for (key, mut sub) in (e.settings)(kind) {
                if props.contains_key(&key) {
                    continue; // A portable field; the provider only reads it.
                }
                if let Some(o) = sub.as_object_mut() {
                    let text = o.get("description").and_then(Value::as_str).unwrap_or_default().to_string();
                    o.insert("description".into(), Value::String(format!("{text} (provider `{}`)", e.name)));
                }
                props.insert(key, sub);
            }
        }
        target.insert("properties".into(), Value::Object(props));
        target.insert("additionalProperties".into(), Value::Bool(false));
    }
    schema
}
