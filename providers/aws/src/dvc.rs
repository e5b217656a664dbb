//! Datasets versioned by DVC in an S3 remote (`source: dvc://PATH.dvc`): mlops writes nothing.
//! The plan reads the pointer (DVC's md5, size, file count) and checks that the remote holds the
//! objects `dvc push` sends: the file's object, or the folder's `.dir` listing (its bytes must
//! hash to the listed md5) and every file it lists, each object's ETag its md5. Lineage records
//! the md5 and the remote; a rollback re-points the record to a recorded md5 only while the
//! remote still holds it. Apply records; delete forgets (the remote is DVC's).

use mlops_provider_core::dvc::DvcOutput;
use mlops_provider_core::{
    ConfigDiagnostic, Desired, LiveState, PriorState, ProviderError, ResourceConfig, Value, ValuePath, attributes_of,
};
use serde_json::json;

use crate::dataset::bucket_and_prefix;
use crate::{Aws, diag, sdk_error};

/// What a DVC dataset's settings cannot hold (no I/O): a `uri` or `prune`, which belong to a
/// dataset mlops uploads.
pub(crate) fn check(config: &ResourceConfig) -> Vec<ConfigDiagnostic> {
    let mut out = Vec::new();
    for key in ["uri", "prune"] {
        if config.body.get(key).is_some() {
            out.push(diag(
                ValuePath::key(key),
                format!("`{key}` is for a dataset mlops uploads; a DVC dataset lives in its DVC remote"),
                "remove it: `dvc push` writes the data, mlops checks and records it",
            ));
        }
    }
    out
}

/// The pointer's output, with its remote on S3.
fn output(config: &ResourceConfig) -> Result<(DvcOutput, String, String), ProviderError> {
    let out = mlops_provider_core::dvc::output(config)?.expect("a dvc:// source");
    let Some((bucket, prefix)) = bucket_and_prefix(&out.url) else {
        return Err(ProviderError::invalid(format!(
            "the DVC remote `{}` is {}; the aws provider reads remotes on s3:// (give this dataset the provider of its remote)",
            out.remote, out.url
        ))
        .at(ValuePath::key("source")));
    };
    Ok((out, bucket, prefix))
}

/// The objects of `md5` missing from the remote (each named by its key), after reading the
/// folder listing where `md5` is one. An object whose ETag is not its md5 counts as missing.
async fn missing(
    p: &Aws,
    out: &DvcOutput,
    bucket: &str,
    prefix: &str,
    md5: &str,
) -> Result<Vec<String>, ProviderError> {
    let c = p.clients().await?;
    let head = |key: String, want: String| async move {
        match c.s3.head_object().bucket(bucket).key(&key).send().await {
            Ok(o) => {
                let etag = o.e_tag().unwrap_or_default().trim_matches('"').to_string();
                // A multipart upload's ETag is not an md5 (it has a `-N` suffix): its presence is what can be known.
                Ok(if etag == want || etag.contains('-') { None } else { Some(key) })
            }
            Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => Ok(Some(key)),
            Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 404) => Ok(Some(key)),
            Err(e) => Err(sdk_error(&format!("head s3://{bucket}/{key}"), e)),
        }
    };
    let key = format!("{prefix}{}", out.key_of(md5));
    if !md5.ends_with(".dir") {
        return Ok(head(key, md5.to_string()).await?.into_iter().collect());
    }
    let listing = match c.s3.get_object().bucket(bucket).key(&key).send().await {
        Ok(o) => o
            .body
            .collect()
            .await
            .map_err(|e| ProviderError::failed(format!("read s3://{bucket}/{key}: {e}")))?
            .to_vec(),
        Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => return Ok(vec![key]),
        Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 404) => return Ok(vec![key]),
        Err(e) => return Err(sdk_error(&format!("get s3://{bucket}/{key}"), e)),
    };
    let digest = hex::encode(md5::Digest::finalize(<md5::Md5 as md5::Digest>::new_with_prefix(&listing)));
    if digest != md5.trim_end_matches(".dir") {
        return Err(ProviderError::invalid(format!(
            "s3://{bucket}/{key} is not the folder listing {md5} names (its md5 is {digest})"
        ))
        .at(ValuePath::key("source")));
    }
    let files = mlops_provider_core::dvc::dir_listing(&listing)
        .map_err(|e| ProviderError::invalid(format!("s3://{bucket}/{key}: {e}")).at(ValuePath::key("source")))?;
    let mut gone = Vec::new();
    for file_md5 in files.values() {
        gone.extend(head(format!("{prefix}{}", out.key_of(file_md5)), file_md5.clone()).await?);
    }
    Ok(gone)
}

