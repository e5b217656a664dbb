//! SageMaker models, and their versions in the model registry.
//!
//! A model's name carries a hash of what SageMaker cannot change in place (image, artifact bytes,
//! role, environment), so a change is a new model under a new name, created before the old one is
//! deleted: the old name goes to `outputs.deposed` and [`finish`] deletes it once every endpoint
//! serving it has moved on. The artifact is pinned at plan time (ETag and VersionId), so new bytes
//! under the same URI are a new model too. `registry: {group, approval}` registers each model
//! version as a versioned Model Package; approval changes in place.

use std::collections::BTreeMap;

use aws_sdk_sagemaker::types::{
    ContainerDefinition, InferenceSpecification, ModelApprovalStatus, ModelPackageContainerDefinition,
};
use mlops_provider_core::{
    ApplyRequest, Desired, LiveState, PriorState, Progress, ProviderError, ResourceConfig, Value, ValuePath,
    attributes_of,
};
use serde_json::json;

use std::sync::Arc;

use async_trait::async_trait;
use mlops_provider_core::{Address, ConfigDiagnostic, Dependencies, ResourceType};

use crate::{
    Aws, diag, error_code, error_message, labels_from_tags, labels_of, parse_s3, sagemaker_name, sdk_error, short_hash,
    str_of,
};

const FRAMEWORK_TAG: &str = "mlops:framework";
const DIGEST_TAG: &str = "mlops:artifact-digest";
const VERSION_TAG: &str = "mlops:artifact-version";

/// Attributes SageMaker cannot change on a model: a change to any is a new model.
const IMMUTABLE: [&str; 7] =
    ["image", "artifact", "artifact_digest", "artifact_version", "execution_role", "environment", "model_name"];

pub(crate) async fn desired(p: &Aws, config: &ResourceConfig) -> Result<Desired, ProviderError> {
    let artifact = config.str("artifact").unwrap_or_default();
    let (bucket, key) = parse_s3(artifact).ok_or_else(|| {
        ProviderError::invalid(format!("`{artifact}` is not an s3:// URI")).at(ValuePath::key("artifact"))
    })?;
    let c = p.clients().await?;
    // Pinned at plan time: new bytes under the same URI are a new model version.
    let head = match c.s3.head_object().bucket(&bucket).key(&key).send().await {
        Ok(h) => h,
        Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 404) => {
            return Err(ProviderError::invalid(format!("the model artifact {artifact} does not exist"))
                .at(ValuePath::key("artifact")));
        }
        Err(e) => return Err(sdk_error(&format!("head {artifact}"), e)),
    };
    let etag = head.e_tag().unwrap_or_default().trim_matches('"').to_string();
    let version = head.version_id().map(str::to_string);
    let environment = config.body.get("environment").cloned().unwrap_or_else(|| json!({}));
    let image = config.body.get("image").cloned().unwrap_or(Value::Null);
    let role = config.body.get("execution_role").cloned().unwrap_or(Value::Null);
    let digest = json!(format!("etag:{etag}"));
    let version = json!(version);
    let hash = short_hash(&[&image, &json!(artifact), &digest, &version, &role, &environment]);
    let mut d = Desired::default();
    let a = &mut d.attributes;
    a.insert("model_name".into(), json!(sagemaker_name(&config.address.name, &hash)));
    a.insert("image".into(), image);
    a.insert("artifact".into(), json!(artifact));
    a.insert("artifact_digest".into(), digest);
    a.insert("artifact_version".into(), version);
    a.insert("size".into(), json!(head.content_length()));
    a.insert("execution_role".into(), role);
    a.insert("environment".into(), environment);
    a.insert("labels".into(), json!(labels_of(config)));
    if let Some(f) = config.body.get("framework") {
        a.insert("framework".into(), f.clone());
    }
    if let Some(r) = config.body.get("registry") {
        let approval = r.get("approval").cloned().unwrap_or(json!("PendingManualApproval"));
        a.insert("registry".into(), json!({ "group": r.get("group"), "approval": approval }));
    }
    d.force_new = IMMUTABLE.iter().map(|s| s.to_string()).collect();
    d.force_new.insert("size".into());
    d.create_before_destroy = true;
    Ok(d)
}

