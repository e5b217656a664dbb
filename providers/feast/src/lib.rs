//! The Feast provider: a feature store on `provider: feast` is a Feast entity (keyed by
//! `record_identifier`), a file data source (`source.path`, timestamped by `event_time`) and a
//! feature view over them, managed through a Feast registry server's gRPC API (the protocol
//! buffers of Feast 0.67.0, vendored in `proto/`). Objects mlops creates carry the tag
//! `mlops.project`; it changes and deletes only those.

mod feature_store;
mod schema;
pub use schema::entry;

#[allow(clippy::all, dead_code)]
pub mod proto {
    pub mod types {
        tonic::include_proto!("feast.types");
    }
    pub mod core {
        tonic::include_proto!("feast.core");
    }
    pub mod registry {
        tonic::include_proto!("feast.registry");
    }
}

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use mlops_provider_core::{
    Address, ApplyRequest, Attributes, ConfigDiagnostic, Dependencies, Desired, ErrorKind, Kind, LiveState, Operation,
    PriorState, Progress, Provider, ProviderContext, ProviderError, ResourceConfig, ResourceType, Value, ValuePath,
    parse_duration,
};
use serde_json::json;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

use proto::core::{self as fc, data_source, file_format};
use proto::registry::{self as fr, registry_server_client::RegistryServerClient};
use proto::types::value_type::Enum as ValueType;

/// The tag that marks what mlops created, with the project's name.
const OWNER: &str = "mlops.project";
/// The tag naming the feature view a feature service mlops made serves.
const VIEW_TAG: &str = "mlops.feature_view";
/// What Feast's Python SDK reads to rebuild a file source from its proto.
const FILE_SOURCE_CLASS: &str = "feast.infra.offline_stores.file_source.FileSource";

pub fn factory(block: &Value, ctx: &ProviderContext) -> Result<Arc<dyn Provider>, ProviderError> {
    let address = block
        .get("registry")
        .and_then(Value::as_str)
        .map(str::to_string)
        .or_else(|| std::env::var("FEAST_REGISTRY").ok().filter(|s| !s.is_empty()))
        .ok_or_else(|| {
            ProviderError::invalid(
                "the feast provider needs its registry server: set `registry` in its block or FEAST_REGISTRY",
            )
            .at(ValuePath::key("registry"))
        })?;
    let url = if address.contains("://") { address.clone() } else { format!("http://{address}") };
    let mut endpoint = Endpoint::from_shared(url.clone())
        .map_err(|e| {
            ProviderError::invalid(format!("`{address}` is not a registry server address: {e}"))
                .at(ValuePath::key("registry"))
        })?
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(60));
    if url.starts_with("https://") {
        let mut tls = ClientTlsConfig::new().with_native_roots();
        if let Some(ca) = block.get("ca_cert").and_then(Value::as_str) {
            let pem = std::fs::read(ctx.base_dir.join(ca)).map_err(|e| {
                ProviderError::invalid(format!("cannot read the CA certificate {ca}: {e}"))
                    .at(ValuePath::key("ca_cert"))
            })?;
            tls = tls.ca_certificate(Certificate::from_pem(pem));
        }
        endpoint = endpoint.tls_config(tls).map_err(|e| {
            ProviderError::invalid(format!("TLS for {url}: {}", mlops_provider_core::error_chain(&e)))
                .at(ValuePath::key("registry"))
        })?;
    }
    let auth = block.get("auth").and_then(Value::as_str).unwrap_or("no_auth").to_string();
    let project = block.get("project").and_then(Value::as_str).unwrap_or(&ctx.project).to_string();
    let registry = Arc::new(FeastRegistry {
        endpoint,
        url,
        project,
        stack: ctx.project.clone(),
        auth,
        channel: Default::default(),
    });
    Ok(Arc::new(FeastProvider { feature_views: feature_store::FeatureViews(registry) }))
}

/// Where a pod finds its service-account token (Feast's `kubernetes` auth).
const SERVICE_ACCOUNT_TOKEN: &str = "/var/run/secrets/kubernetes.io/serviceaccount/token";

/// The provider: it serves one kind, feature stores (as Feast feature views).
pub struct FeastProvider {
    feature_views: feature_store::FeatureViews,
}

#[async_trait]
impl Provider for FeastProvider {
    fn name(&self) -> &str {
        "feast"
    }

    fn resource(&self, kind: Kind) -> Option<&dyn ResourceType> {
        match kind {
            Kind::FeatureStore => Some(&self.feature_views),
            _ => None,
        }
    }
}

/// The registry server of one Feast project, and how to reach it.
pub(crate) struct FeastRegistry {
    endpoint: Endpoint,
    url: String,
    /// The Feast project.
    project: String,
    /// The mlops project, for ownership tags.
    stack: String,
    /// Feast's `auth.type`: `no_auth`, `kubernetes` or `oidc`.
    auth: String,
    channel: tokio::sync::OnceCell<Channel>,
}
