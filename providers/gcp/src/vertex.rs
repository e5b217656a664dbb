//! The Vertex AI Model Registry: a gcp model with `vertex:` is also a Vertex model, uploaded from
//! its pinned artifact (the artifact's folder as `artifactUri`) with the model's `image` as its
//! serving container. New bytes (another generation) or another image upload a new version of
//! the same model (`parentModel`), which becomes the default; older versions are kept. Labels,
//! display name and aliases change in place. The model's resource name and version id are in
//! lineage; only a model labelled with this stack's project is deleted.
//!
//! Spoken through the official client (`google-cloud-aiplatform-v1`, REST), waiting for its
//! long-running operations with `google-cloud-lro`. Endpoint: `vertex_endpoint` in the provider
//! block, else `VERTEX_ENDPOINT` (both anonymous, for the test service), else
//! `https://REGION-aiplatform.googleapis.com` with Application Default Credentials.

use std::collections::BTreeMap;

use google_cloud_aiplatform_v1::client::ModelService;
use google_cloud_aiplatform_v1::model::{Model, ModelContainerSpec};
use google_cloud_lro::Poller;

use super::*;

/// Labels mlops puts on every Vertex model it uploads (not shown as the spec's labels).
pub(crate) const OWN_LABELS: [&str; 3] = ["managed-by", "mlops-project", "mlops-source"];

pub(crate) fn vertex_error(what: &str, e: google_cloud_aiplatform_v1::Error) -> ProviderError {
    let kind = match e.status().map(|s| s.code) {
        Some(google_cloud_gax::error::rpc::Code::InvalidArgument | google_cloud_gax::error::rpc::Code::NotFound) => {
            ErrorKind::Invalid
        }
        Some(google_cloud_gax::error::rpc::Code::AlreadyExists | google_cloud_gax::error::rpc::Code::Aborted) => {
            ErrorKind::Conflict
        }
        _ if e.is_connect() || e.is_timeout() || e.is_io() => ErrorKind::Unavailable,
        _ => ErrorKind::Failed,
    };
    ProviderError::new(kind, format!("{what}: {}", chain(&e)))
}

pub(crate) fn not_found(e: &google_cloud_aiplatform_v1::Error) -> bool {
    e.status().is_some_and(|s| s.code == google_cloud_gax::error::rpc::Code::NotFound)
}

/// A Vertex model id from a spec name: lowercase letters, digits and `-`.
fn model_id(name: &str) -> String {
    name.to_ascii_lowercase().chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect()
}

/// The folder holding an artifact object: what Vertex serves from.
fn artifact_folder(uri: &str) -> String {
    match uri.rfind('/') {
        Some(i) => uri[..=i].to_string(),
        None => uri.to_string(),
    }
}

impl Gcp {
    pub(crate) fn location(&self) -> String {
        format!("projects/{}/locations/{}", self.project.as_deref().unwrap_or("-"), self.region)
    }

    /// A Vertex AI client builder at the test service (anonymous) or Google's regional endpoint.
    pub(crate) fn vertex_builder<F>(
        &self,
        b: google_cloud_gax::client_builder::ClientBuilder<F, google_cloud_auth::credentials::Credentials>,
    ) -> google_cloud_gax::client_builder::ClientBuilder<F, google_cloud_auth::credentials::Credentials> {
        match &self.vertex_endpoint {
            Some(url) => b
                .with_endpoint(url.clone())
                .with_credentials(google_cloud_auth::credentials::anonymous::Builder::new().build()),
            None => b.with_endpoint(format!("https://{}-aiplatform.googleapis.com", self.region)),
        }
    }

    async fn models(&self) -> Result<&ModelService, ProviderError> {
        self.vertex
            .get_or_try_init(|| async {
                let b = self.vertex_builder(ModelService::builder());
                b.build().await.map_err(|e| ProviderError::invalid(format!("Vertex AI client: {}", chain(&e))))
            })
            .await
    }

    /// The `vertex` attribute a model's spec asks for, from its pinned artifact.
    pub(crate) fn vertex_desired(config: &ResourceConfig, pinned: &Attributes) -> Option<Value> {
        let v = config.body.get("vertex")?;
        let uri = config.str("artifact").unwrap_or_default();
        let aliases: Vec<Value> = v.get("aliases").and_then(Value::as_array).cloned().unwrap_or_default();
        Some(json!({
            "display_name": v.get("display_name").and_then(Value::as_str).unwrap_or(&config.address.name),
            "image": config.str("image"),
            "artifact_uri": artifact_folder(uri),
            // The bytes and the container a version is made of (a label value: digits, `-`, hex).
            // An object's generation, or a folder's manifest digest (its first 16 hex digits).
            "source": pinned
                .get("generation")
                .map(|g| g.to_string())
                .or_else(|| {
                    let digest = pinned.get("artifact_digest")?.as_str()?.strip_prefix("sha256:")?;
                    Some(digest[..16].to_string())
                })
                .map(|g| {
                    let image = config.str("image").unwrap_or_default();
                    format!("{g}-{}", &hex::encode(sha2::Sha256::digest(image.as_bytes()))[..8])
                }),
            "aliases": aliases,
            "labels": config.body.get("labels").cloned().unwrap_or_else(|| json!({})),
        }))
    }