/// Whether the recorded artifact bytes are what its URI holds now: SageMaker loads the object
/// when an instance starts and cannot pin a VersionId, so bytes S3 keeps behind newer ones are
/// named with how to put them back, and bytes no version keeps are gone.
async fn restorable(p: &Aws, desired: &Desired) -> Result<(), ProviderError> {
    let want = &desired.attributes;
    let artifact = str_of(want.get("artifact"));
    let Some((bucket, key)) = parse_s3(&artifact) else { return Ok(()) };
    let digest = str_of(want.get("artifact_digest"));
    let c = p.clients().await?;
    let etag = |h: &aws_sdk_s3::operation::head_object::HeadObjectOutput| {
        format!("etag:{}", h.e_tag().unwrap_or_default().trim_matches('"'))
    };
    let now = match c.s3.head_object().bucket(&bucket).key(&key).send().await {
        Ok(h) => Some(etag(&h)),
        Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 404) => None,
        Err(e) => return Err(sdk_error(&format!("head {artifact}"), e)),
    };
    if now.as_deref() == Some(digest.as_str()) {
        return Ok(());
    }
    let version = want.get("artifact_version").and_then(Value::as_str);
    let kept = match version {
        Some(v) => match c.s3.head_object().bucket(&bucket).key(&key).version_id(v).send().await {
            Ok(h) => etag(&h) == digest,
            Err(e) if e.raw_response().is_some_and(|r| matches!(r.status().as_u16(), 400 | 404)) => false,
            Err(e) => return Err(sdk_error(&format!("head {artifact} version {v}"), e)),
        },
        None => false,
    };
    let holds =
        now.map_or_else(|| "no longer exists".to_string(), |n| format!("now holds {n}, not the recorded {digest}"));
    Err(ProviderError::invalid(match (kept, version) {
        (true, Some(v)) => format!(
            "{artifact} {holds}, and SageMaker loads the object, not a version: S3 keeps the recorded version {v}; \
             copy it back (`aws s3api copy-object --bucket {bucket} --key {key} --copy-source {bucket}/{key}?versionId={v}`) \
             and plan the rollback again"
        ),
        _ => format!("{artifact} {holds}, and S3 keeps no version with the recorded bytes: they are gone"),
    }))
}

async fn describe(
    p: &Aws,
    name: &str,
) -> Result<Option<aws_sdk_sagemaker::operation::describe_model::DescribeModelOutput>, ProviderError> {
    let c = p.clients().await?;
    match c.sm.describe_model().model_name(name).send().await {
        Ok(m) => Ok(Some(m)),
        Err(e)
            if error_code(&e).as_deref() == Some("ValidationException")
                && error_message(&e).contains("Could not find") =>
        {
            Ok(None)
        }
        Err(e) => Err(sdk_error(&format!("describe model {name}"), e)),
    }
}

