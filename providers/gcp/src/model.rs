//! Model artifacts on GCS: an object pinned by its generation at plan time.

use super::*;

impl GcpProvider {
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
