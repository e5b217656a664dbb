//! The GCP provider: datasets on `gs://bucket/prefix/` and models whose artifact is a GCS object,
//! pinned to a generation. Speaks the GCS JSON API through `gcloud-storage`.
//!
//! - A dataset's version is its manifest: object → generation, crc32c, md5, size. `source` is synced
//!   by checksum with `ifGenerationMatch` preconditions (a concurrent writer fails the upload instead
//!   of being overwritten); remote objects not in `source` are deleted only with `prune: true`.
//! - A model's artifact is resolved at plan time to its current generation and checksums; the live
//!   state is the generation last pinned, so new bytes under the same URI plan an Update.
//!
//! Endpoint: `endpoint` in the provider block, else `STORAGE_EMULATOR_HOST` (both anonymous), else
//! Google with Application Default Credentials. Calls are retried at most 3 times on transient
//! errors, with a 3 s connect timeout, so an unreachable endpoint fails within seconds.

mod dataset;
mod dvc;
mod endpoint;
mod feature_store;
mod model;
mod schema;
mod vertex;
pub use schema::entry;

use std::collections::HashMap;
use std::future::Future;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use backon::{ExponentialBuilder, Retryable};
use base64::Engine;
use gcloud_storage::client::{Client, ClientConfig};
use gcloud_storage::http::Error as GcsError;
use gcloud_storage::http::buckets::Versioning;
use gcloud_storage::http::buckets::get::GetBucketRequest;
use gcloud_storage::http::buckets::insert::{BucketCreationConfig, InsertBucketParam, InsertBucketRequest};
use gcloud_storage::http::buckets::patch::{BucketPatchConfig, PatchBucketRequest};
use gcloud_storage::http::objects::Object;
use gcloud_storage::http::objects::copy::CopyObjectRequest;
use gcloud_storage::http::objects::delete::DeleteObjectRequest;
use gcloud_storage::http::objects::get::GetObjectRequest;
use gcloud_storage::http::objects::list::ListObjectsRequest;
use gcloud_storage::http::objects::upload::{UploadObjectRequest, UploadType};
use mlops_provider_core::{
    Address, ApplyRequest, Attributes, ConfigDiagnostic, Dependencies, Desired, ErrorKind, Kind, LiveState, Operation,
    PriorState, Progress, Provider, ProviderContext, ProviderError, ResourceConfig, ResourceType, Value, ValuePath,
    attributes_of,
};
use serde_json::json;
use sha2::Digest;

use dataset::*;

const GOOGLE: &str = "https://storage.googleapis.com";

/// Builds the provider from its `providers.gcp` block.
pub fn factory(block: &Value, ctx: &ProviderContext) -> Result<Arc<dyn Provider>, ProviderError> {
    let configured = block.get("endpoint").and_then(Value::as_str).map(str::to_string);
    let emulator = std::env::var("STORAGE_EMULATOR_HOST").ok().filter(|s| !s.is_empty());
    let (endpoint, anonymous) = match (configured, emulator) {
        (Some(e), _) => (e, true),
        (None, Some(e)) => (e, true),
        (None, None) => (GOOGLE.to_string(), false),
    };
    let endpoint = if endpoint.contains("://") { endpoint } else { format!("http://{endpoint}") };
    let project = block
        .get("project")
        .and_then(Value::as_str)
        .map(str::to_string)
        .or_else(|| std::env::var("GOOGLE_CLOUD_PROJECT").ok());
    let vertex_endpoint = block
        .get("vertex_endpoint")
        .and_then(Value::as_str)
        .map(str::to_string)
        .or_else(|| std::env::var("VERTEX_ENDPOINT").ok().filter(|s| !s.is_empty()));
    let gcp = Arc::new(Gcp {
        endpoint: endpoint.trim_end_matches('/').to_string(),
        anonymous,
        project,
        region: block.get("region").and_then(Value::as_str).unwrap_or("us-central1").to_string(),
        vertex_endpoint,
        stack: ctx.project.clone(),
        client: tokio::sync::OnceCell::new(),
        vertex: tokio::sync::OnceCell::new(),
        vertex_endpoints: tokio::sync::OnceCell::new(),
        vertex_registry: tokio::sync::OnceCell::new(),
        vertex_online: tokio::sync::OnceCell::new(),
        reads: Default::default(),
    });
    Ok(Arc::new(GcpProvider {
        datasets: dataset::Datasets(gcp.clone()),
        models: model::Models(gcp.clone()),
        endpoints: endpoint::Endpoints(gcp.clone()),
        feature_stores: feature_store::FeatureStores(gcp),
    }))
}

