//! GCS datasets: a folder of objects synced from `source`, each file pinned by its checksums and
//! generation; restores come from the generations a versioned bucket keeps.

use super::*;
use mlops_provider_core::dvc;

/// The checksums GCS reports: base64 md5, base64 big-endian crc32c, and the size.
pub(crate) fn checksums(path: &Path) -> Result<(String, String, u64), ProviderError> {
    let mut f = std::fs::File::open(path)
        .map_err(|e| ProviderError::invalid(format!("cannot read {}: {e}", path.display())))?;
    let (mut md5, mut crc, mut size) = (md5::Md5::new(), 0u32, 0u64);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = f.read(&mut buf).map_err(|e| ProviderError::invalid(format!("cannot read {}: {e}", path.display())))?;
        if n == 0 {
            break;
        }
        md5.update(&buf[..n]);
        crc = crc32c::crc32c_append(crc, &buf[..n]);
        size += n as u64;
    }
    let b64 = base64::engine::general_purpose::STANDARD;
    Ok((b64.encode(md5.finalize()), b64.encode(crc.to_be_bytes()), size))
}

pub(crate) fn file_entry(md5: &str, crc32c: &str, size: u64) -> Value {
    json!({ "md5": md5, "crc32c": crc32c, "size": size })
}

/// A source file's manifest entry, as `desired` writes it.
pub(crate) fn entry_of(path: &Path) -> Result<Value, ProviderError> {
    let (md5, crc, size) = checksums(path)?;
    Ok(file_entry(&md5, &crc, size))
}

impl Gcp {
    pub(crate) fn dataset_location(config: &ResourceConfig) -> Result<(String, String), ProviderError> {
        let uri = config.str("uri").unwrap_or_default();
        parse_gs(uri, true).ok_or_else(|| {
            ProviderError::invalid(format!("`{uri}` is not a gs://bucket/prefix URI")).at(ValuePath::key("uri"))
        })
    }

    pub(crate) async fn dataset_desired(&self, config: &ResourceConfig) -> Result<Desired, ProviderError> {
        let mut d = Desired::default();
        Self::dataset_location(config)?;
        d.attributes.insert("uri".into(), json!(config.str("uri")));
        mlops_provider_core::dataset_manifest(config, entry_of, &mut d).await?;
        Ok(d)
    }

    pub(crate) async fn dataset_read(&self, uri: &str) -> Result<Option<LiveState>, ProviderError> {
        let Some((bucket, prefix)) = parse_gs(uri, true) else { return Ok(None) };
        if !self.bucket_exists(&bucket).await? {
            return Ok(None);
        }
        let objects = self.list(&bucket, &prefix).await?;
        let mut files = serde_json::Map::new();
        let mut generations = serde_json::Map::new();
        let mut manifest = sha2::Sha256::new();
        for o in &objects {
            let Some(rel) = o.name.strip_prefix(&prefix) else { continue };
            if rel.is_empty() || rel.ends_with('/') {
                continue;
            }
            let md5 = o.md5_hash.clone().unwrap_or_default();
            let crc = o.crc32c.clone().unwrap_or_default();
            files.insert(rel.to_string(), file_entry(&md5, &crc, o.size.max(0) as u64));
            generations.insert(rel.to_string(), json!(o.generation));
            manifest.update(format!("{rel}\0{}\0{md5}\0{crc}\0{}\n", o.generation, o.size).as_bytes());
        }
        let version = format!("sha256:{}", hex::encode(manifest.finalize()));
        let mut attributes = Attributes::new();
        attributes.insert("uri".into(), json!(uri));
        attributes.insert("files".into(), Value::Object(files));
        // Not desired (the spec cannot know them), so only drift shows them: a rewrite behind our back.
        attributes.insert("generations".into(), Value::Object(generations));
        let outputs = attributes_of(
            json!({ "bucket": bucket, "prefix": prefix, "version": version, "object_count": objects.len() }),
        );
        Ok(Some(LiveState { attributes, outputs }))
    }