/// The live state of model `name`, with the bookkeeping `outputs` carries from before.
async fn read_named(
    p: &Aws,
    name: &str,
    book: &serde_json::Map<String, Value>,
) -> Result<Option<LiveState>, ProviderError> {
    let Some(m) = describe(p, name).await? else { return Ok(None) };
    let arn = m.model_arn().unwrap_or_default().to_string();
    let tags = p.sm_tags_of(&arn).await?;
    let container = m.primary_container().or_else(|| m.containers().first());
    let env: BTreeMap<String, String> = container
        .and_then(|c| c.environment())
        .map(|e| e.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default();
    let mut a = attributes_of(json!({
        "model_name": name,
        "image": container.and_then(|c| c.image()),
        "artifact": container.and_then(|c| c.model_data_url()),
        "execution_role": m.execution_role_arn(),
        "environment": env,
        "labels": labels_from_tags(&tags),
        "artifact_digest": tags.get(DIGEST_TAG),
        "artifact_version": tags.get(VERSION_TAG).filter(|v| v.as_str() != "null"),
    }));
    if let Some(size) = tags.get("mlops:artifact-size").and_then(|s| s.parse::<i64>().ok()) {
        a.insert("size".into(), json!(size));
    }
    if let Some(f) = tags.get(FRAMEWORK_TAG) {
        a.insert("framework".into(), json!(f));
    }
    let mut outputs = attributes_of(Value::Object(book.clone()));
    outputs.insert("model_name".into(), json!(name));
    outputs.insert("model_arn".into(), json!(arn));
    if let Some(pkg) = book.get("package_arn").and_then(Value::as_str) {
        let c = p.clients().await?;
        match c.sm.describe_model_package().model_package_name(pkg).send().await {
            Ok(d) => {
                a.insert(
                    "registry".into(),
                    json!({
                        "group": d.model_package_group_name(),
                        "approval": d.model_approval_status().map(|s| s.as_str().to_string()),
                    }),
                );
                outputs.insert("version".into(), json!(d.model_package_version()));
            }
            Err(e) if error_code(&e).as_deref() == Some("ValidationException") => {}
            Err(e) => return Err(sdk_error(&format!("describe model package {pkg}"), e)),
        }
    }
    outputs.entry("version".to_string()).or_insert_with(|| json!(name));
    Ok(Some(LiveState { attributes: a, outputs }))
}

fn bookkeeping(prior: Option<&PriorState>) -> serde_json::Map<String, Value> {
    let mut m = serde_json::Map::new();
    if let Some(p) = prior {
        for k in ["deposed", "package_arn", "package_arns", "group_created"] {
            if let Some(v) = p.outputs.get(k) {
                m.insert(k.into(), v.clone());
            }
        }
    }
    m
}

pub(crate) async fn read(
    p: &Aws,
    prior: Option<&PriorState>,
    desired: Option<&Desired>,
) -> Result<Option<LiveState>, ProviderError> {
    // The model in service is the one lineage recorded; without a record, the one the spec names.
    let name = prior
        .and_then(|p| p.outputs.get("model_name").or_else(|| p.attributes.get("model_name")))
        .or_else(|| desired.and_then(|d| d.attributes.get("model_name")))
        .and_then(Value::as_str);
    match name {
        Some(n) => read_named(p, n, &bookkeeping(prior)).await,
        None => Ok(None),
    }
}

pub(crate) async fn import(p: &Aws, id: &str) -> Result<Option<LiveState>, ProviderError> {
    read_named(p, id, &serde_json::Map::new()).await
}

pub(crate) async fn apply(
    p: &Aws,
    req: &ApplyRequest<'_>,
    progress: &dyn Progress,
) -> Result<LiveState, ProviderError> {
    let c = p.clients().await?;
    let want = &req.desired.attributes;
    let name = str_of(want.get("model_name"));
    let live_name = req.live.and_then(|l| l.attributes.get("model_name")).and_then(Value::as_str).map(str::to_string);
    let mut book = bookkeeping(req.prior);
    let mut tags = p.tags(req.config);
    for (tag, key) in [(DIGEST_TAG, "artifact_digest"), (VERSION_TAG, "artifact_version"), (FRAMEWORK_TAG, "framework")]
    {
        if let Some(v) = want.get(key).filter(|v| !v.is_null()) {
            tags.insert(tag.into(), v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string()));
        }
    }
    if let Some(size) = want.get("size").and_then(Value::as_i64) {
        tags.insert("mlops:artifact-size".into(), size.to_string());
    }
    let new_model = live_name.as_deref() != Some(name.as_str());
    if new_model {
        // The bytes under the URI must still be the ones planned (or promoted): SageMaker loads
        // whatever is there when the endpoint starts, and cannot pin a VersionId.
        let artifact = str_of(want.get("artifact"));
        if let Some((bucket, key)) = parse_s3(&artifact) {
            let head =
                c.s3.head_object()
                    .bucket(&bucket)
                    .key(&key)
                    .send()
                    .await
                    .map_err(|e| sdk_error(&format!("head {artifact}"), e))?;
            let now = format!("etag:{}", head.e_tag().unwrap_or_default().trim_matches('"'));
            if want.get("artifact_digest").and_then(Value::as_str) != Some(now.as_str()) {
                return Err(ProviderError::new(
                    mlops_provider_core::ErrorKind::Conflict,
                    format!(
                        "{artifact} no longer holds the planned bytes (planned {}, now {now}); plan again",
                        str_of(want.get("artifact_digest"))
                    ),
                ));
            }
        }
        if describe(p, &name).await?.is_none() {
            progress.report(&format!("creating SageMaker model {name}"));
            let mut container = ContainerDefinition::builder()
                .image(str_of(want.get("image")))
                .model_data_url(str_of(want.get("artifact")));
            for (k, v) in want.get("environment").and_then(Value::as_object).into_iter().flatten() {
                container = container.environment(k, v.as_str().unwrap_or_default());
            }
            c.sm.create_model()
                .model_name(&name)
                .primary_container(container.build())
                .execution_role_arn(str_of(want.get("execution_role")))
                .set_tags(Some(Aws::sm_tags(&tags)))
                .send()
                .await
                .map_err(|e| sdk_error(&format!("create model {name}"), e))?;
        }
        // Create before destroy: the old model stays until its endpoints have moved off it.
        if let Some(old) = live_name {
            let deposed = book.entry("deposed".to_string()).or_insert_with(|| json!([]));
            if let Some(list) = deposed.as_array_mut().filter(|l| !l.iter().any(|v| v.as_str() == Some(old.as_str()))) {
                list.push(json!(old));
            }
            progress.report(&format!("previous model {old} is kept until its endpoints have moved to {name}"));
        }
    } else if let Some(arn) = req.live.and_then(|l| l.outputs.get("model_arn")).and_then(Value::as_str) {
        p.sync_sm_tags(arn, &tags).await?;
    }

    if let Some(reg) = want.get("registry") {
        let group = str_of(reg.get("group"));
        let approval = ModelApprovalStatus::from(str_of(reg.get("approval")).as_str());
        let live_reg = req.live.and_then(|l| l.attributes.get("registry"));
        let same_group = live_reg.and_then(|r| r.get("group")).and_then(Value::as_str) == Some(group.as_str());
        let package = book.get("package_arn").and_then(Value::as_str).map(str::to_string);
        match package {
            Some(pkg) if !new_model && same_group => {
                if live_reg.and_then(|r| r.get("approval")) != reg.get("approval") {
                    progress.report(&format!("setting approval of {pkg} to {}", approval.as_str()));
                    c.sm.update_model_package()
                        .model_package_arn(&pkg)
                        .model_approval_status(approval)
                        .send()
                        .await
                        .map_err(|e| sdk_error(&format!("update model package {pkg}"), e))?;
                }
            }
            _ => {
                ensure_group(p, req.config, &group, &mut book, progress).await?;
                let spec = InferenceSpecification::builder()
                    .containers(
                        ModelPackageContainerDefinition::builder()
                            .image(str_of(want.get("image")))
                            .model_data_url(str_of(want.get("artifact")))
                            .build(),
                    )
                    .supported_content_types("text/csv")
                    .supported_content_types("application/json")
                    .supported_response_mime_types("text/csv")
                    .supported_response_mime_types("application/json")
                    .build();
                let out =
                    c.sm.create_model_package()
                        .model_package_group_name(&group)
                        .model_package_description(format!("{} ({name})", req.address))
                        .inference_specification(spec)
                        .model_approval_status(approval)
                        .send()
                        .await
                        .map_err(|e| sdk_error(&format!("register a version in model package group {group}"), e))?;
                let arn = out.model_package_arn().unwrap_or_default().to_string();
                progress.report(&format!("registered {arn}"));
                book.insert("package_arn".into(), json!(arn));
                let all = book.entry("package_arns".to_string()).or_insert_with(|| json!([]));
                if let Some(list) = all.as_array_mut() {
                    list.push(json!(arn));
                }
            }
        }
    }
    read_named(p, &name, &book)
        .await?
        .ok_or_else(|| ProviderError::failed(format!("model {name} is missing right after it was created")))
}