/// The provider: one [`ResourceType`] per kind, over one shared [`Gcp`] context.
pub struct GcpProvider {
    datasets: dataset::Datasets,
    models: model::Models,
    endpoints: endpoint::Endpoints,
    feature_stores: feature_store::FeatureStores,
}

/// What every kind shares: the block's settings, the GCS and Vertex AI clients, the read cache.
pub(crate) struct Gcp {
    endpoint: String,
    anonymous: bool,
    project: Option<String>,
    /// The Vertex AI region (`region` in the block, default us-central1).
    region: String,
    /// The Vertex AI endpoint for a test service (anonymous), else Google's regional one.
    vertex_endpoint: Option<String>,
    /// The mlops project, for ownership labels.
    stack: String,
    client: tokio::sync::OnceCell<Client>,
    vertex: tokio::sync::OnceCell<google_cloud_aiplatform_v1::client::ModelService>,
    vertex_endpoints: tokio::sync::OnceCell<google_cloud_aiplatform_v1::client::EndpointService>,
    vertex_registry: tokio::sync::OnceCell<google_cloud_aiplatform_v1::client::FeatureRegistryService>,
    vertex_online: tokio::sync::OnceCell<google_cloud_aiplatform_v1::client::FeatureOnlineStoreAdminService>,
    /// Artifact metadata `desired` fetched (by model address), for the `read` of the same model.
    reads: mlops_provider_core::ReadCache<Object>,
}

/// `gs://bucket/prefix` → (bucket, prefix); the prefix is empty or ends with `/` for a folder.
pub fn parse_gs(uri: &str, folder: bool) -> Option<(String, String)> {
    let rest = uri.strip_prefix("gs://")?;
    let (bucket, path) = rest.split_once('/').unwrap_or((rest, ""));
    let valid_bucket = (3..=63).contains(&bucket.len())
        && bucket.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'-' | b'_' | b'.'))
        && bucket.as_bytes()[0].is_ascii_alphanumeric()
        && bucket.as_bytes()[bucket.len() - 1].is_ascii_alphanumeric();
    if !valid_bucket {
        return None;
    }
    let path = if folder && !path.is_empty() && !path.ends_with('/') { format!("{path}/") } else { path.to_string() };
    if !folder && path.is_empty() {
        return None;
    }
    Some((bucket.to_string(), path))
}

use mlops_provider_core::error_chain as chain;

fn status(e: &GcsError) -> Option<u16> {
    match e {
        GcsError::Response(r) => Some(r.code),
        GcsError::HttpClient(e) => e.status().map(|s| s.as_u16()),
        _ => None,
    }
}

fn transient(e: &GcsError) -> bool {
    match e {
        GcsError::Response(r) => r.code == 429 || r.code >= 500,
        GcsError::HttpClient(e) => {
            e.is_connect() || e.is_timeout() || e.status().is_some_and(|s| s.as_u16() == 429 || s.is_server_error())
        }
        GcsError::HttpMiddleware(_) => true,
        _ => false,
    }
}

impl Gcp {
    async fn client(&self) -> Result<&Client, ProviderError> {
        self.client
            .get_or_try_init(|| async {
                let http = reqwest::Client::builder()
                    .connect_timeout(Duration::from_secs(3))
                    .timeout(Duration::from_secs(300))
                    .build()
                    .map_err(|e| ProviderError::new(ErrorKind::Unavailable, format!("HTTP client: {}", chain(&e))))?;
                let config = ClientConfig {
                    http: Some(reqwest_middleware::ClientBuilder::new(http).build()),
                    storage_endpoint: self.endpoint.clone(),
                    project_id: self.project.clone(),
                    ..Default::default()
                };
                let config = if self.anonymous {
                    config.anonymous()
                } else {
                    config.with_auth().await.map_err(|e| {
                        ProviderError::new(
                            ErrorKind::Unavailable,
                            format!(
                                "no Google credentials ({}); set GOOGLE_APPLICATION_CREDENTIALS or run `gcloud auth application-default login`",
                                chain(&e)
                            ),
                        )
                    })?
                };
                Ok(Client::new(config))
            })
            .await
    }