    pub(crate) async fn dataset_apply(
        &self,
        req: &ApplyRequest<'_>,
        progress: &dyn Progress,
    ) -> Result<LiveState, ProviderError> {
        let (bucket, prefix) = Self::dataset_location(req.config)?;
        self.ensure_bucket(&bucket, req.config.body.get("labels").unwrap_or(&Value::Null), progress).await?;
        let client = self.client().await?;
        let want = req.desired.attributes.get("files").and_then(Value::as_object).cloned().unwrap_or_default();
        let live_gens = req
            .live
            .and_then(|l| l.attributes.get("generations"))
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let (mut uploaded, mut deleted) = (0usize, 0usize);
        let mlops_provider_core::SyncPlan { writes, total_bytes: total } = mlops_provider_core::sync_plan(req)?;
        let mut done = 0u64;
        let mut restored = 0usize;
        for (rel, path, entry) in &writes {
            let name = format!("{prefix}{rel}");
            // Read, then checksummed: what is uploaded is what was compared with the plan.
            let bytes = match path.is_file() {
                true => Some(
                    tokio::fs::read(&path)
                        .await
                        .map_err(|e| ProviderError::invalid(format!("cannot read {}: {e}", path.display())))?,
                ),
                false => None,
            };
            let have = if bytes.is_some() { Some(entry_of(path)?) } else { None };
            let (Some(bytes), true) = (bytes, have.as_ref() == Some(entry)) else {
                // Bytes the source moved on from (a rollback, a promotion, or an edit since the
                // plan): GCS may have kept them; otherwise the plan cannot be applied as made.
                let Some(generation) = self.generation_with(&bucket, &name, entry).await? else {
                    return Err(ProviderError::new(
                        ErrorKind::Conflict,
                        format!(
                            "{} changed since the plan was made, and gs://{bucket}/{name} keeps no generation with the planned bytes; uploaded {uploaded} object(s) before stopping",
                            path.display()
                        ),
                    ));
                };
                let copy = CopyObjectRequest {
                    source_bucket: bucket.clone(),
                    source_object: name.clone(),
                    source_generation: Some(generation),
                    destination_bucket: bucket.clone(),
                    destination_object: name.clone(),
                    if_generation_match: Some(live_gens.get(rel).and_then(Value::as_i64).unwrap_or(0)),
                    ..Default::default()
                };
                let o = self
                    .call(&format!("restore gs://{bucket}/{name} from generation {generation}"), || {
                        client.copy_object(&copy)
                    })
                    .await
                    .map_err(|e| e.error)?;
                progress.report(&format!(
                    "restored gs://{bucket}/{name} from generation {generation} (now {})",
                    o.generation
                ));
                restored += 1;
                continue;
            };
            let size = entry.get("size").and_then(Value::as_u64).unwrap_or(bytes.len() as u64);
            // 0 means "must not exist yet": a concurrent writer makes the upload fail, not vanish.
            let expected = live_gens.get(rel).and_then(Value::as_i64).unwrap_or(0);
            let upload = UploadObjectRequest {
                bucket: bucket.clone(),
                if_generation_match: Some(expected),
                ..Default::default()
            };
            let meta = Object {
                name: name.clone(),
                bucket: bucket.clone(),
                content_type: Some("application/octet-stream".into()),
                metadata: Some(HashMap::from([("mlops-project".to_string(), self.stack.clone())])),
                ..Default::default()
            };
            let kind = UploadType::Multipart(Box::new(meta));
            let result = self
                .call(&format!("upload gs://{bucket}/{name}"), || client.upload_object(&upload, bytes.clone(), &kind))
                .await;
            match result {
                Ok(o) => {
                    uploaded += 1;
                    done += size;
                    progress.transfer(done, total);
                    progress.report(&format!("uploaded gs://{bucket}/{name} (generation {})", o.generation));
                }
                Err(e) if e.status == Some(412) => {
                    return Err(ProviderError::new(
                        ErrorKind::Conflict,
                        format!(
                            "gs://{bucket}/{name} was written by someone else since the plan (expected generation {expected}); \
                             stopped after {uploaded} upload(s), nothing was overwritten. Run `mlops plan` again"
                        ),
                    ));
                }
                Err(e) => return Err(e.error),
            }
        }
        if req.config.body.get("prune").and_then(Value::as_bool).unwrap_or(false)
            && req.config.local_path("source").is_some()
        {
            for (rel, generation) in &live_gens {
                if want.contains_key(rel) {
                    continue;
                }
                let name = format!("{prefix}{rel}");
                if self.delete_at(&bucket, &name, generation.as_i64()).await? {
                    deleted += 1;
                } else {
                    progress.report(&format!("left gs://{bucket}/{name}: it is gone or changed since the plan"));
                }
            }
        }
        progress.report(&format!(
            "{uploaded} object(s) uploaded, {restored} restored from kept generations, {deleted} deleted"
        ));
        self.dataset_read(req.config.str("uri").unwrap_or_default()).await?.ok_or_else(|| {
            ProviderError::failed(format!("gs://{bucket}/{prefix} is missing right after it was written"))
        })
    }
}

