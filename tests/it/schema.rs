//! The committed JSON Schemas are generated from the Rust types; this fails when they are stale.
//! Regenerate with `UPDATE_SCHEMAS=1 cargo test --test it schema`.

use std::path::Path;

fn check(file: &str, schema: serde_json::Value) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas").join(file);
    let want = serde_json::to_string_pretty(&schema).unwrap() + "\n";
    if std::env::var_os("UPDATE_SCHEMAS").is_some() {
        std::fs::write(&path, &want).unwrap();
    }
    let have = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(have == want, "schemas/{file} is stale: run `UPDATE_SCHEMAS=1 cargo test --test it schema` and commit it");
}

#[test]
fn spec_schema_is_current() {
    check("mlops.schema.json", mlops::spec::model::json_schema());
}

#[test]
fn plan_schema_is_current() {
    check("plan.schema.json", mlops::plan::json_schema());
}

#[test]
fn audit_schema_is_current() {
    check("audit.schema.json", mlops::audit::audit_schema());
}

#[test]
fn examples_validate_against_the_committed_schema() {
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/mlops.schema.json")).unwrap(),
    )
    .unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    for example in ["quickstart", "gcp-gcs", "kubernetes-kserve", "aws-sagemaker"] {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples").join(example).join("mlops.yaml");
        let value: serde_json::Value = serde_saphyr::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let errors: Vec<String> = validator.iter_errors(&value).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{example}: {errors:?}");
        // And the full validation (semantics, provider checks), offline.
        let env = crate::common::TestEnv::new();
        crate::common::copy_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("examples").join(example), env.path());
        env.mlops(&["validate"]).ok();
    }
}

#[test]
fn saved_plans_validate_against_the_plan_schema() {
    let env = crate::common::TestEnv::quickstart();
    env.mlops(&["plan", "--out", "p.json"]).ok();
    let plan: serde_json::Value = serde_json::from_str(&env.read("p.json")).unwrap();
    let validator = jsonschema::validator_for(&mlops::plan::json_schema()).unwrap();
    let errors: Vec<String> = validator.iter_errors(&plan).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "{errors:?}");
}
