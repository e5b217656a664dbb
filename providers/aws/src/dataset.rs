//! Datasets on `s3://bucket/prefix/`: a versioned bucket, `source` synced by content digest.
//!
//! The desired state is the source's manifest (key → md5, size: the ETag of a single-part upload);
//! the live state is the prefix's latest object versions. The version recorded in lineage is the
//! manifest of key → VersionId + ETag, so an object added, changed or removed behind our back is
//! drift (`versions` shows old → new VersionIds).

use mlops_provider_core::dvc;
use std::collections::BTreeMap;
use std::io::Read;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{BucketVersioningStatus, Tag, Tagging, VersioningConfiguration};
use base64::Engine;
use mlops_provider_core::{
    ApplyRequest, Desired, LiveState, PriorState, Progress, ProviderError, ResourceConfig, Value, ValuePath,
    attributes_of,
};
use serde_json::json;
use sha2::{Digest, Sha256};

use std::sync::Arc;

use async_trait::async_trait;
use mlops_provider_core::{Address, ConfigDiagnostic, Dependencies, ResourceType};

use crate::{Aws, diag, parse_s3, sdk_error};

/// The bucket and the prefix (empty, or ending with `/`) of an `s3://` URI.
pub(crate) fn bucket_and_prefix(uri: &str) -> Option<(String, String)> {
    let (bucket, key) = parse_s3(uri)?;
    let prefix = if key.is_empty() || key.ends_with('/') { key } else { format!("{key}/") };
    Some((bucket, prefix))
}

fn location(uri: &str) -> Result<(String, String), ProviderError> {
    bucket_and_prefix(uri)
        .ok_or_else(|| ProviderError::invalid(format!("`{uri}` is not an s3:// URI")).at(ValuePath::key("uri")))
}

/// md5 (hex, as S3 reports a single-part upload's ETag) and size of a file.
fn md5_of(path: &std::path::Path) -> Result<(String, u64), ProviderError> {
    let mut f = std::fs::File::open(path)
        .map_err(|e| ProviderError::invalid(format!("cannot read {}: {e}", path.display())))?;
    let (mut h, mut size) = (md5::Md5::new(), 0u64);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = f.read(&mut buf).map_err(|e| ProviderError::invalid(format!("cannot read {}: {e}", path.display())))?;
        if n == 0 {
            break;
        }
        md5::Digest::update(&mut h, &buf[..n]);
        size += n as u64;
    }
    Ok((hex::encode(md5::Digest::finalize(h)), size))
}

pub(crate) async fn desired(_p: &Aws, config: &ResourceConfig) -> Result<Desired, ProviderError> {
    let uri = config.str("uri").unwrap_or_default();
    location(uri)?;
    let mut d = Desired::default();
    d.attributes.insert("uri".into(), json!(uri));
    mlops_provider_core::dataset_manifest(config, entry_of, &mut d).await?;
    Ok(d)
}

pub(crate) async fn read(
    p: &Aws,
    prior: Option<&PriorState>,
    desired: Option<&Desired>,
) -> Result<Option<LiveState>, ProviderError> {
    let uri = desired
        .and_then(|d| d.attributes.get("uri"))
        .or_else(|| prior.and_then(|p| p.attributes.get("uri")))
        .and_then(Value::as_str);
    match uri {
        Some(uri) => read_uri(p, uri).await,
        None => Ok(None),
    }
}

async fn bucket_exists(p: &Aws, bucket: &str) -> Result<bool, ProviderError> {
    let c = p.clients().await?;
    match c.s3.head_bucket().bucket(bucket).send().await {
        Ok(_) => Ok(true),
        Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => Ok(false),
        Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 404) => Ok(false),
        Err(e) => Err(sdk_error(&format!("head bucket s3://{bucket}"), e)),
    }
}