    /// One API call with bounded retries on transient failures.
    async fn call<T, F, Fut>(&self, what: &str, f: F) -> Result<T, CallError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, GcsError>>,
    {
        let backoff = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(200))
            .with_max_delay(Duration::from_secs(2))
            .with_max_times(3);
        f.retry(backoff).when(transient).await.map_err(|e| CallError {
            status: status(&e),
            error: ProviderError::new(
                if transient(&e) {
                    ErrorKind::Unavailable
                } else if status(&e) == Some(412) {
                    ErrorKind::Conflict
                } else {
                    ErrorKind::Failed
                },
                format!("GCS at {}: {what}: {}", self.endpoint, chain(&e)),
            ),
        })
    }

    async fn list(&self, bucket: &str, prefix: &str) -> Result<Vec<Object>, ProviderError> {
        self.list_with(bucket, prefix, false).await
    }

    /// Every generation GCS keeps under `prefix`, current and noncurrent.
    async fn generations(&self, bucket: &str, prefix: &str) -> Result<Vec<Object>, ProviderError> {
        self.list_with(bucket, prefix, true).await
    }

    async fn list_with(&self, bucket: &str, prefix: &str, versions: bool) -> Result<Vec<Object>, ProviderError> {
        let client = self.client().await?;
        let mut out = Vec::new();
        let mut page_token = None;
        loop {
            let req = ListObjectsRequest {
                bucket: bucket.to_string(),
                prefix: (!prefix.is_empty()).then(|| prefix.to_string()),
                versions: versions.then_some(true),
                page_token: page_token.clone(),
                ..Default::default()
            };
            let resp = self
                .call(&format!("list gs://{bucket}/{prefix}"), || client.list_objects(&req))
                .await
                .map_err(|e| e.error)?;
            out.extend(resp.items.unwrap_or_default());
            match resp.next_page_token {
                Some(t) if !t.is_empty() => page_token = Some(t),
                _ => break,
            }
        }
        Ok(out)
    }

    /// The newest kept generation of `name` whose checksums are `entry`'s, if the bucket still has one.
    async fn generation_with(&self, bucket: &str, name: &str, entry: &Value) -> Result<Option<i64>, ProviderError> {
        let client = self.client().await?;
        let mut best: Option<i64> = None;
        let mut page_token = None;
        loop {
            let req = ListObjectsRequest {
                bucket: bucket.to_string(),
                prefix: Some(name.to_string()),
                versions: Some(true),
                page_token: page_token.clone(),
                ..Default::default()
            };
            let resp = self
                .call(&format!("list the generations of gs://{bucket}/{name}"), || client.list_objects(&req))
                .await
                .map_err(|e| e.error)?;
            for o in resp.items.unwrap_or_default() {
                let same = file_entry(
                    o.md5_hash.as_deref().unwrap_or_default(),
                    o.crc32c.as_deref().unwrap_or_default(),
                    o.size.max(0) as u64,
                ) == *entry;
                if o.name == name && same && best.is_none_or(|b| o.generation > b) {
                    best = Some(o.generation);
                }
            }
            match resp.next_page_token {
                Some(t) if !t.is_empty() => page_token = Some(t),
                _ => return Ok(best),
            }
        }
    }

    async fn bucket_exists(&self, bucket: &str) -> Result<bool, ProviderError> {
        let client = self.client().await?;
        let req = GetBucketRequest { bucket: bucket.to_string(), ..Default::default() };
        match self.call(&format!("get bucket {bucket}"), || client.get_bucket(&req)).await {
            Ok(_) => Ok(true),
            Err(e) if e.status == Some(404) => Ok(false),
            Err(e) => Err(e.error),
        }
    }

    async fn ensure_bucket(&self, bucket: &str, labels: &Value, progress: &dyn Progress) -> Result<(), ProviderError> {
        let client = self.client().await?;
        let req = GetBucketRequest { bucket: bucket.to_string(), ..Default::default() };
        match self.call(&format!("get bucket {bucket}"), || client.get_bucket(&req)).await {
            Ok(b) => {
                if !b.versioning.as_ref().is_some_and(|v| v.enabled) {
                    progress.report(&format!("turning on object versioning on gs://{bucket}"));
                    let patch = PatchBucketRequest {
                        bucket: bucket.to_string(),
                        metadata: Some(BucketPatchConfig {
                            versioning: Some(Versioning { enabled: true }),
                            ..Default::default()
                        }),
                        ..Default::default()
                    };
                    self.call(&format!("enable versioning on {bucket}"), || client.patch_bucket(&patch))
                        .await
                        .map_err(|e| e.error)?;
                }
                Ok(())
            }
            Err(e) if e.status == Some(404) => {
                progress.report(&format!("creating bucket gs://{bucket} with object versioning"));
                let all_labels = self.owned_labels(string_map(Some(labels)));
                let insert = InsertBucketRequest {
                    name: bucket.to_string(),
                    param: InsertBucketParam {
                        project: self.project.clone().unwrap_or_default(),
                        ..Default::default()
                    },
                    bucket: BucketCreationConfig {
                        versioning: Some(Versioning { enabled: true }),
                        labels: Some(all_labels),
                        ..Default::default()
                    },
                };
                match self.call(&format!("create bucket {bucket}"), || client.insert_bucket(&insert)).await {
                    Ok(_) => Ok(()),
                    // Another dataset of this apply, in the same bucket, created it a moment earlier.
                    Err(e) if e.status == Some(409) => Ok(()),
                    Err(e) => Err(e.error),
                }
            }
            Err(e) => Err(e.error),
        }
    }

    /// Deletes `name` only if it is still at `generation`; `false` when it is gone or was rewritten.
    async fn delete_at(&self, bucket: &str, name: &str, generation: Option<i64>) -> Result<bool, ProviderError> {
        let client = self.client().await?;
        let del = DeleteObjectRequest {
            bucket: bucket.to_string(),
            object: name.to_string(),
            if_generation_match: generation,
            ..Default::default()
        };
        match self.call(&format!("delete gs://{bucket}/{name}"), || client.delete_object(&del)).await {
            Ok(()) => Ok(true),
            Err(e) if matches!(e.status, Some(404) | Some(412)) => Ok(false),
            Err(e) => Err(e.error),
        }
    }
}

