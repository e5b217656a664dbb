//! `mlops audit bom`: what a stack ran at a moment of its lineage as a CycloneDX 1.6 bill of
//! materials (an ML-BOM): models as `machine-learning-model` components with their digests and the
//! datasets they were trained on, datasets and feature stores as `data` components with their
//! versions, images (pinned by digest) as `container` components, endpoints as services; the
//! dependencies are the lineage graph's edges. Everything is read from lineage: no provider is
//! called.

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::{ResourceAt, StateAt};

/// A `sha256:…` value's hex, when it is one.
pub(super) fn sha256_hex(v: Option<&Value>) -> Option<&str> {
    let hex = v?.as_str()?.strip_prefix("sha256:")?;
    (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit())).then_some(hex)
}

/// The content digest a record names for what it deploys or holds (its output `digest`, else the
/// artifact's or model's digest it was planned with, else a digest-valued version).
pub(super) fn digest_of(r: &ResourceAt) -> Option<&str> {
    let rec = &r.record;
    ["digest", "artifact_digest", "model_digest", "version"]
        .iter()
        .find_map(|k| sha256_hex(rec.outputs.get(*k)).or_else(|| sha256_hex(rec.attributes.get(*k))))
}

/// The image a record runs, pinned by digest: as written, and the digest's hex.
pub(super) fn image_of(r: &ResourceAt) -> Option<(&str, &str)> {
    let image = r.record.attributes.get(crate::engine::images::IMAGE_REF)?;
    Some((image.get("image")?.as_str()?, sha256_hex(image.get("digest"))?))
}

fn property(name: &str, value: impl Into<String>) -> Value {
    json!({ "name": format!("mlops:{name}"), "value": value.into() })
}

/// The properties every component carries: where lineage has it.
fn properties(r: &ResourceAt) -> Vec<Value> {
    let mut out = vec![property("address", &r.address), property("provider", &r.provider)];
    if let Some(last) = &r.last_applied {
        out.push(property("lineage_commit", &last.lineage_commit));
        out.push(property("applied_at", &last.time));
        out.push(property("applied_by", &last.applied_by));
        if let Some(s) = &last.source_commit {
            out.push(property("source_commit", s));
        }
    }
    for (input, version) in r.record.inputs.iter().filter(|(_, v)| !v.is_null()) {
        out.push(property(&format!("input:{input}"), super::value_text(version)));
    }
    out
}

/// A deterministic RFC 4122 (version 5 layout) URN for the BOM of one lineage commit.
fn serial(state: &StateAt) -> String {
    let d = Sha256::digest(format!("{}\n{}", state.lineage_ref, state.lineage_commit).as_bytes());
    let mut b: [u8; 16] = d[..16].try_into().expect("16 bytes");
    b[6] = (b[6] & 0x0f) | 0x50;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!("urn:uuid:{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..])
}

/// The BOM of `state` (the resources of `project` in `environment` at one lineage commit).
pub fn bom(state: &StateAt, project: &str, environment: &str) -> Value {
    let mut components = Vec::new();
    let mut services = Vec::new();
    let mut images: std::collections::BTreeMap<String, Value> = std::collections::BTreeMap::new();
    let mut dependencies = Vec::new();
    for r in &state.resources {
        let kind = r.record.address.kind.section();
        let name = r.record.address.name.clone();
        let mut depends: Vec<String> = r.record.depends_on.iter().map(|a| a.to_string()).collect();
        // An image pinned by digest: one container component per image, shared.
        if let Some((written, hex)) = image_of(r) {
            let repository = written.split('@').next().unwrap_or(written);
            let repository = match repository.rsplit_once(':') {
                Some((repo, tag)) if !tag.contains('/') => repo,
                _ => repository,
            };
            let bom_ref = format!("image:{repository}@sha256:{hex}");
            images.entry(bom_ref.clone()).or_insert_with(|| {
                json!({
                    "type": "container",
                    "bom-ref": bom_ref,
                    "name": repository,
                    "version": format!("sha256:{hex}"),
                    "hashes": [{ "alg": "SHA-256", "content": hex }],
                    "properties": [property("image", written)],
                })
            });
            depends.push(bom_ref);
        }
        let version = r.version.clone();
        let hashes: Vec<Value> = digest_of(r).map(|h| json!({ "alg": "SHA-256", "content": h })).into_iter().collect();
        match kind {
            "endpoints" => {
                let mut s = json!({ "bom-ref": r.address, "name": name, "properties": properties(r) });
                if let Some(v) = version {
                    s["version"] = json!(v);
                }
                if let Some(url) = r.record.outputs.get("url").and_then(Value::as_str) {
                    s["endpoints"] = json!([url]);
                }
                services.push(s);
            }
            _ => {
                let mut c = json!({ "bom-ref": r.address, "name": name, "properties": properties(r) });
                if let Some(v) = version {
                    c["version"] = json!(v);
                }
                if !hashes.is_empty() {
                    c["hashes"] = json!(hashes);
                }
                if kind == "models" {
                    c["type"] = json!("machine-learning-model");
                    let datasets: Vec<Value> = r
                        .record
                        .depends_on
                        .iter()
                        .filter(|a| a.kind.section() == "datasets")
                        .map(|a| json!({ "ref": a.to_string() }))
                        .collect();
                    let mut parameters = json!({ "datasets": datasets });
                    if let Some(f) = r.record.attributes.get("framework").and_then(Value::as_str) {
                        parameters["architectureFamily"] = json!(f);
                    }
                    c["modelCard"] = json!({ "modelParameters": parameters });
                } else {
                    c["type"] = json!("data");
                    c["data"] = json!([{ "type": "dataset", "name": r.address }]);
                }
                components.push(c);
            }
        }
        depends.sort();
        depends.dedup();
        dependencies.push(json!({ "ref": r.address, "dependsOn": depends }));
    }
    components.extend(images.into_values());
    json!({
        "bomFormat": "CycloneDX",
        "specVersion": "1.6",
        "serialNumber": serial(state),
        "version": 1,
        "metadata": {
            "timestamp": state.time,
            "tools": { "components": [{ "type": "application", "name": "mlops", "version": env!("CARGO_PKG_VERSION") }] },
            "component": { "type": "application", "bom-ref": "stack", "name": project, "version": environment },
            "properties": [
                property("environment", environment),
                property("lineage_ref", &state.lineage_ref),
                property("lineage_commit", &state.lineage_commit),
                property("applied_by", &state.applied_by),
            ],
        },
        "components": components,
        "services": services,
        "dependencies": dependencies,
    })
}
