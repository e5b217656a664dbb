//! Model artifacts on GCS: an object pinned by its generation at plan time.

use std::collections::{BTreeMap, BTreeSet};

use super::*;

impl Gcp {
    /// The artifact's current metadata, or its metadata at `generation`.
    pub(crate) async fn artifact(&self, uri: &str, generation: Option<i64>) -> Result<Option<Object>, ProviderError> {
        let (bucket, object) = parse_gs(uri, false).ok_or_else(|| {
            ProviderError::invalid(format!("`{uri}` is not a gs://bucket/object URI")).at(ValuePath::key("artifact"))
        })?;
        let client = self.client().await?;
        let req = GetObjectRequest { bucket, object, generation, ..Default::default() };
        match self.call(&format!("get {uri}"), || client.get_object(&req)).await {
            Ok(o) => Ok(Some(o)),
            Err(e) if e.status == Some(404) => Ok(None),
            Err(e) => Err(e.error),
        }
    }

    /// The SHA-256 (hex) of object `object` of `bucket` at `generation`, streamed.
    async fn object_sha256(
        &self,
        bucket: &str,
        object: &str,
        generation: Option<i64>,
    ) -> Result<String, ProviderError> {
        use futures_util::StreamExt;
        use gcloud_storage::http::objects::download::Range;
        let client = self.client().await?;
        let req = GetObjectRequest { bucket: bucket.into(), object: object.into(), generation, ..Default::default() };
        let what = format!("read gs://{bucket}/{object}");
        let whole = Range::default();
        let mut stream =
            self.call(&what, || client.download_streamed_object(&req, &whole)).await.map_err(|e| e.error)?;
        let mut hash = sha2::Sha256::new();
        while let Some(chunk) = stream.next().await {
            let chunk =
                chunk.map_err(|e| ProviderError::failed(format!("GCS at {}: {what}: {}", self.endpoint, chain(&e))))?;
            hash.update(&chunk);
        }
        Ok(hex::encode(hash.finalize()))
    }

    /// The SHA-256 of every file of the artifact `desired` pinned, at its pinned generations.
    pub(crate) async fn artifact_sha256(
        &self,
        desired: &Attributes,
    ) -> Result<BTreeMap<String, String>, ProviderError> {
        let uri = desired.get("artifact").and_then(Value::as_str).unwrap_or_default();
        let mut out = BTreeMap::new();
        if is_folder(uri) {
            let (bucket, prefix) = parse_gs(uri, true).unwrap_or_default();
            for (name, e) in desired.get("files").and_then(Value::as_object).into_iter().flatten() {
                let generation = e.get("generation").and_then(Value::as_i64);
                out.insert(name.clone(), self.object_sha256(&bucket, &format!("{prefix}{name}"), generation).await?);
            }
        } else {
            let (bucket, object) = parse_gs(uri, false).unwrap_or_default();
            let generation = desired.get("generation").and_then(Value::as_i64);
            out.insert(".".into(), self.object_sha256(&bucket, &object, generation).await?);
        }
        Ok(out)
    }

    pub(crate) fn model_attributes(uri: &str, o: &Object) -> Attributes {
        let md5 = o.md5_hash.clone().unwrap_or_default();
        attributes_of(json!({
            "artifact": uri,
            "generation": o.generation,
            "artifact_digest": format!("md5:{md5}"),
            "crc32c": o.crc32c.clone().unwrap_or_default(),
            "size": o.size,
        }))
    }

    pub(crate) fn model_outputs(uri: &str, o: &Object) -> Attributes {
        attributes_of(json!({ "version": o.generation, "pinned_uri": format!("{uri}#{}", o.generation) }))
    }