/// The string entries of a spec's `labels` map.
pub(crate) fn string_map(v: Option<&Value>) -> Vec<(String, String)> {
    v.and_then(Value::as_object)
        .map(|m| m.iter().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string()))).collect())
        .unwrap_or_default()
}

impl Gcp {
    /// Refuses `what` (e.g. "Vertex model NAME") unless it carries this stack's `mlops-project`
    /// label: when `adopting` an object lineage does not know, pointing at `mlops import`;
    /// otherwise (a delete) saying it was left alone.
    pub(crate) fn require_ours(
        &self,
        labels: &HashMap<String, String>,
        what: &str,
        adopting: bool,
    ) -> Result<(), ProviderError> {
        let found = labels.get("mlops-project");
        if found == Some(&self.stack) {
            return Ok(());
        }
        let message = if adopting {
            format!(
                "{what} exists and is not this stack's (label mlops-project is {found:?}); `mlops import` adopts it"
            )
        } else {
            format!("{what} is not labelled mlops-project={}; it was left alone", self.stack)
        };
        Err(ProviderError::new(ErrorKind::Conflict, message))
    }

    /// `labels` with the marks of what this stack owns: `managed-by: mlops`, `mlops-project`.
    pub(crate) fn owned_labels(&self, labels: impl IntoIterator<Item = (String, String)>) -> HashMap<String, String> {
        let mut out: HashMap<String, String> = labels.into_iter().collect();
        out.insert("managed-by".into(), "mlops".into());
        out.insert("mlops-project".into(), self.stack.clone());
        out
    }
}

struct CallError {
    status: Option<u16>,
    error: ProviderError,
}

#[async_trait]
impl Provider for GcpProvider {
    fn name(&self) -> &str {
        "gcp"
    }

    fn resource(&self, kind: Kind) -> Option<&dyn ResourceType> {
        Some(match kind {
            Kind::Dataset => &self.datasets,
            Kind::Model => &self.models,
            Kind::Endpoint => &self.endpoints,
            Kind::FeatureStore => &self.feature_stores,
        })
    }

    fn runs_images(&self) -> bool {
        true
    }

    fn version_attributes(&self) -> &'static [&'static str] {
        &["files", "artifact_digest", "generation", "crc32c", "md5", "size"]
    }

    fn traffic_attributes(&self) -> &'static [&'static str] {
        &["traffic", "replicas"]
    }

    fn rollout_attributes(&self) -> &'static [&'static str] {
        &["serving"]
    }
}

/// The location a resource's lineage recorded (`uri` of a dataset, `artifact` of a model).
pub(crate) fn recorded_uri(prior: Option<&PriorState>) -> Option<&str> {
    prior.and_then(|p| p.attributes.get("uri").or_else(|| p.attributes.get("artifact"))).and_then(Value::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gs_uris() {
        assert_eq!(parse_gs("gs://my-bucket/a/b", true), Some(("my-bucket".into(), "a/b/".into())));
        assert_eq!(parse_gs("gs://my-bucket", true), Some(("my-bucket".into(), "".into())));
        assert_eq!(parse_gs("gs://my-bucket/m.tar.gz", false), Some(("my-bucket".into(), "m.tar.gz".into())));
        assert_eq!(parse_gs("gs://my-bucket/", false), None);
        assert_eq!(parse_gs("gs://Bad_Bucket/x", true), None);
        assert_eq!(parse_gs("s3://b/x", true), None);
    }

    #[test]
    fn checksums_match_gcs_encoding() {
        let dir = std::env::temp_dir().join(format!("mlops-gcp-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("f");
        std::fs::write(&p, b"hello world").unwrap();
        let (md5, crc, size) = checksums(&p).unwrap();
        // Values GCS reports for "hello world".
        assert_eq!(md5, "XrY7u+Ae7tCTyyK7j1rNww==");
        assert_eq!(crc, "yZRlqg==");
        assert_eq!(size, 11);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