    /// The Vertex model lineage recorded (its default version), as the `vertex` attribute, with
    /// its name and version as outputs; `None` when it is gone.
    pub(crate) async fn vertex_read(&self, name: &str) -> Result<Option<(Value, Attributes)>, ProviderError> {
        let client = self.models().await?;
        let m = match client.get_model().set_name(name).send().await {
            Ok(m) => m,
            Err(e) if not_found(&e) => return Ok(None),
            Err(e) => return Err(vertex_error(&format!("get Vertex model {name}"), e)),
        };
        Ok(Some(Self::vertex_state(&m)))
    }

    fn vertex_state(m: &Model) -> (Value, Attributes) {
        let labels: BTreeMap<&String, &String> =
            m.labels.iter().filter(|(k, _)| !OWN_LABELS.contains(&k.as_str())).collect();
        let aliases: Vec<&String> = m.version_aliases.iter().filter(|a| *a != "default").collect();
        let attribute = json!({
            "display_name": m.display_name,
            "image": m.container_spec.as_ref().map(|c| c.image_uri.clone()),
            "artifact_uri": m.artifact_uri,
            "source": m.labels.get("mlops-source"),
            "aliases": aliases,
            "labels": labels,
        });
        let outputs = attributes_of(json!({ "vertex_model": m.name, "vertex_version": m.version_id }));
        (attribute, outputs)
    }

    /// Brings the Vertex model to `want` from `live` (its `vertex` attribute, and its resource
    /// name when it exists): uploads it, uploads a new version, or updates labels and aliases.
    pub(crate) async fn vertex_apply(
        &self,
        address: &Address,
        want: &Value,
        live: Option<(&Value, &str)>,
        progress: &dyn Progress,
    ) -> Result<(Value, Attributes), ProviderError> {
        let client = self.models().await?;
        let s = |k: &str| want.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
        let mut labels = self.owned_labels(string_map(want.get("labels")));
        labels.insert("mlops-source".into(), s("source"));
        let aliases: Vec<String> = want
            .get("aliases")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
            .unwrap_or_default();
        // Not in lineage but there under our id (an apply killed after the upload): adopted when
        // it is this stack's, refused otherwise.
        let found = match live {
            Some(_) => None,
            None => self.unrecorded(&format!("{}/models/{}", self.location(), self.model_id(address))).await?,
        };
        let live = live.or(found.as_ref().map(|(v, n)| (v, n.as_str())));
        let same = |k: &str| live.is_some_and(|(l, _)| l.get(k) == want.get(k));
        let name = match live {
            Some((_, name)) if same("image") && same("artifact_uri") && same("source") => {
                // The same bytes and container: labels, display name and aliases in place.
                if !(same("labels") && same("display_name")) {
                    progress.report(&format!("updating the labels of Vertex model {name}"));
                    let model = Model::new().set_name(name).set_display_name(s("display_name")).set_labels(labels);
                    client
                        .update_model()
                        .set_model(model)
                        .set_update_mask(google_cloud_wkt::FieldMask::default().set_paths(["labels", "display_name"]))
                        .send()
                        .await
                        .map_err(|e| vertex_error(&format!("update Vertex model {name}"), e))?;
                }
                if !same("aliases") {
                    let had: Vec<String> = live
                        .and_then(|(l, _)| l.get("aliases"))
                        .and_then(Value::as_array)
                        .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
                        .unwrap_or_default();
                    let mut merge: Vec<String> = aliases.clone();
                    merge.extend(had.iter().filter(|a| !aliases.contains(a)).map(|a| format!("-{a}")));
                    progress.report(&format!("setting the aliases of Vertex model {name}: {}", aliases.join(", ")));
                    client
                        .merge_version_aliases()
                        .set_name(name)
                        .set_version_aliases(merge)
                        .send()
                        .await
                        .map_err(|e| vertex_error(&format!("set the aliases of Vertex model {name}"), e))?;
                }
                name.to_string()
            }
            _ => {
                let model = Model::new()
                    .set_display_name(s("display_name"))
                    .set_artifact_uri(s("artifact_uri"))
                    .set_container_spec(ModelContainerSpec::new().set_image_uri(s("image")))
                    .set_labels(labels)
                    .set_version_aliases(aliases);
                let mut upload = client.upload_model().set_parent(self.location()).set_model(model);
                match live {
                    Some((_, parent)) => {
                        progress.report(&format!("uploading a new version of Vertex model {parent} (long-running)"));
                        upload = upload.set_parent_model(parent);
                    }
                    None => {
                        let id = self.model_id(address);
                        progress.report(&format!("uploading Vertex model {id} (long-running)"));
                        upload = upload.set_model_id(id);
                    }
                }
                let done = upload
                    .poller()
                    .until_done()
                    .await
                    .map_err(|e| vertex_error(&format!("upload Vertex model for {address}"), e))?;
                progress.report(&format!("Vertex model {} version {}", done.model, done.model_version_id));
                done.model
            }
        };
        self.vertex_read(&name)
            .await?
            .ok_or_else(|| ProviderError::failed(format!("Vertex model {name} is missing right after it was applied")))
    }