    /// A folder artifact as it is now (the MLflow model format, a KServe storageUri): every object
    /// under it at its current generation; `None` when it holds none.
    pub(crate) async fn folder_now(&self, uri: &str) -> Result<Option<(Attributes, Attributes)>, ProviderError> {
        let (bucket, prefix) = parse_gs(uri, true).ok_or_else(|| {
            ProviderError::invalid(format!("`{uri}` is not a gs://bucket/folder/ URI")).at(ValuePath::key("artifact"))
        })?;
        let files: BTreeMap<String, Value> = self
            .list(&bucket, &prefix)
            .await?
            .into_iter()
            .filter(|o| !o.name.ends_with('/'))
            .map(|o| (o.name[prefix.len()..].to_string(), folder_entry(&o)))
            .collect();
        Ok((!files.is_empty()).then(|| folder_pin(uri, files)))
    }
}

/// Whether a model artifact names a folder (`gs://bucket/path/`) rather than one object.
pub(crate) fn is_folder(uri: &str) -> bool {
    uri.ends_with('/')
}

/// A folder manifest entry: the object's generation and checksums.
fn folder_entry(o: &Object) -> Value {
    json!({
        "generation": o.generation,
        "md5": o.md5_hash.clone().unwrap_or_default(),
        "crc32c": o.crc32c.clone().unwrap_or_default(),
        "size": o.size,
    })
}

/// A folder pinned as the manifest of its objects: `files` (name → generation and checksums),
/// its digest over names and contents (the same bytes uploaded again are the same version), the
/// total size; its version is the digest.
pub(crate) fn folder_pin(uri: &str, files: BTreeMap<String, Value>) -> (Attributes, Attributes) {
    let content: BTreeMap<&String, Value> = files
        .iter()
        .map(|(name, e)| (name, json!({ "md5": e.get("md5"), "crc32c": e.get("crc32c"), "size": e.get("size") })))
        .collect();
    let digest =
        format!("sha256:{}", hex::encode(sha2::Sha256::digest(serde_json::to_vec(&content).unwrap_or_default())));
    let size: i64 = files.values().filter_map(|e| e.get("size").and_then(Value::as_i64)).sum();
    let outputs = attributes_of(json!({ "version": format!("manifest {}", &digest[7..19]), "pinned_uri": uri }));
    (attributes_of(json!({ "artifact": uri, "files": files, "artifact_digest": digest, "size": size })), outputs)
}

/// The files of `recorded` (a folder manifest) that `now` does not hold at their recorded generation.
fn moved_files(recorded: Option<&Value>, now: Option<&Value>) -> Vec<String> {
    let Some(recorded) = recorded.and_then(Value::as_object) else { return vec![] };
    recorded
        .iter()
        .filter(|(name, e)| {
            now.and_then(|n| n.get(name.as_str())).and_then(|n| n.get("generation")) != e.get("generation")
        })
        .map(|(name, _)| name.clone())
        .collect()
}

impl Gcp {
    /// A folder model as lineage pinned it: the recorded objects GCS still keeps at their recorded
    /// generations (one gone is a difference the plan shows), with the Vertex model it recorded.
    async fn folder_read(&self, uri: &str, prior: Option<&PriorState>) -> Result<Option<LiveState>, ProviderError> {
        let (bucket, prefix) = parse_gs(uri, true).unwrap_or_default();
        let kept: BTreeSet<(String, i64)> =
            self.generations(&bucket, &prefix).await?.into_iter().map(|o| (o.name, o.generation)).collect();
        let recorded = prior.and_then(|p| p.attributes.get("files")).and_then(Value::as_object);
        let files: BTreeMap<String, Value> = recorded
            .into_iter()
            .flatten()
            .filter(|(name, e)| {
                e.get("generation")
                    .and_then(Value::as_i64)
                    .is_some_and(|g| kept.contains(&(format!("{prefix}{name}"), g)))
            })
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if files.is_empty() {
            return Ok(None);
        }
        let (mut attributes, mut outputs) = folder_pin(uri, files);
        for key in ["framework", "image"] {
            if let Some(v) = prior.and_then(|p| p.attributes.get(key)) {
                attributes.insert(key.into(), v.clone());
            }
        }
        if let Some(name) = prior.and_then(|p| p.outputs.get("vertex_model")).and_then(Value::as_str)
            && let Some((vertex, out)) = self.vertex_read(name).await?
        {
            attributes.insert("vertex".into(), vertex);
            outputs.extend(out);
        }
        Ok(Some(LiveState { attributes, outputs }))
    }