pub(crate) async fn read_uri(p: &Aws, uri: &str) -> Result<Option<LiveState>, ProviderError> {
    let (bucket, prefix) = location(uri)?;
    if !bucket_exists(p, &bucket).await? {
        return Ok(None);
    }
    let c = p.clients().await?;
    let mut files = serde_json::Map::new();
    let mut versions = serde_json::Map::new();
    let (mut key_marker, mut version_marker): (Option<String>, Option<String>) = (None, None);
    loop {
        let out =
            c.s3.list_object_versions()
                .bucket(&bucket)
                .prefix(&prefix)
                .set_key_marker(key_marker.clone())
                .set_version_id_marker(version_marker.clone())
                .send()
                .await
                .map_err(|e| sdk_error(&format!("list s3://{bucket}/{prefix}"), e))?;
        for v in out.versions() {
            if !v.is_latest().unwrap_or(false) {
                continue;
            }
            let Some(rel) = v.key().and_then(|k| k.strip_prefix(&prefix)) else { continue };
            if rel.is_empty() || rel.ends_with('/') {
                continue;
            }
            let etag = v.e_tag().unwrap_or_default().trim_matches('"').to_string();
            files.insert(rel.to_string(), json!({ "etag": etag, "size": v.size().unwrap_or(0) }));
            versions.insert(rel.to_string(), json!(v.version_id().unwrap_or("null")));
        }
        if out.is_truncated() == Some(true) {
            key_marker = out.next_key_marker().map(str::to_string);
            version_marker = out.next_version_id_marker().map(str::to_string);
            if key_marker.is_none() {
                break;
            }
        } else {
            break;
        }
    }
    let mut manifest = Sha256::new();
    for (rel, f) in &files {
        manifest.update(format!("{rel}\0{}\0{}\n", versions[rel], f["etag"]).as_bytes());
    }
    let version = format!("sha256:{}", hex::encode(manifest.finalize()));
    let mut attributes = attributes_of(json!({ "uri": uri, "files": files }));
    // Not desired (the spec cannot know them), so only drift shows them: a rewrite behind our back.
    attributes.insert("versions".into(), Value::Object(versions.clone()));
    let outputs = attributes_of(json!({
        "bucket": bucket,
        "prefix": prefix,
        "version": version,
        "object_count": files.len(),
        "version_ids": versions,
    }));
    Ok(Some(LiveState { attributes, outputs }))
}

/// A version of `key` whose bytes have this ETag (an earlier upload the bucket's versioning
/// keeps), newest first: what a rollback copies back when the source no longer has those bytes.
async fn version_with_etag(p: &Aws, bucket: &str, key: &str, etag: &str) -> Result<Option<String>, ProviderError> {
    let c = p.clients().await?;
    let (mut key_marker, mut version_marker): (Option<String>, Option<String>) = (None, None);
    loop {
        let out =
            c.s3.list_object_versions()
                .bucket(bucket)
                .prefix(key)
                .set_key_marker(key_marker.clone())
                .set_version_id_marker(version_marker.clone())
                .send()
                .await
                .map_err(|e| sdk_error(&format!("list the versions of s3://{bucket}/{key}"), e))?;
        let found = out
            .versions()
            .iter()
            .find(|v| v.key() == Some(key) && v.e_tag().map(|e| e.trim_matches('"')) == Some(etag))
            .and_then(|v| v.version_id().map(str::to_string));
        if found.is_some() {
            return Ok(found);
        }
        if out.is_truncated() != Some(true) || out.next_key_marker().is_none() {
            return Ok(None);
        }
        key_marker = out.next_key_marker().map(str::to_string);
        version_marker = out.next_version_id_marker().map(str::to_string);
    }
}

/// A source file's manifest entry, as `desired` writes it.
fn entry_of(path: &std::path::Path) -> Result<Value, ProviderError> {
    let (md5, size) = md5_of(path)?;
    Ok(json!({ "etag": md5, "size": size }))
}

/// A rollback's files come from the source when it still has their bytes, otherwise from the
/// object version S3 kept: each must be one or the other.
pub(crate) async fn restorable(p: &Aws, config: &ResourceConfig, desired: &Desired) -> Result<(), ProviderError> {
    let (bucket, prefix) = location(config.str("uri").unwrap_or_default())?;
    let want = desired.attributes.get("files").and_then(Value::as_object).cloned().unwrap_or_default();
    let mut gone = Vec::new();
    for rel in mlops_provider_core::not_in_source(config, &want, entry_of)? {
        let etag = want[&rel].get("etag").and_then(Value::as_str).unwrap_or_default();
        if version_with_etag(p, &bucket, &format!("{prefix}{rel}"), etag).await?.is_none() {
            gone.push(rel);
        }
    }
    if gone.is_empty() {
        return Ok(());
    }
    Err(mlops_provider_core::unrestorable_files(&gone, &format!("s3://{bucket}/{prefix}"), "object versions"))
}