async fn ensure_group(
    p: &Aws,
    config: &ResourceConfig,
    group: &str,
    book: &mut serde_json::Map<String, Value>,
    progress: &dyn Progress,
) -> Result<(), ProviderError> {
    let c = p.clients().await?;
    match c.sm.describe_model_package_group().model_package_group_name(group).send().await {
        Ok(_) => Ok(()),
        Err(e) if error_code(&e).as_deref() == Some("ValidationException") => {
            progress.report(&format!("creating model package group {group}"));
            c.sm.create_model_package_group()
                .model_package_group_name(group)
                .model_package_group_description(format!("model versions of {} (mlops)", config.address))
                .set_tags(Some(Aws::sm_tags(&p.tags(config))))
                .send()
                .await
                .map_err(|e| sdk_error(&format!("create model package group {group}"), e))?;
            book.insert("group_created".into(), json!(group));
            Ok(())
        }
        Err(e) => Err(sdk_error(&format!("describe model package group {group}"), e)),
    }
}

async fn delete_model(p: &Aws, name: &str, progress: &dyn Progress) -> Result<(), ProviderError> {
    let c = p.clients().await?;
    match describe(p, name).await? {
        Some(m) => p.require_owned("SageMaker model", name, m.model_arn().unwrap_or_default()).await?,
        None => return Ok(()),
    }
    match c.sm.delete_model().model_name(name).send().await {
        Ok(_) => {
            progress.report(&format!("deleted SageMaker model {name}"));
            Ok(())
        }
        Err(e)
            if error_code(&e).as_deref() == Some("ValidationException")
                && error_message(&e).contains("Could not find") =>
        {
            Ok(())
        }
        Err(e) => Err(sdk_error(&format!("delete model {name}"), e)),
    }
}

