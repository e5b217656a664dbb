//! The AWS provider: datasets on S3, and SageMaker models (with the model registry), endpoints
//! and feature groups.
//!
//! - Credentials, region and endpoint come from the standard AWS chain (environment, profiles,
//!   SSO, IMDS; `AWS_ENDPOINT_URL` honoured), overridable by the provider block (`region`,
//!   `profile`, `endpoint_url`). Standard retry mode, 3 attempts, 3 s connect timeout; errors
//!   carry the whole cause chain.
//! - Everything created carries the ownership tags `mlops:project` and `mlops:address`.
//! - SageMaker models are immutable: a change creates a model under a new content-hashed name
//!   (create before destroy); the old one is deleted by [`Provider::finish`] once the endpoints
//!   serving it have moved to the new one.
//! - Endpoint configs are immutable too: a change creates a new config, `UpdateEndpoint` switches
//!   to it, and the old config is deleted once the endpoint is InService again; weight- and
//!   capacity-only changes use `UpdateEndpointWeightsAndCapacities`, with no new config.

mod dataset;
mod dvc;
mod ecr;
mod endpoint;
mod feature_group;
mod model;
mod rollout;
mod scaling;

mod schema;
pub use schema::entry;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_smithy_types::error::display::DisplayErrorContext;
use mlops_provider_core::{
    ConfigDiagnostic, ErrorKind, Kind, LiveState, Provider, ProviderContext, ProviderError, ResourceConfig,
    ResourceType, Value, ValuePath,
};
use sha2::{Digest, Sha256};

pub const PROJECT_TAG: &str = "mlops:project";
pub const ADDRESS_TAG: &str = "mlops:address";

/// Builds the provider from its `providers.aws` block.
pub fn factory(block: &Value, ctx: &ProviderContext) -> Result<Arc<dyn Provider>, ProviderError> {
    let s = |k: &str| block.get(k).and_then(Value::as_str).map(str::to_string);
    let aws = Arc::new(Aws {
        region: s("region"),
        profile: s("profile"),
        endpoint_url: s("endpoint_url"),
        project: ctx.project.clone(),
        clients: tokio::sync::OnceCell::new(),
        reads: Default::default(),
    });
    Ok(Arc::new(AwsProvider {
        datasets: dataset::Datasets(aws.clone()),
        models: model::Models(aws.clone()),
        endpoints: endpoint::Endpoints(aws.clone()),
        feature_groups: feature_group::FeatureGroups(aws),
    }))
}

/// The provider: one [`ResourceType`] per kind, over one shared [`Aws`] context.
pub struct AwsProvider {
    datasets: dataset::Datasets,
    models: model::Models,
    endpoints: endpoint::Endpoints,
    feature_groups: feature_group::FeatureGroups,
}

/// What every kind shares: the block's settings, the SDK clients, and the read cache.
pub(crate) struct Aws {
    region: Option<String>,
    profile: Option<String>,
    endpoint_url: Option<String>,
    project: String,
    clients: tokio::sync::OnceCell<Clients>,
    /// Live objects `desired` read (by address: the object's name, whether its autoscaling was
    /// read too, and what was live), for the `read` of the same resource in this run.
    pub(crate) reads: mlops_provider_core::ReadCache<(String, bool, Option<LiveState>)>,
}

pub(crate) struct Clients {
    pub s3: aws_sdk_s3::Client,
    pub sm: aws_sdk_sagemaker::Client,
    /// Application Auto Scaling, for autoscaled endpoints.
    pub aas: aws_sdk_applicationautoscaling::Client,
    /// CloudWatch, to check that the alarms a rollout names exist.
    pub cw: aws_sdk_cloudwatch::Client,
    /// The SDK's configuration, for a client of another region (an ECR image's).
    pub config: aws_config::SdkConfig,
    pub region: String,
    /// Polling starts fast against an emulator, slow against AWS.
    pub emulated: bool,
}