    /// Pins a folder model: what it holds now must be what was planned.
    async fn folder_apply(
        &self,
        request: &ApplyRequest<'_>,
        uri: &str,
        progress: &dyn Progress,
    ) -> Result<LiveState, ProviderError> {
        let want = &request.desired.attributes;
        let now = self.folder_now(uri).await?;
        let (mut attributes, mut outputs) = match now {
            Some(pin) if pin.0.get("files") == want.get("files") => pin,
            now => {
                let moved = moved_files(want.get("files"), now.as_ref().and_then(|(a, _)| a.get("files")));
                let what = if moved.is_empty() { "objects were added".to_string() } else { moved.join(", ") };
                return Err(ProviderError::new(
                    ErrorKind::Conflict,
                    format!("{uri} changed since the plan ({what}): plan again"),
                ));
            }
        };
        let digest = attributes.get("artifact_digest").and_then(Value::as_str).unwrap_or_default().to_string();
        progress.report(&format!("pinned {uri} at manifest {digest}"));
        for key in ["framework", "image"] {
            if let Some(v) = want.get(key) {
                attributes.insert(key.into(), v.clone());
            }
        }
        self.vertex_sync(request, &mut attributes, &mut outputs, progress).await?;
        Ok(LiveState { attributes, outputs })
    }

    /// Brings the Vertex model to what `request` wants, or out of the registry when `vertex:`
    /// left the spec.
    async fn vertex_sync(
        &self,
        request: &ApplyRequest<'_>,
        attributes: &mut Attributes,
        outputs: &mut Attributes,
        progress: &dyn Progress,
    ) -> Result<(), ProviderError> {
        let recorded = request.prior.and_then(|p| p.outputs.get("vertex_model")).and_then(Value::as_str);
        let live_vertex = request.live.and_then(|l| l.attributes.get("vertex"));
        if let Some(want) = request.desired.attributes.get("vertex") {
            let live = live_vertex.zip(recorded);
            let (vertex, out) = self.vertex_apply(request.address, want, live, progress).await?;
            attributes.insert("vertex".into(), vertex);
            outputs.extend(out);
        } else if let Some(name) = recorded {
            // `vertex:` left the spec: the model leaves the registry.
            self.vertex_delete(name, progress).await?;
        }
        Ok(())
    }
}

/// Models on gcp: a GCS artifact pinned at a generation, optionally registered in the Vertex AI
/// Model Registry (`vertex:`).
pub(crate) struct Models(pub(crate) Arc<Gcp>);

#[async_trait]
impl ResourceType for Models {
    async fn artifact_sha256(
        &self,
        _config: &ResourceConfig,
        desired: &Desired,
    ) -> Result<Option<BTreeMap<String, String>>, ProviderError> {
        self.0.artifact_sha256(&desired.attributes).await.map(Some)
    }

    fn check(&self, config: &ResourceConfig) -> Vec<ConfigDiagnostic> {
        let diag = ConfigDiagnostic::unsupported;
        let mut out = match config.str("artifact") {
            Some(a) if parse_gs(a, false).is_some() => vec![],
            Some(a) => vec![diag(
                ValuePath::key("artifact"),
                format!("`{a}` is not a gs://bucket/object URI"),
                "a model on gcp pins a GCS object: `artifact: gs://BUCKET/path/model.tar.gz`",
            )],
            None => vec![],
        };
        if config.body.get("vertex").is_some() && config.str("image").is_none() {
            out.push(diag(
                ValuePath::key("vertex"),
                format!("{} goes to the Vertex AI Model Registry, which needs a serving container", config.address),
                "set the model's `image` (its serving container image)",
            ));
        }
        out
    }