/// Deletes the models a replacement left, now that nothing serves them.
pub(crate) async fn finish(p: &Aws, state: &LiveState, progress: &dyn Progress) -> Result<LiveState, ProviderError> {
    let deposed: Vec<String> = state
        .outputs
        .get("deposed")
        .and_then(Value::as_array)
        .map(|l| l.iter().filter_map(Value::as_str).map(str::to_string).collect())
        .unwrap_or_default();
    let mut left = Vec::new();
    for name in deposed {
        if let Err(e) = delete_model(p, &name, progress).await {
            progress.report(&format!("could not delete superseded model {name} yet: {}", e.message));
            left.push(json!(name));
        }
    }
    let mut out = state.clone();
    if left.is_empty() {
        out.outputs.remove("deposed");
    } else {
        out.outputs.insert("deposed".into(), Value::Array(left));
    }
    Ok(out)
}

pub(crate) async fn delete(p: &Aws, prior: &PriorState, progress: &dyn Progress) -> Result<(), ProviderError> {
    let c = p.clients().await?;
    let names = prior
        .outputs
        .get("model_name")
        .into_iter()
        .chain(prior.outputs.get("deposed").and_then(Value::as_array).into_iter().flatten())
        .filter_map(Value::as_str)
        .map(str::to_string)
        .collect::<Vec<_>>();
    for name in names {
        delete_model(p, &name, progress).await?;
    }
    // The registry versions mlops registered, and the group if mlops created it and it is now empty.
    for pkg in
        prior.outputs.get("package_arns").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str)
    {
        match c.sm.delete_model_package().model_package_name(pkg).send().await {
            Ok(_) => progress.report(&format!("deleted model package {pkg}")),
            Err(e) if error_code(&e).as_deref() == Some("ValidationException") => {}
            Err(e) => return Err(sdk_error(&format!("delete model package {pkg}"), e)),
        }
    }
    if let Some(group) = prior.outputs.get("group_created").and_then(Value::as_str) {
        match c.sm.delete_model_package_group().model_package_group_name(group).send().await {
            Ok(_) => progress.report(&format!("deleted model package group {group}")),
            Err(e) if error_code(&e).as_deref() == Some("ConflictException") => {
                progress.report(&format!("kept model package group {group}: it holds versions mlops did not register"))
            }
            Err(e) if error_code(&e).as_deref() == Some("ValidationException") => {}
            Err(e) => return Err(sdk_error(&format!("delete model package group {group}"), e)),
        }
    }
    Ok(())
}

/// The SHA-256 (hex) of the artifact `desired` pinned, read at its pinned S3 version, streamed:
/// one object, named `.` as a signed single file is.
async fn artifact_sha256(p: &Aws, desired: &Desired) -> Result<BTreeMap<String, String>, ProviderError> {
    use sha2::Digest;
    let artifact = str_of(desired.attributes.get("artifact"));
    let (bucket, key) = parse_s3(&artifact).unwrap_or_default();
    let c = p.clients().await?;
    let mut get = c.s3.get_object().bucket(&bucket).key(&key);
    if let Some(v) = desired.attributes.get("artifact_version").and_then(Value::as_str) {
        get = get.version_id(v);
    }
    let mut body = get.send().await.map_err(|e| sdk_error(&format!("get {artifact}"), e))?.body;
    let mut hash = sha2::Sha256::new();
    while let Some(chunk) = body.try_next().await.map_err(|e| ProviderError::failed(format!("read {artifact}: {e}")))? {
        hash.update(&chunk);
    }
    Ok(BTreeMap::from([(".".to_string(), hex::encode(hash.finalize()))]))
}