/// Datasets on GCS: the objects under a `gs://bucket/prefix/`, in a bucket whose object
/// versioning keeps every earlier generation (so a delete destroys nothing).
pub(crate) struct Datasets(pub(crate) Arc<Gcp>);

#[async_trait]
impl ResourceType for Datasets {
    fn check(&self, config: &ResourceConfig) -> Vec<ConfigDiagnostic> {
        if dvc::is_dvc(config) {
            return dvc::check(config);
        }
        let diag = ConfigDiagnostic::unsupported;
        match config.str("uri") {
            None => vec![diag(
                ValuePath::root(),
                format!("{} is on gcp and needs a `uri`", config.address),
                "add `uri: gs://BUCKET/PREFIX/`",
            )],
            Some(uri) if parse_gs(uri, true).is_none() => vec![diag(
                ValuePath::key("uri"),
                format!("`{uri}` is not a valid gs://bucket/prefix URI"),
                "bucket names are 3-63 lowercase letters, digits, `-`, `_` and `.`",
            )],
            _ => vec![],
        }
    }

    async fn desired(&self, config: &ResourceConfig, _deps: &Dependencies) -> Result<Desired, ProviderError> {
        if dvc::is_dvc(config) {
            return dvc::desired(&*self.0, config).await;
        }
        self.0.dataset_desired(config).await
    }

    async fn read(
        &self,
        _address: &Address,
        prior: Option<&PriorState>,
        desired: Option<&Desired>,
    ) -> Result<Option<LiveState>, ProviderError> {
        let is_dvc = |a: &mlops_provider_core::Attributes| a.contains_key("dvc");
        if desired.is_some_and(|d| is_dvc(&d.attributes)) || prior.is_some_and(|p| is_dvc(&p.attributes)) {
            return dvc::read(&*self.0, prior).await;
        }
        match recorded_uri(prior) {
            Some(uri) => self.0.dataset_read(uri).await,
            None => Ok(None),
        }
    }

    async fn apply(&self, request: ApplyRequest<'_>, progress: &dyn Progress) -> Result<LiveState, ProviderError> {
        if dvc::is_dvc(request.config) {
            return dvc::apply(&*self.0, request.config, request.desired).await;
        }
        self.0.dataset_apply(&request, progress).await
    }

    /// Only the objects lineage says we wrote, at the generations we wrote them.
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
        let p = &self.0;
        let uri = prior.attributes.get("uri").and_then(Value::as_str).unwrap_or_default();
        let Some((bucket, prefix)) = parse_gs(uri, true) else { return Ok(()) };
        let gens = prior.attributes.get("generations").and_then(Value::as_object).cloned().unwrap_or_default();
        for (rel, generation) in gens {
            let name = format!("{prefix}{rel}");
            // Checked here too, not only by the precondition: the object must still be the
            // generation mlops wrote, marked with this stack's project.
            let current = p.artifact(&format!("gs://{bucket}/{name}"), None).await.ok().flatten();
            let ours = current.as_ref().is_some_and(|o| {
                Some(o.generation) == generation.as_i64()
                    && o.metadata.as_ref().and_then(|m| m.get("mlops-project")) == Some(&p.stack)
            });
            if !ours {
                progress.report(&format!(
                    "left gs://{bucket}/{name}: it is gone, or not the object mlops wrote (another generation or owner)"
                ));
                continue;
            }
            if p.delete_at(&bucket, &name, generation.as_i64()).await? {
                progress.report(&format!("deleted gs://{bucket}/{name}"));
            } else {
                progress.report(&format!("left gs://{bucket}/{name}: it is gone or changed since mlops wrote it"));
            }
        }
        Ok(())
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
        let (bucket, prefix) = Gcp::dataset_location(config)?;
        let want = desired.attributes.get("files").and_then(Value::as_object).cloned().unwrap_or_default();
        let mut gone = Vec::new();
        for rel in mlops_provider_core::not_in_source(config, &want, entry_of)? {
            if self.0.generation_with(&bucket, &format!("{prefix}{rel}"), &want[&rel]).await?.is_none() {
                gone.push(rel);
            }
        }
        if gone.is_empty() {
            return Ok(());
        }
        Err(mlops_provider_core::unrestorable_files(&gone, &format!("gs://{bucket}/{prefix}"), "generations"))
    }

    async fn import(&self, _config: &ResourceConfig, _id: &str) -> Result<LiveState, ProviderError> {
        Err(ProviderError::invalid(
            "the gcp provider does not import datasets: the next apply adopts the objects under the `uri`",
        ))
    }
}
