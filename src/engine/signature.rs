//! Model signatures verified at plan time: an OpenSSF model-signing bundle (a sigstore bundle whose
//! DSSE envelope carries an in-toto statement, predicate `https://model_signing/signature/v1.0`,
//! listing every file of the model with its SHA-256), checked against a public key (ECDSA P-256,
//! offline) and against the artifact's bytes on disk. What verified is recorded as the model's
//! [`SIGNATURE`] attribute: the key's id, the bundle's digest and the number of files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use mlops_provider_core::{Attributes, Desired, ProviderError, ResourceConfig, ResourceType, ValuePath};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// The attribute recording a model's verified signature.
pub const SIGNATURE: &str = "signature";

const PREDICATE: &str = "https://model_signing/signature/v1.0";

/// Whether `body` has a `signature:` for an artifact on a backend, whose files its provider
/// reads (`ResourceType::artifact_sha256`) for [`verify`].
fn reads_backend(body: &Value) -> bool {
    let artifact = body.get("artifact").and_then(Value::as_str).unwrap_or_default();
    body.get("signature").is_some() && artifact.contains("://") && !artifact.starts_with("file://")
}

/// The model's verified signature (`None` without `signature:`): a bucket artifact's is kept
/// from lineage while its pinned versions, bundle and key are the recorded ones, else its files
/// are read by its provider (`rt`) at the versions `desired` pinned; a local artifact's are
/// hashed here. Errors are at the `signature:` line.
pub async fn of(
    rt: &dyn ResourceType,
    config: &ResourceConfig,
    desired: &Desired,
    body: &Value,
    base: &Path,
    recorded: Option<&Attributes>,
) -> Result<Option<Value>, ProviderError> {
    let at = || ValuePath::key("signature");
    let remote = if reads_backend(body) {
        if let Some(kept) = still_verified(body, base, &desired.attributes, recorded) {
            return Ok(Some(kept));
        }
        rt.artifact_sha256(config, desired).await.map_err(|e| e.at(at()))?
    } else {
        None
    };
    verify(body, base, remote.as_ref()).map_err(|m| ProviderError::invalid(m).at(at()))
}

/// The signature lineage recorded for the model (`recorded`, its record's attributes), when it
/// still holds without reading the artifact again: the same bundle bytes and key, and the artifact
/// pinned at the same immutable versions (an S3 version id, GCS generations) as `desired`.
fn still_verified(body: &Value, base: &Path, desired: &Attributes, recorded: Option<&Attributes>) -> Option<Value> {
    let recorded = recorded?;
    let verified = recorded.get(SIGNATURE)?;
    let immutable =
        ["artifact_version", "generation", "files"].iter().any(|k| desired.get(*k).is_some_and(|v| !v.is_null()));
    let same = ["artifact", "artifact_digest", "artifact_version", "generation", "files"]
        .iter()
        .all(|k| desired.get(*k) == recorded.get(*k));
    if !immutable || !same {
        return None;
    }
    let sig = body.get("signature")?;
    let bundle = std::fs::read(base.join(sig.get("bundle")?.as_str()?)).ok()?;
    let key = std::fs::read_to_string(base.join(sig.get("key")?.as_str()?)).ok()?;
    let bundle_digest = format!("sha256:{}", hex::encode(Sha256::digest(&bundle)));
    let key_id = crate::audit::dsse::key_id_of(&key).ok()?;
    (verified.get("bundle_digest")?.as_str()? == bundle_digest && verified.get("key")?.as_str()? == key_id)
        .then(|| verified.clone())
}