pub(crate) async fn apply(
    p: &Aws,
    req: &ApplyRequest<'_>,
    progress: &dyn Progress,
) -> Result<LiveState, ProviderError> {
    let uri = req.config.str("uri").unwrap_or_default();
    let (bucket, prefix) = location(uri)?;
    let c = p.clients().await?;
    if !bucket_exists(p, &bucket).await? {
        progress.report(&format!("creating bucket s3://{bucket}"));
        let mut create = c.s3.create_bucket().bucket(&bucket);
        if c.region != "us-east-1" {
            create = create.create_bucket_configuration(
                aws_sdk_s3::types::CreateBucketConfiguration::builder()
                    .location_constraint(aws_sdk_s3::types::BucketLocationConstraint::from(c.region.as_str()))
                    .build(),
            );
        }
        create.send().await.map_err(|e| sdk_error(&format!("create bucket s3://{bucket}"), e))?;
        // Ownership tags and labels on a bucket mlops created; a shared bucket's tags are its owner's.
        let mut tags = p.tags(req.config);
        tags.insert("mlops:created-by".into(), "mlops".into());
        let tag_set: Vec<Tag> = tags
            .iter()
            .map(|(k, v)| {
                Tag::builder().key(k).value(v).build().map_err(|e| ProviderError::invalid(format!("tag {k}: {e}")))
            })
            .collect::<Result<_, _>>()?;
        let tagging = Tagging::builder()
            .set_tag_set(Some(tag_set))
            .build()
            .map_err(|e| ProviderError::invalid(format!("bucket tags: {e}")))?;
        c.s3.put_bucket_tagging()
            .bucket(&bucket)
            .tagging(tagging)
            .send()
            .await
            .map_err(|e| sdk_error(&format!("tag s3://{bucket}"), e))?;
    }
    // Idempotent: a bucket made by someone else gets versioning too, so every object has a version.
    c.s3.put_bucket_versioning()
        .bucket(&bucket)
        .versioning_configuration(VersioningConfiguration::builder().status(BucketVersioningStatus::Enabled).build())
        .send()
        .await
        .map_err(|e| sdk_error(&format!("turn on versioning of s3://{bucket}"), e))?;
    let want: BTreeMap<String, Value> = req
        .desired
        .attributes
        .get("files")
        .and_then(Value::as_object)
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default();
    let have: BTreeMap<String, Value> = req
        .live
        .and_then(|l| l.attributes.get("files"))
        .and_then(Value::as_object)
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default();
    let (mut uploaded, mut deleted) = (0usize, 0usize);
    let mlops_provider_core::SyncPlan { writes, total_bytes: total } = mlops_provider_core::sync_plan(req)?;
    let mut done = 0u64;
    let mut restored = 0usize;
    for (rel, path, entry) in &writes {
        // The bytes as they are now (checksummed once: their size moves the transfer bar).
        let (md5, size) = if path.is_file() { md5_of(path).map(|(m, s)| (Some(m), s))? } else { (None, 0) };
        let etag = entry.get("etag").and_then(Value::as_str).unwrap_or_default();
        let key = format!("{prefix}{rel}");
        if md5.as_deref() != Some(etag) {
            // A rollback (or promotion) to bytes the source has moved on from: S3 kept them.
            let Some(version) = version_with_etag(p, &bucket, &key, etag).await? else {
                return Err(ProviderError::new(
                    mlops_provider_core::ErrorKind::Conflict,
                    format!("{} changed since the plan was made; plan again", path.display()),
                ));
            };
            c.s3.copy_object()
                .bucket(&bucket)
                .key(&key)
                .copy_source(format!("{bucket}/{key}?versionId={version}"))
                .send()
                .await
                .map_err(|e| sdk_error(&format!("restore s3://{bucket}/{key} from version {version}"), e))?;
            progress.report(&format!("restored s3://{bucket}/{key} from version {version}"));
            restored += 1;
            continue;
        }
        let md5 = md5.unwrap_or_default();
        let body = ByteStream::from_path(&path)
            .await
            .map_err(|e| ProviderError::invalid(format!("cannot read {}: {e}", path.display())))?;
        let md5_b64 = base64::engine::general_purpose::STANDARD.encode(hex::decode(&md5).unwrap_or_default());
        c.s3.put_object()
            .bucket(&bucket)
            .key(&key)
            .body(body)
            .content_md5(md5_b64)
            .send()
            .await
            .map_err(|e| sdk_error(&format!("upload s3://{bucket}/{key}"), e))?;
        uploaded += 1;
        done += size;
        progress.transfer(done, total);
    }
    if req.config.body.get("prune").and_then(Value::as_bool).unwrap_or(false) {
        for rel in have.keys().filter(|k| !want.contains_key(*k)) {
            let key = format!("{prefix}{rel}");
            c.s3.delete_object()
                .bucket(&bucket)
                .key(&key)
                .send()
                .await
                .map_err(|e| sdk_error(&format!("delete s3://{bucket}/{key}"), e))?;
            deleted += 1;
        }
    }
    progress.report(&format!(
        "{uploaded} object(s) uploaded, {restored} restored from kept versions, {deleted} deleted (earlier versions are kept)"
    ));
    read_uri(p, uri).await?.ok_or_else(|| ProviderError::failed(format!("{uri} is missing right after it was written")))
}

