//! What the Kubernetes provider owns in the spec: its block and the serving settings of an
//! endpoint (runtime, container, compute). An endpoint with a `runtime` is its own.

use std::collections::BTreeMap;

use mlops_provider_core::{Kind, ProviderEntry, Value, properties_of, schema_of};
use schemars::JsonSchema;

#[derive(JsonSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct Block {
    /// A kubeconfig file (relative to the spec file). Default: `KUBECONFIG`, then `~/.kube/config`.
    kubeconfig: Option<String>,
    /// The kubeconfig context. Default: its current context.
    context: Option<String>,
    /// Namespace of the objects mlops manages. Default: the context's namespace.
    namespace: Option<String>,
    /// Namespace of KServe's `inferenceservice-config` ConfigMap, read to refuse a canary the
    /// cluster's deployment mode would ignore. Default `kserve`.
    kserve_namespace: Option<String>,
}

#[derive(JsonSchema)]
#[allow(dead_code)]
struct EndpointSettings {
    /// Serving runtime on Kubernetes: `kserve` (an InferenceService), `seldon` (a Seldon Core v2
    /// Model) or `deployment` (a Deployment + Service running `image`). Setting it makes
    /// `kubernetes` the default provider.
    runtime: Option<Runtime>,
    /// The model format the InferenceService declares (`runtime: kserve`), or the capability a
    /// Seldon Model requires of its Server (`runtime: seldon`). Default: the model's `framework`
    /// as KServe names it (sklearn, xgboost, lightgbm, tensorflow, pytorch, onnx, triton, mlflow,
    /// huggingface).
    model_format: Option<ModelFormat>,
    /// A ServingRuntime (in the namespace) or ClusterServingRuntime to serve the model with
    /// (`runtime: kserve`), or the Seldon Server to load it on (`runtime: seldon`), checked at
    /// plan time to exist and to support the format and protocol. Default: the runtime KServe
    /// selects for the format, or any Seldon Server with the capability.
    serving_runtime: Option<String>,
    /// The inference protocol (`runtime: kserve`): `v1`, `v2` (Open Inference Protocol) or
    /// `grpc-v2`. Seldon serves v2 only.
    protocol_version: Option<Protocol>,
    /// Serving image (`runtime: deployment`); default: the model's `image`.
    image: Option<String>,
    /// Container arguments (`runtime: deployment`).
    args: Option<Vec<String>>,
    /// The port the server listens on (`runtime: deployment`). Default 8080.
    #[schemars(range(min = 1, max = 65535))]
    port: Option<u32>,
    /// Environment variables for the serving container, over the model's `environment`.
    env: Option<BTreeMap<String, String>>,
    /// Compute per replica (Kubernetes requests and limits).
    resources: Option<Resources>,
}

#[derive(JsonSchema)]
#[serde(rename_all = "lowercase")]
#[allow(dead_code)]
enum Runtime {
    Kserve,
    Seldon,
    Deployment,
}

/// A KServe model format: its name and, where the runtime distinguishes them, its version.
#[derive(JsonSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct ModelFormat {
    name: String,
    version: Option<String>,
}

#[derive(JsonSchema)]
#[allow(dead_code)]
enum Protocol {
    #[serde(rename = "v1")]
    V1,
    #[serde(rename = "v2")]
    V2,
    #[serde(rename = "grpc-v2")]
    GrpcV2,
}

/// Kubernetes quantities, e.g. `cpu: "500m"`, `memory: 1Gi`, `gpu: 1`.
#[derive(JsonSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct Resources {
    cpu: Option<String>,
    memory: Option<String>,
    /// NVIDIA GPUs (`nvidia.com/gpu`).
    gpu: Option<u32>,
}

fn settings(kind: Kind) -> serde_json::Map<String, Value> {
    match kind {
        Kind::Endpoint => properties_of::<EndpointSettings>(),
        _ => serde_json::Map::new(),
    }
}

pub fn entry() -> ProviderEntry {
    ProviderEntry {
        name: "kubernetes",
        about: "Kubernetes: KServe InferenceServices, Seldon Core v2 Models and Deployments.",
        factory: crate::factory,
        block: schema_of::<Block>,
        settings,
        claims: |kind: Kind, body: &Value| kind == Kind::Endpoint && body.get("runtime").is_some(),
        references: &[],
        runs: &[],
    }
}