/// Verifies `body`'s `signature:` (`key`, optional `bundle`) for its `artifact`, paths from
/// `base`: a local artifact's files hashed here, a backend's as its provider read them at their
/// pinned versions (`remote`, name → SHA-256). `Ok(None)` when the model has no `signature:`.
fn verify(body: &Value, base: &Path, remote: Option<&BTreeMap<String, String>>) -> Result<Option<Value>, String> {
    let Some(sig) = body.get("signature") else { return Ok(None) };
    if sig.get("identity").is_some() || sig.get("certificate").is_some() {
        return Err("certificate (keyless) signatures need Fulcio's certificate chain and a Rekor \
                    transparency log, which mlops does not reach: sign with a key (`model_signing sign key`) \
                    and name its public key in `signature.key`"
            .into());
    }
    let artifact = body.get("artifact").and_then(Value::as_str).unwrap_or_default();
    let local = artifact.strip_prefix("file://").unwrap_or(artifact);
    let on_backend = reads_backend(body);
    if on_backend && remote.is_none() {
        return Err(format!("the provider of `{artifact}` cannot read its bytes, so its signature cannot be verified"));
    }
    let given_bundle = sig.get("bundle").and_then(Value::as_str);
    if on_backend && given_bundle.is_none_or(|b| b.contains("://")) {
        return Err(format!(
            "the signature of `{artifact}` is read from the repository: set `signature.bundle` to the bundle's path \
             beside the spec (model_signing writes it when it signs the model, before the upload)"
        ));
    }
    let artifact_path = base.join(local);
    let key_path = base
        .join(sig.get("key").and_then(Value::as_str).ok_or("`signature` needs `key`: the signer's public key (PEM)")?);
    let bundle_path = match sig.get("bundle").and_then(Value::as_str) {
        Some(b) => base.join(b),
        None => PathBuf::from(format!("{}.sig", artifact_path.to_string_lossy().trim_end_matches('/'))),
    };
    let read =
        |p: &Path, what: &str| std::fs::read(p).map_err(|e| format!("cannot read the {what} {}: {e}", p.display()));
    let key = String::from_utf8(read(&key_path, "public key")?).map_err(|_| "the public key is not PEM text")?;
    let bundle_bytes = read(&bundle_path, "signature bundle")?;
    let bundle: Value = serde_json::from_slice(&bundle_bytes)
        .map_err(|e| format!("the signature bundle {} is not JSON: {e}", bundle_path.display()))?;
    if !bundle["mediaType"].as_str().is_some_and(|m| m.starts_with("application/vnd.dev.sigstore.bundle")) {
        return Err(format!("{} is not a sigstore bundle (no sigstore mediaType)", bundle_path.display()));
    }
    let payload = crate::audit::dsse::verify(&bundle["dsseEnvelope"], &key)
        .map_err(|why| format!("the signature does not verify: {why}"))?;
    let statement: Value =
        serde_json::from_slice(&payload).map_err(|e| format!("the signed statement is not JSON: {e}"))?;
    if statement["predicateType"] != PREDICATE {
        return Err(format!(
            "the signed statement's predicate is {}, not a model signature",
            statement["predicateType"]
        ));
    }
    let signed: BTreeMap<String, String> = statement["predicate"]["resources"]
        .as_array()
        .ok_or("the signed statement lists no files")?
        .iter()
        .map(|r| {
            if r["algorithm"] != "sha256" {
                return Err(format!("file {} is signed with {}, not sha256", r["name"], r["algorithm"]));
            }
            Ok((
                r["name"].as_str().unwrap_or_default().to_string(),
                r["digest"].as_str().unwrap_or_default().to_string(),
            ))
        })
        .collect::<Result<_, String>>()?;
    let ignored: Vec<String> = statement["predicate"]["serialization"]["ignore_paths"]
        .as_array()
        .map(|a| a.iter().filter_map(|p| p.as_str().map(str::to_string)).collect())
        .unwrap_or_default();
    let on_disk = match remote {
        Some(files) if on_backend => files
            .iter()
            .filter(|(name, _)| !ignored.iter().any(|i| *name == i || name.starts_with(&format!("{i}/"))))
            .map(|(n, d)| (n.clone(), d.clone()))
            .collect(),
        _ => hash_files(&artifact_path, &bundle_path, &ignored)?,
    };
    let named = |n: &str| if n == "." { "the artifact".to_string() } else { format!("`{n}`") };
    for (name, digest) in &signed {
        match on_disk.get(name) {
            None => return Err(format!("{} is signed but not in the artifact", named(name))),
            Some(d) if d != digest => {
                return Err(format!("{} differs from the signed bytes (sha256 {d}, signed {digest})", named(name)));
            }
            Some(_) => {}
        }
    }
    if let Some(extra) = on_disk.keys().find(|n| !signed.contains_key(*n)) {
        return Err(format!("`{extra}` is in the artifact but not signed"));
    }
    let spki_id = crate::audit::dsse::key_id_of(&key)?;
    Ok(Some(json!({
        "verified": true,
        "key": spki_id,
        "bundle_digest": format!("sha256:{}", hex::encode(Sha256::digest(&bundle_bytes))),
        "files": signed.len(),
    })))
}

