//! Model signatures verified at plan time: an OpenSSF model-signing bundle (a sigstore bundle whose
//! DSSE envelope carries an in-toto statement, predicate `https://model_signing/signature/v1.0`,
//! listing every file of the model with its SHA-256), checked against a public key (ECDSA P-256,
//! offline) and against the artifact's bytes on disk. What verified is recorded as the model's
//! [`SIGNATURE`] attribute: the key's id, the bundle's digest and the number of files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// The attribute recording a model's verified signature.
pub const SIGNATURE: &str = "signature";

const PREDICATE: &str = "https://model_signing/signature/v1.0";

/// Whether `body` has a `signature:` for an artifact on a backend, whose files its provider
/// reads (`ResourceType::artifact_sha256`) for [`verify`].
pub fn reads_backend(body: &Value) -> bool {
    let artifact = body.get("artifact").and_then(Value::as_str).unwrap_or_default();
    body.get("signature").is_some() && artifact.contains("://") && !artifact.starts_with("file://")
}

/// Verifies `body`'s `signature:` (`key`, optional `bundle`) for its `artifact`, paths from
/// `base`: a local artifact's files hashed here, a backend's as its provider read them at their
/// pinned versions (`remote`, name → SHA-256). `Ok(None)` when the model has no `signature:`.
pub fn verify(body: &Value, base: &Path, remote: Option<&BTreeMap<String, String>>) -> Result<Option<Value>, String> {
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