fn refuse_missing(out: &DvcOutput, bucket: &str, gone: &[String], what: &str) -> ProviderError {
    ProviderError::invalid(format!(
        "{what}: the DVC remote `{}` (s3://{bucket}) lacks {} object(s) of {} ({}); run `dvc push`",
        out.remote,
        gone.len(),
        out.md5,
        gone.iter().take(3).cloned().collect::<Vec<_>>().join(", ")
    ))
    .at(ValuePath::key("source"))
}

fn attributes(config: &ResourceConfig, dvc: Value) -> mlops_provider_core::Attributes {
    let mut a = attributes_of(json!({ "source": config.str("source"), "dvc": dvc }));
    if let Some(labels) = config.body.get("labels") {
        a.insert("labels".into(), labels.clone());
    }
    if let Some(d) = config.body.get("description") {
        a.insert("description".into(), d.clone());
    }
    a
}

/// The pointer's version, once the remote is found to hold all of it.
pub(crate) async fn desired(p: &Aws, config: &ResourceConfig) -> Result<Desired, ProviderError> {
    let (out, bucket, prefix) = output(config)?;
    let gone = missing(p, &out, &bucket, &prefix, &out.md5).await?;
    if !gone.is_empty() {
        return Err(refuse_missing(&out, &bucket, &gone, &format!("{} is not pushed", out.pointer.display())));
    }
    Ok(Desired { attributes: attributes(config, out.attribute()), ..Default::default() })
}

/// The recorded version, while the remote still holds it (there is nothing else to read: the
/// pointer is the spec's, the remote DVC's). Gone from the remote: `None`, and the plan says so.
pub(crate) async fn read(p: &Aws, prior: Option<&PriorState>) -> Result<Option<LiveState>, ProviderError> {
    let Some(recorded) = prior.and_then(|p| p.attributes.get("dvc")) else { return Ok(None) };
    let Some(output) = DvcOutput::from_attribute(recorded) else { return Ok(None) };
    let Some((bucket, prefix)) = bucket_and_prefix(&output.url) else { return Ok(None) };
    if !missing(p, &output, &bucket, &prefix, &output.md5).await?.is_empty() {
        return Ok(None);
    }
    let attributes = prior.map(|p| p.attributes.clone()).unwrap_or_default();
    Ok(Some(LiveState { attributes, outputs: attributes_of(json!({ "version": output.md5 })) }))
}

/// A rollback's recorded md5 must still be in the remote.
pub(crate) async fn restorable(p: &Aws, config: &ResourceConfig, desired: &Desired) -> Result<(), ProviderError> {
    let (out, bucket, prefix) = output(config)?;
    let Some(md5) = desired.attributes.get("dvc").and_then(|d| d.get("md5")).and_then(Value::as_str) else {
        return Ok(());
    };
    let gone = missing(p, &out, &bucket, &prefix, md5).await?;
    if gone.is_empty() {
        return Ok(());
    }
    Err(refuse_missing(&out, &bucket, &gone, "the recorded version cannot be re-pointed to"))
}

/// Applying records what the plan found: the objects are checked again, nothing is written.
pub(crate) async fn apply(p: &Aws, config: &ResourceConfig, desired: &Desired) -> Result<LiveState, ProviderError> {
    restorable(p, config, desired).await?;
    let md5 = desired.attributes.get("dvc").and_then(|d| d.get("md5")).cloned().unwrap_or_default();
    Ok(LiveState { attributes: desired.attributes.clone(), outputs: attributes_of(json!({ "version": md5 })) })
}
