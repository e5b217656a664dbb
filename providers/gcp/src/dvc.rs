//! Datasets versioned by DVC in a GCS remote (`source: dvc://PATH.dvc`): mlops writes nothing.
//! The checks are core's (`mlops_provider_core::dvc`); this is how GCS answers them: an object
//! holds an md5 when its `md5Hash` is that md5 (a composite object has none: its presence is what
//! can be known).

use async_trait::async_trait;
use base64::Engine;
use gcloud_storage::http::objects::download::Range;
use gcloud_storage::http::objects::get::GetObjectRequest;
use mlops_provider_core::ProviderError;

use crate::{Gcp, parse_gs};

#[async_trait]
impl mlops_provider_core::dvc::Remote for Gcp {
    fn scheme(&self) -> &'static str {
        "gs://"
    }

    fn location(&self, url: &str) -> Option<(String, String)> {
        let (bucket, path) = parse_gs(url, true)?;
        let prefix = if path.is_empty() || path.ends_with('/') { path } else { format!("{path}/") };
        Some((bucket, prefix))
    }

    async fn holds(&self, bucket: &str, key: &str, md5: &str) -> Result<bool, ProviderError> {
        let Some(o) = self.artifact(&format!("gs://{bucket}/{key}"), None).await? else { return Ok(false) };
        let Some(b64) = o.md5_hash.filter(|h| !h.is_empty()) else { return Ok(true) };
        let hex = base64::engine::general_purpose::STANDARD.decode(b64).map(hex::encode).unwrap_or_default();
        Ok(hex == md5)
    }

    async fn get(&self, bucket: &str, key: &str) -> Result<Option<Vec<u8>>, ProviderError> {
        let client = self.client().await?;
        let req = GetObjectRequest { bucket: bucket.into(), object: key.into(), ..Default::default() };
        let whole = Range::default();
        match self.call(&format!("read gs://{bucket}/{key}"), || client.download_object(&req, &whole)).await {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.status == Some(404) => Ok(None),
            Err(e) => Err(e.error),
        }
    }
}
