//! Model artifacts on GCS: an object pinned by its generation at plan time.

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
}

/// Models on gcp: a GCS artifact pinned at a generation, optionally registered in the Vertex AI
/// Model Registry (`vertex:`).
pub(crate) struct Models(pub(crate) Arc<Gcp>);

#[async_trait]
impl ResourceType for Models {
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
        let o = p.artifact(uri, None).await?.ok_or_else(|| {
            ProviderError::invalid(format!("the model artifact {uri} does not exist")).at(ValuePath::key("artifact"))
        })?;
        let mut attributes = Gcp::model_attributes(uri, &o);
        for key in ["framework", "image"] {
            if let Some(v) = config.body.get(key) {
                attributes.insert(key.into(), v.clone());
            }
        }
        let vertex = Gcp::vertex_desired(config, &attributes);
        p.reads.keep(config.address.to_string(), o);
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
        let recorded = request.prior.and_then(|p| p.outputs.get("vertex_model")).and_then(Value::as_str);
        let live_vertex = request.live.and_then(|l| l.attributes.get("vertex"));
        if let Some(want) = request.desired.attributes.get("vertex") {
            let live = live_vertex.zip(recorded);
            let (vertex, out) = p.vertex_apply(request.address, want, live, progress).await?;
            attributes.insert("vertex".into(), vertex);
            outputs.extend(out);
        } else if let Some(name) = recorded {
            // `vertex:` left the spec: the model leaves the registry.
            p.vertex_delete(name, progress).await?;
        }
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