/// SHA-256 of every file of `path` (a file: one entry named `.`; a folder: each file's path in it
/// with `/`), leaving out the bundle itself and the paths the signer ignored.
fn hash_files(path: &Path, bundle: &Path, ignored: &[String]) -> Result<BTreeMap<String, String>, String> {
    let hash = |p: &Path| -> Result<String, String> {
        let bytes = std::fs::read(p).map_err(|e| format!("cannot read {}: {e}", p.display()))?;
        Ok(hex::encode(Sha256::digest(&bytes)))
    };
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read the artifact {}: {e}", path.display()))?;
    let mut out = BTreeMap::new();
    if meta.is_file() {
        out.insert(".".to_string(), hash(path)?);
        return Ok(out);
    }
    let mut todo = vec![path.to_path_buf()];
    while let Some(dir) = todo.pop() {
        let entries = std::fs::read_dir(&dir).map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
        for entry in entries {
            let entry = entry.map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
            let p = entry.path();
            let rel = p.strip_prefix(path).expect("under the artifact").to_string_lossy().replace('\\', "/");
            if p == bundle || ignored.iter().any(|i| rel == *i || rel.starts_with(&format!("{i}/"))) {
                continue;
            }
            if entry.file_type().map_err(|e| e.to_string())?.is_dir() {
                todo.push(p);
            } else {
                out.insert(rel, hash(&p)?);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEuD03zd5IZXdeAQjbJ+EidxvOj8Av
fFeII9uhOzmNY4GEWfvVlJVzwfavs/ILitj46H6byHednTuL9qA31w5dTQ==
-----END PUBLIC KEY-----
";

    fn attrs(v: Value) -> Attributes {
        v.as_object().unwrap().clone().into_iter().collect()
    }

    /// A recorded verification is kept only for the same immutable pin, bundle bytes and key.
    #[test]
    fn a_recorded_signature_is_kept_only_while_pin_bundle_and_key_are_the_same() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("signer.pub.pem"), KEY).unwrap();
        std::fs::write(dir.path().join("model.sig"), "{\"bundle\": 1}").unwrap();
        let body =
            json!({"artifact": "store://b/churn/", "signature": {"key": "signer.pub.pem", "bundle": "model.sig"}});
        let verified = json!({
            "verified": true,
            "key": crate::audit::dsse::key_id_of(KEY).unwrap(),
            "bundle_digest": format!("sha256:{}", hex::encode(Sha256::digest(b"{\"bundle\": 1}"))),
            "files": 1,
        });
        let desired = attrs(json!({"artifact": "store://b/churn/", "generation": 7, "artifact_digest": "md5:x"}));
        let mut recorded = desired.clone();
        recorded.insert(SIGNATURE.into(), verified.clone());
        let kept = |d: &Attributes, r: &Attributes| still_verified(&body, dir.path(), d, Some(r));
        assert_eq!(kept(&desired, &recorded), Some(verified));
        let moved = attrs(json!({"artifact": "store://b/churn/", "generation": 8, "artifact_digest": "md5:x"}));
        assert_eq!(kept(&moved, &recorded), None, "another generation is read again");
        let unversioned = attrs(json!({"artifact": "store://b/churn/", "artifact_digest": "md5:x"}));
        let mut unversioned_record = unversioned.clone();
        unversioned_record.insert(SIGNATURE.into(), recorded[SIGNATURE].clone());
        assert_eq!(kept(&unversioned, &unversioned_record), None, "no immutable version: read again");
        assert_eq!(still_verified(&body, dir.path(), &desired, None), None, "nothing recorded");
        std::fs::write(dir.path().join("model.sig"), "{\"bundle\": 2}").unwrap();
        assert_eq!(kept(&desired, &recorded), None, "another bundle is verified again");
    }
}