    async fn desired(&self, config: &ResourceConfig, _deps: &Dependencies) -> Result<Desired, ProviderError> {
        let p = &self.0;
        // Resolved at plan time: the plan shows new bytes behind an unchanged URI.
        let uri = config.str("artifact").unwrap_or_default();
        let mut attributes = if is_folder(uri) {
            p.folder_now(uri).await?.map(|(a, _)| a).ok_or_else(|| {
                ProviderError::invalid(format!("the model artifact folder {uri} holds no objects"))
                    .at(ValuePath::key("artifact"))
            })?
        } else {
            let o = p.artifact(uri, None).await?.ok_or_else(|| {
                ProviderError::invalid(format!("the model artifact {uri} does not exist"))
                    .at(ValuePath::key("artifact"))
            })?;
            let a = Gcp::model_attributes(uri, &o);
            p.reads.keep(config.address.to_string(), o);
            a
        };
        for key in ["framework", "image"] {
            if let Some(v) = config.body.get(key) {
                attributes.insert(key.into(), v.clone());
            }
        }
        let vertex = Gcp::vertex_desired(config, &attributes);
        let mut d = Desired { attributes, ..Default::default() };
        if let Some(v) = vertex {
            d.attributes.insert("vertex".into(), v);
            d.expected_wait_secs = Some(120);
        }
        Ok(d)
    }

    async fn read(
        &self,
        address: &Address,
        prior: Option<&PriorState>,
        _desired: Option<&Desired>,
    ) -> Result<Option<LiveState>, ProviderError> {
        let p = &self.0;
        if let Some(uri) = recorded_uri(prior).filter(|u| is_folder(u)) {
            return p.folder_read(uri, prior).await;
        }
        let (Some(uri), Some(generation)) =
            (recorded_uri(prior), prior.and_then(|p| p.attributes.get("generation")).and_then(Value::as_i64))
        else {
            return Ok(None);
        };
        // Live is the pinned generation, as long as GCS still has it; when the current object
        // `desired` just read is that generation, it is the answer.
        let current = p.reads.take(&address.to_string());
        let pinned = match current {
            Some(o)
                if o.generation == generation
                    && parse_gs(uri, false).is_some_and(|(b, n)| b == o.bucket && n == o.name) =>
            {
                Some(o)
            }
            _ => p.artifact(uri, Some(generation)).await?,
        };
        let Some(o) = pinned else { return Ok(None) };
        let mut attributes = Gcp::model_attributes(uri, &o);
        for key in ["framework", "image"] {
            if let Some(v) = prior.and_then(|p| p.attributes.get(key)) {
                attributes.insert(key.into(), v.clone());
            }
        }
        let mut outputs = Gcp::model_outputs(uri, &o);
        // The Vertex model lineage recorded: its default version now.
        if let Some(name) = prior.and_then(|p| p.outputs.get("vertex_model")).and_then(Value::as_str)
            && let Some((vertex, out)) = p.vertex_read(name).await?
        {
            attributes.insert("vertex".into(), vertex);
            outputs.extend(out);
        }
        Ok(Some(LiveState { attributes, outputs }))
    }

    async fn apply(&self, request: ApplyRequest<'_>, progress: &dyn Progress) -> Result<LiveState, ProviderError> {
        let p = &self.0;
        // What `desired` saw before this change is not what a later read must see.
        p.reads.take(&request.address.to_string());
        // The planned URI: the spec's, or the one a rollback recorded.
        let uri = request.desired.attributes.get("artifact").and_then(Value::as_str).unwrap_or_default();
        if is_folder(uri) {
            return p.folder_apply(&request, uri, progress).await;
        }
        let want = request.desired.attributes.get("generation").and_then(Value::as_i64);
        let o = p
            .artifact(uri, None)
            .await?
            .ok_or_else(|| ProviderError::failed(format!("the model artifact {uri} no longer exists")))?;
        // What a server reads is the current object: the planned generation must still be it.
        if let Some(g) = want.filter(|g| *g != o.generation) {
            return Err(ProviderError::new(
                ErrorKind::Conflict,
                format!("{uri} changed since the plan (planned generation {g}, now {}): plan again", o.generation),
            ));
        }
        progress.report(&format!("pinned {uri} at generation {}", o.generation));
        let mut attributes = Gcp::model_attributes(uri, &o);
        for key in ["framework", "image"] {
            if let Some(v) = request.desired.attributes.get(key) {
                attributes.insert(key.into(), v.clone());
            }
        }
        let mut outputs = Gcp::model_outputs(uri, &o);
        p.vertex_sync(&request, &mut attributes, &mut outputs, progress).await?;
        Ok(LiveState { attributes, outputs })
    }