/// An SDK error with its whole cause chain, classified.
pub(crate) fn sdk_error<E, R>(what: &str, e: aws_smithy_runtime_api::client::result::SdkError<E, R>) -> ProviderError
where
    E: std::error::Error + aws_smithy_types::error::metadata::ProvideErrorMetadata + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    use aws_smithy_runtime_api::client::result::SdkError;
    let kind = match &e {
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => ErrorKind::Unavailable,
        SdkError::ServiceError(se) => match se.err().code() {
            Some("ValidationException" | "InvalidParameterValue" | "ResourceNotFound" | "NoSuchBucket") => {
                ErrorKind::Invalid
            }
            Some("ConflictException" | "ResourceInUse") => ErrorKind::Conflict,
            Some("ThrottlingException" | "ServiceUnavailable" | "InternalFailure") => ErrorKind::Unavailable,
            _ => ErrorKind::Failed,
        },
        _ => ErrorKind::Failed,
    };
    let hint = if kind == ErrorKind::Unavailable { " (the AWS endpoint did not answer; retried 3 times)" } else { "" };
    ProviderError::new(kind, format!("{what}: {}{hint}", DisplayErrorContext(&e)))
}

/// The error code of a service error, if the call reached the service.
pub(crate) fn error_code<E, R>(e: &aws_smithy_runtime_api::client::result::SdkError<E, R>) -> Option<String>
where
    E: aws_smithy_types::error::metadata::ProvideErrorMetadata,
{
    match e {
        aws_smithy_runtime_api::client::result::SdkError::ServiceError(se) => se.err().code().map(str::to_string),
        _ => None,
    }
}

/// The error message of a service error.
pub(crate) fn error_message<E, R>(e: &aws_smithy_runtime_api::client::result::SdkError<E, R>) -> String
where
    E: aws_smithy_types::error::metadata::ProvideErrorMetadata,
{
    match e {
        aws_smithy_runtime_api::client::result::SdkError::ServiceError(se) => {
            se.err().message().unwrap_or_default().to_string()
        }
        _ => String::new(),
    }
}

/// Eight hex digits of sha256 over `parts`: the suffix that makes immutable objects' names unique.
pub(crate) fn short_hash(parts: &[&Value]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(serde_json::to_vec(p).expect("values serialize"));
        h.update([0]);
    }
    hex::encode(h.finalize())[..8].to_string()
}

/// A SageMaker name (`^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}`) from a spec name and a suffix.
pub(crate) fn sagemaker_name(base: &str, suffix: &str) -> String {
    let mut b: String = base.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect();
    b.truncate(62 - suffix.len() - 1);
    let b = b.trim_end_matches('-');
    format!("{b}-{suffix}")
}

/// `s3://bucket/key` → (bucket, key).
pub(crate) fn parse_s3(uri: &str) -> Option<(String, String)> {
    let rest = uri.strip_prefix("s3://")?;
    let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
    let ok = (3..=63).contains(&bucket.len())
        && bucket.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && !bucket.starts_with(['-', '.'])
        && !bucket.ends_with(['-', '.']);
    ok.then(|| (bucket.to_string(), key.to_string()))
}

/// A string attribute, or "" when it is absent or not a string.
pub(crate) fn str_of(v: Option<&Value>) -> String {
    v.and_then(Value::as_str).unwrap_or_default().to_string()
}

pub(crate) fn labels_of(config: &ResourceConfig) -> BTreeMap<String, String> {
    config
        .body
        .get("labels")
        .and_then(Value::as_object)
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string())).collect())
        .unwrap_or_default()
}

/// How long to wait before the next poll: quick against an emulator, doubling up to a cap.
pub(crate) fn next_poll(current: Duration, emulated: bool) -> Duration {
    let cap = if emulated { Duration::from_secs(1) } else { Duration::from_secs(15) };
    (current * 2).min(cap)
}

pub(crate) fn first_poll(emulated: bool) -> Duration {
    if emulated { Duration::from_millis(250) } else { Duration::from_secs(5) }
}