/// SageMaker models, each version an immutable model under a content-hashed name, optionally
/// registered as a model package in a group.
pub(crate) struct Models(pub(crate) Arc<Aws>);

#[async_trait]
impl ResourceType for Models {
    async fn artifact_sha256(
        &self,
        _config: &ResourceConfig,
        desired: &Desired,
    ) -> Result<Option<BTreeMap<String, String>>, ProviderError> {
        artifact_sha256(&self.0, desired).await.map(Some)
    }

    fn check(&self, config: &ResourceConfig) -> Vec<ConfigDiagnostic> {
        let mut out = Vec::new();
        match config.str("artifact") {
            Some(a) if parse_s3(a).is_some_and(|(_, k)| !k.is_empty()) => {}
            Some(a) => out.push(diag(
                ValuePath::key("artifact"),
                format!("`{a}` is not an s3://bucket/key URI"),
                "a SageMaker model loads its artifact from S3: `artifact: s3://BUCKET/path/model.tar.gz`",
            )),
            None => {}
        }
        for (key, help) in [
            (
                "image",
                "the inference container image, e.g. `image: 683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:1.7-1`",
            ),
            (
                "execution_role",
                "the IAM role SageMaker runs the model as: `execution_role: arn:aws:iam::ACCOUNT:role/NAME`",
            ),
        ] {
            if config.body.get(key).is_none() {
                out.push(diag(ValuePath::root(), format!("a SageMaker model needs `{key}`"), help));
            }
        }
        out
    }

    async fn desired(&self, config: &ResourceConfig, _deps: &Dependencies) -> Result<Desired, ProviderError> {
        desired(&self.0, config).await
    }

    async fn read(
        &self,
        _address: &Address,
        prior: Option<&PriorState>,
        desired: Option<&Desired>,
    ) -> Result<Option<LiveState>, ProviderError> {
        read(&self.0, prior, desired).await
    }

    async fn apply(&self, request: ApplyRequest<'_>, progress: &dyn Progress) -> Result<LiveState, ProviderError> {
        apply(&self.0, &request, progress).await
    }

    async fn delete(
        &self,
        _address: &Address,
        prior: &PriorState,
        progress: &dyn Progress,
    ) -> Result<(), ProviderError> {
        delete(&self.0, prior, progress).await
    }

    /// The model package versions mlops registered are deleted with the model: the registry's
    /// history of them (approvals, metrics) is gone.
    fn delete_destroys_data(&self, address: &Address, live: &LiveState) -> Option<String> {
        let n = live.outputs.get("package_arns").and_then(Value::as_array).map_or(0, Vec::len);
        (n > 0).then(|| format!("deleting {address} deletes its {n} model registry version(s)"))
    }

    async fn finish(
        &self,
        _address: &Address,
        state: &LiveState,
        progress: &dyn Progress,
    ) -> Result<LiveState, ProviderError> {
        finish(&self.0, state, progress).await
    }

    /// The recorded model: its name (a hash of what it is), image, artifact, role, environment
    /// and registry approval; made again under that name where it was deleted.
    fn restored_attributes(&self) -> &'static [&'static str] {
        &["model_name", "image", "artifact", "execution_role", "environment", "framework", "registry"]
    }

    async fn restorable(
        &self,
        _config: &ResourceConfig,
        desired: &Desired,
        _deps: &Dependencies,
    ) -> Result<(), ProviderError> {
        restorable(&self.0, desired).await
    }

    async fn import(&self, config: &ResourceConfig, id: &str) -> Result<LiveState, ProviderError> {
        let found = import(&self.0, id).await?;
        let c = self.0.clients().await?;
        let arn =
            c.sm.describe_model().model_name(id).send().await.ok().and_then(|m| m.model_arn().map(str::to_string));
        self.0.adopt(config, id, "SageMaker model", found, arn).await
    }
}