    /// A pin owns nothing remote: forgetting it is the delete; a Vertex model goes.
    async fn delete(
        &self,
        _address: &Address,
        prior: &PriorState,
        progress: &dyn Progress,
    ) -> Result<(), ProviderError> {
        match prior.outputs.get("vertex_model").and_then(Value::as_str) {
            Some(name) => self.0.vertex_delete(name, progress).await,
            None => Ok(()),
        }
    }

    /// A Vertex AI model is deleted with every version it holds; a bare pin destroys nothing.
    fn delete_destroys_data(&self, address: &Address, live: &LiveState) -> Option<String> {
        let name = live.outputs.get("vertex_model").and_then(Value::as_str)?;
        Some(format!("deleting {address} deletes the Vertex AI model {name} and every version in it"))
    }

    /// The recorded URI with its generation (a model moved to a new object per version comes back
    /// to its earlier object), the serving image and framework recorded with it, and its Vertex AI
    /// registration: a version with the recorded artifact, container and aliases is the default
    /// again (uploaded again from those, as a forward change would).
    fn restored_attributes(&self) -> &'static [&'static str] {
        &["artifact", "image", "framework", "vertex"]
    }

    /// The recorded generation must still be the object's current one: whatever serves the model
    /// (KServe's storage initializer, a Vertex AI upload) reads the URI, not a generation, so a
    /// generation GCS keeps behind newer bytes is named with how to put it back, not pretended.
    async fn restorable(
        &self,
        config: &ResourceConfig,
        desired: &Desired,
        _deps: &Dependencies,
    ) -> Result<(), ProviderError> {
        let uri =
            desired.attributes.get("artifact").and_then(Value::as_str).or(config.str("artifact")).unwrap_or_default();
        if is_folder(uri) {
            let now = self.0.folder_now(uri).await?;
            let moved = moved_files(desired.attributes.get("files"), now.as_ref().and_then(|(a, _)| a.get("files")));
            if moved.is_empty() {
                return Ok(());
            }
            return Err(ProviderError::invalid(format!(
                "{uri} no longer holds {} of the recorded objects at their recorded generations ({}), and a server \
                 reads the folder as it is: copy the recorded generations back (`gcloud storage cp {uri}NAME#GENERATION \
                 {uri}NAME`, the generations are in the lineage record) and plan the rollback again",
                moved.len(),
                moved.join(", ")
            )));
        }
        let Some(g) = desired.attributes.get("generation").and_then(Value::as_i64) else { return Ok(()) };
        if self.0.artifact(uri, Some(g)).await?.is_none() {
            return Err(ProviderError::invalid(format!(
                "the recorded generation {g} of {uri} is gone: GCS no longer keeps it"
            )));
        }
        match self.0.artifact(uri, None).await? {
            Some(o) if o.generation == g => Ok(()),
            current => Err(ProviderError::invalid(format!(
                "{uri} {} and a server reads the object, not a generation: GCS keeps the recorded generation {g}; \
                 copy it back (`gcloud storage cp {uri}#{g} {uri}`) and plan the rollback again",
                match current {
                    Some(o) => format!("now holds generation {}, not the recorded {g},", o.generation),
                    None => "no longer exists,".to_string(),
                }
            ))),
        }
    }

    async fn import(&self, config: &ResourceConfig, id: &str) -> Result<LiveState, ProviderError> {
        if config.body.get("vertex").is_none() {
            return Err(ProviderError::invalid(
                "the gcp provider imports Vertex AI models (a model with `vertex:`): a bare pin is adopted by the next apply",
            ));
        }
        self.0.vertex_import(config, id).await
    }
}