impl Aws {
    pub(crate) async fn clients(&self) -> Result<&Clients, ProviderError> {
        self.clients
            .get_or_try_init(|| async {
                let mut loader = aws_config::defaults(BehaviorVersion::latest())
                    .retry_config(RetryConfig::standard().with_max_attempts(3))
                    .timeout_config(
                        TimeoutConfig::builder()
                            .connect_timeout(Duration::from_secs(3))
                            .operation_attempt_timeout(Duration::from_secs(60))
                            .build(),
                    );
                if let Some(r) = &self.region {
                    loader = loader.region(aws_config::Region::new(r.clone()));
                }
                if let Some(p) = &self.profile {
                    loader = loader.profile_name(p);
                }
                if let Some(u) = &self.endpoint_url {
                    loader = loader.endpoint_url(u);
                }
                let config = loader.load().await;
                let region = config.region().map(|r| r.to_string()).ok_or_else(|| {
                    ProviderError::invalid(
                        "no AWS region: set `region` in the aws provider block, AWS_REGION, or a profile's region",
                    )
                })?;
                let emulated = self.endpoint_url.is_some()
                    || std::env::var_os("AWS_ENDPOINT_URL").is_some()
                    || std::env::var_os("AWS_ENDPOINT_URL_S3").is_some();
                // Emulators serve one host: path-style bucket addressing.
                let s3_config = aws_sdk_s3::config::Builder::from(&config).force_path_style(emulated).build();
                Ok(Clients {
                    s3: aws_sdk_s3::Client::from_conf(s3_config),
                    sm: aws_sdk_sagemaker::Client::new(&config),
                    aas: aws_sdk_applicationautoscaling::Client::new(&config),
                    cw: aws_sdk_cloudwatch::Client::new(&config),
                    config: config.clone(),
                    region,
                    emulated,
                })
            })
            .await
    }

    /// Ownership tags plus the resource's labels.
    pub(crate) fn tags(&self, config: &ResourceConfig) -> BTreeMap<String, String> {
        let mut t = labels_of(config);
        t.insert(PROJECT_TAG.into(), self.project.clone());
        t.insert(ADDRESS_TAG.into(), config.address.to_string());
        t
    }

    pub(crate) fn sm_tags(tags: &BTreeMap<String, String>) -> Vec<aws_sdk_sagemaker::types::Tag> {
        tags.iter().map(|(k, v)| aws_sdk_sagemaker::types::Tag::builder().key(k).value(v).build()).collect()
    }

    /// Tags of a SageMaker resource; `mlops:*` tags are kept apart from the user's labels.
    pub(crate) async fn sm_tags_of(&self, arn: &str) -> Result<BTreeMap<String, String>, ProviderError> {
        let c = self.clients().await?;
        let out =
            c.sm.list_tags()
                .resource_arn(arn)
                .send()
                .await
                .map_err(|e| sdk_error(&format!("list tags of {arn}"), e))?;
        Ok(out
            .tags()
            .iter()
            .filter_map(|t| Some((t.key()?.to_string(), t.value().unwrap_or_default().to_string())))
            .collect())
    }

    /// The provider contract's ownership rule: only what carries this stack's ownership tag is
    /// deleted. Another project's object, or one made by hand under a name lineage recorded, is
    /// left alone, with an error saying why.
    pub(crate) async fn require_owned(&self, what: &str, name: &str, arn: &str) -> Result<(), ProviderError> {
        let tags = self.sm_tags_of(arn).await?;
        if tags.get(PROJECT_TAG) == Some(&self.project) {
            return Ok(());
        }
        Err(ProviderError::new(
            ErrorKind::Conflict,
            format!(
                "{what} {name} does not carry this stack's ownership tag ({PROJECT_TAG}={}; it has {}): not deleted, mlops deletes only what it created or imported",
                self.project,
                tags.get(PROJECT_TAG).map(|p| format!("{PROJECT_TAG}={p}")).unwrap_or_else(|| "none".into())
            ),
        ))
    }

    /// Brings a SageMaker resource's tags to `want` (ownership tags included).
    pub(crate) async fn sync_sm_tags(&self, arn: &str, want: &BTreeMap<String, String>) -> Result<(), ProviderError> {
        let c = self.clients().await?;
        let have = self.sm_tags_of(arn).await?;
        let stale: Vec<String> = have.keys().filter(|k| !want.contains_key(*k)).cloned().collect();
        if !stale.is_empty() {
            c.sm.delete_tags()
                .resource_arn(arn)
                .set_tag_keys(Some(stale))
                .send()
                .await
                .map_err(|e| sdk_error(&format!("untag {arn}"), e))?;
        }
        let changed: BTreeMap<String, String> =
            want.iter().filter(|(k, v)| have.get(*k) != Some(*v)).map(|(k, v)| (k.clone(), v.clone())).collect();
        if !changed.is_empty() {
            c.sm.add_tags()
                .resource_arn(arn)
                .set_tags(Some(Self::sm_tags(&changed)))
                .send()
                .await
                .map_err(|e| sdk_error(&format!("tag {arn}"), e))?;
        }
        Ok(())
    }
}