    /// An existing Vertex model adopted into lineage (`mlops import`): its default version,
    /// labelled as this stack's, with the spec's artifact pinned as it is now.
    pub(crate) async fn vertex_import(&self, config: &ResourceConfig, id: &str) -> Result<LiveState, ProviderError> {
        let name =
            if id.starts_with("projects/") { id.to_string() } else { format!("{}/models/{id}", self.location()) };
        let client = self.models().await?;
        let m = match client.get_model().set_name(&name).send().await {
            Ok(m) => m,
            Err(e) if not_found(&e) => {
                return Err(ProviderError::invalid(format!("Vertex model `{name}` does not exist")));
            }
            Err(e) => return Err(vertex_error(&format!("get Vertex model {name}"), e)),
        };
        let labels = self.owned_labels(m.labels.clone());
        client
            .update_model()
            .set_model(Model::new().set_name(&m.name).set_labels(labels))
            .set_update_mask(google_cloud_wkt::FieldMask::default().set_paths(["labels"]))
            .send()
            .await
            .map_err(|e| vertex_error(&format!("label Vertex model {name}"), e))?;
        let uri = config.str("artifact").unwrap_or_default();
        let o = self
            .artifact(uri, None)
            .await?
            .ok_or_else(|| ProviderError::invalid(format!("the model artifact {uri} does not exist")))?;
        let mut attributes = Self::model_attributes(uri, &o);
        let mut outputs = Self::model_outputs(uri, &o);
        if let Some((vertex, out)) = self.vertex_read(&m.name).await? {
            attributes.insert("vertex".into(), vertex);
            outputs.extend(out);
        }
        Ok(LiveState { attributes, outputs })
    }

    /// The Vertex model id of a spec model: the stack's project and its name.
    fn model_id(&self, address: &Address) -> String {
        model_id(&format!("{}-{}", self.stack, address.name))
    }

    /// A model lineage does not know of at `name`: its state when it is this stack's, a
    /// conflict when it is someone else's, `None` when there is none.
    async fn unrecorded(&self, name: &str) -> Result<Option<(Value, String)>, ProviderError> {
        let client = self.models().await?;
        let m = match client.get_model().set_name(name).send().await {
            Ok(m) => m,
            Err(e) if not_found(&e) => return Ok(None),
            Err(e) => return Err(vertex_error(&format!("get Vertex model {name}"), e)),
        };
        self.require_ours(&m.labels, &format!("Vertex model {name}"), true)?;
        Ok(Some((Self::vertex_state(&m).0, m.name)))
    }

    /// Deletes the Vertex model (every version) when it is this stack's; leaves it otherwise.
    pub(crate) async fn vertex_delete(&self, name: &str, progress: &dyn Progress) -> Result<(), ProviderError> {
        let client = self.models().await?;
        let m = match client.get_model().set_name(name).send().await {
            Ok(m) => m,
            Err(e) if not_found(&e) => return Ok(()),
            Err(e) => return Err(vertex_error(&format!("get Vertex model {name}"), e)),
        };
        self.require_ours(&m.labels, &format!("Vertex model {name}"), false)?;
        progress.report(&format!("deleting Vertex model {name} (long-running)"));
        match client.delete_model().set_name(name).poller().until_done().await {
            Ok(_) => Ok(()),
            Err(e) if not_found(&e) => Ok(()),
            Err(e) => Err(vertex_error(&format!("delete Vertex model {name}"), e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_folders() {
        assert_eq!(model_id("churn_xgb"), "churn-xgb");
        assert_eq!(artifact_folder("gs://b/churn/v1/model.bst"), "gs://b/churn/v1/");
    }
}
