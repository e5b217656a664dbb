//! `mlops audit provenance [WHEN]`: one apply as an in-toto Statement v1 with an SLSA Provenance v1
//! predicate, read from lineage only. Its subjects are what the apply deployed, by digest (models'
//! artifacts, digest-versioned datasets, images pinned by digest); its resolved dependencies the
//! source commit it was made from and the input versions each subject was applied with; its
//! builder the CI run lineage recorded (else mlops on the machine that applied); its byproduct the
//! lineage commit itself.

use serde_json::{Value, json};

use super::bom::{digest_of, image_of, sha256_hex};
use super::{AuditError, locate, state_at};
use crate::lineage::Lineage;
use crate::plan::{Action, OutcomeStatus};

/// The `buildType` of an mlops apply (docs/audit.md says what its parameters are).
pub const BUILD_TYPE: &str = "urn:mlops:apply:v1";

pub fn statement(lineage: &Lineage, when: &str, project: &str, environment: &str) -> Result<Value, AuditError> {
    let index = lineage.index()?;
    let entry = index.entry(locate(lineage, &index, when)?)?;
    let state = state_at(lineage, &entry.commit)?;
    let mut subjects = Vec::new();
    let mut dependencies = Vec::new();
    if let Some(source) = entry.trailers.get("Source-Commit").filter(|s| *s != "none") {
        dependencies.push(json!({ "name": "source", "digest": { "gitCommit": source } }));
    }
    let mut seen = std::collections::BTreeSet::new();
    for change in &entry.changes {
        if change.status != OutcomeStatus::Applied || change.action == Action::Delete {
            continue;
        }
        let Some(r) = state.resources.iter().find(|r| r.address == change.address) else { continue };
        if let Some(hex) = digest_of(r) {
            subjects.push(json!({ "name": r.address, "digest": { "sha256": hex } }));
        }
        if let Some((written, hex)) = image_of(r)
            && seen.insert(written.to_string())
        {
            subjects.push(json!({ "name": written, "digest": { "sha256": hex } }));
        }
        for (input, version) in r.record.inputs.iter().filter(|(_, v)| !v.is_null()) {
            let version = super::value_text(version);
            if !seen.insert(format!("{input}@{version}")) {
                continue;
            }
            let mut d = json!({
                "name": input,
                "uri": format!("mlops://{project}/{environment}/{input}?version={version}"),
            });
            if let Some(hex) = sha256_hex(Some(&Value::String(version.clone()))) {
                d["digest"] = json!({ "sha256": hex });
            }
            dependencies.push(d);
        }
    }
    let ci_run = entry.trailers.get("CI-Run");
    let mut external = json!({ "project": project, "environment": environment });
    for (trailer, key) in
        [("Plan-Digest", "planDigest"), ("Pull-Request", "pullRequest"), ("Approved-By", "approvedBy")]
    {
        if let Some(v) = entry.trailers.get(trailer) {
            external[key] = json!(v);
        }
    }
    Ok(json!({
        "_type": "https://in-toto.io/Statement/v1",
        "subject": subjects,
        "predicateType": "https://slsa.dev/provenance/v1",
        "predicate": {
            "buildDefinition": {
                "buildType": BUILD_TYPE,
                "externalParameters": external,
                "internalParameters": { "appliedBy": entry.applied_by, "result": entry.trailers.get("Result") },
                "resolvedDependencies": dependencies,
            },
            "runDetails": {
                "builder": { "id": ci_run.cloned().unwrap_or_else(|| format!("mlops://{project}/{environment}")) },
                "metadata": {
                    "invocationId": ci_run.cloned().unwrap_or_else(|| entry.commit.clone()),
                    "startedOn": entry.time,
                    "finishedOn": entry.time,
                },
                "byproducts": [{ "name": "lineage", "uri": lineage.ref_name, "digest": { "gitCommit": entry.commit } }],
            },
        },
    }))
}