/// User labels out of a tag set.
pub(crate) fn labels_from_tags(tags: &BTreeMap<String, String>) -> Value {
    Value::Object(
        tags.iter()
            .filter(|(k, _)| !k.starts_with("mlops:"))
            .map(|(k, v)| (k.clone(), Value::from(v.clone())))
            .collect(),
    )
}

pub(crate) fn diag(path: ValuePath, message: String, help: &str) -> ConfigDiagnostic {
    ConfigDiagnostic::unsupported(path, message, help)
}

#[async_trait]
impl Provider for AwsProvider {
    fn name(&self) -> &str {
        "aws"
    }

    fn resource(&self, kind: Kind) -> Option<&dyn ResourceType> {
        Some(match kind {
            Kind::Dataset => &self.datasets,
            Kind::Model => &self.models,
            Kind::Endpoint => &self.endpoints,
            Kind::FeatureStore => &self.feature_groups,
        })
    }

    fn runs_images(&self) -> bool {
        true
    }

    /// An ECR image (`ACCOUNT.dkr.ecr.REGION.amazonaws.com/REPO:TAG`): its digest from ECR's
    /// DescribeImages, with the provider's credentials, in the image's region.
    async fn image_digest(&self, image: &str) -> Result<Option<String>, ProviderError> {
        let Some((account, region, repository, tag)) = ecr::parse(image) else { return Ok(None) };
        ecr::digest(&self.models.0, &account, &region, &repository, &tag).await.map(Some)
    }

    fn version_attributes(&self) -> &'static [&'static str] {
        &["files", "artifact_digest", "artifact_version", "size", "dvc"]
    }

    fn traffic_attributes(&self) -> &'static [&'static str] {
        &["traffic", "weights", "capacity", "canary_percent"]
    }

    fn rollout_attributes(&self) -> &'static [&'static str] {
        // The variants' models and instance types: a new endpoint config.
        &["variants"]
    }
}

impl Aws {
    /// An object `mlops import` found (`what` names it when it is missing), adopted: tagged with
    /// this stack's ownership tags (when it has an ARN to tag), so it is this stack's to change
    /// and to delete from now on.
    pub(crate) async fn adopt(
        &self,
        config: &ResourceConfig,
        id: &str,
        what: &str,
        found: Option<LiveState>,
        arn: Option<String>,
    ) -> Result<LiveState, ProviderError> {
        let found = found
            .ok_or_else(|| ProviderError::invalid(format!("{what} `{id}` does not exist in {}", self.where_())))?;
        if let Some(arn) = arn {
            let mut tags = self.sm_tags_of(&arn).await?;
            tags.insert(PROJECT_TAG.into(), self.project.clone());
            tags.insert(ADDRESS_TAG.into(), config.address.to_string());
            self.sync_sm_tags(&arn, &tags).await?;
        }
        Ok(found)
    }
    fn where_(&self) -> String {
        match (&self.region, &self.endpoint_url) {
            (_, Some(u)) => u.clone(),
            (Some(r), None) => r.clone(),
            _ => "the configured AWS account".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_uris() {
        assert_eq!(sagemaker_name("churn_xgb.v2", "0123abcd"), "churn-xgb-v2-0123abcd");
        assert!(sagemaker_name(&"a".repeat(100), "0123abcd").len() <= 63);
        assert_eq!(parse_s3("s3://my-bucket/a/b"), Some(("my-bucket".into(), "a/b".into())));
        assert_eq!(parse_s3("s3://my-bucket"), Some(("my-bucket".into(), "".into())));
        assert_eq!(parse_s3("s3://My_Bucket/x"), None);
        assert_eq!(parse_s3("gs://b/x"), None);
    }
}

/// The SDK crates this provider is built on, for tests that check the backend directly.
pub mod sdk {
    pub use aws_config;
    pub use aws_sdk_s3;
    pub use aws_sdk_sagemaker;
}