/// Deletes the objects lineage says we wrote (a delete marker each: versioning keeps the data).
pub(crate) async fn delete(p: &Aws, prior: &PriorState, progress: &dyn Progress) -> Result<(), ProviderError> {
    let uri = prior.attributes.get("uri").and_then(Value::as_str).unwrap_or_default();
    let Ok((bucket, prefix)) = location(uri) else { return Ok(()) };
    let c = p.clients().await?;
    let versions = prior.attributes.get("versions").and_then(Value::as_object).cloned().unwrap_or_default();
    for rel in versions.keys() {
        let key = format!("{prefix}{rel}");
        c.s3.delete_object()
            .bucket(&bucket)
            .key(&key)
            .send()
            .await
            .map_err(|e| sdk_error(&format!("delete s3://{bucket}/{key}"), e))?;
        progress.report(&format!("deleted s3://{bucket}/{key} (its versions are kept)"));
    }
    Ok(())
}

/// Datasets on S3: the objects under a `uri` prefix, in a bucket whose versioning keeps every
/// object's earlier bytes (so a delete leaves delete markers, and destroys nothing).
pub(crate) struct Datasets(pub(crate) Arc<Aws>);

#[async_trait]
impl ResourceType for Datasets {
    fn check(&self, config: &ResourceConfig) -> Vec<ConfigDiagnostic> {
        if dvc::is_dvc(config) {
            return dvc::check(config);
        }
        match config.str("uri") {
            None => vec![diag(
                ValuePath::root(),
                format!("{} is on aws and needs a `uri`", config.address),
                "add `uri: s3://BUCKET/PREFIX/`",
            )],
            Some(u) if parse_s3(u).is_none() => vec![diag(
                ValuePath::key("uri"),
                format!("`{u}` is not a valid s3://bucket/prefix URI"),
                "bucket names are 3-63 lowercase letters, digits, `-` and `.`",
            )],
            _ => Vec::new(),
        }
    }

    async fn desired(&self, config: &ResourceConfig, _deps: &Dependencies) -> Result<Desired, ProviderError> {
        if dvc::is_dvc(config) {
            return dvc::desired(&*self.0, config).await;
        }
        desired(&self.0, config).await
    }

    async fn read(
        &self,
        _address: &Address,
        prior: Option<&PriorState>,
        desired: Option<&Desired>,
    ) -> Result<Option<LiveState>, ProviderError> {
        let dvc = |a: &mlops_provider_core::Attributes| a.contains_key("dvc");
        if desired.is_some_and(|d| dvc(&d.attributes)) || prior.is_some_and(|p| dvc(&p.attributes)) {
            return dvc::read(&*self.0, prior).await;
        }
        read(&self.0, prior, desired).await
    }

    async fn apply(&self, request: ApplyRequest<'_>, progress: &dyn Progress) -> Result<LiveState, ProviderError> {
        if dvc::is_dvc(request.config) {
            return dvc::apply(&*self.0, request.config, request.desired).await;
        }
        apply(&self.0, &request, progress).await
    }

    async fn delete(
        &self,
        _address: &Address,
        prior: &PriorState,
        progress: &dyn Progress,
    ) -> Result<(), ProviderError> {
        if prior.attributes.contains_key("dvc") {
            progress.report("forgotten: the data stays in its DVC remote, which is DVC's");
            return Ok(());
        }
        delete(&self.0, prior, progress).await
    }

    async fn restorable(
        &self,
        config: &ResourceConfig,
        desired: &Desired,
        _deps: &Dependencies,
    ) -> Result<(), ProviderError> {
        if dvc::is_dvc(config) {
            return dvc::restorable(&*self.0, config, desired).await;
        }
        restorable(&self.0, config, desired).await
    }

    async fn import(&self, config: &ResourceConfig, id: &str) -> Result<LiveState, ProviderError> {
        let found = read_uri(&self.0, id).await?;
        self.0.adopt(config, id, "S3 location", found, None).await
    }
}
