//! Datasets versioned by DVC in an S3 remote (`source: dvc://PATH.dvc`): mlops writes nothing.
//! The checks are core's (`mlops_provider_core::dvc`); this is how S3 answers them: an object
//! holds an md5 when its ETag is that md5 (a multipart upload's ETag, with its `-N` suffix, is
//! not one: its presence is what can be known).

use async_trait::async_trait;
use mlops_provider_core::ProviderError;

use crate::dataset::bucket_and_prefix;
use crate::{Aws, sdk_error};

#[async_trait]
impl mlops_provider_core::dvc::Remote for Aws {
    fn scheme(&self) -> &'static str {
        "s3://"
    }

    fn location(&self, url: &str) -> Option<(String, String)> {
        bucket_and_prefix(url)
    }

    async fn holds(&self, bucket: &str, key: &str, md5: &str) -> Result<bool, ProviderError> {
        let c = self.clients().await?;
        match c.s3.head_object().bucket(bucket).key(key).send().await {
            Ok(o) => {
                let etag = o.e_tag().unwrap_or_default().trim_matches('"').to_string();
                Ok(etag == md5 || etag.contains('-'))
            }
            Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => Ok(false),
            Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 404) => Ok(false),
            Err(e) => Err(sdk_error(&format!("head s3://{bucket}/{key}"), e)),
        }
    }

    async fn get(&self, bucket: &str, key: &str) -> Result<Option<Vec<u8>>, ProviderError> {
        let c = self.clients().await?;
        match c.s3.get_object().bucket(bucket).key(key).send().await {
            Ok(o) => Ok(Some(
                o.body
                    .collect()
                    .await
                    .map_err(|e| ProviderError::failed(format!("read s3://{bucket}/{key}: {e}")))?
                    .to_vec(),
            )),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => Ok(None),
            Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 404) => Ok(None),
            Err(e) => Err(sdk_error(&format!("get s3://{bucket}/{key}"), e)),
        }
    }
}
